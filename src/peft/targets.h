/*
 * targets.h — which modules a PEFT config adapts: PEFT's matching rules on Hugging Face module
 * names, the default target-module table per model_type, "all-linear", and the regex helpers
 * (PCRE2 standing in for Python's re) they need. See reference/peft.md §1.3 and §2.
 */
#ifndef CP_PEFT_TARGETS_H
#define CP_PEFT_TARGETS_H

#include "core/error.h"
#include "nn/module.h"
#include "peft/lora_config.h"

/* Fails with a message naming `field` when the pattern does not compile. */
cp_status cp_regex_check(const char *pattern, const char *field);
/* Python re.fullmatch(pattern, subject). */
cp_status cp_regex_fullmatch(const char *pattern, const char *subject, int *match);
/* PEFT's get_pattern_key rule: re.match(r"(.*\.)?(<key>)$", subject). */
cp_status cp_regex_pattern_key_match(const char *key, const char *subject, int *match);

/* PEFT's default LoRA targets for a model_type (NULL-terminated list), or NULL when PEFT has none. */
const char *const *cp_lora_default_targets(const char *model_type);

/* PEFT's MIN_TARGET_MODULES_FOR_OPTIMIZATION: lists this long are shortened before matching. */
#define CP_LORA_MIN_TARGETS_TO_SHORTEN 20

/* target_modules as PEFT matches and saves it (BaseTuner.inject_adapter): the model_type's defaults
 * for None, the full names of the Linear / Conv1D leaves of `root` but `lm_head` for "all-linear"
 * (exclude_modules and modules_to_save apply later, when matching), the list itself (each name once)
 * otherwise; then, with 20 or more names, the fewest dotted suffixes that still tell them from every
 * other module name. *out is NULL for a regex. Free with cp_lora_free_names. */
cp_status cp_lora_target_names(const cp_lora_config *cfg, cp_module *root, const char *model_type, const cp_module *lm_head,
                               char ***out, int *n_out);
void cp_lora_free_names(char **names, int n);

/* The modules of `root` (a *ForCausalLM tree) that `cfg` adapts, in tree order: each is a Linear,
 * Conv1D or Embedding leaf, matched against cp_lora_target_names. `lm_head` is the model's output
 * embedding (left out by "all-linear"). On no match, the error is PEFT's ("Target modules {...} not
 * found in the base model. ..."). */
cp_status cp_lora_find_targets(const cp_lora_config *cfg, cp_module *root, const char *model_type,
                               const cp_module *lm_head, cp_module ***out, int *n_out);

/* PEFT's modules_to_save rule: a module whose full name ends with an entry (plain suffix). */
int cp_modules_to_save_matches(const cp_lora_config *cfg, const char *path);

#endif
