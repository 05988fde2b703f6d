/*
 * test_tokenizer.c — tokenizer parity with Hugging Face `tokenizers`, the notebook's checks, and
 * bad input.
 *
 * Fixtures come from tests/reference/tokenizer_fixtures.py: for each tokenizer, every string of a
 * mixed corpus (prose, code, whitespace runs, emoji, CJK, combining accents, invalid UTF-8, special
 * tokens in text) with the ids, byte offsets, type ids, special-token mask and decoded text the
 * real library gives. Everything is compared exactly; each parity test prints what it compared.
 * Each tokenizer also has hard.json: code points BertNormalizer's clean_text keeps or removes and
 * NUL bytes, with the decoded text as base64 (it may hold NULs, compared with their length).
 * The GPT-2 files and BERT vocabularies are read from ../shared/data (beside the repository).
 */
#include "test.h"
#include "tokenizer/internal.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIX "tests/fixtures/tokenizers/"
#define SHARED "../shared/data/"

static cJSON *load_json(const char *path) {
    char *buf;
    size_t len;
    if (tk_read_file(path, &buf, &len)) return NULL;
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    return j;
}

static size_t b64_decode(const char *in, char **out) {
    size_t n = strlen(in);
    char *o = malloc(n / 4 * 3 + 4);
    size_t k = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        int c = in[i], v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
                         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : 63;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; o[k++] = (char)(acc >> bits); }
    }
    o[k] = '\0';
    *out = o;
    return k;
}

static int ints_equal(const cJSON *arr, const int32_t *v, size_t n, size_t *first_diff) {
    size_t i = 0;
    const cJSON *e = arr ? arr->child : NULL;
    for (; e && i < n; e = e->next, i++)
        if ((int32_t)e->valuedouble != v[i]) { *first_diff = i; return 0; }
    *first_diff = i;
    return !e && i == n;
}

/* Compares one tokenizer with its expected.json; returns the number of mismatching strings. */
static int check_parity(const cp_tokenizer *tok, const char *name, const char *expected_path, int check_offsets) {
    cJSON *doc = load_json(expected_path);
    CHECK(doc != NULL, "%s: cannot read %s", name, expected_path);
    if (!doc) return 1;
    const cJSON *cases = cJSON_GetObjectItem(doc, "cases");
    size_t strings = 0, tokens = 0, bad = 0;
    cp_encoding enc = {0}, enc0 = {0};
    int32_t *tmp = NULL;
    for (const cJSON *c = cases->child; c; c = c->next) {
        char *text;
        size_t len = b64_decode(cJSON_GetObjectItem(c, "text_b64")->valuestring, &text);
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *offs = cJSON_GetObjectItem(c, "offsets");
        int ok = 1;
        size_t d = 0;
        if (cp_tokenizer_encode(tok, text, len, 1, &enc) != CP_OK) {
            fprintf(stderr, "  %s: encode failed: %s\n", name, cp_last_error());
            ok = 0;
        } else if (!ints_equal(ids, enc.ids, enc.n, &d)) {
            fprintf(stderr, "  %s: ids differ at token %zu (got %zu tokens, want %d) for \"%.60s\"\n", name, d, enc.n,
                    cJSON_GetArraySize(ids), text);
            const cJSON *w = cJSON_GetArrayItem(ids, (int)d);
            fprintf(stderr, "    got id %d, want %d\n", d < enc.n ? enc.ids[d] : -1, w ? (int)w->valuedouble : -1);
            ok = 0;
        } else {
            size_t i = 0;
            for (const cJSON *o = offs->child; o && check_offsets; o = o->next, i++) {
                size_t s = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble, e = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble;
                if (enc.offsets[2 * i] != s || enc.offsets[2 * i + 1] != e) {
                    fprintf(stderr, "  %s: offsets of token %zu (id %d) are (%zu, %zu), want (%zu, %zu) in \"%.60s\"\n",
                            name, i, enc.ids[i], enc.offsets[2 * i], enc.offsets[2 * i + 1], s, e, text);
                    ok = 0;
                    break;
                }
            }
            i = 0;
            for (const cJSON *t = cJSON_GetObjectItem(c, "type_ids")->child; t && ok; t = t->next, i++)
                if (enc.type_ids[i] != (int)t->valuedouble) { fprintf(stderr, "  %s: type id %zu differs\n", name, i); ok = 0; }
            i = 0;
            for (const cJSON *t = cJSON_GetObjectItem(c, "special_tokens_mask")->child; t && ok; t = t->next, i++)
                if (enc.special_mask[i] != (int)t->valuedouble) { fprintf(stderr, "  %s: special mask %zu differs\n", name, i); ok = 0; }
        }
        if (ok && cp_tokenizer_encode(tok, text, len, 0, &enc0) == CP_OK &&
            !ints_equal(cJSON_GetObjectItem(c, "ids_no_special"), enc0.ids, enc0.n, &d)) {
            fprintf(stderr, "  %s: ids without special tokens differ at %zu for \"%.60s\"\n", name, d, text);
            ok = 0;
        }
        /* decode the expected ids (not ours) so a decode bug shows even when encoding differs */
        int n = cJSON_GetArraySize(ids);
        tmp = realloc(tmp, (size_t)(n + 1) * sizeof *tmp);
        int k = 0;
        for (const cJSON *e = ids->child; e; e = e->next) tmp[k++] = (int32_t)e->valuedouble;
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL, *want = NULL;
            size_t out_len = 0, want_len;
            /* hard.json gives the decoded bytes as base64 (they may hold NUL); expected.json gives
             * text, which cJSON cuts at a "\u0000", so there only the part before a NUL is compared
             * (hard.json has NULs in the middle and at the end for every tokenizer) */
            const cJSON *b64 = cJSON_GetObjectItem(c, skip ? "decoded_skip_special_b64" : "decoded_b64");
            if (b64) want_len = b64_decode(b64->valuestring, &want);
            else {
                want = strdup(cJSON_GetObjectItem(c, skip ? "decoded_skip_special" : "decoded")->valuestring);
                want_len = strlen(want);
            }
            int rc = cp_tokenizer_decode(tok, tmp, (size_t)n, skip, &out, &out_len);
            if (rc == CP_OK && !b64) out_len = strlen(out);
            if (rc != CP_OK) {
                fprintf(stderr, "  %s: decode failed: %s\n", name, cp_last_error());
                ok = 0;
            } else if (out_len != want_len || memcmp(out, want, want_len) != 0) {
                fprintf(stderr, "  %s: decode(skip_special=%d) gives %zu bytes \"%.80s\", want %zu bytes \"%.80s\"\n", name,
                        skip, out_len, out, want_len, want);
                ok = 0;
            }
            free(out);
            free(want);
        }
        strings++;
        tokens += (size_t)n;
        if (!ok) bad++;
        free(text);
    }
    /* pairs */
    size_t pairs = 0;
    for (const cJSON *p = cJSON_GetObjectItem(doc, "pairs")->child; p; p = p->next) {
        const char *a = cJSON_GetObjectItem(p, "a")->valuestring, *b = cJSON_GetObjectItem(p, "b")->valuestring;
        size_t d;
        int ok = cp_tokenizer_encode_pair(tok, a, strlen(a), b, strlen(b), 1, &enc) == CP_OK &&
                 ints_equal(cJSON_GetObjectItem(p, "ids"), enc.ids, enc.n, &d);
        size_t i = 0;
        for (const cJSON *t = cJSON_GetObjectItem(p, "type_ids")->child; t && ok; t = t->next, i++)
            if (enc.type_ids[i] != (int)t->valuedouble) ok = 0;
        if (!ok) { fprintf(stderr, "  %s: pair (\"%s\", \"%s\") differs\n", name, a, b); bad++; }
        pairs++;
    }
    printf("     %s: %zu strings, %zu tokens, %zu pairs compared (ids%s, type ids, special mask, decoded text): %zu differ\n",
           name, strings, tokens, pairs, check_offsets ? ", byte offsets" : "", bad);
    free(tmp);
    cp_encoding_free(&enc);
    cp_encoding_free(&enc0);
    cJSON_Delete(doc);
    return (int)bad;
}

