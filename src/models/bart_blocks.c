/*
 * bart_blocks.c — BART's embedding step and layers, forward and backward side by side (bart.h).
 *
 *   embed:  pre = embed_tokens[ids]·s + embed_positions[past + t + 2]      (N,C)
 *           x = drop(LN_emb(pre))                                        (the stack's `dropout` site)
 *   layer:  q,k,v = x·W + b;  att = drop_a(softmax(q·kᵀ·hs^-0.5 + mask))·v
 *           r1 = x + drop(out_proj(att));  x1 = LN_sa(r1)
 *           (decoder) cq = x1·Wq;  ck, cv = enc·Wk, enc·Wv   (enc: run->cross)
 *           r2 = x1 + drop(out_proj(catt));  x2 = LN_ca(r2)
 *           g = fc1(xf);  f = drop_act(act(g));  r3 = xf + drop(fc2(f));  x = LN_ff(r3)   (xf: x1 or x2)
 *
 * Dropout sites (nn.functional.dropout, no modules): `<stack>.dropout` on the embeddings,
 * `<attention>.dropout` on its probabilities, `<layer>.dropout`, `.dropout_cross`, `.dropout_ff` on the
 * three sublayer outputs and `<layer>.activation_dropout` in the FF.
 */
#include "models/bart.h"
#include "kernels/vector.h"
#include "models/model.h"
#include "models/proj.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/layernorm.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *q, *k, *v, *att;          // (N,C)
    float *stats;                    // (B,NH,T,2) attention row statistics (max, exp-sum) for the fused backward; NULL in inference
    float *r1, *m1, *s1, *x1;        // (N,C) residual sum, (N) LN statistics, (N,C) LN output
    float *cq, *catt, *ck, *cv;      // decoder: (N,C), (N,C), (B·Te,C), (B·Te,C)
    float *cstats;                   // (B,NH,T,2) cross-attention row statistics; NULL in inference
    float *r2, *m2, *s2, *x2;        // decoder: the cross-attention's residual sum, LN statistics, output
    float *g, *f;                    // (N,F) fc1 output, fc2 input (act and dropout applied)
    float *r3, *m3, *s3;             // (N,C) the FF's residual sum, (N) LN statistics
} bart_acts;

typedef struct {
    int64_t *pos;            // (N) rows of embed_positions
    float *pre, *mean, *rstd; // (N,C) the sum into layernorm_embedding, (N) its statistics
} bart_emb;

static const bart_state *state(const cp_model *m) { return m->arch_state; }

