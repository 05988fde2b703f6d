/*
 * deberta_blocks.c — DeBERTa's embeddings, relative-position embeddings and post-LN blocks with
 * disentangled attention, forward and backward side by side (the scaffold's cp_block_ops; the
 * formulas in deberta.h, the attention core in nn/disentangled_attention.c).
 *
 *   embed:  e = word[ids] + position[pos] + token_type[tt]          (N,E)  (the tables that exist)
 *           x = LayerNorm_emb(embed_proj(e)) · mask                  (N,C)
 *           rel = [encoder.LayerNorm](rel_embeddings rows)           (W,C)  once per forward
 *   block:  q, k, v (v1: in_proj per-head chunks + q_bias / v_bias)  (N,C) three planes
 *           pk = pos_key(drop(rel)), pq = pos_query(drop(rel))       (W,C)
 *           att = disentangled attention(q, k, v, pk, pq)            padding mask on queries and keys,
 *                                                                    dropped probabilities in training
 *           r1 = drop(attention.output.dense(att)) + x;   x1 = LayerNorm_attn(r1)
 *           r2 = drop(output.dense(act(intermediate.dense(x1)))) + x1;   x = LayerNorm_out(r2)
 *   drop is each site's Dropout in training (cp_deberta_layer), the identity otherwise; the backward
 *   draws the same masks again. The embeddings' dropout is the scaffold's (embed_dropout).
 *
 * The backward of each block adds the gradient of rel (through its pk / pq projections) into one
 * (W,C) buffer of the embedding state when something under rel trains; the embedding backward runs
 * that buffer through encoder.LayerNorm into rel_embeddings' rows. transformers reads
 * rel_embeddings.weight directly (no forward call), so hooks on it take no part, here as there.
 *
 * What this is not: prefix tuning (no key/value prefix in the disentangled attention: refused),
 * a KV cache.
 */
#include "models/deberta.h"
#include "kernels/vector.h"
#include "models/proj.h"
#include "nn/convolution.h"
#include "nn/disentangled_attention.h"
#include "nn/layernorm.h"
#include "nn/relative_position.h"

#include <string.h>

/* ---- relative positions ------------------------------------------------------------------------- */

/* The rows W = 2·span of rel_embeddings the layers read for T tokens, from *first_row; 0 without
 * relative attention. */
static int64_t rel_rows(const cp_model *m, int64_t T, int64_t *first_row, int64_t *span) {
    const cp_model_config *c = &m->config;
    *first_row = 0;
    *span = 0;
    if (!c->deberta.relative_attention) return 0;
    *span = cp_deberta_attention_span(c->deberta.version, T, T, c->deberta.position_buckets, c->deberta.max_relative_positions,
                                      first_row);
    return 2 * *span;
}

/* ---- embeddings --------------------------------------------------------------------------------- */

/* rows (N,C) *= mask, as embeddings * mask.to(dtype): padding rows become zero */
static void apply_mask(float *rows, const int64_t *mask, int64_t N, int64_t C) {
    for (int64_t i = 0; mask && i < N; i++)
        if (mask[i] != 1)
            for (int64_t j = 0; j < C; j++) rows[i * C + j] *= (float)mask[i];
}

/* The embedding step's state, kept for its backward and read by every block. */
typedef struct {
    int64_t *pos, *tt;          /* (N) position and token type ids */
    float *sum;                 /* (N,E) word + position + token type */
    float *ln_in;               /* (N,C) embed_proj(sum), or sum itself without embed_proj */
    float *mean, *rstd;         /* (N) LayerNorm_emb statistics */
    int64_t *rel_pos;           /* (T,T) relative position ids (buckets) */
    int64_t span, first_row, W; /* W = 2·span rows of rel_embeddings from first_row; 0 without */
    float *rel_in;              /* (W,C) those rows */
    float *rel;                 /* (W,C) after encoder.LayerNorm (rel_in itself without it) */
    float *rel_mean, *rel_rstd; /* (W) its statistics */
    float *d_rel;               /* (W,C) gradient of rel summed over the layers; NULL when nothing under rel trains */
    /* v2 ConvLayer after layer 0 (written by block 0's forward, read by its backward) */
    float *conv_c;              /* (N,C) Conv1d(x0) with padding rows zeroed: the activation's input */
    float *conv_r;              /* (N,C) y + conv_act(conv_c): LayerNorm_conv's input */
    float *conv_mean, *conv_rstd; /* (N) its statistics */
} deberta_emb;

