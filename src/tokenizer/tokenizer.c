/*
 * tokenizer.c — loading a tokenizer.json, the encode pipeline and the public API (tokenizer.h).
 *
 * Encoding one text (TokenizerImpl::encode_single_sequence + post_process):
 *   1. invalid UTF-8 is replaced by U+FFFD in a private copy, with a map back to input offsets;
 *   2. added tokens with normalized == false are cut out of the raw text;
 *   3. each remaining piece is normalized, added tokens with normalized == true are cut out of it;
 *   4. the pre-tokenizer splits the rest into words and the model turns each word into ids;
 *   5. the post-processor adds special tokens and adjusts offsets.
 * Offsets are bytes of the input text. Nothing here allocates per word except through the
 * reusable buffers in the encoding's scratch state.
 */
#include "tokenizer/internal.h"
#include "tokenizer/models.h"
#include "core/alloc.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_uint_fast64_t tokenizer_generation = 1;

/* Private per-encoding state kept behind cp_encoding (see tk_scratch). */
typedef struct {
    tk_scratch sc;
    tk_wordtoks wt;
    tk_pieces pieces, pieces2;
} enc_state;

/* cp_encoding has no field for it, so the state lives in a small header just before the ids
 * array (allocated together with it, freed by cp_encoding_free). */
typedef struct { enc_state *state; uint64_t pad; } ids_header;

void cp_encoding_free(cp_encoding *e) {
    if (!e) return;
    if (e->ids) {
        ids_header *h = (ids_header *)e->ids - 1;
        if (h->state) {
            tk_scratch_clear(&h->state->sc);
            free(h->state->wt.ids); free(h->state->wt.starts); free(h->state->wt.ends);
            free(h->state->pieces.v); free(h->state->pieces2.v);
            free(h->state);
        }
        free(h);
    }
    free(e->offsets);
    free(e->special_mask);
    free(e->type_ids);
    memset(e, 0, sizeof *e);
}

static int encoding_reserve(cp_encoding *e, size_t n) {
    if (e->ids && n <= e->cap) return CP_OK;
    size_t cap = cp_grow_cap(e->cap, n, 64);
    ids_header *h = e->ids ? (ids_header *)e->ids - 1 : NULL;
    ids_header *nh = cp_realloc(h, sizeof *nh + cap * sizeof *e->ids, "an encoding");
    if (!nh) return CP_ERR;
    if (!h) nh->state = NULL;
    e->ids = (int32_t *)(nh + 1);
    if (cp_resize(&e->offsets, 2 * cap, sizeof *e->offsets, "an encoding") ||
        cp_resize(&e->special_mask, cap, 1, "an encoding") || cp_resize(&e->type_ids, cap, 1, "an encoding"))
        return CP_ERR;
    e->cap = cap;
    return CP_OK;
}

/* ---- loading ----------------------------------------------------------------------------------- */

void cp_tokenizer_free(cp_tokenizer *tok) {
    if (!tok) return;
    tk_normalizer_free(tok->normalizer);
    tk_pretok_free(tok->pretok);
    tk_model_free(tok->model);
    tk_postproc_free(tok->postproc);
    tk_decoder_free(tok->decoder);
    tk_added_free(&tok->added);
    free(tok->added_by_id_index);
    free(tok->trim_by_id);
    free(tok);
}

static int parse_added_tokens(cp_tokenizer *tok, const cJSON *arr) {
    if (!arr || cJSON_IsNull(arr)) return CP_OK;
    if (!cJSON_IsArray(arr)) return cp_error("added_tokens: expected an array");
    /* add_tokens: ids come from the vocabulary (model or earlier added tokens), new ones follow. */
    int32_t next_id = (int32_t)tk_model_vocab_size(tok->model);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[64];
        snprintf(p, sizeof p, "added_tokens[%zu]", i);
        const char *content;
        tk_added_token t;
        memset(&t, 0, sizeof t);
        long id;
        if (!cJSON_IsObject(e)) return cp_error("%s: expected an object", p);
        if (tk_json_str(e, "content", NULL, 0, &content, p)) return CP_ERR;
        if (!content) return cp_error("%s.content: missing (expected a string)", p);
        if (tk_json_int(e, "id", -1, 0, UINT32_MAX, &id, p) || tk_json_bool(e, "special", 0, &t.special, p) ||
            tk_json_bool(e, "single_word", 0, &t.single_word, p) || tk_json_bool(e, "lstrip", 0, &t.lstrip, p) ||
            tk_json_bool(e, "rstrip", 0, &t.rstrip, p) || tk_json_bool(e, "normalized", !t.special, &t.normalized, p))
            return CP_ERR;
        t.content = (char *)content;
        t.len = strlen(content);
        if (t.len == 0) continue;
        int32_t existing = cp_strmap_get(&tok->added.by_content, content, t.len);
        int32_t new_id;
        if (existing >= 0) new_id = tok->added.v[existing].id;
        else if ((new_id = tk_model_token_to_id(tok->model, content, t.len)) < 0) new_id = next_id++;
        if (id >= 0 && id != new_id)
            cp_warn("tokenizer.json: added token \"%s\" was expected to have id %ld but gets id %d", content, id, new_id);
        t.id = new_id;
        if (tk_added_add(&tok->added, &t)) return CP_ERR;
    }
    return CP_OK;
}

