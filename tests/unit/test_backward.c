/*
 * test_backward.c — every backward pass against finite differences of its forward:
 * layer norm, attention (causal, windowed, padded, fully masked rows, fused and separate q/k/v),
 * Linear and Conv1D with LoRA (input, A and B gradients), LoRA on an embedding, the LM head with
 * cross-entropy, and whole models (GPT-Neo and GPT-2 with LoRA, trained biases and
 * modules_to_save; T5 encoder-decoders with LoRA on the relative bias tables, the embeddings, q/v),
 * with and without activation recompute.
 *
 * Central differences in f32 are noisy; each check compares gradient entries large enough to be
 * meaningful with a relative tolerance, and prints the worst relative error it saw.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "models/model.h"
#include "nn/attention.h"
#include "nn/layernorm.h"
#include "nn/linear.h"
#include "models/lm_head.h"
#include "nn/rope.h"
#include "nn/rmsnorm.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <stdlib.h>

static unsigned seed_state = 12345;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static double rel_err(double analytic, double numeric) {
    return fabs(analytic - numeric) / fmax(1e-2, fmax(fabs(analytic), fabs(numeric)));
}

/* ---- layer norm --------------------------------------------------------------------------------- */

static double ln_loss(const cp_module *m, const float *x, const float *w_out, int64_t N, int64_t C) {
    float *y = malloc((size_t)(N * C) * sizeof *y);
    cp_layernorm_forward(m, y, NULL, NULL, x, N);
    double s = 0;
    for (int64_t i = 0; i < N * C; i++) s += (double)y[i] * w_out[i];
    free(y);
    return s;
}

