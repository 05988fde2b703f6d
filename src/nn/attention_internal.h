/*
 * attention_internal.h — what the two attention implementations share (not public API): the key
 * ranges, the argument check, ALiBi's key positions and the bias / soft-cap of a row of scores.
 * nn/attention.c holds the path that keeps the probabilities (B,NH,T,TK) for backward;
 * nn/attention_fused.c the tiled online-softmax path that keeps two floats per query row.
 * Both add the bias, ALiBi and the cap in the same order, so their scores agree bit for bit and
 * their outputs to float reordering.
 */
#ifndef CP_NN_ATTENTION_INTERNAL_H
#define CP_NN_ATTENTION_INTERNAL_H

#include "nn/attention.h"

/* The kv head a query head reads. */
static inline int64_t cp_attn_kv_head(const cp_attention_args *a, int64_t h) {
    return a->NKV > 0 ? h / (a->NH / a->NKV) : h;
}
/* Keys per batch row: the cache and the new ones, or the other sequence's (cross-attention). */
static inline int64_t cp_attn_n_keys(const cp_attention_args *a) { return a->Tk ? a->Tk : a->past + a->T; }
/* Rows per batch row in k, v and the key mask. */
static inline int64_t cp_attn_kv_rows(const cp_attention_args *a) { return a->kv_rows ? a->kv_rows : cp_attn_n_keys(a); }

/* The key columns lo..hi the query at column col may see before the key mask. */
static inline void cp_attn_visible_keys(const cp_attention_args *a, int64_t col, int64_t *lo, int64_t *hi) {
    if (a->bidirectional) { *lo = 0; *hi = cp_attn_n_keys(a) - 1; return; }
    *lo = a->window > 0 && col - a->window + 1 > 0 ? col - a->window + 1 : 0;
    *hi = col;
}

/* What no caller may ask for (an error set); the plain causal arguments always pass. */
cp_status cp_attn_check_args(const cp_attention_args *a);

/* ALiBi's key positions (B,TK) as floats from scratch, pos(b,j) by a->alibi_pos; *out = NULL without ALiBi. */
cp_status cp_attn_alibi_positions(const cp_attention_args *a, cp_arena *scratch, float **out);

/* r[j] = r[j]·scale + bias(b,h,i,lo+j) + slope_h·pos(b,lo+j) over the n keys from column lo: the
 * scores of query i before the masks, in eager PyTorch's order of additions. */
void cp_attn_add_bias_row(const cp_attention_args *a, const float *alibi_pos, float *r, int64_t lo, int64_t n, int64_t b,
                          int64_t h, int64_t i);

/* The fused path (attention_fused.c); a->stats must be set for the backward. */
cp_status cp_attn_fused_forward(const cp_attention_args *a, cp_arena *scratch);
cp_status cp_attn_fused_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                 cp_arena *scratch);

#endif
