/*
 * layernorm.c — LayerNorm forward: biased variance, eps inside the square root, multiply by the
 * reciprocal square root (as PyTorch does); weight and bias when the module has them
 * (elementwise_affine=False: none).
 */
#include "nn/layernorm.h"
#include "core/profile.h"

#include <math.h>

void cp_layernorm_forward(const cp_module *m, float *out, float *mean, float *rstd, const float *in, int64_t N) {
    cp_prof_push(CP_PROF_NORM);
    const int64_t C = m->in_features;
    const float *w = m->weight ? m->weight->data : NULL, *b = m->bias ? m->bias->data : NULL; /* NULL: not affine */
    const double eps = m->eps;
#pragma omp parallel for schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        const float *x = in + n * C;
        float *y = out + n * C;
        double sum = 0;
        for (int64_t c = 0; c < C; c++) sum += x[c];
        double mu = sum / (double)C;
        double var = 0;
        for (int64_t c = 0; c < C; c++) { double d = x[c] - mu; var += d * d; }
        var /= (double)C;
        float r = (float)(1.0 / sqrt(var + eps));
        float muf = (float)mu;
        if (w) for (int64_t c = 0; c < C; c++) y[c] = (x[c] - muf) * r * w[c] + (b ? b[c] : 0.0f);
        else for (int64_t c = 0; c < C; c++) y[c] = (x[c] - muf) * r;
        if (mean) mean[n] = muf;
        if (rstd) rstd[n] = r;
    }
    cp_prof_pop();
}

void cp_layernorm_backward(const cp_module *m, float *dx, const float *dy, const float *in, const float *mean,
                           const float *rstd, int64_t N) {
    cp_prof_push(CP_PROF_NORM);
    const int64_t C = m->in_features;
    const float *w = m->weight ? m->weight->data : NULL; /* NULL: not affine, γ = 1 */
    float *dw = m->weight ? m->weight->grad : NULL, *db = m->bias ? m->bias->grad : NULL;
    if (dx) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t n = 0; n < N; n++) {
            const float *x = in + n * C, *g_out = dy + n * C;
            const float mu = mean[n], r = rstd[n];
            double sum_g = 0, sum_gx = 0;
            for (int64_t c = 0; c < C; c++) {
                float g = w ? g_out[c] * w[c] : g_out[c];
                sum_g += g;
                sum_gx += (double)g * ((x[c] - mu) * r);
            }
            const float mg = (float)(sum_g / (double)C), mgx = (float)(sum_gx / (double)C);
            float *o = dx + n * C;
            for (int64_t c = 0; c < C; c++) {
                float xhat = (x[c] - mu) * r;
                o[c] += r * ((w ? g_out[c] * w[c] : g_out[c]) - mg - xhat * mgx);
            }
        }
    }
    if (dw || db) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t c = 0; c < C; c++) {
            float sw = 0.0f, sb = 0.0f;
            for (int64_t n = 0; n < N; n++) {
                float g = dy[n * C + c];
                sw += g * ((in[n * C + c] - mean[n]) * rstd[n]);
                sb += g;
            }
            if (dw) dw[c] += sw;
            if (db) db[c] += sb;
        }
    }
    cp_prof_pop();
}
