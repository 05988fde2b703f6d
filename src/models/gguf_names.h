/*
 * gguf_names.h — what an architecture's tensors are called in a GGUF file (llama.cpp's names) and in
 * a Hugging Face checkpoint, and the shape each must have: the architecture knowledge that the GGUF
 * converter (src/convert/) needs. An architecture owns its table (models/llama_gguf.c for "llama")
 * and hangs it on its cp_arch (gguf_names); the converter finds it by the file's general.architecture.
 *
 * GGUF names a top-level tensor by itself ("token_embd.weight") and a block tensor "blk.<N>.<suffix>"
 * ("blk.3.attn_q.weight"); the Hugging Face name of block N is <hf_layer_prefix><N>.<hf suffix>
 * ("model.layers.3.self_attn.q_proj.weight").
 */
#ifndef CP_MODELS_GGUF_NAMES_H
#define CP_MODELS_GGUF_NAMES_H

#include <stdint.h>

/* A dimension of a Hugging Face shape, as a function of the hyper-parameters. */
typedef enum {
    CP_GGUF_DIM_NONE,   /* no second dimension: a vector */
    CP_GGUF_DIM_HIDDEN, /* hidden_size */
    CP_GGUF_DIM_FFN,    /* intermediate_size */
    CP_GGUF_DIM_VOCAB,  /* vocab_size */
    CP_GGUF_DIM_Q,      /* num_attention_heads * head_dim */
    CP_GGUF_DIM_KV,     /* num_key_value_heads * head_dim */
} cp_gguf_dim;

/* Rows that llama.cpp's converter permutes for its RoPE kernel (rotate-half order to interleaved
 * pairs, per head), and which heads they are grouped in. */
typedef enum { CP_GGUF_ROPE_NONE, CP_GGUF_ROPE_Q_HEADS, CP_GGUF_ROPE_KV_HEADS } cp_gguf_rope_rows;

typedef struct {
    const char *gguf, *hf;       /* full names (top-level) or suffixes (blocks) */
    cp_gguf_dim rows, cols;      /* Hugging Face shape [rows, cols]; cols NONE for a vector */
    cp_gguf_rope_rows rope_rows;
    int optional;                /* may be absent (output.weight: tied to the embedding) */
} cp_gguf_tensor_name;

/* A tensor name the conversion refuses, and why. */
typedef struct {
    const char *gguf, *why;
} cp_gguf_refused_name;

typedef struct cp_gguf_names {
    const char *gguf_arch;        /* general.architecture: "llama" */
    const char *hf_layer_prefix;  /* "model.layers." */
    const cp_gguf_tensor_name *top;
    int n_top;
    const cp_gguf_tensor_name *block;
    int n_block;
    /* Block tensors llama.cpp writes that are buffers, not parameters, by the end of their name
     * (".attn_rot_embd": old files' rotary tables); NULL when none. */
    const char *ignored_block_suffix;
    const cp_gguf_refused_name *refused;
    int n_refused;
} cp_gguf_names;

/* The table of the architecture GGUF calls gguf_arch, or NULL when cpeft has none. */
const cp_gguf_names *cp_gguf_names_find(const char *gguf_arch);

/* The entry that names GGUF tensor `gguf_name`, or NULL. *layer is the block index ("blk.N.",
 * N without leading zeros), -1 for a top-level tensor. */
const cp_gguf_tensor_name *cp_gguf_names_match(const cp_gguf_names *a, const char *gguf_name, int64_t *layer);
/* Whether the tensor is a buffer the conversion skips. */
int cp_gguf_names_ignored(const cp_gguf_names *a, const char *gguf_name);
/* Why the conversion refuses the tensor, or NULL. */
const char *cp_gguf_names_refused(const cp_gguf_names *a, const char *gguf_name);

#endif
