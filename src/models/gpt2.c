/*
 * gpt2.c — OpenAI GPT-2 (GPT2LMHeadModel): config (n_embd, n_layer, ... aliases), module tree,
 * and what makes it GPT-2: Conv1D layers whose weights are stored [in, out], one fused c_attn
 * projection whose output columns are [Q | K | V], scores scaled by 1/sqrt(head_dim) (and
 * optionally by 1/(layer_idx+1)). The forward is the shared GPT skeleton (gpt_common.c).
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "io/json.h"

#include <math.h>
#include <stdio.h>

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 50257, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "n_embd", 768, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "n_layer", 12, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "n_head", 12, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "n_positions", 1024, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_int(root, "n_inner", 4 * cfg->hidden_size, 0, &cfg->intermediate_size, file) != CP_OK)
        return CP_ERR;
    if (cfg->intermediate_size <= 0 || cfg->intermediate_size > CP_MAX_INTERMEDIATE)
        return cp_error("%s: field \"n_inner\" must be a positive integer of at most %lld, found %lld", file,
                        (long long)CP_MAX_INTERMEDIATE, (long long)cfg->intermediate_size);
    if (cp_json_get_double(root, "layer_norm_epsilon", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "embd_pdrop", 0.1, 0, &cfg->embd_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attn_pdrop", 0.1, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "resid_pdrop", 0.1, 0, &cfg->resid_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "scale_attn_weights", 1, 0, &cfg->scale_attn_weights, file) != CP_OK ||
        cp_json_get_bool(root, "scale_attn_by_inverse_layer_idx", 0, 0, &cfg->scale_attn_by_inverse_layer_idx, file) != CP_OK ||
        cp_json_get_bool(root, "reorder_and_upcast_attn", 0, 0, &cfg->reorder_and_upcast_attn, file) != CP_OK)
        return CP_ERR;
    return cp_config_read_common(cfg, root, file, "gelu_new");
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_module *base = NULL;
    cp_module *h = cp_gpt_build_base(m, "GPT2LMHeadModel", "GPT2Model", &base);
    if (!h) return CP_ERR;
    cp_gpt_state *s = m->arch_state;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_gpt_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *block = cp_module_new(h, idx, "GPT2Block", CP_MOD_CONTAINER);
        if (!block || !(ly->ln_1 = cp_module_layernorm(block, "ln_1", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
        cp_module *attn = cp_module_new(block, "attn", "GPT2Attention", CP_MOD_CONTAINER);
        if (!attn || !(ly->qkv_proj = cp_module_conv1d(attn, "c_attn", c->hidden_size, 3 * c->hidden_size)) ||
            !(ly->out_proj = cp_module_conv1d(attn, "c_proj", c->hidden_size, c->hidden_size)) ||
            !(ly->attn_drop = cp_module_dropout(attn, "attn_dropout", c->attn_dropout)) ||
            !(ly->resid_drop = cp_module_dropout(attn, "resid_dropout", c->resid_dropout)))
            return CP_ERR;
        if (!(ly->ln_2 = cp_module_layernorm(block, "ln_2", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
        if (cp_gpt_build_mlp(m, block, "GPT2MLP", 1, ly) != CP_OK) return CP_ERR;
        double scale = c->scale_attn_weights ? 1.0 / sqrt((double)c->head_dim) : 1.0;
        if (c->scale_attn_by_inverse_layer_idx) scale /= (double)(l + 1);
        ly->attn_scale = (float)scale;
        ly->window = 0;
        ly->empty_row = CP_ATTN_EMPTY_ALL; /* one additive mask: causal and padding alike */
    }
    return cp_gpt_build_head(m, base, s);
}

static const char *const ignored_suffixes[] = {".attn.bias", ".attn.masked_bias", NULL};

const cp_arch cp_arch_gpt2 = {
    .model_type = "gpt2",
    .causal_lm_class = "GPT2LMHeadModel",
    .base_prefix = "transformer",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_gpt_free_state,
    .block_ops = &cp_gpt_block_ops,
    .ignored_suffixes = ignored_suffixes,
    .learned_positions = 1,
};
