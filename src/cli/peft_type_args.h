/*
 * peft_type_args.h — `--peft-type TYPE` and the flags of the config it names, for `cpeft train`:
 * a PEFT config made from flags instead of an adapter_config.json (--peft-config), and added to the
 * model as get_peft_model adds it before the trainer starts. LORA keeps the --lora-* flags (the
 * trainer builds that config); the prompt-learning types take
 *   --num-virtual-tokens N (required)
 *   PROMPT_TUNING  --prompt-tuning-init RANDOM|TEXT|SAMPLE_VOCAB  --prompt-tuning-init-text "..."
 *                  --tokenizer-name-or-path DIR (TEXT; default: the model directory)
 *   P_TUNING       --encoder-reparameterization-type MLP|LSTM  --encoder-hidden-size N
 *                  --encoder-num-layers N  --encoder-dropout P
 *   PREFIX_TUNING  --prefix-projection  --encoder-hidden-size N
 * named after the config fields; a flag of another type is refused by name.
 */
#ifndef CP_CLI_PEFT_TYPE_ARGS_H
#define CP_CLI_PEFT_TYPE_ARGS_H

#include <stdint.h>

#include "core/error.h"
#include "models/model.h"

typedef struct {
    const char *peft_type;       /* NULL: not given (LoRA) */
    const char *prompt_tuning_init, *prompt_tuning_init_text, *tokenizer_name_or_path, *encoder_type;
    int64_t num_virtual_tokens, encoder_hidden_size, encoder_num_layers; /* -1: not given */
    double encoder_dropout;      /* < 0: not given */
    int prefix_projection;
    const char *last_flag;       /* the last method flag given (for "a flag without --peft-type") */
} cli_peft_flags;

void cli_peft_flags_init(cli_peft_flags *f);
/* Takes argv[*i] when it is one of these flags: 1 taken, 0 another option, -1 a bad value (printed
 * as "cpeft CMD: ..."). */
int cli_peft_flag(int argc, char **argv, int *i, cli_peft_flags *f, const char *cmd);
/* The flags' consistency, before anything is loaded (a usage error: exit 2). */
cp_status cli_peft_flags_check(const cli_peft_flags *f, int has_peft_config);
/* Adds adapter `name` to m as get_peft_model does with the config the flags make (the model's task
 * as its task_type), trainable, initialised from `seed`. Nothing for LORA or no --peft-type. */
cp_status cli_peft_add(cp_model *m, const cli_peft_flags *f, const char *name, const char *model_dir, uint64_t seed);
/* The help text's lines for these flags. */
extern const char cli_peft_flags_help[];

#endif
