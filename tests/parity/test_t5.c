/*
 * test_t5.c — T5 and mT5 (encoder-decoder, SEQ_2_SEQ_LM) against transformers 5.23 + PEFT 0.21.2
 * (fixtures: tests/reference/make_t5_fixtures.py → tests/fixtures/t5/):
 *   - t5 v1.0 (relu, tied, rescaled), v1.1 (gated-gelu, untied lm_head, no rescale), mt5, a model with 3
 *     decoder blocks and num_heads·d_kv ≠ d_model, and v1.0's weights in bf16: logits (decoder inputs shifted
 *     from the labels, padding in both masks; and explicit decoder_input_ids), loss, parameter count, print(model);
 *   - LoRA (default q, v; decoder only; all-linear on mt5; the asymmetric model) and IA3 (t5 v1.1, mt5): PEFT's
 *     adapter files load and give PEFT's logits, save again byte for byte, counts / print_trainable_parameters /
 *     PeftModelForSeq2SeqLM repr, and every gradient after one backward (with and without recompute);
 *   - cpeft's own adapter files (cpeft adapter init) read by PEFT: PEFT's logits from them; cpeft's merged
 *     checkpoints (tied and untied heads) read by transformers: the same logits;
 *   - 10 AdamW steps of LoRA on t5 v1.0 against PyTorch + PEFT;
 *   - greedy generate() token for token (with a LoRA adapter, a repetition penalty, a row that stops at eos while
 *     the others go on), with and without the caches; a mixed-adapter batch greedy and with beams as each row alone;
 *     sampling seeded (beam search: test_beam.c);
 *   - bad input: no decoder_start_token_id (forward with labels, generation; mt5's null is unset, not its default 0), an adapter of an encoder-only model, a
 *     batch without decoder inputs.
 * Every comparison prints the largest difference it saw.
 */
#include "parity/seq2seq_check.h"

#define FIX "tests/fixtures/t5"

TEST(models_match_transformers) {
    const char *names[] = {"t5_v10", "t5_v11", "mt5", "t5_asym", "t5_v10_bf16"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) s2s_model_case(FIX, names[i]);
}

TEST(lora_and_ia3_match_peft) {
    s2s_peft_case(FIX, "lora", "lora_v10_default");
    s2s_peft_case(FIX, "lora", "lora_v11_decoder");
    s2s_peft_case(FIX, "lora", "lora_mt5_all_linear");
    s2s_peft_case(FIX, "lora", "lora_asym_default");
    s2s_peft_case(FIX, "lora", "lora_asym_relbias");
    s2s_peft_case(FIX, "lora", "lora_v11_embed");
    s2s_peft_case(FIX, "ia3", "ia3_v11_default");
    s2s_peft_case(FIX, "ia3", "ia3_mt5_default");
}

TEST(cpeft_adapters_load_in_peft) {
    s2s_roundtrip_case(FIX, "rt_lora_v11");
    s2s_roundtrip_case(FIX, "rt_lora_v10");
    s2s_roundtrip_case(FIX, "rt_ia3_mt5");
}

TEST(ten_adamw_steps_match_peft) { s2s_steps_case(FIX "/steps/lora_v10", "lora_v10"); }

/* ---- generation ------------------------------------------------------------------------------------ */

/* Greedy generate() of the fixture: the same tokens with the caches (self-attention, cross-attention keys
 * and values once) and without the self-attention cache (every step reruns the whole decoder). */
