/*
 * test_generate.c — generation against transformers' generate() and PEFT's PeftModel.generate():
 *   - greedy output token-identical to the fixtures of tests/reference/make_generate_fixtures.py
 *     (GPT-Neo and GPT-2, one prompt and left-padded batches, an unmerged and a merged LoRA adapter,
 *     a mixed-adapter batch with "__base__", eos lists, repetition penalty) and of the Llama-family
 *     oracle (tests/fixtures/llama/generate.json: Llama, Mistral, Qwen2, dynamic RoPE, LoRA), each
 *     run with the KV cache and by recomputing the whole sequence every step;
 *   - the cache against recomputation: logits step by step, and a prefill split in two chunks;
 *   - the cached attention kernel against its reference with past keys, windows, padding, GQA;
 *     the few-row matmul kernels of a decoding step against sgemm;
 *   - sampling reproducible from the seed; bad options, unknown adapters, long prompts;
 *   - `cpeft generate` end to end: token-id prompts, text through a character tokenizer (plain,
 *     Alpaca template truncated to the positions, a stop string), streaming, JSON, errors.
 */
#include "test.h"
#include "run_cmd.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "models/kv_cache.h"
#include "io/json.h"
#include "kernels/skinny.h"
#include "models/model.h"
#include "nn/attention.h"
#include "peft/adapter_io.h"

#include <cblas.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX "tests/fixtures"
#define GEN FIX "/generate"

/* ---- helpers ----------------------------------------------------------------------------------- */

static cJSON *read_json(const char *path) {
    cJSON *j = NULL;
    if (cp_json_read_file(path, &j) != CP_OK) CHECK(0, "%s: %s", path, cp_last_error());
    return j;
}

static int64_t json_len(const cJSON *a) { return cJSON_GetArraySize(a); }

static int32_t *json_ids(const cJSON *a, int64_t *n) {
    *n = json_len(a);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * sizeof *ids);
    int64_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) ids[k++] = (int32_t)it->valuedouble;
    return ids;
}

static cp_model *load_model(const char *dir) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, dir, CP_LOAD_WEIGHTS));
    return m;
}

/* Greedy options with the fixture's eos ids (a number, a list or null) and pad id. */
static cp_generate_options greedy_options(cp_model *m, int64_t max_new, const cJSON *eos, int32_t pad) {
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = max_new;
    o.n_eos = 0;
    if (cJSON_IsNumber(eos)) o.eos_token_ids[o.n_eos++] = (int32_t)eos->valuedouble;
    const cJSON *it;
    if (cJSON_IsArray(eos)) cJSON_ArrayForEach(it, eos) o.eos_token_ids[o.n_eos++] = (int32_t)it->valuedouble;
    o.pad_token_id = pad;
    return o;
}

/* Compares a generated row with generate()'s row of new tokens (pads after an eos included).
 * Returns the number of tokens compared. */
static int64_t check_row(const char *label, int64_t row, const cp_generation *g, const int32_t *want, int64_t n_want,
                         const cp_generate_options *o) {
    int64_t stop = n_want; /* generate() ends the row after its first eos */
    for (int64_t t = 0; t < n_want && stop == n_want; t++)
        for (int i = 0; i < o->n_eos; i++)
            if (want[t] == o->eos_token_ids[i]) stop = t + 1;
    int same = g->n_tokens[row] == stop;
    for (int64_t t = 0; same && t < stop; t++) same = g->tokens[row][t] == want[t];
    for (int64_t t = stop; t < n_want; t++) CHECK(want[t] == o->pad_token_id, "%s row %lld: a token after eos", label, (long long)row);
    if (!same) {
        char got[1024] = "", exp[1024] = "";
        size_t a = 0, b = 0;
        for (int64_t t = 0; t < g->n_tokens[row] && a < 1000; t++) a += (size_t)snprintf(got + a, sizeof got - a, " %d", g->tokens[row][t]);
        for (int64_t t = 0; t < stop && b < 1000; t++) b += (size_t)snprintf(exp + b, sizeof exp - b, " %d", want[t]);
        CHECK(0, "%s row %lld: generated%s\n      transformers%s", label, (long long)row, got, exp);
    }
    int ends_in_eos = 0;
    for (int i = 0; stop && i < o->n_eos; i++) ends_in_eos |= want[stop - 1] == o->eos_token_ids[i];
    const cp_finish_reason finish = ends_in_eos ? CP_FINISH_EOS : CP_FINISH_LENGTH;
    CHECK(!same || g->finish[row] == finish, "%s row %lld: finish reason %d, expected %d", label, (long long)row,
          g->finish[row], finish);
    return stop;
}

/* ---- fixtures of make_generate_fixtures.py ----------------------------------------------------- */

