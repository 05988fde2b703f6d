/*
 * generate.c — transformers' generate() for decoder-only models (encoder-decoders: seq2seq_generate.c): greedy or sampled decoding with a
 * KV cache over a left-padded batch, stopping at eos ids, stop strings or max_new_tokens; PEFT's
 * mixed-adapter batches. The public entry points are cp_generate_options_init, cp_model_generate
 * and cp_generation_free (include/cpeft.h).
 *
 * The loop follows GenerationMixin._sample:
 *   prefill   the prompts left-padded to Tp columns; attention_mask marks the padding and
 *             position_ids = cumsum(mask) − 1 with padding at 0 (_prepare_position_ids_for_generation
 *             in transformers 5); the LM head runs on the last column only.
 *   each step the processors turn the last logits into scores (sampling.h), a token is chosen per
 *             row; rows that have finished get pad_token_id instead; every row gets one more
 *             column (mask 1, position + 1) and one forward over the new column extends the cache.
 *   stop      when every row has finished (eos id, stop string) or max_new_tokens columns were added.
 * Models with learned positions (GPT-2, GPT-Neo) cannot see past max_positions: longer prompts are
 * cut from the left and generation stops there. Rotary models (the Llama family) go on, as
 * transformers does, with a warning.
 * Finished rows keep running (as in transformers) so the batch keeps its shape; their tokens are
 * not reported. The repetition penalty sees each row's sequence without its left padding
 * (transformers 5's prompt_ignore_length = the padding length); no_repeat_ngram_size sees the whole
 * row, padding included, as NoRepeatNGramLogitsProcessor does.
 * num_beams > 1 runs beam search (generate/beam.h) through the decoder-only hook below (beam_hook: prefill once per prompt, then cp_kv_cache_gather / _reorder).
 *
 * Mixed-adapter batches pass a cp_adapter_mix in the run context of every forward of the call.
 */
#include "core/alloc.h"
#include "models/kv_cache.h"
#include "generate/beam.h"
#include "generate/sampling.h"
#include "generate/seq2seq_generate.h"
#include "io/json.h"
#include "models/model.h"
#include "peft/peft_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- options ----------------------------------------------------------------------------------- */

/* An id or a list of ids ("eos_token_id": 2 or [128001, 128009]). Absent: *n stays 0. */
static cp_status read_ids(const cJSON *root, const char *key, int32_t *ids, int *n, const char *file) {
    const cJSON *v = cp_json_field(root, key);
    *n = 0;
    if (!v) return CP_OK;
    int64_t id;
    char what[48];
    if (cJSON_IsNumber(v)) {
        if (!cp_json_int_in(v, INT32_MIN, INT32_MAX, &id))
            return cp_error("%s: field \"%s\": expected a token id, found %s", file, key, cp_json_describe(v, what, sizeof what));
        ids[(*n)++] = (int32_t)id;
        return CP_OK;
    }
    if (!cJSON_IsArray(v)) return cp_error("%s: field \"%s\": expected a token id or a list of ids, found %s", file, key, cp_json_type_name(v));
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cp_json_int_in(it, 0, INT32_MAX, &id))
            return cp_error("%s: field \"%s\": expected token ids, found %s", file, key, cp_json_describe(it, what, sizeof what));
        if (*n == CP_MAX_EOS) return cp_error("%s: field \"%s\": more than %d ids", file, key, CP_MAX_EOS);
        ids[(*n)++] = (int32_t)id;
    }
    return CP_OK;
}

/* early_stopping: true, false or "never". */
static cp_status read_early_stopping(const cJSON *root, int *out, const char *file) {
    const cJSON *v = cp_json_field(root, "early_stopping");
    char what[48];
    if (!v || cJSON_IsNull(v)) return CP_OK;
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v) ? CP_EARLY_STOPPING_TRUE : CP_EARLY_STOPPING_FALSE;
    else if (cJSON_IsString(v) && !strcmp(v->valuestring, "never")) *out = CP_EARLY_STOPPING_NEVER;
    else return cp_error("%s: field \"early_stopping\": expected true, false or \"never\", found %s", file,
                         cp_json_describe(v, what, sizeof what));
    return CP_OK;
}

static cp_status read_json_if_present(const char *dir, const char *name, cJSON **out, char *path, size_t n) {
    struct stat st;
    snprintf(path, n, "%s/%s", dir, name);
    *out = NULL;
    if (stat(path, &st) != 0) return CP_OK;
    return cp_json_read_file(path, out);
}

/* forced_bos_token_id / forced_eos_token_id of root (file in dir): CP_TOKEN_NONE when absent or null; an eos
 * list keeps its first id (ForcedEOSTokenLogitsProcessor lets every listed id through; cpeft forces the first). */
