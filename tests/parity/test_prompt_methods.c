/*
 * test_prompt_methods.c — prompt tuning, p-tuning (MLP and LSTM encoders) and prefix tuning (with
 * and without the projection) against PEFT 0.21.2 on tiny GPT-2, GPT-Neo and Llama models
 * (tests/reference/make_prompt_method_fixtures.py, tests/fixtures/prompt_methods/):
 *   - a training-mode adapter built from PEFT's adapter_config.json, with PEFT's encoder parameters,
 *     gives PeftModelForCausalLM's logits and loss, and every encoder parameter's gradient (with and
 *     without recompute); TEXT init gives PEFT's table;
 *   - its counts, print_trainable_parameters() line and print(model) are PEFT's;
 *   - it saves PEFT's adapter_config.json byte for byte and PEFT's "prompt_embeddings" (the
 *     encoder's output);
 *   - PEFT's saved adapter loads (inference mode) with PeftModel.from_pretrained's logits, counts
 *     and repr, and saves back byte for byte;
 *   - greedy generation with prompt tuning, p-tuning and prefix tuning gives PEFT's generate() tokens,
 *     with and without the KV cache;
 *   - cpeft's own adapters (`cpeft adapter init`) are the files committed, and PEFT's
 *     from_pretrained of them computed cpeft's logits;
 *   - 10 AdamW steps equal PEFT + transformers' (loss per step, gradient norms, the trained tensors
 *     after them) on GPT-2, GPT-Neo and Llama (CAUSAL_LM) and on BERT and RoBERTa SEQ_CLS (prompt
 *     tuning, p-tuning MLP, prefix tuning with and without the projection; the classifier copy trains).
 * The tests run in tests/fixtures, where the configs' relative paths (the base model, TEXT init's
 * tokenizer) were written.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "peft/prompt_config.h"
#include "train/optim.h"
#include "train/step.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIR "prompt_methods"
#define TOL_LOGITS 1e-5
#define TOL_GRAD 1e-4 /* relative to the largest |gradient| of the tensor */

static double worst_logits, worst_grad;

static const char *const models[] = {"gpt2", "neo", "llama"};
static const char *const cases[] = {"pt", "pt_text", "ptune_mlp", "ptune_lstm", "prefix", "prefix_proj"};


static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = cp_read_file(a, &x, &nx) == CP_OK && cp_read_file(b, &y, &ny) == CP_OK && nx == ny && !memcmp(x, y, nx);
    cp_free(x);
    cp_free(y);
    return same;
}

