/*
 * test_gemm.c — the matrix-product interface (kernels/gemm.h) and its CPU backend, every variant
 * this machine runs (kernels/gemm_cpu.h), against a double-precision reference written out here:
 * forward and input gradient × NT and NN layouts × F32, BF16 and F16 weights × accumulate or not,
 * over few rows (the kernels that read 16-bit weights) and many (sgemm on widened panels, several
 * panels per product), odd sizes and sizes that are no multiple of a vector; the weight gradient
 * and the strided f32 product too. A 16-bit weight is compared with the double product of its
 * widened values (widening is exact), and with the f32 path on those widened values. The f32 path
 * must be bit-identical to the calls nn/linear.c made before the interface existed. Also: the
 * registry (another backend takes the dtypes it supports, "cpu" the rest; CPEFT_GEMM chooses).
 * Prints the largest difference per variant and dtype.
 */
#include "test.h"
#include "kernels/gemm.h"
#include "kernels/gemm_cpu.h"
#include "kernels/skinny.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static const cp_dtype dtypes[] = {CP_F32, CP_BF16, CP_F16};

/* ---- references -------------------------------------------------------------------------------- */

/* The stored matrix's values as f32 (exact for 16-bit), stored (rows, cols) as `data`. */
static float *widened(const void *data, cp_dtype dt, int64_t n) {
    float *w = malloc((size_t)n * sizeof *w);
    cp_convert_to_f32(w, data, dt, (size_t)n);
    return w;
}

/* ref (N,M) = X (N,K) · op(Wf) in double, op(Wf) = Wfᵀ when `transposed` (Wf stored (M,K)) else
 * Wf (stored (K,M)); mag = Σ|terms| per output, the scale of its rounding error. */
static void product_ref(double *ref, double *mag, const float *X, const float *Wf, int64_t N, int64_t K, int64_t M,
                        int transposed) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            double s = 0.0, a = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)X[n * K + k] * (transposed ? Wf[m * K + k] : Wf[k * M + m]);
                s += p;
                a += fabs(p);
            }
            ref[n * M + m] = s;
            mag[n * M + m] = a;
        }
}

/* Largest |got - (init·acc + ref)| / (Σ|terms| + |init|) over n outputs. */
static double worst_rel(const float *got, const double *ref, const double *mag, const float *init, int acc, int64_t n) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double want = ref[i] + (acc ? init[i] : 0.0), scale = mag[i] + (acc ? fabs(init[i]) : 0.0) + 1e-30;
        const double rel = fabs(got[i] - want) / scale;
        if (rel > w || rel != rel) w = rel;
    }
    return w;
}

/* ---- the products of one variant, all dtypes ---------------------------------------------------- */

typedef struct {
    double rel[3];     /* per dtype: max |diff| / Σ|terms| against the double reference */
    double vs_f32[3];  /* per dtype: the same against the f32 path on the widened weight */
    long sgemm_outputs, sgemm_differing[3]; /* beyond the few-row kernels (N > 32): outputs, and those not bit-equal */
    long products;
} product_stats;

#define W16_FEW_ROWS 32 /* the most rows any few-row kernel takes (gemm_cpu.c) */

/* Runs forward (backward = 0) or input gradient (1) of a weight (C in, OC out, layout) for every
 * dtype and accumulate flag through every variant, and compares. */
