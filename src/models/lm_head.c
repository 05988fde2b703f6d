/*
 * lm_head.c — LM head GEMM and shifted cross-entropy; see lm_head.h.
 *
 * The log-sum-exp over each vocabulary row runs in the vectorised kernels (kernels/vector.h): with a
 * small hidden size the V exps per row cost more than the GEMM that made the row.
 *
 * The loss alone (no logits asked for, no LoRA on the head: evaluation) never writes a whole row of
 * logits: the vocabulary is cut into tiles of LM_TILE_COLS columns, the tiles are shared out between
 * the threads, and each thread makes a tile's logits (rows, cols) with one GEMM into a buffer that
 * stays in L2, folds it into a running log-sum-exp per row (max m and Σ exp(x - m)) and moves on.
 * The threads' partial sums are merged at the end, in thread order. Otherwise (logits wanted, a LoRA
 * head, the backward pass) a chunk of full rows is made first and reduced after.
 */
#include "models/lm_head.h"
#include "core/profile.h"
#include "kernels/vector.h"
#include "models/proj.h"
#include "nn/linear.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define LM_CHUNK_ROWS 128
#define LM_TILE_COLS 512 /* a (LM_CHUNK_ROWS, 512) block of logits: 256 KiB, in L2 while it is reduced */

static cp_status check_labels(const int64_t *labels, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != CP_IGNORE_INDEX && (labels[i] < 0 || labels[i] >= V))
            return cp_error("labels: value %lld at position %lld is outside [0, %lld) and is not -100",
                            (long long)labels[i], (long long)i, (long long)V);
    return CP_OK;
}

/* The target of row (b,t) after the shift (shift 1: the causal LM's next token; 0: the label at the
 * row itself, SEQ_2_SEQ_LM), or CP_IGNORE_INDEX. */
static inline int64_t target_of(const int64_t *labels, int64_t b, int64_t t, int64_t T, int shift) {
    return t + shift < T ? labels[b * T + t + shift] : CP_IGNORE_INDEX;
}

/* From row *r of h (N,C) on, copies up to LM_CHUNK_ROWS rows that have a target into rows (n,C),
 * their targets into targets (n) and, when non-NULL, their row numbers into where (n); advances *r
 * past the rows looked at and returns n. */
static int64_t gather_targets(const int64_t *labels, int shift, const float *h, int64_t N, int64_t T, int64_t C, int64_t *r,
                              float *rows, int64_t *targets, int64_t *where) {
    int64_t n = 0;
    for (; *r < N && n < LM_CHUNK_ROWS; (*r)++) {
        const int64_t y = target_of(labels, *r / T, *r % T, T, shift);
        if (y == CP_IGNORE_INDEX) continue;
        memcpy(rows + n * C, h + *r * C, (size_t)C * sizeof *rows);
        if (where) where[n] = *r;
        targets[n++] = y;
    }
    return n;
}

/* Running log-sum-exp of one row: max m and s = Σ exp(x - m) over the tiles seen so far. */
typedef struct { double m, s; } lse_acc;

/* Folds a part with max mt and sum st (relative to mt) into *a. */
static inline void lse_merge(lse_acc *a, double mt, double st) {
    if (st == 0.0) return; /* nothing seen: keeps an empty accumulator empty */
    if (a->s == 0.0) { a->m = mt; a->s = st; }
    else if (mt > a->m) { a->s = a->s * exp(a->m - mt) + st; a->m = mt; }
    else a->s += st * exp(mt - a->m);
}

/* Adds to *total the cross-entropy of the n rows (n,C) against targets (n) under the head W (V,C)
 * (an NT weight in its own dtype), tile by tile as the header says. Needs no LoRA on the head. */
