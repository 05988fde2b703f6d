/*
 * gpt_common.c — the GPT-2 / GPT-Neo decoder forward and the tree pieces they share.
 *
 *   x = wte[ids] + wpe[pos]                                 (B,T,C)
 *   per block: x += out_proj(attn(ln_1 x)); x += proj(act(fc(ln_2 x)))
 *   out = ln_f(x)
 *
 * Dropouts are identities in eval mode. Activations live in the model's arena. With a KV cache
 * (generation) the same blocks run on the new tokens only and attend to the cached keys and values.
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "generate/kv_cache.h"
#include "kernels/vector.h"
#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "peft/lora.h"

#include <string.h>

cp_module *cp_gpt_build_base(cp_model *m, const char *lm_class, const char *model_class, cp_module **base_out) {
    const cp_model_config *c = &m->config;
    cp_gpt_state *s = cp_calloc(1, sizeof *s, "GPT state");
    if (!s) return NULL;
    m->arch_state = s;
    s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "GPT layers");
    if (!s->layers) return NULL;
    if (!(m->root = cp_module_new(NULL, "", lm_class, CP_MOD_CONTAINER))) return NULL;
    cp_module *base = cp_module_new(m->root, "transformer", model_class, CP_MOD_CONTAINER);
    if (!base) return NULL;
    *base_out = base;
    if (!(s->wte = cp_module_embedding(base, "wte", c->vocab_size, c->hidden_size))) return NULL;
    if (!(s->wpe = cp_module_embedding(base, "wpe", c->max_positions, c->hidden_size))) return NULL;
    if (!cp_module_dropout(base, "drop", c->embd_dropout)) return NULL;
    return cp_module_new(base, "h", "ModuleList", CP_MOD_LIST);
}

cp_status cp_gpt_build_head(cp_model *m, cp_module *base, cp_gpt_state *s) {
    const cp_model_config *c = &m->config;
    if (!(s->ln_f = cp_module_layernorm(base, "ln_f", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
    if (!(m->lm_head = cp_module_linear(m->root, "lm_head", c->hidden_size, c->vocab_size, 0))) return CP_ERR;
    if (c->tie_word_embeddings) cp_param_tie(m->lm_head->weight, s->wte->weight);
    m->arch_state = s;
    return CP_OK;
}

cp_status cp_gpt_build_mlp(cp_model *m, cp_module *block, const char *class_name, int conv1d, cp_gpt_layer *layer) {
    const cp_model_config *c = &m->config;
    cp_module *mlp = cp_module_new(block, "mlp", class_name, CP_MOD_CONTAINER);
    if (!mlp) return CP_ERR;
    layer->fc = conv1d ? cp_module_conv1d(mlp, "c_fc", c->hidden_size, c->intermediate_size)
                       : cp_module_linear(mlp, "c_fc", c->hidden_size, c->intermediate_size, 1);
    if (!layer->fc) return CP_ERR;
    layer->proj = conv1d ? cp_module_conv1d(mlp, "c_proj", c->intermediate_size, c->hidden_size)
                         : cp_module_linear(mlp, "c_proj", c->intermediate_size, c->hidden_size, 1);
    if (!layer->proj) return CP_ERR;
    if (!cp_module_activation(mlp, "act", c->activation)) return CP_ERR;
    if (!cp_module_dropout(mlp, "dropout", c->resid_dropout)) return CP_ERR;
    layer->activation = c->activation;
    return CP_OK;
}

void cp_gpt_free_state(cp_model *m) {
    cp_gpt_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* The activations one block keeps for its backward pass (training), or scratch (inference). */
typedef struct {
    float *x_in;                  // (N,C) block input (the residual stream)
    float *ln1_mean, *ln1_rstd;   // (N)
    float *h1;                    // (N,C) ln_1 output: the input of q, k, v
    float *qkv;                   // (N,3C) q | k | v (fused layout, or three (N,C) planes)
    float *probs;                 // (B,NH,T,T) attention probabilities; NULL in inference
    float *att;                   // (N,C) attention output: the input of out_proj
    float *x_mid;                 // (N,C) after the attention residual: the input of ln_2
    float *ln2_mean, *ln2_rstd;   // (N)
    float *h2;                    // (N,C) ln_2 output: the input of fc
    float *fc_pre;                // (N,I) fc output before the activation
    float *fc_act;                // (N,I) after the activation: the input of proj
    float *tmp;                   // (N,C) projection output, scratch: in training one buffer serves every layer
} block_acts;

