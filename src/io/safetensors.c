/*
 * safetensors.c — reading and writing the safetensors format (see safetensors.h for the format).
 *
 * Reader: cp_st_open maps the file read-only and hands the image to cp_st_parse, which validates
 * it in four passes — the 8-byte length and header bounds, a byte scan of the header (UTF-8, no
 * raw control characters or NUL escapes inside strings; cJSON alone would accept both), the
 * per-entry checks on the cJSON tree, then the layout (names unique, ranges tiling the data
 * buffer). Tensors point into the image; nothing is copied but names and metadata.
 *
 * Writer: cp_st_write orders tensors as Python's safetensors does (dtype descending, then name),
 * builds the header by hand so the bytes match serde_json's compact output exactly (cJSON's
 * printer differs in escaping and number formatting), and writes through a temporary file that
 * is renamed into place.
 *
 * Not here: dtype conversion (core/dtype.c), mapping tensors to model parameters (models/, peft/).
 */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/bytes.h"
#include "core/json_write.h"
#include "core/utf8.h"
#include "io/fsutil.h"

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: larger doubles no longer hold every integer */

/* ---- small helpers ------------------------------------------------------------------------ */

/* Formats a shape as "[2, 3]" into buf (truncated if it does not fit). */
static const char *format_shape(const int64_t *shape, int ndim, char *buf, size_t size) {
    size_t at = 0;
    at += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (at < size) snprintf(buf + at, size - at, "]");
    return buf;
}

/* ---- reader: header byte scan ---------------------------------------------------------------- */

/* Checks what cJSON lets through: the header must be UTF-8, strings must not contain raw control
 * characters (JSON forbids them) or the escape \u0000 (cJSON would cut the C string there, so
 * "a\u0000b" would silently become the tensor "a"). */
static cp_status scan_header(const char *file, const uint8_t *h, size_t n) {
    size_t bad = cp_utf8_valid_prefix((const char *)h, n);
    if (bad < n)
        return cp_error("%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)", file,
                        h[bad], bad);
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = h[i];
        if (!in_string) {
            if (c == '"') in_string = 1;
            continue;
        }
        if (c == '"') {
            in_string = 0;
        } else if (c < 0x20) {
            return cp_error("%s: header has a raw control character 0x%02x inside a string at "
                            "header offset %zu (JSON requires it escaped)", file, c, i);
        } else if (c == '\\' && i + 1 < n) {
            if (h[i + 1] == 'u' && i + 5 < n && memcmp(h + i + 2, "0000", 4) == 0)
                return cp_error("%s: header has a string containing \\u0000 at header offset %zu "
                                "(NUL is not allowed in names or metadata)", file, i);
            i++; /* skip the escaped character, which may be '"' or '\\' */
        }
    }
    return CP_OK;
}

/* ---- reader: one tensor entry ---------------------------------------------------------------- */

/* Reads a JSON number that must be a non-negative integer below 2^53 into *out. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0.0) || d >= MAX_EXACT_INT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Describes a JSON value for an error message: "1.5", "-3", "a string", "null" ... */
static const char *describe_json(const cJSON *item, char *buf, size_t size) {
    if (cJSON_IsNumber(item)) snprintf(buf, size, "%.17g", item->valuedouble);
    else if (cJSON_IsString(item)) snprintf(buf, size, "a string");
    else if (cJSON_IsArray(item)) snprintf(buf, size, "an array");
    else if (cJSON_IsObject(item)) snprintf(buf, size, "an object");
    else if (cJSON_IsBool(item)) snprintf(buf, size, "a boolean");
    else snprintf(buf, size, "null");
    return buf;
}

/* Fills t (whose name is already set) from the JSON object `entry`: dtype, shape, numel and the
 * byte range, checking types, the dtype name, numel overflow and end - begin == nbytes. */
