/*
 * jinja_builtins.c — the filters, tests, string / dict methods and globals chat templates use, each
 * as jinja2 (and transformers' environment) defines it. An unknown one is refused by name.
 *
 * Filters: trim, length / count, lower, upper, capitalize, title, tojson (transformers': json.dumps,
 *   ensure_ascii=False, indent, sort_keys), default / d, first, last, join, list, string, int, float,
 *   replace, reverse, items, safe, abs.
 * Tests: defined, undefined, none, string, number, integer, float, boolean, true, false, mapping,
 *   iterable, sequence, callable, equalto / eq / ==, ne, odd, even, divisibleby, in, sameas, lower, upper.
 * Methods: str strip / lstrip / rstrip / split / startswith / endswith / upper / lower / replace /
 *   title / capitalize / find / count; dict items / keys / values / get.
 * Globals: raise_exception, namespace, dict, range.
 */
#include "chat/jinja.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const METHODS_STR[] = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                          "lower", "replace", "title", "capitalize", "find", "count", NULL};
static const char *const METHODS_DICT[] = {"items", "keys", "values", "get", NULL};
static const char *const GLOBALS[] = {"raise_exception", "namespace", "dict", "range", "strftime_now", NULL};

static int in_list(const char *const *l, const char *s) {
    for (; *l; l++) if (!strcmp(*l, s)) return 1;
    return 0;
}

jv *jx_method(jx_heap *h, jv *obj, const char *name) {
    if (!((obj->kind == JV_STR && in_list(METHODS_STR, name)) || (obj->kind == JV_DICT && in_list(METHODS_DICT, name))))
        return NULL;
    jv *m = jv_new(h, JV_METHOD);
    if (m) { m->s = name; m->self = obj; }
    return m;
}

jv *jx_global(jx_heap *h, const char *name) {
    if (!in_list(GLOBALS, name)) return NULL;
    jv *f = jv_new(h, JV_FUNC);
    if (f) f->s = name;
    return f;
}

static jv *mkstr(jx_heap *h, cp_strbuf *sb) {
    jv *r = jv_str(h, sb->data ? sb->data : "", sb->len);
    cp_sb_free(sb);
    return r;
}

/* Python's str.isspace for one code point at s (n bytes). */
static size_t space_len(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    if (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) return 1;
    static const char *const U[] = {"\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9",
                                    "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80", NULL};
    for (int k = 0; U[k]; k++) {
        size_t m = strlen(U[k]);
        if (n >= m && !memcmp(s, U[k], m)) return m;
    }
    if (n >= 3 && (unsigned char)s[0] == 0xe2 && (unsigned char)s[1] == 0x80 && (unsigned char)s[2] >= 0x80 &&
        (unsigned char)s[2] <= 0x8a) return 3;
    return 0;
}

static size_t cp_len_at(const char *s, size_t n) {
    size_t e = 1;
    while (e < n && ((unsigned char)s[e] & 0xC0) == 0x80) e++;
    return e;
}

/* Whether the code point at s is one of chars' code points. */
static size_t in_chars(const char *s, size_t n, const jv *chars) {
    size_t m = cp_len_at(s, n);
    for (size_t i = 0; i < chars->n;) {
        size_t k = cp_len_at(chars->s + i, chars->n - i);
        if (k == m && !memcmp(chars->s + i, s, m)) return m;
        i += k;
    }
    return 0;
}

static size_t strip_unit(const char *s, size_t n, const jv *chars) { return chars ? in_chars(s, n, chars) : space_len(s, n); }

/* str.strip / lstrip / rstrip with optional chars (None: whitespace). */
static jv *strip(jx_heap *h, const jv *x, int left, int right, const jv *chars) {
    size_t a = 0, b = x->n, k;
    if (left) while (a < b && (k = strip_unit(x->s + a, b - a, chars))) a += k;
    if (right)
        while (b > a) {
            size_t s = b - 1;
            while (s > a && ((unsigned char)x->s[s] & 0xC0) == 0x80) s--;
            if (!strip_unit(x->s + s, b - s, chars)) break;
            b = s;
        }
    return jv_str(h, x->s + a, b - a);
}

