/*
 * gguf_names.c — finding an architecture's GGUF name table and a tensor in it; see gguf_names.h.
 * The tables belong to the architectures (cp_arch.gguf_names).
 */
#include "models/gguf_names.h"
#include "models/arch.h"

#include <stdio.h>
#include <string.h>

const cp_arch *cp_gguf_arch_find(const char *gguf_arch) {
    const cp_arch *a;
    for (int i = 0; (a = cp_arch_at(i)); i++)
        if (a->gguf_names && !strcmp(a->gguf_names->gguf_arch, gguf_arch)) return a;
    return NULL;
}

const cp_gguf_names *cp_gguf_names_find(const char *gguf_arch) {
    const cp_arch *a = cp_gguf_arch_find(gguf_arch);
    return a ? a->gguf_names : NULL;
}

const char *cp_gguf_names_supported(void) {
    static char list[256];
    if (list[0]) return list;
    const cp_arch *a;
    size_t n = 0;
    for (int i = 0; (a = cp_arch_at(i)); i++)
        if (a->gguf_names) {
            int k = snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", a->gguf_names->gguf_arch);
            if (k < 0 || (size_t)k >= sizeof list - n) break;
            n += (size_t)k;
        }
    return list;
}

/* Parses "blk.<N>." (N without leading zeros); returns what follows, or NULL. */
static const char *block_suffix(const char *name, int64_t *layer) {
    if (strncmp(name, "blk.", 4) != 0) return NULL;
    const char *p = name + 4;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.')) return NULL;
    int64_t n = 0;
    while (*p >= '0' && *p <= '9') {
        if (n > 100000000) return NULL;
        n = n * 10 + (*p++ - '0');
    }
    if (*p++ != '.') return NULL;
    *layer = n;
    return p;
}

const cp_gguf_tensor_name *cp_gguf_names_match(const cp_gguf_names *a, const char *gguf_name, int64_t *layer) {
    *layer = -1;
    for (int i = 0; i < a->n_top; i++)
        if (!strcmp(gguf_name, a->top[i].gguf)) return &a->top[i];
    int64_t n;
    const char *suffix = block_suffix(gguf_name, &n);
    if (!suffix) return NULL;
    for (int i = 0; i < a->n_block; i++)
        if (!strcmp(suffix, a->block[i].gguf)) {
            *layer = n;
            return &a->block[i];
        }
    return NULL;
}

int cp_gguf_names_ignored(const cp_gguf_names *a, const char *gguf_name) {
    if (!a->ignored_block_suffix) return 0;
    size_t n = strlen(gguf_name), k = strlen(a->ignored_block_suffix);
    return !strncmp(gguf_name, "blk.", 4) && n > k && !strcmp(gguf_name + n - k, a->ignored_block_suffix);
}

const char *cp_gguf_names_refused(const cp_gguf_names *a, const char *gguf_name) {
    for (int i = 0; i < a->n_refused; i++)
        if (!strcmp(gguf_name, a->refused[i].gguf)) return a->refused[i].why;
    return NULL;
}
