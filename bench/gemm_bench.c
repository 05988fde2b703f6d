/*
 * gemm_bench.c — GFLOP/s of the matrix products of kernels/gemm.h with F32, BF16 and F16 weights,
 * on GPT-2-small shapes: C = 768 inputs, OC = 768 / 2304 / 3072 outputs (attention out, QKV, MLP
 * up), N = 1 and 8 rows (decoding) and 512 and 2048 rows (a batch of sequences); the forward
 * product for both weight layouts (NT: nn.Linear, NN: GPT-2's Conv1D) and the input gradient.
 * Prints one table, then one JSON line per row. Run it on an otherwise idle machine.
 *
 *   build/bench/gemm_bench [--min-seconds 0.5] [--rows 1,8,512,2048] [--shape C,OC1,OC2,OC3] [--bf16]
 *   build/bench/gemm_bench --peak [--min-seconds 0.5]
 *
 * --bf16: the columns become f32 (exact), bf16 compute (--bf16's products: a BF16 weight with
 * round_bf16, vdpbf16ps where the CPU has AVX-512 BF16) and the same emulated (the avx2 variant).
 * --shape 576,576,1536,192 gives SmolLM2-135M's (hidden 576, MLP 1536, k/v 192).
 * --peak: only the machine's GEMM peak as bench/run.sh train reports it, one JSON line: the f32 product
 * (sgemm) and the bf16 one on a weight packed once (what --bf16 training runs: cp_gemm_bf16_dot_packed)
 * on 2048 × 768 × 3072 (N × C × OC, a GPT-2 MLP product of a 4 × 512 batch), best of the batches.
 *
 * Each cell is the best of 15 batches of about min-seconds / 15 each, the three dtypes taking
 * turns; the weights are the same random values in each dtype (rounded to 16 bits once).
 */
#include "kernels/blas_core.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"
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

typedef enum { FWD_NT, FWD_NN, BWD_NT, BWD_NN, N_KINDS } kind;
static const char *const kind_names[] = {"fwd NT", "fwd NN", "dX NT", "dX NN"};

/* --bf16: the third weight runs through this variant's table (the avx2 one: the emulation) */
static const cp_gemm_ops *third_ops;

static void run_product(kind k, float *out, const float *X, const cp_weight *w, int64_t N, long reps) {
    const int third = third_ops && w->round_bf16 == 2;
    cp_weight v = *w;
    if (third) v.round_bf16 = 1;
    for (long r = 0; r < reps; r++) {
        if (third) (k == FWD_NT || k == FWD_NN ? third_ops->forward : third_ops->backward_input)(out, X, &v, N, 0);
        else if (k == FWD_NT || k == FWD_NN) cp_gemm_forward(out, X, w, N, 0);
        else cp_gemm_backward_input(out, X, w, N, 0);
    }
}

/* Seconds per product for each of the three weights, the best of BATCHES batches of about
 * min_seconds / BATCHES each; the weights take turns, so a burst of other load hits all three. */
#define BATCHES 15
static void time_products(double best[3], kind k, float *out, const float *X, const cp_weight w[3], int64_t N,
                          double min_seconds) {
    long reps[3];
    for (int d = 0; d < 3; d++) { /* warm up and size the batches */
        double t0 = now();
        run_product(k, out, X, &w[d], N, 1);
        const double per = now() - t0;
        reps[d] = (long)(min_seconds / BATCHES / (per > 1e-7 ? per : 1e-7)) + 1;
        best[d] = 1e30;
    }
    for (int b = 0; b < BATCHES; b++)
        for (int d = 0; d < 3; d++) {
            double t0 = now();
            run_product(k, out, X, &w[d], N, reps[d]);
            const double per = (now() - t0) / (double)reps[d];
            if (per < best[d]) best[d] = per;
        }
}

