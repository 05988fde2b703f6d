/*
 * gemm_skinny16.c — few-row products with a BF16 or F16 weight, read as stored and widened in
 * registers, and the widening of a weight panel for sgemm; see gemm_cpu.h. Compiled once per
 * instruction set (CP_KERNEL names each copy, see dispatch.h).
 *
 * A decoding step multiplies one row per sequence by every weight: bound by the bytes of weight
 * read, so a 16-bit weight read directly costs half of its f32 copy. Widening is exact: BF16 is the
 * top half of an f32 (a 16-bit shift), F16 converts with one instruction (F16C's vcvtph2ps, in
 * AVX-512F as well). The blocking is that of kernels/skinny.c: NT keeps four weight rows against
 * two input rows in flight (eight independent sums; each widened weight vector feeds two FMAs), NN
 * adds four weight rows into a block of accumulators per pass, widening each weight vector once
 * for all the input rows. The base variant is the same code one lane wide.
 */
/* Built with -mf16c (the Makefile's ISA_EXTRA_ for this file): every AVX2 CPU has F16C, and
 * kernels/gemm.c checks it before choosing this variant. */

#include "kernels/gemm_cpu.h"
#include "kernels/isa.h"
#include "kernels/skinny.h"

#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

CP_DECLARE_GEMM_KERNELS_OF(CP_ISA)

/* Below this many multiply-adds the work stays on one thread (as in skinny.c). */
#define SKINNY_PARALLEL_MIN 65536
#define INLINE static inline __attribute__((always_inline))

/* ---- one vector of weights, widened to f32 ----------------------------------------------------- */

#include "kernels/vfloat.h"

#if defined(__AVX512F__)
INLINE vf vload16(const uint16_t *p, int bf16) {
    const __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}
#elif defined(__AVX2__)
INLINE vf vload16(const uint16_t *p, int bf16) {
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}
#else
INLINE vf vload16(const uint16_t *p, int bf16);
#endif

/* One element, for the tails. */
INLINE float load16(const uint16_t *p, int bf16) {
    if (bf16) {
        uint32_t u = (uint32_t)*p << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return cp_f16_to_f32(*p);
}
#if VL == 1
INLINE vf vload16(const uint16_t *p, int bf16) { return load16(p, bf16); }
#endif

void CP_KERNEL(cp_gemm_widen16)(float *dst, const uint16_t *src, int bf16, int64_t n) {
    int64_t i = 0;
    if (bf16) {
        for (; i + VL <= n; i += VL) vstore(dst + i, vload16(src + i, 1));
        for (; i < n; i++) dst[i] = load16(src + i, 1);
    } else {
        for (; i + VL <= n; i += VL) vstore(dst + i, vload16(src + i, 0));
        for (; i < n; i++) dst[i] = load16(src + i, 0);
    }
}

/* ---- NT: out (N,M) (+)= X (N,K) · Wᵀ, W stored (M,K) ------------------------------------------- */

/* s[i][r] = Σ_k x[i·K + k] · w[r·K + k] for NX ≤ 2 input rows and R ≤ 4 weight rows (constants
 * once inlined: the accumulators stay in registers). */
INLINE void dots(float s[2][4], const float *x, const uint16_t *w, int64_t K, int NX, int R, int bf16) {
    vf acc[2][4];
    for (int i = 0; i < NX; i++)
        for (int r = 0; r < R; r++) acc[i][r] = vzero();
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        vf wv[4];
        for (int r = 0; r < R; r++) wv[r] = vload16(w + r * K + k, bf16);
        for (int i = 0; i < NX; i++) {
            const vf xv = vload(x + i * K + k);
            for (int r = 0; r < R; r++) acc[i][r] = vfma(xv, wv[r], acc[i][r]);
        }
    }
    for (int i = 0; i < NX; i++)
        for (int r = 0; r < R; r++) s[i][r] = vsum(acc[i][r]);
    for (; k < K; k++)
        for (int r = 0; r < R; r++) {
            const float wk = load16(w + r * K + k, bf16);
            for (int i = 0; i < NX; i++) s[i][r] += x[i * K + k] * wk;
        }
}

