/*
 * test_safetensors.c — the safetensors reader and writer: round trips, byte-for-byte equality with
 * files written by Python safetensors (tests/fixtures/safetensors/, made by
 * tests/reference/make_safetensors_fixtures.py), one malformed image per validation rule, and
 * writes that fail without touching an existing file or leaving a temporary behind.
 */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/dtype.h"
#include "io/safetensors.h"
#include "test.h"

#define FIXTURES "tests/fixtures/safetensors/"
#define IMG "img.safetensors" /* the name malformed in-memory images are parsed under */

static char tmpdir[64];

/* ---- helpers --------------------------------------------------------------------------------- */

static const char *tmp_path(const char *name) {
    static char path[2][256];
    static int which;
    which ^= 1;
    snprintf(path[which], sizeof path[which], "%s/%s", tmpdir, name);
    return path[which];
}

/* Whole file into a malloc'd buffer (NULL if unreadable). */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void write_file(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* Number of entries in tmpdir whose name contains ".tmp." (left-over temporary files). */
static int count_temp_files(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* Compares two files byte for byte and reports the first difference. */
static int files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    uint8_t *x = read_file(a, &na), *y = read_file(b, &nb);
    int equal = x && y && na == nb && memcmp(x, y, na) == 0;
    if (!equal && x && y) {
        size_t i = 0;
        while (i < na && i < nb && x[i] == y[i]) i++;
        fprintf(stderr, "  %s (%zu bytes) and %s (%zu bytes) first differ at byte %zu\n", a, na, b,
                nb, i);
    }
    free(x);
    free(y);
    return equal;
}

/* Parses an image made of the 8-byte length of `header`, `header` itself (unpadded) and
 * `data_len` zero bytes, in a buffer of exactly that size so ASan catches any overread. */
static cp_status parse_bytes(const void *header, size_t header_len, size_t data_len) {
    size_t len = 8 + header_len + data_len;
    uint8_t *img = calloc(1, len);
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    memcpy(img + 8, header, header_len);
    cp_safetensors st;
    cp_status s = cp_st_parse(&st, img, len, IMG);
    /* Touch every tensor's bytes so ASan sees an out-of-range pointer. */
    volatile uint8_t sink = 0;
    for (int i = 0; s == CP_OK && i < st.n_tensors; i++)
        for (uint64_t b = 0; b < st.tensors[i].end - st.tensors[i].begin; b++)
            sink ^= ((const uint8_t *)st.tensors[i].data)[b];
    (void)sink;
    cp_st_close(&st);
    free(img);
    return s;
}

static cp_status parse_text(const char *header, size_t data_len) {
    return parse_bytes(header, strlen(header), data_len);
}

/* Expects the header to be rejected with a message that names the image and mentions `needle`. */
#define CHECK_BAD(header, data_len, needle)                                                      \
    do {                                                                                         \
        CHECK_ERR(parse_text(header, data_len), needle);                                         \
        CHECK(strstr(cp_last_error(), IMG), "error does not name the file: %s", cp_last_error()); \
    } while (0)

/* ---- round trips ----------------------------------------------------------------------------- */

TEST(test_roundtrip) {
    float w[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-20f};
    uint16_t h[4], b[3];
    float hv[4] = {0.5f, -1.0f, 65504.0f, 6e-8f}, bv[3] = {1.0f, -3.0e38f, 0.1f};
    for (int i = 0; i < 4; i++) h[i] = cp_f32_to_f16(hv[i]);
    for (int i = 0; i < 3; i++) b[i] = cp_f32_to_bf16(bv[i]);
    int64_t idx[2] = {-5, INT64_MAX};
    float scalar = 42.0f;
    cp_st_write_tensor t[] = {
        {"w", CP_F32, 2, {2, 3}, w},       {"h", CP_F16, 1, {4}, h},
        {"b", CP_BF16, 2, {3, 1}, b},      {"idx", CP_I64, 1, {2}, idx},
        {"scalar", CP_F32, 0, {0}, &scalar}, {"empty", CP_F32, 1, {0}, NULL},
        {"empty2", CP_I64, 2, {3, 0}, NULL},
    };
    int n = (int)(sizeof t / sizeof t[0]);
    const char *keys[] = {"format", "note"}, *values[] = {"pt", "line\nbreak"};
    const char *path = tmp_path("roundtrip.safetensors");
    CHECK_OK(cp_st_write(path, t, n, keys, values, 2));
    CHECK(count_temp_files() == 0, "temporary file left behind");

    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    CHECK(st.n_tensors == n, "%d tensors, expected %d", st.n_tensors, n);
    CHECK(((uintptr_t)st.data % 8) == 0, "data buffer not 8-byte aligned");
    CHECK(st.n_meta == 2 && strcmp(st.meta_keys[0], "format") == 0, "metadata order");
    CHECK(cp_st_meta(&st, "note") && strcmp(cp_st_meta(&st, "note"), "line\nbreak") == 0, "note");
    CHECK(cp_st_meta(&st, "absent") == NULL, "absent metadata key found");
    for (int i = 0; i < n; i++) {
        const cp_st_tensor *r = cp_st_find(&st, t[i].name);
        CHECK(r != NULL, "%s not found", t[i].name);
        if (!r) continue;
        CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim, "%s: dtype/ndim", t[i].name);
        int64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            CHECK(r->shape[d] == t[i].shape[d], "%s: dim %d", t[i].name, d);
            numel *= t[i].shape[d];
        }
        CHECK(r->numel == numel, "%s: numel %lld", t[i].name, (long long)r->numel);
        int64_t nbytes = cp_dtype_nbytes(t[i].dtype, numel);
        CHECK((int64_t)(r->end - r->begin) == nbytes, "%s: byte range", t[i].name);
        if (nbytes > 0) CHECK(memcmp(r->data, t[i].data, (size_t)nbytes) == 0, "%s: data", t[i].name);
    }
    CHECK(cp_st_find(&st, "nope") == NULL, "found a tensor that does not exist");
    CHECK(cp_st_find(&st, "") == NULL, "found the empty name");
    /* Header order is file order: dtype descending (I64 > F32 > BF16 > F16), then name. */
    const char *expect[] = {"empty2", "idx", "empty", "scalar", "w", "b", "h"};
    for (int i = 0; i < n && i < st.n_tensors; i++)
        CHECK(strcmp(st.tensors[i].name, expect[i]) == 0, "tensor %d is %s, expected %s", i,
              st.tensors[i].name, expect[i]);
    cp_st_close(&st);
    cp_st_close(&st); /* closing twice is harmless */

    size_t len;
    uint8_t *bytes = read_file(path, &len);
    const char *start = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"line\\nbreak\"},"
                        "\"empty2\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[0,0]},";
    CHECK(bytes && len > 8 + strlen(start) && memcmp(bytes + 8, start, strlen(start)) == 0,
          "header does not start as expected");
    free(bytes);
}