static void run_gpt_case(const cJSON *c, int *n_cases, int64_t *n_tokens) {
    const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
    char dir[512];
    snprintf(dir, sizeof dir, FIX "/%s", cJSON_GetObjectItem(c, "model")->valuestring);
    cp_model *m = load_model(dir);
    if (!m) return;
    const cJSON *ad, *adapters = cJSON_GetObjectItem(c, "adapters");
    cJSON_ArrayForEach(ad, adapters) {
        snprintf(dir, sizeof dir, FIX "/%s", cJSON_GetObjectItem(ad, "dir")->valuestring);
        CHECK_OK(cp_model_load_adapter(m, dir, cJSON_GetObjectItem(ad, "name")->valuestring, 0));
    }
    const cJSON *active = cJSON_GetObjectItem(c, "active");
    if (cJSON_IsString(active)) {
        const char *names[1] = {active->valuestring};
        CHECK_OK(cp_model_set_adapters(m, names, 1));
    }
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "merged"))) CHECK_OK(cp_model_merge_adapters(m));
    const cJSON *prompts = cJSON_GetObjectItem(c, "prompts"), *seqs = cJSON_GetObjectItem(c, "sequences");
    const int64_t n = json_len(prompts);
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens);
    for (int64_t r = 0; r < n; r++) ids[r] = json_ids(cJSON_GetArrayItem(prompts, (int)r), &lens[r]);
    cp_generate_options o = greedy_options(m, (int64_t)cJSON_GetObjectItem(c, "max_new_tokens")->valuedouble,
                                           cJSON_GetObjectItem(c, "eos_token_id"),
                                           (int32_t)cJSON_GetObjectItem(c, "pad_token_id")->valuedouble);
    o.repetition_penalty = cJSON_GetObjectItem(c, "repetition_penalty")->valuedouble;
    const cJSON *an = cJSON_GetObjectItem(c, "adapter_names");
    const char **names = NULL;
    if (cJSON_IsArray(an)) {
        names = calloc((size_t)n, sizeof *names);
        for (int64_t r = 0; r < n; r++) names[r] = cJSON_GetArrayItem(an, (int)r)->valuestring;
        o.adapter_names = names;
    }
    int64_t compared = 0;
    for (int no_cache = 0; no_cache <= 1; no_cache++) {
        char label[128];
        snprintf(label, sizeof label, "%s%s", name, no_cache ? " (no cache)" : "");
        o.no_cache = no_cache;
        cp_generation g;
        cp_status st = cp_model_generate(m, (const int32_t *const *)ids, lens, n, &o, &g);
        CHECK(st == CP_OK, "%s: %s", label, cp_last_error());
        if (st != CP_OK) continue;
        for (int64_t r = 0; r < n; r++) {
            int64_t nw;
            int32_t *want = json_ids(cJSON_GetArrayItem(seqs, (int)r), &nw);
            compared += check_row(label, r, &g, want, nw, &o);
            free(want);
        }
        cp_generation_free(&g);
    }
    printf("  %-28s %lld rows, %3lld tokens as transformers (cached and recomputed), min top-2 margin %.1e\n", name,
           (long long)n, (long long)compared / 2, cJSON_GetObjectItem(c, "min_margin")->valuedouble);
    *n_tokens += compared / 2;
    (*n_cases)++;
    for (int64_t r = 0; r < n; r++) free(ids[r]);
    free(ids);
    free(lens);
    free(names);
    cp_model_free(m);
}

TEST(greedy_matches_transformers_gpt) {
    cJSON *j = read_json(GEN "/generate.json");
    if (!j) return;
    int n_cases = 0;
    int64_t n_tokens = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) run_gpt_case(c, &n_cases, &n_tokens);
    printf("  %d cases, %lld tokens identical to generate() / PeftModel.generate()\n", n_cases, (long long)n_tokens);
    CHECK(n_cases >= 20, "only %d cases", n_cases);
    cJSON_Delete(j);
}

/* ---- the Llama-family oracle's fixture ---------------------------------------------------------- */

/* Runs the rows of `batch` (input_ids left-padded, attention_mask) and compares them with `want`
 * (full sequences: padded prompt + new tokens). */
static int64_t run_full_sequences(cp_model *m, const char *label, const cJSON *ids_j, const cJSON *mask_j, const cJSON *want_j,
                                  int64_t max_new, int no_cache) {
    const int64_t n = json_len(ids_j);
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens), T = 0, compared = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t t, nm;
        int32_t *row = json_ids(cJSON_GetArrayItem(ids_j, (int)r), &t);
        int32_t *mask = json_ids(cJSON_GetArrayItem(mask_j, (int)r), &nm);
        T = t;
        int64_t lead = 0;
        while (lead < t && !mask[lead]) lead++;
        lens[r] = t - lead;
        ids[r] = malloc((size_t)lens[r] * sizeof *ids[r]);
        memcpy(ids[r], row + lead, (size_t)lens[r] * sizeof *row);
        free(row);
        free(mask);
    }
    cp_generate_options o = greedy_options(m, max_new, NULL, 0);
    o.no_cache = no_cache;
    cp_generation g;
    cp_set_quiet(1); /* llama_dynamic_rope runs past its positions on purpose */
    cp_status st = cp_model_generate(m, (const int32_t *const *)ids, lens, n, &o, &g);
    cp_set_quiet(0);
    CHECK(st == CP_OK, "%s: %s", label, cp_last_error());
    for (int64_t r = 0; st == CP_OK && r < n; r++) {
        int64_t nw;
        int32_t *want = json_ids(cJSON_GetArrayItem(want_j, (int)r), &nw);
        compared += check_row(label, r, &g, want + T, nw - T, &o);
        free(want);
    }
    if (st == CP_OK) cp_generation_free(&g);
    for (int64_t r = 0; r < n; r++) free(ids[r]);
    free(ids);
    free(lens);
    return compared;
}

