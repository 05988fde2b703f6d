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

const cp_arch cp_arch_bert = CP_BERT_FAMILY_ARCH("bert", "Bert", "bert", parse_config, build, ignored_suffixes);
