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
#include "peft/peft_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEFT_PREFIX "base_model.model."

/* ---- the tensors of one adapter, with their file keys ----------------------------------------- */

typedef struct {
    char *key;          /* key in adapter_model.safetensors */
    cp_param *param;    /* where the values live in the model */
    cp_module *module;  /* bias entries: the module whose bias it is */
} adapter_entry;

typedef struct { adapter_entry *list; int n, cap; int failed; } entry_list;

static void add_entry(entry_list *l, char *key, cp_param *p, cp_module *mod) {
    if (!key) { l->failed = 1; return; }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        adapter_entry *e = cp_realloc(l->list, (size_t)cap * sizeof *e, "adapter tensors");
        if (!e) { cp_free(key); l->failed = 1; return; }
        l->list = e;
        l->cap = cap;
    }
    l->list[l->n++] = (adapter_entry){key, p, mod};
}

static char *keyf(const char *fmt, const char *a, const char *b) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, fmt, a, b);
    return cp_sb_finish(&sb);
}

typedef struct { cp_model *m; const char *name; const cp_peft_adapter *ad; entry_list *l; int save_embeddings; } entries_ctx;

static int visit_entries(cp_module *mod, void *vctx) {
    entries_ctx *c = vctx;
    cp_lora_adapter *a = cp_lora_find(mod, c->name);
    if (a) {
        int emb = mod->kind == CP_MOD_EMBEDDING;
        add_entry(c->l, keyf(emb ? PEFT_PREFIX "%s.lora_embedding_A%s" : PEFT_PREFIX "%s.lora_A.weight%s", mod->path, ""), a->A, NULL);
        add_entry(c->l, keyf(emb ? PEFT_PREFIX "%s.lora_embedding_B%s" : PEFT_PREFIX "%s.lora_B.weight%s", mod->path, ""), a->B, NULL);
    }
    cp_lora_bias mode = c->ad->config.bias;
    if (mod->bias && !mod->saved && (mode == CP_LORA_BIAS_ALL || (mode == CP_LORA_BIAS_LORA_ONLY && mod->lora)))
        add_entry(c->l, keyf(mod->lora ? PEFT_PREFIX "%s.base_layer.bias%s" : PEFT_PREFIX "%s.bias%s", mod->path, ""),
                  mod->bias, mod);
    if (c->save_embeddings) {
        /* save_embedding_layers="auto" with "lm_head" / "embed_tokens" targeted: the full weight */
        const char *leaf = strrchr(mod->path, '.');
        leaf = leaf ? leaf + 1 : mod->path;
        if ((mod->kind == CP_MOD_LINEAR || mod->kind == CP_MOD_EMBEDDING) && (!strcmp(leaf, "lm_head") || !strcmp(leaf, "embed_tokens")))
            add_entry(c->l, keyf(mod->lora ? PEFT_PREFIX "%s.base_layer.weight%s" : PEFT_PREFIX "%s.weight%s", mod->path, ""),
                      mod->weight, mod);
    }
    if (mod->saved) {
        cp_saved_module *s = mod->saved;
        for (int k = 0; k < s->n_adapters; k++) {
            if (strcmp(s->adapters[k], c->name)) continue;
            for (int p = 0; p < s->n_params; p++)
                add_entry(c->l, keyf(PEFT_PREFIX "%s.%s", mod->path, s->params[p].local_name), s->params[p].copies[k], NULL);
        }
        return 0;
    }
    return 0;
}

static cp_status adapter_entries(cp_model *m, const char *name, entry_list *l) {
    memset(l, 0, sizeof *l);
    const cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return cp_error("adapter \"%s\" does not exist", name);
    entries_ctx c = {m, name, ad, l, 0};
    /* PEFT's save_embedding_layers="auto": on when a literal "lm_head" / "embed_tokens" is targeted */
    for (int i = 0; ad->config.target_kind == CP_TARGETS_LIST && i < ad->config.n_target_modules; i++)
        if (!strcmp(ad->config.target_modules[i], "lm_head") || !strcmp(ad->config.target_modules[i], "embed_tokens"))
            c.save_embeddings = 1;
    cp_module_visit(m->root, visit_entries, &c);
    if (l->failed) return CP_ERR;
    return CP_OK;
}

