/*
 * gguf.h — the GGUF file format (llama.cpp's single-file checkpoints): a validating,
 * memory-mapping reader. Its tensors' element types, and their dequantization to f32, are
 * ggml_quant.h.
 *
 * Format (version 2 and 3; all integers little-endian):
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv x    { string key, u32 value_type, value }          metadata
 *   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (default 32), then the data section; each tensor's bytes
 *   start at data_section + offset.
 * A string is u64 length + bytes (no NUL). An array value is u32 element type, u64 count, then
 * the elements. ne[0] is the fastest-varying dimension, so a Hugging Face [out, in] matrix is
 * ne = {in, out}. Quantized types store blocks of ne[0]-contiguous elements.
 *
 * The reader trusts nothing: every length and count is checked against the bytes left before it
 * is used (no allocation larger than the file can justify), keys and tensor names must be
 * non-empty UTF-8 without NUL and unique, bool values 0 or 1, general.alignment a power of two,
 * dims 1..4 each >= 1 with no overflow, ne[0] a whole number of blocks for block types, every
 * tensor inside the file, aligned, and no two overlapping. Any violation is an error naming the
 * file and the key or tensor. Tensor types the reader does not know are an error too (their
 * size cannot be checked); known types that cpeft cannot dequantize (the IQ*, TQ* and FP4
 * families, integers) parse fine and fail only in cp_gguf_dequantize, naming the type and tensor.
 *
 * Not here: what the tensors mean (src/convert/ maps llama-architecture files to Hugging Face
 * checkpoints, with the names in models/gguf_names.h). Hosts are assumed little-endian, as the
 * rest of cpeft's file code does; big-endian GGUF files are recognised and refused.
 */
#ifndef CP_IO_GGUF_H
#define CP_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/name_index.h"
#include "io/ggml_quant.h"

#define CP_GGUF_MAX_DIMS 4
#define CP_GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types, numbered as in the file. */
typedef enum {
    CP_GGUF_UINT8 = 0, CP_GGUF_INT8 = 1, CP_GGUF_UINT16 = 2, CP_GGUF_INT16 = 3,
    CP_GGUF_UINT32 = 4, CP_GGUF_INT32 = 5, CP_GGUF_FLOAT32 = 6, CP_GGUF_BOOL = 7,
    CP_GGUF_STRING = 8, CP_GGUF_ARRAY = 9, CP_GGUF_UINT64 = 10, CP_GGUF_INT64 = 11,
    CP_GGUF_FLOAT64 = 12,
    CP_GGUF_VTYPE_COUNT
} cp_gguf_vtype;

/* A string inside the mapping: `len` bytes at `ptr`, not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint64_t len;
} cp_gguf_str;

typedef struct {
    char *key;                 /* NUL-terminated copy */
    cp_gguf_vtype type;
    /* Scalars: the value widened (u for unsigned and bool, i for signed, f for floats). */
    uint64_t u;
    int64_t i;
    double f;
    cp_gguf_str str;           /* type == CP_GGUF_STRING */
    /* Arrays: element type and count; fixed-size elements start at arr_data (possibly
     * unaligned: read them with memcpy or the cp_gguf_arr_* helpers); string elements are indexed
     * in arr_strs. Arrays of arrays are validated but their elements are not exposed. */
    cp_gguf_vtype arr_type;
    uint64_t arr_len;
    const uint8_t *arr_data;
    cp_gguf_str *arr_strs;
} cp_gguf_kv;

typedef struct {
    char *name;                /* NUL-terminated copy */
    int n_dims;
    int64_t ne[CP_GGUF_MAX_DIMS]; /* ggml order: ne[0] varies fastest; unused dims are 1 */
    cp_ggml_type type;
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;
    int64_t numel;
    const void *data;          /* points into the mapping */
} cp_gguf_tensor;

typedef struct {
    char *path;                /* as given to cp_gguf_open, or the name given to cp_gguf_parse */
    void *map;
    size_t map_size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;      /* file offset of the data section */
    cp_gguf_kv *kvs;           /* in file order */
    int64_t n_kv;
    cp_gguf_tensor *tensors;   /* in file order */
    int64_t n_tensors;
    cp_name_index kv_index;    /* private: by key, for lookups */
    cp_name_index tensor_index; /* private: by name */
} cp_gguf;

/* Maps `path` read-only and validates it. On error *g is left empty (safe to cp_gguf_close). */
cp_status cp_gguf_open(cp_gguf *g, const char *path);
/* Validates an in-memory image (tests, fuzzer); pointers refer into `buf`, which must outlive *g. */
cp_status cp_gguf_parse(cp_gguf *g, const void *buf, size_t len, const char *name);
void cp_gguf_close(cp_gguf *g);

const cp_gguf_kv *cp_gguf_find_kv(const cp_gguf *g, const char *key);
const cp_gguf_tensor *cp_gguf_find_tensor(const cp_gguf *g, const char *name);

/* Typed getters. When the key is absent *out = dflt, or an error when `required`. A present key
 * of the wrong type is always an error naming the key, the type expected and the type found.
 * get_int accepts every integer type and checks the value fits [min, max]; get_float accepts
 * FLOAT32/FLOAT64 (and integers); get_string gives a NUL-terminated copy (caller frees with
 * cp_free; NULL when absent and not required) and refuses strings holding NUL. */
cp_status cp_gguf_get_int(const cp_gguf *g, const char *key, int64_t dflt, int required, int64_t min,
                          int64_t max, int64_t *out);
cp_status cp_gguf_get_float(const cp_gguf *g, const char *key, double dflt, int required, double *out);
cp_status cp_gguf_get_bool(const cp_gguf *g, const char *key, int dflt, int required, int *out);
cp_status cp_gguf_get_string(const cp_gguf *g, const char *key, int required, char **out);
/* The array under `key` with elements of type `elem` (STRING, an integer type or FLOAT32), or an
 * error naming the key. *kv is NULL when the key is absent and not required. */
cp_status cp_gguf_get_array(const cp_gguf *g, const char *key, cp_gguf_vtype elem, int required,
                            const cp_gguf_kv **kv);
/* Element i of an integer array as int64 / of a FLOAT32 or FLOAT64 array as double. */
int64_t cp_gguf_arr_int(const cp_gguf_kv *kv, uint64_t i);
double cp_gguf_arr_float(const cp_gguf_kv *kv, uint64_t i);

const char *cp_gguf_vtype_name(int t);
/* The whole tensor as f32 (numel floats in dst), in ggml order. Errors name the tensor:
 * "unsupported tensor type IQ2_XS in tensor blk.0.attn_q.weight". */
cp_status cp_gguf_dequantize(const cp_gguf *g, const cp_gguf_tensor *t, float *dst);

#endif
