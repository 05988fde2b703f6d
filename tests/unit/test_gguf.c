/*
 * test_gguf.c — the GGUF reader and the GGUF -> Hugging Face conversion.
 *
 * Fixtures (tests/fixtures/gguf/, made by tests/reference/make_gguf_fixtures.py with llama.cpp's
 * gguf-py): two tiny random llama models (byte-level BPE, GGUF v3, tied; SentencePiece, GGUF v2,
 * untied) with the Hugging Face tensors the conversion must give (the gguf package's
 * dequantization, Q/K rows reverse-permuted as transformers does); a "zoo" of every dequantizable
 * type with its expected f32 values; a 3000-piece SentencePiece vocabulary; and the token ids
 * transformers' own GGUF tokenizer loader gives for a corpus. Malformed files are made here, by
 * mutating a fixture's bytes or with the small GGUF builder below.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "core/dtype.h"
#include "cpeft.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "convert/gguf_convert.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "test.h"

#define FIX "tests/fixtures/gguf/"

static char tmpdir[64];

/* ---- helpers --------------------------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *len) {
    char *data;
    if (cp_read_file(path, &data, len) != CP_OK) return NULL;
    return (uint8_t *)data;
}

static cJSON *expected_json(void) {
    cJSON *j = NULL;
    if (cp_json_read_file(FIX "expected.json", &j) != CP_OK) fprintf(stderr, "  %s\n", cp_last_error());
    return j;
}

/* Offset of the first occurrence of a GGUF string (u64 length + bytes) in the image. */
static size_t find_gguf_string(const uint8_t *buf, size_t len, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 8; i + n <= len; i++)
        if (!memcmp(buf + i, s, n) && buf[i - 8] == n && !memcmp(buf + i - 7, "\0\0\0\0\0\0\0", 7)) return i - 8;
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Compares two f32 arrays bit for bit; returns the largest |difference| seen. */
static double max_diff(const float *a, const float *b, size_t n, size_t *bits_differ) {
    *bits_differ = 0;
    for (size_t i = 0; i < n; i++) *bits_differ += memcmp(a + i, b + i, 4) != 0;
    return test_max_abs_diff(a, b, n);
}

/* The tensor as f32 (widening F16/BF16). Caller frees. */
static float *st_as_f32(const cp_st_tensor *t) {
    float *out = cp_malloc((size_t)t->numel * sizeof *out, "test");
    if (out) cp_convert_to_f32(out, t->data, t->dtype, (size_t)t->numel);
    return out;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }
