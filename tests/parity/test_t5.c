/*
 * test_t5.c — T5 and mT5 (encoder-decoder, SEQ_2_SEQ_LM) against transformers 5.23 + PEFT 0.21.2
 * (fixtures: tests/reference/make_t5_fixtures.py → tests/fixtures/t5/):
 *   - t5 v1.0 (relu, tied, rescaled), v1.1 (gated-gelu, untied lm_head, no rescale), mt5, a model with 3
 *     decoder blocks and num_heads·d_kv ≠ d_model, and v1.0's weights in bf16: logits (decoder inputs shifted
 *     from the labels, padding in both masks; and explicit decoder_input_ids), loss, parameter count, print(model);
 *   - LoRA (default q, v; decoder only; all-linear on mt5; the asymmetric model) and IA3 (t5 v1.1, mt5): PEFT's
 *     adapter files load and give PEFT's logits, save again byte for byte, counts / print_trainable_parameters /
 *     PeftModelForSeq2SeqLM repr, and every gradient after one backward (with and without recompute);
 *   - cpeft's own adapter files (cpeft adapter init) read by PEFT: PEFT's logits from them; cpeft's merged
 *     checkpoints (tied and untied heads) read by transformers: the same logits;
 *   - 10 AdamW steps of LoRA on t5 v1.0 against PyTorch + PEFT;
 *   - greedy generate() token for token (with a LoRA adapter, a repetition penalty, a row that stops at eos while
 *     the others go on), with and without the caches; sampling seeded;
 *   - bad input: no decoder_start_token_id (forward with labels, generation), an adapter of an encoder-only model, a
 *     batch without decoder inputs.
 * Every comparison prints the largest difference it saw.
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
#include "train/optim.h"
#include "train/step.h"

#include <stdlib.h>
#include <unistd.h>

#define FIX "tests/fixtures/t5"
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

static void model_case(const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, FIX "/%s", name);
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

TEST(models_match_transformers) {
    const char *names[] = {"t5_v10", "t5_v11", "mt5", "t5_asym", "t5_v10_bf16"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) model_case(names[i]);
}

/* ---- PEFT ------------------------------------------------------------------------------------------ */

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
    char dir[] = "/tmp/cpeft-t5-XXXXXX", out[600], a[700], b[700];
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