static void scale_inplace(float *x, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

static cp_status alloc_acts_impl(const cp_model *m, int dec, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const bart_state *s = state(m);
    const size_t N = (size_t)(b->B * b->T), C = (size_t)m->config.hidden_size, F = (size_t)s->ffn[dec];
    bart_acts *a = acts;
    memset(a, 0, sizeof *a);
    float **nc[] = {&a->q, &a->k, &a->v, &a->att, &a->r1, &a->x1, &a->r3};
    for (size_t i = 0; i < sizeof nc / sizeof *nc; i++)
        if (!(*nc[i] = cp_arena_floats(ar, N * C, "BART layer activations"))) return CP_ERR;
    float **n1[] = {&a->m1, &a->s1, &a->m3, &a->s3};
    for (size_t i = 0; i < sizeof n1 / sizeof *n1; i++)
        if (!(*n1[i] = cp_arena_floats(ar, N, "LayerNorm statistics"))) return CP_ERR;
    if (!(a->g = cp_arena_floats(ar, N * F, "fc1 output")) || !(a->f = cp_arena_floats(ar, N * F, "fc2 input"))) return CP_ERR;
    if (training && !(a->stats = cp_arena_floats(ar, (size_t)(b->B * s->heads[dec] * b->T * 2), "attention row statistics")))
        return CP_ERR;
    if (!dec) return CP_OK;
    if (!(a->cq = cp_arena_floats(ar, N * C, "cross-attention queries")) || !(a->catt = cp_arena_floats(ar, N * C, "cross-attention output")) ||
        !(a->r2 = cp_arena_floats(ar, N * C, "cross-attention residual")) || !(a->x2 = cp_arena_floats(ar, N * C, "cross-attention LN output")) ||
        !(a->m2 = cp_arena_floats(ar, N, "LayerNorm statistics")) || !(a->s2 = cp_arena_floats(ar, N, "LayerNorm statistics")))
        return CP_ERR;
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
    const size_t C = (size_t)m->config.hidden_size;
    bart_acts *a = acts;
    a->ck = cp_arena_floats(ar, (size_t)(b->B * Te) * C, "cross-attention keys");
    a->cv = cp_arena_floats(ar, (size_t)(b->B * Te) * C, "cross-attention values");
    a->cstats = training ? cp_arena_floats(ar, (size_t)(b->B * state(m)->heads[1] * b->T * 2), "cross-attention row statistics")
                         : NULL;
    return a->ck && a->cv && (!training || a->cstats) ? CP_OK : CP_ERR;
}

/* ---- embeddings --------------------------------------------------------------------------------- */

static cp_dropout embed_dropout(const cp_model *m, const cp_run *run, int dec) {
    return cp_run_dropout_p(run, state(m)->stack[dec], "dropout", m->config.hidden_dropout);
}

static cp_status embed_impl(cp_model *m, int dec, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x,
                            bart_emb *e) {
    const bart_state *s = state(m);
    const int64_t N = b->B * b->T, C = m->config.hidden_size, P = m->config.max_positions;
    if (ea->past + b->T > P)
        return cp_error("batch: %s positions up to %lld, but max_position_embeddings is %lld", dec ? "decoder" : "encoder",
                        (long long)(ea->past + b->T), (long long)P);
    e->pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *e->pos, "position ids");
    e->pre = cp_arena_floats(run->arena, (size_t)(N * C), "embedding sum");
    e->mean = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    e->rstd = cp_arena_floats(run->arena, (size_t)N, "embedding LayerNorm statistics");
    if (!e->pos || !e->pre || !e->mean || !e->rstd) return CP_ERR;
    for (int64_t i = 0; i < N; i++) e->pos[i] = ea->past + i % b->T + CP_BART_POSITION_OFFSET;
    // pre = embed_tokens(ids)·s + embed_positions(pos): torch multiplies the f32 rows by the float scale
    if (cp_embed_tokens(run, s->embed[dec], b, ea, e->pre) != CP_OK) return CP_ERR;
    if (s->embed_scale != 1.0f) scale_inplace(e->pre, s->embed_scale, N * C);
    if (cp_embed_forward(run, s->positions[dec], e->pre, e->pos, N, 1) != CP_OK) return cp_error_context("positions");
    cp_layernorm_forward(s->ln_emb[dec], x, e->mean, e->rstd, e->pre, N);
    const cp_dropout d = embed_dropout(m, run, dec);
    cp_dropout_apply(&d, x, x, 0, N, C);
    return CP_OK;
}

