/*
 * test_dropout.c — the model's own dropout in training (nn/dropout.h, models/run.h), as transformers'
 * train() mode applies it:
 *   - masks: the fraction dropped is p, survivors are scaled by exactly 1/(1−p), the same key draws
 *     the same bits (any stretch alone, any instruction-set variant), other seeds / sites / rows draw
 *     independent ones;
 *   - attention: out = dropout(P)·V with P saved (observed through identity values), the reference and
 *     the fast kernel agree, the backward matches finite differences under the same masks; the same
 *     for DeBERTa's disentangled attention;
 *   - whole models with every dropout at p = 0.5 (BERT, RoBERTa's twice-used head dropout, ELECTRA's
 *     dropout before embeddings_project, DistilBERT, DeBERTa v1 / v2 with its ConvLayer and
 *     pos_dropout, GPT-2, GPT-Neo, Llama's attention_dropout, T5's stacks with their twice-used dropout and
 *     the cross-attention's): the training loss differs from eval
 *     and changes with the seed, is equal for equal seeds, equals eval with the switch off; the
 *     embeddings' site drops half its outputs and doubles the rest; the analytic gradient of every
 *     trained tensor matches central differences of the training loss under the same seed (so the
 *     backward applies the forward's masks) and recompute gives the very same gradients;
 *   - the trainer: a run resumed from a checkpoint ends on the bytes of the uninterrupted run with
 *     dropout on (SEQ_CLS, CAUSAL_LM), --model-dropout off changes the run, and bad switch values
 *     are refused.
 * The masks are not PyTorch's, so there is no parity with it here: the checks are properties.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "io/json.h"
#include "kernels/dispatch.h"
#include "models/model.h"
#include "nn/attention.h"
#include "nn/disentangled_attention.h"
#include "nn/dropout.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "train/trainer.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned seed_state = 12345;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static double rel_err(double analytic, double numeric) {
    return fabs(analytic - numeric) / fmax(1e-2, fmax(fabs(analytic), fabs(numeric)));
}

static char tmpdir[] = "/tmp/cpeft_dropout_XXXXXX";

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- masks -------------------------------------------------------------------------------------- */

/* The fraction of positions where two 0/x masks agree on dropping or keeping. */
static double agreement(const float *a, const float *b, int64_t n) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) same += (a[i] == 0) == (b[i] == 0);
    return (double)same / (double)n;
}

