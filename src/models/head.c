/*
 * head.c — task heads: pooling, the classifier stack and the loss, forward and backward; see head.h.
 *
 * The LM head goes to models/lm_head.c (chunked over rows, tiled over the vocabulary). The classification
 * heads run their rows through [dense → activation] → classifier and hand the logits to
 * nn/task_loss.c. Sequence classification pools first and projects after: transformers runs the score
 * Linear over every position and then gathers one, which gives the same logits row by row at 1/T of
 * the cost, and the backward then only has B rows to send back.
 */
#include "models/head.h"
#include "nn/linear.h"
#include "models/lm_head.h"
#include "models/proj.h"

#include <math.h>
#include <string.h>

static const char *const TASK_NAMES[] = {"CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "SEQ_2_SEQ_LM", "FEATURE_EXTRACTION"};

const char *cp_task_name(cp_task task) {
    return (unsigned)task < sizeof TASK_NAMES / sizeof *TASK_NAMES ? TASK_NAMES[task] : "unknown";
}

cp_status cp_task_parse(const char *name, cp_task *out) {
    for (int t = CP_TASK_CAUSAL_LM; t <= CP_TASK_FEATURE_EXTRACTION; t++)
        if (name && strcmp(name, TASK_NAMES[t]) == 0) { *out = (cp_task)t; return CP_OK; }
    return cp_error("task_type: \"%s\" is not one cpeft has (CAUSAL_LM, SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM, "
                    "FEATURE_EXTRACTION)",
                    name ? name : "(null)");
}

static const char *path_of(const cp_module *m) { return m->path && *m->path ? m->path : m->name; }

static cp_status check_linear(const cp_module *m, const char *role) {
    if (m->kind != CP_MOD_LINEAR && m->kind != CP_MOD_CONV1D)
        return cp_error("%s: the head's %s is a %s, not a Linear", path_of(m), role, m->class_name);
    if (!m->weight || !cp_param_bound(m->weight)) return cp_error("%s: the head's %s has no weights bound", path_of(m), role);
    return CP_OK;
}

cp_status cp_head_check(const cp_head *head, int64_t C) {
    if (!head || !head->classifier) return cp_error("head: no classifier module");
    const cp_module *cls = head->classifier, *dense = head->dense;
    if ((unsigned)head->task > CP_TASK_FEATURE_EXTRACTION) return cp_error("head: unknown task %d", (int)head->task);
    if (head->task == CP_TASK_FEATURE_EXTRACTION) return cp_error("head: FEATURE_EXTRACTION has no head");
    if (check_linear(cls, "classifier") != CP_OK || (dense && check_linear(dense, "dense layer") != CP_OK)) return CP_ERR;
    if (head->num_labels < 1) return cp_error("num_labels: %lld (expected at least 1)", (long long)head->num_labels);
    if (cls->out_features != head->num_labels)
        return cp_error("%s: %lld outputs, but num_labels is %lld", path_of(cls), (long long)cls->out_features,
                        (long long)head->num_labels);
    if ((head->task == CP_TASK_CAUSAL_LM || head->task == CP_TASK_SEQ_2_SEQ_LM) && (dense || cls->kind != CP_MOD_LINEAR))
        return cp_error("%s: a %s head is one bias-free Linear (V,C)", path_of(cls), cp_task_name(head->task));
    if (dense && dense->out_features != cls->in_features)
        return cp_error("%s: %lld outputs, but %s takes %lld inputs", path_of(dense), (long long)dense->out_features,
                        path_of(cls), (long long)cls->in_features);
    const cp_module *first = dense ? dense : cls;
    if (first->in_features != C)
        return cp_error("%s: takes %lld inputs, but the hidden size is %lld", path_of(first),
                        (long long)first->in_features, (long long)C);
    if (head->task == CP_TASK_SEQ_CLS && head->pooling != CP_POOL_FIRST && head->pooling != CP_POOL_LAST_NON_PAD)
        return cp_error("head: unknown pooling %d", (int)head->pooling);
    if (dense && (unsigned)head->dense_act >= CP_ACT_COUNT)
        return cp_error("%s: unknown activation %d", path_of(dense), (int)head->dense_act);
    return CP_OK;
}

int64_t cp_head_logits_numel(const cp_head *head, int64_t B, int64_t T) {
    return head->task == CP_TASK_SEQ_CLS ? B * head->num_labels : B * T * head->num_labels;
}

cp_status cp_head_pool_positions(const cp_head *head, const int64_t *input_ids, int64_t B, int64_t T, int64_t *pos) {
    if (head->pooling == CP_POOL_FIRST) {
        for (int64_t b = 0; b < B; b++) pos[b] = 0;
        return CP_OK;
    }
    if (head->pad_token_id < 0) {
        if (B != 1) return cp_error("Cannot handle batch sizes > 1 if no padding token is defined.");
        pos[0] = T - 1;
        return CP_OK;
    }
    if (!input_ids) return cp_error("batch: input_ids is required to find each row's last token that is not padding");
    for (int64_t b = 0; b < B; b++) { // argmax_t t·(id ≠ pad): the first maximum, so 0 for an all-pad row
        pos[b] = 0;
        for (int64_t t = T - 1; t > 0; t--)
            if (input_ids[b * T + t] != head->pad_token_id) { pos[b] = t; break; }
    }
    return CP_OK;
}

/* Labels shaped (B,T) with class ids, as CAUSAL_LM and TOKEN_CLS take them. */
static cp_status check_token_labels(const cp_head *head, const cp_task_labels *l, int64_t B, int64_t T) {
    if (!l->ids)
        return cp_error("labels: a %s head needs integer class ids (B,T) = (%lld, %lld), -100 ignored; got float labels",
                        cp_task_name(head->task), (long long)B, (long long)T);
    if (l->ndim < 0 || l->ndim > 2 || cp_task_labels_numel(l) != B * T)
        return cp_error("labels: %lld class ids, expected (B,T) = (%lld, %lld) for a %s head",
                        (long long)(l->ndim < 0 || l->ndim > 2 ? -1 : cp_task_labels_numel(l)), (long long)B,
                        (long long)T, cp_task_name(head->task));
    return CP_OK;
}

static void set_loss(cp_head_outputs *out, double sum, int64_t n, int has_labels) {
    out->loss_sum = sum;
    out->n_items = n;
    out->loss = n ? sum / (double)n : (has_labels ? NAN : 0.0);
}

/* ---- the LM head (models/lm_head.c) --------------------------------------------------------------- */

/* What follows the head's product (models/lm_head.h); NULL when nothing does. */
static const cp_logits_post *logits_post(const cp_head *head, cp_logits_post *buf) {
    *buf = (cp_logits_post){.bias = head->logits_bias, .softcap = head->logit_softcap};
    return buf->bias || buf->softcap > 0 ? buf : NULL;
}

/* CAUSAL_LM predicts the next token (labels shifted left by one), SEQ_2_SEQ_LM each decoder position's own. */
static int lm_shift(const cp_head *head) { return head->task == CP_TASK_CAUSAL_LM; }

static cp_status lm_forward(const cp_head *head, const float *h, int64_t B, int64_t T, const cp_task_labels *labels,
                            cp_head_outputs *out, const cp_run *run) {
    double sum = 0;
    int64_t n = 0;
    cp_logits_post pb;
    if (labels && check_token_labels(head, labels, B, T) != CP_OK) return CP_ERR;
    if ((labels || out->logits) &&
        cp_lm_head_loss_shift(run, head->classifier, logits_post(head, &pb), h, B, T, labels ? labels->ids : NULL, lm_shift(head),
                              out->logits, &sum, &n) != CP_OK)
        return CP_ERR;
    set_loss(out, sum, n, labels != NULL);
    return CP_OK;
}

static cp_status lm_backward(const cp_head *head, const float *h, int64_t B, int64_t T, const cp_task_labels *labels,
                             double norm, float *dh, cp_head_outputs *out, const cp_run *run) {
    if (check_token_labels(head, labels, B, T) != CP_OK) return CP_ERR;
    if (norm == CP_NORM_BATCH_MEAN) { // this batch's targets: labels shifted left by one (CAUSAL_LM)
        int64_t n = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = lm_shift(head); t < T; t++) n += labels->ids[b * T + t] != CP_IGNORE_INDEX;
        norm = n ? (double)n : 1.0; // nothing counts: the gradient is zero whatever the divisor
    }
    double sum = 0;
    int64_t n = 0;
    cp_logits_post pb;
    if (cp_lm_head_loss_backward_shift(run, head->classifier, logits_post(head, &pb), h, B, T, labels->ids, lm_shift(head), norm, dh,
                                       &sum, &n) != CP_OK)
        return CP_ERR;
    if (out->logits && cp_lm_head_loss_shift(run, head->classifier, logits_post(head, &pb), h, B, T, NULL, 0, out->logits, NULL,
                                             NULL) != CP_OK)
        return CP_ERR;
    set_loss(out, sum, n, 1);
    return CP_OK;
}

