/*
 * test_decoders.c — every decoder spec of tests/reference/make_decoder_fixtures.py against transformers
 * 5.23 + PEFT 0.21.2, without knowing the architecture: for each tests/fixtures/decoders/<spec>/
 *   - the model: parameter count, names and shapes, print(model), logits and loss of a batch with a
 *     left-padded and a right-padded row;
 *   - each LoRA case: PEFT's adapter loaded trainable, the loss and every gradient (with and without
 *     recompute), the logits with the adapter, print_trainable_parameters();
 *   - 10 AdamW steps (warmup, linear decay, accumulation 2, clipping): losses, grad norms, lrs, final
 *     adapter tensors;
 *   - IA3 with PEFT's default targets, prompt tuning and prefix tuning (logits, loss, the gradient of
 *     the prompt embeddings), <Prefix>ForSequenceClassification with a SEQ_CLS LoRA adapter;
 *   - greedy generation with the KV cache and without, base and with the first LoRA adapter.
 * Goals: logits 1e-5 (fail above 1e-4), gradients 1e-4 relative to each tensor's largest entry.
 */
#include "test.h"
#include "cpeft.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "peft/method.h"
#include "peft/peft_config.h"
#include "train/optim.h"
#include "train/step.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#define ROOT "tests/fixtures/decoders"
#define TOL_LOGITS 1e-4
#define TOL_GRAD 1e-4

static double worst_logits, worst_grad, worst_step;
static int n_specs, n_checks;

static double rel_diff(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d; /* NaN counts as the worst */
        den = fmax(den, fabs((double)b[i]));
    }
    return num / fmax(den, 1e-12);
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k); }
static double num(const cJSON *o, const char *k) { return cJSON_GetNumberValue(get(o, k)); }
static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(get(o, k));
    return s ? s : "";
}

static cp_model *load(const char *spec_dir, const char *model_rel) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", spec_dir, model_rel);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, path, CP_LOAD_WEIGHTS));
    return m;
}

static cp_batch batch_of(const cp_safetensors *st, const char *suffix) {
    char k[64];
    snprintf(k, sizeof k, "input_ids%s", suffix);
    const cp_st_tensor *ids = cp_st_find(st, k);
    snprintf(k, sizeof k, "attention_mask%s", suffix);
    const cp_st_tensor *mask = cp_st_find(st, k);
    snprintf(k, sizeof k, "labels%s", suffix);
    const cp_st_tensor *labels = cp_st_find(st, k);
    if (!ids || !mask || !labels) return (cp_batch){0};
    return (cp_batch){.B = ids->shape[0], .T = ids->shape[1], .input_ids = ids->data, .attention_mask = mask->data,
                      .labels = labels->data};
}

/* Logits of an eval forward against `key`, rows where the mask is 0 left out ((B, T, V), or (B, n) per row for a
 * classifier; (B, P+T, V) with P virtual tokens when the tensor is that long). */
static double check_logits(cp_model *m, const cp_safetensors *st, const cp_batch *b, const char *key, const char *label) {
    const cp_st_tensor *want = cp_st_find(st, key);
    CHECK(want != NULL, "%s: no %s in the fixture", label, key);
    if (!want) return 1;
    float *logits = malloc((size_t)want->numel * sizeof *logits);
    cp_batch eval = *b;
    eval.labels = NULL;
    cp_outputs out = {.logits = logits};
    CHECK_OK(cp_model_forward(m, &eval, &out));
    double d = 0;
    if (want->ndim == 2) { /* (B, num_labels) */
        d = test_max_abs_diff(logits, want->data, (size_t)want->numel);
    } else {
        const int64_t Tw = want->shape[1], V = want->shape[2], P = Tw - b->T;
        for (int64_t r = 0; r < b->B; r++)
            for (int64_t t = 0; t < Tw; t++) {
                if (t >= P && !b->attention_mask[r * b->T + t - P]) continue;
                size_t off = (size_t)((r * Tw + t) * V);
                d = fmax(d, test_max_abs_diff(logits + off, (const float *)want->data + off, (size_t)V));
            }
    }
    free(logits);
    CHECK(d <= TOL_LOGITS, "%s: %s differ by %.3e", label, key, d);
    worst_logits = fmax(worst_logits, d);
    return d;
}

