/*
 * chat_template.c — loading a model's chat template and rendering conversations with it; see
 * chat_template.h. The template is lexed and parsed once; each render gets its own value heap.
 */
#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"

#include <stdio.h>
#include <string.h>

struct cp_chat_template {
    jx_heap heap;      /* tokens and nodes */
    jx_template tmpl;
    char *name;
    char *bos, *eos;
    int has_generation;
};

static int find_generation(jx_node *const *body, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const jx_node *x = body[i];
        if (x->kind == JN_GENERATION) return 1;
        if (find_generation(x->body, x->n_body) || find_generation(x->orelse, x->n_orelse)) return 1;
    }
    return 0;
}

cp_status cp_chat_template_parse(cp_chat_template **out, const char *text, size_t len, const char *name) {
    *out = NULL;
    cp_chat_template *t = cp_calloc(1, sizeof *t, "a chat template");
    if (!t) return CP_ERR;
    jx_token *toks;
    size_t n;
    if (!(t->name = cp_strdup(name ? name : "chat template")) || jx_lex(&t->heap, text, len, &toks, &n) ||
        jx_parse(&t->heap, toks, n, &t->tmpl)) {
        cp_error_context("%s", name ? name : "chat template");
        cp_chat_template_free(t);
        return CP_ERR;
    }
    t->has_generation = find_generation(t->tmpl.body, t->tmpl.n);
    *out = t;
    return CP_OK;
}

cp_status cp_chat_template_set_tokens(cp_chat_template *t, const char *bos, const char *eos) {
    cp_free(t->bos);
    cp_free(t->eos);
    t->bos = bos ? cp_strdup(bos) : NULL;
    t->eos = eos ? cp_strdup(eos) : NULL;
    return (bos && !t->bos) || (eos && !t->eos) ? CP_ERR : CP_OK;
}

int cp_chat_template_has_generation(const cp_chat_template *t) { return t->has_generation; }

