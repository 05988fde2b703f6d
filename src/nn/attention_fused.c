/*
 * attention_fused.c — softmax attention without the (T × TK) matrix: FlashAttention-2's online
 * softmax over tiles of ATT_BQ queries and ATT_BK keys, forward and backward, for every mode of
 * nn/attention.h (causal, window, bidirectional, cross, GQA, bias and its gradient, ALiBi, softcap,
 * dropout on the probabilities, both empty-row rules, past / kv_rows).
 *
 * Forward, one task per (batch row b, head h, query tile): for each key tile the scores S = Q·Kᵀ
 * (one small GEMM), scaled, biased and capped exactly as attention.c does, the masks as -inf; the
 * row max m and exp-sum l are updated online (acc and l rescaled by exp(m_old − m_new)), and
 * acc += dropout(exp(S − m))·V (a second GEMM). At the end out = acc / l, and (m, l) go to
 * a->stats: two floats per query row are all the backward needs besides q, k, v and out. When
 * the keys of a query tile fit in one key tile (T ≤ ATT_BK) nothing is rescaled and P = e / l is
 * formed before the product, rounded as attention.c's blocked path rounds it.
 *
 * Backward, one task per (b, h, query tile), again over key tiles:
 *   P  = exp(S − m) / l (recomputed),   Pd = dropout(P)       the forward's weights
 *   dV += Pdᵀ·dO,   dP = dropout(dO·Vᵀ)                       as attention.c's backward
 *   dB = P ⊙ (dP − D),  D = rowsum(dO ⊙ O)                    (= Σ_j P_j dP_j: O = Pd·V)
 *   (softcap: dB ·= 1 − tanh²), d_bias += dB, dS = dB·scale,  dQ += dS·K,  dK += dSᵀ·Q
 * dQ of a query tile belongs to its task. dK, dV of a key tile get contributions from every query
 * tile and every query head of the kv head: each thread adds into its own (b, kv head, key tile)
 * buffers, zeroed on first touch, and a second loop sums the threads' buffers into dk, dv. A d_bias
 * shared by the batch (T5: bias_b_stride 0) or by the queries (a per-key bias) puts the batch rows
 * or the query tiles sharing it in one task, so its additions never race either.
 *
 * A query that sees no key (l = 0) gets the uniform row of attention.c (its causal window, or all
 * TK keys under CP_ATTN_EMPTY_ALL); the backward spreads it the same way. Cost: the forward's two
 * GEMMs per tile pair; the backward's five (S recomputed). Memory: O(ATT_BQ·ATT_BK + ATT_BQ·hs) per
 * thread in the forward, plus the dK/dV buffers (2·TK·NKV·hs per thread and batch row) in the backward.
 */
#include "nn/attention_internal.h"
#include "kernels/gemm.h"
#include "kernels/vmath.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* The key offset of this call's dropout rows in the global batch (a data-parallel shard; nn/dropout.h). */
#define DSHIFT(a) cp_dropout_batch_shift(&(a)->dropout, (a)->B * (a)->NH * (a)->T)

#define ATT_BQ 64
#define ATT_BK 128

static inline int64_t min64(int64_t x, int64_t y) { return x < y ? x : y; }

/* The key tiles kt0..kt1 that queries i0..i1-1 may see (before the key mask). */
static void key_tiles(const cp_attention_args *a, int64_t i0, int64_t i1, int all, int64_t *kt0, int64_t *kt1) {
    int64_t lo, hi, lo2, hi2;
    cp_attn_visible_keys(a, a->past + i0, &lo, &hi);
    cp_attn_visible_keys(a, a->past + i1 - 1, &lo2, &hi2);
    if (all) { lo = 0; hi2 = cp_attn_n_keys(a) - 1; }
    *kt0 = lo / ATT_BK;
    *kt1 = hi2 / ATT_BK;
}

/* Row s (keys j0..j0+nk-1) of query i: the raw q·k in, the scores as attention.c makes them out
 * (·scale, + bias, + ALiBi, capped), and with `tanh_out` the cap's tanh(s/c) for its derivative. */
