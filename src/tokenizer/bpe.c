/*
 * bpe.c — the BPE model (GPT-2 byte-level, SentencePiece-style with byte fallback, and classic
 * BPE with continuing-subword prefix / end-of-word suffix).
 *
 * A word starts as one symbol per char (prefix/suffix applied, unknown chars as <0xHH> bytes
 * or unk, fused when fuse_unk), then merges are applied lowest rank first, ties to the leftmost
 * pair: symbols form a linked list and candidate pairs sit in a binary heap keyed (rank, pos),
 * with stale entries skipped when popped (models/bpe/word.rs merge_all, dropout off). Cost is
 * O(n log n) per word, so 1 MB of a single repeated char is fine. Results for words under 256
 * bytes are cached per tk_scratch (one per cp_encoding), which needs no locking.
 */
#include "tokenizer/models.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_WORD 256
#define CACHE_MAX_ENTRIES (1u << 18)
#define CACHE_MAX_POOL (32u << 20)

typedef struct {
    tk_pairmap merges;          /* (a << 32 | b) → (rank, new id) */
    int32_t unk_id;             /* -1 when unk_token unset */
    char *unk_token;
    char *prefix, *suffix;      /* continuing_subword_prefix, end_of_word_suffix (NULL = none) */
    size_t prefix_len, suffix_len;
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];      /* id of "<0xHH>", or -1 */
    int32_t *char_ids;          /* id of each single char < 0x10000 as a token, or -1 */
    int simple_chars;           /* no prefix/suffix: char lookups can use char_ids */
} bpe;

/* ---- word cache ----------------------------------------------------------------------------------- */

struct tk_wcache {
    cp_strmap words;                                   /* word → its entry in e */
    struct wc_entry { uint32_t tok_off, ntok; } *e;
    size_t ecap, key_bytes;
    uint32_t *toks; size_t toks_len, toks_cap;         /* pairs (id, byte length) */
};

static void wcache_free(tk_wcache *c) {
    if (!c) return;
    cp_strmap_free(&c->words);
    free(c->e); free(c->toks);
    free(c);
}

void tk_scratch_clear(tk_scratch *sc) {
    wcache_free(sc->cache);
    free(sc->sym); free(sc->heap); free(sc->dbl); free(sc->ints);
    tk_buf_free(&sc->buf);
    memset(sc, 0, sizeof *sc);
}

static const struct wc_entry *wcache_get(const tk_wcache *c, const char *s, size_t len, uint64_t h) {
    int32_t i = c ? cp_strmap_get_hashed(&c->words, s, len, h) : -1;
    return i < 0 ? NULL : &c->e[i];
}

/* Stores a word's result (hash h, not yet cached); does nothing if memory is short (the cache is
 * optional). */
static void wcache_put(tk_scratch *sc, const char *s, size_t len, uint64_t h, const tk_wordtoks *w,
                       size_t first) {
    tk_wcache *c = sc->cache;
    if (!c && !(c = sc->cache = calloc(1, sizeof *c))) return;
    size_t ntok = w->n - first, n = c->words.n;
    if (n >= CACHE_MAX_ENTRIES || c->key_bytes + len > CACHE_MAX_POOL) {
        cp_strmap_clear(&c->words);
        n = c->key_bytes = c->toks_len = 0;
    }
    if (cp_grow(&c->e, &c->ecap, n + 1, sizeof *c->e, 1024, "the BPE word cache") ||
        cp_grow(&c->toks, &c->toks_cap, c->toks_len + 2 * ntok, sizeof *c->toks, 1 << 15, "the BPE word cache") ||
        cp_strmap_put_hashed(&c->words, s, len, h, (int32_t)n))
        return;
    c->e[n] = (struct wc_entry){(uint32_t)c->toks_len, (uint32_t)ntok};
    c->key_bytes += len;
    for (size_t i = first; i < w->n; i++) {
        c->toks[c->toks_len++] = (uint32_t)w->ids[i];
        c->toks[c->toks_len++] = w->ends[i] - w->starts[i];
    }
}

/* ---- loading -------------------------------------------------------------------------------------- */

