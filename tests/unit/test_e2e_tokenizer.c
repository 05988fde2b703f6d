/*
 * test_e2e_tokenizer.c — the tokenizer of the seq2seq demo's starting model (data/e2e-nlg/tiny-t5, a
 * Unigram vocabulary trained by `tokenizers` on the E2E devset: NFKC, WhitespaceSplit + Metaspace,
 * "$A </s>") gives the ids `tokenizers` gives on E2E lines (the devset's and test set's first and
 * last MRs and references, a line with test-set characters, odd whitespace and Unicode).
 *
 * Fixture: tests/fixtures/tokenizers/e2e-tiny-t5/expected.json, from
 * tests/reference/make_e2e_tiny_model.py (the same run that wrote the model directory). The
 * tokenizer is loaded both as a file and as the model directory (with tokenizer_config.json, as
 * `cpeft train` and `cpeft eval-generate` load it).
 */
#include "test.h"

#include "cpeft.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define MODEL "data/e2e-nlg/tiny-t5"
#define FIXTURE "tests/fixtures/tokenizers/e2e-tiny-t5/expected.json"

static cJSON *fixture;

/* 1 when the JSON array arr holds exactly the n ids of v. */
static int same_ids(const cJSON *arr, const int32_t *v, size_t n) {
    size_t i = 0;
    for (const cJSON *e = arr ? arr->child : NULL; e; e = e->next, i++)
        if (i >= n || (int32_t)e->valuedouble != v[i]) return 0;
    return i == n;
}

/* Every case of the fixture through tok: ids with and without </s>, decoded text; returns the
 * number of cases that differ and counts the tokens compared. */
static int compare(const cp_tokenizer *tok, const char *label) {
    cp_encoding enc = {0};
    int cases = 0, bad = 0;
    size_t tokens = 0;
    for (const cJSON *c = cJSON_GetObjectItem(fixture, "cases")->child; c; c = c->next, cases++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int ok = cp_tokenizer_encode(tok, text, strlen(text), 1, &enc) == CP_OK &&
                 same_ids(cJSON_GetObjectItem(c, "ids"), enc.ids, enc.n);
        tokens += enc.n;
        char *dec = NULL;
        ok = ok && cp_tokenizer_decode(tok, enc.ids, enc.n, 1, &dec, NULL) == CP_OK &&
             !strcmp(dec, cJSON_GetObjectItem(c, "decoded_skip_special")->valuestring);
        free(dec);
        ok = ok && cp_tokenizer_encode(tok, text, strlen(text), 0, &enc) == CP_OK &&
             same_ids(cJSON_GetObjectItem(c, "ids_no_special"), enc.ids, enc.n);
        if (!ok) { fprintf(stderr, "  %s: \"%s\" differs from tokenizers\n", label, text); bad++; }
    }
    printf("     %s: %d lines, %zu tokens compared (ids with and without </s>, decoded text): %d differ\n",
           label, cases, tokens, bad);
    cp_encoding_free(&enc);
    return bad;
}

TEST(tokenizer_json_matches_tokenizers) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, MODEL "/tokenizer.json"));
    if (!tok) return;
    CHECK(compare(tok, "tokenizer.json") == 0, "ids differ");
    CHECK(cp_tokenizer_vocab_size(tok) == 994, "vocabulary %zu, expected 994", cp_tokenizer_vocab_size(tok));
    cp_tokenizer_free(tok);
}

TEST(model_directory_matches_tokenizers) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, MODEL));
    if (!tok) return;
    CHECK(compare(tok, MODEL) == 0, "ids differ");
    cp_tokenizer_free(tok);
}

int main(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(FIXTURE, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        rewind(f);
        text = malloc(len + 1);
        if (text && fread(text, 1, len, f) == len) fixture = cJSON_ParseWithLength(text, len);
        fclose(f);
    }
    free(text);
    if (!fixture) {
        fprintf(stderr, "cannot read %s\n", FIXTURE);
        return 1;
    }
    RUN(tokenizer_json_matches_tokenizers);
    RUN(model_directory_matches_tokenizers);
    cJSON_Delete(fixture);
    return test_summary();
}
