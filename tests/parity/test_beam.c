/*
 * test_beam.c — beam search against transformers' generate(num_beams=N) and PEFT's
 * PeftModel.generate() (tests/fixtures/beam/beam.json, tests/reference/make_beam_fixtures.py):
 *   - every returned sequence token-identical (its own length: eos-ended or max_new_tokens), its
 *     finish reason, and sequences_scores within 1e-4 (the max difference is printed), on GPT-2,
 *     GPT-Neo and Llama tiny models, a left-padded batch, num_beams 2/3/4, length_penalty
 *     -0.5/0.5/1/2, early_stopping true/false/"never", no_repeat_ngram_size 2/3, repetition
 *     penalty, num_return_sequences 1..4, one or two eos ids the beams reach, unmerged LoRA
 *     adapters (GPT-Neo, Llama) and a mixed-adapter batch (adapter_names); and greedy decoding
 *     with no_repeat_ngram_size 2/3 (tokens only, also without the cache);
 *   - the same for encoder-decoders (tests/fixtures/beam/s2s.json, make_s2s_generate_fixtures.py): t5 v1.0,
 *     v1.1, mt5 and three BART models, with and without LoRA; greedy with BART's forced BOS / EOS;
 *   - the KV cache row operations: cp_kv_cache_gather and cp_kv_cache_reorder against a plain
 *     copy, permutations with repeated and cyclic sources;
 *   - the no-repeat-n-gram processor on hand-checked sequences;
 *   - bad options: num_beams < 1, num_return_sequences > num_beams or > 1 without beams, beam
 *     search with sampling / stop strings / no_cache; generation_config.json defaults;
 *   - `cpeft generate --num-beams` end to end (text and --json).
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "generate/beam.h"
#include "io/json.h"
#include "models/kv_cache.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures"

static cJSON *read_json(const char *path) {
    cJSON *j = NULL;
    if (cp_json_read_file(path, &j) != CP_OK) CHECK(0, "%s: %s", path, cp_last_error());
    return j;
}

static int32_t *json_ids(const cJSON *a, int64_t *n) {
    *n = cJSON_GetArraySize(a);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    int64_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) ids[k++] = (int32_t)it->valuedouble;
    return ids;
}

static void set_eos(cp_generate_options *o, const cJSON *eos) {
    o->n_eos = 0;
    const cJSON *it;
    if (cJSON_IsNumber(eos)) o->eos_token_ids[o->n_eos++] = (int32_t)eos->valuedouble;
    if (cJSON_IsArray(eos)) cJSON_ArrayForEach(it, eos) o->eos_token_ids[o->n_eos++] = (int32_t)it->valuedouble;
}

static int is_eos(const cp_generate_options *o, int32_t t) {
    for (int i = 0; i < o->n_eos; i++)
        if (o->eos_token_ids[i] == t) return 1;
    return 0;
}

/* ---- parity with generate() ------------------------------------------------------------------ */

/* A fixture's path: from the repository root when it starts with tests/ (s2s.json), else under FIX (beam.json). */
static void fixture_path(char *out, size_t n, const char *p) {
    snprintf(out, n, strncmp(p, "tests/", 6) ? FIX "/%s" : "%s", p);
}

