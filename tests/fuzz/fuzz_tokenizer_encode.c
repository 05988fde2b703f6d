/*
 * fuzz_tokenizer_encode.c — libFuzzer target for the encoder: arbitrary bytes (invalid UTF-8,
 * special tokens, long runs) through every fixture tokenizer (GPT-2 byte-level BPE, BERT WordPiece,
 * Llama BPE with byte fallback, T5 Unigram + Precompiled, RoBERTa, and the component mixes),
 * then decoded again. Offsets must lie within the input and be ordered inside each token.
 * Run from the repository root (fixtures are read from tests/fixtures/tokenizers). The GPT-2 file lives
 * beside the repository (../shared/data); where it is missing its slot stays empty and the inputs that
 * pick it return at once, so every other input reaches the same tokenizer everywhere.
 */
#include "tokenizer/tokenizer.h"
#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>

static cp_tokenizer *toks[16];
static int ntoks = -1; /* slots, loaded or not */

static void load_all(void) {
    static const char *paths[] = {
        "../shared/data/gpt2-tokenizer/tokenizer.json",
        "tests/fixtures/tokenizers/bert-uncased/tokenizer.json",
        "tests/fixtures/tokenizers/llama/tokenizer.json",
        "tests/fixtures/tokenizers/llama-legacy/tokenizer.json",
        "tests/fixtures/tokenizers/t5/tokenizer.json",
        "tests/fixtures/tokenizers/roberta/tokenizer.json",
        "tests/fixtures/tokenizers/misc-bpe/tokenizer.json",
        "tests/fixtures/tokenizers/misc-wordlevel/tokenizer.json",
    };
    ntoks = (int)(sizeof paths / sizeof *paths);
    for (int i = 0; i < ntoks; i++)
        if (cp_tokenizer_load_file(&toks[i], paths[i]) != CP_OK) toks[i] = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    if (ntoks < 0) load_all();
    if (size == 0) return 0;
    /* the first byte picks the tokenizer and options */
    cp_tokenizer *tok = toks[data[0] % ntoks];
    if (!tok) return 0;
    int special = (data[0] >> 4) & 1, skip = (data[0] >> 5) & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    cp_encoding enc = {0};
    if (cp_tokenizer_encode(tok, text, len, special, &enc) == CP_OK) {
        for (size_t i = 0; i < enc.n; i++)
            if (enc.offsets[2 * i] > enc.offsets[2 * i + 1] || enc.offsets[2 * i + 1] > len) __builtin_trap();
        char *back = NULL;
        size_t blen;
        if (cp_tokenizer_decode(tok, enc.ids, enc.n, skip, &back, &blen) == CP_OK) {
            if (back[blen] != '\0') __builtin_trap(); /* bytes with a length, NUL after them */
            free(back);
        }
    }
    cp_encoding_free(&enc);
    return 0;
}
