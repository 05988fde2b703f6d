/*
 * test_rope_config.c — the RoPE keys of a Llama-family config.json (llama, mistral, qwen2) read as
 * transformers 5.23 reads them. tests/fixtures/llama/info/rope_configs.json lists config.json forms
 * (rope_parameters without rope_theta beside a top-level rope_theta, rope_scaling beside
 * rope_parameters, llama3 without original_max_position_embeddings, missing factors, nulls, ...)
 * and, for each, the standardised rope_parameters and the rotary module's inv_freq transformers
 * computes, or the error it meets on the way to a forward. cpeft must read the same numbers and
 * refuse the same forms.
 */
#include "test.h"
#include "cpeft.h"
#include "io/json.h"
#include "models/model.h"
#include "nn/rope.h"

#include <stdlib.h>
#include <unistd.h>

#define FIXTURE "tests/fixtures/llama/info/rope_configs.json"

static const char *type_names[] = {"default", "linear", "dynamic", "llama3"};

/* Loads one case's config.json from a temporary directory (config only). */
static cp_status load_case(const cJSON *config, cp_model **m) {
    char dir[] = "/tmp/cpeft-rope-XXXXXX", path[64];
    if (!mkdtemp(dir)) abort();
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = cJSON_Print(config);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cp_status st = cp_model_load(m, dir, CP_LOAD_CONFIG_ONLY);
    unlink(path);
    rmdir(dir);
    return st;
}

static double num(const cJSON *obj, const char *key) { return cJSON_GetObjectItem(obj, key)->valuedouble; }

/* Every case: the same rope_theta, type, factors and original context as transformers' standardised
 * rope_parameters, and the same inverse frequencies (recovered from cpeft's cos/sin tables at
 * position 1: θ = inv_freq); or an error where transformers fails. */
TEST(rope_keys_as_transformers_reads_them) {
    cJSON *root;
    CHECK_OK(cp_json_read_file(FIXTURE, &root));
    if (!root) return;
    int n_ok = 0, n_err = 0;
    double max_rel = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = c->string;
        const cJSON *err = cJSON_GetObjectItem(c, "error");
        cp_model *m = NULL;
        cp_clear_error();
        cp_status st = load_case(cJSON_GetObjectItem(c, "config"), &m);
        if (err) {
            CHECK(st != CP_OK, "%s: loads, transformers fails (%s: %s)", name,
                  cJSON_GetObjectItem(err, "stage")->valuestring, cJSON_GetObjectItem(err, "message")->valuestring);
            if (st != CP_OK) n_err++;
            cp_model_free(m);
            continue;
        }
        CHECK(st == CP_OK, "%s: %s", name, cp_last_error());
        if (!m) continue;
        const cp_model_config *cfg = &m->config;
        const cJSON *rp = cJSON_GetObjectItem(c, "rope_parameters");
        const char *want_type = cJSON_GetObjectItem(rp, "rope_type")->valuestring;
        CHECK(cfg->rope_theta == num(rp, "rope_theta"), "%s: rope_theta %g, transformers %g", name, cfg->rope_theta,
              num(rp, "rope_theta"));
        CHECK(!strcmp(type_names[cfg->rope_type], want_type), "%s: rope type %s, transformers %s", name,
              type_names[cfg->rope_type], want_type);
        if (cfg->rope_type != CP_ROPE_DEFAULT)
            CHECK(cfg->rope_factor == num(rp, "factor"), "%s: factor %g, transformers %g", name, cfg->rope_factor, num(rp, "factor"));
        if (cfg->rope_type == CP_ROPE_LLAMA3) {
            CHECK(cfg->rope_low_freq_factor == num(rp, "low_freq_factor") && cfg->rope_high_freq_factor == num(rp, "high_freq_factor"),
                  "%s: low/high_freq_factor %g/%g", name, cfg->rope_low_freq_factor, cfg->rope_high_freq_factor);
            CHECK(cfg->rope_original_max_positions == (int64_t)num(rp, "original_max_position_embeddings"),
                  "%s: original_max_position_embeddings %lld, transformers %g", name,
                  (long long)cfg->rope_original_max_positions, num(rp, "original_max_position_embeddings"));
        }
        const cJSON *inv = cJSON_GetObjectItem(c, "inv_freq");
        int half = cJSON_GetArraySize(inv);
        CHECK(2 * half == cfg->head_dim, "%s: %d frequencies for head_dim %lld", name, half, (long long)cfg->head_dim);
        cp_rope r = {.dim = cfg->head_dim, .theta = cfg->rope_theta, .type = (cp_rope_type)cfg->rope_type,
                     .factor = cfg->rope_factor, .low_freq_factor = cfg->rope_low_freq_factor,
                     .high_freq_factor = cfg->rope_high_freq_factor,
                     .original_max_positions = cfg->rope_original_max_positions, .max_positions = cfg->max_positions};
        float cos_t[64], sin_t[64];
        int64_t pos = 1;
        if (half <= 64 && 2 * half == cfg->head_dim) {
            cp_rope_tables(&r, &pos, 1, 2, cos_t, sin_t);
            double rel = 0;
            for (int k = 0; k < half; k++) {
                double want = cJSON_GetArrayItem(inv, k)->valuedouble, got = atan2(sin_t[k], cos_t[k]);
                double d = fabs(got - want) / want;
                if (d > rel || d != d) rel = d;
            }
            CHECK(rel < 1e-5, "%s: inv_freq differs from transformers' by %.3g (relative)", name, rel);
            if (rel > max_rel) max_rel = rel;
        }
        n_ok++;
        cp_model_free(m);
    }
    printf("  %d forms read as transformers reads them (inv_freq max relative difference %.3g), %d refused as "
           "transformers fails on them\n", n_ok, max_rel, n_err);
    cJSON_Delete(root);
}

int main(void) {
    cp_set_quiet(1);
    RUN(rope_keys_as_transformers_reads_them);
    return test_summary();
}
