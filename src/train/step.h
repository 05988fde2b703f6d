/*
 * step.h — one optimizer step: forward and backward over the step's micro-batches (gradient
 * accumulation), gradient clipping, and AdamW at the scheduled learning rate.
 *
 * The loss is normalised over all target tokens of the step, as the Hugging Face Trainer does with
 * num_items_in_batch: each micro-batch contributes Σ CE / N_step, so the step loss is the mean
 * token loss whatever the split into micro-batches.
 */
#ifndef CP_TRAIN_STEP_H
#define CP_TRAIN_STEP_H

#include <stdint.h>

#include "cpeft.h"
#include "models/model.h"
#include "train/optim.h"

typedef struct {
    double loss;         /* mean cross-entropy over the step's target tokens */
    double grad_norm;    /* before clipping */
    int64_t n_targets;   /* target tokens of the step */
    int64_t n_tokens;    /* input positions with attention_mask 1 */
} cp_step_result;

/* Number of targets a batch contributes to the causal-LM loss (labels shifted left by one). */
int64_t cp_batch_targets(const cp_batch *b);
/* The items a batch's loss averages over, by the model's task: causal-LM targets (above), SEQ_CLS rows
 * (B·K elements for a multi-label head), TOKEN_CLS and SEQ_2_SEQ_LM ((B,Td)) labels that are not -100. */
int64_t cp_batch_loss_items(const cp_model *m, const cp_batch *b);

/* Runs micro-batches micro[0..n_micro) and one AdamW step at `lr`. dropout_seed seeds LoRA dropout
 * (each micro-batch gets seed + its index). Gradients are zeroed afterwards. Under MPI (train/dist.h)
 * micro are this rank's shard: the item count, the loss and the gradients are summed over the ranks
 * (one flat all-reduce) before clipping, so every rank takes the same AdamW step. */
cp_status cp_train_step(cp_model *m, cp_adamw *opt, const cp_batch *micro, int n_micro, double lr, double max_grad_norm,
                        int recompute, uint64_t dropout_seed, cp_step_result *res);

/* The memory plan's activation figure: the arena's peak over one training micro-batch of B rows ×
 * T tokens (training mode, LoRA dropout on, gradient checkpointing as `recompute` says), measured
 * by running it; the gradients it leaves are zeroed. The arena is left holding one block of that
 * size, not yet resident, so the steps that follow allocate nothing. */
cp_status cp_step_measure_activations(cp_model *m, cp_adamw *opt, int64_t B, int64_t T, int recompute, size_t *bytes);
/* The same peak without holding it: measured on the model's first 2 and 3 blocks and extrapolated
 * to all of them (models of at most 3 blocks are run whole). For a comparison that the run will not
 * pay for, such as the activations without gradient checkpointing. The arena is left empty. */
cp_status cp_step_estimate_activations(cp_model *m, cp_adamw *opt, int64_t B, int64_t T, int recompute, size_t *bytes);

#endif