static cp_status embed_backward_impl(cp_model *m, int dec, const cp_run *run, const cp_batch *b, const cp_embed_args *ea,
                                     const float *dx, const bart_emb *e) {
    const bart_state *s = state(m);
    const int64_t N = b->B * b->T, C = m->config.hidden_size;
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    float *d = cp_arena_floats(run->arena, (size_t)(N * C), "embedding gradients");    // (N,C) d LN output
    float *dpre = cp_arena_floats(run->arena, (size_t)(N * C), "embedding gradients"); // (N,C) d pre
    if (!d || !dpre) return CP_ERR;
    const cp_dropout dr = embed_dropout(m, run, dec);
    cp_dropout_apply(&dr, d, dx, 0, N, C);
    memset(dpre, 0, (size_t)(N * C) * sizeof *dpre);
    cp_layernorm_backward(s->ln_emb[dec], dpre, d, e->pre, e->mean, e->rstd, N);
    cp_status st = CP_OK;
    if (cp_module_trains(s->positions[dec])) st = cp_embed_backward(run, s->positions[dec], dpre, e->pos, N);
    if (st == CP_OK && (cp_module_trains(s->embed[dec]) || ea->n_virtual)) {
        if (s->embed_scale != 1.0f) scale_inplace(dpre, s->embed_scale, N * C); // d rows = s · d pre
        st = cp_embed_tokens_backward(run, s->embed[dec], b, ea, dpre);
    }
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

/* ---- layers ------------------------------------------------------------------------------------- */

static const bart_layer *layer_of(const cp_model *m, int dec, int64_t l) { return &state(m)->layers[dec][l]; }

static cp_attention_args self_args(const cp_model *m, const cp_run *run, int dec, const bart_layer *ly, const cp_batch *b,
                                   const bart_acts *a) {
    const int64_t C = m->config.hidden_size, NH = state(m)->heads[dec], hs = C / NH;
    return (cp_attention_args){.B = b->B, .T = b->T, .NH = NH, .hs = hs, .q = a->q, .k = a->k, .v = a->v, .q_stride = C,
                               .k_stride = C, .v_stride = C, .scale = (float)pow((double)hs, -0.5),
                               .key_mask = b->attention_mask, .empty_row = CP_ATTN_EMPTY_ALL, .out = a->att, .stats = a->stats,
                               .bidirectional = !dec, .dropout = cp_run_dropout_p(run, ly->sa, "dropout", m->config.attn_dropout)};
}

/* The cross-attention's keys and values of layer l (B·Te, C): the generation cache's, else the record's. */
static void cross_kv(const cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const bart_acts *a, float **k, float **v) {
    cp_cross_kv(run->cross, l, b->B * run->cross->Te * m->config.hidden_size, a->ck, a->cv, k, v);
}

static cp_attention_args cross_args(const cp_model *m, const cp_run *run, int64_t l, const bart_layer *ly, const cp_batch *b,
                                    const bart_acts *a) {
    const int64_t C = m->config.hidden_size, NH = state(m)->heads[1], hs = C / NH;
    float *k, *v;
    cross_kv(m, run, l, b, a, &k, &v);
    return (cp_attention_args){.B = b->B, .T = b->T, .NH = NH, .hs = hs, .q = a->cq, .k = k, .v = v, .q_stride = C,
                               .k_stride = C, .v_stride = C, .scale = (float)pow((double)hs, -0.5),
                               .key_mask = run->cross->mask, .empty_row = CP_ATTN_EMPTY_ALL, .out = a->catt,
                               .stats = a->cstats, .bidirectional = 1, .Tk = run->cross->Te,
                               .dropout = cp_run_dropout_p(run, ly->ca, "dropout", m->config.attn_dropout)};
}

/* The dropout on a sublayer's output before its residual sum (site 0: self-attention, 1: cross, 2: FF). */
static cp_dropout residual_dropout(const cp_model *m, const cp_run *run, const bart_layer *ly, int site) {
    static const char *const names[3] = {"dropout", "dropout_cross", "dropout_ff"};
    return cp_run_dropout_p(run, ly->layer, names[site], m->config.hidden_dropout);
}

/* r = x + drop(proj(in)); y = LN(r) with its statistics (y may be x). */
static cp_status residual_ln(const cp_model *m, const cp_run *run, const bart_layer *ly, int site, const cp_module *proj,
                             const cp_module *norm, const float *in, const float *x, float *r, float *mean, float *rstd, float *y,
                             int64_t N) {
    const int64_t C = m->config.hidden_size;
    if (cp_proj_forward(run, proj, r, in, N) != CP_OK) return CP_ERR;
    const cp_dropout d = residual_dropout(m, run, ly, site);
    cp_dropout_apply(&d, r, r, 0, N, C);
    cp_add_inplace(r, x, N * C);
    cp_layernorm_forward(norm, y, mean, rstd, r, N);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, float *x, void *acts,
                               cp_kv_cache *kv) {
    const bart_layer *ly = layer_of(m, dec, l);
    const int64_t N = b->B * b->T, F = state(m)->ffn[dec];
    bart_acts *a = acts;
    // self-attention: r1 = x + drop(out_proj(attn(q, k, v))); x1 = LN_sa(r1)
    if (cp_proj_forward(run, ly->q, a->q, x, N) != CP_OK || cp_proj_forward(run, ly->k, a->k, x, N) != CP_OK ||
        cp_proj_forward(run, ly->v, a->v, x, N) != CP_OK)
        return CP_ERR;
    cp_attention_args at = self_args(m, run, dec, ly, b, a);
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (residual_ln(m, run, ly, 0, ly->o, ly->sa_norm, a->att, x, a->r1, a->m1, a->s1, a->x1, N) != CP_OK) return CP_ERR;
    const float *xf = a->x1;
    // cross-attention on the encoder's states: r2 = x1 + drop(out_proj(attn(cq, ck, cv))); x2 = LN_ca(r2)
    if (dec) {
        const cp_cross_states *cs = run->cross;
        if (!cs) return cp_error("%s: the decoder runs without the encoder's states", ly->ca->path);
        float *ck, *cv; /* with a generation cache, computed once on the first step */
        cross_kv(m, run, l, b, a, &ck, &cv);
        if (cp_proj_forward(run, ly->cq, a->cq, a->x1, N) != CP_OK ||
            (!cs->cached && (cp_proj_forward(run, ly->ck, ck, cs->states, b->B * cs->Te) != CP_OK ||
                             cp_proj_forward(run, ly->cv, cv, cs->states, b->B * cs->Te) != CP_OK)))
            return CP_ERR;
        cp_attention_args ct = cross_args(m, run, l, ly, b, a);
        if (cp_attention_forward(&ct, run->arena) != CP_OK) return CP_ERR;
        if (residual_ln(m, run, ly, 1, ly->co, ly->ca_norm, a->catt, a->x1, a->r2, a->m2, a->s2, a->x2, N) != CP_OK) return CP_ERR;
        xf = a->x2;
    }
    // feed-forward: f = drop_act(act(fc1(xf))); r3 = xf + drop(fc2(f)); x = LN_ff(r3)
    if (cp_proj_forward(run, ly->fc1, a->g, xf, N) != CP_OK) return CP_ERR;
    cp_activation_forward(m->config.activation, a->f, a->g, N * F);
    const cp_dropout da = cp_run_dropout_p(run, ly->layer, "activation_dropout", m->config.bart.activation_dropout);
    cp_dropout_apply(&da, a->f, a->f, 0, N, F);
    return residual_ln(m, run, ly, 2, ly->fc2, ly->ff_norm, a->f, xf, a->r3, a->m3, a->s3, x, N);
}

/* From dy (N,C), the gradient of LN(r) with r = x_res + drop(proj(in)): d_res (N,C) = d r (zeroed first) and the
 * gradient of proj's output into d_out (N,C), the dropout's mask applied. */
static void residual_ln_backward(const cp_model *m, const cp_run *run, const bart_layer *ly, int site, const cp_module *norm,
                                 const float *dy, const float *r, const float *mean, const float *rstd, float *d_res, float *d_out,
                                 int64_t N) {
    const int64_t C = m->config.hidden_size;
    memset(d_res, 0, (size_t)(N * C) * sizeof *d_res);
    cp_layernorm_backward(norm, d_res, dy, r, mean, rstd, N);
    const cp_dropout d = residual_dropout(m, run, ly, site);
    cp_dropout_apply(&d, d_out, d_res, 0, N, C);
}

static cp_status block_backward_impl(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const float *x_in,
                                     const bart_acts *a, float *dx, int need_dx) {
    const bart_layer *ly = layer_of(m, dec, l);
    const int64_t N = b->B * b->T, C = m->config.hidden_size, F = state(m)->ffn[dec];
    const int64_t Ne = dec ? b->B * run->cross->Te : 0, Nk = N > Ne ? N : Ne;
    cp_arena *ar = run->arena;
    float *d1 = cp_arena_floats(ar, (size_t)(N * C), "block gradients"), *d2 = cp_arena_floats(ar, (size_t)(N * C), "block gradients");
    float *dout = cp_arena_floats(ar, (size_t)(N * C), "projection gradients");
    float *datt = cp_arena_floats(ar, (size_t)(N * C), "attention gradients");
    float *dq = cp_arena_floats(ar, (size_t)(N * C), "query gradients");
    float *dk = cp_arena_floats(ar, (size_t)(Nk * C), "key gradients"), *dv = cp_arena_floats(ar, (size_t)(Nk * C), "value gradients");
    float *dF = cp_arena_floats(ar, (size_t)(N * F), "FF gradients");
    if (!d1 || !d2 || !dout || !datt || !dq || !dk || !dv || !dF) return CP_ERR;

    // FF: x = LN_ff(r3), r3 = xf + drop(fc2(f)), f = drop_act(act(g)), g = fc1(xf)
    const float *xf = dec ? a->x2 : a->x1;
    residual_ln_backward(m, run, ly, 2, ly->ff_norm, dx, a->r3, a->m3, a->s3, d1, dout, N); // d1 = d r3 (xf's residual part)
    memset(dF, 0, (size_t)(N * F) * sizeof *dF);
    if (cp_proj_backward(run, ly->fc2, dF, dout, a->f, N) != CP_OK) return CP_ERR;
    const cp_dropout da = cp_run_dropout_p(run, ly->layer, "activation_dropout", m->config.bart.activation_dropout);
    cp_dropout_apply(&da, dF, dF, 0, N, F);
    cp_activation_backward(m->config.activation, dF, dF, a->g, N * F); // d g
    if (cp_proj_backward(run, ly->fc1, d1, dF, xf, N) != CP_OK) return CP_ERR; // d1 = d xf

    // cross-attention: x2 = LN_ca(r2), r2 = x1 + drop(out_proj(catt)), catt = attn(cq(x1), ck(enc), cv(enc))
    if (dec) {
        const cp_cross_states *cs = run->cross;
        residual_ln_backward(m, run, ly, 1, ly->ca_norm, d1, a->r2, a->m2, a->s2, d2, dout, N); // d2 = d r2
        memset(datt, 0, (size_t)(N * C) * sizeof *datt);
        if (cp_proj_backward(run, ly->co, datt, dout, a->catt, N) != CP_OK) return CP_ERR;
        cp_attention_args ct = cross_args(m, run, l, ly, b, a);
        if (cp_attention_backward(&ct, datt, dq, dk, dv, ar) != CP_OK) return CP_ERR;
        if (cp_proj_backward(run, ly->cq, d2, dq, a->x1, N) != CP_OK ||
            cp_proj_backward(run, ly->ck, cs->d_states, dk, cs->states, Ne) != CP_OK ||
            cp_proj_backward(run, ly->cv, cs->d_states, dv, cs->states, Ne) != CP_OK)
            return CP_ERR;
        float *t = d1; // d x1 is in d2 now
        d1 = d2;
        d2 = t;
    }

    // self-attention: x1 = LN_sa(r1), r1 = x_in + drop(out_proj(att)), att = attn(q, k, v) of x_in
    residual_ln_backward(m, run, ly, 0, ly->sa_norm, d1, a->r1, a->m1, a->s1, d2, dout, N); // d2 = d r1 (x_in's residual part)
    memset(datt, 0, (size_t)(N * C) * sizeof *datt);
    if (cp_proj_backward(run, ly->o, datt, dout, a->att, N) != CP_OK) return CP_ERR;
    cp_attention_args at = self_args(m, run, dec, ly, b, a);
    if (cp_stack_attention_backward(run, l, &at, datt, dq, dk, dv) != CP_OK) return CP_ERR;
    float *dxin = need_dx ? d2 : NULL;
    if (cp_proj_backward(run, ly->q, dxin, dq, x_in, N) != CP_OK || cp_proj_backward(run, ly->k, dxin, dk, x_in, N) != CP_OK ||
        cp_proj_backward(run, ly->v, dxin, dv, x_in, N) != CP_OK)
        return CP_ERR;
    if (need_dx) memcpy(dx, d2, (size_t)(N * C) * sizeof *dx);
    return CP_OK;
}

/* Each call's scratch goes back to the arena before it returns. */
static cp_status block_forward_marked(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, float *x, void *acts,
                                      cp_kv_cache *kv) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward(m, dec, run, l, b, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status block_backward(cp_model *m, int dec, const cp_run *run, int64_t l, const cp_batch *b, const float *x_in,
                                const void *acts, float *dx, int need_dx) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_backward_impl(m, dec, run, l, b, x_in, acts, dx, need_dx);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status enc_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                                   void *acts, cp_kv_cache *kv) {
    (void)emb;
    return block_forward_marked(m, 0, run, l, b, x, acts, kv);
}
static cp_status dec_block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                                   void *acts, cp_kv_cache *kv) {
    (void)emb;
    return block_forward_marked(m, 1, run, l, b, x, acts, kv);
}
static cp_status enc_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                    const float *x_in, const void *acts, float *dx, int need_dx) {
    (void)emb;
    return block_backward(m, 0, run, l, b, x_in, acts, dx, need_dx);
}
static cp_status dec_block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                    const float *x_in, const void *acts, float *dx, int need_dx) {
    (void)emb;
    return block_backward(m, 1, run, l, b, x_in, acts, dx, need_dx);
}

const cp_block_ops cp_bart_encoder_ops = {.acts_size = sizeof(bart_acts), .embed_size = sizeof(bart_emb),
                                          .alloc_acts = enc_alloc_acts, .embed = enc_embed, .embed_backward = enc_embed_backward,
                                          .block_forward = enc_block_forward, .block_backward = enc_block_backward};
const cp_block_ops cp_bart_decoder_ops = {.acts_size = sizeof(bart_acts), .embed_size = sizeof(bart_emb),
                                          .alloc_acts = dec_alloc_acts, .alloc_cross = dec_alloc_cross, .embed = dec_embed,
                                          .embed_backward = dec_embed_backward, .block_forward = dec_block_forward,
                                          .block_backward = dec_block_backward};
