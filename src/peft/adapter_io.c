/*
 * adapter_io.c — reading and writing PEFT adapter directories, and merged checkpoints; see
 * adapter_io.h for the key names and the guarantees.
 */
#include "peft/adapter_io.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The model's keys in PEFT's state dict for an adapter of `method`: "base_model.model." under a tuner
 * (LoraModel), "base_model." under prompt learning (PeftModel.base_model is the model itself). */
static const char *peft_prefix(const cp_peft_method *method) {
    return method && method->prompt ? "base_model." : "base_model.model.";
}

/* The method of adapter `name` of m (NULL: none yet). */
static const cp_peft_method *method_named(const cp_model *m, const char *name) {
    const cp_peft_adapter *a = name ? cp_peft_find_adapter(m, name) : NULL;
    return a ? a->config->method : NULL;
}

/* ---- the tensors of one adapter, with their file keys ----------------------------------------- */

typedef struct {
    char *key;          /* key in adapter_model.safetensors */
    cp_param *param;    /* where the values live in the model */
    cp_module *module;  /* a base-model weight (bias, embedding layer): its module (the data is
                           made writable before a load writes into it) */
    cp_param *owned;    /* a tensor computed for the file (prompt learning's prompt_embeddings), freed with the entry */
    int base_dtype;     /* a tensor of the model's own (a trained bias, a modules_to_save copy, an
                           embedding layer's weight): saved in the checkpoint's dtype, as PEFT saves
                           them in the dtype the model was loaded in (BF16 copies on a bf16 model);
                           the method's own tensors are F32 (PEFT's autocast_adapter_dtype) */
} adapter_entry;

typedef struct { adapter_entry *list; int n, cap; int failed; } entry_list;

static void add_entry(entry_list *l, char *key, cp_param *p, cp_module *mod, int base_dtype) {
    if (!key) { l->failed = 1; return; }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        adapter_entry *e = cp_realloc(l->list, (size_t)cap * sizeof *e, "adapter tensors");
        if (!e) { cp_free(key); l->failed = 1; return; }
        l->list = e;
        l->cap = cap;
    }
    l->list[l->n++] = (adapter_entry){.key = key, .param = p, .module = mod, .base_dtype = base_dtype};
}

static const adapter_entry *find_entry(const entry_list *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->list[i].key, key)) return &l->list[i];
    return NULL;
}

/* Adds an entry unless the key is there already (PEFT builds a dict: a key is saved once). */
static void add_unique(entry_list *l, char *key, cp_param *p, cp_module *mod, int base_dtype) {
    if (key && find_entry(l, key)) { cp_free(key); return; }
    add_entry(l, key, p, mod, base_dtype);
}

static char *keyf(const char *fmt, const char *a, const char *b) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, fmt, a, b);
    return cp_sb_finish(&sb);
}

/* keyf after the state-dict prefix of an adapter of `method`. */
static char *pkeyf(const cp_peft_method *method, const char *fmt, const char *a, const char *b) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, peft_prefix(method));
    cp_sb_printf(&sb, fmt, a, b);
    return cp_sb_finish(&sb);
}

typedef struct { cp_model *m; const char *name; const cp_peft_adapter *ad; entry_list *l; int saving; } entries_ctx;

/* The tensors PEFT's get_peft_model_state_dict selects for the adapter itself: its method's tensors,
 * the biases of its bias mode, its modules_to_save copies. */
