/*
 * bert_common.c — the BERT-family encoder (bert_common.h): config, tree, embeddings and post-LN
 * blocks, forward and backward side by side.
 *
 *   embed:  pre = (word[ids] + token_type[tt]) + position[pos]     (N,C)  (transformers' order of sums)
 *           x = drop(LayerNorm_emb(pre))                             (drop: the scaffold's embed_dropout)
 *   block:  q, k, v = query(x), key(x), value(x)                     (N,C) three planes
 *           att = drop(softmax(q·kᵀ/√hs + padding mask))·v           bidirectional
 *           r1 = drop(attention.output.dense(att)) + x;   x1 = LayerNorm_attn(r1)
 *           f = act(intermediate.dense(x1))                          (N,I)
 *           r2 = drop(output.dense(f)) + x1;             x = LayerNorm_out(r2)
 *   drop is each site's Dropout in training (cp_bert_layer), the identity otherwise; its backward
 *   draws the forward's mask again (nn/dropout.h).
 *
 * What this is not: relative position embeddings (position_embedding_type relative_key*, which
 * transformers 5 no longer builds), cross-attention, the decoder mode, the MLM head.
 */
#include "models/bert_common.h"
#include "core/alloc.h"
#include "io/json.h"
#include "kernels/vector.h"
#include "models/proj.h"
#include "nn/attention.h"
#include "nn/layernorm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- config ------------------------------------------------------------------------------------- */

