/*
 * arena.h — a bump allocator for per-step activations. Memory is taken in large 64-byte-aligned
 * blocks that are kept across resets, so after the first step of a given shape no allocation
 * happens in the hot path. cp_arena_reset() rewinds; cp_arena_high_water() reports the peak.
 * Blocks are mapped from and returned to the system directly (not through malloc), so memory the
 * arena gives back leaves the process, and a block's pages count as resident only once written.
 */
#ifndef CP_CORE_ARENA_H
#define CP_CORE_ARENA_H

#include <stddef.h>

#include "core/error.h"

typedef struct cp_arena_block {
    struct cp_arena_block *next;
    size_t size, used;
    unsigned char *data;
} cp_arena_block;

typedef struct {
    cp_arena_block *blocks;   /* current block first */
    size_t in_use, high_water, reserved;
} cp_arena;

void cp_arena_init(cp_arena *a);
/* 64-byte aligned, uninitialised; NULL with an error set when memory runs out. */
void *cp_arena_alloc(cp_arena *a, size_t bytes, const char *what);
float *cp_arena_floats(cp_arena *a, size_t n, const char *what);
/* A position in the arena: everything allocated after it is released by cp_arena_release (the
 * per-layer scratch of a backward pass, for example). */
typedef struct { cp_arena_block *block; size_t used, in_use; } cp_arena_mark;
cp_arena_mark cp_arena_get_mark(const cp_arena *a);
void cp_arena_release(cp_arena *a, cp_arena_mark mark);
/* Rewinds to empty, keeping the memory. Blocks are merged into one of the peak size so that the
 * next step of the same shape fits in a single block. */
void cp_arena_reset(cp_arena *a);
/* Empties the arena (memory goes back to the system) and gives it one block of at least `bytes`,
 * not yet resident: a step whose peak is `bytes` then runs without allocating. */
cp_status cp_arena_reserve(cp_arena *a, size_t bytes);
size_t cp_arena_high_water(const cp_arena *a);
void cp_arena_free(cp_arena *a);

#endif
