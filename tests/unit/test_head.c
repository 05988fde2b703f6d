/*
 * test_head.c — the task heads (models/head.c) against transformers and against finite differences.
 *
 * Parity: each tests/fixtures/heads/<case>.safetensors (tests/reference/make_head_fixtures.py) holds
 * fixed final hidden states, input_ids, labels and head weights, and what the real transformers
 * classes (GPT-2, Llama, RoBERTa, BERT, DistilBERT sequence classification; GPT-2 and Llama token
 * classification; GPT-2's LM head) computed from them: logits, loss, resolved problem_type, and the
 * autograd gradients of the loss with respect to the hidden states and every head weight. The head
 * is run forward (logits, loss) and backward with the batch mean as normaliser, which is what
 * loss.backward() on transformers' mean loss gives.
 *
 * Finite differences: a sequence-classification head with a dense + tanh stage, last-non-pad
 * pooling and each problem type, and a token-classification head with a bias, through pooling and
 * both Linears (d hidden states, weights, biases). Then pooling positions, gradient accumulation and
 * the errors.
 */
#include "test.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "io/safetensors.h"
#include "models/head.h"
#include "models/lm_head.h"

#include <dirent.h>
#include <stdlib.h>

#define FIXTURES "tests/fixtures/heads"
#define FAIL_TOL 1e-5

static unsigned seed_state = 4242;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

/* |analytic - numeric| relative to the larger of the two, or to `floor` for entries too small for
 * f32 central differences to resolve. */
static double rel_err(double analytic, double numeric, double floor) {
    return fabs(analytic - numeric) / fmax(floor, fmax(fabs(analytic), fabs(numeric)));
}

/* A Linear (out,in) named `name` under `parent`, with owned data (copied from w / b, or random) and
 * zeroed gradient buffers. */
static cp_module *make_linear(cp_module *parent, const char *name, int64_t in, int64_t out, int bias, const float *w,
                              const float *b) {
    cp_module *m = cp_module_linear(parent, name, in, out, bias);
    if (!m) return NULL;
    cp_param *ps[2] = {m->weight, m->bias};
    const float *src[2] = {w, b};
    for (int i = 0; i < 2; i++) {
        cp_param *p = ps[i];
        if (!p) continue;
        p->data = cp_alloc_aligned((size_t)p->numel * sizeof(float), "test weight");
        p->owns_data = 1;
        p->grad = cp_alloc_aligned((size_t)p->numel * sizeof(float), "test grad");
        for (int64_t j = 0; j < p->numel; j++) p->data[j] = src[i] ? src[i][j] : 0.6f * frand();
    }
    return m;
}

/* ---- parity with transformers --------------------------------------------------------------------- */

static const cp_st_tensor *find(const cp_safetensors *st, const char *name, cp_dtype dtype) {
    const cp_st_tensor *t = cp_st_find(st, name);
    return t && t->dtype == dtype ? t : NULL;
}

static const float *floats(const cp_safetensors *st, const char *name) {
    const cp_st_tensor *t = find(st, name, CP_F32);
    return t ? t->data : NULL;
}

static double worst_logits, worst_loss, worst_dh, worst_dw;
static int n_fixtures;

static int numel_is(int64_t n, const cp_st_tensor *t) { return t && t->numel == n; }

static double grad_diff(const cp_safetensors *st, const char *name, const cp_param *p) {
    const float *want = floats(st, name);
    return want && p && p->grad ? test_max_abs_diff(p->grad, want, (size_t)p->numel) : INFINITY;
}

