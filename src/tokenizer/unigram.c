/*
 * unigram.c — the Unigram model (T5, ALBERT, XLM-R SentencePiece): Viterbi over the pieces that
 * start at each char (models/unigram/model.rs encode_optimized).
 *
 * best[end] keeps the best-scoring path ending at byte `end`; a candidate replaces it only when
 * strictly better, and starts are visited left to right, so ties keep the earlier start (the
 * longer piece). A position where no single-char piece starts gets an unk candidate for that char
 * with score min_score - 10. Consecutive unk pieces are fused; a fused string that is not a piece
 * becomes <0xHH> tokens (byte_fallback) or unk. Scores are summed in double, in HF's order.
 */
#include "tokenizer/models.h"
#include "tokenizer/trie.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double *scores;  /* per id */
    char **pieces;   /* per id (owned) */
    size_t n;
    tk_trie *trie;
    int32_t unk_id;  /* -1 if none */
    int byte_fallback;
    double min_score;
    int32_t byte_ids[256];
} unigram;

void tk_unigram_free_impl(tk_model *m) {
    unigram *u = m->impl;
    if (!u) return;
    for (size_t i = 0; i < u->n; i++) free(u->pieces[i]);
    free(u->pieces);
    free(u->scores);
    tk_trie_free(u->trie);
    free(u);
    m->impl = NULL;
}

int tk_unigram_from_json(tk_model **out, const cJSON *j, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    if (!cJSON_IsArray(v)) return cp_error("%s.vocab: expected an array of [piece, score] pairs", path);
    long unk;
    int byte_fallback;
    if (tk_json_int(j, "unk_id", -1, 0, INT32_MAX, &unk, path) || tk_json_bool(j, "byte_fallback", 0, &byte_fallback, path))
        return CP_ERR;
    tk_model *m = cp_calloc(1, sizeof *m, "a Unigram model");
    unigram *u = m ? cp_calloc(1, sizeof *u, "a Unigram model") : NULL;
    if (!u) { free(m); return CP_ERR; }
    m->type = TK_MODEL_UNIGRAM;
    m->impl = u;
    cp_strmap_init(&m->vocab);
    size_t n = (size_t)cJSON_GetArraySize(v);
    u->pieces = cp_calloc(n + 1, sizeof *u->pieces, "Unigram pieces");
    u->scores = cp_calloc(n + 1, sizeof *u->scores, "Unigram scores");
    int rc = (!u->pieces || !u->scores) ? CP_ERR : tk_trie_create(&u->trie);
    u->min_score = 1e300;
    size_t i = 0;
    for (const cJSON *e = v->child; e && !rc; e = e->next, i++) {
        const cJSON *p = cJSON_GetArrayItem(e, 0), *s = cJSON_GetArrayItem(e, 1);
        /* a score of 1e400 reads as inf here; serde_json refuses it, and so does cpeft */
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(s) ||
            !isfinite(s->valuedouble)) {
            rc = cp_error("%s.vocab[%zu]: expected [piece (string), score (finite number)]", path, i);
            break;
        }
        size_t len = strlen(p->valuestring);
        if (!(u->pieces[i] = cp_strdup(p->valuestring))) { rc = CP_ERR; break; }
        u->n = i + 1;
        u->scores[i] = s->valuedouble;
        if (s->valuedouble < u->min_score) u->min_score = s->valuedouble;
        rc = cp_strmap_put(&m->vocab, p->valuestring, len, (int32_t)i);
        if (!rc) rc = tk_trie_insert(u->trie, p->valuestring, len, (int32_t)i);
    }
    if (!rc && unk >= 0 && (size_t)unk >= n)
        rc = cp_error("%s.unk_id: %ld is outside the vocabulary (%zu pieces)", path, unk, n);
    if (!rc && n == 0) rc = cp_error("%s.vocab: empty", path);
    if (rc) { tk_model_free(m); return CP_ERR; }
    u->unk_id = (int32_t)unk;
    u->byte_fallback = byte_fallback;
    for (int k = 0; k < 256; k++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", k);
        u->byte_ids[k] = cp_strmap_get(&m->vocab, name, 6);
    }
    /* Reverse vocabulary straight from the list (pieces may repeat). */
    m->max_id = (int32_t)n - 1;
    m->vocab_r = cp_calloc(n, sizeof *m->vocab_r, "the reverse vocabulary");
    m->vocab_r_len = cp_calloc(n, sizeof *m->vocab_r_len, "the reverse vocabulary");
    if (!m->vocab_r || !m->vocab_r_len) { tk_model_free(m); return CP_ERR; }
    for (size_t k = 0; k < n; k++) {
        m->vocab_r[k] = u->pieces[k];
        m->vocab_r_len[k] = (uint32_t)strlen(u->pieces[k]);
    }
    *out = m;
    return CP_OK;
}

