/*
 * module.c — the module tree: construction, lookup, traversal, counting, and PyTorch's repr.
 *
 * The repr follows torch.nn.Module.__repr__ exactly: "Class(" + extra_repr / children each as
 * "(name): <child repr>" indented by two spaces + ")"; a leaf with only an extra_repr prints it
 * inline. ModuleList folds runs of children whose reprs are identical into "(0-23): 24 x Block(".
 */
#include "nn/module.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "core/strbuf.h"
#include "io/ggml_quant.h"

#include <stdlib.h>

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* A parameter named `name` (owned by it) of shape (d0) or (d0, d1), no data yet. */
static cp_param *param_named(char *name, int ndim, int64_t d0, int64_t d1) {
    cp_param *p = name ? cp_calloc(1, sizeof *p, "a parameter") : NULL;
    if (!p) { cp_free(name); return NULL; }
    p->name = name;
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 1;
    p->shape[2] = 1;
    p->numel = ndim > 1 ? d0 * d1 : d0;
    p->source_dtype = CP_F32;
    p->requires_grad = 1;
    return p;
}

/* Parameter "<m's path>.<suffix>", bound later. */
static cp_param *param_new(cp_module *m, const char *suffix, int ndim, int64_t d0, int64_t d1) {
    size_t n = strlen(m->path) + strlen(suffix) + 2;
    char *name = cp_malloc(n, "a parameter name");
    if (name) snprintf(name, n, "%s%s%s", m->path, m->path[0] ? "." : "", suffix);
    return param_named(name, ndim, d0, d1);
}

cp_param *cp_param_new(const char *name, int ndim, int64_t d0, int64_t d1) {
    cp_param *p = param_named(cp_strdup(name), ndim, d0, d1);
    if (!p) return NULL;
    p->data = cp_alloc_aligned((size_t)p->numel * sizeof(float), name);
    p->owns_data = 1;
    if (!p->data) { cp_free(p->name); cp_free(p); return NULL; }
    return p;
}

void cp_param_drop_panels(cp_param *p) {
    for (int i = 0; i < 2; i++) {
        cp_free(p->bf16_panels[i]);
        p->bf16_panels[i] = NULL;
    }
}

void cp_param_free(cp_param *p) {
    if (!p) return;
    cp_param_drop_panels(p);
    if (p->owns_data) cp_free(p->data);
    if (p->owns_stored) cp_free((void *)p->stored);
    cp_free(p->grad);
    cp_free(p->name);
    cp_free(p);
}

#define param_free cp_param_free

/* A quantized `stored` dequantized into dst as `dtype`, in p's shape (a Conv1D transpose undone). */
static void export_quantized(const cp_param *p, cp_dtype dtype, void *dst) {
    const size_t n = (size_t)p->numel;
    float *f = dtype == CP_F32 && !p->stored_transposed ? dst : malloc(n * sizeof *f);
    if (!f) { cp_error("%s: no memory to dequantize", p->name); memset(dst, 0, (size_t)cp_dtype_nbytes(dtype, p->numel)); return; }
    cp_ggml_dequantize_row(cp_ggml_type_of(p->stored_dtype), p->stored, f, p->numel);
    if (p->stored_transposed) { /* f (OC,C) -> p's (C,OC) */
        const int64_t C = p->shape[0], OC = p->shape[1];
        float *t = malloc(n * sizeof *t);
        if (!t) { cp_error("%s: no memory to dequantize", p->name); free(f); memset(dst, 0, (size_t)cp_dtype_nbytes(dtype, p->numel)); return; }
        for (int64_t o = 0; o < OC; o++)
            for (int64_t c = 0; c < C; c++) t[c * OC + o] = f[o * C + c];
        free(f);
        f = t;
    }
    if (f != dst) {
        cp_convert_from_f32(dst, dtype, f, n);
        free(f);
    }
}

