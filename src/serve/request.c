/*
 * request.c — OpenAI request bodies into cp_serve_params; see request.h. Every refusal names its
 * field, so that the error body's "param" is OpenAI's.
 */
#include "serve/request.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "io/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A refusal of field `name`: the message, and the name in param. */
static cp_status bad(char *param, size_t cap, const char *name, const char *fmt, const char *detail) {
    snprintf(param, cap, "%s", name);
    return cp_error(fmt, name, detail);
}

static const char *kind_of(const cJSON *v, char *buf, size_t n) { return cp_json_describe(v, buf, n); }

/* A number field in [lo, hi] (lo_open: lo excluded); absent or null leaves *out. */
static cp_status number_field(const cJSON *root, const char *name, double lo, double hi, int lo_open, double *out,
                              char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, name);
    char what[160], range[96];
    if (!v || cJSON_IsNull(v)) return CP_OK;
    snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    if (!cJSON_IsNumber(v)) return bad(param, cap, name, "'%s': expected a number, found %s", kind_of(v, what, sizeof what));
    const double x = v->valuedouble;
    if (!isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
        snprintf(what, sizeof what, "%g is not in %s", x, range);
        return bad(param, cap, name, "'%s': %s", what);
    }
    *out = x;
    return CP_OK;
}

/* An integer field in [lo, hi]; absent or null leaves *out. */
static cp_status int_field(const cJSON *root, const char *name, int64_t lo, int64_t hi, int64_t *out, char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, name);
    char what[64];
    if (!v || cJSON_IsNull(v)) return CP_OK;
    if (!cp_json_int_in(v, lo, hi, out)) {
        char buf[160];
        snprintf(buf, sizeof buf, "expected an integer in [%lld, %lld], found %s", (long long)lo, (long long)hi,
                 kind_of(v, what, sizeof what));
        return bad(param, cap, name, "'%s': %s", buf);
    }
    return CP_OK;
}

static cp_status bool_field(const cJSON *root, const char *name, int *out, char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, name);
    char what[64];
    if (!v || cJSON_IsNull(v)) return CP_OK;
    if (!cJSON_IsBool(v)) return bad(param, cap, name, "'%s': expected true or false, found %s", kind_of(v, what, sizeof what));
    *out = cJSON_IsTrue(v);
    return CP_OK;
}

/* Fields that would change what is generated, which cpeft does not do: refused rather than ignored. */
static cp_status refuse_unsupported(const cJSON *root, char *param, size_t cap) {
    int64_t n = 1;
    if (int_field(root, "n", 1, 1, &n, param, cap) != CP_OK)
        return bad(param, cap, "n", "'%s': only n = 1 is supported%s", "");
    if (int_field(root, "best_of", 1, 1, &n, param, cap) != CP_OK)
        return bad(param, cap, "best_of", "'%s': only best_of = 1 is supported%s", "");
    static const char *const off[] = {"echo", "logprobs", "top_logprobs", "suffix", "tools", "functions", "logit_bias"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        const cJSON *v = cp_json_field(root, off[i]);
        if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v) && !(cJSON_IsArray(v) && !v->child) && !(cJSON_IsObject(v) && !v->child))
            return bad(param, cap, off[i], "'%s' is not supported by cpeft serve%s", "");
    }
    const cJSON *rf = cp_json_field(root, "response_format");
    if (rf && !cJSON_IsNull(rf)) {
        const cJSON *t = cJSON_IsObject(rf) ? cp_json_field(rf, "type") : NULL;
        if (!cJSON_IsString(t) || strcmp(t->valuestring, "text"))
            return bad(param, cap, "response_format", "'%s': only {\"type\": \"text\"} is supported%s", "");
    }
    const char *pen[2] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        double x = 0;
        if (number_field(root, pen[i], -2, 2, 0, &x, param, cap) != CP_OK) return CP_ERR;
        if (x != 0) return bad(param, cap, pen[i], "'%s': only 0 is supported%s", "");
    }
    return CP_OK;
}

