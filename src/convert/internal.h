/*
 * internal.h — what the files of the GGUF converter share (not public API; gguf_convert.h is).
 *
 *   gguf_hparams.c    hyper-parameters (<arch>.* keys) and config.json / generation_config.json
 *   gguf_tensors.c    tensor inventory and names (models/gguf_names.h), the tables' transforms
 *                     (Q/K un-permutation, minus one, fused q/k/v re-order), model.safetensors
 *   gguf_tokenizer.c  tokenizer.json, tokenizer_config.json, special_tokens_map.json
 *   gguf_convert.c    the whole conversion: everything checked, then everything written
 */
#ifndef CP_CONVERT_INTERNAL_H
#define CP_CONVERT_INTERNAL_H

#include <cjson/cJSON.h>

#include "convert/gguf_convert.h"
#include "models/gguf_names.h"

/* Reads the token id under `key` (absent: -1), checked against the vocabulary size. */
cp_status cp_convert_token_id(const cp_gguf *g, const char *key, int64_t vocab, int64_t *out);
/* Serialises `root` like Python's json.dump(indent=2, sort_keys=True) plus a newline and frees it;
 * NULL on OOM (or when root is NULL). */
char *cp_convert_json_file(cJSON *root);

/* Checks the tensor inventory against the architecture's table: every tensor known and of the
 * expected shape, every expected tensor present; sets hp->tie_word_embeddings. */
cp_status cp_convert_check_tensors(const cp_gguf *g, cp_gguf_hparams *hp);
/* Whether the tensor is a buffer the conversion skips. */
int cp_convert_ignored_tensor(const cp_gguf_hparams *hp, const char *gguf_name);
/* One tensor's values exactly as model.safetensors holds them: dequantized, the table's transforms
 * undone, narrowed to `dtype` (-1: F32/F16/BF16 keep their type, quantized ones become F32); *out
 * owned (cp_free). Errors name the file and tensor. */
cp_status cp_convert_tensor_values(const cp_gguf *g, const cp_gguf_hparams *hp, const cp_gguf_tensor *t, int dtype,
                                   cp_dtype *odt, void **out);
/* Whether the table moves the tensor's rows (llama's Q/K un-permutation, a fused q/k/v put back per
 * head), and the move itself on rows of row_bytes bytes: f32 values or whole quantized blocks alike
 * (a row is ne[0] values, a whole number of blocks). dst != src. */
int cp_convert_moves_rows(const cp_gguf_hparams *hp, const cp_gguf_tensor_name *tn);
cp_status cp_convert_move_rows(const cp_gguf_hparams *hp, const cp_gguf_tensor_name *tn, void *dst,
                               const void *src, int64_t rows, size_t row_bytes);
/* Dequantizes, un-permutes and narrows every tensor (dtype -1: keep F32/F16/BF16), then writes
 * model.safetensors at path; counts what it did in rep (may be NULL). */
cp_status cp_convert_write_tensors(const cp_gguf *g, const cp_gguf_hparams *hp, const char *path, int dtype,
                                   cp_gguf_convert_report *rep);

#endif