TEST(test_roundtrip_empty) {
    const char *path = tmp_path("empty.safetensors");
    CHECK_OK(cp_st_write(path, NULL, 0, NULL, NULL, 0));
    CHECK(files_equal(path, FIXTURES "empty.safetensors"), "differs from Python's empty file");
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    CHECK(st.n_tensors == 0 && st.n_meta == 0 && st.data_size == 0, "not empty");
    CHECK(cp_st_find(&st, "x") == NULL, "found a tensor in an empty file");
    cp_st_close(&st);
}

TEST(test_find_many) {
    enum { N = 300 };
    static char names[N][16];
    static float values[N];
    cp_st_write_tensor t[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layer.%d", (i * 7919) % N);
        values[i] = (float)i;
        t[i] = (cp_st_write_tensor){names[i], CP_F32, 1, {1}, &values[i]};
    }
    const char *path = tmp_path("many.safetensors");
    CHECK_OK(cp_st_write(path, t, N, NULL, NULL, 0));
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    for (int i = 0; i < N; i++) {
        const cp_st_tensor *r = cp_st_find(&st, names[i]);
        float v = -1;
        if (r) memcpy(&v, r->data, 4);
        CHECK(r && v == (float)i, "%s: found %p value %g", names[i], (const void *)r, v);
    }
    cp_st_close(&st);
}