static double max_rel(const float *got, const float *want, int64_t n) {
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / (scale > 0 ? scale : 1);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

typedef struct {
    char dir[256];
    cp_safetensors exp;
    cJSON *info;
    int64_t B, T;
    const int64_t *ids, *mask, *labels, *tt; /* tt: token_type_ids, or NULL */
    const int64_t *dmask;                     /* SEQ_2_SEQ_LM: decoder_attention_mask (B,Td), else NULL */
    int64_t Td;                               /* SEQ_2_SEQ_LM: the labels' length */
    int labelled;                             /* the forward ran with the labels (not TOKEN_CLS prompt tuning) */
} fixture;

static int open_fixture(fixture *f, const char *model, const char *c) {
    snprintf(f->dir, sizeof f->dir, DIR "/%s_%s", model, c);
    char path[400];
    snprintf(path, sizeof path, "%s/expected.safetensors", f->dir);
    if (cp_st_open(&f->exp, path) != CP_OK) { CHECK(0, "%s: %s", path, cp_last_error()); return 0; }
    snprintf(path, sizeof path, "%s/expected.json", f->dir);
    if (cp_json_read_file(path, &f->info) != CP_OK) { CHECK(0, "%s", cp_last_error()); cp_st_close(&f->exp); return 0; }
    const cp_st_tensor *ids = cp_st_find(&f->exp, "input_ids");
    f->B = ids->shape[0];
    f->T = ids->shape[1];
    f->ids = ids->data;
    f->mask = cp_st_find(&f->exp, "attention_mask")->data;
    f->labels = cp_st_find(&f->exp, "labels")->data;
    const cp_st_tensor *tt = cp_st_find(&f->exp, "token_type_ids");
    f->tt = tt ? tt->data : NULL;
    const cp_st_tensor *dm = cp_st_find(&f->exp, "decoder_attention_mask");
    f->dmask = dm ? dm->data : NULL;
    f->Td = dm ? dm->shape[1] : 0;
    const cJSON *lab = cJSON_GetObjectItem(f->info, "labelled");
    f->labelled = !lab || cJSON_IsTrue(lab);
    return 1;
}

static cp_batch batch_of(const fixture *f, int labelled) {
    return (cp_batch){.B = f->B, .T = f->T, .input_ids = f->ids, .attention_mask = f->mask, .token_type_ids = f->tt,
                      .labels = labelled || f->dmask ? f->labels : NULL, .Td = f->Td, .decoder_attention_mask = f->dmask};
}

static void close_fixture(fixture *f) {
    cp_st_close(&f->exp);
    cJSON_Delete(f->info);
}

static const char *info_str(const cJSON *o, const char *k1, const char *k2) {
    const cJSON *v = cJSON_GetObjectItem(o, k1);
    if (k2) v = cJSON_GetObjectItem(v, k2);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t info_int(const cJSON *o, const char *k1, const char *k2) {
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, k1), k2);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

/* Counts, the print_trainable_parameters() line and print(model) against `which` ("train" / "loaded"). */
static void check_counts_repr(cp_model *m, const fixture *f, const char *which, const char *repr_key) {
    int64_t trainable, all;
    cp_peft_count(m, &trainable, &all);
    CHECK(trainable == info_int(f->info, which, "trainable") && all == info_int(f->info, which, "all"),
          "%s %s: counts %lld / %lld, PEFT %lld / %lld", f->dir, which, (long long)trainable, (long long)all,
          (long long)info_int(f->info, which, "trainable"), (long long)info_int(f->info, which, "all"));
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    CHECK(line && !strcmp(line, info_str(f->info, which, "line")), "%s %s: line\n  %s\n  %s", f->dir, which, line ? line : "",
          info_str(f->info, which, "line"));
    free(line);
    char *repr = cp_model_peft_repr(m);
    CHECK(repr && !strcmp(repr, info_str(f->info, repr_key, NULL)), "%s: %s differs:\n%s\n--- PEFT:\n%s", f->dir, repr_key,
          repr ? repr : "", info_str(f->info, repr_key, NULL));
    free(repr);
}

/* The forward's logits against tensor `key` ((B, n+T, V) with virtual tokens, else (B,T,V)); the loss when labelled. */
static void check_forward(cp_model *m, const fixture *f, const char *key, int labelled) {
    const cp_st_tensor *want = cp_st_find(&f->exp, key);
    float *logits = malloc((size_t)want->numel * sizeof *logits);
    cp_batch b = batch_of(f, labelled);
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &b, &out));
    double d = test_max_abs_diff(logits, want->data, (size_t)want->numel);
    CHECK(d <= TOL_LOGITS, "%s %s: logits differ by %.3e", f->dir, key, d);
    if (d > worst_logits) worst_logits = d;
    if (labelled) {
        double dl = fabs(out.loss - ((const float *)cp_st_find(&f->exp, "loss")->data)[0]);
        CHECK(dl <= TOL_LOGITS, "%s: loss %.7f differs by %.3e", f->dir, out.loss, dl);
    }
    printf("    %-24s %-14s logits max |diff| %.2e\n", f->dir + strlen(DIR) + 1, key, d);
    free(logits);
}

/* Every trained tensor's gradient of the mean loss against "grad.<key>": the encoder's parameters (keys under
 * prompt_encoder.<name>) and the classifier's modules_to_save copy (its adapter-file key). */
static void check_gradients(cp_model *m, const fixture *f, int recompute) {
    cp_param **params;
    int np;
    CHECK_OK(cp_peft_trainable_params(m, &params, &np));
    for (int i = 0; i < np; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    cp_batch b = batch_of(f, 1);
    double loss_sum = 0;
    int64_t targets = 0;
    CHECK_OK(cp_model_forward_backward(m, &b, 1.0, recompute, &loss_sum, &targets));
    cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
    cp_module **mods;
    int nm;
    CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &nm));
    const cp_peft_method *method = cp_peft_find_adapter(m, "default")->config->method;
    const int n = nm ? method->tensors(mods[0], "default", t) : 0;
    cp_free(mods);
    double worst = 0;
    int matched = 0;
    for (int i = 0; i < f->exp.n_tensors; i++) {
        const cp_st_tensor *want = &f->exp.tensors[i];
        if (strncmp(want->name, "grad.", 5)) continue;
        const char *key = want->name + 5;
        cp_param *p = NULL;
        for (int k = 0; k < n && !p; k++)
            if (!strcmp(t[k].key, key)) p = t[k].param;
        if (!p) p = cp_adapter_find_param(m, "default", key);
        CHECK(p && p->grad && p->numel == want->numel, "%s: %s has no trained tensor here", f->dir, want->name);
        if (!p || !p->grad) continue;
        float *g = malloc((size_t)p->numel * sizeof *g);
        for (int64_t k = 0; k < p->numel; k++) g[k] = p->grad[k] / (float)targets; /* PyTorch's is of the mean */
        double d = max_rel(g, want->data, p->numel);
        CHECK(d <= TOL_GRAD, "%s: %s differs by %.3e (relative%s)", f->dir, want->name, d, recompute ? ", recompute" : "");
        if (d > worst) worst = d;
        matched++;
        free(g);
    }
    CHECK(matched == np, "%s: %d gradients in the fixture, %d trainable tensors here", f->dir, matched, np);
    if (worst > worst_grad) worst_grad = worst;
    printf("    %-24s %d gradients%s max relative diff %.2e\n", f->dir + strlen(DIR) + 1, matched, recompute ? " (recompute)" : "", worst);
    cp_free(params);
}