static void run_fixture(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIXTURES, file);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, path));
    const cp_st_tensor *hid = find(&st, "hidden", CP_F32), *ids = find(&st, "input_ids", CP_I64);
    const cp_st_tensor *lab = cp_st_find(&st, "labels"), *cw = find(&st, "classifier.weight", CP_F32);
    const cp_st_tensor *dw = find(&st, "dense.weight", CP_F32);
    const float *want_logits = floats(&st, "logits"), *want_loss = floats(&st, "loss");
    const float *want_dh = floats(&st, "grad.hidden");
    const char *task = cp_st_meta(&st, "task"), *ptype = cp_st_meta(&st, "problem_type");
    const char *resolved = cp_st_meta(&st, "problem_type_resolved"), *pooling = cp_st_meta(&st, "pooling");
    const char *pad = cp_st_meta(&st, "pad_token_id"), *act = cp_st_meta(&st, "dense_act");
    const char *cls_path = cp_st_meta(&st, "classifier_path"), *dense_path = cp_st_meta(&st, "dense_path");
    CHECK(hid && ids && lab && cw && want_logits && want_loss && want_dh && task && ptype && resolved && pooling && pad &&
              act && cls_path && dense_path, "%s: fixture incomplete", file);
    if (!(hid && ids && lab && cw && want_logits && want_loss && want_dh && task && ptype && resolved && pooling && pad &&
          act && cls_path && dense_path)) {
        cp_st_close(&st);
        return;
    }
    const int64_t B = hid->shape[0], T = hid->shape[1], C = hid->shape[2], K = cw->shape[0];

    cp_head head = {.num_labels = K, .pad_token_id = *pad ? atoll(pad) : -1, .dense_act = CP_ACT_LINEAR};
    CHECK_OK(cp_task_parse(task, &head.task));
    CHECK_OK(cp_problem_type_parse(*ptype ? ptype : NULL, &head.problem_type));
    head.pooling = strcmp(pooling, "FIRST") == 0 ? CP_POOL_FIRST : CP_POOL_LAST_NON_PAD;
    cp_module *root = cp_module_new(NULL, "", "TestModel", CP_MOD_CONTAINER);
    if (dw) {
        head.dense = make_linear(root, dense_path, C, dw->shape[0], cp_st_find(&st, "dense.bias") != NULL, dw->data,
                                 floats(&st, "dense.bias"));
        int a = cp_activation_from_name(act);
        CHECK(a >= 0, "%s: activation %s", file, act);
        head.dense_act = a < 0 ? CP_ACT_LINEAR : (cp_activation)a;
    }
    head.classifier = make_linear(root, cls_path, cw->shape[1], K, cp_st_find(&st, "classifier.bias") != NULL, cw->data,
                                  floats(&st, "classifier.bias"));
    CHECK_OK(cp_head_check(&head, C));

    cp_task_labels labels = {.ndim = lab->ndim};
    for (int d = 0; d < lab->ndim && d < 2; d++) labels.shape[d] = lab->shape[d];
    if (lab->dtype == CP_I64) labels.ids = lab->data;
    else labels.values = lab->data;

    const int64_t nl = cp_head_logits_numel(&head, B, T);
    float *logits = malloc((size_t)nl * sizeof *logits), *dh = malloc((size_t)(B * T * C) * sizeof *dh);
    cp_arena scratch;
    cp_arena_init(&scratch);
    cp_head_outputs fwd = {.logits = logits}, bwd = {0};
    CHECK_OK(cp_head_forward(&(cp_run){.arena = &scratch}, &head, hid->data, B, T, ids->data, &labels, &fwd));
    CHECK_OK(cp_head_backward(&(cp_run){.arena = &scratch}, &head, hid->data, B, T, ids->data, &labels, CP_NORM_BATCH_MEAN, dh, &bwd));
    cp_arena_free(&scratch);

    const double d_logits = test_max_abs_diff(logits, want_logits, (size_t)nl);
    const double d_loss = fmax(fabs(fwd.loss - want_loss[0]), fabs(bwd.loss - want_loss[0]));
    const double d_dh = test_max_abs_diff(dh, want_dh, (size_t)(B * T * C));
    double d_w = fmax(grad_diff(&st, "grad.classifier.weight", head.classifier->weight),
                      head.classifier->bias ? grad_diff(&st, "grad.classifier.bias", head.classifier->bias) : 0);
    if (head.dense)
        d_w = fmax(d_w, fmax(grad_diff(&st, "grad.dense.weight", head.dense->weight),
                             head.dense->bias ? grad_diff(&st, "grad.dense.bias", head.dense->bias) : 0));
    printf("  %-30s logits %.1e  loss %.1e (%.6f)  d hidden %.1e  d weights %.1e  %s\n", file, d_logits, d_loss, fwd.loss,
           d_dh, d_w, *resolved ? cp_problem_type_name(fwd.problem_type) : "");
    CHECK(numel_is(nl, find(&st, "logits", CP_F32)), "%s: %lld logits, transformers gave another shape", file, (long long)nl);
    CHECK(d_logits <= FAIL_TOL && d_loss <= FAIL_TOL && d_dh <= FAIL_TOL && d_w <= FAIL_TOL,
          "%s: logits %.3e, loss %.3e, d hidden %.3e, d weights %.3e", file, d_logits, d_loss, d_dh, d_w);
    if (*resolved)
        CHECK(strcmp(cp_problem_type_name(fwd.problem_type), resolved) == 0, "%s: problem type %s, transformers %s", file,
              cp_problem_type_name(fwd.problem_type), resolved);
    /* the LM loss sums its rows in another order forward (vocabulary tiles) than backward */
    CHECK(fwd.n_items == bwd.n_items && fabs(fwd.loss_sum - bwd.loss_sum) <= 1e-6 * fabs(fwd.loss_sum),
          "%s: forward %.9g over %lld items, backward %.9g over %lld", file, fwd.loss_sum, (long long)fwd.n_items,
          bwd.loss_sum, (long long)bwd.n_items);
    worst_logits = fmax(worst_logits, d_logits);
    worst_loss = fmax(worst_loss, d_loss);
    worst_dh = fmax(worst_dh, d_dh);
    worst_dw = fmax(worst_dw, d_w);
    n_fixtures++;
    free(logits);
    free(dh);
    cp_module_free(root);
    cp_st_close(&st);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(parity_with_transformers) {
    DIR *dir = opendir(FIXTURES);
    CHECK(dir != NULL, "cannot open %s", FIXTURES);
    if (!dir) return;
    char *names[64];
    int n = 0;
    for (struct dirent *e; (e = readdir(dir)) && n < 64;)
        if (strstr(e->d_name, ".safetensors")) names[n++] = strdup(e->d_name);
    closedir(dir);
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) { run_fixture(names[i]); free(names[i]); }
    printf("  %d cases: worst logits %.2e, loss %.2e, d hidden %.2e, d weights %.2e\n", n_fixtures, worst_logits,
           worst_loss, worst_dh, worst_dw);
    CHECK(n_fixtures >= 13, "only %d fixtures ran", n_fixtures);
}

