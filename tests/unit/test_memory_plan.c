/*
 * test_memory_plan.c — memory that cpeft holds is memory it needs: the activation arena gives its
 * memory back, so that the blocks of a first, multi-block step do not stay resident beside the block
 * that replaces them.
 */
#include "test.h"
#include "core/arena.h"
#include "core/memstat.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

#define MiB (1024.0 * 1024.0)

/* ---- the arena gives memory back ---------------------------------------------------------------- */

/* Writes every byte, as a kernel writing its output does (pages become resident). */
static float *touch(float *p, size_t n) {
    if (p) memset(p, 1, n * sizeof *p);
    return p;
}

/* A training step's pattern: a forward pass that keeps each layer's activations, then a backward
 * pass whose per-layer scratch is released after each layer. */
static int step_pattern(cp_arena *ar) {
    const size_t layer = (size_t)3 << 20, scratch = (size_t)5 << 20; /* floats: 12 and 20 MiB */
    if (!touch(cp_arena_floats(ar, (size_t)1 << 18, "input"), (size_t)1 << 18)) return 0;
    for (int l = 0; l < 6; l++)
        if (!touch(cp_arena_floats(ar, layer, "layer"), layer)) return 0;
    for (int l = 5; l >= 0; l--) {
        cp_arena_mark mark = cp_arena_get_mark(ar);
        if (!touch(cp_arena_floats(ar, scratch, "scratch"), scratch)) return 0;
        if (!touch(cp_arena_floats(ar, (size_t)1 << 16, "small"), (size_t)1 << 16)) return 0;
        cp_arena_release(ar, mark);
    }
    return 1;
}

TEST(arena_memory_goes_back) {
    cp_mem_usage u0, u1, u2, u3;
    if (!cp_mem_now(&u0)) { printf("  (no /proc/self/statm on this system: skipped)\n"); return; }
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK(step_pattern(&ar), "first step: %s", cp_last_error());
    size_t high = cp_arena_high_water(&ar);
    cp_mem_now(&u1);
    cp_arena_reset(&ar); /* several blocks: merged into one of the peak size */
    CHECK(ar.blocks && !ar.blocks->next && ar.blocks->size >= high, "the reset did not merge the blocks");
    CHECK(step_pattern(&ar), "second step: %s", cp_last_error());
    CHECK(cp_arena_high_water(&ar) == high, "the same step reached %zu, then %zu bytes", high, cp_arena_high_water(&ar));
    cp_mem_now(&u2);
    cp_arena_free(&ar);
    cp_mem_now(&u3);
    double first = ((double)u1.anon - (double)u0.anon) / MiB, second = ((double)u2.anon - (double)u0.anon) / MiB,
           after = ((double)u3.anon - (double)u0.anon) / MiB, h = (double)high / MiB;
    printf("  arena peak %.1f MiB; resident growth: first step %.1f MiB, second step %.1f MiB, after free %.1f MiB\n", h, first,
           second, after);
    if (UNDER_ASAN) { printf("  (ASan keeps freed memory in quarantine: growth not compared)\n"); return; }
    /* the second step runs in the merged block alone: the first step's blocks are gone */
    CHECK(second <= 1.05 * h + 1, "after the second step %.1f MiB is resident for an arena peak of %.1f MiB", second, h);
    CHECK(first <= 1.05 * h + 1, "after the first step %.1f MiB is resident for an arena peak of %.1f MiB", first, h);
    CHECK(after < 2, "%.1f MiB still resident after cp_arena_free", after);
    /* a reserved block is not resident until written */
    CHECK_OK(cp_arena_reserve(&ar, (size_t)64 << 20));
    cp_mem_now(&u1);
    CHECK((double)u1.anon - (double)u3.anon < 2 * MiB, "a reserved, unwritten block made %.1f MiB resident",
          ((double)u1.anon - (double)u3.anon) / MiB);
    CHECK(cp_arena_floats(&ar, (size_t)16 << 20, "fits") && ar.blocks && !ar.blocks->next, "64 MiB did not fit the reserved block");
    cp_arena_free(&ar);
}

int main(void) {
    RUN(arena_memory_goes_back);
    return test_summary();
}
