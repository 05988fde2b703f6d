/*
 * gguf_convert.c — GGUF (llama architecture) to a Hugging Face checkpoint directory; see
 * gguf_convert.h for what is written and the precision it keeps.
 *
 * Three independent parts:
 *   1. hyper-parameters and tensor inventory (cp_gguf_llama_read, config.json);
 *   2. tensors: dequantize (io/gguf.c), undo llama.cpp's Q/K row permutation, rename, write
 *      model.safetensors through cp_st_write;
 *   3. the tokenizer: tokenizer.json rebuilt from tokenizer.ggml.* the way transformers'
 *      GGUF loader (integrations/gguf/gguf_tokenizer_mapping.py) and llama.cpp read the same keys:
 *      byte-level BPE for "gpt2" with the pre-tokenizer llama.cpp uses for tokenizer.ggml.pre
 *      (SmolLM: split digits, then GPT-2's regex), SentencePiece BPE with byte fallback for
 *      "llama" with merges derived from the scores (transformers' generate_merges) when the file
 *      has none.
 * Everything is checked before anything is written; the CLI writes into a staging directory
 * that it renames into place only when all files are complete.
 */
#include "io/gguf_convert.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "core/utf8.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"

/* ---- 1. hyper-parameters ------------------------------------------------------------------ */

#define LLAMA "llama."

/* Reads the token id under `key` (absent: -1), checked against the vocabulary size. */
static cp_status token_id(const cp_gguf *g, const char *key, int64_t vocab, int64_t *out) {
    if (cp_gguf_get_int(g, key, -1, 0, 0, INT32_MAX, out)) return CP_ERR;
    if (*out >= vocab)
        return cp_error("%s: metadata key '%s': token id %" PRId64 " is outside the vocabulary of %" PRId64,
                        g->path, key, *out, vocab);
    return CP_OK;
}

/* One tensor the architecture expects: GGUF suffix, Hugging Face suffix, and its shape in
 * Hugging Face order (rows, cols; cols == 0 for a vector) as a function of the hyper-parameters. */
typedef struct {
    const char *gguf, *hf;
} name_pair;

static const name_pair top_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};
static const name_pair block_names[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};
#define N_TOP (int)(sizeof top_names / sizeof *top_names)
#define N_BLOCK (int)(sizeof block_names / sizeof *block_names)

/* Parses "blk.<N>.<suffix>"; returns the index into block_names or -1. */
static int parse_block_name(const char *name, int64_t *layer) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.')) return -1;
    int64_t n = 0;
    while (*p >= '0' && *p <= '9') {
        if (n > 100000000) return -1;
        n = n * 10 + (*p++ - '0');
    }
    if (*p++ != '.') return -1;
    *layer = n;
    for (int i = 0; i < N_BLOCK; i++)
        if (!strcmp(p, block_names[i].gguf)) return i;
    return -1;
}

/* Tensors that llama.cpp writes but that are buffers, not parameters (old files' rotary tables). */
static int is_ignored_tensor(const char *name) {
    size_t n = strlen(name);
    return !strncmp(name, "blk.", 4) && n > 15 && !strcmp(name + n - 15, ".attn_rot_embd");
}

cp_status cp_gguf_llama_hf_name(const char *gguf_name, int64_t n_layers, char *out, size_t cap) {
    for (int i = 0; i < N_TOP; i++)
        if (!strcmp(gguf_name, top_names[i].gguf)) {
            if ((size_t)snprintf(out, cap, "%s", top_names[i].hf) >= cap) return cp_error("tensor name too long");
            return CP_OK;
        }
    int64_t layer;
    int b = parse_block_name(gguf_name, &layer);
    if (b < 0) {
        if (!strcmp(gguf_name, "rope_freqs.weight"))
            return cp_error("tensor 'rope_freqs.weight': Llama-3.1-style rope scaling factors; their rope_scaling "
                            "parameters cannot be recovered from a GGUF file, so this model is not supported");
        return cp_error("tensor '%s' has no counterpart in a Hugging Face llama model", gguf_name);
    }
    if (layer >= n_layers)
        return cp_error("tensor '%s': layer %" PRId64 " but the model has %" PRId64 " layers (llama.block_count)",
                        gguf_name, layer, n_layers);
    if ((size_t)snprintf(out, cap, "model.layers.%" PRId64 ".%s", layer, block_names[b].hf) >= cap)
        return cp_error("tensor name too long");
    return CP_OK;
}

/* Expected Hugging Face shape of a tensor: rows x cols (cols 0 for a vector). */
static void expected_shape(const cp_gguf_llama *hp, const char *gguf_name, int64_t *rows, int64_t *cols) {
    const int64_t H = hp->hidden_size, I = hp->intermediate_size, V = hp->vocab_size;
    const int64_t q = hp->num_attention_heads * hp->head_dim, kv = hp->num_key_value_heads * hp->head_dim;
    int64_t layer;
    *cols = 0;
    if (!strcmp(gguf_name, "token_embd.weight") || !strcmp(gguf_name, "output.weight")) { *rows = V; *cols = H; return; }
    if (!strcmp(gguf_name, "output_norm.weight")) { *rows = H; return; }
    switch (parse_block_name(gguf_name, &layer)) {
    case 0: case 5: *rows = H; return;                     /* norms */
    case 1: *rows = q; *cols = H; return;                  /* q_proj [nH*hd, H] */
    case 2: case 3: *rows = kv; *cols = H; return;         /* k_proj, v_proj [nKV*hd, H] */
    case 4: *rows = H; *cols = q; return;                  /* o_proj [H, nH*hd] */
    case 6: case 7: *rows = I; *cols = H; return;          /* gate, up [I, H] */
    case 8: *rows = H; *cols = I; return;                  /* down [H, I] */
    }
    *rows = -1;
}

static cp_status check_tensors(const cp_gguf *g, cp_gguf_llama *hp) {
    char hf[256];
    /* Every tensor known, of the right shape. */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (is_ignored_tensor(t->name)) continue;
        if (cp_gguf_llama_hf_name(t->name, hp->num_hidden_layers, hf, sizeof hf))
            return cp_error_context("%s", g->path);
        int64_t rows, cols;
        expected_shape(hp, t->name, &rows, &cols);
        int ok = cols ? (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows)
                      : (t->n_dims == 1 && t->ne[0] == rows);
        if (!ok) {
            char got[96];
            if (t->n_dims == 1) snprintf(got, sizeof got, "[%" PRId64 "]", t->ne[0]);
            else snprintf(got, sizeof got, "[%" PRId64 ", %" PRId64 "%s]", t->ne[t->n_dims - 1], t->ne[t->n_dims - 2],
                          t->n_dims > 2 ? ", ..." : "");
            if (cols)
                return cp_error("%s: tensor '%s' (%s) has Hugging Face shape %s, expected [%" PRId64 ", %" PRId64 "]",
                                g->path, t->name, hf, got, rows, cols);
            return cp_error("%s: tensor '%s' (%s) has Hugging Face shape %s, expected [%" PRId64 "]", g->path, t->name,
                            hf, got, rows);
        }
    }
    /* Every expected tensor present (output.weight optional: tied). */
    char name[96];
    for (int i = 0; i < N_TOP; i++)
        if (i != 2 && !cp_gguf_find_tensor(g, top_names[i].gguf))
            return cp_error("%s: tensor '%s' is missing", g->path, top_names[i].gguf);
    for (int64_t l = 0; l < hp->num_hidden_layers; l++)
        for (int i = 0; i < N_BLOCK; i++) {
            snprintf(name, sizeof name, "blk.%" PRId64 ".%s", l, block_names[i].gguf);
            if (!cp_gguf_find_tensor(g, name)) return cp_error("%s: tensor '%s' is missing", g->path, name);
        }
    hp->tie_word_embeddings = cp_gguf_find_tensor(g, "output.weight") == NULL;
    return CP_OK;
}

