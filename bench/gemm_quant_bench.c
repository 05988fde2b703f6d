/*
 * gemm_quant_bench.c — GFLOP/s of the products of kernels/gemm.h with block-quantized weights
 * (Q8_0, Q4_K; Q4_1 where a row is not whole 256-value blocks) against the same weight in f32:
 * the forward product (NT, as GGUF stores a Linear) and its input gradient, on GPT-2-small shapes
 * (C = 768: OC = 768, 2304, 3072; the MLP down projection 3072 -> 768) and SmolLM2-135M shapes
 * (576 -> 576 / 1536, 1536 -> 576), N = 1 (decoding) and 1024 rows (a training batch).
 * Prints one table. Run it on an otherwise idle machine.
 *
 *   build/bench/gemm_quant_bench [--min-seconds 0.3] [--rows 1,1024]
 */
#include "io/ggml_quant.h"
#include "kernels/blas_core.h"
#include "kernels/gemm.h"
#include "machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds per product, the best of 7 batches of about min_seconds / 7 each. */
static double time_product(int bwd, float *out, const float *X, const cp_weight *w, int64_t N, double min_seconds) {
    double t0 = now(), best = 1e30;
    if (bwd) cp_gemm_backward_input(out, X, w, N, 0);
    else cp_gemm_forward(out, X, w, N, 0);
    const double per = now() - t0;
    const long reps = (long)(min_seconds / 7 / (per > 1e-7 ? per : 1e-7)) + 1;
    for (int b = 0; b < 7; b++) {
        t0 = now();
        for (long r = 0; r < reps; r++) {
            if (bwd) cp_gemm_backward_input(out, X, w, N, 0);
            else cp_gemm_forward(out, X, w, N, 0);
        }
        const double t = (now() - t0) / (double)reps;
        if (t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    cp_blas_use_best_core(argv);
    double min_seconds = 0.3;
    int64_t rows[8] = {1, 1024};
    int n_rows = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--min-seconds")) min_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows")) {
            n_rows = 0;
            for (char *s = argv[i + 1]; *s && n_rows < 8; s += *s == ',') rows[n_rows++] = strtol(s, &s, 10);
        } else {
            fprintf(stderr, "gemm_quant_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    static const struct { const char *model; int64_t C, OC; } shapes[] = {
        {"gpt2", 768, 768}, {"gpt2", 768, 2304}, {"gpt2", 768, 3072}, {"gpt2", 3072, 768},
        {"smollm2", 576, 576}, {"smollm2", 576, 1536}, {"smollm2", 1536, 576}};
    int64_t max_rows = 0;
    for (int r = 0; r < n_rows; r++) max_rows = rows[r] > max_rows ? rows[r] : max_rows;
    const int64_t most = max_rows * 3072, wmax = 3072 * 768;
    float *X = malloc((size_t)most * sizeof *X), *out = malloc((size_t)most * sizeof *out), *W = malloc((size_t)wmax * sizeof *W);
    void *q8 = malloc((size_t)cp_dtype_nbytes(CP_Q8_0, wmax)), *q4 = malloc((size_t)cp_dtype_nbytes(CP_Q4_1, wmax));
    srand(1234);
    for (int64_t i = 0; i < most; i++) X[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int64_t i = 0; i < wmax; i++) W[i] = ((float)rand() / RAND_MAX - 0.5f) * 0.1f;
    char features[256];
    printf("gemm_quant_bench: kernels %s, OpenBLAS core %s, CPU %s\n", cp_kernels()->name, openblas_get_corename(),
           cp_cpu_features(features, sizeof features));
    printf("%-8s %-6s %5s %5s %5s | %8s %8s %8s | %5s (GFLOP/s)\n", "model", "prod", "N", "C", "OC", "f32", "q8_0", "q4",
           "q4 is");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t C = shapes[s].C, OC = shapes[s].OC;
        const cp_dtype q4t = C % 256 == 0 ? CP_Q4_K : CP_Q4_1;
        for (int64_t o = 0; o < OC; o++) {
            cp_ggml_quantize_row(cp_ggml_type_of(CP_Q8_0), W + o * C, (char *)q8 + o * cp_dtype_nbytes(CP_Q8_0, C), C);
            cp_ggml_quantize_row(cp_ggml_type_of(q4t), W + o * C, (char *)q4 + o * cp_dtype_nbytes(q4t, C), C);
        }
        const cp_weight w[3] = {cp_weight_nt(W, CP_F32, C, OC), cp_weight_nt(q8, CP_Q8_0, C, OC), cp_weight_nt(q4, q4t, C, OC)};
        for (int r = 0; r < n_rows; r++)
            for (int bwd = 0; bwd < 2; bwd++) {
                const int64_t N = rows[r];
                if (bwd && N < 32) continue; /* input gradients: training batches only */
                double gf[3];
                for (int d = 0; d < 3; d++) gf[d] = 2.0 * (double)(N * C * OC) / time_product(bwd, out, X, &w[d], N, min_seconds) / 1e9;
                printf("%-8s %-6s %5lld %5lld %5lld | %8.1f %8.1f %8.1f | %s\n", shapes[s].model, bwd ? "dX" : "fwd", (long long)N,
                       (long long)C, (long long)OC, gf[0], gf[1], gf[2], cp_dtype_name(q4t));
                fflush(stdout);
            }
    }
    free(X), free(out), free(W), free(q8), free(q4);
    return 0;
}
