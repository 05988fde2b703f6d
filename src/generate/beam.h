/*
 * beam.h — transformers' beam search (GenerationMixin._beam_search, transformers 5.23) over any
 * model that can (1) extend each of its rows by one token and give that column's logits, and
 * (2) reorder its rows. The search itself never sees a KV cache, an adapter or an encoder.
 *
 * Rows: R = n·num_beams, row r = beam r % num_beams of prompt r / num_beams.
 *
 * The hook of a model (cp_beam_model):
 *   step(ctx, tokens (R), logits (R,V))   every row takes its next token; logits of that column
 *   reorder(ctx, rows (R))                 row r's state becomes what row rows[r] held (rows[r] is
 *                                          always a row of the same prompt), as
 *                                          Cache.reorder_cache(beam_idx)
 * Before cp_beam_search the caller has run each prompt once (the prefill, not once per beam as
 * transformers' expanded input_ids do: the beams of a prompt start identical) and copied its state
 * to its num_beams rows. A decoder-only model's state is its KV cache (models/kv_cache.h:
 * cp_kv_cache_gather for the copy, cp_kv_cache_reorder for reorder; generate.c). An encoder–decoder
 * adds the encoder output / cross-attention keys and values: they are per prompt, identical for the
 * beams of a prompt, so reorder may leave them alone and index them by row / num_beams (or copy them
 * per row at the prefill and reorder them too); only the decoder's self-attention cache must follow
 * `rows`. Its "prompt" below is the decoder's input so far (decoder_start_token_id: Tp = 1).
 *
 * Each step, as transformers: log_softmax of the logits (f32), the processors on the log-probs
 * (repetition penalty over the row's sequence without its left padding, as 5.x's
 * prompt_ignore_length; no_repeat_ngram_size over the whole row, padding included; forced BOS / EOS),
 * plus the beam's
 * running score; the best K = max(2, 1 + n_eos)·num_beams of the prompt's num_beams·V candidates;
 * candidates ending in eos, or reaching max_new_tokens, that rank among the first num_beams become
 * finished hypotheses (score / generated_length^length_penalty) if they beat the worst kept one; the
 * best num_beams unfinished candidates run on. A prompt is done by the early-stopping rule
 * (cp_generate_options.early_stopping); the search ends when every prompt is done, or early_stopping
 * is true and every prompt has num_beams hypotheses, or every candidate stopped.
 */
#ifndef CP_GENERATE_BEAM_H
#define CP_GENERATE_BEAM_H

#include <stdint.h>

#include "cpeft.h"
#include "core/error.h"

typedef struct cp_beam_model {
    void *ctx;
    int64_t V;
    cp_status (*step)(void *ctx, const int32_t *tokens, float *logits);
    cp_status (*reorder)(void *ctx, const int64_t *rows);
} cp_beam_model;

typedef struct cp_beam_params {
    int64_t num_beams, num_return_sequences;
    int64_t max_new_tokens;       /* ≥ 1; the last step's candidates all finish */
    double length_penalty;
    int early_stopping;           /* CP_EARLY_STOPPING_* */
    int64_t no_repeat_ngram_size; /* 0 = off */
    float repetition_penalty;     /* 1 = off */
    const int32_t *eos;           /* n_eos ids */
    int n_eos;
    int32_t forced_bos, forced_eos; /* ForcedBOS / ForcedEOSTokenLogitsProcessor's ids; < 0 = off (0 is a token:
                                     callers set both) */
    int64_t max_length;           /* the sequences' length at most (Tp + the caller's max_new_tokens), for forced_eos */
} cp_beam_params;

/* Beam search for n prompts. prompt (n, Tp): each prompt's columns left-padded, start[i] its first
 * real column; logits0 (n, V): the logits of each prompt's last column. The model's state holds the
 * R rows already. out (n·num_return_sequences sequences, best first per prompt, with
 * sequences_scores) is filled on success; free with cp_generation_free. */
cp_status cp_beam_search(const cp_beam_model *bm, const cp_beam_params *p, int64_t n, int64_t Tp, const int32_t *prompt,
                         const int64_t *start, const float *logits0, cp_generation *out);

/* NoRepeatNGramLogitsProcessor on one row: seq (len) the row's tokens; every token that would
 * complete an n-gram (n = size) already in seq gets -inf in scores (V). */
void cp_no_repeat_ngram(const int64_t *seq, int64_t len, int64_t size, float *scores, int64_t V);

#endif