static jv *case_map(jx_heap *h, const jv *x, int mode /* 0 lower 1 upper 2 title 3 capitalize */) {
    char *o = jx_strndup(h, x->s, x->n);
    if (!o) return NULL;
    int prev_alpha = 0;
    for (size_t i = 0; i < x->n; i++) {
        unsigned char c = (unsigned char)o[i];
        if (c >= 0x80) { prev_alpha = 1; continue; } /* ASCII case mapping only */
        if (mode == 0) o[i] = (char)tolower(c);
        else if (mode == 1) o[i] = (char)toupper(c);
        else if (mode == 2) { o[i] = (char)(prev_alpha ? tolower(c) : toupper(c)); prev_alpha = isalpha(c) != 0; }
        else o[i] = (char)(i == 0 ? toupper(c) : tolower(c));
    }
    jv *r = jv_new(h, JV_STR);
    if (r) { r->s = o; r->n = x->n; }
    return r;
}

static jv *replace(jx_heap *h, const jv *x, const jv *old, const jv *new_, int64_t count) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    size_t i = 0;
    int64_t done = 0;
    if (old->n == 0) { /* Python inserts new between every code point */
        while (i <= x->n && (count < 0 || done < count)) {
            cp_sb_append_n(&sb, new_->s, new_->n);
            done++;
            if (i == x->n) { i++; break; }
            size_t k = cp_len_at(x->s + i, x->n - i);
            cp_sb_append_n(&sb, x->s + i, k);
            i += k;
        }
        if (i < x->n) cp_sb_append_n(&sb, x->s + i, x->n - i);
        return mkstr(h, &sb);
    }
    while (i < x->n) {
        const char *p = (count < 0 || done < count) ? memmem(x->s + i, x->n - i, old->s, old->n) : NULL;
        if (!p) { cp_sb_append_n(&sb, x->s + i, x->n - i); break; }
        cp_sb_append_n(&sb, x->s + i, (size_t)(p - (x->s + i)));
        cp_sb_append_n(&sb, new_->s, new_->n);
        i = (size_t)(p - x->s) + old->n;
        done++;
    }
    return mkstr(h, &sb);
}

static jv *split(jx_heap *h, int line, const jv *x, const jv *sep, int64_t maxsplit) {
    jv *l = jv_new(h, JV_LIST);
    if (!l) return NULL;
    if (sep && sep->kind == JV_STR) {
        if (sep->n == 0) { jx_fail(line, "split: empty separator"); return NULL; }
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *p = (maxsplit < 0 || done < maxsplit) ? memmem(x->s + i, x->n - i, sep->s, sep->n) : NULL;
            if (!p) { if (jv_list_push(h, l, jv_str(h, x->s + i, x->n - i))) return NULL; break; }
            if (jv_list_push(h, l, jv_str(h, x->s + i, (size_t)(p - (x->s + i))))) return NULL;
            i = (size_t)(p - x->s) + sep->n;
            done++;
        }
        return l;
    }
    size_t i = 0, k;
    int64_t done = 0;
    while (i < x->n) {
        while (i < x->n && (k = space_len(x->s + i, x->n - i))) i += k;
        if (i >= x->n) break;
        if (maxsplit >= 0 && done >= maxsplit) {
            size_t b = x->n;
            while (b > i) { size_t s = b - 1; while (s > i && ((unsigned char)x->s[s] & 0xC0) == 0x80) s--; if (!space_len(x->s + s, b - s)) break; b = s; }
            if (jv_list_push(h, l, jv_str(h, x->s + i, b - i))) return NULL;
            break;
        }
        size_t s = i;
        while (i < x->n && !space_len(x->s + i, x->n - i)) i += cp_len_at(x->s + i, x->n - i);
        if (jv_list_push(h, l, jv_str(h, x->s + s, i - s))) return NULL;
        done++;
    }
    return l;
}

