/*
 * peft_count.c — what trains and how much there is, for every method: PEFT's trainable / all
 * counts (get_nb_trainable_parameters), one adapter's own count, and the list of parameters a
 * training run updates (with their gradient buffers). See peft_model.h.
 */
#include "peft/peft_model.h"
#include "core/alloc.h"

#include <string.h>

static int is_active(const cp_peft_state *st, const char *name) {
    for (int i = 0; i < st->n_active; i++)
        if (!strcmp(st->active[i], name)) return 1;
    return 0;
}

static int adapter_trainable(const cp_model *m, const char *name) {
    const cp_peft_adapter *a = cp_peft_find_adapter(m, name);
    return a && a->trainable && is_active(m->peft, name);
}

/* The biases of a bias mode on `mod`: a bias under a modules_to_save wrapper is not one of them
 * (PEFT freezes the wrapper's original_module; its copy counts and trains with the adapter's
 * copies); "<method>_only" takes those of modules carrying that method's layer. */
static int bias_of_mode(const cp_model *m, const cp_module *mod, cp_peft_bias mode, const cp_peft_method *method) {
    if (cp_saved_wraps_slot(m, mod, 1)) return 0;
    if (mode == CP_PEFT_BIAS_ALL) return 1;
    if (mode == CP_PEFT_BIAS_METHOD_ONLY) return method && cp_hook_find(mod, method->hook) != NULL;
    return 0;
}

int cp_peft_bias_trainable(const cp_model *m, const cp_module *mod) {
    return m->peft && bias_of_mode(m, mod, m->peft->bias_mode, m->peft->bias_method);
}

static int64_t tensors_numel(const cp_peft_method *method, const cp_module *mod, const char *name) {
    cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
    int n = method->tensors(mod, name, t);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += t[i].param->numel;
    return total;
}

/* ---- counting ---------------------------------------------------------------------------------- */

typedef struct { const cp_model *m; int64_t trainable, all; } count_ctx;

static int count_layer(cp_module *mod, const cp_peft_method *method, void *vctx) {
    count_ctx *c = vctx;
    const char *a;
    for (int k = 0; (a = method->adapter_at(mod, k)); k++) {
        int64_t n = tensors_numel(method, mod, a);
        c->all += n;
        /* PEFT never freezes a prompt encoder (loaded ones, inactive ones included): it counts as trainable */
        if (adapter_trainable(c->m, a) || method->prompt) c->trainable += n;
    }
    return 0;
}

/* Counts the original parameters (a modules_to_save copy in a leaf's slot is counted with the
 * wrapper's copies, so a copy of a tied lm_head is not counted twice and the tied original once,
 * as PyTorch de-duplicates it), then the methods' tensors and the copies. */
static int count_visit(cp_module *mod, void *vctx) {
    count_ctx *c = vctx;
    const cp_param *w = mod->weight ? cp_peft_original_param(c->m, mod, 0) : NULL;
    const cp_param *b = mod->bias ? cp_peft_original_param(c->m, mod, 1) : NULL;
    if (w && !w->tied_to) c->all += w->numel;
    if (b && !b->tied_to) {
        c->all += b->numel;
        if (cp_peft_bias_trainable(c->m, mod)) c->trainable += b->numel;
    }
    cp_peft_each_layer(c->m, mod, count_layer, c);
    const cp_saved_module *saved = cp_saved_of(mod);
    for (int k = 0; saved && k < saved->n_adapters; k++) {
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

typedef struct { const cp_model *m; const cp_peft_adapter *ad; int64_t n; } own_ctx;

static int own_visit(cp_module *mod, void *vctx) {
    own_ctx *c = vctx;
    const cp_peft_method *method = c->ad->config->method;
    const cp_peft_bias mode = method->bias ? method->bias(c->ad->config) : CP_PEFT_BIAS_NONE;
    const cp_param *b = mod->bias ? cp_peft_original_param(c->m, mod, 1) : NULL;
    if (b && !b->tied_to && bias_of_mode(c->m, mod, mode, method)) c->n += b->numel;
    c->n += tensors_numel(method, mod, c->ad->name);
    const cp_saved_module *saved = cp_saved_of(mod);
    for (int k = 0; saved && k < saved->n_adapters; k++)
        if (!strcmp(saved->adapters[k], c->ad->name))
            for (int p = 0; p < saved->n_params; p++) c->n += saved->params[p].copies[k]->numel;
    return 0;
}

int64_t cp_peft_adapter_num_params(const cp_model *m, const char *name) {
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return 0;
    own_ctx c = {m, ad, 0};
    cp_module_visit(m->root, own_visit, &c);
    return c.n;
}

/* ---- training ------------------------------------------------------------------------------------ */

typedef struct { cp_model *m; cp_param **list; int n, cap; cp_status status; } trainable_ctx;

static void add_trainable(trainable_ctx *c, cp_param *p) {
    if (c->status != CP_OK) return;
    if (!p->data && (c->status = cp_param_make_writable(c->m, p)) != CP_OK) return; /* trained in f32 */
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

static int trainable_layer(cp_module *mod, const cp_peft_method *method, void *vctx) {
    trainable_ctx *c = vctx;
    const char *a;
    for (int k = 0; (a = method->adapter_at(mod, k)); k++) {
        if (!adapter_trainable(c->m, a)) continue;
        cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
        int n = method->tensors(mod, a, t);
        for (int i = 0; i < n; i++) add_trainable(c, t[i].param);
    }
    return c->status != CP_OK;
}

static int visit_trainable(cp_module *mod, void *vctx) {
    trainable_ctx *c = vctx;
    if (mod->bias && !mod->bias->tied_to && cp_peft_bias_trainable(c->m, mod)) {
        if ((c->status = cp_param_make_writable(c->m, mod->bias)) != CP_OK) return 1;
        add_trainable(c, mod->bias);
    }
    if (cp_peft_each_layer(c->m, mod, trainable_layer, c)) return 1;
    cp_saved_module *saved = cp_saved_of(mod);
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
