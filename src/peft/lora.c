/*
 * lora.c — LoRA adapters on one module: creation and PEFT's initialisations, the forward side
 * path (Linear/Conv1D and Embedding), the delta weight, merge and unmerge. See lora.h.
 *
 * Initialisation follows PEFT (reference/peft.md §3.4) from cpeft's seeded stream: with
 * init_lora_weights=true, A ~ U(±1/√in) (kaiming_uniform with a=√5) and B = 0, so a fresh adapter
 * is an exact no-op; "gaussian" draws A ~ N(0, 1/r²); false keeps nn.Linear's default init for
 * both. Embedding adapters start with A = 0 and B ~ N(0, 1).
 */
#include "peft/lora.h"
#include "core/alloc.h"
#include "kernels/vector.h"
#include "nn/linear.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static char *param_name(const cp_module *m, const char *what, const char *adapter, int embedding) {
    size_t n = strlen(m->path) + strlen(what) + strlen(adapter) + 16;
    char *s = cp_malloc(n, "a parameter name");
    if (!s) return NULL;
    if (embedding) snprintf(s, n, "%s.%s.%s", m->path, what, adapter);          /* ParameterDict entry */
    else snprintf(s, n, "%s.%s.%s.weight", m->path, what, adapter);             /* ModuleDict of Linear */
    return s;
}