void cp_param_export(const cp_param *p, cp_dtype dtype, void *dst) {
    const size_t n = (size_t)p->numel;
    if (p->data) {
        if (dtype == CP_F32) memcpy(dst, p->data, n * sizeof(float));
        else cp_convert_from_f32(dst, dtype, p->data, n);
    } else if (cp_dtype_is_quantized(p->stored_dtype)) {
        export_quantized(p, dtype, dst);
    } else if (dtype == p->source_dtype) {
        memcpy(dst, p->stored, (size_t)cp_dtype_nbytes(dtype, p->numel));
    } else if (dtype == CP_F32) {
        cp_convert_to_f32(dst, p->stored, p->source_dtype, n);
    } else { /* F16 <-> BF16 through f32, a block at a time */
        float buf[256];
        const int64_t w = (int64_t)cp_dtype_bits(p->source_dtype) / 8, wd = (int64_t)cp_dtype_bits(dtype) / 8;
        for (size_t i = 0; i < n; i += 256) {
            const size_t k = n - i < 256 ? n - i : 256;
            cp_convert_to_f32(buf, (const char *)p->stored + i * (size_t)w, p->source_dtype, k);
            cp_convert_from_f32((char *)dst + i * (size_t)wd, dtype, buf, k);
        }
    }
}

void cp_param_row_f32(const cp_param *p, int64_t r, float *dst, int accumulate) {
    const int64_t C = p->shape[1];
    if (p->data) {
        const float *row = p->data + r * C;
        if (accumulate) for (int64_t c = 0; c < C; c++) dst[c] += row[c];
        else memcpy(dst, row, (size_t)C * sizeof *dst);
        return;
    }
    if (cp_dtype_is_quantized(p->stored_dtype)) { /* a GGUF's quantized embedding: ggml's dequantization of row r */
        float buf[C];
        cp_ggml_dequantize_row(cp_ggml_type_of(p->stored_dtype), (const char *)p->stored + r * cp_dtype_nbytes(p->stored_dtype, C),
                               accumulate ? buf : dst, C);
        if (accumulate) for (int64_t c = 0; c < C; c++) dst[c] += buf[c];
        return;
    }
    const uint16_t *row = (const uint16_t *)p->stored + r * C;
    float (*widen)(uint16_t) = p->source_dtype == CP_BF16 ? cp_bf16_to_f32 : cp_f16_to_f32;
    for (int64_t c = 0; c < C; c++) dst[c] = accumulate ? dst[c] + widen(row[c]) : widen(row[c]);
}


cp_param *cp_param_new_like(const char *name, const cp_param *like) {
    cp_param *p = cp_param_new(name, 1, like->numel, 0);
    if (!p) return NULL;
    p->ndim = like->ndim;
    memcpy(p->shape, like->shape, sizeof p->shape);
    return p;
}

cp_module *cp_module_new(cp_module *parent, const char *name, const char *class_name, cp_module_kind kind) {
    cp_module *m = cp_calloc(1, sizeof *m, "a module");
    if (!m) return NULL;
    m->kind = kind;
    m->name = cp_strdup(name);
    m->class_name = cp_strdup(class_name);
    if (parent && parent->path[0]) {
        size_t n = strlen(parent->path) + strlen(name) + 2;
        m->path = cp_malloc(n, "a module path");
        if (m->path) snprintf(m->path, n, "%s.%s", parent->path, name);
    } else {
        m->path = cp_strdup(parent ? name : "");
    }
    if (!m->name || !m->class_name || !m->path) { cp_module_free(m); return NULL; }
    if (parent) {
        if (parent->n_children == parent->cap_children) {
            int cap = parent->cap_children ? parent->cap_children * 2 : 4;
            cp_module **c = cp_realloc(parent->children, (size_t)cap * sizeof *c, "module children");
            if (!c) { cp_module_free(m); return NULL; }
            parent->children = c;
            parent->cap_children = cap;
        }
        parent->children[parent->n_children++] = m;
        m->parent = parent;
    }
    return m;
}

/* A leaf holding a (rows, cols) weight that maps `in` features to `out`. */
static cp_module *matrix_leaf(cp_module *parent, const char *name, const char *class_name, cp_module_kind kind,
                              int64_t in, int64_t out, int64_t rows, int64_t cols) {
    cp_module *m = cp_module_new(parent, name, class_name, kind);
    if (!m) return NULL;
    m->in_features = in;
    m->out_features = out;
    return (m->weight = param_new(m, "weight", 2, rows, cols)) ? m : NULL;
}

