/*
 * json.h — reading JSON files (config.json, adapter_config.json, index files) with errors that
 * name the file, the line and the field. Parsing is cJSON's; this layer adds typed getters that
 * say what was expected and what was found. A JSON null counts as absent, as in Hugging Face
 * configs ("intermediate_size": null means "use the default").
 */
#ifndef CP_IO_JSON_H
#define CP_IO_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

/* Reads and parses a whole JSON file; on a syntax error names the file, line and column. */
cp_status cp_json_read_file(const char *path, cJSON **out);
/* Parses text; `name` is used in error messages. */
cp_status cp_json_parse(const char *text, size_t len, const char *name, cJSON **out);

/* Typed field getters. `obj` must be an object. When the field is absent or null, *out is set to
 * `dflt` (or an error is raised when `required`). `file` is used in error messages. */
cp_status cp_json_get_int(const cJSON *obj, const char *key, int64_t dflt, int required,
                          int64_t *out, const char *file);
cp_status cp_json_get_double(const cJSON *obj, const char *key, double dflt, int required,
                             double *out, const char *file);
cp_status cp_json_get_bool(const cJSON *obj, const char *key, int dflt, int required, int *out,
                           const char *file);
/* *out points into the cJSON tree (or is dflt). */
cp_status cp_json_get_string(const cJSON *obj, const char *key, const char *dflt, int required,
                             const char **out, const char *file);
/* The field when present and not null, else NULL. */
const cJSON *cp_json_field(const cJSON *obj, const char *key);
/* Serialises like Python's json.dumps(obj, indent=2, sort_keys=True) (PEFT's adapter_config.json):
 * keys sorted, two-space indent, ", " between items on new lines, ": " after keys, empty
 * containers as {} / [], non-ASCII escaped as \uXXXX. Numbers print as integers when integral and
 * as Python's float repr otherwise; a cJSON Raw item prints verbatim (use it for floats that must
 * keep a ".0", such as 0.0). No trailing newline. Returns a malloc'd string or NULL. */
char *cp_json_dump_python(const cJSON *item);

/* "an integer", "a string", ... for messages. */
const char *cp_json_type_name(const cJSON *item);

#endif
