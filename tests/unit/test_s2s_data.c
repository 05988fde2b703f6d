/*
 * test_s2s_data.c — seq2seq records (src/train/seq2seq_data.c) against transformers:
 * tests/fixtures/s2s_data (tests/reference/make_s2s_data_fixtures.py) holds run_summarization.py's
 * tokenization (source prefix, max_length truncation keeping the EOS, text_target) for the T5 and
 * RoBERTa/BART templates, DataCollatorForSeq2Seq batches (pad / -100), shift_tokens_right and T5's
 * _shift_right, and the E2E NLG devset's ids and counts. The same records are read from JSONL, CSV
 * and TSV. Bad input (missing / null / non-string fields, empty texts, bad JSON, short CSV rows,
 * missing columns, --strict) is an error naming file:line and field; mutated and cut files never
 * crash (run under ASan by make test-asan).
 */
#include "test.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "train/seq2seq_data.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>

#define DIR "tests/fixtures/s2s_data/"

static cJSON *expected;
static cp_tokenizer *t5, *roberta;

/* Whether ids[0..n) equals the JSON int array a; reports the first difference. */
static int same_ids32(const int32_t *ids, int64_t n, const cJSON *a, const char *what, int64_t rec) {
    int64_t m = cJSON_GetArraySize(a);
    CHECK(n == m, "%s %" PRId64 ": %" PRId64 " ids, transformers %" PRId64, what, rec, n, m);
    if (n != m) return 0;
    int64_t t = 0;
    for (const cJSON *x = a->child; x; x = x->next, t++) {
        CHECK(ids[t] == (int32_t)x->valuedouble, "%s %" PRId64 " token %" PRId64 ": %d, transformers %d", what, rec, t,
              ids[t], (int)x->valuedouble);
        if (ids[t] != (int32_t)x->valuedouble) return 0;
    }
    return 1;
}

/* (B,T) rows of a batch against a JSON list of lists. */
static void same_rows(const int64_t *v, int64_t B, int64_t T, const cJSON *rows, const char *what) {
    CHECK(cJSON_GetArraySize(rows) == B, "%s: %" PRId64 " rows, transformers %d", what, B, cJSON_GetArraySize(rows));
    int64_t b = 0, bad = 0;
    for (const cJSON *r = rows->child; r && b < B; r = r->next, b++) {
        CHECK(cJSON_GetArraySize(r) == T, "%s row %" PRId64 ": width %" PRId64 ", transformers %d", what, b, T,
              cJSON_GetArraySize(r));
        int64_t t = 0;
        for (const cJSON *x = r->child; x && t < T; x = x->next, t++) bad += v[b * T + t] != (int64_t)x->valuedouble;
    }
    CHECK(bad == 0, "%s: %" PRId64 " values differ from transformers", what, bad);
}

static cp_s2s_options fixture_options(const char *path) {
    return (cp_s2s_options){.path = path, .source_field = "document", .target_field = "summary",
                            .source_prefix = cJSON_GetObjectItem(expected, "source_prefix")->valuestring,
                            .max_source_length = (int64_t)cJSON_GetObjectItem(expected, "max_source_length")->valuedouble,
                            .max_target_length = (int64_t)cJSON_GetObjectItem(expected, "max_target_length")->valuedouble};
}

