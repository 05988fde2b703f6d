/*
 * peft_model.c — PEFT's model-level behaviour on a cp_model: adding adapters by name (target
 * matching, per-module rank/alpha, fan_in_fan_out forced for Conv1D with PEFT's warning,
 * modules_to_save copies, bias modes), the active set, disabling, deleting, merging, and counting
 * as PEFT counts (the repr is in peft_repr.c). See reference/peft.md §3, §6.
 */
#include "peft/peft_model.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cp_peft_state *state(cp_model *m) {
    if (!m->peft) {
        m->peft = cp_calloc(1, sizeof *m->peft, "the PEFT state");
        m->peft_free = cp_peft_free;
    }
    return m->peft;
}

cp_peft_adapter *cp_peft_find_adapter(const cp_model *m, const char *name) {
    if (!m->peft) return NULL;
    for (int i = 0; i < m->peft->n; i++)
        if (!strcmp(m->peft->adapters[i].name, name)) return &m->peft->adapters[i];
    return NULL;
}

/* ---- tree walks ------------------------------------------------------------------------------ */

typedef struct { cp_module **list; int n, cap; int failed; } module_list;

static int collect_lora(cp_module *mod, void *ctx) {
    module_list *l = ctx;
    if (!cp_lora_layer_of(mod)) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        cp_module **p = cp_realloc(l->list, (size_t)cap * sizeof *p, "the LoRA module list");
        if (!p) { l->failed = 1; return 1; }
        l->list = p;
        l->cap = cap;
    }
    l->list[l->n++] = mod;
    return 0;
}

/* Every module carrying LoRA adapters, in tree order. */
static cp_status lora_modules(const cp_model *m, module_list *l) {
    memset(l, 0, sizeof *l);
    cp_module_visit(m->root, collect_lora, l);
    if (l->failed) { cp_free(l->list); return CP_ERR; }
    return CP_OK;
}

cp_status cp_peft_adapter_modules(const cp_model *m, const char *name, cp_module ***out, int *n) {
    module_list l;
    if (lora_modules(m, &l) != CP_OK) return CP_ERR;
    int k = 0;
    for (int i = 0; i < l.n; i++)
        if (cp_lora_find(l.list[i], name)) l.list[k++] = l.list[i];
    *out = l.list;
    *n = k;
    return CP_OK;
}

/* ---- writable weights ------------------------------------------------------------------------ */

typedef struct { cp_param *target; float *old, *fresh; } retie_ctx;

static int retie(cp_module *mod, void *vctx) {
    retie_ctx *c = vctx;
    cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++)
        if (ps[i] && ps[i] != c->target && ps[i]->tied_to == c->target) ps[i]->data = c->fresh;
    return 0;
}

cp_status cp_param_make_writable(cp_model *m, cp_param *p) {
    if (p->tied_to) p = p->tied_to;
    if (p->owns_data) return CP_OK;
    float *fresh = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name);
    if (!fresh) return CP_ERR;
    if (p->data) memcpy(fresh, p->data, (size_t)p->numel * sizeof(float));
    retie_ctx c = {p, p->data, fresh};
    p->data = fresh;
    p->owns_data = 1;
    cp_module_visit(m->root, retie, &c);
    /* parameters a modules_to_save copy has displaced from their slot (a wrapped tied lm_head) */
    for (int w = 0; m->peft && w < m->peft->n_saved; w++)
        for (int i = 0; i < m->peft->saved[w]->n_params; i++) {
            cp_param *o = m->peft->saved[w]->params[i].original;
            if (o != p && o->tied_to == p) o->data = fresh;
        }
    return CP_OK;
}

/* ---- modules_to_save ------------------------------------------------------------------------- */

typedef struct { cp_saved_module *s; const char *prefix; int failed; } saved_collect;