static cp_status alloc_block(block_acts *a, cp_arena *ar, int64_t B, int64_t T, int64_t C, int64_t I, int64_t NH,
                             int training) {
    const size_t N = (size_t)(B * T);
    memset(a, 0, sizeof *a);
    a->x_in = training ? cp_arena_floats(ar, N * C, "block input") : NULL;
    a->ln1_mean = cp_arena_floats(ar, N, "ln_1 statistics");
    a->ln1_rstd = cp_arena_floats(ar, N, "ln_1 statistics");
    a->h1 = cp_arena_floats(ar, N * C, "ln_1 output");
    a->qkv = cp_arena_floats(ar, N * 3 * C, "q, k, v");
    a->probs = training ? cp_arena_floats(ar, (size_t)(B * NH * T * T), "attention probabilities") : NULL;
    a->att = cp_arena_floats(ar, N * C, "attention output");
    a->x_mid = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->ln2_mean = cp_arena_floats(ar, N, "ln_2 statistics");
    a->ln2_rstd = cp_arena_floats(ar, N, "ln_2 statistics");
    a->h2 = cp_arena_floats(ar, N * C, "ln_2 output");
    a->fc_pre = training ? cp_arena_floats(ar, N * I, "MLP pre-activation") : NULL;
    a->fc_act = cp_arena_floats(ar, N * I, "MLP hidden");
    a->tmp = training ? NULL : cp_arena_floats(ar, N * C, "projection output"); /* training: the caller's shared one */
    if (!a->ln1_mean || !a->ln1_rstd || !a->h1 || !a->qkv || !a->att || !a->ln2_mean || !a->ln2_rstd || !a->h2 ||
        !a->fc_act || (!training && !a->tmp) || (training && (!a->x_in || !a->probs || !a->x_mid || !a->fc_pre)))
        return CP_ERR;
    return CP_OK;
}

static cp_attention_args attention_args(const cp_model *m, const cp_gpt_layer *ly, const cp_batch *batch, block_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size;
    cp_attention_args at = {.B = batch->B, .T = batch->T, .NH = c->num_heads, .hs = c->head_dim, .scale = ly->attn_scale,
                            .window = ly->window, .empty_row = ly->empty_row, .key_mask = batch->attention_mask,
                            .out = a->att, .probs = a->probs};
    if (ly->qkv_proj) {
        at.q = a->qkv; at.k = a->qkv + C; at.v = a->qkv + 2 * C;
        at.q_stride = at.k_stride = at.v_stride = 3 * C;
    } else {
        at.q = a->qkv; at.k = a->qkv + N * C; at.v = a->qkv + 2 * N * C;
        at.q_stride = at.k_stride = at.v_stride = C;
    }
    return at;
}

/* One block, x (N,C) updated in place: x += out_proj(attn(ln_1 x)); x += proj(act(fc(ln_2 x))).
 * Everything the backward pass needs stays in `a` when it was allocated for training. With a cache
 * `kv`, the block's keys and values go into layer l of it and the queries attend to all its columns. */
