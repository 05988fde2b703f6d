/*
 * seq2seq_check.h — the checks the encoder-decoder parity tests share (test_t5.c, test_bart.c), each
 * reading a fixture directory `fix` written by tests/reference/make_<arch>_fixtures.py:
 *   s2s_model_case      logits (labels shifted into decoder inputs, and explicit decoder_input_ids), loss,
 *                       parameter count, lm_head tie and print(model) of one tiny model;
 *   s2s_peft_case       PEFT's adapter: counts, repr, logits, every gradient (with and without recompute),
 *                       which stack trains, the files saved again byte for byte;
 *   s2s_roundtrip_case  cpeft's own adapter (cpeft adapter init) against PEFT's logits from it, and cpeft's
 *                       merged checkpoint of it loaded again: the same logits;
 *   s2s_steps_case      10 AdamW steps against PyTorch + PEFT.
 * Every comparison prints the largest difference it saw; worst_logits / worst_grad keep the maxima.
 */
#ifndef CP_TESTS_SEQ2SEQ_CHECK_H
#define CP_TESTS_SEQ2SEQ_CHECK_H

#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/optim.h"
#include "train/step.h"

#include <stdlib.h>
#include <unistd.h>

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

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup %s", dir);
}

static cp_model *load_model(const char *dir) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

/* The batch of an expected.safetensors: encoder input_ids / attention_mask, labels (B,Td) and decoder_attention_mask. */
static cp_batch batch_of(const cp_safetensors *st) {
    const cp_st_tensor *ids = cp_st_find(st, "input_ids"), *labels = cp_st_find(st, "labels");
    const cp_st_tensor *dmask = cp_st_find(st, "decoder_attention_mask");
    return (cp_batch){.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data,
                      .attention_mask = cp_st_find(st, "attention_mask")->data, .labels = labels ? labels->data : NULL,
                      .Td = labels ? labels->shape[1] : 0, .decoder_attention_mask = dmask ? dmask->data : NULL};
}

/* Logits (B,Td,V) of batch b against tensor `name`, and the loss when `loss` (the fixture's) is given. */
static void check_logits_of(cp_model *m, const cp_batch *b, const cp_safetensors *st, const char *name, const char *label,
                            const float *loss) {
    const cp_st_tensor *want = cp_st_find(st, name);
    CHECK(want != NULL, "%s: no tensor %s", label, name);
    if (!want) return;
    float *logits = calloc((size_t)want->numel, sizeof *logits);
    const cp_st_tensor *hs = loss ? cp_st_find(st, "decoder_hidden_states") : NULL; /* (L_dec+1,B,Td,C) */
    float *hidden = hs ? calloc((size_t)hs->numel, sizeof *hidden) : NULL;
    cp_outputs out = {.logits = logits, .hidden_states = hidden};
    CHECK_OK(cp_model_forward(m, b, &out));
    const double worst = test_max_abs_diff(logits, want->data, (size_t)want->numel);
    printf("    %-22s %-16s max |diff| %.2e", label, name, worst);
    if (hs) {
        const double h = test_max_abs_diff(hidden, hs->data, (size_t)hs->numel);
        printf(", decoder hidden states |diff| %.2e", h);
        CHECK(h <= TOL_LOGITS, "%s: decoder hidden states differ by %.3e", label, h);
        free(hidden);
    }
    if (loss) printf(", loss |diff| %.2e", fabs(out.loss - *loss));
    printf("\n");
    CHECK(worst <= TOL_LOGITS, "%s %s: logits differ by %.3e", label, name, worst);
    if (loss) CHECK(fabs(out.loss - *loss) <= 1e-5, "%s: loss %.7f, transformers %.7f", label, out.loss, *loss);
    worst_logits = fmax(worst_logits, worst);
    free(logits);
}