static void check_tokenizer_case(const cp_tokenizer *tok, const char *name, const char *path) {
    const cJSON *w = cJSON_GetObjectItem(expected, name);
    cp_s2s_options opt = fixture_options(path);
    cp_s2s_dataset ds;
    CHECK_OK(cp_s2s_dataset_load(&ds, tok, &opt));
    const cJSON *src = cJSON_GetObjectItem(w, "source_ids"), *tgt = cJSON_GetObjectItem(w, "target_ids");
    CHECK(ds.n == cJSON_GetArraySize(src), "%s %s: %" PRId64 " records", name, path, ds.n);
    int64_t i = 0;
    for (const cJSON *s = src->child, *t = tgt->child; s && t && i < ds.n; s = s->next, t = t->next, i++) {
        same_ids32(ds.examples[i].src, ds.examples[i].n_src, s, "source", i);
        same_ids32(ds.examples[i].tgt, ds.examples[i].n_tgt, t, "target", i);
        CHECK(ds.examples[i].line == i + 2 - (strstr(path, ".jsonl") != NULL), "%s line %" PRId64, path, ds.examples[i].line);
    }
    CHECK(ds.n_truncated_source == (int64_t)cJSON_GetObjectItem(w, "n_truncated_source")->valuedouble &&
          ds.n_truncated_target == (int64_t)cJSON_GetObjectItem(w, "n_truncated_target")->valuedouble,
          "%s %s: truncated %" PRId64 " / %" PRId64, name, path, ds.n_truncated_source, ds.n_truncated_target);
    int64_t pad = (int64_t)cJSON_GetObjectItem(w, "pad_id")->valuedouble;
    int64_t start = (int64_t)cJSON_GetObjectItem(w, "decoder_start_token_id")->valuedouble;
    CHECK(pad == cp_tokenizer_special_id(tok, CP_SPECIAL_PAD), "%s pad id", name);
    cp_s2s_batch b = {0};
    for (const cJSON *bt = cJSON_GetObjectItem(w, "batches")->child; bt; bt = bt->next) {
        int64_t s0 = (int64_t)cJSON_GetObjectItem(bt, "start")->valuedouble;
        int64_t B = (int64_t)cJSON_GetObjectItem(bt, "size")->valuedouble;
        CHECK_OK(cp_s2s_batch_make(&ds, NULL, s0, B, pad, &b));
        CHECK(b.B == B, "batch size");
        same_rows(b.input_ids, b.B, b.T, cJSON_GetObjectItem(bt, "input_ids"), "input_ids");
        same_rows(b.attention_mask, b.B, b.T, cJSON_GetObjectItem(bt, "attention_mask"), "attention_mask");
        same_rows(b.labels, b.B, b.Td, cJSON_GetObjectItem(bt, "labels"), "labels");
        int64_t *dec = malloc((size_t)(b.B * b.Td) * sizeof *dec);
        CHECK_OK(cp_shift_tokens_right(b.labels, b.B, b.Td, pad, start, dec));
        same_rows(dec, b.B, b.Td, cJSON_GetObjectItem(bt, "decoder_input_ids"), "decoder_input_ids");
        free(dec);
    }
    /* a shuffled order picks the same rows */
    int64_t order[3] = {6, 1, 3};
    CHECK_OK(cp_s2s_batch_make(&ds, order, 0, 3, pad, &b));
    CHECK(b.B == 3 && b.T == ds.examples[6].n_src && b.input_ids[b.T] == ds.examples[1].src[0] &&
          b.labels[2 * b.Td] == ds.examples[3].tgt[0], "ordered batch");
    cp_s2s_batch_free(&b);
    cp_s2s_dataset_free(&ds);
}

TEST(t5_and_bart_templates_match_transformers_from_jsonl_csv_tsv) {
    const char *files[3] = {DIR "records.jsonl", DIR "records.csv", DIR "records.tsv"};
    for (int k = 0; k < 3; k++) {
        check_tokenizer_case(t5, "t5", files[k]);
        check_tokenizer_case(roberta, "roberta", files[k]);
    }
}

TEST(e2e_devset_matches_transformers) {
    const cJSON *w = cJSON_GetObjectItem(expected, "e2e");
    int64_t L = (int64_t)cJSON_GetObjectItem(w, "max_length")->valuedouble;
    cp_s2s_options opt = {.path = cJSON_GetObjectItem(w, "path")->valuestring, .source_field = "mr",
                          .target_field = "ref", .max_source_length = L, .max_target_length = L};
    cp_s2s_dataset ds;
    CHECK_OK(cp_s2s_dataset_load(&ds, t5, &opt));
    CHECK(ds.n == (int64_t)cJSON_GetObjectItem(w, "n")->valuedouble, "records %" PRId64, ds.n);
    CHECK(ds.n_source_tokens == (int64_t)cJSON_GetObjectItem(w, "n_source_tokens")->valuedouble &&
          ds.n_target_tokens == (int64_t)cJSON_GetObjectItem(w, "n_target_tokens")->valuedouble,
          "token sums %" PRId64 " / %" PRId64, ds.n_source_tokens, ds.n_target_tokens);
    CHECK(ds.n_truncated_source == (int64_t)cJSON_GetObjectItem(w, "n_truncated_source")->valuedouble &&
          ds.n_truncated_target == (int64_t)cJSON_GetObjectItem(w, "n_truncated_target")->valuedouble,
          "truncated %" PRId64 " / %" PRId64, ds.n_truncated_source, ds.n_truncated_target);
    int64_t i = 0;
    const cJSON *s = cJSON_GetObjectItem(w, "source_ids")->child, *t = cJSON_GetObjectItem(w, "target_ids")->child;
    for (; s && t && i < ds.n; s = s->next, t = t->next, i++) {
        same_ids32(ds.examples[i].src, ds.examples[i].n_src, s, "e2e source", i);
        same_ids32(ds.examples[i].tgt, ds.examples[i].n_tgt, t, "e2e target", i);
    }
    printf("  %s: %" PRId64 " records, %" PRId64 " / %" PRId64 " source / target tokens, %" PRId64 " / %" PRId64
           " truncated to %" PRId64 "\n", opt.path, ds.n, ds.n_source_tokens, ds.n_target_tokens, ds.n_truncated_source,
           ds.n_truncated_target, L);
    cp_s2s_dataset_free(&ds);
    /* strict: the first record over the limit is an error naming it */
    opt.strict = 1;
    CHECK_ERR(cp_s2s_dataset_load(&ds, t5, &opt), "devset.csv:");
    CHECK(strstr(cp_last_error(), "max_source_length 64") && strstr(cp_last_error(), "\"mr\""), "%s", cp_last_error());
    cp_s2s_dataset_free(&ds);
}

