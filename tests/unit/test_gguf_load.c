/*
 * test_gguf_load.c — models loaded straight from a GGUF file (convert/gguf_load.c) against the
 * directory `cpeft convert` makes of the same file, for every tests/fixtures/gguf model.
 *
 * Per fixture: every parameter of the GGUF-loaded model, read back as f32 (cp_param_export: the
 * quantized ones dequantized from the blocks kept as stored), bit for bit equal to the converted
 * directory's (so the row moves of quantized Q/K and fused q/k/v rows moved whole blocks); the
 * quantized ones really kept as stored (stored_dtype Q8_0 / Q4_0 / Q4_1 / Q4_K); the logits within
 * the quantized kernels' summation-order tolerance of the directory's (identical when no matrix is
 * quantized); the tokenizers giving the same ids. Refusals: a matrix of a type without a kernel
 * (named), a truncated file, a file that is not a model.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/gguf_convert.h"
#include "convert/gguf_load.h"
#include "core/alloc.h"
#include "cpeft.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "models/model.h"
#include "test.h"

#define FIX "tests/fixtures/gguf/"

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }
static void rm_rf(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *convert(const char *name) {
    char gpath[256];
    snprintf(gpath, sizeof gpath, FIX "%s.gguf", name);
    char *dir = cp_path_join(tmpdir, name);
    cp_gguf g;
    CHECK_OK(cp_gguf_open(&g, gpath));
    CHECK_OK(cp_mkdirs(dir));
    CHECK_OK(cp_gguf_convert(&g, dir, NULL, NULL));
    cp_gguf_close(&g);
    return dir;
}

/* Every parameter of a (GGUF) equal to b's (directory) as f32; counts a's quantized ones. */
static int compare_params(cp_model *a, cp_model *b, const char *name) {
    cp_param **pa, **pb;
    int na, nb, n_quant = 0, n_diff = 0;
    CHECK_OK(cp_module_params(a->root, &pa, &na));
    CHECK_OK(cp_module_params(b->root, &pb, &nb));
    CHECK(na == nb, "%s: %d parameters vs %d", name, na, nb);
    for (int i = 0; i < na && i < nb; i++) {
        CHECK(!strcmp(pa[i]->name, pb[i]->name) && pa[i]->numel == pb[i]->numel, "%s: %s vs %s", name, pa[i]->name, pb[i]->name);
        if (pa[i]->numel != pb[i]->numel) continue;
        n_quant += cp_dtype_is_quantized(pa[i]->stored_dtype);
        float *x = cp_malloc((size_t)pa[i]->numel * sizeof *x, "x"), *y = cp_malloc((size_t)pb[i]->numel * sizeof *y, "y");
        cp_param_export(pa[i], CP_F32, x);
        cp_param_export(pb[i], CP_F32, y);
        if (memcmp(x, y, (size_t)pa[i]->numel * sizeof *x)) {
            n_diff++;
            CHECK(0, "%s: %s differs from the converted directory's (%s)", name, pa[i]->name,
                  cp_dtype_name(pa[i]->data ? CP_F32 : pa[i]->stored_dtype));
        }
        cp_free(x);
        cp_free(y);
    }
    printf("  %s: %d parameters bit-identical to the converted directory's, %d of them kept quantized as stored\n", name,
           na - n_diff, n_quant);
    cp_free(pa);
    cp_free(pb);
    return n_quant;
}

