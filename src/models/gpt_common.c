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
    cp_free(s->alibi_slopes);
    cp_free(s);
    m->arch_state = NULL;
}

/* The activations one block keeps for its backward pass (training), or scratch (inference). */
typedef struct {
    float *ln1_mean, *ln1_rstd;   // (N)
    float *h1;                    // (N,C) ln_1 output: the input of q, k, v
    float *qkv;                   // (N,3C) q | k | v (fused layout, or three (N,C) planes)
    float *stats;                 // (B,NH,T,2) attention row statistics (max, exp-sum) for the fused backward; NULL in inference
    float *att;                   // (N,C) attention output: the input of out_proj
    float *x_mid;                 // (N,C) after the attention residual: the input of ln_2
    float *ln2_mean, *ln2_rstd;   // (N)
    float *h2;                    // (N,C) ln_2 output: the input of fc
    float *fc_pre;                // (N,I) fc output before the activation
    float *fc_act;                // (N,I) after the activation: the input of proj
    float *ln1_in, *ln2_in;       // (N,C) post-LN only: the residual sums ln_1 and ln_2 normalise
} block_acts;
_Static_assert(sizeof(block_acts) <= CP_GPT_ACTS_SIZE, "CP_GPT_ACTS_SIZE too small");

/* The embedding step's state: the position ids it used. */
typedef struct { int64_t *pos; } gpt_emb;

cp_status cp_gpt_alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const cp_gpt_state *s = m->arch_state;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    block_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->ln1_mean = cp_arena_floats(ar, N, "ln_1 statistics");
    a->ln1_rstd = cp_arena_floats(ar, N, "ln_1 statistics");
    a->h1 = cp_arena_floats(ar, N * C, "ln_1 output");
    a->qkv = cp_arena_floats(ar, N * 3 * C, "q, k, v");
    a->stats = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "attention row statistics") : NULL;
    a->att = cp_arena_floats(ar, N * C, "attention output");
    a->x_mid = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->ln2_mean = cp_arena_floats(ar, N, "ln_2 statistics");
    a->ln2_rstd = cp_arena_floats(ar, N, "ln_2 statistics");
    a->h2 = cp_arena_floats(ar, N * C, "ln_2 output");
    a->fc_pre = training ? cp_arena_floats(ar, N * I, "MLP pre-activation") : NULL;
    a->fc_act = cp_arena_floats(ar, N * I, "MLP hidden");
    if (!a->ln1_mean || !a->ln1_rstd || !a->h1 || !a->qkv || !a->att || !a->ln2_mean || !a->ln2_rstd || !a->h2 ||
        !a->fc_act || (training && (!a->stats || !a->x_mid || !a->fc_pre)))
        return CP_ERR;
    if (training && s->post_ln) {
        a->ln1_in = cp_arena_floats(ar, N * C, "ln_1 input");
        a->ln2_in = cp_arena_floats(ar, N * C, "ln_2 input");
        if (!a->ln1_in || !a->ln2_in) return CP_ERR;
    }
    return CP_OK;
}

/* The dropout site of a block: its Dropout module, else its functional dropout (identity when neither). */
static cp_dropout site(const cp_run *run, const cp_module *drop, const struct cp_gpt_fn_drop *fn) {
    if (drop || !fn->owner) return cp_run_dropout(run, drop);
    return cp_run_dropout_p(run, fn->owner, fn->name, fn->p);
}

static cp_attention_args attention_args(const cp_model *m, const cp_run *run, const cp_gpt_layer *ly, const cp_batch *batch,
                                        const block_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size;
    cp_attention_args at = {.B = batch->B, .T = batch->T, .NH = c->num_heads, .hs = c->head_dim, .scale = ly->attn_scale,
                            .window = ly->window, .empty_row = ly->empty_row, .key_mask = batch->attention_mask,
                            .out = a->att, .stats = a->stats, .dropout = site(run, ly->attn_drop, &ly->attn_fn),
                            .alibi_slopes = ((const cp_gpt_state *)m->arch_state)->alibi_slopes,
                            .alibi_pos = CP_ALIBI_POS_MASK};
    if (ly->qkv_proj) {
        at.q = a->qkv; at.k = a->qkv + C; at.v = a->qkv + 2 * C;
        at.q_stride = at.k_stride = at.v_stride = 3 * C;
    } else {
        at.q = a->qkv; at.k = a->qkv + N * C; at.v = a->qkv + 2 * N * C;
        at.q_stride = at.k_stride = at.v_stride = C;
    }
    return at;
}

/* qkv (N,3C) in the [Q|K|V] layout attention reads, from the fused projection's (NH,3,hd) columns
 * (BLOOM's _reshape: head h's q, k, v side by side), and back (the gradient's way). */
