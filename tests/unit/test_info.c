/*
 * test_info.c — parameter counts, parameter names/shapes/order, dtypes and print(model) against
 * PyTorch, for every tests/fixtures/info/<name>.json: tiny models with weights
 * (tests/fixtures/models/<name>) and real models' configs alone (tests/fixtures/configs/<name>,
 * counted from shapes as on PyTorch's meta device — EleutherAI/gpt-neo-1.3B has 1,315,575,808);
 * and, for every PEFT adapter in tests/fixtures/lora/loaded_counts.json, the counts PEFT prints
 * after PeftModel.from_pretrained (frozen, and with is_trainable=True), through the library and
 * through `cpeft info --adapter` / `--peft-config`; and, for each of those adapters' configs, the
 * counts after get_peft_model with inference_mode true and false (tests/fixtures/lora/config_counts.json).
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/json.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int is_dir(const char *p) { struct stat s; return stat(p, &s) == 0 && S_ISDIR(s.st_mode); }

static const char *torch_dtype_to_st(const char *t) {
    if (!strcmp(t, "float32")) return "F32";
    if (!strcmp(t, "bfloat16")) return "BF16";
    if (!strcmp(t, "float16")) return "F16";
    return "?";
}

static int n_checked;

static void check_info(const char *root, const char *file) {
    char path[512], name[256], dir[512];
    snprintf(path, sizeof path, "%s/info/%s", root, file);
    snprintf(name, sizeof name, "%.*s", (int)(strlen(file) - 5), file);
    snprintf(dir, sizeof dir, "%s/models/%s", root, name);
    int with_weights = is_dir(dir);
    if (!with_weights) snprintf(dir, sizeof dir, "%s/configs/%s", root, name);
    if (!is_dir(dir)) return; /* info files that describe no model directory (e.g. rope.json) */

    cJSON *want;
    CHECK_OK(cp_json_read_file(path, &want));
    if (!want) return;
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, with_weights ? CP_LOAD_WEIGHTS : CP_LOAD_CONFIG_ONLY));
    if (!m) { cJSON_Delete(want); return; }

    int64_t want_n = (int64_t)cJSON_GetObjectItem(want, "num_parameters")->valuedouble;
    int64_t got_n = cp_model_num_parameters(m);
    CHECK(got_n == want_n, "%s: %lld parameters, PyTorch counts %lld", name, (long long)got_n, (long long)want_n);

    char *repr = cp_model_repr(m);
    const char *want_repr = cJSON_GetObjectItem(want, "repr")->valuestring;
    CHECK(repr && strcmp(repr, want_repr) == 0, "%s: repr differs:\n--- cpeft\n%s\n--- PyTorch\n%s", name, repr, want_repr);
    cp_free(repr);

    /* named_parameters(): same names, shapes and order (tied parameters appear once). */
    cp_param **params;
    int n;
    CHECK_OK(cp_module_params(m->root, &params, &n));
    const cJSON *want_params = cJSON_GetObjectItem(want, "parameters");
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (params[i]->tied_to) continue;
        const cJSON *w = cJSON_GetArrayItem(want_params, k++);
        if (!w) { CHECK(0, "%s: extra parameter %s", name, params[i]->name); break; }
        const char *wname = cJSON_GetArrayItem(w, 0)->valuestring;
        const cJSON *wshape = cJSON_GetArrayItem(w, 1);
        int same = !strcmp(wname, params[i]->name) && cJSON_GetArraySize(wshape) == params[i]->ndim;
        for (int d = 0; same && d < params[i]->ndim; d++)
            same = (int64_t)cJSON_GetArrayItem(wshape, d)->valuedouble == params[i]->shape[d];
        CHECK(same, "%s: parameter %d is %s, PyTorch has %s", name, k - 1, params[i]->name, wname);
        if (with_weights) {
            const char *wdt = torch_dtype_to_st(cJSON_GetArrayItem(w, 2)->valuestring);
            CHECK(!strcmp(wdt, cp_dtype_name(params[i]->source_dtype)), "%s: %s has dtype %s, PyTorch loads %s", name,
                  params[i]->name, cp_dtype_name(params[i]->source_dtype), wdt);
        }
    }
    CHECK(k == cJSON_GetArraySize(want_params), "%s: %d parameters listed, PyTorch lists %d", name, k,
          cJSON_GetArraySize(want_params));
    cp_free(params);
    n_checked++;
    cp_model_free(m);
    cJSON_Delete(want);
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(info_matches_pytorch) {
    const char *roots[] = {"tests/fixtures", "tests/fixtures/llama"};
    for (int r = 0; r < 2; r++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/info", roots[r]);
        DIR *d = opendir(dir);
        CHECK(d != NULL, "no %s", dir);
        if (!d) continue;
        char *names[64];
        int n = 0;
        struct dirent *e;
        while ((e = readdir(d)) && n < 64)
            if (strstr(e->d_name, ".json")) names[n++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, name_cmp);
        for (int i = 0; i < n; i++) { check_info(roots[r], names[i]); free(names[i]); }
    }
    CHECK(n_checked >= 26, "only %d info fixtures checked", n_checked);
    printf("  %d models: counts, parameter lists and print(model) identical to PyTorch\n", n_checked);
}

