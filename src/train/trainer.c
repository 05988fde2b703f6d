/*
 * trainer.c — `cpeft train`: the training loop and everything around it.
 *
 *   setup    model, tokenizer (pad defaults to eos), adapter (config, flags or a checkpoint),
 *            data (train + eval file or held-out split)
 *   plan     the memory plan, the peak resident memory to expect: a dry forward/backward of the
 *            largest batch gives the activation peak, the memory resident after it the rest of the
 *            process; weights, trainable parameters, gradients and AdamW state are counted. The
 *            run ends by printing its real peak beside the plan
 *   loop     micro-batches run in a fixed order (epoch e shuffled from seed and e; LoRA dropout
 *            seeded from seed and the micro-batch index), grad_accum of them per optimizer step,
 *            so a run is a pure function of its arguments and resuming is exact
 *   output   a progress line per logging step (a live bar on a terminal), metrics.jsonl, eval loss,
 *            checkpoint-N/ every save_steps (adapter + optimizer + state), the loss curve PNG, the
 *            final adapter in the output directory; SIGINT, SIGTERM and SIGHUP save and stop; a
 *            NaN/Inf loss stops before the bad step is applied, keeping the last good checkpoint.
 *
 * The output directory (train/output_dir.c) is locked for the run and refused when it already holds
 * something, unless the run overwrites or resumes; every checkpoint-N/ replaces an existing one in
 * one step (cp_dir_replace) and the final adapter is committed in one step, so a kill at any instant
 * leaves complete checkpoints and a complete final adapter, old or new.
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "core/memstat.h"
#include "core/pyfmt.h"
#include "core/progress.h"
#include "core/strbuf.h"
#include "io/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/data.h"
#include "train/output_dir.h"
#include "train/plot.h"
#include "train/step.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cp_train_args_defaults(cp_train_args *a) {
    memset(a, 0, sizeof *a);
    a->lora_r = 8;
    a->lora_alpha = 16;
    a->lora_dropout = 0.05;
    a->bias = "none";
    a->learning_rate = 5e-5;
    a->weight_decay = 0.0;
    a->max_grad_norm = 1.0;
    a->num_train_epochs = 3.0;
    a->adam_beta1 = 0.9;
    a->adam_beta2 = 0.999;
    a->adam_epsilon = 1e-8;
    a->max_steps = -1;
    a->per_device_train_batch_size = 8;
    a->gradient_accumulation_steps = 1;
    a->logging_steps = 500;
    a->eval_steps = 0;
    a->save_steps = 500;
    a->seed = 42;
    a->max_seq_length = 0; /* the model's positions, at most 1024 */
    a->lr_scheduler_type = CP_SCHED_LINEAR;
    a->text_field = "text";
    a->progress = -1;
}

/* The signals that stop a run after a checkpoint: Ctrl-C, and what docker stop, Kubernetes, Slurm and
 * timeout send (SIGTERM), and a closed terminal (SIGHUP). stop_requested holds the signal number. */
static const int stop_signals[3] = {SIGINT, SIGTERM, SIGHUP};
static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig) { stop_requested = sig; }

static const char *signal_name(int sig) { return sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "SIGINT"; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t z = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    return z ^ (z >> 31);
}

typedef struct { double *step, *value; int n, cap; } series;

static void series_add(series *s, double step, double value) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        double *a = cp_realloc(s->step, (size_t)cap * sizeof *a, "history"), *b = a ? cp_realloc(s->value, (size_t)cap * sizeof *b, "history") : NULL;
        if (!a || !b) return;
        s->step = a;
        s->value = b;
        s->cap = cap;
    }
    s->step[s->n] = step;
    s->value[s->n++] = value;
}

typedef struct {
    const cp_train_args *a;
    cp_model *m;
    cp_tokenizer *tok;
    cp_dataset train, eval;
    int has_eval;
    cp_param **params;
    int n_params;
    cp_adamw opt;
    int64_t pad_id, batches_per_epoch, total_steps, warmup_steps, start_step;
    int64_t *order;
    int64_t order_epoch;
    series train_loss, eval_loss;
    FILE *metrics;
    cp_output_dir out;
    int64_t last_checkpoint;   /* step of the newest checkpoint written (or resumed from), 0: none */
    double plan_bytes;         /* the memory plan's total (0: no plan made) */
} run_state;

/* ---- the adapter ------------------------------------------------------------------------------- */

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

