/*
 * quant_dot.c — the fast few-row product with a block-quantized weight and 8-bit activations
 * (quant_dot.h). Compiled once per instruction set (CP_KERNEL names each copy, see dispatch.h).
 *
 * Per weight row and activation row, block by block: the weight's unsigned quantized values u
 * (0..15, 0..31, 0..63; Q8_0's signed ones through the sign trick: |w| against sign(w)·x) times the
 * activation's int8 q, summed exactly in int32 — AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw + vpmaddwd
 * (pair sums stay below 2·128·127 < 2¹⁵: no saturation), or plain C —, then in f32:
 *   Q8_0, Q4_0, Q5_0     dx·dw·Σ (u − o)·q                o = 0, 8, 16 (the offset in the integer sums)
 *   Q4_1, Q5_1           dx·dw·Σ u·q + m·s                s = f16(dx·Σq), ggml's Q8_1 sum
 *   Q4_K, Q5_K           dx·(d·Σ_j s_j·Σ u·q − dmin·Σ_j m_j·Σq)   over the eight sub-blocks j of 32
 *   Q6_K                 dx·d·Σ_g s_g·(Σ u·q − 32·Σq)             over the sixteen sub-blocks g of 16
 * The vector variants keep dx·dw·isum in f32 lanes (one horizontal sum per output) and the offset
 * terms in a scalar; for the blocks of 32 each lane sums four consecutive bytes, the lanes and their
 * order those of ggml's AVX2 vec_dot_q*_0/1_q8_0/1, so a product equals llama.cpp's bit for bit. Q5_K unpacks a block into a small buffer first; the others unpack in registers.
 */
#include "kernels/quant_dot.h"
#include "kernels/isa.h"

#include <assert.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

CP_DECLARE_QDOT_KERNELS_OF(CP_ISA)
#if defined(__AVX512F__)
CP_DECLARE_QDOT_KERNELS(avx2)
#endif

#define PARALLEL_MIN 65536 /* below this many multiply-adds: one thread */
#define INLINE static inline __attribute__((always_inline))

INLINE float half(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#if defined(__AVX2__)
    return _cvtsh_ss(h);
#else
    return cp_f16_to_f32(h);
#endif
}

/* The 6-bit scale and min of sub-block j of Q4_K / Q5_K (ggml's get_scale_min_k4). */
INLINE void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- unpacking to unsigned values (plain C; the Q5 formats and the base variant) ---------------- */

/* u[0, 32) of a Q4_0/Q4_1 (nibbles at qs) or Q5_0/Q5_1 (and the fifth bits qh) block, ggml's order. */
INLINE void unpack4(const uint8_t *qs, uint8_t *u) {
    for (int j = 0; j < 16; j++) u[j] = qs[j] & 0xf, u[j + 16] = qs[j] >> 4;
}
INLINE void unpack5(const uint8_t *qs, const uint8_t *qhp, uint8_t *u) {
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    for (int j = 0; j < 16; j++) {
        u[j] = (uint8_t)((qs[j] & 0xf) | (((qh >> j) << 4) & 0x10));
        u[j + 16] = (uint8_t)((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10));
    }
}
/* Q4_K / Q5_K: u[0, 256) and the eight scales and mins. */
INLINE void unpack_k45(const uint8_t *b, int five, uint8_t *u, int *sc, int *mn) {
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + (five ? 48 : 16);
    for (int j = 0; j < 8; j++) scale_min_k4(j, scales, &sc[j], &mn[j]);
    for (int j = 0; j < 4; j++, ql += 32)
        for (int l = 0; l < 32; l++) {
            u[64 * j + l] = (uint8_t)((ql[l] & 0xf) + (five && (qh[l] >> (2 * j) & 1) ? 16 : 0));
            u[64 * j + 32 + l] = (uint8_t)((ql[l] >> 4) + (five && (qh[l] >> (2 * j + 1) & 1) ? 16 : 0));
        }
}
/* Q6_K: u[0, 256) (values 0..63, 32 too high) and the sixteen int8 scales. */
INLINE void unpack_q6k(const uint8_t *b, uint8_t *u, int *sc) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *s = (const int8_t *)(b + 192);
    for (int n = 0; n < 2; n++, ql += 64, qh += 32, u += 128) {
        for (int l = 0; l < 32; l++) {
            u[l] = (uint8_t)((ql[l] & 0xf) | ((qh[l] & 3) << 4));
            u[l + 32] = (uint8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4));
            u[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            u[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
    for (int g = 0; g < 16; g++) sc[g] = s[g];
}

/* ---- the integer dot of 32 unsigned weight values and 32 int8 activations ------------------------ */

#if defined(__AVX2__)
typedef __m256i vi;
#if defined(__AVX512VNNI__)
INLINE vi dot_us(vi u, vi s) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s); }
#else
INLINE vi dot_us(vi u, vi s) { return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)); }
#endif
INLINE vi load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
INLINE vi nibbles16(const uint8_t *qs) { /* 16 bytes -> 32 values: low nibbles, then high */
    const __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0xf);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
}
/* Q5_0 / Q5_1: the 32 values of a block, element e's fifth bit being bit e of qh. */
INLINE vi fives(const uint8_t *qs, const uint8_t *qhp) {
    uint32_t qh;
    memcpy(&qh, qhp, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    const vi hi = _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10));
