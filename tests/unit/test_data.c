/*
 * test_data.c — training data (src/train/data.c): every format from small temporary files and from the
 * real data in ../shared/data with the GPT-2 tokenizer; malformed records with file:line messages,
 * strict mode, truncation, splits, shuffles and padded batches; gzip and zstd data (compressed here
 * with zlib and libzstd) equal to the plain file, and binary, non-UTF-8 and other compressed data
 * refused with the format's name or the offset of the first bad byte.
 */
#include "test.h"
#include "train/data.h"
#include "core/alloc.h"
#include "io/fsutil.h"

#include <cjson/cJSON.h>
#include <zlib.h>
#include <zstd.h>

#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define GPT2_TOKENIZER "../shared/data/gpt2-tokenizer/tokenizer.json"
#define ALPACA_TINY "../shared/data/alpaca-subset/alpaca_tiny.json"
#define ALPACA_DEMO "../shared/data/alpaca-subset/alpaca_en_demo.json"
#define SHAKESPEARE "../shared/data/tinyshakespeare/input.txt"

static cp_tokenizer *gpt2;
static int32_t eos;
static char tmpdir[64];

/* Writes `text` to a fresh file in the temporary directory; returns its path (static buffer ring). */
static const char *write_tmp(const char *name, const char *text) {
    static char paths[8][128];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (!f) return p;
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    return p;
}

static cp_data_options opts(const char *path, int64_t max_len) {
    return (cp_data_options){.path = path, .format = CP_DATA_AUTO, .max_seq_length = max_len};
}

/* ids of `text` (add_special_tokens as given) into a malloc'd int64 array; *n its length. */
static int64_t *encode64(const char *text, int special, int64_t *n) {
    cp_encoding enc = {0};
    *n = 0;
    if (cp_tokenizer_encode(gpt2, text, strlen(text), special, &enc) != CP_OK) return NULL;
    int64_t *ids = malloc((enc.n + 1) * sizeof *ids);
    for (size_t i = 0; i < enc.n; i++) ids[i] = enc.ids[i];
    *n = (int64_t)enc.n;
    cp_encoding_free(&enc);
    return ids;
}

/* Decodes ids[0..n) (int64) to a malloc'd string. */
static char *decode64(const int64_t *ids, int64_t n) {
    int32_t *tmp = malloc((size_t)(n + 1) * sizeof *tmp);
    for (int64_t i = 0; i < n; i++) tmp[i] = (int32_t)ids[i];
    char *out = NULL;
    if (cp_tokenizer_decode(gpt2, tmp, (size_t)n, 0, &out, NULL) != CP_OK) out = NULL;
    free(tmp);
    return out;
}

static int64_t count_targets(const cp_example *ex) {
    int64_t k = 0;
    for (int64_t t = 0; t < ex->len; t++) k += ex->labels[t] != -100;
    return k;
}

/* Runs fn with stderr captured into buf (for the one summary warning). */
static void capture_stderr_begin(int *saved, const char *file) {
    fflush(stderr);
    *saved = dup(2);
    FILE *f = freopen(file, "w", stderr);
    (void)f;
}
static void capture_stderr_end(int saved, const char *file, char *buf, size_t cap) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    buf[0] = '\0';
    FILE *f = fopen(file, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* ---- plain text ------------------------------------------------------------------------------- */

TEST(plain_text_blocks) {
    const char *text = "The quick brown fox jumps over the lazy dog. It was the best of times, it was the "
                       "worst of times.\nSecond line here.\n";
    const char *path = write_tmp("plain.txt", text);
    int64_t n;
    int64_t *want = encode64(text, 1, &n);
    CHECK(n > 20, "n=%lld", (long long)n);
    cp_dataset ds;
    cp_data_options o = opts(path, 8);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_TEXT, "format %d", ds.format);
    int64_t full = n / 8, rem = n % 8;
    CHECK(ds.n == full + (rem >= 2), "n=%lld blocks for %lld tokens", (long long)ds.n, (long long)n);
    CHECK(ds.n_tokens == full * 8 + (rem >= 2 ? rem : 0), "n_tokens=%lld", (long long)ds.n_tokens);
    CHECK(ds.n_target_tokens == ds.n_tokens && ds.n_truncated == 0 && ds.n_skipped == 0, "counters");
    int64_t off = 0;
    for (int64_t i = 0; i < ds.n; i++) {
        const cp_example *ex = &ds.examples[i];
        CHECK(ex->line == 0, "line %lld", (long long)ex->line);
        CHECK(ex->len == (i < full ? 8 : rem), "len %lld", (long long)ex->len);
        for (int64_t t = 0; t < ex->len; t++) {
            CHECK(ex->ids[t] == want[off + t] && ex->labels[t] == ex->ids[t], "block %lld token %lld", (long long)i,
                  (long long)t);
        }
        off += ex->len;
    }
    cp_dataset_free(&ds);
    free(want);

    /* a partial last block of one token is dropped: pick max_len so that n % max_len == 1 */
    int64_t m = 0;
    for (int64_t k = 2; k < n; k++) if (n % k == 1) { m = k; break; }
    if (m) {
        o = opts(path, m);
        CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
        CHECK(ds.n == n / m, "n=%lld with max %lld", (long long)ds.n, (long long)m);
        cp_dataset_free(&ds);
    }
}

TEST(plain_text_too_short_and_empty) {
    cp_dataset ds;
    cp_data_options o = opts(write_tmp("one.txt", "Hello"), 16);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "no examples (the text gives 1 token");
    CHECK(ds.n == 0 && ds.examples == NULL, "dataset left empty");
    o = opts(write_tmp("empty.txt", ""), 16);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "no examples");
    o = opts(write_tmp("two.txt", "Hello world"), 16);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.n == 1 && ds.examples[0].len == 2, "two tokens give one block");
    cp_dataset_free(&ds);
}

