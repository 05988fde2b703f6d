/*
 * test_chat_template.c — cpeft's chat templates against transformers: every case of
 * tests/fixtures/chat/cases.json (make_chat_fixtures.py: the real templates of ChatML, SmolLM2,
 * Qwen2.5, Qwen3, Llama 2, Llama 3 / 3.1, Mistral, Gemma, Phi-3 / 3.5 and training templates with
 * {% generation %}, on multi-turn conversations with and without add_generation_prompt) rendered
 * byte-identical, the same generation spans, the same token ids, or the same exception; plus the
 * refusals by name and the Jinja details the families do not reach.
 */
#include "test.h"

#include "chat/chat_template.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "cpeft.h"

#include <stdlib.h>
#include <unistd.h>

static char *render_text(const char *tmpl, const char *messages_json, int agp, cp_status *st) {
    cp_chat_template *t = NULL;
    cJSON *m = cJSON_Parse(messages_json);
    char *out = NULL;
    size_t len;
    *st = cp_chat_template_parse(&t, tmpl, strlen(tmpl), "test");
    if (*st == CP_OK) {
        cp_chat_template_set_tokens(t, "<s>", "</s>");
        *st = cp_chat_template_render(t, m, agp, NULL, &out, &len, NULL, NULL);
    }
    cp_chat_template_free(t);
    cJSON_Delete(m);
    return out;
}

