/*
 * gpt_common.h — the decoder skeleton GPT-2 and GPT-Neo share: learned absolute positions added to
 * token embeddings, pre-LayerNorm blocks (x += attn(ln_1 x); x += mlp(ln_2 x)), a final LayerNorm
 * and a tied LM head. The architectures differ only in how q, k, v are projected (three Linears
 * or one fused Conv1D), the attention scale and the local window; each fills a cp_gpt_layer per
 * block and calls cp_gpt_forward.
 */
#ifndef CP_MODELS_GPT_COMMON_H
#define CP_MODELS_GPT_COMMON_H

#include "models/model.h"
#include "models/stack.h"
#include "nn/attention.h"

typedef struct {
    cp_module *ln_1, *ln_2;
    cp_module *q_proj, *k_proj, *v_proj; /* separate projections (GPT-Neo), or NULL */
    cp_module *qkv_proj;                 /* fused [Q|K|V] projection (GPT-2 c_attn), or NULL */
    cp_module *out_proj;
    cp_module *fc, *proj;                /* MLP: proj(act(fc(x))) */
    cp_activation activation;
    float attn_scale;                    /* multiplies q·k */
    int64_t window;                      /* 0 = global */
    cp_attn_empty_row empty_row;         /* what a fully masked (padding) query sees, as eager PyTorch */
    /* the Dropouts training applies: attn_dropout on the attention probabilities, resid_dropout on
     * the attention's output projection, mlp.dropout on the MLP's output (each before its residual add) */
    cp_module *attn_drop, *resid_drop, *mlp_drop;
    /* where one of those is NULL, a functional dropout (OPT's, BLOOM's hidden_dropout): the site
     * `name` under `owner` with probability p (cp_run_dropout_p); owner NULL: none */
    struct cp_gpt_fn_drop { const cp_module *owner; const char *name; double p; } attn_fn, resid_fn, mlp_fn;
} cp_gpt_layer;

typedef struct {
    cp_module *wte, *wpe, *ln_f;         /* (transformer.drop on wte + wpe is the scaffold's embed_dropout) */
    cp_module *project_in;               /* OPT word_embed_proj_dim != hidden_size: Linear (C,P) after wte; NULL: none */
    cp_module *embed_ln;                 /* BLOOM's word_embeddings_layernorm, or NULL */
    cp_gpt_layer *layers;                /* [num_layers] */
    /* The block's variants, every layer alike (0 / NULL: GPT-2's pre-LN block):
     * post_ln           OPT's do_layer_norm_before = False: x = ln_1(x + attn(x)); x = ln_2(x + mlp(x))
     * residual_post_ln  BLOOM's apply_residual_connection_post_layernorm: each residual is the
     *                   sublayer's LayerNorm output instead of its input
     * qkv_per_head      the fused projection's output columns are (NH, 3, hd) (BLOOM), not [Q|K|V]
     * alibi_slopes      (NH) ALiBi added to the scores at positions (cumsum(mask) − 1)·mask (BLOOM) */
    int post_ln, residual_post_ln, qkv_per_head;
    float *alibi_slopes;
} cp_gpt_state;

/* Starts the tree: the state (m->arch_state), the root `lm_class`, its base model `model_class`
 * under "transformer" (returned in *base) with wte, wpe and drop; returns the ModuleList "h" to
 * which the caller adds blocks (NULL with an error set on failure). */
cp_module *cp_gpt_build_base(cp_model *m, const char *lm_class, const char *model_class, cp_module **base);
/* Adds ln_f to `base`, the tied lm_head to m->root, and finishes m. */
cp_status cp_gpt_build_head(cp_model *m, cp_module *base, cp_gpt_state *s);
/* Adds the MLP container (c_fc, c_proj, act, dropout) under `block`. */
cp_status cp_gpt_build_mlp(cp_model *m, cp_module *block, const char *class_name, int conv1d, cp_gpt_layer *layer);

/* The block operations of the scaffold (models/stack.h). */
extern const cp_block_ops cp_gpt_block_ops;
/* The block part alone, for architectures with their own embedding step (OPT, BLOOM): their
 * cp_block_ops take these three with their embed / embed_backward. */
cp_status cp_gpt_alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar);
cp_status cp_gpt_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv);
cp_status cp_gpt_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx);
#define CP_GPT_ACTS_SIZE (16 * sizeof(float *))
void cp_gpt_free_state(cp_model *m);

#endif
