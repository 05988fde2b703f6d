/*
 * test_metrics.c — classification metrics (src/train/metrics.c) against scikit-learn and seqeval:
 * tests/fixtures/class/metrics.json (tests/reference/make_class_fixtures.py) holds accuracy_score and
 * f1_score(average="macro") for class-id cases, and seqeval's micro precision / recall / F1 and
 * per-type scores for tag sequences (no predicted entities, all wrong, I- starts, type changes,
 * single-token entities, E-/S-, bare and hyphenated tags, random soups). Prints the largest
 * difference seen.
 */
#include "test.h"
#include "train/metrics.h"
#include "io/json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#define FIXTURE "tests/fixtures/class/metrics.json"

static cJSON *fixture;
static double max_diff;

static void check_close(double got, double want, const char *what, const char *name) {
    double d = fabs(got - want);
    if (d > max_diff) max_diff = d;
    CHECK(d <= 1e-12, "%s %s: got %.17g, sklearn/seqeval %.17g", name, what, got, want);
}

static int64_t *ints(const cJSON *arr, int64_t *n) {
    *n = cJSON_GetArraySize(arr);
    int64_t *v = malloc((size_t)(*n + 1) * sizeof *v);
    int64_t i = 0;
    for (const cJSON *x = arr->child; x; x = x->next) v[i++] = (int64_t)x->valuedouble;
    return v;
}

TEST(accuracy_and_macro_f1_match_sklearn) {
    const cJSON *cases = cJSON_GetObjectItem(fixture, "classification");
    CHECK(cJSON_GetArraySize(cases) >= 8, "cases");
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        int64_t n, m;
        int64_t *t = ints(cJSON_GetObjectItem(c, "y_true"), &n), *p = ints(cJSON_GetObjectItem(c, "y_pred"), &m);
        CHECK(n == m, "%s lengths", name);
        check_close(cp_metric_accuracy(t, p, n), cJSON_GetObjectItem(c, "accuracy")->valuedouble, "accuracy", name);
        double f1;
        CHECK_OK(cp_metric_macro_f1(t, p, n, &f1));
        check_close(f1, cJSON_GetObjectItem(c, "macro_f1")->valuedouble, "macro_f1", name);
        free(t);
        free(p);
    }
}

TEST(ignored_positions_and_bad_ids) {
    int64_t t[] = {1, -100, 0, 1}, p[] = {1, 0, 1, 1};
    CHECK(fabs(cp_metric_accuracy(t, p, 4) - 2.0 / 3.0) < 1e-15, "accuracy skips -100");
    double f1;
    CHECK_OK(cp_metric_macro_f1(t, p, 4, &f1));
    /* classes 0 (tp 0) and 1 (tp 2, fp 1): (0 + 0.8) / 2 */
    CHECK(fabs(f1 - 0.4) < 1e-15, "macro-F1 %g", f1);
    CHECK(cp_metric_accuracy(t, p, 0) == 0.0, "empty");
    int64_t bad[] = {0, -3};
    CHECK_ERR(cp_metric_macro_f1(bad, bad, 2, &f1), "class id -3 at position 1 is negative");
}

/* The cases' sentences as string arrays fed to the accumulator. */
static void feed_case(cp_seqeval *s, const cJSON *c) {
    const cJSON *ts = cJSON_GetObjectItem(c, "y_true"), *ps = cJSON_GetObjectItem(c, "y_pred");
    for (const cJSON *t = ts->child, *p = ps->child; t && p; t = t->next, p = p->next) {
        int n = cJSON_GetArraySize(t);
        const char **a = malloc((size_t)(n + 1) * sizeof *a), **b = malloc((size_t)(n + 1) * sizeof *b);
        int i = 0;
        for (const cJSON *x = t->child, *y = p->child; x && y; x = x->next, y = y->next, i++) {
            a[i] = x->valuestring;
            b[i] = y->valuestring;
        }
        CHECK_OK(cp_seqeval_add_tags(s, a, b, n));
        free(a);
        free(b);
    }
}

