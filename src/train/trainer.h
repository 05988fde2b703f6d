/*
 * trainer.h — the trainer behind the public cp_trainer API (include/cpeft.h, "training"): model +
 * adapter + data in, a PEFT adapter out, with the Hugging Face Trainer's step accounting, logging,
 * evaluation, checkpoints (checkpoint-N/ as the HF Trainer names them) and exact resumption. The
 * output directory's rules (lock, refusal, atomic commit of the final adapter) are in
 * train/output_dir.h.
 *
 * The trainer never prints, installs no signal handler and draws nothing: it reports through the
 * callbacks of cp_train_options and its info; `cpeft train` (src/cli/cmd_train.c) prints, handles
 * SIGINT / SIGTERM / SIGHUP and draws the loss plot.
 *
 *   trainer.c       create (setup), step, run, evaluate, info, free
 *   train_state.c   checkpoint-N/: the adapter, optimizer.safetensors, trainer_state.json,
 *                   cpeft_state.json; resuming
 *   train_report.c  log_history entries, the best metric, TensorBoard scalars, checkpoint rotation,
 *                   the best checkpoint loaded at the end (train_log.h, tb_writer.h)
 *   dist_train.c    data-parallel runs under MPI (train/dist.h): the ranks' configuration and output
 *                   directory checked at the start
 *   class_train.c   SEQ_CLS / TOKEN_CLS: labelled data, batches, metrics, the head's config.json
 *   s2s_train.c     SEQ_2_SEQ_LM: source / target records, encoder-decoder batches, eval loss
 *   memory_plan.c   the memory plan (weights counted, activations measured by a dry run)
 *   train_options.c the options, their defaults and checks, the LoRA adapter from options, and
 *                   cp_train (the whole run from a model directory, for tests and programs that
 *                   need no callbacks)
 */
#ifndef CP_TRAIN_TRAINER_H
#define CP_TRAIN_TRAINER_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "cpeft.h"
#include "train/class_data.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/output_dir.h"
#include "train/seq2seq_data.h"
#include "train/tb_writer.h"
#include "train/train_log.h"

/* A logged series: (step, value) pairs. */
typedef struct {
    double *step, *value;
    int64_t n, cap;
} cp_loss_series;

struct cp_trainer {
    cp_train_options o;        /* a copy: its strings point into `strings` */
    char *strings[8];
    cp_model *m;               /* borrowed */
    const cp_tokenizer *tok;   /* borrowed */
    cp_dataset train, eval;
    int has_eval;
    struct cp_chat_template *chat; /* conversational records (NULL: none loaded) */
    char *chat_error;          /* why it could not be loaded (conversational records then say it) */
    char *chat_path;           /* owned copy of o.chat_template */
    cp_param **params;         /* the trained parameters (tree order) */
    int n_params;
    cp_adamw opt;
    int64_t pad_id;
    int pad_is_eos;
    int64_t batches_per_epoch, steps_per_epoch, total_steps, warmup_steps;
    int64_t start_step;        /* resumed from (0: fresh) */
    int64_t step;              /* optimizer steps done */
    int64_t *order;            /* the epoch's example order */
    int64_t *shard;            /* [per_device_train_batch_size] this rank's examples of a global batch (MPI) */
    int64_t order_epoch;
    cp_batch_data *bd;         /* [accumulation] micro-batch buffers */
    cp_batch *micro;
    cp_loss_series train_loss, eval_loss;
    FILE *metrics;             /* output_dir/metrics.jsonl, or NULL without output_dir */
    cp_output_dir out;
    int cleaned;               /* files of killed runs removed when output_dir was opened */
    int64_t last_checkpoint;   /* step of the newest checkpoint written or resumed from (0: none) */
    atomic_int stop;           /* cp_trainer_request_stop (lock-free: async-signal-safe) */
    int stopped;               /* the last run ended on a stop request */
    int finished;              /* the run's final evaluation and adapter are done */
    /* timing: this run's first step, and the logging window */
    double t0;
    int64_t t0_step;           /* -1: not started */
    double log_t0, log_loss, log_tokens;
    int64_t log_count;
    double last_norm;
    /* classification (the model's task is SEQ_CLS or TOKEN_CLS): class_train.c */
    int cls;
    cp_class_dataset ctrain, ceval;
    cp_label_set labels;       /* discovered from the training file */
    cp_class_batch *cb;        /* [accumulation] micro-batch buffers */
    char *cls_strings[3];      /* owned copies of text_pair_field, label_field, task_type */
    /* SEQ_2_SEQ_LM (the model is an encoder-decoder): s2s_train.c */
    int s2s;
    cp_s2s_dataset strain, seval;
    cp_s2s_batch *sb;          /* [accumulation] micro-batch buffers */
    char *s2s_strings[3];      /* owned copies of source_field, target_field, source_prefix */
    /* the Trainer's log (train_report.c) */
    char *log_strings[3];      /* owned copies of metric_for_best_model, report_to, logging_dir */
    cp_train_log log;          /* log_history, best metric and checkpoint */
    const char *best_metric_name; /* metric_for_best_model in effect (NULL: no best tracked) */
    int greater;               /* greater_is_better in effect */
    int report_tb;             /* report_to names tensorboard */
    char *logging_dir;         /* resolved (owned); NULL when not reporting */
    cp_tb_writer tb;
    double run_t0, run_loss_sum; /* this run's start and the sum of its step losses (the summary) */
    int64_t run_steps;
    int64_t checkpoints_deleted;
};

