/*
 * t5_blocks.c — T5's embedding step and blocks, forward and backward side by side (t5.h).
 *
 *   embed:   x = embed_tokens[ids]                                  (N,C)  (drop: the scaffold's)
 *            bias (NH,T,Tk) = relative_attention_bias[bucket(j − (past + i))]   once per forward,
 *            bidirectional buckets in the encoder, causal ones in the decoder (nn/position_bias.h)
 *   block:   h1 = T5LN(x);  q,k,v = h1·W;  att = drop_p(softmax(q·kᵀ + bias + mask))·v
 *            x += drop(o(att))
 *            (decoder) h2 = T5LN(x);  cq = h2·Wq;  ck, cv = enc·Wk, enc·Wv   (enc: run->cross)
 *            catt = drop_p(softmax(cq·ckᵀ + encoder mask))·cv;  x += drop(co(catt))
 *            h3 = T5LN(x);  g = wi(h3) [u = wi_1(h3)];  f = drop(act(g) [⊙ u]);  x += drop(wo(f))
 *
 * The bias table's gradient: each layer's attention adds d(bias) into the embedding state's buffer
 * (only when the table trains), and the embedding backward scatters the sum into the table through
 * cp_embed_backward (hooks on the table included, as the forward's cp_embed_forward).
 */
#include "models/t5.h"
#include "kernels/vector.h"
#include "models/model.h"
#include "models/proj.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/position_bias.h"
#include "nn/rmsnorm.h"

#include <string.h>

typedef struct {
    float *rstd1, *h1;           // (N), (N,C)
    float *q, *k, *v, *att;      // (N,D), D = num_heads·d_kv
    float *stats;                // (B,NH,T,2) attention row statistics (max, exp-sum) for the fused backward; NULL in inference
    float *x_mid1;               // (N,C) after self-attention (training)
    float *rstd2, *h2, *cq, *catt; // decoder: (N), (N,C), (N,D), (N,D)
    float *ck, *cv;              // (B·Te,D)
    float *cstats;               // (B,NH,T,2) cross-attention row statistics; NULL in inference
    float *x_mid2;               // (N,C) after cross-attention (training)
    float *rstd3, *h3;           // (N), (N,C)
    float *g, *u, *f;            // (N,F): wi output, wi_1 output (gated), wo's input
} t5_acts;

typedef struct {
    int64_t T, Tk;
    int64_t *buckets; // (T,Tk)
    float *bias;      // (NH,T,Tk)
    float *d_bias;    // (NH,T,Tk) the layers' summed gradient, when the table trains; else NULL
} t5_emb;

static const t5_layer *layer_of(const cp_model *m, int dec, int64_t l) {
    return &((const t5_state *)m->arch_state)->layers[dec][l];
}

static cp_status alloc_acts_impl(const cp_model *m, int dec, void *acts, const cp_batch *b, int64_t Tk, int training,
                                 cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, D = (size_t)(c->num_heads * c->head_dim);
    const size_t F = (size_t)c->intermediate_size;
    t5_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->rstd1 = cp_arena_floats(ar, N, "norm statistics");
    a->h1 = cp_arena_floats(ar, N * C, "layer_norm output");
    a->q = cp_arena_floats(ar, N * D, "queries");
    a->k = cp_arena_floats(ar, N * D, "keys");
    a->v = cp_arena_floats(ar, N * D, "values");
    a->att = cp_arena_floats(ar, N * D, "attention output");
    a->stats = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "attention row statistics") : NULL;
    a->x_mid1 = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->rstd3 = cp_arena_floats(ar, N, "norm statistics");
    a->h3 = cp_arena_floats(ar, N * C, "layer_norm output");
    a->g = cp_arena_floats(ar, N * F, "wi output");
    a->u = c->t5.gated ? cp_arena_floats(ar, N * F, "wi_1 output") : NULL;
    a->f = cp_arena_floats(ar, N * F, "wo input");
    if (!a->rstd1 || !a->h1 || !a->q || !a->k || !a->v || !a->att || !a->rstd3 || !a->h3 || !a->g || !a->f ||
        (c->t5.gated && !a->u) || (training && (!a->stats || !a->x_mid1)))
        return CP_ERR;
    if (!dec) return CP_OK;
    a->rstd2 = cp_arena_floats(ar, N, "norm statistics");
    a->h2 = cp_arena_floats(ar, N * C, "layer_norm output");
    a->cq = cp_arena_floats(ar, N * D, "cross-attention queries");
    a->catt = cp_arena_floats(ar, N * D, "cross-attention output");
    a->x_mid2 = training ? cp_arena_floats(ar, N * C, "cross-attention residual") : NULL;
    if (!a->rstd2 || !a->h2 || !a->cq || !a->catt || (training && !a->x_mid2)) return CP_ERR;
    return CP_OK;
}