static void score_row(const cp_attention_args *a, const float *apos, float *s, float *tanh_out, int64_t j0, int64_t nk,
                      int64_t b, int64_t h, int64_t i) {
    const float c = a->softcap;
    if (a->bias || apos || c > 0) cp_attn_add_bias_row(a, apos, s, j0, nk, b, h, i);
    else for (int64_t j = 0; j < nk; j++) s[j] *= a->scale;
    if (c > 0)
        for (int64_t j = 0; j < nk; j++) {
            const float t = tanhf(s[j] / c);
            if (tanh_out) tanh_out[j] = t;
            s[j] = t * c;
        }
}

/* Whether key j is one query i may see (visible lo..hi and not padding). */
static inline int keeps(const int64_t *mask, int64_t lo, int64_t hi, int64_t j) {
    return j >= lo && j <= hi && (!mask || mask[j]);
}

/* The keys lo..hi an empty query (l = 0) is spread over, uniformly. */
static void empty_spread(const cp_attention_args *a, int64_t i, int64_t *lo, int64_t *hi) {
    if (a->empty_row == CP_ATTN_EMPTY_ALL) { *lo = 0; *hi = cp_attn_n_keys(a) - 1; return; }
    cp_attn_visible_keys(a, a->past + i, lo, hi);
}

/* ---- forward ------------------------------------------------------------------------------------ */

typedef struct { float *S, *acc, *m, *l; } fwd_scratch; /* S (BQ,BK), acc (BQ,hs), m, l (BQ) */

static void forward_task(const cp_attention_args *a, const float *apos, int64_t b, int64_t h, int64_t qt, fwd_scratch w) {
    const int64_t T = a->T, NH = a->NH, hs = a->hs, C = NH * hs, R = cp_attn_kv_rows(a), TK = cp_attn_n_keys(a);
    const int64_t kvh = cp_attn_kv_head(a, h), i0 = qt * ATT_BQ, i1 = min64(T, i0 + ATT_BQ), nq = i1 - i0;
    const int64_t *mask = a->key_mask ? a->key_mask + b * R : NULL;
    const int64_t row0 = (b * NH + h) * T; /* the dropout mask row (and stats row) of query 0 */
    const int drop = cp_dropout_on(&a->dropout);
    const float *Q = a->q + (b * T + i0) * a->q_stride + h * hs; // (nq,hs) stride q_stride
    int64_t kt0, kt1;
    key_tiles(a, i0, i1, 0, &kt0, &kt1);
    const int single = kt0 == kt1; /* one key tile (T ≤ ATT_BK): no rescaling, acc holds P·V itself */
    for (int64_t r = 0; r < nq; r++) { w.m[r] = -INFINITY; w.l[r] = 0.0f; }
    memset(w.acc, 0, (size_t)(nq * hs) * sizeof *w.acc);
    for (int64_t kt = kt0; kt <= kt1; kt++) {
        const int64_t j0 = kt * ATT_BK, nk = min64(ATT_BK, TK - j0);
        const float *K = a->k + (b * R + j0) * a->k_stride + kvh * hs; // (nk,hs) stride k_stride
        const float *V = a->v + (b * R + j0) * a->v_stride + kvh * hs; // (nk,hs) stride v_stride
        // S (nq,nk) = Q·Kᵀ
        cp_gemm_f32(0, 1, nq, nk, hs, 1.0f, Q, a->q_stride, K, a->k_stride, 0.0f, w.S, ATT_BK);
        for (int64_t r = 0; r < nq; r++) {
            float *s = w.S + r * ATT_BK;
            int64_t lo, hi;
            cp_attn_visible_keys(a, a->past + i0 + r, &lo, &hi);
            if (hi < j0 || lo >= j0 + nk) { memset(s, 0, (size_t)nk * sizeof *s); continue; }
            score_row(a, apos, s, NULL, j0, nk, b, h, i0 + r);
            float tmax = -INFINITY;
            for (int64_t j = 0; j < nk; j++) {
                if (!keeps(mask, lo, hi, j0 + j)) s[j] = -INFINITY;
                tmax = s[j] > tmax ? s[j] : tmax;
            }
            if (tmax == -INFINITY) { memset(s, 0, (size_t)nk * sizeof *s); continue; }
            // online softmax: m_new = max(m, tile max); l and acc rescaled by exp(m − m_new)
            const float mold = w.m[r], mnew = mold > tmax ? mold : tmax;
            const float corr = mold == -INFINITY ? 0.0f : cp_expf(mold - mnew);
            float sum = 0.0f;
            for (int64_t j = 0; j < nk; j++) {
                const float e = s[j] == -INFINITY ? 0.0f : cp_expf(s[j] - mnew);
                s[j] = e;
                sum += e;
            }
            w.l[r] = w.l[r] * corr + sum;
            w.m[r] = mnew;
            if (corr != 1.0f)
                for (int64_t d = 0; d < hs; d++) w.acc[r * hs + d] *= corr;
            if (single) /* l is final: P = e / l before the product, as attention.c rounds it */
                for (int64_t j = 0; j < nk; j++) s[j] /= sum;
            // out = dropout(P)·V: the weights dropped, the sum l not
            if (drop) cp_dropout_apply_row(&a->dropout, s, s, row0 + i0 + r + DSHIFT(a), j0, nk);
        }
        // acc (nq,hs) += exp(S − m)·V
        cp_gemm_f32(0, 0, nq, hs, nk, 1.0f, w.S, ATT_BK, V, a->v_stride, 1.0f, w.acc, hs);
    }
    for (int64_t r = 0; r < nq; r++) {
        float *o = a->out + (b * T + i0 + r) * C + h * hs;
        if (a->stats) { a->stats[(row0 + i0 + r) * 2] = w.m[r]; a->stats[(row0 + i0 + r) * 2 + 1] = w.l[r]; }
        if (w.l[r] > 0.0f) {
            if (single) memcpy(o, w.acc + r * hs, (size_t)hs * sizeof *o);
            else for (int64_t d = 0; d < hs; d++) o[d] = w.acc[r * hs + d] / w.l[r];
            continue;
        }
        /* a query that sees no key: uniform over its spread (attention.c's rule) */
        int64_t lo, hi;
        empty_spread(a, i0 + r, &lo, &hi);
        const float n = (float)(hi - lo + 1);
        memset(o, 0, (size_t)hs * sizeof *o);
        for (int64_t j = lo; j <= hi; j++) {
            const float *vj = a->v + (b * R + j) * a->v_stride + kvh * hs;
            float wj = 1.0f / n;
            if (drop) cp_dropout_apply_row(&a->dropout, &wj, &wj, row0 + i0 + r + DSHIFT(a), j, 1);
            for (int64_t d = 0; d < hs; d++) o[d] += wj * vj[d];
        }
    }
}

