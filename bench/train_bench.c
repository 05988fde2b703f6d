/*
 * train_bench.c — times cpeft's training step (forward + backward + AdamW) of a LoRA, prompt-tuning or
 * prefix-tuning adapter on random token ids and prints one JSON line with tokens/s and peak RSS;
 * bench/run.sh runs it beside bench/pytorch_train.py on the same model with the same PEFT config.
 *
 *   build/bench/train_bench --model DIR --targets q_proj,k_proj,v_proj [--r 8] [--alpha 16]
 *                           [--batch 4] [--seq 256] [--steps 5] [--warmup 1] [--gradient-checkpointing]
 *                           [--task CAUSAL_LM|SEQ_CLS|TOKEN_CLS|SEQ_2_SEQ_LM] [--target-seq 64]
 *                           [--peft-type LORA|PROMPT_TUNING|P_TUNING|PREFIX_TUNING] [--num-virtual-tokens 20]
 *                           [--bf16] [--quantize q8_0|q4_k] [--quantize-embeddings yes|no]
 * SEQ_CLS / TOKEN_CLS load the model's classification head (num_labels from its config.json), draw
 * random class labels and put the head in modules_to_save as PEFT's task models do. The prompt-learning
 * types are made as `cpeft train --peft-type` makes them (cli/peft_type_args.c): an adapter_config.json
 * object read by the method's own parser (RANDOM init; --targets, --r, --alpha unused); tokens/s counts
 * the batch's tokens, not the virtual ones. SEQ_2_SEQ_LM (t5) trains on random encoder ids (batch, seq)
 * and random labels (batch, target_seq) that the model shifts into its decoder inputs; tokens/s then
 * counts batch × (seq + target_seq), as bench/pytorch_train.py does.
 */
#include "cpeft.h"
#include "core/profile.h"
#include "machine.h"
#include "io/json.h"
#include "models/bf16.h"
#include "models/model.h"
#include "peft/lora.h"
#include "peft/lora_config.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "train/optim.h"
#include "train/step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <omp.h>
#include "kernels/blas_core.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPEFT_PROFILE=1: the timed steps' phases (core/profile.h) on stderr as a table, and as a JSON object
 * "profile" {phase: [seconds per step, core utilisation, flops per step], ...} in the output line. */
static void print_profile(long steps, const double *times) {
    double wall[CP_PROF_N + 1], cpu[CP_PROF_N + 1], flops[CP_PROF_N + 1], total = 0, busy = 0;
    cp_prof_totals(wall, cpu, flops);
    for (long i = 0; i < steps; i++) total += times[i];
    const int threads = omp_get_max_threads();
    fprintf(stderr, "profile: %ld timed steps, %.3f s/step, %d threads (utilisation: CPU time / (wall x threads); spinning at a barrier counts as busy)\n",
            steps, total / (double)steps, threads);
    fprintf(stderr, "  %-20s %10s %7s %12s %9s\n", "phase", "s/step", "share", "utilisation", "GFLOP/s");
    for (int i = 0; i <= CP_PROF_N; i++) {
        busy += cpu[i];
        if (wall[i] <= 0) continue;
        fprintf(stderr, "  %-20s %10.4f %6.1f%% %11.0f%% %9.1f\n", cp_prof_name(i), wall[i] / (double)steps, 100.0 * wall[i] / total,
                100.0 * cpu[i] / (wall[i] * threads), flops[i] / wall[i] / 1e9);
    }
    fprintf(stderr, "  %-20s %10.4f %6.1f%% %11.0f%%\n", "step", total / (double)steps, 100.0, 100.0 * busy / (total * threads));
    printf("\"profile\": {");
    for (int i = 0; i <= CP_PROF_N; i++)
        printf("\"%s\": [%.5f, %.3f, %.4g], ", cp_prof_name(i), wall[i] / (double)steps, wall[i] > 0 ? cpu[i] / (wall[i] * threads) : 0.0,
               flops[i] / (double)steps);
    printf("\"threads\": %d}, ", threads);
}