cp_status cp_bert_parse_config(cp_model_config *cfg, const cJSON *root, const char *file, const cp_bert_variant *v) {
    if (cp_config_positive(root, "vocab_size", 30522, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 768, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", 12, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", 12, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "intermediate_size", 3072, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 512, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK ||
        cp_config_positive(root, "type_vocab_size", 2, CP_MAX_VOCAB, &cfg->type_vocab_size, file) != CP_OK)
        return CP_ERR;
    if (cp_json_get_double(root, "layer_norm_eps", 1e-12, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "hidden_dropout_prob", 0.1, 0, &cfg->hidden_dropout, file) != CP_OK ||
        cp_json_get_double(root, "attention_probs_dropout_prob", 0.1, 0, &cfg->attn_dropout, file) != CP_OK)
        return CP_ERR;
    const char *pet;
    int is_decoder, cross;
    if (cp_json_get_string(root, "position_embedding_type", "absolute", 0, &pet, file) != CP_OK ||
        cp_json_get_bool(root, "is_decoder", 0, 0, &is_decoder, file) != CP_OK ||
        cp_json_get_bool(root, "add_cross_attention", 0, 0, &cross, file) != CP_OK)
        return CP_ERR;
    if (strcmp(pet, "absolute") != 0)
        return cp_error("%s: field \"position_embedding_type\": \"%s\" is not supported (only \"absolute\")", file, pet);
    if (is_decoder || cross)
        return cp_error("%s: field \"%s\": true is not supported (cpeft runs the encoder only)", file,
                        is_decoder ? "is_decoder" : "add_cross_attention");
    cfg->embedding_size = cfg->hidden_size;
    if (v->projected &&
        cp_config_positive(root, "embedding_size", 128, CP_MAX_HIDDEN, &cfg->embedding_size, file) != CP_OK)
        return CP_ERR;
    if (v->bbox && cp_config_positive(root, "max_2d_position_embeddings", 1024, CP_MAX_POSITIONS, &cfg->max_2d_positions,
                                      file) != CP_OK)
        return CP_ERR;
    if (cp_config_read_common(cfg, root, file, "gelu") != CP_OK) return CP_ERR;
    if (!cp_json_field(root, "pad_token_id")) cfg->pad_token_id = v->default_pad; /* the Config class's default */
    const char *act;
    if (cp_json_get_string(root, "hidden_act", "gelu", 0, &act, file) != CP_OK) return CP_ERR;
    int a = cp_activation_from_name(act);
    if (a < 0)
        return cp_error("%s: field \"hidden_act\": unknown activation \"%s\" (supported: %s)", file, act,
                        cp_activation_supported());
    cfg->activation = (cp_activation)a;
    return CP_OK;
}

/* ---- the tree ----------------------------------------------------------------------------------- */

static const char *cls_name(char *buf, size_t n, const char *stem, const char *suffix) {
    snprintf(buf, n, "%s%s", stem, suffix);
    return buf;
}

/* The base model (embeddings, encoder, [pooler]) under parent as `name`, or as the root. */
/* The embeddings container, its children in the order the variant's class registers them. */
static cp_status build_embeddings(cp_model *m, cp_bert_state *s, cp_module *base, const char *stem) {
    const cp_model_config *c = &m->config;
    const int roberta = s->v->roberta_positions;
    const int64_t E = c->embedding_size, M2 = c->max_2d_positions;
    char k[96];
    cp_module *emb = cp_module_new(base, "embeddings", cls_name(k, sizeof k, stem, "Embeddings"), CP_MOD_CONTAINER);
    if (!emb || !(s->word = cp_module_embedding(emb, "word_embeddings", c->vocab_size, E))) return CP_ERR;
    if (!roberta && !(s->position = cp_module_embedding(emb, "position_embeddings", c->max_positions, E))) return CP_ERR;
    if (s->v->bbox && (!(s->x_pos = cp_module_embedding(emb, "x_position_embeddings", M2, E)) ||
                       !(s->y_pos = cp_module_embedding(emb, "y_position_embeddings", M2, E)) ||
                       !(s->h_pos = cp_module_embedding(emb, "h_position_embeddings", M2, E)) ||
                       !(s->w_pos = cp_module_embedding(emb, "w_position_embeddings", M2, E))))
        return CP_ERR;
    if (!(s->token_type = cp_module_embedding(emb, "token_type_embeddings", c->type_vocab_size, E)) ||
        !(s->ln_emb = cp_module_layernorm(emb, "LayerNorm", E, c->layer_norm_eps)) ||
        !(s->emb_drop = cp_module_dropout(emb, "dropout", c->hidden_dropout)))
        return CP_ERR;
    if (roberta && !(s->position = cp_module_embedding(emb, "position_embeddings", c->max_positions, E))) return CP_ERR;
    s->word->padding_idx = c->pad_token_id; /* nn.Embedding(..., padding_idx=config.pad_token_id) */
    if (roberta) s->position->padding_idx = c->pad_token_id;
    s->embeddings = emb;
    return CP_OK;
}

/* The base model (embeddings, encoder, [pooler]) under parent as `name`, or as the root. */
static cp_module *build_base(cp_model *m, cp_bert_state *s, cp_module *parent, const char *name, const char *stem,
                             int pooler, cp_module **pooler_dense) {
    const cp_model_config *c = &m->config;
    char k[96];
    cp_module *base = cp_module_new(parent, name, cls_name(k, sizeof k, stem, "Model"), CP_MOD_CONTAINER);
    if (!base || build_embeddings(m, s, base, stem) != CP_OK) return NULL;
    if (c->embedding_size != c->hidden_size && /* ElectraModel: embeddings_project (C,E) */
        !(s->project = cp_module_linear(base, "embeddings_project", c->embedding_size, c->hidden_size, 1)))
        return NULL;
    cp_module *enc = cp_module_new(base, "encoder", cls_name(k, sizeof k, stem, "Encoder"), CP_MOD_CONTAINER);
    cp_module *list = enc ? cp_module_new(enc, "layer", "ModuleList", CP_MOD_LIST) : NULL;
    if (!list) return NULL;
    for (int64_t l = 0; l < c->num_layers; l++) {
        cp_bert_layer *ly = &s->layers[l];
        char idx[24];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        cp_module *blk = cp_module_new(list, idx, cls_name(k, sizeof k, stem, "Layer"), CP_MOD_CONTAINER);
        cp_module *att = blk ? cp_module_new(blk, "attention", cls_name(k, sizeof k, stem, "Attention"), CP_MOD_CONTAINER) : NULL;
        cp_module *self = att ? cp_module_new(att, "self", cls_name(k, sizeof k, stem, "SelfAttention"), CP_MOD_CONTAINER) : NULL;
        if (!self || !(ly->query = cp_module_linear(self, "query", c->hidden_size, c->hidden_size, 1)) ||
            !(ly->key = cp_module_linear(self, "key", c->hidden_size, c->hidden_size, 1)) ||
            !(ly->value = cp_module_linear(self, "value", c->hidden_size, c->hidden_size, 1)) ||
            !(ly->attn_drop = cp_module_dropout(self, "dropout", c->attn_dropout)))
            return NULL;
        cp_module *so = cp_module_new(att, "output", cls_name(k, sizeof k, stem, "SelfOutput"), CP_MOD_CONTAINER);
        if (!so || !(ly->attn_out = cp_module_linear(so, "dense", c->hidden_size, c->hidden_size, 1)) ||
            !(ly->ln_attn = cp_module_layernorm(so, "LayerNorm", c->hidden_size, c->layer_norm_eps)) ||
            !(ly->attn_out_drop = cp_module_dropout(so, "dropout", c->hidden_dropout)))
            return NULL;
        cp_module *im = cp_module_new(blk, "intermediate", cls_name(k, sizeof k, stem, "Intermediate"), CP_MOD_CONTAINER);
        if (!im || !(ly->inter = cp_module_linear(im, "dense", c->hidden_size, c->intermediate_size, 1)) ||
            !cp_module_activation(im, "intermediate_act_fn", c->activation))
            return NULL;
        cp_module *out = cp_module_new(blk, "output", cls_name(k, sizeof k, stem, "Output"), CP_MOD_CONTAINER);
        if (!out || !(ly->out = cp_module_linear(out, "dense", c->intermediate_size, c->hidden_size, 1)) ||
            !(ly->ln_out = cp_module_layernorm(out, "LayerNorm", c->hidden_size, c->layer_norm_eps)) ||
            !(ly->out_drop = cp_module_dropout(out, "dropout", c->hidden_dropout)))
            return NULL;
    }
    if (pooler && !s->v->no_pooler) {
        cp_module *p = cp_module_new(base, "pooler", cls_name(k, sizeof k, stem, "Pooler"), CP_MOD_CONTAINER);
        if (!p || !(*pooler_dense = cp_module_linear(p, "dense", c->hidden_size, c->hidden_size, 1)) ||
            !cp_module_activation(p, "activation", CP_ACT_TANH))
            return NULL;
    }
    if (cp_stack_blocks(m, enc, "layer") != CP_OK) return NULL;
    return base;
}

/* The task class's head modules (dropout and classifier, or RoBERTa's classification head) under the
 * root; fills m->head. pooler: the base model's pooler.dense (BERT's SEQ_CLS head), or NULL. */
static cp_status build_head(cp_model *m, const cp_bert_variant *v, cp_module *pooler) {
    const cp_model_config *c = &m->config;
    /* LayoutLM's task classes use hidden_dropout_prob; the others classifier_dropout when set */
    const double drop = c->classifier_dropout >= 0 && !v->bbox ? c->classifier_dropout : c->hidden_dropout;
    const int seq = m->task == CP_TASK_SEQ_CLS;
    cp_head *h = &m->head;
    *h = (cp_head){.task = m->task, .num_labels = c->num_labels, .problem_type = c->problem_type, .pooling = CP_POOL_FIRST,
                   .pad_token_id = c->pad_token_id, .dense_act = CP_ACT_TANH};
    if (seq && (v->roberta_head || v->electra_head)) {
        char k[96];
        cp_module *cls = cp_module_new(m->root, "classifier", cls_name(k, sizeof k, v->stem, "ClassificationHead"), CP_MOD_CONTAINER);
        if (!cls || !(h->dense = cp_module_linear(cls, "dense", c->hidden_size, c->hidden_size, 1))) return CP_ERR;
        if (v->electra_head) { /* dense → gelu ("although BERT uses tanh here, ...") → out_proj */
            h->dense_act = CP_ACT_GELU;
            if (!cp_module_activation(cls, "activation", CP_ACT_GELU)) return CP_ERR;
        }
        /* x = out_proj(dropout(act(dense(dropout(x))))): the one classifier.dropout, twice */
        if (!(h->dropout = h->dense_dropout = cp_module_dropout(cls, "dropout", drop)) ||
            !(h->classifier = cp_module_linear(cls, "out_proj", c->hidden_size, c->num_labels, 1)))
            return CP_ERR;
        return CP_OK;
    }
    if (!(h->dropout = cp_module_dropout(m->root, "dropout", drop)) ||
        !(h->classifier = cp_module_linear(m->root, "classifier", c->hidden_size, c->num_labels, 1)))
        return CP_ERR;
    h->dense = seq ? pooler : NULL;
    return CP_OK;
}

cp_bert_state *cp_bert_state_new(cp_model *m, const cp_bert_variant *v) {
    const cp_model_config *c = &m->config;
    cp_bert_state *s = cp_calloc(1, sizeof *s, "encoder state");
    if (!s) return NULL;
    m->arch_state = s;
    s->v = v;
    if (!(s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "encoder layers"))) return NULL;
    s->attn_scale = (float)(1.0 / sqrt((double)c->head_dim));
    return s;
}

