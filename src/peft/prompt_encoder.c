/*
 * prompt_encoder.c — PEFT's PromptEmbedding, PromptEncoder (MLP / LSTM) and PrefixEncoder: the module
 * tree, initialisation, forward and backward; see prompt_encoder.h.
 */
#include "peft/prompt_encoder.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "nn/activation.h"
#include "nn/linear.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static cp_status own_data(cp_param *p) {
    if (!p || p->data) return p ? CP_OK : CP_ERR;
    if (!(p->data = cp_calloc((size_t)p->numel, sizeof *p->data, p->name))) return CP_ERR;
    p->owns_data = 1;
    return CP_OK;
}

/* A Linear child named `name` of `seq`, its parameters owned. */
static cp_module *linear(cp_prompt_encoder *e, cp_module *seq, const char *name, int64_t in, int64_t out) {
    cp_module *m = cp_module_linear(seq, name, in, out, 1);
    if (!m || own_data(m->weight) != CP_OK || own_data(m->bias) != CP_OK) return NULL;
    return e->linear[e->n_linear++] = m;
}

cp_status cp_prompt_encoder_build(cp_prompt_encoder *e, const cp_prompt_config *cfg, const char *name) {
    memset(e, 0, sizeof *e);
    const int64_t P = cp_prompt_config_rows(cfg), d = cfg->token_dim, h = cfg->encoder_hidden_size;
    e->rows = P;
    e->width = cp_prompt_config_width(cfg);
    const int encoder = !cfg->inference_mode && (cfg->kind == CP_P_TUNING || (cfg->kind == CP_PREFIX_TUNING && cfg->prefix_projection));
    const char *cls = cfg->kind == CP_PROMPT_TUNING ? "PromptEmbedding" : cfg->kind == CP_P_TUNING ? "PromptEncoder" : "PrefixEncoder";
    cp_module *top = cp_module_new(NULL, "", "PeftModel", CP_MOD_CONTAINER);
    cp_module *dict = top ? cp_module_new(top, "prompt_encoder", "ModuleDict", CP_MOD_CONTAINER) : NULL;
    e->root = top;
    cp_module *enc = dict ? cp_module_new(dict, name, cls, CP_MOD_CONTAINER) : NULL;
    if (!enc) goto fail;
    /* the table: the encoded output itself unless an encoder stage follows it */
    if (!(e->embedding = cp_module_embedding(enc, "embedding", P, encoder ? d : e->width)) || own_data(e->embedding->weight) != CP_OK)
        goto fail;
    if (!encoder) return CP_OK;
    if (cfg->kind == CP_P_TUNING && cfg->encoder_lstm) {
        if (!(e->lstm_module = cp_module_new(enc, "lstm_head", "LSTM", CP_MOD_CONTAINER))) goto fail;
        if (cp_lstm_init(&e->lstm, e->lstm_module->path, d, h, cfg->encoder_num_layers, 1, cfg->encoder_dropout) != CP_OK) goto fail;
    }
    const int prefix = cfg->kind == CP_PREFIX_TUNING;
    cp_module *seq = cp_module_new(enc, prefix ? "transform" : "mlp_head", "Sequential", CP_MOD_CONTAINER);
    if (!seq) goto fail;
    e->act = prefix ? CP_ACT_TANH : CP_ACT_RELU;
    if (prefix) {
        if (!linear(e, seq, "0", d, h) || !cp_module_activation(seq, "1", CP_ACT_TANH) || !linear(e, seq, "2", h, e->width)) goto fail;
    } else if (cfg->encoder_lstm) {
        if (!linear(e, seq, "0", 2 * h, 2 * h) || !cp_module_activation(seq, "1", CP_ACT_RELU) || !linear(e, seq, "2", 2 * h, d))
            goto fail;
    } else {
        /* always three layers: PEFT warns that encoder_num_layers is ignored for MLP */
        if (cfg->encoder_num_layers != 2)
            cp_warn("for MLP, the argument `encoder_num_layers` is ignored. Exactly 2 MLP layers are used.");
        if (!linear(e, seq, "0", d, h) || !cp_module_activation(seq, "1", CP_ACT_RELU) || !linear(e, seq, "2", h, h) ||
            !cp_module_activation(seq, "3", CP_ACT_RELU) || !linear(e, seq, "4", h, d))
            goto fail;
    }
    return CP_OK;
fail:
    cp_prompt_encoder_free(e);
    return CP_ERR;
}

