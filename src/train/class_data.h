/*
 * class_data.h — classification data: SEQ_CLS records from CSV / TSV / JSONL and TOKEN_CLS sentences
 * from CoNLL / word-labelled JSONL, tokenized, truncated and cut into dynamically padded batches, as
 * the Hugging Face examples (run_glue.py, run_ner.py) prepare them.
 *
 * SEQ_CLS (class_data.c). Files by extension: .csv (','), .tsv (TAB; GLUE style), both with a header
 * row and quoting as Python's csv module reads them (csv_reader.h); .jsonl / .json one object per line.
 * The text field (default "sentence", else "text"), an optional pair field and the label field (default
 * "label") are named by the options. The text is tokenized with the tokenizer's post-processor
 * (cp_tokenizer_encode / _pair: special tokens and the pair's token_type_ids) and truncated to
 * max_seq_length as transformers' tokenizer(truncation=True) does (the "longest_first" rule of
 * `tokenizers` for pairs), before the special tokens are added.
 * Labels (labels.h): names or integer class ids; a JSON list of them is multi-label; numbers that are
 * not all integers are regression. The problem type is AUTO unless given.
 *
 * TOKEN_CLS (token_data.c). CoNLL: one "token TAB tag" line per word (or space-separated columns; the
 * token is the first column, the tag the last, every line has the number of columns of the file's
 * first), sentences separated by blank lines or lines of only whitespace (WNUT-17's train file
 * has lines holding one TAB), "-DOCSTART-" lines skipped. JSONL: {"tokens": [...], "ner_tags": [...]}
 * (the field names are the text and label options), tags as names or integer ids. Words are tokenized
 * one at a time as tokenizer(words, is_split_into_words=True) does (cp_tokenizer_encode_word; with
 * the prefix space a byte-level tokenizer needs, as run_ner.py sets add_prefix_space=True); the tag
 * goes on the first sub-token of each word, -100 on the others and on special tokens. A sentence
 * longer than max_seq_length is truncated and counted, or is an error with `strict`.
 *
 * Every error names the file and line: a bad record, a missing field (the pair field in some record),
 * a CoNLL line with the wrong number of columns, a label outside the label set in eval data.
 * (SEQ_CLS records with a bad field are errors, not skipped: classification files are clean tables.)
 * Files may be gzip / zstd compressed and must be UTF-8 (cp_data_decode_text).
 *
 * Not here: the model and its head (src/models), training and evaluation loops (trainer.c), metrics
 * (metrics.h).
 */
#ifndef CP_TRAIN_CLASS_DATA_H
#define CP_TRAIN_CLASS_DATA_H

#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "cpeft.h"
#include "train/labels.h"

typedef enum { CP_CLASS_SEQ, CP_CLASS_TOKEN } cp_class_task;
typedef enum { CP_CLASS_FILE_AUTO, CP_CLASS_FILE_CSV, CP_CLASS_FILE_TSV, CP_CLASS_FILE_JSONL, CP_CLASS_FILE_CONLL } cp_class_file;

typedef struct {
    int32_t *ids;       /* [len] input ids, special tokens included */
    uint8_t *type_ids;  /* [len] token type ids (1 on a pair's second sequence where the template says) */
    int64_t *labels;    /* SEQ_CLS single-label: [1] class id; TOKEN_CLS: [len], -100 where no loss */
    float *values;      /* SEQ_CLS regression: [1]; multi-label: [K] 0/1; else NULL */
    int64_t len;
    int64_t line;       /* 1-based line where the record (sentence) starts */
} cp_class_example;

typedef struct {
    cp_class_example *examples;
    int64_t n;
    int64_t n_truncated;   /* records / sentences cut to max_seq_length */
    int64_t n_tokens;      /* sum of lengths */
    cp_class_task task;
    cp_problem_type problem; /* single-label, multi-label or regression (resolved) */
    int64_t num_labels;    /* K */
} cp_class_dataset;