static cp_status enc_alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    return alloc_acts_impl(m, 0, acts, b, Tk, training, ar);
}
static cp_status dec_alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    return alloc_acts_impl(m, 1, acts, b, Tk, training, ar);
}

/* The cross-attention's keys, values and probabilities, sized by the encoder's length Te. */
static cp_status dec_alloc_cross(const cp_model *m, void *acts, const cp_batch *b, int64_t Te, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t D = (size_t)(c->num_heads * c->head_dim);
    t5_acts *a = acts;
    a->ck = cp_arena_floats(ar, (size_t)(b->B * Te) * D, "cross-attention keys");
    a->cv = cp_arena_floats(ar, (size_t)(b->B * Te) * D, "cross-attention values");
    a->cstats = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "cross-attention row statistics") : NULL;
    return a->ck && a->cv && (!training || a->cstats) ? CP_OK : CP_ERR;
}

/* ---- embeddings and the position bias ----------------------------------------------------------- */

static cp_status embed_impl(cp_model *m, int dec, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x,
                            t5_emb *e) {
    const t5_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t NH = c->num_heads, T = b->T, Tk = ea->past + T;
    if (cp_embed_tokens(run, s->embed[dec], b, ea, x) != CP_OK) return CP_ERR;
    e->T = T;
    e->Tk = Tk;
    e->buckets = cp_arena_alloc(run->arena, (size_t)(T * Tk) * sizeof *e->buckets, "position buckets");
    e->bias = cp_arena_floats(run->arena, (size_t)(NH * T * Tk), "position bias");
    float *rows = cp_arena_floats(run->arena, (size_t)(T * Tk * NH), "position bias rows"); // (T·Tk,NH)
    if (!e->buckets || !e->bias || !rows) return CP_ERR;
    if (cp_t5_position_buckets(e->buckets, T, Tk, ea->past, !dec, c->t5.num_buckets, c->t5.max_distance) != CP_OK) return CP_ERR;
    // bias[h,i,j] = table[bucket(i,j), h]: the table's rows through its module (and hooks), then (NH,T,Tk)
    if (cp_embed_forward(run, s->rel_bias[dec], rows, e->buckets, T * Tk, 0) != CP_OK) return CP_ERR;
    for (int64_t n = 0; n < T * Tk; n++)
        for (int64_t h = 0; h < NH; h++) e->bias[h * T * Tk + n] = rows[n * NH + h];
    e->d_bias = NULL;
    if (cp_module_trains(s->rel_bias[dec])) { /* a backward may follow (its gradient is the layers' sum) */
        if (!(e->d_bias = cp_arena_floats(run->arena, (size_t)(NH * T * Tk), "position bias gradients"))) return CP_ERR;
        memset(e->d_bias, 0, (size_t)(NH * T * Tk) * sizeof *e->d_bias);
    }
    return CP_OK;
}

static cp_status embed_backward_impl(cp_model *m, int dec, const cp_run *run, const cp_batch *b, const cp_embed_args *ea,
                                     const float *dx, const t5_emb *e) {
    const t5_state *s = m->arch_state;
    const int64_t NH = m->config.num_heads, n = e->T * e->Tk;
    if ((cp_module_trains(s->embed[dec]) || ea->n_virtual) && cp_embed_tokens_backward(run, s->embed[dec], b, ea, dx) != CP_OK)
        return CP_ERR;
    if (!e->d_bias) return CP_OK;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    float *rows = cp_arena_floats(run->arena, (size_t)(n * NH), "position bias row gradients"); // (T·Tk,NH)
    if (!rows) return CP_ERR;
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < NH; h++) rows[i * NH + h] = e->d_bias[h * n + i];
    cp_status st = cp_embed_backward(run, s->rel_bias[dec], rows, e->buckets, n);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status enc_embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    return embed_impl(m, 0, run, b, ea, x, emb);
}
static cp_status dec_embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    return embed_impl(m, 1, run, b, ea, x, emb);
}
static cp_status enc_embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                    const void *emb) {
    return embed_backward_impl(m, 0, run, b, ea, dx, emb);
}
static cp_status dec_embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                    const void *emb) {
    return embed_backward_impl(m, 1, run, b, ea, dx, emb);
}

