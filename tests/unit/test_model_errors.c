/*
 * test_model_errors.c — bad model directories and bad batches give clear errors, never crashes:
 * each case builds a broken copy of a fixture model in a temporary directory.
 */
#include "test.h"
#include "cpeft.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOOD "tests/fixtures/models/gpt2_tiny"

static char tmp[256];

static void write_file(const char *name, const char *text, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
}

static char *read_all(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

/* Replaces the first `from` in the temp dir's config.json by `to`. */
static void edit_config(const char *from, const char *to) {
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    char *cfg = read_all(path, &len);
    char *at = strstr(cfg, from);
    if (!at) { fprintf(stderr, "setup: %s not in config\n", from); abort(); }
    size_t head = (size_t)(at - cfg), tail = len - head - strlen(from);
    char *out = malloc(len + strlen(to) + 1);
    memcpy(out, cfg, head);
    memcpy(out + head, to, strlen(to));
    memcpy(out + head + strlen(to), at + strlen(from), tail);
    write_file("config.json", out, head + strlen(to) + tail);
    free(cfg);
    free(out);
}

/* A fresh temp dir holding the config.json of model `src` with `from` replaced by `to` (when given). */
static void setup_from(const char *src, const char *from, const char *to, int copy_weights) {
    char path[512];
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-test-XXXXXX");
    if (!mkdtemp(tmp)) abort();
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", src);
    char *cfg = read_all(path, &len);
    write_file("config.json", cfg, len);
    free(cfg);
    if (from) edit_config(from, to);
    if (copy_weights) {
        snprintf(path, sizeof path, "%s/model.safetensors", src);
        char *w = read_all(path, &len);
        write_file("model.safetensors", w, len);
        free(w);
    }
}

static void setup(const char *from, const char *to, int copy_weights) { setup_from(GOOD, from, to, copy_weights); }

static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
}

static cp_status load(int flags) {
    cp_model *m = NULL;
    cp_status st = cp_model_load(&m, tmp, flags);
    cp_model_free(m);
    return st;
}

TEST(missing_directory) {
    cp_model *m = NULL;
    CHECK_ERR(cp_model_load(&m, "/nonexistent/cpeft-model", 0), "/nonexistent/cpeft-model");
    CHECK(m == NULL, "model returned on error");
}

TEST(missing_config) {
    setup(NULL, NULL, 0);
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", tmp);
    unlink(p);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "config.json: cannot open");
    cleanup();
}

TEST(invalid_json_names_line) {
    setup("\"n_embd\"", "\"n_embd\" ::", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "invalid JSON at line");
    cleanup();
}

TEST(unknown_model_type) {
    setup("\"model_type\": \"gpt2\"", "\"model_type\": \"rwkv\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "model_type \"rwkv\" is not supported (supported: gpt2, gpt_neo, llama, mistral, qwen2, qwen3, gemma, gemma2, phi3, glm, gpt_neox, gptj, phi, opt, bloom");
    cleanup();
    setup("\"model_type\": \"gpt2\"", "\"model_type\": \"chatglm\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "model_type \"chatglm\" (ChatGLM's remote code, loadable by transformers only with "
                                         "trust_remote_code) is not supported: use a checkpoint in transformers' native GLM layout");
    cleanup();
}

TEST(missing_model_type) {
    setup("\"model_type\": \"gpt2\"", "\"model_typo\": \"gpt2\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "required field \"model_type\" is missing");
    cleanup();
}

TEST(wrong_field_type) {
    setup("\"n_embd\": 32", "\"n_embd\": \"thirty-two\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"n_embd\": expected an integer, found a string");
    cleanup();
    setup("\"n_embd\": 32", "\"n_embd\": -32", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"n_embd\" must be a positive integer of at most 65536, found -32");
    cleanup();
    setup("\"n_embd\": 32", "\"n_embd\": 30", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "not divisible by the number of heads");
    cleanup();
    setup("\"activation_function\": \"gelu_new\"", "\"activation_function\": \"gelu_newest\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "unknown activation \"gelu_newest\"");
    cleanup();
}

/* Numbers out of their type's range are errors before any conversion (a double outside the range
 * of the integer it is converted to is undefined behaviour: UBSan flagged config.c with
 * "eos_token_id": [1e30]). Token ids beyond the vocabulary load (see token_ids_beyond_the_vocabulary). */
