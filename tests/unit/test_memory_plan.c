/*
 * test_memory_plan.c — the memory plan of `cpeft train` is true: the total it prints agrees within
 * 10% with the peak resident memory of the process, as the parent sees it (wait4's ru_maxrss) and as
 * the run reports it ("peak memory: ..."); the activation arena gives its memory back, so that the
 * blocks of a first, multi-block step do not stay resident beside the block that replaces them; and
 * a training step keeps, per layer, exactly the activations its backward pass reads (every other
 * buffer — LoRA dropout, attention scores, projection outputs — goes back as its operation ends).
 *
 * The model is written here, not kept as a fixture: a Llama (as SmolLM2) of 6 layers, hidden 256,
 * 21 MiB of f32 weights from a fixed seed, with the 3000-token Llama tokenizer of the fixtures, so
 * that weights and activations (35 MiB at batch 2 x 128 with LoRA on every linear layer) are most
 * of the process's 65 MiB, while a training step stays well under a second.
 */
#include "test.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/memstat.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/lora_config.h"
#include "peft/lora.h"
#include "peft/peft_model.h"
#include "train/optim.h"
#include "train/step.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

#define MiB (1024.0 * 1024.0)

/* ---- the arena gives memory back ---------------------------------------------------------------- */

/* Writes every byte, as a kernel writing its output does (pages become resident). */
static float *touch(float *p, size_t n) {
    if (p) memset(p, 1, n * sizeof *p);
    return p;
}

/* A training step's pattern: a forward pass that keeps each layer's activations, then a backward
 * pass whose per-layer scratch is released after each layer. */
static int step_pattern(cp_arena *ar) {
    const size_t layer = (size_t)3 << 20, scratch = (size_t)5 << 20; /* floats: 12 and 20 MiB */
    if (!touch(cp_arena_floats(ar, (size_t)1 << 18, "input"), (size_t)1 << 18)) return 0;
    for (int l = 0; l < 6; l++)
        if (!touch(cp_arena_floats(ar, layer, "layer"), layer)) return 0;
    for (int l = 5; l >= 0; l--) {
        cp_arena_mark mark = cp_arena_get_mark(ar);
        if (!touch(cp_arena_floats(ar, scratch, "scratch"), scratch)) return 0;
        if (!touch(cp_arena_floats(ar, (size_t)1 << 16, "small"), (size_t)1 << 16)) return 0;
        cp_arena_release(ar, mark);
    }
    return 1;
}

TEST(arena_memory_goes_back) {
    cp_mem_usage u0, u1, u2, u3;
    if (!cp_mem_now(&u0)) { printf("  (no /proc/self/statm on this system: skipped)\n"); return; }
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK(step_pattern(&ar), "first step: %s", cp_last_error());
    size_t high = cp_arena_high_water(&ar);
    cp_mem_now(&u1);
    cp_arena_reset(&ar); /* several blocks: merged into one of the peak size */
    CHECK(ar.blocks && !ar.blocks->next && ar.blocks->size >= high, "the reset did not merge the blocks");
    CHECK(step_pattern(&ar), "second step: %s", cp_last_error());
    CHECK(cp_arena_high_water(&ar) == high, "the same step reached %zu, then %zu bytes", high, cp_arena_high_water(&ar));
    cp_mem_now(&u2);
    cp_arena_free(&ar);
    cp_mem_now(&u3);
    double first = ((double)u1.anon - (double)u0.anon) / MiB, second = ((double)u2.anon - (double)u0.anon) / MiB,
           after = ((double)u3.anon - (double)u0.anon) / MiB, h = (double)high / MiB;
    printf("  arena peak %.1f MiB; resident growth: first step %.1f MiB, second step %.1f MiB, after free %.1f MiB\n", h, first,
           second, after);
    if (UNDER_ASAN) { printf("  (ASan keeps freed memory in quarantine: growth not compared)\n"); return; }
    /* the second step runs in the merged block alone: the first step's blocks are gone */
    CHECK(second <= 1.05 * h + 1, "after the second step %.1f MiB is resident for an arena peak of %.1f MiB", second, h);
    CHECK(first <= 1.05 * h + 1, "after the first step %.1f MiB is resident for an arena peak of %.1f MiB", first, h);
    CHECK(after < 2, "%.1f MiB still resident after cp_arena_free", after);
    /* a reserved block is not resident until written */
    CHECK_OK(cp_arena_reserve(&ar, (size_t)64 << 20));
    cp_mem_now(&u1);
    CHECK((double)u1.anon - (double)u3.anon < 2 * MiB, "a reserved, unwritten block made %.1f MiB resident",
          ((double)u1.anon - (double)u3.anon) / MiB);
    CHECK(cp_arena_floats(&ar, (size_t)16 << 20, "fits") && ar.blocks && !ar.blocks->next, "64 MiB did not fit the reserved block");
    cp_arena_free(&ar);
}