static int collect_saved_params(cp_module *mod, void *vctx) {
    saved_collect *c = vctx;
    cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++) {
        if (!ps[i]) continue;
        cp_saved_param *arr = cp_realloc(c->s->params, (size_t)(c->s->n_params + 1) * sizeof *arr, "saved parameters");
        if (!arr) { c->failed = 1; return 1; }
        c->s->params = arr;
        cp_saved_param *sp = &arr[c->s->n_params++];
        memset(sp, 0, sizeof *sp);
        sp->module = mod;
        sp->is_bias = i == 1;
        sp->original = ps[i];
        size_t plen = strlen(c->prefix);
        const char *local = ps[i]->name + (plen ? plen + 1 : 0);
        sp->local_name = cp_strdup(local);
    }
    return 0;
}

/* modules_to_save swaps the wrapped leaves' parameters (the slot holds the active copy), so the
 * base forward and backward already compute with it: the hook only prints the wrapper. Its memory
 * belongs to the PEFT state (saved_free). */
const cp_hook_ops cp_saved_hook_ops = {.kind = "modules_to_save", .repr = cp_saved_repr, .outermost = 1};

cp_saved_module *cp_saved_of(const cp_module *m) { return (cp_saved_module *)cp_hook_find(m, &cp_saved_hook_ops); }

static void point_saved(cp_saved_module *s, int index) {
    for (int i = 0; i < s->n_params; i++) {
        cp_saved_param *sp = &s->params[i];
        cp_param *p = index < 0 ? sp->original : sp->copies[index];
        if (sp->is_bias) sp->module->bias = p;
        else sp->module->weight = p;
    }
    s->active = index;
}

static cp_status wrap_saved(cp_model *m, cp_module *mod, const char *adapter) {
    cp_peft_state *st = state(m);
    cp_saved_module *s = cp_saved_of(mod);
    if (!s) {
        s = cp_calloc(1, sizeof *s, "a modules_to_save wrapper");
        if (!s) return CP_ERR;
        s->hook.ops = &cp_saved_hook_ops;
        s->wrapper = mod;
        s->active = -1;
        saved_collect c = {s, mod->path, 0};
        cp_module_visit(mod, collect_saved_params, &c);
        cp_saved_module **list = cp_realloc(st->saved, (size_t)(st->n_saved + 1) * sizeof *list, "wrappers");
        if (c.failed || !list) { cp_free(s->params); cp_free(s); return CP_ERR; }
        st->saved = list;
        st->saved[st->n_saved++] = s;
        cp_hook_attach(mod, &s->hook);
    }
    char **names = cp_realloc(s->adapters, (size_t)(s->n_adapters + 1) * sizeof *names, "wrapper adapters");
    if (!names) return CP_ERR;
    s->adapters = names;
    s->adapters[s->n_adapters] = cp_strdup(adapter);
    for (int i = 0; i < s->n_params; i++) {
        cp_saved_param *sp = &s->params[i];
        cp_param **copies = cp_realloc(sp->copies, (size_t)(s->n_adapters + 1) * sizeof *copies, "copies");
        if (!copies) return CP_ERR;
        sp->copies = copies;
        char name[1024];
        snprintf(name, sizeof name, "%s.modules_to_save.%s.%s", mod->path, adapter, sp->local_name);
        cp_param *o = sp->original;
        cp_param *c = cp_param_new(name, o->ndim, o->shape[0], o->shape[1]);
        if (!c) return CP_ERR;
        memcpy(c->data, o->data ? o->data : c->data, o->data ? (size_t)o->numel * sizeof(float) : 0);
        c->source_dtype = o->source_dtype;
        sp->copies[s->n_adapters] = c;
    }
    s->n_adapters++;
    return CP_OK;
}

typedef struct { cp_model *m; const cp_lora_config *cfg; const char *adapter; cp_status status; int wrapped; } mts_ctx;

static int visit_mts(cp_module *mod, void *vctx) {
    mts_ctx *c = vctx;
    if (!mod->path[0] || !cp_modules_to_save_matches(c->cfg, mod->path)) return 0;
    c->status = wrap_saved(c->m, mod, c->adapter);
    c->wrapped++;
    return c->status != CP_OK;
}