/* Greedy generation of the fixture's prompts against PEFT's generate(), cached and not. */
static void check_generate(cp_model *m, const fixture *f) {
    const cp_st_tensor *gi = cp_st_find(&f->exp, "gen_ids"), *gm = cp_st_find(&f->exp, "gen_mask"), *gt = cp_st_find(&f->exp, "gen_tokens");
    if (!gi) return;
    const int64_t n = gi->shape[0], T0 = gi->shape[1], N = gt->shape[1];
    const int64_t *ids = gi->data, *mask = gm->data, *tokens = gt->data;
    int32_t *prompts[8];
    int64_t lens[8];
    for (int64_t r = 0; r < n; r++) {
        prompts[r] = malloc((size_t)T0 * sizeof **prompts);
        lens[r] = 0;
        for (int64_t t = 0; t < T0; t++)
            if (mask[r * T0 + t]) prompts[r][lens[r]++] = (int32_t)ids[r * T0 + t];
    }
    for (int no_cache = 0; no_cache < 2; no_cache++) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        o.max_new_tokens = N;
        o.n_eos = 0;
        o.pad_token_id = (int32_t)info_int(f->info, "generate", "pad_token_id");
        o.no_cache = no_cache;
        cp_generation g;
        CHECK_OK(cp_model_generate(m, (const int32_t *const *)prompts, lens, n, &o, &g));
        int same = g.n == n;
        for (int64_t r = 0; same && r < n; r++) {
            same = g.n_tokens[r] == N;
            for (int64_t t = 0; same && t < N; t++) same = g.tokens[r][t] == tokens[r * N + t];
        }
        CHECK(same, "%s: greedy tokens differ from PEFT's generate()%s", f->dir, no_cache ? " (no cache)" : "");
        if (same) printf("    %-24s generate: %lld x %lld tokens as PEFT%s\n", f->dir + strlen(DIR) + 1, (long long)n, (long long)N,
                         no_cache ? " (no cache)" : "");
        cp_generation_free(&g);
    }
    for (int64_t r = 0; r < n; r++) free(prompts[r]);
}

/* Loads the fixture's encoder parameters (PEFT's names) into adapter "default"'s tensors. */
static void set_encoder(cp_model *m, const fixture *f) {
    char path[400];
    snprintf(path, sizeof path, "%s/encoder.safetensors", f->dir);
    cp_safetensors enc;
    if (cp_st_open(&enc, path) != CP_OK) { CHECK(0, "%s", cp_last_error()); return; }
    cp_module **mods;
    int nm;
    CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &nm));
    cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
    const cp_peft_method *method = cp_peft_find_adapter(m, "default")->config->method;
    int n = nm ? method->tensors(mods[0], "default", t) : 0;
    cp_free(mods);
    CHECK(n == enc.n_tensors, "%s: %d encoder tensors, PEFT has %d", f->dir, n, enc.n_tensors);
    const int text = strstr(f->dir, "pt_text") != NULL;
    for (int i = 0; i < n; i++) {
        const cp_st_tensor *w = cp_st_find(&enc, t[i].key);
        CHECK(w && w->numel == t[i].param->numel, "%s: encoder tensor %s missing or mis-shaped", f->dir, t[i].key);
        if (!w) continue;
        if (text) { /* TEXT init: cpeft's table is PEFT's, from the same tokenizer and word embeddings */
            double d = test_max_abs_diff(t[i].param->data, w->data, (size_t)t[i].param->numel);
            CHECK(d == 0, "%s: TEXT init table differs from PEFT's by %.3e", f->dir, d);
            printf("    %-24s TEXT init table equals PEFT's\n", f->dir + strlen(DIR) + 1);
        }
        memcpy(t[i].param->data, w->data, (size_t)t[i].param->numel * sizeof(float));
    }
    cp_st_close(&enc);
}

static cp_model *load_model(const fixture *f) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, info_str(f->info, "model", NULL), CP_LOAD_WEIGHTS));
    return m;
}

/* The saved files against PEFT's: the config byte for byte; prompt_embeddings equal (byte for byte
 * when `exact`: no encoder stage computed them). */