#else /* llama.cpp's bytes_from_bits_32: byte e = 0xff where bit e is set */
    const vi shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    vi b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    b = _mm256_cmpeq_epi8(_mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
    const vi hi = _mm256_and_si256(b, _mm256_set1_epi8(0x10));
#endif
    return _mm256_or_si256(nibbles16(qs), hi);
}
INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
INLINE int hsum8i(vi v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}
#define ISUM32(u, x) dot_us(u, load32(x))
#else
INLINE int isum32(const uint8_t *u, const int8_t *x) {
    int s = 0;
    for (int i = 0; i < 32; i++) s += (int)u[i] * x[i];
    return s;
}
#endif

/* ---- one output: the dot of one weight row (nb blocks) with one rounded activation row --------- */

typedef struct {
    const int8_t *q;
    const float *d;
    const int16_t *s16;
    const float *s32;
} act_row;

INLINE int xsum32(const act_row *a, int64_t blk32) { return a->s16[2 * blk32] + a->s16[2 * blk32 + 1]; }

/* Blocks of 32: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1. */
static float dot_b32(cp_dtype dt, const uint8_t *w, const act_row *a, int64_t nb) {
    const int bytes = cp_dtype_block_bytes(dt);
    float off = 0.0f;
#if defined(__AVX2__)
    __m256 acc = _mm256_setzero_ps();
#else
    float acc = 0.0f;
#endif
    for (int64_t i = 0; i < nb; i++, w += bytes) {
        const int8_t *x = a->q + 32 * i;
        const float dx = a->d[i], dw = half(w), scale = dw * dx;
        int o = 0;
#if defined(__AVX2__)
        vi isum;
        switch (dt) {
        case CP_Q8_0: {
            const vi wq = load32(w + 2);
            isum = dot_us(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(load32(x), wq));
            break;
        }
        case CP_Q4_0: isum = ISUM32(nibbles16(w + 2), x), o = 8; break;
        case CP_Q4_1: isum = ISUM32(nibbles16(w + 4), x), off += half(w + 2) * a->s32[i]; break;
        case CP_Q5_0: isum = ISUM32(fives(w + 6, w + 2), x), o = 16; break;
        default: isum = ISUM32(fives(w + 8, w + 4), x), off += half(w + 2) * a->s32[i]; break; /* Q5_1 */
        }
        /* the offset in the integer lanes: each lane then holds Σ (u − o)·q over its four bytes, as ggml's */
        if (o) isum = _mm256_sub_epi32(isum, dot_us(_mm256_set1_epi8((char)o), load32(x)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(scale), acc);
#else
        int isum;
        uint8_t u[32];
        switch (dt) {
        case CP_Q8_0:
            isum = 0;
            for (int j = 0; j < 32; j++) isum += (int)(int8_t)w[2 + j] * x[j];
            break;
        case CP_Q4_0: unpack4(w + 2, u), isum = isum32(u, x), o = 8; break;
        case CP_Q4_1: unpack4(w + 4, u), isum = isum32(u, x), off += half(w + 2) * a->s32[i]; break;
        case CP_Q5_0: unpack5(w + 6, w + 2, u), isum = isum32(u, x), o = 16; break;
        default: unpack5(w + 8, w + 4, u), isum = isum32(u, x), off += half(w + 2) * a->s32[i]; break;
        }
        acc += scale * (float)(isum - o * xsum32(a, i));
#endif
    }
#if defined(__AVX2__)
    return hsum8(acc) + off;
#else
    return acc + off;
#endif
}

/* Blocks of 256: Q4_K, Q5_K, Q6_K. */
static float dot_k(cp_dtype dt, const uint8_t *w, const act_row *a, int64_t nb) {
    const int bytes = cp_dtype_block_bytes(dt);
    float acc = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += bytes) {
        const int8_t *x = a->q + 256 * i;
        const int16_t *s16 = a->s16 + 16 * i;
        const float dx = a->d[i];
        int sc[16], mn[8], isum = 0, ioff = 0;
        float d, dmin = 0.0f;
#if defined(__AVX2__)
        vi iacc = _mm256_setzero_si256();
        if (dt == CP_Q4_K) {
            d = half(w), dmin = half(w + 2);
            for (int j = 0; j < 8; j++) scale_min_k4(j, w + 4, &sc[j], &mn[j]);
            const uint8_t *q = w + 16;
            const vi m4 = _mm256_set1_epi8(0xf);
            for (int j = 0; j < 4; j++, q += 32) {
                const vi b = load32(q);
                const vi lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
                iacc = _mm256_add_epi32(iacc, _mm256_mullo_epi32(ISUM32(lo, x + 64 * j), _mm256_set1_epi32(sc[2 * j])));
                iacc = _mm256_add_epi32(iacc, _mm256_mullo_epi32(ISUM32(hi, x + 64 * j + 32), _mm256_set1_epi32(sc[2 * j + 1])));
            }
            for (int j = 0; j < 8; j++) ioff += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
        } else if (dt == CP_Q6_K) {
            d = half(w + 208);
            const int8_t *s = (const int8_t *)(w + 192);
            const uint8_t *ql = w, *qh = w + 128;
            const vi m4 = _mm256_set1_epi8(0xf), m3 = _mm256_set1_epi8(0x03), mc = _mm256_set1_epi8(0x0c), m30 = _mm256_set1_epi8(0x30);
            for (int n = 0; n < 2; n++, ql += 64, qh += 32, s += 8, x += 128) {
                const vi h = load32(qh), l0 = load32(ql), l1 = load32(ql + 32);
                const vi u1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
                const vi u2 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(h, mc), 2));
                const vi u3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
                const vi u4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
                const vi uu[4] = {u1, u2, u3, u4};
                for (int k = 0; k < 4; k++) {
                    const vi sv = _mm256_setr_epi32(s[2 * k], s[2 * k], s[2 * k], s[2 * k], s[2 * k + 1], s[2 * k + 1], s[2 * k + 1], s[2 * k + 1]);
                    iacc = _mm256_add_epi32(iacc, _mm256_mullo_epi32(ISUM32(uu[k], x + 32 * k), sv));
                }
            }
            s = (const int8_t *)(w + 192);
            for (int g = 0; g < 16; g++) ioff += 32 * s[g] * s16[g];
        } else { /* Q5_K */
            uint8_t u[256] __attribute__((aligned(32)));
            d = half(w), dmin = half(w + 2);
            unpack_k45(w, 1, u, sc, mn);
            for (int j = 0; j < 8; j++)
                iacc = _mm256_add_epi32(iacc, _mm256_mullo_epi32(ISUM32(load32(u + 32 * j), x + 32 * j), _mm256_set1_epi32(sc[j])));
            for (int j = 0; j < 8; j++) ioff += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
        }
        isum = hsum8i(iacc);
