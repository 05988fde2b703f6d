/*
 * peft_type_args.c — `--peft-type TYPE` and its config's flags: parsed, checked, turned into the
 * adapter_config.json object PEFT would write for them and added to the model; see peft_type_args.h.
 */
#include "cli/peft_type_args.h"
#include "cli/args.h"
#include "core/rng.h"
#include "peft/peft_config.h"
#include "peft/peft_model.h"

#include <string.h>

const char cli_peft_flags_help[] =
    "  --peft-type LORA|IA3|PROMPT_TUNING|P_TUNING|PREFIX_TUNING   the method of an adapter made from flags (LORA)\n"
    "  --num-virtual-tokens N          prompt learning: the virtual tokens (required)\n"
    "  --prompt-tuning-init RANDOM|TEXT|SAMPLE_VOCAB   --prompt-tuning-init-text \"...\"\n"
    "  --tokenizer-name-or-path DIR    TEXT init's tokenizer (default: --model)\n"
    "  --encoder-reparameterization-type MLP|LSTM  --encoder-hidden-size N  --encoder-num-layers N\n"
    "  --encoder-dropout P             p-tuning's encoder (hidden size default: the model's)\n"
    "  --prefix-projection             prefix tuning through an MLP (--encoder-hidden-size)\n";

void cli_peft_flags_init(cli_peft_flags *f) {
    memset(f, 0, sizeof *f);
    f->num_virtual_tokens = f->encoder_hidden_size = f->encoder_num_layers = -1;
    f->encoder_dropout = -1;
}

int cli_peft_flag(int argc, char **argv, int *i, cli_peft_flags *f, const char *cmd) {
    const char *v, *flag = argv[*i];
    int r;
    if (!strcmp(flag, "--prefix-projection")) { f->prefix_projection = 1; f->last_flag = flag; return 1; }
    const struct { const char *name; const char **s; int64_t *n; double *d; } flags[] = {
        {"--peft-type", &f->peft_type, NULL, NULL},
        {"--prompt-tuning-init", &f->prompt_tuning_init, NULL, NULL},
        {"--prompt-tuning-init-text", &f->prompt_tuning_init_text, NULL, NULL},
        {"--tokenizer-name-or-path", &f->tokenizer_name_or_path, NULL, NULL},
        {"--encoder-reparameterization-type", &f->encoder_type, NULL, NULL},
        {"--num-virtual-tokens", NULL, &f->num_virtual_tokens, NULL},
        {"--encoder-hidden-size", NULL, &f->encoder_hidden_size, NULL},
        {"--encoder-num-layers", NULL, &f->encoder_num_layers, NULL},
        {"--encoder-dropout", NULL, NULL, &f->encoder_dropout},
    };
    for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
        if ((r = cp_arg_value(argc, argv, i, flags[k].name, &v, cmd)) == 0) continue;
        if (r < 0) return -1;
        if (k) f->last_flag = flags[k].name;
        if (flags[k].s) *flags[k].s = v;
        /* a count PEFT would take as given: the checks name it with its value (num_virtual_tokens 0 included) */
        if (flags[k].n && cp_arg_int(v, flags[k].name, INT64_MIN / 2, INT64_MAX / 2, flags[k].n, cmd)) return -1;
        if (flags[k].d && cp_arg_double(v, flags[k].name, flags[k].d, cmd)) return -1;
        return 1;
    }
    return 0;
}

