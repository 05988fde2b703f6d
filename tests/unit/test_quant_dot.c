/*
 * test_quant_dot.c — the fast few-row product with a quantized weight and 8-bit activations
 * (kernels/quant_dot.h) in every kernel variant the machine runs, and the exact kernels of the
 * formats it added (Q6_K, Q5_0, Q5_1, Q5_K).
 *
 * Bounds, with x̃ = dx·q the rounded activations (rounded here by a plain C copy of the rule, which
 * must give the same bytes as cp_qact_row) and w the weight dequantized by ggml's reference
 * (io/ggml_quant.c, itself checked against the Python gguf package):
 *   against Σ x̃·w in double (for Q4_1 / Q5_1 with each block's m·dx·Σq replaced by m·s, ggml's
 *     Q8_1 sum s = f16(dx·Σq)): the integer sums are exact, so only the f32 rounding of the scale
 *     products and of the sums over blocks remain: |got − ref| ≤ 1e-6 · Σ|x̃·w|;
 *   against the f32 product Σ x·w with the unrounded activations: |x − x̃| ≤ dx/2 + 127·dx·2⁻¹¹
 *     (round to nearest, and the f16 scale of the blocks of 32), so
 *     |got − exact| ≤ Σ_blocks 0.57·dx_b·Σ_{i∈b}|w_i| + 1e-5 · Σ|x·w|.
 */
#include "test.h"

#include "io/ggml_quant.h"
#include "kernels/gemm_cpu.h"
#include "kernels/gemm_quant.h"
#include "kernels/quant_dot.h"

#include <math.h>
#include <stdlib.h>

CP_DECLARE_QDOT_KERNELS(base)
CP_DECLARE_QUANT_KERNELS(base)
#if defined(__x86_64__)
CP_DECLARE_QDOT_KERNELS(avx2)
CP_DECLARE_QDOT_KERNELS(avx512)
CP_DECLARE_QUANT_KERNELS(avx2)
CP_DECLARE_QUANT_KERNELS(avx512)
#endif

typedef int (*qdot_fn)(float *, const float *, const cp_weight *, int64_t, int);
typedef void (*deq_fn)(float *, const void *, cp_dtype, int64_t);

static qdot_fn qdot_of(cp_isa isa) {
#if defined(__x86_64__)
    if (isa == CP_ISA_AVX2) return cp_qdot_forward_avx2;
    if (isa == CP_ISA_AVX512) return cp_qdot_forward_avx512;
#endif
    return cp_qdot_forward_base;
}
static deq_fn deq_of(cp_isa isa) {
#if defined(__x86_64__)
    if (isa == CP_ISA_AVX2) return cp_gemm_dequant_avx2;
    if (isa == CP_ISA_AVX512) return cp_gemm_dequant_avx512;
#endif
    return cp_gemm_dequant_base;
}

static const cp_dtype QTYPES[] = {CP_Q8_0, CP_Q4_0, CP_Q4_1, CP_Q5_0, CP_Q5_1, CP_Q4_K, CP_Q5_K, CP_Q6_K};

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}
static float frand(void) { return (float)((next_u32() >> 8) * (1.0 / 8388608.0)) - 1.0f; } /* [-1, 1) */

static void put_half(uint8_t *p, float f) {
    const uint16_t h = cp_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* A (rows, cols) weight of type dt: quantized from random values by ggml's quantizers where cpeft
 * has one, else random block bytes with small positive scales; deq gets ggml's dequantization. */
static uint8_t *weight(cp_dtype dt, int64_t rows, int64_t cols, float *deq) {
    const int64_t rb = cp_dtype_nbytes(dt, cols), bb = cp_dtype_block_bytes(dt), nb = rows * rb / bb;
    uint8_t *q = malloc((size_t)(rows * rb));
    if (dt == CP_Q8_0 || dt == CP_Q4_0 || dt == CP_Q4_1 || dt == CP_Q4_K) {
        float *w = malloc((size_t)cols * sizeof *w);
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < cols; i++) w[i] = frand() * 0.1f;
            cp_ggml_quantize_row(cp_ggml_type_of(dt), w, q + r * rb, cols);
        }
        free(w);
    } else {
        for (int64_t i = 0; i < rows * rb; i++) q[i] = (uint8_t)next_u32();
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = q + b * bb;
            switch (dt) {
            case CP_Q5_0: put_half(blk, 0.01f * (1 + frand())); break;
            case CP_Q5_1: put_half(blk, 0.01f * (1 + frand())), put_half(blk + 2, -0.1f * (1 + frand())); break;
            case CP_Q5_K: put_half(blk, 0.001f * (1 + frand())), put_half(blk + 2, 0.002f * (1 + frand())); break;
            default: put_half(blk + 208, 0.0005f * (1 + frand())); break; /* Q6_K */
            }
        }
    }
    for (int64_t r = 0; r < rows; r++) cp_ggml_dequantize_row(cp_ggml_type_of(dt), q + r * rb, deq + r * cols, cols);
    return q;
}

