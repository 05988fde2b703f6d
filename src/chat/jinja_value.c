/*
 * jinja_value.c — the values a chat template computes with, and Python's rules for them: str(),
 * repr(), ==, truthiness, json.dumps. Also the heap every value and node of a render lives in.
 *
 * Not here: operators and conversions that can fail with a template line (jinja_eval.c), filters and
 * methods (jinja_builtins.c).
 */
#include "chat/jinja.h"
#include "core/alloc.h"
#include "core/utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- heap -------------------------------------------------------------------------------------- */

void *jx_alloc(jx_heap *h, size_t size) {
    if (cp_grow(&h->blocks, &h->cap, h->n + 1, sizeof *h->blocks, 64, "template values")) { h->failed = 1; return NULL; }
    void *p = cp_calloc(1, size ? size : 1, "template values");
    if (!p) { h->failed = 1; return NULL; }
    h->blocks[h->n++] = p;
    return p;
}

char *jx_strndup(jx_heap *h, const char *s, size_t n) {
    char *p = jx_alloc(h, n + 1);
    if (p && n) memcpy(p, s, n);
    return p;
}

void jx_heap_free(jx_heap *h) {
    for (size_t i = 0; i < h->n; i++) cp_free(h->blocks[i]);
    cp_free(h->blocks);
    memset(h, 0, sizeof *h);
}

/* ---- construction ------------------------------------------------------------------------------ */

jv *jv_new(jx_heap *h, jv_kind kind) {
    jv *v = jx_alloc(h, sizeof *v);
    if (v) v->kind = kind;
    return v;
}

jv *jv_str(jx_heap *h, const char *s, size_t n) {
    jv *v = jv_new(h, JV_STR);
    if (!v || !(v->s = jx_strndup(h, s, n))) return NULL;
    v->n = n;
    return v;
}

jv *jv_cstr(jx_heap *h, const char *s) { return jv_str(h, s, strlen(s)); }

jv *jv_int(jx_heap *h, int64_t i) {
    jv *v = jv_new(h, JV_INT);
    if (v) v->i = i;
    return v;
}

jv *jv_bool(jx_heap *h, int b) {
    jv *v = jv_new(h, JV_BOOL);
    if (v) v->i = b != 0;
    return v;
}

jv *jv_float(jx_heap *h, double f) {
    jv *v = jv_new(h, JV_FLOAT);
    if (v) v->f = f;
    return v;
}

jv *jv_undef(jx_heap *h, const char *name) {
    jv *v = jv_new(h, JV_UNDEF);
    if (v) v->s = name;
    return v;
}

static cp_status grow_entries(jx_heap *h, jv *c) {
    if (c->len < c->cap) return CP_OK;
    size_t cap = c->cap ? 2 * c->cap : 8;
    jv **items = jx_alloc(h, cap * sizeof *items);
    const char **keys = (c->kind == JV_LIST) ? NULL : jx_alloc(h, cap * sizeof *keys);
    if (!items || (c->kind != JV_LIST && !keys)) return CP_ERR;
    if (c->len) memcpy(items, c->items, c->len * sizeof *items);
    if (keys && c->len) memcpy(keys, c->keys, c->len * sizeof *keys);
    c->items = items;
    c->keys = keys;
    c->cap = cap;
    return CP_OK;
}

cp_status jv_list_push(jx_heap *h, jv *list, jv *item) {
    if (!item || grow_entries(h, list)) return CP_ERR;
    list->items[list->len++] = item;
    return CP_OK;
}

jv *jv_dict_get(const jv *d, const char *key) {
    for (size_t i = 0; i < d->len; i++)
        if (!strcmp(d->keys[i], key)) return d->items[i];
    return NULL;
}

cp_status jv_dict_set(jx_heap *h, jv *d, const char *key, jv *val) {
    if (!val) return CP_ERR;
    for (size_t i = 0; i < d->len; i++)
        if (!strcmp(d->keys[i], key)) { d->items[i] = val; return CP_OK; }
    if (grow_entries(h, d)) return CP_ERR;
    d->keys[d->len] = key;
    d->items[d->len++] = val;
    return CP_OK;
}

jv *jv_from_json(jx_heap *h, const cJSON *j) {
    if (cJSON_IsNull(j)) return jv_new(h, JV_NONE);
    if (cJSON_IsBool(j)) return jv_bool(h, cJSON_IsTrue(j));
    if (cJSON_IsString(j)) return jv_cstr(h, j->valuestring ? j->valuestring : "");
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) return jv_int(h, (int64_t)d);
        return jv_float(h, d);
    }
    if (cJSON_IsArray(j)) {
        jv *l = jv_new(h, JV_LIST);
        if (!l) return NULL;
        for (const cJSON *c = j->child; c; c = c->next)
            if (jv_list_push(h, l, jv_from_json(h, c))) return NULL;
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv *d = jv_new(h, JV_DICT);
        if (!d) return NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            const char *k = jx_strndup(h, c->string, strlen(c->string));
            if (!k || jv_dict_set(h, d, k, jv_from_json(h, c))) return NULL;
        }
        return d;
    }
    return jv_new(h, JV_NONE);
}

