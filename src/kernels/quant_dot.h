/*
 * quant_dot.h — the fast few-row product with a block-quantized weight, for inference only:
 * the activation rows are rounded to 8 bits per block, as llama.cpp does, and each block's dot
 * product is an exact integer sum (AVX-512 VNNI vpdpbusd, AVX2 maddubs, or plain C), the block
 * scales applied in f32.
 *
 * Activation rounding (cp_qact): each row of X (N,K) is cut into blocks of 32 (for Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1: ggml's Q8_0 blocks) or of 256 (Q4_K, Q5_K, Q6_K: ggml's Q8_K blocks):
 *   amax = max |x| over the block, id = 127 / amax (0 when amax is 0), q = rint(x · id) in
 *   [-127, 127] (round to nearest even, as ggml's AVX quantize_row_q8_0 and nearest_int), and the
 *   block's scale is amax / 127 rounded to f16 for the blocks of 32 (ggml's Q8_0 / Q8_1) or 1 / id
 *   in f32 for the blocks of 256 (Q8_K); the blocks of 32 also keep ggml's Q8_1 sum s = (amax/127 ·
 *   Σq) rounded to f16, which the offsets of Q4_1 / Q5_1 multiply (m·s, as ggml does), and every
 *   row the sums of q over every 16 elements, for the other formats' offsets and mins.
 * So x ≈ d·q with |x − d·q| ≤ d/2 (+ |q|·d·2⁻¹¹ from the f16 scale), and the product differs from
 * the f32 product with the dequantized weight by at most Σ_blocks 0.57·(amax/127)·Σ|w| (the bound
 * tests/unit/test_quant_dot.c checks). This changes results: training and every gradient use the
 * exact kernels (gemm_quant.h); the fast one runs only for a weight descriptor with act8 set
 * (gemm.h), which the inference paths ask for (models/run.h's quant_act8).
 *
 * Given the rounded activations, every variant computes the same integer sums per block, so the
 * variants and the plain reference of the tests differ only in the order of the f32 sums of the
 * per-block terms (dx · dw · isum and the offset terms).
 *
 * Compiled once per instruction set (dispatch.h); the avx512 copy uses VNNI when the CPU has it
 * and the avx2 copy's kernels otherwise.
 */
#ifndef CP_KERNELS_QUANT_DOT_H
#define CP_KERNELS_QUANT_DOT_H

#include "kernels/gemm.h"

#include <stdint.h>

/* Largest N the fast kernel takes (more rows: the exact kernels, gemm_quant.h). */
#define CP_QDOT_MAX_ROWS 32

/* Whether the fast kernel multiplies weights of this dtype (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). */
int cp_qdot_supports(cp_dtype dt);

/* The activation block size the fast kernel uses for a weight dtype: 32 or 256. */
int cp_qdot_act_block(cp_dtype dt);

/* Rounded activations: K elements per row, in blocks of `block`. */
typedef struct {
    int64_t K;
    int block;     /* 32 or 256 */
    int8_t *q;     /* (N,K) */
    float *d;      /* (N, K/block): the block scales */
    int16_t *s16;  /* (N, K/16): sums of q over every 16 elements */
    float *s32;    /* (N, K/32), blocks of 32 only (else unused, may be NULL): Q8_1's s = f16(d·Σq) */
} cp_qact;

/* Rounds one row x[0, K) into row n of a (the rule above); plain C, the same in every variant. */
void cp_qact_row(const cp_qact *a, int64_t n, const float *x);

#define CP_DECLARE_QDOT_KERNELS(isa)                                                                     \
    int cp_qdot_forward_##isa(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate); \
    void cp_qdot_dequant_##isa(float *dst, const void *src, cp_dtype dtype, int64_t n);
#define CP_DECLARE_QDOT_KERNELS_OF(isa) CP_DECLARE_QDOT_KERNELS(isa)
/*   cp_qdot_forward   out (N,OC) (+)= X̃ (N,C) · Wᵀ, X̃ the rounded X, W quantized NT (OC,C), N <= CP_QDOT_MAX_ROWS;
 *                     returns -1 (nothing written) for a dtype it lacks or when scratch cannot be had
 *   cp_qdot_dequant   dst[0, n) = ggml's dequantize_row_* of Q5_0, Q5_1, Q5_K, Q6_K (for the exact kernels) */

#endif
