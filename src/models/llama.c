/*
 * llama.c — the Llama family: `llama` (LlamaForCausalLM; attention_bias on q/k/v/o_proj, mlp_bias
 * on the MLP), `mistral` (sliding-window attention on every layer, no biases) and `qwen2` (q/k/v
 * biases; sliding-window attention on the layers layer_types names, when use_sliding_window) and
 * `qwen3` (Qwen2's windows, attention_bias on q/k/v/o_proj, head_dim default 128, and q_norm / k_norm:
 * an RMSNorm over each head's head_dim on q and k before RoPE) and `gemma` (RMSNorm by (1 + weight),
 * embeddings × √hidden_size in f32, GeGLU with hidden_act gelu_pytorch_tanh, attention_bias on
 * q/k/v/o_proj, head_dim default 256, tied by default, pad_token_id default 0).
 * Config, module tree, forward and backward.
 *
 *   x = embed_tokens[ids]                                              (B,T,C)
 *   per layer:  h = rms(x);  q,k,v = proj(h) (GQA: NKV ≤ NH kv heads);  [qwen3: q,k = rms per head];
 *               rotate q,k (RoPE);
 *               x += o_proj(drop(softmax(q·kᵀ/√hd + mask))·v)   (drop: attention_dropout in training)
 *               h = rms(x);  x += down_proj(act(gate_proj(h)) ⊙ up_proj(h))   (act: silu; gemma: gelu tanh)
 *   out = rms(x);  logits = lm_head(out) (tied to embed_tokens when the config says so)
 *
 * RMSNorm in f32, rotate-half RoPE with rope_theta and rope_scaling (linear, dynamic, llama3;
 * transformers 5's `rope_parameters` or the older rope_theta + rope_scaling keys), masks as one
 * additive mask (a query that sees nothing attends uniformly to all keys, as eager PyTorch). A
 * sliding layer's query i sees key j when i - j < window (cache columns when generating).
 */
#include "models/model.h"
#include "core/alloc.h"
#include "io/json.h"
#include "kernels/vector.h"
#include "models/decoder_head.h"
#include "models/gguf_names.h"
#include "models/kv_cache.h"
#include "models/proj.h"
#include "models/stack.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/rmsnorm.h"
#include "nn/rope.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    cp_module *input_layernorm, *post_attention_layernorm;
    cp_module *q_proj, *k_proj, *v_proj, *o_proj;
    cp_module *gate_proj, *up_proj, *down_proj;
    cp_module *q_norm, *k_norm; /* qwen3: RMSNorm(head_dim) on each head of q and k, else NULL */
    cp_module *self_attn; /* the attention module: its attention_dropout (a float, no module) drops the probabilities */
    int64_t window; /* sliding window of this layer's attention (0 = full causal) */
} llama_layer;

typedef struct {
    cp_module *embed_tokens, *norm;
    llama_layer *layers;
    cp_rope rope;
    float embed_scale; /* gemma: √hidden_size in f32 (GemmaTextScaledWordEmbedding), else 1 */
} llama_state;

/* ---- config ------------------------------------------------------------------------------------ */

/* A number that config.json gives (`dict`.`key`, or top-level `key` when dict is NULL); null, which
 * transformers keeps and then fails on, is an error. */
static cp_status rope_number(const cJSON *v, const char *dict, const char *key, double *out, const char *file) {
    if (!cJSON_IsNumber(v))
        return cp_error("%s: field \"%s%s%s\": expected a number, found %s", file, dict ? dict : "", dict ? "." : "", key,
                        cJSON_IsNull(v) ? "null" : cp_json_type_name(v));
    *out = v->valuedouble;
    return CP_OK;
}

/* RoPE keys as transformers 5.23 standardises them for the Llama family (RotaryEmbeddingConfigMixin's
 * convert_rope_params_to_dict and standardize_rope_params, modeling_rope_utils.py):
 *   - the parameter dict is rope_scaling when that is a non-empty object (Python's `rope_scaling or
 *     rope_parameters`), else rope_parameters (transformers 5's key), else none;
 *   - rope_theta is the dict's when it has the key, else the top-level rope_theta, else 10000;
 *   - the type is the dict's rope_type, else its (older) type, else default;
 *   - partial_rotary_factor is the dict's, else the top-level one;
 *   - llama3's original_max_position_embeddings is the top-level key when config.json has it (it
 *     overrides the dict's), else the dict's, else max_position_embeddings;
 *   - factor (linear, dynamic, llama3) and low/high_freq_factor (llama3) are required.
 * tests/fixtures/llama/info/rope_configs.json records what transformers makes of each form. */
