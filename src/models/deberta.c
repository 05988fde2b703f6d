/*
 * deberta.c — DeBERTa and DeBERTa-v2/v3 (DebertaModel / DebertaV2Model, *ForSequenceClassification,
 * *ForTokenClassification): config.json as DebertaConfig / DebertaV2Config read it, the module tree
 * with transformers' names and class names, the heads, and the two arch tables. The network and its
 * backward are in deberta_blocks.c (the formulas in deberta.h).
 *
 * What this is not: the enhanced mask decoder and the MLM heads (DebertaForMaskedLM), z_steps,
 * talking heads (v1 talking_head: refused by name), an even conv_kernel_size (refused), attention_head_size other than hidden_size / num_attention_heads (refused).
 */
#include "models/deberta.h"
#include "core/alloc.h"
#include "io/json.h"
#include "nn/relative_position.h"

#include <stdio.h>
#include <string.h>

/* ---- config ------------------------------------------------------------------------------------- */

/* pos_att_type: a list of names, or one string "p2c|c2p" (DebertaConfig splits it on '|', lower-cased). */
static cp_status read_pos_att_type(cp_model_config *cfg, const cJSON *root, const char *file) {
    const cJSON *f = cp_json_field(root, "pos_att_type");
    cfg->deberta.c2p = cfg->deberta.p2c = 0;
    cfg->deberta.n_pos_att_type = 0;
    if (!f) return CP_OK;
    char buf[256];
    if (cJSON_IsString(f)) {
        snprintf(buf, sizeof buf, "%s", f->valuestring);
    } else if (cJSON_IsArray(f)) {
        size_t k = 0;
        buf[0] = '\0';
        const cJSON *it;
        cJSON_ArrayForEach(it, f) {
            if (!cJSON_IsString(it)) return cp_error("%s: field \"pos_att_type\": expected a list of strings (\"c2p\", \"p2c\")", file);
            k += (size_t)snprintf(buf + k, k < sizeof buf ? sizeof buf - k : 0, "%s%s", k ? "|" : "", it->valuestring);
            if (k >= sizeof buf) return cp_error("%s: field \"pos_att_type\": too long", file);
        }
        if (!cJSON_GetArraySize(f)) return CP_OK;
    } else {
        return cp_error("%s: field \"pos_att_type\": expected a list of strings or a \"p2c|c2p\" string", file);
    }
    for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        while (*tok == ' ') tok++;
        size_t n = strlen(tok);
        while (n && tok[n - 1] == ' ') tok[--n] = '\0';
        for (char *c = tok; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
        cfg->deberta.n_pos_att_type++;
        if (!strcmp(tok, "c2p")) cfg->deberta.c2p = 1;
        else if (!strcmp(tok, "p2c")) cfg->deberta.p2c = 1;
        else if (cfg->deberta.version == 2 || strcmp(tok, "p2p") != 0)
            return cp_error("%s: field \"pos_att_type\": unknown entry \"%s\" (expected \"c2p\", \"p2c\")", file, tok);
    }
    return CP_OK;
}

