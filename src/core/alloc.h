/*
 * alloc.h — checked allocation. Every allocation that can fail on a user-sized request goes through
 * these, so an impossible size becomes an error message ("out of memory allocating 12.0 GiB for
 * activations") rather than a crash. Buffers from cp_alloc_aligned are 64-byte aligned for SIMD and
 * freed with cp_free.
 */
#ifndef CP_CORE_ALLOC_H
#define CP_CORE_ALLOC_H

#include <stddef.h>

#include "core/error.h"

void *cp_malloc(size_t bytes, const char *what);
void *cp_calloc(size_t count, size_t size, const char *what);
void *cp_realloc(void *ptr, size_t bytes, const char *what);
void *cp_alloc_aligned(size_t bytes, const char *what); /* zero-filled */
char *cp_strdup(const char *s);
void cp_free(void *ptr);

/* Growable arrays. `array` is the address of the array's pointer, whatever its element type
 * (&list->items); the pointer is read and written with memcpy, so any object pointer type serves.
 * cp_resize reallocates the array to `count` elements of `elem` bytes; on failure the array is left
 * as it was and an error is set. */
cp_status cp_resize(void *array, size_t count, size_t elem, const char *what);
/* The capacity that holds `need` elements: `cap` doubled (starting from `first` when 0) until it does. */
size_t cp_grow_cap(size_t cap, size_t need, size_t first);
/* Makes room for `need` elements: when *cap is short, resizes the array to cp_grow_cap(*cap, need,
 * first) elements and updates *cap. Parallel arrays grow with one cp_grow_cap and a cp_resize each. */
cp_status cp_grow(void *array, size_t *cap, size_t need, size_t elem, size_t first, const char *what);

/* Human-readable byte count: "1.23 GiB". Writes into buf (at least 32 bytes) and returns it. */
const char *cp_format_bytes(double bytes, char *buf, size_t bufsize);

#endif
