/*
 * attention.h — the softmax attention core shared by every architecture: scores, masks, an additive
 * bias, softmax, weighted sum of values. Projections (q/k/v, output) stay with the architecture;
 * this file only sees per-head vectors.
 *
 *   scores[b,h,i,j] = (q_i · k_j) · scale + bias[b,h,i,j] + slope_h · pos[b,j]     (then the masks)
 *
 * Modes (a zero-initialised field keeps the plain causal decoder; every new field is off at 0):
 *   causal (default)  query i sees key j when j <= past + i, i - j < window (when window > 0) and the
 *                     key is not padding — decoders (GPT-2, GPT-Neo, Llama, ...);
 *   bidirectional     every query sees every key the key mask keeps — encoders (BERT family: the
 *                     padding mask only) and cross-attention;
 *   cross-attention   bidirectional with Tk keys from another sequence (T5/BART decoder over the
 *                     encoder output): k, v and key_mask hold Tk rows per batch row;
 *   soft-capping      `softcap` c > 0: the scaled (and biased) scores become c·tanh(s/c) before the
 *                     masks (Gemma 2's attn_logit_softcapping); the backward recomputes tanh from q·k;
 *   additive bias     `bias`, a float tensor added to the scaled scores with its own strides, so
 *                     (NH,T,Tk) (T5's relative position bias, shared by the batch), (B,NH,T,Tk) and
 *                     a per-key (B,NH,1,Tk) bias all fit; its gradient goes to d_bias (backward);
 *   ALiBi             per-head slopes times a key position: the column (pos = j), BLOOM's and
 *                     Falcon's (cumsum(key_mask) − 1)·key_mask, or MPT's j − (Tk − 1); no gradient.
 *                     (Falcon rounds its ALiBi products to bf16 and adds them twice: it passes the
 *                     per-key bias that cp_alibi_falcon_bias in position_bias.h builds instead.)
 * The order of the float operations is eager PyTorch's: ((q·k)·scale + bias) + alibi, then softmax.
 *
 * Dropout (training): `dropout` drops attention probabilities before they weight the values,
 * out = dropout(P)·V, as eager attention's nn.functional.dropout(attn_weights) and SDPA's dropout_p
 * do. Mask row (b·NH + h)·T + i, column j (the key column) of the site (nn/dropout.h); `probs` keeps
 * P itself, and the backward draws the same masks again: dV = dropout(P)ᵀ·dO, dP = dropout(dO·Vᵀ).
 *
 * Masking follows transformers' eager attention exactly where it matters. A query that sees no key
 * at all (a padding query under left padding) gets what PyTorch's eager attention gives it, because
 * its output still feeds the loss: the first real token of a left-padded row is predicted from the
 * last padding position. Where the causal mask is applied with torch.where and the padding mask
 * added on top (GPT-Neo), all keys end at finfo.min except the causal window's, which end at -inf:
 * uniform over the causal window. Where one additive mask holds both (GPT-2), every score rounds to
 * finfo.min: uniform over all keys. Bias and ALiBi are too small to move finfo.min, so they do not
 * change these rows. Bidirectional queries' "causal window" is all keys: both rules agree.
 *
 * Incremental decoding (src/models/kv_cache.h): the T queries may follow `past` cached keys. The
 * keys and values then hold past + T rows per batch row (inside buffers of kv_rows rows), query i
 * sits at column past + i, and the causal rule, the window and the key mask all count in columns,
 * as transformers' cache does (GPT-Neo's local window and Mistral's sliding window are windows
 * over cache columns). past = 0 and kv_rows = 0 is the plain full-sequence case.
 *
 * Two ways to train (what the forward keeps for the backward):
 *   probs   the (B,NH,T,TK) probabilities (nn/attention.c): the backward is five GEMMs over them;
 *   stats   two floats per query row, (B,NH,T,2) (nn/attention_fused.c, FlashAttention-2's form):
 *           the forward runs an online softmax over tiles of keys and never holds a row of
 *           scores, the backward recomputes the scores tile by tile from q, k and the statistics,
 *           and reads `out` (the forward's output, unchanged) for D = rowsum(dO ⊙ O). Memory
 *           O(tile²) per thread instead of O(T·TK) per head. Every mode above is supported.
 * With probs NULL the forward runs the fused path (writing stats when set); with probs set, the
 * blocked GEMM path. The backward uses probs when set, else stats.
 */
#ifndef CP_NN_ATTENTION_H
#define CP_NN_ATTENTION_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/dropout.h"

typedef enum {
    CP_ATTN_EMPTY_CAUSAL, /* a query with no visible key attends uniformly to its causal window */
    CP_ATTN_EMPTY_ALL,    /* ... uniformly to all keys */
} cp_attn_empty_row;

