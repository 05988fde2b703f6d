/*
 * request.h — the body of an OpenAI `/v1/completions` or `/v1/chat/completions` request, parsed and
 * checked: what `cpeft serve` accepts, and the field at fault when it refuses (OpenAI's error "param").
 *
 * Accepted: model, prompt (a string, a list of one string, or a list of token ids) or messages
 * ({"role", "content"} objects, content a string or a list of {"type": "text", "text"} parts),
 * max_tokens (max_completion_tokens for chat), temperature (0 = greedy), top_p, stop (a string or up
 * to 4), seed, stream, stream_options.include_usage, n (1 only). Other OpenAI fields that would change
 * the output (n > 1, best_of > 1, echo, logprobs, suffix, tools, a non-text response_format) are
 * refused by name; fields that do not (user, metadata, ...) are ignored, as OpenAI's server ignores
 * unknown ones.
 *
 * What it is not: tokenization or chat rendering (serve/api.c), the HTTP framing (serve/http.c).
 */
#ifndef CP_SERVE_REQUEST_H
#define CP_SERVE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

#define CP_SERVE_MAX_STOP 4

typedef enum { CP_SERVE_COMPLETION, CP_SERVE_CHAT } cp_serve_kind;

typedef struct {
    cp_serve_kind kind;
    char *model;              /* "model", or NULL when absent */
    char *prompt;             /* completions: the prompt text; NULL when given as token ids */
    int32_t *prompt_ids;      /* completions: [n_prompt_ids] token ids (not checked against a vocabulary) */
    int64_t n_prompt_ids;
    cJSON *messages;          /* chat: [{"role", "content": string}] (parts joined), owned */
    int64_t max_tokens;       /* -1: absent (the server's default) */
    double temperature;       /* [0, 2]; 0 = greedy; OpenAI's default 1 */
    double top_p;             /* (0, 1]; default 1 */
    char *stop[CP_SERVE_MAX_STOP];
    int n_stop;
    int has_seed;
    uint64_t seed;
    int stream;
    int include_usage;        /* stream_options.include_usage: a last chunk with usage */
} cp_serve_params;

/* Parses body (len bytes, not NUL-terminated) as a request of `kind`. On a refusal: CP_ERR with the
 * message (cp_last_error) and the field at fault in param (param_cap bytes; "" when the body itself). */
cp_status cp_serve_parse_request(const char *body, size_t len, cp_serve_kind kind, cp_serve_params *out, char *param,
                                 size_t param_cap);
void cp_serve_params_free(cp_serve_params *p);

#endif
