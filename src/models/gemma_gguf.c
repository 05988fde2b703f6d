/*
 * gemma_gguf.c — Gemma's tensors under llama.cpp's GGUF names (general.architecture "gemma") and
 * its config.json: the table models/gguf_names.h describes.
 *
 * llama.cpp's converter writes every RMSNorm weight as 1 + w (its RMSNorm multiplies by the weight,
 * Gemma's by 1 + weight): the conversion subtracts 1 (CP_GGUF_MINUS_ONE). It writes no lm_head
 * (tied), does not scale the embedding (GemmaModel multiplies by √hidden at run time, as cpeft
 * does), and Q/K as Hugging Face has them (NEOX-style RoPE in llama.cpp: no un-permutation).
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
    NORM("ffn_norm.weight", "post_attention_layernorm.weight"),
    W("ffn_gate.weight", "mlp.gate_proj.weight", FFN, HIDDEN),
    W("ffn_up.weight", "mlp.up_proj.weight", FFN, HIDDEN),
    W("ffn_down.weight", "mlp.down_proj.weight", HIDDEN, FFN),
};

/* GemmaConfig's keys: GeGLU with the tanh GELU (hidden_act, and the older hidden_activation). */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_bias", CP_GGUF_CFG_JSON, "false"},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"head_dim", CP_GGUF_CFG_HEAD_DIM, NULL},
    {"hidden_act", CP_GGUF_CFG_JSON, "\"gelu_pytorch_tanh\""},
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
    {"rms_norm_eps", CP_GGUF_CFG_NORM_EPS, NULL},
    {"rope_scaling", CP_GGUF_CFG_ROPE_SCALING, NULL},
    {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

static const cp_gguf_refused_name refused_keys[] = {
    {"attention.sliding_window", "sliding-window attention is gemma2's, not gemma's"},
};

const cp_gguf_names cp_gemma_gguf_names = {
    .gguf_arch = "gemma",
    .hf_layer_prefix = "model.layers.",
    .top = top,
    .n_top = N(top),
    .block = block,
    .n_block = N(block),
    .config = config,
    .n_config = N(config),
    .refused_keys = refused_keys,
    .n_refused_keys = N(refused_keys),
    .known_keys_only = 1,
};
