/*
 * method.h — a PEFT method (LoRA, prompt tuning, p-tuning, prefix tuning; IA3, DoRA next) as one table of
 * functions, and the PeftConfig fields every method's config shares.
 *
 * The model-level code (peft_model.c, peft_count.c, saved_module.c, adapter_io.c, api.c,
 * peft_repr.c, weighted.c) never names a method (test_peft_method.c checks): it reads
 * adapter_config.json's peft_type, finds the method in the registry (methods.c) and goes through its
 * table for everything else. Adding a method = its own files (src/peft/<m>*.c: config, compute hook,
 * this table) + one registration line in methods.c. LoRA is the worked example: lora.c (the hook),
 * lora_config.c, lora_method.c (this table), lora_repr.c, lora_weighted.c.
 *
 * Configs. A method's config struct begins with a cp_peft_config (PeftConfig: task_type,
 * modules_to_save, ...; C's "first member" inheritance), so a `cp_peft_config *` reaches both the
 * shared fields and, through cfg->method, the method that owns the rest. peft_config.c reads and
 * writes the shared fields for every method (cp_peft_config_read_common / _write_common / ...).
 *
 * Adapters on modules. A method attaches one hook per module (models/hook.h; cp_peft_method.hook
 * identifies it and is the method's alone), holding that module's adapters of this method by name,
 * in the order they were added; the hook goes when its last adapter does. The hook computes
 * (forward and backward through models/proj.c, print(model) through its repr) from the state
 * set_state gives it and the run context; the table below manages it. The model code finds a
 * method's layers by its hook among the methods of the model's adapters, so a method needs no
 * registration to be used from C (cp_peft_add with its config), only to be read from a file.
 * Prompt-learning methods attach to the input embedding the same way; their hook is model-level
 * (`prompt` below).
 *
 * The table. Every function is required unless marked "NULL:" with what a NULL entry means.
 * `mod` is a module of the model's tree, `name` an adapter name, `cfg` a config of this method.
 *
 *   peft_type, tuner_class   adapter_config.json's "peft_type" ("LORA") and the class PEFT wraps the
 *                            model in (print(model)'s "LoraModel")
 *   hook                     the hook ops this method attaches (how its layers are found on a module)
 *
 *  config
 *   config_new               a config with the method's defaults (as PEFT's <Method>Config())
 *   config_from_json         parses adapter_config.json's object (peft_type already checked to be this
 *                            method's); errors name `path` and the field. Shared fields go through
 *                            cp_peft_config_read_common
 *   config_to_json           the file text exactly as PEFT's save_pretrained writes it (shared fields
 *                            through cp_peft_config_write_common)
 *   config_copy / config_free  deep copy (a new config) / free of one from config_new, _from_json or
 *                            _copy (shared fields: cp_peft_config_copy_common / _free_common)
 *
 *  injecting (get_peft_model / add_adapter / load_adapter)
 *   check                    what PEFT refuses before injecting, given the model and its adapters
 *                            (validation of the config, method-level rules). NULL: nothing to check
 *   targets                  the modules `cfg` adapts, in tree order (*out allocated, cp_free); the
 *                            error when none matches is PEFT's. Methods with target_modules fill a
 *                            cp_target_spec and call cp_find_targets (targets.h: PEFT's BaseTuner
 *                            matching, exclude_modules, layers_to_transform, modules_to_save)
 *   resolve                  rewrites `cfg` (the adapter's own copy) as PEFT stores it after injecting
 *                            (LoRA: target_modules as matched). Called after `targets`. NULL: as given
 *   attach                   adds adapter `name` on `mod` (one of `targets`), initialised from `rng`
 *                            as PEFT initialises it; may adjust `cfg` as PEFT does per module (LoRA's
 *                            fan_in_fan_out). Creates the module's hook on first use
 *   detach                   removes adapter `name` from `mod` if it is there (never merged: callers
 *                            check); frees the hook with the last adapter
 *   adapter_at               the i-th adapter name on `mod` (order added), NULL past the last or
 *                            when `mod` carries none of this method
 *   set_state                the active set (names[0..n), in order) and the disabled flag, for `mod`'s
 *                            adapters: what the hook's forward runs (called after every change of
 *                            the set, for every module carrying the method)
 *
 *  tensors (training, counting, adapter files)
 *   tensors                  adapter `name`'s parameters on `mod` into out[] (at most
 *                            CP_PEFT_MAX_TENSORS), in the order PEFT registers them, each with its
 *                            state-dict key under the module as PEFT saves it, adapter name removed
 *                            ("lora_A.weight"); returns the count (0: not there). These are what
 *                            trains, counts and is saved / loaded for the adapter on this module
 *   plan                     the same list before anything is allocated, from `cfg` alone (as `resolve`
 *                            leaves it, the config `attach` gets): keys and
 *                            shapes (param NULL), and which dimension a config field sets, so a file
 *                            whose tensors do not fit is refused from its header ("r = 3 in
 *                            adapter_config.json makes it [3, 32]")
 *   bias                     the config's bias mode: which base biases train and are saved with it
 *                            (all, or those of modules carrying this method). NULL: none
 *   embedding_targeted       whether the config targets an embedding layer by name (PEFT's
 *                            save_embedding_layers="auto" then saves their base weights).
 *                            NULL: never
 *
 *  merging (cp_peft_merge merges the active adapters in attach order, unmerge goes in reverse)
 *   merged                   adapter `name` (NULL: any adapter) on `mod` is merged into the base
 *                            weight. NULL: the method never merges (and merge / unmerge are NULL)
 *   merge / unmerge          adds / subtracts the adapter's delta into `mod`'s base weight (or scales it:
 *                            IA3, whose attention targets scale the bias too), which the caller has made
 *                            writable with the bias; a no-op when already (un)merged
 *
 *  extras (NULL: not supported; the caller reports it)
 *   scale                    multiplies adapter `name`'s contribution on `mod` by `factor` (the CLI's
 *                            DIR:NAME:WEIGHT)
 *   add_weighted             PEFT's add_weighted_adapter over adapters of this method
 *
 *  prompt learning (NULL for methods that adapt modules)
 *   prompt                   PEFT's PromptLearningConfig methods (prompt tuning, p-tuning, prefix
 *                            tuning: prompt_method.c) keep their state on the PeftModel, not in a
 *                            module: such a method targets one module, the input word embeddings
 *                            (PeftModel.word_embeddings), and its hook there holds every adapter's
 *                            prompt encoder by name. The model runs the active one through a
 *                            models/hook.h cp_prompt_hook (cp_prompt_learning.model_hook, which the
 *                            PEFT state puts in m->prompt), `tensors` are the encoder's parameters
 *                            (what trains and counts, keys relative to prompt_encoder.<name>), and
 *                            the adapter file holds one tensor, "prompt_embeddings": the encoder's
 *                            output (saved_embeddings, checked by check_saved, loaded into an
 *                            inference-mode adapter's table through loaded_embeddings). Adapters of
 *                            a prompt method mix with no other peft_type and are active one at a
 *                            time (PEFT's rules). PeftModel's repr has no tuner class (tuner_class
 *                            NULL): the base model, then `repr`'s lines.
 */