static int visit_entries(cp_module *mod, void *vctx) {
    entries_ctx *c = vctx;
    const cp_peft_method *method = c->ad->config->method;
    cp_peft_tensor t[CP_PEFT_MAX_TENSORS];
    if (method->prompt && cp_hook_find(mod, method->hook) && cp_peft_method_carries(method, mod, c->name)) {
        /* prompt learning: the file's one tensor, named as it is; loading reads it into the table of an
         * adapter in inference mode, saving writes the encoder's output */
        cp_param *p = c->saving ? method->prompt->saved_embeddings(mod, c->name) : method->prompt->loaded_embeddings(mod, c->name);
        if (!p && c->saving) { c->l->failed = 1; return 1; }
        if (p) add_entry(c->l, cp_strdup("prompt_embeddings"), p, NULL, 0);
        if (p && c->saving && !c->l->failed) c->l->list[c->l->n - 1].owned = p;
        else if (p && c->saving) cp_param_free(p);
    }
    int n = method->prompt ? 0 : method->tensors(mod, c->name, t);
    for (int i = 0; i < n; i++) add_entry(c->l, pkeyf(method, "%s.%s", mod->path, t[i].key), t[i].param, NULL, 0);
    cp_peft_bias mode = method->bias ? method->bias(c->ad->config) : CP_PEFT_BIAS_NONE;
    const int layer = cp_hook_find(mod, method->hook) != NULL;
    if (mod->bias && !cp_saved_of(mod) && (mode == CP_PEFT_BIAS_ALL || (mode == CP_PEFT_BIAS_METHOD_ONLY && layer)))
        add_entry(c->l, pkeyf(method, layer ? "%s.base_layer.bias%s" : "%s.bias%s", mod->path, ""),
                  mod->bias, mod, 1);
    if (cp_saved_of(mod)) {
        cp_saved_module *s = cp_saved_of(mod);
        for (int k = 0; k < s->n_adapters; k++) {
            if (strcmp(s->adapters[k], c->name)) continue;
            for (int p = 0; p < s->n_params; p++)
                add_entry(c->l, pkeyf(method, "%s.%s", mod->path, s->params[p].local_name), s->params[p].copies[k], NULL, 1);
        }
    }
    return 0;
}

/* `saving`: the tensors' values as the file gets them (prompt learning computes its tensor). */
static cp_status adapter_entries(cp_model *m, const char *name, entry_list *l, int saving) {
    memset(l, 0, sizeof *l);
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return cp_error("adapter \"%s\" does not exist", name);
    entries_ctx c = {m, name, ad, l, saving};
    cp_module_visit(m->root, visit_entries, &c);
    if (l->failed) return CP_ERR;
    return CP_OK;
}

static void free_entries(entry_list *l) {
    for (int i = 0; i < l->n; i++) {
        cp_free(l->list[i].key);
        cp_param_free(l->list[i].owned);
    }
    cp_free(l->list);
}

cp_param *cp_adapter_find_param(cp_model *m, const char *name, const char *key) {
    entry_list l;
    cp_param *found = NULL;
    if (adapter_entries(m, name, &l, 0) == CP_OK)
        for (int i = 0; i < l.n && !found; i++)
            if (!strcmp(l.list[i].key, key)) found = l.list[i].param;
    free_entries(&l);
    return found;
}

/* ---- the model's own weights under PEFT's names ------------------------------------------------- */

/* The state-dict entries of one module as PEFT's wrapped model names them, adapter name removed
 * as PEFT removes it: "<path>.weight" for a plain module, "<path>.base_layer.weight" under a
 * method's layer, "<path>.original_module.<p>" and "<path>.modules_to_save.<p>" (adapter `name`'s copy;
 * a dotted <p> keeps the name, "<path>.modules_to_save.<name>.<p>", since PEFT strips it only
 * before the last component) under a modules_to_save wrapper. `base_layer_only` keeps only what
 * lies under "<path>.base_layer.". Entries already listed are not repeated. */
static void wrapper_state(const cp_model *m, cp_module *mod, const char *name, int biases_only, entry_list *l) {
    cp_saved_module *s = cp_saved_of(mod);
    for (int p = 0; p < s->n_params; p++) {
        cp_saved_param *sp = &s->params[p];
        if (biases_only && !sp->is_bias) continue;
        add_unique(l, pkeyf(method_named(m, name), "%s.original_module.%s", mod->path, sp->local_name), sp->original, sp->module, 1);
        for (int k = 0; k < s->n_adapters; k++) {
            if (strcmp(s->adapters[k], name)) continue;
            cp_strbuf sb;
            cp_sb_init(&sb);
            cp_sb_printf(&sb, "%s%s.modules_to_save.", peft_prefix(method_named(m, name)), mod->path);
            if (strchr(sp->local_name, '.')) cp_sb_printf(&sb, "%s.", name);
            cp_sb_append(&sb, sp->local_name);
            add_unique(l, cp_sb_finish(&sb), sp->copies[k], NULL, 1);
        }
    }
}

static void module_state(const cp_model *m, cp_module *mod, const char *name, int base_layer_only, entry_list *l) {
    if (cp_saved_of(mod)) {
        if (!base_layer_only) wrapper_state(m, mod, name, 0, l); /* a ModulesToSaveWrapper has no base_layer */
        return;
    }
    const int layer = cp_peft_is_tuner_layer(m, mod);
    if (!layer && base_layer_only) return;
    const char *infix = layer ? ".base_layer" : "";
    if (mod->weight) add_unique(l, pkeyf(method_named(m, name), "%s%s.weight", mod->path, infix), mod->weight, mod, 1);
    if (mod->bias) add_unique(l, pkeyf(method_named(m, name), "%s%s.bias", mod->path, infix), mod->bias, mod, 1);
}

