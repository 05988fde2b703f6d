/*
 * test_quantize_embeddings.c — `--quantize` with the token embedding and the LM head quantized too
 * (cp_peft_quantize_embeddings, called when training starts), on a tied Conv1D model (gpt2_tiny), a
 * tied Linear one (gpt_neo_tiny) and an untied one (gpt2_untied):
 *
 *   - which weights: the frozen token embedding (and with it the tied head), an untied frozen LM head;
 *     not the position embedding, not a trained one (modules_to_save), not with
 *     CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS; the tied head holds no copy and, under --bf16, no panels;
 *   - the embedding gather returns the dequantized rows exactly;
 *   - in training (LoRA on every default target, B nonzero, dropout 0) the quantized model computes
 *     what an f32 model holding the dequantized weights computes: f32 products logits within 2e-5,
 *     loss within 1e-5, LoRA gradients within 1e-4 of the largest (sum order: measured <= 5e-6); under
 *     --bf16 the same bounds, with the head's products dequantized into bf16 panels against bf16
 *     panels packed from the f32 copy (measured: bit for bit). The batch has 48 rows: up to 32 rows
 *     a quantized weight's products are the exact f32 few-row kernels, which --bf16 does not round;
 *   - the loss of the quantized model against the unquantized f32 model (the quantization error
 *     itself): Q8_0 within 2e-2 relative;
 *   - a product with a quantized weight wider than one slab of panels (an LM head: packed and
 *     multiplied 8 MiB of panels at a time, kernels/gemm_bf16.c), forward and input gradient, equals
 *     the product on the whole weight packed at once, bit for bit (AVX-512 BF16 only).
 * Hidden 32 is not a whole Q4_K block: Q4_K falls back to Q4_1 rows, as in test_quantize_load.c.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/ggml_quant.h"
#include "kernels/gemm.h"
#include "kernels/gemm_bf16.h"
#include "models/bf16.h"
#include "models/model.h"
#include "models/quantize.h"
#include "nn/embedding.h"
#include "peft/peft_model.h"

#include <stdlib.h>

static const char *const MODELS[] = {"tests/fixtures/models/gpt2_tiny", "tests/fixtures/models/gpt_neo_tiny",
                                     "tests/fixtures/models/gpt2_untied"};
static const char *const EMBED[] = {"transformer.wte", "transformer.wte", "transformer.wte"};
enum { B = 4, T = 12, CAP = 1 << 16 }; /* 48 rows, 44 targets: the many-row products (more than 32 rows), which --bf16 rounds */

static cp_model *load(const char *dir, int flags) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, flags));
    return m;
}

static void make_batch(cp_model *m, int64_t *ids, cp_batch *b) {
    const int64_t V = cp_model_vocab_size(m);
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7919 + 13) % V;
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T, b->input_ids = ids, b->labels = ids;
}

/* A LoRA adapter (dropout 0, B nonzero so gradients reach every A), optionally with modules_to_save;
 * then the trainer's start: the frozen embedding / head quantized, and --bf16 when asked. */
static void start_training(cp_model *m, const char *save, int bf16) {
    cp_lora_options o;
    cp_lora_options_init(&o);
    o.dropout = 0;
    o.modules_to_save = save;
    CHECK_OK(cp_model_add_lora_adapter(m, NULL, &o, 7));
    cp_param **ps;
    int n;
    CHECK_OK(cp_peft_trainable_params(m, &ps, &n));
    for (int i = 0; i < n; i++)
        if (strstr(ps[i]->name, "lora_B"))
            for (int64_t j = 0; j < ps[i]->numel; j++) ps[i]->data[j] = 0.05f * (float)((j * 37 % 11) - 5) / 5.0f;
    int64_t saved = 0;
    CHECK_OK(cp_peft_quantize_embeddings(m, ps, n, &saved));
    if (bf16) CHECK_OK(cp_model_use_bf16(m, ps, n, NULL));
    cp_free(ps);
}

static int quantized(const cp_param *p) { return cp_dtype_is_quantized(p->stored_dtype) && !p->data && p->stored; }

/* Gives mf (f32) the dequantized values of every weight mq holds quantized (tied ones follow). */
static int take_dequantized(cp_model *mf, cp_model *mq) {
    cp_param **pf, **pq;
    int nf, nq, n = 0;
    if (cp_module_params(mf->root, &pf, &nf) != CP_OK || cp_module_params(mq->root, &pq, &nq) != CP_OK) return -1;
    CHECK(nf == nq, "the same parameters");
    for (int i = 0; i < nq && i < nf; i++) {
        if (!quantized(pq[i]) || pq[i]->tied_to) continue;
        CHECK(!strcmp(pf[i]->name, pq[i]->name), "parameter order");
        CHECK_OK(cp_param_make_writable(mf, pf[i]));
        cp_param_export(pq[i], CP_F32, pf[i]->data);
        n++;
    }
    cp_free(pf), cp_free(pq);
    return n;
}

