/*
 * engine_internal.h — what serve/engine.c (threads, queue, adapters) and serve/batch.c (the
 * continuous batch: prefill, the shared cache, the decode step) share. Not a public interface.
 *
 * Locking: e->mu guards the queue, the adapter table, each job's published tokens and flags
 * (pub, n_pub, done, cancelled, refs) and the counters. The model, the shared cache, e->rows and a
 * job's decoding state are the scheduler thread's alone.
 */
#ifndef CP_SERVE_ENGINE_INTERNAL_H
#define CP_SERVE_ENGINE_INTERNAL_H

#include <pthread.h>

#include "core/rng.h"
#include "generate/sampling.h"
#include "models/kv_cache.h"
#include "serve/engine.h"
#include "serve/request.h"

struct cp_serve_job {
    /* set by submit, read-only after */
    int32_t *prompt;             /* [n_prompt] */
    int64_t n_prompt;
    char *adapter;               /* NULL: the base model */
    cp_generate_options opt;     /* the engine's base options with the job's settings */
    char *stop[CP_SERVE_MAX_STOP];
    /* the scheduler thread's */
    cp_generation out;           /* n = 1: the tokens chosen so far */
    int32_t cap_tokens;
    uint8_t *seen;               /* (V) ids in the sequence (repetition penalty) */
    int64_t *seq;                /* [n_prompt + max_new_tokens] prompt and new tokens */
    int64_t seq_len;
    cp_rng rng;
    int64_t span;                /* cache columns holding this job's tokens (the last ones of its row) */
    cp_kv_cache prefill;         /* the prompt's keys and values until the job joins the batch */
    int ended;                   /* the scheduler is done with it */
    /* under e->mu */
    int32_t *pub;                /* [n_pub] the tokens readers may see */
    int64_t n_pub;
    size_t cap_pub;
    int done, cancelled, refs;
    cp_finish_reason finish;
    const char *error;           /* NULL, or error_buf */
    char error_buf[256];
    struct cp_serve_engine *e;
    cp_serve_job *next;          /* the queue */
};

typedef struct {
    char *name;
    int64_t refs;                /* queued and running jobs that name it */
    int unloading;               /* deleted when refs reaches 0; no new job may name it */
} serve_adapter;

typedef struct serve_load {
    const char *dir, *name;
    cp_status st;
    char message[1024];
    int done;
    struct serve_load *next;
} serve_load;

struct cp_serve_engine {
    cp_model *m;
    const cp_tokenizer *tok;
    cp_generate_options base;
    cp_serve_limits lim;
    int64_t V, L, kv_dim;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;         /* the scheduler waits for jobs or commands */
    pthread_cond_t progress;     /* readers wait for tokens; broadcast after every step */
    cp_serve_job *head, *tail;   /* queued jobs */
    int64_t n_queued, n_running, tokens_total;
    int64_t peak_rows;           /* the most rows one decode step has run */
    serve_adapter *ads;
    int n_ads;
    size_t cap_ads;
    serve_load *loads;           /* pending adapter loads */
    int closed, stopping;
    /* the scheduler thread's */
    cp_serve_job **rows;         /* [n_rows] the batch, in cache-row order */
    int64_t n_rows;
    cp_kv_cache cache;           /* (n_rows rows) */
    float *logits;               /* (max_batch, V) */
    cp_sampling_scratch scratch;
    int64_t *ids, *mask, *pos;   /* (max_batch) a step's column */
    const char **names;          /* (max_batch) each row's adapter, "__base__" for none */
};

/* batch.c: the prefill of a job (its cache, its first token); 0 when the job goes on. */
cp_status cp_serve_prefill(cp_serve_engine *e, cp_serve_job *j);
/* batch.c: the batch becomes the running rows of e->rows that have not ended plus joins[0..n) (their
 * prefill caches), in one freshly placed shared cache. */
cp_status cp_serve_rebuild(cp_serve_engine *e, cp_serve_job **joins, int64_t n_joins);
/* batch.c: one decode step over e->rows: a token for every row. */
cp_status cp_serve_decode(cp_serve_engine *e);

/* engine.c: makes token `tok` visible to readers; ends the job when `finished` (reason finish). */
void cp_serve_publish(cp_serve_engine *e, cp_serve_job *j, int32_t tok, int finished, cp_finish_reason finish);
/* engine.c: ends a job with an error (or cancellation) and drops the scheduler's reference. */
void cp_serve_end(cp_serve_engine *e, cp_serve_job *j, const char *error);
/* engine.c: whether a reader cancelled the job (under the lock). */
int cp_serve_cancelled(cp_serve_engine *e, cp_serve_job *j);

#endif
