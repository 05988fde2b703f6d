/*
 * config.c — config.json: the fields every architecture shares, and the dispatch to the
 * architecture's own parser by model_type (see arch.h for the registry).
 */
#include "models/config.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/arch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cp_status cp_config_positive(const cJSON *root, const char *key, int64_t dflt, int64_t max, int64_t *out,
                             const char *file) {
    if (cp_json_get_int(root, key, dflt, dflt <= 0, out, file) != CP_OK) return CP_ERR;
    if (*out <= 0 || *out > max)
        return cp_error("%s: field \"%s\" must be a positive integer of at most %lld, found %lld", file, key,
                        (long long)max, (long long)*out);
    return CP_OK;
}

/* A token id field: an integer, a list of them (some configs list several eos ids: the first is
 * kept), or null. Each must be a 32-bit token id; -1, which some converted configs write for "no
 * pad token", reads as unset. An id at or beyond vocab_size is only warned about (cp_config_from_json). */
static cp_status read_token_id(const cJSON *root, const char *key, int64_t *out, const char *file) {
    const cJSON *v = cp_json_field(root, key);
    *out = CP_TOKEN_UNSET;
    if (!v) return CP_OK;
    if (!cJSON_IsNumber(v) && !cJSON_IsArray(v))
        return cp_error("%s: field \"%s\": expected a token id or a list of ids, found %s", file, key,
                        cp_json_type_name(v));
    const cJSON *first = cJSON_IsArray(v) ? v->child : v;
    int i = 0;
    for (const cJSON *it = first; it; it = cJSON_IsArray(v) ? it->next : NULL, i++) {
        int64_t id;
        if (!cp_json_int_in(it, -1, INT32_MAX, &id)) {
            char what[48], where[32] = "";
            if (cJSON_IsArray(v)) snprintf(where, sizeof where, "[%d]", i);
            return cp_error("%s: field \"%s\"%s: expected a token id (an integer from 0 to %d), found %s", file,
                            key, where, INT32_MAX, cp_json_describe(it, what, sizeof what));
        }
        if (it == first) *out = id;
    }
    return CP_OK;
}

cp_status cp_config_token_id(const cJSON *root, const char *key, int64_t dflt, int64_t *out, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v) { *out = dflt; return CP_OK; }
    return read_token_id(root, key, out, file); /* null: CP_TOKEN_UNSET, as transformers keeps None */
}

cp_status cp_config_read_common(cp_model_config *cfg, const cJSON *root, const char *file,
                                const char *default_activation) {
    const cJSON *archs = cp_json_field(root, "architectures");
    if (archs) {
        const cJSON *first = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
        if (!first || !cJSON_IsString(first))
            return cp_error("%s: field \"architectures\": expected a list of class names", file);
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s", first->valuestring);
    }
    const char *dtype;
    if (cp_json_get_string(root, "dtype", NULL, 0, &dtype, file) != CP_OK) return CP_ERR;
    if (!dtype && cp_json_get_string(root, "torch_dtype", NULL, 0, &dtype, file) != CP_OK) return CP_ERR;
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dtype ? dtype : "");

    if (read_token_id(root, "bos_token_id", &cfg->bos_token_id, file) != CP_OK ||
        read_token_id(root, "eos_token_id", &cfg->eos_token_id, file) != CP_OK ||
        read_token_id(root, "pad_token_id", &cfg->pad_token_id, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_bool(root, "tie_word_embeddings", 1, 0, &cfg->tie_word_embeddings, file) != CP_OK)
        return CP_ERR;

    const char *act;
    if (cp_json_get_string(root, "activation_function", default_activation, 0, &act, file) != CP_OK)
        return CP_ERR;
    int a = cp_activation_from_name(act);
    if (a < 0)
        return cp_error("%s: field \"activation_function\": unknown activation \"%s\" (supported: %s)",
                        file, act, cp_activation_supported());
    cfg->activation = (cp_activation)a;
    return CP_OK;
}