static cp_status config_from_flags(const cp_train_args *a, cp_lora_config *cfg) {
    cp_lora_config_init(cfg);
    cfg->task_type = cp_strdup("CAUSAL_LM");
    cfg->r = a->lora_r;
    cfg->lora_alpha = a->lora_alpha;
    cfg->lora_alpha_is_int = a->lora_alpha == floor(a->lora_alpha);
    cfg->lora_dropout = a->lora_dropout;
    if (a->target_modules && !strcasecmp(a->target_modules, "all-linear")) cfg->target_kind = CP_TARGETS_ALL_LINEAR;
    else if (a->target_modules) {
        cfg->target_kind = CP_TARGETS_LIST;
        cfg->target_modules = split_list(a->target_modules, &cfg->n_target_modules);
    }
    if (a->modules_to_save) cfg->modules_to_save = split_list(a->modules_to_save, &cfg->n_modules_to_save);
    if (!strcmp(a->bias, "none")) cfg->bias = CP_LORA_BIAS_NONE;
    else if (!strcmp(a->bias, "all")) cfg->bias = CP_LORA_BIAS_ALL;
    else if (!strcmp(a->bias, "lora_only")) cfg->bias = CP_LORA_BIAS_LORA_ONLY;
    else return cp_error("--bias: \"%s\" is not one of none, all, lora_only", a->bias);
    if (cfg->lora_dropout < 0 || cfg->lora_dropout >= 1) return cp_error("--lora-dropout must be in [0, 1)");
    return cp_lora_config_validate(cfg, "LoRA flags");
}

static cp_status setup_adapter(run_state *r) {
    const cp_train_args *a = r->a;
    if (a->resume_from) return cp_adapter_load(r->m, a->resume_from, "default", 1, 1);
    cp_lora_config cfg;
    cp_status st = a->peft_config_path ? cp_lora_config_load(&cfg, a->peft_config_path) : config_from_flags(a, &cfg);
    /* PEFT's get_peft_model would freeze such an adapter and Trainer then fails ("element 0 of tensors
     * does not require grad"); training makes it trainable, and the saved config says inference_mode
     * true whatever this one said, as save_pretrained writes it */
    if (st == CP_OK && cfg.inference_mode)
        cp_warn("%s says \"inference_mode\": true (as every saved adapter_config.json does); training the adapter anyway "
                "(get_peft_model would freeze it)", a->peft_config_path);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, mix((uint64_t)a->seed, 0x1a2b));
        st = cp_peft_add_adapter(r->m, "default", &cfg, &rng, 1, 1);
    }
    cp_lora_config_free(&cfg);
    return st;
}

/* ---- batches ----------------------------------------------------------------------------------- */

static cp_status micro_batch(run_state *r, int64_t g, cp_batch_data *bd) {
    const int64_t B = r->a->per_device_train_batch_size;
    int64_t epoch = g / r->batches_per_epoch, j = g % r->batches_per_epoch;
    if (epoch != r->order_epoch) {
        for (int64_t i = 0; i < r->train.n; i++) r->order[i] = i;
        cp_rng rng;
        cp_rng_seed(&rng, mix((uint64_t)r->a->seed, (uint64_t)epoch + 1));
        cp_dataset_shuffle(r->order, r->train.n, &rng);
        r->order_epoch = epoch;
    }
    int64_t start = j * B, count = r->train.n - start < B ? r->train.n - start : B;
    return cp_batch_make(&r->train, r->order, start, count, r->pad_id, bd);
}

static cp_batch as_batch(const cp_batch_data *bd) {
    cp_batch b = {.B = bd->B, .T = bd->T, .input_ids = bd->input_ids, .attention_mask = bd->attention_mask, .labels = bd->labels};
    return b;
}

static cp_status eval_loss(run_state *r, double *loss) {
    const int64_t B = r->a->per_device_train_batch_size;
    int64_t *order = cp_malloc((size_t)r->eval.n * sizeof *order, "eval order");
    if (!order) return CP_ERR;
    for (int64_t i = 0; i < r->eval.n; i++) order[i] = i;
    cp_batch_data bd = {0};
    double sum = 0;
    int64_t count = 0;
    cp_status st = CP_OK;
    for (int64_t s = 0; s < r->eval.n && st == CP_OK; s += B) {
        if ((st = cp_batch_make(&r->eval, order, s, r->eval.n - s < B ? r->eval.n - s : B, r->pad_id, &bd)) != CP_OK) break;
        cp_batch b = as_batch(&bd);
        cp_outputs out = {0};
        if ((st = cp_model_forward(r->m, &b, &out)) != CP_OK) break;
        if (out.loss_tokens) { sum += out.loss * (double)out.loss_tokens; count += out.loss_tokens; }
    }
    cp_batch_data_free(&bd);
    cp_free(order);
    *loss = count ? sum / (double)count : NAN;
    return st;
}

/* ---- checkpoints ------------------------------------------------------------------------------- */

/* optimizer.safetensors: AdamW's moments of every trainable parameter ("<name>.exp_avg",
 * "<name>.exp_avg_sq"), and the f32 value ("<name>.value") of each one the adapter file keeps in a
 * narrower dtype (the biases and modules_to_save copies of a bf16 / f16 model, saved in its dtype
 * as PEFT saves them), so that resuming continues from the exact values. */
