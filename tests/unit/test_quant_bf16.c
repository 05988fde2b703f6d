/*
 * test_quant_bf16.c — a block-quantized base under --bf16 (QLoRA's compute dtype bfloat16):
 * many-row products with a Q8_0 / Q4_0 / Q4_1 / Q4_K weight and round_bf16 set
 * (kernels/gemm_quant.c) in every CPU variant this machine runs, forward and input gradient:
 *   - against a reference written out here: X and the dequantized weight (ggml's values) rounded to
 *     bf16, products summed in double: |got − ref| <= 2e-6 · Σ|terms| (+ |initial| when accumulating);
 *   - with AVX-512 BF16, the blocks dequantized straight into the kernel's panels give exactly what
 *     cp_gemm_bf16_dot gives on the dequantized f32 weight (bit for bit: the same pairs, the same kernel);
 *   - the result really is bf16: farther from the exact f32 product than the f32 path is.
 * Prints the largest differences.
 */
#include "test.h"

#include "io/ggml_quant.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"

#include <stdlib.h>

static const cp_dtype QTYPES[] = {CP_Q8_0, CP_Q4_0, CP_Q4_1, CP_Q4_K};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static double bf(float f) { return (double)cp_bf16_to_f32(cp_f32_to_bf16(f)); }

TEST(quantized_base_bf16_products_every_variant) {
    const int64_t N = 70, C = 512, OC = 72; /* W (OC, C): 72 rows (a partial 16-row panel at 64), C two Q4_K blocks */
    double worst_ref = 0, worst_native = 0, least_f32 = INFINITY;
    int variants = 0, native_checked = 0;
    for (size_t t = 0; t < sizeof QTYPES / sizeof *QTYPES; t++) {
        const cp_dtype dt = QTYPES[t];
        const int64_t rb = cp_dtype_nbytes(dt, C);
        uint8_t *q = malloc((size_t)(OC * rb));
        float *deq = malloc((size_t)(OC * C) * sizeof *deq);
        for (int64_t r = 0; r < OC; r++) {
            float w[512];
            for (int64_t k = 0; k < C; k++) w[k] = frand() * 0.1f;
            cp_ggml_quantize_row(cp_ggml_type_of(dt), w, q + r * rb, C);
            cp_ggml_dequantize_row(cp_ggml_type_of(dt), q + r * rb, deq + r * C, C);
        }
        for (int backward = 0; backward < 2; backward++) {
            const int64_t K = backward ? OC : C, M = backward ? C : OC;
            float *X = malloc((size_t)(N * K) * sizeof *X), *init = malloc((size_t)(N * M) * sizeof *init);
            float *out = malloc((size_t)(N * M) * sizeof *out), *want = malloc((size_t)(N * M) * sizeof *want);
            double *ref = malloc((size_t)(N * M) * sizeof *ref), *mag = malloc((size_t)(N * M) * sizeof *mag);
            double *exact = malloc((size_t)(N * M) * sizeof *exact);
            for (int64_t i = 0; i < N * K; i++) X[i] = frand();
            for (int64_t i = 0; i < N * M; i++) init[i] = frand();
            for (int64_t n = 0; n < N; n++)
                for (int64_t m = 0; m < M; m++) {
                    double s = 0, a = 0, e = 0;
                    for (int64_t k = 0; k < K; k++) {
                        const float w = backward ? deq[k * C + m] : deq[m * C + k];
                        s += bf(X[n * K + k]) * bf(w), a += fabs((double)X[n * K + k] * w), e += (double)X[n * K + k] * w;
                    }
                    ref[n * M + m] = s, mag[n * M + m] = a, exact[n * M + m] = e;
                }
            cp_weight w = cp_weight_nt(q, dt, C, OC);
            w.round_bf16 = 1;
            for (int isa = CP_ISA_BASE; isa <= CP_ISA_AVX512; isa++) {
                const cp_gemm_cpu_variant *v = cp_gemm_cpu_for((cp_isa)isa);
                if (!v) continue;
                variants += t == 0 && backward == 0;
                for (int acc = 0; acc < 2; acc++) {
                    memcpy(out, init, (size_t)(N * M) * sizeof *out);
                    (backward ? v->ops->backward_input : v->ops->forward)(out, X, &w, N, acc);
                    double e = 0, f = INFINITY;
                    for (int64_t i = 0; i < N * M; i++) {
                        const double base = acc ? init[i] : 0.0;
                        const double d = fabs(out[i] - (ref[i] + base)) / (mag[i] + fabs(base) + 1e-30);
                        if (d > e || d != d) e = d;
                    }
                    double far = 0;
                    for (int64_t i = 0; i < N * M; i++) far = fmax(far, fabs(out[i] - ((acc ? init[i] : 0.0) + exact[i])) / (mag[i] + 1e-30));
                    f = far;
                    CHECK(e <= 2e-6, "%s %s %s acc=%d: %.3e of Σ|terms| from the bf16 reference", v->name, cp_dtype_name(dt),
                          backward ? "dX" : "fwd", acc, e);
                    CHECK(f > 1e-4, "%s %s %s: only %.3e from the f32 product: not rounded to bf16", v->name, cp_dtype_name(dt),
                          backward ? "dX" : "fwd", f);
                    worst_ref = fmax(worst_ref, e), least_f32 = fmin(least_f32, f);
                    if (isa == CP_ISA_AVX512 && cp_gemm_bf16_native()) { /* the same as the kernel on the dequantized weight */
                        memcpy(want, init, (size_t)(N * M) * sizeof *want);
                        CHECK(cp_gemm_bf16_dot(want, X, deq, CP_F32, backward, N, K, M, acc) == 0, "kernel");
                        double d = 0;
                        for (int64_t i = 0; i < N * M; i++) d = fmax(d, fabs((double)out[i] - want[i]));
                        CHECK(d == 0, "%s %s acc=%d: %.3e from cp_gemm_bf16_dot on the dequantized weight", cp_dtype_name(dt),
                              backward ? "dX" : "fwd", acc, d);
                        worst_native = fmax(worst_native, d);
                        native_checked++;
                    }
                }
            }
            free(X), free(init), free(out), free(want), free(ref), free(mag), free(exact);
        }
        free(q), free(deq);
    }
    printf("  %d variants x Q8_0/Q4_0/Q4_1/Q4_K x fwd/dX: max %.1e of Σ|terms| from the bf16 reference, at least %.1e from f32\n",
           variants, worst_ref, least_f32);
    if (native_checked) printf("  AVX-512 BF16: dequantized into the panels vs cp_gemm_bf16_dot on the f32 weight: max |diff| %.1e (%d products)\n",
                               worst_native, native_checked);
    else printf("  (no AVX-512 BF16 here: the native path was not run)\n");
}

int main(void) {
    RUN(quantized_base_bf16_products_every_variant);
    return test_summary();
}
