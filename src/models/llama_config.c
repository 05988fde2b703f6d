/*
 * llama_config.c — config.json of the Llama family (models/llama.h), as each transformers config
 * class reads it: sizes, norms, biases, RoPE (transformers 5's rope_parameters or the older
 * rope_theta + rope_scaling keys), sliding windows per layer, and the variants' own switches
 * (Qwen3's head_dim, Gemma's activation, Gemma2's soft-capping and query_pre_attn_scalar, Phi3's
 * and GLM's partial rotary). Anything a class reads that cpeft does not run is refused here by name.
 */
#include "models/llama.h"
#include "core/alloc.h"
#include "io/json.h"

#include <math.h>
#include <string.h>

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
static cp_status parse_rope(cp_model_config *cfg, const cJSON *root, const char *file, int partial_ok) {
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
    if (partial_ok && t != CP_ROPE_DEFAULT) /* Phi3Config takes default and longrope ("su", "yarn"): cpeft has no longrope */
        return cp_error("%s: rope scaling type \"%s\" is not supported for %s (supported: default)", file, type, cfg->model_type);
    if (t < 0)
        return cp_error("%s: rope scaling type \"%s\" is not supported (supported: default, linear, dynamic, llama3)", file, type);
    cfg->rope_type = t;
    if (t == CP_ROPE_DEFAULT || partial_ok) return CP_OK; /* the default frequencies ignore partial_rotary_factor
                                                              (phi3 reads it, and refuses other types, itself) */
    /* the other types rotate only the first partial_rotary_factor·head_dim dims, which the Llama
     * family's apply_rotary_pos_emb cannot take (a shape error in transformers) */
    double partial = !strcmp(cfg->model_type, "glm") ? 0.5 : 1.0; /* GlmConfig sets 0.5 when nothing says */
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

/* Reads layer_types into cfg->layer_is_local: "sliding_attention" layers slide with `window`, the
 * others are causal; when absent, layer i slides iff dflt(i) (Qwen2's i >= max_window_layers with a
 * window, Gemma2's even layers). Keeps no table when no layer slides. `why` says, when a layer
 * slides but there is no window, which switch left none (transformers fails building its mask). */
static cp_status read_layer_types(cp_model_config *cfg, const cJSON *root, const char *file, int64_t window,
                                  int (*dflt)(int64_t i, int64_t window, int64_t arg), int64_t arg, const char *why) {
    const int64_t L = cfg->num_layers;
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
        for (int64_t i = 0; i < L; i++) cfg->layer_is_local[i] = (unsigned char)dflt(i, window, arg);
    }
    int64_t n_local = 0;
    for (int64_t i = 0; i < L; i++) n_local += cfg->layer_is_local[i];
    if (n_local && !window) /* transformers fails building the sliding mask ("sliding_window ... is not set") */
        return cp_error("%s: field \"layer_types\" has sliding_attention layers but there is no window (%s)", file, why);
    if (!n_local) {
        cp_free(cfg->layer_is_local);
        cfg->layer_is_local = NULL;
    }
    cfg->window_size = window;
    return CP_OK;
}

static int qwen2_default_kind(int64_t i, int64_t window, int64_t max_window_layers) { return window > 0 && i >= max_window_layers; }
static int gemma2_default_kind(int64_t i, int64_t window, int64_t unused) { (void)window; (void)unused; return (i + 1) % 2; }

/* Qwen2Config and Qwen3Config: the window is sliding_window when use_sliding_window, else none; layer_types, when
 * absent, makes layer i "sliding_attention" iff there is a window and i >= max_window_layers
 * (default 28). Each layer's mask is then the sliding one or the plain causal one. */
static cp_status qwen2_layer_types(cp_model_config *cfg, const cJSON *root, const char *file) {
    int use_sliding_window;
    int64_t window = 0, max_window_layers = 28;
    if (cp_json_get_bool(root, "use_sliding_window", 0, 0, &use_sliding_window, file) != CP_OK) return CP_ERR;
    if (use_sliding_window && (read_window(root, "sliding_window", 4096, &window, file) != CP_OK ||
                               cp_json_get_int(root, "max_window_layers", 28, 0, &max_window_layers, file) != CP_OK))
        return CP_ERR;
    return read_layer_types(cfg, root, file, window, qwen2_default_kind, max_window_layers,
                            use_sliding_window ? "sliding_window is null" : "use_sliding_window is false");
}

