/*
 * train_report.c — what the Hugging Face Trainer records about a run, kept by cpeft's trainer:
 * log_history entries with the Trainer's keys (train_log.h), the best metric (_determine_best_metric)
 * and the best checkpoint, the rotation of checkpoint-N/ under save_total_limit, the scalars its
 * TensorBoardCallback writes (rewrite_logs' names: "train/loss", "eval/loss", ...; tb_writer.h), and
 * load_best_model_at_end. Rank 0 alone writes; every rank keeps the log, so all agree on the best.
 */
#include "train/trainer.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "peft/adapter_io.h"
#include "peft/peft_model.h"
#include "train/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* report_to: "none", "tensorboard", "all" (TensorBoard is the one integration cpeft has), or a comma
 * list of them; *tb says whether TensorBoard is named. */
static cp_status parse_report_to(const char *s, int *tb) {
    *tb = 0;
    if (!s) return CP_OK;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (*p == ' ' || *p == '[')) { p++; n--; }
        while (n && (p[n - 1] == ' ' || p[n - 1] == ']')) n--;
        if ((n == 11 && !strncmp(p, "tensorboard", 11)) || (n == 3 && !strncmp(p, "all", 3))) *tb = 1;
        else if (!(n == 4 && !strncmp(p, "none", 4)))
            return cp_error("--report-to: \"%.*s\" is not an integration cpeft has (tensorboard, all, none)", (int)n, p);
        if (!e) return CP_OK;
        p = e + 1;
    }
}

