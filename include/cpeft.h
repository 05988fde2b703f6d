/*
 * cpeft.h — the public C API of cpeft: parameter-efficient fine-tuning of Hugging Face
 * transformer models, in C.
 *
 * Conventions: every function that can fail returns cp_status (CP_OK == 0, CP_ERR == -1) and leaves
 * a message naming the file, tensor or field at fault, readable with cp_last_error() on the same
 * thread. Nothing in the library exits or aborts on bad input. Shapes are given in comments with
 * the letters B (batch), T (time), C (channels), V (vocabulary), L (layers).
 */
#ifndef CPEFT_H
#define CPEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CPEFT_VERSION "0.1.0"

#ifndef CP_OK
#define CP_OK 0
#define CP_ERR (-1)
typedef int cp_status;
#endif

/* The last error message on this thread ("" when none). */
const char *cp_last_error(void);
/* Silences (1) or restores (0) warnings printed to stderr. */
void cp_set_quiet(int quiet);

/* ---- models ------------------------------------------------------------------------------------ */

typedef struct cp_model cp_model;

typedef enum {
    CP_LOAD_WEIGHTS = 0,     /* config.json + safetensors weights (the default) */
    CP_LOAD_CONFIG_ONLY = 1, /* config.json only: shapes, counts and the module tree, no data */
} cp_load_flags;

/* Loads a Hugging Face model directory (config.json + model.safetensors or sharded safetensors).
 * F32 weights are memory-mapped in place; F16/BF16 are widened to f32. */
cp_status cp_model_load(cp_model **out, const char *dir, int flags);
void cp_model_free(cp_model *m);

/* A batch of token sequences. Arrays are row-major (B,T); NULL means the default. */
typedef struct cp_batch {
    int64_t B, T;
    const int64_t *input_ids;      /* (B,T) required */
    const int64_t *attention_mask; /* (B,T) 1 = real token, 0 = padding; NULL = all ones */
    const int64_t *position_ids;   /* (B,T) NULL = 0..T-1 for every row, as transformers' forward */
    const int64_t *labels;         /* (B,T) next-token targets before the shift; -100 = ignored; NULL = no loss */
} cp_batch;

typedef struct cp_outputs {
    float *logits;         /* (B,T,V) caller-allocated, or NULL: the loss is then computed in chunks
                              without materialising all logits */
    float *hidden_states;  /* (L+1,B,T,C) caller-allocated or NULL: transformers' output_hidden_states */
    double loss;           /* mean causal-LM cross-entropy over non-ignored targets (labels given) */
    int64_t loss_tokens;   /* number of targets the loss averages over */
} cp_outputs;

/* Runs the causal LM on a batch (eval mode: no dropout). */
cp_status cp_model_forward(cp_model *m, const cp_batch *batch, cp_outputs *out);

/* Sizes. */
int64_t cp_model_vocab_size(const cp_model *m);
int64_t cp_model_hidden_size(const cp_model *m);
int64_t cp_model_num_layers(const cp_model *m);
int64_t cp_model_max_positions(const cp_model *m);
const char *cp_model_type(const cp_model *m);
/* sum(p.numel() for p in model.parameters()): tied weights counted once. */
int64_t cp_model_num_parameters(const cp_model *m);
/* print(model) as PyTorch shows it; caller frees with free(). */
char *cp_model_repr(const cp_model *m);

#ifdef __cplusplus
}
#endif
#endif
