/*
 * ia3.c — (IA)³ adapters on one module: creation and PEFT's initialisation, the scaling hook (the
 * factors models/proj.c applies around the base projection, and the gradients it hands back), merge
 * and unmerge. See ia3.h.
 *
 * PEFT's ia3.Linear.forward, which this follows:
 *   disabled, or any adapter merged:  the base layer alone (merged adapters are in its weights);
 *   otherwise                         s = Π_active ia3_l (in the active set's order), and
 *                                     base(x ∘ s) on a feed-forward module, base(x) ∘ s elsewhere.
 * Under a mixed-adapter batch (adapter_names) PEFT's IA3 runs the active adapters on every row: so
 * does this hook (IA3Model has no _enable_peft_forward_hooks; PeftModel drops adapter_names).
 */
#include "peft/ia3.h"
#include "core/alloc.h"

#include <stdio.h>
#include <string.h>

cp_ia3_layer *cp_ia3_layer_of(const cp_module *m) { return (cp_ia3_layer *)cp_hook_find(m, &cp_ia3_hook_ops); }

cp_ia3_adapter *cp_ia3_find(const cp_module *m, const char *name) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(m);
    for (int i = 0; layer && i < layer->n; i++)
        if (!strcmp(layer->adapters[i]->name, name)) return layer->adapters[i];
    return NULL;
}

static void adapter_free(cp_ia3_adapter *a) {
    cp_param_free(a->l);
    cp_free(a->name);
    cp_free(a);
}

static void layer_free(cp_ia3_layer *layer) {
    for (int i = 0; i < layer->n; i++) adapter_free(layer->adapters[i]);
    cp_free(layer->adapters);
    cp_free(layer);
}

cp_status cp_ia3_add(cp_module *m, const char *name, int is_feedforward, int fan_in_fan_out, int init_ones, cp_rng *rng) {
    if (m->kind != CP_MOD_LINEAR && m->kind != CP_MOD_CONV1D)
        return cp_error("%s: IA3 supports Linear and Conv1D modules, not %s", m->path, m->class_name);
    if (cp_ia3_find(m, name)) return cp_error("%s: adapter \"%s\" already exists", m->path, name);
    cp_ia3_layer *layer = cp_ia3_layer_of(m);
    int fresh = 0;
    if (!layer) {
        if (!(layer = cp_calloc(1, sizeof *layer, "an IA3 layer"))) return CP_ERR;
        layer->hook.ops = &cp_ia3_hook_ops;
        layer->is_feedforward = is_feedforward;
        layer->fan_in_fan_out = fan_in_fan_out;
        fresh = 1;
    }
    if (layer->n == layer->cap) {
        int cap = layer->cap ? 2 * layer->cap : 2;
        cp_ia3_adapter **ad = cp_realloc(layer->adapters, (size_t)cap * sizeof *ad, "IA3 adapters");
        if (!ad) { if (fresh) layer_free(layer); return CP_ERR; }
        layer->adapters = ad;
        layer->cap = cap;
    }
    cp_ia3_adapter *a = cp_calloc(1, sizeof *a, "an IA3 adapter");
    size_t len = strlen(m->path) + strlen(name) + 16;
    char *pname = cp_malloc(len, "a parameter name");
    if (a && pname) {
        snprintf(pname, len, "%s.ia3_l.%s", m->path, name); /* a ParameterDict entry */
        a->name = cp_strdup(name);
        // ia3_l (1, in) scales the input of a feed-forward module, (out, 1) the output of the others
        a->l = layer->is_feedforward ? cp_param_new(pname, 2, 1, m->in_features) : cp_param_new(pname, 2, m->out_features, 1);
    }
    cp_free(pname);
    if (!a || !a->name || !a->l) {
        if (a) { cp_param_free(a->l); cp_free(a->name); cp_free(a); }
        if (fresh) layer_free(layer);
        return CP_ERR;
    }
    for (int64_t i = 0; i < a->l->numel; i++) a->l->data[i] = init_ones ? 1.0f : cp_rng_normal(rng);
    layer->adapters[layer->n++] = a;
    if (fresh) cp_hook_attach(m, &layer->hook);
    return CP_OK;
}

