/*
 * hook.h — what a PEFT method attaches to a module: a hook with a table of operations.
 *
 * The model computes every projection and embedding through src/models/proj.c: the plain nn
 * primitive first (base weight), then each hook on the module adds its contribution, the way
 * llama.cpp's build_lora_mm sits above mul_mat. nn/ never looks at hooks and models/ never names a
 * method: LoRA (src/peft/lora.c), modules_to_save (src/peft/saved_module.c), (IA)³ (src/peft/ia3.c)
 * and the methods to come implement this table, and a module carries a list of hooks (cp_module.hooks).
 * A hook either adds to the output (linear_forward: LoRA) or scales the projection's input / output
 * feature by feature (linear_scale: (IA)³); at most one hook of a module scales.
 *
 * Contracts (every operation may be NULL when the method has nothing to do there):
 *   linear_forward    out (N,OC) += this hook's contribution for input in (N,C) (Linear / Conv1D)
 *   linear_backward   given the forward's input X (N,C) and dY (N,OC): the hook's own parameter
 *                     gradients and, when dX is non-NULL, dX (N,C) += its share of the input gradient
 *   embedding_forward out (N,d) += the contribution for token ids (N) (Embedding)
 *   embedding_backward the hook's parameter gradients from dY (N,d)
 *   linear_scale      a multiplicative hook ((IA)³): per-feature factors around the base projection,
 *                       y = ((x ∘ s_in) · W + b) ∘ s_out        s_in (C), s_out (OC)
 *                     sets *s_in / *s_out for this run, each NULL when that side is not scaled (both NULL:
 *                     the hook does nothing now: disabled, merged, no active adapter). The vectors live
 *                     in the hook or in run->arena (released by proj.c after the projection)
 *   linear_scale_backward  the hook's parameter gradients given those of its factors this run: d_in (C)
 *                     and d_out (OC), each NULL when that side was not scaled (proj.c computes them:
 *                     d_in = Σ_n X ∘ (dY' · W), d_out = Σ_n dY ∘ (x' · W + b))
 *   trains            whether any of the hook's parameters has a gradient buffer this run
 *   repr              the module as printed when wrapped by this method (PEFT's wrapper classes)
 *   free              releases the hook (called when the module's adapters go)
 * Scratch comes from run->arena and goes back to it before an operation returns.
 */
#ifndef CP_MODELS_HOOK_H
#define CP_MODELS_HOOK_H

#include <stdint.h>

#include "core/error.h"
#include "models/run.h"
#include "nn/module.h"

typedef struct cp_hook cp_hook;

typedef struct cp_hook_ops {
    const char *kind; /* "lora", "modules_to_save", ... */
    cp_status (*linear_forward)(const cp_hook *h, const cp_run *run, const cp_module *m, float *out, const float *in,
                                int64_t N);
    cp_status (*linear_backward)(const cp_hook *h, const cp_run *run, const cp_module *m, float *dX, const float *dY,
                                 const float *X, int64_t N);
    cp_status (*embedding_forward)(const cp_hook *h, const cp_run *run, const cp_module *m, float *out,
                                   const int64_t *ids, int64_t N);
    cp_status (*embedding_backward)(const cp_hook *h, const cp_run *run, const cp_module *m, const float *dY,
                                    const int64_t *ids, int64_t N);
    cp_status (*linear_scale)(const cp_hook *h, const cp_run *run, const cp_module *m, const float **s_in,
                              const float **s_out);
    cp_status (*linear_scale_backward)(const cp_hook *h, const cp_run *run, const cp_module *m, const float *d_in,
                                       const float *d_out);
    int (*trains)(const cp_hook *h);
    char *(*repr)(const cp_hook *h, const cp_module *m);
    void (*free)(cp_hook *h);
    int outermost; /* prints around the module's other hooks (a wrapper of the whole module) */
} cp_hook_ops;

/* Embedded as the first member of a method's per-module state. */
struct cp_hook {
    const cp_hook_ops *ops;
    cp_hook *next;
};

/* Prompt learning hooks the model, not a module: it puts n virtual tokens before every row, in one of
 * two places, and the model level runs the batch as PEFT's PeftModelForCausalLM does.
 *   embeddings (prompt tuning, p-tuning): the n virtual positions' token embeddings are the hook's
 *     (B,n,C) in place of rows of the embedding table; the attention mask and labels get n leading
 *     ones / -100, position ids are dropped (the default 0..n+T-1); their gradient goes to
 *     embeddings_backward. Logits and hidden states cover the n+T positions.
 *   kv_prefix (prefix tuning): every layer's attention sees n key/value columns (B,n,NKV·hd) before
 *     the batch's, as a cache would hold them; the key mask gets n leading ones and positions start
 *     at n (given position ids are offset by n); their gradients go to kv_prefix_backward.
 * Optional per-call operations: begin, once at the start of every model call that runs the hook
 * (before the forward: it may keep state for the call in run->prompt_state, from run->arena), and
 * backward_end, once after the backward's last embeddings_backward / kv_prefix_backward (a hook that
 * gathers its gradients there runs its own backward then). */
typedef struct cp_prompt_hook cp_prompt_hook;

typedef struct cp_prompt_ops {
    const char *kind; /* "prompt_tuning", ... */
    int64_t (*n_virtual)(const cp_prompt_hook *h);
    cp_status (*embeddings)(const cp_prompt_hook *h, const cp_run *run, int64_t B, float *out);
    cp_status (*embeddings_backward)(const cp_prompt_hook *h, const cp_run *run, int64_t B, const float *d_embeddings);
    cp_status (*kv_prefix)(const cp_prompt_hook *h, const cp_run *run, int64_t layer, int64_t B, float *k, float *v);
    cp_status (*kv_prefix_backward)(const cp_prompt_hook *h, const cp_run *run, int64_t layer, int64_t B, const float *dk,
                                    const float *dv);
    cp_status (*begin)(const cp_prompt_hook *h, cp_run *run);
    cp_status (*backward_end)(const cp_prompt_hook *h, const cp_run *run);
} cp_prompt_ops;

struct cp_prompt_hook {
    const cp_prompt_ops *ops;
};

/* The hook of this kind on m (NULL when none). */
cp_hook *cp_hook_find(const cp_module *m, const cp_hook_ops *ops);
/* Appends h to m's hooks / unlinks it (not freed). */
void cp_hook_attach(cp_module *m, cp_hook *h);
void cp_hook_detach(cp_module *m, cp_hook *h);
/* Frees every hook on every module under root. */
void cp_hook_free_all(cp_module *root);
/* print(model) of m with its hooks: the repr of an outermost hook, else of the last attached hook
 * that prints, else NULL (the module prints plainly). A hook's repr gets what it wraps from
 * cp_hook_repr_inner: the module printed by its other hooks, or plainly. */
char *cp_hook_repr(const cp_module *m);
char *cp_hook_repr_inner(const cp_module *m, const cp_hook *h);
/* cp_module_repr_with's wrap function for a tree that carries hooks (ctx unused). */
char *cp_hook_repr_wrap(const cp_module *m, void *ctx);

#endif