cp_status cp_attn_fused_forward(const cp_attention_args *a, cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs;
    if (cp_attn_check_args(a) != CP_OK) return CP_ERR;
    float *apos;
    if (cp_attn_alibi_positions(a, scratch, &apos) != CP_OK) return CP_ERR;
    const int64_t n_qt = (T + ATT_BQ - 1) / ATT_BQ;
    const int nthreads = omp_get_max_threads();
    const size_t per_thread = (size_t)(ATT_BQ * ATT_BK + ATT_BQ * hs + 2 * ATT_BQ);
    float *all = cp_arena_floats(scratch, (size_t)nthreads * per_thread, "fused attention scratch");
    if (!all) return CP_ERR;
    /* the last query tiles of a causal head see the most keys: they go first */
#pragma omp parallel for collapse(3) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t qi = 0; qi < n_qt; qi++) {
                float *t = all + (size_t)omp_get_thread_num() * per_thread;
                fwd_scratch w = {t, t + ATT_BQ * ATT_BK, t + ATT_BQ * ATT_BK + ATT_BQ * hs,
                                 t + ATT_BQ * ATT_BK + ATT_BQ * hs + ATT_BQ};
                forward_task(a, apos, b, h, n_qt - 1 - qi, w);
            }
    return CP_OK;
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* One thread's backward state: tiles (BQ,BK) for P, dP and dropout(P), the cap's tanh, dQ (BQ,hs),
 * D (BQ), and dK, dV accumulators (nb, NKV, TK, hs) with a touched flag per (b, kv head, key tile). */
