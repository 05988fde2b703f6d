/*
 * test_class_targets.c — where a classification head meets target_modules, as PEFT resolves it (cases
 * recorded by tests/reference/make_class_target_fixtures.py in tests/fixtures/class_targets/):
 *   - SEQ_CLS: the heads go into modules_to_save before the adapter is injected, so they are never
 *     targets, and "all-linear" leaves the model's `score` / `classifier` out of the saved list (a
 *     RoBERTa head is no Linear: its dense and out_proj stay in the list, kept off by modules_to_save);
 *   - TOKEN_CLS: the heads are appended after, so a target list reaching the head (all-linear, or naming
 *     it) is PEFT's TypeError — unless the user's own modules_to_save names it first.
 * Each case: cp_model_add_adapter on the user's adapter_config.json gives PEFT's error, or saves PEFT's
 * target_modules and modules_to_save and prints PEFT's print_trainable_parameters() line.
 */
#include "test.h"
#include "cpeft.h"
#include "io/json.h"
#include "peft/peft_model.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#define ROOT "tests/fixtures/class_targets"

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The saved list, sorted (PEFT writes a set in its own order). */
static char *sorted_list(const cJSON *v) {
    if (!cJSON_IsArray(v)) return v ? cJSON_PrintUnformatted(v) : strdup("null");
    int n = cJSON_GetArraySize(v);
    const char **items = calloc((size_t)n + 1, sizeof *items);
    for (int i = 0; i < n; i++) items[i] = cJSON_GetArrayItem(v, i)->valuestring;
    qsort(items, (size_t)n, sizeof *items, name_cmp);
    cJSON *a = cJSON_CreateStringArray(items, n);
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    free(items);
    return s;
}

static void one_case(const char *name) {
    char path[512], model_dir[512];
    snprintf(path, sizeof path, ROOT "/%s/expected.json", name);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    const char *model = cJSON_GetObjectItem(exp, "model")->valuestring;
    const char *task = cJSON_GetObjectItem(exp, "task_type")->valuestring;
    const cJSON *error = cJSON_GetObjectItem(exp, "error");
    snprintf(model_dir, sizeof model_dir, "tests/fixtures/%s", model);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load_task(&m, model_dir, 0, task));
    if (!m) { cJSON_Delete(exp); return; }
    snprintf(path, sizeof path, ROOT "/%s/adapter_config.json", name);
    if (cJSON_IsString(error)) {
        CHECK_ERR(cp_model_add_adapter(m, "default", path, 0), error->valuestring);
        printf("  %-36s refused: %s\n", name, cp_last_error());
        CHECK(cp_peft_find_adapter(m, "default") == NULL, "%s: the refused adapter was left behind", name);
    } else {
        CHECK_OK(cp_model_add_adapter(m, "default", path, 0));
        char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
        const char *want = cJSON_GetObjectItem(exp, "trainable_line")->valuestring;
        CHECK(line && !strcmp(line, want), "%s: trainable line\n    cpeft: %s\n    PEFT:  %s", name, line ? line : "(null)", want);
        char dir[] = "/tmp/cpeft-class-targets-XXXXXX";
        if (mkdtemp(dir)) {
            CHECK_OK(cp_model_save_adapter(m, "default", dir));
            snprintf(path, sizeof path, "%s/adapter_config.json", dir);
            cJSON *saved = NULL;
            CHECK_OK(cp_json_read_file(path, &saved));
            const char *fields[] = {"target_modules", "modules_to_save"};
            for (int i = 0; saved && i < 2; i++) {
                char *got = sorted_list(cJSON_GetObjectItem(saved, fields[i]));
                char *w = sorted_list(cJSON_GetObjectItem(exp, fields[i]));
                CHECK(!strcmp(got, w), "%s: saved %s\n    cpeft: %s\n    PEFT:  %s", name, fields[i], got, w);
                free(got);
                free(w);
            }
            cJSON_Delete(saved);
            char cmd[128];
            snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
            if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
        }
        printf("  %-36s %s\n", name, line ? line : "(no line)");
        free(line);
    }
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(class_targets_as_peft) {
    DIR *d = opendir(ROOT);
    CHECK(d != NULL, "no fixtures in " ROOT);
    if (!d) return;
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n; i++) {
        one_case(names[i]);
        free(names[i]);
    }
    CHECK(n >= 10, "only %d cases", n);
}

int main(void) {
    RUN(class_targets_as_peft);
    return test_summary();
}
