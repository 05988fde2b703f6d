/*
 * peft_config.c — adapter_config.json for every method: the peft_type dispatch, PeftConfig's shared
 * fields in both directions, PEFT's task types; see peft_config.h (and reference/peft.md §1, §5.2).
 */
#include "peft/peft_config.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PEFT's TaskType values, the PeftModel class each selects (MODEL_TYPE_TO_PEFT_MODEL_MAPPING) and the
 * head modules that class's __init__ appends to modules_to_save. */
static const struct { const char *task, *model_class, *const heads[3]; } task_types[] = {
    {"SEQ_CLS", "PeftModelForSequenceClassification", {"classifier", "score", NULL}},
    {"SEQ_2_SEQ_LM", "PeftModelForSeq2SeqLM", {NULL}},
    {"CAUSAL_LM", "PeftModelForCausalLM", {NULL}},
    {"TOKEN_CLS", "PeftModelForTokenClassification", {"classifier", "score", NULL}},
    {"QUESTION_ANS", "PeftModelForQuestionAnswering", {"qa_outputs", NULL}},
    {"FEATURE_EXTRACTION", "PeftModelForFeatureExtraction", {NULL}},
};

static int task_index(const char *task_type) {
    for (int i = 0; task_type && i < (int)(sizeof task_types / sizeof *task_types); i++)
        if (!strcmp(task_type, task_types[i].task)) return i;
    return -1;
}

const char *cp_peft_task_model_class(const char *task_type) {
    int i = task_index(task_type);
    return i < 0 ? "PeftModel" : task_types[i].model_class;
}

/* ---- the dispatch on peft_type ---------------------------------------------------------------- */

static cp_status read_type(const cJSON *root, const char *path, const char **type) {
    if (!cJSON_IsObject(root)) return cp_error("%s: expected a JSON object", path);
    return cp_json_get_string(root, "peft_type", NULL, 1, type, path);
}

cp_status cp_peft_config_check_type(const cJSON *root, const char *path, const cp_peft_method *method) {
    const char *type;
    if (read_type(root, path, &type) != CP_OK) return CP_ERR;
    if (strcmp(type, method->peft_type) != 0)
        return cp_error("%s: peft_type is \"%s\", expected \"%s\"", path, type, method->peft_type);
    return CP_OK;
}

cp_status cp_peft_config_from_json(const cJSON *root, const char *path, cp_peft_config **out) {
    *out = NULL;
    const char *type;
    if (read_type(root, path, &type) != CP_OK) return CP_ERR;
    const cp_peft_method *method = cp_peft_method_find(type);
    if (!method) {
        char list[256];
        return cp_error("%s: peft_type is \"%s\", expected %s (the PEFT methods cpeft supports)", path, type,
                        cp_peft_supported_types(list, sizeof list));
    }
    return method->config_from_json(root, path, out);
}

cp_status cp_peft_config_load(const char *path, cp_peft_config **out) {
    cJSON *root;
    *out = NULL;
    if (cp_json_read_file(path, &root) != CP_OK) return CP_ERR;
    cp_status st = cp_peft_config_from_json(root, path, out);
    cJSON_Delete(root);
    return st;
}

char *cp_peft_config_to_json(const cp_peft_config *cfg) { return cfg->method->config_to_json(cfg); }
cp_peft_config *cp_peft_config_copy(const cp_peft_config *cfg) { return cfg->method->config_copy(cfg); }

void cp_peft_config_free(cp_peft_config *cfg) {
    if (cfg) cfg->method->config_free(cfg);
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? cp_strdup(s) : NULL; }

void cp_peft_free_list(char **list, int n) {
    for (int i = 0; i < n; i++) cp_free(list[i]);
    cp_free(list);
}

char **cp_peft_copy_list(char *const *src, int n) {
    if (!src) return NULL;
    char **dst = cp_calloc((size_t)(n ? n : 1), sizeof *dst, "a string list");
    for (int i = 0; dst && i < n; i++) dst[i] = cp_strdup(src[i]);
    return dst;
}

