/*
 * test_gemm_bf16.c — bf16 compute (kernels/gemm_bf16.h, a cp_weight with round_bf16): every CPU
 * variant this machine runs (base and avx2 emulate; avx512 runs vdpbf16ps where the CPU has
 * AVX-512 BF16, else emulates), and the AVX-512 BF16 kernel called directly, against an exact
 * reference written out here: X and W rounded to bf16 (round to nearest even, cp_f32_to_bf16),
 * products summed in double. Forward and input gradient × NT and NN × F32, BF16 and F16 weights ×
 * accumulate or not, row counts on both sides of the few-row limit, odd K, column tails. Also: the
 * products really are bf16 (they differ from the f32 product by bf16's rounding, not by f32's).
 * Prints the largest difference per variant.
 */
#include "test.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"

#include <stdlib.h>

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }
static float bf16_value(float f) { return cp_bf16_to_f32(cp_f32_to_bf16(f)); }

static const cp_dtype dtypes[] = {CP_F32, CP_BF16, CP_F16};

typedef struct {
    double rel, vs_exact; /* max |diff| / Σ|terms| against the bf16 reference; the least against the exact f32 one */
    long products;
} stats;

/* ref (N,M) = bf16(X) · op(bf16(Wf)) in double (op: Wfᵀ when transposed, Wf stored (M,K)); exact
 * the same without rounding; mag = Σ|terms|. */
static void refs(double *ref, double *exact, double *mag, const float *X, const float *Wf, int64_t N, int64_t K, int64_t M,
                 int transposed) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            double s = 0, e = 0, a = 0;
            for (int64_t k = 0; k < K; k++) {
                const float w = transposed ? Wf[m * K + k] : Wf[k * M + m], x = X[n * K + k];
                s += (double)bf16_value(x) * bf16_value(w);
                e += (double)x * w;
                a += fabs((double)x * w);
            }
            ref[n * M + m] = s, exact[n * M + m] = e, mag[n * M + m] = a;
        }
}

static double worst(const float *got, const double *ref, const double *mag, const float *init, int acc, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        const double want = ref[i] + (acc ? init[i] : 0.0);
        const double rel = fabs(got[i] - want) / (mag[i] + (acc ? fabs(init[i]) : 0.0) + 1e-30);
        if (rel > w || rel != rel) w = rel;
    }
    return w;
}

/* One weight (C in, OC out), N rows, forward or input gradient, every dtype and accumulate flag,
 * through each variant's backend table and (native = 1) the kernel called directly. */
static void check(const cp_gemm_cpu_variant **v, int nv, stats *st, stats *native, int64_t N, int64_t C, int64_t OC,
                  cp_weight_layout layout, int backward, unsigned *seed) {
    const int64_t K = backward ? OC : C, M = backward ? C : OC;
    const int transposed = (layout == CP_WEIGHT_NT) != backward;
    float *X = malloc((size_t)(N * K) * sizeof *X), *W32 = malloc((size_t)(C * OC) * sizeof *W32);
    float *init = malloc((size_t)(N * M) * sizeof *init), *out = malloc((size_t)(N * M) * sizeof *out);
    float *Wf = malloc((size_t)(C * OC) * sizeof *Wf);
    double *ref = malloc((size_t)(N * M) * sizeof *ref), *exact = malloc((size_t)(N * M) * sizeof *exact);
    double *mag = malloc((size_t)(N * M) * sizeof *mag);
    uint16_t *W16 = malloc((size_t)(C * OC) * sizeof *W16);
    for (int64_t i = 0; i < N * K; i++) X[i] = frand(seed);
    for (int64_t i = 0; i < C * OC; i++) W32[i] = frand(seed);
    for (int64_t i = 0; i < N * M; i++) init[i] = frand(seed);
    for (int d = 0; d < 3; d++) {
        const void *data = W32;
        if (dtypes[d] != CP_F32) { cp_convert_from_f32(W16, dtypes[d], W32, (size_t)(C * OC)); data = W16; }
        cp_convert_to_f32(Wf, data, dtypes[d], (size_t)(C * OC)); /* the stored values (F16 then rounds again) */
        refs(ref, exact, mag, X, Wf, N, K, M, transposed);
        cp_weight w = {data, dtypes[d], layout, C, OC, 1, {NULL, NULL}};
        for (int iv = 0; iv <= nv; iv++) {
            if (iv == nv && !cp_gemm_bf16_native()) break;
            for (int acc = 0; acc < 2; acc++) {
                memcpy(out, init, (size_t)(N * M) * sizeof *out);
                if (iv < nv) (backward ? v[iv]->ops->backward_input : v[iv]->ops->forward)(out, X, &w, N, acc);
                else CHECK(cp_gemm_bf16_dot(out, X, data, dtypes[d], !transposed, N, K, M, acc) == 0, "native kernel failed");
                stats *s = iv < nv ? &st[iv] : native;
                s->rel = fmax(s->rel, worst(out, ref, mag, init, acc, N * M));
                s->vs_exact = fmax(s->vs_exact, worst(out, exact, mag, init, acc, N * M));
                s->products++;
            }
        }
    }
    free(X); free(W32); free(init); free(out); free(Wf); free(ref); free(exact); free(mag); free(W16);
}