/* ---- blocks ------------------------------------------------------------------------------------- */

static cp_attention_args self_args(const cp_model *m, const cp_run *run, int dec, const t5_layer *ly, const cp_batch *b,
                                   const t5_emb *e, const t5_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t D = c->num_heads * c->head_dim;
    return (cp_attention_args){.B = b->B, .T = b->T, .NH = c->num_heads, .hs = c->head_dim, .q = a->q, .k = a->k, .v = a->v,
                               .q_stride = D, .k_stride = D, .v_stride = D, .scale = 1.0f, .key_mask = b->attention_mask,
                               .empty_row = CP_ATTN_EMPTY_ALL, .out = a->att, .stats = a->stats, .bidirectional = !dec,
                               .bias = e->bias, .bias_h_stride = e->T * e->Tk, .bias_q_stride = e->Tk, .d_bias = e->d_bias,
                               .dropout = cp_run_dropout_p(run, ly->sa, "dropout", c->attn_dropout)};
}

/* The cross-attention's keys and values of layer l: the generation cache's, else the record's. */
static void cross_kv(const cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const t5_acts *a, float **k, float **v) {
    cp_cross_kv(run->cross, l, b->B * run->cross->Te * m->config.num_heads * m->config.head_dim, a->ck, a->cv, k, v);
}

static cp_attention_args cross_args(const cp_model *m, const cp_run *run, int64_t l, const t5_layer *ly, const cp_batch *b,
                                    const t5_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t D = c->num_heads * c->head_dim;
    float *k, *v;
    cross_kv(m, run, l, b, a, &k, &v);
    return (cp_attention_args){.B = b->B, .T = b->T, .NH = c->num_heads, .hs = c->head_dim, .q = a->cq, .k = k, .v = v,
                               .q_stride = D, .k_stride = D, .v_stride = D, .scale = 1.0f, .key_mask = run->cross->mask,
                               .empty_row = CP_ATTN_EMPTY_ALL, .out = a->catt, .stats = a->cstats, .bidirectional = 1,
                               .Tk = run->cross->Te, .dropout = cp_run_dropout_p(run, ly->ca, "dropout", c->attn_dropout)};
}

/* x += drop(proj(in)) for one sublayer's output projection (tmp: (N,C) scratch). */
static cp_status residual_out(const cp_run *run, const cp_module *proj, const cp_module *drop, float *x, const float *in,
                              float *tmp, int64_t N, int64_t C) {
    if (cp_proj_forward(run, proj, tmp, in, N) != CP_OK) return CP_ERR;
    const cp_dropout d = cp_run_dropout(run, drop);
    cp_dropout_apply(&d, tmp, tmp, 0, N, C);
    cp_add_inplace(x, tmp, N * C);
    return CP_OK;
}

static cp_status block_forward_impl(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const t5_emb *e,
                                    float *x, t5_acts *a, cp_kv_cache *kv) {
    const t5_layer *ly = layer_of(m, dec, l);
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, F = c->intermediate_size;
    float *tmp = cp_arena_floats(run->arena, (size_t)(N * C), "projection output"); // (N,C)
    if (!tmp) return CP_ERR;
    // self-attention
    cp_rmsnorm_forward(ly->sa_norm, a->h1, a->rstd1, x, N);
    if (cp_proj_forward(run, ly->q, a->q, a->h1, N) != CP_OK || cp_proj_forward(run, ly->k, a->k, a->h1, N) != CP_OK ||
        cp_proj_forward(run, ly->v, a->v, a->h1, N) != CP_OK)
        return CP_ERR;
    cp_attention_args at = self_args(m, run, dec, ly, b, e, a);
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (residual_out(run, ly->o, ly->sa_drop, x, a->att, tmp, N, C) != CP_OK) return CP_ERR;
    if (a->x_mid1) memcpy(a->x_mid1, x, (size_t)(N * C) * sizeof *x);
    // cross-attention on the encoder's states
    if (dec) {
        const cp_cross_states *cs = run->cross;
        if (!cs) return cp_error("%s: the decoder runs without the encoder's states", ly->ca->path);
        cp_rmsnorm_forward(ly->ca_norm, a->h2, a->rstd2, x, N);
        float *ck, *cv; /* with a generation cache, computed once on the first step */
        cross_kv(m, run, l, b, a, &ck, &cv);
        if (cp_proj_forward(run, ly->cq, a->cq, a->h2, N) != CP_OK ||
            (!cs->cached && (cp_proj_forward(run, ly->ck, ck, cs->states, b->B * cs->Te) != CP_OK ||
                             cp_proj_forward(run, ly->cv, cv, cs->states, b->B * cs->Te) != CP_OK)))
            return CP_ERR;
        cp_attention_args ct = cross_args(m, run, l, ly, b, a);
        if (cp_attention_forward(&ct, run->arena) != CP_OK) return CP_ERR;
        if (residual_out(run, ly->co, ly->ca_drop, x, a->catt, tmp, N, C) != CP_OK) return CP_ERR;
        if (a->x_mid2) memcpy(a->x_mid2, x, (size_t)(N * C) * sizeof *x);
    }
    // feed-forward: f = drop(act(wi(h3)) [⊙ wi_1(h3)])
    cp_rmsnorm_forward(ly->ff_norm, a->h3, a->rstd3, x, N);
    if (cp_proj_forward(run, ly->wi, a->g, a->h3, N) != CP_OK || (ly->wi1 && cp_proj_forward(run, ly->wi1, a->u, a->h3, N) != CP_OK))
        return CP_ERR;
    cp_activation_forward(c->activation, a->f, a->g, N * F);
    if (ly->wi1)
        for (int64_t i = 0; i < N * F; i++) a->f[i] *= a->u[i];
    const cp_dropout d = cp_run_dropout(run, ly->ff_inner_drop);
    cp_dropout_apply(&d, a->f, a->f, 0, N, F);
    return residual_out(run, ly->wo, ly->ff_drop, x, a->f, tmp, N, C);
}

