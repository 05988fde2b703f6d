/*
 * test_task_loss.c — the problem-type losses (nn/task_loss.c): the problem_type rule, each loss
 * against a double-precision reference written here from the PyTorch definitions (MSELoss,
 * CrossEntropyLoss with ignore_index -100, BCEWithLogitsLoss), each backward against central finite
 * differences of its forward, the normaliser (a given divisor; the batch mean; two half batches
 * summing to the whole), and the errors for labels of the wrong dtype, shape or range, which must name
 * the field and the position.
 */
#include "test.h"
#include "models/lm_head.h"
#include "nn/task_loss.h"

#include <stdlib.h>

static unsigned seed_state = 777;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static double rel_err(double analytic, double numeric) {
    return fabs(analytic - numeric) / fmax(1e-3, fmax(fabs(analytic), fabs(numeric)));
}

/* ---- references ------------------------------------------------------------------------------------ */

static double ce_ref(const float *x, int64_t K, int64_t y) { // -log softmax(x)[y]
    double s = 0;
    for (int64_t k = 0; k < K; k++) s += exp((double)x[k]);
    return log(s) - x[y];
}

static double bce_ref(double x, double y) { // -(y log σ(x) + (1 - y) log(1 - σ(x)))
    const double p = 1.0 / (1.0 + exp(-x));
    return -(y * log(p) + (1 - y) * log1p(-p));
}

/* ---- the problem_type rule ------------------------------------------------------------------------- */

TEST(problem_type_rule) {
    int64_t ids[2] = {0, 1};
    float vals[2] = {0, 1};
    cp_task_labels li = {.ids = ids, .ndim = 1, .shape = {2}}, lv = {.values = vals, .ndim = 1, .shape = {2}};
    cp_problem_type t = CP_PROBLEM_AUTO;
    CHECK_OK(cp_problem_type_resolve(CP_PROBLEM_AUTO, 1, &li, &t));
    CHECK(t == CP_PROBLEM_REGRESSION, "num_labels 1 with integer labels: %s", cp_problem_type_name(t));
    CHECK_OK(cp_problem_type_resolve(CP_PROBLEM_AUTO, 1, &lv, &t));
    CHECK(t == CP_PROBLEM_REGRESSION, "num_labels 1 with float labels: %s", cp_problem_type_name(t));
    CHECK_OK(cp_problem_type_resolve(CP_PROBLEM_AUTO, 3, &li, &t));
    CHECK(t == CP_PROBLEM_SINGLE_LABEL, "num_labels 3 with integer labels: %s", cp_problem_type_name(t));
    CHECK_OK(cp_problem_type_resolve(CP_PROBLEM_AUTO, 3, &lv, &t));
    CHECK(t == CP_PROBLEM_MULTI_LABEL, "num_labels 3 with float labels: %s", cp_problem_type_name(t));
    CHECK_OK(cp_problem_type_resolve(CP_PROBLEM_REGRESSION, 3, &li, &t));
    CHECK(t == CP_PROBLEM_REGRESSION, "a configured type is kept: %s", cp_problem_type_name(t));
    CHECK_ERR(cp_problem_type_resolve(CP_PROBLEM_AUTO, 0, &li, &t), "num_labels: 0");
    CHECK_ERR(cp_problem_type_resolve(CP_PROBLEM_SINGLE_LABEL, 1, &li, &t), "requires num_labels > 1");

    static const char *const names[] = {"regression", "single_label_classification", "multi_label_classification"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(cp_problem_type_parse(names[i], &t));
        CHECK(t == (cp_problem_type)(i + 1) && strcmp(cp_problem_type_name(t), names[i]) == 0, "%s parsed as %d", names[i], (int)t);
    }
    CHECK_OK(cp_problem_type_parse(NULL, &t));
    CHECK(t == CP_PROBLEM_AUTO, "null gives auto: %d", (int)t);
    CHECK_ERR(cp_problem_type_parse("multi_label", &t), "\"multi_label\" is not one of");
}

/* ---- forward against the references ---------------------------------------------------------------- */

