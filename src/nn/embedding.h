/*
 * embedding.h — nn.Embedding lookup.
 */
#ifndef CP_NN_EMBEDDING_H
#define CP_NN_EMBEDDING_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/module.h"

/* out (N,C) = W[ids] (accumulate: out += W[ids]), plus the side path of active LoRA adapters. An
 * id outside [0, num_embeddings) is an error naming the module and the position. */
cp_status cp_embedding_forward(const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate,
                               cp_arena *scratch);

/* Backward: weight gradient (a scatter-add of dY rows at ids) when the weight is trained, and the
 * gradients of active LoRA adapters on the embedding. */
cp_status cp_embedding_backward(const cp_module *m, const float *dY, const int64_t *ids, int64_t N, cp_arena *scratch);

#endif