/* 0: LoRA, 1-3: the prompt-learning types, 4: IA3 (LoRA's and IA3's flags are cmd_train.c's) */
static const char *const types[] = {"LORA", "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "IA3"};

cp_status cli_peft_flags_check(const cli_peft_flags *f, int has_peft_config) {
    if (!f->peft_type) {
        if (f->last_flag) return cp_error("%s needs --peft-type (PROMPT_TUNING, P_TUNING or PREFIX_TUNING)", f->last_flag);
        return CP_OK;
    }
    int k = 0;
    while (k < 5 && strcmp(f->peft_type, types[k])) k++;
    if (k == 5) return cp_error("--peft-type \"%s\": expected LORA, IA3, PROMPT_TUNING, P_TUNING or PREFIX_TUNING", f->peft_type);
    if (has_peft_config) return cp_error("give --peft-type with its flags or --peft-config FILE, not both");
    if (k == 0 || k == 4) {
        if (f->last_flag) return cp_error("%s is a prompt-learning flag; --peft-type is %s", f->last_flag, f->peft_type);
        return CP_OK;
    }
    const struct { const char *flag; int given, ok; } rules[] = {
        {"--prompt-tuning-init", f->prompt_tuning_init != NULL, k == 1},
        {"--prompt-tuning-init-text", f->prompt_tuning_init_text != NULL, k == 1},
        {"--tokenizer-name-or-path", f->tokenizer_name_or_path != NULL, k == 1},
        {"--encoder-reparameterization-type", f->encoder_type != NULL, k == 2},
        {"--encoder-num-layers", f->encoder_num_layers >= 0, k == 2},
        {"--encoder-dropout", f->encoder_dropout >= 0, k == 2},
        {"--encoder-hidden-size", f->encoder_hidden_size != -1, k >= 2},
        {"--prefix-projection", f->prefix_projection, k == 3},
    };
    for (size_t r = 0; r < sizeof rules / sizeof *rules; r++)
        if (rules[r].given && !rules[r].ok) return cp_error("%s does not apply to --peft-type %s", rules[r].flag, f->peft_type);
    if (f->num_virtual_tokens == -1) return cp_error("--peft-type %s needs --num-virtual-tokens N", f->peft_type);
    return CP_OK;
}

cp_status cli_peft_add(cp_model *m, const cli_peft_flags *f, const char *name, const char *model_dir, uint64_t seed) {
    if (!f->peft_type || !strcmp(f->peft_type, "LORA") || !strcmp(f->peft_type, "IA3")) return CP_OK; /* cmd_train.c's */
    cJSON *o = cJSON_CreateObject();
    if (!o) return cp_error("out of memory");
    cJSON_AddStringToObject(o, "peft_type", f->peft_type);
    cJSON_AddStringToObject(o, "task_type", cp_model_task_type(m));
    cJSON_AddNumberToObject(o, "num_virtual_tokens", (double)f->num_virtual_tokens);
    if (f->prompt_tuning_init) cJSON_AddStringToObject(o, "prompt_tuning_init", f->prompt_tuning_init);
    if (f->prompt_tuning_init_text) cJSON_AddStringToObject(o, "prompt_tuning_init_text", f->prompt_tuning_init_text);
    if (f->prompt_tuning_init && !strcmp(f->prompt_tuning_init, "TEXT"))
        cJSON_AddStringToObject(o, "tokenizer_name_or_path", f->tokenizer_name_or_path ? f->tokenizer_name_or_path : model_dir);
    if (f->encoder_type) cJSON_AddStringToObject(o, "encoder_reparameterization_type", f->encoder_type);
    if (f->encoder_hidden_size != -1) cJSON_AddNumberToObject(o, "encoder_hidden_size", (double)f->encoder_hidden_size);
    if (f->encoder_num_layers >= 0) cJSON_AddNumberToObject(o, "encoder_num_layers", (double)f->encoder_num_layers);
    if (f->encoder_dropout >= 0) cJSON_AddNumberToObject(o, "encoder_dropout", f->encoder_dropout);
    if (f->prefix_projection) cJSON_AddTrueToObject(o, "prefix_projection");
    cp_peft_config *cfg = NULL;
    cp_status st = cp_peft_config_from_json(o, "--peft-type flags", &cfg);
    cJSON_Delete(o);
    if (st == CP_OK) {
        cp_rng rng;
        cp_rng_seed(&rng, seed);
        st = cp_peft_add(m, name, cfg, &rng, 1, 1);
    }
    cp_peft_config_free(cfg);
    return st;
}
