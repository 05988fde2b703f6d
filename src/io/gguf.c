/*
 * gguf.c — reading GGUF files (see gguf.h for the format).
 *
 * cp_gguf_open maps the file read-only and hands the image to cp_gguf_parse, which walks it once
 * with a bounds-checked cursor — header, metadata, tensor infos — then checks the layout (data
 * section inside the file, every tensor aligned, inside and not overlapping another) and the
 * uniqueness of keys and names. Nothing is copied but keys and names; string values, arrays and
 * tensor data point into the image. ggml's tensor types (sizes, dequantization) are ggml_quant.c.
 *
 * Not here: what tensors and keys mean for a model (src/convert/, with models/gguf_names.h).
 */
#include "io/gguf.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"
#include "io/fsutil.h"
#include "core/bytes.h"
#include "core/dtype.h"
#include "core/utf8.h"

/* ---- metadata value types ---------------------------------------------------------------- */

static const char *const vtype_names[CP_GGUF_VTYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY",
    "UINT64", "INT64", "FLOAT64",
};
/* Bytes of a scalar of each type (0: variable-size). */
static const int vtype_size[CP_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *cp_gguf_vtype_name(int t) {
    static _Thread_local char buf[32];
    if (t >= 0 && t < CP_GGUF_VTYPE_COUNT) return vtype_names[t];
    snprintf(buf, sizeof buf, "type %d", t);
    return buf;
}

static int is_int_vtype(int t) {
    return t == CP_GGUF_UINT8 || t == CP_GGUF_INT8 || t == CP_GGUF_UINT16 || t == CP_GGUF_INT16 ||
           t == CP_GGUF_UINT32 || t == CP_GGUF_INT32 || t == CP_GGUF_UINT64 || t == CP_GGUF_INT64;
}

/* ---- the cursor --------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name; /* file for messages */
} cursor;

static size_t left(const cursor *c) { return c->size - c->pos; }

/* Errors when fewer than n bytes are left; `what` says what was being read. */
static cp_status need(const cursor *c, uint64_t n, const char *what) {
    if (n <= left(c)) return CP_OK;
    return cp_error("truncated: %s needs %" PRIu64 " bytes at offset %zu, the file has %zu left",
                    what, n, c->pos, left(c));
}

static cp_status read_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return CP_ERR;
    *v = cp_le32(c->p + c->pos);
    c->pos += 4;
    return CP_OK;
}

static cp_status read_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return CP_ERR;
    *v = cp_le64(c->p + c->pos);
    c->pos += 8;
    return CP_OK;
}

static cp_status read_str(cursor *c, cp_gguf_str *s, const char *what) {
    uint64_t len;
    if (read_u64(c, &len, what) || need(c, len, what)) return CP_ERR;
    s->ptr = (const char *)c->p + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return CP_OK;
}

static int valid_name(const cp_gguf_str *s) {
    return s->len > 0 && !memchr(s->ptr, 0, (size_t)s->len) && cp_utf8_valid(s->ptr, (size_t)s->len);
}

static char *dup_str(const cp_gguf_str *s, const char *what) {
    char *out = cp_malloc((size_t)s->len + 1, what);
    if (!out) return NULL;
    memcpy(out, s->ptr, (size_t)s->len);
    out[s->len] = '\0';
    return out;
}

/* ---- metadata ------------------------------------------------------------------------------ */