/* ---- the model ---------------------------------------------------------------------------------- */

#define C 256
#define I 768
#define L 6
#define V 3000
#define KV 128 /* 4 key/value heads of 32 */

static const char *CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 256, \"intermediate_size\": 768,\n"
    " \"num_hidden_layers\": 6, \"num_attention_heads\": 8, \"num_key_value_heads\": 4, \"head_dim\": 32,\n"
    " \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"hidden_act\": \"silu\",\n"
    " \"vocab_size\": 3000, \"tie_word_embeddings\": true, \"bos_token_id\": 1, \"eos_token_id\": 2}\n";

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    int ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* The model directory: config.json, model.safetensors (normal(0, 0.02) weights, unit norms),
 * tokenizer.json. Returns 1 on success. */
static int make_model(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!write_text(path, CONFIG)) return 0;
    snprintf(path, sizeof path, "cp tests/fixtures/tokenizers/llama/tokenizer.json %s/tokenizer.json", dir);
    if (system(path) != 0) return 0;
    enum { PER_LAYER = 9, N_T = 2 + PER_LAYER * L };
    static char names[N_T][96];
    cp_st_write_tensor t[N_T];
    memset(t, 0, sizeof t);
    int n = 0;
    struct { const char *name; int64_t rows, cols; } per_layer[PER_LAYER] = {
        {"self_attn.q_proj.weight", C, C},     {"self_attn.k_proj.weight", KV, C}, {"self_attn.v_proj.weight", KV, C},
        {"self_attn.o_proj.weight", C, C},     {"mlp.gate_proj.weight", I, C},     {"mlp.up_proj.weight", I, C},
        {"mlp.down_proj.weight", C, I},        {"input_layernorm.weight", C, 0},   {"post_attention_layernorm.weight", C, 0}};
    snprintf(names[n], sizeof names[n], "model.embed_tokens.weight");
    t[n] = (cp_st_write_tensor){.name = names[n], .dtype = CP_F32, .ndim = 2, .shape = {V, C}};
    n++;
    snprintf(names[n], sizeof names[n], "model.norm.weight");
    t[n] = (cp_st_write_tensor){.name = names[n], .dtype = CP_F32, .ndim = 1, .shape = {C}};
    n++;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < PER_LAYER; k++) {
            snprintf(names[n], sizeof names[n], "model.layers.%d.%s", l, per_layer[k].name);
            t[n] = (cp_st_write_tensor){.name = names[n], .dtype = CP_F32, .ndim = per_layer[k].cols ? 2 : 1,
                                        .shape = {per_layer[k].rows, per_layer[k].cols}};
            n++;
        }
    cp_rng rng;
    cp_rng_seed(&rng, 2024);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        int64_t numel = t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
        float *w = cp_malloc((size_t)numel * sizeof *w, "test weights");
        if (!w) { ok = 0; break; }
        for (int64_t j = 0; j < numel; j++) w[j] = t[i].ndim == 1 ? 1.0f : 0.02f * cp_rng_normal(&rng);
        t[i].data = w;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (ok) ok = cp_st_write(path, t, n, NULL, NULL, 0) == CP_OK;
    for (int i = 0; i < n; i++) cp_free((void *)t[i].data);
    return ok;
}

static char work_dir[] = "/tmp/cpeft-memplan-XXXXXX", model_dir[600];

/* ---- what a training step keeps per layer ------------------------------------------------------- */

