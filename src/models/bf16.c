/*
 * bf16.c — bf16 compute for a model's frozen weights; see bf16.h.
 */
#include "models/bf16.h"
#include "core/alloc.h"
#include "core/error.h"
#include "kernels/dispatch.h"
#include "kernels/gemm_bf16.h"
#include "nn/linear.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    cp_model *m;
    int pack; /* the AVX-512 BF16 kernel runs: pack the panels once */
    cp_param *const *trained; /* the parameters the run trains */
    int n_trained;
    cp_param **shared; /* parameters some other parameter is tied to */
    int n_shared;
    int64_t narrowed, packed;
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

/* Packs the panels of p's products once (gemm_bf16.h), as they would be packed per call: the one
 * that reads the weight across its rows (the forward product of a Linear, the input gradient of a
 * Conv1D: a gather per pair) for every weight, and both for the LM head, whose products run on
 * chunks of 128 rows. The other one packs contiguous rows per call: cheap against its product, and
 * holding it too would cost another bf16 copy of every weight. */
static cp_status pack_panels(bf16_ctx *c, cp_module *mod, cp_param *p) {
    if (!c->pack || cp_dtype_is_quantized(p->data ? CP_F32 : p->stored_dtype)) return CP_OK;
    const cp_weight w = cp_linear_weight(mod);
    const int nt = w.layout == CP_WEIGHT_NT, head = mod == c->m->lm_head;
    for (int i = 0; i < 2; i++) {
        const int nn = i == 0 ? !nt : nt; /* forward: X·Wᵀ reads W (OC,C) as NT; input gradient the other way */
        if (nn && !head) continue;
        const int64_t K = i == 0 ? w.in : w.out, M = i == 0 ? w.out : w.in;
        uint32_t *b = cp_alloc_aligned((size_t)cp_gemm_bf16_panel_words(K, M) * sizeof *b, p->name);
        if (!b) return CP_ERR;
        cp_gemm_bf16_pack(b, w.data, w.dtype, nn, K, M);
        cp_free(p->bf16_panels[i]);
        p->bf16_panels[i] = b;
        c->packed += cp_gemm_bf16_panel_words(K, M) * 4;
    }
    return CP_OK;
}

static int visit(cp_module *mod, void *vctx) {
    bf16_ctx *c = vctx;
    if (mod->kind != CP_MOD_LINEAR && mod->kind != CP_MOD_CONV1D) return 0;
    cp_param *p = mod->weight;
    if (!p || p->ndim != 2 || p->grad || is_trained(c, p) || !cp_param_bound(p)) return 0;
    p->round_bf16 = 1;
    if (!p->data || p->tied_to || is_shared(c, p)) { /* stored 16-bit, or shared: rounded as read */
        if (pack_panels(c, mod, p) != CP_OK) { c->st = CP_ERR; return 1; }
        return 0;
    }
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
    if (pack_panels(c, mod, p) != CP_OK) { c->st = CP_ERR; return 1; }
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
    const int native = cp_gemm_bf16_native() && cp_kernels()->isa == CP_ISA_AVX512; /* CPEFT_ISA may ask for a lower variant */
    bf16_ctx c = {m, native && !getenv("CPEFT_BF16_NO_CACHE"), trained, n_trained, shared, 0, 0, 0, CP_OK};
    cp_module_visit(m->root, collect_shared, &c);
    if (!native)
        cp_warn("--bf16: no AVX-512 BF16 (vdpbf16ps) on this CPU or in the kernel variant CPEFT_ISA chose: the bf16 products are emulated (the same values up to "
                "the order of the f32 sums), slower than f32");
    cp_module_visit(m->root, visit, &c);
    if (narrowed_bytes) *narrowed_bytes = c.narrowed;
    return c.st;
}
