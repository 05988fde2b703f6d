/*
 * layernorm.h — nn.LayerNorm over the last dimension.
 */
#ifndef CP_NN_LAYERNORM_H
#define CP_NN_LAYERNORM_H

#include <stdint.h>

#include "nn/module.h"

/* out (N,C) = (in - mean) * rstd * weight + bias. mean and rstd (N) are written when non-NULL
 * (the backward pass needs them). Statistics are accumulated in double so that the result is
 * within an ulp of PyTorch's. */
void cp_layernorm_forward(const cp_module *m, float *out, float *mean, float *rstd, const float *in, int64_t N);

#endif