typedef struct {
    float *P, *dP, *Pd, *Tc, *dQ, *D, *dK, *dV;
    unsigned char *touched;
} bwd_scratch;

typedef struct {
    const cp_attention_args *a;
    const float *apos, *dout;
    float *dq;
    int64_t b0, nb, n_kt; /* the batch rows of this pass: b0..b0+nb-1 */
} bwd_pass;

/* This thread's dK, dV tile of (b, kv head, key tile), zeroed on first touch. */
static void acc_tiles(const bwd_pass *p, bwd_scratch *w, int64_t b, int64_t kvh, int64_t kt, float **dK, float **dV) {
    const cp_attention_args *a = p->a;
    const int64_t NKV = a->NKV > 0 ? a->NKV : a->NH, TK = cp_attn_n_keys(a), hs = a->hs;
    const int64_t slot = ((b - p->b0) * NKV + kvh) * p->n_kt + kt, off = (((b - p->b0) * NKV + kvh) * TK + kt * ATT_BK) * hs;
    *dK = w->dK + off;
    *dV = w->dV + off;
    if (!w->touched[slot]) {
        const size_t n = (size_t)(min64(ATT_BK, TK - kt * ATT_BK) * hs);
        memset(*dK, 0, n * sizeof **dK);
        memset(*dV, 0, n * sizeof **dV);
        w->touched[slot] = 1;
    }
}

