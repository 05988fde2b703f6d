/*
 * test_sft_data.c — TRL's dataset formats in cp_dataset_load: the ids and labels TRL 1.16.0's
 * SFTTrainer prepares (tests/fixtures/sft/cases.json, tests/reference/make_sft_fixtures.py) for
 * text, prompt-completion (completion_only_loss on and off), conversational messages (with and without
 * assistant_only_loss) and conversational prompt-completion records, with a byte-level BPE tokenizer
 * and the llama fixture tokenizer; the same records from a JSON array, JSONL and CSV; and the errors
 * for bad records (file:line and what is wrong).
 */
#include "test.h"
#include "chat/chat_template.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "train/data.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/sft/"

static cp_tokenizer *chat_tok, *llama_tok;
static cJSON *cases;

static cp_chat_template *load_template(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/chat/templates/%s.jinja", name);
    char *text = NULL;
    size_t len = 0;
    cp_chat_template *t = NULL;
    if (cp_read_file(path, &text, &len) == CP_OK) cp_chat_template_parse(&t, text, len, path);
    cp_free(text);
    return t;
}

/* A JSON array of records as JSONL (one line each) or as the array itself. */
static char *records_text(const cJSON *records, int jsonl) {
    if (!jsonl) return cJSON_PrintUnformatted(records);
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    for (const cJSON *r = records->child; r; r = r->next) {
        char *line = cJSON_PrintUnformatted(r);
        size_t m = strlen(line);
        if (n + m + 2 > cap) s = realloc(s, cap = 2 * (n + m + 2));
        memcpy(s + n, line, m);
        n += m;
        s[n++] = '\n';
        free(line);
    }
    s[n] = '\0';
    return s;
}

/* Compares a loaded dataset with the case's examples; returns the number of mismatching tokens. */
static long compare(const cp_dataset *ds, const cJSON *examples, const char *name) {
    long bad = 0;
    int i = 0;
    CHECK(ds->n == cJSON_GetArraySize(examples), "%s: %lld examples, TRL %d", name, (long long)ds->n, cJSON_GetArraySize(examples));
    for (const cJSON *e = examples->child; e && i < ds->n; e = e->next, i++) {
        const cJSON *ids = cp_json_field(e, "input_ids"), *labels = cp_json_field(e, "labels");
        const cp_example *x = &ds->examples[i];
        int n = cJSON_GetArraySize(ids);
        CHECK(x->len == n, "%s example %d: %lld tokens, TRL %d", name, i, (long long)x->len, n);
        int t = 0;
        for (const cJSON *a = ids->child, *b = labels->child; a && b && t < x->len; a = a->next, b = b->next, t++) {
            if (x->ids[t] != (int64_t)a->valuedouble || x->labels[t] != (int64_t)b->valuedouble) {
                if (!bad) fprintf(stderr, "  %s example %d token %d: id %lld label %lld, TRL %d %d\n", name, i, t,
                                  (long long)x->ids[t], (long long)x->labels[t], (int)a->valuedouble, (int)b->valuedouble);
                bad++;
            }
        }
    }
    return bad;
}

static cp_status load(cp_dataset *ds, const cp_tokenizer *tok, const cp_chat_template *t, const char *path,
                      const char *text, int aol, int full) {
    cp_data_options o = {.path = path, .max_seq_length = 1024, .strict = 1, .chat_template = t,
                         .assistant_only_loss = aol, .full_loss = full};
    return cp_dataset_load_mem(ds, tok, &o, text, strlen(text));
}

TEST(trl_formats_match_sft_trainer) {
    int n_cases = 0;
    long bad = 0, tokens = 0;
    for (const cJSON *c = cp_json_field(cases, "cases")->child; c; c = c->next) {
        const char *name = cp_json_field(c, "name")->valuestring, *tname = cp_json_field(c, "tokenizer")->valuestring;
        const cJSON *tj = cp_json_field(c, "template");
        cp_chat_template *t = cJSON_IsString(tj) ? load_template(tj->valuestring) : NULL;
        const cp_tokenizer *tok = !strcmp(tname, "llama") ? llama_tok : chat_tok;
        int aol = cJSON_IsTrue(cp_json_field(c, "assistant_only_loss"));
        int full = !cJSON_IsTrue(cp_json_field(c, "completion_only_loss"));
        const cJSON *records = cp_json_field(c, "records"), *examples = cp_json_field(c, "examples");
        for (int jsonl = 0; jsonl < 2; jsonl++) {
            char *text = records_text(records, jsonl);
            char where[256];
            snprintf(where, sizeof where, "%s/%s (%s)", tname, name, jsonl ? "JSONL" : "JSON array");
            cp_dataset ds;
            if (load(&ds, tok, t, jsonl ? "data.jsonl" : "data.json", text, aol, full) != CP_OK) {
                CHECK(0, "%s: %s", where, cp_last_error());
            } else {
                bad += compare(&ds, examples, where);
                tokens += ds.n_tokens;
                n_cases++;
            }
            cp_dataset_free(&ds);
            free(text);
        }
        cp_chat_template_free(t);
    }
    printf("  %d loads (16 cases x JSON array / JSONL), %ld tokens: %ld ids or labels differ from TRL's\n", n_cases, tokens, bad);
    CHECK(bad == 0 && n_cases == 32, "%ld mismatches in %d loads", bad, n_cases);
}

