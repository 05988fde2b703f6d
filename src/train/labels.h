/*
 * labels.h — the label set of a classification dataset: discovered from the training file, given back
 * as id2label / label2id, and used to map the labels of other files (eval, predict) to class ids.
 *
 * As the Hugging Face examples build it (run_glue.py, run_ner.py, for data files without a ClassLabel
 * feature): string labels → their sorted unique values (Python's sort of str: code-point order, which
 * is UTF-8 byte order); integer labels → indices, here the set 0..max (a class with no example
 * still has its id). Regression has one output, named "LABEL_0" as transformers names it.
 *
 * A raw label is one value as the file holds it: text (a CSV field, a CoNLL tag, a JSON string) or a
 * JSON number. Text that is an integer ("0", "-3") counts as an integer when it comes from CSV or
 * CoNLL (pandas reads such a column as int64); a JSON string never does ("1" is a name).
 *
 * Not here: reading files (class_data.c, token_data.c), writing config.json (the trainer).
 */
#ifndef CP_TRAIN_LABELS_H
#define CP_TRAIN_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/strmap.h"
#include "nn/task_loss.h"

typedef enum {
    CP_LABELS_NAMES,      /* labels are names: names[id] is the id's label */
    CP_LABELS_INDICES,    /* labels are integer class ids 0..n-1; names are "0".."n-1" */
    CP_LABELS_REGRESSION, /* labels are float values; one output, "LABEL_0" */
} cp_label_kind;

typedef struct {
    int64_t n;            /* K, the classifier's outputs (0: empty, not yet discovered) */
    char **names;         /* id2label [n] */
    cp_label_kind kind;
    cp_problem_type problem; /* single-label, multi-label or regression */
    cp_strmap map;        /* label2id (CP_LABELS_NAMES) */
    char source[256];     /* the file it was discovered from, for messages */
} cp_label_set;

/* One label value as read from a file. */
typedef struct {
    char *s;        /* its text (owned by the reader's list); a JSON number as Python prints an int */
    int is_int;     /* an integer: a JSON integer, or CSV / CoNLL text of one */
    int is_num;     /* a number (is_int, or a float: JSON number, CSV text strtod reads whole) */
    int64_t i;      /* its value when is_int */
    double v;       /* its value when is_num */
} cp_raw_label;

/* Fills r from text s[0..n) of a CSV / TSV / CoNLL file (integer and float text recognised). */
cp_status cp_raw_label_from_text(cp_raw_label *r, const char *s, size_t n);

/* Discovers the set from the training file's label values v[0..n) for problem SINGLE_LABEL,
 * MULTI_LABEL or REGRESSION (AUTO is the caller's to resolve). Integer values make an index set of
 * 0..max (a negative one is an error naming it, line[k] tells where v[k] came from); otherwise the
 * sorted unique texts. path names the file. */
cp_status cp_label_set_discover(cp_label_set *set, cp_problem_type problem, const cp_raw_label *v, size_t n,
                                const int64_t *line, const char *path);
/* A set from id2label names (a saved model's config): kind NAMES. */
cp_status cp_label_set_from_names(cp_label_set *set, const char *const *names, int64_t n, cp_problem_type problem);
/* The class id of raw label r in set, or -1 when it is not in the set. */
int64_t cp_label_set_find(const cp_label_set *set, const cp_raw_label *r);
/* "negative, positive" (the first few names, then "... (K in all)") into buf. */
const char *cp_label_set_describe(const cp_label_set *set, char *buf, size_t size);
void cp_label_set_free(cp_label_set *set);

#endif
