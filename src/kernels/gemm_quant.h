/*
 * gemm_quant.h — products with a block-quantized weight (Q8_0, Q4_0, Q4_1, Q4_K: ggml's formats,
 * core/dtype.h), the part of the "cpu" backend (gemm_cpu.c) that multiplies them.
 *
 * A quantized weight is always stored NT: (OC, C), each row C / block elements in whole blocks, as
 * GGUF stores a Linear weight (a Conv1D weight is quantized transposed, see models/quantize.c).
 * kernels/gemm_quant.c is compiled once per instruction set (dispatch.h); gemm_cpu.c calls the copy
 * of its own level. Semantics: the product equals the f32 product with the dequantized weight
 * (ggml's dequantize_row_*, io/ggml_quant.c, value for value) up to the order of the sums.
 */
#ifndef CP_KERNELS_GEMM_QUANT_H
#define CP_KERNELS_GEMM_QUANT_H

#include "kernels/gemm.h"

#include <stdint.h>

#define CP_DECLARE_QUANT_KERNELS(isa)                                                                                   \
    void cp_gemm_quant_forward_##isa(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate);      \
    void cp_gemm_quant_backward_input_##isa(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate); \
    void cp_gemm_dequant_##isa(float *dst, const void *src, cp_dtype dtype, int64_t n);
#define CP_DECLARE_QUANT_KERNELS_OF(isa) CP_DECLARE_QUANT_KERNELS(isa)

/* What each variant computes (W->layout must be CP_WEIGHT_NT, W->dtype quantized, C a whole number
 * of blocks):
 *   cp_gemm_quant_forward         out (N,OC) (+)= X (N,C) · Wᵀ
 *   cp_gemm_quant_backward_input  dX (N,C) (+)= dY (N,OC) · W
 *   cp_gemm_dequant               dst[0, n) = the f32 values of the first n elements (whole blocks) */

#endif
