/*
 * pooling.h — one vector per sequence from a model's final hidden states, as sentence-transformers'
 * Pooling and Normalize modules compute it (FEATURE_EXTRACTION: `cpeft embed`).
 *
 *   mean   Σ_t h[b,t]·mask[b,t] / max(Σ_t mask[b,t], 1e-9)   (pooling_mode_mean_tokens)
 *   cls    h[b,0]                                             (pooling_mode_cls_token)
 *   last   h[b,t*] with t* the last position whose mask is 1  (pooling_mode_lasttoken; a row
 *          that is all padding takes position 0)
 *   normalize  x / max(‖x‖₂, 1e-12)                           (torch.nn.functional.normalize)
 *
 * Forward only: embeddings are an inference output.
 */
#ifndef CP_NN_POOLING_H
#define CP_NN_POOLING_H

#include <stdint.h>

typedef enum { CP_POOLING_MEAN, CP_POOLING_CLS, CP_POOLING_LAST } cp_pooling_mode;

/* out (B,C) from h (B,T,C) and mask (B,T) (NULL: every position real). */
void cp_pool_sequences(float *out, const float *h, const int64_t *mask, int64_t B, int64_t T, int64_t C,
                       cp_pooling_mode mode);

/* Each of the n rows of x (n,C) divided by its L2 norm (at least 1e-12), in place. */
void cp_l2_normalize_rows(float *x, int64_t n, int64_t C);

#endif
