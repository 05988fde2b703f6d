/*
 * gpt_neo.c — EleutherAI GPT-Neo (GPTNeoForCausalLM): config, module tree, and the two things
 * that make it GPT-Neo: separate bias-free q/k/v Linears and no 1/sqrt(head_dim) scaling, and
 * layers alternating global and local (sliding-window) attention per `attention_types`.
 * The forward is the shared GPT skeleton (gpt_common.c).
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "io/json.h"

#include <stdio.h>
#include <string.h>

/* attention_types: [[["global","local"], 12]] → per-layer kinds, repeating each list n times. */
static cp_status parse_attention_types(cp_model_config *cfg, const cJSON *root, const char *file) {
    cfg->layer_is_local = cp_calloc((size_t)cfg->num_layers, 1, "attention layer kinds");
    if (!cfg->layer_is_local) return CP_ERR;
    const cJSON *types = cp_json_field(root, "attention_types");
    const cJSON *layers = cp_json_field(root, "attention_layers");
    int64_t n = 0;
    if (types) {
        if (!cJSON_IsArray(types))
            return cp_error("%s: field \"attention_types\": expected a list like [[[\"global\", \"local\"], 12]]", file);
        const cJSON *group;
        cJSON_ArrayForEach(group, types) {
            const cJSON *kinds = cJSON_GetArrayItem(group, 0), *rep = cJSON_GetArrayItem(group, 1);
            if (!cJSON_IsArray(group) || cJSON_GetArraySize(group) != 2 || !cJSON_IsArray(kinds) ||
                !cJSON_IsNumber(rep) || rep->valuedouble < 0 || rep->valuedouble > 1e6)
                return cp_error("%s: field \"attention_types\": each entry must be [[kinds...], count]", file);
            for (int r = 0; r < (int)rep->valuedouble; r++) {
                const cJSON *k;
                cJSON_ArrayForEach(k, kinds) {
                    if (!cJSON_IsString(k) || (strcmp(k->valuestring, "global") && strcmp(k->valuestring, "local")))
                        return cp_error("%s: field \"attention_types\": attention kind must be \"global\" or \"local\"", file);
                    if (n < cfg->num_layers) cfg->layer_is_local[n] = strcmp(k->valuestring, "local") == 0;
                    n++;
                }
            }
        }
    } else if (layers) {
        const cJSON *k;
        if (!cJSON_IsArray(layers)) return cp_error("%s: field \"attention_layers\": expected a list", file);
        cJSON_ArrayForEach(k, layers) {
            if (!cJSON_IsString(k) || (strcmp(k->valuestring, "global") && strcmp(k->valuestring, "local")))
                return cp_error("%s: field \"attention_layers\": entries must be \"global\" or \"local\"", file);
            if (n < cfg->num_layers) cfg->layer_is_local[n] = strcmp(k->valuestring, "local") == 0;
            n++;
        }
    } else {
        for (int64_t i = 0; i < cfg->num_layers; i++) cfg->layer_is_local[i] = (i % 2) == 1; /* default [[global, local], 12] */
        n = cfg->num_layers;
    }
    if (n != cfg->num_layers)
        return cp_error("%s: attention_types describe %lld layers but num_layers is %lld", file, (long long)n,
                        (long long)cfg->num_layers);
    return CP_OK;
}

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 50257, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 2048, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "num_layers", 24, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_heads", 16, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK ||
        cp_config_positive(root, "window_size", 256, CP_MAX_POSITIONS, &cfg->window_size, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_int(root, "intermediate_size", 4 * cfg->hidden_size, 0, &cfg->intermediate_size, file) != CP_OK)
        return CP_ERR;
    if (cfg->intermediate_size <= 0 || cfg->intermediate_size > CP_MAX_INTERMEDIATE)
        return cp_error("%s: field \"intermediate_size\" must be a positive integer of at most %lld, found %lld", file,
                        (long long)CP_MAX_INTERMEDIATE, (long long)cfg->intermediate_size);
    if (cp_json_get_double(root, "layer_norm_epsilon", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "embed_dropout", 0.0, 0, &cfg->embd_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "resid_dropout", 0.0, 0, &cfg->resid_dropout, file) != CP_OK)
        return CP_ERR;
    if (cp_config_read_common(cfg, root, file, "gelu_new") != CP_OK) return CP_ERR;
    return parse_attention_types(cfg, root, file);
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_module *base = NULL;
    cp_module *h = cp_gpt_build_base(m, "GPTNeoForCausalLM", "GPTNeoModel", &base);
    if (!h) return CP_ERR;
    cp_gpt_state *s = m->arch_state;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_gpt_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *block = cp_module_new(h, idx, "GPTNeoBlock", CP_MOD_CONTAINER);
        if (!block || !(ly->ln_1 = cp_module_layernorm(block, "ln_1", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
        cp_module *attn = cp_module_new(block, "attn", "GPTNeoAttention", CP_MOD_CONTAINER);
        cp_module *self = attn ? cp_module_new(attn, "attention", "GPTNeoSelfAttention", CP_MOD_CONTAINER) : NULL;
        if (!self || !(ly->attn_drop = cp_module_dropout(self, "attn_dropout", c->attn_dropout)) ||
            !(ly->resid_drop = cp_module_dropout(self, "resid_dropout", c->resid_dropout)))
            return CP_ERR;
        if (!(ly->k_proj = cp_module_linear(self, "k_proj", c->hidden_size, c->hidden_size, 0)) ||
            !(ly->v_proj = cp_module_linear(self, "v_proj", c->hidden_size, c->hidden_size, 0)) ||
            !(ly->q_proj = cp_module_linear(self, "q_proj", c->hidden_size, c->hidden_size, 0)) ||
            !(ly->out_proj = cp_module_linear(self, "out_proj", c->hidden_size, c->hidden_size, 1)))
            return CP_ERR;
        if (!(ly->ln_2 = cp_module_layernorm(block, "ln_2", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
        if (cp_gpt_build_mlp(m, block, "GPTNeoMLP", 0, ly) != CP_OK) return CP_ERR;
        ly->attn_scale = 1.0f; /* GPT-Neo does not scale scores by 1/sqrt(head_dim) */
        ly->window = c->layer_is_local[l] ? c->window_size : 0;
        ly->empty_row = CP_ATTN_EMPTY_CAUSAL; /* torch.where(causal) first, padding mask added after */
    }
    return cp_gpt_build_head(m, base, s);
}

static const char *const ignored_suffixes[] = {".attn.attention.bias", ".attn.attention.masked_bias", NULL};

const cp_arch cp_arch_gpt_neo = {
    .model_type = "gpt_neo",
    .causal_lm_class = "GPTNeoForCausalLM",
    .base_prefix = "transformer",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_gpt_free_state,
    .block_ops = &cp_gpt_block_ops,
    .ignored_suffixes = ignored_suffixes,
    .learned_positions = 1,
};