TEST(plain_text_shakespeare_fast) {
    cp_dataset ds;
    cp_data_options o = opts(SHAKESPEARE, 256);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  tinyshakespeare: %lld tokens, %lld blocks, %.2f s\n", (long long)ds.n_tokens, (long long)ds.n, secs);
    CHECK(ds.n_tokens == 338025, "GPT-2 gives 338025 tokens for tinyshakespeare, got %lld", (long long)ds.n_tokens);
    CHECK(ds.n == (338025 + 255) / 256, "blocks %lld", (long long)ds.n);
    CHECK(secs < 20, "loading 1 MB took %.1f s", secs);
    cp_dataset_free(&ds);
}

TEST(forced_text_format_on_json) {
    cp_dataset ds;
    cp_data_options o = opts(write_tmp("forced.jsonl", "{\"text\": \"hello there\"}\n"), 64);
    o.format = CP_DATA_TEXT;
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_TEXT && ds.n == 1 && ds.examples[0].line == 0, "read as a stream");
    cp_dataset_free(&ds);
}

/* ---- JSON text records ------------------------------------------------------------------------- */

TEST(jsonl_text_records) {
    const char *path = write_tmp("text.jsonl",
                                 "{\"text\": \"Hello world\"}\n"
                                 "\n"
                                 "  \r\n"
                                 "{\"text\": \"Second record, with more words.\", \"extra\": [1, 2]}\r\n"
                                 "{\"text\": \"ends with eos<|endoftext|>\"}\n"
                                 "{\"text\": \"no newline at the end\"}");
    cp_dataset ds;
    cp_data_options o = opts(path, 64);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_JSON_TEXT, "format %d", ds.format);
    CHECK(ds.n == 4 && ds.n_skipped == 0, "n=%lld skipped=%lld", (long long)ds.n, (long long)ds.n_skipped);
    static const int64_t lines[] = {1, 4, 5, 6};
    static const char *texts[] = {"Hello world", "Second record, with more words.", "ends with eos<|endoftext|>",
                                  "no newline at the end"};
    int64_t total = 0;
    for (int64_t i = 0; i < ds.n && i < 4; i++) {
        const cp_example *ex = &ds.examples[i];
        CHECK(ex->line == lines[i], "record %lld line %lld", (long long)i, (long long)ex->line);
        int64_t n;
        int64_t *want = encode64(texts[i], 1, &n);
        int ends_eos = want[n - 1] == eos;
        CHECK(ex->len == n + !ends_eos, "record %lld len %lld vs %lld", (long long)i, (long long)ex->len, (long long)n);
        for (int64_t t = 0; t < n && t < ex->len; t++) CHECK(ex->ids[t] == want[t], "record %lld token %lld", (long long)i, (long long)t);
        CHECK(ex->ids[ex->len - 1] == eos, "eos last");
        CHECK(ex->len < 2 || ex->ids[ex->len - 2] != eos, "no doubled eos in record %lld", (long long)i);
        CHECK(count_targets(ex) == ex->len, "labels = ids");
        total += ex->len;
        free(want);
    }
    CHECK(ds.n_tokens == total && ds.n_target_tokens == total, "counters");
    cp_dataset_free(&ds);
}

/* A key given twice keeps its last value, as Python's json reads the record. */
TEST(duplicate_keys_keep_the_last_value) {
    static const char *files[][2] = {{"dup.jsonl", "{\"text\": \"first\", \"text\": \"Hello world\"}\n"},
                                     {"dup.json", "[{\"text\": \"first\", \"text\": \"Hello world\"}]"}};
    for (int i = 0; i < 2; i++) {
        cp_dataset ds;
        cp_data_options o = opts(write_tmp(files[i][0], files[i][1]), 64);
        CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
        char *text = ds.n == 1 ? decode64(ds.examples[0].ids, ds.examples[0].len) : NULL;
        CHECK(text && !strcmp(text, "Hello world<|endoftext|>"), "%s: \"%s\"", files[i][0], text ? text : "(none)");
        free(text);
        cp_dataset_free(&ds);
    }
}

TEST(json_array_text_field_and_lines) {
    const char *path = write_tmp("array.json",
                                 "\xEF\xBB\xBF[\n"
                                 "  {\"body\": \"first\"},\n"
                                 "  {\n"
                                 "    \"body\": \"second [with] {brackets}, and \\\"quotes\\\"\"\n"
                                 "  },\n"
                                 "\n"
                                 "  {\"body\": \"third\\nline\"}\n"
                                 "]\n");
    cp_dataset ds;
    cp_data_options o = opts(path, 64);
    o.text_field = "body";
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.n == 3, "n=%lld (%s)", (long long)ds.n, cp_last_error());
    if (ds.n == 3) {
        CHECK(ds.examples[0].line == 2 && ds.examples[1].line == 3 && ds.examples[2].line == 7, "lines %lld %lld %lld",
              (long long)ds.examples[0].line, (long long)ds.examples[1].line, (long long)ds.examples[2].line);
        char *s = decode64(ds.examples[1].ids, ds.examples[1].len - 1);
        CHECK(s && strcmp(s, "second [with] {brackets}, and \"quotes\"") == 0, "decoded \"%s\"", s ? s : "(null)");
        free(s);
    }
    cp_dataset_free(&ds);
}