static cp_status read_forced(const cJSON *root, int32_t *bos, int32_t *eos, const char *file, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    const char *keys[2] = {"forced_bos_token_id", "forced_eos_token_id"};
    int32_t *out[2] = {bos, eos};
    for (int i = 0; i < 2; i++) {
        int32_t ids[CP_MAX_EOS];
        int n = 0;
        if (read_ids(root, keys[i], ids, &n, path) != CP_OK) return CP_ERR;
        if (n) *out[i] = ids[0];
    }
    return CP_OK;
}

cp_status cp_generate_options_init(const cp_model *m, cp_generate_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->max_new_tokens = 64;
    opt->temperature = 1.0;
    opt->top_k = 50;
    opt->top_p = 1.0;
    opt->repetition_penalty = 1.0;
    opt->pad_token_id = CP_TOKEN_NONE;
    opt->num_beams = 1;
    opt->length_penalty = 1.0;
    opt->num_return_sequences = 1;
    opt->forced_bos_token_id = opt->forced_eos_token_id = CP_TOKEN_NONE;
    char path[4096];
    cJSON *gen = NULL, *cfg = NULL;
    cp_status st = read_json_if_present(m->dir, "generation_config.json", &gen, path, sizeof path);
    int32_t pad[CP_MAX_EOS];
    int n_pad = 0;
    if (st == CP_OK && gen) {
        int64_t top_k = opt->top_k;
        if (cp_json_get_double(gen, "temperature", opt->temperature, 0, &opt->temperature, path) != CP_OK ||
            cp_json_get_int(gen, "top_k", top_k, 0, &top_k, path) != CP_OK ||
            cp_json_get_double(gen, "top_p", opt->top_p, 0, &opt->top_p, path) != CP_OK ||
            cp_json_get_double(gen, "repetition_penalty", opt->repetition_penalty, 0, &opt->repetition_penalty, path) != CP_OK ||
            read_ids(gen, "eos_token_id", opt->eos_token_ids, &opt->n_eos, path) != CP_OK ||
            read_ids(gen, "pad_token_id", pad, &n_pad, path) != CP_OK ||
            cp_json_get_int(gen, "num_beams", opt->num_beams, 0, &opt->num_beams, path) != CP_OK ||
            cp_json_get_double(gen, "length_penalty", opt->length_penalty, 0, &opt->length_penalty, path) != CP_OK ||
            read_early_stopping(gen, &opt->early_stopping, path) != CP_OK ||
            cp_json_get_int(gen, "no_repeat_ngram_size", 0, 0, &opt->no_repeat_ngram_size, path) != CP_OK)
            st = CP_ERR;
        opt->top_k = top_k;
    }
    if (st == CP_OK && (!opt->n_eos || !n_pad || !gen)) {
        st = read_json_if_present(m->dir, "config.json", &cfg, path, sizeof path);
        if (st == CP_OK && cfg && !opt->n_eos) st = read_ids(cfg, "eos_token_id", opt->eos_token_ids, &opt->n_eos, path);
        if (st == CP_OK && cfg && !n_pad) st = read_ids(cfg, "pad_token_id", pad, &n_pad, path);
    }
    /* transformers reads generation_config.json when there is one, else makes it from config.json */
    if (st == CP_OK && (gen || cfg))
        st = read_forced(gen ? gen : cfg, &opt->forced_bos_token_id, &opt->forced_eos_token_id, gen ? "generation_config.json"
                                                                                                    : "config.json", m->dir);
    cJSON_Delete(gen);
    cJSON_Delete(cfg);
    opt->pad_token_id = n_pad ? pad[0] : opt->n_eos ? opt->eos_token_ids[0] : CP_TOKEN_NONE;
    return st;
}

