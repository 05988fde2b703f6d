/*
 * electra.c — ELECTRA's discriminator (ElectraModel, ElectraForSequenceClassification,
 * ElectraForTokenClassification): the encoder of bert_common.c with embeddings embedding_size (E) wide,
 * projected to hidden_size by embeddings_project when E != C, no pooler, and ElectraClassificationHead
 * (dense → gelu → out_proj on token 0) as the sequence classifier.
 */
#include "models/bert_common.h"

static const cp_bert_variant electra = {.stem = "Electra", .default_pad = 0, .no_pooler = 1, .electra_head = 1, .projected = 1};

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    return cp_bert_parse_config(cfg, root, file, &electra);
}
static cp_status build(cp_model *m) { return cp_bert_build(m, &electra); }

static const char *const ignored_suffixes[] = {"embeddings.position_ids", "embeddings.token_type_ids", NULL};

const cp_arch cp_arch_electra = {
    .model_type = "electra",
    .causal_lm_class = "ElectraModel",
    .base_prefix = "electra",
    .class_stem = "Electra",
    .encoder = 1,
    .parse_config = parse_config,
    .build = build,
    .free_state = cp_bert_free_state,
    .block_ops = &cp_bert_block_ops,
    .ignored_suffixes = ignored_suffixes,
    .learned_positions = 1,
};
