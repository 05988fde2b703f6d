/*
 * test_chat_cli.c — the chat side of the `cpeft` binary on the tiny chat model
 * (tests/fixtures/sft/tiny_chat_model: a random 2-layer Llama, a byte-level BPE with ChatML tokens,
 * SmolLM2's chat template; tests/reference/make_sft_fixtures.py):
 *   generate --chat: the rendered prompt's ids equal apply_chat_template(add_generation_prompt=True)'s
 *   and the greedy reply equals transformers' generate(), from --system/--user/--assistant flags, a
 *   --messages JSON file and a JSONL file of conversations;
 *   train on TRL's formats: the data line's token and loss counts equal TRL's preparation of the same
 *   records (messages, --assistant-only-loss with --chat-template, prompt-completion from CSV), and the
 *   refusals (a template without {% generation %}, a bad record) are errors naming the file.
 */
#include "test.h"
#include "io/json.h"
#include "run_cmd.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "tests/fixtures/sft/tiny_chat_model"

static const char *bin(void) { return "build/cpeft"; }
static char tmp[256];
static cJSON *cases;
static char out[1 << 16];

static int same_ids(const cJSON *a, const cJSON *b) {
    if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b)) return 0;
    for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next)
        if ((int)x->valuedouble != (int)y->valuedouble) return 0;
    return 1;
}

/* Each line of out (one JSON object per conversation) against the fixture's generate cases from `first`. */
static void check_lines(const char *what, int first, int n) {
    const cJSON *gen = cp_json_field(cases, "generate");
    char *save = NULL;
    int k = 0;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), k++) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *want = cJSON_GetArrayItem(gen, first + k);
        CHECK(j && want, "%s: line %d: %s", what, k, line);
        if (!j || !want) { cJSON_Delete(j); continue; }
        CHECK(same_ids(cp_json_field(j, "prompt_tokens"), cp_json_field(want, "prompt_ids")), "%s: prompt ids differ", what);
        CHECK(same_ids(cp_json_field(j, "tokens"), cp_json_field(want, "new_ids")), "%s: generated ids differ", what);
        CHECK(!strcmp(cp_json_field(j, "prompt")->valuestring, cp_json_field(want, "rendered")->valuestring),
              "%s: rendering differs", what);
        cJSON_Delete(j);
    }
    CHECK(k == n, "%s: %d lines, expected %d", what, k, n);
    printf("  %s: %d conversation%s, prompt ids and greedy reply identical to transformers\n", what, k, k == 1 ? "" : "s");
}

TEST(generate_chat_matches_transformers) {
    CHECK(run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --user 'What is 2 + 2?' --max-new-tokens 8 --json", bin(),
                      MODEL) == 0, "%s", out);
    check_lines("--user", 0, 1);
    CHECK(run_cmd_fmt(out, sizeof out, 0,
                      "%s generate --model %s --system 'You are a helpful assistant.' --user 'What is 2 + 2?' --assistant 'It is 4.' "
                      "--user 'And in French? « quatre »' --max-new-tokens 8 --json", bin(), MODEL) == 0, "%s", out);
    check_lines("--system/--user/--assistant", 1, 1);
    /* a JSONL file: one conversation per line, generated in one batch */
    char path[512];
    snprintf(path, sizeof path, "%s/convs.jsonl", tmp);
    FILE *f = fopen(path, "w");
    for (const cJSON *g = cp_json_field(cases, "generate")->child; f && g; g = g->next) {
        char *s = cJSON_PrintUnformatted(cp_json_field(g, "messages"));
        fprintf(f, "{\"messages\": %s}\n", s);
        free(s);
    }
    if (f) fclose(f);
    CHECK(run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --messages %s --max-new-tokens 8 --json", bin(), MODEL, path) == 0,
          "%s", out);
    check_lines("--messages JSONL", 0, 2);
    /* the plain output is the reply only: no template text */
    CHECK(run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --chat --prompt 'What is 2 + 2?' --max-new-tokens 8", bin(), MODEL) == 0,
          "%s", out);
    CHECK(!strstr(out, "<|im_") && !strstr(out, "user"), "template text in the reply: %s", out);
    /* refusals */
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s generate --model %s --user hi --prompts x.txt", bin(), MODEL) == 2 &&
          strstr(out, "--chat takes"), "%s", out);
    snprintf(path, sizeof path, "%s/bad.json", tmp);
    f = fopen(path, "w");
    if (f) { fputs("[{\"role\": \"robot\", \"content\": \"hi\"}]\n", f); fclose(f); }
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s generate --model %s --messages %s", bin(), MODEL, path) == 1 &&
          strstr(out, "unknown role \"robot\""), "%s", out);
    printf("  refused: %s", out);
}

