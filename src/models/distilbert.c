/*
 * distilbert.c — DistilBERT (DistilBertModel, DistilBertForSequenceClassification,
 * DistilBertForTokenClassification): the post-LN encoder of bert_common.c (its blocks and embeddings
 * run as they are) under DistilBERT's own names and config keys:
 *
 *   embeddings: word_embeddings + position_embeddings → LayerNorm (eps 1e-12); no token types
 *   transformer.layer.N: attention.{q_lin, k_lin, v_lin, out_lin}, sa_layer_norm,
 *                        ffn.{lin1, lin2, activation}, output_layer_norm
 *   SEQ_CLS: pre_classifier (C,C) → ReLU → classifier on token 0 (seq_classif_dropout)
 *   TOKEN_CLS: classifier on every token (dropout)
 *
 * sinusoidal_pos_embds only changes how transformers initialises the position table; the table is saved
 * with the model and read from the checkpoint like a learned one.
 */
#include "models/bert_common.h"
#include "io/json.h"

#include <stdio.h>
#include <string.h>

static const cp_bert_variant distilbert = {.stem = "DistilBert", .default_pad = 0, .no_pooler = 1, .distil = 1};

/* DistilBertConfig: dim, n_layers, n_heads, hidden_dim, activation, dropout, attention_dropout,
 * seq_classif_dropout (hidden_size, num_hidden_layers, num_attention_heads are its attribute_map aliases). */
static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (cp_config_positive(root, "vocab_size", 30522, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "dim", 768, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "n_layers", 6, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "n_heads", 12, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "hidden_dim", 3072, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 512, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_double(root, "dropout", 0.1, 0, &cfg->hidden_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.1, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "seq_classif_dropout", 0.2, 0, &cfg->seq_classif_dropout, file) != CP_OK ||
        cp_json_get_bool(root, "sinusoidal_pos_embds", 0, 0, &cfg->sinusoidal_positions, file) != CP_OK)
        return CP_ERR;
    if (cfg->hidden_size % cfg->num_heads)
        return cp_error("%s: field \"n_heads\": %lld does not divide dim %lld", file, (long long)cfg->num_heads,
                        (long long)cfg->hidden_size);
    cfg->layer_norm_eps = 1e-12; /* fixed in DistilBERT's LayerNorms */
    cfg->type_vocab_size = 0;
    cfg->embedding_size = cfg->hidden_size;
    if (cp_config_read_common(cfg, root, file, "gelu") != CP_OK) return CP_ERR;
    if (!cp_json_field(root, "pad_token_id")) cfg->pad_token_id = 0;
    const char *act;
    if (cp_json_get_string(root, "activation", "gelu", 0, &act, file) != CP_OK) return CP_ERR;
    int a = cp_activation_from_name(act);
    if (a < 0)
        return cp_error("%s: field \"activation\": unknown activation \"%s\" (supported: %s)", file, act, cp_activation_supported());
    cfg->activation = (cp_activation)a;
    return CP_OK;
}