/* ---- classification heads ------------------------------------------------------------------------ */

/* The activations of one pass through the classifier stack, kept for the backward. */
typedef struct {
    int64_t R;            /* rows through the stack: B (SEQ_CLS) or B·T (TOKEN_CLS) */
    int64_t *pos;         /* (B) SEQ_CLS: the pooled position of each row */
    const float *rows;    /* (R,C) the pooled rows, or h itself */
    const float *dense_in;/* (R,C) dense_dropout(rows), or rows */
    float *z;             /* (R,C') dense output before the activation, or NULL */
    const float *cls_in;  /* (R,C') dropout(the activation of z, or rows) */
    float *logits;        /* (R,K) */
    cp_problem_type type; /* the loss's problem type */
    cp_dropout drop, dense_drop; /* the head's two dropout sites in this run */
} cls_pass;

/* out (R,n) = dropout(in) when d is on (from the arena), else in itself. */
static const float *dropped(const cp_run *run, const cp_dropout *d, const float *in, int64_t R, int64_t n) {
    if (!cp_dropout_on(d)) return in;
    float *out = cp_arena_floats(run->arena, (size_t)(R * n), "head dropout");
    if (out) cp_dropout_apply(d, out, in, 0, R, n);
    return out;
}

static cp_status cls_forward(const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                             const cp_task_labels *labels, float *logits, cls_pass *p, const cp_run *run) {
    const int64_t C = (head->dense ? head->dense : head->classifier)->in_features, K = head->num_labels;
    memset(p, 0, sizeof *p);
    if (head->task == CP_TASK_SEQ_CLS) {
        p->R = B;
        p->pos = cp_arena_alloc(run->arena, (size_t)B * sizeof *p->pos, "pooled positions");
        float *rows = cp_arena_floats(run->arena, (size_t)(B * C), "pooled hidden states"); // (B,C)
        if (!p->pos || !rows || cp_head_pool_positions(head, input_ids, B, T, p->pos) != CP_OK) return CP_ERR;
        for (int64_t b = 0; b < B; b++) memcpy(rows + b * C, h + (b * T + p->pos[b]) * C, (size_t)C * sizeof *rows);
        p->rows = rows;
        p->type = CP_PROBLEM_SINGLE_LABEL;
        if (labels && cp_problem_type_resolve(head->problem_type, K, labels, &p->type) != CP_OK) return CP_ERR;
        if (labels && head->auto_soft_labels && head->problem_type == CP_PROBLEM_AUTO && p->type == CP_PROBLEM_MULTI_LABEL)
            p->type = CP_PROBLEM_SOFT_LABEL;
    } else {
        p->R = B * T;
        p->rows = h;
        p->type = CP_PROBLEM_SINGLE_LABEL; /* transformers' token classification is always cross-entropy */
        if (labels && check_token_labels(head, labels, B, T) != CP_OK) return CP_ERR;
    }
    // [dense_in = dense_dropout(rows); z = dense(dense_in); a = act(z)]; cls_in = dropout(a or rows)
    p->drop = cp_run_dropout_call(run, head->dropout, 1); /* call 1: RoBERTa's second use of classifier.dropout */
    p->dense_drop = cp_run_dropout(run, head->dense_dropout);
    const float *a = p->rows;
    if (head->dense) {
        const int64_t D = head->dense->out_features;
        float *act = cp_arena_floats(run->arena, (size_t)(p->R * D), "head dense activations"); // (R,C')
        p->z = cp_arena_floats(run->arena, (size_t)(p->R * D), "head dense outputs");            // (R,C')
        p->dense_in = dropped(run, &p->dense_drop, p->rows, p->R, C);
        if (!p->z || !act || !p->dense_in || cp_proj_forward(run, head->dense, p->z, p->dense_in, p->R) != CP_OK) return CP_ERR;
        cp_activation_forward(head->dense_act, act, p->z, p->R * D);
        a = act;
    }
    p->cls_in = dropped(run, &p->drop, a, p->R, head->classifier->in_features);
    p->logits = logits ? logits : cp_arena_floats(run->arena, (size_t)(p->R * K), "head logits"); // (R,K)
    if (!p->cls_in || !p->logits) return CP_ERR;
    return cp_proj_forward(run, head->classifier, p->logits, p->cls_in, p->R);
}