static cp_status embed_rel(cp_model *m, const cp_run *run, const cp_batch *b, deberta_emb *e) {
    const cp_deberta_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t C = c->hidden_size, T = b->T;
    e->W = rel_rows(m, T, &e->first_row, &e->span);
    if (!e->W) return CP_OK;
    cp_arena *ar = run->arena;
    e->rel_pos = cp_arena_alloc(ar, (size_t)(T * T) * sizeof *e->rel_pos, "relative positions");
    e->rel_in = cp_arena_floats(ar, (size_t)(e->W * C), "relative embeddings");
    if (!e->rel_pos || !e->rel_in) return CP_ERR;
    if (cp_deberta_relative_position(e->rel_pos, T, T, c->deberta.position_buckets, c->deberta.max_relative_positions) != CP_OK)
        return CP_ERR;
    for (int64_t r = 0; r < e->W; r++) cp_param_row_f32(s->rel_embeddings->weight, e->first_row + r, e->rel_in + r * C, 0);
    e->rel = e->rel_in;
    if (s->rel_ln) { // rel = encoder.LayerNorm(rel_embeddings.weight)[rows]: a per-row norm, so rows first
        e->rel = cp_arena_floats(ar, (size_t)(e->W * C), "normed relative embeddings");
        e->rel_mean = cp_arena_floats(ar, (size_t)e->W, "relative LayerNorm statistics");
        e->rel_rstd = cp_arena_floats(ar, (size_t)e->W, "relative LayerNorm statistics");
        if (!e->rel || !e->rel_mean || !e->rel_rstd) return CP_ERR;
        cp_layernorm_forward(s->rel_ln, e->rel, e->rel_mean, e->rel_rstd, e->rel_in, e->W);
    }
    if (cp_module_trains(s->rel_embeddings) || cp_module_trains(s->rel_ln)) {
        if (!(e->d_rel = cp_arena_floats(ar, (size_t)(e->W * C), "relative embedding gradients"))) return CP_ERR;
        memset(e->d_rel, 0, (size_t)(e->W * C) * sizeof *e->d_rel);
    }
    return CP_OK;
}

