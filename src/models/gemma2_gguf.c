/*
 * gemma2_gguf.c — Gemma 2's tensors under llama.cpp's GGUF names (general.architecture "gemma2") and
 * its config.json: the table models/gguf_names.h describes.
 *
 * As gemma (models/gemma_gguf.c): every RMSNorm weight stored as 1 + w (CP_GGUF_MINUS_ONE; transformers'
 * Gemma2TensorProcessor subtracts 1 too), no lm_head (tied), the embedding unscaled, Q/K unpermuted.
 * Gemma 2's four norms per layer: llama.cpp's ffn_norm is the pre-feed-forward norm here (gemma's
 * ffn_norm is post_attention_layernorm), post_attention_norm the norm on the attention output.
 * Keys: the soft-caps and the sliding window (on the even layers: Gemma2Config's default layer_types,
 * llama.cpp's pattern). llama.cpp writes no query_pre_attn_scalar: config.json gets the scale its
 * graph uses (head_dim; hidden / heads for the 46-layer 27B), which is the released models' value.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)
#define W(g, h, r, c) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_##r, .cols = CP_GGUF_DIM_##c}
#define NORM(g, h) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_HIDDEN, .transform = CP_GGUF_MINUS_ONE}

static const cp_gguf_tensor_name top[] = {
    W("token_embd.weight", "model.embed_tokens.weight", VOCAB, HIDDEN),
    NORM("output_norm.weight", "model.norm.weight"),
    {.gguf = "output.weight", .hf = "lm_head.weight", .rows = CP_GGUF_DIM_VOCAB, .cols = CP_GGUF_DIM_HIDDEN,
     .optional = 1}, /* llama.cpp writes none: tied */
};

static const cp_gguf_tensor_name block[] = {
    NORM("attn_norm.weight", "input_layernorm.weight"),
    W("attn_q.weight", "self_attn.q_proj.weight", Q, HIDDEN),
    W("attn_k.weight", "self_attn.k_proj.weight", KV, HIDDEN),
    W("attn_v.weight", "self_attn.v_proj.weight", KV, HIDDEN),
    W("attn_output.weight", "self_attn.o_proj.weight", HIDDEN, Q),
    NORM("post_attention_norm.weight", "post_attention_layernorm.weight"),
    NORM("ffn_norm.weight", "pre_feedforward_layernorm.weight"),
    W("ffn_gate.weight", "mlp.gate_proj.weight", FFN, HIDDEN),
    W("ffn_up.weight", "mlp.up_proj.weight", FFN, HIDDEN),
    W("ffn_down.weight", "mlp.down_proj.weight", HIDDEN, FFN),
    NORM("post_ffw_norm.weight", "post_feedforward_layernorm.weight"),
};

/* Gemma2Config's keys: GeGLU with the tanh GELU (hidden_activation, which Gemma2MLP reads). */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_bias", CP_GGUF_CFG_JSON, "false"},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"attn_logit_softcapping", CP_GGUF_CFG_ATTN_SOFTCAP, NULL},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"final_logit_softcapping", CP_GGUF_CFG_FINAL_SOFTCAP, NULL},
    {"head_dim", CP_GGUF_CFG_HEAD_DIM, NULL},
    {"hidden_activation", CP_GGUF_CFG_JSON, "\"gelu_pytorch_tanh\""},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"intermediate_size", CP_GGUF_CFG_FFN, NULL},
    {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},
    {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL},
    {"num_key_value_heads", CP_GGUF_CFG_KV_HEADS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"query_pre_attn_scalar", CP_GGUF_CFG_QUERY_SCALAR, NULL},
    {"rms_norm_eps", CP_GGUF_CFG_NORM_EPS, NULL},
    {"rope_scaling", CP_GGUF_CFG_ROPE_SCALING, NULL},
    {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"sliding_window", CP_GGUF_CFG_SLIDING_WINDOW, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

const cp_gguf_names cp_gemma2_gguf_names = {
    .gguf_arch = "gemma2",
    .hf_layer_prefix = "model.layers.",
    .top = top,
    .n_top = N(top),
    .block = block,
    .n_block = N(block),
    .config = config,
    .n_config = N(config),
    .known_keys_only = 1,
};
