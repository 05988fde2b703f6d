/*
 * machine.h — what every benchmark's JSON line says about the machine it ran on: the instruction
 * sets the CPU reports, the kernel variant cpeft chose for them (kernels/dispatch.h) and the sgemm
 * core OpenBLAS chose. bench/update_benchmarks.py writes them into BENCHMARKS.md's headers, so a
 * table names the vector width it was measured with (and a BLAS that fell back to generic kernels).
 */
#ifndef CP_BENCH_MACHINE_H
#define CP_BENCH_MACHINE_H

#include <cblas.h>
#include <stdio.h>

#include "kernels/dispatch.h"

/* How this program was compiled: `make NATIVE=1` turns on the build machine's vector extensions
 * everywhere (-march=native); the default build does not. */
#if defined(__AVX2__) || defined(__AVX512F__)
#define BENCH_BUILD "native"
#else
#define BENCH_BUILD "portable"
#endif

/* Writes `"cpu_features": "...", "kernels": "...", "build": "...", "blas_core": "..."` (no braces) to f. */
static inline void bench_machine_json(FILE *f) {
    char features[256];
    const char *core = openblas_get_corename();
    fprintf(f, "\"cpu_features\": \"%s\", \"kernels\": \"%s\", \"build\": \"%s\", \"blas_core\": \"%s\"",
            cp_cpu_features(features, sizeof features), cp_kernels()->name, BENCH_BUILD, core ? core : "?");
}

#endif
