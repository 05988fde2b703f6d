/*
 * attention.c — causal (optionally sliding-window) softmax attention over per-head vectors.
 *
 * Two versions of the same function, held together by test_attention.c:
 *   cp_attention_forward_ref  one query at a time, dot products in plain loops — the reference;
 *   cp_attention_forward      blocks of ATT_QBLOCK queries per (batch, head) task: the scores of a
 *                             block against the keys it may see come from one small GEMM, the
 *                             softmax runs over rows, and the output is a second GEMM P·V.
 * Both compute in f32 with a max-subtracted softmax; cost O(B·NH·T·(past+T)·hs) (the GEMMs also
 * compute the masked upper triangle inside a block, ≤ ATT_QBLOCK/T extra), memory
 * O(ATT_QBLOCK·(past+T)) per thread. With a KV cache (past > 0, one new query per step when
 * decoding) each block is one row of scores against the cached keys.
 */
#include "nn/attention.h"
#include "kernels/vector.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* The kv head a query head reads. */
static inline int64_t kv_head(const cp_attention_args *a, int64_t h) {
    return a->NKV > 0 ? h / (a->NH / a->NKV) : h;
}

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Rows per batch row in k, v and the key mask. */
static inline int64_t kv_rows(const cp_attention_args *a) { return a->kv_rows ? a->kv_rows : a->T; }

static cp_status attention_forward_ref(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    const int64_t P = a->past, R = kv_rows(a), TK = P + T; /* TK keys in all: the cache and the new ones */
    assert(TK <= R && (!a->probs || P == 0));
    int nthreads = omp_get_max_threads();
    float *scores_all = cp_arena_floats(scratch, (size_t)nthreads * (size_t)TK, "attention scores");
    if (!scores_all) return CP_ERR;

#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            float *scores = scores_all + (size_t)omp_get_thread_num() * (size_t)TK;
            const int64_t *mask = a->key_mask ? a->key_mask + b * R : NULL;
            for (int64_t i = 0; i < T; i++) {
                const float *qi = a->q + (b * T + i) * a->q_stride + h * hs;
                const int64_t col = P + i; /* the query's column among the keys */
                int64_t lo = a->window > 0 && col - a->window + 1 > 0 ? col - a->window + 1 : 0;
                int64_t hi = col; /* keys lo..hi */
                float maxv = -INFINITY;
                int any = 0;
                for (int64_t j = lo; j <= col; j++) {
                    if (mask && !mask[j]) { scores[j] = -INFINITY; continue; }
                    float s = dot(qi, a->k + (b * R + j) * a->k_stride + kv_head(a, h) * hs, hs) * a->scale;
                    scores[j] = s;
                    if (s > maxv) maxv = s;
                    any = 1;
                }
                if (!any && a->empty_row == CP_ATTN_EMPTY_ALL) { lo = 0; hi = TK - 1; }
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
                    const float *vj = a->v + (b * R + j) * a->v_stride + kv_head(a, h) * hs;
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

#define ATT_QBLOCK 64

/* Turns the raw scores of the query at column i against keys klo..klo+nk-1 (row s) into
 * probabilities: keys outside the query's causal window get 0. Returns 1 when the query sees no key
 * at all and the caller must attend to all keys (CP_ATTN_EMPTY_ALL). */
static int softmax_row(const cp_attention_args *a, float *s, int64_t klo, int64_t nk, int64_t i, const int64_t *mask) {
    int64_t lo = a->window > 0 && i - a->window + 1 > 0 ? i - a->window + 1 : 0, hi = i;
    for (int64_t j = klo; j < lo; j++) s[j - klo] = 0.0f;
    for (int64_t j = hi + 1; j < klo + nk; j++) s[j - klo] = 0.0f;
    float *r = s + (lo - klo);
    const int64_t n = hi - lo + 1;
    if (cp_softmax_row(r, mask ? mask + lo : NULL, n, a->scale) == 0) { /* no key visible */
        if (a->empty_row == CP_ATTN_EMPTY_ALL) return 1;
        for (int64_t j = 0; j < n; j++) r[j] = 1.0f / (float)n;
    }
    return 0;
}

static cp_status attention_forward(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    const int64_t P = a->past, R = kv_rows(a), TK = P + T; /* TK keys in all: the cache and the new ones */
    assert(TK <= R && (!a->probs || P == 0));
    const int64_t n_blocks = (T + ATT_QBLOCK - 1) / ATT_QBLOCK;
    int nthreads = omp_get_max_threads();
    float *scores_all = cp_arena_floats(scratch, (size_t)nthreads * ATT_QBLOCK * (size_t)TK, "attention scores");
    if (!scores_all) return CP_ERR;

#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t blk = 0; blk < n_blocks; blk++) {
                float *S = scores_all + (size_t)omp_get_thread_num() * ATT_QBLOCK * (size_t)TK;
                const int64_t *mask = a->key_mask ? a->key_mask + b * R : NULL;
                const int64_t i0 = blk * ATT_QBLOCK, i1 = i0 + ATT_QBLOCK < T ? i0 + ATT_QBLOCK : T, nq = i1 - i0;
                const int64_t c0 = P + i0, c1 = P + i1; /* the block's query columns c0..c1-1 */
                const int64_t klo = a->window > 0 && c0 - a->window + 1 > 0 ? c0 - a->window + 1 : 0, nk = c1 - klo;
                const float *Q = a->q + (b * T + i0) * a->q_stride + h * hs;   // (nq, hs), row stride q_stride
                const float *K = a->k + (b * R + klo) * a->k_stride + kv_head(a, h) * hs;  // (nk, hs)
                const float *V = a->v + (b * R + klo) * a->v_stride + kv_head(a, h) * hs;  // (nk, hs)
                float *O = a->out + (b * T + i0) * C + h * hs;                  // (nq, hs), row stride C
                // S (nq, nk) = Q · Kᵀ
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)hs, 1.0f, Q, (int)a->q_stride,
                            K, (int)a->k_stride, 0.0f, S, (int)nk);
                unsigned char empty[ATT_QBLOCK];
                int any_empty = 0;
                for (int64_t r = 0; r < nq; r++) any_empty |= empty[r] = (unsigned char)softmax_row(a, S + r * nk, klo, nk, c0 + r, mask);
                // O (nq, hs) = P · V
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)hs, (int)nk, 1.0f, S, (int)nk, V,
                            (int)a->v_stride, 0.0f, O, (int)C);
                for (int64_t r = 0; r < nq && any_empty; r++) {
                    if (!empty[r]) continue;
                    /* a query that sees nothing under one additive mask: uniform over all TK keys */
                    float *o = O + r * C;
                    memset(o, 0, (size_t)hs * sizeof *o);
                    for (int64_t j = 0; j < TK; j++) {
                        const float *vj = a->v + (b * R + j) * a->v_stride + kv_head(a, h) * hs;
                        for (int64_t d = 0; d < hs; d++) o[d] += vj[d] / (float)TK;
                    }
                }
                if (a->probs)
                    for (int64_t r = 0; r < nq; r++) {
                        float *row = a->probs + ((b * NH + h) * T + i0 + r) * T;
                        if (empty[r]) { for (int64_t j = 0; j < T; j++) row[j] = 1.0f / (float)T; continue; }
                        memset(row, 0, (size_t)T * sizeof *row);
                        memcpy(row + klo, S + r * nk, (size_t)nk * sizeof *row);
                    }
            }
    return CP_OK;
}

