/*
 * ia3.h — (IA)³ (PEFT's IA3: "Infused Adapter by Inhibiting and Amplifying Inner Activations") on one
 * module, its config (IA3Config) and the method's table.
 *
 * An (IA)³ adapter is one learned vector per adapted Linear / Conv1D, ia3_l, that scales features:
 *
 *   attention targets:     y = base(x) ∘ l          ia3_l (out, 1)   (the bias is scaled too)
 *   feed-forward modules:  y = base(x ∘ l)          ia3_l (1, in)
 *
 * Several active adapters multiply their vectors (PEFT's ia3_scaling *= ia3_l). The hook is a scaling
 * hook (models/hook.h's linear_scale): models/proj.c applies the factors around the base projection
 * and hands back their gradients. Initialised to ones (init_ia3_weights=true: a no-op adapter), or
 * N(0, 1) as PEFT's torch.randn (false). Merging multiplies the base weight's rows (attention) or
 * columns (feed-forward; transposed for Conv1D) and, for attention targets, the bias by l; unmerging
 * divides by l + 1e-8, as PEFT does (inexact, as PEFT warns). Which modules are feed-forward is fixed
 * by the first adapter a module gets: later adapters follow it (PEFT's IA3Layer.is_feedforward).
 */
#ifndef CP_PEFT_IA3_H
#define CP_PEFT_IA3_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/rng.h"
#include "models/hook.h"
#include "nn/module.h"
#include "peft/method.h"
#include "peft/targets.h"

/* The method's table (ia3_method.c), registered in methods.c. */
extern const cp_peft_method cp_ia3_method;

/* ---- IA3Config (ia3_config.c) ---------------------------------------------------------------- */

typedef struct cp_ia3_config {
    cp_peft_config base;              /* PeftConfig: task_type, modules_to_save, ... */
    cp_targets_kind target_kind;      /* null (the model type's default), a list, a regex, "all-linear" */
    char **target_modules;            /* CP_TARGETS_LIST */
    int n_target_modules;
    char *target_regex;               /* CP_TARGETS_REGEX */
    char **exclude_modules;           /* list form, or NULL */
    int n_exclude_modules;
    char *exclude_regex;              /* regex form, or NULL */
    cp_targets_kind feedforward_kind; /* CP_TARGETS_DEFAULT (null), _LIST or _REGEX */
    char **feedforward_modules;       /* CP_TARGETS_LIST: a target is feed-forward when its name ends with one */
    int n_feedforward_modules;
    char *feedforward_regex;          /* CP_TARGETS_REGEX: ... when the regex fully matches its name */
    int fan_in_fan_out;
    int init_ia3_weights;             /* true: ones; false: N(0, 1) */
} cp_ia3_config;

/* IA3Config(): the defaults (targets and feed-forward modules from the model type's tables). */
cp_peft_config *cp_ia3_config_new(void);
/* adapter_config.json's object (peft_type "IA3"); errors name `path` and the field. PEFT's check
 * that feedforward_modules ⊆ target_modules when both are lists. */
cp_status cp_ia3_config_from_json(const cJSON *root, const char *path, cp_peft_config **out);
/* The file text exactly as PEFT's save_pretrained writes it (lists sorted: PEFT writes set order). */
char *cp_ia3_config_to_json(const cp_peft_config *cfg);
cp_peft_config *cp_ia3_config_copy(const cp_peft_config *cfg);
void cp_ia3_config_free(cp_peft_config *cfg);
/* feedforward_modules ⊆ target_modules when both are lists; `where` names the source in the error. */
cp_status cp_ia3_config_validate(const cp_ia3_config *cfg, const char *where);
/* PEFT's TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / _FEEDFORWARD_MODULES_MAPPING for a
 * model_type (NULL-terminated), or NULL when PEFT has none. */
const char *const *cp_ia3_default_targets(const char *model_type);
const char *const *cp_ia3_default_feedforward(const char *model_type);
/* The targeting fields as the shared matcher takes them (borrowed from cfg). */
void cp_ia3_target_spec(const cp_ia3_config *cfg, cp_target_spec *out);
/* Whether the module at `path` is feed-forward per cfg (a resolved config: feedforward_modules not
 * null): a list entry it ends with (plain suffix, as PEFT's str.endswith), or a regex it fully matches. */
cp_status cp_ia3_is_feedforward(const cp_ia3_config *cfg, const char *path, int *out);

/* ---- the layer on one module (ia3.c) ----------------------------------------------------------- */

typedef struct cp_ia3_adapter {
    char *name;
    cp_param *l;   /* "<path>.ia3_l.<name>": (out, 1), or (1, in) on a feed-forward module */
    int active;    /* position in the active set + 1 (0: inactive), for PEFT's product order */
    int merged;
} cp_ia3_adapter;

/* PEFT's ia3.Linear around a Linear / Conv1D. */
typedef struct cp_ia3_layer {
    cp_hook hook;               /* first: the module's hook list links through it */
    cp_ia3_adapter **adapters;  /* in the order they were added */
    int n, cap;
    int is_feedforward;         /* scales the input (1, in) instead of the output (out, 1) */
    int fan_in_fan_out;         /* Conv1D: the weight is stored [in, out] */
    int disabled;
} cp_ia3_layer;

extern const cp_hook_ops cp_ia3_hook_ops;

cp_ia3_layer *cp_ia3_layer_of(const cp_module *m);
cp_ia3_adapter *cp_ia3_find(const cp_module *m, const char *name);
/* Adds adapter `name` on m (Linear or Conv1D); is_feedforward applies when m has no IA3 layer yet
 * (else the layer's). init: ones, or N(0, 1) from rng. */
cp_status cp_ia3_add(cp_module *m, const char *name, int is_feedforward, int fan_in_fan_out, int init_ones, cp_rng *rng);
/* Removes adapter `name` from m (not merged); frees the layer with the last adapter. */
void cp_ia3_remove(cp_module *m, const char *name);
/* W ∘= l (and b ∘= l for attention targets) / W ⊘= (l + 1e-8): the base weight and bias must be
 * writable. No-ops when already (un)merged. */
void cp_ia3_merge(cp_module *m, cp_ia3_adapter *a);
void cp_ia3_unmerge(cp_module *m, cp_ia3_adapter *a);
/* print() of the wrapped module as PEFT prints ia3.Linear (ia3_method.c). */
char *cp_ia3_repr(const cp_hook *h, const cp_module *m);

#endif