static cp_status check_options(const cp_model *m, const cp_generate_options *o) {
    const int64_t V = m->config.vocab_size;
    if (o->max_new_tokens < 0) return cp_error("max_new_tokens must not be negative, found %lld", (long long)o->max_new_tokens);
    if (!(o->repetition_penalty > 0))
        return cp_error("`repetition_penalty` has to be a strictly positive float, but is %g", o->repetition_penalty);
    if (o->do_sample) {
        if (!(o->temperature > 0))
            return cp_error("`temperature` (=%g) has to be a strictly positive float, otherwise your next token scores "
                            "will be invalid. For greedy decoding, leave sampling off.", o->temperature);
        if (!(o->top_p > 0 && o->top_p <= 1)) return cp_error("`top_p` has to be a float in (0, 1], but is %g", o->top_p);
        if (o->top_k < 0) return cp_error("`top_k` has to be a non-negative integer, but is %lld", (long long)o->top_k);
    }
    if (o->n_eos < 0 || o->n_eos > CP_MAX_EOS) return cp_error("n_eos must be in [0, %d]", CP_MAX_EOS);
    /* an eos id no token can be (some checkpoints list ids beyond the embedding) never ends a row:
     * transformers generates on the same way */
    for (int i = 0; i < o->n_eos; i++)
        if (o->eos_token_ids[i] < 0 || o->eos_token_ids[i] >= V)
            cp_warn("eos_token_id %d is outside the vocabulary [0, %lld) (vocab_size): no generated token can match it",
                    o->eos_token_ids[i], (long long)V);
    if (o->n_stop_strings > 0 && !o->tokenizer) return cp_error("stop strings need a tokenizer to decode the new tokens");
    for (int i = 0; i < o->n_stop_strings; i++)
        if (!o->stop_strings[i] || !o->stop_strings[i][0]) return cp_error("stop string %d is empty", i + 1);
    /* beam search: transformers' GenerationConfig.validate messages where it has one */
    if (o->num_beams < 1) return cp_error("`num_beams` has to be a strictly positive integer, but is %lld", (long long)o->num_beams);
    if (o->num_return_sequences < 1)
        return cp_error("`num_return_sequences` has to be a strictly positive integer, but is %lld", (long long)o->num_return_sequences);
    if (o->num_beams == 1 && o->num_return_sequences > 1)
        return o->do_sample ? cp_error("num_return_sequences %lld with sampling (num_beams 1) is not supported yet",
                                       (long long)o->num_return_sequences)
                            : cp_error("Greedy methods (do_sample != True) without beam search do not support "
                                       "`num_return_sequences` different than 1 (got %lld).", (long long)o->num_return_sequences);
    if (o->num_return_sequences > o->num_beams)
        return cp_error("`num_return_sequences` (%lld) has to be smaller or equal to `num_beams` (%lld).",
                        (long long)o->num_return_sequences, (long long)o->num_beams);
    const int32_t forced[2] = {o->forced_bos_token_id, o->forced_eos_token_id};
    for (int i = 0; i < 2; i++)
        if (forced[i] >= V)
            return cp_error("%s %d is outside the vocabulary [0, %lld) (vocab_size)", i ? "forced_eos_token_id" : "forced_bos_token_id",
                            forced[i], (long long)V);
    if (o->no_repeat_ngram_size < 0)
        return cp_error("`no_repeat_ngram_size` has to be a non-negative integer, but is %lld", (long long)o->no_repeat_ngram_size);
    if (o->early_stopping < CP_EARLY_STOPPING_FALSE || o->early_stopping > CP_EARLY_STOPPING_NEVER)
        return cp_error("early_stopping must be CP_EARLY_STOPPING_FALSE, _TRUE or _NEVER, found %d", o->early_stopping);
    if (!isfinite(o->length_penalty)) return cp_error("length_penalty must be a finite number, found %g", o->length_penalty);
    if (o->num_beams > 1) {
        const char *no = o->do_sample ? "sampling (do_sample)" : o->n_stop_strings ? "stop strings" : o->on_token ? "on_token (streaming)"
                         : o->no_cache ? "no_cache" : m->prompt ? "a prompt-learning adapter (prompt/prefix tuning, ...)" : NULL;
        if (no) return cp_error("beam search (num_beams %lld) with %s is not supported", (long long)o->num_beams, no);
        const int64_t K = (o->n_eos + 1 > 2 ? o->n_eos + 1 : 2) * o->num_beams;
        if (K > V)
            return cp_error("num_beams %lld: beam search keeps %lld candidates per step, more than the vocabulary's %lld "
                            "tokens", (long long)o->num_beams, (long long)K, (long long)V);
    }
    return CP_OK;
}

/* ---- mixed-adapter batches --------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* PEFT's checks before a mixed batch: every name but "__base__" must be carried by some LoRA layer;
 * no adapter may be merged. */