TEST(families_match_transformers) {
    cJSON *root = NULL;
    CHECK_OK(cp_json_read_file("tests/fixtures/chat/cases.json", &root));
    if (!root) return;
    cp_tokenizer *tok = NULL;
    CHECK_OK(cp_tokenizer_load_file(&tok, "tests/fixtures/tokenizers/llama/tokenizer.json"));
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    const cJSON *convs = cJSON_GetObjectItem(root, "conversations");
    int n = 0, n_text = 0, n_err = 0, n_ids = 0, n_spans = 0, bad = 0;
    for (const cJSON *c = cJSON_GetObjectItem(root, "cases")->child; c; c = c->next, n++) {
        const char *name = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *conv = cJSON_GetObjectItem(c, "conversation")->valuestring;
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/chat/templates/%s.jinja", name);
        char *src = NULL;
        size_t src_len;
        CHECK_OK(cp_read_file(path, &src, &src_len));
        cp_chat_template *t = NULL;
        CHECK_OK(cp_chat_template_parse(&t, src, src_len, path));
        cp_free(src);
        if (!t) { bad++; continue; }
        const cJSON *bos = cJSON_GetObjectItem(c, "bos_token"), *eos = cJSON_GetObjectItem(c, "eos_token");
        cp_chat_template_set_tokens(t, cJSON_IsString(bos) ? bos->valuestring : NULL,
                                    cJSON_IsString(eos) ? eos->valuestring : NULL);
        char *text = NULL;
        size_t len = 0, ns = 0;
        cp_chat_span *spans = NULL;
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        cp_status st = cp_chat_template_render(t, cJSON_GetObjectItem(convs, conv), agp, cJSON_GetObjectItem(c, "extra"),
                                               &text, &len, &spans, &ns);
        const cJSON *want = cJSON_GetObjectItem(c, "text"), *err = cJSON_GetObjectItem(c, "error");
        if (err) {
            int ok = st != CP_OK && strstr(cp_last_error(), err->valuestring) != NULL;
            CHECK(ok, "%s/%s agp=%d: expected the error \"%s\", got %s", name, conv, agp, err->valuestring,
                  st == CP_OK ? "a rendering" : cp_last_error());
            n_err += ok;
            bad += !ok;
        } else if (st != CP_OK) {
            CHECK(0, "%s/%s agp=%d: %s", name, conv, agp, cp_last_error());
            bad++;
        } else {
            int same = len == strlen(want->valuestring) && !memcmp(text, want->valuestring, len);
            if (!same) {
                size_t k = 0;
                while (k < len && want->valuestring[k] == text[k]) k++;
                CHECK(0, "%s/%s agp=%d: differs at byte %zu:\n  cpeft: %.60s\n  transformers: %.60s", name, conv, agp, k,
                      text + k, want->valuestring + k);
                bad++;
            }
            n_text += same;
            const cJSON *ws = cJSON_GetObjectItem(c, "spans");
            int sp_ok = (size_t)cJSON_GetArraySize(ws) == ns;
            for (size_t i = 0; sp_ok && i < ns; i++) {
                const cJSON *p = cJSON_GetArrayItem(ws, (int)i);
                sp_ok = (size_t)cJSON_GetArrayItem(p, 0)->valuedouble == spans[i].start &&
                        (size_t)cJSON_GetArrayItem(p, 1)->valuedouble == spans[i].end;
            }
            CHECK(sp_ok, "%s/%s agp=%d: generation spans differ (%zu here, %d in transformers)", name, conv, agp, ns,
                  cJSON_GetArraySize(ws));
            n_spans += sp_ok && ns;
            const cJSON *ids = cJSON_GetObjectItem(c, "ids");
            if (ids && tok && cp_tokenizer_encode(tok, text, len, 0, &enc) == CP_OK) {
                int ok = (int)enc.n == cJSON_GetArraySize(ids);
                for (size_t i = 0; ok && i < enc.n; i++) ok = enc.ids[i] == (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
                CHECK(ok, "%s/%s agp=%d: token ids differ", name, conv, agp);
                n_ids += ok;
            }
        }
        cp_free(text);
        cp_free(spans);
        cp_chat_template_free(t);
    }
    printf("  chat templates: %d cases: %d renderings byte-identical, %d same exceptions, %d with identical "
           "token ids, %d with identical generation spans; %d differ\n", n, n_text, n_err, n_ids, n_spans, bad);
    CHECK(n >= 200 && n_ids > 0 && n_spans > 0, "too few cases were checked");
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
    cJSON_Delete(root);
}

TEST(refusals_by_name) {
    static const struct { const char *tmpl, *want; } cases[] = {
        {"{% macro f() %}x{% endmacro %}", "line 1: the statement {% macro %} is not supported"},
        {"a\n{% include 'x' %}", "line 2: the statement {% include %} is not supported"},
        {"{{ messages | map(attribute='role') | join }}", "the filter 'map' is not supported"},
        {"{{ 'x' is startingwith 'a' }}", "the test 'startingwith' is not supported"},
        {"{{ strftime_now('%d') }}", "strftime_now() (today's date) is not supported"},
        {"{{ foo() }}", "'foo' is undefined"},
        {"{{ messages[0].role.nope() }}", "'nope' is undefined"},
        {"{% if x %}", "the {% if %} opened here is never closed"},
        {"{{ 'a' + 1 }}", "unsupported operand types for +: 'str' and 'int'"},
        {"{{ raise_exception('no system role') }}", "the template raised an exception: no system role"},
        {"{{ messages.__class__ }}", "unsafe"},
        {"{% for i in range(1000000) %}{% endfor %}", "range() is too big"},
        {"{{ undefined_thing.attr }}", "'undefined_thing' is undefined"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cp_status st;
        char *out = render_text(cases[i].tmpl, "[{\"role\":\"user\",\"content\":\"hi\"}]", 0, &st);
        CHECK(st != CP_OK && strstr(cp_last_error(), cases[i].want), "%s: expected \"%s\", got \"%s\"", cases[i].tmpl,
              cases[i].want, st == CP_OK ? out : cp_last_error());
        cp_free(out);
    }
}

TEST(jinja_details) {
    static const struct { const char *tmpl, *want; } cases[] = {
        {"{{ 'abc'[::-1] }}|{{ 'héllo'[1:3] }}|{{ [1,2,3][-1] }}|{{ 'héllo'|length }}", "cba|él|3|5"},
        {"{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set y = 1 %}{% endfor %}"
         "{{ ns.n }}{{ y is defined }}", "2False"},
        {"{{ none }}{{ true }}{{ 1.5 }}{{ 3 // 2 }}{{ -7 // 2 }}{{ -7 % 3 }}{{ 10 / 4 }}{{ [1, 'a'] }}", "NoneTrue1.51-422.5[1, 'a']"},
        {"{{ {'b': 1, 'a': [true, none, 'é\"']} | tojson }}", "{\"b\": 1, \"a\": [true, null, \"é\\\"\"]}"},
        {"{{ '  x  '|trim }}|{{ 'a,b'.split(',')[1] }}|{{ 'xyx'.strip('x') }}|{{ 'Ab'.upper() }}", "x|b|y|AB"},
        {"{% for m in messages if m.role == 'user' %}{{ loop.index }}/{{ loop.length }}{% endfor %}", "1/1"},
        {"{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}{% for x in [] %}a{% else %}empty{% endfor %}",
         "a=1empty"},
        {"  {% if true %}\n    x\n  {% endif %}\n", "    x\n"},
        {"a  {%- if true -%}  b  {%- endif %}\n c", "ab c"},
        {"{# c #}\n{{ 1 if false else 2 }}{{ 'in' in 'win' }}{{ 3 not in [1] }}", "2TrueTrue"},
        {"{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
         "02"},
        {"{% set x %}in{{ 1 }}{% endset %}{{ x }}{{ x|length }}", "in13"},
        {"{{ messages[0]['content'] ~ 1 }}{{ 'a' 'b' }}{{ (1 == 1.0) }}{{ 0 == false }}", "hi1abTrueTrue"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cp_status st;
        char *out = render_text(cases[i].tmpl, "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]", 0, &st);
        CHECK(st == CP_OK && !strcmp(out, cases[i].want), "%s: expected \"%s\", got \"%s\"", cases[i].tmpl, cases[i].want,
              st == CP_OK ? out : cp_last_error());
        cp_free(out);
    }
}

TEST(load_dir_forms) {
    char dir[] = "/tmp/cpeft_chat_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char p[256];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    const char *cfg = "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", \"chat_template\": ["
                      "{\"name\": \"default\", \"template\": \"{{ bos_token }}D\"}, {\"name\": \"tool_use\", \"template\": \"T{{ eos_token }}\"}]}";
    CHECK_OK(cp_write_file_atomic(p, cfg, strlen(cfg)));
    cJSON *m = cJSON_Parse("[]");
    const char *which[] = {NULL, "tool_use"}, *want[] = {"<s>D", "T</s>"};
    for (int k = 0; k < 2; k++) {
        cp_chat_template *t = NULL;
        CHECK_OK(cp_chat_template_load_dir(&t, dir, which[k]));
        char *out = NULL;
        size_t len;
        if (t) CHECK_OK(cp_chat_template_render(t, m, 0, NULL, &out, &len, NULL, NULL));
        CHECK(out && !strcmp(out, want[k]), "named template %d: %s", k, out ? out : cp_last_error());
        cp_free(out);
        cp_chat_template_free(t);
    }
    cp_chat_template *t = NULL;
    CHECK(cp_chat_template_load_dir(&t, dir, "nope") != CP_OK && strstr(cp_last_error(), "no chat template named \"nope\""),
          "%s", cp_last_error());
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    CHECK_OK(cp_write_file_atomic(p, "J{{ bos_token }}\n", 17));
    CHECK_OK(cp_chat_template_load_dir(&t, dir, NULL));
    char *out = NULL;
    size_t len;
    if (t) CHECK_OK(cp_chat_template_render(t, m, 0, NULL, &out, &len, NULL, NULL));
    CHECK(out && !strcmp(out, "J<s>"), "chat_template.jinja: %s", out ? out : cp_last_error());
    cp_free(out);
    cp_chat_template_free(t);
    cJSON_Delete(m);
    remove(p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    remove(p);
    rmdir(dir);
}

int main(void) {
    cp_set_quiet(1);
    RUN(families_match_transformers);
    RUN(refusals_by_name);
    RUN(jinja_details);
    RUN(load_dir_forms);
    return test_summary();
}
