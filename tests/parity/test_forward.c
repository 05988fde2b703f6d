/*
 * test_forward.c — logits, hidden states and loss against transformers, for every forward fixture
 * (tests/fixtures/forward/<model>.<case>.safetensors, made by tests/reference/generate.py).
 *
 * Positions where attention_mask is 0 are excluded: transformers leaves their outputs
 * implementation-defined. Goal ≤ 1e-5 on logits; the test fails above 1e-4.
 */
#include "test.h"
#include "cpeft.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <stdlib.h>

/* each fixture root holds forward/<model>.<case>.safetensors and models/<model>/ */
static const char *const ROOTS[] = {"tests/fixtures", "tests/fixtures/llama"};
#define FAIL_TOL 1e-4
#define GOAL_TOL 1e-5

static double worst_logits, worst_hidden, worst_loss;
static int n_cases;

static const void *tensor(const cp_safetensors *st, const char *name, cp_dtype dtype) {
    const cp_st_tensor *t = cp_st_find(st, name);
    if (!t || t->dtype != dtype) return NULL;
    return t->data;
}

static void run_case(const char *root, const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/forward/%s", root, file);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    const char *model_name = cp_st_meta(&st, "model");
    CHECK(model_name != NULL, "%s: no model in metadata", file);
    if (!model_name) { cp_st_close(&st); return; }
    char model_dir[512];
    snprintf(model_dir, sizeof model_dir, "%s/models/%s", root, model_name);

    const cp_st_tensor *ids_t = cp_st_find(&st, "input_ids");
    const int64_t B = ids_t->shape[0], T = ids_t->shape[1];
    const int64_t *ids = tensor(&st, "input_ids", CP_I64);
    const int64_t *mask = tensor(&st, "attention_mask", CP_I64);
    const int64_t *pos = tensor(&st, "position_ids", CP_I64);
    const int64_t *labels = tensor(&st, "labels", CP_I64);
    const float *want_logits = tensor(&st, "logits", CP_F32);
    const float *want_hidden = tensor(&st, "hidden_states", CP_F32);
    const float *want_loss = tensor(&st, "loss", CP_F32);
    CHECK(ids && mask && labels && want_logits && want_hidden && want_loss, "%s: fixture incomplete", file);

    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    if (!m || !ids || !mask || !labels || !want_logits || !want_hidden || !want_loss) {
        cp_model_free(m);
        cp_st_close(&st);
        return;
    }
    const int64_t V = cp_model_vocab_size(m), C = cp_model_hidden_size(m), L = cp_model_num_layers(m);
    float *logits = malloc((size_t)(B * T * V) * sizeof *logits);
    float *hidden = malloc((size_t)((L + 1) * B * T * C) * sizeof *hidden);
    cp_batch batch = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .position_ids = pos, .labels = labels};
    cp_outputs out = {.logits = logits, .hidden_states = hidden};
    CHECK_OK(cp_model_forward(m, &batch, &out));

    double dl = 0, dh = 0;
    for (int64_t r = 0; r < B * T; r++) {
        if (!mask[r]) continue;
        double d = test_max_abs_diff(logits + r * V, want_logits + r * V, (size_t)V);
        if (d > dl) dl = d;
        for (int64_t l = 0; l <= L; l++) {
            size_t off = (size_t)((l * B * T + r) * C);
            d = test_max_abs_diff(hidden + off, want_hidden + off, (size_t)C);
            if (d > dh) dh = d;
        }
    }
    double dloss = fabs(out.loss - (double)want_loss[0]);
    printf("  %-40s logits %.2e  hidden %.2e  loss %.2e (%.6f)\n", file, dl, dh, dloss, out.loss);
    CHECK(dl <= FAIL_TOL, "%s: logits differ by %.3e", file, dl);
    CHECK(dh <= FAIL_TOL, "%s: hidden states differ by %.3e", file, dh);
    CHECK(dloss <= FAIL_TOL, "%s: loss %.8f vs %.8f", file, out.loss, (double)want_loss[0]);

    /* The chunked loss path (no logits buffer) must agree with the full one. */
    cp_outputs lean = {0};
    CHECK_OK(cp_model_forward(m, &batch, &lean));
    CHECK(fabs(lean.loss - out.loss) <= 1e-6, "%s: chunked loss %.8f vs %.8f", file, lean.loss, out.loss);

    if (dl > worst_logits) worst_logits = dl;
    if (dh > worst_hidden) worst_hidden = dh;
    if (dloss > worst_loss) worst_loss = dloss;
    n_cases++;
    free(logits);
    free(hidden);
    cp_model_free(m);
    cp_st_close(&st);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(forward_matches_transformers) {
    for (size_t r = 0; r < sizeof ROOTS / sizeof *ROOTS; r++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/forward", ROOTS[r]);
        DIR *d = opendir(dir);
        CHECK(d != NULL, "cannot open %s", dir);
        if (!d) continue;
        char *names[256];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 256)
            if (strstr(e->d_name, ".safetensors")) names[n++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, name_cmp);
        for (int i = 0; i < n; i++) { run_case(ROOTS[r], names[i]); free(names[i]); }
    }
    CHECK(n_cases >= 75, "only %d forward fixtures ran", n_cases);
    printf("  %d cases: max |logits diff| %.2e (goal %.0e), max |hidden diff| %.2e, max |loss diff| %.2e\n", n_cases,
           worst_logits, GOAL_TOL, worst_hidden, worst_loss);
}

int main(void) {
    RUN(forward_matches_transformers);
    return test_summary();
}
