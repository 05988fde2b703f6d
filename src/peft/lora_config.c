/*
 * lora_config.c — adapter_config.json for LoRA: parsing with PEFT's rules and errors that name the
 * file and field, and writing byte-for-byte the way PEFT's save_pretrained does (see
 * reference/peft.md §1 and §5.2).
 */
#include "peft/lora_config.h"
#include "core/alloc.h"
#include "io/json.h"
#include "peft/peft_config.h"
#include "peft/targets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys PEFT 0.21 writes for a LoRA adapter, for features cpeft does not implement, with the "off"
 * value cpeft writes. What another value means:
 *   REFUSE  it changes what the adapter computes (a LoRA variant, extra parameters, other
 *           targets): "not supported yet". An empty object is not "off" here: PEFT builds the
 *           variant's default config from {} and switches the variant on.
 *   KEEP    it cannot change the numbers of a plain LoRA adapter on these models (the config of an
 *           init that is not in use, Megatron settings on a model without Megatron layers): accepted
 *           with `warning` (PEFT's own where it has one) and written back as read.
 *   DROP    PEFT resets it itself (loftq_config without init "loftq"): warned, written as "off". */
typedef enum { REFUSE, KEEP, DROP } key_rule;
static const struct { const char *key; const char *off_json; key_rule rule; const char *warning; } unsupported_keys[] = {
    {"alora_invocation_tokens", "null", REFUSE, NULL},
    {"arrow_config", "null", REFUSE, NULL},
    {"corda_config", "null", KEEP, "`corda_config` specified but will be ignored when `init_lora_weights` is not 'corda'."},
    {"eva_config", "null", KEEP, "`eva_config` specified but will be ignored when `init_lora_weights` is not 'eva'."},
    {"kasa_config", "null", REFUSE, NULL},
    {"layer_replication", "null", REFUSE, NULL},
    {"loftq_config", "{}", DROP, "`loftq_config` specified but will be ignored when `init_lora_weights` is not 'loftq'."},
    {"lora_bias", "false", REFUSE, NULL},
    {"lora_ga_config", "null", KEEP, "`lora_ga_config` is only used by init_lora_weights='lora_ga'; ignored."},
    {"megatron_config", "null", KEEP, "`megatron_config` only applies to Megatron-LM parallel layers, which this model does not "
                                      "have; ignored."},
    {"megatron_core", "\"megatron.core\"", KEEP, NULL},
    {"monteclora_config", "null", REFUSE, NULL},
    {"qalora_group_size", "16", KEEP, NULL}, /* only read with use_qalora */
    {"target_parameters", "null", REFUSE, NULL},
    {"trainable_token_indices", "null", REFUSE, NULL},
    {"use_bdlora", "null", REFUSE, NULL},
    {"use_dora", "false", REFUSE, NULL},
    {"use_qalora", "false", REFUSE, NULL},
    {"velora_config", "null", REFUSE, NULL},
};

/* Keys the parser understands (the rest of LoraConfig; PeftConfig's are peft_config.c's). */
static const char *const known_keys[] = {
    "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "fan_in_fan_out", "bias", "use_rslora",
    "init_lora_weights", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "runtime_config",
    "ensure_weight_tying",
};

static char *dup_or_null(const char *s) { return s ? cp_strdup(s) : NULL; }

extern const cp_peft_method cp_lora_method;

cp_status cp_lora_config_init(cp_lora_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->method = &cp_lora_method;
    cfg->r = 8;
    cfg->lora_alpha = 8;
    cfg->lora_alpha_is_int = 1;
    cfg->target_kind = CP_TARGETS_DEFAULT;
    cfg->bias = CP_LORA_BIAS_NONE;
    cfg->init_lora_weights = CP_LORA_INIT_DEFAULT;
    return CP_OK;
}

void cp_lora_config_free(cp_lora_config *cfg) {
    cp_peft_config_free_common(&cfg->base);
    cp_peft_free_list(cfg->target_modules, cfg->n_target_modules);
    cp_free(cfg->target_regex);
    cp_peft_free_list(cfg->exclude_modules, cfg->n_exclude_modules);
    cp_free(cfg->exclude_regex);
    cp_free(cfg->layers_to_transform);
    cp_peft_free_list(cfg->layers_pattern, cfg->n_layers_pattern);
    for (int i = 0; i < cfg->n_rank_pattern; i++) cp_free(cfg->rank_pattern[i].pattern);
    cp_free(cfg->rank_pattern);
    for (int i = 0; i < cfg->n_alpha_pattern; i++) cp_free(cfg->alpha_pattern[i].pattern);
    cp_free(cfg->alpha_pattern);
    cJSON_Delete(cfg->kept);
    memset(cfg, 0, sizeof *cfg);
}

static cp_lora_pattern *copy_patterns(const cp_lora_pattern *src, int n) {
    if (!n) return NULL;
    cp_lora_pattern *dst = cp_calloc((size_t)n, sizeof *dst, "a pattern map");
    for (int i = 0; dst && i < n; i++) {
        dst[i] = src[i];
        dst[i].pattern = cp_strdup(src[i].pattern);
    }
    return dst;
}

cp_status cp_lora_config_copy(cp_lora_config *dst, const cp_lora_config *src) {
    *dst = *src;
    cp_peft_config_copy_common(&dst->base, &src->base);
    dst->target_modules = cp_peft_copy_list(src->target_modules, src->n_target_modules);
    dst->target_regex = dup_or_null(src->target_regex);
    dst->exclude_modules = cp_peft_copy_list(src->exclude_modules, src->n_exclude_modules);
    dst->exclude_regex = dup_or_null(src->exclude_regex);
    if (src->layers_to_transform) {
        dst->layers_to_transform = cp_malloc((size_t)(src->n_layers_to_transform + 1) * sizeof(int64_t), "layers");
        if (dst->layers_to_transform)
            memcpy(dst->layers_to_transform, src->layers_to_transform, (size_t)src->n_layers_to_transform * sizeof(int64_t));
    }
    dst->layers_pattern = cp_peft_copy_list(src->layers_pattern, src->n_layers_pattern);
    dst->rank_pattern = copy_patterns(src->rank_pattern, src->n_rank_pattern);
    dst->alpha_pattern = copy_patterns(src->alpha_pattern, src->n_alpha_pattern);
    dst->kept = src->kept ? cJSON_Duplicate(src->kept, 1) : NULL;
    return CP_OK;
}

static cp_status read_patterns(const cJSON *root, const char *key, const char *path, cp_lora_pattern **out, int *n) {
    *out = NULL;
    *n = 0;
    const cJSON *v = cp_json_field(root, key);
    if (!v) return CP_OK;
    if (!cJSON_IsObject(v)) return cp_error("%s: field \"%s\": expected an object mapping patterns to numbers", path, key);
    int count = cJSON_GetArraySize(v);
    if (!count) return CP_OK;
    cp_lora_pattern *p = cp_calloc((size_t)count, sizeof *p, key);
    if (!p) return CP_ERR;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsNumber(it)) {
            for (int k = 0; k < i; k++) cp_free(p[k].pattern);
            cp_free(p);
            return cp_error("%s: field \"%s\": value for \"%s\" must be a number", path, key, it->string);
        }
        p[i].pattern = cp_strdup(it->string);
        p[i].value = it->valuedouble;
        char *txt = cJSON_PrintUnformatted(it);
        p[i].is_int = txt && !strpbrk(txt, ".eE");
        cJSON_free(txt);
        i++;
    }
    *out = p;
    *n = count;
    return CP_OK;
}