static void check_saved(cp_model *m, const fixture *f, int exact, const char *config_file) {
    char tmp[] = "/tmp/cpeft-prompt-XXXXXX", out[300], a[400], b[400];
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", tmp);
    CHECK_OK(cp_adapter_save(m, "default", out));
    snprintf(a, sizeof a, "%s/adapter_config.json", out);
    snprintf(b, sizeof b, "%s/%s", f->dir, config_file);
    if (!cp_path_exists(b)) snprintf(b, sizeof b, "%s/adapter/adapter_config.json", f->dir);
    CHECK(same_file(a, b), "%s: adapter_config.json differs from PEFT's %s", f->dir, b);
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
    snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", f->dir);
    if (exact) {
        CHECK(same_file(a, b), "%s: adapter_model.safetensors differs from PEFT's", f->dir);
    } else {
        cp_safetensors x, y;
        if (cp_st_open(&x, a) == CP_OK && cp_st_open(&y, b) == CP_OK) {
            CHECK(x.n_tensors == y.n_tensors, "%s: %d tensors saved, PEFT saves %d", f->dir, x.n_tensors, y.n_tensors);
            for (int i = 0; i < y.n_tensors; i++) {
                const cp_st_tensor *ty = &y.tensors[i], *tx = cp_st_find(&x, ty->name);
                CHECK(tx && tx->numel == ty->numel && tx->dtype == ty->dtype, "%s: saved tensor %s differs", f->dir, ty->name);
                if (!tx || tx->numel != ty->numel) continue;
                double d = test_max_abs_diff(tx->data, ty->data, (size_t)tx->numel);
                CHECK(d <= TOL_LOGITS, "%s: saved %s differs by %.3e", f->dir, ty->name, d);
                printf("    %-24s saved %s max |diff| %.2e\n", f->dir + strlen(DIR) + 1, ty->name, d);
            }
            cp_st_close(&x);
            cp_st_close(&y);
        } else {
            CHECK(0, "%s", cp_last_error());
        }
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

/* get_peft_model's config from the saved adapter/adapter_config.json of fixture directory `dir`: modules_to_save as
 * the user gave it (PeftModelForSequenceClassification adds the heads), inference_mode false. */
static cp_peft_config *training_config(const char *dir) {
    char path[400];
    snprintf(path, sizeof path, "%s/adapter/adapter_config.json", dir);
    cp_peft_config *cfg = NULL;
    cJSON *json = NULL;
    CHECK_OK(cp_json_read_file(path, &json));
    if (json) {
        cJSON_ReplaceItemInObject(json, "modules_to_save", cJSON_CreateNull());
        CHECK_OK(cp_peft_config_from_json(json, path, &cfg));
        cJSON_Delete(json);
    }
    if (cfg) cfg->inference_mode = 0;
    return cfg;
}

static void run_case(const char *model, const char *c) {
    fixture f;
    if (!open_fixture(&f, model, c)) return;
    printf("  %s\n", f.dir);
    /* training mode: PEFT's config (as get_peft_model had it) and encoder */
    char path[400];
    cp_peft_config *cfg = training_config(f.dir);
    cp_model *m = load_model(&f);
    if (cfg && m) {
        cp_rng rng;
        cp_rng_seed(&rng, 1);
        CHECK_OK(cp_peft_add(m, "default", cfg, &rng, 1, 1));
        set_encoder(m, &f);
        check_counts_repr(m, &f, "train", "repr");
        check_forward(m, &f, "logits", f.labelled);
        if (f.labelled) {
            check_gradients(m, &f, 0);
            check_gradients(m, &f, 1);
        } else { /* PEFT's loss fails on TOKEN_CLS labels with virtual tokens: cpeft refuses them */
            cp_batch b = batch_of(&f, 1);
            cp_outputs o = {0};
            CHECK_ERR(cp_model_forward(m, &b, &o), "TOKEN_CLS labels with 3 virtual tokens");
        }
        check_saved(m, &f, !strcmp(c, "pt") || !strcmp(c, "pt_text") || !strcmp(c, "prefix"), "adapter/adapter_config.json");
    }
    cp_peft_config_free(cfg);
    cp_model_free(m);
    /* PEFT's adapter loaded as PeftModel.from_pretrained loads it */
    m = load_model(&f);
    if (m) {
        snprintf(path, sizeof path, "%s/adapter", f.dir);
        CHECK_OK(cp_adapter_load(m, path, "default", 1, 0));
        check_counts_repr(m, &f, "loaded", "repr_loaded");
        check_forward(m, &f, "logits_loaded", 0);
        check_saved(m, &f, 1, "resaved_config.json");
        check_generate(m, &f);
    }
    cp_model_free(m);
    close_fixture(&f);
}

TEST(prompt_tuning) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[0]);
}
TEST(prompt_tuning_text_init) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[1]);
}
TEST(p_tuning_mlp) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[2]);
}
TEST(p_tuning_lstm) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[3]);
}
TEST(prefix_tuning) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[4]);
}
TEST(prefix_tuning_projection) {
    for (int i = 0; i < 3; i++) run_case(models[i], cases[5]);
}

