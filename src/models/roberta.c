/*
 * roberta.c — RoBERTa and XLM-RoBERTa (*Model, *ForSequenceClassification, *ForTokenClassification):
 * the BERT encoder of bert_common.c with positions counted from padding_idx + 1 over the real tokens
 * (create_position_ids_from_input_ids) and RobertaClassificationHead (dense → tanh → out_proj on <s>)
 * instead of BERT's pooler. XLM-RoBERTa is the same network under its own class names, its task
 * classes registering their head before the base model.
 */
#include "models/bert_common.h"

static const cp_bert_variant roberta = {.stem = "Roberta", .default_pad = 1, .roberta_positions = 1, .roberta_head = 1};
static const cp_bert_variant xlm_roberta = {.stem = "XLMRoberta", .default_pad = 1, .roberta_positions = 1, .roberta_head = 1,
                                            .head_first = 1};

static cp_status parse_roberta(cp_model_config *cfg, const cJSON *root, const char *file) {
    return cp_bert_parse_config(cfg, root, file, &roberta);
}
static cp_status parse_xlm_roberta(cp_model_config *cfg, const cJSON *root, const char *file) {
    return cp_bert_parse_config(cfg, root, file, &xlm_roberta);
}
static cp_status build_roberta(cp_model *m) { return cp_bert_build(m, &roberta); }
static cp_status build_xlm_roberta(cp_model *m) { return cp_bert_build(m, &xlm_roberta); }

static const char *const ignored_suffixes[] = {"embeddings.position_ids", "embeddings.token_type_ids", NULL};

const cp_arch cp_arch_roberta = CP_BERT_FAMILY_ARCH("roberta", "Roberta", "roberta", parse_roberta, build_roberta, ignored_suffixes);

const cp_arch cp_arch_xlm_roberta = CP_BERT_FAMILY_ARCH("xlm-roberta", "XLMRoberta", "roberta", parse_xlm_roberta, build_xlm_roberta, ignored_suffixes);