cp_status cp_gguf_llama_read(const cp_gguf *g, cp_gguf_llama *hp) {
    memset(hp, 0, sizeof *hp);
    char *arch = NULL;
    if (cp_gguf_get_string(g, "general.architecture", 1, &arch)) return CP_ERR;
    if (strcmp(arch, "llama") != 0) {
        cp_status st = cp_error("%s: general.architecture is '%s'; cpeft convert handles 'llama' (Llama, Mistral, "
                                "SmolLM, TinyLlama)", g->path, arch);
        cp_free(arch);
        return st;
    }
    cp_free(arch);
    const int64_t BIG = (int64_t)1 << 24;
    int64_t experts;
    if (cp_gguf_get_int(g, LLAMA "embedding_length", 0, 1, 1, BIG, &hp->hidden_size) ||
        cp_gguf_get_int(g, LLAMA "block_count", 0, 1, 1, 100000, &hp->num_hidden_layers) ||
        cp_gguf_get_int(g, LLAMA "feed_forward_length", 0, 1, 1, BIG, &hp->intermediate_size) ||
        cp_gguf_get_int(g, LLAMA "attention.head_count", 0, 1, 1, 65536, &hp->num_attention_heads) ||
        cp_gguf_get_int(g, LLAMA "attention.head_count_kv", hp->num_attention_heads, 0, 1, 65536,
                        &hp->num_key_value_heads) ||
        cp_gguf_get_int(g, LLAMA "context_length", 2048, 0, 1, INT32_MAX, &hp->max_position_embeddings) ||
        cp_gguf_get_int(g, LLAMA "expert_count", 0, 0, 0, 65536, &experts) ||
        cp_gguf_get_float(g, LLAMA "attention.layer_norm_rms_epsilon", 1e-5, 1, &hp->rms_norm_eps) ||
        cp_gguf_get_float(g, LLAMA "rope.freq_base", 10000.0, 0, &hp->rope_theta))
        return CP_ERR;
    const cp_gguf_kv *kv;
    hp->rms_norm_eps_f32 = (kv = cp_gguf_find_kv(g, LLAMA "attention.layer_norm_rms_epsilon")) && kv->type == CP_GGUF_FLOAT32;
    hp->rope_theta_f32 = !(kv = cp_gguf_find_kv(g, LLAMA "rope.freq_base")) || kv->type == CP_GGUF_FLOAT32;
    if (experts > 0)
        return cp_error("%s: llama.expert_count is %" PRId64 ": mixture-of-experts models are not supported", g->path, experts);
    if (hp->num_attention_heads % hp->num_key_value_heads)
        return cp_error("%s: num_key_value_heads (%" PRId64 ", llama.attention.head_count_kv) does not divide "
                        "num_attention_heads (%" PRId64 ")", g->path, hp->num_key_value_heads, hp->num_attention_heads);
    if (!(hp->rms_norm_eps > 0) || !(hp->rope_theta > 0))
        return cp_error("%s: rms_norm_eps (%g) and rope_theta (%g) must be positive", g->path, hp->rms_norm_eps,
                        hp->rope_theta);
    /* head_dim: attention.key_length when given, else hidden / heads. */
    int64_t key_len, value_len, rope_dim;
    if (cp_gguf_get_int(g, LLAMA "attention.key_length", 0, 0, 0, 65536, &key_len) ||
        cp_gguf_get_int(g, LLAMA "attention.value_length", key_len, 0, 0, 65536, &value_len))
        return CP_ERR;
    if (key_len == 0) {
        if (hp->hidden_size % hp->num_attention_heads)
            return cp_error("%s: hidden size %" PRId64 " is not a multiple of %" PRId64 " heads and the file has no "
                            "llama.attention.key_length", g->path, hp->hidden_size, hp->num_attention_heads);
        key_len = value_len = hp->hidden_size / hp->num_attention_heads;
    }
    if (value_len != key_len)
        return cp_error("%s: attention.key_length %" PRId64 " differs from attention.value_length %" PRId64
                        " (not a llama model)", g->path, key_len, value_len);
    if (key_len % 2) return cp_error("%s: head dimension %" PRId64 " is odd; RoPE needs pairs", g->path, key_len);
    hp->head_dim = key_len;
    if (cp_gguf_get_int(g, LLAMA "rope.dimension_count", hp->head_dim, 0, 1, 65536, &rope_dim)) return CP_ERR;
    if (rope_dim != hp->head_dim)
        return cp_error("%s: llama.rope.dimension_count %" PRId64 " differs from the head dimension %" PRId64
                        " (partial rotary embeddings are not supported)", g->path, rope_dim, hp->head_dim);
    /* RoPE scaling: none or linear. */
    char *scaling = NULL;
    double factor = 0, linear = 0;
    if (cp_gguf_get_string(g, LLAMA "rope.scaling.type", 0, &scaling) ||
        cp_gguf_get_float(g, LLAMA "rope.scaling.factor", 0, 0, &factor) ||
        cp_gguf_get_float(g, LLAMA "rope.scale_linear", 0, 0, &linear)) {
        cp_free(scaling);
        return CP_ERR;
    }
    if (scaling && strcmp(scaling, "none") != 0 && strcmp(scaling, "linear") != 0) {
        cp_status st = cp_error("%s: llama.rope.scaling.type '%s' is not supported (none, linear)", g->path, scaling);
        cp_free(scaling);
        return st;
    }
    if (scaling && !strcmp(scaling, "linear")) hp->rope_scaling_factor = factor > 0 ? factor : 1.0;
    else if (!scaling && linear > 0 && linear != 1.0) hp->rope_scaling_factor = linear;
    if (hp->rope_scaling_factor == 1.0) hp->rope_scaling_factor = 0;
    cp_free(scaling);
    /* Vocabulary: llama.vocab_size, else the embedding's rows. */
    const cp_gguf_tensor *emb = cp_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return cp_error("%s: tensor 'token_embd.weight' is missing or not a matrix", g->path);
    if (cp_gguf_get_int(g, LLAMA "vocab_size", emb->ne[1], 0, 1, INT32_MAX, &hp->vocab_size)) return CP_ERR;
    if (token_id(g, "tokenizer.ggml.bos_token_id", hp->vocab_size, &hp->bos_token_id) ||
        token_id(g, "tokenizer.ggml.eos_token_id", hp->vocab_size, &hp->eos_token_id) ||
        token_id(g, "tokenizer.ggml.padding_token_id", hp->vocab_size, &hp->pad_token_id) ||
        token_id(g, "tokenizer.ggml.unknown_token_id", hp->vocab_size, &hp->unk_token_id))
        return CP_ERR;
    return check_tensors(g, hp);
}

