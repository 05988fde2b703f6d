/*
 * arena.c — bump allocation for activations; see arena.h.
 *
 * Blocks come straight from the kernel (anonymous mmap) and go straight back to it (munmap), not
 * through malloc: glibc keeps freed blocks below its dynamic mmap threshold on its heap, so the
 * blocks of a first, multi-block step used to stay resident next to the single merged block that
 * replaced them, doubling the activation memory the process held (the memory plan said 1.35 GiB,
 * the process had 2.7 GiB). Fresh pages are zero and cost nothing until written, so the slack at
 * the end of a block that no allocation reached is never resident either. A PROT_NONE guard page
 * follows each block: running off its end faults at once instead of corrupting a neighbour.
 */
#include "core/arena.h"
#include "core/alloc.h"
#include "core/error.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_MIN_BLOCK ((size_t)1 << 20)

void cp_arena_init(cp_arena *a) { memset(a, 0, sizeof *a); }

static size_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* A block of at least `size` usable bytes, rounded up to whole pages, followed by a guard page. */
static cp_arena_block *new_block(size_t size, const char *what) {
    const size_t page = page_size();
    size_t usable = (size + page - 1) / page * page;
    if (usable < size || usable > SIZE_MAX - page) {
        cp_error("out of memory: %s needs %zu bytes of activation memory", what, size);
        return NULL;
    }
    cp_arena_block *b = cp_malloc(sizeof *b, what);
    if (!b) return NULL;
    void *p = mmap(NULL, usable + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        char buf[32];
        cp_error("out of memory allocating %s for %s", cp_format_bytes((double)size, buf, sizeof buf), what ? what : "activations");
        cp_free(b);
        return NULL;
    }
    mprotect((unsigned char *)p + usable, page, PROT_NONE); /* the guard; without it the block still works */
    b->data = p;
    b->size = usable;
    b->used = 0;
    b->next = NULL;
    return b;
}

static void drop_block(cp_arena_block *b) {
    munmap(b->data, b->size + page_size());
    cp_free(b);
}

void *cp_arena_alloc(cp_arena *a, size_t bytes, const char *what) {
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need < bytes) {
        cp_error("out of memory: %s asks for %zu bytes", what ? what : "an activation", bytes);
        return NULL;
    }
    cp_arena_block *b = a->blocks;
    if (!b || b->size - b->used < need) {
        size_t size = need > ARENA_MIN_BLOCK ? need : ARENA_MIN_BLOCK;
        if (b && size < b->size) size = b->size; /* grow geometrically-ish */
        cp_arena_block *nb = new_block(size, what);
        if (!nb) return NULL;
        nb->next = b;
        a->blocks = nb;
        a->reserved += nb->size;
        b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    a->in_use += need;
    if (a->in_use > a->high_water) a->high_water = a->in_use;
    return p;
}

float *cp_arena_floats(cp_arena *a, size_t n, const char *what) {
    if (n > SIZE_MAX / sizeof(float)) {
        cp_error("out of memory: %s asks for %zu floats", what ? what : "an activation", n);
        return NULL;
    }
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
        drop_block(b);
    }
    if (a->blocks) a->blocks->used = mark.used;
    a->in_use = mark.in_use;
}

void cp_arena_reset(cp_arena *a) {
    if (a->blocks && a->blocks->next) {
        /* Several blocks were needed: replace them by one block of the peak size. The old blocks
         * are unmapped first, so the process never holds both. */
        size_t peak = a->high_water;
        cp_arena_free(a);
        a->high_water = peak;
        cp_arena_block *b = new_block(peak, "activations");
        if (b) { a->blocks = b; a->reserved = b->size; } /* else the next allocation asks again */
    } else if (a->blocks) {
        a->blocks->used = 0;
    }
    a->in_use = 0;
}

cp_status cp_arena_reserve(cp_arena *a, size_t bytes) {
    cp_arena_free(a);
    cp_arena_block *b = new_block(bytes > ARENA_MIN_BLOCK ? bytes : ARENA_MIN_BLOCK, "activations");
    if (!b) return CP_ERR;
    a->blocks = b;
    a->reserved = b->size;
    return CP_OK;
}

size_t cp_arena_high_water(const cp_arena *a) { return a->high_water; }

void cp_arena_free(cp_arena *a) {
    cp_arena_block *b = a->blocks;
    while (b) {
        cp_arena_block *n = b->next;
        drop_block(b);
        b = n;
    }
    memset(a, 0, sizeof *a);
}
