/*
 * phi_gguf.c — Phi-2's (PhiForCausalLM's) tensors under llama.cpp's GGUF names (general.architecture
 * "phi2") and its config.json: the table models/gguf_names.h describes.
 *
 * llama.cpp's converter writes the tensors as Hugging Face has them (no transform): separate q/k/v
 * with biases, dense, fc1 / fc2, one input_layernorm per block (attention and MLP in parallel), the
 * final_layernorm and lm_head with its bias (never tied). Its keys: rope.dimension_count =
 * int(partial_rotary_factor * hidden) // heads (read back as partial_rotary_factor =
 * dimension_count / head_dim), head_count_kv = head_count, the LayerNorm epsilon, no rope base
 * (PhiConfig's rope_theta 10000) and feed_forward_length = 4 * hidden (phi-2's intermediate_size:
 * another size fails the fc1 shape check). Pre-2024 conversions of phi-2's first format wrote a
 * fused attn_qkv: refused by name.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)
#define W(g, h, r, c) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_##r, .cols = CP_GGUF_DIM_##c}

static const cp_gguf_tensor_name top[] = {
    W("token_embd.weight", "model.embed_tokens.weight", VOCAB, HIDDEN),
    W("output_norm.weight", "model.final_layernorm.weight", HIDDEN, NONE),
    W("output_norm.bias", "model.final_layernorm.bias", HIDDEN, NONE),
    W("output.weight", "lm_head.weight", VOCAB, HIDDEN), /* required: PhiForCausalLM's lm_head has a bias */
    W("output.bias", "lm_head.bias", VOCAB, NONE),
};

static const cp_gguf_tensor_name block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_norm.bias", "input_layernorm.bias", HIDDEN, NONE),
    W("attn_q.weight", "self_attn.q_proj.weight", Q, HIDDEN),
    W("attn_q.bias", "self_attn.q_proj.bias", Q, NONE),
    W("attn_k.weight", "self_attn.k_proj.weight", KV, HIDDEN),
    W("attn_k.bias", "self_attn.k_proj.bias", KV, NONE),
    W("attn_v.weight", "self_attn.v_proj.weight", KV, HIDDEN),
    W("attn_v.bias", "self_attn.v_proj.bias", KV, NONE),
    W("attn_output.weight", "self_attn.dense.weight", HIDDEN, Q),
    W("attn_output.bias", "self_attn.dense.bias", HIDDEN, NONE),
    W("ffn_up.weight", "mlp.fc1.weight", FFN, HIDDEN),
    W("ffn_up.bias", "mlp.fc1.bias", FFN, NONE),
    W("ffn_down.weight", "mlp.fc2.weight", HIDDEN, FFN),
    W("ffn_down.bias", "mlp.fc2.bias", HIDDEN, NONE),
};

#define FUSED_QKV "a fused q/k/v (pre-2024 conversions of phi-2's first checkpoint format, mixer.Wqkv): " \
                  "PhiForCausalLM has separate q_proj / k_proj / v_proj; not supported"
static const cp_gguf_refused_name refused[] = {
    {"attn_qkv.weight", FUSED_QKV},
    {"attn_qkv.bias", FUSED_QKV},
};

/* PhiConfig's keys. */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"embd_pdrop", CP_GGUF_CFG_JSON, "0.0"},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"hidden_act", CP_GGUF_CFG_JSON, "\"gelu_new\""},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"intermediate_size", CP_GGUF_CFG_FFN, NULL},
    {"layer_norm_eps", CP_GGUF_CFG_LN_EPS, NULL},
    {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},
    {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL},
    {"num_key_value_heads", CP_GGUF_CFG_KV_HEADS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"partial_rotary_factor", CP_GGUF_CFG_ROTARY_FRACTION, NULL},
    {"qk_layernorm", CP_GGUF_CFG_JSON, "false"},
    {"resid_pdrop", CP_GGUF_CFG_JSON, "0.0"},
    {"rope_scaling", CP_GGUF_CFG_JSON, "null"},
    {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

const cp_gguf_names cp_phi2_gguf_names = {
    .gguf_arch = "phi2",
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
