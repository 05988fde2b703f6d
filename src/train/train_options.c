/*
 * train_options.c — the options of a training run and of the LoRA adapter it trains: defaults (those
 * of `cpeft train`, TrainingArguments' where it has them), the checks torch.optim.AdamW and
 * TrainingArguments make, the LoraConfig built from LoRA options, the learning-rate schedules by name,
 * and cp_train: a whole run from a model directory through the public trainer.
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "core/pyfmt.h"
#include "peft/lora.h"
#include "peft/lora_config.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"
#include "io/json.h"

#include <math.h>
#include <string.h>
#include <strings.h>

_Static_assert(CP_LR_CONSTANT == (int)CP_SCHED_CONSTANT && CP_LR_CONSTANT_WITH_WARMUP == (int)CP_SCHED_CONSTANT_WITH_WARMUP &&
                   CP_LR_LINEAR == (int)CP_SCHED_LINEAR && CP_LR_COSINE == (int)CP_SCHED_COSINE,
               "cp_lr_scheduler and cp_schedule name the same schedules by the same numbers");

/* ---- LoRA ---------------------------------------------------------------------------------------- */

void cp_lora_options_init(cp_lora_options *o) {
    memset(o, 0, sizeof *o);
    o->r = 8;
    o->alpha = 16;
    o->dropout = 0.05;
    o->bias = "none";
}

static char **split_list(const char *s, int *n) {
    *n = 0;
    if (!s || !*s) return NULL;
    int count = 1;
    for (const char *p = s; *p; p++) count += *p == ',';
    char **list = cp_calloc((size_t)count, sizeof *list, "a list");
    if (!list) return NULL;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ',' || !*p) {
            size_t len = (size_t)(p - start);
            if (len) {
                list[*n] = cp_malloc(len + 1, "a list entry");
                if (list[*n]) { memcpy(list[*n], start, len); list[*n][len] = '\0'; (*n)++; }
            }
            if (!*p) break;
            start = p + 1;
        }
    }
    return list;
}

cp_status cp_lora_config_from_options(const cp_lora_options *o, cp_peft_config **out) {
    *out = NULL;
    cp_peft_config *base = cp_lora_method.config_new();
    if (!base) return CP_ERR;
    cp_lora_config *cfg = (cp_lora_config *)base; /* config_new's config is a cp_lora_config */
    cp_status st = CP_OK;
    cfg->task_type = cp_strdup("CAUSAL_LM");
    cfg->r = o->r;
    cfg->lora_alpha = o->alpha;
    cfg->lora_alpha_is_int = o->alpha == floor(o->alpha);
    cfg->lora_dropout = o->dropout;
    if (o->target_modules && !strcasecmp(o->target_modules, "all-linear")) cfg->target_kind = CP_TARGETS_ALL_LINEAR;
    else if (o->target_modules) {
        cfg->target_kind = CP_TARGETS_LIST;
        cfg->target_modules = split_list(o->target_modules, &cfg->n_target_modules);
    }
    if (o->modules_to_save) cfg->modules_to_save = split_list(o->modules_to_save, &cfg->n_modules_to_save);
    const char *bias = o->bias ? o->bias : "none";
    if (!strcmp(bias, "none")) cfg->bias = CP_LORA_BIAS_NONE;
    else if (!strcmp(bias, "all")) cfg->bias = CP_LORA_BIAS_ALL;
    else if (!strcmp(bias, "lora_only")) cfg->bias = CP_LORA_BIAS_LORA_ONLY;
    else st = cp_error("--bias: \"%s\" is not one of none, all, lora_only", bias);
    if (st == CP_OK && (cfg->lora_dropout < 0 || cfg->lora_dropout >= 1)) st = cp_error("--lora-dropout must be in [0, 1)");
    if (st == CP_OK) st = cp_lora_config_validate(cfg, "LoRA flags");
    if (st != CP_OK) { cp_peft_config_free(base); return CP_ERR; }
    *out = base;
    return CP_OK;
}

