/*
 * lora.h — LoRA on one module: the adapters attached to a Linear, Conv1D or Embedding leaf, their
 * side path in the forward pass, their initialisation, and merging them into the base weight.
 *
 *   Linear / Conv1D:  y = base(x) + Σ_active s · B(A(dropout(x)))     A (r, in), B (out, r)
 *   Embedding:        y = E[ids] + Σ_active s · (Aᵀ[ids]) · Bᵀ          A (r, V),  B (d, r)
 *
 * s = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA. The adapters stay unmerged while
 * training (W + s·BA is never materialised per step); merging writes s·BA (transposed for Conv1D
 * and Embedding) into the base weight, unmerging subtracts it again. See reference/peft.md §3.
 */
#ifndef CP_PEFT_LORA_H
#define CP_PEFT_LORA_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/hook.h"
#include "models/model.h"
#include "models/run.h"
#include "nn/module.h"
#include "peft/lora_config.h"
#include "peft/method.h"

/* The LoRA method's table (lora_method.c), registered in methods.c. */
extern const cp_peft_method cp_lora_method;

typedef struct cp_lora_adapter {
    char *name;          /* the adapter's name ("default" unless named) */
    int64_t r;
    double alpha, scaling;
    double dropout;
    cp_param *A, *B;     /* "lora_A" / "lora_B" (Embedding: "lora_embedding_A" / "lora_embedding_B") */
    int active;          /* part of the active set */
    int merged;          /* s·BA is currently added into the base weight */
    uint64_t dropout_stream; /* this adapter's dropout key, mixed with each run's seed (masks by global row: models/run.h) */
} cp_lora_adapter;

/* The LoRA hook of one module (PEFT's lora.Linear / lora.Embedding). Under a mixed-adapter batch
 * (run->mix), batch row b runs adapter names[b] alone, whatever the active set; merged adapters must
 * be unmerged first (the caller checks, as PEFT does). */
typedef struct cp_lora_layer {
    cp_hook hook;        /* first: the module's hook list links through it */
    cp_lora_adapter **adapters; /* in the order they were added */
    int n, cap;
    int fan_in_fan_out;  /* Conv1D: the base weight is stored [in, out] */
    int disabled;        /* disable_adapter(): base output only (also over a mixed batch, as PEFT) */
} cp_lora_layer;

extern const cp_hook_ops cp_lora_hook_ops;
/* print() of a module with LoRA adapters, as lora.Linear / lora.Embedding print (lora_repr.c). */
char *cp_lora_repr(const cp_hook *h, const cp_module *m);

/* The LoRA layer on m, or NULL. */
cp_lora_layer *cp_lora_layer_of(const cp_module *m);

/* Adds adapter `name` to module m (Linear, Conv1D or Embedding) with rank r and scaling, its
 * parameters named as PEFT names them in memory ("<path>.lora_A.<name>.weight") and initialised
 * per `init` from `rng`. */
cp_status cp_lora_add(cp_module *m, const char *name, int64_t r, double alpha, int use_rslora, double dropout,
                      cp_lora_init init, cp_rng *rng, cp_lora_adapter **out);
cp_lora_adapter *cp_lora_find(const cp_module *m, const char *name);
/* Removes adapter `name` from m (it must not be merged); frees the layer when it was the last. */
void cp_lora_remove(cp_module *m, const char *name);

/* The side path runs through the hook (cp_lora_hook_ops, called by models/proj.c): out (N,OC) +=
 * Σ_active s · (dropout(x)·Aᵀ)·Bᵀ for Linear/Conv1D; for an Embedding, ids (N) select rows of Aᵀ.
 * Its backward gives the A and B gradients and the adapters' share of dX; the dropout mask (training
 * runs) comes from the run's seed and the adapter's stream, so the backward regenerates it. */

/* ΔW for one adapter in the layout of the base weight (Linear [out,in]; Conv1D [in,out];
 * Embedding [V,d]), scaled by s·weight: dst += weight · ΔW. */
void cp_lora_delta_add(const cp_module *m, const cp_lora_adapter *a, float *dst, float weight);
/* W += s·BA (merge) or W -= s·BA (unmerge). The base weight must be writable (see
 * cp_param_make_writable). */
void cp_lora_merge(cp_module *m, cp_lora_adapter *a);
void cp_lora_unmerge(cp_module *m, cp_lora_adapter *a);

/* ---- LoRA shorthands over the method-generic model API (peft_model.h, adapter_io.h) ------------ */

/* get_peft_model / add_adapter with a LoRA config: cp_peft_add(m, name, &cfg->base, ...). */
cp_status cp_peft_add_adapter(cp_model *m, const char *name, const cp_lora_config *cfg, cp_rng *rng, int activate,
                              int trainable);
/* The header check of DIR/adapter_model.safetensors against a LoRA config: cp_adapter_check_config. */
cp_status cp_adapter_check_header(cp_model *m, const cp_lora_config *cfg, const char *dir);
/* add_weighted_adapter for LoRA adapters (lora_weighted.c): the method's add_weighted. */
cp_status cp_lora_add_weighted(cp_model *m, const char *const *names, const double *weights, int n, const char *new_name,
                               cp_combination combination);

#endif
