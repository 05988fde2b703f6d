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

int main(void) {
    RUN(lm_head_loss_matches_double_reference);
    return test_summary();
}
