/*
 * isa.h — names for the translation units that are compiled once per instruction set (see dispatch.h).
 *
 * The Makefile compiles kernels/skinny.c and kernels/vector.c three times on x86-64, with
 * -DCP_ISA=base, avx2 or avx512 and the matching -m flags; CP_KERNEL(cp_skinny_nt) then names
 * cp_skinny_nt_base, cp_skinny_nt_avx2 or cp_skinny_nt_avx512, and dispatch.c collects them into one
 * table per level. Include this only from those files and from dispatch.c.
 */
#ifndef CP_KERNELS_ISA_H
#define CP_KERNELS_ISA_H

#include <stdint.h>

#ifndef CP_ISA
#define CP_ISA base
#endif

#define CP_KERNEL_CAT2(name, isa) name##_##isa
#define CP_KERNEL_CAT(name, isa) CP_KERNEL_CAT2(name, isa)
#define CP_KERNEL(name) CP_KERNEL_CAT(name, CP_ISA)

/* Every kernel of one variant, declared for dispatch.c. */
#define CP_DECLARE_KERNELS(isa)                                                                                     \
    void cp_skinny_nt_##isa(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int acc); \
    void cp_skinny_nn_##isa(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int acc); \
    void cp_gelu_tanh_##isa(float *y, const float *x, int64_t n);                                                    \
    void cp_gelu_tanh_backward_##isa(float *dx, const float *dy, const float *x, int64_t n);                         \
    void cp_gelu_erf_##isa(float *y, const float *x, int64_t n);                                                     \
    void cp_gelu_erf_backward_##isa(float *dx, const float *dy, const float *x, int64_t n);                          \
    void cp_silu_##isa(float *y, const float *x, int64_t n);                                                         \
    void cp_silu_backward_##isa(float *dx, const float *dy, const float *x, int64_t n);                              \
    int64_t cp_softmax_row_##isa(float *r, const int64_t *keep, int64_t n, float scale);                             \
    float cp_row_max_##isa(const float *x, int64_t n);                                                               \
    double cp_exp_sum_##isa(const float *x, int64_t n, float shift);                                                 \
    void cp_exp_scale_##isa(float *x, int64_t n, float shift, float scale);                                          \
    void cp_add_inplace_##isa(float *x, const float *y, int64_t n);                                                  \
    void cp_dropout_row_##isa(float *y, const float *x, int64_t n, uint64_t key, int64_t j0, uint32_t threshold,      \
                              float scale);
/* The same for the variant being compiled (CP_ISA expanded first), so that its definitions are checked. */
#define CP_DECLARE_KERNELS_OF(isa) CP_DECLARE_KERNELS(isa)

#endif