static void free_entries(entry_list *l) {
    for (int i = 0; i < l->n; i++) cp_free(l->list[i].key);
    cp_free(l->list);
}

cp_param *cp_adapter_find_param(cp_model *m, const char *name, const char *key) {
    entry_list l;
    cp_param *found = NULL;
    if (adapter_entries(m, name, &l) == CP_OK)
        for (int i = 0; i < l.n && !found; i++)
            if (!strcmp(l.list[i].key, key)) found = l.list[i].param;
    free_entries(&l);
    return found;
}

/* ---- saving ----------------------------------------------------------------------------------- */

cp_status cp_adapter_save(cp_model *m, const char *name, const char *dir) {
    cp_peft_adapter *ad = cp_peft_find_adapter(m, name);
    if (!ad) return cp_error("adapter \"%s\" does not exist", name);
    entry_list l;
    if (adapter_entries(m, name, &l) != CP_OK) { free_entries(&l); return CP_ERR; }
    cp_st_write_tensor *t = cp_calloc((size_t)(l.n ? l.n : 1), sizeof *t, "the adapter tensors");
    if (!t) { free_entries(&l); return CP_ERR; }
    for (int i = 0; i < l.n; i++) {
        t[i].name = l.list[i].key;
        t[i].dtype = CP_F32;
        t[i].ndim = l.list[i].param->ndim;
        t[i].shape[0] = l.list[i].param->shape[0];
        t[i].shape[1] = l.list[i].param->shape[1];
        t[i].data = l.list[i].param->data;
    }
    cp_lora_config cfg;
    cp_lora_config_copy(&cfg, &ad->config);
    if (!cfg.base_model_name_or_path) cfg.base_model_name_or_path = cp_strdup(m->dir);
    char *json = cp_lora_config_to_json(&cfg);
    cp_lora_config_free(&cfg);

    char *staging = NULL;
    cp_status st = json ? cp_dir_begin(dir, &staging) : CP_ERR;
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
    cp_free(t);
    free_entries(&l);
    return st;
}

/* ---- loading ---------------------------------------------------------------------------------- */

