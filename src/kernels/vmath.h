/*
 * vmath.h — branch-free float math that the compiler vectorises, for the elementwise hot loops
 * (kernels/vector.c, built per instruction set): glibc's expf/tanhf are scalar calls and cost as
 * much as a GEMM layer.
 *
 * cp_expf: Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, and Cephes' degree-6 polynomial
 * for e^r; relative error below 2e-7 over [-87, 88] (checked against exp() in test_kernels.c).
 * Inputs are clamped to that range, so overflow saturates at ~3.4e38 instead of inf.
 * n is rounded to the nearest integer by adding and subtracting 1.5·2^23 (exact for |n| < 2^22, ties
 * to even as rintf does): plain float adds, which vectorise even on SSE2, where rintf has no vector
 * instruction (roundps is SSE4.1). GCC does not fold the pair away without -ffast-math.
 * The build passes -fno-trapping-math -fno-math-errno, without which GCC will not if-convert the
 * clamps; we never rely on floating-point exceptions or errno from libm.
 */
#ifndef CP_KERNELS_VMATH_H
#define CP_KERNELS_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float cp_expf(float x) {
    float xc = x != x ? 0.0f : x; /* NaN: computed on 0 (no undefined int conversion), returned as NaN */
    xc = xc < -87.33654f ? -87.33654f : xc;
    xc = xc > 88.72283f ? 88.72283f : xc;
    const float round = 12582912.0f; /* 1.5·2^23 */
    float n = (xc * 1.44269504088896341f + round) - round;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t i; float f; } scale = {.i = (uint32_t)((int32_t)n + 127) << 23};
    return x != x ? x : p * scale.f;
}

/* 1 / (1 + e^-x) */
static inline float cp_sigmoidf(float x) { return 1.0f / (1.0f + cp_expf(-x)); }

/* The standard normal CDF Φ(x) = 0.5·(1 + erf(x/√2)) = 0.5·erfc(−x/√2), branch-free. erfc(z) for
 * z ≥ 0 is t·exp(−z² + P(t)), t = 1/(1 + z/2), P of degree 9 (the Chebyshev fit in Press et al.,
 * Numerical Recipes §6.2, relative error below 1.2e-7 for every z ≥ 0). For x < 0, Φ(x) =
 * 0.5·erfc(|x|/√2) directly, so the left tail keeps its relative accuracy (1 + erff(x/√2) in float
 * loses most digits there); for x ≥ 0, Φ(x) = 1 − 0.5·erfc(x/√2). The float rounding of −z² then
 * bounds the relative error: 2e-6 at x = −4.5. test_kernels.c checks x·Φ(x) (exact GELU) against
 * erfc() in double. */
static inline float cp_normal_cdf(float x) {
    float z = (x < 0 ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    float half_erfc = 0.5f * t * cp_expf(-z * z + p);
    return x < 0 ? half_erfc : 1.0f - half_erfc;
}

#endif