cp_status cp_bert_build(cp_model *m, const cp_bert_variant *v) {
    const cp_model_config *c = &m->config;
    cp_bert_state *s = cp_bert_state_new(m, v);
    if (!s) return CP_ERR;
    char k[96];
    cp_module *pooler = NULL;
    switch (m->task) {
    case CP_TASK_FEATURE_EXTRACTION:
        if (!(m->root = build_base(m, s, NULL, "", v->stem, 1, &pooler))) return CP_ERR;
        break;
    case CP_TASK_SEQ_CLS:
    case CP_TASK_TOKEN_CLS: {
        const int seq = m->task == CP_TASK_SEQ_CLS;
        if (!(m->root = cp_module_new(NULL, "", cls_name(k, sizeof k, v->stem, seq ? "ForSequenceClassification" : "ForTokenClassification"),
                                      CP_MOD_CONTAINER)))
            return CP_ERR;
        /* BERT's SEQ_CLS head is the pooler + classifier; LayoutLMModel keeps its pooler in every class */
        const int with_pooler = (seq && !v->roberta_head && !v->electra_head) || v->bbox;
        if (v->head_first && build_head(m, v, NULL) != CP_OK) return CP_ERR;
        if (!build_base(m, s, m->root, m->arch->base_prefix, v->stem, with_pooler, &pooler)) return CP_ERR;
        if (!v->head_first && build_head(m, v, seq ? pooler : NULL) != CP_OK) return CP_ERR;
        break;
    }
    default:
        return cp_error("%s: %s has no %s head", m->dir, c->model_type, cp_task_name(m->task));
    }
    m->stack.embeddings[0] = s->embeddings;
    m->stack.embeddings[1] = s->project;
    m->stack.final_norm = NULL;
    m->stack.embed_dropout = s->project ? NULL : s->emb_drop; /* ELECTRA drops before embeddings_project (embed) */
    return CP_OK;
}