TEST(greedy_matches_transformers_llama_family) {
    const char *path = FIX "/llama/generate.json";
    if (access(path, R_OK) != 0) {
        printf("  %s absent: skipped\n", path);
        return;
    }
    cJSON *j = read_json(path);
    if (!j) return;
    int n_entries = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "entries")) {
        char dir[512], label[160];
        snprintf(dir, sizeof dir, FIX "/%s", cJSON_GetObjectItem(e, "model_dir")->valuestring);
        cp_model *m = load_model(dir);
        if (!m) continue;
        const cJSON *ad = cJSON_GetObjectItem(e, "adapter_dir");
        if (cJSON_IsString(ad)) {
            snprintf(dir, sizeof dir, FIX "/%s", ad->valuestring);
            CHECK_OK(cp_model_load_adapter(m, dir, "default", 0));
        }
        if (cJSON_IsTrue(cJSON_GetObjectItem(e, "merged"))) CHECK_OK(cp_model_merge_adapters(m));
        const int64_t max_new = (int64_t)cJSON_GetObjectItem(e, "max_new_tokens")->valuedouble;
        const cJSON *b = cJSON_GetObjectItem(e, "batch");
        snprintf(label, sizeof label, "%s batch", e->string);
        int64_t k = run_full_sequences(m, label, cJSON_GetObjectItem(b, "input_ids"), cJSON_GetObjectItem(b, "attention_mask"),
                                       cJSON_GetObjectItem(b, "output_ids"), max_new, 0);
        snprintf(label, sizeof label, "%s batch (no cache)", e->string);
        k += run_full_sequences(m, label, cJSON_GetObjectItem(b, "input_ids"), cJSON_GetObjectItem(b, "attention_mask"),
                                cJSON_GetObjectItem(b, "no_cache_output_ids"), max_new, 1);
        const cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItem(e, "single")) {
            snprintf(label, sizeof label, "%s single", e->string);
            k += run_full_sequences(m, label, cJSON_GetObjectItem(s, "input_ids"), cJSON_GetObjectItem(s, "attention_mask"),
                                    cJSON_GetObjectItem(s, "output_ids"), max_new, 0);
        }
        printf("  %-28s %3lld tokens as transformers (batch cached / recomputed, single prompts), margin %.1e\n",
               e->string, (long long)k, cJSON_GetObjectItem(b, "min_top1_margin")->valuedouble);
        n_entries++;
        cp_model_free(m);
    }
    CHECK(n_entries >= 11, "only %d entries", n_entries);
    cJSON_Delete(j);
}

/* ---- the cache against recomputation ----------------------------------------------------------- */

/* Prefill of a left-padded batch (in `chunks` pieces), then decode steps, each step's logits compared
 * with a full forward over the whole sequence. Returns the largest |difference|. */
static double cache_vs_full(cp_model *m, int chunks, int steps) {
    const int64_t B = 3, T0 = 9, V = cp_model_vocab_size(m), cap = T0 + steps;
    const int64_t lens[3] = {9, 4, 6};
    int64_t *ids = calloc((size_t)(B * cap), sizeof *ids), *mask = calloc((size_t)(B * cap), sizeof *mask);
    int64_t *pos = calloc((size_t)(B * cap), sizeof *pos);
    int64_t *cids = calloc((size_t)(B * cap), sizeof *cids), *cmask = calloc((size_t)(B * cap), sizeof *cmask),
            *cpos = calloc((size_t)(B * cap), sizeof *cpos);
    float *a = malloc((size_t)(B * V) * sizeof *a), *b = malloc((size_t)(B * V) * sizeof *b);
    cp_rng rng;
    cp_rng_seed(&rng, 7);
    for (int64_t r = 0; r < B; r++)
        for (int64_t t = 0; t < T0; t++) {
            const int64_t lead = T0 - lens[r], i = r * cap + t;
            mask[i] = t >= lead;
            ids[i] = mask[i] ? (int64_t)cp_rng_below(&rng, (uint64_t)V) : 0;
            pos[i] = mask[i] ? t - lead : 0;
        }
    cp_kv_cache kv;
    const cp_model_config *c = &m->config;
    CHECK_OK(cp_kv_cache_init(&kv, c->num_layers, B, cap, (c->num_kv_heads ? c->num_kv_heads : c->num_heads) * c->head_dim));
    double worst = 0;
    int64_t done = 0;
    /* columns [c0, c1) of the (B, cap) arrays as a contiguous batch */
#define COLS(c0, c1)                                                                                        \
    for (int64_t r = 0; r < B; r++) {                                                                       \
        memcpy(cids + r * ((c1) - (c0)), ids + r * cap + (c0), (size_t)((c1) - (c0)) * sizeof *ids);        \
        memcpy(cmask + r * ((c1) - (c0)), mask + r * cap + (c0), (size_t)((c1) - (c0)) * sizeof *ids);      \
        memcpy(cpos + r * ((c1) - (c0)), pos + r * cap + (c0), (size_t)((c1) - (c0)) * sizeof *ids);        \
    }
    for (int k = 0; k < chunks; k++) {
        const int64_t c1 = k == chunks - 1 ? T0 : (k + 1) * T0 / chunks;
        COLS(done, c1);
        cp_batch bt = {.B = B, .T = c1 - done, .input_ids = cids, .attention_mask = cmask, .position_ids = cpos};
        CHECK_OK(cp_model_forward_cached(m, &bt, &kv, a, NULL));
        done = c1;
    }
    for (int s = 0; s <= steps; s++) {
        COLS(0, done);
        cp_batch full = {.B = B, .T = done, .input_ids = cids, .attention_mask = cmask, .position_ids = cpos};
        CHECK_OK(cp_model_forward_last(m, &full, b));
        double d = test_max_abs_diff(a, b, (size_t)(B * V));
        if (d > worst) worst = d;
        if (s == steps) break;
        for (int64_t r = 0; r < B; r++) { /* the argmax becomes the next column */
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (a[r * V + v] > a[r * V + best]) best = v;
            ids[r * cap + done] = best;
            mask[r * cap + done] = 1;
            pos[r * cap + done] = pos[r * cap + done - 1] + 1;
        }
        COLS(done, done + 1);
        cp_batch step = {.B = B, .T = 1, .input_ids = cids, .attention_mask = cmask, .position_ids = cpos};
        CHECK_OK(cp_model_forward_cached(m, &step, &kv, a, NULL));
        done++;
    }
#undef COLS
    cp_kv_cache_free(&kv);
    free(ids); free(mask); free(pos); free(cids); free(cmask); free(cpos); free(a); free(b);
    return worst;
}