void tk_bpe_free_impl(tk_model *m) {
    bpe *b = m->impl;
    if (!b) return;
    tk_pairmap_free(&b->merges);
    free(b->unk_token); free(b->prefix); free(b->suffix); free(b->char_ids);
    free(b);
    m->impl = NULL;
}

/* An empty prefix or suffix behaves as none; NULL means none. */
static char *dup_or_null(const char *s) { return s && *s ? cp_strdup(s) : NULL; }

int tk_bpe_create(tk_model **out, tk_bpe_config *cfg, const char *path) {
    tk_model *m = cp_calloc(1, sizeof *m, "a BPE model");
    bpe *b = m ? cp_calloc(1, sizeof *b, "a BPE model") : NULL;
    if (!b) { free(m); cp_strmap_free(&cfg->vocab); return CP_ERR; }
    m->type = TK_MODEL_BPE;
    m->impl = b;
    m->vocab = cfg->vocab;
    memset(&cfg->vocab, 0, sizeof cfg->vocab);
    int rc = CP_OK;
    b->fuse_unk = cfg->fuse_unk;
    b->byte_fallback = cfg->byte_fallback;
    b->ignore_merges = cfg->ignore_merges;
    if ((cfg->unk_token && !(b->unk_token = cp_strdup(cfg->unk_token))) ||
        (cfg->continuing_subword_prefix && *cfg->continuing_subword_prefix &&
         !(b->prefix = dup_or_null(cfg->continuing_subword_prefix))) ||
        (cfg->end_of_word_suffix && *cfg->end_of_word_suffix && !(b->suffix = dup_or_null(cfg->end_of_word_suffix))))
        rc = CP_ERR;
    b->prefix_len = b->prefix ? strlen(b->prefix) : 0;
    b->suffix_len = b->suffix ? strlen(b->suffix) : 0;
    b->unk_id = b->unk_token ? cp_strmap_get(&m->vocab, b->unk_token, strlen(b->unk_token)) : -1;
    if (!rc) rc = tk_model_build_reverse(m);
    /* Merges: rank = index; a later duplicate pair overwrites an earlier one (HashMap collect). */
    tk_buf tmp = {0};
    for (size_t i = 0; !rc && i < cfg->n_merges; i++) {
        const char *a = cfg->merges_a[i], *bb = cfg->merges_b[i];
        size_t la = strlen(a), lb = strlen(bb);
        int32_t ia = cp_strmap_get(&m->vocab, a, la), ib = cp_strmap_get(&m->vocab, bb, lb);
        if (ia < 0) { rc = cp_error("%s.merges[%zu]: token \"%s\" is not in the vocabulary", path, i, a); break; }
        if (ib < 0) { rc = cp_error("%s.merges[%zu]: token \"%s\" is not in the vocabulary", path, i, bb); break; }
        size_t skip = b->prefix_len <= lb ? b->prefix_len : lb;
        tmp.len = 0;
        if (tk_buf_append(&tmp, a, la) || tk_buf_append(&tmp, bb + skip, lb - skip)) { rc = CP_ERR; break; }
        int32_t inew = cp_strmap_get(&m->vocab, tmp.s, tmp.len);
        if (inew < 0) {
            rc = cp_error("%s.merges[%zu]: merged token \"%s\" is not in the vocabulary", path, i, tmp.s);
            break;
        }
        rc = tk_pairmap_put(&b->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib, (uint32_t)i, (uint32_t)inew);
    }
    tk_buf_free(&tmp);
    for (int k = 0; k < 256; k++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", k);
        b->byte_ids[k] = cp_strmap_get(&m->vocab, name, 6);
    }
    b->simple_chars = !b->prefix && !b->suffix;
    if (!rc && b->simple_chars) {
        b->char_ids = cp_malloc(0x10000 * sizeof *b->char_ids, "a BPE char table");
        if (!b->char_ids) rc = CP_ERR;
        else {
            for (size_t i = 0; i < 0x10000; i++) b->char_ids[i] = -1;
            for (size_t i = 0; i < m->vocab.n; i++) {
                const struct cp_strmap_entry *e = &m->vocab.entries[i];
                size_t l;
                if (e->len == 0 || e->len > 3 || cp_utf8_valid_prefix(e->key, e->len) != e->len) continue;
                uint32_t c = cp_utf8_decode(e->key, &l);
                if (l == e->len && c < 0x10000) b->char_ids[c] = e->value;
            }
        }
    }
    if (rc) { tk_model_free(m); return CP_ERR; }
    *out = m;
    return CP_OK;
}