/* ---- interop with Python safetensors --------------------------------------------------------- */

/* Reads a fixture, writes its tensors back (handed over in reverse order, so the writer must do
 * the sorting) and expects the very same bytes. */
static void check_rewrite_identical(const char *fixture) {
    char src[256];
    snprintf(src, sizeof src, FIXTURES "%s", fixture);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, src));
    int n = st.n_tensors;
    cp_st_write_tensor *t = calloc((size_t)n + 1, sizeof *t);
    for (int i = 0; i < n; i++) {
        const cp_st_tensor *r = &st.tensors[n - 1 - i];
        t[i] = (cp_st_write_tensor){r->name, r->dtype, r->ndim, {0}, r->data};
        memcpy(t[i].shape, r->shape, sizeof r->shape);
    }
    const char *dst = tmp_path(fixture);
    CHECK_OK(cp_st_write(dst, t, n, (const char *const *)st.meta_keys,
                         (const char *const *)st.meta_values, st.n_meta));
    CHECK(files_equal(dst, src), "%s: rewritten file differs from Python's", fixture);
    free(t);
    cp_st_close(&st);
}

TEST(test_python_fixtures_byte_identical) {
    check_rewrite_identical("mixed.safetensors");
    check_rewrite_identical("peft_lora.safetensors");
    check_rewrite_identical("no_metadata.safetensors");
    check_rewrite_identical("empty.safetensors");
    check_rewrite_identical("escapes.safetensors");
}

/* The LoRA fixture rebuilt from the same formula as the Python script, not from the file. */
TEST(test_write_peft_lora_from_scratch) {
    static float a[4][64], b[4][64];
    static char name_a[4][80], name_b[4][80];
    cp_st_write_tensor t[8];
    const char *projs[] = {"q_proj", "v_proj"};
    for (int layer = 0, k = 0; layer < 2; layer++)
        for (int p = 0; p < 2; p++, k++) {
            int seed = layer * 2 + p;
            for (int i = 0; i < 64; i++) {
                a[k][i] = (float)(i * (1.0 / 64) + (-0.5 + seed));
                b[k][i] = (float)(i * (-1.0 / 32) + seed);
            }
            snprintf(name_a[k], sizeof name_a[k],
                     "base_model.model.model.layers.%d.self_attn.%s.lora_A.weight", layer, projs[p]);
            snprintf(name_b[k], sizeof name_b[k],
                     "base_model.model.model.layers.%d.self_attn.%s.lora_B.weight", layer, projs[p]);
            t[2 * k] = (cp_st_write_tensor){name_a[k], CP_F32, 2, {4, 16}, a[k]};
            t[2 * k + 1] = (cp_st_write_tensor){name_b[k], CP_F32, 2, {16, 4}, b[k]};
        }
    const char *key = "format", *value = "pt";
    const char *path = tmp_path("lora_scratch.safetensors");
    CHECK_OK(cp_st_write(path, t, 8, &key, &value, 1));
    CHECK(files_equal(path, FIXTURES "peft_lora.safetensors"), "differs from PEFT-style file");
}

