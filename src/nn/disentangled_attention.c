/*
 * disentangled_attention.c — DeBERTa's disentangled self-attention core, forward and backward; the
 * formulas, shapes and what transformers does are in disentangled_attention.h.
 *
 * One task per (batch row, head) in the forward: three GEMMs give the content scores Q·Kᵀ (T,T) and
 * the position products Q·PKᵀ and K·PQᵀ (T,W) over the W positional rows the gathers read (all
 * 2·span when the sequence is long enough, fewer for a short one: used_rows), the c2p / p2c terms
 * are gathered from them by relative position, then the mask, a max-subtracted softmax per row and
 * O = P·V. The backward runs one task per head, looping over the batch rows inside it, so the
 * gradients of the positional projections (shared by the batch) add up without races; the gathered
 * gradients are scattered back into (T,W) matrices and multiplied out with GEMMs.
 * Cost O(B·NH·T·(T + W)·hs); memory per thread O(T·(T + W) + (T + W)·hs).
 */
#include "nn/disentangled_attention.h"
#include "kernels/gemm.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* The key offset of this call's dropout rows in the global batch (a data-parallel shard; nn/dropout.h). */
#define DSHIFT(a) cp_dropout_batch_shift(&(a)->dropout, (a)->B * (a)->NH * (a)->T)

static cp_status check_args(const cp_disentangled_args *a) {
    if (a->version != CP_DEBERTA_V1 && a->version != CP_DEBERTA_V2)
        return cp_error("disentangled attention: version %d, expected 1 (deberta) or 2 (deberta-v2)", (int)a->version);
    if (a->B < 1 || a->T < 1 || a->NH < 1 || a->hs < 1)
        return cp_error("disentangled attention: B, T, NH, hs = %lld, %lld, %lld, %lld must all be >= 1",
                        (long long)a->B, (long long)a->T, (long long)a->NH, (long long)a->hs);
    if (a->scale_factor < 1)
        return cp_error("disentangled attention: scale_factor = %lld, expected >= 1 (1 + the c2p/p2c terms)",
                        (long long)a->scale_factor);
    if ((a->pos_key || a->pos_query) && (a->span < 1 || !a->rel_pos))
        return cp_error("disentangled attention: c2p/p2c need the relative positions and a span >= 1 (span = %lld%s)",
                        (long long)a->span, a->rel_pos ? "" : ", rel_pos NULL");
    return CP_OK;
}

/* s = sqrt(f32(hs) · scale_factor), in float32 as scaled_size_sqrt. */
static float score_scale(const cp_disentangled_args *a) {
    return sqrtf((float)a->hs * (float)a->scale_factor);
}

static inline int64_t clamp_index(int64_t x, int64_t span) {
    return x < 0 ? 0 : x > 2 * span - 1 ? 2 * span - 1 : x;
}

/* The positional rows the gathers read: c(i,j) and p(i,j) over all pairs fall in [lo, lo + n). A
 * short sequence reads few of the 2·span rows (DeBERTa-v3: 512 rows, |i − j| < T), so the position
 * products are computed on these rows only. */
typedef struct { int64_t lo, n; } row_window;

static row_window used_rows(const cp_disentangled_args *a) {
    row_window r = {0, 0};
    if (!a->pos_key && !a->pos_query) return r;
    int64_t lo = 2 * a->span, hi = -1;
    for (int64_t x = 0; x < a->T * a->T; x++) {
        const int64_t c = clamp_index(a->rel_pos[x] + a->span, a->span), p = clamp_index(-a->rel_pos[x] + a->span, a->span);
        lo = c < lo ? c : lo; lo = p < lo ? p : lo;
        hi = c > hi ? c : hi; hi = p > hi ? p : hi;
    }
    r.lo = lo; r.n = hi - lo + 1;
    return r;
}

/* dst (n,hs) = src (n,hs; row stride ld) / s: the operand transformers divides before a product. */
static void divided_copy(float *dst, const float *src, int64_t ld, int64_t n, int64_t hs, float s) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t d = 0; d < hs; d++) dst[r * hs + d] = src[r * ld + d] / s;
}

/* The scores of batch row b, head h into S (T,T): content + (c2p + p2c), masked with finfo.min.
 * rows: the positional rows read; w is this thread's scratch of T·hs + W·hs + 2·T·W floats, W = rows.n. */
