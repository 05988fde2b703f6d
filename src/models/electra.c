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

const cp_arch cp_arch_electra = CP_BERT_FAMILY_ARCH("electra", "Electra", "electra", parse_config, build, ignored_suffixes);
