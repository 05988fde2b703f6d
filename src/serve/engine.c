/*
 * engine.c — the scheduler thread of `cpeft serve`, its queue, jobs and adapters; see engine.h.
 * The batch itself (prefill, the shared cache, the decode step) is serve/batch.c.
 *
 * The loop, on the scheduler thread:
 *   1. under the lock: run pending adapter loads (the lock released while one loads), delete the
 *      adapters being unloaded that no job uses any more, mark cancelled rows ended, and take queued
 *      jobs for the free rows (max_batch); with nothing to do, wait.
 *   2. without the lock: each new job's prefill and first token; the shared cache rebuilt when rows
 *      joined or left; one decode step over every row.
 *   3. jobs that ended leave; their references to their adapter and the scheduler's to them drop.
 * Readers (serve/api.c) wait on `progress`, broadcast after every token published.
 */
#include "core/alloc.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "serve/engine_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- jobs ---------------------------------------------------------------------------------------- */

static void job_free(cp_serve_job *j) {
    cp_free(j->prompt);
    cp_free(j->adapter);
    for (int i = 0; i < CP_SERVE_MAX_STOP; i++) cp_free(j->stop[i]);
    cp_generation_free(&j->out);
    cp_free(j->seen);
    cp_free(j->seq);
    cp_free(j->pub);
    cp_kv_cache_free(&j->prefill);
    cp_free(j);
}

static serve_adapter *find_adapter(cp_serve_engine *e, const char *name) {
    for (int i = 0; i < e->n_ads; i++)
        if (!strcmp(e->ads[i].name, name)) return &e->ads[i];
    return NULL;
}

/* Drops one reference (under the lock); the last frees the job. */
static void unref(cp_serve_job *j) {
    if (--j->refs == 0) job_free(j);
}

/* The job has ended for the scheduler (under the lock): its adapter reference and the scheduler's
 * reference to it drop. */
static void retire(cp_serve_engine *e, cp_serve_job *j) {
    if (j->adapter) {
        serve_adapter *a = find_adapter(e, j->adapter);
        if (a) a->refs--;
    }
    e->n_running--;
    unref(j);
    pthread_cond_broadcast(&e->progress);
}

void cp_serve_publish(cp_serve_engine *e, cp_serve_job *j, int32_t tok, int finished, cp_finish_reason finish) {
    pthread_mutex_lock(&e->mu);
    if (cp_grow(&j->pub, &j->cap_pub, (size_t)j->n_pub + 1, sizeof *j->pub, 64, "generated tokens") == 0)
        j->pub[j->n_pub++] = tok;
    e->tokens_total++;
    if (finished) {
        j->done = 1;
        j->finish = finish;
    }
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
}

void cp_serve_end(cp_serve_engine *e, cp_serve_job *j, const char *error) {
    pthread_mutex_lock(&e->mu);
    if (!j->done) {
        j->done = 1;
        if (error) {
            snprintf(j->error_buf, sizeof j->error_buf, "%s", error);
            j->error = j->error_buf;
        }
    }
    j->ended = 1;
    pthread_cond_broadcast(&e->progress);
    pthread_mutex_unlock(&e->mu);
}

int cp_serve_cancelled(cp_serve_engine *e, cp_serve_job *j) {
    pthread_mutex_lock(&e->mu);
    const int c = j->cancelled;
    pthread_mutex_unlock(&e->mu);
    return c;
}

