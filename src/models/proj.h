/*
 * proj.h — the one call through which a model applies a projection or an embedding: the nn
 * primitive on the base weight, then the contribution of every PEFT hook on the module
 * (models/hook.h). Architectures, heads and losses call these, never the nn primitives directly,
 * so that any method attached to any Linear / Conv1D / Embedding takes part.
 */
#ifndef CP_MODELS_PROJ_H
#define CP_MODELS_PROJ_H

#include <stdint.h>

#include "core/error.h"
#include "models/run.h"
#include "nn/module.h"

/* out (N,OC) = in (N,C) through m (Linear or Conv1D) plus its hooks. */
cp_status cp_proj_forward(const cp_run *run, const cp_module *m, float *out, const float *in, int64_t N);
/* Backward of cp_proj_forward given the forward's input X (N,C) and dY (N,OC): dX (N,C) += ... when dX
 * is non-NULL; base weight/bias gradients where they have grad buffers; every hook's gradients. */
cp_status cp_proj_backward(const cp_run *run, const cp_module *m, float *dX, const float *dY, const float *X, int64_t N);

/* out (N,d) (+)= rows `ids` (N) of the Embedding m plus its hooks; ids are range-checked. */
cp_status cp_embed_forward(const cp_run *run, const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate);
cp_status cp_embed_backward(const cp_run *run, const cp_module *m, const float *dY, const int64_t *ids, int64_t N);

/* Whether a hook on m adds to its projection (a LoRA layer does; modules_to_save, which only swaps
 * the parameters, does not): without one, the projection is the base primitive alone. */
int cp_proj_has_contribution(const cp_module *m);

/* Whether anything of module m trains in this run: its weight or bias has a gradient buffer, or one
 * of its hooks trains. cp_subtree_trains asks the same of m and every module under it. The
 * backward passes use them to stop at the lowest trained layer. */
int cp_module_trains(const cp_module *m);
int cp_subtree_trains(const cp_module *m);

/* Whether cp_proj_backward on m reads the forward's input X: m trains or carries a hook. Where it
 * does not (a frozen projection without adapters: dX needs only dY and W), a block need not keep X
 * for the backward pass, and passes NULL. */
int cp_proj_needs_input(const cp_module *m);

#endif
