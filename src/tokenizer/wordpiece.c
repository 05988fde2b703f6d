/*
 * wordpiece.c — the WordPiece model (BERT) and the WordLevel model (one token per word).
 *
 * WordPiece: greedy longest match first. From each start, the longest substring that is in the
 * vocabulary (with the "##" continuing prefix after the first piece) is taken; if some start has
 * no match, or the word has more than max_input_chars_per_word chars, the whole word becomes the
 * unk token. Words are at most 100 chars by default, so the quadratic search is bounded.
 */
#include "tokenizer/models.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *unk_token;
    char *prefix;
    size_t prefix_len;
    long max_chars;
} wordpiece;

void tk_wordpiece_free_impl(tk_model *m) {
    wordpiece *w = m->impl;
    if (!w) return;
    free(w->unk_token);
    free(w->prefix);
    free(w);
    m->impl = NULL;
}

static int create(tk_model **out, tk_model_type type, cp_strmap *vocab, const char *unk,
                  const char *prefix, long max_chars) {
    tk_model *m = cp_calloc(1, sizeof *m, "a WordPiece model");
    wordpiece *w = m ? cp_calloc(1, sizeof *w, "a WordPiece model") : NULL;
    if (!w) { free(m); cp_strmap_free(vocab); return CP_ERR; }
    m->type = type;
    m->impl = w;
    m->vocab = *vocab;
    memset(vocab, 0, sizeof *vocab);
    w->unk_token = cp_strdup(unk);
    w->prefix = cp_strdup(prefix ? prefix : "");
    w->prefix_len = strlen(w->prefix ? w->prefix : "");
    w->max_chars = max_chars;
    if (!w->unk_token || !w->prefix || tk_model_build_reverse(m)) { tk_model_free(m); return CP_ERR; }
    *out = m;
    return CP_OK;
}

int tk_wordpiece_create(tk_model **out, cp_strmap *vocab, const char *unk_token, const char *prefix,
                        int max_input_chars_per_word) {
    return create(out, TK_MODEL_WORDPIECE, vocab, unk_token, prefix, max_input_chars_per_word);
}

/* WordPiece and WordLevel share "unk_token" and "vocab"; WordPiece adds its subword prefix and
 * its limit on word length. */
static int from_json(tk_model **out, tk_model_type type, const cJSON *j, const char *path) {
    const int wp = type == TK_MODEL_WORDPIECE;
    const char *unk, *prefix = "";
    long max_chars = 0;
    char p[256];
    if (tk_json_str(j, "unk_token", wp ? "[UNK]" : "<unk>", 0, &unk, path) ||
        (wp && tk_json_str(j, "continuing_subword_prefix", "##", 0, &prefix, path)) ||
        (wp && tk_json_int(j, "max_input_chars_per_word", 100, 0, INT32_MAX, &max_chars, path)))
        return CP_ERR;
    cp_strmap vocab;
    cp_strmap_init(&vocab);
    if (tk_model_parse_vocab_object(&vocab, cJSON_GetObjectItemCaseSensitive(j, "vocab"),
                                    tk_path(p, sizeof p, path, "vocab", 0))) {
        cp_strmap_free(&vocab);
        return CP_ERR;
    }
    return create(out, type, &vocab, unk, prefix, max_chars);
}

int tk_wordpiece_from_json(tk_model **out, const cJSON *j, const char *path) {
    return from_json(out, TK_MODEL_WORDPIECE, j, path);
}

int tk_wordlevel_from_json(tk_model **out, const cJSON *j, const char *path) {
    return from_json(out, TK_MODEL_WORDLEVEL, j, path);
}

static int push_unk(const tk_model *m, const wordpiece *w, size_t len, tk_wordtoks *out) {
    int32_t id = cp_strmap_get(&m->vocab, w->unk_token, strlen(w->unk_token));
    if (id < 0) return cp_error("unk_token \"%s\" is not in the vocabulary", w->unk_token);
    return tk_wordtoks_push(out, id, 0, len);
}

int tk_wordpiece_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out) {
    const wordpiece *w = m->impl;
    size_t nchars = 0;
    for (size_t i = 0; i < len; i += cp_utf8_len((unsigned char)s[i])) nchars++;
    if ((long)nchars > w->max_chars) return push_unk(m, w, len, out);
    size_t first = out->n;
    char stackbuf[512];
    char *buf = len + w->prefix_len <= sizeof stackbuf ? stackbuf : cp_malloc(len + w->prefix_len, "a word");
    if (!buf) return CP_ERR;
    memcpy(buf, w->prefix, w->prefix_len);
    size_t start = 0;
    int bad = 0, rc = CP_OK;
    while (start < len) {
        size_t end = len;
        int32_t id = -1;
        while (start < end) {
            if (start > 0) {
                memcpy(buf + w->prefix_len, s + start, end - start);
                id = cp_strmap_get(&m->vocab, buf, w->prefix_len + end - start);
            } else {
                id = cp_strmap_get(&m->vocab, s, end);
            }
            if (id >= 0) break;
            /* step back one char */
            size_t e = end - 1;
            while (e > start && cp_utf8_is_continuation((unsigned char)s[e])) e--;
            end = e;
        }
        if (id < 0) { bad = 1; break; }
        if ((rc = tk_wordtoks_push(out, id, start, end))) break;
        start = end;
    }
    if (buf != stackbuf) free(buf);
    if (rc) return rc;
    if (bad) {
        out->n = first;
        return push_unk(m, w, len, out);
    }
    return CP_OK;
}

int tk_wordlevel_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out) {
    const wordpiece *w = m->impl;
    int32_t id = cp_strmap_get(&m->vocab, s, len);
    if (id >= 0) return tk_wordtoks_push(out, id, 0, len);
    return push_unk(m, w, len, out);
}