/* Skips (validating) one value of type t; used for the elements of nested arrays. */
static cp_status skip_value(cursor *c, uint32_t t, int depth, const char *key) {
    if (t >= CP_GGUF_VTYPE_COUNT)
        return cp_error("metadata key '%s': unknown value type %" PRIu32, key, t);
    if (t == CP_GGUF_STRING) {
        cp_gguf_str s;
        return read_str(c, &s, "a string in a nested array");
    }
    if (t != CP_GGUF_ARRAY) {
        if (need(c, (uint64_t)vtype_size[t], "a nested array element")) return CP_ERR;
        if (t == CP_GGUF_BOOL && c->p[c->pos] > 1)
            return cp_error("metadata key '%s': bool value %u (must be 0 or 1)", key, c->p[c->pos]);
        c->pos += (size_t)vtype_size[t];
        return CP_OK;
    }
    if (depth >= 4) return cp_error("metadata key '%s': arrays nested more than 4 deep", key);
    uint32_t et;
    uint64_t n;
    if (read_u32(c, &et, "a nested array's element type") || read_u64(c, &n, "a nested array's length"))
        return CP_ERR;
    if (et >= CP_GGUF_VTYPE_COUNT)
        return cp_error("metadata key '%s': unknown array element type %" PRIu32, key, et);
    if (vtype_size[et] && et != CP_GGUF_BOOL) {
        if (n > left(c) / (uint64_t)vtype_size[et])
            return cp_error("metadata key '%s': nested array of %" PRIu64 " %s runs past the end of the file",
                            key, n, vtype_names[et]);
        c->pos += (size_t)(n * (uint64_t)vtype_size[et]);
        return CP_OK;
    }
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, et, depth + 1, key)) return CP_ERR;
    return CP_OK;
}

static cp_status parse_array(cursor *c, cp_gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    if (read_u32(c, &et, "an array's element type") || read_u64(c, &n, "an array's length")) goto fail;
    if (et >= CP_GGUF_VTYPE_COUNT)
        return cp_error("metadata key '%s': unknown array element type %" PRIu32, kv->key, et);
    kv->arr_type = (cp_gguf_vtype)et;
    kv->arr_len = n;
    kv->arr_data = c->p + c->pos;
    if (vtype_size[et]) {
        if (n > left(c) / (uint64_t)vtype_size[et])
            return cp_error("metadata key '%s': array of %" PRIu64 " %s runs past the end of the file (%zu bytes left)",
                            kv->key, n, vtype_names[et], left(c));
        if (et == CP_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->pos + i] > 1)
                    return cp_error("metadata key '%s': element %" PRIu64 " is bool value %u (must be 0 or 1)",
                                    kv->key, i, c->p[c->pos + i]);
        c->pos += (size_t)(n * (uint64_t)vtype_size[et]);
        return CP_OK;
    }
    if (et == CP_GGUF_STRING) {
        if (n > left(c) / 8) /* each string needs at least its 8-byte length */
            return cp_error("metadata key '%s': array of %" PRIu64 " strings runs past the end of the file (%zu bytes left)",
                            kv->key, n, left(c));
        kv->arr_strs = cp_malloc(n ? (size_t)n * sizeof *kv->arr_strs : 1, "a GGUF string array");
        if (!kv->arr_strs) return CP_ERR;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len;
            if (read_u64(c, &len, "a string's length"))
                return cp_error_context("metadata key '%s': string %" PRIu64 " of %" PRIu64, kv->key, i, n);
            if (len > left(c))
                return cp_error("metadata key '%s': string %" PRIu64 " of %" PRIu64 " claims %" PRIu64
                                " bytes, the file has %zu left", kv->key, i, n, len, left(c));
            kv->arr_strs[i].ptr = (const char *)c->p + c->pos;
            kv->arr_strs[i].len = len;
            c->pos += (size_t)len;
        }
        return CP_OK;
    }
    /* An array of arrays: validated, not exposed. */
    if (n > left(c) / 12)
        return cp_error("metadata key '%s': array of %" PRIu64 " arrays runs past the end of the file",
                        kv->key, n);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, CP_GGUF_ARRAY, 1, kv->key)) return CP_ERR;
    return CP_OK;
fail:
    return cp_error_context("metadata key '%s'", kv->key);
}

