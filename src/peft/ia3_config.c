/*
 * ia3_config.c — PEFT's IA3Config: adapter_config.json read with PEFT's rules (errors name the file
 * and field) and written byte for byte as PEFT's save_pretrained writes it; PEFT's default target and
 * feed-forward tables (peft/utils/constants.py); which targets are feed-forward.
 *
 * IA3Config's fields besides PeftConfig's: target_modules, exclude_modules, feedforward_modules (each
 * null, a list — a Python set in PEFT, written sorted here since PEFT's set order changes from run to
 * run — or a regex string; target_modules also "all-linear"), fan_in_fan_out, init_ia3_weights. Unknown
 * keys (a newer PEFT's) are ignored with a warning, as PEFT drops them.
 */
#include "peft/ia3.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "io/json.h"
#include "peft/peft_config.h"

#include <string.h>
#include <strings.h>

#define IA3(cfg) ((cp_ia3_config *)(cfg))
#define CIA3(cfg) ((const cp_ia3_config *)(cfg))

static const char *const known_keys[] = {"target_modules", "exclude_modules", "feedforward_modules", "fan_in_fan_out",
                                         "init_ia3_weights"};

/* ---- PEFT's tables ------------------------------------------------------------------------------ */

#define T(...) (const char *const[]){__VA_ARGS__, NULL}
/* TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING and _FEEDFORWARD_MODULES_MAPPING (PEFT 0.21). */
static const struct { const char *model_type; const char *const *targets, *const *feedforward; } defaults[] = {
    {"t5", T("k", "v", "wo"), T("wo")},
    {"mt5", T("k", "v", "wi_1"), (const char *const[]){NULL}},
    {"gpt2", T("c_attn", "mlp.c_proj"), T("mlp.c_proj")},
    {"bloom", T("query_key_value", "mlp.dense_4h_to_h"), T("mlp.dense_4h_to_h")},
    {"roberta", T("key", "value", "output.dense"), T("output.dense")},
    {"opt", T("q_proj", "k_proj", "fc2"), T("fc2")},
    {"gptj", T("q_proj", "v_proj", "fc_out"), T("fc_out")},
    {"gpt_neox", T("query_key_value", "dense_4h_to_h"), T("dense_4h_to_h")},
    {"gpt_neo", T("q_proj", "v_proj", "c_proj"), T("c_proj")},
    {"bart", T("q_proj", "v_proj", "fc2"), T("fc2")},
    {"gpt_bigcode", T("c_attn", "mlp.c_proj"), T("mlp.c_proj")},
    {"llama", T("k_proj", "v_proj", "down_proj"), T("down_proj")},
    {"llama4", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
    {"mistral", T("k_proj", "v_proj", "down_proj"), T("down_proj")},
    {"mixtral", T("k_proj", "v_proj", "w2"), T("w2")},
    {"bert", T("key", "value", "output.dense"), T("output.dense")},
    {"deberta-v2", T("key_proj", "value_proj", "output.dense"), T("output.dense")},
    {"deberta", T("in_proj", "output.dense"), T("output.dense")},
    {"RefinedWebModel", T("query_key_value", "dense_4h_to_h"), T("dense_4h_to_h")},
    {"RefinedWeb", T("query_key_value", "dense_4h_to_h"), T("dense_4h_to_h")},
    {"falcon", T("query_key_value", "dense_4h_to_h"), T("dense_4h_to_h")},
    {"phi", T("q_proj", "v_proj", "fc2"), T("fc2")},
    {"gemma", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
    {"gemma2", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
    {"gemma3_text", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
    {"qwen2", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
    {"qwen3", T("q_proj", "v_proj", "down_proj"), T("down_proj")},
};
#undef T

const char *const *cp_ia3_default_targets(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof defaults / sizeof *defaults; i++)
        if (!strcmp(defaults[i].model_type, model_type)) return defaults[i].targets;
    return NULL;
}

const char *const *cp_ia3_default_feedforward(const char *model_type) {
    for (size_t i = 0; model_type && i < sizeof defaults / sizeof *defaults; i++)
        if (!strcmp(defaults[i].model_type, model_type)) return defaults[i].feedforward;
    return NULL;
}

void cp_ia3_target_spec(const cp_ia3_config *cfg, cp_target_spec *t) {
    *t = (cp_target_spec){
        .kind = cfg->target_kind,
        .modules = cfg->target_modules,
        .n_modules = cfg->n_target_modules,
        .regex = cfg->target_regex,
        .exclude = cfg->exclude_modules,
        .n_exclude = cfg->n_exclude_modules,
        .exclude_regex = cfg->exclude_regex,
        .modules_to_save = cfg->base.modules_to_save,
        .n_modules_to_save = cfg->base.n_modules_to_save - cfg->base.n_heads_after_targets,
        .seq_cls = cfg->base.task_type && !strcmp(cfg->base.task_type, "SEQ_CLS"),
        .defaults = cp_ia3_default_targets,
        .kinds = 1u << CP_MOD_LINEAR | 1u << CP_MOD_CONV1D,
        .supported = "`torch.nn.Linear` and `transformers.pytorch_utils.Conv1D`",
        .keep_long_lists = 1,
    };
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

cp_status cp_ia3_is_feedforward(const cp_ia3_config *cfg, const char *path, int *out) {
    *out = 0;
    if (cfg->feedforward_kind == CP_TARGETS_REGEX) return cp_regex_fullmatch(cfg->feedforward_regex, path, out);
    for (int i = 0; i < cfg->n_feedforward_modules && !*out; i++) *out = ends_with(path, cfg->feedforward_modules[i]);
    return CP_OK;
}

/* ---- life cycle ---------------------------------------------------------------------------------- */

extern const cp_peft_method cp_ia3_method;

static cp_ia3_config *alloc_config(void) {
    cp_ia3_config *cfg = cp_calloc(1, sizeof *cfg, "an IA3 config");
    if (!cfg) return NULL;
    cfg->base.method = &cp_ia3_method;
    cfg->target_kind = CP_TARGETS_DEFAULT;
    cfg->feedforward_kind = CP_TARGETS_DEFAULT;
    cfg->init_ia3_weights = 1;
    return cfg;
}

cp_peft_config *cp_ia3_config_new(void) {
    cp_ia3_config *cfg = alloc_config();
    return cfg ? &cfg->base : NULL;
}

void cp_ia3_config_free(cp_peft_config *base) {
    cp_ia3_config *cfg = IA3(base);
    if (!cfg) return;
    cp_peft_config_free_common(&cfg->base);
    cp_peft_free_list(cfg->target_modules, cfg->n_target_modules);
    cp_free(cfg->target_regex);
    cp_peft_free_list(cfg->exclude_modules, cfg->n_exclude_modules);
    cp_free(cfg->exclude_regex);
    cp_peft_free_list(cfg->feedforward_modules, cfg->n_feedforward_modules);
    cp_free(cfg->feedforward_regex);
    cp_free(cfg);
}

static char *dup_or_null(const char *s) { return s ? cp_strdup(s) : NULL; }

cp_peft_config *cp_ia3_config_copy(const cp_peft_config *base) {
    const cp_ia3_config *src = CIA3(base);
    cp_ia3_config *dst = cp_malloc(sizeof *dst, "an IA3 config");
    if (!dst) return NULL;
    *dst = *src;
    cp_peft_config_copy_common(&dst->base, &src->base);
    dst->target_modules = cp_peft_copy_list(src->target_modules, src->n_target_modules);
    dst->target_regex = dup_or_null(src->target_regex);
    dst->exclude_modules = cp_peft_copy_list(src->exclude_modules, src->n_exclude_modules);
    dst->exclude_regex = dup_or_null(src->exclude_regex);
    dst->feedforward_modules = cp_peft_copy_list(src->feedforward_modules, src->n_feedforward_modules);
    dst->feedforward_regex = dup_or_null(src->feedforward_regex);
    return &dst->base;
}

/* ---- reading ------------------------------------------------------------------------------------- */

/* A list read into a set's entries (PEFT's __post_init__ turns lists into sets): each name once. */
static void dedup(char **list, int *n) {
    int k = 0;
    for (int i = 0; i < *n; i++) {
        int seen = 0;
        for (int j = 0; j < k && !seen; j++) seen = !strcmp(list[j], list[i]);
        if (seen) cp_free(list[i]);
        else list[k++] = list[i];
    }
    *n = k;
}

/* null / a list / a string: target_modules ("all-linear" too), exclude_modules, feedforward_modules. */
static cp_status read_names(const cJSON *root, const char *key, const char *path, int all_linear, cp_targets_kind *kind,
                            char ***list, int *n, char **regex) {
    const cJSON *v = cp_json_field(root, key);
    *kind = CP_TARGETS_DEFAULT;
    if (!v) return CP_OK;
    if (cJSON_IsString(v)) {
        if (all_linear && !strcasecmp(v->valuestring, "all-linear")) *kind = CP_TARGETS_ALL_LINEAR;
        else {
            *kind = CP_TARGETS_REGEX;
            if (!(*regex = cp_strdup(v->valuestring))) return CP_ERR;
        }
        return CP_OK;
    }
    if (!cJSON_IsArray(v))
        return cp_error("%s: field \"%s\": expected null, a list of strings or a string, found %s", path, key, cp_json_type_name(v));
    *kind = CP_TARGETS_LIST;
    if (cp_peft_read_string_list(v, key, path, list, n) != CP_OK) return CP_ERR;
    dedup(*list, n);
    return CP_OK;
}

static int is_known(const char *key) {
    if (cp_peft_config_is_common_key(key)) return 1;
    for (size_t i = 0; i < sizeof known_keys / sizeof *known_keys; i++)
        if (!strcmp(key, known_keys[i])) return 1;
    return 0;
}

/* "{'a', 'b'}" as Python prints a set of strings (sorted here). */
static void python_set(cp_strbuf *sb, char *const *items, int n) {
    char **sorted = cp_peft_copy_list(items, n);
    cJSON *arr = sorted ? cp_peft_string_list_json(sorted, n, 1) : NULL;
    cp_sb_append(sb, "{");
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) cp_sb_printf(sb, "%s'%s'", i++ ? ", " : "", it->valuestring);
    cp_sb_append(sb, "}");
    cJSON_Delete(arr);
    cp_peft_free_list(sorted, n);
}

cp_status cp_ia3_config_validate(const cp_ia3_config *cfg, const char *where) {
    if (cfg->target_regex && cp_regex_check(cfg->target_regex, "target_modules") != CP_OK) return cp_error_context("%s", where);
    if (cfg->exclude_regex && cp_regex_check(cfg->exclude_regex, "exclude_modules") != CP_OK) return cp_error_context("%s", where);
    if (cfg->feedforward_regex && cp_regex_check(cfg->feedforward_regex, "feedforward_modules") != CP_OK)
        return cp_error_context("%s", where);
    if (cfg->feedforward_kind != CP_TARGETS_LIST || cfg->target_kind != CP_TARGETS_LIST) return CP_OK;
    cp_strbuf missing;
    cp_sb_init(&missing);
    int n_missing = 0;
    for (int i = 0; i < cfg->n_feedforward_modules; i++) {
        int found = 0;
        for (int k = 0; k < cfg->n_target_modules && !found; k++) found = !strcmp(cfg->feedforward_modules[i], cfg->target_modules[k]);
        if (!found) cp_sb_printf(&missing, "%s'%s'", n_missing++ ? ", " : "", cfg->feedforward_modules[i]);
    }
    if (!n_missing) { cp_sb_free(&missing); return CP_OK; }
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, "%s: `feedforward_modules` should be a subset of `target_modules`: feedforward_modules ", where);
    python_set(&sb, cfg->feedforward_modules, cfg->n_feedforward_modules);
    cp_sb_append(&sb, ", target_modules ");
    python_set(&sb, cfg->target_modules, cfg->n_target_modules);
    char *list = cp_sb_finish(&missing);
    cp_sb_printf(&sb, " (%s not among the targets)", list ? list : "");
    cp_free(list);
    char *msg = cp_sb_finish(&sb);
    cp_status st = cp_error("%s", msg ? msg : "`feedforward_modules` should be a subset of `target_modules`");
    cp_free(msg);
    return st;
}

cp_status cp_ia3_config_from_json(const cJSON *root, const char *path, cp_peft_config **out) {
    *out = NULL;
    if (cp_peft_config_check_type(root, path, &cp_ia3_method) != CP_OK) return CP_ERR;
    cp_ia3_config *cfg = alloc_config();
    if (!cfg) return CP_ERR;
    for (const cJSON *it = root->child; it; it = it->next)
        if (!is_known(it->string)) cp_warn("%s: unknown key \"%s\" ignored (as PEFT does)", path, it->string);
    cp_targets_kind exclude_kind;
    cp_status st = cp_peft_config_read_common(&cfg->base, root, path);
    if (st == CP_OK)
        st = read_names(root, "target_modules", path, 1, &cfg->target_kind, &cfg->target_modules, &cfg->n_target_modules,
                        &cfg->target_regex);
    if (st == CP_OK)
        st = read_names(root, "exclude_modules", path, 0, &exclude_kind, &cfg->exclude_modules, &cfg->n_exclude_modules,
                        &cfg->exclude_regex);
    if (st == CP_OK)
        st = read_names(root, "feedforward_modules", path, 0, &cfg->feedforward_kind, &cfg->feedforward_modules,
                        &cfg->n_feedforward_modules, &cfg->feedforward_regex);
    if (st == CP_OK) st = cp_json_get_bool(root, "fan_in_fan_out", 0, 0, &cfg->fan_in_fan_out, path);
    if (st == CP_OK) st = cp_json_get_bool(root, "init_ia3_weights", 1, 0, &cfg->init_ia3_weights, path);
    if (st == CP_OK) st = cp_ia3_config_validate(cfg, path);
    if (st != CP_OK) { cp_ia3_config_free(&cfg->base); return CP_ERR; }
    *out = &cfg->base;
    return CP_OK;
}

/* ---- writing ------------------------------------------------------------------------------------- */

static cJSON *names_json(cp_targets_kind kind, char *const *list, int n, const char *regex) {
    switch (kind) {
    case CP_TARGETS_LIST: return cp_peft_string_list_json(list, n, 1);
    case CP_TARGETS_REGEX: return cJSON_CreateString(regex);
    case CP_TARGETS_ALL_LINEAR: return cJSON_CreateString("all-linear");
    default: return cJSON_CreateNull();
    }
}

char *cp_ia3_config_to_json(const cp_peft_config *base) {
    const cp_ia3_config *cfg = CIA3(base);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cp_peft_config_write_common(&cfg->base, o);
    cJSON_AddItemToObject(o, "exclude_modules",
                          names_json(cfg->exclude_regex ? CP_TARGETS_REGEX : cfg->exclude_modules ? CP_TARGETS_LIST : CP_TARGETS_DEFAULT,
                                     cfg->exclude_modules, cfg->n_exclude_modules, cfg->exclude_regex));
    cJSON_AddItemToObject(o, "fan_in_fan_out", cJSON_CreateBool(cfg->fan_in_fan_out));
    cJSON_AddItemToObject(o, "feedforward_modules",
                          names_json(cfg->feedforward_kind, cfg->feedforward_modules, cfg->n_feedforward_modules, cfg->feedforward_regex));
    cJSON_AddItemToObject(o, "init_ia3_weights", cJSON_CreateBool(cfg->init_ia3_weights));
    cJSON_AddItemToObject(o, "target_modules", names_json(cfg->target_kind, cfg->target_modules, cfg->n_target_modules, cfg->target_regex));
    char *text = cp_json_dump_python(o);
    cJSON_Delete(o);
    return text;
}