static void backward_task(const bwd_pass *p, bwd_scratch *w, int64_t b, int64_t h, int64_t qt) {
    const cp_attention_args *a = p->a;
    const int64_t T = a->T, NH = a->NH, hs = a->hs, C = NH * hs, R = cp_attn_kv_rows(a), TK = cp_attn_n_keys(a);
    const int64_t kvh = cp_attn_kv_head(a, h), i0 = qt * ATT_BQ, i1 = min64(T, i0 + ATT_BQ), nq = i1 - i0;
    const int64_t *mask = a->key_mask ? a->key_mask + b * R : NULL;
    const int64_t row0 = (b * NH + h) * T + i0; /* the dropout mask row (and stats row) of query i0 */
    const int drop = cp_dropout_on(&a->dropout);
    const float cap = a->softcap;
    const float *Q = a->q + (b * T + i0) * a->q_stride + h * hs; // (nq,hs) stride q_stride
    const float *dO = p->dout + (b * T + i0) * C + h * hs;       // (nq,hs) stride C
    const float *O = a->out + (b * T + i0) * C + h * hs;         // (nq,hs) stride C
    const float *st = a->stats + row0 * 2;                       // (nq,2): m, l
    float *dB = a->d_bias ? a->d_bias + b * a->bias_b_stride + h * a->bias_h_stride : NULL; // row i at i*bias_q_stride
    int any_empty_all = 0;
    for (int64_t r = 0; r < nq; r++) {
        float d = 0.0f; /* D = rowsum(dO ⊙ O) = Σ_j P_j·dP_j */
        for (int64_t k = 0; k < hs; k++) d += dO[r * C + k] * O[r * C + k];
        w->D[r] = d;
        any_empty_all |= st[r * 2 + 1] == 0.0f && a->empty_row == CP_ATTN_EMPTY_ALL;
    }
    memset(w->dQ, 0, (size_t)(nq * hs) * sizeof *w->dQ);
    int64_t kt0, kt1;
    key_tiles(a, i0, i1, any_empty_all, &kt0, &kt1);
    for (int64_t kt = kt0; kt <= kt1; kt++) {
        const int64_t j0 = kt * ATT_BK, nk = min64(ATT_BK, TK - j0);
        const float *K = a->k + (b * R + j0) * a->k_stride + kvh * hs; // (nk,hs) stride k_stride
        const float *V = a->v + (b * R + j0) * a->v_stride + kvh * hs; // (nk,hs) stride v_stride
        // P (nq,nk): the forward's probabilities, recomputed from S = Q·Kᵀ and (m, l)
        cp_gemm_f32(0, 1, nq, nk, hs, 1.0f, Q, a->q_stride, K, a->k_stride, 0.0f, w->P, ATT_BK);
        int any = 0;
        for (int64_t r = 0; r < nq; r++) {
            float *s = w->P + r * ATT_BK;
            const float m = st[r * 2], l = st[r * 2 + 1];
            int64_t lo, hi;
            if (l == 0.0f) { /* empty: uniform over its spread; the scores still matter to the cap's derivative */
                empty_spread(a, i0 + r, &lo, &hi);
                if (cap > 0) score_row(a, p->apos, s, w->Tc + r * ATT_BK, j0, nk, b, h, i0 + r);
                const float u = 1.0f / (float)(hi - lo + 1);
                for (int64_t j = 0; j < nk; j++) s[j] = j0 + j >= lo && j0 + j <= hi ? u : 0.0f;
                any |= lo <= j0 + nk - 1 && hi >= j0;
                continue;
            }
            cp_attn_visible_keys(a, a->past + i0 + r, &lo, &hi);
            if (hi < j0 || lo >= j0 + nk) { /* sees none of these keys: P = 0 (and a finite cap derivative) */
                memset(s, 0, (size_t)nk * sizeof *s);
                if (cap > 0) memset(w->Tc + r * ATT_BK, 0, (size_t)nk * sizeof *s);
                continue;
            }
            score_row(a, p->apos, s, cap > 0 ? w->Tc + r * ATT_BK : NULL, j0, nk, b, h, i0 + r);
            for (int64_t j = 0; j < nk; j++) s[j] = keeps(mask, lo, hi, j0 + j) ? cp_expf(s[j] - m) / l : 0.0f;
            any = 1;
        }
        if (!any) continue;
        // dPd (nq,nk) = dO·Vᵀ; in the forward O = Pd·V with Pd = dropout(P)
        cp_gemm_f32(0, 1, nq, nk, hs, 1.0f, dO, C, V, a->v_stride, 0.0f, w->dP, ATT_BK);
        const float *Pd = w->P;
        if (drop) {
            for (int64_t r = 0; r < nq; r++) {
                cp_dropout_apply_row(&a->dropout, w->Pd + r * ATT_BK, w->P + r * ATT_BK, row0 + r + DSHIFT(a), j0, nk);
                cp_dropout_apply_row(&a->dropout, w->dP + r * ATT_BK, w->dP + r * ATT_BK, row0 + r + DSHIFT(a), j0, nk);
            }
            Pd = w->Pd;
        }
        float *dK, *dV;
        acc_tiles(p, w, b, kvh, kt, &dK, &dV);
        // dV (nk,hs) += Pdᵀ·dO
        cp_gemm_f32(1, 0, nk, hs, nq, 1.0f, Pd, ATT_BK, dO, C, 1.0f, dV, hs);
        // dB = P ⊙ (dP − D) (softcap: · (1 − tanh²)), the bias's gradient; dS = dB·scale
        for (int64_t r = 0; r < nq; r++) {
            const float *pr = w->P + r * ATT_BK, *t = w->Tc + r * ATT_BK, D = w->D[r];
            float *d = w->dP + r * ATT_BK;
            float *db = dB ? dB + (i0 + r) * a->bias_q_stride + j0 : NULL;
            for (int64_t j = 0; j < nk; j++) {
                float u = pr[j] * (d[j] - D);
                if (cap > 0) u *= 1.0f - t[j] * t[j];
                if (db) db[j] += u;
                d[j] = u * a->scale;
            }
        }
        // S = scale·Q·Kᵀ: dQ (nq,hs) += dS·K, dK (nk,hs) += dSᵀ·Q
        cp_gemm_f32(0, 0, nq, hs, nk, 1.0f, w->dP, ATT_BK, K, a->k_stride, 1.0f, w->dQ, hs);
        cp_gemm_f32(1, 0, nk, hs, nq, 1.0f, w->dP, ATT_BK, Q, a->q_stride, 1.0f, dK, hs);
    }
    for (int64_t r = 0; r < nq; r++)
        memcpy(p->dq + (b * T + i0 + r) * a->q_stride + h * hs, w->dQ + r * hs, (size_t)hs * sizeof *w->dQ);
}

