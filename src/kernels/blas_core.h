/*
 * blas_core.h — making OpenBLAS use the sgemm kernels this CPU can run.
 *
 * OpenBLAS (built with DYNAMIC_ARCH, as Debian ships it) picks its kernels once, when the library
 * is loaded, from the CPU's family and model numbers. A CPU newer than the OpenBLAS release is
 * unknown to it and gets the oldest kernels (Debian 12's 0.3.21 runs SSE3 "Prescott" code on
 * Sapphire/Emerald Rapids: sgemm, most of a forward pass, then runs at about a third of its speed).
 * The choice can only be changed through OPENBLAS_CORETYPE before the library loads, so a program
 * that wants the right kernels sets it and executes itself again, before doing anything else.
 *
 * Not here: cpeft's own kernels, which choose their instruction set at run time (kernels/dispatch.h).
 */
#ifndef CP_KERNELS_BLAS_CORE_H
#define CP_KERNELS_BLAS_CORE_H

/* The OpenBLAS core this CPU's features call for ("SkylakeX" with AVX-512 F/BW/VL/DQ, "Haswell"
 * with AVX2 + FMA), or NULL when the loaded one is already that or better, OpenBLAS recognised the
 * CPU, the user chose one (OPENBLAS_CORETYPE set), or the program runs under valgrind (which a
 * re-executed program would leave). */
const char *cp_blas_better_core(void);

/* Called first thing in main(): when cp_blas_better_core() names a core, sets OPENBLAS_CORETYPE to
 * it and re-executes the program (/proc/self/exe) with the same arguments; CPEFT_BLAS_CORE=keep in
 * the environment turns this off. Returns only when nothing was done (or exec failed). */
void cp_blas_use_best_core(char **argv);

/* The core OpenBLAS runs ("SkylakeX", "Prescott", ...). */
const char *cp_blas_core_name(void);

#endif