static void run_case(const cJSON *c, int *n_cases, int64_t *n_seqs, int64_t *n_eos_ended, double *max_diff) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    const cJSON *set = cJSON_GetObjectItem(c, "settings");
    char dir[512];
    fixture_path(dir, sizeof dir, cJSON_GetObjectItem(c, "model")->valuestring);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    if (!m) return;
    const cJSON *ad;
    cJSON_ArrayForEach(ad, cJSON_GetObjectItem(c, "adapters")) {
        fixture_path(dir, sizeof dir, cJSON_GetObjectItem(ad, "dir")->valuestring);
        CHECK_OK(cp_model_load_adapter(m, dir, cJSON_GetObjectItem(ad, "name")->valuestring, 0));
    }
    const cJSON *prompts = cJSON_GetObjectItem(c, "prompts");
    const int64_t n = cJSON_GetArraySize(prompts);
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens);
    for (int64_t r = 0; r < n; r++) ids[r] = json_ids(cJSON_GetArrayItem(prompts, (int)r), &lens[r]);
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = (int64_t)cJSON_GetObjectItem(set, "max_new_tokens")->valuedouble;
    set_eos(&o, cJSON_GetObjectItem(set, "eos_token_id"));
    o.pad_token_id = (int32_t)cJSON_GetObjectItem(set, "pad_token_id")->valuedouble;
    o.num_beams = (int64_t)cJSON_GetObjectItem(set, "num_beams")->valuedouble;
    o.num_return_sequences = (int64_t)cJSON_GetObjectItem(set, "num_return_sequences")->valuedouble;
    o.length_penalty = cJSON_GetObjectItem(set, "length_penalty")->valuedouble;
    o.no_repeat_ngram_size = (int64_t)cJSON_GetObjectItem(set, "no_repeat_ngram_size")->valuedouble;
    o.repetition_penalty = cJSON_GetObjectItem(set, "repetition_penalty")->valuedouble;
    const cJSON *fb = cJSON_GetObjectItem(set, "forced_bos_token_id"); /* forced_eos_token_id: the model's config */
    if (cJSON_IsNumber(fb)) o.forced_bos_token_id = (int32_t)fb->valuedouble;
    const cJSON *es = cJSON_GetObjectItem(set, "early_stopping");
    o.early_stopping = cJSON_IsString(es) ? CP_EARLY_STOPPING_NEVER : cJSON_IsTrue(es) ? CP_EARLY_STOPPING_TRUE
                                                                                        : CP_EARLY_STOPPING_FALSE;
    const cJSON *an = cJSON_GetObjectItem(set, "adapter_names");
    const char **names = NULL;
    if (cJSON_IsArray(an)) {
        names = calloc((size_t)n, sizeof *names);
        for (int64_t r = 0; r < n; r++) names[r] = cJSON_GetArrayItem(an, (int)r)->valuestring;
        o.adapter_names = names;
    }
    cp_generation g;
    cp_status st = cp_model_generate(m, (const int32_t *const *)ids, lens, n, &o, &g);
    CHECK(st == CP_OK, "%s: %s", name, cp_last_error());
    const cJSON *seqs = cJSON_GetObjectItem(c, "sequences"), *scores = cJSON_GetObjectItem(c, "scores");
    const int64_t N = cJSON_GetArraySize(seqs);
    double diff = 0;
    if (st == CP_OK) {
        const int beams = o.num_beams > 1; /* else a greedy case (no_repeat_ngram_size): no scores */
        CHECK(g.n == N && g.num_return_sequences == o.num_return_sequences && !g.sequences_scores == !beams,
              "%s: %lld sequences, expected %lld", name, (long long)g.n, (long long)N);
        for (int64_t q = 0; q < N && q < g.n; q++) {
            int64_t nw;
            int32_t *want = json_ids(cJSON_GetArrayItem(seqs, (int)q), &nw);
            int same = g.n_tokens[q] == nw;
            for (int64_t t = 0; same && t < nw; t++) same = g.tokens[q][t] == want[t];
            if (!same) {
                char got[512] = "", exp[512] = "";
                size_t a = 0, b = 0;
                for (int64_t t = 0; t < g.n_tokens[q] && a < 480; t++) a += (size_t)snprintf(got + a, sizeof got - a, " %d", g.tokens[q][t]);
                for (int64_t t = 0; t < nw && b < 480; t++) b += (size_t)snprintf(exp + b, sizeof exp - b, " %d", want[t]);
                CHECK(0, "%s sequence %lld: cpeft%s\n      transformers%s", name, (long long)q, got, exp);
            }
            const int eos_end = nw && is_eos(&o, want[nw - 1]);
            *n_eos_ended += eos_end;
            CHECK(!same || g.finish[q] == (eos_end ? CP_FINISH_EOS : CP_FINISH_LENGTH), "%s sequence %lld: finish %d", name,
                  (long long)q, g.finish[q]);
            const double d = beams && g.sequences_scores
                                 ? fabs((double)g.sequences_scores[q] - cJSON_GetArrayItem(scores, (int)q)->valuedouble) : 0;
            if (d > diff) diff = d;
            free(want);
        }
        CHECK(diff <= 1e-4, "%s: sequences_scores differ by %.3g", name, diff);
        if (!beams) { /* greedy: the same tokens when every step recomputes the whole sequence */
            cp_generation r;
            o.no_cache = 1;
            CHECK_OK(cp_model_generate(m, (const int32_t *const *)ids, lens, n, &o, &r));
            int same = r.n == g.n;
            for (int64_t q = 0; same && q < g.n; q++)
                same = r.n_tokens[q] == g.n_tokens[q] && !memcmp(r.tokens[q], g.tokens[q], (size_t)g.n_tokens[q] * sizeof(int32_t));
            CHECK(same, "%s: other tokens without the cache", name);
            cp_generation_free(&r);
        }
        cp_generation_free(&g);
    }
    printf("  %-38s %lld prompts × %lld beams → %lld sequences identical, score max diff %.2e\n", name, (long long)n,
           (long long)o.num_beams, (long long)N, diff);
    if (diff > *max_diff) *max_diff = diff;
    *n_seqs += N;
    (*n_cases)++;
    for (int64_t r = 0; r < n; r++) free(ids[r]);
    free(ids);
    free(lens);
    free(names);
    cp_model_free(m);
}

