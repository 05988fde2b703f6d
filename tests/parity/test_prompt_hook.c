/*
 * test_prompt_hook.c — the scaffold's prompt-learning hook points (models/hook.h cp_prompt_hook)
 * against PEFT, on tiny GPT-2, GPT-Neo and Llama models, on a left-padded batch with labels
 * (tests/reference/make_prompt_fixtures.py):
 *   - virtual input embeddings: a hook holding PEFT prompt tuning's table gives
 *     PeftModelForCausalLM's logits (B, n+T, V), loss, and the gradient of the table;
 *   - a key/value prefix: a hook holding PEFT prefix tuning's table (n, 2·L·kv_dim, read as
 *     PEFT's get_prompt reads it) gives its logits (B, T, V), loss and table gradient.
 * Prompt and prefix tuning themselves (configs, files, CLI) are issue 13; this checks that the hook
 * points they will fill are exact: the batch and key mask extended as PEFT extends them, positions
 * after the prefix, the gradients routed to the hook with the blocks' backward running to the
 * bottom, with and without recompute; and generation's uncached step (the last column's logits).
 */
#include "test.h"
#include "core/alloc.h"
#include "io/safetensors.h"
#include "models/hook.h"
#include "models/model.h"

#include <stdlib.h>

#define TOL 1e-4

/* The hook: one (n, C) table shared by every row, as PEFT's PromptEmbedding. */
typedef struct {
    cp_prompt_hook hook;
    int64_t n, C, layers;
    const float *table;
    float *grad; /* (n, C) accumulated */
} table_hook;

static int64_t n_virtual(const cp_prompt_hook *h) { return ((const table_hook *)h)->n; }

static cp_status embeddings(const cp_prompt_hook *h, const cp_run *run, int64_t B, float *out) {
    const table_hook *t = (const table_hook *)h;
    for (int64_t b = 0; b < B; b++) memcpy(out + b * t->n * t->C, t->table, (size_t)(t->n * t->C) * sizeof *out);
    return CP_OK;
}

static cp_status embeddings_backward(const cp_prompt_hook *h, const cp_run *run, int64_t B, const float *d) {
    const table_hook *t = (const table_hook *)h;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < t->n * t->C; i++) t->grad[i] += d[b * t->n * t->C + i];
    return CP_OK;
}

/* Prefix tuning's table (n, 2·L·kvd): row i holds, for layer l, the key at columns 2l·kvd and the
 * value at (2l+1)·kvd (PEFT's view (n, 2L, NKV, hd) split per layer). */
static cp_status kv_prefix(const cp_prompt_hook *h, const cp_run *run, int64_t l, int64_t B, float *k, float *v) {
    const table_hook *t = (const table_hook *)h;
    const int64_t kvd = t->C / (2 * t->layers);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < t->n; i++) {
            memcpy(k + (b * t->n + i) * kvd, t->table + i * t->C + 2 * l * kvd, (size_t)kvd * sizeof *k);
            memcpy(v + (b * t->n + i) * kvd, t->table + i * t->C + (2 * l + 1) * kvd, (size_t)kvd * sizeof *v);
        }
    return CP_OK;
}

static cp_status kv_prefix_backward(const cp_prompt_hook *h, const cp_run *run, int64_t l, int64_t B, const float *dk,
                                    const float *dv) {
    const table_hook *t = (const table_hook *)h;
    const int64_t kvd = t->C / (2 * t->layers);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < t->n; i++)
            for (int64_t j = 0; j < kvd; j++) {
                t->grad[i * t->C + 2 * l * kvd + j] += dk[(b * t->n + i) * kvd + j];
                t->grad[i * t->C + (2 * l + 1) * kvd + j] += dv[(b * t->n + i) * kvd + j];
            }
    return CP_OK;
}

static const cp_prompt_ops prefix_ops = {.kind = "prefix_tuning", .n_virtual = n_virtual, .kv_prefix = kv_prefix,
                                         .kv_prefix_backward = kv_prefix_backward};

static const cp_prompt_ops table_ops = {.kind = "prompt_tuning", .n_virtual = n_virtual, .embeddings = embeddings,
                                        .embeddings_backward = embeddings_backward};

static double max_diff(const float *a, const float *b, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= worst)) worst = d; /* NaN counts as worst */
    }
    return worst;
}