cp_module *cp_module_linear(cp_module *parent, const char *name, int64_t in, int64_t out, int bias) {
    cp_module *m = matrix_leaf(parent, name, "Linear", CP_MOD_LINEAR, in, out, out, in); /* weight (out, in) */
    if (m && bias && !(m->bias = param_new(m, "bias", 1, out, 0))) return NULL;
    return m;
}

cp_module *cp_module_conv1d(cp_module *parent, const char *name, int64_t in, int64_t out) {
    cp_module *m = matrix_leaf(parent, name, "Conv1D", CP_MOD_CONV1D, in, out, in, out); /* weight (in, out) */
    if (m && !(m->bias = param_new(m, "bias", 1, out, 0))) return NULL;
    return m;
}

cp_module *cp_module_conv(cp_module *parent, const char *name, int64_t in, int64_t out, int64_t kernel, int64_t groups) {
    cp_module *m = cp_module_new(parent, name, "Conv1d", CP_MOD_CONV);
    if (!m) return NULL;
    m->in_features = in;
    m->out_features = out;
    m->kernel_size = kernel;
    m->groups = groups;
    if (!(m->weight = param_new(m, "weight", 2, out, in / groups))) return NULL;
    m->weight->ndim = 3; /* [out, in/groups, kernel] */
    m->weight->shape[2] = kernel;
    m->weight->numel *= kernel;
    return (m->bias = param_new(m, "bias", 1, out, 0)) ? m : NULL;
}

cp_module *cp_module_embedding(cp_module *parent, const char *name, int64_t num, int64_t dim) {
    cp_module *m = matrix_leaf(parent, name, "Embedding", CP_MOD_EMBEDDING, num, dim, num, dim); /* weight (num, dim) */
    if (m) m->padding_idx = -1;
    return m;
}

cp_param *cp_module_own_param(cp_module *m, const char *name, int64_t d0) {
    cp_param **slot = !m->weight ? &m->weight : !m->bias ? &m->bias : NULL;
    if (!slot) { cp_error("%s: a module holds at most two parameters of its own", m->path); return NULL; }
    return *slot = param_new(m, name, 1, d0, 0);
}

cp_module *cp_module_layernorm(cp_module *parent, const char *name, int64_t dim, double eps) {
    return cp_module_layernorm_affine(parent, name, dim, eps, 1);
}

cp_module *cp_module_layernorm_affine(cp_module *parent, const char *name, int64_t dim, double eps, int affine) {
    cp_module *m = cp_module_new(parent, name, "LayerNorm", CP_MOD_LAYERNORM);
    if (!m) return NULL;
    m->in_features = m->out_features = dim;
    m->eps = eps;
    if (!affine) return m; /* elementwise_affine=False: neither weight nor bias */
    if (!(m->weight = param_new(m, "weight", 1, dim, 0))) return NULL;
    if (!(m->bias = param_new(m, "bias", 1, dim, 0))) return NULL;
    return m;
}

cp_module *cp_module_rmsnorm(cp_module *parent, const char *name, const char *class_name, int64_t dim, double eps) {
    cp_module *m = cp_module_new(parent, name, class_name, CP_MOD_RMSNORM);
    if (!m) return NULL;
    m->in_features = m->out_features = dim;
    m->eps = eps;
    if (!(m->weight = param_new(m, "weight", 1, dim, 0))) return NULL;
    return m;
}

cp_module *cp_module_dropout(cp_module *parent, const char *name, double p) {
    cp_module *m = cp_module_new(parent, name, "Dropout", CP_MOD_DROPOUT);
    if (m) m->p = p;
    return m;
}

cp_module *cp_module_activation(cp_module *parent, const char *name, cp_activation act) {
    cp_module *m = cp_module_new(parent, name, cp_activation_class_name(act), CP_MOD_ACTIVATION);
    if (m) m->activation = act;
    return m;
}