static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const cp_deberta_state *s = m->arch_state;
    deberta_emb *e = emb;
    const int64_t B = b->B, T = b->T, N = B * T, C = m->config.hidden_size, E = m->config.deberta.embedding_size;
    if (run->n_prefix) return cp_error("%s: prefix tuning is not supported (the disentangled attention takes no key/value prefix)",
                                       m->config.model_type);
    cp_arena *ar = run->arena;
    e->pos = cp_arena_alloc(ar, (size_t)N * sizeof *e->pos, "position ids");
    e->tt = cp_arena_alloc(ar, (size_t)N * sizeof *e->tt, "token type ids");
    e->sum = cp_arena_floats(ar, (size_t)(N * E), "embedding sum");
    e->ln_in = s->embed_proj ? cp_arena_floats(ar, (size_t)(N * C), "projected embeddings") : e->sum;
    e->mean = cp_arena_floats(ar, (size_t)N, "embedding LayerNorm statistics");
    e->rstd = cp_arena_floats(ar, (size_t)N, "embedding LayerNorm statistics");
    if (!e->pos || !e->tt || !e->sum || !e->ln_in || !e->mean || !e->rstd) return CP_ERR;
    if (s->conv && (!(e->conv_c = cp_arena_floats(ar, (size_t)(N * C), "convolution output")) ||
                    !(e->conv_r = cp_arena_floats(ar, (size_t)(N * C), "convolution residual")) ||
                    !(e->conv_mean = cp_arena_floats(ar, (size_t)N, "convolution LayerNorm statistics")) ||
                    !(e->conv_rstd = cp_arena_floats(ar, (size_t)N, "convolution LayerNorm statistics"))))
        return CP_ERR;
    for (int64_t i = 0; i < N; i++) {
        e->pos[i] = b->position_ids ? b->position_ids[i] : ea->past + i % T;
        e->tt[i] = b->token_type_ids ? b->token_type_ids[i] : 0;
    }
    // sum = (word + position) + token_type, the tables that exist, in transformers' order
    if (cp_embed_tokens(run, s->word, b, ea, e->sum) != CP_OK) return CP_ERR;
    if (s->position && cp_embed_forward(run, s->position, e->sum, e->pos, N, 1) != CP_OK) return cp_error_context("position_ids");
    if (s->token_type && cp_embed_forward(run, s->token_type, e->sum, e->tt, N, 1) != CP_OK) return cp_error_context("token_type_ids");
    if (s->embed_proj && cp_proj_forward(run, s->embed_proj, e->ln_in, e->sum, N) != CP_OK) return CP_ERR;
    cp_layernorm_forward(s->ln_emb, x, e->mean, e->rstd, e->ln_in, N);
    // embeddings * mask: padding rows are zero
    apply_mask(x, b->attention_mask, N, C);
    return embed_rel(m, run, b, e);
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    const cp_deberta_state *s = m->arch_state;
    const deberta_emb *e = emb;
    const int64_t N = b->B * b->T, C = m->config.hidden_size, E = m->config.deberta.embedding_size;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = CP_OK;
    if (cp_subtree_trains(s->embeddings)) {
        float *dm = cp_arena_floats(run->arena, (size_t)(N * C), "embedding gradients");      // (N,C) d(masked output)
        float *dln = cp_arena_floats(run->arena, (size_t)(N * C), "embedding gradients");     // (N,C) d ln_in
        float *dsum = s->embed_proj ? cp_arena_floats(run->arena, (size_t)(N * E), "embedding gradients") : dln; // (N,E)
        if (!dm || !dln || !dsum) { cp_arena_release(run->arena, mark); return CP_ERR; }
        memcpy(dm, dx, (size_t)(N * C) * sizeof *dm);
        apply_mask(dm, b->attention_mask, N, C);
        // x = LayerNorm_emb(ln_in) · mask; ln_in = embed_proj(sum); sum = word + position + token_type
        memset(dln, 0, (size_t)(N * C) * sizeof *dln);
        cp_layernorm_backward(s->ln_emb, dln, dm, e->ln_in, e->mean, e->rstd, N);
        if (s->embed_proj) {
            memset(dsum, 0, (size_t)(N * E) * sizeof *dsum);
            st = cp_proj_backward(run, s->embed_proj, dsum, dln, e->sum, N);
        }
        if (st == CP_OK) st = cp_embed_tokens_backward(run, s->word, b, ea, dsum);
        if (st == CP_OK && s->position) st = cp_embed_backward(run, s->position, dsum, e->pos, N);
        if (st == CP_OK && s->token_type) st = cp_embed_backward(run, s->token_type, dsum, e->tt, N);
    }
    if (st == CP_OK && e->d_rel) {
        // rel = encoder.LayerNorm(rel_in): the layers' summed gradient back to rel_embeddings' rows
        const float *d_in = e->d_rel;
        if (s->rel_ln) {
            float *d = cp_arena_floats(run->arena, (size_t)(e->W * C), "relative embedding gradients"); // (W,C)
            if (!d) { cp_arena_release(run->arena, mark); return CP_ERR; }
            memset(d, 0, (size_t)(e->W * C) * sizeof *d);
            cp_layernorm_backward(s->rel_ln, d, e->d_rel, e->rel_in, e->rel_mean, e->rel_rstd, e->W);
            d_in = d;
        }
        float *g = s->rel_embeddings->weight->grad; // (2·span_max, C): the rows read get their gradient
        if (g) cp_add_inplace(g + e->first_row * C, d_in, e->W * C);
    }
    cp_arena_release(run->arena, mark);
    return st;
}

