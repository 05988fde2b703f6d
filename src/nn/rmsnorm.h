/*
 * rmsnorm.h — RMSNorm as Llama, Mistral and Qwen2 compute it: in f32,
 * x̂ = x · rsqrt(mean(x²) + ε), y = γ · x̂ (no mean subtraction, no bias). With the module's
 * unit_offset (Gemma) γ = 1 + weight, rounded to f32 as PyTorch's (1.0 + weight.float()).
 */
#ifndef CP_NN_RMSNORM_H
#define CP_NN_RMSNORM_H

#include <stdint.h>

#include "nn/module.h"

/* out (N,C) = weight · in · rstd; rstd (N) written when non-NULL (the backward pass needs it). */
void cp_rmsnorm_forward(const cp_module *m, float *out, float *rstd, const float *in, int64_t N);
/* dx (N,C) += input gradient (when non-NULL); weight gradient accumulated when trained.
 *   g = dy·γ:  dx = r·g − x·r³·mean(g·x),  dγ = Σ dy·x·r */
void cp_rmsnorm_backward(const cp_module *m, float *dx, const float *dy, const float *in, const float *rstd, int64_t N);

#endif