TEST(gpt_neo_1_3b_count_from_config_alone) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/configs/gpt-neo-1.3B", CP_LOAD_CONFIG_ONLY));
    if (!m) return;
    CHECK(cp_model_num_parameters(m) == 1315575808LL, "got %lld", (long long)cp_model_num_parameters(m));
    cp_model_free(m);
}

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* stdout of a command line (stderr dropped); NULL when it does not exit 0. */
static char *run_out(const char *cmd) {
    static char out[1 << 16];
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? out : NULL;
}

/* The last two lines of `out` are `line` and `own`. */
static int ends_with_lines(const char *out, const char *line, const char *own) {
    char want[1024];
    snprintf(want, sizeof want, "%s\n%s\n", line, own);
    size_t a = strlen(out), b = strlen(want);
    return a >= b && !strcmp(out + a - b, want) && (a == b || out[a - b - 1] == '\n');
}

/* PEFT's print_trainable_parameters() after PeftModel.from_pretrained: 0 trainable (biases of
 * bias="all" / "lora_only" excepted) with the default is_trainable=False, the training count with
 * is_trainable=True; cpeft info prints the first and names the second on its own line. */
TEST(loaded_adapter_counts_as_peft) {
    cJSON *all;
    CHECK_OK(cp_json_read_file("tests/fixtures/lora/loaded_counts.json", &all));
    if (!all) return;
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, all) {
        char base[512], dir[512], cmd[2048];
        snprintf(base, sizeof base, "tests/fixtures/%s", cJSON_GetObjectItem(c, "base_dir")->valuestring);
        snprintf(dir, sizeof dir, "tests/fixtures/lora/%s", c->string);
        const cJSON *frozen = cJSON_GetObjectItem(c, "from_pretrained"), *trainable = cJSON_GetObjectItem(c, "from_pretrained_trainable");
        const int64_t own = (int64_t)cJSON_GetObjectItem(trainable, "trainable")->valuedouble;
        for (int is_trainable = 0; is_trainable < 2; is_trainable++) {
            const cJSON *want = is_trainable ? trainable : frozen;
            cp_model *m = NULL;
            CHECK_OK(cp_model_load(&m, base, CP_LOAD_WEIGHTS));
            if (!m) continue;
            CHECK_OK(cp_adapter_load(m, dir, "default", 1, is_trainable));
            char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
            CHECK(line && !strcmp(line, cJSON_GetObjectItem(want, "print_trainable_parameters")->valuestring),
                  "%s, is_trainable=%d: %s\n  PEFT: %s", c->string, is_trainable, line,
                  cJSON_GetObjectItem(want, "print_trainable_parameters")->valuestring);
            CHECK(cp_peft_adapter_num_params(m, "default") == own, "%s: adapter params %lld, PEFT's trainable count %lld",
                  c->string, (long long)cp_peft_adapter_num_params(m, "default"), (long long)own);
            cp_free(line);
            cp_model_free(m);
        }
        /* the CLI: --adapter is from_pretrained; --peft-config with the saved config (inference_mode
         * true) is get_peft_model, which freezes the adapter just the same */
        for (int style = 0; style < 2; style++)
            for (int via_config = 0; via_config < 2; via_config++) {
                snprintf(cmd, sizeof cmd, "%s info %s %s %s%s --peft-format %s 2>/dev/null", bin(), base,
                         via_config ? "--peft-config" : "--adapter", dir, via_config ? "/adapter_config.json" : "",
                         style ? "current" : "notebook");
                cp_model *tmp = NULL;
                CHECK_OK(cp_model_load(&tmp, base, CP_LOAD_CONFIG_ONLY));
                char *want_own = NULL;
                if (tmp && cp_adapter_load(tmp, dir, "default", 0, 0) == CP_OK)
                    want_own = cp_peft_adapter_params_line(tmp, "default", style ? CP_PEFT_LINE_CURRENT : CP_PEFT_LINE_NOTEBOOK);
                cp_model_free(tmp);
                const char *out = run_out(cmd);
                const char *want = cJSON_GetObjectItem(frozen, style ? "print_trainable_parameters" : "notebook_line")->valuestring;
                CHECK(out && want_own && ends_with_lines(out, want, want_own), "%s:\n%s\n  PEFT: %s\n  and: %s", cmd,
                      out ? out : "(failed)", want, want_own ? want_own : "?");
                free(want_own);
            }
        n++;
    }
    CHECK(n >= 20, "only %d adapters", n);
    printf("  %d PEFT adapters: from_pretrained counts (frozen and is_trainable=True) and cpeft info lines as PEFT's\n", n);
    cJSON_Delete(all);
}

