/*
 * stack.c — the transformer scaffold: embeddings, blocks, final norm; forward, cached forward,
 * training forward with saved activations or recompute, and the backward with the cut below the
 * lowest trained block. See stack.h.
 */
#include "models/stack.h"
#include "core/alloc.h"
#include "models/model.h"
#include "models/proj.h"
#include "nn/layernorm.h"
#include "nn/rmsnorm.h"

#include <string.h>

/* The final norm's forward (mean is NULL for RMSNorm), or a copy when the stack has none. */
static void final_norm_forward(const cp_module *norm, float *out, float *mean, float *rstd, const float *x, int64_t N,
                               int64_t C) {
    if (!norm) memcpy(out, x, (size_t)(N * C) * sizeof *out);
    else if (norm->kind == CP_MOD_LAYERNORM) cp_layernorm_forward(norm, out, mean, rstd, x, N);
    else cp_rmsnorm_forward(norm, out, rstd, x, N);
}

static void final_norm_backward(const cp_module *norm, float *dx, const float *d_out, const float *x, const float *mean,
                                const float *rstd, int64_t N, int64_t C) {
    if (!norm) {
        for (int64_t i = 0; i < N * C; i++) dx[i] += d_out[i];
    } else if (norm->kind == CP_MOD_LAYERNORM) {
        cp_layernorm_backward(norm, dx, d_out, x, mean, rstd, N);
    } else {
        cp_rmsnorm_backward(norm, dx, d_out, x, rstd, N);
    }
}

/* The blocks that run: all of them, or the first config.num_layers when a caller lowered it (the
 * memory plan measures a step of 2 and 3 blocks that way). */
static int64_t blocks_run(const cp_model *m) {
    return m->config.num_layers < m->stack.n_blocks ? m->config.num_layers : m->stack.n_blocks;
}

static void *alloc_emb(cp_model *m, cp_arena *ar) {
    const size_t n = m->arch->block_ops->embed_size;
    void *emb = cp_arena_alloc(ar, n ? n : 1, "embedding state");
    if (emb) memset(emb, 0, n ? n : 1);
    return emb;
}

cp_status cp_stack_forward(cp_model *m, const cp_run *run, const cp_batch *b, cp_kv_cache *kv, float *out,
                           float *hidden_states) {
    const cp_block_ops *ops = m->arch->block_ops;
    const cp_stack *s = &m->stack;
    const int64_t N = b->B * b->T, C = m->config.hidden_size, L = blocks_run(m);
    cp_arena *ar = run->arena;
    float *x = cp_arena_floats(ar, (size_t)(N * C), "residual stream"); // (B,T,C)
    void *emb = alloc_emb(m, ar);
    void *acts = cp_arena_alloc(ar, ops->acts_size, "block activations");
    if (!x || !emb || !acts || ops->alloc_acts(m, acts, b, 0, ar) != CP_OK) return CP_ERR;
    if (ops->embed(m, run, b, kv ? kv->len : 0, x, emb) != CP_OK) return CP_ERR;
    for (int64_t l = 0; l < L; l++) {
        if (hidden_states) memcpy(hidden_states + l * N * C, x, (size_t)(N * C) * sizeof *x);
        if (ops->block_forward(m, run, l, b, emb, x, acts, kv) != CP_OK) return CP_ERR;
    }
    final_norm_forward(s->final_norm, out, NULL, NULL, x, N, C);
    if (hidden_states) memcpy(hidden_states + L * N * C, out, (size_t)(N * C) * sizeof *out);
    return CP_OK;
}

/* ---- training ---------------------------------------------------------------------------------- */

/* What one block keeps for the backward pass, allocated as the block runs so that each block costs
 * the same bytes (the memory plan extrapolates from two and three blocks). */
typedef struct block_rec {
    struct block_rec *below; /* the previous block's record */
    float *x_in;             /* (N,C) the block's input */
    _Alignas(16) unsigned char acts[]; /* the architecture's activations (none with recompute) */
} block_rec;

typedef struct {
    void *emb;               /* the embedding step's state */
    block_rec *top;          /* the last block's record */
    void *scratch_acts;      /* with recompute: one activation record every block's forward reuses */
    float *x_final;          /* (N,C) the final norm's input */
    float *norm_mean, *norm_rstd;
    int recompute;
} saved_stack;

