/*
 * rope.c — rotary embeddings, forward (rotation) and backward (the transpose rotation), and the
 * inverse-frequency schedules of transformers' ROPE_INIT_FUNCTIONS. Frequencies are computed in
 * f32 as transformers computes them (base ** (arange(0, d, 2) / d) in f32, then the reciprocal).
 */
#include "nn/rope.h"

#include <math.h>
#include <string.h>

int cp_rope_type_from_name(const char *name) {
    if (!name || !strcmp(name, "default")) return CP_ROPE_DEFAULT;
    if (!strcmp(name, "linear")) return CP_ROPE_LINEAR;
    if (!strcmp(name, "dynamic")) return CP_ROPE_DYNAMIC;
    if (!strcmp(name, "llama3")) return CP_ROPE_LLAMA3;
    return -1;
}

static void inv_freqs(const cp_rope *r, int64_t seq_len, float *inv) {
    const int64_t half = r->dim / 2;
    double base = r->theta;
    if (r->type == CP_ROPE_DYNAMIC && seq_len > r->max_positions)
        base = base * pow(r->factor * (double)seq_len / (double)r->max_positions - (r->factor - 1.0),
                          (double)r->dim / (double)(r->dim - 2));
    for (int64_t k = 0; k < half; k++) {
        float e = (float)(2 * k) / (float)r->dim;
        inv[k] = 1.0f / powf((float)base, e);
    }
    if (r->type == CP_ROPE_LINEAR)
        for (int64_t k = 0; k < half; k++) inv[k] /= (float)r->factor;
    if (r->type == CP_ROPE_LLAMA3) {
        const double old = (double)r->original_max_positions;
        const double low_wavelen = old / r->low_freq_factor, high_wavelen = old / r->high_freq_factor;
        for (int64_t k = 0; k < half; k++) {
            double f = inv[k], wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) f = f / r->factor;
            else if (wavelen >= high_wavelen) {
                double smooth = (old / wavelen - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (1 - smooth) * f / r->factor + smooth * f;
            }
            inv[k] = (float)f;
        }
    }
}

void cp_rope_tables(const cp_rope *r, const int64_t *pos, int64_t N, int64_t seq_len, float *cos_t, float *sin_t) {
    const int64_t half = r->dim / 2;
    float inv[1024];
    inv_freqs(r, seq_len, inv);
#pragma omp parallel for schedule(static) if (N * half > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < half; k++) {
            float angle = (float)pos[n] * inv[k];
            cos_t[n * half + k] = cosf(angle);
            sin_t[n * half + k] = sinf(angle);
        }
}

/* The pair (i0, i1) of dims that the k-th frequency turns: halves (k, k + rot/2) or interleaved (2k, 2k+1). */
static inline void pair(int64_t k, int64_t half, int interleaved, int64_t *i0, int64_t *i1) {
    *i0 = interleaved ? 2 * k : k;
    *i1 = interleaved ? 2 * k + 1 : k + half;
}

void cp_rope_forward_partial(float *x, int64_t N, int64_t NH, int64_t hs, int64_t stride, int64_t rot, int interleaved,
                             const float *cos_t, const float *sin_t) {
    const int64_t half = rot / 2;
#pragma omp parallel for schedule(static) if (N * NH * rot > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++) {
            float *v = x + n * stride + h * hs;
            const float *c = cos_t + n * half, *s = sin_t + n * half;
            for (int64_t k = 0; k < half; k++) {
                int64_t i0, i1;
                pair(k, half, interleaved, &i0, &i1);
                float a = v[i0], b = v[i1];
                v[i0] = a * c[k] - b * s[k];
                v[i1] = b * c[k] + a * s[k];
            }
        }
}

void cp_rope_backward_partial(float *dx, int64_t N, int64_t NH, int64_t hs, int64_t stride, int64_t rot, int interleaved,
                              const float *cos_t, const float *sin_t) {
    const int64_t half = rot / 2;
#pragma omp parallel for schedule(static) if (N * NH * rot > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++) {
            float *v = dx + n * stride + h * hs;
            const float *c = cos_t + n * half, *s = sin_t + n * half;
            // in the forward pass this was [a', b'] = [a·c − b·s, b·c + a·s], so:
            for (int64_t k = 0; k < half; k++) {
                int64_t i0, i1;
                pair(k, half, interleaved, &i0, &i1);
                float da = v[i0], db = v[i1];
                v[i0] = da * c[k] + db * s[k];
                v[i1] = db * c[k] - da * s[k];
            }
        }
}

void cp_rope_forward(float *x, int64_t N, int64_t NH, int64_t hs, int64_t stride, const float *cos_t, const float *sin_t) {
    cp_rope_forward_partial(x, N, NH, hs, stride, hs, 0, cos_t, sin_t);
}

void cp_rope_backward(float *dx, int64_t N, int64_t NH, int64_t hs, int64_t stride, const float *cos_t, const float *sin_t) {
    cp_rope_backward_partial(dx, N, NH, hs, stride, hs, 0, cos_t, sin_t);
}