TEST(numbers_out_of_range) {
    static const char *cases[][3] = { /* replaced text, replacement, error */
        {"\"eos_token_id\": 96", "\"eos_token_id\": [1e30]",
         "config.json: field \"eos_token_id\"[0]: expected a token id (an integer from 0 to 2147483647), found 1e+30"},
        {"\"eos_token_id\": 96", "\"eos_token_id\": [96, 3e9]", "field \"eos_token_id\"[1]: expected a token id (an integer from 0 to 2147483647), found 3000000000"},
        {"\"eos_token_id\": 96", "\"eos_token_id\": 3000000000", "found 3000000000"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": -7", "field \"bos_token_id\": expected a token id (an integer from 0 to 2147483647), found -7"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": 1e400", "found inf"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": -1e400", "found -inf"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": 95.5", "found 95.5"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": \"96\"", "field \"bos_token_id\": expected a token id or a list of ids, found a string"},
        {"\"eos_token_id\": 96", "\"eos_token_id\": [2147483648]", "field \"eos_token_id\"[0]: expected a token id (an integer from 0 to 2147483647), found 2147483648"},
        {"\"pad_token_id\": null", "\"pad_token_id\": -2", "field \"pad_token_id\": expected a token id (an integer from 0 to 2147483647), found -2"},
        {"\"n_embd\": 32", "\"n_embd\": 1e30", "field \"n_embd\": expected an integer, found 1e+30"},
        {"\"n_layer\": 2", "\"n_layer\": 1e400", "field \"n_layer\": expected an integer, found inf"},
        {"\"n_layer\": 2", "\"n_layer\": -1e400", "field \"n_layer\": expected an integer, found -inf"},
        {"\"n_positions\": 64", "\"n_positions\": 3e9", "field \"n_positions\" must be a positive integer of at most"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup(cases[i][0], cases[i][1], 0);
        CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), cases[i][2]);
        cleanup();
    }
    /* -1, which some converted configs write for "no pad token", reads as unset */
    setup("\"pad_token_id\": null", "\"pad_token_id\": -1", 0);
    CHECK_OK(load(CP_LOAD_CONFIG_ONLY));
    cleanup();
    /* generation_config.json's ids go through the same checks (cp_generate_options_init) */
    setup(NULL, NULL, 0);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    const char *gen[][2] = {{"{\"eos_token_id\": 3e9}", "generation_config.json: field \"eos_token_id\": expected a token id, found 3000000000"},
                            {"{\"eos_token_id\": [1, 1e30]}", "field \"eos_token_id\": expected token ids, found 1e+30"},
                            {"{\"pad_token_id\": [-7]}", "field \"pad_token_id\": expected token ids, found -7"}};
    for (int i = 0; m && i < 3; i++) {
        write_file("generation_config.json", gen[i][0], strlen(gen[i][0]));
        cp_generate_options o;
        CHECK_ERR(cp_generate_options_init(m, &o), gen[i][1]);
    }
    cp_model_free(m);
    cleanup();
}

