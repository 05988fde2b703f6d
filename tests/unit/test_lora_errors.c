/*
 * test_lora_errors.c — bad adapters and configs give clear errors and leave nothing half-written:
 * an adapter for another base model, missing files, a non-LoRA peft_type, r <= 0, a null r or
 * lora_alpha (a missing one is LoraConfig's default: test_lora_sweep.c), a target regex that does
 * not compile, unsupported options, and failed saves; an adapter_config.json whose r does not fit
 * its weights is refused from the file's header before anything is allocated; options that cannot
 * change the numbers are accepted and written back.
 */
#include "test.h"
#include "cpeft.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "peft/adapter_io.h"
#include "peft/lora.h"
#include "peft/peft_model.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#define NEO "tests/fixtures/models/gpt_neo_tiny"
#define ODD "tests/fixtures/models/gpt_neo_odd"
#define ADAPTER "tests/fixtures/lora/neo_notebook"

static char tmp[64];

static void fresh_tmp(void) {
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-lora-err-XXXXXX");
    if (!mkdtemp(tmp)) abort();
}

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static const char *write_cfg(const char *json) {
    static char path[128];
    snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    return path;
}

static cp_model *base(const char *dir) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

TEST(adapter_for_another_base_names_tensor_and_shapes) {
    cp_model *m = base(ODD);
    if (!m) return;
    CHECK_ERR(cp_model_load_adapter(m, ADAPTER, "default", 0),
              "tensor \"base_model.model.transformer.h.0.attn.attention.k_proj.lora_A.weight\" has shape [8, 32] but the model needs [8, 36]");
    CHECK(cp_peft_find_adapter(m, "default") == NULL, "a failed load leaves no adapter behind");
    cp_model_free(m);
}

TEST(missing_files) {
    cp_model *m = base(NEO);
    if (!m) return;
    fresh_tmp();
    CHECK_ERR(cp_model_load_adapter(m, tmp, "default", 0), "adapter_config.json is missing");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cp " ADAPTER "/adapter_config.json %s/", tmp);
    CHECK(system(cmd) == 0, "copy");
    CHECK_ERR(cp_model_load_adapter(m, tmp, "default", 0), "adapter_model.safetensors is missing");
    CHECK_ERR(cp_model_load_adapter(m, "/nonexistent/adapter", "default", 0), "adapter directory does not exist");
    cleanup();
    cp_model_free(m);
}

TEST(bad_configs) {
    cp_model *m = base(NEO);
    if (!m) return;
    fresh_tmp();
    struct { const char *json, *error; } cases[] = {
        {"{\"peft_type\": \"LOHA\", \"r\": 8, \"lora_alpha\": 8}", "peft_type is \"LOHA\", expected \"LORA\""},
        {"{\"r\": 8, \"lora_alpha\": 8}", "required field \"peft_type\" is missing"},
        {"{\"peft_type\": \"LORA\", \"r\": 0, \"lora_alpha\": 8}", "`r` should be a positive integer value but the value passed is 0"},
        {"{\"peft_type\": \"LORA\", \"r\": -3, \"lora_alpha\": 8}", "`r` should be a positive integer value but the value passed is -3"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": null}", "field \"lora_alpha\": expected a number, found null"},
        {"{\"peft_type\": \"LORA\", \"r\": null, \"lora_alpha\": 8}", "field \"r\": expected a number, found null"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": \"big\"}", "field \"lora_alpha\": expected a number, found a string"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"target_modules\": \"(q_proj\"}",
         "the regular expression \"(q_proj\" does not compile"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"use_dora\": true}", "\"use_dora\": true is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"init_lora_weights\": \"pissa\"}",
         "\"init_lora_weights\": \"pissa\" is not supported yet by cpeft (supported: true, false, \"gaussian\")"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"bias\": \"some\"}", "\"some\" is not one of \"none\", \"all\", \"lora_only\""},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"lora_dropout\": 1.5}", "\"lora_dropout\" must be in [0, 1)"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"target_modules\": [\"ln_1\"]}",
         "Target module LayerNorm(...) at \"transformer.h.0.ln_1\" is not supported"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"target_modules\": \"q_proj\", \"layers_to_transform\": [0]}",
         "`layers_to_transform` cannot be used when `target_modules` is a str."},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, ", "invalid JSON at line 1"},
        /* numbers out of range are errors, not undefined conversions; a repeated key keeps its last value */
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"layers_to_transform\": [0, 1e30]}",
         "field \"layers_to_transform\": expected an integer or a list of integers, found 1e+30"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"layers_to_transform\": 1e400}",
         "field \"layers_to_transform\": expected an integer or a list of integers, found inf"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"rank_pattern\": {\"q_proj\": 1e30}}",
         "rank_pattern[\"q_proj\"] must be a positive integer, found 1e+30"},
        {"{\"peft_type\": \"LORA\", \"r\": 1e30, \"lora_alpha\": 8}", "field \"r\": expected an integer, found 1e+30"},
        {"{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 8, \"r\": 0}",
         "`r` should be a positive integer value but the value passed is 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_ERR(cp_model_add_adapter(m, "default", write_cfg(cases[i].json), 0), cases[i].error);
        CHECK(cp_peft_find_adapter(m, "default") == NULL, "case %zu left an adapter behind", i);
    }
    /* an unknown key is ignored with a warning, as PEFT does */
    CHECK_OK(cp_model_add_adapter(m, "default", write_cfg("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"some_future_key\": 1}"), 0));
    CHECK_ERR(cp_model_add_adapter(m, "default", write_cfg("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}"), 0),
              "adapter \"default\" already exists");
    cleanup();
    cp_model_free(m);
}

