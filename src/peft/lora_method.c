/*
 * lora_method.c — LoRA as a PEFT method (method.h): its config behind the generic config calls,
 * LoraModel's checks and target matching, attaching adapters to modules with their per-module rank
 * and alpha, the tensors PEFT saves (lora_A / lora_B, lora_embedding_A / _B), merging; and the LoRA
 * shorthands older callers use. The compute is lora.c's hook, the config file lora_config.c.
 */
#include "peft/lora.h"
#include "core/alloc.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "peft/targets.h"

#include <string.h>

#define LORA(cfg) ((cp_lora_config *)(cfg))
#define CLORA(cfg) ((const cp_lora_config *)(cfg))

/* ---- config ----------------------------------------------------------------------------------- */

static cp_peft_config *config_new(void) {
    cp_lora_config *cfg = cp_malloc(sizeof *cfg, "a LoRA config");
    if (!cfg) return NULL;
    cp_lora_config_init(cfg);
    return &cfg->base;
}

static cp_status config_from_json(const cJSON *root, const char *path, cp_peft_config **out) {
    cp_lora_config *cfg = cp_malloc(sizeof *cfg, "a LoRA config");
    *out = NULL;
    if (!cfg) return CP_ERR;
    if (cp_lora_config_from_json(cfg, root, path) != CP_OK) {
        cp_free(cfg);
        return CP_ERR;
    }
    *out = &cfg->base;
    return CP_OK;
}

static char *config_to_json(const cp_peft_config *cfg) { return cp_lora_config_to_json(CLORA(cfg)); }

static cp_peft_config *config_copy(const cp_peft_config *src) {
    cp_lora_config *cfg = cp_malloc(sizeof *cfg, "a LoRA config");
    if (!cfg) return NULL;
    if (cp_lora_config_copy(cfg, CLORA(src)) != CP_OK) {
        cp_free(cfg);
        return NULL;
    }
    cfg->method = &cp_lora_method;
    return &cfg->base;
}

static void config_free(cp_peft_config *cfg) {
    cp_lora_config_free(LORA(cfg));
    cp_free(cfg);
}

/* ---- LoraModel's checks ----------------------------------------------------------------------- */

/* The last component of a dotted name is "embed_tokens" or "lm_head" (PEFT's EMBEDDING_LAYER_NAMES). */
static int is_embedding_name(const char *name) {
    const char *leaf = strrchr(name, '.');
    leaf = leaf ? leaf + 1 : name;
    return !strcmp(leaf, "embed_tokens") || !strcmp(leaf, "lm_head");
}

/* ensure_weight_tying: PEFT ties the adapters of a tied embedding and head only when the model ties
 * them and "embed_tokens" / "lm_head" is in modules_to_save or target_modules; then the numbers
 * change and cpeft refuses. Otherwise PEFT warns and changes nothing; so does cpeft. */
static cp_status check_weight_tying(const cp_model *m, const cp_lora_config *cfg, const char *name) {
    if (!cfg->ensure_weight_tying) return CP_OK;
    int tied = m->config.tie_word_embeddings && m->lm_head && m->lm_head->weight && m->lm_head->weight->tied_to;
    int embedding = 0;
    for (int i = 0; i < cfg->n_modules_to_save && !embedding; i++) embedding = is_embedding_name(cfg->modules_to_save[i]);
    for (int i = 0; cfg->target_kind == CP_TARGETS_LIST && i < cfg->n_target_modules && !embedding; i++)
        embedding = is_embedding_name(cfg->target_modules[i]);
    for (int i = 0; cfg->target_kind == CP_TARGETS_REGEX && i < 2 && !embedding; i++)
        if (cp_regex_fullmatch(cfg->target_regex, i ? "lm_head" : "embed_tokens", &embedding) != CP_OK) return CP_ERR;
    if (!tied) cp_warn("You have requested `ensure_weight_tying`, but no tied modules were found in the model");
    else if (!embedding)
        cp_warn("You have requested `ensure_weight_tying`, but no tied modules are added in either `modules_to_save` or "
                "`target_modules`");
    else
        return cp_error("adapter \"%s\": ensure_weight_tying=true on a model with tied embeddings is not supported yet by "
                        "cpeft (PEFT then ties the adapters of the input embedding and lm_head)", name);
    return CP_OK;
}

