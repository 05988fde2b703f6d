/*
 * gemm_bf16.c — the AVX-512 BF16 product of gemm_bf16.h (vdpbf16ps).
 *
 * Built with -mavx512bf16 and the AVX-512 F/BW/VL/DQ flags on x86-64 (the Makefile's BF16_FLAGS),
 * so nothing in it may run before cp_gemm_bf16_native() (kernels/gemm.c, default target) said yes.
 * Elsewhere (another architecture) the kernel is absent (cp_gemm_bf16_built = 0) and the CPU
 * backend emulates.
 *
 * The product: both operands are packed first (the whole team), then tiles of the output are
 * shared out. B may come packed already (a frozen weight packed once: cp_gemm_bf16_pack, cached
 * by models/bf16.c) or be packed per call, from a stored weight or by a caller's packer (the
 * quantized weights of gemm_quant.c dequantize blocks straight into the panels). A = X rounded to bf16, row-major (N, 2·KP) with KP = ⌈K/2⌉ pairs (a zero pads odd K);
 * B = W rounded to bf16 in panels of 16 output columns, each (KP, 16, 2): pair p of column j holds
 * w[j][2p], w[j][2p+1], one 32-bit lane of a vdpbf16ps operand. The micro-kernel keeps MR = 8 rows
 * × NV = 3 panels (48 columns) of f32 sums in 24 registers; per pair it broadcasts one A pair per
 * row and loads three B vectors (24 vdpbf16ps for 11 loads). K runs in blocks of KC pairs so that
 * the three B panels of a block (48 · KC · 4 bytes = 24 KB) stay in L1 across the row groups.
 */
#include "kernels/gemm_bf16.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>

const int cp_gemm_bf16_built = 1;

#define MR 8     /* rows per micro-tile */
#define NV 3     /* 16-column panels per micro-tile */
#define KC 128   /* pairs per K block */
#define MC 64    /* rows per task */
#define NC 192   /* columns per task (4 micro-tiles) */
#define INLINE static inline __attribute__((always_inline))

/* 16 bf16 (RNE) of 16 f32. */
INLINE __m256i round16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }
/* 16 pairs: lo[i] in the low half of lane i, hi[i] in the high half. */
INLINE __m512i pairs(__m256i lo, __m256i hi) {
    return _mm512_or_si512(_mm512_cvtepu16_epi32(lo), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
}

static uint16_t bf16_of(const void *W, cp_dtype dt, int64_t i) {
    if (dt == CP_BF16) { uint16_t v; memcpy(&v, (const char *)W + 2 * i, 2); return v; }
    if (dt == CP_F16) { uint16_t h; memcpy(&h, (const char *)W + 2 * i, 2); return cp_f32_to_bf16(cp_f16_to_f32(h)); }
    float f;
    memcpy(&f, (const char *)W + 4 * i, 4);
    return cp_f32_to_bf16(f);
}

/* Panel b (columns j0 = 16·b ..) of B, (KP, 16) 32-bit pairs, from W (NT: (M,K); NN: (K,M)). */
static void pack_panel(uint32_t *dst, const void *W, cp_dtype dt, int nn, int64_t K, int64_t M, int64_t KP, int64_t j0) {
    const int64_t cols = M - j0 < 16 ? M - j0 : 16;
    int64_t p = 0;
    if (cols == 16 && dt != CP_F16) {
        if (nn) { /* rows 2p and 2p+1 of W, 16 columns each */
            for (; 2 * p + 1 < K; p++) {
                __m256i lo, hi;
                if (dt == CP_BF16) {
                    const uint16_t *w = (const uint16_t *)W;
                    lo = _mm256_loadu_si256((const __m256i *)(w + 2 * p * M + j0));
                    hi = _mm256_loadu_si256((const __m256i *)(w + (2 * p + 1) * M + j0));
                } else {
                    const float *w = (const float *)W;
                    lo = round16(_mm512_loadu_ps(w + 2 * p * M + j0));
                    hi = round16(_mm512_loadu_ps(w + (2 * p + 1) * M + j0));
                }
                _mm512_storeu_si512(dst + p * 16, pairs(lo, hi));
            }
        } else if (M * K < INT32_MAX) { /* pair p of rows j0..j0+15: a gather */
            const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                     _mm512_set1_epi32((int)K));
            if (dt == CP_BF16) {
                const char *w = (const char *)W + 2 * j0 * K;
                for (; 2 * p + 1 < K; p++) /* 32 bits at w + 2·(row·K + 2p): scale 2 */
                    _mm512_storeu_si512(dst + p * 16, _mm512_i32gather_epi32(rows, w + 4 * p, 2));
            } else {
                const float *w = (const float *)W + j0 * K;
                for (; 2 * p + 1 < K; p++) {
                    const __m256i lo = round16(_mm512_i32gather_ps(rows, w + 2 * p, 4));
                    const __m256i hi = round16(_mm512_i32gather_ps(rows, w + 2 * p + 1, 4));
                    _mm512_storeu_si512(dst + p * 16, pairs(lo, hi));
                }
            }
        }
    }
    for (; p < KP; p++) /* the rest: odd K's last pair, a partial panel, F16 */
        for (int64_t c = 0; c < 16; c++) {
            const int64_t j = j0 + c, k = 2 * p;
            uint32_t lo = 0, hi = 0;
            if (j < M) {
                lo = bf16_of(W, dt, nn ? k * M + j : j * K + k);
                if (k + 1 < K) hi = bf16_of(W, dt, nn ? (k + 1) * M + j : j * K + k + 1);
            }
            dst[p * 16 + c] = lo | hi << 16;
        }
}