static int is_known(const char *key) {
    if (cp_peft_config_is_common_key(key)) return 1;
    for (size_t i = 0; i < sizeof known_keys / sizeof *known_keys; i++)
        if (!strcmp(key, known_keys[i])) return 1;
    for (size_t i = 0; i < sizeof unsupported_keys / sizeof *unsupported_keys; i++)
        if (!strcmp(key, unsupported_keys[i].key)) return 1;
    return 0;
}

/* Applies the rules of unsupported_keys: refuses what would change the numbers, keeps the rest. */
static cp_status check_unsupported(cp_lora_config *cfg, const cJSON *root, const char *path) {
    for (size_t i = 0; i < sizeof unsupported_keys / sizeof *unsupported_keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported_keys[i].key);
        if (!v) continue;
        cJSON *off = cJSON_Parse(unsupported_keys[i].off_json);
        int same = off && cJSON_Compare(v, off, 1);
        cJSON_Delete(off);
        /* falsy values PEFT treats as "not given": [] targets no parameter, {} is no LoftQ/Megatron config */
        if (!same && !strcmp(unsupported_keys[i].key, "target_parameters")) same = cJSON_IsArray(v) && !cJSON_GetArraySize(v);
        if (!same && (!strcmp(unsupported_keys[i].key, "loftq_config") || !strcmp(unsupported_keys[i].key, "megatron_config")))
            same = cJSON_IsObject(v) && !cJSON_GetArraySize(v);
        if (same) continue;
        if (unsupported_keys[i].rule == REFUSE) {
            char *got = cJSON_PrintUnformatted(v);
            cp_status st = cp_error("%s: \"%s\": %s is not supported yet by cpeft (supported: %s)", path,
                                    unsupported_keys[i].key, got ? got : "?", unsupported_keys[i].off_json);
            cJSON_free(got);
            return st;
        }
        if (unsupported_keys[i].warning) cp_warn("%s: %s", path, unsupported_keys[i].warning);
        if (unsupported_keys[i].rule == KEEP) {
            if (!cfg->kept && !(cfg->kept = cJSON_CreateObject())) return cp_error("out of memory reading %s", path);
            cJSON_AddItemToObject(cfg->kept, unsupported_keys[i].key, cJSON_Duplicate(v, 1));
        }
    }
    return CP_OK;
}