TEST(test_python_fixture_values) {
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIXTURES "mixed.safetensors"));
    CHECK(cp_st_meta(&st, "format") && strcmp(cp_st_meta(&st, "format"), "pt") == 0, "format");
    const cp_st_tensor *t;

    float f[3];
    t = cp_st_find(&st, "a.bias");
    CHECK(t && t->dtype == CP_F32 && t->numel == 3, "a.bias");
    if (t) {
        memcpy(f, t->data, sizeof f);
        CHECK(f[0] == 0.5f && f[1] == -1.25f && f[2] == 3.0f, "a.bias values %g %g %g", f[0], f[1], f[2]);
    }
    t = cp_st_find(&st, "b.weight"); /* BF16 (2,3) = arange(6)*0.5 - 1 */
    CHECK(t && t->dtype == CP_BF16 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "b.weight");
    if (t) {
        float v[6];
        cp_convert_to_f32(v, t->data, CP_BF16, 6);
        for (int i = 0; i < 6; i++) CHECK(v[i] == i * 0.5f - 1.0f, "b.weight[%d] = %g", i, v[i]);
    }
    t = cp_st_find(&st, "c.weight"); /* F16 (3,2) = arange(6)*0.25 - 0.5 */
    CHECK(t && t->dtype == CP_F16 && t->shape[0] == 3, "c.weight");
    if (t) {
        float v[6];
        cp_convert_to_f32(v, t->data, CP_F16, 6);
        for (int i = 0; i < 6; i++) CHECK(v[i] == i * 0.25f - 0.5f, "c.weight[%d] = %g", i, v[i]);
    }
    t = cp_st_find(&st, "d.index");
    CHECK(t && t->dtype == CP_I64, "d.index");
    if (t) {
        int64_t v[4];
        memcpy(v, t->data, sizeof v);
        CHECK(v[0] == 0 && v[1] == -1 && v[2] == ((int64_t)1 << 40) && v[3] == INT64_MAX, "d.index");
    }
    t = cp_st_find(&st, "e.scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->end - t->begin == 4, "e.scalar shape");
    if (t) { memcpy(f, t->data, 4); CHECK(f[0] == 3.5f, "e.scalar = %g", f[0]); }
    t = cp_st_find(&st, "f.empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->numel == 0 &&
          t->begin == t->end, "f.empty");
    t = cp_st_find(&st, "g.mask");
    CHECK(t && t->dtype == CP_BOOL && t->numel == 5 &&
          memcmp(t->data, "\1\0\1\1\0", 5) == 0, "g.mask");
    t = cp_st_find(&st, "p.i64_scalar");
    if (t) { int64_t v; memcpy(&v, t->data, 8); CHECK(v == -42, "p.i64_scalar = %lld", (long long)v); }
    CHECK(t && t->ndim == 0, "p.i64_scalar");
    t = cp_st_find(&st, "o.c64");
    CHECK(t && t->dtype == CP_C64 && t->end - t->begin == 16, "o.c64");
    CHECK(cp_st_find(&st, "m.f8") && cp_st_find(&st, "m.f8")->dtype == CP_F8_E4M3, "m.f8");
    cp_st_close(&st);

    CHECK_OK(cp_st_open(&st, FIXTURES "escapes.safetensors"));
    CHECK(cp_st_find(&st, "quote\"") && cp_st_find(&st, "back\\slash") &&
          cp_st_find(&st, "ctl\x01\x1f\n\t\b\f\r") && cp_st_find(&st, "del\x7f") &&
          cp_st_find(&st, "utf8\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), "escaped names not decoded");
    CHECK(cp_st_meta(&st, "k\"\\\n\xc3\xa9") &&
          strcmp(cp_st_meta(&st, "k\"\\\n\xc3\xa9"), "v\x02\xe2\x82\xac") == 0, "escaped metadata");
    cp_st_close(&st);
}

/* ---- the reader's validation, one rule at a time --------------------------------------------- */

#define T_OK "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

TEST(test_valid_edge_cases) {
    CHECK_OK(parse_text("{}", 0));
    CHECK_OK(parse_text("{}      ", 0));                 /* padded */
    CHECK_OK(parse_text("{ \"t\" : {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]} }\n", 8));
    CHECK_OK(parse_text("{" T_OK "}", 8));               /* unpadded: data unaligned */
    CHECK_OK(parse_text("{\"__metadata__\":{},\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
                        "\"data_offsets\":[0,8]}}", 8));
    /* unknown fields are ignored; fields in any order */
    CHECK_OK(parse_text("{\"t\":{\"data_offsets\":[0,8],\"extra\":[1.5,{}],\"shape\":[2],"
                        "\"dtype\":\"F32\"}}", 8));
    /* zero-size tensors anywhere, even sharing an offset; a zero dimension beats huge ones */
    CHECK_OK(parse_text("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                        "\"y\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}," T_OK ","
                        "\"x\":{\"dtype\":\"I64\",\"shape\":[4294967296,4294967296,0],"
                        "\"data_offsets\":[8,8]}}", 8));
    /* offsets need not follow header order */
    CHECK_OK(parse_text("{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                        "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 2));
    CHECK_OK(parse_text("{\"t\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 2));
    CHECK_OK(parse_text("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1));
}

TEST(test_bad_file_size) {
    CHECK_ERR(cp_st_parse(&(cp_safetensors){0}, "", 0, IMG), "0 bytes, shorter than the 8-byte");
    uint8_t seven[7] = {2};
    cp_safetensors st;
    CHECK_ERR(cp_st_parse(&st, seven, sizeof seven, IMG), IMG ": file is 7 bytes");
    cp_st_close(&st);
}

TEST(test_bad_header_length) {
    uint8_t img[16] = {0};
    uint64_t n = CP_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++) img[i] = (uint8_t)(n >> (8 * i));
    cp_safetensors st;
    CHECK_ERR(cp_st_parse(&st, img, sizeof img, IMG), "exceeds the limit of 100000000 bytes");
    for (int i = 0; i < 8; i++) img[i] = 0xff;
    CHECK_ERR(cp_st_parse(&st, img, sizeof img, IMG), "exceeds the limit");
    memset(img, 0, 8);
    img[0] = 9; /* 9 > the 8 bytes that follow */
    memcpy(img + 8, "{}      ", 8);
    CHECK_ERR(cp_st_parse(&st, img, sizeof img, IMG), "header length 9 runs past the end");
    img[0] = 0;
    CHECK_ERR(cp_st_parse(&st, img, sizeof img, IMG), "header is empty");
    cp_st_close(&st);
}

TEST(test_bad_json) {
    CHECK_BAD("[1,2]", 0, "starting with '{', found byte 0x5b");
    CHECK_BAD(" {}", 0, "starting with '{'");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    CHECK_BAD("{\"t\":1,}", 0, "not valid JSON");
    CHECK_BAD("{} x", 0, "trailing bytes after the JSON object");
    CHECK_BAD("{}{}", 0, "trailing bytes");
    CHECK_ERR(parse_bytes("{}\0\0", 4, 0), "trailing bytes");
    CHECK_ERR(parse_bytes("{\"\xff\":{}}", 7, 0), "not valid UTF-8");
    CHECK_ERR(parse_bytes("{\"\xc0\xaf\":{}}", 8, 0), "not valid UTF-8"); /* overlong '/' */
    CHECK_ERR(parse_bytes("{\"\xed\xa0\x80\":{}}", 9, 0), "not valid UTF-8"); /* surrogate */
    CHECK_ERR(parse_bytes("{\"a\x01\":{}}", 8, 0), "raw control character 0x01");
    CHECK_BAD("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "\\u0000");
    CHECK_OK(parse_text("{\"a\\\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1));
}

TEST(test_bad_entry_fields) {
    CHECK_BAD("{\"t\":5}", 0, "tensor \"t\": entry must be an object");
    CHECK_BAD("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor \"t\": missing \"dtype\"");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor \"t\": missing \"shape\"");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor \"t\": missing \"data_offsets\"");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "duplicate field \"dtype\"");
    CHECK_BAD("{\"t\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "\"dtype\" must be a string, found 32");
    CHECK_BAD("{\"t\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "tensor \"t\": unknown dtype \"F33\"");
    CHECK_BAD("{\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"f32\"");
    /* field names are case-sensitive (cJSON_GetObjectItem is not) */
    CHECK_BAD("{\"t\":{\"DTYPE\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "missing \"dtype\"");
}

TEST(test_bad_shape) {
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
              "\"shape\" must be an array, found a string");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
              "shape entry 0 must be a non-negative integer below 2^53, found 1.5");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
              "shape entry 1 must be a non-negative integer below 2^53, found -1");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,8]}}", 8,
              "found a boolean");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,8]}}", 8, "found null");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,8]}}", 8,
              "shape entry 0 must be a non-negative integer below 2^53");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, "below 2^53");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
              "tensor \"t\": shape has 9 dimensions, at most 8");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}", 0,
              "tensor \"t\": shape [4294967296, 4294967296, 4] has more elements than fit in 64 bits");
    CHECK_BAD("{\"t\":{\"dtype\":\"I64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,0]}}", 0,
              "not a whole number of bytes or overflows");
    CHECK_BAD("{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
              "shape [3] of F4 is not a whole number of bytes");
}

