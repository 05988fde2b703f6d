/*
 * response.h — the JSON bodies `cpeft serve` answers with, in OpenAI's shapes: errors
 * ({"error": {"message", "type", "param", "code"}}), completions and chat completions whole or as
 * server-sent-event chunks ("data: {...}\n\n", then "data: [DONE]\n\n"), the model list.
 * Each returns a cp_malloc'd NUL-terminated string (NULL when memory runs out).
 */
#ifndef CP_SERVE_RESPONSE_H
#define CP_SERVE_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/strbuf.h"
#include "serve/request.h"

/* param / code NULL: JSON null. */
char *cp_serve_error_body(const char *message, const char *type, const char *param, const char *code);

/* What a completion response carries besides its text. */
typedef struct {
    cp_serve_kind kind;
    const char *id;            /* "cmpl-..." / "chatcmpl-..." */
    const char *model;
    int64_t created;           /* Unix seconds */
    const char *finish;        /* "stop", "length", or NULL (a chunk before the end) */
    int64_t prompt_tokens, completion_tokens;
} cp_serve_completion;

/* The whole response: text (len bytes, may hold any UTF-8) as choices[0].text or .message.content,
 * with usage. */
char *cp_serve_completion_body(const cp_serve_completion *c, const char *text, size_t len);
/* Appends one SSE event to sb: a chunk with `len` bytes of new text (chat: delta.content; role
 * "assistant" when `first`), finish_reason c->finish; with_usage: a final chunk with empty choices and
 * usage (stream_options.include_usage). */
void cp_serve_sse_chunk(cp_strbuf *sb, const cp_serve_completion *c, const char *text, size_t len, int first);
void cp_serve_sse_usage(cp_strbuf *sb, const cp_serve_completion *c);
/* "data: [DONE]\n\n" */
void cp_serve_sse_done(cp_strbuf *sb);

/* One model object, or the list of names[0..n) (the first is the base model). */
char *cp_serve_model_body(const char *name, int64_t created);
char *cp_serve_models_body(const char *const *names, int n, int64_t created);

#endif