cp_status cp_lora_config_from_json(cp_lora_config *cfg, const cJSON *root, const char *path) {
    cp_lora_config_init(cfg);
    if (cp_peft_config_check_type(root, path, &cp_lora_method) != CP_OK) return CP_ERR;
    for (const cJSON *it = root->child; it; it = it->next)
        if (!is_known(it->string)) cp_warn("%s: unknown key \"%s\" ignored (as PEFT does)", path, it->string);
    cp_status st = CP_OK;
    if ((st = check_unsupported(cfg, root, path)) != CP_OK || (st = cp_peft_config_read_common(&cfg->base, root, path)) != CP_OK)
        goto fail;
    const cJSON *v;
    int64_t r;
    /* absent: LoraConfig's defaults (r 8, lora_alpha 8), as PEFT's from_pretrained takes them; an explicit null
     * is None in PEFT, which fails when the layers are built */
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "lora_alpha" : "r";
        v = cJSON_GetObjectItemCaseSensitive(root, key);
        if (v && cJSON_IsNull(v)) { st = cp_error("%s: field \"%s\": expected a number, found null", path, key); goto fail; }
    }
    if ((st = cp_json_get_int(root, "r", 8, 0, &r, path)) != CP_OK) goto fail;
    cfg->r = r;
    v = cp_json_field(root, "lora_alpha");
    if (v && !cJSON_IsNumber(v)) { st = cp_error("%s: field \"lora_alpha\": expected a number, found %s", path, cp_json_type_name(v)); goto fail; }
    if (v) {
        cfg->lora_alpha = v->valuedouble;
        /* PEFT writes the alpha it was given: 16 stays 16, 16.0 stays 16.0. */
        char *txt = cJSON_PrintUnformatted(v);
        cfg->lora_alpha_is_int = txt && !strpbrk(txt, ".eE");
        cJSON_free(txt);
    }
    if ((st = cp_json_get_double(root, "lora_dropout", 0.0, 0, &cfg->lora_dropout, path)) != CP_OK) goto fail;
    if (cfg->lora_dropout < 0 || cfg->lora_dropout >= 1) {
        st = cp_error("%s: field \"lora_dropout\" must be in [0, 1), found %g", path, cfg->lora_dropout);
        goto fail;
    }
    if ((st = cp_json_get_bool(root, "fan_in_fan_out", 0, 0, &cfg->fan_in_fan_out, path)) != CP_OK ||
        (st = cp_json_get_bool(root, "use_rslora", 0, 0, &cfg->use_rslora, path)) != CP_OK ||
        (st = cp_json_get_bool(root, "ensure_weight_tying", 0, 0, &cfg->ensure_weight_tying, path)) != CP_OK)
        goto fail;

    const char *bias;
    if ((st = cp_json_get_string(root, "bias", "none", 0, &bias, path)) != CP_OK) goto fail;
    if (!strcmp(bias, "none")) cfg->bias = CP_LORA_BIAS_NONE;
    else if (!strcmp(bias, "all")) cfg->bias = CP_LORA_BIAS_ALL;
    else if (!strcmp(bias, "lora_only")) cfg->bias = CP_LORA_BIAS_LORA_ONLY;
    else { st = cp_error("%s: field \"bias\": \"%s\" is not one of \"none\", \"all\", \"lora_only\"", path, bias); goto fail; }

    v = cp_json_field(root, "init_lora_weights");
    if (!v || cJSON_IsTrue(v)) cfg->init_lora_weights = CP_LORA_INIT_DEFAULT;
    else if (cJSON_IsFalse(v)) cfg->init_lora_weights = CP_LORA_INIT_NONE;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "gaussian")) cfg->init_lora_weights = CP_LORA_INIT_GAUSSIAN;
    else if (cJSON_IsString(v)) {
        st = cp_error("%s: field \"init_lora_weights\": \"%s\" is not supported yet by cpeft (supported: true, false, \"gaussian\")",
                      path, v->valuestring);
        goto fail;
    } else { st = cp_error("%s: field \"init_lora_weights\": expected true, false or a string", path); goto fail; }

    v = cp_json_field(root, "target_modules");
    if (!v) cfg->target_kind = CP_TARGETS_DEFAULT;
    else if (cJSON_IsString(v)) {
        if (!strcasecmp(v->valuestring, "all-linear")) cfg->target_kind = CP_TARGETS_ALL_LINEAR;
        else { cfg->target_kind = CP_TARGETS_REGEX; cfg->target_regex = cp_strdup(v->valuestring); }
    } else {
        cfg->target_kind = CP_TARGETS_LIST;
        if ((st = cp_peft_read_string_list(v, "target_modules", path, &cfg->target_modules, &cfg->n_target_modules)) != CP_OK) goto fail;
    }
    v = cp_json_field(root, "exclude_modules");
    if (v && cJSON_IsString(v)) cfg->exclude_regex = cp_strdup(v->valuestring);
    else if (v && (st = cp_peft_read_string_list(v, "exclude_modules", path, &cfg->exclude_modules, &cfg->n_exclude_modules)) != CP_OK) goto fail;

    v = cp_json_field(root, "layers_to_transform");
    if (v) {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
        cfg->layers_to_transform = cp_calloc((size_t)(n ? n : 1), sizeof(int64_t), "layers_to_transform");
        if (!cfg->layers_to_transform) { st = CP_ERR; goto fail; }
        cfg->layers_to_transform_is_int = !cJSON_IsArray(v);
        const cJSON *it = cJSON_IsArray(v) ? v->child : v;
        for (int i = 0; i < n; i++, it = it->next) {
            if (!cp_json_int_in(it, -CP_JSON_MAX_EXACT_INT, CP_JSON_MAX_EXACT_INT, &cfg->layers_to_transform[i])) {
                char what[48];
                st = cp_error("%s: field \"layers_to_transform\": expected an integer or a list of integers, found %s",
                              path, cp_json_describe(it, what, sizeof what));
                goto fail;
            }
            if (!cJSON_IsArray(v)) break;
        }
        cfg->n_layers_to_transform = n;
    }
    v = cp_json_field(root, "layers_pattern");
    if (v && cJSON_IsString(v)) {
        cfg->layers_pattern = cp_calloc(1, sizeof *cfg->layers_pattern, "layers_pattern");
        if (!cfg->layers_pattern) { st = CP_ERR; goto fail; }
        cfg->layers_pattern[0] = cp_strdup(v->valuestring);
        cfg->n_layers_pattern = 1;
        cfg->layers_pattern_is_str = 1;
    } else if (v && (st = cp_peft_read_string_list(v, "layers_pattern", path, &cfg->layers_pattern, &cfg->n_layers_pattern)) != CP_OK)
        goto fail;
    if ((st = read_patterns(root, "rank_pattern", path, &cfg->rank_pattern, &cfg->n_rank_pattern)) != CP_OK ||
        (st = read_patterns(root, "alpha_pattern", path, &cfg->alpha_pattern, &cfg->n_alpha_pattern)) != CP_OK)
        goto fail;
    for (int i = 0; i < cfg->n_rank_pattern; i++) cfg->rank_pattern[i].is_int = 1;
    if ((st = cp_lora_config_validate(cfg, path)) != CP_OK) goto fail;
    return CP_OK;
