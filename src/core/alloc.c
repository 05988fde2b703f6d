/*
 * alloc.c — checked allocation with error messages; see alloc.h.
 */
#include "core/alloc.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *fail(size_t bytes, const char *what) {
    char buf[32];
    cp_error("out of memory allocating %s for %s", cp_format_bytes((double)bytes, buf, sizeof buf),
             what ? what : "a buffer");
    return NULL;
}

void *cp_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    return p ? p : fail(bytes, what);
}

void *cp_calloc(size_t count, size_t size, const char *what) {
    if (size && count > (size_t)-1 / size) return fail((size_t)-1, what);
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : fail(count * size, what);
}

void *cp_realloc(void *ptr, size_t bytes, const char *what) {
    void *p = realloc(ptr, bytes ? bytes : 1);
    return p ? p : fail(bytes, what);
}

void *cp_alloc_aligned(size_t bytes, const char *what) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return fail(bytes, what);
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) return fail(bytes, what);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

cp_status cp_resize(void *array, size_t count, size_t elem, const char *what) {
    if (elem && count > (size_t)-1 / elem) { fail((size_t)-1, what); return CP_ERR; }
    void *old, *p;
    memcpy(&old, array, sizeof old);
    if (!(p = cp_realloc(old, count * elem, what))) return CP_ERR;
    memcpy(array, &p, sizeof p);
    return CP_OK;
}

size_t cp_grow_cap(size_t cap, size_t need, size_t first) {
    size_t c = cap ? cap : first ? first : 1;
    while (c < need) c = c > (size_t)-1 / 2 ? need : c * 2;
    return c;
}

cp_status cp_grow(void *array, size_t *cap, size_t need, size_t elem, size_t first, const char *what) {
    if (need <= *cap) return CP_OK;
    size_t c = cp_grow_cap(*cap, need, first);
    if (cp_resize(array, c, elem, what)) return CP_ERR;
    *cap = c;
    return CP_OK;
}

char *cp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = cp_malloc(n, "a string");
    if (p) memcpy(p, s, n);
    return p;
}

void cp_free(void *ptr) { free(ptr); }

const char *cp_format_bytes(double bytes, char *buf, size_t bufsize) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) { bytes /= 1024.0; u++; }
    if (u == 0) snprintf(buf, bufsize, "%.0f B", bytes);
    else snprintf(buf, bufsize, "%.2f %s", bytes, units[u]);
    return buf;
}