/* --peak: best GFLOP/s of f32 sgemm and of the bf16 kernel on packed panels, one JSON line. */
static int peak(double min_seconds) {
    const int64_t N = 2048, C = 768, OC = 3072;
    float *X = malloc((size_t)(N * C) * sizeof *X), *out = malloc((size_t)(N * OC) * sizeof *out);
    float *W = malloc((size_t)(C * OC) * sizeof *W);
    uint32_t *P = malloc((size_t)cp_gemm_bf16_panel_words(C, OC) * sizeof *P);
    srand(1234);
    for (int64_t i = 0; i < N * C; i++) X[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int64_t i = 0; i < C * OC; i++) W[i] = ((float)rand() / RAND_MAX - 0.5f) * 0.1f;
    const int native = cp_gemm_bf16_native();
    if (native) cp_gemm_bf16_pack(P, W, CP_F32, 0, C, OC);
    const cp_weight w = cp_weight_nt(W, CP_F32, C, OC);
    double best[2] = {1e30, 1e30};
    for (int b = 0; b < BATCHES; b++)
        for (int d = 0; d < 1 + native; d++) {
            const double t0 = now();
            int reps = 0;
            do {
                if (d == 0) cp_gemm_forward(out, X, &w, N, 0);
                else cp_gemm_bf16_dot_packed(out, X, P, N, C, OC, 0);
                reps++;
            } while (now() - t0 < min_seconds / BATCHES);
            const double per = (now() - t0) / reps;
            if (per < best[d]) best[d] = per;
        }
    const double flops = 2.0 * (double)(N * C * OC);
    printf("{\"bench\": \"gemm_peak\", \"N\": %lld, \"C\": %lld, \"OC\": %lld, \"gflops_f32\": %.1f, \"gflops_bf16\": %.1f, ",
           (long long)N, (long long)C, (long long)OC, flops / best[0] / 1e9, native ? flops / best[1] / 1e9 : 0.0);
    bench_machine_json(stdout);
    printf("}\n");
    free(X), free(out), free(W), free(P);
    return 0;
}

