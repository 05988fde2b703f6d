/*
 * gguf_convert.h — a GGUF file (llama.cpp's format) turned into a Hugging Face checkpoint
 * directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json and generation_config.json, loadable by transformers'
 * AutoModelForCausalLM / AutoTokenizer and by cpeft.
 *
 * Architectures: those whose cp_arch has a GGUF table (models/gguf_names.h): general.architecture
 * "llama" (Llama 1/2/3 without rope_freqs, Mistral, SmolLM, TinyLlama: llama.cpp writes all of them
 * as "llama"), "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gptneox" (GPT-NeoX, Pythia), "phi2", "bloom".
 * The table gives the tensor names and shapes
 * (models/llama_gguf.c: token_embd -> model.embed_tokens, blk.N.attn_q ->
 * model.layers.N.self_attn.q_proj, ..., output -> lm_head, absent: tie_word_embeddings), the
 * per-tensor transforms that undo llama.cpp's converter (llama's Q/K row permutation for its RoPE
 * kernel; gemma's norms stored as 1 + w; the fused q/k/v re-order of gpt_neox and bloom), and the
 * config.json keys. This directory knows no architecture by name.
 *
 * Precision: quantized tensors are dequantized to f32 exactly as ggml does, so the checkpoint
 * holds exactly the values the GGUF encodes — the quantization error against the original
 * model stays. F32/F16/BF16 tensors are copied without change (dtype "auto") or converted.
 *
 * Tokenizer: rebuilt from tokenizer.ggml.* — "gpt2" (byte-level BPE, pre-tokenizer chosen by
 * tokenizer.ggml.pre) and "llama" (SentencePiece BPE with byte fallback; merges from the file or
 * derived from the scores as transformers does). See docs/convert.md.
 *
 * Layer: convert/ sits above models/ (it reads the architectures' GGUF name tables) beside train/
 * and generate/; the GGUF reader itself is io/gguf.h.
 */
#ifndef CP_CONVERT_GGUF_CONVERT_H
#define CP_CONVERT_GGUF_CONVERT_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "io/gguf.h"

/* Hyper-parameters of a GGUF of one of the architectures that have a GGUF table
 * (models/gguf_names.h), as Hugging Face names them. */
struct cp_gguf_names;
typedef struct {
    const struct cp_gguf_names *names; /* the architecture's table: tensors and config.json keys */
    const char *model_type, *hf_class; /* its cp_arch's: "qwen2", "Qwen2ForCausalLM" */
    int64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim, max_position_embeddings, vocab_size;
    double rms_norm_eps, layer_norm_eps, rope_theta;
    int rms_norm_eps_f32, layer_norm_eps_f32, rope_theta_f32; /* stored as FLOAT32: print the shortest f32 repr */
    int64_t rotary_dim;                   /* rope.dimension_count (default head_dim): config.json's fraction
                                             rotary_dim / head_dim where the table writes it (rotary_pct,
                                             partial_rotary_factor), else it must equal head_dim */
    int parallel_residual;                /* use_parallel_residual (default 1) */
    double rope_scaling_factor;           /* > 0: rope_scaling {"rope_type": "linear", factor} */
    int tie_word_embeddings;              /* no output.weight in the file, or a copy of the embedding */
    const char *dropped_copy;             /* that copy's GGUF name (not converted), or NULL */
    int64_t sliding_window;               /* attention.sliding_window; 0 when absent */
    double attn_softcap, final_softcap;   /* attn_logit_softcapping / final_logit_softcapping (50 / 30 when absent) */
    int64_t bos_token_id, eos_token_id, pad_token_id, unk_token_id; /* -1 when absent */
} cp_gguf_hparams;
typedef cp_gguf_hparams cp_gguf_llama; /* its first name, when "llama" was the only architecture */

/* Reads and checks the hyper-parameters (the "<general.architecture>." keys llama.cpp's
 * architectures share: embedding_length, block_count, ...) and the tensor inventory: every tensor
 * known and of the expected shape, every expected tensor present. An architecture without a table,
 * and a key or tensor the architecture's table refuses, is an error naming it; errors name the file
 * and the key or tensor. cp_gguf_llama_read is the same function under its first name. */
cp_status cp_gguf_hparams_read(const cp_gguf *g, cp_gguf_hparams *hp);
cp_status cp_gguf_llama_read(const cp_gguf *g, cp_gguf_hparams *hp);

/* config.json text for `hp`: the keys of the architecture's table (sorted keys, two-space indent,
 * trailing newline); NULL on OOM. `torch_dtype` is "float32", "float16" or "bfloat16". */