/* Row n of A: (KP) pairs of X[n] rounded. */
static void pack_row(uint16_t *dst, const float *x, int64_t K, int64_t KP) {
    int64_t k = 0;
    for (; k + 32 <= K; k += 32)
        _mm512_storeu_si512(dst + k, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k)));
    for (; k < K; k++) dst[k] = cp_f32_to_bf16(x[k]);
    if (K < 2 * KP) dst[K] = 0;
}

/* out[r][0, 16·nv) (+)= Σ_p A[r][p] · B[p] over pairs [p0, p1), rows R ≤ MR, panels nv ≤ NV;
 * `mask` limits the last panel's columns; load = 0: start from zero. */
INLINE void micro(float *out, int64_t ldo, const uint32_t *A, int64_t KP, const uint32_t *B, int64_t panel_stride,
                  int64_t p0, int64_t p1, int R, int nv, __mmask16 mask, int load) {
    __m512 acc[MR][NV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? mask : 0xffff;
            acc[r][v] = load ? _mm512_maskz_loadu_ps(m, out + r * ldo + 16 * v) : _mm512_setzero_ps();
        }
    for (int64_t p = p0; p < p1; p++) {
        __m512i b[NV];
        for (int v = 0; v < nv; v++) b[v] = _mm512_loadu_si512(B + v * panel_stride + p * 16);
        for (int r = 0; r < R; r++) {
            const __m512i a = _mm512_set1_epi32((int)A[r * KP + p]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)a, (__m512bh)b[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? mask : 0xffff;
            _mm512_mask_storeu_ps(out + r * ldo + 16 * v, m, acc[r][v]);
        }
}

#define MICRO_NV(R, NVV) micro(out, ldo, A, KP, B, ps, p0, p1, R, NVV, mask, load)
#define MICRO_R(R)                                                                                                    \
    case R:                                                                                                           \
        if (nv == 3) MICRO_NV(R, 3);                                                                                  \
        else if (nv == 2) MICRO_NV(R, 2);                                                                             \
        else MICRO_NV(R, 1);                                                                                          \
        break;

static void micro_any(float *out, int64_t ldo, const uint32_t *A, int64_t KP, const uint32_t *B, int64_t ps, int64_t p0,
                      int64_t p1, int R, int nv, __mmask16 mask, int load) {
    switch (R) {
        MICRO_R(8) MICRO_R(7) MICRO_R(6) MICRO_R(5) MICRO_R(4) MICRO_R(3) MICRO_R(2) MICRO_R(1)
    default: break;
    }
}

int64_t cp_gemm_bf16_panel_words(int64_t K, int64_t M) { return (M + 15) / 16 * ((K + 1) / 2) * 16; }

void cp_gemm_bf16_pack(uint32_t *B, const void *W, cp_dtype w_dtype, int nn, int64_t K, int64_t M) {
    const int64_t KP = (K + 1) / 2, n_panels = (M + 15) / 16;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && K * M > 65536)
    for (int64_t b = 0; b < n_panels; b++) pack_panel(B + b * KP * 16, W, w_dtype, nn, K, M, KP, 16 * b);
}

void cp_gemm_bf16_pack_rows(uint32_t *dst, const float *w, int64_t ld, int64_t rows, int64_t kn) {
    const int64_t np = (kn + 1) / 2;
    int64_t p = 0;
    if (rows == 16 && ld * 16 < INT32_MAX) {
        const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                _mm512_set1_epi32((int)ld));
        for (; 2 * p + 1 < kn; p++) {
            const __m256i lo = round16(_mm512_i32gather_ps(idx, w + 2 * p, 4));
            const __m256i hi = round16(_mm512_i32gather_ps(idx, w + 2 * p + 1, 4));
            _mm512_storeu_si512(dst + p * 16, pairs(lo, hi));
        }
    }
    for (; p < np; p++)
        for (int64_t c = 0; c < 16; c++) {
            uint32_t lo = 0, hi = 0;
            if (c < rows) {
                lo = cp_f32_to_bf16(w[c * ld + 2 * p]);
                if (2 * p + 1 < kn) hi = cp_f32_to_bf16(w[c * ld + 2 * p + 1]);
            }
            dst[p * 16 + c] = lo | hi << 16;
        }
}

