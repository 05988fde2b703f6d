/*
 * test_peft_method.c — PEFT methods behind one table (src/peft/method.h).
 *
 * A toy method defined here, in the test alone (a rank-1 update y += (x·u) v on Linear modules,
 * peft_type "TOY"), goes through the model-level code that LoRA uses: injection by target name,
 * forward and backward through the projection hooks (gradients against finite differences),
 * disabling, counting, the trainable list, merging, the repr, saving under its own keys, deleting,
 * and living beside a LoRA adapter. Nothing in peft_model.c, adapter_io.c, api.c or the other
 * generic files knows it: they reach it through its table, which is what a new method (IA3, ...)
 * needs besides its own files and one registration line. Also: the registry and its message for an
 * unknown peft_type, and a check that the generic files name no method.
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
#include "peft/lora.h"
#include "peft/peft_model.h"
#include "peft/targets.h"
#include "peft/weighted.h"

#include <ctype.h>
#include <stdlib.h>
#include <unistd.h>

#define NEO "tests/fixtures/models/gpt_neo_tiny"
#define NEO_LORA "tests/fixtures/lora/neo_notebook"

/* ---- the toy method ----------------------------------------------------------------------------- */

typedef struct {
    char *name;
    cp_param *u, *v; /* u (in), v (out): ΔW = v uᵀ */
    int active, merged;
} toy_adapter;

typedef struct {
    cp_hook hook;
    toy_adapter ad[4];
    int n, disabled;
} toy_layer;

typedef struct {
    cp_peft_config base;
    char *target; /* one target_modules name */
} toy_config;

static const cp_hook_ops toy_hook_ops;
static const cp_peft_method toy_method;

static toy_layer *toy_of(const cp_module *m) { return (toy_layer *)cp_hook_find(m, &toy_hook_ops); }

static int toy_runs(const toy_layer *l, const toy_adapter *a) { return !l->disabled && a->active && !a->merged; }

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static cp_status toy_forward(const cp_hook *h, const cp_run *run, const cp_module *m, float *out, const float *in, int64_t N) {
    const toy_layer *l = (const toy_layer *)h;
    const int64_t C = m->in_features, OC = m->out_features;
    for (int k = 0; k < l->n; k++) {
        const toy_adapter *a = &l->ad[k];
        if (!toy_runs(l, a)) continue;
        for (int64_t n = 0; n < N; n++) {
            float s = (float)dot(in + n * C, a->u->data, C); // (x·u)
            for (int64_t o = 0; o < OC; o++) out[n * OC + o] += s * a->v->data[o];
        }
    }
    return CP_OK;
}

static cp_status toy_backward(const cp_hook *h, const cp_run *run, const cp_module *m, float *dX, const float *dY,
                              const float *X, int64_t N) {
    const toy_layer *l = (const toy_layer *)h;
    const int64_t C = m->in_features, OC = m->out_features;
    for (int k = 0; k < l->n; k++) {
        const toy_adapter *a = &l->ad[k];
        if (!toy_runs(l, a)) continue;
        for (int64_t n = 0; n < N; n++) {
            float s = (float)dot(X + n * C, a->u->data, C), g = (float)dot(dY + n * OC, a->v->data, OC); // x·u, dy·v
            if (a->u->grad) for (int64_t i = 0; i < C; i++) a->u->grad[i] += g * X[n * C + i];
            if (a->v->grad) for (int64_t o = 0; o < OC; o++) a->v->grad[o] += s * dY[n * OC + o];
            if (dX) for (int64_t i = 0; i < C; i++) dX[n * C + i] += g * a->u->data[i];
        }
    }
    return CP_OK;
}

static int toy_trains(const cp_hook *h) {
    const toy_layer *l = (const toy_layer *)h;
    for (int k = 0; k < l->n; k++)
        if (l->ad[k].u->grad) return 1;
    return 0;
}

static void toy_free_adapter(toy_adapter *a) {
    cp_param_free(a->u);
    cp_param_free(a->v);
    cp_free(a->name);
}

static void toy_hook_free(cp_hook *h) {
    toy_layer *l = (toy_layer *)h;
    for (int k = 0; k < l->n; k++) toy_free_adapter(&l->ad[k]);
    cp_free(l);
}