static cp_status parse_stop(const cJSON *root, cp_serve_params *p, char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, "stop");
    char what[64];
    if (!v || cJSON_IsNull(v)) return CP_OK;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return bad(param, cap, "stop", "'%s': an empty stop string%s", "");
        if (!(p->stop[p->n_stop++] = cp_strdup(v->valuestring))) return CP_ERR;
        return CP_OK;
    }
    if (!cJSON_IsArray(v)) return bad(param, cap, "stop", "'%s': expected a string or a list of strings, found %s", kind_of(v, what, sizeof what));
    for (const cJSON *s = v->child; s; s = s->next) {
        if (!cJSON_IsString(s) || !s->valuestring[0])
            return bad(param, cap, "stop", "'%s': expected non-empty strings, found %s", kind_of(s, what, sizeof what));
        if (p->n_stop == CP_SERVE_MAX_STOP) return bad(param, cap, "stop", "'%s': at most 4 stop sequences%s", "");
        if (!(p->stop[p->n_stop++] = cp_strdup(s->valuestring))) return CP_ERR;
    }
    return CP_OK;
}

/* prompt: "text", ["text"], or [id, ...]. */
static cp_status parse_prompt(const cJSON *root, cp_serve_params *p, char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, "prompt");
    char what[64];
    if (!v || cJSON_IsNull(v)) return bad(param, cap, "prompt", "'%s' is required%s", "");
    if (cJSON_IsArray(v) && v->child && !v->child->next && cJSON_IsString(v->child)) v = v->child;
    if (cJSON_IsString(v)) {
        if (!v->valuestring[0]) return bad(param, cap, "prompt", "'%s': an empty prompt%s", "");
        return (p->prompt = cp_strdup(v->valuestring)) ? CP_OK : CP_ERR;
    }
    if (!cJSON_IsArray(v) || !v->child)
        return bad(param, cap, "prompt", "'%s': expected a string or a list of token ids, found %s", kind_of(v, what, sizeof what));
    if (cJSON_IsString(v->child) || cJSON_IsArray(v->child))
        return bad(param, cap, "prompt", "'%s': one prompt per request (n = 1)%s", "");
    const int n = cJSON_GetArraySize(v);
    if (!(p->prompt_ids = cp_malloc((size_t)n * sizeof *p->prompt_ids, "prompt ids"))) return CP_ERR;
    for (const cJSON *t = v->child; t; t = t->next) {
        int64_t id;
        if (!cp_json_int_in(t, 0, INT32_MAX, &id))
            return bad(param, cap, "prompt", "'%s': expected token ids, found %s", kind_of(t, what, sizeof what));
        p->prompt_ids[p->n_prompt_ids++] = (int32_t)id;
    }
    return CP_OK;
}

/* content: a string, or a list of {"type": "text", "text"} parts (joined with nothing between). */
static cp_status message_content(const cJSON *c, int i, char **out, char *param, size_t cap) {
    char where[64], what[64];
    snprintf(where, sizeof where, "messages[%d].content", i);
    if (cJSON_IsNull(c)) return (*out = cp_strdup("")) ? CP_OK : CP_ERR;
    if (cJSON_IsString(c)) return (*out = cp_strdup(c->valuestring)) ? CP_OK : CP_ERR;
    if (!cJSON_IsArray(c)) return bad(param, cap, where, "'%s': expected a string or a list of text parts, found %s", kind_of(c, what, sizeof what));
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "");
    for (const cJSON *part = c->child; part; part = part->next) {
        const cJSON *type = cJSON_IsObject(part) ? cp_json_field(part, "type") : NULL;
        const cJSON *text = cJSON_IsObject(part) ? cp_json_field(part, "text") : NULL;
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            cp_sb_free(&sb);
            return bad(param, cap, where, "'%s': only {\"type\": \"text\", \"text\": ...} parts are supported%s", "");
        }
        cp_sb_append(&sb, text->valuestring);
    }
    return (*out = cp_sb_finish(&sb)) ? CP_OK : CP_ERR;
}

/* messages: a non-empty list of {"role": system|user|assistant|tool|developer, "content"}; copied
 * with string contents ("developer" becomes "system", as OpenAI maps it for older models). */
