/*
 * targets.h — which modules a PEFT config adapts: PEFT's matching rules on Hugging Face module
 * names (BaseTuner's, shared by the methods that have target_modules), "all-linear", the default
 * target-module tables (each method supplies its own), and the regex helpers (PCRE2 standing in for
 * Python's re) they need. See reference/peft.md §1.3 and §2.
 */
#ifndef CP_PEFT_TARGETS_H
#define CP_PEFT_TARGETS_H

#include <stdint.h>

#include "core/error.h"
#include "nn/module.h"
#include "peft/method.h"

/* Fails with a message naming `field` when the pattern does not compile. */
cp_status cp_regex_check(const char *pattern, const char *field);
/* Python re.fullmatch(pattern, subject). */
cp_status cp_regex_fullmatch(const char *pattern, const char *subject, int *match);
/* PEFT's get_pattern_key rule: re.match(r"(.*\.)?(<key>)$", subject). */
cp_status cp_regex_pattern_key_match(const char *key, const char *subject, int *match);

typedef enum { CP_TARGETS_DEFAULT, CP_TARGETS_LIST, CP_TARGETS_REGEX, CP_TARGETS_ALL_LINEAR } cp_targets_kind;

/* A config's targeting fields (PEFT's target_modules, exclude_modules, layers_to_transform,
 * layers_pattern, plus PeftConfig's modules_to_save), borrowed from the method's config, with what
 * the method can adapt. */
typedef struct cp_target_spec {
    cp_targets_kind kind;
    char *const *modules;              /* CP_TARGETS_LIST: names (suffixes on a '.' boundary) */
    int n_modules;
    const char *regex;                 /* CP_TARGETS_REGEX: full-match regex */
    char *const *exclude;              /* exclude_modules, list form */
    int n_exclude;
    const char *exclude_regex;         /* exclude_modules, regex form */
    const int64_t *layers;             /* layers_to_transform (NULL: none) */
    int n_layers;
    char *const *layers_pattern;       /* NULL: none */
    int n_layers_pattern;
    int layers_pattern_is_str;
    char *const *modules_to_save;
    int n_modules_to_save;
    /* the method's default target names for a model_type (NULL-terminated), NULL when it has none */
    const char *const *(*defaults)(const char *model_type);
    unsigned kinds;                    /* the module kinds it adapts: bit (1u << cp_module_kind) */
    const char *supported;             /* those kinds as PEFT's error lists them */
    int keep_long_lists;               /* never shorten a long list (PEFT exempts IA3, whose
                                          feedforward_modules must stay a subset of target_modules) */
    int seq_cls;                       /* task_type SEQ_CLS: "all-linear" leaves out the model's head
                                          (its `score`, else its `classifier` child: PEFT's SEQ_CLS_HEAD_NAMES) */
} cp_target_spec;

/* Whether layers_pattern names a pattern (PEFT treats null, "" and [] alike: none). */
int cp_target_spec_has_layers_pattern(const cp_target_spec *t);

/* PEFT's MIN_TARGET_MODULES_FOR_OPTIMIZATION: lists this long are shortened before matching. */
#define CP_MIN_TARGETS_TO_SHORTEN 20

/* target_modules as PEFT matches and saves it (BaseTuner.inject_adapter): the model_type's defaults
 * for None, the full names of the Linear / Conv1D leaves of `root` but `lm_head` (and a SEQ_CLS head) for "all-linear"
 * (exclude_modules and modules_to_save apply later, when matching), the list itself (each name once)
 * otherwise; then, with 20 or more names, the fewest dotted suffixes that still tell them from every
 * other module name (unless t->keep_long_lists). *out is NULL for a regex. Free with cp_free_names. */
cp_status cp_target_names(const cp_target_spec *t, cp_module *root, const char *model_type, const cp_module *lm_head,
                          char ***out, int *n_out);
void cp_free_names(char **names, int n);

/* The modules of `root` (a *ForCausalLM tree) that `t` adapts, in tree order, matched against
 * cp_target_names; each must be of a kind in t->kinds. `lm_head` is the model's output embedding
 * (left out by "all-linear"). On no match, the error is PEFT's ("Target modules {...} not found in
 * the base model. ..."). */
cp_status cp_find_targets(const cp_target_spec *t, cp_module *root, const char *model_type, const cp_module *lm_head,
                          cp_module ***out, int *n_out);

/* PEFT's _create_new_module rule for a config's fan_in_fan_out on target t: a Conv1D needs true, a
 * Linear false; a wrong value is corrected in place with PEFT's warning. */
void cp_target_fan_in_fan_out(const cp_module *t, int *fan_in_fan_out);

/* PEFT's modules_to_save rule: a module whose full name ends with an entry (plain suffix). */
int cp_modules_to_save_matches(const cp_peft_config *cfg, const char *path);

#endif
