/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader and the in-memory half of the conversion:
 * any byte string goes through cp_gguf_parse; when it is accepted, every metadata value is read
 * through the typed getters, every tensor's bytes are touched and (when small) dequantized, the
 * names are looked up, and the llama hyper-parameter check, config.json and the tokenizer
 * reconstruction run on it — so ASan catches a range that escapes the buffer, UBSan an arithmetic
 * overflow, and the tokenizer builder sees arbitrary vocabularies, merges and scores.
 *
 * Seeds: tests/fuzz/seeds/fuzz_gguf (made by tests/reference/make_gguf_fixtures.py seeds): small
 * llama files with byte-level and SentencePiece tokenizers, a block of every quantized type,
 * every metadata value type including nested arrays, GGUF v2, alignment 64.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/gguf.h"
#include "convert/gguf_convert.h"

static void touch(const cp_gguf *g) {
    volatile uint64_t sink = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        const cp_gguf_kv *kv = &g->kvs[i];
        if (cp_gguf_find_kv(g, kv->key) != kv) abort(); /* keys are unique */
        int64_t v;
        double f;
        int b;
        char *s = NULL;
        const cp_gguf_kv *arr;
        if (cp_gguf_get_int(g, kv->key, 0, 1, INT64_MIN, INT64_MAX, &v) == CP_OK) sink += (uint64_t)v;
        if (cp_gguf_get_float(g, kv->key, 0, 1, &f) == CP_OK) sink += f == f;
        if (cp_gguf_get_bool(g, kv->key, 0, 1, &b) == CP_OK) sink += (uint64_t)b;
        if (cp_gguf_get_string(g, kv->key, 1, &s) == CP_OK) sink += strlen(s);
        cp_free(s);
        if (kv->type == CP_GGUF_ARRAY && kv->arr_type == CP_GGUF_STRING) {
            for (uint64_t k = 0; k < kv->arr_len; k++)
                for (uint64_t c = 0; c < kv->arr_strs[k].len; c++) sink ^= (uint8_t)kv->arr_strs[k].ptr[c];
        } else if (cp_gguf_get_array(g, kv->key, CP_GGUF_INT32, 1, &arr) == CP_OK) {
            for (uint64_t k = 0; k < arr->arr_len; k++) sink += (uint64_t)cp_gguf_arr_int(arr, k);
        } else if (cp_gguf_get_array(g, kv->key, CP_GGUF_FLOAT32, 1, &arr) == CP_OK) {
            for (uint64_t k = 0; k < arr->arr_len; k++) sink += cp_gguf_arr_float(arr, k) == 0;
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (cp_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
        const uint8_t *p = t->data;
        for (uint64_t k = 0; k < t->nbytes; k++) sink ^= p[k];
        if (t->numel <= 65536 && cp_ggml_can_dequantize(t->type)) {
            float *out = malloc((size_t)t->numel * sizeof *out);
            if (out && cp_gguf_dequantize(g, t, out) == CP_OK)
                for (int64_t k = 0; k < t->numel; k++) sink += out[k] == out[k];
            free(out);
        }
    }
    cp_clear_error();
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* exactly `size` bytes, so any overread hits a redzone */
    if (!buf) return 0;
    memcpy(buf, data, size);
    cp_gguf g;
    if (cp_gguf_parse(&g, buf, size, "fuzz") == CP_OK) {
        touch(&g);
        cp_gguf_llama hp;
        if (cp_gguf_llama_read(&g, &hp) == CP_OK) {
            char *cfg = cp_gguf_llama_config_json(&hp, "float32");
            char *gen = cp_gguf_llama_generation_config_json(&hp);
            cp_free(cfg);
            cp_free(gen);
        }
        cp_gguf_tokenizer tk;
        if (cp_gguf_tokenizer_build(&g, 2048, &tk) == CP_OK) cp_gguf_tokenizer_free(&tk);
        char hf[256];
        for (int64_t i = 0; i < g.n_tensors; i++) (void)cp_gguf_llama_hf_name(g.tensors[i].name, 4, hf, sizeof hf);
    }
    cp_gguf_close(&g);
    free(buf);
    return 0;
}
