/*
 * jinja_parser.c — tokens into a syntax tree (jinja.h's jx_node), with jinja2's precedence:
 *   a if c else b  <  or  <  and  <  not  <  comparisons, in, not in  <  ~  <  + -  <  * / // %  <  **
 *   <  unary - +  <  primary with .x, [i], [a:b:c], (args), then | filter and "is" test.
 * Statements: if / elif / else, for (one or two targets, an "if" filter, else), set (name, ns.attr,
 * or a {% set x %}...{% endset %} block), break, continue, and transformers' generation block.
 * Anything else jinja2 has (macro, call, filter blocks, include, import, extends, block, raw, with,
 * autoescape, do) is refused by name with its line.
 */
#include "chat/jinja.h"

#include <string.h>

typedef struct {
    jx_heap *h;
    const jx_token *t;
    size_t n, i;
    int depth;
} parser;

static const jx_token *cur(parser *P) { return &P->t[P->i]; }
static int is_op(parser *P, const char *op) { return cur(P)->kind == JT_OP && !strcmp(cur(P)->s, op); }
static int is_name(parser *P, const char *nm) { return cur(P)->kind == JT_NAME && !strcmp(cur(P)->s, nm); }
static int is_name_at(parser *P, size_t k, const char *nm) {
    return P->i + k < P->n && P->t[P->i + k].kind == JT_NAME && !strcmp(P->t[P->i + k].s, nm);
}

static const char *tok_desc(const jx_token *t) {
    switch (t->kind) {
    case JT_EOF: return "the end of the template";
    case JT_BLOCK_END: return "the end of the tag";
    case JT_VAR_END: return "'}}'";
    case JT_NAME: case JT_OP: return t->s;
    case JT_STRING: return "a string";
    default: return "a value";
    }
}

static cp_status expect_op(parser *P, const char *op) {
    if (!is_op(P, op)) return jx_fail(cur(P)->line, "expected '%s', found %s", op, tok_desc(cur(P)));
    P->i++;
    return CP_OK;
}

static jx_node *node(parser *P, jx_node_kind k, int line) {
    jx_node *x = jx_alloc(P->h, sizeof *x);
    if (x) { x->kind = k; x->line = line; }
    return x;
}

typedef struct {
    jx_node **v;
    const char **kw;
    size_t n, cap;
} nodelist;

static cp_status nl_push(parser *P, nodelist *l, jx_node *x, const char *kw) {
    if (!x) return CP_ERR;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        jx_node **v = jx_alloc(P->h, cap * sizeof *v);
        const char **k = jx_alloc(P->h, cap * sizeof *k);
        if (!v || !k) return CP_ERR;
        if (l->n) { memcpy(v, l->v, l->n * sizeof *v); memcpy(k, l->kw, l->n * sizeof *k); }
        l->v = v; l->kw = k; l->cap = cap;
    }
    l->kw[l->n] = kw;
    l->v[l->n++] = x;
    return CP_OK;
}

static jx_node *parse_expr(parser *P);
static jx_node *parse_unary(parser *P);

/* (args) after a call, filter or test: positional then name=value. */
static cp_status parse_args(parser *P, jx_node *x) {
    nodelist l = {0};
    if (expect_op(P, "(")) return CP_ERR;
    while (!is_op(P, ")")) {
        if (l.n && expect_op(P, ",")) return CP_ERR;
        if (is_op(P, ")")) break;
        const char *kw = NULL;
        if (cur(P)->kind == JT_NAME && P->i + 1 < P->n && P->t[P->i + 1].kind == JT_OP && !strcmp(P->t[P->i + 1].s, "=")) {
            kw = cur(P)->s;
            P->i += 2;
        } else if (is_op(P, "*") || is_op(P, "**")) {
            return jx_fail(cur(P)->line, "'%s' argument unpacking is not supported", cur(P)->s);
        }
        if (nl_push(P, &l, parse_expr(P), kw)) return CP_ERR;
    }
    P->i++;
    x->args = l.v; x->kwnames = l.kw; x->n_args = l.n;
    return CP_OK;
}