/* The tensor an adapter file key names: the method's own tensors (prompt_embeddings) or a module's. */
static cp_param *find_param(cp_model *m, const char *key) {
    cp_module **mods;
    int nm;
    cp_param *p = NULL;
    if (cp_peft_adapter_modules(m, "default", &mods, &nm) == CP_OK) {
        cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
        const cp_peft_method *method = cp_peft_find_adapter(m, "default")->config->method;
        for (int i = 0; i < nm && !p; i++) {
            int n = method->tensors(mods[i], "default", t);
            for (int k = 0; k < n && !p; k++)
                if (!strcmp(t[k].key, key)) p = t[k].param;
        }
        free(mods);
    }
    return p ? p : cp_adapter_find_param(m, "default", key);
}

/* One forward + backward: the loss against "loss" and every trainable gradient against "grad.<key>" (PyTorch's
 * are of the mean loss). Returns the worst relative gradient difference. */
static double check_grads(cp_model *m, const cp_safetensors *st, const cp_batch *b, int recompute, const char *label) {
    cp_param **params;
    int np;
    CHECK_OK(cp_peft_trainable_params(m, &params, &np));
    for (int i = 0; i < np; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    double loss_sum = 0;
    int64_t targets = 0;
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, recompute, &loss_sum, &targets));
    const double want_loss = *(const float *)cp_st_find(st, "loss")->data;
    CHECK(targets > 0 && fabs(loss_sum / (double)targets - want_loss) <= 1e-5, "%s: loss %.7f vs %.7f", label,
          loss_sum / (double)(targets ? targets : 1), want_loss);
    double worst = 0;
    int matched = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const cp_st_tensor *want = &st->tensors[i];
        if (strncmp(want->name, "grad.", 5)) continue;
        cp_param *p = find_param(m, want->name + 5);
        CHECK(p && p->grad && p->numel == want->numel, "%s: %s has no trained tensor here", label, want->name);
        if (!p || !p->grad) continue;
        float *g = malloc((size_t)p->numel * sizeof *g);
        for (int64_t k = 0; k < p->numel; k++) g[k] = p->grad[k] / (float)targets;
        double d = rel_diff(g, want->data, p->numel);
        free(g);
        CHECK(d <= TOL_GRAD, "%s: %s differs by %.3e (relative%s)", label, want->name, d, recompute ? ", recompute" : "");
        worst = fmax(worst, d);
        matched++;
    }
    CHECK(matched == np, "%s: %d gradients in the fixture, %d trainable tensors here", label, matched, np);
    worst_grad = fmax(worst_grad, worst);
    free(params);
    return worst;
}

static void check_line(cp_model *m, const cJSON *facts, const char *label) {
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    CHECK(line && !strcmp(line, str(facts, "line")), "%s: print_trainable_parameters\n  cpeft %s\n  PEFT  %s", label,
          line ? line : "", str(facts, "line"));
    free(line);
}

/* An adapter directory (LoRA, IA3, prompt, SEQ_CLS) loaded trainable onto the model at model_rel. */
static void check_adapter_case(const char *spec_dir, const char *model_rel, const cJSON *facts, const char *logits_key) {
    char dir[512], path[600], label[600];
    snprintf(dir, sizeof dir, "%s/%s", spec_dir, str(facts, "dir"));
    snprintf(label, sizeof label, "%s", dir + strlen(ROOT) + 1);
    cp_model *m = load(spec_dir, model_rel);
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s", cp_last_error()); cp_model_free(m); return; }
    if (m && cp_adapter_load(m, dir, "default", 1, 1) == CP_OK) {
        check_line(m, facts, label);
        cp_batch b = batch_of(&st, "");
        double g0 = check_grads(m, &st, &b, 0, label), g1 = check_grads(m, &st, &b, 1, label);
        double dl = check_logits(m, &st, &b, logits_key, label);
        printf("    %-34s loss %.6f, grads %.2e (recompute %.2e), logits %.2e\n", label, num(facts, "loss"), g0, g1, dl);
        n_checks++;
    } else {
        CHECK(0, "%s: %s", label, cp_last_error());
    }
    cp_st_close(&st);
    cp_model_free(m);
}

/* A prompt-learning case: the training adapter as get_peft_model built it (PEFT's adapter_config.json with
 * inference_mode false, the encoder's parameters from encoder.safetensors) gives the training forward's logits,
 * loss and gradients; PEFT's saved adapter, loaded for inference, the same logits. */
