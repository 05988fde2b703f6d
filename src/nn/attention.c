/*
 * attention.c — softmax attention over per-head vectors: causal (optionally sliding-window) or
 * bidirectional, self- or cross-attention, with an optional additive bias and ALiBi.
 *
 * Two versions of the same function, held together by test_kernels.c and test_attention_ext.c:
 *   cp_attention_forward_ref  one query at a time, dot products in plain loops — the reference;
 *   cp_attention_forward      blocks of ATT_QBLOCK queries per (batch, head) task: the scores of a
 *                             block against the keys it may see come from one small GEMM, the
 *                             softmax runs over rows, and the output is a second GEMM P·V.
 * Both compute in f32 with a max-subtracted softmax; cost O(B·NH·T·TK·hs) (the causal GEMMs also
 * compute the masked upper triangle inside a block, ≤ ATT_QBLOCK/T extra), memory O(ATT_QBLOCK·TK)
 * per thread. With a KV cache (past > 0, one new query per step when decoding) each block is one row
 * of scores against the cached keys. The bias and ALiBi are added row by row after the scores GEMM,
 * so the plain causal path runs exactly the code it ran before they existed.
 */
#include "nn/attention.h"
#include "core/profile.h"
#include "nn/attention_internal.h"
#include "kernels/gemm.h"
#include "kernels/vector.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* The key offset of this call's dropout rows in the global batch (a data-parallel shard; nn/dropout.h). */
#define DSHIFT(a) cp_dropout_batch_shift(&(a)->dropout, (a)->B * (a)->NH * (a)->T)

static inline float dot(const float *a, const float *b, int64_t n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* What no caller may ask for; the plain causal arguments always pass. */
cp_status cp_attn_check_args(const cp_attention_args *a) {
    const int64_t TK = cp_attn_n_keys(a);
    if (a->bidirectional && a->window > 0)
        return cp_error("attention: a sliding window (%lld) needs the causal mask, but bidirectional is set",
                        (long long)a->window);
    if (!a->bidirectional && a->Tk && a->Tk != a->past + a->T)
        return cp_error("attention: causal attention over Tk = %lld keys, expected past + T = %lld "
                        "(cross-attention is bidirectional)", (long long)a->Tk, (long long)(a->past + a->T));
    if (a->T > 0 && TK < 1) return cp_error("attention: %lld queries and no keys", (long long)a->T);
    if (a->kv_rows && a->kv_rows < TK)
        return cp_error("attention: kv_rows = %lld rows per batch row cannot hold %lld keys", (long long)a->kv_rows,
                        (long long)TK);
    if (a->NKV > 0 && a->NH % a->NKV)
        return cp_error("attention: %lld query heads do not divide into %lld kv heads", (long long)a->NH,
                        (long long)a->NKV);
    if (a->d_bias && a->bias_h_stride == 0 && a->NH > 1)
        return cp_error("attention: d_bias shared by all %lld heads (bias_h_stride 0) is not supported", (long long)a->NH);
    return CP_OK;
}

/* ALiBi's key positions (B,TK) as floats, pos(b,j) by a->alibi_pos; *out = NULL without ALiBi. */
cp_status cp_attn_alibi_positions(const cp_attention_args *a, cp_arena *scratch, float **out) {
    *out = NULL;
    if (!a->alibi_slopes) return CP_OK;
    const int64_t B = a->B, TK = cp_attn_n_keys(a), R = cp_attn_kv_rows(a);
    float *pos = cp_arena_floats(scratch, (size_t)(B * TK), "ALiBi key positions");
    if (!pos) return CP_ERR;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *mask = a->key_mask ? a->key_mask + b * R : NULL;
        float *p = pos + b * TK;
        int64_t seen = 0;
        for (int64_t j = 0; j < TK; j++) {
            switch (a->alibi_pos) {
            case CP_ALIBI_POS_MASK:
                /* transformers: ((mask.cumsum(-1) - 1) * mask) */
                if (!mask || mask[j]) p[j] = (float)(seen++);
                else p[j] = 0.0f;
                break;
            case CP_ALIBI_POS_LAST: p[j] = (float)(j - (TK - 1)); break;
            default: p[j] = (float)j; break;
            }
        }
    }
    *out = pos;
    return CP_OK;
}

