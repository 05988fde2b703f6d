/*
 * test_class_data.c — classification data (src/train/csv_reader.c, labels.c, class_data.c,
 * token_data.c): CSV / TSV records against what Python's csv module reads (tests/fixtures/class/
 * csv.json), word tokenization and first-sub-token labels against transformers' is_split_into_words
 * word_ids() for BERT uncased and GPT-2 (words.json), pair truncation ("longest_first") and
 * token_type_ids, label sets (sorted names, 0..max indices, regression, multi-label), CoNLL (TAB and
 * space columns, TAB-only sentence breaks, -DOCSTART-, CRLF) and the real WNUT-17 and SST-2 files,
 * truncation counts, padded batches, and every bad input as an error naming file:line.
 */
#include "test.h"
#include "train/class_data.h"
#include "train/csv_reader.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <unistd.h>

#define SHARED "../shared/data/"
#define BERT_TOKENIZER "tests/fixtures/tokenizers/bert-uncased/tokenizer.json"
#define GPT2_TOKENIZER SHARED "gpt2-tokenizer/tokenizer.json"

static cp_tokenizer *bert, *gpt2;
static char tmpdir[64];

static const char *write_tmp(const char *name, const char *text) {
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f) { fwrite(text, 1, strlen(text), f); fclose(f); }
    return p;
}

static cp_class_options seq_opts(const char *path, int64_t max_len) {
    return (cp_class_options){.path = path, .task = CP_CLASS_SEQ, .max_seq_length = max_len, .add_prefix_space = -1};
}
static cp_class_options tok_opts(const char *path, int64_t max_len) {
    return (cp_class_options){.path = path, .task = CP_CLASS_TOKEN, .max_seq_length = max_len, .add_prefix_space = -1};
}

/* ---- CSV ------------------------------------------------------------------------------------------ */

TEST(csv_matches_python_csv) {
    cJSON *fx;
    CHECK_OK(cp_json_read_file("tests/fixtures/class/csv.json", &fx));
    if (!fx) return;
    int cases = 0;
    for (const cJSON *c = fx->child; c; c = c->next, cases++) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring, *text = cJSON_GetObjectItem(c, "text")->valuestring;
        cp_csv_reader r;
        cp_csv_init(&r, text, strlen(text), cJSON_GetObjectItem(c, "delimiter")->valuestring[0]);
        const cJSON *rows = cJSON_GetObjectItem(c, "rows");
        int nr = 0;
        for (const cJSON *row = rows->child; row; row = row->next, nr++) {
            int got = cp_csv_next(&r, name);
            CHECK(got == 1, "%s: record %d missing", name, nr);
            if (got != 1) break;
            CHECK((int)r.nf == cJSON_GetArraySize(row), "%s record %d: %zu fields, csv %d", name, nr, r.nf,
                  cJSON_GetArraySize(row));
            int f = 0;
            for (const cJSON *x = row->child; x && f < (int)r.nf; x = x->next, f++)
                CHECK(strcmp(cp_csv_field(&r, (size_t)f), x->valuestring) == 0, "%s record %d field %d: [%s] vs csv [%s]",
                      name, nr, f, cp_csv_field(&r, (size_t)f), x->valuestring);
        }
        CHECK(cp_csv_next(&r, name) == 0, "%s: extra record", name);
        cp_csv_free(&r);
    }
    CHECK(cases >= 10, "cases %d", cases);
    cJSON_Delete(fx);
}

TEST(csv_record_lines_and_unterminated_quote) {
    const char *text = "h1,h2\n\"a\nb\",1\n\nc,2\n";
    cp_csv_reader r;
    cp_csv_init(&r, text, strlen(text), ',');
    CHECK(cp_csv_next(&r, "x.csv") == 1 && r.rec_line == 1, "header at line 1");
    CHECK(cp_csv_next(&r, "x.csv") == 1 && r.rec_line == 2, "record at line 2 (%lld)", (long long)r.rec_line);
    CHECK(cp_csv_next(&r, "x.csv") == 1 && r.rec_line == 5, "record after a blank line at line 5 (%lld)", (long long)r.rec_line);
    cp_csv_free(&r);
    const char *bad = "h1,h2\nok,1\n\"never closed,2\nmore\n";
    cp_csv_init(&r, bad, strlen(bad), ',');
    CHECK(cp_csv_next(&r, "bad.csv") == 1 && cp_csv_next(&r, "bad.csv") == 1, "first records");
    cp_clear_error();
    CHECK(cp_csv_next(&r, "bad.csv") == -1, "unterminated quote");
    CHECK(strstr(cp_last_error(), "bad.csv:3: a quoted field opened here is never closed"), "%s", cp_last_error());
    cp_csv_free(&r);
}