static void check_prompt_case(const char *spec_dir, const cJSON *facts) {
    char dir[512], path[600], label[600];
    snprintf(dir, sizeof dir, "%s/%s", spec_dir, str(facts, "dir"));
    snprintf(label, sizeof label, "%s", dir + strlen(ROOT) + 1);
    cp_safetensors st, enc;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s", cp_last_error()); return; }
    snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
    if (cp_st_open(&enc, path) != CP_OK) { CHECK(0, "%s", cp_last_error()); cp_st_close(&st); return; }
    cp_batch b = batch_of(&st, "");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    cJSON *json = NULL;
    cp_peft_config *cfg = NULL;
    CHECK_OK(cp_json_read_file(path, &json));
    if (json) CHECK_OK(cp_peft_config_from_json(json, path, &cfg));
    cJSON_Delete(json);
    cp_model *m = load(spec_dir, "model");
    if (cfg && m) {
        cfg->inference_mode = 0;
        cp_rng rng;
        cp_rng_seed(&rng, 1);
        CHECK_OK(cp_peft_add(m, "default", cfg, &rng, 1, 1));
        cp_module **mods;
        int nm, set = 0;
        CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &nm));
        cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
        const int n = nm ? cp_peft_find_adapter(m, "default")->config->method->tensors(mods[0], "default", t) : 0;
        free(mods);
        for (int i = 0; i < n; i++) {
            const cp_st_tensor *w = cp_st_find(&enc, t[i].key);
            CHECK(w && w->numel == t[i].param->numel, "%s: encoder tensor %s missing or mis-shaped", label, t[i].key);
            if (w) memcpy(t[i].param->data, w->data, (size_t)w->numel * sizeof(float)), set++;
        }
        CHECK(set == enc.n_tensors, "%s: %d encoder tensors set, PEFT has %d", label, set, enc.n_tensors);
        check_line(m, facts, label);
        double g0 = check_grads(m, &st, &b, 0, label), g1 = check_grads(m, &st, &b, 1, label);
        double dl = check_logits(m, &st, &b, "logits", label);
        printf("    %-34s loss %.6f, grads %.2e (recompute %.2e), logits %.2e\n", label, num(facts, "loss"), g0, g1, dl);
        n_checks++;
    }
    cp_peft_config_free(cfg);
    cp_model_free(m);
    m = load(spec_dir, "model");
    if (m && cp_adapter_load(m, dir, "default", 1, 0) == CP_OK) {
        double dl = check_logits(m, &st, &b, "logits", label);
        printf("    %-34s PEFT's saved adapter loaded: logits %.2e\n", label, dl);
    } else {
        CHECK(0, "%s: %s", label, cp_last_error());
    }
    cp_model_free(m);
    cp_st_close(&enc);
    cp_st_close(&st);
}

static void check_model(const char *spec_dir, const cJSON *exp) {
    char path[600];
    cp_model *m = load(spec_dir, "model");
    if (!m) return;
    const cJSON *info = get(exp, "info");
    CHECK(cp_model_num_parameters(m) == (int64_t)num(info, "num_parameters"), "%s: %lld parameters, PyTorch %lld", spec_dir,
          (long long)cp_model_num_parameters(m), (long long)num(info, "num_parameters"));
    char *repr = cp_model_repr(m);
    CHECK(repr && !strcmp(repr, str(info, "repr")), "%s: repr differs:\n--- cpeft\n%s\n--- PyTorch\n%s", spec_dir,
          repr ? repr : "", str(info, "repr"));
    free(repr);
    cp_param **params;
    int n, k = 0;
    CHECK_OK(cp_module_params(m->root, &params, &n));
    for (int i = 0; i < n; i++) {
        if (params[i]->tied_to) continue;
        const cJSON *w = cJSON_GetArrayItem(get(info, "parameters"), k++);
        const char *wname = w ? cJSON_GetStringValue(cJSON_GetArrayItem(w, 0)) : "(none)";
        CHECK(w && !strcmp(wname, params[i]->name), "%s: parameter %d is %s, PyTorch has %s", spec_dir, k - 1,
              params[i]->name, wname);
    }
    CHECK(k == cJSON_GetArraySize(get(info, "parameters")), "%s: %d parameters, PyTorch lists %d", spec_dir, k,
          cJSON_GetArraySize(get(info, "parameters")));
    free(params);
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/forward.safetensors", spec_dir);
    if (cp_st_open(&st, path) == CP_OK) {
        cp_batch b = batch_of(&st, "");
        float *logits = malloc((size_t)cp_st_find(&st, "logits")->numel * sizeof *logits);
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        free(logits);
        double dl = check_logits(m, &st, &b, "logits", spec_dir);
        double want_loss = *(const float *)cp_st_find(&st, "loss")->data;
        CHECK(fabs(out.loss - want_loss) <= 1e-5, "%s: loss %.7f vs %.7f", spec_dir, out.loss, want_loss);
        printf("    %-34s %lld parameters, repr, logits %.2e, loss %.2e\n", spec_dir + strlen(ROOT) + 1,
               (long long)cp_model_num_parameters(m), dl, fabs(out.loss - want_loss));
        cp_st_close(&st);
    } else {
        CHECK(0, "%s", cp_last_error());
    }
    cp_model_free(m);
}