cp_status cp_lora_config_for_task(const cp_lora_options *o, const char *task_type, cp_peft_config **out) {
    *out = NULL;
    cp_peft_config *cfg = NULL;
    if (cp_lora_config_from_options(o, &cfg) != CP_OK) return CP_ERR;
    if (!task_type || !strcmp(task_type, "CAUSAL_LM")) { *out = cfg; return CP_OK; }
    /* through the file form, so that PEFT's rules for the task apply as on any adapter_config.json
     * (PeftModelForSequenceClassification / ForTokenClassification add the head to modules_to_save) */
    char *text = cfg->method->config_to_json(cfg);
    cp_peft_config_free(cfg);
    cJSON *root = NULL;
    cp_status st = text ? cp_json_parse(text, strlen(text), "the LoRA options", &root) : CP_ERR;
    cp_free(text);
    if (st == CP_OK) {
        cJSON_DeleteItemFromObject(root, "task_type");
        cJSON_AddItemToObject(root, "task_type", cJSON_CreateString(task_type));
        st = cp_peft_config_from_json(root, "the LoRA options", out);
        if (st == CP_OK) (*out)->inference_mode = 0; /* the file form says true, as save_pretrained writes it */
    }
    cJSON_Delete(root);
    return st;
}

cp_status cp_model_add_lora_adapter(cp_model *m, const char *name, const cp_lora_options *o, uint64_t seed) {
    if (!m || !o) return cp_error("cp_model_add_lora_adapter: no model or no options");
    cp_peft_config *cfg = NULL;
    cp_status st = cp_lora_config_from_options(o, &cfg);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, seed);
        st = cp_peft_add(m, name ? name : "default", cfg, &rng, 0, 1);
    }
    cp_peft_config_free(cfg);
    return st;
}

/* ---- schedules ----------------------------------------------------------------------------------- */

cp_status cp_lr_scheduler_parse(const char *name, cp_lr_scheduler *out) {
    int s = name ? cp_schedule_from_name(name) : -1;
    if (s < 0)
        return cp_error("--lr-scheduler-type: \"%s\" is not one of linear, cosine, constant, constant_with_warmup", name ? name : "");
    *out = (cp_lr_scheduler)s;
    return CP_OK;
}

const char *cp_lr_scheduler_name(cp_lr_scheduler s) { return cp_schedule_name((cp_schedule)s); }

/* ---- the run's options --------------------------------------------------------------------------- */

void cp_train_options_init(cp_train_options *o) {
    memset(o, 0, sizeof *o);
    cp_lora_options_init(&o->lora);
    o->text_field = "text";
    o->completion_only_loss = 1;
    o->max_seq_length = 0; /* the model's positions, at most 1024 */
    o->learning_rate = 5e-5;
    o->weight_decay = 0.0;
    o->adam_beta1 = 0.9;
    o->adam_beta2 = 0.999;
    o->adam_epsilon = 1e-8;
    o->max_grad_norm = 1.0;
    o->num_train_epochs = 3.0;
    o->max_steps = -1;
    o->per_device_train_batch_size = 8;
    o->gradient_accumulation_steps = 1;
    o->lr_scheduler_type = CP_LR_LINEAR;
    o->logging_steps = 500;
    o->eval_steps = 0;
    o->save_steps = 500;
    o->seed = 42;
    o->model_dropout = 1;
    o->greater_is_better = -1; /* from the metric's name */
}

/* The checks torch.optim.AdamW makes (lr, eps, betas, weight_decay) and those TrainingArguments and
 * the Trainer imply for the other numbers, each error naming the flag and the value. */