/* get_input_embeddings(): the first Embedding with one row per vocabulary entry (wte, embed_tokens). */
typedef struct { const cp_model *m; cp_module *found; } find_emb_ctx;

static int visit_input_embedding(cp_module *mod, void *vctx) {
    find_emb_ctx *c = vctx;
    if (mod->kind == CP_MOD_EMBEDDING && mod->in_features == c->m->config.vocab_size) { c->found = mod; return 1; }
    return 0;
}

static cp_module *input_embedding(const cp_model *m) {
    find_emb_ctx c = {m, NULL};
    cp_module_visit(m->root, visit_input_embedding, &c);
    return c.found;
}

/* save_embedding_layers="auto" when nothing is targeted: on when the vocabulary differs from the
 * base model's config.json (at base_model_name_or_path, read as PEFT reads it, from the working
 * directory) — a resized embedding. cpeft never resizes, so this only fires for a base directory
 * that is not the model's own. */
static int vocab_resized(const cp_model *m, const cp_peft_config *cfg) {
    const char *id = cfg->base_model_name_or_path ? cfg->base_model_name_or_path : m->dir;
    char *path = id && id[0] ? cp_path_join(id, "config.json") : NULL;
    int resized = 0;
    cJSON *root = NULL;
    int64_t vocab = 0;
    if (path && cp_path_exists(path) && cp_json_read_file(path, &root) == CP_OK &&
        cp_json_get_int(root, "vocab_size", 0, 0, &vocab, path) == CP_OK)
        resized = vocab && vocab != m->config.vocab_size;
    cJSON_Delete(root);
    cp_free(path);
    return resized;
}

/* bias="all": PEFT saves every state-dict key ending in ".bias", which under a modules_to_save
 * wrapper includes "<path>.original_module.<p>" and "<path>.modules_to_save.<p>" besides the copy
 * itself ("<path>.<p>"). Loading, PEFT puts the first into the original and ignores the second
 * (the copy comes from "<path>.<p>"); cp_adapter_load does the same. */
static void add_wrapped_biases(cp_model *m, const char *name, entry_list *l) {
    for (int w = 0; m->peft && w < m->peft->n_saved; w++) {
        cp_saved_module *s = m->peft->saved[w];
        for (int k = 0; k < s->n_adapters; k++)
            if (!strcmp(s->adapters[k], name)) { wrapper_state(m, s->wrapper, name, 1, l); break; }
    }
}

/* The embedding layers PEFT's get_peft_model_state_dict adds (save_embedding_layers): with the
 * embedding targeted, the base_layer weights of the input / output embeddings that carry the adapter's
 * method;
 * otherwise, when saving them was asked for (or "auto" found a resized vocabulary), everything
 * under both embedding modules. */
static cp_status add_embedding_layers(cp_model *m, const char *name, cp_save_embeddings mode, entry_list *l) {
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    const cp_peft_method *method = ad->config->method;
    int targeted = 0, save = mode == CP_SAVE_EMBEDDINGS_TRUE;
    if (method->embedding_targeted && method->embedding_targeted(m, ad->config, &targeted) != CP_OK) return CP_ERR;
    if (mode == CP_SAVE_EMBEDDINGS_AUTO && targeted) {
        cp_warn("Setting `save_embedding_layers` to `True` as embedding layers found in `target_modules`.");
        save = 1;
    } else if (mode == CP_SAVE_EMBEDDINGS_AUTO && vocab_resized(m, ad->config)) {
        cp_warn("Setting `save_embedding_layers` to `True` as the embedding layer has been resized during finetuning.");
        save = 1;
    }
    if (!save) return CP_OK;
    cp_module *layers[2] = {input_embedding(m), m->lm_head};
    for (int i = 0; i < 2; i++)
        if (layers[i] && (!targeted || cp_hook_find(layers[i], method->hook))) module_state(m, layers[i], name, targeted, l);
    return l->failed ? CP_ERR : CP_OK;
}

/* ---- saving ----------------------------------------------------------------------------------- */

cp_status cp_adapter_save(cp_model *m, const char *name, const char *dir) {
    return cp_adapter_save_ex(m, name, dir, CP_SAVE_EMBEDDINGS_AUTO);
}

