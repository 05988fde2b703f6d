/*
 * layernorm.h — nn.LayerNorm over the last dimension.
 */
#ifndef CP_NN_LAYERNORM_H
#define CP_NN_LAYERNORM_H

#include <stdint.h>

#include "nn/module.h"

/* out (N,C) = (in - mean) * rstd * weight + bias (weight and bias left out where the module has none:
 * elementwise_affine=False). mean and rstd (N) are written when non-NULL
 * (the backward pass needs them). Statistics are accumulated in double so that the result is
 * within an ulp of PyTorch's. */
void cp_layernorm_forward(const cp_module *m, float *out, float *mean, float *rstd, const float *in, int64_t N);

/* Backward, from the forward's input `in` and its saved mean/rstd: dx (N,C) += the input
 * gradient (when non-NULL); weight / bias gradients accumulated when they have grad buffers.
 *   x̂ = (x − μ)·r, g = dy·γ:  dx = r·(g − mean(g) − x̂·mean(g·x̂)),  dγ = Σ dy·x̂,  dβ = Σ dy */
void cp_layernorm_backward(const cp_module *m, float *dx, const float *dy, const float *in, const float *mean,
                           const float *rstd, int64_t N);

#endif
