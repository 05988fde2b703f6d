/*
 * name_index.c — entries found by name; see name_index.h.
 */
#include "core/name_index.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static int by_name(const void *a, const void *b) {
    return strcmp(((const cp_name_ref *)a)->name, ((const cp_name_ref *)b)->name);
}

cp_status cp_name_index_build(cp_name_index *ix, const void *entries, size_t n, size_t size, size_t name_at,
                              const char **twice, const char *what) {
    *twice = NULL;
    ix->n = 0;
    if (!(ix->refs = cp_malloc((n ? n : 1) * sizeof *ix->refs, what))) return CP_ERR;
    for (size_t i = 0; i < n; i++) {
        const char *entry = (const char *)entries + i * size;
        memcpy(&ix->refs[i].name, entry + name_at, sizeof ix->refs[i].name);
        ix->refs[i].entry = entry;
    }
    ix->n = n;
    qsort(ix->refs, n, sizeof *ix->refs, by_name);
    for (size_t i = 1; i < n && !*twice; i++)
        if (!strcmp(ix->refs[i - 1].name, ix->refs[i].name)) *twice = ix->refs[i].name;
    return CP_OK;
}

const void *cp_name_index_find(const cp_name_index *ix, const char *name) {
    if (!ix->n) return NULL;
    const cp_name_ref key = {.name = name};
    const cp_name_ref *hit = bsearch(&key, ix->refs, ix->n, sizeof *ix->refs, by_name);
    return hit ? hit->entry : NULL;
}

void cp_name_index_free(cp_name_index *ix) {
    cp_free(ix->refs);
    ix->refs = NULL;
    ix->n = 0;
}