static void peft_case(const char *kind, const char *name) {
    char dir[256], path[320];
    snprintf(dir, sizeof dir, FIX "/%s/%s", kind, name);
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

TEST(lora_and_ia3_match_peft) {
    peft_case("lora", "lora_v10_default");
    peft_case("lora", "lora_v11_decoder");
    peft_case("lora", "lora_mt5_all_linear");
    peft_case("lora", "lora_asym_default");
    peft_case("lora", "lora_asym_relbias");
    peft_case("lora", "lora_v11_embed");
    peft_case("ia3", "ia3_v11_default");
    peft_case("ia3", "ia3_mt5_default");
}

/* cpeft -> PEFT: the adapter cpeft initialises (committed, made by `cpeft adapter init`) is what cpeft makes
 * again from the config and seed, and PEFT's logits from it are cpeft's. */
static void roundtrip_case(const char *name) {
    char dir[256], path[320], adapter[320];
    snprintf(dir, sizeof dir, FIX "/roundtrip/%s", name);
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
                const int64_t y = t ? ((const int64_t *)lab->data)[r * b.Td + t - 1] : 0; /* decoder_start_token_id 0 */
                dec[r * b.Td + t] = y == -100 ? 0 : y;
            }
        b.decoder_input_ids = dec;
        check_logits_of(m, &b, &st, "logits_peft", name, NULL);
        /* merge_and_unload written by cpeft, read by transformers: the same logits here */
        char tmp[] = "/tmp/cpeft-t5-merged-XXXXXX", out[400];
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

TEST(cpeft_adapters_load_in_peft) {
    roundtrip_case("rt_lora_v11");
    roundtrip_case("rt_lora_v10");
    roundtrip_case("rt_ia3_mt5");
}

/* 10 AdamW steps (warmup, linear decay, accumulation 2, clipping 1.0) as the fixture's PyTorch loop, the model's
 * dropout off on both sides. */
TEST(ten_adamw_steps_match_peft) {
    const char *dir = FIX "/steps/lora_v10";
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
    printf("  lora_v10 10 steps vs PyTorch + PEFT (odd steps recomputed): |loss diff| %.2e, grad norm rel %.2e, lr %.1e, "
           "final tensors rel %.2e (%d)\n", worst_loss, worst_norm, worst_lr, worst_final, matched);
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

/* ---- generation ------------------------------------------------------------------------------------ */

/* Greedy generate() of the fixture: the same tokens with the caches (self-attention, cross-attention keys
 * and values once) and without the self-attention cache (every step reruns the whole decoder). */
static void generate_case(const char *name) {
    char path[320];
    snprintf(path, sizeof path, FIX "/generate/%s.json", name);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    const cJSON *ad = cJSON_GetObjectItem(exp, "adapter");
    if (m && cJSON_IsString(ad)) CHECK_OK(cp_adapter_load(m, ad->valuestring, "default", 1, 0));
    const cJSON *prompts = cJSON_GetObjectItem(exp, "prompts"), *want = cJSON_GetObjectItem(exp, "tokens");
    const int64_t n = cJSON_GetArraySize(prompts);
    int32_t *p[8];
    int64_t lens[8];
    for (int64_t r = 0; r < n && r < 8; r++) {
        const cJSON *row = cJSON_GetArrayItem(prompts, (int)r);
        lens[r] = cJSON_GetArraySize(row);
        p[r] = malloc((size_t)lens[r] * sizeof *p[r]);
        for (int64_t t = 0; t < lens[r]; t++) p[r][t] = (int32_t)cJSON_GetArrayItem(row, (int)t)->valuedouble;
    }
    for (int no_cache = 0; m && no_cache < 2; no_cache++) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        o.max_new_tokens = (int64_t)cJSON_GetObjectItem(exp, "max_new_tokens")->valuedouble;
        o.eos_token_ids[0] = (int32_t)cJSON_GetObjectItem(exp, "eos_token_id")->valuedouble;
        o.n_eos = 1;
        o.repetition_penalty = cJSON_GetObjectItem(exp, "repetition_penalty")->valuedouble;
        o.no_cache = no_cache;
        cp_generation g;
        CHECK_OK(cp_model_generate(m, (const int32_t *const *)p, lens, n, &o, &g));
        int same = g.n == n, total = 0;
        for (int64_t r = 0; same && r < n; r++) {
            const cJSON *row = cJSON_GetArrayItem(want, (int)r);
            same = g.n_tokens[r] == cJSON_GetArraySize(row);
            for (int64_t t = 0; same && t < g.n_tokens[r]; t++) same = g.tokens[r][t] == (int32_t)cJSON_GetArrayItem(row, (int)t)->valuedouble;
            total += (int)g.n_tokens[r];
        }
        printf("    %-18s %s: %d new tokens over %lld prompts %s transformers' greedy generate()\n", name,
               no_cache ? "no cache  " : "with cache", total, (long long)n, same ? "identical to" : "DIFFERENT from");
        CHECK(same, "%s: generated tokens differ (no_cache %d)", name, no_cache);
        cp_generation_free(&g);
    }
    for (int64_t r = 0; r < n && r < 8; r++) free(p[r]);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(greedy_generation_matches_transformers) {
    generate_case("greedy_v10");
    generate_case("greedy_v11_lora");
    generate_case("greedy_mt5_eos");
    generate_case("greedy_asym");
}

/* `cpeft generate --model T5DIR --prompt TEXT --json`: the tokenizer's ids (</s> kept), transformers' tokens and text. */
TEST(cli_generate_matches_transformers) {
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(FIX "/generate/cli.json", &exp));
    if (!exp) return;
    const char *bin = getenv("CPEFT_BIN") ? getenv("CPEFT_BIN") : "build/cpeft";
    const cJSON *row;
    int n = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(exp, "rows")) {
        char cmd[1024], out[4096];
        snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt '%s' --max-new-tokens %d --json 2>/dev/null", bin,
                 cJSON_GetObjectItem(exp, "model")->valuestring, cJSON_GetObjectItem(row, "prompt")->valuestring,
                 (int)cJSON_GetObjectItem(exp, "max_new_tokens")->valuedouble);
        FILE *p = popen(cmd, "r");
        size_t k = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[k] = '\0';
        CHECK(p && pclose(p) == 0, "cpeft generate failed: %s", out);
        cJSON *got = cJSON_Parse(out);
        const cJSON *gt = got ? cJSON_GetObjectItem(got, "tokens") : NULL, *wt = cJSON_GetObjectItem(row, "tokens");
        int same = gt && cJSON_GetArraySize(gt) == cJSON_GetArraySize(wt);
        for (int i = 0; same && i < cJSON_GetArraySize(wt); i++)
            same = cJSON_GetArrayItem(gt, i)->valuedouble == cJSON_GetArrayItem(wt, i)->valuedouble;
        const cJSON *text = got ? cJSON_GetObjectItem(got, "text") : NULL;
        same = same && cJSON_IsString(text) && !strcmp(text->valuestring, cJSON_GetObjectItem(row, "text")->valuestring);
        CHECK(same, "cpeft generate \"%s\": %s", cJSON_GetObjectItem(row, "prompt")->valuestring, out);
        n += same;
        cJSON_Delete(got);
    }
    printf("    cpeft generate --prompt: %d prompts, tokens and text identical to transformers' greedy generate()\n", n);
    cJSON_Delete(exp);
}