/* ---- finite differences through pooling, dense, activation and classifier ------------------------ */

typedef struct {
    cp_head *head;
    float *h;
    int64_t B, T;
    const int64_t *ids;
    const cp_task_labels *labels;
    double norm;
} fd_case;

static double fd_loss(const fd_case *c, cp_arena *scratch) {
    cp_head_outputs o = {0};
    if (cp_head_forward(&(cp_run){.arena = scratch}, c->head, c->h, c->B, c->T, c->ids, c->labels, &o) != CP_OK) return NAN;
    return o.loss_sum / (c->norm > 0 ? c->norm : (double)o.n_items);
}

/* The worst relative error of the numeric gradient of one tensor against the analytic one. */
static double fd_tensor(const fd_case *c, float *x, const float *analytic, int64_t n, cp_arena *scratch) {
    const float step = 1e-2f;
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(analytic[i]));
    const double floor = fmax(1e-3, 1e-2 * scale); /* entries below 1% of the tensor's largest are noise */
    for (int64_t i = 0; i < n; i++) {
        const float keep = x[i];
        x[i] = keep + step; const double lp = fd_loss(c, scratch);
        x[i] = keep - step; const double lm = fd_loss(c, scratch);
        x[i] = keep;
        worst = fmax(worst, rel_err(analytic[i], (lp - lm) / (2 * step), floor));
    }
    return worst;
}

