/*
 * jinja_eval.c — running a parsed chat template: statements, scopes, expressions and Python's
 * operators. Scopes are jinja2's: the template's top level is one scope, {% if %} opens none, each
 * iteration of a {% for %} opens one that ends with it (so a {% set %} inside a loop is not seen after
 * it — templates use namespace() for that); a namespace attribute set anywhere is seen everywhere.
 * Names not found are Undefined: printed as "", false, "is defined" false; an attribute or item of
 * one, or arithmetic on one, is the error jinja2 raises ("'x' is undefined").
 *
 * Work is bounded: at most JX_MAX_STEPS loop iterations and output bytes in all, so a template cannot
 * run away (jinja2's sandbox bounds range() the same way).
 */
#include "chat/jinja.h"
#include "core/alloc.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define JX_MAX_STEPS 10000000
#define JX_MAX_OUTPUT (64u << 20)

enum { FLOW_OK = 0, FLOW_ERR = -1, FLOW_BREAK = 1, FLOW_CONTINUE = 2 };

struct jx_eval {
    jx_heap *h;
    jx_result *res;
    jv **frames;
    size_t n_frames, cap_frames;
    int64_t steps;
    int in_loop;
};

cp_status jx_fail(int line, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cp_error("chat template line %d: %s", line, msg);
}

static jv *lookup(jx_eval *E, const char *name) {
    for (size_t k = E->n_frames; k-- > 0;) {
        jv *v = jv_dict_get(E->frames[k], name);
        if (v) return v;
    }
    jv *g = jx_global(E->h, name);
    return g ? g : jv_undef(E->h, name);
}

static cp_status push_frame(jx_eval *E) {
    if (cp_grow(&E->frames, &E->cap_frames, E->n_frames + 1, sizeof *E->frames, 8, "template scopes")) return CP_ERR;
    if (!(E->frames[E->n_frames] = jv_new(E->h, JV_DICT))) return CP_ERR;
    E->n_frames++;
    return CP_OK;
}

static jv *eval(jx_eval *E, const jx_node *x);

static cp_status undefined_error(int line, const jv *u) {
    return jx_fail(line, "'%s' is undefined", u->s ? u->s : "value");
}

/* Python's a[i] with a negative index counted from the end; 0 when out of range. */
static int norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return 0;
    *out = (size_t)i;
    return 1;
}

/* Code point k of a UTF-8 string: [*s, *s + *n). */
static void utf8_at(const char *s, size_t len, size_t k, size_t *off, size_t *n) {
    size_t i = 0, c = 0;
    while (i < len && c < k) { i++; while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80) i++; c++; }
    size_t e = i + 1;
    while (e < len && ((unsigned char)s[e] & 0xC0) == 0x80) e++;
    *off = i;
    *n = (e < len ? e : len) - i;
}

/* obj[key] as jinja2's getitem: dict by key, list / str by index; an attribute when no item. */
static jv *get_item(jx_eval *E, int line, jv *obj, jv *key) {
    if (obj->kind == JV_UNDEF) { undefined_error(line, obj); return NULL; }
    if ((obj->kind == JV_DICT || obj->kind == JV_NS) && key->kind == JV_STR) {
        jv *v = jv_dict_get(obj, key->s);
        if (v) return v;
        if (obj->kind == JV_DICT) { jv *m = jx_method(E->h, obj, key->s); if (m) return m; }
        return jv_undef(E->h, key->s);
    }
    if ((obj->kind == JV_LIST || obj->kind == JV_STR) && (key->kind == JV_INT || key->kind == JV_BOOL)) {
        size_t n = obj->kind == JV_LIST ? obj->len : jx_utf8_count(obj->s, obj->n), k;
        if (!norm_index(key->i, n, &k)) return jv_undef(E->h, "index out of range");
        if (obj->kind == JV_LIST) return obj->items[k];
        size_t off, len;
        utf8_at(obj->s, obj->n, k, &off, &len);
        return jv_str(E->h, obj->s + off, len);
    }
    if (key->kind == JV_STR) {
        jv *m = jx_method(E->h, obj, key->s);
        if (m) return m;
    }
    return jv_undef(E->h, "item");
}