TEST(test_bad_offsets) {
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
              "tensor \"t\": \"data_offsets\" must be an array [begin, end]");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":0,\"b\":8}}}", 8,
              "must be an array [begin, end]");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1.5]}}", 8,
              "data_offsets must be non-negative integers below 2^53, found [0, 1.5]");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "found [-8, 0]");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8,
              "found [a string, 8]");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9007199254740993,"
              "9007199254740993]}}", 0, "below 2^53");
    CHECK_BAD("{\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9007199254740992,"
              "9007199254740992]}}", 0, "below 2^53");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
              "tensor \"t\": data_offsets [8, 0] begin after end");
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
              "tensor \"t\": shape [2] of F32 needs 8 bytes, but data_offsets [0, 4] hold 4 bytes");
    CHECK_BAD("{\"t\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24,
              "needs 12 bytes, but data_offsets [0, 24] hold 24 bytes");
}

TEST(test_bad_tiling) {
    CHECK_BAD("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
              "tensor \"t\" is the first in the data buffer but begins at byte 4, expected 0");
    CHECK_BAD("{" T_OK ",\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16,
              "tensor \"u\" begins at byte 12 but the previous tensor \"t\" ends at byte 8 (gap of 4 bytes)");
    CHECK_BAD("{" T_OK ",\"u\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
              "tensor \"u\" begins at byte 4 but the previous tensor \"t\" ends at byte 8 (overlap of 4 bytes)");
    CHECK_BAD("{" T_OK ",\"u\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
              "(overlap of 8 bytes)");
    /* a zero-size tensor inside another one's range is an overlap too */
    CHECK_BAD("{" T_OK ",\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
              "tensor \"z\" begins at byte 4 but the previous tensor \"t\" ends at byte 8 (overlap");
    CHECK_BAD("{" T_OK "}", 9, "the last tensor \"t\" ends at byte 8, but the data buffer holds 9 bytes "
              "(trailing bytes belong to no tensor)");
    CHECK_BAD("{" T_OK "}", 4, "the last tensor \"t\" ends at byte 8, but the data buffer holds 4 bytes "
              "(past the end of the file)");
    CHECK_BAD("{}", 3, "no tensors, but the data buffer holds 3 bytes");
    CHECK_BAD("{\"__metadata__\":{\"format\":\"pt\"}}", 1, "no tensors");
}

