/*
 * test_kernel_variants.c — every instruction-set variant of the kernels (kernels/dispatch.h) that this
 * machine can run, held against plain double-precision references written out here: the skinny
 * matrix products, the tanh-GELU and SiLU forward and backward, the residual add, the masked
 * softmax of an attention row and the max / exp-sum / exp-scale passes of a log-sum-exp. Also: the process runs the best variant the CPU
 * has, and CPEFT_ISA lowers it (checked in child processes, since the choice is made once).
 * Prints the largest difference per variant and kernel.
 */
#include "test.h"
#include "kernels/blas_core.h"
#include "kernels/dispatch.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static float frand(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f; }

/* ---- references -------------------------------------------------------------------------------- */

/* out (N,OC) (+)= in (N,C)·Wᵀ (nt, W is (OC,C)) or in·W (nn, W is (C,OC)), in double; also Σ|in·w|
 * per output, the scale of its rounding error. */
static void matmul_ref(double *out, double *mag, const float *in, const float *W, const float *init, int64_t N, int64_t C,
                       int64_t OC, int nn) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < OC; o++) {
            double s = init ? init[n * OC + o] : 0.0, m = init ? fabs(init[n * OC + o]) : 0.0;
            for (int64_t c = 0; c < C; c++) {
                double p = (double)in[n * C + c] * (nn ? W[c * OC + o] : W[o * C + c]);
                s += p;
                m += fabs(p);
            }
            out[n * OC + o] = s;
            mag[n * OC + o] = m;
        }
}

static double gelu_ref(double x) { return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))); }
static double gelu_grad_ref(double x) {
    double k = sqrt(2.0 / M_PI), u = k * (x + 0.044715 * x * x * x), t = tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x);
}
static double silu_ref(double x) { return x / (1.0 + exp(-x)); }
static double silu_grad_ref(double x) { double s = 1.0 / (1.0 + exp(-x)); return s * (1.0 + x * (1.0 - s)); }

/* ---- the tests --------------------------------------------------------------------------------- */

/* The variants this machine runs, base first; returns how many. */
static int runnable(const cp_kernel_table **out) {
    int n = 0;
    for (int i = 0; i < CP_ISA_COUNT; i++)
        if ((out[n] = cp_kernels_for((cp_isa)i))) n++;
    return n;
}

TEST(skinny_variants_match_double_reference) {
    const cp_kernel_table *k[CP_ISA_COUNT];
    int nk = runnable(k);
    static const int64_t shapes[][2] = {{64, 96}, {77, 130}, {1, 5}, {768, 300}}; /* C, OC: odd sizes, tails */
    unsigned seed = 7;
    for (int v = 0; v < nk; v++) {
        double worst = 0;
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int64_t N = 1; N <= 11; N += 2)
                for (int nn = 0; nn < 2; nn++)
                    for (int acc = 0; acc < 2; acc++) {
                        const int64_t C = shapes[s][0], OC = shapes[s][1];
                        float *in = malloc((size_t)(N * C) * sizeof *in), *W = malloc((size_t)(C * OC) * sizeof *W);
                        float *out = malloc((size_t)(N * OC) * sizeof *out), *init = malloc((size_t)(N * OC) * sizeof *init);
                        double *want = malloc((size_t)(N * OC) * sizeof *want), *mag = malloc((size_t)(N * OC) * sizeof *mag);
                        for (int64_t i = 0; i < N * C; i++) in[i] = frand(&seed);
                        for (int64_t i = 0; i < C * OC; i++) W[i] = frand(&seed);
                        for (int64_t i = 0; i < N * OC; i++) out[i] = init[i] = frand(&seed);
                        (nn ? k[v]->skinny_nn : k[v]->skinny_nt)(out, in, W, N, C, OC, acc);
                        matmul_ref(want, mag, in, W, acc ? init : NULL, N, C, OC, nn);
                        for (int64_t i = 0; i < N * OC; i++) {
                            double rel = fabs(out[i] - want[i]) / (mag[i] + 1e-30);
                            if (rel > worst || rel != rel) worst = rel;
                        }
                        free(in); free(W); free(out); free(init); free(want); free(mag);
                    }
        printf("  %-6s skinny NT/NN, 1-11 rows, 4 shapes: max |diff| / Σ|terms| %.1e\n", k[v]->name, worst);
        CHECK(worst < 1e-6, "%s: skinny kernels differ from the reference by %.3e of the terms' magnitude", k[v]->name, worst);
    }
}