/* Runs load(flags) with warnings printed to a temporary file; returns what was printed (static). */
static const char *load_warnings(int flags, cp_status *st) {
    static char text[4096];
    fflush(stderr);
    int saved = dup(2);
    FILE *f = tmpfile();
    dup2(fileno(f), 2);
    cp_set_quiet(0);
    *st = load(flags);
    cp_set_quiet(1);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

/* config.json token ids at or beyond vocab_size load as in transformers (some real checkpoints have
 * ids beyond the embedding), with a warning naming the field, the id and vocab_size; using one as
 * a token is the error: generation's pad (left padding, a finished row in a batch) and training's
 * pad; an eos id no token can be never ends a row (transformers generates the same way). */
TEST(token_ids_beyond_the_vocabulary) {
    static const char *cases[][3] = {
        {"\"pad_token_id\": null", "\"pad_token_id\": 97", "config.json: field \"pad_token_id\": token id 97 is outside the vocabulary [0, 97) (vocab_size)"},
        {"\"eos_token_id\": 96", "\"eos_token_id\": [2147483647, 5]", "field \"eos_token_id\": token id 2147483647 is outside the vocabulary [0, 97) (vocab_size)"},
        {"\"bos_token_id\": 96", "\"bos_token_id\": 100", "field \"bos_token_id\": token id 100 is outside the vocabulary [0, 97) (vocab_size)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup(cases[i][0], cases[i][1], 0);
        cp_status st;
        const char *w = load_warnings(CP_LOAD_CONFIG_ONLY, &st);
        CHECK(st == CP_OK, "%s: %s", cases[i][1], cp_last_error());
        CHECK(strstr(w, cases[i][2]) != NULL, "%s: warnings \"%s\" do not say \"%s\"", cases[i][1], w, cases[i][2]);
        cleanup();
    }

    /* generation: pad_token_id 97 (config.json) is needed only for a batch */
    setup("\"pad_token_id\": null", "\"pad_token_id\": 97", 1);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_WEIGHTS));
    if (m) {
        cp_generate_options o;
        CHECK_OK(cp_generate_options_init(m, &o));
        CHECK(o.pad_token_id == 97 && o.n_eos == 1 && o.eos_token_ids[0] == 96, "options: pad %d, eos %d", o.pad_token_id, o.eos_token_ids[0]);
        o.max_new_tokens = 4;
        const int32_t a[3] = {1, 2, 3}, b[3] = {4, 5, 6}, c[2] = {7, 8};
        const int32_t *ab[2] = {a, b}, *ac[2] = {a, c};
        const int64_t len3[2] = {3, 3}, len32[2] = {3, 2};
        cp_generation ga = {0}, gb = {0}, g = {0};
        CHECK_OK(cp_model_generate(m, ab, len3, 1, &o, &ga)); /* one prompt: no pad needed */
        CHECK_OK(cp_model_generate(m, ab + 1, len3, 1, &o, &gb));
        CHECK_ERR(cp_model_generate(m, ac, len32, 2, &o, &g),
                  "pad_token_id 97 (from generation_config.json or config.json, else the first eos id) is outside the "
                  "vocabulary [0, 97) (vocab_size): prompts of different lengths need it for left padding");
        /* equal lengths: fine until a row ends while the other goes on (its first token as eos) */
        CHECK_OK(cp_model_generate(m, ab, len3, 2, &o, &g));
        cp_generation_free(&g);
        if (ga.tokens && gb.tokens) {
            CHECK(ga.tokens[0][0] != gb.tokens[0][0], "setup: both prompts start with token %d", ga.tokens[0][0]);
            o.eos_token_ids[0] = ga.tokens[0][0];
            CHECK_ERR(cp_model_generate(m, ab, len3, 2, &o, &g),
                      "(vocab_size): prompt 1 finished while others go on, and its next input is the pad token");
            /* an eos id beyond the vocabulary never matches: the batch runs its max_new_tokens */
            o.pad_token_id = 0;
            o.eos_token_ids[0] = 1000;
            CHECK_OK(cp_model_generate(m, ab, len3, 2, &o, &g));
            CHECK(g.n_tokens && g.n_tokens[0] == 4 && g.n_tokens[1] == 4, "eos 1000: %lld and %lld new tokens",
                  g.n_tokens ? (long long)g.n_tokens[0] : -1LL, g.n_tokens ? (long long)g.n_tokens[1] : -1LL);
            cp_generation_free(&g);
        }
        cp_generation_free(&ga);
        cp_generation_free(&gb);
    }
    cp_model_free(m);
    cleanup();
}

/* A key given twice keeps its last value, as Python's json.loads (what transformers reads
 * config.json with) does; cJSON's lookups used to find the first. */
TEST(duplicate_keys_keep_the_last_value) {
    setup("\"n_embd\": 32", "\"n_embd\": 16, \"n_embd\": 48", 0);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && cp_model_hidden_size(m) == 48, "hidden size %lld, want 48 (the last n_embd)", m ? (long long)cp_model_hidden_size(m) : -1LL);
    cp_model_free(m);
    cleanup();
    setup("\"model_type\": \"gpt2\"", "\"model_type\": \"rwkv\", \"model_type\": \"gpt2\"", 1);
    m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_WEIGHTS));
    CHECK(m && strcmp(cp_model_type(m), "gpt2") == 0, "model type %s", m ? cp_model_type(m) : "(none)");
    cp_model_free(m);
    cleanup();
    /* the rule itself, on nested objects and arrays and an object too large for a linear scan:
     * one member per key, the last value, at the key's first position (a Python dict) */
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "{\"a\": 1, \"b\": {\"x\": 1, \"y\": 0, \"x\": 2}, \"c\": [{\"k\": 1, \"k\": [2]}], \"a\": 3, \"big\": {");
    for (int i = 0; i < 3000; i++) cp_sb_printf(&sb, "%s\"k%d\": %d", i ? ", " : "", i % 1000, i);
    cp_sb_append(&sb, "}}");
    char *text = cp_sb_finish(&sb);
    cJSON *root = NULL;
    CHECK_OK(cp_json_parse(text, strlen(text), "dup.json", &root));
    if (root) {
        const char *order[4] = {"a", "b", "c", "big"};
        int i = 0, ok = cJSON_GetArraySize(root) == 4;
        for (const cJSON *c = root->child; c && ok; c = c->next, i++) ok = strcmp(c->string, order[i]) == 0;
        CHECK(ok, "top level: a, b, c, big once each, in first-seen order");
        CHECK(cJSON_GetObjectItem(root, "a")->valuedouble == 3, "a = 3");
        const cJSON *b = cJSON_GetObjectItem(root, "b");
        CHECK(cJSON_GetArraySize(b) == 2 && !strcmp(b->child->string, "x") && b->child->valuedouble == 2, "b = {x: 2, y: 0}");
        const cJSON *k = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "c"), 0), "k");
        CHECK(cJSON_IsArray(k) && cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "c"), 0), "k")) == 1,
              "c[0].k = [2]");
        const cJSON *big = cJSON_GetObjectItem(root, "big");
        int n = cJSON_GetArraySize(big), last_ok = 1;
        for (const cJSON *c = big->child; c; c = c->next) last_ok &= (int)c->valuedouble == atoi(c->string + 1) + 2000;
        CHECK(n == 1000 && last_ok, "big: %d members (want 1000), each its last value: %s", n, last_ok ? "yes" : "no");
        cJSON_Delete(root);
    }
    cp_free(text);
}

