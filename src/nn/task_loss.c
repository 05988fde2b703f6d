/*
 * task_loss.c — the problem-type losses of the classification heads; see task_loss.h.
 *
 * Forward and backward are one pass (the backward only adds the d logits writes), so the loss a
 * training step reports is the loss its gradient belongs to. Sums are taken in double; the
 * cross-entropy row uses the same vectorised log-sum-exp as the LM loss (kernels/vector.h), so a
 * token-classification head over a large label set costs what the LM head's reduction does.
 */
#include "nn/task_loss.h"
#include "kernels/vector.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PARALLEL_MIN (1 << 15) /* logits below this many elements are reduced on one thread */

static const char *const NAMES[] = {"auto", "regression", "single_label_classification", "multi_label_classification",
                                    "soft-label cross-entropy"};

const char *cp_problem_type_name(cp_problem_type t) {
    return (unsigned)t < sizeof NAMES / sizeof *NAMES ? NAMES[t] : "unknown";
}

cp_status cp_problem_type_parse(const char *name, cp_problem_type *out) {
    *out = CP_PROBLEM_AUTO;
    if (!name) return CP_OK;
    for (int t = CP_PROBLEM_REGRESSION; t <= CP_PROBLEM_MULTI_LABEL; t++)
        if (strcmp(name, NAMES[t]) == 0) { *out = (cp_problem_type)t; return CP_OK; }
    return cp_error("problem_type: \"%s\" is not one of regression, single_label_classification, "
                    "multi_label_classification (or null)", name);
}

cp_status cp_problem_type_resolve(cp_problem_type configured, int64_t num_labels, const cp_task_labels *labels,
                                  cp_problem_type *out) {
    if (num_labels < 1) return cp_error("num_labels: %lld (expected at least 1)", (long long)num_labels);
    if (configured < CP_PROBLEM_AUTO || configured > CP_PROBLEM_SOFT_LABEL)
        return cp_error("problem_type: unknown value %d", (int)configured);
    if (configured == CP_PROBLEM_SINGLE_LABEL && num_labels == 1) /* transformers' config refuses it too */
        return cp_error("problem_type: \"single_label_classification\" requires num_labels > 1 (for binary "
                        "classification use num_labels 2, or problem_type \"regression\" for one output)");
    if (configured != CP_PROBLEM_AUTO) { *out = configured; return CP_OK; }
    if (num_labels == 1) *out = CP_PROBLEM_REGRESSION;
    else if (labels && labels->ids) *out = CP_PROBLEM_SINGLE_LABEL;
    else *out = CP_PROBLEM_MULTI_LABEL;
    return CP_OK;
}

int64_t cp_task_labels_numel(const cp_task_labels *l) {
    int64_t n = 1;
    for (int d = 0; d < l->ndim && d < 2; d++) n *= l->shape[d];
    return n;
}

double cp_cross_entropy_row(const float *x, int64_t V, int64_t y) {
    const float m = cp_row_max(x, V);
    return (double)m + log(cp_exp_sum(x, V, m)) - (double)x[y];
}

/* "labels[b][j]" / "labels[i]" / "labels" for flat index i of the labels tensor. */
static const char *position(char *buf, size_t size, const cp_task_labels *l, int64_t i) {
    if (l->ndim == 2) snprintf(buf, size, "labels[%lld][%lld]", (long long)(i / l->shape[1]), (long long)(i % l->shape[1]));
    else if (l->ndim == 1) snprintf(buf, size, "labels[%lld]", (long long)i);
    else snprintf(buf, size, "labels");
    return buf;
}

static const char *shape_of(char *buf, size_t size, const cp_task_labels *l) {
    if (l->ndim == 2) snprintf(buf, size, "(%lld, %lld)", (long long)l->shape[0], (long long)l->shape[1]);
    else if (l->ndim == 1) snprintf(buf, size, "(%lld)", (long long)l->shape[0]);
    else snprintf(buf, size, "() (a scalar)");
    return buf;
}

static inline double label_value(const cp_task_labels *l, int64_t i) {
    return l->values ? (double)l->values[i] : (double)l->ids[i];
}

