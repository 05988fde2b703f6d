/*
 * sampling.h — choosing the next token from one row of logits, as transformers' generate() does:
 * its logits processors and warpers in its order, then argmax (greedy) or a draw (sampling).
 *
 *   repetition penalty   every token id already in the row's sequence (the prompt included, its
 *                        left padding not): s < 0 ? s·penalty : s/penalty      (greedy too)
 *   temperature          s / T                                                 (sampling only)
 *   top-k                s < (k-th largest s) → -inf; ties with the k-th are kept
 *   top-p                sorted ascending, cumulative softmax ≤ 1 − p → -inf; the best token stays
 *
 * Scores are f32 as in PyTorch (the cumulative sum of top-p accumulates in double and rounds to f32
 * per element, as torch.cumsum does on the CPU). Greedy takes the first of equal maxima
 * (torch.argmax). Sampling draws from softmax(scores) with cpeft's seeded stream: reproducible from
 * the seed, but not the draws torch.multinomial would make from torch's generator.
 */
#ifndef CP_GENERATE_SAMPLING_H
#define CP_GENERATE_SAMPLING_H

#include <stdint.h>

#include "core/rng.h"

typedef struct {
    int do_sample;
    float temperature;         /* > 0 */
    int64_t top_k;             /* 0 = off */
    float top_p;               /* (0, 1]; 1 = off */
    float repetition_penalty;  /* > 0; 1 = off */
} cp_sampling_params;

/* A score and its token id (top-p sorts these). */
typedef struct {
    float v;
    int32_t i;
} cp_scored;

/* Scratch for one row of V scores: f holds V floats, items V pairs. */
typedef struct {
    float *f;
    cp_scored *items;
} cp_sampling_scratch;

/* Applies the processors to scores (V) in place. seen (V) flags the ids in the row's sequence (NULL:
 * no repetition penalty). */
void cp_logits_process(const cp_sampling_params *p, float *scores, int64_t V, const uint8_t *seen,
                       cp_sampling_scratch *scratch);
/* ForcedBOSTokenLogitsProcessor, then ForcedEOSTokenLogitsProcessor, on one row of scores (V):
 * cur_len is the row's length so far (the decoder's start token, or the padded prompt, included),
 * max_length its last length (that plus max_new_tokens). When cur_len == 1, every score but
 * bos's is -inf and bos's 0; when cur_len == max_length − 1, the same for eos. An id < 0 is off. */
void cp_forced_tokens(float *scores, int64_t V, int64_t cur_len, int64_t max_length, int32_t bos, int32_t eos);
/* The next token from processed scores: argmax when !p->do_sample, else a draw from their softmax. */
int32_t cp_sample_token(const cp_sampling_params *p, const float *scores, int64_t V, cp_rng *rng);

#endif
