/*
 * test_sampling.c — the next-token choice (src/generate/sampling.c) against transformers' logits
 * processors: repetition penalty, temperature, top-k and top-p applied in generate()'s order to
 * fixed scores (tests/fixtures/generate/processors.json, from make_generate_fixtures.py) give the
 * same surviving tokens and the same values; greedy takes the first of equal maxima; draws follow
 * the processed distribution and repeat with the seed.
 */
#include "test.h"
#include "core/rng.h"
#include "generate/sampling.h"
#include "io/json.h"

#include <stdlib.h>

TEST(processors_match_transformers) {
    cJSON *j = NULL;
    CHECK_OK(cp_json_read_file("tests/fixtures/generate/processors.json", &j));
    if (!j) return;
    const int64_t V = (int64_t)cJSON_GetObjectItem(j, "vocab")->valuedouble;
    const cJSON *scores = cJSON_GetObjectItem(j, "scores"), *ids = cJSON_GetObjectItem(j, "input_ids"), *c;
    const int64_t B = cJSON_GetArraySize(scores);
    if (V <= 0 || V > 4096) { CHECK(0, "vocab %lld", (long long)V); cJSON_Delete(j); return; }
    float *s = malloc((size_t)V * sizeof *s);
    uint8_t *seen = malloc((size_t)V);
    cp_sampling_scratch scratch = {malloc((size_t)V * sizeof(float)), malloc((size_t)V * sizeof(cp_scored))};
    double worst = 0;
    int n_cases = 0, n_removed = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const cJSON *set = cJSON_GetObjectItem(c, "settings");
        cp_sampling_params p = {.do_sample = 1,
                                .temperature = (float)cJSON_GetObjectItem(set, "temperature")->valuedouble,
                                .top_k = (int64_t)cJSON_GetObjectItem(set, "top_k")->valuedouble,
                                .top_p = (float)cJSON_GetObjectItem(set, "top_p")->valuedouble,
                                .repetition_penalty = (float)cJSON_GetObjectItem(set, "repetition_penalty")->valuedouble};
        for (int64_t b = 0; b < B; b++) {
            const cJSON *row = cJSON_GetArrayItem(scores, (int)b), *want = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "processed"), (int)b);
            for (int64_t v = 0; v < V; v++) s[v] = (float)cJSON_GetArrayItem(row, (int)v)->valuedouble;
            memset(seen, 0, (size_t)V);
            const cJSON *t;
            cJSON_ArrayForEach(t, cJSON_GetArrayItem(ids, (int)b)) seen[(int)t->valuedouble] = 1;
            cp_logits_process(&p, s, V, seen, &scratch);
            for (int64_t v = 0; v < V; v++) {
                const cJSON *w = cJSON_GetArrayItem(want, (int)v);
                if (cJSON_IsNull(w)) {
                    n_removed++;
                    CHECK(s[v] == -INFINITY, "case %d row %lld token %lld: kept (%g), transformers removes it", n_cases,
                          (long long)b, (long long)v, s[v]);
                } else {
                    CHECK(s[v] != -INFINITY, "case %d row %lld token %lld: removed, transformers keeps %g", n_cases,
                          (long long)b, (long long)v, w->valuedouble);
                    double d = fabs((double)s[v] - w->valuedouble);
                    if (s[v] != -INFINITY && d > worst) worst = d;
                }
            }
        }
        n_cases++;
    }
    printf("  %d settings x %lld rows: the same %d tokens removed, kept scores max |diff| %.1e\n", n_cases, (long long)B,
           n_removed, worst);
    CHECK(worst < 1e-5, "max diff %.3e", worst);
    free(s);
    free(seen);
    free(scratch.f);
    free(scratch.items);
    cJSON_Delete(j);
}

TEST(greedy_takes_the_first_maximum) {
    const float s[] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    cp_sampling_params p = {.do_sample = 0, .temperature = 1, .top_p = 1, .repetition_penalty = 1};
    CHECK(cp_sample_token(&p, s, 5, NULL) == 1, "argmax of a tie");
}

TEST(draws_follow_the_distribution) {
    enum { V = 6, N = 300000 };
    float s[V] = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f}, proc[V];
    cp_sampling_params p = {.do_sample = 1, .temperature = 0.8f, .top_k = 4, .top_p = 0.9f, .repetition_penalty = 1};
    cp_sampling_scratch scratch = {malloc(V * sizeof(float)), malloc(V * sizeof(cp_scored))};
    memcpy(proc, s, sizeof s);
    cp_logits_process(&p, proc, V, NULL, &scratch);
    double prob[V], z = 0;
    for (int v = 0; v < V; v++) z += prob[v] = proc[v] == -INFINITY ? 0 : exp(proc[v]);
    cp_rng rng;
    cp_rng_seed(&rng, 11);
    int count[V] = {0};
    for (int i = 0; i < N; i++) count[cp_sample_token(&p, proc, V, &rng)]++;
    double worst = 0;
    for (int v = 0; v < V; v++) {
        double d = fabs((double)count[v] / N - prob[v] / z);
        if (d > worst) worst = d;
        if (prob[v] == 0) CHECK(count[v] == 0, "token %d was filtered out but drawn %d times", v, count[v]);
    }
    printf("  %d draws: frequencies within %.4f of the processed softmax\n", N, worst);
    CHECK(worst < 0.005, "frequency off by %.4f", worst);
    /* the same seed, the same draws */
    cp_rng a, b;
    cp_rng_seed(&a, 5);
    cp_rng_seed(&b, 5);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= cp_sample_token(&p, proc, V, &a) == cp_sample_token(&p, proc, V, &b);
    CHECK(same, "seeded draws differ");
    free(scratch.f);
    free(scratch.items);
}

int main(void) {
    RUN(processors_match_transformers);
    RUN(greedy_takes_the_first_maximum);
    RUN(draws_follow_the_distribution);
    return test_summary();
}
