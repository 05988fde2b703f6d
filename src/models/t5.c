/*
 * t5.c — T5 and mT5: config.json as transformers 5.23's T5Config / MT5Config read it, and the module
 * tree of (M)T5ForConditionalGeneration with Hugging Face's names and classes. The blocks are in
 * models/t5_blocks.c, the encoder-decoder call in models/seq2seq.c; see t5.h for the computation.
 *
 * Config rules (configuration_t5.py, configuration_mt5.py):
 *   - d_model, d_kv, d_ff, num_layers, num_decoder_layers (null: num_layers), num_heads,
 *     relative_attention_num_buckets / _max_distance, dropout_rate, layer_norm_epsilon;
 *   - feed_forward_proj "ACT" or "gated-ACT" (dense_act_fn = ACT, "gated-gelu" → gelu_new); saved
 *     dense_act_fn / is_gated_act keys override what it gives, as the config's kwargs do;
 *   - the LM head is always tied to `shared` (tie_word_embeddings is forced true) unless the
 *     checkpoint holds an lm_head.weight with other values (v1.1 / Flan / mT5 checkpoints), which
 *     transformers then loads untied (cp_arch.untie_differing);
 *   - t5: the decoder output is scaled by d_model^-0.5 before lm_head when scale_decoder_outputs,
 *     which is config.json's key when present, else whether tie_word_embeddings is not false; mt5
 *     never scales;
 *   - pad_token_id 0, eos_token_id 1; decoder_start_token_id: t5 none (shifting labels then fails
 *     as transformers' _shift_right does), mt5 0.
 */
#include "models/t5.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/model.h"
#include "nn/position_bias.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int is_mt5(const cp_model_config *c) { return !strcmp(c->model_type, "mt5"); }