/* The counts `cpeft train` prints for a case's records against TRL's preparation of them. */
static void train_case(const char *name, const char *flags, const char *ext) {
    const cJSON *c = NULL;
    for (c = cp_json_field(cases, "cases")->child; c; c = c->next)
        if (!strcmp(cp_json_field(c, "name")->valuestring, name) && !strcmp(cp_json_field(c, "tokenizer")->valuestring, "chat_tok")) break;
    CHECK(c != NULL, "no case %s", name);
    if (!c) return;
    long tokens = 0, loss = 0;
    for (const cJSON *e = cp_json_field(c, "examples")->child; e; e = e->next) {
        tokens += cJSON_GetArraySize(cp_json_field(e, "input_ids"));
        for (const cJSON *l = cp_json_field(e, "labels")->child; l; l = l->next) loss += (int)l->valuedouble != -100;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s", tmp, name, ext);
    FILE *f = fopen(path, "w");
    int n = 0;
    if (f && !strcmp(ext, "csv")) {
        fputs("prompt,completion\n", f);
        for (const cJSON *r = cp_json_field(c, "records")->child; r; r = r->next, n++) {
            fputc('"', f);
            for (const char *s = cp_json_field(r, "prompt")->valuestring; *s; s++) fprintf(f, *s == '"' ? "\"\"" : "%c", *s);
            fputs("\",\"", f);
            for (const char *s = cp_json_field(r, "completion")->valuestring; *s; s++) fprintf(f, *s == '"' ? "\"\"" : "%c", *s);
            fputs("\"\n", f);
        }
    } else if (f) {
        for (const cJSON *r = cp_json_field(c, "records")->child; r; r = r->next, n++) {
            char *s = cJSON_PrintUnformatted(r);
            fprintf(f, "%s\n", s);
            free(s);
        }
    }
    if (f) fclose(f);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s train --model %s --data %s --output-dir %s/out-%s --max-steps 1 --progress lines %s",
                      bin(), MODEL, path, tmp, name, flags) == 0, "%s", out);
    char want[256];
    snprintf(want, sizeof want, "data: %d training examples (%ld tokens, %ld with loss)", n, tokens, loss);
    CHECK(strstr(out, want) != NULL, "%s: expected \"%s\" in:\n%s", name, want, out);
    printf("  train %s %s: %s\n", name, flags, want + 6);
}

TEST(train_counts_match_trl) {
    train_case("messages", "", "jsonl");
    train_case("messages_assistant_only", "--assistant-only-loss --chat-template tests/fixtures/chat/templates/chatml_training.jinja",
               "jsonl");
    train_case("conv_prompt_completion", "", "jsonl");
    train_case("prompt_completion", "", "csv");
    train_case("prompt_completion_full_loss", "--completion-only-loss false", "csv");
    char path[512];
    snprintf(path, sizeof path, "%s/messages.jsonl", tmp);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s train --model %s --data %s --output-dir %s/out-x --max-steps 1 --assistant-only-loss",
                      bin(), MODEL, path, tmp) == 1 && strstr(out, "messages.jsonl:1: --assistant-only-loss needs a chat template"),
          "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s train --model %s --data %s --output-dir %s/out-y --completion-only-loss maybe", bin(),
                      MODEL, path, tmp) == 2 && strstr(out, "true or false"), "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s train --model %s --data %s --output-dir %s/out-z --chat-template %s/nope.jinja", bin(),
                      MODEL, path, tmp, tmp) == 1 && strstr(out, "--chat-template") && strstr(out, "nope.jinja"), "%s", out);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-test-chat-cli-XXXXXX");
    if (!mkdtemp(tmp) || cp_json_read_file("tests/fixtures/sft/cases.json", &cases) != CP_OK) {
        fprintf(stderr, "setup: %s\n", cp_last_error());
        return 1;
    }
    RUN(generate_chat_matches_transformers);
    RUN(train_counts_match_trl);
    cJSON_Delete(cases);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) {}
    return test_summary();
}
