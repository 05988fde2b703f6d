/*
 * test_quantize_load.c — `--quantize` (CP_LOAD_QUANTIZE_*): frozen Linear / Conv1D weights
 * quantized at load, on a Linear model (gpt_neo_tiny) and a Conv1D one (gpt2_tiny).
 *
 *   - which weights are quantized (not embeddings, norms, biases or the LM head);
 *   - the quantized model computes exactly what an f32 model holding the dequantized weights
 *     computes: logits within 2e-5 (sum order), LoRA gradients (every one through the quantized input-gradient
 *     path of the layers above it) within 1e-4 relative;
 *   - a finite-difference check of one LoRA gradient on the quantized model (2e-2 relative, f32
 *     central differences);
 *   - LoRA trained 8 SGD steps (lr 0.1, one batch) on the Q8_0 base against the f32 base: the
 *     losses within 1.5e-2 relative at every step (Q8_0's rounding moves the first loss by up to
 *     1.6e-3 on these tiny random weights; measured 7.8e-3 / 3.2e-3 after 8 steps);
 *   - merging on a quantized base dequantizes the weight (cp_param_make_writable).
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "models/model.h"
#include "models/quantize.h"
#include "peft/peft_model.h"

#include <stdlib.h>

static const char *const MODELS[] = {"tests/fixtures/models/gpt_neo_tiny", "tests/fixtures/models/gpt2_tiny"};
enum { B = 2, T = 8 };

static void make_batch(cp_model *m, int64_t *ids, cp_batch *b) {
    const int64_t V = cp_model_vocab_size(m);
    for (int i = 0; i < B * T; i++) ids[i] = (i * 7919 + 13) % V;
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T, b->input_ids = ids, b->labels = ids;
}

static cp_model *load(const char *dir, int flags) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, flags));
    return m;
}

/* Gives mf (f32) the dequantized values of every weight mq holds quantized; returns how many. */
static int take_dequantized(cp_model *mf, cp_model *mq) {
    cp_param **pf, **pq;
    int nf, nq, n = 0;
    if (cp_module_params(mf->root, &pf, &nf) != CP_OK || cp_module_params(mq->root, &pq, &nq) != CP_OK) return -1;
    for (int i = 0; i < nq && i < nf; i++) {
        if (!cp_dtype_is_quantized(pq[i]->stored_dtype) || pq[i]->data) continue;
        CHECK(!strcmp(pf[i]->name, pq[i]->name), "parameter order");
        CHECK_OK(cp_param_make_writable(mf, pf[i]));
        cp_param_export(pq[i], CP_F32, pf[i]->data);
        n++;
    }
    cp_free(pf), cp_free(pq);
    return n;
}

TEST(which_weights_are_quantized) {
    for (int k = 0; k < 2; k++) {
        cp_model *m = load(MODELS[k], CP_LOAD_QUANTIZE_Q8_0);
        if (!m) continue;
        cp_param **ps;
        int n, quantized = 0;
        CHECK_OK(cp_module_params(m->root, &ps, &n));
        for (int i = 0; i < n; i++) {
            const int q = cp_dtype_is_quantized(ps[i]->stored_dtype) && !ps[i]->data;
            quantized += q;
            if (q) CHECK(ps[i]->ndim == 2 && !strstr(ps[i]->name, "wte") && !strstr(ps[i]->name, "wpe") &&
                             !strstr(ps[i]->name, "lm_head") && !strstr(ps[i]->name, "ln"),
                         "%s must stay f32", ps[i]->name);
        }
        printf("  %s: %d weights quantized to Q8_0\n", MODELS[k], quantized);
        CHECK(quantized >= 8, "%s: only %d weights quantized", MODELS[k], quantized);
        cp_free(ps);
        cp_model_free(m);
    }
    int flag = 0;
    CHECK_OK(cp_quantize_flag("Q4_K", &flag));
    CHECK(flag == CP_LOAD_QUANTIZE_Q4_K, "Q4_K");
    CHECK_ERR(cp_quantize_flag("nf4", &flag), "known: q8_0, q4_k");
}

/* LoRA grads of m (all trainable parameters, in order) into g; returns the count and the loss. */
static int64_t lora_grads(cp_model *m, const cp_batch *b, float *g, int64_t cap, double *loss) {
    cp_param **ps;
    int n;
    int64_t k = 0, targets;
    cp_peft_trainable_params(m, &ps, &n);
    for (int i = 0; i < n; i++) if (ps[i]->grad) memset(ps[i]->grad, 0, (size_t)ps[i]->numel * sizeof(float));
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, 0, loss, &targets));
    *loss /= (double)targets;
    for (int i = 0; i < n; i++)
        for (int64_t j = 0; ps[i]->grad && j < ps[i]->numel && k < cap; j++) g[k++] = ps[i]->grad[j] / (float)targets;
    cp_free(ps);
    return k;
}

