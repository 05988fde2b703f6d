/*
 * stack.c — the transformer scaffold: embeddings, blocks, final norm; forward, cached forward,
 * training forward with saved activations or recompute, and the backward with the cut below the
 * lowest trained block. See stack.h.
 */
#include "models/stack.h"
#include "core/alloc.h"
#include "models/hook.h"
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
static int64_t blocks_run(const cp_model *m, const cp_stack *s) {
    if (s != &m->stack || m->arch->encoder_decoder) return s->n_blocks;
    return m->config.num_layers < s->n_blocks ? m->config.num_layers : s->n_blocks;
}

int64_t cp_stack_out_width(const cp_model *m, const cp_stack *s) {
    return s->final_proj ? s->final_proj->out_features : m->config.hidden_size;
}

static const cp_block_ops *ops_of(const cp_model *m, const cp_stack *s) { return s->ops ? s->ops : m->arch->block_ops; }

int cp_stack_trains(const cp_model *m, const cp_stack *s) {
    if (s->root) return cp_subtree_trains(s->root);
    return cp_subtree_trains(m->root);
}

/* E, the width of the token embeddings: virtual token rows are that wide (ELECTRA, OPT-350m: not hidden_size). */
static int64_t embed_width(const cp_model *m) {
    const int64_t E = m->config.embedding_size;
    return E > m->config.hidden_size ? E : m->config.hidden_size;
}

/* The embedding step's arguments: with a prompt hook, its virtual token embeddings (B,n,E). */
static cp_status embed_args(const cp_run *run, const cp_batch *b, int64_t past, int64_t C, cp_embed_args *ea) {
    *ea = (cp_embed_args){.past = past + run->n_prefix};
    const cp_prompt_hook *h = run->prompt;
    if (!h || !h->ops->embeddings || !run->n_virtual) return CP_OK;
    ea->n_virtual = run->n_virtual;
    if (ea->n_virtual > b->T) return cp_error("batch: %lld positions cannot hold %lld virtual tokens", (long long)b->T, (long long)ea->n_virtual);
    float *v = cp_arena_floats(run->arena, (size_t)(b->B * ea->n_virtual * C), "virtual token embeddings"); // (B,n,E)
    if (!v || h->ops->embeddings(h, run, b->B, v) != CP_OK) return CP_ERR;
    ea->virtual_embeds = v;
    return CP_OK;
}

/* x (N,C) = dropout(x): the embedding step's output in training (identity otherwise). Its own
 * backward: the same call on the gradient. */
static void embed_dropout(const cp_model *m, const cp_stack *s, const cp_run *run, float *x, int64_t N) {
    const cp_dropout d = cp_run_dropout(run, s->embed_dropout);
    cp_dropout_apply(&d, x, x, 0, N, m->config.hidden_size);
}

/* x (N,C) = dropout(x) after the final norm (T5Stack applies its one dropout there a second time);
 * the backward is the same call on the gradient. */
static void final_dropout(const cp_model *m, const cp_stack *s, const cp_run *run, float *x, int64_t N) {
    if (!s->final_dropout) return;
    const cp_dropout d = cp_run_dropout_call(run, s->final_dropout, s->final_dropout == s->embed_dropout);
    cp_dropout_apply(&d, x, x, 0, N, m->config.hidden_size);
}

/* A block's activation record: the architecture's, and with run->cross its cross-attention part. */
static cp_status alloc_acts(const cp_model *m, const cp_block_ops *ops, const cp_run *run, void *acts, const cp_batch *b,
                            int64_t Tk, int training, cp_arena *ar) {
    if (ops->alloc_acts(m, acts, b, Tk, training, ar) != CP_OK) return CP_ERR;
    if (run->cross && ops->alloc_cross) return ops->alloc_cross(m, acts, b, run->cross->Te, training, ar);
    return CP_OK;
}

static void *alloc_emb(const cp_block_ops *ops, cp_arena *ar) {
    const size_t n = ops->embed_size;
    void *emb = cp_arena_alloc(ar, n ? n : 1, "embedding state");
    if (emb) memset(emb, 0, n ? n : 1);
    return emb;
}

cp_status cp_stack_forward(cp_model *m, const cp_run *run, const cp_batch *b, cp_kv_cache *kv, float *out,
                           float *hidden_states) {
    return cp_stack_forward_on(m, &m->stack, run, b, kv, out, hidden_states);
}