static cp_status write_state(run_state *r, const char *dir, int64_t step) {
    cp_st_write_tensor *t = cp_calloc((size_t)(3 * r->n_params), sizeof *t, "optimizer tensors");
    char **names = cp_calloc((size_t)(3 * r->n_params), sizeof *names, "optimizer names");
    cp_status st = t && names ? CP_OK : CP_ERR;
    int n = 0;
    for (int i = 0; st == CP_OK && i < r->n_params; i++)
        for (int k = 0; k < 3; k++) {
            const cp_param *p = r->params[i];
            if (k == 2 && p->source_dtype == CP_F32) continue;
            cp_strbuf sb;
            cp_sb_init(&sb);
            cp_sb_printf(&sb, "%s.%s", p->name, k == 2 ? "value" : k ? "exp_avg_sq" : "exp_avg");
            names[n] = cp_sb_finish(&sb);
            cp_st_write_tensor *w = &t[n];
            w->name = names[n++];
            w->dtype = CP_F32;
            w->ndim = p->ndim;
            w->shape[0] = p->shape[0];
            w->shape[1] = p->shape[1];
            w->data = k == 2 ? p->data : k ? r->opt.exp_avg_sq[i] : r->opt.exp_avg[i];
        }
    char *path = st == CP_OK ? cp_path_join(dir, "optimizer.safetensors") : NULL;
    if (st == CP_OK) st = path ? cp_st_write(path, t, n, NULL, NULL, 0) : CP_ERR;
    cp_free(path);
    for (int i = 0; names && i < n; i++) cp_free(names[i]);
    cp_free(names);
    cp_free(t);
    if (st != CP_OK) return st;
    /* trainer_state.json: where the run is and what it was run with */
    const cp_train_args *a = r->a;
    cp_strbuf sb;
    cp_sb_init(&sb);
    char f1[40], f2[40];
    cp_sb_printf(&sb, "{\n  \"global_step\": %lld,\n  \"max_steps\": %lld,\n  \"seed\": %lld,\n  \"train_examples\": %lld,\n"
                      "  \"per_device_train_batch_size\": %lld,\n  \"gradient_accumulation_steps\": %lld,\n"
                      "  \"learning_rate\": %s,\n  \"lr_scheduler_type\": \"%s\",\n  \"warmup_steps\": %lld,\n"
                      "  \"max_seq_length\": %lld,\n  \"weight_decay\": %s,\n  \"log_history\": [",
                 (long long)step, (long long)r->total_steps, (long long)a->seed, (long long)r->train.n,
                 (long long)a->per_device_train_batch_size, (long long)a->gradient_accumulation_steps,
                 cp_py_float_repr(a->learning_rate, f1, sizeof f1), cp_schedule_name(a->lr_scheduler_type),
                 (long long)r->warmup_steps, (long long)a->max_seq_length, cp_py_float_repr(a->weight_decay, f2, sizeof f2));
    for (int i = 0; i < r->train_loss.n; i++)
        cp_sb_printf(&sb, "%s\n    {\"step\": %.0f, \"loss\": %.6f}", i ? "," : "", r->train_loss.step[i], r->train_loss.value[i]);
    for (int i = 0; i < r->eval_loss.n; i++)
        cp_sb_printf(&sb, "%s\n    {\"step\": %.0f, \"eval_loss\": %.6f}", (i || r->train_loss.n) ? "," : "", r->eval_loss.step[i],
                     r->eval_loss.value[i]);
    cp_sb_append(&sb, "\n  ]\n}\n");
    char *text = cp_sb_finish(&sb);
    path = cp_path_join(dir, "trainer_state.json");
    st = text && path ? cp_write_file_atomic(path, text, strlen(text)) : CP_ERR;
    cp_free(text);
    cp_free(path);
    return st;
}

static cp_status write_plot(run_state *r) {
    char *png = cp_path_join(r->a->output_dir, "loss.png");
    if (!png) return CP_ERR;
    cp_status st = cp_plot_loss_png(png, r->train_loss.step, r->train_loss.value, r->train_loss.n, r->eval_loss.step,
                                    r->eval_loss.value, r->eval_loss.n, "cpeft train: loss");
    cp_free(png);
    return st;
}

static cp_status save_checkpoint(run_state *r, int64_t step) {
    char name[64];
    snprintf(name, sizeof name, "checkpoint-%lld", (long long)step);
    char *final = cp_path_join(r->a->output_dir, name), *staging = NULL;
    if (!final) return CP_ERR;
    cp_status st = cp_dir_begin(final, &staging);
    if (st == CP_OK) st = cp_adapter_save(r->m, "default", staging);
    if (st == CP_OK) st = write_state(r, staging, step);
    if (st == CP_OK) st = cp_dir_replace(&staging, final);
    else cp_dir_abort(&staging);
    if (st == CP_OK) st = write_plot(r);
    if (st != CP_OK) cp_error_context("saving %s (the previous checkpoint is intact)", final);
    cp_free(final);
    return st;
}

