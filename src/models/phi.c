/*
 * phi.c — Microsoft Phi-1 / Phi-1.5 / Phi-2 (PhiForCausalLM): config, module tree, and what makes it
 * Phi: q/k/v with biases (grouped-query when num_key_value_heads < num_attention_heads), an optional
 * LayerNorm over each head of q and k (qk_layernorm), RoPE on the first partial_rotary_factor (0.5 by
 * default) of each head (rotate-half), attention and MLP in parallel from one input_layernorm, one
 * resid_dropout applied to both branches, fc1 / fc2, final_layernorm and an lm_head with a bias.
 * The forward is the shared rotary skeleton (rotary_common.c).
 */
#include "models/rotary_common.h"
#include "io/json.h"
#include "models/decoder_head.h"

#include <stdio.h>

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 51200, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 2048, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "intermediate_size", 8192, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", 24, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", 32, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    const cJSON *kv = cp_json_field(root, "num_key_value_heads");
    cfg->num_kv_heads = cfg->num_heads;
    if (kv && !cJSON_IsNull(kv) && cp_config_positive(root, "num_key_value_heads", 0, CP_MAX_HEADS, &cfg->num_kv_heads, file) != CP_OK)
        return CP_ERR;
    if (cfg->num_heads % cfg->num_kv_heads)
        return cp_error("%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld", file,
                        (long long)cfg->num_heads, (long long)cfg->num_kv_heads);
    if (cfg->hidden_size % cfg->num_heads)
        return cp_error("%s: hidden_size %lld is not divisible by num_attention_heads %lld", file, (long long)cfg->hidden_size,
                        (long long)cfg->num_heads);
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    /* PhiAttention reads a head_dim attribute but sizes q_layernorm by hidden_size // heads */
    const cJSON *hd = cp_json_field(root, "head_dim");
    if (hd && !(cJSON_IsNumber(hd) && hd->valuedouble == (double)cfg->head_dim))
        return cp_error("%s: field \"head_dim\": only hidden_size / num_attention_heads (%lld) is supported for phi", file,
                        (long long)cfg->head_dim);
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(root, "attention_dropout");
    if (ad && cJSON_IsNull(ad)) cfg->attn_dropout = 0; /* None: dropout=0.0 in training too (eager attention's default) */
    else if (cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK) return CP_ERR;
    if (cp_json_get_double(root, "layer_norm_eps", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "embd_pdrop", 0.0, 0, &cfg->embd_dropout, file) != CP_OK ||
        cp_json_get_double(root, "resid_pdrop", 0.0, 0, &cfg->resid_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "qk_layernorm", 0, 0, &cfg->qk_layernorm, file) != CP_OK)
        return CP_ERR;
    cfg->parallel_residual = 1;
    cfg->lm_head_bias = 1;
    cfg->qkv_bias = cfg->o_proj_bias = 1;
    /* PhiConfig: partial_rotary_factor defaults to 0.5, rope_theta to 10000 (top-level keys or the dict's) */
    if (cp_rotary_parse_rope(cfg, root, file, "rope_theta", "partial_rotary_factor", 0.5) != CP_OK) return CP_ERR;
    if (cp_config_read_common(cfg, root, file, "gelu_new") != CP_OK) return CP_ERR;
    if (!cp_json_field(root, "tie_word_embeddings")) cfg->tie_word_embeddings = 0;
    if (cp_config_token_id(root, "bos_token_id", 1, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 2, &cfg->eos_token_id, file) != CP_OK)
        return CP_ERR;
    return cp_rotary_read_act(cfg, root, "hidden_act", "gelu_new", file);
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_rotary_state *s = cp_rotary_new_state(m);
    if (!s) return CP_ERR;
    char cls[96];
    if (!(m->root = cp_module_new(NULL, "", cp_decoder_root_class(m, "Phi", "PhiForCausalLM", cls, sizeof cls), CP_MOD_CONTAINER)))
        return CP_ERR;
    cp_module *base = cp_module_new(m->root, "model", "PhiModel", CP_MOD_CONTAINER);
    if (!base || !(s->embed = cp_module_embedding(base, "embed_tokens", c->vocab_size, c->hidden_size))) return CP_ERR;
    if (c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size) s->embed->padding_idx = c->pad_token_id;
    cp_module *list = cp_module_new(base, "layers", "ModuleList", CP_MOD_LIST);
    if (!list) return CP_ERR;
    const int64_t C = c->hidden_size, I = c->intermediate_size, hd = c->head_dim;
    const int64_t qd = c->num_heads * hd, kvd = c->num_kv_heads * hd;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_rotary_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *layer = cp_module_new(list, idx, "PhiDecoderLayer", CP_MOD_CONTAINER);
        cp_module *attn = ly->attn = layer ? cp_module_new(layer, "self_attn", "PhiAttention", CP_MOD_CONTAINER) : NULL;
        if (!attn || !(ly->q_proj = cp_module_linear(attn, "q_proj", C, qd, 1)) || !(ly->k_proj = cp_module_linear(attn, "k_proj", C, kvd, 1)) ||
            !(ly->v_proj = cp_module_linear(attn, "v_proj", C, kvd, 1)) || !(ly->out_proj = cp_module_linear(attn, "dense", qd, C, 1)))
            return CP_ERR;
        if (c->qk_layernorm && (!(ly->q_norm = cp_module_layernorm(attn, "q_layernorm", hd, c->layer_norm_eps)) ||
                                !(ly->k_norm = cp_module_layernorm(attn, "k_layernorm", hd, c->layer_norm_eps))))
            return CP_ERR;
        cp_module *mlp = cp_module_new(layer, "mlp", "PhiMLP", CP_MOD_CONTAINER);
        if (!mlp || !cp_module_activation(mlp, "activation_fn", c->activation) || !(ly->fc_in = cp_module_linear(mlp, "fc1", C, I, 1)) ||
            !(ly->fc_out = cp_module_linear(mlp, "fc2", I, C, 1)))
            return CP_ERR;
        if (!(ly->ln_1 = cp_module_layernorm(layer, "input_layernorm", C, c->layer_norm_eps)) ||
            !(ly->attn_out_drop = ly->mlp_drop = cp_module_dropout(layer, "resid_dropout", c->resid_dropout)))
            return CP_ERR;
        ly->mlp_call = 1; /* the same module's second application in the layer */
    }
    if (!cp_module_new(base, "rotary_emb", "PhiRotaryEmbedding", CP_MOD_CONTAINER) ||
        !(m->stack.embed_dropout = cp_module_dropout(base, "embed_dropout", c->embd_dropout)) ||
        !(s->final_norm = cp_module_layernorm(base, "final_layernorm", C, c->layer_norm_eps)))
        return CP_ERR;
    if (cp_decoder_build_head(m, s->embed, "score") != CP_OK) return CP_ERR;
    return cp_rotary_finish(m, base, "layers");
}

static const char *const ignored_suffixes[] = {".rotary_emb.inv_freq", NULL};

const cp_arch cp_arch_phi = {
    .model_type = "phi",
    .causal_lm_class = "PhiForCausalLM",
    .base_prefix = "model",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_rotary_free_state,
    .block_ops = &cp_rotary_block_ops,
    .rotary_positions = 1,
    .ignored_suffixes = ignored_suffixes,
};