static cp_status tiled_loss(const cp_weight *W, const float *rows, const int64_t *targets, int64_t n, int64_t C, int64_t V,
                            double *total, cp_arena *scratch) {
    const int nth = omp_get_max_threads();
    const int64_t n_tiles = (V + LM_TILE_COLS - 1) / LM_TILE_COLS;
    cp_arena_mark mark = cp_arena_get_mark(scratch); /* released at the end: called once per chunk */
    float *tiles = cp_arena_floats(scratch, (size_t)nth * LM_CHUNK_ROWS * LM_TILE_COLS, "LM head logit tiles");
    lse_acc *acc = cp_arena_alloc(scratch, (size_t)nth * LM_CHUNK_ROWS * sizeof *acc, "LM head log-sum-exp");
    float *picked = cp_arena_floats(scratch, LM_CHUNK_ROWS, "LM head target logits");
    if (!tiles || !acc || !picked) { cp_arena_release(scratch, mark); return CP_ERR; }
    memset(acc, 0, (size_t)nth * LM_CHUNK_ROWS * sizeof *acc);
#pragma omp parallel num_threads(nth)
    {
        const int th = omp_get_thread_num();
        float *L = tiles + (size_t)th * LM_CHUNK_ROWS * LM_TILE_COLS; // (n, cols)
        lse_acc *a = acc + (size_t)th * LM_CHUNK_ROWS;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n_tiles; t++) {
            const int64_t v0 = t * LM_TILE_COLS, nv = V - v0 < LM_TILE_COLS ? V - v0 : LM_TILE_COLS;
            // L (n, nv) = rows (n,C) · W[v0 : v0+nv]ᵀ; inside the parallel region the GEMM runs on this thread
            const cp_weight tile = cp_weight_out_rows(W, v0, nv);
            cp_gemm_forward(L, rows, &tile, n, 0);
            for (int64_t i = 0; i < n; i++) {
                const float *x = L + i * nv, mt = cp_row_max(x, nv);
                lse_merge(&a[i], mt, cp_exp_sum(x, nv, mt));
                if (targets[i] >= v0 && targets[i] < v0 + nv) picked[i] = x[targets[i] - v0];
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        lse_acc all = {0, 0};
        for (int th = 0; th < nth; th++) lse_merge(&all, acc[(size_t)th * LM_CHUNK_ROWS + i].m, acc[(size_t)th * LM_CHUNK_ROWS + i].s);
        *total += all.m + log(all.s) - (double)picked[i];
    }
    cp_arena_release(scratch, mark);
    return CP_OK;
}

void cp_lm_logits_post(const cp_logits_post *post, float *rows, int64_t n, int64_t V) {
    if (!post) return;
    for (int64_t i = 0; post->bias && i < n; i++) cp_add_inplace(rows + i * V, post->bias, V);
    if (post->softcap > 0) { /* eager PyTorch's order: ÷c, tanh, ×c */
        const float c = post->softcap;
#pragma omp parallel for schedule(static) if (n * V > 65536)
        for (int64_t k = 0; k < n * V; k++) rows[k] = tanhf(rows[k] / c) * c;
    }
}

static cp_status head_loss(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h, int64_t B, int64_t T,
                          const int64_t *labels, int shift, float *logits, double *loss_sum, int64_t *n_targets,
                          cp_arena *scratch) {
    const int64_t C = head->in_features, V = head->out_features, N = B * T;
    const cp_weight W = cp_linear_weight(head);
    if (labels && check_labels(labels, N, V) != CP_OK) return CP_ERR;
    double total = 0;
    int64_t count = 0;

    if (logits) {
        if (cp_proj_forward(run, head, logits, h, N) != CP_OK) return CP_ERR;
        cp_lm_logits_post(post, logits, N, V);
        if (labels) {
#pragma omp parallel for reduction(+ : total, count) schedule(static)
            for (int64_t r = 0; r < N; r++) {
                int64_t y = target_of(labels, r / T, r % T, T, shift);
                if (y == CP_IGNORE_INDEX) continue;
                total += cp_cross_entropy_row(logits + r * V, V, y);
                count++;
            }
        }
    } else if (labels) {
        /* Gather the rows that have a target, then run the head over them chunk by chunk. */
        const int tiled = !cp_proj_has_contribution(head) && !head->bias && !post && W.layout == CP_WEIGHT_NT;
        float *rows = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)C, "LM head rows");
        float *chunk = tiled ? NULL : cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)V, "LM head logits");
        int64_t *targets = cp_arena_alloc(scratch, LM_CHUNK_ROWS * sizeof(int64_t), "LM head targets");
        if (!rows || (!tiled && !chunk) || !targets) return CP_ERR;
        int64_t r = 0;
        while (r < N) {
            const int64_t n = gather_targets(labels, shift, h, N, T, C, &r, rows, targets, NULL);
            if (n == 0) break;
            count += n;
            if (tiled) {
                if (tiled_loss(&W, rows, targets, n, C, V, &total, scratch) != CP_OK) return CP_ERR;
                continue;
            }
            if (cp_proj_forward(run, head, chunk, rows, n) != CP_OK) return CP_ERR;
            cp_lm_logits_post(post, chunk, n, V);
#pragma omp parallel for reduction(+ : total) schedule(static)
            for (int64_t i = 0; i < n; i++) total += cp_cross_entropy_row(chunk + i * V, V, targets[i]);
        }
    }
    if (loss_sum) *loss_sum = total;
    if (n_targets) *n_targets = count;
    return CP_OK;
}