fail:
    cp_lora_config_free(cfg);
    return st;
}

cp_status cp_lora_config_load(cp_lora_config *cfg, const char *path) {
    cJSON *root;
    cp_lora_config_init(cfg);
    if (cp_json_read_file(path, &root) != CP_OK) return CP_ERR;
    cp_status st = cp_lora_config_from_json(cfg, root, path);
    cJSON_Delete(root);
    return st;
}

cp_status cp_lora_config_validate(const cp_lora_config *cfg, const char *where) {
    if (cfg->r <= 0) return cp_error("%s: `r` should be a positive integer value but the value passed is %lld", where, (long long)cfg->r);
    /* a rank becomes an int64 (cp_lora_config_rank_alpha): past 2^53 the conversion could be undefined; a
     * large but exact rank is left to the check against the adapter's tensors */
    for (int i = 0; i < cfg->n_rank_pattern; i++)
        if (!(cfg->rank_pattern[i].value >= 1 && cfg->rank_pattern[i].value <= (double)CP_JSON_MAX_EXACT_INT) ||
            cfg->rank_pattern[i].value != floor(cfg->rank_pattern[i].value))
            return cp_error("%s: rank_pattern[\"%s\"] must be a positive integer, found %g", where,
                            cfg->rank_pattern[i].pattern, cfg->rank_pattern[i].value);
    if (cfg->target_kind == CP_TARGETS_REGEX && cfg->layers_to_transform)
        return cp_error("%s: `layers_to_transform` cannot be used when `target_modules` is a str.", where);
    if (cfg->target_kind == CP_TARGETS_REGEX && cfg->layers_pattern)
        return cp_error("%s: `layers_pattern` cannot be used when `target_modules` is a str.", where);
    if (cp_lora_config_has_layers_pattern(cfg) && !cfg->layers_to_transform)
        return cp_error("%s: When `layers_pattern` is specified, `layers_to_transform` must also be specified. ", where);
    if (cfg->target_regex && cp_regex_check(cfg->target_regex, "target_modules") != CP_OK) return cp_error_context("%s", where);
    if (cfg->exclude_regex && cp_regex_check(cfg->exclude_regex, "exclude_modules") != CP_OK) return cp_error_context("%s", where);
    for (int i = 0; i < cfg->n_rank_pattern; i++)
        if (cp_regex_check(cfg->rank_pattern[i].pattern, "rank_pattern") != CP_OK) return cp_error_context("%s", where);
    for (int i = 0; i < cfg->n_alpha_pattern; i++)
        if (cp_regex_check(cfg->alpha_pattern[i].pattern, "alpha_pattern") != CP_OK) return cp_error_context("%s", where);
    return CP_OK;
}