static cp_status check_adapter_names(cp_model *m, const char *const *names, int64_t n) {
    if (!m->peft) return cp_error("adapter_names given, but the model has no adapters loaded");
    if (m->peft->n_saved > 0) return cp_error("mixed-adapter batches with modules_to_save are not supported yet");
    if (cp_peft_has_merged(m))
        return cp_error("Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first.");
    const char **missing = cp_calloc((size_t)n, sizeof *missing, "adapter names");
    if (!missing) return CP_ERR;
    int64_t n_missing = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!names[i]) { cp_free(missing); return cp_error("adapter_names[%lld] is NULL", (long long)i); }
        if (!strcmp(names[i], "__base__")) continue;
        const int found = cp_peft_carries(m, names[i]);
        int dup = 0;
        for (int64_t k = 0; k < n_missing && !dup; k++) dup = !strcmp(missing[k], names[i]);
        if (!found && !dup) missing[n_missing++] = names[i];
    }
    cp_status st = CP_OK;
    if (n_missing) {
        qsort(missing, (size_t)n_missing, sizeof *missing, cmp_str);
        char list[1024] = "";
        size_t k = 0;
        for (int64_t i = 0; i < n_missing && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", missing[i]);
        st = cp_error("Trying to infer with non-existing adapter(s): %s", list);
    }
    cp_free(missing);
    return st;
}

/* ---- the loop ---------------------------------------------------------------------------------- */

/* Everything one call holds; freed by state_free. */
typedef struct {
    int64_t n, V, cap, Tp;   /* rows, vocabulary, columns, prompt columns */
    int64_t *ids, *mask, *pos; /* (n, cap) the whole sequences: padding, prompt, new tokens */
    int64_t *col_ids, *col_mask, *col_pos; /* (n, cap) scratch: a contiguous copy of the columns a forward reads */
    uint8_t *seen;           /* (n, V) token ids in each row's sequence (repetition penalty) */
    float *logits;           /* (n, V) */
    int32_t *cap_tokens;     /* capacity of out->tokens[i] */
    int *finished;
    cp_rng *rngs;
    cp_sampling_scratch scratch;
    cp_kv_cache cache;
    cp_adapter_mix mix;
    const cp_adapter_mix *mixp; /* &mix for a mixed-adapter batch, else NULL */
} gen_state;

static void state_free(gen_state *s) {
    cp_free(s->ids); cp_free(s->mask); cp_free(s->pos);
    cp_free(s->col_ids); cp_free(s->col_mask); cp_free(s->col_pos);
    cp_free(s->seen); cp_free(s->logits); cp_free(s->cap_tokens); cp_free(s->finished); cp_free(s->rngs);
    cp_free(s->scratch.f); cp_free(s->scratch.items);
    cp_kv_cache_free(&s->cache);
}

void cp_generation_free(cp_generation *g) {
    if (!g) return;
    for (int64_t i = 0; g->tokens && i < g->n; i++) cp_free(g->tokens[i]);
    cp_free(g->tokens);
    cp_free(g->n_tokens);
    cp_free(g->finish);
    cp_free(g->sequences_scores);
    memset(g, 0, sizeof *g);
}

/* Runs columns [c0, c1) of every row through the model, logits (n,V) of column c1-1: with the cache
 * only the new columns run; without it, the whole sequence 0..c1-1 again. */
static cp_status run_columns(cp_model *m, gen_state *s, int64_t c0, int64_t c1, int no_cache) {
    if (no_cache) c0 = 0;
    const int64_t T = c1 - c0;
    for (int64_t r = 0; r < s->n; r++) {
        memcpy(s->col_ids + r * T, s->ids + r * s->cap + c0, (size_t)T * sizeof *s->ids);
        memcpy(s->col_mask + r * T, s->mask + r * s->cap + c0, (size_t)T * sizeof *s->mask);
        memcpy(s->col_pos + r * T, s->pos + r * s->cap + c0, (size_t)T * sizeof *s->pos);
    }
    cp_batch b = {.B = s->n, .T = T, .input_ids = s->col_ids, .attention_mask = s->col_mask, .position_ids = s->col_pos};
    return no_cache ? cp_model_forward_last_mix(m, &b, s->mixp, s->logits)
                    : cp_model_forward_cached_mix(m, &b, s->mixp, &s->cache, s->logits, NULL);
}

static cp_status generation_push(cp_generation *out, int32_t *cap_tokens, int64_t r, int32_t tok) {
    if (out->n_tokens[r] == cap_tokens[r]) {
        int32_t cap = cap_tokens[r] ? 2 * cap_tokens[r] : 16;
        int32_t *t = cp_realloc(out->tokens[r], (size_t)cap * sizeof *t, "generated tokens");
        if (!t) return CP_ERR;
        out->tokens[r] = t;
        cap_tokens[r] = cap;
    }
    out->tokens[r][out->n_tokens[r]++] = tok;
    return CP_OK;
}

