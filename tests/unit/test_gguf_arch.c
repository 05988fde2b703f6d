/*
 * test_gguf_arch.c — GGUF conversion of the architectures other than llama (qwen2, qwen3, gemma,
 * gemma2, phi3, gptneox, phi2, bloom), each through its own table (models/qwen_gguf.c,
 * models/gemma_gguf.c, models/gemma2_gguf.c, models/phi3_gguf.c, models/gpt_neox_gguf.c,
 * models/phi_gguf.c, models/bloom_gguf.c), and the tables' transforms.
 *
 * Fixtures (tests/fixtures/gguf/, `make_gguf_fixtures.py make-arch`): a tiny random model per
 * architecture (hidden 32, 4 heads / 2 kv heads, 2 layers; tensors in F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_1) written with llama.cpp's gguf package in llama.cpp's layout (gguf-py's TensorNameMap
 * names, gemma's norms as 1 + w, no lm_head when tied); the Hugging Face tensors the conversion must
 * give, from an implementation independent of cpeft (transformers' own GGUF loader for qwen2 and
 * qwen3; for gemma, which it does not load, the gguf package's dequantization with the norms - 1);
 * and the logits of the oracle model (transformers) for 8 token ids. Here each is converted,
 * compared bit for bit, loaded in cpeft and run: the logits must match transformers'.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "convert/gguf_convert.h"
#include "core/alloc.h"
#include "core/dtype.h"
#include "cpeft.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/gguf_names.h"
#include "test.h"

#define FIX "tests/fixtures/gguf/"

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) { return remove(p); }
static void rm_rf(const char *p) { nftw(p, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Converts fixture `name`, checks every tensor bit for bit, config.json's keys (head_dim among them
 * unless the config class has none: head_dim_key 0), and cpeft's logits on the converted directory
 * against the oracle's. */