int cp_lora_config_has_layers_pattern(const cp_lora_config *cfg) {
    cp_target_spec t;
    cp_lora_target_spec(cfg, &t);
    return cp_target_spec_has_layers_pattern(&t);
}

cp_status cp_lora_config_rank_alpha(const cp_lora_config *cfg, const char *module_path, int64_t *r, double *alpha) {
    *r = cfg->r;
    *alpha = cfg->lora_alpha;
    for (int i = 0; i < cfg->n_rank_pattern; i++) {
        int hit;
        if (cp_regex_pattern_key_match(cfg->rank_pattern[i].pattern, module_path, &hit) != CP_OK) return CP_ERR;
        if (hit) { *r = (int64_t)cfg->rank_pattern[i].value; break; }
    }
    for (int i = 0; i < cfg->n_alpha_pattern; i++) {
        int hit;
        if (cp_regex_pattern_key_match(cfg->alpha_pattern[i].pattern, module_path, &hit) != CP_OK) return CP_ERR;
        if (hit) { *alpha = cfg->alpha_pattern[i].value; break; }
    }
    return CP_OK;
}

/* ---- targets ----------------------------------------------------------------------------------- */

/* PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING. */
#define T(...) (const char *const[]){__VA_ARGS__, NULL}
static const struct { const char *model_type; const char *const *targets; } default_targets[] = {
    {"t5", T("q", "v")}, {"mt5", T("q", "v")}, {"bart", T("q_proj", "v_proj")}, {"gpt2", T("c_attn")},
    {"bloom", T("query_key_value")}, {"blip-2", T("q", "v", "q_proj", "v_proj")}, {"opt", T("q_proj", "v_proj")},
    {"gptj", T("q_proj", "v_proj")}, {"gpt_neox", T("query_key_value")}, {"gpt_neo", T("q_proj", "v_proj")},
    {"bert", T("query", "value")}, {"roberta", T("query", "value")}, {"xlm-roberta", T("query", "value")},
    {"electra", T("query", "value")}, {"deberta-v2", T("query_proj", "value_proj")}, {"deberta", T("in_proj")},
    {"layoutlm", T("query", "value")}, {"llama", T("q_proj", "v_proj")}, {"llama4", T("q_proj", "v_proj")},
    {"chatglm", T("query_key_value")}, {"gpt_bigcode", T("c_attn")}, {"mpt", T("Wqkv")},
    {"RefinedWebModel", T("query_key_value")}, {"RefinedWeb", T("query_key_value")},
    {"falcon", T("query_key_value")}, {"btlm", T("c_proj", "c_attn")}, {"codegen", T("qkv_proj")},
    {"mistral", T("q_proj", "v_proj")}, {"mixtral", T("q_proj", "v_proj")}, {"stablelm", T("q_proj", "v_proj")},
    {"phi", T("q_proj", "v_proj", "fc1", "fc2")}, {"gemma", T("q_proj", "v_proj")}, {"gemma2", T("q_proj", "v_proj")},
    {"gemma3_text", T("q_proj", "v_proj")}, {"qwen2", T("q_proj", "v_proj")}, {"qwen3", T("q_proj", "v_proj")},
    {"nemotron_h", T("q_proj", "k_proj", "v_proj", "o_proj")},
    {"rwkv", T("key", "value", "receptance", "output")},
    {"rwkv7", T("r_proj", "k_proj", "v_proj", "o_proj", "key", "value")},
};
#undef T

