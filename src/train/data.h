/*
 * data.h — training data: files read into tokenized examples, and batches cut from them.
 *
 * Formats (chosen by content, see cp_dataset_load):
 *   plain text     any file that is not JSON: tokenized as one stream and cut into consecutive
 *                  blocks of max_seq_length tokens (the last partial block kept); labels = ids.
 *   JSON text      JSONL (one object per line) or a JSON array of objects with a text field
 *                  (default "text"): one example per record, tokenized with the tokenizer's special
 *                  tokens, EOS appended, truncated to max_seq_length; labels = ids.
 *   instruction    records with "instruction", "output" and optional "input" (Alpaca): rendered
 *                  with the Alpaca prompt template; ids = tok(prompt) ++ tok(output) ++ [eos],
 *                  labels = -100 on the prompt tokens (loss only on the response), truncated to
 *                  max_seq_length. Detected when the first valid record has string "instruction" and
 *                  "output".
 *   TRL formats    prompt-completion, conversational "messages" (or ShareGPT "conversations") and
 *                  conversational prompt-completion records, tokenized as TRL's SFTTrainer does (see
 *                  sft_records.h); detected from the first valid record: "prompt" + "completion" first,
 *                  then "messages" / "conversations", then Alpaca, then the text field.
 *   CSV / TSV      (by the name: .csv, .tsv, also compressed) a header row naming the columns, each row one
 *                  record of string fields: prompt + completion, instruction + output (+ input), or the
 *                  text field; a header with none of them is an error naming its columns.
 * A malformed record (not an object, missing or wrong-typed field, empty after tokenization) is
 * reported as "file:line: ..." and skipped with a count, or is fatal with `strict`. A record with no
 * response tokens left after truncation counts as malformed.
 *
 * Files may be gzip- or zstd-compressed; binary data is refused (see cp_dataset_load).
 *
 * The prompt is rendered by substitution, never as a printf format, so '%' in the data is safe. When a
 * tokenizer's post-processor appends eos itself (add_eos_token), the prompt's trailing eos is dropped
 * so that eos appears once, at the end.
 */
#ifndef CP_TRAIN_DATA_H
#define CP_TRAIN_DATA_H

#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "cpeft.h"

#define CP_ALPACA_PROMPT_INPUT                                                                              \
    "Below is an instruction that describes a task, paired with an input that provides further context. " \
    "Write a response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n"
#define CP_ALPACA_PROMPT_NO_INPUT                                                                           \
    "Below is an instruction that describes a task. Write a response that appropriately completes the "   \
    "request.\n\n### Instruction:\n%s\n\n### Response:\n"

typedef enum {
    CP_DATA_AUTO, CP_DATA_TEXT, CP_DATA_JSON_TEXT, CP_DATA_INSTRUCTION,
    CP_DATA_PROMPT_COMPLETION,      /* TRL prompt-completion (sft_records.h) */
    CP_DATA_MESSAGES,               /* TRL conversational: messages (or ShareGPT conversations) */
    CP_DATA_CONV_PROMPT_COMPLETION, /* TRL conversational prompt-completion */
} cp_data_format;

struct cp_chat_template;

typedef struct {
    int64_t *ids;     /* [len] */
    int64_t *labels;  /* [len], -100 where no loss is taken */
    int64_t len;
    int64_t line;     /* 1-based line of the record in the file (0 for stream blocks) */
} cp_example;

typedef struct {
    cp_example *examples;
    int64_t n;
    int64_t n_skipped;      /* malformed records skipped */
    int64_t n_truncated;    /* records cut to max_seq_length */
    int64_t n_tokens;       /* sum of lengths */
    int64_t n_target_tokens;/* labels != -100 (before the shift) */
    cp_data_format format;  /* what was detected */
} cp_dataset;

typedef struct {
    const char *path;
    cp_data_format format;       /* CP_DATA_AUTO: detect */
    const char *text_field;      /* JSON text records; default "text" */
    int64_t max_seq_length;      /* > 1 */
    int strict;                  /* a malformed record is an error instead of a skipped count */
    size_t max_decompressed;     /* the most bytes compressed data may expand to (0: no limit) */
    /* TRL's formats (sft_records.h) */
    const struct cp_chat_template *chat_template; /* renders conversational records (NULL: they are refused) */
    const char *chat_template_error;  /* why there is none, for that refusal */
    int assistant_only_loss;     /* conversational records: loss on the template's generation blocks only */
    int full_loss;               /* prompt-completion records: loss on the prompt too (TRL's
                                    completion_only_loss=False) */
} cp_data_options;