/* A soft-capping value: absent → dflt, null → 0 (none), else a positive number. */
static cp_status read_softcap(const cJSON *root, const char *key, double dflt, double *out, const char *file) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (v && cJSON_IsNull(v)) { *out = 0; return CP_OK; }
    if (cp_json_get_double(root, key, dflt, 0, out, file) != CP_OK) return CP_ERR;
    if (!(*out > 0) || isinf(*out)) return cp_error("%s: field \"%s\": expected a positive number or null, found %g", file, key, *out);
    return CP_OK;
}

/* Gemma2Config: sliding_window (default 4096) on the layers layer_types names (default: the even
 * layers 0, 2, ...), attention and final logit soft-capping (50 and 30 by default, null = none),
 * query_pre_attn_scalar (default 256). */
static cp_status gemma2_switches(cp_model_config *cfg, const cJSON *root, const char *file) {
    int64_t window;
    if (read_window(root, "sliding_window", 4096, &window, file) != CP_OK ||
        read_layer_types(cfg, root, file, window, gemma2_default_kind, 0, "sliding_window is null") != CP_OK ||
        read_softcap(root, "attn_logit_softcapping", 50.0, &cfg->attn_logit_softcapping, file) != CP_OK ||
        read_softcap(root, "final_logit_softcapping", 30.0, &cfg->final_logit_softcapping, file) != CP_OK ||
        cp_json_get_double(root, "query_pre_attn_scalar", 256.0, 0, &cfg->query_pre_attn_scalar, file) != CP_OK)
        return CP_ERR;
    if (!(cfg->query_pre_attn_scalar > 0))
        return cp_error("%s: field \"query_pre_attn_scalar\": expected a positive number, found %g", file, cfg->query_pre_attn_scalar);
    return CP_OK;
}

/* partial_rotary_factor (rope_parameters' or the top-level key, default dflt): the first factor·head_dim
 * dims of each head rotate, an even number of them. */
static cp_status read_partial_rotary(cp_model_config *cfg, const cJSON *root, const char *file, double dflt) {
    const cJSON *dict = cp_json_field(root, "rope_parameters");
    const cJSON *pv = cJSON_IsObject(dict) ? cp_json_field(dict, "partial_rotary_factor") : NULL;
    if (pv && rope_number(pv, "rope_parameters", "partial_rotary_factor", &cfg->partial_rotary_factor, file) != CP_OK) return CP_ERR;
    if (!pv && cp_json_get_double(root, "partial_rotary_factor", dflt, 0, &cfg->partial_rotary_factor, file) != CP_OK) return CP_ERR;
    const int64_t hd = cfg->head_dim ? cfg->head_dim : cfg->hidden_size / cfg->num_heads; /* config.c checks the division */
    const int64_t rot = (int64_t)((double)hd * cfg->partial_rotary_factor);
    if (!(cfg->partial_rotary_factor > 0 && cfg->partial_rotary_factor <= 1) || rot < 2 || rot % 2)
        return cp_error("%s: field \"partial_rotary_factor\": %g of head_dim %lld gives %lld rotary dims (expected an even "
                        "number in [2, head_dim])", file, cfg->partial_rotary_factor, (long long)hd, (long long)rot);
    return CP_OK;
}

/* Phi3Config: partial_rotary_factor (default 1) with the default rope type only (Phi3Config refuses
 * the others but longrope; "su" and "yarn" mean longrope, which cpeft does not implement),
 * sliding_window (default null) on every layer, resid_pdrop. */
static cp_status phi3_switches(cp_model_config *cfg, const cJSON *root, const char *file) {
    if (read_partial_rotary(cfg, root, file, 1.0) != CP_OK) return CP_ERR;
    if (cp_json_field(root, "sliding_window") && read_window(root, "sliding_window", 0, &cfg->window_size, file) != CP_OK)
        return CP_ERR; /* absent: None */
    if (cfg->window_size && alloc_layer_kinds(cfg, 1) != CP_OK) return CP_ERR;
    cfg->fused_qkv = cfg->fused_gate_up = 1;
    return cp_json_get_double(root, "resid_pdrop", 0.0, 0, &cfg->resid_dropout, file);
}