static const cp_hook_ops toy_hook_ops = {.kind = "toy", .linear_forward = toy_forward, .linear_backward = toy_backward,
                                         .trains = toy_trains, .free = toy_hook_free};

static cp_peft_config *toy_config_new(void) {
    toy_config *c = cp_calloc(1, sizeof *c, "a toy config");
    if (c) c->base.method = &toy_method;
    return c ? &c->base : NULL;
}

static cp_status toy_from_json(const cJSON *root, const char *path, cp_peft_config **out) {
    toy_config *c = (toy_config *)toy_config_new();
    const char *target;
    if (!c || cp_peft_config_read_common(&c->base, root, path) != CP_OK ||
        cp_json_get_string(root, "target_modules", "q_proj", 0, &target, path) != CP_OK)
        return CP_ERR;
    c->target = cp_strdup(target);
    *out = &c->base;
    return CP_OK;
}

static char *toy_to_json(const cp_peft_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    cp_peft_config_write_common(cfg, o);
    cJSON_AddStringToObject(o, "target_modules", ((const toy_config *)cfg)->target);
    char *text = cp_json_dump_python(o);
    cJSON_Delete(o);
    return text;
}

static cp_peft_config *toy_copy(const cp_peft_config *src) {
    toy_config *c = cp_calloc(1, sizeof *c, "a toy config");
    cp_peft_config_copy_common(&c->base, src);
    c->target = cp_strdup(((const toy_config *)src)->target);
    return &c->base;
}

static void toy_config_free(cp_peft_config *cfg) {
    cp_free(((toy_config *)cfg)->target);
    cp_peft_config_free_common(cfg);
    cp_free(cfg);
}

static cp_status toy_targets(cp_model *m, const cp_peft_config *cfg, cp_module ***out, int *n) {
    toy_config *c = (toy_config *)cfg;
    cp_target_spec t = {.kind = CP_TARGETS_LIST, .modules = &c->target, .n_modules = 1,
                        .modules_to_save = cfg->modules_to_save, .n_modules_to_save = cfg->n_modules_to_save,
                        .kinds = 1u << CP_MOD_LINEAR, .supported = "`torch.nn.Linear`"};
    return cp_find_targets(&t, m->root, m->config.model_type, m->lm_head, out, n);
}

static cp_status toy_attach(cp_module *mod, const char *name, cp_peft_config *cfg, cp_rng *rng) {
    toy_layer *l = toy_of(mod);
    if (!l) {
        l = cp_calloc(1, sizeof *l, "a toy layer");
        l->hook.ops = &toy_hook_ops;
        cp_hook_attach(mod, &l->hook);
    }
    if (l->n == 4) return cp_error("toy: at most 4 adapters");
    toy_adapter *a = &l->ad[l->n++];
    char buf[256];
    a->name = cp_strdup(name);
    snprintf(buf, sizeof buf, "%s.toy_u.%s", mod->path, name);
    a->u = cp_param_new(buf, 1, mod->in_features, 0);
    snprintf(buf, sizeof buf, "%s.toy_v.%s", mod->path, name);
    a->v = cp_param_new(buf, 1, mod->out_features, 0);
    for (int64_t i = 0; i < a->u->numel; i++) a->u->data[i] = 0.3f * (2 * cp_rng_uniform(rng) - 1);
    for (int64_t i = 0; i < a->v->numel; i++) a->v->data[i] = 0.3f * (2 * cp_rng_uniform(rng) - 1);
    return CP_OK;
}

static void toy_detach(cp_module *mod, const char *name) {
    toy_layer *l = toy_of(mod);
    for (int k = 0; l && k < l->n; k++)
        if (!strcmp(l->ad[k].name, name)) {
            toy_free_adapter(&l->ad[k]);
            memmove(l->ad + k, l->ad + k + 1, (size_t)(l->n - k - 1) * sizeof *l->ad);
            l->n--;
            break;
        }
    if (l && l->n == 0) {
        cp_hook_detach(mod, &l->hook);
        cp_free(l);
    }
}

static toy_adapter *toy_find(const cp_module *mod, const char *name) {
    toy_layer *l = toy_of(mod);
    for (int k = 0; l && k < l->n; k++)
        if (!name || !strcmp(l->ad[k].name, name)) return &l->ad[k];
    return NULL;
}