static jx_node *parse_primary(parser *P) {
    const jx_token *t = cur(P);
    jx_node *x = NULL;
    if (t->kind == JT_NAME) {
        P->i++;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True") || !strcmp(t->s, "false") || !strcmp(t->s, "False")) {
            if ((x = node(P, JN_CONST, t->line))) x->value = jv_bool(P->h, t->s[0] == 't' || t->s[0] == 'T');
        } else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) {
            if ((x = node(P, JN_CONST, t->line))) x->value = jv_new(P->h, JV_NONE);
        } else if ((x = node(P, JN_NAME, t->line))) {
            x->name = t->s;
        }
        return x && (x->kind != JN_CONST || x->value) ? x : NULL;
    }
    if (t->kind == JT_STRING) {
        P->i++;
        /* adjacent string literals concatenate, as in Python */
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_sb_append_n(&sb, t->s, t->n);
        while (cur(P)->kind == JT_STRING) { cp_sb_append_n(&sb, cur(P)->s, cur(P)->n); P->i++; }
        if ((x = node(P, JN_CONST, t->line))) x->value = jv_str(P->h, sb.data ? sb.data : "", sb.len);
        cp_sb_free(&sb);
        return x && x->value ? x : NULL;
    }
    if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        P->i++;
        if ((x = node(P, JN_CONST, t->line))) x->value = t->kind == JT_INT ? jv_int(P->h, t->i) : jv_float(P->h, t->f);
        return x && x->value ? x : NULL;
    }
    if (is_op(P, "(")) {
        P->i++;
        x = parse_expr(P);
        if (!x) return NULL;
        if (is_op(P, ",")) { jx_fail(t->line, "tuples are not supported"); return NULL; }
        return expect_op(P, ")") ? NULL : x;
    }
    if (is_op(P, "[") || is_op(P, "{")) {
        int dict = is_op(P, "{");
        P->i++;
        x = node(P, dict ? JN_DICT : JN_LIST, t->line);
        nodelist l = {0};
        const char *close = dict ? "}" : "]";
        while (x && !is_op(P, close)) {
            if (l.n && expect_op(P, ",")) return NULL;
            if (is_op(P, close)) break;
            if (nl_push(P, &l, parse_expr(P), NULL)) return NULL;
            if (dict && (expect_op(P, ":") || nl_push(P, &l, parse_expr(P), NULL))) return NULL;
        }
        if (!x) return NULL;
        P->i++;
        x->args = l.v; x->n_args = l.n;
        return x;
    }
    jx_fail(t->line, "unexpected %s in an expression", tok_desc(t));
    return NULL;
}

static jx_node *parse_postfix(parser *P, jx_node *x) {
    while (x) {
        int line = cur(P)->line;
        if (is_op(P, ".")) {
            P->i++;
            if (cur(P)->kind == JT_INT) { /* x.0 is x[0] in jinja */
                jx_node *k = node(P, JN_CONST, line);
                if (!k || !(k->value = jv_int(P->h, cur(P)->i))) return NULL;
                P->i++;
                jx_node *y = node(P, JN_ITEM, line);
                if (!y) return NULL;
                y->a = x; y->b = k; x = y;
                continue;
            }
            if (cur(P)->kind != JT_NAME) { jx_fail(line, "expected an attribute name after '.'"); return NULL; }
            jx_node *y = node(P, JN_ATTR, line);
            if (!y) return NULL;
            y->a = x; y->name = cur(P)->s; P->i++;
            x = y;
        } else if (is_op(P, "[")) {
            P->i++;
            jx_node *parts[3] = {NULL, NULL, NULL};
            int colons = 0;
            for (;;) {
                if (is_op(P, "]")) break;
                if (is_op(P, ":")) {
                    if (++colons > 2) { jx_fail(line, "a slice has at most two ':'"); return NULL; }
                    P->i++;
                    continue;
                }
                if (parts[colons]) { jx_fail(line, "expected ']' or ':' in a subscript"); return NULL; }
                if (!(parts[colons] = parse_expr(P))) return NULL;
                if (is_op(P, ",")) { jx_fail(line, "tuple subscripts are not supported"); return NULL; }
            }
            P->i++;
            jx_node *y = node(P, colons ? JN_SLICE : JN_ITEM, line);
            if (!y) return NULL;
            if (!colons && !parts[0]) { jx_fail(line, "an empty subscript []"); return NULL; }
            y->a = x; y->b = parts[0]; y->c = parts[1]; y->d = parts[2];
            x = y;
        } else if (is_op(P, "(")) {
            jx_node *y = node(P, JN_CALL, line);
            if (!y) return NULL;
            y->a = x;
            if (parse_args(P, y)) return NULL;
            x = y;
        } else {
            break;
        }
    }
    return x;
}