static cp_status parse_kv(cursor *c, cp_gguf_kv *kv, int64_t index) {
    cp_gguf_str key;
    uint32_t t;
    size_t at = c->pos;
    if (read_str(c, &key, "a metadata key"))
        return cp_error_context("metadata entry %" PRId64, index);
    if (!valid_name(&key))
        return cp_error("metadata entry %" PRId64 " (offset %zu): the key is empty, holds a NUL or is not UTF-8",
                        index, at);
    if (!(kv->key = dup_str(&key, "a GGUF key"))) return CP_ERR;
    if (read_u32(c, &t, "a value type")) return cp_error_context("metadata key '%s'", kv->key);
    if (t >= CP_GGUF_VTYPE_COUNT)
        return cp_error("metadata key '%s': unknown value type %" PRIu32, kv->key, t);
    kv->type = (cp_gguf_vtype)t;
    const uint8_t *p = c->p + c->pos;
    switch (t) {
    case CP_GGUF_STRING:
        if (read_str(c, &kv->str, "a string value")) return cp_error_context("metadata key '%s'", kv->key);
        return CP_OK;
    case CP_GGUF_ARRAY:
        return parse_array(c, kv);
    default:
        if (need(c, (uint64_t)vtype_size[t], "a value")) return cp_error_context("metadata key '%s'", kv->key);
        c->pos += (size_t)vtype_size[t];
    }
    switch (t) {
    case CP_GGUF_UINT8: kv->u = p[0]; kv->i = (int64_t)kv->u; break;
    case CP_GGUF_INT8: kv->i = (int8_t)p[0]; break;
    case CP_GGUF_UINT16: kv->u = cp_le16(p); kv->i = (int64_t)kv->u; break;
    case CP_GGUF_INT16: kv->i = (int16_t)cp_le16(p); break;
    case CP_GGUF_UINT32: kv->u = cp_le32(p); kv->i = (int64_t)kv->u; break;
    case CP_GGUF_INT32: kv->i = (int32_t)cp_le32(p); break;
    case CP_GGUF_UINT64: kv->u = cp_le64(p); kv->i = (int64_t)kv->u; break;
    case CP_GGUF_INT64: kv->i = (int64_t)cp_le64(p); break;
    case CP_GGUF_FLOAT32: kv->f = cp_le_f32(p); break;
    case CP_GGUF_FLOAT64: kv->f = cp_le_f64(p); break;
    case CP_GGUF_BOOL:
        if (p[0] > 1) return cp_error("metadata key '%s': bool value %u (must be 0 or 1)", kv->key, p[0]);
        kv->u = p[0];
        break;
    }
    if (t == CP_GGUF_INT8 || t == CP_GGUF_INT16 || t == CP_GGUF_INT32 || t == CP_GGUF_INT64) kv->u = (uint64_t)kv->i;
    return CP_OK;
}

/* ---- tensor infos ------------------------------------------------------------------------- */