/* The rounding rule, written again: q (K), d (K / bs) and, for bs 32, Q8_1's s (K / 32) of one row. */
static void round_row(const float *x, int64_t K, int bs, int8_t *q, float *d, float *s32) {
    for (int64_t b = 0; b < K / bs; b++) {
        float amax = 0;
        for (int i = 0; i < bs; i++) amax = fmaxf(amax, fabsf(x[b * bs + i]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < bs; i++) sum += q[b * bs + i] = (int8_t)rintf(x[b * bs + i] * id);
        if (bs == 32) d[b] = cp_f16_to_f32(cp_f32_to_f16(amax / 127.0f)), s32[b] = cp_f16_to_f32(cp_f32_to_f16(amax / 127.0f * (float)sum));
        else d[b] = id != 0.0f ? 1.0f / id : 0.0f;
    }
}

typedef struct {
    double vs_rounded, vs_exact; /* worst |got − ref| / bound */
} errors;

/* One product out (N,M) = X̃ · Wᵀ by `f`; the worst ratios of the error to the two bounds. */
static errors check_product(qdot_fn f, cp_dtype dt, int64_t N, int64_t K, int64_t M, int acc, int *ret) {
    float *Wd = malloc((size_t)(M * K) * sizeof *Wd);
    uint8_t *Wq = weight(dt, M, K, Wd);
    float *X = malloc((size_t)(N * K) * sizeof *X), *out = malloc((size_t)(N * M) * sizeof *out), *init = malloc((size_t)(N * M) * sizeof *init);
    for (int64_t i = 0; i < N * K; i++) X[i] = frand() * (i % 7 == 0 ? 4.0f : 1.0f);
    for (int64_t i = 0; i < N * M; i++) out[i] = init[i] = acc ? frand() : 1e30f;
    const cp_weight w = cp_weight_nt(Wq, dt, K, M);
    *ret = f(out, X, &w, N, acc);
    const int bs = cp_qdot_act_block(dt);
    int8_t *q = malloc((size_t)K);
    float *d = malloc((size_t)(K / bs) * sizeof *d), *s32 = malloc((size_t)(K / 32) * sizeof *s32);
    const int with_min = dt == CP_Q4_1 || dt == CP_Q5_1; /* m·s with Q8_1's f16 sum s, as ggml multiplies */
    const int64_t rb = cp_dtype_nbytes(dt, K), bb = cp_dtype_block_bytes(dt);
    errors e = {0, 0};
    for (int64_t n = 0; n < N; n++) {
        round_row(X + n * K, K, bs, q, d, s32);
        for (int64_t m = 0; m < M; m++) {
            double ref = acc ? init[n * M + m] : 0, mag = 0, exact = ref, emag = 0, act = 0;
            for (int64_t k = 0; k < K; k++) {
                const double wv = Wd[m * K + k], xt = (double)d[k / bs] * q[k];
                ref += xt * wv, mag += fabs(xt * wv);
                exact += (double)X[n * K + k] * wv, emag += fabs((double)X[n * K + k] * wv);
                act += 0.57 * d[k / bs] * fabs(wv);
            }
            for (int64_t b = 0; with_min && b < K / 32; b++) { /* replace m·dx·Σq by m·s */
                uint16_t h;
                memcpy(&h, Wq + m * rb + b * bb + 2, 2);
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += q[32 * b + i];
                ref += (double)cp_f16_to_f32(h) * ((double)s32[b] - (double)d[b] * sum);
            }
            const double got = out[n * M + m], b1 = 1e-6 * mag + 1e-30, b2 = act + 1e-5 * emag + 1e-30;
            const double r1 = fabs(got - ref) / b1, r2 = fabs(got - exact) / b2;
            if (!(r1 <= e.vs_rounded)) e.vs_rounded = r1; /* NaN counts as worst */
            if (!(r2 <= e.vs_exact)) e.vs_exact = r2;
        }
    }
    free(Wd), free(Wq), free(X), free(out), free(init), free(q), free(d), free(s32);
    return e;
}

TEST(activation_rounding_follows_the_rule) {
    const int64_t K = 512;
    float x[512];
    for (int i = 0; i < K; i++) x[i] = frand() * (i % 5 ? 1.0f : 30.0f);
    for (int i = 256; i < 288; i++) x[i] = 0.0f; /* an all-zero block: scale 0, q 0 */
    for (int bs = 32; bs <= 256; bs *= 8) {
        int8_t q[512], qr[512];
        float d[16], dr[16], s32[16], s32r[16];
        int16_t s16[32];
        const cp_qact a = {K, bs, q, d, s16, s32};
        cp_qact_row(&a, 0, x);
        round_row(x, K, bs, qr, dr, s32r);
        CHECK(memcmp(q, qr, sizeof q) == 0 && memcmp(d, dr, (size_t)(K / bs) * sizeof *d) == 0, "block %d: the rule's bytes", bs);
        CHECK(bs != 32 || memcmp(s32, s32r, sizeof s32) == 0, "block 32: Q8_1's sums");
        for (int g = 0; g < K / 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += q[16 * g + i];
            CHECK(s16[g] == s, "block %d: sum of group %d", bs, g);
        }
        for (int i = 0; i < K; i++) CHECK(q[i] >= -127 && q[i] <= 127, "q in [-127, 127]");
    }
}

TEST(fast_products_in_every_variant_within_the_bounds) {
    static const int64_t rows[] = {1, 2, 3, 8, 32};
    struct { int64_t K, M; } shapes[] = {{256, 37}, {768, 64}, {1536, 5}};
    for (int isa = 0; isa < CP_ISA_COUNT; isa++) {
        const cp_gemm_cpu_variant *v = cp_gemm_cpu_for((cp_isa)isa);
        if (!v) continue;
        errors worst = {0, 0};
        long n = 0;
        for (size_t t = 0; t < sizeof QTYPES / sizeof *QTYPES; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
                    int ret = -1;
                    const errors e = check_product(qdot_of((cp_isa)isa), QTYPES[t], rows[r], shapes[s].K, shapes[s].M, (int)(r + s) % 2, &ret);
                    CHECK(ret == 0, "%s %s: the fast kernel declined", v->name, cp_dtype_name(QTYPES[t]));
                    CHECK(e.vs_rounded <= 1 && e.vs_exact <= 1, "%s %s N=%lld K=%lld M=%lld: %.3g x the rounded bound, %.3g x the exact bound",
                          v->name, cp_dtype_name(QTYPES[t]), (long long)rows[r], (long long)shapes[s].K, (long long)shapes[s].M,
                          e.vs_rounded, e.vs_exact);
                    if (e.vs_rounded > worst.vs_rounded) worst.vs_rounded = e.vs_rounded;
                    if (e.vs_exact > worst.vs_exact) worst.vs_exact = e.vs_exact;
                    n++;
                }
        printf("  %s: %ld products; worst error %.3f of 1e-6*sum|x~w| against the rounded activations, %.3f of the "
               "activation-rounding bound against f32\n", v->name, n, worst.vs_rounded, worst.vs_exact);
    }
}

TEST(the_fast_kernel_declines_what_it_does_not_take) {
    float Wd[64 * 4], X[33 * 64], out[33 * 4];
    uint8_t *Wq = weight(CP_Q8_0, 4, 64, Wd);
    for (int i = 0; i < 33 * 64; i++) X[i] = frand();
    const cp_weight w = cp_weight_nt(Wq, CP_Q8_0, 64, 4);
    CHECK(cp_qdot_forward_base(out, X, &w, 33, 0) == -1, "more than 32 rows");
    const cp_weight f = cp_weight_nt(Wd, CP_F32, 64, 4);
    CHECK(cp_qdot_forward_base(out, X, &f, 1, 0) == -1, "an f32 weight");
    CHECK(!cp_qdot_supports(CP_F32) && cp_qdot_supports(CP_Q6_K), "supports");
    free(Wq);
}

TEST(act8_is_what_the_backend_asks_for_and_exact_otherwise) {
    /* cp_gemm_forward: act8 = 0 gives the exact kernel's bytes, act8 = 1 the fast kernel's; more than
     * 32 rows stay exact even with act8 */
    const int64_t K = 512, M = 24;
    float *Wd = malloc((size_t)(M * K) * sizeof *Wd), *X = malloc(40 * K * sizeof *X);
    float *a = malloc(40 * M * sizeof *a), *b = malloc(40 * M * sizeof *b);
    uint8_t *Wq = weight(CP_Q4_K, M, K, Wd);
    for (int64_t i = 0; i < 40 * K; i++) X[i] = frand();
    cp_weight w = cp_weight_nt(Wq, CP_Q4_K, K, M);
    const cp_gemm_cpu_variant *v = cp_gemm_cpu();
    cp_gemm_forward(a, X, &w, 2, 0);
    v->ops->forward(b, X, &w, 2, 0);
    CHECK(memcmp(a, b, 2 * M * sizeof *a) == 0, "act8 = 0: exact");
    w.act8 = 1;
    cp_gemm_forward(a, X, &w, 2, 0);
    const qdot_fn f = qdot_of(v->isa);
    CHECK(f(b, X, &w, 2, 0) == 0 && memcmp(a, b, 2 * M * sizeof *a) == 0, "act8 = 1: the fast kernel");
    const cp_weight chunk = cp_weight_out_rows(&w, 3, 10);
    CHECK(chunk.act8 == 1, "a row view keeps act8");
    cp_gemm_forward(a, X, &w, 40, 0);
    w.act8 = 0;
    cp_gemm_forward(b, X, &w, 40, 0);
    CHECK(memcmp(a, b, 40 * M * sizeof *a) == 0, "40 rows: exact even with act8");
    free(Wd), free(X), free(a), free(b), free(Wq);
}

TEST(new_formats_dequantize_as_ggml_and_multiply_exactly) {
    static const cp_dtype NEW[] = {CP_Q6_K, CP_Q5_0, CP_Q5_1, CP_Q5_K};
    const int64_t K = 512, M = 9;
    for (size_t t = 0; t < sizeof NEW / sizeof *NEW; t++) {
        const cp_dtype dt = NEW[t];
        CHECK(cp_gemm_supports(dt), "%s supported", cp_dtype_name(dt));
        float *Wd = malloc((size_t)(M * K) * sizeof *Wd), *got = malloc((size_t)(M * K) * sizeof *got);
        uint8_t *Wq = weight(dt, M, K, Wd);
        for (int isa = 0; isa < CP_ISA_COUNT; isa++) {
            const cp_gemm_cpu_variant *v = cp_gemm_cpu_for((cp_isa)isa);
            if (!v) continue;
            deq_of((cp_isa)isa)(got, Wq, dt, M * K);
            CHECK(memcmp(got, Wd, (size_t)(M * K) * sizeof *got) == 0, "%s %s: dequantized as ggml", v->name, cp_dtype_name(dt));
            /* the exact forward and input gradient at 3 and 40 rows against double */
            for (int bwd = 0; bwd < 2; bwd++)
                for (int64_t N = 3; N <= 40; N += 37) {
                    const int64_t Kp = bwd ? M : K, Mp = bwd ? K : M;
                    float *X = malloc((size_t)(N * Kp) * sizeof *X), *out = malloc((size_t)(N * Mp) * sizeof *out);
                    for (int64_t i = 0; i < N * Kp; i++) X[i] = frand();
                    const cp_weight w = cp_weight_nt(Wq, dt, K, M);
                    if (bwd) v->ops->backward_input(out, X, &w, N, 0);
                    else v->ops->forward(out, X, &w, N, 0);
                    double worst = 0;
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t m = 0; m < Mp; m++) {
                            double s = 0, mag = 0;
                            for (int64_t k = 0; k < Kp; k++) {
                                const double term = (double)X[n * Kp + k] * (bwd ? Wd[k * K + m] : Wd[m * K + k]);
                                s += term, mag += fabs(term);
                            }
                            const double e = fabs(out[n * Mp + m] - s) / (mag > 0 ? mag : 1);
                            if (!(e <= worst)) worst = e;
                        }
                    CHECK(worst <= 2e-6, "%s %s N=%lld %s: %.3e", v->name, cp_dtype_name(dt), (long long)N, bwd ? "input gradient" : "forward", worst);
                    free(X), free(out);
                }
        }
        free(Wd), free(got), free(Wq);
    }
}

int main(void) {
    RUN(activation_rounding_follows_the_rule);
    RUN(fast_products_in_every_variant_within_the_bounds);
    RUN(the_fast_kernel_declines_what_it_does_not_take);
    RUN(act8_is_what_the_backend_asks_for_and_exact_otherwise);
    RUN(new_formats_dequantize_as_ggml_and_multiply_exactly);
    return test_summary();
}