typedef struct {
    const char *path;
    cp_class_task task;
    cp_class_file format;        /* AUTO: by extension (.csv, .tsv, .jsonl/.json, else CoNLL for TOKEN_CLS) */
    const char *text_field;      /* NULL: "sentence" or "text" (SEQ_CLS), "tokens" (TOKEN_CLS JSONL) */
    const char *text_pair_field; /* SEQ_CLS: the second text of a pair, or NULL */
    const char *label_field;     /* NULL: "label" (SEQ_CLS), "ner_tags" (TOKEN_CLS JSONL) */
    cp_problem_type problem;     /* SEQ_CLS: AUTO decides from the training file's labels */
    int64_t max_seq_length;      /* > the special tokens the tokenizer adds */
    int strict;                  /* TOKEN_CLS: a sentence longer than max_seq_length is an error */
    int add_prefix_space;        /* TOKEN_CLS words: -1 auto (on for byte-level tokenizers), 0, 1 */
    size_t max_decompressed;     /* the most bytes compressed data may expand to (0: no limit) */
} cp_class_options;

/* Reads and tokenizes a classification file. When labels->n == 0 the label set is discovered from
 * this file (the training file) and given back in *labels (free with cp_label_set_free); otherwise the
 * file's labels must be in it (eval, predict), else an error naming file:line. On error *ds is empty
 * and a discovered *labels is freed. */
cp_status cp_class_dataset_load(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                const cp_class_options *opt);
/* The same for content held in memory (len bytes); opt->path names it and picks the format. */
cp_status cp_class_dataset_load_mem(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                    const cp_class_options *opt, const char *data, size_t len);
void cp_class_dataset_free(cp_class_dataset *ds);

/* A batch: examples order[start..start+B) (fewer at the end; order NULL = file order), right-padded to
 * the longest (dynamic padding) with pad_id, attention_mask 0 and token_type_ids 0 on pads; TOKEN_CLS
 * labels -100 on pads. Arrays map 1:1 onto cp_batch. Buffers are reused across calls; zero-initialise
 * before first use. */
typedef struct {
    int64_t B, T, K;
    int64_t *input_ids;       /* (B,T) */
    int64_t *attention_mask;  /* (B,T) 1 real, 0 pad */
    int64_t *token_type_ids;  /* (B,T) */
    int64_t *labels;          /* SEQ_CLS single-label (B) class ids; TOKEN_CLS (B,T) with -100; else NULL */
    float *label_values;      /* regression (B); multi-label (B,K); else NULL */
    size_t cap_bt, cap_labels, cap_values;
} cp_class_batch;
cp_status cp_class_batch_make(const cp_class_dataset *ds, const int64_t *order, int64_t start, int64_t B,
                              int64_t pad_id, cp_class_batch *out);
void cp_class_batch_free(cp_class_batch *b);

/* ---- shared by class_data.c, token_data.c and seq2seq_data.c ------------------------------------ */

/* Truncates a[0..na) (and b[0..nb) when b is not NULL) so that, with the n_added special tokens,
 * at most max_len remain — right truncation, "longest_first" for pairs exactly as `tokenizers`
 * (utils/truncation.rs) splits the budget — then adds the special tokens (cp_tokenizer_post_process).
 * *truncated tells whether anything was cut. */
cp_status cp_class_encode_truncated(const cp_tokenizer *tok, const int32_t *a, size_t na, const int32_t *b,
                                    size_t nb, int64_t max_len, int64_t n_added, cp_encoding *out, int *truncated);
/* The number of special tokens the post-processor adds to one sequence (pair = 0) or a pair. */
cp_status cp_class_special_count(const cp_tokenizer *tok, int pair, int64_t *n);
/* Appends an example (ids, type ids from enc; labels / values as given, copied; NULL for none). */
cp_status cp_class_push(cp_class_dataset *ds, size_t *cap, const cp_encoding *enc, const int64_t *labels,
                        int64_t n_labels, const float *values, int64_t n_values, int64_t line);
/* TOKEN_CLS: class_data.c hands the decoded text to token_data.c. */
cp_status cp_token_dataset_parse(cp_class_dataset *ds, cp_label_set *labels, const cp_tokenizer *tok,
                                 const cp_class_options *opt, cp_class_file format, const char *text, size_t len);

#endif