/* Every case of a fixture file; at least min_cases cases and min_eos sequences ending on eos (so the checks bite). */
static void run_fixture(const char *path, const char *label, int min_cases, int64_t min_eos) {
    cJSON *j = read_json(path);
    if (!j) return;
    int n_cases = 0;
    int64_t n_seqs = 0, n_eos = 0;
    double max_diff = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) run_case(c, &n_cases, &n_seqs, &n_eos, &max_diff);
    printf("  %s: %d cases, %lld sequences (%lld ended on eos) identical to generate(); sequences_scores max diff %.2e\n",
           label, n_cases, (long long)n_seqs, (long long)n_eos, max_diff);
    CHECK(n_cases >= min_cases, "%s: only %d cases", path, n_cases);
    CHECK(n_eos >= min_eos, "%s: only %lld sequences end on eos", path, (long long)n_eos);
    cJSON_Delete(j);
}

TEST(beam_matches_transformers) { run_fixture(FIX "/beam/beam.json", "gpt2, gpt-neo, llama", 34, 20); }

/* Encoder-decoders (tests/reference/make_s2s_generate_fixtures.py): the encoder once per prompt, the decoder's
 * self-attention cache following the beams; greedy with no_repeat_ngram_size and BART's forced BOS / EOS. */
TEST(s2s_beam_matches_transformers) { run_fixture(FIX "/beam/s2s.json", "t5 v1.0 / v1.1, mt5, bart", 47, 60); }

/* ---- KV cache row operations ------------------------------------------------------------------- */

static void fill_cache(cp_kv_cache *c, float base) {
    const int64_t n = c->L * c->B * c->capacity * c->kv_dim;
    for (int64_t i = 0; i < n; i++) {
        c->k[i] = base + (float)i;
        c->v[i] = -base - (float)i;
    }
    for (int64_t i = 0; i < c->B * c->capacity; i++) c->mask[i] = (i * 7) % 3 != 0;
}

