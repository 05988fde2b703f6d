/*
 * bf16.c — bf16 compute for a model's frozen weights; see bf16.h.
 */
#include "models/bf16.h"
#include "core/alloc.h"
#include "core/error.h"
#include "kernels/dispatch.h"
#include "kernels/gemm_bf16.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    cp_param *const *trained; /* the parameters the run trains */
    int n_trained;
    cp_param **shared; /* parameters some other parameter is tied to */
    int n_shared;
    int64_t narrowed;
    cp_status st;
} bf16_ctx;

static int is_shared(const bf16_ctx *c, const cp_param *p) {
    for (int i = 0; i < c->n_shared; i++)
        if (c->shared[i] == p) return 1;
    return 0;
}

static int is_trained(const bf16_ctx *c, const cp_param *p) {
    for (int i = 0; i < c->n_trained; i++)
        if (c->trained[i] == p || c->trained[i] == p->tied_to) return 1;
    return 0;
}

/* Drops the resident pages wholly inside [p, p + n) of a read-only file mapping (re-read if touched). */
static void drop_pages(const void *p, size_t n) {
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    const uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    const uintptr_t b = ((uintptr_t)p + n) / (uintptr_t)page * (uintptr_t)page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int visit(cp_module *mod, void *vctx) {
    bf16_ctx *c = vctx;
    if (mod->kind != CP_MOD_LINEAR && mod->kind != CP_MOD_CONV1D) return 0;
    cp_param *p = mod->weight;
    if (!p || p->ndim != 2 || p->grad || is_trained(c, p) || !cp_param_bound(p)) return 0;
    p->round_bf16 = 1;
    if (!p->data || p->tied_to || is_shared(c, p)) return 0; /* stored 16-bit, or shared: rounded as read */
    uint16_t *b = cp_alloc_aligned((size_t)p->numel * sizeof *b, p->name);
    if (!b) { c->st = CP_ERR; return 1; }
    cp_convert_from_f32(b, CP_BF16, p->data, (size_t)p->numel);
    if (p->owns_data) cp_free(p->data);
    else drop_pages(p->data, (size_t)p->numel * sizeof(float));
    p->data = NULL;
    p->owns_data = 0;
    p->stored = b;
    p->owns_stored = 1;
    p->stored_dtype = CP_BF16;
    p->source_dtype = CP_BF16;
    c->narrowed += p->numel * (int64_t)(sizeof(float) - sizeof *b);
    return 0;
}

static int collect_shared(cp_module *mod, void *vctx) {
    bf16_ctx *c = vctx;
    cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++)
        if (ps[i] && ps[i]->tied_to && c->n_shared < 64) c->shared[c->n_shared++] = ps[i]->tied_to;
    return 0;
}

cp_status cp_model_use_bf16(cp_model *m, cp_param *const *trained, int n_trained, int64_t *narrowed_bytes) {
    cp_param *shared[64];
    bf16_ctx c = {trained, n_trained, shared, 0, 0, CP_OK};
    cp_module_visit(m->root, collect_shared, &c);
    if (!cp_gemm_bf16_native() || cp_kernels()->isa != CP_ISA_AVX512) /* CPEFT_ISA may ask for a lower variant */
        cp_warn("--bf16: no AVX-512 BF16 (vdpbf16ps) on this CPU or in the kernel variant CPEFT_ISA chose: the bf16 products are emulated (the same values up to "
                "the order of the f32 sums), slower than f32");
    cp_module_visit(m->root, visit, &c);
    if (narrowed_bytes) *narrowed_bytes = c.narrowed;
    return c.st;
}
