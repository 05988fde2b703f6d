/*
 * opt.c — Meta's OPT (OPTForCausalLM, OPTForSequenceClassification): config, module tree and the
 * embedding step; the blocks are the shared GPT skeleton's (gpt_common.c) with OPT's switches:
 *
 *   x = embed_tokens[ids] + embed_positions[pos + 2]          learned positions, offset 2, pos from
 *                                                              the attention mask's cumsum (padding −1)
 *   per layer (do_layer_norm_before, the default):  x += drop(out_proj(attn(self_attn_layer_norm x)))
 *                                                   x += drop(fc2(act(fc1(final_layer_norm x))))
 *   (do_layer_norm_before false, OPT-350m: post-LN, each norm after its residual sum)
 *   out = final_layer_norm(x)  (none when post-LN or _remove_final_layer_norm)
 *
 * OPT's dropouts are functional (no Dropout modules): `dropout` after each sublayer and
 * `attention_dropout` on the probabilities. The attention scales q by head_dim^-0.5 before q·kᵀ;
 * here the product is scaled (the same up to rounding).
 * word_embed_proj_dim P ≠ hidden_size (OPT-350m): embed_tokens (V,P), x = project_in(embed_tokens[ids])
 * + positions, and the stack ends in project_out (P,C) (the scaffold's final_proj), so lm_head (V,P,
 * tied) and score read width P. Prompt tuning then needs token_dim P (PEFT's default hidden_size fails
 * in PEFT too: its virtual rows are concatenated to the P-wide inputs_embeds).
 * layer_norm_elementwise_affine false: every LayerNorm without weight and bias.
 * layerdrop > 0 loads (transformers skips layers only in train mode): a forward with the model's
 * dropout on refuses it by name; eval, generation and training with model dropout off run every layer.
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/decoder_head.h"
#include "models/proj.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define OPT_POSITION_OFFSET 2 /* OPTLearnedPositionalEmbedding.offset */

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    int64_t proj_dim = 0;
    int pre_ln = 1, remove_final = 0, enable_bias = 1, affine = 1;
    double layerdrop = 0;
    if (cp_config_positive(root, "vocab_size", 50272, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 768, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", 12, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", 12, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "ffn_dim", 3072, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    const cJSON *pd = cp_json_field(root, "word_embed_proj_dim");
    if (pd && !cJSON_IsNull(pd) &&
        cp_config_positive(root, "word_embed_proj_dim", cfg->hidden_size, CP_MAX_HIDDEN, &proj_dim, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_bool(root, "do_layer_norm_before", 1, 0, &pre_ln, file) != CP_OK ||
        cp_json_get_bool(root, "_remove_final_layer_norm", 0, 0, &remove_final, file) != CP_OK ||
        cp_json_get_bool(root, "enable_bias", 1, 0, &enable_bias, file) != CP_OK ||
        cp_json_get_bool(root, "layer_norm_elementwise_affine", 1, 0, &affine, file) != CP_OK ||
        cp_json_get_double(root, "dropout", 0.1, 0, &cfg->resid_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "layerdrop", 0.0, 0, &layerdrop, file) != CP_OK)
        return CP_ERR;
    if (cfg->hidden_size % cfg->num_heads)
        return cp_error("%s: hidden_size %lld is not divisible by num_attention_heads %lld", file,
                        (long long)cfg->hidden_size, (long long)cfg->num_heads);
    cfg->layer_norm_eps = 1e-5; /* nn.LayerNorm's default */
    cfg->embd_dropout = 0.0;    /* OPTDecoder drops nothing on the embeddings */
    cfg->opt.pre_ln = pre_ln;
    cfg->opt.final_norm = pre_ln && !remove_final;
    cfg->opt.bias = enable_bias;
    cfg->opt.affine = affine;
    cfg->opt.layerdrop = layerdrop;
    cfg->embedding_size = proj_dim ? proj_dim : cfg->hidden_size; /* word_embed_proj_dim */
    if (cp_config_read_common(cfg, root, file, "relu") != CP_OK) return CP_ERR;
    if (cp_config_token_id(root, "pad_token_id", 1, &cfg->pad_token_id, file) != CP_OK ||
        cp_config_token_id(root, "bos_token_id", 2, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 2, &cfg->eos_token_id, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

static cp_status build_layer(cp_model *m, cp_module *layers, int64_t l, cp_gpt_layer *ly) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size, I = c->intermediate_size;
    const int bias = c->opt.bias;
    char idx[24];
    snprintf(idx, sizeof idx, "%lld", (long long)l);
    cp_module *layer = cp_module_new(layers, idx, "OPTDecoderLayer", CP_MOD_CONTAINER);
    cp_module *attn = layer ? cp_module_new(layer, "self_attn", "OPTAttention", CP_MOD_CONTAINER) : NULL;
    if (!attn || !(ly->k_proj = cp_module_linear(attn, "k_proj", C, C, bias)) ||
        !(ly->v_proj = cp_module_linear(attn, "v_proj", C, C, bias)) || !(ly->q_proj = cp_module_linear(attn, "q_proj", C, C, bias)) ||
        !(ly->out_proj = cp_module_linear(attn, "out_proj", C, C, bias)) ||
        !cp_module_activation(layer, "activation_fn", c->activation) ||
        !(ly->ln_1 = cp_module_layernorm_affine(layer, "self_attn_layer_norm", C, c->layer_norm_eps, c->opt.affine)) ||
        !(ly->fc = cp_module_linear(layer, "fc1", C, I, bias)) || !(ly->proj = cp_module_linear(layer, "fc2", I, C, bias)) ||
        !(ly->ln_2 = cp_module_layernorm_affine(layer, "final_layer_norm", C, c->layer_norm_eps, c->opt.affine)))
        return CP_ERR;
    ly->activation = c->activation;
    ly->attn_scale = (float)(1.0 / sqrt((double)c->head_dim));
    ly->empty_row = CP_ATTN_EMPTY_ALL; /* one additive mask: causal and padding alike */
    ly->attn_fn = (struct cp_gpt_fn_drop){attn, "attention_dropout", c->attn_dropout};
    ly->resid_fn = (struct cp_gpt_fn_drop){layer, "dropout", c->resid_dropout};
    ly->mlp_fn = (struct cp_gpt_fn_drop){layer, "dropout_ff", c->resid_dropout};
    return CP_OK;
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size, P = c->embedding_size;
    if (m->task == CP_TASK_TOKEN_CLS) return cp_error("%s: transformers has no OPTForTokenClassification", m->dir);
    char cls[96];
    const char *root_class = cp_decoder_root_class(m, "OPT", "OPTForCausalLM", cls, sizeof cls);
    cp_gpt_state *s = cp_calloc(1, sizeof *s, "OPT state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    if (!(s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "OPT layers"))) return CP_ERR;
    s->post_ln = !c->opt.pre_ln;
    if (!(m->root = cp_module_new(NULL, "", root_class, CP_MOD_CONTAINER))) return CP_ERR;
    cp_module *model = cp_module_new(m->root, "model", "OPTModel", CP_MOD_CONTAINER);
    cp_module *dec = model ? cp_module_new(model, "decoder", "OPTDecoder", CP_MOD_CONTAINER) : NULL;
    if (!dec || !(s->wte = cp_module_embedding(dec, "embed_tokens", c->vocab_size, P)) ||
        !(s->wpe = cp_module_embedding(dec, "embed_positions", c->max_positions + OPT_POSITION_OFFSET, C)))
        return CP_ERR;
    if (P != C && (!(m->stack.final_proj = cp_module_linear(dec, "project_out", C, P, 0)) ||
                   !(s->project_in = cp_module_linear(dec, "project_in", P, C, 0))))
        return CP_ERR;
    if (c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size) s->wte->padding_idx = c->pad_token_id;
    char *cls_pos = cp_strdup("OPTLearnedPositionalEmbedding");
    if (!cls_pos) return CP_ERR;
    cp_free(s->wpe->class_name);
    s->wpe->class_name = cls_pos;
    if (c->opt.final_norm &&
        !(s->ln_f = cp_module_layernorm_affine(dec, "final_layer_norm", c->hidden_size, c->layer_norm_eps, c->opt.affine)))
        return CP_ERR;
    cp_module *layers = cp_module_new(dec, "layers", "ModuleList", CP_MOD_LIST);
    if (!layers) return CP_ERR;
    for (int64_t l = 0; l < c->num_layers; l++)
        if (build_layer(m, layers, l, &s->layers[l]) != CP_OK) return CP_ERR;
    if (cp_decoder_build_head(m, s->wte, "classifier") != CP_OK) return CP_ERR;
    m->stack.embeddings[0] = s->wte;
    m->stack.embeddings[1] = s->wpe;
    m->stack.embeddings[2] = s->project_in;
    m->stack.final_norm = s->ln_f;
    return cp_stack_blocks(m, dec, "layers");
}

/* The embedding step's state: the rows of embed_positions it read; with project_in, its input (N,P). */
typedef struct {
    int64_t *pos;
    float *tokens;
} opt_emb;

/* pos (B,T): position_ids + 2 when given, else OPTDecoder's (cumsum(mask)·mask − 1) + 2 over the
 * key mask of the call: under prefix tuning the prefix columns' mask (B, n + T) and the batch's columns
 * after them; with a cache and no position ids (generation gives them) the cached columns count as
 * real tokens. Padding positions read row 1, as transformers' −1 + 2. */
static void positions(const cp_run *run, const cp_batch *b, int64_t past, int64_t *pos) {
    const int64_t B = b->B, T = b->T, lead = run->n_prefix;
    const int64_t *mask = lead ? run->prefix_key_mask : b->attention_mask, stride = lead + T;
    for (int64_t r = 0; r < B; r++) {
        int64_t seen = past - lead; /* columns before the mask's first */
        for (int64_t j = 0; j < stride; j++) {
            const int64_t keep = mask ? mask[r * stride + j] != 0 : 1;
            seen += keep;
            if (j < lead) continue;
            const int64_t t = j - lead;
            pos[r * T + t] = (b->position_ids ? b->position_ids[r * T + t] : keep ? seen - 1 : -1) + OPT_POSITION_OFFSET;
        }
    }
}

static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const cp_gpt_state *s = m->arch_state;
    opt_emb *e = emb;
    const int64_t N = b->B * b->T;
    if (run->model_dropout && m->config.opt.layerdrop > 0)
        return cp_error("%s: field \"layerdrop\" = %g: transformers skips layers at random in train mode, which cpeft does not "
                        "(evaluation and generation ignore it; train with the model's dropout off, or set it to 0)", m->dir,
                        m->config.opt.layerdrop);
    if (!(e->pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *e->pos, "position ids"))) return CP_ERR;
    positions(run, b, ea->past, e->pos);
    if (s->project_in) { // x (N,C) = project_in(embed_tokens[ids] (N,P))
        if (!(e->tokens = cp_arena_floats(run->arena, (size_t)(N * s->project_in->in_features), "token embeddings")) ||
            cp_embed_tokens(run, s->wte, b, ea, e->tokens) != CP_OK || cp_proj_forward(run, s->project_in, x, e->tokens, N) != CP_OK)
            return CP_ERR;
    } else if (cp_embed_tokens(run, s->wte, b, ea, x) != CP_OK) {
        return CP_ERR;
    }
    if (cp_embed_forward(run, s->wpe, x, e->pos, N, 1) != CP_OK) return cp_error_context("position_ids");
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    const cp_gpt_state *s = m->arch_state;
    const opt_emb *e = emb;
    const int64_t N = b->B * b->T;
    if (cp_embed_backward(run, s->wpe, dx, e->pos, N) != CP_OK) return CP_ERR;
    if (!s->project_in) return cp_embed_tokens_backward(run, s->wte, b, ea, dx);
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    const int64_t P = s->project_in->in_features;
    float *d = cp_arena_floats(run->arena, (size_t)(N * P), "token embedding gradients"); // (N,P)
    if (!d) return CP_ERR;
    memset(d, 0, (size_t)(N * P) * sizeof *d);
    cp_status st = cp_proj_backward(run, s->project_in, d, dx, e->tokens, N);
    if (st == CP_OK) st = cp_embed_tokens_backward(run, s->wte, b, ea, d);
    cp_arena_release(run->arena, mark);
    return st;
}

static const cp_block_ops opt_block_ops = {.acts_size = CP_GPT_ACTS_SIZE, .embed_size = sizeof(opt_emb),
                                           .alloc_acts = cp_gpt_alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                           .block_forward = cp_gpt_block_forward, .block_backward = cp_gpt_block_backward};

const cp_arch cp_arch_opt = {
    .model_type = "opt",
    .causal_lm_class = "OPTForCausalLM",
    .base_prefix = "model",
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_gpt_free_state,
    .block_ops = &opt_block_ops,
    .learned_positions = 1,
};
