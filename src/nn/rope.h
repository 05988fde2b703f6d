/*
 * rope.h — rotary position embeddings in the rotate-half layout (Llama, Mistral, Qwen2, NeoX):
 * for k < d/2, with c = cos θ[p,k], s = sin θ[p,k],
 *   out[k] = x[k]·c − x[k+d/2]·s,   out[k+d/2] = x[k+d/2]·c + x[k]·s,
 * θ[p,k] = p · inv_freq[k], inv_freq[k] = 1 / base^(2k/d), with the rope_scaling variants
 * transformers implements (linear, dynamic NTK, llama3). See reference/architectures.md §0.5.
 *
 * Partial rotary (GPT-NeoX's rotary_pct, Phi's partial_rotary_factor, GPT-J's rotary_dim): only the
 * first `rot` of each head's hs dims turn (d = rot above; the tables are (N, rot/2)), the rest pass.
 * Interleaved pairs (GPT-J's rotate_every_two) turn dims (2k, 2k+1) instead of (k, k+rot/2):
 *   out[2k] = x[2k]·c − x[2k+1]·s,   out[2k+1] = x[2k+1]·c + x[2k]·s.
 */
#ifndef CP_NN_ROPE_H
#define CP_NN_ROPE_H

#include <stdint.h>

#include "core/error.h"

typedef enum { CP_ROPE_DEFAULT, CP_ROPE_LINEAR, CP_ROPE_DYNAMIC, CP_ROPE_LLAMA3 } cp_rope_type;

typedef struct {
    int64_t dim;                  /* rotary dimension (= head_dim) */
    double theta;                 /* base */
    cp_rope_type type;
    double factor, low_freq_factor, high_freq_factor;
    int64_t original_max_positions; /* llama3 */
    int64_t max_positions;        /* dynamic: the trained context */
} cp_rope;

/* "linear" -> CP_ROPE_LINEAR ("default" and NULL -> default); -1 when unknown. */
int cp_rope_type_from_name(const char *name);
/* cos/sin tables (N, dim/2) for the positions pos (N). seq_len is the sequence length that
 * dynamic scaling looks at (max position + 1). */
void cp_rope_tables(const cp_rope *r, const int64_t *pos, int64_t N, int64_t seq_len, float *cos_t, float *sin_t);
/* Rotates NH heads of hs values in place in x (N rows of stride `stride`). */
void cp_rope_forward(float *x, int64_t N, int64_t NH, int64_t hs, int64_t stride, const float *cos_t, const float *sin_t);
/* Backward in place: the transpose rotation. */
void cp_rope_backward(float *dx, int64_t N, int64_t NH, int64_t hs, int64_t stride, const float *cos_t, const float *sin_t);
/* The same on the first `rot` dims of each head (rot even, ≤ hs), in halves or interleaved pairs;
 * tables (N, rot/2). cp_rope_forward is rot = hs, halves. */
void cp_rope_forward_partial(float *x, int64_t N, int64_t NH, int64_t hs, int64_t stride, int64_t rot, int interleaved,
                             const float *cos_t, const float *sin_t);
void cp_rope_backward_partial(float *dx, int64_t N, int64_t NH, int64_t hs, int64_t stride, int64_t rot, int interleaved,
                              const float *cos_t, const float *sin_t);

#endif
