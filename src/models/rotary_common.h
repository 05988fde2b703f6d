/*
 * rotary_common.h — the decoder skeleton GPT-NeoX, GPT-J and Phi share: token embeddings (no
 * position table), LayerNorm blocks whose attention turns the first rotary_dim dims of each head
 * (partial RoPE: halves for NeoX and Phi, interleaved pairs for GPT-J), a parallel residual, a
 * final LayerNorm and an LM head.
 *
 *   x = drop(embed[ids])                                                         (B,T,C)
 *   per block, parallel (GPT-J, Phi: one norm; NeoX use_parallel_residual: two):
 *       a = drop(out(attn(ln_1 x)));  m = drop(fc_out(act(fc_in(ln_2 x))))  (ln_2 = ln_1 when one norm)
 *       x = (a + m) + x
 *   per block, sequential (NeoX use_parallel_residual false):
 *       x = x + drop(out(attn(ln_1 x)));  x = drop(fc_out(act(fc_in(ln_2 x)))) + x
 *   out = final_norm(x)
 *
 * attn: q, k, v from one fused per-head projection (NeoX query_key_value: each head's [q | k | v],
 * hd each) or three (GPT-J without bias, Phi with, GQA); Phi's qk_layernorm normalises each head of
 * q and k; RoPE on the first rotary_dim dims of q and k; softmax(q·kᵀ/√hd + mask)·v with one
 * additive mask (a query that sees nothing attends uniformly to all keys, as eager PyTorch).
 * Each architecture fills a cp_rotary_layer per block in its build (gpt_neox.c, gptj.c, phi.c).
 */
#ifndef CP_MODELS_ROTARY_COMMON_H
#define CP_MODELS_ROTARY_COMMON_H

#include <cjson/cJSON.h>

#include "models/model.h"
#include "models/stack.h"
#include "nn/rope.h"

typedef struct {
    cp_module *ln_1;                     /* the block's input norm */
    cp_module *ln_2;                     /* NeoX post_attention_layernorm; NULL: the MLP reads ln_1's output */
    cp_module *qkv;                      /* NeoX query_key_value (per head [q|k|v]), or NULL */
    cp_module *q_proj, *k_proj, *v_proj; /* separate projections (GPT-J, Phi), or NULL */
    cp_module *q_norm, *k_norm;          /* Phi qk_layernorm: LayerNorm(hd) on each head of q and k, or NULL */
    cp_module *out_proj;                 /* dense / out_proj */
    cp_module *fc_in, *fc_out;           /* MLP: fc_out(act(fc_in(h))) */
    cp_module *attn;                     /* the attention module (its float attention_dropout, NeoX and Phi) */
    cp_module *attn_drop;                /* GPT-J's attn_dropout module on the probabilities, else NULL */
    /* the Dropouts on the attention's and the MLP's outputs (NeoX post_attention_dropout and
     * post_mlp_dropout, GPT-J attn.resid_dropout and mlp.dropout, Phi resid_dropout twice: mlp_call 1) */
    cp_module *attn_out_drop, *mlp_drop;
    int mlp_call;
} cp_rotary_layer;

typedef struct {
    cp_module *embed, *final_norm;
    cp_rotary_layer *layers;             /* [num_layers] */
    cp_rope rope;                        /* dim = rotary_dim */
    int64_t max_table;                   /* GPT-J: positions index a table of n_positions rows; 0: unbounded */
} cp_rotary_state;

/* Allocates m->arch_state with its layers and the RoPE of the config (rotary_dim, theta, scaling). */
cp_rotary_state *cp_rotary_new_state(cp_model *m);
/* Finishes the build: m->stack's embeddings, final norm and blocks (the ModuleList `list` under base). */
cp_status cp_rotary_finish(cp_model *m, cp_module *base, const char *list);
void cp_rotary_free_state(cp_model *m);

/* RoPE keys of GPT-NeoX and Phi as transformers 5.23 reads them: the parameter dict is rope_scaling
 * when it is a non-empty object, else rope_parameters; rope_theta and partial_rotary_factor are the
 * dict's, else the top-level theta_key / partial_key (NeoX: rotary_emb_base, rotary_pct; Phi:
 * rope_theta, partial_rotary_factor), else 10000 / partial_default; rope_type (or type) is default,
 * linear, dynamic or llama3 (others refused by name). Sets rope_*, rotary_dim = int(head_dim · factor). */
cp_status cp_rotary_parse_rope(cp_model_config *cfg, const cJSON *root, const char *file, const char *theta_key,
                               const char *partial_key, double partial_default);

/* cfg->activation from config.json's `key` (an ACT2FN name; dflt when absent). */
cp_status cp_rotary_read_act(cp_model_config *cfg, const cJSON *root, const char *key, const char *dflt, const char *file);

extern const cp_block_ops cp_rotary_block_ops;

#endif