/* ---- Python semantics -------------------------------------------------------------------------- */

int jv_truthy(const jv *v) {
    switch (v->kind) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: case JV_INT: return v->i != 0;
    case JV_FLOAT: return v->f != 0.0;
    case JV_STR: return v->n != 0;
    case JV_LIST: case JV_DICT: return v->len != 0;
    default: return 1;
    }
}

int jv_is_number(const jv *v) { return v->kind == JV_INT || v->kind == JV_FLOAT || v->kind == JV_BOOL; }
double jv_num(const jv *v) { return v->kind == JV_FLOAT ? v->f : (double)v->i; }

int jv_equal(const jv *a, const jv *b) {
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a->kind != JV_FLOAT && b->kind != JV_FLOAT) return a->i == b->i;
        return jv_num(a) == jv_num(b);
    }
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR: return a->n == b->n && !memcmp(a->s, b->s, a->n);
    case JV_LIST:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++)
            if (!jv_equal(a->items[i], b->items[i])) return 0;
        return 1;
    case JV_DICT:
        if (a->len != b->len) return 0;
        for (size_t i = 0; i < a->len; i++) {
            jv *o = jv_dict_get(b, a->keys[i]);
            if (!o || !jv_equal(a->items[i], o)) return 0;
        }
        return 1;
    default: return a == b;
    }
}

const char *jv_type_name(const jv *v) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int", "float", "str", "list", "dict",
                                  "Namespace", "function", "method"};
    return names[v->kind];
}

size_t jx_utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += !cp_utf8_is_continuation((unsigned char)s[i]);
    return c;
}

