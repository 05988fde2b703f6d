/*
 * class_eval.c — evaluation of a classification dataset; see class_eval.h.
 */
#include "train/class_eval.h"
#include "core/alloc.h"
#include "train/dist.h"
#include "train/metrics.h"

#include <math.h>
#include <string.h>

static int64_t argmax(const float *x, int64_t K) {
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++)
        if (x[k] > x[best]) best = k;
    return best;
}

/* Where each record's predictions go in the flat prediction buffer: SEQ_CLS one per record, TOKEN_CLS
 * one per token (off[i] .. off[i] + len). */
static int64_t *prediction_offsets(const cp_class_dataset *ds, int token, int64_t *total) {
    int64_t *off = cp_malloc((size_t)(ds->n + 1) * sizeof *off, "prediction offsets");
    if (!off) return NULL;
    off[0] = 0;
    for (int64_t i = 0; i < ds->n; i++) off[i + 1] = off[i] + (token ? ds->examples[i].len : 1);
    *total = off[ds->n];
    return off;
}

/* The metrics from every record's true labels and predictions pred (at off), in file order. */
static cp_status score(const cp_class_dataset *ds, const cp_label_set *names, int token, int single, const double *pred,
                       const int64_t *off, cp_class_scores *out) {
    int64_t ny = 0, *yt = NULL, *yp = NULL, *row_pred = NULL, max_len = 1;
    for (int64_t i = 0; i < ds->n; i++) max_len = ds->examples[i].len > max_len ? ds->examples[i].len : max_len;
    const int64_t total = off[ds->n];
    cp_status st = CP_OK;
    if (cp_resize(&yt, (size_t)(total + 1), sizeof *yt, "labels") || cp_resize(&yp, (size_t)(total + 1), sizeof *yp, "predictions") ||
        cp_resize(&row_pred, (size_t)max_len, sizeof *row_pred, "predictions"))
        st = CP_ERR;
    cp_seqeval sq;
    cp_seqeval_init(&sq);
    for (int64_t i = 0; i < ds->n && st == CP_OK && (token || single); i++) {
        const cp_class_example *ex = &ds->examples[i];
        if (!token) { yt[ny] = ex->labels[0]; yp[ny++] = (int64_t)pred[off[i]]; continue; }
        for (int64_t t = 0; t < ex->len; t++) {
            row_pred[t] = (int64_t)pred[off[i] + t];
            if (ex->labels[t] != -100) { yt[ny] = ex->labels[t]; yp[ny++] = row_pred[t]; }
        }
        st = cp_seqeval_add_ids(&sq, (const char *const *)names->names, names->n, ex->labels, row_pred, ex->len);
    }
    if (st == CP_OK && ny) out->accuracy = cp_metric_accuracy(yt, yp, ny);
    if (st == CP_OK && single && ny) st = cp_metric_macro_f1(yt, yp, ny, &out->macro_f1);
    if (st == CP_OK && token) {
        cp_prf p = cp_seqeval_micro(&sq);
        out->precision = p.precision;
        out->recall = p.recall;
        out->f1 = p.f1;
        out->n_true_entities = p.n_true;
        out->n_pred_entities = p.n_pred;
    }
    cp_seqeval_free(&sq);
    cp_free(yt);
    cp_free(yp);
    cp_free(row_pred);
    return st;
}

cp_status cp_class_evaluate(cp_model *m, const cp_class_dataset *ds, const cp_label_set *names, int64_t pad_id, int64_t batch,
                            cp_class_record_fn fn, void *user, cp_class_scores *out) {
    *out = (cp_class_scores){.loss = NAN, .accuracy = NAN, .macro_f1 = NAN, .precision = NAN, .recall = NAN, .f1 = NAN};
    const int64_t K = cp_model_num_labels(m);
    const int token = ds->task == CP_CLASS_TOKEN;
    const int single = !token && ds->problem == CP_PROBLEM_SINGLE_LABEL;
    if (K < 1) return cp_error("%s: the model has no classification head", cp_model_task_type(m));
    if (ds->num_labels != K)
        return cp_error("the data has %lld labels but the model's head has %lld outputs", (long long)ds->num_labels, (long long)K);
    /* under MPI (and no per-record callback) rank r runs batches r, r + N, ...: the loss sums and the
     * predictions (zero where another rank's) are summed over the ranks, so every rank scores the
     * whole set in file order, as one process does */
    const int64_t N = fn ? 1 : cp_dist_size(), rank = fn ? 0 : cp_dist_rank();
    cp_class_batch cb = {0};
    float *logits = NULL;
    size_t cap = 0;
    int64_t total = 0, *off = prediction_offsets(ds, token, &total);
    double *pred = off ? cp_calloc((size_t)(total + 1), sizeof *pred, "predictions") : NULL;
    double sums[2] = {0, 0}; /* loss · items, items */
    cp_status st = pred ? CP_OK : CP_ERR;
    for (int64_t s = rank * batch; s < ds->n && st == CP_OK; s += N * batch) {
        if ((st = cp_class_batch_make(ds, NULL, s, batch, pad_id, &cb)) != CP_OK) break;
        const int64_t B = cb.B, T = cb.T;
        size_t need = (size_t)(token ? B * T * K : B * K);
        if (need > cap) {
            if ((st = cp_resize(&logits, need, sizeof *logits, "logits")) != CP_OK) break;
            cap = need;
        }
        cp_batch b = {.B = B, .T = T, .input_ids = cb.input_ids, .attention_mask = cb.attention_mask,
                      .token_type_ids = cb.token_type_ids, .labels = cb.labels, .label_values = cb.label_values};
        cp_outputs o = {.logits = logits};
        if ((st = cp_model_forward(m, &b, &o)) != CP_OK) break;
        if (o.loss_tokens) { sums[0] += o.loss * (double)o.loss_tokens; sums[1] += (double)o.loss_tokens; }
        for (int64_t r = 0; r < B && st == CP_OK; r++) {
            const cp_class_example *ex = &ds->examples[s + r];
            const float *lr = logits + r * (token ? T : 1) * K; // (T,K) or (K)
            if (token) for (int64_t t = 0; t < ex->len; t++) pred[off[s + r] + t] = (double)argmax(lr + t * K, K);
            else pred[off[s + r]] = (double)argmax(lr, K);
            if (fn) st = fn(user, ex, s + r, lr, K);
        }
    }
    cp_class_batch_free(&cb);
    cp_free(logits);
    /* a rank's failure here is its own: the trainer ends the job (cp_dist_abort) */
    if (st == CP_OK && N > 1 &&
        (cp_dist_sum_f64(sums, 2, "summing the evaluation loss") != CP_OK || cp_dist_sum_f64(pred, (int)total, "gathering the predictions") != CP_OK))
        st = CP_ERR;
    if (st == CP_OK) {
        out->loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
        st = score(ds, names, token, single, pred, off, out);
    }
    cp_free(off);
    cp_free(pred);
    return st;
}