static void generate_case(const char *name) {
    char path[320];
    snprintf(path, sizeof path, FIX "/generate/%s.json", name);
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(path, &exp));
    if (!exp) return;
    cp_model *m = load_model(cJSON_GetObjectItem(exp, "base_dir")->valuestring);
    const cJSON *ad = cJSON_GetObjectItem(exp, "adapter");
    if (m && cJSON_IsString(ad)) CHECK_OK(cp_adapter_load(m, ad->valuestring, "default", 1, 0));
    const cJSON *prompts = cJSON_GetObjectItem(exp, "prompts"), *want = cJSON_GetObjectItem(exp, "tokens");
    const int64_t n = cJSON_GetArraySize(prompts);
    int32_t *p[8];
    int64_t lens[8];
    for (int64_t r = 0; r < n && r < 8; r++) {
        const cJSON *row = cJSON_GetArrayItem(prompts, (int)r);
        lens[r] = cJSON_GetArraySize(row);
        p[r] = malloc((size_t)lens[r] * sizeof *p[r]);
        for (int64_t t = 0; t < lens[r]; t++) p[r][t] = (int32_t)cJSON_GetArrayItem(row, (int)t)->valuedouble;
    }
    for (int no_cache = 0; m && no_cache < 2; no_cache++) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        o.max_new_tokens = (int64_t)cJSON_GetObjectItem(exp, "max_new_tokens")->valuedouble;
        o.eos_token_ids[0] = (int32_t)cJSON_GetObjectItem(exp, "eos_token_id")->valuedouble;
        o.n_eos = 1;
        o.repetition_penalty = cJSON_GetObjectItem(exp, "repetition_penalty")->valuedouble;
        o.no_cache = no_cache;
        cp_generation g;
        CHECK_OK(cp_model_generate(m, (const int32_t *const *)p, lens, n, &o, &g));
        int same = g.n == n, total = 0;
        for (int64_t r = 0; same && r < n; r++) {
            const cJSON *row = cJSON_GetArrayItem(want, (int)r);
            same = g.n_tokens[r] == cJSON_GetArraySize(row);
            for (int64_t t = 0; same && t < g.n_tokens[r]; t++) same = g.tokens[r][t] == (int32_t)cJSON_GetArrayItem(row, (int)t)->valuedouble;
            total += (int)g.n_tokens[r];
        }
        printf("    %-18s %s: %d new tokens over %lld prompts %s transformers' greedy generate()\n", name,
               no_cache ? "no cache  " : "with cache", total, (long long)n, same ? "identical to" : "DIFFERENT from");
        CHECK(same, "%s: generated tokens differ (no_cache %d)", name, no_cache);
        cp_generation_free(&g);
    }
    for (int64_t r = 0; r < n && r < 8; r++) free(p[r]);
    cp_model_free(m);
    cJSON_Delete(exp);
}

TEST(greedy_generation_matches_transformers) {
    generate_case("greedy_v10");
    generate_case("greedy_v11_lora");
    generate_case("greedy_mt5_eos");
    generate_case("greedy_asym");
}

/* `cpeft generate --model T5DIR --prompt TEXT --json`: the tokenizer's ids (</s> kept), transformers' tokens and text. */
TEST(cli_generate_matches_transformers) {
    cJSON *exp = NULL;
    CHECK_OK(cp_json_read_file(FIX "/generate/cli.json", &exp));
    if (!exp) return;
    const char *bin = getenv("CPEFT_BIN") ? getenv("CPEFT_BIN") : "build/cpeft";
    const cJSON *row;
    int n = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(exp, "rows")) {
        char cmd[1024], out[4096];
        snprintf(cmd, sizeof cmd, "%s generate --model %s --prompt '%s' --max-new-tokens %d --json 2>/dev/null", bin,
                 cJSON_GetObjectItem(exp, "model")->valuestring, cJSON_GetObjectItem(row, "prompt")->valuestring,
                 (int)cJSON_GetObjectItem(exp, "max_new_tokens")->valuedouble);
        FILE *p = popen(cmd, "r");
        size_t k = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[k] = '\0';
        CHECK(p && pclose(p) == 0, "cpeft generate failed: %s", out);
        cJSON *got = cJSON_Parse(out);
        const cJSON *gt = got ? cJSON_GetObjectItem(got, "tokens") : NULL, *wt = cJSON_GetObjectItem(row, "tokens");
        int same = gt && cJSON_GetArraySize(gt) == cJSON_GetArraySize(wt);
        for (int i = 0; same && i < cJSON_GetArraySize(wt); i++)
            same = cJSON_GetArrayItem(gt, i)->valuedouble == cJSON_GetArrayItem(wt, i)->valuedouble;
        const cJSON *text = got ? cJSON_GetObjectItem(got, "text") : NULL;
        same = same && cJSON_IsString(text) && !strcmp(text->valuestring, cJSON_GetObjectItem(row, "text")->valuestring);
        CHECK(same, "cpeft generate \"%s\": %s", cJSON_GetObjectItem(row, "prompt")->valuestring, out);
        n += same;
        cJSON_Delete(got);
    }
    printf("    cpeft generate --prompt: %d prompts, tokens and text identical to transformers' greedy generate()\n", n);
    cJSON_Delete(exp);
}