static const char *toy_adapter_at(const cp_module *mod, int i) {
    const toy_layer *l = toy_of(mod);
    return l && i < l->n ? l->ad[i].name : NULL;
}

static void toy_set_state(cp_module *mod, const char *const *active, int n_active, int disabled) {
    toy_layer *l = toy_of(mod);
    l->disabled = disabled;
    for (int k = 0; k < l->n; k++) {
        l->ad[k].active = 0;
        for (int i = 0; i < n_active; i++) l->ad[k].active |= !strcmp(active[i], l->ad[k].name);
    }
}

static int toy_tensors(const cp_module *mod, const char *name, cp_peft_tensor *out) {
    toy_adapter *a = toy_find(mod, name);
    if (!a) return 0;
    out[0] = (cp_peft_tensor){.key = "toy_u", .param = a->u, .config_dim = -1};
    out[1] = (cp_peft_tensor){.key = "toy_v", .param = a->v, .config_dim = -1};
    return 2;
}

static cp_status toy_plan(const cp_module *mod, const cp_peft_config *cfg, cp_peft_tensor *out, int *n) {
    out[0] = (cp_peft_tensor){.key = "toy_u", .ndim = 1, .shape = {mod->in_features}, .config_dim = -1};
    out[1] = (cp_peft_tensor){.key = "toy_v", .ndim = 1, .shape = {mod->out_features}, .config_dim = -1};
    *n = 2;
    return CP_OK;
}

static int toy_merged(const cp_module *mod, const char *name) {
    const toy_layer *l = toy_of(mod);
    for (int k = 0; l && k < l->n; k++)
        if (l->ad[k].merged && (!name || !strcmp(l->ad[k].name, name))) return 1;
    return 0;
}

static void toy_apply(cp_module *mod, const char *name, int merge) {
    toy_adapter *a = toy_find(mod, name);
    if (!a || a->merged == merge) return;
    const int64_t C = mod->in_features, OC = mod->out_features;
    const float sign = merge ? 1.0f : -1.0f;
    for (int64_t o = 0; o < OC; o++) // W (OC, C) += ± v uᵀ
        for (int64_t i = 0; i < C; i++) mod->weight->data[o * C + i] += sign * a->v->data[o] * a->u->data[i];
    a->merged = merge;
}

static void toy_merge(cp_module *mod, const char *name) { toy_apply(mod, name, 1); }
static void toy_unmerge(cp_module *mod, const char *name) { toy_apply(mod, name, 0); }

static const cp_peft_method toy_method = {
    .peft_type = "TOY", .tuner_class = "ToyModel", .hook = &toy_hook_ops,
    .config_new = toy_config_new, .config_from_json = toy_from_json, .config_to_json = toy_to_json,
    .config_copy = toy_copy, .config_free = toy_config_free,
    .targets = toy_targets, .attach = toy_attach, .detach = toy_detach, .adapter_at = toy_adapter_at,
    .set_state = toy_set_state, .tensors = toy_tensors, .plan = toy_plan,
    .merged = toy_merged, .merge = toy_merge, .unmerge = toy_unmerge,
};

/* ---- helpers ------------------------------------------------------------------------------------- */

enum { B = 2, T = 7 };
static int64_t ids[B * T], labels[B * T];

static void fill_batch(cp_model *m) {
    const int64_t V = cp_model_vocab_size(m);
    for (int i = 0; i < B * T; i++) ids[i] = labels[i] = (i * 37 + 11) % V;
}

static float *logits_of(cp_model *m) {
    const int64_t V = cp_model_vocab_size(m);
    float *l = malloc((size_t)(B * T * V) * sizeof *l);
    cp_batch b = {.B = B, .T = T, .input_ids = ids};
    cp_outputs out = {.logits = l};
    CHECK_OK(cp_model_forward(m, &b, &out));
    return l;
}

static double diff(cp_model *m, const float *a, const float *b) {
    return test_max_abs_diff(a, b, (size_t)(B * T * cp_model_vocab_size(m)));
}

static double model_loss(cp_model *m) {
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = labels};
    cp_outputs out = {0};
    cp_model_forward(m, &b, &out);
    return out.loss * (double)out.loss_tokens;
}

static cp_model *load(const char *dir) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