#ifndef CP_PEFT_METHOD_H
#define CP_PEFT_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/rng.h"
#include "models/hook.h"
#include "models/model.h"
#include "nn/module.h"

/* The PEFT release whose files cpeft writes. PEFT fills a missing (or null) peft_version with its own
 * version when it builds a config, so an adapter made from a config without one says "0.21.2". */
#define CP_PEFT_VERSION "0.21.2"

/* PeftConfig: the fields every method's config has, first in each method's config struct. Spelled
 * as a macro so that a method can also offer them by name at top level (cp_lora_config: an anonymous
 * union of this struct and these fields; a new method just starts with `cp_peft_config base;`). */
#define CP_PEFT_CONFIG_FIELDS                                                                           \
    const struct cp_peft_method *method; /* the method this config is for (set by config_new/_json) */ \
    char *task_type;                     /* "CAUSAL_LM", ... or NULL */                                 \
    char *base_model_name_or_path;       /* or NULL */                                                  \
    char *revision;                      /* or NULL */                                                  \
    char *peft_version;                  /* as read, or NULL: written as CP_PEFT_VERSION */             \
    int inference_mode;                                                                                 \
    char **modules_to_save;              /* NULL when null */                                           \
    int n_modules_to_save;                                                                              \
    /* the last n_heads_after_targets entries do not keep targets off their modules: the heads         \
     * PeftModelForTokenClassification appends after injecting the adapter (SEQ_CLS appends before) */  \
    int n_heads_after_targets;                                                                          \
    /* auto_mapping, informational: what PEFT records when task_type is None (NULL: null). The saver    \
     * fills it from the model, as PEFT's save_pretrained does. */                                      \
    char *auto_mapping_class;            /* "base_model_class", e.g. "GPT2LMHeadModel" */               \
    char *auto_mapping_library;          /* "parent_library", e.g. "transformers.models.gpt2.modeling_gpt2" */

typedef struct cp_peft_config {
    CP_PEFT_CONFIG_FIELDS
} cp_peft_config;

/* Which base biases train with an adapter (LoRA's bias "none" / "all" / "lora_only"). */
typedef enum { CP_PEFT_BIAS_NONE, CP_PEFT_BIAS_ALL, CP_PEFT_BIAS_METHOD_ONLY } cp_peft_bias;

/* PEFT's add_weighted_adapter combination types cpeft has. */
typedef enum { CP_COMBINE_LINEAR, CP_COMBINE_CAT } cp_combination;