TEST(activation_variants_match_double_reference) {
    const cp_kernel_table *k[CP_ISA_COUNT];
    int nk = runnable(k);
    enum { N = 70001 }; /* above the threading threshold, and not a multiple of any vector width */
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *dy = malloc(N * sizeof *dy), *dx = malloc(N * sizeof *dx);
    unsigned seed = 11;
    for (int i = 0; i < N; i++) { x[i] = -12.0f + 24.0f * (float)i / (N - 1); dy[i] = frand(&seed); }
    for (int v = 0; v < nk; v++) {
        double w[4] = {0, 0, 0, 0}; /* gelu, gelu', silu, silu': max |diff| */
        k[v]->gelu_tanh(y, x, N);
        for (int i = 0; i < N; i++) w[0] = fmax(w[0], fabs(y[i] - gelu_ref(x[i])));
        k[v]->gelu_tanh_backward(dx, dy, x, N);
        for (int i = 0; i < N; i++) w[1] = fmax(w[1], fabs(dx[i] - dy[i] * gelu_grad_ref(x[i])));
        k[v]->silu(y, x, N);
        for (int i = 0; i < N; i++) w[2] = fmax(w[2], fabs(y[i] - silu_ref(x[i])));
        k[v]->silu_backward(dx, dy, x, N);
        for (int i = 0; i < N; i++) w[3] = fmax(w[3], fabs(dx[i] - dy[i] * silu_grad_ref(x[i])));
        printf("  %-6s gelu_tanh %.1e, backward %.1e, silu %.1e, backward %.1e (max |diff| over [-12, 12])\n",
               k[v]->name, w[0], w[1], w[2], w[3]);
        for (int j = 0; j < 4; j++) CHECK(w[j] < 4e-6, "%s: activation %d differs by %.3e", k[v]->name, j, w[j]);
        memcpy(y, x, N * sizeof *y);
        k[v]->add_inplace(y, dy, N);
        int add_exact = 1;
        for (int i = 0; i < N; i++) add_exact &= y[i] == x[i] + dy[i];
        CHECK(add_exact, "%s: residual add is not exact", k[v]->name);
        k[v]->gelu_tanh(y, y, N); /* in place is allowed */
        CHECK(isfinite(y[0]) && isfinite(y[N - 1]), "%s: gelu in place", k[v]->name);
    }
    free(x); free(y); free(dy); free(dx);
}

