/*
 * cmd_info.c — `cpeft info MODEL_DIR [--json] [--tree]`: what a model directory holds.
 *
 * Works from config.json alone (counting from shapes, as PyTorch's meta device does); when
 * weights are present their dtypes and sizes are read from the safetensors headers without
 * loading any data.
 *
 * With a PEFT config it prints print_trainable_parameters() as PEFT prints it for that situation:
 * --peft-config is get_peft_model (the config's inference_mode freezes the adapter), --adapter is
 * PeftModel.from_pretrained (is_trainable=False: the adapter frozen, biases of bias="all" /
 * "lora_only" still trainable) — then 0 trainable for most adapters. The adapter's own parameter
 * count (what is_trainable=True reports as trainable) follows on its own line.
 */
#include "cli/adapter_args.h"
#include "convert/gguf_load.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "core/json_write.h"
#include "core/pyfmt.h"
#include "core/strbuf.h"
#include "io/checkpoint.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "io/fsutil.h"

#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft info MODEL_DIR|--model DIR [--task-type T] [--json] [--tree] [--peft-config FILE | --adapter DIR]\n"
            "                  [--peft-format F]\n\n"
            "Prints a Hugging Face model directory's architecture, config summary, parameter count,\n"
            "weight dtypes and memory. Needs only config.json; weights are described when present.\n\n"
            "  --model DIR         the model directory (or give it as the argument)\n"
            "  --task-type T       the task class to build: CAUSAL_LM, SEQ_CLS, TOKEN_CLS, SEQ_2_SEQ_LM, FEATURE_EXTRACTION\n"
            "                      (default: the PEFT config's task_type, else config.json's architectures)\n"
            "  --tree              print the module tree as PyTorch's print(model) shows it\n"
            "  --json              one JSON object instead of text\n"
            "  --peft-config FILE  wrap the model with this PEFT adapter_config.json (as get_peft_model does)\n"
            "                      and print print_trainable_parameters()'s line and the adapter's own\n"
            "                      parameter count; --tree then prints the PeftModel with its lora.Linear\n"
            "                      wrappers\n"
            "  --adapter DIR       the same for an adapter directory as PeftModel.from_pretrained loads it\n"
            "                      (frozen: \"trainable params: 0\" unless bias=\"all\"/\"lora_only\")\n"
            "  --peft-format F     notebook (default: \"trainable params: 2359296 || ... || trainable%%: 0.179...\")\n"
            "                      or current (PEFT >= 0.11: thousands separators, 4 decimals)\n");
}

typedef struct {
    int64_t count[CP_DTYPE_COUNT]; /* elements per dtype in the files */
    int64_t file_bytes;
    int n_files, n_tensors;
} weight_summary;

static cp_status summarize_weights(const char *dir, weight_summary *w) {
    memset(w, 0, sizeof *w);
    if (cp_path_is_gguf(dir)) return CP_OK; /* a GGUF file: no safetensors to summarise (cpeft convert prints its types) */
    cp_checkpoint ck;
    if (cp_checkpoint_open(&ck, dir) != CP_OK) return CP_ERR;
    w->n_files = ck.n_files;
    w->n_tensors = ck.n_entries;
    for (int i = 0; i < ck.n_entries; i++) {
        const cp_st_tensor *t = ck.entries[i].tensor;
        w->count[t->dtype] += t->numel;
        w->file_bytes += (int64_t)(t->end - t->begin);
    }
    cp_checkpoint_close(&ck);
    return CP_OK;
}

static void attention_summary(const cp_model *m, cp_strbuf *sb) {
    const cp_model_config *c = &m->config;
    if (m->arch->encoder) { cp_sb_append(sb, "bidirectional (padding mask)"); return; }
    if (m->arch->encoder_decoder) {
        cp_sb_append(sb, "encoder bidirectional (padding mask); decoder causal, cross-attention on the encoder");
        return;
    }
    if (!c->layer_is_local) { cp_sb_append(sb, "global (causal)"); return; }
    int64_t local = 0;
    for (int64_t i = 0; i < c->num_layers; i++) local += c->layer_is_local[i];
    cp_sb_printf(sb, "%lld global, %lld local (window %lld)", (long long)(c->num_layers - local), (long long)local,
                 (long long)c->window_size);
}

