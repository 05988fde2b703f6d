/*
 * batch.c — the continuous batch of serve/engine.h, run on the scheduler thread alone:
 *
 *   prefill   a job's prompt runs alone, (1, Tp) with its adapter, into its own cache (1 row, Tp
 *             columns) — the same forward `cpeft generate` runs for that prompt — and its first token
 *             is chosen from the last column's logits.
 *   rebuild   when rows join or leave, the shared cache is made again: B rows, len = the longest
 *             row's span; each row's columns are right-aligned (left padding, mask 0, keys and values
 *             zeroed), as generate's left-padded batches are. So the cache never holds more columns
 *             than its longest row, however long the server runs, and a finished row costs nothing.
 *   decode    one forward over every row's last token: (B, 1) with position = the row's span (its
 *             own count of tokens, whatever padding its cache row has), the rows' adapters as a
 *             mixed-adapter batch; then each row's next token by cp_generation_next.
 *
 * A row's attention sees only its own columns (the mask), and its position ids are its own, so what
 * a job computes does not depend on the other rows — up to the order of float sums inside a product
 * with more rows (docs/serve.md says when that can change a token).
 */
#include "core/alloc.h"
#include "generate/seq2seq_generate.h"
#include "models/model.h"
#include "serve/engine_internal.h"

#include <string.h>
#include <unistd.h>

/* The job's next token from its logits (V), as generate's loop chooses it; published to readers. */
static cp_status choose(cp_serve_engine *e, cp_serve_job *j, float *logits) {
    const int64_t max_new = j->opt.max_new_tokens;
    int finished = 0;
    int64_t tok = 0;
    if (cp_generation_next(&j->opt, logits, e->V, j->seen, j->seq, j->seq_len, j->n_prompt + max_new, &e->scratch,
                           &j->rng, &j->out, &j->cap_tokens, 0, &finished, &tok) != CP_OK)
        return CP_ERR;
    j->seen[tok] = 1;
    j->seq[j->seq_len++] = tok;
    cp_finish_reason why = j->out.finish[0];
    if (!finished && (j->out.n_tokens[0] >= max_new || j->span + 1 >= e->lim.max_context)) {
        finished = 1;
        why = CP_FINISH_LENGTH;
    }
    j->ended = finished;
    cp_serve_publish(e, j, (int32_t)tok, finished, why);
    return CP_OK;
}

static const char *row_name(const cp_serve_job *j) { return j->adapter ? j->adapter : "__base__"; }

cp_status cp_serve_prefill(cp_serve_engine *e, cp_serve_job *j) {
    const int64_t T = j->n_prompt;
    int64_t *ids = cp_malloc((size_t)(3 * T) * sizeof *ids, "the prompt's columns");
    if (!ids) return CP_ERR;
    int64_t *mask = ids + T, *pos = mask + T;
    for (int64_t t = 0; t < T; t++) {
        ids[t] = j->prompt[t];
        mask[t] = 1;
        pos[t] = t;
    }
    const char *name = row_name(j);
    const cp_adapter_mix mix = {.B = 1, .names = &name};
    const cp_batch b = {.B = 1, .T = T, .input_ids = ids, .attention_mask = mask, .position_ids = pos};
    cp_status st = cp_kv_cache_init(&j->prefill, e->L, 1, T, e->kv_dim);
    if (st == CP_OK) st = cp_model_forward_cached_mix(e->m, &b, e->m->peft ? &mix : NULL, &j->prefill, e->logits, NULL);
    cp_free(ids);
    if (st != CP_OK) return CP_ERR;
    j->span = T;
    return choose(e, j, e->logits);
}

/* Row `dst_row` of dst (len columns filled) becomes the last `span` columns of row `src_row` of src,
 * right-aligned; the columns before are padding: mask 0, keys and values 0 (finite, so that a
 * masked probability of 0 times them stays 0). */