TEST(config_only_directory_has_no_weights) {
    setup(NULL, NULL, 0);
    CHECK_OK(load(CP_LOAD_CONFIG_ONLY));
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "no weights");
    cleanup();
}

TEST(mis_shaped_tensors_listed_with_both_shapes) {
    setup("\"n_embd\": 32", "\"n_embd\": 16", 1);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "transformer.wte.weight: expected [97, 16], found [97, 32]");
    cleanup();
}

TEST(missing_and_unexpected_tensors) {
    setup("\"n_layer\": 2", "\"n_layer\": 3", 1);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "missing tensors (12):");
    cleanup();
    setup("\"n_layer\": 2", "\"n_layer\": 1", 1);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "unexpected tensors (12):\n    transformer.h.1.attn.c_attn.bias: [96] in model.safetensors");
    cleanup();
}

TEST(truncated_weights) {
    setup(NULL, NULL, 0);
    size_t len;
    char *w = read_all(GOOD "/model.safetensors", &len);
    write_file("model.safetensors", w, len / 2);
    free(w);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "model.safetensors");
    cleanup();
}

TEST(sharded_index_naming_a_missing_shard) {
    setup(NULL, NULL, 0);
    const char *idx = "{\"metadata\": {}, \"weight_map\": {\"transformer.wte.weight\": \"model-00001-of-00002.safetensors\"}}";
    write_file("model.safetensors.index.json", idx, strlen(idx));
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "shard \"model-00001-of-00002.safetensors\" (listed for tensor \"transformer.wte.weight\") does not exist");
    const char *bad = "{\"weight_map\": {\"x\": \"../etc/passwd\"}}";
    write_file("model.safetensors.index.json", bad, strlen(bad));
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "must be a file in the model directory");
    cleanup();
}

TEST(gpt_neo_attention_types_must_cover_layers) {
    cp_model *m = NULL;
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-test-XXXXXX");
    if (!mkdtemp(tmp)) abort();
    const char *cfg = "{\"model_type\": \"gpt_neo\", \"num_layers\": 3, \"hidden_size\": 8, \"num_heads\": 2,"
                      " \"attention_types\": [[[\"global\", \"local\"], 1]]}";
    write_file("config.json", cfg, strlen(cfg));
    CHECK_ERR(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY), "attention_types describe 2 layers but num_layers is 3");
    cleanup();
}

/* OPT's and BLOOM's switches cpeft does not run are refused by name; BLOOM's n_head of any count loads. */
TEST(opt_bloom_switches_refused_by_name) {
    static const struct { const char *cfg, *err; } cases[] = {
        {"{\"model_type\": \"opt\", \"hidden_size\": 8, \"num_attention_heads\": 3}", "not divisible by num_attention_heads 3"},
        {"{\"model_type\": \"opt\", \"hidden_size\": 8, \"num_attention_heads\": 2, \"activation_function\": \"bloom_gelu\"}",
         "unknown activation \"bloom_gelu\""},
        {"{\"model_type\": \"bloom\", \"hidden_size\": 8, \"n_head\": 3}", "not divisible by n_head 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cp_model *m = NULL;
        snprintf(tmp, sizeof tmp, "/tmp/cpeft-test-XXXXXX");
        if (!mkdtemp(tmp)) abort();
        write_file("config.json", cases[i].cfg, strlen(cases[i].cfg));
        CHECK_ERR(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY), cases[i].err);
        cleanup();
    }
    cp_model *m = NULL;
    snprintf(tmp, sizeof tmp, "/tmp/cpeft-test-XXXXXX");
    if (!mkdtemp(tmp)) abort();
    const char *cfg = "{\"model_type\": \"bloom\", \"n_embed\": 24, \"n_layer\": 3, \"n_head\": 6}";
    write_file("config.json", cfg, strlen(cfg));
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.hidden_size == 24 && m->config.num_layers == 3 && m->config.num_heads == 6 &&
          m->config.intermediate_size == 96 && m->config.bos_token_id == 1 && m->config.eos_token_id == 2,
          "bloom: n_embed / n_layer / n_head aliases and BloomConfig's defaults");
    cp_model_free(m);
    cleanup();
}

/* OPT-350m's shape (word_embed_proj_dim != hidden_size): the final hidden states are project_out's,
 * narrower than hidden_size, so the calls that return them sized by cp_model_hidden_size refuse by name. */