int tk_tokenizer_from_json(cp_tokenizer *tok, const cJSON *root) {
    if (!cJSON_IsObject(root)) return cp_error("expected a JSON object at the top level");
    if (tk_model_from_json(&tok->model, cJSON_GetObjectItemCaseSensitive(root, "model"), "model") ||
        tk_normalizer_from_json(&tok->normalizer, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer") ||
        tk_pretok_from_json(&tok->pretok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer") ||
        tk_postproc_from_json(&tok->postproc, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor") ||
        tk_decoder_from_json(&tok->decoder, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder") ||
        parse_added_tokens(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")))
        return CP_ERR;
    return CP_OK;
}

static int32_t find_token(const cp_tokenizer *tok, const char *s) {
    return cp_tokenizer_token_to_id(tok, s);
}

int tk_tokenizer_finish(cp_tokenizer *tok) {
    if (tk_added_build(&tok->added, tok->normalizer)) return CP_ERR;
    int32_t max_id = tk_model_max_id(tok->model);
    tok->added_min = INT32_MAX;
    tok->added_max = -1;
    for (size_t i = 0; i < tok->added.n; i++) {
        if (tok->added.v[i].id > max_id) max_id = tok->added.v[i].id;
        if (tok->added.v[i].id < tok->added_min) tok->added_min = tok->added.v[i].id;
        if (tok->added.v[i].id > tok->added_max) tok->added_max = tok->added.v[i].id;
    }
    tok->vocab_size = (size_t)(max_id + 1);
    free(tok->added_by_id_index);
    tok->added_by_id_index = NULL;
    if (tok->added.n) {
        size_t span = (size_t)(tok->added_max - tok->added_min + 1);
        tok->added_by_id_index = cp_malloc(span * sizeof *tok->added_by_id_index, "the added token index");
        if (!tok->added_by_id_index) return CP_ERR;
        for (size_t i = 0; i < span; i++) tok->added_by_id_index[i] = -1;
        for (size_t i = 0; i < tok->added.n; i++) /* later entries win */
            tok->added_by_id_index[tok->added.v[i].id - tok->added_min] = (int32_t)i;
    }
    if (tk_postproc_check_ids(tok->postproc, tok, "post_processor")) return CP_ERR;
    /* Per-id trim counts for ByteLevel / Roberta offset trimming. */
    tok->need_trim = tk_postproc_trims(tok->postproc);
    if (tok->need_trim) {
        int32_t mid = tk_model_max_id(tok->model);
        tok->trim_by_id = cp_calloc((size_t)(mid + 1) + 1, sizeof *tok->trim_by_id, "trim table");
        if (!tok->trim_by_id) return CP_ERR;
        for (int32_t id = 0; id <= mid; id++) {
            size_t l;
            const char *s = tk_model_id_to_token(tok->model, id, &l);
            if (s) tok->trim_by_id[id] = tk_trim_counts(s, l);
        }
    }
    tok->generation = atomic_fetch_add(&tokenizer_generation, 1);
    {
        /* Defaults before tokenizer_config.json: the conventional names the slow tokenizer classes
         * use (GPT-2: <|endoftext|> for bos, eos and unk; BERT: [PAD], [UNK]; Llama/T5: <s>, </s>,
         * <unk>, <pad>), when the vocabulary has them. tk_apply_config_specials overrides. */
        static const char *cands[4][4] = {
            {"<s>", "<|begin_of_text|>", "<|endoftext|>", NULL},
            {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL},
            {"<pad>", "[PAD]", "<|padding|>", NULL},
            {"<unk>", "[UNK]", "<|endoftext|>", NULL},
        };
        for (int r = 0; r < 4; r++) {
            tok->special[r] = CP_TOKEN_NONE;
            for (int k = 0; cands[r][k] && tok->special[r] == CP_TOKEN_NONE; k++)
                tok->special[r] = find_token(tok, cands[r][k]);
        }
    }
    return CP_OK;
}

static cp_tokenizer *tokenizer_new(void) {
    cp_tokenizer *tok = cp_calloc(1, sizeof *tok, "a tokenizer");
    if (!tok) return NULL;
    cp_strmap_init(&tok->added.by_content);
    for (int r = 0; r < 4; r++) tok->special[r] = CP_TOKEN_NONE;
    tok->add_bos = tok->add_eos = -1;
    return tok;
}

/* Parses a tokenizer.json document; it must be valid UTF-8 (serde_json requires it too). */
static int parse_doc(const char *json, size_t len, cJSON **root) {
    size_t valid = cp_utf8_valid_prefix(json, len);
    if (valid < len) {
        size_t line = 1;
        for (size_t i = 0; i < valid; i++) line += json[i] == '\n';
        return cp_error("not valid UTF-8 at byte %zu (line %zu)", valid, line);
    }
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!*root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        size_t line = 1;
        for (size_t i = 0; i < at && i < len; i++) line += json[i] == '\n';
        return cp_error("invalid JSON near byte %zu (line %zu)", at, line);
    }
    /* a key given twice keeps its last value, as in Python's json (io/json.h) */
    if (cp_json_keep_last(*root)) { cJSON_Delete(*root); *root = NULL; return CP_ERR; }
    return CP_OK;
}

int cp_tokenizer_load_json(cp_tokenizer **out, const char *json, size_t len) {
    *out = NULL;
    cJSON *root;
    if (parse_doc(json, len, &root)) return CP_ERR;
    cp_tokenizer *tok = tokenizer_new();
    int rc = tok ? tk_tokenizer_from_json(tok, root) : CP_ERR;
    cJSON_Delete(root);
    if (!rc) rc = tk_tokenizer_finish(tok);
    if (rc) { cp_tokenizer_free(tok); return CP_ERR; }
    *out = tok;
    return CP_OK;
}

int cp_tokenizer_load_file(cp_tokenizer **out, const char *path) {
    char *buf;
    size_t len;
    *out = NULL;
    if (tk_read_file(path, &buf, &len)) return CP_ERR;
    int rc = cp_tokenizer_load_json(out, buf, len);
    free(buf);
    if (rc) return cp_error_context("%s", path);
    return CP_OK;
}

static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int cp_tokenizer_load_dir(cp_tokenizer **out, const char *dir) {
    *out = NULL;
    char p1[4096], p2[4096];
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    cp_tokenizer *tok = NULL;
    int rc;
    if (file_exists(p1)) {
        char *buf;
        size_t len;
        if (tk_read_file(p1, &buf, &len)) return CP_ERR;
        cJSON *root;
        rc = parse_doc(buf, len, &root);
        free(buf);
        if (rc) return cp_error_context("%s", p1);
        tok = tokenizer_new();
        rc = tok ? tk_tokenizer_from_json(tok, root) : CP_ERR;
        cJSON_Delete(root);
        if (rc) { cp_tokenizer_free(tok); return cp_error_context("%s", p1); }
    } else {
        snprintf(p1, sizeof p1, "%s/vocab.json", dir);
        snprintf(p2, sizeof p2, "%s/merges.txt", dir);
        tok = tokenizer_new();
        if (!tok) return CP_ERR;
        if (file_exists(p1) && file_exists(p2)) rc = tk_load_vocab_merges(tok, p1, p2);
        else {
            snprintf(p1, sizeof p1, "%s/vocab.txt", dir);
            if (file_exists(p1)) rc = tk_load_vocab_txt(tok, p1, dir);
            else rc = cp_error("%s: no tokenizer.json, vocab.json + merges.txt or vocab.txt", dir);
        }
        if (rc) { cp_tokenizer_free(tok); return CP_ERR; }
    }
    rc = tk_load_config(tok, dir);
    if (!rc && (rc = tk_tokenizer_finish(tok))) cp_error_context("%s", p1);
    if (!rc) rc = tk_apply_config_specials(tok, dir);
    if (rc) { cp_tokenizer_free(tok); return CP_ERR; }
    *out = tok;
    return CP_OK;
}

/* ---- encoding ------------------------------------------------------------------------------------ */

typedef struct {
    const cp_tokenizer *tok;
    tk_enc *enc;
    int type_id;
    enc_state *st;
} enc_ctx;

/* When a word is encoded on its own with a prefix space (cp_tokenizer_encode_word), the space goes in
 * front of each piece the byte-level pre-tokenizer receives, as its add_prefix_space does. */
static int prefix_space(const cp_tokenizer *tok, tk_nstr *ns, int wanted) {
    if (!wanted || !tk_pretok_is_byte_level(tok->pretok) || (ns->len && ns->s[0] == ' ')) return CP_OK;
    return tk_nstr_prepend(ns, " ");
}

static int on_word(void *c, tk_nstr *w) {
    enc_ctx *x = c;
    const cp_tokenizer *tok = x->tok;
    tk_wordtoks *wt = &x->st->wt;
    wt->n = 0;
    if (tk_model_tokenize(tok->model, w->s, w->len, wt, &x->st->sc)) return CP_ERR;
    for (size_t i = 0; i < wt->n; i++) {
        size_t s, e;
        tk_nstr_convert(w, wt->starts[i], wt->ends[i], &s, &e);
        uint32_t trim = tok->need_trim && wt->ids[i] >= 0 && wt->ids[i] <= tk_model_max_id(tok->model)
                            ? tok->trim_by_id[wt->ids[i]] : 0;
        if (tk_enc_push(x->enc, wt->ids[i], s, e, 0, x->type_id, trim)) return CP_ERR;
    }
    return CP_OK;
}

static int push_added(enc_ctx *x, int32_t index, const char *value, size_t vlen, size_t s, size_t e) {
    const tk_added_token *t = &x->tok->added.v[index];
    uint32_t trim = x->tok->need_trim ? tk_trim_counts(value, vlen) : 0;
    return tk_enc_push(x->enc, t->id, s, e, 0, x->type_id, trim);
}

/* Encodes clean (valid UTF-8) text into enc (offsets in clean's bytes). */
static int encode_clean(const cp_tokenizer *tok, const char *text, size_t len, int type_id, int add_prefix,
                        tk_enc *enc, enc_state *st) {
    enc_ctx x = {tok, enc, type_id, st};
    if (tk_added_split(&tok->added, 0, text, len, &st->pieces)) return CP_ERR;
    /* pieces2 is reused below while pieces is being walked, so copy the outer list's count */
    size_t np = st->pieces.n;
    for (size_t i = 0; i < np; i++) {
        tk_piece pc = st->pieces.v[i];
        if (pc.start == pc.end) continue;
        if (pc.token >= 0) {
            if (push_added(&x, pc.token, text + pc.start, pc.end - pc.start, pc.start, pc.end)) return CP_ERR;
            continue;
        }
        tk_nstr ns = tk_nstr_view(text, pc.start, pc.end);
        int rc = tk_normalizer_apply(tok->normalizer, &ns);
        if (!rc && ns.len) {
            if (tok->added.norm_trie) {
                rc = tk_added_split(&tok->added, 1, ns.s, ns.len, &st->pieces2);
                for (size_t k = 0; k < st->pieces2.n && !rc; k++) {
                    tk_piece q = st->pieces2.v[k];
                    if (q.start == q.end) continue;
                    if (q.token >= 0) {
                        size_t s, e;
                        tk_nstr_convert(&ns, q.start, q.end, &s, &e);
                        rc = push_added(&x, q.token, ns.s + q.start, q.end - q.start, s, e);
                    } else {
                        tk_nstr sub = tk_nstr_slice(&ns, q.start, q.end);
                        rc = prefix_space(tok, &sub, add_prefix);
                        if (!rc) rc = tk_pretok_apply(tok->pretok, &sub, on_word, &x);
                        tk_nstr_free(&sub);
                    }
                }
            } else {
                rc = prefix_space(tok, &ns, add_prefix);
                if (!rc) rc = tk_pretok_apply(tok->pretok, &ns, on_word, &x);
            }
        }
        tk_nstr_free(&ns);
        if (rc) return rc;
    }
    return CP_OK;
}

/* One input text made UTF-8-clean: invalid sequences replaced by U+FFFD; map[r] is the input
 * offset of clean offset r (exact at char boundaries), NULL when the text was already clean. */
typedef struct { const char *s; size_t len; char *owned; size_t *map; } clean_text;

static void clean_free(clean_text *c) { free(c->owned); free(c->map); }

static int clean_prepare(const char *text, size_t len, clean_text *c) {
    memset(c, 0, sizeof *c);
    if (len > UINT32_MAX / 4) return cp_error("text of %zu bytes is too long to encode (limit 1 GiB)", len);
    c->s = text;
    c->len = len;
    if (cp_utf8_valid_prefix(text, len) == len) return CP_OK;
    size_t cap = len * 3 + 1;
    char *clean = cp_malloc(cap, "a UTF-8 repaired copy of the text");
    size_t *map = cp_malloc((cap + 1) * sizeof *map, "an offset map");
    if (!clean || !map) { free(clean); free(map); return CP_ERR; }
    size_t r = 0, o = 0;
    while (o < len) {
        size_t v = cp_utf8_valid_prefix(text + o, len - o);
        for (size_t k = 0; k < v; k++) { clean[r] = text[o + k]; map[r++] = o + k; }
        o += v;
        if (o < len) {
            size_t bad = cp_utf8_invalid_len(text + o, len - o);
            memcpy(clean + r, "\xEF\xBF\xBD", 3);
            map[r] = map[r + 1] = map[r + 2] = o; /* only map[r] is a boundary */
            r += 3;
            o += bad;
        }
    }
    map[r] = len;
    c->s = c->owned = clean;
    c->len = r;
    c->map = map;
    return CP_OK;
}

/* An offset inside a char moves back to the char's start. Byte-level tokens can end inside a char
 * and ByteLevel trimming can cut one; the `tokenizers` API that users see (Python, so transformers)
 * reports char offsets, where such a position falls to its char. Then clean → input offsets. */
static size_t final_offset(const clean_text *c, size_t o) {
    if (o < c->len)
        while (o > 0 && cp_utf8_is_continuation((unsigned char)c->s[o])) o--;
    if (c->map && o <= c->len) o = c->map[o];
    return o;
}

static int encode_sequence(const cp_tokenizer *tok, const clean_text *c, int seq, int add_prefix, tk_enc *enc,
                           enc_state *st) {
    size_t first = enc->n;
    if (encode_clean(tok, c->s, c->len, seq, add_prefix, enc, st)) return CP_ERR;
    for (size_t i = first; i < enc->n; i++) enc->seq[i] = (uint8_t)seq;
    return CP_OK;
}

static enc_state *get_state(const cp_tokenizer *tok, cp_encoding *out) {
    if (encoding_reserve(out, 16)) return NULL;
    ids_header *h = (ids_header *)out->ids - 1;
    if (!h->state) {
        h->state = cp_calloc(1, sizeof *h->state, "encoder state");
        if (!h->state) return NULL;
    }
    if (h->state->sc.gen != tok->generation) {
        tk_scratch_clear(&h->state->sc);
        h->state->sc.gen = tok->generation;
    }
    return h->state;
}

static int finish_encoding(const cp_tokenizer *tok, tk_enc *a, tk_enc *b, const clean_text *texts, int add,
                           cp_encoding *out) {
    tk_enc fin = {0};
    int rc = tk_postproc_apply(tok->postproc, tok, a, b, add, &fin);
    if (!rc) rc = encoding_reserve(out, fin.n + 1);
    if (!rc && fin.n) {
        memcpy(out->ids, fin.ids, fin.n * sizeof *fin.ids);
        for (size_t i = 0; i < fin.n; i++) {
            const clean_text *c = fin.seq[i] < 2 ? &texts[fin.seq[i]] : NULL;
            out->offsets[2 * i] = c ? final_offset(c, fin.offsets[2 * i]) : fin.offsets[2 * i];
            out->offsets[2 * i + 1] = c ? final_offset(c, fin.offsets[2 * i + 1]) : fin.offsets[2 * i + 1];
        }
        memcpy(out->special_mask, fin.special, fin.n);
        memcpy(out->type_ids, fin.type_ids, fin.n);
        out->n = fin.n;
    }
    tk_enc_free(&fin);
    return rc;
}

int cp_tokenizer_encode(const cp_tokenizer *tok, const char *text, size_t len, int add_special_tokens,
                        cp_encoding *out) {
    out->n = 0;
    enc_state *st = get_state(tok, out);
    if (!st) return CP_ERR;
    tk_enc a = {0};
    clean_text t[1];
    int rc = clean_prepare(text, len, &t[0]);
    if (rc) return rc;
    rc = encode_sequence(tok, &t[0], 0, 0, &a, st);
    if (!rc) rc = finish_encoding(tok, &a, NULL, t, add_special_tokens, out);
    tk_enc_free(&a);
    clean_free(&t[0]);
    return rc;
}

int cp_tokenizer_encode_pair(const cp_tokenizer *tok, const char *text_a, size_t len_a, const char *text_b,
                             size_t len_b, int add_special_tokens, cp_encoding *out) {
    out->n = 0;
    enc_state *st = get_state(tok, out);
    if (!st) return CP_ERR;
    tk_enc a = {0}, b = {0};
    clean_text t[2];
    int rc = clean_prepare(text_a, len_a, &t[0]);
    if (rc) return rc;
    if ((rc = clean_prepare(text_b, len_b, &t[1]))) { clean_free(&t[0]); return rc; }
    rc = encode_sequence(tok, &t[0], 0, 0, &a, st);
    if (!rc) rc = encode_sequence(tok, &t[1], 1, 0, &b, st);
    if (!rc) rc = finish_encoding(tok, &a, &b, t, add_special_tokens, out);
    tk_enc_free(&a);
    tk_enc_free(&b);
    clean_free(&t[0]);
    clean_free(&t[1]);
    return rc;
}

int cp_tokenizer_encode_word(const cp_tokenizer *tok, const char *word, size_t len, int add_prefix_space,
                             cp_encoding *out) {
    out->n = 0;
    enc_state *st = get_state(tok, out);
    if (!st) return CP_ERR;
    tk_enc a = {0};
    clean_text t[1];
    int rc = clean_prepare(word, len, &t[0]);
    if (rc) return rc;
    rc = encode_sequence(tok, &t[0], 0, add_prefix_space, &a, st);
    if (!rc) rc = finish_encoding(tok, &a, NULL, t, 0, out);
    tk_enc_free(&a);
    clean_free(&t[0]);
    return rc;
}

int cp_tokenizer_is_byte_level(const cp_tokenizer *tok) { return tk_pretok_is_byte_level(tok->pretok); }

/* Ids in a tk_enc of sequence seq, with zero offsets (they refer to no text). */
static int enc_from_ids(tk_enc *e, const int32_t *ids, size_t n, int seq) {
    for (size_t i = 0; i < n; i++) {
        if (tk_enc_push(e, ids[i], 0, 0, 0, seq, 0)) return CP_ERR;
        e->seq[i] = (uint8_t)seq;
    }
    return CP_OK;
}

int cp_tokenizer_post_process(const cp_tokenizer *tok, const int32_t *ids_a, size_t n_a, const int32_t *ids_b,
                              size_t n_b, cp_encoding *out) {
    out->n = 0;
    if (!get_state(tok, out)) return CP_ERR;
    tk_enc a = {0}, b = {0};
    clean_text t[2] = {{.s = ""}, {.s = ""}}; /* offsets stay 0 */
    int rc = enc_from_ids(&a, ids_a, n_a, 0);
    if (!rc && ids_b) rc = enc_from_ids(&b, ids_b, n_b, 1);
    if (!rc) rc = finish_encoding(tok, &a, ids_b ? &b : NULL, t, 1, out);
    tk_enc_free(&a);
    tk_enc_free(&b);
    return rc;
}

/* ---- decoding and lookups ------------------------------------------------------------------------ */

static const tk_added_token *added_for_id(const cp_tokenizer *tok, int32_t id) {
    if (!tok->added_by_id_index || id < tok->added_min || id > tok->added_max) return NULL;
    int32_t i = tok->added_by_id_index[id - tok->added_min];
    return i >= 0 ? &tok->added.v[i] : NULL;
}

const char *tk_id_to_token(const cp_tokenizer *tok, int32_t id, size_t *len) {
    const tk_added_token *t = added_for_id(tok, id);
    if (t) { *len = t->len; return t->content; }
    return tk_model_id_to_token(tok->model, id, len);
}

int cp_tokenizer_decode(const cp_tokenizer *tok, const int32_t *ids, size_t n, int skip_special_tokens, char **out,
                        size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    tk_strlist l = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        const tk_added_token *t = added_for_id(tok, ids[i]);
        const char *s;
        size_t len;
        if (t) {
            /* decoding uses the normalized form of normalized added tokens (simple_id_to_token) */
            s = t->norm_content ? t->norm_content : t->content;
            len = t->norm_content ? t->norm_len : t->len;
        } else {
            s = tk_model_id_to_token(tok->model, ids[i], &len);
        }
        if (!s) {
            rc = cp_error("id %d is not in the vocabulary (size %zu)", ids[i], tok->vocab_size);
            break;
        }
        if (skip_special_tokens) {
            /* is_special_token looks at the token string */
            int32_t ai = cp_strmap_get(&tok->added.by_content, s, len);
            if (ai >= 0 && tok->added.v[ai].special) continue;
        }
        rc = tk_strlist_push(&l, s, len);
    }
    tk_buf b = {0};
    if (!rc) {
        if (tok->decoder) {
            rc = tk_decoder_apply(tok->decoder, &l);
            for (size_t i = 0; i < l.n && !rc; i++) rc = tk_buf_append(&b, l.v[i], l.len[i]);
        } else {
            for (size_t i = 0; i < l.n && !rc; i++)
                rc = (i ? tk_buf_append(&b, " ", 1) : CP_OK) || tk_buf_append(&b, l.v[i], l.len[i]);
        }
    }
    if (!rc && tok->clean_up_spaces) rc = tk_clean_up_spaces(&b);
    tk_strlist_free(&l);
    if (!rc && !b.s) { b.s = cp_strdup(""); if (!b.s) rc = CP_ERR; }
    if (rc) { tk_buf_free(&b); return CP_ERR; }
    *out = b.s;
    if (out_len) *out_len = b.len;
    return CP_OK;
}

size_t cp_tokenizer_vocab_size(const cp_tokenizer *tok) { return tok->vocab_size; }

const char *cp_tokenizer_id_to_token(const cp_tokenizer *tok, int32_t id) {
    size_t len;
    return tk_id_to_token(tok, id, &len);
}

int32_t cp_tokenizer_token_to_id(const cp_tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    int32_t ai = cp_strmap_get(&tok->added.by_content, token, len);
    if (ai >= 0) return tok->added.v[ai].id;
    return tk_model_token_to_id(tok->model, token, len);
}

int cp_tokenizer_is_special(const cp_tokenizer *tok, int32_t id) {
    const tk_added_token *t = added_for_id(tok, id);
    return t && t->special;
}

int32_t cp_tokenizer_special_id(const cp_tokenizer *tok, cp_special_role role) {
    if ((unsigned)role > 3) return CP_TOKEN_NONE;
    return tok->special[role];
}

static const char *ROLE_NAMES[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};

int cp_tokenizer_require_special(const cp_tokenizer *tok, cp_special_role role, int32_t *id) {
    if ((unsigned)role > 3) return cp_error("unknown special token role %d", (int)role);
    if (tok->special[role] == CP_TOKEN_NONE)
        return cp_error("Using %s, but it is not set yet.", ROLE_NAMES[role]);
    *id = tok->special[role];
    return CP_OK;
}

int cp_tokenizer_set_special(cp_tokenizer *tok, cp_special_role role, const char *token) {
    if ((unsigned)role > 3) return cp_error("unknown special token role %d", (int)role);
    if (!token) { tok->special[role] = CP_TOKEN_NONE; return CP_OK; }
    int32_t id = cp_tokenizer_token_to_id(tok, token);
    if (id < 0) return cp_error("%s \"%s\" is not in the vocabulary", ROLE_NAMES[role], token);
    tok->special[role] = id;
    return CP_OK;
}

/* Whether encoding adds bos (which 0) or eos (which 1): what tokenizer_config.json says, else what
 * the post-processor adds. */
static int adds_special(const cp_tokenizer *tok, int which) {
    const int said = which ? tok->add_eos : tok->add_bos;
    if (said >= 0) return said;
    int adds[2];
    int32_t first, last;
    tk_postproc_added(tok->postproc, tok, &adds[0], &adds[1], &first, &last);
    return adds[which];
}

int cp_tokenizer_adds_bos(const cp_tokenizer *tok) { return adds_special(tok, 0); }
int cp_tokenizer_adds_eos(const cp_tokenizer *tok) { return adds_special(tok, 1); }