/* FNV-1a over "path\0name": the adapter's dropout stream, stable across runs and resumes. */
static uint64_t name_hash(const char *path, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = path; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    h = (h ^ 0) * 0x100000001b3ULL;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

static void fill_uniform(float *x, int64_t n, float bound, cp_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = (2.0f * cp_rng_uniform(rng) - 1.0f) * bound;
}

static void fill_normal(float *x, int64_t n, float std, cp_rng *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = cp_rng_normal(rng) * std;
}

static void init_adapter(const cp_module *m, cp_lora_adapter *a, cp_lora_init init, cp_rng *rng) {
    if (m->kind == CP_MOD_EMBEDDING) {
        if (init == CP_LORA_INIT_NONE) fill_normal(a->A->data, a->A->numel, 1.0f, rng);
        else memset(a->A->data, 0, (size_t)a->A->numel * sizeof(float));
        fill_normal(a->B->data, a->B->numel, 1.0f, rng);
        return;
    }
    const int64_t in = m->in_features;
    /* kaiming_uniform(a=√5): bound = √3 · √(2/(1+5)) / √fan_in = 1/√fan_in */
    if (init == CP_LORA_INIT_GAUSSIAN) fill_normal(a->A->data, a->A->numel, 1.0f / (float)a->r, rng);
    else fill_uniform(a->A->data, a->A->numel, (float)(0.9999999999999999 / sqrt((double)in)), rng);
    if (init == CP_LORA_INIT_NONE) fill_uniform(a->B->data, a->B->numel, (float)(1.0 / sqrt((double)a->r)), rng);
    else memset(a->B->data, 0, (size_t)a->B->numel * sizeof(float));
}

cp_status cp_lora_add(cp_module *m, const char *name, int64_t r, double alpha, int use_rslora, double dropout,
                      cp_lora_init init, cp_rng *rng, cp_lora_adapter **out) {
    if (m->kind != CP_MOD_LINEAR && m->kind != CP_MOD_CONV1D && m->kind != CP_MOD_EMBEDDING)
        return cp_error("%s: LoRA supports Linear, Conv1D and Embedding modules, not %s", m->path, m->class_name);
    if (r <= 0) return cp_error("%s: `r` should be a positive integer value but the value passed is %lld", m->path, (long long)r);
    if (cp_lora_find(m, name)) return cp_error("%s: adapter \"%s\" already exists", m->path, name);
    cp_lora_layer *layer = cp_lora_layer_of(m);
    if (!layer) {
        if (!(layer = cp_calloc(1, sizeof *layer, "a LoRA layer"))) return CP_ERR;
        layer->hook.ops = &cp_lora_hook_ops;
        layer->fan_in_fan_out = m->kind == CP_MOD_CONV1D;
        cp_hook_attach(m, &layer->hook);
    }
    if (layer->n == layer->cap) {
        int cap = layer->cap ? 2 * layer->cap : 2;
        cp_lora_adapter **ad = cp_realloc(layer->adapters, (size_t)cap * sizeof *ad, "LoRA adapters");
        if (!ad) return CP_ERR;
        layer->adapters = ad;
        layer->cap = cap;
    }
    cp_lora_adapter *a = cp_calloc(1, sizeof *a, "a LoRA adapter");
    if (!a) return CP_ERR;
    a->name = cp_strdup(name);
    a->r = r;
    a->alpha = alpha;
    a->scaling = use_rslora ? alpha / sqrt((double)r) : alpha / (double)r;
    a->dropout = dropout;
    a->dropout_stream = name_hash(m->path, name);
    const int emb = m->kind == CP_MOD_EMBEDDING;
    /* Linear: A (r, in), B (out, r). Conv1D reads in/out from its [in, out] weight, same shapes.
     * Embedding: A (r, V), B (d, r). */
    char *an = param_name(m, emb ? "lora_embedding_A" : "lora_A", name, emb);
    char *bn = param_name(m, emb ? "lora_embedding_B" : "lora_B", name, emb);
    if (an && bn) {
        a->A = cp_param_new(an, 2, r, m->in_features);
        a->B = cp_param_new(bn, 2, m->out_features, r);
    }
    cp_free(an);
    cp_free(bn);
    if (!a->name || !a->A || !a->B) {
        cp_param_free(a->A);
        cp_param_free(a->B);
        cp_free(a->name);
        cp_free(a);
        return CP_ERR;
    }
    init_adapter(m, a, init, rng);
    layer->adapters[layer->n++] = a;
    if (out) *out = a;
    return CP_OK;
}

cp_lora_layer *cp_lora_layer_of(const cp_module *m) { return (cp_lora_layer *)cp_hook_find(m, &cp_lora_hook_ops); }

cp_lora_adapter *cp_lora_find(const cp_module *m, const char *name) {
    const cp_lora_layer *layer = cp_lora_layer_of(m);
    for (int i = 0; layer && i < layer->n; i++)
        if (!strcmp(layer->adapters[i]->name, name)) return layer->adapters[i];
    return NULL;
}

static void adapter_free(cp_lora_adapter *a) {
    cp_param_free(a->A);
    cp_param_free(a->B);
    cp_free(a->name);
    cp_free(a);
}

static void layer_free(cp_lora_layer *layer) {
    if (!layer) return;
    for (int i = 0; i < layer->n; i++) adapter_free(layer->adapters[i]);
    cp_free(layer->adapters);
    cp_free(layer);
}

void cp_lora_remove(cp_module *m, const char *name) {
    cp_lora_layer *layer = cp_lora_layer_of(m);
    if (!layer) return;
    for (int i = 0; i < layer->n; i++) {
        if (strcmp(layer->adapters[i]->name, name)) continue;
        adapter_free(layer->adapters[i]);
        memmove(layer->adapters + i, layer->adapters + i + 1, (size_t)(layer->n - i - 1) * sizeof *layer->adapters);
        layer->n--;
        break;
    }
    if (layer->n == 0) {
        cp_hook_detach(m, &layer->hook);
        layer_free(layer);
    }
}

static int runs(const cp_lora_layer *layer, const cp_lora_adapter *a) {
    return !layer->disabled && a->active && !a->merged;
}

/* The seed of adapter a's dropout mask in this run: the run's step seed mixed with the adapter's own
 * stream (from its module path and name), so every adapter of every module draws its own mask and
 * the backward pass regenerates the forward's. */
static uint64_t dropout_seed(const cp_run *run, const cp_lora_adapter *a) {
    uint64_t z = run->seed ^ a->dropout_stream;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Adapter a's dropout site in this run: its key from the run's seed and the adapter's stream, its rows
 * the call's batch rows, keyed as the global batch's (models/run.h: N data-parallel ranks draw the
 * masks one process draws). p = 0 when no dropout runs. */
static cp_dropout dropout_site(const cp_run *run, const cp_lora_adapter *a) {
    return cp_run_batch_dropout(run, run->training ? a->dropout : 0.0, dropout_seed(run, a));
}

/* The LoRA input in training: dropout(x) (N,C) = x·mask/(1−p), the mask a pure function of (the
 * site's key, global row, column) (nn/dropout.h). Returns `in` when no dropout runs. */
static const float *dropped_input(const cp_run *run, const cp_lora_adapter *a, const float *in, int64_t N, int64_t C) {
    const cp_dropout d = dropout_site(run, a);
    if (!cp_dropout_on(&d)) return in;
    float *xd = cp_arena_floats(run->arena, (size_t)(N * C), "LoRA dropout");
    if (!xd) return NULL;
    cp_dropout_apply(&d, xd, in, 0, N, C);
    return xd;
}

/* The batch rows of a mix that run adapter a: rows[0..n). */
static int64_t mix_rows(const cp_adapter_mix *mix, const cp_lora_adapter *a, int64_t *rows) {
    int64_t n = 0;
    for (int64_t b = 0; b < mix->B; b++)
        if (!strcmp(mix->names[b], a->name)) rows[n++] = b;
    return n;
}

/* out[rows[k]] += ys[k] for each of the nb batch rows; a batch row is rowlen floats. */
static void scatter_add_rows(float *out, const float *ys, const int64_t *rows, int64_t nb, int64_t rowlen) {
    for (int64_t k = 0; k < nb; k++) {
        float *o = out + rows[k] * rowlen;
        const float *y = ys + k * rowlen;
        for (int64_t j = 0; j < rowlen; j++) o[j] += y[j];
    }
}

/* PEFT's _mixed_batch_forward: for each adapter, the sub-batch of rows that name it goes through
 * its side path alone, out[rows] += s · B(A(x[rows])). Batch row b covers rows b·T .. b·T+T-1. */
static cp_status mixed_linear_add(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, float *out,
                                  const float *in, int64_t N) {
    const cp_adapter_mix *mix = run->mix;
    cp_arena *scratch = run->arena;
    const int64_t B = mix->B, T = N / B, C = m->in_features, OC = m->out_features;
    int64_t *rows = cp_arena_alloc(scratch, (size_t)B * sizeof *rows, "mixed-batch rows");
    if (!rows) return CP_ERR;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        const int64_t nb = mix_rows(mix, a, rows), n = nb * T, r = a->r;
        if (!nb) continue;
        const int all = nb == B;
        float *xs = all ? NULL : cp_arena_floats(scratch, (size_t)(n * C), "mixed-batch inputs");     // (n,C)
        float *t = cp_arena_floats(scratch, (size_t)(n * r), "LoRA activations");                     // (n,r)
        float *ys = all ? NULL : cp_arena_floats(scratch, (size_t)(n * OC), "mixed-batch outputs");   // (n,OC)
        if (!t || (!all && (!xs || !ys))) return CP_ERR;
        for (int64_t k = 0; k < nb && !all; k++)
            memcpy(xs + k * T * C, in + rows[k] * T * C, (size_t)(T * C) * sizeof *xs);
        // t (n,r) = x[rows] · Aᵀ · s ;  y (n,OC) = t · Bᵀ ;  out[rows] += y
        cp_matmul_nt(t, all ? in : xs, a->A->data, n, C, r, 0);
        const float s = (float)a->scaling;
        for (int64_t k = 0; k < n * r; k++) t[k] *= s;
        if (all) {
            cp_matmul_nt(out, t, a->B->data, n, r, OC, 1);
            continue;
        }
        cp_matmul_nt(ys, t, a->B->data, n, r, OC, 0);
        scatter_add_rows(out, ys, rows, nb, T * OC);
    }
    return CP_OK;
}

/* The Embedding form of mixed_linear_add: out[rows] += s · (Aᵀ[ids[rows]]) · Bᵀ. */
static cp_status mixed_embedding_add(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, float *out,
                                     const int64_t *ids, int64_t N) {
    const cp_adapter_mix *mix = run->mix;
    cp_arena *scratch = run->arena;
    const int64_t B = mix->B, T = N / B, V = m->in_features, d = m->out_features;
    int64_t *rows = cp_arena_alloc(scratch, (size_t)B * sizeof *rows, "mixed-batch rows");
    if (!rows) return CP_ERR;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        const int64_t nb = mix_rows(mix, a, rows), n = nb * T, r = a->r;
        if (!nb) continue;
        const float s = (float)a->scaling;
        float *t = cp_arena_floats(scratch, (size_t)(n * r), "LoRA embedding rows");  // (n,r)
        float *ys = cp_arena_floats(scratch, (size_t)(n * d), "mixed-batch outputs"); // (n,d)
        if (!t || !ys) return CP_ERR;
        for (int64_t k = 0; k < nb; k++)
            for (int64_t j = 0; j < T; j++) {
                const int64_t id = ids[rows[k] * T + j];
                for (int64_t q = 0; q < r; q++) t[(k * T + j) * r + q] = a->A->data[q * V + id] * s;
            }
        cp_matmul_nt(ys, t, a->B->data, n, r, d, 0);
        scatter_add_rows(out, ys, rows, nb, T * d);
    }
    return CP_OK;
}

