/*
 * proj.c — projections and embeddings with their PEFT hooks; see proj.h.
 */
#include "models/proj.h"
#include "models/hook.h"
#include "nn/embedding.h"
#include "nn/linear.h"

cp_status cp_proj_forward(const cp_run *run, const cp_module *m, float *out, const float *in, int64_t N) {
    cp_linear_forward(m, out, in, N);
    for (const cp_hook *h = m->hooks; h; h = h->next)
        if (h->ops->linear_forward && h->ops->linear_forward(h, run, m, out, in, N) != CP_OK) return CP_ERR;
    return CP_OK;
}

cp_status cp_proj_backward(const cp_run *run, const cp_module *m, float *dX, const float *dY, const float *X, int64_t N) {
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
        if (h->ops->linear_forward) return 1;
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
