/*
 * name_index.h — entries found by name: a sorted array of (name, entry) references over entries
 * that live elsewhere (the tensors and metadata of a GGUF or safetensors file), built once,
 * searched by binary search, with the first duplicate name reported.
 */
#ifndef CP_CORE_NAME_INDEX_H
#define CP_CORE_NAME_INDEX_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    const char *name;
    const void *entry;
} cp_name_ref;

typedef struct {
    cp_name_ref *refs; /* sorted by name (strcmp) */
    size_t n;
} cp_name_index;

/* Indexes the n entries of `size` bytes at entries by the NUL-terminated name each points to from
 * byte offset name_at (a char * field: offsetof(cp_gguf_tensor, name)). *twice is the first name
 * found twice, or NULL. CP_ERR (error set, naming `what`) only when memory runs out. */
cp_status cp_name_index_build(cp_name_index *ix, const void *entries, size_t n, size_t size, size_t name_at,
                              const char **twice, const char *what);
/* The entry named `name`, or NULL. */
const void *cp_name_index_find(const cp_name_index *ix, const char *name);
void cp_name_index_free(cp_name_index *ix);

#endif