static jv *get_attr(jx_eval *E, int line, jv *obj, const char *name) {
    if (obj->kind == JV_UNDEF) { undefined_error(line, obj); return NULL; }
    if (name[0] == '_') { jx_fail(line, "access to the attribute '%s' is unsafe (jinja2's sandbox refuses it)", name); return NULL; }
    jv *m = jx_method(E->h, obj, name); /* jinja2: getattr first, then the item */
    if (m) return m;
    if (obj->kind == JV_DICT || obj->kind == JV_NS) {
        jv *v = jv_dict_get(obj, name);
        return v ? v : jv_undef(E->h, name);
    }
    return jv_undef(E->h, name);
}

/* Python slicing obj[a:b:c] of a list or a string (by code points). */
static jv *slice(jx_eval *E, int line, jv *obj, jv *a, jv *b, jv *c) {
    if (obj->kind != JV_LIST && obj->kind != JV_STR) { jx_fail(line, "cannot slice a %s", jv_type_name(obj)); return NULL; }
    jv *parts[3] = {a, b, c};
    for (int k = 0; k < 3; k++)
        if (parts[k] && parts[k]->kind != JV_NONE && parts[k]->kind != JV_INT && parts[k]->kind != JV_BOOL) {
            jx_fail(line, "slice indices must be integers or None"); return NULL;
        }
    int64_t step = (c && c->kind != JV_NONE) ? c->i : 1;
    if (step == 0) { jx_fail(line, "slice step cannot be zero"); return NULL; }
    int64_t n = (int64_t)(obj->kind == JV_LIST ? obj->len : jx_utf8_count(obj->s, obj->n));
    int64_t lo, hi;
    #define CLAMP(v, dflt_pos, dflt_neg) ((v) && (v)->kind != JV_NONE ? \
        ((v)->i < 0 ? ((v)->i + n < (step < 0 ? -1 : 0) ? (step < 0 ? -1 : 0) : (v)->i + n) : ((v)->i > (step < 0 ? n - 1 : n) ? (step < 0 ? n - 1 : n) : (v)->i)) \
        : (step > 0 ? (dflt_pos) : (dflt_neg)))
    lo = CLAMP(a, 0, n - 1);
    hi = CLAMP(b, n, -1);
    #undef CLAMP
    jv *out = jv_new(E->h, obj->kind == JV_LIST ? JV_LIST : JV_STR);
    if (!out) return NULL;
    cp_strbuf sb;
    cp_sb_init(&sb);
    size_t *offs = NULL;
    if (obj->kind == JV_STR) { /* code point offsets */
        offs = cp_malloc(((size_t)n + 1) * sizeof *offs, "string offsets");
        if (!offs) return NULL;
        size_t k = 0;
        for (size_t i = 0; i < obj->n; i++)
            if (((unsigned char)obj->s[i] & 0xC0) != 0x80) offs[k++] = i;
        offs[n] = obj->n;
    }
    for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) {
        if (obj->kind == JV_LIST) { if (jv_list_push(E->h, out, obj->items[i])) { out = NULL; break; } }
        else cp_sb_append_n(&sb, obj->s + offs[i], offs[i + 1] - offs[i]);
    }
    cp_free(offs);
    if (out && obj->kind == JV_STR) out = jv_str(E->h, sb.data ? sb.data : "", sb.len);
    cp_sb_free(&sb);
    return out;
}

static jv *concat_str(jx_eval *E, jv *a, jv *b) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    jv_to_str(a, &sb);
    jv_to_str(b, &sb);
    jv *r = jv_str(E->h, sb.data ? sb.data : "", sb.len);
    cp_sb_free(&sb);
    return r;
}

