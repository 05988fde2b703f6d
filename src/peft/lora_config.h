/*
 * lora_config.h — PEFT's LoraConfig, read from and written as PEFT's own adapter_config.json.
 *
 * Every field PEFT's adapter_config.json carries for LoRA is accepted. The ones cpeft implements
 * are parsed into this struct. Fields for features cpeft does not have yet are sorted by what they
 * do to the numbers: those that would change what the adapter computes (DoRA, lora_bias,
 * target_parameters, layer_replication, the LoRA variants, ...) are refused with a "not supported
 * yet" error unless at their "off" value; those that cannot (auto_mapping, which PEFT writes for
 * every adapter without a task_type; the configs of inits that are not in use; megatron_config,
 * which only touches Megatron layers) are accepted, with a warning where PEFT warns, and written
 * back. Unknown keys (from newer PEFT versions) are ignored with a warning, as PEFT drops them;
 * peft_type is required.
 */
#ifndef CP_PEFT_LORA_CONFIG_H
#define CP_PEFT_LORA_CONFIG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "peft/method.h"
#include "peft/targets.h"

#define CP_LORA_PEFT_VERSION CP_PEFT_VERSION

typedef enum { CP_LORA_BIAS_NONE, CP_LORA_BIAS_ALL, CP_LORA_BIAS_LORA_ONLY } cp_lora_bias;
typedef enum { CP_LORA_INIT_DEFAULT, CP_LORA_INIT_NONE, CP_LORA_INIT_GAUSSIAN } cp_lora_init; /* true / false / "gaussian" */

typedef struct {
    char *pattern;   /* regex over module names, as in rank_pattern / alpha_pattern */
    double value;
    int is_int;
} cp_lora_pattern;

typedef struct cp_lora_config {
    /* PeftConfig: `base` for the method-generic code (method.h), the same fields by name here */
    union {
        cp_peft_config base;
        struct {
            CP_PEFT_CONFIG_FIELDS
        };
    };

    /* LoraConfig */
    int64_t r;
    double lora_alpha;
    int lora_alpha_is_int;            /* written back as an int, as PEFT stores what it was given */
    double lora_dropout;
    cp_targets_kind target_kind;
    char **target_modules;            /* CP_TARGETS_LIST: names (suffixes on a '.' boundary) */
    int n_target_modules;
    char *target_regex;               /* CP_TARGETS_REGEX: full-match regex */
    char **exclude_modules;           /* list form */
    int n_exclude_modules;
    char *exclude_regex;              /* regex form */
    int fan_in_fan_out;
    cp_lora_bias bias;
    int use_rslora;
    cp_lora_init init_lora_weights;
    int64_t *layers_to_transform;     /* NULL when null */
    int n_layers_to_transform;
    int layers_to_transform_is_int;   /* given as a single int */
    char **layers_pattern;            /* NULL when null */
    int n_layers_pattern;
    int layers_pattern_is_str;
    cp_lora_pattern *rank_pattern;
    int n_rank_pattern;
    cp_lora_pattern *alpha_pattern;
    int n_alpha_pattern;
    int ensure_weight_tying;          /* accepted where it changes nothing (see lora_method.c) */
    cJSON *kept;                      /* ignored fields with a non-"off" value, written back as read
                                         (numbers as parsed: a 2.0 inside comes back as 2) */
} cp_lora_config;

/* A config with PEFT's defaults (r=8, lora_alpha=8, dropout 0, default targets, bias "none"); its
 * base.method is cp_lora_method. */
cp_status cp_lora_config_init(cp_lora_config *cfg);
/* Reads adapter_config.json; `path` names the file in errors. */
cp_status cp_lora_config_load(cp_lora_config *cfg, const char *path);
cp_status cp_lora_config_from_json(cp_lora_config *cfg, const cJSON *root, const char *path);
/* Checks the cross-field rules PEFT checks at construction (r > 0, string targets with
 * layers_to_transform, layers_pattern without layers_to_transform, regexes that compile). */
cp_status cp_lora_config_validate(const cp_lora_config *cfg, const char *where);
/* adapter_config.json text exactly as PEFT's save_pretrained writes it (sorted keys, indent 2, no
 * trailing newline; inference_mode written as true). target_modules lists are written sorted
 * (PEFT writes Python set order, which changes from run to run). */
char *cp_lora_config_to_json(const cp_lora_config *cfg);
cp_status cp_lora_config_copy(cp_lora_config *dst, const cp_lora_config *src);
void cp_lora_config_free(cp_lora_config *cfg);

/* Whether layers_pattern names a pattern (PEFT treats null, "" and [] alike: none). */
int cp_lora_config_has_layers_pattern(const cp_lora_config *cfg);

/* rank and alpha for one module, from rank_pattern / alpha_pattern (first matching key, PEFT's
 * `(.*\.)?(<key>)$` rule), else r and lora_alpha. */
cp_status cp_lora_config_rank_alpha(const cp_lora_config *cfg, const char *module_path, int64_t *r, double *alpha);

/* "none", "all", "lora_only". */
const char *cp_lora_bias_name(cp_lora_bias b);

/* The targeting fields of cfg as the shared matcher takes them (targets.h), borrowed from cfg. */
void cp_lora_target_spec(const cp_lora_config *cfg, cp_target_spec *out);
/* PEFT's default LoRA targets for a model_type (NULL-terminated list), or NULL when PEFT has none. */
const char *const *cp_lora_default_targets(const char *model_type);

#endif