/* The text and prompt-completion records as CSV / TSV (quoted fields, a field with a comma). */
TEST(csv_and_tsv_records_match) {
    long bad = 0;
    int loads = 0;
    for (const cJSON *c = cp_json_field(cases, "cases")->child; c; c = c->next) {
        const char *name = cp_json_field(c, "name")->valuestring;
        if (strcmp(name, "text") && strcmp(name, "prompt_completion")) continue;
        const cp_tokenizer *tok = !strcmp(cp_json_field(c, "tokenizer")->valuestring, "llama") ? llama_tok : chat_tok;
        for (int tsv = 0; tsv < 2; tsv++) {
            char text[4096];
            size_t o = 0;
            const char sep = tsv ? '\t' : ',';
            int pc = !strcmp(name, "prompt_completion");
            o += (size_t)snprintf(text + o, sizeof text - o, pc ? "id%cprompt%ccompletion\n" : "id%ctext\n", sep, sep);
            int k = 0;
            for (const cJSON *r = cp_json_field(c, "records")->child; r; r = r->next, k++) {
                o += (size_t)snprintf(text + o, sizeof text - o, "%d", k);
                for (const char *const *f = pc ? (const char *const[]){"prompt", "completion", NULL} : (const char *const[]){"text", NULL};
                     *f; f++) {
                    text[o++] = sep;
                    text[o++] = '"';
                    for (const char *s = cp_json_field(r, *f)->valuestring; *s; s++) {
                        if (*s == '"') text[o++] = '"';
                        text[o++] = *s;
                    }
                    text[o++] = '"';
                }
                text[o++] = '\n';
            }
            text[o] = '\0';
            cp_dataset ds;
            if (load(&ds, tok, NULL, tsv ? "data.tsv" : "data.csv", text, 0, 0) != CP_OK) CHECK(0, "%s: %s", name, cp_last_error());
            else { bad += compare(&ds, cp_json_field(c, "examples"), name); loads++; }
            cp_dataset_free(&ds);
        }
    }
    printf("  %d CSV / TSV loads: %ld ids or labels differ from TRL's\n", loads, bad);
    CHECK(bad == 0 && loads == 8, "%ld mismatches in %d loads", bad, loads);
}

static void expect_error(const char *path, const char *text, const cp_chat_template *t, int aol, const char *needle) {
    cp_dataset ds;
    CHECK_ERR(load(&ds, chat_tok, t, path, text, aol, 0), needle);
    printf("  %s\n", cp_last_error());
    cp_dataset_free(&ds);
}

