/*
 * seq2seq_generate.c — transformers' generate() for encoder-decoder models (T5, mT5): the prompts are
 * the encoder's input, run once (right-padded: with relative positions and masked padding keys the
 * side does not change the encoder's states); the decoder starts every row at decoder_start_token_id
 * (generation_config.json's, else config.json's) and adds one token per step with its self-attention
 * cache and the cross-attention keys / values of the first step (models/seq2seq.c). Greedy or sampled
 * as the decoder-only loop (sampling.h: the repetition penalty sees the decoder's sequence, start token
 * included, as transformers' decoder input_ids); rows stop at an eos id, a stop string, the caller's
 * callback or max_new_tokens; a finished row takes pad_token_id until every row is done. The tokens
 * reported are the new ones (the start token left out), eos included.
 *
 * Beam search (cp_seq2seq_generate_beams) runs generate/beam.h over the same encoder and decoder steps.
 */
#include "generate/seq2seq_generate.h"
#include "core/alloc.h"
#include "generate/beam.h"
#include "generate/sampling.h"
#include "io/json.h"
#include "models/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* generation_config.json's decoder_start_token_id when it has one, else config.json's (CP_TOKEN_UNSET: neither). */
static cp_status read_start_token(const cp_model *m, int64_t *out) {
    char path[4096];
    struct stat sb;
    *out = m->config.decoder_start_token_id;
    snprintf(path, sizeof path, "%s/generation_config.json", m->dir);
    if (stat(path, &sb) != 0) return CP_OK;
    cJSON *gen = NULL;
    if (cp_json_read_file(path, &gen) != CP_OK) return CP_ERR;
    const cJSON *v = cp_json_field(gen, "decoder_start_token_id");
    if (v && cJSON_IsNumber(v)) *out = (int64_t)v->valuedouble;
    cJSON_Delete(gen);
    return CP_OK;
}

/* generation_config.json's decoder_start_token_id when it has one, else config.json's; an error when neither
 * sets it or it is no token. */
static cp_status start_token(const cp_model *m, int64_t *out) {
    if (read_start_token(m, out) != CP_OK) return CP_ERR;
    if (*out == CP_TOKEN_UNSET)
        return cp_error("%s/config.json: field \"decoder_start_token_id\" is not set (nor in generation_config.json): the "
                        "decoder has no first token to generate from", m->dir);
    if (*out < 0 || *out >= m->config.vocab_size)
        return cp_error("%s: decoder_start_token_id %lld is outside the vocabulary [0, %lld)", m->dir, (long long)*out,
                        (long long)m->config.vocab_size);
    return CP_OK;
}

typedef struct {
    int64_t n, V, Te, cap;    /* rows, vocabulary, encoder columns, decoder columns */
    int64_t *enc_ids, *enc_mask; /* (n,Te) right-padded prompts */
    int64_t *dec;             /* (n,cap) the decoder's sequences, start token first */
    int64_t *col;             /* (n,cap) scratch: the columns one step runs */
    uint8_t *seen;            /* (n,V) */
    float *logits;            /* (n,V) */
    int32_t *cap_tokens;
    int *finished;
    cp_rng *rngs;
    cp_sampling_scratch scratch;
    cp_seq2seq_cache cache;
} s2s_gen;

static void gen_free(s2s_gen *s) {
    cp_free(s->enc_ids); cp_free(s->enc_mask); cp_free(s->dec); cp_free(s->col); cp_free(s->seen); cp_free(s->logits);
    cp_free(s->cap_tokens); cp_free(s->finished); cp_free(s->rngs); cp_free(s->scratch.f); cp_free(s->scratch.items);
    cp_seq2seq_cache_free(&s->cache);
}