TEST(masks_drop_p_and_scale_the_survivors) {
    const int64_t R = 500, n = 1000, N = R * n;
    float *x = malloc((size_t)N * sizeof *x), *y = malloc((size_t)N * sizeof *y), *z = malloc((size_t)N * sizeof *z);
    for (int64_t i = 0; i < N; i++) x[i] = 1.0f;
    const double ps[3] = {0.1, 0.5, 0.9};
    for (int k = 0; k < 3; k++) {
        const double p = ps[k];
        const cp_dropout d = cp_dropout_site(p, 42, "bert.encoder.layer.0.output.dropout", 0);
        cp_dropout_apply(&d, y, x, 0, R, n);
        const float keep = (float)(1.0 / (1.0 - p));
        int64_t zeros = 0, other = 0;
        for (int64_t i = 0; i < N; i++) zeros += y[i] == 0.0f, other += y[i] != 0.0f && y[i] != keep;
        const double frac = (double)zeros / (double)N, sigma = sqrt(p * (1 - p) / (double)N);
        printf("  p = %.1f: %.5f dropped over %lld elements (%.1f sigma), survivors all %.7g: %s\n", p, frac, (long long)N,
               fabs(frac - p) / sigma, keep, other ? "NO" : "yes");
        CHECK(fabs(frac - p) < 5 * sigma, "p = %g: dropped fraction %.5f", p, frac);
        CHECK(other == 0, "p = %g: %lld survivors not scaled by exactly 1/(1-p)", p, (long long)other);
        /* independence: rows, columns, sites, seeds each draw their own bits: agreement p² + (1-p)² */
        const double indep = p * p + (1 - p) * (1 - p), tol = 5 * sqrt(indep * (1 - indep) / (double)(N - n));
        double rows = agreement(y, y + n, N - n), cols = agreement(y, y + 1, N - 1);
        const cp_dropout d2 = cp_dropout_site(p, 42, "bert.encoder.layer.0.output.dropout", 1);
        cp_dropout_apply(&d2, z, x, 0, R, n);
        double calls = agreement(y, z, N);
        const cp_dropout d3 = cp_dropout_site(p, 43, "bert.encoder.layer.0.output.dropout", 0);
        cp_dropout_apply(&d3, z, x, 0, R, n);
        double seeds = agreement(y, z, N);
        const cp_dropout d4 = cp_dropout_site(p, 42, "bert.encoder.layer.1.output.dropout", 0);
        cp_dropout_apply(&d4, z, x, 0, R, n);
        double sites = agreement(y, z, N);
        printf("          agreement (independent: %.4f) of next rows %.4f, next columns %.4f, second call %.4f, "
               "next seed %.4f, next layer %.4f\n", indep, rows, cols, calls, seeds, sites);
        CHECK(fabs(rows - indep) < tol && fabs(cols - indep) < tol && fabs(calls - indep) < tol && fabs(seeds - indep) < tol &&
                  fabs(sites - indep) < tol,
              "p = %g: masks are correlated (%.4f %.4f %.4f %.4f %.4f, expected %.4f)", p, rows, cols, calls, seeds, sites, indep);
        /* the same key draws the same bits: again, by stretches of rows, row by row from an offset */
        cp_dropout_apply(&d, z, x, 0, R, n);
        CHECK(!memcmp(y, z, (size_t)N * sizeof *y), "p = %g: the same key drew another mask", p);
        memset(z, 0, (size_t)N * sizeof *z);
        for (int64_t r = 0; r < R; r++)
            for (int64_t j0 = 0; j0 < n; j0 += 37) cp_dropout_apply_row(&d, z + r * n + j0, x, r, j0, j0 + 37 < n ? 37 : n - j0);
        CHECK(!memcmp(y, z, (size_t)N * sizeof *y), "p = %g: stretches drawn alone differ from the whole", p);
        cp_dropout_apply(&d, z, x, 7, 3, n);
        CHECK(!memcmp(y + 7 * n, z, (size_t)(3 * n) * sizeof *y), "p = %g: rows 7..9 drawn alone differ", p);
    }
    /* p = 0: the identity; p >= 1: zeros, as torch's input * 0 */
    for (int64_t i = 0; i < n; i++) x[i] = frand();
    cp_dropout d0 = cp_dropout_site(0.0, 1, "site", 0), d1 = cp_dropout_site(1.0, 1, "site", 0);
    CHECK(!cp_dropout_on(&d0) && cp_dropout_on(&d1), "p = 0 must be off, p = 1 on");
    cp_dropout_apply(&d0, y, x, 0, 1, n);
    CHECK(!memcmp(x, y, (size_t)n * sizeof *x), "p = 0 changed values");
    cp_dropout_apply(&d1, y, x, 0, 1, n);
    int nonzero = 0;
    for (int64_t i = 0; i < n; i++) nonzero += y[i] != 0;
    CHECK(nonzero == 0, "p = 1 kept %d values", nonzero);
    /* every instruction-set variant this CPU runs draws the same bits */
    int variants = 0;
    for (int isa = CP_ISA_BASE; isa < CP_ISA_COUNT; isa++) {
        const cp_kernel_table *t = cp_kernels_for((cp_isa)isa);
        if (!t) continue;
        t->dropout_row(z, x, n, 0x0123456789abcdefull, 5, 1u << 31, 2.0f);
        if (isa == CP_ISA_BASE) memcpy(y, z, (size_t)n * sizeof *y);
        CHECK(!memcmp(y, z, (size_t)n * sizeof *y), "the %s kernel draws another mask than base", t->name);
        variants++;
    }
    printf("  %d kernel variants draw identical masks\n", variants);
    free(x);
    free(y);
    free(z);
}

/* ---- attention ---------------------------------------------------------------------------------- */

/* Attention with v_j = e_j (hs = T keys): out row (b,i) of head h is then dropout(P)[b,h,i,:] itself. */
static void attention_observed(int causal, double *worst_scale, int64_t *dropped, int64_t *kept) {
    const int64_t B = 2, T = 48, NH = 2, hs = T, C = NH * hs, N = B * T;
    float *q = malloc((size_t)(N * C) * sizeof *q), *k = malloc((size_t)(N * C) * sizeof *k), *v = calloc((size_t)(N * C), sizeof *v);
    float *out = malloc((size_t)(N * C) * sizeof *out), *out_ref = malloc((size_t)(N * C) * sizeof *out_ref);
    float *probs = malloc((size_t)(B * NH * T * T) * sizeof *probs);
    for (int64_t i = 0; i < N * C; i++) { q[i] = frand(); k[i] = frand(); }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < T; j++)
            for (int64_t h = 0; h < NH; h++) v[(b * T + j) * C + h * hs + j] = 1.0f;
    const float p = 0.5f;
    cp_attention_args a = {.B = B, .T = T, .NH = NH, .hs = hs, .q = q, .k = k, .v = v, .q_stride = C, .k_stride = C,
                           .v_stride = C, .scale = 0.3f, .bidirectional = !causal, .empty_row = CP_ATTN_EMPTY_ALL,
                           .out = out, .probs = probs, .dropout = cp_dropout_site(p, 9, "attn.attn_dropout", 0)};
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_attention_forward(&a, &ar));
    a.out = out_ref;
    a.probs = NULL;
    CHECK_OK(cp_attention_forward_ref(&a, &ar));
    cp_arena_free(&ar);
    CHECK(test_max_abs_diff(out, out_ref, (size_t)(N * C)) < 1e-6, "%s: the fast and reference kernels disagree by %.3e",
          causal ? "causal" : "bidirectional", test_max_abs_diff(out, out_ref, (size_t)(N * C)));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++) {
                const float *P = probs + ((b * NH + h) * T + i) * T, *o = out + (b * T + i) * C + h * hs;
                double sum = 0;
                for (int64_t j = 0; j < T; j++) {
                    sum += P[j];
                    if (P[j] == 0) { CHECK(o[j] == 0, "a masked key got weight %g", o[j]); continue; }
                    if (o[j] == 0) { (*dropped)++; continue; }
                    (*kept)++;
                    *worst_scale = fmax(*worst_scale, fabs(o[j] / P[j] - 1 / (1 - p)));
                }
                CHECK(fabs(sum - 1) < 1e-5, "the saved probabilities are not P (row sum %.7f)", sum);
            }
    free(q);
    free(k);
    free(v);
    free(out);
    free(out_ref);
    free(probs);
}