static cp_status parse_tensor_entry(const char *file, const cJSON *entry, cp_st_tensor *t) {
    const char *name = t->name;
    char what[64];
    if (!cJSON_IsObject(entry))
        return cp_error("%s: tensor \"%s\": entry must be an object with dtype, shape and "
                        "data_offsets, found %s",
                        file, name, describe_json(entry, what, sizeof what));
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *f = entry->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offsets
                                                                      : NULL;
        if (!slot) continue; /* unknown fields are ignored, as the reference reader does */
        if (*slot)
            return cp_error("%s: tensor \"%s\": duplicate field \"%s\"", file, name, f->string);
        *slot = f;
    }
    if (!dtype) return cp_error("%s: tensor \"%s\": missing \"dtype\"", file, name);
    if (!shape) return cp_error("%s: tensor \"%s\": missing \"shape\"", file, name);
    if (!offsets) return cp_error("%s: tensor \"%s\": missing \"data_offsets\"", file, name);

    if (!cJSON_IsString(dtype))
        return cp_error("%s: tensor \"%s\": \"dtype\" must be a string, found %s", file, name,
                        describe_json(dtype, what, sizeof what));
    int dt = cp_dtype_from_name(dtype->valuestring);
    if (dt < 0)
        return cp_error("%s: tensor \"%s\": unknown dtype \"%s\"", file, name, dtype->valuestring);
    t->dtype = (cp_dtype)dt;

    if (!cJSON_IsArray(shape))
        return cp_error("%s: tensor \"%s\": \"shape\" must be an array, found %s", file, name,
                        describe_json(shape, what, sizeof what));
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > CP_ST_MAX_DIMS)
        return cp_error("%s: tensor \"%s\": shape has %d dimensions, at most %d are supported",
                        file, name, ndim, CP_ST_MAX_DIMS);
    t->ndim = ndim;
    int64_t numel = 1;
    int overflow = 0;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        uint64_t v;
        if (!json_uint(e, &v))
            return cp_error("%s: tensor \"%s\": shape entry %d must be a non-negative integer "
                            "below 2^53, found %s",
                            file, name, d, describe_json(e, what, sizeof what));
        t->shape[d] = (int64_t)v;
        if (v != 0 && numel > INT64_MAX / (int64_t)v) overflow = 1;
        else numel *= (int64_t)v;
    }
    char shape_text[256];
    format_shape(t->shape, ndim, shape_text, sizeof shape_text);
    if (overflow && numel != 0)
        return cp_error("%s: tensor \"%s\": shape %s has more elements than fit in 64 bits", file,
                        name, shape_text);
    t->numel = numel;
    int64_t nbytes = cp_dtype_nbytes(t->dtype, numel);
    if (nbytes < 0)
        return cp_error("%s: tensor \"%s\": shape %s of %s is not a whole number of bytes or "
                        "overflows", file, name, shape_text, cp_dtype_name(t->dtype));

    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2)
        return cp_error("%s: tensor \"%s\": \"data_offsets\" must be an array [begin, end]", file,
                        name);
    if (!json_uint(offsets->child, &t->begin) || !json_uint(offsets->child->next, &t->end)) {
        char what2[64];
        return cp_error("%s: tensor \"%s\": data_offsets must be non-negative integers below 2^53, "
                        "found [%s, %s]",
                        file, name, describe_json(offsets->child, what, sizeof what),
                        describe_json(offsets->child->next, what2, sizeof what2));
    }
    if (t->begin > t->end)
        return cp_error("%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                        "] begin after end",
                        file, name, t->begin, t->end);
    if (t->end - t->begin != (uint64_t)nbytes)
        return cp_error("%s: tensor \"%s\": shape %s of %s needs %" PRId64 " bytes, but "
                        "data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64 " bytes",
                        file, name, shape_text, cp_dtype_name(t->dtype), nbytes, t->begin, t->end,
                        t->end - t->begin);
    return CP_OK;
}