/* ---- SEQ_CLS -------------------------------------------------------------------------------------- */

TEST(seq_labels_sorted_names_and_batches) {
    const char *p = write_tmp("names.tsv", "sentence\tlabel\r\ngood film\tpos\r\nbad film\tneg\r\n\"so-so, \"\"meh\"\"\"\tneutral\r\n"
                                           "great\tpos\r\n");
    cp_class_dataset ds;
    cp_label_set set = {0};
    cp_class_options o = seq_opts(p, 32);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(set.n == 3 && set.kind == CP_LABELS_NAMES, "n %lld", (long long)set.n);
    if (set.n == 3) CHECK(!strcmp(set.names[0], "neg") && !strcmp(set.names[1], "neutral") && !strcmp(set.names[2], "pos"),
                          "sorted names");
    CHECK(ds.n == 4 && ds.problem == CP_PROBLEM_SINGLE_LABEL && ds.num_labels == 3, "n %lld", (long long)ds.n);
    if (ds.n != 4) goto out;
    int64_t want[] = {2, 0, 1, 2}, lines[] = {2, 3, 4, 5};
    for (int i = 0; i < 4; i++)
        CHECK(ds.examples[i].labels[0] == want[i] && ds.examples[i].line == lines[i], "example %d: label %lld line %lld", i,
              (long long)ds.examples[i].labels[0], (long long)ds.examples[i].line);
    /* the quoted field reads as csv reads it: so-so, "meh" */
    cp_encoding e = {0};
    CHECK_OK(cp_tokenizer_encode(bert, "so-so, \"meh\"", 12, 1, &e));
    CHECK(e.n == (size_t)ds.examples[2].len && !memcmp(e.ids, ds.examples[2].ids, e.n * sizeof *e.ids), "quoted text");
    cp_encoding_free(&e);
    cp_class_batch b = {0};
    int64_t order[] = {3, 2};
    CHECK_OK(cp_class_batch_make(&ds, order, 0, 2, 0, &b));
    CHECK(b.B == 2 && b.T == ds.examples[2].len && b.labels && !b.label_values, "batch B %lld T %lld", (long long)b.B,
          (long long)b.T);
    CHECK(b.labels[0] == 2 && b.labels[1] == 1, "batch labels");
    for (int64_t t = 0; t < b.T; t++) {
        int real = t < ds.examples[3].len;
        CHECK(b.attention_mask[t] == real && (real || (b.input_ids[t] == 0 && b.token_type_ids[t] == 0)), "pad at %lld",
              (long long)t);
        CHECK(b.attention_mask[b.T + t] == 1, "longest row unpadded");
    }
    CHECK_OK(cp_class_batch_make(&ds, NULL, 3, 8, 0, &b));
    CHECK(b.B == 1, "last batch has %lld", (long long)b.B);
    CHECK_ERR(cp_class_batch_make(&ds, NULL, 4, 1, 0, &b), "outside the 4 examples");
    cp_class_batch_free(&b);
    /* eval data with a label outside the set */
    cp_class_dataset ev;
    const char *pe = write_tmp("eval.tsv", "sentence\tlabel\nfine\tpos\nodd\tmixed\n");
    o = seq_opts(pe, 32);
    CHECK_ERR(cp_class_dataset_load(&ev, &set, bert, &o), "eval.tsv:3: label \"mixed\" is not in the label set (neg, neutral, pos, from ");
    CHECK(ev.n == 0 && set.n == 3, "eval error leaves the set");
out:
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);
}

