/*
 * test_gemm_quant.c — products with block-quantized weights (kernels/gemm_quant.h) in every kernel
 * variant the machine runs, against ggml's dequantization (io/ggml_quant.c) and a product in
 * double; and ggml's reference quantizers against the Python `gguf` package.
 *
 * Tolerance: a product may differ from the exact one (double, on the dequantized weight) by the
 * order of f32 sums only: |got - exact| <= 2e-6 · Σ|x·w| (+ |initial value| when accumulating).
 * Dequantization in the kernels must equal ggml's bit for bit.
 */
#include "test.h"

#include "core/alloc.h"
#include "io/ggml_quant.h"
#include "kernels/gemm_cpu.h"
#include "kernels/gemm_quant.h"

#include <stdlib.h>

CP_DECLARE_QUANT_KERNELS(base)
#if defined(__x86_64__)
CP_DECLARE_QUANT_KERNELS(avx2)
CP_DECLARE_QUANT_KERNELS(avx512)
#endif

typedef void (*dequant_fn)(float *, const void *, cp_dtype, int64_t);

static dequant_fn dequant_of(cp_isa isa) {
#if defined(__x86_64__)
    if (isa == CP_ISA_AVX2) return cp_gemm_dequant_avx2;
    if (isa == CP_ISA_AVX512) return cp_gemm_dequant_avx512;
#endif
    return cp_gemm_dequant_base;
}

static const cp_dtype QTYPES[] = {CP_Q8_0, CP_Q4_0, CP_Q4_1, CP_Q4_K};

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* A random (rows, cols) weight quantized to dt, and its dequantized values (f32). */
static void *quantized(cp_dtype dt, int64_t rows, int64_t cols, float *deq) {
    const int64_t rb = cp_dtype_nbytes(dt, cols);
    uint8_t *q = malloc((size_t)(rows * rb));
    float *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = frand() * 0.1f;
    for (int64_t r = 0; r < rows; r++) {
        cp_ggml_quantize_row(cp_ggml_type_of(dt), w + r * cols, q + r * rb, cols);
        cp_ggml_dequantize_row(cp_ggml_type_of(dt), q + r * rb, deq + r * cols, cols);
    }
    free(w);
    return q;
}

TEST(dequantization_in_every_variant_equals_ggml) {
    for (size_t t = 0; t < sizeof QTYPES / sizeof *QTYPES; t++) {
        const int64_t n = 1024;
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        void *q = quantized(QTYPES[t], 1, n, ref);
        for (int isa = 0; isa < CP_ISA_COUNT; isa++) {
            if (!cp_gemm_cpu_for((cp_isa)isa)) continue;
            dequant_of((cp_isa)isa)(got, q, QTYPES[t], n);
            CHECK(memcmp(got, ref, n * sizeof *ref) == 0, "%s: variant %s dequantizes differently from ggml",
                  cp_dtype_name(QTYPES[t]), cp_gemm_cpu_for((cp_isa)isa)->name);
        }
        free(q), free(ref), free(got);
    }
}

/* max over outputs of |got - exact| / (Σ|terms| + |initial|), for forward (bwd = 0) or input gradient. */
static double product_error(const cp_gemm_cpu_variant *v, cp_dtype dt, int64_t N, int64_t C, int64_t OC, int bwd, int acc) {
    float *Wd = malloc((size_t)(OC * C) * sizeof *Wd);
    void *Wq = quantized(dt, OC, C, Wd);
    const int64_t K = bwd ? OC : C, M = bwd ? C : OC;
    float *X = malloc((size_t)(N * K) * sizeof *X), *out = malloc((size_t)(N * M) * sizeof *out);
    float *init = malloc((size_t)(N * M) * sizeof *init);
    for (int64_t i = 0; i < N * K; i++) X[i] = frand();
    for (int64_t i = 0; i < N * M; i++) out[i] = init[i] = acc ? frand() : 1e30f; /* overwritten when not accumulating */
    const cp_weight w = cp_weight_nt(Wq, dt, C, OC);
    if (bwd) v->ops->backward_input(out, X, &w, N, acc);
    else v->ops->forward(out, X, &w, N, acc);
    double worst = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            double s = acc ? init[n * M + m] : 0, mag = acc ? fabs(init[n * M + m]) : 0;
            for (int64_t k = 0; k < K; k++) {
                const double wv = bwd ? Wd[k * C + m] : Wd[m * C + k], term = (double)X[n * K + k] * wv;
                s += term, mag += fabs(term);
            }
            const double e = fabs(out[n * M + m] - s) / (mag > 0 ? mag : 1);
            if (!(e <= worst)) worst = e; /* NaN counts as worst */
        }
    free(Wd), free(Wq), free(X), free(out), free(init);
    return worst;
}