static void saved_free(cp_saved_module *s) {
    point_saved(s, -1);
    for (int i = 0; i < s->n_params; i++) {
        for (int a = 0; a < s->n_adapters; a++) cp_param_free(s->params[i].copies[a]);
        cp_free(s->params[i].copies);
        cp_free(s->params[i].local_name);
    }
    for (int a = 0; a < s->n_adapters; a++) cp_free(s->adapters[a]);
    cp_free(s->adapters);
    cp_free(s->params);
    cp_hook_detach(s->wrapper, &s->hook);
    cp_free(s);
}

/* ---- adding adapters ------------------------------------------------------------------------- */

static void drop_adapter_layers(cp_model *m, const char *name) {
    module_list l;
    if (lora_modules(m, &l) != CP_OK) return;
    for (int i = 0; i < l.n; i++) cp_lora_remove(l.list[i], name);
    cp_free(l.list);
}

static void refresh_active(cp_model *m);

/* ---- what the saved config says it targets ------------------------------------------------------ */

/* PEFT saves target_modules as it matched them (cp_lora_target_names): the default names for None,
 * the full names for "all-linear", and a list of 20 or more names shortened to minimal suffixes. */
static cp_status resolve_targets(cp_model *m, cp_lora_config *cfg) {
    if (cfg->target_kind == CP_TARGETS_REGEX) return CP_OK;
    char **names;
    int n;
    if (cp_lora_target_names(cfg, m->root, m->config.model_type, m->lm_head, &names, &n) != CP_OK) return CP_ERR;
    cp_lora_free_names(cfg->target_modules, cfg->n_target_modules);
    cfg->target_modules = names;
    cfg->n_target_modules = n;
    cfg->target_kind = CP_TARGETS_LIST;
    return CP_OK;
}

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

cp_status cp_peft_add_adapter(cp_model *m, const char *name, const cp_lora_config *cfg_in, cp_rng *rng, int activate,
                              int trainable) {
    cp_peft_state *st = state(m);
    if (!st) return CP_ERR;
    if (cp_peft_find_adapter(m, name)) return cp_error("adapter \"%s\" already exists", name);
    if (cp_lora_config_validate(cfg_in, name) != CP_OK || check_weight_tying(m, cfg_in, name) != CP_OK) return CP_ERR;
    if (cfg_in->bias != CP_LORA_BIAS_NONE)
        for (int i = 0; i < st->n; i++)
            if (st->adapters[i].config.bias != CP_LORA_BIAS_NONE)
                return cp_error("LoraModel supports only 1 adapter with bias. When using multiple adapters, set bias to "
                                "'none' for all adapters.");
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 4;
        cp_peft_adapter *a = cp_realloc(st->adapters, (size_t)cap * sizeof *a, "the adapter list");
        if (!a) return CP_ERR;
        st->adapters = a;
        st->cap = cap;
    }
    cp_peft_adapter *entry = &st->adapters[st->n];
    memset(entry, 0, sizeof *entry);
    if (cp_lora_config_copy(&entry->config, cfg_in) != CP_OK) return CP_ERR;
    cp_lora_config *cfg = &entry->config;
    entry->name = cp_strdup(name);
    entry->trainable = trainable;

    cp_module **targets = NULL;
    int n_targets = 0;
    cp_status status = cp_lora_find_targets(cfg, m->root, m->config.model_type, m->lm_head, &targets, &n_targets);
    if (status == CP_OK) status = resolve_targets(m, cfg);
    for (int i = 0; status == CP_OK && i < n_targets; i++) {
        cp_module *t = targets[i];
        if (t->kind == CP_MOD_CONV1D && !cfg->fan_in_fan_out) {
            cp_warn("fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.");
            cfg->fan_in_fan_out = 1;
        } else if (t->kind == CP_MOD_LINEAR && cfg->fan_in_fan_out) {
            cp_warn("fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.");
            cfg->fan_in_fan_out = 0;
        }
        int64_t r;
        double alpha;
        if ((status = cp_lora_config_rank_alpha(cfg, t->path, &r, &alpha)) != CP_OK) break;
        cp_lora_adapter *a;
        status = cp_lora_add(t, name, r, alpha, cfg->use_rslora, cfg->lora_dropout, cfg->init_lora_weights, rng, &a);
        if (status == CP_OK) cp_lora_layer_of(t)->disabled = st->disabled;
    }
    cp_free(targets);
    if (status == CP_OK && cfg->modules_to_save) {
        mts_ctx c = {m, cfg, name, CP_OK, 0};
        cp_module_visit(m->root, visit_mts, &c);
        status = c.status;
    }
    if (status != CP_OK) {
        drop_adapter_layers(m, name);
        for (int i = 0; i < st->n_saved; i++) {
            cp_saved_module *s = st->saved[i];
            if (s->n_adapters && !strcmp(s->adapters[s->n_adapters - 1], name)) {
                for (int k = 0; k < s->n_params; k++) cp_param_free(s->params[k].copies[s->n_adapters - 1]);
                cp_free(s->adapters[--s->n_adapters]);
            }
        }
        cp_lora_config_free(cfg);
        cp_free(entry->name);
        return CP_ERR;
    }
    st->n++;
    if (cfg->bias != CP_LORA_BIAS_NONE) st->bias_mode = cfg->bias;
    if (activate || st->n == 1) {
        const char *names[1] = {name};
        return cp_peft_set_active(m, names, 1);
    }
    refresh_active(m);
    return CP_OK;
}