TEST(cache_equals_recomputation) {
    const char *models[] = {FIX "/models/gpt_neo_tiny", FIX "/models/gpt_neo_odd", FIX "/models/gpt2_tiny",
                            FIX "/models/gpt2_odd", FIX "/llama/models/llama_tiny", FIX "/llama/models/mistral_tiny",
                            FIX "/llama/models/qwen2_tiny", FIX "/llama/models/llama_head_dim", FIX "/llama/models/llama_bias",
                            FIX "/llama/models/qwen2_sliding", FIX "/llama/models/qwen2_layer_types",
                            FIX "/llama/models/qwen3_tiny", FIX "/llama/models/gemma_tiny"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        if (access(models[i], R_OK) != 0) { printf("  %s absent: skipped\n", models[i]); continue; }
        cp_model *m = load_model(models[i]);
        if (!m) continue;
        double one = cache_vs_full(m, 1, 12), three = cache_vs_full(m, 3, 4);
        printf("  %-40s cached logits vs full recomputation over 12 steps: max |diff| %.2e; prefill in 3 chunks %.2e\n",
               models[i], one, three);
        CHECK(one < 1e-4 && three < 1e-4, "%s: %.3e / %.3e", models[i], one, three);
        cp_model_free(m);
    }
}

/* The cached attention kernel (T queries after `past` keys in a larger buffer) against the reference. */
TEST(attention_with_past_matches_reference) {
    const struct { int64_t B, T, past, NH, NKV, hs, window; int pad; cp_attn_empty_row empty; } cases[] = {
        {2, 1, 9, 4, 0, 8, 0, 1, CP_ATTN_EMPTY_CAUSAL}, {2, 1, 9, 4, 2, 8, 4, 1, CP_ATTN_EMPTY_ALL},
        {3, 5, 70, 2, 1, 16, 0, 1, CP_ATTN_EMPTY_ALL},  {1, 70, 3, 3, 0, 8, 5, 0, CP_ATTN_EMPTY_CAUSAL},
        {2, 4, 0, 2, 0, 8, 3, 1, CP_ATTN_EMPTY_CAUSAL}, {2, 1, 130, 4, 4, 8, 64, 1, CP_ATTN_EMPTY_ALL},
    };
    double worst = 0;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int64_t B = cases[k].B, T = cases[k].T, P = cases[k].past, NH = cases[k].NH, hs = cases[k].hs;
        const int64_t NKV = cases[k].NKV ? cases[k].NKV : NH, R = P + T + 3; /* spare columns, never read */
        float *q = malloc((size_t)(B * T * NH * hs) * sizeof *q), *kk = malloc((size_t)(B * R * NKV * hs) * sizeof *kk);
        float *v = malloc((size_t)(B * R * NKV * hs) * sizeof *v);
        float *o1 = malloc((size_t)(B * T * NH * hs) * sizeof *o1), *o2 = malloc((size_t)(B * T * NH * hs) * sizeof *o2);
        int64_t *mask = malloc((size_t)(B * R) * sizeof *mask);
        cp_rng rng;
        cp_rng_seed(&rng, 100 + k);
        for (int64_t i = 0; i < B * T * NH * hs; i++) q[i] = cp_rng_normal(&rng);
        for (int64_t i = 0; i < B * R * NKV * hs; i++) { kk[i] = cp_rng_normal(&rng); v[i] = cp_rng_normal(&rng); }
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < R; j++) mask[b * R + j] = !cases[k].pad || j >= 2 * b + 1 || j >= P;
        cp_attention_args a = {.B = B, .T = T, .NH = NH, .NKV = cases[k].NKV, .hs = hs, .q = q, .k = kk, .v = v,
                               .q_stride = NH * hs, .k_stride = NKV * hs, .v_stride = NKV * hs, .past = P, .kv_rows = R,
                               .scale = 0.3f, .window = cases[k].window, .key_mask = mask, .empty_row = cases[k].empty};
        cp_arena ar;
        cp_arena_init(&ar);
        a.out = o1;
        CHECK_OK(cp_attention_forward(&a, &ar));
        a.out = o2;
        CHECK_OK(cp_attention_forward_ref(&a, &ar));
        double d = test_max_abs_diff(o1, o2, (size_t)(B * T * NH * hs));
        if (d > worst) worst = d;
        CHECK(d < 1e-5, "case %zu: %.3e", k, d);
        cp_arena_free(&ar);
        free(q); free(kk); free(v); free(o1); free(o2); free(mask);
    }
    printf("  6 shapes (decode, chunks, windows, padding, GQA): fast vs reference max |diff| %.2e\n", worst);
}