static cp_status read_activation(const cJSON *root, const char *key, const char *dflt, cp_activation *out, const char *file) {
    const char *name;
    if (cp_json_get_string(root, key, dflt, 0, &name, file) != CP_OK) return CP_ERR;
    const int a = cp_activation_from_name(name);
    if (a < 0) return cp_error("%s: field \"%s\": unknown activation \"%s\" (supported: %s)", file, key, name, cp_activation_supported());
    *out = (cp_activation)a;
    return CP_OK;
}

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file, int version) {
    const int v2 = version == 2;
    cfg->deberta.version = version;
    int64_t tv, max_rel, buckets, conv, head_size, pooler_size;
    if (cp_config_positive(root, "vocab_size", v2 ? 128100 : 50265, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", v2 ? 1536 : 768, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", v2 ? 24 : 12, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", v2 ? 24 : 12, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "intermediate_size", v2 ? 6144 : 3072, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 512, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK ||
        cp_json_get_int(root, "type_vocab_size", 0, 0, &tv, file) != CP_OK ||
        cp_json_get_int(root, "max_relative_positions", -1, 0, &max_rel, file) != CP_OK ||
        cp_json_get_int(root, "position_buckets", -1, 0, &buckets, file) != CP_OK ||
        cp_json_get_int(root, "conv_kernel_size", 0, 0, &conv, file) != CP_OK ||
        cp_json_get_int(root, "attention_head_size", 0, 0, &head_size, file) != CP_OK ||
        cp_json_get_int(root, "pooler_hidden_size", 0, 0, &pooler_size, file) != CP_OK ||
        cp_config_positive(root, "embedding_size", cfg->hidden_size, CP_MAX_HIDDEN, &cfg->deberta.embedding_size, file) != CP_OK)
        return CP_ERR;
    if (tv < 0 || tv > CP_MAX_VOCAB) return cp_error("%s: field \"type_vocab_size\": %lld (expected 0 or more)", file, (long long)tv);
    cfg->type_vocab_size = tv;
    double cls_dropout = -1;
    if (cp_json_get_double(root, "layer_norm_eps", 1e-7, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "hidden_dropout_prob", 0.1, 0, &cfg->hidden_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_probs_dropout_prob", 0.1, 0, &cfg->attn_dropout, file) != CP_OK ||
        cp_json_get_double(root, "pooler_dropout", 0.0, 0, &cfg->deberta.pooler_dropout, file) != CP_OK ||
        cp_json_get_double(root, "cls_dropout", -1, 0, &cls_dropout, file) != CP_OK)
        return CP_ERR;
    cfg->deberta.cls_dropout = cls_dropout;
    int talking = 0, is_decoder = 0;
    if (cp_json_get_bool(root, "relative_attention", 0, 0, &cfg->deberta.relative_attention, file) != CP_OK ||
        cp_json_get_bool(root, "position_biased_input", 1, 0, &cfg->deberta.position_biased_input, file) != CP_OK ||
        cp_json_get_bool(root, "share_att_key", 0, 0, &cfg->deberta.share_att_key, file) != CP_OK ||
        cp_json_get_bool(root, "talking_head", 0, 0, &talking, file) != CP_OK ||
        cp_json_get_bool(root, "is_decoder", 0, 0, &is_decoder, file) != CP_OK)
        return CP_ERR;
    if (read_pos_att_type(cfg, root, file) != CP_OK) return CP_ERR;
    if (!v2 && talking)
        return cp_error("%s: field \"talking_head\": true is not supported (DeBERTa's talking-head attention, "
                        "head_logits_proj / head_weights_proj)", file);
    if (is_decoder) return cp_error("%s: field \"is_decoder\": true is not supported (cpeft runs the encoder only)", file);
    cfg->deberta.conv_kernel_size = v2 && conv > 0 ? conv : 0;
    cfg->deberta.conv_groups = 1;
    if (cfg->deberta.conv_kernel_size) {
        if (conv % 2 == 0 || conv > 4097)
            return cp_error("%s: field \"conv_kernel_size\": %lld is not supported (an odd kernel keeps the sequence length; "
                            "transformers fails on an even one)", file, (long long)conv);
        if (cp_json_get_int(root, "conv_groups", 1, 0, &cfg->deberta.conv_groups, file) != CP_OK ||
            read_activation(root, "conv_act", "tanh", &cfg->deberta.conv_act, file) != CP_OK)
            return CP_ERR;
        if (cfg->deberta.conv_groups < 1 || cfg->hidden_size % cfg->deberta.conv_groups)
            return cp_error("%s: field \"conv_groups\": %lld does not divide hidden_size %lld", file,
                            (long long)cfg->deberta.conv_groups, (long long)cfg->hidden_size);
    }
    if (head_size && head_size * cfg->num_heads != cfg->hidden_size)
        return cp_error("%s: field \"attention_head_size\": %lld × %lld heads ≠ hidden_size %lld is not supported", file,
                        (long long)head_size, (long long)cfg->num_heads, (long long)cfg->hidden_size);
    if (pooler_size && pooler_size != cfg->hidden_size)
        return cp_error("%s: field \"pooler_hidden_size\": %lld ≠ hidden_size %lld (ContextPooler's classifier takes "
                        "hidden_size inputs)", file, (long long)pooler_size, (long long)cfg->hidden_size);
    cfg->deberta.max_relative_positions = max_rel < 1 ? cfg->max_positions : max_rel;
    if (cfg->deberta.max_relative_positions > CP_MAX_POSITIONS)
        return cp_error("%s: field \"max_relative_positions\": %lld is too large", file, (long long)max_rel);
    cfg->deberta.position_buckets = v2 && buckets > 0 ? buckets : -1;
    if (cfg->deberta.position_buckets > CP_MAX_POSITIONS)
        return cp_error("%s: field \"position_buckets\": %lld is too large", file, (long long)buckets);
    if (v2) {
        const char *norm;
        if (cp_json_get_string(root, "norm_rel_ebd", "none", 0, &norm, file) != CP_OK) return CP_ERR;
        cfg->deberta.norm_rel_ebd = strstr(norm, "layer_norm") != NULL;
    }
    if (cfg->deberta.relative_attention &&
        cp_deberta_bucket_check(cfg->deberta.position_buckets, cfg->deberta.max_relative_positions) != CP_OK)
        return cp_error_context("%s", file);
    if (cp_config_read_common(cfg, root, file, "gelu") != CP_OK) return CP_ERR;
    if (!cJSON_GetObjectItem(root, "pad_token_id")) cfg->pad_token_id = 0; /* DebertaConfig's default; null: none */
    if (read_activation(root, "hidden_act", "gelu", &cfg->activation, file) != CP_OK ||
        read_activation(root, "pooler_hidden_act", "gelu", &cfg->deberta.pooler_act, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

static cp_status parse_v1(cp_model_config *cfg, const cJSON *root, const char *file) { return parse_config(cfg, root, file, 1); }
static cp_status parse_v2(cp_model_config *cfg, const cJSON *root, const char *file) { return parse_config(cfg, root, file, 2); }

/* ---- the tree ----------------------------------------------------------------------------------- */

typedef struct {
    const char *stem;       /* "Deberta", "DebertaV2" */
    int v2;
} names;

static const char *cls(char *buf, size_t n, const names *nm, const char *suffix) {
    snprintf(buf, n, "%s%s", nm->stem, suffix);
    return buf;
}

/* A LayerNorm of the version's class: v1's DebertaLayerNorm (same numbers, its own repr), v2's nn.LayerNorm. */
static cp_module *layernorm(const cp_model *m, cp_module *parent, const char *name) {
    cp_module *ln = cp_module_layernorm(parent, name, m->config.hidden_size, m->config.layer_norm_eps);
    if (ln && m->config.deberta.version == 1) {
        char *c = cp_strdup("DebertaLayerNorm");
        if (!c) return NULL;
        cp_free(ln->class_name);
        ln->class_name = c;
    }
    return ln;
}

static cp_status build_embeddings(cp_model *m, cp_deberta_state *s, cp_module *base, const names *nm) {
    const cp_model_config *c = &m->config;
    const int64_t E = c->deberta.embedding_size;
    char k[96];
    cp_module *emb = cp_module_new(base, "embeddings", cls(k, sizeof k, nm, "Embeddings"), CP_MOD_CONTAINER);
    if (!emb || !(s->word = cp_module_embedding(emb, "word_embeddings", c->vocab_size, E))) return CP_ERR;
    s->word->padding_idx = c->pad_token_id; /* nn.Embedding(..., padding_idx=pad_token_id); -1 (null): none */
    if (c->deberta.position_biased_input && !(s->position = cp_module_embedding(emb, "position_embeddings", c->max_positions, E)))
        return CP_ERR;
    if (c->type_vocab_size > 0 && !(s->token_type = cp_module_embedding(emb, "token_type_embeddings", c->type_vocab_size, E)))
        return CP_ERR;
    if (E != c->hidden_size && !(s->embed_proj = cp_module_linear(emb, "embed_proj", E, c->hidden_size, 0))) return CP_ERR;
    if (!(s->ln_emb = layernorm(m, emb, "LayerNorm")) || !(m->stack.embed_dropout = cp_module_dropout(emb, "dropout", c->hidden_dropout)))
        return CP_ERR;
    s->embeddings = emb;
    return CP_OK;
}

/* DisentangledSelfAttention of layer ly, under att. */
static cp_status build_self_attention(cp_model *m, cp_deberta_layer *ly, cp_module *att) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size;
    const int rel = c->deberta.relative_attention;
    cp_module *self = cp_module_new(att, "self", "DisentangledSelfAttention", CP_MOD_CONTAINER);
    if (!(ly->self = self)) return CP_ERR;
    if (c->deberta.version == 1) {
        /* in_proj, then the q_bias / v_bias parameters, pos_dropout, pos_proj, pos_q_proj, dropout */
        if (!(ly->in_proj = cp_module_linear(self, "in_proj", C, 3 * C, 0)) || !cp_module_own_param(self, "q_bias", C) ||
            !cp_module_own_param(self, "v_bias", C))
            return CP_ERR;
        if (rel) {
            if (!(ly->pos_drop = cp_module_dropout(self, "pos_dropout", c->hidden_dropout))) return CP_ERR;
            if (c->deberta.c2p && !(ly->pos_key = cp_module_linear(self, "pos_proj", C, C, 0))) return CP_ERR;
            if (c->deberta.p2c && !(ly->pos_query = cp_module_linear(self, "pos_q_proj", C, C, 1))) return CP_ERR;
        }
    } else {
        if (!(ly->query = cp_module_linear(self, "query_proj", C, C, 1)) || !(ly->key = cp_module_linear(self, "key_proj", C, C, 1)) ||
            !(ly->value = cp_module_linear(self, "value_proj", C, C, 1)))
            return CP_ERR;
        if (rel) {
            if (!(ly->pos_drop = cp_module_dropout(self, "pos_dropout", c->hidden_dropout))) return CP_ERR;
            if (c->deberta.share_att_key) {
                ly->pos_key = c->deberta.c2p ? ly->key : NULL;
                ly->pos_query = c->deberta.p2c ? ly->query : NULL;
            } else {
                if (c->deberta.c2p && !(ly->pos_key = cp_module_linear(self, "pos_key_proj", C, C, 1))) return CP_ERR;
                if (c->deberta.p2c && !(ly->pos_query = cp_module_linear(self, "pos_query_proj", C, C, 1))) return CP_ERR;
            }
        }
    }
    return (ly->attn_drop = cp_module_dropout(self, "dropout", c->attn_dropout)) ? CP_OK : CP_ERR;
}

/* The base model (embeddings, encoder) under parent as `name`, or as the root. */
static cp_module *build_base(cp_model *m, cp_deberta_state *s, cp_module *parent, const char *name, const names *nm) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size;
    char k[96];
    cp_module *base = cp_module_new(parent, name, cls(k, sizeof k, nm, "Model"), CP_MOD_CONTAINER);
    if (!base || build_embeddings(m, s, base, nm) != CP_OK) return NULL;
    cp_module *enc = cp_module_new(base, "encoder", cls(k, sizeof k, nm, "Encoder"), CP_MOD_CONTAINER);
    cp_module *list = enc ? cp_module_new(enc, "layer", "ModuleList", CP_MOD_LIST) : NULL;
    if (!list) return NULL;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_deberta_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *blk = cp_module_new(list, idx, cls(k, sizeof k, nm, "Layer"), CP_MOD_CONTAINER);
        cp_module *att = blk ? cp_module_new(blk, "attention", cls(k, sizeof k, nm, "Attention"), CP_MOD_CONTAINER) : NULL;
        if (!att || build_self_attention(m, ly, att) != CP_OK) return NULL;
        cp_module *so = cp_module_new(att, "output", cls(k, sizeof k, nm, "SelfOutput"), CP_MOD_CONTAINER);
        if (!so || !(ly->attn_out = cp_module_linear(so, "dense", C, C, 1)) || !(ly->ln_attn = layernorm(m, so, "LayerNorm")) ||
            !(ly->attn_out_drop = cp_module_dropout(so, "dropout", c->hidden_dropout)))
            return NULL;
        cp_module *im = cp_module_new(blk, "intermediate", cls(k, sizeof k, nm, "Intermediate"), CP_MOD_CONTAINER);
        if (!im || !(ly->inter = cp_module_linear(im, "dense", C, c->intermediate_size, 1)) ||
            !cp_module_activation(im, "intermediate_act_fn", c->activation))
            return NULL;
        cp_module *out = cp_module_new(blk, "output", cls(k, sizeof k, nm, "Output"), CP_MOD_CONTAINER);
        if (!out || !(ly->out = cp_module_linear(out, "dense", c->intermediate_size, C, 1)) ||
            !(ly->ln_out = layernorm(m, out, "LayerNorm")) || !(ly->out_drop = cp_module_dropout(out, "dropout", c->hidden_dropout)))
            return NULL;
    }
    if (c->deberta.relative_attention) {
        const int64_t rows = 2 * (c->deberta.position_buckets > 0 ? c->deberta.position_buckets : c->deberta.max_relative_positions);
        if (!(s->rel_embeddings = cp_module_embedding(enc, "rel_embeddings", rows, C))) return NULL;
    }
    /* v2 builds encoder.LayerNorm whenever norm_rel_ebd has "layer_norm" (it is used only with relative attention) */
    if (nm->v2 && c->deberta.norm_rel_ebd && !(s->rel_ln = layernorm(m, enc, "LayerNorm"))) return NULL;
    if (c->deberta.conv_kernel_size) { /* ConvLayer: conv, LayerNorm, dropout */
        cp_module *cl = cp_module_new(enc, "conv", "ConvLayer", CP_MOD_CONTAINER);
        if (!cl || !(s->conv = cp_module_conv(cl, "conv", C, C, c->deberta.conv_kernel_size, c->deberta.conv_groups)) ||
            !(s->conv_ln = layernorm(m, cl, "LayerNorm")) || !(s->conv_drop = cp_module_dropout(cl, "dropout", c->hidden_dropout)))
            return NULL;
        s->conv_layer = cl;
    }
    if (cp_stack_blocks(m, enc, "layer") != CP_OK) return NULL;
    return base;
}

/* The task class's modules after the base model: SEQ_CLS pooler (ContextPooler), classifier, dropout;
 * TOKEN_CLS dropout, classifier. Fills m->head. */
static cp_status build_head(cp_model *m) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size;
    cp_head *h = &m->head;
    if (m->task == CP_TASK_SEQ_CLS) {
        const double drop = c->deberta.cls_dropout >= 0 ? c->deberta.cls_dropout : c->hidden_dropout;
        *h = (cp_head){.task = m->task, .num_labels = c->num_labels, .problem_type = c->problem_type, .pooling = CP_POOL_FIRST,
                       .pad_token_id = c->pad_token_id, .dense_act = c->deberta.pooler_act,
                       .auto_soft_labels = 1}; /* problem_type null with float (B,K) labels: soft-label cross-entropy */
        /* classifier(dropout(act(pooler.dense(pooler.dropout(x))))) */
        cp_module *pooler = cp_module_new(m->root, "pooler", "ContextPooler", CP_MOD_CONTAINER);
        if (!pooler || !(h->dense = cp_module_linear(pooler, "dense", C, C, 1)) ||
            !(h->dense_dropout = cp_module_dropout(pooler, "dropout", c->deberta.pooler_dropout)) ||
            !(h->classifier = cp_module_linear(m->root, "classifier", C, c->num_labels, 1)) ||
            !(h->dropout = cp_module_dropout(m->root, "dropout", drop)))
            return CP_ERR;
        return CP_OK;
    }
    *h = (cp_head){.task = m->task, .num_labels = c->num_labels, .problem_type = c->problem_type, .pooling = CP_POOL_FIRST,
                   .pad_token_id = c->pad_token_id, .dense_act = CP_ACT_TANH};
    if (!(h->dropout = cp_module_dropout(m->root, "dropout", c->hidden_dropout)) ||
        !(h->classifier = cp_module_linear(m->root, "classifier", C, c->num_labels, 1)))
        return CP_ERR;
    return CP_OK;
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    const names nm = {c->deberta.version == 2 ? "DebertaV2" : "Deberta", c->deberta.version == 2};
    cp_deberta_state *s = cp_calloc(1, sizeof *s, "DeBERTa state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    if (!(s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "DeBERTa layers"))) return CP_ERR;
    char k[96];
    switch (m->task) {
    case CP_TASK_FEATURE_EXTRACTION:
        if (!(m->root = build_base(m, s, NULL, "", &nm))) return CP_ERR;
        break;
    case CP_TASK_SEQ_CLS:
    case CP_TASK_TOKEN_CLS:
        if (!(m->root = cp_module_new(NULL, "", cls(k, sizeof k, &nm, m->task == CP_TASK_SEQ_CLS ? "ForSequenceClassification" : "ForTokenClassification"),
                                      CP_MOD_CONTAINER)) ||
            !build_base(m, s, m->root, m->arch->base_prefix, &nm) || build_head(m) != CP_OK)
            return CP_ERR;
        break;
    default:
        return cp_error("%s: %s has no %s head", m->dir, c->model_type, cp_task_name(m->task));
    }
    /* what the scaffold asks "trains?" below the blocks: the embeddings, and the relative embeddings
     * (with their LayerNorm), whose gradient comes back through every layer */
    int n = 0;
    m->stack.embeddings[n++] = s->embeddings;
    if (s->rel_embeddings) m->stack.embeddings[n++] = s->rel_embeddings;
    if (s->rel_ln) m->stack.embeddings[n++] = s->rel_ln;
    if (s->conv_layer) m->stack.embeddings[n++] = s->conv_layer; /* in block 0's backward: a trained conv needs it */
    m->stack.final_norm = NULL;
    return CP_OK;
}

static void free_state(cp_model *m) {
    cp_deberta_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* buffers some checkpoints carry (persistent in older transformers) */
static const char *const ignored_suffixes[] = {"embeddings.position_ids", NULL};

const cp_arch cp_arch_deberta = {
    .model_type = "deberta",
    .causal_lm_class = "DebertaModel",
    .base_prefix = "deberta",
    .class_stem = "Deberta",
    .encoder = 1,
    .parse_config = parse_v1,
    .build = build,
    .free_state = free_state,
    .block_ops = &cp_deberta_block_ops,
    .ignored_suffixes = ignored_suffixes,
};

const cp_arch cp_arch_deberta_v2 = {
    .model_type = "deberta-v2",
    .causal_lm_class = "DebertaV2Model",
    .base_prefix = "deberta",
    .class_stem = "DebertaV2",
    .encoder = 1,
    .parse_config = parse_v2,
    .build = build,
    .free_state = free_state,
    .block_ops = &cp_deberta_block_ops,
    .ignored_suffixes = ignored_suffixes,
};
