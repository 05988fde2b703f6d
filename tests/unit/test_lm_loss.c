/*
 * test_lm_loss.c — the LM head loss (nn/lm_loss.c) against a double-precision reference computed here:
 * logits = h·Wᵀ, shifted targets with -100 ignored, log-sum-exp over the vocabulary. Both ways of
 * computing it are held to the reference: the tiled one (loss only, no LoRA: what eval runs), whose
 * vocabulary tiles are shared between threads, and the one through full logits. Vocabulary sizes
 * below, at and across the tile width, more rows than one chunk, targets in the first and last column.
 */
#include "test.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "models/lm_head.h"
#include "nn/module.h"

#include <stdlib.h>

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }

/* Σ over the counted targets of logsumexp(h_r·Wᵀ) - h_r·W_y, in double. */
static double loss_ref(const float *h, const float *W, const int64_t *labels, int64_t B, int64_t T, int64_t C, int64_t V,
                       int64_t *count) {
    double total = 0, *x = malloc((size_t)V * sizeof *x);
    *count = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t + 1 < T; t++) {
            const int64_t y = labels[b * T + t + 1];
            if (y == CP_IGNORE_INDEX) continue;
            double m = -INFINITY, s = 0;
            for (int64_t v = 0; v < V; v++) {
                x[v] = 0;
                for (int64_t c = 0; c < C; c++) x[v] += (double)h[(b * T + t) * C + c] * W[v * C + c];
                m = x[v] > m ? x[v] : m;
            }
            for (int64_t v = 0; v < V; v++) s += exp(x[v] - m);
            total += m + log(s) - x[y];
            (*count)++;
        }
    free(x);
    return total;
}

TEST(lm_head_loss_matches_double_reference) {
    static const int64_t vocabs[] = {37, 512, 1000, 2049};
    const int64_t B = 3, T = 70, C = 33; /* 207 shifted rows: two chunks */
    unsigned seed = 5;
    double worst_tiled = 0, worst_full = 0;
    for (size_t vi = 0; vi < sizeof vocabs / sizeof *vocabs; vi++) {
        const int64_t V = vocabs[vi];
        cp_module *head = cp_module_linear(NULL, "lm_head", C, V, 0);
        CHECK(head != NULL, "cp_module_linear: %s", cp_last_error());
        if (!head) return;
        /* the tree is built from shapes only; give the weight data, freed with the module */
        head->weight->data = cp_alloc_aligned((size_t)(V * C) * sizeof(float), "test lm_head weight");
        head->weight->owns_data = 1;
        for (int64_t i = 0; i < V * C; i++) head->weight->data[i] = 2.0f * frand(&seed);
        float *h = malloc((size_t)(B * T * C) * sizeof *h), *logits = malloc((size_t)(B * T * V) * sizeof *logits);
        int64_t *labels = malloc((size_t)(B * T) * sizeof *labels);
        for (int64_t i = 0; i < B * T * C; i++) h[i] = frand(&seed);
        for (int64_t i = 0; i < B * T; i++) {
            labels[i] = (int64_t)((frand(&seed) + 1.0f) * 0.5f * (float)V) % V;
            if (i % 7 == 3) labels[i] = CP_IGNORE_INDEX;
        }
        labels[1] = 0;
        labels[2] = V - 1; /* the first and the last column: the first and the last tile */
        int64_t n_ref, n_tiled = -1, n_full = -1, n_again = -1;
        const double ref = loss_ref(h, head->weight->data, labels, B, T, C, V, &n_ref);
        double tiled = 0, full = 0, again = 0;
        cp_arena scratch;
        cp_arena_init(&scratch);
        const cp_run run = {.arena = &scratch};
        CHECK_OK(cp_lm_head_loss(&run, head, h, B, T, labels, NULL, &tiled, &n_tiled));
        cp_arena_reset(&scratch);
        CHECK_OK(cp_lm_head_loss(&run, head, h, B, T, labels, NULL, &again, &n_again));
        cp_arena_reset(&scratch);
        CHECK_OK(cp_lm_head_loss(&run, head, h, B, T, labels, logits, &full, &n_full));
        cp_arena_free(&scratch);
        const double d_tiled = fabs(tiled - ref) / (double)n_ref, d_full = fabs(full - ref) / (double)n_ref;
        printf("  V=%-5lld %lld targets: mean loss %.6f; tiled |diff| %.1e, through logits %.1e\n", (long long)V,
               (long long)n_ref, ref / (double)n_ref, d_tiled, d_full);
        CHECK(n_tiled == n_ref && n_full == n_ref, "V=%lld: %lld and %lld targets counted, expected %lld", (long long)V,
              (long long)n_tiled, (long long)n_full, (long long)n_ref);
        CHECK(again == tiled, "V=%lld: two runs differ (%.17g, %.17g)", (long long)V, tiled, again);
        worst_tiled = fmax(worst_tiled, d_tiled);
        worst_full = fmax(worst_full, d_full);
        free(h); free(logits); free(labels);
        cp_module_free(head);
    }
    CHECK(worst_tiled < 2e-6, "tiled loss per target differs from the reference by %.3e", worst_tiled);
    CHECK(worst_full < 2e-6, "loss through logits per target differs from the reference by %.3e", worst_full);
}

/* Gemma 2's final-logit soft-capping with a logits bias (cp_logits_post): z = h·Wᵀ + bias, x = c·tanh(z/c),
 * loss = logsumexp(x) - x_y. The loss (through logits and chunked) and dh = Σ_v (softmax(x)_v − [v=y])
 * (1 − tanh²(z_v/c)) W_v against the same computed here in double. */