cp_status cp_adapter_save_ex(cp_model *m, const char *name, const char *dir, cp_save_embeddings mode) {
    cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return cp_error("adapter \"%s\" does not exist", name);
    entry_list l;
    if (adapter_entries(m, name, &l, 1) != CP_OK || add_embedding_layers(m, name, mode, &l) != CP_OK) {
        free_entries(&l);
        return CP_ERR;
    }
    if (ad->config->method->bias && ad->config->method->bias(ad->config) == CP_PEFT_BIAS_ALL) add_wrapped_biases(m, name, &l);
    if (l.failed) { free_entries(&l); return CP_ERR; }
    cp_st_write_tensor *t = cp_calloc((size_t)(l.n ? l.n : 1), sizeof *t, "the adapter tensors");
    void **owned = cp_calloc((size_t)(l.n ? l.n : 1), sizeof *owned, "the adapter tensors");
    cp_status st = t && owned ? CP_OK : CP_ERR;
    for (int i = 0; st == CP_OK && i < l.n; i++) {
        const cp_param *p = l.list[i].param;
        t[i].name = l.list[i].key;
        t[i].dtype = l.list[i].base_dtype ? p->source_dtype : CP_F32;
        t[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) t[i].shape[d] = p->shape[d];
        t[i].data = p->data;
        if (t[i].dtype != CP_F32 || !p->data) {
            if (!(owned[i] = cp_malloc((size_t)cp_dtype_nbytes(t[i].dtype, p->numel), l.list[i].key))) st = CP_ERR;
            else cp_param_export(p, t[i].dtype, owned[i]);
            t[i].data = owned[i];
        }
    }
    cp_peft_config *cfg = cp_peft_config_copy(ad->config);
    if (!cfg) st = CP_ERR;
    if (cfg && !cfg->base_model_name_or_path) cfg->base_model_name_or_path = cp_strdup(m->dir);
    /* PEFT's save_pretrained records the base class as auto_mapping exactly when task_type is None */
    if (cfg) {
        cp_free(cfg->auto_mapping_class);
        cp_free(cfg->auto_mapping_library);
        cfg->auto_mapping_class = cfg->auto_mapping_library = NULL;
    }
    if (cfg && !cfg->task_type) {
        cfg->auto_mapping_class = cp_strdup(m->arch->causal_lm_class);
        cfg->auto_mapping_library = keyf("transformers.models.%s.modeling_%s", m->config.model_type, m->config.model_type);
    }
    char *json = st == CP_OK ? cp_peft_config_to_json(cfg) : NULL;
    cp_peft_config_free(cfg);

    char *staging = NULL;
    if (st == CP_OK) st = json ? cp_dir_begin(dir, &staging) : CP_ERR;
    char *cfg_path = NULL, *w_path = NULL;
    if (st == CP_OK) {
        cfg_path = cp_path_join(staging, "adapter_config.json");
        w_path = cp_path_join(staging, "adapter_model.safetensors");
        const char *mk[] = {"format"}, *mv[] = {"pt"};
        if (!cfg_path || !w_path) st = CP_ERR;
        if (st == CP_OK) st = cp_write_file_atomic(cfg_path, json, strlen(json));
        if (st == CP_OK) st = cp_st_write(w_path, t, l.n, mk, mv, 1);
        if (st == CP_OK) st = cp_dir_commit(&staging, dir);
        else cp_dir_abort(&staging);
    }
    cp_free(cfg_path);
    cp_free(w_path);
    cp_free(json);
    for (int i = 0; owned && i < l.n; i++) cp_free(owned[i]);
    cp_free(owned);
    cp_free(t);
    free_entries(&l);
    return st;
}

/* ---- loading ---------------------------------------------------------------------------------- */

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* `config` (non-NULL): the file differs only in the dimension a config field sets. */
static cp_status shape_error(const char *w_path, const char *key, const cp_st_tensor *t, int ndim, const int64_t *want,
                             const cp_peft_tensor *config) {
    char got[96], need[96];
    shape_text(got, sizeof got, t->ndim, t->shape);
    shape_text(need, sizeof need, ndim, want);
    if (config)
        return cp_error("%s: tensor \"%s\" has shape %s but %s = %lld in adapter_config.json makes it %s — the config "
                        "does not belong to these weights",
                        w_path, key, got, config->config_field, (long long)config->config_value, need);
    return cp_error("%s: tensor \"%s\" has shape %s but the model needs %s — was this adapter made for another base model?",
                    w_path, key, got, need);
}