/* One merge string "a b" or pair ["a", "b"]; sets pointers into the JSON. */
static int merge_parts(const cJSON *e, const char *path, size_t i, char **a, char **b, tk_buf *hold) {
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring;
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return cp_error("%s.merges[%zu]: expected \"left right\" (two tokens separated by one space), got \"%s\"", path, i, s);
        size_t off = hold->len;
        if (tk_buf_append(hold, s, (size_t)(sp - s) + 1)) return CP_ERR;
        hold->s[hold->len - 1] = '\0';
        *a = (char *)(uintptr_t)off; /* offsets; fixed up after all appends */
        off = hold->len;
        if (tk_buf_append(hold, sp + 1, strlen(sp + 1) + 1)) return CP_ERR;
        *b = (char *)(uintptr_t)off;
        return CP_OK;
    }
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
        cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
        const char *x = cJSON_GetArrayItem(e, 0)->valuestring, *y = cJSON_GetArrayItem(e, 1)->valuestring;
        size_t off = hold->len;
        if (tk_buf_append(hold, x, strlen(x) + 1)) return CP_ERR;
        *a = (char *)(uintptr_t)off;
        off = hold->len;
        if (tk_buf_append(hold, y, strlen(y) + 1)) return CP_ERR;
        *b = (char *)(uintptr_t)off;
        return CP_OK;
    }
    return cp_error("%s.merges[%zu]: expected a string \"left right\" or a pair [\"left\", \"right\"]", path, i);
}

int tk_bpe_from_json(tk_model **out, const cJSON *j, const char *path) {
    tk_bpe_config cfg;
    memset(&cfg, 0, sizeof cfg);
    char p[256];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vocab");
    const cJSON *mg = cJSON_GetObjectItemCaseSensitive(j, "merges");
    if (!v) return cp_error("%s.vocab: missing (BPE needs a vocab object)", path);
    if (!mg) return cp_error("%s.merges: missing (BPE needs a merges list)", path);
    if (!cJSON_IsArray(mg)) return cp_error("%s.merges: expected an array", path);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(j, "dropout");
    if (dropout && !cJSON_IsNull(dropout)) {
        if (!cJSON_IsNumber(dropout) || dropout->valuedouble < 0 || dropout->valuedouble > 1)
            return cp_error("%s.dropout: expected null or a number in [0, 1]", path);
        if (dropout->valuedouble != 0)
            cp_warn("%s.dropout = %g: BPE dropout is a training-time augmentation; cpeft encodes without it", path, dropout->valuedouble);
    }
    int rc = tk_json_str(j, "unk_token", NULL, 1, &cfg.unk_token, path);
    if (!rc) rc = tk_json_str(j, "continuing_subword_prefix", NULL, 1, &cfg.continuing_subword_prefix, path);
    if (!rc) rc = tk_json_str(j, "end_of_word_suffix", NULL, 1, &cfg.end_of_word_suffix, path);
    if (!rc) rc = tk_json_bool(j, "fuse_unk", 0, &cfg.fuse_unk, path);
    if (!rc) rc = tk_json_bool(j, "byte_fallback", 0, &cfg.byte_fallback, path);
    if (!rc) rc = tk_json_bool(j, "ignore_merges", 0, &cfg.ignore_merges, path);
    if (rc) return CP_ERR;
    cp_strmap_init(&cfg.vocab);
    if (tk_model_parse_vocab_object(&cfg.vocab, v, tk_path(p, sizeof p, path, "vocab", 0))) {
        cp_strmap_free(&cfg.vocab);
        return CP_ERR;
    }
    size_t n = (size_t)cJSON_GetArraySize(mg);
    cfg.merges_a = cp_calloc(n + 1, sizeof *cfg.merges_a, "merges");
    cfg.merges_b = cp_calloc(n + 1, sizeof *cfg.merges_b, "merges");
    tk_buf hold = {0};
    if (!cfg.merges_a || !cfg.merges_b) rc = CP_ERR;
    size_t i = 0;
    for (const cJSON *e = mg->child; e && !rc; e = e->next, i++)
        rc = merge_parts(e, path, i, &cfg.merges_a[i], &cfg.merges_b[i], &hold);
    if (!rc) {
        for (size_t k = 0; k < n; k++) {
            cfg.merges_a[k] = hold.s + (uintptr_t)cfg.merges_a[k];
            cfg.merges_b[k] = hold.s + (uintptr_t)cfg.merges_b[k];
        }
        cfg.n_merges = n;
        rc = tk_bpe_create(out, &cfg, path);
    } else {
        cp_strmap_free(&cfg.vocab);
    }
    tk_buf_free(&hold);
    free(cfg.merges_a);
    free(cfg.merges_b);
    return rc;
}