/* ---- active set, disabling, deleting --------------------------------------------------------- */

static int is_active(const cp_peft_state *st, const char *name) {
    for (int i = 0; i < st->n_active; i++)
        if (!strcmp(st->active[i], name)) return 1;
    return 0;
}

static void refresh_active(cp_model *m) {
    cp_peft_state *st = m->peft;
    module_list l;
    if (lora_modules(m, &l) == CP_OK) {
        for (int i = 0; i < l.n; i++) {
            cp_lora_layer *layer = cp_lora_layer_of(l.list[i]);
            layer->disabled = st->disabled;
            for (int k = 0; k < layer->n; k++) layer->adapters[k]->active = is_active(st, layer->adapters[k]->name);
        }
        cp_free(l.list);
    }
    for (int i = 0; i < st->n_saved; i++) {
        cp_saved_module *s = st->saved[i];
        int index = -1;
        for (int a = 0; !st->disabled && a < st->n_active && index < 0; a++)
            for (int k = 0; k < s->n_adapters; k++)
                if (!strcmp(s->adapters[k], st->active[a])) { index = k; break; }
        point_saved(s, index);
    }
}

cp_status cp_peft_set_active(cp_model *m, const char *const *names, int n) {
    cp_peft_state *st = state(m);
    for (int i = 0; i < n; i++)
        if (!cp_peft_find_adapter(m, names[i])) {
            cp_strbuf sb;
            cp_sb_init(&sb);
            for (int k = 0; k < st->n; k++) cp_sb_printf(&sb, "%s%s", k ? ", " : "", st->adapters[k].name);
            char *have = cp_sb_finish(&sb);
            cp_status s = cp_error("Adapter %s not found (adapters: %s)", names[i], have ? have : "");
            cp_free(have);
            return s;
        }
    char **active = cp_calloc((size_t)(n ? n : 1), sizeof *active, "the active adapters");
    if (!active) return CP_ERR;
    for (int i = 0; i < n; i++) active[i] = cp_strdup(names[i]);
    for (int i = 0; i < st->n_active; i++) cp_free(st->active[i]);
    cp_free(st->active);
    st->active = active;
    st->n_active = n;
    /* PEFT unmerges merged layers before switching adapters */
    module_list l;
    if (lora_modules(m, &l) == CP_OK) {
        for (int i = 0; i < l.n; i++)
            for (int k = 0; k < cp_lora_layer_of(l.list[i])->n; k++)
                if (cp_lora_layer_of(l.list[i])->adapters[k]->merged)
                    cp_lora_unmerge(l.list[i], cp_lora_layer_of(l.list[i])->adapters[k]);
        cp_free(l.list);
    }
    refresh_active(m);
    return CP_OK;
}