/* Output columns [m, m + R) for every row of X. */
INLINE void nt_rows(float *out, const float *X, const uint16_t *W, int64_t N, int64_t K, int64_t M, int64_t m, int R,
                    int accumulate, int bf16) {
    const uint16_t *w = W + m * K;
    float s[2][4];
    int64_t n = 0;
    for (; n + 2 <= N; n += 2) {
        dots(s, X + n * K, w, K, 2, R, bf16);
        for (int i = 0; i < 2; i++)
            for (int r = 0; r < R; r++) {
                float *y = out + (n + i) * M + m + r;
                *y = accumulate ? *y + s[i][r] : s[i][r];
            }
    }
    if (n < N) {
        dots(s, X + n * K, w, K, 1, R, bf16);
        for (int r = 0; r < R; r++) {
            float *y = out + n * M + m + r;
            *y = accumulate ? *y + s[0][r] : s[0][r];
        }
    }
}

INLINE void nt16(float *out, const float *X, const uint16_t *W, int64_t N, int64_t K, int64_t M, int accumulate, int bf16) {
    const int64_t m4 = M / 4;
#pragma omp parallel for schedule(static) if (N * K * M > SKINNY_PARALLEL_MIN)
    for (int64_t q = 0; q < m4 + M % 4; q++) {
        if (q < m4) nt_rows(out, X, W, N, K, M, 4 * q, 4, accumulate, bf16);
        else nt_rows(out, X, W, N, K, M, 4 * m4 + (q - m4), 1, accumulate, bf16); /* the last M % 4 rows */
    }
}

void CP_KERNEL(cp_gemm_skinny16_nt)(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                                    int accumulate) {
    if (bf16) nt16(out, X, W, N, K, M, accumulate, 1);
    else nt16(out, X, W, N, K, M, accumulate, 0);
}

/* ---- NN: out (N,M) (+)= X (N,K) · W, W stored (K,M) -------------------------------------------- */

#define NN_ROWS CP_SKINNY_MAX_ROWS /* input rows per pass over W */
#define NN_COLS 256                /* output columns per task: NN_ROWS × 256 accumulators stay in L1 */

/* acc[n][0, no) += Σ_{r<R} x[n·K + r] · w[r·M + j] for n < N: R ≤ 4 weight rows, each widened once. */
INLINE void nn_pass(float acc[NN_ROWS][NN_COLS], const float *x, const uint16_t *w, int64_t N, int64_t K, int64_t M,
                    int64_t no, int R, int bf16) {
    int64_t j = 0;
    for (; j + VL <= no; j += VL) {
        vf wv[4];
        for (int r = 0; r < R; r++) wv[r] = vload16(w + r * M + j, bf16);
        for (int64_t n = 0; n < N; n++) {
            vf a = vload(acc[n] + j);
            for (int r = 0; r < R; r++) a = vfma(vbcast(x[n * K + r]), wv[r], a);
            vstore(acc[n] + j, a);
        }
    }
    for (; j < no; j++)
        for (int r = 0; r < R; r++) {
            const float wj = load16(w + r * M + j, bf16);
            for (int64_t n = 0; n < N; n++) acc[n][j] += x[n * K + r] * wj;
        }
}

INLINE void nn16(float *out, const float *X, const uint16_t *W, int64_t N, int64_t K, int64_t M, int accumulate, int bf16) {
    const int64_t n_blocks = (M + NN_COLS - 1) / NN_COLS;
#pragma omp parallel for schedule(static) if (N * K * M > SKINNY_PARALLEL_MIN)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        const int64_t m0 = blk * NN_COLS, no = M - m0 < NN_COLS ? M - m0 : NN_COLS;
        float acc[NN_ROWS][NN_COLS];
        for (int64_t n = 0; n < N; n++) {
            if (accumulate) memcpy(acc[n], out + n * M + m0, (size_t)no * sizeof(float));
            else memset(acc[n], 0, (size_t)no * sizeof(float));
        }
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) nn_pass(acc, X + k, W + k * M + m0, N, K, M, no, 4, bf16);
        for (; k < K; k++) nn_pass(acc, X + k, W + k * M + m0, N, K, M, no, 1, bf16);
        for (int64_t n = 0; n < N; n++) memcpy(out + n * M + m0, acc[n], (size_t)no * sizeof(float));
    }
}

void CP_KERNEL(cp_gemm_skinny16_nn)(float *out, const float *X, const uint16_t *W, int bf16, int64_t N, int64_t K, int64_t M,
                                    int accumulate) {
    for (int64_t n0 = 0; n0 < N; n0 += NN_ROWS) { /* more rows: in groups, each reading W again */
        const int64_t n = N - n0 < NN_ROWS ? N - n0 : NN_ROWS;
        if (bf16) nn16(out + n0 * M, X + n0 * K, W, n, K, M, accumulate, 1);
        else nn16(out + n0 * M, X + n0 * K, W, n, K, M, accumulate, 0);
    }
}