static void check_products(const cp_gemm_cpu_variant **v, int nv, product_stats *st, int64_t N, int64_t C, int64_t OC,
                           cp_weight_layout layout, int backward, unsigned *seed) {
    const int64_t K = backward ? OC : C, M = backward ? C : OC; /* out (N,M) = X (N,K) · ... */
    /* the stored matrix is (OC,C) for NT, (C,OC) for NN; the product reads it transposed when
     * forward through NT or backward through NN */
    const int transposed = (layout == CP_WEIGHT_NT) != backward;
    float *X = malloc((size_t)(N * K) * sizeof *X), *W32 = malloc((size_t)(C * OC) * sizeof *W32);
    float *init = malloc((size_t)(N * M) * sizeof *init), *out = malloc((size_t)(N * M) * sizeof *out);
    float *out32 = malloc((size_t)(N * M) * sizeof *out32);
    double *ref = malloc((size_t)(N * M) * sizeof *ref), *mag = malloc((size_t)(N * M) * sizeof *mag);
    double *diff = malloc((size_t)(N * M) * sizeof *diff);
    uint16_t *W16 = malloc((size_t)(C * OC) * sizeof *W16);
    for (int64_t i = 0; i < N * K; i++) X[i] = frand(seed);
    for (int64_t i = 0; i < C * OC; i++) W32[i] = frand(seed);
    for (int64_t i = 0; i < N * M; i++) init[i] = frand(seed);
    for (int d = 0; d < 3; d++) {
        const cp_dtype dt = dtypes[d];
        const void *data = W32;
        if (dt != CP_F32) { cp_convert_from_f32(W16, dt, W32, (size_t)(C * OC)); data = W16; }
        float *Wf = widened(data, dt, C * OC);
        product_ref(ref, mag, X, Wf, N, K, M, transposed);
        const cp_weight w = {data, dt, layout, C, OC, 0, {NULL, NULL}}, w32 = {Wf, CP_F32, layout, C, OC, 0, {NULL, NULL}};
        for (int iv = 0; iv < nv; iv++)
            for (int acc = 0; acc < 2; acc++) {
                const cp_gemm_ops *ops = v[iv]->ops;
                memcpy(out, init, (size_t)(N * M) * sizeof *out);
                memcpy(out32, init, (size_t)(N * M) * sizeof *out);
                (backward ? ops->backward_input : ops->forward)(out, X, &w, N, acc);
                (backward ? ops->backward_input : ops->forward)(out32, X, &w32, N, acc);
                st[iv].rel[d] = fmax(st[iv].rel[d], worst_rel(out, ref, mag, init, acc, N * M));
                for (int64_t i = 0; i < N * M; i++) diff[i] = (double)out32[i] - (acc ? init[i] : 0.0);
                st[iv].vs_f32[d] = fmax(st[iv].vs_f32[d], worst_rel(out, diff, mag, init, acc, N * M));
                if (N > W16_FEW_ROWS) {
                    if (d == 0) st[iv].sgemm_outputs += N * M;
                    for (int64_t i = 0; i < N * M; i++) st[iv].sgemm_differing[d] += out[i] != out32[i];
                }
                st[iv].products++;
            }
        free(Wf);
    }
    free(X); free(W32); free(init); free(out); free(out32); free(ref); free(mag); free(diff); free(W16);
}

/* The variants this machine runs, base first; returns how many. */
static int runnable(const cp_gemm_cpu_variant **out) {
    int n = 0;
    for (int i = 0; i < CP_ISA_COUNT; i++)
        if ((out[n] = cp_gemm_cpu_for((cp_isa)i))) n++;
    return n;
}

