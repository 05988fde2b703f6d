/*
 * test_memory_plan.c — memory that cpeft holds is memory it needs: the activation arena gives its
 * memory back, so that the blocks of a first, multi-block step do not stay resident beside the block
 * that replaces them; and a training step keeps, per layer, exactly the activations its backward
 * pass reads (every other buffer — LoRA dropout, attention scores, projection outputs — goes back
 * as its operation ends).
 *
 * The model is written here, not kept as a fixture: a Llama (as SmolLM2) of 6 layers, hidden 256,
 * 21 MiB of f32 weights from a fixed seed, with the 3000-token Llama tokenizer of the fixtures.
 */
#include "test.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/memstat.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/lora_config.h"
#include "peft/peft_model.h"
#include "train/optim.h"

#include <stdlib.h>
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

/* Runs argv with stdout and stderr into `log`; returns the exit status and the child's peak
 * resident memory (bytes) as wait4 reports it. */
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

TEST(training_keeps_only_what_backward_reads) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    if (!m) return;
    cp_lora_config cfg;
    cp_lora_config_init(&cfg);
    cfg.task_type = cp_strdup("CAUSAL_LM");
    cfg.r = 8;
    cfg.lora_alpha = 16;
    cfg.lora_dropout = 0.1;
    cfg.target_kind = CP_TARGETS_ALL_LINEAR;
    cp_rng rng;
    cp_rng_seed(&rng, 1);
    CHECK_OK(cp_peft_add_adapter(m, "default", &cfg, &rng, 1, 1));
    cp_lora_config_free(&cfg);
    cp_param **params = NULL;
    int n = 0;
    CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    const int64_t B = 2, T = 64, N = B * T, NH = 8, hd = 32;
    int64_t ids[2 * 64];
    for (int64_t i = 0; i < N; i++) ids[i] = 3 + (i * 37) % (V - 3);
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    /* a Llama block's backward reads its input, both norms' outputs and statistics, q (roped), k
     * (roped), v, the attention probabilities and output, the attention residual, gate, up and
     * silu(gate)·up; nothing else of the block may stay in the arena until the backward pass */
    const size_t kept = floats64(N * C) * 4 + floats64(N) * 2 + floats64(N * NH * hd) * 2 + floats64(N * KV) * 2 +
                        floats64(B * NH * T * T) + floats64(N * I) * 3;
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

int main(void) {
    RUN(arena_memory_goes_back);
    char cmd[1200];
    if (!mkdtemp(work_dir)) { printf("FAIL mkdtemp %s\n", work_dir); return 1; }
    snprintf(model_dir, sizeof model_dir, "%s/model", work_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", model_dir);
    if (system(cmd) != 0 || !make_model(model_dir)) { printf("FAIL writing the model in %s: %s\n", model_dir, cp_last_error()); return 1; }
    RUN(training_keeps_only_what_backward_reads);
    snprintf(cmd, sizeof cmd, "rm -rf %s", work_dir);
    if (!getenv("CPEFT_KEEP_TEST_FILES") && system(cmd) != 0) printf("could not remove %s\n", work_dir);
    return test_summary();
}