TEST(lm_head_softcap_loss_and_backward_match_double_reference) {
    const int64_t B = 2, T = 9, C = 7, V = 23, N = B * T;
    const float cap = 1.7f;
    unsigned seed = 11;
    cp_module *head = cp_module_linear(NULL, "lm_head", C, V, 0);
    CHECK(head != NULL, "cp_module_linear: %s", cp_last_error());
    if (!head) return;
    head->weight->data = cp_alloc_aligned((size_t)(V * C) * sizeof(float), "test lm_head weight");
    head->weight->owns_data = 1;
    const float *W = head->weight->data;
    for (int64_t i = 0; i < V * C; i++) head->weight->data[i] = 2.0f * frand(&seed);
    float h[2 * 9 * 7], bias[23], dh[2 * 9 * 7], logits[2 * 9 * 23];
    int64_t labels[18];
    for (int64_t i = 0; i < N * C; i++) h[i] = 1.5f * frand(&seed);
    for (int64_t v = 0; v < V; v++) bias[v] = frand(&seed);
    for (int64_t i = 0; i < N; i++) labels[i] = i % 5 == 2 ? CP_IGNORE_INDEX : (int64_t)((frand(&seed) + 1.0f) * 0.5f * (float)V) % V;
    /* the reference: loss sum, count, dh of loss_sum / norm */
    const double norm = 5.0;
    double ref = 0, dh_ref[2 * 9 * 7] = {0}, z[23], x[23], saturated = 0;
    int64_t n_ref = 0;
    for (int64_t r = 0; r < N; r++) {
        const int64_t b = r / T, t = r % T;
        if (t + 1 >= T || labels[r + 1] == CP_IGNORE_INDEX) continue;
        const int64_t y = labels[r + 1];
        double m = -INFINITY, s = 0;
        for (int64_t v = 0; v < V; v++) {
            z[v] = bias[v];
            for (int64_t c = 0; c < C; c++) z[v] += (double)h[r * C + c] * W[v * C + c];
            x[v] = cap * tanh(z[v] / cap);
            saturated = fmax(saturated, fabs(x[v]) / cap);
            m = fmax(m, x[v]);
        }
        for (int64_t v = 0; v < V; v++) s += exp(x[v] - m);
        ref += m + log(s) - x[y];
        n_ref++;
        for (int64_t v = 0; v < V; v++) {
            const double th = tanh(z[v] / cap), dz = (exp(x[v] - m) / s - (v == y)) * (1 - th * th) / norm;
            for (int64_t c = 0; c < C; c++) dh_ref[(b * T + t) * C + c] += dz * W[v * C + c];
        }
    }
    const cp_logits_post post = {.bias = bias, .softcap = cap};
    cp_arena scratch;
    cp_arena_init(&scratch);
    const cp_run run = {.arena = &scratch};
    double chunked = 0, full = 0, bw = 0;
    int64_t n1 = -1, n2 = -1, n3 = -1;
    CHECK_OK(cp_lm_head_loss_shift(&run, head, &post, h, B, T, labels, 1, NULL, &chunked, &n1));
    CHECK_OK(cp_lm_head_loss_shift(&run, head, &post, h, B, T, labels, 1, logits, &full, &n2));
    CHECK_OK(cp_lm_head_loss_backward_shift(&run, head, &post, h, B, T, labels, 1, norm, dh, &bw, &n3));
    cp_arena_free(&scratch);
    double worst_logit = 0, worst_dh = 0, max_dh = 0;
    for (int64_t r = 0; r < N; r++)
        for (int64_t v = 0; v < V; v++) {
            double zz = bias[v];
            for (int64_t c = 0; c < C; c++) zz += (double)h[r * C + c] * W[v * C + c];
            worst_logit = fmax(worst_logit, fabs(logits[r * V + v] - cap * tanh(zz / cap)));
        }
    for (int64_t i = 0; i < N * C; i++) {
        worst_dh = fmax(worst_dh, fabs(dh[i] - dh_ref[i]));
        max_dh = fmax(max_dh, fabs(dh_ref[i]));
    }
    const double d_loss = fmax(fabs(chunked - ref), fmax(fabs(full - ref), fabs(bw - ref))) / (double)n_ref;
    printf("  soft-cap %.1f over a bias: %lld targets, largest |x|/c %.3f; logits |diff| %.1e, loss per target %.1e, "
           "dh relative %.1e\n", cap, (long long)n_ref, saturated, worst_logit, d_loss, worst_dh / max_dh);
    CHECK(n1 == n_ref && n2 == n_ref && n3 == n_ref, "targets counted %lld %lld %lld, expected %lld", (long long)n1,
          (long long)n2, (long long)n3, (long long)n_ref);
    CHECK(saturated > 0.9, "the cap is not reached (largest |x|/c %.3f): the test would not see a missing tanh", saturated);
    CHECK(worst_logit < 1e-5, "soft-capped logits differ by %.3e", worst_logit);
    CHECK(d_loss < 2e-6, "soft-capped loss per target differs by %.3e", d_loss);
    CHECK(worst_dh < 1e-5 * max_dh, "soft-capped dh differs by %.3e (largest %.3e)", worst_dh, max_dh);
    cp_module_free(head);
}

int main(void) {
    RUN(lm_head_loss_matches_double_reference);
    RUN(lm_head_softcap_loss_and_backward_match_double_reference);
    return test_summary();
}