void cp_gemm_bf16_pack_pairs(uint32_t *dst, int64_t panel_stride, const float *lo, const float *hi, int64_t width) {
    int64_t i = 0;
    for (; i + 16 <= width; i += 16) {
        const __m256i l = round16(_mm512_loadu_ps(lo + i));
        const __m256i h = hi ? round16(_mm512_loadu_ps(hi + i)) : _mm256_setzero_si256();
        _mm512_storeu_si512(dst + (i / 16) * panel_stride, pairs(l, h));
    }
    if (i < width) {
        uint32_t *d = dst + (i / 16) * panel_stride;
        for (int64_t c = 0; c < 16; c++)
            d[c] = i + c < width ? (uint32_t)cp_f32_to_bf16(lo[i + c]) | (uint32_t)(hi ? cp_f32_to_bf16(hi[i + c]) : 0) << 16 : 0;
    }
}

/* The product on a packed B: A packed here (every row of X once, shared by all column tasks), B
 * either given (`ready`) or packed by `pack` a slab of units at a time; one team, one region. */
#define SLAB_BYTES ((int64_t)8 << 20) /* B packed per call: at most this much at a time (a slab of columns) */

static int run(float *out, const float *X, const uint32_t *ready, int64_t N, int64_t K, int64_t M, int accumulate,
               cp_gemm_bf16_packer pack, const void *ctx, int64_t unit_cols) {
    if (N <= 0 || M <= 0) return 0;
    if (K <= 0) {
        if (!accumulate)
            for (int64_t n = 0; n < N; n++) memset(out + n * M, 0, (size_t)M * sizeof *out);
        return 0;
    }
    const int64_t KP = (K + 1) / 2, panel = KP * 16; /* words of one 16-column panel */
    /* packed per call: a slab of whole units at a time (a unit is U columns, a multiple of 16), so a
     * wide weight (an LM head) is never held packed whole; each slab is multiplied before the next */
    const int64_t U = ready ? M : unit_cols, n_units = (M + U - 1) / U;
    int64_t slab_units = ready ? 1 : SLAB_BYTES / (U / 16 * panel * 4);
    slab_units = slab_units < 1 ? 1 : slab_units > n_units ? n_units : slab_units;
    const int64_t n_slabs = ready ? 1 : (n_units + slab_units - 1) / slab_units;
    uint16_t *A = aligned_alloc(64, (size_t)((N * 2 * KP * 2 + 63) / 64 * 64));
    uint32_t *B = ready ? NULL : aligned_alloc(64, (size_t)((slab_units * (U / 16) * panel * 4 + 63) / 64 * 64));
    if (!A || (!ready && !B)) { free(A); free(B); return -1; }
    const uint32_t *Bs = ready ? ready : B;
    const int64_t row_tasks = (N + MC - 1) / MC;
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads) if (threads > 1 && N * K * M > 65536)
    {
#pragma omp for schedule(static) nowait
        for (int64_t n = 0; n < N; n++) pack_row(A + n * 2 * KP, X + n * K, K, KP);
        for (int64_t s = 0; s < n_slabs; s++) {
            const int64_t u0 = s * slab_units, u1 = u0 + slab_units < n_units ? u0 + slab_units : n_units;
            const int64_t jlo = ready ? 0 : u0 * U, jhi = ready || u1 * U > M ? M : u1 * U;
#pragma omp for schedule(static)
            for (int64_t u = u0; u < (ready ? u0 : u1); u++) pack(ctx, B + (u - u0) * (U / 16) * panel, u);
            /* the barrier above also covers A: the rows of a task come from both threads' shares */
            const int64_t col_tasks = (jhi - jlo + NC - 1) / NC, n_tasks = row_tasks * col_tasks;
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < n_tasks; t++) {
                const int64_t n0 = (t / col_tasks) * MC, n1 = n0 + MC < N ? n0 + MC : N;
                const int64_t j0 = jlo + (t % col_tasks) * NC, j1 = j0 + NC < jhi ? j0 + NC : jhi;
                for (int64_t p0 = 0; p0 < KP; p0 += KC) {
                    const int64_t p1 = p0 + KC < KP ? p0 + KC : KP;
                    const int load = p0 > 0 || accumulate;
                    for (int64_t j = j0; j < j1; j += 16 * NV) {
                        const int64_t cols = j1 - j < 16 * NV ? j1 - j : 16 * NV;
                        const int nv = (int)((cols + 15) / 16);
                        const int64_t last = cols - 16 * (nv - 1);
                        const __mmask16 mask = (__mmask16)(last == 16 ? 0xffff : (1u << last) - 1);
                        const uint32_t *Bj = Bs + ((j - jlo) / 16) * panel;
                        for (int64_t n = n0; n < n1; n += MR) {
                            const int R = (int)(n1 - n < MR ? n1 - n : MR);
                            micro_any(out + n * M + j, M, (const uint32_t *)(A + n * 2 * KP), KP, Bj, panel, p0, p1, R, nv,
                                      mask, load);
                        }
                    }
                }
            } /* its barrier: the slab is used up before the next one is packed over it */
        }
    }
    free(A);
    free(B);
    return 0;
}

