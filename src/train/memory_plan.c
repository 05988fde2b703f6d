/*
 * memory_plan.c — the memory plan of a training run: the peak resident memory to expect, part by
 * part. Weights and trainable state are counted from their sizes; activations are measured by a dry
 * run of the longest batch as a training step runs it (the arena keeps that block for the steps that
 * follow); the rest of the process (code, libraries, tokenizer, dataset, the BLAS library's and the
 * threads' buffers, malloc's overhead) is measured as what is resident after the dry run beyond the
 * counted parts. `cpeft train` prints it and, at the end, the real peak beside it.
 *
 * Attention keeps no (T × TK) probabilities in training (nn/attention_fused.c): a block keeps its
 * output and two floats per query row and head, and the backward's scratch is a few tiles plus the
 * per-thread dK/dV sums of one batch row; the dry run measures exactly that, so the plan grows
 * linearly in the sequence length (seq 2048 × batch 1 plans what 512 × 4 does, less the
 * probabilities 512 × 4 used to keep: B·NH·T² floats per layer).
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "core/memstat.h"
#include "kernels/gemm_bf16.h"
#include "models/model.h"
#include "train/step.h"

#include <string.h>

/* Parameters by where their memory lives: frozen bytes (mapped: used in place from the checkpoint's
 * mapping, F32 or F16/BF16; owned: widened or copied to f32, or narrowed to BF16 by --bf16, and --bf16's packed
 * panels), trainable values (each with a
 * gradient and two AdamW moments). */
typedef struct { int64_t frozen, mapped, trainable; } param_counts;

static cp_status count_params(const cp_trainer *t, param_counts *c) {
    memset(c, 0, sizeof *c);
    cp_param **ps;
    int n;
    if (cp_module_params(t->m->root, &ps, &n) != CP_OK) return CP_ERR;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 2; j++) /* --bf16's packed panels (owned): either orientation, the larger padding */
            if (ps[i]->bf16_panels[j] && ps[i]->ndim == 2) {
                const int64_t a = cp_gemm_bf16_panel_words(ps[i]->shape[0], ps[i]->shape[1]),
                              b = cp_gemm_bf16_panel_words(ps[i]->shape[1], ps[i]->shape[0]);
                c->frozen += 4 * (a > b ? a : b);
            }
        if (ps[i]->tied_to || ps[i]->grad) continue;
        const int64_t bytes = ps[i]->data ? ps[i]->numel * 4 : cp_dtype_nbytes(ps[i]->stored_dtype, ps[i]->numel);
        c->frozen += bytes;
        if (!ps[i]->owns_data && !ps[i]->owns_stored) c->mapped += bytes; /* owns_stored: quantized at load or narrowed by --bf16 */
    }
    cp_free(ps);
    for (int i = 0; i < t->n_params; i++) c->trainable += t->params[i]->numel;
    return CP_OK;
}

cp_status cp_trainer_memory_plan(cp_trainer *t, cp_train_memory_plan *out) {
    memset(out, 0, sizeof *out);
    param_counts c;
    if (count_params(t, &c) != CP_OK) return CP_ERR;
    const int64_t B = t->o.per_device_train_batch_size;
    int64_t T = 2;
    for (int64_t i = 0; i < t->train.n; i++) T = t->train.examples[i].len > T ? t->train.examples[i].len : T;
    for (int64_t i = 0; t->cls && i < t->ctrain.n; i++) T = t->ctrain.examples[i].len > T ? t->ctrain.examples[i].len : T;
    for (int64_t i = 0; t->s2s && i < t->strain.n; i++) { /* measured with encoder and decoder both T long */
        const cp_s2s_example *ex = &t->strain.examples[i];
        T = ex->n_src > T ? ex->n_src : T;
        T = ex->n_tgt > T ? ex->n_tgt : T;
    }
    size_t act = 0, act_other = 0;
    /* the comparison first: it is estimated on a few blocks, so the run never holds it */
    if (t->o.gradient_checkpointing && cp_step_estimate_activations(t->m, &t->opt, B, T, 0, &act_other) != CP_OK) return CP_ERR;
    if (cp_step_measure_activations(t->m, &t->opt, B, T, t->o.gradient_checkpointing, &act) != CP_OK) return CP_ERR;
    const double frozen = (double)c.frozen, mapped = (double)c.mapped, trainable = (double)c.trainable * 4;
    out->batch_size = B;
    out->seq_len = T;
    out->frozen_bytes = frozen;
    out->mapped_bytes = mapped;
    out->trainable_values = c.trainable;
    out->trainable_bytes = trainable;
    out->optimizer_bytes = 2 * trainable;
    out->activation_bytes = (double)act;
    out->activation_bytes_without_checkpointing = t->o.gradient_checkpointing ? (double)act_other : 0;
    out->other_bytes = -1;
    cp_mem_usage u;
    if (cp_mem_now(&u)) {
        /* anonymous memory beyond the owned weights and trainable state, and mapped pages beyond the
         * mapped weights (for a model whose input embedding is not tied, the rows no batch has used
         * yet are not resident, so this part can be short by up to the program's code) */
        double anon = (double)u.anon - (frozen - mapped) - 4 * trainable, file = (double)u.file - mapped;
        out->other_bytes = (anon > 0 ? anon : 0) + (file > 0 ? file : 0);
    }
    out->total_bytes = frozen + 4 * trainable + (double)act + (out->other_bytes > 0 ? out->other_bytes : 0);
    return CP_OK;
}
