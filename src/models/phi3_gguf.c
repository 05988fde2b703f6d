/*
 * phi3_gguf.c — Phi-3's tensors under llama.cpp's GGUF names (general.architecture "phi3") and its
 * config.json: the table models/gguf_names.h describes.
 *
 * llama.cpp keeps Phi-3's fused projections as they are: attn_qkv is qkv_proj (rows q, k, v) and
 * ffn_up is gate_up_proj (gate half first); Q/K are not permuted (NEOX-style RoPE). Keys:
 * rope.dimension_count (partial_rotary_factor = count / head_dim) and attention.sliding_window.
 * Longrope's rope_factors_long / rope_factors_short are refused: cpeft's phi3 does not run longrope
 * (and refuses its rope_scaling by name).
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)
#define W(g, h, r, c) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_##r, .cols = CP_GGUF_DIM_##c}

static const cp_gguf_tensor_name top[] = {
    W("token_embd.weight", "model.embed_tokens.weight", VOCAB, HIDDEN),
    W("output_norm.weight", "model.norm.weight", HIDDEN, NONE),
    {.gguf = "output.weight", .hf = "lm_head.weight", .rows = CP_GGUF_DIM_VOCAB, .cols = CP_GGUF_DIM_HIDDEN,
     .optional = 1}, /* absent: tied */
};

static const cp_gguf_tensor_name block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_qkv.weight", "self_attn.qkv_proj.weight", QKV, HIDDEN),
    W("attn_output.weight", "self_attn.o_proj.weight", HIDDEN, Q),
    W("ffn_norm.weight", "post_attention_layernorm.weight", HIDDEN, NONE),
    W("ffn_up.weight", "mlp.gate_up_proj.weight", FFN2, HIDDEN),
    W("ffn_down.weight", "mlp.down_proj.weight", HIDDEN, FFN),
};

static const cp_gguf_refused_name refused[] = {
    {"rope_factors_long.weight", "longrope scaling (rope_factors_long / rope_factors_short) is not supported for phi3"},
    {"rope_factors_short.weight", "longrope scaling (rope_factors_long / rope_factors_short) is not supported for phi3"},
};

/* Phi3Config's keys; head_dim (Phi3Attention reads it when the config has it, else hidden / heads) from
 * attention.key_length, which llama.cpp does not write (then hidden / heads). */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_bias", CP_GGUF_CFG_JSON, "false"},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"embd_pdrop", CP_GGUF_CFG_JSON, "0.0"},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"head_dim", CP_GGUF_CFG_HEAD_DIM, NULL},
    {"hidden_act", CP_GGUF_CFG_JSON, "\"silu\""},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"intermediate_size", CP_GGUF_CFG_FFN, NULL},
    {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},
    {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL},
    {"num_key_value_heads", CP_GGUF_CFG_KV_HEADS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"partial_rotary_factor", CP_GGUF_CFG_ROTARY_FRACTION, NULL},
    {"resid_pdrop", CP_GGUF_CFG_JSON, "0.0"},
    {"rms_norm_eps", CP_GGUF_CFG_NORM_EPS, NULL},
    {"rope_scaling", CP_GGUF_CFG_ROPE_SCALING, NULL},
    {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"sliding_window", CP_GGUF_CFG_SLIDING_WINDOW, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

const cp_gguf_names cp_phi3_gguf_names = {
    .gguf_arch = "phi3",
    .hf_layer_prefix = "model.layers.",
    .top = top,
    .n_top = N(top),
    .block = block,
    .n_block = N(block),
    .refused = refused,
    .n_refused = N(refused),
    .config = config,
    .n_config = N(config),
    .known_keys_only = 1,
};