static cp_status check(const cp_model *m, const char *name, const cp_peft_config *cfg) {
    if (cp_lora_config_validate(CLORA(cfg), name) != CP_OK) return CP_ERR;
    return check_weight_tying(m, CLORA(cfg), name);
}

static cp_status targets(cp_model *m, const cp_peft_config *cfg, cp_module ***out, int *n) {
    cp_target_spec t;
    cp_lora_target_spec(CLORA(cfg), &t);
    return cp_find_targets(&t, m->root, m->config.model_type, m->lm_head, out, n);
}

/* PEFT saves target_modules as it matched them (cp_target_names): the default names for None, the
 * full names for "all-linear", and a list of 20 or more names shortened to minimal suffixes. */
static cp_status resolve(cp_model *m, cp_peft_config *base) {
    cp_lora_config *cfg = LORA(base);
    if (cfg->target_kind == CP_TARGETS_REGEX) return CP_OK;
    cp_target_spec t;
    cp_lora_target_spec(cfg, &t);
    char **names;
    int n;
    if (cp_target_names(&t, m->root, m->config.model_type, m->lm_head, &names, &n) != CP_OK) return CP_ERR;
    cp_free_names(cfg->target_modules, cfg->n_target_modules);
    cfg->target_modules = names;
    cfg->n_target_modules = n;
    cfg->target_kind = CP_TARGETS_LIST;
    return CP_OK;
}

/* PEFT's save_embedding_layers="auto" test (embedding_is_targeted): "embed_tokens" or "lm_head"
 * literally in a target_modules list, or a target regex that fully matches a module named so (after
 * a '.' or whole). all-linear: never. */
typedef struct { const char *regex; int hit; cp_status st; } emb_regex_ctx;

static int visit_emb_regex(cp_module *mod, void *vctx) {
    emb_regex_ctx *c = vctx;
    const char *leaf = strrchr(mod->path, '.');
    leaf = leaf ? leaf + 1 : mod->path;
    if (strcmp(leaf, "embed_tokens") && strcmp(leaf, "lm_head")) return 0;
    c->st = cp_regex_fullmatch(c->regex, mod->path, &c->hit);
    return c->st != CP_OK || c->hit;
}

static cp_status embedding_targeted(const cp_model *m, const cp_peft_config *base, int *targeted) {
    const cp_lora_config *cfg = CLORA(base);
    *targeted = 0;
    if (cfg->target_kind == CP_TARGETS_LIST)
        for (int i = 0; i < cfg->n_target_modules; i++)
            if (!strcmp(cfg->target_modules[i], "embed_tokens") || !strcmp(cfg->target_modules[i], "lm_head")) *targeted = 1;
    if (cfg->target_kind == CP_TARGETS_REGEX) {
        emb_regex_ctx c = {cfg->target_regex, 0, CP_OK};
        cp_module_visit(m->root, visit_emb_regex, &c);
        if (c.st != CP_OK) return CP_ERR;
        *targeted = c.hit;
    }
    return CP_OK;
}

static cp_peft_bias bias(const cp_peft_config *cfg) {
    switch (CLORA(cfg)->bias) {
    case CP_LORA_BIAS_ALL: return CP_PEFT_BIAS_ALL;
    case CP_LORA_BIAS_LORA_ONLY: return CP_PEFT_BIAS_METHOD_ONLY;
    default: return CP_PEFT_BIAS_NONE;
    }
}

/* ---- adapters on modules ---------------------------------------------------------------------- */

static cp_status attach(cp_module *t, const char *name, cp_peft_config *base, cp_rng *rng) {
    cp_lora_config *cfg = LORA(base);
    cp_target_fan_in_fan_out(t, &cfg->fan_in_fan_out);
    int64_t r;
    double alpha;
    if (cp_lora_config_rank_alpha(cfg, t->path, &r, &alpha) != CP_OK) return CP_ERR;
    return cp_lora_add(t, name, r, alpha, cfg->use_rslora, cfg->lora_dropout, cfg->init_lora_weights, rng, NULL);
}

static void detach(cp_module *mod, const char *name) { cp_lora_remove(mod, name); }

static const char *adapter_at(const cp_module *mod, int i) {
    const cp_lora_layer *layer = cp_lora_layer_of(mod);
    return layer && i >= 0 && i < layer->n ? layer->adapters[i]->name : NULL;
}