/* feed_forward_proj → gated and the activation (T5Config.__post_init__ and validate_architecture). */
static cp_status feed_forward(cp_model_config *cfg, const cJSON *root, const char *file) {
    const char *ff, *act_name;
    if (cp_json_get_string(root, "feed_forward_proj", is_mt5(cfg) ? "gated-gelu" : "relu", 0, &ff, file) != CP_OK) return CP_ERR;
    const char *dash = strchr(ff, '-');
    if ((dash && (strncmp(ff, "gated-", 6) || strchr(dash + 1, '-'))) || !*ff)
        return cp_error("%s: field \"feed_forward_proj\": `feed_forward_proj`: %s is not a valid activation function of the "
                        "dense layer. Please make sure `feed_forward_proj` is of the format `gated-{ACT_FN}` or `{ACT_FN}`, "
                        "e.g. 'gated-gelu' or 'relu'", file, ff);
    cfg->t5.gated = dash != NULL;
    act_name = !strcmp(ff, "gated-gelu") ? "gelu_new" : dash ? dash + 1 : ff;
    const char *saved;
    if (cp_json_get_string(root, "dense_act_fn", act_name, 0, &saved, file) != CP_OK ||
        cp_json_get_bool(root, "is_gated_act", cfg->t5.gated, 0, &cfg->t5.gated, file) != CP_OK)
        return CP_ERR;
    const int a = cp_activation_from_name(saved);
    if (a < 0)
        return cp_error("%s: field \"%s\": unknown activation \"%s\" (supported: %s)", file,
                        cp_json_field(root, "dense_act_fn") ? "dense_act_fn" : "feed_forward_proj", saved, cp_activation_supported());
    cfg->activation = (cp_activation)a;
    return CP_OK;
}

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    const int mt5 = is_mt5(cfg);
    if (cp_config_positive(root, "vocab_size", mt5 ? 250112 : 32128, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "d_model", 512, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "d_kv", 64, 4096, &cfg->head_dim, file) != CP_OK ||
        cp_config_positive(root, "d_ff", mt5 ? 1024 : 2048, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "num_layers", mt5 ? 8 : 6, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_heads", mt5 ? 6 : 8, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "relative_attention_num_buckets", 32, 1 << 20, &cfg->t5.num_buckets, file) != CP_OK ||
        cp_config_positive(root, "relative_attention_max_distance", 128, CP_MAX_POSITIONS, &cfg->t5.max_distance, file) != CP_OK ||
        cp_config_positive(root, "n_positions", 512, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    const cJSON *nd = cp_json_field(root, "num_decoder_layers");
    cfg->num_decoder_layers = cfg->num_layers;
    if (nd && !cJSON_IsNull(nd) &&
        cp_config_positive(root, "num_decoder_layers", 0, CP_MAX_LAYERS, &cfg->num_decoder_layers, file) != CP_OK)
        return CP_ERR;
    cfg->num_kv_heads = cfg->num_heads;
    if (cp_json_get_double(root, "dropout_rate", 0.1, 0, &cfg->t5.dropout, file) != CP_OK ||
        cp_json_get_double(root, "layer_norm_epsilon", 1e-6, 0, &cfg->layer_norm_eps, file) != CP_OK)
        return CP_ERR;
    if (!(cfg->t5.dropout >= 0 && cfg->t5.dropout <= 1))
        return cp_error("%s: field \"dropout_rate\": %g is not a probability", file, cfg->t5.dropout);
    cfg->hidden_dropout = cfg->attn_dropout = cfg->t5.dropout;
    if (cp_t5_bucket_check(1, cfg->t5.num_buckets, cfg->t5.max_distance) != CP_OK ||
        cp_t5_bucket_check(0, cfg->t5.num_buckets, cfg->t5.max_distance) != CP_OK)
        return cp_error_context("%s", file);
    if (feed_forward(cfg, root, file) != CP_OK) return CP_ERR;
    const cp_activation act = cfg->activation;
    /* the common fields (architectures, dtype, tie flag); T5 has no activation_function key */
    if (cp_config_read_common(cfg, root, file, "relu") != CP_OK) return CP_ERR;
    cfg->activation = act;
    if (cp_config_token_id(root, "pad_token_id", 0, &cfg->pad_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 1, &cfg->eos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "decoder_start_token_id", mt5 ? 0 : CP_TOKEN_UNSET, &cfg->decoder_start_token_id, file) != CP_OK)
        return CP_ERR;
    int scale = 0;
    if (!mt5) {
        const cJSON *tie = cp_json_field(root, "tie_word_embeddings");
        if (cp_json_get_bool(root, "scale_decoder_outputs", !(tie && cJSON_IsFalse(tie)), 0, &scale, file) != CP_OK) return CP_ERR;
    }
    cfg->t5.scale_decoder_outputs = scale;
    cfg->tie_word_embeddings = 1; /* forced, as both configs do */
    return CP_OK;
}

/* ---- module tree -------------------------------------------------------------------------------- */

/* A T5Attention (q, k, v, o without biases; the relative position table in block 0's self-attention). */
static cp_module *attention(cp_module *parent, const char *name, const char *pfx, const cp_model_config *c, int rel,
                            cp_module **q, cp_module **k, cp_module **v, cp_module **o, cp_module **table) {
    char cls[48];
    snprintf(cls, sizeof cls, "%sAttention", pfx);
    const int64_t C = c->hidden_size, inner = c->num_heads * c->head_dim;
    cp_module *a = cp_module_new(parent, name, cls, CP_MOD_CONTAINER);
    if (!a || !(*q = cp_module_linear(a, "q", C, inner, 0)) || !(*k = cp_module_linear(a, "k", C, inner, 0)) ||
        !(*v = cp_module_linear(a, "v", C, inner, 0)) || !(*o = cp_module_linear(a, "o", inner, C, 0)))
        return NULL;
    if (rel && !(*table = cp_module_embedding(a, "relative_attention_bias", c->t5.num_buckets, c->num_heads))) return NULL;
    return a;
}

/* One T5Block: layer.0 self-attention, [layer.1 cross-attention], then the feed-forward layer. */
static cp_status block(cp_module *list, int64_t i, int dec, const char *pfx, const cp_model_config *c, t5_layer *ly,
                       cp_module **table) {
    char idx[24], cls[64];
    const int64_t C = c->hidden_size;
    const double p = c->t5.dropout, eps = c->layer_norm_eps;
    snprintf(idx, sizeof idx, "%lld", (long long)i);
    snprintf(cls, sizeof cls, "%sBlock", pfx);
    cp_module *b = cp_module_new(list, idx, cls, CP_MOD_CONTAINER);
    cp_module *layers = b ? cp_module_new(b, "layer", "ModuleList", CP_MOD_LIST) : NULL;
    snprintf(cls, sizeof cls, "%sLayerSelfAttention", pfx);
    cp_module *l0 = layers ? cp_module_new(layers, "0", cls, CP_MOD_CONTAINER) : NULL;
    char norm[48];
    snprintf(norm, sizeof norm, "%sLayerNorm", pfx);
    if (!l0 || !(ly->sa = attention(l0, "SelfAttention", pfx, c, i == 0, &ly->q, &ly->k, &ly->v, &ly->o, table)) ||
        !(ly->sa_norm = cp_module_rmsnorm(l0, "layer_norm", norm, C, eps)) || !(ly->sa_drop = cp_module_dropout(l0, "dropout", p)))
        return CP_ERR;
    if (dec) {
        snprintf(cls, sizeof cls, "%sLayerCrossAttention", pfx);
        cp_module *l1 = cp_module_new(layers, "1", cls, CP_MOD_CONTAINER);
        if (!l1 || !(ly->ca = attention(l1, "EncDecAttention", pfx, c, 0, &ly->cq, &ly->ck, &ly->cv, &ly->co, NULL)) ||
            !(ly->ca_norm = cp_module_rmsnorm(l1, "layer_norm", norm, C, eps)) || !(ly->ca_drop = cp_module_dropout(l1, "dropout", p)))
            return CP_ERR;
    }
    snprintf(cls, sizeof cls, "%sLayerFF", pfx);
    cp_module *ff = cp_module_new(layers, dec ? "2" : "1", cls, CP_MOD_CONTAINER);
    snprintf(cls, sizeof cls, "%s%s", pfx, c->t5.gated ? "DenseGatedActDense" : "DenseActDense");
    cp_module *d = ff ? cp_module_new(ff, "DenseReluDense", cls, CP_MOD_CONTAINER) : NULL;
    const int64_t F = c->intermediate_size;
    if (!d) return CP_ERR;
    if (c->t5.gated ? !(ly->wi = cp_module_linear(d, "wi_0", C, F, 0)) || !(ly->wi1 = cp_module_linear(d, "wi_1", C, F, 0))
                    : !(ly->wi = cp_module_linear(d, "wi", C, F, 0)))
        return CP_ERR;
    if (!(ly->wo = cp_module_linear(d, "wo", F, C, 0)) || !(ly->ff_inner_drop = cp_module_dropout(d, "dropout", p)) ||
        !cp_module_activation(d, "act", c->activation) || !(ly->ff_norm = cp_module_rmsnorm(ff, "layer_norm", norm, C, eps)) ||
        !(ly->ff_drop = cp_module_dropout(ff, "dropout", p)))
        return CP_ERR;
    return CP_OK;
}

/* One T5Stack ("encoder" / "decoder") under the root, filling its cp_stack. */
static cp_status build_stack(cp_model *m, t5_state *s, int dec, const char *pfx) {
    const cp_model_config *c = &m->config;
    char cls[48];
    snprintf(cls, sizeof cls, "%sStack", pfx);
    cp_module *st = cp_module_new(m->root, dec ? "decoder" : "encoder", cls, CP_MOD_CONTAINER);
    if (!st || !(s->embed[dec] = cp_module_embedding(st, "embed_tokens", c->vocab_size, c->hidden_size))) return CP_ERR;
    cp_param_tie(s->embed[dec]->weight, s->shared->weight);
    const int64_t L = dec ? c->num_decoder_layers : c->num_layers;
    cp_module *list = cp_module_new(st, "block", "ModuleList", CP_MOD_LIST);
    s->layers[dec] = cp_calloc((size_t)L, sizeof *s->layers[dec], "T5 layers");
    s->n_layers[dec] = L;
    if (!list || !s->layers[dec]) return CP_ERR;
    for (int64_t i = 0; i < L; i++)
        if (block(list, i, dec, pfx, c, &s->layers[dec][i], &s->rel_bias[dec]) != CP_OK) return CP_ERR;
    snprintf(cls, sizeof cls, "%sLayerNorm", pfx);
    cp_module *norm = cp_module_rmsnorm(st, "final_layer_norm", cls, c->hidden_size, c->layer_norm_eps);
    cp_module *drop = norm ? cp_module_dropout(st, "dropout", c->t5.dropout) : NULL;
    if (!drop) return CP_ERR;
    cp_stack *k = dec ? &m->stack : &m->encoder_stack;
    k->embeddings[0] = s->embed[dec];
    k->embeddings[1] = s->rel_bias[dec];
    k->final_norm = norm;
    k->embed_dropout = k->final_dropout = drop; /* T5Stack.dropout, on the embeddings and after the final norm */
    k->ops = dec ? &cp_t5_decoder_ops : &cp_t5_encoder_ops;
    k->root = st;
    return cp_stack_blocks_into(k, st, "block");
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    const char *pfx = is_mt5(c) ? "MT5" : "T5";
    char cls[64];
    t5_state *s = cp_calloc(1, sizeof *s, "T5 state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    snprintf(cls, sizeof cls, "%sForConditionalGeneration", pfx);
    if (!(m->root = cp_module_new(NULL, "", cls, CP_MOD_CONTAINER)) ||
        !(s->shared = cp_module_embedding(m->root, "shared", c->vocab_size, c->hidden_size)))
        return CP_ERR;
    if (build_stack(m, s, 0, pfx) != CP_OK || build_stack(m, s, 1, pfx) != CP_OK) return CP_ERR;
    if (!(s->lm_head = cp_module_linear(m->root, "lm_head", c->hidden_size, c->vocab_size, 0))) return CP_ERR;
    cp_param_tie(s->lm_head->weight, s->shared->weight); /* untied at load when the checkpoint's differs */
    m->lm_head = s->lm_head;
    m->head = (cp_head){.task = CP_TASK_SEQ_2_SEQ_LM, .num_labels = c->vocab_size, .classifier = s->lm_head,
                        .pad_token_id = CP_TOKEN_UNSET};
    m->decoder_output_scale = c->t5.scale_decoder_outputs ? pow((double)c->hidden_size, -0.5) : 1.0;
    return CP_OK;
}

static void free_state(cp_model *m) {
    t5_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers[0]);
    cp_free(s->layers[1]);
    cp_free(s);
    m->arch_state = NULL;
}

/* T5ForConditionalGeneration._keys_to_ignore_on_load_unexpected */
static const char *const ignored_suffixes[] = {"decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", NULL};

#define T5_ARCH(type, cls)                                                                                              \
    {.model_type = type, .causal_lm_class = cls, .base_prefix = "transformer", .encoder_decoder = 1,                   \
     .untie_differing = 1, .parse_config = parse_config, .build = build, .free_state = free_state,                      \
     .block_ops = &cp_t5_decoder_ops, .rotary_positions = 1, .ignored_suffixes = ignored_suffixes}

const cp_arch cp_arch_t5 = T5_ARCH("t5", "T5ForConditionalGeneration");
const cp_arch cp_arch_mt5 = T5_ARCH("mt5", "MT5ForConditionalGeneration");
