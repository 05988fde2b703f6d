/*
 * bert_common.h — the BERT-family encoder: what BERT, and the encoders built like it, share.
 *
 *   x = LayerNorm(word[ids] + token_type[tt] + position[pos])            (B,T,C) the embeddings
 *   per block (post-LN):
 *     x = LayerNorm_attn(attention.output.dense(attn(q, k, v)) + x)       bidirectional, padding mask
 *     x = LayerNorm_out(output.dense(act(intermediate.dense(x))) + x)
 *   no final norm; the heads read x.
 *
 * The tree has Hugging Face's names (embeddings.word_embeddings, encoder.layer.N.attention.self.query,
 * ..., pooler.dense) and class names from the architecture's stem ("Bert" → BertEmbeddings,
 * BertSelfAttention, ...). The task decides the root: *Model (FEATURE_EXTRACTION, the base model
 * itself, with its pooler), *ForSequenceClassification (base under the base prefix with its pooler,
 * dropout, classifier; the head is pooler.dense + tanh on token 0, then classifier) or
 * *ForTokenClassification (base without pooler, dropout, classifier on every token).
 * ELECTRA's embeddings are E wide (embedding_size) and projected to C by embeddings_project when E != C;
 * LayoutLM adds x/y/h/w position embeddings read from the batch's bbox; DistilBERT (distilbert.c) builds
 * the same network under its own names (transformer.layer.N.attention.q_lin, sa_layer_norm, ffn.lin1, ...).
 * Training applies the dropouts transformers' train() mode does (the embeddings' output, the attention
 * probabilities, each sublayer's output before its residual sum, the heads' dropouts in models/head.c);
 * inference runs without them.
 */
#ifndef CP_MODELS_BERT_COMMON_H
#define CP_MODELS_BERT_COMMON_H

#include "models/model.h"
#include "models/stack.h"

typedef struct {
    cp_module *query, *key, *value;     /* Linear (C,C) each */
    cp_module *attn_out, *ln_attn;      /* attention.output.dense (C,C), attention.output.LayerNorm */
    cp_module *inter, *out, *ln_out;    /* intermediate.dense (I,C), output.dense (C,I), output.LayerNorm */
    /* the Dropouts training applies (NULL: none there): on the attention probabilities
     * (attention.self.dropout), on attention.output.dense's output and on output.dense's output, each
     * before its residual sum (DistilBERT: attention.dropout, none, ffn.dropout) */
    cp_module *attn_drop, *attn_out_drop, *out_drop;
} cp_bert_layer;

/* What an encoder built like BERT changes. */
typedef struct cp_bert_variant {
    const char *stem;       /* class-name stem: "Bert", "Roberta", "XLMRoberta" */
    int64_t default_pad;    /* pad_token_id when config.json has none (BertConfig 0, RobertaConfig 1) */
    /* RoBERTa: positions from input_ids, cumsum(ids != pad)·(ids != pad) + pad (create_position_ids_from_
     * input_ids; pad's row is padding_idx), and the embeddings' children in RobertaEmbeddings' order */
    int roberta_positions;
    /* RoBERTa's SEQ_CLS head: classifier = <stem>ClassificationHead(dense, dropout, out_proj), dense + tanh
     * on token 0, no pooler (the task classes build the base model without one) */
    int roberta_head;
    int head_first;         /* XLM-RoBERTa's task classes register their head before the base model */
    int no_pooler;          /* the base model has no pooler (ElectraModel) */
    /* ELECTRA: ElectraClassificationHead (dense, GELUActivation, dropout, out_proj) instead of RoBERTa's */
    int electra_head;
    int projected;          /* reads embedding_size (ELECTRA's default 128); embeddings_project when != hidden */
    int bbox;               /* LayoutLM: 2-D position embeddings from cp_batch.bbox */
    int distil;             /* DistilBERT: no token types; its tree is built by distilbert.c */
} cp_bert_variant;

typedef struct {
    const cp_bert_variant *v;
    cp_module *embeddings;              /* the embeddings container (what the scaffold asks "trains?") */
    cp_module *word, *position, *token_type, *ln_emb; /* token_type NULL: none (DistilBERT) */
    cp_module *emb_drop;                /* embeddings.dropout, after LayerNorm_emb (the scaffold's
                                           embed_dropout, or applied before embeddings_project) */
    cp_module *project;                 /* embeddings_project Linear (C,E), or NULL */
    cp_module *x_pos, *y_pos, *h_pos, *w_pos; /* LayoutLM's 2-D tables, or NULL */
    cp_bert_layer *layers;              /* [num_layers] */
    float attn_scale;                   /* 1/sqrt(head_dim) */
} cp_bert_state;

/* Reads BERT's config.json fields (hidden_size, num_hidden_layers, num_attention_heads,
 * intermediate_size, hidden_act, max_position_embeddings, type_vocab_size, layer_norm_eps, dropouts)
 * with BertConfig's defaults; refuses what it cannot run by name (position_embedding_type other than
 * "absolute", is_decoder, add_cross_attention). */
cp_status cp_bert_parse_config(cp_model_config *cfg, const cJSON *root, const char *file, const cp_bert_variant *v);
/* Builds the tree for m->task as variant v names and orders it, fills m->stack, m->head and
 * m->arch_state. */
cp_status cp_bert_build(cp_model *m, const cp_bert_variant *v);
/* The state an architecture built like BERT fills (its layers allocated), set as m->arch_state. */
cp_bert_state *cp_bert_state_new(cp_model *m, const cp_bert_variant *v);

extern const cp_block_ops cp_bert_block_ops;
void cp_bert_free_state(cp_model *m);

/* The arch table of a BERT-family encoder run by cp_bert_block_ops: model_type, class-name stem
 * ("Bert": BertModel, BertFor...), state-dict prefix, its parse_config / build and the checkpoint
 * buffers it ignores. */
#define CP_BERT_FAMILY_ARCH(type, stem, prefix, parse, build_fn, ignored)                                           \
    {.model_type = (type), .causal_lm_class = stem "Model", .base_prefix = (prefix), .class_stem = stem,            \
     .encoder = 1, .parse_config = (parse), .build = (build_fn), .free_state = cp_bert_free_state,                  \
     .block_ops = &cp_bert_block_ops, .ignored_suffixes = (ignored), .learned_positions = 1}

#endif