/* Python's repr of the shortest decimal that reads back as the same float (f32) or double:
 * "1e-05" for the f32 nearest 1e-5, "100000.0" for 1e5 (the ".0" keeps a float a float). */
static void shortest_float(double v, int as_f32, char *buf, size_t cap) {
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*e", prec - 1, v);
        if (as_f32 ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    const char *e = strchr(buf, 'e');
    int exp = e ? atoi(e + 1) : 0;
    if (exp >= -4 && exp < 16) { /* Python switches to exponent notation outside this range */
        int dec = prec - 1 - exp;
        snprintf(buf, cap, "%.*f", dec > 0 ? dec : 0, v);
        if (!strchr(buf, '.')) {
            size_t n = strlen(buf);
            if (n + 3 <= cap) memcpy(buf + n, ".0", 3);
        }
    }
}

static cJSON *raw_float(double v, int as_f32) {
    char buf[40];
    shortest_float(v, as_f32, buf, sizeof buf);
    return cJSON_CreateRaw(buf);
}

static void add_id(cJSON *o, const char *key, int64_t id) {
    if (id >= 0) cJSON_AddNumberToObject(o, key, (double)id);
}

/* Serialises like Python's json.dump(indent=2, sort_keys=True) plus a newline; frees `root`. */
static char *dump_and_free(cJSON *root) {
    char *text = root ? cp_json_dump_python(root) : NULL;
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text);
    char *out = cp_realloc(text, n + 2, "a JSON file");
    if (!out) { cp_free(text); return NULL; }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

char *cp_gguf_llama_config_json(const cp_gguf_llama *hp, const char *torch_dtype) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddBoolToObject(c, "attention_bias", 0);
    cJSON_AddItemToObject(c, "attention_dropout", cJSON_CreateRaw("0.0"));
    add_id(c, "bos_token_id", hp->bos_token_id);
    add_id(c, "eos_token_id", hp->eos_token_id);
    cJSON_AddNumberToObject(c, "head_dim", (double)hp->head_dim);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", (double)hp->hidden_size);
    cJSON_AddItemToObject(c, "initializer_range", cJSON_CreateRaw("0.02"));
    cJSON_AddNumberToObject(c, "intermediate_size", (double)hp->intermediate_size);
    cJSON_AddNumberToObject(c, "max_position_embeddings", (double)hp->max_position_embeddings);
    cJSON_AddBoolToObject(c, "mlp_bias", 0);
    cJSON_AddStringToObject(c, "model_type", "llama");
    cJSON_AddNumberToObject(c, "num_attention_heads", (double)hp->num_attention_heads);
    cJSON_AddNumberToObject(c, "num_hidden_layers", (double)hp->num_hidden_layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", (double)hp->num_key_value_heads);
    add_id(c, "pad_token_id", hp->pad_token_id);
    cJSON_AddNumberToObject(c, "pretraining_tp", 1);
    cJSON_AddItemToObject(c, "rms_norm_eps", raw_float(hp->rms_norm_eps, hp->rms_norm_eps_f32));
    if (hp->rope_scaling_factor > 0) {
        cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddItemToObject(rs, "factor", raw_float(hp->rope_scaling_factor, 1));
        cJSON_AddStringToObject(rs, "rope_type", "linear");
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    cJSON_AddItemToObject(c, "rope_theta", raw_float(hp->rope_theta, hp->rope_theta_f32));
    cJSON_AddBoolToObject(c, "tie_word_embeddings", hp->tie_word_embeddings);
    cJSON_AddStringToObject(c, "torch_dtype", torch_dtype);
    cJSON_AddBoolToObject(c, "use_cache", 1);
    cJSON_AddNumberToObject(c, "vocab_size", (double)hp->vocab_size);
    return dump_and_free(c);
}

char *cp_gguf_llama_generation_config_json(const cp_gguf_llama *hp) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    add_id(c, "bos_token_id", hp->bos_token_id);
    add_id(c, "eos_token_id", hp->eos_token_id);
    add_id(c, "pad_token_id", hp->pad_token_id);
    return dump_and_free(c);
}

/* ---- 2. tensors --------------------------------------------------------------------------- */

cp_status cp_gguf_unpermute_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t n_head) {
    if (n_head <= 0 || rows % (2 * n_head))
        return cp_error("cannot undo the Q/K permutation: %" PRId64 " rows are not a multiple of 2 x %" PRId64 " heads",
                        rows, n_head);
    const int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++) {
                /* GGUF row h*hd + 2j + i holds Hugging Face row h*hd + i*half + j */
                const float *s = src + (h * hd + 2 * j + i) * cols;
                float *d = dst + (h * hd + i * half + j) * cols;
                memcpy(d, s, (size_t)cols * sizeof *d);
            }
    return CP_OK;
}

static cp_dtype out_dtype_for(int src_type, int requested) {
    if (requested >= 0) return (cp_dtype)requested;
    if (src_type == CP_GGML_F16) return CP_F16;
    if (src_type == CP_GGML_BF16) return CP_BF16;
    return CP_F32;
}

static const char *torch_dtype_name(cp_dtype dt) {
    return dt == CP_F16 ? "float16" : dt == CP_BF16 ? "bfloat16" : "float32";
}

/* Whether narrowing values of ggml type `src` to `dst` can round them. */
static int narrowing_rounds(int src, cp_dtype dst) {
    if (dst == CP_F32) return 0;
    if (dst == CP_F16) return src != CP_GGML_F16;
    return src != CP_GGML_BF16;
}