static void check_arch_keys(const char *name, const char *model_type, int tied, int64_t head_dim, int head_dim_key,
                            const char *const *keys) {
    char gpath[256], epath[256], lpath[256];
    snprintf(gpath, sizeof gpath, FIX "%s.gguf", name);
    snprintf(epath, sizeof epath, FIX "%s.expected.safetensors", name);
    snprintf(lpath, sizeof lpath, FIX "%s.logits.safetensors", name);
    char *dir = cp_path_join(tmpdir, name);
    cp_gguf g;
    cp_gguf_convert_report rep;
    CHECK_OK(cp_gguf_open(&g, gpath));
    CHECK_OK(cp_mkdirs(dir));
    CHECK_OK(cp_gguf_convert(&g, dir, NULL, &rep));
    CHECK(rep.hp.model_type && !strcmp(rep.hp.model_type, model_type), "model_type %s", rep.hp.model_type);
    CHECK(rep.hp.tie_word_embeddings == tied && rep.hp.head_dim == head_dim && rep.n_quantized >= 4,
          "tie %d head_dim %ld quantized %ld", rep.hp.tie_word_embeddings, (long)rep.hp.head_dim, (long)rep.n_quantized);
    cp_gguf_convert_report_free(&rep);
    cp_gguf_close(&g);
    /* tensors */
    cp_safetensors got, exp;
    char *mpath = cp_path_join(dir, "model.safetensors");
    CHECK_OK(cp_st_open(&got, mpath));
    CHECK_OK(cp_st_open(&exp, epath));
    CHECK(got.n_tensors == exp.n_tensors, "%d tensors, expected %d", got.n_tensors, exp.n_tensors);
    double worst = 0;
    size_t nbad = 0;
    for (int i = 0; i < exp.n_tensors; i++) {
        const cp_st_tensor *e = &exp.tensors[i], *o = cp_st_find(&got, e->name);
        CHECK(o, "%s missing", e->name);
        if (!o || o->numel != e->numel) continue;
        CHECK(o->ndim == e->ndim && !memcmp(o->shape, e->shape, (size_t)e->ndim * sizeof *e->shape), "%s shape", e->name);
        float *v = cp_malloc((size_t)o->numel * sizeof *v, "test");
        cp_convert_to_f32(v, o->data, o->dtype, (size_t)o->numel);
        for (int64_t j = 0; j < o->numel; j++) nbad += memcmp(v + j, (const float *)e->data + j, 4) != 0;
        double d = test_max_abs_diff(v, e->data, (size_t)e->numel);
        if (d > worst) worst = d;
        cp_free(v);
    }
    printf("  %s: %d tensors, %zu values differ from the oracle's (max %g)\n", name, exp.n_tensors, nbad, worst);
    CHECK(nbad == 0, "%zu values differ", nbad);
    cp_st_close(&got);
    cp_st_close(&exp);
    cp_free(mpath);
    /* config.json: the model_type's own keys */
    cJSON *cfg = NULL;
    char *cpath = cp_path_join(dir, "config.json");
    CHECK_OK(cp_json_read_file(cpath, &cfg));
    const cJSON *it;
    CHECK(cfg && (it = cJSON_GetObjectItem(cfg, "model_type")) && !strcmp(it->valuestring, model_type), "model_type");
    if (head_dim_key) CHECK(cfg && (it = cJSON_GetObjectItem(cfg, "head_dim")) && it->valueint == head_dim, "head_dim");
    else CHECK(cfg && !cJSON_GetObjectItem(cfg, "head_dim"), "head_dim is not a key of %s's config", model_type);
    CHECK(cfg && (it = cJSON_GetObjectItem(cfg, "tie_word_embeddings")) && cJSON_IsTrue(it) == tied, "tie");
    char *file = NULL, pair[128];
    CHECK_OK(cp_read_file(cpath, &file, NULL));
    for (int i = 0; cfg && file && keys[i]; i += 2) { /* arrays as cJSON prints them, the rest as the file has them */
        char *text = keys[i + 1][0] == '[' && (it = cJSON_GetObjectItem(cfg, keys[i])) ? cJSON_PrintUnformatted(it) : NULL;
        snprintf(pair, sizeof pair, "\"%s\": %s", keys[i], keys[i + 1]);
        CHECK(text ? !strcmp(text, keys[i + 1]) : strstr(file, pair) != NULL, "config.json lacks %s", pair);
        free(text);
    }
    cp_free(file);
    cJSON_Delete(cfg);
    cp_free(cpath);
    /* cpeft loads the directory; its logits equal the oracle's */
    cJSON *meta = NULL;
    CHECK_OK(cp_json_read_file(FIX "arch.json", &meta));
    const cJSON *ids_j = cJSON_GetObjectItem(cJSON_GetObjectItem(meta, name), "input_ids");
    int64_t ids[16];
    int T = 0;
    cJSON_ArrayForEach(it, ids_j) if (T < 16) ids[T++] = (int64_t)it->valuedouble;
    cJSON_Delete(meta);
    cp_model *m = NULL;
    cp_safetensors lg;
    CHECK(cp_model_load(&m, dir, 0) == CP_OK, "cpeft load: %s", cp_last_error());
    CHECK_OK(cp_st_open(&lg, lpath));
    const cp_st_tensor *want = cp_st_find(&lg, "logits");
    if (m && want && T > 0) {
        const int64_t V = cp_model_vocab_size(m);
        CHECK(want->numel == T * V, "logits: %ld values, expected %ld", (long)want->numel, (long)(T * V));
        float *logits = cp_malloc((size_t)(T * V) * sizeof *logits, "logits");
        cp_batch b = {.B = 1, .T = T, .input_ids = ids};
        cp_outputs out = {.logits = logits};
        CHECK_OK(cp_model_forward(m, &b, &out));
        if (want->numel == T * V) {
            double d = test_max_abs_diff(logits, want->data, (size_t)(T * V));
            printf("  %s: cpeft's logits on the converted directory vs transformers': max diff %.3g\n", name, d);
            CHECK(d <= 1e-5, "logits differ by %g", d);
        }
        cp_free(logits);
    }
    if (m) cp_model_free(m);
    cp_st_close(&lg);
    cp_free(dir);
}

