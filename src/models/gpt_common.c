/*
 * gpt_common.c — the GPT-2 / GPT-Neo decoder forward and the tree pieces they share.
 *
 *   x = drop(wte[ids] + wpe[pos])                           (B,T,C)
 *   per block: x += drop(out_proj(attn(ln_1 x))); x += drop(proj(act(fc(ln_2 x))))
 *              (attn drops its probabilities too)
 *   out = ln_f(x)
 *
 * drop is each site's Dropout in training (cp_gpt_layer; transformer.drop is the scaffold's), the
 * identity in eval mode. Activations live in the model's arena. With a KV cache
 * (generation) the same blocks run on the new tokens only and attend to the cached keys and values.
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "kernels/vector.h"
#include "models/kv_cache.h"
#include "models/decoder_head.h"
#include "models/proj.h"
#include "nn/attention.h"
#include "nn/layernorm.h"

#include <string.h>

cp_module *cp_gpt_build_base(cp_model *m, const char *lm_class, const char *model_class, cp_module **base_out) {
    const cp_model_config *c = &m->config;
    char cls[96];
    lm_class = cp_decoder_root_class(m, !strcmp(c->model_type, "gpt2") ? "GPT2" : "GPTNeo", lm_class, cls, sizeof cls);
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
    if (!(m->stack.embed_dropout = cp_module_dropout(base, "drop", c->embd_dropout))) return NULL;
    return cp_module_new(base, "h", "ModuleList", CP_MOD_LIST);
}

cp_status cp_gpt_build_head(cp_model *m, cp_module *base, cp_gpt_state *s) {
    const cp_model_config *c = &m->config;
    if (!(s->ln_f = cp_module_layernorm(base, "ln_f", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
    if (cp_decoder_build_head(m, s->wte, "classifier") != CP_OK) return CP_ERR;
    m->arch_state = s;
    m->stack.embeddings[0] = s->wte;
    m->stack.embeddings[1] = s->wpe;
    m->stack.final_norm = s->ln_f;
    return cp_stack_blocks(m, base, "h");
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
    if (!(layer->mlp_drop = cp_module_dropout(mlp, "dropout", c->resid_dropout))) return CP_ERR;
    layer->activation = c->activation;
    return CP_OK;
}

void cp_gpt_free_state(cp_model *m) {
    cp_gpt_state *s = m->arch_state;
    cp_free(m->stack.blocks); /* the block list build made (cp_stack_blocks) */
    m->stack.blocks = NULL;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* The activations one block keeps for its backward pass (training), or scratch (inference). */
typedef struct {
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
} block_acts;

/* The embedding step's state: the position ids it used. */
typedef struct { int64_t *pos; } gpt_emb;

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    block_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->ln1_mean = cp_arena_floats(ar, N, "ln_1 statistics");
    a->ln1_rstd = cp_arena_floats(ar, N, "ln_1 statistics");
    a->h1 = cp_arena_floats(ar, N * C, "ln_1 output");
    a->qkv = cp_arena_floats(ar, N * 3 * C, "q, k, v");
    a->probs = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * Tk), "attention probabilities") : NULL;
    a->att = cp_arena_floats(ar, N * C, "attention output");
    a->x_mid = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->ln2_mean = cp_arena_floats(ar, N, "ln_2 statistics");
    a->ln2_rstd = cp_arena_floats(ar, N, "ln_2 statistics");
    a->h2 = cp_arena_floats(ar, N * C, "ln_2 output");
    a->fc_pre = training ? cp_arena_floats(ar, N * I, "MLP pre-activation") : NULL;
    a->fc_act = cp_arena_floats(ar, N * I, "MLP hidden");
    if (!a->ln1_mean || !a->ln1_rstd || !a->h1 || !a->qkv || !a->att || !a->ln2_mean || !a->ln2_rstd || !a->h2 ||
        !a->fc_act || (training && (!a->probs || !a->x_mid || !a->fc_pre)))
        return CP_ERR;
    return CP_OK;
}