static void scores_task(const cp_disentangled_args *a, row_window rows, int64_t b, int64_t h, float *S, float *w) {
    const int64_t T = a->T, hs = a->hs, W = rows.n, lo = rows.lo;
    const float s = score_scale(a);
    const float *Q = a->q + b * T * a->q_stride + h * hs;                        // (T,hs) stride q_stride
    const float *K = a->k + b * T * a->k_stride + h * hs;                        // (T,hs) stride k_stride
    const float *PK = a->pos_key ? a->pos_key + lo * a->pos_key_stride + h * hs : NULL;         // (W,hs) rows lo..
    const float *PQ = a->pos_query ? a->pos_query + lo * a->pos_query_stride + h * hs : NULL;   // (W,hs) rows lo..
    float *scaled = w, *scaled_pq = w + T * hs, *Cf = scaled_pq + W * hs, *Pf = Cf + T * W;
    const float *Qd = Q, *Kd = K, *PQd = PQ; /* the operands as transformers multiplies them */
    int64_t ldq = a->q_stride, ldk = a->k_stride, ldpq = a->pos_query_stride;
    if (a->version == CP_DEBERTA_V1) {
        /* query_layer = query_layer / scale; pos_query_layer /= scale */
        divided_copy(scaled, Q, a->q_stride, T, hs, s);
        Qd = scaled; ldq = hs;
        if (PQ) { divided_copy(scaled_pq, PQ, a->pos_query_stride, W, hs, s); PQd = scaled_pq; ldpq = hs; }
    } else {
        /* bmm(query_layer, key_layer.transpose(-1, -2) / scale) */
        divided_copy(scaled, K, a->k_stride, T, hs, s);
        Kd = scaled; ldk = hs;
    }
    // S (T,T) = Q·Kᵀ
    cp_gemm_f32(0, 1, T, T, hs, 1.0f, Qd, ldq, Kd, ldk, 0.0f, S, T);
    // Cf (T,W) = Q·PKᵀ (v1: Q/s), Pf (T,W) = K·PQᵀ (v1: PQ/s)
    if (PK) cp_gemm_f32(0, 1, T, W, hs, 1.0f, Qd, ldq, PK, a->pos_key_stride, 0.0f, Cf, W);
    if (PQ) cp_gemm_f32(0, 1, T, W, hs, 1.0f, K, a->k_stride, PQd, ldpq, 0.0f, Pf, W);
    const int64_t *m = a->key_mask ? a->key_mask + b * T : NULL;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) {
            float *sij = S + i * T + j;
            if (PK || PQ) {
                float rel = 0.0f;
                if (PK) {
                    const float c2p = Cf[i * W + clamp_index(a->rel_pos[i * T + j] + a->span, a->span) - lo];
                    rel = a->version == CP_DEBERTA_V1 ? c2p : c2p / s;
                }
                if (PQ) {
                    const float p2c = Pf[j * W + clamp_index(-a->rel_pos[j * T + i] + a->span, a->span) - lo];
                    rel += a->version == CP_DEBERTA_V1 ? p2c : p2c / s;
                }
                *sij += rel;
            }
            if (m && !(m[i] && m[j])) *sij = -FLT_MAX; /* masked_fill(~mask, finfo.min) */
        }
}

/* Softmax over each of the T rows of S in place. A fully masked row is all finfo.min: every entry
 * equals the max, so it comes out uniform, as PyTorch's softmax gives it. */
static void softmax_rows(float *S, int64_t T) {
    for (int64_t i = 0; i < T; i++) {
        float *r = S + i * T, mx = r[0], sum = 0.0f;
        for (int64_t j = 1; j < T; j++) mx = r[j] > mx ? r[j] : mx;
        for (int64_t j = 0; j < T; j++) { r[j] = expf(r[j] - mx); sum += r[j]; }
        for (int64_t j = 0; j < T; j++) r[j] /= sum;
    }
}

static cp_status forward(const cp_disentangled_args *a, cp_arena *scratch) {
    if (check_args(a) != CP_OK) return CP_ERR;
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs;
    const row_window rows = used_rows(a);
    const int64_t W = rows.n;
    const int drop = cp_dropout_on(&a->dropout);
    /* scores_task's scratch, then S when probs is not kept, then dropout(P) */
    const int64_t per_thread = T * hs + W * hs + 2 * T * W + (a->probs ? 0 : T * T) + (drop ? T * T : 0);
    const int nthreads = omp_get_max_threads();
    float *w_all = cp_arena_floats(scratch, (size_t)nthreads * (size_t)per_thread, "disentangled attention scratch");
    if (!w_all) return CP_ERR;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            float *w = w_all + (size_t)omp_get_thread_num() * (size_t)per_thread;
            float *rest = w + T * hs + W * hs + 2 * T * W;
            float *S = a->probs ? a->probs + (b * NH + h) * T * T : rest; // (T,T)
            scores_task(a, rows, b, h, S, w);
            softmax_rows(S, T);
            const float *Pv = S; /* what weighs the values: P, or dropout(P) (mask row (b·NH + h)·T + i) */
            if (drop) {
                float *Pd = rest + (a->probs ? 0 : T * T);
                for (int64_t i = 0; i < T; i++) /* row by row: this task already runs on one thread of many */
                    cp_dropout_apply_row(&a->dropout, Pd + i * T, S + i * T, (b * NH + h) * T + i + DSHIFT(a), 0, T);
                Pv = Pd;
            }
            // O (T,hs) = Pv·V, rows of out at stride C
            cp_gemm_f32(0, 0, T, hs, T, 1.0f, Pv, T, a->v + b * T * a->v_stride + h * hs, a->v_stride, 0.0f,
                        a->out + b * T * C + h * hs, C);
        }
    return CP_OK;
}

