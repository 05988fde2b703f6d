/*
 * task_loss.h — the losses of the classification heads, as transformers computes them:
 * *ForSequenceClassification's three problem types and *ForTokenClassification's cross-entropy
 * (loss/loss_utils.py: ForSequenceClassificationLoss, ForTokenClassification).
 *
 *   regression                   MSELoss over (N,K) (K == 1: logits and labels squeezed to (N))
 *   single_label_classification  CrossEntropyLoss over N rows of K logits, class id -100 ignored
 *   multi_label_classification   BCEWithLogitsLoss over (N,K) float labels
 *
 * All three are means in transformers. Here every loss is returned as a sum and the number of
 * items the mean divides by (rows that count for cross-entropy, elements for MSE and BCE), so that a
 * caller can average over several micro-batches (transformers' num_items_in_batch) as the LM loss does
 * (models/lm_head.h). The backward scales d logits by 1/norm for a norm the caller gives.
 *
 * Labels come as the tensor a data collator would hand transformers: integer class ids (torch.long)
 * or float values (torch.float32), with their shape, so that shape, dtype and range errors name the
 * position (labels[b][j]) as the user wrote it. This is not the LM head's loss (the shifted one over
 * a vocabulary, models/lm_head.h); it works on logits the caller has already computed.
 */
#ifndef CP_NN_TASK_LOSS_H
#define CP_NN_TASK_LOSS_H

#include <stdint.h>

#include "core/error.h"

/* config.json's "problem_type". */
#define CP_IGNORE_INDEX (-100)

/* Cross-entropy of one row of V logits against target y: logsumexp(x) - x[y]. */
double cp_cross_entropy_row(const float *x, int64_t V, int64_t y);

typedef enum {
    CP_PROBLEM_AUTO = 0,     /* null: decided per call from num_labels and the labels' dtype */
    CP_PROBLEM_REGRESSION,   /* "regression" */
    CP_PROBLEM_SINGLE_LABEL, /* "single_label_classification" */
    CP_PROBLEM_MULTI_LABEL,  /* "multi_label_classification" */
    /* not a config value: what DeBERTa's *ForSequenceClassification computes for float (N,K) labels when
     * problem_type is null, -(log_softmax(logits)·labels).sum(-1).mean() (a mean over rows) */
    CP_PROBLEM_SOFT_LABEL,
} cp_problem_type;

/* The labels tensor of a batch: exactly one of ids / values is set. ndim 0, 1 or 2. */
typedef struct cp_task_labels {
    const int64_t *ids;   /* integer labels: class ids, CP_IGNORE_INDEX (-100) ignored by cross-entropy */
    const float *values;  /* float labels: regression targets, multi-label 0/1 (or soft) targets */
    int ndim;
    int64_t shape[2];     /* e.g. (B) for sequence classes, (B,T) for token classes, (B,K) multi-label */
} cp_task_labels;

/* Divide by the n_items of this very call: the mean transformers reports for the batch alone. */
#define CP_NORM_BATCH_MEAN 0.0

/* "regression" / "single_label_classification" / "multi_label_classification" / "auto" (null). */
const char *cp_problem_type_name(cp_problem_type t);
/* Parses config.json's value; NULL (a JSON null or no key) gives CP_PROBLEM_AUTO. An unknown name
 * is an error listing the three. */
cp_status cp_problem_type_parse(const char *name, cp_problem_type *out);

/* transformers' rule when problem_type is null: num_labels == 1 → regression; num_labels > 1 and
 * integer labels → single_label_classification; otherwise multi_label_classification. A configured
 * type other than AUTO is returned as it is (single_label_classification with num_labels 1 is an
 * error, as transformers' config makes it). (transformers then writes the choice into the config,
 * so a model keeps the type its first labelled batch gave it; callers that want that keep *out.) */
cp_status cp_problem_type_resolve(cp_problem_type configured, int64_t num_labels, const cp_task_labels *labels,
                                  cp_problem_type *out);

/* Elements of the labels tensor (product of its shape; 1 for ndim 0). */
int64_t cp_task_labels_numel(const cp_task_labels *labels);

/* Checks labels against logits (N,K) for problem type `type` (AUTO is resolved first) and returns
 * the number of items the mean divides by: labels ≠ -100 (single label), N·K (regression,
 * multi-label). Errors name the field and the position: wrong dtype for the problem type, wrong
 * element count or shape, a class id outside [0, K) other than -100, a float label that is not finite. */
cp_status cp_task_loss_items(cp_problem_type type, int64_t N, int64_t K, const cp_task_labels *labels,
                             int64_t *n_items);

/* Forward: *loss_sum = the loss summed over the items, *n_items as above; the mean transformers
 * reports is loss_sum / n_items (NaN when no item counts, as PyTorch's mean of nothing).
 * logits (N,K). */
cp_status cp_task_loss(cp_problem_type type, const float *logits, int64_t N, int64_t K, const cp_task_labels *labels,
                       double *loss_sum, int64_t *n_items);

/* Forward and backward of loss_sum / norm: writes dlogits (N,K) (zero on ignored rows); norm > 0 is
 * the caller's divisor (num_items_in_batch over the micro-batches of an optimizer step), or
 * CP_NORM_BATCH_MEAN for this batch's own n_items (the batch mean; no gradient when it is 0).
 * Returns the summed loss and the item count as cp_task_loss does. dlogits may not alias logits. */
cp_status cp_task_loss_backward(cp_problem_type type, const float *logits, int64_t N, int64_t K,
                                const cp_task_labels *labels, double norm, float *dlogits, double *loss_sum,
                                int64_t *n_items);

#endif