static cp_status parse_rope(cp_model_config *cfg, const cJSON *root, const char *file) {
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const int scaling_set = scaling && !cJSON_IsNull(scaling) && !(cJSON_IsObject(scaling) && !scaling->child);
    const cJSON *dict = scaling_set ? scaling : params && !cJSON_IsNull(params) ? params : NULL;
    const char *field = scaling_set ? "rope_scaling" : "rope_parameters";
    if (dict && !cJSON_IsObject(dict))
        return cp_error("%s: field \"%s\": expected an object, found %s", file, field, cp_json_type_name(dict));
    if (dict && !dict->child) dict = NULL;
    /* parameters per layer type ({"full_attention": {...}, "sliding_attention": {...}}): the Llama
     * family's rotary module reads one rope_type and fails on them */
    if (dict && (cJSON_IsObject(cp_json_field(dict, "full_attention")) || cJSON_IsObject(cp_json_field(dict, "sliding_attention"))))
        return cp_error("%s: field \"%s\": parameters per layer type are not supported for %s", file, field, cfg->model_type);

    const cJSON *theta = dict ? cJSON_GetObjectItemCaseSensitive(dict, "rope_theta") : NULL;
    const char *theta_in = theta ? field : NULL; /* where rope_theta came from (NULL: the top level) */
    if (!theta) theta = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    cfg->rope_theta = 10000.0;
    if (theta && rope_number(theta, theta_in, "rope_theta", &cfg->rope_theta, file) != CP_OK) return CP_ERR;
    if (!(cfg->rope_theta > 0) || isinf(cfg->rope_theta)) /* 0 gives infinite frequencies, < 0 NaN */
        return cp_error("%s: field \"%s%srope_theta\": expected a positive finite number, found %g", file,
                        theta_in ? theta_in : "", theta_in ? "." : "", cfg->rope_theta);
    cfg->rope_type = CP_ROPE_DEFAULT;
    if (!dict) return CP_OK;
    const char *type;
    if (cp_json_get_string(dict, "rope_type", NULL, 0, &type, file) != CP_OK) return CP_ERR;
    if (!type && cp_json_get_string(dict, "type", NULL, 0, &type, file) != CP_OK) return CP_ERR;
    int t = cp_rope_type_from_name(type);
    if (t < 0)
        return cp_error("%s: rope scaling type \"%s\" is not supported (supported: default, linear, dynamic, llama3)", file, type);
    cfg->rope_type = t;
    if (t == CP_ROPE_DEFAULT) return CP_OK; /* the default frequencies ignore partial_rotary_factor */
    /* the other types rotate only the first partial_rotary_factor·head_dim dims, which the Llama
     * family's apply_rotary_pos_emb cannot take (a shape error in transformers) */
    double partial = 1.0;
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(dict, "partial_rotary_factor");
    if (pv && rope_number(pv, field, "partial_rotary_factor", &partial, file) != CP_OK) return CP_ERR;
    if (!pv && cp_json_get_double(root, "partial_rotary_factor", 1.0, 0, &partial, file) != CP_OK) return CP_ERR;
    if (partial != 1.0)
        return cp_error("%s: partial_rotary_factor %g with rope type \"%s\" is not supported for %s", file, partial, type,
                        cfg->model_type);
    if (cp_json_get_double(dict, "factor", 1.0, 1, &cfg->rope_factor, file) != CP_OK) return CP_ERR;
    if (!(cfg->rope_factor > 0)) return cp_error("%s: rope scaling factor must be positive", file);
    if (t != CP_ROPE_LLAMA3) return CP_OK;
    if (cp_json_get_double(dict, "low_freq_factor", 1.0, 1, &cfg->rope_low_freq_factor, file) != CP_OK ||
        cp_json_get_double(dict, "high_freq_factor", 4.0, 1, &cfg->rope_high_freq_factor, file) != CP_OK)
        return CP_ERR;
    const char *orig = "original_max_position_embeddings";
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, orig);
    if (top && cp_json_get_int(root, orig, 0, 1, &cfg->rope_original_max_positions, file) != CP_OK) return CP_ERR;
    if (!top && cp_json_get_int(dict, orig, cfg->max_positions, 0, &cfg->rope_original_max_positions, file) != CP_OK)
        return CP_ERR;
    return CP_OK;
}

/* A window size: absent → dflt, null → 0 (transformers' None: no window), else a positive integer. */
static cp_status read_window(const cJSON *root, const char *key, int64_t dflt, int64_t *out, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && cJSON_IsNull(v)) { *out = 0; return CP_OK; }
    return cp_config_positive(root, key, dflt, CP_MAX_POSITIONS, out, file);
}

/* Allocates the per-layer attention kinds: every layer local (all = 1) or global (all = 0). */
static cp_status alloc_layer_kinds(cp_model_config *cfg, int all) {
    cfg->layer_is_local = cp_calloc((size_t)cfg->num_layers, 1, "attention layer kinds");
    if (!cfg->layer_is_local) return CP_ERR;
    memset(cfg->layer_is_local, all, (size_t)cfg->num_layers);
    return CP_OK;
}

/* Mistral: sliding_window (default 4096, null = none) on every layer. MistralConfig only warns
 * about layer_types and MistralModel never reads it. */
