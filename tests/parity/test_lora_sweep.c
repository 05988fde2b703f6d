/*
 * test_lora_sweep.c — what the PEFT-matrix sweep (tests/reference/sweep_peft_matrix.py, `make sweep`) found cpeft
 * doing differently from PEFT 0.21.2, held without Python by the fixtures of tests/reference/oracle_lora_sweep.py
 * (tests/fixtures/lora_sweep/):
 *   - a config file with only some keys gets LoraConfig's defaults: lora_alpha 8 (it was refused as "required"),
 *     and the saved peft_version "0.21.2" (cpeft wrote null);
 *   - 20 or more target names are shortened to minimal suffixes before matching, so that layers_to_transform
 *     applies to them (cpeft adapted every named module), and saved shortened; "all-linear" expands to full names
 *     before exclude_modules applies (cpeft saved "1.self_attn.k_proj", ...); a name given twice is saved once;
 *   - task types: SEQ_CLS / TOKEN_CLS append "classifier", "score" and QUESTION_ANS "qa_outputs" to
 *     modules_to_save (again when PEFT reloads the adapter), the repr says PeftModelForQuestionAnswering /
 *     PeftModelForFeatureExtraction, and an unknown task type is refused with PEFT's message.
 * Per case: `get_peft_model` from peft_config.json (cp_model_add_adapter), then the adapted modules with their ranks
 * and scalings, print_trainable_parameters(), the repr, and the saved adapter_config.json (byte for byte) and
 * tensor names and shapes against PEFT's.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "peft/lora.h"
#include "peft/peft_model.h"

#include <stdlib.h>
#include <unistd.h>

#define SWEEP "lora_sweep" /* under tests/fixtures, the working directory of these tests */

static char *read_text(const char *path) {
    char *s;
    size_t n;
    return cp_read_file(path, &s, &n) == CP_OK ? s : NULL;
}

/* Saves adapter `name` of m into a fresh directory and compares its adapter_config.json with `want` byte for
 * byte and, when `tensors` is given, its tensor names, dtypes and shapes with PEFT's (key -> [dtype, shape]). */
static void check_saved(cp_model *m, const char *name, const char *want, const cJSON *tensors, const char *label) {
    char dir[] = "/tmp/cpeft-sweep-XXXXXX", out[600], path[700];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(out, sizeof out, "%s/adapter", dir);
    CHECK_OK(cp_model_save_adapter(m, name, out));
    snprintf(path, sizeof path, "%s/adapter_config.json", out);
    char *got = read_text(path);
    CHECK(got && want && !strcmp(got, want), "%s: adapter_config.json differs from PEFT's:\n%s\n--- PEFT:\n%s", label,
          got ? got : "(none)", want ? want : "(none)");
    cp_free(got);
    cp_safetensors st;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", out);
    if (tensors && cp_st_open(&st, path) == CP_OK) {
        CHECK(st.n_tensors == cJSON_GetArraySize(tensors), "%s: %d tensors saved, PEFT saves %d", label, st.n_tensors,
              cJSON_GetArraySize(tensors));
        const cJSON *t;
        cJSON_ArrayForEach(t, tensors) {
            const cp_st_tensor *x = cp_st_find(&st, t->string);
            const cJSON *shape = cJSON_GetArrayItem(t, 1);
            int same = x && x->dtype == CP_F32 && x->ndim == cJSON_GetArraySize(shape);
            for (int d = 0; same && d < x->ndim; d++) same = x->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
            CHECK(same, "%s: tensor %s missing or not as PEFT saves it", label, t->string);
        }
        cp_st_close(&st);
    }
    snprintf(path, sizeof path, "rm -rf %s", dir);
    CHECK(system(path) == 0, "cleanup");
}

