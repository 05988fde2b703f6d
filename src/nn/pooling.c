/*
 * pooling.c — sequence pooling and L2 normalisation; see pooling.h. The mean sums in f32 as torch
 * does; the norm in double.
 */
#include "nn/pooling.h"

#include <math.h>
#include <string.h>

/* The position `last` pools in row b: the last one whose mask is 1, else 0. */
static int64_t last_real(const int64_t *mask, int64_t b, int64_t T) {
    if (!mask) return T - 1;
    for (int64_t t = T - 1; t >= 0; t--)
        if (mask[b * T + t]) return t;
    return 0;
}

void cp_pool_sequences(float *out, const float *h, const int64_t *mask, int64_t B, int64_t T, int64_t C,
                       cp_pooling_mode mode) {
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * C;
        if (mode == CP_POOLING_CLS || mode == CP_POOLING_LAST) {
            const int64_t t = mode == CP_POOLING_CLS ? 0 : last_real(mask, b, T);
            memcpy(o, h + (b * T + t) * C, (size_t)C * sizeof *o);
            continue;
        }
        // mean: Σ_t h[b,t]·mask[b,t] / max(Σ_t mask[b,t], 1e-9)
        double count = 0;
        for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
        for (int64_t t = 0; t < T; t++) {
            const double w = mask ? (double)mask[b * T + t] : 1.0;
            if (w == 0) continue;
            count += w;
            const float *x = h + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) o[c] += (float)(w * x[c]);
        }
        const double d = count > 1e-9 ? count : 1e-9;
        for (int64_t c = 0; c < C; c++) o[c] = (float)(o[c] / d);
    }
}

void cp_l2_normalize_rows(float *x, int64_t n, int64_t C) {
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * C;
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += (double)r[c] * r[c];
        const double norm = sqrt(s) > 1e-12 ? sqrt(s) : 1e-12;
        for (int64_t c = 0; c < C; c++) r[c] = (float)(r[c] / norm);
    }
}