cp_status cp_stack_forward_on(cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b, cp_kv_cache *kv,
                              float *out, float *hidden_states) {
    const cp_block_ops *ops = ops_of(m, s);
    const int64_t N = b->B * b->T, C = m->config.hidden_size, E = embed_width(m), L = blocks_run(m, s);
    cp_arena *ar = run->arena;
    if (hidden_states && s->final_proj)
        return cp_error("output_hidden_states: the last hidden state is %s's output, of width %lld, not hidden_size %lld: "
                        "not supported", s->final_proj->path, (long long)s->final_proj->out_features, (long long)C);
    float *x = cp_arena_floats(ar, (size_t)(N * C), "residual stream"); // (B,T,C)
    void *emb = alloc_emb(ops, ar);
    void *acts = cp_arena_alloc(ar, ops->acts_size, "block activations");
    if (!x || !emb || !acts || alloc_acts(m, ops, run, acts, b, run->n_prefix + b->T, 0, ar) != CP_OK) return CP_ERR;
    cp_embed_args ea;
    if (embed_args(run, b, kv ? kv->len : 0, E, &ea) != CP_OK || ops->embed(m, run, b, &ea, x, emb) != CP_OK) return CP_ERR;
    embed_dropout(m, s, run, x, N);
    for (int64_t l = 0; l < L; l++) {
        if (hidden_states) memcpy(hidden_states + l * N * C, x, (size_t)(N * C) * sizeof *x);
        if (ops->block_forward(m, run, l, b, emb, x, acts, kv) != CP_OK) return CP_ERR;
    }
    float *normed = s->final_proj ? cp_arena_floats(ar, (size_t)(N * C), "final norm output") : out; // (B,T,C)
    if (!normed) return CP_ERR;
    final_norm_forward(s->final_norm, normed, NULL, NULL, x, N, C);
    final_dropout(m, s, run, normed, N);
    if (s->final_proj && cp_proj_forward(run, s->final_proj, out, normed, N) != CP_OK) return CP_ERR; // (B,T,W)
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
    cp_embed_args ea;        /* its arguments (virtual tokens) */
    block_rec *top;          /* the last block's record */
    void *scratch_acts;      /* with recompute: one activation record every block's forward reuses */
    float *x_final;          /* (N,C) the final norm's input */
    float *proj_in;          /* (N,C) final_proj's input (the final norm's output), with a final_proj */
    float *norm_mean, *norm_rstd;
    int recompute;
} saved_stack;

cp_status cp_stack_forward_train(cp_model *m, const cp_run *run, const cp_batch *b, int recompute, float *out, void **saved) {
    return cp_stack_forward_train_on(m, &m->stack, run, b, recompute, out, saved);
}

cp_status cp_stack_forward_train_on(cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b, int recompute,
                                    float *out, void **saved) {
    const cp_block_ops *ops = ops_of(m, s);
    const int64_t N = b->B * b->T, C = m->config.hidden_size, E = embed_width(m), L = blocks_run(m, s);
    cp_arena *ar = run->arena;
    saved_stack *sv = cp_arena_alloc(ar, sizeof *sv, "saved activations");
    if (!sv) return CP_ERR;
    memset(sv, 0, sizeof *sv);
    sv->recompute = recompute;
    sv->x_final = cp_arena_floats(ar, (size_t)(N * C), "final norm input");
    const int layernorm = s->final_norm && s->final_norm->kind == CP_MOD_LAYERNORM;
    sv->norm_mean = layernorm ? cp_arena_floats(ar, (size_t)N, "final norm statistics") : NULL;
    sv->norm_rstd = s->final_norm ? cp_arena_floats(ar, (size_t)N, "final norm statistics") : NULL;
    sv->emb = alloc_emb(ops, ar);
    if (!sv->x_final || !sv->emb || (s->final_norm && !sv->norm_rstd) || (layernorm && !sv->norm_mean)) return CP_ERR;
    /* with recompute the blocks' activations are scratch shared by every block */
    if (recompute && (!(sv->scratch_acts = cp_arena_alloc(ar, ops->acts_size, "block activations")) ||
                      alloc_acts(m, ops, run, sv->scratch_acts, b, run->n_prefix + b->T, 0, ar) != CP_OK))
        return CP_ERR;
    float *x = sv->x_final; /* the residual stream runs in place and ends as the final norm's input */
    if (embed_args(run, b, 0, E, &sv->ea) != CP_OK || ops->embed(m, run, b, &sv->ea, x, sv->emb) != CP_OK) return CP_ERR;
    embed_dropout(m, s, run, x, N);
    for (int64_t l = 0; l < L; l++) {
        block_rec *r = cp_arena_alloc(ar, sizeof *r + (recompute ? 0 : ops->acts_size), "saved activations");
        if (!r || !(r->x_in = cp_arena_floats(ar, (size_t)(N * C), "block input"))) return CP_ERR;
        r->below = sv->top;
        sv->top = r;
        void *acts = recompute ? sv->scratch_acts : (void *)r->acts;
        if (!recompute && alloc_acts(m, ops, run, acts, b, run->n_prefix + b->T, 1, ar) != CP_OK) return CP_ERR;
        memcpy(r->x_in, x, (size_t)(N * C) * sizeof *x);
        if (ops->block_forward(m, run, l, b, sv->emb, x, acts, NULL) != CP_OK) return CP_ERR;
    }
    if (s->final_proj && !(sv->proj_in = cp_arena_floats(ar, (size_t)(N * C), "final projection input"))) return CP_ERR;
    float *normed = s->final_proj ? sv->proj_in : out; // (B,T,C)
    final_norm_forward(s->final_norm, normed, sv->norm_mean, sv->norm_rstd, x, N, C);
    final_dropout(m, s, run, normed, N);
    if (s->final_proj && cp_proj_forward(run, s->final_proj, out, normed, N) != CP_OK) return CP_ERR; // (B,T,W)
    *saved = sv;
    return CP_OK;
}

