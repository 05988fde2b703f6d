/*
 * gpt_neox_gguf.c — GPT-NeoX's (Pythia's) tensors under llama.cpp's GGUF names
 * (general.architecture "gptneox") and its config.json: the table models/gguf_names.h describes.
 *
 * llama.cpp's converter re-orders the fused query_key_value from Hugging Face's per-head rows
 * (n_head, 3, head_dim) to [all q; all k; all v], weight and bias: the conversion puts them back
 * (CP_GGUF_QKV_HEADS). It writes rope.dimension_count = int(rotary_pct * head_dim) (read back as
 * rotary_pct = dimension_count / head_dim), use_parallel_residual and the LayerNorm epsilon, no
 * rope base (GPTNeoXConfig's rotary_emb_base 10000, as llama.cpp assumes) and no head_count_kv.
 * Every Linear and LayerNorm has a bias; embed_out (the untied LM head) is the checkpoints' name.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)
#define W(g, h, r, c) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_##r, .cols = CP_GGUF_DIM_##c}

static const cp_gguf_tensor_name top[] = {
    W("token_embd.weight", "gpt_neox.embed_in.weight", VOCAB, HIDDEN),
    W("output_norm.weight", "gpt_neox.final_layer_norm.weight", HIDDEN, NONE),
    W("output_norm.bias", "gpt_neox.final_layer_norm.bias", HIDDEN, NONE),
    {.gguf = "output.weight", .hf = "embed_out.weight", .rows = CP_GGUF_DIM_VOCAB, .cols = CP_GGUF_DIM_HIDDEN,
     .optional = 1}, /* absent: tied */
};

static const cp_gguf_tensor_name block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_norm.bias", "input_layernorm.bias", HIDDEN, NONE),
    {.gguf = "attn_qkv.weight", .hf = "attention.query_key_value.weight", .rows = CP_GGUF_DIM_QKV,
     .cols = CP_GGUF_DIM_HIDDEN, .transform = CP_GGUF_QKV_HEADS},
    {.gguf = "attn_qkv.bias", .hf = "attention.query_key_value.bias", .rows = CP_GGUF_DIM_QKV,
     .transform = CP_GGUF_QKV_HEADS},
    W("attn_output.weight", "attention.dense.weight", HIDDEN, Q),
    W("attn_output.bias", "attention.dense.bias", HIDDEN, NONE),
    W("ffn_norm.weight", "post_attention_layernorm.weight", HIDDEN, NONE),
    W("ffn_norm.bias", "post_attention_layernorm.bias", HIDDEN, NONE),
    W("ffn_up.weight", "mlp.dense_h_to_4h.weight", FFN, HIDDEN),
    W("ffn_up.bias", "mlp.dense_h_to_4h.bias", FFN, NONE),
    W("ffn_down.weight", "mlp.dense_4h_to_h.weight", HIDDEN, FFN),
    W("ffn_down.bias", "mlp.dense_4h_to_h.bias", HIDDEN, NONE),
};

/* GPTNeoXConfig's keys (the released checkpoints' top-level rotary_pct / rotary_emb_base). */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_bias", CP_GGUF_CFG_JSON, "true"},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"hidden_act", CP_GGUF_CFG_JSON, "\"gelu\""},
    {"hidden_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"intermediate_size", CP_GGUF_CFG_FFN, NULL},
    {"layer_norm_eps", CP_GGUF_CFG_LN_EPS, NULL},
    {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},
    {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"rotary_emb_base", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"rotary_pct", CP_GGUF_CFG_ROTARY_FRACTION, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"use_parallel_residual", CP_GGUF_CFG_PARALLEL_RESIDUAL, NULL},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

const cp_gguf_names cp_gpt_neox_gguf_names = {
    .gguf_arch = "gptneox",
    .hf_layer_prefix = "gpt_neox.layers.",
    .top = top,
    .n_top = N(top),
    .block = block,
    .n_block = N(block),
    .config = config,
    .n_config = N(config),
    .known_keys_only = 1,
};
