/*
 * bf16.h — bf16 compute for a model (--bf16, TrainingArguments' bf16): the products with frozen
 * Linear / Conv1D weights (forward and input gradient) and the LM head run in bf16 with f32 sums,
 * as PyTorch's CPU autocast(bfloat16) runs nn.Linear / addmm (kernels/gemm_bf16.h).
 *
 * Each frozen Linear / Conv1D weight (no gradient, not written) gets round_bf16 and, when it holds
 * f32 values of its own, is narrowed once to BF16 (round to nearest even; the f32 copy is freed or,
 * memory-mapped, its pages dropped): half the memory. A BF16 checkpoint is used as stored. A weight
 * that another parameter shares (a tied embedding) stays f32 and is rounded as the products read
 * it, so the embedding gather keeps its f32 values, as autocast's nn.Embedding does. Everything
 * else stays f32: LoRA's A and B (and their products: autocast would run them in bf16), trained
 * weights, norms, attention (its activation × activation products are f32 here; autocast runs
 * them in bf16), softmax, loss, gradients and AdamW state. Outputs of the bf16 products are f32
 * (autocast rounds them to bf16).
 *
 * With AVX-512 BF16 each such weight is also packed once into the kernel's panels (kernels/gemm_bf16.h),
 * kept in cp_param.bf16_panels: the product that gathers (a Linear's forward, a Conv1D's input
 * gradient) for every weight, both for the LM head; CPEFT_BF16_NO_CACHE=1 packs per call instead. A
 * quantized weight gets round_bf16 alone (its blocks are dequantized into panels per product).
 *
 * Not reversible within the process (a merge widens a weight back to f32 but it keeps round_bf16; it
 * drops the panels).
 */
#ifndef CP_MODELS_BF16_H
#define CP_MODELS_BF16_H

#include "models/model.h"

/* Turns bf16 compute on for m's frozen weights: every Linear / Conv1D weight not among the
 * n_trained `trained` parameters (cp_peft_trainable_params); *narrowed_bytes (may be NULL) gets the
 * f32 bytes freed. Prints a notice on stderr when the CPU has no AVX-512 BF16 (the products are then
 * emulated: the same values up to the order of the f32 sums, slower than f32). */
cp_status cp_model_use_bf16(cp_model *m, cp_param *const *trained, int n_trained, int64_t *narrowed_bytes);

#endif
