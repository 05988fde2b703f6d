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

#include <stddef.h>
#include <stdint.h>

struct cp_arch;

/* A dimension of a Hugging Face shape, as a function of the hyper-parameters. */
typedef enum {
    CP_GGUF_DIM_NONE,   /* no second dimension: a vector */
    CP_GGUF_DIM_HIDDEN, /* hidden_size */
    CP_GGUF_DIM_FFN,    /* intermediate_size */
    CP_GGUF_DIM_VOCAB,  /* vocab_size */
    CP_GGUF_DIM_Q,      /* num_attention_heads * head_dim */
    CP_GGUF_DIM_KV,     /* num_key_value_heads * head_dim */
    CP_GGUF_DIM_HEAD,   /* head_dim (qwen3's per-head q_norm / k_norm) */
    CP_GGUF_DIM_QKV,    /* (num_attention_heads + 2 * num_key_value_heads) * head_dim: a fused q/k/v */
    CP_GGUF_DIM_FFN2,   /* 2 * intermediate_size: a fused gate/up (phi3) */
} cp_gguf_dim;

/* Rows that llama.cpp's converter permutes for its RoPE kernel (rotate-half order to interleaved
 * pairs, per head), and which heads they are grouped in. */
typedef enum { CP_GGUF_ROPE_NONE, CP_GGUF_ROPE_Q_HEADS, CP_GGUF_ROPE_KV_HEADS } cp_gguf_rope_rows;

/* The other changes llama.cpp's converter makes to a tensor's values, undone by the conversion. */
typedef enum {
    CP_GGUF_KEEP,       /* stored as Hugging Face has it */
    CP_GGUF_MINUS_ONE,  /* stored as 1 + w (gemma's RMSNorm weights: llama.cpp's norm multiplies by the
                           weight, Gemma's by 1 + weight): w = stored - 1, in f32 */
    CP_GGUF_QKV_HEADS,  /* a fused query_key_value (gpt_neox, bloom) that llama.cpp re-orders from
                           Hugging Face's per-head rows (n_head, 3, head_dim) to [all q; all k; all v]:
                           rows put back per head (weight rows, or the bias's entries) */
} cp_gguf_transform;

typedef struct {
    const char *gguf, *hf;       /* full names (top-level) or suffixes (blocks) */
    cp_gguf_dim rows, cols;      /* Hugging Face shape [rows, cols]; cols NONE for a vector */
    cp_gguf_rope_rows rope_rows;
    int optional;                /* may be absent (output.weight: tied to the embedding; then
                                    tie_word_embeddings) */
    cp_gguf_transform transform;
    /* An optional LM head that llama.cpp may write as a copy of this tensor (bloom's output.weight:
     * token_embd.weight's bytes): dropped when equal (same type, shape and bytes), then tied. */
    const char *copy_of;
} cp_gguf_tensor_name;

/* A tensor name the conversion refuses, and why: a top-level name, or the suffix of a block
 * tensor ("attn_qkv.weight" refuses it in every block). */
typedef struct {
    const char *gguf, *why;
} cp_gguf_refused_name;

/* Where a config.json value comes from: the hyper-parameters the converter reads from the GGUF keys
 * common to llama.cpp's architectures (<arch>.embedding_length, ...; convert/gguf_hparams.c), or a
 * constant of the architecture's Hugging Face config class. */