#define CP_PEFT_MAX_TENSORS 64 /* p-tuning's LSTM: 8 per layer (encoder_num_layers <= 7), plus 5 */

/* One tensor of an adapter on a module (see `tensors` and `plan`). */
typedef struct cp_peft_tensor {
    const char *key;         /* state-dict name under the module, adapter name removed ("lora_A.weight") */
    cp_param *param;         /* the parameter (NULL in a plan) */
    int ndim;                /* plan: the shape the config implies */
    int64_t shape[2];
    int config_dim;          /* plan: the dimension a config field sets (-1: none) ... */
    const char *config_field; /* ... that field ("r") ... */
    int64_t config_value;    /* ... and its value for this module */
} cp_peft_tensor;

/* Prompt learning's model-level part of a method (see `prompt` above); `mod` is the module the method
 * targets (the input word embeddings). */
typedef struct cp_prompt_learning {
    /* the hook the model runs for the active adapter on mod (NULL: none active, or disabled) */
    const cp_prompt_hook *(*model_hook)(const cp_module *mod);
    /* adapter `name`'s "prompt_embeddings" as PEFT saves it, computed now (a new cp_param the caller frees) */
    cp_param *(*saved_embeddings)(const cp_module *mod, const char *name);
    /* the table an inference-mode adapter's "prompt_embeddings" loads into (NULL when the adapter has
     * an encoder in training form: the file holds its output, no parameter of it) */
    cp_param *(*loaded_embeddings)(const cp_module *mod, const char *name);
    /* whether a file's "prompt_embeddings" of this shape fits cfg on model m (its null fields filled
     * from m): the error names the config fields that set the shape and both values */
    cp_status (*check_saved)(const cp_model *m, const cp_peft_config *cfg, int ndim, const int64_t *shape, const char *path);
    /* print(model)'s lines after (base_model): "(prompt_encoder): ModuleDict(...)", "(word_embeddings): ..." */
    char *(*repr)(const cp_module *mod);
    /* why the method cannot train with gradient checkpointing (NULL: it can) */
    const char *no_gradient_checkpointing;
    /* the positions cfg's virtual tokens take before every row (what a learned position table loses) */
    int64_t (*positions)(const cp_peft_config *cfg);
} cp_prompt_learning;

typedef struct cp_peft_method {
    const char *peft_type;
    const char *tuner_class;
    const cp_hook_ops *hook;

    cp_peft_config *(*config_new)(void);
    cp_status (*config_from_json)(const cJSON *root, const char *path, cp_peft_config **out);
    char *(*config_to_json)(const cp_peft_config *cfg);
    cp_peft_config *(*config_copy)(const cp_peft_config *cfg);
    void (*config_free)(cp_peft_config *cfg);

    cp_status (*check)(const cp_model *m, const char *name, const cp_peft_config *cfg);
    cp_status (*targets)(cp_model *m, const cp_peft_config *cfg, cp_module ***out, int *n);
    cp_status (*resolve)(cp_model *m, cp_peft_config *cfg);
    cp_status (*attach)(cp_module *mod, const char *name, cp_peft_config *cfg, cp_rng *rng);
    void (*detach)(cp_module *mod, const char *name);
    const char *(*adapter_at)(const cp_module *mod, int i);
    void (*set_state)(cp_module *mod, const char *const *active, int n_active, int disabled);

    int (*tensors)(const cp_module *mod, const char *name, cp_peft_tensor *out);
    cp_status (*plan)(const cp_module *mod, const cp_peft_config *cfg, cp_peft_tensor *out, int *n);
    cp_peft_bias (*bias)(const cp_peft_config *cfg);
    cp_status (*embedding_targeted)(const cp_model *m, const cp_peft_config *cfg, int *targeted);

    int (*merged)(const cp_module *mod, const char *name);
    void (*merge)(cp_module *mod, const char *name);
    void (*unmerge)(cp_module *mod, const char *name);

    cp_status (*scale)(cp_module *mod, const char *name, double factor);
    cp_status (*add_weighted)(cp_model *m, const char *const *names, const double *weights, int n, const char *new_name,
                              cp_combination combination);

    const cp_prompt_learning *prompt;
} cp_peft_method;

/* ---- the registry (methods.c) ---------------------------------------------------------------- */

/* The method for a peft_type ("LORA"), or NULL. */
const cp_peft_method *cp_peft_method_find(const char *peft_type);
/* The i-th registered method, NULL past the last. */
const cp_peft_method *cp_peft_method_at(int i);
/* The peft_types cpeft supports, for messages, written into buf: "LORA" (quoted), "LORA" or "IA3",
 * "LORA", "IA3" or "X", ... Returns buf. */
const char *cp_peft_supported_types(char *buf, size_t size);

#endif