static void check_arch(const char *name, const char *model_type, int tied, int64_t head_dim, const char *const *keys) {
    check_arch_keys(name, model_type, tied, head_dim, 1, keys);
}

TEST(converts_qwen2) {
    static const char *const keys[] = {"architectures", "[\"Qwen2ForCausalLM\"]", "use_sliding_window", "false",
                                       "sliding_window", "null", "rope_theta", "1000000.0", "rms_norm_eps", "1e-06",
                                       "hidden_act", "\"silu\"", "num_key_value_heads", "2", NULL};
    check_arch("qwen2", "qwen2", 0, 8, keys);
}

TEST(converts_qwen3) {
    static const char *const keys[] = {"architectures", "[\"Qwen3ForCausalLM\"]", "attention_bias", "false",
                                       "use_sliding_window", "false", "rope_theta", "10000.0", NULL};
    check_arch("qwen3", "qwen3", 1, 16, keys);
}

TEST(converts_gemma) {
    static const char *const keys[] = {"architectures", "[\"GemmaForCausalLM\"]", "hidden_act", "\"gelu_pytorch_tanh\"",
                                       "hidden_activation", "\"gelu_pytorch_tanh\"", "pad_token_id", "0",
                                       "bos_token_id", "1", "eos_token_id", "2", NULL};
    check_arch("gemma", "gemma", 1, 16, keys);
}

/* Gemma 2: four norms per layer (all 1 + w), soft-caps 20 / 15 and window 4 from the keys,
 * query_pre_attn_scalar = head_dim (llama.cpp writes none). */
TEST(converts_gemma2) {
    static const char *const keys[] = {"architectures", "[\"Gemma2ForCausalLM\"]", "hidden_activation", "\"gelu_pytorch_tanh\"",
                                       "attn_logit_softcapping", "20.0", "final_logit_softcapping", "15.0",
                                       "sliding_window", "4", "query_pre_attn_scalar", "16", "pad_token_id", "0", NULL};
    check_arch("gemma2", "gemma2", 1, 16, keys);
}

/* Phi-3 (tied): fused attn_qkv / ffn_up as qkv_proj / gate_up_proj, partial rotary 4 of 8 dims, window 5. */
TEST(converts_phi3) {
    static const char *const keys[] = {"architectures", "[\"Phi3ForCausalLM\"]", "partial_rotary_factor", "0.5",
                                       "sliding_window", "5", "rope_theta", "5000.0", "hidden_act", "\"silu\"", NULL};
    check_arch("phi3", "phi3", 1, 8, keys);
}

TEST(converts_gpt_neox) {
    /* llama.cpp's gptneox: the fused query_key_value re-ordered to [q; k; v] (put back per head),
     * rope.dimension_count 4 of head_dim 16, use_parallel_residual false, LayerNorm epsilon */
    static const char *const keys[] = {"architectures", "[\"GPTNeoXForCausalLM\"]", "rotary_pct", "0.25",
                                       "use_parallel_residual", "false", "layer_norm_eps", "1e-05",
                                       "rotary_emb_base", "10000.0", "hidden_act", "\"gelu\"", "attention_bias", "true",
                                       "num_attention_heads", "2", NULL};
    check_arch_keys("gpt_neox", "gpt_neox", 0, 16, 0, keys);
}

TEST(converts_phi2) {
    /* llama.cpp's phi2: no transform; rope.dimension_count 4 of head_dim 8, lm_head with its bias */
    static const char *const keys[] = {"architectures", "[\"PhiForCausalLM\"]", "partial_rotary_factor", "0.5",
                                       "layer_norm_eps", "1e-05", "hidden_act", "\"gelu_new\"", "qk_layernorm", "false",
                                       "num_key_value_heads", "4", "intermediate_size", "128", "rope_theta", "10000.0",
                                       NULL};
    check_arch_keys("phi2", "phi", 0, 8, 0, keys);
}

