/*
 * gguf_load.h — loading a model and its tokenizer straight from a GGUF file (llama.cpp's format),
 * with the converter's reading of it (gguf_convert.h) and no directory in between; see gguf_load.c
 * for what happens to each tensor. Public entry points: include/cpeft.h (cp_model_load_gguf,
 * cp_tokenizer_load_gguf).
 */
#ifndef CP_CONVERT_GGUF_LOAD_H
#define CP_CONVERT_GGUF_LOAD_H

#include "cpeft.h"

/* Whether `path` names a GGUF file (ends in ".gguf"): what the CLI's --model tells apart by. */
int cp_path_is_gguf(const char *path);

#endif