TEST(text_truncation) {
    const char *path = write_tmp("long.jsonl",
                                 "{\"text\": \"one two three four five six seven eight nine ten eleven twelve\"}\n"
                                 "{\"text\": \"short\"}\n");
    cp_dataset ds;
    cp_data_options o = opts(path, 5);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.n == 2 && ds.n_truncated == 1, "n=%lld truncated=%lld", (long long)ds.n, (long long)ds.n_truncated);
    if (ds.n == 2) {
        CHECK(ds.examples[0].len == 5 && ds.examples[0].ids[4] != eos, "cut from the right, eos lost");
        CHECK(ds.examples[1].len == 2 && ds.examples[1].ids[1] == eos, "short record keeps eos");
        CHECK(ds.n_tokens == 7, "n_tokens %lld", (long long)ds.n_tokens);
    }
    cp_dataset_free(&ds);
}

/* ---- instruction records ----------------------------------------------------------------------- */

TEST(instruction_templates) {
    const char *path = write_tmp("instr.jsonl",
                                 "{\"instruction\": \"Add the numbers.\", \"input\": \"2 and 3\", \"output\": \"5\"}\n"
                                 "{\"instruction\": \"Say hi. %s %n %d\", \"output\": \"Hi!\"}\n"
                                 "{\"instruction\": \"Null input.\", \"input\": null, \"output\": \"ok\"}\n");
    cp_dataset ds;
    cp_data_options o = opts(path, 512);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_INSTRUCTION && ds.n == 3, "format %d n %lld (%s)", ds.format, (long long)ds.n,
          cp_last_error());
    static const char *prompts[] = {
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n"
        "### Input:\n2 and 3\n\n### Response:\n",
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi. %s %n %d\n\n### Response:\n",
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nNull input.\n\n### Response:\n",
    };
    static const char *outputs[] = {"5", "Hi!", "ok"};
    int64_t targets = 0;
    for (int64_t i = 0; i < ds.n && i < 3; i++) {
        const cp_example *ex = &ds.examples[i];
        int64_t np, no;
        int64_t *p = encode64(prompts[i], 1, &np), *out = encode64(outputs[i], 0, &no);
        CHECK(ex->len == np + no + 1, "record %lld len %lld vs %lld + %lld + 1", (long long)i, (long long)ex->len,
              (long long)np, (long long)no);
        for (int64_t t = 0; t < ex->len && t < np + no + 1; t++) {
            int64_t want = t < np ? p[t] : t < np + no ? out[t - np] : eos;
            CHECK(ex->ids[t] == want, "record %lld id %lld", (long long)i, (long long)t);
            CHECK(ex->labels[t] == (t < np ? -100 : want), "record %lld label %lld", (long long)i, (long long)t);
        }
        char *s = decode64(ex->ids, np);
        CHECK(s && strcmp(s, prompts[i]) == 0, "prompt of record %lld decodes to \"%s\"", (long long)i, s ? s : "");
        free(s);
        targets += no + 1;
        free(p);
        free(out);
    }
    CHECK(ds.n_target_tokens == targets, "n_target_tokens %lld vs %lld", (long long)ds.n_target_tokens,
          (long long)targets);
    cp_dataset_free(&ds);
}

TEST(instruction_no_response_left) {
    const char *path = write_tmp("instr_trunc.jsonl",
                                 "{\"instruction\": \"A fairly long instruction that fills the budget.\", "
                                 "\"output\": \"a response\"}\n");
    cp_dataset ds;
    cp_data_options o = opts(path, 16);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "no response tokens left after truncating to 16 tokens");
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), ":1: no response tokens left");
    o.strict = 1;
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "instr_trunc.jsonl:1: no response tokens left after truncating to 16");
    /* a budget that keeps part of the response: truncated, labels only on what is left */
    int64_t np;
    int64_t *p = encode64("Below is an instruction that describes a task. Write a response that appropriately "
                          "completes the request.\n\n### Instruction:\nA fairly long instruction that fills the "
                          "budget.\n\n### Response:\n", 1, &np);
    free(p);
    o = opts(path, np + 1);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.n == 1 && ds.n_truncated == 1 && ds.examples[0].len == np + 1 && count_targets(&ds.examples[0]) == 1,
          "one response token kept");
    cp_dataset_free(&ds);
}

TEST(alpaca_tiny_real) {
    cp_dataset ds;
    cp_data_options o = opts(ALPACA_TINY, 4096);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_INSTRUCTION && ds.n == 100 && ds.n_skipped == 0 && ds.n_truncated == 0,
          "format %d n %lld", ds.format, (long long)ds.n);
    cJSON *root = NULL;
    char *text = NULL;
    size_t len;
    CHECK_OK(cp_read_file(ALPACA_TINY, &text, &len));
    root = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(root && cJSON_GetArraySize(root) == 100, "alpaca_tiny parses");
    int mismatches = 0;
    for (int64_t i = 0; root && i < ds.n; i++) {
        const cp_example *ex = &ds.examples[i];
        const cJSON *rec = cJSON_GetArrayItem(root, (int)i);
        const char *want = cJSON_GetObjectItem(rec, "text")->valuestring;
        CHECK(ex->line == 1, "alpaca_tiny is one line");
        CHECK(ex->ids[ex->len - 1] == eos && ex->labels[ex->len - 1] == eos, "eos last");
        /* tok(prompt) ++ tok(output) decodes to the dataset's own rendered "text" */
        char *s = decode64(ex->ids, ex->len - 1);
        if (!s || strcmp(s, want) != 0) mismatches++;
        if (i == 0) {
            int64_t np = ex->len - count_targets(ex);
            char *prompt = decode64(ex->ids, np);
            const char *tmpl_want =
                "Below is an instruction that describes a task. Write a response that appropriately completes the "
                "request.\n\n### Instruction:\nGive three tips for staying healthy.\n\n### Response:\n";
            CHECK(prompt && strcmp(prompt, tmpl_want) == 0, "record 0 prompt \"%s\"", prompt ? prompt : "");
            free(prompt);
            char *resp = decode64(ex->ids + np, ex->len - np - 1);
            CHECK(resp && strcmp(resp, cJSON_GetObjectItem(rec, "output")->valuestring) == 0, "record 0 response");
            free(resp);
        }
        free(s);
    }
    CHECK(mismatches == 0, "%d records decode differently from their \"text\"", mismatches);
    cJSON_Delete(root);
    cp_dataset_free(&ds);

    /* forcing JSON text on the same file reads the "text" field instead */
    o.format = CP_DATA_JSON_TEXT;
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.format == CP_DATA_JSON_TEXT && ds.n == 100 && ds.n_target_tokens == ds.n_tokens, "text field read");
    cp_dataset_free(&ds);
}

