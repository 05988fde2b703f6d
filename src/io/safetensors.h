/*
 * safetensors.h — the safetensors file format: a validating, memory-mapping reader and a writer
 * whose files are byte-identical to what Python `safetensors` (and so PEFT) writes.
 *
 * Format: u64 little-endian header length N, N bytes of JSON header, then the data buffer. The
 * header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
 * the data buffer) plus an optional "__metadata__" string->string map.
 *
 * The reader trusts nothing: N bounded and inside the file, the header valid UTF-8 JSON object,
 * every dtype known, every shape non-negative with numel x dtype size equal to end - begin (no
 * overflow), the ranges tiling the data buffer exactly (sorted by begin: first at 0, no gaps, no
 * overlap, last ending at the file's end), no duplicate names. Any violation is an error that names
 * the file and the tensor.
 *
 * Leniencies, all harmless: unknown fields inside a tensor entry are ignored (as the reference
 * reader does); cJSON keeps numbers as doubles, so an offset written "8.0" or "8e0" reads as 8
 * (fractions such as 1.5, negative values and values of 2^53 or more are rejected). Stricter than
 * the reference: a string containing "\u0000" is rejected (a C string cannot hold it), and so are
 * a repeated "__metadata__" key and a key repeated inside it. Raw control characters inside
 * strings are rejected as JSON requires (cJSON alone would accept them).
 *
 * Tensor data may be unaligned if the writer did not pad the header to a multiple of 8 (Python
 * safetensors always pads, and so does cp_st_write); use memcpy or check the pointer.
 */
#ifndef CP_IO_SAFETENSORS_H
#define CP_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "core/name_index.h"

#define CP_ST_MAX_DIMS 8
#define CP_ST_MAX_HEADER 100000000ull /* the reference implementation's limit */

typedef struct {
    char *name;
    cp_dtype dtype;
    int ndim;
    int64_t shape[CP_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;   /* byte range inside the data buffer */
    const void *data;      /* points into the mapping (or the caller's buffer for cp_st_parse) */
} cp_st_tensor;

typedef struct {
    char *path;            /* as given to cp_st_open, or the name given to cp_st_parse */
    void *map;             /* mmap of the whole file (NULL for cp_st_parse) */
    size_t map_size;
    const uint8_t *data;   /* start of the data buffer */
    uint64_t data_size;
    cp_st_tensor *tensors; /* in header order */
    int n_tensors;
    char **meta_keys, **meta_values; /* "__metadata__", in header order */
    int n_meta;
    cp_name_index by_name;  /* private: the tensors by name, for cp_st_find */
} cp_safetensors;

/* Maps `path` read-only and validates it. On error *st is left empty (safe to cp_st_close). */
cp_status cp_st_open(cp_safetensors *st, const char *path);
/* Validates an in-memory file image (used by tests and the fuzzer); tensors point into `buf`,
 * which must outlive *st. `name` is used in error messages. */
cp_status cp_st_parse(cp_safetensors *st, const void *buf, size_t len, const char *name);
/* The tensor called `name`, or NULL (binary search, O(log n)). */
const cp_st_tensor *cp_st_find(const cp_safetensors *st, const char *name);
/* The metadata value for `key`, or NULL. */
const char *cp_st_meta(const cp_safetensors *st, const char *key);
void cp_st_close(cp_safetensors *st);

/* One tensor to write: data holds numel x dtype-size bytes, row-major. */
typedef struct {
    const char *name;
    cp_dtype dtype;
    int ndim;
    int64_t shape[CP_ST_MAX_DIMS];
    const void *data;
} cp_st_write_tensor;

/* Writes a file exactly as Python safetensors.torch.save_file does: tensors ordered by dtype
 * (descending alignment order) then name (byte-wise ascending), compact JSON header with
 * "__metadata__" first (when n_meta > 0), fields in the order dtype, shape, data_offsets, header
 * padded with spaces to a multiple of 8. Written to "<path>.tmp.<pid>" then renamed over `path`,
 * so an interrupted write never destroys an existing file. Duplicate names are an error.
 *
 * Metadata keys are written in the order given. Python keeps metadata in a Rust HashMap whose
 * iteration order is random per process, so its files are reproducible only with at most one
 * metadata key (PEFT writes exactly one, {"format": "pt"}). n_meta == 0 writes no "__metadata__"
 * at all, like metadata=None. Names and metadata must be valid UTF-8; they are escaped as
 * serde_json does ("\"", "\\", "\n", "\u001f"; DEL and non-ASCII kept as they are).
 * Errors name `path` and, for I/O, the system's reason. */
cp_status cp_st_write(const char *path, const cp_st_write_tensor *tensors, int n_tensors,
                      const char *const *meta_keys, const char *const *meta_values, int n_meta);

#endif