static jv *kwarg(jv **args, const char **kw, size_t n, const char *name, size_t pos) {
    for (size_t i = 0; i < n; i++) if (kw && kw[i] && !strcmp(kw[i], name)) return args[i];
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        if (kw && kw[i]) continue;
        if (p++ == pos) return args[i];
    }
    return NULL;
}

static cp_status want_str(int line, const char *what, const jv *v) {
    if (v->kind == JV_UNDEF) return jx_fail(line, "'%s' is undefined", v->s ? v->s : "value");
    if (v->kind != JV_STR) return jx_fail(line, "%s expects a string, got %s", what, jv_type_name(v));
    return CP_OK;
}

static int64_t length_of(const jv *x) {
    if (x->kind == JV_STR) return (int64_t)jx_utf8_count(x->s, x->n);
    return (int64_t)x->len;
}

cp_status jx_filter(jx_heap *h, int line, const char *name, jv *x, jv **args, const char **kw, size_t n, jv **out) {
    *out = NULL;
    if (!strcmp(name, "safe")) { *out = x; return CP_OK; }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        jv *dflt = kwarg(args, kw, n, "default_value", 0), *b = kwarg(args, kw, n, "boolean", 1);
        int use = x->kind == JV_UNDEF || (b && jv_truthy(b) && !jv_truthy(x));
        *out = use ? (dflt ? dflt : jv_cstr(h, "")) : x;
        return *out ? CP_OK : CP_ERR;
    }
    if (!strcmp(name, "tojson")) {
        jv *ind = kwarg(args, kw, n, "indent", 0), *sk = kwarg(args, kw, n, "sort_keys", 3);
        if (kwarg(args, kw, n, "separators", 2) && kwarg(args, kw, n, "separators", 2)->kind != JV_NONE)
            return jx_fail(line, "tojson: separators= is not supported");
        if (kwarg(args, kw, n, "ensure_ascii", 99) && jv_truthy(kwarg(args, kw, n, "ensure_ascii", 99)))
            return jx_fail(line, "tojson: ensure_ascii=True is not supported");
        int indent = (ind && ind->kind == JV_INT) ? (int)(ind->i < 0 ? 0 : ind->i > 64 ? 64 : ind->i) : -1;
        if (ind && ind->kind != JV_INT && ind->kind != JV_NONE) return jx_fail(line, "tojson: indent must be an integer");
        cp_strbuf sb;
        cp_sb_init(&sb);
        if (jv_to_json(x, &sb, indent, sk && jv_truthy(sk), 0)) { cp_sb_free(&sb); return jx_fail(line, "%s", cp_last_error()); }
        return (*out = mkstr(h, &sb)) ? CP_OK : CP_ERR;
    }
    if (x->kind == JV_UNDEF && strcmp(name, "string") && strcmp(name, "length") && strcmp(name, "count") &&
        strcmp(name, "list"))
        return jx_fail(line, "'%s' is undefined (filter %s)", x->s ? x->s : "value", name);
    if (!strcmp(name, "trim")) {
        jv *chars = kwarg(args, kw, n, "chars", 0);
        if (want_str(line, "trim", x)) return CP_ERR;
        *out = strip(h, x, 1, 1, chars && chars->kind == JV_STR ? chars : NULL);
    } else if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (x->kind != JV_STR && x->kind != JV_LIST && x->kind != JV_DICT && x->kind != JV_UNDEF)
            return jx_fail(line, "object of type '%s' has no len()", jv_type_name(x));
        *out = jv_int(h, length_of(x));
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper") || !strcmp(name, "title") || !strcmp(name, "capitalize")) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        jv_to_str(x, &sb);
        jv *s = mkstr(h, &sb);
        if (!s) return CP_ERR;
        *out = case_map(h, s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 2 : 3);
    } else if (!strcmp(name, "string")) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        jv_to_str(x, &sb);
        *out = mkstr(h, &sb);
    } else if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (x->kind != JV_LIST && x->kind != JV_STR) return jx_fail(line, "filter %s needs a list or a string", name);
        int64_t len = length_of(x);
        if (!len) { *out = jv_undef(h, "No first item, sequence was empty."); return CP_OK; }
        jv idx = {.kind = JV_INT, .i = name[0] == 'f' ? 0 : len - 1};
        if (x->kind == JV_LIST) *out = x->items[idx.i];
        else {
            size_t i = 0, c = 0;
            while (c < (size_t)idx.i) { i += cp_len_at(x->s + i, x->n - i); c++; }
            *out = jv_str(h, x->s + i, cp_len_at(x->s + i, x->n - i));
        }
    } else if (!strcmp(name, "join")) {
        jv *sep = kwarg(args, kw, n, "d", 0);
        if (kwarg(args, kw, n, "attribute", 1)) return jx_fail(line, "join(attribute=) is not supported");
        if (x->kind != JV_LIST) return jx_fail(line, "join needs a list, got %s", jv_type_name(x));
        cp_strbuf sb;
        cp_sb_init(&sb);
        for (size_t i = 0; i < x->len; i++) {
            if (i && sep) jv_to_str(sep, &sb);
            jv_to_str(x->items[i], &sb);
        }
        *out = mkstr(h, &sb);
    } else if (!strcmp(name, "list")) {
        if (x->kind == JV_LIST) { *out = x; return CP_OK; }
        jv *l = jv_new(h, JV_LIST);
        if (!l) return CP_ERR;
        if (x->kind == JV_STR) {
            for (size_t i = 0; i < x->n;) { size_t k = cp_len_at(x->s + i, x->n - i); if (jv_list_push(h, l, jv_str(h, x->s + i, k))) return CP_ERR; i += k; }
        } else if (x->kind == JV_DICT) {
            for (size_t i = 0; i < x->len; i++) if (jv_list_push(h, l, jv_cstr(h, x->keys[i]))) return CP_ERR;
        } else if (x->kind != JV_UNDEF) {
            return jx_fail(line, "'%s' object is not iterable", jv_type_name(x));
        }
        *out = l;
    } else if (!strcmp(name, "reverse")) {
        if (x->kind == JV_STR) {
            char *o = jx_alloc(h, x->n + 1);
            if (!o) return CP_ERR;
            for (size_t i = 0; i < x->n;) { size_t k = cp_len_at(x->s + i, x->n - i); memcpy(o + x->n - i - k, x->s + i, k); i += k; }
            jv *r = jv_new(h, JV_STR);
            if (r) { r->s = o; r->n = x->n; }
            *out = r;
        } else if (x->kind == JV_LIST) {
            jv *l = jv_new(h, JV_LIST);
            for (size_t i = x->len; l && i-- > 0;) if (jv_list_push(h, l, x->items[i])) return CP_ERR;
            *out = l;
        } else {
            return jx_fail(line, "reverse needs a list or a string, got %s", jv_type_name(x));
        }
    } else if (!strcmp(name, "items")) {
        if (x->kind != JV_DICT) return jx_fail(line, "items needs a mapping, got %s", jv_type_name(x));
        jv *m = jx_method(h, x, "items");
        return m ? jx_call(h, line, m, NULL, NULL, 0, out) : CP_ERR;
    } else if (!strcmp(name, "replace")) {
        jv *old = kwarg(args, kw, n, "old", 0), *new_ = kwarg(args, kw, n, "new", 1), *cnt = kwarg(args, kw, n, "count", 2);
        if (!old || !new_ || old->kind != JV_STR || new_->kind != JV_STR) return jx_fail(line, "replace needs two strings");
        cp_strbuf sb;
        cp_sb_init(&sb);
        jv_to_str(x, &sb);
        jv *s = mkstr(h, &sb);
        *out = s ? replace(h, s, old, new_, cnt && cnt->kind == JV_INT ? cnt->i : -1) : NULL;
    } else if (!strcmp(name, "int")) {
        if (x->kind == JV_INT || x->kind == JV_BOOL) *out = jv_int(h, x->i);
        else if (x->kind == JV_FLOAT && isfinite(x->f) && fabs(x->f) < 9e18) *out = jv_int(h, (int64_t)x->f);
        else if (x->kind == JV_STR) { char *e; long long v = strtoll(x->s, &e, 10); *out = jv_int(h, (*e || !x->n) ? 0 : v); }
        else *out = jv_int(h, 0);
    } else if (!strcmp(name, "float")) {
        if (jv_is_number(x)) *out = jv_float(h, jv_num(x));
        else if (x->kind == JV_STR) { char *e; double v = strtod(x->s, &e); *out = jv_float(h, (*e || !x->n) ? 0.0 : v); }
        else *out = jv_float(h, 0.0);
    } else if (!strcmp(name, "abs")) {
        if (!jv_is_number(x)) return jx_fail(line, "bad operand type for abs(): '%s'", jv_type_name(x));
        if (x->kind == JV_FLOAT) *out = jv_float(h, fabs(x->f));
        else if (x->i == INT64_MIN) return jx_fail(line, "integer overflow");
        else *out = jv_int(h, x->i < 0 ? -x->i : x->i);
    } else {
        return jx_fail(line, "the filter '%s' is not supported by cpeft's template renderer", name);
    }
    return *out ? CP_OK : CP_ERR;
}

