/*
 * strmap.h — a string -> int32 hash map: the tokenizer's vocabularies and merges, the GGUF
 * converter's vocabulary index. Keys are byte strings with a length (NUL allowed) and are copied;
 * putting a key that is present overwrites its value (a Python dict built in order: the last value
 * wins), and entries keep the order of their first insertion.
 */
#ifndef CP_CORE_STRMAP_H
#define CP_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    uint32_t *slots;   /* cap entries: index+1 into entries, 0 = empty */
    size_t cap;
    struct cp_strmap_entry { const char *key; uint32_t len; int32_t value; uint64_t hash; } *entries;
    size_t n, entries_cap;
    char **blocks; size_t nblocks; size_t block_used, block_cap; /* key storage */
} cp_strmap;

/* The hash the map uses, for callers that keep their own tables of strings. */
uint64_t cp_hash_bytes(const char *s, size_t n);

void cp_strmap_init(cp_strmap *m);
void cp_strmap_free(cp_strmap *m);
/* Inserts or overwrites. CP_ERR (error set) only when memory runs out or the key is over 4 GiB. */
cp_status cp_strmap_put(cp_strmap *m, const char *key, size_t len, int32_t value);
/* The value under key, or -1. */
int32_t cp_strmap_get(const cp_strmap *m, const char *key, size_t len);
/* The same two with the key's cp_hash_bytes already computed (a lookup followed by an insertion
 * hashes once). */
cp_status cp_strmap_put_hashed(cp_strmap *m, const char *key, size_t len, uint64_t hash, int32_t value);
int32_t cp_strmap_get_hashed(const cp_strmap *m, const char *key, size_t len, uint64_t hash);
/* Empties the map; its hash table stays allocated. */
void cp_strmap_clear(cp_strmap *m);
/* The stored key of entry i (0..n-1, insertion order), its length in *len. */
const char *cp_strmap_key(const cp_strmap *m, size_t i, size_t *len);

#endif