static cp_status mistral_window(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (read_window(root, "sliding_window", 4096, &cfg->window_size, file) != CP_OK) return CP_ERR;
    if (cp_json_field(root, "layer_types"))
        cp_warn("%s: \"layer_types\" is ignored for mistral (as transformers does): every layer uses sliding_window", file);
    return cfg->window_size ? alloc_layer_kinds(cfg, 1) : CP_OK;
}

/* Qwen2Config and Qwen3Config: the window is sliding_window when use_sliding_window, else none; layer_types, when
 * absent, makes layer i "sliding_attention" iff there is a window and i >= max_window_layers
 * (default 28). Each layer's mask is then the sliding one or the plain causal one. */
static cp_status qwen2_layer_types(cp_model_config *cfg, const cJSON *root, const char *file) {
    const int64_t L = cfg->num_layers;
    int use_sliding_window;
    int64_t window = 0, max_window_layers = 28;
    if (cp_json_get_bool(root, "use_sliding_window", 0, 0, &use_sliding_window, file) != CP_OK) return CP_ERR;
    if (use_sliding_window && (read_window(root, "sliding_window", 4096, &window, file) != CP_OK ||
                               cp_json_get_int(root, "max_window_layers", 28, 0, &max_window_layers, file) != CP_OK))
        return CP_ERR;
    if (alloc_layer_kinds(cfg, 0) != CP_OK) return CP_ERR;
    const cJSON *types = cp_json_field(root, "layer_types");
    if (types) {
        if (!cJSON_IsArray(types))
            return cp_error("%s: field \"layer_types\": expected a list, found %s", file, cp_json_type_name(types));
        if (cJSON_GetArraySize(types) != L)
            return cp_error("%s: field \"layer_types\" lists %d layers but num_hidden_layers is %lld", file,
                            cJSON_GetArraySize(types), (long long)L);
        int64_t i = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, types) {
            if (!cJSON_IsString(t) || (strcmp(t->valuestring, "full_attention") && strcmp(t->valuestring, "sliding_attention")))
                return cp_error("%s: field \"layer_types\": layer %lld is %s%s%s, not supported for %s (supported: "
                                "full_attention, sliding_attention)", file, (long long)i, cJSON_IsString(t) ? "\"" : "",
                                cJSON_IsString(t) ? t->valuestring : cp_json_type_name(t), cJSON_IsString(t) ? "\"" : "",
                                cfg->model_type);
            cfg->layer_is_local[i++] = !strcmp(t->valuestring, "sliding_attention");
        }
    } else {
        for (int64_t i = 0; i < L; i++) cfg->layer_is_local[i] = window > 0 && i >= max_window_layers;
    }
    int64_t n_local = 0;
    for (int64_t i = 0; i < L; i++) n_local += cfg->layer_is_local[i];
    if (n_local && !window) /* transformers fails building the sliding mask ("sliding_window ... is not set") */
        return cp_error("%s: field \"layer_types\" has sliding_attention layers but there is no window (%s)", file,
                        use_sliding_window ? "sliding_window is null" : "use_sliding_window is false");
    if (!n_local) {
        cp_free(cfg->layer_is_local);
        cfg->layer_is_local = NULL;
    }
    cfg->window_size = window;
    return CP_OK;
}