char *cp_gguf_config_json(const cp_gguf_hparams *hp, const char *torch_dtype);
char *cp_gguf_llama_config_json(const cp_gguf_hparams *hp, const char *torch_dtype);
/* generation_config.json text. */
char *cp_gguf_llama_generation_config_json(const cp_gguf_hparams *hp);

/* The Hugging Face name of GGUF tensor `gguf_name` under architecture table `names`
 * ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight") written into out (cap bytes);
 * error for a name the architecture does not have (or refuses) or a layer index >= n_layers.
 * cp_gguf_llama_hf_name: the same for the "llama" table. */
cp_status cp_gguf_hf_name(const struct cp_gguf_names *names, const char *gguf_name, int64_t n_layers, char *out,
                          size_t cap);
cp_status cp_gguf_llama_hf_name(const char *gguf_name, int64_t n_layers, char *out, size_t cap);

/* Undoes llama.cpp's Q/K permutation. src and dst are (rows, cols) row-major (a weight [out, in]
 * or, with cols == 1, a bias), rows = n_head * hd. Within each head, GGUF row 2*j + i holds Hugging
 * Face row i*hd/2 + j (i in {0,1}, j < hd/2): the inverse of convert_hf_to_gguf.py's
 * LlamaModel.permute (reshape (n_head, 2, hd/2, ...) then swapaxes(1, 2)). dst != src. */
cp_status cp_gguf_unpermute_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t n_head);

/* Undoes llama.cpp's re-ordering of a fused query_key_value (gpt_neox, bloom): src (rows, cols)
 * holds [all q; all k; all v] (rows = 3 * n_head * hd), dst Hugging Face's per-head order
 * (n_head, 3, hd): GGUF row p*n_head*hd + h*hd + j becomes row h*3*hd + p*hd + j (p = 0 q, 1 k,
 * 2 v). cols == 1 for the bias. dst != src. */
cp_status cp_gguf_qkv_to_heads(float *dst, const float *src, int64_t rows, int64_t cols, int64_t n_head);

/* The tokenizer files, rebuilt from the metadata. */
typedef struct {
    char *tokenizer_json, *tokenizer_config_json, *special_tokens_map_json;
    char model[16];       /* tokenizer.ggml.model: "gpt2" or "llama" */
    char pre[64];         /* tokenizer.ggml.pre ("" when absent) */
    int64_t n_tokens, n_merges, n_added;
    int merges_derived;   /* SentencePiece merges derived from the scores */
} cp_gguf_tokenizer;

/* Builds the three JSON files. model_max_length goes to tokenizer_config.json. Errors name the
 * key, token or merge at fault (invalid UTF-8, a merge whose parts are not in the vocabulary, an
 * unsupported tokenizer.ggml.model or tokenizer.ggml.pre). */
cp_status cp_gguf_tokenizer_build(const cp_gguf *g, int64_t model_max_length, cp_gguf_tokenizer *tk);
void cp_gguf_tokenizer_free(cp_gguf_tokenizer *tk);

/* Options of cp_gguf_convert. dtype: -1 = "auto" (F32/F16/BF16 tensors keep their type,
 * quantized ones become F32), else CP_F32, CP_F16 or CP_BF16 for every tensor. */
typedef struct {
    int dtype;
} cp_gguf_convert_opts;

/* What a conversion did, for the CLI to report. */
typedef struct {
    cp_gguf_hparams hp;
    cp_gguf_tokenizer tk;
    int64_t n_tensors, n_params;
    int64_t tensors_by_type[CP_GGML_TYPE_COUNT];
    int64_t n_quantized;        /* tensors that were block-quantized */
    int64_t n_rounded;          /* tensors narrowed to a dtype with fewer bits than their values */
    cp_dtype weight_dtype;      /* dtype of the embedding (config.json's torch_dtype) */
    uint64_t safetensors_bytes;
    char *name, *license;       /* general.name / general.license, or NULL */
} cp_gguf_convert_report;

/* Converts gguf `g` into directory `dir`, which must exist (cp_dir_begin's staging directory):
 * writes model.safetensors, config.json, generation_config.json and the tokenizer files.
 * `report` may be NULL. */
cp_status cp_gguf_convert(const cp_gguf *g, const char *dir, const cp_gguf_convert_opts *opts,
                          cp_gguf_convert_report *report);
void cp_gguf_convert_report_free(cp_gguf_convert_report *report);

#endif