/* The corpus (expected.json) and the hard cases (hard.json) of one fixture directory. */
static void parity_dir(const cp_tokenizer *tok, const char *dir, const char *label) {
    static const char *files[2] = {"expected.json", "hard.json"};
    for (int f = 0; f < 2; f++) {
        char exp[512], what[300];
        snprintf(exp, sizeof exp, FIX "%s/%s", dir, files[f]);
        snprintf(what, sizeof what, "%s %s", label, files[f]);
        CHECK(check_parity(tok, what, exp, 1) == 0, "%s: parity", what);
    }
}

static void parity_file(const char *name, const char *tokenizer_json) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, tokenizer_json));
    if (!tok) return;
    parity_dir(tok, name, name);
    cp_tokenizer_free(tok);
}

TEST(gpt2_tokenizer_json) { parity_file("gpt2", SHARED "gpt2-tokenizer/tokenizer.json"); }
TEST(bert_uncased_tokenizer_json) { parity_file("bert-uncased", FIX "bert-uncased/tokenizer.json"); }
TEST(llama_bpe_byte_fallback) { parity_file("llama", FIX "llama/tokenizer.json"); }
TEST(llama_legacy_prepend_normalizer) { parity_file("llama-legacy", FIX "llama-legacy/tokenizer.json"); }
TEST(t5_unigram_precompiled) { parity_file("t5", FIX "t5/tokenizer.json"); }
TEST(roberta_processing) { parity_file("roberta", FIX "roberta/tokenizer.json"); }
TEST(misc_bpe_normalizers) { parity_file("misc-bpe", FIX "misc-bpe/tokenizer.json"); }
TEST(misc_wordlevel_splits) { parity_file("misc-wordlevel", FIX "misc-wordlevel/tokenizer.json"); }

/* The older file forms give the same ids as the tokenizer.json transformers builds from them. */
TEST(gpt2_vocab_json_merges_txt) {
    cp_tokenizer *tok = calloc(1, sizeof *tok);
    tk_strmap_init(&tok->added.by_content);
    tok->add_bos = tok->add_eos = -1;
    CHECK_OK(tk_load_vocab_merges(tok, SHARED "gpt2-tokenizer/encoder.json", SHARED "gpt2-tokenizer/vocab.bpe"));
    CHECK_OK(tk_tokenizer_finish(tok));
    parity_dir(tok, "gpt2", "gpt2 (encoder.json + vocab.bpe)");
    cp_tokenizer_free(tok);
}

static void vocab_txt(const char *name, const char *file) {
    cp_tokenizer *tok = calloc(1, sizeof *tok);
    tk_strmap_init(&tok->added.by_content);
    tok->add_bos = tok->add_eos = -1;
    CHECK_OK(tk_load_vocab_txt(tok, file, "tests/fixtures/tokenizers/no-such-dir"));
    CHECK_OK(tk_tokenizer_finish(tok));
    char label[256];
    snprintf(label, sizeof label, "%s (vocab.txt)", name);
    parity_dir(tok, name, label);
    cp_tokenizer_free(tok);
}

TEST(bert_uncased_vocab_txt) { vocab_txt("bert-uncased", SHARED "bert-vocab/bert-base-uncased-vocab.txt"); }
TEST(bert_cased_vocab_txt) { vocab_txt("bert-cased", SHARED "bert-vocab/bert-base-cased-vocab.txt"); }