int cp_serve_submit(cp_serve_engine *e, const int32_t *ids, int64_t n, const cp_serve_job_options *o, cp_serve_job **out) {
    *out = NULL;
    cp_serve_job *j = cp_calloc(1, sizeof *j, "a job");
    if (!j) return CP_ERR;
    j->e = e;
    j->n_prompt = n;
    j->opt = e->base;
    j->opt.max_new_tokens = o->max_new_tokens;
    j->opt.do_sample = o->do_sample;
    if (o->do_sample) {
        j->opt.temperature = o->temperature;
        j->opt.top_p = o->top_p;
    }
    j->opt.seed = o->seed;
    j->opt.adapter_names = NULL;
    j->opt.on_token = NULL;
    j->opt.tokenizer = e->tok;
    j->opt.n_stop_strings = o->n_stop < CP_SERVE_MAX_STOP ? o->n_stop : CP_SERVE_MAX_STOP;
    int have = o->extra_eos == CP_TOKEN_NONE;
    for (int k = 0; k < j->opt.n_eos; k++) have |= j->opt.eos_token_ids[k] == o->extra_eos;
    if (!have && j->opt.n_eos < CP_MAX_EOS) j->opt.eos_token_ids[j->opt.n_eos++] = o->extra_eos;
    int ok = (j->prompt = cp_malloc((size_t)n * sizeof *j->prompt, "prompt ids")) != NULL;
    for (int i = 0; ok && i < j->opt.n_stop_strings; i++) ok = (j->stop[i] = cp_strdup(o->stop[i])) != NULL;
    j->opt.stop_strings = (const char *const *)j->stop;
    if (ok && o->adapter) ok = (j->adapter = cp_strdup(o->adapter)) != NULL;
    ok = ok && (j->seen = cp_calloc((size_t)e->V, 1, "seen tokens")) &&
         (j->seq = cp_malloc((size_t)(n + o->max_new_tokens + 1) * sizeof *j->seq, "the sequence")) &&
         (j->out.tokens = cp_calloc(1, sizeof *j->out.tokens, "tokens")) &&
         (j->out.n_tokens = cp_calloc(1, sizeof *j->out.n_tokens, "tokens")) &&
         (j->out.finish = cp_calloc(1, sizeof *j->out.finish, "finish"));
    if (!ok) { job_free(j); return CP_ERR; }
    j->out.n = 1;
    j->out.num_return_sequences = 1;
    memcpy(j->prompt, ids, (size_t)n * sizeof *ids);
    for (int64_t t = 0; t < n; t++) {
        j->seq[t] = ids[t];
        j->seen[ids[t]] = 1;
    }
    j->seq_len = n;
    cp_rng_seed(&j->rng, o->seed); /* cpeft generate's stream for a single prompt: seed + 0 */

    pthread_mutex_lock(&e->mu);
    int rc = CP_OK;
    serve_adapter *a = o->adapter ? find_adapter(e, o->adapter) : NULL;
    if (e->closed) rc = CP_SERVE_CLOSED;
    else if (o->adapter && (!a || a->unloading)) rc = CP_SERVE_NO_ADAPTER;
    else if (e->n_queued >= e->lim.max_queue) rc = CP_SERVE_BUSY;
    if (rc == CP_OK) {
        if (a) a->refs++;
        j->refs = 2; /* the caller's and the scheduler's */
        if (e->tail) e->tail->next = j;
        else e->head = j;
        e->tail = j;
        e->n_queued++;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc != CP_OK) job_free(j);
    else *out = j;
    return rc;
}

static void deadline_in(struct timespec *ts, int64_t ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

void cp_serve_job_wait(cp_serve_job *j, int64_t have, int timeout_ms, int32_t **tokens, int64_t *n, int *done,
                       cp_finish_reason *finish, const char **error) {
    cp_serve_engine *e = j->e;
    struct timespec ts;
    if (timeout_ms >= 0) deadline_in(&ts, timeout_ms);
    *tokens = NULL;
    pthread_mutex_lock(&e->mu);
    while (j->n_pub <= have && !j->done) {
        if (timeout_ms < 0) pthread_cond_wait(&e->progress, &e->mu);
        else if (pthread_cond_timedwait(&e->progress, &e->mu, &ts) == ETIMEDOUT) break;
    }
    *n = j->n_pub;
    if (j->n_pub > have && (*tokens = cp_malloc((size_t)(j->n_pub - have) * sizeof **tokens, "tokens")))
        memcpy(*tokens, j->pub + have, (size_t)(j->n_pub - have) * sizeof **tokens);
    if (!*tokens) *n = have;
    *done = j->done && *n == j->n_pub;
    *finish = j->finish;
    *error = j->error;
    pthread_mutex_unlock(&e->mu);
}

void cp_serve_job_release(cp_serve_job *j) {
    cp_serve_engine *e = j->e;
    pthread_mutex_lock(&e->mu);
    j->cancelled = 1;
    pthread_cond_signal(&e->work);
    unref(j);
    pthread_mutex_unlock(&e->mu);
}

/* ---- adapters ------------------------------------------------------------------------------------ */

/* On the scheduler thread: loads one adapter and keeps it only when the batch can run it. */
static cp_status load_adapter(cp_serve_engine *e, const char *dir, const char *name) {
    if (cp_adapter_load(e->m, dir, name, 0, 0) != CP_OK) return CP_ERR;
    const cp_peft_adapter *a = cp_peft_find_adapter(e->m, name);
    const char *why = NULL;
    if (!a) why = "it was not loaded";
    else if (strcmp(a->config->method->peft_type, "LORA"))
        why = "cpeft serve runs LoRA adapters (mixed-adapter batches); this one is not LoRA";
    else if (e->m->peft->n_saved > 0) why = "mixed-adapter batches with modules_to_save are not supported yet";
    if (!why) return CP_OK;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", dir, why);
    cp_peft_delete_adapter(e->m, name);
    return cp_error("%s", msg);
}

cp_status cp_serve_adapter_load(cp_serve_engine *e, const char *dir, const char *name) {
    serve_load l = {.dir = dir, .name = name};
    pthread_mutex_lock(&e->mu);
    if (find_adapter(e, name)) {
        pthread_mutex_unlock(&e->mu);
        return cp_error("an adapter named \"%s\" is already loaded", name);
    }
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return cp_error("the server is shutting down");
    }
    l.next = e->loads;
    e->loads = &l;
    pthread_cond_signal(&e->work);
    while (!l.done) pthread_cond_wait(&e->progress, &e->mu);
    pthread_mutex_unlock(&e->mu);
    if (l.st != CP_OK) return cp_error("%s", l.message);
    return CP_OK;
}

