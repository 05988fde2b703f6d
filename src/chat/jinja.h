/*
 * jinja.h — a small Jinja subset for chat templates: values, the lexer, the parser and the evaluator
 * (internal to src/chat; chat_template.h is what the rest of cpeft uses).
 *
 * It runs the chat_template text of tokenizer_config.json as transformers' apply_chat_template does:
 * jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, keep_trailing_newline
 * off, the loopcontrols extension ({% break %}, {% continue %}) and transformers' {% generation %}
 * tag, globals raise_exception, namespace, dict, range, and its tojson filter (json.dumps with
 * ensure_ascii=False). Values follow Python: str() of None is "None", == across int / float / bool,
 * strings are sequences of code points (length, slicing, reversing).
 *
 * What the subset does not run — macros, call blocks, {% include %}, {% raw %}, filters, tests,
 * methods and globals it does not know — is refused by name with the template's line, never
 * rendered some other way.
 *
 * Memory: every value and node of one template lives in a jx_heap (a list of allocations freed at
 * once); values are never freed one by one and are immutable except namespaces.
 *
 * Files: jinja_value.c (values, str(), equality, truthiness, JSON), jinja_lexer.c (text and tags,
 * whitespace control, expression tokens), jinja_parser.c (the syntax tree), jinja_eval.c (statements
 * and expressions), jinja_builtins.c (filters, tests, methods, globals).
 */
#ifndef CP_CHAT_JINJA_H
#define CP_CHAT_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/strbuf.h"

/* ---- memory ------------------------------------------------------------------------------------ */

typedef struct {
    void **blocks;
    size_t n, cap;
    int failed;
} jx_heap;

void *jx_alloc(jx_heap *h, size_t size); /* zeroed; NULL (error set) when out of memory */
char *jx_strndup(jx_heap *h, const char *s, size_t n);
void jx_heap_free(jx_heap *h);

/* ---- values ------------------------------------------------------------------------------------ */

typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS, JV_FUNC, JV_METHOD
} jv_kind;

typedef struct jv jv;
struct jv {
    jv_kind kind;
    int64_t i;        /* BOOL, INT */
    double f;         /* FLOAT */
    const char *s;    /* STR (NUL-terminated, n bytes); UNDEF: the missing name (for messages); FUNC, METHOD: name */
    size_t n;
    jv **items;       /* LIST; DICT / NS values */
    const char **keys;/* DICT / NS keys */
    size_t len, cap;  /* LIST / DICT / NS entries */
    jv *self;         /* METHOD: the bound object */
};

jv *jv_new(jx_heap *h, jv_kind kind);
jv *jv_str(jx_heap *h, const char *s, size_t n);
jv *jv_cstr(jx_heap *h, const char *s);
jv *jv_int(jx_heap *h, int64_t i);
jv *jv_bool(jx_heap *h, int b);
jv *jv_float(jx_heap *h, double f);
jv *jv_undef(jx_heap *h, const char *name);
cp_status jv_list_push(jx_heap *h, jv *list, jv *item);
/* Sets key in a DICT / NS (replacing an existing value, keeping its position). */
cp_status jv_dict_set(jx_heap *h, jv *dict, const char *key, jv *val);
jv *jv_dict_get(const jv *dict, const char *key); /* NULL when absent */

/* A cJSON tree as values (objects keep their key order). */
jv *jv_from_json(jx_heap *h, const cJSON *j);

int jv_truthy(const jv *v);
int jv_equal(const jv *a, const jv *b);
/* Python's str(v) appended to sb (undefined appends nothing). */
void jv_to_str(const jv *v, cp_strbuf *sb);
/* Python's repr(v). */
void jv_repr(const jv *v, cp_strbuf *sb);
/* json.dumps(v, ensure_ascii=False, indent=indent (<0: None), sort_keys) into sb; 0 or -1 (error set)
 * for a value JSON cannot hold. */
int jv_to_json(const jv *v, cp_strbuf *sb, int indent, int sort_keys, int depth);
const char *jv_type_name(const jv *v);
int jv_is_number(const jv *v); /* INT, FLOAT or BOOL (Python's bool is an int) */
double jv_num(const jv *v);
/* The number of code points of a UTF-8 string. */
size_t jx_utf8_count(const char *s, size_t n);