static cp_status stop_hit(const cp_generate_options *o, const cp_generation *out, int64_t r, int *hit) {
    char *text;
    size_t len;
    *hit = 0;
    if (cp_tokenizer_decode(o->tokenizer, out->tokens[r], (size_t)out->n_tokens[r], 0, &text, &len) != CP_OK) return CP_ERR;
    /* the text is bytes with a length (it may hold a NUL), so memmem, not strstr */
    for (int i = 0; i < o->n_stop_strings && !*hit; i++)
        *hit = memmem(text, len, o->stop_strings[i], strlen(o->stop_strings[i])) != NULL;
    free(text);
    return CP_OK;
}

cp_status cp_generation_next(const cp_generate_options *o, float *scores, int64_t V, const uint8_t *seen, const int64_t *seq,
                             int64_t len, int64_t max_length, cp_sampling_scratch *scratch, cp_rng *rng,
                             cp_generation *out, int32_t *cap_tokens, int64_t r, int *finished, int64_t *tok) {
    const cp_sampling_params sp = {.do_sample = o->do_sample, .temperature = (float)o->temperature, .top_k = o->top_k,
                                   .top_p = (float)o->top_p, .repetition_penalty = (float)o->repetition_penalty};
    /* processors in generate()'s order: penalty, n-grams, forced BOS / EOS, warpers */
    cp_sampling_params pen = {.repetition_penalty = sp.repetition_penalty}, warp = sp;
    warp.repetition_penalty = 1.0f;
    cp_logits_process(&pen, scores, V, seen, scratch);
    if (o->no_repeat_ngram_size > 0) cp_no_repeat_ngram(seq, len, o->no_repeat_ngram_size, scores, V);
    cp_forced_tokens(scores, V, len, max_length, o->forced_bos_token_id, o->forced_eos_token_id);
    cp_logits_process(&warp, scores, V, NULL, scratch);
    *tok = cp_sample_token(&sp, scores, V, rng);
    if (generation_push(out, cap_tokens, r, (int32_t)*tok) != CP_OK) return CP_ERR;
    for (int i = 0; i < o->n_eos && !*finished; i++)
        if (*tok == o->eos_token_ids[i]) { *finished = 1; out->finish[r] = CP_FINISH_EOS; }
    if (o->on_token && o->on_token(o->user, r, (int32_t)*tok) && !*finished) {
        *finished = 1;
        out->finish[r] = CP_FINISH_STOP;
    }
    int hit = 0;
    if (!*finished && o->n_stop_strings && stop_hit(o, out, r, &hit) != CP_OK) return CP_ERR;
    if (hit) { *finished = 1; out->finish[r] = CP_FINISH_STOP; }
    return CP_OK;
}

/* The id that fills left padding and finished rows: pad_token_id; 0 when neither a pad nor an eos
 * id is set (nothing then depends on it); -1 when pad_token_id is set but no token of this model
 * (a config.json or generation_config.json id at or beyond vocab_size, which transformers loads):
 * an error where a pad is needed, as transformers fails there (an IndexError in the embedding). */
static int64_t pad_id(const cp_generate_options *o, int64_t V) {
    if (o->pad_token_id == CP_TOKEN_NONE) return 0;
    return o->pad_token_id >= 0 && o->pad_token_id < V ? o->pad_token_id : -1;
}

static cp_status pad_error(const cp_generate_options *o, int64_t V, const char *why) {
    return cp_error("pad_token_id %d (from generation_config.json or config.json, else the first eos id) is outside the "
                    "vocabulary [0, %lld) (vocab_size): %s", o->pad_token_id, (long long)V, why);
}