/* The key position ALiBi multiplies by the head's slope. */
typedef enum {
    CP_ALIBI_POS_COLUMN, /* j (the key's column; BLOOM without a mask) */
    CP_ALIBI_POS_MASK,   /* (cumsum(key_mask) − 1) · key_mask over the key columns (BLOOM, Falcon's
                            build_alibi_tensor): padding keys at 0, real keys numbered from 0;
                            the column j when key_mask is NULL */
    CP_ALIBI_POS_LAST,   /* j − (TK − 1): the last key at 0 (MPT's build_mpt_alibi_tensor) */
} cp_alibi_pos;

typedef struct {
    int64_t B, T, NH, hs;     /* T: queries per batch row */
    int64_t NKV;              /* key/value heads (grouped-query attention): query head h reads kv head
                                 h / (NH/NKV); 0 means NKV = NH */
    /* q: token (b,t) of head h starts at q + (b*T + t)*q_stride + h*hs; key column j of batch row b
     * at k + (b*kv_rows + j)*k_stride + kv_head*hs, v likewise */
    const float *q, *k, *v;
    int64_t q_stride, k_stride, v_stride;
    int64_t past;             /* cached keys before the first query (0 without a cache) */
    int64_t kv_rows;          /* rows per batch row in k, v and key_mask; 0 means TK */
    float scale;              /* scores = (q·k) * scale; GPT-Neo and T5 use 1 */
    int64_t window;           /* 0 = global attention (causal only) */
    const int64_t *key_mask;  /* (B,kv_rows) 1 = attend, 0 = padding; NULL = all ones */
    cp_attn_empty_row empty_row;
    float *out;               /* (B,T,NH*hs) */
    float *probs;             /* (B,NH,T,TK) attention probabilities, saved for backward; may be NULL */
    float *stats;             /* (B,NH,T,2) training without probs: each query row's score max and
                                 exp-sum (the softmax's statistics), saved by the fused forward for
                                 the fused backward, which recomputes the scores tile by tile */

    /* ---- beyond the causal decoder; 0 / NULL keeps it ---- */
    int bidirectional;        /* 1: no causal rule (encoders, cross-attention); window must be 0 */
    int64_t Tk;               /* keys per batch row TK; 0 means past + T. With a causal mask it must
                                 be past + T; bidirectional, any length (cross-attention) */
    /* additive bias on the scaled scores, element (b,h,i,j) (query i, key column j) at
     *   bias[b*bias_b_stride + h*bias_h_stride + i*bias_q_stride + j]
     * a zero stride broadcasts: (NH,T,TK) is {0, T*TK, TK}, (B,NH,T,TK) {NH*T*TK, T*TK, TK}, a
     * per-key bias (B,NH,1,TK) {NH*TK, TK, 0} */
    const float *bias;
    int64_t bias_b_stride, bias_h_stride, bias_q_stride;
    float *d_bias;            /* backward: += dloss/dbias in bias's layout and strides (summed over
                                 the broadcast dimensions); NULL = not wanted */
    const float *alibi_slopes; /* (NH) ALiBi slopes, added as slope_h · pos(b,j); NULL = no ALiBi */
    cp_alibi_pos alibi_pos;
    cp_dropout dropout;       /* on the probabilities (training); p = 0: none */
    float softcap;            /* > 0: scores = softcap·tanh(scores/softcap) after scale, bias and ALiBi,
                                 before the masks (eager Gemma 2); 0: none */
} cp_attention_args;

/* The fast version (blocked GEMMs) and the plain reference it is tested against. */
cp_status cp_attention_forward(const cp_attention_args *a, cp_arena *scratch);
cp_status cp_attention_forward_ref(const cp_attention_args *a, cp_arena *scratch);

/* Backward from what the forward saved (a->probs, else a->stats and a->out): given dout (B,T,C),
 * writes dq, dk, dv in the layout and strides of q, k, v (the TK key rows of each batch row), and
 * adds the bias gradient to d_bias when set.
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dB = P ⊙ (dP − rowsum(dP ⊙ P)),  dS = dB · scale,  dQ = dS·K,  dK = dSᵀ·Q
 * (with softcap, dB is first multiplied by 1 − tanh²(s/c), s the uncapped scores recomputed from Q·Kᵀ)
 * Masked keys have P = 0 and so get no gradient; a fully masked query's uniform row passes its
 * gradient to every key it was spread over, as PyTorch's `scores + finfo.min` does. With past > 0
 * (trainable prefix keys) the cached keys get their gradient like the others. */
cp_status cp_attention_backward(const cp_attention_args *a, const float *dout, float *dq, float *dk, float *dv,
                                cp_arena *scratch);

#endif