void cp_bert_free_state(cp_model *m) {
    cp_bert_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* ---- embeddings --------------------------------------------------------------------------------- */

/* The embedding step's state, kept for its backward. */
typedef struct {
    int64_t *pos, *tt;      /* (N) position and token type ids */
    int64_t *box;           /* (6,N) LayoutLM: x0, y0, x1, y1, h = y1 - y0, w = x1 - x0; NULL otherwise */
    float *pre;             /* (N,E) the sum before LayerNorm_emb */
    float *mean, *rstd;     /* (N) its statistics */
    float *ln;              /* (N,E) LayerNorm_emb's output when embeddings_project follows, else NULL */
} bert_emb;

/* LayoutLM's box ids from bbox (B,T,4): every coordinate, and the height and width, must be a row of the
 * max_2d_position_embeddings tables (transformers raises an IndexError, "within 0-1000 range"). */
static cp_status box_ids(const cp_model *m, const cp_batch *b, int64_t *box) {
    const int64_t N = b->B * b->T, M2 = m->config.max_2d_positions;
    static const char *const what[6] = {"x0", "y0", "x1", "y1", "the height y1 - y0", "the width x1 - x0"};
    for (int64_t i = 0; i < N; i++) {
        const int64_t *q = b->bbox ? b->bbox + 4 * i : NULL;
        int64_t v[6] = {0, 0, 0, 0, 0, 0};
        if (q) { v[0] = q[0]; v[1] = q[1]; v[2] = q[2]; v[3] = q[3]; v[4] = q[3] - q[1]; v[5] = q[2] - q[0]; }
        for (int k = 0; k < 6; k++) {
            if (v[k] < 0 || v[k] >= M2)
                return cp_error("batch: bbox[%lld][%lld] = (%lld, %lld, %lld, %lld): %s is %lld, outside [0, %lld) "
                                "(max_2d_position_embeddings)", (long long)(i / b->T), (long long)(i % b->T), (long long)q[0],
                                (long long)q[1], (long long)q[2], (long long)q[3], what[k], (long long)v[k], (long long)M2);
            box[k * N + i] = v[k];
        }
    }
    return CP_OK;
}

static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const cp_bert_state *s = m->arch_state;
    bert_emb *e = emb;
    const int64_t B = b->B, T = b->T, N = B * T, E = m->config.embedding_size;
    if (b->bbox && !s->x_pos) return cp_error("batch: bbox given, but %s takes no boxes", m->config.model_type);
    if (b->token_type_ids && !s->token_type)
        return cp_error("batch: token_type_ids given, but %s has no token type embeddings", m->config.model_type);
    memset(e, 0, sizeof *e);
    e->pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *e->pos, "position ids");
    e->tt = cp_arena_alloc(run->arena, (size_t)N * sizeof *e->tt, "token type ids");
    e->pre = cp_arena_floats(run->arena, (size_t)(N * E), "embedding sum");
    e->mean = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    e->rstd = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    if (!e->pos || !e->tt || !e->pre || !e->mean || !e->rstd) return CP_ERR;
    if (s->project && !(e->ln = cp_arena_floats(run->arena, (size_t)(N * E), "embedding LayerNorm output"))) return CP_ERR;
    if (s->x_pos) {
        if (!(e->box = cp_arena_alloc(run->arena, (size_t)(6 * N) * sizeof *e->box, "bbox ids"))) return CP_ERR;
        if (box_ids(m, b, e->box) != CP_OK) return CP_ERR;
    }
    const int64_t pad = m->config.pad_token_id;
    for (int64_t r = 0; r < B; r++) {
        int64_t seen = 0; /* RoBERTa: real tokens so far in the row */
        for (int64_t t = 0; t < T; t++) {
            const int64_t i = r * T + t, real = b->input_ids[i] != pad;
            seen += real;
            if (b->position_ids) e->pos[i] = b->position_ids[i];
            /* RoBERTa: from the ids, padding skipped; given as embeddings (virtual tokens first, as PEFT passes
             * inputs_embeds) transformers cannot see the padding: padding_idx + 1 + t */
            else if (s->v->roberta_positions) e->pos[i] = ea->n_virtual ? pad + 1 + t : (ea->past + seen) * real + pad;
            else e->pos[i] = ea->past + t;
            e->tt[i] = b->token_type_ids ? b->token_type_ids[i] : 0;
        }
    }
    if (cp_embed_tokens(run, s->word, b, ea, e->pre) != CP_OK) return CP_ERR;
    if (e->box) { // LayoutLM's order: word + position + left + upper + right + lower + h + w + token_type
        cp_module *const tab[6] = {s->x_pos, s->y_pos, s->x_pos, s->y_pos, s->h_pos, s->w_pos};
        if (cp_embed_forward(run, s->position, e->pre, e->pos, N, 1) != CP_OK) return cp_error_context("position_ids");
        for (int k = 0; k < 6; k++)
            if (cp_embed_forward(run, tab[k], e->pre, e->box + k * N, N, 1) != CP_OK) return cp_error_context("bbox");
        if (cp_embed_forward(run, s->token_type, e->pre, e->tt, N, 1) != CP_OK) return cp_error_context("token_type_ids");
    } else {
        if (s->token_type && cp_embed_forward(run, s->token_type, e->pre, e->tt, N, 1) != CP_OK)
            return cp_error_context("token_type_ids");
        if (cp_embed_forward(run, s->position, e->pre, e->pos, N, 1) != CP_OK) return cp_error_context("position_ids");
    }
    cp_layernorm_forward(s->ln_emb, e->ln ? e->ln : x, e->mean, e->rstd, e->pre, N);
    if (!e->ln) return CP_OK; /* the scaffold drops x (its embed_dropout) */
    // ELECTRA: x (N,C) = embeddings_project(dropout(ln) (N,E)); e->ln keeps the dropped rows
    const cp_dropout d = cp_run_dropout(run, s->emb_drop);
    cp_dropout_apply(&d, e->ln, e->ln, 0, N, E);
    return cp_proj_forward(run, s->project, x, e->ln, N);
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    const cp_bert_state *s = m->arch_state;
    const bert_emb *e = emb;
    const int64_t N = b->B * b->T, E = m->config.embedding_size;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    float *dpre = cp_arena_floats(run->arena, (size_t)(N * E), "embedding gradients"); // (N,E)
    float *dln = e->ln ? cp_arena_floats(run->arena, (size_t)(N * E), "embedding gradients") : NULL; // (N,E)
    if (!dpre || (e->ln && !dln)) return CP_ERR;
    memset(dpre, 0, (size_t)(N * E) * sizeof *dpre);
    cp_status st = CP_OK;
    if (dln) { // x = embeddings_project(dropout(ln)): d ln = mask · dx·W (+ LoRA), the projection's own gradients
        memset(dln, 0, (size_t)(N * E) * sizeof *dln);
        st = cp_proj_backward(run, s->project, dln, dx, e->ln, N);
        const cp_dropout d = cp_run_dropout(run, s->emb_drop);
        cp_dropout_apply(&d, dln, dln, 0, N, E);
    }
    // ln = LayerNorm_emb(pre), pre = the sum of the tables' rows: each table gets d pre at its ids
    if (st == CP_OK) cp_layernorm_backward(s->ln_emb, dpre, dln ? dln : dx, e->pre, e->mean, e->rstd, N);
    if (st == CP_OK) st = cp_embed_tokens_backward(run, s->word, b, ea, dpre);
    if (st == CP_OK && s->token_type) st = cp_embed_backward(run, s->token_type, dpre, e->tt, N);
    if (st == CP_OK) st = cp_embed_backward(run, s->position, dpre, e->pos, N);
    if (e->box) {
        cp_module *const tab[6] = {s->x_pos, s->y_pos, s->x_pos, s->y_pos, s->h_pos, s->w_pos};
        for (int k = 0; k < 6 && st == CP_OK; k++) st = cp_embed_backward(run, tab[k], dpre, e->box + k * N, N);
    }
    cp_arena_release(run->arena, mark);
    return st;
}