static int same_shape(const cp_st_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d]) return 0;
    return 1;
}

static cp_status missing_error(const char *w_path, cp_strbuf *list, int n) {
    char *msg = cp_sb_finish(list);
    cp_status st = cp_error("%s: %d tensor%s the adapter config implies %s missing from the file (was it made for another "
                            "base model?):%s%s",
                            w_path, n, n > 1 ? "s" : "", n > 1 ? "are" : "is", msg ? msg : "", n > 10 ? "\n    ..." : "");
    cp_free(msg);
    return st;
}

/* The tensors the config implies (its method's plan for each target), checked against the file's
 * header before anything is allocated: presence, and shapes with the config's values for each module
 * (LoRA: (r, in) / (out, r) with the module's rank). An adapter_config.json with an absurd r is
 * refused here instead of allocating gigabytes first. */
static cp_status check_header(cp_model *m, const cp_peft_config *cfg, const cp_safetensors *file, const char *w_path) {
    const cp_peft_method *method = cfg->method;
    if (method->prompt) { /* one tensor, "prompt_embeddings", whose shape the config's fields set */
        const cp_st_tensor *t = cp_st_find(file, "prompt_embeddings");
        if (!t) return cp_error("%s: tensor \"prompt_embeddings\" (the %s adapter's virtual tokens) is missing from the file", w_path,
                                method->peft_type);
        return method->prompt->check_saved(m, cfg, t->ndim, t->shape, w_path);
    }
    cp_module **targets;
    int n;
    if (method->targets(m, cfg, &targets, &n) != CP_OK) return CP_ERR;
    /* the config as cp_peft_add hands it to attach: resolved after matching (IA3's default feed-forward
     * modules decide its shapes) */
    cp_peft_config *resolved = method->resolve ? cp_peft_config_copy(cfg) : NULL;
    if (method->resolve && (!resolved || method->resolve(m, resolved) != CP_OK)) {
        cp_peft_config_free(resolved);
        cp_free(targets);
        return CP_ERR;
    }
    const cp_peft_config *planned = resolved ? resolved : cfg;
    cp_status st = CP_OK;
    cp_strbuf missing;
    cp_sb_init(&missing);
    int n_missing = 0;
    for (int i = 0; i < n && st == CP_OK; i++) {
        const cp_module *t = targets[i];
        cp_peft_tensor plan[CP_PEFT_MAX_TENSORS];
        int n_plan;
        if ((st = method->plan(t, planned, plan, &n_plan)) != CP_OK) break;
        for (int k = 0; k < n_plan && st == CP_OK; k++) {
            const cp_peft_tensor *want = &plan[k];
            char *key = pkeyf(method, "%s.%s", t->path, want->key);
            if (!key) { st = CP_ERR; break; }
            const cp_st_tensor *ft = cp_st_find(file, key);
            if (!ft) {
                if (n_missing++ < 10) cp_sb_printf(&missing, "\n    %s", key);
            } else if (!same_shape(ft, want->ndim, want->shape)) {
                /* only the dimension the config sets differs: the config does not fit the weights */
                int config_differs = want->config_dim >= 0 && ft->ndim == want->ndim;
                for (int d = 0; config_differs && d < want->ndim; d++)
                    config_differs = (ft->shape[d] != want->shape[d]) == (d == want->config_dim);
                st = shape_error(w_path, key, ft, want->ndim, want->shape, config_differs ? want : NULL);
            }
            cp_free(key);
        }
    }
    cp_free(targets);
    cp_peft_config_free(resolved);
    if (st == CP_OK && n_missing) return missing_error(w_path, &missing, n_missing);
    cp_sb_free(&missing);
    return st;
}

typedef struct { cp_model *m; const char *name; entry_list *l; } state_ctx;

static int visit_state(cp_module *mod, void *vctx) {
    state_ctx *c = vctx;
    if (mod->path[0] && !cp_saved_inside_wrapper(c->m, mod)) module_state(c->m, mod, c->name, 0, c->l);
    return c->l->failed;
}

cp_status cp_adapter_check_config(cp_model *m, const cp_peft_config *cfg, const char *dir) {
    char *w_path = cp_path_join(dir, "adapter_model.safetensors");
    if (!w_path) return CP_ERR;
    cp_safetensors file;
    cp_status st = cp_st_open(&file, w_path);
    if (st == CP_OK) st = check_header(m, cfg, &file, w_path);
    cp_st_close(&file);
    cp_free(w_path);
    return st;
}

