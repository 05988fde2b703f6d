/*
 * beam.c — transformers' beam search over a model hook; see beam.h. Names follow
 * GenerationMixin._beam_search and its helpers (_get_top_k_continuations,
 * _get_running_beams_for_next_iteration, _update_finished_beams, _check_early_stop_heuristic,
 * _beam_search_has_unfinished_sequences). Scores are f32 as there, with its ±1e9 bookkeeping: a
 * candidate that may not run on or may not be kept gets 1e9 subtracted, added term by term in f32
 * as the torch code does, so the same candidates tie and sort the same way.
 *
 * Sequences are whole rows (padded prompt + new tokens) of cap = Tp + max_new_tokens columns.
 * Per prompt i (nb = num_beams, K candidates):
 *   run_seq (nb, cap), run_score (nb)               the running beams
 *   fin_seq (nb, cap), fin_score, fin_len, fin_done  the kept hypotheses (initially -1e9, not done)
 *   open[i]                                         is_early_stop_heuristic_unsatisfied
 */
#include "generate/beam.h"
#include "core/alloc.h"
#include "generate/sampling.h"

#include <math.h>
#include <string.h>

#define BIG 1.0e9f

void cp_no_repeat_ngram(const int64_t *seq, int64_t len, int64_t size, float *scores, int64_t V) {
    if (size <= 0 || len < size) return; /* no complete n-gram yet */
    const int64_t *prefix = seq + len + 1 - size; /* the last size-1 tokens */
    for (int64_t i = 0; i + size <= len; i++) {     /* windows seq[i .. i+size) */
        if (memcmp(seq + i, prefix, (size_t)(size - 1) * sizeof *seq)) continue;
        const int64_t t = seq[i + size - 1];
        if (t >= 0 && t < V) scores[t] = -INFINITY;
    }
}

