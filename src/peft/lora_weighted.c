/*
 * lora_weighted.c — PEFT's add_weighted_adapter for LoRA adapters, "linear" and "cat" combinations
 * (reference/peft.md §6.7): a new adapter built from existing ones. The LoRA method's add_weighted
 * (weighted.c dispatches to it).
 *
 *   cat:    A = [w₁s₁A₁; w₂s₂A₂; …] (rows), B = [B₁ B₂ …] (columns) ⇒ BA = Σ wᵢsᵢBᵢAᵢ exactly;
 *           rank Σrᵢ.
 *   linear: A = Σ sign(wᵢsᵢ)·√|wᵢsᵢ|·Aᵢ, B = Σ √|wᵢsᵢ|·Bᵢ (same rank for all), so BA carries PEFT's
 *           cross terms BᵢAⱼ — it equals Σ wᵢsᵢBᵢAᵢ only for one adapter.
 * The new config copies the first adapter's with r = lora_alpha = the new rank (scaling 1; with
 * use_rslora inherited the scaling is √rank, as PEFT does), target_modules the union.
 */
#include "peft/lora.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_model.h"

#include <math.h>
#include <string.h>

static cp_status union_targets(cp_lora_config *dst, const cp_lora_config *const *src, int n) {
    int any_regex = 0, any_list = 0;
    for (int i = 0; i < n; i++) {
        any_regex |= src[i]->target_kind == CP_TARGETS_REGEX;
        any_list |= src[i]->target_kind != CP_TARGETS_REGEX;
    }
    if (any_regex && any_list)
        return cp_error("all adapters must be of the same type of target_modules (all lists or all regex strings) to combine them");
    for (int i = 0; i < dst->n_target_modules; i++) cp_free(dst->target_modules[i]);
    cp_free(dst->target_modules);
    cp_free(dst->target_regex);
    dst->target_modules = NULL;
    dst->n_target_modules = 0;
    dst->target_regex = NULL;
    if (any_regex) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        for (int i = 0; i < n; i++) cp_sb_printf(&sb, "%s(%s)", i ? "|" : "", src[i]->target_regex);
        dst->target_regex = cp_sb_finish(&sb);
        dst->target_kind = CP_TARGETS_REGEX;
        return dst->target_regex ? CP_OK : CP_ERR;
    }
    /* default / all-linear sources contribute the modules they actually adapted: handled by the
     * caller listing module names; here only explicit lists are merged */
    dst->target_kind = CP_TARGETS_LIST;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < src[i]->n_target_modules; k++) {
            int seen = 0;
            for (int j = 0; j < dst->n_target_modules && !seen; j++) seen = !strcmp(dst->target_modules[j], src[i]->target_modules[k]);
            if (seen) continue;
            char **l = cp_realloc(dst->target_modules, (size_t)(dst->n_target_modules + 1) * sizeof *l, "targets");
            if (!l) return CP_ERR;
            dst->target_modules = l;
            dst->target_modules[dst->n_target_modules++] = cp_strdup(src[i]->target_modules[k]);
        }
    return CP_OK;
}

/* Lists the full module names an adapter was injected into (for default / all-linear configs). */
static cp_status add_module_names(cp_model *m, const char *name, cp_lora_config *dst) {
    cp_module **mods;
    int n;
    if (cp_peft_adapter_modules(m, name, &mods, &n) != CP_OK) return CP_ERR;
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int j = 0; j < dst->n_target_modules && !seen; j++) seen = !strcmp(dst->target_modules[j], mods[i]->path);
        if (seen) continue;
        char **l = cp_realloc(dst->target_modules, (size_t)(dst->n_target_modules + 1) * sizeof *l, "targets");
        if (!l) { cp_free(mods); return CP_ERR; }
        dst->target_modules = l;
        dst->target_modules[dst->n_target_modules++] = cp_strdup(mods[i]->path);
    }
    cp_free(mods);
    return CP_OK;
}

