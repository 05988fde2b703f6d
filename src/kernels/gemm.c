/*
 * gemm.c — the product entry points of kernels/gemm.h, the registry of backends and the choice of
 * one, and the variants of the built-in CPU backend (gemm_cpu.h).
 *
 * Compiled once, for the default target: nothing here may use an instruction the CPU lacks.
 */
#include "kernels/gemm.h"
#include "core/profile.h"
#include "kernels/gemm_bf16.h"
#include "kernels/gemm_cpu.h"
#include "kernels/isa.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- the CPU backend's variants ---------------------------------------------------------------- */

#if defined(__x86_64__)
#define HAVE_X86_VARIANTS 1
#else
#define HAVE_X86_VARIANTS 0
#endif

#define VARIANT(level, v)                                                                                \
    {.isa = level, .name = #v, .ops = &cp_gemm_cpu_ops_##v, .skinny16_nt = cp_gemm_skinny16_nt_##v,     \
     .skinny16_nn = cp_gemm_skinny16_nn_##v, .widen16 = cp_gemm_widen16_##v}

CP_DECLARE_GEMM_KERNELS(base)
#if HAVE_X86_VARIANTS
CP_DECLARE_GEMM_KERNELS(avx2)
CP_DECLARE_GEMM_KERNELS(avx512)
#endif

static const cp_gemm_cpu_variant variants[] = {
    VARIANT(CP_ISA_BASE, base),
#if HAVE_X86_VARIANTS
    VARIANT(CP_ISA_AVX2, avx2),
    VARIANT(CP_ISA_AVX512, avx512),
#endif
};
#define N_VARIANTS ((int)(sizeof variants / sizeof *variants))

#if HAVE_X86_VARIANTS
#include <cpuid.h>
/* F16C (CPUID leaf 1, ECX bit 29), asked directly: clang before 15 has no "f16c" for
 * __builtin_cpu_supports. */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

const cp_gemm_cpu_variant *cp_gemm_cpu_for(cp_isa isa) {
    if (!cp_kernels_for(isa)) return NULL; /* not built, or the CPU cannot run it */
#if HAVE_X86_VARIANTS
    /* the avx2 variant widens F16 with F16C (AVX-512F has its own instruction) */
    if (isa == CP_ISA_AVX2 && !cpu_has_f16c()) return NULL;
#endif
    for (int i = 0; i < N_VARIANTS; i++)
        if (variants[i].isa == isa) return &variants[i];
    return NULL;
}

const cp_gemm_cpu_variant *cp_gemm_cpu(void) {
    const cp_gemm_cpu_variant *v = cp_gemm_cpu_for(cp_kernels()->isa);
    return v ? v : cp_gemm_cpu_for(CP_ISA_BASE);
}

static int64_t panel_bytes_set;
void cp_gemm_cpu_set_panel_bytes(int64_t bytes) { panel_bytes_set = bytes > 0 ? bytes : 0; }
int64_t cp_gemm_cpu_panel_bytes(void) { return panel_bytes_set; }

/* ---- bf16 compute (gemm_bf16.h) ----------------------------------------------------------------- */

int cp_gemm_bf16_native(void) {
#if HAVE_X86_VARIANTS
    if (!cp_gemm_bf16_built) return 0;
    __builtin_cpu_init();
    return cp_kernels_for(CP_ISA_AVX512) && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

void cp_round_bf16_f32(float *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 262144)
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)cp_f32_to_bf16(src[i]) << 16;
        memcpy(dst + i, &u, 4);
    }
}

/* ---- registry ---------------------------------------------------------------------------------- */

#define MAX_BACKENDS 8

static const cp_gemm_ops *registered[MAX_BACKENDS]; /* [0] is "cpu", set at the first use */
static int n_registered;
static int cpu_added;
static const cp_gemm_ops *active;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static const cp_gemm_ops *find_locked(const char *name) {
    for (int i = 0; i < n_registered; i++)
        if (strcmp(registered[i]->name, name) == 0) return registered[i];
    return NULL;
}

static void init(void) {
    pthread_mutex_lock(&registry_lock);
    /* "cpu" goes first (a backend registered before any product comes after it) */
    memmove(registered + 1, registered, (size_t)n_registered * sizeof *registered);
    registered[0] = cp_gemm_cpu()->ops;
    n_registered++;
    cpu_added = 1;
    active = registered[0];
    const char *want = getenv("CPEFT_GEMM");
    if (want && *want) {
        const cp_gemm_ops *b = find_locked(want);
        if (b) active = b;
        else cp_warn("CPEFT_GEMM=%s: no such matrix-product backend; using cpu", want);
    }
    pthread_mutex_unlock(&registry_lock);
}