static cp_status parse_tensor_info(cursor *c, cp_gguf_tensor *t, int64_t index, uint64_t alignment) {
    cp_gguf_str name;
    size_t at = c->pos;
    if (read_str(c, &name, "a tensor name")) return cp_error_context("tensor info %" PRId64, index);
    if (!valid_name(&name))
        return cp_error("tensor info %" PRId64 " (offset %zu): the name is empty, holds a NUL or is not UTF-8",
                        index, at);
    if (!(t->name = dup_str(&name, "a GGUF tensor name"))) return CP_ERR;
    uint32_t n_dims, type;
    if (read_u32(c, &n_dims, "the number of dimensions")) goto truncated;
    if (n_dims < 1 || n_dims > CP_GGUF_MAX_DIMS)
        return cp_error("tensor '%s': %" PRIu32 " dimensions (expected 1 to %d)", t->name, n_dims, CP_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t numel = 1;
    for (int d = 0; d < CP_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if (read_u64(c, &ne, "a dimension")) goto truncated;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return cp_error("tensor '%s': dimension %" PRIu32 " is %" PRIu64 " (expected 1 to 2^63-1)",
                            t->name, d, ne);
        if (numel > (uint64_t)INT64_MAX / ne)
            return cp_error("tensor '%s': the element count overflows 64 bits", t->name);
        numel *= ne;
        t->ne[d] = (int64_t)ne;
    }
    if (read_u32(c, &type, "the tensor type")) goto truncated;
    if (type > INT32_MAX || !cp_ggml_block_size((int)type))
        return cp_error("tensor '%s': unknown ggml tensor type %" PRIu32, t->name, type);
    t->type = (cp_ggml_type)type;
    uint64_t block = (uint64_t)cp_ggml_block_size((int)type), bsize = (uint64_t)cp_ggml_type_size((int)type);
    if ((uint64_t)t->ne[0] % block)
        return cp_error("tensor '%s': type %s stores blocks of %" PRIu64 " elements but the row has %" PRId64,
                        t->name, cp_ggml_type_name((int)type), block, t->ne[0]);
    if (numel / block > UINT64_MAX / bsize)
        return cp_error("tensor '%s': the byte size overflows 64 bits", t->name);
    t->numel = (int64_t)numel;
    t->nbytes = numel / block * bsize;
    if (read_u64(c, &t->offset, "the data offset")) goto truncated;
    if (t->offset % alignment)
        return cp_error("tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        t->name, t->offset, alignment);
    return CP_OK;
truncated:
    return cp_error_context("tensor '%s'", t->name);
}

/* ---- the whole file ----------------------------------------------------------------------- */

static int cmp_tensor_offset(const void *a, const void *b) {
    const cp_gguf_tensor *x = *(const cp_gguf_tensor *const *)a, *y = *(const cp_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The metadata's general.alignment, checked. */
static cp_status get_alignment(cp_gguf *g) {
    g->alignment = CP_GGUF_DEFAULT_ALIGNMENT;
    const cp_gguf_kv *kv = cp_gguf_find_kv(g, "general.alignment");
    if (!kv) return CP_OK;
    if (!is_int_vtype(kv->type))
        return cp_error("metadata key 'general.alignment': expected an integer, found %s",
                        vtype_names[kv->type]);
    int neg = kv->i < 0 && (kv->type == CP_GGUF_INT8 || kv->type == CP_GGUF_INT16 || kv->type == CP_GGUF_INT32 ||
                            kv->type == CP_GGUF_INT64);
    uint64_t a = neg ? 0 : kv->u;
    if (a == 0 || (a & (a - 1)) || a > (1u << 30)) {
        if (neg) return cp_error("metadata key 'general.alignment': %" PRId64 " is not a power of two", kv->i);
        return cp_error("metadata key 'general.alignment': %" PRIu64 " is not a power of two up to 2^30", a);
    }
    g->alignment = a;
    return CP_OK;
}

static cp_status parse(cp_gguf *g, cursor *c) {
    if (c->size < 4 || memcmp(c->p, "GGUF", 4) != 0)
        return cp_error("not a GGUF file (the first 4 bytes are not \"GGUF\")");
    c->pos = 4;
    if (read_u32(c, &g->version, "the version")) return CP_ERR;
    if (g->version != 2 && g->version != 3) {
        uint32_t swapped = __builtin_bswap32(g->version);
        if (swapped == 2 || swapped == 3)
            return cp_error("a big-endian GGUF file (version %" PRIu32 "); only little-endian files are supported",
                            swapped);
        return cp_error("unsupported GGUF version %" PRIu32 " (supported: 2 and 3)", g->version);
    }
    uint64_t n_tensors, n_kv;
    if (read_u64(c, &n_tensors, "the tensor count") || read_u64(c, &n_kv, "the metadata count")) return CP_ERR;
    /* A metadata entry takes at least 14 bytes (8-byte key length, a 1-byte key, type, 1-byte
     * value), a tensor info at least 33; counts the file cannot hold are lies. */
    if (n_kv > left(c) / 14)
        return cp_error("the header claims %" PRIu64 " metadata entries; the file's %zu remaining bytes cannot hold them",
                        n_kv, left(c));
    if (n_tensors > left(c) / 33)
        return cp_error("the header claims %" PRIu64 " tensors; the file's %zu remaining bytes cannot hold them",
                        n_tensors, left(c));
    g->kvs = cp_calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kvs, "GGUF metadata");
    g->tensors = cp_calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors, "GGUF tensor infos");
    if (!g->kvs || !g->tensors) return CP_ERR;

    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so that close frees the partial entry */
        if (parse_kv(c, &g->kvs[i], (int64_t)i)) return CP_ERR;
    }
    const char *twice;
    if (cp_name_index_build(&g->kv_index, g->kvs, (size_t)n_kv, sizeof *g->kvs, offsetof(cp_gguf_kv, key), &twice,
                            "GGUF metadata"))
        return CP_ERR;
    if (twice) return cp_error("metadata key '%s' appears twice", twice);
    if (get_alignment(g)) return CP_ERR;

    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        if (parse_tensor_info(c, &g->tensors[i], (int64_t)i, g->alignment)) return CP_ERR;
    }
    if (cp_name_index_build(&g->tensor_index, g->tensors, (size_t)n_tensors, sizeof *g->tensors,
                            offsetof(cp_gguf_tensor, name), &twice, "GGUF tensor infos"))
        return CP_ERR;
    if (twice) return cp_error("tensor '%s' appears twice", twice);

    /* The data section starts at the next multiple of the alignment. A file without tensors may
     * end before it. */
    uint64_t pos = c->pos, data = pos + (g->alignment - pos % g->alignment) % g->alignment;
    g->data_offset = data;
    if (n_tensors == 0) return CP_OK;
    if (data > c->size)
        return cp_error("truncated: the data section should start at offset %" PRIu64 " but the file has %zu bytes",
                        data, c->size);
    uint64_t avail = c->size - data;
    for (uint64_t i = 0; i < n_tensors; i++) {
        cp_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset)
            return cp_error("tensor '%s': its %" PRIu64 " bytes at data offset %" PRIu64
                            " run past the end of the file (the data section holds %" PRIu64 " bytes)",
                            t->name, t->nbytes, t->offset, avail);
        t->data = c->p + data + t->offset;
    }
    /* No overlap: sorted by offset, each tensor ends before the next begins. */
    const cp_gguf_tensor **by_off = cp_malloc((size_t)n_tensors * sizeof *by_off, "GGUF tensor infos");
    if (!by_off) return CP_ERR;
    for (uint64_t i = 0; i < n_tensors; i++) by_off[i] = g->tensor_index.refs[i].entry; /* name order, then: */
    qsort(by_off, (size_t)n_tensors, sizeof *by_off, cmp_tensor_offset);
    cp_status st = CP_OK;
    for (uint64_t i = 1; i < n_tensors && st == CP_OK; i++)
        if (by_off[i - 1]->offset + by_off[i - 1]->nbytes > by_off[i]->offset)
            st = cp_error("tensors '%s' and '%s' overlap (bytes %" PRIu64 "..%" PRIu64 " and %" PRIu64 "..)",
                          by_off[i - 1]->name, by_off[i]->name, by_off[i - 1]->offset,
                          by_off[i - 1]->offset + by_off[i - 1]->nbytes, by_off[i]->offset);
    cp_free(by_off);
    return st;
}

