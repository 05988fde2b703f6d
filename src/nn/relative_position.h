/*
 * relative_position.h — DeBERTa's relative positions between a query and a key, and the span of
 * relative-position embeddings each layer reads (transformers' build_relative_position,
 * make_log_bucket_position and the attention span of modeling_deberta.py / modeling_deberta_v2.py).
 * The disentangled attention (nn/disentangled_attention.h) gathers its c2p / p2c terms by these ids.
 *
 * The relative position of query i and key j is i − j. DeBERTa-v2 with position_buckets > 0 and
 * max_relative_positions > 0 maps it to a log bucket, in float32 as PyTorch computes it:
 *
 *   mid     = position_buckets / 2                    (integer division)
 *   abs_pos = |rel| when rel ≤ −mid or rel ≥ mid, else mid − 1
 *   log_pos = ceil(log(abs_pos / mid) / log(f32((max_relative_positions − 1) / mid)) · (mid − 1)) + mid
 *   bucket  = rel when abs_pos ≤ mid, else log_pos · sign(rel)        (then .to(long))
 *
 * (max_relative_positions here is the encoder's: the config value, or max_position_embeddings when
 * it is < 1.) DeBERTa (v1) never buckets.
 *
 * Not here: the embeddings themselves (rel_embeddings.weight, its LayerNorm) and their projections,
 * which belong to the architecture.
 */
#ifndef CP_NN_RELATIVE_POSITION_H
#define CP_NN_RELATIVE_POSITION_H

#include <stdint.h>

#include "core/error.h"

/* Refuses a (position_buckets, max_relative_positions) pair for which make_log_bucket_position
 * divides by zero (mid < 1, or a log ratio of 0 when max_relative_positions − 1 == mid), naming the
 * config fields. position_buckets ≤ 0 (no buckets) always passes. */
cp_status cp_deberta_bucket_check(int64_t position_buckets, int64_t max_relative_positions);

/* The bucket of one relative position rel = i − j (make_log_bucket_position); rel itself when
 * position_buckets ≤ 0 or max_relative_positions ≤ 0. The pair must pass cp_deberta_bucket_check. */
int64_t cp_deberta_log_bucket(int64_t rel, int64_t position_buckets, int64_t max_relative_positions);

/* rel_pos (Tq,Tk): rel_pos[i*Tk + j] = bucket(i − j) (build_relative_position with
 * bucket_size = position_buckets, max_position = max_relative_positions; v1: position_buckets 0). */
cp_status cp_deberta_relative_position(int64_t *rel_pos, int64_t Tq, int64_t Tk, int64_t position_buckets,
                                       int64_t max_relative_positions);

/* The attention span: how many relative-position embedding rows each side of 0 a layer reads.
 *   v2: position_buckets when > 0, else max_relative_positions (pos_ebd_size); the layer reads
 *       rel_embeddings rows [0, 2·span).
 *   v1: min(max(Tq, Tk), max_relative_positions) (compute_attention_span); the layer reads rows
 *       [max_relative_positions − span, max_relative_positions + span), *first_row is set to the first.
 * max_relative_positions is the resolved value (≥ 1). first_row may be NULL for v2 (it is 0). */
int64_t cp_deberta_attention_span(int version, int64_t Tq, int64_t Tk, int64_t position_buckets,
                                  int64_t max_relative_positions, int64_t *first_row);

#endif
