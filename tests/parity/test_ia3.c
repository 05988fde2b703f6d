/*
 * test_ia3.c — (IA)³ against PEFT 0.21.2 + transformers (fixtures: tests/reference/make_ia3_fixtures.py →
 * tests/fixtures/ia3/), on GPT-2 (Conv1D), GPT-Neo (all-linear), Llama with biases, BERT, DeBERTa and
 * Qwen2 SEQ_CLS and RoBERTa TOKEN_CLS:
 *   - PEFT's adapter files load and give PEFT's logits: active, disabled, merged, unmerged; saved again
 *     they are PEFT's files byte for byte; counts, print_trainable_parameters() (both formats) and
 *     print(model) as PEFT's;
 *   - the gradient of every ia3_l (and of the classifier copies) after one backward, with and without
 *     activation recompute, and the loss;
 *   - merge_and_unload as a checkpoint: the merged weights and biases as PEFT's, the plain model's logits;
 *   - two adapters: each alone, both active (the product), both gradients through the product, and
 *     add_weighted_adapter (logits, files);
 *   - cpeft's own files (cpeft adapter init) read by PeftModel.from_pretrained, and cpeft's merged
 *     checkpoint read by transformers: the same numbers as cpeft computes;
 *   - 10 AdamW steps (GPT-2, Llama, BERT SEQ_CLS) against PyTorch + PEFT: losses, grad norms, final tensors;
 *   - bad input: PEFT's errors (feedforward_modules not among the targets, naming both; no default
 *     tables for a model type; two peft types on one model) and an ia3_l whose shape does not fit;
 *   - the command line: info --tree, train --peft-type IA3 (a decoder, BERT SEQ_CLS), merge.
 * Every comparison prints the largest difference it saw.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/ia3.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "train/optim.h"
#include "train/step.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define IA3_FIX "tests/fixtures/ia3"
#define TOL_LOGITS 1e-5
#define TOL_GRAD 1e-4

static double worst_logits, worst_grad;

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / fmax(den, 1e-12);
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

static char *read_text(const char *path) {
    char *s = NULL;
    size_t n;
    return cp_read_file(path, &s, &n) == CP_OK ? s : NULL;
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup %s", dir);
}

/* The batch of expected.safetensors (input_ids, attention_mask, labels when there). */
static cp_batch batch_of(const cp_safetensors *st) {
    const cp_st_tensor *ids = cp_st_find(st, "input_ids"), *labels = cp_st_find(st, "labels");
    return (cp_batch){.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data,
                      .attention_mask = cp_st_find(st, "attention_mask")->data, .labels = labels ? labels->data : NULL};
}

/* The model's logits against tensor `name` ((B,T,V) / (B,T,K) at unmasked positions, (B,K) whole). */
static void check_logits(cp_model *m, const cp_safetensors *st, const char *name, const char *label, double tol) {
    const cp_st_tensor *want = cp_st_find(st, name);
    CHECK(want != NULL, "%s: no tensor %s", label, name);
    if (!want) return;
    cp_batch b = batch_of(st);
    b.labels = NULL;
    float *logits = calloc((size_t)want->numel, sizeof *logits);
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &b, &out));
    double worst = 0;
    if (want->ndim == 3) {
        const int64_t V = want->shape[2];
        for (int64_t r = 0; r < b.B * b.T; r++)
            if (b.attention_mask[r]) worst = fmax(worst, test_max_abs_diff(logits + r * V, (const float *)want->data + r * V, (size_t)V));
    } else {
        worst = test_max_abs_diff(logits, want->data, (size_t)want->numel);
    }
    printf("    %-24s %-26s max |diff| %.2e\n", label, name, worst);
    CHECK(worst <= tol, "%s %s: logits differ by %.3e (tolerance %.0e)", label, name, worst, tol);
    if (tol == TOL_LOGITS) worst_logits = fmax(worst_logits, worst);
    free(logits);
}

static cp_model *load_model(const char *dir) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