TEST(alpaca_demo_lines) {
    cp_dataset ds;
    cp_data_options o = opts(ALPACA_DEMO, 256);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    CHECK(ds.n == 999 && ds.format == CP_DATA_INSTRUCTION, "n %lld", (long long)ds.n);
    CHECK(ds.n > 0 && ds.examples[0].line == 2, "first record on line 2, got %lld", ds.n ? (long long)ds.examples[0].line : -1LL);
    int increasing = 1;
    for (int64_t i = 1; i < ds.n; i++) increasing &= ds.examples[i].line > ds.examples[i - 1].line;
    CHECK(increasing, "lines increase");
    CHECK(ds.n_truncated > 0, "some records are longer than 256 tokens");
    for (int64_t i = 0; i < ds.n; i++) CHECK(ds.examples[i].len <= 256, "truncated");
    printf("  alpaca_en_demo: %lld examples, %lld tokens (%lld targets), %lld truncated\n", (long long)ds.n,
           (long long)ds.n_tokens, (long long)ds.n_target_tokens, (long long)ds.n_truncated);
    cp_dataset_free(&ds);
}

/* ---- malformed records -------------------------------------------------------------------------- */

static const char *MALFORMED_JSONL =
    "{\"text\": \"good one\"}\n"         /* 1 */
    "{\"text\": \"broken\"\n"            /* 2: syntax */
    "[1, 2, 3]\n"                        /* 3: not an object */
    "{\"other\": \"x\"}\n"               /* 4: missing field */
    "{\"text\": 42}\n"                   /* 5: wrong type */
    "{\"text\": \"\"}\n"                 /* 6: empty */
    "{\"text\": \"a\"} {\"text\": \"b\"}\n" /* 7: extra data */
    "\n"
    "{\"text\": \"good two\"}\n";        /* 9 */

TEST(malformed_skipped_with_lines) {
    const char *path = write_tmp("bad.jsonl", MALFORMED_JSONL);
    char errfile[128], warn[4096];
    snprintf(errfile, sizeof errfile, "%s/stderr.txt", tmpdir);
    cp_dataset ds;
    cp_data_options o = opts(path, 64);
    int saved;
    capture_stderr_begin(&saved, errfile);
    cp_status st = cp_dataset_load(&ds, gpt2, &o);
    capture_stderr_end(saved, errfile, warn, sizeof warn);
    CHECK(st == CP_OK, "%s", cp_last_error());
    CHECK(ds.n == 2 && ds.n_skipped == 6, "n %lld skipped %lld", (long long)ds.n, (long long)ds.n_skipped);
    if (ds.n == 2) CHECK(ds.examples[0].line == 1 && ds.examples[1].line == 9, "lines");
    char want[512];
    snprintf(want, sizeof want, "skipped 6 malformed records; first: %s:2: invalid JSON at column", path);
    CHECK(strstr(warn, want) != NULL, "warning \"%s\"", warn);
    int nwarn = 0;
    for (const char *s = warn; (s = strstr(s, "warning:")); s++) nwarn++;
    CHECK(nwarn == 1, "one summary warning, got %d", nwarn);
    cp_dataset_free(&ds);

    /* strict: each malformed kind is the error, with its line */
    static const struct { const char *text; const char *msg; } cases[] = {
        {"{\"text\": \"ok\"}\n{\"text\": \"broken\"\n", ":2: invalid JSON at column"},
        {"{\"text\": \"ok\"}\n\n[1, 2, 3]\n", ":3: record is an array, expected a JSON object"},
        {"{\"text\": \"ok\"}\n{\"other\": \"x\"}\n", ":2: missing field \"text\""},
        {"{\"text\": \"ok\"}\n{\"text\": 42}\n", ":2: field \"text\" is a number, expected a string"},
        {"{\"text\": \"ok\"}\n{\"text\": \"\"}\n", ":2: field \"text\" is empty"},
        {"{\"text\": \"ok\"}\n{\"text\": \"a\"} x\n", ":2: extra data after the JSON value at column 15"},
        {"{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": \"i\"}\n", ":2: missing field \"output\""},
        {"{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": \"i\", \"input\": 3, \"output\": \"o\"}\n",
         ":2: field \"input\" is a number"},
        {"{\"instruction\": \"i\", \"output\": \"o\"}\n{\"instruction\": [], \"output\": \"o\"}\n",
         ":2: field \"instruction\" is an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        o = opts(write_tmp("strict.jsonl", cases[i].text), 64);
        o.strict = 1;
        char want2[256];
        snprintf(want2, sizeof want2, "strict.jsonl%s", cases[i].msg);
        CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), want2);
        CHECK(ds.n == 0 && ds.examples == NULL, "nothing left after an error");
        o.strict = 0;
        cp_set_quiet(1);
        CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
        cp_set_quiet(0);
        CHECK(ds.n == 1 && ds.n_skipped == 1, "case %zu: n %lld skipped %lld", i, (long long)ds.n, (long long)ds.n_skipped);
        cp_dataset_free(&ds);
    }
}

