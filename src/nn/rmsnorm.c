/*
 * rmsnorm.c — RMSNorm forward and backward; see rmsnorm.h. Sums in double, as for LayerNorm, to
 * stay within an ulp of PyTorch's f32 result.
 */
#include "nn/rmsnorm.h"
#include "core/profile.h"

#include <math.h>

void cp_rmsnorm_forward(const cp_module *m, float *out, float *rstd, const float *in, int64_t N) {
    cp_prof_push(CP_PROF_NORM);
    const int64_t C = m->in_features;
    const float *w = m->weight->data;
    const float off = m->unit_offset ? 1.0f : 0.0f;
    const double eps = m->eps;
#pragma omp parallel for schedule(static) if (N * C > 32768)
    for (int64_t n = 0; n < N; n++) {
        const float *x = in + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)x[c] * x[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        float *y = out + n * C;
        for (int64_t c = 0; c < C; c++) y[c] = (off + w[c]) * (x[c] * r);
        if (rstd) rstd[n] = r;
    }
    cp_prof_pop();
}

void cp_rmsnorm_backward(const cp_module *m, float *dx, const float *dy, const float *in, const float *rstd, int64_t N) {
    cp_prof_push(CP_PROF_NORM);
    const int64_t C = m->in_features;
    const float *w = m->weight->data;
    float *dw = m->weight->grad;
    const float off = m->unit_offset ? 1.0f : 0.0f;
    if (dx) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t n = 0; n < N; n++) {
            const float *x = in + n * C, *g_out = dy + n * C;
            const float r = rstd[n];
            double sgx = 0;
            for (int64_t c = 0; c < C; c++) sgx += (double)(g_out[c] * (off + w[c])) * x[c];
            const float k = (float)(sgx / (double)C) * r * r * r;
            float *o = dx + n * C;
            for (int64_t c = 0; c < C; c++) o[c] += r * g_out[c] * (off + w[c]) - x[c] * k;
        }
    }
    if (dw) {
#pragma omp parallel for schedule(static) if (N * C > 32768)
        for (int64_t c = 0; c < C; c++) {
            float s = 0.0f;
            for (int64_t n = 0; n < N; n++) s += dy[n * C + c] * in[n * C + c] * rstd[n];
            dw[c] += s;
        }
    }
    cp_prof_pop();
}