static cp_status linear_add(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, float *out,
                            const float *in, int64_t N) {
    if (run->mix) return layer->disabled ? CP_OK : mixed_linear_add(layer, run, m, out, in, N);
    const int64_t C = m->in_features, OC = m->out_features;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        if (!runs(layer, a)) continue;
        const int64_t r = a->r;
        float *t = cp_arena_floats(run->arena, (size_t)(N * r), "LoRA activations"); // (N, r)
        const float *x = dropped_input(run, a, in, N, C);
        if (!t || !x) return CP_ERR;
        // t (N,r) = dropout(x) (N,C) · Aᵀ ; out (N,OC) += s · t · Bᵀ
        cp_matmul_nt(t, x, a->A->data, N, C, r, 0);
        const float s = (float)a->scaling;
#pragma omp parallel for schedule(static) if (N * r > 65536)
        for (int64_t k = 0; k < N * r; k++) t[k] *= s;
        cp_matmul_nt(out, t, a->B->data, N, r, OC, 1);
    }
    return CP_OK;
}

static cp_status embedding_add(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, float *out,
                               const int64_t *ids, int64_t N) {
    if (run->mix) return layer->disabled ? CP_OK : mixed_embedding_add(layer, run, m, out, ids, N);
    const int64_t V = m->in_features, d = m->out_features;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        if (!runs(layer, a)) continue;
        const int64_t r = a->r;
        const float s = (float)a->scaling;
        float *t = cp_arena_floats(run->arena, (size_t)(N * r), "LoRA embedding rows"); // (N, r)
        if (!t) return CP_ERR;
        // t[n, k] = A[k, ids[n]] · s   (rows of Aᵀ), then out (N,d) += t · Bᵀ with B (d, r)
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < r; k++) t[n * r + k] = a->A->data[k * V + ids[n]] * s;
        cp_matmul_nt(out, t, a->B->data, N, r, d, 1);
    }
    return CP_OK;
}

