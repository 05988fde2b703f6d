/*
 * lm_head.h — the language-model head and the causal-LM loss: logits = h·Wᵀ over the vocabulary,
 * cross-entropy against labels shifted left by one, -100 ignored, mean over the targets that count
 * (transformers' ForCausalLMLoss). The _shift variants take the shift: 1 as above, 0 for the
 * SEQ_2_SEQ_LM loss (each decoder position against its own label, T5ForConditionalGeneration's
 * CrossEntropyLoss(ignore_index=-100) on the flattened logits).
 */
#ifndef CP_MODELS_LM_HEAD_H
#define CP_MODELS_LM_HEAD_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "models/run.h"
#include "nn/task_loss.h"
#include "nn/module.h"

/* What follows the head's product on every row of logits: `bias` (V) added (BART's final_logits_bias,
 * a constant: nothing flows back into it), then with softcap c > 0 x = c·tanh(x/c) (Gemma 2's
 * final_logit_softcapping, also under the loss and in generation; its gradient is 1 − tanh²). */
typedef struct { const float *bias; float softcap; } cp_logits_post;

/* Applies post (NULL: nothing) to rows (n,V) in place. */
void cp_lm_logits_post(const cp_logits_post *post, float *rows, int64_t n, int64_t V);

/* h is (B,T,C); head is a bias-free Linear (V,C). When logits (B,T,V) is non-NULL all logits are
 * written. When labels (B,T) is non-NULL the summed loss and the number of counted targets are
 * returned in *loss_sum and *n_targets; without logits only the rows that have a target are
 * computed, in chunks, so memory stays O(chunk·V). */
cp_status cp_lm_head_loss(const cp_run *run, const cp_module *head, const float *h, int64_t B, int64_t T,
                          const int64_t *labels, float *logits, double *loss_sum, int64_t *n_targets);

/* Forward and backward of the summed loss divided by `norm` (the number of target tokens the
 * optimizer step averages over: transformers' num_items_in_batch). Writes dh (B,T,C) = d(loss/norm)/dh
 * (zero on rows without a target), accumulates the head's trained gradients (weight, LoRA), and
 * returns the summed loss and the target count of this batch. Runs in chunks of rows. */
cp_status cp_lm_head_loss_backward(const cp_run *run, const cp_module *head, const float *h, int64_t B, int64_t T,
                                   const int64_t *labels, double norm, float *dh, double *loss_sum, int64_t *n_targets);

/* post, when non-NULL, is applied to every row of logits before the loss. */
cp_status cp_lm_head_loss_shift(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h, int64_t B,
                                int64_t T, const int64_t *labels, int shift, float *logits, double *loss_sum, int64_t *n_targets);
cp_status cp_lm_head_loss_backward_shift(const cp_run *run, const cp_module *head, const cp_logits_post *post, const float *h,
                                         int64_t B, int64_t T, const int64_t *labels, int shift, double norm, float *dh,
                                         double *loss_sum, int64_t *n_targets);

#endif
