/*
 * class_eval.h — a classification dataset run through a SEQ_CLS / TOKEN_CLS model in eval mode, in
 * batches: the loss as transformers reports it (the mean over rows, or over labelled tokens), and the
 * metrics of the task (metrics.h): SEQ_CLS single-label accuracy and macro-F1; TOKEN_CLS seqeval's
 * entity precision / recall / F1 (micro average) and token accuracy. An optional callback sees every
 * record's logits (for `cpeft predict`).
 *
 * Not here: reading the files (class_data.h), the training loop (trainer.c, class_train.c).
 */
#ifndef CP_TRAIN_CLASS_EVAL_H
#define CP_TRAIN_CLASS_EVAL_H

#include <stdint.h>

#include "core/error.h"
#include "cpeft.h"
#include "train/class_data.h"
#include "train/labels.h"

typedef struct {
    double loss;                      /* mean over the loss items (NAN when none) */
    double accuracy, macro_f1;        /* SEQ_CLS single-label; TOKEN_CLS accuracy over labelled tokens */
    double precision, recall, f1;     /* TOKEN_CLS entity-level (seqeval); NAN for SEQ_CLS */
    int64_t n_true_entities, n_pred_entities;
} cp_class_scores;

/* Called once per record, in file order: ex the record, logits SEQ_CLS (K) or TOKEN_CLS (ex->len, K). */
typedef cp_status (*cp_class_record_fn)(void *user, const cp_class_example *ex, int64_t index, const float *logits, int64_t K);

/* Runs ds through m (eval mode) in batches of `batch` rows padded with pad_id; names (K entries) are
 * the tags for seqeval. fn may be NULL. */
cp_status cp_class_evaluate(cp_model *m, const cp_class_dataset *ds, const cp_label_set *names, int64_t pad_id, int64_t batch,
                            cp_class_record_fn fn, void *user, cp_class_scores *out);

#endif
