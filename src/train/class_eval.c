/*
 * class_eval.c — evaluation of a classification dataset; see class_eval.h.
 */
#include "train/class_eval.h"
#include "core/alloc.h"
#include "train/metrics.h"

#include <math.h>
#include <string.h>

static int64_t argmax(const float *x, int64_t K) {
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++)
        if (x[k] > x[best]) best = k;
    return best;
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
    cp_class_batch cb = {0};
    float *logits = NULL;
    size_t cap = 0;
    int64_t *yt = NULL, *yp = NULL, ny = 0, *row_pred = NULL;
    size_t cap_y = 0, cap_row = 0;
    cp_seqeval sq;
    cp_seqeval_init(&sq);
    double sum = 0;
    int64_t count = 0;
    cp_status st = CP_OK;
    for (int64_t s = 0; s < ds->n && st == CP_OK; s += batch) {
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
        if (o.loss_tokens) { sum += o.loss * (double)o.loss_tokens; count += o.loss_tokens; }
        size_t need_y = (size_t)(ny + (token ? B * T : B));
        if (need_y > cap_y) {
            if ((st = cp_resize(&yt, need_y, sizeof *yt, "labels")) != CP_OK || (st = cp_resize(&yp, need_y, sizeof *yp, "predictions")) != CP_OK)
                break;
            cap_y = need_y;
        }
        if ((size_t)T > cap_row) {
            if ((st = cp_resize(&row_pred, (size_t)T, sizeof *row_pred, "predictions")) != CP_OK) break;
            cap_row = (size_t)T;
        }
        for (int64_t r = 0; r < B && st == CP_OK; r++) {
            const cp_class_example *ex = &ds->examples[s + r];
            if (token) {
                const int64_t *lab = cb.labels + r * T;
                for (int64_t t = 0; t < T; t++) {
                    row_pred[t] = argmax(logits + (r * T + t) * K, K);
                    if (lab[t] != -100) { yt[ny] = lab[t]; yp[ny++] = row_pred[t]; }
                }
                st = cp_seqeval_add_ids(&sq, (const char *const *)names->names, names->n, lab, row_pred, T);
                if (st == CP_OK && fn) st = fn(user, ex, s + r, logits + r * T * K, K);
            } else {
                if (single) { yt[ny] = cb.labels[r]; yp[ny++] = argmax(logits + r * K, K); }
                if (fn) st = fn(user, ex, s + r, logits + r * K, K);
            }
        }
    }
    if (st == CP_OK) {
        out->loss = count ? sum / (double)count : NAN;
        if (ny) out->accuracy = cp_metric_accuracy(yt, yp, ny);
        if (single && ny) st = cp_metric_macro_f1(yt, yp, ny, &out->macro_f1);
        if (token) {
            cp_prf p = cp_seqeval_micro(&sq);
            out->precision = p.precision;
            out->recall = p.recall;
            out->f1 = p.f1;
            out->n_true_entities = p.n_true;
            out->n_pred_entities = p.n_pred;
        }
    }
    cp_seqeval_free(&sq);
    cp_class_batch_free(&cb);
    cp_free(logits);
    cp_free(yt);
    cp_free(yp);
    cp_free(row_pred);
    return st;
}