/* The few-row products of a decoding step (kernels/skinny.c) against sgemm, the reference. */
TEST(skinny_kernels_match_blas) {
    const int64_t shapes[][2] = {{768, 2304}, {37, 101}, {64, 7}, {3, 1029}};
    double worst = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        const int64_t C = shapes[k][0], OC = shapes[k][1];
        for (int64_t N = 1; N <= 2 * CP_SKINNY_MAX_ROWS + 1; N += 3)
            for (int acc = 0; acc <= 1; acc++)
                for (int nn = 0; nn <= 1; nn++) {
                    float *x = malloc((size_t)(N * C) * sizeof *x), *w = malloc((size_t)(C * OC) * sizeof *w);
                    float *a = malloc((size_t)(N * OC) * sizeof *a), *b = malloc((size_t)(N * OC) * sizeof *b);
                    cp_rng rng;
                    cp_rng_seed(&rng, (uint64_t)(k * 1000 + N * 10 + acc * 2 + nn));
                    for (int64_t i = 0; i < N * C; i++) x[i] = cp_rng_normal(&rng);
                    for (int64_t i = 0; i < C * OC; i++) w[i] = cp_rng_normal(&rng);
                    for (int64_t i = 0; i < N * OC; i++) a[i] = b[i] = cp_rng_normal(&rng);
                    if (nn) cp_skinny_nn(a, x, w, N, C, OC, acc);
                    else cp_skinny_nt(a, x, w, N, C, OC, acc);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, nn ? CblasNoTrans : CblasTrans, (int)N, (int)OC, (int)C, 1.0f, x,
                                (int)C, w, nn ? (int)OC : (int)C, acc ? 1.0f : 0.0f, b, (int)OC);
                    double d = test_max_abs_diff(a, b, (size_t)(N * OC)) / sqrt((double)C);
                    if (d > worst) worst = d;
                    CHECK(d < 1e-5, "%s N=%lld C=%lld OC=%lld acc=%d: %.3e", nn ? "nn" : "nt", (long long)N, (long long)C,
                          (long long)OC, acc, d);
                    free(x); free(w); free(a); free(b);
                }
    }
    printf("  skinny NT / NN (1..17 rows, 4 shapes, accumulate or not) vs sgemm: max |diff|/sqrt(C) %.1e\n", worst);
}

/* ---- sampling ---------------------------------------------------------------------------------- */

static void sample_once(cp_model *m, uint64_t seed, const char *const *names, int64_t n, cp_generation *g) {
    static const int32_t p0[] = {5, 17, 42, 8}, p1[] = {61, 3, 29, 77, 12, 50, 9, 33, 70}, p2[] = {11, 88, 2};
    const int32_t *prompts[] = {p0, p1, p2};
    const int64_t lens[] = {4, 9, 3};
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = 16;
    o.do_sample = 1;
    o.temperature = 1.3;
    o.top_k = 30;
    o.top_p = 0.95;
    o.repetition_penalty = 1.1;
    o.seed = seed;
    o.n_eos = 0;
    o.adapter_names = names;
    CHECK_OK(cp_model_generate(m, prompts, lens, n, &o, g));
}

static int same_generation(const cp_generation *a, const cp_generation *b) {
    if (a->n != b->n) return 0;
    for (int64_t r = 0; r < a->n; r++) {
        if (a->n_tokens[r] != b->n_tokens[r]) return 0;
        for (int64_t t = 0; t < a->n_tokens[r]; t++)
            if (a->tokens[r][t] != b->tokens[r][t]) return 0;
    }
    return 1;
}

TEST(sampling_reproducible_from_seed) {
    cp_model *m = load_model(FIX "/models/gpt_neo_tiny");
    if (!m) return;
    cp_generation a, b, c;
    sample_once(m, 42, NULL, 3, &a);
    sample_once(m, 42, NULL, 3, &b);
    sample_once(m, 43, NULL, 3, &c);
    CHECK(same_generation(&a, &b), "the same seed gave different tokens");
    CHECK(!same_generation(&a, &c), "seeds 42 and 43 gave the same 48 sampled tokens");
    printf("  seed 42 twice: identical; seed 43: different (row 0: %d %d %d ... vs %d %d %d ...)\n", a.tokens[0][0],
           a.tokens[0][1], a.tokens[0][2], c.tokens[0][0], c.tokens[0][1], c.tokens[0][2]);
    cp_generation_free(&a);
    cp_generation_free(&b);
    cp_generation_free(&c);
    cp_model_free(m);
}

