/*
 * gemm_quant.c — products with a block-quantized weight (Q8_0, Q4_0, Q4_1, Q4_K), see gemm_quant.h.
 * Compiled once per instruction set (CP_KERNEL names each copy, see dispatch.h).
 *
 * The weight is read as stored and dequantized a tile at a time, each value computed with ggml's
 * dequantize_row_* operations (d * q for Q8_0/Q4_0, d * q + m for Q4_1, d1 * q - m1 for Q4_K; no
 * fused multiply-add, the file is built without contraction as the rest of cpeft), so the product
 * is the f32 product with the dequantized weight up to the order of the sums. The compiler
 * vectorizes the dequantization loops for the variant's width; the dot products use its vectors.
 *
 *   few rows (N <= 32, decoding): the forward pass dequantizes 4 weight rows a tile of 256 values
 *     at a time into an L1 buffer and runs every input row against them (the accumulators of all
 *     rows stay in L1); the input gradient dequantizes 256 columns of one weight row at a time and
 *     adds it, scaled by each row's dY, into 256-column accumulators. The weight is read once.
 *   many rows: each thread dequantizes panels of the weight into its own scratch and multiplies
 *     them with a one-thread sgemm (as gemm_cpu.c does for 16-bit weights). Under --bf16
 *     (round_bf16, QLoRA's bnb_4bit_compute_dtype=bfloat16) with AVX-512 BF16, blocks are
 *     dequantized straight into the bf16 panels of gemm_bf16.h and run on its vdpbf16ps kernel
 *     (emulated elsewhere: the dequantized panel and X rounded, then sgemm). The few-row kernels
 *     stay exact f32 under --bf16.
 * Activations stay f32: no 8-bit activation quantization (llama.cpp's VNNI path), which would
 * change results; see docs/architecture.md.
 */
#include "kernels/gemm_quant.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"
#include "kernels/isa.h"
#include "kernels/quant_dot.h"

#include <assert.h>
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

CP_DECLARE_QUANT_KERNELS_OF(CP_ISA)
CP_DECLARE_QDOT_KERNELS_OF(CP_ISA)

#define FEW_ROWS 32         /* up to this many rows: the few-row kernels */
#define TILE 256            /* weight values dequantized at a time: one Q4_K block, eight Q8_0 ones */
#define PARALLEL_MIN 65536  /* below this many multiply-adds the few-row kernels stay on one thread */
#define SCRATCH_TEAM_BYTES ((int64_t)32 << 20) /* dequantized panels: gemm_cpu.c's sizes */
#define PANEL_MIN_BYTES ((int64_t)1 << 20)
#define PANEL_MAX_BYTES ((int64_t)8 << 20)
#define INLINE static inline __attribute__((always_inline))

#include "kernels/vfloat.h"

/* ---- dequantization: ggml's dequantize_row_*, operation for operation ------------------------- */

INLINE float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return cp_f16_to_f32(h);
}

