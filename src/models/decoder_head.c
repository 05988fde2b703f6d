/*
 * decoder_head.c — the decoders' task heads (decoder_head.h).
 */
#include "models/decoder_head.h"

#include <stdio.h>

const char *cp_decoder_root_class(const cp_model *m, const char *prefix, const char *lm_class, char *buf, size_t n) {
    if (m->task == CP_TASK_CAUSAL_LM) return lm_class;
    snprintf(buf, n, "%s%s", prefix, m->task == CP_TASK_SEQ_CLS ? "ForSequenceClassification" : "ForTokenClassification");
    return buf;
}

cp_status cp_decoder_build_head(cp_model *m, cp_module *embedding, const char *token_cls_name) {
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size, K = c->num_labels;
    switch (m->task) {
    case CP_TASK_CAUSAL_LM:
        if (!(m->lm_head = cp_module_linear(m->root, "lm_head", C, c->vocab_size, c->lm_head_bias))) return CP_ERR;
        if (c->tie_word_embeddings) cp_param_tie(m->lm_head->weight, embedding->weight);
        return CP_OK;
    case CP_TASK_SEQ_CLS: /* "Cannot handle batch sizes > 1 if no padding token is defined." (pad_token_id null) */
        m->head = (cp_head){.task = m->task, .num_labels = K, .problem_type = c->problem_type, .pooling = CP_POOL_LAST_NON_PAD,
                            .pad_token_id = c->pad_token_id};
        return (m->head.classifier = cp_module_linear(m->root, "score", C, K, 0)) ? CP_OK : CP_ERR;
    case CP_TASK_TOKEN_CLS: {
        /* classifier_dropout, else 0.1 (these configs have no hidden_dropout) */
        const double drop = c->classifier_dropout >= 0 ? c->classifier_dropout : 0.1;
        m->head = (cp_head){.task = m->task, .num_labels = K, .problem_type = c->problem_type, .pad_token_id = c->pad_token_id};
        if (!(m->head.dropout = cp_module_dropout(m->root, "dropout", drop))) return CP_ERR;
        return (m->head.classifier = cp_module_linear(m->root, token_cls_name, C, K, 1)) ? CP_OK : CP_ERR;
    }
    default:
        return cp_error("%s: %s has no %s head", m->dir, c->model_type, cp_task_name(m->task));
    }
}