TEST(test_bad_duplicates) {
    CHECK_BAD("{" T_OK "," T_OK "}", 8, "duplicate tensor name \"t\"");
    CHECK_BAD("{" T_OK ",\"u\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
              "\"u\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8,
              "duplicate tensor name \"u\"");
    CHECK_BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" twice");
}

TEST(test_bad_metadata) {
    CHECK_BAD("{\"__metadata__\":[\"format\",\"pt\"]}", 0, "\"__metadata__\" must be an object of strings");
    CHECK_BAD("{\"__metadata__\":\"pt\"}", 0, "\"__metadata__\" must be an object of strings");
    CHECK_BAD("{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0, "but \"n\" is not a string");
    CHECK_BAD("{\"__metadata__\":{\"x\":null}}", 0, "\"x\" is not a string");
    CHECK_BAD("{\"__metadata__\":{\"format\":\"pt\",\"format\":\"np\"}}", 0,
              "\"__metadata__\" has the key \"format\" twice");
}

/* ---- cp_st_open ------------------------------------------------------------------------------ */

TEST(test_open_errors) {
    cp_safetensors st;
    const char *missing = tmp_path("missing.safetensors");
    CHECK_ERR(cp_st_open(&st, missing), "No such file or directory");
    CHECK(strstr(cp_last_error(), missing), "error does not name the path");
    CHECK(st.n_tensors == 0 && st.tensors == NULL, "st not empty after error");
    cp_st_close(&st);
    CHECK_ERR(cp_st_open(&st, tmpdir), "not a regular file");
    const char *empty = tmp_path("zero.safetensors");
    write_file(empty, "");
    CHECK_ERR(cp_st_open(&st, empty), "zero.safetensors: file is 0 bytes");
    const char *stub = tmp_path("five.safetensors");
    write_bytes(stub, "\x02\0\0\0\0", 5);
    CHECK_ERR(cp_st_open(&st, stub), "five.safetensors: file is 5 bytes");
    const char *junk = tmp_path("junk.safetensors");
    write_bytes(junk, "\x02\0\0\0\0\0\0\0[]", 10);
    CHECK_ERR(cp_st_open(&st, junk), "junk.safetensors: header must be a JSON object");
    cp_st_close(&st);
}