cp_status jx_test(jx_heap *h, int line, const char *name, jv *x, jv **args, size_t n, int *out) {
    (void)h;
    jv *a = n ? args[0] : NULL;
    if (!strcmp(name, "defined")) *out = x->kind != JV_UNDEF;
    else if (!strcmp(name, "undefined")) *out = x->kind == JV_UNDEF;
    else if (!strcmp(name, "none")) *out = x->kind == JV_NONE;
    else if (!strcmp(name, "string")) *out = x->kind == JV_STR;
    else if (!strcmp(name, "number")) *out = jv_is_number(x);
    else if (!strcmp(name, "integer")) *out = x->kind == JV_INT;
    else if (!strcmp(name, "float")) *out = x->kind == JV_FLOAT;
    else if (!strcmp(name, "boolean")) *out = x->kind == JV_BOOL;
    else if (!strcmp(name, "true")) *out = x->kind == JV_BOOL && x->i;
    else if (!strcmp(name, "false")) *out = x->kind == JV_BOOL && !x->i;
    else if (!strcmp(name, "mapping")) *out = x->kind == JV_DICT;
    else if (!strcmp(name, "iterable")) *out = x->kind == JV_LIST || x->kind == JV_DICT || x->kind == JV_STR;
    else if (!strcmp(name, "sequence")) *out = x->kind == JV_LIST || x->kind == JV_DICT || x->kind == JV_STR;
    else if (!strcmp(name, "callable")) *out = x->kind == JV_FUNC || x->kind == JV_METHOD;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (x->kind != JV_STR) return jx_fail(line, "test %s needs a string", name);
        int has_cased = 0, ok = 1;
        for (size_t i = 0; i < x->n; i++) {
            unsigned char c = (unsigned char)x->s[i];
            if (isalpha(c)) { has_cased = 1; if (name[0] == 'l' ? isupper(c) : islower(c)) ok = 0; }
        }
        *out = has_cased && ok;
    } else if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==") || !strcmp(name, "ne") ||
               !strcmp(name, "sameas") || !strcmp(name, "in") || !strcmp(name, "divisibleby") || !strcmp(name, "odd") ||
               !strcmp(name, "even")) {
        if (!strcmp(name, "odd") || !strcmp(name, "even")) {
            if (x->kind != JV_INT && x->kind != JV_BOOL) return jx_fail(line, "test %s needs an integer", name);
            *out = (x->i % 2 != 0) == (name[0] == 'o');
            return CP_OK;
        }
        if (!a) return jx_fail(line, "test %s needs an argument", name);
        if (!strcmp(name, "in")) {
            if (a->kind == JV_STR) *out = x->kind == JV_STR && (x->n == 0 || memmem(a->s, a->n, x->s, x->n));
            else if (a->kind == JV_LIST) { *out = 0; for (size_t i = 0; i < a->len; i++) if (jv_equal(a->items[i], x)) *out = 1; }
            else if (a->kind == JV_DICT) *out = x->kind == JV_STR && jv_dict_get(a, x->s);
            else return jx_fail(line, "test in needs a container");
        } else if (!strcmp(name, "divisibleby")) {
            if (!jv_is_number(x) || !jv_is_number(a) || jv_num(a) == 0) return jx_fail(line, "divisibleby needs numbers (not by 0)");
            *out = fmod(jv_num(x), jv_num(a)) == 0;
        } else if (!strcmp(name, "sameas")) {
            *out = (x->kind == JV_NONE && a->kind == JV_NONE) || (x->kind == JV_BOOL && a->kind == JV_BOOL && x->i == a->i) || x == a;
        } else {
            *out = jv_equal(x, a) == (strcmp(name, "ne") != 0);
        }
    } else {
        return jx_fail(line, "the test '%s' is not supported by cpeft's template renderer", name);
    }
    return CP_OK;
}

