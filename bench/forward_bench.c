/*
 * forward_bench.c — times cpeft's causal-LM forward pass (logits for every position, as PyTorch's
 * model(input_ids) returns them) on random token ids, and prints one JSON line with tokens/s and
 * peak RSS. bench/run.sh runs it beside bench/pytorch_forward.py on the same model.
 *
 *   build/bench/forward_bench --model DIR [--batch 4] [--seq 256] [--warmup 1] [--iters 5]
 */
#include "cpeft.h"
#include "machine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "kernels/blas_core.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    cp_blas_use_best_core(argv);
    const char *dir = NULL;
    long B = 4, T = 256, warmup = 1, iters = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) B = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq")) T = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atol(argv[i + 1]);
        else { fprintf(stderr, "forward_bench: unknown option %s\n", argv[i]); return 2; }
    }
    if (!dir || B <= 0 || T <= 0 || iters <= 0) {
        fprintf(stderr, "usage: forward_bench --model DIR [--batch B] [--seq T] [--warmup N] [--iters N]\n");
        return 2;
    }
    double t_load = now();
    cp_model *m;
    if (cp_model_load(&m, dir, CP_LOAD_WEIGHTS) != CP_OK) {
        fprintf(stderr, "forward_bench: %s\n", cp_last_error());
        return 1;
    }
    t_load = now() - t_load;
    int64_t V = cp_model_vocab_size(m);
    int64_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    float *logits = malloc((size_t)(B * T * V) * sizeof *logits);
    srand(1234);
    for (long i = 0; i < B * T; i++) ids[i] = rand() % V;
    cp_batch batch = {.B = B, .T = T, .input_ids = ids};
    cp_outputs out = {.logits = logits};
    for (long i = 0; i < warmup; i++)
        if (cp_model_forward(m, &batch, &out) != CP_OK) { fprintf(stderr, "forward_bench: %s\n", cp_last_error()); return 1; }
    double *times = malloc((size_t)iters * sizeof *times);
    for (long i = 0; i < iters; i++) {
        double t0 = now();
        cp_model_forward(m, &batch, &out);
        times[i] = now() - t0;
    }
    /* median, as the PyTorch side reports */
    for (long i = 1; i < iters; i++)
        for (long j = i; j > 0 && times[j] < times[j - 1]; j--) { double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t; }
    double per_iter = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
    free(times);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double checksum = 0;
    for (long i = 0; i < 1000 && i < B * T * V; i++) checksum += logits[i];
    printf("{\"impl\": \"cpeft\", \"tokens_per_s\": %.1f, \"seconds_per_iter\": %.4f, \"peak_rss_mib\": %.1f, "
           "\"load_s\": %.3f, \"batch\": %ld, \"seq\": %ld, \"checksum\": %.4f, ",
           (double)(B * T) / per_iter, per_iter, (double)ru.ru_maxrss / 1024.0, t_load, B, T, checksum);
    bench_machine_json(stdout);
    printf("}\n");
    free(ids);
    free(logits);
    cp_model_free(m);
    return 0;
}