static void s2s_model_case(const char *fix, const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/%s", fix, name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_OK(cp_st_open(&st, path));
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    if (m) {
        CHECK(!strcmp(cp_model_task_type(m), "SEQ_2_SEQ_LM"), "%s: task %s", name, cp_model_task_type(m));
        cp_batch b = batch_of(&st);
        check_logits_of(m, &b, &st, "logits", name, cp_st_find(&st, "loss")->data);
        const cp_st_tensor *dec = cp_st_find(&st, "decoder_input_ids");
        if (dec) { /* explicit decoder inputs, no labels, no decoder mask */
            cp_batch e = {.B = b.B, .T = b.T, .input_ids = b.input_ids, .attention_mask = b.attention_mask, .Td = dec->shape[1],
                          .decoder_input_ids = dec->data};
            check_logits_of(m, &e, &st, "logits_dec_ids", name, NULL);
        }
        const int64_t n = cp_model_num_parameters(m), want = (int64_t)cJSON_GetObjectItem(exp, "num_parameters")->valuedouble;
        CHECK(n == want, "%s: %lld parameters, transformers %lld", name, (long long)n, (long long)want);
        CHECK((m->lm_head->weight->tied_to != NULL) == cJSON_IsTrue(cJSON_GetObjectItem(exp, "lm_head_tied")), "%s: lm_head tie",
              name);
        char *repr = cp_model_repr(m);
        const char *wr = cJSON_GetObjectItem(exp, "repr")->valuestring;
        CHECK(repr && !strcmp(repr, wr), "%s: repr differs:\n%s\n--- transformers:\n%s", name, repr, wr);
        free(repr);
    }
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
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
    char *repr = cp_model_peft_repr(m);
    const char *want = cJSON_GetObjectItem(exp, "repr")->valuestring;
    CHECK(repr && !strcmp(repr, want), "%s: repr differs:\n%s\n--- PEFT:\n%s", label, repr, want);
    cp_free(repr);
}

/* One forward + backward of the batch's mean loss: the loss and every grad.<key> tensor. */
static void check_gradients(cp_model *m, const cp_safetensors *st, const char *label, int recompute) {
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
    CHECK(n_items == norm && fabs(loss - want) < 1e-5, "%s: loss %.7f over %lld, PEFT %.7f", label, loss, (long long)n_items, want);
    double worst = 0;
    int matched = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *key = st->tensors[i].name;
        if (strncmp(key, "grad.", 5)) continue;
        cp_param *p = cp_adapter_find_param(m, "default", key + 5);
        CHECK(p && p->grad && p->numel == st->tensors[i].numel, "%s: %s has no trained parameter", label, key);
        if (!p || !p->grad) continue;
        const double d = rel_diff(p->grad, st->tensors[i].data, p->numel);
        CHECK(d <= TOL_GRAD, "%s: %s relative difference %.3e", label, key, d);
        worst = fmax(worst, d);
        matched++;
    }
    printf("    %-22s loss |diff| %.2e, %d gradients%s: max relative diff %.2e\n", label, fabs(loss - want), matched,
           recompute ? " (recomputed)" : "", worst);
    CHECK(matched == n, "%s: %d of %d gradients compared", label, matched, n);
    worst_grad = fmax(worst_grad, worst);
    for (int i = 0; i < n; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    cp_free(params);
}

/* Saves the adapter again: PEFT's adapter_config.json and adapter_model.safetensors, byte for byte. */
static void check_resave(cp_model *m, const char *peft_dir, const char *label) {
    char dir[] = "/tmp/cpeft-s2s-XXXXXX", out[600], a[700], b[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", dir);
    CHECK_OK(cp_adapter_save(m, "default", out));
    const char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", out, files[i]);
        snprintf(b, sizeof b, "%s/%s", peft_dir, files[i]);
        CHECK(files_equal(a, b), "%s: %s differs from PEFT's", label, files[i]);
    }
    rm_rf(dir);
}

static void s2s_peft_case(const char *fix, const char *kind, const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/%s/%s", fix, kind, name);
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
        check_counts(m, exp, name);
        cp_batch b = batch_of(&st);
        check_logits_of(m, &b, &st, "logits", name, cp_st_find(&st, "loss")->data);
        check_gradients(m, &st, name, 0);
        check_gradients(m, &st, name, 1);
        /* whether the encoder's backward runs at all (the gradient buffers exist from the first backward on) */
        const int enc = cp_stack_trains(m, &m->encoder_stack);
        CHECK(enc == cJSON_IsTrue(cJSON_GetObjectItem(exp, "encoder_trains")), "%s: the encoder %s", name,
              enc ? "trains" : "does not train");
        check_resave(m, dir, name);
    }
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

/* cpeft -> PEFT: the adapter cpeft initialises (committed, made by `cpeft adapter init`) is what cpeft makes
 * again from the config and seed, and PEFT's logits from it are cpeft's. */
