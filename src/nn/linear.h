/*
 * linear.h — nn.Linear and transformers' Conv1D as one primitive: y = x·Wᵀ + b (Linear, W [OC,C])
 * or y = x·W + b (Conv1D, W [C,OC]). The matmul goes through BLAS.
 */
#ifndef CP_NN_LINEAR_H
#define CP_NN_LINEAR_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/module.h"

/* out is (N,OC), in is (N,C); m is a CP_MOD_LINEAR or CP_MOD_CONV1D leaf with bound weights.
 * Active LoRA adapters on m add their side path (src/peft/lora.c), using `scratch`. */
cp_status cp_linear_forward(const cp_module *m, float *out, const float *in, int64_t N, cp_arena *scratch);

/* out (N,OC) = in (N,C) · Wᵀ for a row-major W (OC,C): the plain GEMM behind Linear. When
 * `accumulate` the product is added to out. */
void cp_matmul_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
/* out (N,OC) = in (N,C) · W for a row-major W (C,OC): the GEMM behind Conv1D. */
void cp_matmul_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);

#endif
