/*
 * attention.c — causal (optionally sliding-window) softmax attention over per-head vectors.
 *
 * One (batch, head) pair per OpenMP task; each query row computes its scores against the keys it
 * may see, a max-subtracted softmax in f32 and the weighted sum of values. Cost O(B·NH·T²·hs);
 * memory O(T) per thread unless probabilities are kept for backward.
 */
#include "nn/attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

cp_status cp_attention_forward(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    int nthreads = omp_get_max_threads();
    float *scores_all = cp_arena_floats(scratch, (size_t)nthreads * (size_t)T, "attention scores");
    if (!scores_all) return CP_ERR;

#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            float *scores = scores_all + (size_t)omp_get_thread_num() * (size_t)T;
            const int64_t *mask = a->key_mask ? a->key_mask + b * T : NULL;
            for (int64_t i = 0; i < T; i++) {
                const float *qi = a->q + (b * T + i) * a->q_stride + h * hs;
                int64_t lo = a->window > 0 && i - a->window + 1 > 0 ? i - a->window + 1 : 0;
                int64_t hi = i; /* keys lo..hi */
                float maxv = -INFINITY;
                int any = 0;
                for (int64_t j = lo; j <= i; j++) {
                    if (mask && !mask[j]) { scores[j] = -INFINITY; continue; }
                    float s = dot(qi, a->k + (b * T + j) * a->k_stride + h * hs, hs) * a->scale;
                    scores[j] = s;
                    if (s > maxv) maxv = s;
                    any = 1;
                }
                if (!any && a->empty_row == CP_ATTN_EMPTY_ALL) { lo = 0; hi = T - 1; }
                float sum = 0.0f;
                for (int64_t j = lo; j <= hi; j++) {
                    float e = any ? (scores[j] == -INFINITY ? 0.0f : expf(scores[j] - maxv)) : 1.0f;
                    scores[j] = e;
                    sum += e;
                }
                float *o = a->out + (b * T + i) * C + h * hs;
                memset(o, 0, (size_t)hs * sizeof *o);
                for (int64_t j = lo; j <= hi; j++) {
                    float p = scores[j] / sum;
                    scores[j] = p;
                    if (p == 0.0f) continue;
                    const float *vj = a->v + (b * T + j) * a->v_stride + h * hs;
#pragma omp simd
                    for (int64_t d = 0; d < hs; d++) o[d] += p * vj[d];
                }
                if (a->probs) {
                    float *row = a->probs + ((b * NH + h) * T + i) * T;
                    memset(row, 0, (size_t)T * sizeof *row);
                    memcpy(row + lo, scores + lo, (size_t)(hi - lo + 1) * sizeof *row);
                }
            }
        }
    return CP_OK;
}