/* The arena's peak over one training forward + backward of the model's first `layers` blocks. */
static size_t step_peak(cp_model *m, cp_param **params, int n, const cp_batch *b, int recompute, int64_t layers) {
    const int64_t all = m->config.num_layers;
    m->config.num_layers = layers;
    cp_arena_free(&m->arena);
    cp_peft_set_training(m, 1);
    cp_peft_seed_dropout(m, 7);
    double loss;
    int64_t targets;
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, recompute, &loss, &targets));
    cp_peft_set_training(m, 0);
    m->config.num_layers = all;
    cp_zero_grads(params, n);
    return cp_arena_high_water(&m->arena);
}

static size_t floats64(int64_t n) { return ((size_t)n * sizeof(float) + 63) & ~(size_t)63; }

/* The test model with LoRA (r 8, dropout 0.1) on every linear layer; NULL on failure. */
static cp_model *load_with_lora(cp_param ***params, int *n) {
    cp_model *m = NULL;
    *params = NULL;
    *n = 0;
    CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    if (!m) return NULL;
    cp_lora_config cfg;
    cp_lora_config_init(&cfg);
    cfg.task_type = cp_strdup("CAUSAL_LM");
    cfg.r = 8;
    cfg.lora_alpha = 16;
    cfg.lora_dropout = 0.1;
    cfg.target_kind = CP_TARGETS_ALL_LINEAR;
    cp_rng rng;
    cp_rng_seed(&rng, 1);
    cp_status st = cp_peft_add_adapter(m, "default", &cfg, &rng, 1, 1);
    cp_lora_config_free(&cfg);
    if (st == CP_OK) st = cp_peft_trainable_params(m, params, n);
    CHECK(st == CP_OK, "LoRA on %s: %s", model_dir, cp_last_error());
    if (st != CP_OK) { cp_model_free(m); return NULL; }
    return m;
}

#define BATCH 2
#define SEQ 64
static int64_t batch_ids[BATCH * SEQ];

static cp_batch test_batch(void) {
    for (int64_t i = 0; i < BATCH * SEQ; i++) batch_ids[i] = 3 + (i * 37) % (V - 3);
    cp_batch b = {.B = BATCH, .T = SEQ, .input_ids = batch_ids, .labels = batch_ids};
    return b;
}

TEST(training_keeps_only_what_backward_reads) {
    cp_param **params;
    int n;
    cp_model *m = load_with_lora(&params, &n);
    if (!m) return;
    const int64_t B = BATCH, T = SEQ, N = B * T, NH = 8, hd = 32;
    cp_batch b = test_batch();
    /* a Llama block's backward reads its input, both norms' outputs and statistics, q (roped), k
     * (roped), v, the attention row statistics (B,NH,T,2) and output (the fused attention keeps no
     * (T × T) probabilities), the attention residual, gate, up and
     * silu(gate)·up; nothing else of the block may stay in the arena until the backward pass */
    const size_t kept = floats64(N * C) * 4 + floats64(N) * 2 + floats64(N * NH * hd) * 2 + floats64(N * KV) * 2 +
                        floats64(B * NH * T * 2) + floats64(N * I) * 3;
    size_t two = step_peak(m, params, n, &b, 0, 2), three = step_peak(m, params, n, &b, 0, 3);
    size_t two_gc = step_peak(m, params, n, &b, 1, 2), three_gc = step_peak(m, params, n, &b, 1, 3);
    printf("  per layer: %zu bytes kept (the backward's inputs: %zu); with recompute %zu (the block input: %zu)\n", three - two,
           kept, three_gc - two_gc, floats64(N * C));
    /* beyond those, only the block's record of pointers (a few dozen bytes) — less than any buffer */
    const size_t record = 256;
    CHECK(three - two >= kept && three - two <= kept + record, "a layer keeps %zu bytes, its backward reads %zu", three - two, kept);
    CHECK(three_gc - two_gc >= floats64(N * C) && three_gc - two_gc <= floats64(N * C) + record,
          "with recompute a layer keeps %zu bytes, its input is %zu", three_gc - two_gc, floats64(N * C));
    cp_free(params);
    cp_model_free(m);
}

/* ---- the plan of a training run ----------------------------------------------------------------- */

