/*
 * fuzz_class_data.c — libFuzzer target for the classification data readers (src/train/csv_reader.c,
 * labels.c, class_data.c, token_data.c) and the metrics over what they read (metrics.c).
 * Arbitrary bytes as a CSV, TSV, JSONL or CoNLL file; the first byte picks the task (SEQ_CLS /
 * TOKEN_CLS), the file kind, a pair field, max_seq_length, strict, the tokenizer (WordPiece BERT or
 * byte-level RoBERTa, both committed fixtures) and the problem type. What loads must hold the
 * invariants: 1 <= len <= max_seq_length, ids in the vocabulary, type ids 0/1, labels -100 or a class
 * id below K (at most one label per token... and the first token of a TOKEN_CLS row is special or
 * labelled as its word's first sub-token), multi-label values 0/1; the same bytes read again as eval
 * data against the discovered label set give the same examples; batches pad with -100 / 0; accuracy,
 * macro-F1 and seqeval run over the labels. Run from the repository root.
 */
#include "train/class_data.h"
#include "train/metrics.h"
#include "core/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cp_tokenizer *toks[2];
static int32_t pads[2];

static void check(const cp_class_dataset *ds, int64_t max_len, int64_t vocab, int64_t K) {
    int64_t tokens = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        const cp_class_example *ex = &ds->examples[i];
        if (ex->len < 1 || ex->len > max_len) __builtin_trap();
        if (i > 0 && ex->line < ds->examples[i - 1].line) __builtin_trap();
        for (int64_t t = 0; t < ex->len; t++) {
            if (ex->ids[t] < 0 || ex->ids[t] >= vocab || ex->type_ids[t] > 1) __builtin_trap();
            if (ds->task == CP_CLASS_TOKEN && ex->labels[t] != -100 && (ex->labels[t] < 0 || ex->labels[t] >= K))
                __builtin_trap();
        }
        if (ds->task == CP_CLASS_SEQ && ds->problem == CP_PROBLEM_SINGLE_LABEL && (ex->labels[0] < 0 || ex->labels[0] >= K))
            __builtin_trap();
        if (ds->problem == CP_PROBLEM_MULTI_LABEL)
            for (int64_t k = 0; k < K; k++)
                if (ex->values[k] != 0.0f && ex->values[k] != 1.0f) __builtin_trap();
        tokens += ex->len;
    }
    if (tokens != ds->n_tokens || ds->num_labels != K) __builtin_trap();
}