static cp_status linear_backward(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, float *dX,
                                 const float *dY, const float *X, int64_t N) {
    cp_arena *scratch = run->arena;
    const int64_t C = m->in_features, OC = m->out_features;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        if (!runs(layer, a)) continue;
        const int64_t r = a->r;
        const float s = (float)a->scaling;
        const float *x = dropped_input(run, a, X, N, C);                        // the forward's dropout(x), regenerated
        float *u = cp_arena_floats(scratch, (size_t)(N * r), "LoRA backward");  // (N, r)
        float *dt = cp_arena_floats(scratch, (size_t)(N * r), "LoRA backward"); // (N, r)
        if (!x || !u || !dt) return CP_ERR;
        // in the forward pass this was u = s·(x·Aᵀ), out += u·Bᵀ, so:
        cp_matmul_nt(u, x, a->A->data, N, C, r, 0);
        for (int64_t k = 0; k < N * r; k++) u[k] *= s;
        if (a->B->grad) cp_matmul_tn(a->B->grad, dY, u, N, OC, r, 1);        // dB (OC,r) += dYᵀ·u
        cp_matmul_nn(dt, dY, a->B->data, N, OC, r, 0);                        // du (N,r) = dY·B
        for (int64_t k = 0; k < N * r; k++) dt[k] *= s;                       // dt = s·du
        if (a->A->grad) cp_matmul_tn(a->A->grad, dt, x, N, r, C, 1);          // dA (r,C) += dtᵀ·dropout(x)
        if (dX) {
            if (x == X) cp_matmul_nn(dX, dt, a->A->data, N, r, C, 1);         // dX += dt·A
            else {
                float *dxd = cp_arena_floats(scratch, (size_t)(N * C), "LoRA dropout gradient");
                if (!dxd) return CP_ERR;
                cp_matmul_nn(dxd, dt, a->A->data, N, r, C, 0);
                const cp_dropout d = dropout_site(run, a); /* the forward's mask, drawn again */
                cp_dropout_apply(&d, dxd, dxd, 0, N, C);
                cp_add_inplace(dX, dxd, N * C);
            }
        }
    }
    return CP_OK;
}

