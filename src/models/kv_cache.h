/*
 * kv_cache.h — the key/value cache of incremental decoding: for every layer, the keys (after RoPE
 * for the Llama family) and values of every token seen so far, so that each new token attends to
 * the past without recomputing it.
 *
 * Layout: per layer, K and V are (B, capacity, kv_dim) with kv_dim = NKV·hd, column t of batch row b
 * at (b·capacity + t)·kv_dim. Columns are sequence positions in the padded batch (left padding
 * included), not position ids; `mask` (B, capacity) marks real tokens (1) and padding (0), as
 * transformers' 2-D attention mask grows by a column of ones per generated token. `len` columns
 * are filled. A forward step appends T columns to every layer; cp_kv_cache_advance then moves len.
 *
 * What it is not: a paged or sliding cache. Sliding-window layers (GPT-Neo's local layers,
 * Mistral's every layer, Qwen2's "sliding_attention" layers) keep every column and mask the ones
 * outside the window, which gives the same attention as transformers' DynamicSlidingWindowLayer
 * (which keeps only the last window − 1). The window is the layer's, in its cp_attention_args.
 */
#ifndef CP_MODELS_KV_CACHE_H
#define CP_MODELS_KV_CACHE_H

#include <stdint.h>

#include "core/error.h"
#include "nn/attention.h"

typedef struct cp_kv_cache {
    int64_t L, B, capacity, kv_dim;
    int64_t len;      /* columns filled */
    float *k, *v;     /* (L, B, capacity, kv_dim) each */
    int64_t *mask;    /* (B, capacity) */
} cp_kv_cache;

cp_status cp_kv_cache_init(cp_kv_cache *c, int64_t L, int64_t B, int64_t capacity, int64_t kv_dim);
void cp_kv_cache_free(cp_kv_cache *c);

/* Writes the key-padding mask of T new columns (mask (B,T), NULL = all real). Called before the
 * step's forward so that every layer sees it. Fails when the columns do not fit. */
cp_status cp_kv_cache_begin(cp_kv_cache *c, const int64_t *mask, int64_t T);

/* Layer l of a step with T new tokens per row: copies their keys k (B·T rows, row stride k_stride)
 * and values v into columns len..len+T-1 and points the attention arguments at the cache (keys,
 * values, key mask, past = len). The queries in `at` stay the caller's. */
void cp_kv_cache_attend(cp_kv_cache *c, int64_t l, const float *k, int64_t k_stride, const float *v, int64_t v_stride,
                        cp_attention_args *at);

/* After every layer has run: the T new columns become part of the past. */
void cp_kv_cache_advance(cp_kv_cache *c, int64_t T);

/* Beam search (src/generate/beam.c) moves whole rows: */

/* dst row r becomes a copy of src row rows[r] (0 ≤ rows[r] < src->B) for r < dst->B: keys, values
 * and mask of the src->len filled columns; dst->len = src->len. dst and src must have the same L
 * and kv_dim and dst the room (capacity ≥ src->len). Used to copy a prompt's prefill to its beams
 * (rows[r] = r / num_beams). */
cp_status cp_kv_cache_gather(cp_kv_cache *dst, const cp_kv_cache *src, const int64_t *rows);

/* In place: row r becomes a copy of what row rows[r] held (0 ≤ rows[r] < B), for every layer and
 * the mask; transformers' Cache.reorder_cache(beam_idx). Rows with rows[r] == r are not touched;
 * only rows that are both overwritten and read by another row are staged through a scratch copy. */
cp_status cp_kv_cache_reorder(cp_kv_cache *c, const int64_t *rows);

#endif