static cp_status parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    const int qwen2 = !strcmp(cfg->model_type, "qwen2"), qwen3 = !strcmp(cfg->model_type, "qwen3");
    const int gemma = !strcmp(cfg->model_type, "gemma");
    const int mistral = !strcmp(cfg->model_type, "mistral"), llama = !qwen2 && !qwen3 && !mistral && !gemma;
    if (cp_config_positive(root, "vocab_size", 32000, CP_MAX_VOCAB, &cfg->vocab_size, file) != CP_OK ||
        cp_config_positive(root, "hidden_size", 4096, CP_MAX_HIDDEN, &cfg->hidden_size, file) != CP_OK ||
        cp_config_positive(root, "intermediate_size", 11008, CP_MAX_INTERMEDIATE, &cfg->intermediate_size, file) != CP_OK ||
        cp_config_positive(root, "num_hidden_layers", 32, CP_MAX_LAYERS, &cfg->num_layers, file) != CP_OK ||
        cp_config_positive(root, "num_attention_heads", 32, CP_MAX_HEADS, &cfg->num_heads, file) != CP_OK ||
        cp_config_positive(root, "num_key_value_heads", cfg->num_heads, CP_MAX_HEADS, &cfg->num_kv_heads, file) != CP_OK ||
        cp_config_positive(root, "max_position_embeddings", 2048, CP_MAX_POSITIONS, &cfg->max_positions, file) != CP_OK)
        return CP_ERR;
    if (cp_json_field(root, "head_dim") && cp_config_positive(root, "head_dim", 0, 4096, &cfg->head_dim, file) != CP_OK) return CP_ERR;
    if (qwen3 && !cp_json_field(root, "head_dim")) cfg->head_dim = 128; /* Qwen3Config's default, not hidden/heads */
    if (gemma && !cp_json_field(root, "head_dim")) cfg->head_dim = 256; /* GemmaConfig's */
    if (gemma) { /* GemmaAttention: is_causal = not use_bidirectional_attention */
        int bidirectional;
        if (cp_json_get_bool(root, "use_bidirectional_attention", 0, 0, &bidirectional, file) != CP_OK) return CP_ERR;
        if (bidirectional) return cp_error("%s: field \"use_bidirectional_attention\": true is not supported for gemma", file);
    }
    if (cp_json_get_double(root, "rms_norm_eps", 1e-6, 0, &cfg->layer_norm_eps, file) != CP_OK ||
        cp_json_get_double(root, "attention_dropout", 0.0, 0, &cfg->attn_dropout, file) != CP_OK)
        return CP_ERR;
    if (llama || qwen3 || gemma) { /* MistralConfig and Qwen2Config have neither key: their Linears never take them */
        int attention_bias;
        if (cp_json_get_bool(root, "attention_bias", 0, 0, &attention_bias, file) != CP_OK ||
            (llama && cp_json_get_bool(root, "mlp_bias", 0, 0, &cfg->mlp_bias, file) != CP_OK)) /* Qwen3MLP: no bias */
            return CP_ERR;
        cfg->qkv_bias = cfg->o_proj_bias = attention_bias; /* Llama, Qwen3 and Gemma attention: all four projections */
    }
    if (qwen2) cfg->qkv_bias = 1; /* Qwen2Attention: q/k/v always, o_proj never */
    if (mistral && mistral_window(cfg, root, file) != CP_OK) return CP_ERR;
    if ((qwen2 || qwen3) && qwen2_layer_types(cfg, root, file) != CP_OK) return CP_ERR;
    if (parse_rope(cfg, root, file) != CP_OK) return CP_ERR;
    const char *act;
    if (cp_json_get_string(root, "hidden_act", gemma ? "gelu_pytorch_tanh" : "silu", 0, &act, file) != CP_OK) return CP_ERR;
    /* GemmaConfig turns the legacy "gelu" into gelu_pytorch_tanh; transformers 5.23's GemmaMLP reads
     * hidden_act alone (a hidden_activation key is kept on the config and never used) */
    const int ok = gemma ? !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu") : !strcmp(act, "silu") || !strcmp(act, "swish");
    if (!ok)
        return cp_error("%s: field \"hidden_act\": \"%s\" is not supported for %s (supported: %s)", file, act, cfg->model_type,
                        gemma ? "gelu_pytorch_tanh, gelu" : "silu");
    const cp_activation activation = gemma ? CP_ACT_GELU_PYTORCH_TANH : CP_ACT_SILU;
    /* the Llama family defaults to untied embeddings, Gemma to tied ones and pad_token_id 0 */
    cp_status st = cp_config_read_common(cfg, root, file, gemma ? "gelu_pytorch_tanh" : "silu");
    if (st == CP_OK && !gemma && !cp_json_field(root, "tie_word_embeddings")) cfg->tie_word_embeddings = 0;
    if (st == CP_OK && gemma && !cp_json_field(root, "pad_token_id")) cfg->pad_token_id = 0;
    cfg->activation = activation;
    return st;
}

/* ---- module tree ------------------------------------------------------------------------------- */