cp_status cp_llama_parse_config(cp_model_config *cfg, const cJSON *root, const char *file) {
    const int qwen2 = !strcmp(cfg->model_type, "qwen2"), qwen3 = !strcmp(cfg->model_type, "qwen3");
    const int gemma2 = !strcmp(cfg->model_type, "gemma2"), gemma = gemma2 || !strcmp(cfg->model_type, "gemma");
    const int phi3 = !strcmp(cfg->model_type, "phi3"), glm = !strcmp(cfg->model_type, "glm");
    const int mistral = !strcmp(cfg->model_type, "mistral"), llama = !qwen2 && !qwen3 && !mistral && !gemma && !phi3 && !glm;
    cfg->partial_rotary_factor = 1.0;
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
    if (gemma && !cp_json_field(root, "head_dim")) cfg->head_dim = 256; /* GemmaConfig's and Gemma2Config's */
    if (glm && !cp_json_field(root, "head_dim")) cfg->head_dim = 128;   /* GlmConfig's */
    if (gemma) { /* GemmaAttention: is_causal = not use_bidirectional_attention */
        int bidirectional;
        if (cp_json_get_bool(root, "use_bidirectional_attention", 0, 0, &bidirectional, file) != CP_OK) return CP_ERR;
        if (bidirectional) return cp_error("%s: field \"use_bidirectional_attention\": true is not supported for %s", file,
                                          cfg->model_type);
    }
    if (cp_json_get_double(root, "rms_norm_eps", phi3 ? 1e-5 : glm ? 1.5625e-7 : 1e-6, 0, &cfg->layer_norm_eps, file) != CP_OK ||
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
    if (glm && cp_json_get_bool(root, "attention_bias", 1, 0, &cfg->qkv_bias, file) != CP_OK) /* GlmAttention: q/k/v, never o_proj */
        return CP_ERR;
    if (mistral && mistral_window(cfg, root, file) != CP_OK) return CP_ERR;
    if ((qwen2 || qwen3) && qwen2_layer_types(cfg, root, file) != CP_OK) return CP_ERR;
    if (gemma2 && gemma2_switches(cfg, root, file) != CP_OK) return CP_ERR;
    if (parse_rope(cfg, root, file, phi3) != CP_OK) return CP_ERR;
    if (phi3 && phi3_switches(cfg, root, file) != CP_OK) return CP_ERR;
    if (glm) { /* GlmConfig: partial_rotary_factor 0.5 by default, rotated in interleaved pairs; GlmMLP's gate_up_proj */
        if (read_partial_rotary(cfg, root, file, 0.5) != CP_OK) return CP_ERR;
        cfg->rope_interleaved = cfg->fused_gate_up = 1;
    }
    /* GemmaConfig turns the legacy "gelu" into gelu_pytorch_tanh; transformers 5.23's GemmaMLP reads
     * hidden_act alone (a hidden_activation key is kept on the config and never used). Gemma2MLP reads
     * hidden_activation (ACT2FN: "gelu" is the exact erf GELU there) and never hidden_act. */
    const char *act, *key = gemma2 ? "hidden_activation" : "hidden_act";
    if (cp_json_get_string(root, key, gemma ? "gelu_pytorch_tanh" : "silu", 0, &act, file) != CP_OK) return CP_ERR;
    const int ok = gemma ? !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu") : !strcmp(act, "silu") || !strcmp(act, "swish");
    if (!ok)
        return cp_error("%s: field \"%s\": \"%s\" is not supported for %s (supported: %s)", file, key, act, cfg->model_type,
                        gemma ? "gelu_pytorch_tanh, gelu" : "silu");
    const cp_activation activation = gemma2 && !strcmp(act, "gelu") ? CP_ACT_GELU : gemma ? CP_ACT_GELU_PYTORCH_TANH : CP_ACT_SILU;
    /* the Llama family defaults to untied embeddings, Gemma to tied ones and pad_token_id 0 */
    cp_status st = cp_config_read_common(cfg, root, file, gemma ? "gelu_pytorch_tanh" : "silu");
    if (st == CP_OK && !gemma && !cp_json_field(root, "tie_word_embeddings")) cfg->tie_word_embeddings = 0;
    if (st == CP_OK && gemma && !cp_json_field(root, "pad_token_id")) cfg->pad_token_id = 0;
    if (st == CP_OK && phi3 && !cp_json_field(root, "pad_token_id")) cfg->pad_token_id = 32000; /* Phi3Config's */
    if (st == CP_OK && glm && !cp_json_field(root, "pad_token_id")) cfg->pad_token_id = 151329; /* GlmConfig's */
    cfg->activation = activation;
    return st;
}