TEST(products_match_double_reference_every_variant_dtype_layout) {
    const cp_gemm_cpu_variant *v[CP_ISA_COUNT];
    const int nv = runnable(v);
    /* (C, OC): odd sizes and vector tails; the last is wide enough for several widened panels per
     * product (at most 1 MB per thread and panel: 160 columns of K = 1500, 512 of K = 500), and
     * through its two layouts and two directions it is each product shape both ways round */
    static const int64_t shapes[][2] = {{64, 96}, {77, 130}, {1, 5}, {768, 300}, {1500, 500}};
    static const int64_t rows_small[] = {1, 2, 3, 5, 8, 9, 16, 17, 33, 130}, rows_large[] = {1, 3, 9, 40};
    product_stats st[CP_ISA_COUNT];
    memset(st, 0, sizeof st);
    unsigned seed = 17;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t C = shapes[s][0], OC = shapes[s][1];
        const int large = C * OC > 20000;
        const int64_t *rows = large ? rows_large : rows_small;
        const size_t n_rows = large ? sizeof rows_large / sizeof *rows_large : sizeof rows_small / sizeof *rows_small;
        for (size_t r = 0; r < n_rows; r++)
            for (int layout = 0; layout < 2; layout++)
                for (int backward = 0; backward < 2; backward++)
                    check_products(v, nv, st, rows[r], C, OC, (cp_weight_layout)layout, backward, &seed);
    }
    for (int iv = 0; iv < nv; iv++) {
        for (int d = 0; d < 3; d++) {
            printf("  %-6s %-4s forward + input grad, NT + NN, 1-130 rows, 5 shapes: max |diff| / Σ|terms| %.1e", v[iv]->name,
                   cp_dtype_name(dtypes[d]), st[iv].rel[d]);
            if (dtypes[d] != CP_F32)
                printf("; vs f32 on the widened weight %.1e, beyond 32 rows %ld of %ld outputs not bit-equal", st[iv].vs_f32[d],
                       st[iv].sgemm_differing[d], st[iv].sgemm_outputs);
            printf("\n");
            CHECK(st[iv].rel[d] < 1e-6, "%s %s: products differ from the reference by %.3e of the terms' magnitude", v[iv]->name,
                  cp_dtype_name(dtypes[d]), st[iv].rel[d]);
            CHECK(st[iv].vs_f32[d] < 1e-6, "%s %s: differs from the f32 path on the same values by %.3e", v[iv]->name,
                  cp_dtype_name(dtypes[d]), st[iv].vs_f32[d]);
        }
        CHECK(st[iv].products > 800 && st[iv].sgemm_outputs > 100000, "only %ld products, %ld outputs by sgemm checked",
              st[iv].products, st[iv].sgemm_outputs);
    }
}

TEST(panels_cut_any_way_match_double_reference) {
    /* many rows: the product is cut into panels of W's outputs and blocks of X's rows, by the size
     * of the team and of the scratch per thread; every cut must give the product */
    static const int teams[] = {1, 2, 3, 8};
    static const int64_t scratch[] = {0, 40000}; /* the backend's choice; a few columns a panel */
    static const int64_t rows[] = {40, 100};
    const cp_gemm_ops *ops = cp_gemm_cpu()->ops;
    const int threads_before = omp_get_max_threads();
    unsigned seed = 23;
    double worst = 0;
    long products = 0;
    for (size_t t = 0; t < sizeof teams / sizeof *teams; t++)
        for (size_t s = 0; s < sizeof scratch / sizeof *scratch; s++)
            for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
                for (int layout = 0; layout < 2; layout++)
                    for (int backward = 0; backward < 2; backward++) {
                        omp_set_num_threads(teams[t]);
                        cp_gemm_cpu_set_panel_bytes(scratch[s]);
                        const int64_t N = rows[r], C = 300, OC = 200, K = backward ? OC : C, M = backward ? C : OC;
                        float *X = malloc((size_t)(N * K) * sizeof *X), *Wf = malloc((size_t)(C * OC) * sizeof *Wf);
                        float *out = malloc((size_t)(N * M) * sizeof *out), *init = malloc((size_t)(N * M) * sizeof *init);
                        double *ref = malloc((size_t)(N * M) * sizeof *ref), *mag = malloc((size_t)(N * M) * sizeof *mag);
                        uint16_t *W = malloc((size_t)(C * OC) * sizeof *W);
                        for (int64_t i = 0; i < N * K; i++) X[i] = frand(&seed);
                        for (int64_t i = 0; i < C * OC; i++) Wf[i] = frand(&seed);
                        for (int64_t i = 0; i < N * M; i++) out[i] = init[i] = frand(&seed);
                        const cp_dtype dt = (r + (size_t)layout) % 2 ? CP_F16 : CP_BF16;
                        cp_convert_from_f32(W, dt, Wf, (size_t)(C * OC));
                        cp_convert_to_f32(Wf, W, dt, (size_t)(C * OC));
                        const cp_weight w = {W, dt, (cp_weight_layout)layout, C, OC, 0, {NULL, NULL}};
                        (backward ? ops->backward_input : ops->forward)(out, X, &w, N, 1);
                        product_ref(ref, mag, X, Wf, N, K, M, (layout == CP_WEIGHT_NT) != backward);
                        worst = fmax(worst, worst_rel(out, ref, mag, init, 1, N * M));
                        products++;
                        free(X); free(Wf); free(out); free(init); free(ref); free(mag); free(W);
                    }
    cp_gemm_cpu_set_panel_bytes(0);
    omp_set_num_threads(threads_before);
    printf("  %ld products (teams of 1-8 threads, default and 40 kB panels, 40 and 100 rows): max |diff| / Σ|terms| %.1e\n",
           products, worst);
    CHECK(worst < 1e-6, "panelled products differ from the reference by %.3e", worst);
}

