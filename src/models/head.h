/*
 * head.h — the task head on top of a model's final hidden states: what transformers' *ForCausalLM,
 * *ForSequenceClassification and *ForTokenClassification add to the base model, as one description
 * and one call shape for all tasks, so that the model driver calls the same two functions whatever
 * the task and the encoder and seq2seq architectures only fill in a cp_head.
 *
 *   CAUSAL_LM  logits (B,T,V) = lm_head(h); loss: shifted cross-entropy (models/lm_head.h, chunked).
 *   SEQ_2_SEQ_LM  the same on the decoder's (B,Td,C), each position against its own label (no shift).
 *   SEQ_CLS    one position per row is pooled (POOL_LAST_NON_PAD: decoders' rightmost token that is
 *              not pad_token_id, so left and right padding both work; POOL_FIRST: encoders' [CLS]),
 *              then [dense → activation] → classifier: logits (B,K); loss by problem_type
 *              (regression MSE, single-label cross-entropy, multi-label BCE; nn/task_loss.h).
 *   TOKEN_CLS  [dense → activation] → classifier on every position: logits (B,T,K); cross-entropy
 *              over the B·T rows, -100 ignored, no shift.
 *
 * The optional dense stage is the pooler or pre-classifier some encoders put between the pooled
 * token and the output projection (BERT's pooler.dense + tanh, RoBERTa's classifier.dense + tanh,
 * DistilBERT's pre_classifier + ReLU, ELECTRA's classifier.dense + gelu); decoders leave it NULL.
 * The modules belong to the model's tree (named as Hugging Face names them: score, classifier,
 * classifier.out_proj, lm_head); the head only points at them, so modules_to_save copies and
 * trained gradients work as for any other Linear.
 *
 * In training the heads apply their Dropout modules where the transformers class does: `dropout`
 * on the classifier's input (after the dense stage when there is one: BERT's pooled output,
 * DistilBERT's pre_classifier + ReLU, the token classifiers' hidden states), and `dense_dropout` on
 * the pooled token before the dense stage (RoBERTa's and ELECTRA's classification heads, which apply
 * their one `classifier.dropout` twice, and DeBERTa's ContextPooler). The masks come from the run
 * (models/run.h), mask row r of the R rows the stack runs; the backward draws them again.
 */
#ifndef CP_MODELS_HEAD_H
#define CP_MODELS_HEAD_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/activation.h"
#include "models/run.h"
#include "nn/module.h"
#include "nn/task_loss.h"

typedef enum {
    CP_TASK_CAUSAL_LM,    /* PEFT's CAUSAL_LM */
    CP_TASK_SEQ_CLS,      /* SEQ_CLS */
    CP_TASK_TOKEN_CLS,    /* TOKEN_CLS */
    CP_TASK_SEQ_2_SEQ_LM, /* SEQ_2_SEQ_LM: an encoder-decoder's LM head on the decoder, labels not shifted */
    CP_TASK_FEATURE_EXTRACTION, /* FEATURE_EXTRACTION: the bare base model, no head (the model never
                                   calls the head functions for it) */
} cp_task;

typedef enum {
    CP_POOL_LAST_NON_PAD, /* GPT-2, GPT-Neo, Llama, Mistral, Qwen2 *ForSequenceClassification */
    CP_POOL_FIRST,        /* encoders: token 0 ([CLS] / <s>) */
} cp_pooling;