static int print_text(const cp_model *m, const weight_summary *w, int64_t n_params) {
    const cp_model_config *c = &m->config;
    char b1[32], b2[32], eps[32];
    printf("model:        %s\n", m->dir);
    printf("architecture: %s (model_type %s)\n", m->root->class_name, c->model_type);
    if (m->task == CP_TASK_SEQ_CLS || m->task == CP_TASK_TOKEN_CLS)
        printf("task:         %s, %lld labels\n", cp_task_name(m->task), (long long)m->head.num_labels);
    if (m->arch->encoder_decoder)
        printf("task:         %s\nlayers:       %lld encoder + %lld decoder    hidden: %lld    heads: %lld (head dim %lld)    "
               "MLP: %lld\n", cp_task_name(m->task), (long long)c->num_layers, (long long)c->num_decoder_layers,
               (long long)c->hidden_size, (long long)c->num_heads, (long long)c->head_dim, (long long)c->intermediate_size);
    else
        printf("layers:       %lld    hidden: %lld    heads: %lld (head dim %lld)    MLP: %lld\n",
               (long long)c->num_layers, (long long)c->hidden_size, (long long)c->num_heads, (long long)c->head_dim,
               (long long)c->intermediate_size);
    printf("vocabulary:   %lld    positions: %lld\n", (long long)c->vocab_size, (long long)c->max_positions);
    cp_strbuf att;
    cp_sb_init(&att);
    attention_summary(m, &att);
    printf("attention:    %s\n", att.data ? att.data : "");
    cp_sb_free(&att);
    printf("activation:   %s    layer_norm_epsilon: %s    tie_word_embeddings: %s\n", cp_activation_name(c->activation),
           cp_py_float_repr(c->layer_norm_eps, eps, sizeof eps), c->tie_word_embeddings ? "true" : "false");
    printf("parameters:   %lld (%.2fM)\n", (long long)n_params, (double)n_params / 1e6);
    if (w->n_files) {
        printf("weights:      %d file%s, %d tensors,", w->n_files, w->n_files > 1 ? "s" : "", w->n_tensors);
        for (int d = 0; d < CP_DTYPE_COUNT; d++)
            if (w->count[d]) printf(" %s: %lld", cp_dtype_name((cp_dtype)d), (long long)w->count[d]);
        printf(", %s on disk\n", cp_format_bytes((double)w->file_bytes, b1, sizeof b1));
    } else {
        printf("weights:      none (config.json only)\n");
    }
    printf("memory:       %s as f32 for compute", cp_format_bytes((double)n_params * 4, b2, sizeof b2));
    if (w->n_files && w->count[CP_F32] == 0) printf(" (widened from the file's dtype)");
    else if (w->n_files) printf(" (F32 weights are memory-mapped, not copied)");
    printf("\n");
    return 0;
}

static int print_json(const cp_model *m, const weight_summary *w, int64_t n_params, const char *tree) {
    const cp_model_config *c = &m->config;
    cp_strbuf sb;
    cp_sb_init(&sb);
    char eps[32];
    cp_sb_append(&sb, "{\"model_dir\":");
    cp_json_write_cstring(&sb, m->dir, 0);
    cp_sb_printf(&sb, ",\"model_type\":\"%s\",\"architecture\":\"%s\",\"task_type\":\"%s\",\"num_parameters\":%lld",
                 c->model_type, m->root->class_name, cp_task_name(m->task), (long long)n_params);
    if (m->task == CP_TASK_SEQ_CLS || m->task == CP_TASK_TOKEN_CLS)
        cp_sb_printf(&sb, ",\"num_labels\":%lld", (long long)m->head.num_labels);
    cp_sb_printf(&sb,
                 ",\"config\":{\"vocab_size\":%lld,\"hidden_size\":%lld,\"num_layers\":%lld,\"num_heads\":%lld,"
                 "\"head_dim\":%lld,\"intermediate_size\":%lld,\"max_position_embeddings\":%lld,"
                 "\"layer_norm_epsilon\":%s,\"activation_function\":\"%s\",\"tie_word_embeddings\":%s",
                 (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->num_layers,
                 (long long)c->num_heads, (long long)c->head_dim, (long long)c->intermediate_size,
                 (long long)c->max_positions, cp_py_float_repr(c->layer_norm_eps, eps, sizeof eps),
                 cp_activation_name(c->activation), c->tie_word_embeddings ? "true" : "false");
    if (c->layer_is_local) {
        cp_sb_printf(&sb, ",\"window_size\":%lld,\"attention_layers\":[", (long long)c->window_size);
        for (int64_t i = 0; i < c->num_layers; i++)
            cp_sb_printf(&sb, "%s\"%s\"", i ? "," : "", c->layer_is_local[i] ? "local" : "global");
        cp_sb_append(&sb, "]");
    }
    cp_sb_append(&sb, "},\"weights\":");
    if (w->n_files) {
        cp_sb_printf(&sb, "{\"files\":%d,\"tensors\":%d,\"bytes\":%lld,\"dtypes\":{", w->n_files, w->n_tensors,
                     (long long)w->file_bytes);
        int first = 1;
        for (int d = 0; d < CP_DTYPE_COUNT; d++)
            if (w->count[d]) {
                cp_sb_printf(&sb, "%s\"%s\":%lld", first ? "" : ",", cp_dtype_name((cp_dtype)d), (long long)w->count[d]);
                first = 0;
            }
        cp_sb_append(&sb, "}}");
    } else {
        cp_sb_append(&sb, "null");
    }
    cp_sb_printf(&sb, ",\"compute_bytes\":%lld", (long long)n_params * 4);
    if (m->peft) {
        int64_t trainable, all;
        cp_model_trainable_parameters(m, &trainable, &all);
        cp_sb_printf(&sb, ",\"trainable_params\":%lld,\"all_params\":%lld,\"adapter_params\":%lld", (long long)trainable,
                     (long long)all, (long long)cp_peft_adapter_num_params(m, "default"));
    }
    if (tree) { cp_sb_append(&sb, ",\"tree\":"); cp_json_write_cstring(&sb, tree, 0); }
    cp_sb_append(&sb, "}");
    char *s = cp_sb_finish(&sb);
    if (!s) return 1;
    puts(s);
    cp_free(s);
    return 0;
}

/* --peft-config FILE as get_peft_model (trainable unless the config says inference_mode), or
 * --adapter DIR as PeftModel.from_pretrained with is_trainable=False (frozen; the LoRA shapes are
 * checked against the adapter file's header when it is there, before anything is allocated). */
static cp_status add_peft(cp_model *m, const char *peft_config, const char *adapter) {
    char *cfg_path = adapter ? cp_path_join(adapter, "adapter_config.json") : cp_strdup(peft_config);
    char *w_path = adapter ? cp_path_join(adapter, "adapter_model.safetensors") : NULL;
    cp_peft_config *cfg = NULL;
    cp_status st = cfg_path ? cp_peft_config_load(cfg_path, &cfg) : CP_ERR;
    if (st == CP_OK && w_path && cp_path_exists(w_path)) st = cp_adapter_check_config(m, cfg, adapter);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, 0);
        st = cp_peft_add(m, "default", cfg, &rng, 1, adapter ? 0 : !cfg->inference_mode);
    }
    cp_peft_config_free(cfg);
    cp_free(cfg_path);
    cp_free(w_path);
    return st;
}