static const cp_gemm_ops *cpu(void) {
    pthread_once(&init_once, init);
    return registered[0];
}

cp_status cp_gemm_register(const cp_gemm_ops *ops) {
    if (!ops || !ops->name || !ops->supports || !ops->forward || !ops->backward_input || !ops->weight_grad || !ops->f32)
        return cp_error("gemm backend: every member of the table must be set");
    pthread_mutex_lock(&registry_lock);
    const int full = n_registered + !cpu_added >= MAX_BACKENDS; /* one place kept for "cpu" */
    const int taken = find_locked(ops->name) || strcmp(ops->name, "cpu") == 0;
    if (!full && !taken) registered[n_registered++] = ops;
    pthread_mutex_unlock(&registry_lock);
    if (taken) return cp_error("gemm backend \"%s\": a backend of that name is registered", ops->name);
    if (full) return cp_error("gemm backend \"%s\": no room (at most %d backends)", ops->name, MAX_BACKENDS);
    return CP_OK;
}

const cp_gemm_ops *cp_gemm_find(const char *name) {
    pthread_once(&init_once, init);
    pthread_mutex_lock(&registry_lock);
    const cp_gemm_ops *b = find_locked(name);
    pthread_mutex_unlock(&registry_lock);
    return b;
}

cp_status cp_gemm_use(const char *name) {
    const cp_gemm_ops *b = cp_gemm_find(name);
    if (!b) return cp_error("gemm backend \"%s\": not registered", name);
    active = b;
    return CP_OK;
}

const cp_gemm_ops *cp_gemm_active(void) {
    pthread_once(&init_once, init);
    return active;
}

/* ---- the products ------------------------------------------------------------------------------ */

int cp_gemm_supports(cp_dtype dtype) { return cpu()->supports(dtype); }

/* The backend for a weight of this dtype: the active one, or "cpu" when it does not take it. */
static const cp_gemm_ops *backend_for(cp_dtype dtype) {
    const cp_gemm_ops *b = cp_gemm_active();
    return b->supports(dtype) ? b : registered[0];
}

cp_weight cp_weight_out_rows(const cp_weight *w, int64_t o0, int64_t n) {
    assert(w->layout == CP_WEIGHT_NT && o0 >= 0 && n >= 0 && o0 + n <= w->out);
    const int64_t row_bytes = cp_dtype_nbytes(w->dtype, w->in);
    cp_weight t = cp_weight_nt((const char *)w->data + o0 * row_bytes, w->dtype, w->in, n);
    t.round_bf16 = w->round_bf16;
    t.act8 = w->act8;
    /* the forward panels are 16 output rows each: a slice that starts on a panel keeps them */
    if (w->bf16_panels[0] && o0 % 16 == 0) t.bf16_panels[0] = w->bf16_panels[0] + (o0 / 16) * ((w->in + 1) / 2) * 16;
    return t;
}

/* CPEFT_PROFILE's phase of a product with W: LoRA's A and B have a side of r <= 64 */
#define SMALL_SIDE 64
static cp_prof_phase phase_of(const cp_weight *W, cp_prof_phase big) {
    return W->in <= SMALL_SIDE || W->out <= SMALL_SIDE ? CP_PROF_SMALL_GEMM : big;
}

void cp_gemm_forward(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate) {
    cp_prof_push(phase_of(W, CP_PROF_FROZEN_FWD));
    cp_prof_flops(2.0 * (double)N * (double)W->in * (double)W->out);
    backend_for(W->dtype)->forward(out, X, W, N, accumulate);
    cp_prof_pop();
}

void cp_gemm_backward_input(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate) {
    cp_prof_push(phase_of(W, CP_PROF_FROZEN_DX));
    cp_prof_flops(2.0 * (double)N * (double)W->in * (double)W->out);
    backend_for(W->dtype)->backward_input(dX, dY, W, N, accumulate);
    cp_prof_pop();
}

void cp_gemm_weight_grad(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate) {
    cp_prof_push(CP_PROF_WEIGHT_GRAD);
    cp_prof_flops(2.0 * (double)N * (double)C * (double)OC);
    cp_gemm_active()->weight_grad(out, a, b, N, C, OC, accumulate);
    cp_prof_pop();
}

void cp_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    cp_prof_push(CP_PROF_F32_GEMM);
    cp_prof_flops(2.0 * (double)M * (double)N * (double)K);
    cp_gemm_active()->f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    cp_prof_pop();
}
