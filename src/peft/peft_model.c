/*
 * peft_model.c — PEFT's model-level behaviour on a cp_model, for every method: adding adapters by
 * name (the method's targets, attach and resolve; modules_to_save copies; one bias mode), the
 * active set, disabling, deleting and merging (counting and the trainable list: peft_count.c; the
 * repr: peft_repr.c). Nothing here names a method: each adapter's config says which, and the
 * method's table (method.h) does the rest. See reference/peft.md §3, §6.
 */
#include "peft/peft_model.h"
#include "models/quantize.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_config.h"

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

/* ---- the methods' layers on the tree ---------------------------------------------------------- */

/* The method whose hook h is, among the methods of the model's adapters (NULL: none, e.g. a
 * modules_to_save wrapper). */
static const cp_peft_method *method_of(const cp_model *m, const cp_hook *h) {
    for (int i = 0; m->peft && i < m->peft->n; i++)
        if (m->peft->adapters[i].config->method->hook == h->ops) return m->peft->adapters[i].config->method;
    return NULL;
}

int cp_peft_each_layer(const cp_model *m, cp_module *mod, cp_peft_layer_fn fn, void *ctx) {
    for (cp_hook *h = mod->hooks; h; h = h->next) {
        const cp_peft_method *method = method_of(m, h);
        int r = method ? fn(mod, method, ctx) : 0;
        if (r) return r;
    }
    return 0;
}

int cp_peft_method_carries(const cp_peft_method *method, const cp_module *mod, const char *name) {
    const char *a;
    for (int i = 0; (a = method->adapter_at(mod, i)); i++)
        if (!strcmp(a, name)) return 1;
    return 0;
}

int cp_peft_is_tuner_layer(const cp_model *m, const cp_module *mod) {
    for (const cp_hook *h = mod->hooks; h; h = h->next)
        if (method_of(m, h)) return 1;
    return 0;
}

static int adapter_count(const cp_peft_method *method, const cp_module *mod) {
    int n = 0;
    while (method->adapter_at(mod, n)) n++;
    return n;
}

/* Every module carrying a method's layer with that method, in tree order (a module with layers of
 * two methods is listed twice, in attach order). */
typedef struct { cp_module *mod; const cp_peft_method *method; } layer_ref;
typedef struct { layer_ref *list; int n, cap; int failed; const cp_model *m; } layer_list;

static int push_layer(cp_module *mod, const cp_peft_method *method, void *ctx) {
    layer_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        layer_ref *p = cp_realloc(l->list, (size_t)cap * sizeof *p, "the PEFT layer list");
        if (!p) { l->failed = 1; return 1; }
        l->list = p;
        l->cap = cap;
    }
    l->list[l->n++] = (layer_ref){mod, method};
    return 0;
}

static int collect_layers(cp_module *mod, void *ctx) { return cp_peft_each_layer(((layer_list *)ctx)->m, mod, push_layer, ctx); }

static cp_status layers(const cp_model *m, layer_list *l) {
    memset(l, 0, sizeof *l);
    l->m = m;
    cp_module_visit(m->root, collect_layers, l);
    if (l->failed) { cp_free(l->list); return CP_ERR; }
    return CP_OK;
}

cp_status cp_peft_adapter_modules(const cp_model *m, const char *name, cp_module ***out, int *n) {
    *out = NULL;
    *n = 0;
    layer_list l;
    if (layers(m, &l) != CP_OK) return CP_ERR;
    cp_module **mods = cp_malloc((size_t)(l.n ? l.n : 1) * sizeof *mods, "the adapter's modules");
    if (!mods) { cp_free(l.list); return CP_ERR; }
    int k = 0;
    for (int i = 0; i < l.n; i++)
        if (cp_peft_method_carries(l.list[i].method, l.list[i].mod, name) && (k == 0 || mods[k - 1] != l.list[i].mod))
            mods[k++] = l.list[i].mod;
    cp_free(l.list);
    *out = mods;
    *n = k;
    return CP_OK;
}

int cp_peft_carries(const cp_model *m, const char *name) {
    cp_module **mods;
    int n = 0;
    if (cp_peft_adapter_modules(m, name, &mods, &n) != CP_OK) return 0;
    cp_free(mods);
    return n > 0;
}

int cp_peft_has_merged(const cp_model *m) {
    layer_list l;
    if (layers(m, &l) != CP_OK) return 0;
    int any = 0;
    for (int i = 0; i < l.n && !any; i++) any = l.list[i].method->merged && l.list[i].method->merged(l.list[i].mod, NULL);
    cp_free(l.list);
    return any;
}