/* A mixed-adapter batch (PEFT's adapter_names) generates what each row's adapter (or the base model) generates alone:
 * greedy, and with beam search (the encoder's rows and every beam run their prompt's adapter). */
static void mixed_case(int64_t num_beams) {
    cp_model *m = load_model(FIX "/models/t5_v11");
    if (!m) return;
    CHECK_OK(cp_adapter_load(m, FIX "/lora/lora_v11_decoder", "default", 1, 0));
    const int32_t a[] = {5, 17, 33, 8, 1}, b[] = {41, 2, 1};
    const int32_t *p[2] = {a, b};
    const int64_t lens[2] = {5, 3};
    const char *names[2] = {"default", "__base__"};
    cp_generate_options o;
    CHECK_OK(cp_generate_options_init(m, &o));
    o.max_new_tokens = 8;
    o.num_beams = num_beams;
    o.adapter_names = names;
    cp_generation mixed, alone[2], base_a;
    CHECK_OK(cp_model_generate(m, p, lens, 2, &o, &mixed));
    o.adapter_names = NULL;
    for (int r = 0; r < 2; r++) {
        cp_model_disable_adapters(m, r == 1);
        CHECK_OK(cp_model_generate(m, &p[r], &lens[r], 1, &o, &alone[r]));
    }
    CHECK_OK(cp_model_generate(m, &p[0], &lens[0], 1, &o, &base_a)); /* still disabled: the base model on row 0's prompt */
    cp_model_disable_adapters(m, 0);
    int same = 1;
    for (int r = 0; r < 2; r++)
        same &= mixed.n_tokens[r] == alone[r].n_tokens[0] &&
                !memcmp(mixed.tokens[r], alone[r].tokens[0], (size_t)mixed.n_tokens[r] * sizeof(int32_t)) &&
                (!mixed.sequences_scores || fabsf(mixed.sequences_scores[r] - alone[r].sequences_scores[0]) < 1e-5f);
    const int differ = alone[0].n_tokens[0] != base_a.n_tokens[0] ||
                       memcmp(alone[0].tokens[0], base_a.tokens[0], (size_t)base_a.n_tokens[0] * sizeof(int32_t));
    printf("    adapter_names [default, __base__], %lld beam(s): each row as its adapter alone (%s); the adapter changes "
           "row 0 (%s)\n", (long long)num_beams, same ? "identical" : "DIFFERENT", differ ? "yes" : "no");
    CHECK(same, "a mixed-adapter batch generates other tokens than each row alone (%lld beams)", (long long)num_beams);
    CHECK(differ, "the adapter generates what the base model does: the check cannot fail");
    cp_generation_free(&base_a);
    cp_generation_free(&mixed);
    for (int r = 0; r < 2; r++) cp_generation_free(&alone[r]);
    cp_model_free(m);
}

TEST(mixed_adapter_generation) {
    mixed_case(1);
    mixed_case(3);
}

