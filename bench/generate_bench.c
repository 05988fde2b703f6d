/*
 * generate_bench.c — times cpeft's greedy generation with the KV cache (cp_model_generate) on
 * random prompts and prints one JSON line with new tokens/s and peak RSS. bench/run.sh runs it
 * beside bench/pytorch_generate.py (transformers' generate()) on the same model.
 *
 *   build/bench/generate_bench --model DIR [--batch 1] [--prompt 32] [--new 128] [--warmup 1] [--iters 3]
 *                              [--num-beams 1] [--exact-quant 1]
 *
 * --model FILE.gguf loads the GGUF file directly; quantized weights decode with 8-bit activations
 * (cp_model_set_quant_act8) unless --exact-quant 1.
 *
 * An encoder-decoder (t5) takes the prompt as its encoder input and generates from the decoder start
 * token (cp_model_generate chooses); --num-beams N > 1 is beam search (new tokens counted for the best
 * sequence of each prompt, as transformers' generate() returns it).
 *
 * No eos stop, so every row generates exactly --new tokens (the PyTorch side clears eos too).
 * tokens_per_s counts new tokens (batch × new) over the whole call, prefill included.
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
    long B = 1, T = 32, N = 128, warmup = 1, iters = 3, beams = 1, exact = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) B = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt")) T = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--new")) N = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--num-beams")) beams = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--exact-quant")) exact = atol(argv[i + 1]);
        else { fprintf(stderr, "generate_bench: unknown option %s\n", argv[i]); return 2; }
    }
    if (!dir || B <= 0 || T <= 0 || N <= 0 || iters <= 0) {
        fprintf(stderr, "usage: generate_bench --model DIR [--batch B] [--prompt T] [--new N] [--warmup N] [--iters N]\n");
        return 2;
    }
    cp_model *m;
    const size_t dl = strlen(dir);
    const int gguf = dl > 5 && !strcmp(dir + dl - 5, ".gguf");
    if ((gguf ? cp_model_load_gguf(&m, dir, CP_LOAD_WEIGHTS, NULL) : cp_model_load(&m, dir, CP_LOAD_WEIGHTS)) != CP_OK) {
        fprintf(stderr, "generate_bench: %s\n", cp_last_error());
        return 1;
    }
    cp_model_set_quant_act8(m, !exact);
    const int64_t V = cp_model_vocab_size(m);
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    const int32_t **prompts = malloc((size_t)B * sizeof *prompts);
    int64_t *lens = malloc((size_t)B * sizeof *lens);
    srand(1234);
    for (long i = 0; i < B * T; i++) ids[i] = (int32_t)(rand() % V);
    for (long b = 0; b < B; b++) { prompts[b] = ids + b * T; lens[b] = T; }
    cp_generate_options o;
    if (cp_generate_options_init(m, &o) != CP_OK) { fprintf(stderr, "generate_bench: %s\n", cp_last_error()); return 1; }
    o.max_new_tokens = N;
    o.n_eos = 0;
    o.repetition_penalty = 1.0;
    o.num_beams = beams;
    double *times = malloc((size_t)iters * sizeof *times);
    long produced = 0;
    for (long i = 0; i < warmup + iters; i++) {
        cp_generation g;
        double t0 = now();
        if (cp_model_generate(m, prompts, lens, B, &o, &g) != CP_OK) {
            fprintf(stderr, "generate_bench: %s\n", cp_last_error());
            return 1;
        }
        double dt = now() - t0;
        if (i >= warmup) times[i - warmup] = dt;
        produced = 0;
        for (long b = 0; b < B; b++) produced += (long)g.n_tokens[b];
        cp_generation_free(&g);
    }
    for (long i = 1; i < iters; i++)
        for (long j = i; j > 0 && times[j] < times[j - 1]; j--) { double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t; }
    double per_run = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"cpeft\", \"tokens_per_s\": %.1f, \"seconds_per_run\": %.4f, \"new_tokens\": %ld, "
           "\"peak_rss_mib\": %.1f, \"batch\": %ld, \"prompt\": %ld, \"new\": %ld, \"num_beams\": %ld, ",
           (double)produced / per_run, per_run, produced, (double)ru.ru_maxrss / 1024.0, B, T, N, beams);
    bench_machine_json(stdout);
    printf("}\n");
    free(times);
    free(ids);
    free(prompts);
    free(lens);
    cp_model_free(m);
    return 0;
}