cp_status cp_attn_fused_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                 cp_arena *scratch) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, TK = cp_attn_n_keys(a), R = cp_attn_kv_rows(a);
    const int64_t NKV = a->NKV > 0 ? a->NKV : NH;
    if (cp_attn_check_args(a) != CP_OK) return CP_ERR;
    if (!a->stats || !a->out) return cp_error("fused attention backward needs the row statistics and the output of the forward pass");
    float *apos;
    if (cp_attn_alibi_positions(a, scratch, &apos) != CP_OK) return CP_ERR;
    /* a d_bias shared by the batch rows (or by the query rows) is added to by one task only */
    const int shared_b = a->d_bias && a->bias_b_stride == 0 && B > 1, shared_q = a->d_bias && a->bias_q_stride == 0;
    const int64_t nb = shared_b ? B : 1, n_qt = (T + ATT_BQ - 1) / ATT_BQ, n_kt = (TK + ATT_BK - 1) / ATT_BK;
    const int64_t n_qg = shared_q ? 1 : n_qt; /* query tiles per task: all, or one */
    const int nthreads = omp_get_max_threads();
    const size_t tiles = (size_t)(4 * ATT_BQ * ATT_BK + ATT_BQ * hs + ATT_BQ), acc = (size_t)(nb * NKV * TK * hs);
    const size_t per_thread = tiles + 2 * acc, n_flags = (size_t)(nb * NKV * n_kt);
    float *all = cp_arena_floats(scratch, (size_t)nthreads * per_thread, "fused attention gradient scratch");
    unsigned char *flags = cp_arena_alloc(scratch, (size_t)nthreads * n_flags, "fused attention gradient flags");
    if (!all || !flags) return CP_ERR;
    for (int64_t b0 = 0; b0 < B; b0 += nb) {
        const bwd_pass p = {a, apos, dout, dq, b0, nb, n_kt};
        memset(flags, 0, (size_t)nthreads * n_flags);
#pragma omp parallel
        {
            float *t = all + (size_t)omp_get_thread_num() * per_thread;
            bwd_scratch w = {.P = t, .dP = t + ATT_BQ * ATT_BK, .Pd = t + 2 * ATT_BQ * ATT_BK, .Tc = t + 3 * ATT_BQ * ATT_BK,
                             .dQ = t + 4 * ATT_BQ * ATT_BK, .D = t + 4 * ATT_BQ * ATT_BK + ATT_BQ * hs,
                             .dK = t + tiles, .dV = t + tiles + acc, .touched = flags + (size_t)omp_get_thread_num() * n_flags};
#pragma omp for collapse(2) schedule(dynamic, 1)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t qg = 0; qg < n_qg; qg++)
                    for (int64_t b = b0; b < b0 + nb; b++)
                        for (int64_t qt = shared_q ? 0 : n_qt - 1 - qg; qt < (shared_q ? n_qt : n_qt - qg); qt++)
                            backward_task(&p, &w, b, h, qt);
            // dK, dV = the sum of the threads' tiles (zero where no thread touched one)
#pragma omp for collapse(3) schedule(static)
            for (int64_t b = b0; b < b0 + nb; b++)
                for (int64_t kvh = 0; kvh < NKV; kvh++)
                    for (int64_t kt = 0; kt < n_kt; kt++) {
                        const int64_t j0 = kt * ATT_BK, nk = min64(ATT_BK, TK - j0), slot = ((b - b0) * NKV + kvh) * n_kt + kt;
                        const size_t off = (size_t)((((b - b0) * NKV + kvh) * TK + j0) * hs);
                        for (int64_t j = 0; j < nk; j++) {
                            float *gk = dk + (b * R + j0 + j) * a->k_stride + kvh * hs;
                            float *gv = dv + (b * R + j0 + j) * a->v_stride + kvh * hs;
                            memset(gk, 0, (size_t)hs * sizeof *gk);
                            memset(gv, 0, (size_t)hs * sizeof *gv);
                            for (int th = 0; th < nthreads; th++) {
                                if (!flags[(size_t)th * n_flags + (size_t)slot]) continue;
                                const float *sk = all + (size_t)th * per_thread + tiles + off + (size_t)(j * hs);
                                const float *sv = sk + acc;
                                for (int64_t d = 0; d < hs; d++) { gk[d] += sk[d]; gv[d] += sv[d]; }
                            }
                        }
                    }
        }
    }
    return CP_OK;
}
