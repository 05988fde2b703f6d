/*
 * bart.h — BART (BartForConditionalGeneration): the state the tree build (models/bart.c) leaves for
 * the block operations (models/bart_blocks.c).
 *
 *   encoder:  x = drop(LN_emb(embed_tokens[ids]·s + embed_positions[t + 2]))        s = sqrt(d_model) when
 *             per layer (post-LN): self-attention, FF                                 scale_embedding, else 1
 *   decoder:  y = drop(LN_emb(embed_tokens[dec_ids]·s + embed_positions[past + t + 2]))
 *             per layer: causal self-attention, cross-attention on the encoder's output (its padding
 *             mask), FF
 *   logits  = lm_head(y) + final_logits_bias                                         (a buffer, no parameter)
 *
 * A sublayer is post-LN: x = LN(x + drop(f(x))). Attention has biases on q/k/v/out_proj and scales the
 * scores by head_dim^-0.5 (head_dim = d_model / the stack's heads); its probabilities drop with
 * attention_dropout. FF: fc2(drop_act(act(fc1(x)))) with activation_dropout. Every dropout is
 * nn.functional.dropout with a config probability (no Dropout modules in the tree), so each site is
 * named under the module that applies it (cp_run_dropout_p).
 */
#ifndef CP_MODELS_BART_H
#define CP_MODELS_BART_H

#include "models/stack.h"
#include "nn/module.h"

typedef struct {
    cp_module *layer;                              /* BartEncoderLayer / BartDecoderLayer (its dropout sites) */
    cp_module *sa, *q, *k, *v, *o, *sa_norm;       /* self_attn, self_attn_layer_norm */
    cp_module *ca, *cq, *ck, *cv, *co, *ca_norm;   /* decoder: encoder_attn, encoder_attn_layer_norm; else NULL */
    cp_module *fc1, *fc2, *ff_norm;                /* fc1, fc2, final_layer_norm */
} bart_layer;

typedef struct {
    cp_module *shared, *lm_head;
    cp_module *stack[2];      /* model.encoder, model.decoder (the embeddings' dropout site) */
    cp_module *embed[2];      /* their embed_tokens (tied to shared) */
    cp_module *positions[2];  /* their embed_positions (max_position_embeddings + 2 rows) */
    cp_module *ln_emb[2];     /* their layernorm_embedding */
    bart_layer *layers[2];    /* [0]: encoder layers, [1]: decoder layers */
    int64_t n_layers[2];
    int64_t heads[2], ffn[2]; /* each stack's attention heads and FFN width */
    float embed_scale;        /* sqrt(d_model) with scale_embedding, else 1 */
} bart_state;

/* BartLearnedPositionalEmbedding's offset: position t reads row t + 2. */
#define CP_BART_POSITION_OFFSET 2

extern const cp_block_ops cp_bart_encoder_ops, cp_bart_decoder_ops;

#endif