static cp_status cls_head_forward(const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                                  const cp_task_labels *labels, cp_head_outputs *out, const cp_run *run) {
    cls_pass p;
    double sum = 0;
    int64_t n = 0;
    if (cls_forward(head, h, B, T, input_ids, labels, out->logits, &p, run) != CP_OK) return CP_ERR;
    if (labels && cp_task_loss(p.type, p.logits, p.R, head->num_labels, labels, &sum, &n) != CP_OK) return CP_ERR;
    out->problem_type = p.type;
    set_loss(out, sum, n, labels != NULL);
    return CP_OK;
}

static cp_status cls_head_backward(const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                                   const cp_task_labels *labels, double norm, float *dh, cp_head_outputs *out, const cp_run *run) {
    const int64_t C = (head->dense ? head->dense : head->classifier)->in_features, K = head->num_labels;
    const int64_t Cin = head->classifier->in_features;
    cls_pass p;
    double sum = 0;
    int64_t n = 0;
    if (cls_forward(head, h, B, T, input_ids, labels, out->logits, &p, run) != CP_OK) return CP_ERR;
    float *dlogits = cp_arena_floats(run->arena, (size_t)(p.R * K), "head logit gradients"); // (R,K)
    if (!dlogits || cp_task_loss_backward(p.type, p.logits, p.R, K, labels, norm, dlogits, &sum, &n) != CP_OK)
        return CP_ERR;
    memset(dh, 0, (size_t)(B * T * C) * sizeof *dh);
    /* Token classification sends its rows' gradients straight into dh; sequence classification
     * collects them for its B pooled rows and scatters them after. */
    const int direct = head->task == CP_TASK_TOKEN_CLS;
    float *drows = direct ? dh : cp_arena_floats(run->arena, (size_t)(p.R * C), "pooled row gradients"); // (R,C)
    if (!drows) return CP_ERR;
    if (!direct) memset(drows, 0, (size_t)(p.R * C) * sizeof *drows);
    // in the forward this was logits = classifier(cls_in), so d cls_in = dlogits·W (+ LoRA), dW += dlogitsᵀ·cls_in
    float *dcls_in = head->dense ? cp_arena_floats(run->arena, (size_t)(p.R * Cin), "head dense gradients") : drows; // (R,C')
    if (!dcls_in) return CP_ERR;
    if (head->dense) memset(dcls_in, 0, (size_t)(p.R * Cin) * sizeof *dcls_in);
    if (cp_proj_backward(run, head->classifier, dcls_in, dlogits, p.cls_in, p.R) != CP_OK) return CP_ERR;
    cp_dropout_apply(&p.drop, dcls_in, dcls_in, 0, p.R, Cin); // cls_in = dropout(·): the same mask
    if (head->dense) { // cls_in = dropout(act(z)), z = dense(dense_dropout(rows))
        cp_activation_backward(head->dense_act, dcls_in, dcls_in, p.z, p.R * Cin);
        if (cp_proj_backward(run, head->dense, drows, dcls_in, p.dense_in, p.R) != CP_OK) return CP_ERR;
        cp_dropout_apply(&p.dense_drop, drows, drows, 0, p.R, C);
    }
    if (!direct) // rows = h[b, pos[b]]: each pooled row's gradient goes back to its position
        for (int64_t b = 0; b < B; b++) memcpy(dh + (b * T + p.pos[b]) * C, drows + b * C, (size_t)C * sizeof *dh);
    out->problem_type = p.type;
    set_loss(out, sum, n, 1);
    return CP_OK;
}