/* Loads one file tensor into a parameter after checking its shape and dtype. */
static cp_status load_tensor(cp_model *m, const adapter_entry *e, const cp_st_tensor *t, const char *w_path) {
    const cp_param *p = e->param;
    if (!same_shape(t, p->ndim, p->shape)) return shape_error(w_path, e->key, t, p->ndim, p->shape, NULL);
    if (!cp_dtype_is_loadable_float(t->dtype))
        return cp_error("%s: tensor \"%s\" has dtype %s (expected F32, F16 or BF16)", w_path, e->key, cp_dtype_name(t->dtype));
    if (e->module && cp_param_make_writable(m, e->param) != CP_OK) return CP_ERR;
    cp_convert_to_f32(e->param->data, t->data, t->dtype, (size_t)p->numel);
    return CP_OK;
}

cp_status cp_adapter_load(cp_model *m, const char *dir, const char *name, int activate, int trainable) {
    if (!cp_is_dir(dir)) return cp_error("%s: adapter directory does not exist", dir);
    char *cfg_path = cp_path_join(dir, "adapter_config.json");
    char *w_path = cp_path_join(dir, "adapter_model.safetensors");
    if (!cfg_path || !w_path) { cp_free(cfg_path); cp_free(w_path); return CP_ERR; }
    cp_status st = CP_OK;
    cp_peft_config *cfg = NULL;
    cp_safetensors file;
    memset(&file, 0, sizeof file);
    int added = 0;
    entry_list l = {0};
    if (!cp_path_exists(cfg_path)) st = cp_error("%s: adapter_config.json is missing", dir);
    else if (!cp_path_exists(w_path)) {
        char *bin = cp_path_join(dir, "adapter_model.bin");
        st = bin && cp_path_exists(bin)
                 ? cp_error("%s: holds adapter_model.bin (a pickle); cpeft reads adapter_model.safetensors — resave with "
                            "safe_serialization=True", dir)
                 : cp_error("%s: adapter_model.safetensors is missing", dir);
        cp_free(bin);
    }
    if (st == CP_OK) st = cp_peft_config_load(cfg_path, &cfg);
    /* PEFT: config.inference_mode = not is_trainable; a prompt encoder is saved as its output only */
    if (st == CP_OK && cfg->method->prompt && trainable)
        st = cp_error("%s: Cannot set a prompt learning adapter to trainable when loading pretrained adapter (the %s file holds "
                      "the encoded prompt_embeddings, not the encoder).", dir, cfg->method->peft_type);
    if (st == CP_OK) cfg->inference_mode = !trainable;
    if (st == CP_OK) st = cp_st_open(&file, w_path);
    if (st == CP_OK && (st = check_header(m, cfg, &file, w_path)) != CP_OK && !strstr(cp_last_error(), w_path))
        cp_error_context("%s", dir);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, 0);
        st = cp_peft_add(m, name, cfg, &rng, activate, trainable);
        if (st != CP_OK) cp_error_context("%s", dir);
        added = st == CP_OK;
    }
    /* the adapter's own tensors (all required), then the model's weights under PEFT's names (any
     * the file holds is loaded, as PEFT's load_state_dict(strict=False) does: the embedding layers
     * of save_embedding_layers, whichever way the adapter was saved) */
    int n_required = 0;
    if (st == CP_OK && (st = adapter_entries(m, name, &l, 0)) == CP_OK) {
        n_required = l.n;
        state_ctx c = {m, name, &l};
        cp_module_visit(m->root, visit_state, &c);
        if (l.failed) st = CP_ERR;
    }
    if (st == CP_OK) {
        cp_strbuf missing;
        cp_sb_init(&missing);
        int n_missing = 0;
        for (int i = 0; i < n_required && st == CP_OK; i++) {
            const cp_st_tensor *t = cp_st_find(&file, l.list[i].key);
            if (!t) {
                if (n_missing++ < 10) cp_sb_printf(&missing, "\n    %s", l.list[i].key);
                continue;
            }
            st = load_tensor(m, &l.list[i], t, w_path);
        }
        if (st == CP_OK && n_missing) st = missing_error(w_path, &missing, n_missing);
        else cp_sb_free(&missing);
        int unexpected = 0;
        for (int i = 0; i < file.n_tensors && st == CP_OK; i++) {
            const adapter_entry *e = find_entry(&l, file.tensors[i].name);
            if (e && e - l.list < n_required) continue;
            if (e && e->module) st = load_tensor(m, e, &file.tensors[i], w_path);
            else if (e) continue; /* "<wrapper>.modules_to_save.<p>": PEFT writes it and ignores it on load */
            else if (unexpected++ < 5) cp_warn("%s: tensor \"%s\" is not used by this model", w_path, file.tensors[i].name);
        }
    }
    if (st != CP_OK && added) cp_peft_delete_adapter(m, name);
    free_entries(&l);
    cp_st_close(&file);
    cp_peft_config_free(cfg);
    cp_free(cfg_path);
    cp_free(w_path);
    return st;
}