int main(int argc, char **argv) {
    cp_blas_use_best_core(argv);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--peak")) {
            double ms = 0.5;
            for (int j = 1; j + 1 < argc; j++)
                if (!strcmp(argv[j], "--min-seconds")) ms = atof(argv[j + 1]);
            return peak(ms);
        }
    double min_seconds = 0.5;
    int64_t rows[16] = {1, 8, 512, 2048};
    int n_rows = 4, bf16 = 0;
    int64_t C = 768, ocs[3] = {768, 2304, 3072};
    for (int i = 1; i < argc; i += 2) {
        if (!strcmp(argv[i], "--bf16")) { bf16 = 1; i--; continue; }
        if (i + 1 >= argc) break;
        if (!strcmp(argv[i], "--min-seconds")) min_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--shape")) { /* C,OC1,OC2,OC3 */
            char *e = argv[i + 1];
            C = strtol(e, &e, 10);
            for (int o = 0; o < 3 && *e == ','; o++) ocs[o] = strtol(e + 1, &e, 10);
        }
        else if (!strcmp(argv[i], "--rows")) {
            n_rows = 0;
            for (char *s = argv[i + 1]; *s && n_rows < 16; s += *s == ',') rows[n_rows++] = strtol(s, &s, 10);
        } else {
            fprintf(stderr, "gemm_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (bf16) {
        const cp_gemm_cpu_variant *emul = cp_gemm_cpu_for(CP_ISA_AVX2);
        if (!emul) emul = cp_gemm_cpu_for(CP_ISA_BASE);
        third_ops = emul->ops;
        printf("gemm_bench --bf16: columns f32 (sgemm, exact), bf16 (round_bf16 with a BF16 weight: %s), bf16 emulated "
               "(the %s variant: X rounded, weight widened, sgemm)\n",
               cp_gemm_bf16_native() ? "vdpbf16ps" : "emulated, no AVX-512 BF16 here", emul->name);
    }
    int64_t maxoc = 0;
    for (int o = 0; o < 3; o++) maxoc = ocs[o] > maxoc ? ocs[o] : maxoc;
    int64_t max_rows = 0;
    for (int r = 0; r < n_rows; r++) max_rows = rows[r] > max_rows ? rows[r] : max_rows;
    const int64_t most = max_rows * (maxoc > C ? maxoc : C);
    float *X = malloc((size_t)most * sizeof *X), *out = malloc((size_t)most * sizeof *out);
    float *W = malloc((size_t)(C * maxoc) * sizeof *W);
    uint16_t *Wb = malloc((size_t)(C * maxoc) * sizeof *Wb), *Wh = malloc((size_t)(C * maxoc) * sizeof *Wh);
    srand(1234);
    for (int64_t i = 0; i < most; i++) X[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int64_t i = 0; i < C * maxoc; i++) W[i] = ((float)rand() / RAND_MAX - 0.5f) * 0.1f;
    cp_convert_from_f32(Wb, CP_BF16, W, (size_t)(C * maxoc));
    cp_convert_from_f32(Wh, CP_F16, W, (size_t)(C * maxoc));
    cp_convert_to_f32(W, Wb, CP_BF16, (size_t)(C * maxoc)); /* the same values in every dtype */

    char features[256];
    printf("gemm_bench: kernels %s, OpenBLAS core %s, CPU %s\n", cp_kernels()->name, openblas_get_corename(),
           cp_cpu_features(features, sizeof features));
    printf("%-7s %5s %5s %5s | %9s %9s %9s | %6s %6s  (GFLOP/s; ratio = time f32 / time 16-bit)\n", "product", "N", "C", "OC",
           "f32", "bf16", "f16", "bf16", "f16");
    char json[64][512];
    int n_json = 0;
    for (int r = 0; r < n_rows; r++)
        for (int o = 0; o < 3; o++)
            for (int k = 0; k < N_KINDS; k++) {
                const int64_t N = rows[r], OC = ocs[o];
                if ((k == BWD_NT || k == BWD_NN) && N < 512) continue; /* input gradients: training batches only */
                const cp_weight_layout layout = (k == FWD_NT || k == BWD_NT) ? CP_WEIGHT_NT : CP_WEIGHT_NN;
                cp_weight w[3] = {cp_weight_nt(W, CP_F32, C, OC), cp_weight_nt(Wb, CP_BF16, C, OC), cp_weight_nt(Wh, CP_F16, C, OC)};
                for (int d = 0; d < 3; d++) w[d].layout = layout;
                if (bf16) w[1].round_bf16 = 1, w[2] = w[1], w[2].round_bf16 = 2; /* 2: through third_ops */
                double t[3], gf[3];
                time_products(t, (kind)k, out, X, w, N, min_seconds);
                for (int d = 0; d < 3; d++) gf[d] = 2.0 * (double)(N * C * OC) / t[d] / 1e9;
                printf("%-7s %5lld %5lld %5lld | %9.1f %9.1f %9.1f | %6.2f %6.2f\n", kind_names[k], (long long)N, (long long)C,
                       (long long)OC, gf[0], gf[1], gf[2], gf[1] / gf[0], gf[2] / gf[0]);
                fflush(stdout);
                if (n_json < 64)
                    snprintf(json[n_json++], sizeof json[0],
                             "{\"bench\": \"gemm\", \"product\": \"%s\", \"N\": %lld, \"C\": %lld, \"OC\": %lld, "
                             "\"gflops_f32\": %.2f, \"%s\": %.2f, \"%s\": %.2f, ",
                             kind_names[k], (long long)N, (long long)C, (long long)OC, gf[0],
                             bf16 ? "gflops_bf16_compute" : "gflops_bf16", gf[1],
                             bf16 ? "gflops_bf16_emulated" : "gflops_f16", gf[2]);
            }
    for (int i = 0; i < n_json; i++) {
        fputs(json[i], stdout);
        bench_machine_json(stdout);
        printf("}\n");
    }
    free(X); free(out); free(W); free(Wb); free(Wh);
    return 0;
}