typedef struct {
    const void *W;
    cp_dtype dt;
    int nn;
    int64_t K, M, KP;
} plain_ctx;

static void pack_plain(const void *vctx, uint32_t *B, int64_t b) {
    const plain_ctx *c = vctx;
    pack_panel(B, c->W, c->dt, c->nn, c->K, c->M, c->KP, 16 * b);
}

int cp_gemm_bf16_dot(float *out, const float *X, const void *W, cp_dtype w_dtype, int nn, int64_t N, int64_t K, int64_t M,
                     int accumulate) {
    const plain_ctx c = {W, w_dtype, nn, K, M, (K + 1) / 2};
    return run(out, X, NULL, N, K, M, accumulate, pack_plain, &c, 16);
}

int cp_gemm_bf16_dot_packed(float *out, const float *X, const uint32_t *B, int64_t N, int64_t K, int64_t M, int accumulate) {
    return run(out, X, B, N, K, M, accumulate, NULL, NULL, 0);
}

int cp_gemm_bf16_dot_with(float *out, const float *X, int64_t N, int64_t K, int64_t M, int accumulate, cp_gemm_bf16_packer pack,
                          const void *ctx, int64_t unit_cols) {
    return run(out, X, NULL, N, K, M, accumulate, pack, ctx, unit_cols);
}

#else /* no AVX-512 BF16 in this build */

const int cp_gemm_bf16_built = 0;

int cp_gemm_bf16_dot(float *out, const float *X, const void *W, cp_dtype w_dtype, int nn, int64_t N, int64_t K, int64_t M,
                     int accumulate) {
    (void)out, (void)X, (void)W, (void)w_dtype, (void)nn, (void)N, (void)K, (void)M, (void)accumulate;
    return -1;
}
int64_t cp_gemm_bf16_panel_words(int64_t K, int64_t M) { return (M + 15) / 16 * ((K + 1) / 2) * 16; }
void cp_gemm_bf16_pack(uint32_t *B, const void *W, cp_dtype w_dtype, int nn, int64_t K, int64_t M) {
    (void)B, (void)W, (void)w_dtype, (void)nn, (void)K, (void)M;
}
void cp_gemm_bf16_pack_rows(uint32_t *dst, const float *w, int64_t ld, int64_t rows, int64_t kn) {
    (void)dst, (void)w, (void)ld, (void)rows, (void)kn;
}
void cp_gemm_bf16_pack_pairs(uint32_t *dst, int64_t panel_stride, const float *lo, const float *hi, int64_t width) {
    (void)dst, (void)panel_stride, (void)lo, (void)hi, (void)width;
}
int cp_gemm_bf16_dot_packed(float *out, const float *X, const uint32_t *B, int64_t N, int64_t K, int64_t M, int accumulate) {
    (void)out, (void)X, (void)B, (void)N, (void)K, (void)M, (void)accumulate;
    return -1;
}
int cp_gemm_bf16_dot_with(float *out, const float *X, int64_t N, int64_t K, int64_t M, int accumulate, cp_gemm_bf16_packer pack,
                          const void *ctx, int64_t unit_cols) {
    (void)out, (void)X, (void)N, (void)K, (void)M, (void)accumulate, (void)pack, (void)ctx, (void)unit_cols;
    return -1;
}

#endif