static cp_attention_args attention_args(const cp_model *m, const cp_run *run, const cp_gpt_layer *ly, const cp_batch *batch,
                                        const block_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size;
    cp_attention_args at = {.B = batch->B, .T = batch->T, .NH = c->num_heads, .hs = c->head_dim, .scale = ly->attn_scale,
                            .window = ly->window, .empty_row = ly->empty_row, .key_mask = batch->attention_mask,
                            .out = a->att, .probs = a->probs, .dropout = cp_run_dropout(run, ly->attn_drop)};
    if (ly->qkv_proj) {
        at.q = a->qkv; at.k = a->qkv + C; at.v = a->qkv + 2 * C;
        at.q_stride = at.k_stride = at.v_stride = 3 * C;
    } else {
        at.q = a->qkv; at.k = a->qkv + N * C; at.v = a->qkv + 2 * N * C;
        at.q_stride = at.k_stride = at.v_stride = C;
    }
    return at;
}

/* One block, x (N,C) updated in place: x += drop(out_proj(attn(ln_1 x))); x += drop(proj(act(fc(ln_2 x)))).
 * Everything the backward pass needs stays in `a` when it was allocated for training. With a cache
 * `kv`, the block's keys and values go into layer l of it and the queries attend to all its columns. */
static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *batch, float *x,
                                    block_acts *a, cp_kv_cache *kv) {
    const cp_gpt_layer *ly = &((const cp_gpt_state *)m->arch_state)->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    float *tmp = cp_arena_floats(run->arena, (size_t)(N * C), "projection output"); // (N,C)
    if (!tmp) return CP_ERR;

    /* Attention: h = ln_1(x); q, k, v; att = drop(softmax(mask(q·kᵀ·scale)))·v; x += drop(out_proj(att)) */
    const cp_dropout resid = cp_run_dropout(run, ly->resid_drop), mlp = cp_run_dropout(run, ly->mlp_drop);
    cp_layernorm_forward(ly->ln_1, a->h1, a->ln1_mean, a->ln1_rstd, x, N);
    cp_attention_args at = attention_args(m, run, ly, batch, a);
    if (ly->qkv_proj) {
        if (cp_proj_forward(run, ly->qkv_proj, a->qkv, a->h1, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_forward(run, ly->q_proj, a->qkv, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->k_proj, a->qkv + N * C, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->v_proj, a->qkv + 2 * N * C, a->h1, N) != CP_OK)
        return CP_ERR;
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->out_proj, tmp, a->att, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&resid, tmp, tmp, 0, N, C);
    cp_add_inplace(x, tmp, N * C);
    if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);

    /* MLP: x += drop(proj(act(fc(ln_2(x))))) */
    cp_layernorm_forward(ly->ln_2, a->h2, a->ln2_mean, a->ln2_rstd, x, N);
    float *pre = a->fc_pre ? a->fc_pre : a->fc_act;
    if (cp_proj_forward(run, ly->fc, pre, a->h2, N) != CP_OK) return CP_ERR;
    cp_activation_forward(ly->activation, a->fc_act, pre, N * I);
    if (cp_proj_forward(run, ly->proj, tmp, a->fc_act, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&mlp, tmp, tmp, 0, N, C);
    cp_add_inplace(x, tmp, N * C);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    (void)emb;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, run, l, b, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

/* Backward of one block. dx (N,C) holds the gradient of the block output and leaves holding the
 * gradient of its input x_in (the residual stream passes straight through). When !need_dx the part
 * that only feeds layers below (ln_1's input gradient) is skipped. */
static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *batch, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    (void)emb;
    const cp_gpt_layer *ly = &((const cp_gpt_state *)m->arch_state)->layers[l];
    const block_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    cp_arena *ar = run->arena;
    float *d_big = cp_arena_floats(ar, (size_t)(N * (I > 3 * C ? I : 3 * C)), "block gradients"); // (N,I) / (N,3C)
    float *d_small = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                    // (N,C)
    if (!d_big || !d_small) return CP_ERR;

    const cp_dropout resid = cp_run_dropout(run, ly->resid_drop), mlp = cp_run_dropout(run, ly->mlp_drop);
    // MLP: in the forward pass this was x_out = x_mid + drop(proj(act(fc(ln_2(x_mid)))))
    const float *d_proj = dx; // d proj's output: dx, times the mask under dropout
    if (cp_dropout_on(&mlp)) {
        cp_dropout_apply(&mlp, d_small, dx, 0, N, C);
        d_proj = d_small;
    }
    memset(d_big, 0, (size_t)(N * I) * sizeof *d_big);
    if (cp_proj_backward(run, ly->proj, d_big, d_proj, a->fc_act, N) != CP_OK) return CP_ERR;  // d fc_act
    cp_activation_backward(ly->activation, d_big, d_big, a->fc_pre, N * I);               // d fc_pre
    memset(d_small, 0, (size_t)(N * C) * sizeof *d_small);
    if (cp_proj_backward(run, ly->fc, d_small, d_big, a->h2, N) != CP_OK) return CP_ERR;   // d h2
    cp_layernorm_backward(ly->ln_2, dx, d_small, a->x_mid, a->ln2_mean, a->ln2_rstd, N);  // dx = d x_mid

    // Attention: x_mid = x_in + drop(out_proj(attn(ln_1(x_in))))
    const float *d_out = dx; // d out_proj's output (d_big is free until the attention's backward)
    if (cp_dropout_on(&resid)) {
        cp_dropout_apply(&resid, d_big, dx, 0, N, C);
        d_out = d_big;
    }
    memset(d_small, 0, (size_t)(N * C) * sizeof *d_small);
    if (cp_proj_backward(run, ly->out_proj, d_small, d_out, a->att, N) != CP_OK) return CP_ERR; // d att
    cp_attention_args at = attention_args(m, run, ly, batch, a);
    float *dq = d_big, *dk, *dv;
    if (ly->qkv_proj) { dk = d_big + C; dv = d_big + 2 * C; }
    else { dk = d_big + N * C; dv = d_big + 2 * N * C; }
    if (cp_stack_attention_backward(run, l, &at, d_small, dq, dk, dv) != CP_OK) return CP_ERR;
    int need_dh1 = need_dx || ly->ln_1->weight->grad || ly->ln_1->bias->grad;
    float *dh1 = need_dh1 ? d_small : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (ly->qkv_proj) {
        if (cp_proj_backward(run, ly->qkv_proj, dh1, d_big, a->h1, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->q_proj, dh1, dq, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->k_proj, dh1, dk, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->v_proj, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    if (dh1) cp_layernorm_backward(ly->ln_1, need_dx ? dx : NULL, dh1, x_in, a->ln1_mean, a->ln1_rstd, N);
    return CP_OK;
}

/* Token plus position embeddings of the batch, whose first token sits at column ea->past. */
static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *batch, const cp_embed_args *ea, float *x, void *emb) {
    const int64_t past = ea->past;
    const cp_gpt_state *s = m->arch_state;
    gpt_emb *e = emb;
    const int64_t B = batch->B, T = batch->T, N = B * T;
    if (!(e->pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *e->pos, "position ids"))) return CP_ERR;
    /* positions default to past..past+T-1 for every row, ignoring padding (transformers' forward) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) e->pos[b * T + t] = batch->position_ids ? batch->position_ids[b * T + t] : past + t;
    if (cp_embed_tokens(run, s->wte, batch, ea, x) != CP_OK) return CP_ERR;
    if (cp_embed_forward(run, s->wpe, x, e->pos, N, 1) != CP_OK) return cp_error_context("position_ids");
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *batch, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    const cp_gpt_state *s = m->arch_state;
    const gpt_emb *e = emb;
    const int64_t N = batch->B * batch->T;
    if (cp_embed_tokens_backward(run, s->wte, batch, ea, dx) != CP_OK) return CP_ERR;
    return cp_embed_backward(run, s->wpe, dx, e->pos, N);
}

const cp_block_ops cp_gpt_block_ops = {.acts_size = sizeof(block_acts), .embed_size = sizeof(gpt_emb),
                                       .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                       .block_forward = block_forward, .block_backward = block_backward};
