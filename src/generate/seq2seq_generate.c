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
 * Beam search goes here next to this loop (a cache per beam row, reordered by cp_kv_cache rows).
 */
#include "generate/seq2seq_generate.h"
#include "core/alloc.h"
#include "generate/sampling.h"
#include "io/json.h"
#include "models/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* generation_config.json's decoder_start_token_id when it has one, else config.json's. */
static cp_status start_token(const cp_model *m, int64_t *out) {
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
    if (start == CP_TOKEN_UNSET)
        return cp_error("%s/config.json: field \"decoder_start_token_id\" is not set (nor in generation_config.json): the "
                        "decoder has no first token to generate from", m->dir);
    if (start < 0 || start >= V)
        return cp_error("%s: decoder_start_token_id %lld is outside the vocabulary [0, %lld)", m->dir, (long long)start,
                        (long long)V);
    const int64_t pad = o->pad_token_id >= 0 && o->pad_token_id < V ? o->pad_token_id : 0;
    s2s_gen s;
    memset(&s, 0, sizeof s);
    cp_status st = gen_init(m, &s, prompts, lens, n, o, start, pad);
    cp_adapter_mix mix = {.B = n, .names = o->adapter_names};
    const cp_adapter_mix *mixp = o->adapter_names ? &mix : NULL;
    const cp_sampling_params sp = {.do_sample = o->do_sample, .temperature = (float)o->temperature, .top_k = o->top_k,
                                   .top_p = (float)o->top_p, .repetition_penalty = (float)o->repetition_penalty};
    if (st == CP_OK) {
        const cp_batch eb = {.B = n, .T = s.Te, .input_ids = s.enc_ids, .attention_mask = s.enc_mask};
        st = cp_seq2seq_encode(m, &eb, mixp, &s.cache);
    }
    if (st == CP_OK) st = run_step(m, &s, 0, 1, mixp, o->no_cache);
    for (int64_t col = 1; st == CP_OK; col++) { /* col: the decoder column the chosen tokens fill */
        int64_t open = 0;
        for (int64_t r = 0; r < n && st == CP_OK; r++) {
            int64_t tok = pad;
            if (!s.finished[r]) {
                float *scores = s.logits + r * V;
                cp_logits_process(&sp, scores, V, s.seen + r * V, &s.scratch);
                tok = cp_sample_token(&sp, scores, V, &s.rngs[r]);
                if ((st = cp_generation_push(out, s.cap_tokens, r, (int32_t)tok)) != CP_OK) break;
                for (int i = 0; i < o->n_eos && !s.finished[r]; i++)
                    if (tok == o->eos_token_ids[i]) { s.finished[r] = 1; out->finish[r] = CP_FINISH_EOS; }
                if (o->on_token && o->on_token(o->user, r, (int32_t)tok) && !s.finished[r]) {
                    s.finished[r] = 1;
                    out->finish[r] = CP_FINISH_STOP;
                }
                int hit = 0;
                if (!s.finished[r] && o->n_stop_strings && (st = cp_generation_stop_hit(o, out, r, &hit)) != CP_OK) break;
                if (hit) { s.finished[r] = 1; out->finish[r] = CP_FINISH_STOP; }
            }
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