TEST(malformed_json_array) {
    cp_dataset ds;
    cp_data_options o = opts(write_tmp("bad_array.json",
                                       "[\n  {\"text\": \"good\"},\n  \"a string\",\n  {\"text\": null},\n"
                                       "  {\"text\": \"also good\"}\n]\n"), 64);
    cp_set_quiet(1);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    cp_set_quiet(0);
    CHECK(ds.n == 2 && ds.n_skipped == 2, "n %lld skipped %lld", (long long)ds.n, (long long)ds.n_skipped);
    if (ds.n == 2) CHECK(ds.examples[1].line == 5, "line %lld", (long long)ds.examples[1].line);
    cp_dataset_free(&ds);
    o.strict = 1;
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "bad_array.json:3: record is a string, expected a JSON object");

    /* syntax errors in an array are errors in either mode, with their line */
    o = opts(write_tmp("syntax.json", "[\n  {\"text\": \"good\"},\n  {\"text\": \"bad\",,}\n]\n"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "syntax.json:3: invalid JSON at column");
    o = opts(write_tmp("open.json", "[\n  {\"text\": \"good\"},\n  {\"text\": \"more\"}\n"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "open.json:4: the JSON array ends early");
    o = opts(write_tmp("open2.json", "[{\"text\": \"good\"}, "), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "ends early");
    o = opts(write_tmp("nocomma.json", "[\n{\"text\": \"a\"}\n{\"text\": \"b\"}]"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "nocomma.json:3: expected ',' or ']'");
    o = opts(write_tmp("extra.json", "[{\"text\": \"a\"}]\n\n]"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "extra.json:3: extra data after the JSON array");
    o = opts(write_tmp("trailing.json", "[{\"text\": \"a\"},]"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "trailing.json:1: invalid JSON at column 16");
    o = opts(write_tmp("emptyarr.json", " [ ] "), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "emptyarr.json: no examples (the JSON array is empty)");
}

TEST(no_examples_and_missing_file) {
    cp_dataset ds;
    cp_data_options o = opts(write_tmp("allbad.jsonl", "{\"text\": 1}\n{\"text\": 2}\n{\"text\": 3}\n"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "allbad.jsonl: no examples (3 malformed records skipped; first: ");
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "allbad.jsonl:1: field \"text\" is a number");
    /* the first *valid* record decides the kind */
    o = opts(write_tmp("late.jsonl", "{\"instruction\": 5, \"output\": \"x\"}\n{\"text\": 3}\n"
                                     "{\"instruction\": \"i\", \"output\": \"o\"}\n"), 64);
    cp_set_quiet(1);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    cp_set_quiet(0);
    CHECK(ds.format == CP_DATA_INSTRUCTION && ds.n == 1 && ds.n_skipped == 2 && ds.examples[0].line == 3, "late decision");
    cp_dataset_free(&ds);
    o.strict = 1;
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "late.jsonl:1: field \"instruction\" is a number");
    o = opts(write_tmp("blank.jsonl", "{}\n"), 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "records need \"text\", or \"instruction\" and \"output\"");
    o = opts("/nonexistent/dir/train.jsonl", 64);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "/nonexistent/dir/train.jsonl");
    o = opts(write_tmp("ok.jsonl", "{\"text\": \"x y\"}\n"), 1);
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "max_seq_length must be at least 2");
    o.path = NULL;
    CHECK_ERR(cp_dataset_load(&ds, gpt2, &o), "no data file");
}

TEST(eos_required_for_json) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, GPT2_TOKENIZER));
    if (!tok) return;
    CHECK_OK(cp_tokenizer_set_special(tok, CP_SPECIAL_EOS, NULL));
    cp_dataset ds;
    cp_data_options o = opts(write_tmp("eos.jsonl", "{\"text\": \"x y\"}\n"), 64);
    CHECK_ERR(cp_dataset_load(&ds, tok, &o), "eos.jsonl: JSON records end with the eos token, but the tokenizer has none");
    o = opts(write_tmp("eos.txt", "plain text needs no eos"), 64);
    CHECK_OK(cp_dataset_load(&ds, tok, &o));
    cp_dataset_free(&ds);
    cp_tokenizer_free(tok);
}

TEST(load_from_memory) {
    /* a buffer with no NUL after it: the loader reads exactly len bytes */
    const char src[] = "{\"text\": \"from memory\"}\n{\"text\": \"second\"}\n{\"text\": \"cut off here";
    size_t len = sizeof src - 1 - strlen(" off here");
    char *buf = malloc(len);
    memcpy(buf, src, len);
    cp_dataset ds;
    cp_data_options o = opts("mem.jsonl", 64);
    cp_set_quiet(1);
    CHECK_OK(cp_dataset_load_mem(&ds, gpt2, &o, buf, len));
    cp_set_quiet(0);
    CHECK(ds.n == 2 && ds.n_skipped == 1, "n %lld skipped %lld", (long long)ds.n, (long long)ds.n_skipped);
    cp_dataset_free(&ds);
    o.strict = 1;
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, buf, len), "mem.jsonl:3: invalid JSON");
    free(buf);
    o = opts("empty", 64);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, NULL, 0), "empty: no examples");
}

/* ---- compressed and binary data -------------------------------------------------------------------- */