static void check_counts(cp_model *m, const cJSON *exp, const char *label) {
    int64_t trainable, all;
    cp_model_trainable_parameters(m, &trainable, &all);
    CHECK(trainable == (int64_t)cJSON_GetObjectItem(exp, "trainable")->valuedouble &&
              all == (int64_t)cJSON_GetObjectItem(exp, "all")->valuedouble,
          "%s: counts %lld / %lld not PEFT's", label, (long long)trainable, (long long)all);
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    CHECK(!strcmp(line, cJSON_GetObjectItem(exp, "print_trainable_parameters")->valuestring), "%s: line %s", label, line);
    cp_free(line);
    line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
    CHECK(!strcmp(line, cJSON_GetObjectItem(exp, "notebook_line")->valuestring), "%s: line %s", label, line);
    cp_free(line);
    char *repr = cp_model_peft_repr(m);
    const char *want = cJSON_GetObjectItem(exp, "repr")->valuestring;
    CHECK(repr && !strcmp(repr, want), "%s: repr differs:\n%s\n--- PEFT:\n%s", label, repr, want);
    cp_free(repr);
}

/* One forward + backward with the batch's labels (activations recomputed in the backward pass when
 * `recompute`): the loss and every grad.<prefix><key> tensor. */
static void check_gradients(cp_model *m, const cp_safetensors *st, const char *adapter, const char *prefix, const char *label,
                            int recompute) {
    cp_param **params;
    int n;
    CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    for (int i = 0; i < n; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    cp_batch b = batch_of(st);
    double loss_sum;
    int64_t n_items;
    const int64_t norm = cp_batch_loss_items(m, &b);
    CHECK_OK(cp_model_forward_backward(m, &b, (double)norm, recompute, &loss_sum, &n_items));
    const double loss = loss_sum / (double)n_items, want = *(const float *)cp_st_find(st, "loss")->data;
    CHECK(fabs(loss - want) < 1e-5, "%s: loss %.7f, PEFT %.7f", label, loss, want);
    double worst = 0;
    int matched = 0;
    const size_t plen = strlen(prefix);
    for (int i = 0; i < st->n_tensors; i++) {
        const char *key = st->tensors[i].name;
        if (strncmp(key, prefix, plen)) continue;
        cp_param *p = cp_adapter_find_param(m, adapter, key + plen);
        CHECK(p && p->grad && p->numel == st->tensors[i].numel, "%s: %s has no trained parameter", label, key);
        if (!p || !p->grad) continue;
        double d = rel_diff(p->grad, st->tensors[i].data, p->numel);
        CHECK(d <= TOL_GRAD, "%s: %s relative difference %.3e", label, key, d);
        worst = fmax(worst, d);
        matched++;
    }
    printf("    %-24s loss |diff| %.2e, %d gradients (%s*)%s: max relative diff %.2e\n", label, fabs(loss - want), matched,
           prefix, recompute ? " recomputed" : "", worst);
    CHECK(matched > 0, "%s: no gradient compared", label);
    worst_grad = fmax(worst_grad, worst);
    for (int i = 0; i < n; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    cp_free(params);
}

/* Saves adapter `name` again: PEFT's adapter_config.json (the file in peft_dir, or `want_config`: what
 * PEFT writes after loading it) and adapter_model.safetensors, byte for byte. */
static void check_resave(cp_model *m, const char *name, const char *peft_dir, const char *want_config, const char *label) {
    char dir[] = "/tmp/cpeft-ia3-XXXXXX", out[600], a[700], b[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", dir);
    CHECK_OK(cp_adapter_save(m, name, out));
    snprintf(a, sizeof a, "%s/adapter_config.json", out);
    snprintf(b, sizeof b, "%s/adapter_config.json", peft_dir);
    char *text = read_text(a);
    CHECK(want_config ? text && !strcmp(text, want_config) : files_equal(a, b), "%s: adapter_config.json differs from PEFT's:\n%s",
          label, text ? text : "?");
    cp_free(text);
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", peft_dir);
    CHECK(files_equal(a, b), "%s: adapter_model.safetensors differs from PEFT's", label);
    rm_rf(dir);
}

/* merge_and_unload written by cpeft: the merged weights and biases as PEFT's, the plain model's logits. */
static void check_merged_checkpoint(cp_model *m, const cp_safetensors *st, const char *label) {
    char dir[] = "/tmp/cpeft-ia3-merged-XXXXXX", out[600], path[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/merged", dir);
    CHECK_OK(cp_model_save_merged(m, out));
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    cp_safetensors merged;
    if (cp_st_open(&merged, path) == CP_OK) {
        double worst = 0;
        int n = 0;
        for (int i = 0; i < st->n_tensors; i++) {
            const char *key = st->tensors[i].name;
            if (strncmp(key, "merged.", 7)) continue;
            const cp_st_tensor *t = cp_st_find(&merged, key + 7);
            CHECK(t && t->dtype == CP_F32 && t->numel == st->tensors[i].numel, "%s: merged tensor %s missing", label, key + 7);
            if (!t || t->numel != st->tensors[i].numel) continue;
            worst = fmax(worst, rel_diff(t->data, st->tensors[i].data, t->numel));
            n++;
        }
        printf("    %-24s merged weights and biases: %d tensors, max relative diff %.2e\n", label, n, worst);
        CHECK(n > 0 && worst <= 1e-6, "%s: merged tensors differ by %.3e", label, worst);
        cp_st_close(&merged);
    } else {
        CHECK(0, "%s: %s", label, cp_last_error());
    }
    cp_model *plain = load_model(out);
    if (plain) check_logits(plain, st, "logits_merged_unloaded", label, TOL_LOGITS);
    cp_model_free(plain);
    rm_rf(dir);
}

static void run_case(const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, IA3_FIX "/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    printf("  %s: %s\n", name, cJSON_GetObjectItem(exp, "description")->valuestring);
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    if (m && m->peft) {
        CHECK(!strcmp(cp_model_task_type(m), cJSON_GetObjectItem(exp, "task_type")->valuestring), "%s: task %s", name,
              cp_model_task_type(m));
        check_counts(m, exp, name);
        check_logits(m, &st, "logits", name, TOL_LOGITS);
        cp_peft_set_disabled(m, 1);
        check_logits(m, &st, "logits_disabled", name, TOL_LOGITS);
        cp_peft_set_disabled(m, 0);
        check_gradients(m, &st, "default", "grad.", name, 0);
        check_gradients(m, &st, "default", "grad.", name, 1);
        check_resave(m, "default", dir, cJSON_GetObjectItem(exp, "peft_resaved_config")->valuestring, name);
        CHECK_OK(cp_peft_merge(m));
        check_logits(m, &st, "logits_merged", name, TOL_LOGITS);
        CHECK_OK(cp_peft_unmerge(m));
        check_logits(m, &st, "logits_unmerged", name, TOL_LOGITS);
        check_merged_checkpoint(m, &st, name);
    }
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

TEST(peft_files_give_peft_numbers) {
    run_case("gpt2_default");
    run_case("neo_all_linear");
    run_case("llama_bias_default");
    run_case("bert_seqcls");
    run_case("deberta_seqcls");
    run_case("qwen2_seqcls");
    run_case("roberta_tokcls_regex");
}

TEST(two_adapters_multiply) {
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(IA3_FIX "/multi/expected.json", &exp));
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, IA3_FIX "/multi/expected.safetensors"));
    cp_model *m = exp ? load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring) : NULL;
    if (!m) { cJSON_Delete(exp); return; }
    CHECK_OK(cp_adapter_load(m, IA3_FIX "/multi", "default", 1, 1));
    CHECK_OK(cp_adapter_load(m, IA3_FIX "/multi/two", "two", 0, 1));
    check_logits(m, &st, "logits_default", "multi", TOL_LOGITS);
    const char *two[] = {"two"}, *both[] = {"default", "two"};
    CHECK_OK(cp_peft_set_active(m, two, 1));
    check_logits(m, &st, "logits_two", "multi", TOL_LOGITS);
    CHECK_OK(cp_peft_set_active(m, both, 2));
    check_logits(m, &st, "logits_both", "multi", TOL_LOGITS);
    check_gradients(m, &st, "default", "grad.default.", "multi", 0);
    check_gradients(m, &st, "two", "grad.two.", "multi", 0);
    check_resave(m, "two", IA3_FIX "/multi/two", NULL, "multi two");
    /* add_weighted_adapter: Σ w·ia3_l over the union of the targets, a frozen new adapter */
    const char *pair[] = {"default", "two"}, *combo[] = {"combo"};
    const double w[] = {0.7, -0.4};
    CHECK_OK(cp_model_add_weighted_adapter(m, pair, w, 2, "combo", "linear"));
    CHECK_ERR(cp_model_add_weighted_adapter(m, pair, w, 2, "combo2", "cat"), "PEFT's IA3 has no combination_type");
    CHECK_OK(cp_peft_set_active(m, combo, 1));
    check_logits(m, &st, "logits_combo", "multi", TOL_LOGITS);
    check_resave(m, "combo", IA3_FIX "/multi/combo", NULL, "multi combo");
    CHECK_OK(cp_peft_set_active(m, both, 2));
    check_counts(m, exp, "multi"); /* default and two trainable, combo frozen */
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

/* cpeft -> PEFT: the adapter cpeft writes from the config and seed is the committed one, byte for byte;
 * cpeft's logits on it are what PeftModel.from_pretrained computed from it, and cpeft's merged
 * checkpoint gives what transformers computed from it. */
static void roundtrip_case(const char *name) {
    char dir[256], path[320], adapter[320];
    snprintf(dir, sizeof dir, IA3_FIX "/roundtrip/%s", name);
    snprintf(adapter, sizeof adapter, "%s/adapter", dir);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    const char *base = cJSON_GetObjectItem(exp, "base_dir")->valuestring;
    cp_model *m = load_model(base);
    if (m) {
        snprintf(path, sizeof path, "%s/peft_config.json", dir);
        CHECK_OK(cp_model_add_adapter(m, "default", path, (uint64_t)cJSON_GetObjectItem(exp, "seed")->valuedouble));
        check_resave(m, "default", adapter, NULL, name);
    }
    cp_model_free(m);
    m = load_model(base);
    if (m) {
        CHECK_OK(cp_adapter_load(m, adapter, "default", 1, 0));
        check_logits(m, &st, "logits_peft", name, TOL_LOGITS);
        char tmp[] = "/tmp/cpeft-ia3-rt-XXXXXX", out[400];
        CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
        snprintf(out, sizeof out, "%s/merged", tmp);
        CHECK_OK(cp_model_save_merged(m, out));
        cp_model *plain = load_model(out);
        if (plain) check_logits(plain, &st, "logits_merged_transformers", name, TOL_LOGITS);
        cp_model_free(plain);
        rm_rf(tmp);
    }
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

TEST(cpeft_files_give_the_same_numbers_in_peft) {
    roundtrip_case("rt_gpt2");
    roundtrip_case("rt_llama_bias");
    roundtrip_case("rt_bert_seqcls");
}

/* 10 AdamW steps (warmup, linear decay, accumulation 2, clipping 1.0) as the fixture's PyTorch loop. */
static void steps_case(const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, IA3_FIX "/steps/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    cp_param **params = NULL;
    int n = 0;
    if (!m || !m->peft || cp_peft_trainable_params(m, &params, &n) != CP_OK) {
        CHECK(0, "%s: setup", name);
        cp_model_free(m);
        cJSON_Delete(exp);
        return;
    }
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    const cJSON *cfg = cJSON_GetObjectItem(exp, "config"), *betas = cJSON_GetObjectItem(cfg, "betas");
    cp_adamw_config oc = {cJSON_GetObjectItem(cfg, "lr")->valuedouble, cJSON_GetArrayItem(betas, 0)->valuedouble,
                          cJSON_GetArrayItem(betas, 1)->valuedouble, cJSON_GetObjectItem(cfg, "eps")->valuedouble,
                          cJSON_GetObjectItem(cfg, "weight_decay")->valuedouble};
    cp_adamw opt;
    CHECK_OK(cp_adamw_init(&opt, params, n, oc));
    const int64_t steps = (int64_t)cJSON_GetObjectItem(cfg, "num_training_steps")->valuedouble;
    const int64_t warmup = (int64_t)cJSON_GetObjectItem(cfg, "num_warmup_steps")->valuedouble;
    const int ga = (int)cJSON_GetObjectItem(cfg, "gradient_accumulation_steps")->valuedouble;
    double worst_loss = 0, worst_norm = 0, worst_lr = 0;
    for (int64_t s = 0; s < steps; s++) {
        cp_batch micro[8];
        for (int i = 0; i < ga && i < 8; i++) {
            char k[4][40];
            const int idx = (int)(s * ga + i);
            snprintf(k[0], sizeof k[0], "input_ids_%d", idx);
            snprintf(k[1], sizeof k[1], "attention_mask_%d", idx);
            snprintf(k[2], sizeof k[2], "labels_%d", idx);
            snprintf(k[3], sizeof k[3], "token_type_ids_%d", idx);
            const cp_st_tensor *t = cp_st_find(&st, k[0]), *tt = cp_st_find(&st, k[3]);
            micro[i] = (cp_batch){.B = t->shape[0], .T = t->shape[1], .input_ids = t->data,
                                  .attention_mask = cp_st_find(&st, k[1])->data, .labels = cp_st_find(&st, k[2])->data,
                                  .token_type_ids = tt ? tt->data : NULL};
        }
        const double lr = oc.lr * cp_schedule_factor(CP_SCHED_LINEAR, s, warmup, steps);
        cp_step_result res;
        CHECK_OK(cp_train_step(m, &opt, micro, ga, lr, cJSON_GetObjectItem(cfg, "max_grad_norm")->valuedouble, 0, 1, &res));
        const double wn = cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "grad_norms"), (int)s)->valuedouble;
        worst_loss = fmax(worst_loss, fabs(res.loss - cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "losses"), (int)s)->valuedouble));
        worst_norm = fmax(worst_norm, fabs(res.grad_norm - wn) / wn);
        worst_lr = fmax(worst_lr, fabs(lr - cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "lrs"), (int)s)->valuedouble));
    }
    double worst_final = 0;
    int matched = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const char *key = st.tensors[i].name;
        if (strncmp(key, "final.", 6)) continue;
        cp_param *p = cp_adapter_find_param(m, "default", key + 6);
        CHECK(p != NULL, "%s: %s not in the model", name, key);
        if (!p) continue;
        worst_final = fmax(worst_final, rel_diff(p->data, st.tensors[i].data, p->numel));
        matched++;
    }
    printf("  %-14s 10 steps vs PyTorch + PEFT: |loss diff| %.2e, grad norm rel %.2e, lr %.1e, final tensors rel %.2e (%d)\n",
           name, worst_loss, worst_norm, worst_lr, worst_final, matched);
    CHECK(worst_loss < 1e-5, "%s: losses differ by %.3e", name, worst_loss);
    CHECK(worst_norm < 1e-4, "%s: grad norms differ by %.3e", name, worst_norm);
    CHECK(worst_lr < 1e-12, "%s: learning rates differ by %.3e", name, worst_lr);
    CHECK(worst_final < 1e-4 && matched == n, "%s: final adapter differs by %.3e (%d/%d tensors)", name, worst_final, matched, n);
    cp_adamw_free(&opt);
    cp_free(params);
    cp_st_close(&st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(ten_adamw_steps_match_peft) {
    steps_case("gpt2_default");
    steps_case("llama_qkv_mlp");
    steps_case("bert_seqcls");
}

/* ---- bad input ------------------------------------------------------------------------------------ */

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "%s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const char *peft_message(const cJSON *errors, const char *key) {
    const char *s = cJSON_GetObjectItem(errors, key)->valuestring;
    const char *colon = strstr(s, ": "); /* "ValueError: ..." */
    return colon ? colon + 2 : s;
}