cp_status cp_peft_read_string_list(const cJSON *v, const char *key, const char *path, char ***out, int *n) {
    *out = NULL;
    *n = 0;
    if (!cJSON_IsArray(v)) return cp_error("%s: field \"%s\": expected a list of strings, found %s", path, key, cp_json_type_name(v));
    int count = cJSON_GetArraySize(v);
    char **list = cp_calloc((size_t)(count ? count : 1), sizeof *list, key);
    if (!list) return CP_ERR;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsString(it)) {
            cp_peft_free_list(list, i);
            return cp_error("%s: field \"%s\": entry %d is %s, expected a string", path, key, i, cp_json_type_name(it));
        }
        list[i++] = cp_strdup(it->valuestring);
    }
    *out = list;
    *n = count;
    return CP_OK;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

cJSON *cp_peft_string_list_json(char *const *list, int n, int sorted) {
    char **copy = cp_malloc((size_t)(n ? n : 1) * sizeof *copy, "a list");
    if (!copy) return NULL;
    memcpy(copy, list, (size_t)n * sizeof *copy);
    if (sorted) qsort(copy, (size_t)n, sizeof *copy, str_cmp);
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(copy[i]));
    cp_free(copy);
    return arr;
}

cJSON *cp_peft_string_or_null(const char *s) { return s ? cJSON_CreateString(s) : cJSON_CreateNull(); }

cJSON *cp_peft_py_float(double d) {
    char buf[40];
    return cJSON_CreateRaw(cp_py_float_repr(d, buf, sizeof buf));
}

cJSON *cp_peft_number(double d, int is_int) {
    if (is_int) { char buf[40]; snprintf(buf, sizeof buf, "%lld", (long long)d); return cJSON_CreateRaw(buf); }
    return cp_peft_py_float(d);
}

/* ---- the shared fields ------------------------------------------------------------------------- */

static const char *const common_keys[] = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "peft_version", "inference_mode",
    "modules_to_save", "auto_mapping",
};

int cp_peft_config_is_common_key(const char *key) {
    for (size_t i = 0; i < sizeof common_keys / sizeof *common_keys; i++)
        if (!strcmp(key, common_keys[i])) return 1;
    return 0;
}

/* auto_mapping: null, or {"base_model_class": ..., "parent_library": ...}; informational. */
static cp_status read_auto_mapping(cp_peft_config *cfg, const cJSON *root, const char *path) {
    const cJSON *v = cp_json_field(root, "auto_mapping");
    if (!v) return CP_OK;
    if (!cJSON_IsObject(v))
        return cp_error("%s: field \"auto_mapping\": expected null or an object, found %s", path, cp_json_type_name(v));
    const char *cls, *lib;
    if (cp_json_get_string(v, "base_model_class", NULL, 0, &cls, path) != CP_OK ||
        cp_json_get_string(v, "parent_library", NULL, 0, &lib, path) != CP_OK)
        return CP_ERR;
    cfg->auto_mapping_class = dup_or_null(cls);
    cfg->auto_mapping_library = dup_or_null(lib);
    return CP_OK;
}

static cp_status read_optional_string(const cJSON *root, const char *key, const char *path, char **out) {
    const char *s;
    if (cp_json_get_string(root, key, NULL, 0, &s, path) != CP_OK) return CP_ERR;
    *out = dup_or_null(s);
    return CP_OK;
}

/* The PeftModelFor<task> that PEFT builds around every config it reads (get_peft_model,
 * from_pretrained, load_adapter) appends its head names to modules_to_save, even when they are there
 * already: a SEQ_CLS adapter saved by PEFT and loaded again holds "classifier", "score" twice, and
 * PEFT saves it so. They match no module of a causal LM. */
cp_status cp_peft_config_add_task_heads(cp_peft_config *cfg) {
    int t = task_index(cfg->task_type), n = 0;
    while (t >= 0 && task_types[t].heads[n]) n++;
    if (!n) return CP_OK;
    char **list = cp_realloc(cfg->modules_to_save, (size_t)(cfg->n_modules_to_save + n) * sizeof *list, "modules_to_save");
    if (!list) return CP_ERR;
    cfg->modules_to_save = list;
    for (int i = 0; i < n; i++)
        if (!(list[cfg->n_modules_to_save++] = cp_strdup(task_types[t].heads[i]))) return CP_ERR;
    /* PeftModelForSequenceClassification extends modules_to_save before BaseTuner injects the adapter
     * (the heads are then never targets); PeftModelForTokenClassification after, so a target list that
     * names the classifier wraps it first and the modules_to_save wrapper then refuses it. */
    cfg->n_heads_after_targets = !strcmp(cfg->task_type, "TOKEN_CLS") ? n : 0;
    return CP_OK;
}