/* ---- bad input ---------------------------------------------------------------------------------- */

TEST(bad_input_is_reported) {
    cp_model *m = load_model(FIX "/models/gpt_neo_tiny");
    if (!m) return;
    static const int32_t p0[] = {5, 17, 42, 8}, bad[] = {5, 97};
    const int32_t *prompts[] = {p0, p0};
    const int64_t lens[] = {4, 4};
    cp_generation g;
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    CHECK(o.n_eos == 1 && o.eos_token_ids[0] == 96 && o.pad_token_id == 96 && o.max_new_tokens == 64 && o.top_k == 50,
          "defaults from generation_config.json: eos %d, pad %d", o.eos_token_ids[0], o.pad_token_id);
    o.do_sample = 1;
    o.top_p = 1.5;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "`top_p` has to be a float in (0, 1]");
    o.top_p = 0;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "`top_p`");
    o.top_p = 1;
    o.temperature = 0;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "`temperature` (=0) has to be a strictly positive float");
    o.temperature = -1;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "strictly positive");
    o.do_sample = 0; /* greedy ignores the sampling settings, as transformers does */
    o.max_new_tokens = 2;
    CHECK_OK(cp_model_generate(m, prompts, lens, 2, &o, &g));
    cp_generation_free(&g);
    o.repetition_penalty = 0;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "`repetition_penalty`");
    o.repetition_penalty = 1;
    const int32_t *badp[] = {bad};
    const int64_t badlen[] = {2}, zero[] = {0};
    CHECK_ERR(cp_model_generate(m, badp, badlen, 1, &o, &g), "prompt 1: token id 97 at position 1 is outside the vocabulary");
    CHECK_ERR(cp_model_generate(m, badp, zero, 1, &o, &g), "prompt 1 is empty");
    const char *stops[] = {"x"};
    o.stop_strings = stops;
    o.n_stop_strings = 1;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "stop strings need a tokenizer");
    o.n_stop_strings = 0;

    /* adapter names: PEFT's errors */
    const char *names[] = {"a", "c"}, *names2[] = {"zz", "__base__"};
    o.adapter_names = names;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "adapter_names given, but the model has no adapters");
    CHECK_OK(cp_model_load_adapter(m, FIX "/lora/neo_multi/adapters/a", "a", 0));
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "Trying to infer with non-existing adapter(s): c");
    o.adapter_names = names2;
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g), "Trying to infer with non-existing adapter(s): zz");
    o.adapter_names = names;
    names[1] = "__base__";
    CHECK_OK(cp_model_merge_adapters(m));
    CHECK_ERR(cp_model_generate(m, prompts, lens, 2, &o, &g),
              "Cannot pass `adapter_names` when there are merged adapters, please call `unmerge_adapter` first.");
    CHECK_OK(cp_model_unmerge_adapters(m));
    CHECK_OK(cp_model_generate(m, prompts, lens, 2, &o, &g));
    cp_generation_free(&g);
    o.adapter_names = NULL;

    /* a prompt longer than the 64 positions: its last 63 tokens, then one more token fits */
    int32_t *longp = malloc(100 * sizeof *longp);
    for (int i = 0; i < 100; i++) longp[i] = (i * 7) % 90;
    const int32_t *lp[] = {longp + 37, longp};
    const int64_t ll[] = {63, 100};
    o.max_new_tokens = 10;
    cp_set_quiet(1);
    cp_status st = cp_model_generate(m, lp, ll, 2, &o, &g);
    cp_set_quiet(0);
    CHECK(st == CP_OK, "long prompt: %s", cp_last_error());
    if (st == CP_OK) {
        CHECK(g.n_tokens[1] == 2 && g.n_tokens[0] == 2, "long prompt: %lld / %lld tokens", (long long)g.n_tokens[0],
              (long long)g.n_tokens[1]);
        CHECK(g.n_tokens[0] == g.n_tokens[1] && !memcmp(g.tokens[0], g.tokens[1], 2 * sizeof(int32_t)),
              "a truncated prompt generates as its last 63 tokens do");
        CHECK(g.finish[0] == CP_FINISH_LENGTH, "finish %d", g.finish[0]);
        cp_generation_free(&g);
    }
    free(longp);
    cp_model_free(m);
}

/* ---- the CLI ----------------------------------------------------------------------------------- */

static const char *bin(void) {
    const char *b = getenv("CPEFT_BIN");
    return b ? b : "build/cpeft";
}

/* The "tokens" of JSON line `line` (0-based) of out equal want[0..n). */
static int json_tokens_equal(const char *out, int line, const int32_t *want, int64_t n, char *text_out, size_t text_cap) {
    const char *s = out;
    for (int i = 0; i < line && s; i++) { s = strchr(s, '\n'); if (s) s++; }
    if (!s) return 0;
    const char *e = strchr(s, '\n');
    cJSON *j = cJSON_ParseWithLength(s, e ? (size_t)(e - s) : strlen(s));
    const cJSON *t = j ? cJSON_GetObjectItem(j, "tokens") : NULL, *text = j ? cJSON_GetObjectItem(j, "text") : NULL;
    int ok = t && json_len(t) == n;
    for (int64_t i = 0; ok && i < n; i++) ok = (int32_t)cJSON_GetArrayItem(t, (int)i)->valuedouble == want[i];
    if (text_out) snprintf(text_out, text_cap, "%s", text && cJSON_IsString(text) ? text->valuestring : "");
    cJSON_Delete(j);
    return ok;
}