static jx_node *parse_filters(parser *P, jx_node *x) {
    while (x) {
        int line = cur(P)->line;
        if (is_op(P, "|")) {
            P->i++;
            if (cur(P)->kind != JT_NAME) { jx_fail(line, "expected a filter name after '|'"); return NULL; }
            jx_node *y = node(P, JN_FILTER, line);
            if (!y) return NULL;
            y->a = x; y->name = cur(P)->s; P->i++;
            while (is_op(P, ".") && P->i + 1 < P->n && P->t[P->i + 1].kind == JT_NAME) { /* dotted filter names */
                jx_fail(line, "dotted filter names are not supported"); return NULL;
            }
            if (is_op(P, "(") && parse_args(P, y)) return NULL;
            x = y;
        } else if (is_name(P, "is")) {
            P->i++;
            jx_node *y = node(P, JN_TEST, line);
            if (!y) return NULL;
            if (is_name(P, "not")) { y->negate = 1; P->i++; }
            if (cur(P)->kind != JT_NAME) { jx_fail(line, "expected a test name after 'is'"); return NULL; }
            y->a = x; y->name = cur(P)->s; P->i++;
            if (is_op(P, "(")) {
                if (parse_args(P, y)) return NULL;
            } else if (cur(P)->kind == JT_STRING || cur(P)->kind == JT_INT || cur(P)->kind == JT_FLOAT ||
                       (cur(P)->kind == JT_NAME && !is_name(P, "and") && !is_name(P, "or") && !is_name(P, "else") &&
                        !is_name(P, "if") && !is_name(P, "in") && !is_name(P, "is") && !is_name(P, "not"))) {
                /* "x is divisibleby 3", "x is sameas none": one argument without parentheses */
                jx_node *arg = parse_primary(P);
                nodelist l = {0};
                if (nl_push(P, &l, parse_postfix(P, arg), NULL)) return NULL;
                y->args = l.v; y->kwnames = l.kw; y->n_args = l.n;
            }
            x = y;
        } else {
            break;
        }
    }
    return x;
}

static jx_node *parse_unary(parser *P) {
    int line = cur(P)->line;
    if (is_op(P, "-") || is_op(P, "+")) {
        int neg = is_op(P, "-");
        P->i++;
        if (++P->depth > 200) { jx_fail(line, "the expression is nested too deeply"); return NULL; }
        jx_node *x = node(P, neg ? JN_NEG : JN_POS, line);
        if (x && !(x->a = parse_unary(P))) return NULL;
        P->depth--;
        return parse_filters(P, x);
    }
    return parse_filters(P, parse_postfix(P, parse_primary(P)));
}

static jx_node *binop(parser *P, const char *op, int line, jx_node *a, jx_node *b) {
    if (!a || !b) return NULL;
    jx_node *x = node(P, JN_BINOP, line);
    if (x) { x->name = op; x->a = a; x->b = b; }
    return x;
}

static jx_node *parse_pow(parser *P) {
    jx_node *x = parse_unary(P);
    while (x && is_op(P, "**")) { int line = cur(P)->line; P->i++; x = binop(P, "**", line, x, parse_unary(P)); }
    return x;
}

