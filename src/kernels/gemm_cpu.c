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
 * beyond, each thread widens panels of output columns into its own scratch and multiplies them
 * with a one-thread sgemm (w16_panels). Widening is exact, so results equal the f32 product with
 * the widened weight up to the order of the sums (sgemm on a panel blocks K as it chooses for that
 * size; tests/unit/test_gemm.c counts the outputs that differ in the last bits).
 */
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"
#include "kernels/gemm_quant.h"
#include "kernels/isa.h"
#include "kernels/quant_dot.h"
#include "kernels/skinny.h"

#include <assert.h>
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

CP_DECLARE_KERNELS_OF(CP_ISA)
CP_DECLARE_GEMM_KERNELS_OF(CP_ISA)
CP_DECLARE_QUANT_KERNELS_OF(CP_ISA)
CP_DECLARE_QDOT_KERNELS_OF(CP_ISA)

/* Row counts up to which the few-row kernels beat sgemm. F32: nn/linear.c's, measured on
 * GPT-Neo-125M / GPT-2 shapes, kept so that f32 results stay bit-identical. 16-bit: measured with
 * bench/gemm_bench.c on GPT-2-small shapes (C = 768, OC = 768..3072, 2 threads, AVX-512 variant):
 * widening the whole weight before sgemm costs what sgemm gains below ~100 rows, and at 32 rows the
 * few-row kernels run 1.4-2.5x faster than the panels; the limit stays at 32 because sgemm's AVX-512
 * kernels (OpenBLAS's SkylakeX core, not the Haswell one it runs here) move the crossing down. */
#define F32_SKINNY_NT_ROWS CP_SKINNY_MAX_ROWS
#define F32_SKINNY_NN_ROWS 2
#define W16_SKINNY_NT_ROWS 32
#define W16_SKINNY_NN_ROWS 32

/* Widened weight per thread: 32 MB shared by the team, from 1 to 8 MB each. Wide panels matter
 * more than cache-sized ones: each panel's sgemm packs all of X (N,K) again, which for K = 3072
 * cost 10% of a product with 2 MB panels and under 3% with 8 MB ones (bench/gemm_bench.c, 2 threads). */
#define SCRATCH_TEAM_BYTES ((int64_t)32 << 20)
#define PANEL_MIN_BYTES ((int64_t)1 << 20)
#define PANEL_MAX_BYTES ((int64_t)8 << 20)
#define PANEL_ALIGN 16 /* output columns per panel: a multiple of the widest vector */

static int64_t panel_bytes(int threads) {
    const int64_t set = cp_gemm_cpu_panel_bytes(), b = SCRATCH_TEAM_BYTES / threads;
    if (set > 0) return set;
    return b < PANEL_MIN_BYTES ? PANEL_MIN_BYTES : b > PANEL_MAX_BYTES ? PANEL_MAX_BYTES : b;
}

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