TEST(skinny16_kernels_take_any_row_count) {
    /* the few-row kernels are also the way on without scratch, so any N must be right */
    const cp_gemm_cpu_variant *v[CP_ISA_COUNT];
    const int nv = runnable(v);
    static const int64_t shapes[][2] = {{64, 96}, {77, 130}, {1, 5}, {768, 300}, {33, 17}};
    unsigned seed = 5;
    for (int iv = 0; iv < nv; iv++) {
        double worst[2] = {0, 0};
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int64_t N = 1; N <= 35; N += 3)
                for (int nn = 0; nn < 2; nn++)
                    for (int bf16 = 0; bf16 < 2; bf16++)
                        for (int acc = 0; acc < 2; acc++) {
                            const int64_t K = shapes[s][0], M = shapes[s][1];
                            float *X = malloc((size_t)(N * K) * sizeof *X), *Wf = malloc((size_t)(K * M) * sizeof *Wf);
                            float *out = malloc((size_t)(N * M) * sizeof *out), *init = malloc((size_t)(N * M) * sizeof *init);
                            double *ref = malloc((size_t)(N * M) * sizeof *ref), *mag = malloc((size_t)(N * M) * sizeof *mag);
                            uint16_t *W = malloc((size_t)(K * M) * sizeof *W);
                            for (int64_t i = 0; i < N * K; i++) X[i] = frand(&seed);
                            for (int64_t i = 0; i < K * M; i++) Wf[i] = frand(&seed);
                            for (int64_t i = 0; i < N * M; i++) out[i] = init[i] = frand(&seed);
                            cp_convert_from_f32(W, bf16 ? CP_BF16 : CP_F16, Wf, (size_t)(K * M));
                            cp_convert_to_f32(Wf, W, bf16 ? CP_BF16 : CP_F16, (size_t)(K * M));
                            (nn ? v[iv]->skinny16_nn : v[iv]->skinny16_nt)(out, X, W, bf16, N, K, M, acc);
                            product_ref(ref, mag, X, Wf, N, K, M, !nn);
                            worst[nn] = fmax(worst[nn], worst_rel(out, ref, mag, init, acc, N * M));
                            free(X); free(Wf); free(out); free(init); free(ref); free(mag); free(W);
                        }
        printf("  %-6s skinny16 NT %.1e, NN %.1e (max |diff| / Σ|terms|, BF16 + F16, 1-34 rows)\n", v[iv]->name, worst[0],
               worst[1]);
        CHECK(worst[0] < 1e-6 && worst[1] < 1e-6, "%s: skinny16 kernels differ by %.3e / %.3e", v[iv]->name, worst[0], worst[1]);
    }
}

TEST(widening_is_exact_for_every_16bit_value) {
    const cp_gemm_cpu_variant *v[CP_ISA_COUNT];
    const int nv = runnable(v);
    enum { N = 65536 + 7 }; /* every bit pattern (NaNs, infinities, subnormals), then a tail */
    uint16_t *src = malloc(N * sizeof *src);
    float *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
    for (int i = 0; i < N; i++) src[i] = (uint16_t)i;
    for (int iv = 0; iv < nv; iv++)
        for (int bf16 = 0; bf16 < 2; bf16++) {
            v[iv]->widen16(got, src, bf16, N);
            cp_convert_to_f32(want, src, bf16 ? CP_BF16 : CP_F16, N);
            long bad = 0;
            for (int i = 0; i < N; i++) {
                uint32_t a, b;
                memcpy(&a, got + i, 4);
                memcpy(&b, want + i, 4);
                /* NaNs: same sign, still NaN (F16C may quiet a signalling one) */
                bad += isnan(want[i]) ? !isnan(got[i]) || (a >> 31) != (b >> 31) : a != b;
            }
            CHECK(bad == 0, "%s: widening %s differs from core/dtype.c in %ld of 65536 values", v[iv]->name,
                  bf16 ? "BF16" : "F16", bad);
        }
    free(src); free(got); free(want);
}

