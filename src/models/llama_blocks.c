/*
 * llama_blocks.c — the Llama family's embedding step and decoder layers, forward and backward side
 * by side (models/llama.h; the tree is built in models/llama.c). One layer, every variant:
 *
 *   h1 = rms_in(x)                                                         (N,C)
 *   q, k, v = q_proj(h1), k_proj(h1), v_proj(h1)   [phi3: split of qkv_proj(h1), rows q | k | v]
 *   [qwen3: q, k = q_norm, k_norm per head];  q, k = rope(q, k) on the first rotary_dim dims of each head
 *   att = drop(softmax(cap(q·kᵀ·scale) + mask))·v   (cap: gemma2's attn_logit_softcapping; scale:
 *                                                     head_dim^-0.5, gemma2 query_pre_attn_scalar^-0.5)
 *   x += [rms_ao](o_proj(att))  [phi3: resid_attn_dropout]        x_mid
 *   h2 = rms_ff(x);  x += [rms_fo](down_proj(act(gate_proj(h2)) ⊙ up_proj(h2)))  [phi3: gate | up = gate_up_proj(h2); resid_mlp_dropout]
 *
 * [rms_ao], [rms_fo]: gemma2's post_attention_layernorm and post_feedforward_layernorm (rms_ff is its
 * pre_feedforward_layernorm; the others' post_attention_layernorm). The fused projections are split
 * into the separate buffers the unfused layers use, and their gradients packed back, so everything
 * between them is one code path.
 */
#include "models/llama.h"
#include "core/alloc.h"
#include "kernels/vector.h"
#include "models/kv_cache.h"
#include "models/model.h"
#include "models/proj.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/dropout.h"
#include "nn/rmsnorm.h"

#include <math.h>
#include <string.h>

typedef struct {
    float *rstd1, *rstd2; // (N)
    float *h1;            // (N,C) input_layernorm output
    float *q, *k, *v;     // (N,NH·hd), (N,NKV·hd), (N,NKV·hd) — q and k after RoPE
    float *q_in, *k_in;   // qwen3: (N,NH·hd), (N,NKV·hd) q_proj / k_proj outputs (the q/k norms' inputs), else NULL
    float *rstd_q, *rstd_k; // qwen3: (N·NH), (N·NKV) per-head norm statistics
    float *stats;         // (B,NH,T,2) attention row statistics (max, exp-sum) for the fused backward; NULL in inference
    float *att;           // (N,NH·hd)
    float *attn_o, *rstd_ao; // gemma2: (N,C) o_proj output (post_attention_layernorm's input), (N); else NULL
    float *x_mid;         // (N,C)
    float *h2;            // (N,C) the MLP's input norm output
    float *gate, *up;     // (N,I) projections (gate before the activation)
    float *act;           // (N,I) act(gate) ⊙ up: the input of down_proj
    float *mlp_o, *rstd_fo; // gemma2: (N,C) down_proj output (post_feedforward_layernorm's input), (N); else NULL
} llama_acts;

/* The embedding step's state: positions and their RoPE tables (N, rotary_dim/2). */
typedef struct { int64_t *pos; const float *cos_t, *sin_t; } llama_emb;

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const llama_layer *ly0 = &((const llama_state *)m->arch_state)->layers[0];
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t qd = (size_t)(c->num_heads * c->head_dim), kvd = (size_t)(c->num_kv_heads * c->head_dim);
    llama_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->rstd1 = cp_arena_floats(ar, N, "norm statistics");
    a->rstd2 = cp_arena_floats(ar, N, "norm statistics");
    a->h1 = cp_arena_floats(ar, N * C, "input_layernorm output");
    a->q = cp_arena_floats(ar, N * qd, "queries");
    a->k = cp_arena_floats(ar, N * kvd, "keys");
    a->v = cp_arena_floats(ar, N * kvd, "values");
    if (ly0->q_norm) {
        a->q_in = cp_arena_floats(ar, N * qd, "queries before q_norm");
        a->k_in = cp_arena_floats(ar, N * kvd, "keys before k_norm");
        a->rstd_q = cp_arena_floats(ar, N * (size_t)c->num_heads, "q_norm statistics");
        a->rstd_k = cp_arena_floats(ar, N * (size_t)c->num_kv_heads, "k_norm statistics");
        if (!a->q_in || !a->k_in || !a->rstd_q || !a->rstd_k) return CP_ERR;
    }
    if (ly0->attn_out_norm) {
        a->attn_o = cp_arena_floats(ar, N * C, "o_proj output");
        a->rstd_ao = cp_arena_floats(ar, N, "norm statistics");
        a->mlp_o = cp_arena_floats(ar, N * C, "down_proj output");
        a->rstd_fo = cp_arena_floats(ar, N, "norm statistics");
        if (!a->attn_o || !a->rstd_ao || !a->mlp_o || !a->rstd_fo) return CP_ERR;
    }
    a->stats = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "attention row statistics") : NULL;
    a->att = cp_arena_floats(ar, N * qd, "attention output");
    a->x_mid = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->h2 = cp_arena_floats(ar, N * C, "MLP input norm output");
    a->gate = cp_arena_floats(ar, N * I, "gate projection");
    a->up = cp_arena_floats(ar, N * I, "up projection");
    a->act = cp_arena_floats(ar, N * I, "MLP hidden");
    if (!a->rstd1 || !a->rstd2 || !a->h1 || !a->q || !a->k || !a->v || !a->att || !a->h2 || !a->gate || !a->up || !a->act ||
        (training && (!a->stats || !a->x_mid)))
        return CP_ERR;
    return CP_OK;
}

