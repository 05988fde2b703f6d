/*
 * dtype.c — dtype names, sizes, and f16/bf16 <-> f32 conversion (round-to-nearest-even, NaN kept
 * quiet), matching what torch does for .half() / .bfloat16() / .float().
 */
#include "core/dtype.h"

#include <string.h>

static const char *const dtype_names[CP_DTYPE_COUNT] = {
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
    "F64", "I64", "U64"};

static const int dtype_bits[CP_DTYPE_COUNT] = {8, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16, 16,
                                               32, 32, 32, 64, 64, 64, 64};

int cp_dtype_from_name(const char *name) {
    for (int i = 0; i < CP_DTYPE_COUNT; i++)
        if (strcmp(name, dtype_names[i]) == 0) return i;
    return -1;
}

/* ggml's block formats: name, elements and bytes per block (ggml-common.h). */
static const struct { const char *name; int elems, bytes; } quant_types[] = {
    [CP_Q8_0 - CP_Q8_0] = {"Q8_0", 32, 34},
    [CP_Q4_0 - CP_Q8_0] = {"Q4_0", 32, 18},
    [CP_Q4_1 - CP_Q8_0] = {"Q4_1", 32, 20},
    [CP_Q4_K - CP_Q8_0] = {"Q4_K", 256, 144},
    [CP_Q6_K - CP_Q8_0] = {"Q6_K", 256, 210},
    [CP_Q5_0 - CP_Q8_0] = {"Q5_0", 32, 22},
    [CP_Q5_1 - CP_Q8_0] = {"Q5_1", 32, 24},
    [CP_Q5_K - CP_Q8_0] = {"Q5_K", 256, 176},
};

int cp_dtype_is_quantized(cp_dtype dt) { return dt >= CP_Q8_0 && dt < CP_DTYPE_QUANT_END; }

const char *cp_dtype_name(cp_dtype dt) {
    if (cp_dtype_is_quantized(dt)) return quant_types[dt - CP_Q8_0].name;
    return (dt >= 0 && dt < CP_DTYPE_COUNT) ? dtype_names[dt] : "?";
}

int cp_dtype_bits(cp_dtype dt) { return (dt >= 0 && dt < CP_DTYPE_COUNT) ? dtype_bits[dt] : 0; }

int cp_dtype_block_elems(cp_dtype dt) { return cp_dtype_is_quantized(dt) ? quant_types[dt - CP_Q8_0].elems : 1; }
int cp_dtype_block_bytes(cp_dtype dt) {
    return cp_dtype_is_quantized(dt) ? quant_types[dt - CP_Q8_0].bytes : cp_dtype_bits(dt) / 8;
}

int64_t cp_dtype_nbytes(cp_dtype dt, int64_t numel) {
    if (cp_dtype_is_quantized(dt)) {
        const int64_t be = cp_dtype_block_elems(dt);
        if (numel < 0 || numel % be) return -1;
        return numel / be * cp_dtype_block_bytes(dt);
    }
    int bits = cp_dtype_bits(dt);
    if (bits == 0 || numel < 0) return -1;
    if (numel > INT64_MAX / bits) return -1;
    int64_t total_bits = numel * bits;
    if (total_bits % 8) return -1;
    return total_bits / 8;
}

int cp_dtype_is_loadable_float(cp_dtype dt) { return dt == CP_F32 || dt == CP_F16 || dt == CP_BF16; }

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float cp_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t cp_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float cp_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        if (mant == 0) return bits_f32(sign);
        /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t cp_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;             /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;            /* overflow (>= 65520) -> inf */
    if (a < 0x38800000u) {                                   /* f16 subnormal or zero */
        if (a < 0x33000000u) return sign;                    /* < 2^-25 rounds to 0 */
        uint32_t exp = a >> 23;
        uint32_t mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* value / 2^-24 = mant * 2^(exp - 126) */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);
    return sign | (uint16_t)((rounded - 0x38000000u) >> 13);
}

void cp_convert_to_f32(float *dst, const void *src, cp_dtype src_dtype, size_t n) {
    const unsigned char *s = src;
    if (src_dtype == CP_F32) { memcpy(dst, src, n * 4); return; }
    for (size_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, s + 2 * i, 2);
        dst[i] = src_dtype == CP_BF16 ? cp_bf16_to_f32(v) : cp_f16_to_f32(v);
    }
}

void cp_convert_from_f32(void *dst, cp_dtype dst_dtype, const float *src, size_t n) {
    unsigned char *d = dst;
    if (dst_dtype == CP_F32) { memcpy(dst, src, n * 4); return; }
    for (size_t i = 0; i < n; i++) {
        uint16_t v = dst_dtype == CP_BF16 ? cp_f32_to_bf16(src[i]) : cp_f32_to_f16(src[i]);
        memcpy(d + 2 * i, &v, 2);
    }
}