static int contains(const jv *hay, const jv *needle, int *out) {
    if (hay->kind == JV_STR) {
        if (needle->kind != JV_STR) return 0;
        *out = needle->n == 0 || (needle->n <= hay->n && memmem(hay->s, hay->n, needle->s, needle->n) != NULL);
        return 1;
    }
    if (hay->kind == JV_LIST) {
        *out = 0;
        for (size_t i = 0; i < hay->len; i++) if (jv_equal(hay->items[i], needle)) { *out = 1; break; }
        return 1;
    }
    if (hay->kind == JV_DICT || hay->kind == JV_NS) {
        *out = needle->kind == JV_STR && jv_dict_get(hay, needle->s) != NULL;
        return 1;
    }
    return 0;
}

static int compare_order(const jv *a, const jv *b, int *cmp) {
    if (jv_is_number(a) && jv_is_number(b)) {
        double x = jv_num(a), y = jv_num(b);
        if (a->kind != JV_FLOAT && b->kind != JV_FLOAT) *cmp = a->i < b->i ? -1 : a->i > b->i;
        else *cmp = x < y ? -1 : x > y;
        return 1;
    }
    if (a->kind == JV_STR && b->kind == JV_STR) {
        size_t m = a->n < b->n ? a->n : b->n;
        int c = memcmp(a->s, b->s, m);
        *cmp = c ? (c < 0 ? -1 : 1) : (a->n < b->n ? -1 : a->n > b->n);
        return 1;
    }
    return 0;
}

