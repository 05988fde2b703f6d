/*
 * lm_loss.c — LM head GEMM and shifted cross-entropy; see lm_loss.h.
 */
#include "nn/lm_loss.h"
#include "nn/linear.h"
#include "peft/lora.h"

#include <math.h>
#include <string.h>

#define LM_CHUNK_ROWS 128

double cp_cross_entropy_row(const float *x, int64_t V, int64_t y) {
    float m = -INFINITY;
    for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
    double sum = 0;
    for (int64_t v = 0; v < V; v++) sum += exp((double)x[v] - m);
    return (double)m + log(sum) - (double)x[y];
}

static cp_status check_labels(const int64_t *labels, int64_t n, int64_t V) {
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != CP_IGNORE_INDEX && (labels[i] < 0 || labels[i] >= V))
            return cp_error("labels: value %lld at position %lld is outside [0, %lld) and is not -100",
                            (long long)labels[i], (long long)i, (long long)V);
    return CP_OK;
}

/* The target of row (b,t) after the shift, or CP_IGNORE_INDEX. */
static inline int64_t target_of(const int64_t *labels, int64_t b, int64_t t, int64_t T) {
    return t + 1 < T ? labels[b * T + t + 1] : CP_IGNORE_INDEX;
}

static cp_status head_loss(const cp_module *head, const float *h, int64_t B, int64_t T, const int64_t *labels,
                          float *logits, double *loss_sum, int64_t *n_targets, cp_arena *scratch) {
    const int64_t C = head->in_features, V = head->out_features, N = B * T;
    const float *W = head->weight->data;
    if (labels && check_labels(labels, N, V) != CP_OK) return CP_ERR;
    double total = 0;
    int64_t count = 0;

    if (logits) {
        cp_matmul_nt(logits, h, W, N, C, V, 0);
        if (cp_lora_linear_add(head, logits, h, N, scratch) != CP_OK) return CP_ERR;
        if (labels) {
#pragma omp parallel for reduction(+ : total, count) schedule(static)
            for (int64_t r = 0; r < N; r++) {
                int64_t y = target_of(labels, r / T, r % T, T);
                if (y == CP_IGNORE_INDEX) continue;
                total += cp_cross_entropy_row(logits + r * V, V, y);
                count++;
            }
        }
    } else if (labels) {
        /* Gather the rows that have a target, then run the head over them chunk by chunk. */
        float *rows = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)C, "LM head rows");
        float *chunk = cp_arena_floats(scratch, (size_t)LM_CHUNK_ROWS * (size_t)V, "LM head logits");
        int64_t *targets = cp_arena_alloc(scratch, LM_CHUNK_ROWS * sizeof(int64_t), "LM head targets");
        if (!rows || !chunk || !targets) return CP_ERR;
        int64_t r = 0;
        while (r < N) {
            int64_t n = 0;
            for (; r < N && n < LM_CHUNK_ROWS; r++) {
                int64_t y = target_of(labels, r / T, r % T, T);
                if (y == CP_IGNORE_INDEX) continue;
                memcpy(rows + n * C, h + r * C, (size_t)C * sizeof *rows);
                targets[n++] = y;
            }
            if (n == 0) break;
            cp_matmul_nt(chunk, rows, W, n, C, V, 0);
            if (cp_lora_linear_add(head, chunk, rows, n, scratch) != CP_OK) return CP_ERR;
#pragma omp parallel for reduction(+ : total) schedule(static)
            for (int64_t i = 0; i < n; i++) total += cp_cross_entropy_row(chunk + i * V, V, targets[i]);
            count += n;
        }
    }
    if (loss_sum) *loss_sum = total;
    if (n_targets) *n_targets = count;
    return CP_OK;
}

static cp_status head_loss_backward(const cp_module *head, const float *h, int64_t B, int64_t T, const int64_t *labels,
                                   double norm, float *dh, double *loss_sum, int64_t *n_targets, cp_arena *scratch) {
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
        int64_t n = 0;
        for (; r < N && n < LM_CHUNK_ROWS; r++) {
            int64_t y = target_of(labels, r / T, r % T, T);
            if (y == CP_IGNORE_INDEX) continue;
            memcpy(rows + n * C, h + r * C, (size_t)C * sizeof *rows);
            targets[n] = y;
            where[n++] = r;
        }
        if (n == 0) break;
        // forward: logits (n,V) = rows·Wᵀ (+ LoRA)
        cp_matmul_nt(chunk, rows, head->weight->data, n, C, V, 0);
        if (cp_lora_linear_add(head, chunk, rows, n, scratch) != CP_OK) return CP_ERR;
        // loss and dlogits = (softmax − onehot) / norm, row by row
#pragma omp parallel for reduction(+ : total) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float *x = chunk + i * V;
            float m = -INFINITY;
            for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
            double sum = 0;
            for (int64_t v = 0; v < V; v++) sum += exp((double)x[v] - m);
            total += (double)m + log(sum) - (double)x[targets[i]];
            const float inv = (float)(1.0 / sum);
            for (int64_t v = 0; v < V; v++) x[v] = expf(x[v] - m) * inv * inv_norm;
            x[targets[i]] -= inv_norm;
        }
        count += n;
        // backward through the head: drows = dlogits·W (+ LoRA), head gradients accumulated
        memset(drows, 0, (size_t)(n * C) * sizeof *drows);
        if (cp_linear_backward(head, drows, chunk, rows, n, scratch) != CP_OK) return CP_ERR;
        for (int64_t i = 0; i < n; i++) memcpy(dh + where[i] * C, drows + i * C, (size_t)C * sizeof *dh);
    }
    if (loss_sum) *loss_sum = total;
    if (n_targets) *n_targets = count;
    return CP_OK;
}

/* The public entry points: the chunk buffers (LM_CHUNK_ROWS rows of logits, V wide) go back to the
 * arena on return, so they are not held through the backward pass of the blocks that follows. */
cp_status cp_lm_head_loss(const cp_module *head, const float *h, int64_t B, int64_t T, const int64_t *labels,
                          float *logits, double *loss_sum, int64_t *n_targets, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = head_loss(head, h, B, T, labels, logits, loss_sum, n_targets, scratch);
    cp_arena_release(scratch, mark);
    return st;
}

cp_status cp_lm_head_loss_backward(const cp_module *head, const float *h, int64_t B, int64_t T, const int64_t *labels,
                                   double norm, float *dh, double *loss_sum, int64_t *n_targets, cp_arena *scratch) {
    cp_arena_mark mark = cp_arena_get_mark(scratch);
    cp_status st = head_loss_backward(head, h, B, T, labels, norm, dh, loss_sum, n_targets, scratch);
    cp_arena_release(scratch, mark);
    return st;
}
