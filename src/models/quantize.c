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

/* Row o (cols values) of p as f32 into buf, or a pointer into p's f32 data. p is not a Conv1D's. */
static const float *row_of(const cp_param *p, int64_t o, int64_t cols, float *buf) {
    if (p->data) return p->data + o * cols;
    cp_param_row_f32(p, o, buf, 0); /* F16/BF16 widened */
    return buf;
}

#define QUANT_CHUNK_ROWS 2048 /* rows read (and their mapped pages handed back) at a time */

/* Quantizes p, (rows, cols) as its products read it (a Conv1D's (C,OC) weight: rows = OC, cols = C,
 * transposed first), to c->dtype in place of its values; see quantize.h. */
static cp_status quantize_param(quant_ctx *c, cp_param *p, int64_t rows, int64_t cols, int conv) {
    cp_dtype dt = c->dtype;
    const int64_t C = cols, OC = rows;
    if (C % cp_dtype_block_elems(dt)) {
        if (dt == CP_Q4_K && C % cp_dtype_block_elems(CP_Q4_1) == 0) dt = CP_Q4_1, c->n_fallback++;
        else { c->n_kept++; return CP_OK; }
    }
    const int64_t rb = cp_dtype_nbytes(dt, C);
    uint8_t *q = cp_malloc((size_t)(rb * OC), p->name);
    if (!q) return CP_ERR;
    const int type = cp_ggml_type_of(dt);
    if (conv) { /* the whole (C,OC) weight as f32, transposed into rows (OC,C) */
        float *f = cp_malloc((size_t)(C * OC) * sizeof *f, p->name), *t = f ? cp_malloc((size_t)(C * OC) * sizeof *t, p->name) : NULL;
        if (!t) { cp_free(f); cp_free(q); return CP_ERR; }
        cp_param_export(p, CP_F32, f);
        for (int64_t k = 0; k < C; k++)
            for (int64_t o = 0; o < OC; o++) t[o * C + k] = f[k * OC + o];
        cp_free(f);
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t o = 0; o < OC; o++) cp_ggml_quantize_row(type, t + o * C, q + o * rb, C);
        cp_free(t);
    } else { /* row by row from the values as they lie (no f32 copy of the matrix) */
        const int64_t eb = p->data ? 4 : cp_dtype_nbytes(p->stored_dtype, C) / C;
        for (int64_t o0 = 0; o0 < OC; o0 += QUANT_CHUNK_ROWS) {
            const int64_t o1 = o0 + QUANT_CHUNK_ROWS < OC ? o0 + QUANT_CHUNK_ROWS : OC;
#pragma omp parallel
            {
                float *buf = p->data ? NULL : malloc((size_t)C * sizeof *buf);
#pragma omp for schedule(dynamic, 16)
                for (int64_t o = o0; o < o1; o++) cp_ggml_quantize_row(type, row_of(p, o, C, buf), q + o * rb, C);
                free(buf);
            }
            /* a mapped checkpoint's pages of these rows are not needed any more */
            const void *v = p->data ? (const void *)p->data : p->stored;
            if (!(p->data ? p->owns_data : p->owns_stored)) release_pages((const char *)v + o0 * C * eb, (size_t)((o1 - o0) * C * eb));
        }
    }
    c->bytes_before += p->data ? p->numel * 4 : cp_dtype_nbytes(p->stored_dtype, p->numel);
    c->bytes_after += rb * OC;
    if (p->owns_data) cp_free(p->data);
    else if (p->data) release_pages(p->data, (size_t)p->numel * 4);
    if (p->stored && !p->owns_stored) release_pages(p->stored, (size_t)cp_dtype_nbytes(p->stored_dtype, p->numel));
    else if (p->owns_stored) cp_free((void *)p->stored);
    cp_param_drop_panels(p);
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
    if (quantize_param(c, p, mod->out_features, mod->in_features, mod->kind == CP_MOD_CONV1D) != CP_OK) { c->st = CP_ERR; return 1; }
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
    m->quantize_dtype = dtype; /* the token embedding and LM head follow when training starts (cp_model_quantize_embeddings) */
    cp_module_visit(m->root, visit, &c);
    if (c.st != CP_OK) return CP_ERR;
    if (c.n_fallback || c.n_kept)
        cp_warn("%s: --quantize %s: %d of %d weights have rows that are not whole %s blocks: %d quantized to Q4_1, %d kept as "
                "they are", m->dir, cp_dtype_name(dtype), c.n_fallback + c.n_kept, c.n_quantized + c.n_kept,
                cp_dtype_name(dtype), c.n_fallback, c.n_kept);
    return CP_OK;
}

/* ---- the token embedding and the LM head (cp_model_quantize_embeddings) ----------------------- */

typedef struct { cp_param *p; } retie_ctx;
static int retie(cp_module *mod, void *vctx) {
    cp_param *target = ((retie_ctx *)vctx)->p, *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++)
        if (ps[i] && ps[i] != target && ps[i]->tied_to == target) {
            cp_param_drop_panels(ps[i]); /* packed from the values just replaced */
            cp_param_tie(ps[i], target);
        }
    return 0;
}

static int is_trained(const cp_param *p, cp_param *const *trained, int n) {
    if (p->grad) return 1;
    for (int i = 0; i < n; i++)
        if (trained[i] == p || trained[i]->tied_to == p || (p->tied_to && trained[i] == p->tied_to)) return 1;
    return 0;
}

typedef struct { quant_ctx *c; cp_param *const *trained; int n_trained; } emb_ctx;

static int visit_embedding(cp_module *mod, void *vctx) {
    emb_ctx *e = vctx;
    quant_ctx *c = e->c;
    const int token = mod->kind == CP_MOD_EMBEDDING && mod->in_features == c->m->config.vocab_size,
              head = mod == c->m->lm_head && mod->kind == CP_MOD_LINEAR;
    cp_param *p = mod->weight;
    if (!(token || head) || !p || p->ndim != 2 || p->tied_to || !cp_param_bound(p) || cp_dtype_is_quantized(p->stored_dtype) ||
        is_trained(p, e->trained, e->n_trained))
        return 0;
    /* an embedding (V,C) and a Linear head (V,C) are both read a row of C values at a time */
    if (quantize_param(c, p, p->shape[0], p->shape[1], 0) != CP_OK) { c->st = CP_ERR; return 1; }
    retie_ctx r = {p};
    cp_module_visit(c->m->root, retie, &r); /* a tied LM head takes the quantized values */
    return 0;
}

cp_status cp_model_quantize_embeddings(cp_model *m, cp_param *const *trained, int n_trained, int64_t *saved_bytes) {
    if (saved_bytes) *saved_bytes = 0;
    if (!cp_dtype_is_quantized(m->quantize_dtype) || !m->quantize_embeddings) return CP_OK; /* 0 (calloc): none */
    quant_ctx c = {.m = m, .dtype = m->quantize_dtype, .st = CP_OK};
    emb_ctx e = {&c, trained, n_trained};
    cp_module_visit(m->root, visit_embedding, &e);
    if (c.st != CP_OK) return CP_ERR;
    if (c.n_kept)
        cp_warn("%s: --quantize %s: %d embedding / LM head weights have rows that are not whole blocks and stay as they are",
                m->dir, cp_dtype_name(m->quantize_dtype), c.n_kept);
    if (saved_bytes) *saved_bytes = c.bytes_before - c.bytes_after;
    return CP_OK;
}
