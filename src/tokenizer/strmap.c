/*
 * strmap.c — the small containers of the tokenizer: a string → id hash map (vocabularies), a
 * pair → (rank, id) map (BPE merges), growable buffers and lists.
 *
 * Both maps use open addressing with linear probing at load factor <= 1/2. Keys of the string map
 * live in large blocks, so a 250k-entry vocabulary costs a handful of allocations.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

uint64_t tk_hash_bytes(const char *s, size_t n) {
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

void tk_strmap_init(tk_strmap *m) { memset(m, 0, sizeof *m); }

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    free(m->entries);
    for (size_t i = 0; i < m->nblocks; i++) free(m->blocks[i]);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

static int strmap_grow(tk_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 64;
    uint32_t *slots = cp_calloc(cap, sizeof *slots, "a vocabulary hash table");
    if (!slots) return CP_ERR;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = m->entries[i].hash & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = (uint32_t)(i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return CP_OK;
}

static char *strmap_store(tk_strmap *m, const char *key, size_t len) {
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

int tk_strmap_put(tk_strmap *m, const char *key, size_t len, int32_t value) {
    if (len > UINT32_MAX) return cp_error("token of %zu bytes is too long", len);
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m)) return CP_ERR;
    uint64_t h = tk_hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        struct tk_strmap_entry *e = &m->entries[m->slots[j] - 1];
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
            e->value = value;
            return CP_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->n == m->entries_cap) {
        size_t cap = m->entries_cap ? m->entries_cap * 2 : 64;
        void *p = cp_realloc(m->entries, cap * sizeof *m->entries, "vocabulary entries");
        if (!p) return CP_ERR;
        m->entries = p;
        m->entries_cap = cap;
    }
    const char *stored = strmap_store(m, key, len);
    if (!stored) return CP_ERR;
    m->entries[m->n] = (struct tk_strmap_entry){stored, (uint32_t)len, value, h};
    m->slots[j] = (uint32_t)(++m->n);
    return CP_OK;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = tk_hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        const struct tk_strmap_entry *e = &m->entries[m->slots[j] - 1];
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) return e->value;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

const char *tk_strmap_key(const tk_strmap *m, size_t i, size_t *len) {
    *len = m->entries[i].len;
    return m->entries[i].key;
}

/* ---- pair map ---------------------------------------------------------------------------------- */

#define PAIR_EMPTY UINT64_MAX

static size_t pair_slot(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 31)) & (cap - 1);
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->keys); free(m->v1); free(m->v2);
    memset(m, 0, sizeof *m);
}

static int pairmap_grow(tk_pairmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = cp_malloc(cap * sizeof *keys, "a merge table");
    uint32_t *v1 = cp_malloc(cap * sizeof *v1, "a merge table");
    uint32_t *v2 = cp_malloc(cap * sizeof *v2, "a merge table");
    if (!keys || !v1 || !v2) { free(keys); free(v1); free(v2); return CP_ERR; }
    for (size_t i = 0; i < cap; i++) keys[i] = PAIR_EMPTY;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == PAIR_EMPTY) continue;
        size_t j = pair_slot(m->keys[i], cap);
        while (keys[j] != PAIR_EMPTY) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i]; v1[j] = m->v1[i]; v2[j] = m->v2[i];
    }
    free(m->keys); free(m->v1); free(m->v2);
    m->keys = keys; m->v1 = v1; m->v2 = v2; m->cap = cap;
    return CP_OK;
}

int tk_pairmap_put(tk_pairmap *m, uint64_t key, uint32_t v1, uint32_t v2) {
    if ((m->n + 1) * 2 > m->cap && pairmap_grow(m)) return CP_ERR;
    size_t j = pair_slot(key, m->cap);
    while (m->keys[j] != PAIR_EMPTY && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == PAIR_EMPTY) { m->keys[j] = key; m->n++; }
    m->v1[j] = v1; m->v2[j] = v2;
    return CP_OK;
}