#else
        uint8_t u[256];
        if (dt == CP_Q6_K) {
            d = half(w + 208);
            unpack_q6k(w, u, sc);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += (int)u[16 * g + l] * x[16 * g + l];
                isum += sc[g] * s;
                ioff += 32 * sc[g] * s16[g];
            }
        } else {
            d = half(w), dmin = half(w + 2);
            unpack_k45(w, dt == CP_Q5_K, u, sc, mn);
            for (int j = 0; j < 8; j++) {
                isum += sc[j] * isum32(u + 32 * j, x + 32 * j);
                ioff += mn[j] * (s16[2 * j] + s16[2 * j + 1]);
            }
        }
#endif
        /* Q6_K: d·(Σ s·Σu·q − 32·Σ s·Σq); Q4_K/Q5_K: d·Σ s·Σu·q − dmin·Σ m·Σq */
        if (dt == CP_Q6_K) acc += dx * (d * (float)(isum - ioff));
        else acc += dx * (d * (float)isum - dmin * (float)ioff);
    }
    return acc;
}

/* ---- the entry point ---------------------------------------------------------------------------- */

static int have_vnni(void) {
#if defined(__AVX512VNNI__)
    static int v = -1;
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
    }
    return v;
#else
    return 1;
#endif
}

int CP_KERNEL(cp_qdot_forward)(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate) {
    // out (N,OC) (+)= X̃ (N,C) · Wᵀ, W quantized (OC,C), X̃ = X rounded to 8 bits per block
    const cp_dtype dt = W->dtype;
    const int64_t K = W->in, M = W->out;
    if (!cp_qdot_supports(dt) || W->layout != CP_WEIGHT_NT || N > CP_QDOT_MAX_ROWS || (K % 256 && cp_qdot_act_block(dt) == 256) ||
        K % 32)
        return -1;
#if defined(__AVX512F__)
    if (!have_vnni()) return cp_qdot_forward_avx2(out, X, W, N, accumulate);
#else
    (void)have_vnni;
#endif
    if (N == 0 || M == 0) return 0;
    const int bs = cp_qdot_act_block(dt);
    const size_t nq = (size_t)(N * K), nd = (size_t)(N * K / bs), n32 = (size_t)(N * K / 32), ns = (size_t)(N * K / 16);
    char *buf = malloc((nd + n32) * sizeof(float) + ns * sizeof(int16_t) + nq + 64);
    if (!buf) return -1;
    float *dbuf = (float *)buf, *s32 = dbuf + nd;
    int16_t *s16 = (int16_t *)(s32 + n32);
    cp_qact a = {K, bs, (int8_t *)(s16 + ns), dbuf, s16, s32};
    for (int64_t n = 0; n < N; n++) cp_qact_row(&a, n, X + n * K);
    const int64_t rb = cp_dtype_nbytes(dt, K), nb = K / cp_dtype_block_elems(dt);
    const int kq = bs == 256;
    const uint8_t *Wd = W->data;
#pragma omp parallel for schedule(static) if (N * K * M > PARALLEL_MIN)
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *w = Wd + m * rb;
        for (int64_t n = 0; n < N; n++) {
            const act_row r = {a.q + n * K, a.d + n * (K / bs), a.s16 + n * (K / 16), a.s32 + n * (K / 32)};
            const float s = kq ? dot_k(dt, w, &r, nb) : dot_b32(dt, w, &r, nb);
            float *y = out + n * M + m;
            *y = accumulate ? *y + s : s;
        }
    }
    free(buf);
    return 0;
}

