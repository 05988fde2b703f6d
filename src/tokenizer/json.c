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

static const char *kind(const cJSON *v) {
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "something else";
}

static const char *sep(const char *path) { return path && *path ? "." : ""; }

int tk_json_bool(const cJSON *obj, const char *key, int dflt, int *out, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) { *out = dflt; return CP_OK; }
    if (!cJSON_IsBool(v))
        return cp_error("%s%s%s: expected true or false, got %s", path, sep(path), key, kind(v));
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
        return cp_error("%s%s%s: expected a string, got %s", path, sep(path), key, kind(v));
    *out = v->valuestring;
    return CP_OK;
}

int tk_json_type(const cJSON *obj, const char *path, const char **type) {
    if (!cJSON_IsObject(obj)) return cp_error("%s: expected an object with a \"type\", got %s", path, kind(obj));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    if (!t) { *type = NULL; return CP_OK; }
    if (!cJSON_IsString(t)) return cp_error("%s.type: expected a string, got %s", path, kind(t));
    *type = t->valuestring;
    return CP_OK;
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