static cp_status load_checkpoint_state(run_state *r, const char *dir) {
    char *path = cp_path_join(dir, "trainer_state.json");
    cJSON *root = NULL;
    cp_status st = path ? cp_json_read_file(path, &root) : CP_ERR;
    int64_t step = 0, seed = 0, bs = 0, ga = 0, n = 0;
    if (st == CP_OK &&
        (cp_json_get_int(root, "global_step", 0, 1, &step, path) != CP_OK || cp_json_get_int(root, "seed", 0, 1, &seed, path) != CP_OK ||
         cp_json_get_int(root, "per_device_train_batch_size", 0, 1, &bs, path) != CP_OK ||
         cp_json_get_int(root, "gradient_accumulation_steps", 0, 1, &ga, path) != CP_OK ||
         cp_json_get_int(root, "train_examples", 0, 1, &n, path) != CP_OK))
        st = CP_ERR;
    if (st == CP_OK && (seed != r->a->seed || bs != r->a->per_device_train_batch_size || ga != r->a->gradient_accumulation_steps ||
                        n != r->train.n))
        st = cp_error("%s: the checkpoint was made with --seed %lld, batch size %lld, accumulation %lld on %lld examples; "
                      "resume with the same settings and data (now: %lld, %lld, %lld, %lld)",
                      dir, (long long)seed, (long long)bs, (long long)ga, (long long)n, (long long)r->a->seed,
                      (long long)r->a->per_device_train_batch_size, (long long)r->a->gradient_accumulation_steps, (long long)r->train.n);
    const cJSON *hist = st == CP_OK ? cJSON_GetObjectItem(root, "log_history") : NULL, *e;
    cJSON_ArrayForEach(e, hist) {
        const cJSON *s = cJSON_GetObjectItem(e, "step"), *l = cJSON_GetObjectItem(e, "loss"), *el = cJSON_GetObjectItem(e, "eval_loss");
        if (s && l) series_add(&r->train_loss, s->valuedouble, l->valuedouble);
        if (s && el) series_add(&r->eval_loss, s->valuedouble, el->valuedouble);
    }
    cJSON_Delete(root);
    cp_free(path);
    if (st != CP_OK) return st;
    /* optimizer moments */
    path = cp_path_join(dir, "optimizer.safetensors");
    cp_safetensors f;
    st = path ? cp_st_open(&f, path) : CP_ERR;
    for (int i = 0; st == CP_OK && i < r->n_params; i++)
        for (int k = 0; k < 2 && st == CP_OK; k++) {
            char key[1024];
            snprintf(key, sizeof key, "%s.%s", r->params[i]->name, k ? "exp_avg_sq" : "exp_avg");
            const cp_st_tensor *t = cp_st_find(&f, key);
            if (!t || t->dtype != CP_F32 || t->numel != r->params[i]->numel) st = cp_error("%s: no matching tensor \"%s\"", path, key);
            else memcpy(k ? r->opt.exp_avg_sq[i] : r->opt.exp_avg[i], t->data, (size_t)t->numel * sizeof(float));
        }
    /* the f32 values of what the adapter file rounded (absent in older checkpoints: the rounded
     * values then stand) */
    for (int i = 0; st == CP_OK && i < r->n_params; i++) {
        char key[1024];
        snprintf(key, sizeof key, "%s.value", r->params[i]->name);
        const cp_st_tensor *t = cp_st_find(&f, key);
        if (!t) continue;
        if (t->dtype != CP_F32 || t->numel != r->params[i]->numel) st = cp_error("%s: tensor \"%s\" does not match the parameter", path, key);
        else memcpy(r->params[i]->data, t->data, (size_t)t->numel * sizeof(float));
    }
    if (path) cp_st_close(&f);
    cp_free(path);
    r->opt.step = step;
    r->start_step = step;
    r->last_checkpoint = step;
    return st;
}

/* ---- the memory plan ---------------------------------------------------------------------------- */

/* Parameters by where their memory lives: frozen (mapped: used in place from the checkpoint's
 * mapping; owned: widened or copied to f32), trainable (each with a gradient and two AdamW moments). */
typedef struct { int64_t frozen, mapped, trainable; } param_counts;

static cp_status count_params(run_state *r, param_counts *c) {
    memset(c, 0, sizeof *c);
    cp_param **ps;
    int n;
    if (cp_module_params(r->m->root, &ps, &n) != CP_OK) return CP_ERR;
    for (int i = 0; i < n; i++) {
        if (ps[i]->tied_to || ps[i]->grad) continue;
        c->frozen += ps[i]->numel;
        if (!ps[i]->owns_data) c->mapped += ps[i]->numel;
    }
    cp_free(ps);
    for (int i = 0; i < r->n_params; i++) c->trainable += r->params[i]->numel;
    return CP_OK;
}

/* The plan is the process's peak resident memory to expect, part by part: weights and trainable
 * state counted from their sizes; activations measured by a dry run of the longest batch as a
 * training step runs it (the arena keeps that block for the steps that follow); and the rest of the
 * process (code, libraries, tokenizer, dataset, the BLAS library's and the threads' buffers, malloc's
 * overhead) measured as what is resident after the dry run beyond the counted parts, plus the
 * working memory of the loss plot drawn at every save. */
