/*
 * ia3_method.c — (IA)³ as a PEFT method (method.h): IA3Model's checks (PEFT's errors where a model type
 * has no default tables), target matching and the config as PEFT stores it after injecting, attaching
 * adapters with their feed-forward flag, the tensor PEFT saves (ia3_l), merging, add_weighted_adapter,
 * and print(model)'s ia3.Linear. The compute is ia3.c's hook, the config file ia3_config.c.
 */
#include "peft/ia3.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"

#include <string.h>

#define IA3(cfg) ((cp_ia3_config *)(cfg))
#define CIA3(cfg) ((const cp_ia3_config *)(cfg))

/* ---- injecting ------------------------------------------------------------------------------------ */

/* IA3Model._prepare_adapter_config: a null target_modules / feedforward_modules needs the model type's
 * default table (targets first, as PEFT checks them). */
static cp_status check(const cp_model *m, const char *name, const cp_peft_config *base) {
    const cp_ia3_config *cfg = CIA3(base);
    if (cp_ia3_config_validate(cfg, name) != CP_OK) return CP_ERR;
    const char *type = m->config.model_type;
    if (cfg->target_kind == CP_TARGETS_DEFAULT && !cp_ia3_default_targets(type))
        return cp_error("adapter \"%s\": Please specify `target_modules` in `peft_config` (PEFT has no default IA3 targets for "
                        "model_type \"%s\")", name, type);
    if (cfg->feedforward_kind == CP_TARGETS_DEFAULT && !cp_ia3_default_feedforward(type))
        return cp_error("adapter \"%s\": Please specify `feedforward_modules` in `peft_config` (PEFT has no default IA3 "
                        "feed-forward modules for model_type \"%s\")", name, type);
    return CP_OK;
}

static cp_status targets(cp_model *m, const cp_peft_config *cfg, cp_module ***out, int *n) {
    cp_target_spec t;
    cp_ia3_target_spec(CIA3(cfg), &t);
    return cp_find_targets(&t, m->root, m->config.model_type, m->lm_head, out, n);
}

/* As PEFT saves the config after injecting: target_modules as matched (the default names for null, the
 * full names for "all-linear", never shortened), feedforward_modules the default names for null. */
static cp_status resolve(cp_model *m, cp_peft_config *base) {
    cp_ia3_config *cfg = IA3(base);
    if (cfg->target_kind != CP_TARGETS_REGEX) {
        cp_target_spec t;
        cp_ia3_target_spec(cfg, &t);
        char **names;
        int n;
        if (cp_target_names(&t, m->root, m->config.model_type, m->lm_head, &names, &n) != CP_OK) return CP_ERR;
        cp_free_names(cfg->target_modules, cfg->n_target_modules);
        cfg->target_modules = names;
        cfg->n_target_modules = n;
        cfg->target_kind = CP_TARGETS_LIST;
    }
    if (cfg->feedforward_kind == CP_TARGETS_DEFAULT) {
        const char *const *def = cp_ia3_default_feedforward(m->config.model_type);
        if (!def) return cp_error("Please specify `feedforward_modules` in `peft_config`");
        int n = 0;
        while (def[n]) n++;
        char **list = cp_peft_copy_list((char *const *)def, n);
        if (!list) return CP_ERR;
        cfg->feedforward_modules = list;
        cfg->n_feedforward_modules = n;
        cfg->feedforward_kind = CP_TARGETS_LIST;
    }
    return CP_OK;
}

/* ---- adapters on modules -------------------------------------------------------------------------- */

static cp_status attach(cp_module *t, const char *name, cp_peft_config *base, cp_rng *rng) {
    cp_ia3_config *cfg = IA3(base);
    cp_target_fan_in_fan_out(t, &cfg->fan_in_fan_out);
    int ff;
    if (cp_ia3_is_feedforward(cfg, t->path, &ff) != CP_OK) return CP_ERR;
    return cp_ia3_add(t, name, ff, cfg->fan_in_fan_out, cfg->init_ia3_weights, rng);
}

static void detach(cp_module *mod, const char *name) { cp_ia3_remove(mod, name); }

static const char *adapter_at(const cp_module *mod, int i) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(mod);
    return layer && i >= 0 && i < layer->n ? layer->adapters[i]->name : NULL;
}

static void set_state(cp_module *mod, const char *const *active, int n_active, int disabled) {
    cp_ia3_layer *layer = cp_ia3_layer_of(mod);
    if (!layer) return;
    layer->disabled = disabled;
    for (int k = 0; k < layer->n; k++) {
        cp_ia3_adapter *a = layer->adapters[k];
        a->active = 0;
        for (int i = 0; i < n_active && !a->active; i++)
            if (!strcmp(active[i], a->name)) a->active = i + 1;
    }
}

