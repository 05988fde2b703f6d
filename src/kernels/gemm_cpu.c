/*
 * gemm_cpu.c — the "cpu" backend of kernels/gemm.h: which kernel multiplies which weight. Compiled
 * once per instruction set (see gemm_cpu.h); only its few-row kernels differ between the copies.
 *
 * Every product with a stored weight is one of two shapes, whatever the layer:
 *   nt  out (N,M) (+)= X (N,K) · Wᵀ, W stored (M,K): Linear forward, Conv1D input gradient;
 *   nn  out (N,M) (+)= X (N,K) · W,  W stored (K,M): Conv1D forward, Linear input gradient.
 * F32 weights take exactly the calls nn/linear.c made before this interface (the same sgemm
 * arguments, the same few-row kernels below the same row counts, and a plain sgemm for Conv1D's
 * input gradient), so f32 results did not move by a bit.
 * BF16 and F16 weights: up to a few rows, kernels that read the 16-bit weight and widen it in
 * registers (gemm_skinny16.c: half the bytes of f32, which is what a decoding step is bound by);
 * beyond, the weight is widened one panel of output columns at a time into scratch (a panel per
 * thread, sized to stay in its L2 cache) and sgemm multiplies the panel. Widening is exact, so
 * results equal the f32 product with the widened weight up to the order of the sums (sgemm on a
 * panel may block or thread K differently than on the whole matrix; tests/unit/test_gemm.c).
 */
#include "kernels/gemm_cpu.h"
#include "kernels/isa.h"
#include "kernels/skinny.h"

#include <assert.h>
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

CP_DECLARE_KERNELS_OF(CP_ISA)
CP_DECLARE_GEMM_KERNELS_OF(CP_ISA)

/* Row counts up to which the few-row kernels beat sgemm. F32: nn/linear.c's, measured on
 * GPT-Neo-125M / GPT-2 shapes. 16-bit: measured with bench/gemm_bench.c on GPT-2-small shapes (the
 * widening of the whole weight before sgemm moves the crossing up). */
#define F32_SKINNY_NT_ROWS CP_SKINNY_MAX_ROWS
#define F32_SKINNY_NN_ROWS 2
#ifndef W16_SKINNY_NT_ROWS
#define W16_SKINNY_NT_ROWS 16
#endif
#ifndef W16_SKINNY_NN_ROWS
#define W16_SKINNY_NN_ROWS 8
#endif

/* Widened weight per thread and panel: half of a 2 MB L2, where sgemm packs it from. */
#ifndef PANEL_BYTES
#define PANEL_BYTES (1 << 20)
#endif
#ifndef PANEL_SCHEME
#define PANEL_SCHEME 1
#endif
#define PANEL_ALIGN 16 /* output columns per panel: a multiple of the widest vector */

/* ---- f32: nn/linear.c's calls ------------------------------------------------------------------ */

static void f32_nt(float *out, const float *X, const float *W, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N <= F32_SKINNY_NT_ROWS) { CP_KERNEL(cp_skinny_nt)(out, X, W, N, K, M, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)M, (int)K, 1.0f, X, (int)K, W, (int)K,
                accumulate ? 1.0f : 0.0f, out, (int)M);
}

static void f32_nn(float *out, const float *X, const float *W, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N <= F32_SKINNY_NN_ROWS) { CP_KERNEL(cp_skinny_nn)(out, X, W, N, K, M, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)M, (int)K, 1.0f, X, (int)K, W, (int)M,
                accumulate ? 1.0f : 0.0f, out, (int)M);
}

/* ---- 16-bit weights: panels widened for sgemm ------------------------------------------------- */

/* Output columns per panel: what fills PANEL_BYTES per thread at K floats each, at least PANEL_ALIGN. */
static int64_t panel_cols(int64_t K, int64_t M, int threads) {
    int64_t per_thread = PANEL_BYTES / ((int64_t)sizeof(float) * (K > 0 ? K : 1));
    per_thread = per_thread < PANEL_ALIGN ? PANEL_ALIGN : per_thread - per_thread % PANEL_ALIGN;
    const int64_t g = per_thread * threads;
    return g < M ? g : M;
}

static int team_size(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

#if PANEL_SCHEME == 1
/* nt with many rows: rows [m0, m0+g) of W are contiguous, widened into buf (g,K), then sgemm. */
static int w16_nt_panels(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                         int accumulate) {
    const int threads = team_size();
    const int64_t G = panel_cols(K, M, threads);
    float *buf = malloc((size_t)(G * K) * sizeof *buf);
    if (!buf) return -1;
    for (int64_t m0 = 0; m0 < M; m0 += G) {
        const int64_t g = M - m0 < G ? M - m0 : G, total = g * K, piece = (total + threads - 1) / threads;
        // buf (g,K) = widen(W[m0 : m0+g, :]), one contiguous range split over the threads
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int t = 0; t < threads; t++) {
            const int64_t i0 = t * piece, i1 = i0 + piece < total ? i0 + piece : total;
            if (i1 > i0) CP_KERNEL(cp_gemm_widen16)(buf + i0, W + m0 * K + i0, bf16, i1 - i0);
        }
        // out[:, m0 : m0+g] (+)= X (N,K) · buf (g,K)ᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)g, (int)K, 1.0f, X, (int)K, buf, (int)K,
                    accumulate ? 1.0f : 0.0f, out + m0, (int)M);
    }
    free(buf);
    return 0;
}