static const char *class_prefix(const cp_model *m) {
    const char *t = m->config.model_type;
    return !strcmp(t, "mistral") ? "Mistral" : !strcmp(t, "qwen2") ? "Qwen2" : !strcmp(t, "qwen3") ? "Qwen3"
         : !strcmp(t, "gemma")   ? "Gemma" : "Llama";
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    const char *p = class_prefix(m);
    char name[64];
    llama_state *s = cp_calloc(1, sizeof *s, "Llama state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "Llama layers");
    if (!s->layers) return CP_ERR;
    if (c->head_dim % 2) return cp_error("head_dim %lld must be even for rotary embeddings", (long long)c->head_dim);
    s->rope = (cp_rope){.dim = c->head_dim, .theta = c->rope_theta, .type = (cp_rope_type)c->rope_type, .factor = c->rope_factor,
                        .low_freq_factor = c->rope_low_freq_factor, .high_freq_factor = c->rope_high_freq_factor,
                        .original_max_positions = c->rope_original_max_positions, .max_positions = c->max_positions};
    char lm[64];
    snprintf(lm, sizeof lm, "%sForCausalLM", p);
    if (!(m->root = cp_module_new(NULL, "", cp_decoder_root_class(m, p, lm, name, sizeof name), CP_MOD_CONTAINER))) return CP_ERR;
    snprintf(name, sizeof name, "%sModel", p);
    cp_module *base = cp_module_new(m->root, "model", name, CP_MOD_CONTAINER);
    if (!base || !(s->embed_tokens = cp_module_embedding(base, "embed_tokens", c->vocab_size, c->hidden_size))) return CP_ERR;
    if (c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size) /* nn.Embedding(..., padding_idx=config.pad_token_id) */
        s->embed_tokens->padding_idx = c->pad_token_id;
    const int gemma = !strcmp(c->model_type, "gemma");
    s->embed_scale = gemma ? (float)sqrt((double)c->hidden_size) : 1.0f;
    if (gemma) {
        cp_free(s->embed_tokens->class_name);
        if (!(s->embed_tokens->class_name = cp_strdup("GemmaTextScaledWordEmbedding"))) return CP_ERR;
    }
    cp_module *list = cp_module_new(base, "layers", "ModuleList", CP_MOD_LIST);
    if (!list) return CP_ERR;
    const int64_t C = c->hidden_size, I = c->intermediate_size, qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
    for (int64_t l = 0; l < c->num_layers; l++) {
        llama_layer *ly = &s->layers[l];
        char idx[24], cls[64];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        snprintf(cls, sizeof cls, "%sDecoderLayer", p);
        cp_module *layer = cp_module_new(list, idx, cls, CP_MOD_CONTAINER);
        snprintf(cls, sizeof cls, "%sAttention", p);
        cp_module *attn = ly->self_attn = layer ? cp_module_new(layer, "self_attn", cls, CP_MOD_CONTAINER) : NULL;
        if (!attn || !(ly->q_proj = cp_module_linear(attn, "q_proj", C, qd, c->qkv_bias)) ||
            !(ly->k_proj = cp_module_linear(attn, "k_proj", C, kvd, c->qkv_bias)) ||
            !(ly->v_proj = cp_module_linear(attn, "v_proj", C, kvd, c->qkv_bias)) ||
            !(ly->o_proj = cp_module_linear(attn, "o_proj", qd, C, c->o_proj_bias)))
            return CP_ERR;
        snprintf(cls, sizeof cls, "%sRMSNorm", p);
        if (!strcmp(c->model_type, "qwen3") &&
            (!(ly->q_norm = cp_module_rmsnorm(attn, "q_norm", cls, c->head_dim, c->layer_norm_eps)) ||
             !(ly->k_norm = cp_module_rmsnorm(attn, "k_norm", cls, c->head_dim, c->layer_norm_eps))))
            return CP_ERR;
        ly->window = c->layer_is_local && c->layer_is_local[l] ? c->window_size : 0;
        snprintf(cls, sizeof cls, "%sMLP", p);
        cp_module *mlp = cp_module_new(layer, "mlp", cls, CP_MOD_CONTAINER);
        if (!mlp || !(ly->gate_proj = cp_module_linear(mlp, "gate_proj", C, I, c->mlp_bias)) ||
            !(ly->up_proj = cp_module_linear(mlp, "up_proj", C, I, c->mlp_bias)) ||
            !(ly->down_proj = cp_module_linear(mlp, "down_proj", I, C, c->mlp_bias)) || !cp_module_activation(mlp, "act_fn", c->activation))
            return CP_ERR;
        snprintf(cls, sizeof cls, "%sRMSNorm", p);
        if (!(ly->input_layernorm = cp_module_rmsnorm(layer, "input_layernorm", cls, C, c->layer_norm_eps)) ||
            !(ly->post_attention_layernorm = cp_module_rmsnorm(layer, "post_attention_layernorm", cls, C, c->layer_norm_eps)))
            return CP_ERR;
        ly->input_layernorm->unit_offset = ly->post_attention_layernorm->unit_offset = gemma;
    }
    snprintf(name, sizeof name, "%sRMSNorm", p);
    if (!(s->norm = cp_module_rmsnorm(base, "norm", name, C, c->layer_norm_eps))) return CP_ERR;
    s->norm->unit_offset = gemma;
    snprintf(name, sizeof name, "%sRotaryEmbedding", p);
    if (!cp_module_new(base, "rotary_emb", name, CP_MOD_CONTAINER)) return CP_ERR;
    if (cp_decoder_build_head(m, s->embed_tokens, "score") != CP_OK) return CP_ERR;
    m->stack.embeddings[0] = s->embed_tokens;
    m->stack.final_norm = s->norm;
    return cp_stack_blocks(m, base, "layers");
}

static void free_state(cp_model *m) {
    llama_state *s = m->arch_state;
    cp_free(m->stack.blocks); /* the block list build made (cp_stack_blocks) */
    m->stack.blocks = NULL;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* ---- blocks ------------------------------------------------------------------------------------ */

typedef struct {
    float *rstd1, *rstd2; // (N)
    float *h1;            // (N,C) input_layernorm output
    float *q, *k, *v;     // (N,NH·hd), (N,NKV·hd), (N,NKV·hd) — q and k after RoPE
    float *q_in, *k_in;   // qwen3: (N,NH·hd), (N,NKV·hd) q_proj / k_proj outputs (the q/k norms' inputs), else NULL
    float *rstd_q, *rstd_k; // qwen3: (N·NH), (N·NKV) per-head norm statistics
    float *probs;         // (B,NH,T,T) or NULL
    float *att;           // (N,NH·hd)
    float *x_mid;         // (N,C)
    float *h2;            // (N,C) post_attention_layernorm output
    float *gate, *up;     // (N,I) projections (gate before silu)
    float *act;           // (N,I) silu(gate) ⊙ up: the input of down_proj
} llama_acts;

/* The embedding step's state: positions and their RoPE tables. */
typedef struct { int64_t *pos; const float *cos_t, *sin_t; } llama_emb;

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t qd = (size_t)(c->num_heads * c->head_dim), kvd = (size_t)(c->num_kv_heads * c->head_dim);
    llama_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->rstd1 = cp_arena_floats(ar, N, "norm statistics");
    a->rstd2 = cp_arena_floats(ar, N, "norm statistics");
    a->h1 = cp_arena_floats(ar, N * C, "input_layernorm output");
    a->q = cp_arena_floats(ar, N * qd, "queries");
    a->k = cp_arena_floats(ar, N * kvd, "keys");
    a->v = cp_arena_floats(ar, N * kvd, "values");
    if (!strcmp(c->model_type, "qwen3")) {
        a->q_in = cp_arena_floats(ar, N * qd, "queries before q_norm");
        a->k_in = cp_arena_floats(ar, N * kvd, "keys before k_norm");
        a->rstd_q = cp_arena_floats(ar, N * (size_t)c->num_heads, "q_norm statistics");
        a->rstd_k = cp_arena_floats(ar, N * (size_t)c->num_kv_heads, "k_norm statistics");
        if (!a->q_in || !a->k_in || !a->rstd_q || !a->rstd_k) return CP_ERR;
    }
    a->probs = training ? cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * Tk), "attention probabilities") : NULL;
    a->att = cp_arena_floats(ar, N * qd, "attention output");
    a->x_mid = training ? cp_arena_floats(ar, N * C, "attention residual") : NULL;
    a->h2 = cp_arena_floats(ar, N * C, "post_attention_layernorm output");
    a->gate = cp_arena_floats(ar, N * I, "gate projection");
    a->up = cp_arena_floats(ar, N * I, "up projection");
    a->act = cp_arena_floats(ar, N * I, "MLP hidden");
    if (!a->rstd1 || !a->rstd2 || !a->h1 || !a->q || !a->k || !a->v || !a->att || !a->h2 || !a->gate || !a->up || !a->act ||
        (training && (!a->probs || !a->x_mid)))
        return CP_ERR;
    return CP_OK;
}