/* gzip of data[0..n) as `members` gzip members (cat a.gz b.gz), appended to *buf. */
static size_t gzip_into(unsigned char *buf, size_t cap, const char *data, size_t n, int members) {
    size_t len = 0;
    for (int m = 0; m < members; m++) {
        size_t from = n * (size_t)m / (size_t)members, to = n * (size_t)(m + 1) / (size_t)members;
        z_stream z;
        memset(&z, 0, sizeof z);
        deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (unsigned char *)data + from;
        z.avail_in = (uInt)(to - from);
        z.next_out = buf + len;
        z.avail_out = (uInt)(cap - len);
        deflate(&z, Z_FINISH);
        len = cap - z.avail_out;
        deflateEnd(&z);
    }
    return len;
}

/* Whether two datasets hold the same examples, token for token. */
static int same_examples(const cp_dataset *a, const cp_dataset *b) {
    if (a->n != b->n || a->n_truncated != b->n_truncated || a->n_skipped != b->n_skipped) return 0;
    for (int64_t i = 0; i < a->n; i++) {
        const cp_example *x = &a->examples[i], *y = &b->examples[i];
        if (x->len != y->len || x->line != y->line || memcmp(x->ids, y->ids, (size_t)x->len * sizeof *x->ids) ||
            memcmp(x->labels, y->labels, (size_t)x->len * sizeof *x->labels))
            return 0;
    }
    return 1;
}

TEST(compressed_data_equals_plain) {
    char *plain;
    size_t n;
    CHECK_OK(cp_read_file(ALPACA_TINY, &plain, &n));
    if (!plain) return;
    size_t cap = n + 65536;
    unsigned char *gz = malloc(cap), *gz2 = malloc(cap), *zs = malloc(cap);
    size_t gz_len = gzip_into(gz, cap, plain, n, 1), gz2_len = gzip_into(gz2, cap, plain, n, 3);
    size_t zs_len = ZSTD_compress(zs, cap, plain, n, 19);
    CHECK(!ZSTD_isError(zs_len), "ZSTD_compress");
    cp_dataset ref, ds;
    cp_data_options o = opts(ALPACA_TINY, 128);
    cp_set_quiet(1);
    CHECK_OK(cp_dataset_load(&ref, gpt2, &o));
    struct { const char *name; const unsigned char *p; size_t n; } cases[] = {
        {"alpaca.json.gz", gz, gz_len}, {"alpaca.json", gz, gz_len}, /* found by its magic number, not by its name */
        {"alpaca-3-members.json.gz", gz2, gz2_len}, {"alpaca.json.zst", zs, zs_len}, {"alpaca.jsonl", zs, zs_len}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* from a file and from memory */
        FILE *f = fopen(write_tmp(cases[k].name, ""), "wb");
        fwrite(cases[k].p, 1, cases[k].n, f);
        fclose(f);
        char path[160];
        snprintf(path, sizeof path, "%s/%s", tmpdir, cases[k].name);
        o = opts(path, 128);
        CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
        CHECK(same_examples(&ref, &ds), "%s (%zu bytes for %zu) loads differently from the plain file", cases[k].name, cases[k].n, n);
        cp_dataset_free(&ds);
        o = opts(cases[k].name, 128);
        CHECK_OK(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)cases[k].p, cases[k].n));
        CHECK(same_examples(&ref, &ds), "%s from memory loads differently", cases[k].name);
        cp_dataset_free(&ds);
    }
    printf("  %zu bytes of JSON: gzip %zu, gzip in 3 members %zu, zstd %zu; each loads %lld examples equal to the plain file's\n",
           n, gz_len, gz2_len, zs_len, (long long)ref.n);
    cp_set_quiet(0);
    /* broken compressed data: each error names the file, the format and where */
    o = opts("cut.json.gz", 128);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, gz_len - 9), "cut.json.gz: the gzip data is truncated");
    gz[gz_len - 8] ^= 0x55; /* the CRC-32 of the trailer */
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, gz_len), "the gzip data is corrupt at compressed offset");
    gz[gz_len - 8] ^= 0x55;
    memcpy(gz + gz_len, "junk", 4);
    char want[96];
    snprintf(want, sizeof want, "4 bytes after the end of the gzip data at offset %zu are not gzip data", gz_len);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, gz_len + 4), want);
    o = opts("cut.json.zst", 128);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)zs, zs_len - 5), "cut.json.zst: the zstd data is truncated");
    o.max_decompressed = 1000;
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)zs, zs_len), "decompresses to more than 1000 bytes");
    o = opts("bomb.gz", 128);
    o.max_decompressed = 1000;
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, gz_len), "decompresses to more than 1000 bytes");
    /* a tar archive inside gzip */
    char tar[1024] = "train.jsonl";
    memcpy(tar + 257, "ustar", 5);
    size_t tgz_len = gzip_into(gz, cap, tar, sizeof tar, 1);
    o = opts("data.tar.gz", 128);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, tgz_len), "data.tar.gz: a tar archive inside gzip, not text");
    free(gz);
    free(gz2);
    free(zs);
    cp_dataset_free(&ref);
    cp_free(plain);
}

