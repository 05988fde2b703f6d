/*
 * json.c — JSON files read with typed, located errors; see json.h.
 *
 * Every document goes through cp_json_keep_last after parsing, so that an object holds one member
 * per key, as a Python dict does (see json.h): the lookups here and every walk over an object's
 * members then see what transformers and PEFT see.
 */
#include "io/json.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "io/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (cp_json_keep_last(root) != CP_OK) { cJSON_Delete(root); return CP_ERR; }
    *out = root;
    return CP_OK;
}

/* ---- duplicate keys ------------------------------------------------------------------------- */

/* An open-addressing set of an object's members by key (cap a power of two, at least twice the
 * member count), reused from object to object. */
typedef struct { cJSON **slot; size_t cap; } key_set;

static uint64_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Collapses equal keys of one object: the last member's value takes the first one's place. */
static cp_status keep_last_in_object(cJSON *obj, key_set *ks) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return CP_OK;
    if (ks->cap < 2 * n) {
        size_t cap = 16;
        while (cap < 2 * n) cap *= 2;
        cJSON **slot = cp_realloc(ks->slot, cap * sizeof *slot, "a JSON key table");
        if (!slot) return CP_ERR;
        ks->slot = slot;
        ks->cap = cap;
    }
    memset(ks->slot, 0, ks->cap * sizeof *ks->slot);
    const size_t mask = ks->cap - 1;
    cJSON *next;
    for (cJSON *c = obj->child; c; c = next) {
        next = c->next;
        if (!c->string) continue;
        size_t i = (size_t)key_hash(c->string) & mask;
        while (ks->slot[i] && strcmp(ks->slot[i]->string, c->string) != 0) i = (i + 1) & mask;
        if (ks->slot[i]) { /* a later duplicate: it replaces the earlier member in place */
            cJSON_DetachItemViaPointer(obj, c);
            cJSON_ReplaceItemViaPointer(obj, ks->slot[i], c);
        }
        ks->slot[i] = c;
    }
    return CP_OK;
}

static cp_status keep_last(cJSON *item, key_set *ks) {
    if (cJSON_IsObject(item) && keep_last_in_object(item, ks) != CP_OK) return CP_ERR;
    if (cJSON_IsObject(item) || cJSON_IsArray(item))
        for (cJSON *c = item->child; c; c = c->next)
            if (keep_last(c, ks) != CP_OK) return CP_ERR;
    return CP_OK;
}

cp_status cp_json_keep_last(cJSON *root) {
    key_set ks = {NULL, 0};
    cp_status st = root ? keep_last(root, &ks) : CP_OK;
    cp_free(ks.slot);
    return st;
}

cp_status cp_json_read_file(const char *path, cJSON **out) {
    *out = NULL;
    char *text;
    size_t size;
    if (cp_read_file(path, &text, &size) != CP_OK) return CP_ERR;
    cp_status st = cp_json_parse(text, size, path, out);
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

const char *cp_json_describe(const cJSON *item, char *buf, size_t size) {
    if (!cJSON_IsNumber(item)) {
        snprintf(buf, size, "%s", cp_json_type_name(item));
        return buf;
    }
    double d = item->valuedouble;
    char num[40];
    if (d == floor(d) && fabs(d) <= (double)CP_JSON_MAX_EXACT_INT) snprintf(buf, size, "%.0f", d); /* 3000000000, -7 */
    else snprintf(buf, size, "%s", cp_py_float_repr(d, num, sizeof num));                    /* 1e+30, 0.5, inf */
    return buf;
}

int cp_json_int_in(const cJSON *item, int64_t min, int64_t max, int64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    /* the comparisons are false for NaN; the bounds are exact doubles up to 2^53 */
    if (!(d >= (double)min && d <= (double)max && d == floor(d))) return 0;
    if (fabs(d) > 9007199254740992.0) return 0;
    *out = (int64_t)d;
    return 1;
}

cp_status cp_json_get_int(const cJSON *obj, const char *key, int64_t dflt, int required,
                          int64_t *out, const char *file) {
    const cJSON *v = cp_json_field(obj, key);
    *out = dflt;
    if (!v) return absent(key, required, file);
    char what[48];
    if (!cp_json_int_in(v, -CP_JSON_MAX_EXACT_INT, CP_JSON_MAX_EXACT_INT, out))
        return cp_error("%s: field \"%s\": expected an integer, found %s", file, key,
                        cJSON_IsNumber(v) ? cp_json_describe(v, what, sizeof what) : cp_json_type_name(v));
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

/* ---- Python-style serialisation ------------------------------------------------------------- */

static int key_cmp(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void indent(cp_strbuf *sb, int level) {
    cp_sb_append_n(sb, "\n", 1);
    for (int i = 0; i < level; i++) cp_sb_append_n(sb, "  ", 2);
}

static void dump(cp_strbuf *sb, const cJSON *it, int level) {
    if (cJSON_IsRaw(it)) { cp_sb_append(sb, it->valuestring); return; }
    if (cJSON_IsNull(it)) { cp_sb_append(sb, "null"); return; }
    if (cJSON_IsTrue(it)) { cp_sb_append(sb, "true"); return; }
    if (cJSON_IsFalse(it)) { cp_sb_append(sb, "false"); return; }
    if (cJSON_IsString(it)) { cp_json_write_cstring(sb, it->valuestring, CP_JSON_ASCII); return; }
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) cp_sb_printf(sb, "%lld", (long long)d);
        else { char buf[40]; cp_sb_append(sb, cp_py_float_repr(d, buf, sizeof buf)); }
        return;
    }
    int n = cJSON_GetArraySize(it);
    int is_obj = cJSON_IsObject(it);
    if (n == 0) { cp_sb_append(sb, is_obj ? "{}" : "[]"); return; }
    const cJSON **items = cp_malloc((size_t)n * sizeof *items, "JSON items");
    if (!items) { sb->failed = 1; return; }
    int i = 0;
    for (const cJSON *c = it->child; c; c = c->next) items[i++] = c;
    if (is_obj) qsort(items, (size_t)n, sizeof *items, key_cmp);
    cp_sb_append(sb, is_obj ? "{" : "[");
    for (i = 0; i < n; i++) {
        indent(sb, level + 1);
        if (is_obj) { cp_json_write_cstring(sb, items[i]->string, CP_JSON_ASCII); cp_sb_append(sb, ": "); }
        dump(sb, items[i], level + 1);
        if (i + 1 < n) cp_sb_append(sb, ",");
    }
    indent(sb, level);
    cp_sb_append(sb, is_obj ? "}" : "]");
    cp_free(items);
}

char *cp_json_dump_python(const cJSON *item) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    dump(&sb, item, 0);
    return cp_sb_finish(&sb);
}