static cp_status call_method(jx_heap *h, int line, jv *m, jv **args, const char **kw, size_t n, jv **out) {
    jv *x = m->self;
    const char *nm = m->s;
    jv *a0 = kwarg(args, kw, n, "__0", 0), *a1 = kwarg(args, kw, n, "__1", 1);
    if (x->kind == JV_DICT) {
        if (!strcmp(nm, "get")) {
            if (!a0) return jx_fail(line, "get expected at least 1 argument");
            jv *v = a0->kind == JV_STR ? jv_dict_get(x, a0->s) : NULL;
            *out = v ? v : a1 ? a1 : jv_new(h, JV_NONE);
            return *out ? CP_OK : CP_ERR;
        }
        jv *l = jv_new(h, JV_LIST);
        for (size_t i = 0; l && i < x->len; i++) {
            jv *it;
            if (nm[0] == 'k') it = jv_cstr(h, x->keys[i]);
            else if (nm[0] == 'v') it = x->items[i];
            else {
                it = jv_new(h, JV_LIST);
                if (!it || jv_list_push(h, it, jv_cstr(h, x->keys[i])) || jv_list_push(h, it, x->items[i])) return CP_ERR;
            }
            if (jv_list_push(h, l, it)) return CP_ERR;
        }
        *out = l;
        return l ? CP_OK : CP_ERR;
    }
    /* string methods */
    for (size_t i = 0; i < n; i++)
        if (args[i]->kind != JV_STR && args[i]->kind != JV_NONE && args[i]->kind != JV_INT)
            return jx_fail(line, "str.%s: argument %zu is %s", nm, i + 1, jv_type_name(args[i]));
    if (!strcmp(nm, "strip") || !strcmp(nm, "lstrip") || !strcmp(nm, "rstrip")) {
        jv *chars = a0 && a0->kind == JV_STR ? a0 : NULL;
        *out = strip(h, x, nm[0] != 'r', nm[0] != 'l', chars);
    } else if (!strcmp(nm, "split")) {
        jv *sep = kwarg(args, kw, n, "sep", 0), *mx = kwarg(args, kw, n, "maxsplit", 1);
        *out = split(h, line, x, sep && sep->kind == JV_STR ? sep : NULL, mx && mx->kind == JV_INT ? mx->i : -1);
    } else if (!strcmp(nm, "startswith") || !strcmp(nm, "endswith")) {
        if (!a0 || a0->kind != JV_STR) return jx_fail(line, "str.%s needs a string argument", nm);
        int r = a0->n <= x->n && !memcmp(nm[0] == 's' ? x->s : x->s + x->n - a0->n, a0->s, a0->n);
        *out = jv_bool(h, r);
    } else if (!strcmp(nm, "upper") || !strcmp(nm, "lower") || !strcmp(nm, "title") || !strcmp(nm, "capitalize")) {
        *out = case_map(h, x, nm[0] == 'l' ? 0 : nm[0] == 'u' ? 1 : nm[0] == 't' ? 2 : 3);
    } else if (!strcmp(nm, "replace")) {
        if (!a0 || !a1 || a0->kind != JV_STR || a1->kind != JV_STR) return jx_fail(line, "str.replace needs two strings");
        jv *c = kwarg(args, kw, n, "count", 2);
        *out = replace(h, x, a0, a1, c && c->kind == JV_INT ? c->i : -1);
    } else if (!strcmp(nm, "find") || !strcmp(nm, "count")) {
        if (!a0 || a0->kind != JV_STR || n > 1) return jx_fail(line, "str.%s: one string argument is supported", nm);
        if (nm[0] == 'f') {
            const char *p = a0->n ? memmem(x->s, x->n, a0->s, a0->n) : x->s;
            *out = jv_int(h, p ? (int64_t)jx_utf8_count(x->s, (size_t)(p - x->s)) : -1);
        } else {
            int64_t c = 0;
            if (!a0->n) c = (int64_t)jx_utf8_count(x->s, x->n) + 1;
            else for (const char *p = x->s; (p = memmem(p, x->n - (size_t)(p - x->s), a0->s, a0->n)); p += a0->n) c++;
            *out = jv_int(h, c);
        }
    } else {
        return jx_fail(line, "the method str.%s is not supported", nm);
    }
    return *out ? CP_OK : CP_ERR;
}

