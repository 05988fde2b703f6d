/*
 * saved_module.c — modules_to_save wrappers: making the copies, switching them with the active
 * adapter, removing them, and ModulesToSaveWrapper's repr; see saved_module.h.
 */
#include "peft/saved_module.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_model.h"
#include "peft/targets.h"

#include <stdio.h>
#include <string.h>

/* modules_to_save swaps the wrapped leaves' parameters (the slot holds the active copy), so the
 * base forward and backward already compute with it: the hook only prints the wrapper. Its memory
 * belongs to the PEFT state (saved_free). */
const cp_hook_ops cp_saved_hook_ops = {.kind = "modules_to_save", .repr = cp_saved_repr, .outermost = 1};

cp_saved_module *cp_saved_of(const cp_module *m) { return (cp_saved_module *)cp_hook_find(m, &cp_saved_hook_ops); }

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
    cp_peft_state *st = m->peft;
    cp_saved_module *s = cp_saved_of(mod);
    for (const cp_hook *h = mod->hooks; h; h = h->next)
        if (h->ops != &cp_saved_hook_ops) /* ModulesToSaveWrapper.check_module: never around a tuner layer */
            return cp_error("modules_to_save cannot be applied to modules of type <class 'peft.tuners.%s.layer.%s'> "
                            "(\"%s\" is also a target of the adapter)",
                            h->ops->kind, mod->kind == CP_MOD_EMBEDDING ? "Embedding" : "Linear", mod->path);
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
        cp_param *c = cp_param_new_like(name, o);
        if (!c) return CP_ERR;
        if (cp_param_bound(o)) cp_param_export(o, CP_F32, c->data);
        c->source_dtype = o->source_dtype;
        sp->copies[s->n_adapters] = c;
    }
    s->n_adapters++;
    return CP_OK;
}

typedef struct { cp_model *m; const cp_peft_config *cfg; const char *adapter; cp_status status; } mts_ctx;

static int visit_mts(cp_module *mod, void *vctx) {
    mts_ctx *c = vctx;
    if (!mod->path[0] || !cp_modules_to_save_matches(c->cfg, mod->path)) return 0;
    c->status = wrap_saved(c->m, mod, c->adapter);
    return c->status != CP_OK;
}

cp_status cp_saved_add(cp_model *m, const cp_peft_config *cfg, const char *adapter) {
    if (!cfg->modules_to_save) return CP_OK;
    mts_ctx c = {m, cfg, adapter, CP_OK};
    cp_module_visit(m->root, visit_mts, &c);
    return c.status;
}

static void remove_copy(cp_saved_module *s, int k) {
    if (s->active == k) point_saved(s, -1);
    else if (s->active > k) s->active--; /* the slots keep the same copy, now one index lower */
    for (int p = 0; p < s->n_params; p++) {
        cp_param_free(s->params[p].copies[k]);
        memmove(s->params[p].copies + k, s->params[p].copies + k + 1, (size_t)(s->n_adapters - k - 1) * sizeof(cp_param *));
    }
    cp_free(s->adapters[k]);
    memmove(s->adapters + k, s->adapters + k + 1, (size_t)(s->n_adapters - k - 1) * sizeof(char *));
    s->n_adapters--;
}

void cp_saved_remove(cp_model *m, const char *adapter, int only_last) {
    for (int i = 0; m->peft && i < m->peft->n_saved; i++) {
        cp_saved_module *s = m->peft->saved[i];
        for (int k = only_last ? s->n_adapters - 1 : 0; k >= 0 && k < s->n_adapters; k++)
            if (!strcmp(s->adapters[k], adapter)) {
                remove_copy(s, k);
                break;
            }
    }
}

void cp_saved_refresh(cp_model *m, char *const *active, int n_active, int disabled) {
    for (int i = 0; m->peft && i < m->peft->n_saved; i++) {
        cp_saved_module *s = m->peft->saved[i];
        int index = -1;
        for (int a = 0; !disabled && a < n_active && index < 0; a++)
            for (int k = 0; k < s->n_adapters; k++)
                if (!strcmp(s->adapters[k], active[a])) { index = k; break; }
        point_saved(s, index);
    }
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

void cp_saved_free_all(cp_model *m) {
    if (!m->peft) return;
    for (int i = 0; i < m->peft->n_saved; i++) saved_free(m->peft->saved[i]);
    cp_free(m->peft->saved);
    m->peft->saved = NULL;
    m->peft->n_saved = 0;
}

int cp_saved_wraps_slot(const cp_model *m, const cp_module *mod, int is_bias) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *s = m->peft->saved[w];
        for (int i = 0; i < s->n_params; i++)
            if (s->params[i].module == mod && s->params[i].is_bias == is_bias) return 1;
    }
    return 0;
}

cp_param *cp_peft_original_param(const cp_model *m, const cp_module *mod, int is_bias) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *s = m->peft->saved[w];
        for (int i = 0; i < s->n_params; i++)
            if (s->params[i].module == mod && s->params[i].is_bias == is_bias) return s->params[i].original;
    }
    return is_bias ? mod->bias : mod->weight;
}

int cp_saved_inside_wrapper(const cp_model *m, const cp_module *mod) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        const cp_saved_module *s = m->peft->saved[w];
        if (s->wrapper == mod) continue;
        for (int i = 0; i < s->n_params; i++)
            if (s->params[i].module == mod) return 1;
    }
    return 0;
}

char *cp_saved_repr(const cp_hook *h, const cp_module *m) {
    const cp_saved_module *s = (const cp_saved_module *)h;
    /* print with the original parameters in place (shapes are identical, only data differs) */
    char *inner = cp_hook_repr_inner(m, h);
    if (!inner) return NULL;
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "ModulesToSaveWrapper(\n  (original_module): ");
    cp_sb_append_indented(&sb, inner, 2);
    cp_sb_append(&sb, "\n  (modules_to_save): ModuleDict(");
    for (int i = 0; i < s->n_adapters; i++) {
        cp_sb_printf(&sb, "\n    (%s): ", s->adapters[i]);
        cp_sb_append_indented(&sb, inner, 4);
    }
    cp_sb_append(&sb, "\n  )\n)");
    cp_free(inner);
    return cp_sb_finish(&sb);
}