static jx_node *parse_math2(parser *P) {
    jx_node *x = parse_pow(P);
    while (x && (is_op(P, "*") || is_op(P, "/") || is_op(P, "//") || is_op(P, "%"))) {
        const char *op = cur(P)->s; int line = cur(P)->line; P->i++;
        x = binop(P, op, line, x, parse_pow(P));
    }
    return x;
}

static jx_node *parse_math1(parser *P) {
    jx_node *x = parse_math2(P);
    while (x && (is_op(P, "+") || is_op(P, "-"))) {
        const char *op = cur(P)->s; int line = cur(P)->line; P->i++;
        x = binop(P, op, line, x, parse_math2(P));
    }
    return x;
}

static jx_node *parse_concat(parser *P) {
    jx_node *x = parse_math1(P);
    while (x && is_op(P, "~")) { int line = cur(P)->line; P->i++; x = binop(P, "~", line, x, parse_math1(P)); }
    return x;
}

static jx_node *parse_compare(parser *P) {
    jx_node *x = parse_concat(P);
    while (x) {
        int line = cur(P)->line;
        const char *op = NULL;
        if (is_op(P, "==") || is_op(P, "!=") || is_op(P, "<") || is_op(P, ">") || is_op(P, "<=") || is_op(P, ">=")) {
            op = cur(P)->s; P->i++;
        } else if (is_name(P, "in")) {
            op = "in"; P->i++;
        } else if (is_name(P, "not") && is_name_at(P, 1, "in")) {
            op = "not in"; P->i += 2;
        } else {
            break;
        }
        x = binop(P, op, line, x, parse_concat(P));
    }
    return x;
}

static jx_node *parse_not(parser *P) {
    if (is_name(P, "not")) {
        int line = cur(P)->line;
        P->i++;
        if (++P->depth > 200) { jx_fail(line, "the expression is nested too deeply"); return NULL; }
        jx_node *x = node(P, JN_NOT, line);
        if (x && !(x->a = parse_not(P))) return NULL;
        P->depth--;
        return x;
    }
    return parse_compare(P);
}

static jx_node *parse_and(parser *P) {
    jx_node *x = parse_not(P);
    while (x && is_name(P, "and")) { int line = cur(P)->line; P->i++; x = binop(P, "and", line, x, parse_not(P)); }
    return x;
}

static jx_node *parse_or(parser *P) {
    jx_node *x = parse_and(P);
    while (x && is_name(P, "or")) { int line = cur(P)->line; P->i++; x = binop(P, "or", line, x, parse_and(P)); }
    return x;
}

static jx_node *parse_expr(parser *P) {
    if (++P->depth > 200) { jx_fail(cur(P)->line, "the expression is nested too deeply"); return NULL; }
    jx_node *x = parse_or(P);
    while (x && is_name(P, "if")) {
        int line = cur(P)->line;
        P->i++;
        jx_node *y = node(P, JN_COND, line);
        if (!y) return NULL;
        y->a = parse_or(P);
        y->b = x;
        if (!y->a) return NULL;
        if (is_name(P, "else")) {
            P->i++;
            if (!(y->c = parse_or(P))) return NULL;
        }
        x = y;
    }
    P->depth--;
    return x;
}

/* ---- statements -------------------------------------------------------------------------------- */

/* Parses statements until a block tag whose name is in `ends` (NULL-terminated); leaves P at that
 * name (after "{%"). At the end of the template with ends: an error naming what was open. */
static cp_status parse_body(parser *P, const char *const *ends, const char *open, int open_line, nodelist *out);

static cp_status end_tag(parser *P) {
    if (cur(P)->kind != JT_BLOCK_END)
        return jx_fail(cur(P)->line, "expected the end of the tag, found %s", tok_desc(cur(P)));
    P->i++;
    return CP_OK;
}