void cp_module_free(cp_module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) cp_module_free(m->children[i]);
    cp_free(m->children);
    param_free(m->weight);
    param_free(m->bias);
    cp_free(m->name);
    cp_free(m->path);
    cp_free(m->class_name);
    cp_free(m);
}

cp_module *cp_module_child(const cp_module *m, const char *name) {
    for (int i = 0; i < m->n_children; i++)
        if (strcmp(m->children[i]->name, name) == 0) return m->children[i];
    return NULL;
}

cp_module *cp_module_find(const cp_module *root, const char *path) {
    const cp_module *m = root;
    const char *s = path;
    char part[256];
    while (m && *s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (n >= sizeof part) return NULL;
        memcpy(part, s, n);
        part[n] = '\0';
        m = cp_module_child(m, part);
        s = dot ? dot + 1 : s + n;
    }
    return (cp_module *)m;
}

int cp_module_visit(cp_module *root, cp_module_visit_fn fn, void *ctx) {
    int r = fn(root, ctx);
    if (r) return r;
    for (int i = 0; i < root->n_children; i++)
        if ((r = cp_module_visit(root->children[i], fn, ctx))) return r;
    return 0;
}

typedef struct { cp_param **list; int n, cap, failed; } param_list;

static int collect_params(cp_module *m, void *ctx) {
    param_list *pl = ctx;
    cp_param *ps[2] = {m->weight, m->bias};
    for (int i = 0; i < 2; i++) {
        if (!ps[i]) continue;
        if (pl->n == pl->cap) {
            int cap = pl->cap ? pl->cap * 2 : 64;
            cp_param **l = cp_realloc(pl->list, (size_t)cap * sizeof *l, "the parameter list");
            if (!l) { pl->failed = 1; return 1; }
            pl->list = l;
            pl->cap = cap;
        }
        pl->list[pl->n++] = ps[i];
    }
    return 0;
}

cp_status cp_module_params(cp_module *root, cp_param ***out, int *n) {
    param_list pl = {0};
    cp_module_visit(root, collect_params, &pl);
    if (pl.failed) { cp_free(pl.list); return CP_ERR; }
    *out = pl.list;
    *n = pl.n;
    return CP_OK;
}

int64_t cp_module_num_parameters(cp_module *root) {
    cp_param **ps;
    int n;
    if (cp_module_params(root, &ps, &n) != CP_OK) return -1;
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        if (!ps[i]->tied_to) total += ps[i]->numel;
    cp_free(ps);
    return total;
}

/* ---- repr ------------------------------------------------------------------------------------ */

static void extra_repr(const cp_module *m, cp_strbuf *sb) {
    char f[40];
    switch (m->kind) {
    case CP_MOD_LINEAR:
        cp_sb_printf(sb, "in_features=%lld, out_features=%lld, bias=%s", (long long)m->in_features,
                     (long long)m->out_features, m->bias ? "True" : "False");
        break;
    case CP_MOD_CONV1D:
        cp_sb_printf(sb, "nf=%lld, nx=%lld", (long long)m->out_features, (long long)m->in_features);
        break;
    case CP_MOD_CONV: /* torch's _ConvNd.extra_repr: padding when not 0, groups when not 1 */
        cp_sb_printf(sb, "%lld, %lld, kernel_size=(%lld,), stride=(1,)", (long long)m->in_features, (long long)m->out_features,
                     (long long)m->kernel_size);
        if ((m->kernel_size - 1) / 2) cp_sb_printf(sb, ", padding=(%lld,)", (long long)((m->kernel_size - 1) / 2));
        if (m->groups != 1) cp_sb_printf(sb, ", groups=%lld", (long long)m->groups);
        break;
    case CP_MOD_EMBEDDING:
        cp_sb_printf(sb, "%lld, %lld", (long long)m->in_features, (long long)m->out_features);
        if (m->padding_idx >= 0) cp_sb_printf(sb, ", padding_idx=%lld", (long long)m->padding_idx);
        break;
    case CP_MOD_LAYERNORM:
        if (strcmp(m->class_name, "LayerNorm") != 0) break; /* a model's own LayerNorm class (DebertaLayerNorm) has no extra_repr */
        cp_sb_printf(sb, "(%lld,), eps=%s, elementwise_affine=%s, bias=%s", (long long)m->in_features,
                     cp_py_float_repr(m->eps, f, sizeof f), m->weight ? "True" : "False", m->bias ? "True" : "False");
        break;
    case CP_MOD_RMSNORM: /* LlamaRMSNorm's extra_repr; T5LayerNorm (and MT5LayerNorm) has none */
        if (strlen(m->class_name) >= 11 && !strcmp(m->class_name + strlen(m->class_name) - 11, "T5LayerNorm")) break;
        cp_sb_printf(sb, "(%lld,), eps=%s", (long long)m->in_features, cp_py_float_repr(m->eps, f, sizeof f));
        break;
    case CP_MOD_DROPOUT:
        cp_sb_printf(sb, "p=%s, inplace=False", cp_py_float_repr(m->p, f, sizeof f));
        break;
    default:
        break;
    }
}


