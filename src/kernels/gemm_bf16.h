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

/* The packed weight operand ("panels"): for out (N,M) = X (N,K) · B, panel b holds output columns
 * [16b, 16b + 16) as (KP, 16) 32-bit pairs, KP = ⌈K/2⌉: pair p of column j = (bf16 w[j][2p],
 * bf16 w[j][2p+1]) in the low and high half (zeros past K and past M). Words: */
int64_t cp_gemm_bf16_panel_words(int64_t K, int64_t M);
/* Packs W as cp_gemm_bf16_dot would (nn as there) into B (cp_gemm_bf16_panel_words(K, M) words);
 * runs on its own team (or the caller's thread inside one). AVX-512 BF16 builds only. */
void cp_gemm_bf16_pack(uint32_t *B, const void *W, cp_dtype w_dtype, int nn, int64_t K, int64_t M);
/* out (N,M) (+)= bf16(X) · B with B packed already (a frozen weight's cached panels). */
int cp_gemm_bf16_dot_packed(float *out, const float *X, const uint32_t *B, int64_t N, int64_t K, int64_t M, int accumulate);
/* The same with B packed first by `pack` (ctx, B, unit) for unit = 0 .. ⌈M / unit_cols⌉ − 1, shared
 * out over the team: a weight stored another way (block-quantized). Unit u is columns
 * [u·unit_cols, (u+1)·unit_cols) (unit_cols a multiple of 16; the last unit cut short by M) and
 * `pack` writes its panels at B (run points B at them). At most 8 MiB of panels are held: the
 * units are packed and multiplied a slab at a time (an LM head's weight is never packed whole). */
typedef void (*cp_gemm_bf16_packer)(const void *ctx, uint32_t *B, int64_t unit);
int cp_gemm_bf16_dot_with(float *out, const float *X, int64_t N, int64_t K, int64_t M, int accumulate, cp_gemm_bf16_packer pack,
                          const void *ctx, int64_t unit_cols);
/* Packer helpers. pack_rows: one panel's pairs [0, ⌈kn/2⌉) from `rows` (≤ 16) f32 rows w (leading
 * dimension ld) of kn values each, rounded (rows past `rows` and the value past an odd kn: zero).
 * pack_pairs: pair p of `width` consecutive columns, lo and hi (NULL: zeros) the f32 rows 2p and
 * 2p+1, written into width/16 panels at dst, dst + panel_stride, ... (a partial last one zero-padded). */
void cp_gemm_bf16_pack_rows(uint32_t *dst, const float *w, int64_t ld, int64_t rows, int64_t kn);
void cp_gemm_bf16_pack_pairs(uint32_t *dst, int64_t panel_stride, const float *lo, const float *hi, int64_t width);

/* dst[i] = the f32 value of bf16(src[i]) (round to nearest even; NaN stays NaN), i < n (kernels/gemm.c). */
void cp_round_bf16_f32(float *dst, const float *src, int64_t n);

#endif
