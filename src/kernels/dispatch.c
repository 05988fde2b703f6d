/*
 * dispatch.c — which kernel variant runs; see dispatch.h. Also the public kernel entry points
 * (cp_skinny_nt, cp_gelu_tanh, ...), each one indirect call into the chosen table.
 *
 * Compiled once, for the default target: nothing here may use an instruction the CPU lacks.
 */
#include "kernels/dispatch.h"
#include "kernels/isa.h"
#include "kernels/skinny.h"
#include "kernels/vector.h"
#include "core/error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The levels this build has: avx2 and avx512 exist only on x86-64 (the Makefile compiles them there). */
#if defined(__x86_64__)
#define HAVE_X86_VARIANTS 1
#else
#define HAVE_X86_VARIANTS 0
#endif

#define TABLE(level, v)                                                                                     \
    {.isa = level, .name = #v, .skinny_nt = cp_skinny_nt_##v, .skinny_nn = cp_skinny_nn_##v,                \
     .gelu_tanh = cp_gelu_tanh_##v, .gelu_tanh_backward = cp_gelu_tanh_backward_##v, .silu = cp_silu_##v,   \
     .gelu_erf = cp_gelu_erf_##v, .gelu_erf_backward = cp_gelu_erf_backward_##v,                            \
     .silu_backward = cp_silu_backward_##v, .softmax_row = cp_softmax_row_##v, .row_max = cp_row_max_##v, \
     .exp_sum = cp_exp_sum_##v, .exp_scale = cp_exp_scale_##v, .add_inplace = cp_add_inplace_##v,  \
     .dropout_row = cp_dropout_row_##v}

CP_DECLARE_KERNELS(base)
#if HAVE_X86_VARIANTS
CP_DECLARE_KERNELS(avx2)
CP_DECLARE_KERNELS(avx512)
#endif

static const cp_kernel_table tables[] = {
    TABLE(CP_ISA_BASE, base),
#if HAVE_X86_VARIANTS
    TABLE(CP_ISA_AVX2, avx2),
    TABLE(CP_ISA_AVX512, avx512),
#endif
};
#define N_TABLES ((int)(sizeof tables / sizeof *tables))

/* Whether the CPU and the OS can run level `isa`. */
static int cpu_runs(cp_isa isa) {
#if HAVE_X86_VARIANTS
    __builtin_cpu_init();
    switch (isa) {
    case CP_ISA_BASE: return 1;
    case CP_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CP_ISA_AVX512:
        return cpu_runs(CP_ISA_AVX2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    default: return 0;
    }
#else
    return isa == CP_ISA_BASE;
#endif
}

const cp_kernel_table *cp_kernels_for(cp_isa isa) {
    for (int i = 0; i < N_TABLES; i++)
        if (tables[i].isa == isa) return cpu_runs(isa) ? &tables[i] : NULL;
    return NULL;
}

static const cp_kernel_table *active;
static pthread_once_t active_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    int best = CP_ISA_BASE;
    for (int i = 0; i < N_TABLES; i++)
        if (cpu_runs(tables[i].isa) && tables[i].isa > (cp_isa)best) best = tables[i].isa;
    const char *want = getenv("CPEFT_ISA");
    if (want && *want) {
        int asked = -1;
        for (int i = 0; i < N_TABLES; i++)
            if (!strcmp(want, tables[i].name)) asked = tables[i].isa;
        if (asked < 0 || !cpu_runs((cp_isa)asked))
            cp_warn("CPEFT_ISA=%s: %s; using %s", want, asked < 0 ? "not a kernel variant of this build" : "this CPU cannot run it",
                    cp_kernels_for((cp_isa)best)->name);
        else if (asked < best)
            best = asked;
    }
    active = cp_kernels_for((cp_isa)best);
}

const cp_kernel_table *cp_kernels(void) {
    pthread_once(&active_once, choose);
    return active;
}

const char *cp_cpu_features(char *buf, size_t size) {
    if (size == 0) return buf;
    buf[0] = '\0';
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    static const char *const names[] = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vnni", "avx512bf16",
                                        "avx2", "fma", "avx", "sse4.2"};
    const int has[] = {__builtin_cpu_supports("avx512f"), __builtin_cpu_supports("avx512bw"),
                       __builtin_cpu_supports("avx512vl"), __builtin_cpu_supports("avx512dq"),
                       __builtin_cpu_supports("avx512vnni"), __builtin_cpu_supports("avx512bf16"),
                       __builtin_cpu_supports("avx2"), __builtin_cpu_supports("fma"),
                       __builtin_cpu_supports("avx"), __builtin_cpu_supports("sse4.2")};
    size_t used = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!has[i]) continue;
        int w = snprintf(buf + used, size - used, "%s%s", used ? " " : "", names[i]);
        if (w < 0 || (size_t)w >= size - used) break;
        used += (size_t)w;
    }
#endif
    return buf;
}

/* ---- the public entry points ------------------------------------------------------------------- */

void cp_skinny_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    cp_kernels()->skinny_nt(out, in, W, N, C, OC, accumulate);
}
void cp_skinny_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate) {
    cp_kernels()->skinny_nn(out, in, W, N, C, OC, accumulate);
}
void cp_gelu_tanh(float *y, const float *x, int64_t n) { cp_kernels()->gelu_tanh(y, x, n); }
void cp_gelu_tanh_backward(float *dx, const float *dy, const float *x, int64_t n) {
    cp_kernels()->gelu_tanh_backward(dx, dy, x, n);
}
void cp_gelu_erf(float *y, const float *x, int64_t n) { cp_kernels()->gelu_erf(y, x, n); }
void cp_gelu_erf_backward(float *dx, const float *dy, const float *x, int64_t n) {
    cp_kernels()->gelu_erf_backward(dx, dy, x, n);
}
void cp_silu(float *y, const float *x, int64_t n) { cp_kernels()->silu(y, x, n); }
void cp_silu_backward(float *dx, const float *dy, const float *x, int64_t n) { cp_kernels()->silu_backward(dx, dy, x, n); }
int64_t cp_softmax_row(float *r, const int64_t *keep, int64_t n, float scale) { return cp_kernels()->softmax_row(r, keep, n, scale); }
float cp_row_max(const float *x, int64_t n) { return cp_kernels()->row_max(x, n); }
double cp_exp_sum(const float *x, int64_t n, float shift) { return cp_kernels()->exp_sum(x, n, shift); }
void cp_exp_scale(float *x, int64_t n, float shift, float scale) { cp_kernels()->exp_scale(x, n, shift, scale); }
void cp_add_inplace(float *x, const float *y, int64_t n) { cp_kernels()->add_inplace(x, y, n); }
void cp_dropout_row(float *y, const float *x, int64_t n, uint64_t key, int64_t j0, uint32_t threshold, float scale) {
    cp_kernels()->dropout_row(y, x, n, key, j0, threshold, scale);
}