cp_status cp_gguf_parse(cp_gguf *g, const void *buf, size_t len, const char *name) {
    memset(g, 0, sizeof *g);
    if (!(g->path = cp_strdup(name ? name : "<gguf>"))) return CP_ERR;
    cursor c = {.p = buf, .size = len, .pos = 0, .name = g->path};
    if (parse(g, &c) != CP_OK) {
        cp_error_context("%s", g->path);
        cp_gguf_close(g);
        return CP_ERR;
    }
    return CP_OK;
}

static cp_status parse_mapped(void *g, const void *bytes, size_t size, const char *name) {
    return cp_gguf_parse(g, bytes, size, name);
}

/* 24 bytes: the smallest valid file; the parser says what a shorter one lacks. */
cp_status cp_gguf_open(cp_gguf *g, const char *path) {
    return cp_map_parse(path, 24, parse_mapped, g, sizeof *g, &g->map, &g->map_size);
}

void cp_gguf_close(cp_gguf *g) {
    if (g->kvs)
        for (int64_t i = 0; i < g->n_kv; i++) {
            cp_free(g->kvs[i].key);
            cp_free(g->kvs[i].arr_strs);
        }
    if (g->tensors)
        for (int64_t i = 0; i < g->n_tensors; i++) cp_free(g->tensors[i].name);
    cp_free(g->kvs);
    cp_free(g->tensors);
    cp_name_index_free(&g->kv_index);
    cp_name_index_free(&g->tensor_index);
    cp_free(g->path);
    if (g->map) munmap(g->map, g->map_size);
    memset(g, 0, sizeof *g);
}