static cp_status head_loss_backward(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h, int64_t B,
                                   int64_t T, const int64_t *labels, int shift, double norm, float *dh, double *loss_sum,
                                   int64_t *n_targets, cp_arena *scratch) {
    const int64_t C = head->in_features, V = head->out_features, N = B * T;
    if (check_labels(labels, N, V) != CP_OK) return CP_ERR;
    memset(dh, 0, (size_t)(N * C) * sizeof *dh);
    float *rows = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)C, "LM head rows");
    float *drows = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)C, "LM head row gradients");
    float *chunk = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)V, "LM head logits");
    int64_t *targets = cp_arena_alloc(scratch, LM_CHUNK_ROWS * sizeof(int64_t), "LM head targets");
    int64_t *where = cp_arena_alloc(scratch, LM_CHUNK_ROWS * sizeof(int64_t), "LM head rows index");
    if (!rows || !drows || !chunk || !targets || !where) return CP_ERR;
    const float inv_norm = (float)(1.0 / norm);
    double total = 0;
    int64_t count = 0, r = 0;
    while (r < N) {
        const int64_t n = gather_targets(labels, shift, h, N, T, C, &r, rows, targets, where);
        if (n == 0) break;
        // forward: logits (n,V) = rows·Wᵀ (+ PEFT hooks)
        if (cp_proj_forward(run, head, chunk, rows, n) != CP_OK) return CP_ERR;
        cp_lm_logits_post(post, chunk, n, V);
        // loss and dlogits = (softmax − onehot) / norm, row by row
        const float cap = post ? post->softcap : 0.0f;
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float *x = chunk + i * V;
            const float m = cp_row_max(x, V);
            const double sum = cp_exp_sum(x, V, m);
            total += (double)m + log(sum) - (double)x[targets[i]];
            if (cap > 0) { // x = c·tanh(z/c): dz = dx · (1 − (x/c)²)
                for (int64_t j = 0; j < V; j++) {
                    const float t = x[j] / cap, p = expf(x[j] - m) * (float)(1.0 / sum) * inv_norm;
                    x[j] = (p - (j == targets[i] ? inv_norm : 0.0f)) * (1.0f - t * t);
                }
                continue;
            }
            cp_exp_scale(x, V, m, (float)(1.0 / sum) * inv_norm);
            x[targets[i]] -= inv_norm;
        }
        count += n;
        // backward through the head: drows = dlogits·W (+ hooks), head gradients accumulated
        memset(drows, 0, (size_t)(n * C) * sizeof *drows);
        if (cp_proj_backward(run, head, drows, chunk, rows, n) != CP_OK) return CP_ERR;
        for (int64_t i = 0; i < n; i++) memcpy(dh + where[i] * C, drows + i * C, (size_t)C * sizeof *dh);
    }
    if (loss_sum) *loss_sum = total;
    if (n_targets) *n_targets = count;
    return CP_OK;
}

/* The public entry points: the chunk buffers (LM_CHUNK_ROWS rows of logits, V wide) go back to the
 * arena on return, so they are not held through the backward pass of the blocks that follows. */
cp_status cp_lm_head_loss(const cp_run *run, const cp_module *head, const float *h, int64_t B, int64_t T,
                          const int64_t *labels, float *logits, double *loss_sum, int64_t *n_targets) {
    return cp_lm_head_loss_shift(run, head, NULL, h, B, T, labels, 1, logits, loss_sum, n_targets);
}

cp_status cp_lm_head_loss_backward(const cp_run *run, const cp_module *head, const float *h, int64_t B, int64_t T,
                                   const int64_t *labels, double norm, float *dh, double *loss_sum, int64_t *n_targets) {
    return cp_lm_head_loss_backward_shift(run, head, NULL, h, B, T, labels, 1, norm, dh, loss_sum, n_targets);
}

cp_status cp_lm_head_loss_shift(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h, int64_t B,
                                int64_t T, const int64_t *labels, int shift, float *logits, double *loss_sum, int64_t *n_targets) {
    cp_arena *scratch = run->arena;
    cp_prof_push(CP_PROF_LM_HEAD);
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = head_loss(run, head, post, h, B, T, labels, shift, logits, loss_sum, n_targets, scratch);
    cp_arena_release(scratch, mark);
    cp_prof_pop();
    return st;
}

cp_status cp_lm_head_loss_backward_shift(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h,
                                         int64_t B, int64_t T, const int64_t *labels, int shift, double norm, float *dh,
                                         double *loss_sum, int64_t *n_targets) {
    cp_arena *scratch = run->arena;
    cp_prof_push(CP_PROF_LM_HEAD);
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = head_loss_backward(run, head, post, h, B, T, labels, shift, norm, dh, loss_sum, n_targets, scratch);
    cp_arena_release(scratch, mark);
    cp_prof_pop();
    return st;
}