static void metrics(const cp_class_dataset *ds, const cp_label_set *set) {
    cp_seqeval s;
    cp_seqeval_init(&s);
    for (int64_t i = 0; i < ds->n; i++) {
        const cp_class_example *ex = &ds->examples[i];
        if (ds->task == CP_CLASS_TOKEN) {
            /* predictions: the labels shifted by one class, to make some entities disagree */
            int64_t *pred = malloc((size_t)ex->len * sizeof *pred);
            for (int64_t t = 0; t < ex->len; t++) pred[t] = ex->labels[t] < 0 ? 0 : (ex->labels[t] + (t & 1)) % set->n;
            if (cp_seqeval_add_ids(&s, (const char *const *)set->names, set->n, ex->labels, pred, ex->len) != CP_OK)
                __builtin_trap();
            double f1;
            if (cp_metric_macro_f1(ex->labels, pred, ex->len, &f1) != CP_OK || !(f1 >= 0 && f1 <= 1)) __builtin_trap();
            free(pred);
        }
    }
    cp_prf r = cp_seqeval_micro(&s);
    if (!(r.f1 >= 0 && r.f1 <= 1) || r.tp > r.n_pred || r.tp > r.n_true) __builtin_trap();
    cp_seqeval_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    static const char *files[2] = {"tests/fixtures/tokenizers/bert-uncased/tokenizer.json",
                                   "tests/fixtures/tokenizers/roberta/tokenizer.json"};
    for (int k = 0; k < 2; k++) {
        if (toks[k]) continue;
        if (cp_tokenizer_load_file(&toks[k], files[k]) != CP_OK) {
            fprintf(stderr, "fuzz_class_data: %s (run from the repository root)\n", cp_last_error());
            abort();
        }
        pads[k] = cp_tokenizer_special_id(toks[k], CP_SPECIAL_PAD);
        if (pads[k] < 0) pads[k] = 0;
    }
    if (size < 2) return 0;
    uint8_t o = data[0], o2 = data[1];
    static const char *seq_names[4] = {"f.csv", "f.tsv", "f.jsonl", "f.tsv"};
    static const char *tok_names[4] = {"f.conll", "f.jsonl", "f.txt", "f.conll"};
    static const int64_t lens[4] = {3, 8, 32, 512};
    static const cp_problem_type problems[4] = {CP_PROBLEM_AUTO, CP_PROBLEM_AUTO, CP_PROBLEM_REGRESSION,
                                                CP_PROBLEM_MULTI_LABEL};
    int t = o & 1;
    cp_tokenizer *tok = toks[(o >> 1) & 1];
    cp_class_options opt = {
        .path = t ? tok_names[(o >> 2) & 3] : seq_names[(o >> 2) & 3],
        .task = t ? CP_CLASS_TOKEN : CP_CLASS_SEQ,
        .text_field = (o >> 4) & 1 ? "a" : NULL,
        .text_pair_field = (o >> 5) & 1 ? "b" : NULL,
        .max_seq_length = lens[(o >> 6) & 3],
        .strict = o2 & 1,
        .problem = problems[(o2 >> 1) & 3],
        .add_prefix_space = -1,
        .max_decompressed = 1 << 24,
    };
    cp_class_dataset ds, ev;
    cp_label_set set = {0};
    if (cp_class_dataset_load_mem(&ds, &set, tok, &opt, (const char *)data + 2, size - 2) != CP_OK) {
        if (ds.n != 0 || ds.examples || set.n != 0) __builtin_trap();
        return 0;
    }
    int64_t vocab = (int64_t)cp_tokenizer_vocab_size(tok);
    if (ds.n < 1 || set.n < 1) __builtin_trap();
    check(&ds, opt.max_seq_length, vocab, ds.problem == CP_PROBLEM_REGRESSION ? 1 : set.n);
    /* the training file read as eval data against its own label set: the same examples */
    if (cp_class_dataset_load_mem(&ev, &set, tok, &opt, (const char *)data + 2, size - 2) != CP_OK) __builtin_trap();
    if (ev.n != ds.n || ev.problem != ds.problem) __builtin_trap();
    for (int64_t i = 0; i < ds.n; i++) {
        const cp_class_example *a = &ds.examples[i], *b = &ev.examples[i];
        if (a->len != b->len || memcmp(a->ids, b->ids, (size_t)a->len * sizeof *a->ids)) __builtin_trap();
        if (ds.task == CP_CLASS_TOKEN && memcmp(a->labels, b->labels, (size_t)a->len * sizeof *a->labels)) __builtin_trap();
    }
    cp_class_dataset_free(&ev);
    metrics(&ds, &set);
    cp_class_batch b = {0};
    int pad = pads[(o >> 1) & 1];
    for (int64_t s = 0; s < ds.n; s += 3) {
        if (cp_class_batch_make(&ds, NULL, s, 3, pad, &b) != CP_OK) __builtin_trap();
        for (int64_t i = 0; i < b.B * b.T; i++) {
            if (b.attention_mask[i] == 0 && (b.input_ids[i] != pad || b.token_type_ids[i] != 0)) __builtin_trap();
            if (ds.task == CP_CLASS_TOKEN && b.attention_mask[i] == 0 && b.labels[i] != -100) __builtin_trap();
        }
    }
    cp_class_batch_free(&b);
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);
    return 0;
}
