/*
 * attention.h — the causal self-attention core shared by every decoder: scores, masks, softmax,
 * weighted sum of values. Projections (q/k/v, output) stay with the architecture; this file only
 * sees per-head vectors.
 *
 * Masking follows transformers' eager attention exactly where it matters: query i sees key j when
 * j <= i (causal), i - j < window (sliding window, when window > 0) and the key is not padding.
 * A query that sees no key at all (a padding query under left padding) gets what PyTorch's eager
 * attention gives it, because its output still feeds the loss: the first real token of a
 * left-padded row is predicted from the last padding position. Where the causal mask is applied
 * with torch.where and the padding mask added on top (GPT-Neo), all keys end at finfo.min except
 * the causal window's, which end at -inf: uniform over the causal window. Where one additive mask
 * holds both (GPT-2), every score rounds to finfo.min: uniform over all T keys.
 *
 * Incremental decoding (src/generate/kv_cache.h): the T queries may follow `past` cached keys. The
 * keys and values then hold past + T rows per batch row (inside buffers of kv_rows rows), query i
 * sits at column past + i, and the causal rule, the window and the key mask all count in columns,
 * as transformers' cache does (GPT-Neo's local window and Mistral's sliding window are windows
 * over cache columns). past = 0 and kv_rows = 0 is the plain full-sequence case.
 */
#ifndef CP_NN_ATTENTION_H
#define CP_NN_ATTENTION_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"

typedef enum {
    CP_ATTN_EMPTY_CAUSAL, /* a query with no visible key attends uniformly to its causal window */
    CP_ATTN_EMPTY_ALL,    /* ... uniformly to all T keys */
} cp_attn_empty_row;

typedef struct {
    int64_t B, T, NH, hs;     /* T: queries per batch row */
    int64_t NKV;              /* key/value heads (grouped-query attention): query head h reads kv head
                                 h / (NH/NKV); 0 means NKV = NH */
    /* q: token (b,t) of head h starts at q + (b*T + t)*q_stride + h*hs; key column j of batch row b
     * at k + (b*kv_rows + j)*k_stride + kv_head*hs, v likewise */
    const float *q, *k, *v;
    int64_t q_stride, k_stride, v_stride;
    int64_t past;             /* cached keys before the first query (0 without a cache) */
    int64_t kv_rows;          /* rows per batch row in k, v and key_mask; 0 means T (past must be 0) */
    float scale;              /* scores = (q·k) * scale; GPT-Neo uses 1 */
    int64_t window;           /* 0 = global attention */
    const int64_t *key_mask;  /* (B,kv_rows) 1 = attend, 0 = padding; NULL = all ones */
    cp_attn_empty_row empty_row;
    float *out;               /* (B,T,NH*hs) */
    float *probs;             /* (B,NH,T,T) attention probabilities, saved for backward; may be NULL */
} cp_attention_args;

/* The fast version (blocked GEMMs) and the plain reference it is tested against. */
cp_status cp_attention_forward(const cp_attention_args *a, cp_arena *scratch);
cp_status cp_attention_forward_ref(const cp_attention_args *a, cp_arena *scratch);

/* Backward (no cache: past = 0) from the probabilities the forward saved (a->probs must be set): given dout (B,T,C),
 * writes dq, dk, dv in the layout and strides of q, k, v.
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale,  dQ = dS·K,  dK = dSᵀ·Q
 * Masked keys have P = 0 and so get no gradient; a fully masked query's uniform row passes its
 * gradient to every key it was spread over, as PyTorch's `scores + finfo.min` does. */
cp_status cp_attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                cp_arena *scratch);

#endif
