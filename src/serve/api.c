/*
 * api.c — the OpenAI-compatible endpoints of `cpeft serve`; see api.h. A completion request is
 * parsed (serve/request.c), its model field mapped to an adapter, its prompt tokenized as `cpeft
 * generate` tokenizes it (completions: special tokens added and a trailing eos dropped; chat: the
 * chat template with add_generation_prompt, its end of turn an extra eos), checked against the
 * context, and submitted to the engine; the answer is the decoded new text (special tokens skipped),
 * cut before a stop sequence as OpenAI cuts it, whole or streamed.
 *
 * Streaming sends what the new tokens add to the decoded text, holding back a trailing U+FFFD (a
 * UTF-8 sequence the next token completes) and, while stop sequences are given, the bytes that could
 * still begin one — so no client ever sees text after a stop sequence.
 */
#include "serve/api.h"
#include "core/alloc.h"
#include "core/json_write.h"
#include "io/json.h"
#include "serve/request.h"
#include "serve/response.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_uint_fast64_t next_id = 1;

static void error_reply(cp_serve_reply *out, int status, const char *message, const char *type, const char *param,
                        const char *code) {
    out->status = status;
    out->body = cp_serve_error_body(message, type, param, code);
}

static void bad_request(cp_serve_reply *out, const char *message, const char *param, const char *code) {
    error_reply(out, 400, message, "invalid_request_error", param, code);
}

static const char *finish_name(cp_finish_reason f) { return f == CP_FINISH_LENGTH ? "length" : "stop"; }

/* ---- text ---------------------------------------------------------------------------------------- */

/* The decoded new text of tokens[0..n) (special tokens skipped) in *text (free()), and how much of it
 * may be shown: *show bytes, cut before the first stop sequence (*cut = 1), or, while not done, short
 * of a trailing U+FFFD and of the bytes a stop sequence could still begin with. */
static cp_status visible(const cp_serve_api *api, const int32_t *tokens, int64_t n, char *const *stop, int n_stop, int done,
                         char **text, size_t *show, int *cut) {
    size_t len = 0;
    *cut = 0;
    *show = 0;
    if (cp_tokenizer_decode(api->tok, tokens, (size_t)n, 1, text, &len) != CP_OK) return CP_ERR;
    size_t keep = len, hold = 0;
    for (int i = 0; i < n_stop; i++) {
        const char *at = memmem(*text, len, stop[i], strlen(stop[i]));
        if (at && (size_t)(at - *text) < keep) { keep = (size_t)(at - *text); *cut = 1; }
        if (strlen(stop[i]) - 1 > hold) hold = strlen(stop[i]) - 1;
    }
    if (!*cut && !done) {
        if (keep >= 3 && !memcmp(*text + keep - 3, "\xEF\xBF\xBD", 3)) keep -= 3;
        keep = keep > hold ? keep - hold : 0;
        while (keep > 0 && keep < len && ((unsigned char)(*text)[keep] & 0xC0) == 0x80) keep--; /* a whole character */
    }
    *show = keep;
    return CP_OK;
}

/* ---- streams ------------------------------------------------------------------------------------- */

struct cp_serve_stream {
    const cp_serve_api *api;
    cp_serve_job *job;
    cp_serve_completion c;
    char id[64];
    char *model;
    char *stop[CP_SERVE_MAX_STOP];
    int n_stop, include_usage, first, ended;
    int32_t *tokens;
    int64_t n;
    size_t cap, sent;
    cp_strbuf pending;
    size_t off;
};