cp_status cp_peft_scale_adapter(cp_model *m, const char *name, double factor) {
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return cp_error("Adapter %s does not exist", name);
    const cp_peft_method *method = ad->config->method;
    if (!method->scale) return cp_error("adapter \"%s\": %s adapters cannot be scaled", name, method->peft_type);
    layer_list l;
    if (layers(m, &l) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    for (int i = 0; i < l.n && st == CP_OK; i++)
        if (l.list[i].method == method && cp_peft_method_carries(method, l.list[i].mod, name))
            st = method->scale(l.list[i].mod, name, factor);
    cp_free(l.list);
    return st;
}

/* ---- writable weights ------------------------------------------------------------------------ */

typedef struct { cp_param *target; float *old, *fresh; } retie_ctx;

static int retie(cp_module *mod, void *vctx) {
    retie_ctx *c = vctx;
    cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++)
        if (ps[i] && ps[i] != c->target && ps[i]->tied_to == c->target) {
            ps[i]->data = c->fresh;
            ps[i]->stored = NULL;
            cp_param_drop_panels(ps[i]); /* packed from the old values */
        }
    return 0;
}

cp_status cp_param_make_writable(cp_model *m, cp_param *p) {
    if (p->tied_to) p = p->tied_to;
    cp_param_drop_panels(p); /* the values will change: bf16 panels packed from them are stale */
    if (p->owns_data) return CP_OK;
    float *fresh = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name);
    if (!fresh) return CP_ERR;
    if (cp_param_bound(p)) cp_param_export(p, CP_F32, fresh); /* f32 copied, F16/BF16 widened */
    if (p->owns_stored) cp_free((void *)p->stored); /* narrowed by --bf16 */
    p->owns_stored = 0;
    retie_ctx c = {p, p->data, fresh};
    if (p->owns_stored) cp_free((void *)p->stored); /* a weight quantized at load: dequantized into fresh */
    p->owns_stored = 0;
    p->data = fresh;
    p->stored = NULL;
    p->owns_data = 1;
    cp_module_visit(m->root, retie, &c);
    /* parameters a modules_to_save copy has displaced from their slot (a wrapped tied lm_head) */
    for (int w = 0; m->peft && w < m->peft->n_saved; w++)
        for (int i = 0; i < m->peft->saved[w]->n_params; i++) {
            cp_param *o = m->peft->saved[w]->params[i].original;
            if (o != p && o->tied_to == p) { o->data = fresh; o->stored = NULL; }
        }
    return CP_OK;
}

cp_status cp_peft_quantize_embeddings(cp_model *m, cp_param *const *trained, int n_trained, int64_t *saved_bytes) {
    if (cp_model_quantize_embeddings(m, trained, n_trained, saved_bytes) != CP_OK) return CP_ERR;
    for (int w = 0; m->peft && w < m->peft->n_saved; w++)
        for (int i = 0; i < m->peft->saved[w]->n_params; i++) {
            cp_param *o = m->peft->saved[w]->params[i].original;
            if (o->tied_to && !cp_param_same_values(o, o->tied_to)) {
                cp_param_drop_panels(o);
                cp_param_tie(o, o->tied_to);
            }
        }
    return CP_OK;
}

/* ---- adding adapters ------------------------------------------------------------------------- */

typedef struct { const cp_peft_method *method; const char *name; } detach_ctx;

static int detach_visit(cp_module *mod, void *vctx) {
    detach_ctx *c = vctx;
    if (cp_hook_find(mod, c->method->hook)) c->method->detach(mod, c->name);
    return 0;
}

/* Removes adapter `name` wherever `method` has a layer (found by its hook: the adapter may not be
 * listed in the state yet). */
static void detach_everywhere(cp_model *m, const cp_peft_method *method, const char *name) {
    detach_ctx c = {method, name};
    cp_module_visit(m->root, detach_visit, &c);
}

static cp_peft_bias bias_of(const cp_peft_config *cfg) { return cfg->method->bias ? cfg->method->bias(cfg) : CP_PEFT_BIAS_NONE; }

static void refresh_active(cp_model *m);