void cp_prompt_encoder_free(cp_prompt_encoder *e) {
    cp_lstm_free(&e->lstm);
    cp_module_free(e->root);
    memset(e, 0, sizeof *e);
}

static void fill_uniform(cp_param *p, double bound, cp_rng *rng) {
    for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)((2.0 * cp_rng_uniform(rng) - 1.0) * bound);
}

cp_status cp_prompt_encoder_init(cp_prompt_encoder *e, const cp_prompt_config *cfg, cp_rng *rng, const cp_param *word_embeddings,
                                 const int64_t *ids) {
    cp_param *table = e->embedding->weight;
    const int64_t C = table->shape[1];
    if (ids) {
        for (int64_t r = 0; r < e->rows; r++) cp_param_row_f32(word_embeddings, ids[r], table->data + r * C, 0);
    } else {
        for (int64_t i = 0; i < table->numel; i++) table->data[i] = cp_rng_normal(rng);
    }
    /* the LSTM first (PyTorch builds lstm_head before mlp_head), each parameter U(±1/√hidden) */
    for (int i = 0; e->lstm.params && i < cp_lstm_num_params(&e->lstm); i++)
        fill_uniform(e->lstm.params[i], 1.0 / sqrt((double)e->lstm.hidden_size), rng);
    for (int k = 0; k < e->n_linear; k++) { /* kaiming_uniform(a=√5): U(±1/√in), the bias the same */
        const double bound = 1.0 / sqrt((double)e->linear[k]->in_features);
        fill_uniform(e->linear[k]->weight, bound, rng);
        fill_uniform(e->linear[k]->bias, bound, rng);
    }
    if (cfg->kind == CP_PREFIX_TUNING && cfg->init_weights_zero) { /* the prefix starts as zeros */
        cp_param *last[2] = {e->n_linear ? e->linear[e->n_linear - 1]->weight : table, e->n_linear ? e->linear[e->n_linear - 1]->bias : NULL};
        for (int i = 0; i < 2; i++)
            if (last[i]) memset(last[i]->data, 0, (size_t)last[i]->numel * sizeof *last[i]->data);
    }
    return CP_OK;
}

/* ---- tensors and repr ----------------------------------------------------------------------------- */

typedef struct { cp_peft_tensor *out; int n, max; size_t skip; } tensors_ctx;

static void add_tensor(tensors_ctx *c, cp_param *p) {
    if (c->n < c->max) c->out[c->n] = (cp_peft_tensor){.key = p->name + c->skip, .param = p, .ndim = p->ndim,
                                                       .shape = {p->shape[0], p->shape[1]}, .config_dim = -1};
    c->n++;
}

int cp_prompt_encoder_tensors(const cp_prompt_encoder *e, cp_peft_tensor *out, int max) {
    /* keys relative to the encoder: skip "prompt_encoder.<name>." */
    const cp_module *enc = e->embedding->parent;
    tensors_ctx c = {out, 0, max, strlen(enc->path) + 1};
    add_tensor(&c, e->embedding->weight);
    for (int i = 0; e->lstm.params && i < cp_lstm_num_params(&e->lstm); i++) add_tensor(&c, e->lstm.params[i]);
    for (int k = 0; k < e->n_linear; k++) {
        add_tensor(&c, e->linear[k]->weight);
        add_tensor(&c, e->linear[k]->bias);
    }
    return c.n;
}

static char *lstm_wrap(const cp_module *m, void *ctx) {
    const cp_prompt_encoder *e = ctx;
    return m == e->lstm_module ? cp_lstm_repr(&e->lstm) : NULL;
}

char *cp_prompt_encoder_repr(const cp_prompt_encoder *e) {
    return cp_module_repr_with(e->embedding->parent, lstm_wrap, (void *)e);
}

