/*
 * embedding.c — nn.Embedding forward (a row gather).
 */
#include "nn/embedding.h"

#include <string.h>

cp_status cp_embedding_forward(const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate) {
    const int64_t num = m->in_features, C = m->out_features;
    for (int64_t n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= num)
            return cp_error("%s: index %lld at position %lld is out of range [0, %lld)", m->path,
                            (long long)ids[n], (long long)n, (long long)num);
    const float *W = m->weight->data;
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t n = 0; n < N; n++) {
        const float *row = W + ids[n] * C;
        float *o = out + n * C;
        if (accumulate) for (int64_t c = 0; c < C; c++) o[c] += row[c];
        else memcpy(o, row, (size_t)C * sizeof *o);
    }
    return CP_OK;
}

void cp_embedding_backward(const cp_module *m, const float *dY, const int64_t *ids, int64_t N) {
    const int64_t C = m->out_features;
    float *dW = m->weight->grad;
    if (dW) // in the forward pass this was out[n] = W[ids[n]], so dW[ids[n]] += dY[n] (serial: ids repeat)
        for (int64_t n = 0; n < N; n++)
            for (int64_t c = 0; c < C; c++) dW[ids[n] * C + c] += dY[n * C + c];
}