/* r[j] = r[j]·scale + bias(b,h,i,lo+j) + slope_h·pos(b,lo+j) over the n keys from column lo: the
 * scores of query i before the masks, in eager PyTorch's order of additions. */
void cp_attn_add_bias_row(const cp_attention_args *a, const float *alibi_pos, float *r, int64_t lo, int64_t n, int64_t b,
                          int64_t h, int64_t i) {
    const float scale = a->scale;
    if (a->bias) {
        const float *br = a->bias + b * a->bias_b_stride + h * a->bias_h_stride + i * a->bias_q_stride + lo;
        for (int64_t j = 0; j < n; j++) r[j] = r[j] * scale + br[j];
    } else {
        for (int64_t j = 0; j < n; j++) r[j] *= scale;
    }
    if (alibi_pos) {
        const float slope = a->alibi_slopes[h], *p = alibi_pos + b * cp_attn_n_keys(a) + lo;
        for (int64_t j = 0; j < n; j++) r[j] += slope * p[j];
    }
}

/* Gemma 2's soft-capping of n scores: c·tanh(s/c), in eager PyTorch's order (÷c, tanh, ×c). */
static void softcap_row(float *r, int64_t n, float c) {
    for (int64_t j = 0; j < n; j++) r[j] = tanhf(r[j] / c) * c;
}

static cp_status attention_forward_ref(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    const int64_t P = a->past, R = cp_attn_kv_rows(a), TK = cp_attn_n_keys(a);
    if (cp_attn_check_args(a) != CP_OK) return CP_ERR;
    float *apos;
    if (cp_attn_alibi_positions(a, scratch, &apos) != CP_OK) return CP_ERR;
    const int extra = a->bias || apos;
    const float cap = a->softcap;
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
                int64_t lo, hi; /* keys lo..hi */
                cp_attn_visible_keys(a, P + i, &lo, &hi);
                float maxv = -INFINITY;
                int any = 0;
                for (int64_t j = lo; j <= hi; j++) {
                    if (mask && !mask[j]) { scores[j] = -INFINITY; continue; }
                    float s = dot(qi, a->k + (b * R + j) * a->k_stride + cp_attn_kv_head(a, h) * hs, hs);
                    if (extra) cp_attn_add_bias_row(a, apos, &s, j, 1, b, h, i);
                    else s *= a->scale;
                    if (cap > 0) softcap_row(&s, 1, cap);
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
                for (int64_t j = lo; j <= hi; j++) scores[j] /= sum;
                if (a->probs) {
                    float *row = a->probs + ((b * NH + h) * T + i) * TK;
                    memset(row, 0, (size_t)TK * sizeof *row);
                    memcpy(row + lo, scores + lo, (size_t)(hi - lo + 1) * sizeof *row);
                }
                // out = dropout(P)·V: the probabilities dropped after they are saved
                cp_dropout_apply_row(&a->dropout, scores + lo, scores + lo, (b * NH + h) * T + i + DSHIFT(a), lo, hi - lo + 1);
                float *o = a->out + (b * T + i) * C + h * hs;
                memset(o, 0, (size_t)hs * sizeof *o);
                for (int64_t j = lo; j <= hi; j++) {
                    const float p = scores[j];
                    if (p == 0.0f) continue;
                    const float *vj = a->v + (b * R + j) * a->v_stride + cp_attn_kv_head(a, h) * hs;
#pragma omp simd
                    for (int64_t d = 0; d < hs; d++) o[d] += p * vj[d];
                }
            }
        }
    return CP_OK;
}

#define ATT_QBLOCK 64

/* Turns the raw scores of the query at column col against keys klo..klo+nk-1 (row s) into
 * probabilities: keys the query may not see get 0. Returns 1 when the query sees no key at all and
 * the caller must attend to all keys (CP_ATTN_EMPTY_ALL). */
