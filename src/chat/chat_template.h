/*
 * chat_template.h — a model's chat template (tokenizer_config.json's "chat_template", a
 * chat_template.jinja file, or one named template of a list) rendered as transformers'
 * apply_chat_template renders it: messages, add_generation_prompt, bos_token / eos_token, and the
 * byte spans of {% generation %} blocks (return_assistant_tokens_mask).
 *
 * The template text runs on cpeft's Jinja subset (jinja.h); what the subset lacks is refused by name
 * with the template's line.
 */
#ifndef CP_CHAT_CHAT_TEMPLATE_H
#define CP_CHAT_CHAT_TEMPLATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "core/error.h"

typedef struct cp_chat_template cp_chat_template;

typedef struct {
    size_t start, end; /* bytes [start, end) of the rendered text */
} cp_chat_span;

/* Parses template text; `name` names it in messages ("tokenizer_config.json", a file path). */
cp_status cp_chat_template_parse(cp_chat_template **out, const char *text, size_t len, const char *name);
/* The template of a model directory, as transformers finds it: chat_template.jinja when present,
 * else tokenizer_config.json's "chat_template" (a string, or a list of {"name", "template"} from which
 * `which` is picked, "default" when which is NULL). Also reads bos_token / eos_token there (strings or
 * {"content": ...}). An error says when the directory has no template. */
cp_status cp_chat_template_load_dir(cp_chat_template **out, const char *dir, const char *which);
/* A template file: a .jinja file (its text), or a tokenizer_config.json (its "chat_template", with its
 * bos / eos tokens, as cp_chat_template_load_dir reads it). A .jinja file leaves bos / eos unset. */
cp_status cp_chat_template_load_file(cp_chat_template **out, const char *path);
/* Sets the bos_token / eos_token strings the template sees (NULL: undefined). */
cp_status cp_chat_template_set_tokens(cp_chat_template *t, const char *bos, const char *eos);
/* Whether the template has {% generation %} blocks (what assistant-only loss needs). */
int cp_chat_template_has_generation(const cp_chat_template *t);
/* Renders messages (a JSON array of {"role", "content", ...}); extra (an object or NULL) adds
 * variables (tools, enable_thinking, ...). *text is cp_malloc'd and NUL-terminated; *spans (cp_free,
 * may be NULL when spans is NULL) are the generation blocks in order. */
cp_status cp_chat_template_render(const cp_chat_template *t, const cJSON *messages, int add_generation_prompt,
                                  const cJSON *extra, char **text, size_t *len, cp_chat_span **spans, size_t *n_spans);
void cp_chat_template_free(cp_chat_template *t);

#endif