TEST(cli_token_prompts) {
    char out[8192];
    const char *model = FIX "/models/gpt_neo_tiny", *A = FIX "/lora/neo_multi/adapters";
    /* the mixed batch of the fixture, through the program */
    int rc = run_cmd_fmt(out, sizeof out, 0,
                 "%s generate --model %s --adapter %s/a:a --adapter %s/b:b --adapter-names a,__base__,b,a "
                 "--prompt-ids '5 17 42 8' --prompt-ids '61 3 29 77 12 50 9 33 70' --prompt-ids '11 88 2 40 23 64' "
                 "--prompt-ids '61 3 29 77 12 50 9 33 70' --max-new-tokens 20 --json --batch-size 3",
                 bin(), model, A, A);
    CHECK(rc == 0, "exit %d: %s", rc, out);
    static const int32_t row0[] = {37, 54, 54, 11, 84, 42, 12, 27, 42, 12, 27, 27, 68, 10, 42, 4, 4, 85, 27, 27};
    static const int32_t row2[] = {12, 86, 86, 86, 86, 8, 8, 8, 42, 79, 6, 6, 2, 42, 42, 42, 96};
    static const int32_t row3[] = {11, 11, 43, 36, 42, 33, 52, 32, 64, 4, 4, 4, 87, 52, 42, 40, 87, 42, 44, 44};
    CHECK(json_tokens_equal(out, 0, row0, 20, NULL, 0) && json_tokens_equal(out, 2, row2, 17, NULL, 0) &&
              json_tokens_equal(out, 3, row3, 20, NULL, 0),
          "mixed batch over two batches:\n%s", out);
    CHECK(strstr(out, "\"finish\":\"eos\"") && strstr(out, "\"text\":null"), "finish/text fields: %s", out);
    /* a single prompt streams its ids (no tokenizer) on one line */
    rc = run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --prompt-ids '61 3 29 77 12 50 9 33 70' --max-new-tokens 24",
             bin(), model);
    CHECK(rc == 0 && !strcmp(out, "44 33 44 68 29 69 61 68 52 10 86 64 42 92 96\n"), "exit %d: %s", rc, out);
    /* usage and input errors */
    struct { const char *args; int rc; const char *msg; } bad[] = {
        {"--prompt-ids '1 2' --top-p 1.5", 2, "--top-p must be in (0, 1]"},
        {"--prompt-ids '1 2' --do-sample --temperature 0", 2, "--temperature must be > 0 when sampling"},
        {"--prompt-ids '1 2' --repetition-penalty -1", 2, "--repetition-penalty must be > 0"},
        {"--prompt-ids '1 2' --template chatml", 2, "unknown template"},
        {"--prompt-ids '1 200'", 1, "token id 200 is outside the vocabulary [0, 97)"},
        {"--prompt hello", 1, "text prompts and stop strings need the model's tokenizer"},
        {"--prompt-ids '1 2' --prompt-ids '3' --adapter " FIX "/lora/neo_multi/adapters/a:a --adapter-names a,b", 1,
         "Trying to infer with non-existing adapter(s): b"},
        {"--prompt-ids '1 2' --adapter " FIX "/lora/neo_multi/adapters/a:a --adapter-names a,a", 1,
         "Length of `adapter_names` should be the same as the number of inputs, but got 2 and 1 respectively."},
        {"", 2, "needs --model and exactly one of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rc = run_cmd_fmt(out, sizeof out, 1, "%s generate --model %s %s", bin(), model, bad[i].args);
        CHECK(rc == bad[i].rc && strstr(out, bad[i].msg), "%s: exit %d (want %d): %s", bad[i].args, rc, bad[i].rc, out);
    }
    printf("  mixed-adapter batch, streaming and %zu bad inputs through `cpeft generate`\n", sizeof bad / sizeof *bad);
}

/* A model directory of gpt_neo_tiny's files and the character tokenizer (symbolic links). */
static int char_model_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/cpeft-generate-XXXXXX");
    if (!mkdtemp(dir)) return 0;
    char cwd[1024], src[2048], dst[2048];
    if (!getcwd(cwd, sizeof cwd)) return 0;
    const char *files[] = {"models/gpt_neo_tiny/config.json", "models/gpt_neo_tiny/generation_config.json",
                           "models/gpt_neo_tiny/model.safetensors", "generate/char_tokenizer/tokenizer.json",
                           "generate/char_tokenizer/tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(src, sizeof src, "%s/" FIX "/%s", cwd, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, strrchr(files[i], '/') + 1);
        if (symlink(src, dst) != 0) return 0;
    }
    return 1;
}

