/*
 * linear.c — Linear / Conv1D forward through BLAS (cblas_sgemm).
 *
 * The bias is written into the output rows first and the GEMM accumulates onto it (beta = 1),
 * which is what torch.addmm does for Conv1D and saves a pass for Linear. Products with only a few
 * rows (a decoding step: one token per sequence) go to the skinny kernels instead, which read each
 * weight once where sgemm would first pack all of it (kernels/skinny.h).
 */
#include "nn/linear.h"
#include "kernels/skinny.h"

#include <cblas.h>
#include <string.h>

/* Row counts up to which the skinny kernels beat sgemm (measured on GPT-Neo-125M / GPT-2 shapes). */
#define SKINNY_NT_ROWS CP_SKINNY_MAX_ROWS
#define SKINNY_NN_ROWS 2

void cp_matmul_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (N,OC) = in (N,C) @ W(OC,C)^T
    if (N <= SKINNY_NT_ROWS) { cp_skinny_nt(out, in, W, N, C, OC, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, in, (int)C, W, (int)C,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}

void cp_matmul_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (N,OC) = in (N,C) @ W(C,OC)
    if (N <= SKINNY_NN_ROWS) { cp_skinny_nn(out, in, W, N, C, OC, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)OC, (int)C, 1.0f, in, (int)C, W, (int)OC,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}

void cp_linear_forward(const cp_module *m, float *out, const float *in, int64_t N) {
    const int64_t C = m->in_features, OC = m->out_features;
    const float *bias = m->bias ? m->bias->data : NULL;
    if (bias) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof *out);
    }
    if (m->kind == CP_MOD_CONV1D) cp_matmul_nn(out, in, m->weight->data, N, C, OC, bias != NULL);
    else cp_matmul_nt(out, in, m->weight->data, N, C, OC, bias != NULL);
}

void cp_matmul_tn(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (C,OC) = a (N,C)ᵀ @ b (N,OC)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)OC, (int)N, 1.0f, a, (int)C, b, (int)OC,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}

void cp_sum_rows(float *db, const float *dY, int64_t N, int64_t OC) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
    for (int64_t o = 0; o < OC; o++) {
        float s = 0.0f;
        for (int64_t n = 0; n < N; n++) s += dY[n * OC + o];
        db[o] += s;
    }
}

void cp_linear_backward(const cp_module *m, float *dX, const float *dY, const float *X, int64_t N) {
    const int64_t C = m->in_features, OC = m->out_features;
    const float *W = m->weight->data;
    // in the forward pass this was Y = X·Wᵀ + b (Linear) or Y = X·W + b (Conv1D), so:
    if (dX) {
        if (m->kind == CP_MOD_CONV1D)  // dX (N,C) += dY (N,OC) · Wᵀ with W (C,OC)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)C, (int)OC, 1.0f, dY, (int)OC, W, (int)OC,
                        1.0f, dX, (int)C);
        else                           // dX (N,C) += dY (N,OC) · W with W (OC,C)
            cp_matmul_nn(dX, dY, W, N, OC, C, 1);
    }
    if (m->weight->grad) {
        if (m->kind == CP_MOD_CONV1D) cp_matmul_tn(m->weight->grad, X, dY, N, C, OC, 1);   // dW (C,OC) += Xᵀ·dY
        else cp_matmul_tn(m->weight->grad, dY, X, N, OC, C, 1);                            // dW (OC,C) += dYᵀ·X
    }
    if (m->bias && m->bias->grad) cp_sum_rows(m->bias->grad, dY, N, OC);
}