TEST(bf16_products_match_rounded_double_reference_every_variant) {
    const cp_gemm_cpu_variant *v[CP_ISA_COUNT];
    int nv = 0;
    for (int i = 0; i < CP_ISA_COUNT; i++)
        if ((v[nv] = cp_gemm_cpu_for((cp_isa)i))) nv++;
    /* (C, OC): odd K both ways, tails of a 16-column panel and of a 48-column micro-tile, K over one
     * K block (128 pairs), rows over one task (64) and one micro-tile (8) */
    static const int64_t shapes[][2] = {{64, 96}, {77, 130}, {1, 5}, {301, 49}, {520, 100}};
    static const int64_t rows[] = {1, 3, 33, 70};
    stats st[CP_ISA_COUNT], native;
    memset(st, 0, sizeof st);
    memset(&native, 0, sizeof native);
    unsigned seed = 5;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
            for (int layout = 0; layout < 2; layout++)
                for (int backward = 0; backward < 2; backward++)
                    check(v, nv, st, &native, rows[r], shapes[s][0], shapes[s][1], (cp_weight_layout)layout, backward, &seed);
    for (int iv = 0; iv <= nv; iv++) {
        if (iv == nv && !native.products) {
            printf("  this CPU has no AVX-512 BF16: the kernel itself is not run (the variants emulate)\n");
            break;
        }
        const stats *s = iv < nv ? &st[iv] : &native;
        printf("  %-17s F32/BF16/F16 weights, fwd + dX, NT + NN, 1-70 rows: max |diff| / Σ|terms| %.1e against the bf16 "
               "reference, %.1e against the exact product\n",
               iv < nv ? v[iv]->name : "vdpbf16ps kernel", s->rel, s->vs_exact);
        CHECK(s->rel < 1e-6, "%s: bf16 products differ from the rounded reference by %.3e", iv < nv ? v[iv]->name : "kernel",
              s->rel);
        /* bf16 rounding (2^-9 relative per operand) shows: far above f32's, far below a wrong product */
        CHECK(s->vs_exact > 1e-4 && s->vs_exact < 2e-2, "%s: %.3e from the exact product is not bf16 rounding",
              iv < nv ? v[iv]->name : "kernel", s->vs_exact);
        CHECK(s->products >= 480, "only %ld products checked", s->products);
    }
}

TEST(bf16_flag_off_keeps_exact_products) {
    /* the same weight without round_bf16 is the exact product (the f32 path is untouched) */
    unsigned seed = 9;
    const int64_t N = 40, K = 50, M = 30;
    float X[40 * 50], W[30 * 50], out[40 * 30];
    for (int i = 0; i < N * K; i++) X[i] = frand(&seed);
    for (int i = 0; i < M * K; i++) W[i] = frand(&seed);
    cp_weight w = cp_weight_nt(W, CP_F32, K, M);
    CHECK(w.round_bf16 == 0, "descriptors start exact");
    cp_gemm_forward(out, X, &w, N, 0);
    double worst_diff = 0;
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)X[n * K + k] * W[m * K + k];
            worst_diff = fmax(worst_diff, fabs(out[n * M + m] - s));
        }
    printf("  exact product without the flag: max |diff| %.1e\n", worst_diff);
    CHECK(worst_diff < 1e-5, "%.3e", worst_diff);
    const cp_weight tile = cp_weight_out_rows(&(cp_weight){W, CP_F32, CP_WEIGHT_NT, K, M, 1, {NULL, NULL}}, 3, 7);
    CHECK(tile.round_bf16 == 1 && tile.out == 7, "a vocabulary tile keeps the flag");
}

int main(void) {
    RUN(bf16_products_match_rounded_double_reference_every_variant);
    RUN(bf16_flag_off_keeps_exact_products);
    return test_summary();
}
