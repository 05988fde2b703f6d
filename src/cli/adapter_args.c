/*
 * adapter_args.c — loading the --adapter options; see adapter_args.h.
 */
#include "cli/adapter_args.h"
#include "convert/gguf_load.h"
#include "core/alloc.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cp_status cli_load_adapters(cp_model *m, char *const *specs, int n) {
    if (n == 0) return CP_OK;
    char **names = cp_calloc((size_t)n, sizeof *names, "adapter names");
    if (!names) return CP_ERR;
    cp_status st = CP_OK;
    for (int i = 0; i < n && st == CP_OK; i++) {
        char *dir, *name;
        double weight;
        if ((st = cp_adapter_spec_parse(specs[i], &dir, &name, &weight)) != CP_OK) break;
        if (!name[0]) {
            cp_free(name);
            const char *base = strrchr(dir, '/');
            while (base && !base[1] && base > dir) { /* trailing slash */
                const char *prev = base - 1;
                while (prev > dir && *prev != '/') prev--;
                base = prev;
            }
            name = cp_strdup(i == 0 ? "default" : (base && *base == '/' ? base + 1 : dir));
            if (name) { char *slash = strchr(name, '/'); if (slash) *slash = '\0'; }
        }
        names[i] = name;
        st = cp_adapter_load(m, dir, name, 0, 0);
        if (st == CP_OK && weight != 1.0) st = cp_peft_scale_adapter(m, name, weight);
        cp_free(dir);
    }
    if (st == CP_OK) st = cp_peft_set_active(m, (const char *const *)names, n);
    for (int i = 0; i < n; i++) cp_free(names[i]);
    cp_free(names);
    return st;
}

cp_status cli_model_load_task(cp_model **out, const char *path, int flags, const char *task_type) {
    if (!cp_path_is_gguf(path)) return cp_model_load_task(out, path, flags, task_type);
    const char *deq = getenv("CPEFT_GGUF_DEQUANTIZE");
    if (deq && deq[0] && strcmp(deq, "0")) flags |= CP_LOAD_GGUF_DEQUANTIZE;
    return cp_model_load_gguf(out, path, flags, task_type);
}

cp_status cli_tokenizer_load(cp_tokenizer **out, const char *path) {
    return cp_path_is_gguf(path) ? cp_tokenizer_load_gguf(out, path) : cp_tokenizer_load_dir(out, path);
}

cp_model *cli_load_model(const char *cmd, const char *dir, int flags, char *const *specs, int n) {
    cp_model *m = NULL;
    if (cli_model_load_task(&m, dir, flags, NULL) != CP_OK || cli_load_adapters(m, specs, n) != CP_OK) {
        fprintf(stderr, "cpeft %s: %s\n", cmd, cp_last_error());
        if (m) cp_model_free(m);
        return NULL;
    }
    return m;
}

int cli_quantize_flags(const char *cmd, const char *type, int *flags) {
    int f;
    if (!type) return 0;
    if (cp_quantize_flag(type, &f) != CP_OK) {
        fprintf(stderr, "cpeft %s: %s\n", cmd, cp_last_error());
        return 2;
    }
    *flags |= f;
    return 0;
}