/* dst row r holds src row rows[r] in the first n columns. */
static int rows_equal(const cp_kv_cache *dst, const cp_kv_cache *src, const int64_t *rows, int64_t n) {
    const int64_t D = src->kv_dim;
    for (int64_t l = 0; l < src->L; l++)
        for (int64_t r = 0; r < dst->B; r++) {
            const size_t off_d = (size_t)(((l * dst->B + r) * dst->capacity) * D),
                         off_s = (size_t)(((l * src->B + rows[r]) * src->capacity) * D);
            if (memcmp(dst->k + off_d, src->k + off_s, (size_t)(n * D) * sizeof(float)) ||
                memcmp(dst->v + off_d, src->v + off_s, (size_t)(n * D) * sizeof(float)))
                return 0;
            if (memcmp(dst->mask + r * dst->capacity, src->mask + rows[r] * src->capacity, (size_t)n * sizeof(int64_t)))
                return 0;
        }
    return 1;
}

TEST(kv_cache_gather_and_reorder) {
    cp_kv_cache src, dst, ref;
    CHECK_OK(cp_kv_cache_init(&src, 2, 3, 5, 4));
    CHECK_OK(cp_kv_cache_init(&dst, 2, 6, 7, 4));
    fill_cache(&src, 1.0f);
    src.len = 4;
    const int64_t expand[6] = {0, 0, 1, 1, 2, 2};
    CHECK_OK(cp_kv_cache_gather(&dst, &src, expand));
    CHECK(dst.len == 4 && rows_equal(&dst, &src, expand, 4), "gather: rows differ from their sources");
    const int64_t bad[6] = {0, 0, 1, 3, 2, 2};
    CHECK_ERR(cp_kv_cache_gather(&dst, &src, bad), "reads row 3 of 3");
    /* reorders: identity, repeated sources, a 3-cycle with a swap, all from one row */
    const int64_t perms[4][6] = {{0, 1, 2, 3, 4, 5}, {1, 1, 0, 5, 5, 3}, {1, 2, 0, 4, 3, 5}, {2, 2, 2, 2, 2, 2}};
    for (int p = 0; p < 4; p++) {
        CHECK_OK(cp_kv_cache_init(&ref, 2, 6, 7, 4));
        fill_cache(&dst, 100.0f * (float)(p + 1));
        dst.len = 5;
        memcpy(ref.k, dst.k, (size_t)(2 * 6 * 7 * 4) * sizeof(float));
        memcpy(ref.v, dst.v, (size_t)(2 * 6 * 7 * 4) * sizeof(float));
        memcpy(ref.mask, dst.mask, (size_t)(6 * 7) * sizeof(int64_t));
        ref.len = 5;
        CHECK_OK(cp_kv_cache_reorder(&dst, perms[p]));
        CHECK(rows_equal(&dst, &ref, perms[p], 5), "reorder %d: rows differ from their sources", p);
        cp_kv_cache_free(&ref);
    }
    const int64_t neg[6] = {0, -1, 1, 1, 2, 2};
    CHECK_ERR(cp_kv_cache_reorder(&dst, neg), "reads row -1");
    printf("  gather (3 → 6 rows) and 4 in-place reorders equal a plain copy of their source rows\n");
    cp_kv_cache_free(&src);
    cp_kv_cache_free(&dst);
}

/* ---- the n-gram processor ---------------------------------------------------------------------- */