static cp_status block_forward(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, dec, run, l, b, emb, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

/* d (N,C) = drop(dx): the gradient of a sublayer's output projection, the residual's dropout mask again. */
static void residual_grad(const cp_run *run, const cp_module *drop, float *d, const float *dx, int64_t N, int64_t C) {
    const cp_dropout dr = cp_run_dropout(run, drop);
    if (cp_dropout_on(&dr)) cp_dropout_apply(&dr, d, dx, 0, N, C);
    else memcpy(d, dx, (size_t)(N * C) * sizeof *d);
}

static cp_status block_backward_impl(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const t5_emb *e,
                                     const float *x_in, const t5_acts *a, float *dx, int need_dx) {
    const t5_layer *ly = layer_of(m, dec, l);
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, F = c->intermediate_size, D = c->num_heads * c->head_dim;
    const int64_t Ne = dec ? b->B * run->cross->Te : 0;
    cp_arena *ar = run->arena;
    float *dF1 = cp_arena_floats(ar, (size_t)(N * F), "FF gradients"), *dF2 = cp_arena_floats(ar, (size_t)(N * F), "FF gradients");
    float *dC = cp_arena_floats(ar, (size_t)(N * C), "block gradients"), *dh = cp_arena_floats(ar, (size_t)(N * C), "norm gradients");
    float *dD = cp_arena_floats(ar, (size_t)(N * D), "attention gradients");
    float *dq = cp_arena_floats(ar, (size_t)(N * D), "query gradients");
    float *dk = cp_arena_floats(ar, (size_t)((N > Ne ? N : Ne) * D), "key gradients");
    float *dv = cp_arena_floats(ar, (size_t)((N > Ne ? N : Ne) * D), "value gradients");
    if (!dF1 || !dF2 || !dC || !dh || !dD || !dq || !dk || !dv) return CP_ERR;

    // FF: x_out = x_mid + drop(wo(f)), f = drop_inner(act(g) [⊙ u]), g = wi(h3), h3 = T5LN(x_mid)
    const float *x_mid = dec ? a->x_mid2 : a->x_mid1;
    residual_grad(run, ly->ff_drop, dC, dx, N, C);
    memset(dF1, 0, (size_t)(N * F) * sizeof *dF1);
    if (cp_proj_backward(run, ly->wo, dF1, dC, a->f, N) != CP_OK) return CP_ERR; // d f
    const cp_dropout di = cp_run_dropout(run, ly->ff_inner_drop);
    cp_dropout_apply(&di, dF1, dF1, 0, N, F);                                     // d (act(g) [⊙ u])
    if (ly->wi1) {
        cp_activation_forward(c->activation, dF2, a->g, N * F); // act(g)
        for (int64_t i = 0; i < N * F; i++) {
            const float dp = dF1[i];
            dF1[i] = dp * a->u[i]; // d act(g)
            dF2[i] = dp * dF2[i];  // d u
        }
    }
    cp_activation_backward(c->activation, dF1, dF1, a->g, N * F); // d g
    memset(dh, 0, (size_t)(N * C) * sizeof *dh);
    if (cp_proj_backward(run, ly->wi, dh, dF1, a->h3, N) != CP_OK || (ly->wi1 && cp_proj_backward(run, ly->wi1, dh, dF2, a->h3, N) != CP_OK))
        return CP_ERR;
    cp_rmsnorm_backward(ly->ff_norm, dx, dh, x_mid, a->rstd3, N); // dx = d x_mid

    // cross-attention: x_mid2 = x_mid1 + drop(co(catt)), catt = attn(cq(h2), ck(enc), cv(enc)), h2 = T5LN(x_mid1)
    if (dec) {
        const cp_cross_states *cs = run->cross;
        residual_grad(run, ly->ca_drop, dC, dx, N, C);
        memset(dD, 0, (size_t)(N * D) * sizeof *dD);
        if (cp_proj_backward(run, ly->co, dD, dC, a->catt, N) != CP_OK) return CP_ERR;
        cp_attention_args ct = cross_args(m, run, l, ly, b, a);
        if (cp_attention_backward(&ct, dD, dq, dk, dv, ar) != CP_OK) return CP_ERR;
        memset(dh, 0, (size_t)(N * C) * sizeof *dh);
        if (cp_proj_backward(run, ly->cq, dh, dq, a->h2, N) != CP_OK ||
            cp_proj_backward(run, ly->ck, cs->d_states, dk, cs->states, Ne) != CP_OK ||
            cp_proj_backward(run, ly->cv, cs->d_states, dv, cs->states, Ne) != CP_OK)
            return CP_ERR;
        cp_rmsnorm_backward(ly->ca_norm, dx, dh, a->x_mid1, a->rstd2, N); // dx = d x_mid1
    }

    // self-attention: x_mid1 = x_in + drop(o(att)), att = attn(q, k, v; bias), q,k,v = h1·W, h1 = T5LN(x_in)
    residual_grad(run, ly->sa_drop, dC, dx, N, C);
    memset(dD, 0, (size_t)(N * D) * sizeof *dD);
    if (cp_proj_backward(run, ly->o, dD, dC, a->att, N) != CP_OK) return CP_ERR;
    cp_attention_args at = self_args(m, run, dec, ly, b, e, a);
    if (cp_stack_attention_backward(run, l, &at, dD, dq, dk, dv) != CP_OK) return CP_ERR;
    const int need_dh1 = need_dx || cp_module_trains(ly->sa_norm);
    float *dh1 = need_dh1 ? dh : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (cp_proj_backward(run, ly->q, dh1, dq, a->h1, N) != CP_OK || cp_proj_backward(run, ly->k, dh1, dk, a->h1, N) != CP_OK ||
        cp_proj_backward(run, ly->v, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    if (dh1) cp_rmsnorm_backward(ly->sa_norm, need_dx ? dx : NULL, dh1, x_in, a->rstd1, N);
    return CP_OK;
}

static cp_status block_backward(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_backward_impl(m, dec, run, l, b, emb, x_in, acts, dx, need_dx);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status enc_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                                   void *acts, cp_kv_cache *kv) {
    return block_forward(m, 0, run, l, b, emb, x, acts, kv);
}
static cp_status dec_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                                   void *acts, cp_kv_cache *kv) {
    return block_forward(m, 1, run, l, b, emb, x, acts, kv);
}
static cp_status enc_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                    const float *x_in, const void *acts, float *dx, int need_dx) {
    return block_backward(m, 0, run, l, b, emb, x_in, acts, dx, need_dx);
}
static cp_status dec_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                    const float *x_in, const void *acts, float *dx, int need_dx) {
    return block_backward(m, 1, run, l, b, emb, x_in, acts, dx, need_dx);
}

const cp_block_ops cp_t5_encoder_ops = {.acts_size = sizeof(t5_acts), .embed_size = sizeof(t5_emb), .alloc_acts = enc_alloc_acts,
                                        .embed = enc_embed, .embed_backward = enc_embed_backward,
                                        .block_forward = enc_block_forward, .block_backward = enc_block_backward};
const cp_block_ops cp_t5_decoder_ops = {.acts_size = sizeof(t5_acts), .embed_size = sizeof(t5_emb), .alloc_acts = dec_alloc_acts,
                                        .alloc_cross = dec_alloc_cross, .embed = dec_embed, .embed_backward = dec_embed_backward,
                                        .block_forward = dec_block_forward, .block_backward = dec_block_backward};