/* ---- blocks ------------------------------------------------------------------------------------- */

/* What one block keeps for its backward (training), or scratch (inference). */
typedef struct {
    float *qkv;                 // (3,N,C) q, k, v planes
    float *pk, *pq;             // (W,C) the c2p / p2c projections of pos_dropout(rel), or NULL
    float *probs;               // (B,NH,T,T) attention probabilities; NULL in inference
    float *att;                 // (N,C) attention output: the input of attention.output.dense
    float *r1, *m1, *s1;        // (N,C) the residual sum into LayerNorm_attn; (N) its statistics
    float *x1;                  // (N,C) LayerNorm_attn output
    float *f_pre, *f;           // (N,I) intermediate.dense output, its activation
    float *r2, *m2, *s2;        // (N,C) the residual sum into LayerNorm_out; (N) its statistics
} deberta_acts;

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    int64_t first, span;
    const size_t W = (size_t)rel_rows(m, b->T, &first, &span);
    const int c2p = W && ((const cp_deberta_state *)m->arch_state)->layers[0].pos_key != NULL;
    const int p2c = W && ((const cp_deberta_state *)m->arch_state)->layers[0].pos_query != NULL;
    deberta_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->qkv = cp_arena_floats(ar, 3 * N * C, "q, k, v");
    a->pk = c2p ? cp_arena_floats(ar, W * C, "c2p position keys") : NULL;
    a->pq = p2c ? cp_arena_floats(ar, W * C, "p2c position queries") : NULL;
    a->probs = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * Tk), "attention probabilities") : NULL;
    a->att = cp_arena_floats(ar, N * C, "attention output");
    a->r1 = cp_arena_floats(ar, N * C, "attention residual");
    a->m1 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->s1 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->x1 = cp_arena_floats(ar, N * C, "attention LayerNorm output");
    a->f_pre = training ? cp_arena_floats(ar, N * I, "intermediate pre-activation") : NULL;
    a->f = cp_arena_floats(ar, N * I, "intermediate activation");
    a->r2 = cp_arena_floats(ar, N * C, "output residual");
    a->m2 = cp_arena_floats(ar, N, "LayerNorm statistics");
    a->s2 = cp_arena_floats(ar, N, "LayerNorm statistics");
    if (!a->qkv || (c2p && !a->pk) || (p2c && !a->pq) || !a->att || !a->r1 || !a->m1 || !a->s1 || !a->x1 || !a->f || !a->r2 ||
        !a->m2 || !a->s2 || (training && (!a->probs || !a->f_pre)))
        return CP_ERR;
    return CP_OK;
}

static cp_disentangled_args attention_args(const cp_model *m, const cp_run *run, const cp_deberta_layer *ly, const cp_batch *b,
                                           const deberta_emb *e, const deberta_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size;
    const int64_t scale_factor = c->deberta.version == 1 ? 1 + c->deberta.n_pos_att_type : 1 + c->deberta.c2p + c->deberta.p2c;
    cp_disentangled_args at = {.version = c->deberta.version == 1 ? CP_DEBERTA_V1 : CP_DEBERTA_V2,
                               .B = b->B, .T = b->T, .NH = c->num_heads, .hs = c->head_dim,
                               .q = a->qkv, .k = a->qkv + N * C, .v = a->qkv + 2 * N * C, .q_stride = C, .k_stride = C, .v_stride = C,
                               .pos_key = a->pk, .pos_query = a->pq, .pos_key_stride = C, .pos_query_stride = C,
                               .span = e->span, .rel_pos = e->rel_pos, .scale_factor = scale_factor,
                               .key_mask = b->attention_mask, .out = a->att, .probs = a->probs,
                               .dropout = cp_run_dropout(run, ly->attn_drop)};
    return at;
}

/* The rel rows (W,C) layer ly's position projections read: pos_dropout(rel) in scratch from the arena
 * when it applies (mask row: the row of rel_embeddings), else rel itself. NULL on failure. */
