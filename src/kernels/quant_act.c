/*
 * quant_act.c — activation rows rounded to 8 bits per block for the fast few-row product with a
 * quantized weight (quant_dot.h). Compiled once, for the default target, so every kernel variant
 * multiplies the same rounded activations.
 */
#include "kernels/quant_dot.h"

#include <math.h>

int cp_qdot_supports(cp_dtype dt) {
    switch (dt) {
    case CP_Q8_0: case CP_Q4_0: case CP_Q4_1: case CP_Q5_0: case CP_Q5_1: case CP_Q4_K: case CP_Q5_K: case CP_Q6_K: return 1;
    default: return 0;
    }
}

int cp_qdot_act_block(cp_dtype dt) { return dt == CP_Q4_K || dt == CP_Q5_K || dt == CP_Q6_K ? 256 : 32; }

void cp_qact_row(const cp_qact *a, int64_t n, const float *x) {
    const int64_t K = a->K, bs = a->block;
    int8_t *q = a->q + n * K;
    float *d = a->d + n * (K / bs), *s32 = bs == 32 ? a->s32 + n * (K / 32) : NULL;
    int16_t *s16 = a->s16 + n * (K / 16);
    for (int64_t b = 0; b < K / bs; b++) {
        const float *xb = x + b * bs;
        float amax = 0.0f;
        for (int64_t i = 0; i < bs; i++) amax = fmaxf(amax, fabsf(xb[i]));
        /* ggml's multiplier 127 / amax (not 1 / (amax / 127), which differs in the last bit) */
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int64_t i = 0; i < bs; i++) {
            const float v = rintf(xb[i] * id); /* nearest even; |v| <= 127 */
            q[b * bs + i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
            sum += q[b * bs + i];
        }
        if (bs == 32) { /* ggml's Q8_0 / Q8_1: d = amax / 127 in f16, s = d · Σq (d in f32) in f16 */
            const float db = amax / 127.0f;
            d[b] = cp_f16_to_f32(cp_f32_to_f16(db));
            s32[b] = cp_f16_to_f32(cp_f32_to_f16(db * (float)sum));
        } else { /* ggml's Q8_K: d = 1 / (127 / amax) in f32 */
            d[b] = id != 0.0f ? 1.0f / id : 0.0f;
        }
    }
    for (int64_t g = 0; g < K / 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += q[16 * g + i];
        s16[g] = (int16_t)s;
    }
}