TEST(losses_match_double_reference) {
    enum { N = 5, K = 4 };
    float x[N * K], vals[N * K];
    int64_t ids[N] = {3, -100, 0, 2, 1};
    for (int i = 0; i < N * K; i++) { x[i] = 3 * frand(); vals[i] = frand() > 0 ? 1.0f : 0.0f; }
    vals[1] = 0.25f; /* a soft label */
    double worst = 0, sum;
    int64_t n;

    cp_task_labels ce = {.ids = ids, .ndim = 1, .shape = {N}};
    CHECK_OK(cp_task_loss(CP_PROBLEM_AUTO, x, N, K, &ce, &sum, &n));
    double ref = 0;
    for (int i = 0; i < N; i++) if (ids[i] != -100) ref += ce_ref(x + i * K, K, ids[i]);
    CHECK(n == 4, "cross-entropy counts %lld rows, expected 4 (one is -100)", (long long)n);
    worst = fmax(worst, fabs(sum - ref));

    cp_task_labels bce = {.values = vals, .ndim = 2, .shape = {N, K}};
    CHECK_OK(cp_task_loss(CP_PROBLEM_AUTO, x, N, K, &bce, &sum, &n));
    ref = 0;
    for (int i = 0; i < N * K; i++) ref += bce_ref(x[i], vals[i]);
    CHECK(n == N * K, "BCE counts %lld elements", (long long)n);
    worst = fmax(worst, fabs(sum - ref));

    cp_task_labels mse = {.values = vals, .ndim = 2, .shape = {N, K}};
    CHECK_OK(cp_task_loss(CP_PROBLEM_REGRESSION, x, N, K, &mse, &sum, &n));
    ref = 0;
    for (int i = 0; i < N * K; i++) ref += ((double)x[i] - vals[i]) * ((double)x[i] - vals[i]);
    CHECK(n == N * K, "MSE counts %lld elements", (long long)n);
    worst = fmax(worst, fabs(sum - ref));

    /* regression with one label: labels (N) or (N,1), integer labels promoted as torch does */
    int64_t ids_reg[N] = {1, -2, 0, 3, -100};
    cp_task_labels reg1 = {.ids = ids_reg, .ndim = 2, .shape = {N, 1}};
    CHECK_OK(cp_task_loss(CP_PROBLEM_AUTO, x, N, 1, &reg1, &sum, &n));
    ref = 0;
    for (int i = 0; i < N; i++) ref += ((double)x[i] - (double)ids_reg[i]) * ((double)x[i] - (double)ids_reg[i]);
    CHECK(n == N, "regression (N,1) counts %lld", (long long)n);
    worst = fmax(worst, fabs(sum - ref) / fabs(ref));

    /* cross-entropy over many rows and a large label set: the threaded path, the same sums */
    enum { NB = 40, KB = 1200 };
    float *xb = malloc(sizeof(float) * NB * KB);
    int64_t yb[NB];
    for (int i = 0; i < NB * KB; i++) xb[i] = 4 * frand();
    for (int i = 0; i < NB; i++) yb[i] = i % 5 == 2 ? -100 : (i * 97) % KB;
    cp_task_labels big = {.ids = yb, .ndim = 1, .shape = {NB}};
    CHECK_OK(cp_task_loss(CP_PROBLEM_SINGLE_LABEL, xb, NB, KB, &big, &sum, &n));
    ref = 0;
    for (int i = 0; i < NB; i++) if (yb[i] != -100) ref += ce_ref(xb + i * KB, KB, yb[i]);
    CHECK(n == 32, "large cross-entropy counts %lld", (long long)n);
    worst = fmax(worst, fabs(sum - ref) / n);
    free(xb);

    printf("  CE, BCE, MSE, MSE (N,1), CE (40 x 1200): worst |sum - reference| %.2e\n", worst);
    CHECK(worst < 1e-5, "a loss differs from its reference by %.3e", worst);
}

/* ---- backward against finite differences ----------------------------------------------------------- */

static double fd_worst(cp_problem_type type, float *x, int64_t N, int64_t K, const cp_task_labels *l, double norm) {
    float *d = malloc(sizeof(float) * (size_t)(N * K));
    double sum = 0, worst = 0;
    int64_t n = 0;
    if (cp_task_loss_backward(type, x, N, K, l, norm, d, &sum, &n) != CP_OK) { free(d); return INFINITY; }
    const double divisor = norm > 0 ? norm : (double)n;
    const float h = 1e-2f;
    for (int64_t i = 0; i < N * K; i++) {
        const float keep = x[i];
        double lp, lm;
        x[i] = keep + h; cp_task_loss(type, x, N, K, l, &lp, NULL);
        x[i] = keep - h; cp_task_loss(type, x, N, K, l, &lm, NULL);
        x[i] = keep;
        worst = fmax(worst, rel_err(d[i], (lp - lm) / (2 * h) / divisor));
    }
    free(d);
    return worst;
}

