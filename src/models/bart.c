/*
 * bart.c — BART: config.json as transformers 5.23's BartConfig reads it, and the module tree of
 * BartForConditionalGeneration with Hugging Face's names and classes. The blocks are in
 * models/bart_blocks.c, the encoder-decoder call in models/seq2seq.c; see bart.h for the computation.
 *
 * Config rules (configuration_bart.py, modeling_bart.py):
 *   - d_model, encoder_layers / decoder_layers, encoder_attention_heads / decoder_attention_heads
 *     (each must divide d_model), encoder_ffn_dim / decoder_ffn_dim, max_position_embeddings,
 *     activation_function (gelu), dropout 0.1, attention_dropout 0, activation_dropout 0,
 *     scale_embedding false; LayerNorms are nn.LayerNorm's (eps 1e-5). BartConfig reads no
 *     normalize_before: BART's layers are always post-LN;
 *   - pad_token_id 1 (the token embeddings' padding_idx), bos 0, eos 2, decoder_start_token_id 2;
 *   - tie_word_embeddings (true): encoder.embed_tokens, decoder.embed_tokens and lm_head share
 *     model.shared's weight; false ties none of them (transformers 5 expands no tied keys then);
 *   - final_logits_bias, a (1,V) buffer, is added to the logits (cp_arch.logits_bias);
 *   - encoder_layerdrop / decoder_layerdrop: LayerDrop is not applied by cpeft's training (warned).
 */