/* The notebook: bos and eos are <|endoftext|> (50256), 21106 is "Below", pad is not set. */
TEST(notebook_gpt2_checks) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_dir(&tok, SHARED "gpt2-tokenizer"));
    if (!tok) return;
    cJSON *nb = load_json(FIX "gpt2/notebook.json");
    CHECK(nb != NULL, "notebook.json");
    int32_t bos = cp_tokenizer_special_id(tok, CP_SPECIAL_BOS), eos = cp_tokenizer_special_id(tok, CP_SPECIAL_EOS);
    CHECK(bos == 50256 && eos == 50256, "bos %d eos %d", bos, eos);
    CHECK(bos == (int)cJSON_GetObjectItem(nb, "bos_token_id")->valuedouble, "bos id as transformers");
    CHECK(strcmp(cp_tokenizer_id_to_token(tok, bos), cJSON_GetObjectItem(nb, "bos_token")->valuestring) == 0, "bos token");
    CHECK(strcmp(cp_tokenizer_id_to_token(tok, 21106), cJSON_GetObjectItem(nb, "id_21106")->valuestring) == 0,
          "id 21106 is %s", cp_tokenizer_id_to_token(tok, 21106));
    CHECK(cp_tokenizer_special_id(tok, CP_SPECIAL_PAD) == CP_TOKEN_NONE, "pad must be unset");
    int32_t pad;
    CHECK_ERR(cp_tokenizer_require_special(tok, CP_SPECIAL_PAD, &pad),
              cJSON_GetObjectItem(nb, "pad_message")->valuestring);
    /* training's documented default: pad = eos */
    CHECK_OK(cp_tokenizer_set_special(tok, CP_SPECIAL_PAD, "<|endoftext|>"));
    CHECK_OK(cp_tokenizer_require_special(tok, CP_SPECIAL_PAD, &pad));
    CHECK(pad == 50256, "pad %d", pad);
    CHECK(cp_tokenizer_vocab_size(tok) == 50257, "vocab size %zu", cp_tokenizer_vocab_size(tok));
    CHECK(cp_tokenizer_token_to_id(tok, "Below") == 21106, "token_to_id");
    CHECK(!cp_tokenizer_adds_bos(tok) && !cp_tokenizer_adds_eos(tok), "GPT-2 adds nothing");
    cJSON_Delete(nb);
    cp_tokenizer_free(tok);
}

/* 1 MB of one character, and 1 MB without spaces: linear time (the BPE uses a heap). */
TEST(long_words_are_not_quadratic) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, SHARED "gpt2-tokenizer/tokenizer.json"));
    if (!tok) return;
    size_t n = 1 << 20;
    char *s = malloc(n + 1);
    const char *pat[2] = {"a", "abcdefghijklmnopqrstuvwxyz0123"};
    for (int k = 0; k < 2; k++) {
        size_t pl = strlen(pat[k]);
        for (size_t i = 0; i < n; i++) s[i] = pat[k][i % pl];
        s[n] = '\0';
        cp_encoding enc = {0};
        clock_t t0 = clock();
        CHECK_OK(cp_tokenizer_encode(tok, s, n, 0, &enc));
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        char *back = NULL;
        size_t back_len = 0;
        CHECK_OK(cp_tokenizer_decode(tok, enc.ids, enc.n, 0, &back, &back_len));
        CHECK(back && back_len == n && strcmp(back, s) == 0, "round trip of 1 MB word");
        CHECK(secs < 10, "1 MB word took %.2f s", secs);
        printf("     1 MiB word \"%s...\": %zu tokens in %.3f s\n", k ? "abcd" : "aaaa", enc.n, secs);
        free(back);
        cp_encoding_free(&enc);
    }
    /* a 1 MB run of spaces goes through the \s+(?!\S) regex */
    memset(s, ' ', n);
    cp_encoding enc = {0};
    CHECK_OK(cp_tokenizer_encode(tok, s, n, 0, &enc));
    CHECK(enc.n > 0, "spaces");
    cp_encoding_free(&enc);
    free(s);
    cp_tokenizer_free(tok);
}

/* Bad input: clear errors naming the field, never a crash. */
TEST(bad_tokenizer_json) {
    cp_tokenizer *tok = NULL;
    CHECK_ERR(cp_tokenizer_load_json(&tok, "{", 1), "invalid JSON");
    CHECK_ERR(cp_tokenizer_load_json(&tok, "[]", 2), "expected a JSON object");
    CHECK_ERR(cp_tokenizer_load_json(&tok, "{}", 2), "model");
    const char *unknown_model = "{\"model\": {\"type\": \"Magic\", \"vocab\": {}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, unknown_model, strlen(unknown_model)), "unknown model type \"Magic\" (supported: BPE");
    const char *unknown_norm = "{\"normalizer\": {\"type\": \"Shout\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}, \"unk_token\": \"a\"}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, unknown_norm, strlen(unknown_norm)), "normalizer: unknown normalizer type \"Shout\" (supported: BertNormalizer");
    const char *unknown_pre = "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Whitespace\"}, {\"type\": \"Nope\"}]}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, unknown_pre, strlen(unknown_pre)), "pre_tokenizer.pretokenizers[1]: unknown pre_tokenizer type \"Nope\"");
    const char *bad_vocab = "{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_vocab, strlen(bad_vocab)), "model.vocab: expected an object");
    const char *bad_id = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_id, strlen(bad_id)), "model.vocab[\"a\"]: expected a non-negative integer id");
    const char *huge_id = "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 2000000000}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, huge_id, strlen(huge_id)), "id 2000000000 is far beyond the 1 vocabulary entries");
    const char *bad_merge = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b c\"]}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_merge, strlen(bad_merge)), "model.merges[0]: expected");
    const char *merge_oov = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, merge_oov, strlen(merge_oov)), "merged token \"ab\" is not in the vocabulary");
    const char *bad_bool = "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"byte_fallback\": \"yes\"}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_bool, strlen(bad_bool)), "model.byte_fallback: expected true or false, got a string");
    const char *bad_regex = "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_regex, strlen(bad_regex)), "pre_tokenizer.pattern: cannot compile regex");
    const char *bad_behavior = "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Sideways\"}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_behavior, strlen(bad_behavior)), "unknown split behavior \"Sideways\"");
    const char *bad_added = "{\"added_tokens\": [{\"id\": 0}], \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_added, strlen(bad_added)), "added_tokens[0].content: missing");
    const char *bad_template = "{\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[X]\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {}}, \"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_template, strlen(bad_template)), "special token \"[X]\" is missing from special_tokens");
    const char *bad_utf8 = "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"\xe4\": 0}}}";
    CHECK_ERR(cp_tokenizer_load_json(&tok, bad_utf8, strlen(bad_utf8)), "not valid UTF-8 at byte 43 (line 1)");
    CHECK(tok == NULL, "no tokenizer on error");
    CHECK_ERR(cp_tokenizer_load_file(&tok, "tests/fixtures/tokenizers/nope.json"), "nope.json: cannot open");
    CHECK_ERR(cp_tokenizer_load_dir(&tok, "tests/fixtures"), "no tokenizer.json, vocab.json + merges.txt or vocab.txt");
}