static cp_attention_args attn_args(const cp_model *m, const cp_run *run, const llama_layer *ly, const cp_batch *b,
                                   const llama_acts *a) {
    const cp_model_config *c = &m->config;
    const double scale_of = c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : (double)c->head_dim;
    cp_attention_args at = {.B = b->B, .T = b->T, .NH = c->num_heads, .NKV = c->num_kv_heads, .hs = c->head_dim,
                            .q = a->q, .k = a->k, .v = a->v, .q_stride = c->num_heads * c->head_dim,
                            .k_stride = c->num_kv_heads * c->head_dim, .v_stride = c->num_kv_heads * c->head_dim,
                            .scale = (float)pow(scale_of, -0.5), .window = ly->window,
                            .softcap = (float)c->attn_logit_softcapping,
                            .key_mask = b->attention_mask, .empty_row = CP_ATTN_EMPTY_ALL, .out = a->att, .stats = a->stats,
                            .dropout = cp_run_dropout_p(run, ly->self_attn, "attention_dropout", c->attn_dropout)};
    return at;
}

/* RoPE on the first rotary_dim dims of each of NH heads of x (N rows of stride NH·hd), in halves or
 * (glm) interleaved pairs; forward or (backward) the transpose rotation. */
static void rotate(const llama_state *s, int backward, float *x, int64_t N, int64_t NH, int64_t hd, const llama_emb *e) {
    (backward ? cp_rope_backward_partial : cp_rope_forward_partial)(x, N, NH, hd, NH * hd, s->rotary_dim, s->rope_interleaved,
                                                                  e->cos_t, e->sin_t);
}

/* Copies columns [c0, c0+n) of the N rows of wide (row stride w) to compact (N,n), or (pack) back. */
static void columns(float *compact, float *wide, int64_t N, int64_t w, int64_t c0, int64_t n, int pack) {
    for (int64_t r = 0; r < N; r++) {
        if (pack) memcpy(wide + r * w + c0, compact + r * n, (size_t)n * sizeof *wide);
        else memcpy(compact + r * n, wide + r * w + c0, (size_t)n * sizeof *wide);
    }
}

/* One decoder layer, x (N,C) in place. With a cache `kv` the (rotated) keys and values go into its
 * layer l and the queries attend to all its columns. */
