/*
 * seq2seq_generate.h — generate() for encoder-decoder models (cp_arch.encoder_decoder), called by
 * cp_model_generate (generate.c) after its checks; see seq2seq_generate.c.
 */
#ifndef CP_GENERATE_SEQ2SEQ_GENERATE_H
#define CP_GENERATE_SEQ2SEQ_GENERATE_H

#include "cpeft.h"
#include "generate/sampling.h"

/* prompts are the encoder's inputs; out->tokens[i] the decoder's new tokens (out allocated by the caller). */
cp_status cp_seq2seq_generate(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                              const cp_generate_options *o, cp_generation *out);

/* Beam search (o->num_beams > 1, o->max_new_tokens ≥ 1) through generate/beam.h: the encoder once per
 * prompt, its states copied to the prompt's beams, the decoder's self-attention cache reordered with them.
 * out is filled as cp_beam_search fills it. */
cp_status cp_seq2seq_generate_beams(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                                    const cp_generate_options *o, cp_generation *out);

/* Shared with the decoder-only loop (generate.c): row r's next token *tok. scores (V, the row's
 * logits) are processed in place in generate()'s order (repetition penalty over seen (V), no-repeat
 * n-grams over seq[0..len), forced BOS / EOS at length len of max_length, the warpers), the token is
 * sampled with rng and appended to row r of out (cap_tokens[r]: the room out->tokens[r] has, grown as
 * needed), and *finished is set (out->finish[r] with it) on an eos id, on_token's stop or a stop string
 * in the row's decoded new text. */
cp_status cp_generation_next(const cp_generate_options *o, float *scores, int64_t V, const uint8_t *seen, const int64_t *seq,
                             int64_t len, int64_t max_length, cp_sampling_scratch *scratch, cp_rng *rng,
                             cp_generation *out, int32_t *cap_tokens, int64_t r, int *finished, int64_t *tok);

#endif
