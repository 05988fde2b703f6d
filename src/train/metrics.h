/*
 * metrics.h — evaluation metrics of classification, computed as the Python libraries the Hugging Face
 * examples report them with:
 *   accuracy            sklearn.metrics.accuracy_score
 *   macro-F1            sklearn.metrics.f1_score(average="macro"): the unweighted mean of per-class F1
 *                       over the classes present in y_true or y_pred (a class with no true and no
 *                       predicted example does not count); F1 of a class with no true positive is 0
 *   entity P / R / F1   seqeval.metrics (default mode, IOB2 / BIO and the IOE/IOBES prefixes it knows):
 *                       entities are chunks found by seqeval's get_entities over the sentences laid end
 *                       to end with an "O" after each, matched exactly on (type, start, end), then
 *                       micro-averaged over types ("micro avg" of classification_report). Its rules
 *                       are kept to the letter: an I- without a B- (or after another type) starts an
 *                       entity, a tag is its first character and its type what follows the first '-'
 *                       ("_" when none), precision / recall / F1 are 0 when undefined.
 * Positions whose true label is -100 are skipped (run_ner.py's compute_metrics).
 *
 * Not here: losses (nn/task_loss.c), the evaluation loop.
 */
#ifndef CP_TRAIN_METRICS_H
#define CP_TRAIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Fraction of i with y_true[i] == y_pred[i], over those with y_true[i] != -100 (0 when none). */
double cp_metric_accuracy(const int64_t *y_true, const int64_t *y_pred, int64_t n);
/* Macro-F1 as sklearn computes it, over positions with y_true != -100 (0 when none). Class ids are
 * any non-negative integers. */
cp_status cp_metric_macro_f1(const int64_t *y_true, const int64_t *y_pred, int64_t n, double *f1);

/* seqeval's entity counts, fed one sentence at a time. */
typedef struct {
    int64_t start, end; /* token positions, inclusive, in the sentences laid end to end */
    int32_t type;       /* index into types */
} cp_entity;

typedef struct {
    int64_t pos;         /* tokens seen so far, "O" separators included */
    /* the running state of get_entities for the true and the predicted tags */
    char prev_tag[2];
    int32_t prev_type[2];
    int64_t begin[2];
    cp_entity *ent[2];   /* [0] true entities, [1] predicted */
    size_t n_ent[2], cap_ent[2];
    char **types;        /* entity type names, in order of first appearance */
    size_t n_types, cap_types;
} cp_seqeval;

void cp_seqeval_init(cp_seqeval *s);
/* One sentence of n tags, as strings ("B-PER", "O", ...). */
cp_status cp_seqeval_add_tags(cp_seqeval *s, const char *const *y_true, const char *const *y_pred, int64_t n);
/* One sentence of n class ids with names[id] their tags; positions with y_true == -100 are skipped;
 * an id outside 0..n_names-1 is an error naming it. */
cp_status cp_seqeval_add_ids(cp_seqeval *s, const char *const *names, int64_t n_names, const int64_t *y_true,
                             const int64_t *y_pred, int64_t n);

typedef struct {
    double precision, recall, f1;
    int64_t tp, n_pred, n_true; /* true positives, predicted entities, true entities (the support) */
} cp_prf;
/* Micro-averaged over all types ("micro avg"). */
cp_prf cp_seqeval_micro(const cp_seqeval *s);
/* One type's counts (type < s->n_types). */
cp_prf cp_seqeval_type(const cp_seqeval *s, size_t type);
void cp_seqeval_free(cp_seqeval *s);

#endif
