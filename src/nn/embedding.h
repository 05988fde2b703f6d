/*
 * embedding.h — nn.Embedding lookup.
 */
#ifndef CP_NN_EMBEDDING_H
#define CP_NN_EMBEDDING_H

#include <stdint.h>

#include "core/error.h"
#include "nn/module.h"

/* out (N,C) = W[ids] (accumulate: out += W[ids]). An id outside [0, num_embeddings) is an error
 * naming the module and the position. The base layer only: models go through models/proj.h. */
cp_status cp_embedding_forward(const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate);

/* Backward: the weight gradient (a scatter-add of dY rows at ids) when the weight is trained. */
void cp_embedding_backward(const cp_module *m, const float *dY, const int64_t *ids, int64_t N);

#endif
