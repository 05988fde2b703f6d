/*
 * step.c — one optimizer step over accumulated micro-batches; see step.h.
 */
#include "train/step.h"
#include "core/profile.h"
#include "core/alloc.h"
#include "peft/peft_model.h"
#include "train/dist.h"

#include <math.h>

int64_t cp_batch_targets(const cp_batch *b) {
    int64_t n = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 1; t < b->T; t++) n += b->labels[r * b->T + t] != -100;
    return n;
}

int64_t cp_batch_loss_items(const cp_model *m, const cp_batch *b) {
    if (m->task == CP_TASK_SEQ_CLS) /* rows; multi-label BCE averages over B x K elements */
        return b->labels ? b->B : m->head.num_labels > 1 ? b->B * m->head.num_labels : b->B;
    if (m->task != CP_TASK_TOKEN_CLS && m->task != CP_TASK_SEQ_2_SEQ_LM) return cp_batch_targets(b);
    /* token classification and SEQ_2_SEQ_LM (labels (B,Td)): no shift */
    const int64_t T = m->task == CP_TASK_SEQ_2_SEQ_LM && b->Td ? b->Td : b->T;
    int64_t n = 0;
    for (int64_t i = 0; i < b->B * T; i++) n += b->labels[i] != -100;
    return n;
}

cp_status cp_train_step(cp_model *m, cp_adamw *opt, const cp_batch *micro, int n_micro, double lr, double max_grad_norm,
                        int recompute, uint64_t dropout_seed, cp_step_result *res) {
    int64_t n_step = 0, n_tokens = 0;
    for (int i = 0; i < n_micro; i++) {
        n_step += cp_batch_loss_items(m, &micro[i]);
        for (int64_t k = 0; k < micro[i].B * micro[i].T; k++) n_tokens += micro[i].attention_mask ? micro[i].attention_mask[k] != 0 : 1;
    }
    /* under MPI the loss is normalised over the global batch's items (every rank's shard), as the
     * Hugging Face Trainer gathers num_items_in_batch across processes */
    double counts[2] = {(double)n_step, (double)n_tokens};
    if (cp_dist_sum_f64(counts, 2, "counting the step's loss tokens") != CP_OK) return CP_ERR;
    n_step = (int64_t)counts[0];
    n_tokens = (int64_t)counts[1];
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
    /* the shards' gradients (each Σ CE / N_global) summed: the gradient of the global batch; the
     * same on every rank, so clipping and AdamW below are too */
    if (cp_dist_sum_grads(opt->params, opt->n) != CP_OK || cp_dist_sum_f64(&loss_sum, 1, "summing the step's loss") != CP_OK)
        return CP_ERR;
    res->loss = loss_sum / (double)n_step;
    cp_prof_push(CP_PROF_OPTIMIZER);
    res->grad_norm = cp_clip_grad_norm(opt->params, opt->n, max_grad_norm);
    if (!isfinite(res->loss) || !isfinite(res->grad_norm)) {
        cp_zero_grads(opt->params, opt->n);
        cp_prof_pop();
        return CP_OK; /* the caller sees the non-finite loss and stops without stepping */
    }
    cp_adamw_step(opt, lr);
    cp_zero_grads(opt->params, opt->n);
    cp_prof_pop();
    return CP_OK;
}

/* One micro-batch of B×T token ids 1..7 through the model's first `layers` blocks (all if 0), as
 * cp_train_step runs it; its gradients are discarded. The arena starts empty, so its high water is
 * this pass alone. */
static cp_status dry_run(cp_model *m, cp_adamw *opt, int64_t B, int64_t T, int recompute, int64_t layers, size_t *bytes) {
    int64_t *ids = cp_malloc((size_t)(B * T) * sizeof *ids, "the memory plan's batch");
    if (!ids) return CP_ERR;
    int64_t *zeros = cp_calloc((size_t)(B * T), sizeof *zeros, "the memory plan's labels");
    float *values = cp_calloc((size_t)(B * (m->head.num_labels > 0 ? m->head.num_labels : 1)), sizeof *values, "the memory plan's labels");
    if (!zeros || !values) { cp_free(ids); cp_free(zeros); cp_free(values); return CP_ERR; }
    for (int64_t i = 0; i < B * T; i++) ids[i] = i % 7 + 1;
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    /* a classifier's targets: class 0 (or 0.0 for regression / multi-label heads) */
    if (m->task == CP_TASK_TOKEN_CLS) b.labels = zeros;
    if (m->task == CP_TASK_SEQ_CLS) {
        int floats = m->head.problem_type == CP_PROBLEM_REGRESSION || m->head.problem_type == CP_PROBLEM_MULTI_LABEL ||
                     (m->head.problem_type == CP_PROBLEM_AUTO && m->head.num_labels == 1);
        b.labels = floats ? NULL : zeros;
        b.label_values = floats ? values : NULL;
    }
    const int64_t all_layers = m->config.num_layers;
    if (layers > 0 && layers < all_layers) m->config.num_layers = layers; /* the blocks run in order 0..L-1 */
    cp_arena_free(&m->arena);
    cp_peft_set_training(m, 1);
    cp_peft_seed_dropout(m, 0);
    double s;
    int64_t n;
    cp_status st = cp_model_forward_backward(m, &b, 1.0, recompute, &s, &n);
    cp_peft_set_training(m, 0);
    m->config.num_layers = all_layers;
    *bytes = cp_arena_high_water(&m->arena);
    cp_arena_free(&m->arena);
    cp_zero_grads(opt->params, opt->n);
    cp_free(ids);
    cp_free(zeros);
    cp_free(values);
    return st;
}

cp_status cp_step_measure_activations(cp_model *m, cp_adamw *opt, int64_t B, int64_t T, int recompute, size_t *bytes) {
    *bytes = 0;
    if (dry_run(m, opt, B, T, recompute, 0, bytes) != CP_OK) return CP_ERR;
    return cp_arena_reserve(&m->arena, *bytes);
}

cp_status cp_step_estimate_activations(cp_model *m, cp_adamw *opt, int64_t B, int64_t T, int recompute, size_t *bytes) {
    *bytes = 0;
    const int64_t L = m->config.num_layers;
    if (L <= 3) return dry_run(m, opt, B, T, recompute, 0, bytes);
    /* The peak is P + L·S: every block keeps the same activations S for the backward pass, and the
     * rest (embeddings, LM head, one block's backward scratch) does not depend on depth. Blocks 2
     * and 3 rather than 1 and 2: the lowest trained block skips its input gradient. */
    size_t two, three;
    if (dry_run(m, opt, B, T, recompute, 2, &two) != CP_OK || dry_run(m, opt, B, T, recompute, 3, &three) != CP_OK) return CP_ERR;
    double per_block = (double)three - (double)two;
    *bytes = (size_t)((double)three + (double)(L - 3) * (per_block > 0 ? per_block : 0));
    return CP_OK;
}