/* Waits for the job's next tokens and appends the events they make to s->pending. */
static void stream_advance(cp_serve_stream *s) {
    int32_t *fresh;
    int64_t n;
    int done;
    cp_finish_reason finish;
    const char *error;
    cp_serve_job_wait(s->job, s->n, -1, &fresh, &n, &done, &finish, &error);
    if (fresh && !cp_grow(&s->tokens, &s->cap, (size_t)n, sizeof *s->tokens, 64, "streamed tokens")) {
        memcpy(s->tokens + s->n, fresh, (size_t)(n - s->n) * sizeof *fresh);
        s->n = n;
    }
    cp_free(fresh);
    char *text = NULL;
    size_t show = 0;
    int cut = 0;
    if (visible(s->api, s->tokens, s->n, s->stop, s->n_stop, done, &text, &show, &cut) != CP_OK) {
        done = 1;
        error = cp_last_error();
    }
    s->c.completion_tokens = s->n;
    if (error) { /* OpenAI sends an error event in the stream once it has started */
        char *body = cp_serve_error_body(error, "server_error", NULL, NULL);
        cp_sb_printf(&s->pending, "data: %s\n", body ? body : "{}");
        cp_free(body);
        cp_serve_sse_done(&s->pending);
        s->ended = 1;
        free(text);
        return;
    }
    if (show > s->sent || s->first) {
        s->c.finish = NULL;
        cp_serve_sse_chunk(&s->pending, &s->c, text + s->sent, show > s->sent ? show - s->sent : 0, s->first);
        s->first = 0;
        if (show > s->sent) s->sent = show;
    }
    if (done || cut) {
        s->c.finish = cut ? "stop" : finish_name(finish);
        cp_serve_sse_chunk(&s->pending, &s->c, "", 0, 0);
        if (s->include_usage) cp_serve_sse_usage(&s->pending, &s->c);
        cp_serve_sse_done(&s->pending);
        s->ended = 1;
    }
    free(text);
}

size_t cp_serve_stream_read(cp_serve_stream *s, char *buf, size_t cap) {
    while (s->off >= s->pending.len) {
        s->pending.len = s->off = 0;
        if (s->ended) return 0;
        stream_advance(s);
        if (s->pending.failed) return 0;
    }
    size_t k = s->pending.len - s->off < cap ? s->pending.len - s->off : cap;
    memcpy(buf, s->pending.data + s->off, k);
    s->off += k;
    return k;
}

int64_t cp_serve_stream_tokens(const cp_serve_stream *s) { return s->n; }

void cp_serve_stream_close(cp_serve_stream *s) {
    if (!s) return;
    cp_serve_job_release(s->job);
    cp_free(s->model);
    for (int i = 0; i < s->n_stop; i++) cp_free(s->stop[i]);
    cp_free(s->tokens);
    cp_sb_free(&s->pending);
    cp_free(s);
}

/* ---- completions --------------------------------------------------------------------------------- */