/* ---- dequantization of the formats gemm_quant.c does not decode: ggml's dequantize_row_* -------- */

void CP_KERNEL(cp_qdot_dequant)(float *dst, const void *src, cp_dtype dt, int64_t n) {
    const uint8_t *b = src;
    const int64_t nb = n / cp_dtype_block_elems(dt);
    uint8_t u[256];
    int sc[16], mn[8];
    for (int64_t i = 0; i < nb; i++) {
        switch (dt) {
        case CP_Q5_0: {
            const float d = half(b);
            unpack5(b + 6, b + 2, u);
            for (int j = 0; j < 32; j++) dst[j] = (float)(u[j] - 16) * d;
            b += 22, dst += 32;
            break;
        }
        case CP_Q5_1: {
            const float d = half(b), m = half(b + 2);
            unpack5(b + 8, b + 4, u);
            for (int j = 0; j < 32; j++) dst[j] = (float)u[j] * d + m;
            b += 24, dst += 32;
            break;
        }
        case CP_Q5_K: {
            const float d = half(b), min = half(b + 2);
            unpack_k45(b, 1, u, sc, mn);
            for (int j = 0; j < 8; j++) {
                const float dj = d * (float)sc[j], mj = min * (float)mn[j];
                for (int l = 0; l < 32; l++) dst[32 * j + l] = dj * (float)u[32 * j + l] - mj;
            }
            b += 176, dst += 256;
            break;
        }
        case CP_Q6_K: {
            const float d = half(b + 208);
            unpack_q6k(b, u, sc);
            for (int j = 0; j < 256; j++) dst[j] = d * (float)sc[j / 16] * (float)(int8_t)(u[j] - 32);
            b += 210, dst += 256;
            break;
        }
        default: assert(!"not a format cp_qdot_dequant decodes"); return;
        }
    }
}