/* ---- lookups and typed getters ------------------------------------------------------------ */

const cp_gguf_kv *cp_gguf_find_kv(const cp_gguf *g, const char *key) {
    return cp_name_index_find(&g->kv_index, key);
}

const cp_gguf_tensor *cp_gguf_find_tensor(const cp_gguf *g, const char *name) {
    return cp_name_index_find(&g->tensor_index, name);
}

static const cp_gguf_kv *lookup(const cp_gguf *g, const char *key, int required, cp_status *st) {
    const cp_gguf_kv *kv = cp_gguf_find_kv(g, key);
    *st = CP_OK;
    if (!kv && required) *st = cp_error("%s: metadata key '%s' is missing", g->path, key);
    return kv;
}

static cp_status wrong_type(const cp_gguf *g, const cp_gguf_kv *kv, const char *expected) {
    if (kv->type == CP_GGUF_ARRAY)
        return cp_error("%s: metadata key '%s': expected %s, found an array of %" PRIu64 " %s", g->path, kv->key,
                        expected, kv->arr_len, cp_gguf_vtype_name(kv->arr_type));
    return cp_error("%s: metadata key '%s': expected %s, found %s", g->path, kv->key, expected,
                    cp_gguf_vtype_name(kv->type));
}

static int is_signed_vtype(int t) {
    return t == CP_GGUF_INT8 || t == CP_GGUF_INT16 || t == CP_GGUF_INT32 || t == CP_GGUF_INT64;
}

cp_status cp_gguf_get_int(const cp_gguf *g, const char *key, int64_t dflt, int required, int64_t min,
                          int64_t max, int64_t *out) {
    cp_status st;
    const cp_gguf_kv *kv = lookup(g, key, required, &st);
    *out = dflt;
    if (!kv) return st;
    if (!is_int_vtype(kv->type)) return wrong_type(g, kv, "an integer");
    if (!is_signed_vtype(kv->type) && kv->u > (uint64_t)INT64_MAX)
        return cp_error("%s: metadata key '%s': %" PRIu64 " is out of range [%" PRId64 ", %" PRId64 "]", g->path, key,
                        kv->u, min, max);
    if (kv->i < min || kv->i > max)
        return cp_error("%s: metadata key '%s': %" PRId64 " is out of range [%" PRId64 ", %" PRId64 "]", g->path, key,
                        kv->i, min, max);
    *out = kv->i;
    return CP_OK;
}

cp_status cp_gguf_get_float(const cp_gguf *g, const char *key, double dflt, int required, double *out) {
    cp_status st;
    const cp_gguf_kv *kv = lookup(g, key, required, &st);
    *out = dflt;
    if (!kv) return st;
    if (kv->type == CP_GGUF_FLOAT32 || kv->type == CP_GGUF_FLOAT64) *out = kv->f;
    else if (is_signed_vtype(kv->type)) *out = (double)kv->i;
    else if (is_int_vtype(kv->type)) *out = (double)kv->u;
    else return wrong_type(g, kv, "a number");
    if (*out != *out || *out == 1.0 / 0.0 || *out == -1.0 / 0.0)
        return cp_error("%s: metadata key '%s': %g is not a finite number", g->path, key, *out);
    return CP_OK;
}

