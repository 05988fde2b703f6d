/*
 * precompiled.c — the `Precompiled` normalizer: SentencePiece's compiled normalization rules
 * (nmt_nfkc and friends), as embedded in T5/ALBERT/XLM-R tokenizer.json files.
 *
 * The blob is [u32 LE trie size][double-array trie][NUL-separated replacement strings]. Lookup
 * walks the double array (spm_precompiled's DoubleArray::common_prefix_search). HF applies the
 * rules per extended grapheme cluster: a cluster shorter than 6 bytes whose bytes have any prefix
 * hit is replaced whole by the first (shortest) hit's string; otherwise each char is looked up on
 * its own. The (char, change) bookkeeping is HF's `replace` helper, quirks included.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct tk_precompiled {
    uint32_t *trie;
    size_t ntrie;
    char *normalized;
    size_t nnorm;
} tk_precompiled;

void tk_precompiled_free(tk_precompiled *p) {
    if (!p) return;
    free(p->trie);
    free(p->normalized);
    free(p);
}

static int b64val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int tk_precompiled_from_base64(tk_precompiled **out, const char *b64, const char *path) {
    size_t n = strlen(b64);
    unsigned char *bin = cp_malloc(n / 4 * 3 + 3, "a precompiled charsmap");
    if (!bin) return CP_ERR;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (b64[i] == '=') break;
        int v = b64val((unsigned char)b64[i]);
        if (v < 0) { free(bin); return cp_error("%s.precompiled_charsmap: invalid base64 at character %zu", path, i); }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; bin[o++] = (unsigned char)(acc >> bits); }
    }
    if (o < 4) { free(bin); return cp_error("%s.precompiled_charsmap: too short", path); }
    uint32_t trie_bytes = (uint32_t)bin[0] | (uint32_t)bin[1] << 8 | (uint32_t)bin[2] << 16 | (uint32_t)bin[3] << 24;
    if ((size_t)trie_bytes > o - 4 || trie_bytes < 4) {
        free(bin);
        return cp_error("%s.precompiled_charsmap: trie size %u does not fit the %zu-byte blob", path, trie_bytes, o);
    }
    tk_precompiled *p = cp_calloc(1, sizeof *p, "a precompiled normalizer");
    if (!p) { free(bin); return CP_ERR; }
    p->ntrie = trie_bytes / 4;
    p->trie = cp_malloc(p->ntrie * sizeof *p->trie, "a precompiled trie");
    p->nnorm = o - 4 - trie_bytes;
    p->normalized = cp_malloc(p->nnorm + 1, "precompiled strings");
    if (!p->trie || !p->normalized) { free(bin); tk_precompiled_free(p); return CP_ERR; }
    for (size_t i = 0; i < p->ntrie; i++) {
        const unsigned char *u = bin + 4 + 4 * i;
        p->trie[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(p->normalized, bin + 4 + trie_bytes, p->nnorm);
    p->normalized[p->nnorm] = '\0';
    free(bin);
    if (cp_utf8_valid_prefix(p->normalized, p->nnorm) != p->nnorm) {
        tk_precompiled_free(p);
        return cp_error("%s.precompiled_charsmap: replacement strings are not valid UTF-8", path);
    }
    *out = p;
    return CP_OK;
}

static uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* First (shortest) hit of a common-prefix search over key, as an index into normalized; -1 if none. */
static long first_hit(const tk_precompiled *p, const char *key, size_t n) {
    size_t pos = 0;
    if (p->ntrie == 0) return -1;
    uint32_t unit = p->trie[0];
    pos ^= unit_offset(unit);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == 0) break;
        pos ^= c;
        if (pos >= p->ntrie) return -1;
        unit = p->trie[pos];
        if ((unit & (0x80000000u | 0xFF)) != c) return -1;
        pos ^= unit_offset(unit);
        if ((unit >> 8) & 1) {
            if (pos >= p->ntrie) return -1;
            return (long)(p->trie[pos] & 0x7FFFFFFFu);
        }
    }
    return -1;
}

/* The replacement string for a hit, or NULL when the index is out of range. */
static const char *hit_string(const tk_precompiled *p, long idx, size_t *len) {
    if (idx < 0 || (size_t)idx > p->nnorm) return NULL;
    size_t e = (size_t)idx;
    while (e < p->nnorm && p->normalized[e]) e++;
    /* A hit must start on a char boundary (HF would panic otherwise); treat as no rule. */
    if ((size_t)idx < p->nnorm && cp_utf8_is_continuation((unsigned char)p->normalized[idx])) return NULL;
    *len = e - (size_t)idx;
    return p->normalized + idx;
}

static size_t count_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i += cp_utf8_len((unsigned char)s[i])) c++;
    return c;
}

/* HF's replace(transformations, old_part, new_part). */
static int push_replace(tk_changes *t, const char *old_part, size_t old_len, const char *np, size_t nl) {
    long diff = (long)count_chars(np, nl) - (long)count_chars(old_part, old_len);
    size_t first = t->n;
    for (size_t i = 0; i < nl;) {
        size_t l;
        uint32_t c = cp_utf8_decode(np + i, &l);
        if (tk_changes_push(t, c, 0)) return CP_ERR;
        i += l;
    }
    (void)first;
    if (diff > 0) {
        for (long k = 0; k < diff && (size_t)k < t->n; k++) t->v[t->n - 1 - (size_t)k].change = 1;
    } else if (diff < 0 && t->n > 0) {
        t->v[t->n - 1].change += (int32_t)diff;
    }
    return CP_OK;
}

int tk_precompiled_apply(const tk_precompiled *p, tk_nstr *ns) {
    tk_changes t = {0};
    int modified = 0, rc = CP_OK;
    size_t i = 0;
    while (i < ns->len && !rc) {
        /* One extended grapheme cluster [i, e). */
        utf8proc_int32_t state = 0;
        size_t l;
        uint32_t prev = cp_utf8_decode(ns->s + i, &l);
        size_t e = i + l;
        while (e < ns->len) {
            size_t l2;
            uint32_t c = cp_utf8_decode(ns->s + e, &l2);
            if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)c, &state)) break;
            prev = c;
            e += l2;
        }
        const char *g = ns->s + i;
        size_t glen = e - i;
        size_t nl;
        const char *norm;
        if (glen < 6 && (norm = hit_string(p, first_hit(p, g, glen), &nl))) {
            modified = 1;
            rc = push_replace(&t, g, glen, norm, nl);
        } else {
            for (size_t k = 0; k < glen && !rc;) {
                uint32_t c = cp_utf8_decode(g + k, &l);
                if ((norm = hit_string(p, first_hit(p, g + k, l), &nl))) {
                    modified = 1;
                    rc = push_replace(&t, g + k, l, norm, nl);
                } else {
                    rc = tk_changes_push(&t, c, 0);
                }
                k += l;
            }
        }
        i = e;
    }
    if (!rc && modified) rc = tk_nstr_transform(ns, t.v, t.n, 0);
    free(t.v);
    return rc;
}