/* Loads text as PATH with the fixture's fields and expects an error containing needle. */
static void expect_error(const char *path, const char *text, const char *needle) {
    cp_s2s_options opt = fixture_options(path);
    cp_s2s_dataset ds;
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, t5, &opt, text, strlen(text)), needle);
    CHECK(ds.n == 0 && ds.examples == NULL, "dataset left empty on error");
}

TEST(bad_records_are_errors_naming_file_line_and_field) {
    const char *ok = "{\"document\": \"a b\", \"summary\": \"c\"}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s\n%s{\"document\": \"x\"}\n", ok, ok);
    expect_error("d.jsonl", buf, "d.jsonl:4: missing field \"summary\" (the target)");
    snprintf(buf, sizeof buf, "%s{\"summary\": \"x\", \"doc\": \"y\"}\n", ok);
    expect_error("d.jsonl", buf, "d.jsonl:2: missing field \"document\" (the source)");
    expect_error("d.jsonl", "{\"document\": \"a\", \"summary\": null}", "d.jsonl:1: missing field \"summary\"");
    expect_error("d.jsonl", "{\"document\": \"a\", \"summary\": 3}", "field \"summary\" (the target) is a number");
    expect_error("d.jsonl", "{\"document\": [\"a\"], \"summary\": \"b\"}", "field \"document\" (the source) is an array");
    expect_error("d.jsonl", "{\"document\": \"\", \"summary\": \"b\"}", "d.jsonl:1: field \"document\" (the source) is empty");
    expect_error("d.jsonl", "{\"document\": \"a\", \"summary\": \"\"}", "d.jsonl:1: field \"summary\" (the target) is empty");
    expect_error("d.jsonl", "{\"document\": \"a\", \"summary\": \" \\t \"}", "d.jsonl:1: field \"summary\" (the target) has no tokens");
    expect_error("d.jsonl", "[1, 2]\n", "d.jsonl:1: record is an array");
    snprintf(buf, sizeof buf, "%s{\"document\": \"a\", \"summ", ok);
    expect_error("d.jsonl", buf, "d.jsonl:2: not a JSON object on one line");
    expect_error("d.jsonl", "\n  \n", "d.jsonl: no records");
    expect_error("d.csv", "", "d.csv: the file is empty");
    expect_error("d.csv", "document,text\na,b\n", "d.csv:1: no column \"summary\" in the header (its columns: \"document\", \"text\")");
    expect_error("d.tsv", "source\ttarget\na\tb\n", "no column \"document\"");
    expect_error("d.csv", "document,summary\na,b\nc\n", "d.csv:3: the record has 1 field, the header 2");
    expect_error("d.csv", "document,summary\na,b,c\n", "an unquoted delimiter inside a field?");
    expect_error("d.csv", "document,summary\n\"a,b\n", "d.csv:2");
    expect_error("d.csv", "document,summary\n,b\n", "d.csv:2: field \"document\" (the source) is empty");
    expect_error("d.txt", "a b", "cannot tell the format");
    expect_error("d.jsonl", "{\"document\": \"a\xff\", \"summary\": \"b\"}", "UTF-8");
    cp_s2s_options opt = fixture_options("d.jsonl");
    opt.max_target_length = 1;
    cp_s2s_dataset ds;
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, t5, &opt, ok, strlen(ok)), "max_target_length 1 leaves no room");
    opt = fixture_options("d.jsonl");
    opt.max_source_length = 2;
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, roberta, &opt, ok, strlen(ok)), "max_source_length 2 leaves no room");
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, NULL, &opt, ok, strlen(ok)), "no tokenizer");
    opt.path = "tests/fixtures/s2s_data/absent.jsonl";
    CHECK_ERR(cp_s2s_dataset_load(&ds, t5, &opt), "absent.jsonl");
    int64_t lab[2] = {5, -100}, out[2];
    CHECK_ERR(cp_shift_tokens_right(lab, 1, 2, 0, -1, out), "decoder_start_token_id has to be defined");
    CHECK_ERR(cp_shift_tokens_right(lab, 1, 2, -1, 0, out), "pad_token_id has to be defined");
    cp_s2s_batch b = {0};
    opt = fixture_options("d.jsonl");
    CHECK_OK(cp_s2s_dataset_load_mem(&ds, t5, &opt, ok, strlen(ok)));
    CHECK_ERR(cp_s2s_batch_make(&ds, NULL, 1, 2, 0, &b), "outside the 1 examples");
    CHECK_ERR(cp_s2s_batch_make(&ds, NULL, 0, 2, -1, &b), "no pad token id");
    int64_t bad_order[1] = {7};
    CHECK_ERR(cp_s2s_batch_make(&ds, bad_order, 0, 1, 0, &b), "example index 7");
    cp_s2s_batch_free(&b);
    cp_s2s_dataset_free(&ds);
}