TEST(no_repeat_ngram) {
    float s[10];
    /* 1 2 3 1 2: the bigram prefix (2) was followed by 3, the trigram prefix (1 2) by 3 */
    const int64_t seq[] = {1, 2, 3, 1, 2};
    for (int i = 0; i < 10; i++) s[i] = 0;
    cp_no_repeat_ngram(seq, 5, 2, s, 10);
    CHECK(s[3] == -INFINITY && s[1] == 0 && s[2] == 0, "bigram: only 3 is banned");
    for (int i = 0; i < 10; i++) s[i] = 0;
    cp_no_repeat_ngram(seq, 5, 3, s, 10);
    CHECK(s[3] == -INFINITY && s[1] == 0, "trigram: 3 after (1 2)");
    for (int i = 0; i < 10; i++) s[i] = 0;
    cp_no_repeat_ngram(seq, 2, 3, s, 10); /* shorter than the n-gram: nothing */
    int none = 1;
    for (int i = 0; i < 10; i++) none &= s[i] == 0;
    CHECK(none, "nothing banned before a complete n-gram");
    for (int i = 0; i < 10; i++) s[i] = 0;
    cp_no_repeat_ngram(seq, 5, 1, s, 10); /* unigrams: every token seen */
    CHECK(s[1] == -INFINITY && s[2] == -INFINITY && s[3] == -INFINITY && s[0] == 0 && s[4] == 0, "unigrams");
    /* 7 7 7: the bigram (7 7) exists, so 7 after 7 is banned */
    const int64_t rep[] = {7, 7, 7};
    for (int i = 0; i < 10; i++) s[i] = 0;
    cp_no_repeat_ngram(rep, 3, 2, s, 10);
    CHECK(s[7] == -INFINITY, "7 7 7: 7 banned");
}

/* ---- bad options -------------------------------------------------------------------------------- */

TEST(bad_beam_options) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, FIX "/models/gpt2_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    const int32_t p0[] = {5, 17, 42}, *prompts[1] = {p0};
    const int64_t lens[1] = {3};
    cp_generation g;
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    CHECK(o.num_beams == 1 && o.length_penalty == 1.0 && o.early_stopping == CP_EARLY_STOPPING_FALSE &&
          o.no_repeat_ngram_size == 0 && o.num_return_sequences == 1, "defaults");
    o.max_new_tokens = 4;
    o.num_beams = 0;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "`num_beams` has to be a strictly positive integer, but is 0");
    o.num_beams = 2;
    o.num_return_sequences = 3;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "`num_return_sequences` (3) has to be smaller or equal to `num_beams` (2).");
    o.num_beams = 1;
    o.num_return_sequences = 2;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "do not support `num_return_sequences` different than 1 (got 2)");
    o.num_return_sequences = 1;
    o.num_beams = 2;
    o.do_sample = 1;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "beam search (num_beams 2) with sampling (do_sample) is not supported");
    o.do_sample = 0;
    o.no_cache = 1;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "with no_cache is not supported");
    o.no_cache = 0;
    o.no_repeat_ngram_size = -1;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "`no_repeat_ngram_size` has to be a non-negative integer");
    o.no_repeat_ngram_size = 0;
    o.early_stopping = 7;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "early_stopping must be");
    o.early_stopping = 0;
    o.num_beams = 60; /* 120 candidates > 97 tokens */
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "more than the vocabulary's 97 tokens");
    o.num_beams = 2;
    o.max_new_tokens = 0;
    CHECK_OK(cp_model_generate(m, prompts, lens, 1, &o, &g));
    CHECK(g.n == 1 && g.n_tokens[0] == 0, "max_new_tokens 0: one empty sequence");
    cp_generation_free(&g);
    /* a mixed-adapter batch is checked as without beams */
    const char *names[1] = {"nope"};
    o.max_new_tokens = 4;
    o.adapter_names = names;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "adapter_names given, but the model has no adapters loaded");
    cp_model_free(m);
    /* a prompt-learning adapter */
    m = NULL;
    CHECK_OK(cp_model_load(&m, FIX "/models/gpt_neo_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_model_load_adapter(m, FIX "/prompt_methods/neo_pt_text/adapter", "default", 0));
    o.adapter_names = NULL;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 1, &o, &g), "with a prompt-learning adapter (prompt/prefix tuning, ...) is not supported");
    cp_model_free(m);
}