static cp_status add_name(cp_serve_engine *e, const char *name) {
    if (cp_grow(&e->ads, &e->cap_ads, (size_t)e->n_ads + 1, sizeof *e->ads, 8, "adapters")) return CP_ERR;
    serve_adapter *a = &e->ads[e->n_ads];
    memset(a, 0, sizeof *a);
    if (!(a->name = cp_strdup(name))) return CP_ERR;
    e->n_ads++;
    return CP_OK;
}

cp_status cp_serve_adapter_unload(cp_serve_engine *e, const char *name) {
    pthread_mutex_lock(&e->mu);
    serve_adapter *a = find_adapter(e, name);
    cp_status st = a && !a->unloading ? CP_OK : cp_error("no adapter named \"%s\" is loaded", name);
    if (st == CP_OK) {
        a->unloading = 1;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

cp_status cp_serve_adapter_names(cp_serve_engine *e, char ***names, int *n) {
    pthread_mutex_lock(&e->mu);
    *n = 0;
    *names = cp_calloc((size_t)e->n_ads + 1, sizeof **names, "adapter names");
    cp_status st = *names ? CP_OK : CP_ERR;
    for (int i = 0; st == CP_OK && i < e->n_ads; i++)
        if (!e->ads[i].unloading) {
            if (!((*names)[*n] = cp_strdup(e->ads[i].name))) st = CP_ERR;
            else (*n)++;
        }
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* Under the lock, on the scheduler thread: loads waiting (the lock dropped during each) and
 * unloads whose adapter no job uses any more. */
static void run_adapter_commands(cp_serve_engine *e) {
    while (e->loads) {
        serve_load *l = e->loads;
        e->loads = l->next;
        pthread_mutex_unlock(&e->mu);
        l->st = load_adapter(e, l->dir, l->name);
        if (l->st != CP_OK) snprintf(l->message, sizeof l->message, "%s", cp_last_error());
        pthread_mutex_lock(&e->mu);
        if (l->st == CP_OK && add_name(e, l->name) != CP_OK) {
            snprintf(l->message, sizeof l->message, "%s", cp_last_error());
            l->st = CP_ERR;
        }
        l->done = 1;
        pthread_cond_broadcast(&e->progress);
    }
    for (int i = 0; i < e->n_ads; i++) {
        serve_adapter *a = &e->ads[i];
        if (!a->unloading || a->refs > 0) continue;
        if (cp_peft_delete_adapter(e->m, a->name) != CP_OK)
            fprintf(stderr, "cpeft serve: unloading adapter %s: %s\n", a->name, cp_last_error());
        else
            fprintf(stderr, "cpeft serve: adapter %s unloaded\n", a->name);
        cp_free(a->name);
        e->ads[i--] = e->ads[--e->n_ads];
    }
}

/* ---- the scheduler thread -------------------------------------------------------------------------- */

static void fail_all(cp_serve_engine *e, cp_serve_job **jobs, int64_t n, const char *why) {
    for (int64_t i = 0; i < n; i++)
        if (!jobs[i]->ended) cp_serve_end(e, jobs[i], why);
}

static void *scheduler(void *arg) {
    cp_serve_engine *e = arg;
    const int64_t maxb = e->lim.max_batch;
    cp_serve_job **joins = cp_malloc((size_t)maxb * sizeof *joins, "joining jobs");
    cp_serve_job **old = cp_malloc((size_t)maxb * sizeof *old, "the batch");
    if (!joins || !old) {
        fprintf(stderr, "cpeft serve: %s\n", cp_last_error());
        return NULL;
    }
    pthread_mutex_lock(&e->mu);
    for (;;) {
        run_adapter_commands(e);
        for (int64_t r = 0; r < e->n_rows; r++)
            if (e->rows[r]->cancelled && !e->rows[r]->ended) {
                e->rows[r]->ended = 1;
                e->rows[r]->done = 1;
            }
        int64_t n_joins = 0;
        while (e->head && e->n_rows + n_joins < maxb) {
            cp_serve_job *j = e->head;
            e->head = j->next;
            if (!e->head) e->tail = NULL;
            e->n_queued--;
            e->n_running++;
            joins[n_joins++] = j;
        }
        int ended = 0;
        for (int64_t r = 0; r < e->n_rows; r++) ended |= e->rows[r]->ended;
        if (e->stopping && !n_joins && !e->n_rows) break;
        if (!n_joins && !e->n_rows && !ended) {
            pthread_cond_wait(&e->work, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);

        int64_t n_new = 0;
        for (int64_t i = 0; i < n_joins; i++) {
            cp_serve_job *j = joins[i];
            if (cp_serve_cancelled(e, j)) cp_serve_end(e, j, NULL);
            else if (cp_serve_prefill(e, j) != CP_OK) cp_serve_end(e, j, cp_last_error());
            if (!j->ended) {
                joins[n_new++] = j;
                continue;
            }
            pthread_mutex_lock(&e->mu);
            retire(e, j);
            pthread_mutex_unlock(&e->mu);
        }
        const int64_t n_old = e->n_rows;
        memcpy(old, e->rows, (size_t)n_old * sizeof *old);
        cp_status st = CP_OK;
        if (n_new || ended) st = cp_serve_rebuild(e, joins, n_new);
        if (st != CP_OK) {
            fail_all(e, old, n_old, cp_last_error());
            fail_all(e, joins, n_new, cp_last_error());
            cp_kv_cache_free(&e->cache);
            e->n_rows = 0;
            pthread_mutex_lock(&e->mu);
            for (int64_t i = 0; i < n_old; i++) retire(e, old[i]);
            for (int64_t i = 0; i < n_new; i++) retire(e, joins[i]);
            continue;
        }
        pthread_mutex_lock(&e->mu);
        for (int64_t i = 0; i < n_old; i++)
            if (old[i]->ended) retire(e, old[i]);
        if (e->n_rows > e->peak_rows) e->peak_rows = e->n_rows;
        const int stopping = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stopping) fail_all(e, e->rows, e->n_rows, "the server is shutting down");
        else if (cp_serve_decode(e) != CP_OK) fail_all(e, e->rows, e->n_rows, cp_last_error());
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    cp_free(joins);
    cp_free(old);
    return NULL;
}

cp_status cp_serve_engine_start(cp_serve_engine **out, cp_model *m, const cp_tokenizer *tok,
                                const cp_generate_options *base_opt, const cp_serve_limits *lim) {
    *out = NULL;
    cp_serve_engine *e = cp_calloc(1, sizeof *e, "the engine");
    if (!e) return CP_ERR;
    e->m = m;
    e->tok = tok;
    e->base = *base_opt;
    e->base.stop_strings = NULL;
    e->base.n_stop_strings = 0;
    e->lim = *lim;
    e->V = m->config.vocab_size;
    e->L = m->config.num_layers;
    e->kv_dim = (m->config.num_kv_heads > 0 ? m->config.num_kv_heads : m->config.num_heads) * m->config.head_dim;
    const int64_t B = lim->max_batch;
    if (m->arch->encoder_decoder || m->prompt)
        return cp_free(e), cp_error("cpeft serve runs decoder-only models without prompt-learning adapters");
    e->rows = cp_calloc((size_t)B, sizeof *e->rows, "the batch");
    e->logits = cp_malloc((size_t)(B * e->V) * sizeof *e->logits, "logits");
    e->scratch.f = cp_malloc((size_t)e->V * sizeof *e->scratch.f, "sampling scratch");
    e->scratch.items = cp_malloc((size_t)e->V * sizeof *e->scratch.items, "sampling scratch");
    e->ids = cp_malloc((size_t)(3 * B) * sizeof *e->ids, "a step's column");
    e->names = cp_calloc((size_t)B, sizeof *e->names, "adapter names");
    cp_status st = e->rows && e->logits && e->scratch.f && e->scratch.items && e->ids && e->names ? CP_OK : CP_ERR;
    if (st == CP_OK) {
        e->mask = e->ids + B;
        e->pos = e->mask + B;
    }
    /* the adapters loaded before the start */
    for (int i = 0; st == CP_OK && m->peft && i < m->peft->n; i++) st = add_name(e, m->peft->adapters[i].name);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    pthread_cond_init(&e->progress, NULL);
    if (st == CP_OK && pthread_create(&e->thread, NULL, scheduler, e) != 0) st = cp_error("cannot start the scheduler thread");
    if (st != CP_OK) {
        for (int i = 0; i < e->n_ads; i++) cp_free(e->ads[i].name);
        cp_free(e->ads); cp_free(e->rows); cp_free(e->logits); cp_free(e->scratch.f); cp_free(e->scratch.items);
        cp_free(e->ids); cp_free(e->names); cp_free(e);
        return CP_ERR;
    }
    *out = e;
    return CP_OK;
}

void cp_serve_engine_counts(cp_serve_engine *e, int64_t *queued, int64_t *running, int64_t *tokens, int64_t *peak) {
    pthread_mutex_lock(&e->mu);
    *peak = e->peak_rows;
    *queued = e->n_queued;
    *running = e->n_running;
    *tokens = e->tokens_total;
    pthread_mutex_unlock(&e->mu);
}

int cp_serve_engine_closed(cp_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    const int c = e->closed;
    pthread_mutex_unlock(&e->mu);
    return c;
}

void cp_serve_engine_drain(cp_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->closed = 1;
    pthread_mutex_unlock(&e->mu);
}

int cp_serve_engine_wait_idle(cp_serve_engine *e, int64_t deadline_ms) {
    struct timespec ts;
    deadline_in(&ts, deadline_ms);
    pthread_mutex_lock(&e->mu);
    while (e->n_queued + e->n_running > 0)
        if (pthread_cond_timedwait(&e->progress, &e->mu, &ts) == ETIMEDOUT) break;
    const int idle = e->n_queued + e->n_running == 0;
    pthread_mutex_unlock(&e->mu);
    return idle;
}

void cp_serve_engine_stop(cp_serve_engine *e) {
    pthread_mutex_lock(&e->mu);
    e->closed = e->stopping = 1;
    /* queued jobs never start: they end here */
    while (e->head) {
        cp_serve_job *j = e->head;
        e->head = j->next;
        e->n_queued--;
        e->n_running++;
        j->done = 1;
        snprintf(j->error_buf, sizeof j->error_buf, "the server is shutting down");
        j->error = j->error_buf;
        retire(e, j);
    }
    e->tail = NULL;
    pthread_cond_broadcast(&e->progress);
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->mu);
    for (int64_t r = 0; r < e->n_rows; r++) retire(e, e->rows[r]);
    e->n_rows = 0;
    pthread_mutex_unlock(&e->mu);
    cp_kv_cache_free(&e->cache);
    for (int i = 0; i < e->n_ads; i++) cp_free(e->ads[i].name);
    cp_free(e->ads); cp_free(e->rows); cp_free(e->logits); cp_free(e->scratch.f); cp_free(e->scratch.items);
    cp_free(e->ids); cp_free(e->names);
    pthread_cond_destroy(&e->work);
    pthread_cond_destroy(&e->progress);
    pthread_mutex_destroy(&e->mu);
    cp_free(e);
}
