/*
 * adapter_io.h — PEFT adapter directories (adapter_config.json + adapter_model.safetensors) in
 * both directions, and merged full checkpoints (PEFT's merge_and_unload saved as a Hugging Face
 * model directory).
 *
 * Key names are PEFT's: base_model.model.<module path>.lora_A.weight (the adapter name is never in
 * the file), lora_embedding_A / _B for Embedding, <path>.base_layer.bias for trained biases of
 * wrapped layers, <wrapper path>.<param> for modules_to_save copies (reference/peft.md §5.3–5.4).
 * Every directory is written under a temporary name and renamed into place, so a failed write
 * leaves nothing half-written.
 */
#ifndef CP_PEFT_ADAPTER_IO_H
#define CP_PEFT_ADAPTER_IO_H

#include "core/error.h"
#include "models/model.h"

/* Loads DIR as adapter `name` (inactive unless `activate`). `trainable` as PEFT's is_trainable. */
cp_status cp_adapter_load(cp_model *m, const char *dir, const char *name, int activate, int trainable);
/* Saves adapter `name` to DIR (created; replaced file by file when it exists). */
cp_status cp_adapter_save(cp_model *m, const char *name, const char *dir);
/* merge_and_unload of the active adapters, written as a full checkpoint: config.json,
 * model.safetensors in each weight's original dtype, and the tokenizer/generation files of the
 * base directory copied. OUT must not exist yet. The in-memory model keeps its adapters merged. */
cp_status cp_model_save_merged(cp_model *m, const char *out_dir);

/* The parameter stored under a PEFT adapter-file key for adapter `name` (NULL when none). */
cp_param *cp_adapter_find_param(cp_model *m, const char *name, const char *key);

/* Parses "DIR[:NAME[:WEIGHT]]" as the CLI's --adapter takes it. */
cp_status cp_adapter_spec_parse(const char *spec, char **dir, char **name, double *weight);

#endif