static double att_loss(cp_attention_args *a, const float *w_out, size_t n) {
    cp_arena ar;
    cp_arena_init(&ar);
    cp_attention_forward(a, &ar);
    cp_arena_free(&ar);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a->out[i] * w_out[i];
    return s;
}

/* The backward under dropout against central differences of the forward with the same mask. */
static double attention_gradcheck(int causal, int pad) {
    const int64_t B = 2, T = 6, NH = 2, hs = 3, C = NH * hs;
    float qkv[3 * 2 * 6 * 6], out[72], w_out[72], probs[2 * 2 * 36], dqkv[3 * 72];
    int64_t mask[12];
    for (int i = 0; i < 216; i++) qkv[i] = frand();
    for (int i = 0; i < 72; i++) w_out[i] = frand();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = !pad || (b == 0 ? t >= 2 : t < 4);
    if (pad && causal) /* queries that see no key: PyTorch's gradient is not their derivative (test_backward.c) */
        for (int t = 0; t < 2; t++)
            for (int c = 0; c < C; c++) w_out[t * C + c] = 0.0f;
    cp_attention_args a = {.B = B, .T = T, .NH = NH, .hs = hs, .scale = 0.7f, .bidirectional = !causal,
                           .key_mask = pad ? mask : NULL, .empty_row = CP_ATTN_EMPTY_ALL, .out = out, .probs = probs,
                           .q = qkv, .k = qkv + 72, .v = qkv + 144, .q_stride = C, .k_stride = C, .v_stride = C,
                           .dropout = cp_dropout_site(0.5, 3, "attn", 0)};
    att_loss(&a, w_out, 72);
    cp_arena ar;
    cp_arena_init(&ar);
    memset(dqkv, 0, sizeof dqkv);
    CHECK_OK(cp_attention_backward(&a, w_out, dqkv, dqkv + 72, dqkv + 144, &ar));
    cp_arena_free(&ar);
    a.probs = NULL;
    double worst = 0;
    const float h = 1e-2f;
    for (int i = 0; i < 216; i++) {
        float keep = qkv[i];
        qkv[i] = keep + h; double lp = att_loss(&a, w_out, 72);
        qkv[i] = keep - h; double lm = att_loss(&a, w_out, 72);
        qkv[i] = keep;
        worst = fmax(worst, rel_err(dqkv[i], (lp - lm) / (2 * h)));
    }
    return worst;
}

TEST(attention_drops_its_probabilities) {
    double worst_scale = 0;
    int64_t dropped = 0, kept = 0;
    attention_observed(0, &worst_scale, &dropped, &kept);
    attention_observed(1, &worst_scale, &dropped, &kept);
    const double frac = (double)dropped / (double)(dropped + kept), sigma = sqrt(0.25 / (double)(dropped + kept));
    printf("  attention p = 0.5: %.4f of %lld visible probabilities dropped (%.1f sigma), survivors P/(1-p) to %.1e\n", frac,
           (long long)(dropped + kept), fabs(frac - 0.5) / sigma, worst_scale);
    CHECK(fabs(frac - 0.5) < 5 * sigma, "attention dropped %.4f", frac);
    CHECK(worst_scale < 1e-5, "attention survivors scaled by 1/(1-p) only to %.3e", worst_scale);
    double worst = 0;
    for (int causal = 0; causal < 2; causal++)
        for (int pad = 0; pad < 2; pad++) worst = fmax(worst, attention_gradcheck(causal, pad));
    printf("  attention backward under dropout (4 variants): worst relative error %.2e\n", worst);
    CHECK(worst < 2e-2, "attention backward under dropout off by %.3e", worst);
}