/* DistilBertModel under parent as `name` (or as the root). */
static cp_module *build_base(cp_model *m, cp_bert_state *s, cp_module *parent, const char *name) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size, I = c->intermediate_size;
    cp_module *base = cp_module_new(parent, name, "DistilBertModel", CP_MOD_CONTAINER);
    cp_module *emb = base ? cp_module_new(base, "embeddings", "Embeddings", CP_MOD_CONTAINER) : NULL;
    if (!emb || !(s->word = cp_module_embedding(emb, "word_embeddings", c->vocab_size, C)) ||
        !(s->position = cp_module_embedding(emb, "position_embeddings", c->max_positions, C)) ||
        !(s->ln_emb = cp_module_layernorm(emb, "LayerNorm", C, c->layer_norm_eps)) ||
        !(s->emb_drop = cp_module_dropout(emb, "dropout", c->hidden_dropout)))
        return NULL;
    s->word->padding_idx = c->pad_token_id;
    s->embeddings = emb;
    cp_module *tr = cp_module_new(base, "transformer", "Transformer", CP_MOD_CONTAINER);
    cp_module *list = tr ? cp_module_new(tr, "layer", "ModuleList", CP_MOD_LIST) : NULL;
    if (!list) return NULL;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_bert_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *blk = cp_module_new(list, idx, "TransformerBlock", CP_MOD_CONTAINER);
        cp_module *att = blk ? cp_module_new(blk, "attention", "DistilBertSelfAttention", CP_MOD_CONTAINER) : NULL;
        if (!att || !(ly->query = cp_module_linear(att, "q_lin", C, C, 1)) || !(ly->key = cp_module_linear(att, "k_lin", C, C, 1)) ||
            !(ly->value = cp_module_linear(att, "v_lin", C, C, 1)) || !(ly->attn_out = cp_module_linear(att, "out_lin", C, C, 1)) ||
            !(ly->attn_drop = cp_module_dropout(att, "dropout", c->attn_dropout)) ||
            !(ly->ln_attn = cp_module_layernorm(blk, "sa_layer_norm", C, c->layer_norm_eps)))
            return NULL;
        cp_module *ffn = cp_module_new(blk, "ffn", "FFN", CP_MOD_CONTAINER);
        /* no dropout after out_lin; ffn.dropout after lin2 */
        if (!ffn || !(ly->out_drop = cp_module_dropout(ffn, "dropout", c->hidden_dropout)) ||
            !(ly->inter = cp_module_linear(ffn, "lin1", C, I, 1)) ||
            !(ly->out = cp_module_linear(ffn, "lin2", I, C, 1)) || !cp_module_activation(ffn, "activation", c->activation) ||
            !(ly->ln_out = cp_module_layernorm(blk, "output_layer_norm", C, c->layer_norm_eps)))
            return NULL;
    }
    if (cp_stack_blocks(m, tr, "layer") != CP_OK) return NULL;
    return base;
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_bert_state *s = cp_bert_state_new(m, &distilbert);
    if (!s) return CP_ERR;
    const int64_t C = c->hidden_size, K = c->num_labels;
    cp_head *h = &m->head;
    switch (m->task) {
    case CP_TASK_FEATURE_EXTRACTION:
        if (!(m->root = build_base(m, s, NULL, ""))) return CP_ERR;
        break;
    case CP_TASK_SEQ_CLS:
        *h = (cp_head){.task = m->task, .num_labels = K, .problem_type = c->problem_type, .pooling = CP_POOL_FIRST,
                       .pad_token_id = c->pad_token_id, .dense_act = CP_ACT_RELU};
        if (!(m->root = cp_module_new(NULL, "", "DistilBertForSequenceClassification", CP_MOD_CONTAINER)) ||
            !build_base(m, s, m->root, "distilbert") || !(h->dense = cp_module_linear(m->root, "pre_classifier", C, C, 1)) ||
            !(h->classifier = cp_module_linear(m->root, "classifier", C, K, 1)) ||
            !(h->dropout = cp_module_dropout(m->root, "dropout", c->seq_classif_dropout)))
            return CP_ERR;
        break;
    case CP_TASK_TOKEN_CLS:
        *h = (cp_head){.task = m->task, .num_labels = K, .problem_type = c->problem_type, .pad_token_id = c->pad_token_id};
        if (!(m->root = cp_module_new(NULL, "", "DistilBertForTokenClassification", CP_MOD_CONTAINER)) ||
            !build_base(m, s, m->root, "distilbert") || !(h->dropout = cp_module_dropout(m->root, "dropout", c->hidden_dropout)) ||
            !(h->classifier = cp_module_linear(m->root, "classifier", C, K, 1)))
            return CP_ERR;
        break;
    default:
        return cp_error("%s: distilbert has no %s head", m->dir, cp_task_name(m->task));
    }
    m->stack.embeddings[0] = s->embeddings;
    m->stack.final_norm = NULL;
    m->stack.embed_dropout = s->emb_drop;
    return CP_OK;
}

static const char *const ignored_suffixes[] = {"embeddings.position_ids", NULL};

const cp_arch cp_arch_distilbert = CP_BERT_FAMILY_ARCH("distilbert", "DistilBert", "distilbert", parse_config, build, ignored_suffixes);