cp_status jx_call(jx_heap *h, int line, jv *fn, jv **args, const char **kw, size_t n, jv **out) {
    *out = NULL;
    if (fn->kind == JV_METHOD) return call_method(h, line, fn, args, kw, n, out);
    if (fn->kind != JV_FUNC) return jx_fail(line, "'%s' object is not callable", jv_type_name(fn));
    if (!strcmp(fn->s, "raise_exception")) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        if (n) jv_to_str(args[0], &sb);
        cp_status st = jx_fail(line, "the template raised an exception: %s", sb.data ? sb.data : "");
        cp_sb_free(&sb);
        return st;
    }
    if (!strcmp(fn->s, "namespace") || !strcmp(fn->s, "dict")) {
        jv *d = jv_new(h, fn->s[0] == 'n' ? JV_NS : JV_DICT);
        if (!d) return CP_ERR;
        for (size_t i = 0; i < n; i++) {
            if (!kw || !kw[i]) {
                if (args[i]->kind != JV_DICT) return jx_fail(line, "%s() takes keyword arguments or a dict", fn->s);
                for (size_t k = 0; k < args[i]->len; k++) if (jv_dict_set(h, d, args[i]->keys[k], args[i]->items[k])) return CP_ERR;
                continue;
            }
            if (d->kind == JV_NS && kw[i][0] == '_') return jx_fail(line, "namespace attributes cannot start with '_' (%s)", kw[i]);
            if (jv_dict_set(h, d, kw[i], args[i])) return CP_ERR;
        }
        *out = d;
        return CP_OK;
    }
    if (!strcmp(fn->s, "range")) {
        int64_t a = 0, b, s = 1;
        for (size_t i = 0; i < n; i++)
            if ((kw && kw[i]) || (args[i]->kind != JV_INT && args[i]->kind != JV_BOOL)) return jx_fail(line, "range() takes integers");
        if (n == 1) b = args[0]->i;
        else if (n == 2 || n == 3) { a = args[0]->i; b = args[1]->i; if (n == 3) s = args[2]->i; }
        else return jx_fail(line, "range() takes 1 to 3 arguments");
        if (s == 0) return jx_fail(line, "range() arg 3 must not be zero");
        double count = ceil(((double)b - (double)a) / (double)s);
        if (count > 100000) return jx_fail(line, "range() is too big (jinja2's sandbox allows 100000 items)");
        jv *l = jv_new(h, JV_LIST);
        for (int64_t i = a; l && (s > 0 ? i < b : i > b); i += s) if (jv_list_push(h, l, jv_int(h, i))) return CP_ERR;
        *out = l;
        return l ? CP_OK : CP_ERR;
    }
    if (!strcmp(fn->s, "strftime_now"))
        return jx_fail(line, "strftime_now() (today's date) is not supported: a rendering must not change with the day; "
                             "pass date_string instead");
    return jx_fail(line, "the function '%s' is not supported", fn->s);
}