/* The plan's activation figure is the peak of a real training step of that shape, which then runs
 * in the one block the plan reserved; the estimate on 2 and 3 layers equals the measurement. */
TEST(plan_measures_a_training_step) {
    cp_param **params;
    int n;
    cp_model *m = load_with_lora(&params, &n);
    if (!m) return;
    cp_adamw opt;
    cp_adamw_config oc = {1e-3, 0.9, 0.999, 1e-8, 0.0};
    CHECK_OK(cp_adamw_init(&opt, params, n, oc));
    cp_batch b = test_batch();
    m->config.num_layers = 4; /* the first 4 blocks: the estimate still extrapolates, in less time */
    for (int recompute = 0; recompute < 2; recompute++) {
        size_t estimate = 0, act = 0; /* the estimate is the plan's figure for the run without recompute */
        if (!recompute) CHECK_OK(cp_step_estimate_activations(m, &opt, BATCH, SEQ, recompute, &estimate));
        CHECK_OK(cp_step_measure_activations(m, &opt, BATCH, SEQ, recompute, &act));
        CHECK(m->arena.blocks && !m->arena.blocks->next && m->arena.blocks->size >= act, "the plan left no single block of %zu bytes",
              act);
        cp_step_result res;
        CHECK_OK(cp_train_step(m, &opt, &b, 1, 1e-3, 1.0, recompute, 99, &res));
        size_t step = cp_arena_high_water(&m->arena);
        printf("  %s: plan %zu bytes, training step %zu (loss %.4f)", recompute ? "recompute" : "no recompute", act, step, res.loss);
        if (!recompute) printf(", estimated on 2 and 3 layers %zu", estimate);
        printf("\n");
        CHECK(step == act, "the training step peaked at %zu bytes, the plan measured %zu", step, act);
        CHECK(recompute || estimate == act, "estimated %zu bytes, measured %zu", estimate, act);
        CHECK(m->arena.blocks && !m->arena.blocks->next, "the training step needed more than the reserved block");
    }
    m->config.num_layers = L;
    cp_adamw_free(&opt);
    cp_free(params);
    cp_model_free(m);
}

/* Runs argv with stdout and stderr into `log`; returns the exit status and the child's peak
 * resident memory (bytes) as wait4 reports it. */
static int run_measured(char *const argv[], const char *log, double *maxrss) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return -1;
    *maxrss = (double)ru.ru_maxrss * 1024; /* KiB on Linux */
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* "1.23 MiB" at `s` → bytes; -1 if it does not parse. */
static double parse_bytes(const char *s) {
    double v;
    char unit[8];
    if (!s || sscanf(s, "%lf %7s", &v, unit) != 2) return -1;
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    for (int u = 0; u < 5; u++, v *= 1024)
        if (!strncmp(unit, units[u], strlen(units[u])) && (unit[strlen(units[u])] == '\0' || unit[strlen(units[u])] == ','))
            return v;
    return -1;
}

static double after(const char *text, const char *key) {
    const char *p = strstr(text, key);
    return p ? parse_bytes(p + strlen(key)) : -1;
}

