/*
 * model.h — a loaded model: config, module tree, mapped checkpoint and the activation arena.
 * This is the internal definition of the public opaque cp_model (include/cpeft.h).
 */
#ifndef CP_MODELS_MODEL_H
#define CP_MODELS_MODEL_H

#include "cpeft.h"
#include "core/arena.h"
#include "io/checkpoint.h"
#include "models/arch.h"
#include "models/config.h"
#include "models/head.h"
#include "models/run.h"
#include "models/stack.h"
#include "nn/module.h"

struct cp_model {
    char *dir;
    cp_model_config config;
    const cp_arch *arch;
    cp_task task;          /* what the model was loaded for (cp_model_load_task) */
    cp_module *root;       /* the *ForCausalLM module (the task's class: *Model, *ForSequenceClassification, ...) */
    cp_module *lm_head;    /* Linear (V,C), possibly tied to the input embedding; NULL without a causal LM */
    cp_head head;          /* SEQ_CLS / TOKEN_CLS: the classification head the architecture built */
    int n_fresh_head;      /* head parameters the checkpoint lacked, initialised fresh (cp_model_init_head) */
    cp_checkpoint ckpt;
    int has_weights;
    void *arch_state;      /* the architecture's pointers into the tree */
    cp_stack stack;        /* the blocks, embeddings and final norm the scaffold runs (an encoder-decoder's decoder) */
    cp_stack encoder_stack; /* an encoder-decoder's encoder (cp_arch.encoder_decoder); unused otherwise */
    double decoder_output_scale; /* an encoder-decoder's factor on the decoder output before the LM head (T5's
                                    d_model^-0.5 with tied embeddings); 1 (or 0: none) otherwise */
    float *logits_bias;    /* (V) the architecture's logits buffer (cp_arch.logits_bias), owned; NULL: none */
    cp_arena arena;        /* activations, reset every forward */
    int training;          /* the mode the next calls run in (dropout on), as torch's module.train() */
    int model_dropout;     /* in training, the model's own Dropout modules apply too (1 from load; 0: only
                              the adapters' dropout, as if the config's dropout probabilities were 0) */
    uint64_t dropout_seed; /* the seed of the next training forward's dropout masks */
    int64_t dropout_row0;  /* the global batch row of the next call's row 0 (a data-parallel rank's shard;
                              0 in one process): the dropout masks are keyed by global rows (run.h) */
    int quant_act8;        /* inference calls (not training) let quantized weights' few-row products round
                              their input to 8 bits per block (models/run.h); 0 from load: exact. cpeft
                              generate / eval set it unless --exact-quant */
    cp_dtype quantize_dtype; /* --quantize's block format (CP_LOAD_QUANTIZE_*); none when not a block format */
    int quantize_embeddings; /* with quantize_dtype: the frozen token embedding and LM head are quantized too when
                                training starts (cp_model_quantize_embeddings); 0: CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS */
    struct cp_peft_state *peft; /* adapters (src/peft/peft_model.h), NULL for the bare base model */
    void (*peft_free)(struct cp_model *m);
    const struct cp_prompt_hook *prompt; /* the active prompt-learning method (models/hook.h), or NULL */ /* set by the PEFT layer with m->peft: frees it (models/ never includes peft/) */
};

/* One forward + backward in training mode: the loss of the batch's targets summed and divided by
 * `norm` (the number of targets the optimizer step averages over), its gradient accumulated into
 * every parameter that has a grad buffer. Returns the summed loss and the target count.
 * `recompute` keeps only block inputs and recomputes the rest in the backward pass. */
cp_status cp_model_forward_backward(cp_model *m, const cp_batch *batch, double norm, int recompute, double *loss_sum,
                                    int64_t *n_targets);

/* Encoder-decoder models (cp_arch.encoder_decoder; models/seq2seq.c): the encoder over input_ids, the
 * decoder over decoder_input_ids (or labels shifted right) reading the encoder's states, the LM head
 * and the SEQ_2_SEQ_LM loss (labels (B,Td), no shift). cp_model_forward and cp_model_forward_backward
 * hand these the call. */
cp_status cp_seq2seq_forward(cp_model *m, const cp_batch *batch, cp_outputs *out);
cp_status cp_seq2seq_forward_backward(cp_model *m, const cp_batch *batch, double norm, int recompute, double *loss_sum,
                                      int64_t *n_targets);

/* Generation on an encoder-decoder: the encoder runs once (cp_seq2seq_encode), then each decoder step
 * (cp_seq2seq_step) runs the new decoder tokens with the self-attention cache `self` and the
 * cross-attention keys / values of every layer, computed from the encoder's states on the first step
 * and kept in cross_k / cross_v. */
