/*
 * gemm_cpu.h — the built-in "cpu" backend of kernels/gemm.h, one variant per instruction set.
 *
 * kernels/gemm_cpu.c (the drivers: which kernel runs for which dtype and row count) and
 * kernels/gemm_skinny16.c (the kernels that read 16-bit weights) are compiled once per level, like
 * kernels/skinny.c (see dispatch.h); kernels/gemm.c collects the variants and runs the one for the
 * level cp_kernels() chose, so CPEFT_ISA applies here too. Tests and benchmarks reach every
 * variant the machine can run through cp_gemm_cpu_for().
 */
#ifndef CP_KERNELS_GEMM_CPU_H
#define CP_KERNELS_GEMM_CPU_H

#include "kernels/dispatch.h"
#include "kernels/gemm.h"

#include <stdint.h>

/* One variant of the CPU backend. The 16-bit kernels take `bf16` = 1 for BF16 weights, 0 for F16. */
typedef struct {
    cp_isa isa;
    const char *name;       /* "base", "avx2", "avx512" */
    const cp_gemm_ops *ops; /* the backend's table, named "cpu" */
    /* out (N,M) (+)= X (N,K) · Wᵀ, W stored (M,K) 16-bit, widened in registers; any N (fast for few). */
    void (*skinny16_nt)(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate);
    /* out (N,M) (+)= X (N,K) · W, W stored (K,M) 16-bit, widened in registers; any N (fast for few). */
    void (*skinny16_nn)(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate);
    /* dst[i] = the f32 value of src[i], i < n (exact). */
    void (*widen16)(float *dst, const uint16_t *src, int bf16, int64_t n);
} cp_gemm_cpu_variant;

/* The variant for `isa`, or NULL when this build lacks it or this CPU cannot run it. */
const cp_gemm_cpu_variant *cp_gemm_cpu_for(cp_isa isa);

/* The variant that runs: the level of cp_kernels(). */
const cp_gemm_cpu_variant *cp_gemm_cpu(void);

/* The widened scratch per thread for a 16-bit weight multiplied by many rows, in bytes; 0 (the
 * default) lets the backend choose (gemm_cpu.c). Tests set it small to cut a product into many
 * panels. Set it before products run, not during. */
void cp_gemm_cpu_set_panel_bytes(int64_t bytes);
int64_t cp_gemm_cpu_panel_bytes(void);

/* Every function of one variant, declared for gemm.c (isa.h's pattern). */
#define CP_DECLARE_GEMM_KERNELS(isa)                                                                                     \
    extern const cp_gemm_ops cp_gemm_cpu_ops_##isa;                                                                      \
    void cp_gemm_skinny16_nt_##isa(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K,        \
                                   int64_t M, int accumulate);                                                           \
    void cp_gemm_skinny16_nn_##isa(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K,        \
                                   int64_t M, int accumulate);                                                           \
    void cp_gemm_widen16_##isa(float *dst, const uint16_t *src, int bf16, int64_t n);
#define CP_DECLARE_GEMM_KERNELS_OF(isa) CP_DECLARE_GEMM_KERNELS(isa)

#endif