/* Dequantizes, un-permutes and narrows every tensor, then writes model.safetensors. */
static cp_status write_tensors(const cp_gguf *g, const cp_gguf_llama *hp, const char *path, int dtype,
                               cp_gguf_convert_report *rep) {
    int64_t n = 0;
    cp_st_write_tensor *wt = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *wt, "tensor list");
    char **names = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *names, "tensor names");
    void **bufs = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *bufs, "tensor buffers");
    cp_status st = (wt && names && bufs) ? CP_OK : CP_ERR;
    for (int64_t i = 0; st == CP_OK && i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (is_ignored_tensor(t->name)) continue;
        char hf[256];
        if ((st = cp_gguf_llama_hf_name(t->name, hp->num_hidden_layers, hf, sizeof hf))) break;
        const cp_dtype odt = out_dtype_for(t->type, dtype);
        float *vals = cp_malloc((size_t)t->numel * sizeof *vals, t->name);
        if (!vals || (st = cp_gguf_dequantize(g, t, vals))) { cp_free(vals); st = CP_ERR; break; }
        /* Q and K rows back to rotate-half order. */
        int64_t layer, n_head = 0;
        int b = parse_block_name(t->name, &layer);
        if (b == 1) n_head = hp->num_attention_heads;
        if (b == 2) n_head = hp->num_key_value_heads;
        if (n_head) {
            float *perm = cp_malloc((size_t)t->numel * sizeof *perm, t->name);
            if (!perm || (st = cp_gguf_unpermute_rows(perm, vals, t->ne[1], t->ne[0], n_head))) {
                cp_free(perm);
                cp_free(vals);
                st = cp_error_context("%s: tensor '%s'", g->path, t->name);
                break;
            }
            cp_free(vals);
            vals = perm;
        }
        void *data = vals;
        if (odt != CP_F32) {
            data = cp_malloc((size_t)t->numel * 2, t->name);
            if (!data) { cp_free(vals); st = CP_ERR; break; }
            cp_convert_from_f32(data, odt, vals, (size_t)t->numel);
            cp_free(vals);
        }
        if (!(names[n] = cp_strdup(hf))) { cp_free(data); st = CP_ERR; break; }
        bufs[n] = data;
        wt[n].name = names[n];
        wt[n].dtype = odt;
        wt[n].data = data;
        wt[n].ndim = t->n_dims;
        for (int d = 0; d < t->n_dims; d++) wt[n].shape[d] = t->ne[t->n_dims - 1 - d]; /* HF order */
        if (rep) {
            rep->n_params += t->numel;
            rep->tensors_by_type[t->type]++;
            rep->n_quantized += cp_ggml_is_quantized(t->type);
            rep->n_rounded += narrowing_rounds(t->type, odt);
            rep->safetensors_bytes += (uint64_t)cp_dtype_nbytes(odt, t->numel);
            if (!strcmp(t->name, "token_embd.weight")) rep->weight_dtype = odt;
        }
        n++;
    }
    if (st == CP_OK) {
        const char *mk[1] = {"format"}, *mv[1] = {"pt"};
        st = cp_st_write(path, wt, (int)n, mk, mv, 1);
    }
    for (int64_t i = 0; i < n; i++) {
        cp_free(names[i]);
        cp_free(bufs[i]);
    }
    cp_free(names);
    cp_free(bufs);
    cp_free(wt);
    if (rep) rep->n_tensors = n;
    return st;
}

/* ---- 3. the tokenizer --------------------------------------------------------------------- */

/* A string -> id hash map (open addressing, FNV-1a); keys point into the GGUF image or into
 * buffers that outlive the map. Putting an existing key overwrites its id (Python dict order:
 * the last id wins). */
typedef struct {
    const char *s;
    uint64_t len;
    int32_t id;
} slot;
typedef struct {
    slot *slots;
    size_t mask;
} strmap;

