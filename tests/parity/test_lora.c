/*
 * test_lora.c — LoRA against PEFT 0.21.2 on every fixture in tests/fixtures/lora/ (made by
 * tests/reference/oracle_lora.py):
 *   - an adapter saved by PEFT loads and gives PEFT's logits (active, disabled, merged, unmerged);
 *   - the counts, print_trainable_parameters() line (notebook format), the wrapped repr, the
 *     adapted modules, ranks and scalings equal PEFT's;
 *   - saving it again gives PEFT's adapter_config.json and adapter_model.safetensors byte for byte,
 *     with each save_embedding_layers value (embedding targets on GPT-2, Llama, Mistral, Qwen2, tied
 *     and untied) and auto_mapping written when there is no task_type;
 *   - merge_and_unload written as a checkpoint loads as a plain model with PEFT's merged logits, with
 *     PEFT's tensors and tie_word_embeddings (untied when a modules_to_save copy split a tied pair);
 *   - several adapters: each alone, both active, add_weighted_adapter linear and cat;
 *   - training an embed_tokens target with modules_to_save lm_head saves the tensors PEFT saves;
 *   - the notebook's GPT-Neo-1.3B numbers from config.json alone, and PEFT's errors.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/lora.h"
#include "peft/peft_model.h"
#include "train/trainer.h"

#include <stdlib.h>
#include <unistd.h>

#define LORA "tests/fixtures/lora"
#define TOL 1e-4
#define TOL_NEW 1e-5 /* the cases added with issue 10 */

static double worst_logits;
static int n_compared;
static double tol = TOL;

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
    CHECK(worst <= tol, "%s %s: logits differ by %.3e (tolerance %.0e)", label, name, worst, tol);
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
static void check_resave_emb(cp_model *m, const char *name, const char *peft_dir, const char *label, int bytes,
                             cp_save_embeddings mode) {
    char dir[] = "/tmp/cpeft-lora-XXXXXX", out[600], a[700], b[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", dir);
    CHECK_OK(cp_adapter_save_ex(m, name, out, mode));
    snprintf(a, sizeof a, "%s/adapter_config.json", out);
    snprintf(b, sizeof b, "%s/adapter_config.json", peft_dir);
    CHECK(files_equal(a, b), "%s: adapter_config.json differs from PEFT's:\n%s", label, read_text(a));
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", peft_dir);
    CHECK(bytes ? files_equal(a, b) : tensors_equal(a, b), "%s: adapter_model.safetensors differs from PEFT's", label);
    snprintf(a, sizeof a, "rm -rf %s", dir);
    CHECK(system(a) == 0, "cleanup");
}

static void check_resave_mode(cp_model *m, const char *name, const char *peft_dir, const char *label, int bytes) {
    check_resave_emb(m, name, peft_dir, label, bytes, CP_SAVE_EMBEDDINGS_AUTO);
}

static void check_resave(cp_model *m, const char *name, const char *peft_dir, const char *label) {
    check_resave_mode(m, name, peft_dir, label, 1);
}

/* save_pretrained's save_embedding_layers as the case recorded it ("auto" when absent). */
static cp_save_embeddings save_mode(const cJSON *exp) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(exp, "save_kw"), "save_embedding_layers");
    return !v ? CP_SAVE_EMBEDDINGS_AUTO : cJSON_IsTrue(v) ? CP_SAVE_EMBEDDINGS_TRUE : CP_SAVE_EMBEDDINGS_FALSE;
}

/* A merged checkpoint directory holds what transformers' save_pretrained wrote for PEFT's
 * merge_and_unload: the same tensor names and shapes, and the same tie_word_embeddings. */
