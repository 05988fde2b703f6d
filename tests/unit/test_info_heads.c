/*
 * test_info_heads.c — `cpeft info` for the encoders and the task heads against what PyTorch and PEFT print
 * (strings recorded by tests/reference/make_encoder_fixtures.py):
 *   - every model of tests/fixtures/encoders and tests/fixtures/decoder_heads: `--tree` is print(model) of
 *     its task class and `--json`'s num_parameters its parameter count, the task taken from config.json;
 *   - every LoRA case: `--model BASE --task-type T --adapter DIR --tree --peft-format current` prints
 *     str(PeftModel.from_pretrained(model, DIR)) then its print_trainable_parameters() line;
 *   - the task chosen by --task-type against config.json (a SEQ_CLS checkpoint shown as TOKEN_CLS) and bad
 *     input (an unknown task, two model directories).
 */
#include "test.h"
#include "run_cmd.h"
#include "io/json.h"
#include "io/safetensors.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

static char out[1 << 18];

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted entries of dir (at most max) that contain `with`. */
static int list_dir(const char *dir, const char *with, char **names, int max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.' && strstr(e->d_name, with)) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    return n;
}

static int model_trees(const char *root) {
    char dir[256], *names[64];
    snprintf(dir, sizeof dir, "%s/forward", root);
    const int n = list_dir(dir, ".safetensors", names, 64);
    for (int i = 0; i < n; i++) {
        char path[512];
        cp_safetensors st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECK_OK(cp_st_open(&st, path));
        const char *model = cp_st_meta(&st, "model"), *repr = cp_st_meta(&st, "repr"), *count = cp_st_meta(&st, "num_parameters");
        if (model && repr && count) {
            CHECK(run_cmd_fmt(out, sizeof out, 0, "%s info --model %s/models/%s --tree", bin(), root, model) == 0, "%s: %s", model, out);
            const size_t k = strlen(repr);
            CHECK(!strncmp(out, repr, k) && out[k] == '\n' && !out[k + 1], "%s: --tree differs from print(model):\n%s\n--- PyTorch:\n%s",
                  model, out, repr);
            char want[64];
            snprintf(want, sizeof want, "\"num_parameters\":%s,", count);
            CHECK(run_cmd_fmt(out, sizeof out, 0, "%s info %s/models/%s --json", bin(), root, model) == 0 && strstr(out, want),
                  "%s: --json has no %s: %s", model, want, out);
        } else {
            CHECK(0, "%s: fixture without model, repr or num_parameters", names[i]);
        }
        cp_st_close(&st);
        free(names[i]);
    }
    return n;
}

TEST(info_tree_and_count_of_every_task_class) {
    int n = model_trees("tests/fixtures/encoders") + model_trees("tests/fixtures/decoder_heads");
    printf("  %d models: cpeft info --tree and --json num_parameters equal PyTorch's print(model) and count\n", n);
    CHECK(n >= 33, "only %d models", n);
}

static int peft_infos(const char *root) {
    char dir[256], *names[64];
    snprintf(dir, sizeof dir, "%s/grads", root);
    const int n = list_dir(dir, "", names, 64);
    for (int i = 0; i < n; i++) {
        char path[512];
        cJSON *exp = NULL;
        snprintf(path, sizeof path, "%s/%s/expected.json", dir, names[i]);
        CHECK_OK(cp_json_read_file(path, &exp));
        const cJSON *base = cJSON_GetObjectItem(exp, "base_dir"), *task = cJSON_GetObjectItem(exp, "task"),
                    *repr = cJSON_GetObjectItem(exp, "info_repr"), *line = cJSON_GetObjectItem(exp, "info_line");
        if (cJSON_IsString(base) && cJSON_IsString(task) && cJSON_IsString(repr) && cJSON_IsString(line)) {
            CHECK(run_cmd_fmt(out, sizeof out, 0, "%s info --model %s/%s --task-type %s --adapter %s/%s --tree --peft-format current", bin(),
                      root, base->valuestring, task->valuestring, dir, names[i]) == 0,
                  "%s: %s", names[i], out);
            const size_t k = strlen(repr->valuestring), kl = strlen(line->valuestring);
            CHECK(!strncmp(out, repr->valuestring, k) && out[k] == '\n', "%s: the PeftModel repr differs:\n%s\n--- PEFT:\n%s", names[i],
                  out, repr->valuestring);
            CHECK(strlen(out) > k + kl && !strncmp(out + k + 1, line->valuestring, kl) && out[k + 1 + kl] == '\n',
                  "%s: print_trainable_parameters differs:\n%s\n--- PEFT: %s", names[i], out + (strlen(out) > k ? k : 0),
                  line->valuestring);
        } else {
            CHECK(0, "%s: expected.json without base_dir, task, info_repr or info_line", names[i]);
        }
        cJSON_Delete(exp);
        free(names[i]);
    }
    return n;
}

TEST(info_peft_model_of_every_head) {
    int n = peft_infos("tests/fixtures/encoders") + peft_infos("tests/fixtures/decoder_heads");
    printf("  %d adapters: cpeft info --adapter --tree and its trainable-parameters line equal PEFT's\n", n);
    CHECK(n >= 21, "only %d adapters", n);
}

TEST(info_task_type_and_bad_input) {
    CHECK(run_cmd_fmt(out, sizeof out, 0, "%s info --model tests/fixtures/encoders/models/bert_seqcls --task-type TOKEN_CLS", bin()) == 0 &&
              strstr(out, "architecture: BertForTokenClassification (model_type bert)\ntask:         TOKEN_CLS, 3 labels\n"),
          "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 0, "%s info tests/fixtures/decoder_heads/models/gpt2_seqcls --task-type CAUSAL_LM --json", bin()) == 0 &&
              strstr(out, "\"architecture\":\"GPT2LMHeadModel\",\"task_type\":\"CAUSAL_LM\""),
          "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s info --model tests/fixtures/encoders/models/bert_seqcls --task-type QUESTION_ANS", bin()) == 1 &&
              strstr(out, "cpeft info: task_type: \"QUESTION_ANS\" is not one cpeft has"),
          "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s info --model tests/fixtures/encoders/models/bert_seqcls --task-type CAUSAL_LM", bin()) == 1 &&
              strstr(out, "is an encoder: it has no CAUSAL_LM head"),
          "%s", out);
    CHECK(run_cmd_fmt(out, sizeof out, 1, "%s info tests/fixtures/encoders/models/bert_base --model tests/fixtures/encoders/models/bert_base", bin()) == 2 &&
              strstr(out, "give the model directory once"),
          "%s", out);
}

int main(void) {
    RUN(info_tree_and_count_of_every_task_class);
    RUN(info_peft_model_of_every_head);
    RUN(info_task_type_and_bad_input);
    return test_summary();
}
