/*
 * test_embed.c — `cpeft embed` (FEATURE_EXTRACTION, run as $CPEFT_BIN) against
 * sentence-transformers' pooling computed with transformers on the same model
 * (tests/fixtures/embed/<model>.safetensors, tests/reference/make_embed_fixtures.py): mean, cls and
 * last pooling and the L2-normalised mean, in batches that pad differently from the fixture's; the
 * three output formats; and the errors for bad input.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "io/json.h"
#include "io/safetensors.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/cpeft-embed-XXXXXX";

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) { fputs(text, f); fclose(f); }
}

static double worst;

static void compare_model(const char *name) {
    char path[600], ids_path[600], out_path[600], out[1 << 16];
    snprintf(path, sizeof path, "tests/fixtures/embed/%s.safetensors", name);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    if (!st.tensors) return;
    const char *model = cp_st_meta(&st, "model"), *ids = cp_st_meta(&st, "ids");
    CHECK(model && ids, "%s: metadata", path);
    snprintf(ids_path, sizeof ids_path, "%s/%s.ids", dir, name);
    write_text(ids_path, ids);
    const struct { const char *args, *key; } cases[] = {
        {"--pooling mean", "embed.mean"},
        {"--pooling cls", "embed.cls"},
        {"--pooling last", "embed.last"},
        {"--pooling mean --normalize", "embed.mean_normalized"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const cp_st_tensor *want = cp_st_find(&st, cases[c].key);
        const char *ext = c % 2 ? "npy" : "safetensors";
        snprintf(out_path, sizeof out_path, "%s/%s.%zu.%s", dir, name, c, ext);
        /* batches of 3: the second batch pads to its own length, not the fixture's */
        int rc = run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s %s --batch-size 3 --out %s", bin(), model,
                     ids_path, cases[c].args, out_path);
        CHECK(rc == 0, "%s %s: exit %d: %s", name, cases[c].args, rc, out);
        if (rc != 0 || !want) continue;
        const float *got = NULL;
        cp_safetensors o = {0};
        FILE *f = NULL;
        float *buf = malloc((size_t)want->numel * sizeof *buf);
        if (c % 2 == 0) {
            CHECK_OK(cp_st_open(&o, out_path));
            const cp_st_tensor *t = o.tensors ? cp_st_find(&o, "embeddings") : NULL;
            CHECK(t && t->numel == want->numel && t->shape[0] == want->shape[0], "%s: shape", out_path);
            if (t && t->numel == want->numel) got = t->data;
        } else if ((f = fopen(out_path, "rb"))) { /* .npy: 8 magic bytes, a 2-byte header length, the header */
            unsigned char pre[10];
            int ok = fread(pre, 1, 10, f) == 10 && !memcmp(pre, "\x93NUMPY\x01\x00", 8);
            const long hlen = pre[8] | pre[9] << 8;
            ok = ok && (10 + hlen) % 64 == 0 && fseek(f, 10 + hlen, SEEK_SET) == 0;
            ok = ok && fread(buf, sizeof *buf, (size_t)want->numel, f) == (size_t)want->numel && fgetc(f) == EOF;
            CHECK(ok, "%s: not the .npy layout", out_path);
            if (ok) got = buf;
            fclose(f);
        }
        if (got) {
            double d = test_max_abs_diff(got, want->data, (size_t)want->numel);
            worst = fmax(worst, d);
            printf("    %-10s %-28s max |diff| %.2e (%s)\n", name, cases[c].args, d, ext);
            CHECK(d <= 1e-5, "%s %s: differs by %g", name, cases[c].args, d);
        }
        free(buf);
        cp_st_close(&o);
    }
    /* JSON lines on stdout: one object per input, in order, equal to the file output */
    int rc = run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s --pooling mean 2>/dev/null", bin(), model, ids_path);
    CHECK(rc == 0, "jsonl: exit %d", rc);
    const cp_st_tensor *want = cp_st_find(&st, "embed.mean");
    int lines = 0;
    double d = 0;
    for (char *line = strtok(out, "\n"); line && want; line = strtok(NULL, "\n"), lines++) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *idx = j ? cJSON_GetObjectItem(j, "index") : NULL, *e = j ? cJSON_GetObjectItem(j, "embedding") : NULL;
        const int64_t C = want->shape[1];
        CHECK(idx && idx->valuedouble == lines && cJSON_GetArraySize(e) == C, "jsonl line %d: %s", lines, line);
        for (int64_t k = 0; e && k < C && k < cJSON_GetArraySize(e); k++)
            d = fmax(d, fabs(cJSON_GetArrayItem(e, (int)k)->valuedouble - ((const float *)want->data)[lines * C + k]));
        cJSON_Delete(j);
    }
    CHECK(want && lines == want->shape[0] && d <= 1e-5, "jsonl: %d lines, max diff %g", lines, d);
    cp_st_close(&st);
}

TEST(embeddings_match_sentence_transformers_pooling) {
    compare_model("gpt2_tiny");
    compare_model("llama_tiny");
    compare_model("bert_base");
    compare_model("roberta_base");
    printf("  max |diff| over every case: %.2e\n", worst);
}

TEST(bad_input) {
    char out[4096], ids[600];
    const char *model = "tests/fixtures/models/gpt2_tiny";
    snprintf(ids, sizeof ids, "%s/bad.ids", dir);
    write_text(ids, "1 2 3\n4 5 x\n");
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s", bin(), model, ids) == 1 && strstr(out, "bad.ids:2") &&
          strstr(out, "\"x\""), "a bad id: %s", out);
    write_text(ids, "1 2 3\n\n");
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s", bin(), model, ids) == 1 && strstr(out, "bad.ids:2") &&
          strstr(out, "no token ids"), "an empty line: %s", out);
    write_text(ids, "1 2 99999\n");
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s", bin(), model, ids) == 1 && strstr(out, "bad.ids:1"),
          "an id outside the vocabulary: %s", out);
    write_text(ids, "1 2 3\n");
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s --out %s/x.txt", bin(), model, ids, dir) == 2 &&
          strstr(out, ".npy or .safetensors"), "--out suffix: %s", out);
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s --normalize --no-normalize", bin(), model, ids) == 2,
          "both normalise flags: %s", out);
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s --pooling max", bin(), model, ids) == 2, "--pooling max: %s", out);
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s/missing.ids", bin(), model, dir) == 1 &&
          strstr(out, "missing.ids"), "a missing file: %s", out);
    /* truncation to --max-seq-length is counted */
    write_text(ids, "1 2 3 4 5 6 7 8\n1 2\n");
    CHECK(run_cmdf(out, sizeof out, "%s embed --model %s --data-ids %s --max-seq-length 4 --out %s/t.npy", bin(), model, ids, dir) == 0 &&
          strstr(out, "1 of 2 inputs truncated to 4 tokens"), "truncation: %s", out);
}

int main(void) {
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    RUN(embeddings_match_sentence_transformers_pooling);
    RUN(bad_input);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
    return test_summary();
}