/* ---- the writer ------------------------------------------------------------------------------ */

TEST(test_write_rejects_bad_input) {
    float v[2] = {1, 2};
    const char *path = tmp_path("rejected.safetensors");
    cp_st_write_tensor dup[] = {{"a", CP_F32, 1, {1}, v}, {"b", CP_F32, 1, {1}, v}, {"a", CP_F16, 1, {1}, v}};
    CHECK_ERR(cp_st_write(path, dup, 3, NULL, NULL, 0), "duplicate tensor name \"a\"");
    CHECK(strstr(cp_last_error(), path), "error does not name the path");
    cp_st_write_tensor neg[] = {{"n", CP_F32, 2, {2, -1}, v}};
    CHECK_ERR(cp_st_write(path, neg, 1, NULL, NULL, 0), "tensor \"n\": negative dimension -1");
    cp_st_write_tensor nul[] = {{"n", CP_F32, 1, {2}, NULL}};
    CHECK_ERR(cp_st_write(path, nul, 1, NULL, NULL, 0), "tensor \"n\": data is NULL");
    cp_st_write_tensor dims[] = {{"n", CP_F32, CP_ST_MAX_DIMS + 1, {1}, v}};
    CHECK_ERR(cp_st_write(path, dims, 1, NULL, NULL, 0), "ndim 9");
    cp_st_write_tensor odd[] = {{"n", CP_F4, 1, {3}, v}};
    CHECK_ERR(cp_st_write(path, odd, 1, NULL, NULL, 0), "not a whole number of bytes");
    cp_st_write_tensor utf[] = {{"bad\xff", CP_F32, 1, {1}, v}};
    CHECK_ERR(cp_st_write(path, utf, 1, NULL, NULL, 0), "not valid UTF-8");
    cp_st_write_tensor meta[] = {{"__metadata__", CP_F32, 1, {1}, v}};
    CHECK_ERR(cp_st_write(path, meta, 1, NULL, NULL, 0), "reserved");
    cp_st_write_tensor ok[] = {{"a", CP_F32, 1, {1}, v}};
    const char *keys[] = {"k", "k"}, *values[] = {"1", "2"};
    CHECK_ERR(cp_st_write(path, ok, 1, keys, values, 2), "metadata key \"k\" given twice");
    CHECK(access(path, F_OK) != 0, "a rejected write created the file");
    CHECK(count_temp_files() == 0, "temporary file left behind");
}

