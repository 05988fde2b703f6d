/*
 * alloc.h — checked allocation. Every allocation that can fail on a user-sized request goes through
 * these, so an impossible size becomes an error message ("out of memory allocating 12.0 GiB for
 * activations") rather than a crash. Buffers from cp_alloc_aligned are 64-byte aligned for SIMD and
 * freed with cp_free.
 */
#ifndef CP_CORE_ALLOC_H
#define CP_CORE_ALLOC_H

#include <stddef.h>

void *cp_malloc(size_t bytes, const char *what);
void *cp_calloc(size_t count, size_t size, const char *what);
void *cp_realloc(void *ptr, size_t bytes, const char *what);
void *cp_alloc_aligned(size_t bytes, const char *what); /* zero-filled */
char *cp_strdup(const char *s);
void cp_free(void *ptr);

/* Human-readable byte count: "1.23 GiB". Writes into buf (at least 32 bytes) and returns it. */
const char *cp_format_bytes(double bytes, char *buf, size_t bufsize);

#endif