static void zero_grads(const cp_head *head) {
    const cp_module *ms[2] = {head->classifier, head->dense};
    for (int i = 0; i < 2; i++) {
        if (!ms[i]) continue;
        memset(ms[i]->weight->grad, 0, (size_t)ms[i]->weight->numel * sizeof(float));
        if (ms[i]->bias) memset(ms[i]->bias->grad, 0, (size_t)ms[i]->bias->numel * sizeof(float));
    }
}

/* Runs the backward, then compares d hidden and every weight and bias gradient with finite differences. */
static double fd_check(const fd_case *c, const char *what, int64_t C) {
    cp_arena scratch;
    cp_arena_init(&scratch);
    const int64_t N = c->B * c->T * C;
    float *dh = malloc((size_t)N * sizeof *dh);
    cp_head_outputs o = {0};
    zero_grads(c->head);
    CHECK_OK(cp_head_backward(&(cp_run){.arena = &scratch}, c->head, c->h, c->B, c->T, c->ids, c->labels, c->norm, dh, &o));
    double worst = fd_tensor(c, c->h, dh, N, &scratch);
    cp_module *ms[2] = {c->head->classifier, c->head->dense};
    for (int i = 0; i < 2; i++) {
        if (!ms[i]) continue;
        worst = fmax(worst, fd_tensor(c, ms[i]->weight->data, ms[i]->weight->grad, ms[i]->weight->numel, &scratch));
        if (ms[i]->bias) worst = fmax(worst, fd_tensor(c, ms[i]->bias->data, ms[i]->bias->grad, ms[i]->bias->numel, &scratch));
    }
    printf("  %-52s %lld items, worst relative error %.2e\n", what, (long long)o.n_items, worst);
    free(dh);
    cp_arena_free(&scratch);
    return worst;
}