TEST(converts_bloom) {
    /* llama.cpp's bloom: the fused query_key_value as gptneox, output.weight a copy of the embedding
     * (dropped: tied), no RoPE keys; the oracle is transformers' GGUF loader (BloomTensorProcessor) */
    static const char *const keys[] = {"architectures", "[\"BloomForCausalLM\"]", "n_head", "4", "n_layer", "2",
                                       "layer_norm_epsilon", "1e-05", "hidden_size", "32", "pretraining_tp", "1",
                                       "apply_residual_connection_post_layernorm", "false", NULL};
    check_arch_keys("bloom", "bloom", 1, 8, 0, keys);
}

TEST(bloom_output_copy_is_tied_only_when_equal) {
    char *data;
    size_t len;
    cp_gguf g;
    cp_gguf_hparams hp;
    CHECK_OK(cp_read_file(FIX "bloom.gguf", &data, &len));
    CHECK_OK(cp_gguf_parse(&g, (uint8_t *)data, len, "bloom.gguf"));
    CHECK_OK(cp_gguf_hparams_read(&g, &hp));
    CHECK(hp.tie_word_embeddings && hp.dropped_copy && !strcmp(hp.dropped_copy, "output.weight"), "copy dropped, tied");
    const cp_gguf_tensor *out = cp_gguf_find_tensor(&g, "output.weight");
    CHECK(out, "output.weight");
    if (out) ((uint8_t *)out->data)[out->nbytes - 1] ^= 1; /* one value differs: a real LM head */
    CHECK_OK(cp_gguf_hparams_read(&g, &hp));
    CHECK(!hp.tie_word_embeddings && !hp.dropped_copy, "a different output.weight is the untied lm_head");
    char hf[128];
    CHECK_OK(cp_gguf_hf_name(hp.names, "output.weight", 2, hf, sizeof hf));
    CHECK(!strcmp(hf, "lm_head.weight"), "%s", hf);
    cp_gguf_close(&g);
    cp_free(data);
}