/* A special token of tokenizer_config.json: a string or an AddedToken {"content": ...}. */
static const char *special_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cp_json_field(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cp_json_field(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return NULL;
}

cp_status cp_chat_template_load_dir(cp_chat_template **out, const char *dir, const char *which) {
    *out = NULL;
    char path[4096], cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    cJSON *cfg = NULL;
    if (cp_path_exists(cfg_path) && cp_json_read_file(cfg_path, &cfg)) return CP_ERR;
    cp_status st = CP_ERR;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (!which && cp_path_exists(path)) {
        char *text = NULL;
        size_t len = 0;
        if (cp_read_file(path, &text, &len) == CP_OK) st = cp_chat_template_parse(out, text, len, path);
        cp_free(text);
    } else {
        const cJSON *ct = cfg ? cp_json_field(cfg, "chat_template") : NULL;
        const char *want = which ? which : "default";
        if (cJSON_IsString(ct)) {
            if (which && strcmp(which, "default"))
                st = cp_error("%s: \"chat_template\" is one template; there is no template named \"%s\"", cfg_path, which);
            else
                st = cp_chat_template_parse(out, ct->valuestring, strlen(ct->valuestring), cfg_path);
        } else if (cJSON_IsArray(ct)) {
            const cJSON *hit = NULL;
            char names[512] = "";
            size_t o = 0;
            for (const cJSON *e = ct->child; e; e = e->next) {
                const cJSON *nm = cp_json_field(e, "name"), *tx = cp_json_field(e, "template");
                if (!cJSON_IsString(nm) || !cJSON_IsString(tx)) {
                    hit = NULL;
                    st = cp_error("%s: \"chat_template\" list entries need string \"name\" and \"template\"", cfg_path);
                    goto done;
                }
                if (o + 1 < sizeof names) o += (size_t)snprintf(names + o, sizeof names - o, "%s\"%s\"", o ? ", " : "", nm->valuestring);
                if (!strcmp(nm->valuestring, want)) hit = e;
            }
            if (!hit) st = cp_error("%s: no chat template named \"%s\" (it has %s)", cfg_path, want, names);
            else {
                const char *tx = cp_json_field(hit, "template")->valuestring;
                st = cp_chat_template_parse(out, tx, strlen(tx), cfg_path);
            }
        } else if (ct) {
            st = cp_error("%s: \"chat_template\" is %s, expected a string or a list of named templates", cfg_path,
                          cp_json_type_name(ct));
        } else {
            st = cp_error("%s: the model has no chat template (no chat_template.jinja, no \"chat_template\" in "
                          "tokenizer_config.json)", dir);
        }
    }
    if (st == CP_OK && cfg) st = cp_chat_template_set_tokens(*out, special_token(cfg, "bos_token"), special_token(cfg, "eos_token"));
done:
    if (st != CP_OK && *out) { cp_chat_template_free(*out); *out = NULL; }
    cJSON_Delete(cfg);
    return st;
}

cp_status cp_chat_template_load_file(cp_chat_template **out, const char *path) {
    *out = NULL;
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (n >= 5 && !strcmp(path + n - 5, ".json")) {
        if (strcmp(base, "tokenizer_config.json"))
            return cp_error("%s: a chat template file is a .jinja file or a tokenizer_config.json", path);
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", base > path ? (int)(base - path - 1) : 1, base > path ? path : ".");
        return cp_chat_template_load_dir(out, dir, NULL);
    }
    char *text = NULL;
    size_t len = 0;
    cp_status st = cp_read_file(path, &text, &len);
    if (st == CP_OK) st = cp_chat_template_parse(out, text, len, path);
    cp_free(text);
    return st;
}

cp_status cp_chat_template_render(const cp_chat_template *t, const cJSON *messages, int add_generation_prompt,
                                  const cJSON *extra, char **text, size_t *len, cp_chat_span **spans, size_t *n_spans) {
    *text = NULL;
    if (len) *len = 0;
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    jx_heap h = {0};
    jx_result res;
    memset(&res, 0, sizeof res);
    cp_status st = CP_ERR;
    jv *vars = jv_new(&h, JV_DICT);
    if (!vars) goto out;
    if (extra && cJSON_IsObject(extra))
        for (const cJSON *c = extra->child; c; c = c->next)
            if (jv_dict_set(&h, vars, c->string, jv_from_json(&h, c))) goto out;
    if (jv_dict_set(&h, vars, "messages", jv_from_json(&h, messages)) ||
        jv_dict_set(&h, vars, "add_generation_prompt", jv_bool(&h, add_generation_prompt)))
        goto out;
    if (t->bos && jv_dict_set(&h, vars, "bos_token", jv_cstr(&h, t->bos))) goto out;
    if (t->eos && jv_dict_set(&h, vars, "eos_token", jv_cstr(&h, t->eos))) goto out;
    if (jx_render(&h, &t->tmpl, vars, &res)) { cp_error_context("%s", t->name); goto out; }
    if (res.out.failed) { cp_error("%s: out of memory", t->name); goto out; }
    size_t n = res.out.len;
    *text = cp_malloc(n + 1, "the rendered chat");
    if (!*text) goto out;
    if (n) memcpy(*text, res.out.data, n);
    (*text)[n] = '\0';
    if (len) *len = n;
    if (spans && res.n_spans) {
        *spans = cp_malloc(res.n_spans * sizeof **spans, "generation spans");
        if (!*spans) { cp_free(*text); *text = NULL; goto out; }
        for (size_t i = 0; i < res.n_spans; i++) (*spans)[i] = (cp_chat_span){res.spans[i].start, res.spans[i].end};
    }
    if (n_spans) *n_spans = spans ? res.n_spans : 0;
    st = CP_OK;
out:
    jx_result_free(&res);
    jx_heap_free(&h);
    return st;
}

void cp_chat_template_free(cp_chat_template *t) {
    if (!t) return;
    jx_heap_free(&t->heap);
    cp_free(t->name);
    cp_free(t->bos);
    cp_free(t->eos);
    cp_free(t);
}