TEST(softmax_and_logsumexp_variants_match_double_reference) {
    const cp_kernel_table *k[CP_ISA_COUNT];
    int nk = runnable(k);
    /* attention rows (up to the positions) for the softmax, whose sum is in float as before;
     * vocabulary rows too for the log-sum-exp passes */
    static const int64_t lens[] = {1, 3, 17, 64, 257, 2049, 50257};
    unsigned seed = 3;
    for (int v = 0; v < nk; v++) {
        double w_soft = 0, w_lse = 0, w_scale = 0;
        int max_exact = 1;
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            const int64_t n = lens[li];
            float *x = malloc((size_t)n * sizeof *x), *r = malloc((size_t)n * sizeof *r);
            int64_t *keep = malloc((size_t)n * sizeof *keep);
            for (int64_t j = 0; j < n; j++) { x[j] = 8.0f * frand(&seed); keep[j] = j == 0 || frand(&seed) > -0.5f; }
            for (int masked = 0; masked < 2 && n <= 2049; masked++) {
                // the attention row: r = exp(scale·x - max)·keep / Σ, 0 where not kept
                const float scale = 0.125f;
                float mx = -INFINITY;
                int64_t kept = 0;
                for (int64_t j = 0; j < n; j++)
                    if (!masked || keep[j]) { kept++; if (x[j] * scale > mx) mx = x[j] * scale; }
                double sum = 0;
                for (int64_t j = 0; j < n; j++) sum += (!masked || keep[j]) ? exp((double)(x[j] * scale) - mx) : 0.0;
                memcpy(r, x, (size_t)n * sizeof *r);
                int64_t got = k[v]->softmax_row(r, masked ? keep : NULL, n, scale);
                CHECK(got == kept, "%s: %lld entries kept, expected %lld", k[v]->name, (long long)got, (long long)kept);
                for (int64_t j = 0; j < n; j++) {
                    double want = (!masked || keep[j]) ? exp((double)(x[j] * scale) - mx) / sum : 0.0;
                    w_soft = fmax(w_soft, fabs(r[j] - want) / fmax(want, 1e-30) * (want > 1e-30));
                    if (!masked || keep[j]) continue;
                    CHECK(r[j] == 0.0f, "%s: masked entry %lld is %g", k[v]->name, (long long)j, r[j]);
                }
            }
            if (n >= 3 && n <= 2049) { /* a hidden key scoring far above every visible one (exp overflows) stays 0 */
                int64_t *two = calloc((size_t)n, sizeof *two);
                two[0] = two[n - 1] = 1;
                for (int64_t j = 0; j < n; j++) r[j] = j == 1 ? 1000.0f : 0.0f;
                k[v]->softmax_row(r, two, n, 1.0f);
                CHECK(r[0] == 0.5f && r[n - 1] == 0.5f && r[1] == 0.0f, "%s: a hidden key at 1000 gives %g %g %g", k[v]->name,
                      r[0], r[1], r[n - 1]);
                free(two);
            }
            if (n <= 2049) { /* nothing kept: 0 returned, the scores left scaled for the caller */
                int64_t *none = calloc((size_t)n, sizeof *none);
                memcpy(r, x, (size_t)n * sizeof *r);
                CHECK(k[v]->softmax_row(r, none, n, 0.5f) == 0 && r[n - 1] == 0.5f * x[n - 1], "%s: a row with no key kept",
                      k[v]->name);
                free(none);
            }
            // log-sum-exp in three passes: max, Σ exp(x - max), and exp(x - lse)
            float m_ref = -INFINITY;
            for (int64_t j = 0; j < n; j++) m_ref = x[j] > m_ref ? x[j] : m_ref;
            float m = k[v]->row_max(x, n);
            max_exact &= m == m_ref;
            double s_ref = 0;
            for (int64_t j = 0; j < n; j++) s_ref += exp((double)x[j] - m_ref);
            double s = k[v]->exp_sum(x, n, m);
            w_lse = fmax(w_lse, fabs((m + log(s)) - (m_ref + log(s_ref))));
            const float lse = (float)(m_ref + log(s_ref));
            memcpy(r, x, (size_t)n * sizeof *r);
            k[v]->exp_scale(r, n, lse, 0.5f);
            for (int64_t j = 0; j < n; j++) {
                double want = 0.5 * exp((double)x[j] - lse);
                w_scale = fmax(w_scale, fabs(r[j] - want) / want);
            }
            free(x); free(r); free(keep);
        }
        printf("  %-6s attention softmax rel %.1e (rows of 1..2049), log-sum-exp abs %.1e, exp-scale rel %.1e, max %s (1..50257)\n",
               k[v]->name, w_soft, w_lse, w_scale, max_exact ? "exact" : "WRONG");
        CHECK(w_soft < 1e-5, "%s: attention softmax relative difference %.3e", k[v]->name, w_soft);
        CHECK(w_lse < 2e-6, "%s: log-sum-exp difference %.3e", k[v]->name, w_lse);
        CHECK(w_scale < 2e-6, "%s: exp-scale relative difference %.3e", k[v]->name, w_scale);
        CHECK(max_exact, "%s: row max is not the largest element", k[v]->name);
    }
}