/* Emits one piece string s[a..b): its id, or bytes / unk. */
static int emit_piece(const tk_model *m, const unigram *u, const char *s, size_t a, size_t b, tk_wordtoks *out) {
    int32_t id = cp_strmap_get(&m->vocab, s + a, b - a);
    if (id >= 0) return tk_wordtoks_push(out, id, a, b);
    if (u->byte_fallback) {
        int ok = 1;
        for (size_t k = a; k < b; k++)
            if (u->byte_ids[(unsigned char)s[k]] < 0) ok = 0;
        if (ok) {
            for (size_t k = a; k < b; k++)
                if (tk_wordtoks_push(out, u->byte_ids[(unsigned char)s[k]], a, b)) return CP_ERR;
            return CP_OK;
        }
    }
    if (u->unk_id < 0) return cp_error("Unigram model has no unk_id for \"%.*s\"", (int)(b - a), s + a);
    return tk_wordtoks_push(out, u->unk_id, a, b);
}

int tk_unigram_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc) {
    const unigram *u = m->impl;
    if (len == 0) return CP_OK;
    /* best score, start (or -1), id per end position */
    if (cp_grow(&sc->dbl, &sc->dbl_cap, len + 1, sizeof(double), 256, "a Unigram lattice") ||
        cp_grow(&sc->ints, &sc->ints_cap, 2 * (len + 1), sizeof(int32_t), 256, "a Unigram lattice"))
        return CP_ERR;
    double *best = sc->dbl;
    int32_t *from = sc->ints, *ids = sc->ints + len + 1;
    for (size_t i = 0; i <= len; i++) { best[i] = 0; from[i] = -1; ids[i] = 0; }
    size_t maxl = tk_trie_max_len(u->trie) + 1;
    size_t lens_buf[64];
    int32_t vals_buf[64];
    size_t *lens = lens_buf;
    int32_t *vals = vals_buf;
    if (maxl > 64) {
        lens = cp_malloc(maxl * sizeof *lens, "Unigram prefixes");
        vals = cp_malloc(maxl * sizeof *vals, "Unigram prefixes");
        if (!lens || !vals) { if (lens != lens_buf) free(lens); if (vals != vals_buf) free(vals); return CP_ERR; }
    }
    double unk_score = u->min_score - 10.0;
    int rc = CP_OK;
    for (size_t st = 0; st < len;) {
        double here = best[st];
        size_t mblen = cp_utf8_len((unsigned char)s[st]);
        int single = 0;
        size_t k = tk_trie_prefixes(u->trie, s + st, len - st, lens, vals, maxl);
        for (size_t q = 0; q < k; q++) {
            size_t end = st + lens[q];
            /* token_to_ids (last id for a repeated piece) decides id and score */
            int32_t id = cp_strmap_get(&m->vocab, s + st, lens[q]);
            double cand = u->scores[id] + here;
            if (from[end] < 0 || cand > best[end]) { best[end] = cand; from[end] = (int32_t)st; ids[end] = id; }
            if (lens[q] == mblen) single = 1;
        }
        if (!single) {
            size_t end = st + mblen;
            double cand = unk_score + here;
            if (from[end] < 0 || cand > best[end]) {
                if (u->unk_id < 0) { rc = cp_error("Unigram model has no unk_id but meets an unknown character"); break; }
                best[end] = cand; from[end] = (int32_t)st; ids[end] = u->unk_id;
            }
        }
        st += mblen;
    }
    if (lens != lens_buf) free(lens);
    if (vals != vals_buf) free(vals);
    if (rc) return rc;
    /* Backtrack into (start, end) pieces, fusing unks; record in reverse then emit forward. */
    size_t npieces = 0;
    size_t cap = 64, n = 0; /* pieces as (start, end) pairs, last piece first */
    size_t *ps = cp_malloc(cap * 2 * sizeof *ps, "Unigram pieces");
    if (!ps) return CP_ERR;
    size_t end = len;
    size_t unk_end = 0;
    int in_unk = 0;
    while (end > 0) {
        size_t st = (size_t)from[end];
        int is_unk = ids[end] == u->unk_id && u->unk_id >= 0;
        if (n + 2 > cap) {
            cap *= 2;
            size_t *p2 = cp_realloc(ps, cap * 2 * sizeof *ps, "Unigram pieces");
            if (!p2) { free(ps); return CP_ERR; }
            ps = p2;
        }
        if (is_unk) { /* fuse_unk is always on for Unigram */
            if (!in_unk) { in_unk = 1; unk_end = end; }
        } else {
            if (in_unk) { ps[2 * n] = end; ps[2 * n + 1] = unk_end; n++; in_unk = 0; }
            ps[2 * n] = st; ps[2 * n + 1] = end; n++;
        }
        end = st;
    }
    if (in_unk) { ps[2 * n] = 0; ps[2 * n + 1] = unk_end; n++; }
    npieces = n;
    for (size_t k = npieces; k-- > 0 && !rc;) rc = emit_piece(m, u, s, ps[2 * k], ps[2 * k + 1], out);
    free(ps);
    return rc;
}
