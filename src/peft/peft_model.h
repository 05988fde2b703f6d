/*
 * peft_model.h — PEFT on a loaded model: named adapters (PEFT's multi-adapter support), the
 * active set, disabling, deleting, modules_to_save copies, bias modes, trainable-parameter
 * counting and the PeftModel repr (peft_repr.c). A cp_model with no adapter is the plain base model.
 */
#ifndef CP_PEFT_PEFT_MODEL_H
#define CP_PEFT_PEFT_MODEL_H

#include "core/error.h"
#include "core/rng.h"
#include "models/model.h"
#include "peft/lora.h"
#include "peft/lora_config.h"

/* One adapter of the model, by name, with the config it was created from. */
typedef struct {
    char *name;
    cp_lora_config config;
    int trainable;   /* its parameters require grad (get_peft_model / is_trainable), else inference mode */
} cp_peft_adapter;

/* modules_to_save: the parameters of a wrapped subtree, the original and one copy per adapter. */
typedef struct {
    cp_module *module;   /* the leaf owning the parameter */
    int is_bias;         /* slot: weight or bias */
    char *local_name;    /* parameter name relative to the wrapper ("weight", "0.bias", ...) */
    cp_param *original;
    cp_param **copies;   /* [n_adapters] aligned with cp_saved_module.adapters */
} cp_saved_param;

typedef struct cp_saved_module {
    cp_hook hook;        /* first: on the wrapper's hook list (prints as ModulesToSaveWrapper) */
    cp_module *wrapper;  /* the module whose name matched modules_to_save */
    char **adapters;
    int n_adapters;
    cp_saved_param *params;
    int n_params;
    int active;          /* index of the copy in use, or -1: the original */
} cp_saved_module;

extern const cp_hook_ops cp_saved_hook_ops;
/* The modules_to_save wrapper on m, or NULL. */
cp_saved_module *cp_saved_of(const cp_module *m);

typedef struct cp_peft_state {
    cp_peft_adapter *adapters;
    int n, cap;
    char **active;       /* the active adapters, in order */
    int n_active;
    int disabled;
    cp_saved_module **saved;
    int n_saved;
    cp_lora_bias bias_mode;  /* the one adapter allowed a bias mode other than none sets it */
} cp_peft_state;

/* get_peft_model / add_adapter: injects adapter `name` per cfg (targets, ranks, init from the
 * rng). The first adapter becomes active (as get_peft_model does); later ones are added inactive
 * (add_adapter) unless `activate`. */
cp_status cp_peft_add_adapter(cp_model *m, const char *name, const cp_lora_config *cfg, cp_rng *rng, int activate,
                              int trainable);
cp_peft_adapter *cp_peft_find_adapter(const cp_model *m, const char *name);
/* The LoRA layers of one adapter, in tree order (caller frees the array). */
cp_status cp_peft_adapter_modules(const cp_model *m, const char *name, cp_module ***out, int *n);
/* Activates exactly these adapters (in order); modules_to_save copies follow the first. */
cp_status cp_peft_set_active(cp_model *m, const char *const *names, int n);
void cp_peft_set_disabled(cp_model *m, int disabled);
cp_status cp_peft_delete_adapter(cp_model *m, const char *name);
/* Copies a parameter's data into an owned, writable buffer (mapped weights are read-only),
 * repointing every parameter tied to it. */
cp_status cp_param_make_writable(cp_model *m, cp_param *p);
/* Merges the active adapters into the base weights (kept for unmerging). */
cp_status cp_peft_merge(cp_model *m);
cp_status cp_peft_unmerge(cp_model *m);
/* (trainable, all) as PEFT's get_nb_trainable_parameters counts them. */
void cp_peft_count(const cp_model *m, int64_t *trainable, int64_t *all);
/* The parameters adapter `name` holds: its LoRA A and B, its modules_to_save copies and the biases
 * its bias mode trains — PEFT's trainable count when that adapter is trainable and active
 * (is_trainable=True), whatever this model's trainable flags say. 0 for an unknown name. */
int64_t cp_peft_adapter_num_params(const cp_model *m, const char *name);
/* That count as a line beside print_trainable_parameters()'s, in the same number style:
 * "adapter params: 4608 (the adapter's own parameters: trainable when loaded with is_trainable=True)". */
char *cp_peft_adapter_params_line(const cp_model *m, const char *name, cp_peft_line_style style);
/* The parameter in a leaf's weight (is_bias 0) or bias slot before a modules_to_save copy took its
 * place (the slot's own parameter when the leaf is not wrapped). */
cp_param *cp_peft_original_param(const cp_model *m, const cp_module *mod, int is_bias);
/* Gives every parameter that trains a zeroed gradient buffer and lists them (tree order): the
 * active trainable adapters' A and B, the biases the bias mode trains (made writable), and the
 * active modules_to_save copies. *out is allocated (free with cp_free). */
cp_status cp_peft_trainable_params(cp_model *m, cp_param ***out, int *n);
/* Training mode on LoRA layers (lora_dropout applies) or off. */
void cp_peft_set_training(cp_model *m, int training);
/* Seeds each active adapter's dropout mask for the next forward/backward (distinct per module). */
void cp_peft_seed_dropout(cp_model *m, uint64_t seed);
void cp_peft_free(cp_model *m);
/* print() of a module wrapped for modules_to_save, as ModulesToSaveWrapper prints (peft_repr.c). */
char *cp_saved_repr(const cp_hook *h, const cp_module *m);

#endif
