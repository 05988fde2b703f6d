/*
 * sampling.c — transformers' logits processors and warpers for one row of scores, then the choice
 * of the next token; see sampling.h. Each step costs O(V) plus, with top-p, a sort of the tokens
 * top-k left (all V when top-k is off).
 */
#include "generate/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* k-th largest value of x[0..n) (1-based k ≤ n); x is reordered. Quickselect, expected O(n). */
static float kth_largest(float *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1; /* index in descending order */
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                float t = x[i];
                x[i] = x[j];
                x[j] = t;
                i++;
                j--;
            }
        }
        /* now x[lo..j] ≥ pivot ≥ x[i..hi], and x[j+1..i-1] == pivot */
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return pivot;
    }
    return x[want];
}

static int cmp_ascending(const void *a, const void *b) {
    const cp_scored *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* TopPLogitsWarper: sort ascending, softmax, cumulative sum; tokens whose cumulative probability is
 * ≤ 1 − top_p go to -inf, the most likely token always stays. */
static void top_p_filter(float *s, int64_t V, float top_p, cp_scored *items) {
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (s[i] != -INFINITY) items[n++] = (cp_scored){s[i], (int32_t)i};
    if (n <= 1) return;
    qsort(items, (size_t)n, sizeof *items, cmp_ascending);
    const float maxv = items[n - 1].v;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)items[i].v - (double)maxv);
    const float thresh = (float)(1.0 - (double)top_p);
    double cum = 0.0;
    for (int64_t i = 0; i < n - 1; i++) { /* min_tokens_to_keep = 1: the last (best) stays */
        cum += (double)(float)(exp((double)items[i].v - (double)maxv) / sum);
        if ((float)cum <= thresh) s[items[i].i] = -INFINITY;
        else break; /* the cumulative sum only grows */
    }
}

void cp_logits_process(const cp_sampling_params *p, float *s, int64_t V, const uint8_t *seen,
                       cp_sampling_scratch *scratch) {
    if (seen && p->repetition_penalty != 1.0f) {
        const float r = p->repetition_penalty;
        for (int64_t i = 0; i < V; i++)
            if (seen[i]) s[i] = s[i] < 0 ? s[i] * r : s[i] / r;
    }
    if (!p->do_sample) return;
    if (p->temperature != 1.0f)
        for (int64_t i = 0; i < V; i++) s[i] = s[i] / p->temperature;
    if (p->top_k > 0 && p->top_k < V) {
        float *x = scratch->f;
        memcpy(x, s, (size_t)V * sizeof *x);
        const float kth = kth_largest(x, V, p->top_k);
        for (int64_t i = 0; i < V; i++)
            if (s[i] < kth) s[i] = -INFINITY;
    }
    if (p->top_p < 1.0f) top_p_filter(s, V, p->top_p, scratch->items);
}

int32_t cp_sample_token(const cp_sampling_params *p, const float *s, int64_t V, cp_rng *rng) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (s[i] > s[best]) best = i; /* first of equal maxima, as torch.argmax */
    if (!p->do_sample || s[best] == -INFINITY) return (int32_t)best;
    const double maxv = s[best];
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += s[i] == -INFINITY ? 0.0 : exp((double)s[i] - maxv);
    const double u = (double)(cp_rng_next(rng) >> 11) * 0x1.0p-53, target = u * sum;
    double cum = 0.0;
    int64_t last = best;
    for (int64_t i = 0; i < V; i++) {
        if (s[i] == -INFINITY) continue;
        cum += exp((double)s[i] - maxv);
        last = i;
        if (cum > target) return (int32_t)i;
    }
    return (int32_t)last;
}

/* All of scores (V) -inf but id's, which is 0 (an id outside [0, V) leaves them all -inf, as
 * indexing past the row does not happen in transformers: such ids are refused earlier). */
static void force_token(float *scores, int64_t V, int32_t id) {
    for (int64_t v = 0; v < V; v++) scores[v] = -INFINITY;
    if (id < V) scores[id] = 0.0f;
}

void cp_forced_tokens(float *scores, int64_t V, int64_t cur_len, int64_t max_length, int32_t bos, int32_t eos) {
    if (bos >= 0 && cur_len == 1) force_token(scores, V, bos);
    if (eos >= 0 && cur_len == max_length - 1) force_token(scores, V, eos);
}