/* ---- reader: metadata ------------------------------------------------------------------------ */

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static cp_status parse_metadata(cp_safetensors *st, const cJSON *meta) {
    const char *file = st->path;
    if (!cJSON_IsObject(meta))
        return cp_error("%s: \"__metadata__\" must be an object of strings", file);
    int n = cJSON_GetArraySize(meta);
    st->meta_keys = cp_calloc((size_t)n, sizeof *st->meta_keys, "safetensors metadata");
    st->meta_values = cp_calloc((size_t)n, sizeof *st->meta_values, "safetensors metadata");
    if (!st->meta_keys || !st->meta_values) return cp_error_context("%s", file);
    for (const cJSON *m = meta->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return cp_error("%s: \"__metadata__\" must be an object of strings, but \"%s\" "
                            "is not a string", file, m->string);
        char *key = cp_strdup(m->string), *value = key ? cp_strdup(m->valuestring) : NULL;
        if (!value) {
            cp_free(key);
            return cp_error_context("%s", file);
        }
        st->meta_keys[st->n_meta] = key;
        st->meta_values[st->n_meta] = value;
        st->n_meta++;
    }
    if (n < 2) return CP_OK;
    char **sorted = cp_malloc((size_t)n * sizeof *sorted, "safetensors metadata");
    if (!sorted) return cp_error_context("%s", file);
    memcpy(sorted, st->meta_keys, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_strings);
    cp_status s = CP_OK;
    for (int i = 1; i < n && s == CP_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = cp_error("%s: \"__metadata__\" has the key \"%s\" twice", file, sorted[i]);
    cp_free(sorted);
    return s;
}

/* ---- reader: layout -------------------------------------------------------------------------- */

static int compare_by_range(const void *a, const void *b) {
    const cp_st_tensor *x = *(const cp_st_tensor *const *)a, *y = *(const cp_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Builds st->by_name and rejects duplicate names. */
static cp_status index_names(cp_safetensors *st) {
    const char *twice;
    if (cp_name_index_build(&st->by_name, st->tensors, (size_t)st->n_tensors, sizeof *st->tensors,
                            offsetof(cp_st_tensor, name), &twice, "safetensors name index"))
        return cp_error_context("%s", st->path);
    if (twice) return cp_error("%s: duplicate tensor name \"%s\"", st->path, twice);
    return CP_OK;
}

/* Checks that the byte ranges, sorted by begin, tile [0, data_size) with no gap or overlap. */
static cp_status check_tiling(const cp_safetensors *st) {
    const char *file = st->path;
    int n = st->n_tensors;
    if (n == 0) {
        if (st->data_size != 0)
            return cp_error("%s: no tensors, but the data buffer holds %" PRIu64 " bytes", file,
                            st->data_size);
        return CP_OK;
    }
    const cp_st_tensor **order = cp_malloc((size_t)n * sizeof *order, "safetensors layout check");
    if (!order) return cp_error_context("%s", file);
    for (int i = 0; i < n; i++) order[i] = &st->tensors[i];
    qsort(order, (size_t)n, sizeof *order, compare_by_range);
    cp_status s = CP_OK;
    if (order[0]->begin != 0)
        s = cp_error("%s: tensor \"%s\" is the first in the data buffer but begins at byte %" PRIu64
                     ", expected 0 (gap of %" PRIu64 " bytes)", file, order[0]->name,
                     order[0]->begin, order[0]->begin);
    for (int i = 1; i < n && s == CP_OK; i++) {
        const cp_st_tensor *prev = order[i - 1], *t = order[i];
        if (t->begin == prev->end) continue;
        int gap = t->begin > prev->end;
        uint64_t amount = gap ? t->begin - prev->end : prev->end - t->begin;
        s = cp_error("%s: tensor \"%s\" begins at byte %" PRIu64 " but the previous tensor \"%s\" "
                     "ends at byte %" PRIu64 " (%s of %" PRIu64 " bytes)", file, t->name, t->begin,
                     prev->name, prev->end, gap ? "gap" : "overlap", amount);
    }
    const cp_st_tensor *last = order[n - 1];
    if (s == CP_OK && last->end != st->data_size)
        s = cp_error("%s: the last tensor \"%s\" ends at byte %" PRIu64 ", but the data "
                     "buffer holds %" PRIu64 " bytes (%s)", file, last->name, last->end,
                     st->data_size,
                     last->end > st->data_size ? "past the end of the file"
                                               : "trailing bytes belong to no tensor");
    cp_free((void *)order);
    return s;
}

/* ---- reader: public API ---------------------------------------------------------------------- */

/* Fills st's metadata and tensor table from the parsed header object. */
static cp_status parse_entries(cp_safetensors *st, const cJSON *root) {
    const char *file = st->path;
    /* Count tensors and find "__metadata__" (cJSON keeps repeated keys as separate items). */
    const cJSON *meta = NULL;
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") != 0) n++;
        else if (meta) return cp_error("%s: header has \"__metadata__\" twice", file);
        else meta = e;
    }
    if (meta && parse_metadata(st, meta) != CP_OK) return CP_ERR;
    st->tensors = cp_calloc((size_t)n, sizeof *st->tensors, "safetensors tensor table");
    if (!st->tensors) return cp_error_context("%s", file);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta) continue;
        cp_st_tensor *t = &st->tensors[st->n_tensors];
        t->name = cp_strdup(e->string);
        if (!t->name) return cp_error_context("%s", file);
        st->n_tensors++; /* counted before the checks, so cp_st_close frees the name */
        if (parse_tensor_entry(file, e, t) != CP_OK) return CP_ERR;
    }
    return CP_OK;
}