/* train_report.c: options and setup (report_to parsed, the checks of load_best_model_at_end, the
 * TensorBoard writer opened by rank 0); a log entry ({"loss", "grad_norm", "learning_rate"}) and an
 * evaluation entry recorded in log_history and sent to TensorBoard; as each checkpoint is saved the
 * best checkpoint's name (report_saved, before its trainer_state.json) and then the rotation; trainer_state.json's text; at the end the summary entry and,
 * with load_best_model_at_end, the best checkpoint's adapter (cp_trainer_finish_best: *dir receives
 * the checkpoint whose adapter files the final adapter copies, NULL when the model's own is final). */
cp_status cp_train_report_check(const cp_train_options *o);
cp_status cp_train_report_setup(cp_trainer *t);
void cp_train_report_free(cp_trainer *t);
double cp_trainer_epoch(const cp_trainer *t, int64_t step);
cp_status cp_train_report_log(cp_trainer *t, int64_t step, double loss, double grad_norm, double lr);
cp_status cp_train_report_eval(cp_trainer *t, const cp_train_eval *e, double runtime);
cp_status cp_train_report_saved(cp_trainer *t);
cp_status cp_train_report_rotate(cp_trainer *t);
char *cp_trainer_state_text(const cp_trainer *t);
cp_status cp_train_report_summary(cp_trainer *t);
cp_status cp_trainer_finish_best(cp_trainer *t, char **dir);

double cp_trainer_now(void);
/* splitmix-style mixing of two seeds (the adapter's init, each epoch's order, each step's dropout). */
uint64_t cp_trainer_mix(uint64_t a, uint64_t b);
void cp_loss_series_add(cp_loss_series *s, double step, double value);

/* dist_train.c: under MPI (train/dist.h), after every rank's setup succeeded: the ranks run the same
 * configuration (options, data, model and the adapter's initial values, compared by hash) and rank 0's
 * output directory is the one every rank sees. A no-op with one process. Collective. */
cp_status cp_trainer_dist_check(cp_trainer *t);

/* train_state.c: checkpoint-N/ of the current step (adapter, optimizer.safetensors,
 * trainer_state.json), written under a temporary name and moved into place; *dir receives its path
 * (caller frees). And the reverse: the optimizer moments, the exact parameter values and the
 * position, read from a checkpoint after its adapter was loaded. */
cp_status cp_trainer_save_checkpoint(cp_trainer *t, char **dir);
cp_status cp_trainer_load_checkpoint_state(cp_trainer *t, const char *dir);

/* class_train.c: classification in the trainer. setup reads the training file (labels discovered)
 * and the eval file, checks the model's num_labels against the label set and cuts to
 * max_train_samples / max_eval_samples; micro_batch fills a cp_batch of examples order[start..+n);
 * evaluate runs the eval data with metrics; write_head_config writes DIR/config.json (the base
 * config with the head's architectures, id2label, label2id, problem_type). */
