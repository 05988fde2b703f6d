/*
 * deberta.h — DeBERTa (v1, model_type "deberta") and DeBERTa-v2/v3 ("deberta-v2"): what the tree
 * (deberta.c) and the blocks (deberta_blocks.c) share.
 *
 *   embeddings:  e = word[ids] (+ position[pos] when position_biased_input) (+ token_type[tt])   (N,E)
 *                x = LayerNorm_emb(embed_proj(e) when E ≠ C, else e) · mask                       (N,C)
 *   relative positions, once per forward (relative_attention):
 *                rel = rel_embeddings rows the layers read (v1: [max_rel − span, max_rel + span);
 *                      v2: [0, 2·span)), through encoder.LayerNorm when norm_rel_ebd has
 *                      "layer_norm" (v2)                                                           (W,C)
 *   per block (post-LN, as BERT):
 *     q, k, v = v1: in_proj(x) split per head (+ q_bias, v_bias); v2: query/key/value_proj(x)
 *     pk = v1 pos_proj(rel) / v2 pos_key_proj(rel) (key_proj(rel) with share_att_key)   c2p
 *     pq = v1 pos_q_proj(rel) / v2 pos_query_proj(rel) (query_proj(rel) when shared)    p2c
 *     att = disentangled attention (nn/disentangled_attention.h)
 *     x1 = LayerNorm(attention.output.dense(att) + x);  x = LayerNorm(output.dense(act(intermediate.dense(x1))) + x1)
 *   v2 ConvLayer (conv_kernel_size > 0), after layer 0 with x0 its input and y its output:
 *     x = LayerNorm_conv(y + conv_act(Conv1d(x0) · mask)) · mask
 *   training adds transformers' dropouts (StableDropout is nn.Dropout in train mode): on the
 *   embeddings' output (the scaffold's embed_dropout), on rel before each layer's position
 *   projections, on the attention probabilities, on each dense output before its residual sum, on
 *   the ConvLayer's convolution before its activation, and the heads' (ContextPooler's pooler.dropout,
 *   the classifier's dropout).
 *   heads: SEQ_CLS ContextPooler (pooler.dense + pooler_hidden_act on token 0) → classifier;
 *          TOKEN_CLS classifier on every token.
 *
 * The gradient of rel from every layer's position projections adds up in one buffer of the
 * embedding state; the embedding backward runs it through the LayerNorm into rel_embeddings.
 */
#ifndef CP_MODELS_DEBERTA_H
#define CP_MODELS_DEBERTA_H

#include "models/model.h"
#include "models/stack.h"

typedef struct {
    cp_module *self;                    /* DisentangledSelfAttention (v1: holds q_bias, v_bias) */
    cp_module *in_proj;                 /* v1: Linear (3C,C), no bias; NULL in v2 */
    cp_module *query, *key, *value;     /* v2: query_proj, key_proj, value_proj (C,C) */
    cp_module *pos_key, *pos_query;     /* the c2p / p2c projections of rel (NULL when absent;
                                           v2 share_att_key: key_proj / query_proj) */
    cp_module *attn_out, *ln_attn;      /* attention.output.dense, attention.output.LayerNorm */
    cp_module *inter, *out, *ln_out;    /* intermediate.dense (I,C), output.dense (C,I), output.LayerNorm */
    /* the Dropouts training applies: self.pos_dropout on rel before the position projections (NULL
     * without relative attention), self.dropout on the attention probabilities, attention.output
     * .dropout and output.dropout on the dense outputs before their residual sums */
    cp_module *pos_drop, *attn_drop, *attn_out_drop, *out_drop;
} cp_deberta_layer;

typedef struct {
    cp_module *embeddings;              /* the embeddings container */
    cp_module *word, *position, *token_type, *embed_proj, *ln_emb; /* position, token_type, embed_proj may be NULL */
    cp_module *rel_embeddings;          /* encoder.rel_embeddings, NULL without relative_attention */
    cp_module *rel_ln;                  /* encoder.LayerNorm (v2 norm_rel_ebd "layer_norm"), or NULL */
    cp_module *conv_layer, *conv, *conv_ln; /* v2 encoder.conv (ConvLayer), its Conv1d and LayerNorm, or NULL */
    cp_module *conv_drop;               /* the ConvLayer's dropout, before its activation */
    cp_deberta_layer *layers;           /* [num_layers] */
} cp_deberta_state;

extern const cp_block_ops cp_deberta_block_ops;

#endif