/* torch.nn.functional.log_softmax over one row, in place. */
static void log_softmax(float *x, int64_t V) {
    float mx = x[0];
    for (int64_t i = 1; i < V; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += exp((double)x[i] - (double)mx);
    const float lse = (float)log(sum);
    for (int64_t i = 0; i < V; i++) x[i] = x[i] - mx - lse;
}

/* Inserts (v, id) into the descending list top[0..*n) of at most k entries. Equal values keep the
 * lower id first (the order torch.topk gives on ties here: candidates arrive by increasing id). */
typedef struct {
    float v;
    int64_t id;
} ranked;

static void top_insert(ranked *top, int64_t *n, int64_t k, float v, int64_t id) {
    if (*n == k && !(v > top[k - 1].v)) return;
    int64_t j = *n < k ? (*n)++ : k - 1;
    while (j > 0 && v > top[j - 1].v) {
        top[j] = top[j - 1];
        j--;
    }
    top[j] = (ranked){v, id};
}

/* Indices of the k largest of v[0..m), descending, ties by lower index. */
static void top_k(const float *v, int64_t m, int64_t k, ranked *top) {
    int64_t n = 0;
    for (int64_t i = 0; i < m; i++) top_insert(top, &n, k, v[i], i);
}

static int is_eos(const cp_beam_params *p, int64_t tok) {
    for (int i = 0; i < p->n_eos; i++)
        if (tok == p->eos[i]) return 1;
    return 0;
}

typedef struct {
    int64_t n, nb, K, V, cap, Tp;
    int64_t *run_seq, *fin_seq, *cand_seq, *tmp_seq; /* (n, nb|K, cap) */
    float *run_score, *fin_score;                     /* (n, nb) */
    int64_t *fin_len;                                 /* (n, nb) new tokens of each kept hypothesis */
    uint8_t *fin_done, *open, *hits;                  /* (n, nb), (n), (n, K) */
    float *cand_score, *work;                         /* (n, K), max(nb + K, K) scratch */
    int64_t *cand_beam, *rows;                        /* (n, K), (R) */
    int32_t *tokens;                                  /* (R) */
    float *logits;                                    /* (R, V) */
    uint8_t *seen;                                    /* (V) */
    int64_t *tmp_len;                                 /* (nb) */
    uint8_t *tmp_done;                                /* (nb) */
    ranked *top;                                      /* (nb + K) */
} beam_state;

static void beam_free(beam_state *s) {
    cp_free(s->run_seq); cp_free(s->fin_seq); cp_free(s->cand_seq); cp_free(s->tmp_seq);
    cp_free(s->run_score); cp_free(s->fin_score); cp_free(s->fin_len); cp_free(s->fin_done); cp_free(s->open);
    cp_free(s->hits); cp_free(s->cand_score); cp_free(s->work); cp_free(s->cand_beam); cp_free(s->rows);
    cp_free(s->tokens); cp_free(s->logits); cp_free(s->seen); cp_free(s->top);
    cp_free(s->tmp_len); cp_free(s->tmp_done);
}

static cp_status beam_alloc(beam_state *s) {
    const int64_t n = s->n, nb = s->nb, K = s->K, R = n * nb, cap = s->cap;
    s->run_seq = cp_malloc((size_t)(R * cap) * sizeof *s->run_seq, "beam sequences");
    s->fin_seq = cp_malloc((size_t)(R * cap) * sizeof *s->fin_seq, "beam sequences");
    s->tmp_seq = cp_malloc((size_t)(R * cap) * sizeof *s->tmp_seq, "beam sequences");
    s->cand_seq = cp_malloc((size_t)(n * K * cap) * sizeof *s->cand_seq, "beam sequences");
    s->run_score = cp_malloc((size_t)R * sizeof *s->run_score, "beam scores");
    s->fin_score = cp_malloc((size_t)R * sizeof *s->fin_score, "beam scores");
    s->fin_len = cp_calloc((size_t)R, sizeof *s->fin_len, "beam lengths");
    s->fin_done = cp_calloc((size_t)R, 1, "beam states");
    s->open = cp_malloc((size_t)n, "beam states");
    s->hits = cp_calloc((size_t)(n * K), 1, "beam states");
    s->cand_score = cp_malloc((size_t)(n * K) * sizeof *s->cand_score, "beam scores");
    s->work = cp_malloc((size_t)(nb + K) * sizeof *s->work, "beam scores");
    s->cand_beam = cp_malloc((size_t)(n * K) * sizeof *s->cand_beam, "beam indices");
    s->rows = cp_malloc((size_t)R * sizeof *s->rows, "beam indices");
    s->tokens = cp_malloc((size_t)R * sizeof *s->tokens, "beam tokens");
    s->logits = cp_malloc((size_t)(R * s->V) * sizeof *s->logits, "beam logits");
    s->seen = cp_malloc((size_t)s->V, "seen tokens");
    s->top = cp_malloc((size_t)(nb + K) * sizeof *s->top, "beam ranking");
    s->tmp_len = cp_malloc((size_t)nb * sizeof *s->tmp_len, "beam lengths");
    s->tmp_done = cp_malloc((size_t)nb, "beam states");
    if (!s->run_seq || !s->fin_seq || !s->tmp_seq || !s->cand_seq || !s->run_score || !s->fin_score || !s->fin_len ||
        !s->fin_done || !s->open || !s->hits || !s->cand_score || !s->work || !s->cand_beam || !s->rows ||
        !s->tokens || !s->logits || !s->seen || !s->top || !s->tmp_len || !s->tmp_done)
        return CP_ERR;
    return CP_OK;
}

/* log_softmax and the processors on every row's logits, in place; cur = the rows' columns so far. */
static void process_rows(beam_state *s, const cp_beam_params *p, const int64_t *start, int64_t cur) {
    const cp_sampling_params sp = {.repetition_penalty = p->repetition_penalty};
    for (int64_t r = 0; r < s->n * s->nb; r++) {
        float *x = s->logits + r * s->V;
        const int64_t *seq = s->run_seq + r * s->cap;
        log_softmax(x, s->V);
        if (p->repetition_penalty != 1.0f) { /* prompt_ignore_length: the left padding is not seen */
            memset(s->seen, 0, (size_t)s->V);
            for (int64_t t = start[r / s->nb]; t < cur; t++) s->seen[seq[t]] = 1;
            cp_logits_process(&sp, x, s->V, s->seen, NULL);
        }
        cp_no_repeat_ngram(seq, cur, p->no_repeat_ngram_size, x, s->V);
        cp_forced_tokens(x, s->V, cur, p->max_length, p->forced_bos, p->forced_eos);
    }
}

/* One step for prompt i (cur = columns before the new token; max_len = Tp + max_new_tokens):
 * _get_top_k_continuations, _get_running_beams_for_next_iteration, _update_finished_beams. */
static void step_prompt(beam_state *s, const cp_beam_params *p, int64_t i, int64_t cur, int64_t max_len) {
    const int64_t nb = s->nb, K = s->K, V = s->V, cap = s->cap;
    int64_t *cseq = s->cand_seq + i * K * cap, *cbeam = s->cand_beam + i * K;
    float *cscore = s->cand_score + i * K;
    uint8_t *hits = s->hits + i * K;
    /* the K best of running score + log-prob over the prompt's nb·V candidates */
    int64_t m = 0;
    for (int64_t b = 0; b < nb; b++) {
        const float base = s->run_score[i * nb + b], *lp = s->logits + (i * nb + b) * V;
        for (int64_t v = 0; v < V; v++) top_insert(s->top, &m, K, lp[v] + base, b * V + v);
    }
    for (int64_t k = 0; k < K; k++) {
        const int64_t b = s->top[k].id / V, tok = s->top[k].id % V;
        cbeam[k] = b;
        cscore[k] = s->top[k].v;
        memcpy(cseq + k * cap, s->run_seq + (i * nb + b) * cap, (size_t)cur * sizeof *cseq);
        cseq[k * cap + cur] = tok;
        hits[k] = is_eos(p, tok) || cur + 1 >= max_len;
    }
    /* running beams: the best nb candidates that did not stop */
    for (int64_t k = 0; k < K; k++) s->work[k] = cscore[k] + (hits[k] ? -BIG : 0.0f);
    top_k(s->work, K, nb, s->top);
    for (int64_t j = 0; j < nb; j++) {
        const int64_t k = s->top[j].id;
        memcpy(s->tmp_seq + (i * nb + j) * cap, cseq + k * cap, (size_t)(cur + 1) * sizeof *cseq);
        s->run_score[i * nb + j] = s->top[j].v;
        s->rows[i * nb + j] = i * nb + cbeam[k];
    }
    memcpy(s->run_seq + i * nb * cap, s->tmp_seq + i * nb * cap, (size_t)(nb * cap) * sizeof *cseq);
    /* finished hypotheses: the first nb candidates that stopped, scored, merged with the kept ones */
    int full = p->early_stopping == CP_EARLY_STOPPING_TRUE;
    for (int64_t b = 0; b < nb; b++) full &= s->fin_done[i * nb + b];
    const float norm = (float)pow((double)(cur + 1 - s->Tp), p->length_penalty);
    float *merged = s->work; /* (nb + K): kept, then candidates */
    for (int64_t b = 0; b < nb; b++) merged[b] = s->fin_score[i * nb + b];
    for (int64_t k = 0; k < K; k++) {
        float v = cscore[k] / norm;
        v += full ? -BIG : 0.0f;
        v += s->open[i] ? 0.0f : -BIG;
        v += (hits[k] && k < nb) ? 0.0f : -BIG;
        merged[nb + k] = v;
    }
    top_k(merged, nb + K, nb, s->top);
    for (int64_t j = 0; j < nb; j++) {
        const int64_t x = s->top[j].id;
        int64_t *dst = s->tmp_seq + (i * nb + j) * cap;
        if (x < nb) {
            memcpy(dst, s->fin_seq + (i * nb + x) * cap, (size_t)cap * sizeof *dst);
            s->tmp_len[j] = s->fin_len[i * nb + x];
            s->tmp_done[j] = s->fin_done[i * nb + x];
        } else {
            memcpy(dst, cseq + (x - nb) * cap, (size_t)(cur + 1) * sizeof *dst);
            s->tmp_len[j] = cur + 1 - s->Tp;
            s->tmp_done[j] = hits[x - nb] && x - nb < nb;
        }
    }
    for (int64_t j = 0; j < nb; j++) {
        s->fin_score[i * nb + j] = s->top[j].v;
        s->fin_len[i * nb + j] = s->tmp_len[j];
        s->fin_done[i * nb + j] = s->tmp_done[j];
    }
    memcpy(s->fin_seq + i * nb * cap, s->tmp_seq + i * nb * cap, (size_t)(nb * cap) * sizeof *cseq);
}

/* _check_early_stop_heuristic for prompt i after the step (cur = columns now). */
static void check_open(beam_state *s, const cp_beam_params *p, int64_t i, int64_t cur) {
    const int64_t nb = s->nb;
    const int64_t best_len = p->early_stopping == CP_EARLY_STOPPING_NEVER && p->length_penalty > 0
                                 ? p->max_new_tokens : cur - s->Tp;
    const float best = s->run_score[i * nb] / (float)pow((double)best_len, p->length_penalty);
    float worst = s->fin_score[i * nb];
    for (int64_t b = 1; b < nb; b++)
        if (s->fin_score[i * nb + b] < worst) worst = s->fin_score[i * nb + b];
    int better = 0;
    for (int64_t b = 0; b < nb; b++) better |= best > (s->fin_done[i * nb + b] ? worst : -BIG);
    s->open[i] = s->open[i] && better;
}

cp_status cp_beam_search(const cp_beam_model *bm, const cp_beam_params *p, int64_t n, int64_t Tp, const int32_t *prompt,
                         const int64_t *start, const float *logits0, cp_generation *out) {
    memset(out, 0, sizeof *out);
    if (p->num_beams < 1) return cp_error("num_beams must be a positive integer, found %lld", (long long)p->num_beams);
    if (p->max_new_tokens < 1) return cp_error("beam search needs max_new_tokens ≥ 1");
    beam_state s;
    memset(&s, 0, sizeof s);
    s.n = n;
    s.nb = p->num_beams;
    s.K = (p->n_eos + 1 > 2 ? p->n_eos + 1 : 2) * s.nb;
    s.V = bm->V;
    s.Tp = Tp;
    s.cap = Tp + p->max_new_tokens;
    const int64_t nb = s.nb, R = n * nb, cap = s.cap, V = s.V, max_len = cap;
    if (s.K > V) return cp_error("beam search keeps %lld candidates per step, more than the %lld tokens of the vocabulary",
                                 (long long)s.K, (long long)V);
    cp_status st = beam_alloc(&s);
    if (st != CP_OK) { beam_free(&s); return st; }
    for (int64_t r = 0; r < R; r++) {
        for (int64_t t = 0; t < Tp; t++) s.run_seq[r * cap + t] = prompt[(r / nb) * Tp + t];
        memcpy(s.fin_seq + r * cap, s.run_seq + r * cap, (size_t)Tp * sizeof *s.fin_seq);
        s.run_score[r] = r % nb ? -BIG : 0.0f; /* only the first beam's tokens count at the first step */
        s.fin_score[r] = -BIG;
        memcpy(s.logits + r * V, logits0 + (r / nb) * V, (size_t)V * sizeof *s.logits);
    }
    memset(s.open, 1, (size_t)n);
    for (int64_t cur = Tp; st == CP_OK; cur++) {
        process_rows(&s, p, start, cur);
        for (int64_t i = 0; i < n; i++) step_prompt(&s, p, i, cur, max_len);
        for (int64_t i = 0; i < n; i++) check_open(&s, p, i, cur + 1);
        /* _beam_search_has_unfinished_sequences */
        int any_open = 0, all_done = 1, all_hit = 1;
        for (int64_t i = 0; i < n; i++) any_open |= s.open[i];
        for (int64_t r = 0; r < R; r++) all_done &= s.fin_done[r];
        for (int64_t k = 0; k < n * s.K; k++) all_hit &= s.hits[k];
        if (!any_open || (all_done && p->early_stopping == CP_EARLY_STOPPING_TRUE) || all_hit) break;
        for (int64_t r = 0; r < R; r++) s.tokens[r] = (int32_t)s.run_seq[r * cap + cur];
        st = bm->reorder(bm->ctx, s.rows);
        if (st == CP_OK) st = bm->step(bm->ctx, s.tokens, s.logits);
    }
    const int64_t m = p->num_return_sequences, N = n * m;
    if (st == CP_OK) {
        out->n = N;
        out->num_return_sequences = m;
        out->tokens = cp_calloc((size_t)N, sizeof *out->tokens, "generated tokens");
        out->n_tokens = cp_calloc((size_t)N, sizeof *out->n_tokens, "generated tokens");
        out->finish = cp_calloc((size_t)N, sizeof *out->finish, "finish reasons");
        out->sequences_scores = cp_calloc((size_t)N, sizeof *out->sequences_scores, "sequence scores");
        if (!out->tokens || !out->n_tokens || !out->finish || !out->sequences_scores) st = CP_ERR;
    }
    for (int64_t q = 0; q < N && st == CP_OK; q++) {
        const int64_t h = (q / m) * nb + q % m, len = s.fin_len[h];
        const int64_t *seq = s.fin_seq + h * cap + Tp;
        out->tokens[q] = cp_malloc((size_t)(len ? len : 1) * sizeof *out->tokens[q], "generated tokens");
        if (!out->tokens[q]) { st = CP_ERR; break; }
        for (int64_t t = 0; t < len; t++) out->tokens[q][t] = (int32_t)seq[t];
        out->n_tokens[q] = len;
        out->finish[q] = len && is_eos(p, seq[len - 1]) ? CP_FINISH_EOS : CP_FINISH_LENGTH;
        out->sequences_scores[q] = s.fin_score[h];
    }
    beam_free(&s);
    if (st != CP_OK) cp_generation_free(out);
    return st;
}