/* A tokenizer.json around a post-processor (WordLevel, vocabulary [UNK] = 0, a = 1). */
static int load_with_post(const char *post_processor) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"[UNK]\": 0, \"a\": 1}, \"unk_token\": \"[UNK]\"}, "
             "\"post_processor\": %s}", post_processor);
    cp_tokenizer *tok = NULL;
    int rc = cp_tokenizer_load_json(&tok, json, strlen(json));
    cp_tokenizer_free(tok);
    return rc;
}

static int load_doc(const char *json) {
    cp_tokenizer *tok = NULL;
    int rc = cp_tokenizer_load_json(&tok, json, strlen(json));
    cp_tokenizer_free(tok);
    return rc;
}

/* Numbers read from tokenizer.json are range-checked before any conversion (a double outside the
 * target type is undefined behaviour in C: UBSan flagged post_processors.c and json.c), and the
 * ids a post-processor adds must name a token. */
TEST(out_of_range_numbers_are_errors) {
    static const char *bad_ids[][2] = { /* value, what the message shows */
        {"-7", "got -7"}, {"3e9", "got 3000000000"}, {"3000000000", "got 3000000000"}, {"1e30", "got 1e+30"},
        {"1e400", "got inf"}, {"-1e400", "got -inf"}, {"0.5", "got 0.5"}, {"\"1\"", "got a string"},
    };
    char pp[512];
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        snprintf(pp, sizeof pp,
                 "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\", \"type_id\": 0}}, "
                 "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {\"[CLS]\": "
                 "{\"id\": \"[CLS]\", \"ids\": [%s], \"tokens\": [\"[CLS]\"]}}}", bad_ids[i][0]);
        CHECK_ERR(load_with_post(pp), "post_processor.special_tokens[\"[CLS]\"].ids[0]: expected a token id (an integer from 0 to 2147483647)");
        CHECK_ERR(load_with_post(pp), bad_ids[i][1]);
        snprintf(pp, sizeof pp, "{\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", %s], \"sep\": [\"[SEP]\", 0]}", bad_ids[i][0]);
        if (bad_ids[i][0][0] != '"') CHECK_ERR(load_with_post(pp), "post_processor.cls[1]: expected a token id");
        CHECK_ERR(load_with_post(pp), bad_ids[i][0][0] != '"' ? bad_ids[i][1] : "post_processor.cls: expected [token, id]");
    }
    /* in range, but no token has the id (the vocabulary is [UNK] = 0, a = 1) */
    CHECK_ERR(load_with_post("{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"[CLS]\"}}], "
                             "\"pair\": [], \"special_tokens\": {\"[CLS]\": {\"id\": \"[CLS]\", \"ids\": [1, 5]}}}"),
              "post_processor.special_tokens[\"[CLS]\"].ids[1]: id 5 is not in the vocabulary (size 2)");
    CHECK_ERR(load_with_post("{\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 0], \"sep\": [\"[SEP]\", 2]}"),
              "post_processor.sep[1]: id 2 is not in the vocabulary (size 2)");
    CHECK_ERR(load_with_post("{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, "
                             "{\"type\": \"RobertaProcessing\", \"cls\": [\"<s>\", 0], \"sep\": [\"</s>\", 2147483647]}]}"),
              "post_processor.processors[1].sep[1]: id 2147483647 is not in the vocabulary (size 2)");
    CHECK_OK(load_with_post("{\"type\": \"BertProcessing\", \"cls\": [\"[CLS]\", 0], \"sep\": [\"[SEP]\", 1]}"));
    /* type ids live in a byte */
    CHECK_ERR(load_with_post("{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 300}}], "
                             "\"pair\": [], \"special_tokens\": {}}"),
              "post_processor.single[0].type_id: expected an integer from 0 to 255, got 300");
    CHECK_ERR(load_with_post("{\"type\": \"TemplateProcessing\", \"single\": [], \"pair\": [{\"Sequence\": {\"id\": \"B\", "
                             "\"type_id\": 1e30}}], \"special_tokens\": {}}"),
              "post_processor.pair[0].type_id: expected an integer from 0 to 255, got 1e+30");
    /* the other integer fields */
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"added_tokens\": "
                       "[{\"id\": 1e30, \"content\": \"<x>\"}]}"),
              "added_tokens[0].id: expected an integer from 0 to 4294967295, got 1e+30");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"added_tokens\": "
                       "[{\"id\": -7, \"content\": \"<x>\"}]}"),
              "added_tokens[0].id: expected an integer from 0 to 4294967295, got -7");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"decoder\": {\"type\": \"Strip\", "
                       "\"content\": \" \", \"start\": 1e30, \"stop\": 0}}"),
              "decoder.start: expected an integer from 0 to 9007199254740992, got 1e+30");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"decoder\": {\"type\": \"Strip\", "
                       "\"content\": \" \", \"start\": 0, \"stop\": -1}}"),
              "decoder.stop: expected an integer from 0 to 9007199254740992, got -1");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}, \"max_input_chars_per_word\": 3e9}}"),
              "model.max_input_chars_per_word: expected an integer from 0 to 2147483647, got 3000000000");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1.0]], \"unk_id\": 3e9}}"),
              "model.unk_id: expected an integer from 0 to 2147483647, got 3000000000");
    CHECK_ERR(load_doc("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", -1e400]], \"unk_id\": null}}"),
              "model.vocab[0]: expected [piece (string), score (finite number)]");
}