static int softmax_row(const cp_attention_args *a, const float *alibi_pos, float *s, int64_t klo, int64_t nk,
                       int64_t col, int64_t b, int64_t h, const int64_t *mask) {
    int64_t lo, hi;
    cp_attn_visible_keys(a, col, &lo, &hi);
    for (int64_t j = klo; j < lo; j++) s[j - klo] = 0.0f;
    for (int64_t j = hi + 1; j < klo + nk; j++) s[j - klo] = 0.0f;
    float *r = s + (lo - klo);
    const int64_t n = hi - lo + 1;
    float scale = a->scale;
    if (a->bias || alibi_pos || a->softcap > 0) { /* scaled, biased and capped here; cp_softmax_row's ·1 is exact */
        cp_attn_add_bias_row(a, alibi_pos, r, lo, n, b, h, col - a->past);
        if (a->softcap > 0) softcap_row(r, n, a->softcap);
        scale = 1.0f;
    }
    if (cp_softmax_row(r, mask ? mask + lo : NULL, n, scale) == 0) { /* no key visible */
        if (a->empty_row == CP_ATTN_EMPTY_ALL) return 1;
        for (int64_t j = 0; j < n; j++) r[j] = 1.0f / (float)n;
    }
    return 0;
}

static cp_status attention_forward(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    const int64_t P = a->past, R = cp_attn_kv_rows(a), TK = cp_attn_n_keys(a);
    if (cp_attn_check_args(a) != CP_OK) return CP_ERR;
    float *apos;
    if (cp_attn_alibi_positions(a, scratch, &apos) != CP_OK) return CP_ERR;
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
                /* the keys the block may see: klo..klo+nk-1 */
                const int64_t klo = a->bidirectional ? 0 : a->window > 0 && c0 - a->window + 1 > 0 ? c0 - a->window + 1 : 0;
                const int64_t nk = a->bidirectional ? TK : c1 - klo;
                const float *Q = a->q + (b * T + i0) * a->q_stride + h * hs;   // (nq, hs), row stride q_stride
                const float *K = a->k + (b * R + klo) * a->k_stride + cp_attn_kv_head(a, h) * hs;  // (nk, hs)
                const float *V = a->v + (b * R + klo) * a->v_stride + cp_attn_kv_head(a, h) * hs;  // (nk, hs)
                float *O = a->out + (b * T + i0) * C + h * hs;                  // (nq, hs), row stride C
                // S (nq, nk) = Q · Kᵀ
                cp_gemm_f32(0, 1, (int)nq, (int)nk, (int)hs, 1.0f, Q, (int)a->q_stride,
                            K, (int)a->k_stride, 0.0f, S, (int)nk);
                unsigned char empty[ATT_QBLOCK];
                int any_empty = 0;
                for (int64_t r = 0; r < nq; r++)
                    any_empty |= empty[r] = (unsigned char)softmax_row(a, apos, S + r * nk, klo, nk, c0 + r, b, h, mask);
                if (a->probs)
                    for (int64_t r = 0; r < nq; r++) {
                        float *row = a->probs + ((b * NH + h) * T + i0 + r) * TK;
                        if (empty[r]) { for (int64_t j = 0; j < TK; j++) row[j] = 1.0f / (float)TK; continue; }
                        memset(row, 0, (size_t)TK * sizeof *row);
                        memcpy(row + klo, S + r * nk, (size_t)nk * sizeof *row);
                    }
                const int64_t row0 = (b * NH + h) * T + i0; /* the dropout mask row of query i0 */
                if (cp_dropout_on(&a->dropout)) // out = dropout(P)·V, the probabilities dropped after they are saved
                    for (int64_t r = 0; r < nq; r++) cp_dropout_apply_row(&a->dropout, S + r * nk, S + r * nk, row0 + r + DSHIFT(a), klo, nk);
                // O (nq, hs) = P · V
                cp_gemm_f32(0, 0, (int)nq, (int)hs, (int)nk, 1.0f, S, (int)nk, V,
                            (int)a->v_stride, 0.0f, O, (int)C);
                for (int64_t r = 0; r < nq && any_empty; r++) {
                    if (!empty[r]) continue;
                    /* a query that sees nothing under one additive mask: uniform over all TK keys */
                    float *o = O + r * C;
                    memset(o, 0, (size_t)hs * sizeof *o);
                    for (int64_t j = 0; j < TK; j++) {
                        const float *vj = a->v + (b * R + j) * a->v_stride + cp_attn_kv_head(a, h) * hs;
                        if (cp_dropout_on(&a->dropout)) {
                            float w = 1.0f / (float)TK;
                            cp_dropout_apply_row(&a->dropout, &w, &w, row0 + r + DSHIFT(a), j, 1);
                            for (int64_t d = 0; d < hs; d++) o[d] += w * vj[d];
                        } else {
                            for (int64_t d = 0; d < hs; d++) o[d] += vj[d] / (float)TK;
                        }
                    }
                }
            }
    return CP_OK;
}