static int tensors(const cp_module *mod, const char *name, cp_peft_tensor *out) {
    cp_ia3_adapter *a = cp_ia3_find(mod, name);
    if (!a) return 0;
    out[0] = (cp_peft_tensor){.key = "ia3_l", .param = a->l, .config_dim = -1}; /* a ParameterDict entry: no ".weight" */
    return 1;
}

/* ia3_l's shape for `mod` under a resolved config: (1, in) on a feed-forward module, else (out, 1); a
 * module that already carries IA3 keeps its layer's kind. */
static cp_status plan(const cp_module *mod, const cp_peft_config *base, cp_peft_tensor *out, int *n) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(mod);
    int ff = 0;
    *n = 0;
    if (layer) ff = layer->is_feedforward;
    else if (cp_ia3_is_feedforward(CIA3(base), mod->path, &ff) != CP_OK) return CP_ERR;
    out[0] = (cp_peft_tensor){.key = "ia3_l", .ndim = 2, .shape = {ff ? 1 : mod->out_features, ff ? mod->in_features : 1},
                              .config_dim = -1};
    *n = 1;
    return CP_OK;
}

/* ---- merging ------------------------------------------------------------------------------------- */

static int merged(const cp_module *mod, const char *name) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(mod);
    for (int i = 0; layer && i < layer->n; i++)
        if (layer->adapters[i]->merged && (!name || !strcmp(layer->adapters[i]->name, name))) return 1;
    return 0;
}

static void merge(cp_module *mod, const char *name) {
    cp_ia3_adapter *a = cp_ia3_find(mod, name);
    if (a) cp_ia3_merge(mod, a);
}

static void unmerge(cp_module *mod, const char *name) {
    cp_ia3_adapter *a = cp_ia3_find(mod, name);
    if (a) cp_ia3_unmerge(mod, a);
}

/* ---- add_weighted_adapter -------------------------------------------------------------------------- */

/* The union of two name lists (each name once), or "(a)|(b)" of two regexes. */
static cp_status merge_names(cp_targets_kind kind, char ***list, int *n, char **regex, const char *const *more, int n_more,
                             const char *more_regex) {
    if (kind == CP_TARGETS_REGEX) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_sb_printf(&sb, "%s|(%s)", *regex, more_regex);
        char *joined = cp_sb_finish(&sb);
        if (!joined) return CP_ERR;
        cp_free(*regex);
        *regex = joined;
        return CP_OK;
    }
    for (int i = 0; i < n_more; i++) {
        int seen = 0;
        for (int k = 0; k < *n && !seen; k++) seen = !strcmp((*list)[k], more[i]);
        if (seen) continue;
        char **grown = cp_realloc(*list, (size_t)(*n + 1) * sizeof *grown, "a name list");
        if (!grown) return CP_ERR;
        *list = grown;
        if (!(grown[(*n)++] = cp_strdup(more[i]))) return CP_ERR;
    }
    return CP_OK;
}

/* "(a)" — the first regex of PEFT's "|".join(f"({r})" for r in ...). */
static cp_status group_regex(char **regex) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, "(%s)", *regex);
    char *g = cp_sb_finish(&sb);
    if (!g) return CP_ERR;
    cp_free(*regex);
    *regex = g;
    return CP_OK;
}

/* IA3Model.add_weighted_adapter: a new adapter on the union of the adapters' targets and feed-forward
 * modules (a config like the first one's otherwise), frozen, whose vector on each module is Σ w_i l_i
 * over the adapters that module carries. PEFT has no combination types for IA3: only a plain sum. */
