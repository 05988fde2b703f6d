/*
 * linear.c — Linear / Conv1D through the GEMM interface (kernels/gemm.h).
 *
 * The bias is written into the output rows first and the GEMM accumulates onto it (beta = 1),
 * which is what torch.addmm does for Conv1D and saves a pass for Linear. Which kernel runs (sgemm,
 * or for a few rows the skinny kernels that read each weight once) is the GEMM backend's choice.
 */
#include "nn/linear.h"
#include "kernels/gemm.h"

#include <string.h>

void cp_matmul_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (N,OC) = in (N,C) @ W(OC,C)^T
    const cp_weight w = cp_weight_nt(W, CP_F32, C, OC);
    cp_gemm_forward(out, in, &w, N, accumulate);
}

void cp_matmul_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (N,OC) = in (N,C) @ W(C,OC)
    const cp_weight w = cp_weight_nn(W, CP_F32, C, OC);
    cp_gemm_forward(out, in, &w, N, accumulate);
}

cp_weight cp_linear_weight(const cp_module *m) {
    const cp_param *p = m->weight;
    const void *values = p->data ? (const void *)p->data : p->stored;
    const cp_dtype dtype = p->data ? CP_F32 : p->stored_dtype;
    /* a quantized weight is stored NT (a Conv1D's transposed at load): the same product */
    if (cp_dtype_is_quantized(dtype)) {
        cp_weight q = cp_weight_nt(values, dtype, m->in_features, m->out_features);
        q.round_bf16 = p->round_bf16; /* many rows: dequantized into bf16 panels (kernels/gemm_quant.c) */
        return q;
    }
    cp_weight w = m->kind == CP_MOD_CONV1D ? cp_weight_nn(values, dtype, m->in_features, m->out_features)
                                           : cp_weight_nt(values, dtype, m->in_features, m->out_features);
    w.round_bf16 = p->round_bf16;
    w.bf16_panels[0] = p->bf16_panels[0];
    w.bf16_panels[1] = p->bf16_panels[1];
    return w;
}

void cp_linear_forward(const cp_module *m, float *out, const float *in, int64_t N) {
    cp_linear_forward_act8(m, out, in, N, 0);
}

void cp_linear_forward_act8(const cp_module *m, float *out, const float *in, int64_t N, int act8) {
    const int64_t OC = m->out_features;
    const float *bias = m->bias ? m->bias->data : NULL;
    if (bias) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
        for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof *out);
    }
    // out (N,OC) (+)= in (N,C) · Wᵀ (Linear, W (OC,C)) or in · W (Conv1D, W (C,OC))
    cp_weight w = cp_linear_weight(m);
    w.act8 = act8;
    cp_gemm_forward(out, in, &w, N, bias != NULL);
}

void cp_matmul_tn(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate) {
    // out (C,OC) = a (N,C)ᵀ @ b (N,OC)
    cp_gemm_weight_grad(out, a, b, N, C, OC, accumulate);
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
    // in the forward pass this was Y = X·Wᵀ + b (Linear) or Y = X·W + b (Conv1D), so:
    if (dX) {
        // dX (N,C) += dY (N,OC) · Wᵀ with W (C,OC) (Conv1D), or dY · W with W (OC,C) (Linear)
        const cp_weight w = cp_linear_weight(m);
        cp_gemm_backward_input(dX, dY, &w, N, 1);
    }
    if (m->weight->grad) {
        if (m->kind == CP_MOD_CONV1D) cp_matmul_tn(m->weight->grad, X, dY, N, C, OC, 1);   // dW (C,OC) += Xᵀ·dY
        else cp_matmul_tn(m->weight->grad, dY, X, N, OC, C, 1);                            // dW (OC,C) += dYᵀ·X
    }
    if (m->bias && m->bias->grad) cp_sum_rows(m->bias->grad, dY, N, OC);
}