static void check_merged_files(const char *dir, const cJSON *tensors, const cJSON *tie, const char *label) {
    char path[700];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *cfg;
    CHECK_OK(cp_json_read_file(path, &cfg));
    if (cfg) {
        const cJSON *got = cJSON_GetObjectItem(cfg, "tie_word_embeddings");
        int got_tie = !got || cJSON_IsTrue(got); /* transformers' default is true */
        CHECK(got_tie == cJSON_IsTrue(tie), "%s: merged config.json says tie_word_embeddings %s, PEFT's %s", label,
              got_tie ? "true" : "false", cJSON_IsTrue(tie) ? "true" : "false");
        cJSON_Delete(cfg);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    CHECK(st.n_tensors == cJSON_GetArraySize(tensors), "%s: merged checkpoint has %d tensors, PEFT's %d", label, st.n_tensors,
          cJSON_GetArraySize(tensors));
    const cJSON *t;
    cJSON_ArrayForEach(t, tensors) {
        const cp_st_tensor *x = cp_st_find(&st, t->string);
        const cJSON *shape = cJSON_GetArrayItem(t, 1);
        int same = x && x->ndim == cJSON_GetArraySize(shape);
        for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
        CHECK(same, "%s: merged tensor %s missing or of another shape", label, t->string);
    }
    cp_st_close(&st);
}

static void check_merged_checkpoint(cp_model *m, expected_file *e, const cJSON *exp, const char *label) {
    char dir[] = "/tmp/cpeft-merged-XXXXXX", out[600], cmd[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/merged", dir);
    CHECK_OK(cp_model_save_merged(m, out));
    const cJSON *ms = cJSON_GetObjectItem(exp, "merged_save");
    if (ms)
        check_merged_files(out, cJSON_GetObjectItem(ms, "tensors"), cJSON_GetObjectItem(ms, "tie_word_embeddings"), label);
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
    check_resave_emb(m, "default", case_dir, name, 1, save_mode(exp));
    check_logits(m, &e, "logits", name);
    cp_model_disable_adapters(m, 1);
    check_logits(m, &e, "logits_disabled", name);
    cp_model_disable_adapters(m, 0);
    CHECK_OK(cp_model_merge_adapters(m));
    check_logits(m, &e, "logits_merged", name);
    CHECK_OK(cp_model_unmerge_adapters(m));
    check_logits(m, &e, "logits_unmerged", name);
    /* a bf16 base: cpeft's merged checkpoint is bf16 like the base (rounded), PEFT's reference merge
     * is f32; the roundtrip case checks cpeft's bf16 merge against transformers reading it */
    double saved_tol = tol;
    if (cJSON_GetObjectItem(exp, "dtype")) tol = 0.1;
    check_merged_checkpoint(m, &e, exp, name);
    tol = saved_tol;
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

/* Embedding targets with every save_embedding_layers value, auto_mapping, modules_to_save on tied
 * embeddings and heads, layers_pattern as a full path (issue 10, items 3, 4, 7, 8, 9, 10). */
TEST(peft_embedding_and_tied_adapters) {
    const char *cases[] = {"llama_embed_auto", "qwen2_embed_tied_auto", "mistral_embed_false", "llama_embed_true",
                           "qwen2_true_untargeted", "gpt2_wte_true", "llama_mts_head_true", "llama_embed_mts_lm_head",
                           "qwen2_embed_mts_lm_head", "gpt2_mts_lm_head_tied", "gpt2_mts_wte_tied",
                           "qwen2_mts_embed_tied", "llama_layers_pattern_path", "gpt2_layers_pattern_path"};
    tol = TOL_NEW;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_single(cases[i]);
    tol = TOL;
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
 * merged checkpoints written by `cpeft merge` loaded by transformers (tests/fixtures/lora/cpeft_roundtrip).
 * Cases with "adapter_from" merge a PEFT-saved adapter instead (only the merge is cpeft's). */
static void run_roundtrip(const char *name) {
    char case_dir[512], path[600], adapter[600];
    snprintf(case_dir, sizeof case_dir, LORA "/cpeft_roundtrip/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", case_dir);
    cJSON *exp;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    const cJSON *from = cJSON_GetObjectItem(exp, "adapter_from");
    if (from) snprintf(adapter, sizeof adapter, "tests/fixtures/%s", from->valuestring);
    else snprintf(adapter, sizeof adapter, "%s/adapter", case_dir);
    expected_file e;
    cp_model *m = load_base(exp);
    if (!m || !open_expected(&e, case_dir)) { cp_model_free(m); cJSON_Delete(exp); return; }
    printf("  %s\n", name);
    /* the committed adapter is exactly what cpeft writes from this config and seed (run from the
     * fixtures root, where the generator ran it, so base_model_name_or_path is "models/<name>") */
    if (!from) {
        char cwd[1024], rel_cfg[600], rel_adapter[600];
        CHECK(getcwd(cwd, sizeof cwd) != NULL && chdir("tests/fixtures") == 0, "chdir");
        snprintf(rel_cfg, sizeof rel_cfg, "lora/cpeft_roundtrip/%s/peft_config.json", name);
        snprintf(rel_adapter, sizeof rel_adapter, "lora/cpeft_roundtrip/%s/adapter", name);
        cp_model *fresh = NULL;
        CHECK_OK(cp_model_load(&fresh, cJSON_GetObjectItem(exp, "base_dir")->valuestring, CP_LOAD_WEIGHTS));
        if (fresh) {
            CHECK_OK(cp_model_add_adapter(fresh, "default", rel_cfg, (uint64_t)cJSON_GetObjectItem(exp, "seed")->valuedouble));
            check_resave(fresh, "default", rel_adapter, name);
        }
        cp_model_free(fresh);
        CHECK(chdir(cwd) == 0, "chdir back");
    }
    /* PEFT's logits from the adapter */
    CHECK_OK(cp_adapter_load(m, adapter, "default", 1, 0));
    check_logits(m, &e, "logits_peft", name);
    /* transformers' logits from cpeft's merged checkpoint, and its tensors and tie flag */
    char dir[] = "/tmp/cpeft-merged-XXXXXX", out[600], cmd[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/merged", dir);
    CHECK_OK(cp_model_save_merged(m, out));
    if (cJSON_GetObjectItem(exp, "merged_tensors"))
        check_merged_files(out, cJSON_GetObjectItem(exp, "merged_tensors"),
                           cJSON_GetObjectItem(exp, "merged_tie_word_embeddings"), name);
    cp_model *merged = NULL;
    CHECK_OK(cp_model_load(&merged, out, CP_LOAD_WEIGHTS));
    if (merged) check_logits(merged, &e, "logits_merged_transformers", name);
    cp_model_free(merged);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    cp_st_close(&e.st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(cpeft_adapters_load_in_peft) {
    const char *cases[] = {"rt_neo_qkv", "rt_gpt2_default", "rt_gpt2_all_linear", "rt_neo_embedding_mts"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_roundtrip(cases[i]);
}

/* The same for embedding targets with modules_to_save lm_head (item 4), a tied embedding target
 * without task_type (auto_mapping, item 7), layers_pattern as a path (item 10), and merges of
 * modules_to_save on tied embeddings and heads that transformers must read untied (item 8). */
TEST(cpeft_embedding_adapters_load_in_peft) {
    const char *cases[] = {"rt_llama_embed_mts", "rt_qwen2_embed_tied", "rt_gpt2_layers_path", "rt_merge_gpt2_mts_wte",
                           "rt_merge_gpt2_mts_lm_head", "rt_merge_qwen2_mts_embed", "rt_merge_qwen2_embed_mts_head"};
    tol = TOL_NEW;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_roundtrip(cases[i]);
    tol = TOL;
}

/* A training model directory: llama_tiny's weights with a word-level tokenizer whose ids fit its
 * 97-entry vocabulary, and a plain-text corpus of those words. */
static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static int make_word_model(const char *dir) {
    static const char *words[] = {"the", "cat", "dog", "sat", "on", "a", "mat", "ran", "to", "house", "big", "small",
                                  "red", "blue", "and", "with", "under", "tree", "bird", "sang"};
    const int n = (int)(sizeof words / sizeof *words);
    char cmd[1024], path[600];
    snprintf(cmd, sizeof cmd, "cp tests/fixtures/llama/models/llama_tiny/config.json "
                              "tests/fixtures/llama/models/llama_tiny/model.safetensors %s/", dir);
    if (system(cmd) != 0) return 0;
    cJSON *tok = cJSON_Parse("{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": ["
                             "{\"id\": 0, \"content\": \"<unk>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                             "\"normalized\": false, \"special\": true},"
                             "{\"id\": 1, \"content\": \"</s>\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                             "\"normalized\": false, \"special\": true}], \"normalizer\": null, "
                             "\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"post_processor\": null, \"decoder\": null, "
                             "\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"<unk>\": 0, \"</s>\": 1}, \"unk_token\": \"<unk>\"}}");
    cJSON *vocab = cJSON_GetObjectItem(cJSON_GetObjectItem(tok, "model"), "vocab");
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(vocab, words[i], i + 2);
    char *text = cJSON_Print(tok);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    int ok = write_file(path, text);
    cJSON_free(text);
    cJSON_Delete(tok);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    ok = ok && write_file(path, "{\"eos_token\": \"</s>\"}");
    cp_strbuf sb;
    cp_sb_init(&sb);
    for (int i = 0; i < 400; i++) cp_sb_printf(&sb, "%s%s", words[(i * 7 + i / 3) % n], i % 12 == 11 ? "\n" : " ");
    char *corpus = cp_sb_finish(&sb);
    snprintf(path, sizeof path, "%s/train.txt", dir);
    ok = ok && corpus && write_file(path, corpus);
    cp_free(corpus);
    return ok;
}

/* Issue 10, item 4: an embedding target plus modules_to_save lm_head used to fail at save time with
 * `duplicate tensor name "base_model.model.lm_head.weight"` (the save_embedding_layers rule and the
 * modules_to_save rule both wrote lm_head.weight). Trained and saved, the adapter now holds exactly
 * the tensors PEFT saves for that config (lora/llama_embed_mts_lm_head): the trained lm_head copy
 * and the untouched embed_tokens.base_layer.weight. */
TEST(train_embedding_target_with_mts_lm_head) {
    char dir[] = "/tmp/cpeft-train-emb-XXXXXX", data[600], out[600], cmd[700], path[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK(make_word_model(dir), "model directory");
    snprintf(data, sizeof data, "%s/train.txt", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    cp_train_args a;
    cp_train_args_defaults(&a);
    a.model_dir = dir;
    a.data_path = data;
    a.output_dir = out;
    a.lora_r = 2;
    a.lora_alpha = 4;
    a.lora_dropout = 0;
    a.target_modules = "embed_tokens,q_proj";
    a.modules_to_save = "lm_head";
    a.max_steps = 3;
    a.per_device_train_batch_size = 2;
    a.max_seq_length = 16;
    a.learning_rate = 1e-2;
    a.logging_steps = 1;
    a.save_steps = 1000;
    a.progress = 0;
    int interrupted = 0;
    CHECK_OK(cp_train(&a, &interrupted));
    cJSON *exp;
    CHECK_OK(cp_json_read_file(LORA "/llama_embed_mts_lm_head/expected.json", &exp));
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
    if (exp && cp_st_open(&st, path) == CP_OK) {
        const cJSON *want = cJSON_GetObjectItem(exp, "saved_tensors"), *t;
        CHECK(st.n_tensors == cJSON_GetArraySize(want), "%d tensors saved, PEFT saves %d", st.n_tensors, cJSON_GetArraySize(want));
        cJSON_ArrayForEach(t, want) {
            const cp_st_tensor *x = cp_st_find(&st, t->string);
            const cJSON *shape = cJSON_GetArrayItem(t, 1);
            int same = x && x->dtype == CP_F32 && x->ndim == cJSON_GetArraySize(shape);
            for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            CHECK(same, "%s: missing or not as PEFT saves it", t->string);
        }
        /* the embedding's base weight is saved untouched, the lm_head copy trained */
        cp_model *base = NULL;
        CHECK_OK(cp_model_load(&base, "tests/fixtures/llama/models/llama_tiny", CP_LOAD_WEIGHTS));
        const cp_st_tensor *e = cp_st_find(&st, "base_model.model.model.embed_tokens.base_layer.weight");
        const cp_st_tensor *h = cp_st_find(&st, "base_model.model.lm_head.weight");
        if (base && e && h) {
            cp_module *emb = cp_module_find(base->root, "model.embed_tokens");
            double de = test_max_abs_diff(e->data, emb->weight->data, (size_t)emb->weight->numel);
            double dh = test_max_abs_diff(h->data, base->lm_head->weight->data, (size_t)base->lm_head->weight->numel);
            printf("  trained: embed_tokens.base_layer.weight vs base %.1e, lm_head copy vs base %.2e\n", de, dh);
            CHECK(de == 0 && dh > 1e-4, "embedding changed by %g, head copy by %g", de, dh);
        }
        cp_model_free(base);
        cp_st_close(&st);
        /* it loads back and saves to the same file */
        cp_model *m = NULL;
        CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
        if (m) {
            CHECK_OK(cp_adapter_load(m, out, "default", 1, 0));
            char again[700], a_path[800];
            snprintf(again, sizeof again, "%s/again", dir);
            CHECK_OK(cp_adapter_save(m, "default", again));
            snprintf(a_path, sizeof a_path, "%s/adapter_model.safetensors", again);
            CHECK(files_equal(a_path, path), "resaved adapter differs from the trained one");
        }
        cp_model_free(m);
    }
    cJSON_Delete(exp);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* The tensor dtypes of an adapter file equal a {key: [dtype, shape]} record ("bfloat16", "float32"). */
static void check_dtypes(const char *path, const cJSON *want, const char *label) {
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    if (!st.tensors) return;
    CHECK(st.n_tensors == cJSON_GetArraySize(want), "%s: %d tensors, PEFT %d", label, st.n_tensors, cJSON_GetArraySize(want));
    const cJSON *w;
    int n_bf16 = 0;
    cJSON_ArrayForEach(w, want) {
        const cp_st_tensor *t = cp_st_find(&st, w->string);
        const char *dt = cJSON_GetArrayItem(w, 0)->valuestring;
        cp_dtype d = !strcmp(dt, "bfloat16") ? CP_BF16 : !strcmp(dt, "float16") ? CP_F16 : CP_F32;
        CHECK(t && t->dtype == d, "%s: %s is %s, PEFT saves %s", label, w->string, t ? cp_dtype_name(t->dtype) : "missing", dt);
        n_bf16 += d == CP_BF16;
    }
    printf("    %-28s %d tensors, %d of them BF16, dtypes as PEFT's\n", label, st.n_tensors, n_bf16);
    cp_st_close(&st);
}

/* A bf16 base model: PEFT saves the modules_to_save copies and the biases of bias="all" in the
 * model's dtype (BF16), LoRA A and B in F32, and with bias="all" also the wrapped module's
 * original_module / modules_to_save biases. Both directions: PEFT's file loads and saves back byte
 * for byte; cpeft's `adapter init` file has the dtypes PEFT writes for it. An adapter holding those
 * tensors in F32 (as cpeft wrote them before) loads to the same model and saves as PEFT does. */
TEST(bf16_base_adapter_dtypes) {
    tol = TOL_NEW;
    run_single("gpt2_bf16_mts_bias");
    run_roundtrip("rt_gpt2_bf16_mts_bias");
    tol = TOL;
    cJSON *exp;
    CHECK_OK(cp_json_read_file(LORA "/cpeft_roundtrip/rt_gpt2_bf16_mts_bias/expected.json", &exp));
    if (exp) {
        check_dtypes(LORA "/cpeft_roundtrip/rt_gpt2_bf16_mts_bias/adapter/adapter_model.safetensors",
                     cJSON_GetObjectItem(exp, "peft_resaved_tensors"), "cpeft adapter init");
        cJSON_Delete(exp);
    }
    CHECK_OK(cp_json_read_file(LORA "/gpt2_bf16_mts_bias/expected.json", &exp));
    if (exp) {
        check_dtypes(LORA "/gpt2_bf16_mts_bias/adapter_model.safetensors", cJSON_GetObjectItem(exp, "saved_tensors"), "PEFT's file");
        cJSON_Delete(exp);
    }
    /* what training updates: each trainable tensor once (the wrapped ln_f's bias is the copy's, not
     * also one of bias="all"'s), PEFT's trainable count in all */
    cp_model *tm = NULL;
    CHECK_OK(cp_model_load(&tm, "tests/fixtures/models/gpt2_tiny_bf16", CP_LOAD_WEIGHTS));
    if (tm) {
        CHECK_OK(cp_adapter_load(tm, LORA "/gpt2_bf16_mts_bias", "default", 1, 1));
        cp_param **params = NULL;
        int n = 0, dup = 0;
        int64_t total = 0, trainable, all;
        CHECK_OK(cp_peft_trainable_params(tm, &params, &n));
        for (int i = 0; i < n; i++) {
            total += params[i]->numel;
            for (int k = 0; k < i; k++) dup += params[k] == params[i];
        }
        cp_model_trainable_parameters(tm, &trainable, &all);
        printf("    %-28s %d tensors, %lld values to train (PEFT's count %lld), %d listed twice\n", "training", n,
               (long long)total, (long long)trainable, dup);
        /* trainable itself equals PEFT's (expected.json "trainable"), checked by run_single above */
        CHECK(dup == 0 && total == trainable, "training list: %d duplicates, %lld values, count %lld", dup, (long long)total,
              (long long)trainable);
        cp_free(params);
    }
    cp_model_free(tm);
    /* the same adapter with every tensor widened to F32 */
    char dir[] = "/tmp/cpeft-bf16-XXXXXX", path[600], cmd[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    cp_safetensors src;
    CHECK_OK(cp_st_open(&src, LORA "/gpt2_bf16_mts_bias/adapter_model.safetensors"));
    if (src.tensors) {
        cp_st_write_tensor *w = calloc((size_t)src.n_tensors, sizeof *w);
        float **bufs = calloc((size_t)src.n_tensors, sizeof *bufs);
        for (int i = 0; i < src.n_tensors; i++) {
            const cp_st_tensor *t = &src.tensors[i];
            bufs[i] = malloc((size_t)t->numel * sizeof(float));
            cp_convert_to_f32(bufs[i], t->data, t->dtype, (size_t)t->numel);
            w[i] = (cp_st_write_tensor){.name = t->name, .dtype = CP_F32, .ndim = t->ndim, .data = bufs[i]};
            for (int d = 0; d < t->ndim; d++) w[i].shape[d] = t->shape[d];
        }
        const char *meta_k[1] = {"format"}, *meta_v[1] = {"pt"};
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        CHECK_OK(cp_st_write(path, w, src.n_tensors, meta_k, meta_v, 1));
        for (int i = 0; i < src.n_tensors; i++) free(bufs[i]);
        free(bufs);
        free(w);
        cp_st_close(&src);
    }
    snprintf(cmd, sizeof cmd, "cp " LORA "/gpt2_bf16_mts_bias/adapter_config.json %s/", dir);
    CHECK(system(cmd) == 0, "copy config");
    expected_file e;
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt2_tiny_bf16", CP_LOAD_WEIGHTS));
    if (m && open_expected(&e, LORA "/gpt2_bf16_mts_bias")) {
        CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
        tol = TOL_NEW;
        check_logits(m, &e, "logits", "F32 copies on bf16");
        tol = TOL;
        check_resave(m, "default", LORA "/gpt2_bf16_mts_bias", "F32 copies on bf16, saved again");
        cp_st_close(&e.st);
    }
    cp_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void) {
    cp_set_quiet(1);
    RUN(peft_adapters_load_and_match);
    RUN(peft_embedding_and_tied_adapters);
    RUN(several_adapters_by_name);
    RUN(notebook_counts_from_config_alone);
    RUN(peft_errors);
    RUN(train_embedding_target_with_mts_lm_head);
    RUN(cpeft_adapters_load_in_peft);
    RUN(cpeft_embedding_adapters_load_in_peft);
    RUN(bf16_base_adapter_dtypes);
    printf("  %d logits comparisons, max |diff| %.2e\n", n_compared, worst_logits);
    return test_summary();
}