/* A mixed-adapter batch (PEFT's adapter_names) generates what each row's adapter (or the base model) generates alone. */
TEST(mixed_adapter_generation) {
    cp_model *m = load_model(FIX "/models/t5_v11");
    if (!m) return;
    CHECK_OK(cp_adapter_load(m, FIX "/lora/lora_v11_decoder", "default", 1, 0));
    const int32_t a[] = {5, 17, 33, 8, 1}, b[] = {41, 2, 1};
    const int32_t *p[2] = {a, b};
    const int64_t lens[2] = {5, 3};
    const char *names[2] = {"default", "__base__"};
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = 8;
    o.adapter_names = names;
    cp_generation mixed, alone[2], base_a;
    CHECK_OK(cp_model_generate(m, p, lens, 2, &o, &mixed));
    o.adapter_names = NULL;
    for (int r = 0; r < 2; r++) {
        cp_model_disable_adapters(m, r == 1);
        CHECK_OK(cp_model_generate(m, &p[r], &lens[r], 1, &o, &alone[r]));
    }
    CHECK_OK(cp_model_generate(m, &p[0], &lens[0], 1, &o, &base_a)); /* still disabled: the base model on row 0's prompt */
    cp_model_disable_adapters(m, 0);
    int same = 1;
    for (int r = 0; r < 2; r++)
        same &= mixed.n_tokens[r] == alone[r].n_tokens[0] &&
                !memcmp(mixed.tokens[r], alone[r].tokens[0], (size_t)mixed.n_tokens[r] * sizeof(int32_t));
    const int differ = alone[0].n_tokens[0] != base_a.n_tokens[0] ||
                       memcmp(alone[0].tokens[0], base_a.tokens[0], (size_t)base_a.n_tokens[0] * sizeof(int32_t));
    printf("    adapter_names [default, __base__]: each row as its adapter alone (%s); the adapter changes row 0 (%s)\n",
           same ? "identical" : "DIFFERENT", differ ? "yes" : "no");
    CHECK(same, "a mixed-adapter batch generates other tokens than each row alone");
    CHECK(differ, "the adapter generates what the base model does: the check cannot fail");
    cp_generation_free(&base_a);
    cp_generation_free(&mixed);
    for (int r = 0; r < 2; r++) cp_generation_free(&alone[r]);
    cp_model_free(m);
}

