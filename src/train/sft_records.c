/*
 * sft_records.c — TRL's prompt-completion and conversational records as ids and a loss mask; see
 * sft_records.h.
 *
 * The assistant mask follows transformers' apply_chat_template(return_assistant_tokens_mask=True): for
 * each {% generation %} span [s, e) of the rendering, the tokens from the one holding s through the one
 * holding the last character of the span (char_to_token), or to the end when that is token 0 or none;
 * a span whose start no token holds ends the marking. Offsets here are bytes, so "the character" is
 * its first byte.
 */
#include "train/sft_records.h"
#include "core/alloc.h"
#include "io/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 3, 4)))
static int malformed(char *msg, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return 0;
}

cp_data_format cp_sft_detect(const cJSON *rec) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
    if (p && cJSON_GetObjectItemCaseSensitive(rec, "completion"))
        return cJSON_IsArray(p) ? CP_DATA_CONV_PROMPT_COMPLETION : CP_DATA_PROMPT_COMPLETION;
    if (cJSON_GetObjectItemCaseSensitive(rec, "messages") || cJSON_GetObjectItemCaseSensitive(rec, "conversations"))
        return CP_DATA_MESSAGES;
    return CP_DATA_AUTO;
}

static cp_status reserve(cp_sft_builder *b, size_t n) {
    if (n <= b->cap) return CP_OK;
    size_t cap = b->cap;
    if (cp_grow(&b->ids, &cap, n, sizeof *b->ids, 256, "token ids")) return CP_ERR;
    if (cp_resize(&b->loss, cap, sizeof *b->loss, "the loss mask")) return CP_ERR;
    b->cap = cap;
    return CP_OK;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* ---- plain prompt-completion ---------------------------------------------------------------------- */

static int string_field(const cJSON *rec, const char *key, const char **out, char *msg, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
    if (!v || cJSON_IsNull(v)) return malformed(msg, cap, "missing field \"%s\"", key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return malformed(msg, cap, "field \"%s\" is %s, expected a string", key, cp_json_type_name(v));
    *out = v->valuestring;
    return 1;
}

static int build_prompt_completion(cp_sft_builder *b, const cJSON *rec, char *msg, size_t cap) {
    const char *prompt = NULL, *completion = NULL;
    if (!string_field(rec, "prompt", &prompt, msg, cap) || !string_field(rec, "completion", &completion, msg, cap)) return 0;
    const char *eos = cp_tokenizer_id_to_token(b->tok, cp_tokenizer_special_id(b->tok, CP_SPECIAL_EOS));
    if (!eos) { cp_error("the tokenizer has no eos token (prompt-completion records end with it)"); return -1; }
    size_t np = strlen(prompt), nc = strlen(completion), ne = strlen(eos);
    int add_eos = !(nc >= ne && !memcmp(completion + nc - ne, eos, ne));
    if (cp_grow(&b->buf, &b->buf_cap, np + nc + ne + 1, 1, 256, "the record")) return -1;
    memcpy(b->buf, prompt, np);
    memcpy(b->buf + np, completion, nc);
    if (add_eos) memcpy(b->buf + np + nc, eos, ne);
    size_t len = np + nc + (add_eos ? ne : 0);
    b->buf[len] = '\0';
    if (cp_tokenizer_encode(b->tok, prompt, np, 1, &b->enc) != CP_OK ||
        cp_tokenizer_encode(b->tok, b->buf, len, 1, &b->enc2) != CP_OK)
        return malformed(msg, cap, "cannot tokenize the record: %s", cp_last_error());
    if (reserve(b, b->enc2.n + 1)) return -1;
    size_t k = common_prefix(b->enc.ids, b->enc.n, b->enc2.ids, b->enc2.n);
    for (size_t t = 0; t < b->enc2.n; t++) {
        b->ids[t] = b->enc2.ids[t];
        b->loss[t] = !b->completion_only_loss || t >= k;
    }
    b->n = b->enc2.n;
    return 1;
}

/* ---- conversations ------------------------------------------------------------------------------- */

/* A checked copy of a message list (key `key` of the record): null values dropped, ShareGPT's from /
 * value renamed. NULL with msg set when malformed (*hard 1 on out of memory). */
static cJSON *checked_messages(const cJSON *list, const char *key, char *msg, size_t cap, int *hard) {
    *hard = 0;
    if (!list || cJSON_IsNull(list)) { malformed(msg, cap, "missing field \"%s\"", key); return NULL; }
    if (!cJSON_IsArray(list)) {
        malformed(msg, cap, "field \"%s\" is %s, expected a list of {\"role\", \"content\"} messages", key,
                  cp_json_type_name(list));
        return NULL;
    }
    if (!list->child) { malformed(msg, cap, "field \"%s\" is an empty conversation", key); return NULL; }
    cJSON *out = cJSON_CreateArray();
    if (!out) { *hard = 1; cp_error("out of memory"); return NULL; }
    int i = 0;
    for (const cJSON *m = list->child; m; m = m->next) {
        i++;
        if (!cJSON_IsObject(m)) {
            malformed(msg, cap, "\"%s\" message %d is %s, expected an object {\"role\", \"content\"}", key, i, cp_json_type_name(m));
            goto bad;
        }
        cJSON *c = cJSON_CreateObject();
        if (!c || !cJSON_AddItemToArray(out, c)) { cJSON_Delete(c); *hard = 1; cp_error("out of memory"); goto bad; }
        for (const cJSON *f = m->child; f; f = f->next) {
            if (cJSON_IsNull(f)) continue;
            const char *name = !strcmp(f->string, "from") ? "role" : !strcmp(f->string, "value") ? "content" : f->string;
            cJSON *d = cJSON_Duplicate(f, 1);
            if (!d) { *hard = 1; cp_error("out of memory"); goto bad; }
            cJSON_DeleteItemFromObjectCaseSensitive(c, name);
            cJSON_AddItemToObject(c, name, d);
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(c, "role"), *content = cJSON_GetObjectItemCaseSensitive(c, "content");
        if (!role) { malformed(msg, cap, "\"%s\" message %d has no \"role\"", key, i); goto bad; }
        if (!cJSON_IsString(role)) {
            malformed(msg, cap, "\"%s\" message %d: \"role\" is %s, expected a string", key, i, cp_json_type_name(role));
            goto bad;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool")) {
            malformed(msg, cap, "\"%s\" message %d: unknown role \"%.64s\" (expected system, user, assistant or tool)", key, i, r);
            goto bad;
        }
        if (!content && !cJSON_GetObjectItemCaseSensitive(c, "tool_calls")) {
            malformed(msg, cap, "\"%s\" message %d (%s) has no \"content\"", key, i, r);
            goto bad;
        }
        if (content && !cJSON_IsString(content)) {
            malformed(msg, cap, "\"%s\" message %d (%s): \"content\" is %s, expected a string", key, i, r,
                      cp_json_type_name(content));
            goto bad;
        }
    }
    return out;
bad:
    cJSON_Delete(out);
    return NULL;
}

/* The template's variables from the record: tools and chat_template_kwargs. */
static int record_extra(const cJSON *rec, cJSON **extra, char *msg, size_t cap) {
    *extra = NULL;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(rec, "tools");
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(rec, "chat_template_kwargs");
    if ((!tools || cJSON_IsNull(tools)) && (!kw || cJSON_IsNull(kw))) return 1;
    if (kw && !cJSON_IsNull(kw) && !cJSON_IsObject(kw))
        return malformed(msg, cap, "field \"chat_template_kwargs\" is %s, expected an object", cp_json_type_name(kw));
    *extra = kw && cJSON_IsObject(kw) ? cJSON_Duplicate(kw, 1) : cJSON_CreateObject();
    if (!*extra) { cp_error("out of memory"); return -1; }
    if (tools && !cJSON_IsNull(tools)) {
        cJSON *t = cJSON_IsString(tools) ? cJSON_Parse(tools->valuestring) : cJSON_Duplicate(tools, 1);
        if (!t || !cJSON_IsArray(t)) {
            cJSON_Delete(t);
            cJSON_Delete(*extra);
            *extra = NULL;
            return malformed(msg, cap, "field \"tools\" is not a list of tools (or a JSON string of one)");
        }
        cJSON_AddItemToObject(*extra, "tools", t);
    }
    return 1;
}

static int check_template(cp_sft_builder *b) {
    if (!b->tmpl) {
        if (b->tmpl_error) cp_error("conversational records need a chat template: %s", b->tmpl_error);
        else cp_error("conversational records need the model's chat template, and it has none (give one with --chat-template FILE)");
        return -1;
    }
    if (b->assistant_only_loss && !b->checked && !cp_chat_template_has_generation(b->tmpl)) {
        cp_error("--assistant-only-loss needs a chat template that marks the assistant replies with "
                 "{%% generation %%} ... {%% endgeneration %%}, and this one has none. TRL swaps in a training template "
                 "only for the model templates it recognises and raises for the others; cpeft refuses the same way. "
                 "Give a template with the markers (--chat-template FILE; README \"Conversational data\"), or train on "
                 "whole conversations without --assistant-only-loss");
        return -1;
    }
    b->checked = 1;
    return 1;
}

/* Renders msgs and tokenizes the text without special tokens into enc; the assistant mask (when
 * want_mask) into b->loss[0..enc.n). */
static int render_tokens(cp_sft_builder *b, const cJSON *msgs, int add_generation_prompt, const cJSON *extra,
                         cp_encoding *enc, int want_mask, char *msg, size_t cap) {
    char *text = NULL;
    size_t len = 0, n_spans = 0;
    cp_chat_span *spans = NULL;
    if (cp_chat_template_render(b->tmpl, msgs, add_generation_prompt, extra, &text, &len, want_mask ? &spans : NULL,
                                want_mask ? &n_spans : NULL) != CP_OK)
        return malformed(msg, cap, "the chat template: %s", cp_last_error());
    int r = 1;
    if (cp_tokenizer_encode(b->tok, text, len, 0, enc) != CP_OK) r = malformed(msg, cap, "cannot tokenize the rendered conversation: %s", cp_last_error());
    else if (want_mask && reserve(b, enc->n + 1)) r = -1;
    if (r == 1 && want_mask) {
        memset(b->loss, 0, enc->n);
        for (size_t s = 0; s < n_spans; s++) {
            size_t last = spans[s].end > spans[s].start ? spans[s].end - 1 : spans[s].start;
            while (last > spans[s].start && ((unsigned char)text[last] & 0xC0) == 0x80) last--; /* its character's first byte */
            long first_tok = -1, last_tok = -1;
            for (size_t t = 0; t < enc->n; t++) {
                if (first_tok < 0 && enc->offsets[2 * t] <= spans[s].start && spans[s].start < enc->offsets[2 * t + 1]) first_tok = (long)t;
                if (last_tok < 0 && enc->offsets[2 * t] <= last && last < enc->offsets[2 * t + 1]) last_tok = (long)t;
            }
            if (first_tok < 0) break;
            size_t to = last_tok > 0 ? (size_t)last_tok + 1 : enc->n;
            for (size_t t = (size_t)first_tok; t < to; t++) b->loss[t] = 1;
        }
    }
    cp_free(text);
    cp_free(spans);
    return r;
}

static int build_conversation(cp_sft_builder *b, cp_data_format kind, const cJSON *rec, char *msg, size_t cap) {
    int r = check_template(b);
    if (r <= 0) return r;
    cJSON *extra = NULL, *prompt = NULL, *all = NULL;
    int hard = 0;
    if ((r = record_extra(rec, &extra, msg, cap)) <= 0) return r;
    if (kind == CP_DATA_MESSAGES) {
        const char *key = cJSON_GetObjectItemCaseSensitive(rec, "conversations") ? "conversations" : "messages";
        all = checked_messages(cJSON_GetObjectItemCaseSensitive(rec, key), key, msg, cap, &hard);
    } else {
        prompt = checked_messages(cJSON_GetObjectItemCaseSensitive(rec, "prompt"), "prompt", msg, cap, &hard);
        cJSON *completion = prompt ? checked_messages(cJSON_GetObjectItemCaseSensitive(rec, "completion"), "completion", msg,
                                                      cap, &hard) : NULL;
        if (completion) {
            all = cJSON_Duplicate(prompt, 1);
            while (all && completion->child) cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(completion, completion->child));
            if (!all) { hard = 1; cp_error("out of memory"); }
        }
        cJSON_Delete(completion);
    }
    r = hard ? -1 : all ? 1 : 0;
    if (r == 1) r = render_tokens(b, all, 0, extra, &b->enc2, b->assistant_only_loss, msg, cap);
    if (r == 1 && prompt) r = render_tokens(b, prompt, 1, extra, &b->enc, 0, msg, cap);
    if (r == 1 && reserve(b, b->enc2.n + 1)) r = -1;
    if (r == 1) {
        size_t k = prompt && b->completion_only_loss ? common_prefix(b->enc.ids, b->enc.n, b->enc2.ids, b->enc2.n) : 0;
        size_t n_loss = 0;
        for (size_t t = 0; t < b->enc2.n; t++) {
            b->ids[t] = b->enc2.ids[t];
            b->loss[t] = (uint8_t)((!b->assistant_only_loss || b->loss[t]) && t >= k);
            n_loss += b->loss[t];
        }
        b->n = b->enc2.n;
        if (b->assistant_only_loss && n_loss == 0 && !prompt)
            r = malformed(msg, cap, "no assistant tokens: the conversation has no assistant reply inside the template's "
                                    "{%% generation %%} blocks");
    }
    cJSON_Delete(extra);
    cJSON_Delete(prompt);
    cJSON_Delete(all);
    return r;
}

int cp_sft_build(cp_sft_builder *b, cp_data_format kind, const cJSON *rec, char *msg, size_t msg_cap) {
    b->n = 0;
    if (kind == CP_DATA_PROMPT_COMPLETION) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
        if (cJSON_IsArray(p))
            return malformed(msg, msg_cap, "field \"prompt\" is a list of messages, but the file's first record made it "
                                           "plain prompt-completion (a string)");
        return build_prompt_completion(b, rec, msg, msg_cap);
    }
    if (kind == CP_DATA_CONV_PROMPT_COMPLETION) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rec, "prompt");
        if (cJSON_IsString(p))
            return malformed(msg, msg_cap, "field \"prompt\" is a string, but the file's first record made it "
                                           "conversational prompt-completion (a list of messages)");
    }
    return build_conversation(b, kind, rec, msg, msg_cap);
}

void cp_sft_builder_free(cp_sft_builder *b) {
    cp_free(b->ids);
    cp_free(b->loss);
    cp_free(b->buf);
    cp_encoding_free(&b->enc);
    cp_encoding_free(&b->enc2);
    b->ids = NULL;
    b->loss = NULL;
    b->buf = NULL;
    b->cap = b->buf_cap = b->n = 0;
}