void cp_peft_set_disabled(cp_model *m, int disabled) {
    if (!m->peft) return;
    if (disabled) cp_peft_unmerge(m);
    m->peft->disabled = disabled;
    refresh_active(m);
}

cp_status cp_peft_delete_adapter(cp_model *m, const char *name) {
    cp_peft_state *st = m->peft;
    cp_peft_adapter *a = cp_peft_find_adapter(m, name);
    if (!a) return cp_error("Adapter %s does not exist", name);
    module_list l;
    if (lora_modules(m, &l) != CP_OK) return CP_ERR;
    for (int i = 0; i < l.n; i++) {
        cp_lora_adapter *la = cp_lora_find(l.list[i], name);
        if (la && la->merged) { cp_free(l.list); return cp_error("adapter \"%s\" is merged; unmerge it before deleting it", name); }
    }
    for (int i = 0; i < l.n; i++) cp_lora_remove(l.list[i], name);
    cp_free(l.list);
    for (int i = 0; i < st->n_saved; i++) {
        cp_saved_module *s = st->saved[i];
        for (int k = 0; k < s->n_adapters; k++) {
            if (strcmp(s->adapters[k], name)) continue;
            point_saved(s, -1);
            for (int p = 0; p < s->n_params; p++) {
                cp_param_free(s->params[p].copies[k]);
                memmove(s->params[p].copies + k, s->params[p].copies + k + 1, (size_t)(s->n_adapters - k - 1) * sizeof(cp_param *));
            }
            cp_free(s->adapters[k]);
            memmove(s->adapters + k, s->adapters + k + 1, (size_t)(s->n_adapters - k - 1) * sizeof(char *));
            s->n_adapters--;
            break;
        }
    }
    int idx = (int)(a - st->adapters);
    if (st->adapters[idx].config.bias != CP_LORA_BIAS_NONE) st->bias_mode = CP_LORA_BIAS_NONE;
    cp_lora_config_free(&st->adapters[idx].config);
    cp_free(st->adapters[idx].name);
    memmove(st->adapters + idx, st->adapters + idx + 1, (size_t)(st->n - idx - 1) * sizeof *st->adapters);
    st->n--;
    /* remaining active adapters stay; if none is left, PEFT activates the first remaining name */
    int k = 0;
    for (int i = 0; i < st->n_active; i++) {
        if (!strcmp(st->active[i], name)) { cp_free(st->active[i]); continue; }
        st->active[k++] = st->active[i];
    }
    st->n_active = k;
    if (st->n_active == 0 && st->n > 0) {
        const char *first = st->adapters[0].name;
        for (int i = 1; i < st->n; i++)
            if (strcmp(st->adapters[i].name, first) < 0) first = st->adapters[i].name;
        cp_warn("Adapter %s was active which is now deleted. Setting active adapter to %s.", name, first);
        st->active[0] = cp_strdup(first);
        st->n_active = 1;
    }
    refresh_active(m);
    return CP_OK;
}

/* ---- merging --------------------------------------------------------------------------------- */

cp_status cp_peft_merge(cp_model *m) {
    if (!m->peft) return CP_OK;
    module_list l;
    if (lora_modules(m, &l) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    for (int i = 0; i < l.n && st == CP_OK; i++) {
        cp_module *mod = l.list[i];
        for (int k = 0; k < cp_lora_layer_of(mod)->n; k++) {
            cp_lora_adapter *a = cp_lora_layer_of(mod)->adapters[k];
            if (!a->active || a->merged) continue;
            if ((st = cp_param_make_writable(m, mod->weight)) != CP_OK) break;
            cp_lora_merge(mod, a);
        }
    }
    cp_free(l.list);
    return st;
}

cp_status cp_peft_unmerge(cp_model *m) {
    if (!m->peft) return CP_OK;
    module_list l;
    if (lora_modules(m, &l) != CP_OK) return CP_ERR;
    for (int i = 0; i < l.n; i++)
        for (int k = cp_lora_layer_of(l.list[i])->n - 1; k >= 0; k--)
            cp_lora_unmerge(l.list[i], cp_lora_layer_of(l.list[i])->adapters[k]);
    cp_free(l.list);
    return CP_OK;
}

/* ---- counting -------------------------------------------------------------------------------- */

typedef struct { const cp_model *m; int64_t trainable, all; } count_ctx;

/* Whether a modules_to_save wrapper holds this slot of the leaf (its original and copies). */
static int wrapped_slot(const cp_model *m, const cp_module *mod, int is_bias) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *s = m->peft->saved[w];
        for (int i = 0; i < s->n_params; i++)
            if (s->params[i].module == mod && s->params[i].is_bias == is_bias) return 1;
    }
    return 0;
}