static cp_status block_forward(cp_model *m, const cp_gpt_layer *ly, const cp_batch *batch, float *x, block_acts *a,
                               cp_kv_cache *kv, int64_t l, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    if (a->x_in) memcpy(a->x_in, x, (size_t)(N * C) * sizeof *x);

    /* Attention: h = ln_1(x); q, k, v; att = softmax(mask(q·kᵀ·scale))·v; x += out_proj(att) */
    cp_layernorm_forward(ly->ln_1, a->h1, a->ln1_mean, a->ln1_rstd, x, N);
    cp_attention_args at = attention_args(m, ly, batch, a);
    if (ly->qkv_proj) {
        if (cp_linear_forward(ly->qkv_proj, a->qkv, a->h1, N, ar) != CP_OK) return CP_ERR;
    } else if (cp_linear_forward(ly->q_proj, a->qkv, a->h1, N, ar) != CP_OK ||
               cp_linear_forward(ly->k_proj, a->qkv + N * C, a->h1, N, ar) != CP_OK ||
               cp_linear_forward(ly->v_proj, a->qkv + 2 * N * C, a->h1, N, ar) != CP_OK)
        return CP_ERR;
    if (kv) cp_kv_cache_attend(kv, l, at.k, at.k_stride, at.v, at.v_stride, &at);
    if (cp_attention_forward(&at, ar) != CP_OK) return CP_ERR;
    if (cp_linear_forward(ly->out_proj, a->tmp, a->att, N, ar) != CP_OK) return CP_ERR;
    cp_add_inplace(x, a->tmp, N * C);
    if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);

    /* MLP: x += proj(act(fc(ln_2(x)))) */
    cp_layernorm_forward(ly->ln_2, a->h2, a->ln2_mean, a->ln2_rstd, x, N);
    float *pre = a->fc_pre ? a->fc_pre : a->fc_act;
    if (cp_linear_forward(ly->fc, pre, a->h2, N, ar) != CP_OK) return CP_ERR;
    cp_activation_forward(ly->activation, a->fc_act, pre, N * I);
    if (cp_linear_forward(ly->proj, a->tmp, a->fc_act, N, ar) != CP_OK) return CP_ERR;
    cp_add_inplace(x, a->tmp, N * C);
    return CP_OK;
}

/* Backward of one block. dx (N,C) holds the gradient of the block output and leaves holding the
 * gradient of its input (the residual stream passes straight through). When !need_dx the part that
 * only feeds layers below (ln_1's input gradient) is skipped. */
static cp_status block_backward(cp_model *m, const cp_gpt_layer *ly, const cp_batch *batch, block_acts *a, float *dx,
                                int need_dx, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    float *d_big = cp_arena_floats(ar, (size_t)(N * (I > 3 * C ? I : 3 * C)), "block gradients"); // (N,I) / (N,3C)
    float *d_small = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                    // (N,C)
    if (!d_big || !d_small) return CP_ERR;

    // MLP: in the forward pass this was x_out = x_mid + proj(act(fc(ln_2(x_mid))))
    memset(d_big, 0, (size_t)(N * I) * sizeof *d_big);
    if (cp_linear_backward(ly->proj, d_big, dx, a->fc_act, N, ar) != CP_OK) return CP_ERR;  // d fc_act
    cp_activation_backward(ly->activation, d_big, d_big, a->fc_pre, N * I);                // d fc_pre
    memset(d_small, 0, (size_t)(N * C) * sizeof *d_small);
    if (cp_linear_backward(ly->fc, d_small, d_big, a->h2, N, ar) != CP_OK) return CP_ERR;   // d h2
    cp_layernorm_backward(ly->ln_2, dx, d_small, a->x_mid, a->ln2_mean, a->ln2_rstd, N);   // dx = d x_mid

    // Attention: x_mid = x_in + out_proj(attn(ln_1(x_in)))
    memset(d_small, 0, (size_t)(N * C) * sizeof *d_small);
    if (cp_linear_backward(ly->out_proj, d_small, dx, a->att, N, ar) != CP_OK) return CP_ERR; // d att
    cp_attention_args at = attention_args(m, ly, batch, a);
    float *dq = d_big, *dk, *dv;
    if (ly->qkv_proj) { dk = d_big + C; dv = d_big + 2 * C; }
    else { dk = d_big + N * C; dv = d_big + 2 * N * C; }
    if (cp_attention_backward(&at, d_small, dq, dk, dv, ar) != CP_OK) return CP_ERR;
    int need_dh1 = need_dx || ly->ln_1->weight->grad || ly->ln_1->bias->grad;
    float *dh1 = need_dh1 ? d_small : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (ly->qkv_proj) {
        if (cp_linear_backward(ly->qkv_proj, dh1, d_big, a->h1, N, ar) != CP_OK) return CP_ERR;
    } else if (cp_linear_backward(ly->q_proj, dh1, dq, a->h1, N, ar) != CP_OK ||
               cp_linear_backward(ly->k_proj, dh1, dk, a->h1, N, ar) != CP_OK ||
               cp_linear_backward(ly->v_proj, dh1, dv, a->h1, N, ar) != CP_OK)
        return CP_ERR;
    if (dh1) cp_layernorm_backward(ly->ln_1, need_dx ? dx : NULL, dh1, a->x_in, a->ln1_mean, a->ln1_rstd, N);
    return CP_OK;
}