/* Makes every LoRA B nonzero (PEFT initialises it to 0) so that gradients reach every A. */
static void nonzero_lora_b(cp_model *m) {
    cp_param **ps;
    int n;
    cp_peft_trainable_params(m, &ps, &n);
    for (int i = 0; i < n; i++)
        if (ps[i]->grad && strstr(ps[i]->name, "lora_B"))
            for (int64_t j = 0; j < ps[i]->numel; j++) ps[i]->data[j] = 0.05f * (float)((j * 37 % 11) - 5) / 5.0f;
    cp_free(ps);
}

TEST(quantized_model_computes_with_the_dequantized_weights) {
    const int flags[] = {CP_LOAD_QUANTIZE_Q8_0, CP_LOAD_QUANTIZE_Q4_K};
    for (int k = 0; k < 2; k++)
        for (int f = 0; f < 2; f++) {
            cp_model *mq = load(MODELS[k], flags[f]), *mf = load(MODELS[k], CP_LOAD_WEIGHTS);
            if (!mq || !mf) { cp_model_free(mq), cp_model_free(mf); continue; }
            CHECK(take_dequantized(mf, mq) >= 8, "weights to compare");
            cp_lora_options o;
            cp_lora_options_init(&o);
            o.dropout = 0;
            CHECK_OK(cp_model_add_lora_adapter(mq, NULL, &o, 7));
            CHECK_OK(cp_model_add_lora_adapter(mf, NULL, &o, 7));
            nonzero_lora_b(mq), nonzero_lora_b(mf);
            int64_t ids[B * T];
            cp_batch b;
            make_batch(mq, ids, &b);
            const int64_t V = cp_model_vocab_size(mq);
            float *lq = malloc((size_t)(B * T * V) * sizeof *lq), *lf = malloc((size_t)(B * T * V) * sizeof *lf);
            cp_outputs oq = {.logits = lq}, of = {.logits = lf};
            CHECK_OK(cp_model_forward(mq, &b, &oq));
            CHECK_OK(cp_model_forward(mf, &b, &of));
            double dl = 0;
            for (int64_t i = 0; i < B * T * V; i++) dl = fmax(dl, fabs(lq[i] - lf[i]));
            enum { CAP = 1 << 16 };
            float *gq = malloc(CAP * sizeof *gq), *gf = malloc(CAP * sizeof *gf);
            double loss_q, loss_f, gmax = 0, gdiff = 0;
            const int64_t n = lora_grads(mq, &b, gq, CAP, &loss_q);
            CHECK(lora_grads(mf, &b, gf, CAP, &loss_f) == n && n > 0, "the same LoRA parameters");
            for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(gf[i])), gdiff = fmax(gdiff, fabs(gq[i] - gf[i]));
            printf("  %s %s: logits %.2e, loss %.2e, %lld LoRA grads %.2e of the largest\n", MODELS[k],
                   flags[f] == CP_LOAD_QUANTIZE_Q8_0 ? "Q8_0" : "Q4_K", dl, fabs(loss_q - loss_f), (long long)n, gdiff / gmax);
            CHECK(dl <= 2e-5, "logits differ by %.3e", dl);
            CHECK(gdiff <= 1e-4 * gmax, "LoRA gradients differ by %.3e of %.3e", gdiff, gmax);
            free(lq), free(lf), free(gq), free(gf);
            cp_model_free(mq), cp_model_free(mf);
        }
}

TEST(finite_differences_of_a_lora_a_on_the_quantized_model) {
    /* lora_A of the first layer: its gradient crosses every quantized layer above in the input-gradient pass */
    cp_model *m = load(MODELS[0], CP_LOAD_QUANTIZE_Q8_0);
    if (!m) return;
    cp_lora_options o;
    cp_lora_options_init(&o);
    o.dropout = 0;
    CHECK_OK(cp_model_add_lora_adapter(m, NULL, &o, 3));
    nonzero_lora_b(m);
    int64_t ids[B * T];
    cp_batch b;
    make_batch(m, ids, &b);
    cp_param **ps;
    int n;
    cp_peft_trainable_params(m, &ps, &n);
    cp_param *a = NULL;
    for (int i = 0; i < n && !a; i++) if (ps[i]->grad && strstr(ps[i]->name, "lora_A")) a = ps[i];
    cp_free(ps);
    CHECK(a != NULL, "a lora_A");
    if (!a) { cp_model_free(m); return; }
    enum { CAP = 1 << 16 };
    float *g = malloc(CAP * sizeof *g);
    double loss, worst = 0;
    lora_grads(m, &b, g, CAP, &loss);
    float *ga = malloc((size_t)a->numel * sizeof *ga);
    memcpy(ga, g, (size_t)a->numel * sizeof *ga); /* the first trainable parameter is this lora_A */
    for (int64_t j = 0; j < a->numel; j += a->numel / 7 + 1) {
        const float keep = a->data[j], h = 1e-2f;
        cp_outputs out = {0};
        a->data[j] = keep + h;
        cp_model_forward(m, &b, &out);
        const double lp = out.loss;
        a->data[j] = keep - h;
        cp_model_forward(m, &b, &out);
        a->data[j] = keep;
        const double num = (lp - out.loss) / (2 * h);
        worst = fmax(worst, fabs(num - ga[j]) / fmax(1e-3, fmax(fabs(num), fabs(ga[j]))));
    }
    printf("  %s: lora_A gradient vs central differences: %.2e relative\n", a->name, worst);
    CHECK(worst < 2e-2, "off by %.3e", worst);
    free(g), free(ga);
    cp_model_free(m);
}