TEST(final_proj_hidden_states_refused) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, "tests/fixtures/decoders/opt_350m/model", CP_LOAD_WEIGHTS));
    if (!m) return;
    int64_t ids[3] = {5, 6, 7}, mask[3] = {1, 1, 1};
    cp_batch b = {.B = 1, .T = 3, .input_ids = ids, .attention_mask = mask};
    float logits[3 * 61], hidden[3 * 3 * 16], pooled[16];
    cp_outputs out = {.logits = logits, .hidden_states = hidden};
    CHECK_ERR(cp_model_forward(m, &b, &out), "output_hidden_states: the last hidden state is model.decoder.project_out's output, of width 12");
    CHECK_ERR(cp_model_embed(m, &b, CP_EMBED_MEAN, 0, pooled), "cp_model_embed: the final hidden states are model.decoder.project_out's output");
    out.hidden_states = NULL;
    CHECK_OK(cp_model_forward(m, &b, &out));
    cp_model_free(m);
}

/* OPT's layerdrop: transformers skips layers at random only in train mode, so a model with it loads and
 * evaluates; a training forward with the model's dropout on refuses it by name, with it off it trains. */
TEST(opt_layerdrop_refused_in_train_mode) {
    setup_from("tests/fixtures/decoders/opt_tiny/model", "\"layerdrop\": 0.0", "\"layerdrop\": 0.1", 1);
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_WEIGHTS));
    if (m) {
        int64_t ids[3] = {5, 6, 7}, mask[3] = {1, 1, 1}, labels[3] = {5, 6, 7};
        cp_batch b = {.B = 1, .T = 3, .input_ids = ids, .attention_mask = mask, .labels = labels};
        float logits[3 * 61];
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        double loss;
        int64_t n;
        m->training = 1;
        CHECK_ERR(cp_model_forward_backward(m, &b, 1.0, 0, &loss, &n), "field \"layerdrop\" = 0.1: transformers skips layers");
        m->model_dropout = 0;
        CHECK_OK(cp_model_forward_backward(m, &b, 1.0, 0, &loss, &n));
        cp_model_free(m);
    }
    cleanup();
}

#define LLAMA_FIX "tests/fixtures/llama/models/"

/* The bias switches each model type reads, as transformers 5.23: LlamaConfig's attention_bias and
 * mlp_bias; MistralConfig and Qwen2Config have neither (Mistral: no biases, Qwen2: q/k/v always), so
 * the keys in their config.json change nothing and the checkpoints load as they are. */
TEST(bias_keys_read_only_where_transformers_reads_them) {
    setup_from(LLAMA_FIX "mistral_tiny", "\"sliding_window\": 5", "\"sliding_window\": 5, \"attention_bias\": true, \"mlp_bias\": true", 1);
    CHECK_OK(load(CP_LOAD_WEIGHTS));
    cleanup();
    setup_from(LLAMA_FIX "qwen2_tiny", "\"use_sliding_window\": false",
               "\"use_sliding_window\": false, \"attention_bias\": false, \"mlp_bias\": true", 1);
    CHECK_OK(load(CP_LOAD_WEIGHTS));
    cleanup();
    /* Llama: attention_bias covers o_proj too; without it the o_proj biases are unexpected */
    setup_from(LLAMA_FIX "llama_bias", "\"attention_bias\": true", "\"attention_bias\": false", 1);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "model.layers.0.self_attn.o_proj.bias: [16] in model.safetensors");
    cleanup();
    setup_from(LLAMA_FIX "llama_bias", "\"mlp_bias\": true", "\"mlp_bias\": false", 1);
    CHECK_ERR(load(CP_LOAD_WEIGHTS), "model.layers.0.mlp.down_proj.bias: [16] in model.safetensors");
    cleanup();
}

/* Sliding-window switches: Mistral's default window, Qwen2's layer_types, and what transformers
 * cannot run (refused by name). */