static cp_status parse_if(parser *P, jx_node *x) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    if (!(x->a = parse_expr(P)) || end_tag(P)) return CP_ERR;
    nodelist body = {0};
    if (parse_body(P, ends, "if", x->line, &body)) return CP_ERR;
    x->body = body.v; x->n_body = body.n;
    if (is_name(P, "elif")) {
        jx_node *y = node(P, JN_IF, cur(P)->line);
        P->i++;
        if (!y || parse_if(P, y)) return CP_ERR;
        x->orelse = jx_alloc(P->h, sizeof *x->orelse);
        if (!x->orelse) return CP_ERR;
        x->orelse[0] = y; x->n_orelse = 1;
        return CP_OK;
    }
    if (is_name(P, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        P->i++;
        if (end_tag(P)) return CP_ERR;
        nodelist e = {0};
        if (parse_body(P, ends2, "if", x->line, &e)) return CP_ERR;
        x->orelse = e.v; x->n_orelse = e.n;
    }
    P->i++; /* endif */
    return end_tag(P);
}

static cp_status parse_for(parser *P, jx_node *x) {
    if (cur(P)->kind != JT_NAME) return jx_fail(x->line, "expected a loop variable after 'for'");
    x->name = cur(P)->s; P->i++;
    if (is_op(P, ",")) {
        P->i++;
        if (cur(P)->kind != JT_NAME) return jx_fail(x->line, "expected a second loop variable after ','");
        x->name2 = cur(P)->s; P->i++;
        if (is_op(P, ",")) return jx_fail(x->line, "more than two loop variables are not supported");
    }
    if (!is_name(P, "in")) return jx_fail(x->line, "expected 'in' in the for tag");
    P->i++;
    if (!(x->a = parse_or(P))) return CP_ERR; /* "for x in y if c": the if is the loop filter */
    if (is_name(P, "if")) { P->i++; if (!(x->c = parse_expr(P))) return CP_ERR; }
    if (is_name(P, "recursive")) return jx_fail(x->line, "recursive for loops are not supported");
    if (end_tag(P)) return CP_ERR;
    static const char *const ends[] = {"else", "endfor", NULL};
    nodelist body = {0};
    if (parse_body(P, ends, "for", x->line, &body)) return CP_ERR;
    x->body = body.v; x->n_body = body.n;
    if (is_name(P, "else")) {
        static const char *const ends2[] = {"endfor", NULL};
        P->i++;
        nodelist e = {0};
        if (end_tag(P) || parse_body(P, ends2, "for", x->line, &e)) return CP_ERR;
        x->orelse = e.v; x->n_orelse = e.n;
    }
    P->i++;
    return end_tag(P);
}

static cp_status parse_set(parser *P, jx_node *x) {
    if (cur(P)->kind != JT_NAME) return jx_fail(x->line, "expected a variable name after 'set'");
    x->name = cur(P)->s; P->i++;
    if (is_op(P, ".")) {
        P->i++;
        if (cur(P)->kind != JT_NAME) return jx_fail(x->line, "expected an attribute name in 'set %s.'", x->name);
        x->name2 = cur(P)->s; P->i++;
    }
    if (is_op(P, ",")) return jx_fail(x->line, "tuple assignment in set is not supported");
    if (cur(P)->kind == JT_BLOCK_END || is_op(P, "|")) {
        if (x->name2) return jx_fail(x->line, "a block set of a namespace attribute is not supported");
        if (is_op(P, "|")) return jx_fail(x->line, "filtered block set is not supported");
        P->i++;
        static const char *const ends[] = {"endset", NULL};
        nodelist body = {0};
        if (parse_body(P, ends, "set", x->line, &body)) return CP_ERR;
        x->kind = JN_SET_BLOCK;
        x->body = body.v; x->n_body = body.n;
        P->i++;
        return end_tag(P);
    }
    if (expect_op(P, "=") || !(x->a = parse_expr(P))) return CP_ERR;
    return end_tag(P);
}