TEST(lora_training_on_a_q8_0_base_tracks_the_f32_base) {
    for (int k = 0; k < 2; k++) {
        cp_model *mq = load(MODELS[k], CP_LOAD_QUANTIZE_Q8_0), *mf = load(MODELS[k], CP_LOAD_WEIGHTS);
        if (!mq || !mf) { cp_model_free(mq), cp_model_free(mf); continue; }
        cp_model *ms[2] = {mq, mf};
        cp_lora_options o;
        cp_lora_options_init(&o);
        o.dropout = 0;
        int64_t ids[B * T];
        cp_batch b;
        make_batch(mq, ids, &b);
        enum { CAP = 1 << 16 };
        float *g = malloc(CAP * sizeof *g);
        for (int i = 0; i < 2; i++) CHECK_OK(cp_model_add_lora_adapter(ms[i], NULL, &o, 11));
        double worst = 0, first = 0, last = 0;
        for (int step = 0; step < 8; step++) {
            double loss[2];
            for (int i = 0; i < 2; i++) {
                lora_grads(ms[i], &b, g, CAP, &loss[i]);
                cp_param **ps;
                int n;
                cp_peft_trainable_params(ms[i], &ps, &n); /* SGD, lr 0.1 */
                for (int p = 0; p < n; p++)
                    for (int64_t j = 0; ps[p]->grad && j < ps[p]->numel; j++) ps[p]->data[j] -= 0.1f * ps[p]->grad[j] / (B * (T - 1));
                cp_free(ps);
            }
            worst = fmax(worst, fabs(loss[0] - loss[1]) / loss[1]);
            if (getenv("QDEBUG")) printf("    step %d: %.6f %.6f\n", step, loss[0], loss[1]);
            if (step == 0) first = loss[1];
            last = loss[1];
        }
        printf("  %s: 8 LoRA steps, loss %.5f -> %.5f (f32); Q8_0 base within %.2e relative\n", MODELS[k], first, last, worst);
        CHECK(last < first, "the loss must fall");
        CHECK(worst <= 1.5e-2, "Q8_0 losses differ by %.3e relative", worst);
        free(g);
        cp_model_free(mq), cp_model_free(mf);
    }
}

TEST(merging_on_a_quantized_base_dequantizes_the_weight) {
    cp_model *m = load(MODELS[1], CP_LOAD_QUANTIZE_Q4_K);
    if (!m) return;
    cp_lora_options o;
    cp_lora_options_init(&o);
    CHECK_OK(cp_model_add_lora_adapter(m, NULL, &o, 5));
    cp_module *attn = cp_module_find(m->root, "transformer.h.0.attn.c_attn");
    CHECK(attn && cp_dtype_is_quantized(attn->weight->stored_dtype) && attn->weight->stored_transposed, "c_attn quantized NT");
    float *before = malloc((size_t)attn->weight->numel * sizeof *before);
    cp_param_export(attn->weight, CP_F32, before); /* (C, 3C) as the checkpoint holds it */
    CHECK_OK(cp_model_merge_adapters(m));
    CHECK(attn->weight->data && !attn->weight->stored && !attn->weight->owns_stored, "merged into an f32 copy");
    double d = 0;
    for (int64_t i = 0; i < attn->weight->numel; i++) d = fmax(d, fabs(attn->weight->data[i] - before[i]));
    printf("  merge of a zero-initialised LoRA B on Q4_K c_attn: max change %.2e\n", d);
    CHECK(d == 0, "merging B = 0 must leave the dequantized weight as it was (%.3e)", d);
    free(before);
    cp_model_free(m);
}

int main(void) {
    RUN(which_weights_are_quantized);
    RUN(quantized_model_computes_with_the_dequantized_weights);
    RUN(finite_differences_of_a_lora_a_on_the_quantized_model);
    RUN(lora_training_on_a_q8_0_base_tracks_the_f32_base);
    RUN(merging_on_a_quantized_base_dequantizes_the_weight);
    return test_summary();
}
