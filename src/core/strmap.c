/*
 * strmap.c — a string -> int32 hash map; see strmap.h.
 *
 * Open addressing with linear probing at load factor <= 1/2; the slots hold indices into the
 * entries array, which keeps insertion order. Keys live in large blocks, so a 250k-entry
 * vocabulary costs a handful of allocations.
 */
#include "core/strmap.h"

#include <string.h>

#include "core/alloc.h"

uint64_t cp_hash_bytes(const char *s, size_t n) {
    /* 8 bytes at a time, multiply-xorshift mixing (in the spirit of wyhash, much simpler). */
    const uint64_t m = 0x9E3779B97F4A7C15ull;
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * m);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * m;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    for (size_t k = 0; i + k < n; k++) w |= (uint64_t)(unsigned char)s[i + k] << (8 * k);
    h = (h ^ w) * m;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

void cp_strmap_init(cp_strmap *m) { memset(m, 0, sizeof *m); }

void cp_strmap_free(cp_strmap *m) {
    cp_free(m->slots);
    cp_free(m->entries);
    for (size_t i = 0; i < m->nblocks; i++) cp_free(m->blocks[i]);
    cp_free(m->blocks);
    memset(m, 0, sizeof *m);
}

static cp_status strmap_grow(cp_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *slots = cp_calloc(cap, sizeof *slots, "a vocabulary hash table");
    if (!slots) return CP_ERR;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->entries[i].hash & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = (uint32_t)(i + 1);
    }
    cp_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return CP_OK;
}

static char *strmap_store(cp_strmap *m, const char *key, size_t len) {
    if (m->nblocks == 0 || m->block_used + len + 1 > m->block_cap) {
        size_t cap = len + 1 > 65536 ? len + 1 : 65536;
        char **blocks = cp_realloc(m->blocks, (m->nblocks + 1) * sizeof *blocks, "vocabulary");
        if (!blocks) return NULL;
        m->blocks = blocks;
        if (!(m->blocks[m->nblocks] = cp_malloc(cap, "vocabulary strings"))) return NULL;
        m->nblocks++;
        m->block_used = 0;
        m->block_cap = cap;
    }
    char *p = m->blocks[m->nblocks - 1] + m->block_used;
    memcpy(p, key, len);
    p[len] = '\0';
    m->block_used += len + 1;
    return p;
}

/* The slot holding key (hash h), or the empty slot where it would go. m->cap > 0. */
static size_t find_slot(const cp_strmap *m, const char *key, size_t len, uint64_t h) {
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        const struct cp_strmap_entry *e = &m->entries[m->slots[j] - 1];
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) break;
        j = (j + 1) & (m->cap - 1);
    }
    return j;
}

cp_status cp_strmap_put_hashed(cp_strmap *m, const char *key, size_t len, uint64_t h, int32_t value) {
    if (len > UINT32_MAX) return cp_error("token of %zu bytes is too long", len);
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return CP_ERR;
    size_t j = find_slot(m, key, len, h);
    if (m->slots[j]) {
        m->entries[m->slots[j] - 1].value = value;
        return CP_OK;
    }
    if (cp_grow(&m->entries, &m->entries_cap, m->n + 1, sizeof *m->entries, 64, "vocabulary entries")) return CP_ERR;
    const char *stored = strmap_store(m, key, len);
    if (!stored) return CP_ERR;
    m->entries[m->n] = (struct cp_strmap_entry){stored, (uint32_t)len, value, h};
    m->slots[j] = (uint32_t)(++m->n);
    return CP_OK;
}

int32_t cp_strmap_get_hashed(const cp_strmap *m, const char *key, size_t len, uint64_t h) {
    if (!m->cap) return -1;
    size_t j = find_slot(m, key, len, h);
    return m->slots[j] ? m->entries[m->slots[j] - 1].value : -1;
}

cp_status cp_strmap_put(cp_strmap *m, const char *key, size_t len, int32_t value) {
    return cp_strmap_put_hashed(m, key, len, cp_hash_bytes(key, len), value);
}

int32_t cp_strmap_get(const cp_strmap *m, const char *key, size_t len) {
    return cp_strmap_get_hashed(m, key, len, cp_hash_bytes(key, len));
}

void cp_strmap_clear(cp_strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    for (size_t i = 0; i < m->nblocks; i++) cp_free(m->blocks[i]);
    m->n = m->nblocks = m->block_used = m->block_cap = 0;
}

const char *cp_strmap_key(const cp_strmap *m, size_t i, size_t *len) {
    *len = m->entries[i].len;
    return m->entries[i].key;
}