static void place_row(cp_kv_cache *dst, int64_t dst_row, const cp_kv_cache *src, int64_t src_row, int64_t span) {
    const int64_t D = dst->kv_dim, pad = dst->len - span;
    for (int64_t l = 0; l < dst->L; l++) {
        const size_t d0 = (size_t)(((l * dst->B + dst_row) * dst->capacity) * D);
        const size_t s0 = (size_t)(((l * src->B + src_row) * src->capacity + (src->len - span)) * D);
        memset(dst->k + d0, 0, (size_t)(pad * D) * sizeof(float));
        memset(dst->v + d0, 0, (size_t)(pad * D) * sizeof(float));
        memcpy(dst->k + d0 + (size_t)(pad * D), src->k + s0, (size_t)(span * D) * sizeof(float));
        memcpy(dst->v + d0 + (size_t)(pad * D), src->v + s0, (size_t)(span * D) * sizeof(float));
    }
    int64_t *mask = dst->mask + dst_row * dst->capacity;
    for (int64_t t = 0; t < dst->len; t++) mask[t] = t >= pad;
}

cp_status cp_serve_rebuild(cp_serve_engine *e, cp_serve_job **joins, int64_t n_joins) {
    const int64_t cap_rows = e->lim.max_batch;
    cp_serve_job **rows = cp_malloc((size_t)cap_rows * sizeof *rows, "the batch");
    int64_t *from = cp_malloc((size_t)cap_rows * sizeof *from, "the batch");
    if (!rows || !from) { cp_free(rows); cp_free(from); return CP_ERR; }
    int64_t n = 0, len = 0, need = 1;
    for (int64_t r = 0; r < e->n_rows; r++)
        if (!e->rows[r]->ended) { from[n] = r; rows[n++] = e->rows[r]; }
    const int64_t n_old = n;
    for (int64_t i = 0; i < n_joins && n < cap_rows; i++) { from[n] = -1; rows[n++] = joins[i]; }
    for (int64_t r = 0; r < n; r++) {
        const int64_t left = rows[r]->opt.max_new_tokens - rows[r]->out.n_tokens[0];
        if (rows[r]->span > len) len = rows[r]->span;
        if (left > need) need = left;
    }
    cp_kv_cache nc;
    memset(&nc, 0, sizeof nc);
    cp_status st = n ? cp_kv_cache_init(&nc, e->L, n, len + need, e->kv_dim) : CP_OK;
    if (st == CP_OK && n) {
        nc.len = len;
        for (int64_t r = 0; r < n; r++) {
            const cp_kv_cache *src = r < n_old ? &e->cache : &rows[r]->prefill;
            place_row(&nc, r, src, r < n_old ? from[r] : 0, rows[r]->span);
        }
    }
    if (st != CP_OK) { cp_free(rows); cp_free(from); return CP_ERR; }
    for (int64_t r = n_old; r < n; r++) cp_kv_cache_free(&rows[r]->prefill);
    cp_kv_cache_free(&e->cache);
    e->cache = nc;
    memcpy(e->rows, rows, (size_t)n * sizeof *rows);
    e->n_rows = n;
    cp_free(rows);
    cp_free(from);
    return CP_OK;
}

cp_status cp_serve_decode(cp_serve_engine *e) {
    const int64_t B = e->n_rows;
    if (B == 0) return CP_OK;
    if (e->cache.len + 1 > e->cache.capacity && cp_serve_rebuild(e, NULL, 0) != CP_OK) return CP_ERR;
    if (e->lim.step_delay_ms > 0) usleep((useconds_t)e->lim.step_delay_ms * 1000u);
    for (int64_t r = 0; r < B; r++) {
        const cp_serve_job *j = e->rows[r];
        e->ids[r] = j->seq[j->seq_len - 1];
        e->mask[r] = 1;
        e->pos[r] = j->span;
        e->names[r] = row_name(j);
    }
    const cp_adapter_mix mix = {.B = B, .names = e->names};
    const cp_batch b = {.B = B, .T = 1, .input_ids = e->ids, .attention_mask = e->mask, .position_ids = e->pos};
    if (cp_model_forward_cached_mix(e->m, &b, e->m->peft ? &mix : NULL, &e->cache, e->logits, NULL) != CP_OK) return CP_ERR;
    for (int64_t r = 0; r < B; r++) {
        cp_serve_job *j = e->rows[r];
        j->span++;
        if (choose(e, j, e->logits + r * e->V) != CP_OK) return CP_ERR;
    }
    return CP_OK;
}