const char *const *cp_lora_default_targets(const char *model_type) {
    for (size_t i = 0; i < sizeof default_targets / sizeof *default_targets; i++)
        if (!strcmp(default_targets[i].model_type, model_type)) return default_targets[i].targets;
    return NULL;
}

void cp_lora_target_spec(const cp_lora_config *cfg, cp_target_spec *t) {
    *t = (cp_target_spec){
        .kind = cfg->target_kind,
        .modules = cfg->target_modules,
        .n_modules = cfg->n_target_modules,
        .regex = cfg->target_regex,
        .exclude = cfg->exclude_modules,
        .n_exclude = cfg->n_exclude_modules,
        .exclude_regex = cfg->exclude_regex,
        .layers = cfg->layers_to_transform,
        .n_layers = cfg->n_layers_to_transform,
        .layers_pattern = cfg->layers_pattern,
        .n_layers_pattern = cfg->n_layers_pattern,
        .layers_pattern_is_str = cfg->layers_pattern_is_str,
        .modules_to_save = cfg->modules_to_save,
        .n_modules_to_save = cfg->n_modules_to_save - cfg->n_heads_after_targets,
        .seq_cls = cfg->task_type && !strcmp(cfg->task_type, "SEQ_CLS"),
        .defaults = cp_lora_default_targets,
        .kinds = 1u << CP_MOD_LINEAR | 1u << CP_MOD_CONV1D | 1u << CP_MOD_EMBEDDING,
        .supported = "`torch.nn.Linear`, `torch.nn.Embedding`, `transformers.pytorch_utils.Conv1D`",
    };
}

const char *cp_lora_bias_name(cp_lora_bias b) {
    return b == CP_LORA_BIAS_ALL ? "all" : b == CP_LORA_BIAS_LORA_ONLY ? "lora_only" : "none";
}

/* ---- writing -------------------------------------------------------------------------------- */

static cJSON *pattern_map(const cp_lora_pattern *p, int n) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < n; i++) cJSON_AddItemToObject(o, p[i].pattern, cp_peft_number(p[i].value, p[i].is_int));
    return o;
}