/* A repeated key keeps its last value, as Python's json and serde_json (tokenizers' top level and
 * model, and every map such as the vocabulary) read it: the first value used to win. */
TEST(duplicate_keys_keep_the_last_value) {
    cp_tokenizer *tok = NULL;
    const char *doc = "{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, "
                      "\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"[UNK]\": 0, \"zz\": 1}, \"unk_token\": \"[UNK]\"}, "
                      "\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"[UNK]\": 0, \"a\": 1, \"b\": 2, \"zz\": 4, \"a\": 3}, "
                      "\"unk_token\": \"zz\", \"unk_token\": \"[UNK]\"}}";
    CHECK_OK(cp_tokenizer_load_json(&tok, doc, strlen(doc)));
    if (tok) {
        cp_encoding enc = {0};
        CHECK_OK(cp_tokenizer_encode(tok, "a b c", 5, 0, &enc));
        /* the second model; "a" is 3 (its last value), "c" is unknown: [UNK] (the last unk_token) */
        CHECK(enc.n == 3 && enc.ids[0] == 3 && enc.ids[1] == 2 && enc.ids[2] == 0, "ids %d %d %d",
              enc.n > 0 ? enc.ids[0] : -1, enc.n > 1 ? enc.ids[1] : -1, enc.n > 2 ? enc.ids[2] : -1);
        cp_encoding_free(&enc);
        cp_tokenizer_free(tok);
    }
    /* tokenizer_config.json and special_tokens_map.json, through a model directory */
    char dir[] = "/tmp/cpeft-dup-XXXXXX", path[300];
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    static const char *files[][2] = {
        {"tokenizer.json", "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"<s>\": 0, \"</s>\": 1, \"x\": 2}, \"unk_token\": \"x\"}}"},
        {"tokenizer_config.json", "{\"add_bos_token\": false, \"add_eos_token\": true, \"add_bos_token\": true, "
                                  "\"add_eos_token\": false, \"eos_token\": \"<s>\", \"eos_token\": \"</s>\"}"},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        fputs(files[i][1], f);
        fclose(f);
    }
    CHECK_OK(cp_tokenizer_load_dir(&tok, dir));
    if (tok) {
        CHECK(cp_tokenizer_adds_bos(tok) == 1 && cp_tokenizer_adds_eos(tok) == 0, "add_bos_token / add_eos_token: last values");
        CHECK(cp_tokenizer_special_id(tok, CP_SPECIAL_EOS) == 1, "eos_token: the last value (</s> = 1), got %d",
              cp_tokenizer_special_id(tok, CP_SPECIAL_EOS));
        cp_tokenizer_free(tok);
    }
    /* an out-of-vocabulary post-processor id met through a directory names the file */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}}, \"post_processor\": {\"type\": \"BertProcessing\", "
          "\"cls\": [\"[CLS]\", 0], \"sep\": [\"[SEP]\", 7]}}", f);
    fclose(f);
    CHECK_ERR(cp_tokenizer_load_dir(&tok, dir), "tokenizer.json: post_processor.sep[1]: id 7 is not in the vocabulary (size 1)");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

TEST(bad_ids_and_text) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, SHARED "gpt2-tokenizer/tokenizer.json"));
    if (!tok) return;
    char *out = NULL;
    int32_t ids[3] = {15496, 50257, 995};
    CHECK_ERR(cp_tokenizer_decode(tok, ids, 3, 0, &out, NULL), "id 50257 is not in the vocabulary (size 50257)");
    ids[1] = -5;
    CHECK_ERR(cp_tokenizer_decode(tok, ids, 3, 0, &out, NULL), "id -5 is not in the vocabulary");
    CHECK(out == NULL, "no output on error");
    CHECK(cp_tokenizer_id_to_token(tok, 99999999) == NULL, "id_to_token out of range");
    CHECK(cp_tokenizer_token_to_id(tok, "no such token \x01") == CP_TOKEN_NONE, "token_to_id missing");
    /* invalid UTF-8 becomes U+FFFD, offsets still point into the input */
    cp_encoding enc = {0};
    CHECK_OK(cp_tokenizer_encode(tok, "a\xff\xfe", 3, 0, &enc));
    CHECK(enc.n >= 1 && enc.offsets[2 * enc.n - 1] == 3, "offsets end at input length");
    char *dec = NULL;
    CHECK_OK(cp_tokenizer_decode(tok, enc.ids, enc.n, 0, &dec, NULL));
    CHECK(dec && strcmp(dec, "a\xEF\xBF\xBD\xEF\xBF\xBD") == 0, "decoded %s", dec ? dec : "(null)");
    free(dec);
    CHECK_OK(cp_tokenizer_encode(tok, "", 0, 1, &enc));
    CHECK(enc.n == 0, "empty text gives no tokens");
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
}

/* ---- character classes on every code point ------------------------------------------------------- */

static int count_split(void *ctx, tk_nstr *split) { (void)split; ++*(int *)ctx; return CP_OK; }

/* Whether c is listed in the ranges of unicode_classes.json's class `name` (ranges sorted). */
static int listed(const cJSON *ranges, uint32_t c, const cJSON **cursor) {
    const cJSON *r = *cursor ? *cursor : ranges->child;
    while (r && (uint32_t)cJSON_GetArrayItem(r, 1)->valuedouble < c) r = r->next;
    *cursor = r;
    return r && (uint32_t)cJSON_GetArrayItem(r, 0)->valuedouble <= c;
}

/* tokenizers takes punctuation, marks and BERT's control characters from crates with Unicode 8.0
 * tables (src/tokenizer/unicode8.c). Every code point goes through the real components (normalizer
 * or pre-tokenizer, built from JSON) and must come out as tokenizers' did on it. */