/* Validates the labels for logits (N,K) under a resolved type; *n_items as task_loss.h says. */
static cp_status check_labels(cp_problem_type type, int64_t N, int64_t K, const cp_task_labels *l, int64_t *n_items) {
    char pos[64], shp[64];
    if (!l) return cp_error("labels: none given");
    if (N < 0 || K < 1) return cp_error("logits: shape (%lld, %lld) (expected rows ≥ 0 and num_labels ≥ 1)", (long long)N, (long long)K);
    if ((l->ids == NULL) == (l->values == NULL))
        return cp_error("labels: give either integer class ids or float values (%s)", l->ids ? "both were set" : "neither was set");
    if (l->ndim < 0 || l->ndim > 2) return cp_error("labels: %d dimensions (expected 0, 1 or 2)", l->ndim);
    for (int d = 0; d < l->ndim; d++)
        if (l->shape[d] < 0) return cp_error("labels: dimension %d is %lld", d, (long long)l->shape[d]);
    const int64_t n = cp_task_labels_numel(l);
    const char *name = cp_problem_type_name(type);

    if (type == CP_PROBLEM_SINGLE_LABEL) {
        if (!l->ids)
            return cp_error("labels: %s needs integer class ids (torch.long), got float labels", name);
        if (n != N)
            return cp_error("labels: shape %s holds %lld class ids, expected %lld (one per row of the logits (%lld, %lld))",
                            shape_of(shp, sizeof shp, l), (long long)n, (long long)N, (long long)N, (long long)K);
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t y = l->ids[i];
            if (y == CP_IGNORE_INDEX) continue;
            if (y < 0 || y >= K)
                return cp_error("labels: class id %lld at %s is outside [0, %lld) (num_labels %lld) and is not -100",
                                (long long)y, position(pos, sizeof pos, l, i), (long long)K, (long long)K);
            count++;
        }
        *n_items = count;
        return CP_OK;
    }
    if ((type == CP_PROBLEM_MULTI_LABEL || type == CP_PROBLEM_SOFT_LABEL) && !l->values)
        return cp_error("labels: %s needs float labels (torch.float), one value per label; got integer class ids", name);
    if (type != CP_PROBLEM_REGRESSION && type != CP_PROBLEM_MULTI_LABEL && type != CP_PROBLEM_SOFT_LABEL)
        return cp_error("problem_type: unknown value %d", (int)type);
    /* regression with one label squeezes both sides (any shape of N elements); otherwise (N,K) */
    const int squeezed = type == CP_PROBLEM_REGRESSION && K == 1;
    if (squeezed ? n != N : (l->ndim != 2 || l->shape[0] != N || l->shape[1] != K)) {
        if (squeezed)
            return cp_error("labels: shape %s holds %lld values, expected %lld (%s with num_labels 1: one value per row)",
                            shape_of(shp, sizeof shp, l), (long long)n, (long long)N, name);
        return cp_error("labels: shape %s, expected (%lld, %lld) as the logits (%s, num_labels %lld)",
                        shape_of(shp, sizeof shp, l), (long long)N, (long long)K, name, (long long)K);
    }
    if (l->values)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(l->values[i]))
                return cp_error("labels: value %g at %s is not a finite number", (double)l->values[i],
                                position(pos, sizeof pos, l, i));
    *n_items = type == CP_PROBLEM_SOFT_LABEL ? N : n; /* soft labels: a mean over rows */
    return CP_OK;
}

cp_status cp_task_loss_items(cp_problem_type type, int64_t N, int64_t K, const cp_task_labels *labels, int64_t *n_items) {
    if (cp_problem_type_resolve(type, K, labels, &type) != CP_OK) return CP_ERR;
    return check_labels(type, N, K, labels, n_items);
}

/* One pass over logits (N,K): the summed loss, and when dlogits is non-NULL its gradient times
 * `scale` (softmax − onehot; 2(x − y); sigmoid(x) − y). */