static cp_attention_args attn_args(const cp_model *m, const cp_run *run, const llama_layer *ly, const cp_batch *b,
                                   const llama_acts *a) {
    const cp_model_config *c = &m->config;
    cp_attention_args at = {.B = b->B, .T = b->T, .NH = c->num_heads, .NKV = c->num_kv_heads, .hs = c->head_dim,
                            .q = a->q, .k = a->k, .v = a->v, .q_stride = c->num_heads * c->head_dim,
                            .k_stride = c->num_kv_heads * c->head_dim, .v_stride = c->num_kv_heads * c->head_dim,
                            .scale = (float)pow((double)c->head_dim, -0.5), .window = ly->window,
                            .key_mask = b->attention_mask, .empty_row = CP_ATTN_EMPTY_ALL, .out = a->att, .probs = a->probs,
                            .dropout = cp_run_dropout_p(run, ly->self_attn, "attention_dropout", c->attn_dropout)};
    return at;
}

/* One decoder layer, x (N,C) in place. With a cache `kv` the (rotated) keys and values go into its
 * layer l and the queries attend to all its columns. */
static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const llama_emb *e,
                                    float *x, llama_acts *a, cp_kv_cache *kv) {
    const llama_layer *ly = &((const llama_state *)m->arch_state)->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    float *tmp = cp_arena_floats(run->arena, (size_t)(N * C), "projection output"); // (N,C)
    if (!tmp) return CP_ERR;
    cp_rmsnorm_forward(ly->input_layernorm, a->h1, a->rstd1, x, N);
    if (cp_proj_forward(run, ly->q_proj, a->q, a->h1, N) != CP_OK || cp_proj_forward(run, ly->k_proj, a->k, a->h1, N) != CP_OK ||
        cp_proj_forward(run, ly->v_proj, a->v, a->h1, N) != CP_OK)
        return CP_ERR;
    if (ly->q_norm) { /* (N·NH, hd) and (N·NKV, hd) rows: one norm per head */
        memcpy(a->q_in, a->q, (size_t)(N * c->num_heads * c->head_dim) * sizeof *a->q);
        memcpy(a->k_in, a->k, (size_t)(N * c->num_kv_heads * c->head_dim) * sizeof *a->k);
        cp_rmsnorm_forward(ly->q_norm, a->q, a->rstd_q, a->q_in, N * c->num_heads);
        cp_rmsnorm_forward(ly->k_norm, a->k, a->rstd_k, a->k_in, N * c->num_kv_heads);
    }
    cp_rope_forward(a->q, N, c->num_heads, c->head_dim, c->num_heads * c->head_dim, e->cos_t, e->sin_t);
    cp_rope_forward(a->k, N, c->num_kv_heads, c->head_dim, c->num_kv_heads * c->head_dim, e->cos_t, e->sin_t);
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->o_proj, tmp, a->att, N) != CP_OK) return CP_ERR;
    cp_add_inplace(x, tmp, N * C);
    if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);
    cp_rmsnorm_forward(ly->post_attention_layernorm, a->h2, a->rstd2, x, N);
    if (cp_proj_forward(run, ly->gate_proj, a->gate, a->h2, N) != CP_OK || cp_proj_forward(run, ly->up_proj, a->up, a->h2, N) != CP_OK)
        return CP_ERR;
    cp_activation_forward(c->activation, a->act, a->gate, N * I);