TEST(disentangled_attention_drops_its_probabilities) {
    const int64_t B = 2, T = 40, NH = 2, hs = T, C = NH * hs, N = B * T;
    float *q = malloc((size_t)(N * C) * sizeof *q), *k = malloc((size_t)(N * C) * sizeof *k), *v = calloc((size_t)(N * C), sizeof *v);
    float *out = malloc((size_t)(N * C) * sizeof *out), *probs = malloc((size_t)(B * NH * T * T) * sizeof *probs);
    for (int64_t i = 0; i < N * C; i++) { q[i] = frand(); k[i] = frand(); }
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < T; j++)
            for (int64_t h = 0; h < NH; h++) v[(b * T + j) * C + h * hs + j] = 1.0f;
    cp_disentangled_args a = {.version = CP_DEBERTA_V2, .B = B, .T = T, .NH = NH, .hs = hs, .q = q, .k = k, .v = v, .q_stride = C,
                              .k_stride = C, .v_stride = C, .scale_factor = 1, .out = out, .probs = probs,
                              .dropout = cp_dropout_site(0.5, 5, "attention.self.dropout", 0)};
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_disentangled_attention_forward(&a, &ar));
    cp_arena_free(&ar);
    int64_t dropped = 0, kept = 0;
    double worst = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < T; j++) {
                    const float P = probs[((b * NH + h) * T + i) * T + j], o = out[(b * T + i) * C + h * hs + j];
                    if (o == 0) { dropped++; continue; }
                    kept++;
                    worst = fmax(worst, fabs(o / P - 2.0));
                }
    const double frac = (double)dropped / (double)(dropped + kept), sigma = sqrt(0.25 / (double)(dropped + kept));
    printf("  disentangled attention p = 0.5: %.4f of %lld dropped (%.1f sigma), survivors 2P to %.1e\n", frac,
           (long long)(dropped + kept), fabs(frac - 0.5) / sigma, worst);
    CHECK(fabs(frac - 0.5) < 5 * sigma && worst < 1e-5, "disentangled attention dropout: %.4f dropped, scale off by %.3e", frac, worst);
    free(q);
    free(k);
    free(v);
    free(out);
    free(probs);
}

/* ---- whole models ------------------------------------------------------------------------------- */

typedef struct {
    const char *label, *dir, *task, *targets;
    const char *const *extra; /* more parameters to train (by state-dict name), NULL-terminated, or NULL */
} model_case;

static int set_p(cp_module *m, void *ctx) {
    if (m->kind == CP_MOD_DROPOUT) m->p = *(const double *)ctx;
    return 0;
}

static cp_param *find_param(cp_model *m, const char *name) {
    cp_param **all = NULL, *found = NULL;
    int n = 0;
    if (cp_module_params(m->root, &all, &n) != CP_OK) return NULL;
    for (int i = 0; i < n && !found; i++)
        if (!strcmp(all[i]->name, name)) found = all[i];
    cp_free(all);
    return found;
}

/* Loads the case's model with every dropout at p and a LoRA adapter (random A and B) on its targets,
 * plus the extra parameters made trainable; NULL on failure. */
static cp_model *load_case(const model_case *c, double p, cp_param ***params, int *n) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_task(&m, c->dir, CP_LOAD_WEIGHTS, c->task));
    if (!m) return NULL;
    cp_module_visit(m->root, set_p, &p);
    m->config.attn_dropout = p; /* Llama's attention_dropout is a float of the config, not a module */
    cp_lora_options lo;
    cp_lora_options_init(&lo);
    lo.r = 4;
    lo.alpha = 8;
    lo.dropout = 0; /* the model's dropout alone */
    lo.target_modules = c->targets;
    cp_peft_config *cfg = NULL;
    cp_rng rng;
    cp_rng_seed(&rng, 5);
    CHECK_OK(cp_lora_config_for_task(&lo, c->task, &cfg));
    if (cfg) CHECK_OK(cp_peft_add(m, "default", cfg, &rng, 1, 1));
    cp_peft_config_free(cfg);
    CHECK_OK(cp_peft_trainable_params(m, params, n));
    for (int i = 0; c->extra && c->extra[i] && *params; i++) { /* base parameters trained too: a gradient buffer */
        cp_param *q = find_param(m, c->extra[i]);
        CHECK(q != NULL, "%s: no parameter %s", c->label, c->extra[i]);
        if (!q) continue;
        CHECK_OK(cp_param_make_writable(m, q));
        if (!q->grad) q->grad = cp_calloc((size_t)q->numel, sizeof *q->grad, "test gradients");
        cp_param **l = cp_realloc(*params, (size_t)(*n + 1) * sizeof *l, "test parameters");
        if (l) { l[(*n)++] = q; *params = l; }
    }
    for (int i = 0; i < *n; i++) /* PEFT starts B (an embedding's A) at 0: random values give every tensor a gradient */
        if (strstr((*params)[i]->name, "lora_"))
            for (int64_t k = 0; k < (*params)[i]->numel; k++) (*params)[i]->data[k] = 0.3f * frand();
    return m;
}

/* B = 2 rows of T = 7 tokens, the second right-padded by 2, with the task's labels. */
typedef struct {
    int64_t ids[14], mask[14], labels[14];
    cp_batch b;
} test_batch;

