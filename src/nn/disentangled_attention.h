/*
 * disentangled_attention.h — DeBERTa's disentangled self-attention core (DeBERTa v1 and v2/v3): the
 * content-to-content scores plus the content-to-position (c2p) and position-to-content (p2c) terms
 * gathered by relative position, the padding mask, softmax and the weighted sum of values; forward
 * and backward. Projections (query/key/value, the positional projections of the relative
 * embeddings, v1's fused in_proj with q_bias / v_bias) stay with the architecture; this file sees
 * the projected per-head vectors, like nn/attention.h.
 *
 * What transformers computes (DisentangledSelfAttention in modeling_deberta_v2.py and
 * modeling_deberta.py), per batch row b and head h, with T tokens, hs = head size, C = NH·hs:
 *
 *   q, k, v        (T,hs)   the projected query/key/value of head h (v1: in_proj's per-head chunks,
 *                           q + q_bias, v + v_bias — done by the caller)
 *   pk, pq         (2·span,hs)  the relative embeddings' key / query projections of head h:
 *                           v2: pos_key_proj / pos_query_proj (key_proj / query_proj when
 *                           share_att_key) of rel_embeddings[0 : 2·span] (layer-normed first when
 *                           norm_rel_ebd has "layer_norm");
 *                           v1: pos_proj (no bias) / pos_q_proj of rel_embeddings[max_rel − span :
 *                           max_rel + span]  (span: nn/relative_position.h)
 *   rel            (T,T)    relative position ids, rel[i][j] = bucket(i − j) (relative_position.h)
 *   s = sqrt(f32(hs) · scale_factor),  scale_factor = 1 + (c2p in pos_att_type) + (p2c in pos_att_type)
 *                           (v1: 1 + len(pos_att_type))
 *   c(i,j) = clamp(rel[i][j] + span, 0, 2·span − 1)       c2p index, into pk
 *   p(i,j) = clamp(−rel[j][i] + span, 0, 2·span − 1)      p2c index, into pq (note rel[j][i])
 *
 *   v2:  S[i,j] = q_i·(k_j / s) + ( (q_i·pk[c(i,j)]) / s + (k_j·pq[p(i,j)]) / s )
 *   v1:  S[i,j] = (q_i / s)·k_j + ( (q_i / s)·pk[c(i,j)] + k_j·(pq[p(i,j)] / s) )
 *        (the same number up to rounding; each version divides where transformers does)
 *   S[i,j] = finfo(f32).min where mask[b,i,j] == 0      (masked_fill; mask[b,i,j] = m[b,i]·m[b,j]
 *                                                        from the 2-D attention_mask m)
 *   P = softmax_j(S)                                     (B,NH,T,T)
 *   out[b,i,h·hs:(h+1)·hs] = Σ_j P[i,j] v_j              (B,T,C)
 *
 * The c2p term exists when pos_att_type has "c2p" (pos_key set), p2c when it has "p2c" (pos_query
 * set); neither for a model without relative_attention. A padding query (m[b,i] = 0) has every
 * score at finfo.min, so its softmax is uniform over all T keys and its output the mean of v; as
 * in PyTorch no gradient flows back through masked scores (masked_fill), so that row passes
 * gradient only to v. (Older transformers releases used XSoftmax, which zeroed those rows; the
 * pinned 5.x does not. Real queries give masked keys probability exactly 0 either way.)
 *
 * Dropout (training): `dropout` drops the probabilities before they weigh the values (attention
 * .self.dropout), out = dropout(P)·V, mask row (b·NH + h)·T + i, column j; probs keeps P and the
 * backward draws the masks again. pos_dropout on rel_embeddings is the caller's (it precedes the
 * position projections).
 *
 * Not here: talking heads (v1's
 * head_logits_proj / head_weights_proj: refuse talking_head), and attention with query_states of
 * another length than the keys (the enhanced mask decoder; build_rpos / uneven_size_corrected).
 */
#ifndef CP_NN_DISENTANGLED_ATTENTION_H
#define CP_NN_DISENTANGLED_ATTENTION_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/dropout.h"

typedef enum {
    CP_DEBERTA_V1 = 1, /* modeling_deberta.py: q and pq divided by s before their products */
    CP_DEBERTA_V2 = 2, /* modeling_deberta_v2.py: k divided by s, the c2p/p2c products after */
} cp_deberta_version;

typedef struct {
    cp_deberta_version version;
    int64_t B, T, NH, hs;
    /* token (b,t) of head h at q + (b*T + t)*q_stride + h*hs; k, v likewise (self-attention: T keys) */
    const float *q, *k, *v;
    int64_t q_stride, k_stride, v_stride;
    /* relative-position row r (0 ≤ r < 2·span) of head h at pos_key + r*pos_key_stride + h*hs:
     * pk (2·span, NH·hs) for c2p, NULL = no c2p; pos_query likewise for p2c */
    const float *pos_key, *pos_query;
    int64_t pos_key_stride, pos_query_stride;
    int64_t span;             /* att_span (nn/relative_position.h); ≥ 1 when pos_key or pos_query */
    const int64_t *rel_pos;   /* (T,T) relative position ids (cp_deberta_relative_position), shared by
                                 the batch; needed with pos_key or pos_query */
    int64_t scale_factor;     /* ≥ 1: s = sqrt(f32(hs) · scale_factor) */
    const int64_t *key_mask;  /* (B,T) 1 = real token, 0 = padding (query and key); NULL = all ones */
    float *out;               /* (B,T,NH*hs) */
    float *probs;             /* (B,NH,T,T) softmax probabilities, saved for the backward; may be NULL
                                 in a forward that no backward follows */
    cp_dropout dropout;       /* on the probabilities (training); p = 0: none */
} cp_disentangled_args;

/* The forward: writes out (and probs when set). scratch holds per-thread buffers during the call. */
cp_status cp_disentangled_attention_forward(const cp_disentangled_args *a, cp_arena *scratch);

/* The backward from the probabilities the forward saved (a->probs must be set), given dout (B,T,C).
 * Writes (overwrites) dq, dk, dv in the strides of q, k, v, and d_pos_key / d_pos_query (2·span rows)
 * in the strides of pos_key / pos_query, summed over the batch (the embeddings are shared by it);
 * d_pos_key / d_pos_query may be NULL when not wanted (and must be when their input is NULL).
 *   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)), 0 where masked,  G = dS / s
 *   dQ = G·K + Gc·PK,   dK = Gᵀ·Q + Gp·PQ,   dPK = Σ_b Gcᵀ·Q,   dPQ = Σ_b Gpᵀ·K
 * where Gc (T,2·span) scatters G by the c2p index, Gc[i, c(i,j)] += G[i,j], and Gp (T,2·span) by the
 * p2c index, Gp[j, p(i,j)] += G[i,j]. */
cp_status cp_disentangled_attention_backward(const cp_disentangled_args *a, const float *dout, float *dq, float *dk,
                                             float *dv, float *d_pos_key, float *d_pos_query, cp_arena *scratch);

#endif
