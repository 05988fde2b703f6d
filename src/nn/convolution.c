/*
 * convolution.c — nn.Conv1d over (B,T,C) rows, forward and backward; see convolution.h. Each kernel
 * tap j of each channel group is one GEMM over the rows whose shifted input t + j − p lies in [0,T).
 */
#include "nn/convolution.h"
#include "kernels/gemm.h"

#include <string.h>

/* The rows t of one sequence whose input row t + j − p is inside [0,T): [*t0, *t1). */
static void tap_rows(int64_t j, int64_t p, int64_t T, int64_t *t0, int64_t *t1) {
    const int64_t shift = j - p;
    *t0 = shift < 0 ? -shift : 0;
    *t1 = shift > 0 ? T - shift : T;
    if (*t1 < *t0) *t1 = *t0;
}

/* W_j (OC, Cg) = weight[:, :, j], contiguous (the weight is [OC, Cg, k]). */
static void tap_weight(float *wj, const float *w, int64_t OC, int64_t Cg, int64_t k, int64_t j) {
    for (int64_t o = 0; o < OC; o++)
        for (int64_t c = 0; c < Cg; c++) wj[o * Cg + c] = w[(o * Cg + c) * k + j];
}

static cp_status check(const cp_module *m) {
    if (m->kind != CP_MOD_CONV || !m->weight || !m->weight->data)
        return cp_error("%s: not a bound f32 Conv1d", m->path[0] ? m->path : "conv");
    if (m->kernel_size % 2 == 0 || m->groups < 1 || m->in_features % m->groups || m->out_features % m->groups)
        return cp_error("%s: kernel_size %lld, groups %lld: needs an odd kernel and groups dividing %lld and %lld", m->path,
                        (long long)m->kernel_size, (long long)m->groups, (long long)m->in_features, (long long)m->out_features);
    return CP_OK;
}

cp_status cp_conv1d_forward(const cp_module *m, float *out, const float *in, int64_t B, int64_t T, cp_arena *scratch) {
    if (check(m) != CP_OK) return CP_ERR;
    const int64_t C = m->in_features, OC = m->out_features, G = m->groups, Cg = C / G, Og = OC / G, k = m->kernel_size, p = (k - 1) / 2;
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    float *wj = cp_arena_floats(scratch, (size_t)(OC * Cg), "convolution tap"); // (OC,Cg)
    if (!wj) return CP_ERR;
    for (int64_t i = 0; i < B * T; i++) memcpy(out + i * OC, m->bias->data, (size_t)OC * sizeof *out);
    for (int64_t j = 0; j < k; j++) {
        int64_t t0, t1;
        tap_rows(j, p, T, &t0, &t1);
        if (t1 == t0) continue;
        tap_weight(wj, m->weight->data, OC, Cg, k, j);
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < G; g++) // out[b, t0:t1, group] += in[b, t0+j-p : t1+j-p, group] · W_jᵀ
                cp_gemm_f32(0, 1, t1 - t0, Og, Cg, 1.0f, in + (b * T + t0 + j - p) * C + g * Cg, C, wj + g * Og * Cg, Cg, 1.0f,
                            out + (b * T + t0) * OC + g * Og, OC);
    }
    cp_arena_release(scratch, mark);
    return CP_OK;
}

cp_status cp_conv1d_backward(const cp_module *m, float *din, const float *dout, const float *in, int64_t B, int64_t T,
                             cp_arena *scratch) {
    if (check(m) != CP_OK) return CP_ERR;
    const int64_t C = m->in_features, OC = m->out_features, G = m->groups, Cg = C / G, Og = OC / G, k = m->kernel_size, p = (k - 1) / 2;
    float *gw = m->weight->grad, *gb = m->bias->grad;
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    float *wj = cp_arena_floats(scratch, (size_t)(OC * Cg), "convolution tap");   // (OC,Cg)
    float *dwj = cp_arena_floats(scratch, (size_t)(OC * Cg), "convolution tap");  // (OC,Cg)
    if (!wj || !dwj) { cp_arena_release(scratch, mark); return CP_ERR; }
    if (gb)
        for (int64_t i = 0; i < B * T; i++)
            for (int64_t o = 0; o < OC; o++) gb[o] += dout[i * OC + o];
    for (int64_t j = 0; j < k; j++) {
        int64_t t0, t1;
        tap_rows(j, p, T, &t0, &t1);
        if (t1 == t0) continue;
        tap_weight(wj, m->weight->data, OC, Cg, k, j);
        memset(dwj, 0, (size_t)(OC * Cg) * sizeof *dwj);
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < G; g++) {
                const float *dy = dout + (b * T + t0) * OC + g * Og;        // (t1-t0, Og) stride OC
                const float *x = in + (b * T + t0 + j - p) * C + g * Cg;    // (t1-t0, Cg) stride C
                // in the forward pass this was y += x · W_jᵀ, so dx += dy · W_j and dW_j += dyᵀ · x
                if (din) cp_gemm_f32(0, 0, t1 - t0, Cg, Og, 1.0f, dy, OC, wj + g * Og * Cg, Cg, 1.0f, din + (b * T + t0 + j - p) * C + g * Cg, C);
                if (gw) cp_gemm_f32(1, 0, Og, Cg, t1 - t0, 1.0f, dy, OC, x, C, 1.0f, dwj + g * Og * Cg, Cg);
            }
        if (gw)
            for (int64_t o = 0; o < OC; o++)
                for (int64_t c = 0; c < Cg; c++) gw[(o * Cg + c) * k + j] += dwj[o * Cg + c];
    }
    cp_arena_release(scratch, mark);
    return CP_OK;
}
