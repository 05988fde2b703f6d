/*
 * ggml_quant.c — ggml's tensor types: their names and block geometry, and dequantization to f32.
 *
 * One function per block format, written after ggml's dequantize_row_* in ggml-quants.c with the
 * same operations in the same order (d*q + m, not fma(d, q, m)), so that every value equals
 * ggml's and the Python `gguf` package's bit for bit. The file opts out of floating-point
 * contraction for that reason (GCC's ISO C mode, which cpeft builds with, never contracts; clang
 * needs the pragma).
 */
#include "io/ggml_quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/bytes.h"
#include "core/dtype.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- the type table ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int block, size; /* elements per block, bytes per block; 0 for numbers that are no type */
} ggml_types[CP_GGML_TYPE_COUNT] = {
    [CP_GGML_F32] = {"F32", 1, 4},          [CP_GGML_F16] = {"F16", 1, 2},
    [CP_GGML_Q4_0] = {"Q4_0", 32, 18},      [CP_GGML_Q4_1] = {"Q4_1", 32, 20},
    [CP_GGML_Q5_0] = {"Q5_0", 32, 22},      [CP_GGML_Q5_1] = {"Q5_1", 32, 24},
    [CP_GGML_Q8_0] = {"Q8_0", 32, 34},      [CP_GGML_Q8_1] = {"Q8_1", 32, 36},
    [CP_GGML_Q2_K] = {"Q2_K", 256, 84},     [CP_GGML_Q3_K] = {"Q3_K", 256, 110},
    [CP_GGML_Q4_K] = {"Q4_K", 256, 144},    [CP_GGML_Q5_K] = {"Q5_K", 256, 176},
    [CP_GGML_Q6_K] = {"Q6_K", 256, 210},    [CP_GGML_Q8_K] = {"Q8_K", 256, 292},
    [CP_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66}, [CP_GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [CP_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98}, [CP_GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [CP_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},  [CP_GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [CP_GGML_IQ2_S] = {"IQ2_S", 256, 82},   [CP_GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [CP_GGML_I8] = {"I8", 1, 1},            [CP_GGML_I16] = {"I16", 1, 2},
    [CP_GGML_I32] = {"I32", 1, 4},          [CP_GGML_I64] = {"I64", 1, 8},
    [CP_GGML_F64] = {"F64", 1, 8},          [CP_GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [CP_GGML_BF16] = {"BF16", 1, 2},        [CP_GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [CP_GGML_TQ2_0] = {"TQ2_0", 256, 66},   [CP_GGML_MXFP4] = {"MXFP4", 32, 17},
    [CP_GGML_NVFP4] = {"NVFP4", 64, 36},    [CP_GGML_Q1_0] = {"Q1_0", 128, 18},
};

static int known_type(int t) { return t >= 0 && t < CP_GGML_TYPE_COUNT && ggml_types[t].block > 0; }

const char *cp_ggml_type_name(int t) {
    static _Thread_local char buf[32];
    if (known_type(t)) return ggml_types[t].name;
    snprintf(buf, sizeof buf, "type %d", t);
    return buf;
}

int cp_ggml_block_size(int t) { return known_type(t) ? ggml_types[t].block : 0; }
int cp_ggml_type_size(int t) { return known_type(t) ? ggml_types[t].size : 0; }

int cp_ggml_can_dequantize(int t) {
    switch (t) {
    case CP_GGML_F32: case CP_GGML_F16: case CP_GGML_BF16: case CP_GGML_Q4_0: case CP_GGML_Q4_1:
    case CP_GGML_Q5_0: case CP_GGML_Q5_1: case CP_GGML_Q8_0: case CP_GGML_Q2_K: case CP_GGML_Q3_K:
    case CP_GGML_Q4_K: case CP_GGML_Q5_K: case CP_GGML_Q6_K: case CP_GGML_Q8_K:
        return 1;
    default:
        return 0;
    }
}

int cp_ggml_is_quantized(int t) { return known_type(t) && ggml_types[t].block > 1; }

/* ---- dequantization ------------------------------------------------------------------------
 * Block layouts (ggml-common.h), all little-endian, `half` = IEEE f16:
 *   Q4_0 {half d; u8 qs[16]}              x = ((qs & 15) - 8) * d; the high nibbles give 16..31
 *   Q4_1 {half d, m; u8 qs[16]}           x = (qs & 15) * d + m
 *   Q5_0 {half d; u8 qh[4]; u8 qs[16]}    5th bit from qh (bit j for element j), x = (q - 16) * d
 *   Q5_1 {half d, m; u8 qh[4]; u8 qs[16]} x = q * d + m
 *   Q8_0 {half d; i8 qs[32]}              x = qs * d
 *   K-quants, 256 elements per super-block:
 *   Q2_K {u8 scales[16]; u8 qs[64]; half d, dmin}
 *   Q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}
 *   Q4_K {half d, dmin; u8 scales[12]; u8 qs[128]}
 *   Q5_K {half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}
 *   Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}
 *   Q8_K {float d; i8 qs[256]; i16 bsums[16]}
 */

static float half(const uint8_t *p) { return cp_f16_to_f32(cp_le16(p)); }

static void deq_q4_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 18, y += 32) {
        const float d = half(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 20, y += 32) {
        const float d = half(b), m = half(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[4 + j] & 0x0f) * d + m;
            y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
        }
    }
}

static void deq_q5_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 22, y += 32) {
        const float d = half(b);
        const uint32_t qh = cp_le32(b + 2);
        const uint8_t *qs = b + 6;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)(((qs[j] & 0x0f) | xh0) - 16) * d;
            y[j + 16] = (float)(((qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}

static void deq_q5_1(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 24, y += 32) {
        const float d = half(b), m = half(b + 2);
        const uint32_t qh = cp_le32(b + 4);
        const uint8_t *qs = b + 8;
        for (int j = 0; j < 16; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> j) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)((qs[j] & 0x0f) | xh0) * d + m;
            y[j + 16] = (float)((qs[j] >> 4) | xh1) * d + m;
        }
    }
}

static void deq_q8_0(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 34, y += 32) {
        const float d = half(b);
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

static void deq_q2_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 84) {
        const uint8_t *scales = b, *q = b + 16;
        const float d = half(b + 80), min = half(b + 82);
        int is = 0;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                uint8_t sc = scales[is++];
                float dl = d * (float)(sc & 0xf), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l] >> shift) & 3) - ml;
                sc = scales[is++];
                dl = d * (float)(sc & 0xf);
                ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16] >> shift) & 3) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

