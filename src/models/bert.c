/*
 * bert.c — BERT (BertModel, BertForSequenceClassification, BertForTokenClassification): the
 * encoder of bert_common.c as it is, absolute position and token type embeddings, post-LN blocks,
 * the pooler (dense + tanh on [CLS]) under the sequence classifier.
 */
#include "models/bert_common.h"

static const cp_bert_variant bert = {.stem = "Bert", .default_pad = 0};

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    return cp_bert_parse_config(cfg, root, file, &bert);
}
static cp_status build(cp_model *m) { return cp_bert_build(m, &bert); }

/* buffers some checkpoints carry (persistent in older transformers) */
static const char *const ignored_suffixes[] = {"embeddings.position_ids", "embeddings.token_type_ids", NULL};

const cp_arch cp_arch_bert = {
    .model_type = "bert",
    .causal_lm_class = "BertModel",
    .base_prefix = "bert",
    .class_stem = "Bert",
    .encoder = 1,
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_bert_free_state,
    .block_ops = &cp_bert_block_ops,
    .ignored_suffixes = ignored_suffixes,
    .learned_positions = 1,
};