/* Token plus position embeddings of the batch, whose first token sits at column `past`. */
static cp_status embed(cp_model *m, const cp_batch *batch, int64_t past, float *x, int64_t *pos) {
    const cp_gpt_state *s = m->arch_state;
    const int64_t B = batch->B, T = batch->T, N = B * T;
    /* positions default to past..past+T-1 for every row, ignoring padding (transformers' forward) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) pos[b * T + t] = batch->position_ids ? batch->position_ids[b * T + t] : past + t;
    if (cp_embedding_forward(s->wte, x, batch->input_ids, N, 0, &m->arena) != CP_OK) return cp_error_context("input_ids");
    if (cp_embedding_forward(s->wpe, x, pos, N, 1, &m->arena) != CP_OK) return cp_error_context("position_ids");
    return CP_OK;
}

static cp_status forward(cp_model *m, const cp_batch *batch, cp_kv_cache *kv, float *out, float *hidden_states) {
    const cp_gpt_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, L = c->num_layers;
    cp_arena *ar = &m->arena;
    float *x = cp_arena_floats(ar, (size_t)(N * C), "residual stream"); // (B,T,C)
    int64_t *pos = cp_arena_alloc(ar, (size_t)N * sizeof *pos, "position ids");
    block_acts a;
    if (!x || !pos || alloc_block(&a, ar, batch->B, batch->T, C, c->intermediate_size, c->num_heads, 0) != CP_OK)
        return CP_ERR;
    if (embed(m, batch, kv ? kv->len : 0, x, pos) != CP_OK) return CP_ERR;
    for (int64_t l = 0; l < L; l++) {
        if (hidden_states) memcpy(hidden_states + l * N * C, x, (size_t)(N * C) * sizeof *x);
        if (block_forward(m, &s->layers[l], batch, x, &a, kv, l, ar) != CP_OK) return CP_ERR;
    }
    cp_layernorm_forward(s->ln_f, out, NULL, NULL, x, N);
    if (hidden_states) memcpy(hidden_states + L * N * C, out, (size_t)(N * C) * sizeof *out);
    return CP_OK;
}

cp_status cp_gpt_forward(cp_model *m, const cp_batch *batch, float *out, float *hidden_states) {
    return forward(m, batch, NULL, out, hidden_states);
}

cp_status cp_gpt_forward_cached(cp_model *m, const cp_batch *batch, cp_kv_cache *cache, float *out) {
    return forward(m, batch, cache, out, NULL);
}

/* ---- training ---------------------------------------------------------------------------------- */

typedef struct {
    block_acts *blocks;     /* [L]; with recompute only blocks[l].x_in is kept */
    float *x_final;         /* (N,C) input of ln_f */
    float *lnf_mean, *lnf_rstd;
    int64_t *pos;
    int recompute;
} gpt_saved;

static int layer_trained(const cp_gpt_layer *ly) {
    const cp_module *mods[] = {ly->ln_1, ly->ln_2, ly->q_proj, ly->k_proj, ly->v_proj, ly->qkv_proj, ly->out_proj,
                               ly->fc, ly->proj};
    for (size_t i = 0; i < sizeof mods / sizeof *mods; i++)
        if (cp_module_trains(mods[i])) return 1;
    return 0;
}

cp_status cp_gpt_forward_train(cp_model *m, const cp_batch *batch, float *out, int recompute, void **saved_out) {
    const cp_gpt_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t B = batch->B, T = batch->T, N = B * T, C = c->hidden_size, L = c->num_layers;
    cp_arena *ar = &m->arena;
    gpt_saved *sv = cp_arena_alloc(ar, sizeof *sv, "saved activations");
    if (!sv) return CP_ERR;
    memset(sv, 0, sizeof *sv);
    sv->recompute = recompute;
    sv->blocks = cp_arena_alloc(ar, (size_t)L * sizeof *sv->blocks, "saved activations");
    sv->x_final = cp_arena_floats(ar, (size_t)(N * C), "final norm input");
    sv->lnf_mean = cp_arena_floats(ar, (size_t)N, "final norm statistics");
    sv->lnf_rstd = cp_arena_floats(ar, (size_t)N, "final norm statistics");
    sv->pos = cp_arena_alloc(ar, (size_t)N * sizeof *sv->pos, "position ids");
    if (!sv->blocks || !sv->x_final || !sv->lnf_mean || !sv->lnf_rstd || !sv->pos) return CP_ERR;
    block_acts scratch;
    if (recompute && alloc_block(&scratch, ar, B, T, C, c->intermediate_size, c->num_heads, 0) != CP_OK) return CP_ERR;
    float *tmp = recompute ? scratch.tmp : cp_arena_floats(ar, (size_t)(N * C), "projection output");
    if (!tmp) return CP_ERR;
    float *x = sv->x_final; /* the residual stream runs in place and ends as ln_f's input */
    if (embed(m, batch, 0, x, sv->pos) != CP_OK) return CP_ERR;
    for (int64_t l = 0; l < L; l++) {
        block_acts *a = &sv->blocks[l];
        if (recompute) {
            /* gradient checkpointing: keep only the block input; the backward pass recomputes the rest */
            *a = scratch;
            a->x_in = cp_arena_floats(ar, (size_t)(N * C), "block input");
            if (!a->x_in) return CP_ERR;
        } else if (alloc_block(a, ar, B, T, C, c->intermediate_size, c->num_heads, 1) != CP_OK) {
            return CP_ERR;
        }
        a->tmp = tmp;
        if (block_forward(m, &s->layers[l], batch, x, a, NULL, l, ar) != CP_OK) return CP_ERR;
    }
    cp_layernorm_forward(s->ln_f, out, sv->lnf_mean, sv->lnf_rstd, x, N);
    *saved_out = sv;
    return CP_OK;
}

cp_status cp_gpt_backward(cp_model *m, const cp_batch *batch, float *d_out, void *saved) {
    const cp_gpt_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t B = batch->B, T = batch->T, N = B * T, C = c->hidden_size, L = c->num_layers;
    cp_arena *ar = &m->arena;
    gpt_saved *sv = saved;
    /* the lowest layer whose parameters train (or the embeddings): nothing below it needs gradients */
    int embeddings = cp_module_trains(s->wte) || cp_module_trains(s->wpe);
    int64_t lowest = embeddings ? 0 : L;
    for (int64_t l = 0; l < L && lowest == L; l++)
        if (layer_trained(&s->layers[l])) lowest = l;
    float *dx = cp_arena_floats(ar, (size_t)(N * C), "residual gradient");
    if (!dx) return CP_ERR;
    memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    /* in the forward pass this was out = ln_f(x_final) */
    cp_layernorm_backward(s->ln_f, dx, d_out, sv->x_final, sv->lnf_mean, sv->lnf_rstd, N);
    block_acts fresh;
    if (sv->recompute && (alloc_block(&fresh, ar, B, T, C, c->intermediate_size, c->num_heads, 1) != CP_OK ||
                          !(fresh.tmp = cp_arena_floats(ar, (size_t)(N * C), "projection output"))))
        return CP_ERR;
    for (int64_t l = L - 1; l >= lowest; l--) {
        cp_arena_mark mark = cp_arena_get_mark(ar); /* this layer's scratch goes back after its backward */
        block_acts *a = &sv->blocks[l];
        if (sv->recompute) {
            /* rerun the block from its saved input to get its activations back */
            float *x = cp_arena_floats(ar, (size_t)(N * C), "recomputed block");
            if (!x) return CP_ERR;
            memcpy(x, a->x_in, (size_t)(N * C) * sizeof *x);
            if (block_forward(m, &s->layers[l], batch, x, &fresh, NULL, l, ar) != CP_OK) return CP_ERR;
            a = &fresh;
        }
        if (block_backward(m, &s->layers[l], batch, a, dx, l > lowest || embeddings, ar) != CP_OK) return CP_ERR;
        cp_arena_release(ar, mark);
    }
    if (embeddings) {
        if (cp_embedding_backward(s->wte, dx, batch->input_ids, N, ar) != CP_OK) return CP_ERR;
        if (cp_embedding_backward(s->wpe, dx, sv->pos, N, ar) != CP_OK) return CP_ERR;
    }
    return CP_OK;
}