/* The bias mode's biases: a bias under a modules_to_save wrapper is not one of them (PEFT freezes
 * the wrapper's original_module; its copy counts and trains with the adapter's copies). */
static int bias_trainable(const cp_model *m, const cp_module *mod) {
    if (!m->peft || wrapped_slot(m, mod, 1)) return 0;
    if (m->peft->bias_mode == CP_LORA_BIAS_ALL) return 1;
    if (m->peft->bias_mode == CP_LORA_BIAS_LORA_ONLY) return cp_lora_layer_of(mod) != NULL;
    return 0;
}

static int adapter_trainable(const cp_model *m, const char *name) {
    const cp_peft_adapter *a = cp_peft_find_adapter(m, name);
    return a && a->trainable && is_active(m->peft, name);
}

cp_param *cp_peft_original_param(const cp_model *m, const cp_module *mod, int is_bias) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *s = m->peft->saved[w];
        for (int i = 0; i < s->n_params; i++)
            if (s->params[i].module == mod && s->params[i].is_bias == is_bias) return s->params[i].original;
    }
    return is_bias ? mod->bias : mod->weight;
}

/* Counts the original parameters (a modules_to_save copy in a leaf's slot is counted with the
 * wrapper's copies, so a copy of a tied lm_head is not counted twice and the tied original once,
 * as PyTorch de-duplicates it), then the LoRA tensors and the copies. */
static int count_visit(cp_module *mod, void *vctx) {
    count_ctx *c = vctx;
    const cp_param *w = mod->weight ? cp_peft_original_param(c->m, mod, 0) : NULL;
    const cp_param *b = mod->bias ? cp_peft_original_param(c->m, mod, 1) : NULL;
    if (w && !w->tied_to) c->all += w->numel;
    if (b && !b->tied_to) {
        c->all += b->numel;
        if (bias_trainable(c->m, mod)) c->trainable += b->numel;
    }
    const cp_lora_layer *layer = cp_lora_layer_of(mod);
    const cp_saved_module *saved = cp_saved_of(mod);
    if (layer)
        for (int k = 0; k < layer->n; k++) {
            const cp_lora_adapter *a = layer->adapters[k];
            int64_t n = a->A->numel + a->B->numel;
            c->all += n;
            if (adapter_trainable(c->m, a->name)) c->trainable += n;
        }
    if (saved)
        for (int k = 0; k < saved->n_adapters; k++) {
            int64_t n = 0;
            for (int p = 0; p < saved->n_params; p++) n += saved->params[p].copies[k]->numel;
            c->all += n;
            if (adapter_trainable(c->m, saved->adapters[k]) && k == saved->active) c->trainable += n;
        }
    return 0;
}

void cp_peft_count(const cp_model *m, int64_t *trainable, int64_t *all) {
    count_ctx c = {m, 0, 0};
    cp_module_visit(m->root, count_visit, &c);
    *trainable = c.trainable;
    *all = c.all;
}

typedef struct { const cp_model *m; const char *name; cp_lora_bias bias; int64_t n; } own_ctx;