static void make_batch(const cp_model *m, test_batch *tb) {
    const int64_t B = 2, T = 7, V = cp_model_vocab_size(m), K = cp_model_num_labels(m);
    for (int i = 0; i < B * T; i++) {
        tb->ids[i] = 1 + (int64_t)((frand() + 1) * 0.5f * (float)(V - 3));
        tb->mask[i] = !(i >= 12);
        tb->labels[i] = !tb->mask[i] ? -100 : m->task == CP_TASK_TOKEN_CLS ? i % K : tb->ids[i];
    }
    if (m->task == CP_TASK_SEQ_CLS) { tb->labels[0] = 0; tb->labels[1] = K - 1; }
    tb->b = (cp_batch){.B = B, .T = T, .input_ids = tb->ids, .attention_mask = tb->mask, .labels = tb->labels};
}

/* The summed loss of a forward in the model's mode (training: under this seed's masks). */
static double model_loss(cp_model *m, const cp_batch *b, int training, uint64_t seed) {
    cp_peft_set_training(m, training);
    cp_peft_seed_dropout(m, seed);
    cp_outputs out = {0};
    cp_status st = cp_model_forward(m, b, &out);
    cp_peft_set_training(m, 0);
    return st == CP_OK ? out.loss * (double)out.loss_tokens : NAN;
}

static void model_dropout_case(const model_case *c) {
    seed_state = 777;
    cp_param **params = NULL;
    int n = 0;
    cp_model *m = load_case(c, 0.5, &params, &n);
    if (!m || !params) { cp_model_free(m); return; }
    test_batch tb;
    make_batch(m, &tb);
    const cp_batch *b = &tb.b;
    /* (a) the training loss: another than eval, the same for the same seed, another for another seed */
    const double eval = model_loss(m, b, 0, 7), l7 = model_loss(m, b, 1, 7), l7b = model_loss(m, b, 1, 7), l8 = model_loss(m, b, 1, 8);
    m->model_dropout = 0;
    const double off = model_loss(m, b, 1, 7);
    m->model_dropout = 1;
    CHECK(isfinite(eval) && isfinite(l7), "%s: losses %g %g", c->label, eval, l7);
    CHECK(l7 == l7b, "%s: the same seed gave losses %.9g and %.9g", c->label, l7, l7b);
    CHECK(l7 != eval && l7 != l8, "%s: dropout changes nothing (eval %.9g, seed 7 %.9g, seed 8 %.9g)", c->label, eval, l7, l8);
    CHECK(off == eval, "%s: with the model's dropout off, training %.9g is not eval %.9g", c->label, off, eval);
    /* (b) the gradients under the masks of seed 7 against central differences of the same loss */
    double loss_sum = 0;
    int64_t n_items = 0;
    cp_peft_set_training(m, 1);
    cp_peft_seed_dropout(m, 7);
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, 0, &loss_sum, &n_items));
    CHECK(fabs(loss_sum - l7) <= 1e-5 * fmax(1, fabs(l7)), "%s: training loss %.9g vs the forward's %.9g", c->label, loss_sum, l7);
    float **grads = malloc((size_t)n * sizeof *grads);
    for (int i = 0; i < n; i++) {
        grads[i] = malloc((size_t)params[i]->numel * sizeof(float));
        memcpy(grads[i], params[i]->grad, (size_t)params[i]->numel * sizeof(float));
        memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
    }
    /* recompute draws the same masks: the very same gradients */
    CHECK_OK(cp_model_forward_backward(m, b, 1.0, 1, &loss_sum, &n_items));
    double recompute = 0;
    for (int i = 0; i < n; i++) recompute = fmax(recompute, test_max_abs_diff(grads[i], params[i]->grad, (size_t)params[i]->numel));
    cp_peft_set_training(m, 0);
    double worst = 0;
    int checked = 0, zero = 0;
    const char *worst_name = "";
    const float h = 1e-2f;
    for (int i = 0; i < n; i++) {
        double norm = 0;
        for (int64_t k = 0; k < params[i]->numel; k++) norm += fabs(grads[i][k]);
        if (norm == 0) { zero++; fprintf(stderr, "  %s: no gradient for %s\n", c->label, params[i]->name); }
        int64_t top[2] = {0, 0}; /* the two largest analytic entries, besides 4 random ones */
        for (int64_t k = 1; k < params[i]->numel; k++) {
            if (fabs(grads[i][k]) > fabs(grads[i][top[0]])) top[1] = top[0], top[0] = k;
            else if (fabs(grads[i][k]) > fabs(grads[i][top[1]]) || top[1] == top[0]) top[1] = k;
        }
        for (int s = 0; s < 6; s++) {
            const int64_t k = s < 2 ? top[s] : (int64_t)((frand() + 1) * 0.5f * (float)(params[i]->numel - 1));
            const float keep = params[i]->data[k];
            double d[2];
            for (int q = 0; q < 2; q++) { /* Richardson-extrapolated central differences */
                const float hq = q ? h / 2 : h;
                params[i]->data[k] = keep + hq; const double lp = model_loss(m, b, 1, 7);
                params[i]->data[k] = keep - hq; const double lm = model_loss(m, b, 1, 7);
                d[q] = (lp - lm) / (2 * hq);
            }
            params[i]->data[k] = keep;
            const double numeric = (4 * d[1] - d[0]) / 3;
            if (fabs(numeric) < 2e-2 && fabs(grads[i][k]) < 2e-2) continue; /* below f32 noise */
            if (getenv("CPEFT_TEST_VERBOSE"))
                printf("    %s[%lld]: analytic %.6g, numeric %.6g\n", params[i]->name, (long long)k, grads[i][k], numeric);
            if (rel_err(grads[i][k], numeric) > worst) worst = rel_err(grads[i][k], numeric), worst_name = params[i]->name;
            checked++;
        }
        free(grads[i]);
    }
    free(grads);
    printf("  %-46s eval %.4f, train %.4f / %.4f (seeds 7 / 8); %d tensors, %d entries: worst relative error %.2e (%s), "
           "recompute |diff| %.1e\n", c->label, eval, l7, l8, n, checked, worst, worst_name, recompute);
    CHECK(zero == 0, "%s: %d trained tensors got no gradient", c->label, zero);
    CHECK(checked > n / 2, "%s: too few entries checked (%d of %d tensors)", c->label, checked, n);
    CHECK(worst < 5e-2, "%s: the gradient under dropout is off by %.3e: the backward does not apply the forward's masks",
          c->label, worst);
    CHECK(recompute == 0, "%s: recompute changes the gradients by %.3e (other masks)", c->label, recompute);
    cp_free(params);
    cp_model_free(m);
}