static void run_case(const char *name) {
    char path[512];
    snprintf(path, sizeof path, SWEEP "/%s/expected.json", name);
    cJSON *exp;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    const char *base_dir = cJSON_GetObjectItem(exp, "base_dir")->valuestring;
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, base_dir, CP_LOAD_WEIGHTS));
    snprintf(path, sizeof path, SWEEP "/%s/peft_config.json", name);
    if (!m || cp_model_add_adapter(m, "default", path, 0) != CP_OK) {
        CHECK(0, "%s: %s", name, cp_last_error());
        cp_model_free(m);
        cJSON_Delete(exp);
        return;
    }
    /* the adapted modules, their ranks and scalings */
    const cJSON *want = cJSON_GetObjectItem(exp, "lora_modules"), *ranks = cJSON_GetObjectItem(exp, "ranks"),
                *scalings = cJSON_GetObjectItem(exp, "scalings");
    cp_module **mods;
    int n;
    double worst = 0;
    CHECK_OK(cp_peft_adapter_modules(m, "default", &mods, &n));
    CHECK(n == cJSON_GetArraySize(want), "%s: %d adapted modules, PEFT %d", name, n, cJSON_GetArraySize(want));
    for (int i = 0; i < n; i++) {
        const cJSON *r = cJSON_GetObjectItem(ranks, mods[i]->path), *s = cJSON_GetObjectItem(scalings, mods[i]->path);
        const cp_lora_adapter *a = cp_lora_find(mods[i], "default");
        double d = s ? fabs(a->scaling - s->valuedouble) : INFINITY;
        if (d > worst) worst = d;
        CHECK(r && s && a->r == (int64_t)r->valuedouble && d < 1e-12, "%s: %s (rank %lld, scaling %g) is not adapted so by PEFT",
              name, mods[i]->path, (long long)a->r, a->scaling);
    }
    cp_free(mods);
    char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_CURRENT);
    const char *want_line = cJSON_GetObjectItem(exp, "print_trainable_parameters")->valuestring;
    CHECK(line && !strcmp(line, want_line), "%s: %s, PEFT %s", name, line, want_line);
    cp_free(line);
    char *repr = cp_model_peft_repr(m);
    const char *want_repr = cJSON_GetObjectItem(exp, "repr")->valuestring;
    CHECK(repr && !strcmp(repr, want_repr), "%s: repr differs:\n%s\n--- PEFT:\n%s", name, repr, want_repr);
    cp_free(repr);
    printf("  %-32s %2d modules as PEFT, scalings max |diff| %.1e\n", name, n, worst);
    check_saved(m, "default", cJSON_GetObjectItem(exp, "saved_config")->valuestring, cJSON_GetObjectItem(exp, "saved_tensors"),
                name);
    cp_model_free(m);
    /* PeftModel.from_pretrained + save_pretrained of PEFT's own file */
    const cJSON *resaved = cJSON_GetObjectItem(exp, "resaved_config");
    if (resaved) {
        m = NULL;
        snprintf(path, sizeof path, SWEEP "/%s/adapter", name);
        CHECK_OK(cp_model_load(&m, base_dir, CP_LOAD_WEIGHTS));
        if (m && cp_model_load_adapter(m, path, "default", 0) == CP_OK) check_saved(m, "default", resaved->valuestring, NULL, name);
        else CHECK(0, "%s: reload: %s", name, cp_last_error());
        cp_model_free(m);
    }
    cJSON_Delete(exp);
}

static int chdir_fixtures(char *cwd, size_t n) {
    int ok = getcwd(cwd, n) != NULL && chdir("tests/fixtures") == 0;
    CHECK(ok, "chdir tests/fixtures");
    return ok;
}

/* A config file with only some keys: LoraConfig's defaults, as PeftConfig.from_pretrained fills them. */
TEST(config_defaults_as_peft) {
    char cwd[1024];
    if (!chdir_fixtures(cwd, sizeof cwd)) return;
    run_case("minimal_config_neo");
    run_case("minimal_default_targets_gpt2");
    CHECK(chdir(cwd) == 0, "chdir back");
}

/* 20 or more target names: shortened before matching (the layer filter then applies) and saved shortened. */
TEST(many_target_names_shortened_before_matching) {
    char cwd[1024];
    if (!chdir_fixtures(cwd, sizeof cwd)) return;
    run_case("many_names_qwen2");
    run_case("many_names_layer_filter_qwen2");
    run_case("all_linear_excluded_qwen2");
    run_case("duplicate_names_neo");
    CHECK(chdir(cwd) == 0, "chdir back");
}

/* task_type: the PeftModelFor<task> class, its head modules in modules_to_save, PEFT's error for another value. */
TEST(task_types_as_peft) {
    char cwd[1024];
    if (!chdir_fixtures(cwd, sizeof cwd)) return;
    run_case("task_seq_cls_mistral");
    run_case("task_question_ans_qwen2");
    run_case("task_feature_extraction_llama");
    cJSON *errors;
    CHECK_OK(cp_json_read_file(SWEEP "/errors.json", &errors));
    const cJSON *e;
    cJSON_ArrayForEach(e, errors) {
        char tmp[] = "/tmp/cpeft-sweep-cfg-XXXXXX";
        int fd = mkstemp(tmp);
        char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(e, "config"));
        CHECK(fd >= 0 && text && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "temp config");
        if (fd >= 0) close(fd);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load(&m, cJSON_GetObjectItem(e, "base_dir")->valuestring, CP_LOAD_WEIGHTS));
        if (m) CHECK_ERR(cp_model_add_adapter(m, "default", tmp, 0), cJSON_GetObjectItem(e, "message")->valuestring);
        printf("  %-32s refused: %s\n", e->string, cp_last_error());
        cp_model_free(m);
        unlink(tmp);
        cJSON_free(text);
    }
    cJSON_Delete(errors);
    CHECK(chdir(cwd) == 0, "chdir back");
}

int main(void) {
    cp_set_quiet(1);
    RUN(config_defaults_as_peft);
    RUN(many_target_names_shortened_before_matching);
    RUN(task_types_as_peft);
    return test_summary();
}
