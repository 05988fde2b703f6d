/*
 * step.c — one optimizer step over accumulated micro-batches; see step.h.
 */
#include "train/step.h"
#include "peft/peft_model.h"

#include <math.h>

int64_t cp_batch_targets(const cp_batch *b) {
    int64_t n = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 1; t < b->T; t++) n += b->labels[r * b->T + t] != -100;
    return n;
}

cp_status cp_train_step(cp_model *m, cp_adamw *opt, const cp_batch *micro, int n_micro, double lr, double max_grad_norm,
                        int recompute, uint64_t dropout_seed, cp_step_result *res) {
    int64_t n_step = 0, n_tokens = 0;
    for (int i = 0; i < n_micro; i++) {
        n_step += cp_batch_targets(&micro[i]);
        for (int64_t k = 0; k < micro[i].B * micro[i].T; k++) n_tokens += micro[i].attention_mask ? micro[i].attention_mask[k] != 0 : 1;
    }
    res->n_targets = n_step;
    res->n_tokens = n_tokens;
    if (n_step == 0) return cp_error("this step's batches have no target tokens (every label is -100)");
    double loss_sum = 0;
    cp_peft_set_training(m, 1);
    for (int i = 0; i < n_micro; i++) {
        double s = 0;
        int64_t n = 0;
        cp_peft_seed_dropout(m, dropout_seed + (uint64_t)i);
        if (cp_model_forward_backward(m, &micro[i], (double)n_step, recompute, &s, &n) != CP_OK) {
            cp_peft_set_training(m, 0);
            return CP_ERR;
        }
        loss_sum += s;
    }
    cp_peft_set_training(m, 0);
    res->loss = loss_sum / (double)n_step;
    res->grad_norm = cp_clip_grad_norm(opt->params, opt->n, max_grad_norm);
    if (!isfinite(res->loss) || !isfinite(res->grad_norm)) {
        cp_zero_grads(opt->params, opt->n);
        return CP_OK; /* the caller sees the non-finite loss and stops without stepping */
    }
    cp_adamw_step(opt, lr);
    cp_zero_grads(opt->params, opt->n);
    return CP_OK;
}