static void check_steps(const char *spec_dir, const cJSON *steps) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/steps", spec_dir);
    cp_model *m = load(spec_dir, "model");
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    if (!m || cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s: %s", dir, cp_last_error()); cp_model_free(m); return; }
    cp_param **params = NULL;
    int n = 0;
    CHECK_OK(cp_adapter_load(m, dir, "default", 1, 1));
    CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    const cJSON *cfg = get(steps, "config"), *betas = get(cfg, "betas");
    cp_adamw_config oc = {num(cfg, "lr"), cJSON_GetNumberValue(cJSON_GetArrayItem(betas, 0)),
                          cJSON_GetNumberValue(cJSON_GetArrayItem(betas, 1)), num(cfg, "eps"), num(cfg, "weight_decay")};
    cp_adamw opt;
    CHECK_OK(cp_adamw_init(&opt, params, n, oc));
    const int64_t total = (int64_t)num(cfg, "num_training_steps"), warmup = (int64_t)num(cfg, "num_warmup_steps");
    const int ga = (int)num(cfg, "gradient_accumulation_steps");
    double wl = 0, wn = 0, wlr = 0, wf = 0;
    for (int64_t s = 0; s < total && ga <= 8; s++) {
        cp_batch micro[8];
        for (int i = 0; i < ga; i++) {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "_%d", (int)(s * ga + i));
            micro[i] = batch_of(&st, suffix);
        }
        double lr = oc.lr * cp_schedule_factor(CP_SCHED_LINEAR, s, warmup, total);
        cp_step_result res;
        CHECK_OK(cp_train_step(m, &opt, micro, ga, lr, num(cfg, "max_grad_norm"), 0, 1, &res));
        const double want_norm = cJSON_GetNumberValue(cJSON_GetArrayItem(get(steps, "grad_norms"), (int)s));
        wl = fmax(wl, fabs(res.loss - cJSON_GetNumberValue(cJSON_GetArrayItem(get(steps, "losses"), (int)s))));
        wn = fmax(wn, fabs(res.grad_norm - want_norm) / want_norm);
        wlr = fmax(wlr, fabs(lr - cJSON_GetNumberValue(cJSON_GetArrayItem(get(steps, "lrs"), (int)s))));
    }
    int matched = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        if (strncmp(st.tensors[i].name, "final.", 6)) continue;
        cp_param *p = cp_adapter_find_param(m, "default", st.tensors[i].name + 6);
        CHECK(p && p->numel == st.tensors[i].numel, "%s: %s not in the model", dir, st.tensors[i].name);
        if (!p) continue;
        wf = fmax(wf, rel_diff(p->data, st.tensors[i].data, p->numel));
        matched++;
    }
    printf("    %-34s 10 steps: loss %.2e, grad norm rel %.2e, lr %.1e, final tensors rel %.2e (%d)\n",
           dir + strlen(ROOT) + 1, wl, wn, wlr, wf, matched);
    CHECK(wl < 1e-4 && wn < 1e-4 && wlr < 1e-12, "%s: losses %.3e, grad norms %.3e, lrs %.3e", dir, wl, wn, wlr);
    CHECK(wf < 1e-4 && matched == n, "%s: final adapter differs by %.3e (%d/%d tensors)", dir, wf, matched, n);
    worst_step = fmax(worst_step, fmax(wl, wf));
    n_checks++;
    cp_adamw_free(&opt);
    free(params);
    cp_st_close(&st);
    cp_model_free(m);
}