/* id2label: an object {"0": "NEG", "1": "POS"} whose keys are the ids 0..n-1. */
static cp_status read_id2label(cp_model_config *cfg, const cJSON *v, const char *file) {
    if (!cJSON_IsObject(v)) return cp_error("%s: field \"id2label\": expected an object {\"0\": name, ...}, found %s", file, cp_json_type_name(v));
    const int64_t n = cJSON_GetArraySize(v);
    if (n < 1 || n > CP_MAX_VOCAB) return cp_error("%s: field \"id2label\": %lld labels (expected at least 1)", file, (long long)n);
    cfg->id2label = cp_calloc((size_t)n, sizeof *cfg->id2label, "id2label");
    if (!cfg->id2label) return CP_ERR;
    cfg->num_labels = n;
    for (const cJSON *it = v->child; it; it = it->next) {
        char *end = NULL;
        long long id = strtoll(it->string, &end, 10);
        if (!*it->string || *end || id < 0 || id >= n)
            return cp_error("%s: field \"id2label\": key \"%s\" is not a class id in [0, %lld)", file, it->string, (long long)n);
        if (!cJSON_IsString(it)) return cp_error("%s: field \"id2label\": entry \"%s\" is not a string", file, it->string);
        if (cfg->id2label[id]) return cp_error("%s: field \"id2label\": class id %lld appears twice", file, id);
        if (!(cfg->id2label[id] = cp_strdup(it->valuestring))) return CP_ERR;
    }
    return CP_OK;
}

cp_status cp_config_read_task(cp_model_config *cfg, const cJSON *root, const char *file) {
    const cJSON *v = cp_json_field(root, "id2label");
    int64_t n;
    if (cp_json_get_int(root, "num_labels", 2, 0, &n, file) != CP_OK) return CP_ERR;
    if (v && !cJSON_IsNull(v)) {
        if (read_id2label(cfg, v, file) != CP_OK) return CP_ERR;
        if (cp_json_field(root, "num_labels") && n != cfg->num_labels)
            cp_warn("%s: num_labels is %lld but id2label has %lld labels: id2label wins, as in transformers", file,
                    (long long)n, (long long)cfg->num_labels);
    } else {
        if (n < 1 || n > CP_MAX_VOCAB) return cp_error("%s: field \"num_labels\": %lld (expected at least 1)", file, (long long)n);
        cfg->num_labels = n;
        cfg->id2label = cp_calloc((size_t)n, sizeof *cfg->id2label, "id2label");
        if (!cfg->id2label) return CP_ERR;
        for (int64_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "LABEL_%lld", (long long)i);
            if (!(cfg->id2label[i] = cp_strdup(name))) return CP_ERR;
        }
    }
    const cJSON *l2i = cp_json_field(root, "label2id");
    if (l2i && !cJSON_IsNull(l2i)) {
        if (!cJSON_IsObject(l2i)) return cp_error("%s: field \"label2id\": expected an object {name: id, ...}, found %s", file, cp_json_type_name(l2i));
        for (const cJSON *it = l2i->child; it; it = it->next) {
            int64_t id;
            if (!cp_json_int_in(it, 0, cfg->num_labels - 1, &id))
                return cp_error("%s: field \"label2id\": \"%s\" maps to no class id in [0, %lld)", file, it->string, (long long)cfg->num_labels);
        }
    }
    const char *pt;
    if (cp_json_get_string(root, "problem_type", NULL, 0, &pt, file) != CP_OK) return CP_ERR;
    if (cp_problem_type_parse(pt, &cfg->problem_type) != CP_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cp_last_error());
        return cp_error("%s: field \"problem_type\": %s", file, msg);
    }
    const cJSON *cd = cp_json_field(root, "classifier_dropout");
    cfg->classifier_dropout = -1;
    if (cd && !cJSON_IsNull(cd) && cp_json_get_double(root, "classifier_dropout", 0, 0, &cfg->classifier_dropout, file) != CP_OK)
        return CP_ERR;
    return cp_json_get_double(root, "initializer_range", 0.02, 0, &cfg->initializer_range, file);
}