TEST(seq_integer_regression_multilabel) {
    cp_class_dataset ds;
    cp_label_set set = {0};
    cp_class_options o = seq_opts(write_tmp("ints.csv", "text,label\na,0\nb,2\nc,0\n"), 16);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(set.kind == CP_LABELS_INDICES && set.n == 3 && ds.num_labels == 3, "0..max: n %lld", (long long)set.n);
    if (ds.n == 3) CHECK(ds.examples[1].labels[0] == 2, "index label");
    cp_class_dataset_free(&ds);
    cp_class_dataset ev;
    o = seq_opts(write_tmp("ints_eval.csv", "text,label\na,1\nb,3\n"), 16);
    CHECK_ERR(cp_class_dataset_load(&ev, &set, bert, &o), "ints_eval.csv:3: label \"3\" is not in the label set (0..2");
    cp_label_set_free(&set);
    o = seq_opts(write_tmp("neg.csv", "text,label\na,0\nb,-1\n"), 16);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "neg.csv:3: label -1 is negative");

    o = seq_opts(write_tmp("reg.jsonl", "{\"text\": \"a\", \"label\": 0.5}\n\n{\"text\": \"b\", \"label\": 3}\n"), 16);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(ds.problem == CP_PROBLEM_REGRESSION && set.n == 1 && ds.n == 2, "regression");
    if (ds.n == 2) CHECK(ds.examples[0].values[0] == 0.5f && ds.examples[1].values[0] == 3.0f && ds.examples[1].line == 3,
                         "values");
    cp_class_batch b = {0};
    CHECK_OK(cp_class_batch_make(&ds, NULL, 0, 2, 0, &b));
    CHECK(!b.labels && b.label_values && b.label_values[1] == 3.0f, "regression batch values (B)");
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);

    o = seq_opts(write_tmp("multi.jsonl", "{\"text\": \"a\", \"label\": [\"x\", \"z\"]}\n{\"text\": \"b\", \"label\": []}\n"
                                          "{\"text\": \"c\", \"label\": [\"y\"]}\n"), 16);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(ds.problem == CP_PROBLEM_MULTI_LABEL && set.n == 3, "multi-label K %lld", (long long)set.n);
    CHECK_OK(cp_class_batch_make(&ds, NULL, 0, 3, 0, &b));
    float want[9] = {1, 0, 1, 0, 0, 0, 0, 1, 0};
    CHECK(b.K == 3 && b.label_values && !memcmp(b.label_values, want, sizeof want), "multi-hot (B,K)");
    cp_class_batch_free(&b);
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);
    o = seq_opts(write_tmp("mixed.jsonl", "{\"text\": \"a\", \"label\": [\"x\"]}\n{\"text\": \"b\", \"label\": \"y\"}\n"), 16);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "mixed.jsonl:2: the label is not a list");
}

/* Writes a TSV of one pair record and loads it with the pair field: the example's ids (and type ids). */
static void check_pair(cp_tokenizer *tok, const char *tname, const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *b = cJSON_GetObjectItem(c, "b");
    int64_t m = (int64_t)cJSON_GetObjectItem(c, "max_length")->valuedouble;
    char text[512];
    snprintf(text, sizeof text, "a\tb\tlabel\n%s\t%s\t1\n", cJSON_GetObjectItem(c, "a")->valuestring,
             cJSON_IsString(b) ? b->valuestring : "");
    cp_class_options o = seq_opts(write_tmp("pair.tsv", text), m ? m : 512);
    o.text_field = "a";
    o.text_pair_field = cJSON_IsString(b) ? "b" : NULL;
    cp_class_dataset ds;
    cp_label_set set = {0};
    CHECK_OK(cp_class_dataset_load(&ds, &set, tok, &o));
    if (ds.n != 1) { CHECK(0, "%s %s: no example", tname, name); return; }
    const cp_class_example *ex = &ds.examples[0];
    const cJSON *ids = cJSON_GetObjectItem(c, "input_ids"), *tt = cJSON_GetObjectItem(c, "token_type_ids");
    CHECK(ex->len == cJSON_GetArraySize(ids), "%s %s: %lld tokens, transformers %d", tname, name, (long long)ex->len,
          cJSON_GetArraySize(ids));
    int t = 0;
    for (const cJSON *x = ids->child; x && t < ex->len; x = x->next, t++)
        CHECK(ex->ids[t] == (int32_t)x->valuedouble, "%s %s: id %d", tname, name, t);
    t = 0;
    for (const cJSON *x = cJSON_IsArray(tt) ? tt->child : NULL; x && t < ex->len; x = x->next, t++)
        CHECK(ex->type_ids[t] == (uint8_t)x->valuedouble, "%s %s: type id %d", tname, name, t);
    CHECK(ds.n_truncated == (m > 0 && !strcmp(name, "short") ? 0 : m > 0), "%s %s: truncated %lld", tname, name,
          (long long)ds.n_truncated);
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);
}