#pragma omp parallel for simd schedule(static) if (N * I > 65536)
    for (int64_t i = 0; i < N * I; i++) a->act[i] *= a->up[i];
    if (cp_proj_forward(run, ly->down_proj, tmp, a->act, N) != CP_OK) return CP_ERR;
    cp_add_inplace(x, tmp, N * C);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, run, l, b, emb, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb,
                                const float *x_in, const void *acts, float *dx, int need_dx) {
    const llama_layer *ly = &((const llama_state *)m->arch_state)->layers[l];
    const llama_emb *e = emb;
    const llama_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size;
    const int64_t qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
    cp_arena *ar = run->arena;
    float *dI1 = cp_arena_floats(ar, (size_t)(N * I), "MLP gradients"), *dI2 = cp_arena_floats(ar, (size_t)(N * I), "MLP gradients");
    float *dC = cp_arena_floats(ar, (size_t)(N * (C > qd ? C : qd)), "block gradients");
    float *dq = cp_arena_floats(ar, (size_t)(N * qd), "query gradients");
    float *dk = cp_arena_floats(ar, (size_t)(N * kvd), "key gradients"), *dv = cp_arena_floats(ar, (size_t)(N * kvd), "value gradients");
    if (!dI1 || !dI2 || !dC || !dq || !dk || !dv) return CP_ERR;

    // MLP: x_out = x_mid + down(silu(gate(h2)) ⊙ up(h2)), h2 = rms(x_mid)
    memset(dI1, 0, (size_t)(N * I) * sizeof *dI1);
    if (cp_proj_backward(run, ly->down_proj, dI1, dx, a->act, N) != CP_OK) return CP_ERR;  // d act
    cp_activation_forward(c->activation, dI2, a->gate, N * I);                            // act(gate)
#pragma omp parallel for simd schedule(static) if (N * I > 65536)
    for (int64_t i = 0; i < N * I; i++) {
        float d_act = dI1[i];
        dI1[i] = d_act * a->up[i];   // d silu(gate)
        dI2[i] = d_act * dI2[i];     // d up = d act ⊙ silu(gate)
    }
    cp_activation_backward(c->activation, dI1, dI1, a->gate, N * I);                      // d gate
    memset(dC, 0, (size_t)(N * C) * sizeof *dC);
    if (cp_proj_backward(run, ly->gate_proj, dC, dI1, a->h2, N) != CP_OK || cp_proj_backward(run, ly->up_proj, dC, dI2, a->h2, N) != CP_OK)
        return CP_ERR;                                                                     // d h2
    cp_rmsnorm_backward(ly->post_attention_layernorm, dx, dC, a->x_mid, a->rstd2, N);      // dx = d x_mid

    // attention: x_mid = x_in + o_proj(attn(rope(q), rope(k), v)), q,k,v = proj(rms(x_in))
    memset(dC, 0, (size_t)(N * qd) * sizeof *dC);
    if (cp_proj_backward(run, ly->o_proj, dC, dx, a->att, N) != CP_OK) return CP_ERR;     // d att
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attention_backward(run, l, &at, dC, dq, dk, dv) != CP_OK) return CP_ERR;
    cp_rope_backward(dq, N, c->num_heads, c->head_dim, qd, e->cos_t, e->sin_t);
    cp_rope_backward(dk, N, c->num_kv_heads, c->head_dim, kvd, e->cos_t, e->sin_t);
    if (ly->q_norm) { // q = q_norm(q_in) per head: dq, dk become the projections' output gradients
        float *dn = cp_arena_floats(ar, (size_t)(N * (qd > kvd ? qd : kvd)), "q/k norm gradients");
        if (!dn) return CP_ERR;
        memset(dn, 0, (size_t)(N * qd) * sizeof *dn);
        cp_rmsnorm_backward(ly->q_norm, dn, dq, a->q_in, a->rstd_q, N * c->num_heads);
        memcpy(dq, dn, (size_t)(N * qd) * sizeof *dq);
        memset(dn, 0, (size_t)(N * kvd) * sizeof *dn);
        cp_rmsnorm_backward(ly->k_norm, dn, dk, a->k_in, a->rstd_k, N * c->num_kv_heads);
        memcpy(dk, dn, (size_t)(N * kvd) * sizeof *dk);
    }
    int need_dh1 = need_dx || cp_module_trains(ly->input_layernorm);
    float *dh1 = need_dh1 ? dC : NULL;
    if (dh1) memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);
    if (cp_proj_backward(run, ly->q_proj, dh1, dq, a->h1, N) != CP_OK || cp_proj_backward(run, ly->k_proj, dh1, dk, a->h1, N) != CP_OK ||
        cp_proj_backward(run, ly->v_proj, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    if (dh1) cp_rmsnorm_backward(ly->input_layernorm, need_dx ? dx : NULL, dh1, x_in, a->rstd1, N);
    return CP_OK;
}

/* Gemma's embedding scale on the token rows of x (N,C), not on a prompt's virtual rows (the first
 * n_virtual of each row: PEFT concatenates them after the scaled word embedding). */
static void scale_token_rows(float *x, const cp_batch *b, const cp_embed_args *ea, int64_t C, float scale) {
    const int64_t nv = ea ? ea->n_virtual : 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = nv; t < b->T; t++)
            for (int64_t c = 0; c < C; c++) x[(r * b->T + t) * C + c] *= scale;
}