TEST(head_backward_matches_finite_differences) {
    enum { B = 4, T = 5, C = 6, D = 5, K = 3 };
    float h[B * T * C];
    for (int i = 0; i < B * T * C; i++) h[i] = 1.5f * frand();
    const int64_t ids[B * T] = {5, 6, 7, 0, 0, /* right padding: 2 */ 0, 0, 5, 6, 7, /* left: 4 */
                                5, 0, 6, 0, 0, /* pad inside: 2 */ 8, 9, 10, 11, 12 /* none: 4 */};
    cp_module *root = cp_module_new(NULL, "", "TestModel", CP_MOD_CONTAINER);
    cp_head seq = {.task = CP_TASK_SEQ_CLS, .num_labels = K, .pooling = CP_POOL_LAST_NON_PAD, .pad_token_id = 0,
                   .dense = make_linear(root, "classifier.dense", C, D, 1, NULL, NULL), .dense_act = CP_ACT_TANH,
                   .classifier = make_linear(root, "classifier.out_proj", D, K, 1, NULL, NULL)};
    double worst = 0;

    int64_t cls[B] = {2, -100, 0, 1};
    cp_task_labels l_single = {.ids = cls, .ndim = 1, .shape = {B}};
    fd_case c = {&seq, h, B, T, ids, &l_single, 2.5};
    worst = fmax(worst, fd_check(&c, "SEQ_CLS last non-pad, dense+tanh, single label", C));

    float vals[B * K];
    for (int i = 0; i < B * K; i++) vals[i] = frand();
    cp_task_labels l_reg = {.values = vals, .ndim = 2, .shape = {B, K}};
    seq.problem_type = CP_PROBLEM_REGRESSION;
    c = (fd_case){&seq, h, B, T, ids, &l_reg, CP_NORM_BATCH_MEAN};
    worst = fmax(worst, fd_check(&c, "SEQ_CLS last non-pad, dense+tanh, regression (B,K)", C));

    for (int i = 0; i < B * K; i++) vals[i] = vals[i] > 0 ? 1.0f : 0.0f;
    seq.problem_type = CP_PROBLEM_AUTO;
    c = (fd_case){&seq, h, B, T, ids, &l_reg, 4.0};
    worst = fmax(worst, fd_check(&c, "SEQ_CLS last non-pad, dense+tanh, multi label", C));

    cp_head first = {.task = CP_TASK_SEQ_CLS, .num_labels = 1, .pooling = CP_POOL_FIRST, .pad_token_id = -1,
                     .classifier = make_linear(root, "score", C, 1, 0, NULL, NULL)};
    float reg1[B] = {0.5f, -1.0f, 2.0f, 0.0f};
    cp_task_labels l_reg1 = {.values = reg1, .ndim = 1, .shape = {B}};
    c = (fd_case){&first, h, B, T, ids, &l_reg1, CP_NORM_BATCH_MEAN};
    worst = fmax(worst, fd_check(&c, "SEQ_CLS first token, regression (num_labels 1)", C));

    cp_head tok = {.task = CP_TASK_TOKEN_CLS, .num_labels = K,
                   .dense = make_linear(root, "pre", C, D, 0, NULL, NULL), .dense_act = CP_ACT_GELU,
                   .classifier = make_linear(root, "classifier", D, K, 1, NULL, NULL)};
    int64_t tags[B * T];
    for (int i = 0; i < B * T; i++) tags[i] = ids[i] == 0 ? -100 : i % K;
    cp_task_labels l_tok = {.ids = tags, .ndim = 2, .shape = {B, T}};
    c = (fd_case){&tok, h, B, T, ids, &l_tok, CP_NORM_BATCH_MEAN};
    worst = fmax(worst, fd_check(&c, "TOKEN_CLS dense+gelu, classifier with bias", C));

    enum { V = 7 };
    cp_head lm = {.task = CP_TASK_CAUSAL_LM, .num_labels = V, .classifier = make_linear(root, "lm_head", C, V, 0, NULL, NULL)};
    int64_t lm_labels[B * T];
    for (int i = 0; i < B * T; i++) lm_labels[i] = ids[i] == 0 ? -100 : ids[i] % V;
    cp_task_labels l_lm = {.ids = lm_labels, .ndim = 2, .shape = {B, T}};
    c = (fd_case){&lm, h, B, T, ids, &l_lm, CP_NORM_BATCH_MEAN};
    worst = fmax(worst, fd_check(&c, "CAUSAL_LM (models/lm_head.c through the head)", C));

    CHECK(worst < 2e-2, "a head gradient differs from finite differences by %.3e", worst);
    cp_module_free(root);
}

/* ---- pooling, accumulation, logits only, errors ------------------------------------------------- */

TEST(pool_positions_as_transformers) {
    enum { B = 5, T = 5 };
    const int64_t ids[B * T] = {5, 6, 7, 0, 0, 0, 0, 5, 6, 7, 5, 0, 6, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0};
    const int64_t want[B] = {2, 4, 2, 0, 0};
    int64_t pos[B];
    cp_head head = {.task = CP_TASK_SEQ_CLS, .pooling = CP_POOL_LAST_NON_PAD, .pad_token_id = 0};
    CHECK_OK(cp_head_pool_positions(&head, ids, B, T, pos));
    for (int b = 0; b < B; b++) CHECK(pos[b] == want[b], "row %d pooled at %lld, expected %lld", b, (long long)pos[b], (long long)want[b]);
    head.pad_token_id = 5; /* the pad id is looked for, not the attention mask */
    CHECK_OK(cp_head_pool_positions(&head, ids, B, T, pos));
    CHECK(pos[0] == 4 && pos[2] == 4 && pos[4] == 4, "pad 5: %lld %lld %lld", (long long)pos[0], (long long)pos[2], (long long)pos[4]);
    head.pad_token_id = -1;
    CHECK_OK(cp_head_pool_positions(&head, NULL, 1, T, pos));
    CHECK(pos[0] == T - 1, "no pad token, one row: %lld", (long long)pos[0]);
    CHECK_ERR(cp_head_pool_positions(&head, ids, 2, T, pos), "Cannot handle batch sizes > 1 if no padding token is defined.");
    head.pad_token_id = 0;
    CHECK_ERR(cp_head_pool_positions(&head, NULL, 2, T, pos), "input_ids is required");
    head.pooling = CP_POOL_FIRST;
    CHECK_OK(cp_head_pool_positions(&head, NULL, B, T, pos));
    for (int b = 0; b < B; b++) CHECK(pos[b] == 0, "first-token pooling: row %d at %lld", b, (long long)pos[b]);
}