static char *list_repr(const cp_module *m, cp_repr_wrap_fn wrap, void *ctx) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, m->class_name);
    if (m->n_children == 0) { cp_sb_append(&sb, "()"); return cp_sb_finish(&sb); }
    char **reprs = cp_calloc((size_t)m->n_children, sizeof *reprs, "module reprs");
    if (!reprs) return NULL;
    for (int i = 0; i < m->n_children; i++) reprs[i] = cp_module_repr_with(m->children[i], wrap, ctx);
    cp_sb_append(&sb, "(");
    for (int start = 0; start < m->n_children;) {
        int end = start;
        while (end + 1 < m->n_children && reprs[end + 1] && reprs[start] &&
               strcmp(reprs[end + 1], reprs[start]) == 0)
            end++;
        cp_strbuf line;
        cp_sb_init(&line);
        if (start == end) cp_sb_printf(&line, "(%d): %s", start, reprs[start] ? reprs[start] : "?");
        else cp_sb_printf(&line, "(%d-%d): %d x %s", start, end, end - start + 1, reprs[start] ? reprs[start] : "?");
        char *l = cp_sb_finish(&line);
        cp_sb_append(&sb, "\n  ");
        if (l) cp_sb_append_indented(&sb, l, 2);
        cp_free(l);
        start = end + 1;
    }
    cp_sb_append(&sb, "\n)");
    for (int i = 0; i < m->n_children; i++) cp_free(reprs[i]);
    cp_free(reprs);
    return cp_sb_finish(&sb);
}

char *cp_module_repr_with(const cp_module *m, cp_repr_wrap_fn wrap, void *ctx) {
    char *wrapped = wrap ? wrap(m, ctx) : NULL;
    return wrapped ? wrapped : cp_module_repr_plain_with(m, wrap, ctx);
}

char *cp_module_repr(const cp_module *m) { return cp_module_repr_with(m, NULL, NULL); }
char *cp_module_repr_plain(const cp_module *m) { return cp_module_repr_plain_with(m, NULL, NULL); }

char *cp_module_repr_plain_with(const cp_module *m, cp_repr_wrap_fn wrap, void *ctx) {
    if (m->kind == CP_MOD_LIST) return list_repr(m, wrap, ctx);
    cp_strbuf extra, sb;
    cp_sb_init(&extra);
    cp_sb_init(&sb);
    extra_repr(m, &extra);
    cp_sb_append(&sb, m->class_name);
    cp_sb_append(&sb, "(");
    if (m->n_children == 0) {
        if (extra.len) cp_sb_append(&sb, extra.data);
    } else {
        if (extra.len) { cp_sb_append(&sb, "\n  "); cp_sb_append(&sb, extra.data); }
        for (int i = 0; i < m->n_children; i++) {
            char *child = cp_module_repr_with(m->children[i], wrap, ctx);
            cp_sb_printf(&sb, "\n  (%s): ", m->children[i]->name);
            if (child) cp_sb_append_indented(&sb, child, 2);
            cp_free(child);
        }
        cp_sb_append(&sb, "\n");
    }
    cp_sb_append(&sb, ")");
    cp_sb_free(&extra);
    return cp_sb_finish(&sb);
}