/* Embeddings and the RoPE tables for the batch's positions (default past..past+T-1, ignoring
 * padding). Dynamic scaling looks at the largest position of this batch, as transformers'
 * dynamic_rope_update does at every forward, cached or not. */
static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const int64_t past = ea->past;
    const llama_state *s = m->arch_state;
    llama_emb *e = emb;
    const int64_t N = b->B * b->T, half = m->config.head_dim / 2;
    int64_t *pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *pos, "positions");
    float *cos_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope"), *sin_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope");
    if (!pos || !cos_t || !sin_t) return CP_ERR;
    int64_t max_pos = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t < b->T; t++) {
            int64_t p = b->position_ids ? b->position_ids[r * b->T + t] : past + t;
            if (p < 0) return cp_error("position_ids: negative position %lld", (long long)p);
            pos[r * b->T + t] = p;
            if (p > max_pos) max_pos = p;
        }
    if (cp_embed_tokens(run, s->embed_tokens, b, ea, x) != CP_OK) return CP_ERR;
    if (s->embed_scale != 1.0f) scale_token_rows(x, b, ea, m->config.hidden_size, s->embed_scale);
    cp_rope_tables(&s->rope, pos, N, max_pos + 1, cos_t, sin_t);
    *e = (llama_emb){.pos = pos, .cos_t = cos_t, .sin_t = sin_t};
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    (void)emb;
    const llama_state *s = m->arch_state;
    if (s->embed_scale == 1.0f) return cp_embed_tokens_backward(run, s->embed_tokens, b, ea, dx);
    const size_t n = (size_t)(b->B * b->T * m->config.hidden_size);
    float *d = cp_arena_floats(run->arena, n, "scaled embedding gradients"); // (N,C)
    if (!d) return CP_ERR;
    memcpy(d, dx, n * sizeof *d);
    scale_token_rows(d, b, ea, m->config.hidden_size, s->embed_scale);
    return cp_embed_tokens_backward(run, s->embed_tokens, b, ea, d);
}

static const cp_block_ops block_ops = {.acts_size = sizeof(llama_acts), .embed_size = sizeof(llama_emb),
                                       .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                       .block_forward = block_forward, .block_backward = block_backward};

static const char *const ignored_suffixes[] = {".rotary_emb.inv_freq", NULL};

extern const cp_gguf_names cp_llama_gguf_names;                          /* models/llama_gguf.c */
extern const cp_gguf_names cp_qwen2_gguf_names, cp_qwen3_gguf_names; /* models/qwen_gguf.c */
extern const cp_gguf_names cp_gemma_gguf_names;                          /* models/gemma_gguf.c */

#define LLAMA_ARCH(type, cls, gguf)                                                                                    \
    {.model_type = type, .causal_lm_class = cls, .base_prefix = "model", .parse_config = parse_config, .build = build, \
     .free_state = free_state, .block_ops = &block_ops, .rotary_positions = 1, .ignored_suffixes = ignored_suffixes,  \
     .gguf_names = gguf}

/* llama.cpp writes Llama, Mistral, SmolLM and TinyLlama under general.architecture "llama": they
 * convert to model_type "llama" (one owner of the table). */
const cp_arch cp_arch_llama = LLAMA_ARCH("llama", "LlamaForCausalLM", &cp_llama_gguf_names);
const cp_arch cp_arch_mistral = LLAMA_ARCH("mistral", "MistralForCausalLM", NULL);
const cp_arch cp_arch_qwen2 = LLAMA_ARCH("qwen2", "Qwen2ForCausalLM", &cp_qwen2_gguf_names);
const cp_arch cp_arch_qwen3 = LLAMA_ARCH("qwen3", "Qwen3ForCausalLM", &cp_qwen3_gguf_names);
const cp_arch cp_arch_gemma = LLAMA_ARCH("gemma", "GemmaForCausalLM", &cp_gemma_gguf_names);
