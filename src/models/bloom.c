/*
 * bloom.c — BigScience BLOOM (BloomForCausalLM, BloomForSequenceClassification,
 * BloomForTokenClassification): config, module tree and the embedding step; the blocks are the
 * shared GPT skeleton's (gpt_common.c) with BLOOM's switches:
 *
 *   x = word_embeddings_layernorm(word_embeddings[ids])        no position table
 *   per block: h = input_layernorm(x);            x = res + drop(dense(attn(h)))
 *              h = post_attention_layernorm(x);   x = res + drop(dense_4h_to_h(gelu(dense_h_to_4h(h))))
 *              res = x, or h under apply_residual_connection_post_layernorm
 *   out = ln_f(x); lm_head tied to word_embeddings
 *
 * Attention: query_key_value's 3C output columns are (NH, 3, hd) (BloomAttention._reshape), the
 * scores are alibi + (q·kᵀ)/√hd with ALiBi slopes of _get_alibi_slopes (any head count) times the key
 * position (cumsum(mask) − 1)·mask (build_alibi_tensor; with a cache over its columns, under prefix
 * tuning over the prefix's). attention_dropout is a Dropout module; hidden_dropout is functional
 * (the sites "hidden_dropout" under self_attention and mlp). pretraining_tp / slow_but_exact split
 * dense and dense_4h_to_h into slices whose products are summed: the same function, so both are
 * read and the plain product runs.
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/decoder_head.h"
#include "models/gguf_names.h"
#include "nn/layernorm.h"
#include "nn/position_bias.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    int64_t tp = 1;
    int slow = 0;
    const char *hidden_key = cp_json_field(root, "n_embed") ? "n_embed" : "hidden_size"; /* BloomConfig's alias */
    if (cp_config_positive(root, "vocab_size", 250880, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, hidden_key, 64, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, cp_json_field(root, "num_hidden_layers") ? "num_hidden_layers" : "n_layer", 2, CP_MAX_LAYERS,
                           &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, cp_json_field(root, "num_attention_heads") ? "num_attention_heads" : "n_head", 8, CP_MAX_HEADS,
                           &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "pretraining_tp", 1, CP_MAX_HEADS, &tp, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_double(root, "layer_norm_epsilon", 1e-5, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "hidden_dropout", 0.0, 0, &cfg->resid_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "apply_residual_connection_post_layernorm", 0, 0, &cfg->residual_post_ln, file) != CP_OK ||
        cp_json_get_bool(root, "slow_but_exact", 0, 0, &slow, file) != CP_OK)
        return CP_ERR;
    if (cfg->hidden_size % cfg->num_heads)
        return cp_error("%s: hidden_size %lld is not divisible by n_head %lld", file, (long long)cfg->hidden_size,
                        (long long)cfg->num_heads);
    cfg->intermediate_size = 4 * cfg->hidden_size;
    cfg->max_positions = CP_MAX_POSITIONS; /* ALiBi: no position table */
    cfg->embd_dropout = 0.0;
    if (cp_config_read_common(cfg, root, file, "linear") != CP_OK) return CP_ERR;
    cfg->activation = CP_ACT_BLOOM_GELU; /* BloomMLP's own; BloomConfig reads no activation */
    if (cp_config_token_id(root, "bos_token_id", 1, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 2, &cfg->eos_token_id, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

static cp_status build_block(cp_model *m, cp_module *h, int64_t l, cp_gpt_layer *ly) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size;
    char idx[24];
    snprintf(idx, sizeof idx, "%lld", (long long)l);
    cp_module *block = cp_module_new(h, idx, "BloomBlock", CP_MOD_CONTAINER);
    if (!block || !(ly->ln_1 = cp_module_layernorm(block, "input_layernorm", C, c->layer_norm_eps))) return CP_ERR;
    cp_module *attn = cp_module_new(block, "self_attention", "BloomAttention", CP_MOD_CONTAINER);
    if (!attn || !(ly->qkv_proj = cp_module_linear(attn, "query_key_value", C, 3 * C, 1)) ||
        !(ly->out_proj = cp_module_linear(attn, "dense", C, C, 1)) ||
        !(ly->attn_drop = cp_module_dropout(attn, "attention_dropout", c->attn_dropout)) ||
        !(ly->ln_2 = cp_module_layernorm(block, "post_attention_layernorm", C, c->layer_norm_eps)))
        return CP_ERR;
    cp_module *mlp = cp_module_new(block, "mlp", "BloomMLP", CP_MOD_CONTAINER);
    if (!mlp || !(ly->fc = cp_module_linear(mlp, "dense_h_to_4h", C, 4 * C, 1)) ||
        !cp_module_activation(mlp, "gelu_impl", CP_ACT_BLOOM_GELU) ||
        !(ly->proj = cp_module_linear(mlp, "dense_4h_to_h", 4 * C, C, 1)))
        return CP_ERR;
    ly->activation = CP_ACT_BLOOM_GELU;
    ly->attn_scale = (float)(1.0 / sqrt((double)c->head_dim)); /* inv_norm_factor */
    ly->empty_row = CP_ATTN_EMPTY_ALL;
    ly->resid_fn = (struct cp_gpt_fn_drop){attn, "hidden_dropout", c->resid_dropout};
    ly->mlp_fn = (struct cp_gpt_fn_drop){mlp, "hidden_dropout", c->resid_dropout};
    return CP_OK;
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    char cls[96];
    const char *root_class = cp_decoder_root_class(m, "Bloom", "BloomForCausalLM", cls, sizeof cls);
    cp_gpt_state *s = cp_calloc(1, sizeof *s, "BLOOM state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    if (!(s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "BLOOM blocks")) ||
        !(s->alibi_slopes = cp_calloc((size_t)c->num_heads, sizeof *s->alibi_slopes, "ALiBi slopes")))
        return CP_ERR;
    cp_alibi_slopes(s->alibi_slopes, c->num_heads);
    s->residual_post_ln = c->residual_post_ln;
    s->qkv_per_head = 1;
    if (!(m->root = cp_module_new(NULL, "", root_class, CP_MOD_CONTAINER))) return CP_ERR;
    cp_module *base = cp_module_new(m->root, "transformer", "BloomModel", CP_MOD_CONTAINER);
    if (!base || !(s->wte = cp_module_embedding(base, "word_embeddings", c->vocab_size, c->hidden_size)) ||
        !(s->embed_ln = cp_module_layernorm(base, "word_embeddings_layernorm", c->hidden_size, c->layer_norm_eps)))
        return CP_ERR;
    cp_module *h = cp_module_new(base, "h", "ModuleList", CP_MOD_LIST);
    if (!h) return CP_ERR;
    for (int64_t l = 0; l < c->num_layers; l++)
        if (build_block(m, h, l, &s->layers[l]) != CP_OK) return CP_ERR;
    if (!(s->ln_f = cp_module_layernorm(base, "ln_f", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
    if (m->task == CP_TASK_TOKEN_CLS && c->classifier_dropout < 0) /* BloomForTokenClassification: else hidden_dropout */
        m->config.classifier_dropout = c->resid_dropout;
    if (cp_decoder_build_head(m, s->wte, "classifier") != CP_OK) return CP_ERR;
    m->stack.embeddings[0] = s->wte;
    m->stack.embeddings[1] = s->embed_ln;
    m->stack.final_norm = s->ln_f;
    return cp_stack_blocks(m, base, "h");
}

/* The embedding step's state: the token embeddings (LayerNorm's input) and its statistics. */
typedef struct { float *tok, *mean, *rstd; } bloom_emb;

static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const cp_gpt_state *s = m->arch_state;
    bloom_emb *e = emb;
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    e->tok = cp_arena_floats(run->arena, (size_t)(N * C), "token embeddings");
    e->mean = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    e->rstd = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    if (!e->tok || !e->mean || !e->rstd || cp_embed_tokens(run, s->wte, b, ea, e->tok) != CP_OK) return CP_ERR;
    cp_layernorm_forward(s->embed_ln, x, e->mean, e->rstd, e->tok, N);
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    const cp_gpt_state *s = m->arch_state;
    const bloom_emb *e = emb;
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    float *dtok = cp_arena_floats(run->arena, (size_t)(N * C), "token embedding gradient");
    if (!dtok) return CP_ERR;
    memset(dtok, 0, (size_t)(N * C) * sizeof *dtok);
    cp_layernorm_backward(s->embed_ln, dtok, dx, e->tok, e->mean, e->rstd, N);
    return cp_embed_tokens_backward(run, s->wte, b, ea, dtok);
}

static const cp_block_ops bloom_block_ops = {.acts_size = CP_GPT_ACTS_SIZE, .embed_size = sizeof(bloom_emb),
                                             .alloc_acts = cp_gpt_alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                             .block_forward = cp_gpt_block_forward, .block_backward = cp_gpt_block_backward};

extern const cp_gguf_names cp_bloom_gguf_names; /* models/bloom_gguf.c */

const cp_arch cp_arch_bloom = {
    .model_type = "bloom",
    .causal_lm_class = "BloomForCausalLM",
    .base_prefix = "transformer",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_gpt_free_state,
    .block_ops = &bloom_block_ops,
    .gguf_names = &cp_bloom_gguf_names,
};