static void check_generate(const char *spec_dir, const cJSON *g) {
    const cJSON *prompts = get(g, "prompts"), *run;
    const int64_t n = cJSON_GetArraySize(prompts);
    int32_t *ids[8];
    int64_t lens[8];
    for (int64_t r = 0; r < n && r < 8; r++) {
        const cJSON *p = cJSON_GetArrayItem(prompts, (int)r);
        lens[r] = cJSON_GetArraySize(p);
        ids[r] = malloc((size_t)lens[r] * sizeof **ids);
        for (int64_t t = 0; t < lens[r]; t++) ids[r][t] = (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(p, (int)t));
    }
    cJSON_ArrayForEach(run, get(g, "runs")) {
        cp_model *m = load(spec_dir, "model");
        if (!m) continue;
        const char *adapter = cJSON_GetStringValue(get(run, "adapter"));
        if (adapter) {
            char dir[600];
            snprintf(dir, sizeof dir, "%s/%s", spec_dir, adapter);
            CHECK_OK(cp_model_load_adapter(m, dir, "default", 0));
        }
        for (int no_cache = 0; no_cache <= 1; no_cache++) {
            cp_generate_options o;
            CHECK_OK(cp_generate_options_init(m, &o));
            o.max_new_tokens = (int64_t)num(g, "max_new_tokens");
            o.n_eos = 0;
            o.pad_token_id = (int32_t)num(g, "pad_token_id");
            o.no_cache = no_cache;
            cp_generation out;
            cp_status st = cp_model_generate(m, (const int32_t *const *)ids, lens, n, &o, &out);
            CHECK(st == CP_OK, "%s generate: %s", spec_dir, cp_last_error());
            if (st != CP_OK) continue;
            for (int64_t r = 0; r < n; r++) {
                const cJSON *want = cJSON_GetArrayItem(get(run, "tokens"), (int)r);
                int same = out.n_tokens[r] == cJSON_GetArraySize(want);
                for (int64_t t = 0; same && t < out.n_tokens[r]; t++)
                    same = out.tokens[r][t] == (int32_t)cJSON_GetNumberValue(cJSON_GetArrayItem(want, (int)t));
                CHECK(same, "%s generate%s%s row %lld: tokens differ from transformers'", spec_dir, adapter ? " with " : "",
                      adapter ? adapter : "", (long long)r);
            }
            cp_generation_free(&out);
        }
        printf("    %-34s greedy %s: %lld rows x %d tokens as transformers (cached and recomputed), margin %.1e\n",
               spec_dir + strlen(ROOT) + 1, adapter ? adapter : "base", (long long)n, (int)num(g, "max_new_tokens"),
               num(run, "min_top1_margin"));
        n_checks++;
        cp_model_free(m);
    }
    for (int64_t r = 0; r < n && r < 8; r++) free(ids[r]);
}

static void run_spec(const char *name) {
    char dir[300], path[400];
    snprintf(dir, sizeof dir, ROOT "/%s", name);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    printf("  %s: %s\n", name, str(exp, "desc"));
    check_model(dir, exp);
    const cJSON *c;
    cJSON_ArrayForEach(c, get(exp, "lora")) check_adapter_case(dir, "model", c, "logits_adapter");
    if (get(exp, "steps")) check_steps(dir, get(exp, "steps"));
    if (get(exp, "ia3")) check_adapter_case(dir, "model", get(exp, "ia3"), "logits_adapter");
    cJSON_ArrayForEach(c, get(exp, "prompt")) check_prompt_case(dir, c);
    if (get(exp, "seq_cls")) check_adapter_case(dir, "seq_cls/model", get(exp, "seq_cls"), "logits_adapter");
    if (get(exp, "generate")) check_generate(dir, get(exp, "generate"));
    n_specs++;
    cJSON_Delete(exp);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(decoders_match_transformers_and_peft) {
    DIR *d = opendir(ROOT);
    CHECK(d != NULL, "cannot open " ROOT);
    if (!d) return;
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n; i++) {
        run_spec(names[i]);
        free(names[i]);
    }
    CHECK(n_specs >= 2, "only %d decoder specs ran", n_specs);
    printf("  %d specs, %d adapter/step/generation checks: max |logits diff| %.2e, max relative gradient diff %.2e, "
           "10-step max diff %.2e\n", n_specs, n_checks, worst_logits, worst_grad, worst_step);
}

int main(void) {
    cp_set_quiet(1);
    RUN(decoders_match_transformers_and_peft);
    return test_summary();
}