/* nn with many rows: columns [m0, m0+g) of every row of W, widened into buf (K,g), then sgemm. */
static int w16_nn_panels(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                         int accumulate) {
    const int threads = team_size();
    const int64_t G = panel_cols(K, M, threads);
    float *buf = malloc((size_t)(G * K) * sizeof *buf);
    if (!buf) return -1;
    for (int64_t m0 = 0; m0 < M; m0 += G) {
        const int64_t g = M - m0 < G ? M - m0 : G;
        // buf (K,g) = widen(W[:, m0 : m0+g])
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
        for (int64_t k = 0; k < K; k++) CP_KERNEL(cp_gemm_widen16)(buf + k * g, W + k * M + m0, bf16, g);
        // out[:, m0 : m0+g] (+)= X (N,K) · buf (K,g)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)g, (int)K, 1.0f, X, (int)K, buf, (int)g,
                    accumulate ? 1.0f : 0.0f, out + m0, (int)M);
    }
    free(buf);
    return 0;
}
#endif

#if PANEL_SCHEME == 2
/* Each thread widens its own panels and multiplies them with a one-thread sgemm. */
static int w16_panels_par(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                          int accumulate, int nn) {
    const int threads = team_size();
    int64_t P = panel_cols(K, M, 1);
    int64_t n_panels = (M + P - 1) / P;
    n_panels = threads * ((n_panels + threads - 1) / threads);
    P = (M + n_panels - 1) / n_panels;
    P = (P + PANEL_ALIGN - 1) / PANEL_ALIGN * PANEL_ALIGN;
    float *all = malloc((size_t)(threads * P * K) * sizeof *all);
    if (!all) return -1;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *buf = all + (int64_t)omp_get_thread_num() * P * K;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_panels; p++) {
            const int64_t m0 = p * P;
            if (m0 >= M) continue;
            const int64_t g = M - m0 < P ? M - m0 : P;
            if (nn) {
                for (int64_t k = 0; k < K; k++) CP_KERNEL(cp_gemm_widen16)(buf + k * g, W + k * M + m0, bf16, g);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)g, (int)K, 1.0f, X, (int)K, buf, (int)g,
                            accumulate ? 1.0f : 0.0f, out + m0, (int)M);
            } else {
                CP_KERNEL(cp_gemm_widen16)(buf, W + m0 * K, bf16, g * K);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)g, (int)K, 1.0f, X, (int)K, buf, (int)K,
                            accumulate ? 1.0f : 0.0f, out + m0, (int)M);
            }
        }
    }
    free(all);
    return 0;
}
#define w16_nt_panels(o, x, w, b, n, k, m, a) w16_panels_par(o, x, w, b, n, k, m, a, 0)
#define w16_nn_panels(o, x, w, b, n, k, m, a) w16_panels_par(o, x, w, b, n, k, m, a, 1)
#endif

/* The few-row kernels take any N: they are also the way on when scratch cannot be had. */
static void w16_nt(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N > W16_SKINNY_NT_ROWS && w16_nt_panels(out, X, W, bf16, N, K, M, accumulate) == 0) return;
    CP_KERNEL(cp_gemm_skinny16_nt)(out, X, W, bf16, N, K, M, accumulate);
}

static void w16_nn(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N > W16_SKINNY_NN_ROWS && w16_nn_panels(out, X, W, bf16, N, K, M, accumulate) == 0) return;
    CP_KERNEL(cp_gemm_skinny16_nn)(out, X, W, bf16, N, K, M, accumulate);
}

/* ---- the backend's entry points ---------------------------------------------------------------- */

static int cpu_supports(cp_dtype dt) { return dt == CP_F32 || dt == CP_BF16 || dt == CP_F16; }

static void cpu_forward(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate) {
    // out (N,OC) (+)= X (N,C) · Wᵀ (W stored (OC,C)) or X · W (W stored (C,OC))
    const int64_t C = W->in, OC = W->out;
    const int nt = W->layout == CP_WEIGHT_NT;
    assert(cpu_supports(W->dtype) && C <= INT32_MAX && OC <= INT32_MAX && N <= INT32_MAX);
    if (W->dtype == CP_F32) (nt ? f32_nt : f32_nn)(out, X, W->data, N, C, OC, accumulate);
    else (nt ? w16_nt : w16_nn)(out, X, W->data, W->dtype == CP_BF16, N, C, OC, accumulate);
}

static void cpu_backward_input(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate) {
    // in the forward pass this was Y = X·Wᵀ (NT) or Y = X·W (NN), so dX (N,C) (+)= dY (N,OC) · W or dY · Wᵀ
    const int64_t C = W->in, OC = W->out;
    const int nt = W->layout == CP_WEIGHT_NT;
    assert(cpu_supports(W->dtype) && C <= INT32_MAX && OC <= INT32_MAX && N <= INT32_MAX);
    if (W->dtype == CP_F32) {
        if (nt) f32_nn(dX, dY, W->data, N, OC, C, accumulate); /* W (OC,C) read as (K,M) */
        else                                                   /* always sgemm, as nn/linear.c */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)C, (int)OC, 1.0f, dY, (int)OC, W->data,
                        (int)OC, accumulate ? 1.0f : 0.0f, dX, (int)C);
    } else {
        (nt ? w16_nn : w16_nt)(dX, dY, W->data, W->dtype == CP_BF16, N, OC, C, accumulate);
    }
}

static void cpu_weight_grad(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (C,OC) (+)= a (N,C)ᵀ · b (N,OC)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)OC, (int)N, 1.0f, a, (int)C, b, (int)OC,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}

static void cpu_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

const cp_gemm_ops CP_KERNEL(cp_gemm_cpu_ops) = {
    .name = "cpu",
    .supports = cpu_supports,
    .forward = cpu_forward,
    .backward_input = cpu_backward_input,
    .weight_grad = cpu_weight_grad,
    .f32 = cpu_f32,
};