TEST(binary_and_foreign_formats_refused) {
    cp_dataset ds;
    struct { const char *name, *data; size_t n; const char *want; } cases[] = {
        {"nul.txt", "hello\nwor\0ld\n", 13, "nul.txt: binary data, not text: a NUL byte at offset 9 (line 2)"},
        {"nul.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\0\"}\n", 29, "a NUL byte at offset 25 (line 2)"},
        {"latin1.txt", "caf\xe9 au lait\n", 14, "latin1.txt: not UTF-8 text: byte 0xE9 at offset 3 (line 1) is not valid UTF-8"},
        {"overlong.txt", "ok\nok\n\xc0\xaf", 8, "byte 0xC0 at offset 6 (line 3)"},
        {"surrogate.txt", "x\xed\xa0\x80", 4, "byte 0xED at offset 1 (line 1)"},
        {"cut.txt", "ok \xe2\x82", 5, "byte 0xE2 at offset 3 (line 1)"},
        {"utf16.txt", "\xff\xfeh\0i\0", 6, "utf16.txt: UTF-16 text (it starts with the byte-order mark FF FE); cpeft reads UTF-8"},
        {"data.xz", "\xfd" "7zXZ\0\0\4", 8, "data.xz: xz-compressed data, not text"},
        {"data.bz2", "BZh91AY&SY\0\0", 12, "data.bz2: bzip2-compressed data, not text"},
        {"data.zip", "PK\3\4\24\0\0\0", 8, "data.zip: a zip archive, not text"},
        {"data.parquet", "PAR1\0\0\0\0PAR1", 12, "data.parquet: a Parquet file, not text"},
        {"data", "\x80\x04\x95\0", 4, "data: a Python pickle, not text"},
        {"data.json.gz", "{\"text\": \"plain\"}\n", 18, "data.json.gz: the name says gzip, but the data is not gzip (it starts with 7B 22 74 65)"},
        {"empty.zst", "", 0, "empty.zst: the name says zstd, but the data is not zstd (the file is empty)"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cp_data_options o = opts(cases[k].name, 64);
        CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, cases[k].data, cases[k].n), cases[k].want);
        CHECK(ds.n == 0 && !ds.examples, "%s: examples left after the error", cases[k].name);
    }
    /* the same checks on the decompressed bytes, with offsets in them */
    unsigned char gz[256];
    size_t len = gzip_into(gz, sizeof gz, "line one\nline \xff", 15, 1);
    cp_data_options o = opts("bad.txt.gz", 64);
    CHECK_ERR(cp_dataset_load_mem(&ds, gpt2, &o, (const char *)gz, len),
              "byte 0xFF at offset 14 of the decompressed gzip data (line 2) is not valid UTF-8");
    /* valid UTF-8 of every length, and a UTF-8 byte-order mark, still load */
    o = opts("ok.txt", 64);
    const char ok[] = "\xef\xbb\xbf" "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf done";
    CHECK_OK(cp_dataset_load_mem(&ds, gpt2, &o, ok, sizeof ok - 1));
    cp_dataset_free(&ds);
}

/* ---- splits, shuffles, batches -------------------------------------------------------------------- */

static cp_status load_lines(cp_dataset *ds, int n) {
    char *buf = malloc((size_t)n * 48 + 1), *w = buf;
    for (int i = 0; i < n; i++) w += sprintf(w, "{\"text\": \"record number %d\"}\n", i);
    cp_data_options o = opts(write_tmp("many.jsonl", buf), 64);
    free(buf);
    return cp_dataset_load(ds, gpt2, &o);
}

TEST(split_deterministic) {
    cp_dataset a, va, b, vb;
    CHECK_OK(load_lines(&a, 50));
    CHECK_OK(load_lines(&b, 50));
    int64_t tokens = a.n_tokens;
    CHECK_OK(cp_dataset_split(&a, 0.1, 42, &va));
    CHECK_OK(cp_dataset_split(&b, 0.1, 42, &vb));
    CHECK(va.n == 5 && a.n == 45, "sizes %lld %lld", (long long)va.n, (long long)a.n);
    CHECK(a.n_tokens + va.n_tokens == tokens && va.format == CP_DATA_JSON_TEXT, "tokens kept");
    int same = va.n == vb.n;
    for (int64_t i = 0; same && i < va.n; i++) same = va.examples[i].line == vb.examples[i].line;
    CHECK(same, "same seed, same split");
    int ordered = 1;
    for (int64_t i = 1; i < a.n; i++) ordered &= a.examples[i].line > a.examples[i - 1].line;
    for (int64_t i = 1; i < va.n; i++) ordered &= va.examples[i].line > va.examples[i - 1].line;
    CHECK(ordered, "order preserved");
    cp_dataset_free(&a); cp_dataset_free(&va); cp_dataset_free(&b); cp_dataset_free(&vb);

    CHECK_OK(load_lines(&a, 50));
    CHECK_OK(load_lines(&b, 50));
    CHECK_OK(cp_dataset_split(&a, 0.1, 1, &va));
    CHECK_OK(cp_dataset_split(&b, 0.1, 2, &vb));
    int differ = 0;
    for (int64_t i = 0; i < va.n; i++) differ |= va.examples[i].line != vb.examples[i].line;
    CHECK(differ, "another seed, another split");
    cp_dataset_free(&a); cp_dataset_free(&va); cp_dataset_free(&b); cp_dataset_free(&vb);

    /* a tiny fraction still gives one example; a split that takes everything is an error */
    CHECK_OK(load_lines(&a, 3));
    CHECK_OK(cp_dataset_split(&a, 0.001, 7, &va));
    CHECK(va.n == 1 && a.n == 2, "at least one");
    cp_dataset_free(&va);
    CHECK_ERR(cp_dataset_split(&a, 0.9, 7, &va), "leaves no training examples");
    CHECK_ERR(cp_dataset_split(&a, 1.5, 7, &va), "between 0 and 1");
    CHECK(a.n == 2, "dataset untouched after an error");
    cp_dataset_free(&a);
    CHECK_OK(load_lines(&a, 1));
    CHECK_ERR(cp_dataset_split(&a, 0.5, 7, &va), "leaves no training examples");
    cp_dataset_free(&a);
}