TEST(character_classes_on_every_code_point) {
    cJSON *doc = load_json(FIX "unicode_classes.json");
    CHECK(doc != NULL, "unicode_classes.json");
    if (!doc) return;
    const cJSON *classes = cJSON_GetObjectItem(doc, "classes");
    static const char *specs[3][2] = {
        {"bert_clean_text_removes", "{\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": false, \"strip_accents\": false, \"lowercase\": false}"},
        {"bert_strip_accents_removes", "{\"type\": \"BertNormalizer\", \"clean_text\": false, \"handle_chinese_chars\": false, \"strip_accents\": true, \"lowercase\": false}"},
        {"strip_accents_removes", "{\"type\": \"StripAccents\"}"},
    };
    tk_normalizer *norm[3] = {0}, *nfd = NULL;
    tk_pretok *pre = NULL;
    for (int k = 0; k < 3; k++) {
        cJSON *j = cJSON_Parse(specs[k][1]);
        CHECK_OK(tk_normalizer_from_json(&norm[k], j, specs[k][0]));
        cJSON_Delete(j);
    }
    cJSON *j = cJSON_Parse("{\"type\": \"NFD\"}");
    CHECK_OK(tk_normalizer_from_json(&nfd, j, "nfd"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"type\": \"BertPreTokenizer\"}");
    CHECK_OK(tk_pretok_from_json(&pre, j, "pre"));
    cJSON_Delete(j);
    const cJSON *cursor[4] = {0};
    size_t differ[4] = {0}, in_class[4] = {0}, points = 0;
    uint32_t first_diff[4] = {0};
    for (uint32_t c = 0; c < 0x110000 && norm[0] && norm[1] && norm[2] && nfd && pre; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        points++;
        char s[8];
        size_t l = tk_utf8_encode(c, s + 1);
        int got[4], want[4];
        int stable = 1; /* strip_accents runs after NFD: the fixture covers only what NFD leaves alone */
        for (int k = 0; k < 3; k++) {
            tk_nstr ns = tk_nstr_view(s + 1, 0, l);
            CHECK_OK(tk_normalizer_apply(norm[k], &ns));
            got[k] = ns.len == 0;
            tk_nstr_free(&ns);
        }
        tk_nstr ns = tk_nstr_view(s + 1, 0, l);
        CHECK_OK(tk_normalizer_apply(nfd, &ns));
        stable = ns.len == l && memcmp(ns.s, s + 1, l) == 0;
        tk_nstr_free(&ns);
        s[0] = 'a';
        s[l + 1] = 'a';
        ns = tk_nstr_view(s, 0, l + 2);
        int splits = 0;
        CHECK_OK(tk_pretok_apply(pre, &ns, count_split, &splits));
        tk_nstr_free(&ns);
        got[3] = splits == 3;
        static const char *names[4] = {"bert_clean_text_removes", "bert_strip_accents_removes", "strip_accents_removes",
                                       "bert_punctuation"};
        for (int k = 0; k < 4; k++) {
            want[k] = listed(cJSON_GetObjectItem(classes, names[k]), c, &cursor[k]);
            if (k == 1 && !stable) continue;
            in_class[k] += (size_t)want[k];
            if (got[k] != want[k] && !differ[k]++) first_diff[k] = c;
        }
    }
    static const char *what[4] = {"clean_text removes", "strip_accents removes", "StripAccents removes", "punctuation"};
    for (int k = 0; k < 4; k++)
        CHECK(differ[k] == 0, "%s: %zu code points differ from tokenizers, the first U+%04X", what[k], differ[k], first_diff[k]);
    printf("     %zu code points: clean_text removes %zu, strip_accents %zu (NFD-stable), StripAccents %zu, punctuation %zu; "
           "differences %zu %zu %zu %zu\n", points, in_class[0], in_class[1], in_class[2], in_class[3], differ[0], differ[1],
           differ[2], differ[3]);
    for (int k = 0; k < 3; k++) tk_normalizer_free(norm[k]);
    tk_normalizer_free(nfd);
    tk_pretok_free(pre);
    cJSON_Delete(doc);
}

/* The lowercase tokenizers writes for c per unicode_classes.json's "lowercase": "multi" when it lists
 * c, else `run` ([lo, hi, step, delta], the run whose [lo, hi] holds c, or NULL) when c is on its
 * steps, else c itself. Returns the count of code points. */
static int want_lower(const cJSON *run, const cJSON *multi, uint32_t c, uint32_t out[3]) {
    char key[16];
    snprintf(key, sizeof key, "%u", c);
    const cJSON *m = cJSON_GetObjectItem(multi, key);
    if (m) {
        int n = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, m) if (n < 3) out[n++] = (uint32_t)x->valuedouble;
        return n;
    }
    out[0] = c;
    if (run && (c - (uint32_t)cJSON_GetArrayItem(run, 0)->valuedouble) % (uint32_t)cJSON_GetArrayItem(run, 2)->valuedouble == 0)
        out[0] = (uint32_t)((int64_t)c + (int64_t)cJSON_GetArrayItem(run, 3)->valuedouble);
    return 1;
}

/* Lowercasing as tokenizers does it (Rust's char::to_lowercase, newer Unicode than utf8proc's 15:
 * U+1C89, U+A7CB, U+10D50, U+16EA0 ... lower there): every code point through the Lowercase
 * normalizer and BertNormalizer's lowercase (the same map in tokenizers), as a one-character
 * string and between two letters (the map has no context: Σ lowers to σ everywhere). */
