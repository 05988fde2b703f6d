/*
 * llama_gguf.c — Llama's tensors under llama.cpp's GGUF names (general.architecture "llama", which
 * llama.cpp also writes for Mistral, SmolLM and TinyLlama) and its config.json: the table
 * models/gguf_names.h describes.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)

static const cp_gguf_tensor_name top[] = {
    {"token_embd.weight", "model.embed_tokens.weight", CP_GGUF_DIM_VOCAB, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"output_norm.weight", "model.norm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"output.weight", "lm_head.weight", CP_GGUF_DIM_VOCAB, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 1, CP_GGUF_KEEP}, /* absent: tied */
};

static const cp_gguf_tensor_name block[] = {
    {"attn_norm.weight", "input_layernorm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"attn_q.weight", "self_attn.q_proj.weight", CP_GGUF_DIM_Q, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_Q_HEADS, 0, CP_GGUF_KEEP},
    {"attn_k.weight", "self_attn.k_proj.weight", CP_GGUF_DIM_KV, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_KV_HEADS, 0, CP_GGUF_KEEP},
    {"attn_v.weight", "self_attn.v_proj.weight", CP_GGUF_DIM_KV, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"attn_output.weight", "self_attn.o_proj.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_Q, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"ffn_norm.weight", "post_attention_layernorm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"ffn_gate.weight", "mlp.gate_proj.weight", CP_GGUF_DIM_FFN, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"ffn_up.weight", "mlp.up_proj.weight", CP_GGUF_DIM_FFN, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
    {"ffn_down.weight", "mlp.down_proj.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_FFN, CP_GGUF_ROPE_NONE, 0, CP_GGUF_KEEP},
};

static const cp_gguf_refused_name refused[] = {
    {"rope_freqs.weight", "Llama-3.1-style rope scaling factors; their rope_scaling parameters cannot be recovered "
                          "from a GGUF file, so this model is not supported"},
};

/* LlamaConfig's keys (transformers' save_pretrained of a LlamaConfig). */
static const cp_gguf_cfg_entry config[] = {
    {"architectures", CP_GGUF_CFG_ARCHITECTURES, NULL},
    {"attention_bias", CP_GGUF_CFG_JSON, "false"},
    {"attention_dropout", CP_GGUF_CFG_JSON, "0.0"},
    {"bos_token_id", CP_GGUF_CFG_BOS, NULL},
    {"eos_token_id", CP_GGUF_CFG_EOS, NULL},
    {"head_dim", CP_GGUF_CFG_HEAD_DIM, NULL},
    {"hidden_act", CP_GGUF_CFG_JSON, "\"silu\""},
    {"hidden_size", CP_GGUF_CFG_HIDDEN, NULL},
    {"initializer_range", CP_GGUF_CFG_JSON, "0.02"},
    {"intermediate_size", CP_GGUF_CFG_FFN, NULL},
    {"max_position_embeddings", CP_GGUF_CFG_POSITIONS, NULL},
    {"mlp_bias", CP_GGUF_CFG_JSON, "false"},
    {"model_type", CP_GGUF_CFG_MODEL_TYPE, NULL},
    {"num_attention_heads", CP_GGUF_CFG_HEADS, NULL},
    {"num_hidden_layers", CP_GGUF_CFG_LAYERS, NULL},
    {"num_key_value_heads", CP_GGUF_CFG_KV_HEADS, NULL},
    {"pad_token_id", CP_GGUF_CFG_PAD, NULL},
    {"pretraining_tp", CP_GGUF_CFG_JSON, "1"},
    {"rms_norm_eps", CP_GGUF_CFG_NORM_EPS, NULL},
    {"rope_scaling", CP_GGUF_CFG_ROPE_SCALING, NULL},
    {"rope_theta", CP_GGUF_CFG_ROPE_THETA, NULL},
    {"tie_word_embeddings", CP_GGUF_CFG_TIED, NULL},
    {"torch_dtype", CP_GGUF_CFG_TORCH_DTYPE, NULL},
    {"use_cache", CP_GGUF_CFG_JSON, "true"},
    {"vocab_size", CP_GGUF_CFG_VOCAB, NULL},
};

/* No refused_keys: llama files carry many keys of llama.cpp's own (the conversion reads the ones it
 * needs and refuses the features it cannot express by their values: experts, rope scaling types). */
const cp_gguf_names cp_llama_gguf_names = {
    .gguf_arch = "llama",
    .hf_layer_prefix = "model.layers.",
    .top = top,
    .n_top = N(top),
    .block = block,
    .n_block = N(block),
    .ignored_block_suffix = ".attn_rot_embd",
    .refused = refused,
    .n_refused = N(refused),
    .config = config,
    .n_config = N(config),
};