TEST(sliding_window_switches) {
    cp_model *m = NULL;
    /* MistralConfig's sliding_window defaults to 4096 when the key is absent; null means none */
    setup_from(LLAMA_FIX "mistral_tiny", "\"sliding_window\": 5", "\"sliding_window_\": 5", 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.window_size == 4096 && m->config.layer_is_local && m->config.layer_is_local[1], "mistral default window");
    cp_model_free(m);
    cleanup();
    setup_from(LLAMA_FIX "mistral_tiny", "\"sliding_window\": 5", "\"sliding_window\": null", 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.layer_is_local == NULL, "mistral with sliding_window null has no window");
    cp_model_free(m);
    cleanup();
    setup_from(LLAMA_FIX "mistral_tiny", "\"sliding_window\": 5", "\"sliding_window\": 0", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"sliding_window\" must be a positive integer");
    cleanup();

    const char *types = "\"layer_types\": [\n    \"full_attention\",\n    \"full_attention\"\n  ]";
    setup_from(LLAMA_FIX "qwen2_tiny", types, "\"layer_types\": [\"full_attention\", \"chunked_attention\"]", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"layer_types\": layer 1 is \"chunked_attention\", not supported for qwen2");
    cleanup();
    setup_from(LLAMA_FIX "qwen2_tiny", types, "\"layer_types\": [\"full_attention\"]", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"layer_types\" lists 1 layers but num_hidden_layers is 2");
    cleanup();
    /* a sliding layer needs a window: transformers fails building its mask */
    setup_from(LLAMA_FIX "qwen2_tiny", types, "\"layer_types\": [\"sliding_attention\", \"full_attention\"]", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "has sliding_attention layers but there is no window (use_sliding_window is false)");
    cleanup();
    /* use_sliding_window with no layer_types: layers >= max_window_layers (default 28) slide */
    setup_from(LLAMA_FIX "qwen2_tiny", types, "\"max_window_layers_\": 0", 0);
    edit_config("\"use_sliding_window\": false", "\"use_sliding_window\": true");
    edit_config("\"max_window_layers\": 28", "\"max_window_layers\": 1");
    edit_config("\"sliding_window\": null", "\"sliding_window\": 7");
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.window_size == 7 && m->config.layer_is_local && !m->config.layer_is_local[0] && m->config.layer_is_local[1],
          "qwen2: layer 1 slides with window 7");
    cp_model_free(m);
    cleanup();
    /* sliding_window null under use_sliding_window: no window, every layer full */
    setup_from(LLAMA_FIX "qwen2_tiny", "\"use_sliding_window\": false", "\"use_sliding_window\": true", 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.layer_is_local == NULL, "qwen2 without a window has no sliding layer");
    cp_model_free(m);
    cleanup();

    /* qwen3 reads Qwen2's window keys, refuses by name, and defaults head_dim to 128 (Qwen3Config) */
    const char *q3types = "\"layer_types\": [\n    \"full_attention\",\n    \"sliding_attention\"\n  ]";
    setup_from(LLAMA_FIX "qwen3_tiny", q3types, "\"layer_types\": [\"full_attention\", \"chunked_attention\"]", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"layer_types\": layer 1 is \"chunked_attention\", not supported for qwen3");
    cleanup();
    setup_from(LLAMA_FIX "qwen3_tiny", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "\"gelu\" is not supported for qwen3");
    cleanup();
    setup_from(LLAMA_FIX "qwen3_tiny", "\"head_dim\": 6,", "", 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.head_dim == 128 && m->config.layer_is_local && m->config.layer_is_local[1] && m->config.window_size == 4,
          "qwen3: head_dim defaults to 128, layer 1 slides with window 4");
    cp_model_free(m);
    cleanup();

    /* gemma: GeGLU only, causal only (use_bidirectional_attention true refused; null, as saved, is causal),
     * head_dim 256 and pad 0 by default */
    setup_from(LLAMA_FIX "gemma_tiny", "\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_act\": \"silu\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "\"silu\" is not supported for gemma (supported: gelu_pytorch_tanh, gelu)");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"use_bidirectional_attention\": null", "\"use_bidirectional_attention\": true", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"use_bidirectional_attention\": true is not supported for gemma");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"head_dim\": 6,", "", 0);
    edit_config("\"pad_token_id\": 0,", "");
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.head_dim == 256 && m->config.pad_token_id == 0 && m->config.tie_word_embeddings,
          "gemma: head_dim 256, pad_token_id 0, tied by default");
    cp_model_free(m);
    cleanup();

    /* gemma2 (gemma_tiny's config renamed): hidden_activation, not hidden_act; Gemma2Config's defaults
     * (soft-capping 50 / 30, query_pre_attn_scalar 256, window 4096 on the even layers); a sliding
     * layer without a window, a bad soft-cap and bidirectional attention refused by name */
    const char *g2 = "\"model_type\": \"gemma2\"";
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", g2, 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.attn_logit_softcapping == 50 && m->config.final_logit_softcapping == 30 &&
          m->config.query_pre_attn_scalar == 256 && m->config.window_size == 4096 && m->config.layer_is_local &&
          m->config.layer_is_local[0] && !m->config.layer_is_local[1] && m->config.activation == CP_ACT_GELU_PYTORCH_TANH,
          "gemma2: Gemma2Config's defaults");
    cp_model_free(m);
    edit_config("\"hidden_act\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"silu\"");
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"hidden_activation\": \"silu\" is not supported for gemma2");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", "\"model_type\": \"gemma2\", \"sliding_window\": null", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "has sliding_attention layers but there is no window (sliding_window is null)");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", "\"model_type\": \"gemma2\", \"attn_logit_softcapping\": 0", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"attn_logit_softcapping\": expected a positive number or null");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", "\"model_type\": \"gemma2\", \"final_logit_softcapping\": null", 0);
    edit_config("\"use_bidirectional_attention\": null", "\"use_bidirectional_attention\": true");
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"use_bidirectional_attention\": true is not supported for gemma2");
    cleanup();

    /* phi3 (gemma_tiny's config renamed): longrope (and its old names) refused by name, a partial
     * rotary factor that leaves an odd number of dims refused, pad_token_id 32000 by default */
    const char *p3 = "\"model_type\": \"phi3\", \"hidden_act\": \"silu\"";
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", p3, 0);
    edit_config("\"hidden_act\": \"gelu_pytorch_tanh\",", "");
    edit_config("\"rope_type\": \"default\"", "\"rope_type\": \"longrope\", \"short_factor\": [1], \"long_factor\": [1]");
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "rope scaling type \"longrope\" is not supported for phi3 (supported: default)");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", p3, 0);
    edit_config("\"hidden_act\": \"gelu_pytorch_tanh\",", "");
    edit_config("\"rope_type\": \"default\"", "\"type\": \"su\"");
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "rope scaling type \"su\" is not supported for phi3");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", "\"model_type\": \"phi3\", \"partial_rotary_factor\": 0.5", 0);
    edit_config("\"hidden_act\": \"gelu_pytorch_tanh\",", "");
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"partial_rotary_factor\": 0.5 of head_dim 6 gives 3 rotary dims");
    cleanup();
    setup_from(LLAMA_FIX "gemma_tiny", "\"model_type\": \"gemma\"", p3, 0);
    edit_config("\"hidden_act\": \"gelu_pytorch_tanh\",", "");
    edit_config("\"pad_token_id\": 0,", "");
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.pad_token_id == 32000 && m->config.fused_qkv && m->config.fused_gate_up && !m->config.layer_is_local,
          "phi3: pad 32000, fused projections, no window by default");
    cp_model_free(m);
    cleanup();
}

