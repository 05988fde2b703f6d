/*
 * peft_model.h — PEFT on a loaded model, for every method: named adapters (PEFT's multi-adapter
 * support), the active set, disabling, deleting, merging, modules_to_save copies (saved_module.h),
 * bias modes, trainable-parameter counting and the PeftModel repr (peft_repr.c). Each adapter's
 * config says its method (method.h), and everything method-specific goes through that table. A
 * cp_model with no adapter is the plain base model.
 */
#ifndef CP_PEFT_PEFT_MODEL_H
#define CP_PEFT_PEFT_MODEL_H

#include "core/error.h"
#include "core/rng.h"
#include "models/model.h"
#include "peft/method.h"
#include "peft/saved_module.h"

/* One adapter of the model, by name, with the config it was created from. */
typedef struct {
    char *name;
    cp_peft_config *config; /* its method's config (config->method), as PEFT stores it after injecting */
    int trainable;          /* its parameters require grad (get_peft_model / is_trainable), else inference mode */
} cp_peft_adapter;

typedef struct cp_peft_state {
    cp_peft_adapter *adapters;
    int n, cap;
    char **active;       /* the active adapters, in order */
    int n_active;
    int disabled;
    cp_saved_module **saved;
    int n_saved;
    cp_peft_bias bias_mode;              /* the one adapter allowed a bias mode other than none sets it ... */
    const cp_peft_method *bias_method;   /* ... with its method (whose layers "<method>_only" means) */
} cp_peft_state;

/* get_peft_model / add_adapter: injects adapter `name` per cfg (its method's targets and init from
 * the rng; cfg is copied). The first adapter becomes active (as get_peft_model does); later ones are
 * added inactive (add_adapter) unless `activate`. On failure nothing of the adapter is left. */
cp_status cp_peft_add(cp_model *m, const char *name, const cp_peft_config *cfg, cp_rng *rng, int activate, int trainable);
cp_peft_adapter *cp_peft_find_adapter(const cp_model *m, const char *name);
/* The modules carrying adapter `name`, in tree order (caller frees the array). */
cp_status cp_peft_adapter_modules(const cp_model *m, const char *name, cp_module ***out, int *n);
/* Whether some module carries adapter `name` / some adapter is merged (PEFT's checks before a
 * mixed-adapter batch). */
int cp_peft_carries(const cp_model *m, const char *name);
int cp_peft_has_merged(const cp_model *m);
/* Multiplies adapter `name`'s contribution by `factor` everywhere (the CLI's DIR:NAME:WEIGHT). */
cp_status cp_peft_scale_adapter(cp_model *m, const char *name, double factor);
/* Activates exactly these adapters (in order); modules_to_save copies follow the first. */
cp_status cp_peft_set_active(cp_model *m, const char *const *names, int n);
void cp_peft_set_disabled(cp_model *m, int disabled);
cp_status cp_peft_delete_adapter(cp_model *m, const char *name);
/* Copies a parameter's data into an owned, writable buffer (mapped weights are read-only),
 * repointing every parameter tied to it. */
cp_status cp_param_make_writable(cp_model *m, cp_param *p);
/* models/quantize.h's cp_model_quantize_embeddings for a PEFT model: the frozen token embedding and
 * LM head quantized when training starts (not the trained parameters), and the parameters a
 * modules_to_save copy has displaced from their slot re-tied to the values that replaced theirs. */
cp_status cp_peft_quantize_embeddings(cp_model *m, cp_param *const *trained, int n_trained, int64_t *saved_bytes);
/* Merges the active adapters into the base weights (kept for unmerging). */
cp_status cp_peft_merge(cp_model *m);
cp_status cp_peft_unmerge(cp_model *m);
/* (trainable, all) as PEFT's get_nb_trainable_parameters counts them. */
void cp_peft_count(const cp_model *m, int64_t *trainable, int64_t *all);
/* The parameters adapter `name` holds: its method's tensors, its modules_to_save copies and the
 * biases its bias mode trains — PEFT's trainable count when that adapter is trainable and active
 * (is_trainable=True), whatever this model's trainable flags say. 0 for an unknown name. */
int64_t cp_peft_adapter_num_params(const cp_model *m, const char *name);
/* That count as a line beside print_trainable_parameters()'s, in the same number style:
 * "adapter params: 4608 (the adapter's own parameters: trainable when loaded with is_trainable=True)". */
char *cp_peft_adapter_params_line(const cp_model *m, const char *name, cp_peft_line_style style);
/* Whether the bias mode of the model's adapters trains the bias of `mod`. */
int cp_peft_bias_trainable(const cp_model *m, const cp_module *mod);
/* Gives every parameter that trains a zeroed gradient buffer and lists them (tree order): the
 * active trainable adapters' tensors, the biases the bias mode trains (made writable), and the
 * active modules_to_save copies. *out is allocated (free with cp_free). */
cp_status cp_peft_trainable_params(cp_model *m, cp_param ***out, int *n);
/* Training mode (dropouts apply) or off. */
void cp_peft_set_training(cp_model *m, int training);
/* The dropout seed of the next training forward/backward (each adapter mixes it with its own stream,
 * so masks differ per module and adapter; the backward regenerates them). */
void cp_peft_seed_dropout(cp_model *m, uint64_t seed);
void cp_peft_free(cp_model *m);

/* For each layer on `mod` of a method of m's adapters, in attach order: fn(mod, method, ctx) until
 * it returns non-zero (returned). */
typedef int (*cp_peft_layer_fn)(cp_module *mod, const cp_peft_method *method, void *ctx);
int cp_peft_each_layer(const cp_model *m, cp_module *mod, cp_peft_layer_fn fn, void *ctx);
/* Whether `mod` carries adapter `name` of `method`. */
int cp_peft_method_carries(const cp_peft_method *method, const cp_module *mod, const char *name);
/* Whether some method's layer wraps `mod` (PEFT then names its weights "<path>.base_layer.*"). */
int cp_peft_is_tuner_layer(const cp_model *m, const cp_module *mod);

#endif