static void qkv_from_heads(float *qkv, const float *fused, int64_t N, int64_t NH, int64_t hd) {
    const int64_t C = NH * hd;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t k = 0; k < 3; k++)
                memcpy(qkv + n * 3 * C + k * C + h * hd, fused + n * 3 * C + (h * 3 + k) * hd, (size_t)hd * sizeof *qkv);
}

static void qkv_to_heads(float *fused, const float *qkv, int64_t N, int64_t NH, int64_t hd) {
    const int64_t C = NH * hd;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t k = 0; k < 3; k++)
                memcpy(fused + n * 3 * C + (h * 3 + k) * hd, qkv + n * 3 * C + k * C + h * hd, (size_t)hd * sizeof *qkv);
}

/* x (N,C) = res + y, res being x itself or another (N,C) buffer. */
static void residual_add(float *x, const float *res, const float *y, int64_t n) {
    if (res != x) memcpy(x, res, (size_t)n * sizeof *x);
    cp_add_inplace(x, y, n);
}

/* One block, x (N,C) updated in place (pre-LN; the cp_gpt_state variants in gpt_common.h):
 *   x += drop(out_proj(attn(ln_1 x))); x += drop(proj(act(fc(ln_2 x))))
 * Everything the backward pass needs stays in `a` when it was allocated for training. With a cache
 * `kv`, the block's keys and values go into layer l of it and the queries attend to all its columns. */
static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *batch, float *x,
                                    block_acts *a, cp_kv_cache *kv) {
    const cp_gpt_state *s = m->arch_state;
    const cp_gpt_layer *ly = &s->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    float *tmp = cp_arena_floats(run->arena, (size_t)(N * C), "projection output"); // (N,C)
    if (!tmp) return CP_ERR;

    /* Attention: h1 = ln_1(x) (post-LN: x); q, k, v; att = drop(softmax(mask(q·kᵀ·scale + alibi)))·v;
     * x = res + drop(out_proj(att)), res = x (residual_post_ln: h1); post-LN: x = ln_1(x) */
    const cp_dropout resid = site(run, ly->resid_drop, &ly->resid_fn), mlp = site(run, ly->mlp_drop, &ly->mlp_fn);
    if (s->post_ln) memcpy(a->h1, x, (size_t)(N * C) * sizeof *x);
    else cp_layernorm_forward(ly->ln_1, a->h1, a->ln1_mean, a->ln1_rstd, x, N);
    cp_attention_args at = attention_args(m, run, ly, batch, a);
    if (ly->qkv_proj) {
        float *fused = s->qkv_per_head ? cp_arena_floats(run->arena, (size_t)(N * 3 * C), "fused q, k, v") : a->qkv;
        if (!fused || cp_proj_forward(run, ly->qkv_proj, fused, a->h1, N) != CP_OK) return CP_ERR;
        if (s->qkv_per_head) qkv_from_heads(a->qkv, fused, N, c->num_heads, c->head_dim);
    } else if (cp_proj_forward(run, ly->q_proj, a->qkv, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->k_proj, a->qkv + N * C, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->v_proj, a->qkv + 2 * N * C, a->h1, N) != CP_OK)
        return CP_ERR;
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->out_proj, tmp, a->att, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&resid, tmp, tmp, 0, N, C);
    residual_add(x, s->residual_post_ln ? a->h1 : x, tmp, N * C);
    if (s->post_ln) {
        if (a->ln1_in) memcpy(a->ln1_in, x, (size_t)(N * C) * sizeof *x);
        cp_layernorm_forward(ly->ln_1, x, a->ln1_mean, a->ln1_rstd, x, N); /* row by row: in place is safe */
    }
    if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);

    /* MLP: h2 = ln_2(x) (post-LN: x); x = res + drop(proj(act(fc(h2)))), res = x (residual_post_ln: h2);
     * post-LN: x = ln_2(x) */
    if (s->post_ln) memcpy(a->h2, x, (size_t)(N * C) * sizeof *x);
    else cp_layernorm_forward(ly->ln_2, a->h2, a->ln2_mean, a->ln2_rstd, x, N);
    float *pre = a->fc_pre ? a->fc_pre : a->fc_act;
    if (cp_proj_forward(run, ly->fc, pre, a->h2, N) != CP_OK) return CP_ERR;
    cp_activation_forward(ly->activation, a->fc_act, pre, N * I);
    if (cp_proj_forward(run, ly->proj, tmp, a->fc_act, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&mlp, tmp, tmp, 0, N, C);
    residual_add(x, s->residual_post_ln ? a->h2 : x, tmp, N * C);
    if (s->post_ln) {
        if (a->ln2_in) memcpy(a->ln2_in, x, (size_t)(N * C) * sizeof *x);
        cp_layernorm_forward(ly->ln_2, x, a->ln2_mean, a->ln2_rstd, x, N);
    }
    return CP_OK;
}