TEST(lowercase_on_every_code_point) {
    cJSON *doc = load_json(FIX "unicode_classes.json");
    CHECK(doc != NULL, "unicode_classes.json");
    if (!doc) return;
    const cJSON *lc = cJSON_GetObjectItem(doc, "lowercase");
    const cJSON *runs = cJSON_GetObjectItem(lc, "runs"), *multi = cJSON_GetObjectItem(lc, "multi");
    CHECK(runs && multi, "unicode_classes.json has no lowercase map");
    static const char *specs[2] = {"{\"type\": \"Lowercase\"}",
                                   "{\"type\": \"BertNormalizer\", \"clean_text\": false, \"handle_chinese_chars\": false, "
                                   "\"strip_accents\": false, \"lowercase\": true}"};
    tk_normalizer *norm[2] = {0};
    for (int k = 0; k < 2; k++) {
        cJSON *j = cJSON_Parse(specs[k]);
        CHECK_OK(tk_normalizer_from_json(&norm[k], j, "lowercase"));
        cJSON_Delete(j);
    }
    size_t points = 0, changed = 0, differ[2] = {0};
    uint32_t first[2] = {0};
    /* a cursor over the runs (code points come in order) keeps this linear */
    const cJSON *cur = runs ? runs->child : NULL;
    for (uint32_t c = 0; c < 0x110000 && norm[0] && norm[1] && runs && multi; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        points++;
        while (cur && (uint32_t)cJSON_GetArrayItem(cur, 1)->valuedouble < c) cur = cur->next;
        uint32_t want[3];
        int nw = want_lower(cur && c >= (uint32_t)cJSON_GetArrayItem(cur, 0)->valuedouble ? cur : NULL, multi, c, want);
        changed += nw != 1 || want[0] != c;
        char w[16] = "A", s[8] = "A";
        size_t wl = 1, sl = 1 + tk_utf8_encode(c, s + 1);
        for (int i = 0; i < nw; i++) wl += tk_utf8_encode(want[i], w + wl);
        s[sl++] = 'B';
        w[0] = 'a';
        w[wl++] = 'b';
        for (int k = 0; k < 2; k++) {
            tk_nstr ns = tk_nstr_view(s, 0, sl);
            CHECK_OK(tk_normalizer_apply(norm[k], &ns));
            if ((ns.len != wl || memcmp(ns.s, w, wl)) && !differ[k]++) first[k] = c;
            tk_nstr_free(&ns);
        }
    }
    CHECK(differ[0] == 0, "Lowercase: %zu code points differ from tokenizers, the first U+%04X", differ[0], first[0]);
    CHECK(differ[1] == 0, "BertNormalizer lowercase: %zu code points differ from tokenizers, the first U+%04X", differ[1], first[1]);
    printf("     %zu code points: tokenizers lowers %zu; differences Lowercase %zu, BertNormalizer %zu\n", points, changed,
           differ[0], differ[1]);
    for (int k = 0; k < 2; k++) tk_normalizer_free(norm[k]);
    cJSON_Delete(doc);
}

/* ---- decoded text is bytes with a length --------------------------------------------------------- */

static const char *cpeft_bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* Runs a command line; stdout's bytes (NULs included) into out, their count into *n; exit status. */
static int run_bytes(char *out, size_t cap, size_t *n, const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    *n = fread(out, 1, cap - 1, p);
    out[*n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The bytes of the JSON string literal that follows `"key":` (or `"key": `) in s; -1 if none. */
static long json_field_bytes(const char *s, size_t n, const char *key, char *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = memmem(s, n, pat, strlen(pat));
    if (!p) return -1;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p++ != '"') return -1;
    long k = 0;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') { out[k++] = *p; continue; }
        p++;
        if (*p == 'u') { /* only what the printers emit: \u00XX */
            unsigned v = 0;
            sscanf(p + 1, "%4x", &v);
            out[k++] = (char)v;
            p += 4;
        } else {
            out[k++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p == 'b' ? '\b' : *p == 'f' ? '\f' : *p;
        }
    }
    return k;
}

/* `cpeft tokenize --decode` printed the text up to its first NUL; the bytes now go out whole, and
 * --json escapes the NUL as \u0000. */
TEST(cli_decode_keeps_nul_bytes) {
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, SHARED "gpt2-tokenizer/tokenizer.json"));
    if (!tok) return;
    static const char text[] = "a\0b \0\0 end\0"; /* byte-level BPE decodes back to the same bytes */
    const size_t n = sizeof text - 1;
    cp_encoding enc = {0};
    CHECK_OK(cp_tokenizer_encode(tok, text, n, 0, &enc));
    char ids[512] = "", cmd[1024], out[4096], got[4096];
    for (size_t i = 0, k = 0; i < enc.n; i++) k += (size_t)snprintf(ids + k, sizeof ids - k, "%s%d", i ? " " : "", enc.ids[i]);
    char *dec = NULL;
    size_t dec_len = 0;
    CHECK_OK(cp_tokenizer_decode(tok, enc.ids, enc.n, 0, &dec, &dec_len));
    CHECK(dec && dec_len == n && memcmp(dec, text, n) == 0 && dec[n] == '\0', "API: %zu bytes, want %zu", dec_len, n);
    free(dec);
    size_t len;
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer " SHARED "gpt2-tokenizer --decode '%s'", cpeft_bin(), ids);
    int rc = run_bytes(out, sizeof out, &len, cmd);
    CHECK(rc == 0 && len == n + 1 && memcmp(out, text, n) == 0 && out[n] == '\n', "plain: exit %d, %zu bytes, want %zu", rc,
          len, n + 1);
    snprintf(cmd, sizeof cmd, "%s tokenize --tokenizer " SHARED "gpt2-tokenizer --decode '%s' --json", cpeft_bin(), ids);
    rc = run_bytes(out, sizeof out, &len, cmd);
    long k = json_field_bytes(out, len, "text", got);
    CHECK(rc == 0 && k == (long)n && memcmp(got, text, n) == 0 && strstr(out, "\\u0000"), "--json: exit %d: %s", rc, out);
    printf("     tokenize --decode: %zu bytes with 4 NULs, plain and --json\n", n);
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
}

/* generate decoded its new text as a C string: --json, streaming and stop strings stopped at a NUL.
 * The tiny GPT-Neo model with a byte-level vocabulary in which token 33 is the byte 0: greedy
 * decoding of the prompt below gives 44 33 44 68 29 ... (tests/parity/test_generate.c), so the text
 * has a NUL in its second byte. */