cp_status cp_lora_add_weighted(cp_model *m, const char *const *names, const double *weights, int n, const char *new_name,
                               cp_combination combination) {
    const cp_lora_config *cfgs[64];
    if (n > 64) return cp_error("add_weighted_adapter: at most 64 adapters");
    for (int i = 0; i < n; i++) {
        const cp_peft_adapter *a = cp_peft_find_adapter(m, names[i]);
        if (!a || a->config->method != &cp_lora_method) return cp_error("Adapter %s is not a LoRA adapter", names[i]);
        cfgs[i] = (const cp_lora_config *)a->config;
    }
    if (n == 1) combination = CP_COMBINE_LINEAR; /* PEFT forces linear for a single adapter */
    int64_t new_rank = 0;
    for (int i = 0; i < n; i++) {
        int64_t r = cfgs[i]->r;
        for (int k = 0; k < cfgs[i]->n_rank_pattern; k++) r = (int64_t)fmax((double)r, cfgs[i]->rank_pattern[k].value);
        if (combination == CP_COMBINE_CAT) new_rank += r;
        else if (i == 0) new_rank = r;
        else if (r != new_rank)
            return cp_error("All adapters must have the same r value when using combination_type linear, ties, dare_ties or "
                            "dare_linear.");
    }
    cp_lora_config cfg;
    if (cp_lora_config_copy(&cfg, cfgs[0]) != CP_OK) return CP_ERR;
    cfg.r = new_rank;
    cfg.lora_alpha = (double)new_rank;
    cfg.lora_alpha_is_int = 1;
    for (int k = 0; k < cfg.n_rank_pattern; k++) cp_free(cfg.rank_pattern[k].pattern);
    for (int k = 0; k < cfg.n_alpha_pattern; k++) cp_free(cfg.alpha_pattern[k].pattern);
    cp_free(cfg.rank_pattern);
    cp_free(cfg.alpha_pattern);
    cfg.rank_pattern = cfg.alpha_pattern = NULL;
    cfg.n_rank_pattern = cfg.n_alpha_pattern = 0;
    cp_status st = union_targets(&cfg, cfgs, n);
    for (int i = 0; st == CP_OK && i < n; i++)
        if (cfgs[i]->target_kind == CP_TARGETS_DEFAULT || cfgs[i]->target_kind == CP_TARGETS_ALL_LINEAR)
            st = add_module_names(m, names[i], &cfg);
    /* layers_to_transform applied to the sources already; the union is of concrete names */
    cp_free(cfg.layers_to_transform);
    cfg.layers_to_transform = NULL;
    cfg.n_layers_to_transform = 0;
    for (int k = 0; k < cfg.n_layers_pattern; k++) cp_free(cfg.layers_pattern[k]);
    cp_free(cfg.layers_pattern);
    cfg.layers_pattern = NULL;
    cfg.n_layers_pattern = 0;
    if (st == CP_OK) {
        /* list entries of the sources may be short suffixes; make them the exact modules used */
        for (int i = 0; st == CP_OK && i < n; i++)
            if (cfgs[i]->target_kind == CP_TARGETS_LIST && cfgs[i]->layers_to_transform) st = add_module_names(m, names[i], &cfg);
    }
    cp_rng rng;
    cp_rng_seed(&rng, 0);
    if (st == CP_OK) st = cp_peft_add_adapter(m, new_name, &cfg, &rng, 0, 1);
    cp_lora_config_free(&cfg);
    if (st != CP_OK) return CP_ERR;

    cp_module **mods;
    int n_mods;
    if (cp_peft_adapter_modules(m, new_name, &mods, &n_mods) != CP_OK) return CP_ERR;
    for (int t = 0; t < n_mods; t++) {
        cp_module *mod = mods[t];
        cp_lora_adapter *dst = cp_lora_find(mod, new_name);
        float *A = dst->A->data, *B = dst->B->data;
        const int64_t in = mod->in_features, out = mod->out_features, R = dst->r;
        memset(A, 0, (size_t)dst->A->numel * sizeof *A);
        memset(B, 0, (size_t)dst->B->numel * sizeof *B);
        int64_t offset = 0;
        int found = 0;
        for (int i = 0; i < n; i++) {
            const cp_lora_adapter *src = cp_lora_find(mod, names[i]);
            if (!src) continue;
            found = 1;
            const int64_t r = src->r;
            const double ws = weights[i] * src->scaling;
            if (combination == CP_COMBINE_CAT) {
                // A rows [offset, offset + r) = (A_src·w)·s in f32, as PyTorch evaluates it; B columns = B_src
                const float wf = (float)weights[i], sf = (float)src->scaling;
                for (int64_t k = 0; k < r; k++)
                    for (int64_t j = 0; j < in; j++) A[(offset + k) * in + j] = (src->A->data[k * in + j] * wf) * sf;
                for (int64_t o = 0; o < out; o++)
                    for (int64_t k = 0; k < r; k++) B[o * R + offset + k] = src->B->data[o * r + k];
                offset += r;
            } else {
                /* coefficients in double, stored as a float32 tensor; products and the sum in f32 */
                const float ca = (float)((ws < 0 ? -1.0 : 1.0) * sqrt(fabs(ws))), cb = (float)sqrt(fabs(ws));
                for (int64_t k = 0; k < r * in; k++) A[k] += src->A->data[k] * ca;
                for (int64_t k = 0; k < out * r; k++) B[k] += src->B->data[k] * cb;
            }
        }
        if (!found) { cp_free(mods); return cp_error("No matching LoRAs found for %s", mod->path); }
    }
    cp_free(mods);
    return CP_OK;
}