cp_status cp_train_report_check(const cp_train_options *a) {
    int tb;
    if (a->save_total_limit < 0) return cp_error("--save-total-limit must be >= 0 (0: keep every checkpoint), got %lld", (long long)a->save_total_limit);
    if (a->greater_is_better < -1 || a->greater_is_better > 1)
        return cp_error("greater_is_better must be -1 (from the metric's name), 0 or 1, got %d", a->greater_is_better);
    if (a->load_best_model_at_end != 0 && a->load_best_model_at_end != 1)
        return cp_error("--load-best-model-at-end must be 0 or 1, got %d", a->load_best_model_at_end);
    if (a->metric_for_best_model && !*a->metric_for_best_model) return cp_error("--metric-for-best-model is empty");
    if (parse_report_to(a->report_to, &tb) != CP_OK) return CP_ERR;
    if (a->load_best_model_at_end) { /* TrainingArguments.__post_init__'s rule, eval_steps 0 / save_steps 0 being "no" */
        const char *es = a->eval_steps > 0 ? "steps" : "no", *ss = a->save_steps > 0 ? "steps" : "no";
        if (strcmp(es, ss))
            return cp_error("--load-best-model-at-end requires the save and eval strategy to match, but found\n- Evaluation strategy: "
                            "%s (--eval-steps %lld)\n- Save strategy: %s (--save-steps %lld)", es, (long long)a->eval_steps, ss,
                            (long long)a->save_steps);
        if (a->eval_steps > 0 && a->save_steps % a->eval_steps != 0)
            return cp_error("--load-best-model-at-end requires the saving steps to be a round multiple of the evaluation steps, but "
                            "found %lld, which is not a round multiple of %lld.", (long long)a->save_steps, (long long)a->eval_steps);
    }
    return CP_OK;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The Trainer's default logging_dir: <output_dir>/runs/<%b%d_%H-%M-%S>_<host> (default_logdir()). */
static char *default_logging_dir(const char *out) {
    char host[256] = "localhost", stamp[64], name[400];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%b%d_%H-%M-%S", &tm);
    snprintf(name, sizeof name, "runs/%s_%s", stamp, host);
    return cp_path_join(out, name);
}

cp_status cp_train_report_setup(cp_trainer *t) {
    const cp_train_options *a = &t->o;
    if (cp_train_log_init(&t->log) != CP_OK) return CP_ERR;
    if (a->metric_for_best_model || a->load_best_model_at_end) {
        const char *m = a->metric_for_best_model ? a->metric_for_best_model : "loss";
        size_t n = strlen(m);
        t->best_metric_name = m;
        t->greater = a->greater_is_better >= 0 ? a->greater_is_better : !(n >= 4 && !strcmp(m + n - 4, "loss"));
    }
    if (a->load_best_model_at_end && !t->has_eval)
        return cp_error("--load-best-model-at-end needs evaluation data (--eval-data or --validation-split)");
    if (parse_report_to(a->report_to, &t->report_tb) != CP_OK) return CP_ERR;
    return CP_OK;
}

/* Opens the TensorBoard writer (rank 0): after the resumed state is read, so that it can go on. */
static cp_status open_tb(cp_trainer *t) {
    const cp_train_options *a = &t->o;
    if (!t->report_tb || t->tb.f || cp_dist_rank() != 0) return CP_OK;
    if (!a->logging_dir && !a->output_dir) return cp_error("--report-to tensorboard needs --output-dir or --logging-dir");
    if (!t->logging_dir && !(t->logging_dir = a->logging_dir ? cp_strdup(a->logging_dir) : default_logging_dir(a->output_dir)))
        return CP_ERR;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    return cp_tb_open(&t->tb, t->logging_dir, wall_now(), host, (int)getpid());
}

void cp_train_report_free(cp_trainer *t) {
    cp_tb_close(&t->tb);
    cp_train_log_free(&t->log);
    cp_free(t->logging_dir);
    t->logging_dir = NULL;
}

double cp_trainer_epoch(const cp_trainer *t, int64_t step) {
    return (double)(step * t->o.gradient_accumulation_steps) / (double)t->batches_per_epoch;
}

/* Each number of an entry as the TensorBoardCallback logs it: rewrite_logs' names ("eval_x" ->
 * "eval/x", others "train/x"), at the step; "step" itself is not a scalar. */
static cp_status tb_entry(cp_trainer *t, const cJSON *e, int64_t step) {
    if (!t->tb.f) return CP_OK;
    const double wt = wall_now();
    const cJSON *it;
    cJSON_ArrayForEach(it, e) {
        if (!strcmp(it->string, "step")) continue;
        double v = cJSON_IsNumber(it) ? it->valuedouble : cJSON_IsRaw(it) ? strtod(it->valuestring, NULL) : NAN;
        if (cJSON_IsRaw(it) && !strcmp(it->valuestring, "NaN")) v = NAN;
        char tag[300];
        if (!strncmp(it->string, "eval_", 5)) snprintf(tag, sizeof tag, "eval/%s", it->string + 5);
        else snprintf(tag, sizeof tag, "train/%s", it->string);
        if (cp_tb_add_scalar(&t->tb, tag, v, step, wt) != CP_OK) return CP_ERR;
    }
    return CP_OK;
}

cp_status cp_train_report_log(cp_trainer *t, int64_t step, double loss, double grad_norm, double lr) {
    if (!t->run_t0) t->run_t0 = cp_trainer_now();
    cJSON *e = cp_train_log_entry(&t->log, step, cp_trainer_epoch(t, step));
    if (!e) return cp_error("out of memory (the log history)");
    /* the Trainer's key order (its logs dict): loss, grad_norm, learning_rate, epoch */
    cJSON_DeleteItemFromObject(e, "epoch");
    cp_train_log_set(e, "loss", loss);
    cp_train_log_set(e, "grad_norm", grad_norm);
    cp_train_log_set(e, "learning_rate", lr);
    cp_train_log_set(e, "epoch", cp_trainer_epoch(t, step));
    if (cp_dist_rank() != 0 || open_tb(t) != CP_OK) return cp_dist_rank() != 0 ? CP_OK : CP_ERR;
    return tb_entry(t, e, step);
}

static double round_to(double x, int digits) { /* Python's round(x, digits) */
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", digits, x);
    return strtod(buf, NULL);
}

cp_status cp_train_report_eval(cp_trainer *t, const cp_train_eval *e, double runtime) {
    const int64_t step = e->step;
    cJSON *en = cp_train_log_entry(&t->log, step, cp_trainer_epoch(t, step));
    if (!en) return cp_error("out of memory (the log history)");
    cJSON_DeleteItemFromObject(en, "epoch");
    cp_train_log_set(en, "eval_loss", e->loss);
    const char *keys[] = {"eval_accuracy", "eval_macro_f1", "eval_precision", "eval_recall", "eval_f1"};
    const double vals[] = {e->accuracy, e->macro_f1, e->precision, e->recall, e->f1};
    for (int k = 0; k < 5; k++)
        if (!isnan(vals[k])) cp_train_log_set(en, keys[k], vals[k]);
    /* speed_metrics("eval", start, num_samples, num_steps) */
    const int64_t batch = t->o.per_device_train_batch_size * cp_dist_size();
    const double steps = ceil((double)e->examples / (double)batch);
    cp_train_log_set(en, "eval_runtime", round_to(runtime, 4));
    cp_train_log_set(en, "eval_samples_per_second", runtime > 0 ? round_to((double)e->examples / runtime, 3) : 0.0);
    cp_train_log_set(en, "eval_steps_per_second", runtime > 0 ? round_to(steps / runtime, 3) : 0.0);
    cp_train_log_set(en, "epoch", cp_trainer_epoch(t, step));
    if (t->best_metric_name && e->when != CP_EVAL_BEFORE_TRAINING) { /* no checkpoint-0 to load: never the best */
        int is_best;
        if (cp_train_log_update_best(&t->log, en, t->best_metric_name, t->greater, step, &is_best) != CP_OK) return CP_ERR;
    }
    if (cp_dist_rank() != 0) return CP_OK;
    if (open_tb(t) != CP_OK) return CP_ERR;
    return tb_entry(t, en, step);
}

cp_status cp_train_report_saved(cp_trainer *t) {
    cp_train_log *l = &t->log;
    if (l->best_global_step) { /* _save_checkpoint: the best's checkpoint, once it exists (this step's is being written) */
        char name[64];
        snprintf(name, sizeof name, "checkpoint-%lld", (long long)l->best_global_step);
        char *p = cp_path_join(t->o.output_dir, name);
        if (!p) return CP_ERR;
        if (l->best_global_step == t->step || cp_is_dir(p)) { cp_free(l->best_model_checkpoint); l->best_model_checkpoint = p; }
        else cp_free(p);
    }
    return CP_OK;
}

/* "checkpoint-N" of best_model_checkpoint (the name rotation protects), or NULL. */
static const char *best_name(const cp_trainer *t) {
    const char *b = t->log.best_model_checkpoint;
    if (!b) return NULL;
    const char *s = strrchr(b, '/');
    return s ? s + 1 : b;
}

cp_status cp_train_report_rotate(cp_trainer *t) {
    int n = 0;
    cp_status st = cp_checkpoints_rotate(t->o.output_dir, t->o.save_total_limit, best_name(t), &n);
    t->checkpoints_deleted += n;
    return st;
}

char *cp_trainer_state_text(const cp_trainer *t) {
    const int64_t spe = t->steps_per_epoch;
    cp_trainer_state_info in = {
        .global_step = t->step, .max_steps = t->total_steps, .logging_steps = t->o.logging_steps, .eval_steps = t->o.eval_steps,
        .save_steps = t->o.save_steps, .train_batch_size = t->o.per_device_train_batch_size,
        .num_train_epochs = t->o.max_steps > 0 ? t->o.max_steps / spe + (t->o.max_steps % spe > 0) : (int64_t)ceil(t->o.num_train_epochs),
        .epoch = cp_trainer_epoch(t, t->step), .should_training_stop = t->step >= t->total_steps};
    return cp_trainer_state_json(&t->log, &in);
}

cp_status cp_train_report_summary(cp_trainer *t) {
    const int64_t steps = t->step - t->start_step;
    const double runtime = t->run_t0 ? cp_trainer_now() - t->run_t0 : 0;
    cJSON *e = cp_train_log_entry(&t->log, t->step, cp_trainer_epoch(t, t->step));
    if (!e) return cp_error("out of memory (the log history)");
    /* speed_metrics("train", start, num_samples = steps x the global batch, num_steps = steps) */
    const double samples = (double)steps * (double)(t->o.per_device_train_batch_size * t->o.gradient_accumulation_steps * cp_dist_size());
    cp_train_log_set(e, "train_runtime", round_to(runtime, 4));
    cp_train_log_set(e, "train_samples_per_second", runtime > 0 ? round_to(samples / runtime, 3) : 0.0);
    cp_train_log_set(e, "train_steps_per_second", runtime > 0 ? round_to((double)steps / runtime, 3) : 0.0);
    cp_train_log_set_int(e, "total_flos", 0); /* cpeft does not count floating-point operations */
    cp_train_log_set(e, "train_loss", steps > 0 ? t->run_loss_sum / (double)steps : 0.0);
    if (cp_dist_rank() != 0) return CP_OK;
    return tb_entry(t, e, t->step);
}

cp_status cp_trainer_finish_best(cp_trainer *t, char **dir) {
    *dir = NULL;
    cp_train_log *l = &t->log;
    if (l->best_global_step && l->best_global_step == t->step && t->o.output_dir) {
        /* the best is the last step, which has no checkpoint-N/ (the final adapter stands for it) */
        cp_free(l->best_model_checkpoint);
        if (!(l->best_model_checkpoint = cp_strdup(t->o.output_dir))) return CP_ERR;
        return CP_OK;
    }
    if (!t->o.load_best_model_at_end || !l->best_model_checkpoint) return CP_OK;
    /* _load_best_model: the model takes the best checkpoint's adapter (a prompt-learning adapter's
     * file holds only its output: the model keeps the last step's encoder, the saved adapter is the best) */
    const cp_peft_adapter *ad = cp_peft_find_adapter(t->m, t->o.adapter_name);
    if (ad && !ad->config->method->prompt) {
        if (cp_peft_delete_adapter(t->m, t->o.adapter_name) != CP_OK ||
            cp_adapter_load(t->m, l->best_model_checkpoint, t->o.adapter_name, 1, 1) != CP_OK)
            return cp_error_context("loading the best checkpoint %s (--load-best-model-at-end)", l->best_model_checkpoint);
        cp_free(t->params); /* the old adapter's parameters are gone; no step follows */
        t->params = NULL;
        if (cp_peft_trainable_params(t->m, &t->params, &t->n_params) != CP_OK) return CP_ERR;
    }
    if (!(*dir = cp_strdup(l->best_model_checkpoint))) return CP_ERR;
    return CP_OK;
}