/* Writes the words as a JSONL sentence whose tag of word w is w, loads it as TOKEN_CLS: the labels must
 * then be exactly run_ner.py's (word index on first sub-tokens, -100 elsewhere). */
static void check_words(cp_tokenizer *tok, const char *tname, const cJSON *c) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *words = cJSON_GetObjectItem(c, "words");
    int64_t m = (int64_t)cJSON_GetObjectItem(c, "max_length")->valuedouble;
    cJSON *rec = cJSON_CreateObject(), *tags = cJSON_CreateArray();
    cJSON_AddItemToObject(rec, "tokens", cJSON_Duplicate(words, 1));
    for (int i = 0; i < cJSON_GetArraySize(words); i++) cJSON_AddItemToArray(tags, cJSON_CreateNumber(i));
    cJSON_AddItemToObject(rec, "ner_tags", tags);
    char *line = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    cp_class_options o = tok_opts(write_tmp("words.jsonl", line), m ? m : 512);
    free(line);
    cp_class_dataset ds;
    cp_label_set set = {0};
    CHECK_OK(cp_class_dataset_load(&ds, &set, tok, &o));
    if (ds.n != 1) { CHECK(0, "%s %s: no example", tname, name); return; }
    const cp_class_example *ex = &ds.examples[0];
    const cJSON *ids = cJSON_GetObjectItem(c, "input_ids"), *labels = cJSON_GetObjectItem(c, "labels");
    CHECK(ex->len == cJSON_GetArraySize(ids), "%s %s: %lld tokens, transformers %d", tname, name, (long long)ex->len,
          cJSON_GetArraySize(ids));
    int t = 0;
    for (const cJSON *x = ids->child, *y = labels->child; x && y && t < ex->len; x = x->next, y = y->next, t++) {
        CHECK(ex->ids[t] == (int32_t)x->valuedouble, "%s %s: id %d: %d vs %d", tname, name, t, ex->ids[t],
              (int)x->valuedouble);
        CHECK(ex->labels[t] == (int64_t)y->valuedouble, "%s %s: label %d: %lld vs %d", tname, name, t,
              (long long)ex->labels[t], (int)y->valuedouble);
    }
    CHECK(ds.n_truncated == cJSON_IsTrue(cJSON_GetObjectItem(c, "truncated")), "%s %s: truncated %lld", tname, name,
          (long long)ds.n_truncated);
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "truncated"))) { /* strict: the same sentence is an error */
        o.strict = 1;
        cp_class_dataset d2;
        cp_label_set s2 = {0};
        CHECK_ERR(cp_class_dataset_load(&d2, &s2, tok, &o), "words.jsonl:1: the sentence has");
    }
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);
}

TEST(words_and_pairs_match_transformers) {
    cJSON *fx;
    CHECK_OK(cp_json_read_file("tests/fixtures/class/words.json", &fx));
    if (!fx) return;
    int n = 0;
    for (int k = 0; k < 2; k++) {
        const char *tname = k ? "gpt2" : "bert-uncased";
        const cJSON *t = cJSON_GetObjectItem(fx, tname);
        for (const cJSON *c = cJSON_GetObjectItem(t, "words")->child; c; c = c->next, n++) check_words(k ? gpt2 : bert, tname, c);
        for (const cJSON *c = cJSON_GetObjectItem(t, "pairs")->child; c; c = c->next, n++) check_pair(k ? gpt2 : bert, tname, c);
    }
    CHECK(n >= 24, "cases %d", n);
    cJSON_Delete(fx);
}

/* ---- TOKEN_CLS files ------------------------------------------------------------------------------ */