TEST(defaults_and_strict_truncation) {
    /* default fields "source" / "target", no prefix; a null source_prefix adds nothing */
    const char *text = "{\"source\": \"hello world\", \"target\": \"hi\"}\n";
    cp_s2s_options opt = {.path = "x.jsonl", .max_source_length = 64, .max_target_length = 64};
    cp_s2s_dataset ds;
    CHECK_OK(cp_s2s_dataset_load_mem(&ds, t5, &opt, text, strlen(text)));
    cp_encoding e = {0};
    CHECK_OK(cp_tokenizer_encode(t5, "hello world", 11, 1, &e));
    CHECK(ds.n == 1 && ds.examples[0].n_src == (int64_t)e.n && !memcmp(ds.examples[0].src, e.ids, e.n * sizeof *e.ids),
          "source = tokenizer(text) with its </s>");
    CHECK(ds.examples[0].tgt[ds.examples[0].n_tgt - 1] == cp_tokenizer_special_id(t5, CP_SPECIAL_EOS), "target ends in </s>");
    cp_s2s_dataset_free(&ds);
    /* strict: a target over max_target_length names the line and field */
    opt.max_target_length = 2;
    opt.strict = 1;
    const char *two = "{\"source\": \"a\", \"target\": \"b\"}\n{\"source\": \"a\", \"target\": \"hello world again\"}\n";
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, t5, &opt, two, strlen(two)), "x.jsonl:2: field \"target\" (the target) is");
    CHECK(strstr(cp_last_error(), "max_target_length 2"), "%s", cp_last_error());
    opt.strict = 0;
    CHECK_OK(cp_s2s_dataset_load_mem(&ds, t5, &opt, two, strlen(two)));
    CHECK(ds.n_truncated_target == 1 && ds.examples[1].n_tgt == 2 &&
          ds.examples[1].tgt[1] == cp_tokenizer_special_id(t5, CP_SPECIAL_EOS), "truncated, the </s> kept");
    cp_s2s_dataset_free(&ds);
    e.n = 0;
    cp_encoding_free(&e);
}

TEST(a_tokenizer_without_template_gets_its_eos_appended) {
    cp_tokenizer *wl = NULL;
    CHECK_OK(cp_tokenizer_load_file(&wl, "tests/fixtures/tokenizers/misc-wordlevel/tokenizer.json"));
    if (!wl) return;
    const char *text = "{\"source\": \"the and of to\", \"target\": \"the a\"}\n";
    cp_s2s_options opt = {.path = "w.jsonl", .max_source_length = 3, .max_target_length = 8};
    cp_s2s_dataset ds;
    CHECK_ERR(cp_s2s_dataset_load_mem(&ds, wl, &opt, text, strlen(text)), "no eos token");
    CHECK_OK(cp_tokenizer_set_special(wl, CP_SPECIAL_EOS, "<pad>"));
    CHECK_OK(cp_s2s_dataset_load_mem(&ds, wl, &opt, text, strlen(text)));
    int32_t eos = cp_tokenizer_special_id(wl, CP_SPECIAL_EOS);
    CHECK(ds.n == 1 && ds.examples[0].n_src == 3 && ds.examples[0].src[2] == eos && ds.n_truncated_source == 1,
          "source cut to 2 tokens + eos");
    CHECK(ds.examples[0].n_tgt >= 2 && ds.examples[0].tgt[ds.examples[0].n_tgt - 1] == eos && ds.n_truncated_target == 0,
          "target + eos");
    cp_s2s_dataset_free(&ds);
    cp_tokenizer_free(wl);
}