static const float *layer_rel(const cp_run *run, const cp_deberta_layer *ly, const deberta_emb *e, int64_t C) {
    const cp_dropout d = cp_dropout_unbatched(cp_run_dropout(run, ly->pos_drop)); /* rows of rel_embeddings, not the batch's */
    if (!cp_dropout_on(&d)) return e->rel;
    float *r = cp_arena_floats(run->arena, (size_t)(e->W * C), "dropped relative embeddings"); // (W,C)
    if (r) cp_dropout_apply(&d, r, e->rel, e->first_row, e->W, C);
    return r;
}

/* v1: q, k, v (N,C) planes from in_proj's output qp (N,3C), whose columns are per head [q_h | k_h | v_h]
 * (transpose_for_scores(qp).chunk(3, dim=-1)); q + q_bias, v + v_bias. */
static void split_in_proj(const cp_deberta_layer *ly, float *qkv, const float *qp, int64_t N, int64_t NH, int64_t hs) {
    const int64_t C = NH * hs;
    const float *qb = ly->self->weight->data, *vb = ly->self->bias->data; // q_bias, v_bias (C)
    float *q = qkv, *k = qkv + N * C, *v = qkv + 2 * N * C;
    for (int64_t i = 0; i < N; i++)
        for (int64_t h = 0; h < NH; h++) {
            const float *src = qp + i * 3 * C + h * 3 * hs;
            for (int64_t d = 0; d < hs; d++) {
                const int64_t o = i * C + h * hs + d;
                q[o] = src[d] + qb[h * hs + d];
                k[o] = src[hs + d];
                v[o] = src[2 * hs + d] + vb[h * hs + d];
            }
        }
}

/* Backward of split_in_proj: dqp (N,3C) from dq, dk, dv; the q_bias / v_bias gradients when they train. */
static void join_in_proj(const cp_deberta_layer *ly, float *dqp, const float *dqkv, int64_t N, int64_t NH, int64_t hs) {
    const int64_t C = NH * hs;
    const float *dq = dqkv, *dk = dqkv + N * C, *dv = dqkv + 2 * N * C;
    float *gq = ly->self->weight->grad, *gv = ly->self->bias->grad;
    for (int64_t i = 0; i < N; i++)
        for (int64_t h = 0; h < NH; h++) {
            float *dst = dqp + i * 3 * C + h * 3 * hs;
            for (int64_t d = 0; d < hs; d++) {
                const int64_t o = i * C + h * hs + d;
                dst[d] = dq[o];
                dst[hs + d] = dk[o];
                dst[2 * hs + d] = dv[o];
                if (gq) gq[h * hs + d] += dq[o];
                if (gv) gv[h * hs + d] += dv[o];
            }
        }
}