/* Parses the header bytes (already inside the image) into st. */
static cp_status parse_header(cp_safetensors *st, const uint8_t *header, size_t header_len) {
    const char *file = st->path;
    if (header_len == 0) return cp_error("%s: header is empty, expected a JSON object", file);
    if (header[0] != '{')
        return cp_error("%s: header must be a JSON object starting with '{', found byte 0x%02x",
                        file, header[0]);
    if (scan_header(file, header, header_len) != CP_OK) return CP_ERR;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)header, header_len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - (const char *)header) : 0;
        return cp_error("%s: header is not valid JSON (error near header offset %zu)", file, at);
    }
    /* JSON whitespace may follow the object: Python pads the header with spaces. */
    size_t rest = (size_t)(end - (const char *)header);
    while (rest < header_len && (header[rest] == ' ' || header[rest] == '\t' ||
                                 header[rest] == '\r' || header[rest] == '\n'))
        rest++;
    cp_status s;
    if (rest < header_len)
        s = cp_error("%s: header has trailing bytes after the JSON object (header offset %zu)",
                     file, rest);
    else if (!cJSON_IsObject(root))
        s = cp_error("%s: header must be a JSON object", file);
    else
        s = parse_entries(st, root);
    cJSON_Delete(root);
    return s;
}

cp_status cp_st_parse(cp_safetensors *st, const void *buf, size_t len, const char *name) {
    memset(st, 0, sizeof *st);
    const uint8_t *bytes = buf;
    const char *file = name ? name : "<buffer>";
    if (len < 8)
        return cp_error("%s: file is %zu bytes, shorter than the 8-byte header length that starts "
                        "a safetensors file", file, len);
    uint64_t n = cp_le64(bytes);
    if (n > CP_ST_MAX_HEADER)
        return cp_error("%s: header length %" PRIu64 " exceeds the limit of %llu bytes", file, n,
                        CP_ST_MAX_HEADER);
    if (n > len - 8)
        return cp_error("%s: header length %" PRIu64 " runs past the end of the file (%zu bytes "
                        "follow the length)", file, n, len - 8);
    st->path = cp_strdup(file);
    if (!st->path) return CP_ERR;
    st->data = bytes + 8 + n;
    st->data_size = len - 8 - n;
    if (parse_header(st, bytes + 8, (size_t)n) != CP_OK || index_names(st) != CP_OK ||
        check_tiling(st) != CP_OK) {
        cp_st_close(st);
        return CP_ERR;
    }
    for (int i = 0; i < st->n_tensors; i++) st->tensors[i].data = st->data + st->tensors[i].begin;
    return CP_OK;
}

static cp_status parse_mapped(void *st, const void *bytes, size_t size, const char *name) {
    return cp_st_parse(st, bytes, size, name);
}

/* 8 bytes: the length prefix; the parser says what a shorter file lacks. */
cp_status cp_st_open(cp_safetensors *st, const char *path) {
    return cp_map_parse(path, 8, parse_mapped, st, sizeof *st, &st->map, &st->map_size);
}

const cp_st_tensor *cp_st_find(const cp_safetensors *st, const char *name) {
    return cp_name_index_find(&st->by_name, name);
}

