/*
 * qwen_gguf.c — Qwen2's and Qwen3's tensors under llama.cpp's GGUF names (general.architecture
 * "qwen2" / "qwen3") and their config.json: the tables models/gguf_names.h describes.
 *
 * llama.cpp runs these models with NEOX-style (rotate-half) RoPE, so its converter writes Q and K
 * as Hugging Face has them: no un-permutation. Qwen2 has biases on q/k/v (Qwen2Attention, always);
 * Qwen3 has none (attention_bias false, as llama.cpp's Qwen3 graph) and an RMSNorm over each head of
 * q and k (attn_q_norm / attn_k_norm, head_dim values).
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

static const cp_gguf_tensor_name qwen2_block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_q.weight", "self_attn.q_proj.weight", Q, HIDDEN),
    W("attn_q.bias", "self_attn.q_proj.bias", Q, NONE),
    W("attn_k.weight", "self_attn.k_proj.weight", KV, HIDDEN),
    W("attn_k.bias", "self_attn.k_proj.bias", KV, NONE),
    W("attn_v.weight", "self_attn.v_proj.weight", KV, HIDDEN),
    W("attn_v.bias", "self_attn.v_proj.bias", KV, NONE),
    W("attn_output.weight", "self_attn.o_proj.weight", HIDDEN, Q),
    W("ffn_norm.weight", "post_attention_layernorm.weight", HIDDEN, NONE),
    W("ffn_gate.weight", "mlp.gate_proj.weight", FFN, HIDDEN),
    W("ffn_up.weight", "mlp.up_proj.weight", FFN, HIDDEN),
    W("ffn_down.weight", "mlp.down_proj.weight", HIDDEN, FFN),
};

static const cp_gguf_tensor_name qwen3_block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_q.weight", "self_attn.q_proj.weight", Q, HIDDEN),
    W("attn_q_norm.weight", "self_attn.q_norm.weight", HEAD, NONE),
    W("attn_k.weight", "self_attn.k_proj.weight", KV, HIDDEN),
    W("attn_k_norm.weight", "self_attn.k_norm.weight", HEAD, NONE),
    W("attn_v.weight", "self_attn.v_proj.weight", KV, HIDDEN),
    W("attn_output.weight", "self_attn.o_proj.weight", HIDDEN, Q),
    W("ffn_norm.weight", "post_attention_layernorm.weight", HIDDEN, NONE),
    W("ffn_gate.weight", "mlp.gate_proj.weight", FFN, HIDDEN),
    W("ffn_up.weight", "mlp.up_proj.weight", FFN, HIDDEN),
    W("ffn_down.weight", "mlp.down_proj.weight", HIDDEN, FFN),
};

/* Qwen2Config's and Qwen3Config's keys: no sliding window (llama.cpp's converter writes none, and
 * its graph runs full attention on every layer). Qwen3 also has attention_bias. */
#define QWEN_CONFIG                                                                                                    \
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL}, {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},                      \
        {"bos_token_id", CP_GGUF_CFG_BOS, NULL}, {"eos_token_id", CP_GGUF_CFG_EOS, NULL}, {"head_dim", CP_GGUF_CFG_HEAD_DIM, NULL},      \
        {"hidden_act", CP_GGUF_CFG_JSON, "\"silu\""}, {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},                             \
        {"initializer_range", CP_GGUF_CFG_JSON, "0.02"}, {"intermediate_size", CP_GGUF_CFG_FFN, NULL},                       \
        {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL}, {"max_window_layers", CP_GGUF_CFG_LAYERS, NULL},                 \
        {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL}, {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},                            \
        {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL}, {"num_key_value_heads", CP_GGUF_CFG_KV_HEADS, NULL},                      \
        {"pad_token_id", CP_GGUF_CFG_PAD, NULL}, {"rms_norm_eps", CP_GGUF_CFG_NORM_EPS, NULL},                                     \
        {"rope_scaling", CP_GGUF_CFG_ROPE_SCALING, NULL}, {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},                            \
        {"sliding_window", CP_GGUF_CFG_JSON, "null"}, {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},                       \
        {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL}, {"use_cache", CP_GGUF_CFG_JSON, "true"},                             \
        {"use_sliding_window", CP_GGUF_CFG_JSON, "false"}, {"vocab_size", CP_GGUF_CFG_VOCAB, NULL}

static const cp_gguf_cfg_entry qwen2_config[] = {QWEN_CONFIG};
static const cp_gguf_cfg_entry qwen3_config[] = {QWEN_CONFIG, {"attention_bias", CP_GGUF_CFG_JSON, "false"}};

static const cp_gguf_refused_name refused_keys[] = {
    {"attention.sliding_window", "sliding-window attention: llama.cpp's qwen graphs do not run it and the "
                                 "conversion does not write it"},
};

#define QWEN_NAMES(arch, blk, cfg)                                                                                     \
    {.gguf_arch = arch, .hf_layer_prefix = "model.layers.", .top = top, .n_top = N(top), .block = blk,                 \
     .n_block = N(blk), .config = cfg, .n_config = N(cfg), .refused_keys = refused_keys,                               \
     .n_refused_keys = N(refused_keys), .known_keys_only = 1}

const cp_gguf_names cp_qwen2_gguf_names = QWEN_NAMES("qwen2", qwen2_block, qwen2_config);
const cp_gguf_names cp_qwen3_gguf_names = QWEN_NAMES("qwen3", qwen3_block, qwen3_config);