int tk_pairmap_get(const tk_pairmap *m, uint64_t key, uint32_t *v1, uint32_t *v2) {
    if (!m->cap) return 0;
    size_t j = pair_slot(key, m->cap);
    while (m->keys[j] != PAIR_EMPTY) {
        if (m->keys[j] == key) { *v1 = m->v1[j]; *v2 = m->v2[j]; return 1; }
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

/* ---- buffers and lists --------------------------------------------------------------------------- */

int tk_buf_reserve(tk_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return CP_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = cp_realloc(b->s, cap, "a text buffer");
    if (!s) return CP_ERR;
    b->s = s; b->cap = cap;
    return CP_OK;
}

int tk_buf_append(tk_buf *b, const char *s, size_t n) {
    if (tk_buf_reserve(b, n)) return CP_ERR;
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return CP_OK;
}

int tk_buf_putc(tk_buf *b, uint32_t c) {
    char tmp[4];
    return tk_buf_append(b, tmp, cp_utf8_encode(c, tmp));
}

void tk_buf_free(tk_buf *b) { free(b->s); memset(b, 0, sizeof *b); }

int tk_strlist_push(tk_strlist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **v = cp_realloc(l->v, cap * sizeof *v, "a token list");
        if (!v) return CP_ERR;
        l->v = v;
        size_t *len = cp_realloc(l->len, cap * sizeof *len, "a token list");
        if (!len) return CP_ERR;
        l->len = len;
        l->cap = cap;
    }
    char *c = cp_malloc(n + 1, "a token");
    if (!c) return CP_ERR;
    if (n) memcpy(c, s, n);
    c[n] = '\0';
    l->v[l->n] = c;
    l->len[l->n++] = n;
    return CP_OK;
}

void tk_strlist_free(tk_strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v); free(l->len);
    memset(l, 0, sizeof *l);
}

int tk_changes_push(tk_changes *c, uint32_t ch, int32_t change) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        tk_change *v = cp_realloc(c->v, cap * sizeof *v, "a normalization buffer");
        if (!v) return CP_ERR;
        c->v = v; c->cap = cap;
    }
    c->v[c->n++] = (tk_change){ch, change};
    return CP_OK;
}

int tk_wordtoks_push(tk_wordtoks *w, int32_t id, size_t start, size_t end) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 32;
        int32_t *ids = cp_realloc(w->ids, cap * sizeof *ids, "word tokens");
        if (!ids) return CP_ERR;
        w->ids = ids;
        uint32_t *s = cp_realloc(w->starts, cap * sizeof *s, "word tokens");
        if (!s) return CP_ERR;
        w->starts = s;
        uint32_t *e = cp_realloc(w->ends, cap * sizeof *e, "word tokens");
        if (!e) return CP_ERR;
        w->ends = e;
        w->cap = cap;
    }
    w->ids[w->n] = id;
    w->starts[w->n] = (uint32_t)start;
    w->ends[w->n++] = (uint32_t)end;
    return CP_OK;
}

int tk_matches_push(tk_matches *m, size_t start, size_t end, int is_match) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        tk_match *v = cp_realloc(m->v, cap * sizeof *v, "split positions");
        if (!v) return CP_ERR;
        m->v = v; m->cap = cap;
    }
    m->v[m->n++] = (tk_match){start, end, is_match};
    return CP_OK;
}

int tk_enc_push(tk_enc *e, int32_t id, size_t start, size_t end, int special, int type_id,
                uint32_t trim) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *ids = cp_realloc(e->ids, cap * sizeof *ids, "an encoding");
        if (!ids) return CP_ERR;
        e->ids = ids;
        size_t *off = cp_realloc(e->offsets, 2 * cap * sizeof *off, "an encoding");
        if (!off) return CP_ERR;
        e->offsets = off;
        uint8_t *sp = cp_realloc(e->special, cap, "an encoding");
        if (!sp) return CP_ERR;
        e->special = sp;
        uint8_t *ty = cp_realloc(e->type_ids, cap, "an encoding");
        if (!ty) return CP_ERR;
        e->type_ids = ty;
        uint32_t *tr = cp_realloc(e->trim, cap * sizeof *tr, "an encoding");
        if (!tr) return CP_ERR;
        e->trim = tr;
        uint8_t *sq = cp_realloc(e->seq, cap, "an encoding");
        if (!sq) return CP_ERR;
        e->seq = sq;
        e->cap = cap;
    }
    size_t i = e->n++;
    e->ids[i] = id;
    e->offsets[2 * i] = start;
    e->offsets[2 * i + 1] = end;
    e->special[i] = (uint8_t)special;
    e->type_ids[i] = (uint8_t)type_id;
    e->trim[i] = trim;
    e->seq[i] = 255;
    return CP_OK;
}

void tk_enc_free(tk_enc *e) {
    free(e->ids); free(e->offsets); free(e->special); free(e->type_ids); free(e->trim); free(e->seq);
    memset(e, 0, sizeof *e);
}

uint32_t tk_trim_counts(const char *s, size_t len) {
    /* Counts chars that are 'Ġ' (U+0120, the byte-level space) or whitespace at each end. */
    uint32_t lead = 0, trail = 0;
    size_t i = 0, nchars = 0;
    int leading = 1;
    while (i < len) {
        size_t l;
        uint32_t c = cp_utf8_decode(s + i, &l);
        int sp = c == 0x120 || tk_is_whitespace(c);
        if (leading && sp) lead++;
        else leading = 0;
        trail = sp ? trail + 1 : 0;
        i += l;
        nchars++;
    }
    if (lead > 0xFFFF) lead = 0xFFFF;
    if (trail > 0xFFFF) trail = 0xFFFF;
    return (lead << 16) | trail;
}