cp_status cp_train_options_check(const cp_train_options *a) {
    char v[40];
#define BAD(cond, flag, value, what) \
    if (cond) return cp_error(flag " must be " what ", got %s", cp_py_float_repr((double)(value), v, sizeof v))
#define BADI(cond, flag, value, what) \
    if (cond) return cp_error(flag " must be " what ", got %lld", (long long)(value))
    if (!a) return cp_error("no training options");
    if (!a->data_path) return cp_error("no training data (data_path, --data)");
    BAD(!(a->learning_rate > 0) || !isfinite(a->learning_rate), "--learning-rate", a->learning_rate, "a positive number");
    BAD(!(a->adam_epsilon >= 0) || !isfinite(a->adam_epsilon), "--adam-epsilon", a->adam_epsilon, ">= 0 (torch.optim.AdamW)");
    BAD(!(a->adam_beta1 >= 0 && a->adam_beta1 < 1), "--adam-beta1", a->adam_beta1, "in [0, 1) (torch.optim.AdamW)");
    BAD(!(a->adam_beta2 >= 0 && a->adam_beta2 < 1), "--adam-beta2", a->adam_beta2, "in [0, 1) (torch.optim.AdamW)");
    BAD(!(a->weight_decay >= 0) || !isfinite(a->weight_decay), "--weight-decay", a->weight_decay, ">= 0 (torch.optim.AdamW)");
    BAD(!isfinite(a->max_grad_norm), "--max-grad-norm", a->max_grad_norm, "a number (0 or less: no clipping)");
    BAD(!(a->num_train_epochs >= 0) || !isfinite(a->num_train_epochs), "--num-train-epochs", a->num_train_epochs, ">= 0");
    BADI(a->max_steps < -1, "--max-steps", a->max_steps, "positive (or -1: use --num-train-epochs)");
    if (a->max_steps <= 0 && !(a->num_train_epochs > 0)) return cp_error("give --max-steps or a positive --num-train-epochs");
    BADI(a->per_device_train_batch_size <= 0, "--per-device-train-batch-size", a->per_device_train_batch_size, "positive");
    BADI(a->gradient_accumulation_steps <= 0, "--gradient-accumulation-steps", a->gradient_accumulation_steps, "positive");
    BADI(a->warmup_steps < 0, "--warmup-steps", a->warmup_steps, ">= 0");
    BAD(!(a->warmup_ratio >= 0 && a->warmup_ratio <= 1), "--warmup-ratio", a->warmup_ratio, "in [0, 1]");
    BADI(a->logging_steps <= 0, "--logging-steps", a->logging_steps, "positive");
    BADI(a->save_steps < 0, "--save-steps", a->save_steps, ">= 0 (0: no checkpoints)");
    BADI(a->eval_steps < 0, "--eval-steps", a->eval_steps, ">= 0 (0: evaluate at the end)");
    BADI(a->seed < 0, "--seed", a->seed, ">= 0");
    BADI(a->max_seq_length != 0 && a->max_seq_length < 2, "--max-seq-length", a->max_seq_length, "at least 2");
    BADI(a->max_source_length < 0, "--max-source-length", a->max_source_length, ">= 0 (0: 512)");
    BADI(a->max_target_length < 0, "--max-target-length", a->max_target_length, ">= 0 (0: 128)");
    BAD(!(a->validation_split >= 0 && a->validation_split < 1), "--validation-split", a->validation_split, "in [0, 1)");
    BADI(a->lora.r <= 0, "--lora-r", a->lora.r, "positive");
    BAD(!isfinite(a->lora.alpha), "--lora-alpha", a->lora.alpha, "a number");
    BAD(!(a->lora.dropout >= 0 && a->lora.dropout < 1), "--lora-dropout", a->lora.dropout, "in [0, 1)");
    BADI(a->model_dropout != 0 && a->model_dropout != 1, "--model-dropout", a->model_dropout, "1 (on) or 0 (off)");
    BADI(a->bf16 != 0 && a->bf16 != 1, "--bf16", a->bf16, "0 (f32) or 1 (bf16 compute)");
    BADI(a->assistant_only_loss != 0 && a->assistant_only_loss != 1, "--assistant-only-loss", a->assistant_only_loss, "0 or 1");
    BADI(a->completion_only_loss != 0 && a->completion_only_loss != 1, "--completion-only-loss", a->completion_only_loss,
         "1 (true) or 0 (false)");
    if ((unsigned)a->lr_scheduler_type > (unsigned)CP_LR_COSINE)
        return cp_error("lr_scheduler_type %d is not a cp_lr_scheduler", (int)a->lr_scheduler_type);
#undef BAD
#undef BADI
    return cp_train_report_check(a);
}

/* ---- cp_train ------------------------------------------------------------------------------------ */