/* Rows [lo, lo + n) of head h's columns of a (2·span, ·) positional gradient are written by the
 * GEMMs; the others get no gradient: zero them. */
static void zero_unused_rows(float *d, int64_t stride, int64_t span, row_window rows, int64_t h, int64_t hs) {
    for (int64_t r = 0; r < 2 * span; r++)
        if (r < rows.lo || r >= rows.lo + rows.n) memset(d + r * stride + h * hs, 0, (size_t)hs * sizeof *d);
}

/* The backward of head h over every batch row. w: this thread's T·T + 2·T·W floats, W = rows.n, and
 * with dropout T·T more for dropout(P). */
static void backward_task(const cp_disentangled_args *a, row_window rows, int64_t h, const float *dout, float *dq,
                          float *dk, float *dv, float *d_pos_key, float *d_pos_query, float *w) {
    const int64_t B = a->B, T = a->T, NH = a->NH, hs = a->hs, C = NH * hs, W = rows.n, lo = rows.lo;
    const float s = score_scale(a);
    const int c2p = a->pos_key != NULL, p2c = a->pos_query != NULL;
    float *dP = w, *Gc = w + T * T, *Gp = Gc + T * W;
    const float *PK = c2p ? a->pos_key + lo * a->pos_key_stride + h * hs : NULL;         // (W,hs) rows lo..
    const float *PQ = p2c ? a->pos_query + lo * a->pos_query_stride + h * hs : NULL;     // (W,hs) rows lo..
    float *dPK = d_pos_key ? d_pos_key + lo * a->pos_key_stride + h * hs : NULL;
    float *dPQ = d_pos_query ? d_pos_query + lo * a->pos_query_stride + h * hs : NULL;
    if (dPK) zero_unused_rows(d_pos_key, a->pos_key_stride, a->span, rows, h, hs);
    if (dPQ) zero_unused_rows(d_pos_query, a->pos_query_stride, a->span, rows, h, hs);
    for (int64_t b = 0; b < B; b++) {
        const float *P = a->probs + (b * NH + h) * T * T;                     // (T,T)
        const float *dO = dout + b * T * C + h * hs;                           // (T,hs) stride C
        const float *Q = a->q + b * T * a->q_stride + h * hs;                  // (T,hs) stride q_stride
        const float *K = a->k + b * T * a->k_stride + h * hs;                  // (T,hs) stride k_stride
        const float *V = a->v + b * T * a->v_stride + h * hs;                  // (T,hs) stride v_stride
        float *dQ = dq + b * T * a->q_stride + h * hs;
        float *dK = dk + b * T * a->k_stride + h * hs;
        float *dV = dv + b * T * a->v_stride + h * hs;
        const int64_t *m = a->key_mask ? a->key_mask + b * T : NULL;
        const int drop = cp_dropout_on(&a->dropout);
        const float *Pv = P; /* what weighed the values: P, or dropout(P) drawn again */
        for (int64_t i = 0; i < T && drop; i++) /* row by row: one thread's task */
            cp_dropout_apply_row(&a->dropout, Gp + T * W + i * T, P + i * T, (b * NH + h) * T + i + DSHIFT(a), 0, T);
        if (drop) Pv = Gp + T * W;
        // in the forward pass this was O = Pv·V, so dV = Pvᵀ·dO and dPv = dO·Vᵀ
        cp_gemm_f32(1, 0, T, hs, T, 1.0f, Pv, T, dO, C, 0.0f, dV, a->v_stride);
        cp_gemm_f32(0, 1, T, T, hs, 1.0f, dO, C, V, a->v_stride, 0.0f, dP, T);
        for (int64_t i = 0; i < T && drop; i++) // Pv = dropout(P): dP = mask · dPv
            cp_dropout_apply_row(&a->dropout, dP + i * T, dP + i * T, (b * NH + h) * T + i + DSHIFT(a), 0, T);
        // softmax backward dS = P ⊙ (dP − Σ_j dP_j P_j); masked_fill passes nothing to masked
        // scores; then every score term was divided by s: G = dS / s
        for (int64_t i = 0; i < T; i++) {
            const float *p = P + i * T;
            float *d = dP + i * T, dot = 0.0f;
            for (int64_t j = 0; j < T; j++) dot += d[j] * p[j];
            for (int64_t j = 0; j < T; j++)
                d[j] = m && !(m[i] && m[j]) ? 0.0f : p[j] * (d[j] - dot) / s;
        }
        // content: S = Q·Kᵀ/s, so dQ = G·K and dK = Gᵀ·Q
        cp_gemm_f32(0, 0, T, hs, T, 1.0f, dP, T, K, a->k_stride, 0.0f, dQ, a->q_stride);
        cp_gemm_f32(1, 0, T, hs, T, 1.0f, dP, T, Q, a->q_stride, 0.0f, dK, a->k_stride);
        if (c2p) {
            // c2p[i,j] = Q_i·PK[c(i,j)]/s: scatter G into Gc[i, c(i,j)], then dQ += Gc·PK, dPK += Gcᵀ·Q
            memset(Gc, 0, (size_t)(T * W) * sizeof *Gc);
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < T; j++)
                    Gc[i * W + clamp_index(a->rel_pos[i * T + j] + a->span, a->span) - lo] += dP[i * T + j];
            cp_gemm_f32(0, 0, T, hs, W, 1.0f, Gc, W, PK, a->pos_key_stride, 1.0f, dQ, a->q_stride);
            if (dPK) cp_gemm_f32(1, 0, W, hs, T, 1.0f, Gc, W, Q, a->q_stride, b ? 1.0f : 0.0f, dPK, a->pos_key_stride);
        }
        if (p2c) {
            // p2c[i,j] = K_j·PQ[p(i,j)]/s: scatter G into Gp[j, p(i,j)], then dK += Gp·PQ, dPQ += Gpᵀ·K
            memset(Gp, 0, (size_t)(T * W) * sizeof *Gp);
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < T; j++)
                    Gp[j * W + clamp_index(-a->rel_pos[j * T + i] + a->span, a->span) - lo] += dP[i * T + j];
            cp_gemm_f32(0, 0, T, hs, W, 1.0f, Gp, W, PQ, a->pos_query_stride, 1.0f, dK, a->k_stride);
            if (dPQ) cp_gemm_f32(1, 0, W, hs, T, 1.0f, Gp, W, K, a->k_stride, b ? 1.0f : 0.0f, dPQ, a->pos_query_stride);
        }
    }
}