/* Sampling runs through the same loop: a seed gives the same tokens twice, another seed others. */
TEST(sampling_is_seeded) {
    cp_model *m = load_model(FIX "/models/t5_v11");
    if (!m) return;
    const int32_t a[] = {5, 17, 33, 8}, b[] = {41, 2};
    const int32_t *p[2] = {a, b};
    const int64_t lens[2] = {4, 2};
    cp_generation g[3];
    for (int i = 0; i < 3; i++) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        o.do_sample = 1;
        o.max_new_tokens = 16;
        o.seed = i == 2 ? 99 : 7;
        CHECK_OK(cp_model_generate(m, p, lens, 2, &o, &g[i]));
    }
    int same01 = 1, same02 = 1;
    for (int r = 0; r < 2; r++) {
        same01 &= g[0].n_tokens[r] == g[1].n_tokens[r] && !memcmp(g[0].tokens[r], g[1].tokens[r], (size_t)g[0].n_tokens[r] * 4);
        same02 &= g[0].n_tokens[r] == g[2].n_tokens[r] && !memcmp(g[0].tokens[r], g[2].tokens[r], (size_t)g[0].n_tokens[r] * 4);
    }
    CHECK(same01 && !same02, "sampling: seed 7 twice %s, seed 99 %s", same01 ? "same" : "differs", same02 ? "same" : "differs");
    for (int i = 0; i < 3; i++) cp_generation_free(&g[i]);
    cp_model_free(m);
}

/* ---- bad input -------------------------------------------------------------------------------------- */

/* A copy of model directory src with config.json's field `key` removed. */
static void copy_without(const char *src, const char *dst, const char *key) {
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/model.safetensors' '%s/'", dst, src, dst);
    CHECK(system(cmd) == 0, "copy %s", src);
    cJSON *cfg = NULL;
    char path[1200];
    snprintf(path, sizeof path, "%s/config.json", src);
    CHECK_OK(cp_json_read_file(path, &cfg));
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, key);
    char *text = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", dst);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(cfg);
}

TEST(bad_input_is_named) {
    char dir[] = "/tmp/cpeft-t5-bad-XXXXXX", model[600];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(model, sizeof model, "%s/model", dir);
    copy_without(FIX "/models/t5_v10", model, "decoder_start_token_id");
    cp_model *m = load_model(model);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIX "/t5_v10/expected.safetensors"));
    if (m) {
        cp_batch b = batch_of(&st);
        cp_outputs out = {0};
        CHECK_ERR(cp_model_forward(m, &b, &out), "config.json: field \"decoder_start_token_id\" is not set");
        b.labels = NULL;
        CHECK_ERR(cp_model_forward(m, &b, &out), "needs decoder_input_ids or labels");
        b.decoder_input_ids = cp_st_find(&st, "decoder_input_ids")->data; /* explicit decoder inputs need no start token */
        b.decoder_attention_mask = NULL;
        CHECK_OK(cp_model_forward(m, &b, &out));
        const int32_t prompt[] = {5, 6, 7};
        const int32_t *pp[1] = {prompt};
        const int64_t len = 3;
        cp_generate_options o;
        cp_generation g;
        CHECK_OK(cp_generate_options_init(m, &o));
        CHECK_ERR(cp_model_generate(m, pp, &len, 1, &o, &g), "config.json: field \"decoder_start_token_id\" is not set");
    }
    cp_model_free(m);
    /* an adapter made for an encoder-only model (BERT's query / value) */
    m = load_model(FIX "/models/t5_v10");
    if (m)
        CHECK_ERR(cp_adapter_load(m, "tests/fixtures/ia3/bert_seqcls", "default", 1, 0),
                  "Target modules {'key', 'output.dense', 'value'} not found in the base model");
    cp_model_free(m);
    cp_st_close(&st);
    rm_rf(dir);
}

int main(void) {
    RUN(models_match_transformers);
    RUN(lora_and_ia3_match_peft);
    RUN(cpeft_adapters_load_in_peft);
    RUN(ten_adamw_steps_match_peft);
    RUN(greedy_generation_matches_transformers);
    RUN(cli_generate_matches_transformers);
    RUN(mixed_adapter_generation);
    RUN(sampling_is_seeded);
    RUN(bad_input_is_named);
    printf("  worst: logits %.2e, gradients %.2e relative\n", worst_logits, worst_grad);
    return test_summary();
}