/* A prompt-learning adapter as `cpeft train --peft-type TYPE --num-virtual-tokens N` adds it. */
static cp_status add_prompt_adapter(cp_model *m, const char *peft_type, long n_virtual, cp_rng *rng) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return cp_error("out of memory");
    cJSON_AddStringToObject(o, "peft_type", peft_type);
    cJSON_AddStringToObject(o, "task_type", cp_model_task_type(m));
    cJSON_AddNumberToObject(o, "num_virtual_tokens", (double)n_virtual);
    cp_peft_config *cfg = NULL;
    cp_status st = cp_peft_config_from_json(o, "--peft-type flags", &cfg);
    cJSON_Delete(o);
    if (st == CP_OK) st = cp_peft_add(m, "default", cfg, rng, 1, 1);
    cp_peft_config_free(cfg);
    return st;
}

int main(int argc, char **argv) {
    cp_blas_use_best_core(argv);
    const char *dir = NULL, *targets = "q_proj,k_proj,v_proj", *task = "CAUSAL_LM", *peft_type = "LORA";
    long B = 4, T = 256, steps = 5, warmup = 1, r = 8, n_virtual = 20, Td = 64;
    double alpha = 16;
    int recompute = 0, bf16 = 0, quant_flag = 0, keep_emb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gradient-checkpointing")) { recompute = 1; continue; }
        if (!strcmp(argv[i], "--bf16")) { bf16 = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "train_bench: %s needs a value\n", argv[i]); return 2; }
        if (!strcmp(argv[i], "--model")) dir = argv[++i];
        else if (!strcmp(argv[i], "--targets")) targets = argv[++i];
        else if (!strcmp(argv[i], "--r")) r = atol(argv[++i]);
        else if (!strcmp(argv[i], "--alpha")) alpha = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) B = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seq")) T = atol(argv[++i]);
        else if (!strcmp(argv[i], "--steps")) steps = atol(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atol(argv[++i]);
        else if (!strcmp(argv[i], "--task")) task = argv[++i];
        else if (!strcmp(argv[i], "--peft-type")) peft_type = argv[++i];
        else if (!strcmp(argv[i], "--num-virtual-tokens")) n_virtual = atol(argv[++i]);
        else if (!strcmp(argv[i], "--target-seq")) Td = atol(argv[++i]);
        else if (!strcmp(argv[i], "--quantize-embeddings")) {
            if (strcmp(argv[i + 1], "yes") && strcmp(argv[i + 1], "no")) { fprintf(stderr, "train_bench: --quantize-embeddings: yes or no\n"); return 2; }
            keep_emb = !strcmp(argv[++i], "no");
        }
        else if (!strcmp(argv[i], "--quantize")) {
            if (cp_quantize_flag(argv[++i], &quant_flag) != CP_OK) { fprintf(stderr, "train_bench: %s\n", cp_last_error()); return 2; }
        }
        else { fprintf(stderr, "train_bench: unknown option %s\n", argv[i]); return 2; }
    }
    if (!dir || steps <= 0) { fprintf(stderr, "usage: train_bench --model DIR [--targets a,b] ...\n"); return 2; }
    cp_model *m;
    if (cp_model_load_task(&m, dir, CP_LOAD_WEIGHTS | quant_flag | (keep_emb ? CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS : 0), task) != CP_OK) { fprintf(stderr, "train_bench: %s\n", cp_last_error()); return 1; }
    cp_lora_config cfg;
    cp_lora_config_init(&cfg);
    cfg.r = r;
    cfg.lora_alpha = alpha;
    cfg.task_type = strdup(task);
    const int s2s = !strcmp(task, "SEQ_2_SEQ_LM"), cls = strcmp(task, "CAUSAL_LM") && !s2s;
    if (cls) { /* PeftModelFor{Sequence,Token}Classification's heads */
        cfg.modules_to_save = calloc(2, sizeof *cfg.modules_to_save);
        cfg.modules_to_save[cfg.n_modules_to_save++] = strdup("classifier");
        cfg.modules_to_save[cfg.n_modules_to_save++] = strdup("score");
    }
    cfg.target_kind = CP_TARGETS_LIST;
    char *list = strdup(targets);
    char *save = NULL;
    cfg.target_modules = calloc(16, sizeof *cfg.target_modules);
    for (char *t = strtok_r(list, ",", &save); t && cfg.n_target_modules < 16; t = strtok_r(NULL, ",", &save))
        cfg.target_modules[cfg.n_target_modules++] = strdup(t);
    free(list);
    cp_rng rng;
    cp_rng_seed(&rng, 1);
    cp_set_quiet(1);
    cp_param **params;
    int n;
    cp_adamw opt;
    const int lora = !strcmp(peft_type, "LORA");
    if ((lora ? cp_peft_add_adapter(m, "default", &cfg, &rng, 1, 1) : add_prompt_adapter(m, peft_type, n_virtual, &rng)) != CP_OK ||
        cp_peft_trainable_params(m, &params, &n) != CP_OK ||
        cp_adamw_init(&opt, params, n, (cp_adamw_config){1e-4, 0.9, 0.999, 1e-8, 0.0}) != CP_OK) {
        fprintf(stderr, "train_bench: %s\n", cp_last_error());
        return 1;
    }
    int64_t narrowed = 0;
    if (cp_peft_quantize_embeddings(m, params, n, NULL) != CP_OK) { fprintf(stderr, "train_bench: %s\n", cp_last_error()); return 1; }
    if (bf16 && cp_model_use_bf16(m, params, n, &narrowed) != CP_OK) { fprintf(stderr, "train_bench: %s\n", cp_last_error()); return 1; }
    int64_t V = cp_model_vocab_size(m), trainable = 0;
    for (int i = 0; i < n; i++) trainable += params[i]->numel;
    int64_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    srand(1234);
    for (long i = 0; i < B * T; i++) ids[i] = rand() % V;
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    int64_t *labels = NULL;
    if (s2s) { /* random target ids (B,Td) */
        labels = malloc((size_t)(B * Td) * sizeof *labels);
        for (int64_t i = 0; i < B * Td; i++) labels[i] = 2 + rand() % (V - 2);
        b.labels = labels;
        b.Td = Td;
    } else if (cls) { /* random class ids: (B) for SEQ_CLS, (B,T) for TOKEN_CLS */
        const int64_t K = cp_model_num_labels(m), n_labels = strcmp(task, "SEQ_CLS") ? B * T : B;
        labels = malloc((size_t)n_labels * sizeof *labels);
        for (int64_t i = 0; i < n_labels; i++) labels[i] = rand() % K;
        b.labels = labels;
    }
    double *times = malloc((size_t)steps * sizeof *times), loss = 0;
    if (cp_prof_on() && warmup == 0) cp_prof_reset();
    for (long s = 0; s < warmup + steps; s++) {
        cp_step_result res;
        double t0 = now();
        if (cp_train_step(m, &opt, &b, 1, 1e-4, 0.0, recompute, (uint64_t)s, &res) != CP_OK) {
            fprintf(stderr, "train_bench: %s\n", cp_last_error());
            return 1;
        }
        if (s >= warmup) times[s - warmup] = now() - t0;
        if (s + 1 == warmup) cp_prof_reset(); /* the profile covers the timed steps */
        loss = res.loss;
    }
    for (long i = 1; i < steps; i++)
        for (long j = i; j > 0 && times[j] < times[j - 1]; j--) { double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t; }
    double per = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"cpeft\", \"tokens_per_s\": %.1f, \"seconds_per_step\": %.4f, \"peak_rss_mib\": %.1f, \"batch\": %ld, "
           "\"seq\": %ld, \"steps\": %ld, \"trainable_params\": %lld, \"gradient_checkpointing\": %s, \"final_loss\": %.4f, "
           "\"task\": \"%s\", \"peft_type\": \"%s\", \"num_virtual_tokens\": %ld, \"target_seq\": %ld, ",
           (double)(B * (T + (s2s ? Td : 0))) / per, per, (double)ru.ru_maxrss / 1024.0, B, T, steps, (long long)trainable, recompute ? "true" : "false", loss,
           task, peft_type, lora ? 0 : n_virtual, s2s ? Td : 0);
    if (cp_prof_on()) print_profile(steps, times);
    bench_machine_json(stdout);
    printf("}\n");
    cp_adamw_free(&opt);
    free(params);
    free(ids);
    free(labels);
    free(times);
    cp_lora_config_free(&cfg);
    cp_model_free(m);
    return 0;
}