/* Checks one run; returns its "program and data" figure (bytes; -1 if missing). */
static double check_plan(const char *model, const char *out_dir, int checkpointing, const char *quantize) {
    static char text[1 << 16];
    char log[700];
    snprintf(log, sizeof log, "%s.log", out_dir);
    char *argv[40];
    int k = 0;
    char bin_path[512];
    snprintf(bin_path, sizeof bin_path, "%s", bin());
    argv[k++] = bin_path;
    char *fixed[] = {"train", "--model", (char *)model, "--data", "../shared/data/alpaca-subset/alpaca_tiny.json", "--output-dir",
                     (char *)out_dir, "--target-modules", "all-linear", "--lora-r", "8", "--lora-dropout", "0.1",
                     "--per-device-train-batch-size", "2", "--max-seq-length", "128", "--max-steps", "1",
                     "--logging-steps", "1", "--save-steps", "0", "--progress", "lines"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) argv[k++] = fixed[i];
    if (checkpointing) argv[k++] = "--gradient-checkpointing";
    if (quantize) argv[k++] = "--quantize", argv[k++] = (char *)quantize, argv[k++] = "--bf16";
    argv[k] = NULL;
    double maxrss = 0;
    int rc = run_measured(argv, log, &maxrss);
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    text[n] = '\0';
    if (f) fclose(f);
    CHECK(rc == 0, "cpeft train exited %d:\n%s", rc, text);
    double plan = after(text, "\n  total "), act = after(text, "\n  activations "), rest = after(text, "\n  program and data "),
           peak = after(text, "peak memory: "), plan_again = after(text, "resident (plan ");
    CHECK(plan > 0 && act > 0 && rest >= 0 && peak > 0 && plan_again > 0, "the plan or the peak is missing:\n%s", text);
    if (!(plan > 0 && peak > 0)) return -1;
    printf("  %s: plan %.1f MiB (activations %.1f, program and data %.1f); peak %.1f MiB (wait4), %.1f MiB (reported): "
           "%+.1f%%\n",
           quantize ? quantize : checkpointing ? "--gradient-checkpointing" : "plain", plan / MiB, act / MiB, rest / MiB, maxrss / MiB, peak / MiB,
           100 * (maxrss - plan) / plan);
    CHECK(fabs(plan_again - plan) <= 0.01 * plan, "the run's closing line says plan %.1f MiB, the plan %.1f MiB", plan_again / MiB,
          plan / MiB);
    if (UNDER_ASAN) { printf("  (under ASan its shadow memory and quarantine are not in the plan: not compared)\n"); return rest; }
    CHECK(fabs(maxrss - plan) <= 0.10 * plan, "peak resident memory %.1f MiB vs plan %.1f MiB", maxrss / MiB, plan / MiB);
    CHECK(fabs(peak - maxrss) <= 0.01 * maxrss + 1 * MiB, "reported peak %.1f MiB vs wait4's %.1f MiB", peak / MiB, maxrss / MiB);
    /* the parts the plan counts must be most of it, or the comparison would prove little */
    /* (a Q4_K base holds a seventh of the f32 weights: code and libraries are a larger part of less) */
    CHECK(rest < (quantize ? 0.30 : 0.25) * plan, "program and data %.1f MiB of a plan of %.1f MiB", rest / MiB, plan / MiB);
    return rest;
}

TEST(plan_matches_peak_resident_memory) {
    char out1[700], out2[700];
    snprintf(out1, sizeof out1, "%s/out", work_dir);
    snprintf(out2, sizeof out2, "%s/out-gc", work_dir);
    double rest = check_plan(model_dir, out1, 0, NULL), rest_gc = check_plan(model_dir, out2, 1, NULL);
    /* what the program holds besides weights and activations does not depend on the activations
     * (were the arena's memory left behind after the dry run, it would show here); under ASan it
     * includes the quarantine of freed memory, which does */
    CHECK(UNDER_ASAN || fabs(rest - rest_gc) < 2 * MiB, "program and data: %.1f MiB, with --gradient-checkpointing %.1f MiB", rest / MiB,
          rest_gc / MiB);
}

/* --quantize q4_k --bf16: every weight, the tied embedding and head too, held in Q4_K (hidden 256:
 * whole blocks), counted as the bytes they hold */
TEST(plan_matches_peak_resident_memory_on_a_q4_k_base) {
    char out[700];
    snprintf(out, sizeof out, "%s/out-q4k", work_dir);
    check_plan(model_dir, out, 0, "q4_k");
}

int main(void) {
    RUN(arena_memory_goes_back);
    char cmd[1200];
    if (!mkdtemp(work_dir)) { printf("FAIL mkdtemp %s\n", work_dir); return 1; }
    snprintf(model_dir, sizeof model_dir, "%s/model", work_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", model_dir);
    if (system(cmd) != 0 || !make_model(model_dir)) { printf("FAIL writing the model in %s: %s\n", model_dir, cp_last_error()); return 1; }
    RUN(training_keeps_only_what_backward_reads);
    RUN(plan_measures_a_training_step);
    RUN(plan_matches_peak_resident_memory);
    RUN(plan_matches_peak_resident_memory_on_a_q4_k_base);
    snprintf(cmd, sizeof cmd, "rm -rf %s", work_dir);
    if (!getenv("CPEFT_KEEP_TEST_FILES") && system(cmd) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}

