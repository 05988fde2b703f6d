/*
 * gguf_hparams.c — the hyper-parameters of a GGUF (the "<general.architecture>." keys that llama.cpp's
 * architectures share) read and checked, and written as transformers' config.json (the keys of the
 * architecture's table, models/gguf_names.h) and generation_config.json.
 */
#include "convert/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/json.h"
#include "models/arch.h"
#include "models/gguf_names.h"


cp_status cp_convert_token_id(const cp_gguf *g, const char *key, int64_t vocab, int64_t *out) {
    if (cp_gguf_get_int(g, key, -1, 0, 0, INT32_MAX, out)) return CP_ERR;
    if (*out >= vocab)
        return cp_error("%s: metadata key '%s': token id %" PRId64 " is outside the vocabulary of %" PRId64,
                        g->path, key, *out, vocab);
    return CP_OK;
}

/* The "<arch>." keys this reader knows; a table with known_keys_only refuses any other. */
static const char *const known_keys[] = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "attention.layer_norm_epsilon",
    "attention.key_length", "attention.value_length", "rope.dimension_count", "rope.freq_base", "rope.scaling.type",
    "rope.scaling.factor", "rope.scale_linear", "expert_count", "vocab_size", "use_parallel_residual",
    "attention.sliding_window", "attn_logit_softcapping", "final_logit_softcapping",
    "rope.scaling.original_context_length", /* only longrope reads it (phi3; its factor tensors are refused) */
};

/* Whether the table writes a config.json value from `source` (then the reader needs its key). */
static int table_uses(const cp_gguf_names *a, cp_gguf_cfg_source source) {
    for (int i = 0; i < a->n_config; i++)
        if (a->config[i].source == source) return 1;
    return 0;
}

/* The table's refused keys and, when it knows its keys only, every unknown "<arch>." key. */
static cp_status check_keys(const cp_gguf *g, const cp_gguf_names *a) {
    const size_t plen = strlen(a->gguf_arch);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const char *k = g->kvs[i].key;
        if (strncmp(k, a->gguf_arch, plen) != 0 || k[plen] != '.') continue;
        const char *rest = k + plen + 1;
        for (int j = 0; j < a->n_refused_keys; j++)
            if (!strcmp(rest, a->refused_keys[j].gguf))
                return cp_error("%s: metadata key '%s' is not supported: %s", g->path, k, a->refused_keys[j].why);
        if (!a->known_keys_only) continue;
        size_t j = 0;
        while (j < sizeof known_keys / sizeof *known_keys && strcmp(rest, known_keys[j])) j++;
        if (j == sizeof known_keys / sizeof *known_keys)
            return cp_error("%s: metadata key '%s' is not supported for %s (cpeft convert does not know what it "
                            "changes; docs/convert.md)", g->path, k, a->gguf_arch);
    }
    return CP_OK;
}

cp_status cp_gguf_llama_read(const cp_gguf *g, cp_gguf_hparams *hp) { return cp_gguf_hparams_read(g, hp); }