/* generation_config.json's beam fields become the defaults. */
TEST(generation_config_defaults) {
    char tmp[] = "/tmp/cpeft_beam_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    char cmd[1024], path[600];
    snprintf(cmd, sizeof cmd, "cp " FIX "/models/gpt2_tiny/config.json " FIX "/models/gpt2_tiny/model.safetensors %s/", tmp);
    CHECK(system(cmd) == 0, "copy the model");
    snprintf(path, sizeof path, "%s/generation_config.json", tmp);
    const char *variants[3] = {
        "{\"num_beams\": 4, \"length_penalty\": 0.6, \"early_stopping\": true, \"no_repeat_ngram_size\": 3}",
        "{\"num_beams\": 3, \"early_stopping\": \"never\"}",
        "{\"early_stopping\": \"sometimes\"}",
    };
    for (int v = 0; v < 3; v++) {
        FILE *f = fopen(path, "w");
        fputs(variants[v], f);
        fclose(f);
        cp_model *m = NULL;
        CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_WEIGHTS));
        if (!m) continue;
        cp_generate_options o;
        if (v == 0) {
            CHECK_OK(cp_generate_options_init(m, &o));
            CHECK(o.num_beams == 4 && o.length_penalty == 0.6 && o.early_stopping == CP_EARLY_STOPPING_TRUE &&
                  o.no_repeat_ngram_size == 3 && o.num_return_sequences == 1, "read from generation_config.json");
        } else if (v == 1) {
            CHECK_OK(cp_generate_options_init(m, &o));
            CHECK(o.num_beams == 3 && o.early_stopping == CP_EARLY_STOPPING_NEVER && o.length_penalty == 1.0, "\"never\"");
        } else {
            CHECK_ERR(cp_generate_options_init(m, &o), "field \"early_stopping\": expected true, false or \"never\"");
        }
        cp_model_free(m);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
    /* BART's forced ids: from config.json without a generation_config.json (transformers makes one from it), from
     * generation_config.json alone when there is one (null: off); one beyond the vocabulary is refused */
    cp_model *m = NULL;
    cp_generate_options o;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/bart/models/bart_default", CP_LOAD_WEIGHTS));
    if (m) {
        CHECK_OK(cp_generate_options_init(m, &o));
        CHECK(o.forced_bos_token_id == CP_TOKEN_NONE && o.forced_eos_token_id == 2, "config.json's forced ids: %d %d",
              o.forced_bos_token_id, o.forced_eos_token_id);
        const int32_t p[2] = {5, 6};
        const int32_t *pp[1] = {p};
        const int64_t len = 2;
        cp_generation g;
        o.forced_bos_token_id = 99;
        CHECK_ERR(cp_model_generate(m, pp, &len, 1, &o, &g), "forced_bos_token_id 99 is outside the vocabulary [0, 99)");
    }
    cp_model_free(m);
    memcpy(tmp, "/tmp/cpeft_beam_XXXXXX", sizeof tmp);
    CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
    snprintf(cmd, sizeof cmd, "cp tests/fixtures/bart/models/bart_default/* %s/ && echo '{\"forced_bos_token_id\": 0, "
             "\"forced_eos_token_id\": null}' > %s/generation_config.json", tmp, tmp);
    CHECK(system(cmd) == 0, "copy the model");
    m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_WEIGHTS));
    if (m) {
        CHECK_OK(cp_generate_options_init(m, &o));
        CHECK(o.forced_bos_token_id == 0 && o.forced_eos_token_id == CP_TOKEN_NONE, "generation_config.json's forced ids: %d %d",
              o.forced_bos_token_id, o.forced_eos_token_id);
    }
    cp_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

/* ---- the CLI ----------------------------------------------------------------------------------- */

/* `cpeft generate --num-beams 4 --num-return-sequences 2 --json` prints what cp_model_generate
 * returns with the same options: 2 lines per prompt, tokens, "sequence" rank and "score". */