static int own_visit(cp_module *mod, void *vctx) {
    own_ctx *c = vctx;
    const cp_param *b = mod->bias ? cp_peft_original_param(c->m, mod, 1) : NULL;
    if (b && !b->tied_to && !wrapped_slot(c->m, mod, 1) &&
        (c->bias == CP_LORA_BIAS_ALL || (c->bias == CP_LORA_BIAS_LORA_ONLY && cp_lora_layer_of(mod))))
        c->n += b->numel;
    const cp_lora_adapter *a = cp_lora_find(mod, c->name);
    if (a) c->n += a->A->numel + a->B->numel;
    const cp_saved_module *saved = cp_saved_of(mod);
    for (int k = 0; saved && k < saved->n_adapters; k++)
        if (!strcmp(saved->adapters[k], c->name))
            for (int p = 0; p < saved->n_params; p++) c->n += saved->params[p].copies[k]->numel;
    return 0;
}

int64_t cp_peft_adapter_num_params(const cp_model *m, const char *name) {
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return 0;
    own_ctx c = {m, name, ad->config.bias, 0};
    cp_module_visit(m->root, own_visit, &c);
    return c.n;
}

/* ---- training ------------------------------------------------------------------------------------ */

typedef struct { cp_model *m; cp_param **list; int n, cap; cp_status status; } trainable_ctx;

static void add_trainable(trainable_ctx *c, cp_param *p) {
    if (c->status != CP_OK) return;
    if (!p->grad) {
        p->grad = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name);
        if (!p->grad) { c->status = CP_ERR; return; }
    }
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        cp_param **l = cp_realloc(c->list, (size_t)cap * sizeof *l, "the trainable parameters");
        if (!l) { c->status = CP_ERR; return; }
        c->list = l;
        c->cap = cap;
    }
    c->list[c->n++] = p;
}

static int visit_trainable(cp_module *mod, void *vctx) {
    trainable_ctx *c = vctx;
    if (mod->bias && !mod->bias->tied_to && bias_trainable(c->m, mod)) {
        if ((c->status = cp_param_make_writable(c->m, mod->bias)) != CP_OK) return 1;
        add_trainable(c, mod->bias);
    }
    cp_lora_layer *layer = cp_lora_layer_of(mod);
    cp_saved_module *saved = cp_saved_of(mod);
    if (layer)
        for (int k = 0; k < layer->n; k++) {
            cp_lora_adapter *a = layer->adapters[k];
            if (!adapter_trainable(c->m, a->name)) continue;
            add_trainable(c, a->A);
            add_trainable(c, a->B);
        }
    if (saved && saved->active >= 0 && adapter_trainable(c->m, saved->adapters[saved->active]))
        for (int p = 0; p < saved->n_params; p++) add_trainable(c, saved->params[p].copies[saved->active]);
    return c->status != CP_OK;
}

cp_status cp_peft_trainable_params(cp_model *m, cp_param ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!m->peft || m->peft->n == 0) return cp_error("nothing to train: the model has no adapter");
    trainable_ctx c = {m, NULL, 0, 0, CP_OK};
    cp_module_visit(m->root, visit_trainable, &c);
    if (c.status != CP_OK) { cp_free(c.list); return CP_ERR; }
    if (c.n == 0) { cp_free(c.list); return cp_error("nothing to train: no active adapter is trainable"); }
    *out = c.list;
    *n = c.n;
    return CP_OK;
}

void cp_peft_set_training(cp_model *m, int training) { m->training = training; }

void cp_peft_seed_dropout(cp_model *m, uint64_t seed) { m->dropout_seed = seed; }

void cp_peft_free(cp_model *m) {
    cp_peft_state *st = m->peft;
    if (!st) return;
    for (int i = 0; i < st->n_saved; i++) saved_free(st->saved[i]);
    cp_free(st->saved);
    cp_hook_free_all(m->root);
    for (int i = 0; i < st->n; i++) { cp_lora_config_free(&st->adapters[i].config); cp_free(st->adapters[i].name); }
    cp_free(st->adapters);
    for (int i = 0; i < st->n_active; i++) cp_free(st->active[i]);
    cp_free(st->active);
    cp_free(st);
    m->peft = NULL;
}