typedef enum {
    CP_GGUF_CFG_JSON,          /* the JSON text `json` ("false", "0.0", "\"silu\"", "null") */
    CP_GGUF_CFG_ARCHITECTURES, /* ["<cp_arch.causal_lm_class>"] */
    CP_GGUF_CFG_MODEL_TYPE,    /* "<cp_arch.model_type>" */
    CP_GGUF_CFG_HIDDEN,        /* <arch>.embedding_length */
    CP_GGUF_CFG_FFN,           /* <arch>.feed_forward_length */
    CP_GGUF_CFG_LAYERS,        /* <arch>.block_count */
    CP_GGUF_CFG_HEADS,         /* <arch>.attention.head_count */
    CP_GGUF_CFG_KV_HEADS,      /* <arch>.attention.head_count_kv (default: head_count) */
    CP_GGUF_CFG_HEAD_DIM,      /* <arch>.attention.key_length (default: hidden / heads) */
    CP_GGUF_CFG_POSITIONS,     /* <arch>.context_length */
    CP_GGUF_CFG_VOCAB,         /* <arch>.vocab_size, else the embedding's rows */
    CP_GGUF_CFG_NORM_EPS,      /* <arch>.attention.layer_norm_rms_epsilon (required when a table has it) */
    CP_GGUF_CFG_LN_EPS,        /* <arch>.attention.layer_norm_epsilon: LayerNorm's (required likewise) */
    CP_GGUF_CFG_ROPE_THETA,    /* <arch>.rope.freq_base */
    CP_GGUF_CFG_ROPE_SCALING,  /* <arch>.rope.scaling.type none / linear: null or {factor, rope_type} */
    CP_GGUF_CFG_ROTARY_FRACTION, /* <arch>.rope.dimension_count / head_dim under the model type's own key
                                    (gpt_neox's rotary_pct, phi's and phi3's partial_rotary_factor); a table
                                    without it refuses partial rotary embeddings */
    CP_GGUF_CFG_PARALLEL_RESIDUAL, /* <arch>.use_parallel_residual (default true, as llama.cpp's gptneox) */
    CP_GGUF_CFG_TIED,          /* the optional LM head is absent */
    CP_GGUF_CFG_BOS,           /* tokenizer.ggml.bos_token_id (the key left out when absent) */
    CP_GGUF_CFG_EOS,           /* tokenizer.ggml.eos_token_id (likewise) */
    CP_GGUF_CFG_PAD,           /* tokenizer.ggml.padding_token_id (likewise) */
    CP_GGUF_CFG_TORCH_DTYPE,   /* the embedding's stored dtype */
    CP_GGUF_CFG_SLIDING_WINDOW, /* <arch>.attention.sliding_window; null when absent or 0 */
    CP_GGUF_CFG_ATTN_SOFTCAP,   /* <arch>.attn_logit_softcapping (absent: 50, llama.cpp's default) */
    CP_GGUF_CFG_FINAL_SOFTCAP,  /* <arch>.final_logit_softcapping (absent: 30, llama.cpp's default) */
    CP_GGUF_CFG_QUERY_SCALAR,   /* gemma2's query_pre_attn_scalar, which llama.cpp does not write: head_dim,
                                   or hidden / heads for 46 blocks (llama.cpp's scale for Gemma 2 27B) */
} cp_gguf_cfg_source;

/* One config.json key of the architecture's Hugging Face config class. */
typedef struct {
    const char *key;
    cp_gguf_cfg_source source;
    const char *json; /* CP_GGUF_CFG_JSON only */
} cp_gguf_cfg_entry;

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
    /* The hyper-parameters: config.json's keys (the model_type's own names) and their sources. */
    const cp_gguf_cfg_entry *config;
    int n_config;
    /* GGUF keys (after "<arch>.") whose presence the conversion refuses, and why: a feature of
     * llama.cpp's architecture that the Hugging Face config cannot express or cpeft does not run. */
    const cp_gguf_refused_name *refused_keys;
    int n_refused_keys;
    /* 1: any other "<arch>." key than those the converter reads (convert/gguf_hparams.c) is refused
     * by name; 0 (llama, whose files carry many keys of llama.cpp's own): other keys are ignored. */
    int known_keys_only;
} cp_gguf_names;

/* The table of the architecture GGUF calls gguf_arch, or NULL when cpeft has none. */
const cp_gguf_names *cp_gguf_names_find(const char *gguf_arch);
/* The architecture that owns that table (its model_type and causal_lm_class), or NULL. */
const struct cp_arch *cp_gguf_arch_find(const char *gguf_arch);
/* "llama, qwen2, ...": the GGUF architectures that have a table, for error messages. */
const char *cp_gguf_names_supported(void);

/* The entry that names GGUF tensor `gguf_name`, or NULL. *layer is the block index ("blk.N.",
 * N without leading zeros), -1 for a top-level tensor. */
const cp_gguf_tensor_name *cp_gguf_names_match(const cp_gguf_names *a, const char *gguf_name, int64_t *layer);
/* Whether the tensor is a buffer the conversion skips. */
int cp_gguf_names_ignored(const cp_gguf_names *a, const char *gguf_name);
/* Why the conversion refuses the tensor, or NULL. */
const char *cp_gguf_names_refused(const cp_gguf_names *a, const char *gguf_name);

#endif
