/*
 * position_bias.h — the position terms some architectures add to the attention scores, built the
 * way transformers builds them, for cp_attention_args' bias and alibi fields (nn/attention.h).
 *
 * T5's relative position bias: a trainable table (num_buckets, NH) — relative_attention_bias.weight,
 * held by the first layer of each stack and shared by all its layers — indexed by a bucket of
 * key_position − query_position. cp_t5_position_buckets computes the buckets once per shape
 * (T5Attention._relative_position_bucket, its float32 log arithmetic included, so every bucket
 * boundary falls where PyTorch's does); the forward gathers the (NH,T,TK) bias, the backward
 * scatters its gradient (the sum of every layer's d_bias) into the table's gradient.
 *
 * ALiBi: per-head slopes. BLOOM and Falcon use _get_alibi_slopes (powers of 2^(-8/n) for the
 * closest power of two n ≤ NH, then every other power of the next one for the remaining heads);
 * MPT uses its own rule (build_mpt_alibi_tensor). BLOOM's and MPT's biases are slope · position and
 * go to attention as slopes (cp_alibi_pos names the position). Falcon rounds slope and product to
 * bf16 and adds the bias twice (before and after the 1/√hd scaling), so it gets a per-key bias
 * tensor instead (cp_alibi_falcon_bias).
 */
#ifndef CP_NN_POSITION_BIAS_H
#define CP_NN_POSITION_BIAS_H

#include <stdint.h>

#include "core/error.h"

/* ---- T5 relative position bias ------------------------------------------------------------------ */

/* The bucket of one relative position (key − query) in [0, num_buckets): T5's encoder and
 * cross-attention use the bidirectional form, its decoder self-attention the causal one (where
 * keys after the query all share bucket 0). num_buckets and max_distance must pass
 * cp_t5_bucket_check. */
int64_t cp_t5_relative_position_bucket(int64_t relative_position, int bidirectional, int64_t num_buckets,
                                       int64_t max_distance);
/* Refuses a (num_buckets, max_distance) pair transformers cannot compute with (a zero division
 * or a log of 1), naming T5's config fields. */
cp_status cp_t5_bucket_check(int bidirectional, int64_t num_buckets, int64_t max_distance);
/* buckets (T,TK): query i at position past + i against key j at position j (T5Attention.compute_bias
 * with past_seen_tokens = past). */
cp_status cp_t5_position_buckets(int64_t *buckets, int64_t T, int64_t TK, int64_t past, int bidirectional,
                                 int64_t num_buckets, int64_t max_distance);
/* bias (NH,T,TK) = table[buckets[i,j], h]; table is (num_buckets, NH) as stored. For attention:
 * .bias = bias, .bias_b_stride = 0, .bias_h_stride = T*TK, .bias_q_stride = TK. */
void cp_t5_position_bias_forward(float *bias, const float *table, const int64_t *buckets, int64_t NH, int64_t T,
                                 int64_t TK);
/* Backward of the gather: d_table (num_buckets, NH) += Σ over (i,j) in each bucket of d_bias[h,i,j]. */
void cp_t5_position_bias_backward(float *d_table, const float *d_bias, const int64_t *buckets, int64_t NH, int64_t T,
                                  int64_t TK);

/* ---- ALiBi -------------------------------------------------------------------------------------- */

/* slopes (NH): BLOOM's and Falcon's _get_alibi_slopes, in float32 as torch computes them (base^p
 * correctly rounded, torch's scalar pow; its vectorised pow is one ulp off on base^15 for 32..63
 * heads on AVX-512, so the two differ there by 6e-8 relative). */
void cp_alibi_slopes(float *slopes, int64_t NH);
/* slopes (NH): MPT's build_mpt_alibi_tensor (alibi_bias_max from attn_config, 8 by default). Its
 * bias is slope · (j − (TK − 1)): attention's CP_ALIBI_POS_LAST. */
void cp_alibi_slopes_mpt(float *slopes, int64_t NH, double alibi_bias_max);
/* Falcon's ALiBi (alibi: true, e.g. falcon-rw-1b) as a per-key bias (B,NH,TK) for attention with
 * scale 1/√head_dim and strides {NH*TK, TK, 0}: with A = bf16(bf16(slope_h) · bf16(pos)), pos =
 * (cumsum(mask) − 1)·mask, Falcon's scores are (q·k + A)/√hd + A/√hd; this writes
 * A·(1/√hd) + A/√hd (equal to ~1 ulp). key_mask (B, mask_stride) or NULL (all ones). */
void cp_alibi_falcon_bias(float *bias, const int64_t *key_mask, int64_t mask_stride, int64_t B, int64_t NH, int64_t TK,
                          int64_t head_dim);

#endif