static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const llama_emb *e,
                                    float *x, llama_acts *a, cp_kv_cache *kv) {
    const llama_state *s = m->arch_state;
    const llama_layer *ly = &s->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    const int64_t qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
    const int64_t w_qkv = ly->qkv_proj ? qd + 2 * kvd : 0, w_gu = ly->gate_up_proj ? 2 * I : 0;
    const size_t wide = (size_t)(N * (w_qkv > w_gu ? w_qkv : w_gu));
    float *tmp = cp_arena_floats(run->arena, (size_t)(N * C), "projection output"); // (N,C)
    float *fused = ly->qkv_proj || ly->gate_up_proj ? cp_arena_floats(run->arena, wide, "fused projection output") : NULL;
    if (!tmp || ((ly->qkv_proj || ly->gate_up_proj) && !fused)) return CP_ERR;
    const cp_dropout resid_attn = cp_run_dropout(run, ly->resid_attn_dropout), resid_mlp = cp_run_dropout(run, ly->resid_mlp_dropout);
    cp_rmsnorm_forward(ly->input_layernorm, a->h1, a->rstd1, x, N);
    if (ly->qkv_proj) { // (N, qd + 2kvd): q | k | v
        if (cp_proj_forward(run, ly->qkv_proj, fused, a->h1, N) != CP_OK) return CP_ERR;
        columns(a->q, fused, N, qd + 2 * kvd, 0, qd, 0);
        columns(a->k, fused, N, qd + 2 * kvd, qd, kvd, 0);
        columns(a->v, fused, N, qd + 2 * kvd, qd + kvd, kvd, 0);
    } else if (cp_proj_forward(run, ly->q_proj, a->q, a->h1, N) != CP_OK || cp_proj_forward(run, ly->k_proj, a->k, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->v_proj, a->v, a->h1, N) != CP_OK)
        return CP_ERR;
    if (ly->q_norm) { /* (N·NH, hd) and (N·NKV, hd) rows: one norm per head */
        memcpy(a->q_in, a->q, (size_t)(N * qd) * sizeof *a->q);
        memcpy(a->k_in, a->k, (size_t)(N * kvd) * sizeof *a->k);
        cp_rmsnorm_forward(ly->q_norm, a->q, a->rstd_q, a->q_in, N * c->num_heads);
        cp_rmsnorm_forward(ly->k_norm, a->k, a->rstd_k, a->k_in, N * c->num_kv_heads);
    }
    rotate(s, 0, a->q, N, c->num_heads, c->head_dim, e);
    rotate(s, 0, a->k, N, c->num_kv_heads, c->head_dim, e);
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->o_proj, a->attn_o ? a->attn_o : tmp, a->att, N) != CP_OK) return CP_ERR;
    if (ly->attn_out_norm) cp_rmsnorm_forward(ly->attn_out_norm, tmp, a->rstd_ao, a->attn_o, N);
    cp_dropout_apply(&resid_attn, tmp, tmp, 0, N, C);
    cp_add_inplace(x, tmp, N * C);
    if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);
    cp_rmsnorm_forward(ly->ff_norm, a->h2, a->rstd2, x, N);
    if (ly->gate_up_proj) { // (N, 2I): gate | up
        if (cp_proj_forward(run, ly->gate_up_proj, fused, a->h2, N) != CP_OK) return CP_ERR;
        columns(a->gate, fused, N, 2 * I, 0, I, 0);
        columns(a->up, fused, N, 2 * I, I, I, 0);
    } else if (cp_proj_forward(run, ly->gate_proj, a->gate, a->h2, N) != CP_OK || cp_proj_forward(run, ly->up_proj, a->up, a->h2, N) != CP_OK)
        return CP_ERR;
    cp_activation_forward(c->activation, a->act, a->gate, N * I);
#pragma omp parallel for simd schedule(static) if (N * I > 65536)
    for (int64_t i = 0; i < N * I; i++) a->act[i] *= a->up[i];
    if (cp_proj_forward(run, ly->down_proj, a->mlp_o ? a->mlp_o : tmp, a->act, N) != CP_OK) return CP_ERR;
    if (ly->ff_out_norm) cp_rmsnorm_forward(ly->ff_out_norm, tmp, a->rstd_fo, a->mlp_o, N);
    cp_dropout_apply(&resid_mlp, tmp, tmp, 0, N, C);
    cp_add_inplace(x, tmp, N * C);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, run, l, b, emb, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

/* The gradient of a sublayer's output from dx, the gradient of the residual sum it was added to:
 * through phi3's dropout (its mask) and gemma2's post-sublayer norm (into d_in, the norm's input
 * gradient). Returns what the sublayer's last projection receives. */
static const float *sublayer_output_grad(const cp_dropout *drop, const cp_module *out_norm, const float *norm_in,
                                         const float *rstd, const float *dx, float *d_drop, float *d_in, int64_t N, int64_t C) {
    const float *d = dx;
    if (cp_dropout_on(drop)) {
        cp_dropout_apply(drop, d_drop, dx, 0, N, C);
        d = d_drop;
    }
    if (!out_norm) return d;
    memset(d_in, 0, (size_t)(N * C) * sizeof *d_in);
    cp_rmsnorm_backward(out_norm, d_in, d, norm_in, rstd, N);
    return d_in;
}