static cp_status gen_init(cp_model *m, s2s_gen *s, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                          const cp_generate_options *o, int64_t start, int64_t pad) {
    s->n = n;
    s->V = m->config.vocab_size;
    for (int64_t r = 0; r < n; r++) s->Te = lens[r] > s->Te ? lens[r] : s->Te;
    s->cap = o->max_new_tokens + 1;
    const size_t ne = (size_t)(n * s->Te), nd = (size_t)(n * s->cap);
    s->enc_ids = cp_malloc(ne * sizeof *s->enc_ids, "encoder ids");
    s->enc_mask = cp_malloc(ne * sizeof *s->enc_mask, "encoder mask");
    s->dec = cp_malloc(nd * sizeof *s->dec, "decoder ids");
    s->col = cp_malloc(nd * sizeof *s->col, "decoder ids");
    s->seen = cp_calloc((size_t)(n * s->V), 1, "seen tokens");
    s->logits = cp_malloc((size_t)(n * s->V) * sizeof *s->logits, "logits");
    s->cap_tokens = cp_calloc((size_t)n, sizeof *s->cap_tokens, "token counts");
    s->finished = cp_calloc((size_t)n, sizeof *s->finished, "row states");
    s->rngs = cp_calloc((size_t)n, sizeof *s->rngs, "random streams");
    s->scratch.f = cp_malloc((size_t)s->V * sizeof *s->scratch.f, "sampling scratch");
    s->scratch.items = cp_malloc((size_t)s->V * sizeof *s->scratch.items, "sampling scratch");
    if (!s->enc_ids || !s->enc_mask || !s->dec || !s->col || !s->seen || !s->logits || !s->cap_tokens || !s->finished ||
        !s->rngs || !s->scratch.f || !s->scratch.items)
        return CP_ERR;
    if (cp_seq2seq_cache_init(m, &s->cache, n, s->Te, s->cap) != CP_OK) return CP_ERR;
    for (int64_t r = 0; r < n; r++) {
        for (int64_t t = 0; t < s->Te; t++) {
            const int real = t < lens[r];
            s->enc_ids[r * s->Te + t] = real ? prompts[r][t] : pad;
            s->enc_mask[r * s->Te + t] = real;
        }
        s->dec[r * s->cap] = start;
        s->seen[r * s->V + start] = 1;
        cp_rng_seed(&s->rngs[r], o->seed + (uint64_t)r);
    }
    return CP_OK;
}

/* Decoder columns [c0, c1) of every row (with o->no_cache the cache restarts and all columns run). */
static cp_status run_step(cp_model *m, s2s_gen *s, int64_t c0, int64_t c1, const cp_adapter_mix *mix, int no_cache) {
    if (no_cache) {
        c0 = 0;
        s->cache.self.len = 0;
    }
    const int64_t T = c1 - c0;
    for (int64_t r = 0; r < s->n; r++) memcpy(s->col + r * T, s->dec + r * s->cap + c0, (size_t)T * sizeof *s->col);
    const cp_batch b = {.B = s->n, .T = T, .input_ids = s->col};
    return cp_seq2seq_step(m, &b, mix, &s->cache, s->logits);
}

cp_status cp_seq2seq_generate(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                              const cp_generate_options *o, cp_generation *out) {
    const int64_t V = m->config.vocab_size;
    int64_t start;
    if (start_token(m, &start) != CP_OK) return CP_ERR;
    const int64_t pad = o->pad_token_id >= 0 && o->pad_token_id < V ? o->pad_token_id : 0;
    s2s_gen s;
    memset(&s, 0, sizeof s);
    cp_status st = gen_init(m, &s, prompts, lens, n, o, start, pad);
    cp_adapter_mix mix = {.B = n, .names = o->adapter_names};
    const cp_adapter_mix *mixp = o->adapter_names ? &mix : NULL;
    if (st == CP_OK) {
        const cp_batch eb = {.B = n, .T = s.Te, .input_ids = s.enc_ids, .attention_mask = s.enc_mask};
        st = cp_seq2seq_encode(m, &eb, mixp, &s.cache);
    }
    if (st == CP_OK) st = run_step(m, &s, 0, 1, mixp, o->no_cache);
    for (int64_t col = 1; st == CP_OK; col++) { /* col: the decoder column the chosen tokens fill */
        int64_t open = 0;
        for (int64_t r = 0; r < n && st == CP_OK; r++) {
            int64_t tok = pad;
            if (!s.finished[r] &&
                (st = cp_generation_next(o, s.logits + r * V, V, s.seen + r * V, s.dec + r * s.cap, col,
                                         o->max_new_tokens + 1, &s.scratch, &s.rngs[r], out, s.cap_tokens, r,
                                         &s.finished[r], &tok)) != CP_OK)
                break;
            s.seen[r * V + tok] = 1;
            open += !s.finished[r];
            s.dec[r * s.cap + col] = tok;
        }
        if (st != CP_OK || !open || col == o->max_new_tokens) break;
        st = run_step(m, &s, col, col + 1, mixp, o->no_cache);
    }
    gen_free(&s);
    return st;
}

/* ---- beam search: the encoder-decoder hook of generate/beam.h ------------------------------------ */

/* R = n·num_beams rows. The encoder runs once per prompt; its states are copied to the prompt's beams
 * (equal for all of them, so a reorder, which stays within a prompt, leaves them and the cross-attention
 * keys / values the first step makes from them alone); only the decoder's self-attention cache follows
 * the beams. */
typedef struct {
    cp_model *m;
    int64_t R;
    cp_seq2seq_cache cache; /* R rows */
    int64_t *ids;           /* (R) the step's tokens */
    const char **names;     /* (R) adapter_names expanded to the beams, or NULL */
    cp_adapter_mix mix;
} s2s_beam_hook;

static cp_status beam_step(void *ctx, const int32_t *tokens, float *logits) {
    s2s_beam_hook *h = ctx;
    for (int64_t r = 0; r < h->R; r++) h->ids[r] = tokens[r];
    const cp_batch b = {.B = h->R, .T = 1, .input_ids = h->ids};
    return cp_seq2seq_step(h->m, &b, h->names ? &h->mix : NULL, &h->cache, logits);
}