static int team_size(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* How the product is cut into tasks: n_panels panels of P output columns × n_blocks blocks of R
 * rows, as many tasks as threads or a multiple of them, so that no thread waits on another. */
typedef struct {
    int64_t P, n_panels, R, n_blocks;
} tiling;

static tiling tile(int64_t N, int64_t K, int64_t M, int threads) {
    tiling t;
    int64_t most = panel_bytes(threads) / ((int64_t)sizeof(float) * (K > 0 ? K : 1)); /* columns that fit per thread */
    most = most < PANEL_ALIGN ? PANEL_ALIGN : most - most % PANEL_ALIGN;
    int64_t panels = (M + most - 1) / most, blocks = 1;
    if (panels >= threads) panels = (panels + threads - 1) / threads * threads;
    else { /* fewer panels than threads: as many as divide the team, and the rows cut between them */
        while (threads % panels) panels++;
        blocks = threads / panels;
        const int64_t most_blocks = N / 32 > 1 ? N / 32 : 1; /* not below 32 rows a task */
        if (blocks > most_blocks) blocks = most_blocks;
    }
    t.P = (M + panels - 1) / panels;
    t.P = (t.P + PANEL_ALIGN - 1) / PANEL_ALIGN * PANEL_ALIGN;
    t.n_panels = (M + t.P - 1) / t.P;
    t.R = (N + blocks - 1) / blocks;
    t.n_blocks = (N + t.R - 1) / t.R;
    return t;
}

/* Many rows: each thread widens the panels of its tasks into its own scratch and
 * multiplies them by its rows of X with a one-thread sgemm (OpenBLAS runs one thread inside an
 * OpenMP team). nn = 0: out (N,M) (+)= X·Wᵀ, W (M,K), a panel is g contiguous rows of W, widened
 * to buf (g,K); nn = 1: out (+)= X·W, W (K,M), a panel is g columns of each row, widened to buf (K,g). */
static int w16_panels(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                      int accumulate, int nn) {
    if (N == 0 || M == 0) return 0;
    if (K == 0) return -1; /* nothing to widen: the few-row kernels write the zeros */
    const int threads = team_size();
    const tiling t = tile(N, K, M, threads);
    float *scratch = malloc((size_t)(threads * t.P * K) * sizeof *scratch);
    if (!scratch) return -1;
    const int64_t n_tasks = t.n_panels * t.n_blocks;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *buf = scratch + (int64_t)omp_get_thread_num() * t.P * K;
        int64_t widened = -1; /* the panel in buf: a thread's tasks run panel by panel */
#pragma omp for schedule(static)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int64_t p = task / t.n_blocks, m0 = p * t.P, g = M - m0 < t.P ? M - m0 : t.P;
            const int64_t n0 = (task % t.n_blocks) * t.R, rows = N - n0 < t.R ? N - n0 : t.R;
            if (p != widened) {
                if (nn) for (int64_t k = 0; k < K; k++) CP_KERNEL(cp_gemm_widen16)(buf + k * g, W + k * M + m0, bf16, g);
                else CP_KERNEL(cp_gemm_widen16)(buf, W + m0 * K, bf16, g * K);
                widened = p;
            }
            // out[n0 : n0+rows, m0 : m0+g] (+)= X[n0 : n0+rows, :] · buf (as W's panel)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, nn ? CblasNoTrans : CblasTrans, (int)rows, (int)g, (int)K, 1.0f,
                        X + n0 * K, (int)K, buf, nn ? (int)g : (int)K, accumulate ? 1.0f : 0.0f, out + n0 * M + m0, (int)M);
        }
    }
    free(scratch);
    return 0;
}
#define w16_nt_panels(o, x, w, b, n, k, m, a) w16_panels(o, x, w, b, n, k, m, a, 0)
#define w16_nn_panels(o, x, w, b, n, k, m, a) w16_panels(o, x, w, b, n, k, m, a, 1)

/* The few-row kernels take any N: they are also the way on when scratch cannot be had (w16_panels < 0). */
static void w16_nt(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N > W16_SKINNY_NT_ROWS && w16_nt_panels(out, X, W, bf16, N, K, M, accumulate) == 0) return;
    CP_KERNEL(cp_gemm_skinny16_nt)(out, X, W, bf16, N, K, M, accumulate);
}

static void w16_nn(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M, int accumulate) {
    if (N > W16_SKINNY_NN_ROWS && w16_nn_panels(out, X, W, bf16, N, K, M, accumulate) == 0) return;
    CP_KERNEL(cp_gemm_skinny16_nn)(out, X, W, bf16, N, K, M, accumulate);
}

/* ---- bf16 compute (--bf16): gemm_bf16.h --------------------------------------------------------- */

/* Below this many rows the emulation (few-row kernels reading the bf16 weight) beats packing. */
#define BF16_SKINNY_ROWS 32

/* out (N,M) (+)= bf16(X) · bf16(W)ᵀ (nn = 0, W stored (M,K)) or bf16(X) · bf16(W) (nn = 1, W (K,M)).
 * With AVX-512 BF16: vdpbf16ps (gemm_bf16.c). Otherwise, and for few rows, emulated: X rounded
 * into scratch, the weight taken as stored when BF16 or rounded into a BF16 copy, then the exact
 * 16-bit products above (every product of two bf16 values is exact in f32, so the two ways differ
 * only in the order of the f32 sums and in vdpbf16ps's flushing of denormals). */
