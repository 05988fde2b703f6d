/*
 * seq2seq_data.h — SEQ_2_SEQ_LM data: source / target records from CSV, TSV or JSONL, tokenized,
 * truncated and cut into dynamically padded encoder-decoder batches, as transformers'
 * run_summarization.py / run_translation.py prepare them (tokenizer(inputs, max_length=...,
 * truncation=True), tokenizer(text_target=targets, ...), DataCollatorForSeq2Seq).
 *
 * Files by extension (records.h): .csv / .tsv with a header row (csv_reader.h), .jsonl / .json one
 * object per line; gzip / zstd compressed and UTF-8 (cp_data_decode_text). The source and target
 * fields are named by the options (default "source" / "target"; the E2E NLG data's are "mr" / "ref").
 * An optional source prefix ("summarize: ", "translate English to German: ") is prepended to every
 * source text before tokenization, as run_summarization.py's --source_prefix.
 *
 * Each text is tokenized without special tokens, truncated (right) to max_*_length minus what the
 * post-processor adds, then the tokenizer.json post-processor adds its special tokens (T5: "$A </s>",
 * BART: "<s> $A </s>"), so the EOS survives truncation exactly as transformers' truncation keeps it.
 * A tokenizer whose post-processor adds nothing gets its eos token appended (an error when it has
 * none). A cut text is counted (n_truncated_source / _target), or is an error with `strict`.
 *
 * Batches: encoder input_ids (B,T) right-padded with pad_token_id and attention_mask 0 on pads,
 * T the longest source of the batch; labels (B,Td) right-padded with -100, Td the longest target. The
 * decoder inputs are left to the model (cp_batch.decoder_input_ids NULL: it shifts the labels itself,
 * cp_shift_tokens_right).
 *
 * Every bad record is an error naming the file and line: not an object, a missing or null field
 * (the source or the target), a field that is not a string, an empty source or target (or one with
 * no tokens: only whitespace); a CSV / TSV
 * header without the field lists the columns it has.
 *
 * Not here: the encoder-decoder models (src/models), generation (src/generate), the metrics of the
 * generated text (text_metrics.h).
 */
#ifndef CP_TRAIN_SEQ2SEQ_DATA_H
#define CP_TRAIN_SEQ2SEQ_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "cpeft.h"
#include "train/records.h"

typedef struct {
    int32_t *src;      /* [n_src] encoder ids, special tokens included */
    int32_t *tgt;      /* [n_tgt] target ids (the labels), EOS included */
    int64_t n_src, n_tgt;
    int64_t line;      /* 1-based line where the record starts */
    char *source_text, *target_text; /* the record's texts (no prefix) with keep_text, else NULL */
} cp_s2s_example;

typedef struct {
    cp_s2s_example *examples;
    int64_t n;
    int64_t n_truncated_source, n_truncated_target;  /* records cut to max_source / max_target_length */
    int64_t n_source_tokens, n_target_tokens;        /* sums of lengths */
} cp_s2s_dataset;

typedef struct {
    const char *path;
    cp_records_format format;    /* UNKNOWN: by extension */
    const char *source_field;    /* NULL or "": "source" */
    const char *target_field;    /* NULL or "": "target" */
    const char *source_prefix;   /* prepended to every source text; NULL = none */
    int64_t max_source_length;   /* > the special tokens the tokenizer adds */
    int64_t max_target_length;   /* likewise */
    int strict;                  /* a text longer than its maximum is an error instead of truncated */
    size_t max_decompressed;     /* the most bytes compressed data may expand to (0: no limit) */
    int keep_text;               /* keep each record's source and target text (evaluation by generation) */
} cp_s2s_options;

/* Reads and tokenizes a seq2seq file. On error *ds is empty. */
cp_status cp_s2s_dataset_load(cp_s2s_dataset *ds, const cp_tokenizer *tok, const cp_s2s_options *opt);
/* The same for content held in memory (len bytes); opt->path names it and picks the format. */
cp_status cp_s2s_dataset_load_mem(cp_s2s_dataset *ds, const cp_tokenizer *tok, const cp_s2s_options *opt,
                                  const char *data, size_t len);
void cp_s2s_dataset_free(cp_s2s_dataset *ds);

/* A batch: examples order[start..start+B) (fewer at the end; order NULL = file order). Arrays map 1:1
 * onto cp_batch (input_ids, attention_mask, labels, Td; decoder_input_ids left NULL). Buffers are
 * reused across calls; zero-initialise before first use. */
typedef struct {
    int64_t B, T, Td;
    int64_t *input_ids;       /* (B,T) pad_token_id on pads */
    int64_t *attention_mask;  /* (B,T) 1 real, 0 pad */
    int64_t *labels;          /* (B,Td) -100 on pads */
    size_t cap_bt, cap_btd;
} cp_s2s_batch;
cp_status cp_s2s_batch_make(const cp_s2s_dataset *ds, const int64_t *order, int64_t start, int64_t B,
                            int64_t pad_id, cp_s2s_batch *out);
void cp_s2s_batch_free(cp_s2s_batch *b);

/* transformers' shift_tokens_right (BART) / T5's _shift_right: out (B,Td) = labels shifted one to the
 * right, decoder_start_token_id in column 0, -100 replaced by pad_id. out may not alias labels.
 * pad_id and decoder_start_token_id must be set (>= 0): transformers raises without them. */
cp_status cp_shift_tokens_right(const int64_t *labels, int64_t B, int64_t Td, int64_t pad_id,
                                int64_t decoder_start_token_id, int64_t *out);

#endif