static uint64_t fnv1a(const char *s, uint64_t n) {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static cp_status map_init(strmap *m, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    m->slots = cp_calloc(cap, sizeof *m->slots, "a vocabulary index");
    m->mask = cap - 1;
    return m->slots ? CP_OK : CP_ERR;
}

static slot *map_slot(const strmap *m, const char *s, uint64_t len) {
    size_t i = (size_t)fnv1a(s, len) & m->mask;
    while (m->slots[i].s && (m->slots[i].len != len || memcmp(m->slots[i].s, s, (size_t)len)))
        i = (i + 1) & m->mask;
    return &m->slots[i];
}

static void map_put(strmap *m, const char *s, uint64_t len, int32_t id) {
    slot *sl = map_slot(m, s, len);
    sl->s = s;
    sl->len = len;
    sl->id = id;
}

static int32_t map_get(const strmap *m, const char *s, uint64_t len) {
    const slot *sl = map_slot(m, s, len);
    return sl->s ? sl->id : -1;
}

/* GPT-2's byte -> code point table (bytes_to_unicode) and its alphabet. */
static void byte_table(uint32_t table[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        table[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static int in_byte_alphabet(uint32_t c) {
    return (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0x143);
}

/* Pre-tokenizer regexes (Oniguruma / fancy-regex syntax, as tokenizers' Split takes them). */
static const char *const LLAMA3_SPLIT =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+";
static const char *const QWEN2_SPLIT =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+";

/* The pre-tokenizer llama.cpp applies for each tokenizer.ggml.pre of a "gpt2" vocabulary. */
typedef enum { PRE_GPT2, PRE_DIGITS, PRE_LLAMA3, PRE_QWEN2 } pre_kind;
static const struct {
    const char *name;
    pre_kind kind;
} pre_types[] = {
    {"default", PRE_GPT2},    {"gpt-2", PRE_GPT2},      {"gpt2", PRE_GPT2},       {"mpt", PRE_GPT2},
    {"olmo", PRE_GPT2},       {"jais", PRE_GPT2},       {"smollm", PRE_DIGITS},   {"starcoder", PRE_DIGITS},
    {"refact", PRE_DIGITS},   {"command-r", PRE_DIGITS}, {"codeshell", PRE_DIGITS}, {"exaone", PRE_DIGITS},
    {"minerva", PRE_DIGITS},  {"llama3", PRE_LLAMA3},   {"llama-v3", PRE_LLAMA3}, {"llama-bpe", PRE_LLAMA3},
    {"falcon3", PRE_LLAMA3},  {"falcon-h1", PRE_LLAMA3}, {"pixtral", PRE_LLAMA3}, {"midm-2.0", PRE_LLAMA3},
    {"lfm2", PRE_LLAMA3},     {"dbrx", PRE_LLAMA3},     {"smaug-bpe", PRE_LLAMA3}, {"qwen2", PRE_QWEN2},
    {"deepseek-r1-qwen", PRE_QWEN2},
};

static int pre_kind_of(const char *pre) {
    for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
        if (!strcmp(pre, pre_types[i].name)) return (int)pre_types[i].kind;
    return -1;
}

/* Everything the tokenizer builders need, read once. */
typedef struct {
    const cp_gguf *g;
    const cp_gguf_kv *tokens, *types, *scores, *merges;
    cp_gguf_str *vocab;     /* token strings as written to tokenizer.json (respelled for gpt2) */
    char *respelled;        /* storage for respelled gpt2 tokens */
    strmap map;             /* vocab string -> id (last id wins) */
    int64_t n;
    int64_t bos, eos, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    char *chat_template;
} tokinfo;

static int token_type(const tokinfo *ti, int64_t id) {
    return ti->types && (uint64_t)id < ti->types->arr_len ? (int)cp_gguf_arr_int(ti->types, (uint64_t)id) : 1;
}

/* add_bos defaults to what llama.cpp does when the file does not say: on for SentencePiece
 * vocabularies and for the Llama-3 family of pre-tokenizers, off otherwise. */
static cp_status tokinfo_read(const cp_gguf *g, const char *model, const char *pre, tokinfo *ti) {
    memset(ti, 0, sizeof *ti);
    ti->g = g;
    if (cp_gguf_get_array(g, "tokenizer.ggml.tokens", CP_GGUF_STRING, 1, &ti->tokens) ||
        cp_gguf_get_array(g, "tokenizer.ggml.token_type", CP_GGUF_INT32, 0, &ti->types) ||
        cp_gguf_get_array(g, "tokenizer.ggml.scores", CP_GGUF_FLOAT32, 0, &ti->scores) ||
        cp_gguf_get_array(g, "tokenizer.ggml.merges", CP_GGUF_STRING, 0, &ti->merges))
        return CP_ERR;
    ti->n = (int64_t)ti->tokens->arr_len;
    if (ti->n < 1 || ti->n > INT32_MAX)
        return cp_error("%s: tokenizer.ggml.tokens holds %" PRId64 " tokens", g->path, ti->n);
    if (ti->types && (int64_t)ti->types->arr_len != ti->n)
        return cp_error("%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRId64 " tokens", g->path,
                        ti->types->arr_len, ti->n);
    if (ti->scores && (int64_t)ti->scores->arr_len != ti->n)
        return cp_error("%s: tokenizer.ggml.scores has %" PRIu64 " entries for %" PRId64 " tokens", g->path,
                        ti->scores->arr_len, ti->n);
    int is_spm = !strcmp(model, "llama");
    if (token_id(g, "tokenizer.ggml.bos_token_id", ti->n, &ti->bos) ||
        token_id(g, "tokenizer.ggml.eos_token_id", ti->n, &ti->eos) ||
        token_id(g, "tokenizer.ggml.unknown_token_id", ti->n, &ti->unk) ||
        token_id(g, "tokenizer.ggml.padding_token_id", ti->n, &ti->pad))
        return CP_ERR;
    int bos_default = ti->bos >= 0 && (is_spm || (pre && pre_kind_of(pre) == PRE_LLAMA3));
    if (cp_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", bos_default, 0, &ti->add_bos) ||
        cp_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", 0, 0, &ti->add_eos) ||
        cp_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", 1, 0, &ti->add_space_prefix) ||
        cp_gguf_get_string(g, "tokenizer.chat_template", 0, &ti->chat_template))
        return CP_ERR;
    if (ti->chat_template && !cp_utf8_valid(ti->chat_template, strlen(ti->chat_template)))
        return cp_error("%s: tokenizer.chat_template is not valid UTF-8", g->path);
    if (ti->add_bos && ti->bos < 0)
        return cp_error("%s: tokenizer.ggml.add_bos_token is set but there is no tokenizer.ggml.bos_token_id", g->path);
    if (ti->add_eos && ti->eos < 0)
        return cp_error("%s: tokenizer.ggml.add_eos_token is set but there is no tokenizer.ggml.eos_token_id", g->path);
    for (int64_t i = 0; i < ti->n; i++) {
        const cp_gguf_str *s = &ti->tokens->arr_strs[i];
        if (!cp_utf8_valid(s->ptr, (size_t)s->len))
            return cp_error("%s: tokenizer.ggml.tokens: token %" PRId64 " is not valid UTF-8", g->path, i);
        if (s->len == 0) return cp_error("%s: tokenizer.ggml.tokens: token %" PRId64 " is empty", g->path, i);
    }
    if (ti->scores)
        for (int64_t i = 0; i < ti->n; i++) {
            double v = cp_gguf_arr_float(ti->scores, (uint64_t)i);
            if (v != v) return cp_error("%s: tokenizer.ggml.scores: score %" PRId64 " is NaN", g->path, i);
        }
    ti->vocab = cp_malloc((size_t)ti->n * sizeof *ti->vocab, "the vocabulary");
    if (!ti->vocab) return CP_ERR;
    memcpy(ti->vocab, ti->tokens->arr_strs, (size_t)ti->n * sizeof *ti->vocab);
    /* Byte-level vocabularies: a token written outside GPT-2's byte alphabet (llama.cpp stores
     * some added tokens with real spaces) is respelled byte by byte, as transformers does. */
    if (!is_spm) {
        uint32_t table[256];
        uint64_t need = 0;
        byte_table(table);
        for (int64_t i = 0; i < ti->n; i++) need += ti->vocab[i].len * 2;
        ti->respelled = cp_malloc((size_t)need + 1, "respelled tokens");
        if (!ti->respelled) return CP_ERR;
        char *w = ti->respelled;
        for (int64_t i = 0; i < ti->n; i++) {
            cp_gguf_str *s = &ti->vocab[i];
            int ok = 1;
            for (size_t k = 0, l; k < s->len && ok; k += l) ok = in_byte_alphabet(cp_utf8_decode(s->ptr + k, &l));
            if (ok) continue;
            char *start = w;
            for (uint64_t k = 0; k < s->len; k++) w += cp_utf8_encode(table[(uint8_t)s->ptr[k]], w);
            s->ptr = start;
            s->len = (uint64_t)(w - start);
        }
    }
    if (map_init(&ti->map, ti->n)) return CP_ERR;
    for (int64_t i = 0; i < ti->n; i++) map_put(&ti->map, ti->vocab[i].ptr, ti->vocab[i].len, (int32_t)i);
    return CP_OK;
}

static void tokinfo_free(tokinfo *ti) {
    cp_free(ti->vocab);
    cp_free(ti->respelled);
    cp_free(ti->map.slots);
    cp_free(ti->chat_template);
}

/* Which tokens become added tokens: control tokens (type 3) and the bos/eos/unk/pad tokens as
 * special, user-defined ones (type 4) as plain added tokens. In a byte-level vocabulary a control
 * token spelled outside the byte alphabet is a llama.cpp mislabel and is skipped, as transformers
 * does. Returns 0 (not added), 1 (special) or 2 (not special). */
static int added_kind(const tokinfo *ti, int64_t id, int byte_level) {
    int t = token_type(ti, id);
    const cp_gguf_str *orig = &ti->tokens->arr_strs[id];
    int spelled = !byte_level || (ti->vocab[id].ptr == orig->ptr);
    if (t == 3 && spelled) return 1;
    if (id == ti->bos || id == ti->eos || id == ti->unk || id == ti->pad) return spelled ? 1 : 0;
    if (t == 4 && map_get(&ti->map, orig->ptr, orig->len) >= 0) return 2;
    return 0;
}

static void write_added_tokens(cp_strbuf *sb, const tokinfo *ti, int byte_level, int64_t *n_added) {
    int first = 1;
    cp_sb_append(sb, "  \"added_tokens\": [");
    for (int64_t id = 0; id < ti->n; id++) {
        int k = added_kind(ti, id, byte_level);
        if (!k) continue;
        /* The vocabulary maps this string to `id` only when no later token has the same spelling. */
        if (map_get(&ti->map, ti->vocab[id].ptr, ti->vocab[id].len) != (int32_t)id) continue;
        cp_sb_printf(sb, "%s\n    {\"id\": %" PRId64 ", \"content\": ", first ? "" : ",", id);
        cp_json_write_string(sb, ti->vocab[id].ptr, ti->vocab[id].len, 0);
        cp_sb_printf(sb, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                         "\"special\": %s}", k == 1 ? "true" : "false");
        first = 0;
        (*n_added)++;
    }
    cp_sb_append(sb, first ? "],\n" : "\n  ],\n");
}

static void write_vocab(cp_strbuf *sb, const tokinfo *ti) {
    cp_sb_append(sb, "    \"vocab\": {");
    int first = 1;
    for (int64_t id = 0; id < ti->n; id++) {
        if (map_get(&ti->map, ti->vocab[id].ptr, ti->vocab[id].len) != (int32_t)id) continue; /* a later duplicate wins */
        cp_sb_append(sb, first ? "\n      " : ",\n      ");
        cp_json_write_string(sb, ti->vocab[id].ptr, ti->vocab[id].len, 0);
        cp_sb_printf(sb, ": %" PRId64, id);
        first = 0;
    }
    cp_sb_append(sb, "\n    },\n");
}

/* TemplateProcessing that adds bos / eos as tokenizer.ggml.add_bos_token / add_eos_token say
 * (transformers' update_post_processor). */
static void write_post_processor(cp_strbuf *sb, const tokinfo *ti) {
    const cp_gguf_str *bos = ti->add_bos ? &ti->vocab[ti->bos] : NULL, *eos = ti->add_eos ? &ti->vocab[ti->eos] : NULL;
    cp_sb_append(sb, "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [");
    for (int pair = 0; pair < 2; pair++) {
        for (int seq = 0; seq <= pair; seq++) {
            if (seq) cp_sb_append(sb, ", ");
            if (bos) {
                cp_sb_append(sb, "{\"SpecialToken\": {\"id\": ");
                cp_json_write_string(sb, bos->ptr, bos->len, 0);
                cp_sb_printf(sb, ", \"type_id\": %d}}, ", seq);
            }
            cp_sb_printf(sb, "{\"Sequence\": {\"id\": \"%c\", \"type_id\": %d}}", seq ? 'B' : 'A', seq);
            if (eos) {
                cp_sb_append(sb, ", {\"SpecialToken\": {\"id\": ");
                cp_json_write_string(sb, eos->ptr, eos->len, 0);
                cp_sb_printf(sb, ", \"type_id\": %d}}", seq);
            }
        }
        cp_sb_append(sb, pair ? "], \"special_tokens\": {" : "], \"pair\": [");
    }
    const cp_gguf_str *sp[2] = {bos, eos};
    const int64_t ids[2] = {ti->bos, ti->eos};
    int first = 1;
    for (int k = 0; k < 2; k++) {
        if (!sp[k] || (k == 1 && bos && ids[0] == ids[1])) continue;
        if (!first) cp_sb_append(sb, ", ");
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_append(sb, ": {\"id\": ");
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_printf(sb, ", \"ids\": [%" PRId64 "], \"tokens\": [", ids[k]);
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_append(sb, "]}");
        first = 0;
    }
    cp_sb_append(sb, "}},\n");
}

static cp_status write_byte_level_parts(cp_strbuf *sb, const cp_gguf *g, const char *pre, int *ignore_merges) {
    int kind = pre_kind_of(pre);
    if (kind < 0) {
        cp_strbuf names;
        cp_sb_init(&names);
        for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
            cp_sb_printf(&names, "%s%s", i ? ", " : "", pre_types[i].name);
        char *list = cp_sb_finish(&names);
        cp_status st = cp_error("%s: tokenizer.ggml.pre '%s' is not supported (known: %s)", g->path, pre,
                                list ? list : "?");
        cp_free(list);
        return st;
    }
    *ignore_merges = kind == PRE_LLAMA3;
    cp_sb_append(sb, kind == PRE_QWEN2 ? "  \"normalizer\": {\"type\": \"NFC\"},\n" : "  \"normalizer\": null,\n");
    switch (kind) {
    case PRE_GPT2:
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                         "\"trim_offsets\": true, \"use_regex\": true},\n");
        break;
    case PRE_DIGITS: /* llama.cpp: "\p{N}" then GPT-2's regex */
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                         "{\"type\": \"Digits\", \"individual_digits\": true}, "
                         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                         "\"use_regex\": true}]},\n");
        break;
    default:
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                         "{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        cp_json_write_cstring(sb, kind == PRE_LLAMA3 ? LLAMA3_SPLIT : QWEN2_SPLIT, 0);
        cp_sb_append(sb, "}, \"behavior\": \"Isolated\", \"invert\": false}, "
                         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                         "\"use_regex\": false}]},\n");
    }
    return CP_OK;
}

/* Merges from tokenizer.ggml.merges ("left right"), each part and their concatenation checked
 * against the vocabulary (tokenizers refuses a file where they are not). */
static cp_status write_file_merges(cp_strbuf *sb, const tokinfo *ti, int64_t *n_merges) {
    const cp_gguf_kv *m = ti->merges;
    cp_sb_append(sb, "    \"merges\": [");
    char *cat = NULL;
    size_t cat_cap = 0;
    cp_status st = CP_OK;
    for (uint64_t i = 0; i < m->arr_len && st == CP_OK; i++) {
        const cp_gguf_str *s = &m->arr_strs[i];
        const char *sp = memchr(s->ptr, ' ', (size_t)s->len);
        uint64_t ll = sp ? (uint64_t)(sp - s->ptr) : 0, rl = sp ? s->len - ll - 1 : 0;
        if (!cp_utf8_valid(s->ptr, (size_t)s->len) || !sp || ll == 0 || rl == 0 || memchr(sp + 1, ' ', (size_t)rl)) {
            st = cp_error("%s: tokenizer.ggml.merges: merge %" PRIu64 " is not two tokens separated by one space",
                          ti->g->path, i);
            break;
        }
        if (ll + rl > cat_cap) {
            cp_free(cat);
            cat_cap = (size_t)(ll + rl) * 2;
            if (!(cat = cp_malloc(cat_cap, "a merge"))) { st = CP_ERR; break; }
        }
        memcpy(cat, s->ptr, (size_t)ll);
        memcpy(cat + ll, sp + 1, (size_t)rl);
        if (map_get(&ti->map, s->ptr, ll) < 0 || map_get(&ti->map, sp + 1, rl) < 0 || map_get(&ti->map, cat, ll + rl) < 0) {
            st = cp_error("%s: tokenizer.ggml.merges: merge %" PRIu64 " ('%.*s') uses a token that is not in the vocabulary",
                          ti->g->path, i, (int)(s->len > 200 ? 200 : s->len), s->ptr);
            break;
        }
        cp_sb_append(sb, i ? ",\n      [" : "\n      [");
        cp_json_write_string(sb, s->ptr, ll, 0);
        cp_sb_append(sb, ", ");
        cp_json_write_string(sb, sp + 1, rl, 0);
        cp_sb_append(sb, "]");
    }
    cp_free(cat);
    cp_sb_append(sb, m->arr_len ? "\n    ]\n" : "]\n");
    *n_merges = (int64_t)m->arr_len;
    return st;
}

/* SentencePiece merges derived from the vocabulary and scores, as transformers' generate_merges
 * (tokenization_utils_base.py) does for a GGUF without merges: for each token in order, every
 * split into two vocabulary tokens (at character boundaries), sorted by the two parts' ids; then
 * all of them stably sorted by the merged token's score, descending, then by the left and right
 * parts' lengths in characters, descending. */
typedef struct {
    int32_t l, r;       /* ids of the parts */
    uint32_t lo, ro;    /* byte length of the left part (the right starts there) */
    float score;
    int32_t lchars, rchars;
    int64_t seq;
    int32_t tok;
} merge_cand;

static int cmp_local(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_global(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->lchars != y->lchars) return x->lchars > y->lchars ? -1 : 1;
    if (x->rchars != y->rchars) return x->rchars > y->rchars ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static cp_status write_derived_merges(cp_strbuf *sb, const tokinfo *ti, int64_t *n_merges) {
    if (!ti->scores)
        return cp_error("%s: the tokenizer has neither tokenizer.ggml.merges nor tokenizer.ggml.scores", ti->g->path);
    size_t cap = 1024, n = 0;
    merge_cand *c = cp_malloc(cap * sizeof *c, "merges");
    if (!c) return CP_ERR;
    for (int64_t id = 0; id < ti->n; id++) {
        const cp_gguf_str *t = &ti->vocab[id];
        /* dict(zip(tokens, scores)): the first occurrence's position, the last one's score. */
        int32_t last = map_get(&ti->map, t->ptr, t->len);
        int first_occurrence = 1;
        if (last != (int32_t)id)
            for (int64_t k = 0; k < id && first_occurrence; k++)
                if (ti->vocab[k].len == t->len && !memcmp(ti->vocab[k].ptr, t->ptr, (size_t)t->len)) first_occurrence = 0;
        if (!first_occurrence) continue;
        const float score = (float)cp_gguf_arr_float(ti->scores, (uint64_t)last);
        size_t start = n;
        int32_t chars_total = 0;
        for (uint64_t k = 0; k < t->len; k += cp_utf8_len((unsigned char)t->ptr[k])) chars_total++;
        int32_t chars = 0;
        for (uint64_t k = 0; k < t->len;) {
            k += cp_utf8_len((unsigned char)t->ptr[k]);
            chars++;
            if (k >= t->len) break;
            int32_t l = map_get(&ti->map, t->ptr, k), r = map_get(&ti->map, t->ptr + k, t->len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                merge_cand *nc = cp_realloc(c, cap * 2 * sizeof *c, "merges");
                if (!nc) { cp_free(c); return CP_ERR; }
                c = nc;
                cap *= 2;
            }
            c[n] = (merge_cand){.l = l, .r = r, .lo = (uint32_t)k, .score = score, .lchars = chars,
                                .rchars = chars_total - chars, .seq = (int64_t)n, .tok = (int32_t)id};
            n++;
        }
        qsort(c + start, n - start, sizeof *c, cmp_local);
    }
    for (size_t i = 0; i < n; i++) c[i].seq = (int64_t)i;
    qsort(c, n, sizeof *c, cmp_global);
    cp_sb_append(sb, "    \"merges\": [");
    for (size_t i = 0; i < n; i++) {
        const cp_gguf_str *t = &ti->vocab[c[i].tok];
        cp_sb_append(sb, i ? ",\n      [" : "\n      [");
        cp_json_write_string(sb, t->ptr, c[i].lo, 0);
        cp_sb_append(sb, ", ");
        cp_json_write_string(sb, t->ptr + c[i].lo, t->len - c[i].lo, 0);
        cp_sb_append(sb, "]");
    }
    cp_sb_append(sb, n ? "\n    ]\n" : "]\n");
    cp_free(c);
    *n_merges = (int64_t)n;
    return CP_OK;
}

static char *special_name(const tokinfo *ti, int64_t id) {
    if (id < 0) return NULL;
    const cp_gguf_str *s = &ti->vocab[id];
    char *out = cp_malloc((size_t)s->len + 1, "a token");
    if (!out) return NULL;
    memcpy(out, s->ptr, (size_t)s->len);
    out[s->len] = '\0';
    return out;
}

/* tokenizer_config.json and special_tokens_map.json. Token strings holding NUL cannot go through
 * cJSON; such a special token is left out. */
static cp_status write_configs(const tokinfo *ti, int64_t model_max_length, cp_gguf_tokenizer *tk) {
    static const char *const roles[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    const int64_t ids[4] = {ti->bos, ti->eos, ti->pad, ti->unk};
    cJSON *cfg = cJSON_CreateObject(), *map = cJSON_CreateObject();
    if (!cfg || !map) { cJSON_Delete(cfg); cJSON_Delete(map); return CP_ERR; }
    cJSON_AddBoolToObject(cfg, "add_bos_token", ti->add_bos);
    cJSON_AddBoolToObject(cfg, "add_eos_token", ti->add_eos);
    if (ti->chat_template) cJSON_AddStringToObject(cfg, "chat_template", ti->chat_template);
    cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    cJSON_AddNumberToObject(cfg, "model_max_length", (double)model_max_length);
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    for (int k = 0; k < 4; k++) {
        if (ids[k] < 0 || memchr(ti->vocab[ids[k]].ptr, 0, (size_t)ti->vocab[ids[k]].len)) continue;
        char *s = special_name(ti, ids[k]);
        if (!s) { cJSON_Delete(cfg); cJSON_Delete(map); return CP_ERR; }
        cJSON_AddStringToObject(cfg, roles[k], s);
        cJSON_AddStringToObject(map, roles[k], s);
        cp_free(s);
    }
    tk->tokenizer_config_json = dump_and_free(cfg);
    tk->special_tokens_map_json = dump_and_free(map);
    return tk->tokenizer_config_json && tk->special_tokens_map_json ? CP_OK : CP_ERR;
}

cp_status cp_gguf_tokenizer_build(const cp_gguf *g, int64_t model_max_length, cp_gguf_tokenizer *tk) {
    memset(tk, 0, sizeof *tk);
    char *model = NULL, *pre = NULL;
    if (cp_gguf_get_string(g, "tokenizer.ggml.model", 1, &model) ||
        cp_gguf_get_string(g, "tokenizer.ggml.pre", 0, &pre)) {
        cp_free(model);
        return CP_ERR;
    }
    snprintf(tk->model, sizeof tk->model, "%s", model);
    snprintf(tk->pre, sizeof tk->pre, "%s", pre ? pre : "");
    int byte_level = !strcmp(model, "gpt2"), spm = !strcmp(model, "llama");
    cp_status st = CP_OK;
    if (!byte_level && !spm)
        st = cp_error("%s: tokenizer.ggml.model '%s' is not supported (gpt2: byte-level BPE, llama: SentencePiece BPE)",
                      g->path, model);
    tokinfo ti;
    memset(&ti, 0, sizeof ti);
    if (st == CP_OK) st = tokinfo_read(g, model, pre, &ti);
    if (st == CP_OK && spm && ti.unk < 0)
        for (int64_t i = 0; i < ti.n && ti.unk < 0; i++)
            if (token_type(&ti, i) == 2) ti.unk = i; /* UNKNOWN */
    cp_strbuf sb;
    cp_sb_init(&sb);
    int ignore_merges = 0;
    if (st == CP_OK) {
        cp_sb_append(&sb, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
        write_added_tokens(&sb, &ti, byte_level, &tk->n_added);
        if (byte_level) {
            st = write_byte_level_parts(&sb, g, pre ? pre : "default", &ignore_merges);
        } else {
            cp_sb_append(&sb, "  \"normalizer\": null,\n");
            cp_sb_printf(&sb, "  \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
                              "\"prepend_scheme\": \"%s\", \"split\": false},\n",
                         ti.add_space_prefix ? "first" : "never");
        }
    }
    if (st == CP_OK) {
        write_post_processor(&sb, &ti);
        if (byte_level)
            cp_sb_append(&sb, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                              "\"use_regex\": true},\n");
        else
            cp_sb_printf(&sb, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": "
                              "{\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, "
                              "{\"type\": \"Fuse\"}%s]},\n",
                         ti.add_space_prefix ? ", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}" : "");
        cp_sb_append(&sb, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": ");
        if (spm && ti.unk >= 0) cp_json_write_string(&sb, ti.vocab[ti.unk].ptr, ti.vocab[ti.unk].len, 0);
        else cp_sb_append(&sb, "null");
        cp_sb_printf(&sb, ",\n    \"continuing_subword_prefix\": %s,\n    \"end_of_word_suffix\": %s,\n"
                          "    \"fuse_unk\": %s,\n    \"byte_fallback\": %s,\n    \"ignore_merges\": %s,\n",
                     byte_level ? "\"\"" : "null", byte_level ? "\"\"" : "null", spm ? "true" : "false",
                     spm ? "true" : "false", ignore_merges ? "true" : "false");
        write_vocab(&sb, &ti);
        tk->n_tokens = ti.n;
        if (ti.merges) {
            st = write_file_merges(&sb, &ti, &tk->n_merges);
        } else if (spm) {
            tk->merges_derived = 1;
            st = write_derived_merges(&sb, &ti, &tk->n_merges);
        } else {
            st = cp_error("%s: a byte-level (gpt2) tokenizer without tokenizer.ggml.merges", g->path);
        }
        cp_sb_append(&sb, "  }\n}\n");
    }
    if (st == CP_OK && !(tk->tokenizer_json = cp_sb_finish(&sb))) st = CP_ERR;
    if (st == CP_OK) st = write_configs(&ti, model_max_length, tk);
    cp_sb_free(&sb);
    tokinfo_free(&ti);
    cp_free(model);
    cp_free(pre);
    if (st != CP_OK) cp_gguf_tokenizer_free(tk);
    return st;
}

void cp_gguf_tokenizer_free(cp_gguf_tokenizer *tk) {
    cp_free(tk->tokenizer_json);
    cp_free(tk->tokenizer_config_json);
    cp_free(tk->special_tokens_map_json);
    tk->tokenizer_json = tk->tokenizer_config_json = tk->special_tokens_map_json = NULL;
}

/* ---- the whole conversion ----------------------------------------------------------------- */

static cp_status write_text(const char *dir, const char *name, const char *text) {
    if (!text) return CP_ERR;
    char *path = cp_path_join(dir, name);
    if (!path) return CP_ERR;
    cp_status st = cp_write_file_atomic(path, text, strlen(text));
    cp_free(path);
    return st;
}

/* Everything that can be checked before a byte is written: hyper-parameters, tensor inventory and
 * types, the tokenizer (built here, written later). */
static cp_status check_all(const cp_gguf *g, cp_gguf_convert_report *rep) {
    if (cp_gguf_llama_read(g, &rep->hp) || cp_gguf_tokenizer_build(g, rep->hp.max_position_embeddings, &rep->tk))
        return CP_ERR;
    if (rep->tk.n_tokens > rep->hp.vocab_size)
        return cp_error("%s: the tokenizer has %" PRId64 " tokens but the embedding only %" PRId64 " rows", g->path,
                        rep->tk.n_tokens, rep->hp.vocab_size);
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!is_ignored_tensor(g->tensors[i].name) && !cp_ggml_can_dequantize(g->tensors[i].type))
            return cp_error("%s: unsupported tensor type %s in tensor %s", g->path,
                            cp_ggml_type_name(g->tensors[i].type), g->tensors[i].name);
    /* informational only: a missing or mistyped name or licence is no error */
    if (cp_gguf_get_string(g, "general.name", 0, &rep->name)) cp_clear_error();
    if (cp_gguf_get_string(g, "general.license", 0, &rep->license)) cp_clear_error();
    return CP_OK;
}

static cp_status write_all(const cp_gguf *g, const char *dir, int dtype, cp_gguf_convert_report *rep) {
    char *st_path = cp_path_join(dir, "model.safetensors");
    if (!st_path) return CP_ERR;
    cp_status st = write_tensors(g, &rep->hp, st_path, dtype, rep);
    cp_free(st_path);
    if (st) return st;
    char *config = cp_gguf_llama_config_json(&rep->hp, torch_dtype_name(rep->weight_dtype));
    char *gen = cp_gguf_llama_generation_config_json(&rep->hp);
    st = write_text(dir, "config.json", config);
    if (st == CP_OK) st = write_text(dir, "generation_config.json", gen);
    cp_free(config);
    cp_free(gen);
    if (st == CP_OK) st = write_text(dir, "tokenizer.json", rep->tk.tokenizer_json);
    if (st == CP_OK) st = write_text(dir, "tokenizer_config.json", rep->tk.tokenizer_config_json);
    if (st == CP_OK) st = write_text(dir, "special_tokens_map.json", rep->tk.special_tokens_map_json);
    return st;
}

cp_status cp_gguf_convert(const cp_gguf *g, const char *dir, const cp_gguf_convert_opts *opts,
                          cp_gguf_convert_report *report) {
    cp_gguf_convert_report local;
    cp_gguf_convert_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    const int dtype = opts ? opts->dtype : -1;
    if (dtype != -1 && dtype != CP_F32 && dtype != CP_F16 && dtype != CP_BF16)
        return cp_error("unsupported output dtype %s (f32, f16, bf16)", cp_dtype_name((cp_dtype)dtype));
    cp_status st = check_all(g, rep);
    if (st == CP_OK) st = write_all(g, dir, dtype, rep);
    if (st != CP_OK || rep == &local) cp_gguf_convert_report_free(rep);
    return st;
}

void cp_gguf_convert_report_free(cp_gguf_convert_report *report) {
    cp_gguf_tokenizer_free(&report->tk);
    cp_free(report->name);
    cp_free(report->license);
    report->name = report->license = NULL;
}
