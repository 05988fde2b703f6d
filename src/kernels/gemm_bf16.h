/*
 * gemm_bf16.h — products in bf16 with f32 accumulation (--bf16, PyTorch's CPU autocast(bfloat16)
 * on a frozen weight): the input rows and the weight are rounded to bf16 (to nearest even, as
 * torch's .bfloat16()), each product of two bf16 values is exact in f32 and the sums run in f32.
 *
 * The kernel here uses AVX-512 BF16's vdpbf16ps (two bf16 products added into each f32 lane) on
 * operands packed for it: the input rows rounded into bf16 rows, the weight into panels of 16
 * output columns × K/2 pairs (what one vdpbf16ps takes). It is compiled once with the AVX-512 BF16
 * flags (the Makefile's) and runs only where cp_gemm_bf16_native() says the CPU has them; the CPU
 * backend (gemm_cpu.c) emulates the same products on other CPUs (bf16-rounded values widened to
 * f32 through sgemm: equal up to the order of the sums and vdpbf16ps's flushing of denormals).
 *
 * Not here: when a product is bf16 (a cp_weight's round_bf16, set by cp_model_set_bf16).
 */
#ifndef CP_KERNELS_GEMM_BF16_H
#define CP_KERNELS_GEMM_BF16_H

#include "core/dtype.h"

#include <stdint.h>

/* Whether this build has the AVX-512 BF16 kernel and the CPU (and OS) can run it (kernels/gemm.c). */
int cp_gemm_bf16_native(void);
extern const int cp_gemm_bf16_built; /* the kernel is in this build (x86-64) */

/* out (N,M) (+)= bf16(X) (N,K) · bf16(W)ᵀ with W stored (M,K) (nn = 0) or bf16(X) · bf16(W) with W
 * stored (K,M) (nn = 1); W is F32, F16 or BF16 (rounded to bf16 as it is packed; BF16 is taken as
 * it is). Runs on the calling OpenMP team or its own. Returns 0, or -1 when scratch could not be
 * had or the build/CPU lacks the kernel (nothing written then). */
int cp_gemm_bf16_dot(float *out, const float *X, const void *W, cp_dtype w_dtype, int nn, int64_t N, int64_t K, int64_t M,
                     int accumulate);

/* dst[i] = the f32 value of bf16(src[i]) (round to nearest even; NaN stays NaN), i < n (kernels/gemm.c). */
void cp_round_bf16_f32(float *dst, const float *src, int64_t n);

#endif