TEST(generate_output_keeps_nul_bytes) {
    char dir[] = "/tmp/cpeft-nul-XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    char path[512], cmd[2048], out[8192], got[4096];
    /* byte-level names of the bytes (GPT-2's bytes_to_unicode): printable Latin-1 stands for
     * itself, the rest are U+0100 + their rank */
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    char want[128];
    for (int id = 0; id < 96; id++) {
        int byte = id == 33 ? 0 : 0x20 + id; /* 0x20..0x7F; 0x7F is not printable */
        want[id] = (char)byte;
        unsigned cp = byte >= 0x21 && byte <= 0x7E ? (unsigned)byte : byte == 0 ? 0x100u : byte == 0x20 ? 0x120u : 0x121u;
        char name[8];
        size_t l = tk_utf8_encode(cp, name);
        name[l] = '\0';
        cJSON_AddNumberToObject(vocab, name, id);
    }
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", cJSON_CreateArray());
    cJSON_AddItemToObject(root, "model", model);
    cJSON *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens"), *eot = cJSON_CreateObject();
    cJSON_AddNumberToObject(eot, "id", 96);
    cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
    cJSON_AddTrueToObject(eot, "special");
    cJSON_AddItemToArray(added, eot);
    char *json = cJSON_Print(root);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    free(json);
    cJSON_Delete(root);
    static const char *files[] = {"config.json", "generation_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char src[512], dst[512];
        snprintf(src, sizeof src, "%s/tests/fixtures/models/gpt_neo_tiny/%s", getenv("PWD") ? getenv("PWD") : ".", files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        CHECK(symlink(src, dst) == 0, "symlink %s", dst);
    }
    static const int32_t gen[] = {44, 33, 44, 68, 29}; /* the first new tokens */
    char text[8];
    for (int i = 0; i < 5; i++) text[i] = want[gen[i]];
    size_t len;
    const char *prompt = "--prompt-ids '61 3 29 77 12 50 9 33 70'";
    /* --json: the whole text, NUL escaped */
    snprintf(cmd, sizeof cmd, "%s generate --model %s %s --max-new-tokens 5 --json 2>&1", cpeft_bin(), dir, prompt);
    int rc = run_bytes(out, sizeof out, &len, cmd);
    long k = json_field_bytes(out, len, "text", got);
    CHECK(rc == 0 && k == 5 && memcmp(got, text, 5) == 0, "--json: exit %d, text of %ld bytes: %s", rc, k, out);
    /* streaming: the raw bytes */
    snprintf(cmd, sizeof cmd, "%s generate --model %s %s --max-new-tokens 5", cpeft_bin(), dir, prompt);
    rc = run_bytes(out, sizeof out, &len, cmd);
    CHECK(rc == 0 && len == 6 && memcmp(out, text, 5) == 0 && out[5] == '\n', "streamed: exit %d, %zu bytes", rc, len);
    /* a stop string after the NUL ends generation where it appears (token 4 completes "Ld") */
    char stop[3] = {text[2], text[3], 0};
    snprintf(cmd, sizeof cmd, "%s generate --model %s %s --max-new-tokens 5 --stop '%s' --json 2>&1", cpeft_bin(), dir,
             prompt, stop);
    rc = run_bytes(out, sizeof out, &len, cmd);
    k = json_field_bytes(out, len, "text", got);
    CHECK(rc == 0 && k == 4 && memcmp(got, text, 4) == 0 && strstr(out, "\"finish\":\"stop\""),
          "--stop \"%s\": exit %d, text of %ld bytes: %s", stop, rc, k, out);
    printf("     generate: text \"%c\\0%c%c%c\" through --json, streaming and --stop \"%s\"\n", text[0], text[2], text[3],
           text[4], stop);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* One encoding reused across tokenizers and many calls (its word cache must follow). */
TEST(encoding_reuse_across_tokenizers) {
    cp_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(cp_tokenizer_load_file(&a, SHARED "gpt2-tokenizer/tokenizer.json"));
    CHECK_OK(cp_tokenizer_load_file(&b, FIX "roberta/tokenizer.json"));
    if (!a || !b) { cp_tokenizer_free(a); cp_tokenizer_free(b); return; }
    cp_encoding enc = {0}, fresh = {0};
    for (int round = 0; round < 3; round++) {
        const cp_tokenizer *t = round % 2 ? b : a;
        CHECK_OK(cp_tokenizer_encode(t, "hello there hello", 17, 1, &enc));
        CHECK_OK(cp_tokenizer_encode(t, "hello there hello", 17, 1, &fresh));
        CHECK(enc.n == fresh.n && memcmp(enc.ids, fresh.ids, enc.n * sizeof *enc.ids) == 0, "round %d", round);
        cp_encoding_free(&fresh);
    }
    cp_encoding_free(&enc);
    cp_tokenizer_free(a);
    cp_tokenizer_free(b);
}

int main(void) {
    RUN(gpt2_tokenizer_json);
    RUN(gpt2_vocab_json_merges_txt);
    RUN(bert_uncased_tokenizer_json);
    RUN(bert_uncased_vocab_txt);
    RUN(bert_cased_vocab_txt);
    RUN(llama_bpe_byte_fallback);
    RUN(llama_legacy_prepend_normalizer);
    RUN(t5_unigram_precompiled);
    RUN(roberta_processing);
    RUN(misc_bpe_normalizers);
    RUN(misc_wordlevel_splits);
    RUN(notebook_gpt2_checks);
    RUN(long_words_are_not_quadratic);
    RUN(bad_tokenizer_json);
    RUN(out_of_range_numbers_are_errors);
    RUN(duplicate_keys_keep_the_last_value);
    RUN(bad_ids_and_text);
    RUN(encoding_reuse_across_tokenizers);
    RUN(character_classes_on_every_code_point);
    RUN(lowercase_on_every_code_point);
    RUN(cli_decode_keeps_nul_bytes);
    RUN(generate_output_keeps_nul_bytes);
    return test_summary();
}