static cp_status parse_messages(const cJSON *root, cp_serve_params *p, char *param, size_t cap) {
    const cJSON *v = cp_json_field(root, "messages");
    char what[64], where[64];
    if (!v || cJSON_IsNull(v)) return bad(param, cap, "messages", "'%s' is required%s", "");
    if (!cJSON_IsArray(v) || !v->child)
        return bad(param, cap, "messages", "'%s': expected a non-empty list of messages, found %s", kind_of(v, what, sizeof what));
    if (!(p->messages = cJSON_CreateArray())) return cp_error("out of memory");
    int i = 0;
    for (const cJSON *m = v->child; m; m = m->next, i++) {
        snprintf(where, sizeof where, "messages[%d].role", i);
        const cJSON *role = cJSON_IsObject(m) ? cp_json_field(m, "role") : NULL;
        if (!cJSON_IsObject(m)) return bad(param, cap, where, "'%s': expected a message object, found %s", kind_of(m, what, sizeof what));
        if (!cJSON_IsString(role)) return bad(param, cap, where, "'%s': expected a string, found %s", role ? kind_of(role, what, sizeof what) : "nothing");
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "tool") && strcmp(r, "developer"))
            return bad(param, cap, where, "'%s': unknown role (expected system, developer, user, assistant or tool)%s", "");
        const cJSON *c = cp_json_field(m, "content");
        char *content = NULL;
        if (!c) {
            snprintf(where, sizeof where, "messages[%d].content", i);
            return bad(param, cap, where, "'%s' is required%s", "");
        }
        if (message_content(c, i, &content, param, cap) != CP_OK) return CP_ERR;
        cJSON *o = cJSON_CreateObject();
        const int ok = o && cJSON_AddStringToObject(o, "role", strcmp(r, "developer") ? r : "system") &&
                       cJSON_AddStringToObject(o, "content", content) && cJSON_AddItemToArray(p->messages, o);
        cp_free(content);
        if (!ok) { cJSON_Delete(o); return cp_error("out of memory"); }
    }
    return CP_OK;
}

cp_status cp_serve_parse_request(const char *body, size_t len, cp_serve_kind kind, cp_serve_params *p, char *param,
                                 size_t cap) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->max_tokens = -1;
    p->temperature = 1.0;
    p->top_p = 1.0;
    param[0] = '\0';
    cJSON *root = NULL;
    if (cp_json_parse(body, len, "request body", &root) != CP_OK) return CP_ERR;
    char what[64];
    cp_status st = CP_OK;
    if (!cJSON_IsObject(root)) st = cp_error("request body: expected a JSON object, found %s", kind_of(root, what, sizeof what));
    const cJSON *model = st == CP_OK ? cp_json_field(root, "model") : NULL;
    if (st == CP_OK && model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) st = bad(param, cap, "model", "'%s': expected a string, found %s", kind_of(model, what, sizeof what));
        else if (!(p->model = cp_strdup(model->valuestring))) st = CP_ERR;
    }
    if (st == CP_OK) st = kind == CP_SERVE_CHAT ? parse_messages(root, p, param, cap) : parse_prompt(root, p, param, cap);
    if (st == CP_OK) st = int_field(root, "max_tokens", 0, INT32_MAX, &p->max_tokens, param, cap);
    if (st == CP_OK && kind == CP_SERVE_CHAT) st = int_field(root, "max_completion_tokens", 0, INT32_MAX, &p->max_tokens, param, cap);
    if (st == CP_OK) st = number_field(root, "temperature", 0, 2, 0, &p->temperature, param, cap);
    if (st == CP_OK) st = number_field(root, "top_p", 0, 1, 1, &p->top_p, param, cap);
    int64_t seed = 0;
    if (st == CP_OK && cp_json_field(root, "seed") && !cJSON_IsNull(cp_json_field(root, "seed"))) {
        st = int_field(root, "seed", INT64_MIN / 2, INT64_MAX / 2, &seed, param, cap);
        p->has_seed = 1;
        p->seed = (uint64_t)seed;
    }
    if (st == CP_OK) st = bool_field(root, "stream", &p->stream, param, cap);
    const cJSON *so = st == CP_OK ? cp_json_field(root, "stream_options") : NULL;
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) st = bad(param, cap, "stream_options", "'%s': expected an object, found %s", kind_of(so, what, sizeof what));
        else st = bool_field(so, "include_usage", &p->include_usage, param, cap);
    }
    if (st == CP_OK) st = parse_stop(root, p, param, cap);
    if (st == CP_OK) st = refuse_unsupported(root, param, cap);
    cJSON_Delete(root);
    if (st != CP_OK) cp_serve_params_free(p);
    return st;
}

void cp_serve_params_free(cp_serve_params *p) {
    cp_free(p->model);
    cp_free(p->prompt);
    cp_free(p->prompt_ids);
    cJSON_Delete(p->messages);
    for (int i = 0; i < p->n_stop; i++) cp_free(p->stop[i]);
    memset(p, 0, sizeof *p);
}