/* GPT-NeoX, GPT-J and Phi (models/rotary_common.c): rope types, rotary widths and attention variants
 * they cannot run are refused by name; NeoX's legacy rotary_pct default applies without the dict's. */
#define DEC_FIX "tests/fixtures/decoders/"
TEST(rotary_decoder_switches) {
    cp_model *m = NULL;
    setup_from(DEC_FIX "gpt_neox/model", "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"rope_parameters\": rope type \"yarn\" is not supported for gpt_neox");
    cleanup();
    setup_from(DEC_FIX "gpt_neox/model", "\"hidden_act\": \"gelu\"", "\"hidden_act\": \"snake\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"hidden_act\": activation \"snake\" is not supported");
    cleanup();
    setup_from(DEC_FIX "gpt_neox/model", "\"partial_rotary_factor\": 0.5,", "", 0);
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.rotary_dim == 2 && m->config.parallel_residual && !m->config.tie_word_embeddings,
          "gpt_neox: rotary_pct 0.25 of head_dim 8 by default, parallel, untied");
    cp_model_free(m);
    cleanup();
    setup_from(DEC_FIX "gpt_neox/model", "\"partial_rotary_factor\": 0.5,", "\"partial_rotary_factor\": 0.1,", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "rotates 0 dims");
    cleanup();
    setup_from(DEC_FIX "gptj/model", "\"rotary_dim\": 4", "\"rotary_dim\": null", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"rotary_dim\": null with n_head 2 > 1 is not supported");
    cleanup();
    setup_from(DEC_FIX "gptj/model", "\"rotary_dim\": 4", "\"rotary_dim\": 10", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"rotary_dim\": 10 must be even and at most the head size 8");
    cleanup();
    setup_from(DEC_FIX "gptj/model", NULL, NULL, 0);
    CHECK_ERR(cp_model_load_task(&m, tmp, CP_LOAD_CONFIG_ONLY, "TOKEN_CLS"), "transformers has no GPTJForTokenClassification");
    cp_model_free(m);
    m = NULL;
    cleanup();
    setup_from(DEC_FIX "phi_qk_layernorm/model", "\"rope_type\": \"default\"", "\"rope_type\": \"longrope\"", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "rope type \"longrope\" is not supported for phi");
    cleanup();
    setup_from(DEC_FIX "phi_qk_layernorm/model", "\"qk_layernorm\": true,", "\"qk_layernorm\": true, \"head_dim\": 6,", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"head_dim\": only hidden_size / num_attention_heads (8) is supported for phi");
    cleanup();
    /* glm (Llama family): GlmConfig's defaults; another rope type over its partial rotary refused by name */
    setup_from(DEC_FIX "glm/model", "\"partial_rotary_factor\": 0.5,", "", 0);
    edit_config("\"rms_norm_eps\": 1e-06,", "");
    edit_config("\"head_dim\": 8,", "");
    CHECK_OK(cp_model_load(&m, tmp, CP_LOAD_CONFIG_ONLY));
    CHECK(m && m->config.partial_rotary_factor == 0.5 && m->config.rope_interleaved && m->config.fused_gate_up &&
          !m->config.fused_qkv && m->config.qkv_bias && !m->config.o_proj_bias && m->config.head_dim == 128 &&
          m->config.layer_norm_eps == 1.5625e-7, "glm: GlmConfig's defaults");
    cp_model_free(m);
    cleanup();
    setup_from(DEC_FIX "glm/model", "\"rope_type\": \"default\"", "\"rope_type\": \"linear\", \"factor\": 2.0", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "partial_rotary_factor 0.5 with rope type \"linear\" is not supported for glm");
    cleanup();
}

