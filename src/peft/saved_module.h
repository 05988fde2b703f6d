/*
 * saved_module.h — PEFT's modules_to_save (ModulesToSaveWrapper), for every method: a module whose
 * name matches an entry of the config's modules_to_save gets a trainable copy of its parameters per
 * adapter; the copy of the first active adapter sits in the leaves' weight / bias slots, so the
 * base forward and backward compute with it.
 */
#ifndef CP_PEFT_SAVED_MODULE_H
#define CP_PEFT_SAVED_MODULE_H

#include "core/error.h"
#include "models/hook.h"
#include "models/model.h"
#include "nn/module.h"
#include "peft/method.h"

/* The parameters of a wrapped subtree: the original and one copy per adapter. */
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
/* print() of a module wrapped for modules_to_save, as ModulesToSaveWrapper prints. */
char *cp_saved_repr(const cp_hook *h, const cp_module *m);

/* Wraps every module cfg->modules_to_save names (PEFT's suffix rule) with a copy for `adapter`
 * (the wrapper made on first use, listed in the model's PEFT state). */
cp_status cp_saved_add(cp_model *m, const cp_peft_config *cfg, const char *adapter);
/* Removes `adapter`'s copies (the original goes back in place where it was in use). `only_last`:
 * only where it is the newest copy (undoing a failed cp_saved_add). */
void cp_saved_remove(cp_model *m, const char *adapter, int only_last);
/* Puts each wrapper's copy of the first of `active` that has one in place (the original when
 * `disabled` or none). */
void cp_saved_refresh(cp_model *m, char *const *active, int n_active, int disabled);
/* Restores the originals and frees every wrapper of the model. */
void cp_saved_free_all(cp_model *m);

/* Whether a modules_to_save wrapper holds this slot of the leaf (its original and copies). */
int cp_saved_wraps_slot(const cp_model *m, const cp_module *mod, int is_bias);
/* The parameter in a leaf's weight (is_bias 0) or bias slot before a modules_to_save copy took its
 * place (the slot's own parameter when the leaf is not wrapped). */
cp_param *cp_peft_original_param(const cp_model *m, const cp_module *mod, int is_bias);
/* A leaf whose parameters a modules_to_save wrapper above it has taken over (PEFT's model names
 * them under the wrapper, "<wrapper>.original_module.<p>", not under the leaf's own path). */
int cp_saved_inside_wrapper(const cp_model *m, const cp_module *mod);

#endif
