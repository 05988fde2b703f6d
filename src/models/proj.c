/*
 * proj.c — projections and embeddings with their PEFT hooks; see proj.h.
 */
#include "models/proj.h"
#include "models/hook.h"
#include "nn/embedding.h"
#include "nn/linear.h"

#include <string.h>

/* The module's scaling hook ((IA)³; at most one), or NULL. */
static const cp_hook *scaling_hook(const cp_module *m) {
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_scale) return h;
    return NULL;
}

/* x' (N,C) = x ∘ s_in, row by row, in the arena. */
static float *scale_rows(cp_arena *arena, const float *x, const float *s, int64_t N, int64_t C, const char *what) {
    float *y = cp_arena_floats(arena, (size_t)(N * C), what);
    if (!y) return NULL;
#pragma omp parallel for schedule(static) if (N * C > 65536)
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) y[n * C + c] = x[n * C + c] * s[c];
    return y;
}

/* The additive hooks (LoRA, ...), on the projection's own input. */
static cp_status add_contributions(const cp_run *run, const cp_module *m, float *out, const float *in, int64_t N) {
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_forward && h->ops->linear_forward(h, run, m, out, in, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

/* out (N,OC) = ((in ∘ s_in) · W + b) ∘ s_out with the scaling hook's factors, then the additive hooks. */
static cp_status scaled_forward(const cp_run *run, const cp_module *m, const cp_hook *sh, float *out, const float *in,
                                int64_t N) {
    const int64_t C = m->in_features, OC = m->out_features;
    const float *s_in = NULL, *s_out = NULL;
    if (sh->ops->linear_scale(sh, run, m, &s_in, &s_out) != CP_OK) return CP_ERR;
    const float *x = s_in ? scale_rows(run->arena, in, s_in, N, C, "scaled projection input") : in; // (N,C)
    if (!x) return CP_ERR;
    cp_linear_forward_act8(m, out, x, N, run->quant_act8);
    if (s_out) {
#pragma omp parallel for schedule(static) if (N * OC > 65536)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < OC; o++) out[n * OC + o] *= s_out[o];
    }
    return add_contributions(run, m, out, in, N);
}

cp_status cp_proj_forward(const cp_run *run, const cp_module *m, float *out, const float *in, int64_t N) {
    const cp_hook *sh = scaling_hook(m);
    if (sh) {
        cp_arena_mark mark = cp_arena_get_mark(run->arena);
        cp_status st = scaled_forward(run, m, sh, out, in, N);
        cp_arena_release(run->arena, mark);
        return st;
    }
    cp_linear_forward_act8(m, out, in, N, run->quant_act8);
    return add_contributions(run, m, out, in, N);
}

/* out (K) = Σ_n a[n,:] ∘ b[n,:] for a, b (N,K), summed in double. */
static cp_status column_dots(cp_arena *arena, float *out, const float *a, const float *b, int64_t N, int64_t K) {
    double *acc = cp_arena_alloc(arena, (size_t)K * sizeof *acc, "scaling gradient sums");
    if (!acc) return CP_ERR;
    for (int64_t k = 0; k < K; k++) acc[k] = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) acc[k] += (double)a[n * K + k] * b[n * K + k];
    for (int64_t k = 0; k < K; k++) out[k] = (float)acc[k];
    return CP_OK;
}

/* Backward of scaled_forward. In the forward pass this was z = x'·W + b with x' = X ∘ s_in, then
 * y = z ∘ s_out, so: dz = dY ∘ s_out; the base layer's backward on (x', dz) gives dx' (and its own
 * weight gradients); dX += s_in ∘ dx'; d_in = Σ_n X ∘ dx'; d_out = Σ_n dY ∘ z, z recomputed. */
static cp_status scaled_backward(const cp_run *run, const cp_module *m, const cp_hook *sh, float *dX, const float *dY,
                                 const float *X, int64_t N) {
    cp_arena *arena = run->arena;
    const int64_t C = m->in_features, OC = m->out_features;
    const float *s_in = NULL, *s_out = NULL;
    if (sh->ops->linear_scale(sh, run, m, &s_in, &s_out) != CP_OK) return CP_ERR;
    const int grads = sh->ops->trains && sh->ops->trains(sh) && sh->ops->linear_scale_backward;
    const float *x = s_in ? scale_rows(arena, X, s_in, N, C, "scaled projection input") : X;      // x' (N,C)
    const float *dz = s_out ? scale_rows(arena, dY, s_out, N, OC, "scaled projection gradient") : dY; // (N,OC)
    if (!x || !dz) return CP_ERR;
    float *d_in = NULL, *d_out = NULL;
    if (grads && s_out) {
        float *z = cp_arena_floats(arena, (size_t)(N * OC), "recomputed projection output"); // (N,OC)
        d_out = cp_arena_floats(arena, (size_t)OC, "output scaling gradient");
        if (!z || !d_out) return CP_ERR;
        cp_linear_forward(m, z, x, N);
        if (column_dots(arena, d_out, dY, z, N, OC) != CP_OK) return CP_ERR;
    }
    if (s_in && (dX || grads)) {
        float *dx = cp_arena_floats(arena, (size_t)(N * C), "scaled projection input gradient"); // dx' (N,C)
        if (!dx) return CP_ERR;
        memset(dx, 0, (size_t)(N * C) * sizeof *dx);
        cp_linear_backward(m, dx, dz, x, N);
        if (dX) {
#pragma omp parallel for schedule(static) if (N * C > 65536)
            for (int64_t n = 0; n < N; n++)
                for (int64_t c = 0; c < C; c++) dX[n * C + c] += s_in[c] * dx[n * C + c];
        }
        if (grads) {
            if (!(d_in = cp_arena_floats(arena, (size_t)C, "input scaling gradient"))) return CP_ERR;
            if (column_dots(arena, d_in, X, dx, N, C) != CP_OK) return CP_ERR;
        }
    } else {
        cp_linear_backward(m, dX, dz, x, N);
    }
    if (grads && (d_in || d_out) && sh->ops->linear_scale_backward(sh, run, m, d_in, d_out) != CP_OK) return CP_ERR;
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_backward && h->ops->linear_backward(h, run, m, dX, dY, X, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

cp_status cp_proj_backward(const cp_run *run, const cp_module *m, float *dX, const float *dY, const float *X, int64_t N) {
    const cp_hook *sh = scaling_hook(m);
    if (sh) {
        cp_arena_mark mark = cp_arena_get_mark(run->arena);
        cp_status st = scaled_backward(run, m, sh, dX, dY, X, N);
        cp_arena_release(run->arena, mark);
        return st;
    }
    cp_linear_backward(m, dX, dY, X, N);
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_backward && h->ops->linear_backward(h, run, m, dX, dY, X, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

cp_status cp_embed_forward(const cp_run *run, const cp_module *m, float *out, const int64_t *ids, int64_t N, int accumulate) {
    if (cp_embedding_forward(m, out, ids, N, accumulate) != CP_OK) return CP_ERR;
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->embedding_forward && h->ops->embedding_forward(h, run, m, out, ids, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

cp_status cp_embed_backward(const cp_run *run, const cp_module *m, const float *dY, const int64_t *ids, int64_t N) {
    cp_embedding_backward(m, dY, ids, N);
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->embedding_backward && h->ops->embedding_backward(h, run, m, dY, ids, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

int cp_proj_has_contribution(const cp_module *m) {
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_forward || h->ops->linear_scale) return 1;
    return 0;
}

int cp_module_trains(const cp_module *m) {
    if (!m) return 0;
    if ((m->weight && m->weight->grad) || (m->bias && m->bias->grad)) return 1;
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->trains && h->ops->trains(h)) return 1;
    return 0;
}

int cp_proj_needs_input(const cp_module *m) { return m && (m->hooks || cp_module_trains(m)); }

static int trains_visit(cp_module *m, void *ctx) {
    (void)ctx;
    return cp_module_trains(m);
}

int cp_subtree_trains(const cp_module *m) { return m && cp_module_visit((cp_module *)m, trains_visit, NULL); }
