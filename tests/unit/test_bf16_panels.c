/*
 * test_bf16_panels.c — frozen weights packed once for the AVX-512 BF16 kernel (cp_gemm_bf16_pack,
 * cached by models/bf16.c as a parameter's bf16_panels) give exactly what packing per call gives:
 *   - the kernel: cp_gemm_bf16_dot_packed on cp_gemm_bf16_pack's panels against cp_gemm_bf16_dot,
 *     bit for bit, NT and NN, F32 / BF16 / F16 weights, odd K, column tails, 33-100 rows;
 *     a vocabulary slice (cp_weight_out_rows) that starts on a panel keeps its panels and equals
 *     the per-call product; one that does not drops them;
 *   - a model: LoRA forward + backward under --bf16 on tiny GPT-2 (Conv1D, tied head) and GPT-Neo
 *     (Linear), 2 × 40 tokens (80 rows: the packed kernel, not the few-row emulation), with the
 *     panels cached against the same model with them dropped: the same loss and gradients bit for
 *     bit; and a merge (cp_param_make_writable) drops the panels it would make stale.
 * Skipped without AVX-512 BF16 (nothing is packed then). Prints the largest difference seen.
 */
#include "test.h"
#include "core/alloc.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "models/bf16.h"
#include "models/model.h"
#include "peft/lora.h"
#include "peft/lora_config.h"
#include "peft/peft_model.h"
#include "train/step.h"

#include <stdlib.h>

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static double max_diff(const float *a, const float *b, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]);
        if (d > w || d != d) w = d;
    }
    return w;
}

TEST(packed_panels_equal_per_call_packing) {
    if (!cp_gemm_bf16_native()) SKIP("no AVX-512 BF16 on this CPU");
    static const cp_dtype dts[] = {CP_F32, CP_BF16, CP_F16};
    static const int64_t shapes[][3] = {{33, 64, 48}, {70, 37, 50}, {100, 130, 17}, {41, 256, 200}};
    unsigned seed = 7;
    double worst = 0;
    for (int s = 0; s < 4; s++)
        for (int d = 0; d < 3; d++)
            for (int nn = 0; nn < 2; nn++) {
                const int64_t N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
                float *X = malloc((size_t)(N * K) * 4), *W = malloc((size_t)(K * M) * 4);
                float *a = malloc((size_t)(N * M) * 4), *b = malloc((size_t)(N * M) * 4);
                uint16_t *W16 = malloc((size_t)(K * M) * 2);
                uint32_t *P = malloc((size_t)cp_gemm_bf16_panel_words(K, M) * 4);
                for (int64_t i = 0; i < N * K; i++) X[i] = frand(&seed);
                for (int64_t i = 0; i < K * M; i++) W[i] = frand(&seed);
                for (int64_t i = 0; i < N * M; i++) a[i] = b[i] = frand(&seed);
                const void *w = W;
                if (dts[d] != CP_F32) { cp_convert_from_f32(W16, dts[d], W, (size_t)(K * M)); w = W16; }
                cp_gemm_bf16_pack(P, w, dts[d], nn, K, M);
                const int acc = (s + d) % 2;
                CHECK(cp_gemm_bf16_dot(a, X, w, dts[d], nn, N, K, M, acc) == 0, "per call");
                CHECK(cp_gemm_bf16_dot_packed(b, X, P, N, K, M, acc) == 0, "packed");
                const double e = max_diff(a, b, N * M);
                CHECK(e == 0, "%lld x %lld x %lld %s nn=%d: %.3e", (long long)N, (long long)K, (long long)M, cp_dtype_name(dts[d]), nn, e);
                worst = fmax(worst, e);
                free(X), free(W), free(a), free(b), free(W16), free(P);
            }
    /* vocabulary slices of an NT weight (V = 100, C = 24) */
    const int64_t N = 40, C = 24, V = 100;
    float *X = malloc((size_t)(N * C) * 4), *W = malloc((size_t)(V * C) * 4), *a = malloc((size_t)(N * V) * 4),
          *b = malloc((size_t)(N * V) * 4);
    uint32_t *P = malloc((size_t)cp_gemm_bf16_panel_words(C, V) * 4);
    for (int64_t i = 0; i < N * C; i++) X[i] = frand(&seed);
    for (int64_t i = 0; i < V * C; i++) W[i] = frand(&seed);
    cp_gemm_bf16_pack(P, W, CP_F32, 0, C, V);
    cp_weight full = cp_weight_nt(W, CP_F32, C, V), bare = full;
    full.round_bf16 = bare.round_bf16 = 1;
    full.bf16_panels[0] = P;
    const int64_t starts[] = {0, 32, 48, 7}, lens[] = {50, 40, 52, 30};
    for (int i = 0; i < 4; i++) {
        const cp_weight t = cp_weight_out_rows(&full, starts[i], lens[i]), u = cp_weight_out_rows(&bare, starts[i], lens[i]);
        CHECK((t.bf16_panels[0] != NULL) == (starts[i] % 16 == 0), "slice at %lld", (long long)starts[i]);
        cp_gemm_forward(a, X, &t, N, 0);
        cp_gemm_forward(b, X, &u, N, 0);
        const double e = max_diff(a, b, N * lens[i]);
        CHECK(e == 0, "slice [%lld, +%lld): %.3e", (long long)starts[i], (long long)lens[i], e);
        worst = fmax(worst, e);
    }
    free(X), free(W), free(a), free(b), free(P);
    printf("  packed once vs per call: max |diff| %.1e over 4 shapes x 3 dtypes x NT/NN and 4 vocabulary slices\n", worst);
}