static cp_status print_plan(run_state *r) {
    param_counts c;
    if (count_params(r, &c) != CP_OK) return CP_ERR;
    const int64_t B = r->a->per_device_train_batch_size;
    int64_t T = 2;
    for (int64_t i = 0; i < r->train.n; i++) T = r->train.examples[i].len > T ? r->train.examples[i].len : T;
    size_t act = 0, act_other = 0;
    /* the comparison first: it is estimated on a few blocks, so the run never holds it */
    if (r->a->gradient_checkpointing && cp_step_estimate_activations(r->m, &r->opt, B, T, 0, &act_other) != CP_OK) return CP_ERR;
    if (cp_step_measure_activations(r->m, &r->opt, B, T, r->a->gradient_checkpointing, &act) != CP_OK) return CP_ERR;
    const double frozen = (double)c.frozen * 4, mapped = (double)c.mapped * 4, trainable = (double)c.trainable * 4;
    cp_mem_usage u;
    double rest = -1;
    if (cp_mem_now(&u)) {
        /* anonymous memory beyond the owned weights and trainable state, and mapped pages beyond the
         * mapped weights (for a model whose input embedding is not tied, the rows no batch has used
         * yet are not resident, so this part can be short by up to the program's code) */
        double anon = (double)u.anon - (frozen - mapped) - 4 * trainable, file = (double)u.file - mapped;
        rest = (anon > 0 ? anon : 0) + (file > 0 ? file : 0) + (double)cp_plot_peak_bytes(); /* drawn at each save */
    }
    char b1[32], b2[32], b3[32], b4[32];
    printf("memory plan (batch %lld x %lld tokens):\n", (long long)B, (long long)T);
    printf("  frozen weights        %12s  (%s memory-mapped from the checkpoint, shared with the page cache)\n",
           cp_format_bytes(frozen, b1, sizeof b1), cp_format_bytes(mapped, b2, sizeof b2));
    printf("  trainable parameters  %12s  (%lld values)\n", cp_format_bytes(trainable, b1, sizeof b1), (long long)c.trainable);
    printf("  gradients             %12s\n", b1);
    printf("  optimizer state       %12s  (AdamW exp_avg + exp_avg_sq)\n", cp_format_bytes(2 * trainable, b2, sizeof b2));
    printf("  activations           %12s  (measured: a training forward + backward of the longest batch)\n",
           cp_format_bytes((double)act, b3, sizeof b3));
    if (r->a->gradient_checkpointing)
        printf("                                      --gradient-checkpointing saves %s (without it: about %s, measured on 2 and 3 "
               "layers)\n",
               cp_format_bytes((double)act_other - (double)act, b1, sizeof b1), cp_format_bytes((double)act_other, b2, sizeof b2));
    if (rest >= 0)
        printf("  program and data      %12s  (measured: code, libraries, tokenizer, dataset, BLAS buffers; the loss plot)\n",
               cp_format_bytes(rest, b4, sizeof b4));
    else
        printf("  program and data      %12s  (not measured on this system; not in the total)\n", "?");
    r->plan_bytes = frozen + 4 * trainable + (double)act + (rest > 0 ? rest : 0);
    printf("  total                 %12s  (the peak resident memory to expect)\n", cp_format_bytes(r->plan_bytes, b1, sizeof b1));
    return CP_OK;
}

/* The run's peak resident memory beside the plan, so that the plan can be checked. */
static void print_peak(const run_state *r) {
    size_t peak = cp_mem_peak();
    if (!peak || !(r->plan_bytes > 0)) return;
    char b1[32], b2[32];
    printf("peak memory: %s resident (plan %s, %+.1f%%)\n", cp_format_bytes((double)peak, b1, sizeof b1),
           cp_format_bytes(r->plan_bytes, b2, sizeof b2), 100.0 * ((double)peak - r->plan_bytes) / r->plan_bytes);
}

/* ---- the run ----------------------------------------------------------------------------------- */

/* The checks torch.optim.AdamW makes (lr, eps, betas, weight_decay) and those TrainingArguments and
 * the Trainer imply for the other numbers, each error naming the flag and the value. */
cp_status cp_train_args_check(const cp_train_args *a) {
    char v[40];
#define BAD(cond, flag, value, what) \
    if (cond) return cp_error(flag " must be " what ", got %s", cp_py_float_repr((double)(value), v, sizeof v))
#define BADI(cond, flag, value, what) \
    if (cond) return cp_error(flag " must be " what ", got %lld", (long long)(value))
    if (!a->model_dir || !a->data_path || !a->output_dir) return cp_error("train needs --model, --data and --output-dir");
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
    BAD(!(a->validation_split >= 0 && a->validation_split < 1), "--validation-split", a->validation_split, "in [0, 1)");
    BADI(a->lora_r <= 0, "--lora-r", a->lora_r, "positive");
    BAD(!isfinite(a->lora_alpha), "--lora-alpha", a->lora_alpha, "a number");
    BAD(!(a->lora_dropout >= 0 && a->lora_dropout < 1), "--lora-dropout", a->lora_dropout, "in [0, 1)");
#undef BAD
#undef BADI
    return CP_OK;
}

static void run_free(run_state *r) {
    if (r->metrics) fclose(r->metrics);
    cp_output_dir_close(&r->out);
    cp_adamw_free(&r->opt);
    cp_free(r->params);
    cp_free(r->order);
    cp_dataset_free(&r->train);
    if (r->has_eval) cp_dataset_free(&r->eval);
    cp_free(r->train_loss.step);
    cp_free(r->train_loss.value);
    cp_free(r->eval_loss.step);
    cp_free(r->eval_loss.value);
    cp_tokenizer_free(r->tok);
    cp_model_free(r->m);
}