TEST(cli_beams) {
    const char *b = getenv("CPEFT_BIN") ? getenv("CPEFT_BIN") : "build/cpeft";
    char out[16384];
    int rc = run_cmdf(out, sizeof out,
                 "%s generate --model " FIX "/models/gpt_neo_tiny --adapter " FIX "/lora/neo_notebook "
                 "--prompt-ids '5 17 42 8' --prompt-ids '61 3 29 77 12 50 9 33 70' --max-new-tokens 10 --num-beams 4 "
                 "--num-return-sequences 2 --length-penalty 0.5 --early-stopping never --no-repeat-ngram-size 2 --json",
                 b);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, FIX "/models/gpt_neo_tiny", CP_LOAD_WEIGHTS));
    if (!m) return;
    CHECK_OK(cp_model_load_adapter(m, FIX "/lora/neo_notebook", "default", 0));
    const int32_t p0[] = {5, 17, 42, 8}, p1[] = {61, 3, 29, 77, 12, 50, 9, 33, 70}, *prompts[2] = {p0, p1};
    const int64_t lens[2] = {4, 9};
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = 10;
    o.num_beams = 4;
    o.num_return_sequences = 2;
    o.length_penalty = 0.5;
    o.early_stopping = CP_EARLY_STOPPING_NEVER;
    o.no_repeat_ngram_size = 2;
    cp_generation g;
    CHECK_OK(cp_model_generate(m, prompts, lens, 2, &o, &g));
    const char *line = out;
    int64_t lines = 0;
    for (int64_t q = 0; q < g.n && line && *line; q++, lines++) {
        const char *e = strchr(line, '\n');
        cJSON *j = cJSON_ParseWithLength(line, e ? (size_t)(e - line) : strlen(line));
        const cJSON *t = j ? cJSON_GetObjectItem(j, "tokens") : NULL, *sc = j ? cJSON_GetObjectItem(j, "score") : NULL,
                    *rank = j ? cJSON_GetObjectItem(j, "sequence") : NULL;
        int ok = t && sc && rank && cJSON_GetArraySize(t) == g.n_tokens[q] && (int64_t)rank->valuedouble == q % 2 + 1 &&
                 fabs(sc->valuedouble - (double)g.sequences_scores[q]) < 1e-6;
        for (int64_t k = 0; ok && k < g.n_tokens[q]; k++) ok = (int32_t)cJSON_GetArrayItem(t, (int)k)->valuedouble == g.tokens[q][k];
        CHECK(ok, "line %lld differs from cp_model_generate: %.*s", (long long)q, (int)(e ? e - line : (long)strlen(line)), line);
        cJSON_Delete(j);
        line = e ? e + 1 : NULL;
    }
    CHECK(lines == 4 && g.n == 4, "%lld lines for 2 prompts × 2 sequences:\n%s", (long long)lines, out);
    cp_generation_free(&g);
    cp_model_free(m);
    /* text output names each sequence and its score */
    rc = run_cmdf(out, sizeof out, "%s generate --model " FIX "/models/gpt2_tiny --prompt-ids '5 17 42 8' --num-beams 3 "
             "--num-return-sequences 3 --max-new-tokens 6", b);
    CHECK(rc == 0 && strstr(out, "### prompt 1: 5 17 42 8\n--- sequence 1, score ") && strstr(out, "--- sequence 3, score "),
          "exit %d: %s", rc, out);
    rc = run_cmdf(out, sizeof out, "%s generate --model " FIX "/models/gpt2_tiny --prompt-ids '5 17 42 8' --num-beams 2 "
             "--num-return-sequences 3", b);
    CHECK(rc == 1 && strstr(out, "`num_return_sequences` (3) has to be smaller or equal to `num_beams` (2)."), "exit %d: %s", rc, out);
    rc = run_cmdf(out, sizeof out, "%s generate --model " FIX "/models/gpt2_tiny --prompt-ids '5 17 42 8' --num-beams 0", b);
    CHECK(rc == 2, "--num-beams 0: exit %d: %s", rc, out);
    rc = run_cmdf(out, sizeof out, "%s generate --model " FIX "/models/gpt2_tiny --prompt-ids '5' --early-stopping maybe", b);
    CHECK(rc == 2 && strstr(out, "--early-stopping must be true, false or never, found \"maybe\""), "exit %d: %s", rc, out);
}