/* The loss (per target) and the LoRA gradients (per target) of one forward + backward. */
static int64_t lora_grads(cp_model *m, const cp_batch *b, float *g, double *loss) {
    cp_param **ps;
    int n;
    int64_t k = 0, targets;
    cp_peft_trainable_params(m, &ps, &n);
    for (int i = 0; i < n; i++) if (ps[i]->grad) memset(ps[i]->grad, 0, (size_t)ps[i]->numel * sizeof(float));
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, 0, loss, &targets));
    *loss /= (double)targets;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; ps[i]->grad && j < ps[i]->numel && k < CAP; j++) g[k++] = ps[i]->grad[j] / (float)targets;
    cp_free(ps);
    return k;
}

TEST(which_weights_are_quantized) {
    const int flags[] = {CP_LOAD_QUANTIZE_Q8_0, CP_LOAD_QUANTIZE_Q4_K};
    for (int k = 0; k < 3; k++)
        for (int f = 0; f < 2; f++)
            for (int bf16 = 0; bf16 < 2; bf16++) {
                cp_model *m = load(MODELS[k], flags[f]);
                if (!m) continue;
                start_training(m, NULL, bf16);
                cp_module *wte = cp_module_find(m->root, EMBED[k]), *wpe = cp_module_find(m->root, "transformer.wpe");
                CHECK(wte && quantized(wte->weight) && wte->weight->owns_stored, "%s: %s quantized", MODELS[k], EMBED[k]);
                CHECK(wte->weight->stored_dtype == (f ? CP_Q4_1 : CP_Q8_0), "Q8_0, or Q4_K's Q4_1 fallback on rows of 32");
                CHECK(!wpe || (wpe->weight->data && !wpe->weight->stored), "the position embedding stays f32");
                const cp_param *h = m->lm_head->weight;
                CHECK(quantized(h), "%s: the LM head multiplied quantized", MODELS[k]);
                if (h->tied_to)
                    CHECK(h->tied_to == wte->weight && h->stored == wte->weight->stored && !h->owns_stored,
                          "the tied head shares the quantized values");
                else CHECK(h->owns_stored && h->stored != wte->weight->stored, "the untied head quantized on its own");
                CHECK(!h->bf16_panels[0] && !h->bf16_panels[1] && !wte->weight->bf16_panels[0], "no panels of a quantized head");
                CHECK(!bf16 || h->round_bf16, "--bf16: the head's products in bf16");
                cp_model_free(m);
            }
    /* kept: CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS, a trained embedding, a trained head */
    cp_model *m = load(MODELS[0], CP_LOAD_QUANTIZE_Q8_0 | CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS);
    if (m) {
        start_training(m, NULL, 0);
        CHECK(cp_module_find(m->root, "transformer.wte")->weight->data && m->lm_head->weight->data, "kept in f32");
        CHECK(quantized(cp_module_find(m->root, "transformer.h.0.attn.c_attn")->weight), "the blocks still quantized");
        cp_model_free(m);
    }
    if ((m = load(MODELS[2], CP_LOAD_QUANTIZE_Q8_0))) { /* untied: embedding trained, head frozen */
        start_training(m, "wte", 0);
        cp_module *wte = cp_module_find(m->root, "transformer.wte");
        CHECK(wte->weight->data && wte->weight->grad, "the trained embedding (a modules_to_save copy) stays f32");
        CHECK(quantized(m->lm_head->weight), "the frozen untied head quantized");
        cp_model_free(m);
    }
    if ((m = load(MODELS[2], CP_LOAD_QUANTIZE_Q8_0))) { /* untied: head trained */
        start_training(m, "lm_head", 0);
        CHECK(m->lm_head->weight->data && m->lm_head->weight->grad, "the trained head stays f32");
        CHECK(quantized(cp_module_find(m->root, "transformer.wte")->weight), "the frozen embedding quantized");
        cp_model_free(m);
    }
    if ((m = load(MODELS[0], CP_LOAD_QUANTIZE_Q8_0))) { /* tied: a trained head copy, the embedding frozen */
        start_training(m, "lm_head", 0);
        cp_module *wte = cp_module_find(m->root, "transformer.wte");
        CHECK(m->lm_head->weight->data && m->lm_head->weight->grad, "the head's modules_to_save copy is f32");
        CHECK(quantized(wte->weight), "the frozen embedding quantized");
        int64_t ids[B * T];
        cp_batch b;
        make_batch(m, ids, &b);
        float *g = malloc(CAP * sizeof *g);
        double loss;
        CHECK(lora_grads(m, &b, g, &loss) > 0 && isfinite(loss), "trains");
        cp_model_disable_adapters(m, 1); /* the displaced original head is back: tied to the quantized values */
        cp_outputs out = {0};
        CHECK_OK(cp_model_forward(m, &b, &out));
        CHECK(quantized(m->lm_head->weight) && m->lm_head->weight->stored == wte->weight->stored && isfinite(out.loss),
              "the original head follows the quantized embedding");
        free(g);
        cp_model_free(m);
    }
}