/* ---- merged checkpoints ----------------------------------------------------------------------- */

typedef struct { const cp_model *m; const cp_param *target; const cp_module *found; } owner_ctx;

static int visit_owner(cp_module *mod, void *vctx) {
    owner_ctx *c = vctx;
    if (mod->weight && cp_peft_original_param(c->m, mod, 0) == c->target) { c->found = mod; return 1; }
    return 0;
}

typedef struct {
    cp_st_write_tensor *list;
    float **owned;
    int n, cap, failed;
    const cp_model *m;
    const cp_module *input_emb; /* the module whose weight a tied lm_head shares, or NULL */
    int untied_head;            /* the merged head no longer reads the input embedding's weight */
} merged_ctx;

/* Room for one more tensor in c's list; nonzero (and c->failed) when out of memory. */
static int collect_grow(merged_ctx *c) {
    if (c->n < c->cap) return 0;
    int cap = c->cap ? 2 * c->cap : 64;
    cp_st_write_tensor *l = cp_realloc(c->list, (size_t)cap * sizeof *l, "checkpoint tensors");
    float **o = cp_realloc(c->owned, (size_t)cap * sizeof *o, "checkpoint buffers");
    if (l) c->list = l;
    if (o) c->owned = o;
    if (!l || !o) { c->failed = 1; return 1; }
    c->cap = cap;
    return 0;
}

/* Writes every weight of the merged model under its original name (a modules_to_save copy in
 * place of its original). A head tied to the input embedding is left out (transformers ties it
 * again) while it still reads the embedding's weight; when a modules_to_save copy took the place
 * of either, the two differ: the head is written and the model untied, as PEFT's merge_and_unload
 * sets tie_word_embeddings=False when the embeddings' data pointers differ. */
static int collect_merged(cp_module *mod, void *vctx) {
    merged_ctx *c = vctx;
    for (int slot = 0; slot < 2; slot++) {
        cp_param *p = slot ? mod->bias : mod->weight;
        if (!p) continue;
        const cp_param *orig = cp_peft_original_param(c->m, mod, slot);
        const char *name = orig->name;
        if (orig->tied_to) {
            /* the module holding the weight this one is tied to (an encoder-decoder's embed_tokens are tied to
             * `shared` as well as its head) */
            const cp_module *owner = c->input_emb;
            if (!owner || cp_peft_original_param(c->m, owner, 0) != orig->tied_to) {
                owner_ctx o = {c->m, orig->tied_to, NULL};
                cp_module_visit(c->m->root, visit_owner, &o);
                owner = o.found;
            }
            const cp_param *emb = owner ? owner->weight : NULL;
            if (emb && cp_param_same_values(p, emb)) continue; /* still tied: saved once, as transformers does */
            c->untied_head = 1;
        }
        if (collect_grow(c)) return 1;
        cp_st_write_tensor *t = &c->list[c->n];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->dtype = p->source_dtype;
        t->ndim = p->ndim;
        t->shape[0] = p->shape[0];
        t->shape[1] = p->shape[1];
        c->owned[c->n] = NULL;
        if (t->dtype == CP_F32 && p->data) t->data = p->data;
        else if (!p->data && t->dtype == p->stored_dtype) t->data = p->stored; /* untouched: written as read */
        else {
            float *buf = cp_malloc((size_t)cp_dtype_nbytes(t->dtype, p->numel), name);
            if (!buf) { c->failed = 1; return 1; }
            cp_param_export(p, t->dtype, buf);
            t->data = buf;
            c->owned[c->n] = buf;
        }
        c->n++;
    }
    return 0;
}

