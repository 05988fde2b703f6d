/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader: any byte string goes through
 * cp_st_parse; when it is accepted, every tensor's bytes are read and every name looked up, so
 * ASan catches a range that escapes the buffer and UBSan an arithmetic overflow.
 *
 * Each input is parsed twice: as it is, and with its 8-byte header length rewritten to end the
 * header at the last '}' — mutations that insert or delete header bytes would otherwise almost
 * always stop at the length check, and the JSON and layout checks would see little traffic.
 *
 * Seeds: tests/fuzz/seeds/fuzz_safetensors (made by tests/reference/make_safetensors_fixtures.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

/* Parses `size` bytes from a private copy of exactly that size, so any overread hits ASan's
 * redzone; on success reads every tensor and checks the lookups. */
static void parse_and_touch(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return;
    memcpy(buf, data, size);
    cp_safetensors st;
    if (cp_st_parse(&st, buf, size, "fuzz") == CP_OK) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < st.n_tensors; i++) {
            const cp_st_tensor *t = &st.tensors[i];
            const uint8_t *p = t->data;
            for (uint64_t b = 0; b < t->end - t->begin; b++) sink ^= p[b];
            if (cp_st_find(&st, t->name) != t) abort(); /* names are unique */
        }
        for (int i = 0; i < st.n_meta; i++)
            if (cp_st_meta(&st, st.meta_keys[i]) == NULL) abort();
        (void)sink;
    }
    cp_st_close(&st);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_and_touch(data, size);
    if (size <= 8) return 0;
    const uint8_t *close = NULL;
    for (const uint8_t *p = data + 8; p < data + size; p++)
        if (*p == '}') close = p;
    if (!close) return 0;
    uint64_t n = (uint64_t)(close + 1 - (data + 8));
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    for (int i = 0; i < 8; i++) fixed[i] = (uint8_t)(n >> (8 * i));
    parse_and_touch(fixed, size);
    free(fixed);
    return 0;
}
