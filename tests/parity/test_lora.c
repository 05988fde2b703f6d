/*
 * test_lora.c — LoRA against PEFT 0.21.2 on every fixture in tests/fixtures/lora/ (made by
 * tests/reference/oracle_lora.py):
 *   - an adapter saved by PEFT loads and gives PEFT's logits (active, disabled, merged, unmerged);
 *   - the counts, print_trainable_parameters() line (notebook format), the wrapped repr, the
 *     adapted modules, ranks and scalings equal PEFT's;
 *   - saving it again gives PEFT's adapter_config.json and adapter_model.safetensors byte for byte;
 *   - merge_and_unload written as a checkpoint loads as a plain model with PEFT's merged logits;
 *   - several adapters: each alone, both active, add_weighted_adapter linear and cat;
 *   - the notebook's GPT-Neo-1.3B numbers from config.json alone, and PEFT's errors.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <stdlib.h>
#include <unistd.h>

#define LORA "tests/fixtures/lora"
#define TOL 1e-4

static double worst_logits;
static int n_compared;

typedef struct {
    cp_safetensors st;
    int64_t B, T;
    const int64_t *ids, *mask;
} expected_file;

static int open_expected(expected_file *e, const char *case_dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/expected.safetensors", case_dir);
    if (cp_st_open(&e->st, path) != CP_OK) { CHECK(0, "%s: %s", path, cp_last_error()); return 0; }
    const cp_st_tensor *t = cp_st_find(&e->st, "input_ids");
    e->B = t->shape[0];
    e->T = t->shape[1];
    e->ids = t->data;
    e->mask = cp_st_find(&e->st, "attention_mask")->data;
    return 1;
}

/* Runs the model and compares its logits with tensor `name` at non-padding positions. */
static void check_logits(cp_model *m, expected_file *e, const char *name, const char *label) {
    const cp_st_tensor *t = cp_st_find(&e->st, name);
    CHECK(t != NULL, "%s: no tensor %s", label, name);
    if (!t) return;
    const int64_t V = cp_model_vocab_size(m);
    float *logits = malloc((size_t)(e->B * e->T * V) * sizeof *logits);
    cp_batch b = {.B = e->B, .T = e->T, .input_ids = e->ids, .attention_mask = e->mask};
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &b, &out));
    double worst = 0;
    for (int64_t r = 0; r < e->B * e->T; r++) {
        if (!e->mask[r]) continue;
        double d = test_max_abs_diff(logits + r * V, (const float *)t->data + r * V, (size_t)V);
        if (d > worst) worst = d;
    }
    CHECK(worst <= TOL, "%s %s: logits differ by %.3e", label, name, worst);
    if (worst > worst_logits) worst_logits = worst;
    n_compared++;
    printf("    %-28s %-24s max |diff| %.2e\n", label, name, worst);
    free(logits);
}

static char *read_text(const char *path) {
    char *s;
    size_t n;
    return cp_read_file(path, &s, &n) == CP_OK ? s : NULL;
}

static int files_equal(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (cp_read_file(a, &x, &nx) != CP_OK) return 0;
    if (cp_read_file(b, &y, &ny) != CP_OK) { cp_free(x); return 0; }
    int eq = nx == ny && memcmp(x, y, nx) == 0;
    cp_free(x);
    cp_free(y);
    return eq;
}