static cp_status embedding_backward(const cp_lora_layer *layer, const cp_run *run, const cp_module *m, const float *dY,
                                    const int64_t *ids, int64_t N) {
    const int64_t V = m->in_features, d = m->out_features;
    for (int i = 0; i < layer->n; i++) {
        const cp_lora_adapter *a = layer->adapters[i];
        if (!runs(layer, a)) continue;
        const int64_t r = a->r;
        const float s = (float)a->scaling;
        float *u = cp_arena_floats(run->arena, (size_t)(N * r), "LoRA embedding backward"); // (N, r)
        float *dt = cp_arena_floats(run->arena, (size_t)(N * r), "LoRA embedding backward");
        if (!u || !dt) return CP_ERR;
        // in the forward pass this was u[n,k] = s·A[k, ids[n]], out += u·Bᵀ, so:
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < r; k++) u[n * r + k] = a->A->data[k * V + ids[n]] * s;
        if (a->B->grad) cp_matmul_tn(a->B->grad, dY, u, N, d, r, 1);         // dB (d,r) += dYᵀ·u
        if (a->A->grad) {
            cp_matmul_nn(dt, dY, a->B->data, N, d, r, 0);                     // du = dY·B
            for (int64_t n = 0; n < N; n++)                                   // dA[k, ids[n]] += s·du[n,k]
                for (int64_t k = 0; k < r; k++) a->A->grad[k * V + ids[n]] += s * dt[n * r + k];
        }
    }
    return CP_OK;
}

/* The hook operations: each side path's scratch (dropout masks, the rank-r activations, the
 * mixed-batch gathers) goes back to the arena when it returns. The backward pass regenerates the
 * dropout mask from its seed, so nothing of it needs to live from the forward to the backward. */
static cp_status hook_linear_forward(const cp_hook *h, const cp_run *run, const cp_module *m, float *out, const float *in,
                                     int64_t N) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = linear_add((const cp_lora_layer *)h, run, m, out, in, N);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status hook_embedding_forward(const cp_hook *h, const cp_run *run, const cp_module *m, float *out,
                                        const int64_t *ids, int64_t N) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = embedding_add((const cp_lora_layer *)h, run, m, out, ids, N);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status hook_linear_backward(const cp_hook *h, const cp_run *run, const cp_module *m, float *dX, const float *dY,
                                      const float *X, int64_t N) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = linear_backward((const cp_lora_layer *)h, run, m, dX, dY, X, N);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status hook_embedding_backward(const cp_hook *h, const cp_run *run, const cp_module *m, const float *dY,
                                         const int64_t *ids, int64_t N) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = embedding_backward((const cp_lora_layer *)h, run, m, dY, ids, N);
    cp_arena_release(run->arena, mark);
    return st;
}

static int hook_trains(const cp_hook *h) {
    const cp_lora_layer *layer = (const cp_lora_layer *)h;
    for (int i = 0; i < layer->n; i++)
        if (layer->adapters[i]->A->grad) return 1;
    return 0;
}

static void hook_free(cp_hook *h) { layer_free((cp_lora_layer *)h); }

const cp_hook_ops cp_lora_hook_ops = {.kind = "lora", .linear_forward = hook_linear_forward,
                                      .linear_backward = hook_linear_backward, .embedding_forward = hook_embedding_forward,
                                      .embedding_backward = hook_embedding_backward, .trains = hook_trains,
                                      .repr = cp_lora_repr, .free = hook_free};

void cp_lora_delta_add(const cp_module *m, const cp_lora_adapter *a, float *dst, float weight) {
    const int64_t r = a->r;
    const float s = (float)a->scaling * weight;
    const float *A = a->A->data, *B = a->B->data;
    if (m->kind == CP_MOD_LINEAR) {
        // W (out, in) += s · B (out, r) · A (r, in)
        const int64_t out = m->out_features, in = m->in_features;
        for (int64_t o = 0; o < out; o++)
            for (int64_t k = 0; k < r; k++) {
                float b = B[o * r + k] * s;
                if (b == 0.0f) continue;
                for (int64_t j = 0; j < in; j++) dst[o * in + j] += b * A[k * in + j];
            }
    } else {
        // Conv1D W (in, out) and Embedding E (V, d): += s · (B·A)ᵀ, i.e. dst[j, o] += s · Σ_k B[o,k] A[k,j]
        const int64_t rows = m->in_features, cols = m->out_features;
        for (int64_t j = 0; j < rows; j++)
            for (int64_t k = 0; k < r; k++) {
                float av = A[k * rows + j] * s;
                if (av == 0.0f) continue;
                for (int64_t o = 0; o < cols; o++) dst[j * cols + o] += av * B[o * r + k];
            }
    }
}

void cp_lora_merge(cp_module *m, cp_lora_adapter *a) {
    if (a->merged) return;
    cp_lora_delta_add(m, a, m->weight->data, 1.0f);
    a->merged = 1;
}

void cp_lora_unmerge(cp_module *m, cp_lora_adapter *a) {
    if (!a->merged) return;
    cp_lora_delta_add(m, a, m->weight->data, -1.0f);
    a->merged = 0;
}
