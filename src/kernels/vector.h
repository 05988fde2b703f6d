/*
 * vector.h — vectorised elementwise and row kernels: the exp-based activations forward and backward,
 * the softmax of a row of attention scores, the three passes of a log-sum-exp over a row of logits,
 * the residual add, and a dropout mask drawn from a counter-based hash.
 *
 * All are built on cp_expf (vmath.h), so that GCC vectorises them at the width of the variant that
 * runs (kernels/dispatch.h); each entry point here calls the chosen variant. glibc's expf/exp are
 * scalar calls: over a 50k vocabulary row they cost more than the LM-head GEMM that made the row.
 * Results agree between variants to float rounding (the order of a vector sum depends on its width).
 * The plain references these are tested against are in tests/unit/test_kernel_variants.c.
 */
#ifndef CP_KERNELS_VECTOR_H
#define CP_KERNELS_VECTOR_H

#include <stdint.h>

/* y = x·sigmoid(2u), u = √(2/π)·(x + 0.044715·x³): transformers' gelu_new, gelu_pytorch_tanh and
 * gelu_fast (0.5·(1 + tanh u) = sigmoid(2u)). y may equal x. Threads when n > 65536. */
void cp_gelu_tanh(float *y, const float *x, int64_t n);
/* dx = dy · d/dx gelu_tanh(x). */
void cp_gelu_tanh_backward(float *dx, const float *dy, const float *x, int64_t n);
/* y = x·Φ(x) = 0.5·x·(1 + erf(x/√2)): transformers' exact "gelu" (vmath.h cp_normal_cdf; relative
 * error below 2e-6). y may equal x. Threads when n > 65536. */
void cp_gelu_erf(float *y, const float *x, int64_t n);
/* dx = dy · (Φ(x) + x·φ(x)). */
void cp_gelu_erf_backward(float *dx, const float *dy, const float *x, int64_t n);
/* y = x·sigmoid(x) (SiLU / swish). y may equal x. */
void cp_silu(float *y, const float *x, int64_t n);
/* dx = dy · d/dx silu(x). */
void cp_silu_backward(float *dx, const float *dy, const float *x, int64_t n);

/* A row of attention scores to probabilities, in place: r[j] = softmax_j(scale·r[j]) over the entries
 * that keep (n, 0/1, NULL: all) keeps, 0 for the others, max-subtracted. Returns the number of kept
 * entries; when it is 0, r holds the scaled scores and the caller decides (attention.c). */
int64_t cp_softmax_row(float *r, const int64_t *keep, int64_t n, float scale);

/* max_j x[j] over n ≥ 1 floats (-inf when all are -inf). */
float cp_row_max(const float *x, int64_t n);
/* Σ_j exp(x[j] - shift), each term in float, summed in double: with shift = cp_row_max(x),
 * log of this plus shift is the log-sum-exp of the row. */
double cp_exp_sum(const float *x, int64_t n, float shift);
/* x[j] = exp(x[j] - shift) · scale, in place (softmax with shift = log-sum-exp and scale 1). */
void cp_exp_scale(float *x, int64_t n, float shift, float scale);

/* x += y over n floats (the residual stream). Threads when n > 65536. */
void cp_add_inplace(float *x, const float *y, int64_t n);

/* y[j] = x[j] · (u(j0 + j) ≥ threshold ? scale : 0) over n floats (y may equal x), where
 * u(c) = h(h(c ⊕ k0) + k1), k0 and k1 the low and high halves of `key`, h a 32-bit integer hash
 * (lowbias32, C. Wellons): a uniform 32-bit draw for column c of the row that `key` names, with no
 * state, so any stretch of a row can be drawn alone and draws again the same. Element j is dropped
 * with probability threshold / 2³². Integer arithmetic only: every variant gives the same bits. */
void cp_dropout_row(float *y, const float *x, int64_t n, uint64_t key, int64_t j0, uint32_t threshold, float scale);

#endif