/* The backward of one batch row b and one kv head: the query heads sharing it run in one task, so
 * their dK, dV add up without races. dP is this thread's (T,TK) scratch, and with dropout a second
 * (T,TK) after it for dropout(P). */
static void backward_task(const cp_attention_args *a, const float *apos, int64_t b, int64_t kvh, const float *dout, float *dq,
                          float *dk, float *dv, float *dP) {
    const int64_t T = a->T, NH = a->NH, hs = a->hs, C = NH * hs, TK = cp_attn_n_keys(a), R = cp_attn_kv_rows(a);
    const int64_t NKV = a->NKV > 0 ? a->NKV : NH, group = NH / NKV;
    for (int64_t g = 0; g < group; g++) {
        const int64_t h = kvh * group + g;
        const float beta = g == 0 ? 0.0f : 1.0f;
        const float *P = a->probs + (b * NH + h) * T * TK;                      // (T,TK)
        const float *dO = dout + b * T * C + h * hs;                              // (T,hs) stride C
        const float *Q = a->q + b * T * a->q_stride + h * hs;                     // (T,hs) stride q_stride
        const float *K = a->k + b * R * a->k_stride + kvh * hs;                   // (TK,hs) stride k_stride
        const float *V = a->v + b * R * a->v_stride + kvh * hs;                   // (TK,hs) stride v_stride
        float *dQ = dq + b * T * a->q_stride + h * hs;
        float *dK = dk + b * R * a->k_stride + kvh * hs;
        float *dV = dv + b * R * a->v_stride + kvh * hs;
        float *dB = a->d_bias ? a->d_bias + b * a->bias_b_stride + h * a->bias_h_stride : NULL; // row i at i*bias_q_stride
        const int drop = cp_dropout_on(&a->dropout);
        const int64_t row0 = (b * NH + h) * T; /* the dropout mask row of query 0 */
        const float *Pv = P;                   /* what weighted the values: P, or dropout(P) (T,TK) */
        if (drop) {
            float *Pd = dP + T * TK;
            for (int64_t i = 0; i < T; i++) cp_dropout_apply_row(&a->dropout, Pd + i * TK, P + i * TK, row0 + i + DSHIFT(a), 0, TK);
            Pv = Pd;
        }
        // in the forward pass this was O = Pv·V, so dV = Pvᵀ·dO and dPv = dO·Vᵀ
        cp_gemm_f32(1, 0, (int)TK, (int)hs, (int)T, 1.0f, Pv, (int)TK, dO, (int)C,
                    beta, dV, (int)a->v_stride);
        cp_gemm_f32(0, 1, (int)T, (int)TK, (int)hs, 1.0f, dO, (int)C, V,
                    (int)a->v_stride, 0.0f, dP, (int)TK);
        // Pv = dropout(P): dP = the same mask times dPv
        for (int64_t i = 0; i < T && drop; i++) cp_dropout_apply_row(&a->dropout, dP + i * TK, dP + i * TK, row0 + i + DSHIFT(a), 0, TK);
        float *Tc = NULL; /* softcap: tanh(s/c) of every score (T,TK), s recomputed as the forward made it */
        if (a->softcap > 0) {
            Tc = dP + T * TK * (drop ? 2 : 1);
            cp_gemm_f32(0, 1, (int)T, (int)TK, (int)hs, 1.0f, Q, (int)a->q_stride, K, (int)a->k_stride, 0.0f, Tc, (int)TK);
            for (int64_t i = 0; i < T; i++) {
                float *r = Tc + i * TK;
                cp_attn_add_bias_row(a, apos, r, 0, TK, b, h, i);
                for (int64_t j = 0; j < TK; j++) r[j] = tanhf(r[j] / a->softcap);
            }
        }
        // softmax backward: dB = P ⊙ (dP − Σ_j dP_j P_j) is the gradient of the biased scores (and of
        // the bias), then the score scaling: dS = dB · scale
        for (int64_t i = 0; i < T; i++) {
            const float *p = P + i * TK;
            float *d = dP + i * TK;
            float dot_ = 0.0f;
            for (int64_t j = 0; j < TK; j++) dot_ += d[j] * p[j];
            if (Tc) { // s' = c·tanh(s/c): ds = ds' · (1 − tanh²(s/c))
                const float *t = Tc + i * TK;
                float *db = dB ? dB + i * a->bias_q_stride : NULL;
                for (int64_t j = 0; j < TK; j++) {
                    float u = p[j] * (d[j] - dot_) * (1.0f - t[j] * t[j]);
                    if (db) db[j] += u;
                    d[j] = u * a->scale;
                }
            } else if (dB) {
                float *db = dB + i * a->bias_q_stride;
                for (int64_t j = 0; j < TK; j++) {
                    float u = p[j] * (d[j] - dot_);
                    db[j] += u;
                    d[j] = u * a->scale;
                }
            } else {
                for (int64_t j = 0; j < TK; j++) d[j] = p[j] * (d[j] - dot_) * a->scale;
            }
        }
        // S = scale·Q·Kᵀ, so dQ = dS·K and dK = dSᵀ·Q
        cp_gemm_f32(0, 0, (int)T, (int)hs, (int)TK, 1.0f, dP, (int)TK, K,
                    (int)a->k_stride, 0.0f, dQ, (int)a->q_stride);
        cp_gemm_f32(1, 0, (int)TK, (int)hs, (int)T, 1.0f, dP, (int)TK, Q,
                    (int)a->q_stride, beta, dK, (int)a->k_stride);
    }
}