static void deq_q8_0(const uint8_t *b, float *restrict y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        const float d = half(b);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

static void deq_q4_0(const uint8_t *b, float *restrict y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        const float d = half(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const uint8_t *b, float *restrict y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        const float d = half(b), m = half(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 0x0f) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

/* Q4_K {half d, dmin; u8 scales[12]; u8 qs[128]}: eight sub-blocks of 32 with 6-bit scales and mins. */
static void deq_q4_k(const uint8_t *b, float *restrict y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144) {
        const float d = half(b), min = half(b + 2);
        const uint8_t *sc = b + 4, *q = b + 16;
        for (int j = 0; j < 8; j += 2, q += 32, y += 64) {
            uint8_t s[2], m[2];
            for (int h = 0; h < 2; h++) {
                const int is = j + h;
                if (is < 4) { s[h] = sc[is] & 63; m[h] = sc[is + 4] & 63; }
                else {
                    s[h] = (uint8_t)((sc[is + 4] & 0xf) | ((sc[is - 4] >> 6) << 4));
                    m[h] = (uint8_t)((sc[is + 4] >> 4) | ((sc[is] >> 6) << 4));
                }
            }
            const float d1 = d * (float)s[0], m1 = min * (float)m[0], d2 = d * (float)s[1], m2 = min * (float)m[1];
            for (int l = 0; l < 32; l++) y[l] = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) y[32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* dst[0, n) from n elements (whole blocks) of a quantized weight at src. */
static void dequant(cp_dtype dt, const uint8_t *src, float *dst, int64_t n) {
    switch (dt) {
    case CP_Q8_0: deq_q8_0(src, dst, n / 32); break;
    case CP_Q4_0: deq_q4_0(src, dst, n / 32); break;
    case CP_Q4_1: deq_q4_1(src, dst, n / 32); break;
    case CP_Q4_K: deq_q4_k(src, dst, n / 256); break;
    case CP_Q6_K: case CP_Q5_0: case CP_Q5_1: case CP_Q5_K: CP_KERNEL(cp_qdot_dequant)(dst, src, dt, n); break; /* quant_dot.c */
    default: assert(!"not a quantized dtype");
    }
}

void CP_KERNEL(cp_gemm_dequant)(float *dst, const void *src, cp_dtype dtype, int64_t n) { dequant(dtype, src, dst, n); }

/* Bytes from the start of a row to its element e (e a multiple of the block size). */
INLINE int64_t offset_of(cp_dtype dt, int64_t e) { return e / cp_dtype_block_elems(dt) * cp_dtype_block_bytes(dt); }

/* ---- few rows, NT: out (N,M) (+)= X (N,K) · Wᵀ, W quantized (M,K), N <= FEW_ROWS ----------------- */

static void nt_few(float *out, const float *X, const uint8_t *W, cp_dtype dt, int64_t N, int64_t K, int64_t M, int accumulate) {
    const int64_t rb = offset_of(dt, K), n_quads = (M + 3) / 4;
#pragma omp parallel for schedule(static) if (N * K * M > PARALLEL_MIN)
    for (int64_t q = 0; q < n_quads; q++) {
        const int64_t m0 = 4 * q, R = M - m0 < 4 ? M - m0 : 4;
        float tile[4][TILE] __attribute__((aligned(64)));
        vf acc[FEW_ROWS][4];
        for (int64_t n = 0; n < N; n++)
            for (int r = 0; r < 4; r++) acc[n][r] = vzero();
        if (R < 4) memset(tile[R], 0, (size_t)(4 - R) * sizeof tile[0]); /* rows past M: zeros, never stored */
        for (int64_t k0 = 0; k0 < K; k0 += TILE) {
            const int64_t kn = K - k0 < TILE ? K - k0 : TILE; /* whole blocks: a multiple of 32 */
            for (int64_t r = 0; r < R; r++) dequant(dt, W + (m0 + r) * rb + offset_of(dt, k0), tile[r], kn);
            for (int64_t n = 0; n < N; n++) {
                const float *x = X + n * K + k0;
                vf a0 = acc[n][0], a1 = acc[n][1], a2 = acc[n][2], a3 = acc[n][3];
                for (int64_t k = 0; k < kn; k += VL) {
                    const vf xv = vload(x + k);
                    a0 = vfma(xv, vload(tile[0] + k), a0);
                    a1 = vfma(xv, vload(tile[1] + k), a1);
                    a2 = vfma(xv, vload(tile[2] + k), a2);
                    a3 = vfma(xv, vload(tile[3] + k), a3);
                }
                acc[n][0] = a0, acc[n][1] = a1, acc[n][2] = a2, acc[n][3] = a3;
            }
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t r = 0; r < R; r++) {
                float *y = out + n * M + m0 + r;
                const float s = vsum(acc[n][r]);
                *y = accumulate ? *y + s : s;
            }
    }
}

/* ---- few rows, NN: out (N,M) (+)= X (N,K) · W, W quantized (K,M), N <= FEW_ROWS ----------------- */

static void nn_few(float *out, const float *X, const uint8_t *W, cp_dtype dt, int64_t N, int64_t K, int64_t M, int accumulate) {
    const int64_t rb = offset_of(dt, M), n_tiles = (M + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) if (N * K * M > PARALLEL_MIN)
    for (int64_t t = 0; t < n_tiles; t++) {
        const int64_t m0 = t * TILE, no = M - m0 < TILE ? M - m0 : TILE; /* whole blocks */
        float acc[FEW_ROWS][TILE] __attribute__((aligned(64)));
        float tile[TILE] __attribute__((aligned(64)));
        for (int64_t n = 0; n < N; n++) {
            if (accumulate) memcpy(acc[n], out + n * M + m0, (size_t)no * sizeof(float));
            else memset(acc[n], 0, (size_t)no * sizeof(float));
        }
        for (int64_t k = 0; k < K; k++) {
            dequant(dt, W + k * rb + offset_of(dt, m0), tile, no);
            for (int64_t n = 0; n < N; n++) {
                const vf a = vbcast(X[n * K + k]);
                for (int64_t j = 0; j < no; j += VL) vstore(acc[n] + j, vfma(a, vload(tile + j), vload(acc[n] + j)));
            }
        }
        for (int64_t n = 0; n < N; n++) memcpy(out + n * M + m0, acc[n], (size_t)no * sizeof(float));
    }
}

/* ---- many rows: dequantized panels for sgemm -------------------------------------------------- */

/* nn = 0: out (N,M) (+)= X·Wᵀ, W (M,K): a panel is g whole rows of W, dequantized to buf (g,K);
 * nn = 1: out (N,M) (+)= X·W, W (K,M): a panel is g columns (whole blocks) of every row, to buf (K,g).
 * Returns -1 when the scratch cannot be had (the few-row kernels then do it). */
static int panels(float *out, const float *X, const uint8_t *W, cp_dtype dt, int64_t N, int64_t K, int64_t M, int accumulate,
                  int nn, int round) {
    if (K == 0) return -1;
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    const int64_t align = nn ? cp_dtype_block_elems(dt) : 16, set = cp_gemm_cpu_panel_bytes();
    int64_t bytes = SCRATCH_TEAM_BYTES / threads;
    bytes = set > 0 ? set : bytes < PANEL_MIN_BYTES ? PANEL_MIN_BYTES : bytes > PANEL_MAX_BYTES ? PANEL_MAX_BYTES : bytes;
    int64_t most = bytes / ((int64_t)sizeof(float) * K); /* columns that fit per thread */
    most = most < align ? align : most - most % align;
    int64_t n_panels = (M + most - 1) / most;
    n_panels = (n_panels + threads - 1) / threads * threads; /* every thread busy */
    int64_t P = (M + n_panels - 1) / n_panels;
    P = (P + align - 1) / align * align;
    n_panels = (M + P - 1) / P;
    float *scratch = malloc((size_t)(threads * P * K) * sizeof *scratch);
    if (!scratch) return -1;
    const int64_t rb = offset_of(dt, nn ? M : K);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        float *buf = scratch + (int64_t)omp_get_thread_num() * P * K;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_panels; p++) {
            const int64_t m0 = p * P, g = M - m0 < P ? M - m0 : P;
            if (nn) for (int64_t k = 0; k < K; k++) dequant(dt, W + k * rb + offset_of(dt, m0), buf + k * g, g);
            else dequant(dt, W + m0 * rb, buf, g * K);
            if (round) /* --bf16 emulated: the dequantized values rounded as the kernel's pairs are */
                for (int64_t i = 0; i < g * K; i++) buf[i] = cp_bf16_to_f32(cp_f32_to_bf16(buf[i]));
            // out[:, m0 : m0+g] (+)= X · buf (as W's panel)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, nn ? CblasNoTrans : CblasTrans, (int)N, (int)g, (int)K, 1.0f, X, (int)K,
                        buf, nn ? (int)g : (int)K, accumulate ? 1.0f : 0.0f, out + m0, (int)M);
        }
    }
    free(scratch);
    return 0;
}

/* ---- many rows under --bf16 (QLoRA's compute dtype): blocks dequantized into the bf16 panels -- */

#if defined(__AVX512F__)
typedef struct {
    const uint8_t *W;
    cp_dtype dt;
    int64_t K, M, KP, rb; /* the product's K and M; rb: bytes per stored row of W */
} quant_pack;

/* Forward, X·Wᵀ with W (M,K): panel u holds rows 16u .. 16u+15 of W, dequantized TILE values of
 * each at a time into an L1 tile and rounded into pairs. */
static void pack_nt(const void *vctx, uint32_t *B, int64_t u) {
    const quant_pack *c = vctx;
    const int64_t m0 = 16 * u, R = c->M - m0 < 16 ? c->M - m0 : 16;
    float tile[16][TILE] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 < c->K; k0 += TILE) {
        const int64_t kn = c->K - k0 < TILE ? c->K - k0 : TILE; /* whole blocks: even */
        for (int64_t r = 0; r < R; r++) dequant(c->dt, c->W + (m0 + r) * c->rb + offset_of(c->dt, k0), tile[r], kn);
        cp_gemm_bf16_pack_rows(B + (k0 / 2) * 16, tile[0], TILE, R, kn); /* B: unit u's panel */
    }
}

/* Input gradient, dY·W with W (K,M) as stored (OC,C): unit u is TILE columns (whole blocks) of every
 * row; rows 2p and 2p+1 are dequantized and rounded into pair p of those columns' panels. */
static void pack_nn(const void *vctx, uint32_t *B, int64_t u) {
    const quant_pack *c = vctx;
    const int64_t m0 = u * TILE, w = c->M - m0 < TILE ? c->M - m0 : TILE; /* a multiple of 32 */
    float lo[TILE] __attribute__((aligned(64))), hi[TILE] __attribute__((aligned(64)));
    uint32_t *dst = B; /* unit u's TILE / 16 panels */
    for (int64_t p = 0; p < c->KP; p++) {
        dequant(c->dt, c->W + 2 * p * c->rb + offset_of(c->dt, m0), lo, w);
        const int odd = 2 * p + 1 < c->K;
        if (odd) dequant(c->dt, c->W + (2 * p + 1) * c->rb + offset_of(c->dt, m0), hi, w);
        cp_gemm_bf16_pack_pairs(dst + p * 16, c->KP * 16, lo, odd ? hi : NULL, w);
    }
}

/* out (N,M) (+)= bf16(X) · bf16(deq W)ᵀ (nn = 0) or bf16(X) · bf16(deq W) (nn = 1) on vdpbf16ps; -1 when
 * the CPU lacks it or scratch cannot be had. Equals cp_gemm_bf16_dot on the dequantized f32 weight,
 * bit for bit (the same pairs, the same kernel). */
static int bf16_native(float *out, const float *X, const uint8_t *W, cp_dtype dt, int64_t N, int64_t K, int64_t M, int accumulate,
                       int nn) {
    if (!cp_gemm_bf16_native()) return -1;
    const quant_pack c = {W, dt, K, M, (K + 1) / 2, offset_of(dt, nn ? M : K)};
    return nn ? cp_gemm_bf16_dot_with(out, X, N, K, M, accumulate, pack_nn, &c, TILE)
              : cp_gemm_bf16_dot_with(out, X, N, K, M, accumulate, pack_nt, &c, 16);
}
#else
static int bf16_native(float *out, const float *X, const uint8_t *W, cp_dtype dt, int64_t N, int64_t K, int64_t M, int accumulate,
                       int nn) {
    (void)out, (void)X, (void)W, (void)dt, (void)N, (void)K, (void)M, (void)accumulate, (void)nn;
    return -1;
}
#endif

/* Many rows with round_bf16: the native kernel, else emulated (X rounded into a copy, each dequantized
 * panel rounded in place, then sgemm: the same values up to the order of the f32 sums). */
static int many_rows(float *out, const float *X, const cp_weight *W, int64_t N, int64_t K, int64_t M, int accumulate, int nn) {
    if (!W->round_bf16) return panels(out, X, W->data, W->dtype, N, K, M, accumulate, nn, 0);
    if (bf16_native(out, X, W->data, W->dtype, N, K, M, accumulate, nn) == 0) return 0;
    float *Xr = malloc((size_t)(N * K) * sizeof *Xr);
    if (!Xr) return -1;
    cp_round_bf16_f32(Xr, X, N * K);
    const int r = panels(out, Xr, W->data, W->dtype, N, K, M, accumulate, nn, 1);
    free(Xr);
    return r;
}

/* ---- the entry points ------------------------------------------------------------------------- */

void CP_KERNEL(cp_gemm_quant_forward)(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate) {
    // out (N,OC) (+)= X (N,C) · Wᵀ, W quantized (OC,C)
    const int64_t K = W->in, M = W->out;
    assert(W->layout == CP_WEIGHT_NT && cp_dtype_is_quantized(W->dtype) && K % cp_dtype_block_elems(W->dtype) == 0);
    if (N == 0 || M == 0) return;
    if (N > FEW_ROWS && many_rows(out, X, W, N, K, M, accumulate, 0) == 0) return;
    for (int64_t n0 = 0; n0 < N; n0 += FEW_ROWS)
        nt_few(out + n0 * M, X + n0 * K, W->data, W->dtype, N - n0 < FEW_ROWS ? N - n0 : FEW_ROWS, K, M, accumulate);
}

void CP_KERNEL(cp_gemm_quant_backward_input)(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate) {
    // in the forward pass this was Y = X·Wᵀ, so dX (N,C) (+)= dY (N,OC) · W, W quantized (OC,C)
    const int64_t K = W->out, M = W->in;
    assert(W->layout == CP_WEIGHT_NT && cp_dtype_is_quantized(W->dtype) && M % cp_dtype_block_elems(W->dtype) == 0);
    if (N == 0 || M == 0) return;
    if (N > FEW_ROWS && many_rows(dX, dY, W, N, K, M, accumulate, 1) == 0) return;
    for (int64_t n0 = 0; n0 < N; n0 += FEW_ROWS)
        nn_few(dX + n0 * M, dY + n0 * K, W->data, W->dtype, N - n0 < FEW_ROWS ? N - n0 : FEW_ROWS, K, M, accumulate);
}