/* A copy of neo_notebook (r 8 on q/k/v) whose adapter_config.json says r = `r`. */
static void adapter_with_rank(const char *r) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cp " ADAPTER "/adapter_model.safetensors %s/ && sed 's/\"r\": 8,/\"r\": %s,/' " ADAPTER
             "/adapter_config.json > %s/adapter_config.json",
             tmp, r, tmp);
    CHECK(system(cmd) == 0, "%s", cmd);
}

/* r = 3e6 would allocate gigabytes of LoRA tensors before the load compares them with the file;
 * r = 2^40 (16 TiB per tensor) cannot be allocated at all, so a shape error here (not "out of
 * memory") shows the header was checked first. */
TEST(absurd_rank_is_refused_from_the_header) {
    cp_model *m = base(NEO);
    if (!m) return;
    const char *ranks[] = {"3000000", "1099511627776"};
    for (int i = 0; i < 2; i++) {
        fresh_tmp();
        adapter_with_rank(ranks[i]);
        char want[256];
        snprintf(want, sizeof want,
                 "tensor \"base_model.model.transformer.h.0.attn.attention.k_proj.lora_A.weight\" has shape [8, 32] but "
                 "r = %s in adapter_config.json makes it [%s, 32]",
                 ranks[i], ranks[i]);
        CHECK_ERR(cp_model_load_adapter(m, tmp, "default", 0), want);
        CHECK(cp_peft_find_adapter(m, "default") == NULL, "a failed load leaves no adapter behind");
        cp_lora_config cfg;
        char path[128];
        snprintf(path, sizeof path, "%s/adapter_config.json", tmp);
        CHECK_OK(cp_lora_config_load(&cfg, path));
        CHECK_ERR(cp_adapter_check_header(m, &cfg, tmp), want); /* what `cpeft info --adapter` checks */
        cp_lora_config_free(&cfg);
        cleanup();
    }
    cp_model_free(m);
}

/* Keys that cannot change the numbers are accepted (auto_mapping, which PEFT writes for every
 * adapter without task_type; configs of inits not in use; Megatron settings; ensure_weight_tying
 * where PEFT has nothing to tie) and written back; those that would change them are refused, an
 * empty variant config ({} switches the variant on in PEFT) included. */