TEST(the_gather_returns_the_dequantized_rows) {
    cp_model *m = load(MODELS[1], CP_LOAD_QUANTIZE_Q8_0);
    if (!m) return;
    start_training(m, NULL, 0);
    cp_module *wte = cp_module_find(m->root, "transformer.wte");
    const int64_t V = wte->in_features, C = wte->out_features;
    float *all = malloc((size_t)(V * C) * sizeof *all), *rows = malloc((size_t)(4 * C) * sizeof *rows);
    cp_param_export(wte->weight, CP_F32, all);
    const int64_t ids[4] = {0, V - 1, 17, 17};
    CHECK_OK(cp_embedding_forward(wte, rows, ids, 4, 0));
    double d = 0;
    for (int i = 0; i < 4; i++)
        for (int64_t c = 0; c < C; c++) d = fmax(d, fabs(rows[i * C + c] - all[ids[i] * C + c]));
    printf("  Q8_0 embedding gather vs the dequantized table: %.1e\n", d);
    CHECK(d == 0, "gathered rows differ by %.3e", d);
    free(all), free(rows);
    cp_model_free(m);
}

TEST(training_on_the_quantized_embedding_and_head_is_the_dequantized_model) {
    const int flags[] = {CP_LOAD_QUANTIZE_Q8_0, CP_LOAD_QUANTIZE_Q4_K};
    for (int k = 0; k < 3; k++)
        for (int f = 0; f < 2; f++)
            for (int bf16 = 0; bf16 < 2; bf16++) {
                cp_model *mq = load(MODELS[k], flags[f]), *mf = load(MODELS[k], CP_LOAD_WEIGHTS), *m0 = load(MODELS[k], CP_LOAD_WEIGHTS);
                if (!mq || !mf || !m0) { cp_model_free(mq), cp_model_free(mf), cp_model_free(m0); continue; }
                start_training(mq, NULL, 0);
                start_training(mf, NULL, 0);
                start_training(m0, NULL, 0);
                CHECK(take_dequantized(mf, mq) >= 9, "the embedding or head and the blocks to compare");
                if (bf16) {
                    cp_param **ps;
                    int n;
                    cp_model *both[2] = {mq, mf};
                    for (int i = 0; i < 2; i++) {
                        CHECK_OK(cp_peft_trainable_params(both[i], &ps, &n));
                        CHECK_OK(cp_model_use_bf16(both[i], ps, n, NULL));
                        cp_free(ps);
                    }
                }
                int64_t ids[B * T];
                cp_batch b;
                make_batch(mq, ids, &b);
                const int64_t V = cp_model_vocab_size(mq);
                float *lq = malloc((size_t)(B * T * V) * sizeof *lq), *lf = malloc((size_t)(B * T * V) * sizeof *lf);
                cp_outputs oq = {.logits = lq}, of = {.logits = lf};
                CHECK_OK(cp_model_forward(mq, &b, &oq));
                CHECK_OK(cp_model_forward(mf, &b, &of));
                double dl = 0, lmax = 0;
                for (int64_t i = 0; i < B * T * V; i++) dl = fmax(dl, fabs(lq[i] - lf[i])), lmax = fmax(lmax, fabs(lf[i]));
                float *gq = malloc(CAP * sizeof *gq), *gf = malloc(CAP * sizeof *gf);
                double loss_q, loss_f, loss_0, gmax = 0, gdiff = 0;
                const int64_t n = lora_grads(mq, &b, gq, &loss_q);
                CHECK(lora_grads(mf, &b, gf, &loss_f) == n && n > 0, "the same LoRA parameters");
                float *g0 = malloc(CAP * sizeof *g0);
                lora_grads(m0, &b, g0, &loss_0); /* the unquantized model: its loss only */
                free(g0);
                for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(gf[i])), gdiff = fmax(gdiff, fabs(gq[i] - gf[i]));
                const double tol_l = 2e-5, tol_loss = 1e-5, tol_g = 1e-4; /* measured: --bf16 0 (bit for bit), f32 <= 5e-6 */
                printf("  %s %s%s: vs the dequantized f32 model: logits %.2e (of %.2f), loss %.2e, %lld LoRA grads %.2e of the "
                       "largest; loss vs the unquantized model %.2e relative\n",
                       MODELS[k], f ? "Q4_K(Q4_1)" : "Q8_0", bf16 ? " --bf16" : "", dl, lmax, fabs(loss_q - loss_f), (long long)n,
                       gdiff / gmax, fabs(loss_q - loss_0) / loss_0);
                CHECK(dl <= tol_l, "logits differ by %.3e", dl);
                CHECK(fabs(loss_q - loss_f) <= tol_loss, "losses differ by %.3e", fabs(loss_q - loss_f));
                CHECK(gdiff <= tol_g * gmax, "LoRA gradients differ by %.3e of %.3e", gdiff, gmax);
                CHECK(f || fabs(loss_q - loss_0) <= 2e-2 * loss_0, "Q8_0 loss %.5f vs f32 %.5f", loss_q, loss_0);
                free(lq), free(lf), free(gq), free(gf);
                cp_model_free(mq), cp_model_free(mf), cp_model_free(m0);
            }
}