static void remove_char_model_dir(const char *dir) {
    const char *names[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    char p[2048];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* PEFT's mixed batch with an Embedding adapter (lora_embedding_A/B on wte, plus q_proj): each row must
 * generate what the row's adapter alone generates, and the adapter must change the output at all. */
TEST(mixed_batch_with_embedding_adapter) {
    static char mixed[4096], alone[4096], base[4096], plain[4096];
    const char *model = FIX "/models/gpt_neo_tiny", *E = FIX "/lora/neo_embedding";
    const char *p0 = "--prompt-ids '5 17 42 8'", *p1 = "--prompt-ids '61 3 29 77 12 50 9 33 70'",
               *p2 = "--prompt-ids '11 88 2 40 23 64'";
    int rc = run_cmd_fmt(mixed, sizeof mixed, 0,
                 "%s generate --model %s --adapter %s:e --adapter-names e,__base__,e %s %s %s --max-new-tokens 16 --json",
                 bin(), model, E, p0, p1, p2);
    CHECK(rc == 0, "exit %d: %s", rc, mixed);
    rc = run_cmd_fmt(alone, sizeof alone, 0, "%s generate --model %s --adapter %s:e %s %s --max-new-tokens 16 --json", bin(),
             model, E, p0, p2);
    CHECK(rc == 0, "exit %d: %s", rc, alone);
    rc = run_cmd_fmt(base, sizeof base, 0, "%s generate --model %s %s --max-new-tokens 16 --json", bin(), model, p1);
    CHECK(rc == 0, "exit %d: %s", rc, base);
    rc = run_cmd_fmt(plain, sizeof plain, 0, "%s generate --model %s %s %s --max-new-tokens 16 --json", bin(), model, p0, p2);
    CHECK(rc == 0, "exit %d: %s", rc, plain);
    /* mixed = alone row 0, base row 0, alone row 1, line by line */
    static char want[3 * sizeof mixed];
    const char *a1 = strchr(alone, '\n');
    CHECK(a1 != NULL, "two lines expected: %s", alone);
    snprintf(want, sizeof want, "%.*s%s%s", (int)(a1 + 1 - alone), alone, base, a1 + 1);
    CHECK(!strcmp(mixed, want), "mixed batch:\n%s\nrows alone:\n%s", mixed, want);
    CHECK(strcmp(alone, plain) != 0, "the embedding adapter changed nothing:\n%s", alone);
    printf("  mixed batch e,__base__,e with an Embedding LoRA: every row equals its adapter alone\n");
}

TEST(cli_text_prompts) {
    cJSON *j = read_json(GEN "/generate.json");
    char dir[256];
    if (!j || !char_model_dir(dir, sizeof dir)) { CHECK(0, "setup"); cJSON_Delete(j); return; }
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "text_cases")) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring, *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const cJSON *tpl = cJSON_GetObjectItem(c, "template"), *stop = cJSON_GetObjectItem(c, "stop");
        int64_t nw;
        int32_t *want = json_ids(cJSON_GetObjectItem(c, "tokens"), &nw);
        const char *want_text = cJSON_GetObjectItem(c, "text")->valuestring;
        char out[8192], text[1024], extra[256] = "";
        if (cJSON_IsString(tpl)) snprintf(extra, sizeof extra, "--template %s", tpl->valuestring);
        if (cJSON_IsString(stop)) snprintf(extra, sizeof extra, "--stop '%s'", stop->valuestring);
        int rc = run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --prompt '%s' --max-new-tokens %d %s --json", bin(), dir,
                     prompt, (int)cJSON_GetObjectItem(c, "max_new_tokens")->valuedouble, extra);
        CHECK(rc == 0 && json_tokens_equal(out, 0, want, nw, text, sizeof text) && !strcmp(text, want_text),
              "%s: exit %d: %s (want \"%s\")", name, rc, out, want_text);
        /* streamed: the same text */
        rc = run_cmd_fmt(out, sizeof out, 0, "%s generate --model %s --prompt '%s' --max-new-tokens %d %s", bin(), dir, prompt,
                 (int)cJSON_GetObjectItem(c, "max_new_tokens")->valuedouble, extra);
        char expect[1100];
        snprintf(expect, sizeof expect, "%s\n", want_text);
        CHECK(rc == 0 && !strcmp(out, expect), "%s streamed: exit %d: \"%s\"", name, rc, out);
        printf("  text.%-8s \"%s\" -> \"%s\" as transformers (JSON and streamed)\n", name, prompt, want_text);
        free(want);
        n++;
    }
    /* the truncation warning names the prompt */
    char out[8192];
    int rc = run_cmd_fmt(out, sizeof out, 1, "%s generate --model %s --prompt 'Say hi' --template alpaca --max-new-tokens 4 --json",
                 bin(), dir);
    CHECK(rc == 0 && strstr(out, "prompt 1: 146 tokens do not fit the model's 64 positions") &&
              strstr(out, "generation stopped at the model's 64 positions"),
          "warnings: %s", out);
    CHECK(n == 3, "%d text cases", n);
    remove_char_model_dir(dir);
    cJSON_Delete(j);
}

int main(void) {
    RUN(greedy_matches_transformers_gpt);
    RUN(greedy_matches_transformers_llama_family);
    RUN(cache_equals_recomputation);
    RUN(attention_with_past_matches_reference);
    RUN(skinny_kernels_match_blas);
    RUN(sampling_reproducible_from_seed);
    RUN(bad_input_is_reported);
    RUN(cli_token_prompts);
    RUN(cli_text_prompts);
    RUN(mixed_batch_with_embedding_adapter);
    return test_summary();
}
