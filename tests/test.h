/*
 * test.h — the tiny test harness every test program includes.
 *
 *   TEST(name) { CHECK(cond, "fmt", ...); CHECK_OK(cp_call(...)); }
 *   int main(void) { RUN(name); ...; return test_summary(); }
 *
 * Each test prints "ok   <name>" or "FAIL <name>" with the failed checks; test_summary() prints
 * "<passed> passed, <failed> failed" and returns the exit status. A test that cannot run here (what
 * it needs is absent: mpirun) calls SKIP("reason"): it prints "skip <name>: reason", counts as
 * skipped (neither passed nor failed) and test_summary() says "<n> skipped" on the line before. Tests run from the repository
 * root and read fixtures from tests/fixtures/.
 */
#ifndef CP_TEST_H
#define CP_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"

static int test_checks_failed_in_current, test_skipped_current;
static int tests_passed, tests_failed, tests_skipped;
static char test_skip_reason[512];

/* Leaves the current test, counted as skipped with the reason given (printf-style). */
#define SKIP(...)                                                               \
    do {                                                                        \
        test_skipped_current = 1;                                               \
        snprintf(test_skip_reason, sizeof test_skip_reason, __VA_ARGS__);       \
        return;                                                                 \
    } while (0)

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            test_checks_failed_in_current++;                                    \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

#define CHECK_OK(expr)                                                          \
    do {                                                                        \
        if ((expr) != CP_OK) {                                                  \
            test_checks_failed_in_current++;                                    \
            fprintf(stderr, "  %s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr, \
                    cp_last_error());                                           \
        }                                                                       \
    } while (0)

/* Expects failure and an error message containing `needle`. */
#define CHECK_ERR(expr, needle)                                                 \
    do {                                                                        \
        cp_clear_error();                                                       \
        if ((expr) == CP_OK) {                                                  \
            test_checks_failed_in_current++;                                    \
            fprintf(stderr, "  %s:%d: %s succeeded, expected an error\n", __FILE__, __LINE__, #expr); \
        } else if (!strstr(cp_last_error(), (needle))) {                        \
            test_checks_failed_in_current++;                                    \
            fprintf(stderr, "  %s:%d: %s: error \"%s\" does not mention \"%s\"\n", __FILE__, \
                    __LINE__, #expr, cp_last_error(), (needle));                \
        }                                                                       \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                               \
    do {                                                                        \
        test_checks_failed_in_current = test_skipped_current = 0;               \
        name();                                                                 \
        if (test_checks_failed_in_current) { tests_failed++; printf("FAIL %s\n", #name); } \
        else if (test_skipped_current) { tests_skipped++; printf("skip %s: %s\n", #name, test_skip_reason); } \
        else { tests_passed++; printf("ok   %s\n", #name); }                    \
        fflush(stdout);                                                         \
    } while (0)

static inline int test_summary(void) {
    if (tests_skipped) printf("%d skipped\n", tests_skipped);
    printf("%d passed, %d failed\n", tests_passed, tests_failed);
    return tests_failed ? 1 : 0;
}

/* Largest |a - b| over n floats. */
static inline double test_max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

#endif
