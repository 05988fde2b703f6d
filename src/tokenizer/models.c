/*
 * models.c — the `model` slot: what BPE, WordPiece, WordLevel and Unigram share (the vocabulary
 * in both directions) and the dispatch to each model's own file.
 */
#include "tokenizer/internal.h"
#include "tokenizer/models.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *SUPPORTED = "BPE, Unigram, WordLevel, WordPiece";

int tk_model_build_reverse(tk_model *m) {
    int32_t max_id = -1;
    for (size_t i = 0; i < m->vocab.n; i++)
        if (m->vocab.entries[i].value > max_id) max_id = m->vocab.entries[i].value;
    m->max_id = max_id;
    /* ids index arrays: they must be dense enough (HF allows holes, but not billions of them) */
    if (max_id >= 0 && (size_t)max_id > 4 * m->vocab.n + (1u << 20))
        return cp_error("model.vocab: id %d is far beyond the %zu vocabulary entries (ids must be "
                        "0..size-1, with few holes)", max_id, m->vocab.n);
    size_t n = (size_t)(max_id + 1);
    m->vocab_r = cp_calloc(n ? n : 1, sizeof *m->vocab_r, "the reverse vocabulary");
    m->vocab_r_len = cp_calloc(n ? n : 1, sizeof *m->vocab_r_len, "the reverse vocabulary");
    if (!m->vocab_r || !m->vocab_r_len) return CP_ERR;
    for (size_t i = 0; i < m->vocab.n; i++) {
        int32_t id = m->vocab.entries[i].value;
        if (id < 0) continue;
        m->vocab_r[id] = m->vocab.entries[i].key;
        m->vocab_r_len[id] = m->vocab.entries[i].len;
    }
    return CP_OK;
}

/* Parses an object {token: id, ...} into map. */
int tk_model_parse_vocab_object(cp_strmap *map, const cJSON *v, const char *path) {
    if (!cJSON_IsObject(v))
        return cp_error("%s: expected an object mapping token strings to ids", path);
    long count = 0;
    for (const cJSON *e = v->child; e; e = e->next, count++) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 2147483647.0 ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            return cp_error("%s[\"%s\"]: expected a non-negative integer id", path, e->string ? e->string : "");
        if (cp_strmap_put(map, e->string, strlen(e->string), (int32_t)e->valuedouble)) return CP_ERR;
    }
    return CP_OK;
}

int tk_model_from_json(tk_model **out, const cJSON *j, const char *path) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return cp_error("%s: missing (a tokenizer needs a model: %s)", path, SUPPORTED);
    const char *type;
    if (tk_json_type(j, path, &type)) return CP_ERR;
    if (!type) { /* untagged (old files): infer from the fields */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "vocab");
        if (cJSON_GetObjectItemCaseSensitive(j, "merges")) type = "BPE";
        else if (cJSON_IsArray(v)) type = "Unigram";
        else if (cJSON_GetObjectItemCaseSensitive(j, "continuing_subword_prefix") ||
                 cJSON_GetObjectItemCaseSensitive(j, "max_input_chars_per_word")) type = "WordPiece";
        else if (v) type = "WordLevel";
        else return cp_error("%s: missing \"type\" (supported: %s)", path, SUPPORTED);
    }
    if (strcmp(type, "BPE") == 0) return tk_bpe_from_json(out, j, path);
    if (strcmp(type, "WordPiece") == 0) return tk_wordpiece_from_json(out, j, path);
    if (strcmp(type, "WordLevel") == 0) return tk_wordlevel_from_json(out, j, path);
    if (strcmp(type, "Unigram") == 0) return tk_unigram_from_json(out, j, path);
    return cp_error("%s: unknown model type \"%s\" (supported: %s)", path, type, SUPPORTED);
}

void tk_model_free(tk_model *m) {
    if (!m) return;
    switch (m->type) {
    case TK_MODEL_BPE: tk_bpe_free_impl(m); break;
    case TK_MODEL_WORDPIECE: case TK_MODEL_WORDLEVEL: tk_wordpiece_free_impl(m); break;
    case TK_MODEL_UNIGRAM: tk_unigram_free_impl(m); break;
    }
    cp_strmap_free(&m->vocab);
    free(m->vocab_r);
    free(m->vocab_r_len);
    free(m);
}

int tk_model_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc) {
    switch (m->type) {
    case TK_MODEL_BPE: return tk_bpe_tokenize(m, s, len, out, sc);
    case TK_MODEL_WORDPIECE: return tk_wordpiece_tokenize(m, s, len, out);
    case TK_MODEL_WORDLEVEL: return tk_wordlevel_tokenize(m, s, len, out);
    case TK_MODEL_UNIGRAM: return tk_unigram_tokenize(m, s, len, out, sc);
    }
    return CP_OK;
}

int32_t tk_model_token_to_id(const tk_model *m, const char *s, size_t len) {
    return cp_strmap_get(&m->vocab, s, len);
}

const char *tk_model_id_to_token(const tk_model *m, int32_t id, size_t *len) {
    if (id < 0 || id > m->max_id || !m->vocab_r[id]) return NULL;
    *len = m->vocab_r_len[id];
    return m->vocab_r[id];
}

size_t tk_model_vocab_size(const tk_model *m) { return m->vocab.n; }
int32_t tk_model_max_id(const tk_model *m) { return m->max_id; }
tk_model_type tk_model_kind(const tk_model *m) { return m->type; }