static cp_status add_weighted(cp_model *m, const char *const *names, const double *weights, int n, const char *new_name,
                              cp_combination combination) {
    if (combination != CP_COMBINE_LINEAR)
        return cp_error("add_weighted_adapter: IA3 adapters are combined as Σ weight·ia3_l (PEFT's IA3 has no combination_type)");
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *sm = m->peft->saved[w];
        int count = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < sm->n_adapters; k++) count += !strcmp(sm->adapters[k], names[i]);
        if (count > 1) return cp_error("Cannot add weighted adapters targeting the same module with modules_to_save.");
    }
    const cp_ia3_config *first = CIA3(cp_peft_find_adapter(m, names[0])->config);
    for (int i = 1; i < n; i++) {
        const cp_ia3_config *c = CIA3(cp_peft_find_adapter(m, names[i])->config);
        if ((c->target_kind == CP_TARGETS_REGEX) != (first->target_kind == CP_TARGETS_REGEX) ||
            (c->feedforward_kind == CP_TARGETS_REGEX) != (first->feedforward_kind == CP_TARGETS_REGEX))
            return cp_error("All adapter configs should have the same type for target and feedforward modules.");
    }
    cp_ia3_config *cfg = IA3(cp_ia3_config_copy(&first->base));
    if (!cfg) return CP_ERR;
    cp_status st = CP_OK;
    if (cfg->target_kind == CP_TARGETS_REGEX) st = group_regex(&cfg->target_regex);
    if (st == CP_OK && cfg->feedforward_kind == CP_TARGETS_REGEX) st = group_regex(&cfg->feedforward_regex);
    for (int i = 1; i < n && st == CP_OK; i++) {
        const cp_ia3_config *c = CIA3(cp_peft_find_adapter(m, names[i])->config);
        st = merge_names(cfg->target_kind, &cfg->target_modules, &cfg->n_target_modules, &cfg->target_regex,
                         (const char *const *)c->target_modules, c->n_target_modules, c->target_regex);
        if (st == CP_OK)
            st = merge_names(cfg->feedforward_kind, &cfg->feedforward_modules, &cfg->n_feedforward_modules,
                             &cfg->feedforward_regex, (const char *const *)c->feedforward_modules, c->n_feedforward_modules,
                             c->feedforward_regex);
    }
    cp_rng rng;
    cp_rng_seed(&rng, 0); /* the vectors are overwritten below */
    if (st == CP_OK) st = cp_peft_add(m, new_name, &cfg->base, &rng, 0, 0);
    cp_ia3_config_free(&cfg->base);
    if (st != CP_OK) return CP_ERR;
    cp_module **mods;
    int n_mods;
    if (cp_peft_adapter_modules(m, new_name, &mods, &n_mods) != CP_OK) return CP_ERR;
    for (int k = 0; k < n_mods; k++) {
        cp_ia3_adapter *dst = cp_ia3_find(mods[k], new_name);
        float *l = dst->l->data;
        const int64_t K = dst->l->numel;
        memset(l, 0, (size_t)K * sizeof *l);
        for (int i = 0; i < n; i++) {
            const cp_ia3_adapter *src = cp_ia3_find(mods[k], names[i]);
            const float w = (float)weights[i];
            for (int64_t j = 0; src && j < K; j++) l[j] += src->l->data[j] * w; /* target.data += ia3_l.data * weight */
        }
    }
    cp_free(mods);
    return CP_OK;
}

/* ---- print(model) ---------------------------------------------------------------------------------- */

/* ia3.Linear has no __repr__ of its own: nn.Module's, with base_layer and the ia3_l ParameterDict. */
char *cp_ia3_repr(const cp_hook *h, const cp_module *m) {
    const cp_ia3_layer *layer = (const cp_ia3_layer *)h;
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "Linear(\n  (base_layer): ");
    char *inner = cp_hook_repr_inner(m, h);
    if (inner) cp_sb_append_indented(&sb, inner, 2);
    cp_free(inner);
    cp_sb_append(&sb, "\n  (ia3_l): ParameterDict(");
    for (int i = 0; i < layer->n; i++) {
        const cp_param *p = layer->adapters[i]->l;
        cp_sb_printf(&sb, "%s(%s): Parameter containing: [torch.FloatTensor of size %lldx%lld]", layer->n == 1 ? "  " : "\n      ",
                     layer->adapters[i]->name, (long long)p->shape[0], (long long)p->shape[1]);
    }
    cp_sb_append(&sb, layer->n > 1 ? "\n  )\n)" : ")\n)");
    return cp_sb_finish(&sb);
}

const cp_peft_method cp_ia3_method = {
    .peft_type = "IA3",
    .tuner_class = "IA3Model",
    .hook = &cp_ia3_hook_ops,
    .config_new = cp_ia3_config_new,
    .config_from_json = cp_ia3_config_from_json,
    .config_to_json = cp_ia3_config_to_json,
    .config_copy = cp_ia3_config_copy,
    .config_free = cp_ia3_config_free,
    .check = check,
    .targets = targets,
    .resolve = resolve,
    .attach = attach,
    .detach = detach,
    .adapter_at = adapter_at,
    .set_state = set_state,
    .tensors = tensors,
    .plan = plan,
    .merged = merged,
    .merge = merge,
    .unmerge = unmerge,
    .add_weighted = add_weighted,
};
