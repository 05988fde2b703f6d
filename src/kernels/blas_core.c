/*
 * blas_core.c — choosing OpenBLAS's kernels for CPUs it does not recognise (see blas_core.h).
 */
#include "kernels/blas_core.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cp_blas_core_name(void) { return openblas_get_corename(); }

/* OpenBLAS's fallbacks for a CPU it cannot place: the generic x86-64 cores. */
static int is_fallback_core(const char *core) {
    static const char *const fallback[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai",
                                           "Coppermine", "Northwood", "Banias"};
    for (size_t i = 0; i < sizeof fallback / sizeof *fallback; i++)
        if (strcmp(core, fallback[i]) == 0) return 1;
    return 0;
}

const char *cp_blas_better_core(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (getenv("OPENBLAS_CORETYPE")) return NULL; /* the user's choice stands */
    /* under valgrind (its preload library is in LD_PRELOAD) a re-executed program would leave the tool */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return NULL;
    const char *core = openblas_get_corename();
    if (!core || !is_fallback_core(core)) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

void cp_blas_use_best_core(char **argv) {
    const char *keep = getenv("CPEFT_BLAS_CORE");
    if (keep && strcmp(keep, "keep") == 0) return;
    const char *core = cp_blas_better_core();
    if (!core) return;
    /* the re-executed program finds OPENBLAS_CORETYPE set and goes on: no loop */
    if (setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: run on with the kernels already loaded */
}