typedef struct cp_seq2seq_cache {
    int64_t B, Te;
    float *enc;            /* (B,Te,C) the encoder's final states */
    int64_t *enc_mask;     /* (B,Te) its padding mask (a copy), or NULL */
    cp_kv_cache self;      /* the decoder's self-attention keys and values */
    float *cross_k, *cross_v; /* (L_dec, B·Te, D) */
    int cross_ready;
} cp_seq2seq_cache;

/* Sized for B rows of Te encoder positions and `capacity` decoder columns. */
cp_status cp_seq2seq_cache_init(const cp_model *m, cp_seq2seq_cache *c, int64_t B, int64_t Te, int64_t capacity);
void cp_seq2seq_cache_free(cp_seq2seq_cache *c);
/* The encoder over batch b (input_ids, attention_mask; b->B as the cache's B, b->T as its Te less the virtual
 * tokens a prompt-tuning / p-tuning adapter puts before the encoder's rows: cp_seq2seq_cache_init adds them, and
 * the room for a prefix-tuning adapter's key/value prefix in the self-attention cache). */
cp_status cp_seq2seq_encode(cp_model *m, const cp_batch *b, const cp_adapter_mix *mix, cp_seq2seq_cache *c);
/* One decoder step: dec (B,T) new decoder tokens (attention_mask over them, or NULL) after the cache's
 * columns; logits (B,V) of each row's last new token. The cache's columns grow by T. */
cp_status cp_seq2seq_step(cp_model *m, const cp_batch *dec, const cp_adapter_mix *mix, cp_seq2seq_cache *c, float *logits);

/* The run context of a call on m (models/run.h): the model's arena, its training mode, dropout seed
 * and prompt hook; no mixed-adapter batch. */
cp_run cp_model_run(cp_model *m);
/* The batch as the active prompt-learning method runs it (models/hook.h; the hook's begin runs here):
 * virtual input embeddings (n placeholder ids and mask ones before every row, run->n_virtual = n) or a
 * key/value prefix (run->n_prefix and its key mask; with a cache, the prefix into it on the first step).
 * Without a prompt hook, *out = *b. models/seq2seq.c runs the encoder's or the decoder's batch through it. */
cp_status cp_model_prompt_batch(cp_model *m, cp_run *run, const cp_batch *b, cp_kv_cache *kv, cp_batch *out);

/* Generation (src/generate/): one step of incremental decoding. The batch's T new tokens per row
 * (position_ids as generate() computes them; attention_mask (B,T) marks padding among the new
 * tokens) follow the cache's columns, and their keys and values are appended to it. `logits`
 * (B,V) receive the LM head of each row's last new token only; `hidden` (B,T,C), when non-NULL, the
 * final hidden states. */
cp_status cp_model_forward_cached(cp_model *m, const cp_batch *batch, cp_kv_cache *cache, float *logits, float *hidden);
/* The same without a cache: the whole sequence runs again and logits (B,V) are the last column's. */
cp_status cp_model_forward_last(cp_model *m, const cp_batch *batch, float *logits);
/* Both under a mixed-adapter batch (PEFT's adapter_names; mix->B == batch->B), or plain when mix is NULL. */
cp_status cp_model_forward_cached_mix(cp_model *m, const cp_batch *batch, const cp_adapter_mix *mix, cp_kv_cache *cache,
                                      float *logits, float *hidden);
cp_status cp_model_forward_last_mix(cp_model *m, const cp_batch *batch, const cp_adapter_mix *mix, float *logits);

/* Loading in two halves, for loaders that adjust the config in between (models/model_labels.c):
 * begin reads DIR/config.json and finds the architecture (no tree yet); end builds the tree for
 * m->task and, unless CP_LOAD_CONFIG_ONLY, binds the checkpoint. Both free m on failure. */
cp_status cp_model_begin_load(cp_model **out, const char *dir);
cp_status cp_model_end_load(cp_model *m, int flags, cp_model **out);

/* A model from a config.json text and a checkpoint already open (taken over, even on error): a
 * GGUF file's (convert/gguf_load.c). `name` (the file) stands for the directory in messages and as
 * cp_model's dir. flags and task_type as cp_model_load_task's; the binding rules are the directory's,
 * plus: a block-quantized tensor (CP_Q8_0 ... CP_Q4_K) bound to a matrix the products take is kept
 * as stored (cp_param.stored, stored_dtype the block format, NT rows), anything else dequantized to
 * f32 at load. */
cp_status cp_model_load_checkpoint(cp_model **out, const char *name, const char *config_json, cp_checkpoint *ckpt,
                                   int flags, const char *task_type);

/* Binds every parameter of m->root to checkpoint data (see model.c for the rules). */
cp_status cp_model_bind_weights(cp_model *m);
/* Ties `param` to `target` (same data, counted once), as tie_word_embeddings does. */
void cp_param_tie(cp_param *param, cp_param *target);

#endif