static cp_status add_toy(cp_model *m, const char *name, const char *target, uint64_t seed) {
    toy_config *c = (toy_config *)toy_config_new();
    c->target = cp_strdup(target);
    c->base.task_type = cp_strdup("CAUSAL_LM");
    cp_rng rng;
    cp_rng_seed(&rng, seed);
    cp_status st = cp_peft_add(m, name, &c->base, &rng, 1, 1);
    toy_config_free(&c->base);
    return st;
}

/* ---- tests ---------------------------------------------------------------------------------------- */

TEST(registry_finds_methods_by_peft_type) {
    CHECK(cp_peft_method_find("LORA") == &cp_lora_method, "LORA is registered");
    CHECK(cp_peft_method_find("TOY") == NULL && cp_peft_method_find("lora") == NULL, "unknown types are not found");
    char list[256];
    CHECK(strstr(cp_peft_supported_types(list, sizeof list), "\"LORA\"") != NULL, "supported types: %s", list);
    int n = 0;
    while (cp_peft_method_at(n)) n++;
    CHECK(n >= 1 && cp_peft_method_at(0) == &cp_lora_method, "%d methods, LoRA first", n);

    char dir[] = "/tmp/cpeft-method-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"peft_type\": \"NOT_A_METHOD\", \"r\": 8}", f);
    fclose(f);
    cp_peft_config *cfg = NULL;
    char want[600];
    snprintf(want, sizeof want, "peft_type is \"NOT_A_METHOD\", expected %s (the PEFT methods cpeft supports)", list);
    CHECK_ERR(cp_peft_config_load(path, &cfg), want);
    CHECK(cfg == NULL, "nothing returned on error");
    /* the generic loader hands a LoRA file to LoRA's parser */
    CHECK_OK(cp_peft_config_load(NEO_LORA "/adapter_config.json", &cfg));
    CHECK(cfg && cfg->method == &cp_lora_method && cfg->task_type && !strcmp(cfg->task_type, "CAUSAL_LM"), "LoRA config");
    CHECK(cfg && ((cp_lora_config *)cfg)->r == 8, "r read by LoRA's parser");
    cp_peft_config_free(cfg);
    remove(path);
    rmdir(dir);
}