static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    const llama_state *s = m->arch_state;
    const llama_layer *ly = &s->layers[l];
    const llama_emb *e = emb;
    const llama_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    const int64_t qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
    cp_arena *ar = run->arena;
    float *dI1 = cp_arena_floats(ar, (size_t)(N * I), "MLP gradients"), *dI2 = cp_arena_floats(ar, (size_t)(N * I), "MLP gradients");
    float *dC = cp_arena_floats(ar, (size_t)(N * (C > qd ? C : qd)), "block gradients");
    float *dO1 = cp_arena_floats(ar, (size_t)(N * C), "sublayer output gradients"), *dO2 = cp_arena_floats(ar, (size_t)(N * C), "sublayer output gradients");
    float *dq = cp_arena_floats(ar, (size_t)(N * qd), "query gradients");
    float *dk = cp_arena_floats(ar, (size_t)(N * kvd), "key gradients"), *dv = cp_arena_floats(ar, (size_t)(N * kvd), "value gradients");
    const int64_t w_qkv = ly->qkv_proj ? qd + 2 * kvd : 0, w_gu = ly->gate_up_proj ? 2 * I : 0, wide = w_qkv > w_gu ? w_qkv : w_gu;
    float *dfused = ly->qkv_proj || ly->gate_up_proj ? cp_arena_floats(ar, (size_t)(N * wide), "fused projection gradients") : NULL;
    if (!dI1 || !dI2 || !dC || !dO1 || !dO2 || !dq || !dk || !dv || ((ly->qkv_proj || ly->gate_up_proj) && !dfused)) return CP_ERR;
    const cp_dropout resid_attn = cp_run_dropout(run, ly->resid_attn_dropout), resid_mlp = cp_run_dropout(run, ly->resid_mlp_dropout);

    // MLP: x_out = x_mid + [drop][rms_fo](down(act(gate(h2)) ⊙ up(h2))), h2 = rms_ff(x_mid)
    const float *d_down = sublayer_output_grad(&resid_mlp, ly->ff_out_norm, a->mlp_o, a->rstd_fo, dx, dO1, dO2, N, C);
    memset(dI1, 0, (size_t)(N * I) * sizeof *dI1);
    if (cp_proj_backward(run, ly->down_proj, dI1, d_down, a->act, N) != CP_OK) return CP_ERR; // d act
    cp_activation_forward(c->activation, dI2, a->gate, N * I);                               // act(gate)