char *cp_lora_config_to_json(const cp_lora_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (size_t i = 0; i < sizeof unsupported_keys / sizeof *unsupported_keys; i++) {
        const cJSON *kept = cfg->kept ? cJSON_GetObjectItemCaseSensitive(cfg->kept, unsupported_keys[i].key) : NULL;
        cJSON_AddItemToObject(o, unsupported_keys[i].key,
                              kept ? cJSON_Duplicate(kept, 1) : cJSON_CreateRaw(unsupported_keys[i].off_json));
    }
    cp_peft_config_write_common(&cfg->base, o);
    cJSON_AddItemToObject(o, "ensure_weight_tying", cJSON_CreateBool(cfg->ensure_weight_tying));
    cJSON_AddItemToObject(o, "alpha_pattern", pattern_map(cfg->alpha_pattern, cfg->n_alpha_pattern));
    cJSON_AddItemToObject(o, "bias", cJSON_CreateString(cp_lora_bias_name(cfg->bias)));
    if (cfg->exclude_regex) cJSON_AddItemToObject(o, "exclude_modules", cJSON_CreateString(cfg->exclude_regex));
    else if (cfg->exclude_modules) cJSON_AddItemToObject(o, "exclude_modules", cp_peft_string_list_json(cfg->exclude_modules, cfg->n_exclude_modules, 1));
    else cJSON_AddItemToObject(o, "exclude_modules", cJSON_CreateNull());
    cJSON_AddItemToObject(o, "fan_in_fan_out", cJSON_CreateBool(cfg->fan_in_fan_out));
    cJSON_AddItemToObject(o, "init_lora_weights",
                          cfg->init_lora_weights == CP_LORA_INIT_GAUSSIAN ? cJSON_CreateString("gaussian")
                                                                          : cJSON_CreateBool(cfg->init_lora_weights == CP_LORA_INIT_DEFAULT));
    if (!cfg->layers_pattern) cJSON_AddItemToObject(o, "layers_pattern", cJSON_CreateNull());
    else if (cfg->layers_pattern_is_str) cJSON_AddItemToObject(o, "layers_pattern", cJSON_CreateString(cfg->layers_pattern[0]));
    else cJSON_AddItemToObject(o, "layers_pattern", cp_peft_string_list_json(cfg->layers_pattern, cfg->n_layers_pattern, 0));
    if (!cfg->layers_to_transform) cJSON_AddItemToObject(o, "layers_to_transform", cJSON_CreateNull());
    else if (cfg->layers_to_transform_is_int) cJSON_AddItemToObject(o, "layers_to_transform", cp_peft_number((double)cfg->layers_to_transform[0], 1));
    else {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < cfg->n_layers_to_transform; i++) cJSON_AddItemToArray(arr, cp_peft_number((double)cfg->layers_to_transform[i], 1));
        cJSON_AddItemToObject(o, "layers_to_transform", arr);
    }
    cJSON_AddItemToObject(o, "lora_alpha", cp_peft_number(cfg->lora_alpha, cfg->lora_alpha_is_int));
    cJSON_AddItemToObject(o, "lora_dropout", cp_peft_py_float(cfg->lora_dropout));
    cJSON_AddItemToObject(o, "r", cp_peft_number((double)cfg->r, 1));
    cJSON_AddItemToObject(o, "rank_pattern", pattern_map(cfg->rank_pattern, cfg->n_rank_pattern));
    switch (cfg->target_kind) {
    case CP_TARGETS_DEFAULT: cJSON_AddItemToObject(o, "target_modules", cJSON_CreateNull()); break;
    case CP_TARGETS_ALL_LINEAR: cJSON_AddItemToObject(o, "target_modules", cJSON_CreateString("all-linear")); break;
    case CP_TARGETS_REGEX: cJSON_AddItemToObject(o, "target_modules", cJSON_CreateString(cfg->target_regex)); break;
    case CP_TARGETS_LIST: cJSON_AddItemToObject(o, "target_modules", cp_peft_string_list_json(cfg->target_modules, cfg->n_target_modules, 1)); break;
    }
    cJSON_AddItemToObject(o, "use_rslora", cJSON_CreateBool(cfg->use_rslora));
    char *text = cp_json_dump_python(o);
    cJSON_Delete(o);
    return text;
}