static void rm_rf(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- a GGUF builder for metadata cases --------------------------------------------------------- */

typedef struct {
    uint8_t *kv, *ti, *data;
    size_t kv_len, ti_len, data_len;
    uint64_t n_kv, n_ti;
} builder;

static void app(uint8_t **buf, size_t *len, const void *p, size_t n) {
    *buf = realloc(*buf, *len + n);
    memcpy(*buf + *len, p, n);
    *len += n;
}
static void app_u32(uint8_t **b, size_t *l, uint32_t v) { app(b, l, &v, 4); }
static void app_u64(uint8_t **b, size_t *l, uint64_t v) { app(b, l, &v, 8); }
static void app_str(uint8_t **b, size_t *l, const char *s) { app_u64(b, l, strlen(s)); app(b, l, s, strlen(s)); }

static void kv_str(builder *g, const char *k, const char *v) {
    app_str(&g->kv, &g->kv_len, k); app_u32(&g->kv, &g->kv_len, CP_GGUF_STRING); app_str(&g->kv, &g->kv_len, v); g->n_kv++;
}
static void kv_u32(builder *g, const char *k, uint32_t v) {
    app_str(&g->kv, &g->kv_len, k); app_u32(&g->kv, &g->kv_len, CP_GGUF_UINT32); app_u32(&g->kv, &g->kv_len, v); g->n_kv++;
}
static void kv_f32(builder *g, const char *k, float v) {
    app_str(&g->kv, &g->kv_len, k); app_u32(&g->kv, &g->kv_len, CP_GGUF_FLOAT32); app(&g->kv, &g->kv_len, &v, 4); g->n_kv++;
}
static void kv_strs(builder *g, const char *k, const char *const *v, int n) {
    app_str(&g->kv, &g->kv_len, k); app_u32(&g->kv, &g->kv_len, CP_GGUF_ARRAY);
    app_u32(&g->kv, &g->kv_len, CP_GGUF_STRING); app_u64(&g->kv, &g->kv_len, (uint64_t)n);
    for (int i = 0; i < n; i++) app_str(&g->kv, &g->kv_len, v[i]);
    g->n_kv++;
}

/* An F32 tensor of HF shape [rows, cols] (cols 0: a vector) holding `fill`. */
static void tensor_f32(builder *g, const char *name, int64_t rows, int64_t cols) {
    int64_t n = cols ? rows * cols : rows;
    size_t pad = (32 - g->data_len % 32) % 32;
    for (size_t i = 0; i < pad; i++) app(&g->data, &g->data_len, "", 1);
    app_str(&g->ti, &g->ti_len, name);
    app_u32(&g->ti, &g->ti_len, cols ? 2 : 1);
    if (cols) { app_u64(&g->ti, &g->ti_len, (uint64_t)cols); app_u64(&g->ti, &g->ti_len, (uint64_t)rows); }
    else app_u64(&g->ti, &g->ti_len, (uint64_t)rows);
    app_u32(&g->ti, &g->ti_len, CP_GGML_F32);
    app_u64(&g->ti, &g->ti_len, g->data_len);
    for (int64_t i = 0; i < n; i++) { float v = 0.01f * (float)(i % 7); app(&g->data, &g->data_len, &v, 4); }
    g->n_ti++;
}

static uint8_t *build(builder *g, size_t *len) {
    uint8_t *out = NULL;
    *len = 0;
    app(&out, len, "GGUF", 4);
    app_u32(&out, len, 3);
    app_u64(&out, len, g->n_ti);
    app_u64(&out, len, g->n_kv);
    app(&out, len, g->kv, g->kv_len);
    app(&out, len, g->ti, g->ti_len);
    while (*len % 32) app(&out, len, "", 1);
    app(&out, len, g->data, g->data_len);
    free(g->kv); free(g->ti); free(g->data);
    memset(g, 0, sizeof *g);
    return out;
}

/* A minimal valid llama: H=8, 2 heads (1 kv), I=16, 1 layer, vocab 4, byte-level tokenizer.
 * `skip` names a metadata key or tensor to leave out; extra(g) adds more metadata. */
static uint8_t *tiny_llama(size_t *len, const char *arch, uint32_t heads, uint32_t kv_heads, const char *skip,
                           void (*extra)(builder *)) {
    builder g = {0};
    static const char *const toks[4] = {"a", "b", "ab", "<|end|>"};
    static const char *const merges[1] = {"a b"};
    kv_str(&g, "general.architecture", arch);
    kv_u32(&g, "llama.block_count", 1);
    kv_u32(&g, "llama.embedding_length", 8);
    kv_u32(&g, "llama.feed_forward_length", 16);
    kv_u32(&g, "llama.attention.head_count", heads);
    kv_u32(&g, "llama.attention.head_count_kv", kv_heads);
    if (!skip || strcmp(skip, "eps")) kv_f32(&g, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    kv_str(&g, "tokenizer.ggml.model", "gpt2");
    kv_strs(&g, "tokenizer.ggml.tokens", toks, 4);
    kv_strs(&g, "tokenizer.ggml.merges", merges, 1);
    kv_u32(&g, "tokenizer.ggml.eos_token_id", 3);
    if (extra) extra(&g);
    static const struct { const char *name; int64_t rows, cols; } t[] = {
        {"token_embd.weight", 4, 8}, {"blk.0.attn_norm.weight", 8, 0}, {"blk.0.attn_q.weight", 8, 8},
        {"blk.0.attn_k.weight", 4, 8}, {"blk.0.attn_v.weight", 4, 8}, {"blk.0.attn_output.weight", 8, 8},
        {"blk.0.ffn_norm.weight", 8, 0}, {"blk.0.ffn_gate.weight", 16, 8}, {"blk.0.ffn_up.weight", 16, 8},
        {"blk.0.ffn_down.weight", 8, 16}, {"output_norm.weight", 8, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!skip || strcmp(skip, t[i].name)) tensor_f32(&g, t[i].name, t[i].rows, t[i].cols);
    return build(&g, len);
}

/* ---- the reader ------------------------------------------------------------------------------ */

TEST(reads_metadata_and_tensor_infos) {
    cp_gguf g;
    CHECK_OK(cp_gguf_open(&g, FIX "tiny-llama-bpe.gguf"));
    CHECK(g.version == 3 && g.alignment == 32, "version %u alignment %lu", g.version, (unsigned long)g.alignment);
    CHECK(g.n_tensors == 11, "%ld tensors", (long)g.n_tensors);
    char *s = NULL;
    int64_t v;
    double f;
    int b;
    CHECK_OK(cp_gguf_get_string(&g, "general.architecture", 1, &s));
    CHECK(s && !strcmp(s, "llama"), "architecture %s", s ? s : "(null)");
    cp_free(s);
    CHECK_OK(cp_gguf_get_int(&g, "llama.attention.head_count_kv", 0, 1, 0, 100, &v));
    CHECK(v == 2, "head_count_kv %ld", (long)v);
    CHECK_OK(cp_gguf_get_float(&g, "llama.attention.layer_norm_rms_epsilon", 0, 1, &f));
    CHECK(f == (double)1e-5f, "eps %g", f);
    CHECK_OK(cp_gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", 1, 1, &b));
    CHECK(b == 0, "add_bos_token %d", b);
    const cp_gguf_kv *kv;
    CHECK_OK(cp_gguf_get_array(&g, "tokenizer.ggml.tokens", CP_GGUF_STRING, 1, &kv));
    CHECK(kv && kv->arr_len == 273 && kv->arr_strs[1].len == 12 && !memcmp(kv->arr_strs[1].ptr, "<|im_start|>", 12),
          "tokens");
    CHECK_OK(cp_gguf_get_array(&g, "tokenizer.ggml.token_type", CP_GGUF_INT32, 1, &kv));
    CHECK(kv && cp_gguf_arr_int(kv, 0) == 3 && cp_gguf_arr_int(kv, 3) == 4 && cp_gguf_arr_int(kv, 10) == 1, "types");
    /* typed errors name the key and both types */
    CHECK_ERR(cp_gguf_get_int(&g, "general.architecture", 0, 1, 0, 10, &v), "expected an integer, found STRING");
    CHECK_ERR(cp_gguf_get_int(&g, "llama.block_count", 0, 1, 2, 10, &v), "out of range");
    CHECK_ERR(cp_gguf_get_string(&g, "tokenizer.ggml.tokens", 1, &s), "found an array of 273 STRING");
    CHECK_ERR(cp_gguf_get_int(&g, "no.such.key", 0, 1, 0, 1, &v), "metadata key 'no.such.key' is missing");
    CHECK_OK(cp_gguf_get_int(&g, "no.such.key", 7, 0, 0, 10, &v));
    CHECK(v == 7, "default %ld", (long)v);
    const cp_gguf_tensor *t = cp_gguf_find_tensor(&g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == CP_GGML_Q4_K && t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 64 && t->nbytes == 64 * 144,
          "ffn_down info");
    t = cp_gguf_find_tensor(&g, "blk.0.attn_k.weight");
    CHECK(t && t->type == CP_GGML_BF16 && t->ne[0] == 64 && t->ne[1] == 32, "attn_k info");
    CHECK(cp_gguf_find_tensor(&g, "nope") == NULL, "missing tensor found");
    cp_gguf_close(&g);
    CHECK_OK(cp_gguf_open(&g, FIX "tiny-llama-spm.gguf"));
    CHECK(g.version == 2, "v2 file read as version %u", g.version);
    cp_gguf_close(&g);
}

TEST(dequantizes_every_type_like_ggml) {
    cp_gguf g;
    cp_safetensors st;
    CHECK_OK(cp_gguf_open(&g, FIX "quant-zoo.gguf"));
    CHECK_OK(cp_st_open(&st, FIX "quant-zoo.expected.safetensors"));
    CHECK(g.alignment == 64, "alignment %lu", (unsigned long)g.alignment);
    int checked = 0;
    for (int64_t i = 0; i < g.n_tensors; i++) {
        const cp_gguf_tensor *t = &g.tensors[i];
        CHECK(((const uint8_t *)t->data - (const uint8_t *)g.map - g.data_offset) % 64 == 0, "%s unaligned", t->name);
        float *got = cp_malloc((size_t)t->numel * sizeof *got, "test");
        if (t->type == CP_GGML_IQ2_XS) {
            CHECK(!cp_ggml_can_dequantize(t->type), "IQ2_XS claimed");
            CHECK_ERR(cp_gguf_dequantize(&g, t, got), "unsupported tensor type IQ2_XS in tensor zoo.IQ2_XS");
            cp_free(got);
            continue;
        }
        const cp_st_tensor *e = cp_st_find(&st, t->name);
        CHECK(e && e->numel == t->numel, "no expected values for %s", t->name);
        if (e && e->numel == t->numel) {
            CHECK_OK(cp_gguf_dequantize(&g, t, got));
            size_t nbad;
            double d = max_diff(got, e->data, (size_t)t->numel, &nbad);
            printf("  %-12s max |cpeft - gguf-py| = %g, %zu of %ld values differ in any bit\n", t->name, d, nbad,
                   (long)t->numel);
            CHECK(nbad == 0, "%s: %zu values differ", t->name, nbad);
            checked++;
        }
        cp_free(got);
    }
    CHECK(checked == 14, "%d types checked", checked);
    cp_st_close(&st);
    cp_gguf_close(&g);
}

TEST(rejects_malformed_files) {
    size_t len;
    uint8_t *orig = read_all(FIX "tiny-llama-bpe.gguf", &len), *buf = malloc(len);
    CHECK(orig && buf, "fixture");
    if (!orig || !buf) return;
    cp_gguf g;
#define MUTATE(stmt, needle)                                                     \
    do {                                                                         \
        memcpy(buf, orig, len);                                                  \
        stmt;                                                                    \
        CHECK_ERR(cp_gguf_parse(&g, buf, len, "m.gguf"), needle);                \
        CHECK(strstr(cp_last_error(), "m.gguf"), "no file name: %s", cp_last_error()); \
    } while (0)
    MUTATE(memcpy(buf, "GGML", 4), "not a GGUF file");
    MUTATE(put_u32(buf + 4, 1), "unsupported GGUF version 1 (supported: 2 and 3)");
    MUTATE(put_u32(buf + 4, 4), "unsupported GGUF version 4");
    MUTATE(put_u32(buf + 4, 0x03000000), "big-endian");
    MUTATE(put_u64(buf + 8, 1ull << 40), "claims 1099511627776 tensors");
    MUTATE(put_u64(buf + 16, UINT64_MAX), "metadata entries");
    MUTATE(put_u64(buf + 24, 1ull << 62), "truncated");                  /* first key's length */
    MUTATE(buf[32] = 0xff, "not UTF-8");                                  /* first key's first byte */
    size_t k = find_gguf_string(orig, len, "tokenizer.ggml.add_bos_token");
    CHECK(k, "add_bos_token key");
    MUTATE(buf[k + 8 + 28 + 4] = 2, "bool value 2");
    size_t ft = find_gguf_string(orig, len, "general.file_type");
    CHECK(ft, "general.file_type key");
    MUTATE(memcpy(buf + ft + 8, "llama.block_count", 17), "metadata key 'llama.block_count' appears twice");
    size_t toks = find_gguf_string(orig, len, "tokenizer.ggml.tokens");
    MUTATE(put_u64(buf + toks + 8 + 21 + 8, 1ull << 50), "array of 1125899906842624 strings");
    MUTATE(put_u64(buf + toks + 8 + 21 + 8 + 8, 1ull << 40), "claims 1099511627776 bytes");
    /* the tensor info of blk.0.attn_v.weight: name, n_dims, ne[2], type, offset */
    size_t ti = find_gguf_string(orig, len, "blk.0.attn_v.weight");
    CHECK(ti, "attn_v info");
    size_t nd = ti + 8 + 19, type = nd + 4 + 16, off = type + 4;
    MUTATE(put_u32(buf + nd, 5), "5 dimensions (expected 1 to 4)");
    MUTATE(put_u32(buf + type, 31), "tensor 'blk.0.attn_v.weight': unknown ggml tensor type 31");
    MUTATE(put_u32(buf + type, CP_GGML_Q4_K), "stores blocks of 256 elements but the row has 64");
    MUTATE(put_u64(buf + nd + 4, 0), "dimension 0 is 0");
    MUTATE(put_u64(buf + nd + 4, 1ull << 62); put_u64(buf + nd + 12, 1ull << 62), "overflows");
    MUTATE(put_u64(buf + off, get_u64(orig + off) + 1), "is not a multiple of the alignment 32");
    MUTATE(put_u64(buf + off, 1ull << 40), "run past the end of the file");
    MUTATE(put_u64(buf + off, 0), "overlap");
    MUTATE(memcpy(buf + ti + 8 + 6, "attn_q", 6), "tensor 'blk.0.attn_q.weight' appears twice");
#undef MUTATE
    /* Every truncation fails cleanly (the 24-byte header alone would be a valid empty file). */
    int ok = 1;
    for (size_t n = 0; n < len; n += (n < 4096 ? 1 : 997)) {
        cp_clear_error();
        if (cp_gguf_parse(&g, orig, n, "t.gguf") == CP_OK) { ok = 0; cp_gguf_close(&g); }
        else if (!strstr(cp_last_error(), "t.gguf")) ok = 0;
    }
    CHECK(ok, "a truncated file parsed, or its error did not name the file");
    CHECK_ERR(cp_gguf_parse(&g, orig, len - 1, "t.gguf"), "run past the end of the file");
    CHECK_ERR(cp_gguf_parse(&g, orig, 30, "t.gguf"), "the header claims 25 metadata entries; the file's 6 remaining bytes cannot hold them");
    CHECK_ERR(cp_gguf_open(&g, FIX "no-such.gguf"), "cannot open");
    CHECK_ERR(cp_gguf_open(&g, tmpdir), "not a regular file");
    /* files shorter than the 24-byte header are read, not mapped, and the parser says what is missing */
    char *empty = cp_path_join(tmpdir, "empty.gguf"), *stub = cp_path_join(tmpdir, "stub.gguf");
    CHECK(empty && stub && cp_write_file_atomic(empty, "", 0) == CP_OK && cp_write_file_atomic(stub, orig, 10) == CP_OK,
          "writing the short files: %s", cp_last_error());
    CHECK_ERR(cp_gguf_open(&g, empty), "empty.gguf");
    CHECK_ERR(cp_gguf_open(&g, stub), "stub.gguf");
    printf("  short files: \"%s\"\n", cp_last_error());
    cp_free(empty);
    cp_free(stub);
    free(buf);
    cp_free(orig);
}

/* ---- conversion ---------------------------------------------------------------------------------- */

TEST(unpermute_inverts_llamacpp_permute) {
    /* llama.cpp: W.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2): GGUF row h*hd + 2j + i = HF row h*hd + i*hd/2 + j */
    enum { NHEAD = 3, HD = 8, ROWS = NHEAD * HD, COLS = 5 };
    float hf[ROWS * COLS], gg[ROWS * COLS], back[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) hf[i] = (float)i;
    for (int h = 0; h < NHEAD; h++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < HD / 2; j++)
                memcpy(gg + (h * HD + 2 * j + i) * COLS, hf + (h * HD + i * HD / 2 + j) * COLS, COLS * sizeof(float));
    CHECK_OK(cp_gguf_unpermute_rows(back, gg, ROWS, COLS, NHEAD));
    CHECK(!memcmp(back, hf, sizeof hf), "unpermute(permute(W)) != W");
    CHECK_ERR(cp_gguf_unpermute_rows(back, gg, ROWS, COLS, 5), "not a multiple of 2 x 5 heads");
}

TEST(maps_tensor_names) {
    char out[128];
    CHECK_OK(cp_gguf_llama_hf_name("blk.11.attn_output.weight", 12, out, sizeof out));
    CHECK(!strcmp(out, "model.layers.11.self_attn.o_proj.weight"), "%s", out);
    CHECK_OK(cp_gguf_llama_hf_name("blk.0.ffn_norm.weight", 1, out, sizeof out));
    CHECK(!strcmp(out, "model.layers.0.post_attention_layernorm.weight"), "%s", out);
    CHECK_OK(cp_gguf_llama_hf_name("output.weight", 1, out, sizeof out));
    CHECK(!strcmp(out, "lm_head.weight"), "%s", out);
    CHECK_OK(cp_gguf_llama_hf_name("output_norm.weight", 1, out, sizeof out));
    CHECK(!strcmp(out, "model.norm.weight"), "%s", out);
    CHECK_ERR(cp_gguf_llama_hf_name("blk.12.attn_q.weight", 12, out, sizeof out), "layer 12 but the model has 12 layers");
    CHECK_ERR(cp_gguf_llama_hf_name("blk.0.attn_q.bias", 12, out, sizeof out), "no counterpart");
    CHECK_ERR(cp_gguf_llama_hf_name("blk.01.attn_q.weight", 12, out, sizeof out), "no counterpart");
    CHECK_ERR(cp_gguf_llama_hf_name("rope_freqs.weight", 12, out, sizeof out), "Llama-3.1-style rope scaling");
}

/* Converts fixture `name` into tmpdir/name and checks tensors and tokenizer against expected. */
static void check_conversion(const char *name, int tied) {
    char gpath[256], epath[256], *dir = cp_path_join(tmpdir, name);
    snprintf(gpath, sizeof gpath, FIX "%s.gguf", name);
    snprintf(epath, sizeof epath, FIX "%s.expected.safetensors", name);
    cp_gguf g;
    cp_gguf_convert_report rep;
    cp_gguf_convert_opts opts = {.dtype = -1};
    CHECK_OK(cp_gguf_open(&g, gpath));
    CHECK_OK(cp_mkdirs(dir));
    CHECK_OK(cp_gguf_convert(&g, dir, &opts, &rep));
    CHECK(rep.hp.tie_word_embeddings == tied, "tie %d", rep.hp.tie_word_embeddings);
    CHECK(rep.license && !strcmp(rep.license, "apache-2.0"), "licence");
    cp_gguf_convert_report_free(&rep);
    /* tensors: names, shapes and values bit for bit */
    cp_safetensors got, exp;
    char *mpath = cp_path_join(dir, "model.safetensors");
    CHECK_OK(cp_st_open(&got, mpath));
    CHECK_OK(cp_st_open(&exp, epath));
    CHECK(got.n_tensors == exp.n_tensors, "%d tensors, expected %d", got.n_tensors, exp.n_tensors);
    for (int i = 0; i < exp.n_tensors; i++) {
        const cp_st_tensor *e = &exp.tensors[i], *o = cp_st_find(&got, e->name);
        CHECK(o, "%s missing", e->name);
        if (!o) continue;
        CHECK(o->ndim == e->ndim && !memcmp(o->shape, e->shape, (size_t)e->ndim * sizeof *e->shape), "%s shape", e->name);
        if (o->numel != e->numel) continue;
        float *v = st_as_f32(o);
        size_t nbad;
        double d = max_diff(v, e->data, (size_t)e->numel, &nbad);
        CHECK(nbad == 0, "%s: %zu values differ (max %g)", e->name, nbad, d);
        cp_free(v);
    }
    printf("  %s: %d tensors checked bit for bit (Q/K un-permuted)\n", name, exp.n_tensors);
    const cp_st_tensor *q = cp_st_find(&got, "model.layers.0.self_attn.q_proj.weight");
    CHECK(q && q->dtype == (!strcmp(name, "tiny-llama-bpe") ? CP_F16 : CP_F32), "q_proj dtype under auto");
    cp_st_close(&got);
    cp_st_close(&exp);
    cp_free(mpath);
    /* config.json */
    cJSON *cfg = NULL;
    char *cpath = cp_path_join(dir, "config.json");
    CHECK_OK(cp_json_read_file(cpath, &cfg));
    if (cfg) {
        const cJSON *it;
        CHECK((it = cJSON_GetObjectItem(cfg, "model_type")) && !strcmp(it->valuestring, "llama"), "model_type");
        CHECK((it = cJSON_GetObjectItem(cfg, "num_key_value_heads")) && it->valueint == 2, "kv heads");
        CHECK((it = cJSON_GetObjectItem(cfg, "head_dim")) && it->valueint == 16, "head_dim");
        CHECK((it = cJSON_GetObjectItem(cfg, "tie_word_embeddings")) && cJSON_IsTrue(it) == tied, "tie");
        CHECK((it = cJSON_GetObjectItem(cfg, "rms_norm_eps")) && it->valuedouble == 1e-5, "eps");
        CHECK((it = cJSON_GetObjectItem(cfg, "rope_theta")) && it->valuedouble == 10000.0, "rope_theta");
        CHECK((it = cJSON_GetObjectItem(cfg, "max_position_embeddings")) && it->valueint == 256, "positions");
        cJSON_Delete(cfg);
    }
    char *text = NULL;
    CHECK_OK(cp_read_file(cpath, &text, NULL));
    CHECK(text && strstr(text, "\"rms_norm_eps\": 1e-05,") && strstr(text, "\"rope_theta\": 10000.0,"),
          "floats as Python writes them");
    cp_free(text);
    cp_free(cpath);
    /* tokenizer: ids equal to transformers' GGUF tokenizer */
    cJSON *ex = expected_json();
    cp_tokenizer *tok = NULL;
    CHECK(cp_tokenizer_load_dir(&tok, dir) == CP_OK, "tokenizer: %s", cp_last_error());
    const cJSON *encs = cJSON_GetObjectItem(cJSON_GetObjectItem(ex, name), "encodings"), *pair;
    int n = 0, same = 0;
    cJSON_ArrayForEach(pair, encs) {
        const char *s = cJSON_GetArrayItem(pair, 0)->valuestring;
        const cJSON *ids = cJSON_GetArrayItem(pair, 1);
        cp_encoding enc = {0};
        if (tok && cp_tokenizer_encode(tok, s, strlen(s), 1, &enc) == CP_OK && enc.n == (size_t)cJSON_GetArraySize(ids)) {
            int eq = 1;
            for (size_t i = 0; i < enc.n; i++) eq &= enc.ids[i] == cJSON_GetArrayItem(ids, (int)i)->valueint;
            same += eq;
        }
        cp_encoding_free(&enc);
        n++;
    }
    printf("  %s: %d/%d texts encode as transformers' GGUF tokenizer does\n", name, same, n);
    CHECK(n > 0 && same == n, "%d of %d encodings differ", n - same, n);
    if (tok) cp_tokenizer_free(tok);
    cJSON_Delete(ex);
    cp_gguf_close(&g);
    cp_free(dir);
}

TEST(converts_byte_level_bpe_model) { check_conversion("tiny-llama-bpe", 1); }
TEST(converts_sentencepiece_model) { check_conversion("tiny-llama-spm", 0); }

TEST(dtype_option_narrows_everything) {
    cp_gguf g;
    cp_gguf_convert_report rep;
    cp_gguf_convert_opts opts = {.dtype = CP_BF16};
    char *dir = cp_path_join(tmpdir, "bf16");
    CHECK_OK(cp_mkdirs(dir));
    CHECK_OK(cp_gguf_open(&g, FIX "tiny-llama-bpe.gguf"));
    CHECK_OK(cp_gguf_convert(&g, dir, &opts, &rep));
    CHECK(rep.weight_dtype == CP_BF16 && rep.n_rounded == rep.n_tensors - 1, "%ld of %ld rounded", (long)rep.n_rounded,
          (long)rep.n_tensors); /* all but attn_k, which is BF16 already */
    cp_gguf_convert_report_free(&rep);
    cp_safetensors st;
    char *mpath = cp_path_join(dir, "model.safetensors");
    CHECK_OK(cp_st_open(&st, mpath));
    for (int i = 0; i < st.n_tensors; i++) CHECK(st.tensors[i].dtype == CP_BF16, "%s not BF16", st.tensors[i].name);
    cp_st_close(&st);
    opts.dtype = CP_I32;
    CHECK_ERR(cp_gguf_convert(&g, dir, &opts, &rep), "unsupported output dtype");
    cp_gguf_close(&g);
    cp_free(mpath);
    cp_free(dir);
}

TEST(builds_a_real_sentencepiece_vocabulary) {
    cp_gguf g;
    cp_gguf_tokenizer tk;
    CHECK_OK(cp_gguf_open(&g, FIX "spm-3000.gguf"));
    CHECK_OK(cp_gguf_tokenizer_build(&g, 4096, &tk));
    CHECK(tk.merges_derived && tk.n_tokens == 3000, "derived %d, %ld tokens", tk.merges_derived, (long)tk.n_tokens);
    cp_tokenizer *tok = NULL;
    CHECK(tk.tokenizer_json && cp_tokenizer_load_json(&tok, tk.tokenizer_json, strlen(tk.tokenizer_json)) == CP_OK,
          "load: %s", cp_last_error());
    cJSON *ex = expected_json();
    const cJSON *pair;
    int n = 0, same = 0;
    cJSON_ArrayForEach(pair, cJSON_GetObjectItem(cJSON_GetObjectItem(ex, "spm-3000"), "encodings")) {
        const char *s = cJSON_GetArrayItem(pair, 0)->valuestring;
        const cJSON *ids = cJSON_GetArrayItem(pair, 1);
        cp_encoding enc = {0};
        int eq = tok && cp_tokenizer_encode(tok, s, strlen(s), 1, &enc) == CP_OK && enc.n == (size_t)cJSON_GetArraySize(ids);
        for (size_t i = 0; eq && i < enc.n; i++) eq = enc.ids[i] == cJSON_GetArrayItem(ids, (int)i)->valueint;
        if (!eq) fprintf(stderr, "  differs: \"%s\"\n", s);
        same += eq;
        n++;
        cp_encoding_free(&enc);
    }
    printf("  spm-3000: %ld merges derived from the scores; %d/%d texts encode as transformers does\n",
           (long)tk.n_merges, same, n);
    CHECK(n >= 30 && same == n, "%d of %d differ", n - same, n);
    cJSON_Delete(ex);
    if (tok) cp_tokenizer_free(tok);
    cp_gguf_tokenizer_free(&tk);
    cp_gguf_close(&g);
}

static void add_linear_rope(builder *g) {
    kv_str(g, "llama.rope.scaling.type", "linear");
    kv_f32(g, "llama.rope.scaling.factor", 4.0f);
    kv_f32(g, "llama.rope.freq_base", 500000.0f);
}
static void add_yarn(builder *g) { kv_str(g, "llama.rope.scaling.type", "yarn"); }
static void add_bad_pre(builder *g) { kv_str(g, "tokenizer.ggml.pre", "mystery"); }
static void add_experts(builder *g) { kv_u32(g, "llama.expert_count", 8); }
static void add_bad_eos(builder *g) { kv_u32(g, "tokenizer.ggml.bos_token_id", 9); }

TEST(checks_hyperparameters_and_inventory) {
    size_t len;
    uint8_t *img;
    cp_gguf g;
    cp_gguf_llama hp;
#define EXPECT(build_expr, needle)                                              \
    do {                                                                        \
        img = build_expr;                                                       \
        CHECK_OK(cp_gguf_parse(&g, img, len, "b.gguf"));                        \
        CHECK_ERR(cp_gguf_llama_read(&g, &hp), needle);                         \
        cp_gguf_close(&g);                                                      \
        free(img);                                                              \
    } while (0)
    EXPECT(tiny_llama(&len, "llama", 2, 3, NULL, NULL), "num_key_value_heads (3, llama.attention.head_count_kv) does not divide num_attention_heads (2)");
    EXPECT(tiny_llama(&len, "gpt2", 2, 1, NULL, NULL), "general.architecture is 'gpt2'");
    EXPECT(tiny_llama(&len, "llama", 2, 1, "eps", NULL), "llama.attention.layer_norm_rms_epsilon' is missing");
    EXPECT(tiny_llama(&len, "llama", 2, 1, "blk.0.ffn_up.weight", NULL), "tensor 'blk.0.ffn_up.weight' is missing");
    EXPECT(tiny_llama(&len, "llama", 2, 1, NULL, add_yarn), "rope.scaling.type 'yarn' is not supported");
    EXPECT(tiny_llama(&len, "llama", 2, 1, NULL, add_experts), "mixture-of-experts");
    EXPECT(tiny_llama(&len, "llama", 2, 1, NULL, add_bad_eos), "token id 9 is outside the vocabulary of 4");
    EXPECT(tiny_llama(&len, "llama", 4, 1, NULL, NULL), "(model.layers.0.self_attn.k_proj.weight) has Hugging Face shape [4, 8], expected [2, 8]");
#undef EXPECT
    /* linear rope scaling reaches config.json; an unknown pre-tokenizer is named */
    img = tiny_llama(&len, "llama", 2, 1, NULL, add_linear_rope);
    CHECK_OK(cp_gguf_parse(&g, img, len, "b.gguf"));
    CHECK_OK(cp_gguf_llama_read(&g, &hp));
    char *cfg = cp_gguf_llama_config_json(&hp, "float32");
    CHECK(cfg && strstr(cfg, "\"rope_scaling\": {\n    \"factor\": 4.0,\n    \"rope_type\": \"linear\"\n  }") &&
          strstr(cfg, "\"rope_theta\": 500000.0") && strstr(cfg, "\"rms_norm_eps\": 1e-06") &&
          strstr(cfg, "\"tie_word_embeddings\": true") && !strstr(cfg, "bos_token_id") &&
          strstr(cfg, "\"eos_token_id\": 3"), "config.json:\n%s", cfg ? cfg : "(null)");
    cp_free(cfg);
    char *d = cp_path_join(tmpdir, "built");
    CHECK_OK(cp_mkdirs(d));
    cp_gguf_convert_report rep;
    CHECK_OK(cp_gguf_convert(&g, d, NULL, &rep));
    CHECK(rep.n_quantized == 0 && rep.n_params == 4 * 8 + 3 * 8 + 64 + 32 + 32 + 64 + 3 * 128, "params %ld", (long)rep.n_params);
    cp_gguf_convert_report_free(&rep);
    cp_gguf_close(&g);
    free(img);
    cp_free(d);
    img = tiny_llama(&len, "llama", 2, 1, NULL, add_bad_pre);
    CHECK_OK(cp_gguf_parse(&g, img, len, "b.gguf"));
    cp_gguf_tokenizer tk;
    CHECK_ERR(cp_gguf_tokenizer_build(&g, 16, &tk), "tokenizer.ggml.pre 'mystery' is not supported (known: default");
    cp_gguf_close(&g);
    free(img);
}

TEST(unsupported_tensor_type_is_named) {
    /* attn_v's Q4_0 blocks relabelled IQ4_NL (same block geometry): parses, cannot convert */
    size_t len;
    uint8_t *buf = read_all(FIX "tiny-llama-bpe.gguf", &len);
    size_t ti = buf ? find_gguf_string(buf, len, "blk.0.attn_v.weight") : 0;
    CHECK(ti, "attn_v");
    if (!ti) { cp_free(buf); return; }
    put_u32(buf + ti + 8 + 19 + 4 + 16, CP_GGML_IQ4_NL);
    cp_gguf g;
    CHECK_OK(cp_gguf_parse(&g, buf, len, "iq.gguf"));
    char *d = cp_path_join(tmpdir, "iq");
    CHECK_OK(cp_mkdirs(d));
    CHECK_ERR(cp_gguf_convert(&g, d, NULL, NULL), "iq.gguf: unsupported tensor type IQ4_NL in tensor blk.0.attn_v.weight");
    char *m = cp_path_join(d, "model.safetensors");
    CHECK(!cp_path_exists(m), "a model was written");
    cp_free(m);
    cp_free(d);
    cp_gguf_close(&g);
    cp_free(buf);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-gguf-%d", (int)getpid());
    cp_mkdirs(tmpdir);
    RUN(reads_metadata_and_tensor_infos);
    RUN(dequantizes_every_type_like_ggml);
    RUN(rejects_malformed_files);
    RUN(unpermute_inverts_llamacpp_permute);
    RUN(maps_tensor_names);
    RUN(converts_byte_level_bpe_model);
    RUN(converts_sentencepiece_model);
    RUN(dtype_option_narrows_everything);
    RUN(builds_a_real_sentencepiece_vocabulary);
    RUN(checks_hyperparameters_and_inventory);
    RUN(unsupported_tensor_type_is_named);
    rm_rf(tmpdir);
    return test_summary();
}