const char *cp_st_meta(const cp_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

void cp_st_close(cp_safetensors *st) {
    if (st->tensors)
        for (int i = 0; i < st->n_tensors; i++) cp_free(st->tensors[i].name);
    if (st->meta_keys)
        for (int i = 0; i < st->n_meta; i++) cp_free(st->meta_keys[i]);
    if (st->meta_values)
        for (int i = 0; i < st->n_meta; i++) cp_free(st->meta_values[i]);
    cp_free(st->tensors);
    cp_free(st->meta_keys);
    cp_free(st->meta_values);
    cp_name_index_free(&st->by_name);
    cp_free(st->path);
    if (st->map) munmap(st->map, st->map_size);
    memset(st, 0, sizeof *st);
}

/* ---- writer: checks and order ---------------------------------------------------------------- */

/* Python's order: dtype descending in alignment order, then name ascending byte-wise. */
static int compare_for_write(const void *a, const void *b) {
    const cp_st_write_tensor *x = *(const cp_st_write_tensor *const *)a;
    const cp_st_write_tensor *y = *(const cp_st_write_tensor *const *)b;
    if (x->dtype != y->dtype) return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_write_names(const void *a, const void *b) {
    return strcmp((*(const cp_st_write_tensor *const *)a)->name,
                  (*(const cp_st_write_tensor *const *)b)->name);
}

/* Checks one tensor to write and returns its byte count in *nbytes. */
static cp_status check_write_tensor(const char *path, const cp_st_write_tensor *t, int index,
                                    uint64_t *nbytes) {
    if (!t->name) return cp_error("%s: tensor %d has no name", path, index);
    const char *name = t->name;
    if (!cp_utf8_valid(name, strlen(name)))
        return cp_error("%s: tensor \"%s\": name is not valid UTF-8", path, name);
    if (strcmp(name, "__metadata__") == 0)
        return cp_error("%s: \"__metadata__\" is reserved and cannot name a tensor", path);
    if ((int)t->dtype < 0 || t->dtype >= CP_DTYPE_COUNT)
        return cp_error("%s: tensor \"%s\": invalid dtype %d", path, name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > CP_ST_MAX_DIMS)
        return cp_error("%s: tensor \"%s\": ndim %d outside 0..%d", path, name, t->ndim,
                        CP_ST_MAX_DIMS);
    int64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return cp_error("%s: tensor \"%s\": negative dimension %" PRId64 " at %d", path, name,
                            t->shape[d], d);
        if (t->shape[d] != 0 && numel > INT64_MAX / t->shape[d]) overflow = 1;
        else numel *= t->shape[d];
    }
    int64_t bytes = (overflow && numel != 0) ? -1 : cp_dtype_nbytes(t->dtype, numel);
    char shape_text[256];
    if (bytes < 0)
        return cp_error("%s: tensor \"%s\": shape %s of %s is not a whole number of bytes or "
                        "overflows", path, name, format_shape(t->shape, t->ndim, shape_text,
                        sizeof shape_text), cp_dtype_name(t->dtype));
    if (bytes > 0 && !t->data) return cp_error("%s: tensor \"%s\": data is NULL", path, name);
    *nbytes = (uint64_t)bytes;
    return CP_OK;
}

/* Builds the complete header (length prefix included, padded) into *out; `order` receives the
 * tensors in file order. */
static cp_status build_header(const char *path, const cp_st_write_tensor *tensors, int n,
                              const char *const *meta_keys, const char *const *meta_values,
                              int n_meta, const cp_st_write_tensor **order, cp_strbuf *out) {
    if (n < 0 || n_meta < 0) return cp_error("%s: negative tensor or metadata count", path);
    if ((n > 0 && !tensors) || (n_meta > 0 && (!meta_keys || !meta_values)))
        return cp_error("%s: tensor or metadata array is NULL", path);
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return cp_error("%s: metadata entry %d is NULL", path, i);
        if (!cp_utf8_valid(meta_keys[i], strlen(meta_keys[i])) ||
            !cp_utf8_valid(meta_values[i], strlen(meta_values[i])))
            return cp_error("%s: metadata \"%s\" is not valid UTF-8", path, meta_keys[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[i], meta_keys[j]) == 0)
                return cp_error("%s: metadata key \"%s\" given twice", path, meta_keys[i]);
    }
    uint64_t *sizes = cp_malloc((size_t)n * sizeof *sizes, "safetensors writer");
    if (!sizes) return cp_error_context("%s", path);
    cp_status s = CP_OK;
    for (int i = 0; i < n && s == CP_OK; i++) {
        order[i] = &tensors[i];
        s = check_write_tensor(path, &tensors[i], i, &sizes[i]);
    }
    if (s == CP_OK) {
        qsort(order, (size_t)n, sizeof *order, compare_write_names);
        for (int i = 1; i < n && s == CP_OK; i++)
            if (strcmp(order[i - 1]->name, order[i]->name) == 0)
                s = cp_error("%s: duplicate tensor name \"%s\"", path, order[i]->name);
        qsort(order, (size_t)n, sizeof *order, compare_for_write);
    }
    if (s != CP_OK) {
        cp_free(sizes);
        return CP_ERR;
    }

    cp_sb_append_n(out, "\0\0\0\0\0\0\0\0", 8); /* the length, filled in below */
    cp_sb_append(out, "{");
    if (n_meta > 0) {
        cp_sb_append(out, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) cp_sb_append(out, ",");
            cp_json_write_cstring(out, meta_keys[i], 0);
            cp_sb_append(out, ":");
            cp_json_write_cstring(out, meta_values[i], 0);
        }
        cp_sb_append(out, "}");
        if (n > 0) cp_sb_append(out, ",");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const cp_st_write_tensor *t = order[i];
        uint64_t nbytes = sizes[t - tensors];
        if (i) cp_sb_append(out, ",");
        cp_json_write_cstring(out, t->name, 0);
        cp_sb_printf(out, ":{\"dtype\":\"%s\",\"shape\":[", cp_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) cp_sb_printf(out, d ? ",%" PRIu64 : "%" PRIu64, (uint64_t)t->shape[d]);
        cp_sb_printf(out, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset, offset + nbytes);
        offset += nbytes;
    }
    cp_sb_append(out, "}");
    cp_free(sizes);
    while (!out->failed && (out->len - 8) % 8 != 0) cp_sb_append(out, " ");
    if (out->failed) return cp_error_context("%s", path);
    if (out->len - 8 > CP_ST_MAX_HEADER)
        return cp_error("%s: header of %zu bytes exceeds the limit of %llu bytes", path,
                        out->len - 8, CP_ST_MAX_HEADER);
    cp_put_le64((uint8_t *)out->data, (uint64_t)(out->len - 8));
    return CP_OK;
}