#include "models/bart.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static cp_status probability(const cJSON *root, const char *key, double dflt, double *out, const char *file) {
    if (cp_json_get_double(root, key, dflt, 0, out, file) != CP_OK) return CP_ERR;
    if (!(*out >= 0 && *out <= 1)) return cp_error("%s: field \"%s\": %g is not a probability", file, key, *out);
    return CP_OK;
}

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    int64_t enc_heads, dec_heads;
    if (cp_config_positive(root, "vocab_size", 50265, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "d_model", 1024, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "encoder_layers", 12, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "decoder_layers", 12, CP_MAX_LAYERS, &cfg->num_decoder_layers, file) != CP_OK ||
        cp_config_positive(root, "encoder_attention_heads", 16, CP_MAX_HEADS, &enc_heads, file) != CP_OK ||
        cp_config_positive(root, "decoder_attention_heads", 16, CP_MAX_HEADS, &dec_heads, file) != CP_OK ||
        cp_config_positive(root, "encoder_ffn_dim", 4096, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "decoder_ffn_dim", 4096, CP_MAX_INTERMEDIATE, &cfg->bart.decoder_ffn, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 1024, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    const char *which[2] = {"encoder_attention_heads", "decoder_attention_heads"};
    const int64_t heads[2] = {enc_heads, dec_heads};
    for (int i = 0; i < 2; i++)
        if (cfg->hidden_size % heads[i])
            return cp_error("%s: field \"%s\": embed_dim must be divisible by num_heads (got `embed_dim`: %lld and "
                            "`num_heads`: %lld)", file, which[i], (long long)cfg->hidden_size, (long long)heads[i]);
    cfg->num_heads = cfg->num_kv_heads = enc_heads;
    cfg->head_dim = cfg->hidden_size / enc_heads;
    cfg->bart.decoder_heads = dec_heads;
    cfg->layer_norm_eps = 1e-5; /* nn.LayerNorm's default */
    if (probability(root, "dropout", 0.1, &cfg->hidden_dropout, file) != CP_OK ||
        probability(root, "attention_dropout", 0.0, &cfg->attn_dropout, file) != CP_OK ||
        probability(root, "activation_dropout", 0.0, &cfg->bart.activation_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "scale_embedding", 0, 0, &cfg->bart.scale_embedding, file) != CP_OK)
        return CP_ERR;
    double layerdrop[2];
    if (probability(root, "encoder_layerdrop", 0.0, &layerdrop[0], file) != CP_OK ||
        probability(root, "decoder_layerdrop", 0.0, &layerdrop[1], file) != CP_OK)
        return CP_ERR;
    if (layerdrop[0] > 0 || layerdrop[1] > 0)
        cp_warn("%s: encoder_layerdrop %g / decoder_layerdrop %g: cpeft's training runs every layer (no LayerDrop)", file,
                layerdrop[0], layerdrop[1]);
    /* the common fields (architectures, dtype, tie flag, activation_function) */
    if (cp_config_read_common(cfg, root, file, "gelu") != CP_OK) return CP_ERR;
    if (cp_config_token_id(root, "pad_token_id", 1, &cfg->pad_token_id, file) != CP_OK ||
        cp_config_token_id(root, "bos_token_id", 0, &cfg->bos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "eos_token_id", 2, &cfg->eos_token_id, file) != CP_OK ||
        cp_config_token_id(root, "decoder_start_token_id", 2, &cfg->decoder_start_token_id, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

/* ---- module tree -------------------------------------------------------------------------------- */

/* Gives m the class name PyTorch prints for it (BART's Embedding subclasses). */
static cp_module *named_class(cp_module *m, const char *class_name) {
    if (!m) return NULL;
    char *c = cp_strdup(class_name);
    if (!c) return NULL;
    cp_free(m->class_name);
    m->class_name = c;
    return m;
}

/* A BartScaledWordEmbedding (V,C) with padding_idx pad_token_id. */
static cp_module *word_embedding(cp_module *parent, const char *name, const cp_model_config *c) {
    cp_module *e = named_class(cp_module_embedding(parent, name, c->vocab_size, c->hidden_size), "BartScaledWordEmbedding");
    if (e && c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size) e->padding_idx = c->pad_token_id;
    return e;
}

/* A BartAttention: k_proj, v_proj, q_proj, out_proj (C,C) with biases, in BartAttention's order. */
static cp_module *attention(cp_module *parent, const char *name, int64_t C, cp_module **q, cp_module **k, cp_module **v,
                            cp_module **o) {
    cp_module *a = cp_module_new(parent, name, "BartAttention", CP_MOD_CONTAINER);
    if (!a || !(*k = cp_module_linear(a, "k_proj", C, C, 1)) || !(*v = cp_module_linear(a, "v_proj", C, C, 1)) ||
        !(*q = cp_module_linear(a, "q_proj", C, C, 1)) || !(*o = cp_module_linear(a, "out_proj", C, C, 1)))
        return NULL;
    return a;
}

/* One BartEncoderLayer / BartDecoderLayer, its children in the class's registration order. */
static cp_status layer(cp_module *list, int64_t i, int dec, const cp_model_config *c, int64_t F, bart_layer *ly) {
    char idx[24];
    const int64_t C = c->hidden_size;
    const double eps = c->layer_norm_eps;
    snprintf(idx, sizeof idx, "%lld", (long long)i);
    cp_module *b = cp_module_new(list, idx, dec ? "BartDecoderLayer" : "BartEncoderLayer", CP_MOD_CONTAINER);
    if (!b || !(ly->sa = attention(b, "self_attn", C, &ly->q, &ly->k, &ly->v, &ly->o))) return CP_ERR;
    ly->layer = b;
    if (dec) { /* self_attn, activation_fn, self_attn_layer_norm, encoder_attn, encoder_attn_layer_norm */
        if (!cp_module_activation(b, "activation_fn", c->activation) ||
            !(ly->sa_norm = cp_module_layernorm(b, "self_attn_layer_norm", C, eps)) ||
            !(ly->ca = attention(b, "encoder_attn", C, &ly->cq, &ly->ck, &ly->cv, &ly->co)) ||
            !(ly->ca_norm = cp_module_layernorm(b, "encoder_attn_layer_norm", C, eps)))
            return CP_ERR;
    } else if (!(ly->sa_norm = cp_module_layernorm(b, "self_attn_layer_norm", C, eps)) ||
               !cp_module_activation(b, "activation_fn", c->activation)) {
        return CP_ERR;
    }
    if (!(ly->fc1 = cp_module_linear(b, "fc1", C, F, 1)) || !(ly->fc2 = cp_module_linear(b, "fc2", F, C, 1)) ||
        !(ly->ff_norm = cp_module_layernorm(b, "final_layer_norm", C, eps)))
        return CP_ERR;
    return CP_OK;
}

/* One BartEncoder / BartDecoder under model, filling its cp_stack. */
static cp_status build_stack(cp_model *m, cp_module *model, bart_state *s, int dec) {
    const cp_model_config *c = &m->config;
    cp_module *st = cp_module_new(model, dec ? "decoder" : "encoder", dec ? "BartDecoder" : "BartEncoder", CP_MOD_CONTAINER);
    if (!st || !(s->embed[dec] = word_embedding(st, "embed_tokens", c)) ||
        !(s->positions[dec] = named_class(cp_module_embedding(st, "embed_positions", c->max_positions + CP_BART_POSITION_OFFSET,
                                                              c->hidden_size), "BartLearnedPositionalEmbedding")))
        return CP_ERR;
    s->stack[dec] = st;
    if (c->tie_word_embeddings) cp_param_tie(s->embed[dec]->weight, s->shared->weight);
    const int64_t L = dec ? c->num_decoder_layers : c->num_layers;
    cp_module *list = cp_module_new(st, "layers", "ModuleList", CP_MOD_LIST);
    s->layers[dec] = cp_calloc((size_t)L, sizeof *s->layers[dec], "BART layers");
    s->n_layers[dec] = L;
    if (!list || !s->layers[dec]) return CP_ERR;
    for (int64_t i = 0; i < L; i++)
        if (layer(list, i, dec, c, s->ffn[dec], &s->layers[dec][i]) != CP_OK) return CP_ERR;
    if (!(s->ln_emb[dec] = cp_module_layernorm(st, "layernorm_embedding", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
    cp_stack *k = dec ? &m->stack : &m->encoder_stack;
    k->embeddings[0] = s->embed[dec];
    k->embeddings[1] = s->positions[dec];
    k->embeddings[2] = s->ln_emb[dec];
    k->final_norm = NULL; /* post-LN: the last layer's final_layer_norm ends the stack */
    k->embed_dropout = k->final_dropout = NULL; /* functional dropouts, applied by the embedding step */
    k->ops = dec ? &cp_bart_decoder_ops : &cp_bart_encoder_ops;
    k->root = st;
    return cp_stack_blocks_into(k, st, "layers");
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    bart_state *s = cp_calloc(1, sizeof *s, "BART state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    s->heads[0] = c->num_heads;
    s->heads[1] = c->bart.decoder_heads;
    s->ffn[0] = c->intermediate_size;
    s->ffn[1] = c->bart.decoder_ffn;
    s->embed_scale = c->bart.scale_embedding ? (float)sqrt((double)c->hidden_size) : 1.0f;
    cp_module *model;
    if (!(m->root = cp_module_new(NULL, "", "BartForConditionalGeneration", CP_MOD_CONTAINER)) ||
        !(model = cp_module_new(m->root, "model", "BartModel", CP_MOD_CONTAINER)) || !(s->shared = word_embedding(model, "shared", c)))
        return CP_ERR;
    if (build_stack(m, model, s, 0) != CP_OK || build_stack(m, model, s, 1) != CP_OK) return CP_ERR;
    if (!(s->lm_head = cp_module_linear(m->root, "lm_head", c->hidden_size, c->vocab_size, 0))) return CP_ERR;
    if (c->tie_word_embeddings) cp_param_tie(s->lm_head->weight, s->shared->weight);
    m->lm_head = s->lm_head;
    m->head = (cp_head){.task = CP_TASK_SEQ_2_SEQ_LM, .num_labels = c->vocab_size, .classifier = s->lm_head,
                        .pad_token_id = CP_TOKEN_UNSET};
    m->decoder_output_scale = 1.0;
    return CP_OK;
}

static void free_state(cp_model *m) {
    bart_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers[0]);
    cp_free(s->layers[1]);
    cp_free(s);
    m->arch_state = NULL;
}

/* BartPreTrainedModel._keys_to_ignore_on_load_unexpected */
static const char *const ignored_suffixes[] = {"encoder.version", "decoder.version", NULL};

const cp_arch cp_arch_bart = {.model_type = "bart", .causal_lm_class = "BartForConditionalGeneration", .base_prefix = "model",
                              .encoder_decoder = 1, .untie_differing = 1, .parse_config = parse_config, .build = build,
                              .free_state = free_state, .block_ops = &cp_bart_decoder_ops, .learned_positions = 1,
                              .logits_bias = "final_logits_bias", .ignored_suffixes = ignored_suffixes};
