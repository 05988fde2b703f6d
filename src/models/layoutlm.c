/*
 * layoutlm.c — LayoutLM (LayoutLMModel, LayoutLMForSequenceClassification, LayoutLMForTokenClassification):
 * BERT's encoder (bert_common.c) whose embeddings add the rows of four 2-D position tables for each
 * token's box (cp_batch.bbox, (B,T,4) as x0, y0, x1, y1): x(x0) + y(y0) + x(x1) + y(y1) + h(y1 - y0) +
 * w(x1 - x0); no boxes are boxes of zeros, as LayoutLMModel makes them. Every task class keeps the
 * pooler; the classifiers' dropout is hidden_dropout_prob.
 */
#include "models/bert_common.h"

static const cp_bert_variant layoutlm = {.stem = "LayoutLM", .default_pad = 0, .bbox = 1};

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    return cp_bert_parse_config(cfg, root, file, &layoutlm);
}
static cp_status build(cp_model *m) { return cp_bert_build(m, &layoutlm); }

static const char *const ignored_suffixes[] = {"embeddings.position_ids", NULL};

const cp_arch cp_arch_layoutlm = CP_BERT_FAMILY_ARCH("layoutlm", "LayoutLM", "layoutlm", parse_config, build, ignored_suffixes);