static cp_model *load_base(const cJSON *exp) {
    char dir[512];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

static void check_structure(cp_model *m, const cJSON *exp, const char *label, const char *adapter) {
    int64_t trainable, all;
    cp_model_trainable_parameters(m, &trainable, &all);
    CHECK(trainable == (int64_t)cJSON_GetObjectItem(exp, "trainable")->valuedouble &&
              all == (int64_t)cJSON_GetObjectItem(exp, "all")->valuedouble,
          "%s: counts %lld / %lld, PEFT %g / %g", label, (long long)trainable, (long long)all,
          cJSON_GetObjectItem(exp, "trainable")->valuedouble, cJSON_GetObjectItem(exp, "all")->valuedouble);
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
    CHECK(!strcmp(line, cJSON_GetObjectItem(exp, "notebook_line")->valuestring), "%s: line %s", label, line);
    cp_free(line);
    line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    CHECK(!strcmp(line, cJSON_GetObjectItem(exp, "print_trainable_parameters")->valuestring), "%s: line %s", label, line);
    cp_free(line);
    const cJSON *want_repr = cJSON_GetObjectItem(exp, "repr");
    if (want_repr) {
        char *repr = cp_model_peft_repr(m);
        CHECK(repr && !strcmp(repr, want_repr->valuestring), "%s: repr differs:\n%s\n--- PEFT:\n%s", label, repr,
              want_repr->valuestring);
        cp_free(repr);
    }
    /* adapted modules with their rank and scaling */
    const cJSON *ranks = cJSON_GetObjectItem(exp, "ranks"), *scalings = cJSON_GetObjectItem(exp, "scalings");
    if (adapter && ranks && cJSON_GetObjectItem(ranks, adapter)) {
        ranks = cJSON_GetObjectItem(ranks, adapter);
        scalings = cJSON_GetObjectItem(scalings, adapter);
    }
    cp_module **mods;
    int n;
    CHECK_OK(cp_peft_adapter_modules(m, adapter ? adapter : "default", &mods, &n));
    CHECK(n == cJSON_GetArraySize(ranks), "%s: %d adapted modules, PEFT %d", label, n, cJSON_GetArraySize(ranks));
    for (int i = 0; i < n; i++) {
        const cJSON *r = cJSON_GetObjectItem(ranks, mods[i]->path), *s = cJSON_GetObjectItem(scalings, mods[i]->path);
        const cp_lora_adapter *a = cp_lora_find(mods[i], adapter ? adapter : "default");
        CHECK(r && s && a->r == (int64_t)r->valuedouble && fabs(a->scaling - s->valuedouble) < 1e-12,
              "%s: %s rank %lld scaling %g not as PEFT", label, mods[i]->path, (long long)a->r, a->scaling);
    }
    cp_free(mods);
}

/* Same tensor names, shapes and values (+0 and -0 compare equal). */
static int tensors_equal(const char *a, const char *b) {
    cp_safetensors x, y;
    if (cp_st_open(&x, a) != CP_OK) return 0;
    if (cp_st_open(&y, b) != CP_OK) { cp_st_close(&x); return 0; }
    int eq = x.n_tensors == y.n_tensors;
    for (int i = 0; eq && i < x.n_tensors; i++) {
        const cp_st_tensor *t = &x.tensors[i], *u = cp_st_find(&y, t->name);
        eq = u && u->dtype == CP_F32 && t->dtype == CP_F32 && u->numel == t->numel;
        for (int64_t k = 0; eq && k < t->numel; k++) eq = ((const float *)t->data)[k] == ((const float *)u->data)[k];
    }
    cp_st_close(&x);
    cp_st_close(&y);
    return eq;
}

/* Saves the adapter again and compares both files with PEFT's: the config byte for byte; the
 * weights byte for byte when `bytes`, else by value (PEFT zeroes a combined adapter's unused rows
 * by multiplying random values by 0.0, leaving signs of zero that depend on torch's RNG). */
static void check_resave_mode(cp_model *m, const char *name, const char *peft_dir, const char *label, int bytes) {
    char dir[] = "/tmp/cpeft-lora-XXXXXX", out[600], a[700], b[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", dir);
    CHECK_OK(cp_model_save_adapter(m, name, out));
    snprintf(a, sizeof a, "%s/adapter_config.json", out);
    snprintf(b, sizeof b, "%s/adapter_config.json", peft_dir);
    CHECK(files_equal(a, b), "%s: adapter_config.json differs from PEFT's:\n%s", label, read_text(a));
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", peft_dir);
    CHECK(bytes ? files_equal(a, b) : tensors_equal(a, b), "%s: adapter_model.safetensors differs from PEFT's", label);
    snprintf(a, sizeof a, "rm -rf %s", dir);
    CHECK(system(a) == 0, "cleanup");
}

static void check_resave(cp_model *m, const char *name, const char *peft_dir, const char *label) {
    check_resave_mode(m, name, peft_dir, label, 1);
}

static void check_merged_checkpoint(cp_model *m, expected_file *e, const char *label) {
    char dir[] = "/tmp/cpeft-merged-XXXXXX", out[600], cmd[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/merged", dir);
    CHECK_OK(cp_model_save_merged(m, out));
    cp_model *merged = NULL;
    CHECK_OK(cp_model_load(&merged, out, CP_LOAD_WEIGHTS));
    if (merged) check_logits(merged, e, "logits_merged_unloaded", label);
    cp_model_free(merged);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void run_single(const char *name) {
    char case_dir[512], path[600];
    snprintf(case_dir, sizeof case_dir, "%s/%s", LORA, name);
    snprintf(path, sizeof path, "%s/expected.json", case_dir);
    cJSON *exp;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    expected_file e;
    cp_model *m = load_base(exp);
    if (!m || !open_expected(&e, case_dir)) { cp_model_free(m); cJSON_Delete(exp); return; }
    printf("  %s\n", name);
    CHECK_OK(cp_adapter_load(m, case_dir, "default", 1, 1));
    check_structure(m, exp, name, NULL);
    check_resave(m, "default", case_dir, name);
    check_logits(m, &e, "logits", name);
    cp_model_disable_adapters(m, 1);
    check_logits(m, &e, "logits_disabled", name);
    cp_model_disable_adapters(m, 0);
    CHECK_OK(cp_model_merge_adapters(m));
    check_logits(m, &e, "logits_merged", name);
    CHECK_OK(cp_model_unmerge_adapters(m));
    check_logits(m, &e, "logits_unmerged", name);
    check_merged_checkpoint(m, &e, name);
    cp_st_close(&e.st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(peft_adapters_load_and_match) {
    const char *cases[] = {"neo_notebook", "neo_default_targets", "gpt2_default_conv1d", "gpt2_all_linear_rslora",
                           "neo_regex", "neo_layers_patterns", "neo_exclude_bias_all", "gpt2_lora_only_mts",
                           "neo_embedding", "gpt2_untied_lm_head"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_single(cases[i]);
}

TEST(several_adapters_by_name) {
    cJSON *exp;
    CHECK_OK(cp_json_read_file(LORA "/neo_multi/expected.json", &exp));
    if (!exp) return;
    expected_file e;
    cp_model *m = load_base(exp);
    if (!m || !open_expected(&e, LORA "/neo_multi")) { cp_model_free(m); cJSON_Delete(exp); return; }
    printf("  neo_multi\n");
    CHECK_OK(cp_adapter_load(m, LORA "/neo_multi/adapters/a", "a", 1, 1));
    CHECK_OK(cp_adapter_load(m, LORA "/neo_multi/adapters/b", "b", 0, 1));
    const char *a[] = {"a"}, *b[] = {"b"}, *ab[] = {"a", "b"};
    CHECK_OK(cp_model_set_adapters(m, a, 1));
    check_logits(m, &e, "logits_a", "neo_multi");
    const cJSON *counts = cJSON_GetObjectItem(cJSON_GetObjectItem(exp, "counts_active"), "a");
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
    CHECK(!strcmp(line, cJSON_GetObjectItem(counts, "notebook_line")->valuestring), "a active: %s", line);
    cp_free(line);
    CHECK_OK(cp_model_set_adapters(m, b, 1));
    check_logits(m, &e, "logits_b", "neo_multi");
    CHECK_OK(cp_model_set_adapters(m, ab, 2));
    check_logits(m, &e, "logits_ab", "neo_multi");
    line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
    CHECK(!strcmp(line, cJSON_GetObjectItem(cJSON_GetObjectItem(exp, "counts_ab_active"), "notebook_line")->valuestring),
          "a+b active: %s", line);
    cp_free(line);
    CHECK_OK(cp_model_merge_adapters(m));
    check_logits(m, &e, "logits_merged", "neo_multi");
    CHECK_OK(cp_model_unmerge_adapters(m));
    cp_model_disable_adapters(m, 1);
    check_logits(m, &e, "logits_disabled", "neo_multi");
    cp_model_disable_adapters(m, 0);

    double w[] = {0.7, 0.3};
    const char *names[] = {"a", "b"};
    CHECK_OK(cp_model_add_weighted_adapter(m, names, w, 2, "lin", "linear"));
    CHECK_OK(cp_model_add_weighted_adapter(m, names, w, 2, "cat", "cat"));
    const char *lin[] = {"lin"}, *cat[] = {"cat"};
    CHECK_OK(cp_model_set_adapters(m, lin, 1));
    check_logits(m, &e, "logits_lin", "neo_multi");
    check_resave_mode(m, "lin", LORA "/neo_multi/adapters/lin", "neo_multi lin", 0);
    CHECK_OK(cp_model_set_adapters(m, cat, 1));
    check_logits(m, &e, "logits_cat", "neo_multi");
    check_resave_mode(m, "cat", LORA "/neo_multi/adapters/cat", "neo_multi cat", 0);
    const char *bad[] = {"nope"};
    CHECK_ERR(cp_model_set_adapters(m, bad, 1), "Adapter nope not found");
    CHECK_OK(cp_model_delete_adapter(m, "cat"));
    CHECK_ERR(cp_model_delete_adapter(m, "cat"), "Adapter cat does not exist");
    CHECK(cp_peft_find_adapter(m, "lin") != NULL, "lin survived");
    cp_st_close(&e.st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(notebook_counts_from_config_alone) {
    const char *shorts[] = {"gpt-neo-1.3B", "gpt2", "gpt-neo-125M"};
    for (int i = 0; i < 3; i++) {
        char path[256], dir[256];
        snprintf(path, sizeof path, LORA "/meta_%s.json", shorts[i]);
        snprintf(dir, sizeof dir, "tests/fixtures/configs/%s", shorts[i]);
        cJSON *exp;
        CHECK_OK(cp_json_read_file(path, &exp));
        if (!exp) continue;
        cJSON *cfg = cJSON_Duplicate(cJSON_GetObjectItem(exp, "config"), 1);
        cJSON_AddStringToObject(cfg, "peft_type", "LORA");
        if (!cJSON_GetObjectItem(cfg, "lora_alpha")) cJSON_AddNumberToObject(cfg, "lora_alpha", 8);
        char *text = cJSON_Print(cfg), tmp[] = "/tmp/cpeft-cfg-XXXXXX";
        int fd = mkstemp(tmp);
        CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
        close(fd);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load(&m, dir, CP_LOAD_CONFIG_ONLY));
        if (m) {
            CHECK_OK(cp_model_add_adapter(m, "default", tmp, 0));
            char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
            CHECK(!strcmp(line, cJSON_GetObjectItem(exp, "notebook_line")->valuestring), "%s: %s", shorts[i], line);
            printf("  %s: %s\n", shorts[i], line);
            cp_free(line);
            const cJSON *want_repr = cJSON_GetObjectItem(exp, "repr");
            char *repr = cp_model_peft_repr(m);
            CHECK(!want_repr || !strcmp(repr, want_repr->valuestring), "%s: repr differs:\n%s", shorts[i], repr);
            cp_free(repr);
            cp_model_free(m);
        }
        unlink(tmp);
        cJSON_free(text);
        cJSON_Delete(cfg);
        cJSON_Delete(exp);
    }
}

TEST(peft_errors) {
    cJSON *errors;
    CHECK_OK(cp_json_read_file(LORA "/errors.json", &errors));
    if (!errors) return;
    const cJSON *err;
    cJSON_ArrayForEach(err, errors) {
        cJSON *cfg = cJSON_Duplicate(cJSON_GetObjectItem(err, "config"), 1);
        cJSON_AddStringToObject(cfg, "peft_type", "LORA");
        cJSON_AddNumberToObject(cfg, "lora_alpha", 8);
        char *text = cJSON_Print(cfg), tmp[] = "/tmp/cpeft-cfg-XXXXXX";
        int fd = mkstemp(tmp);
        CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
        close(fd);
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/models/%s", cJSON_GetObjectItem(err, "model")->valuestring);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load(&m, dir, CP_LOAD_CONFIG_ONLY));
        if (m) CHECK_ERR(cp_model_add_adapter(m, "default", tmp, 0), cJSON_GetObjectItem(err, "message")->valuestring);
        cp_model_free(m);
        unlink(tmp);
        cJSON_free(text);
        cJSON_Delete(cfg);
    }
    cJSON_Delete(errors);
}

/* cpeft -> PEFT: adapters written by `cpeft adapter init` loaded by PeftModel.from_pretrained, and
 * merged checkpoints written by `cpeft merge` loaded by transformers (tests/fixtures/lora/cpeft_roundtrip). */
TEST(cpeft_adapters_load_in_peft) {
    const char *cases[] = {"rt_neo_qkv", "rt_gpt2_default", "rt_gpt2_all_linear", "rt_neo_embedding_mts"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char case_dir[512], path[600], adapter[600];
        snprintf(case_dir, sizeof case_dir, LORA "/cpeft_roundtrip/%s", cases[i]);
        snprintf(path, sizeof path, "%s/expected.json", case_dir);
        snprintf(adapter, sizeof adapter, "%s/adapter", case_dir);
        cJSON *exp;
        CHECK_OK(cp_json_read_file(path, &exp));
        if (!exp) continue;
        expected_file e;
        cp_model *m = load_base(exp);
        if (!m || !open_expected(&e, case_dir)) { cp_model_free(m); cJSON_Delete(exp); continue; }
        printf("  %s\n", cases[i]);
        /* the committed adapter is exactly what cpeft writes from this config and seed (run from the
         * fixtures root, where the generator ran it, so base_model_name_or_path is "models/<name>") */
        {
            char cwd[1024], rel_cfg[600], rel_adapter[600];
            CHECK(getcwd(cwd, sizeof cwd) != NULL && chdir("tests/fixtures") == 0, "chdir");
            snprintf(rel_cfg, sizeof rel_cfg, "lora/cpeft_roundtrip/%s/peft_config.json", cases[i]);
            snprintf(rel_adapter, sizeof rel_adapter, "lora/cpeft_roundtrip/%s/adapter", cases[i]);
            cp_model *fresh = NULL;
            CHECK_OK(cp_model_load(&fresh, cJSON_GetObjectItem(exp, "base_dir")->valuestring, CP_LOAD_WEIGHTS));
            if (fresh) {
                CHECK_OK(cp_model_add_adapter(fresh, "default", rel_cfg, (uint64_t)cJSON_GetObjectItem(exp, "seed")->valuedouble));
                check_resave(fresh, "default", rel_adapter, cases[i]);
            }
            cp_model_free(fresh);
            CHECK(chdir(cwd) == 0, "chdir back");
        }
        /* PEFT's logits from cpeft's adapter */
        CHECK_OK(cp_adapter_load(m, adapter, "default", 1, 0));
        check_logits(m, &e, "logits_peft", cases[i]);
        /* transformers' logits from cpeft's merged checkpoint */
        char dir[] = "/tmp/cpeft-merged-XXXXXX", out[600], cmd[700];
        CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(out, sizeof out, "%s/merged", dir);
        CHECK_OK(cp_model_save_merged(m, out));
        cp_model *merged = NULL;
        CHECK_OK(cp_model_load(&merged, out, CP_LOAD_WEIGHTS));
        if (merged) check_logits(merged, &e, "logits_merged_transformers", cases[i]);
        cp_model_free(merged);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0, "cleanup");
        cp_st_close(&e.st);
        cp_model_free(m);
        cJSON_Delete(exp);
    }
}

int main(void) {
    cp_set_quiet(1);
    RUN(peft_adapters_load_and_match);
    RUN(several_adapters_by_name);
    RUN(notebook_counts_from_config_alone);
    RUN(peft_errors);
    RUN(cpeft_adapters_load_in_peft);
    printf("  %d logits comparisons, max |diff| %.2e\n", n_compared, worst_logits);
    return test_summary();
}
