/*
 * prompt_config.c — adapter_config.json for prompt tuning, p-tuning and prefix tuning: parsing with
 * errors that name the file and field, writing byte-for-byte as PEFT's save_pretrained does, PEFT's
 * checks, and the fields PEFT derives from the model. See prompt_config.h.
 */
#include "peft/prompt_config.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "peft/peft_config.h"

#include <stdio.h>
#include <string.h>

static char *dup_or_null(const char *s) { return s ? cp_strdup(s) : NULL; }

static const cp_peft_method *method_of(cp_prompt_kind kind) {
    return kind == CP_PROMPT_TUNING ? &cp_prompt_tuning_method : kind == CP_P_TUNING ? &cp_p_tuning_method : &cp_prefix_tuning_method;
}

cp_prompt_config *cp_prompt_config_new(cp_prompt_kind kind) {
    cp_prompt_config *cfg = cp_calloc(1, sizeof *cfg, "a prompt-learning config");
    if (!cfg) return NULL;
    cfg->method = method_of(kind);
    cfg->kind = kind;
    cfg->num_virtual_tokens = cfg->token_dim = cfg->num_transformer_submodules = CP_PROMPT_UNSET;
    cfg->num_attention_heads = cfg->num_layers = cfg->encoder_hidden_size = CP_PROMPT_UNSET;
    cfg->prompt_tuning_init = CP_PROMPT_INIT_RANDOM;
    cfg->encoder_num_layers = 2;
    cfg->encoder_dropout = 0.0;
    return cfg;
}

void cp_prompt_config_free(cp_prompt_config *cfg) {
    if (!cfg) return;
    cp_peft_config_free_common(&cfg->base);
    cp_free(cfg->prompt_tuning_init_text);
    cp_free(cfg->tokenizer_name_or_path);
    cJSON_Delete(cfg->tokenizer_kwargs);
    cp_free(cfg);
}

cp_prompt_config *cp_prompt_config_copy(const cp_prompt_config *src) {
    cp_prompt_config *cfg = cp_malloc(sizeof *cfg, "a prompt-learning config");
    if (!cfg) return NULL;
    *cfg = *src;
    cp_peft_config_copy_common(&cfg->base, &src->base);
    cfg->prompt_tuning_init_text = dup_or_null(src->prompt_tuning_init_text);
    cfg->tokenizer_name_or_path = dup_or_null(src->tokenizer_name_or_path);
    cfg->tokenizer_kwargs = src->tokenizer_kwargs ? cJSON_Duplicate(src->tokenizer_kwargs, 1) : NULL;
    return cfg;
}

/* ---- reading ----------------------------------------------------------------------------------- */

static const char *const shared_keys[] = {"num_virtual_tokens", "token_dim", "num_transformer_submodules",
                                          "num_attention_heads", "num_layers"};
static const char *const tuning_keys[] = {"prompt_tuning_init", "prompt_tuning_init_text", "tokenizer_name_or_path",
                                          "tokenizer_kwargs"};
static const char *const encoder_keys[] = {"encoder_reparameterization_type", "encoder_hidden_size", "encoder_num_layers",
                                           "encoder_dropout"};
static const char *const prefix_keys[] = {"init_weights", "encoder_hidden_size", "prefix_projection"};

#define IN(list) in_list(key, list, sizeof list / sizeof *list)
static int in_list(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

static int is_known(cp_prompt_kind kind, const char *key) {
    if (cp_peft_config_is_common_key(key) || IN(shared_keys)) return 1;
    return kind == CP_PROMPT_TUNING ? IN(tuning_keys) : kind == CP_P_TUNING ? IN(encoder_keys) : IN(prefix_keys);
}

/* An integer field that may be null (None): *out stays CP_PROMPT_UNSET then. */
static cp_status read_optional_int(const cJSON *root, const char *key, const char *path, int64_t *out) {
    const cJSON *v = cp_json_field(root, key);
    if (!v) return CP_OK;
    char what[48];
    if (!cp_json_int_in(v, -CP_JSON_MAX_EXACT_INT, CP_JSON_MAX_EXACT_INT, out))
        return cp_error("%s: field \"%s\": expected an integer or null, found %s", path, key, cp_json_describe(v, what, sizeof what));
    return CP_OK;
}

static cp_status read_optional_string(const cJSON *root, const char *key, const char *path, char **out) {
    const char *s;
    if (cp_json_get_string(root, key, NULL, 0, &s, path) != CP_OK) return CP_ERR;
    *out = dup_or_null(s);
    return CP_OK;
}

/* An enum field given as one of its values' strings. */
static cp_status read_choice(const cJSON *root, const char *key, const char *path, const char *const *choices, int n,
                             int dflt, int *out) {
    const char *s;
    *out = dflt;
    if (cp_json_get_string(root, key, NULL, 0, &s, path) != CP_OK) return CP_ERR;
    if (!s) return CP_OK;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, choices[i])) { *out = i; return CP_OK; }
    char list[128] = "";
    size_t k = 0;
    for (int i = 0; i < n && k < sizeof list; i++) k += (size_t)snprintf(list + k, sizeof list - k, "%s\"%s\"", i ? ", " : "", choices[i]);
    return cp_error("%s: field \"%s\": \"%s\" is not one of %s", path, key, s, list);
}