TEST(each_architecture_owns_its_table) {
    static const char *const archs[] = {"llama", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gptneox", "phi2", "bloom"};
    for (size_t i = 0; i < 9; i++) {
        const cp_gguf_names *a = cp_gguf_names_find(archs[i]);
        CHECK(a && a->n_config > 0, "%s: table with config keys", archs[i]);
    }
    CHECK(!strcmp(cp_gguf_names_supported(), "llama, qwen2, qwen3, gemma, gemma2, phi3, gptneox, phi2, bloom"), "%s",
          cp_gguf_names_supported());
    int64_t layer;
    const cp_gguf_tensor_name *t = cp_gguf_names_match(cp_gguf_names_find("gemma"), "blk.1.ffn_norm.weight", &layer);
    CHECK(t && t->transform == CP_GGUF_MINUS_ONE && t->rope_rows == CP_GGUF_ROPE_NONE, "gemma norms: minus one");
    t = cp_gguf_names_match(cp_gguf_names_find("qwen2"), "blk.0.attn_q.weight", &layer);
    CHECK(t && t->rope_rows == CP_GGUF_ROPE_NONE, "qwen2: Q not permuted (NEOX rope in llama.cpp)");
    t = cp_gguf_names_match(cp_gguf_names_find("qwen3"), "blk.0.attn_k_norm.weight", &layer);
    CHECK(t && t->rows == CP_GGUF_DIM_HEAD && !strcmp(t->hf, "self_attn.k_norm.weight"), "qwen3 k_norm");
    CHECK(!cp_gguf_names_match(cp_gguf_names_find("qwen3"), "blk.0.attn_q.bias", &layer), "qwen3 has no biases");
    t = cp_gguf_names_match(cp_gguf_names_find("gemma2"), "blk.1.ffn_norm.weight", &layer);
    CHECK(t && t->transform == CP_GGUF_MINUS_ONE && !strcmp(t->hf, "pre_feedforward_layernorm.weight"),
          "gemma2: ffn_norm is the pre-feed-forward norm");
    t = cp_gguf_names_match(cp_gguf_names_find("phi3"), "blk.0.ffn_up.weight", &layer);
    CHECK(t && t->rows == CP_GGUF_DIM_FFN2 && !strcmp(t->hf, "mlp.gate_up_proj.weight"), "phi3: fused gate_up");
    t = cp_gguf_names_match(cp_gguf_names_find("gptneox"), "blk.1.attn_qkv.bias", &layer);
    CHECK(t && t->transform == CP_GGUF_QKV_HEADS && t->rows == CP_GGUF_DIM_QKV && layer == 1, "gptneox fused qkv bias");
    t = cp_gguf_names_match(cp_gguf_names_find("phi2"), "output.bias", &layer);
    CHECK(t && !t->optional && !strcmp(t->hf, "lm_head.bias"), "phi2: lm_head with its bias, required");
    char hf[128];
    CHECK_ERR(cp_gguf_hf_name(cp_gguf_names_find("phi2"), "blk.1.attn_qkv.weight", 2, hf, sizeof hf),
              "tensor 'blk.1.attn_qkv.weight': a fused q/k/v (pre-2024 conversions");
    CHECK_OK(cp_gguf_hf_name(cp_gguf_names_find("gptneox"), "output.weight", 2, hf, sizeof hf));
    CHECK(!strcmp(hf, "embed_out.weight"), "gptneox output: %s", hf);
}

TEST(qkv_to_heads_inverts_llamacpp_reorder) {
    /* llama.cpp: w.reshape(n_head, 3, hd, C) -> cat(w[:,0], w[:,1], w[:,2]) */
    enum { NHEAD = 3, HD = 4, ROWS = 3 * NHEAD * HD, COLS = 5 };
    float hf[ROWS * COLS], gg[ROWS * COLS], back[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) hf[i] = (float)i;
    int r = 0;
    for (int p = 0; p < 3; p++)
        for (int h = 0; h < NHEAD; h++)
            for (int j = 0; j < HD; j++, r++) memcpy(gg + r * COLS, hf + (h * 3 * HD + p * HD + j) * COLS, COLS * sizeof(float));
    CHECK_OK(cp_gguf_qkv_to_heads(back, gg, ROWS, COLS, NHEAD));
    CHECK(!memcmp(back, hf, sizeof hf), "qkv_to_heads(reorder(W)) != W");
    CHECK_ERR(cp_gguf_qkv_to_heads(back, gg, ROWS, COLS, 5), "not a multiple of 3 x 5 heads");
}

/* Replaces every occurrence of `from` (n bytes) in buf by `to` (same length); returns buf. */
static uint8_t *patch(uint8_t *buf, size_t len, const char *from, const char *to, size_t n) {
    for (size_t i = 0; buf && i + n <= len; i++)
        if (!memcmp(buf + i, from, n)) memcpy(buf + i, to, n);
    return buf;
}

/* The fixture's bytes with every occurrence of `from` replaced by `to` (same length). */
static uint8_t *patched(const char *name, const char *from, const char *to, size_t n, size_t *len) {
    char *data;
    if (cp_read_file(name, &data, len) != CP_OK) return NULL;
    return patch((uint8_t *)data, *len, from, to, n);
}

static void expect_refused(uint8_t *buf, size_t len, const char *needle) {
    cp_gguf g;
    cp_gguf_hparams hp;
    CHECK(buf, "fixture");
    if (!buf) return;
    CHECK_OK(cp_gguf_parse(&g, buf, len, "p.gguf"));
    CHECK_ERR(cp_gguf_hparams_read(&g, &hp), needle);
    cp_gguf_close(&g);
    cp_free(buf);
}

TEST(refuses_unsupported_archs_keys_and_tensors) {
    size_t len;
    /* an architecture without a table: named, with the ones that have one */
    uint8_t *b = patched(FIX "gemma.gguf", "\x05\0\0\0\0\0\0\0gemma", "\x05\0\0\0\0\0\0\0gemmx", 13, &len);
    expect_refused(b, len, "general.architecture is 'gemmx'; cpeft convert handles llama, qwen2, qwen3, gemma");
    /* a key of the architecture that the conversion does not know */
    b = patched(FIX "qwen2.gguf", "qwen2.context_length", "qwen2.context_lengtZ", 20, &len);
    expect_refused(b, len, "metadata key 'qwen2.context_lengtZ' is not supported for qwen2");
    /* qwen2's q/k/v biases under qwen3, which has none */
    b = patched(FIX "qwen2.gguf", "qwen2.", "qwen3.", 6, &len);
    b = patch(b, len, "\x05\0\0\0\0\0\0\0qwen2",
              "\x05\0\0\0\0\0\0\0qwen3", 13);
    expect_refused(b, len, "has no counterpart in a Hugging Face qwen3 model");
    /* phi3's rotary count: odd, and more than head_dim 8 */
    b = patched(FIX "phi3.gguf", "phi3.rope.dimension_count\x04\0\0\0\x04\0\0\0", "phi3.rope.dimension_count\x04\0\0\0\x03\0\0\0", 33, &len);
    expect_refused(b, len, "phi3.rope.dimension_count 3 must be even");
    b = patched(FIX "phi3.gguf", "phi3.rope.dimension_count\x04\0\0\0\x04\0\0\0", "phi3.rope.dimension_count\x04\0\0\0\x0a\0\0\0", 33, &len);
    expect_refused(b, len, "phi3.rope.dimension_count 10 must be even and at most the head dimension 8");
    /* gptneox's rotary count (rotary_pct): odd, and more than head_dim 16 */
    b = patched(FIX "gpt_neox.gguf", "dimension_count\x04\0\0\0\x04\0\0\0", "dimension_count\x04\0\0\0\x05\0\0\0",
                23, &len);
    expect_refused(b, len, "gptneox.rope.dimension_count 5 must be even and at most the head dimension 16");
    b = patched(FIX "gpt_neox.gguf", "dimension_count\x04\0\0\0\x04\0\0\0", "dimension_count\x04\0\0\0\x12\0\0\0",
                23, &len);
    expect_refused(b, len, "gptneox.rope.dimension_count 18 must be even");
    /* LayerNorm's epsilon is required where the table writes it */
    b = patched(FIX "phi2.gguf", "phi2.attention.layer_norm_epsilon", "phiX.attention.layer_norm_epsilon", 33, &len);
    expect_refused(b, len, "phi2.attention.layer_norm_epsilon");
    /* a key the table refuses, appended to the header (64 bytes, so the data section keeps its alignment) */
    char *data;
    CHECK_OK(cp_read_file(FIX "gemma.gguf", &data, &len));
    uint8_t *buf = cp_malloc(len + 64, "test");
    const char *key = "gemma.attention.sliding_window";
    uint64_t klen = strlen(key), vlen = 64 - 8 - klen - 4 - 8, n_kv;
    uint32_t type = CP_GGUF_STRING;
    memcpy(buf, data, 24);
    memcpy(&n_kv, buf + 16, 8);
    n_kv++;
    memcpy(buf + 16, &n_kv, 8);
    uint8_t *p = buf + 24;
    memcpy(p, &klen, 8), p += 8, memcpy(p, key, klen), p += klen, memcpy(p, &type, 4), p += 4;
    memcpy(p, &vlen, 8), p += 8, memset(p, 'x', vlen);
    memcpy(buf + 24 + 64, data + 24, len - 24);
    cp_free(data);
    expect_refused(buf, len + 64, "metadata key 'gemma.attention.sliding_window' is not supported: sliding-window");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cpeft-test-gguf-arch-%d", (int)getpid());
    cp_mkdirs(tmpdir);
    cp_set_quiet(1);
    RUN(converts_qwen2);
    RUN(converts_qwen3);
    RUN(converts_gemma);
    RUN(converts_gemma2);
    RUN(converts_phi3);
    RUN(converts_gpt_neox);
    RUN(converts_phi2);
    RUN(converts_bloom);
    RUN(bloom_output_copy_is_tied_only_when_equal);
    RUN(each_architecture_owns_its_table);
    RUN(qkv_to_heads_inverts_llamacpp_reorder);
    RUN(refuses_unsupported_archs_keys_and_tensors);
    rm_rf(tmpdir);
    return test_summary();
}