TEST(a_method_defined_outside_the_generic_code) {
    cp_model *m = load(NEO);
    if (!m) return;
    fill_batch(m);
    float *base = logits_of(m);
    int64_t base_trainable, base_all;
    cp_peft_count(m, &base_trainable, &base_all);

    CHECK_ERR(add_toy(m, "bad", "ln_1", 1), "Target module LayerNorm(...) at \"transformer.h.0.ln_1\" is not supported. "
                                           "Currently, only the following modules are supported: `torch.nn.Linear`.");
    CHECK(!cp_peft_find_adapter(m, "bad"), "a failed add leaves no adapter");
    CHECK_OK(add_toy(m, "toy", "q_proj", 7));
    cp_module **mods;
    int n_mods = 0;
    CHECK_OK(cp_peft_adapter_modules(m, "toy", &mods, &n_mods));
    CHECK(n_mods == cp_model_num_layers(m), "%d modules carry the toy adapter", n_mods);
    int64_t per_module = 0;
    for (int i = 0; i < n_mods; i++) {
        CHECK(strstr(mods[i]->path, ".q_proj") != NULL, "%s targeted", mods[i]->path);
        per_module = mods[i]->in_features + mods[i]->out_features;
    }
    cp_free(mods);

    /* forward through the projection hook; disabling gives the base model back exactly */
    float *with = logits_of(m);
    CHECK(diff(m, with, base) > 1e-3, "the adapter changes the logits (%.3e)", diff(m, with, base));
    cp_peft_set_disabled(m, 1);
    float *off = logits_of(m);
    CHECK(diff(m, off, base) == 0, "disabled: base logits (%.3e)", diff(m, off, base));
    cp_peft_set_disabled(m, 0);

    /* counting and the trainable list */
    int64_t trainable, all;
    cp_peft_count(m, &trainable, &all);
    CHECK(trainable == n_mods * per_module && all == base_all + trainable, "trainable %lld, all %lld (base %lld)",
          (long long)trainable, (long long)all, (long long)base_all);
    CHECK(cp_peft_adapter_num_params(m, "toy") == trainable, "own count %lld", (long long)cp_peft_adapter_num_params(m, "toy"));
    cp_param **params;
    int n_params = 0;
    CHECK_OK(cp_peft_trainable_params(m, &params, &n_params));
    CHECK(n_params == 2 * n_mods && n_params && strstr(params[0]->name, ".toy_u.toy") && strstr(params[1]->name, ".toy_v.toy"),
          "%d trainable tensors, first %s", n_params, n_params ? params[0]->name : "-");

    /* backward through the projection hook: the toy's gradients against central differences */
    double loss_sum;
    int64_t n_targets;
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = labels};
    CHECK_OK(cp_model_forward_backward(m, &b, 1.0, 0, &loss_sum, &n_targets));
    double worst = 0;
    int checked = 0;
    for (int p = 0; p < n_params; p++)
        for (int64_t k = 0; k < params[p]->numel; k += 5) {
            const float h = 1e-2f, keep = params[p]->data[k];
            params[p]->data[k] = keep + h; double lp = model_loss(m);
            params[p]->data[k] = keep - h; double lm = model_loss(m);
            params[p]->data[k] = keep;
            double numeric = (lp - lm) / (2 * h), analytic = params[p]->grad[k];
            if (fabs(numeric) < 1e-2 && fabs(analytic) < 1e-2) continue;
            worst = fmax(worst, fabs(analytic - numeric) / fmax(fabs(analytic), fabs(numeric)));
            checked++;
        }
    printf("  toy gradients: %d entries checked, worst relative error %.2e\n", checked, worst);
    CHECK(checked > 10 && worst < 5e-2, "toy gradients off by %.3e (%d checked)", worst, checked);
    cp_free(params);

    /* the repr names the method's tuner class */
    char *repr = cp_model_peft_repr(m);
    CHECK(repr && strstr(repr, "PeftModelForCausalLM(\n  (base_model): ToyModel(\n    (model): GPTNeoForCausalLM("), "repr");
    free(repr);

    /* merging through the table: the merged model computes what the hook computed */
    CHECK_OK(cp_peft_merge(m));
    CHECK(cp_peft_has_merged(m), "merged");
    float *merged = logits_of(m);
    CHECK(diff(m, merged, with) < 1e-4, "merged vs unmerged %.3e", diff(m, merged, with));
    CHECK_ERR(cp_peft_delete_adapter(m, "toy"), "adapter \"toy\" is merged; unmerge it before deleting it");
    CHECK_OK(cp_peft_unmerge(m));
    CHECK(!cp_peft_has_merged(m), "unmerged");
    float *unmerged = logits_of(m);
    CHECK(diff(m, unmerged, with) < 1e-4, "unmerged vs before %.3e", diff(m, unmerged, with));

    /* saved under the method's own keys, with its peft_type; loading goes through the registry,
     * which does not know this method */
    char dir[] = "/tmp/cpeft-method-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char out[160], file[200];
    snprintf(out, sizeof out, "%s/toy", dir);
    CHECK_OK(cp_adapter_save(m, "toy", out));
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", out);
    cp_safetensors st;
    if (cp_st_open(&st, file) == CP_OK) {
        CHECK(st.n_tensors == 2 * n_mods, "%d tensors saved", st.n_tensors);
        CHECK(cp_st_find(&st, "base_model.model.transformer.h.0.attn.attention.q_proj.toy_u") != NULL, "toy_u key");
        CHECK(cp_st_find(&st, "base_model.model.transformer.h.2.attn.attention.q_proj.toy_v") != NULL, "toy_v key");
        cp_st_close(&st);
    } else CHECK(0, "%s: %s", file, cp_last_error());
    snprintf(file, sizeof file, "%s/adapter_config.json", out);
    char *text = NULL;
    size_t len;
    CHECK_OK(cp_read_file(file, &text, &len));
    CHECK(text && strstr(text, "\"peft_type\": \"TOY\"") && strstr(text, "\"target_modules\": \"q_proj\""), "config: %s", text);
    cp_free(text);
    CHECK_ERR(cp_adapter_load(m, out, "again", 0, 0), "peft_type is \"TOY\", expected \"LORA\"");

    /* beside a LoRA adapter: both count, both compute, each alone equals a model with it alone */
    CHECK_OK(cp_adapter_load(m, NEO_LORA, "lora", 0, 0));
    cp_model *lora_only = load(NEO);
    if (lora_only) {
        CHECK_OK(cp_adapter_load(lora_only, NEO_LORA, "lora", 1, 0));
        float *want = logits_of(lora_only);
        const char *just_lora[] = {"lora"};
        CHECK_OK(cp_peft_set_active(m, just_lora, 1));
        float *got = logits_of(m);
        CHECK(diff(m, got, want) < 1e-5, "LoRA alone beside the toy: %.3e", diff(m, got, want));
        int64_t lt, la;
        cp_peft_count(lora_only, &lt, &la);
        int64_t t2, a2;
        cp_peft_count(m, &t2, &a2);
        CHECK(a2 == la + trainable, "all params: %lld = %lld + %lld", (long long)a2, (long long)la, (long long)trainable);
        const char *both[] = {"toy", "lora"};
        CHECK_OK(cp_peft_set_active(m, both, 2));
        float *sum = logits_of(m);
        CHECK(diff(m, sum, want) > 1e-3 && diff(m, sum, with) > 1e-3, "both adapters run");
        free(want);
        free(got);
        free(sum);
        cp_model_free(lora_only);
    }
    const char *pair[] = {"toy", "lora"};
    double w[] = {1, 1};
    CHECK_ERR(cp_peft_add_weighted_adapter(m, pair, w, 2, "mix", CP_COMBINE_LINEAR), "are of different PEFT types");
    CHECK_ERR(cp_peft_add_weighted_adapter(m, pair, w, 1, "mix", CP_COMBINE_LINEAR),
              "add_weighted_adapter is not supported for TOY adapters");
    CHECK_ERR(cp_peft_scale_adapter(m, "toy", 2.0), "TOY adapters cannot be scaled");

    /* deleting leaves no trace of the method on the tree */
    CHECK_OK(cp_peft_delete_adapter(m, "toy"));
    CHECK(!cp_peft_carries(m, "toy") && cp_peft_carries(m, "lora"), "toy gone, LoRA kept");
    int toy_hooks = 0;
    cp_module *q = cp_module_find(m->root, "transformer.h.0.attn.attention.q_proj");
    for (const cp_hook *h = q ? q->hooks : NULL; h; h = h->next) toy_hooks += h->ops == &toy_hook_ops;
    CHECK(q && toy_hooks == 0 && cp_hook_find(q, &cp_lora_hook_ops), "q_proj keeps only its LoRA layer");

    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    free(base);
    free(with);
    free(off);
    free(merged);
    free(unmerged);
    cp_model_free(m);
}

