/*
 * gguf_hparams.c — the hyper-parameters of a llama-architecture GGUF (the llama.* keys) read and
 * checked, and written as transformers' config.json and generation_config.json.
 */
#include "convert/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"

#define LLAMA "llama."

cp_status cp_convert_token_id(const cp_gguf *g, const char *key, int64_t vocab, int64_t *out) {
    if (cp_gguf_get_int(g, key, -1, 0, 0, INT32_MAX, out)) return CP_ERR;
    if (*out >= vocab)
        return cp_error("%s: metadata key '%s': token id %" PRId64 " is outside the vocabulary of %" PRId64,
                        g->path, key, *out, vocab);
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
    if (cp_convert_token_id(g, "tokenizer.ggml.bos_token_id", hp->vocab_size, &hp->bos_token_id) ||
        cp_convert_token_id(g, "tokenizer.ggml.eos_token_id", hp->vocab_size, &hp->eos_token_id) ||
        cp_convert_token_id(g, "tokenizer.ggml.padding_token_id", hp->vocab_size, &hp->pad_token_id) ||
        cp_convert_token_id(g, "tokenizer.ggml.unknown_token_id", hp->vocab_size, &hp->unk_token_id))
        return CP_ERR;
    return cp_convert_check_tensors(g, hp);
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

char *cp_convert_json_file(cJSON *root) {
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
    return cp_convert_json_file(c);
}

char *cp_gguf_llama_generation_config_json(const cp_gguf_llama *hp) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    add_id(c, "bos_token_id", hp->bos_token_id);
    add_id(c, "eos_token_id", hp->eos_token_id);
    add_id(c, "pad_token_id", hp->pad_token_id);
    return cp_convert_json_file(c);
}
