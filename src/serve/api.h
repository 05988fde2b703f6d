/*
 * api.h — the OpenAI-compatible API of `cpeft serve` apart from HTTP framing: a request (method,
 * path, body) in, a status and a JSON body (or a server-sent-event stream) out.
 *
 *   GET    /health                      {"status": "ok" | "draining", "queued", "running"}
 *   GET    /v1/models[/NAME]            the base model and each adapter, by name
 *   POST   /v1/completions              prompt → text (the model field picks the adapter)
 *   POST   /v1/chat/completions         messages rendered with the model's chat template
 *   POST   /v1/adapters                 {"name", "path"}: load an adapter directory
 *   DELETE /v1/adapters/NAME            unload it (after the jobs that use it)
 *
 * Errors are OpenAI's: 400 bad JSON or field (param names it), 404 unknown model / URL, 429 queue
 * full, 503 draining, 500 a failure while generating. serve/http.c adds 413 (body over the limit).
 */
#ifndef CP_SERVE_API_H
#define CP_SERVE_API_H

#include <stddef.h>
#include <stdint.h>

#include "chat/chat_template.h"
#include "serve/engine.h"

typedef struct {
    cp_serve_engine *engine;
    const cp_tokenizer *tok;
    const cp_chat_template *chat;  /* NULL: /v1/chat/completions answers 400 */
    const char *model_name;        /* the base model's name in "model" */
    int64_t vocab_size;
    int64_t max_context;           /* prompt + max_tokens at most */
    int64_t default_max_tokens;    /* when a request gives none (then also cut to the context) */
    int64_t created;               /* Unix seconds, the models' "created" */
} cp_serve_api;

typedef struct cp_serve_stream cp_serve_stream;

typedef struct {
    int status;
    char *body;                    /* cp_malloc'd; NULL with a stream */
    cp_serve_stream *stream;       /* "text/event-stream": read with cp_serve_stream_read */
    int64_t prompt_tokens, completion_tokens; /* for the log line (a stream's: cp_serve_stream_tokens) */
} cp_serve_reply;

void cp_serve_api_handle(const cp_serve_api *api, const char *method, const char *path, const char *body, size_t len,
                         cp_serve_reply *out);

/* Up to cap bytes of the event stream into buf; blocks until there are some. 0: the stream ended. */
size_t cp_serve_stream_read(cp_serve_stream *s, char *buf, size_t cap);
/* The completion tokens sent so far. */
int64_t cp_serve_stream_tokens(const cp_serve_stream *s);
/* Ends the stream (a client that went away: the job is cancelled and leaves the batch). */
void cp_serve_stream_close(cp_serve_stream *s);

#endif