TEST(test_write_failure_leaves_existing_file) {
    float big[1024] = {0};
    cp_st_write_tensor t[] = {{"big", CP_F32, 1, {1024}, big}};

    /* A directory that does not exist. */
    char path[256];
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", tmpdir);
    CHECK_ERR(cp_st_write(path, t, 1, NULL, NULL, 0), "No such file or directory");
    CHECK(strstr(cp_last_error(), path), "error does not name the path: %s", cp_last_error());

    /* Invalid input: nothing is created, the existing file keeps its bytes. */
    const char *existing = tmp_path("existing.safetensors");
    write_file(existing, "old contents");
    cp_st_write_tensor dup[] = {t[0], t[0]};
    CHECK_ERR(cp_st_write(existing, dup, 2, NULL, NULL, 0), "duplicate");
    size_t len;
    uint8_t *bytes = read_file(existing, &len);
    CHECK(bytes && len == 12 && memcmp(bytes, "old contents", 12) == 0, "existing file changed");
    free(bytes);

    /* The write itself fails half-way (file size limit): temp removed, target untouched. */
    struct rlimit old_limit, small = {64, 64};
    getrlimit(RLIMIT_FSIZE, &old_limit);
    small.rlim_max = old_limit.rlim_max;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &small);
    cp_status s = cp_st_write(existing, t, 1, NULL, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &old_limit);
    signal(SIGXFSZ, old_handler);
    CHECK(s == CP_ERR && strstr(cp_last_error(), "cannot write") &&
          strstr(cp_last_error(), "File too large"), "expected a write error, got: %s",
          s == CP_OK ? "success" : cp_last_error());
    bytes = read_file(existing, &len);
    CHECK(bytes && len == 12 && memcmp(bytes, "old contents", 12) == 0, "existing file changed");
    free(bytes);
    CHECK(count_temp_files() == 0, "temporary file left behind after a failed write");

    /* The rename fails (the target is a non-empty directory): temp removed, directory intact. */
    const char *dir = tmp_path("target_dir");
    mkdir(dir, 0755);
    char inner[300];
    snprintf(inner, sizeof inner, "%s/keep", dir);
    write_file(inner, "x");
    CHECK_ERR(cp_st_write(dir, t, 1, NULL, NULL, 0), "cannot rename");
    CHECK(access(inner, F_OK) == 0, "directory contents lost");
    CHECK(count_temp_files() == 0, "temporary file left behind after a failed rename");

    /* And a successful write replaces the existing file. */
    CHECK_OK(cp_st_write(existing, t, 1, NULL, NULL, 0));
    bytes = read_file(existing, &len);
    CHECK(bytes && len == 8 + 64 + 4096, "new file has %zu bytes", len);
    free(bytes);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    RUN(test_roundtrip);
    RUN(test_roundtrip_empty);
    RUN(test_find_many);
    RUN(test_python_fixtures_byte_identical);
    RUN(test_write_peft_lora_from_scratch);
    RUN(test_python_fixture_values);
    RUN(test_valid_edge_cases);
    RUN(test_bad_file_size);
    RUN(test_bad_header_length);
    RUN(test_bad_json);
    RUN(test_bad_entry_fields);
    RUN(test_bad_shape);
    RUN(test_bad_offsets);
    RUN(test_bad_tiling);
    RUN(test_bad_duplicates);
    RUN(test_bad_metadata);
    RUN(test_open_errors);
    RUN(test_write_rejects_bad_input);
    RUN(test_write_failure_leaves_existing_file);
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary();
}