/* Runs cp_kernels() in a child with CPEFT_ISA set to `want` (NULL: unset); returns the isa it chose. */
static int child_choice(const char *want) {
    pid_t pid = fork();
    if (pid == 0) {
        if (want) setenv("CPEFT_ISA", want, 1);
        else unsetenv("CPEFT_ISA");
        cp_set_quiet(1);
        _exit((int)cp_kernels()->isa);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

TEST(dispatch_runs_the_best_variant_unless_told_otherwise) {
    const cp_kernel_table *k[CP_ISA_COUNT];
    int nk = runnable(k);
    CHECK(nk >= 1 && k[0]->isa == CP_ISA_BASE, "the base variant must always run");
    const int best = (int)k[nk - 1]->isa;
    char features[256];
    printf("  CPU: %s; variants it runs:", *cp_cpu_features(features, sizeof features) ? features : "(none listed)");
    for (int v = 0; v < nk; v++) printf(" %s", k[v]->name);
    printf("; chosen: %s\n", k[nk - 1]->name);
    CHECK(child_choice(NULL) == best, "without CPEFT_ISA the best variant (%s) must run, got %d", k[nk - 1]->name, child_choice(NULL));
    CHECK(child_choice("base") == CP_ISA_BASE, "CPEFT_ISA=base must run the base variant");
    CHECK(child_choice("avx9000") == best, "an unknown CPEFT_ISA falls back to the best variant");
#if defined(__x86_64__)
    CHECK(cp_kernels_for(CP_ISA_AVX2) || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"),
          "this CPU has AVX2 + FMA but the avx2 variant is missing");
    CHECK(cp_kernels_for(CP_ISA_AVX512) || !__builtin_cpu_supports("avx512bw"), "this CPU has AVX-512 but the variant is missing");
    if (cp_kernels_for(CP_ISA_AVX2)) CHECK(child_choice("avx2") == CP_ISA_AVX2, "CPEFT_ISA=avx2 must run the avx2 variant");
#endif
}

/* The OpenBLAS core `cpeft --version` reports, with CPEFT_BLAS_CORE set to `keep` or not. */
static int cli_blas_core(const char *keep, char *core, size_t cap) {
    const char *bin = getenv("CPEFT_BIN");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s%s --version", keep ? "CPEFT_BLAS_CORE=keep " : "", bin ? bin : "build/cpeft");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[256] = "";
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    const char *at = got ? strstr(line, "OpenBLAS core ") : NULL;
    if (rc != 0 || !at) return -1;
    snprintf(core, cap, "%s", at + strlen("OpenBLAS core "));
    core[strcspn(core, ")\n")] = 0;
    return 0;
}

TEST(cli_runs_openblas_with_this_cpus_kernels) {
    /* this test program does not re-execute itself: it runs the core OpenBLAS chose on its own */
    const char *own = cp_blas_core_name(), *better = cp_blas_better_core();
    char core[64], kept[64];
    CHECK(cli_blas_core(NULL, core, sizeof core) == 0, "cpeft --version did not name OpenBLAS's core");
    CHECK(cli_blas_core("keep", kept, sizeof kept) == 0, "cpeft --version did not name OpenBLAS's core");
    printf("  OpenBLAS on its own: %s; cpeft runs: %s (with CPEFT_BLAS_CORE=keep: %s)\n", own, core, kept);
    CHECK(strcmp(core, better ? better : own) == 0, "cpeft runs %s, expected %s", core, better ? better : own);
    CHECK(strcmp(kept, own) == 0, "CPEFT_BLAS_CORE=keep must leave OpenBLAS's choice (%s), got %s", own, kept);
    if (!getenv("OPENBLAS_CORETYPE")) {
        /* a user's OPENBLAS_CORETYPE is never replaced */
        setenv("OPENBLAS_CORETYPE", "Haswell", 1);
        CHECK(cp_blas_better_core() == NULL, "OPENBLAS_CORETYPE set: nothing to choose");
        CHECK(cli_blas_core(NULL, core, sizeof core) == 0 && strcmp(core, "Haswell") == 0,
              "OPENBLAS_CORETYPE=Haswell must stand, cpeft runs %s", core);
        unsetenv("OPENBLAS_CORETYPE");
    }
    if (better && !getenv("LD_PRELOAD")) {
        /* under valgrind the program must not execute itself again (it would run on outside the tool) */
        setenv("LD_PRELOAD", "/usr/libexec/valgrind/vgpreload_core-amd64-linux.so", 1);
        CHECK(cp_blas_better_core() == NULL, "under valgrind nothing may be re-executed");
        unsetenv("LD_PRELOAD");
        CHECK(cp_blas_better_core() != NULL, "LD_PRELOAD gone: the better core again");
    }
}

int main(void) {
    RUN(skinny_variants_match_double_reference);
    RUN(activation_variants_match_double_reference);
    RUN(softmax_and_logsumexp_variants_match_double_reference);
    RUN(dispatch_runs_the_best_variant_unless_told_otherwise);
    RUN(cli_runs_openblas_with_this_cpus_kernels);
    return test_summary();
}