/* The prompt's token ids (cp_malloc'd) as `cpeft generate` makes them; 0 on success, else a reply. */
static int prompt_ids(const cp_serve_api *api, const cp_serve_params *p, int32_t **ids, int64_t *n, cp_serve_reply *out) {
    *ids = NULL;
    *n = 0;
    if (p->kind == CP_SERVE_COMPLETION && p->prompt_ids) {
        for (int64_t i = 0; i < p->n_prompt_ids; i++)
            if (p->prompt_ids[i] >= api->vocab_size) {
                char msg[160];
                snprintf(msg, sizeof msg, "token id %d is outside the model's vocabulary [0, %lld)", p->prompt_ids[i],
                         (long long)api->vocab_size);
                bad_request(out, msg, "prompt", NULL);
                return 1;
            }
        if (!(*ids = cp_malloc((size_t)p->n_prompt_ids * sizeof **ids, "prompt ids"))) goto oom;
        memcpy(*ids, p->prompt_ids, (size_t)p->n_prompt_ids * sizeof **ids);
        *n = p->n_prompt_ids;
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    int add_special = 1;
    if (p->kind == CP_SERVE_CHAT) {
        if (!api->chat) {
            bad_request(out, "this model has no chat template (serve it with --chat-template FILE)", "messages", NULL);
            return 1;
        }
        if (cp_chat_template_render(api->chat, p->messages, 1, NULL, &text, &len, NULL, NULL) != CP_OK) {
            bad_request(out, cp_last_error(), "messages", NULL);
            return 1;
        }
        add_special = 0;
    }
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    const char *src = text ? text : p->prompt;
    cp_status st = cp_tokenizer_encode(api->tok, src, text ? len : strlen(src), add_special, &enc);
    cp_free(text);
    if (st != CP_OK) {
        bad_request(out, cp_last_error(), p->kind == CP_SERVE_CHAT ? "messages" : "prompt", NULL);
        return 1;
    }
    size_t k = enc.n;
    const int32_t eos = cp_tokenizer_special_id(api->tok, CP_SPECIAL_EOS);
    if (add_special && k > 0 && enc.ids[k - 1] == eos && enc.special_mask && enc.special_mask[k - 1]) k--;
    if (k == 0) {
        cp_encoding_free(&enc);
        bad_request(out, "the prompt gives no tokens", p->kind == CP_SERVE_CHAT ? "messages" : "prompt", NULL);
        return 1;
    }
    *ids = cp_malloc(k * sizeof **ids, "prompt ids");
    if (*ids) memcpy(*ids, enc.ids, k * sizeof **ids);
    *n = (int64_t)k;
    cp_encoding_free(&enc);
    if (*ids) return 0;
oom:
    error_reply(out, 500, cp_last_error(), "server_error", NULL, NULL);
    return 1;
}

static void completion(const cp_serve_api *api, cp_serve_kind kind, const char *body, size_t len, cp_serve_reply *out) {
    cp_serve_params p;
    char param[64];
    if (cp_serve_parse_request(body, len, kind, &p, param, sizeof param) != CP_OK) {
        bad_request(out, cp_last_error(), param, NULL);
        return;
    }
    /* the model field picks the adapter */
    const char *adapter = p.model && strcmp(p.model, api->model_name) ? p.model : NULL;
    if (adapter) {
        char **names;
        int n_names = 0, found = 0;
        if (cp_serve_adapter_names(api->engine, &names, &n_names) == CP_OK) {
            for (int i = 0; i < n_names; i++) { found |= !strcmp(names[i], adapter); cp_free(names[i]); }
            cp_free(names);
        }
        if (!found) {
            char msg[512];
            snprintf(msg, sizeof msg, "The model `%.300s` does not exist.", adapter);
            error_reply(out, 404, msg, "invalid_request_error", "model", "model_not_found");
            cp_serve_params_free(&p);
            return;
        }
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    if (prompt_ids(api, &p, &ids, &n, out)) { cp_serve_params_free(&p); return; }
    out->prompt_tokens = n;
    char msg[256];
    int64_t max_new = p.max_tokens;
    if (n >= api->max_context) {
        snprintf(msg, sizeof msg, "This model's maximum context length is %lld tokens. However, your prompt has %lld tokens.",
                 (long long)api->max_context, (long long)n);
        bad_request(out, msg, kind == CP_SERVE_CHAT ? "messages" : "prompt", "context_length_exceeded");
    } else if (max_new >= 0 && n + max_new > api->max_context) {
        snprintf(msg, sizeof msg, "This model's maximum context length is %lld tokens. However, you requested %lld tokens "
                 "(%lld in the prompt, %lld for the completion).", (long long)api->max_context, (long long)(n + max_new),
                 (long long)n, (long long)max_new);
        bad_request(out, msg, "max_tokens", "context_length_exceeded");
    }
    if (out->body) { cp_free(ids); cp_serve_params_free(&p); return; }
    if (max_new < 0) max_new = api->default_max_tokens < api->max_context - n ? api->default_max_tokens : api->max_context - n;

    cp_serve_completion c = {.kind = kind, .model = p.model ? p.model : api->model_name, .created = (int64_t)time(NULL),
                             .prompt_tokens = n};
    char id[64];
    snprintf(id, sizeof id, "%s-%llx%06llx", kind == CP_SERVE_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)time(NULL),
             (unsigned long long)atomic_fetch_add(&next_id, 1));
    c.id = id;
    if (max_new == 0) { /* nothing to generate */
        c.finish = "length";
        out->status = 200;
        if (!p.stream) out->body = cp_serve_completion_body(&c, "", 0);
        else {
            cp_strbuf sb;
            cp_sb_init(&sb);
            cp_serve_sse_chunk(&sb, &c, "", 0, 0);
            cp_serve_sse_done(&sb);
            out->status = 200;
            out->body = cp_sb_finish(&sb);
        }
        cp_free(ids);
        cp_serve_params_free(&p);
        return;
    }
    const cp_serve_job_options o = {
        .adapter = adapter, .max_new_tokens = max_new, .do_sample = p.temperature > 0, .temperature = p.temperature,
        .top_p = p.top_p, .seed = p.has_seed ? p.seed : (uint64_t)atomic_fetch_add(&next_id, 1) * 0x9E3779B97F4A7C15ull,
        .stop = (const char *const *)p.stop, .n_stop = p.n_stop,
        .extra_eos = kind == CP_SERVE_CHAT ? cp_tokenizer_special_id(api->tok, CP_SPECIAL_EOS) : CP_TOKEN_NONE};
    cp_serve_job *job = NULL;
    const int rc = cp_serve_submit(api->engine, ids, n, &o, &job);
    cp_free(ids);
    if (rc == CP_SERVE_BUSY) error_reply(out, 429, "The server's queue is full; retry later.", "rate_limit_error", NULL, "queue_full");
    else if (rc == CP_SERVE_CLOSED) error_reply(out, 503, "The server is shutting down.", "server_error", NULL, "unavailable");
    else if (rc == CP_SERVE_NO_ADAPTER) error_reply(out, 404, "The model does not exist (it is being unloaded).", "invalid_request_error", "model", "model_not_found");
    else if (rc != CP_OK) error_reply(out, 500, cp_last_error(), "server_error", NULL, NULL);
    if (rc != CP_OK) { cp_serve_params_free(&p); return; }

    if (p.stream) {
        cp_serve_stream *s = cp_calloc(1, sizeof *s, "a stream");
        if (!s) { cp_serve_job_release(job); error_reply(out, 500, cp_last_error(), "server_error", NULL, NULL); cp_serve_params_free(&p); return; }
        s->api = api;
        s->job = job;
        s->c = c;
        memcpy(s->id, id, sizeof id);
        s->c.id = s->id;
        s->model = cp_strdup(c.model);
        s->c.model = s->model ? s->model : api->model_name;
        for (int i = 0; i < p.n_stop; i++) { s->stop[i] = p.stop[i]; p.stop[i] = NULL; }
        s->n_stop = p.n_stop;
        p.n_stop = 0;
        s->include_usage = p.include_usage;
        s->first = kind == CP_SERVE_CHAT;
        cp_sb_init(&s->pending);
        out->status = 200;
        out->stream = s;
        cp_serve_params_free(&p);
        return;
    }
    /* the whole answer */
    int32_t *tokens = NULL;
    int64_t n_tok = 0;
    int done = 0;
    cp_finish_reason finish = CP_FINISH_LENGTH;
    const char *error = NULL;
    cp_serve_job_wait(job, 0, -1, &tokens, &n_tok, &done, &finish, &error);
    while (!done) { /* only a job that ends without its last tokens seen can loop here */
        int32_t *more;
        int64_t m;
        cp_serve_job_wait(job, n_tok, -1, &more, &m, &done, &finish, &error);
        if (more) {
            int32_t *g = cp_realloc(tokens, (size_t)m * sizeof *g, "tokens");
            if (g) { memcpy(g + n_tok, more, (size_t)(m - n_tok) * sizeof *more); tokens = g; n_tok = m; }
            cp_free(more);
        }
    }
    char *text = NULL;
    size_t show = 0;
    int cut = 0;
    if (!error && visible(api, tokens, n_tok, p.stop, p.n_stop, 1, &text, &show, &cut) != CP_OK) error = cp_last_error();
    if (error) error_reply(out, 500, error, "server_error", NULL, NULL);
    else {
        c.finish = cut ? "stop" : finish_name(finish);
        c.completion_tokens = n_tok;
        out->completion_tokens = n_tok;
        out->status = 200;
        out->body = cp_serve_completion_body(&c, text, show);
    }
    free(text);
    cp_free(tokens);
    cp_serve_job_release(job);
    cp_serve_params_free(&p);
}

/* ---- adapters and models ------------------------------------------------------------------------- */

static void load_adapter(const cp_serve_api *api, const char *body, size_t len, cp_serve_reply *out) {
    cJSON *root = NULL;
    if (cp_json_parse(body, len, "request body", &root) != CP_OK) { bad_request(out, cp_last_error(), NULL, NULL); return; }
    const cJSON *name = cJSON_IsObject(root) ? cp_json_field(root, "name") : NULL;
    const cJSON *path = cJSON_IsObject(root) ? cp_json_field(root, "path") : NULL;
    if (!cJSON_IsString(name) || !name->valuestring[0] || strchr(name->valuestring, '/'))
        bad_request(out, "'name': expected a non-empty adapter name without '/'", "name", NULL);
    else if (!cJSON_IsString(path) || !path->valuestring[0])
        bad_request(out, "'path': expected the adapter directory", "path", NULL);
    else if (!strcmp(name->valuestring, api->model_name) || !strcmp(name->valuestring, "__base__"))
        bad_request(out, "'name': that is the base model's name", "name", NULL);
    else if (cp_serve_adapter_load(api->engine, path->valuestring, name->valuestring) != CP_OK)
        bad_request(out, cp_last_error(), "path", "adapter_load_failed");
    else {
        out->status = 200;
        out->body = cp_serve_model_body(name->valuestring, (int64_t)time(NULL));
        fprintf(stderr, "cpeft serve: adapter %s loaded from %s\n", name->valuestring, path->valuestring);
    }
    cJSON_Delete(root);
}

static void models(const cp_serve_api *api, const char *one, cp_serve_reply *out) {
    char **names = NULL;
    int n = 0;
    if (cp_serve_adapter_names(api->engine, &names, &n) != CP_OK) { error_reply(out, 500, cp_last_error(), "server_error", NULL, NULL); return; }
    const char **all = cp_calloc((size_t)n + 1, sizeof *all, "model names");
    if (all) {
        all[0] = api->model_name;
        for (int i = 0; i < n; i++) all[i + 1] = names[i];
        if (!one) {
            out->status = 200;
            out->body = cp_serve_models_body(all, n + 1, api->created);
        } else {
            for (int i = 0; i <= n && !out->body; i++)
                if (!strcmp(all[i], one)) { out->status = 200; out->body = cp_serve_model_body(one, api->created); }
            if (!out->body) error_reply(out, 404, "The model does not exist.", "invalid_request_error", "model", "model_not_found");
        }
    }
    cp_free(all);
    for (int i = 0; i < n; i++) cp_free(names[i]);
    cp_free(names);
}

void cp_serve_api_handle(const cp_serve_api *api, const char *method, const char *full_path, const char *body, size_t len,
                         cp_serve_reply *out) {
    memset(out, 0, sizeof *out);
    char path[512];
    snprintf(path, sizeof path, "%s", full_path);
    char *q = strchr(path, '?');
    if (q) *q = '\0';
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    const char *known = NULL;
    if (!strcmp(path, "/health")) {
        known = "GET";
        if (get) {
            int64_t queued, running, tokens, peak;
            cp_serve_engine_counts(api->engine, &queued, &running, &tokens, &peak);
            const int draining = cp_serve_engine_closed(api->engine);
            char buf[200];
            snprintf(buf, sizeof buf, "{\"status\":\"%s\",\"queued\":%lld,\"running\":%lld,\"tokens\":%lld,\"peak_batch\":%lld}\n",
                     draining ? "draining" : "ok", (long long)queued, (long long)running, (long long)tokens, (long long)peak);
            out->status = draining ? 503 : 200;
            out->body = cp_strdup(buf);
        }
    } else if (!strcmp(path, "/v1/models")) {
        known = "GET";
        if (get) models(api, NULL, out);
    } else if (!strncmp(path, "/v1/models/", 11)) {
        known = "GET";
        if (get) models(api, path + 11, out);
    } else if (!strcmp(path, "/v1/completions") || !strcmp(path, "/v1/chat/completions")) {
        known = "POST";
        if (post) completion(api, path[4] == 'c' && path[5] == 'h' ? CP_SERVE_CHAT : CP_SERVE_COMPLETION, body, len, out);
    } else if (!strcmp(path, "/v1/adapters")) {
        known = "POST";
        if (post) load_adapter(api, body, len, out);
    } else if (!strncmp(path, "/v1/adapters/", 13) && path[13]) {
        known = "DELETE";
        if (del) {
            if (cp_serve_adapter_unload(api->engine, path + 13) != CP_OK)
                error_reply(out, 404, cp_last_error(), "invalid_request_error", "model", "model_not_found");
            else {
                cp_strbuf sb;
                cp_sb_init(&sb);
                cp_sb_append(&sb, "{\"id\":");
                cp_json_write_cstring(&sb, path + 13, 0);
                cp_sb_append(&sb, ",\"object\":\"model\",\"deleted\":true}\n");
                out->status = 200;
                out->body = cp_sb_finish(&sb);
                fprintf(stderr, "cpeft serve: adapter %s unloading (after its running requests)\n", path + 13);
            }
        }
    }
    if (out->body || out->stream) return;
    char msg[700];
    if (known) {
        snprintf(msg, sizeof msg, "%s %s: method not allowed (use %s)", method, path, known);
        error_reply(out, 405, msg, "invalid_request_error", NULL, "method_not_allowed");
    } else {
        snprintf(msg, sizeof msg, "Unknown request URL: %s %s.", method, path);
        error_reply(out, 404, msg, "invalid_request_error", NULL, "unknown_url");
    }
    if (!out->body) out->status = 500;
}
