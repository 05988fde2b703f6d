/*
 * json.c — typed access to tokenizer.json fields with messages that name the field and what was
 * expected ("model.vocab: expected an object mapping token strings to ids, got an array").
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tk_path(char *buf, size_t n, const char *path, const char *key, long index) {
    if (key) snprintf(buf, n, "%s%s%s", path && *path ? path : "", path && *path ? "." : "", key);
    else snprintf(buf, n, "%s[%ld]", path ? path : "", index);
    return buf;
}

static const char *sep(const char *path) { return path && *path ? "." : ""; }

int tk_json_bool(const cJSON *obj, const char *key, int dflt, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return CP_OK; }
    if (!cJSON_IsBool(v))
        return cp_error("%s%s%s: expected true or false, got %s", path, sep(path), key, cp_json_type_name(v));
    *out = cJSON_IsTrue(v);
    return CP_OK;
}

int tk_json_int(const cJSON *obj, const char *key, long dflt, long min, long max, long *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return CP_OK; }
    int64_t x;
    if (!cp_json_int_in(v, min, max, &x)) { /* checked before any conversion (io/json.h) */
        char what[48];
        return cp_error("%s%s%s: expected an integer from %ld to %ld, got %s", path, sep(path), key, min, max,
                        cp_json_describe(v, what, sizeof what));
    }
    *out = (long)x;
    return CP_OK;
}

int tk_json_str(const cJSON *obj, const char *key, const char *dflt, int allow_null,
                const char **out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) { *out = dflt; return CP_OK; }
    if (cJSON_IsNull(v)) {
        if (!allow_null) return cp_error("%s%s%s: expected a string, got null", path, sep(path), key);
        *out = NULL;
        return CP_OK;
    }
    if (!cJSON_IsString(v))
        return cp_error("%s%s%s: expected a string, got %s", path, sep(path), key, cp_json_type_name(v));
    *out = v->valuestring;
    return CP_OK;
}

int tk_json_type(const cJSON *obj, const char *path, const char **type) {
    if (!cJSON_IsObject(obj)) return cp_error("%s: expected an object with a \"type\", got %s", path, cp_json_type_name(obj));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    if (!t) { *type = NULL; return CP_OK; }
    if (!cJSON_IsString(t)) return cp_error("%s.type: expected a string, got %s", path, cp_json_type_name(t));
    *type = t->valuestring;
    return CP_OK;
}

int tk_json_char(const cJSON *obj, const char *key, const char *path, uint32_t dflt, uint32_t *out) {
    const char *s = NULL;
    if (tk_json_str(obj, key, NULL, 0, &s, path)) return CP_ERR;
    if (!s) { *out = dflt; return CP_OK; }
    size_t n = strlen(s), l = 0;
    if (n == 0 || !cp_utf8_valid(s, n) || (cp_utf8_decode(s, &l), l != n))
        return cp_error("%s.%s: expected a single character, got \"%s\"", path, key, s);
    *out = cp_utf8_decode(s, &l);
    return CP_OK;
}

/* The array j[key] of a Sequence, each element read as a component of class cls. */
static int read_children(const tk_component_class *cls, const cJSON *j, const char *path, tk_children *out) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, cls->seq_key), *item;
    if (!cJSON_IsArray(arr)) return cp_error("%s.%s: expected an array", path, cls->seq_key);
    size_t cnt = (size_t)cJSON_GetArraySize(arr);
    out->v = cp_calloc(cnt + 1, sizeof *out->v, cls->seq_key);
    out->index = cp_calloc(cnt + 1, sizeof *out->index, cls->seq_key);
    if (!out->v || !out->index) return CP_ERR;
    char sub[256], p[300];
    tk_path(sub, sizeof sub, path, cls->seq_key, 0);
    int i = 0;
    cJSON_ArrayForEach(item, arr) {
        void *child = NULL;
        if (tk_component_from_json(cls, &child, item, tk_path(p, sizeof p, sub, NULL, i))) return CP_ERR;
        if (child) {
            out->v[out->n] = child;
            out->index[out->n++] = i;
        }
        i++;
    }
    return CP_OK;
}

static int by_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* "BPEDecoder, ByteFallback, ...": the type names in byte order. */
static void supported_types(const tk_component_class *cls, char *buf, size_t size) {
    const char *sorted[64];
    size_t n = (size_t)cls->seq_kind + 1, at = 0;
    if (n > 64) n = 64;
    memcpy(sorted, cls->names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_name);
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%s", i ? ", " : "", sorted[i]);
}

int tk_component_from_json(const tk_component_class *cls, void *out, const cJSON *j, const char *path) {
    void *obj = NULL;
    memcpy(out, &obj, sizeof obj);
    if (!j || cJSON_IsNull(j)) return CP_OK;
    const char *type = NULL;
    if (tk_json_type(j, path, &type)) return CP_ERR;
    int kind = type ? cls->seq_kind : -1;
    while (kind >= 0 && strcmp(type, cls->names[kind])) kind--;
    if (kind < 0) {
        char supported[512];
        supported_types(cls, supported, sizeof supported);
        if (!type) return cp_error("%s: missing \"type\" (supported: %s)", path, supported);
        return cp_error("%s: unknown %s type \"%s\" (supported: %s)", path, cls->what, type, supported);
    }
    if (!(obj = cp_calloc(1, cls->size, cls->what))) return CP_ERR;
    tk_component_head *head = obj;
    head->kind = kind;
    int rc = cls->parse(obj, j, path);
    if (!rc && kind == cls->seq_kind) rc = read_children(cls, j, path, &head->children);
    if (rc) {
        tk_component_free(cls, obj);
        return CP_ERR;
    }
    memcpy(out, &obj, sizeof obj);
    return CP_OK;
}

void tk_component_free(const tk_component_class *cls, void *obj) {
    if (!obj) return;
    tk_component_head *head = obj;
    cls->release(obj);
    for (size_t i = 0; i < head->children.n; i++) tk_component_free(cls, head->children.v[i]);
    free(head->children.v);
    free(head->children.index);
    free(obj);
}

int tk_read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return cp_error("%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *p = cp_realloc(buf, cap, "a file");
            if (!p) { free(buf); fclose(f); return CP_ERR; }
            buf = p;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return cp_error("%s: read error", path); }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CP_OK;
}