/* The task to load for: --task-type, else the PEFT config's task_type (NULL: config.json decides). */
static cp_status pick_task(const char *task_type, const char *peft_config, const char *adapter, char **out) {
    *out = NULL;
    if (task_type) return (*out = cp_strdup(task_type)) ? CP_OK : CP_ERR;
    if (!peft_config && !adapter) return CP_OK;
    char *path = adapter ? cp_path_join(adapter, "adapter_config.json") : cp_strdup(peft_config);
    cp_peft_config *cfg = NULL;
    cp_status st = path ? cp_peft_config_load(path, &cfg) : CP_ERR;
    if (st == CP_OK && cfg->task_type && !(*out = cp_strdup(cfg->task_type))) st = CP_ERR;
    cp_peft_config_free(cfg);
    cp_free(path);
    return st;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL, *model = NULL, *task_type = NULL, *peft_config = NULL, *adapter = NULL, *format = "notebook";
    int json = 0, tree = 0;
    static const char *const formats[] = {"notebook", "current", NULL};
    const cp_opt options[] = {
        {CP_STRING("--model", &model)},
        {CP_STRING("--task-type", &task_type)},
        {CP_FLAG("--json", &json)},
        {CP_FLAG("--tree", &tree)},
        {CP_STRING("--peft-config", &peft_config)},
        {CP_STRING("--adapter", &adapter)},
        {CP_STRING("--peft-format", &format), .choices = formats},
        {0},
    };
    const cp_args_spec spec = {.cmd = "info", .opts = options, .help = help, .unknown = "unknown option %s",
                               .help_after_unknown = 1, .positional = &dir, .extra = "unexpected argument %s"};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (dir && model) { fprintf(stderr, "cpeft info: give the model directory once (argument or --model)\n"); return 2; }
    if (!dir) dir = model;
    if (!dir) { help(stderr); return 2; }
    if (peft_config && adapter) { fprintf(stderr, "cpeft info: give --peft-config or --adapter, not both\n"); return 2; }

    char *task = NULL;
    cp_model *m = NULL;
    if (pick_task(task_type, peft_config, adapter, &task) != CP_OK ||
        cli_model_load_task(&m, dir, CP_LOAD_CONFIG_ONLY, task) != CP_OK) {
        fprintf(stderr, "cpeft info: %s\n", cp_last_error());
        cp_free(task);
        return 1;
    }
    cp_free(task);
    weight_summary w;
    if (summarize_weights(dir, &w) != CP_OK) {
        fprintf(stderr, "cpeft info: %s\n", cp_last_error());
        cp_model_free(m);
        return 1;
    }
    int64_t n_params = cp_model_num_parameters(m);
    char *line = NULL, *own = NULL;
    if (peft_config || adapter) {
        if (add_peft(m, peft_config, adapter) != CP_OK) {
            fprintf(stderr, "cpeft info: %s\n", cp_last_error());
            cp_model_free(m);
            return 1;
        }
        cp_peft_line_style style = strcmp(format, "current") ? CP_PEFT_LINE_NOTEBOOK : CP_PEFT_LINE_CURRENT;
        line = cp_model_trainable_parameters_line(m, style);
        own = cp_peft_adapter_params_line(m, "default", style);
    }
    char *repr = tree ? cp_model_peft_repr(m) : NULL;
    int rc;
    if (json) rc = print_json(m, &w, n_params, repr);
    else {
        rc = tree ? (puts(repr ? repr : ""), 0) : print_text(m, &w, n_params);
        if (line) puts(line);
        if (own) puts(own);
    }
    cp_free(line);
    cp_free(own);
    cp_free(repr);
    cp_model_free(m);
    return rc;
}