TEST(products_in_every_variant_equal_the_dequantized_f32_product) {
    static const int64_t rows[] = {1, 2, 5, 32, 33, 70};
    struct { int64_t C, OC; } shapes[] = {{256, 37}, {768, 64}, {512, 3}};
    for (int isa = 0; isa < CP_ISA_COUNT; isa++) {
        const cp_gemm_cpu_variant *v = cp_gemm_cpu_for((cp_isa)isa);
        if (!v) continue;
        double worst = 0;
        long products = 0;
        for (size_t t = 0; t < sizeof QTYPES / sizeof *QTYPES; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
                    for (int bwd = 0; bwd < 2; bwd++) {
                        /* small panels on every other product: many panels, several per thread */
                        cp_gemm_cpu_set_panel_bytes(r % 2 ? 64 << 10 : 0);
                        const double e = product_error(v, QTYPES[t], rows[r], shapes[s].C, shapes[s].OC, bwd, (int)(r + s) % 2);
                        CHECK(e <= 2e-6, "%s %s N=%lld C=%lld OC=%lld %s: off by %.3e of the terms' magnitude", v->name,
                              cp_dtype_name(QTYPES[t]), (long long)rows[r], (long long)shapes[s].C, (long long)shapes[s].OC,
                              bwd ? "input gradient" : "forward", e);
                        if (e > worst) worst = e;
                        products++;
                    }
        cp_gemm_cpu_set_panel_bytes(0);
        printf("  %s: %ld quantized products, max error %.3e of the terms' magnitude (bound 2e-6)\n", v->name, products, worst);
    }
}

TEST(a_q8_0_row_not_a_multiple_of_the_tile) {
    /* C = 96: three Q8_0 blocks, less than one tile of 256 */
    const cp_gemm_cpu_variant *v = cp_gemm_cpu();
    for (int bwd = 0; bwd < 2; bwd++) {
        const double e1 = product_error(v, CP_Q8_0, 3, 96, 20, bwd, 1), e2 = product_error(v, CP_Q8_0, 40, 96, 20, bwd, 0);
        CHECK(e1 <= 2e-6 && e2 <= 2e-6, "C = 96: off by %.3e / %.3e", e1, e2);
    }
}

TEST(supports_and_row_views) {
    for (size_t t = 0; t < sizeof QTYPES / sizeof *QTYPES; t++) CHECK(cp_gemm_supports(QTYPES[t]), "%s", cp_dtype_name(QTYPES[t]));
    CHECK(cp_dtype_nbytes(CP_Q4_K, 512) == 288 && cp_dtype_nbytes(CP_Q4_K, 100) == -1 && cp_dtype_nbytes(CP_Q8_0, 64) == 68,
          "block sizes");
    CHECK(cp_dtype_from_name("Q8_0") < 0, "a quantized format is no safetensors dtype");
    /* an LM head's vocabulary chunk of a quantized weight: rows 5..9 */
    float *Wd = malloc(12 * 256 * sizeof *Wd), x[256], full[12], part[5];
    void *Wq = quantized(CP_Q4_K, 12, 256, Wd);
    for (int i = 0; i < 256; i++) x[i] = frand();
    const cp_weight w = cp_weight_nt(Wq, CP_Q4_K, 256, 12), chunk = cp_weight_out_rows(&w, 5, 5);
    cp_gemm_forward(full, x, &w, 1, 0);
    cp_gemm_forward(part, x, &chunk, 1, 0);
    CHECK(memcmp(full + 5, part, sizeof part) == 0, "a row view gives the rows of the full product");
    free(Wd), free(Wq);
}

/* ---- the quantizers ----------------------------------------------------------------------------- */

static void *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = malloc(*len ? *len : 1);
    if (fread(b, 1, *len, f) != *len) { free(b); b = NULL; }
    fclose(f);
    return b;
}