static double loss_pass(cp_problem_type type, const float *logits, int64_t N, int64_t K, const cp_task_labels *l,
                        float *dlogits, double scale) {
    double total = 0;
    if (type == CP_PROBLEM_SINGLE_LABEL) {
#pragma omp parallel for reduction(+ : total) schedule(static) if (N * K > PARALLEL_MIN)
        for (int64_t i = 0; i < N; i++) {
            const float *x = logits + i * K; // (K)
            const int64_t y = l->ids[i];
            if (y == CP_IGNORE_INDEX) {
                if (dlogits) memset(dlogits + i * K, 0, (size_t)K * sizeof *dlogits);
                continue;
            }
            const float m = cp_row_max(x, K);
            const double sum = cp_exp_sum(x, K, m);
            total += (double)m + log(sum) - (double)x[y];
            if (dlogits) {
                float *d = dlogits + i * K;
                memcpy(d, x, (size_t)K * sizeof *d);
                cp_exp_scale(d, K, m, (float)(scale / sum)); // softmax · scale
                d[y] -= (float)scale;
            }
        }
        return total;
    }
    if (type == CP_PROBLEM_SOFT_LABEL) {
#pragma omp parallel for reduction(+ : total) schedule(static) if (N * K > PARALLEL_MIN)
        for (int64_t i = 0; i < N; i++) {
            // -Σ_k y_k·log_softmax(x)_k = Σ_k y_k·(logsumexp(x) − x_k); d x_k = softmax_k·Σy − y_k
            const float *x = logits + i * K; // (K)
            const float m = cp_row_max(x, K);
            const double sum = cp_exp_sum(x, K, m), lse = (double)m + log(sum);
            double ysum = 0;
            for (int64_t k = 0; k < K; k++) {
                const double y = label_value(l, i * K + k);
                ysum += y;
                total += y * (lse - (double)x[k]);
            }
            if (dlogits) {
                float *d = dlogits + i * K;
                memcpy(d, x, (size_t)K * sizeof *d);
                cp_exp_scale(d, K, m, (float)(scale * ysum / sum)); // softmax · Σy · scale
                for (int64_t k = 0; k < K; k++) d[k] -= (float)(label_value(l, i * K + k) * scale);
            }
        }
        return total;
    }
    const int64_t n = N * K;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n > PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        const double x = logits[i], y = label_value(l, i);
        if (type == CP_PROBLEM_REGRESSION) { // MSELoss: (x - y)²
            total += (x - y) * (x - y);
            if (dlogits) dlogits[i] = (float)(2.0 * (x - y) * scale);
        } else { // BCEWithLogitsLoss: (1 - y)·x - log σ(x) = max(x, 0) - x·y + log(1 + e^-|x|)
            total += fmax(x, 0.0) - x * y + log1p(exp(-fabs(x)));
            if (dlogits) dlogits[i] = (float)((1.0 / (1.0 + exp(-x)) - y) * scale);
        }
    }
    return total;
}

cp_status cp_task_loss(cp_problem_type type, const float *logits, int64_t N, int64_t K, const cp_task_labels *labels,
                       double *loss_sum, int64_t *n_items) {
    int64_t items = 0;
    if (cp_problem_type_resolve(type, K, labels, &type) != CP_OK || check_labels(type, N, K, labels, &items) != CP_OK)
        return CP_ERR;
    const double total = loss_pass(type, logits, N, K, labels, NULL, 0);
    if (loss_sum) *loss_sum = total;
    if (n_items) *n_items = items;
    return CP_OK;
}

cp_status cp_task_loss_backward(cp_problem_type type, const float *logits, int64_t N, int64_t K,
                                const cp_task_labels *labels, double norm, float *dlogits, double *loss_sum,
                                int64_t *n_items) {
    int64_t items = 0;
    if (cp_problem_type_resolve(type, K, labels, &type) != CP_OK || check_labels(type, N, K, labels, &items) != CP_OK)
        return CP_ERR;
    if (!(norm >= 0) || isinf(norm))
        return cp_error("norm: %g (expected a positive divisor, or CP_NORM_BATCH_MEAN)", norm);
    const double divisor = norm > 0 ? norm : (double)items;
    const double total = loss_pass(type, logits, N, K, labels, dlogits, divisor > 0 ? 1.0 / divisor : 0.0);
    if (loss_sum) *loss_sum = total;
    if (n_items) *n_items = items;
    return CP_OK;
}
