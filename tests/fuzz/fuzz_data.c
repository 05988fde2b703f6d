/*
 * fuzz_data.c — libFuzzer target for the training-data loader (src/train/data.c): arbitrary bytes as
 * a data file (plain text, JSONL, JSON array, instruction records, broken JSON) through
 * cp_dataset_load_mem with a byte-level BPE tokenizer, then a validation split and padded batches over
 * whatever loaded. The first byte picks the options (format, strict, text field, max_seq_length).
 * Input that starts like gzip or zstd runs through the decoders (src/io/compress.c), capped at 16 MiB
 * of output so that a small bomb stays within libFuzzer's memory limit; binary and non-UTF-8 input is
 * refused (an error, never examples).
 * Checks the invariants every example must hold: 1 <= len <= max_seq_length, labels -100 or equal to
 * the id, at least one label, ids inside the vocabulary, lines in order, counters consistent.
 * The tokenizer is the committed RoBERTa fixture (byte-level BPE like GPT-2's; it also adds <s> and
 * </s> itself, which the loader must not double), so the target needs nothing outside the repository.
 * Run from the repository root.
 */
#include "train/data.h"
#include "core/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define TOKENIZER "tests/fixtures/tokenizers/roberta/tokenizer.json"

static cp_tokenizer *tok;
static int32_t pad;

static void check_dataset(const cp_dataset *ds, int64_t max_len, int64_t vocab) {
    int64_t tokens = 0, targets = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        const cp_example *ex = &ds->examples[i];
        if (ex->len < 1 || ex->len > max_len) __builtin_trap();
        if (i > 0 && ds->format != CP_DATA_TEXT && ex->line < ds->examples[i - 1].line) __builtin_trap();
        int64_t k = 0;
        for (int64_t t = 0; t < ex->len; t++) {
            if (ex->ids[t] < 0 || ex->ids[t] >= vocab) __builtin_trap();
            if (ex->labels[t] != -100 && ex->labels[t] != ex->ids[t]) __builtin_trap();
            k += ex->labels[t] != -100;
        }
        if (k == 0) __builtin_trap();
        tokens += ex->len;
        targets += k;
    }
    if (tokens != ds->n_tokens || targets != ds->n_target_tokens) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    if (!tok) {
        if (cp_tokenizer_load_file(&tok, TOKENIZER) != CP_OK) {
            fprintf(stderr, "fuzz_data: %s (run from the repository root)\n", cp_last_error());
            abort();
        }
        pad = cp_tokenizer_special_id(tok, CP_SPECIAL_PAD);
    }
    if (size == 0) return 0;
    uint8_t o = data[0];
    static const int64_t lens[4] = {2, 7, 64, 1024};
    cp_data_options opt = {
        .path = "fuzz.json",
        .format = (cp_data_format)(o & 3),
        .strict = (o >> 2) & 1,
        .text_field = (o >> 3) & 1 ? "output" : NULL,
        .max_seq_length = lens[(o >> 4) & 3],
        .max_decompressed = 1 << 24,
    };
    cp_dataset ds, val;
    if (cp_dataset_load_mem(&ds, tok, &opt, (const char *)data + 1, size - 1) != CP_OK) {
        if (ds.n != 0 || ds.examples) __builtin_trap();
        return 0;
    }
    int64_t vocab = (int64_t)cp_tokenizer_vocab_size(tok);
    if (ds.n < 1) __builtin_trap();
    check_dataset(&ds, opt.max_seq_length, vocab);
    if (cp_dataset_split(&ds, (o >> 6) & 1 ? 0.5 : 0.1, o, &val) == CP_OK) {
        check_dataset(&val, opt.max_seq_length, vocab);
        cp_dataset_free(&val);
    }
    cp_batch_data b = {0};
    for (int64_t s = 0; s < ds.n; s += 3) {
        if (cp_batch_make(&ds, NULL, s, 3, pad, &b) != CP_OK) __builtin_trap();
        for (int64_t i = 0; i < b.B * b.T; i++)
            if (b.attention_mask[i] == 0 && (b.labels[i] != -100 || b.input_ids[i] != pad)) __builtin_trap();
    }
    cp_batch_data_free(&b);
    cp_dataset_free(&ds);
    return 0;
}