/* ---- blocks ------------------------------------------------------------------------------------- */

/* What one block keeps for its backward (training), or scratch (inference). In training the inputs
 * of intermediate.dense and output.dense (x1, f) are kept only when that projection's backward reads
 * them (cp_proj_needs_input: it trains or carries an adapter); otherwise they are the block's scratch
 * and NULL here — with PEFT's default targets (query, value) that is (N,C) + (N,I) floats a block
 * does not keep. att, the input of attention.output.dense, is always kept: the fused attention's
 * backward reads it (instead of the (B,NH,T,T) probabilities). */
typedef struct {
    int keep;                   // training: block_forward allocates att / x1 / f where they are kept
    float *qkv;                 // (3,N,C) q, k, v planes
    float *stats;               // (B,NH,T,2) attention row statistics for the fused backward; NULL in inference
    float *att;                 // (N,C) attention output: the input of attention.output.dense
    float *r1, *m1, *s1;        // (N,C) the residual sum into LayerNorm_attn; (N) its statistics
    float *x1;                  // (N,C) LayerNorm_attn output: the input of intermediate.dense
    float *f_pre, *f;           // (N,I) intermediate.dense output, its activation
    float *r2, *m2, *s2;        // (N,C) the residual sum into LayerNorm_out; (N) its statistics
} bert_acts;

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    bert_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->keep = training;
    a->qkv = cp_arena_floats(ar, 3 * N * C, "q, k, v");
    a->stats = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "attention row statistics") : NULL;
    a->r1 = cp_arena_floats(ar, N * C, "attention residual");
    a->m1 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->s1 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->f_pre = training ? cp_arena_floats(ar, N * I, "intermediate pre-activation") : NULL;
    a->r2 = cp_arena_floats(ar, N * C, "output residual");
    a->m2 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->s2 = cp_arena_floats(ar, N, "LayerNorm statistics");
    if (!training) { /* inference: one scratch record for every block */
        a->att = cp_arena_floats(ar, N * C, "attention output");
        a->x1 = cp_arena_floats(ar, N * C, "attention LayerNorm output");
        a->f = cp_arena_floats(ar, N * I, "intermediate activation");
        if (!a->att || !a->x1 || !a->f) return CP_ERR;
    }
    if (!a->qkv || !a->r1 || !a->m1 || !a->s1 || !a->r2 || !a->m2 || !a->s2 || (training && (!a->stats || !a->f_pre)))
        return CP_ERR;
    return CP_OK;
}