cp_status cp_peft_add(cp_model *m, const char *name, const cp_peft_config *cfg_in, cp_rng *rng, int activate, int trainable) {
    cp_peft_state *st = state(m);
    if (!st) return CP_ERR;
    const cp_peft_method *method = cfg_in->method;
    if (!method) return cp_error("adapter \"%s\": the config names no PEFT method", name);
    if (cp_peft_find_adapter(m, name)) return cp_error("adapter \"%s\" already exists", name);
    /* PeftModel.add_adapter: one PEFT type per model (PEFT's PeftMixedModel is not cpeft's). A method
     * outside the registry (a program's own) may sit beside any. */
    for (int i = 0; i < st->n; i++) {
        const cp_peft_method *other = st->adapters[i].config->method;
        if (other != method && cp_peft_method_find(other->peft_type) == other && cp_peft_method_find(method->peft_type) == method)
            return cp_error("adapter \"%s\": Cannot combine adapters with different peft types. Found %s and %s.", name,
                            other->peft_type, method->peft_type);
    }
    if (method->check && method->check(m, name, cfg_in) != CP_OK) return CP_ERR;
    if (bias_of(cfg_in) != CP_PEFT_BIAS_NONE)
        for (int i = 0; i < st->n; i++)
            if (bias_of(st->adapters[i].config) != CP_PEFT_BIAS_NONE)
                return cp_error("%s supports only 1 adapter with bias. When using multiple adapters, set bias to 'none' for "
                                "all adapters.", method->tuner_class);
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 4;
        cp_peft_adapter *a = cp_realloc(st->adapters, (size_t)cap * sizeof *a, "the adapter list");
        if (!a) return CP_ERR;
        st->adapters = a;
        st->cap = cap;
    }
    cp_peft_adapter *entry = &st->adapters[st->n];
    memset(entry, 0, sizeof *entry);
    entry->config = cp_peft_config_copy(cfg_in);
    entry->name = cp_strdup(name);
    entry->trainable = trainable;
    cp_peft_config *cfg = entry->config;
    if (!cfg || !entry->name) {
        cp_peft_config_free(cfg);
        cp_free(entry->name);
        return CP_ERR;
    }

    cp_module **targets = NULL;
    int n_targets = 0;
    cp_status status = method->targets(m, cfg, &targets, &n_targets);
    if (status == CP_OK && method->resolve) status = method->resolve(m, cfg);
    for (int i = 0; status == CP_OK && i < n_targets; i++) status = method->attach(targets[i], name, cfg, rng);
    cp_free(targets);
    if (status == CP_OK) status = cp_saved_add(m, cfg, name);
    if (status != CP_OK) {
        detach_everywhere(m, method, name);
        cp_saved_remove(m, name, 1);
        cp_peft_config_free(cfg);
        cp_free(entry->name);
        return CP_ERR;
    }
    st->n++;
    if (bias_of(cfg) != CP_PEFT_BIAS_NONE) {
        st->bias_mode = bias_of(cfg);
        st->bias_method = method;
    }
    if (activate || st->n == 1) {
        const char *names[1] = {name};
        return cp_peft_set_active(m, names, 1);
    }
    refresh_active(m);
    return CP_OK;
}

/* ---- active set, disabling, deleting --------------------------------------------------------- */

static void refresh_active(cp_model *m) {
    cp_peft_state *st = m->peft;
    layer_list l;
    m->prompt = NULL;
    if (layers(m, &l) == CP_OK) {
        for (int i = 0; i < l.n; i++) {
            const cp_peft_method *method = l.list[i].method;
            method->set_state(l.list[i].mod, (const char *const *)st->active, st->n_active, st->disabled);
            /* a prompt-learning method's active adapter runs at the model level */
            const cp_prompt_hook *h = method->prompt ? method->prompt->model_hook(l.list[i].mod) : NULL;
            if (h) m->prompt = h;
        }
        cp_free(l.list);
    }
    cp_saved_refresh(m, st->active, st->n_active, st->disabled);
}