cp_status cp_gguf_get_bool(const cp_gguf *g, const char *key, int dflt, int required, int *out) {
    cp_status st;
    const cp_gguf_kv *kv = lookup(g, key, required, &st);
    *out = dflt;
    if (!kv) return st;
    if (kv->type != CP_GGUF_BOOL) return wrong_type(g, kv, "a BOOL");
    *out = (int)kv->u;
    return CP_OK;
}

cp_status cp_gguf_get_string(const cp_gguf *g, const char *key, int required, char **out) {
    cp_status st;
    const cp_gguf_kv *kv = lookup(g, key, required, &st);
    *out = NULL;
    if (!kv) return st;
    if (kv->type != CP_GGUF_STRING) return wrong_type(g, kv, "a STRING");
    if (memchr(kv->str.ptr, 0, (size_t)kv->str.len))
        return cp_error("%s: metadata key '%s': the string holds a NUL byte", g->path, key);
    return (*out = dup_str(&kv->str, key)) ? CP_OK : CP_ERR;
}

cp_status cp_gguf_get_array(const cp_gguf *g, const char *key, cp_gguf_vtype elem, int required,
                            const cp_gguf_kv **out) {
    cp_status st;
    const cp_gguf_kv *kv = lookup(g, key, required, &st);
    *out = NULL;
    if (!kv) return st;
    int ok = kv->type == CP_GGUF_ARRAY &&
             (kv->arr_type == elem || (is_int_vtype(elem) && is_int_vtype(kv->arr_type)) ||
              (elem == CP_GGUF_FLOAT32 && kv->arr_type == CP_GGUF_FLOAT64));
    if (!ok) {
        char want[48];
        snprintf(want, sizeof want, "an array of %s", is_int_vtype(elem) ? "integers" : cp_gguf_vtype_name(elem));
        if (kv->type == CP_GGUF_ARRAY)
            return cp_error("%s: metadata key '%s': expected %s, found an array of %s", g->path, key, want,
                            cp_gguf_vtype_name(kv->arr_type));
        return wrong_type(g, kv, want);
    }
    *out = kv;
    return CP_OK;
}

int64_t cp_gguf_arr_int(const cp_gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->arr_data + i * (uint64_t)vtype_size[kv->arr_type];
    switch (kv->arr_type) {
    case CP_GGUF_UINT8: return p[0];
    case CP_GGUF_INT8: return (int8_t)p[0];
    case CP_GGUF_UINT16: return cp_le16(p);
    case CP_GGUF_INT16: return (int16_t)cp_le16(p);
    case CP_GGUF_UINT32: return cp_le32(p);
    case CP_GGUF_INT32: return (int32_t)cp_le32(p);
    case CP_GGUF_UINT64: case CP_GGUF_INT64: return (int64_t)cp_le64(p);
    default: return 0;
    }
}

double cp_gguf_arr_float(const cp_gguf_kv *kv, uint64_t i) {
    if (kv->arr_type == CP_GGUF_FLOAT64) return cp_le_f64(kv->arr_data + 8 * i);
    return cp_le_f32(kv->arr_data + 4 * i);
}

/* ---- dequantization (ggml_quant.c does the blocks) ---------------------------------------- */

cp_status cp_gguf_dequantize(const cp_gguf *g, const cp_gguf_tensor *t, float *dst) {
    if (!cp_ggml_can_dequantize(t->type))
        return cp_error("%s: unsupported tensor type %s in tensor %s (cpeft dequantizes F32, F16, BF16, Q4_0, Q4_1, "
                        "Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K)",
                        g->path, cp_ggml_type_name(t->type), t->name);
    return cp_ggml_dequantize_row(t->type, t->data, dst, t->numel);
}
