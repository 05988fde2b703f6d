/*
 * fuzz_tokenizer_json.c — libFuzzer target for the tokenizer.json loader: any bytes must load or
 * fail with a message; a tokenizer that loads must encode and decode a mixed sample (and its own
 * ids) without crash, leak or out-of-bounds access.
 */
#include "tokenizer/tokenizer.h"
#include "core/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char SAMPLE[] = "Hello  world, it's 12 <s>[CLS] caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80\n\t\xFF end";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cp_set_quiet(1);
    cp_tokenizer *tok = NULL;
    if (cp_tokenizer_load_json(&tok, (const char *)data, size) != CP_OK) return 0;
    cp_encoding enc = {0};
    for (int special = 0; special < 2; special++) {
        if (cp_tokenizer_encode(tok, SAMPLE, sizeof SAMPLE - 1, special, &enc) == CP_OK) {
            for (int skip = 0; skip < 2; skip++) {
                char *text = NULL;
                size_t len;
                if (cp_tokenizer_decode(tok, enc.ids, enc.n, skip, &text, &len) == CP_OK) {
                    if (text[len] != '\0') __builtin_trap(); /* bytes with a length, NUL after them */
                    free(text);
                }
            }
        }
    }
    if (cp_tokenizer_encode_pair(tok, "a b", 3, "c", 1, 1, &enc) == CP_OK) (void)enc.n;
    size_t v = cp_tokenizer_vocab_size(tok);
    int32_t probe[4] = {0, (int32_t)(v ? v - 1 : 0), (int32_t)v, -1};
    char *text = NULL;
    if (cp_tokenizer_decode(tok, probe, 4, 0, &text, NULL) == CP_OK) free(text);
    for (int r = 0; r < 4; r++) (void)cp_tokenizer_special_id(tok, (cp_special_role)r);
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
    return 0;
}