/* Sampling runs through the same loop: a seed gives the same tokens twice, another seed others. */
TEST(sampling_is_seeded) {
    cp_model *m = load_model(FIX "/models/t5_v11");
    if (!m) return;
    const int32_t a[] = {5, 17, 33, 8}, b[] = {41, 2};
    const int32_t *p[2] = {a, b};
    const int64_t lens[2] = {4, 2};
    cp_generation g[3];
    for (int i = 0; i < 3; i++) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        o.do_sample = 1;
        o.max_new_tokens = 16;
        o.seed = i == 2 ? 99 : 7;
        CHECK_OK(cp_model_generate(m, p, lens, 2, &o, &g[i]));
    }
    int same01 = 1, same02 = 1;
    for (int r = 0; r < 2; r++) {
        same01 &= g[0].n_tokens[r] == g[1].n_tokens[r] && !memcmp(g[0].tokens[r], g[1].tokens[r], (size_t)g[0].n_tokens[r] * 4);
        same02 &= g[0].n_tokens[r] == g[2].n_tokens[r] && !memcmp(g[0].tokens[r], g[2].tokens[r], (size_t)g[0].n_tokens[r] * 4);
    }
    CHECK(same01 && !same02, "sampling: seed 7 twice %s, seed 99 %s", same01 ? "same" : "differs", same02 ? "same" : "differs");
    for (int i = 0; i < 3; i++) cp_generation_free(&g[i]);
    cp_model_free(m);
}

/* ---- bad input -------------------------------------------------------------------------------------- */

TEST(bad_input_is_named) {
    char dir[] = "/tmp/cpeft-t5-bad-XXXXXX", model[600];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(model, sizeof model, "%s/model", dir);
    copy_without(FIX "/models/t5_v10", model, "decoder_start_token_id");
    cp_model *m = load_model(model);
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, FIX "/t5_v10/expected.safetensors"));
    if (m) {
        cp_batch b = batch_of(&st);
        cp_outputs out = {0};
        CHECK_ERR(cp_model_forward(m, &b, &out), "config.json: field \"decoder_start_token_id\" is not set");
        b.labels = NULL;
        CHECK_ERR(cp_model_forward(m, &b, &out), "needs decoder_input_ids or labels");
        b.decoder_input_ids = cp_st_find(&st, "decoder_input_ids")->data; /* explicit decoder inputs need no start token */
        b.decoder_attention_mask = NULL;
        CHECK_OK(cp_model_forward(m, &b, &out));
        const int32_t prompt[] = {5, 6, 7};
        const int32_t *pp[1] = {prompt};
        const int64_t len = 3;
        cp_generate_options o;
        cp_generation g;
        CHECK_OK(cp_generate_options_init(m, &o));
        CHECK_ERR(cp_model_generate(m, pp, &len, 1, &o, &g), "config.json: field \"decoder_start_token_id\" is not set");
    }
    cp_model_free(m);
    /* null is None in transformers (MT5Config(decoder_start_token_id=None) keeps None), not the config class's
     * default (mT5's 0): unset, so shifting labels and generation fail by name */
    snprintf(model, sizeof model, "%s/mt5_null", dir);
    copy_with_field(FIX "/models/mt5", model, "decoder_start_token_id", "null");
    m = load_model(model);
    if (m) {
        CHECK(m->config.decoder_start_token_id == CP_TOKEN_UNSET, "mt5 decoder_start_token_id null read as %lld",
              (long long)m->config.decoder_start_token_id);
        cp_batch b = batch_of(&st);
        cp_outputs out = {0};
        CHECK_ERR(cp_model_forward(m, &b, &out), "config.json: field \"decoder_start_token_id\" is not set");
    }
    cp_model_free(m);
    /* an adapter made for an encoder-only model (BERT's query / value) */
    m = load_model(FIX "/models/t5_v10");
    if (m)
        CHECK_ERR(cp_adapter_load(m, "tests/fixtures/ia3/bert_seqcls", "default", 1, 0),
                  "Target modules {'key', 'output.dense', 'value'} not found in the base model");
    cp_model_free(m);
    cp_st_close(&st);
    rm_rf(dir);
}

int main(void) {
    RUN(models_match_transformers);
    RUN(lora_and_ia3_match_peft);
    RUN(cpeft_adapters_load_in_peft);
    RUN(ten_adamw_steps_match_peft);
    RUN(greedy_generation_matches_transformers);
    RUN(cli_generate_matches_transformers);
    RUN(mixed_adapter_generation);
    RUN(sampling_is_seeded);
    RUN(bad_input_is_named);
    printf("  worst: logits %.2e, gradients %.2e relative\n", worst_logits, worst_grad);
    return test_summary();
}
