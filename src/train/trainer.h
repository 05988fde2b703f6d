/*
 * trainer.h — the training run behind `cpeft train`: model + adapter + data in, a PEFT adapter
 * out, with the Hugging Face Trainer's step accounting, logging, evaluation, checkpoints
 * (checkpoint-N/ as the HF Trainer names them) and exact resumption. The output directory's rules
 * (lock, refusal, atomic commit of the final adapter) are in train/output_dir.h.
 */
#ifndef CP_TRAIN_TRAINER_H
#define CP_TRAIN_TRAINER_H

#include <stdint.h>

#include "core/error.h"
#include "train/optim.h"

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
    int progress;                      /* -1 auto (terminal), 0 plain lines, 1 live bar */
} cp_train_args;

/* Defaults as TrainingArguments has them where it has them (lr 5e-5, AdamW betas (0.9, 0.999),
 * eps 1e-8, weight decay 0, max_grad_norm 1, 3 epochs, linear schedule, logging every 500 steps...),
 * max_seq_length 0 meaning the model's positions (at most 1024),
 * with cpeft's LoRA defaults (r 8, alpha 16, dropout 0.05). */
void cp_train_args_defaults(cp_train_args *a);
/* Checks every number against what torch.optim.AdamW and TrainingArguments accept (an error names the
 * flag and the value). cp_train runs it first; the CLI runs it to report a usage error. */
cp_status cp_train_args_check(const cp_train_args *a);
/* The whole run. The output directory is locked for the run; one that is not empty is refused unless
 * overwrite_output_dir or resume_from is set. Stopped by SIGINT, SIGTERM or SIGHUP, it saves a
 * checkpoint after the step under way and returns CP_OK with *interrupted = the signal number
 * (0 when the run completed). */
cp_status cp_train(const cp_train_args *a, int *interrupted);

#endif
