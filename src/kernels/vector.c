/*
 * vector.c — the elementwise and row kernels of vector.h, compiled once per instruction set
 * (CP_KERNEL names each copy: cp_gelu_tanh_avx512, ...; see kernels/isa.h and dispatch.h).
 *
 * Plain loops over cp_expf that GCC vectorises at the variant's width; `omp simd` marks the
 * reductions it may reorder. Forward and backward of each activation sit side by side; the formulas
 * follow transformers' activations.py (reference/architectures.md §0.3, §13).
 */
#include "kernels/isa.h"
#include "kernels/vmath.h"

#include <math.h>

CP_DECLARE_KERNELS_OF(CP_ISA)

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_COEF 0.044715f

void CP_KERNEL(cp_gelu_tanh)(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v * cp_sigmoidf(2.0f * SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v));
    }
}

void CP_KERNEL(cp_gelu_tanh_backward)(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        /* with s = sigmoid(2u) = 0.5(1 + tanh u): d/dx = s + 2x·s(1-s)·√(2/π)(1 + 3·0.044715x²) */
        float v = x[i];
        float s = cp_sigmoidf(2.0f * SQRT_2_OVER_PI * (v + GELU_COEF * v * v * v));
        float d = s + 2.0f * v * s * (1.0f - s) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_COEF * v * v);
        dx[i] = dy[i] * d;
    }
}

void CP_KERNEL(cp_gelu_erf)(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * cp_normal_cdf(x[i]);
}

void CP_KERNEL(cp_gelu_erf_backward)(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        /* d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π) */
        float v = x[i];
        dx[i] = dy[i] * (cp_normal_cdf(v) + v * cp_expf(-0.5f * v * v) * 0.3989422804014327f);
    }
}

void CP_KERNEL(cp_silu)(float *y, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * cp_sigmoidf(x[i]);
}

void CP_KERNEL(cp_silu_backward)(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float s = cp_sigmoidf(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

int64_t CP_KERNEL(cp_softmax_row)(float *r, const int64_t *keep, int64_t n, float scale) {
    /* Without a mask the loops must not read keep at all: vectorised `!keep || keep[j]` becomes a
     * masked load with an all-zero mask from address NULL + j, which AMD cores complete through a
     * fault-suppression assist costing more than the whole row (it was 15% of a MiniLM training step). */
    float max = -INFINITY, sum = 0.0f;
    if (!keep) {
#pragma omp simd reduction(max : max)
        for (int64_t j = 0; j < n; j++) {
            float v = r[j] * scale;
            r[j] = v;
            max = v > max ? v : max;
        }
        if (!n) return 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) {
            float e = cp_expf(r[j] - max);
            r[j] = e;
            sum += e;
        }
#pragma omp simd
        for (int64_t j = 0; j < n; j++) r[j] /= sum;
        return n;
    }
    int64_t visible = 0;
#pragma omp simd reduction(max : max) reduction(+ : visible)
    for (int64_t j = 0; j < n; j++) {
        float v = r[j] * scale;
        r[j] = v;
        int k = keep[j] != 0;
        max = k && v > max ? v : max;
        visible += k;
    }
    if (!visible) return 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        /* a select, not exp · 0: a hidden key may score far above the visible ones (its exp is then
         * inf, and inf · 0 is NaN) */
        float e = keep[j] != 0 ? cp_expf(r[j] - max) : 0.0f;
        r[j] = e;
        sum += e;
    }
#pragma omp simd
    for (int64_t j = 0; j < n; j++) r[j] /= sum;
    return visible;
}

void CP_KERNEL(cp_add_inplace)(float *x, const float *y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

float CP_KERNEL(cp_row_max)(const float *x, int64_t n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

double CP_KERNEL(cp_exp_sum)(const float *x, int64_t n, float shift) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) s += (double)cp_expf(x[j] - shift);
    return s;
}

void CP_KERNEL(cp_exp_scale)(float *x, int64_t n, float shift, float scale) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) x[j] = cp_expf(x[j] - shift) * scale;
}

/* lowbias32 (Chris Wellons' hash-prospector, 2022): two multiply-xorshift rounds, a bijection of
 * 32-bit words with low bias; vectorises with 32-bit lanes (pmulld under SSE4.1 and up). */
static inline uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x21f0aaadu;
    x ^= x >> 15;
    x *= 0x735a2d97u;
    x ^= x >> 15;
    return x;
}

void CP_KERNEL(cp_dropout_row)(float *y, const float *x, int64_t n, uint64_t key, int64_t j0, uint32_t threshold, float scale) {
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32), c0 = (uint32_t)j0;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        const uint32_t u = hash32(hash32((c0 + (uint32_t)j) ^ k0) + k1);
        y[j] = x[j] * (u >= threshold ? scale : 0.0f);
    }
}