cp_status cp_config_from_json(cp_model_config *cfg, const cJSON *root, const char *file) {
    memset(cfg, 0, sizeof *cfg);
    if (!cJSON_IsObject(root)) return cp_error("%s: expected a JSON object", file);
    const char *model_type;
    if (cp_json_get_string(root, "model_type", NULL, 1, &model_type, file) != CP_OK) return CP_ERR;
    const cp_arch *arch = cp_arch_find(model_type);
    if (!arch && !strcmp(model_type, "chatglm")) /* THUDM's remote code (ChatGLMModel): transformers loads it only with
                                                   trust_remote_code, so there is no reference to hold cpeft to */
        return cp_error("%s: model_type \"chatglm\" (ChatGLM's remote code, loadable by transformers only with "
                        "trust_remote_code) is not supported: use a checkpoint in transformers' native GLM layout "
                        "(model_type \"glm\", GlmForCausalLM, such as the \"-hf\" GLM-4 repositories) or convert the "
                        "weights to it", file);
    if (!arch)
        return cp_error("%s: model_type \"%s\" is not supported (supported: %s) and is not an encoder cpeft has (%s) "
                        "nor an encoder-decoder (%s)", file, model_type, cp_arch_supported_list(), cp_arch_encoder_list(),
                        cp_arch_encoder_decoder_list());
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", model_type);
    if (arch->parse_config(cfg, root, file) != CP_OK || cp_config_read_task(cfg, root, file) != CP_OK) {
        cp_config_free(cfg);
        return CP_ERR;
    }
    if (cfg->head_dim == 0) {
        if (cfg->hidden_size % cfg->num_heads != 0) {
            cp_config_free(cfg);
            return cp_error("%s: hidden size %lld is not divisible by the number of heads %lld", file,
                            (long long)cfg->hidden_size, (long long)cfg->num_heads);
        }
        cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    }
    /* an id at or beyond vocab_size loads, as in transformers (some real checkpoints have them); it is
     * an error only where the id is used as a token (generation's pad, training's pad) */
    const struct { const char *key; int64_t id; } ids[3] = {
        {"bos_token_id", cfg->bos_token_id}, {"eos_token_id", cfg->eos_token_id}, {"pad_token_id", cfg->pad_token_id}};
    for (int i = 0; i < 3; i++)
        if (ids[i].id != CP_TOKEN_UNSET && ids[i].id >= cfg->vocab_size)
            cp_warn("%s: field \"%s\": token id %lld is outside the vocabulary [0, %lld) (vocab_size)", file, ids[i].key,
                    (long long)ids[i].id, (long long)cfg->vocab_size);
    if (cfg->num_kv_heads == 0) cfg->num_kv_heads = cfg->num_heads;
    if (cfg->num_heads % cfg->num_kv_heads != 0) {
        cp_config_free(cfg);
        return cp_error("%s: num_key_value_heads %lld does not divide num_attention_heads %lld", file,
                        (long long)cfg->num_kv_heads, (long long)cfg->num_heads);
    }
    return CP_OK;
}

cp_status cp_config_load(cp_model_config *cfg, const char *config_path) {
    cJSON *root;
    memset(cfg, 0, sizeof *cfg);
    if (cp_json_read_file(config_path, &root) != CP_OK) return CP_ERR;
    cp_status st = cp_config_from_json(cfg, root, config_path);
    cJSON_Delete(root);
    return st;
}

void cp_config_free(cp_model_config *cfg) {
    cp_free(cfg->layer_is_local);
    cfg->layer_is_local = NULL;
    for (int64_t i = 0; cfg->id2label && i < cfg->num_labels; i++) cp_free(cfg->id2label[i]);
    cp_free(cfg->id2label);
    cfg->id2label = NULL;
}
