/*
 * chat_prompts.c — conversations for `cpeft generate --chat`; see chat_prompts.h.
 */
#include "cli/chat_prompts.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"

#include <stdio.h>
#include <string.h>

int cli_chat_take_args(int *argc, char **argv, cli_chat *c) {
    memset(c, 0, sizeof c[0]);
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *role = NULL;
        if (!strcmp(a, "--chat")) { c->chat = 1; continue; }
        if (!strcmp(a, "--system")) role = "system";
        else if (!strcmp(a, "--user")) role = "user";
        else if (!strcmp(a, "--assistant")) role = "assistant";
        const int takes = role || !strcmp(a, "--messages") || !strcmp(a, "--chat-template");
        if (!takes) { argv[w++] = argv[i]; continue; }
        if (i + 1 >= *argc) {
            fprintf(stderr, "cpeft generate: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        c->chat = 1;
        if (!strcmp(a, "--messages")) { c->messages_file = v; continue; }
        if (!strcmp(a, "--chat-template")) { c->template_file = v; continue; }
        if (!c->turns && !(c->turns = cJSON_CreateArray())) return 2;
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddStringToObject(m, "role", role) || !cJSON_AddStringToObject(m, "content", v) ||
            !cJSON_AddItemToArray(c->turns, m)) {
            cJSON_Delete(m);
            return 2;
        }
    }
    *argc = w;
    return 0;
}

/* A conversation as given: a list of messages, or {"messages": [...]}; each message an object with a
 * string role and content. Returns a copy (added to convs) or an error naming where. */
static cp_status add_conversation(cJSON *convs, const cJSON *v, const char *where) {
    const cJSON *list = cJSON_IsObject(v) ? cp_json_field(v, "messages") : v;
    if (!cJSON_IsArray(list))
        return cp_error("%s: expected a list of {\"role\", \"content\"} messages (or an object with \"messages\"), found %s",
                        where, list ? cp_json_type_name(list) : "an object without \"messages\"");
    if (!list->child) return cp_error("%s: an empty conversation", where);
    int i = 0;
    for (const cJSON *m = list->child; m; m = m->next) {
        i++;
        const cJSON *role = cJSON_IsObject(m) ? cp_json_field(m, "role") : NULL, *content = cJSON_IsObject(m) ? cp_json_field(m, "content") : NULL;
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            return cp_error("%s: message %d needs string \"role\" and \"content\"", where, i);
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool"))
            return cp_error("%s: message %d: unknown role \"%.64s\" (expected system, user, assistant or tool)", where, i, r);
    }
    cJSON *copy = cJSON_Duplicate(list, 1);
    if (!copy || !cJSON_AddItemToArray(convs, copy)) { cJSON_Delete(copy); return cp_error("out of memory"); }
    return CP_OK;
}

static cp_status read_messages_file(cJSON *convs, const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(path, &text, &len) != CP_OK) return CP_ERR;
    cp_status st = CP_OK;
    size_t p = 0;
    while (p < len && (text[p] == ' ' || text[p] == '\n' || text[p] == '\r' || text[p] == '\t')) p++;
    if (p < len && text[p] == '[') { /* one conversation: the whole file */
        cJSON *j = NULL;
        st = cp_json_parse(text, len, path, &j);
        if (st == CP_OK) st = add_conversation(convs, j, path);
        cJSON_Delete(j);
    } else { /* JSONL: one conversation per line; or one object over several lines */
        int64_t line = 0, records = 0;
        for (char *q = text, *e; st == CP_OK && q < text + len; q = e + 1) {
            line++;
            e = memchr(q, '\n', (size_t)(text + len - q));
            if (!e) e = text + len;
            size_t k = 0;
            while (q + k < e && (q[k] == ' ' || q[k] == '\t' || q[k] == '\r')) k++;
            if (q + k == e) continue;
            char where[4200];
            snprintf(where, sizeof where, "%s:%lld", path, (long long)line);
            cJSON *x = NULL;
            st = cp_json_parse(q, (size_t)(e - q), where, &x);
            if (st != CP_OK && records == 0) { /* not JSONL: the file as one JSON value */
                cJSON_Delete(x);
                x = NULL;
                cp_clear_error();
                st = cp_json_parse(text, len, path, &x);
                if (st == CP_OK) st = add_conversation(convs, x, path);
                cJSON_Delete(x);
                break;
            }
            if (st == CP_OK) st = add_conversation(convs, x, where);
            records++;
            cJSON_Delete(x);
        }
    }
    cp_free(text);
    return st;
}

cp_status cli_chat_conversations(const cli_chat *c, const char *const *texts, int n_texts, cJSON **convs) {
    *convs = cJSON_CreateArray();
    if (!*convs) return cp_error("out of memory");
    cp_status st = c->turns ? add_conversation(*convs, c->turns, "--system / --user / --assistant") : CP_OK;
    if (st == CP_OK && c->messages_file) st = read_messages_file(*convs, c->messages_file);
    for (int i = 0; st == CP_OK && i < n_texts; i++) {
        cJSON *conv = cJSON_CreateArray(), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", texts[i]);
        cJSON_AddItemToArray(conv, m);
        cJSON_AddItemToArray(*convs, conv);
    }
    if (st == CP_OK && !cJSON_GetArraySize(*convs)) st = cp_error("--chat: no conversation (give --user TEXT, --messages FILE or --prompt TEXT)");
    if (st != CP_OK) { cJSON_Delete(*convs); *convs = NULL; }
    return st;
}

cp_status cli_chat_template(const cli_chat *c, const char *model_dir, const cp_tokenizer *tok, cp_chat_template **out) {
    if (!c->template_file) return cp_chat_template_load_dir(out, model_dir, NULL);
    if (cp_chat_template_load_file(out, c->template_file) != CP_OK) return cp_error_context("--chat-template");
    size_t n = strlen(c->template_file);
    if (n >= 5 && !strcmp(c->template_file + n - 5, ".json")) return CP_OK;
    return cp_chat_template_set_tokens(*out, cp_tokenizer_id_to_token(tok, cp_tokenizer_special_id(tok, CP_SPECIAL_BOS)),
                                       cp_tokenizer_id_to_token(tok, cp_tokenizer_special_id(tok, CP_SPECIAL_EOS)));
}

cp_status cli_chat_render(const cp_chat_template *t, const cJSON *msgs, const cp_tokenizer *tok, char **text,
                          int32_t **ids, int64_t *n) {
    size_t len = 0;
    *ids = NULL;
    *n = 0;
    if (cp_chat_template_render(t, msgs, 1, NULL, text, &len, NULL, NULL) != CP_OK) return CP_ERR;
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    cp_status st = cp_tokenizer_encode(tok, *text, len, 0, &enc);
    if (st == CP_OK && enc.n == 0) st = cp_error("the rendered conversation gives no tokens");
    if (st == CP_OK && !(*ids = cp_malloc(enc.n * sizeof **ids, "token ids"))) st = CP_ERR;
    if (st == CP_OK) {
        memcpy(*ids, enc.ids, enc.n * sizeof **ids);
        *n = (int64_t)enc.n;
    }
    cp_encoding_free(&enc);
    return st;
}

void cli_chat_free(cli_chat *c) {
    cJSON_Delete(c->turns);
    c->turns = NULL;
}