static cp_status train_run(const cp_train_args *a, int *interrupted) {
    run_state r;
    memset(&r, 0, sizeof r);
    r.a = a;
    r.order_epoch = -1;
    char holder[64];
    snprintf(holder, sizeof holder, "cpeft train (pid %d)", (int)getpid());
    int cleaned = 0;
    cp_status st = cp_output_dir_open(&r.out, a->output_dir, a->overwrite_output_dir || a->resume_from,
                                      "--overwrite-output-dir or --resume-from-checkpoint", holder, &cleaned);
    if (st == CP_OK && cleaned) printf("output: removed %d unfinished file%s left by an earlier run that was killed\n", cleaned, cleaned == 1 ? "" : "s");
    if (st == CP_OK) st = cp_model_load(&r.m, a->model_dir, CP_LOAD_WEIGHTS);
    if (st == CP_OK) st = cp_tokenizer_load_dir(&r.tok, a->model_dir);
    if (st != CP_OK) { run_free(&r); return CP_ERR; }
    const cp_model_config *mc = &r.m->config;
    if (mc->embd_dropout > 0 || mc->attn_dropout > 0 || mc->resid_dropout > 0)
        cp_warn("the model's own dropout (embedding %g, attention %g, residual %g) is not applied during training; "
                "only lora_dropout is", mc->embd_dropout, mc->attn_dropout, mc->resid_dropout);
    cp_train_args resolved = *a; /* --max-seq-length 0: the model's positions, at most 1024 */
    if (resolved.max_seq_length == 0) resolved.max_seq_length = mc->max_positions < 1024 ? mc->max_positions : 1024;
    a = &resolved;
    r.a = a;
    if (a->max_seq_length > mc->max_positions) {
        cp_error("--max-seq-length %lld exceeds the model's %lld positions", (long long)a->max_seq_length, (long long)mc->max_positions);
        run_free(&r);
        return CP_ERR;
    }
    /* pad: the tokenizer's, else eos (documented default), as most fine-tuning scripts set it */
    int32_t pad = cp_tokenizer_special_id(r.tok, CP_SPECIAL_PAD);
    if (pad == CP_TOKEN_NONE) {
        pad = cp_tokenizer_special_id(r.tok, CP_SPECIAL_EOS);
        if (pad == CP_TOKEN_NONE) { cp_error("the tokenizer has neither a pad nor an eos token"); run_free(&r); return CP_ERR; }
        printf("pad token: not set in the tokenizer; padding with the eos token (id %d), which never enters the loss\n", pad);
    }
    if (pad >= mc->vocab_size) { /* every batch with padding would embed it */
        cp_error("the pad token id %d (the tokenizer's %s token) is outside the model's vocabulary [0, %lld) (vocab_size)",
                 pad, cp_tokenizer_special_id(r.tok, CP_SPECIAL_PAD) == pad ? "pad" : "eos", (long long)mc->vocab_size);
        run_free(&r);
        return CP_ERR;
    }
    r.pad_id = pad;

    cp_data_options dopt = {.path = a->data_path, .format = CP_DATA_AUTO, .text_field = a->text_field,
                            .max_seq_length = a->max_seq_length, .strict = a->strict};
    if ((st = cp_dataset_load(&r.train, r.tok, &dopt)) != CP_OK) { run_free(&r); return CP_ERR; }
    if (a->eval_data_path) {
        dopt.path = a->eval_data_path;
        if ((st = cp_dataset_load(&r.eval, r.tok, &dopt)) != CP_OK) { run_free(&r); return CP_ERR; }
        r.has_eval = 1;
    } else if (a->validation_split > 0) {
        if ((st = cp_dataset_split(&r.train, a->validation_split, (uint64_t)a->seed, &r.eval)) != CP_OK) { run_free(&r); return CP_ERR; }
        r.has_eval = 1;
    }
    if (r.train.n_target_tokens == 0) {
        cp_error("%s: the data has no response tokens to learn from (every label is masked)", a->data_path);
        run_free(&r);
        return CP_ERR;
    }
    printf("data: %lld training examples (%lld tokens, %lld with loss)", (long long)r.train.n, (long long)r.train.n_tokens,
           (long long)r.train.n_target_tokens);
    if (r.train.n_truncated) printf(", %lld truncated to --max-seq-length %lld", (long long)r.train.n_truncated, (long long)a->max_seq_length);
    if (r.train.n_skipped) printf(", %lld malformed records skipped", (long long)r.train.n_skipped);
    printf("\n");
    if (r.has_eval) {
        printf("      %lld evaluation examples", (long long)r.eval.n);
        if (a->eval_data_path && r.eval.n_truncated)
            printf(", %lld truncated to --max-seq-length %lld", (long long)r.eval.n_truncated, (long long)a->max_seq_length);
        printf("\n");
    }

    if ((st = setup_adapter(&r)) != CP_OK || (st = cp_peft_trainable_params(r.m, &r.params, &r.n_params)) != CP_OK) {
        run_free(&r);
        return CP_ERR;
    }
    cp_adamw_config oc = {a->learning_rate, a->adam_beta1, a->adam_beta2, a->adam_epsilon, a->weight_decay};
    r.order = cp_malloc((size_t)r.train.n * sizeof *r.order, "the epoch order");
    if (!r.order || cp_adamw_init(&r.opt, r.params, r.n_params, oc) != CP_OK) { run_free(&r); return CP_ERR; }

    const int64_t B = a->per_device_train_batch_size, GA = a->gradient_accumulation_steps;
    r.batches_per_epoch = (r.train.n + B - 1) / B;
    int64_t steps_per_epoch = r.batches_per_epoch / GA > 0 ? r.batches_per_epoch / GA : 1;
    r.total_steps = a->max_steps > 0 ? a->max_steps : (int64_t)ceil(a->num_train_epochs * (double)steps_per_epoch);
    r.warmup_steps = a->warmup_steps > 0 ? a->warmup_steps : (int64_t)ceil(a->warmup_ratio * (double)r.total_steps);
    if (a->resume_from && (st = load_checkpoint_state(&r, a->resume_from)) != CP_OK) { run_free(&r); return CP_ERR; }

    char *line = cp_model_trainable_parameters_line(r.m, CP_PEFT_LINE_NOTEBOOK);
    if ((st = print_plan(&r)) != CP_OK) { cp_free(line); run_free(&r); return CP_ERR; }
    printf("%s\n", line ? line : "");
    cp_free(line);
    printf("training: %lld steps (%lld per epoch, batch %lld x %lld accumulation), lr %g %s, warmup %lld steps%s\n",
           (long long)r.total_steps, (long long)steps_per_epoch, (long long)B, (long long)GA, a->learning_rate,
           cp_schedule_name(a->lr_scheduler_type), (long long)r.warmup_steps,
           a->resume_from ? " — resuming" : "");
    if (a->resume_from) printf("resumed from %s at step %lld\n", a->resume_from, (long long)r.start_step);

    char *metrics_path = cp_path_join(a->output_dir, "metrics.jsonl");
    r.metrics = metrics_path ? fopen(metrics_path, a->resume_from ? "a" : "w") : NULL;
    cp_free(metrics_path);
    if (!r.metrics) { cp_error("%s: cannot write metrics.jsonl", a->output_dir); run_free(&r); return CP_ERR; }

    const int live = a->progress == 1 || (a->progress < 0 && isatty(1));

    if (r.has_eval && r.start_step == 0) {
        /* the starting point, so that the eval losses that follow have something to compare with */
        double el;
        if ((st = eval_loss(&r, &el)) == CP_OK) {
            series_add(&r.eval_loss, 0.0, el);
            printf("step 0/%lld | eval loss %.4f | eval perplexity %.2f (before training)\n", (long long)r.total_steps, el, exp(el));
            fprintf(r.metrics, "{\"step\": 0, \"eval_loss\": %.6f}\n", el);
            fflush(r.metrics);
        }
    }
    cp_batch_data *bd = cp_calloc((size_t)GA, sizeof *bd, "micro-batches");
    cp_batch *micro = cp_calloc((size_t)GA, sizeof *micro, "micro-batches");
    if (!bd || !micro) st = CP_ERR;
    double t_start = now(), log_loss = 0, log_tokens = 0, log_t0 = now();
    int64_t log_count = 0, step;
    double last_norm = 0;
    for (step = r.start_step; st == CP_OK && step < r.total_steps; step++) {
        if (stop_requested && step == r.start_step) {
            /* stopped during setup: no step taken, so nothing new to save */
            printf("interrupted (%s) before the first step; nothing was trained or saved\n", signal_name(stop_requested));
            *interrupted = stop_requested;
            break;
        }
        for (int64_t i = 0; i < GA && st == CP_OK; i++) {
            st = micro_batch(&r, step * GA + i, &bd[i]);
            micro[i] = as_batch(&bd[i]);
        }
        if (st != CP_OK) break;
        double lr = a->learning_rate * cp_schedule_factor(a->lr_scheduler_type, step, r.warmup_steps, r.total_steps);
        cp_step_result res;
        if ((st = cp_train_step(r.m, &r.opt, micro, (int)GA, lr, a->max_grad_norm, a->gradient_checkpointing,
                                mix((uint64_t)a->seed, (uint64_t)(step * GA) + 0x5eed), &res)) != CP_OK)
            break;
        if (!isfinite(res.loss) || !isfinite(res.grad_norm)) {
            if (live) printf("\n");
            char kept[600];
            if (r.last_checkpoint) snprintf(kept, sizeof kept, "the last good checkpoint is %s/checkpoint-%lld", a->output_dir, (long long)r.last_checkpoint);
            else snprintf(kept, sizeof kept, "no checkpoint had been saved yet");
            st = cp_error("step %lld: the loss is %s; stopping without applying this step (%s). Try a lower --learning-rate",
                          (long long)step + 1, isnan(res.loss) || isnan(res.grad_norm) ? "NaN" : "infinite", kept);
            break;
        }
        last_norm = res.grad_norm;
        log_loss += res.loss;
        log_tokens += (double)res.n_tokens;
        log_count++;
        int64_t done = step + 1;
        double elapsed = now() - t_start, per_step = elapsed / (double)(done - r.start_step);
        char eta[32];
        cp_format_duration(per_step * (double)(r.total_steps - done), eta, sizeof eta);
        if (live) {
            char detail[96];
            snprintf(detail, sizeof detail, "loss %.4f  lr %.3e  grad norm %.3f", res.loss, lr, res.grad_norm);
            cp_progress_bar(stdout, "step", done, r.total_steps, detail, per_step * (double)(r.total_steps - done));
        }
        if (done % a->logging_steps == 0 || done == r.total_steps) {
            double mean = log_loss / (double)log_count, tps = log_tokens / (now() - log_t0);
            series_add(&r.train_loss, (double)done, mean);
            if (live) printf("\r");
            printf("step %lld/%lld | loss %.4f | lr %.3e | grad norm %.4f | %.0f tokens/s | ETA %s%s\n", (long long)done,
                   (long long)r.total_steps, mean, lr, last_norm, tps, eta, live ? "          " : "");
            fprintf(r.metrics, "{\"step\": %lld, \"epoch\": %.4f, \"loss\": %.6f, \"learning_rate\": %.6e, \"grad_norm\": %.6f, "
                               "\"tokens_per_second\": %.1f}\n",
                    (long long)done, (double)(done * GA) / (double)r.batches_per_epoch, mean, lr, last_norm, tps);
            fflush(r.metrics);
            fflush(stdout);
            log_loss = log_tokens = 0;
            log_count = 0;
            log_t0 = now();
        }
        if (r.has_eval && a->eval_steps > 0 && (done % a->eval_steps == 0 || done == r.total_steps)) {
            double el;
            if ((st = eval_loss(&r, &el)) != CP_OK) break;
            series_add(&r.eval_loss, (double)done, el);
            printf("step %lld/%lld | eval loss %.4f | eval perplexity %.2f\n", (long long)done, (long long)r.total_steps, el, exp(el));
            fprintf(r.metrics, "{\"step\": %lld, \"eval_loss\": %.6f}\n", (long long)done, el);
            fflush(r.metrics);
        }
        if ((a->save_steps > 0 && done % a->save_steps == 0 && done < r.total_steps) || stop_requested) {
            if ((st = save_checkpoint(&r, done)) != CP_OK) break;
            r.last_checkpoint = done;
            printf("saved checkpoint-%lld\n", (long long)done);
        }
        if (stop_requested) {
            printf("interrupted (%s): saved %s/checkpoint-%lld; continue with --resume-from-checkpoint %s/checkpoint-%lld\n",
                   signal_name(stop_requested), a->output_dir, (long long)done, a->output_dir, (long long)done);
            *interrupted = stop_requested;
            step++;
            break;
        }
    }
    for (int64_t i = 0; bd && i < GA; i++) cp_batch_data_free(&bd[i]);
    cp_free(bd);
    cp_free(micro);
    if (st == CP_OK && !*interrupted) {
        if (r.has_eval && a->eval_steps == 0) {
            double el;
            if ((st = eval_loss(&r, &el)) == CP_OK) {
                series_add(&r.eval_loss, (double)step, el);
                printf("eval loss %.4f | eval perplexity %.2f\n", el, exp(el));
                fprintf(r.metrics, "{\"step\": %lld, \"eval_loss\": %.6f}\n", (long long)step, el);
            }
        }
        /* the final adapter: written complete into a fresh adapter-step-N/, then committed in one step */
        char *name = st == CP_OK ? cp_output_dir_fresh_adapter_name(a->output_dir, step) : NULL;
        char *dir = name ? cp_path_join(a->output_dir, name) : NULL;
        if (st == CP_OK) st = dir ? cp_adapter_save(r.m, "default", dir) : CP_ERR;
        if (st == CP_OK) st = cp_output_dir_commit_adapter(a->output_dir, name);
        if (st == CP_OK) st = write_plot(&r);
        if (st == CP_OK)
            printf("saved the adapter to %s (adapter_config.json and adapter_model.safetensors, linked to %s/; loss.png, "
                   "metrics.jsonl) in %.1f s\n", a->output_dir, name, now() - t_start);
        cp_free(name);
        cp_free(dir);
    }
    if (st == CP_OK) print_peak(&r);
    run_free(&r);
    return st;
}

cp_status cp_train(const cp_train_args *a, int *interrupted) {
    *interrupted = 0;
    if (cp_train_args_check(a) != CP_OK) return CP_ERR;
    /* Ctrl-C, SIGTERM and SIGHUP stop the run cleanly: between steps, after a checkpoint */
    stop_requested = 0;
    struct sigaction sa, old_sa[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART; /* a read or write under way carries on; the loop checks between steps */
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &sa, &old_sa[i]);
    cp_status st = train_run(a, interrupted);
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &old_sa[i], NULL);
    if (st == CP_OK && !*interrupted && stop_requested) *interrupted = stop_requested; /* a signal during the final save */
    return st;
}