static cp_status beam_reorder(void *ctx, const int64_t *rows) {
    return cp_kv_cache_reorder(&((s2s_beam_hook *)ctx)->cache.self, rows);
}

cp_status cp_seq2seq_generate_beams(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                                    const cp_generate_options *o, cp_generation *out) {
    const int64_t V = m->config.vocab_size, C = m->config.hidden_size, nb = o->num_beams, R = n * nb;
    int64_t start;
    if (start_token(m, &start) != CP_OK) return CP_ERR;
    const int64_t pad = o->pad_token_id >= 0 && o->pad_token_id < V ? o->pad_token_id : 0;
    s2s_gen s; /* n rows: the encoder's batch and its cache */
    memset(&s, 0, sizeof s);
    s2s_beam_hook h = {.m = m, .R = R};
    cp_generate_options one = *o;
    one.max_new_tokens = 0; /* the n-row cache holds no decoder column */
    cp_status st = gen_init(m, &s, prompts, lens, n, &one, start, pad);
    cp_adapter_mix mix = {.B = n, .names = o->adapter_names};
    if (st == CP_OK) {
        const cp_batch eb = {.B = n, .T = s.Te, .input_ids = s.enc_ids, .attention_mask = s.enc_mask};
        st = cp_seq2seq_encode(m, &eb, o->adapter_names ? &mix : NULL, &s.cache);
    }
    if (st == CP_OK) st = cp_seq2seq_cache_init(m, &h.cache, R, s.Te, o->max_new_tokens + 1);
    h.ids = cp_malloc((size_t)R * sizeof *h.ids, "token ids");
    h.names = o->adapter_names ? cp_malloc((size_t)R * sizeof *h.names, "adapter names") : NULL;
    int32_t *tokens = cp_malloc((size_t)R * sizeof *tokens, "token ids"), *prompt = cp_malloc((size_t)n * sizeof *prompt, "start");
    int64_t *first = cp_calloc((size_t)n, sizeof *first, "prompt starts");
    float *logits = cp_malloc((size_t)(R * V) * sizeof *logits, "logits"), *logits0 = cp_malloc((size_t)(n * V) * sizeof *logits0, "logits");
    if (st == CP_OK && (!h.ids || (o->adapter_names && !h.names) || !tokens || !prompt || !first || !logits || !logits0)) st = CP_ERR;
    if (st == CP_OK) {
        const int64_t Te = s.Te;
        for (int64_t r = 0; r < R; r++) { /* each beam takes its prompt's encoder states */
            memcpy(h.cache.enc + r * Te * C, s.cache.enc + (r / nb) * Te * C, (size_t)(Te * C) * sizeof *h.cache.enc);
            memcpy(h.cache.enc_mask + r * Te, s.cache.enc_mask + (r / nb) * Te, (size_t)Te * sizeof *h.cache.enc_mask);
            if (h.names) h.names[r] = o->adapter_names[r / nb];
            tokens[r] = (int32_t)start;
        }
        h.cache.cross_ready = 0;
        h.mix = (cp_adapter_mix){.B = R, .names = h.names};
        cp_seq2seq_cache_free(&s.cache);
        st = beam_step(&h, tokens, logits); /* the decoder's "prompt": the start token, in every beam */
    }
    if (st == CP_OK) {
        for (int64_t i = 0; i < n; i++) {
            memcpy(logits0 + i * V, logits + i * nb * V, (size_t)V * sizeof *logits0);
            prompt[i] = (int32_t)start;
        }
        const cp_beam_model bm = {.ctx = &h, .V = V, .step = beam_step, .reorder = beam_reorder};
        /* transformers' decoder_prompt_len is the start token's 1: lengths count the new tokens, as for decoders */
        const cp_beam_params bp = {.num_beams = nb, .num_return_sequences = o->num_return_sequences,
                                   .max_new_tokens = o->max_new_tokens, .length_penalty = o->length_penalty,
                                   .early_stopping = o->early_stopping, .no_repeat_ngram_size = o->no_repeat_ngram_size,
                                   .repetition_penalty = (float)o->repetition_penalty, .eos = o->eos_token_ids,
                                   .n_eos = o->n_eos, .forced_bos = o->forced_bos_token_id,
                                   .forced_eos = o->forced_eos_token_id, .max_length = 1 + o->max_new_tokens};
        st = cp_beam_search(&bm, &bp, n, 1, prompt, first, logits0, out);
    }
    cp_seq2seq_cache_free(&h.cache);
    cp_free(h.ids); cp_free(h.names); cp_free(tokens); cp_free(prompt); cp_free(first); cp_free(logits); cp_free(logits0);
    gen_free(&s);
    return st;
}
