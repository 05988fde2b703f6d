/*
 * added_tokens.c — added and special tokens (tokenizer/added_vocabulary.rs).
 *
 * Tokens with normalized == false are found in the raw text before anything else; the others in
 * the normalized text of each remaining piece. Matching is leftmost-longest over a byte trie;
 * single_word rejects a match touching word chars, lstrip / rstrip make it swallow the whitespace
 * on that side. A rejected match still consumes its span, as the Aho-Corasick iterator HF uses
 * moves on past it.
 */
#include "tokenizer/internal.h"
#include "tokenizer/trie.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

void tk_added_free(tk_added_vocab *av) {
    for (size_t i = 0; i < av->n; i++) {
        free(av->v[i].content);
        free(av->v[i].norm_content);
    }
    free(av->v);
    cp_strmap_free(&av->by_content);
    tk_trie_free(av->raw_trie);
    tk_trie_free(av->norm_trie);
    memset(av, 0, sizeof *av);
}

int tk_added_add(tk_added_vocab *av, const tk_added_token *t) {
    if (cp_grow(&av->v, &av->cap, av->n + 1, sizeof *av->v, 16, "added tokens")) return CP_ERR;
    tk_added_token *d = &av->v[av->n];
    *d = *t;
    d->norm_content = NULL;
    d->norm_len = 0;
    if (!(d->content = cp_malloc(t->len + 1, "an added token"))) return CP_ERR;
    memcpy(d->content, t->content, t->len);
    d->content[t->len] = '\0';
    if (cp_strmap_put(&av->by_content, d->content, d->len, (int32_t)av->n)) { free(d->content); return CP_ERR; }
    av->n++;
    return CP_OK;
}

int tk_added_build(tk_added_vocab *av, const tk_normalizer *norm) {
    tk_trie_free(av->raw_trie);
    tk_trie_free(av->norm_trie);
    av->raw_trie = av->norm_trie = NULL;
    for (size_t i = 0; i < av->n; i++) {
        tk_added_token *t = &av->v[i];
        const char *key = t->content;
        size_t klen = t->len;
        if (t->normalized && norm && !t->norm_content) {
            tk_nstr ns = tk_nstr_view(t->content, 0, t->len);
            if (tk_normalizer_apply(norm, &ns)) { tk_nstr_free(&ns); return CP_ERR; }
            if (ns.len != t->len || memcmp(ns.s, t->content, t->len) != 0) {
                t->norm_content = cp_malloc(ns.len + 1, "an added token");
                if (!t->norm_content) { tk_nstr_free(&ns); return CP_ERR; }
                memcpy(t->norm_content, ns.s, ns.len);
                t->norm_content[ns.len] = '\0';
                t->norm_len = ns.len;
            }
            tk_nstr_free(&ns);
        }
        if (t->norm_content) { key = t->norm_content; klen = t->norm_len; }
        tk_trie **tr = t->normalized ? &av->norm_trie : &av->raw_trie;
        if (!*tr && tk_trie_create(tr)) return CP_ERR;
        if (tk_trie_insert(*tr, key, klen, (int32_t)i)) return CP_ERR;
    }
    return CP_OK;
}

const tk_added_token *tk_added_by_id(const tk_added_vocab *av, int32_t id) {
    /* Later entries win, as added_tokens_map_r.insert overwrites. */
    for (size_t i = av->n; i-- > 0;)
        if (av->v[i].id == id) return &av->v[i];
    return NULL;
}

static int push_piece(tk_pieces *p, size_t start, size_t end, int32_t token) {
    if (cp_grow(&p->v, &p->cap, p->n + 1, sizeof *p->v, 16, "text pieces")) return CP_ERR;
    p->v[p->n++] = (tk_piece){start, end, token};
    return CP_OK;
}

/* Last char of s[0..n) (n > 0, valid UTF-8). */
static uint32_t last_char(const char *s, size_t n) {
    size_t i = n - 1, l;
    while (i > 0 && cp_utf8_is_continuation((unsigned char)s[i])) i--;
    return cp_utf8_decode(s + i, &l);
}

int tk_added_split(const tk_added_vocab *av, int normalized_set, const char *s, size_t len,
                   tk_pieces *out) {
    out->n = 0;
    const tk_trie *trie = normalized_set ? av->norm_trie : av->raw_trie;
    if (len == 0) return push_piece(out, 0, 0, -1);
    if (!trie) return push_piece(out, 0, len, -1);
    size_t start_offset = 0, pos = 0;
    size_t maxl = tk_trie_max_len(trie);
    size_t lens_buf[32];
    int32_t vals_buf[32];
    size_t *lens = lens_buf;
    int32_t *vals = vals_buf;
    if (maxl + 1 > 32) {
        lens = cp_malloc((maxl + 1) * sizeof *lens, "added token matches");
        vals = cp_malloc((maxl + 1) * sizeof *vals, "added token matches");
        if (!lens || !vals) { if (lens != lens_buf) free(lens); if (vals != vals_buf) free(vals); return CP_ERR; }
    }
    int rc = CP_OK;
    while (pos < len && !rc) {
        if (!tk_trie_first_byte(trie, (unsigned char)s[pos])) { pos++; continue; }
        size_t k = tk_trie_prefixes(trie, s + pos, len - pos, lens, vals, maxl + 1);
        if (k == 0) { pos++; continue; }
        size_t start = pos, stop = pos + lens[k - 1]; /* longest */
        const tk_added_token *t = &av->v[vals[k - 1]];
        pos = stop;
        if (t->single_word) {
            int start_space = start == 0 || !tk_is_word_char(last_char(s, start));
            size_t l;
            int stop_space = stop == len || !tk_is_word_char(cp_utf8_decode(s + stop, &l));
            if (!start_space || !stop_space) continue;
        }
        if (t->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t i = ns - 1;
                while (i > 0 && cp_utf8_is_continuation((unsigned char)s[i])) i--;
                size_t l;
                if (!tk_is_whitespace(cp_utf8_decode(s + i, &l))) break;
                ns = i;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (t->rstrip) {
            while (stop < len) {
                size_t l;
                if (!tk_is_whitespace(cp_utf8_decode(s + stop, &l))) break;
                stop += l;
            }
        }
        if (start_offset < start) rc = push_piece(out, start_offset, start, -1);
        if (!rc) rc = push_piece(out, start, stop, vals[k - 1]);
        start_offset = stop;
    }
    if (!rc && start_offset != len) rc = push_piece(out, start_offset, len, -1);
    if (lens != lens_buf) free(lens);
    if (vals != vals_buf) free(vals);
    return rc;
}
