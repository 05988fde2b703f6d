/*
 * cmd_train.c — `cpeft train`: option parsing for the training run (src/train/trainer.c). Options
 * are named after Hugging Face TrainingArguments with dashes; LoRA comes from a PEFT
 * adapter_config.json (--peft-config) or from --lora-* flags. Numbers are checked here
 * (cp_train_args_check: a bad value is a usage error, exit 2) before the run starts.
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "cpeft.h"
#include "train/trainer.h"

#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft train --model DIR --data FILE --output-dir DIR [options]\n\n"
            "LoRA fine-tuning of a causal LM. Writes a PEFT adapter (adapter_config.json +\n"
            "adapter_model.safetensors) to --output-dir, checkpoint-N/ every --save-steps, metrics.jsonl and\n"
            "loss.png. SIGINT, SIGTERM and SIGHUP save a checkpoint and exit 130, 143 and 129.\n"
            "Data: plain text (one stream cut into blocks), JSONL / JSON array with a text field, or\n"
            "instruction records (instruction, input, output) rendered with the Alpaca template, loss on the\n"
            "response only; any of them may be gzip- or zstd-compressed. Binary data is refused.\n\n"
            "adapter:\n"
            "  --peft-config FILE              a PEFT adapter_config.json, or:\n"
            "  --lora-r N (8)  --lora-alpha A (16)  --lora-dropout P (0.05)\n"
            "  --target-modules a,b,c          default: PEFT's table for the model type; or all-linear\n"
            "  --bias none|all|lora_only       --modules-to-save a,b\n"
            "training (TrainingArguments):\n"
            "  --learning-rate LR (5e-5)  --num-train-epochs E (3)  --max-steps N (overrides epochs)\n"
            "  --per-device-train-batch-size B (8)  --gradient-accumulation-steps K (1)\n"
            "  --warmup-steps N  --warmup-ratio R  --lr-scheduler-type linear|cosine|constant|constant_with_warmup\n"
            "  --weight-decay W (0)  --max-grad-norm G (1.0)  --adam-beta1 --adam-beta2 --adam-epsilon\n"
            "  --logging-steps N (500)  --eval-steps N  --save-steps N (500)  --seed S (42)\n"
            "  --max-seq-length N (the model's positions, at most 1024)  --gradient-checkpointing\n"
            "data:\n"
            "  --eval-data FILE  --validation-split F (hold out a fraction when no eval file)\n"
            "  --text-field NAME (text)  --strict (a malformed record is fatal, not skipped)\n"
            "  --resume-from-checkpoint DIR    continue a run exactly where checkpoint-N left it\n"
            "output:\n"
            "  --overwrite-output-dir          write into an output directory that is not empty (refused\n"
            "                                  otherwise, unless resuming); one run at a time per directory\n"
            "  --progress bar|lines            default: a live bar on a terminal, lines otherwise\n");
}

int cmd_train(int argc, char **argv) {
    cp_train_args a;
    cp_train_args_defaults(&a);
    const char *v;
    int r;
#define STR(flag, field) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0) return 2; a.field = v; continue; }
#define INT(flag, field, lo, hi) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0 || cp_arg_int(v, flag, lo, hi, &a.field, "train")) return 2; continue; }
#define DBL(flag, field) \
    if ((r = cp_arg_value(argc, argv, &i, flag, &v, "train"))) { if (r < 0 || cp_arg_double(v, flag, &a.field, "train")) return 2; continue; }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { help(stdout); return 0; }
        if (!strcmp(argv[i], "--gradient-checkpointing")) { a.gradient_checkpointing = 1; continue; }
        if (!strcmp(argv[i], "--strict")) { a.strict = 1; continue; }
        if (!strcmp(argv[i], "--overwrite-output-dir")) { a.overwrite_output_dir = 1; continue; }
        STR("--model", model_dir) STR("--data", data_path) STR("--eval-data", eval_data_path) STR("--output-dir", output_dir)
        STR("--peft-config", peft_config_path) STR("--resume-from-checkpoint", resume_from)
        STR("--target-modules", target_modules) STR("--bias", bias) STR("--modules-to-save", modules_to_save)
        STR("--text-field", text_field)
        INT("--lora-r", lora_r, 1, 1 << 20) DBL("--lora-alpha", lora_alpha) DBL("--lora-dropout", lora_dropout)
        DBL("--learning-rate", learning_rate) DBL("--num-train-epochs", num_train_epochs) INT("--max-steps", max_steps, -1, INT64_MAX)
        INT("--per-device-train-batch-size", per_device_train_batch_size, 1, 1 << 20)
        INT("--gradient-accumulation-steps", gradient_accumulation_steps, 1, 1 << 20)
        INT("--warmup-steps", warmup_steps, 0, INT64_MAX) DBL("--warmup-ratio", warmup_ratio)
        DBL("--weight-decay", weight_decay) DBL("--max-grad-norm", max_grad_norm)
        DBL("--adam-beta1", adam_beta1) DBL("--adam-beta2", adam_beta2) DBL("--adam-epsilon", adam_epsilon)
        INT("--logging-steps", logging_steps, 1, INT64_MAX) INT("--eval-steps", eval_steps, 0, INT64_MAX)
        INT("--save-steps", save_steps, 0, INT64_MAX) INT("--seed", seed, 0, INT64_MAX)
        INT("--max-seq-length", max_seq_length, 2, 1 << 24) DBL("--validation-split", validation_split)
        if ((r = cp_arg_value(argc, argv, &i, "--lr-scheduler-type", &v, "train"))) {
            if (r < 0) return 2;
            int s = cp_schedule_from_name(v);
            if (s < 0) {
                fprintf(stderr, "cpeft train: --lr-scheduler-type: \"%s\" is not one of linear, cosine, constant, constant_with_warmup\n", v);
                return 2;
            }
            a.lr_scheduler_type = (cp_schedule)s;
            continue;
        }
        if ((r = cp_arg_value(argc, argv, &i, "--progress", &v, "train"))) {
            if (r < 0) return 2;
            if (strcmp(v, "bar") && strcmp(v, "lines")) { fprintf(stderr, "cpeft train: --progress: bar or lines\n"); return 2; }
            a.progress = !strcmp(v, "bar");
            continue;
        }
        fprintf(stderr, "cpeft train: unknown argument %s\n", argv[i]);
        help(stderr);
        return 2;
    }
#undef STR
#undef INT
#undef DBL
    if (!a.model_dir || !a.data_path || !a.output_dir) {
        fprintf(stderr, "cpeft train: needs --model, --data and --output-dir\n");
        help(stderr);
        return 2;
    }
    if (cp_train_args_check(&a) != CP_OK) {
        fprintf(stderr, "cpeft train: %s\n", cp_last_error());
        return 2;
    }
    int interrupted = 0;
    if (cp_train(&a, &interrupted) != CP_OK) {
        fprintf(stderr, "cpeft train: %s\n", cp_last_error());
        return 1;
    }
    return interrupted ? 128 + interrupted : 0; /* as a shell reports a process the signal ended */
}