TEST(conll_formats_and_labels) {
    const char *text = "-DOCSTART- -X- -X- O\r\n\r\nEU\tB-ORG\r\nrejects\tO\r\n\t\r\nPeter\tB-PER\r\nBlackburn\tI-PER\r\n\r\n\r\n"
                       "Rome\tB-LOC";
    cp_class_dataset ds;
    cp_label_set set = {0};
    cp_class_options o = tok_opts(write_tmp("a.conll", text), 64);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(ds.n == 3 && set.n == 5, "3 sentences (%lld), 5 tags (%lld)", (long long)ds.n, (long long)set.n);
    const char *sorted[] = {"B-LOC", "B-ORG", "B-PER", "I-PER", "O"};
    for (int i = 0; i < 5 && set.n == 5; i++) CHECK(!strcmp(set.names[i], sorted[i]), "tag %d %s", i, set.names[i]);
    if (ds.n == 3) {
        CHECK(ds.examples[0].line == 3 && ds.examples[1].line == 6 && ds.examples[2].line == 10, "sentence lines");
        const cp_class_example *ex = &ds.examples[0]; /* [CLS] eu rejects [SEP]: rejects is one token */
        CHECK(ex->len == 4 && ex->labels[0] == -100 && ex->labels[1] == 1 && ex->labels[2] == 4 && ex->labels[3] == -100,
              "labels of sentence 1");
        cp_class_batch b = {0};
        CHECK_OK(cp_class_batch_make(&ds, NULL, 0, 3, 0, &b));
        CHECK(b.labels && !b.label_values && b.labels[b.T * 2 + b.T - 1] == -100, "pads are -100");
        cp_class_batch_free(&b);
    }
    cp_class_dataset_free(&ds);
    /* space-separated columns (CoNLL-2003 style, tag last), eval against the set */
    o = tok_opts(write_tmp("b.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nRome NNP B-NP B-LOC\n"), 64);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(ds.n == 2 && ds.num_labels == 5, "space columns");
    cp_class_dataset_free(&ds);
    o = tok_opts(write_tmp("c.conll", "EU\tB-ORG\nx\tB-MISC\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "c.conll:2: tag \"B-MISC\" is not in the label set (B-LOC, B-ORG");
    cp_label_set_free(&set);
    o = tok_opts(write_tmp("d.conll", "EU\tB-ORG\nrejects\tO\n\nbad\tline\tO\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "d.conll:4: 3 columns, but line 1 has 2");
    o = tok_opts(write_tmp("e.conll", "EU\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "e.conll:1: 1 column");
    o = tok_opts(write_tmp("f.conll", "EU\tO\n\tO\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "f.conll:2: the token is empty");
    o = tok_opts(write_tmp("g.jsonl", "{\"tokens\": [\"a\"], \"ner_tags\": [\"O\"]}\n{\"tokens\": [\"a\", \"b\"], \"ner_tags\": [\"O\"]}\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "g.jsonl:2: 2 words but 1 tags");
    o = tok_opts(write_tmp("h.jsonl", "{\"tokens\": [\"a\"], \"ner_tags\": [1.5]}\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "h.jsonl:1: tag 1 of \"ner_tags\" is 1.5");
    o = tok_opts(write_tmp("i.tsv", "a\tb\n"), 64);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "TOKEN_CLS reads CoNLL files and word-labelled JSONL");
    CHECK(set.n == 0, "no set left after errors");
}

TEST(seq_bad_inputs_name_file_and_line) {
    cp_class_dataset ds;
    cp_label_set set = {0};
    cp_class_options o = seq_opts(write_tmp("p.jsonl", "{\"q\": \"a\", \"r\": \"b\", \"label\": 1}\n{\"q\": \"c\", \"label\": 0}\n"), 32);
    o.text_field = "q";
    o.text_pair_field = "r";
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "p.jsonl:2: missing field \"r\" (the pair field)");
    o = seq_opts(write_tmp("q.csv", "sentence,label\na,1\nb,1,2\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "q.csv:3: the record has 3 fields, the header 2");
    o = seq_opts(write_tmp("r.csv", "sentence,lab\na,1\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "r.csv:1: no column \"label\" in the header (its columns: \"sentence\", \"lab\")");
    o = seq_opts(write_tmp("s.csv", "sentence,label\n\"open,1\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "s.csv:2: a quoted field opened here is never closed");
    o = seq_opts(write_tmp("t.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": 5, \"label\": 1}\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "t.jsonl:2: field \"text\" is a number, expected a string");
    o = seq_opts(write_tmp("u.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"a\", \"label\": {}}\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "u.jsonl:2: field \"label\" is");
    o = seq_opts(write_tmp("v.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"a\"\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "v.jsonl:2: not a JSON object on one line");
    o = seq_opts(write_tmp("w.txt", "x\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "cannot tell the format");
    o = seq_opts(write_tmp("x.csv", "sentence,label\na,1\n"), 2);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "max_seq_length 2 leaves no room");
    o = seq_opts(write_tmp("y.csv", "sentence,label\n"), 32);
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "y.csv: no records");
    o = seq_opts(write_tmp("z.csv", "sentence,label\na,0.5\nb,pos\n"), 32);
    o.problem = CP_PROBLEM_REGRESSION;
    CHECK_ERR(cp_class_dataset_load(&ds, &set, bert, &o), "z.csv:3: label \"pos\" is not a number (regression)");
    CHECK(set.n == 0 && ds.n == 0, "nothing left after errors");
}

/* ---- the real files ------------------------------------------------------------------------------- */

TEST(sst2_and_wnut17_real_files) {
    cp_class_dataset ds;
    cp_label_set set = {0};
    cp_class_options o = seq_opts(SHARED "sst2/test.tsv", 64);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    int64_t pos = 0;
    for (int64_t i = 0; i < ds.n; i++) pos += ds.examples[i].labels[0];
    CHECK(ds.n == 872 && set.n == 2 && set.kind == CP_LABELS_INDICES && pos == 444, "SST-2 dev: %lld records, %lld positive",
          (long long)ds.n, (long long)pos);
    printf("  sst2/test.tsv: %lld records, %lld tokens, %lld truncated to 64\n", (long long)ds.n, (long long)ds.n_tokens,
           (long long)ds.n_truncated);
    cp_class_dataset_free(&ds);
    cp_label_set_free(&set);

    o = tok_opts(SHARED "wnut17/wnut17train.conll", 128);
    CHECK_OK(cp_class_dataset_load(&ds, &set, bert, &o));
    CHECK(ds.n == 3394 && set.n == 13, "WNUT-17 train: %lld sentences, %lld tags", (long long)ds.n, (long long)set.n);
    int64_t first = 0;
    for (int64_t i = 0; i < ds.n; i++)
        for (int64_t t = 0; t < ds.examples[i].len; t++) first += ds.examples[i].labels[t] >= 0;
    CHECK(first == 62730, "one label per word: %lld", (long long)first);
    printf("  wnut17train.conll: %lld sentences, %lld labelled words, %lld truncated to 128\n", (long long)ds.n,
           (long long)first, (long long)ds.n_truncated);
    cp_class_dataset_free(&ds);
    const char *evals[] = {SHARED "wnut17/emerging.dev.conll", SHARED "wnut17/emerging.test.annotated"};
    int64_t sentences[] = {1009, 1287};
    for (int k = 0; k < 2; k++) {
        o = tok_opts(evals[k], 128);
        CHECK_OK(cp_class_dataset_load(&ds, &set, gpt2, &o));
        CHECK(ds.n == sentences[k], "%s: %lld sentences", evals[k], (long long)ds.n);
        cp_class_dataset_free(&ds);
    }
    cp_label_set_free(&set);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft_class_XXXXXX");
    if (!mkdtemp(tmpdir) || cp_tokenizer_load_file(&bert, BERT_TOKENIZER) != CP_OK ||
        cp_tokenizer_load_file(&gpt2, GPT2_TOKENIZER) != CP_OK) {
        fprintf(stderr, "setup: %s\n", cp_last_error());
        return 1;
    }
    RUN(csv_matches_python_csv);
    RUN(csv_record_lines_and_unterminated_quote);
    RUN(seq_labels_sorted_names_and_batches);
    RUN(seq_integer_regression_multilabel);
    RUN(words_and_pairs_match_transformers);
    RUN(conll_formats_and_labels);
    RUN(seq_bad_inputs_name_file_and_line);
    RUN(sst2_and_wnut17_real_files);
    cp_tokenizer_free(bert);
    cp_tokenizer_free(gpt2);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return test_summary();
}
