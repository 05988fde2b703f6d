/*
 * convolution.h — nn.Conv1d over the time axis of (B,T,C) rows: stride 1, dilation 1, zero padding
 * p = (kernel − 1) / 2 each side, `groups` channel groups, with a bias; forward and backward. With an
 * odd kernel the output has the input's length T (DeBERTa-v2's ConvLayer, the one user; an even
 * kernel would shorten it, and the caller refuses it).
 *
 *   out[b,t,o] = bias[o] + Σ_j Σ_{c in o's group} w[o, c − g0, j] · in[b, t + j − p, c]   (0 outside [0,T))
 *
 * computed as one GEMM per kernel tap j and group: out[b, rows, group] += in[b, rows + j − p, group] · W_jᵀ.
 */
#ifndef CP_NN_CONVOLUTION_H
#define CP_NN_CONVOLUTION_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/module.h"

/* out (B,T,OC) = conv(in (B,T,C)) through the CONV module m (f32 weight). scratch: per-tap weight copies. */
cp_status cp_conv1d_forward(const cp_module *m, float *out, const float *in, int64_t B, int64_t T, cp_arena *scratch);
/* Backward from dout (B,T,OC): din (B,T,C) += the input gradient when non-NULL; the weight and bias
 * gradients accumulate where they have grad buffers. */
cp_status cp_conv1d_backward(const cp_module *m, float *din, const float *dout, const float *in, int64_t B, int64_t T,
                             cp_arena *scratch);

#endif