/* PEFT's print_trainable_parameters() after get_peft_model(base, config): with the case's saved
 * adapter_config.json (inference_mode true) the adapter is frozen, as after from_pretrained; with
 * the same config saying inference_mode false it trains. Through the library (cp_model_add_adapter)
 * and `cpeft adapter init` (get_peft_model + save_pretrained), which prints the notebook line. */
TEST(get_peft_model_follows_inference_mode) {
    cJSON *all;
    CHECK_OK(cp_json_read_file("tests/fixtures/lora/config_counts.json", &all));
    if (!all) return;
    char tmp[] = "/tmp/cpeft-infmode-XXXXXX";
    if (!mkdtemp(tmp)) return;
    int n = 0, n_frozen = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, all) {
        char base[512], cfg_path[512], off_path[600], cmd[2048];
        snprintf(base, sizeof base, "tests/fixtures/%s", cJSON_GetObjectItem(c, "base_dir")->valuestring);
        snprintf(cfg_path, sizeof cfg_path, "tests/fixtures/lora/%s/adapter_config.json", c->string);
        snprintf(off_path, sizeof off_path, "%s/adapter_config.json", tmp);
        cJSON *cfg;
        CHECK_OK(cp_json_read_file(cfg_path, &cfg));
        if (!cfg) continue;
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "inference_mode")), "%s: saved config without inference_mode true", c->string);
        cJSON_ReplaceItemInObject(cfg, "inference_mode", cJSON_CreateFalse());
        char *text = cJSON_Print(cfg);
        FILE *f = fopen(off_path, "w");
        if (f) { fputs(text, f); fclose(f); }
        free(text);
        cJSON_Delete(cfg);
        for (int mode = 0; mode < 2; mode++) { /* mode 1: inference_mode true (the saved file) */
            const cJSON *want = cJSON_GetObjectItem(c, mode ? "inference_mode_true" : "inference_mode_false");
            cp_model *m = NULL;
            CHECK_OK(cp_model_load(&m, base, CP_LOAD_WEIGHTS));
            if (!m) continue;
            CHECK_OK(cp_model_add_adapter(m, "default", mode ? cfg_path : off_path, 0));
            char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
            CHECK(line && !strcmp(line, cJSON_GetObjectItem(want, "print_trainable_parameters")->valuestring),
                  "%s, inference_mode %s: %s\n  PEFT: %s", c->string, mode ? "true" : "false", line ? line : "(none)",
                  cJSON_GetObjectItem(want, "print_trainable_parameters")->valuestring);
            n_frozen += mode && cJSON_GetObjectItem(want, "trainable")->valuedouble == 0;
            free(line);
            cp_model_free(m);
            snprintf(cmd, sizeof cmd, "rm -rf %s/out && %s adapter init --model %s --peft-config %s --out %s/out 2>/dev/null", tmp,
                     bin(), base, mode ? cfg_path : off_path, tmp);
            const char *out = run_out(cmd);
            const char *nb = cJSON_GetObjectItem(want, "notebook_line")->valuestring;
            CHECK(out && !strncmp(out, nb, strlen(nb)) && out[strlen(nb)] == '\n', "%s:\n%s\n  PEFT: %s", cmd, out ? out : "(failed)", nb);
        }
        n++;
    }
    CHECK(n >= 20, "only %d configs", n);
    printf("  %d PEFT configs: get_peft_model counts with inference_mode true (%d of them 0 trainable) and false, through "
           "the library and cpeft adapter init\n", n, n_frozen);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    cJSON_Delete(all);
}

int main(void) {
    cp_set_quiet(1);
    RUN(info_matches_pytorch);
    RUN(gpt_neo_1_3b_count_from_config_alone);
    RUN(loaded_adapter_counts_as_peft);
    RUN(get_peft_model_follows_inference_mode);
    return test_summary();
}