cp_status cp_stack_forward_train(cp_model *m, const cp_run *run, const cp_batch *b, int recompute, float *out, void **saved) {
    const cp_block_ops *ops = m->arch->block_ops;
    const cp_stack *s = &m->stack;
    const int64_t N = b->B * b->T, C = m->config.hidden_size, L = blocks_run(m);
    cp_arena *ar = run->arena;
    saved_stack *sv = cp_arena_alloc(ar, sizeof *sv, "saved activations");
    if (!sv) return CP_ERR;
    memset(sv, 0, sizeof *sv);
    sv->recompute = recompute;
    sv->x_final = cp_arena_floats(ar, (size_t)(N * C), "final norm input");
    const int layernorm = s->final_norm && s->final_norm->kind == CP_MOD_LAYERNORM;
    sv->norm_mean = layernorm ? cp_arena_floats(ar, (size_t)N, "final norm statistics") : NULL;
    sv->norm_rstd = s->final_norm ? cp_arena_floats(ar, (size_t)N, "final norm statistics") : NULL;
    sv->emb = alloc_emb(m, ar);
    if (!sv->x_final || !sv->emb || (s->final_norm && !sv->norm_rstd) || (layernorm && !sv->norm_mean)) return CP_ERR;
    /* with recompute the blocks' activations are scratch shared by every block */
    if (recompute && (!(sv->scratch_acts = cp_arena_alloc(ar, ops->acts_size, "block activations")) ||
                      ops->alloc_acts(m, sv->scratch_acts, b, 0, ar) != CP_OK))
        return CP_ERR;
    float *x = sv->x_final; /* the residual stream runs in place and ends as the final norm's input */
    if (ops->embed(m, run, b, 0, x, sv->emb) != CP_OK) return CP_ERR;
    for (int64_t l = 0; l < L; l++) {
        block_rec *r = cp_arena_alloc(ar, sizeof *r + (recompute ? 0 : ops->acts_size), "saved activations");
        if (!r || !(r->x_in = cp_arena_floats(ar, (size_t)(N * C), "block input"))) return CP_ERR;
        r->below = sv->top;
        sv->top = r;
        void *acts = recompute ? sv->scratch_acts : (void *)r->acts;
        if (!recompute && ops->alloc_acts(m, acts, b, 1, ar) != CP_OK) return CP_ERR;
        memcpy(r->x_in, x, (size_t)(N * C) * sizeof *x);
        if (ops->block_forward(m, run, l, b, sv->emb, x, acts, NULL) != CP_OK) return CP_ERR;
    }
    final_norm_forward(s->final_norm, out, sv->norm_mean, sv->norm_rstd, x, N, C);
    *saved = sv;
    return CP_OK;
}

cp_status cp_stack_backward(cp_model *m, const cp_run *run, const cp_batch *b, const float *d_out, void *saved) {
    const cp_block_ops *ops = m->arch->block_ops;
    const cp_stack *s = &m->stack;
    const int64_t N = b->B * b->T, C = m->config.hidden_size, L = blocks_run(m);
    cp_arena *ar = run->arena;
    saved_stack *sv = saved;
    /* the lowest block whose parameters train (or the embeddings): nothing below it needs gradients */
    int embeddings = 0;
    for (int i = 0; i < 4 && s->embeddings[i]; i++) embeddings |= cp_subtree_trains(s->embeddings[i]);
    int64_t lowest = embeddings ? 0 : L;
    for (int64_t l = 0; l < L && lowest == L; l++)
        if (cp_subtree_trains(s->blocks[l])) lowest = l;
    float *dx = cp_arena_floats(ar, (size_t)(N * C), "residual gradient");
    if (!dx) return CP_ERR;
    memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    final_norm_backward(s->final_norm, dx, d_out, sv->x_final, sv->norm_mean, sv->norm_rstd, N, C);
    void *fresh = NULL;
    if (sv->recompute) {
        if (!(fresh = cp_arena_alloc(ar, ops->acts_size, "recomputed activations")) || ops->alloc_acts(m, fresh, b, 1, ar) != CP_OK)
            return CP_ERR;
    }
    block_rec *r = sv->top;
    for (int64_t l = L - 1; l >= lowest; l--, r = r->below) {
        cp_arena_mark mark = cp_arena_get_mark(ar); /* this block's scratch goes back after its backward */
        void *acts = r->acts;
        if (sv->recompute) {
            /* rerun the block from its saved input to get its activations back */
            float *x = cp_arena_floats(ar, (size_t)(N * C), "recomputed block");
            if (!x) return CP_ERR;
            memcpy(x, r->x_in, (size_t)(N * C) * sizeof *x);
            if (ops->block_forward(m, run, l, b, sv->emb, x, fresh, NULL) != CP_OK) return CP_ERR;
            acts = fresh;
        }
        if (ops->block_backward(m, run, l, b, sv->emb, r->x_in, acts, dx, l > lowest || embeddings) != CP_OK) return CP_ERR;
        cp_arena_release(ar, mark);
    }
    return embeddings ? ops->embed_backward(m, run, b, dx, sv->emb) : CP_OK;
}

cp_status cp_stack_blocks(cp_model *m, const cp_module *parent, const char *list_name) {
    const cp_module *list = cp_module_child(parent, list_name);
    if (!list) return cp_error("%s: no block list \"%s\"", parent->path[0] ? parent->path : "the model", list_name);
    cp_stack *s = &m->stack;
    s->n_blocks = list->n_children;
    s->blocks = cp_calloc((size_t)(list->n_children ? list->n_children : 1), sizeof *s->blocks, "the block list");
    if (!s->blocks) return CP_ERR;
    for (int i = 0; i < list->n_children; i++) s->blocks[i] = list->children[i];
    return CP_OK;
}