TEST(shuffle_permutation) {
    enum { N = 1000 };
    static int64_t o1[N], o2[N], o3[N];
    static unsigned char seen[N];
    cp_rng r1, r2, r3;
    cp_rng_seed(&r1, 123);
    cp_rng_seed(&r2, 123);
    cp_rng_seed(&r3, 124);
    cp_dataset_shuffle(o1, N, &r1);
    cp_dataset_shuffle(o2, N, &r2);
    cp_dataset_shuffle(o3, N, &r3);
    int perm = 1, fixed = 0;
    for (int i = 0; i < N; i++) {
        if (o1[i] < 0 || o1[i] >= N || seen[o1[i]]) perm = 0;
        else seen[o1[i]] = 1;
        fixed += o1[i] == i;
    }
    CHECK(perm, "a permutation");
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "deterministic from the seed");
    CHECK(memcmp(o1, o3, sizeof o1) != 0, "seed matters");
    CHECK(fixed < 20, "%d fixed points: not shuffled", fixed);
    /* the next epoch from the same stream is another order */
    cp_dataset_shuffle(o2, N, &r1);
    CHECK(memcmp(o1, o2, sizeof o1) != 0, "epochs differ");
    int64_t one = 99;
    cp_dataset_shuffle(&one, 1, &r1);
    CHECK(one == 0, "n=1");
    cp_dataset_shuffle(NULL, 0, &r1);
}

TEST(batch_padding) {
    const char *path = write_tmp("batch.jsonl",
                                 "{\"text\": \"a b c d e f g\"}\n"
                                 "{\"text\": \"short\"}\n"
                                 "{\"instruction\": \"x\", \"output\": \"y\"}\n"
                                 "{\"text\": \"mid length text\"}\n");
    cp_dataset ds;
    cp_data_options o = opts(path, 64);
    cp_set_quiet(1);
    CHECK_OK(cp_dataset_load(&ds, gpt2, &o));
    cp_set_quiet(0);
    CHECK(ds.n == 3 && ds.n_skipped == 1, "n %lld", (long long)ds.n); /* record 3 has no "text" */
    cp_batch_data b = {0};
    int64_t order[3] = {1, 0, 2};
    CHECK_OK(cp_batch_make(&ds, order, 0, 2, 50256, &b));
    int64_t T = ds.examples[0].len;
    CHECK(b.B == 2 && b.T == T, "B %lld T %lld", (long long)b.B, (long long)b.T);
    const cp_example *e1 = &ds.examples[1];
    for (int64_t t = 0; t < T; t++) {
        int real = t < e1->len;
        CHECK(b.input_ids[t] == (real ? e1->ids[t] : 50256), "row 0 id %lld", (long long)t);
        CHECK(b.attention_mask[t] == real, "row 0 mask %lld", (long long)t);
        CHECK(b.labels[t] == (real ? e1->labels[t] : -100), "row 0 label %lld", (long long)t);
        CHECK(b.input_ids[T + t] == ds.examples[0].ids[t] && b.attention_mask[T + t] == 1, "row 1 full");
    }
    int64_t *keep = b.input_ids, cap = b.cap;
    /* the last batch of the epoch is smaller; buffers are reused */
    CHECK_OK(cp_batch_make(&ds, order, 2, 2, 0, &b));
    CHECK(b.B == 1 && b.T == ds.examples[2].len && b.input_ids == keep && b.cap == cap, "partial batch reuses buffers");
    /* no order: sequential */
    CHECK_OK(cp_batch_make(&ds, NULL, 0, 3, 0, &b));
    CHECK(b.B == 3 && b.T == T && b.cap >= 3 * T, "grown");
    CHECK(b.input_ids[2 * T] == ds.examples[2].ids[0], "sequential order");
    CHECK_ERR(cp_batch_make(&ds, order, 3, 2, 0, &b), "outside the dataset");
    CHECK_ERR(cp_batch_make(&ds, order, 0, 0, 0, &b), "batch size");
    CHECK_ERR(cp_batch_make(&ds, order, 0, 2, -1, &b), "pad token id -1");
    int64_t bad_order[2] = {0, 7};
    CHECK_ERR(cp_batch_make(&ds, bad_order, 0, 2, 0, &b), "order entry 1 is 7");
    cp_batch_data_free(&b);
    cp_batch_data_free(&b);
    cp_dataset_free(&ds);
    cp_dataset_free(&ds);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-data-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    if (cp_tokenizer_load_file(&gpt2, GPT2_TOKENIZER) != CP_OK) {
        fprintf(stderr, "cannot load %s: %s\n", GPT2_TOKENIZER, cp_last_error());
        return 1;
    }
    eos = cp_tokenizer_special_id(gpt2, CP_SPECIAL_EOS);
    RUN(plain_text_blocks);
    RUN(plain_text_too_short_and_empty);
    RUN(plain_text_shakespeare_fast);
    RUN(forced_text_format_on_json);
    RUN(jsonl_text_records);
    RUN(duplicate_keys_keep_the_last_value);
    RUN(json_array_text_field_and_lines);
    RUN(text_truncation);
    RUN(instruction_templates);
    RUN(instruction_no_response_left);
    RUN(alpaca_tiny_real);
    RUN(alpaca_demo_lines);
    RUN(malformed_skipped_with_lines);
    RUN(malformed_json_array);
    RUN(no_examples_and_missing_file);
    RUN(eos_required_for_json);
    RUN(load_from_memory);
    RUN(compressed_data_equals_plain);
    RUN(binary_and_foreign_formats_refused);
    RUN(split_deterministic);
    RUN(shuffle_permutation);
    RUN(batch_padding);
    cp_tokenizer_free(gpt2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
