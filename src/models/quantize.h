/*
 * quantize.h — `--quantize`: a checkpoint's frozen Linear / Conv1D weights quantized at load to one
 * of ggml's block formats (kernels/gemm_quant.h multiplies them as they are stored).
 */
#ifndef CP_MODELS_QUANTIZE_H
#define CP_MODELS_QUANTIZE_H

#include "core/dtype.h"
#include "core/error.h"

struct cp_model;
struct cp_param;

/* The load flag (include/cpeft.h's CP_LOAD_QUANTIZE_*) of a --quantize name ("q8_0", "q4_k"; any
 * case), or an error listing the known names. */
/* include/cpeft.h: cp_quantize_flag(name, &flag) */
/* The quantized dtype the load flags ask for, or CP_F32 when none. */
cp_dtype cp_quantize_dtype_of_flags(int flags);

/* Quantizes every bound Linear / Conv1D weight of m's base model to `dtype` (CP_Q8_0 or CP_Q4_K)
 * with ggml's reference quantizers: the LM head, a task head, embeddings, norms and biases stay as
 * they are (PEFT's and llama.cpp's choice for the layers that matter most), and so does a weight
 * another parameter is tied to. A Conv1D weight (C,OC) is quantized transposed, as GGUF stores it.
 * A row that is not a whole number of blocks falls back: Q4_K to Q4_1 (32-value blocks, llama.cpp's
 * fallbacks are of that kind), else the weight stays unquantized; a notice says how many. The
 * checkpoint pages a weight was read from are handed back to the OS (madvise), so the peak
 * resident memory is that of the quantized model plus one f32 matrix. */
cp_status cp_model_quantize(struct cp_model *m, cp_dtype dtype);

/* When training starts on a base quantized at load (m->quantize_dtype, unless the load flags had
 * CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS): the token embedding (an Embedding of vocab_size rows) and an
 * untied LM head, when frozen (not in `trained`, no gradient, not a modules_to_save copy), are
 * quantized to the same format, row by row straight from their values (no f32 copy; a mapped
 * checkpoint's pages handed back as they are read). Parameters tied to them (a tied LM head) take
 * the quantized values, so the head is multiplied quantized (kernels/gemm_quant.c: many rows
 * dequantized into bf16 panels under --bf16, f32 otherwise) and the embedding gathers dequantized
 * rows (cp_param_row_f32). llama.cpp's choice; bitsandbytes / PEFT's QLoRA keeps both in 16 bits.
 * *saved_bytes: the bytes that are no longer held. A caller that keeps parameters outside the module
 * tree that are tied to these (PEFT's displaced modules_to_save originals) re-ties them. */
cp_status cp_model_quantize_embeddings(struct cp_model *m, struct cp_param *const *trained, int n_trained, int64_t *saved_bytes);

#endif
