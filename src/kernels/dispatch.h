/*
 * dispatch.h — the instruction-set variants of the hot kernels, and the one this CPU runs.
 *
 * The kernels whose speed depends on the vector width (kernels/skinny.c, kernels/vector.c) are
 * compiled once per level, each translation unit with its own -m flags (see the Makefile):
 *   base    the compiler's default target (x86-64: SSE2): runs on any CPU; the fallback;
 *   avx2    AVX2 + FMA + F16C (Haswell, Zen 1 and later);
 *   avx512  AVX-512 F/BW/VL/DQ on top (Skylake-SP, Ice Lake, Sapphire Rapids, Zen 4 and later).
 * Everything else is compiled for the default target, so one binary runs on every x86-64 CPU (and
 * under valgrind, which has no AVX-512). The first kernel call picks the best level that the CPU
 * and the OS support (__builtin_cpu_supports, which also checks that the OS saves the registers);
 * the environment variable CPEFT_ISA=base|avx2|avx512 asks for a lower one. `make NATIVE=1` builds
 * every file for the build machine's CPU instead (that binary runs only on CPUs like it).
 * OpenBLAS chooses its own sgemm kernels in the same way when it is loaded.
 *
 * Not here: the kernels themselves (skinny.h, vector.h, with what each computes); their plain
 * references are in the tests (tests/unit/test_kernel_variants.c), which hold every variant the
 * machine can run equal to them.
 */
#ifndef CP_KERNELS_DISPATCH_H
#define CP_KERNELS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { CP_ISA_BASE, CP_ISA_AVX2, CP_ISA_AVX512, CP_ISA_COUNT } cp_isa;

/* One variant of every kernel; the members are documented at the public wrappers (skinny.h, vector.h). */
typedef struct {
    cp_isa isa;
    const char *name; /* "base", "avx2", "avx512" */
    void (*skinny_nt)(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
    void (*skinny_nn)(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
    void (*gelu_tanh)(float *y, const float *x, int64_t n);
    void (*gelu_tanh_backward)(float *dx, const float *dy, const float *x, int64_t n);
    void (*gelu_erf)(float *y, const float *x, int64_t n);
    void (*gelu_erf_backward)(float *dx, const float *dy, const float *x, int64_t n);
    void (*silu)(float *y, const float *x, int64_t n);
    void (*silu_backward)(float *dx, const float *dy, const float *x, int64_t n);
    int64_t (*softmax_row)(float *r, const int64_t *keep, int64_t n, float scale);
    float (*row_max)(const float *x, int64_t n);
    double (*exp_sum)(const float *x, int64_t n, float shift);
    void (*exp_scale)(float *x, int64_t n, float shift, float scale);
    void (*add_inplace)(float *x, const float *y, int64_t n);
    void (*dropout_row)(float *y, const float *x, int64_t n, uint64_t key, int64_t j0, uint32_t threshold, float scale);
} cp_kernel_table;

/* The variant in use: chosen at the first call (see above), the same for the whole process. */
const cp_kernel_table *cp_kernels(void);

/* The variant for `isa`, or NULL when this build lacks it or this CPU cannot run it (tests, benches). */
const cp_kernel_table *cp_kernels_for(cp_isa isa);

/* The instruction-set extensions this CPU reports that matter here, best first, e.g.
 * "avx512f avx512bw avx512vl avx512dq avx512vnni avx512bf16 avx2 fma f16c"; "" when none. */
const char *cp_cpu_features(char *buf, size_t size);

#endif
