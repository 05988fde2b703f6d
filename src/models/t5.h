/*
 * t5.h — T5 and mT5 (T5ForConditionalGeneration, MT5ForConditionalGeneration): the state the tree
 * build (models/t5.c) leaves for the block operations (models/t5_blocks.c).
 *
 *   encoder:  x = drop(shared[input_ids]);  per block: self-attention, FF;  out = drop(T5LN(x))
 *   decoder:  y = drop(shared[decoder_input_ids]);  per block: causal self-attention, cross-attention
 *             on the encoder's out (its padding mask), FF;  h = drop(T5LN(y))
 *   logits   = lm_head(h · d_model^-0.5 when scale_decoder_outputs)
 *
 * A sublayer is pre-norm with the residual after its dropout: x = x + drop(f(T5LN(x))). Attention
 * is unscaled (no 1/√d_kv) with the relative position bias of the stack's first block added to the
 * scores of every block's self-attention (cross-attention has none), heads of d_kv (num_heads·d_kv
 * may differ from d_model). FF: wo(drop(act(wi(h)))) or, gated, wo(drop(act(wi_0(h)) ⊙ wi_1(h))).
 */
#ifndef CP_MODELS_T5_H
#define CP_MODELS_T5_H

#include "models/stack.h"
#include "nn/module.h"

typedef struct {
    /* layer.0: self-attention */
    cp_module *sa, *sa_norm, *q, *k, *v, *o, *sa_drop;
    /* layer.1 in the decoder: cross-attention (EncDecAttention); NULL in the encoder */
    cp_module *ca, *ca_norm, *cq, *ck, *cv, *co, *ca_drop;
    /* the last layer: feed-forward (wi, or wi_0 and wi_1 when gated) */
    cp_module *ff_norm, *wi, *wi1, *wo, *ff_inner_drop, *ff_drop;
} t5_layer;

typedef struct {
    cp_module *shared, *lm_head;
    cp_module *embed[2];   /* encoder.embed_tokens, decoder.embed_tokens */
    cp_module *rel_bias[2]; /* block.0.layer.0.SelfAttention.relative_attention_bias of each stack */
    t5_layer *layers[2];   /* [0]: encoder blocks, [1]: decoder blocks */
    int64_t n_layers[2];
} t5_state;

extern const cp_block_ops cp_t5_encoder_ops, cp_t5_decoder_ops;

#endif
