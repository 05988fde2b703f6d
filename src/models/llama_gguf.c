/*
 * llama_gguf.c — Llama's tensors under llama.cpp's GGUF names (general.architecture "llama", which
 * llama.cpp also writes for Mistral, SmolLM and TinyLlama): the table models/gguf_names.h describes.
 */
#include "models/gguf_names.h"

#define N(a) (int)(sizeof a / sizeof *a)

static const cp_gguf_tensor_name top[] = {
    {"token_embd.weight", "model.embed_tokens.weight", CP_GGUF_DIM_VOCAB, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0},
    {"output_norm.weight", "model.norm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0},
    {"output.weight", "lm_head.weight", CP_GGUF_DIM_VOCAB, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 1}, /* absent: tied */
};

static const cp_gguf_tensor_name block[] = {
    {"attn_norm.weight", "input_layernorm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0},
    {"attn_q.weight", "self_attn.q_proj.weight", CP_GGUF_DIM_Q, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_Q_HEADS, 0},
    {"attn_k.weight", "self_attn.k_proj.weight", CP_GGUF_DIM_KV, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_KV_HEADS, 0},
    {"attn_v.weight", "self_attn.v_proj.weight", CP_GGUF_DIM_KV, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0},
    {"attn_output.weight", "self_attn.o_proj.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_Q, CP_GGUF_ROPE_NONE, 0},
    {"ffn_norm.weight", "post_attention_layernorm.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_NONE, CP_GGUF_ROPE_NONE, 0},
    {"ffn_gate.weight", "mlp.gate_proj.weight", CP_GGUF_DIM_FFN, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0},
    {"ffn_up.weight", "mlp.up_proj.weight", CP_GGUF_DIM_FFN, CP_GGUF_DIM_HIDDEN, CP_GGUF_ROPE_NONE, 0},
    {"ffn_down.weight", "mlp.down_proj.weight", CP_GGUF_DIM_HIDDEN, CP_GGUF_DIM_FFN, CP_GGUF_ROPE_NONE, 0},
};

static const cp_gguf_refused_name refused[] = {
    {"rope_freqs.weight", "Llama-3.1-style rope scaling factors; their rope_scaling parameters cannot be recovered "
                          "from a GGUF file, so this model is not supported"},
};

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
};
