/*
 * models.h — the model struct shared by bpe.c, wordpiece.c, unigram.c and models.c (internal).
 */
#ifndef CP_TOKENIZER_MODELS_H
#define CP_TOKENIZER_MODELS_H

#include "tokenizer/internal.h"

struct tk_model {
    tk_model_type type;
    cp_strmap vocab;          /* token → id */
    const char **vocab_r;     /* id → token (into vocab's storage or the model's), NULL for holes */
    uint32_t *vocab_r_len;
    int32_t max_id;
    void *impl;               /* the model's own data */
};

/* Fills vocab_r from vocab. */
int tk_model_build_reverse(tk_model *m);
int tk_model_parse_vocab_object(cp_strmap *map, const cJSON *v, const char *path);

int tk_bpe_from_json(tk_model **out, const cJSON *j, const char *path);
int tk_bpe_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc);
void tk_bpe_free_impl(tk_model *m);

int tk_wordpiece_from_json(tk_model **out, const cJSON *j, const char *path);
int tk_wordlevel_from_json(tk_model **out, const cJSON *j, const char *path);
int tk_wordpiece_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out);
int tk_wordlevel_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out);
void tk_wordpiece_free_impl(tk_model *m);

int tk_unigram_from_json(tk_model **out, const cJSON *j, const char *path);
int tk_unigram_tokenize(const tk_model *m, const char *s, size_t len, tk_wordtoks *out, tk_scratch *sc);
void tk_unigram_free_impl(tk_model *m);

#endif