static int drop_all(cp_module *mod, void *ctx) {
    (void)ctx;
    if (mod->weight) cp_param_drop_panels(mod->weight);
    return 0;
}

typedef struct { int n; } count_ctx;
static int count_panels(cp_module *mod, void *vctx) {
    count_ctx *c = vctx;
    if (mod->weight) c->n += (mod->weight->bf16_panels[0] != NULL) + (mod->weight->bf16_panels[1] != NULL);
    return 0;
}

/* loss and the concatenated LoRA gradients of one forward + backward; *panels: panels held */
static double run_case(const char *dir, const char *targets, int drop, float **grads, int64_t *n_grads, int *panels) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    if (!m) return NAN;
    cp_lora_config cfg;
    cp_lora_config_init(&cfg);
    cfg.r = 4;
    cfg.lora_alpha = 8;
    cfg.init_lora_weights = CP_LORA_INIT_GAUSSIAN; /* B non-zero: every gradient non-zero */
    cfg.target_kind = CP_TARGETS_LIST;
    char *list = strdup(targets), *save = NULL;
    cfg.target_modules = calloc(8, sizeof *cfg.target_modules);
    for (char *t = strtok_r(list, ",", &save); t && cfg.n_target_modules < 8; t = strtok_r(NULL, ",", &save))
        cfg.target_modules[cfg.n_target_modules++] = strdup(t);
    free(list);
    cp_rng rng;
    cp_rng_seed(&rng, 3);
    CHECK_OK(cp_peft_add_adapter(m, "default", &cfg, &rng, 1, 1));
    cp_param **params = NULL;
    int n = 0;
    CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    CHECK_OK(cp_model_use_bf16(m, params, n, NULL));
    if (drop) cp_module_visit(m->root, drop_all, NULL);
    count_ctx cc = {0};
    cp_module_visit(m->root, count_panels, &cc);
    *panels = cc.n;
    const int64_t B = 2, T = 40, V = cp_model_vocab_size(m);
    int64_t ids[80];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7 + 3) % V;
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .labels = ids};
    double loss_sum = 0;
    int64_t n_targets = 0;
    CHECK_OK(cp_model_forward_backward(m, &b, (double)cp_batch_targets(&b), 0, &loss_sum, &n_targets));
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += params[i]->numel;
    *grads = malloc((size_t)total * sizeof **grads);
    *n_grads = total;
    total = 0;
    for (int i = 0; i < n; i++) {
        memcpy(*grads + total, params[i]->grad, (size_t)params[i]->numel * sizeof **grads);
        total += params[i]->numel;
    }
    free(params);
    cp_lora_config_free(&cfg);
    cp_model_free(m);
    return loss_sum / (double)n_targets;
}

TEST(model_step_same_with_and_without_cached_panels) {
    if (!cp_gemm_bf16_native()) SKIP("no AVX-512 BF16 on this CPU");
    static const char *const dirs[] = {"tests/fixtures/models/gpt2_tiny", "tests/fixtures/models/gpt_neo_tiny"};
    static const char *const targets[] = {"c_attn,c_proj,c_fc", "q_proj,v_proj,out_proj,c_fc"};
    for (int c = 0; c < 2; c++) {
        float *g0 = NULL, *g1 = NULL;
        int64_t n0 = 0, n1 = 0;
        int p0 = 0, p1 = 0;
        const double l0 = run_case(dirs[c], targets[c], 0, &g0, &n0, &p0);
        const double l1 = run_case(dirs[c], targets[c], 1, &g1, &n1, &p1);
        CHECK(p0 > 0 && p1 == 0, "%s: %d panels cached, %d after dropping", dirs[c], p0, p1);
        CHECK(n0 == n1 && n0 > 0, "%s: gradient sizes %lld, %lld", dirs[c], (long long)n0, (long long)n1);
        const double e = n0 == n1 ? max_diff(g0, g1, n0) : INFINITY;
        CHECK(l0 == l1 && e == 0, "%s: loss %.9g vs %.9g, grads max |diff| %.3e", dirs[c], l0, l1, e);
        printf("  %-36s %d panels cached: loss %.7f (|diff| %.1e), grads max |diff| %.1e over %lld values\n", dirs[c], p0, l0,
               fabs(l0 - l1), e, (long long)n0);
        free(g0), free(g1);
    }
}

TEST(writing_a_weight_drops_its_panels) {
    if (!cp_gemm_bf16_native()) SKIP("no AVX-512 BF16 on this CPU");
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/models/gpt_neo_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_model_use_bf16(m, NULL, 0, NULL));
    cp_param *head = m->lm_head->weight, *wte = head->tied_to;
    CHECK(head->bf16_panels[0] && head->bf16_panels[1], "the LM head holds both panels");
    CHECK_OK(cp_param_make_writable(m, wte ? wte : head));
    CHECK(!head->bf16_panels[0] && !head->bf16_panels[1], "a written (tied) head weight keeps no stale panels");
    cp_model_free(m);
}

int main(void) {
    RUN(packed_panels_equal_per_call_packing);
    RUN(model_step_same_with_and_without_cached_panels);
    RUN(writing_a_weight_drops_its_panels);
    return test_summary();
}
