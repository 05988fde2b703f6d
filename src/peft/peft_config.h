/*
 * peft_config.h — adapter_config.json for any method: peft_type picks the method, which reads the
 * rest; PeftConfig's shared fields (task_type, base_model_name_or_path, revision, peft_version,
 * inference_mode, modules_to_save, auto_mapping) are read and written here for every method, with
 * PEFT's task types and the PeftModel class each selects.
 */
#ifndef CP_PEFT_PEFT_CONFIG_H
#define CP_PEFT_PEFT_CONFIG_H

#include <cjson/cJSON.h>

#include "core/error.h"
#include "peft/method.h"

/* Reads adapter_config.json (`path` names it in errors): its peft_type must be one cpeft supports
 * (else: `peft_type is "X", expected "LORA"` listing them), whose method parses the rest. Free *out
 * with cp_peft_config_free. */
cp_status cp_peft_config_load(const char *path, cp_peft_config **out);
cp_status cp_peft_config_from_json(const cJSON *root, const char *path, cp_peft_config **out);
/* The method's text of the file (see cp_peft_method.config_to_json). */
char *cp_peft_config_to_json(const cp_peft_config *cfg);
cp_peft_config *cp_peft_config_copy(const cp_peft_config *cfg);
void cp_peft_config_free(cp_peft_config *cfg);

/* For a method's parser: checks that root's peft_type is `method`'s (the message above otherwise,
 * naming the expected type). */
cp_status cp_peft_config_check_type(const cJSON *root, const char *path, const cp_peft_method *method);
/* Whether `key` is one of PeftConfig's fields (read here, not by the method). */
int cp_peft_config_is_common_key(const char *key);
/* Reads the shared fields of root into cfg (whose shared fields are zero): modules_to_save gets the
 * task's head modules appended, as the PeftModelFor<task> PEFT builds does. */
cp_status cp_peft_config_read_common(cp_peft_config *cfg, const cJSON *root, const char *path);
/* Appends the task's head modules to modules_to_save, as the PeftModelFor<task> PEFT builds does (read_common
 * does it once; prompt-learning methods a second time, as PeftModel.__init__ calls the task class's add_adapter
 * for them, which appends them again). */
cp_status cp_peft_config_add_task_heads(cp_peft_config *cfg);
/* Adds the shared fields to o as PEFT writes them (peft_type the method's, inference_mode true). */
cp_status cp_peft_config_write_common(const cp_peft_config *cfg, cJSON *o);
/* Deep copy of the shared fields (dst's are overwritten) / free them (zeroed after). */
cp_status cp_peft_config_copy_common(cp_peft_config *dst, const cp_peft_config *src);
void cp_peft_config_free_common(cp_peft_config *cfg);

/* The PeftModel class PEFT builds for a task_type ("PeftModelForCausalLM", ...; "PeftModel" for none). */
const char *cp_peft_task_model_class(const char *task_type);

/* JSON helpers shared by the methods' config files. */
char **cp_peft_copy_list(char *const *src, int n);
void cp_peft_free_list(char **list, int n);
/* A list of strings; errors name `path` and `key`. */
cp_status cp_peft_read_string_list(const cJSON *v, const char *key, const char *path, char ***out, int *n);
/* A JSON array of the strings (sorted when `sorted`, as PEFT's set-valued fields are written). */
cJSON *cp_peft_string_list_json(char *const *list, int n, int sorted);
cJSON *cp_peft_string_or_null(const char *s);
/* A float as Python's repr writes it (0.0, 1e-05) / an int or a float as it was given. */
cJSON *cp_peft_py_float(double d);
cJSON *cp_peft_number(double d, int is_int);

#endif