/* ---- forward and backward -------------------------------------------------------------------------- */

struct cp_prompt_trace {
    const float *in[CP_PROMPT_MAX_LINEAR]; /* each Linear's input (rows, in) */
    float *pre[CP_PROMPT_MAX_LINEAR];      /* each Linear's output before the activation (rows, out) */
    cp_lstm_trace *lstm;
};

cp_status cp_prompt_encoder_forward(const cp_prompt_encoder *e, cp_arena *ar, int training, uint64_t seed, const float **out,
                                    cp_prompt_trace **trace) {
    const int64_t R = e->rows;
    const float *x = e->embedding->weight->data; // (R, in) the table: indices arange(R)
    cp_prompt_trace *tr = NULL;
    if (trace && !(tr = cp_arena_alloc(ar, sizeof *tr, "prompt encoder trace"))) return CP_ERR;
    if (tr) memset(tr, 0, sizeof *tr);
    if (e->lstm.params) {
        float *y = cp_arena_floats(ar, (size_t)(R * 2 * e->lstm.hidden_size), "LSTM output"); // (R, 2h)
        cp_lstm_trace *lt = NULL;
        if (!y || cp_lstm_forward(&e->lstm, ar, x, R, training, seed, y, &lt) != CP_OK) return CP_ERR;
        if (tr) tr->lstm = lt;
        x = y;
    }
    for (int k = 0; k < e->n_linear; k++) {
        const cp_module *lin = e->linear[k];
        float *z = cp_arena_floats(ar, (size_t)(R * lin->out_features), "prompt encoder activations"); // (R, out)
        if (!z) return CP_ERR;
        cp_linear_forward(lin, z, x, R);
        if (tr) tr->in[k] = x;
        if (k + 1 < e->n_linear) {
            float *a = cp_arena_floats(ar, (size_t)(R * lin->out_features), "prompt encoder activations");
            if (!a) return CP_ERR;
            cp_activation_forward(e->act, a, z, R * lin->out_features);
            if (tr) tr->pre[k] = z;
            x = a;
        } else {
            x = z;
        }
    }
    *out = x;
    if (trace) *trace = tr;
    return CP_OK;
}

cp_status cp_prompt_encoder_backward(const cp_prompt_encoder *e, cp_arena *ar, const cp_prompt_trace *tr, const float *d_out) {
    const int64_t R = e->rows;
    cp_param *table = e->embedding->weight;
    const int needs_table = table->grad != NULL;
    cp_arena_mark mark = cp_arena_get_mark(ar);
    const float *d = d_out; // the gradient of the current stage's output
    for (int k = e->n_linear - 1; k >= 0; k--) {
        const cp_module *lin = e->linear[k];
        const int need_dx = k > 0 || e->lstm.params || needs_table;
        float *dx = need_dx ? cp_arena_floats(ar, (size_t)(R * lin->in_features), "prompt encoder gradients") : NULL;
        if (need_dx && !dx) goto fail;
        if (dx) memset(dx, 0, (size_t)(R * lin->in_features) * sizeof *dx);
        cp_linear_backward(lin, dx, d, tr->in[k], R);
        if (k > 0) cp_activation_backward(e->act, dx, dx, tr->pre[k - 1], R * lin->in_features); // through the act before it
        d = dx;
    }
    if (e->lstm.params && d) {
        float *dx = needs_table ? cp_arena_floats(ar, (size_t)table->numel, "prompt encoder gradients") : NULL;
        if (needs_table && !dx) goto fail;
        if (dx) memset(dx, 0, (size_t)table->numel * sizeof *dx);
        if (cp_lstm_backward(&e->lstm, ar, tr->lstm, d, dx) != CP_OK) goto fail;
        d = dx;
    }
    if (needs_table && d)
        for (int64_t i = 0; i < table->numel; i++) table->grad[i] += d[i];
    cp_arena_release(ar, mark);
    return CP_OK;
fail:
    cp_arena_release(ar, mark);
    return CP_ERR;
}