/* Two half batches with the whole batch's item count as normaliser accumulate the same classifier
 * gradient and d hidden states as one batch with the batch mean; logits alone match the logits
 * computed with labels. */
TEST(accumulation_and_logits_only) {
    enum { B = 4, T = 3, C = 5, K = 4 };
    float h[B * T * C], dh_whole[B * T * C], dh_half[B * T * C], g_whole[K * C], logits_a[B * K], logits_b[B * K];
    for (int i = 0; i < B * T * C; i++) h[i] = frand();
    const int64_t ids[B * T] = {3, 4, 0, 0, 3, 4, 3, 0, 4, 3, 3, 3};
    int64_t cls[B] = {1, -100, 3, 0};
    cp_module *root = cp_module_new(NULL, "", "TestModel", CP_MOD_CONTAINER);
    cp_head head = {.task = CP_TASK_SEQ_CLS, .num_labels = K, .pooling = CP_POOL_LAST_NON_PAD, .pad_token_id = 0,
                    .classifier = make_linear(root, "score", C, K, 0, NULL, NULL)};
    cp_arena scratch;
    cp_arena_init(&scratch);
    cp_task_labels all = {.ids = cls, .ndim = 1, .shape = {B}};
    cp_head_outputs o = {.logits = logits_a};
    CHECK_OK(cp_head_backward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &all, CP_NORM_BATCH_MEAN, dh_whole, &o));
    memcpy(g_whole, head.classifier->weight->grad, sizeof g_whole);
    const int64_t items = o.n_items;
    memset(head.classifier->weight->grad, 0, sizeof g_whole);
    cp_task_labels a = {.ids = cls, .ndim = 1, .shape = {B / 2}}, b = {.ids = cls + B / 2, .ndim = 1, .shape = {B / 2}};
    cp_head_outputs oa = {0}, ob = {0};
    CHECK_OK(cp_head_backward(&(cp_run){.arena = &scratch}, &head, h, B / 2, T, ids, &a, (double)items, dh_half, &oa));
    CHECK_OK(cp_head_backward(&(cp_run){.arena = &scratch}, &head, h + B / 2 * T * C, B / 2, T, ids + B / 2 * T, &b, (double)items,
                              dh_half + B / 2 * T * C, &ob));
    const double d_dh = test_max_abs_diff(dh_whole, dh_half, B * T * C);
    const double d_g = test_max_abs_diff(g_whole, head.classifier->weight->grad, K * C);
    printf("  halves vs whole batch: d hidden %.2e, d score.weight %.2e, loss %.2e\n", d_dh, d_g,
           fabs(o.loss_sum - oa.loss_sum - ob.loss_sum));
    CHECK(items == 3 && oa.n_items + ob.n_items == items, "items %lld = %lld + %lld", (long long)items,
          (long long)oa.n_items, (long long)ob.n_items);
    CHECK(d_dh < 1e-7 && d_g < 1e-6, "accumulated halves differ: d hidden %.3e, weight %.3e", d_dh, d_g);

    cp_head_outputs lo = {.logits = logits_b};
    CHECK_OK(cp_head_forward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, NULL, &lo));
    CHECK(test_max_abs_diff(logits_a, logits_b, B * K) == 0 && lo.loss == 0 && lo.n_items == 0,
          "logits without labels differ or a loss was reported (%g)", lo.loss);
    cp_arena_free(&scratch);
    cp_module_free(root);
}

