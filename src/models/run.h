/*
 * run.h — the run context: the per-call state of one forward (or forward + backward), passed down
 * every call that needs it and never written onto the module tree.
 *
 * A model-level entry point (cp_model_forward, the training step, a generation step) makes one on
 * its stack from the model's state, and the blocks, projections and PEFT hooks read it:
 *   - arena:     where activations and scratch come from (the model's);
 *   - training:  dropout applies (PEFT's lora_dropout, later methods' dropouts);
 *   - model_dropout: the model's own Dropout modules apply too (training, and not switched off:
 *                transformers' train() mode; cp_run_dropout below gives each site its mask);
 *   - seed:      this step's dropout seed — each hook and each site derives its own masks from it,
 *                so the backward pass (and a recomputed forward) regenerates the forward's masks;
 *   - batch_row0, batch_rows: this call's batch rows are rows batch_row0 .. + batch_rows − 1 of the
 *                global batch (a data-parallel rank's shard; 0 in one process): every dropout site
 *                over the batch keys its masks by the global rows (nn/dropout.h), so N ranks draw
 *                the masks one process draws for the whole batch;
 *   - mix:       a mixed-adapter batch (PEFT's `adapter_names`): batch row b runs adapter names[b];
 *   - prompt:    the prompt-learning method in use (virtual tokens before every row), if any, how
 *                many virtual positions this batch has (n_virtual, n_prefix) and the hook's state;
 *   - cross:     an encoder-decoder's decoder call: the encoder's output its cross-attention reads;
 *   - quant_act8: inference only (never with training): products with a quantized weight and few rows
 *                may round their input to 8 bits per block and sum integer products, as llama.cpp
 *                does (kernels/quant_dot.h): faster decoding, slightly different logits.
 */
#ifndef CP_MODELS_RUN_H
#define CP_MODELS_RUN_H

#include <stdint.h>

#include "core/arena.h"
#include "nn/dropout.h"
#include "nn/module.h"

/* A mixed-adapter batch: the N rows of a projection are B batch rows of N/B tokens each, and batch
 * row b runs adapter names[b] alone ("__base__", or a name a module does not carry: none). Inference
 * only: no dropout, no backward. */
typedef struct cp_adapter_mix {
    int64_t B;
    const char *const *names; /* [B] */
} cp_adapter_mix;

struct cp_prompt_hook; /* models/hook.h */

/* What a decoder's cross-attention reads (encoder-decoder models, models/seq2seq.c): the encoder's
 * final hidden states and its padding mask. In training, d_states (when non-NULL) collects the
 * gradient of the states: every decoder block adds its cross-attention's share, and the encoder's
 * backward starts from the sum. */
typedef struct cp_cross_states {
    const float *states;  /* (B,Te,C) */
    const int64_t *mask;  /* (B,Te) 1 = real token, 0 = padding; NULL = all ones */
    int64_t Te;           /* encoder positions per row */
    float *d_states;      /* (B,Te,C) += d(loss)/d(states); NULL: the encoder does not train */
    /* generation: every decoder layer's cross-attention keys and values (L, B·Te, D), made on the
     * first step (cached = 0) and read on the later ones (cached = 1); NULL: computed per call */
    float *cache_k, *cache_v;
    int cached;
} cp_cross_states;

/* Layer l's cross-attention keys and values (each n = B·Te·D floats): the generation cache's slice
 * when cs has one, else the call's own buffers own_k / own_v. */
static inline void cp_cross_kv(const cp_cross_states *cs, int64_t l, int64_t n, float *own_k, float *own_v, float **k,
                               float **v) {
    *k = cs->cache_k ? cs->cache_k + l * n : own_k;
    *v = cs->cache_v ? cs->cache_v + l * n : own_v;
}

typedef struct cp_run {
    cp_arena *arena;
    int training;
    int model_dropout;  /* the model's own dropout applies (implies training) */
    uint64_t seed;
    int64_t batch_row0, batch_rows; /* the call's rows in the global batch (dropout keys); batch_rows 0: unknown */
    const cp_adapter_mix *mix; /* NULL: every row runs the active adapters */
    const struct cp_prompt_hook *prompt; /* the active prompt-learning method, or NULL */
    int64_t n_virtual;                 /* prompt tuning: the first n_virtual positions of every row are the hook's */
    int64_t n_prefix;                  /* prefix tuning: key/value columns before the batch's in every layer */
    const int64_t *prefix_key_mask;    /* (B, n_prefix + T) their key mask, or NULL: all ones */
    void *prompt_state;                /* the prompt hook's state for this call (its begin), or NULL */
    const cp_cross_states *cross;      /* a decoder's encoder states (encoder-decoder models), or NULL */
    int quant_act8;                    /* 8-bit activations for quantized weights (inference only, see above) */
} cp_run;

/* The model's Dropout module `drop` as this run applies it the call-th time in the forward (0 for its
 * first, 1 for a second application of the same module, as RoBERTa's classification head makes): p =
 * drop->p and the site key of its path under run->seed when run->model_dropout, else the identity
 * (p = 0). drop may be NULL (no dropout there). */
cp_dropout cp_run_dropout(const cp_run *run, const cp_module *drop);
cp_dropout cp_run_dropout_call(const cp_run *run, const cp_module *drop, int call);
/* A dropout that is a probability and no module (LlamaAttention's attention_dropout): the site is
 * `name` under the module `owner` that applies it. */
cp_dropout cp_run_dropout_p(const cp_run *run, const cp_module *owner, const char *name, double p);
/* A site over the call's batch rows, keyed from the run's seed and `key`: the global batch's masks
 * (LoRA's dropout, peft/lora.c). */
cp_dropout cp_run_batch_dropout(const cp_run *run, double p, uint64_t key);

#endif