static void bf16_product(float *out, const float *X, const void *W, cp_dtype dt, int nn, int64_t N, int64_t K, int64_t M,
                         int accumulate, const uint32_t *panels) {
#if defined(__AVX512F__)
    if (N > BF16_SKINNY_ROWS && cp_gemm_bf16_native() &&
        (panels ? cp_gemm_bf16_dot_packed(out, X, panels, N, K, M, accumulate)
                : cp_gemm_bf16_dot(out, X, W, dt, nn, N, K, M, accumulate)) == 0)
        return;
#else
    (void)panels;
#endif
    float *Xr = malloc((size_t)(N * K > 0 ? N * K : 1) * sizeof *Xr);
    uint16_t *Wr = dt == CP_BF16 ? NULL : malloc((size_t)(K * M > 0 ? K * M : 1) * sizeof *Wr);
    if (!Xr || (dt != CP_BF16 && !Wr)) {
        free(Xr);
        free(Wr);
        cp_warn("bf16 product (%lld x %lld x %lld): out of memory for the rounded copies; computed in f32", (long long)N,
                (long long)K, (long long)M);
        if (dt == CP_F32) (nn ? f32_nn : f32_nt)(out, X, W, N, K, M, accumulate);
        else (nn ? w16_nn : w16_nt)(out, X, W, dt == CP_BF16, N, K, M, accumulate);
        return;
    }
    cp_round_bf16_f32(Xr, X, N * K);
    if (Wr) {
        if (dt == CP_F32) cp_convert_from_f32(Wr, CP_BF16, W, (size_t)(K * M));
        else /* F16: widened, then rounded */
            for (int64_t i = 0; i < K * M; i++) Wr[i] = cp_f32_to_bf16(cp_f16_to_f32(((const uint16_t *)W)[i]));
    }
    (nn ? w16_nn : w16_nt)(out, Xr, Wr ? Wr : W, 1, N, K, M, accumulate);
    free(Xr);
    free(Wr);
}

/* ---- the backend's entry points ---------------------------------------------------------------- */

/* Block-quantized weights (NT only) are gemm_quant.c's. */
static int cpu_supports(cp_dtype dt) { return dt == CP_F32 || dt == CP_BF16 || dt == CP_F16 || cp_dtype_is_quantized(dt); }

static void cpu_forward(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate) {
    // out (N,OC) (+)= X (N,C) · Wᵀ (W stored (OC,C)) or X · W (W stored (C,OC))
    const int64_t C = W->in, OC = W->out;
    const int nt = W->layout == CP_WEIGHT_NT;
    assert(cpu_supports(W->dtype) && C <= INT32_MAX && OC <= INT32_MAX && N <= INT32_MAX);
    if (cp_dtype_is_quantized(W->dtype)) { /* few rows with act8 (inference): 8-bit activations, quant_dot.h */
        if (W->act8 && N <= CP_QDOT_MAX_ROWS && CP_KERNEL(cp_qdot_forward)(out, X, W, N, accumulate) == 0) return;
        CP_KERNEL(cp_gemm_quant_forward)(out, X, W, N, accumulate);
        return;
    }
    if (W->round_bf16) bf16_product(out, X, W->data, W->dtype, !nt, N, C, OC, accumulate, W->bf16_panels[0]);
    else if (W->dtype == CP_F32) (nt ? f32_nt : f32_nn)(out, X, W->data, N, C, OC, accumulate);
    else (nt ? w16_nt : w16_nn)(out, X, W->data, W->dtype == CP_BF16, N, C, OC, accumulate);
}

static void cpu_backward_input(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate) {
    // in the forward pass this was Y = X·Wᵀ (NT) or Y = X·W (NN), so dX (N,C) (+)= dY (N,OC) · W or dY · Wᵀ
    const int64_t C = W->in, OC = W->out;
    const int nt = W->layout == CP_WEIGHT_NT;
    assert(cpu_supports(W->dtype) && C <= INT32_MAX && OC <= INT32_MAX && N <= INT32_MAX);
    if (cp_dtype_is_quantized(W->dtype)) { CP_KERNEL(cp_gemm_quant_backward_input)(dX, dY, W, N, accumulate); return; }
    if (W->round_bf16) { /* NT: W (OC,C) read as (K,M); NN: W (C,OC) read as (M,K) */
        bf16_product(dX, dY, W->data, W->dtype, nt, N, OC, C, accumulate, W->bf16_panels[1]);
    } else if (W->dtype == CP_F32) {
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
