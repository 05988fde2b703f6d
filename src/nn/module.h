/*
 * module.h — the module tree: a loaded model as the tree of named modules PyTorch would build,
 * named exactly as the Hugging Face state dict names them.
 *
 * Every module has a local name ("q_proj", "0"), a full path ("transformer.h.0.attn.attention.q_proj")
 * and the class name its PyTorch counterpart has ("Linear", "GPTNeoBlock"). Leaves are the primitive
 * kinds cpeft computes with (Linear, Conv1D, Embedding, LayerNorm, Dropout, activations); containers
 * only group. Parameters carry their state-dict names ("<path>.weight"). The tree is built from the
 * config alone (shapes, no data) so that counting and printing work without weights; binding the
 * checkpoint then points each parameter at its data.
 *
 * PEFT's target matching, adapter key names, merging and the printed repr all work on these names.
 */
#ifndef CP_NN_MODULE_H
#define CP_NN_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/error.h"
#include "nn/activation.h"

typedef enum {
    CP_MOD_CONTAINER,  /* a plain nn.Module grouping children */
    CP_MOD_LIST,       /* nn.ModuleList: children named "0", "1", ... */
    CP_MOD_LINEAR,     /* nn.Linear: weight [out, in], optional bias [out] */
    CP_MOD_CONV1D,     /* transformers Conv1D: weight [in, out], bias [out] */
    CP_MOD_EMBEDDING,  /* nn.Embedding: weight [num_embeddings, embedding_dim] */
    CP_MOD_LAYERNORM,  /* nn.LayerNorm: weight, bias [C] */
    CP_MOD_RMSNORM,    /* LlamaRMSNorm and kin: weight [C] */
    CP_MOD_DROPOUT,    /* nn.Dropout(p) */
    CP_MOD_ACTIVATION, /* an activation module (NewGELUActivation, ...) */
    CP_MOD_CONV,       /* nn.Conv1d, stride 1, zero padding (kernel_size − 1) / 2: weight [out, in/groups, kernel], bias [out] */
} cp_module_kind;

typedef struct cp_param {
    char *name;              /* state-dict name, e.g. "transformer.wte.weight" */
    int ndim;                /* 1, 2, or 3 (nn.Conv1d's weight) */
    int64_t shape[3];
    int64_t numel;
    float *data;             /* f32 values; NULL until bound (or when built from config only), and
                                while the values are kept as `stored` */
    const void *stored;      /* the checkpoint's F16/BF16 values, used in place (memory-mapped, read
                                only) by a matrix weight no one writes: the GEMMs and the embedding
                                gather widen them as they read. NULL when `data` holds the values. */
    cp_dtype stored_dtype;   /* what `stored` holds: F16/BF16 (= source_dtype), or a quantized format
                                (Q8_0, Q4_K, ...: a weight quantized at load, models/quantize.c) */
    int stored_transposed;   /* `stored` holds the (out,in) transpose of a Conv1D weight: a quantized
                                weight is always stored NT, rows of whole blocks */
    int owns_stored;         /* `stored` was allocated (quantized at load, or an f32 weight narrowed to BF16 by
                                --bf16), freed with the parameter */
    int owns_data;           /* data was allocated (widened from F16/BF16, or copied) */
    int round_bf16;          /* products with this weight in bf16 (--bf16: models/bf16.h) */
    uint32_t *bf16_panels[2]; /* round_bf16: the values packed once for the AVX-512 BF16 kernel (owned; [0] the
                                forward product's, [1] the input gradient's, kernels/gemm.h's cp_weight), or
                                NULL; dropped whenever the values change (cp_param_drop_panels) */
    cp_dtype source_dtype;   /* dtype in the checkpoint file (CP_F32 when unbound) */
    struct cp_param *tied_to; /* shares data with that parameter; counted once, as PyTorch does */
    int requires_grad;
    float *grad;             /* gradient, same shape; non-NULL exactly while the parameter is trained */
} cp_param;

struct cp_hook;            /* src/models/hook.h: what PEFT methods attach; nn/ never looks inside */

typedef struct cp_module {
    char *name, *path, *class_name;
    cp_module_kind kind;
    struct cp_module *parent;
    struct cp_module **children;
    int n_children, cap_children;
    cp_param *weight, *bias;   /* leaves only */
    int64_t in_features, out_features; /* Linear/Conv1D; Embedding: num_embeddings, embedding_dim */
    int64_t padding_idx;       /* Embedding: the row nn.Embedding(padding_idx=...) gets no gradient for; -1 none */
    double eps;                /* LayerNorm */
    int unit_offset;           /* RMSNorm: scale by (1 + weight), Gemma's RMSNorm (weight initialised to 0) */
    double p;                  /* Dropout */
    cp_activation activation;  /* ACTIVATION */
    int64_t kernel_size, groups; /* CONV */
    struct cp_hook *hooks;     /* PEFT methods attached here (LoRA layers, modules_to_save copies), in attach order */
} cp_module;