/* PeftModelForSeq2SeqLM on T5 v1.0, v1.1 and mT5 (num_transformer_submodules 2): prompt tuning and p-tuning put
 * the first P of the 2·P rows before the encoder's, prefix tuning every decoder self-attention's prefix; the
 * decoder's logits, the loss, the gradients (zero for the rows PEFT never reads), the files, generation. */
TEST(encoder_decoders) {
    const char *const s2s_models[] = {"t5_v10", "t5_v11", "mt5"};
    const char *const s2s_cases[] = {"pt", "ptune_mlp", "ptune_lstm", "prefix", "prefix_proj"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) run_case(s2s_models[i], s2s_cases[j]);
}

/* Bad input on an encoder-decoder: a saved prompt_embeddings whose rows disagree with num_virtual_tokens x
 * num_transformer_submodules; prefix tuning where PEFT's cache cannot be built (num_transformer_submodules 1, a
 * decoder deeper than num_layers, keys narrower than d_model). */
TEST(encoder_decoder_bad_input) {
    char tmp[] = "/tmp/cpeft-s2s-bad-XXXXXX", cmd[600], path[400];
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(cmd, sizeof cmd, "cp " DIR "/t5_v10_pt/adapter/* %s/ && sed -i 's/\"num_virtual_tokens\": 3/\"num_virtual_tokens\": 4/' "
             "%s/adapter_config.json", tmp, tmp);
    CHECK(system(cmd) == 0, "%s", cmd);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "t5/models/t5_v10", CP_LOAD_WEIGHTS));
    if (m) {
        CHECK_ERR(cp_adapter_load(m, tmp, "default", 1, 0),
                  "tensor \"prompt_embeddings\" has 6 rows, but num_virtual_tokens = 4 (x num_transformer_submodules 2)");
        printf("  %s\n", cp_last_error());
    }
    cp_model_free(m);
    const struct { const char *model, *json, *want; } bad[] = {
        {"t5/models/t5_v10", "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"SEQ_2_SEQ_LM\", \"num_virtual_tokens\": 3, "
         "\"num_transformer_submodules\": 1}", "num_transformer_submodules is 1 in the PREFIX_TUNING config, but an encoder-decoder"},
        {"t5/models/t5_v10", "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"SEQ_2_SEQ_LM\", \"num_virtual_tokens\": 3, "
         "\"num_layers\": 1}", "num_layers is 1 in the PREFIX_TUNING config, but the model's layers is 2"},
        {"t5/models/t5_asym", "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"SEQ_2_SEQ_LM\", \"num_virtual_tokens\": 3, "
         "\"token_dim\": 24, \"num_attention_heads\": 4}", "num_layers is 2 in the PREFIX_TUNING config, but the decoder has 3 layers"},
        {"t5/models/t5_asym", "{\"peft_type\": \"PREFIX_TUNING\", \"task_type\": \"SEQ_2_SEQ_LM\", \"num_virtual_tokens\": 3}",
         "token_dim is 32 in the PREFIX_TUNING config, but the width of the model's keys and values"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(path, sizeof path, "%s/bad.json", tmp);
        FILE *fp = fopen(path, "w");
        if (fp) { fputs(bad[i].json, fp); fclose(fp); }
        cp_peft_config *cfg = NULL;
        m = NULL;
        CHECK_OK(cp_peft_config_load(path, &cfg));
        CHECK_OK(cp_model_load(&m, bad[i].model, CP_LOAD_WEIGHTS));
        if (cfg && m) {
            cp_rng rng;
            cp_rng_seed(&rng, 1);
            CHECK_ERR(cp_peft_add(m, "default", cfg, &rng, 1, 1), bad[i].want);
            printf("  %s\n", cp_last_error());
        }
        cp_peft_config_free(cfg);
        cp_model_free(m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

/* cpeft -> PEFT: `cpeft adapter init --seed 7` wrote cpeft_<model>_<case>/adapter from peft_config.json, and
 * PeftModel.from_pretrained computed logits_peft from it (and wrote the two files back unchanged). cpeft
 * makes the same files from the same seed (the encoder's output within 1e-5 where an MLP or LSTM computed it)
 * and its own logits from them are PEFT's. */
static void run_roundtrip(const char *name, int exact) {
    char dir[256], path[400], out[300];
    snprintf(dir, sizeof dir, DIR "/cpeft_%s", name);
    printf("  %s\n", dir);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    cp_safetensors exp;
    if (cp_st_open(&exp, path) != CP_OK) { CHECK(0, "%s", cp_last_error()); return; }
    snprintf(path, sizeof path, "%s/peft_config.json", dir);
    cp_peft_config *cfg = NULL;
    CHECK_OK(cp_peft_config_load(path, &cfg));
    cp_model *m = NULL;
    if (cfg) CHECK_OK(cp_model_load(&m, cfg->base_model_name_or_path, CP_LOAD_WEIGHTS));
    if (m) {
        CHECK_OK(cp_model_add_adapter(m, "default", path, 7));
        char tmp[] = "/tmp/cpeft-prompt-rt-XXXXXX";
        CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
        snprintf(out, sizeof out, "%s/adapter", tmp);
        CHECK_OK(cp_adapter_save(m, "default", out));
        char a[400], b[400];
        snprintf(a, sizeof a, "%s/adapter_config.json", out);
        snprintf(b, sizeof b, "%s/adapter/adapter_config.json", dir);
        CHECK(same_file(a, b), "%s: cpeft's adapter_config.json is not the committed one", dir);
        snprintf(a, sizeof a, "%s/adapter_model.safetensors", out);
        snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", dir);
        if (exact) {
            CHECK(same_file(a, b), "%s: cpeft's adapter_model.safetensors is not the committed one", dir);
        } else {
            cp_safetensors x, y;
            if (cp_st_open(&x, a) == CP_OK && cp_st_open(&y, b) == CP_OK) {
                const cp_st_tensor *tx = cp_st_find(&x, "prompt_embeddings"), *ty = cp_st_find(&y, "prompt_embeddings");
                CHECK(tx && ty && tx->numel == ty->numel, "%s: prompt_embeddings differ in shape", dir);
                if (tx && ty && tx->numel == ty->numel) {
                    double d = test_max_abs_diff(tx->data, ty->data, (size_t)tx->numel);
                    CHECK(d <= TOL_LOGITS, "%s: prompt_embeddings differ by %.3e", dir, d);
                }
                cp_st_close(&x);
                cp_st_close(&y);
            }
        }
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        CHECK(system(cmd) == 0, "cleanup");
    }
    cp_model_free(m);
    m = NULL;
    if (cfg) CHECK_OK(cp_model_load(&m, cfg->base_model_name_or_path, CP_LOAD_WEIGHTS));
    if (m) {
        snprintf(path, sizeof path, "%s/adapter", dir);
        CHECK_OK(cp_adapter_load(m, path, "default", 1, 0));
        const cp_st_tensor *ids = cp_st_find(&exp, "input_ids"), *want = cp_st_find(&exp, "logits_peft");
        float *logits = malloc((size_t)want->numel * sizeof *logits);
        cp_batch bt = {.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data,
                       .attention_mask = cp_st_find(&exp, "attention_mask")->data};
        cp_outputs o = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &bt, &o));
        double d = test_max_abs_diff(logits, want->data, (size_t)want->numel);
        CHECK(d <= TOL_LOGITS, "%s: cpeft's logits differ from PEFT's on cpeft's adapter by %.3e", dir, d);
        if (d > worst_logits) worst_logits = d;
        printf("    PEFT's from_pretrained of cpeft's adapter: logits max |diff| %.2e\n", d);
        free(logits);
    }
    cp_model_free(m);
    cp_peft_config_free(cfg);
    cp_st_close(&exp);
}

/* 10 AdamW steps (accumulation 2, warmup + linear decay, clipping) from PEFT's encoder parameters: the
 * losses, gradient norms and learning rates of PEFT + transformers per step, and every trained tensor after
 * them (the encoder's, and for SEQ_CLS the classifier's modules_to_save copy). The classifier fixtures ran
 * with the model's dropout at 0 ("model_dropout": 0), as here. */
static void run_steps(const char *name) {
    char dir[256], path[400];
    snprintf(dir, sizeof dir, DIR "/steps_%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    cp_safetensors st;
    if (!exp || cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s: %s", dir, cp_last_error()); cJSON_Delete(exp); return; }
    fixture f = {0};
    snprintf(f.dir, sizeof f.dir, "%s", dir);
    f.info = exp;
    cp_model *m = load_model(&f);
    cp_peft_config *cfg = training_config(dir);
    const cJSON *md = cJSON_GetObjectItem(exp, "model_dropout");
    if (m && md) m->model_dropout = (int)md->valuedouble;
    cp_param **params = NULL;
    int n = 0;
    if (m && cfg) {
        cp_rng rng;
        cp_rng_seed(&rng, 1);
        CHECK_OK(cp_peft_add(m, "default", cfg, &rng, 1, 1));
        set_encoder(m, &f);
        CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    }
    if (params) {
        const cJSON *c = cJSON_GetObjectItem(exp, "config"), *betas = cJSON_GetObjectItem(c, "betas");
        cp_adamw_config oc = {cJSON_GetObjectItem(c, "lr")->valuedouble, cJSON_GetArrayItem(betas, 0)->valuedouble,
                              cJSON_GetArrayItem(betas, 1)->valuedouble, cJSON_GetObjectItem(c, "eps")->valuedouble,
                              cJSON_GetObjectItem(c, "weight_decay")->valuedouble};
        cp_adamw opt;
        CHECK_OK(cp_adamw_init(&opt, params, n, oc));
        const int64_t steps = (int64_t)cJSON_GetObjectItem(c, "num_training_steps")->valuedouble;
        const int64_t warmup = (int64_t)cJSON_GetObjectItem(c, "num_warmup_steps")->valuedouble;
        const int ga = (int)cJSON_GetObjectItem(c, "gradient_accumulation_steps")->valuedouble;
        const int s2s = !strcmp(info_str(exp, "task", NULL), "SEQ_2_SEQ_LM");
        double worst_loss = 0, worst_norm = 0, worst_lr = 0, worst_final = 0;
        for (int64_t s = 0; s < steps; s++) {
            cp_batch micro[8];
            for (int i = 0; i < ga; i++) {
                char k1[32], k2[32], k3[32], k4[40];
                const int idx = (int)(s * ga + i);
                snprintf(k1, sizeof k1, "input_ids_%d", idx);
                snprintf(k2, sizeof k2, "attention_mask_%d", idx);
                snprintf(k3, sizeof k3, "labels_%d", idx);
                snprintf(k4, sizeof k4, "token_type_ids_%d", idx);
                const cp_st_tensor *t = cp_st_find(&st, k1), *tt = cp_st_find(&st, k4), *lt = cp_st_find(&st, k3);
                micro[i] = (cp_batch){.B = t->shape[0], .T = t->shape[1], .input_ids = t->data,
                                      .attention_mask = cp_st_find(&st, k2)->data, .token_type_ids = tt ? tt->data : NULL,
                                      .labels = lt->data, .Td = s2s ? lt->shape[1] : 0}; /* SEQ_2_SEQ_LM: the decoder's length */
            }
            const double lr = oc.lr * cp_schedule_factor(CP_SCHED_LINEAR, s, warmup, steps);
            cp_step_result res;
            CHECK_OK(cp_train_step(m, &opt, micro, ga, lr, cJSON_GetObjectItem(c, "max_grad_norm")->valuedouble, 0, 1, &res));
            const double wl = cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "losses"), (int)s)->valuedouble;
            const double wn = cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "grad_norms"), (int)s)->valuedouble;
            worst_loss = fmax(worst_loss, fabs(res.loss - wl));
            worst_norm = fmax(worst_norm, fabs(res.grad_norm - wn) / wn);
            worst_lr = fmax(worst_lr, fabs(lr - cJSON_GetArrayItem(cJSON_GetObjectItem(exp, "lrs"), (int)s)->valuedouble));
        }
        /* every "final.<key>": an encoder parameter (PEFT's name) or the classifier copy (its adapter-file key) */
        cp_module **mods;
        int nm;
        CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &nm));
        cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
        const int nt = nm ? cfg->method->tensors(mods[0], "default", t) : 0;
        cp_free(mods);
        int matched = 0;
        for (int i = 0; i < st.n_tensors; i++) {
            const cp_st_tensor *want = &st.tensors[i];
            if (strncmp(want->name, "final.", 6)) continue;
            const cp_param *p = NULL;
            for (int k = 0; k < nt && !p; k++)
                if (!strcmp(t[k].key, want->name + 6)) p = t[k].param;
            if (!p) p = cp_adapter_find_param(m, "default", want->name + 6);
            CHECK(p && p->numel == want->numel, "%s: %s has no trained tensor here", dir, want->name);
            if (!p || p->numel != want->numel) continue;
            worst_final = fmax(worst_final, max_rel(p->data, want->data, want->numel));
            matched++;
        }
        printf("  %-47s 10 steps: |loss diff| %.2e, grad norm rel %.2e, lr %.1e, final tensors rel %.2e (%d)\n", dir,
               worst_loss, worst_norm, worst_lr, worst_final, matched);
        CHECK(worst_loss < 1e-4, "%s: losses differ by %.3e", dir, worst_loss);
        CHECK(worst_norm < 1e-4, "%s: gradient norms differ by %.3e", dir, worst_norm);
        CHECK(worst_lr < 1e-12, "%s: learning rates differ by %.3e", dir, worst_lr);
        CHECK(worst_final < 1e-4 && matched == n, "%s: the trained tensors after 10 steps differ by %.3e (%d of %d compared)", dir,
              worst_final, matched, n);
        cp_adamw_free(&opt);
    }
    cp_free(params);
    cp_peft_config_free(cfg);
    cp_model_free(m);
    cp_st_close(&st);
    cJSON_Delete(exp);
}