/* The generic files reach methods only through their tables: their code (comments and strings
 * aside) names no method, so adding one needs no edit there. */
TEST(generic_files_name_no_method) {
    static const char *const files[] = {
        "src/peft/peft_model.c", "src/peft/peft_count.c", "src/peft/saved_module.c", "src/peft/adapter_io.c",
        "src/peft/api.c", "src/peft/peft_repr.c", "src/peft/weighted.c", "src/peft/peft_config.c", "src/peft/targets.c",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *text = NULL;
        size_t len = 0;
        CHECK_OK(cp_read_file(files[i], &text, &len));
        if (!text) continue;
        /* blank out comments and string literals */
        for (size_t k = 0; k < len; k++) {
            if (text[k] == '/' && k + 1 < len && text[k + 1] == '*') {
                for (; k + 1 < len && !(text[k] == '*' && text[k + 1] == '/'); k++)
                    if (text[k] != '\n') text[k] = ' ';
                text[k] = text[k + 1] = ' ';
            } else if (text[k] == '/' && k + 1 < len && text[k + 1] == '/') {
                while (k < len && text[k] != '\n') text[k++] = ' ';
            } else if (text[k] == '"') {
                for (k++; k < len && text[k] != '"'; k++) {
                    if (text[k] == '\\') text[k++] = ' ';
                    text[k] = ' ';
                }
            }
        }
        for (size_t k = 0; k < len; k++) text[k] = (char)tolower((unsigned char)text[k]);
        char *hit = strstr(text, "lora");
        int line = 1;
        for (char *p = text; hit && p < hit; p++) line += *p == '\n';
        CHECK(!hit, "%s:%d names LoRA in its code", files[i], line);
        cp_free(text);
    }
}

int main(void) {
    RUN(registry_finds_methods_by_peft_type);
    RUN(a_method_defined_outside_the_generic_code);
    RUN(generic_files_name_no_method);
    return test_summary();
}