/* ---- the f32 path is nn/linear.c's, bit for bit ------------------------------------------------- */

/* nn/linear.c's products as they were written before kernels/gemm.h (cp_matmul_nt / _nn / _tn and
 * the Conv1D input gradient), copied here so that the comparison outlives them. */
static void linear_c_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    if (N <= CP_SKINNY_MAX_ROWS) { cp_skinny_nt(out, in, W, N, C, OC, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, in, (int)C, W, (int)C,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}
static void linear_c_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    if (N <= 2) { cp_skinny_nn(out, in, W, N, C, OC, accumulate); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)OC, (int)C, 1.0f, in, (int)C, W, (int)OC,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}
static void linear_c_tn(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)OC, (int)N, 1.0f, a, (int)C, b, (int)OC,
                accumulate ? 1.0f : 0.0f, out, (int)OC);
}

TEST(f32_path_is_bit_identical_to_linear_c) {
    static const int64_t shapes[][2] = {{64, 96}, {77, 130}, {768, 300}};
    static const int64_t rows[] = {1, 2, 3, 7, 8, 9, 33, 130};
    unsigned seed = 29;
    long compared = 0, differing = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t r = 0; r < sizeof rows / sizeof *rows; r++)
            for (int acc = 0; acc < 2; acc++) {
                const int64_t C = shapes[s][0], OC = shapes[s][1], N = rows[r], big = (C > OC ? C : OC) * N;
                const int64_t most = big > C * OC ? big : C * OC; /* the largest output */
                float *X = malloc((size_t)big * sizeof *X), *W = malloc((size_t)(C * OC) * sizeof *W);
                float *a = malloc((size_t)most * sizeof *a), *b = malloc((size_t)most * sizeof *b);
                float *init = malloc((size_t)most * sizeof *init);
                for (int64_t i = 0; i < big; i++) X[i] = frand(&seed);
                for (int64_t i = 0; i < C * OC; i++) W[i] = frand(&seed);
                for (int64_t i = 0; i < most; i++) init[i] = frand(&seed);
                const cp_weight nt = cp_weight_nt(W, CP_F32, C, OC), nn = cp_weight_nn(W, CP_F32, C, OC);
#define SAME(n_out, call_gemm, call_old)                                          \
    do {                                                                         \
        memcpy(a, init, (size_t)(n_out) * sizeof *a);                            \
        memcpy(b, init, (size_t)(n_out) * sizeof *b);                            \
        call_gemm;                                                               \
        call_old;                                                                \
        compared += (n_out);                                                     \
        differing += memcmp(a, b, (size_t)(n_out) * sizeof *a) != 0;             \
    } while (0)
                SAME(N * OC, cp_gemm_forward(a, X, &nt, N, acc), linear_c_nt(b, X, W, N, C, OC, acc));
                SAME(N * OC, cp_gemm_forward(a, X, &nn, N, acc), linear_c_nn(b, X, W, N, C, OC, acc));
                SAME(N * C, cp_gemm_backward_input(a, X, &nt, N, acc), linear_c_nn(b, X, W, N, OC, C, acc));
                SAME(N * C, cp_gemm_backward_input(a, X, &nn, N, acc),
                     cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)C, (int)OC, 1.0f, X, (int)OC, W,
                                 (int)OC, acc ? 1.0f : 0.0f, b, (int)C));
                SAME(C * OC, cp_gemm_weight_grad(a, X, X, N, C, OC, acc), linear_c_tn(b, X, X, N, C, OC, acc));
                SAME(N * OC, cp_gemm_f32(0, 1, N, OC, C, 0.5f, X, C, W, C, acc ? 1.0f : 0.0f, a, OC),
                     cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 0.5f, X, (int)C, W,
                                 (int)C, acc ? 1.0f : 0.0f, b, (int)OC));
