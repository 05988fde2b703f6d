/*
 * api.c — the public PEFT functions of include/cpeft.h: thin, checked wrappers over
 * peft_model.c, adapter_io.c and weighted.c.
 */
#include "cpeft.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "peft/adapter_io.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "peft/weighted.h"

#include <stdio.h>
#include <string.h>

cp_status cp_model_add_adapter(cp_model *m, const char *name, const char *adapter_config_path, uint64_t seed) {
    cp_peft_config *cfg;
    if (cp_peft_config_load(adapter_config_path, &cfg) != CP_OK) return CP_ERR;
    cp_rng rng;
    cp_rng_seed(&rng, seed);
    /* as get_peft_model / add_adapter: inference_mode freezes the adapter (set_adapter(...,
     * inference_mode=True) in BaseTuner.inject_adapter) */
    cp_status st = cp_peft_add(m, name ? name : "default", cfg, &rng, 0, !cfg->inference_mode);
    cp_peft_config_free(cfg);
    return st;
}

cp_status cp_model_load_adapter(cp_model *m, const char *dir, const char *name, int is_trainable) {
    return cp_adapter_load(m, dir, name ? name : "default", 0, is_trainable);
}

cp_status cp_model_save_adapter(cp_model *m, const char *name, const char *dir) {
    return cp_adapter_save(m, name ? name : "default", dir);
}

cp_status cp_model_set_adapters(cp_model *m, const char *const *names, int n) { return cp_peft_set_active(m, names, n); }
void cp_model_disable_adapters(cp_model *m, int disabled) { cp_peft_set_disabled(m, disabled); }
cp_status cp_model_delete_adapter(cp_model *m, const char *name) { return cp_peft_delete_adapter(m, name); }
cp_status cp_model_merge_adapters(cp_model *m) { return cp_peft_merge(m); }
cp_status cp_model_unmerge_adapters(cp_model *m) { return cp_peft_unmerge(m); }

cp_status cp_model_add_weighted_adapter(cp_model *m, const char *const *names, const double *weights, int n,
                                        const char *new_name, const char *combination_type) {
    cp_combination c;
    if (!strcmp(combination_type, "linear")) c = CP_COMBINE_LINEAR;
    else if (!strcmp(combination_type, "cat")) c = CP_COMBINE_CAT;
    else
        return cp_error("combination_type \"%s\" is not supported yet by cpeft (supported: linear, cat; PEFT also has svd, "
                        "ties, dare_linear, dare_ties, magnitude_prune)", combination_type);
    return cp_peft_add_weighted_adapter(m, names, weights, n, new_name, c);
}

void cp_model_trainable_parameters(const cp_model *m, int64_t *trainable, int64_t *all) { cp_peft_count(m, trainable, all); }

/* 1234567 -> "1,234,567" (Python's {:,d}) */
static void thousands(char *buf, size_t n, int64_t v) {
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)v);
    size_t len = strlen(digits), k = 0;
    for (size_t i = 0; i < len && k + 2 < n; i++) {
        if (i && (len - i) % 3 == 0 && digits[0] != '-') buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
}

char *cp_model_trainable_parameters_line(const cp_model *m, cp_peft_line_style style) {
    int64_t trainable, all;
    cp_peft_count(m, &trainable, &all);
    double pct = all ? 100.0 * (double)trainable / (double)all : 0.0;
    char buf[256], a[40], b[40], f[40];
    if (style == CP_PEFT_LINE_CURRENT) {
        thousands(a, sizeof a, trainable);
        thousands(b, sizeof b, all);
        snprintf(buf, sizeof buf, "trainable params: %s || all params: %s || trainable%%: %.4f", a, b, pct);
    } else {
        snprintf(buf, sizeof buf, "trainable params: %lld || all params: %lld || trainable%%: %s", (long long)trainable,
                 (long long)all, cp_py_float_repr(pct, f, sizeof f));
    }
    return cp_strdup(buf);
}

char *cp_peft_adapter_params_line(const cp_model *m, const char *name, cp_peft_line_style style) {
    int64_t n = cp_peft_adapter_num_params(m, name);
    char num[40], buf[200];
    if (style == CP_PEFT_LINE_CURRENT) thousands(num, sizeof num, n);
    else snprintf(num, sizeof num, "%lld", (long long)n);
    snprintf(buf, sizeof buf, "adapter params: %s (the adapter's own parameters: trainable when loaded with is_trainable=True)",
             num);
    return cp_strdup(buf);
}