TEST(layernorm_backward) {
    const int64_t N = 3, C = 7;
    cp_module *m = cp_module_layernorm(NULL, "ln", C, 1e-5);
    m->weight->data = malloc(C * sizeof(float));
    m->bias->data = malloc(C * sizeof(float));
    m->weight->owns_data = m->bias->owns_data = 1;
    m->weight->grad = calloc(C, sizeof(float));
    m->bias->grad = calloc(C, sizeof(float));
    float x[21], w_out[21], dx[21] = {0}, mean[3], rstd[3], y[21];
    for (int i = 0; i < C; i++) { m->weight->data[i] = 1 + 0.3f * frand(); m->bias->data[i] = 0.2f * frand(); }
    for (int i = 0; i < N * C; i++) { x[i] = 2 * frand(); w_out[i] = frand(); }
    cp_layernorm_forward(m, y, mean, rstd, x, N);
    cp_layernorm_backward(m, dx, w_out, x, mean, rstd, N);
    double worst = 0;
    const float h = 1e-2f;
    for (int i = 0; i < N * C; i++) {
        float keep = x[i];
        x[i] = keep + h; double lp = ln_loss(m, x, w_out, N, C);
        x[i] = keep - h; double lm = ln_loss(m, x, w_out, N, C);
        x[i] = keep;
        worst = fmax(worst, rel_err(dx[i], (lp - lm) / (2 * h)));
    }
    for (int c = 0; c < C; c++) {
        float keep = m->weight->data[c];
        m->weight->data[c] = keep + h; double lp = ln_loss(m, x, w_out, N, C);
        m->weight->data[c] = keep - h; double lm = ln_loss(m, x, w_out, N, C);
        m->weight->data[c] = keep;
        worst = fmax(worst, rel_err(m->weight->grad[c], (lp - lm) / (2 * h)));
        keep = m->bias->data[c];
        m->bias->data[c] = keep + h; lp = ln_loss(m, x, w_out, N, C);
        m->bias->data[c] = keep - h; lm = ln_loss(m, x, w_out, N, C);
        m->bias->data[c] = keep;
        worst = fmax(worst, rel_err(m->bias->grad[c], (lp - lm) / (2 * h)));
    }
    printf("  layer norm: worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "layer norm backward off by %.3e", worst);
    cp_module_free(m);
    /* elementwise_affine=False (OPT's layer_norm_elementwise_affine false): no weight, no bias */
    cp_module *plain = cp_module_layernorm_affine(NULL, "ln", C, 1e-5, 0);
    memset(dx, 0, sizeof dx);
    cp_layernorm_forward(plain, y, mean, rstd, x, N);
    cp_layernorm_backward(plain, dx, w_out, x, mean, rstd, N);
    double worst_plain = 0;
    for (int i = 0; i < N * C; i++) {
        float keep = x[i];
        x[i] = keep + h; double lp = ln_loss(plain, x, w_out, N, C);
        x[i] = keep - h; double lm = ln_loss(plain, x, w_out, N, C);
        x[i] = keep;
        worst_plain = fmax(worst_plain, rel_err(dx[i], (lp - lm) / (2 * h)));
    }
    printf("  layer norm without weight and bias: worst relative error %.2e\n", worst_plain);
    CHECK(worst_plain < 2e-2, "non-affine layer norm backward off by %.3e", worst_plain);
    cp_module_free(plain);
}

/* ---- attention ---------------------------------------------------------------------------------- */

static double att_loss(cp_attention_args *a, const float *w_out, size_t n) {
    cp_arena ar;
    cp_arena_init(&ar);
    cp_attention_forward(a, &ar);
    cp_arena_free(&ar);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a->out[i] * w_out[i];
    return s;
}

static void attention_case(int64_t window, int fused, int pad, cp_attn_empty_row empty, double *worst) {
    const int64_t B = 2, T = 6, NH = 2, hs = 3, C = NH * hs, stride = fused ? 3 * C : C;
    float qkv[2 * 6 * 18], out[2 * 6 * 6], w_out[72], probs[2 * 2 * 36], dqkv[2 * 6 * 18];
    int64_t mask[12];
    for (int i = 0; i < 2 * 6 * 18; i++) qkv[i] = frand();
    for (int i = 0; i < 72; i++) w_out[i] = frand();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = !pad || (b == 0 ? t >= 2 : t < 4); /* row 0 left-, row 1 right-padded */
    /* Queries that see no key (row 0, t < 2 when padded) get PyTorch's gradient through `scores +
     * finfo.min`, which is not the derivative of their constant output: leave them out of the loss. */
    if (pad)
        for (int t = 0; t < 2; t++)
            for (int c = 0; c < C; c++) w_out[t * C + c] = 0.0f;
    cp_attention_args a = {.B = B, .T = T, .NH = NH, .hs = hs, .scale = 0.7f, .window = window,
                           .key_mask = pad ? mask : NULL, .empty_row = empty, .out = out, .probs = probs};
    a.q = qkv; a.k = qkv + (fused ? C : B * T * C); a.v = qkv + (fused ? 2 * C : 2 * B * T * C);
    a.q_stride = a.k_stride = a.v_stride = stride;
    att_loss(&a, w_out, 72);
    cp_arena ar;
    cp_arena_init(&ar);
    memset(dqkv, 0, sizeof dqkv);
    float *dq = dqkv, *dk = dqkv + (a.k - qkv), *dv = dqkv + (a.v - qkv);
    CHECK_OK(cp_attention_backward(&a, w_out, dq, dk, dv, &ar));
    cp_arena_free(&ar);
    a.probs = NULL;
    const float h = 1e-2f;
    for (int i = 0; i < 2 * 6 * 18; i++) {
        if (fused == 0 && i >= 3 * B * T * C) break;
        float keep = qkv[i];
        qkv[i] = keep + h; double lp = att_loss(&a, w_out, 72);
        qkv[i] = keep - h; double lm = att_loss(&a, w_out, 72);
        qkv[i] = keep;
        *worst = fmax(*worst, rel_err(dqkv[i], (lp - lm) / (2 * h)));
    }
}

TEST(attention_backward) {
    double worst = 0;
    for (int w = 0; w < 2; w++)
        for (int fused = 0; fused < 2; fused++)
            for (int pad = 0; pad < 2; pad++)
                for (int e = 0; e < 2; e++) attention_case(w ? 3 : 0, fused, pad, e ? CP_ATTN_EMPTY_ALL : CP_ATTN_EMPTY_CAUSAL, &worst);
    printf("  attention (16 variants): worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "attention backward off by %.3e", worst);
}

/* ---- RoPE and RMSNorm (the Llama family) -------------------------------------------------------- */

static double rope_loss(const float *x, const float *w_out, int64_t n, int64_t N, int64_t NH, int64_t hs, const float *c, const float *sn) {
    float y[512];
    memcpy(y, x, (size_t)n * sizeof *y);
    cp_rope_forward(y, N, NH, hs, NH * hs, c, sn);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)y[i] * w_out[i];
    return s;
}

/* A LoRA on q_proj whose gradient silently vanishes through RoPE is the classic failure: the
 * rotation's backward must be its exact transpose, for every scaling type. */
TEST(rope_backward) {
    const int64_t N = 5, NH = 3, hs = 8, n = N * NH * hs;
    float x[120], w_out[120], dx[120], c[5 * 4], sn[5 * 4];
    int64_t pos[5] = {0, 3, 7, 30, 100};
    cp_rope variants[] = {
        {.dim = hs, .theta = 10000, .type = CP_ROPE_DEFAULT},
        {.dim = hs, .theta = 500000, .type = CP_ROPE_LINEAR, .factor = 2},
        {.dim = hs, .theta = 10000, .type = CP_ROPE_DYNAMIC, .factor = 2, .max_positions = 16},
        {.dim = hs, .theta = 10000, .type = CP_ROPE_LLAMA3, .factor = 8, .low_freq_factor = 1, .high_freq_factor = 4,
         .original_max_positions = 32},
    };
    double worst = 0;
    for (int v = 0; v < 4; v++) {
        cp_rope_tables(&variants[v], pos, N, 101, c, sn);
        for (int i = 0; i < n; i++) { x[i] = frand(); w_out[i] = frand(); dx[i] = w_out[i]; }
        cp_rope_backward(dx, N, NH, hs, NH * hs, c, sn);
        const float h = 1e-2f;
        for (int i = 0; i < n; i++) {
            float keep = x[i];
            x[i] = keep + h; double lp = rope_loss(x, w_out, n, N, NH, hs, c, sn);
            x[i] = keep - h; double lm = rope_loss(x, w_out, n, N, NH, hs, c, sn);
            x[i] = keep;
            worst = fmax(worst, rel_err(dx[i], (lp - lm) / (2 * h)));
        }
    }
    /* partial rotary (the first 4 of 8 dims: NeoX, Phi) in halves and in GPT-J's interleaved pairs */
    for (int il = 0; il < 2; il++) {
        cp_rope r = {.dim = 4, .theta = 10000, .type = CP_ROPE_DEFAULT};
        cp_rope_tables(&r, pos, N, 101, c, sn);
        for (int i = 0; i < n; i++) { x[i] = frand(); w_out[i] = frand(); dx[i] = w_out[i]; }
        cp_rope_backward_partial(dx, N, NH, hs, NH * hs, 4, il, c, sn);
        const float h = 1e-2f;
        for (int i = 0; i < n; i++) {
            float keep = x[i], y[120];
            double l[2];
            for (int q = 0; q < 2; q++) {
                x[i] = keep + (q ? -h : h);
                memcpy(y, x, sizeof y);
                cp_rope_forward_partial(y, N, NH, hs, NH * hs, 4, il, c, sn);
                l[q] = 0;
                for (int k = 0; k < n; k++) l[q] += (double)y[k] * w_out[k];
            }
            x[i] = keep;
            worst = fmax(worst, rel_err(dx[i], (l[0] - l[1]) / (2 * h)));
        }
    }
    printf("  RoPE (default, linear, dynamic, llama3, partial halves / interleaved): worst relative error %.2e\n", worst);
    CHECK(worst < 1e-3, "RoPE backward off by %.3e", worst);
}

static double rms_loss(const cp_module *m, const float *x, const float *w_out, int64_t N, int64_t C) {
    float y[64];
    cp_rmsnorm_forward(m, y, NULL, x, N);
    double s = 0;
    for (int64_t i = 0; i < N * C; i++) s += (double)y[i] * w_out[i];
    return s;
}

TEST(rmsnorm_backward) {
    const int64_t N = 4, C = 9;
    cp_module *m = cp_module_rmsnorm(NULL, "norm", "LlamaRMSNorm", C, 1e-5);
    m->weight->data = malloc(C * sizeof(float));
    m->weight->owns_data = 1;
    m->weight->grad = calloc(C, sizeof(float));
    float x[36], w_out[36], dx[36] = {0}, y[36], rstd[4];
    for (int i = 0; i < C; i++) m->weight->data[i] = 1 + 0.3f * frand();
    for (int i = 0; i < N * C; i++) { x[i] = 2 * frand(); w_out[i] = frand(); }
    cp_rmsnorm_forward(m, y, rstd, x, N);
    cp_rmsnorm_backward(m, dx, w_out, x, rstd, N);
    double worst = 0;
    const float h = 1e-2f;
    for (int i = 0; i < N * C; i++) {
        float keep = x[i];
        x[i] = keep + h; double lp = rms_loss(m, x, w_out, N, C);
        x[i] = keep - h; double lm = rms_loss(m, x, w_out, N, C);
        x[i] = keep;
        worst = fmax(worst, rel_err(dx[i], (lp - lm) / (2 * h)));
    }
    for (int c2 = 0; c2 < C; c2++) {
        float keep = m->weight->data[c2];
        m->weight->data[c2] = keep + h; double lp = rms_loss(m, x, w_out, N, C);
        m->weight->data[c2] = keep - h; double lm = rms_loss(m, x, w_out, N, C);
        m->weight->data[c2] = keep;
        worst = fmax(worst, rel_err(m->weight->grad[c2], (lp - lm) / (2 * h)));
    }
    printf("  RMSNorm: worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "RMSNorm backward off by %.3e", worst);
    cp_module_free(m);
}

/* ---- whole models ------------------------------------------------------------------------------- */

static double model_loss(cp_model *m, const cp_batch *b) {
    cp_outputs out = {0};
    cp_model_forward(m, b, &out);
    return out.loss * (double)out.loss_tokens;
}

static void whole_model_case(const char *model_dir, const char *adapter, int recompute, const char *label) {
    seed_state = 12345; /* the same sampled entries whatever ran before */
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_adapter_load(m, adapter, "default", 1, 1));
    cp_param **params;
    int n;
    CHECK_OK(cp_peft_trainable_params(m, &params, &n));
    const int64_t B = 2, T = 9, V = cp_model_vocab_size(m);
    int64_t ids[18], mask[18], labels[18];
    for (int i = 0; i < 18; i++) {
        ids[i] = 1 + (int64_t)((frand() + 1) * 0.5f * (float)(V - 2));
        mask[i] = !(i >= 15);
        labels[i] = mask[i] ? ids[i] : -100;
    }
    cp_batch b = {.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .labels = labels};
    double loss_sum;
    int64_t n_targets;
    CHECK_OK(cp_model_forward_backward(m, &b, 1.0, recompute, &loss_sum, &n_targets));
    CHECK(fabs(loss_sum - model_loss(m, &b)) < 1e-3, "%s: training loss %f vs forward %f", label, loss_sum, model_loss(m, &b));
    double worst = 0;
    int checked = 0, zero_grads = 0;
    const float h = 1e-2f;
    for (int p = 0; p < n; p++) {
        double norm = 0;
        for (int64_t k = 0; k < params[p]->numel; k++) norm += fabs(params[p]->grad[k]);
        if (norm == 0) { zero_grads++; fprintf(stderr, "  %s: zero gradient for %s\n", label, params[p]->name); }
        for (int s = 0; s < 4; s++) {
            int64_t k = (int64_t)((frand() + 1) * 0.5f * (float)(params[p]->numel - 1));
            /* Richardson-extrapolated central difference: truncation error O(h⁴) */
            float keep = params[p]->data[k];
            double d[2];
            for (int q = 0; q < 2; q++) {
                float hq = q ? h / 2 : h;
                params[p]->data[k] = keep + hq; double lp = model_loss(m, &b);
                params[p]->data[k] = keep - hq; double lm = model_loss(m, &b);
                d[q] = (lp - lm) / (2 * hq);
            }
            params[p]->data[k] = keep;
            double numeric = (4 * d[1] - d[0]) / 3;
            if (fabs(numeric) < 2e-2 && fabs(params[p]->grad[k]) < 2e-2) continue; /* below f32 noise */
            worst = fmax(worst, rel_err(params[p]->grad[k], numeric));
            checked++;
        }
    }
    printf("  %s: %d trainable tensors, %d entries checked, worst relative error %.2e\n", label, n, checked, worst);
    CHECK(zero_grads == 0, "%s: %d trainable tensors got no gradient", label, zero_grads);
    CHECK(worst < 5e-2, "%s: gradient off by %.3e (f32 central differences; the exact check is test_train)", label, worst);
    CHECK(checked > n / 2, "%s: too few entries checked (%d)", label, checked);
    if (!recompute) {
        /* activation recompute must give the very same gradients */
        float **saved = malloc((size_t)n * sizeof *saved);
        for (int p = 0; p < n; p++) {
            saved[p] = malloc((size_t)params[p]->numel * sizeof(float));
            memcpy(saved[p], params[p]->grad, (size_t)params[p]->numel * sizeof(float));
            memset(params[p]->grad, 0, (size_t)params[p]->numel * sizeof(float));
        }
        CHECK_OK(cp_model_forward_backward(m, &b, 1.0, 1, &loss_sum, &n_targets));
        double d = 0;
        for (int p = 0; p < n; p++) { d = fmax(d, test_max_abs_diff(saved[p], params[p]->grad, (size_t)params[p]->numel)); free(saved[p]); }
        free(saved);
        CHECK(d == 0, "%s: recompute changes the gradients by %.3e", label, d);
    }
    cp_free(params);
    cp_model_free(m);
}

TEST(whole_model_gradients) {
    whole_model_case("tests/fixtures/models/gpt_neo_tiny", "tests/fixtures/lora/neo_notebook", 0, "GPT-Neo q/k/v LoRA");
    whole_model_case("tests/fixtures/models/gpt_neo_tiny", "tests/fixtures/lora/neo_embedding", 0, "GPT-Neo wte + q LoRA");
    whole_model_case("tests/fixtures/models/gpt_neo_tiny", "tests/fixtures/lora/neo_exclude_bias_all", 0, "GPT-Neo MLP LoRA, bias=all");
    whole_model_case("tests/fixtures/models/gpt2_tiny", "tests/fixtures/lora/gpt2_lora_only_mts", 0, "GPT-2 Conv1D, lora_only, ln_f saved");
    whole_model_case("tests/fixtures/models/gpt2_untied", "tests/fixtures/lora/gpt2_untied_lm_head", 1, "GPT-2 lm_head LoRA, recompute");
    whole_model_case("tests/fixtures/llama/models/llama_tiny", "tests/fixtures/llama/grads/llama_qv", 0, "Llama q/v LoRA through RoPE and GQA");
    whole_model_case("tests/fixtures/llama/models/mistral_tiny", "tests/fixtures/llama/grads/mistral_qkvo", 1, "Mistral q/k/v/o, window, recompute");
    whole_model_case("tests/fixtures/llama/models/llama_bias", "tests/fixtures/llama/grads/llama_bias_all", 0, "Llama biases, all-linear, bias=all");
    whole_model_case("tests/fixtures/llama/models/qwen2_sliding", "tests/fixtures/llama/grads/qwen2_sliding_qkvo", 1, "Qwen2 sliding layers, recompute");
    whole_model_case("tests/fixtures/llama/models/qwen3_tiny", "tests/fixtures/llama/grads/qwen3_all_linear", 1, "Qwen3 q/k norms, all-linear, recompute");
    whole_model_case("tests/fixtures/decoders/opt_post_ln/model", "tests/fixtures/decoders/opt_post_ln/lora/embed_bias", 0,
                     "OPT post-LN, learned positions + 2, Linears + embed_tokens LoRA, bias=lora_only");
    whole_model_case("tests/fixtures/decoders/bloom_post_residual/model",
                     "tests/fixtures/decoders/bloom_post_residual/lora/embed_bias", 0,
                     "BLOOM ALiBi (6 heads), per-head fused qkv, residual from LayerNorm, embeddings LayerNorm");
    whole_model_case("tests/fixtures/llama/models/gemma_tiny", "tests/fixtures/llama/grads/gemma_all_linear", 0, "Gemma 1+w norms, scaled embeddings, GeGLU");
    /* the rotary LayerNorm blocks (models/rotary_common.c), one per variant */
#define DEC "tests/fixtures/decoders/"
    whole_model_case(DEC "gpt_neox/model", DEC "gpt_neox/lora/all_linear", 0, "GPT-NeoX fused qkv, partial RoPE, parallel residual");
    whole_model_case(DEC "gpt_neox_sequential/model", DEC "gpt_neox_sequential/lora/all_linear", 1, "GPT-NeoX sequential residual, recompute");
    whole_model_case(DEC "gptj/model", DEC "gptj/lora/all_linear", 0, "GPT-J interleaved RoPE, one-norm parallel block");
    whole_model_case(DEC "phi_qk_layernorm/model", DEC "phi_qk_layernorm/lora/all_linear", 0, "Phi qk_layernorm, partial RoPE");
    /* the Llama family's Gemma 2 and Phi-3 layers (models/llama_blocks.c) */
    whole_model_case(DEC "gemma2_softcap/model", DEC "gemma2_softcap/lora/all_linear", 0, "Gemma 2 soft-caps 2 / 3, post-norms, window");
    whole_model_case(DEC "gemma2_nocap/model", DEC "gemma2_nocap/lora/all_linear", 1, "Gemma 2 uncapped, attention_bias, recompute");
    whole_model_case(DEC "phi3_partial/model", DEC "phi3_partial/lora/all_linear", 0, "Phi-3 fused qkv / gate_up, partial RoPE");
    whole_model_case(DEC "glm/model", DEC "glm/lora/all_linear", 1, "GLM interleaved partial RoPE, q/k/v biases, recompute");
    /* encoder-decoders: the labels (B,T) are the decoder's targets and, shifted, its inputs */
    whole_model_case("tests/fixtures/t5/models/t5_asym", "tests/fixtures/t5/lora/lora_asym_relbias", 0, "T5 relative bias tables + o LoRA");
    whole_model_case("tests/fixtures/t5/models/t5_asym", "tests/fixtures/t5/lora/lora_asym_default", 1, "T5 3 decoder blocks, recompute");
    whole_model_case("tests/fixtures/t5/models/t5_v11", "tests/fixtures/t5/lora/lora_v11_embed", 0, "T5 v1.1 embed_tokens + wo LoRA");
}

int main(void) {
    cp_set_quiet(1);
    RUN(layernorm_backward);
    RUN(attention_backward);
    RUN(rope_backward);
    RUN(rmsnorm_backward);
    RUN(whole_model_gradients);
    return test_summary();
}
