/*
 * gpt_neox.c — EleutherAI GPT-NeoX / Pythia (GPTNeoXForCausalLM): config, module tree, and what
 * makes it GPT-NeoX: one fused query_key_value Linear whose output is per head [q | k | v] (the
 * view (B,T,NH,3·hd) then split of transformers; a LoRA on it acts on the fused output, as in PEFT),
 * RoPE on the first rotary_pct of each head (rotate-half), two LayerNorms per block with a parallel
 * residual (use_parallel_residual) or a sequential one, attention_bias on query_key_value and dense,
 * an untied lm_head by default (old checkpoints name it embed_out). The forward is the shared
 * rotary skeleton (rotary_common.c).
 */
#include "models/rotary_common.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/decoder_head.h"

#include <stdio.h>
#include <string.h>

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 50432, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 6144, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", 44, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", 64, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "intermediate_size", 24576, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    if (cfg->hidden_size % cfg->num_heads) /* GPTNeoXConfig.validate_architecture */
        return cp_error("%s: hidden_size %lld is not divisible by num_attention_heads %lld", file, (long long)cfg->hidden_size,
                        (long long)cfg->num_heads);
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    cfg->num_kv_heads = cfg->num_heads;
    int attention_bias;
    if (cp_json_get_double(root, "layer_norm_eps", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "hidden_dropout", 0.0, 0, &cfg->resid_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "use_parallel_residual", 1, 0, &cfg->parallel_residual, file) != CP_OK ||
        cp_json_get_bool(root, "attention_bias", 1, 0, &attention_bias, file) != CP_OK)
        return CP_ERR;
    cfg->embd_dropout = cfg->resid_dropout; /* emb_dropout is nn.Dropout(hidden_dropout) */
    cfg->qkv_bias = cfg->o_proj_bias = attention_bias;
    /* GPTNeoXConfig.convert_rope_params_to_dict: rotary_emb_base and rotary_pct (default 0.25) */
    if (cp_rotary_parse_rope(cfg, root, file, "rotary_emb_base", "rotary_pct", 0.25) != CP_OK) return CP_ERR;
    if (cp_config_read_common(cfg, root, file, "gelu") != CP_OK) return CP_ERR;
    if (!cp_json_field(root, "tie_word_embeddings")) cfg->tie_word_embeddings = 0;
    if (cp_config_token_id(root, "bos_token_id", 0, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 2, &cfg->eos_token_id, file) != CP_OK)
        return CP_ERR;
    return cp_rotary_read_act(cfg, root, "hidden_act", "gelu", file);
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_rotary_state *s = cp_rotary_new_state(m);
    if (!s) return CP_ERR;
    char cls[96];
    const char *root_class = cp_decoder_root_class(m, "GPTNeoX", "GPTNeoXForCausalLM", cls, sizeof cls);
    if (!(m->root = cp_module_new(NULL, "", root_class, CP_MOD_CONTAINER))) return CP_ERR;
    cp_module *base = cp_module_new(m->root, "gpt_neox", "GPTNeoXModel", CP_MOD_CONTAINER);
    if (!base || !(s->embed = cp_module_embedding(base, "embed_in", c->vocab_size, c->hidden_size)) ||
        !(m->stack.embed_dropout = cp_module_dropout(base, "emb_dropout", c->embd_dropout)))
        return CP_ERR;
    cp_module *list = cp_module_new(base, "layers", "ModuleList", CP_MOD_LIST);
    if (!list) return CP_ERR;
    const int64_t C = c->hidden_size, I = c->intermediate_size;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_rotary_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *layer = cp_module_new(list, idx, "GPTNeoXLayer", CP_MOD_CONTAINER);
        if (!layer || !(ly->ln_1 = cp_module_layernorm(layer, "input_layernorm", C, c->layer_norm_eps)) ||
            !(ly->ln_2 = cp_module_layernorm(layer, "post_attention_layernorm", C, c->layer_norm_eps)) ||
            !(ly->attn_out_drop = cp_module_dropout(layer, "post_attention_dropout", c->resid_dropout)) ||
            !(ly->mlp_drop = cp_module_dropout(layer, "post_mlp_dropout", c->resid_dropout)))
            return CP_ERR;
        cp_module *attn = ly->attn = cp_module_new(layer, "attention", "GPTNeoXAttention", CP_MOD_CONTAINER);
        if (!attn || !(ly->qkv = cp_module_linear(attn, "query_key_value", C, 3 * C, c->qkv_bias)) ||
            !(ly->out_proj = cp_module_linear(attn, "dense", C, C, c->o_proj_bias)))
            return CP_ERR;
        cp_module *mlp = cp_module_new(layer, "mlp", "GPTNeoXMLP", CP_MOD_CONTAINER);
        if (!mlp || !(ly->fc_in = cp_module_linear(mlp, "dense_h_to_4h", C, I, 1)) ||
            !(ly->fc_out = cp_module_linear(mlp, "dense_4h_to_h", I, C, 1)) || !cp_module_activation(mlp, "act", c->activation))
            return CP_ERR;
    }
    if (!(s->final_norm = cp_module_layernorm(base, "final_layer_norm", C, c->layer_norm_eps)) ||
        !cp_module_new(base, "rotary_emb", "GPTNeoXRotaryEmbedding", CP_MOD_CONTAINER))
        return CP_ERR;
    if (cp_decoder_build_head(m, s->embed, "classifier") != CP_OK) return CP_ERR;
    return cp_rotary_finish(m, base, "layers");
}

static const char *const ignored_suffixes[] = {".attention.bias", ".attention.masked_bias", ".rotary_emb.inv_freq", NULL};
static const char *const renamed[] = {"lm_head.", "embed_out.", NULL, NULL};

const cp_arch cp_arch_gpt_neox = {
    .model_type = "gpt_neox",
    .causal_lm_class = "GPTNeoXForCausalLM",
    .base_prefix = "gpt_neox",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_rotary_free_state,
    .block_ops = &cp_rotary_block_ops,
    .rotary_positions = 1,
    .renamed = renamed,
    .ignored_suffixes = ignored_suffixes,
};
