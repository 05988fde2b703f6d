/*
 * compress.h — what a file's first bytes say it is, and the two compressions cpeft reads.
 *
 * Data files may be gzip- (zlib) or zstd-compressed (libzstd); both are recognised by their magic
 * numbers, whatever the file is called. Other compressed files, archives and binary formats that
 * turn up where text is expected (xz, bzip2, zip, 7z, tar, Parquet, Arrow, pickle, ...) are named, so
 * that the caller can refuse them by name instead of reading their bytes as text.
 */
#ifndef CP_IO_COMPRESS_H
#define CP_IO_COMPRESS_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    const char *name;   /* "gzip", "zstd", "xz-compressed data", "a zip archive", "a Parquet file", ... */
    int readable;       /* 1 for gzip and zstd, which cp_decompress reads */
    const char *hint;   /* what to do with the others ("" when nothing to add) */
} cp_file_kind;

/* The format the n bytes at data start with, by magic number; NULL when none is recognised. */
const cp_file_kind *cp_sniff_format(const void *data, size_t n);
/* The format a file name's extension names (".gz", ".zst", ".xz", ".bz2", ".zip", ...); NULL when none. */
const cp_file_kind *cp_format_of_name(const char *path);

/* Decompresses gzip (every member, as gzip -d does) or zstd (every frame) data: *out is a new
 * NUL-terminated buffer (cp_free) of *out_len bytes. More than `limit` bytes (0: no limit) is an error.
 * Errors name `what` (the file), the format and the offset in the compressed data at fault. */
cp_status cp_decompress(const char *what, const cp_file_kind *kind, const void *in, size_t n, size_t limit, char **out,
                        size_t *out_len);

#endif