/* ---- writer: file ---------------------------------------------------------------------------- */

/* Writes all n bytes, retrying short writes and EINTR; returns 0 or an errno value. */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Best effort: makes the rename durable by syncing the directory that holds `path`. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? cp_malloc((size_t)(slash - path) + 2, "directory name") : NULL;
    if (slash && !dir) return;
    if (dir) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    cp_free(dir);
}

cp_status cp_st_write(const char *path, const cp_st_write_tensor *tensors, int n_tensors,
                      const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    if (!path) return cp_error("cp_st_write: path is NULL");
    const cp_st_write_tensor **order =
        cp_malloc((size_t)(n_tensors > 0 ? n_tensors : 0) * sizeof *order, "safetensors writer");
    if (!order) return cp_error_context("%s", path);
    cp_strbuf header;
    cp_sb_init(&header);
    if (build_header(path, tensors, n_tensors, meta_keys, meta_values, n_meta, order, &header) !=
        CP_OK) {
        cp_sb_free(&header);
        cp_free((void *)order);
        return CP_ERR;
    }

    size_t tmp_size = strlen(path) + 32;
    char *tmp = cp_malloc(tmp_size, "temporary file name");
    cp_status s = CP_OK;
    int fd = -1, err = 0;
    if (!tmp) {
        s = cp_error_context("%s", path);
        goto done;
    }
    snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        s = cp_error("%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    err = write_all(fd, header.data, header.len);
    for (int i = 0; i < n_tensors && !err; i++) {
        const cp_st_write_tensor *t = order[i];
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        err = write_all(fd, t->data, (size_t)cp_dtype_nbytes(t->dtype, numel));
    }
    if (err) s = cp_error("%s: cannot write %s: %s", path, tmp, strerror(err));
    else if (fsync(fd) != 0) s = cp_error("%s: cannot sync %s: %s", path, tmp, strerror(errno));
    if (close(fd) != 0 && s == CP_OK)
        s = cp_error("%s: cannot close %s: %s", path, tmp, strerror(errno));
    if (s == CP_OK && rename(tmp, path) != 0)
        s = cp_error("%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (s != CP_OK) unlink(tmp);
    else sync_parent_dir(path);
done:
    cp_free(tmp);
    cp_sb_free(&header);
    cp_free((void *)order);
    return s;
}