static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const deberta_emb *e, float *x,
                                    deberta_acts *a) {
    const cp_deberta_layer *ly = &((const cp_deberta_state *)m->arch_state)->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    // q, k, v
    if (ly->in_proj) {
        float *qp = cp_arena_floats(run->arena, (size_t)(N * 3 * C), "in_proj output"); // (N,3C)
        if (!qp || cp_proj_forward(run, ly->in_proj, qp, x, N) != CP_OK) return CP_ERR;
        split_in_proj(ly, a->qkv, qp, N, c->num_heads, c->head_dim);
    } else if (cp_proj_forward(run, ly->query, a->qkv, x, N) != CP_OK || cp_proj_forward(run, ly->key, a->qkv + N * C, x, N) != CP_OK ||
               cp_proj_forward(run, ly->value, a->qkv + 2 * N * C, x, N) != CP_OK) {
        return CP_ERR;
    }
    // the position projections of pos_dropout(rel) (W,C): c2p keys, p2c queries
    const float *rel = a->pk || a->pq ? layer_rel(run, ly, e, C) : NULL;
    if ((a->pk || a->pq) && !rel) return CP_ERR;
    cp_run rel_run = *run; /* rows of rel_embeddings, not the batch's: a LoRA dropout there is keyed as it is */
    rel_run.batch_rows = 0;
    if (a->pk && cp_proj_forward(&rel_run, ly->pos_key, a->pk, rel, e->W) != CP_OK) return CP_ERR;
    if (a->pq && cp_proj_forward(&rel_run, ly->pos_query, a->pq, rel, e->W) != CP_OK) return CP_ERR;
    cp_disentangled_args at = attention_args(m, run, ly, b, e, a);
    if (cp_disentangled_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    // r1 = drop(attention.output.dense(att)) + x; x1 = LayerNorm_attn(r1)
    const cp_dropout d1 = cp_run_dropout(run, ly->attn_out_drop), d2 = cp_run_dropout(run, ly->out_drop);
    if (cp_proj_forward(run, ly->attn_out, a->r1, a->att, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&d1, a->r1, a->r1, 0, N, C);
    cp_add_inplace(a->r1, x, N * C);
    cp_layernorm_forward(ly->ln_attn, a->x1, a->m1, a->s1, a->r1, N);
    // r2 = drop(output.dense(act(intermediate.dense(x1)))) + x1; x = LayerNorm_out(r2)
    float *pre = a->f_pre ? a->f_pre : a->f;
    if (cp_proj_forward(run, ly->inter, pre, a->x1, N) != CP_OK) return CP_ERR;
    cp_activation_forward(c->activation, a->f, pre, N * I);
    if (cp_proj_forward(run, ly->out, a->r2, a->f, N) != CP_OK) return CP_ERR;
    cp_dropout_apply(&d2, a->r2, a->r2, 0, N, C);
    cp_add_inplace(a->r2, a->x1, N * C);
    cp_layernorm_forward(ly->ln_out, x, a->m2, a->s2, a->r2, N);
    return CP_OK;
}

/* padding rows of rows (N,C) set to zero: masked_fill((1 - input_mask).bool(), 0) */
static void zero_padding(float *rows, const int64_t *mask, int64_t N, int64_t C) {
    for (int64_t i = 0; mask && i < N; i++)
        if (mask[i] != 1) memset(rows + i * C, 0, (size_t)C * sizeof *rows);
}

/* The v2 ConvLayer after layer 0: x (N,C) holds the layer's output y and becomes
 * LayerNorm_conv(y + conv_act(drop(Conv1d(x0) · mask))) · mask, x0 the layer's input. */
static cp_status conv_forward(cp_model *m, const cp_run *run, const cp_batch *b, const deberta_emb *e, const float *x0, float *x) {
    const cp_deberta_state *s = m->arch_state;
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    const cp_dropout d = cp_run_dropout(run, s->conv_drop);
    if (cp_conv1d_forward(s->conv, e->conv_c, x0, b->B, b->T, run->arena) != CP_OK) return CP_ERR;
    zero_padding(e->conv_c, b->attention_mask, N, C);
    cp_dropout_apply(&d, e->conv_c, e->conv_c, 0, N, C); // conv_c keeps the dropped values: the activation's input
    cp_activation_forward(m->config.deberta.conv_act, e->conv_r, e->conv_c, N * C);
    cp_add_inplace(e->conv_r, x, N * C);
    cp_layernorm_forward(s->conv_ln, x, e->conv_mean, e->conv_rstd, e->conv_r, N);
    apply_mask(x, b->attention_mask, N, C);
    return CP_OK;
}

/* Backward of conv_forward: dx (N,C) holds d(ConvLayer output) and becomes d y; *d_x0 (N,C), when
 * non-NULL, receives the Conv1d's input gradient (the caller adds it to layer 0's input gradient). */
static cp_status conv_backward(cp_model *m, const cp_run *run, const cp_batch *b, const deberta_emb *e, const float *x0, float *dx,
                               float *d_x0) {
    const cp_deberta_state *s = m->arch_state;
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    float *d = cp_arena_floats(run->arena, (size_t)(N * C), "convolution gradients");  // (N,C)
    if (!d) return CP_ERR;
    // x = LayerNorm_conv(r) · mask, r = y + conv_act(c): dx = d r = d y, d = d c
    apply_mask(dx, b->attention_mask, N, C);
    memset(d, 0, (size_t)(N * C) * sizeof *d);
    cp_layernorm_backward(s->conv_ln, d, dx, e->conv_r, e->conv_mean, e->conv_rstd, N);
    memcpy(dx, d, (size_t)(N * C) * sizeof *dx);
    cp_activation_backward(m->config.deberta.conv_act, d, d, e->conv_c, N * C);
    const cp_dropout drop = cp_run_dropout(run, s->conv_drop);
    cp_dropout_apply(&drop, d, d, 0, N, C);   // c = drop(·): the same mask
    zero_padding(d, b->attention_mask, N, C); // masked_fill passes nothing back to the padding rows
    if (d_x0) memset(d_x0, 0, (size_t)(N * C) * sizeof *d_x0);
    return cp_conv1d_backward(s->conv, d_x0, d, x0, b->B, b->T, run->arena);
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    if (kv) return cp_error("%s: an encoder has no KV cache", m->config.model_type);
    const int conv = l == 0 && ((const cp_deberta_state *)m->arch_state)->conv;
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    float *x0 = conv ? cp_arena_floats(run->arena, (size_t)(N * C), "layer 0 input") : NULL; // (N,C)
    cp_status st = conv && !x0 ? CP_ERR : CP_OK;
    if (x0) memcpy(x0, x, (size_t)(N * C) * sizeof *x0);
    if (st == CP_OK) st = block_forward_impl(m, run, l, b, emb, x, acts);
    if (st == CP_OK && conv) st = conv_forward(m, run, b, emb, x0, x);
    cp_arena_release(run->arena, mark);
    return st;
}

/* dx (N,C): the gradient of the block output in, of its input x_in out (when need_dx). */
static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    const cp_deberta_layer *ly = &((const cp_deberta_state *)m->arch_state)->layers[l];
    const deberta_emb *e = emb;
    const deberta_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    cp_arena *ar = run->arena;
    // layer 0 with the v2 ConvLayer after it: dx becomes the gradient of the layer's output
    float *d_x0 = l == 0 && ((const cp_deberta_state *)m->arch_state)->conv && need_dx
                      ? cp_arena_floats(ar, (size_t)(N * C), "convolution input gradients") : NULL; // (N,C)
    if (l == 0 && ((const cp_deberta_state *)m->arch_state)->conv &&
        ((need_dx && !d_x0) || conv_backward(m, run, b, e, x_in, dx, d_x0) != CP_OK))
        return CP_ERR;
    float *d_big = cp_arena_floats(ar, (size_t)(N * (I > 3 * C ? I : 3 * C)), "block gradients"); // (N,I) / (3,N,C)
    float *g = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                          // (N,C)
    float *d_att = cp_arena_floats(ar, (size_t)(N * C), "block gradients");                      // (N,C)
    if (!d_big || !g || !d_att) return CP_ERR;

    const cp_dropout d1 = cp_run_dropout(run, ly->attn_out_drop), d2 = cp_run_dropout(run, ly->out_drop);
    // x = LayerNorm_out(r2), r2 = drop(output.dense(f)) + x1: g = d r2 (also the residual part of d x1)
    memset(g, 0, (size_t)(N * C) * sizeof *g);
    cp_layernorm_backward(ly->ln_out, g, dx, a->r2, a->m2, a->s2, N);
    memset(d_big, 0, (size_t)(N * I) * sizeof *d_big);
    const float *g_out = g; // d output.dense = the mask · g (d_att is free until the attention)
    if (cp_dropout_on(&d2)) {
        cp_dropout_apply(&d2, d_att, g, 0, N, C);
        g_out = d_att;
    }
    if (cp_proj_backward(run, ly->out, d_big, g_out, a->f, N) != CP_OK) return CP_ERR;   // d f
    cp_activation_backward(c->activation, d_big, d_big, a->f_pre, N * I);              // d f_pre
    if (cp_proj_backward(run, ly->inter, g, d_big, a->x1, N) != CP_OK) return CP_ERR; // g = d x1
    // x1 = LayerNorm_attn(r1), r1 = drop(attention.output.dense(att)) + x_in: dx = d r1 (the residual part of d x_in)
    memset(dx, 0, (size_t)(N * C) * sizeof *dx);
    cp_layernorm_backward(ly->ln_attn, dx, g, a->r1, a->m1, a->s1, N);
    memset(d_att, 0, (size_t)(N * C) * sizeof *d_att);
    const float *g_attn = dx; // d attention.output.dense = the mask · dx (g is free now)
    if (cp_dropout_on(&d1)) {
        cp_dropout_apply(&d1, g, dx, 0, N, C);
        g_attn = g;
    }
    if (cp_proj_backward(run, ly->attn_out, d_att, g_attn, a->att, N) != CP_OK) return CP_ERR; // d att
    // the attention: dq, dk, dv, and the position projections' gradients when rel or their projection trains
    const int want_pk = a->pk && (e->d_rel || cp_module_trains(ly->pos_key));
    const int want_pq = a->pq && (e->d_rel || cp_module_trains(ly->pos_query));
    float *dpk = want_pk ? cp_arena_floats(ar, (size_t)(e->W * C), "c2p position key gradients") : NULL;     // (W,C)
    float *dpq = want_pq ? cp_arena_floats(ar, (size_t)(e->W * C), "p2c position query gradients") : NULL;   // (W,C)
    if ((want_pk && !dpk) || (want_pq && !dpq)) return CP_ERR;
    cp_disentangled_args at = attention_args(m, run, ly, b, e, a);
    float *dq = d_big, *dk = d_big + N * C, *dv = d_big + 2 * N * C;
    if (cp_disentangled_attention_backward(&at, d_att, dq, dk, dv, dpk, dpq, ar) != CP_OK) return CP_ERR;
    float *dxin = need_dx ? dx : NULL; // dx += the projections' input gradients
    if (ly->in_proj) {
        float *dqp = cp_arena_floats(ar, (size_t)(N * 3 * C), "in_proj gradients"); // (N,3C)
        if (!dqp) return CP_ERR;
        join_in_proj(ly, dqp, d_big, N, c->num_heads, c->head_dim);
        if (cp_proj_backward(run, ly->in_proj, dxin, dqp, x_in, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->query, dxin, dq, x_in, N) != CP_OK || cp_proj_backward(run, ly->key, dxin, dk, x_in, N) != CP_OK ||
               cp_proj_backward(run, ly->value, dxin, dv, x_in, N) != CP_OK) {
        return CP_ERR;
    }
    // pk = pos_key(r), pq = pos_query(r), r = pos_dropout(rel): their weights' (and hooks') gradients, and
    // d rel = the mask · d r into the shared buffer
    if (dpk || dpq) {
        const cp_dropout pd = cp_run_dropout(run, ly->pos_drop);
        const float *rel = layer_rel(run, ly, e, C); // the forward's r, drawn again
        float *d_r = e->d_rel && cp_dropout_on(&pd) ? cp_arena_floats(ar, (size_t)(e->W * C), "relative embedding gradients") : e->d_rel;
        if (!rel || (e->d_rel && !d_r)) return CP_ERR;
        if (d_r != e->d_rel) memset(d_r, 0, (size_t)(e->W * C) * sizeof *d_r);
        cp_run rel_run = *run; /* as in the forward */
        rel_run.batch_rows = 0;
        if (dpk && cp_proj_backward(&rel_run, ly->pos_key, d_r, dpk, rel, e->W) != CP_OK) return CP_ERR;
        if (dpq && cp_proj_backward(&rel_run, ly->pos_query, d_r, dpq, rel, e->W) != CP_OK) return CP_ERR;
        if (d_r != e->d_rel) {
            cp_dropout_apply(&pd, d_r, d_r, e->first_row, e->W, C);
            cp_add_inplace(e->d_rel, d_r, e->W * C);
        }
    }
    if (d_x0) cp_add_inplace(dx, d_x0, N * C); // the ConvLayer read layer 0's input too
    return CP_OK;
}

const cp_block_ops cp_deberta_block_ops = {.acts_size = sizeof(deberta_acts), .embed_size = sizeof(deberta_emb),
                                           .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                           .block_forward = block_forward, .block_backward = block_backward};
