/*
 * llama.h — what the Llama family's files share (models/llama_config.c: config.json;
 * models/llama.c: the module tree and the registry entries; models/llama_blocks.c: embeddings and
 * decoder layers, forward and backward). Internal to models/.
 *
 * The variants differ in a few switches read from cp_model_config.llama and the modules build
 * makes: fused projections (phi3's qkv_proj and gate_up_proj), per-head q/k norms (qwen3), norms
 * after each sublayer (gemma2's post_attention_layernorm / post_feedforward_layernorm), attention
 * logit soft-capping and its score scale (gemma2), partial rotary (phi3, glm), interleaved RoPE (glm).
 */
#ifndef CP_MODELS_LLAMA_H
#define CP_MODELS_LLAMA_H

#include <cjson/cJSON.h>

#include "models/config.h"
#include "models/stack.h"
#include "nn/module.h"
#include "nn/rope.h"

typedef struct {
    cp_module *input_layernorm;
    cp_module *ff_norm;        /* the norm before the MLP: post_attention_layernorm (Llama), pre_feedforward_layernorm (gemma2) */
    cp_module *attn_out_norm;  /* gemma2: post_attention_layernorm on the attention output before its residual sum, else NULL */
    cp_module *ff_out_norm;    /* gemma2: post_feedforward_layernorm on the MLP output, else NULL */
    cp_module *q_proj, *k_proj, *v_proj; /* NULL when qkv_proj (phi3: one Linear, rows q, then k, then v) */
    cp_module *qkv_proj;
    cp_module *o_proj;
    cp_module *gate_proj, *up_proj; /* NULL when gate_up_proj (phi3: one Linear, rows gate, then up) */
    cp_module *gate_up_proj;
    cp_module *down_proj;
    cp_module *q_norm, *k_norm; /* qwen3: RMSNorm(head_dim) on each head of q and k, else NULL */
    cp_module *resid_attn_dropout, *resid_mlp_dropout; /* phi3: Dropout(resid_pdrop) on each sublayer's output, else NULL */
    cp_module *self_attn; /* the attention module: its attention_dropout (a float, no module) drops the probabilities */
    int64_t window; /* sliding window of this layer's attention (0 = full causal) */
} llama_layer;

typedef struct {
    cp_module *embed_tokens, *norm;
    llama_layer *layers;
    cp_rope rope;
    int64_t rotary_dim; /* dims of each head that rotate (phi3's, glm's partial_rotary_factor · head_dim), else head_dim */
    int rope_interleaved; /* glm: pairs (2k, 2k+1) turn (rotate_every_two), else halves (k, k + rotary_dim/2) */
    float embed_scale; /* gemma, gemma2: √hidden_size in f32 (Gemma*TextScaledWordEmbedding), else 1 */
} llama_state;

/* config.json → cfg for every model type of the family (models/llama_config.c). */
cp_status cp_llama_parse_config(cp_model_config *cfg, const cJSON *root, const char *file);

/* The embeddings and decoder layers (models/llama_blocks.c). */
extern const cp_block_ops cp_llama_block_ops;

#endif