/* Whether p has values (f32 data, or stored F16/BF16 ones). */
static inline int cp_param_bound(const cp_param *p) { return p->data != NULL || p->stored != NULL; }
/* Whether a and b hold the very same values (one tensor, as tied parameters do). */
static inline int cp_param_same_values(const cp_param *a, const cp_param *b) {
    return a->data == b->data && a->stored == b->stored;
}
/* Writes p's numel values into dst as `dtype` (F32, F16 or BF16), from whichever form p holds
 * them in (a quantized one dequantized, in p's own shape); narrowing rounds to nearest even, as
 * torch's .to() does. */
void cp_param_export(const cp_param *p, cp_dtype dtype, void *dst);
/* Row r of a 2-D parameter (shape[1] values) widened into dst as f32; accumulate adds it. */
void cp_param_row_f32(const cp_param *p, int64_t r, float *dst, int accumulate);

/* A free-standing parameter named `name` of shape (d0) or (d0, d1) with zeroed, owned f32 data. */
cp_param *cp_param_new(const char *name, int ndim, int64_t d0, int64_t d1);
/* The same with like's shape (any ndim). */
cp_param *cp_param_new_like(const char *name, const cp_param *like);
void cp_param_free(cp_param *p);
/* Frees p's packed bf16 panels (the values are about to change, or memory is wanted back). */
void cp_param_drop_panels(cp_param *p);

/* Construction. Each returns the new child (owned by `parent`) or NULL with an error set.
 * A NULL parent makes a root whose path is "". */
cp_module *cp_module_new(cp_module *parent, const char *name, const char *class_name, cp_module_kind kind);
cp_module *cp_module_linear(cp_module *parent, const char *name, int64_t in, int64_t out, int bias);
cp_module *cp_module_conv1d(cp_module *parent, const char *name, int64_t in, int64_t out);
/* nn.Conv1d(in, out, kernel, padding=(kernel - 1) / 2, groups=groups) with a bias. */
cp_module *cp_module_conv(cp_module *parent, const char *name, int64_t in, int64_t out, int64_t kernel, int64_t groups);
cp_module *cp_module_embedding(cp_module *parent, const char *name, int64_t num, int64_t dim);
/* A bare nn.Parameter of shape (d0) registered on the container m as "<path>.<name>", in m's first
 * free parameter slot (weight, then bias), so that named_parameters lists it before m's children as
 * PyTorch does (DeBERTa's q_bias and v_bias on DisentangledSelfAttention). */
cp_param *cp_module_own_param(cp_module *m, const char *name, int64_t d0);
cp_module *cp_module_layernorm(cp_module *parent, const char *name, int64_t dim, double eps);
/* The same with elementwise_affine = affine: 0 gives a LayerNorm without weight and bias (OPT's
 * layer_norm_elementwise_affine false), normalisation alone. */
cp_module *cp_module_layernorm_affine(cp_module *parent, const char *name, int64_t dim, double eps, int affine);
cp_module *cp_module_rmsnorm(cp_module *parent, const char *name, const char *class_name, int64_t dim, double eps);
cp_module *cp_module_dropout(cp_module *parent, const char *name, double p);
cp_module *cp_module_activation(cp_module *parent, const char *name, cp_activation act);
void cp_module_free(cp_module *m);

/* Child by local name, or module by dotted path relative to `root` (NULL when absent). */
cp_module *cp_module_child(const cp_module *m, const char *name);
cp_module *cp_module_find(const cp_module *root, const char *path);

/* Depth-first pre-order visit of every module; stops early when fn returns non-zero. */
typedef int (*cp_module_visit_fn)(cp_module *m, void *ctx);
int cp_module_visit(cp_module *root, cp_module_visit_fn fn, void *ctx);

/* Every parameter in registration order (PyTorch's named_parameters order, tied ones included).
 * *out is allocated (free with cp_free). */
cp_status cp_module_params(cp_module *root, cp_param ***out, int *n);
/* Parameter count as sum(p.numel() for p in model.parameters()): tied parameters once. */
int64_t cp_module_num_parameters(cp_module *root);

/* The repr PyTorch prints for this module (print(model)), as a malloc'd string. `wrap`, when
 * non-NULL, is asked first for every module printed (m and its descendants): a non-NULL answer is
 * that module's repr (how PEFT's wrapper classes print, src/models/hook.h), NULL prints it plainly. */
typedef char *(*cp_repr_wrap_fn)(const cp_module *m, void *ctx);
char *cp_module_repr_with(const cp_module *m, cp_repr_wrap_fn wrap, void *ctx);
/* m's own repr, not asking `wrap` about m itself (its children still are). */
char *cp_module_repr_plain_with(const cp_module *m, cp_repr_wrap_fn wrap, void *ctx);
/* Both without wrappers. */
char *cp_module_repr(const cp_module *m);
char *cp_module_repr_plain(const cp_module *m);

#endif