static const char *const init_names[] = {"RANDOM", "TEXT", "SAMPLE_VOCAB"};
static const char *const encoder_names[] = {"MLP", "LSTM"};

static cp_status read_method_fields(cp_prompt_config *cfg, const cJSON *root, const char *path) {
    int choice;
    switch (cfg->kind) {
    case CP_PROMPT_TUNING: {
        if (read_choice(root, "prompt_tuning_init", path, init_names, 3, CP_PROMPT_INIT_RANDOM, &choice) != CP_OK ||
            read_optional_string(root, "prompt_tuning_init_text", path, &cfg->prompt_tuning_init_text) != CP_OK ||
            read_optional_string(root, "tokenizer_name_or_path", path, &cfg->tokenizer_name_or_path) != CP_OK)
            return CP_ERR;
        cfg->prompt_tuning_init = (cp_prompt_init)choice;
        const cJSON *v = cp_json_field(root, "tokenizer_kwargs");
        if (v && !cJSON_IsObject(v))
            return cp_error("%s: field \"tokenizer_kwargs\": expected an object or null, found %s", path, cp_json_type_name(v));
        if (v && !(cfg->tokenizer_kwargs = cJSON_Duplicate(v, 1))) return cp_error("out of memory reading %s", path);
        return CP_OK;
    }
    case CP_P_TUNING:
        if (read_choice(root, "encoder_reparameterization_type", path, encoder_names, 2, 0, &choice) != CP_OK ||
            read_optional_int(root, "encoder_hidden_size", path, &cfg->encoder_hidden_size) != CP_OK ||
            cp_json_get_int(root, "encoder_num_layers", 2, 0, &cfg->encoder_num_layers, path) != CP_OK ||
            cp_json_get_double(root, "encoder_dropout", 0.0, 0, &cfg->encoder_dropout, path) != CP_OK)
            return CP_ERR;
        cfg->encoder_lstm = choice == 1;
        return CP_OK;
    case CP_PREFIX_TUNING: {
        const char *zero[] = {"zero"};
        choice = -1;
        if (read_choice(root, "init_weights", path, zero, 1, -1, &choice) != CP_OK ||
            read_optional_int(root, "encoder_hidden_size", path, &cfg->encoder_hidden_size) != CP_OK ||
            cp_json_get_bool(root, "prefix_projection", 0, 0, &cfg->prefix_projection, path) != CP_OK)
            return CP_ERR;
        cfg->init_weights_zero = choice == 0;
        return CP_OK;
    }
    }
    return CP_OK;
}

cp_status cp_prompt_config_from_json(cp_prompt_kind kind, const cJSON *root, const char *path, cp_prompt_config **out) {
    *out = NULL;
    cp_prompt_config *cfg = cp_prompt_config_new(kind);
    if (!cfg) return CP_ERR;
    if (cp_peft_config_check_type(root, path, cfg->method) != CP_OK) goto fail;
    for (const cJSON *it = root->child; it; it = it->next)
        if (!is_known(kind, it->string)) cp_warn("%s: unknown key \"%s\" ignored (as PEFT does)", path, it->string);
    /* PeftModelFor<task> appends its heads to modules_to_save twice for prompt learning: in __init__ and in
     * the add_adapter that PeftModel.__init__ calls for these methods (a SEQ_CLS file holds them twice) */
    if (cp_peft_config_read_common(&cfg->base, root, path) != CP_OK || cp_peft_config_add_task_heads(&cfg->base) != CP_OK) goto fail;
    int64_t *ints[] = {&cfg->num_virtual_tokens, &cfg->token_dim, &cfg->num_transformer_submodules, &cfg->num_attention_heads,
                       &cfg->num_layers};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (read_optional_int(root, shared_keys[i], path, ints[i]) != CP_OK) goto fail;
    if (read_method_fields(cfg, root, path) != CP_OK || cp_prompt_config_validate(cfg, path) != CP_OK) goto fail;
    *out = cfg;
    return CP_OK;
fail:
    cp_prompt_config_free(cfg);
    return CP_ERR;
}