static void deq_q3_k(const uint8_t *b, float *y, int64_t nb) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    for (int64_t i = 0; i < nb; i++, b += 110) {
        const uint8_t *hm = b, *q = b + 32;
        const float d_all = half(b + 108);
        uint32_t aux[4];
        int8_t scales[16];
        aux[0] = cp_le32(b + 96);
        aux[1] = cp_le32(b + 100);
        aux[2] = cp_le32(b + 104);
        const uint32_t tmp = aux[2];
        aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
        aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
        aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
        aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
        for (int k = 0; k < 16; k++) scales[k] = (int8_t)(uint8_t)(aux[k / 4] >> (8 * (k % 4)));
        int is = 0;
        uint8_t m = 1;
        for (int n = 0; n < 256; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

/* The 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K / Q5_K. */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void deq_q4_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 144) {
        const float d = half(b), min = half(b + 2);
        const uint8_t *scales = b + 4, *q = b + 16;
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < 256; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void deq_q5_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 176) {
        const float d = half(b), min = half(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
        int is = 0;
        uint8_t sc, m, u1 = 1, u2 = 2;
        for (int j = 0; j < 256; j += 64) {
            scale_min_k4(is + 0, scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = min * (float)m;
            scale_min_k4(is + 1, scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = min * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

static void deq_q6_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = half(b + 208);
        for (int n = 0; n < 256; n += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * (float)sc[is + 0] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

static void deq_q8_k(const uint8_t *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, b += 292, y += 256) {
        const float d = cp_le_f32(b);
        for (int j = 0; j < 256; j++) y[j] = d * (float)(int8_t)b[4 + j];
    }
}

cp_status cp_ggml_dequantize_row(int t, const void *src, float *dst, int64_t n) {
    const uint8_t *b = src;
    if (!cp_ggml_can_dequantize(t)) return cp_error("unsupported tensor type %s", cp_ggml_type_name(t));
    const int64_t nb = n / ggml_types[t].block;
    switch (t) {
    case CP_GGML_F32: memcpy(dst, src, (size_t)n * 4); break;
    case CP_GGML_F16: for (int64_t i = 0; i < n; i++) dst[i] = cp_f16_to_f32(cp_le16(b + 2 * i)); break;
    case CP_GGML_BF16: for (int64_t i = 0; i < n; i++) dst[i] = cp_bf16_to_f32(cp_le16(b + 2 * i)); break;
    case CP_GGML_Q4_0: deq_q4_0(b, dst, nb); break;
    case CP_GGML_Q4_1: deq_q4_1(b, dst, nb); break;
    case CP_GGML_Q5_0: deq_q5_0(b, dst, nb); break;
    case CP_GGML_Q5_1: deq_q5_1(b, dst, nb); break;
    case CP_GGML_Q8_0: deq_q8_0(b, dst, nb); break;
    case CP_GGML_Q2_K: deq_q2_k(b, dst, nb); break;
    case CP_GGML_Q3_K: deq_q3_k(b, dst, nb); break;
    case CP_GGML_Q4_K: deq_q4_k(b, dst, nb); break;
    case CP_GGML_Q5_K: deq_q5_k(b, dst, nb); break;
    case CP_GGML_Q6_K: deq_q6_k(b, dst, nb); break;
    case CP_GGML_Q8_K: deq_q8_k(b, dst, nb); break;
    }
    return CP_OK;
}

int cp_ggml_type_of(cp_dtype dt) {
    switch (dt) {
    case CP_F32: return CP_GGML_F32;
    case CP_F16: return CP_GGML_F16;
    case CP_BF16: return CP_GGML_BF16;
    case CP_Q8_0: return CP_GGML_Q8_0;
    case CP_Q4_0: return CP_GGML_Q4_0;
    case CP_Q4_1: return CP_GGML_Q4_1;
    case CP_Q4_K: return CP_GGML_Q4_K;
    case CP_Q6_K: return CP_GGML_Q6_K;
    case CP_Q5_0: return CP_GGML_Q5_0;
    case CP_Q5_1: return CP_GGML_Q5_1;
    case CP_Q5_K: return CP_GGML_Q5_K;
    default: return -1;
    }
}

/* ---- quantization: ggml's reference quantizers (quantize_row_*_ref in ggml-quants.c) ---------- */

static void put_half(uint8_t *p, float f) {
    const uint16_t h = cp_f32_to_f16(f); /* ggml's GGML_FP32_TO_FP16 rounds to nearest even too */
    memcpy(p, &h, 2);
}

static float fabs_f(float x) { return x < 0 ? -x : x; }

/* roundf: halves away from zero */
static float round_away(float x) {
    const float a = fabs_f(x);
    float r = (float)(int64_t)a;
    if (a - r >= 0.5f) r += 1.0f;
    return x < 0 ? -r : r;
}

/* ggml's nearest_int: rounds halves to even through the f32 mantissa (|x| < 2^22) */
static int nearest_int(float x) {
    const float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static void quant_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) if (fabs_f(x[j]) > amax) amax = fabs_f(x[j]);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_half(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)round_away(x[j] * id);
    }
}

static void quant_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 18) {
        float amax = 0.0f, max = 0.0f; /* the value of largest magnitude, the first of ties */
        for (int j = 0; j < 32; j++)
            if (amax < fabs_f(x[j])) { amax = fabs_f(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_half(b, d);
        for (int j = 0; j < 16; j++) {
            const int q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[16 + j] * id + 8.5f);
            b[2 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

static void quant_q4_1(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32, b += 20) {
        float min = x[0], max = x[0];
        for (int j = 1; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put_half(b, d);
        put_half(b + 2, min);
        for (int j = 0; j < 16; j++) {
            const int q0 = (int8_t)((x[j] - min) * id + 0.5f), q1 = (int8_t)((x[16 + j] - min) * id + 0.5f);
            b[4 + j] = (uint8_t)((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
        }
    }
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ggml's make_qkx2_quants: the scale and (negated) min of n values at levels 0..nmax that minimise
 * the weighted squared error, searching nstep + 1 scales around the plain one. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min, uint8_t *Laux,
                              float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * (float)L[i] + min - x[i];
        best += w[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * (float)Laux[i] + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static void quant_q4_k(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256, b += 144) {
        uint8_t L[256], Laux[32], *sc = b + 4, *q = b + 16;
        float w[32], mins[8], scales[8], max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            const float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++) w[l] = av_x + fabs_f(x[32 * j + l]);
            scales[j] = make_qkx2_quants(32, 15, x + 32 * j, w, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        memset(sc, 0, 12);
        for (int j = 0; j < 8; j++) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]), lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
                sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sc[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        put_half(b, max_scale / 63.f);
        put_half(b + 2, max_min / 63.f);
        for (int j = 0; j < 8; j++) {
            uint8_t s, m;
            scale_min_k4(j, sc, &s, &m);
            const float d = half(b) * (float)s;
            if (d == 0.0f) continue;
            const float dm = half(b + 2) * (float)m;
            for (int l = 0; l < 32; l++) L[32 * j + l] = (uint8_t)clamp_int(nearest_int((x[32 * j + l] + dm) / d), 0, 15);
        }
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

cp_status cp_ggml_quantize_row(int t, const float *src, void *dst, int64_t n) {
    const int be = cp_ggml_block_size(t);
    switch (t) {
    case CP_GGML_Q8_0: case CP_GGML_Q4_0: case CP_GGML_Q4_1: case CP_GGML_Q4_K: break;
    default: return cp_error("quantizing to %s is not supported (Q8_0, Q4_0, Q4_1, Q4_K)", cp_ggml_type_name(t));
    }
    if (n % be) return cp_error("quantizing %lld values to %s: not a multiple of its block of %d", (long long)n,
                                cp_ggml_type_name(t), be);
    if (t == CP_GGML_Q8_0) quant_q8_0(src, dst, n / be);
    else if (t == CP_GGML_Q4_0) quant_q4_0(src, dst, n / be);
    else if (t == CP_GGML_Q4_1) quant_q4_1(src, dst, n / be);
    else quant_q4_k(src, dst, n / be);
    return CP_OK;
}