TEST(bad_input_is_refused_clearly) {
    cJSON *errors = NULL;
    CHECK_OK(cp_json_read_file(IA3_FIX "/errors.json", &errors));
    if (!errors) return;
    char dir[] = "/tmp/cpeft-ia3-bad-XXXXXX", path[300], cmd[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");

    /* feedforward_modules not among target_modules: PEFT's message, and both lists */
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_file(path, "{\"peft_type\": \"IA3\", \"target_modules\": [\"k_proj\", \"v_proj\"], \"feedforward_modules\": [\"down_proj\"]}");
    cp_peft_config *cfg = NULL;
    CHECK_ERR(cp_peft_config_load(path, &cfg), peft_message(errors, "feedforward_not_subset"));
    CHECK_ERR(cp_peft_config_load(path, &cfg), "feedforward_modules {'down_proj'}, target_modules {'k_proj', 'v_proj'}");
    CHECK(strstr(cp_last_error(), path) != NULL, "the message names the file: %s", cp_last_error());
    printf("    %s\n", cp_last_error());

    /* PEFT's own all-linear adapter with feed-forward names: saved with the full target names, of which the
     * feed-forward names are no subset, so PEFT refuses to load it; so does cpeft */
    write_file(path, cJSON_GetObjectItem(errors, "all_linear_reload_config")->valuestring);
    CHECK_ERR(cp_peft_config_load(path, &cfg), peft_message(errors, "all_linear_reload"));

    /* no default tables for the model type (DistilBERT): PEFT's messages, targets first */
    cp_model *m = load_model(cJSON_GetObjectItem(errors, "distilbert_base")->valuestring);
    if (m) {
        write_file(path, "{\"peft_type\": \"IA3\", \"task_type\": \"SEQ_CLS\"}");
        CHECK_ERR(cp_model_add_adapter(m, "default", path, 0), peft_message(errors, "no_default_targets"));
        printf("    %s\n", cp_last_error());
        write_file(path, "{\"peft_type\": \"IA3\", \"task_type\": \"SEQ_CLS\", \"target_modules\": [\"q_lin\"]}");
        CHECK_ERR(cp_model_add_adapter(m, "default", path, 0), peft_message(errors, "no_default_feedforward"));
        printf("    %s\n", cp_last_error());
        CHECK(!m->peft || m->peft->n == 0, "nothing of a refused adapter is left");
    }
    cp_model_free(m);

    /* an IA3 and a LoRA adapter on one model: PEFT's error */
    m = load_model("tests/fixtures/models/gpt2_tiny");
    if (m) {
        CHECK_OK(cp_adapter_load(m, IA3_FIX "/gpt2_default", "default", 1, 0));
        CHECK_ERR(cp_adapter_load(m, "tests/fixtures/lora/gpt2_default_conv1d", "lora", 0, 0),
                  "Cannot combine adapters with different peft types. Found IA3 and LORA.");
        printf("    %s\n", cp_last_error());
        CHECK(m->peft->n == 1, "the LoRA adapter was not added");
    }
    cp_model_free(m);

    /* an ia3_l whose shape does not fit its module: the config says mlp.c_proj is not feed-forward, so its
     * vector scales the 32 outputs ([32, 1]); the file holds PEFT's [1, 128] input vector */
    snprintf(cmd, sizeof cmd, "cp " IA3_FIX "/gpt2_default/adapter_model.safetensors '%s/'", dir);
    CHECK(system(cmd) == 0, "copy");
    char *text = NULL;
    size_t text_len = 0;
    CHECK_OK(cp_read_file(IA3_FIX "/gpt2_default/adapter_config.json", &text, &text_len));
    if (text) { /* feedforward_modules: ["mlp.c_proj"] -> [] */
        static const char from[] = "\"feedforward_modules\": [\n    \"mlp.c_proj\"\n  ]";
        const char *at = strstr(text, from);
        CHECK(at != NULL, "the fixture's feedforward_modules");
        if (at) {
            char fixed[4096];
            const int head = (int)(at - text);
            snprintf(fixed, sizeof fixed, "%.*s\"feedforward_modules\": []%s", head, text, text + head + strlen(from));
            write_file(path, fixed);
        }
        cp_free(text);
    }
    m = load_model("tests/fixtures/models/gpt2_tiny");
    if (m) {
        CHECK_ERR(cp_adapter_load(m, dir, "default", 1, 0), "tensor \"base_model.model.transformer.h.0.mlp.c_proj.ia3_l\" has shape [1, 128]");
        CHECK(strstr(cp_last_error(), "[32, 1]") != NULL, "the message gives the shape the model needs: %s", cp_last_error());
        printf("    %s\n", cp_last_error());
        CHECK(!m->peft || m->peft->n == 0, "nothing of a refused adapter is left");
    }
    cp_model_free(m);
    rm_rf(dir);
    cJSON_Delete(errors);
}

/* A fresh adapter (init_ia3_weights true: ones) changes nothing; init false draws N(0, 1). */
TEST(default_init_is_a_no_op) {
    cp_model *m = load_model("tests/fixtures/models/gpt2_tiny");
    if (!m) return;
    char dir[] = "/tmp/cpeft-ia3-init-XXXXXX", path[300];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/c.json", dir);
    write_file(path, "{\"peft_type\": \"IA3\", \"task_type\": \"CAUSAL_LM\"}");
    const int64_t ids[6] = {5, 9, 17, 33, 2, 71}, mask[6] = {1, 1, 1, 1, 1, 1};
    cp_batch b = {.B = 1, .T = 6, .input_ids = ids, .attention_mask = mask};
    const int64_t V = cp_model_vocab_size(m);
    float *base = malloc((size_t)(6 * V) * sizeof *base), *with = malloc((size_t)(6 * V) * sizeof *with);
    cp_outputs o1 = {.logits = base}, o2 = {.logits = with};
    CHECK_OK(cp_model_forward(m, &b, &o1));
    CHECK_OK(cp_model_add_adapter(m, "default", path, 3));
    CHECK_OK(cp_model_forward(m, &b, &o2));
    double d = test_max_abs_diff(base, with, (size_t)(6 * V));
    printf("    ones: max |diff| from the base model %.2e\n", d);
    CHECK(d == 0, "a fresh IA3 adapter changes the logits by %.3e", d);
    cp_module **mods;
    int n;
    CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &n));
    CHECK(n == 4, "%d modules carry the adapter, PEFT's defaults adapt 4", n);
    for (int i = 0; i < n; i++) {
        const cp_ia3_adapter *a = cp_ia3_find(mods[i], "default");
        int ones = 1;
        for (int64_t k = 0; k < a->l->numel; k++) ones &= a->l->data[k] == 1.0f;
        CHECK(ones, "%s: ia3_l is not all ones", mods[i]->path);
    }
    cp_free(mods);
    free(base);
    free(with);
    cp_model_free(m);
    rm_rf(dir);
}

