/*
 * stack.h — the transformer scaffold: one place that runs a stack of blocks for every architecture.
 *
 *   x = embed(batch)                      the architecture's embeddings (and its per-forward state)
 *   for each block l: x = block_l(x)      the architecture's block forward
 *   out = final_norm(x)                   LayerNorm / RMSNorm, or none
 *   out = final_proj(out)                 a Linear to another width (OPT-350m's project_out), or none
 *
 * The scaffold owns what every architecture needs around that: the activation arena and its marks,
 * the dropout on the embeddings' output (cp_stack.embed_dropout; the blocks apply their own dropouts
 * through cp_run_dropout and regenerate the masks in their backward),
 * the block inputs saved for the backward pass (all block activations, or with `recompute` only the
 * inputs, the rest recomputed block by block), the cut below the lowest trained block (nothing under
 * it gets gradients), output_hidden_states, and the KV cache of incremental decoding. An
 * architecture supplies only its config mapping and tree (cp_arch), and these block operations.
 *
 * Block contract: block_forward updates x (N,C) in place; the activations its backward reads go in
 * `acts` (allocated by alloc_acts: `training` keeps them all, else they are reused scratch); any
 * other scratch it takes from run->arena it gives back before returning. block_backward gets the
 * block input x_in, the acts of its forward, and dx (N,C) holding the gradient of the block output,
 * which it turns into the gradient of the block input (the whole of it only when need_dx).
 */
#ifndef CP_MODELS_STACK_H
#define CP_MODELS_STACK_H

#include <stddef.h>
#include <stdint.h>

#include "cpeft.h"
#include "core/error.h"
#include "models/kv_cache.h"
#include "models/run.h"
#include "nn/attention.h"
#include "nn/module.h"

struct cp_model;

/* The modules the scaffold looks at: which blocks and embeddings train, and the final norm. */
typedef struct cp_stack {
    cp_module **blocks;        /* [n_blocks] the block containers ("transformer.h.3", "model.layers.3") */
    int64_t n_blocks;
    cp_module *embeddings[4];  /* modules under the embedding step (NULL-terminated): trained ones need its backward */
    cp_module *final_norm;     /* LayerNorm or RMSNorm after the last block; NULL: none */
    cp_module *final_proj;     /* Linear (W,C) after the final norm (and its dropout): the stack's output is (N,W)
                                  (OPT's project_out); NULL: none, the output is (N,C) */
    cp_module *embed_dropout;  /* the Dropout on the embedding step's output (transformer.drop, embeddings.dropout),
                                  applied by the scaffold in training; NULL: none (or the architecture's own) */
    cp_module *final_dropout;  /* the Dropout on the final norm's output (T5Stack.dropout, its second use when it
                                  is embed_dropout too); NULL: none */
    const struct cp_block_ops *ops; /* this stack's blocks; NULL: the architecture's (cp_arch.block_ops) */
    cp_module *root;           /* the module holding the whole stack (encoder-decoder models: "encoder",
                                  "decoder"), for cp_stack_trains; NULL: the model's root */
} cp_stack;

/* What the embedding step is asked: the batch's first token sits at column `past` (the cache's
 * length); the first n_virtual positions of every row take their token embedding from
 * virtual_embeds (B,n_virtual,C) instead of the table (their input ids are placeholders), the rest of
 * the embedding (positions, ...) as for any token. */
typedef struct cp_embed_args {
    int64_t past;
    int64_t n_virtual;
    const float *virtual_embeds;
} cp_embed_args;

typedef struct cp_block_ops {
    size_t acts_size;  /* bytes of the architecture's per-block activation record */
    size_t embed_size; /* bytes of its per-forward embedding state (positions, rotary tables, ...) */
    /* Tk: keys each query sees (T, or n_prefix + T under prefix tuning): the attention probabilities are (B,NH,T,Tk) */
    cp_status (*alloc_acts)(const struct cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar);
    /* a decoder of an encoder-decoder: the cross-attention's part of the record, for Te encoder positions
     * (run->cross); NULL where the blocks have no cross-attention */
    cp_status (*alloc_cross)(const struct cp_model *m, void *acts, const cp_batch *b, int64_t Te, int training, cp_arena *ar);
    /* x (N,C) = embeddings of the batch; backward: the gradients of the embedding step's trained
     * parameters from dx (N,C), and the virtual token rows' through cp_embed_tokens_backward */
    cp_status (*embed)(struct cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb);
    cp_status (*embed_backward)(struct cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea,
                                const float *dx, const void *emb);
    /* kv: with a cache, the block's keys and values go into its layer l and the queries attend to all of it */
    cp_status (*block_forward)(struct cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                               float *x, void *acts, cp_kv_cache *kv);
    cp_status (*block_backward)(struct cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx);
} cp_block_ops;