cp_status cp_adapter_load(cp_model *m, const char *dir, const char *name, int activate, int trainable) {
    if (!cp_is_dir(dir)) return cp_error("%s: adapter directory does not exist", dir);
    char *cfg_path = cp_path_join(dir, "adapter_config.json");
    char *w_path = cp_path_join(dir, "adapter_model.safetensors");
    if (!cfg_path || !w_path) { cp_free(cfg_path); cp_free(w_path); return CP_ERR; }
    cp_status st = CP_OK;
    cp_lora_config cfg;
    cp_lora_config_init(&cfg);
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
    if (st == CP_OK) st = cp_lora_config_load(&cfg, cfg_path);
    if (st == CP_OK) st = cp_st_open(&file, w_path);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, 0);
        st = cp_peft_add_adapter(m, name, &cfg, &rng, activate, trainable);
        if (st != CP_OK) cp_error_context("%s", dir);
        added = st == CP_OK;
    }
    if (st == CP_OK) st = adapter_entries(m, name, &l);
    if (st == CP_OK) {
        cp_strbuf missing;
        cp_sb_init(&missing);
        int n_missing = 0;
        for (int i = 0; i < l.n && st == CP_OK; i++) {
            const cp_st_tensor *t = cp_st_find(&file, l.list[i].key);
            cp_param *p = l.list[i].param;
            if (!t) {
                if (n_missing++ < 10) cp_sb_printf(&missing, "\n    %s", l.list[i].key);
                continue;
            }
            int same = t->ndim == p->ndim && t->shape[0] == p->shape[0] && (p->ndim < 2 || t->shape[1] == p->shape[1]);
            if (!same) {
                char got[64] = "[";
                for (int d = 0; d < t->ndim; d++)
                    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
                strncat(got, "]", sizeof got - strlen(got) - 1);
                st = cp_error("%s: tensor \"%s\" has shape %s but the model needs [%lld%s%lld] — was this adapter made for "
                              "another base model?",
                              w_path, l.list[i].key, got, (long long)p->shape[0], p->ndim > 1 ? ", " : "",
                              p->ndim > 1 ? (long long)p->shape[1] : 0LL);
                break;
            }
            if (!cp_dtype_is_loadable_float(t->dtype)) {
                st = cp_error("%s: tensor \"%s\" has dtype %s (expected F32, F16 or BF16)", w_path, l.list[i].key,
                              cp_dtype_name(t->dtype));
                break;
            }
            if (l.list[i].module && (st = cp_param_make_writable(m, p)) != CP_OK) break;
            cp_convert_to_f32(p->data, t->data, t->dtype, (size_t)p->numel);
        }
        if (st == CP_OK && n_missing) {
            char *msg = cp_sb_finish(&missing);
            st = cp_error("%s: %d tensor%s the adapter config implies %s missing from the file (was it made for another "
                          "base model?):%s%s",
                          w_path, n_missing, n_missing > 1 ? "s" : "", n_missing > 1 ? "are" : "is", msg ? msg : "",
                          n_missing > 10 ? "\n    ..." : "");
            cp_free(msg);
        } else {
            cp_sb_free(&missing);
        }
        if (st == CP_OK) {
            int unexpected = 0;
            for (int i = 0; i < file.n_tensors; i++) {
                int found = 0;
                for (int k = 0; k < l.n && !found; k++) found = !strcmp(l.list[k].key, file.tensors[i].name);
                if (!found && unexpected++ < 5) cp_warn("%s: tensor \"%s\" is not used by this model", w_path, file.tensors[i].name);
            }
        }
    }
    if (st != CP_OK && added) cp_peft_delete_adapter(m, name);
    free_entries(&l);
    cp_st_close(&file);
    cp_lora_config_free(&cfg);
    cp_free(cfg_path);
    cp_free(w_path);
    return st;
}

/* ---- merged checkpoints ----------------------------------------------------------------------- */

typedef struct { cp_st_write_tensor *list; float **owned; int n, cap, failed; const cp_model *m; int untied_head; } merged_ctx;

static int collect_merged(cp_module *mod, void *vctx) {
    merged_ctx *c = vctx;
    for (int slot = 0; slot < 2; slot++) {
        cp_param *p = slot ? mod->bias : mod->weight;
        if (!p) continue;
        const char *name = p->name;
        /* modules_to_save: the active copy is written under the original's name */
        for (int w = 0; c->m->peft && w < c->m->peft->n_saved; w++) {
            const cp_saved_module *s = c->m->peft->saved[w];
            for (int i = 0; i < s->n_params; i++)
                if (s->params[i].module == mod && s->params[i].is_bias == slot) name = s->params[i].original->name;
        }
        if (p->tied_to && p->data == p->tied_to->data) continue; /* tied: saved once, as transformers does */
        if (p->tied_to) c->untied_head = 1;
        if (c->n == c->cap) {
            int cap = c->cap ? 2 * c->cap : 64;
            cp_st_write_tensor *l = cp_realloc(c->list, (size_t)cap * sizeof *l, "checkpoint tensors");
            float **o = cp_realloc(c->owned, (size_t)cap * sizeof *o, "checkpoint buffers");
            if (!l || !o) { c->failed = 1; return 1; }
            c->list = l;
            c->owned = o;
            c->cap = cap;
        }
        cp_st_write_tensor *t = &c->list[c->n];
        memset(t, 0, sizeof *t);
        t->name = name;
        t->dtype = p->source_dtype;
        t->ndim = p->ndim;
        t->shape[0] = p->shape[0];
        t->shape[1] = p->shape[1];
        c->owned[c->n] = NULL;
        if (t->dtype == CP_F32) t->data = p->data;
        else {
            float *buf = cp_malloc((size_t)p->numel * 2, name);
            if (!buf) { c->failed = 1; return 1; }
            cp_convert_from_f32(buf, t->dtype, p->data, (size_t)p->numel);
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
    cp_module_visit(m->root, collect_merged, &c);
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
