/*
 * linear.h — nn.Linear and transformers' Conv1D as one primitive: y = x·Wᵀ + b (Linear, W [OC,C])
 * or y = x·W + b (Conv1D, W [C,OC]). The matmul goes through kernels/gemm.h, with the weight in
 * the dtype it is held in (f32, or the checkpoint's F16/BF16: nn/module.h's cp_param.stored).
 */
#ifndef CP_NN_LINEAR_H
#define CP_NN_LINEAR_H

#include <stdint.h>

#include "core/error.h"
#include "kernels/gemm.h"
#include "nn/module.h"

/* m's weight as a GEMM operand (its f32 data or its stored 16-bit values; NT for Linear, NN for
 * Conv1D): what the forward and the input gradient multiply by, and the LM head's vocabulary tiles. */
cp_weight cp_linear_weight(const cp_module *m);

/* out is (N,OC), in is (N,C); m is a CP_MOD_LINEAR or CP_MOD_CONV1D leaf with bound weights. The
 * base layer only: models apply projections through models/proj.h, which adds PEFT hooks. */
void cp_linear_forward(const cp_module *m, float *out, const float *in, int64_t N);
/* The same with the weight's act8 (kernels/gemm.h) set to `act8`: 1 lets a quantized weight's few-row
 * product round `in` to 8 bits per block (inference only: models/run.h's quant_act8). */
void cp_linear_forward_act8(const cp_module *m, float *out, const float *in, int64_t N, int act8);

/* Backward of cp_linear_forward, given the forward's input X (N,C) and the output gradient dY (N,OC):
 *   dX (N,C) += dY·W (Linear) or dY·Wᵀ (Conv1D), when dX is non-NULL;
 *   weight / bias gradients accumulated where the parameter has a grad buffer (trained). */
void cp_linear_backward(const cp_module *m, float *dX, const float *dY, const float *X, int64_t N);

/* out (N,OC) = in (N,C) · Wᵀ for a row-major W (OC,C): the plain GEMM behind Linear. When
 * `accumulate` the product is added to out. */
void cp_matmul_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
/* out (N,OC) = in (N,C) · W for a row-major W (C,OC): the GEMM behind Conv1D. */
void cp_matmul_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
/* out (C,OC) (+)= aᵀ·b for a (N,C), b (N,OC): the weight-gradient GEMM. */
void cp_matmul_tn(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate);
/* bias gradient: db (OC) += Σ_n dY[n, :] */
void cp_sum_rows(float *db, const float *dY, int64_t N, int64_t OC);

#endif