static void check_case(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/prompt/%s.safetensors", name);
    cp_safetensors st;
    if (cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s: %s", path, cp_last_error()); return; }
    const cp_st_tensor *table = cp_st_find(&st, "table"), *ids = cp_st_find(&st, "input_ids"),
                       *mask = cp_st_find(&st, "attention_mask"), *labels = cp_st_find(&st, "labels"),
                       *logits = cp_st_find(&st, "logits"), *loss = cp_st_find(&st, "loss"), *grad = cp_st_find(&st, "table_grad");
    CHECK(table && ids && mask && labels && logits && loss && grad, "%s: a tensor is missing", path);
    if (!(table && ids && mask && labels && logits && loss && grad)) { cp_st_close(&st); return; }
    char model_dir[512];
    snprintf(model_dir, sizeof model_dir, "tests/fixtures/%s", cp_st_meta(&st, "model"));
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, model_dir, CP_LOAD_WEIGHTS));
    if (!m) { cp_st_close(&st); return; }
    const int prefix = !strcmp(cp_st_meta(&st, "kind"), "prefix");
    const int64_t n = table->shape[0], C = table->shape[1], B = ids->shape[0], T = ids->shape[1], V = cp_model_vocab_size(m);
    const int64_t Tout = prefix ? T : n + T; /* logits cover the virtual positions only with prompt tuning */
    table_hook h = {.hook = {.ops = prefix ? &prefix_ops : &table_ops}, .n = n, .C = C, .layers = cp_model_num_layers(m),
                    .table = table->data};
    h.grad = cp_calloc((size_t)(n * C), sizeof *h.grad, "test");
    float *got = cp_malloc((size_t)(B * (n + T) * V) * sizeof *got, "test");
    m->prompt = &h.hook;
    cp_batch b = {.B = B, .T = T, .input_ids = ids->data, .attention_mask = mask->data, .labels = labels->data};

    cp_outputs out = {.logits = got};
    CHECK_OK(cp_model_forward(m, &b, &out));
    double dl = max_diff(got, logits->data, B * Tout * V), dloss = fabs(out.loss - ((const float *)loss->data)[0]);
    CHECK(dl <= TOL && dloss <= TOL, "%s: logits differ by %.3e, loss by %.3e", name, dl, dloss);

    /* the same loss through the training path, and the gradient reaching the table */
    double loss_sum = 0;
    int64_t targets = 0;
    CHECK_OK(cp_model_forward_backward(m, &b, 1.0, 0, &loss_sum, &targets));
    double mean = targets ? loss_sum / (double)targets : NAN;
    CHECK(targets > 0 && fabs(mean - ((const float *)loss->data)[0]) <= TOL, "%s: training loss %.6f", name, mean);
    /* forward_backward sums the loss over targets with norm 1: PyTorch's gradient is of the mean */
    for (int64_t i = 0; i < n * C; i++) h.grad[i] /= (float)targets;
    double dg = max_diff(h.grad, grad->data, n * C);
    CHECK(dg <= TOL, "%s: table gradient differs by %.3e", name, dg);
    memset(h.grad, 0, (size_t)(n * C) * sizeof *h.grad);
    CHECK_OK(cp_model_forward_backward(m, &b, 1.0, 1, &loss_sum, &targets));
    for (int64_t i = 0; i < n * C; i++) h.grad[i] /= (float)targets;
    double dg_gc = max_diff(h.grad, grad->data, n * C);
    CHECK(dg_gc <= TOL, "%s: table gradient with recompute differs by %.3e", name, dg_gc);
    printf("  %s: %lld %s, logits max diff %.2e, loss %.2e, table gradient %.2e (recompute %.2e)\n", name,
           (long long)n, prefix ? "prefix columns" : "virtual tokens", dl, dloss, dg, dg_gc);

    /* generation's uncached step runs the prompt too: each row's last logits are the forward's last column */
    float *last = cp_malloc((size_t)(B * V) * sizeof *last, "test");
    CHECK_OK(cp_model_forward_last(m, &b, last));
    double dlast = 0;
    for (int64_t r = 0; r < B; r++) {
        double d = max_diff(last + r * V, (const float *)logits->data + (r * Tout + Tout - 1) * V, V);
        if (d > dlast) dlast = d;
    }
    CHECK(dlast <= TOL, "%s: last-column logits differ by %.3e", name, dlast);
    cp_free(last);
    m->prompt = NULL;
    cp_free(got);
    cp_free(h.grad);
    cp_model_free(m);
    cp_st_close(&st);
}

TEST(prompt_tuning_gpt2) { check_case("gpt2_tiny"); }
TEST(prompt_tuning_gpt_neo) { check_case("gpt_neo_tiny"); }
TEST(prompt_tuning_llama) { check_case("llama_tiny"); }
TEST(prefix_tuning_gpt2) { check_case("gpt2_tiny_prefix"); }
TEST(prefix_tuning_gpt_neo) { check_case("gpt_neo_tiny_prefix"); }
TEST(prefix_tuning_llama) { check_case("llama_tiny_prefix"); }

int main(void) {
    RUN(prompt_tuning_gpt2);
    RUN(prompt_tuning_gpt_neo);
    RUN(prompt_tuning_llama);
    RUN(prefix_tuning_gpt2);
    RUN(prefix_tuning_gpt_neo);
    RUN(prefix_tuning_llama);
    return test_summary();
}