static cp_status state_init(cp_model *m, gen_state *s, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                            const cp_generate_options *o) {
    /* learned position tables end at max_positions; rotary positions go on (transformers warns). A
     * prompt-learning adapter's virtual tokens come first: they take positions and cache columns. */
    const int64_t nv = m->prompt ? m->prompt->ops->n_virtual(m->prompt) : 0;
    const int64_t V = m->config.vocab_size, P = m->arch->rotary_positions ? INT64_MAX / 4 : m->config.max_positions - nv;
    const int64_t kv_dim = (m->config.num_kv_heads > 0 ? m->config.num_kv_heads : m->config.num_heads) * m->config.head_dim;
    if (P < 2) return cp_error("%lld virtual tokens leave no room to generate in the model's %lld positions", (long long)nv,
                               (long long)m->config.max_positions);
    s->n = n;
    s->V = V;
    for (int64_t r = 0; r < n; r++) {
        int64_t len = lens[r] < P - 1 ? lens[r] : P - 1;
        if (len < lens[r])
            cp_warn("prompt %lld: %lld tokens do not fit the model's %lld positions with room to generate; keeping the "
                    "last %lld", (long long)(r + 1), (long long)lens[r], (long long)P, (long long)len);
        if (len > s->Tp) s->Tp = len;
    }
    s->cap = s->Tp + o->max_new_tokens < P ? s->Tp + o->max_new_tokens : P;
    if (m->arch->rotary_positions && s->cap > m->config.max_positions)
        cp_warn("generating up to %lld tokens, past the model's %lld positions: quality may degrade",
                (long long)s->cap, (long long)m->config.max_positions);
    const size_t cells = (size_t)(n * s->cap);
    s->ids = cp_malloc(cells * sizeof *s->ids, "token ids");
    s->mask = cp_malloc(cells * sizeof *s->mask, "attention mask");
    s->pos = cp_malloc(cells * sizeof *s->pos, "position ids");
    s->col_ids = cp_malloc(cells * sizeof *s->ids, "token ids");
    s->col_mask = cp_malloc(cells * sizeof *s->mask, "attention mask");
    s->col_pos = cp_malloc(cells * sizeof *s->pos, "position ids");
    s->seen = cp_calloc((size_t)(n * V), 1, "seen tokens");
    s->logits = cp_malloc((size_t)(n * V) * sizeof *s->logits, "logits");
    s->cap_tokens = cp_calloc((size_t)n, sizeof *s->cap_tokens, "token counts");
    s->finished = cp_calloc((size_t)n, sizeof *s->finished, "row states");
    s->rngs = cp_calloc((size_t)n, sizeof *s->rngs, "random streams");
    s->scratch.f = cp_malloc((size_t)V * sizeof *s->scratch.f, "sampling scratch");
    s->scratch.items = cp_malloc((size_t)V * sizeof *s->scratch.items, "sampling scratch");
    if (!s->ids || !s->mask || !s->pos || !s->col_ids || !s->col_mask || !s->col_pos || !s->seen || !s->logits ||
        !s->cap_tokens || !s->finished || !s->rngs || !s->scratch.f || !s->scratch.items)
        return CP_ERR;
    if (!o->no_cache && cp_kv_cache_init(&s->cache, m->config.num_layers, n, nv + s->cap, kv_dim) != CP_OK) return CP_ERR;
    const int64_t pad = pad_id(o, V);
    for (int64_t r = 0; r < n; r++)
        if (pad < 0 && (lens[r] < s->Tp ? lens[r] : s->Tp) < s->Tp)
            return pad_error(o, V, "prompts of different lengths need it for left padding");
    for (int64_t r = 0; r < n; r++) {
        const int64_t len = lens[r] < s->Tp ? lens[r] : s->Tp, skip = lens[r] - len, lead = s->Tp - len;
        int64_t *ids = s->ids + r * s->cap, *mask = s->mask + r * s->cap, *pos = s->pos + r * s->cap;
        for (int64_t t = 0; t < lead; t++) { ids[t] = pad; mask[t] = 0; pos[t] = 0; }
        for (int64_t t = 0; t < len; t++) { ids[lead + t] = prompts[r][skip + t]; mask[lead + t] = 1; pos[lead + t] = t; }
        for (int64_t t = lead; t < s->Tp; t++) s->seen[r * V + ids[t]] = 1; /* not the left padding */
        cp_rng_seed(&s->rngs[r], o->seed + (uint64_t)r);
    }
    return CP_OK;
}

/* ---- beam search: the decoder-only hook of generate/beam.h ---------------------------------------- */

/* R = n·num_beams rows, each with its KV cache row; all beams of a prompt share its positions. */
typedef struct {
    cp_model *m;
    int64_t R;
    cp_kv_cache cache;           /* (R rows) */
    int64_t *ids, *mask, *pos;   /* (R) the step's column */
    int64_t *next_pos;           /* (R) position id of each row's next token */
    const char **names;          /* (R) adapter_names expanded to the beams, or NULL */
    cp_adapter_mix mix;
} beam_hook;

static cp_status beam_step(void *ctx, const int32_t *tokens, float *logits) {
    beam_hook *h = ctx;
    for (int64_t r = 0; r < h->R; r++) {
        h->ids[r] = tokens[r];
        h->mask[r] = 1;
        h->pos[r] = h->next_pos[r]++;
    }
    cp_batch b = {.B = h->R, .T = 1, .input_ids = h->ids, .attention_mask = h->mask, .position_ids = h->pos};
    return cp_model_forward_cached_mix(h->m, &b, h->names ? &h->mix : NULL, &h->cache, logits, NULL);
}

/* rows[r] is a beam of r's own prompt: positions and adapter names stay. */
static cp_status beam_reorder(void *ctx, const int64_t *rows) { return cp_kv_cache_reorder(&((beam_hook *)ctx)->cache, rows); }