static void s2s_roundtrip_case(const char *fix, const char *name) {
    char dir[256], path[320], adapter[320];
    snprintf(dir, sizeof dir, "%s/roundtrip/%s", fix, name);
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
        check_resave(m, adapter, name);
        cp_batch b = batch_of(&st);
        b.labels = NULL; /* PEFT's logits came from the labels' decoder inputs: keep them, no loss */
        const cp_st_tensor *lab = cp_st_find(&st, "labels");
        int64_t *dec = malloc((size_t)lab->numel * sizeof *dec);
        for (int64_t r = 0; r < b.B; r++)
            for (int64_t t = 0; t < b.Td; t++) {
                const int64_t y = t ? ((const int64_t *)lab->data)[r * b.Td + t - 1] : m->config.decoder_start_token_id;
                dec[r * b.Td + t] = y == -100 ? m->config.pad_token_id : y;
            }
        b.decoder_input_ids = dec;
        check_logits_of(m, &b, &st, "logits_peft", name, NULL);
        /* merge_and_unload written by cpeft, read by transformers: the same logits here */
        char tmp[] = "/tmp/cpeft-s2s-merged-XXXXXX", out[400];
        CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
        snprintf(out, sizeof out, "%s/merged", tmp);
        CHECK_OK(cp_model_save_merged(m, out));
        cp_model *plain = load_model(out);
        if (plain) check_logits_of(plain, &b, &st, "logits_merged_transformers", name, NULL);
        cp_model_free(plain);
        rm_rf(tmp);
        free(dec);
    }
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

/* 10 AdamW steps (warmup, linear decay, accumulation 2, clipping 1.0) of the adapter in dir as the fixture's PyTorch
 * loop ran them, the model's dropout off on both sides. */
static void s2s_steps_case(const char *dir, const char *label) {
    char path[320];
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    if (m) CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    cp_param **params = NULL;
    int n = 0;
    if (!m || !m->peft || cp_peft_trainable_params(m, &params, &n) != CP_OK) {
        CHECK(0, "steps: setup");
        cp_model_free(m);
        cJSON_Delete(exp);
        return;
    }
    m->model_dropout = 0;
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
            char k[3][40];
            const int idx = (int)(s * ga + i);
            snprintf(k[0], sizeof k[0], "input_ids_%d", idx);
            snprintf(k[1], sizeof k[1], "attention_mask_%d", idx);
            snprintf(k[2], sizeof k[2], "labels_%d", idx);
            const cp_st_tensor *t = cp_st_find(&st, k[0]), *l = cp_st_find(&st, k[2]);
            micro[i] = (cp_batch){.B = t->shape[0], .T = t->shape[1], .input_ids = t->data,
                                  .attention_mask = cp_st_find(&st, k[1])->data, .labels = l->data, .Td = l->shape[1]};
        }
        const double lr = oc.lr * cp_schedule_factor(CP_SCHED_LINEAR, s, warmup, steps);
        cp_step_result res;
        CHECK_OK(cp_train_step(m, &opt, micro, ga, lr, cJSON_GetObjectItem(cfg, "max_grad_norm")->valuedouble, s % 2, 1, &res));
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
        CHECK(p != NULL, "steps: %s not in the model", key);
        if (!p) continue;
        worst_final = fmax(worst_final, rel_diff(p->data, st.tensors[i].data, p->numel));
        matched++;
    }
    printf("  %s 10 steps vs PyTorch + PEFT (odd steps recomputed): |loss diff| %.2e, grad norm rel %.2e, lr %.1e, "
           "final tensors rel %.2e (%d)\n", label, worst_loss, worst_norm, worst_lr, worst_final, matched);
    CHECK(worst_loss < 1e-5, "steps: losses differ by %.3e", worst_loss);
    CHECK(worst_norm < 1e-4, "steps: grad norms differ by %.3e", worst_norm);
    CHECK(worst_lr < 1e-12, "steps: learning rates differ by %.3e", worst_lr);
    CHECK(worst_final < 1e-4 && matched == n, "steps: final adapter differs by %.3e (%d/%d tensors)", worst_final, matched, n);
    cp_adamw_free(&opt);
    cp_free(params);
    cp_st_close(&st);
    cp_model_free(m);
    cJSON_Delete(exp);
}

/* A copy of model directory src whose config.json has field `key` set to the JSON `value` (NULL: removed). */
__attribute__((unused)) static void copy_with_field(const char *src, const char *dst, const char *key, const char *value) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/model.safetensors' '%s/'", dst, src, dst);
    CHECK(system(cmd) == 0, "copy %s", src);
    cJSON *cfg = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", src);
    CHECK_OK(cp_json_read_file(path, &cfg));
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, key);
    if (value) cJSON_AddItemToObject(cfg, key, cJSON_Parse(value));
    char *text = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", dst);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(cfg);
}

/* The same with config.json's field `key` removed. */
__attribute__((unused)) static void copy_without(const char *src, const char *dst, const char *key) {
    copy_with_field(src, dst, key, NULL);
}

#endif
