/*
 * arena.c — bump allocation for activations; see arena.h.
 */
#include "core/arena.h"
#include "core/alloc.h"

#include <string.h>

#define ARENA_MIN_BLOCK ((size_t)1 << 20)

void cp_arena_init(cp_arena *a) { memset(a, 0, sizeof *a); }

static cp_arena_block *new_block(size_t size, const char *what) {
    cp_arena_block *b = cp_malloc(sizeof *b, what);
    if (!b) return NULL;
    b->data = cp_alloc_aligned(size, what);
    if (!b->data) { cp_free(b); return NULL; }
    b->size = size;
    b->used = 0;
    b->next = NULL;
    return b;
}

void *cp_arena_alloc(cp_arena *a, size_t bytes, const char *what) {
    size_t need = (bytes + 63) & ~(size_t)63;
    cp_arena_block *b = a->blocks;
    if (!b || b->size - b->used < need) {
        size_t size = need > ARENA_MIN_BLOCK ? need : ARENA_MIN_BLOCK;
        if (b && size < b->size) size = b->size; /* grow geometrically-ish */
        cp_arena_block *nb = new_block(size, what);
        if (!nb) return NULL;
        nb->next = b;
        a->blocks = nb;
        a->reserved += size;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->in_use += need;
    if (a->in_use > a->high_water) a->high_water = a->in_use;
    return p;
}

float *cp_arena_floats(cp_arena *a, size_t n, const char *what) {
    return cp_arena_alloc(a, n * sizeof(float), what);
}

cp_arena_mark cp_arena_get_mark(const cp_arena *a) {
    cp_arena_mark m = {a->blocks, a->blocks ? a->blocks->used : 0, a->in_use};
    return m;
}

void cp_arena_release(cp_arena *a, cp_arena_mark mark) {
    /* blocks added after the mark go back to the system (the next reset merges by high water) */
    while (a->blocks && a->blocks != mark.block) {
        cp_arena_block *b = a->blocks;
        a->blocks = b->next;
        a->reserved -= b->size;
        cp_free(b->data);
        cp_free(b);
    }
    if (a->blocks) a->blocks->used = mark.used;
    a->in_use = mark.in_use;
}

void cp_arena_reset(cp_arena *a) {
    if (a->blocks && a->blocks->next) {
        /* Several blocks were needed: replace them by one block of the peak size. */
        size_t peak = a->high_water;
        cp_arena_free(a);
        a->high_water = peak;
        cp_arena_block *b = new_block(peak, "activations");
        if (b) { a->blocks = b; a->reserved = peak; }
    } else if (a->blocks) {
        a->blocks->used = 0;
    }
    a->in_use = 0;
}

size_t cp_arena_high_water(const cp_arena *a) { return a->high_water; }

void cp_arena_free(cp_arena *a) {
    cp_arena_block *b = a->blocks;
    while (b) {
        cp_arena_block *n = b->next;
        cp_free(b->data);
        cp_free(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}