/* W, the width of the stack's output: final_proj's out_features, else hidden_size. */
int64_t cp_stack_out_width(const struct cp_model *m, const cp_stack *s);

/* Fills m->stack.blocks with the children of parent's ModuleList `list_name` (at build time). */
cp_status cp_stack_blocks(struct cp_model *m, const cp_module *parent, const char *list_name);
/* The same into any stack s (an encoder-decoder's encoder_stack). */
cp_status cp_stack_blocks_into(cp_stack *s, const cp_module *parent, const char *list_name);

/* For an architecture's embed: x (N,C) = rows of the token table `table` (its hooks included), the
 * virtual rows replaced by ea->virtual_embeds; and its backward from dx (N,C), the gradient of those
 * rows: the virtual rows' go to the prompt hook (embeddings_backward), the rest to the table. With
 * virtual tokens the scaffold calls the embedding step's backward even when nothing in it trains. */
cp_status cp_embed_tokens(const cp_run *run, const cp_module *table, const cp_batch *b, const cp_embed_args *ea, float *x);
cp_status cp_embed_tokens_backward(const cp_run *run, const cp_module *table, const cp_batch *b, const cp_embed_args *ea,
                                   const float *dx);

/* For a block's attention, after q, k, v are made: with a KV cache, attend to its columns of layer l;
 * under prefix tuning (run->n_prefix), to layer l's prefix columns before the batch's (scratch from
 * the arena: call it inside the block's mark); else nothing changes. */
cp_status cp_stack_attend(const cp_run *run, cp_kv_cache *kv, int64_t layer, cp_attention_args *at);
/* cp_attention_backward for an attention set up by cp_stack_attend without a cache: dq, dk, dv in
 * the layout of the block's q, k, v; the prefix columns' gradients go to the prompt hook. */
cp_status cp_stack_attention_backward(const cp_run *run, int64_t layer, const cp_attention_args *at, const float *dout,
                                      float *dq, float *dk, float *dv);

/* Inference: out (B,T,W) = final hidden states; hidden_states (L+1,B,T,C) when non-NULL (every
 * block's input, then the output, as transformers' output_hidden_states; refused with a final_proj,
 * whose output is of another width); with a cache the batch's
 * tokens follow its columns (the caller begins and advances it). */
cp_status cp_stack_forward(struct cp_model *m, const cp_run *run, const cp_batch *b, cp_kv_cache *kv, float *out,
                           float *hidden_states);
/* Training: the forward keeping what the backward needs (*saved, in the arena), then the backward
 * from d_out (B,T,W), the gradient of the final hidden states, into every trained parameter. */
cp_status cp_stack_forward_train(struct cp_model *m, const cp_run *run, const cp_batch *b, int recompute, float *out,
                                 void **saved);
cp_status cp_stack_backward(struct cp_model *m, const cp_run *run, const cp_batch *b, const float *d_out, void *saved);

/* The same three on another stack of the model than m->stack (encoder-decoder models run the
 * encoder's and the decoder's: models/seq2seq.c). A decoder stack reads run->cross in its blocks;
 * when run->cross->d_states is set, its backward runs every block (each cross-attention adds to
 * d_states) whatever trains. */
cp_status cp_stack_forward_on(struct cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b, cp_kv_cache *kv,
                              float *out, float *hidden_states);
cp_status cp_stack_forward_train_on(struct cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b,
                                    int recompute, float *out, void **saved);
cp_status cp_stack_backward_on(struct cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b,
                               const float *d_out, void *saved);
/* Whether anything of stack s trains (a parameter with a gradient buffer or a trained hook under
 * s->root): its backward has something to do. */
int cp_stack_trains(const struct cp_model *m, const cp_stack *s);

#endif