/* Python's repr of a float: the shortest digits that read back to the same double. */
static void float_repr(double f, cp_strbuf *sb) {
    if (isnan(f)) { cp_sb_append(sb, "nan"); return; }
    if (isinf(f)) { cp_sb_append(sb, f < 0 ? "-inf" : "inf"); return; }
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, f);
        if (strtod(buf, NULL) == f) break;
    }
    /* buf is d.ddde±XX: Python prints positional when -4 <= exp < 16 */
    char *e = strchr(buf, 'e');
    int exp = atoi(e + 1);
    *e = '\0';
    char digits[32];
    size_t nd = 0;
    int neg = buf[0] == '-';
    for (char *c = buf + neg; *c; c++)
        if (*c != '.') digits[nd++] = *c;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    if (neg) cp_sb_append(sb, "-");
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            cp_sb_append(sb, "0.");
            for (int i = 0; i < -exp - 1; i++) cp_sb_append(sb, "0");
            cp_sb_append(sb, digits);
        } else {
            for (int i = 0; i <= exp; i++) cp_sb_append_n(sb, i < (int)nd ? digits + i : "0", 1);
            cp_sb_append(sb, ".");
            if ((int)nd > exp + 1) cp_sb_append(sb, digits + exp + 1);
            else cp_sb_append(sb, "0");
        }
    } else {
        cp_sb_append_n(sb, digits, 1);
        if (nd > 1) { cp_sb_append(sb, "."); cp_sb_append(sb, digits + 1); }
        cp_sb_printf(sb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void str_repr(const char *s, size_t n, cp_strbuf *sb) {
    char q = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
    cp_sb_append_n(sb, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') cp_sb_append(sb, "\\\\");
        else if (c == (unsigned char)q) cp_sb_printf(sb, "\\%c", q);
        else if (c == '\n') cp_sb_append(sb, "\\n");
        else if (c == '\r') cp_sb_append(sb, "\\r");
        else if (c == '\t') cp_sb_append(sb, "\\t");
        else if (c < 0x20 || c == 0x7f) cp_sb_printf(sb, "\\x%02x", c);
        else cp_sb_append_n(sb, (const char *)&c, 1);
    }
    cp_sb_append_n(sb, &q, 1);
}

void jv_repr(const jv *v, cp_strbuf *sb) {
    switch (v->kind) {
    case JV_STR: str_repr(v->s, v->n, sb); return;
    case JV_LIST:
        cp_sb_append(sb, "[");
        for (size_t i = 0; i < v->len; i++) {
            if (i) cp_sb_append(sb, ", ");
            jv_repr(v->items[i], sb);
        }
        cp_sb_append(sb, "]");
        return;
    case JV_DICT:
        cp_sb_append(sb, "{");
        for (size_t i = 0; i < v->len; i++) {
            if (i) cp_sb_append(sb, ", ");
            str_repr(v->keys[i], strlen(v->keys[i]), sb);
            cp_sb_append(sb, ": ");
            jv_repr(v->items[i], sb);
        }
        cp_sb_append(sb, "}");
        return;
    default: jv_to_str(v, sb);
    }
}

void jv_to_str(const jv *v, cp_strbuf *sb) {
    switch (v->kind) {
    case JV_UNDEF: return;
    case JV_NONE: cp_sb_append(sb, "None"); return;
    case JV_BOOL: cp_sb_append(sb, v->i ? "True" : "False"); return;
    case JV_INT: cp_sb_printf(sb, "%lld", (long long)v->i); return;
    case JV_FLOAT: float_repr(v->f, sb); return;
    case JV_STR: cp_sb_append_n(sb, v->s, v->n); return;
    case JV_LIST: case JV_DICT: jv_repr(v, sb); return;
    case JV_NS: cp_sb_append(sb, "<Namespace>"); return;
    default: cp_sb_printf(sb, "<%s %s>", jv_type_name(v), v->s ? v->s : ""); return;
    }
}

static void json_str(const char *s, size_t n, cp_strbuf *sb) {
    cp_sb_append(sb, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') cp_sb_append(sb, "\\\"");
        else if (c == '\\') cp_sb_append(sb, "\\\\");
        else if (c == '\n') cp_sb_append(sb, "\\n");
        else if (c == '\r') cp_sb_append(sb, "\\r");
        else if (c == '\t') cp_sb_append(sb, "\\t");
        else if (c == '\b') cp_sb_append(sb, "\\b");
        else if (c == '\f') cp_sb_append(sb, "\\f");
        else if (c < 0x20) cp_sb_printf(sb, "\\u%04x", c);
        else cp_sb_append_n(sb, (const char *)&c, 1);
    }
    cp_sb_append(sb, "\"");
}

static void newline_indent(cp_strbuf *sb, int indent, int depth) {
    cp_sb_append(sb, "\n");
    for (int i = 0; i < indent * depth; i++) cp_sb_append(sb, " ");
}

int jv_to_json(const jv *v, cp_strbuf *sb, int indent, int sort_keys, int depth) {
    if (depth > 64) { cp_error("tojson: the value is nested deeper than 64 levels"); return -1; }
    const char *item_sep = indent >= 0 ? "," : ", ";
    switch (v->kind) {
    case JV_NONE: cp_sb_append(sb, "null"); return 0;
    case JV_BOOL: cp_sb_append(sb, v->i ? "true" : "false"); return 0;
    case JV_INT: case JV_FLOAT:
        if (v->kind == JV_FLOAT && isnan(v->f)) cp_sb_append(sb, "NaN");
        else if (v->kind == JV_FLOAT && isinf(v->f)) cp_sb_append(sb, v->f < 0 ? "-Infinity" : "Infinity");
        else jv_to_str(v, sb);
        return 0;
    case JV_STR: json_str(v->s, v->n, sb); return 0;
    case JV_LIST:
        if (!v->len) { cp_sb_append(sb, "[]"); return 0; }
        cp_sb_append(sb, "[");
        for (size_t i = 0; i < v->len; i++) {
            if (i) cp_sb_append(sb, item_sep);
            if (indent >= 0) newline_indent(sb, indent, depth + 1);
            if (jv_to_json(v->items[i], sb, indent, sort_keys, depth + 1)) return -1;
        }
        if (indent >= 0) newline_indent(sb, indent, depth);
        cp_sb_append(sb, "]");
        return 0;
    case JV_DICT: {
        if (!v->len) { cp_sb_append(sb, "{}"); return 0; }
        size_t order[v->len > 0 ? v->len : 1];
        for (size_t i = 0; i < v->len; i++) order[i] = i;
        if (sort_keys)
            for (size_t i = 1; i < v->len; i++)
                for (size_t j = i; j > 0 && strcmp(v->keys[order[j - 1]], v->keys[order[j]]) > 0; j--) {
                    size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        cp_sb_append(sb, "{");
        for (size_t k = 0; k < v->len; k++) {
            size_t i = order[k];
            if (k) cp_sb_append(sb, item_sep);
            if (indent >= 0) newline_indent(sb, indent, depth + 1);
            json_str(v->keys[i], strlen(v->keys[i]), sb);
            cp_sb_append(sb, ": ");
            if (jv_to_json(v->items[i], sb, indent, sort_keys, depth + 1)) return -1;
        }
        if (indent >= 0) newline_indent(sb, indent, depth);
        cp_sb_append(sb, "}");
        return 0;
    }
    default:
        cp_error("tojson: Object of type %s is not JSON serializable", jv_type_name(v));
        return -1;
    }
}