cp_status cp_gguf_hparams_read(const cp_gguf *g, cp_gguf_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    char *arch_name = NULL;
    if (cp_gguf_get_string(g, "general.architecture", 1, &arch_name)) return CP_ERR;
    const cp_arch *arch = cp_gguf_arch_find(arch_name);
    if (!arch) {
        cp_status st = cp_error("%s: general.architecture is '%s'; cpeft convert handles %s ('llama': Llama, "
                                "Mistral, SmolLM, TinyLlama)", g->path, arch_name, cp_gguf_names_supported());
        cp_free(arch_name);
        return st;
    }
    cp_free(arch_name);
    hp->names = arch->gguf_names;
    hp->model_type = arch->model_type;
    hp->hf_class = arch->causal_lm_class;
    const char *A = hp->names->gguf_arch;
    if (check_keys(g, hp->names)) return CP_ERR;
    char k[13][96];
    static const char *const suffix[13] = {"embedding_length", "block_count", "feed_forward_length",
                                           "attention.head_count", "attention.head_count_kv", "context_length",
                                           "expert_count", "attention.layer_norm_rms_epsilon", "rope.freq_base",
                                           "attention.key_length", "attention.value_length",
                                           "attention.layer_norm_epsilon", "use_parallel_residual"};
    for (int i = 0; i < 13; i++) snprintf(k[i], sizeof k[i], "%s.%s", A, suffix[i]);
    /* RMSNorm's or LayerNorm's epsilon: required by the table that writes it */
    const int rms = table_uses(hp->names, CP_GGUF_CFG_NORM_EPS), ln = table_uses(hp->names, CP_GGUF_CFG_LN_EPS);
    const int64_t BIG = (int64_t)1 << 24;
    int64_t experts;
    if (cp_gguf_get_int(g, k[0], 0, 1, 1, BIG, &hp->hidden_size) ||
        cp_gguf_get_int(g, k[1], 0, 1, 1, 100000, &hp->num_hidden_layers) ||
        cp_gguf_get_int(g, k[2], 0, 1, 1, BIG, &hp->intermediate_size) ||
        cp_gguf_get_int(g, k[3], 0, 1, 1, 65536, &hp->num_attention_heads) ||
        cp_gguf_get_int(g, k[4], hp->num_attention_heads, 0, 1, 65536, &hp->num_key_value_heads) ||
        cp_gguf_get_int(g, k[5], 2048, 0, 1, INT32_MAX, &hp->max_position_embeddings) ||
        cp_gguf_get_int(g, k[6], 0, 0, 0, 65536, &experts) ||
        cp_gguf_get_float(g, k[7], 1e-5, rms, &hp->rms_norm_eps) ||
        cp_gguf_get_float(g, k[11], 1e-5, ln, &hp->layer_norm_eps) ||
        cp_gguf_get_float(g, k[8], 10000.0, 0, &hp->rope_theta) ||
        cp_gguf_get_bool(g, k[12], 1, 0, &hp->parallel_residual))
        return CP_ERR;
    const cp_gguf_kv *kv;
    hp->rms_norm_eps_f32 = (kv = cp_gguf_find_kv(g, k[7])) && kv->type == CP_GGUF_FLOAT32;
    hp->layer_norm_eps_f32 = (kv = cp_gguf_find_kv(g, k[11])) && kv->type == CP_GGUF_FLOAT32;
    hp->rope_theta_f32 = !(kv = cp_gguf_find_kv(g, k[8])) || kv->type == CP_GGUF_FLOAT32;
    if (experts > 0)
        return cp_error("%s: %s is %" PRId64 ": mixture-of-experts models are not supported", g->path, k[6], experts);
    if (hp->num_attention_heads % hp->num_key_value_heads)
        return cp_error("%s: num_key_value_heads (%" PRId64 ", %s) does not divide num_attention_heads (%" PRId64 ")",
                        g->path, hp->num_key_value_heads, k[4], hp->num_attention_heads);
    if (!(hp->rms_norm_eps > 0) || !(hp->layer_norm_eps > 0) || !(hp->rope_theta > 0))
        return cp_error("%s: the norm epsilon (%g, %s) and rope_theta (%g) must be positive", g->path,
                        ln ? hp->layer_norm_eps : hp->rms_norm_eps, ln ? k[11] : k[7], hp->rope_theta);
    /* head_dim: attention.key_length when given, else hidden / heads. */
    int64_t key_len, value_len, rope_dim;
    if (cp_gguf_get_int(g, k[9], 0, 0, 0, 65536, &key_len) || cp_gguf_get_int(g, k[10], key_len, 0, 0, 65536, &value_len))
        return CP_ERR;
    if (key_len == 0) {
        if (hp->hidden_size % hp->num_attention_heads)
            return cp_error("%s: hidden size %" PRId64 " is not a multiple of %" PRId64 " heads and the file has no "
                            "%s", g->path, hp->hidden_size, hp->num_attention_heads, k[9]);
        key_len = value_len = hp->hidden_size / hp->num_attention_heads;
    }
    if (value_len != key_len)
        return cp_error("%s: attention.key_length %" PRId64 " differs from attention.value_length %" PRId64
                        " (not a %s model)", g->path, key_len, value_len, A);
    const int rope = table_uses(hp->names, CP_GGUF_CFG_ROPE_THETA) || table_uses(hp->names, CP_GGUF_CFG_ROTARY_FRACTION);
    if (rope && key_len % 2) return cp_error("%s: head dimension %" PRId64 " is odd; RoPE needs pairs", g->path, key_len);
    hp->head_dim = key_len;
    char rk[4][96];
    snprintf(rk[0], sizeof rk[0], "%s.rope.dimension_count", A);
    snprintf(rk[1], sizeof rk[1], "%s.rope.scaling.type", A);
    snprintf(rk[2], sizeof rk[2], "%s.rope.scaling.factor", A);
    snprintf(rk[3], sizeof rk[3], "%s.rope.scale_linear", A);
    if (cp_gguf_get_int(g, rk[0], hp->head_dim, 0, 1, 65536, &rope_dim)) return CP_ERR;
    /* Partial rotary embeddings (the first rope_dim of each head) where the table writes the fraction
     * under the model type's own key (rotary_pct, partial_rotary_factor), from which transformers and
     * cpeft take int(head_dim * fraction) rotary dimensions: that must give rope_dim back. */
    if (rope_dim != hp->head_dim && !table_uses(hp->names, CP_GGUF_CFG_ROTARY_FRACTION))
        return cp_error("%s: %s %" PRId64 " differs from the head dimension %" PRId64
                        " (partial rotary embeddings are not supported for %s)", g->path, rk[0], rope_dim, hp->head_dim, A);
    if (rope_dim > hp->head_dim || rope_dim % 2)
        return cp_error("%s: %s %" PRId64 " must be even and at most the head dimension %" PRId64, g->path, rk[0], rope_dim,
                        hp->head_dim);
    if ((int64_t)((double)hp->head_dim * ((double)rope_dim / (double)hp->head_dim)) != rope_dim)
        return cp_error("%s: %s %" PRId64 " is not given back by a rotary fraction of the head dimension %" PRId64,
                        g->path, rk[0], rope_dim, hp->head_dim);
    hp->rotary_dim = rope_dim;
    /* sliding window and soft-capping (gemma2, phi3): read when the table writes them; a table that
     * knows its keys only and has no entry for one refuses it (llama's ignores them, as before) */
    char wk[3][96];
    snprintf(wk[0], sizeof wk[0], "%s.attention.sliding_window", A);
    snprintf(wk[1], sizeof wk[1], "%s.attn_logit_softcapping", A);
    snprintf(wk[2], sizeof wk[2], "%s.final_logit_softcapping", A);
    if (cp_gguf_get_int(g, wk[0], 0, 0, 0, INT32_MAX, &hp->sliding_window) ||
        cp_gguf_get_float(g, wk[1], 50.0, 0, &hp->attn_softcap) || cp_gguf_get_float(g, wk[2], 30.0, 0, &hp->final_softcap))
        return CP_ERR;
    static const cp_gguf_cfg_source wsrc[3] = {CP_GGUF_CFG_SLIDING_WINDOW, CP_GGUF_CFG_ATTN_SOFTCAP, CP_GGUF_CFG_FINAL_SOFTCAP};
    for (int i = 0; i < 3; i++)
        if (cp_gguf_find_kv(g, wk[i]) && hp->names->known_keys_only && !table_uses(hp->names, wsrc[i]))
            return cp_error("%s: metadata key '%s' is not supported for %s", g->path, wk[i], A);
    if (!(hp->attn_softcap > 0) || !(hp->final_softcap > 0))
        return cp_error("%s: %s (%g) and %s (%g) must be positive", g->path, wk[1], hp->attn_softcap, wk[2], hp->final_softcap);
    /* RoPE scaling: none or linear. */
    char *scaling = NULL;
    double factor = 0, linear = 0;
    if (cp_gguf_get_string(g, rk[1], 0, &scaling) || cp_gguf_get_float(g, rk[2], 0, 0, &factor) ||
        cp_gguf_get_float(g, rk[3], 0, 0, &linear)) {
        cp_free(scaling);
        return CP_ERR;
    }
    if (scaling && strcmp(scaling, "none") != 0 && strcmp(scaling, "linear") != 0) {
        cp_status st = cp_error("%s: %s '%s' is not supported (none, linear)", g->path, rk[1], scaling);
        cp_free(scaling);
        return st;
    }
    if (scaling && !strcmp(scaling, "linear")) hp->rope_scaling_factor = factor > 0 ? factor : 1.0;
    else if (!scaling && linear > 0 && linear != 1.0) hp->rope_scaling_factor = linear;
    if (hp->rope_scaling_factor == 1.0) hp->rope_scaling_factor = 0;
    if (!hp->parallel_residual && !table_uses(hp->names, CP_GGUF_CFG_PARALLEL_RESIDUAL))
        return cp_error("%s: %s.use_parallel_residual is false: %s's blocks have no sequential variant", g->path, A, A);
    if (hp->rope_scaling_factor > 0 && !table_uses(hp->names, CP_GGUF_CFG_ROPE_SCALING))
        return cp_error("%s: linear RoPE scaling (%s) is not supported for %s (its config.json has no rope_scaling)",
                        g->path, rk[1], A);
    cp_free(scaling);
    /* Vocabulary: <arch>.vocab_size, else the embedding's rows. */
    const cp_gguf_tensor *emb = cp_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return cp_error("%s: tensor 'token_embd.weight' is missing or not a matrix", g->path);
    char vk[96];
    snprintf(vk, sizeof vk, "%s.vocab_size", A);
    if (cp_gguf_get_int(g, vk, emb->ne[1], 0, 1, INT32_MAX, &hp->vocab_size)) return CP_ERR;
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

char *cp_gguf_llama_config_json(const cp_gguf_hparams *hp, const char *torch_dtype) {
    return cp_gguf_config_json(hp, torch_dtype);
}

/* The value of one config.json entry; NULL to leave the key out (a token id the file lacks). */
static cJSON *config_value(const cp_gguf_hparams *hp, const cp_gguf_cfg_entry *e, const char *torch_dtype) {
    cJSON *v;
    switch (e->source) {
    case CP_GGUF_CFG_JSON: return cJSON_CreateRaw(e->json);
    case CP_GGUF_CFG_ARCHITECTURES:
        v = cJSON_CreateArray();
        if (v) cJSON_AddItemToArray(v, cJSON_CreateString(hp->hf_class));
        return v;
    case CP_GGUF_CFG_MODEL_TYPE: return cJSON_CreateString(hp->model_type);
    case CP_GGUF_CFG_HIDDEN: return cJSON_CreateNumber((double)hp->hidden_size);
    case CP_GGUF_CFG_FFN: return cJSON_CreateNumber((double)hp->intermediate_size);
    case CP_GGUF_CFG_LAYERS: return cJSON_CreateNumber((double)hp->num_hidden_layers);
    case CP_GGUF_CFG_HEADS: return cJSON_CreateNumber((double)hp->num_attention_heads);
    case CP_GGUF_CFG_KV_HEADS: return cJSON_CreateNumber((double)hp->num_key_value_heads);
    case CP_GGUF_CFG_HEAD_DIM: return cJSON_CreateNumber((double)hp->head_dim);
    case CP_GGUF_CFG_POSITIONS: return cJSON_CreateNumber((double)hp->max_position_embeddings);
    case CP_GGUF_CFG_VOCAB: return cJSON_CreateNumber((double)hp->vocab_size);
    case CP_GGUF_CFG_NORM_EPS: return raw_float(hp->rms_norm_eps, hp->rms_norm_eps_f32);
    case CP_GGUF_CFG_LN_EPS: return raw_float(hp->layer_norm_eps, hp->layer_norm_eps_f32);
    case CP_GGUF_CFG_ROTARY_FRACTION: return raw_float((double)hp->rotary_dim / (double)hp->head_dim, 0);
    case CP_GGUF_CFG_PARALLEL_RESIDUAL: return cJSON_CreateBool(hp->parallel_residual);
    case CP_GGUF_CFG_ROPE_THETA: return raw_float(hp->rope_theta, hp->rope_theta_f32);
    case CP_GGUF_CFG_ROPE_SCALING:
        if (!(hp->rope_scaling_factor > 0)) return cJSON_CreateNull();
        v = cJSON_CreateObject();
        if (v) {
            cJSON_AddItemToObject(v, "factor", raw_float(hp->rope_scaling_factor, 1));
            cJSON_AddStringToObject(v, "rope_type", "linear");
        }
        return v;
    case CP_GGUF_CFG_TIED: return cJSON_CreateBool(hp->tie_word_embeddings);
    case CP_GGUF_CFG_BOS: return hp->bos_token_id >= 0 ? cJSON_CreateNumber((double)hp->bos_token_id) : NULL;
    case CP_GGUF_CFG_EOS: return hp->eos_token_id >= 0 ? cJSON_CreateNumber((double)hp->eos_token_id) : NULL;
    case CP_GGUF_CFG_PAD: return hp->pad_token_id >= 0 ? cJSON_CreateNumber((double)hp->pad_token_id) : NULL;
    case CP_GGUF_CFG_TORCH_DTYPE: return cJSON_CreateString(torch_dtype);
    case CP_GGUF_CFG_SLIDING_WINDOW: return hp->sliding_window > 0 ? cJSON_CreateNumber((double)hp->sliding_window) : cJSON_CreateNull();
    case CP_GGUF_CFG_ATTN_SOFTCAP: return raw_float(hp->attn_softcap, 1);
    case CP_GGUF_CFG_FINAL_SOFTCAP: return raw_float(hp->final_softcap, 1);
    case CP_GGUF_CFG_QUERY_SCALAR:
        return cJSON_CreateNumber((double)(hp->num_hidden_layers == 46 ? hp->hidden_size / hp->num_attention_heads : hp->head_dim));
    }
    return NULL;
}

char *cp_gguf_config_json(const cp_gguf_hparams *hp, const char *torch_dtype) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    for (int i = 0; i < hp->names->n_config; i++) {
        cJSON *v = config_value(hp, &hp->names->config[i], torch_dtype);
        if (v) cJSON_AddItemToObject(c, hp->names->config[i].key, v);
    }
    return cp_convert_json_file(c);
}

char *cp_gguf_llama_generation_config_json(const cp_gguf_hparams *hp) {
    cJSON *c = cJSON_CreateObject();
    if (!c) return NULL;
    add_id(c, "bos_token_id", hp->bos_token_id);
    add_id(c, "eos_token_id", hp->eos_token_id);
    add_id(c, "pad_token_id", hp->pad_token_id);
    return cp_convert_json_file(c);
}
