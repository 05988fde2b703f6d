/*
 * json.h — reading JSON files (config.json, adapter_config.json, index files) with errors that
 * name the file, the line and the field. Parsing is cJSON's; this layer adds typed getters that
 * say what was expected and what was found. A JSON null counts as absent, as in Hugging Face
 * configs ("intermediate_size": null means "use the default").
 *
 * Duplicate keys: cJSON keeps every member and its lookups find the first; Python's json.loads,
 * which transformers and PEFT read these files with, keeps the last value (at the key's first
 * position, as a dict). cp_json_parse and cp_json_read_file return trees already collapsed that
 * way (cp_json_keep_last), so every lookup and every walk over members agrees with Python.
 *
 * Numbers: a JSON number is a double; converting one that is out of the target type's range (1e30,
 * 3e9 to int32, inf from 1e400) is undefined behaviour in C. Read integers with cp_json_get_int or
 * cp_json_int_in, never with a cast of valuedouble.
 */
#ifndef CP_IO_JSON_H
#define CP_IO_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

/* Largest integer a JSON number (a double) holds exactly: 2^53. */
#define CP_JSON_MAX_EXACT_INT 9007199254740992LL

/* Reads and parses a whole JSON file; on a syntax error names the file, line and column. */
cp_status cp_json_read_file(const char *path, cJSON **out);
/* Parses text; `name` is used in error messages. */
cp_status cp_json_parse(const char *text, size_t len, const char *name, cJSON **out);
/* Collapses duplicate keys in every object of the tree as Python's dict does (last value, first
 * position). cp_json_parse already does it; for trees parsed by cJSON directly. */
cp_status cp_json_keep_last(cJSON *root);

/* Whether item is a number holding an integer in [min, max] (no fraction, finite; |bounds| at
 * most 2^53); if so, *out is set. */
int cp_json_int_in(const cJSON *item, int64_t min, int64_t max, int64_t *out);
/* Describes a value for a message: an integral number as an integer ("-7", "3000000000"), any other
 * as Python's repr ("1e+30", "0.5", "inf"), else its type ("a string"). Returns buf. */
const char *cp_json_describe(const cJSON *item, char *buf, size_t size);

/* Typed field getters. `obj` must be an object. When the field is absent or null, *out is set to
 * `dflt` (or an error is raised when `required`). `file` is used in error messages.
 * cp_json_get_int accepts integers in [-2^53, 2^53]; the caller checks its own range. */
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