/* Prefill once per prompt (gen_state, n rows), copy each prompt's cache to its beams, search. */
static cp_status generate_beams(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                                const cp_generate_options *o, cp_generation *out) {
    const int64_t nb = o->num_beams, R = n * nb, V = m->config.vocab_size;
    if (o->max_new_tokens == 0) { /* nothing to search: empty sequences */
        const int64_t N = n * o->num_return_sequences;
        out->n = N;
        out->num_return_sequences = o->num_return_sequences;
        out->tokens = cp_calloc((size_t)N, sizeof *out->tokens, "generated tokens");
        out->n_tokens = cp_calloc((size_t)N, sizeof *out->n_tokens, "generated tokens");
        out->finish = cp_calloc((size_t)N, sizeof *out->finish, "finish reasons");
        out->sequences_scores = cp_calloc((size_t)N, sizeof *out->sequences_scores, "sequence scores");
        if (out->tokens && out->n_tokens && out->finish && out->sequences_scores) return CP_OK;
        cp_generation_free(out);
        return CP_ERR;
    }
    if (m->arch->encoder_decoder) return cp_seq2seq_generate_beams(m, prompts, lens, n, o, out);
    gen_state s;
    beam_hook h = {.m = m, .R = R};
    memset(&s, 0, sizeof s);
    int32_t *prompt = NULL;
    int64_t *start = NULL;
    cp_status st = state_init(m, &s, prompts, lens, n, o);
    if (st == CP_OK && o->adapter_names) {
        s.mix = (cp_adapter_mix){.B = n, .names = o->adapter_names};
        s.mixp = &s.mix;
    }
    if (st == CP_OK) st = run_columns(m, &s, 0, s.Tp, 0); /* the prefill: s.logits (n, V), s.cache (n rows) */
    const int64_t kv_dim = (m->config.num_kv_heads > 0 ? m->config.num_kv_heads : m->config.num_heads) * m->config.head_dim;
    if (st == CP_OK) st = cp_kv_cache_init(&h.cache, m->config.num_layers, R, s.cache.capacity, kv_dim);
    h.ids = cp_malloc((size_t)R * sizeof *h.ids, "token ids");
    h.mask = cp_malloc((size_t)R * sizeof *h.mask, "attention mask");
    h.pos = cp_malloc((size_t)R * sizeof *h.pos, "position ids");
    h.next_pos = cp_malloc((size_t)R * sizeof *h.next_pos, "position ids");
    h.names = o->adapter_names ? cp_malloc((size_t)R * sizeof *h.names, "adapter names") : NULL;
    prompt = cp_malloc((size_t)(n * (s.Tp ? s.Tp : 1)) * sizeof *prompt, "prompt ids");
    start = cp_malloc((size_t)n * sizeof *start, "prompt starts");
    if (st == CP_OK && (!h.ids || !h.mask || !h.pos || !h.next_pos || (o->adapter_names && !h.names) || !prompt || !start))
        st = CP_ERR;
    if (st == CP_OK) {
        for (int64_t r = 0; r < R; r++) {
            h.ids[r] = r / nb; /* the prefill row each beam copies */
            h.next_pos[r] = s.pos[(r / nb) * s.cap + s.Tp - 1] + 1;
            if (h.names) h.names[r] = o->adapter_names[r / nb];
        }
        h.mix = (cp_adapter_mix){.B = R, .names = h.names};
        st = cp_kv_cache_gather(&h.cache, &s.cache, h.ids);
    }
    if (st == CP_OK) {
        cp_kv_cache_free(&s.cache);
        for (int64_t i = 0; i < n; i++) {
            start[i] = 0;
            while (start[i] < s.Tp && !s.mask[i * s.cap + start[i]]) start[i]++;
            for (int64_t t = 0; t < s.Tp; t++) prompt[i * s.Tp + t] = (int32_t)s.ids[i * s.cap + t];
        }
        if (s.cap < s.Tp + o->max_new_tokens) cp_warn("beam search stops at the model's %lld positions", (long long)s.cap);
        const cp_beam_model bm = {.ctx = &h, .V = V, .step = beam_step, .reorder = beam_reorder};
        const cp_beam_params bp = {.num_beams = nb, .num_return_sequences = o->num_return_sequences,
                                   .max_new_tokens = s.cap - s.Tp, .length_penalty = o->length_penalty,
                                   .early_stopping = o->early_stopping, .no_repeat_ngram_size = o->no_repeat_ngram_size,
                                   .repetition_penalty = (float)o->repetition_penalty, .eos = o->eos_token_ids,
                                   .n_eos = o->n_eos, .forced_bos = o->forced_bos_token_id,
                                   .forced_eos = o->forced_eos_token_id, .max_length = s.Tp + o->max_new_tokens};
        st = cp_beam_search(&bm, &bp, n, s.Tp, prompt, start, s.logits, out);
    }
    cp_kv_cache_free(&h.cache);
    cp_free(h.ids); cp_free(h.mask); cp_free(h.pos); cp_free(h.next_pos); cp_free(h.names);
    cp_free(prompt); cp_free(start);
    state_free(&s);
    return st;
}

