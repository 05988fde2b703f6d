/*
 * position_bias.c — T5's relative position buckets and bias table, ALiBi slopes (BLOOM/Falcon, MPT)
 * and Falcon's per-key ALiBi bias; see position_bias.h. Every formula is transformers' own, line by
 * line, in the float width PyTorch computes it in (noted where it matters).
 */
#include "nn/position_bias.h"
#include "core/dtype.h"

#include <math.h>
#include <string.h>

/* ---- T5 relative position bias ------------------------------------------------------------------ */

cp_status cp_t5_bucket_check(int bidirectional, int64_t num_buckets, int64_t max_distance) {
    const int64_t n = bidirectional ? num_buckets / 2 : num_buckets, max_exact = n / 2;
    if (max_exact < 1)
        return cp_error("T5 relative position bias: relative_attention_num_buckets = %lld leaves no exact bucket "
                        "(needs at least %d)", (long long)num_buckets, bidirectional ? 4 : 2);
    if (max_distance <= max_exact)
        return cp_error("T5 relative position bias: relative_attention_max_distance = %lld must exceed the %lld exact "
                        "buckets (relative_attention_num_buckets = %lld)", (long long)max_distance, (long long)max_exact,
                        (long long)num_buckets);
    return CP_OK;
}

int64_t cp_t5_relative_position_bucket(int64_t relative_position, int bidirectional, int64_t num_buckets,
                                       int64_t max_distance) {
    int64_t bucket = 0, rp = relative_position;
    if (bidirectional) {
        num_buckets /= 2;
        if (rp > 0) bucket += num_buckets;
        rp = rp < 0 ? -rp : rp;
    } else {
        rp = rp < 0 ? -rp : 0; /* -min(rp, 0): keys after the query fall in bucket 0 */
    }
    /* half of the buckets are for exact increments in positions */
    const int64_t max_exact = num_buckets / 2;
    if (rp < max_exact) return bucket + rp;
    /* the other half are logarithmically bigger bins up to max_distance, in float32 as torch:
     * max_exact + (log(rp.float() / max_exact) / math.log(max_distance / max_exact)
     *              * (num_buckets - max_exact)).to(long) */
    const float x = (float)rp / (float)max_exact;
    const float log_ratio = (float)log((double)max_distance / (double)max_exact); /* a Python float, used as f32 */
    const float v = logf(x) / log_ratio * (float)(num_buckets - max_exact);
    int64_t large = max_exact + (int64_t)v;
    if (large > num_buckets - 1) large = num_buckets - 1;
    return bucket + large;
}

cp_status cp_t5_position_buckets(int64_t *buckets, int64_t T, int64_t TK, int64_t past, int bidirectional,
                                 int64_t num_buckets, int64_t max_distance) {
    if (cp_t5_bucket_check(bidirectional, num_buckets, max_distance) != CP_OK) return CP_ERR;
    /* the bucket depends only on j − i: compute each distance once */
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < TK; j++) {
            const int64_t rel = j - (past + i); /* memory_position - context_position */
            buckets[i * TK + j] = i > 0 && j > 0 ? buckets[(i - 1) * TK + (j - 1)]
                                                 : cp_t5_relative_position_bucket(rel, bidirectional, num_buckets, max_distance);
        }
    return CP_OK;
}

void cp_t5_position_bias_forward(float *bias, const float *table, const int64_t *buckets, int64_t NH, int64_t T,
                                 int64_t TK) {
    // bias (NH,T,TK), table (num_buckets,NH), buckets (T,TK)
    for (int64_t h = 0; h < NH; h++)
        for (int64_t n = 0; n < T * TK; n++) bias[h * T * TK + n] = table[buckets[n] * NH + h];
}

void cp_t5_position_bias_backward(float *d_table, const float *d_bias, const int64_t *buckets, int64_t NH, int64_t T,
                                  int64_t TK) {
    // in the forward pass this was bias[h,n] = table[bucket[n], h], so d_table[bucket[n], h] += d_bias[h,n]
    for (int64_t h = 0; h < NH; h++)
        for (int64_t n = 0; n < T * TK; n++) d_table[buckets[n] * NH + h] += d_bias[h * T * TK + n];
}

/* ---- ALiBi -------------------------------------------------------------------------------------- */

/* Head h's slope under _get_alibi_slopes: base^(h+1) for the first closest_power_of_2 heads,
 * extra_base^(1, 3, 5, ...) for the rest; torch.pow of a float32 base and integer powers. */
static float alibi_slope(int64_t h, int64_t NH) {
    /* closest_power_of_2 = 2 ** floor(log2(num_heads)) */
    int64_t cp2 = 1;
    while (cp2 * 2 <= NH) cp2 *= 2;
    /* base = 2 ** (-(2 ** -(log2(closest_power_of_2) - 3))), a Python float stored as float32 */
    if (h < cp2) {
        const float base = (float)pow(2.0, -pow(2.0, -(log2((double)cp2) - 3.0)));
        return (float)pow((double)base, (double)(h + 1));
    }
    const float extra_base = (float)pow(2.0, -pow(2.0, -(log2((double)(2 * cp2)) - 3.0)));
    return (float)pow((double)extra_base, (double)(2 * (h - cp2) + 1));
}

void cp_alibi_slopes(float *slopes, int64_t NH) {
    for (int64_t h = 0; h < NH; h++) slopes[h] = alibi_slope(h, NH);
}

void cp_alibi_slopes_mpt(float *slopes, int64_t NH, double alibi_bias_max) {
    /* num_heads_power_of_2 = 2 ** ceil(log2(num_heads)) */
    int64_t n2 = 1;
    while (n2 < NH) n2 *= 2;
    /* base = arange(1, n2 + 1).float() * (alibi_bias_max / n2) in float32; slopes = 1.0 / torch.pow(2, base) */
    const float step = (float)(alibi_bias_max / (double)n2);
    for (int64_t h = 0; h < NH; h++) {
        /* with n2 != NH the heads take the odd slopes first, then the even ones: slopes[1::2] ++ slopes[::2] */
        const int64_t half = n2 / 2, k = n2 == NH ? h : h < half ? 2 * h + 1 : 2 * (h - half);
        const float base = (float)(k + 1) * step;
        slopes[h] = 1.0f / (float)pow(2.0, (double)base);
    }
}

void cp_alibi_falcon_bias(float *bias, const int64_t *key_mask, int64_t mask_stride, int64_t B, int64_t NH, int64_t TK,
                          int64_t head_dim) {
    // bias (B,NH,TK), key_mask (B, mask_stride)
    const float inv = (float)(1.0 / sqrt((double)head_dim)), sq = (float)sqrt((double)head_dim);
    if (!mask_stride) mask_stride = TK;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *mask = key_mask ? key_mask + b * mask_stride : NULL;
        for (int64_t h = 0; h < NH; h++) {
            /* slopes[..., None].bfloat16() * arange_tensor: both operands bf16, the product rounded to bf16 */
            const float slope = cp_bf16_to_f32(cp_f32_to_bf16(alibi_slope(h, NH)));
            int64_t seen = 0;
            for (int64_t j = 0; j < TK; j++) {
                const int64_t pos = !mask || mask[j] ? seen++ : 0; /* (cumsum - 1) * mask */
                const float p = cp_bf16_to_f32(cp_f32_to_bf16((float)pos));
                const float A = cp_bf16_to_f32(cp_f32_to_bf16(slope * p));
                bias[(b * NH + h) * TK + j] = A * inv + A / sq; /* (S + A)·inv + A/√hd, less the S·inv */
            }
        }
    }
}