static cp_status attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                   cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    assert(a->past == 0 && (a->kv_rows == 0 || a->kv_rows == T));
    if (!a->probs) return cp_error("attention backward needs the probabilities saved by the forward pass");
    int nthreads = omp_get_max_threads();
    float *dp_all = cp_arena_floats(scratch, (size_t)nthreads * (size_t)(T * T), "attention gradient scratch");
    if (!dp_all) return CP_ERR;
    const int64_t NKV = a->NKV > 0 ? a->NKV : NH, group = NH / NKV;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < NKV; kvh++)
            for (int64_t g = 0; g < group; g++) {
                /* the query heads sharing a kv head run in one task: their dK, dV add up */
                const int64_t h = kvh * group + g;
                const float beta = g == 0 ? 0.0f : 1.0f;
                float *dP = dp_all + (size_t)omp_get_thread_num() * (size_t)(T * T);    // (T,T)
                const float *P = a->probs + (b * NH + h) * T * T;                        // (T,T)
                const float *dO = dout + b * T * C + h * hs;                              // (T,hs) stride C
                const float *Q = a->q + b * T * a->q_stride + h * hs;                     // (T,hs) stride q_stride
                const float *K = a->k + b * T * a->k_stride + kvh * hs;
                const float *V = a->v + b * T * a->v_stride + kvh * hs;
                float *dQ = dq + b * T * a->q_stride + h * hs;
                float *dK = dk + b * T * a->k_stride + kvh * hs;
                float *dV = dv + b * T * a->v_stride + kvh * hs;
                // in the forward pass this was O = P·V, so dV = Pᵀ·dO and dP = dO·Vᵀ
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hs, (int)T, 1.0f, P, (int)T, dO, (int)C,
                            beta, dV, (int)a->v_stride);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hs, 1.0f, dO, (int)C, V,
                            (int)a->v_stride, 0.0f, dP, (int)T);
                // softmax backward: dS = P ⊙ (dP − Σ_j dP_j P_j), then the score scaling
                for (int64_t i = 0; i < T; i++) {
                    const float *p = P + i * T;
                    float *d = dP + i * T;
                    float dot_ = 0.0f;
                    for (int64_t j = 0; j < T; j++) dot_ += d[j] * p[j];
                    for (int64_t j = 0; j < T; j++) d[j] = p[j] * (d[j] - dot_) * a->scale;
                }
                // S = scale·Q·Kᵀ, so dQ = dS·K and dK = dSᵀ·Q
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hs, (int)T, 1.0f, dP, (int)T, K,
                            (int)a->k_stride, 0.0f, dQ, (int)a->q_stride);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hs, (int)T, 1.0f, dP, (int)T, Q,
                            (int)a->q_stride, beta, dK, (int)a->k_stride);
            }
    return CP_OK;
}

/* The public entry points: the per-thread score buffers go back to the arena on return, so a
 * training forward does not keep one set per layer (nthreads · 64 · T floats each). */
cp_status cp_attention_forward_ref(const cp_attention_args *a, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = attention_forward_ref(a, scratch);
    cp_arena_release(scratch, mark);
    return st;
}

cp_status cp_attention_forward(const cp_attention_args *a, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = attention_forward(a, scratch);
    cp_arena_release(scratch, mark);
    return st;
}

cp_status cp_attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = attention_backward(a, dout, dq, dk, dv, scratch);
    cp_arena_release(scratch, mark);
    return st;
}