cp_status cp_model_generate(cp_model *m, const int32_t *const *prompts, const int64_t *lens, int64_t n,
                            const cp_generate_options *o, cp_generation *out) {
    memset(out, 0, sizeof *out);
    if (!m->has_weights) return cp_error("%s: the model was loaded without weights", m->dir);
    if (n <= 0) return cp_error("generate: no prompts");
    if (check_options(m, o) != CP_OK) return CP_ERR;
    const int64_t V = m->config.vocab_size;
    for (int64_t r = 0; r < n; r++) {
        if (!prompts[r] || lens[r] <= 0) return cp_error("prompt %lld is empty", (long long)(r + 1));
        for (int64_t t = 0; t < lens[r]; t++)
            if (prompts[r][t] < 0 || prompts[r][t] >= V)
                return cp_error("prompt %lld: token id %d at position %lld is outside the vocabulary [0, %lld)",
                                (long long)(r + 1), prompts[r][t], (long long)t, (long long)V);
    }
    if (o->adapter_names && check_adapter_names(m, o->adapter_names, n) != CP_OK) return CP_ERR;
    if (o->num_beams > 1) return generate_beams(m, prompts, lens, n, o, out);
    out->n = n;
    out->num_return_sequences = 1;
    out->tokens = cp_calloc((size_t)n, sizeof *out->tokens, "generated tokens");
    out->n_tokens = cp_calloc((size_t)n, sizeof *out->n_tokens, "generated tokens");
    out->finish = cp_calloc((size_t)n, sizeof *out->finish, "finish reasons");
    if (!out->tokens || !out->n_tokens || !out->finish) { cp_generation_free(out); return CP_ERR; }
    if (o->max_new_tokens == 0) return CP_OK;
    if (m->arch->encoder_decoder) { /* the prompts are the encoder's: seq2seq_generate.c */
        cp_status st = cp_seq2seq_generate(m, prompts, lens, n, o, out);
        if (st != CP_OK) cp_generation_free(out);
        return st;
    }

    gen_state s;
    memset(&s, 0, sizeof s);
    cp_status st = state_init(m, &s, prompts, lens, n, o);
    if (st == CP_OK && o->adapter_names) {
        s.mix = (cp_adapter_mix){.B = n, .names = o->adapter_names};
        s.mixp = &s.mix;
    }
    const int64_t pad = pad_id(o, V);
    int64_t col = s.Tp; /* columns filled */
    if (st == CP_OK) st = run_columns(m, &s, 0, col, o->no_cache);
    for (int64_t step = 0; st == CP_OK; step++) {
        int64_t open = 0;
        for (int64_t r = 0; r < n && st == CP_OK; r++) {
            int64_t tok = pad;
            if (!s.finished[r] &&
                (st = cp_generation_next(o, s.logits + r * V, V, s.seen + r * V, s.ids + r * s.cap, col,
                                         s.Tp + o->max_new_tokens, &s.scratch, &s.rngs[r], out, s.cap_tokens, r,
                                         &s.finished[r], &tok)) != CP_OK)
                break;
            s.seen[r * V + tok] = 1;
            open += !s.finished[r];
            if (col < s.cap) { /* the token becomes the row's next column */
                const int64_t at = r * s.cap + col;
                s.ids[at] = tok;
                s.mask[at] = 1;
                s.pos[at] = s.pos[at - 1] + 1;
            }
        }
        if (st != CP_OK || !open || step + 1 == o->max_new_tokens) break;
        if (pad < 0 && open < n && col < s.cap) { /* a finished row's next input is the pad token */
            int64_t r = 0;
            while (!s.finished[r]) r++;
            char why[128];
            snprintf(why, sizeof why, "prompt %lld finished while others go on, and its next input is the pad token",
                     (long long)(r + 1));
            st = pad_error(o, V, why);
            break;
        }
        if (col == s.cap) {
            cp_warn("generation stopped at the model's %lld positions", (long long)s.cap);
            break;
        }
        st = run_columns(m, &s, col, col + 1, o->no_cache);
        col++;
    }

    state_free(&s);
    if (st != CP_OK) cp_generation_free(out);
    return st;
}