static void check_fixture(const char *name, int needs_dequantize, int min_quantized) {
    char gpath[256];
    snprintf(gpath, sizeof gpath, FIX "%s.gguf", name);
    char *dir = convert(name);
    cp_model *a = NULL, *b = NULL;
    if (needs_dequantize) { /* Q5_1 matrices: refused by name without the flag */
        CHECK(cp_model_load_gguf(&a, gpath, 0, NULL) == CP_ERR && strstr(cp_last_error(), "Q5_1") &&
                  strstr(cp_last_error(), "has no kernel") && strstr(cp_last_error(), gpath),
              "%s: Q5_1 matrix not refused by name: %s", name, cp_last_error());
        printf("  %s: refused without CP_LOAD_GGUF_DEQUANTIZE: %s\n", name, cp_last_error());
    }
    CHECK(cp_model_load_gguf(&a, gpath, needs_dequantize ? CP_LOAD_GGUF_DEQUANTIZE : 0, NULL) == CP_OK, "%s: %s", name,
          cp_last_error());
    CHECK(cp_model_load(&b, dir, 0) == CP_OK, "%s: %s", name, cp_last_error());
    if (a && b) {
        const int nq = compare_params(a, b, name);
        CHECK(nq >= min_quantized, "%s: %d quantized matrices kept, expected >= %d", name, nq, min_quantized);
        const int64_t ids[8] = {3, 17, 100, 5, 42, 7, 1, 9}, T = 8, V = cp_model_vocab_size(b);
        float *la = cp_malloc((size_t)(T * V) * sizeof *la, "la"), *lb = cp_malloc((size_t)(T * V) * sizeof *lb, "lb");
        cp_batch batch = {.B = 1, .T = T, .input_ids = ids};
        cp_outputs oa = {.logits = la}, ob = {.logits = lb};
        CHECK_OK(cp_model_forward(a, &batch, &oa));
        CHECK_OK(cp_model_forward(b, &batch, &ob));
        double d = test_max_abs_diff(la, lb, (size_t)(T * V)), mx = 0;
        for (int64_t i = 0; i < T * V; i++) mx = fabs(lb[i]) > mx ? fabs(lb[i]) : mx;
        printf("  %s: logits from the GGUF vs the converted directory: max diff %.3g (max |logit| %.3g)\n", name, d, mx);
        CHECK(nq ? d <= 1e-5 * (1 + mx) : d == 0, "%s: logits differ by %g", name, d);
        cp_free(la);
        cp_free(lb);
        /* the tokenizers agree */
        cp_tokenizer *ta = NULL, *tb = NULL;
        CHECK_OK(cp_tokenizer_load_gguf(&ta, gpath));
        CHECK_OK(cp_tokenizer_load_dir(&tb, dir));
        if (ta && tb) {
            const char *text = "Hello world, 1234 tokens!";
            cp_encoding ea, eb;
            memset(&ea, 0, sizeof ea);
            memset(&eb, 0, sizeof eb);
            CHECK_OK(cp_tokenizer_encode(ta, text, strlen(text), 1, &ea));
            CHECK_OK(cp_tokenizer_encode(tb, text, strlen(text), 1, &eb));
            CHECK(ea.n == eb.n && !memcmp(ea.ids, eb.ids, ea.n * sizeof *ea.ids), "%s: token ids differ", name);
            cp_encoding_free(&ea);
            cp_encoding_free(&eb);
        }
        cp_tokenizer_free(ta);
        cp_tokenizer_free(tb);
    }
    cp_model_free(a);
    cp_model_free(b);
    cp_free(dir);
}

TEST(llama_bpe) { check_fixture("tiny-llama-bpe", 0, 4); }  /* Q4_0 v, Q4_1 o, Q8_0 gate, Q4_K down; F16 Q, BF16 K moved */
TEST(llama_spm) { check_fixture("tiny-llama-spm", 0, 6); }  /* Q8_0 attn_q and Q4_1 attn_k: quantized rows un-permuted */
TEST(qwen2) { check_fixture("qwen2", 1, 7); }
TEST(qwen3) { check_fixture("qwen3", 1, 6); }
TEST(gemma) { check_fixture("gemma", 1, 6); }
TEST(gemma2) { check_fixture("gemma2", 1, 6); }
TEST(phi3) { check_fixture("phi3", 0, 4); }
TEST(gpt_neox) { check_fixture("gpt_neox", 1, 5); }
TEST(phi2) { check_fixture("phi2", 1, 7); }
TEST(bloom) { check_fixture("bloom", 1, 4); }

TEST(bad_files_named) {
    cp_model *m = NULL;
    /* truncated: every length of the header region and a few in the data */
    size_t len;
    char *data;
    CHECK_OK(cp_read_file(FIX "tiny-llama-spm.gguf", &data, &len));
    char path[128];
    snprintf(path, sizeof path, "%s/truncated.gguf", tmpdir);
    const size_t cuts[] = {0, 3, 24, 100, 1000, len / 2, len * 3 / 4};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        FILE *f = fopen(path, "wb");
        fwrite(data, 1, cuts[k], f);
        fclose(f);
        CHECK(cp_model_load_gguf(&m, path, 0, NULL) == CP_ERR && strstr(cp_last_error(), path) && !m,
              "truncated at %zu: %s", cuts[k], cp_last_error());
    }
    cp_free(data);
    /* a GGUF that holds no model of an architecture with a table */
    CHECK(cp_model_load_gguf(&m, FIX "quant-zoo.gguf", 0, NULL) == CP_ERR && strstr(cp_last_error(), "zoo"),
          "quant-zoo: %s", cp_last_error());
    printf("  quant-zoo: %s\n", cp_last_error());
    CHECK(cp_model_load_gguf(&m, "/nonexistent/x.gguf", 0, NULL) == CP_ERR, "missing file loaded");
    CHECK(cp_path_is_gguf("a/b.gguf") && !cp_path_is_gguf("a/gguf") && !cp_path_is_gguf("x.gguf/"), "cp_path_is_gguf");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-gguf-load-%d", (int)getpid());
    cp_mkdirs(tmpdir);
    cp_set_quiet(1);
    RUN(llama_bpe);
    RUN(llama_spm);
    RUN(qwen2);
    RUN(qwen3);
    RUN(gemma);
    RUN(gemma2);
    RUN(phi3);
    RUN(gpt_neox);
    RUN(phi2);
    RUN(bloom);
    RUN(bad_files_named);
    rm_rf(tmpdir);
    return test_summary();
}