TEST(informational_keys_are_accepted_and_kept) {
    cp_model *m = base(NEO);
    if (!m) return;
    fresh_tmp();
    const char *ok =
        "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"], "
        "\"auto_mapping\": {\"base_model_class\": \"GPTNeoForCausalLM\", \"parent_library\": \"transformers.models.gpt_neo.modeling_gpt_neo\"}, "
        "\"eva_config\": {\"rho\": 3}, \"corda_config\": {\"corda_method\": \"kpm\"}, \"lora_ga_config\": {\"stable_gamma\": 8}, "
        "\"megatron_config\": {\"tensor_model_parallel_size\": 1}, \"loftq_config\": {\"loftq_bits\": 4}, "
        "\"qalora_group_size\": 32, \"target_parameters\": [], \"ensure_weight_tying\": true}";
    CHECK_OK(cp_model_add_adapter(m, "default", write_cfg(ok), 0));
    char out[128];
    snprintf(out, sizeof out, "%s/saved", tmp);
    CHECK_OK(cp_model_save_adapter(m, "default", out));
    char path[160];
    snprintf(path, sizeof path, "%s/adapter_config.json", out);
    cJSON *saved;
    CHECK_OK(cp_json_read_file(path, &saved));
    if (saved) {
        const char *want[][2] = {
            {"auto_mapping", "{\"base_model_class\":\"GPTNeoForCausalLM\",\"parent_library\":\"transformers.models.gpt_neo.modeling_gpt_neo\"}"},
            {"eva_config", "{\"rho\":3}"}, {"corda_config", "{\"corda_method\":\"kpm\"}"},
            {"lora_ga_config", "{\"stable_gamma\":8}"}, {"megatron_config", "{\"tensor_model_parallel_size\":1}"},
            {"loftq_config", "{}"}, /* PEFT resets it without init "loftq" */
            {"qalora_group_size", "32"}, {"target_parameters", "null"}, {"ensure_weight_tying", "true"}};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            char *got = cJSON_PrintUnformatted(cJSON_GetObjectItem(saved, want[i][0]));
            CHECK(got && !strcmp(got, want[i][1]), "saved %s: %s, expected %s", want[i][0], got ? got : "(absent)", want[i][1]);
            cJSON_free(got);
        }
        cJSON_Delete(saved);
    }
    CHECK_OK(cp_model_delete_adapter(m, "default"));
    struct { const char *json, *error; } refused[] = {
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"kasa_config\": {}}", "\"kasa_config\": {} is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"velora_config\": {}}", "\"velora_config\": {} is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"lora_bias\": true}", "\"lora_bias\": true is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_parameters\": [\"x\"]}",
         "\"target_parameters\": [\"x\"] is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"], \"modules_to_save\": [\"lm_head\"], "
         "\"ensure_weight_tying\": true}",
         "ensure_weight_tying=true on a model with tied embeddings is not supported yet"},
        {"{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"auto_mapping\": \"GPT2\"}",
         "field \"auto_mapping\": expected null or an object"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        CHECK_ERR(cp_model_add_adapter(m, "default", write_cfg(refused[i].json), 0), refused[i].error);
        CHECK(cp_peft_find_adapter(m, "default") == NULL, "refused case %zu left an adapter behind", i);
    }
    cleanup();
    cp_model_free(m);
}

static int count_partials(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix)) && strstr(e->d_name, ".partial-")) n++;
    if (d) closedir(d);
    return n;
}

TEST(failed_saves_leave_nothing_behind) {
    cp_model *m = base(NEO);
    if (!m) return;
    CHECK_OK(cp_model_load_adapter(m, ADAPTER, "default", 0));
    fresh_tmp();
    char out[128], blocker[160];
    /* the output's parent is a file: the directory cannot be made */
    snprintf(blocker, sizeof blocker, "%s/file", tmp);
    FILE *f = fopen(blocker, "w");
    fclose(f);
    snprintf(out, sizeof out, "%s/file/adapter", tmp);
    CHECK_ERR(cp_model_save_adapter(m, "default", out), "/file: exists and is not a directory");
    /* merge refuses an existing output, and a good merge leaves no staging directory */
    CHECK_ERR(cp_model_save_merged(m, tmp), "already exists");
    snprintf(out, sizeof out, "%s/merged", tmp);
    CHECK_OK(cp_model_save_merged(m, out));
    CHECK(count_partials(tmp, "merged") == 0, "staging directory left behind");
    /* saving over an existing adapter replaces its files */
    snprintf(out, sizeof out, "%s/again", tmp);
    CHECK_OK(cp_model_save_adapter(m, "default", out));
    CHECK_OK(cp_model_save_adapter(m, "default", out));
    CHECK(count_partials(tmp, "again") == 0, "staging directory left behind");
    cleanup();
    cp_model_free(m);
}

int main(void) {
    cp_set_quiet(1);
    RUN(adapter_for_another_base_names_tensor_and_shapes);
    RUN(missing_files);
    RUN(bad_configs);
    RUN(absurd_rank_is_refused_from_the_header);
    RUN(informational_keys_are_accepted_and_kept);
    RUN(failed_saves_leave_nothing_behind);
    return test_summary();
}