TEST(quantizers_equal_the_gguf_package) {
    size_t n_in, n_q;
    float *x = read_all("tests/fixtures/ggml_quant/input.f32", &n_in);
    CHECK(x && n_in == 8 * 256 * 4, "tests/fixtures/ggml_quant/input.f32");
    if (!x) return;
    const struct { const char *file; cp_dtype dt; } cases[] = {
        {"tests/fixtures/ggml_quant/q8_0.bin", CP_Q8_0}, {"tests/fixtures/ggml_quant/q4_0.bin", CP_Q4_0},
        {"tests/fixtures/ggml_quant/q4_1.bin", CP_Q4_1}};
    for (size_t c = 0; c < 3; c++) {
        uint8_t *want = read_all(cases[c].file, &n_q);
        const int64_t bytes = cp_dtype_nbytes(cases[c].dt, 8 * 256);
        CHECK(want && (int64_t)n_q == bytes, "%s", cases[c].file);
        if (!want) continue;
        uint8_t *got = malloc((size_t)bytes);
        CHECK_OK(cp_ggml_quantize_row(cp_ggml_type_of(cases[c].dt), x, got, 8 * 256));
        int64_t differing = 0;
        for (int64_t i = 0; i < bytes; i++) differing += got[i] != want[i];
        printf("  %s: %lld of %lld bytes differ from gguf.quants.quantize\n", cp_dtype_name(cases[c].dt), (long long)differing,
               (long long)bytes);
        CHECK(differing == 0, "%s differs from the gguf package", cp_dtype_name(cases[c].dt));
        free(got), free(want);
    }
    free(x);
}

TEST(q4_k_quantizer_error_is_within_its_scales) {
    /* no Python Q4_K quantizer: each value must come back within half a step (+ rounding) of its super-block's
     * widest sub-block (range / 15): the 6-bit scales and mins are steps of the largest ones */
    size_t n_in;
    float *x = read_all("tests/fixtures/ggml_quant/input.f32", &n_in);
    if (!x) { CHECK(0, "input.f32"); return; }
    uint8_t q[8 * 144];
    float y[8 * 256];
    CHECK_OK(cp_ggml_quantize_row(CP_GGML_Q4_K, x, q, 8 * 256));
    CHECK_OK(cp_ggml_dequantize_row(CP_GGML_Q4_K, q, y, 8 * 256));
    double worst = 0;
    for (int r = 0; r < 8; r++) {
        double step = 0;
        for (int j = 0; j < 8; j++) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; l++) {
                const float v = x[r * 256 + j * 32 + l];
                lo = v < lo ? v : lo, hi = v > hi ? v : hi;
            }
            if ((hi - lo) / 15.0 > step) step = (hi - lo) / 15.0;
        }
        for (int i = 0; i < 256; i++) {
            const double e = fabs(y[r * 256 + i] - x[r * 256 + i]) / (step > 0 ? step : 1);
            if (e > worst) worst = e;
        }
    }
    printf("  Q4_K: max round-trip error %.3f of its super-block's widest step (range / 15)\n", worst);
    CHECK(worst <= 0.55, "Q4_K round trip off by %.3f steps", worst);
    CHECK_ERR(cp_ggml_quantize_row(CP_GGML_Q6_K, x, q, 256), "not supported");
    CHECK_ERR(cp_ggml_quantize_row(CP_GGML_Q8_0, x, q, 100), "multiple of its block");
    free(x);
}

int main(void) {
    RUN(dequantization_in_every_variant_equals_ggml);
    RUN(products_in_every_variant_equal_the_dequantized_f32_product);
    RUN(a_q8_0_row_not_a_multiple_of_the_tile);
    RUN(supports_and_row_views);
    RUN(quantizers_equal_the_gguf_package);
    RUN(q4_k_quantizer_error_is_within_its_scales);
    return test_summary();
}