cp_status cp_gpt_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    (void)emb;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, run, l, b, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

/* dx (N,C) = normᵀ·dx: the gradient through a post-LN norm of `in`, in place (d_tmp: (N,C) scratch). */
static void norm_back_inplace(const cp_module *norm, float *dx, float *d_tmp, const float *in, const float *mean,
                              const float *rstd, int64_t N, int64_t C) {
    memset(d_tmp, 0, (size_t)(N * C) * sizeof *d_tmp);
    cp_layernorm_backward(norm, d_tmp, dx, in, mean, rstd, N);
    memcpy(dx, d_tmp, (size_t)(N * C) * sizeof *dx);
}

/* The gradient of a sublayer's input x from d_res (dx on entry: the sum's gradient, whose residual
 * came from x, or from h = norm(x) under residual_post_ln) and dh (the sublayer's input gradient,
 * NULL when not computed): pre-LN dx = d_res + normᵀ(dh) (residual_post_ln: normᵀ(dh + d_res)),
 * post-LN (h = x) dx = d_res + dh. With dx_out NULL only the norm's parameter gradients are made. */
static void sublayer_input_back(const cp_gpt_state *s, const cp_module *norm, float *dx, float *dh, const float *x,
                                const float *mean, const float *rstd, int64_t N, int64_t C, int need_dx) {
    if (s->post_ln) {
        if (need_dx && dh) cp_add_inplace(dx, dh, N * C);
        return;
    }
    if (!dh) return;
    if (s->residual_post_ln) {
        cp_add_inplace(dh, dx, N * C);
        memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    }
    cp_layernorm_backward(norm, need_dx ? dx : NULL, dh, x, mean, rstd, N);
}

/* Backward of one block. dx (N,C) holds the gradient of the block output and leaves holding the
 * gradient of its input x_in. When !need_dx the part that only feeds layers below is skipped. */
cp_status cp_gpt_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *batch, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    (void)emb;
    const cp_gpt_state *s = m->arch_state;
    const cp_gpt_layer *ly = &s->layers[l];
    const block_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = batch->B * batch->T, C = c->hidden_size, I = c->intermediate_size;
    cp_arena *ar = run->arena;
    float *d_big = cp_arena_floats(ar, (size_t)(N * (I > 3 * C ? I : 3 * C)), "block gradients"); // (N,I) / (N,3C)
    float *d_small = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                    // (N,C)
    if (!d_big || !d_small) return CP_ERR;

    const cp_dropout resid = site(run, ly->resid_drop, &ly->resid_fn), mlp = site(run, ly->mlp_drop, &ly->mlp_fn);
    // post-LN: out = ln_2(ln2_in)
    if (s->post_ln) norm_back_inplace(ly->ln_2, dx, d_small, a->ln2_in, a->ln2_mean, a->ln2_rstd, N, C);
    // MLP: in the forward pass this was out = res + drop(proj(act(fc(h2)))), h2 = ln_2(x_mid) (post-LN: x_mid)
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
    sublayer_input_back(s, ly->ln_2, dx, d_small, a->x_mid, a->ln2_mean, a->ln2_rstd, N, C, 1); // dx = d x_mid
    // post-LN: x_mid = ln_1(ln1_in)
    if (s->post_ln) norm_back_inplace(ly->ln_1, dx, d_small, a->ln1_in, a->ln1_mean, a->ln1_rstd, N, C);

    // Attention: y = res + drop(out_proj(attn(h1))), h1 = ln_1(x_in) (post-LN: x_in)
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
    int need_dh1 = need_dx || (!s->post_ln && ((ly->ln_1->weight && ly->ln_1->weight->grad) || (ly->ln_1->bias && ly->ln_1->bias->grad)));
    float *dh1 = need_dh1 ? d_small : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (ly->qkv_proj) {
        float *d_fused = d_big;
        if (s->qkv_per_head) {
            if (!(d_fused = cp_arena_floats(ar, (size_t)(N * 3 * C), "fused q, k, v gradient"))) return CP_ERR;
            qkv_to_heads(d_fused, d_big, N, c->num_heads, c->head_dim);
        }
        if (cp_proj_backward(run, ly->qkv_proj, dh1, d_fused, a->h1, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->q_proj, dh1, dq, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->k_proj, dh1, dk, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->v_proj, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    sublayer_input_back(s, ly->ln_1, dx, dh1, x_in, a->ln1_mean, a->ln1_rstd, N, C, need_dx);
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
                                       .alloc_acts = cp_gpt_alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                       .block_forward = cp_gpt_block_forward, .block_backward = cp_gpt_block_backward};