TEST(bad_records_name_file_line_and_what) {
    cp_chat_template *smol = load_template("smollm2"), *training = load_template("chatml_training");
    const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n";
    char buf[2048];
    snprintf(buf, sizeof buf, "%s{\"messages\": [{\"role\": \"bot\", \"content\": \"hi\"}]}\n", ok);
    expect_error("d.jsonl", buf, smol, 0, "d.jsonl:2: \"messages\" message 1: unknown role \"bot\"");
    snprintf(buf, sizeof buf, "%s\n{\"messages\": []}\n", ok);
    expect_error("d.jsonl", buf, smol, 0, "d.jsonl:3: field \"messages\" is an empty conversation");
    snprintf(buf, sizeof buf, "%s{\"messages\": [{\"role\": \"user\", \"content\": 42}]}\n", ok);
    expect_error("d.jsonl", buf, smol, 0, "d.jsonl:2: \"messages\" message 1 (user): \"content\" is a number, expected a string");
    snprintf(buf, sizeof buf, "%s{\"messages\": [{\"content\": \"x\"}]}\n", ok);
    expect_error("d.jsonl", buf, smol, 0, "d.jsonl:2: \"messages\" message 1 has no \"role\"");
    snprintf(buf, sizeof buf, "%s{\"messages\": \"hello\"}\n", ok);
    expect_error("d.jsonl", buf, smol, 0, "d.jsonl:2: field \"messages\" is a string, expected a list");
    snprintf(buf, sizeof buf, "[\n%s,\n{\"text\": \"x\"}]", ok);
    expect_error("d.json", buf, smol, 0, "d.json:4: missing field \"messages\"");
    expect_error("d.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": 7}\n", NULL, 0,
                 "d.jsonl:2: field \"completion\" is a number, expected a string");
    expect_error("d.jsonl", "{\"prompt\": [{\"role\": \"user\", \"content\": \"a\"}], \"completion\": [{\"role\": \"assistant\", "
                 "\"content\": \"b\"}]}\n{\"prompt\": \"a\", \"completion\": \"b\"}\n", smol, 0, "d.jsonl:2: field \"prompt\" is a string");
    expect_error("d.csv", "id,prompt\n1,hello\n", NULL, 0, "d.csv:1: no column \"completion\" in the header (its columns: \"id\", \"prompt\")");
    expect_error("d.csv", "id,body\n1,hello\n", NULL, 0, "d.csv:1: no column \"text\" in the header");
    expect_error("d.csv", "prompt,completion\n\"a\",\"b\",\"c\"\n", NULL, 0, "d.csv:2: the record has 3 fields, the header 2");
    expect_error("d.jsonl", ok, NULL, 0, "conversational records need the model's chat template");
    expect_error("d.jsonl", ok, smol, 1, "--assistant-only-loss needs a chat template that marks the assistant replies");
    expect_error("d.jsonl", "{\"text\": \"hello\"}\n", training, 1, "--assistant-only-loss is for conversational records");
    expect_error("d.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", training, 1, "d.jsonl:1: no assistant tokens");
    /* not strict: a bad record is skipped and counted */
    cp_data_options o = {.path = "d.jsonl", .max_seq_length = 1024, .chat_template = smol};
    snprintf(buf, sizeof buf, "%s{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}\n%s", ok, ok);
    cp_dataset ds;
    CHECK_OK(cp_dataset_load_mem(&ds, chat_tok, &o, buf, strlen(buf)));
    CHECK(ds.n == 2 && ds.n_skipped == 1 && ds.format == CP_DATA_MESSAGES, "n %lld skipped %lld", (long long)ds.n, (long long)ds.n_skipped);
    cp_dataset_free(&ds);
    /* Parquet is refused by name */
    const char pq[] = "PAR1\x15\x04\x15\x10PAR1";
    cp_data_options po = {.path = "d.parquet", .max_seq_length = 64};
    CHECK_ERR(cp_dataset_load_mem(&ds, chat_tok, &po, pq, sizeof pq - 1), "a Parquet file");
    printf("  %s\n", cp_last_error());
    cp_chat_template_free(smol);
    cp_chat_template_free(training);
}

/* ShareGPT conversations (from / value) read as messages; null keys dropped; truncation keeps the start. */
TEST(sharegpt_and_truncation) {
    cp_chat_template *smol = load_template("smollm2");
    const char *a = "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2 + 2?\", \"name\": null}, "
                    "{\"role\": \"assistant\", \"content\": \"It is 4.\"}]}\n";
    const char *b = "{\"conversations\": [{\"from\": \"user\", \"value\": \"What is 2 + 2?\"}, "
                    "{\"from\": \"assistant\", \"value\": \"It is 4.\"}]}\n";
    cp_dataset da, db;
    CHECK_OK(load(&da, chat_tok, smol, "a.jsonl", a, 0, 0));
    CHECK_OK(load(&db, chat_tok, smol, "b.jsonl", b, 0, 0));
    CHECK(da.n == 1 && db.n == 1 && da.examples[0].len == db.examples[0].len &&
          !memcmp(da.examples[0].ids, db.examples[0].ids, (size_t)da.examples[0].len * sizeof(int64_t)),
          "ShareGPT and messages differ");
    int64_t full = da.n ? da.examples[0].len : 0;
    cp_dataset_free(&db);
    cp_data_options o = {.path = "a.jsonl", .max_seq_length = 10, .strict = 1, .chat_template = smol};
    CHECK_OK(cp_dataset_load_mem(&db, chat_tok, &o, a, strlen(a)));
    CHECK(db.n == 1 && db.examples[0].len == 10 && db.n_truncated == 1 && full > 10 &&
          !memcmp(db.examples[0].ids, da.examples[0].ids, 10 * sizeof(int64_t)), "truncation keeps the first 10 tokens");
    cp_dataset_free(&da);
    cp_dataset_free(&db);
    cp_chat_template_free(smol);
}

int main(void) {
    if (cp_tokenizer_load_dir(&chat_tok, FIX "chat_tok") != CP_OK ||
        cp_tokenizer_load_file(&llama_tok, "tests/fixtures/tokenizers/llama/tokenizer.json") != CP_OK ||
        cp_tokenizer_set_special(llama_tok, CP_SPECIAL_EOS, "</s>") != CP_OK || cp_json_read_file(FIX "cases.json", &cases) != CP_OK) {
        fprintf(stderr, "fixtures: %s\n", cp_last_error());
        return 1;
    }
    RUN(trl_formats_match_sft_trainer);
    RUN(csv_and_tsv_records_match);
    RUN(bad_records_name_file_line_and_what);
    RUN(sharegpt_and_truncation);
    cJSON_Delete(cases);
    cp_tokenizer_free(chat_tok);
    cp_tokenizer_free(llama_tok);
    return test_summary();
}