#undef SAME
                free(X); free(W); free(a); free(b); free(init);
            }
    printf("  f32 forward, input grad (NT, NN), weight grad, strided: %ld outputs, %ld products not bit-identical to linear.c's calls\n",
           compared, differing);
    CHECK(differing == 0, "%ld f32 products differ from nn/linear.c's calls", differing);
}

TEST(weight_rows_view_is_a_vocabulary_chunk) {
    enum { N = 11, C = 40, V = 70 };
    unsigned seed = 3;
    float X[N * C], W[V * C], all[N * V], part[N * 25];
    uint16_t W16[V * C];
    for (int i = 0; i < N * C; i++) X[i] = frand(&seed);
    for (int i = 0; i < V * C; i++) W[i] = frand(&seed);
    cp_convert_from_f32(W16, CP_BF16, W, V * C);
    const cp_weight w = cp_weight_nt(W16, CP_BF16, C, V), chunk = cp_weight_out_rows(&w, 30, 25);
    CHECK(chunk.out == 25 && chunk.in == C && chunk.data == (const void *)(W16 + 30 * C), "the view of rows 30..54");
    cp_gemm_forward(all, X, &w, N, 0);
    cp_gemm_forward(part, X, &chunk, N, 0);
    double d = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < 25; o++) d = fmax(d, fabs(part[n * 25 + o] - all[n * V + 30 + o]));
    CHECK(d < 1e-5, "the chunk's logits differ from the full product's by %.3e", d);
}

/* ---- the registry ----------------------------------------------------------------------------- */

