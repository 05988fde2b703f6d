/*
 * bloom_gguf.c — BLOOM's tensors under llama.cpp's GGUF names (general.architecture "bloom") and its
 * config.json: the table models/gguf_names.h describes.
 *
 * llama.cpp's converter re-orders the fused query_key_value from Hugging Face's per-head rows
 * (n_head, 3, head_dim) to [all q; all k; all v], weight and bias, as for gptneox: put back
 * (CP_GGUF_QKV_HEADS). It writes output.weight as a copy of token_embd.weight when the checkpoint has
 * no lm_head (BLOOM ties them): dropped when its bytes equal the embedding's, then tied. Its keys:
 * embedding_length, feed_forward_length = 4 * hidden (BLOOM's fixed MLP width), block_count,
 * head_count, head_count_kv = head_count, the LayerNorm epsilon, and context_length = seq_length
 * or hidden (not a BloomConfig field: ALiBi has no position table; read, not written). No RoPE.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)
#define W(g, h, r, c) {.gguf = g, .hf = h, .rows = CP_GGUF_DIM_##r, .cols = CP_GGUF_DIM_##c}

static const cp_gguf_tensor_name top[] = {
    W("token_embd.weight", "transformer.word_embeddings.weight", VOCAB, HIDDEN),
    W("token_embd_norm.weight", "transformer.word_embeddings_layernorm.weight", HIDDEN, NONE),
    W("token_embd_norm.bias", "transformer.word_embeddings_layernorm.bias", HIDDEN, NONE),
    W("output_norm.weight", "transformer.ln_f.weight", HIDDEN, NONE),
    W("output_norm.bias", "transformer.ln_f.bias", HIDDEN, NONE),
    {.gguf = "output.weight", .hf = "lm_head.weight", .rows = CP_GGUF_DIM_VOCAB, .cols = CP_GGUF_DIM_HIDDEN,
     .optional = 1, .copy_of = "token_embd.weight"}, /* absent or a copy of the embedding: tied */
};

static const cp_gguf_tensor_name block[] = {
    W("attn_norm.weight", "input_layernorm.weight", HIDDEN, NONE),
    W("attn_norm.bias", "input_layernorm.bias", HIDDEN, NONE),
    {.gguf = "attn_qkv.weight", .hf = "self_attention.query_key_value.weight", .rows = CP_GGUF_DIM_QKV,
     .cols = CP_GGUF_DIM_HIDDEN, .transform = CP_GGUF_QKV_HEADS},
    {.gguf = "attn_qkv.bias", .hf = "self_attention.query_key_value.bias", .rows = CP_GGUF_DIM_QKV,
     .transform = CP_GGUF_QKV_HEADS},
    W("attn_output.weight", "self_attention.dense.weight", HIDDEN, Q),
    W("attn_output.bias", "self_attention.dense.bias", HIDDEN, NONE),
    W("ffn_norm.weight", "post_attention_layernorm.weight", HIDDEN, NONE),
    W("ffn_norm.bias", "post_attention_layernorm.bias", HIDDEN, NONE),
    W("ffn_up.weight", "mlp.dense_h_to_4h.weight", FFN, HIDDEN),
    W("ffn_up.bias", "mlp.dense_h_to_4h.bias", FFN, NONE),
    W("ffn_down.weight", "mlp.dense_4h_to_h.weight", HIDDEN, FFN),
    W("ffn_down.bias", "mlp.dense_4h_to_h.bias", HIDDEN, NONE),
};

/* BloomConfig's keys (n_layer / n_head, its own names). */
static const cp_gguf_cfg_entry config[] = {
    {"apply_residual_connection_post_layernorm", CP_GGUF_CFG_JSON, "false"},
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"hidden_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"layer_norm_epsilon", CP_GGUF_CFG_LN_EPS, NULL},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"n_head", CP_GGUF_CFG_HEADS, NULL},
    {"n_layer", CP_GGUF_CFG_LAYERS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"pretraining_tp", CP_GGUF_CFG_JSON, "1"},
    {"slow_but_exact", CP_GGUF_CFG_JSON, "false"},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

static const cp_gguf_refused_name refused_keys[] = {
    {"rope.dimension_count", "BLOOM has no rotary embeddings (ALiBi)"},
    {"rope.freq_base", "BLOOM has no rotary embeddings (ALiBi)"},
};

const cp_gguf_names cp_bloom_gguf_names = {
    .gguf_arch = "bloom",
    .hf_layer_prefix = "transformer.h.",
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