TEST(a_wide_quantized_product_runs_in_slabs) {
    if (!cp_gemm_bf16_native()) { printf("  (no AVX-512 BF16: skipped)\n"); return; }
    enum { K = 256, M = 16384 + 48 + 256, N = 40 }; /* forward panels: 9.3 MiB, two slabs; input gradient: K = M */
    float *w = malloc((size_t)M * K * sizeof *w), *deq = malloc((size_t)M * K * sizeof *deq), *x = malloc((size_t)N * M * sizeof *x);
    float *a = malloc((size_t)N * M * sizeof *a), *b = malloc((size_t)N * M * sizeof *b);
    const int64_t rb = cp_dtype_nbytes(CP_Q4_K, K);
    uint8_t *q = malloc((size_t)(rb * M));
    uint32_t *packed = malloc((size_t)cp_gemm_bf16_panel_words(M, K) * 4 > (size_t)cp_gemm_bf16_panel_words(K, M) * 4
                                  ? (size_t)cp_gemm_bf16_panel_words(M, K) * 4 : (size_t)cp_gemm_bf16_panel_words(K, M) * 4);
    for (int64_t i = 0; i < (int64_t)M * K; i++) w[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < (int64_t)N * M; i++) x[i] = (float)((i * 40503u) % 1999) / 999.0f - 1.0f;
    for (int64_t o = 0; o < M; o++) CHECK_OK(cp_ggml_quantize_row(cp_ggml_type_of(CP_Q4_K), w + o * K, q + o * rb, K));
    cp_ggml_dequantize_row(cp_ggml_type_of(CP_Q4_K), q, deq, (int64_t)M * K);
    cp_weight W = cp_weight_nt(q, CP_Q4_K, K, M);
    W.round_bf16 = 1;
    /* forward: out (N,M) = X (N,K) · Wᵀ */
    cp_gemm_forward(a, x, &W, N, 0);
    cp_gemm_bf16_pack(packed, deq, CP_F32, 0, K, M);
    CHECK(cp_gemm_bf16_dot_packed(b, x, packed, N, K, M, 0) == 0, "packed product");
    double d = 0;
    for (int64_t i = 0; i < (int64_t)N * M; i++) d = fmax(d, fabs(a[i] - b[i]));
    /* input gradient: dX (N,K) = dY (N,M) · W */
    cp_gemm_backward_input(a, x, &W, N, 0);
    cp_gemm_bf16_pack(packed, deq, CP_F32, 1, M, K);
    CHECK(cp_gemm_bf16_dot_packed(b, x, packed, N, M, K, 0) == 0, "packed product");
    double e = 0;
    for (int64_t i = 0; i < (int64_t)N * K; i++) e = fmax(e, fabs(a[i] - b[i]));
    printf("  Q4_K (%d,%d) in slabs vs packed whole: forward %.1e, input gradient %.1e\n", M, K, d, e);
    CHECK(d == 0 && e == 0, "the slabbed products differ: %.3e, %.3e", d, e);
    free(w), free(deq), free(x), free(a), free(b), free(q), free(packed);
}

int main(void) {
    RUN(which_weights_are_quantized);
    RUN(the_gather_returns_the_dequantized_rows);
    RUN(training_on_the_quantized_embedding_and_head_is_the_dequantized_model);
    RUN(a_wide_quantized_product_runs_in_slabs);
    return test_summary();
}