/* ---- PEFT's checks ------------------------------------------------------------------------------ */

cp_status cp_prompt_config_validate(const cp_prompt_config *cfg, const char *where) {
    if (cfg->num_virtual_tokens == CP_PROMPT_UNSET)
        return cp_error("%s: num_virtual_tokens is null: a %s adapter needs the number of virtual tokens", where,
                        cfg->method->peft_type);
    if (cfg->num_virtual_tokens < 1)
        return cp_error("%s: num_virtual_tokens is %lld, expected at least 1", where, (long long)cfg->num_virtual_tokens);
    const struct { const char *key; int64_t v; } positive[] = {
        {"token_dim", cfg->token_dim}, {"num_transformer_submodules", cfg->num_transformer_submodules},
        {"num_attention_heads", cfg->num_attention_heads}, {"num_layers", cfg->num_layers},
        {"encoder_hidden_size", cfg->encoder_hidden_size}};
    for (size_t i = 0; i < sizeof positive / sizeof *positive; i++)
        if (positive[i].v != CP_PROMPT_UNSET && positive[i].v < 1)
            return cp_error("%s: %s is %lld, expected a positive integer (or null: from the model)", where, positive[i].key,
                            (long long)positive[i].v);
    if (cfg->num_transformer_submodules > 2)
        return cp_error("%s: num_transformer_submodules is %lld, expected 1 (decoder or encoder) or 2 (encoder-decoder)", where,
                        (long long)cfg->num_transformer_submodules);
    if (cfg->kind == CP_PROMPT_TUNING) {
        const int text = cfg->prompt_tuning_init == CP_PROMPT_INIT_TEXT;
        if (text && (!cfg->tokenizer_name_or_path || !cfg->tokenizer_name_or_path[0]))
            return cp_error("%s: When prompt_tuning_init='TEXT', tokenizer_name_or_path can't be %s.", where,
                            cfg->tokenizer_name_or_path ? "''" : "None");
        if (text && !cfg->prompt_tuning_init_text)
            return cp_error("%s: When prompt_tuning_init='TEXT', prompt_tuning_init_text can't be None.", where);
        if (text && !cfg->prompt_tuning_init_text[0])
            return cp_error("%s: prompt_tuning_init_text is empty: TEXT init copies the embeddings of its tokens (PEFT divides "
                            "by their number)", where);
        if (cfg->tokenizer_kwargs && cJSON_GetArraySize(cfg->tokenizer_kwargs) && !text)
            return cp_error("%s: tokenizer_kwargs only valid when using prompt_tuning_init='TEXT'.", where);
    }
    if (cfg->kind == CP_P_TUNING) {
        /* the MLP ignores it (PEFT warns); the LSTM's parameters are 8 per layer, within CP_PEFT_MAX_TENSORS */
        if (cfg->encoder_lstm && (cfg->encoder_num_layers < 1 || cfg->encoder_num_layers > 7))
            return cp_error("%s: encoder_num_layers is %lld, expected 1 to 7 (the LSTM encoder's layers)", where,
                            (long long)cfg->encoder_num_layers);
        if (!(cfg->encoder_dropout >= 0 && cfg->encoder_dropout <= 1))
            return cp_error("%s: encoder_dropout is %g, expected a probability in [0, 1]", where, cfg->encoder_dropout);
    }
    return CP_OK;
}

/* ---- from the model ------------------------------------------------------------------------------ */

/* Whether the model's config dict (transformers' to_dict) has `key`: config.json, or a field the
 * config class always sets — num_key_value_heads for the Llama family, head_dim for Llama and
 * Mistral (their classes fill it from hidden_size / num_attention_heads; Qwen2's has none; Qwen3's
 * defaults to 128, Gemma's and Gemma2's to 256, Glm's to 128; Phi3's has none). */
static int model_config_has(const cp_model *m, const char *key) {
    const char *t = m->config.model_type;
    const int llama = !strcmp(t, "llama") || !strcmp(t, "mistral") || !strcmp(t, "qwen3") || !strcmp(t, "gemma") || !strcmp(t, "gemma2") ||
                      !strcmp(t, "glm");
    const int family = llama || !strcmp(t, "qwen2") || !strcmp(t, "phi3");
    if (!strcmp(key, "num_key_value_heads") && family) return 1;
    if (!strcmp(key, "head_dim") && llama) return 1;
    char *path = cp_path_join(m->dir, "config.json");
    cJSON *root = NULL;
    int has = 0;
    if (path && cp_path_exists(path) && cp_json_read_file(path, &root) == CP_OK) has = cp_json_field(root, key) != NULL;
    cJSON_Delete(root);
    cp_free(path);
    return has;
}