cp_status cp_peft_config_read_common(cp_peft_config *cfg, const cJSON *root, const char *path) {
    if (read_auto_mapping(cfg, root, path) != CP_OK ||
        cp_json_get_bool(root, "inference_mode", 0, 0, &cfg->inference_mode, path) != CP_OK ||
        read_optional_string(root, "task_type", path, &cfg->task_type) != CP_OK ||
        read_optional_string(root, "base_model_name_or_path", path, &cfg->base_model_name_or_path) != CP_OK ||
        read_optional_string(root, "revision", path, &cfg->revision) != CP_OK ||
        read_optional_string(root, "peft_version", path, &cfg->peft_version) != CP_OK)
        return CP_ERR;
    if (cfg->task_type && task_index(cfg->task_type) < 0)
        return cp_error("%s: Invalid task type: '%s'. Must be one of the following task types: SEQ_CLS, SEQ_2_SEQ_LM, CAUSAL_LM, "
                        "TOKEN_CLS, QUESTION_ANS, FEATURE_EXTRACTION.", path, cfg->task_type);
    const cJSON *v = cp_json_field(root, "modules_to_save");
    if (v && cp_peft_read_string_list(v, "modules_to_save", path, &cfg->modules_to_save, &cfg->n_modules_to_save) != CP_OK)
        return CP_ERR;
    return cp_peft_config_add_task_heads(cfg);
}

cp_status cp_peft_config_write_common(const cp_peft_config *cfg, cJSON *o) {
    if (cfg->auto_mapping_class || cfg->auto_mapping_library) {
        cJSON *am = cJSON_CreateObject();
        cJSON_AddItemToObject(am, "base_model_class", cp_peft_string_or_null(cfg->auto_mapping_class));
        cJSON_AddItemToObject(am, "parent_library", cp_peft_string_or_null(cfg->auto_mapping_library));
        cJSON_AddItemToObject(o, "auto_mapping", am);
    } else {
        cJSON_AddItemToObject(o, "auto_mapping", cJSON_CreateNull());
    }
    cJSON_AddItemToObject(o, "base_model_name_or_path", cp_peft_string_or_null(cfg->base_model_name_or_path));
    cJSON_AddItemToObject(o, "inference_mode", cJSON_CreateTrue()); /* PEFT always saves true */
    cJSON_AddItemToObject(o, "modules_to_save",
                          cfg->modules_to_save ? cp_peft_string_list_json(cfg->modules_to_save, cfg->n_modules_to_save, 0)
                                               : cJSON_CreateNull());
    cJSON_AddItemToObject(o, "peft_type", cJSON_CreateString(cfg->method->peft_type));
    cJSON_AddItemToObject(o, "peft_version", cJSON_CreateString(cfg->peft_version ? cfg->peft_version : CP_PEFT_VERSION));
    cJSON_AddItemToObject(o, "revision", cp_peft_string_or_null(cfg->revision));
    cJSON_AddItemToObject(o, "task_type", cp_peft_string_or_null(cfg->task_type));
    return CP_OK;
}

cp_status cp_peft_config_copy_common(cp_peft_config *dst, const cp_peft_config *src) {
    *dst = *src;
    dst->task_type = dup_or_null(src->task_type);
    dst->base_model_name_or_path = dup_or_null(src->base_model_name_or_path);
    dst->revision = dup_or_null(src->revision);
    dst->peft_version = dup_or_null(src->peft_version);
    dst->modules_to_save = cp_peft_copy_list(src->modules_to_save, src->n_modules_to_save);
    dst->auto_mapping_class = dup_or_null(src->auto_mapping_class);
    dst->auto_mapping_library = dup_or_null(src->auto_mapping_library);
    return CP_OK;
}

void cp_peft_config_free_common(cp_peft_config *cfg) {
    const cp_peft_method *method = cfg->method;
    cp_free(cfg->task_type);
    cp_free(cfg->base_model_name_or_path);
    cp_free(cfg->revision);
    cp_free(cfg->peft_version);
    cp_peft_free_list(cfg->modules_to_save, cfg->n_modules_to_save);
    cp_free(cfg->auto_mapping_class);
    cp_free(cfg->auto_mapping_library);
    memset(cfg, 0, sizeof *cfg);
    cfg->method = method;
}
