/*
 * prompt_encoder.h — PEFT's prompt encoders, the module each prompt-learning adapter owns
 * (PeftModel.prompt_encoder[<adapter>]), turning its table of virtual-token embeddings into what the
 * model receives, forward and backward:
 *   PromptEmbedding (prompt tuning)   out = embedding.weight                         (P·nts, d)
 *   PromptEncoder MLP (p-tuning)      out = mlp_head(embedding.weight)               (P·nts, d)
 *                                     mlp_head = Linear(d,h) ReLU Linear(h,h) ReLU Linear(h,d)
 *   PromptEncoder LSTM (p-tuning)     out = mlp_head(lstm_head(embedding.weight))    (P·nts, d)
 *                                     lstm_head: bidirectional LSTM(d, h, encoder_num_layers);
 *                                     mlp_head = Linear(2h,2h) ReLU Linear(2h,d)
 *   PrefixEncoder (prefix tuning)     out = embedding.weight, or with prefix_projection
 *                                     transform(embedding.weight), transform = Linear(d,h) Tanh
 *                                     Linear(h, L·2·d)                                (P, L·2·d)
 * In inference mode (every adapter loaded from a file: PEFT refuses to load one trainable) only
 * `embedding` exists and holds the encoded output itself, which is what the adapter file stores
 * ("prompt_embeddings"). The module tree is PEFT's (names, classes, print(model)); parameters are
 * initialised as PyTorch initialises them (nn.Embedding N(0,1), Linear and LSTM uniform), from
 * cpeft's random stream, or from the word embeddings (prompt tuning's TEXT / SAMPLE_VOCAB).
 */
#ifndef CP_PEFT_PROMPT_ENCODER_H
#define CP_PEFT_PROMPT_ENCODER_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/rng.h"
#include "nn/lstm.h"
#include "nn/module.h"
#include "peft/method.h"
#include "peft/prompt_config.h"

#define CP_PROMPT_MAX_LINEAR 3

typedef struct cp_prompt_encoder {
    cp_module *root;          /* PromptEmbedding / PromptEncoder / PrefixEncoder, paths under "prompt_encoder.<name>" */
    cp_module *embedding;     /* Embedding (rows, in) */
    cp_module *linear[CP_PROMPT_MAX_LINEAR]; /* mlp_head / transform's Linear layers, in order */
    int n_linear;
    cp_activation act;        /* between them: ReLU (p-tuning), Tanh (prefix projection) */
    cp_lstm lstm;             /* p-tuning LSTM: its params NULL when none */
    cp_module *lstm_module;   /* its place in the tree (prints as torch's LSTM) */
    int64_t rows, width;      /* the output: (rows, width) */
} cp_prompt_encoder;

/* Builds adapter `name`'s encoder for a resolved cfg: the table alone in inference mode, else the
 * method's whole module, its parameters owned, zeroed. */
cp_status cp_prompt_encoder_build(cp_prompt_encoder *e, const cp_prompt_config *cfg, const char *name);
void cp_prompt_encoder_free(cp_prompt_encoder *e);
/* PyTorch's default initialisation of every parameter (embedding N(0,1); Linear, LSTM U(±1/√fan));
 * prefix tuning's init_weights "zero"; the table from rows `ids` (rows of them) of the word embeddings
 * when ids is non-NULL (prompt tuning's TEXT and SAMPLE_VOCAB). */
cp_status cp_prompt_encoder_init(cp_prompt_encoder *e, const cp_prompt_config *cfg, cp_rng *rng, const cp_param *word_embeddings,
                                 const int64_t *ids);
/* Its parameters in PyTorch's registration order, keys relative to the encoder ("embedding.weight",
 * "mlp_head.0.weight", "lstm_head.weight_ih_l0", ...), at most max; the count. */
int cp_prompt_encoder_tensors(const cp_prompt_encoder *e, cp_peft_tensor *out, int max);
/* print(model) of the encoder. Malloc'd. */
char *cp_prompt_encoder_repr(const cp_prompt_encoder *e);

/* What the backward reads, from the arena. */
typedef struct cp_prompt_trace cp_prompt_trace;

/* out (rows, width) = the encoder's output (points at the table when there is no encoder stage).
 * With `training` and a trace pointer, *trace keeps what cp_prompt_encoder_backward needs. */
cp_status cp_prompt_encoder_forward(const cp_prompt_encoder *e, cp_arena *ar, int training, uint64_t seed, const float **out,
                                    cp_prompt_trace **trace);
/* From d_out (rows, width): the gradients of every parameter with a grad buffer. */
cp_status cp_prompt_encoder_backward(const cp_prompt_encoder *e, cp_arena *ar, const cp_prompt_trace *trace, const float *d_out);

#endif