TEST(backward_matches_finite_differences) {
    enum { N = 6, K = 3 };
    float x[N * K], vals[N * K];
    int64_t ids[N] = {2, 0, -100, 1, 1, 0};
    for (int i = 0; i < N * K; i++) { x[i] = 2 * frand(); vals[i] = frand(); }
    float bin[N * K];
    for (int i = 0; i < N * K; i++) bin[i] = vals[i] > 0 ? 1.0f : 0.0f;
    cp_task_labels ce = {.ids = ids, .ndim = 1, .shape = {N}};
    cp_task_labels reg = {.values = vals, .ndim = 2, .shape = {N, K}};
    cp_task_labels reg1 = {.values = vals, .ndim = 1, .shape = {N}};
    cp_task_labels bce = {.values = bin, .ndim = 2, .shape = {N, K}};
    const double w_ce = fd_worst(CP_PROBLEM_SINGLE_LABEL, x, N, K, &ce, 3.5);
    const double w_ce_mean = fd_worst(CP_PROBLEM_SINGLE_LABEL, x, N, K, &ce, CP_NORM_BATCH_MEAN);
    const double w_reg = fd_worst(CP_PROBLEM_REGRESSION, x, N, K, &reg, 7.0);
    const double w_reg1 = fd_worst(CP_PROBLEM_REGRESSION, x, N, 1, &reg1, CP_NORM_BATCH_MEAN);
    const double w_bce = fd_worst(CP_PROBLEM_MULTI_LABEL, x, N, K, &bce, CP_NORM_BATCH_MEAN);
    printf("  worst relative error: CE %.2e (norm 3.5), %.2e (batch mean); MSE %.2e, (N) %.2e; BCE %.2e\n", w_ce,
           w_ce_mean, w_reg, w_reg1, w_bce);
    CHECK(w_ce < 1e-2 && w_ce_mean < 1e-2, "cross-entropy backward off by %.3e / %.3e", w_ce, w_ce_mean);
    CHECK(w_reg < 1e-2 && w_reg1 < 1e-2, "MSE backward off by %.3e / %.3e", w_reg, w_reg1);
    CHECK(w_bce < 1e-2, "BCE backward off by %.3e", w_bce);

    /* the ignored row gets no gradient; forward and backward report the same loss and count */
    float d[N * K];
    double s_fwd, s_bwd;
    int64_t n_fwd, n_bwd, n_items = -1;
    memset(d, 0x7f, sizeof d);
    CHECK_OK(cp_task_loss_backward(CP_PROBLEM_SINGLE_LABEL, x, N, K, &ce, 1.0, d, &s_bwd, &n_bwd));
    CHECK_OK(cp_task_loss(CP_PROBLEM_SINGLE_LABEL, x, N, K, &ce, &s_fwd, &n_fwd));
    CHECK_OK(cp_task_loss_items(CP_PROBLEM_AUTO, N, K, &ce, &n_items));
    CHECK(d[2 * K] == 0 && d[2 * K + 1] == 0 && d[2 * K + 2] == 0, "the -100 row has a gradient");
    CHECK(s_fwd == s_bwd && n_fwd == n_bwd && n_items == n_fwd && n_fwd == 5, "forward %.9g/%lld, backward %.9g/%lld, items %lld",
          s_fwd, (long long)n_fwd, s_bwd, (long long)n_bwd, (long long)n_items);
}

/* Gradient accumulation: two halves, each divided by the count of the whole batch, add up to the
 * whole batch's mean; and with every label ignored the batch mean gives no gradient, not NaN. */