static void set_state(cp_module *mod, const char *const *active, int n_active, int disabled) {
    cp_lora_layer *layer = cp_lora_layer_of(mod);
    if (!layer) return;
    layer->disabled = disabled;
    for (int k = 0; k < layer->n; k++) {
        cp_lora_adapter *a = layer->adapters[k];
        a->active = 0;
        for (int i = 0; i < n_active && !a->active; i++) a->active = !strcmp(active[i], a->name);
    }
}

/* A (r, in) and B (out, r); Embedding: A (r, V), B (d, r), saved as ParameterDict entries. */
static const char *key_of(const cp_module *mod, int which) {
    if (mod->kind == CP_MOD_EMBEDDING) return which ? "lora_embedding_B" : "lora_embedding_A";
    return which ? "lora_B.weight" : "lora_A.weight";
}

static int tensors(const cp_module *mod, const char *name, cp_peft_tensor *out) {
    cp_lora_adapter *a = cp_lora_find(mod, name);
    if (!a) return 0;
    for (int which = 0; which < 2; which++)
        out[which] = (cp_peft_tensor){.key = key_of(mod, which), .param = which ? a->B : a->A, .config_dim = -1};
    return 2;
}

static cp_status plan(const cp_module *mod, const cp_peft_config *cfg, cp_peft_tensor *out, int *n) {
    int64_t r;
    double alpha;
    *n = 0;
    if (cp_lora_config_rank_alpha(CLORA(cfg), mod->path, &r, &alpha) != CP_OK) return CP_ERR;
    out[0] = (cp_peft_tensor){.key = key_of(mod, 0), .ndim = 2, .shape = {r, mod->in_features}, .config_dim = 0,
                              .config_field = "r", .config_value = r};
    out[1] = (cp_peft_tensor){.key = key_of(mod, 1), .ndim = 2, .shape = {mod->out_features, r}, .config_dim = 1,
                              .config_field = "r", .config_value = r};
    *n = 2;
    return CP_OK;
}

/* ---- merging, scaling -------------------------------------------------------------------------- */

static int merged(const cp_module *mod, const char *name) {
    const cp_lora_layer *layer = cp_lora_layer_of(mod);
    for (int i = 0; layer && i < layer->n; i++)
        if (layer->adapters[i]->merged && (!name || !strcmp(layer->adapters[i]->name, name))) return 1;
    return 0;
}

static void merge(cp_module *mod, const char *name) {
    cp_lora_adapter *a = cp_lora_find(mod, name);
    if (a) cp_lora_merge(mod, a);
}

static void unmerge(cp_module *mod, const char *name) {
    cp_lora_adapter *a = cp_lora_find(mod, name);
    if (a) cp_lora_unmerge(mod, a);
}

static cp_status scale(cp_module *mod, const char *name, double factor) {
    cp_lora_adapter *a = cp_lora_find(mod, name);
    if (a && a->merged) return cp_error("%s: adapter \"%s\" is merged; unmerge it before scaling it", mod->path, name);
    if (a) a->scaling *= factor;
    return CP_OK;
}

const cp_peft_method cp_lora_method = {
    .peft_type = "LORA",
    .tuner_class = "LoraModel",
    .hook = &cp_lora_hook_ops,
    .config_new = config_new,
    .config_from_json = config_from_json,
    .config_to_json = config_to_json,
    .config_copy = config_copy,
    .config_free = config_free,
    .check = check,
    .targets = targets,
    .resolve = resolve,
    .attach = attach,
    .detach = detach,
    .adapter_at = adapter_at,
    .set_state = set_state,
    .tensors = tensors,
    .plan = plan,
    .bias = bias,
    .embedding_targeted = embedding_targeted,
    .merged = merged,
    .merge = merge,
    .unmerge = unmerge,
    .scale = scale,
    .add_weighted = cp_lora_add_weighted,
};

/* ---- shorthands -------------------------------------------------------------------------------- */

cp_status cp_peft_add_adapter(cp_model *m, const char *name, const cp_lora_config *cfg, cp_rng *rng, int activate,
                              int trainable) {
    cp_lora_config view = *cfg; /* shallow: cp_peft_add copies it; a config built without init gets its method */
    view.method = &cp_lora_method;
    return cp_peft_add(m, name, &view.base, rng, activate, trainable);
}

cp_status cp_adapter_check_header(cp_model *m, const cp_lora_config *cfg, const char *dir) {
    cp_lora_config view = *cfg;
    view.method = &cp_lora_method;
    return cp_adapter_check_config(m, &view.base, dir);
}