#pragma omp parallel for simd schedule(static) if (N * I > 65536)
    for (int64_t i = 0; i < N * I; i++) {
        float d_act = dI1[i];
        dI1[i] = d_act * a->up[i];   // d act(gate)
        dI2[i] = d_act * dI2[i];     // d up = d act ⊙ act(gate)
    }
    cp_activation_backward(c->activation, dI1, dI1, a->gate, N * I);                         // d gate
    memset(dC, 0, (size_t)(N * C) * sizeof *dC);
    if (ly->gate_up_proj) { // in the forward pass gate | up were split out of gate_up_proj's output
        columns(dI1, dfused, N, 2 * I, 0, I, 1);
        columns(dI2, dfused, N, 2 * I, I, I, 1);
        if (cp_proj_backward(run, ly->gate_up_proj, dC, dfused, a->h2, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->gate_proj, dC, dI1, a->h2, N) != CP_OK || cp_proj_backward(run, ly->up_proj, dC, dI2, a->h2, N) != CP_OK)
        return CP_ERR;                                                                        // d h2
    cp_rmsnorm_backward(ly->ff_norm, dx, dC, a->x_mid, a->rstd2, N);                         // dx = d x_mid

    // attention: x_mid = x_in + [drop][rms_ao](o_proj(attn(rope(q), rope(k), v))), q,k,v = proj(rms(x_in))
    const float *d_o = sublayer_output_grad(&resid_attn, ly->attn_out_norm, a->attn_o, a->rstd_ao, dx, dO1, dO2, N, C);
    memset(dC, 0, (size_t)(N * qd) * sizeof *dC);
    if (cp_proj_backward(run, ly->o_proj, dC, d_o, a->att, N) != CP_OK) return CP_ERR;      // d att
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attention_backward(run, l, &at, dC, dq, dk, dv) != CP_OK) return CP_ERR;
    rotate(s, 1, dq, N, c->num_heads, c->head_dim, e);
    rotate(s, 1, dk, N, c->num_kv_heads, c->head_dim, e);
    if (ly->q_norm) { // q = q_norm(q_in) per head: dq, dk become the projections' output gradients
        float *dn = cp_arena_floats(ar, (size_t)(N * (qd > kvd ? qd : kvd)), "q/k norm gradients");
        if (!dn) return CP_ERR;
        memset(dn, 0, (size_t)(N * qd) * sizeof *dn);
        cp_rmsnorm_backward(ly->q_norm, dn, dq, a->q_in, a->rstd_q, N * c->num_heads);
        memcpy(dq, dn, (size_t)(N * qd) * sizeof *dq);
        memset(dn, 0, (size_t)(N * kvd) * sizeof *dn);
        cp_rmsnorm_backward(ly->k_norm, dn, dk, a->k_in, a->rstd_k, N * c->num_kv_heads);
        memcpy(dk, dn, (size_t)(N * kvd) * sizeof *dk);
    }
    int need_dh1 = need_dx || cp_module_trains(ly->input_layernorm);
    float *dh1 = need_dh1 ? dC : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (ly->qkv_proj) { // q | k | v were split out of qkv_proj's output
        columns(dq, dfused, N, qd + 2 * kvd, 0, qd, 1);
        columns(dk, dfused, N, qd + 2 * kvd, qd, kvd, 1);
        columns(dv, dfused, N, qd + 2 * kvd, qd + kvd, kvd, 1);
        if (cp_proj_backward(run, ly->qkv_proj, dh1, dfused, a->h1, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->q_proj, dh1, dq, a->h1, N) != CP_OK || cp_proj_backward(run, ly->k_proj, dh1, dk, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->v_proj, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    if (dh1) cp_rmsnorm_backward(ly->input_layernorm, need_dx ? dx : NULL, dh1, x_in, a->rstd1, N);
    return CP_OK;
}

/* Gemma's embedding scale on the token rows of x (N,C), not on a prompt's virtual rows (the first
 * n_virtual of each row: PEFT concatenates them after the scaled word embedding). */
static void scale_token_rows(float *x, const cp_batch *b, const cp_embed_args *ea, int64_t C, float scale) {
    const int64_t nv = ea ? ea->n_virtual : 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = nv; t < b->T; t++)
            for (int64_t c = 0; c < C; c++) x[(r * b->T + t) * C + c] *= scale;
}

/* Embeddings and the RoPE tables for the batch's positions (default past..past+T-1, ignoring
 * padding). Dynamic scaling looks at the largest position of this batch, as transformers'
 * dynamic_rope_update does at every forward, cached or not. */
static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const int64_t past = ea->past;
    const llama_state *s = m->arch_state;
    llama_emb *e = emb;
    const int64_t N = b->B * b->T, half = s->rotary_dim / 2;
    int64_t *pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *pos, "positions");
    float *cos_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope"), *sin_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope");
    if (!pos || !cos_t || !sin_t) return CP_ERR;
    int64_t max_pos = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t < b->T; t++) {
            int64_t p = b->position_ids ? b->position_ids[r * b->T + t] : past + t;
            if (p < 0) return cp_error("position_ids: negative position %lld", (long long)p);
            pos[r * b->T + t] = p;
            if (p > max_pos) max_pos = p;
        }
    if (cp_embed_tokens(run, s->embed_tokens, b, ea, x) != CP_OK) return CP_ERR;
    if (s->embed_scale != 1.0f) scale_token_rows(x, b, ea, m->config.hidden_size, s->embed_scale);
    cp_rope_tables(&s->rope, pos, N, max_pos + 1, cos_t, sin_t);
    *e = (llama_emb){.pos = pos, .cos_t = cos_t, .sin_t = sin_t};
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    (void)emb;
    const llama_state *s = m->arch_state;
    if (s->embed_scale == 1.0f) return cp_embed_tokens_backward(run, s->embed_tokens, b, ea, dx);
    const size_t n = (size_t)(b->B * b->T * m->config.hidden_size);
    float *d = cp_arena_floats(run->arena, n, "scaled embedding gradients"); // (N,C)
    if (!d) return CP_ERR;
    memcpy(d, dx, n * sizeof *d);
    scale_token_rows(d, b, ea, m->config.hidden_size, s->embed_scale);
    return cp_embed_tokens_backward(run, s->embed_tokens, b, ea, d);
}

const cp_block_ops cp_llama_block_ops = {.acts_size = sizeof(llama_acts), .embed_size = sizeof(llama_emb),
                                       .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                       .block_forward = block_forward, .block_backward = block_backward};