cp_status cp_model_save_merged(cp_model *m, const char *out_dir) {
    if (cp_path_exists(out_dir)) return cp_error("%s: already exists; choose a new output directory", out_dir);
    if (cp_peft_merge(m) != CP_OK) return CP_ERR;
    merged_ctx c = {.m = m};
    const cp_param *head = m->lm_head && m->lm_head->weight ? cp_peft_original_param(m, m->lm_head, 0) : NULL;
    if (head && head->tied_to) {
        owner_ctx o = {m, head->tied_to, NULL};
        cp_module_visit(m->root, visit_owner, &o);
        c.input_emb = o.found;
    }
    cp_module_visit(m->root, collect_merged, &c);
    if (!c.failed && m->logits_bias) { /* the architecture's (1,V) logits buffer (BART's final_logits_bias), in f32 */
        if (!collect_grow(&c)) {
            c.list[c.n] = (cp_st_write_tensor){.name = m->arch->logits_bias, .dtype = CP_F32, .ndim = 2,
                                            .shape = {1, m->config.vocab_size}, .data = m->logits_bias};
            c.owned[c.n++] = NULL;
        }
    }
    cp_status st = c.failed ? CP_ERR : CP_OK;

    /* config.json: the base config, untied when a modules_to_save copy split the tied head */
    char *cfg_src = cp_path_join(m->dir, "config.json"), *cfg_text = NULL;
    size_t cfg_len = 0;
    if (st == CP_OK) st = cp_read_file(cfg_src, &cfg_text, &cfg_len);
    if (st == CP_OK && c.untied_head) {
        cJSON *root;
        if ((st = cp_json_parse(cfg_text, cfg_len, cfg_src, &root)) == CP_OK) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "tie_word_embeddings");
            cJSON_AddFalseToObject(root, "tie_word_embeddings");
            cp_free(cfg_text);
            char *pretty = cJSON_Print(root);
            cfg_text = pretty ? cp_strdup(pretty) : NULL;
            cJSON_free(pretty);
            cJSON_Delete(root);
            if (!cfg_text) st = CP_ERR;
            else cfg_len = strlen(cfg_text);
        }
    }
    char *staging = NULL;
    if (st == CP_OK) st = cp_dir_begin(out_dir, &staging);
    if (st == CP_OK) {
        char *p = cp_path_join(staging, "config.json");
        st = p ? cp_write_file_atomic(p, cfg_text, cfg_len) : CP_ERR;
        cp_free(p);
    }
    if (st == CP_OK) {
        char *p = cp_path_join(staging, "model.safetensors");
        const char *mk[] = {"format"}, *mv[] = {"pt"};
        st = p ? cp_st_write(p, c.list, c.n, mk, mv, 1) : CP_ERR;
        cp_free(p);
    }
    static const char *const extras[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                         "special_tokens_map.json", "vocab.json", "merges.txt", "vocab.txt",
                                         "added_tokens.json", "tokenizer.model"};
    for (size_t i = 0; st == CP_OK && i < sizeof extras / sizeof *extras; i++) {
        char *src = cp_path_join(m->dir, extras[i]), *dst = cp_path_join(staging, extras[i]);
        if (src && dst && cp_path_exists(src)) st = cp_copy_file(src, dst);
        cp_free(src);
        cp_free(dst);
    }
    if (staging) {
        if (st == CP_OK) st = cp_dir_commit(&staging, out_dir);
        else cp_dir_abort(&staging);
    }
    for (int i = 0; i < c.n; i++) cp_free(c.owned[i]);
    cp_free(c.owned);
    cp_free(c.list);
    cp_free(cfg_text);
    cp_free(cfg_src);
    return st;
}

cp_status cp_adapter_spec_parse(const char *spec, char **dir, char **name, double *weight) {
    *dir = *name = NULL;
    *weight = 1.0;
    char *copy = cp_strdup(spec);
    if (!copy) return CP_ERR;
    char *c1 = strchr(copy, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1) *c1 = '\0';
    if (c2) *c2 = '\0';
    if (!copy[0]) { cp_free(copy); return cp_error("--adapter \"%s\": expected DIR[:NAME[:WEIGHT]]", spec); }
    if (c2) {
        char *end;
        *weight = strtod(c2 + 1, &end);
        if (end == c2 + 1 || *end) { cp_free(copy); return cp_error("--adapter \"%s\": WEIGHT \"%s\" is not a number", spec, c2 + 1); }
    }
    *dir = cp_strdup(copy);
    *name = cp_strdup(c1 && c1[1] ? c1 + 1 : "");
    cp_free(copy);
    if (!*dir || !*name) { cp_free(*dir); cp_free(*name); return CP_ERR; }
    return CP_OK;
}