int64_t cp_trainer_n_train(const cp_trainer *t);
cp_status cp_class_trainer_setup(cp_trainer *t);
cp_status cp_class_micro_batch(cp_trainer *t, const int64_t *order, int64_t start, int64_t count, cp_class_batch *cb,
                               cp_batch *out);
cp_status cp_class_trainer_evaluate(cp_trainer *t, cp_train_eval *e);
cp_status cp_class_write_head_config(const cp_trainer *t, const char *dir);
void cp_class_trainer_free(cp_trainer *t);
/* The class task of a model (SEQ_CLS / TOKEN_CLS), -1 for others. */
int cp_class_task_of(const cp_model *m);

/* s2s_train.c: SEQ_2_SEQ_LM in the trainer. setup resolves max_source_length / max_target_length
 * (0: 512 / 128), reads the training file and the eval file (or splits off validation_split) and cuts
 * to max_train_samples / max_eval_samples; micro_batch fills a cp_batch (encoder ids, labels, Td) of
 * examples order[start..+n) of ds (t->strain; t->seval unshuffled, order NULL, for the evaluation). */
int cp_s2s_task_of(const cp_model *m);
cp_status cp_s2s_trainer_setup(cp_trainer *t);
cp_status cp_s2s_micro_batch(cp_trainer *t, const cp_s2s_dataset *ds, const int64_t *order, int64_t start, int64_t count,
                             cp_s2s_batch *sb, cp_batch *out);
void cp_s2s_trainer_free(cp_trainer *t);

/* train_options.c: the LoraConfig of LoRA options (task_type CAUSAL_LM), allocated (free with
 * cp_peft_config_free). */
struct cp_peft_config;
cp_status cp_lora_config_from_options(const cp_lora_options *o, struct cp_peft_config **out);
/* The same for a model's task (PEFT's task_type; NULL or "CAUSAL_LM" as above): SEQ_CLS and TOKEN_CLS
 * get PEFT's head names in modules_to_save, as get_peft_model does. */
cp_status cp_lora_config_for_task(const cp_lora_options *o, const char *task_type, struct cp_peft_config **out);

/* ---- the whole run from a model directory --------------------------------------------------------- */

/* The options of cp_train: the trainer's options, flat, plus the model directory. */
typedef struct {
    const char *model_dir, *data_path, *eval_data_path, *output_dir;
    const char *peft_config_path;      /* PEFT adapter_config.json; else the lora_* fields below */
    const char *resume_from;           /* checkpoint-N directory */
    int overwrite_output_dir;          /* write into an output directory that is not empty */
    /* LoRA flags (used without --peft-config) */
    int64_t lora_r;
    double lora_alpha, lora_dropout;
    const char *target_modules;        /* "a,b,c", "all-linear", or NULL for PEFT's default table */
    const char *bias;                  /* "none", "all", "lora_only" */
    const char *modules_to_save;       /* "a,b" or NULL */
    /* TrainingArguments */
    double learning_rate, weight_decay, max_grad_norm, warmup_ratio, num_train_epochs;
    double adam_beta1, adam_beta2, adam_epsilon;
    int64_t max_steps, per_device_train_batch_size, gradient_accumulation_steps, warmup_steps;
    int64_t logging_steps, eval_steps, save_steps, seed, max_seq_length;
    cp_schedule lr_scheduler_type;
    int gradient_checkpointing;
    double validation_split;           /* fraction held out when no eval file is given (0: none) */
    int strict;                        /* malformed data records are fatal */
    const char *text_field;
    int progress;                      /* unused (the progress display belongs to cpeft train) */
} cp_train_args;

/* cp_train_options_init's defaults, flat. */
void cp_train_args_defaults(cp_train_args *a);
/* The model, data and output directories are given, then cp_train_options_check. */
cp_status cp_train_args_check(const cp_train_args *a);
/* Loads the model and tokenizer from a->model_dir and runs a trainer on them to the end, silently.
 * *interrupted is always 0: only a program's own signal handler (cpeft train's) stops a run. */
cp_status cp_train(const cp_train_args *a, int *interrupted);

#endif