TEST(normaliser_accumulates_like_num_items_in_batch) {
    enum { N = 8, K = 5 };
    float x[N * K], whole[N * K], half_a[N * K / 2], half_b[N * K / 2];
    int64_t ids[N] = {0, 4, -100, 2, 3, -100, -100, 1};
    for (int i = 0; i < N * K; i++) x[i] = 3 * frand();
    cp_task_labels all = {.ids = ids, .ndim = 1, .shape = {N}};
    cp_task_labels a = {.ids = ids, .ndim = 1, .shape = {N / 2}}, b = {.ids = ids + N / 2, .ndim = 1, .shape = {N / 2}};
    double s, sa, sb;
    int64_t n, na, nb;
    CHECK_OK(cp_task_loss_backward(CP_PROBLEM_AUTO, x, N, K, &all, CP_NORM_BATCH_MEAN, whole, &s, &n));
    CHECK_OK(cp_task_loss_backward(CP_PROBLEM_AUTO, x, N / 2, K, &a, (double)n, half_a, &sa, &na));
    CHECK_OK(cp_task_loss_backward(CP_PROBLEM_AUTO, x + N / 2 * K, N / 2, K, &b, (double)n, half_b, &sb, &nb));
    const double d = fmax(test_max_abs_diff(whole, half_a, N * K / 2), test_max_abs_diff(whole + N * K / 2, half_b, N * K / 2));
    printf("  halves with num_items_in_batch %lld vs the whole batch mean: max |d logits| diff %.2e, loss %.2e\n",
           (long long)n, d, fabs(s - sa - sb));
    CHECK(n == 5 && na + nb == n, "counts %lld = %lld + %lld", (long long)n, (long long)na, (long long)nb);
    CHECK(d < 1e-7 && fabs(s - sa - sb) < 1e-9, "accumulated halves differ from the whole: %.3e", d);

    int64_t none[2] = {-100, -100};
    cp_task_labels ignored = {.ids = none, .ndim = 1, .shape = {2}};
    float g[2 * K];
    CHECK_OK(cp_task_loss_backward(CP_PROBLEM_AUTO, x, 2, K, &ignored, CP_NORM_BATCH_MEAN, g, &s, &n));
    int finite_zero = 1;
    for (int i = 0; i < 2 * K; i++) finite_zero &= g[i] == 0.0f;
    CHECK(n == 0 && s == 0 && finite_zero, "all ignored: %lld items, sum %g, gradient not all zero", (long long)n, s);
}

/* ---- errors ---------------------------------------------------------------------------------------- */

TEST(label_errors_name_field_and_position) {
    float x[12] = {0}, vals[12] = {0}, d[12];
    int64_t ids[4] = {0, 1, 2, 0};
    double s;
    int64_t n;
    cp_task_labels l = {.ids = ids, .ndim = 1, .shape = {4}};
    ids[2] = 3;
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &l, &s, &n), "class id 3 at labels[2] is outside [0, 3)");
    ids[2] = -1;
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &l, &s, &n), "class id -1 at labels[2]");
    ids[2] = 2;
    int64_t tok[6] = {0, 1, -100, 2, 9, 0};
    cp_task_labels lt = {.ids = tok, .ndim = 2, .shape = {2, 3}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_SINGLE_LABEL, x, 6, 3, &lt, &s, &n), "at labels[1][1]");
    l.shape[0] = 3;
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &l, &s, &n), "shape (3) holds 3 class ids, expected 4");
    l.shape[0] = 4;

    cp_task_labels lv = {.values = vals, .ndim = 1, .shape = {4}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_SINGLE_LABEL, x, 4, 3, &lv, &s, &n), "needs integer class ids");
    CHECK_ERR(cp_task_loss(CP_PROBLEM_MULTI_LABEL, x, 4, 3, &l, &s, &n), "needs float labels");
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &lv, &s, &n), "shape (4), expected (4, 3)"); /* auto: multi-label */
    cp_task_labels lv2 = {.values = vals, .ndim = 2, .shape = {3, 4}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_REGRESSION, x, 4, 3, &lv2, &s, &n), "shape (3, 4), expected (4, 3)");
    cp_task_labels lv1 = {.values = vals, .ndim = 2, .shape = {4, 2}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 1, &lv1, &s, &n), "holds 8 values, expected 4");
    vals[5] = NAN;
    cp_task_labels lv3 = {.values = vals, .ndim = 2, .shape = {4, 3}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_MULTI_LABEL, x, 4, 3, &lv3, &s, &n), "value nan at labels[1][2] is not a finite number");
    vals[5] = 0;

    cp_task_labels both = {.ids = ids, .values = vals, .ndim = 1, .shape = {4}}, neither = {.ndim = 1, .shape = {4}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &both, &s, &n), "both were set");
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &neither, &s, &n), "neither was set");
    cp_task_labels deep = {.ids = ids, .ndim = 3, .shape = {4, 1}};
    CHECK_ERR(cp_task_loss(CP_PROBLEM_AUTO, x, 4, 3, &deep, &s, &n), "3 dimensions");
    CHECK_ERR(cp_task_loss_backward(CP_PROBLEM_AUTO, x, 4, 3, &l, -1.0, d, &s, &n), "norm: -1");
    CHECK_ERR(cp_task_loss_backward(CP_PROBLEM_AUTO, x, 4, 3, &l, NAN, d, &s, &n), "norm: nan");
}

int main(void) {
    RUN(problem_type_rule);
    RUN(losses_match_double_reference);
    RUN(backward_matches_finite_differences);
    RUN(normaliser_accumulates_like_num_items_in_batch);
    RUN(label_errors_name_field_and_position);
    return test_summary();
}