/* Mutated and cut copies of the fixture files: every load either succeeds with sane examples or fails
 * with a message naming the file, and never crashes. */
TEST(mutated_and_truncated_files_never_crash) {
    const char *files[3] = {DIR "records.jsonl", DIR "records.csv", DIR "records.tsv"};
    const char *names[3] = {"m.jsonl", "m.csv", "m.tsv"};
    static const char inject[] = "\"\n\t,{}[]:\\\x00\xff\xc3";
    cp_rng rng;
    cp_rng_seed(&rng, 11);
    int64_t loads = 0, errors = 0, bad_msgs = 0, bad_examples = 0;
    cp_set_quiet(1);
    for (int k = 0; k < 3; k++) {
        char *text = NULL;
        size_t len = 0;
        CHECK_OK(cp_read_file(files[k], &text, &len));
        if (!text) continue;
        char *m = malloc(len + 1);
        for (int it = 0; it < 400; it++) {
            memcpy(m, text, len);
            size_t n = len;
            if (it % 4 == 0) n = cp_rng_below(&rng, len + 1); /* cut anywhere */
            int edits = 1 + (int)(cp_rng_below(&rng, 4));
            for (int e = 0; e < edits && n; e++)
                m[cp_rng_below(&rng, n)] = inject[cp_rng_below(&rng, sizeof inject - 1)];
            cp_s2s_options opt = fixture_options(names[k]);
            opt.strict = it & 1;
            cp_s2s_dataset ds;
            loads++;
            if (cp_s2s_dataset_load_mem(&ds, it & 2 ? roberta : t5, &opt, m, n) != CP_OK) {
                errors++;
                bad_msgs += !strstr(cp_last_error(), names[k]);
                continue;
            }
            for (int64_t i = 0; i < ds.n; i++) {
                const cp_s2s_example *ex = &ds.examples[i];
                bad_examples += ex->n_src < 2 || ex->n_src > opt.max_source_length || ex->n_tgt < 2 ||
                                ex->n_tgt > opt.max_target_length;
            }
            cp_s2s_batch b = {0};
            if (cp_s2s_batch_make(&ds, NULL, 0, ds.n, 0, &b) != CP_OK) bad_examples++;
            cp_s2s_batch_free(&b);
            cp_s2s_dataset_free(&ds);
        }
        free(m);
        cp_free(text);
    }
    cp_set_quiet(0);
    printf("  %" PRId64 " mutated files: %" PRId64 " errors, %" PRId64 " loaded\n", loads, errors, loads - errors);
    CHECK(errors > 0 && errors < loads, "both outcomes happen (%" PRId64 " / %" PRId64 ")", errors, loads);
    CHECK(bad_msgs == 0, "%" PRId64 " errors do not name the file", bad_msgs);
    CHECK(bad_examples == 0, "%" PRId64 " loaded examples break the length bounds", bad_examples);
}

int main(void) {
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(DIR "expected.json", &text, &len) != CP_OK ||
        cp_json_parse(text, len, DIR "expected.json", &expected) != CP_OK ||
        cp_tokenizer_load_file(&t5, "tests/fixtures/tokenizers/t5/tokenizer.json") != CP_OK ||
        cp_tokenizer_load_file(&roberta, "tests/fixtures/tokenizers/roberta/tokenizer.json") != CP_OK) {
        fprintf(stderr, "cannot read the fixtures: %s\n", cp_last_error());
        return 1;
    }
    cp_free(text);
    /* tokenizer.json alone names no pad / eos roles: set them as the fixture's PreTrainedTokenizerFast did */
    if (cp_tokenizer_set_special(t5, CP_SPECIAL_PAD, "<pad>") || cp_tokenizer_set_special(t5, CP_SPECIAL_EOS, "</s>") ||
        cp_tokenizer_set_special(roberta, CP_SPECIAL_PAD, "<pad>") || cp_tokenizer_set_special(roberta, CP_SPECIAL_EOS, "</s>")) {
        fprintf(stderr, "%s\n", cp_last_error());
        return 1;
    }
    RUN(t5_and_bart_templates_match_transformers_from_jsonl_csv_tsv);
    RUN(e2e_devset_matches_transformers);
    RUN(bad_records_are_errors_naming_file_line_and_field);
    RUN(defaults_and_strict_truncation);
    RUN(a_tokenizer_without_template_gets_its_eos_appended);
    RUN(mutated_and_truncated_files_never_crash);
    cJSON_Delete(expected);
    cp_tokenizer_free(t5);
    cp_tokenizer_free(roberta);
    return test_summary();
}
