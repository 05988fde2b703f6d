/*
 * gemm.h — every matrix product of the model goes through here: a layer's input times its weight
 * (forward), the output gradient times the weight (the input gradient), the weight gradient, and
 * the general strided f32 products of attention.
 *
 * Weights keep the dtype they have in the checkpoint (F32, F16 or BF16, memory-mapped where
 * possible); activations, outputs and gradients are f32. A weight is passed as a descriptor
 * (cp_weight: pointer, dtype, layout, sizes) and the kernel widens it as it reads it, so a BF16
 * checkpoint is never held twice. Widening is exact: a product with a BF16/F16 weight equals the
 * f32 product with the widened weight up to the order of the sums.
 *
 * The products are run by a backend, one table of functions (cp_gemm_ops). "cpu" is built in
 * (kernels/gemm_cpu.c): F32 through OpenBLAS's sgemm and the few-row kernels of kernels/skinny.h,
 * with the same calls and row thresholds nn/linear.c used, so f32 results are bit-identical to
 * before; BF16/F16 weights through sgemm on panels widened into scratch for many rows, and through
 * kernels that read the 16-bit weights directly for few rows (a decoding step). Another backend (a
 * quantized kernel, a GPU) registers its own table; a weight dtype the active backend does not
 * support is multiplied by "cpu". Models never name a backend, only these entry points.
 *
 * Threading: the entry points may be called from any thread, concurrently; each runs its own
 * OpenMP loops. Registering and choosing a backend (cp_gemm_register, cp_gemm_use) must happen
 * before products run, not during.
 *
 * Not here: what a weight is in the model (nn/module.h's cp_param describes itself as a cp_weight).
 */
#ifndef CP_KERNELS_GEMM_H
#define CP_KERNELS_GEMM_H

#include "core/dtype.h"
#include "core/error.h"

#include <stdint.h>

/* How a weight is stored, and so which product the layer applies. */
typedef enum {
    CP_WEIGHT_NT, /* stored (OC, C): y = x·Wᵀ (nn.Linear, Embedding as a tied LM head, LoRA's A and B) */
    CP_WEIGHT_NN, /* stored (C, OC): y = x·W (transformers' Conv1D, GPT-2) */
} cp_weight_layout;

/* A weight operand: a dense row-major matrix of `dtype` elements (F32 4-byte aligned; F16/BF16
 * 2-byte aligned). The product maps C input features to OC output features. */
typedef struct {
    const void *data;
    cp_dtype dtype;          /* CP_F32, CP_F16, CP_BF16, or a quantized one (NT only) (cp_gemm_supports) */
    cp_weight_layout layout;
    int64_t in, out;         /* C and OC */
    int round_bf16;          /* 0: exact (the weight widened, X as it is); 1: bf16 compute (--bf16, autocast):
                                X and the weight rounded to bf16, products summed in f32 (gemm_bf16.h) */
    const uint32_t *bf16_panels[2]; /* round_bf16 only: the weight packed once for the AVX-512 BF16 kernel
                                (cp_gemm_bf16_pack), [0] as the forward product reads it, [1] as the input
                                gradient's does; NULL: packed per call (models/bf16.c decides) */
    int act8;                /* inference only, a quantized weight's forward with few rows: 1 lets the backend
                                round X to 8 bits per block and sum integer products (llama.cpp's way,
                                kernels/quant_dot.h); 0: exact. The input gradient is always exact. */
} cp_weight;

/* Descriptors for a weight stored (OC,C) and for one stored (C,OC). */
static inline cp_weight cp_weight_nt(const void *data, cp_dtype dtype, int64_t in, int64_t out) {
    cp_weight w = {data, dtype, CP_WEIGHT_NT, in, out, 0, {NULL, NULL}, 0};
    return w;
}
static inline cp_weight cp_weight_nn(const void *data, cp_dtype dtype, int64_t in, int64_t out) {
    cp_weight w = {data, dtype, CP_WEIGHT_NN, in, out, 0, {NULL, NULL}, 0};
    return w;
}
/* Output features [o0, o0 + n) of an NT weight (its rows: a vocabulary chunk of the LM head). */
cp_weight cp_weight_out_rows(const cp_weight *w, int64_t o0, int64_t n);

/* ---- the products (all pointers: no aliasing between inputs and outputs) ----------------------- */

/* out (N,OC) (+)= X (N,C) · W as the layer applies it: X·Wᵀ for NT, X·W for NN. */
void cp_gemm_forward(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate);

/* dX (N,C) (+)= dY (N,OC) · the transposed product: dY·W for NT, dY·Wᵀ for NN. */
void cp_gemm_backward_input(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate);

/* out (C,OC) (+)= a (N,C)ᵀ · b (N,OC), all f32: a weight gradient, dW = Xᵀ·dY (NN) or dYᵀ·X (NT). */
void cp_gemm_weight_grad(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate);

/* C (M,N) = alpha · op(A) · op(B) + beta · C, all f32 row-major with leading dimensions; op(A) is
 * A (M,K), or Aᵀ with A stored (K,M) when trans_a (likewise B): cblas_sgemm's contract, for the
 * activation × activation products of attention (per-head blocks of strided Q, K, V). */
void cp_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Whether the products take weights of this dtype (F32, F16, BF16; Q8_0, Q4_0, Q4_1, Q4_K, Q6_K,
 * Q5_0, Q5_1, Q5_K stored NT, rows of whole blocks: kernels/gemm_quant.h); check at load time. */
int cp_gemm_supports(cp_dtype dtype);

/* ---- backends ---------------------------------------------------------------------------------- */

/* One backend: each member computes exactly what the entry point of the same name documents. */
typedef struct cp_gemm_ops {
    const char *name; /* "cpu", ... */
    int (*supports)(cp_dtype weight_dtype);
    void (*forward)(float *out, const float *X, const cp_weight *W, int64_t N, int accumulate);
    void (*backward_input)(float *dX, const float *dY, const cp_weight *W, int64_t N, int accumulate);
    void (*weight_grad)(float *out, const float *a, const float *b, int64_t N, int64_t C, int64_t OC, int accumulate);
    void (*f32)(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
} cp_gemm_ops;

/* Adds a backend (the table must outlive the process's products). Fails on a taken name or when
 * the registry (8 entries) is full. */
cp_status cp_gemm_register(const cp_gemm_ops *ops);
/* The backend registered under `name` ("cpu" is always there), or NULL. */
const cp_gemm_ops *cp_gemm_find(const char *name);
/* Makes `name` the backend of every product from now on. The first product chooses the backend
 * named by the environment variable CPEFT_GEMM, else "cpu". */
cp_status cp_gemm_use(const char *name);
/* The backend in use. */
const cp_gemm_ops *cp_gemm_active(void);

#endif
