/*
 * json.c — JSON files read with typed, located errors; see json.h.
 */
#include "io/json.h"
#include "core/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

cp_status cp_json_parse(const char *text, size_t len, const char *name, cJSON **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= text ? (size_t)(end - text) : 0;
        if (pos > len) pos = len;
        int line = 1, col = 1;
        for (size_t i = 0; i < pos; i++) {
            if (text[i] == '\n') { line++; col = 1; } else col++;
        }
        return cp_error("%s: invalid JSON at line %d, column %d", name, line, col);
    }
    *out = root;
    return CP_OK;
}

cp_status cp_json_read_file(const char *path, cJSON **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cp_error("%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return cp_error("%s: cannot seek", path); }
    long size = ftell(f);
    if (size < 0) { fclose(f); return cp_error("%s: cannot read size", path); }
    rewind(f);
    char *text = cp_malloc((size_t)size + 1, path);
    if (!text) { fclose(f); return CP_ERR; }
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) { cp_free(text); return cp_error("%s: short read", path); }
    text[size] = '\0';
    cp_status st = cp_json_parse(text, (size_t)size, path, out);
    cp_free(text);
    return st;
}

const char *cp_json_type_name(const cJSON *item) {
    if (!item) return "nothing";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNumber(item)) return "a number";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "an unknown value";
}

const cJSON *cp_json_field(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static cp_status absent(const char *key, int required, const char *file) {
    if (required) return cp_error("%s: required field \"%s\" is missing", file, key);
    return CP_OK;
}

cp_status cp_json_get_int(const cJSON *obj, const char *key, int64_t dflt, int required,
                          int64_t *out, const char *file) {
    const cJSON *v = cp_json_field(obj, key);
    *out = dflt;
    if (!v) return absent(key, required, file);
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || fabs(d) > 9007199254740992.0)
        return cp_error("%s: field \"%s\": expected an integer, found %s", file, key,
                        cJSON_IsNumber(v) ? "a non-integer number" : cp_json_type_name(v));
    *out = (int64_t)d;
    return CP_OK;
}

cp_status cp_json_get_double(const cJSON *obj, const char *key, double dflt, int required,
                             double *out, const char *file) {
    const cJSON *v = cp_json_field(obj, key);
    *out = dflt;
    if (!v) return absent(key, required, file);
    if (!cJSON_IsNumber(v))
        return cp_error("%s: field \"%s\": expected a number, found %s", file, key, cp_json_type_name(v));
    *out = v->valuedouble;
    return CP_OK;
}

cp_status cp_json_get_bool(const cJSON *obj, const char *key, int dflt, int required, int *out,
                           const char *file) {
    const cJSON *v = cp_json_field(obj, key);
    *out = dflt;
    if (!v) return absent(key, required, file);
    if (!cJSON_IsBool(v))
        return cp_error("%s: field \"%s\": expected true or false, found %s", file, key, cp_json_type_name(v));
    *out = cJSON_IsTrue(v);
    return CP_OK;
}

cp_status cp_json_get_string(const cJSON *obj, const char *key, const char *dflt, int required,
                             const char **out, const char *file) {
    const cJSON *v = cp_json_field(obj, key);
    *out = dflt;
    if (!v) return absent(key, required, file);
    if (!cJSON_IsString(v))
        return cp_error("%s: field \"%s\": expected a string, found %s", file, key, cp_json_type_name(v));
    *out = v->valuestring;
    return CP_OK;
}