static cp_status attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                   cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, TK = cp_attn_n_keys(a);
    if (cp_attn_check_args(a) != CP_OK) return CP_ERR;
    if (!a->probs) return cp_error("attention backward needs the probabilities or the row statistics saved by the forward pass");
    float *apos;
    if (cp_attn_alibi_positions(a, scratch, &apos) != CP_OK) return CP_ERR;
    int nthreads = omp_get_max_threads();
    /* dP, [dropout(P)], [tanh of the capped scores] */
    const size_t per_thread = (size_t)(T * TK) * (size_t)(1 + cp_dropout_on(&a->dropout) + (a->softcap > 0));
    float *dp_all = cp_arena_floats(scratch, (size_t)nthreads * per_thread, "attention gradient scratch");
    if (!dp_all) return CP_ERR;
    const int64_t NKV = a->NKV > 0 ? a->NKV : NH;
    if (a->d_bias && a->bias_b_stride == 0 && B > 1) {
        /* one d_bias for the whole batch (T5): the batch rows of a head add up in one task */
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t kvh = 0; kvh < NKV; kvh++)
            for (int64_t b = 0; b < B; b++)
                backward_task(a, apos, b, kvh, dout, dq, dk, dv, dp_all + (size_t)omp_get_thread_num() * per_thread);
        return CP_OK;
    }
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < NKV; kvh++)
            backward_task(a, apos, b, kvh, dout, dq, dk, dv, dp_all + (size_t)omp_get_thread_num() * per_thread);
    return CP_OK;
}

/* The public entry points: the per-thread score buffers go back to the arena on return, so a
 * training forward does not keep one set per layer (nthreads · 64 · TK floats each). */
cp_status cp_attention_forward_ref(const cp_attention_args *a, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = attention_forward_ref(a, scratch);
    cp_arena_release(scratch, mark);
    return st;
}

cp_status cp_attention_forward(const cp_attention_args *a, cp_arena *scratch) {
    cp_prof_push(CP_PROF_ATTENTION);
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = a->probs ? attention_forward(a, scratch) : cp_attn_fused_forward(a, scratch);
    cp_arena_release(scratch, mark);
    cp_prof_pop();
    return st;
}

cp_status cp_attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv, cp_arena *scratch) {
    cp_prof_push(CP_PROF_ATTENTION);
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = a->probs || !a->stats ? attention_backward(a, dout, dq, dk, dv, scratch)
                                         : cp_attn_fused_backward(a, dout, dq, dk, dv, scratch);
    cp_arena_release(scratch, mark);
    cp_prof_pop();
    return st;
}
