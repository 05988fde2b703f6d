/*
 * strmap.c — the small containers of the tokenizer: a pair → (rank, id) map (BPE merges), growable
 * buffers and lists. (The string → id map of vocabularies is core/strmap.c.)
 *
 * The pair map uses open addressing with linear probing at load factor <= 1/2.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

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
    return cp_grow(&b->s, &b->cap, b->len + extra + 1, 1, 64, "a text buffer");
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
        size_t cap = cp_grow_cap(l->cap, l->n + 1, 16);
        if (cp_resize(&l->v, cap, sizeof *l->v, "a token list") ||
            cp_resize(&l->len, cap, sizeof *l->len, "a token list"))
            return CP_ERR;
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
    if (cp_grow(&c->v, &c->cap, c->n + 1, sizeof *c->v, 64, "a normalization buffer")) return CP_ERR;
    c->v[c->n++] = (tk_change){ch, change};
    return CP_OK;
}

int tk_wordtoks_push(tk_wordtoks *w, int32_t id, size_t start, size_t end) {
    if (w->n == w->cap) {
        size_t cap = cp_grow_cap(w->cap, w->n + 1, 32);
        if (cp_resize(&w->ids, cap, sizeof *w->ids, "word tokens") ||
            cp_resize(&w->starts, cap, sizeof *w->starts, "word tokens") ||
            cp_resize(&w->ends, cap, sizeof *w->ends, "word tokens"))
            return CP_ERR;
        w->cap = cap;
    }
    w->ids[w->n] = id;
    w->starts[w->n] = (uint32_t)start;
    w->ends[w->n++] = (uint32_t)end;
    return CP_OK;
}

int tk_matches_push(tk_matches *m, size_t start, size_t end, int is_match) {
    if (cp_grow(&m->v, &m->cap, m->n + 1, sizeof *m->v, 64, "split positions")) return CP_ERR;
    m->v[m->n++] = (tk_match){start, end, is_match};
    return CP_OK;
}

int tk_enc_push(tk_enc *e, int32_t id, size_t start, size_t end, int special, int type_id,
                uint32_t trim) {
    if (e->n == e->cap) {
        size_t cap = cp_grow_cap(e->cap, e->n + 1, 64);
        const char *what = "an encoding";
        if (cp_resize(&e->ids, cap, sizeof *e->ids, what) ||
            cp_resize(&e->offsets, 2 * cap, sizeof *e->offsets, what) ||
            cp_resize(&e->special, cap, 1, what) || cp_resize(&e->type_ids, cap, 1, what) ||
            cp_resize(&e->trim, cap, sizeof *e->trim, what) || cp_resize(&e->seq, cap, 1, what))
            return CP_ERR;
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
