/*
 * decoder_head.h — the task classes of the decoders (GPT-2, GPT-Neo, Llama, Mistral, Qwen2): which
 * root class the task builds and the head modules after the base model, as transformers has them:
 *
 *   CAUSAL_LM  *ForCausalLM / GPT2LMHeadModel: lm_head (V,C), no bias (GPT-J, Phi: lm_head_bias), tied to the input embedding
 *              when tie_word_embeddings
 *   SEQ_CLS    *ForSequenceClassification: score (K,C), no bias, on the last token that is not
 *              pad_token_id (models/head.h POOL_LAST_NON_PAD)
 *   TOKEN_CLS  *ForTokenClassification: dropout, then classifier (GPT-2, GPT-Neo) or score (Llama's
 *              GenericForTokenClassification), (K,C) with bias, on every token
 */
#ifndef CP_MODELS_DECODER_HEAD_H
#define CP_MODELS_DECODER_HEAD_H

#include <stddef.h>

#include "models/model.h"

/* The root class name for m->task: lm_class for CAUSAL_LM, else <prefix>For{Sequence,Token}Classification
 * written into buf. */
const char *cp_decoder_root_class(const cp_model *m, const char *prefix, const char *lm_class, char *buf, size_t n);

/* The head modules under m->root (call after the base model is built): fills m->lm_head (CAUSAL_LM, tied to
 * `embedding` when the config says so) or m->head. token_cls_name: the TOKEN_CLS Linear's name. */
cp_status cp_decoder_build_head(cp_model *m, cp_module *embedding, const char *token_cls_name);

#endif
