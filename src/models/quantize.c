/*
 * quantize.c — `--quantize`: frozen matrix weights quantized at load, see quantize.h.
 *
 * Each weight is read as f32 (cp_param_export: F32 as mapped, F16/BF16 widened), transposed when
 * it is a Conv1D's, quantized row by row in parallel (io/ggml_quant.c's reference quantizers) into
 * an owned buffer, and becomes the parameter's `stored` values (stored_dtype the quantized format,
 * data NULL). Nothing else changes: the products take the weight through nn/linear.c's
 * cp_linear_weight, merging dequantizes it (cp_param_make_writable), and a merged checkpoint
 * writes every weight dequantized to the checkpoint's dtype (cp_param_export).
 */
#include "models/quantize.h"
#include "core/alloc.h"
#include "io/ggml_quant.h"
#include "models/model.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const struct { const char *name; int flag; cp_dtype dtype; } known[] = {
    {"q8_0", CP_LOAD_QUANTIZE_Q8_0, CP_Q8_0},
    {"q4_k", CP_LOAD_QUANTIZE_Q4_K, CP_Q4_K},
};

cp_status cp_quantize_flag(const char *name, int *flag) {
    char low[16];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof low; i++) low[i] = (char)tolower((unsigned char)name[i]);
    low[i] = '\0';
    for (size_t k = 0; k < sizeof known / sizeof *known; k++)
        if (!name[i] && !strcmp(low, known[k].name)) { *flag = known[k].flag; return CP_OK; }
    return cp_error("--quantize %s: unknown type (known: q8_0, q4_k)", name);
}

cp_dtype cp_quantize_dtype_of_flags(int flags) {
    for (size_t k = 0; k < sizeof known / sizeof *known; k++)
        if (flags & known[k].flag) return known[k].dtype;
    return CP_F32;
}

/* Hands the pages wholly inside [p, p + n) back (a mapping's pages are read again if touched). */
static void release_pages(const void *p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + page - 1) / page * page,
                    b = ((uintptr_t)p + n) / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

typedef struct {
    cp_model *m;
    cp_dtype dtype;
    int n_quantized, n_fallback, n_kept;
    int64_t bytes_before, bytes_after;
    cp_status st;
} quant_ctx;

static int is_head(const cp_model *m, const cp_module *mod) {
    return mod == m->lm_head || mod == m->head.classifier || mod == m->head.dense;
}

static int tied_to_by_other(cp_module *root, const cp_param *p);

static cp_status quantize_param(quant_ctx *c, cp_module *mod) {
    cp_param *p = mod->weight;
    const int conv = mod->kind == CP_MOD_CONV1D;
    const int64_t C = mod->in_features, OC = mod->out_features;
    cp_dtype dt = c->dtype;
    if (C % cp_dtype_block_elems(dt)) {
        if (dt == CP_Q4_K && C % cp_dtype_block_elems(CP_Q4_1) == 0) dt = CP_Q4_1, c->n_fallback++;
        else { c->n_kept++; return CP_OK; }
    }
    float *f = cp_malloc((size_t)(C * OC) * sizeof *f, p->name), *rows = f;
    if (!f) return CP_ERR;
    cp_param_export(p, CP_F32, f); // f: p's shape, (OC,C) for Linear, (C,OC) for Conv1D
    if (conv) {
        if (!(rows = cp_malloc((size_t)(C * OC) * sizeof *rows, p->name))) { cp_free(f); return CP_ERR; }
        for (int64_t k = 0; k < C; k++)
            for (int64_t o = 0; o < OC; o++) rows[o * C + k] = f[k * OC + o]; // rows (OC,C)
    }
    const int64_t rb = cp_dtype_nbytes(dt, C);
    uint8_t *q = cp_malloc((size_t)(rb * OC), p->name);
    if (!q) { cp_free(f); if (rows != f) cp_free(rows); return CP_ERR; }
    const int type = cp_ggml_type_of(dt);
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t o = 0; o < OC; o++) cp_ggml_quantize_row(type, rows + o * C, q + o * rb, C);
    if (rows != f) cp_free(rows);
    cp_free(f);
    c->bytes_before += p->data ? p->numel * 4 : cp_dtype_nbytes(p->stored_dtype, p->numel);
    c->bytes_after += rb * OC;
    if (p->owns_data) cp_free(p->data);
    else if (p->data) release_pages(p->data, (size_t)p->numel * 4);
    if (p->stored && !p->owns_stored) release_pages(p->stored, (size_t)cp_dtype_nbytes(p->stored_dtype, p->numel));
    else if (p->owns_stored) cp_free((void *)p->stored);
    p->data = NULL;
    p->owns_data = 0;
    p->stored = q;
    p->stored_dtype = dt;
    p->stored_transposed = conv;
    p->owns_stored = 1;
    c->n_quantized++;
    return CP_OK;
}

static int visit(cp_module *mod, void *vctx) {
    quant_ctx *c = vctx;
    if ((mod->kind != CP_MOD_LINEAR && mod->kind != CP_MOD_CONV1D) || !mod->weight || is_head(c->m, mod)) return 0;
    cp_param *p = mod->weight;
    if (p->tied_to || !cp_param_bound(p) || cp_dtype_is_quantized(p->stored_dtype) || tied_to_by_other(c->m->root, p)) return 0;
    if (quantize_param(c, mod) != CP_OK) { c->st = CP_ERR; return 1; }
    return 0;
}

typedef struct { const cp_param *p; int found; } tie_ctx;
static int find_tie(cp_module *mod, void *vctx) {
    tie_ctx *t = vctx;
    t->found |= (mod->weight && mod->weight->tied_to == t->p) || (mod->bias && mod->bias->tied_to == t->p);
    return t->found;
}
static int tied_to_by_other(cp_module *root, const cp_param *p) {
    tie_ctx t = {p, 0};
    cp_module_visit(root, find_tie, &t);
    return t.found;
}

cp_status cp_model_quantize(cp_model *m, cp_dtype dtype) {
    if (dtype != CP_Q8_0 && dtype != CP_Q4_K)
        return cp_error("%s: quantizing at load to %s is not supported (q8_0, q4_k)", m->dir, cp_dtype_name(dtype));
    quant_ctx c = {.m = m, .dtype = dtype, .st = CP_OK};
    cp_module_visit(m->root, visit, &c);
    if (c.st != CP_OK) return CP_ERR;
    if (c.n_fallback || c.n_kept)
        cp_warn("%s: --quantize %s: %d of %d weights have rows that are not whole %s blocks: %d quantized to Q4_1, %d kept as "
                "they are", m->dir, cp_dtype_name(dtype), c.n_fallback + c.n_kept, c.n_quantized + c.n_kept,
                cp_dtype_name(dtype), c.n_fallback, c.n_kept);
    return CP_OK;
}