cp_status cp_prompt_config_resolve(cp_prompt_config *cfg, const cp_model *m) {
    const cp_model_config *mc = &m->config;
    if (cfg->num_layers == CP_PROMPT_UNSET) cfg->num_layers = mc->num_layers;
    if (cfg->token_dim == CP_PROMPT_UNSET) cfg->token_dim = mc->hidden_size;
    if (cfg->num_attention_heads == CP_PROMPT_UNSET) cfg->num_attention_heads = mc->num_heads;
    /* grouped-query attention (PEFT #1901): the prefix is as wide as the layers' keys and values */
    if (cfg->kind == CP_PREFIX_TUNING && model_config_has(m, "num_key_value_heads")) {
        const int64_t head_dim = model_config_has(m, "head_dim") ? mc->head_dim : cfg->token_dim / cfg->num_attention_heads;
        cfg->token_dim = head_dim * mc->num_kv_heads;
        cfg->num_attention_heads = mc->num_kv_heads;
    }
    if (cfg->kind != CP_PROMPT_TUNING && cfg->encoder_hidden_size == CP_PROMPT_UNSET) cfg->encoder_hidden_size = cfg->token_dim;
    if (cfg->num_transformer_submodules == CP_PROMPT_UNSET)
        cfg->num_transformer_submodules = cfg->task_type && !strcmp(cfg->task_type, "SEQ_2_SEQ_LM") ? 2 : 1;
    return CP_OK;
}

int64_t cp_prompt_config_rows(const cp_prompt_config *cfg) {
    return cfg->kind == CP_PREFIX_TUNING ? cfg->num_virtual_tokens : cfg->num_virtual_tokens * cfg->num_transformer_submodules;
}

int64_t cp_prompt_config_width(const cp_prompt_config *cfg) {
    return cfg->kind == CP_PREFIX_TUNING ? cfg->num_layers * 2 * cfg->token_dim : cfg->token_dim;
}

/* ---- writing ------------------------------------------------------------------------------------- */

static cJSON *int_or_null(int64_t v) { return v == CP_PROMPT_UNSET ? cJSON_CreateNull() : cp_peft_number((double)v, 1); }

char *cp_prompt_config_to_json(const cp_prompt_config *cfg) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cp_peft_config_write_common(&cfg->base, o);
    const int64_t shared[] = {cfg->num_virtual_tokens, cfg->token_dim, cfg->num_transformer_submodules,
                              cfg->num_attention_heads, cfg->num_layers};
    for (size_t i = 0; i < sizeof shared / sizeof *shared; i++) cJSON_AddItemToObject(o, shared_keys[i], int_or_null(shared[i]));
    switch (cfg->kind) {
    case CP_PROMPT_TUNING:
        cJSON_AddItemToObject(o, "prompt_tuning_init", cJSON_CreateString(init_names[cfg->prompt_tuning_init]));
        cJSON_AddItemToObject(o, "prompt_tuning_init_text", cp_peft_string_or_null(cfg->prompt_tuning_init_text));
        cJSON_AddItemToObject(o, "tokenizer_name_or_path", cp_peft_string_or_null(cfg->tokenizer_name_or_path));
        cJSON_AddItemToObject(o, "tokenizer_kwargs",
                              cfg->tokenizer_kwargs ? cJSON_Duplicate(cfg->tokenizer_kwargs, 1) : cJSON_CreateNull());
        break;
    case CP_P_TUNING:
        cJSON_AddItemToObject(o, "encoder_reparameterization_type", cJSON_CreateString(encoder_names[cfg->encoder_lstm]));
        cJSON_AddItemToObject(o, "encoder_hidden_size", int_or_null(cfg->encoder_hidden_size));
        cJSON_AddItemToObject(o, "encoder_num_layers", cp_peft_number((double)cfg->encoder_num_layers, 1));
        cJSON_AddItemToObject(o, "encoder_dropout", cp_peft_py_float(cfg->encoder_dropout));
        break;
    case CP_PREFIX_TUNING:
        cJSON_AddItemToObject(o, "init_weights", cfg->init_weights_zero ? cJSON_CreateString("zero") : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "encoder_hidden_size", int_or_null(cfg->encoder_hidden_size));
        cJSON_AddItemToObject(o, "prefix_projection", cJSON_CreateBool(cfg->prefix_projection));
        break;
    }
    char *text = cp_json_dump_python(o);
    cJSON_Delete(o);
    return text;
}
