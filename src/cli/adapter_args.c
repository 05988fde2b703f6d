/*
 * adapter_args.c — loading the --adapter options; see adapter_args.h.
 */
#include "cli/adapter_args.h"
#include "core/alloc.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <stdio.h>
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

cp_model *cli_load_model(const char *cmd, const char *dir, int flags, char *const *specs, int n) {
    cp_model *m = NULL;
    if (cp_model_load(&m, dir, flags) != CP_OK || cli_load_adapters(m, specs, n) != CP_OK) {
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
