/*
 * gptj.c — EleutherAI GPT-J (GPTJForCausalLM): config (n_embd, n_layer, n_head, n_positions,
 * n_inner aliases), module tree, and what makes it GPT-J: bias-free q/k/v/out_proj, RoPE in
 * interleaved pairs (rotate_every_two) on the first rotary_dim dims of each head, from a sinusoid
 * table of n_positions rows (positions past it are refused, as its gather fails), attention and MLP
 * in parallel from one ln_1, fc_in / fc_out, an lm_head with a bias. The forward is the shared rotary
 * skeleton (rotary_common.c). transformers has no GPTJForTokenClassification.
 */
#include "models/rotary_common.h"
#include "io/json.h"
#include "models/decoder_head.h"

#include <stdio.h>

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 50400, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "n_embd", 4096, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "n_layer", 28, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "n_head", 16, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "n_positions", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    if (cfg->hidden_size % cfg->num_heads) /* GPTJAttention refuses it */
        return cp_error("%s: n_embd %lld is not divisible by n_head %lld", file, (long long)cfg->hidden_size, (long long)cfg->num_heads);
    cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    cfg->num_kv_heads = cfg->num_heads;
    const cJSON *inner = cp_json_field(root, "n_inner");
    cfg->intermediate_size = 4 * cfg->hidden_size;
    if (inner && !cJSON_IsNull(inner) &&
        cp_config_positive(root, "n_inner", 0, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK)
        return CP_ERR;
    /* rotary_dim: the first dims of each head that turn; null: the sinusoid table is n_embd wide,
     * which fits a head only when there is one (transformers fails broadcasting otherwise) */
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(root, "rotary_dim");
    if (rd && cJSON_IsNull(rd)) {
        if (cfg->num_heads != 1)
            return cp_error("%s: field \"rotary_dim\": null with n_head %lld > 1 is not supported (transformers' GPTJAttention "
                            "cannot broadcast an n_embd-wide rotary table over head_dim %lld)", file, (long long)cfg->num_heads,
                            (long long)cfg->head_dim);
        cfg->rotary_dim = cfg->hidden_size;
    } else if (cp_config_positive(root, "rotary_dim", 64, CP_MAX_HIDDEN, &cfg->rotary_dim, file) != CP_OK) {
        return CP_ERR;
    }
    if (cfg->rotary_dim % 2 || cfg->rotary_dim > cfg->head_dim)
        return cp_error("%s: field \"rotary_dim\": %lld must be even and at most the head size %lld", file,
                        (long long)cfg->rotary_dim, (long long)cfg->head_dim);
    cfg->rope_interleaved = 1;
    cfg->rope_theta = 10000.0; /* create_sinusoidal_positions */
    cfg->rope_type = CP_ROPE_DEFAULT;
    cfg->parallel_residual = 1;
    cfg->lm_head_bias = 1;
    if (cp_json_get_double(root, "layer_norm_epsilon", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "embd_pdrop", 0.0, 0, &cfg->embd_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attn_pdrop", 0.0, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "resid_pdrop", 0.0, 0, &cfg->resid_dropout, file) != CP_OK)
        return CP_ERR;
    if (cp_config_read_common(cfg, root, file, "gelu_new") != CP_OK) return CP_ERR;
    if (!cp_json_field(root, "tie_word_embeddings")) cfg->tie_word_embeddings = 0;
    if (cp_config_token_id(root, "bos_token_id", 50256, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 50256, &cfg->eos_token_id, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    if (m->task == CP_TASK_TOKEN_CLS) return cp_error("%s: transformers has no GPTJForTokenClassification", m->dir);
    cp_rotary_state *s = cp_rotary_new_state(m);
    if (!s) return CP_ERR;
    s->max_table = c->max_positions;
    char cls[96];
    if (!(m->root = cp_module_new(NULL, "", cp_decoder_root_class(m, "GPTJ", "GPTJForCausalLM", cls, sizeof cls), CP_MOD_CONTAINER)))
        return CP_ERR;
    cp_module *base = cp_module_new(m->root, "transformer", "GPTJModel", CP_MOD_CONTAINER);
    if (!base || !(s->embed = cp_module_embedding(base, "wte", c->vocab_size, c->hidden_size)) ||
        !(m->stack.embed_dropout = cp_module_dropout(base, "drop", c->embd_dropout)))
        return CP_ERR;
    cp_module *list = cp_module_new(base, "h", "ModuleList", CP_MOD_LIST);
    if (!list) return CP_ERR;
    const int64_t C = c->hidden_size, I = c->intermediate_size;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_rotary_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *block = cp_module_new(list, idx, "GPTJBlock", CP_MOD_CONTAINER);
        if (!block || !(ly->ln_1 = cp_module_layernorm(block, "ln_1", C, c->layer_norm_eps))) return CP_ERR;
        cp_module *attn = ly->attn = cp_module_new(block, "attn", "GPTJAttention", CP_MOD_CONTAINER);
        if (!attn || !(ly->attn_drop = cp_module_dropout(attn, "attn_dropout", c->attn_dropout)) ||
            !(ly->attn_out_drop = cp_module_dropout(attn, "resid_dropout", c->resid_dropout)) ||
            !(ly->k_proj = cp_module_linear(attn, "k_proj", C, C, 0)) || !(ly->v_proj = cp_module_linear(attn, "v_proj", C, C, 0)) ||
            !(ly->q_proj = cp_module_linear(attn, "q_proj", C, C, 0)) || !(ly->out_proj = cp_module_linear(attn, "out_proj", C, C, 0)))
            return CP_ERR;
        cp_module *mlp = cp_module_new(block, "mlp", "GPTJMLP", CP_MOD_CONTAINER);
        if (!mlp || !(ly->fc_in = cp_module_linear(mlp, "fc_in", C, I, 1)) || !(ly->fc_out = cp_module_linear(mlp, "fc_out", I, C, 1)) ||
            !cp_module_activation(mlp, "act", c->activation) || !(ly->mlp_drop = cp_module_dropout(mlp, "dropout", c->resid_dropout)))
            return CP_ERR;
    }
    if (!(s->final_norm = cp_module_layernorm(base, "ln_f", C, c->layer_norm_eps))) return CP_ERR;
    if (cp_decoder_build_head(m, s->embed, "classifier") != CP_OK) return CP_ERR;
    return cp_rotary_finish(m, base, "h");
}

static const char *const ignored_suffixes[] = {".attn.bias", ".attn.masked_bias", ".attn.embed_positions", NULL};

const cp_arch cp_arch_gptj = {
    .model_type = "gptj",
    .causal_lm_class = "GPTJForCausalLM",
    .base_prefix = "transformer",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_rotary_free_state,
    .block_ops = &cp_rotary_block_ops,
    .learned_positions = 1, /* the sinusoid table has n_positions rows */
    .ignored_suffixes = ignored_suffixes,
};