static int fake_calls;
static int fake_supports(cp_dtype dt) { return dt == CP_BF16; }
static void fake_forward(float *out, const float *X, const cp_weight *W, int64_t N, int acc) {
    fake_calls++;
    cp_gemm_find("cpu")->forward(out, X, W, N, acc);
}
static void fake_backward(float *dX, const float *dY, const cp_weight *W, int64_t N, int acc) {
    fake_calls++;
    cp_gemm_find("cpu")->backward_input(dX, dY, W, N, acc);
}
static void fake_grad(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int acc) {
    fake_calls++;
    cp_gemm_find("cpu")->weight_grad(out, a, b, N, C, OC, acc);
}
static void fake_f32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float beta, float *C, int64_t ldc) {
    fake_calls++;
    cp_gemm_find("cpu")->f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static const cp_gemm_ops fake = {"fake", fake_supports, fake_forward, fake_backward, fake_grad, fake_f32};

/* In a child: registers "fake", sets CPEFT_GEMM=want, returns 1 when the first product chose
 * "fake", 0 when "cpu", 2 otherwise. Needs a process where no product ran yet. */
static int child_active(const char *want) {
    pid_t pid = fork();
    if (pid == 0) {
        cp_set_quiet(1);
        setenv("CPEFT_GEMM", want, 1);
        if (cp_gemm_register(&fake) != CP_OK) _exit(3);
        const char *name = cp_gemm_active()->name;
        _exit(!strcmp(name, "fake") ? 1 : !strcmp(name, "cpu") ? 0 : 2);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

TEST(cpeft_gemm_chooses_the_backend) {
    /* runs first: the children must start before this process chose its backend */
    CHECK(child_active("fake") == 1, "CPEFT_GEMM=fake must choose the registered backend");
    CHECK(child_active("cpu") == 0, "CPEFT_GEMM=cpu must choose cpu");
    CHECK(child_active("nonesuch") == 0, "an unknown CPEFT_GEMM falls back to cpu");
}

TEST(registry_routes_supported_dtypes_to_the_active_backend) {
    const cp_gemm_ops *cpu = cp_gemm_find("cpu");
    CHECK(cpu && !strcmp(cpu->name, "cpu") && cp_gemm_active() == cpu, "cpu is registered and active by default");
    CHECK(cpu == cp_gemm_cpu()->ops, "the cpu backend is the variant of the chosen instruction set (%s)", cp_gemm_cpu()->name);
    CHECK(cp_gemm_supports(CP_F32) && cp_gemm_supports(CP_BF16) && cp_gemm_supports(CP_F16) && !cp_gemm_supports(CP_I8) &&
              !cp_gemm_supports(CP_F64),
          "F32, BF16, F16 and nothing else");
    CHECK_OK(cp_gemm_register(&fake));
    CHECK_ERR(cp_gemm_register(&fake), "registered");
    const cp_gemm_ops named_cpu = {"cpu", fake_supports, fake_forward, fake_backward, fake_grad, fake_f32};
    CHECK_ERR(cp_gemm_register(&named_cpu), "registered");
    const cp_gemm_ops partial = {"partial", fake_supports, fake_forward, NULL, fake_grad, fake_f32};
    CHECK_ERR(cp_gemm_register(&partial), "every member");
    CHECK_ERR(cp_gemm_use("nonesuch"), "not registered");
    CHECK(cp_gemm_find("fake") == &fake, "find by name");

    CHECK_OK(cp_gemm_use("fake"));
    CHECK(cp_gemm_active() == &fake, "fake is active");
    enum { N = 5, C = 24, OC = 18 };
    unsigned seed = 41;
    float X[N * C], W[OC * C], got[N * OC], want[N * OC], dY[N * OC], dX[N * C], dW[OC * C];
    uint16_t W16[OC * C];
    for (int i = 0; i < N * C; i++) X[i] = frand(&seed);
    for (int i = 0; i < OC * C; i++) W[i] = frand(&seed);
    for (int i = 0; i < N * OC; i++) dY[i] = frand(&seed);
    cp_convert_from_f32(W16, CP_BF16, W, OC * C);
    const cp_weight wb = cp_weight_nt(W16, CP_BF16, C, OC), wf = cp_weight_nt(W, CP_F32, C, OC);
    fake_calls = 0;
    cp_gemm_forward(got, X, &wb, N, 0);
    cp_gemm_backward_input(dX, dY, &wb, N, 0);
    CHECK(fake_calls == 2, "BF16 weights go to the active backend (%d calls)", fake_calls);
    cpu->forward(want, X, &wb, N, 0);
    CHECK(!memcmp(got, want, sizeof got), "the fake backend's forward is cpu's");
    fake_calls = 0;
    cp_gemm_forward(got, X, &wf, N, 0);
    CHECK(fake_calls == 0, "F32 weights, which the active backend does not take, go to cpu");
    cp_gemm_weight_grad(dW, dY, X, N, OC, C, 0);
    cp_gemm_f32(0, 0, N, C, OC, 1.0f, dY, OC, W, C, 0.0f, dX, C);
    CHECK(fake_calls == 2, "the all-f32 products go to the active backend (%d calls)", fake_calls);
    CHECK_OK(cp_gemm_use("cpu"));
    CHECK(cp_gemm_active() == cpu, "cpu again");

    static cp_gemm_ops many[8];
    static char names[8][16];
    int added = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof names[i], "b%d", i);
        many[i] = fake;
        many[i].name = names[i];
        cp_clear_error();
        added += cp_gemm_register(&many[i]) == CP_OK;
    }
    CHECK(added == 6 && strstr(cp_last_error(), "no room"), "8 backends at most (cpu, fake and 6 more): added %d", added);
}

int main(void) {
    RUN(cpeft_gemm_chooses_the_backend);
    RUN(products_match_double_reference_every_variant_dtype_layout);
    RUN(panels_cut_any_way_match_double_reference);
    RUN(skinny16_kernels_take_any_row_count);
    RUN(widening_is_exact_for_every_16bit_value);
    RUN(f32_path_is_bit_identical_to_linear_c);
    RUN(weight_rows_view_is_a_vocabulary_chunk);
    RUN(registry_routes_supported_dtypes_to_the_active_backend);
    return test_summary();
}
