/*
 * train_log.h — a training run's log as the Hugging Face Trainer keeps it (transformers'
 * TrainerState): the log_history entries, the best metric with its step and checkpoint, the
 * trainer_state.json it writes into every checkpoint-N/ and the output directory, and the rotation
 * of checkpoint-N/ directories under save_total_limit (trainer_utils.rotate_checkpoints).
 *
 * log_history entries carry the Trainer's keys: a log {"epoch", "grad_norm", "learning_rate",
 * "loss", "step"}, an evaluation {"epoch", "eval_loss" (+ "eval_<metric>"), "eval_runtime",
 * "eval_samples_per_second", "eval_steps_per_second", "step"}, and the summary train() adds at the
 * end {"epoch", "step", "total_flos", "train_loss", "train_runtime", "train_samples_per_second",
 * "train_steps_per_second"}. trainer_state.json is TrainerState.save_to_json's text:
 * json.dumps(asdict(state), indent=2, sort_keys=True) + "\n", so TrainerState.load_from_json reads it.
 *
 * Not here: what cpeft needs beyond the Trainer's state to resume exactly (train_state.c,
 * cpeft_state.json), the TensorBoard events (tb_writer.h).
 */
#ifndef CP_TRAIN_TRAIN_LOG_H
#define CP_TRAIN_TRAIN_LOG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"

typedef struct {
    cJSON *history;              /* log_history: an array of objects */
    int has_best;                /* best_metric is set */
    double best_metric;
    int64_t best_global_step;    /* 0: none */
    char *best_model_checkpoint; /* "<output_dir>/checkpoint-N", NULL: none */
} cp_train_log;

/* The TrainerState fields that are not the log. */
typedef struct {
    int64_t global_step, max_steps, logging_steps, eval_steps, save_steps, train_batch_size, num_train_epochs;
    double epoch;
    int should_training_stop;    /* TrainerControl's flag as the state was saved */
} cp_trainer_state_info;

cp_status cp_train_log_init(cp_train_log *l);
void cp_train_log_free(cp_train_log *l);

/* A new entry appended to log_history ({"step": step, "epoch": epoch}); NULL when memory runs out.
 * cp_train_log_set adds a number to it (a float keeps Python's repr: 1.0 stays "1.0"). */
cJSON *cp_train_log_entry(cp_train_log *l, int64_t step, double epoch);
void cp_train_log_set(cJSON *entry, const char *key, double value);
void cp_train_log_set_int(cJSON *entry, const char *key, int64_t value);

/* The Trainer's _determine_best_metric for an evaluation entry: `metric` as metric_for_best_model
 * ("eval_" prepended when missing); greater 1 or 0. A metric the entry lacks is an error listing the
 * ones it has (the Trainer's KeyError). *is_best is set when this entry is the new best; its step
 * becomes best_global_step. */
cp_status cp_train_log_update_best(cp_train_log *l, const cJSON *entry, const char *metric, int greater, int64_t step, int *is_best);

/* trainer_state.json's text (caller frees with cp_free). */
char *cp_trainer_state_json(const cp_train_log *l, const cp_trainer_state_info *info);
/* Reads log_history and the best_* fields of a trainer_state.json (cpeft's, the Trainer's, or an older
 * cpeft's with {"step", "loss"} entries) into l, replacing what it held. */
cp_status cp_train_log_load(cp_train_log *l, const char *path);

/* trainer_utils.rotate_checkpoints: with limit > 0, deletes the oldest checkpoint-N/ directories of
 * `out` (by N) until `limit` are left, never the newest nor `best` (a directory name such as
 * "checkpoint-4", or NULL). A directory is first renamed to "<name>.partial-<pid>" (a name
 * cp_dir_clean_stale removes; ".old-" would be moved back) and then removed, so a kill midway leaves
 * no half-deleted checkpoint-N/.
 * *n_removed counts the directories deleted. */
cp_status cp_checkpoints_rotate(const char *out, int64_t limit, const char *best, int *n_removed);

#endif