/* ---- the entry points: check, dispatch, run->arena released on return --------------------------- */

static cp_status check_call(const cp_head *head, const float *h, int64_t B, int64_t T, cp_head_outputs *out) {
    if (!out) return cp_error("head: no outputs given");
    if (B <= 0 || T <= 0) return cp_error("batch: empty batch (B=%lld, T=%lld)", (long long)B, (long long)T);
    if (!h) return cp_error("head: no hidden states given");
    return cp_head_check(head, (head && head->classifier ? (head->dense ? head->dense : head->classifier)->in_features : 0));
}

cp_status cp_head_forward(const cp_run *run, const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                          const cp_task_labels *labels, cp_head_outputs *out) {
    if (check_call(head, h, B, T, out) != CP_OK) return CP_ERR;
    out->problem_type = CP_PROBLEM_SINGLE_LABEL;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    const int lm = head->task == CP_TASK_CAUSAL_LM || head->task == CP_TASK_SEQ_2_SEQ_LM;
    cp_status st = lm ? lm_forward(head, h, B, T, labels, out, run) : cls_head_forward(head, h, B, T, input_ids, labels, out, run);
    cp_arena_release(run->arena, mark);
    return st;
}

cp_status cp_head_backward(const cp_run *run, const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                           const cp_task_labels *labels, double norm, float *dh, cp_head_outputs *out) {
    if (check_call(head, h, B, T, out) != CP_OK) return CP_ERR;
    if (!labels) return cp_error("batch: training needs labels");
    if (!dh) return cp_error("head: no buffer for the hidden-state gradients");
    if (!(norm >= 0) || isinf(norm)) return cp_error("norm: %g (expected a positive divisor, or CP_NORM_BATCH_MEAN)", norm);
    out->problem_type = CP_PROBLEM_SINGLE_LABEL;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = head->task == CP_TASK_CAUSAL_LM || head->task == CP_TASK_SEQ_2_SEQ_LM
                       ? lm_backward(head, h, B, T, labels, norm, dh, out, run)
                       : cls_head_backward(head, h, B, T, input_ids, labels, norm, dh, out, run);
    cp_arena_release(run->arena, mark);
    return st;
}
