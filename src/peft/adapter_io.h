/*
 * adapter_io.h — PEFT adapter directories (adapter_config.json + adapter_model.safetensors) in
 * both directions, and merged full checkpoints (PEFT's merge_and_unload saved as a Hugging Face
 * model directory).
 *
 * Key names are PEFT's: base_model.model.<module path>.<the method's key> (the adapter name is never
 * in the file: LoRA's lora_A.weight / lora_B.weight, lora_embedding_A / _B for Embedding),
 * <path>.base_layer.bias for trained biases of wrapped layers, <wrapper path>.<param> for
 * modules_to_save copies (reference/peft.md §5.3–5.4). The method comes from adapter_config.json's
 * peft_type; its table (method.h) names and shapes its tensors.
 * Every directory is written under a temporary name and renamed into place, so a failed write
 * leaves nothing half-written.
 */
#ifndef CP_PEFT_ADAPTER_IO_H
#define CP_PEFT_ADAPTER_IO_H

#include "core/error.h"
#include "models/model.h"
#include "peft/method.h"

/* Loads DIR as adapter `name` (inactive unless `activate`). `trainable` as PEFT's is_trainable.
 * The adapter's tensors' shapes are checked against the file's header before any is allocated. Besides
 * the adapter's own tensors (all required), any model weight the file holds under PEFT's names is
 * loaded, as PEFT loads it: the embedding layers save_embedding_layers wrote, if any. */
cp_status cp_adapter_load(cp_model *m, const char *dir, const char *name, int activate, int trainable);
/* The header check alone, for DIR/adapter_model.safetensors against `cfg` on model m: every tensor
 * the config implies is there with the shape it implies (cp_peft_method.plan). */
cp_status cp_adapter_check_config(cp_model *m, const cp_peft_config *cfg, const char *dir);
/* PEFT's save_embedding_layers: "auto" saves the base weights of an embedding that carries the adapter when
 * "embed_tokens" / "lm_head" is targeted (e.g. embed_tokens.base_layer.weight only), and both
 * embedding layers when the vocabulary was resized; True saves both embedding layers whole
 * (everything under wte and lm_head) unless targeted as above; False saves none. */
typedef enum { CP_SAVE_EMBEDDINGS_AUTO, CP_SAVE_EMBEDDINGS_TRUE, CP_SAVE_EMBEDDINGS_FALSE } cp_save_embeddings;

/* Saves adapter `name` to DIR (created; replaced file by file when it exists) as PEFT's
 * save_pretrained does with save_embedding_layers="auto". */
cp_status cp_adapter_save(cp_model *m, const char *name, const char *dir);
cp_status cp_adapter_save_ex(cp_model *m, const char *name, const char *dir, cp_save_embeddings mode);
/* merge_and_unload of the active adapters, written as a full checkpoint: config.json,
 * model.safetensors in each weight's original dtype, and the tokenizer/generation files of the
 * base directory copied. OUT must not exist yet. The in-memory model keeps its adapters merged. */
cp_status cp_model_save_merged(cp_model *m, const char *out_dir);

/* The parameter stored under a PEFT adapter-file key for adapter `name` (NULL when none). */
cp_param *cp_adapter_find_param(cp_model *m, const char *name, const char *key);

/* Parses "DIR[:NAME[:WEIGHT]]" as the CLI's --adapter takes it. */
cp_status cp_adapter_spec_parse(const char *spec, char **dir, char **name, double *weight);

#endif