void cp_train_args_defaults(cp_train_args *a) {
    cp_train_options o;
    cp_train_options_init(&o);
    memset(a, 0, sizeof *a);
    a->lora_r = o.lora.r;
    a->lora_alpha = o.lora.alpha;
    a->lora_dropout = o.lora.dropout;
    a->bias = o.lora.bias;
    a->learning_rate = o.learning_rate;
    a->weight_decay = o.weight_decay;
    a->max_grad_norm = o.max_grad_norm;
    a->num_train_epochs = o.num_train_epochs;
    a->adam_beta1 = o.adam_beta1;
    a->adam_beta2 = o.adam_beta2;
    a->adam_epsilon = o.adam_epsilon;
    a->max_steps = o.max_steps;
    a->per_device_train_batch_size = o.per_device_train_batch_size;
    a->gradient_accumulation_steps = o.gradient_accumulation_steps;
    a->logging_steps = o.logging_steps;
    a->eval_steps = o.eval_steps;
    a->save_steps = o.save_steps;
    a->seed = o.seed;
    a->max_seq_length = o.max_seq_length;
    a->lr_scheduler_type = (cp_schedule)o.lr_scheduler_type;
    a->text_field = o.text_field;
    a->progress = -1;
}

static void options_from_args(const cp_train_args *a, cp_train_options *o) {
    cp_train_options_init(o);
    o->data_path = a->data_path;
    o->eval_data_path = a->eval_data_path;
    o->validation_split = a->validation_split;
    o->text_field = a->text_field;
    o->strict = a->strict;
    o->max_seq_length = a->max_seq_length;
    o->peft_config_path = a->peft_config_path;
    o->lora.r = a->lora_r;
    o->lora.alpha = a->lora_alpha;
    o->lora.dropout = a->lora_dropout;
    o->lora.target_modules = a->target_modules;
    o->lora.bias = a->bias;
    o->lora.modules_to_save = a->modules_to_save;
    o->learning_rate = a->learning_rate;
    o->weight_decay = a->weight_decay;
    o->adam_beta1 = a->adam_beta1;
    o->adam_beta2 = a->adam_beta2;
    o->adam_epsilon = a->adam_epsilon;
    o->max_grad_norm = a->max_grad_norm;
    o->num_train_epochs = a->num_train_epochs;
    o->max_steps = a->max_steps;
    o->per_device_train_batch_size = a->per_device_train_batch_size;
    o->gradient_accumulation_steps = a->gradient_accumulation_steps;
    o->lr_scheduler_type = (cp_lr_scheduler)a->lr_scheduler_type;
    o->warmup_steps = a->warmup_steps;
    o->warmup_ratio = a->warmup_ratio;
    o->logging_steps = a->logging_steps;
    o->eval_steps = a->eval_steps;
    o->save_steps = a->save_steps;
    o->seed = a->seed;
    o->gradient_checkpointing = a->gradient_checkpointing;
    o->output_dir = a->output_dir;
    o->overwrite_output_dir = a->overwrite_output_dir;
    o->resume_from = a->resume_from;
}

cp_status cp_train_args_check(const cp_train_args *a) {
    if (!a->model_dir || !a->data_path || !a->output_dir) return cp_error("train needs --model, --data and --output-dir");
    cp_train_options o;
    options_from_args(a, &o);
    return cp_train_options_check(&o);
}

cp_status cp_train(const cp_train_args *a, int *interrupted) {
    *interrupted = 0;
    if (cp_train_args_check(a) != CP_OK) return CP_ERR;
    cp_train_options o;
    options_from_args(a, &o);
    cp_model *m = NULL;
    cp_tokenizer *tok = NULL;
    cp_trainer *t = NULL;
    cp_status st = cp_model_load(&m, a->model_dir, CP_LOAD_WEIGHTS);
    if (st == CP_OK) st = cp_tokenizer_load_dir(&tok, a->model_dir);
    if (st == CP_OK) st = cp_trainer_create(&t, m, tok, &o);
    if (st == CP_OK) st = cp_trainer_run(t);
    cp_trainer_free(t);
    cp_tokenizer_free(tok);
    cp_model_free(m);
    return st;
}