static jv *arith(jx_eval *E, int line, const char *op, jv *a, jv *b) {
    if (a->kind == JV_UNDEF) { undefined_error(line, a); return NULL; }
    if (b->kind == JV_UNDEF) { undefined_error(line, b); return NULL; }
    if (!strcmp(op, "+")) {
        if (a->kind == JV_STR && b->kind == JV_STR) return concat_str(E, a, b);
        if (a->kind == JV_LIST && b->kind == JV_LIST) {
            jv *l = jv_new(E->h, JV_LIST);
            for (size_t i = 0; l && i < a->len; i++) if (jv_list_push(E->h, l, a->items[i])) return NULL;
            for (size_t i = 0; l && i < b->len; i++) if (jv_list_push(E->h, l, b->items[i])) return NULL;
            return l;
        }
    }
    if (!strcmp(op, "*") && ((a->kind == JV_STR && b->kind == JV_INT) || (a->kind == JV_INT && b->kind == JV_STR))) {
        jv *s = a->kind == JV_STR ? a : b;
        int64_t k = a->kind == JV_INT ? a->i : b->i;
        if (k > 0 && (uint64_t)k * s->n > JX_MAX_OUTPUT) { jx_fail(line, "the repeated string is too long"); return NULL; }
        cp_strbuf sb;
        cp_sb_init(&sb);
        for (int64_t i = 0; i < k; i++) cp_sb_append_n(&sb, s->s, s->n);
        jv *r = jv_str(E->h, sb.data ? sb.data : "", sb.len);
        cp_sb_free(&sb);
        return r;
    }
    if (!jv_is_number(a) || !jv_is_number(b)) {
        jx_fail(line, "unsupported operand types for %s: '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
        return NULL;
    }
    int ints = a->kind != JV_FLOAT && b->kind != JV_FLOAT;
    double x = jv_num(a), y = jv_num(b);
    if (!strcmp(op, "/")) {
        if (y == 0) { jx_fail(line, "division by zero"); return NULL; }
        return jv_float(E->h, x / y);
    }
    if (!strcmp(op, "//") || !strcmp(op, "%")) {
        if (y == 0) { jx_fail(line, "integer division or modulo by zero"); return NULL; }
        if (ints) {
            if (b->i == -1 && a->i == INT64_MIN) { jx_fail(line, "integer overflow"); return NULL; }
            int64_t q = a->i / b->i, r = a->i % b->i;
            if (r != 0 && ((r < 0) != (b->i < 0))) { q--; r += b->i; }
            return jv_int(E->h, op[0] == '%' ? r : q);
        }
        double q = floor(x / y);
        return jv_float(E->h, op[0] == '%' ? x - q * y : q);
    }
    if (!strcmp(op, "**")) return ints && b->i >= 0 && b->i < 64 ? jv_int(E->h, (int64_t)pow(x, y)) : jv_float(E->h, pow(x, y));
    if (ints) {
        int64_t r;
        int ovf = op[0] == '+' ? __builtin_add_overflow(a->i, b->i, &r)
                : op[0] == '-' ? __builtin_sub_overflow(a->i, b->i, &r) : __builtin_mul_overflow(a->i, b->i, &r);
        if (ovf) { jx_fail(line, "integer overflow"); return NULL; }
        return jv_int(E->h, r);
    }
    return jv_float(E->h, op[0] == '+' ? x + y : op[0] == '-' ? x - y : x * y);
}

static jv *binop(jx_eval *E, const jx_node *x) {
    const char *op = x->name;
    jv *a = eval(E, x->a);
    if (!a) return NULL;
    if (!strcmp(op, "and")) return jv_truthy(a) ? eval(E, x->b) : a;
    if (!strcmp(op, "or")) return jv_truthy(a) ? a : eval(E, x->b);
    jv *b = eval(E, x->b);
    if (!b) return NULL;
    if (!strcmp(op, "~")) return concat_str(E, a, b);
    if (!strcmp(op, "==")) return jv_bool(E->h, jv_equal(a, b));
    if (!strcmp(op, "!=")) return jv_bool(E->h, !jv_equal(a, b));
    if (!strcmp(op, "in") || !strcmp(op, "not in")) {
        int r;
        if (b->kind == JV_UNDEF) { undefined_error(x->line, b); return NULL; }
        if (!contains(b, a, &r)) {
            jx_fail(x->line, "'in <%s>' requires %s", jv_type_name(b), b->kind == JV_STR ? "a string as left operand" : "a container");
            return NULL;
        }
        return jv_bool(E->h, op[0] == 'n' ? !r : r);
    }
    if (op[0] == '<' || op[0] == '>') {
        int c;
        if (!compare_order(a, b, &c)) {
            jx_fail(x->line, "'%s' not supported between instances of '%s' and '%s'", op, jv_type_name(a), jv_type_name(b));
            return NULL;
        }
        int r = !strcmp(op, "<") ? c < 0 : !strcmp(op, "<=") ? c <= 0 : !strcmp(op, ">") ? c > 0 : c >= 0;
        return jv_bool(E->h, r);
    }
    return arith(E, x->line, op, a, b);
}

static cp_status eval_args(jx_eval *E, const jx_node *x, jv ***out) {
    *out = x->n_args ? jx_alloc(E->h, x->n_args * sizeof **out) : NULL;
    if (x->n_args && !*out) return CP_ERR;
    for (size_t i = 0; i < x->n_args; i++)
        if (!((*out)[i] = eval(E, x->args[i]))) return CP_ERR;
    return CP_OK;
}

static jv *eval(jx_eval *E, const jx_node *x) {
    jv *v, **args;
    switch (x->kind) {
    case JN_CONST: return x->value;
    case JN_NAME: return lookup(E, x->name);
    case JN_ATTR: return (v = eval(E, x->a)) ? get_attr(E, x->line, v, x->name) : NULL;
    case JN_ITEM: {
        jv *k;
        if (!(v = eval(E, x->a)) || !(k = eval(E, x->b))) return NULL;
        return get_item(E, x->line, v, k);
    }
    case JN_SLICE: {
        jv *a = NULL, *b = NULL, *c = NULL;
        if (!(v = eval(E, x->a))) return NULL;
        if ((x->b && !(a = eval(E, x->b))) || (x->c && !(b = eval(E, x->c))) || (x->d && !(c = eval(E, x->d)))) return NULL;
        if (v->kind == JV_UNDEF) { undefined_error(x->line, v); return NULL; }
        return slice(E, x->line, v, a, b, c);
    }
    case JN_CALL: {
        if (!(v = eval(E, x->a)) || eval_args(E, x, &args)) return NULL;
        if (v->kind == JV_UNDEF) { jx_fail(x->line, "'%s' is undefined (not a function cpeft's renderer knows)", v->s ? v->s : "value"); return NULL; }
        jv *r;
        return jx_call(E->h, x->line, v, args, x->kwnames, x->n_args, &r) ? NULL : r;
    }
    case JN_FILTER: {
        if (!(v = eval(E, x->a)) || eval_args(E, x, &args)) return NULL;
        jv *r;
        return jx_filter(E->h, x->line, x->name, v, args, x->kwnames, x->n_args, &r) ? NULL : r;
    }
    case JN_TEST: {
        if (!(v = eval(E, x->a)) || eval_args(E, x, &args)) return NULL;
        int r;
        if (jx_test(E->h, x->line, x->name, v, args, x->n_args, &r)) return NULL;
        return jv_bool(E->h, x->negate ? !r : r);
    }
    case JN_BINOP: return binop(E, x);
    case JN_NOT: return (v = eval(E, x->a)) ? jv_bool(E->h, !jv_truthy(v)) : NULL;
    case JN_NEG: case JN_POS:
        if (!(v = eval(E, x->a))) return NULL;
        if (!jv_is_number(v)) { jx_fail(x->line, "bad operand type for unary %c: '%s'", x->kind == JN_NEG ? '-' : '+', jv_type_name(v)); return NULL; }
        if (x->kind == JN_POS) return v;
        if (v->kind == JV_FLOAT) return jv_float(E->h, -v->f);
        if (v->i == INT64_MIN) { jx_fail(x->line, "integer overflow"); return NULL; }
        return jv_int(E->h, -v->i);
    case JN_COND:
        if (!(v = eval(E, x->a))) return NULL;
        if (jv_truthy(v)) return eval(E, x->b);
        return x->c ? eval(E, x->c) : jv_undef(E->h, "conditional expression");
    case JN_LIST: {
        jv *l = jv_new(E->h, JV_LIST);
        for (size_t i = 0; l && i < x->n_args; i++) {
            jv *it = eval(E, x->args[i]);
            if (!it || jv_list_push(E->h, l, it)) return NULL;
        }
        return l;
    }
    case JN_DICT: {
        jv *d = jv_new(E->h, JV_DICT);
        for (size_t i = 0; d && i + 1 < x->n_args; i += 2) {
            jv *k = eval(E, x->args[i]), *val = k ? eval(E, x->args[i + 1]) : NULL;
            if (!val) return NULL;
            if (k->kind != JV_STR) { jx_fail(x->line, "dict keys other than strings are not supported"); return NULL; }
            if (jv_dict_set(E->h, d, k->s, val)) return NULL;
        }
        return d;
    }
    default:
        jx_fail(x->line, "internal: a statement where an expression was expected");
        return NULL;
    }
}

static int run(jx_eval *E, jx_node *const *body, size_t n);

static cp_status output(jx_eval *E, int line, const jv *v) {
    jv_to_str(v, &E->res->out);
    if (E->res->out.len > JX_MAX_OUTPUT) return jx_fail(line, "the rendered text passes %u bytes", JX_MAX_OUTPUT);
    return CP_OK;
}

/* The items a for loop walks: a list, a string's characters, a dict's keys. */
static jv *iterable(jx_eval *E, int line, jv *v) {
    if (v->kind == JV_LIST) return v;
    if (v->kind == JV_UNDEF) { undefined_error(line, v); return NULL; }
    jv *l = jv_new(E->h, JV_LIST);
    if (!l) return NULL;
    if (v->kind == JV_DICT) {
        for (size_t i = 0; i < v->len; i++) if (jv_list_push(E->h, l, jv_cstr(E->h, v->keys[i]))) return NULL;
        return l;
    }
    if (v->kind == JV_STR) {
        for (size_t i = 0; i < v->n;) {
            size_t e = i + 1;
            while (e < v->n && ((unsigned char)v->s[e] & 0xC0) == 0x80) e++;
            if (jv_list_push(E->h, l, jv_str(E->h, v->s + i, e - i))) return NULL;
            i = e;
        }
        return l;
    }
    jx_fail(line, "'%s' object is not iterable", jv_type_name(v));
    return NULL;
}

static int run_for(jx_eval *E, const jx_node *x) {
    jv *src = eval(E, x->a);
    if (!src || !(src = iterable(E, x->line, src))) return FLOW_ERR;
    /* the loop filter picks the items first: loop.length and loop.last count only those */
    jv *items = src;
    if (x->c) {
        items = jv_new(E->h, JV_LIST);
        if (!items || push_frame(E)) return FLOW_ERR;
        for (size_t i = 0; i < src->len; i++) {
            E->frames[E->n_frames - 1]->len = 0;
            if (jv_dict_set(E->h, E->frames[E->n_frames - 1], x->name, src->items[i])) return FLOW_ERR;
            jv *c = eval(E, x->c);
            if (!c) return FLOW_ERR;
            if (jv_truthy(c) && jv_list_push(E->h, items, src->items[i])) return FLOW_ERR;
        }
        E->n_frames--;
        if (x->name2) return jx_fail(x->line, "a loop filter with two loop variables is not supported"), FLOW_ERR;
    }
    size_t n = items->len, base = E->n_frames;
    for (size_t i = 0; i < n; i++) {
        if (++E->steps > JX_MAX_STEPS) return jx_fail(x->line, "the template runs more than %d loop steps", JX_MAX_STEPS), FLOW_ERR;
        if (push_frame(E)) return FLOW_ERR;
        jv *f = E->frames[E->n_frames - 1], *it = items->items[i];
        jv *loop = jv_new(E->h, JV_DICT);
        if (!loop) return FLOW_ERR;
        if (jv_dict_set(E->h, loop, "index0", jv_int(E->h, (int64_t)i)) ||
            jv_dict_set(E->h, loop, "index", jv_int(E->h, (int64_t)i + 1)) ||
            jv_dict_set(E->h, loop, "revindex", jv_int(E->h, (int64_t)(n - i))) ||
            jv_dict_set(E->h, loop, "revindex0", jv_int(E->h, (int64_t)(n - i - 1))) ||
            jv_dict_set(E->h, loop, "first", jv_bool(E->h, i == 0)) ||
            jv_dict_set(E->h, loop, "last", jv_bool(E->h, i + 1 == n)) ||
            jv_dict_set(E->h, loop, "length", jv_int(E->h, (int64_t)n)) ||
            jv_dict_set(E->h, loop, "depth", jv_int(E->h, 1)) || jv_dict_set(E->h, loop, "depth0", jv_int(E->h, 0)) ||
            jv_dict_set(E->h, loop, "previtem", i ? items->items[i - 1] : jv_undef(E->h, "there is no previous item")) ||
            jv_dict_set(E->h, loop, "nextitem", i + 1 < n ? items->items[i + 1] : jv_undef(E->h, "there is no next item")) ||
            jv_dict_set(E->h, f, "loop", loop))
            return FLOW_ERR;
        if (x->name2) {
            if (it->kind != JV_LIST || it->len != 2)
                return jx_fail(x->line, "cannot unpack a %s into two loop variables", jv_type_name(it)), FLOW_ERR;
            if (jv_dict_set(E->h, f, x->name, it->items[0]) || jv_dict_set(E->h, f, x->name2, it->items[1])) return FLOW_ERR;
        } else if (jv_dict_set(E->h, f, x->name, it)) {
            return FLOW_ERR;
        }
        int in_loop = E->in_loop;
        E->in_loop = 1;
        int r = run(E, x->body, x->n_body);
        E->in_loop = in_loop;
        E->n_frames = base;
        if (r == FLOW_ERR) return r;
        if (r == FLOW_BREAK) break;
    }
    if (n == 0 && x->n_orelse) return run(E, x->orelse, x->n_orelse);
    return FLOW_OK;
}

static int run_one(jx_eval *E, const jx_node *x) {
    jv *v;
    switch (x->kind) {
    case JN_TEXT: return output(E, x->line, x->value) ? FLOW_ERR : FLOW_OK;
    case JN_OUTPUT: return (v = eval(E, x->a)) && !output(E, x->line, v) ? FLOW_OK : FLOW_ERR;
    case JN_IF:
        if (!(v = eval(E, x->a))) return FLOW_ERR;
        return jv_truthy(v) ? run(E, x->body, x->n_body) : run(E, x->orelse, x->n_orelse);
    case JN_FOR: return run_for(E, x);
    case JN_SET: {
        if (!(v = eval(E, x->a))) return FLOW_ERR;
        if (x->name2) {
            jv *ns = lookup(E, x->name);
            if (ns->kind != JV_NS)
                return jx_fail(x->line, "cannot assign attribute on a non-namespace object ('%s' is %s)", x->name, jv_type_name(ns)), FLOW_ERR;
            if (x->name2[0] == '_') return jx_fail(x->line, "namespace attributes cannot start with '_'"), FLOW_ERR;
            return jv_dict_set(E->h, ns, x->name2, v) ? FLOW_ERR : FLOW_OK;
        }
        return jv_dict_set(E->h, E->frames[E->n_frames - 1], x->name, v) ? FLOW_ERR : FLOW_OK;
    }
    case JN_SET_BLOCK: {
        cp_strbuf saved = E->res->out;
        cp_sb_init(&E->res->out);
        size_t n_spans = E->res->n_spans;
        int r = run(E, x->body, x->n_body);
        cp_strbuf inner = E->res->out;
        E->res->out = saved;
        E->res->n_spans = n_spans; /* a generation block captured into a variable marks nothing */
        v = r == FLOW_OK ? jv_str(E->h, inner.data ? inner.data : "", inner.len) : NULL;
        cp_sb_free(&inner);
        if (r != FLOW_OK) return r;
        return !v || jv_dict_set(E->h, E->frames[E->n_frames - 1], x->name, v) ? FLOW_ERR : FLOW_OK;
    }
    case JN_GENERATION: {
        size_t start = E->res->out.len;
        int r = run(E, x->body, x->n_body);
        if (r == FLOW_ERR) return r;
        jx_result *res = E->res;
        if (cp_grow(&res->spans, &res->spans_cap, res->n_spans + 1, sizeof *res->spans, 8, "generation spans")) return FLOW_ERR;
        res->spans[res->n_spans++] = (jx_span){start, res->out.len};
        return r;
    }
    case JN_BREAK: case JN_CONTINUE:
        if (!E->in_loop) return jx_fail(x->line, "{%% %s %%} outside a loop", x->kind == JN_BREAK ? "break" : "continue"), FLOW_ERR;
        return x->kind == JN_BREAK ? FLOW_BREAK : FLOW_CONTINUE;
    default:
        return jx_fail(x->line, "internal: an expression where a statement was expected"), FLOW_ERR;
    }
}

static int run(jx_eval *E, jx_node *const *body, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int r = run_one(E, body[i]);
        if (r != FLOW_OK) return r;
    }
    return FLOW_OK;
}

cp_status jx_render(jx_heap *h, const jx_template *t, jv *vars, jx_result *res) {
    memset(res, 0, sizeof *res);
    cp_sb_init(&res->out);
    jx_eval E = {.h = h, .res = res};
    cp_status st = CP_ERR;
    if (push_frame(&E) == CP_OK) {
        E.frames[0] = vars;
        if (push_frame(&E) == CP_OK) {
            int r = run(&E, t->body, t->n);
            st = r == FLOW_ERR ? CP_ERR : CP_OK;
        }
    }
    cp_free(E.frames);
    if (st == CP_OK && (res->out.failed || h->failed)) st = cp_error("chat template: out of memory");
    return st;
}

void jx_result_free(jx_result *res) {
    cp_sb_free(&res->out);
    cp_free(res->spans);
    memset(res, 0, sizeof *res);
}
