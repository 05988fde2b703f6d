/*
 * embedding.c — nn.Embedding forward (a row gather, widening rows of a weight kept F16/BF16).
 */
#include "nn/embedding.h"


cp_status cp_embedding_forward(const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate) {
    const int64_t num = m->in_features, C = m->out_features;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= num)
            return cp_error("%s: index %lld at position %lld is out of range [0, %lld)", m->path,
                            (long long)ids[n], (long long)n, (long long)num);
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t n = 0; n < N; n++) cp_param_row_f32(m->weight, ids[n], out + n * C, accumulate); // out[n] (+)= W[ids[n]]
    return CP_OK;
}

void cp_embedding_backward(const cp_module *m, const float *dY, const int64_t *ids, int64_t N) {
    const int64_t C = m->out_features;
    float *dW = m->weight->grad;
    if (dW) // in the forward pass this was out[n] = W[ids[n]], so dW[ids[n]] += dY[n] (serial: ids repeat)
        for (int64_t n = 0; n < N; n++)
            if (ids[n] != m->padding_idx) /* nn.Embedding's padding_idx row gets no gradient */
                for (int64_t c = 0; c < C; c++) dW[ids[n] * C + c] += dY[n * C + c];
}