TEST(head_errors) {
    enum { B = 2, T = 5, C = 6 };
    float h[B * T * C] = {0}, dh[B * T * C], vals[B * T] = {0};
    int64_t ids[B * T] = {0}, tags[B * T] = {0};
    cp_module *root = cp_module_new(NULL, "", "TestModel", CP_MOD_CONTAINER);
    cp_module *score = make_linear(root, "score", C, 3, 0, NULL, NULL);
    cp_module *dense = make_linear(root, "classifier.dense", C, 4, 1, NULL, NULL);
    cp_head head = {.task = CP_TASK_SEQ_CLS, .num_labels = 4, .pad_token_id = 0, .classifier = score};
    CHECK_ERR(cp_head_check(&head, C), "score: 3 outputs, but num_labels is 4");
    head.num_labels = 3;
    CHECK_ERR(cp_head_check(&head, C + 1), "score: takes 6 inputs, but the hidden size is 7");
    head.dense = dense;
    CHECK_ERR(cp_head_check(&head, C), "classifier.dense: 4 outputs, but score takes 6 inputs");
    head.dense = NULL;
    head.task = CP_TASK_SEQ_2_SEQ_LM; /* the decoder's LM head: one Linear, as CAUSAL_LM's */
    head.dense = dense;
    CHECK_ERR(cp_head_check(&head, C), "a SEQ_2_SEQ_LM head is one bias-free Linear");
    head.dense = NULL;
    head.task = CP_TASK_CAUSAL_LM;
    head.dense = make_linear(root, "extra", C, C, 0, NULL, NULL);
    CHECK_ERR(cp_head_check(&head, C), "a CAUSAL_LM head is one bias-free Linear");
    head.dense = NULL;

    cp_arena scratch;
    cp_arena_init(&scratch);
    cp_head_outputs o = {0};
    head.task = CP_TASK_TOKEN_CLS;
    cp_task_labels floats_bt = {.values = vals, .ndim = 2, .shape = {B, T}};
    CHECK_ERR(cp_head_forward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &floats_bt, &o), "needs integer class ids (B,T) = (2, 5)");
    cp_task_labels short_bt = {.ids = tags, .ndim = 2, .shape = {B, T - 1}};
    CHECK_ERR(cp_head_forward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &short_bt, &o), "8 class ids, expected (B,T) = (2, 5)");
    tags[7] = 3;
    cp_task_labels bad = {.ids = tags, .ndim = 2, .shape = {B, T}};
    CHECK_ERR(cp_head_backward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &bad, 1.0, dh, &o), "class id 3 at labels[1][2]");
    CHECK_ERR(cp_head_backward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, NULL, 1.0, dh, &o), "training needs labels");
    head.task = CP_TASK_SEQ_CLS;
    head.pad_token_id = -1;
    tags[7] = 0;
    cp_task_labels seq = {.ids = tags, .ndim = 1, .shape = {B}};
    CHECK_ERR(cp_head_forward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &seq, &o), "Cannot handle batch sizes > 1");
    head.pad_token_id = 0;
    cp_task_labels seq_wrong = {.ids = tags, .ndim = 1, .shape = {B + 1}};
    CHECK_ERR(cp_head_forward(&(cp_run){.arena = &scratch}, &head, h, B, T, ids, &seq_wrong, &o), "shape (3) holds 3 class ids, expected 2");
    cp_arena_free(&scratch);

    cp_task t;
    CHECK_ERR(cp_task_parse("QUESTION_ANS", &t), "\"QUESTION_ANS\" is not one cpeft has");
    CHECK_OK(cp_task_parse("TOKEN_CLS", &t));
    CHECK(t == CP_TASK_TOKEN_CLS && strcmp(cp_task_name(t), "TOKEN_CLS") == 0, "TOKEN_CLS parsed as %d", (int)t);
    cp_module_free(root);
}

int main(void) {
    RUN(parity_with_transformers);
    RUN(head_backward_matches_finite_differences);
    RUN(pool_positions_as_transformers);
    RUN(accumulation_and_logits_only);
    RUN(head_errors);
    return test_summary();
}