cp_status cp_stack_backward(cp_model *m, const cp_run *run, const cp_batch *b, const float *d_out, void *saved) {
    return cp_stack_backward_on(m, &m->stack, run, b, d_out, saved);
}

cp_status cp_stack_backward_on(cp_model *m, const cp_stack *s, const cp_run *run, const cp_batch *b, const float *d_out,
                               void *saved) {
    const cp_block_ops *ops = ops_of(m, s);
    const int64_t N = b->B * b->T, C = m->config.hidden_size, L = blocks_run(m, s);
    cp_arena *ar = run->arena;
    saved_stack *sv = saved;
    /* the lowest block whose parameters train (or the embeddings): nothing below it needs gradients */
    const int prompt = sv->ea.n_virtual > 0 && run->prompt->ops->embeddings_backward;
    const int prefix = run->n_prefix > 0 && run->prompt->ops->kv_prefix_backward; /* trains in every block */
    int embeddings = 0;
    for (int i = 0; i < 4 && s->embeddings[i]; i++) embeddings |= cp_subtree_trains(s->embeddings[i]);
    const int to_bottom = embeddings || prompt; /* the gradient must reach the embedding step */
    const int cross = run->cross && run->cross->d_states; /* every block's cross-attention sends to the encoder */
    int64_t lowest = to_bottom || prefix || cross ? 0 : L;
    for (int64_t l = 0; l < L && lowest == L; l++)
        if (cp_subtree_trains(s->blocks[l])) lowest = l;
    float *dx = cp_arena_floats(ar, (size_t)(N * C), "residual gradient");
    if (!dx) return CP_ERR;
    memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    if (s->final_proj) { // out (N,W) = final_proj(normed (N,C)): d normed from d_out, and final_proj's gradients
        float *d = cp_arena_floats(ar, (size_t)(N * C), "final projection input gradient");
        if (!d) return CP_ERR;
        memset(d, 0, (size_t)(N * C) * sizeof *d);
        if (cp_proj_backward(run, s->final_proj, d, d_out, sv->proj_in, N) != CP_OK) return CP_ERR;
        d_out = d;
    }
    if (s->final_dropout) { // out = dropout(norm(x)): d norm = the same mask on d_out
        float *d = cp_arena_floats(ar, (size_t)(N * C), "final dropout gradient");
        if (!d) return CP_ERR;
        memcpy(d, d_out, (size_t)(N * C) * sizeof *d);
        final_dropout(m, s, run, d, N);
        d_out = d;
    }
    final_norm_backward(s->final_norm, dx, d_out, sv->x_final, sv->norm_mean, sv->norm_rstd, N, C);
    void *fresh = NULL;
    if (sv->recompute) {
        if (!(fresh = cp_arena_alloc(ar, ops->acts_size, "recomputed activations")) || alloc_acts(m, ops, run, fresh, b, run->n_prefix + b->T, 1, ar) != CP_OK)
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
        if (ops->block_backward(m, run, l, b, sv->emb, r->x_in, acts, dx, l > lowest || to_bottom) != CP_OK) return CP_ERR;
        cp_arena_release(ar, mark);
    }
    if (prompt || embeddings) embed_dropout(m, s, run, dx, N); // x = dropout(embed): dx · the same mask
    /* the virtual tokens' gradient is taken where they entered, at the token embeddings (cp_embed_tokens_backward),
     * through whatever the embedding step does after them (BERT's LayerNorm) */
    if ((embeddings || prompt) && ops->embed_backward(m, run, b, &sv->ea, dx, sv->emb) != CP_OK) return CP_ERR;
    if ((prompt || prefix) && run->prompt->ops->backward_end && run->prompt->ops->backward_end(run->prompt, run) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

cp_status cp_stack_blocks(cp_model *m, const cp_module *parent, const char *list_name) {
    return cp_stack_blocks_into(&m->stack, parent, list_name);
}

cp_status cp_stack_blocks_into(cp_stack *s, const cp_module *parent, const char *list_name) {
    const cp_module *list = cp_module_child(parent, list_name);
    if (!list) return cp_error("%s: no block list \"%s\"", parent->path[0] ? parent->path : "the model", list_name);
    s->n_blocks = list->n_children;
    s->blocks = cp_calloc((size_t)(list->n_children ? list->n_children : 1), sizeof *s->blocks, "the block list");
    if (!s->blocks) return CP_ERR;
    for (int i = 0; i < list->n_children; i++) s->blocks[i] = list->children[i];
    return CP_OK;
}

cp_status cp_embed_tokens(const cp_run *run, const cp_module *table, const cp_batch *b, const cp_embed_args *ea, float *x) {
    const int64_t N = b->B * b->T, C = table->out_features, n = ea->n_virtual;
    if (cp_embed_forward(run, table, x, b->input_ids, N, 0) != CP_OK) return cp_error_context("input_ids");
    for (int64_t r = 0; r < b->B && n; r++)
        memcpy(x + r * b->T * C, ea->virtual_embeds + r * n * C, (size_t)(n * C) * sizeof *x);
    return CP_OK;
}

cp_status cp_embed_tokens_backward(const cp_run *run, const cp_module *table, const cp_batch *b, const cp_embed_args *ea,
                                   const float *dx) {
    const int64_t N = b->B * b->T, C = table->out_features, n = ea->n_virtual;
    if (!n) return cp_embed_backward(run, table, dx, b->input_ids, N);
    /* the virtual rows did not come from the table: their gradient (B,n,C) is the prompt hook's */
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    float *d = cp_arena_floats(run->arena, (size_t)(N * C), "token embedding gradients"); // (N,C)
    float *dv = cp_arena_floats(run->arena, (size_t)(b->B * n * C), "virtual token gradients"); // (B,n,C)
    if (!d || !dv) return CP_ERR;
    memcpy(d, dx, (size_t)(N * C) * sizeof *d);
    for (int64_t r = 0; r < b->B; r++) {
        memcpy(dv + r * n * C, d + r * b->T * C, (size_t)(n * C) * sizeof *dv);
        memset(d + r * b->T * C, 0, (size_t)(n * C) * sizeof *d);
    }
    cp_status st = run->prompt->ops->embeddings_backward ? run->prompt->ops->embeddings_backward(run->prompt, run, b->B, dv) : CP_OK;
    if (st == CP_OK) st = cp_embed_backward(run, table, d, b->input_ids, N);
    cp_arena_release(run->arena, mark);
    return st;
}

/* ---- prefix tuning: n key/value columns before the batch's in every layer ---------------------- */

/* K', V' (B, n+T, kvd): the hook's prefix of layer l, then the block's keys and values (at's layout). */
static cp_status prefix_kv(const cp_run *run, int64_t layer, const cp_attention_args *at, float **kc, float **vc) {
    const int64_t n = run->n_prefix, B = at->B, T = at->T, kvd = (at->NKV ? at->NKV : at->NH) * at->hs;
    float *pk = cp_arena_floats(run->arena, (size_t)(B * n * kvd), "prefix keys");
    float *pv = cp_arena_floats(run->arena, (size_t)(B * n * kvd), "prefix values");
    *kc = cp_arena_floats(run->arena, (size_t)(B * (n + T) * kvd), "prefixed keys");     // (B,n+T,kvd)
    *vc = cp_arena_floats(run->arena, (size_t)(B * (n + T) * kvd), "prefixed values");
    if (!pk || !pv || !*kc || !*vc) return CP_ERR;
    if (run->prompt->ops->kv_prefix(run->prompt, run, layer, B, pk, pv) != CP_OK) return CP_ERR;
    for (int64_t b = 0; b < B; b++) {
        float *kr = *kc + b * (n + T) * kvd, *vr = *vc + b * (n + T) * kvd;
        memcpy(kr, pk + b * n * kvd, (size_t)(n * kvd) * sizeof *kr);
        memcpy(vr, pv + b * n * kvd, (size_t)(n * kvd) * sizeof *vr);
        for (int64_t t = 0; t < T; t++) {
            memcpy(kr + (n + t) * kvd, at->k + (b * T + t) * at->k_stride, (size_t)kvd * sizeof *kr);
            memcpy(vr + (n + t) * kvd, at->v + (b * T + t) * at->v_stride, (size_t)kvd * sizeof *vr);
        }
    }
    return CP_OK;
}

static void point_at_prefixed(const cp_run *run, cp_attention_args *at, float *kc, float *vc) {
    const int64_t kvd = (at->NKV ? at->NKV : at->NH) * at->hs;
    at->k = kc;
    at->v = vc;
    at->k_stride = at->v_stride = kvd;
    at->past = run->n_prefix;
    at->kv_rows = run->n_prefix + at->T;
    at->key_mask = run->prefix_key_mask;
}

cp_status cp_stack_attend(const cp_run *run, cp_kv_cache *kv, int64_t layer, cp_attention_args *at) {
    if (kv) {
        cp_kv_cache_attend(kv, layer, at->k, at->k_stride, at->v, at->v_stride, at);
        return CP_OK;
    }
    if (!run->n_prefix) return CP_OK;
    float *kc, *vc;
    if (prefix_kv(run, layer, at, &kc, &vc) != CP_OK) return CP_ERR;
    point_at_prefixed(run, at, kc, vc);
    return CP_OK;
}

cp_status cp_stack_attention_backward(const cp_run *run, int64_t layer, const cp_attention_args *block_at, const float *dout,
                                      float *dq, float *dk, float *dv) {
    if (!run->n_prefix) return cp_attention_backward(block_at, dout, dq, dk, dv, run->arena);
    const int64_t n = run->n_prefix, B = block_at->B, T = block_at->T, kvd = (block_at->NKV ? block_at->NKV : block_at->NH) * block_at->hs;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_attention_args at = *block_at;
    float *kc, *vc;
    if (prefix_kv(run, layer, &at, &kc, &vc) != CP_OK) goto fail;
    point_at_prefixed(run, &at, kc, vc);
    float *dkc = cp_arena_floats(run->arena, (size_t)(B * (n + T) * kvd), "prefixed key gradients");
    float *dvc = cp_arena_floats(run->arena, (size_t)(B * (n + T) * kvd), "prefixed value gradients");
    float *dpk = cp_arena_floats(run->arena, (size_t)(B * n * kvd), "prefix key gradients");
    float *dpv = cp_arena_floats(run->arena, (size_t)(B * n * kvd), "prefix value gradients");
    if (!dkc || !dvc || !dpk || !dpv || cp_attention_backward(&at, dout, dq, dkc, dvc, run->arena) != CP_OK) goto fail;
    // split: the prefix columns go to the hook, the batch's to the block's k and v
    for (int64_t b = 0; b < B; b++) {
        const float *kr = dkc + b * (n + T) * kvd, *vr = dvc + b * (n + T) * kvd;
        memcpy(dpk + b * n * kvd, kr, (size_t)(n * kvd) * sizeof *dpk);
        memcpy(dpv + b * n * kvd, vr, (size_t)(n * kvd) * sizeof *dpv);
        for (int64_t t = 0; t < T; t++) {
            memcpy(dk + (b * T + t) * block_at->k_stride, kr + (n + t) * kvd, (size_t)kvd * sizeof *dk);
            memcpy(dv + (b * T + t) * block_at->v_stride, vr + (n + t) * kvd, (size_t)kvd * sizeof *dv);
        }
    }
    if (run->prompt->ops->kv_prefix_backward &&
        run->prompt->ops->kv_prefix_backward(run->prompt, run, layer, B, dpk, dpv) != CP_OK)
        goto fail;
    cp_arena_release(run->arena, mark);
    return CP_OK;
fail:
    cp_arena_release(run->arena, mark);
    return CP_ERR;
}