/* rope_parameters the Llama family's rotary module cannot take. */
TEST(rope_switches_refused_by_name) {
    setup_from(LLAMA_FIX "llama_tied_linear_rope", "\"factor\": 2.0,", "\"factor\": 2.0, \"partial_rotary_factor\": 0.5,", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "partial_rotary_factor 0.5 with rope type \"linear\" is not supported for llama");
    cleanup();
    setup_from(LLAMA_FIX "llama_tied_linear_rope", "\"rope_parameters\": {",
               "\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\", \"rope_theta\": 100.0},", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"rope_parameters\": parameters per layer type are not supported for llama");
    cleanup();
    /* rope_theta 0 gives infinite frequencies in transformers (NaN logits), a negative one NaN */
    setup_from(LLAMA_FIX "llama_tiny", "\"rope_theta\": 10000.0", "\"rope_theta\": 0", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "field \"rope_parameters.rope_theta\": expected a positive finite number, found 0");
    cleanup();
    setup_from(LLAMA_FIX "llama_tiny", "\"rope_theta\": 10000.0", "\"rope_theta\": -5", 0);
    CHECK_ERR(load(CP_LOAD_CONFIG_ONLY), "expected a positive finite number, found -5");
    cleanup();
    /* the default frequencies ignore partial_rotary_factor, in transformers too */
    setup_from(LLAMA_FIX "llama_tiny", "\"rope_type\": \"default\"", "\"rope_type\": \"default\", \"partial_rotary_factor\": 0.5", 0);
    CHECK_OK(load(CP_LOAD_CONFIG_ONLY));
    cleanup();
}

TEST(bad_batches) {
    cp_model *m = NULL;
    CHECK_OK(cp_model_load(&m, GOOD, CP_LOAD_WEIGHTS));
    if (!m) return;
    int64_t ids[4] = {1, 2, 97, 3}, labels[4] = {1, 2, 3, 500}, mask[4] = {1, 1, 2, 1};
    cp_batch b = {.B = 1, .T = 4, .input_ids = ids};
    cp_outputs out = {0};
    CHECK_ERR(cp_model_forward(m, &b, &out), "transformer.wte: index 97 at position 2 is out of range [0, 97)");
    ids[2] = 5;
    b.labels = labels;
    CHECK_ERR(cp_model_forward(m, &b, &out), "labels: value 500 at position 3");
    b.labels = NULL;
    b.attention_mask = mask;
    CHECK_ERR(cp_model_forward(m, &b, &out), "attention_mask holds 2");
    b.attention_mask = NULL;
    b.T = 65;
    CHECK_ERR(cp_model_forward(m, &b, &out), "exceeds the model's 64 positions");
    b.T = 0;
    CHECK_ERR(cp_model_forward(m, &b, &out), "empty batch");
    cp_model_free(m);
}

int main(void) {
    cp_set_quiet(1);
    RUN(missing_directory);
    RUN(missing_config);
    RUN(invalid_json_names_line);
    RUN(unknown_model_type);
    RUN(missing_model_type);
    RUN(wrong_field_type);
    RUN(numbers_out_of_range);
    RUN(token_ids_beyond_the_vocabulary);
    RUN(duplicate_keys_keep_the_last_value);
    RUN(config_only_directory_has_no_weights);
    RUN(mis_shaped_tensors_listed_with_both_shapes);
    RUN(missing_and_unexpected_tensors);
    RUN(truncated_weights);
    RUN(sharded_index_naming_a_missing_shard);
    RUN(gpt_neo_attention_types_must_cover_layers);
    RUN(opt_bloom_switches_refused_by_name);
    RUN(final_proj_hidden_states_refused);
    RUN(opt_layerdrop_refused_in_train_mode);
    RUN(bias_keys_read_only_where_transformers_reads_them);
    RUN(sliding_window_switches);
    RUN(rope_switches_refused_by_name);
    RUN(rotary_decoder_switches);
    RUN(bad_batches);
    return test_summary();
}
