/*
 * response.c — OpenAI's response shapes as text; see response.h. Written with cp_json_write_string
 * (bytes with a length, so generated text with any byte survives) rather than cJSON.
 */
#include "serve/response.h"
#include "core/json_write.h"

#include <string.h>

static void str_or_null(cp_strbuf *sb, const char *s) {
    if (s) cp_json_write_cstring(sb, s, 0);
    else cp_sb_append(sb, "null");
}

char *cp_serve_error_body(const char *message, const char *type, const char *param, const char *code) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "{\"error\":{\"message\":");
    cp_json_write_cstring(&sb, message ? message : "", 0);
    cp_sb_append(&sb, ",\"type\":");
    str_or_null(&sb, type);
    cp_sb_append(&sb, ",\"param\":");
    str_or_null(&sb, param && param[0] ? param : NULL);
    cp_sb_append(&sb, ",\"code\":");
    str_or_null(&sb, code);
    cp_sb_append(&sb, "}}\n");
    return cp_sb_finish(&sb);
}

static void head(cp_strbuf *sb, const cp_serve_completion *c, const char *object) {
    cp_sb_append(sb, "{\"id\":");
    cp_json_write_cstring(sb, c->id, 0);
    cp_sb_printf(sb, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, (long long)c->created);
    cp_json_write_cstring(sb, c->model, 0);
}

static void usage(cp_strbuf *sb, const cp_serve_completion *c) {
    cp_sb_printf(sb, "\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld}",
                 (long long)c->prompt_tokens, (long long)c->completion_tokens, (long long)(c->prompt_tokens + c->completion_tokens));
}

char *cp_serve_completion_body(const cp_serve_completion *c, const char *text, size_t len) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    const int chat = c->kind == CP_SERVE_CHAT;
    head(&sb, c, chat ? "chat.completion" : "text_completion");
    cp_sb_append(&sb, ",\"choices\":[{\"index\":0,");
    if (chat) {
        cp_sb_append(&sb, "\"message\":{\"role\":\"assistant\",\"content\":");
        cp_json_write_string(&sb, text, len, 0);
        cp_sb_append(&sb, "},");
    } else {
        cp_sb_append(&sb, "\"text\":");
        cp_json_write_string(&sb, text, len, 0);
        cp_sb_append(&sb, ",");
    }
    cp_sb_append(&sb, "\"logprobs\":null,\"finish_reason\":");
    str_or_null(&sb, c->finish);
    cp_sb_append(&sb, "}],");
    usage(&sb, c);
    cp_sb_append(&sb, "}\n");
    return cp_sb_finish(&sb);
}

void cp_serve_sse_chunk(cp_strbuf *sb, const cp_serve_completion *c, const char *text, size_t len, int first) {
    const int chat = c->kind == CP_SERVE_CHAT;
    cp_sb_append(sb, "data: ");
    head(sb, c, chat ? "chat.completion.chunk" : "text_completion");
    cp_sb_append(sb, ",\"choices\":[{\"index\":0,");
    if (chat) {
        cp_sb_append(sb, "\"delta\":{");
        if (first) cp_sb_append(sb, "\"role\":\"assistant\"");
        if (len || first) {
            cp_sb_append(sb, first ? ",\"content\":" : "\"content\":");
            cp_json_write_string(sb, text, len, 0);
        }
        cp_sb_append(sb, "},");
    } else {
        cp_sb_append(sb, "\"text\":");
        cp_json_write_string(sb, text, len, 0);
        cp_sb_append(sb, ",");
    }
    cp_sb_append(sb, "\"logprobs\":null,\"finish_reason\":");
    str_or_null(sb, c->finish);
    cp_sb_append(sb, "}]}\n\n");
}

void cp_serve_sse_usage(cp_strbuf *sb, const cp_serve_completion *c) {
    cp_sb_append(sb, "data: ");
    head(sb, c, c->kind == CP_SERVE_CHAT ? "chat.completion.chunk" : "text_completion");
    cp_sb_append(sb, ",\"choices\":[],");
    usage(sb, c);
    cp_sb_append(sb, "}\n\n");
}

void cp_serve_sse_done(cp_strbuf *sb) { cp_sb_append(sb, "data: [DONE]\n\n"); }

static void model_object(cp_strbuf *sb, const char *name, int64_t created) {
    cp_sb_append(sb, "{\"id\":");
    cp_json_write_cstring(sb, name, 0);
    cp_sb_printf(sb, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"cpeft\"}", (long long)created);
}

char *cp_serve_model_body(const char *name, int64_t created) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    model_object(&sb, name, created);
    cp_sb_append(&sb, "\n");
    return cp_sb_finish(&sb);
}

char *cp_serve_models_body(const char *const *names, int n, int64_t created) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        if (i) cp_sb_append(&sb, ",");
        model_object(&sb, names[i], created);
    }
    cp_sb_append(&sb, "]}\n");
    return cp_sb_finish(&sb);
}
