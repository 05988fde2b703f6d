/*
 * relative_position.c — DeBERTa's relative position ids, log buckets and attention span; see
 * relative_position.h. The formulas are transformers' own, in the float width PyTorch uses.
 */
#include "nn/relative_position.h"

#include <math.h>

cp_status cp_deberta_bucket_check(int64_t position_buckets, int64_t max_relative_positions) {
    if (position_buckets <= 0 || max_relative_positions <= 0) return CP_OK;
    const int64_t mid = position_buckets / 2;
    if (mid < 1)
        return cp_error("DeBERTa relative positions: position_buckets = %lld leaves no bucket each side (needs at "
                        "least 2)", (long long)position_buckets);
    if (max_relative_positions - 1 == mid)
        return cp_error("DeBERTa relative positions: max_relative_positions = %lld with position_buckets = %lld makes "
                        "the log-bucket ratio log(1) = 0", (long long)max_relative_positions, (long long)position_buckets);
    return CP_OK;
}

int64_t cp_deberta_log_bucket(int64_t rel, int64_t position_buckets, int64_t max_relative_positions) {
    if (position_buckets <= 0 || max_relative_positions <= 0) return rel;
    const int64_t mid = position_buckets / 2;
    const int64_t abs_pos = rel < mid && rel > -mid ? mid - 1 : (rel < 0 ? -rel : rel);
    if (abs_pos <= mid) return rel;
    /* torch: abs_pos / mid is a float32 true division; torch.tensor((max_position - 1) / mid) holds
     * the Python float as float32; log, the division, ·(mid − 1) and ceil all in float32 */
    const float ratio = (float)abs_pos / (float)mid;
    const float base = (float)((double)(max_relative_positions - 1) / (double)mid);
    const float log_pos = ceilf(logf(ratio) / logf(base) * (float)(mid - 1)) + (float)mid;
    return rel < 0 ? -(int64_t)log_pos : (int64_t)log_pos;
}

cp_status cp_deberta_relative_position(int64_t *rel_pos, int64_t Tq, int64_t Tk, int64_t position_buckets,
                                       int64_t max_relative_positions) {
    if (cp_deberta_bucket_check(position_buckets, max_relative_positions) != CP_OK) return CP_ERR;
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t j = 0; j < Tk; j++)
            rel_pos[i * Tk + j] = cp_deberta_log_bucket(i - j, position_buckets, max_relative_positions);
    return CP_OK;
}

int64_t cp_deberta_attention_span(int version, int64_t Tq, int64_t Tk, int64_t position_buckets,
                                  int64_t max_relative_positions, int64_t *first_row) {
    if (version == 1) {
        const int64_t longest = Tq > Tk ? Tq : Tk;
        const int64_t span = longest < max_relative_positions ? longest : max_relative_positions;
        if (first_row) *first_row = max_relative_positions - span;
        return span;
    }
    if (first_row) *first_row = 0;
    return position_buckets > 0 ? position_buckets : max_relative_positions;
}