/* ---- encoding a word ---------------------------------------------------------------------------- */

typedef struct { int32_t id; int32_t prev, next; uint32_t len; } sym;
typedef struct { uint32_t rank; uint32_t pos; uint32_t new_id; } qitem;

static int qless(const qitem *a, const qitem *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(qitem *h, size_t *n, qitem x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!qless(&x, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = x;
}

static qitem heap_pop(qitem *h, size_t *n) {
    qitem top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const qitem *best = &x;
        if (l < *n && qless(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && qless(&h[r], best)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = x;
    return top;
}

static int32_t lookup_char(const tk_model *m, const bpe *b, const char *s, size_t l, uint32_t c,
                           int first, int last, tk_buf *tmp) {
    if (b->simple_chars || ((first || !b->prefix) && (!last || !b->suffix))) {
        if (b->char_ids && c < 0x10000) return b->char_ids[c];
        return cp_strmap_get(&m->vocab, s, l);
    }
    tmp->len = 0;
    if (!first && b->prefix && tk_buf_append(tmp, b->prefix, b->prefix_len)) return -2;
    if (tk_buf_append(tmp, s, l)) return -2;
    if (last && b->suffix && tk_buf_append(tmp, b->suffix, b->suffix_len)) return -2;
    return cp_strmap_get(&m->vocab, tmp->s, tmp->len);
}

/* merge_word + merge_all; appends (id, start, end) to out. */
static int merge_word(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc) {
    const bpe *b = m->impl;
    if (cp_grow(&sc->sym, &sc->sym_cap, len + 1, sizeof(sym), 64, "a BPE work buffer")) return CP_ERR;
    sym *w = sc->sym;
    size_t n = 0;
    int have_unk = 0;
    uint32_t unk_len = 0;
    for (size_t i = 0; i < len;) {
        size_t l;
        uint32_t c = cp_utf8_decode(s + i, &l);
        int first = i == 0, last = i + l == len;
        int32_t id = lookup_char(m, b, s + i, l, c, first, last, &sc->buf);
        if (id == -2) return CP_ERR;
        if (id >= 0) {
            if (have_unk) { w[n++] = (sym){b->unk_id, 0, 0, unk_len}; have_unk = 0; }
            w[n++] = (sym){id, 0, 0, (uint32_t)l};
        } else {
            int done = 0;
            if (b->byte_fallback) {
                /* The bytes of the char as the vocabulary would see it (prefix/suffix included). */
                const char *bs = s + i;
                size_t bl = l;
                if (!b->simple_chars && ((!first && b->prefix) || (last && b->suffix))) { bs = sc->buf.s; bl = sc->buf.len; }
                int ok = 1;
                for (size_t k = 0; k < bl; k++)
                    if (b->byte_ids[(unsigned char)bs[k]] < 0) ok = 0;
                if (ok) {
                    if (cp_grow(&sc->sym, &sc->sym_cap, n + bl + (len - i) + 1, sizeof(sym), 64, "a BPE work buffer"))
                        return CP_ERR;
                    w = sc->sym;
                    for (size_t k = 0; k < bl; k++) w[n++] = (sym){b->byte_ids[(unsigned char)bs[k]], 0, 0, 1};
                    done = 1; /* note: a pending unk stays pending (HF does the same) */
                }
            }
            if (!done && b->unk_token) {
                if (b->unk_id < 0)
                    return cp_error("unk_token \"%s\" is not in the vocabulary", b->unk_token);
                if (have_unk && b->fuse_unk) unk_len += (uint32_t)l;
                else {
                    if (have_unk) w[n++] = (sym){b->unk_id, 0, 0, unk_len};
                    have_unk = 1;
                    unk_len = (uint32_t)l;
                }
            }
        }
        i += l;
    }
    if (have_unk) w[n++] = (sym){b->unk_id, 0, 0, unk_len};
    for (size_t k = 0; k < n; k++) { w[k].prev = (int32_t)k - 1; w[k].next = k + 1 < n ? (int32_t)k + 1 : -1; }

    if (cp_grow(&sc->heap, &sc->heap_cap, 2 * n + 2, sizeof(qitem), 64, "a BPE work buffer")) return CP_ERR;
    qitem *h = sc->heap;
    size_t hn = 0;
    uint32_t rank, nid;
    for (size_t k = 0; k + 1 < n; k++)
        if (tk_pairmap_get(&b->merges, ((uint64_t)(uint32_t)w[k].id << 32) | (uint32_t)w[k + 1].id, &rank, &nid))
            heap_push(h, &hn, (qitem){rank, (uint32_t)k, nid});
    while (hn) {
        qitem top = heap_pop(h, &hn);
        sym *cur = &w[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym right = w[cur->next];
        if (!tk_pairmap_get(&b->merges, ((uint64_t)(uint32_t)cur->id << 32) | (uint32_t)right.id, &rank, &nid) ||
            nid != top.new_id)
            continue;
        int32_t right_pos = cur->next;
        cur->id = (int32_t)top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        w[right_pos].len = 0;
        if (right.next >= 0) w[right.next].prev = (int32_t)top.pos;
        /* The queue can hold at most one live entry per position, plus stale ones; make room. */
        if (hn + 2 > sc->heap_cap) {
            if (cp_grow(&sc->heap, &sc->heap_cap, hn + 2, sizeof(qitem), 64, "a BPE work buffer")) return CP_ERR;
            h = sc->heap;
        }
        if (cur->prev >= 0 &&
            tk_pairmap_get(&b->merges, ((uint64_t)(uint32_t)w[cur->prev].id << 32) | (uint32_t)cur->id, &rank, &nid))
            heap_push(h, &hn, (qitem){rank, (uint32_t)cur->prev, nid});
        if (cur->next >= 0 &&
            tk_pairmap_get(&b->merges, ((uint64_t)(uint32_t)cur->id << 32) | (uint32_t)w[cur->next].id, &rank, &nid))
            heap_push(h, &hn, (qitem){rank, top.pos, nid});
    }
    size_t off = 0;
    for (size_t k = 0; k < n; k++) {
        if (w[k].len == 0) continue;
        if (tk_wordtoks_push(out, w[k].id, off, off + w[k].len)) return CP_ERR;
        off += w[k].len;
    }
    return CP_OK;
}

int tk_bpe_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc) {
    const bpe *b = m->impl;
    if (len == 0) return CP_OK;
    if (b->ignore_merges) {
        int32_t id = cp_strmap_get(&m->vocab, s, len);
        if (id >= 0) return tk_wordtoks_push(out, id, 0, len);
    }
    uint64_t h = 0;
    if (len < CACHE_MAX_WORD) {
        h = cp_hash_bytes(s, len);
        const struct wc_entry *e = wcache_get(sc->cache, s, len, h);
        if (e) {
            const uint32_t *t = sc->cache->toks + e->tok_off;
            size_t off = 0;
            for (uint32_t k = 0; k < e->ntok; k++) {
                if (tk_wordtoks_push(out, (int32_t)t[2 * k], off, off + t[2 * k + 1])) return CP_ERR;
                off += t[2 * k + 1];
            }
            return CP_OK;
        }
    }
    size_t first = out->n;
    if (merge_word(m, s, len, out, sc)) return CP_ERR;
    if (len < CACHE_MAX_WORD) wcache_put(sc, s, len, h, out, first);
    return CP_OK;
}
