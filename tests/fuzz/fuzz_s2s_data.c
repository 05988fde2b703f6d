/*
 * fuzz_s2s_data.c — libFuzzer target for the seq2seq data reader (src/train/seq2seq_data.c, with
 * records.c and csv_reader.c under it). Arbitrary bytes as a CSV, TSV or JSONL file; the first byte
 * picks the file kind, the tokenizer (T5's "$A </s>" or RoBERTa's "<s> $A </s>" template, committed
 * fixtures), a source prefix, the field names, the maximum lengths and strict. What loads must hold
 * the invariants: 2 <= lengths <= the maxima, ids in the vocabulary, every target ending in </s>,
 * the token sums equal to the lengths; batches pad sources with pad / 0 and labels with -100, and
 * shift_tokens_right puts the start token first and no -100 anywhere. Run from the repository root.
 */
#include "train/seq2seq_data.h"
#include "core/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cp_tokenizer *toks[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    static const char *files[2] = {"tests/fixtures/tokenizers/t5/tokenizer.json",
                                   "tests/fixtures/tokenizers/roberta/tokenizer.json"};
    for (int k = 0; k < 2; k++) {
        if (toks[k]) continue;
        if (cp_tokenizer_load_file(&toks[k], files[k]) != CP_OK || cp_tokenizer_set_special(toks[k], CP_SPECIAL_EOS, "</s>") ||
            cp_tokenizer_set_special(toks[k], CP_SPECIAL_PAD, "<pad>")) {
            fprintf(stderr, "fuzz_s2s_data: %s (run from the repository root)\n", cp_last_error());
            abort();
        }
    }
    if (size < 1) return 0;
    uint8_t o = data[0];
    static const char *names[4] = {"f.csv", "f.tsv", "f.jsonl", "f.jsonl"};
    static const int64_t lens[4] = {3, 5, 16, 512};
    cp_tokenizer *tok = toks[(o >> 2) & 1];
    cp_s2s_options opt = {
        .path = names[o & 3],
        .source_field = (o >> 3) & 1 ? "a" : NULL,
        .target_field = (o >> 3) & 1 ? "b" : NULL,
        .source_prefix = (o >> 4) & 1 ? "summarize: " : NULL,
        .max_source_length = lens[(o >> 5) & 3],
        .max_target_length = lens[((o >> 5) + 1) & 3],
        .strict = (o >> 7) & 1,
        .max_decompressed = 1 << 24,
    };
    cp_s2s_dataset ds;
    if (cp_s2s_dataset_load_mem(&ds, tok, &opt, (const char *)data + 1, size - 1) != CP_OK) {
        if (ds.n != 0 || ds.examples) __builtin_trap();
        return 0;
    }
    int64_t vocab = (int64_t)cp_tokenizer_vocab_size(tok), eos = cp_tokenizer_special_id(tok, CP_SPECIAL_EOS);
    int64_t pad = cp_tokenizer_special_id(tok, CP_SPECIAL_PAD), ns = 0, nt = 0;
    if (ds.n < 1) __builtin_trap();
    for (int64_t i = 0; i < ds.n; i++) {
        const cp_s2s_example *ex = &ds.examples[i];
        if (ex->n_src < 2 || ex->n_src > opt.max_source_length || ex->n_tgt < 2 || ex->n_tgt > opt.max_target_length)
            __builtin_trap();
        if (ex->tgt[ex->n_tgt - 1] != eos || ex->src[ex->n_src - 1] != eos) __builtin_trap();
        for (int64_t t = 0; t < ex->n_src; t++) if (ex->src[t] < 0 || ex->src[t] >= vocab) __builtin_trap();
        for (int64_t t = 0; t < ex->n_tgt; t++) if (ex->tgt[t] < 0 || ex->tgt[t] >= vocab) __builtin_trap();
        if (i > 0 && ex->line <= ds.examples[i - 1].line) __builtin_trap();
        ns += ex->n_src;
        nt += ex->n_tgt;
    }
    if (ns != ds.n_source_tokens || nt != ds.n_target_tokens) __builtin_trap();
    cp_s2s_batch b = {0};
    for (int64_t s = 0; s < ds.n; s += 3) {
        if (cp_s2s_batch_make(&ds, NULL, s, 3, pad, &b) != CP_OK) __builtin_trap();
        for (int64_t i = 0; i < b.B * b.T; i++)
            if (b.attention_mask[i] == 0 && b.input_ids[i] != pad) __builtin_trap();
        int64_t *dec = malloc((size_t)(b.B * b.Td) * sizeof *dec);
        if (!dec || cp_shift_tokens_right(b.labels, b.B, b.Td, pad, pad, dec) != CP_OK) __builtin_trap();
        for (int64_t i = 0; i < b.B * b.Td; i++)
            if (dec[i] == -100 || (i % b.Td == 0 && dec[i] != pad)) __builtin_trap();
        free(dec);
    }
    cp_s2s_batch_free(&b);
    cp_s2s_dataset_free(&ds);
    return 0;
}
