/*
 * qdot_bench.c — the matrix products of one decoding step of a SmolLM2-135M-shaped model (30 layers of
 * q, k, v, o, gate, up, down, and a tied 49152 × 576 LM head; batch 1) with every weight format, in
 * both modes of a quantized weight: 8-bit activations (cp_weight.act8, kernels/quant_dot.h) and the
 * exact f32-activation kernels. Weights are random (quantized with ggml's quantizers where cpeft has
 * one, else random blocks), each layer its own buffers, so the step reads every byte from memory as a
 * real model does (hidden 576; 512 for the K-quants, whose rows must be whole 256-blocks). Prints one JSON line per format and mode: steps/s (the products only: an upper
 * bound of a model's tokens/s) and the weight bytes read per second.
 *
 *   build/bench/qdot_bench [--steps 20] [--layers 30] [--types F32,BF16,F16,Q8_0,Q4_0,Q4_1,Q5_0,Q4_K,Q6_K]
 */
#include "io/ggml_quant.h"
#include "kernels/gemm.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* A (rows, cols) weight of dtype dt with random values. */
static void *make_weight(cp_dtype dt, int64_t rows, int64_t cols) {
    const int64_t bytes = cp_dtype_nbytes(dt, rows * cols);
    uint8_t *w = malloc((size_t)bytes);
    float *row = malloc((size_t)cols * sizeof *row);
    const int gt = cp_ggml_type_of(dt);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) row[c] = frand() * 0.05f;
        uint8_t *dst = w + r * (bytes / rows);
        if (dt == CP_F32) memcpy(dst, row, (size_t)cols * 4);
        else if (dt == CP_F16 || dt == CP_BF16) cp_convert_from_f32(dst, dt, row, (size_t)cols);
        else if (cp_ggml_quantize_row(gt, row, dst, cols) != CP_OK) { /* no quantizer: random blocks, small scales */
            for (int64_t i = 0; i < bytes / rows; i++) dst[i] = (uint8_t)(rng >> 24), frand();
            const int bb = cp_dtype_block_bytes(dt);
            const uint16_t h = cp_f32_to_f16(0.001f);
            for (int64_t b = 0; b < bytes / rows / bb; b++) {
                uint8_t *blk = dst + b * bb;
                if (dt == CP_Q6_K) memcpy(blk + 208, &h, 2);
                else memcpy(blk, &h, 2), (dt != CP_Q5_0 ? memcpy(blk + 2, &h, 2) : (void)0);
            }
        }
    }
    free(row);
    return w;
}

int main(int argc, char **argv) {
    long steps = 20, layers = 30;
    const char *types = "F32,BF16,F16,Q8_0,Q4_0,Q4_1,Q5_0,Q4_K,Q6_K";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps")) steps = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) layers = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--types")) types = argv[i + 1];
        else { fprintf(stderr, "qdot_bench: unknown option %s\n", argv[i]); return 2; }
    }
    float x[1536], y[49152];
    for (int i = 0; i < 1536; i++) x[i] = frand();
    char list[256];
    snprintf(list, sizeof list, "%s", types);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
        cp_dtype dt = (cp_dtype)-1;
        for (int d = 0; d < CP_DTYPE_QUANT_END; d++)
            if (!strcmp(cp_dtype_name((cp_dtype)d), name)) dt = (cp_dtype)d;
        if ((int)dt < 0 || !cp_gemm_supports(dt)) { fprintf(stderr, "qdot_bench: %s: no such weight format\n", name); return 2; }
        /* K-quants need rows of whole 256-blocks: hidden 512 for them (576 has none, as llama-quantize says) */
        const int64_t C = cp_dtype_block_elems(dt) == 256 ? 512 : 576, I = 1536, KV = 192, V = 49152;
        const int64_t shapes[7][2] = {{C, C}, {C, KV}, {C, KV}, {C, C}, {C, I}, {C, I}, {I, C}}; /* in, out */
        const int64_t n_w = layers * 7 + 1;
        cp_weight *w = malloc((size_t)n_w * sizeof *w);
        double bytes = 0;
        for (long l = 0; l < layers; l++)
            for (int k = 0; k < 7; k++) {
                w[l * 7 + k] = cp_weight_nt(make_weight(dt, shapes[k][1], shapes[k][0]), dt, shapes[k][0], shapes[k][1]);
                bytes += (double)cp_dtype_nbytes(dt, shapes[k][0] * shapes[k][1]);
            }
        w[n_w - 1] = cp_weight_nt(make_weight(dt, V, C), dt, C, V);
        bytes += (double)cp_dtype_nbytes(dt, V * C);
        for (int act8 = 0; act8 <= cp_dtype_is_quantized(dt); act8++) {
            for (int64_t i = 0; i < n_w; i++) w[i].act8 = act8;
            double best = 1e30;
            for (long s = 0; s < steps + 2; s++) {
                const double t0 = now();
                for (int64_t i = 0; i < n_w; i++) cp_gemm_forward(y, x, &w[i], 1, 0);
                const double dt_s = now() - t0;
                if (s >= 2 && dt_s < best) best = dt_s; /* two warm-up steps */
            }
            printf("{\"bench\": \"qdot\", \"weights\": \"%s\", \"mode\": \"%s\", \"threads\": %d, \"hidden\": %d, \"steps_per_s\": %.1f, "
                   "\"weight_mib\": %.1f, \"gb_per_s\": %.2f}\n", name, act8 ? "act8" : "exact", omp_get_max_threads(), (int)C,
                   1.0 / best, bytes / 1048576.0, bytes / best / 1e9);
            fflush(stdout);
        }
        for (int64_t i = 0; i < n_w; i++) free((void *)w[i].data);
        free(w);
    }
    return 0;
}