/* ---- lexer ------------------------------------------------------------------------------------- */

typedef enum {
    JT_EOF, JT_TEXT, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP
} jt_kind;

typedef struct {
    jt_kind kind;
    const char *s;  /* TEXT / STRING: the (unescaped) text, NUL-terminated; NAME / OP: the spelling */
    size_t n;
    int64_t i;      /* INT */
    double f;       /* FLOAT */
    int line;
} jx_token;

/* Splits a template into tokens. Whitespace control (trim_blocks, lstrip_blocks, "-" / "+" markers),
 * comments and the trailing newline are handled here; TEXT tokens hold exactly what is output. */
cp_status jx_lex(jx_heap *h, const char *src, size_t len, jx_token **out, size_t *n_out);

/* ---- syntax tree ------------------------------------------------------------------------------- */

typedef enum {
    /* expressions */
    JN_CONST, JN_NAME, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER, JN_TEST, JN_BINOP, JN_NOT, JN_NEG,
    JN_POS, JN_COND, JN_LIST, JN_DICT,
    /* statements */
    JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SET_BLOCK, JN_GENERATION, JN_BREAK, JN_CONTINUE
} jx_node_kind;

typedef struct jx_node jx_node;
struct jx_node {
    jx_node_kind kind;
    int line;
    const char *name;   /* NAME, ATTR, FILTER, TEST, BINOP (the operator), SET (variable), FOR (target) */
    const char *name2;  /* FOR: second target ("for k, v in"); SET: the attribute ("set ns.x") */
    jv *value;          /* CONST; TEXT (a string) */
    jx_node *a, *b, *c;      /* operands; IF: a = condition; FOR: a = iterable, c = filter condition; SLICE a[b:c:d] */
    jx_node *d;
    int negate;         /* TEST: "is not" */
    jx_node **args;          /* CALL / FILTER / TEST arguments; LIST / DICT items (dict: key, value, ...) */
    const char **kwnames; /* keyword argument names (NULL for positional) */
    size_t n_args;
    jx_node **body;          /* IF: then; FOR: body; SET_BLOCK, GENERATION */
    size_t n_body;
    jx_node **orelse;        /* IF: else (an elif is a nested IF); FOR: else */
    size_t n_orelse;
};

typedef struct {
    jx_node **body;
    size_t n;
} jx_template;

cp_status jx_parse(jx_heap *h, const jx_token *toks, size_t n_toks, jx_template *out);

/* ---- evaluation -------------------------------------------------------------------------------- */

typedef struct {
    size_t start, end; /* byte offsets into the output */
} jx_span;

typedef struct {
    cp_strbuf out;
    jx_span *spans;       /* {% generation %} blocks, in output order */
    size_t n_spans, spans_cap;
} jx_result;

/* Renders the template with the variables of `vars` (a DICT). On error the message names the
 * template line; res is freed by jx_result_free either way. */
cp_status jx_render(jx_heap *h, const jx_template *t, jv *vars, jx_result *res);
void jx_result_free(jx_result *res);

/* ---- builtins (jinja_builtins.c) ---------------------------------------------------------------- */

typedef struct jx_eval jx_eval;
/* The helpers of jinja_eval.c the builtins call. */
cp_status jx_fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

cp_status jx_filter(jx_heap *h, int line, const char *name, jv *x, jv **args, const char **kw, size_t n,
                    jv **out);
cp_status jx_test(jx_heap *h, int line, const char *name, jv *x, jv **args, size_t n, int *out);
/* Calls a global function (FUNC) or a bound method (METHOD). */
cp_status jx_call(jx_heap *h, int line, jv *fn, jv **args, const char **kw, size_t n, jv **out);
/* obj.name for a str / dict / list method: a METHOD value, or NULL when the type has none so named. */
jv *jx_method(jx_heap *h, jv *obj, const char *name);
/* The globals: raise_exception, namespace, dict, range (FUNC values); NULL otherwise. */
jv *jx_global(jx_heap *h, const char *name);

#endif