TEST(ten_adamw_steps_match_peft) {
    const char *cases[] = {"gpt2_pt",
                           "neo_ptune_mlp",
                           "llama_ptune_lstm",
                           "llama_prefix",
                           "gpt2_prefix_proj",
                           "bert_seqcls_pt",
                           "bert_seqcls_ptune_mlp",
                           "bert_seqcls_prefix",
                           "roberta_seqcls_pt",
                           "roberta_seqcls_ptune_mlp",
                           "roberta_seqcls_prefix",
                           "roberta_seqcls_prefix_proj",
                           "t5_v10_pt",
                           "t5_v11_prefix",
                           "mt5_ptune_mlp",
                           "t5_v10_prefix_proj"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_steps(cases[i]);
}

/* stdout of a command line (stderr dropped); NULL when it does not exit 0. */
static char *run_out(const char *cmd) {
    static char out[1 << 16];
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? out : NULL;
}

/* `cpeft info MODEL --peft-config FILE --tree` on the model's config alone: PEFT's print(model) and
 * print_trainable_parameters() after get_peft_model (p-tuning's and the projection's encoders counted), in
 * both line formats; and with PEFT's saved adapter (--adapter) what PeftModel.from_pretrained prints. */
static void check_info_cli(const char *model, const char *c) {
    fixture f;
    if (!open_fixture(&f, model, c)) return;
    const char *env = getenv("CPEFT_BIN");
    char bin[512]; /* the tests run in tests/fixtures */
    snprintf(bin, sizeof bin, "%s%s", env && env[0] == '/' ? "" : "../../", env ? env : "build/cpeft");
    char cfg_path[400], tmp[] = "/tmp/cpeft-prompt-info-XXXXXX.json", cmd[1200];
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter/adapter_config.json", f.dir);
    cJSON *cfg = NULL;
    CHECK_OK(cp_json_read_file(cfg_path, &cfg));
    int fd = mkstemps(tmp, 5);
    CHECK(fd >= 0 && cfg, "temp config");
    if (fd >= 0 && cfg) { /* get_peft_model's config: inference_mode false */
        cJSON_ReplaceItemInObject(cfg, "inference_mode", cJSON_CreateFalse());
        char *text = cJSON_Print(cfg);
        CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
        close(fd);
        cJSON_free(text);
    }
    cJSON_Delete(cfg);
    for (int current = 0; current < 2; current++) {
        snprintf(cmd, sizeof cmd, "%s info %s --peft-config %s --tree --peft-format %s 2>/dev/null", bin,
                 info_str(f.info, "model", NULL), tmp, current ? "current" : "notebook");
        char *out = run_out(cmd);
        const char *repr = info_str(f.info, "repr", NULL), *line = info_str(f.info, "train", current ? "line" : "line_notebook");
        CHECK(out && !strncmp(out, repr, strlen(repr)) && out[strlen(repr)] == '\n' && !strncmp(out + strlen(repr) + 1, line, strlen(line)),
              "%s: cpeft info --peft-config --tree printed:\n%s\n--- PEFT:\n%s\n%s", f.dir, out ? out : "(failed)", repr, line);
    }
    snprintf(cmd, sizeof cmd, "%s info %s --adapter %s/adapter --peft-format current 2>/dev/null", bin,
             info_str(f.info, "model", NULL), f.dir);
    char *out = run_out(cmd);
    const char *line = info_str(f.info, "loaded", "line");
    CHECK(out && strstr(out, line), "%s: cpeft info --adapter does not print PEFT's \"%s\":\n%s", f.dir, line, out ? out : "(failed)");
    unlink(tmp);
    close_fixture(&f);
}

TEST(info_cli) {
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) check_info_cli(models[i], cases[k]);
}