TEST(seqeval_micro_and_per_type) {
    const cJSON *cases = cJSON_GetObjectItem(fixture, "seqeval");
    CHECK(cJSON_GetArraySize(cases) >= 13, "cases");
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        cp_seqeval s;
        cp_seqeval_init(&s);
        feed_case(&s, c);
        cp_prf r = cp_seqeval_micro(&s);
        check_close(r.precision, cJSON_GetObjectItem(c, "precision")->valuedouble, "precision", name);
        check_close(r.recall, cJSON_GetObjectItem(c, "recall")->valuedouble, "recall", name);
        check_close(r.f1, cJSON_GetObjectItem(c, "f1")->valuedouble, "f1", name);
        const cJSON *rm = cJSON_GetObjectItem(c, "report_micro");
        check_close(r.f1, cJSON_GetObjectItem(rm, "f1")->valuedouble, "micro avg f1", name);
        CHECK(r.n_true == (int64_t)cJSON_GetObjectItem(rm, "support")->valuedouble, "%s support %lld", name,
              (long long)r.n_true);
        const cJSON *pt = cJSON_GetObjectItem(c, "per_type");
        int with_support = 0;
        for (size_t k = 0; k < s.n_types; k++) {
            const cJSON *e = cJSON_GetObjectItem(pt, s.types[k]);
            cp_prf q = cp_seqeval_type(&s, k);
            if (!e) { /* seqeval reports types with true or predicted entities only */
                CHECK(q.n_true == 0 && q.n_pred == 0, "%s type %s missing from seqeval's report", name, s.types[k]);
                continue;
            }
            with_support++;
            check_close(q.precision, cJSON_GetObjectItem(e, "precision")->valuedouble, s.types[k], name);
            check_close(q.recall, cJSON_GetObjectItem(e, "recall")->valuedouble, s.types[k], name);
            check_close(q.f1, cJSON_GetObjectItem(e, "f1")->valuedouble, s.types[k], name);
            CHECK(q.n_true == (int64_t)cJSON_GetObjectItem(e, "support")->valuedouble, "%s %s support", name, s.types[k]);
        }
        CHECK(with_support == cJSON_GetArraySize(pt), "%s: %d types here, %d in seqeval's report", name, with_support,
              cJSON_GetArraySize(pt));
        cp_seqeval_free(&s);
    }
}

TEST(seqeval_ids_skip_ignored_positions) {
    /* the same as tags ["B-PER","I-PER","O"] vs ["B-PER","O","O"] once the -100 positions are dropped */
    const char *names[] = {"O", "B-PER", "I-PER"};
    int64_t t[] = {-100, 1, -100, 2, 0, -100}, p[] = {2, 1, 2, 0, 0, 1};
    cp_seqeval s;
    cp_seqeval_init(&s);
    CHECK_OK(cp_seqeval_add_ids(&s, names, 3, t, p, 6));
    cp_prf r = cp_seqeval_micro(&s);
    CHECK(r.n_true == 1 && r.n_pred == 1 && r.tp == 0, "true %lld pred %lld tp %lld", (long long)r.n_true,
          (long long)r.n_pred, (long long)r.tp);
    int64_t bad[] = {1, 7};
    CHECK_ERR(cp_seqeval_add_ids(&s, names, 3, t, bad, 2), "predicted label 7 at position 1 is not a class id (0..2)");
    cp_seqeval_free(&s);
}

int main(void) {
    if (cp_json_read_file(FIXTURE, &fixture) != CP_OK) {
        fprintf(stderr, "%s\n", cp_last_error());
        return 1;
    }
    RUN(accuracy_and_macro_f1_match_sklearn);
    RUN(ignored_positions_and_bad_ids);
    RUN(seqeval_micro_and_per_type);
    RUN(seqeval_ids_skip_ignored_positions);
    printf("metrics: max |cpeft - sklearn/seqeval| = %.3g\n", max_diff);
    cJSON_Delete(fixture);
    return test_summary();
}