void cp_ia3_remove(cp_module *m, const char *name) {
    cp_ia3_layer *layer = cp_ia3_layer_of(m);
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

/* ---- the scaling hook ---------------------------------------------------------------------------- */

static int any_merged(const cp_ia3_layer *layer) {
    for (int i = 0; i < layer->n; i++)
        if (layer->adapters[i]->merged) return 1;
    return 0;
}

/* The adapters that run, in the active set's order: out[0..n). */
static int running(const cp_ia3_layer *layer, const cp_ia3_adapter **out) {
    if (layer->disabled || any_merged(layer)) return 0;
    int n = 0;
    for (int i = 0; i < layer->n; i++)
        if (layer->adapters[i]->active) out[n++] = layer->adapters[i];
    for (int i = 1; i < n; i++) /* insertion sort by position in the active set */
        for (int k = i; k > 0 && out[k - 1]->active > out[k]->active; k--) {
            const cp_ia3_adapter *t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
    return n;
}

static cp_status hook_scale(const cp_hook *h, const cp_run *run, const cp_module *m, const float **s_in, const float **s_out) {
    const cp_ia3_layer *layer = (const cp_ia3_layer *)h;
    *s_in = *s_out = NULL;
    const cp_ia3_adapter **act = cp_arena_alloc(run->arena, (size_t)(layer->n ? layer->n : 1) * sizeof *act, "IA3 adapters");
    if (!act) return CP_ERR;
    const int n = running(layer, act);
    if (n == 0) return CP_OK;
    const float *s = act[0]->l->data;
    if (n > 1) {
        // s (K) = ia3_l[0] ∘ ia3_l[1] ∘ ... (PEFT: ia3_scaling *= ia3_l.flatten())
        const int64_t K = act[0]->l->numel;
        float *p = cp_arena_floats(run->arena, (size_t)K, "IA3 scaling");
        if (!p) return CP_ERR;
        memcpy(p, s, (size_t)K * sizeof *p);
        for (int k = 1; k < n; k++)
            for (int64_t j = 0; j < K; j++) p[j] *= act[k]->l->data[j];
        s = p;
    }
    if (layer->is_feedforward) *s_in = s;
    else *s_out = s;
    return CP_OK;
}

/* In the forward pass this was s = Π_k l_k, so dl_a = ds ∘ Π_{k≠a} l_k, for each adapter that trains. */
static cp_status hook_scale_backward(const cp_hook *h, const cp_run *run, const cp_module *m, const float *d_in,
                                     const float *d_out) {
    const cp_ia3_layer *layer = (const cp_ia3_layer *)h;
    const float *ds = layer->is_feedforward ? d_in : d_out;
    if (!ds) return CP_OK;
    const cp_ia3_adapter **act = cp_arena_alloc(run->arena, (size_t)(layer->n ? layer->n : 1) * sizeof *act, "IA3 adapters");
    if (!act) return CP_ERR;
    const int n = running(layer, act);
    for (int a = 0; a < n; a++) {
        float *g = act[a]->l->grad;
        if (!g) continue;
        const int64_t K = act[a]->l->numel;
        for (int64_t j = 0; j < K; j++) {
            float others = 1.0f;
            for (int k = 0; k < n; k++)
                if (k != a) others *= act[k]->l->data[j];
            g[j] += ds[j] * others;
        }
    }
    return CP_OK;
}

static int hook_trains(const cp_hook *h) {
    const cp_ia3_layer *layer = (const cp_ia3_layer *)h;
    for (int i = 0; i < layer->n; i++)
        if (layer->adapters[i]->l->grad) return 1;
    return 0;
}

static void hook_free(cp_hook *h) { layer_free((cp_ia3_layer *)h); }

const cp_hook_ops cp_ia3_hook_ops = {.kind = "ia3", .linear_scale = hook_scale, .linear_scale_backward = hook_scale_backward,
                                     .trains = hook_trains, .repr = cp_ia3_repr, .free = hook_free};

/* ---- merging ------------------------------------------------------------------------------------- */

/* W ∘= f(l) (divide: W ⊘= l + 1e-8), l broadcast over the base weight's layout: Linear W (out, in)
 * scales rows (attention) or columns (feed-forward); Conv1D W (in, out) the other way round (PEFT's
 * transpose(ia3_l, fan_in_fan_out)). Attention targets scale the bias the same way. */
static void apply(cp_module *m, const cp_ia3_layer *layer, const cp_ia3_adapter *a, int divide) {
    const float *l = a->l->data;
    float *W = m->weight->data;
    const int64_t in = m->in_features, out = m->out_features;
    const int conv1d = m->kind == CP_MOD_CONV1D;
    const int64_t rows = conv1d ? in : out, cols = conv1d ? out : in;
    /* which index of W[r, c] the vector runs along: the input feature for feed-forward modules */
    const int by_col = layer->is_feedforward != conv1d;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const float f = l[by_col ? c : r];
            W[r * cols + c] = divide ? W[r * cols + c] / (f + 1e-8f) : W[r * cols + c] * f;
        }
    if (!layer->is_feedforward && m->bias)
        for (int64_t o = 0; o < out; o++) m->bias->data[o] = divide ? m->bias->data[o] / (l[o] + 1e-8f) : m->bias->data[o] * l[o];
}

void cp_ia3_merge(cp_module *m, cp_ia3_adapter *a) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(m);
    if (!layer || a->merged) return;
    apply(m, layer, a, 0);
    a->merged = 1;
}

void cp_ia3_unmerge(cp_module *m, cp_ia3_adapter *a) {
    const cp_ia3_layer *layer = cp_ia3_layer_of(m);
    if (!layer || !a->merged) return;
    apply(m, layer, a, 1);
    a->merged = 0;
}