cp_status cp_peft_set_active(cp_model *m, const char *const *names, int n) {
    cp_peft_state *st = state(m);
    if (!st) return CP_ERR;
    for (int i = 0; i < n; i++) {
        const cp_peft_adapter *a = cp_peft_find_adapter(m, names[i]);
        if (a && a->config->method->prompt && n > 1)
            return cp_error("adapter \"%s\" is a %s adapter: prompt learning runs one adapter at a time (PEFT's set_adapter takes "
                            "one name), %d were asked", names[i], a->config->method->peft_type, n);
        if (!a) {
            cp_strbuf sb;
            cp_sb_init(&sb);
            for (int k = 0; k < st->n; k++) cp_sb_printf(&sb, "%s%s", k ? ", " : "", st->adapters[k].name);
            char *have = cp_sb_finish(&sb);
            cp_status s = cp_error("Adapter %s not found (adapters: %s)", names[i], have ? have : "");
            cp_free(have);
            return s;
        }
    }
    char **active = cp_calloc((size_t)(n ? n : 1), sizeof *active, "the active adapters");
    if (!active) return CP_ERR;
    for (int i = 0; i < n; i++) active[i] = cp_strdup(names[i]);
    for (int i = 0; i < st->n_active; i++) cp_free(st->active[i]);
    cp_free(st->active);
    st->active = active;
    st->n_active = n;
    /* PEFT unmerges merged layers before switching adapters */
    layer_list l;
    if (layers(m, &l) == CP_OK) {
        for (int i = 0; i < l.n; i++) {
            const cp_peft_method *method = l.list[i].method;
            const char *a;
            for (int k = 0; method->merged && (a = method->adapter_at(l.list[i].mod, k)); k++)
                if (method->merged(l.list[i].mod, a)) method->unmerge(l.list[i].mod, a);
        }
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
    const cp_peft_method *method = a->config->method;
    layer_list l;
    if (layers(m, &l) != CP_OK) return CP_ERR;
    for (int i = 0; i < l.n; i++)
        if (l.list[i].method == method && method->merged && cp_peft_method_carries(method, l.list[i].mod, name) &&
            method->merged(l.list[i].mod, name)) {
            cp_free(l.list);
            return cp_error("adapter \"%s\" is merged; unmerge it before deleting it", name);
        }
    cp_free(l.list);
    detach_everywhere(m, method, name);
    cp_saved_remove(m, name, 0);
    int idx = (int)(a - st->adapters);
    if (bias_of(a->config) != CP_PEFT_BIAS_NONE) {
        st->bias_mode = CP_PEFT_BIAS_NONE;
        st->bias_method = NULL;
    }
    cp_peft_config_free(a->config);
    cp_free(a->name);
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
        /* the alphabetically first name (a tuner layer's rule); prompt learning: the first remaining (PEFT's
         * list(peft_config)[0]) */
        const char *first = st->adapters[0].name;
        for (int i = 1; i < st->n && !method->prompt; i++)
            if (strcmp(st->adapters[i].name, first) < 0) first = st->adapters[i].name;
        cp_warn("Adapter %s was active which is now deleted. Setting active adapter to %s.", name, first);
        st->active[0] = cp_strdup(first);
        st->n_active = 1;
    }
    refresh_active(m);
    return CP_OK;
}

/* ---- merging --------------------------------------------------------------------------------- */

static int is_active(const cp_peft_state *st, const char *name) {
    for (int i = 0; i < st->n_active; i++)
        if (!strcmp(st->active[i], name)) return 1;
    return 0;
}

cp_status cp_peft_merge(cp_model *m) {
    if (!m->peft) return CP_OK;
    for (int i = 0; i < m->peft->n_active; i++) {
        const cp_peft_adapter *a = cp_peft_find_adapter(m, m->peft->active[i]);
        if (a && a->config->method->prompt)
            return cp_error("adapter \"%s\": a %s adapter cannot be merged: its virtual tokens are inputs, not a change of the "
                            "model's weights (PEFT has no merge_and_unload for prompt learning)", a->name, a->config->method->peft_type);
    }
    layer_list l;
    if (layers(m, &l) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    for (int i = 0; i < l.n && st == CP_OK; i++) {
        cp_module *mod = l.list[i].mod;
        const cp_peft_method *method = l.list[i].method;
        const char *a;
        for (int k = 0; method->merge && (a = method->adapter_at(mod, k)); k++) {
            if (!is_active(m->peft, a) || method->merged(mod, a)) continue;
            if ((st = cp_param_make_writable(m, mod->weight)) != CP_OK) break;
            if (mod->bias && (st = cp_param_make_writable(m, mod->bias)) != CP_OK) break; /* a method may scale it */
            method->merge(mod, a);
        }
    }
    cp_free(l.list);
    return st;
}

cp_status cp_peft_unmerge(cp_model *m) {
    if (!m->peft) return CP_OK;
    layer_list l;
    if (layers(m, &l) != CP_OK) return CP_ERR;
    for (int i = 0; i < l.n; i++) {
        const cp_peft_method *method = l.list[i].method;
        for (int k = method->unmerge ? adapter_count(method, l.list[i].mod) - 1 : -1; k >= 0; k--)
            method->unmerge(l.list[i].mod, method->adapter_at(l.list[i].mod, k));
    }
    cp_free(l.list);
    return CP_OK;
}

/* ---- state ------------------------------------------------------------------------------------- */

void cp_peft_set_training(cp_model *m, int training) { m->training = training; }

void cp_peft_seed_dropout(cp_model *m, uint64_t seed) { m->dropout_seed = seed; }

void cp_peft_free(cp_model *m) {
    cp_peft_state *st = m->peft;
    if (!st) return;
    cp_saved_free_all(m);
    cp_hook_free_all(m->root);
    for (int i = 0; i < st->n; i++) { cp_peft_config_free(st->adapters[i].config); cp_free(st->adapters[i].name); }
    cp_free(st->adapters);
    for (int i = 0; i < st->n_active; i++) cp_free(st->active[i]);
    cp_free(st->active);
    cp_free(st);
    m->peft = NULL;
    m->prompt = NULL;
}