/* PeftModelForSequenceClassification / ForTokenClassification on BERT and RoBERTa. */
TEST(classification_encoders) {
    static const char *const enc[][2] = {{"bert_seqcls", "pt"},        {"bert_seqcls", "prefix"},      {"bert_seqcls", "ptune_lstm"},
                                         {"roberta_seqcls", "pt"},     {"roberta_seqcls", "ptune_mlp"}, {"roberta_seqcls", "prefix_proj"},
                                         {"bert_tokcls", "pt"},        {"bert_tokcls", "prefix"}};
    for (size_t i = 0; i < sizeof enc / sizeof *enc; i++) run_case(enc[i][0], enc[i][1]);
}

TEST(cpeft_adapters_load_in_peft) {
    run_roundtrip("gpt2_pt", 1);
    run_roundtrip("neo_prefix", 1);
    run_roundtrip("neo_ptune_mlp", 0);
    run_roundtrip("llama_ptune_lstm", 0);
    run_roundtrip("llama_prefix_proj", 0);
}

int main(void) {
    if (chdir("tests/fixtures") != 0) { fprintf(stderr, "run from the repository root\n"); return 1; }
    RUN(prompt_tuning);
    RUN(prompt_tuning_text_init);
    RUN(p_tuning_mlp);
    RUN(p_tuning_lstm);
    RUN(prefix_tuning);
    RUN(prefix_tuning_projection);
    RUN(classification_encoders);
    RUN(encoder_decoders);
    RUN(encoder_decoder_bad_input);
    RUN(cpeft_adapters_load_in_peft);
    RUN(info_cli);
    RUN(ten_adamw_steps_match_peft);
    printf("max logits diff %.2e, max relative gradient diff %.2e\n", worst_logits, worst_grad);
    return test_summary();
}