static cp_status backward(const cp_disentangled_args *a, const float *dout, float *dq, float *dk, float *dv,
                          float *d_pos_key, float *d_pos_query, cp_arena *scratch) {
    if (check_args(a) != CP_OK) return CP_ERR;
    if (!a->probs) return cp_error("disentangled attention backward needs the probabilities saved by the forward pass");
    if ((d_pos_key && !a->pos_key) || (d_pos_query && !a->pos_query))
        return cp_error("disentangled attention backward: a gradient asked for a positional input (%s) the forward "
                        "did not have", d_pos_key && !a->pos_key ? "pos_key" : "pos_query");
    const row_window rows = used_rows(a);
    const int64_t T = a->T, W = rows.n, per_thread = T * T + 2 * T * W + (cp_dropout_on(&a->dropout) ? T * T : 0);
    const int nthreads = omp_get_max_threads();
    float *w_all = cp_arena_floats(scratch, (size_t)nthreads * (size_t)per_thread, "disentangled attention gradients");
    if (!w_all) return CP_ERR;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t h = 0; h < a->NH; h++)
        backward_task(a, rows, h, dout, dq, dk, dv, d_pos_key, d_pos_query,
                      w_all + (size_t)omp_get_thread_num() * (size_t)per_thread);
    return CP_OK;
}

/* The public entry points: the per-thread buffers go back to the arena on return. */
cp_status cp_disentangled_attention_forward(const cp_disentangled_args *a, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = forward(a, scratch);
    cp_arena_release(scratch, mark);
    return st;
}

cp_status cp_disentangled_attention_backward(const cp_disentangled_args *a, const float *dout, float *dq, float *dk,
                                             float *dv, float *d_pos_key, float *d_pos_query, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = backward(a, dout, dq, dk, dv, d_pos_key, d_pos_query, scratch);
    cp_arena_release(scratch, mark);
    return st;
}
