/*
 * engine.h — the generation engine behind `cpeft serve`: one scheduler thread owns the model and
 * decodes every running request together (continuous batching), each row with its own adapter and
 * its own KV cache row; other threads submit jobs, read their tokens as they come, load and unload
 * adapters through it.
 *
 *   submit     a job waits in a bounded queue (full: CP_SERVE_BUSY, the server's 429), then joins the
 *              batch at the next step: its prompt runs alone as a prefill (serve/batch.c), its first
 *              token is chosen, and its cache row is placed into the batch's shared cache.
 *   each step  one cached forward over every running row (mixed-adapter batch, one new token per
 *              row), then each row's next token by generate's own processors (cp_generation_next:
 *              the same code `cpeft generate` runs, seeded per request). Finished and cancelled rows
 *              leave before the next step; the shared cache is rebuilt when rows join or leave.
 *   adapters   loading and deleting mutate the model, so they run on the scheduler thread between
 *              steps; an adapter that running or queued jobs use is deleted when the last one ends.
 *
 * What it is not: HTTP or JSON (serve/api.c, serve/http.c). See docs/serve.md.
 */
#ifndef CP_SERVE_ENGINE_H
#define CP_SERVE_ENGINE_H

#include <stdint.h>

#include "core/error.h"
#include "cpeft.h"

typedef struct {
    int64_t max_batch;    /* rows decoded together (default 16) */
    int64_t max_queue;    /* jobs waiting for a row before submit answers CP_SERVE_BUSY (default 64) */
    int64_t max_context;  /* prompt + new tokens of one job at most */
    int step_delay_ms;    /* a pause before every decode step (tests of the queue; 0 = none) */
} cp_serve_limits;

typedef struct cp_serve_engine cp_serve_engine;
typedef struct cp_serve_job cp_serve_job;

/* What submit answers besides CP_OK. */
enum { CP_SERVE_BUSY = 2, CP_SERVE_CLOSED = 3, CP_SERVE_NO_ADAPTER = 4 };

/* Starts the scheduler thread on m (adapters already loaded are servable by name). base_opt: the
 * generation defaults every job starts from (cp_generate_options_init's; copied; its stop strings,
 * adapter names and callbacks are ignored). tok decodes for stop strings. */
cp_status cp_serve_engine_start(cp_serve_engine **out, cp_model *m, const cp_tokenizer *tok,
                                const cp_generate_options *base_opt, const cp_serve_limits *lim);

/* Per-job settings on top of base_opt. */
typedef struct {
    const char *adapter;          /* an adapter's name; NULL = the base model */
    int64_t max_new_tokens;
    int do_sample;
    double temperature, top_p;
    uint64_t seed;
    const char *const *stop;      /* copied */
    int n_stop;
    int32_t extra_eos;            /* another token that ends the job (chat: the end of turn), or CP_TOKEN_NONE */
} cp_serve_job_options;

/* Queues a job for prompt ids[0..n) (copied). Returns CP_OK with *job (release it with
 * cp_serve_job_release), CP_SERVE_BUSY when the queue is full, CP_SERVE_CLOSED when draining,
 * CP_SERVE_NO_ADAPTER when the adapter is unknown or being unloaded. */
int cp_serve_submit(cp_serve_engine *e, const int32_t *ids, int64_t n, const cp_serve_job_options *o, cp_serve_job **job);

/* Waits until the job has more than `have` tokens, has ended, or timeout_ms passed (< 0: no limit).
 * Copies tokens [have, *n) into *tokens (cp_malloc'd; NULL when none new); *done when the job ended,
 * with its finish reason, or *error (a static message) when it failed. */
void cp_serve_job_wait(cp_serve_job *j, int64_t have, int timeout_ms, int32_t **tokens, int64_t *n, int *done,
                       cp_finish_reason *finish, const char **error);
/* The caller is done with the job: a running one is cancelled (leaves the batch at the next step). */
void cp_serve_job_release(cp_serve_job *j);

/* Loads adapter DIR as `name` on the scheduler thread (blocks until done). Refused with a message:
 * a name in use, a method other than LoRA, a file for another base (the tensor and shapes named). */
cp_status cp_serve_adapter_load(cp_serve_engine *e, const char *dir, const char *name);
/* Unloads `name`: no new job may use it; deleted once its running jobs end. CP_ERR when unknown. */
cp_status cp_serve_adapter_unload(cp_serve_engine *e, const char *name);
/* The adapters a job may name now (cp_free each and the array). */
cp_status cp_serve_adapter_names(cp_serve_engine *e, char ***names, int *n);

/* Counters: jobs queued, running, tokens generated since start, the most rows one step has decoded. */
void cp_serve_engine_counts(cp_serve_engine *e, int64_t *queued, int64_t *running, int64_t *tokens, int64_t *peak);
/* Whether the engine has stopped accepting jobs (draining). */
int cp_serve_engine_closed(cp_serve_engine *e);
/* Stops accepting jobs (submit answers CP_SERVE_CLOSED); running and queued jobs go on. */
void cp_serve_engine_drain(cp_serve_engine *e);
/* Waits until no job is queued or running, or until deadline_ms passed; 1 when idle. */
int cp_serve_engine_wait_idle(cp_serve_engine *e, int64_t deadline_ms);
/* Ends every job left (error "the server is shutting down"), joins the thread, frees the engine. */
void cp_serve_engine_stop(cp_serve_engine *e);

#endif