/* Training: the projection inputs this block's backward reads, kept (allocated before the block's
 * scratch mark); the others stay NULL. */
static cp_status keep_inputs(const cp_bert_layer *ly, bert_acts *a, size_t N, size_t C, size_t I, cp_arena *ar) {
    /* att always: the fused attention backward reads its output (D = rowsum(dO ⊙ O)) */
    a->att = cp_arena_floats(ar, N * C, "attention output");
    a->x1 = cp_proj_needs_input(ly->inter) ? cp_arena_floats(ar, N * C, "attention LayerNorm output") : NULL;
    a->f = cp_proj_needs_input(ly->out) ? cp_arena_floats(ar, N * I, "intermediate activation") : NULL;
    if (!a->att || (cp_proj_needs_input(ly->inter) && !a->x1) ||
        (cp_proj_needs_input(ly->out) && !a->f))
        return CP_ERR;
    return CP_OK;
}

static cp_attention_args attention_args(const cp_model *m, const cp_run *run, const cp_bert_layer *ly, const cp_batch *b,
                                        const bert_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size;
    const cp_bert_state *s = m->arch_state;
    cp_attention_args at = {.B = b->B, .T = b->T, .NH = c->num_heads, .hs = c->head_dim, .scale = s->attn_scale,
                            .bidirectional = 1, .empty_row = CP_ATTN_EMPTY_ALL, .key_mask = b->attention_mask,
                            .q = a->qkv, .k = a->qkv + N * C, .v = a->qkv + 2 * N * C,
                            .q_stride = C, .k_stride = C, .v_stride = C, .out = a->att, .stats = a->stats,
                            .dropout = cp_run_dropout(run, ly->attn_drop)};
    return at;
}