/* `cpeft generate --model T5DIR --prompt TEXT --num-beams 4 --num-return-sequences 2 --length-penalty 0.6 --json`:
 * transformers' sequences, sequences_scores and decoded text. */
TEST(cli_s2s_beams_match_transformers) {
    cJSON *j = read_json(FIX "/beam/s2s.json");
    const cJSON *cli = j ? cJSON_GetObjectItem(j, "cli") : NULL;
    if (!cli) { CHECK(0, "s2s.json has no cli case"); cJSON_Delete(j); return; }
    const char *b = getenv("CPEFT_BIN") ? getenv("CPEFT_BIN") : "build/cpeft";
    const cJSON *row;
    int n = 0;
    double worst = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(cli, "rows")) {
        char out[16384];
        const int rc = run_cmdf(out, sizeof out, "%s generate --model %s --prompt '%s' --max-new-tokens 8 --num-beams 4 "
                           "--num-return-sequences 2 --length-penalty 0.6 --json", b,
                           cJSON_GetObjectItem(cli, "model")->valuestring, cJSON_GetObjectItem(row, "prompt")->valuestring);
        CHECK(rc == 0, "exit %d: %s", rc, out);
        const cJSON *seqs = cJSON_GetObjectItem(row, "sequences"), *scores = cJSON_GetObjectItem(row, "scores"),
                    *texts = cJSON_GetObjectItem(row, "texts");
        const char *line = out;
        for (int q = 0; q < cJSON_GetArraySize(seqs); q++) {
            const char *e = line ? strchr(line, '\n') : NULL;
            cJSON *got = line ? cJSON_ParseWithLength(line, e ? (size_t)(e - line) : strlen(line)) : NULL;
            const cJSON *t = got ? cJSON_GetObjectItem(got, "tokens") : NULL, *sc = got ? cJSON_GetObjectItem(got, "score") : NULL,
                        *tx = got ? cJSON_GetObjectItem(got, "text") : NULL, *want = cJSON_GetArrayItem(seqs, q);
            int ok = t && sc && cJSON_IsString(tx) && cJSON_GetArraySize(t) == cJSON_GetArraySize(want) &&
                     !strcmp(tx->valuestring, cJSON_GetArrayItem(texts, q)->valuestring);
            for (int k = 0; ok && k < cJSON_GetArraySize(want); k++)
                ok = cJSON_GetArrayItem(t, k)->valuedouble == cJSON_GetArrayItem(want, k)->valuedouble;
            const double d = sc ? fabs(sc->valuedouble - cJSON_GetArrayItem(scores, q)->valuedouble) : 1;
            worst = fmax(worst, d);
            CHECK(ok && d <= 1e-4, "\"%s\" sequence %d: %.*s", cJSON_GetObjectItem(row, "prompt")->valuestring, q + 1,
                  (int)(e ? e - line : (long)(line ? strlen(line) : 0)), line ? line : "");
            n += ok;
            cJSON_Delete(got);
            line = e ? e + 1 : NULL;
        }
    }
    printf("  cpeft generate --num-beams 4 on t5 v1.1 text prompts: %d sequences, tokens and text identical to "
           "transformers', score max diff %.2e\n", n, worst);
    CHECK(n == 4, "%d of 4 sequences identical", n);
    cJSON_Delete(j);
}

int main(void) {
    RUN(beam_matches_transformers);
    RUN(s2s_beam_matches_transformers);
    RUN(kv_cache_gather_and_reorder);
    RUN(no_repeat_ngram);
    RUN(bad_beam_options);
    RUN(generation_config_defaults);
    RUN(cli_beams);
    RUN(cli_s2s_beams_match_transformers);
    return test_summary();
}