/* ---- the command line ------------------------------------------------------------------------------- */

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* `cpeft info --peft-config --tree` prints PEFT's print(model) and print_trainable_parameters(); `cpeft train
 * --peft-type IA3` trains an IA3 adapter (decoder and SEQ_CLS), `cpeft merge` merges it into a checkpoint that
 * computes what the adapter computes. */
TEST(cli_info_train_merge) {
    static char out[1 << 16];
    char dir[] = "/tmp/cpeft-ia3-cli-XXXXXX", cmd[3000], path[300];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(IA3_FIX "/gpt2_default/expected.json", &exp));
    snprintf(path, sizeof path, "%s/c.json", dir);
    write_file(path, "{\"peft_type\": \"IA3\", \"task_type\": \"CAUSAL_LM\", \"init_ia3_weights\": false}");
    snprintf(cmd, sizeof cmd, "%s info tests/fixtures/models/gpt2_tiny --peft-config %s --tree --peft-format current", bin(), path);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 0, "%s", out);
    if (exp) {
        CHECK(strstr(out, cJSON_GetObjectItem(exp, "repr")->valuestring) != NULL, "info --tree:\n%s", out);
        CHECK(strstr(out, cJSON_GetObjectItem(exp, "print_trainable_parameters")->valuestring) != NULL, "info:\n%s", out);
    }
    cJSON_Delete(exp);

    /* a decoder: IA3 from flags, then merged */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/tm && cp tests/fixtures/eval/gpt2_vocab/config.json tests/fixtures/eval/gpt2_vocab/model.safetensors "
             "../shared/data/gpt2-tokenizer/tokenizer.json %s/tm/ && %s train --model %s/tm --data ../shared/data/alpaca-subset/alpaca_tiny.json "
             "--max-steps 4 --per-device-train-batch-size 2 --learning-rate 5e-2 --logging-steps 2 --save-steps 0 --max-seq-length 64 "
             "--seed 3 --progress lines --peft-type IA3 --target-modules c_attn,c_fc,mlp.c_proj --feedforward-modules c_fc,mlp.c_proj "
             "--output-dir %s/o1", dir, dir, bin(), dir, dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 0 && strstr(out, "step 4/4 | loss "), "%s", out);
    snprintf(path, sizeof path, "%s/o1/adapter_config.json", dir);
    cp_peft_config *cfg = NULL;
    CHECK_OK(cp_peft_config_load(path, &cfg));
    CHECK(cfg && cfg->method == &cp_ia3_method && ((cp_ia3_config *)cfg)->n_feedforward_modules == 2, "the saved adapter is IA3's");
    cp_peft_config_free(cfg);
    snprintf(cmd, sizeof cmd, "%s merge --model %s/tm --adapter %s/o1 --out %s/merged", bin(), dir, dir, dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/tm", dir);
    cp_model *m = load_model(path);
    snprintf(path, sizeof path, "%s/merged", dir);
    cp_model *merged = load_model(path);
    if (m && merged) {
        snprintf(path, sizeof path, "%s/o1", dir);
        CHECK_OK(cp_model_load_adapter(m, path, "default", 0));
        const char *names[] = {"default"};
        CHECK_OK(cp_model_set_adapters(m, names, 1));
        int64_t ids[8] = {464, 2068, 7586, 21831, 18045, 625, 262, 16931}, mask[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        cp_batch b = {.B = 1, .T = 8, .input_ids = ids, .attention_mask = mask};
        const int64_t V = cp_model_vocab_size(m);
        float *x = malloc((size_t)(8 * V) * sizeof *x), *y = malloc((size_t)(8 * V) * sizeof *y), *z = malloc((size_t)(8 * V) * sizeof *z);
        cp_outputs ox = {.logits = x}, oy = {.logits = y}, oz = {.logits = z};
        CHECK_OK(cp_model_forward(m, &b, &ox));
        CHECK_OK(cp_model_forward(merged, &b, &oy));
        cp_model_disable_adapters(m, 1);
        CHECK_OK(cp_model_forward(m, &b, &oz));
        const double d = test_max_abs_diff(x, y, (size_t)(8 * V)), moved = test_max_abs_diff(x, z, (size_t)(8 * V));
        printf("    cpeft train --peft-type IA3 + cpeft merge (BF16 checkpoint): merged vs adapter logits max |diff| %.2e (the "
               "trained adapter moves them by %.2e)\n", d, moved);
        /* this model is stored in BF16 and the merged checkpoint keeps its dtype: the merged weights are rounded
         * to BF16 (the exact merge is checked against PEFT's above, in f32) */
        CHECK(d <= 2e-2, "the merged checkpoint differs from the adapter by %.3e", d);
        CHECK(moved > 1e-4, "training left the IA3 adapter at ones (logits moved %.3e)", moved);
        free(x);
        free(y);
        free(z);
    }
    cp_model_free(m);
    cp_model_free(merged);

    /* SEQ_CLS on an encoder: the classifier joins modules_to_save as PEFT's wrapper adds it */
    snprintf(cmd, sizeof cmd, "%s train --model tests/fixtures/clstrain/tiny_bert --task-type SEQ_CLS --data "
             "tests/fixtures/clstrain/data/seq_train.tsv --eval-data tests/fixtures/clstrain/data/seq_eval.tsv --max-steps 4 "
             "--per-device-train-batch-size 4 --learning-rate 1e-2 --logging-steps 2 --save-steps 0 --seed 3 --progress lines "
             "--peft-type IA3 --output-dir %s/o2", bin(), dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 0 && strstr(out, "eval loss"), "%s", out);
    snprintf(cmd, sizeof cmd, "grep -c '\"peft_type\": \"IA3\"\\|\"classifier\"' %s/o2/adapter_config.json", dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 0 && atoi(out) == 2, "saved config: %s", out);

    /* usage errors: exit 2, named */
    snprintf(cmd, sizeof cmd, "%s train --model tests/fixtures/models/gpt2_tiny --data x --output-dir %s/o3 --peft-type IA3 "
             "--target-modules c_attn --feedforward-modules mlp.c_proj", bin(), dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 2 && strstr(out, "`feedforward_modules` should be a subset of `target_modules`") &&
              strstr(out, "feedforward_modules {'mlp.c_proj'}, target_modules {'c_attn'}"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s train --model tests/fixtures/models/gpt2_tiny --data x --output-dir %s/o3 --peft-type IA3 --lora-r 4",
             bin(), dir);
    CHECK(run_cmdf(out, sizeof out, "%s", cmd) == 2 && strstr(out, "--peft-type is IA3"), "%s", out);
    rm_rf(dir);
}

int main(void) {
    RUN(peft_files_give_peft_numbers);
    RUN(two_adapters_multiply);
    RUN(cpeft_files_give_the_same_numbers_in_peft);
    RUN(ten_adamw_steps_match_peft);
    RUN(bad_input_is_refused_clearly);
    RUN(default_init_is_a_no_op);
    RUN(cli_info_train_merge);
    printf("  logits: max |diff| %.2e over all comparisons (tolerance %.0e); gradients: max relative diff %.2e (%.0e)\n",
           worst_logits, TOL_LOGITS, worst_grad, TOL_GRAD);
    return test_summary();
}