/* Reads and tokenizes a data file. The tokenizer's eos must be set for JSON and instruction data.
 * The bytes first: gzip or zstd data (told by its magic number, whatever the name) is decompressed;
 * other compressed, archive or binary formats (xz, bzip2, zip, tar, Parquet, ...) are refused by name,
 * as is a name whose extension promises a format the data is not (data.json.gz holding plain text);
 * the text must be UTF-8 without NUL bytes, else the error gives the offset and line of the first bad
 * byte (in the decompressed data when compressed).
 * Format: the first non-space byte (after a UTF-8 BOM) '[' is a JSON array, '{' is JSONL (one object
 * per non-blank line), anything else plain text; opt->format other than CP_DATA_AUTO forces the
 * record kind (CP_DATA_TEXT: read as plain text even when it looks like JSON). With CP_DATA_AUTO the
 * first valid record decides: instruction when it has string "instruction" and "output", else text.
 * Skipped records give one warning at the end ("skipped N malformed records; first: FILE:LINE: ...").
 * A syntax error inside a JSON array cannot be skipped (the next record cannot be found) and is an
 * error in either mode; no examples at all is an error. On error *ds is left empty. */
cp_status cp_dataset_load(cp_dataset *ds, const cp_tokenizer *tok, const cp_data_options *opt);
/* The same for a file's content held in memory (len bytes, need not be NUL-terminated); opt->path
 * only names it in messages. */
cp_status cp_dataset_load_mem(cp_dataset *ds, const cp_tokenizer *tok, const cp_data_options *opt, const char *data,
                              size_t len);
/* The bytes-to-text step of cp_dataset_load on its own (for readers of plain text such as cpeft eval):
 * data[0..len) decompressed into *owned (cp_free it, also on error) when gzip or zstd, refused by name
 * when another format, refused with offset and line when not UTF-8 or holding a NUL; *text points into
 * data or *owned. opt->path names the file; opt->max_decompressed bounds the expansion. */
cp_status cp_data_decode_text(const cp_data_options *opt, const char *data, size_t len, char **owned, const char **text,
                              size_t *text_len);
/* Moves max(1, round(fraction * n)) examples, picked by a shuffle seeded with `seed`, into `val`; both
 * keep the file order. A validation split for data without a separate validation file. Errors (and
 * leaves ds untouched) when fraction is not in (0, 1) or ds would be left empty. n_tokens and
 * n_target_tokens are recounted for both; n_skipped and n_truncated stay with ds (load statistics). */
cp_status cp_dataset_split(cp_dataset *ds, double fraction, uint64_t seed, cp_dataset *val);
/* The split of cp_dataset_split for an array of any example type (the seq2seq data too): of the *n
 * examples of `size` bytes at `examples`, the held-out ones (picked as above) are copied into a new
 * array *val (cp_free it) of *n_val, the rest compacted in place and *n set to their count; both keep
 * the file order. The same errors as cp_dataset_split; on error nothing changes (*val NULL). */
cp_status cp_split_examples(void *examples, size_t size, int64_t *n, double fraction, uint64_t seed, void **val,
                            int64_t *n_val);
/* Frees the examples (ids and labels are separate allocations) and zeroes *ds; safe to call twice. */
void cp_dataset_free(cp_dataset *ds);

/* Fills order with a permutation of 0..n-1 for one epoch: the identity, Fisher–Yates shuffled with
 * cpeft's RNG (the result depends only on the RNG state, not on order's previous content). */
void cp_dataset_shuffle(int64_t *order, int64_t n, cp_rng *rng);

/* A padded batch: B examples order[start..start+B) (fewer at the end of the epoch; order NULL means
 * the dataset order), right-padded to the longest with pad_id (labels -100, attention_mask 0).
 * Buffers are owned by the batch, reused across calls and grown when needed (cap is in elements);
 * cp_batch_data_free frees them. Zero-initialise a cp_batch_data before its first use. */
typedef struct {
    int64_t B, T;
    int64_t *input_ids, *attention_mask, *labels;
    int64_t cap;
} cp_batch_data;
cp_status cp_batch_make(const cp_dataset *ds, const int64_t *order, int64_t start, int64_t B, int64_t pad_id,
                        cp_batch_data *out);
void cp_batch_data_free(cp_batch_data *b);

#endif