static cp_status parse_statement(parser *P, nodelist *out) {
    const jx_token *t = cur(P);
    if (t->kind != JT_NAME) return jx_fail(t->line, "expected a statement name after '{%%', found %s", tok_desc(t));
    const char *nm = t->s;
    P->i++;
    jx_node *x = NULL;
    if (!strcmp(nm, "if")) {
        if (!(x = node(P, JN_IF, t->line)) || parse_if(P, x)) return CP_ERR;
    } else if (!strcmp(nm, "for")) {
        if (!(x = node(P, JN_FOR, t->line)) || parse_for(P, x)) return CP_ERR;
    } else if (!strcmp(nm, "set")) {
        if (!(x = node(P, JN_SET, t->line)) || parse_set(P, x)) return CP_ERR;
    } else if (!strcmp(nm, "break") || !strcmp(nm, "continue")) {
        if (!(x = node(P, nm[0] == 'b' ? JN_BREAK : JN_CONTINUE, t->line)) || end_tag(P)) return CP_ERR;
    } else if (!strcmp(nm, "generation")) {
        static const char *const ends[] = {"endgeneration", NULL};
        nodelist body = {0};
        if (!(x = node(P, JN_GENERATION, t->line)) || end_tag(P) || parse_body(P, ends, "generation", t->line, &body))
            return CP_ERR;
        x->body = body.v; x->n_body = body.n;
        P->i++;
        if (end_tag(P)) return CP_ERR;
    } else {
        static const char *const known[] = {"macro", "call", "filter", "include", "import", "from", "extends",
                                            "block", "raw", "with", "autoescape", "do", "trans", NULL};
        for (int k = 0; known[k]; k++)
            if (!strcmp(nm, known[k]))
                return jx_fail(t->line, "the statement {%% %s %%} is not supported by cpeft's template renderer", nm);
        return jx_fail(t->line, "unknown statement {%% %s %%}", nm);
    }
    return nl_push(P, out, x, NULL);
}

static cp_status parse_body(parser *P, const char *const *ends, const char *open, int open_line, nodelist *out) {
    if (++P->depth > 200) return jx_fail(cur(P)->line, "statements are nested too deeply");
    for (;;) {
        const jx_token *t = cur(P);
        if (t->kind == JT_EOF) {
            if (ends) return jx_fail(open_line, "the {%% %s %%} opened here is never closed", open);
            break;
        }
        if (t->kind == JT_TEXT) {
            jx_node *x = node(P, JN_TEXT, t->line);
            if (!x || !(x->value = jv_str(P->h, t->s, t->n)) || nl_push(P, out, x, NULL)) return CP_ERR;
            P->i++;
        } else if (t->kind == JT_VAR_BEGIN) {
            P->i++;
            jx_node *x = node(P, JN_OUTPUT, t->line);
            if (!x || !(x->a = parse_expr(P))) return CP_ERR;
            if (cur(P)->kind != JT_VAR_END) return jx_fail(cur(P)->line, "expected '}}', found %s", tok_desc(cur(P)));
            P->i++;
            if (nl_push(P, out, x, NULL)) return CP_ERR;
        } else if (t->kind == JT_BLOCK_BEGIN) {
            P->i++;
            if (cur(P)->kind == JT_NAME) {
                for (int k = 0; ends && ends[k]; k++)
                    if (!strcmp(cur(P)->s, ends[k])) { P->depth--; return CP_OK; }
                const char *nm = cur(P)->s;
                if (!strncmp(nm, "end", 3) || !strcmp(nm, "elif") || !strcmp(nm, "else"))
                    return jx_fail(cur(P)->line, "unexpected {%% %s %%}%s%s", nm, ends ? " inside " : "", ends ? open : "");
            }
            if (parse_statement(P, out)) return CP_ERR;
        } else {
            return jx_fail(t->line, "unexpected %s", tok_desc(t));
        }
    }
    P->depth--;
    return CP_OK;
}

cp_status jx_parse(jx_heap *h, const jx_token *toks, size_t n, jx_template *out) {
    parser P = {.h = h, .t = toks, .n = n};
    nodelist body = {0};
    memset(out, 0, sizeof *out);
    if (parse_body(&P, NULL, NULL, 0, &body)) return CP_ERR;
    if (h->failed) return CP_ERR;
    out->body = body.v;
    out->n = body.n;
    return CP_OK;
}