typedef struct cp_head {
    cp_task task;
    int64_t num_labels;           /* K: config's num_labels (len(id2label)); CAUSAL_LM: the vocabulary V */
    cp_problem_type problem_type; /* SEQ_CLS: config's problem_type (AUTO when null); TOKEN_CLS ignores it */
    int auto_soft_labels;         /* SEQ_CLS with problem_type AUTO: float (B,K) labels take the soft-label
                                     cross-entropy instead of BCE (DeBERTa's heads) */
    cp_pooling pooling;           /* SEQ_CLS */
    int64_t pad_token_id;         /* POOL_LAST_NON_PAD: config's pad_token_id, < 0 (CP_TOKEN_UNSET) when null */
    cp_module *dense;             /* optional Linear (C',C) applied before the classifier, or NULL */
    cp_activation dense_act;      /* its activation */
    cp_module *classifier;        /* Linear (K,C') or (K,C): score / classifier / out_proj / lm_head */
    const cp_module *dropout;     /* Dropout on the classifier's input, or NULL (see above) */
    const cp_module *dense_dropout; /* Dropout on the dense stage's input, or NULL */
    const float *logits_bias;     /* CAUSAL_LM / SEQ_2_SEQ_LM: (V) added to every row of logits, a buffer and no
                                     parameter (BART's final_logits_bias); NULL: none */
    float logit_softcap;          /* CAUSAL_LM: c·tanh(logits/c) after the bias (Gemma 2's final_logit_softcapping); 0: none */
} cp_head;

typedef struct cp_head_outputs {
    float *logits;                /* caller-allocated, cp_head_logits_numel floats, or NULL (not wanted) */
    double loss_sum;              /* with labels: the loss summed over the counted items */
    int64_t n_items;              /* and their number (targets, rows or elements; see task_loss.h) */
    double loss;                  /* loss_sum / n_items: the loss transformers reports (NaN when 0 items) */
    cp_problem_type problem_type; /* the type the loss used (AUTO resolved); CAUSAL_LM / TOKEN_CLS:
                                     SINGLE_LABEL (cross-entropy) */
} cp_head_outputs;

/* Checks that the head is consistent (task, num_labels against the classifier, dense against the
 * classifier, hidden size C against the first module). Errors name the module by its path. */
cp_status cp_head_check(const cp_head *head, int64_t C);

/* Logits the forward writes for a batch: B·K (SEQ_CLS), B·T·K (TOKEN_CLS, CAUSAL_LM). */
int64_t cp_head_logits_numel(const cp_head *head, int64_t B, int64_t T);

/* SEQ_CLS: the position pooled in each row, pos (B), as transformers picks it:
 * POOL_FIRST → 0; POOL_LAST_NON_PAD → argmax over t of t·(input_ids[b,t] ≠ pad_token_id) (0 for a row
 * that is all padding), or T-1 without pad_token_id, which allows only B == 1 ("Cannot handle batch
 * sizes > 1 if no padding token is defined."). input_ids (B,T) may be NULL when it is not read. */
cp_status cp_head_pool_positions(const cp_head *head, const int64_t *input_ids, int64_t B, int64_t T, int64_t *pos);

/* Forward (the dropouts apply when run says so). h (B,T,C) final hidden states; input_ids (B,T) (read by LAST_NON_PAD pooling);
 * labels NULL for logits only, else: CAUSAL_LM and TOKEN_CLS class ids (B,T) (-100 ignored),
 * SEQ_CLS class ids (B) or float values (B) / (B,K) as the problem type wants. Fills out->logits when
 * given, and the loss fields when labels are given. Scratch memory comes from run->arena and is
 * released before returning. */
cp_status cp_head_forward(const cp_run *run, const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                          const cp_task_labels *labels, cp_head_outputs *out);

/* Forward and backward of loss_sum / norm (norm > 0: the caller's divisor, num_items_in_batch;
 * CP_NORM_BATCH_MEAN: this batch's own item count, the mean transformers reports). Writes dh (B,T,C)
 * (zero where nothing flows back: unpooled positions, ignored targets), accumulates the gradients of
 * the head's trained parameters (classifier, dense; those with a grad buffer, LoRA included through
 * nn/linear.h) and fills out's loss fields (and out->logits when given). Labels are required. */
cp_status cp_head_backward(const cp_run *run, const cp_head *head, const float *h, int64_t B, int64_t T, const int64_t *input_ids,
                           const cp_task_labels *labels, double norm, float *dh, cp_head_outputs *out);

/* PEFT's task_type strings: "CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "SEQ_2_SEQ_LM",
 * "FEATURE_EXTRACTION". Parsing any other (QUESTION_ANS, ...) is an error naming the ones cpeft has. */
const char *cp_task_name(cp_task task);
cp_status cp_task_parse(const char *name, cp_task *out);

#endif