static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, float *x, bert_acts *a) {
    const cp_bert_layer *ly = &((const cp_bert_state *)m->arch_state)->layers[l];
    const int64_t N = b->B * b->T, C = m->config.hidden_size, I = m->config.intermediate_size;
    // attention: r1 = dropout(attention.output.dense(attn(query x, key x, value x))) + x; x1 = LayerNorm_attn(r1)
    if (cp_proj_forward(run, ly->query, a->qkv, x, N) != CP_OK || cp_proj_forward(run, ly->key, a->qkv + N * C, x, N) != CP_OK ||
        cp_proj_forward(run, ly->value, a->qkv + 2 * N * C, x, N) != CP_OK)
        return CP_ERR;
    cp_attention_args at = attention_args(m, run, ly, b, a);
    if (cp_stack_attend(run, NULL, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->attn_out, a->r1, a->att, N) != CP_OK) return CP_ERR;
    const cp_dropout d1 = cp_run_dropout(run, ly->attn_out_drop), d2 = cp_run_dropout(run, ly->out_drop);
    cp_dropout_apply(&d1, a->r1, a->r1, 0, N, C);
    cp_add_inplace(a->r1, x, N * C);
    cp_layernorm_forward(ly->ln_attn, a->x1, a->m1, a->s1, a->r1, N);
    // feed-forward: r2 = dropout(output.dense(act(intermediate.dense(x1)))) + x1; x = LayerNorm_out(r2)
    float *pre = a->f_pre ? a->f_pre : a->f;
    if (cp_proj_forward(run, ly->inter, pre, a->x1, N) != CP_OK) return CP_ERR;
    cp_activation_forward(m->config.activation, a->f, pre, N * I);
    if (cp_proj_forward(run, ly->out, a->r2, a->f, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&d2, a->r2, a->r2, 0, N, C);
    cp_add_inplace(a->r2, a->x1, N * C);
    cp_layernorm_forward(ly->ln_out, x, a->m2, a->s2, a->r2, N);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    (void)emb;
    if (kv) return cp_error("%s: an encoder has no KV cache", m->config.model_type);
    const size_t N = (size_t)(b->B * b->T), C = (size_t)m->config.hidden_size, I = (size_t)m->config.intermediate_size;
    bert_acts *a = acts;
    if (a->keep && keep_inputs(&((const cp_bert_state *)m->arch_state)->layers[l], a, N, C, I, run->arena) != CP_OK)
        return CP_ERR;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    bert_acts w = *a; /* the kept record, with scratch where an input is not kept */
    if ((!w.att && !(w.att = cp_arena_floats(run->arena, N * C, "attention output"))) ||
        (!w.x1 && !(w.x1 = cp_arena_floats(run->arena, N * C, "attention LayerNorm output"))) ||
        (!w.f && !(w.f = cp_arena_floats(run->arena, N * I, "intermediate activation")))) {
        cp_arena_release(run->arena, mark);
        return CP_ERR;
    }
    cp_status st = block_forward_impl(m, run, l, b, x, &w);
    cp_arena_release(run->arena, mark);
    return st;
}

/* dx (N,C): the gradient of the block output in, of its input x_in out (when need_dx). */
static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    (void)emb;
    const cp_bert_layer *ly = &((const cp_bert_state *)m->arch_state)->layers[l];
    const bert_acts *a = acts;
    const int64_t N = b->B * b->T, C = m->config.hidden_size, I = m->config.intermediate_size;
    cp_arena *ar = run->arena;
    float *d_big = cp_arena_floats(ar, (size_t)(N * (I > 3 * C ? I : 3 * C)), "block gradients"); // (N,I) / (3,N,C)
    float *g = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                          // (N,C)
    float *d_att = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                      // (N,C)
    if (!d_big || !g || !d_att) return CP_ERR;

    const cp_dropout d1 = cp_run_dropout(run, ly->attn_out_drop), d2 = cp_run_dropout(run, ly->out_drop);
    // x = LayerNorm_out(r2), r2 = dropout(output.dense(f)) + x1: g = d r2 (which is also d x1's residual part)
    memset(g, 0, (size_t)(N * C) * sizeof *g);
    cp_layernorm_backward(ly->ln_out, g, dx, a->r2, a->m2, a->s2, N);
    memset(d_big, 0, (size_t)(N * I) * sizeof *d_big);
    const float *g_out = g; // d output.dense = the mask · g (d_att is free until the attention)
    if (cp_dropout_on(&d2)) {
        cp_dropout_apply(&d2, d_att, g, 0, N, C);
        g_out = d_att;
    }
    if (cp_proj_backward(run, ly->out, d_big, g_out, a->f, N) != CP_OK) return CP_ERR; // d f
    cp_activation_backward(m->config.activation, d_big, d_big, a->f_pre, N * I);    // d f_pre
    if (cp_proj_backward(run, ly->inter, g, d_big, a->x1, N) != CP_OK) return CP_ERR; // g = d x1 (residual + dense)
    // x1 = LayerNorm_attn(r1), r1 = dropout(attention.output.dense(att)) + x_in: dx = d r1 (the residual part of d x_in)
    memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    cp_layernorm_backward(ly->ln_attn, dx, g, a->r1, a->m1, a->s1, N);
    memset(d_att, 0, (size_t)(N * C) * sizeof *d_att);
    const float *g_attn = dx; // d attention.output.dense = the mask · dx (g is free now)
    if (cp_dropout_on(&d1)) {
        cp_dropout_apply(&d1, g, dx, 0, N, C);
        g_attn = g;
    }
    if (cp_proj_backward(run, ly->attn_out, d_att, g_attn, a->att, N) != CP_OK) return CP_ERR; // d att
    cp_attention_args at = attention_args(m, run, ly, b, a);
    float *dq = d_big, *dk = d_big + N * C, *dv = d_big + 2 * N * C;
    if (cp_stack_attention_backward(run, l, &at, d_att, dq, dk, dv) != CP_OK) return CP_ERR;
    float *dxin = need_dx ? dx : NULL; // dx += the q, k, v projections' input gradients
    if (cp_proj_backward(run, ly->query, dxin, dq, x_in, N) != CP_OK || cp_proj_backward(run, ly->key, dxin, dk, x_in, N) != CP_OK ||
        cp_proj_backward(run, ly->value, dxin, dv, x_in, N) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

const cp_block_ops cp_bert_block_ops = {.acts_size = sizeof(bert_acts), .embed_size = sizeof(bert_emb),
                                        .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                        .block_forward = block_forward, .block_backward = block_backward};
