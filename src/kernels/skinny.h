/*
 * skinny.h — matrix products with only a few rows on the left: out (N,OC) = in (N,C) · Wᵀ or · W
 * for N ≤ CP_SKINNY_MAX_ROWS, the shape of every matmul in a decoding step (one token per sequence).
 *
 * BLAS is the wrong tool there: sgemm packs the whole weight matrix before multiplying, so a
 * 1-row product against the 50257×768 LM head copies 154 MB to use it once (3× slower than reading
 * it). These kernels stream each weight row once, keep the N input rows in cache, and split the
 * output columns over threads: bound by memory bandwidth, as a decode step must be. The plain
 * BLAS call (cp_matmul_nt / cp_matmul_nn in nn/linear.c) stays the reference they are tested against
 * (tests/parity/test_generate.c) and the path for everything larger. Each call runs the variant
 * for this CPU's instruction set (kernels/dispatch.h).
 */
#ifndef CP_KERNELS_SKINNY_H
#define CP_KERNELS_SKINNY_H

#include <stdint.h>

#define CP_SKINNY_MAX_ROWS 8

/* out (N,OC) (+)= in (N,C) · Wᵀ, W row-major (OC,C) (nn.Linear). */
void cp_skinny_nt(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);
/* out (N,OC) (+)= in (N,C) · W, W row-major (C,OC) (transformers' Conv1D). */
void cp_skinny_nn(float *out, const float *in, const float *W, int64_t N, int64_t C, int64_t OC, int accumulate);

#endif