static const char *const BERT_EXTRA[] = {"bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias", NULL};
static const char *const ELECTRA_EXTRA[] = {"electra.embeddings.LayerNorm.weight", NULL};
static const char *const DEBV2_EXTRA[] = {"deberta.encoder.rel_embeddings.weight", "deberta.encoder.conv.conv.weight",
                                          "deberta.embeddings.LayerNorm.weight", NULL};
static const char *const DEB_EXTRA[] = {"deberta.encoder.rel_embeddings.weight", NULL};

TEST(models_apply_their_dropout_and_its_gradient) {
    static const model_case cases[] = {
        {"BERT SEQ_CLS (pooler, classifier dropout)", "tests/fixtures/encoders/models/bert_seqcls", "SEQ_CLS",
         "query,key,value,dense,word_embeddings", BERT_EXTRA},
        {"RoBERTa SEQ_CLS (classifier.dropout twice)", "tests/fixtures/encoders/models/roberta_seqcls", "SEQ_CLS", "query,value", NULL},
        {"ELECTRA SEQ_CLS (dropout, embeddings_project)", "tests/fixtures/encoders/models/electra_seqcls", "SEQ_CLS",
         "query,value,embeddings_project,word_embeddings", ELECTRA_EXTRA},
        {"DistilBERT TOKEN_CLS", "tests/fixtures/encoders/models/distilbert_tokcls", "TOKEN_CLS",
         "q_lin,v_lin,out_lin,lin2,word_embeddings", NULL},
        {"DeBERTa-v2 SEQ_CLS (ConvLayer, pos_dropout)", "tests/fixtures/deberta_models/models/debv2_conv_seqcls", "SEQ_CLS",
         "query_proj,value_proj,pos_key_proj,pos_query_proj,dense", DEBV2_EXTRA},
        {"DeBERTa SEQ_CLS (in_proj, pos_proj)", "tests/fixtures/deberta_models/models/deb_seqcls", "SEQ_CLS",
         "in_proj,pos_proj,pos_q_proj,dense", DEB_EXTRA},
        {"GPT-2 CAUSAL_LM (drop, attn, resid, mlp)", "tests/fixtures/models/gpt2_tiny", "CAUSAL_LM", "c_attn,c_proj,c_fc,wte", NULL},
        {"GPT-Neo TOKEN_CLS", "tests/fixtures/decoder_heads/models/gpt_neo_tokcls", "TOKEN_CLS", "q_proj,v_proj,out_proj,c_fc", NULL},
        {"Llama CAUSAL_LM (attention_dropout, GQA)", "tests/fixtures/llama/models/llama_tiny", "CAUSAL_LM", "q_proj,v_proj,o_proj", NULL},
        {"T5 SEQ_2_SEQ_LM (both stacks, cross-attention)", "tests/fixtures/t5/models/t5_v11", "SEQ_2_SEQ_LM",
         "q,v,o,wi_0,wo,relative_attention_bias", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) model_dropout_case(&cases[i]);
}

/* The embeddings' site seen through output_hidden_states: hidden_states[0] in training is the eval
 * embedding output with half its values 0 and the others doubled. */
TEST(embedding_site_drops_half_and_doubles_the_rest) {
    const char *dirs[2] = {"tests/fixtures/encoders/models/bert_seqcls", "tests/fixtures/models/gpt2_tiny"};
    const char *tasks[2] = {"SEQ_CLS", "CAUSAL_LM"};
    for (int d = 0; d < 2; d++) {
        cp_model *m = NULL;
        CHECK_OK(cp_model_load_task(&m, dirs[d], CP_LOAD_WEIGHTS, tasks[d]));
        if (!m) continue;
        const double p = 0.5;
        cp_module_visit(m->root, set_p, (void *)&p);
        test_batch tb;
        make_batch(m, &tb);
        const int64_t N = 14, C = cp_model_hidden_size(m), L = cp_model_num_layers(m);
        float *h_eval = malloc((size_t)((L + 1) * N * C) * sizeof *h_eval), *h_train = malloc((size_t)((L + 1) * N * C) * sizeof *h_train);
        cp_outputs out = {.hidden_states = h_eval};
        CHECK_OK(cp_model_forward(m, &tb.b, &out));
        out.hidden_states = h_train;
        cp_peft_set_training(m, 1);
        cp_peft_seed_dropout(m, 11);
        CHECK_OK(cp_model_forward(m, &tb.b, &out));
        cp_peft_set_training(m, 0);
        int64_t zeros = 0, other = 0;
        for (int64_t i = 0; i < N * C; i++) {
            if (h_train[i] == 0) zeros++;
            else if (h_train[i] != 2.0f * h_eval[i]) other++;
        }
        const double frac = (double)zeros / (double)(N * C), sigma = sqrt(0.25 / (double)(N * C));
        printf("  %s: hidden_states[0] in training: %.3f of %lld zero (%.1f sigma), %lld not 2x eval\n", cp_model_type(m), frac,
               (long long)(N * C), fabs(frac - 0.5) / sigma, (long long)other);
        CHECK(fabs(frac - 0.5) < 5 * sigma && other == 0, "%s: the embeddings' dropout: %.3f dropped, %lld wrong values",
              cp_model_type(m), frac, (long long)other);
        free(h_eval);
        free(h_train);
        cp_model_free(m);
    }
}

/* ---- the trainer -------------------------------------------------------------------------------- */

/* Copies model directory src to tmpdir/name with config.json's keys (name=value pairs) set. */
static void copy_model(const char *src, const char *name, const char *const *keys, const double *values, int n) {
    CHECK(sh("mkdir -p %s/%s && cp %s/* %s/%s/", tmpdir, name, src, tmpdir, name) == 0, "copy %s", src);
    char path[400];
    snprintf(path, sizeof path, "%s/%s/config.json", tmpdir, name);
    cJSON *cfg = NULL;
    CHECK_OK(cp_json_read_file(path, &cfg));
    if (!cfg) return;
    for (int i = 0; i < n; i++) {
        cJSON_DeleteItemFromObject(cfg, keys[i]);
        cJSON_AddNumberToObject(cfg, keys[i], values[i]);
    }
    char *text = cJSON_Print(cfg);
    FILE *f = fopen(path, "w");
    if (f && text) fputs(text, f);
    if (f) fclose(f);
    free(text);
    cJSON_Delete(cfg);
}

static int same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

typedef struct {
    const char *model, *task, *train, *eval, *tokenizer;
} run_case;

/* One run into tmpdir/out: max_steps 4, checkpoints every 2, resuming from `resume` when given. */
static void run_trainer(const run_case *rc, const char *out, const char *resume, int model_dropout) {
    char model_dir[300], out_dir[300];
    snprintf(model_dir, sizeof model_dir, "%s/%s", tmpdir, rc->model);
    snprintf(out_dir, sizeof out_dir, "%s/%s", tmpdir, out);
    cp_tokenizer *tok = NULL;
    if (rc->tokenizer) CHECK_OK(cp_tokenizer_load_file(&tok, rc->tokenizer));
    else CHECK_OK(cp_tokenizer_load_dir(&tok, model_dir));
    if (!tok) return;
    cp_train_options o;
    cp_train_options_init(&o);
    o.task_type = rc->task;
    o.data_path = rc->train;
    o.eval_data_path = rc->eval;
    o.output_dir = out_dir;
    o.overwrite_output_dir = 1;
    o.resume_from = resume;
    o.max_steps = 4;
    o.save_steps = 2;
    o.logging_steps = 1;
    o.per_device_train_batch_size = 2;
    o.learning_rate = 5e-3;
    o.lora.r = 4;
    o.seed = 3;
    o.max_seq_length = 32;
    o.model_dropout = model_dropout;
    cp_model *m = NULL;
    if (strcmp(rc->task, "CAUSAL_LM")) {
        char **labels = NULL;
        int64_t n = 0;
        const char *problem = NULL;
        CHECK_OK(cp_train_data_labels(tok, &o, o.task_type, &labels, &n, &problem));
        if (labels) CHECK_OK(cp_model_load_labels(&m, model_dir, CP_LOAD_WEIGHTS, o.task_type, (const char *const *)labels, n, problem));
        cp_train_labels_free(labels, n);
    } else {
        CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    }
    cp_trainer *t = NULL;
    if (m) CHECK_OK(cp_trainer_create(&t, m, tok, &o));
    if (t) CHECK_OK(cp_trainer_run(t));
    cp_trainer_free(t);
    cp_model_free(m);
    cp_tokenizer_free(tok);
}

static int adapters_equal(const char *a, const char *b) {
    char pa[400], pb[400];
    snprintf(pa, sizeof pa, "%s/%s/adapter_model.safetensors", tmpdir, a);
    snprintf(pb, sizeof pb, "%s/%s/adapter_model.safetensors", tmpdir, b);
    CHECK(access(pa, R_OK) == 0 && access(pb, R_OK) == 0, "%s or %s missing", pa, pb);
    return same_file(pa, pb);
}

TEST(resumed_runs_end_on_the_uninterrupted_bytes_with_dropout_on) {
    static const char *const bert_keys[] = {"hidden_dropout_prob", "attention_probs_dropout_prob"};
    static const char *const gpt2_keys[] = {"embd_pdrop", "attn_pdrop", "resid_pdrop"};
    static const double half[3] = {0.5, 0.5, 0.5};
    copy_model("tests/fixtures/clstrain/tiny_bert", "bert_drop", bert_keys, half, 2);
    copy_model("tests/fixtures/clstrain/tiny_bert", "bert_nodrop", NULL, NULL, 0);
    copy_model("tests/fixtures/eval/gpt2_vocab", "gpt2_drop", gpt2_keys, half, 3);
    const run_case cases[2] = {
        {"bert_drop", "SEQ_CLS", "tests/fixtures/clstrain/data/seq_train.tsv", "tests/fixtures/clstrain/data/seq_eval.tsv", NULL},
        {"gpt2_drop", "CAUSAL_LM", "tests/fixtures/eval/shakespeare.txt", NULL, "../shared/data/gpt2-tokenizer/tokenizer.json"},
    };
    for (int i = 0; i < 2; i++) {
        const run_case *rc = &cases[i];
        char a[64], b[64], off[64], resume[400];
        snprintf(a, sizeof a, "%s_a", rc->model);
        snprintf(b, sizeof b, "%s_b", rc->model);
        snprintf(off, sizeof off, "%s_off", rc->model);
        snprintf(resume, sizeof resume, "%s/%s/checkpoint-2", tmpdir, a);
        run_trainer(rc, a, NULL, 1);
        run_trainer(rc, b, resume, 1);
        run_trainer(rc, off, NULL, 0);
        const int resumed = adapters_equal(a, b), differs = !adapters_equal(a, off);
        printf("  %-9s p = 0.5, 4 steps: resumed from checkpoint-2 %s; --model-dropout off %s\n", rc->task,
               resumed ? "ends on the same bytes" : "DIFFERS", differs ? "trains another adapter" : "CHANGES NOTHING");
        CHECK(resumed, "%s: the resumed run's adapter differs from the uninterrupted run's", rc->task);
        CHECK(differs, "%s: switching the model's dropout off changed nothing", rc->task);
    }
    /* a config without dropout: the switch makes no difference */
    const run_case plain = {"bert_nodrop", "SEQ_CLS", cases[0].train, cases[0].eval, NULL};
    run_trainer(&plain, "plain_on", NULL, 1);
    run_trainer(&plain, "plain_off", NULL, 0);
    CHECK(adapters_equal("plain_on", "plain_off"), "dropout probabilities of 0 still changed the run");
}

TEST(the_switch_is_checked) {
    cp_train_options o;
    cp_train_options_init(&o);
    CHECK(o.model_dropout == 1, "the model's dropout is not on by default");
    o.data_path = "x";
    o.model_dropout = 2;
    CHECK_ERR(cp_train_options_check(&o), "--model-dropout must be 1 (on) or 0 (off), got 2");
    const char *b = getenv("CPEFT_BIN") ? getenv("CPEFT_BIN") : "build/cpeft";
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s train --model x --data y --output-dir %s/z --model-dropout maybe 2>%s/err.txt", b, tmpdir, tmpdir);
    const int rc = sh("%s", cmd);
    char path[400], msg[256] = "";
    snprintf(path, sizeof path, "%s/err.txt", tmpdir);
    FILE *f = fopen(path, "r");
    if (f) { size_t k = fread(msg, 1, sizeof msg - 1, f); msg[k] = '\0'; fclose(f); }
    CHECK(rc == 2 && strstr(msg, "--model-dropout: on or off"), "cpeft train --model-dropout maybe: exit %d, \"%s\"", rc, msg);
}

int main(void) {
    cp_set_quiet(1);
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
    RUN(masks_drop_p_and_scale_the_survivors);
    RUN(attention_drops_its_probabilities);
    RUN(disentangled_attention_drops_its_probabilities);
    RUN(models_apply_their_dropout_and_its_gradient);
    RUN(embedding_site_drops_half_and_doubles_the_rest);
    RUN(resumed_runs_end_on_the_uninterrupted_bytes_with_dropout_on);
    RUN(the_switch_is_checked);
    sh("rm -rf %s", tmpdir);
    return test_summary();
}
