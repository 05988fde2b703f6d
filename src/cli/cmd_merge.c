/*
 * cmd_merge.c — `cpeft merge --model DIR --adapter DIR[:NAME[:WEIGHT]]... --out DIR`: PEFT's
 * merge_and_unload written as a complete Hugging Face checkpoint (config.json, model.safetensors
 * in the base dtype, tokenizer and generation files copied) that transformers loads directly.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "convert/gguf_load.h"
#include "cpeft.h"

#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft merge --model DIR --adapter DIR[:NAME[:WEIGHT]] [--adapter ...] --out DIR\n\n"
            "Merges the adapters into the base weights (W + s·BA, PEFT's merge_and_unload) and writes a full\n"
            "Hugging Face checkpoint to --out (which must not exist): config.json, model.safetensors in the\n"
            "base model's dtype, and the base directory's tokenizer and generation files. Several adapters\n"
            "are merged together, WEIGHT scaling each one's delta. Nothing is left behind on failure.\n");
    fputs(CLI_QUANTIZE_HELP, f);
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *quantize = NULL;
    char *adapters[64];
    int n_adapters = 0;
    const cp_opt options[] = {
        {CP_STRING("--model", &model)},
        {CP_STRING("--out", &out)},
        {CP_STRING("--quantize", &quantize)},
        {CLI_ADAPTER_OPTION(adapters, &n_adapters)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "merge", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (!model || !out || n_adapters == 0) {
        fprintf(stderr, "cpeft merge: needs --model, --adapter and --out\n");
        help(stderr);
        return 2;
    }
    if (cp_path_is_gguf(model)) { /* cp_model_save_merged copies config.json and the tokenizer from a directory */
        fprintf(stderr, "cpeft merge: %s: merging into a GGUF base is not built yet: convert it first (cpeft convert "
                        "--gguf %s --out DIR) and merge with --model DIR; the adapter loads onto that directory\n", model, model);
        return 2;
    }
    int load_flags = CP_LOAD_WEIGHTS;
    if ((r = cli_quantize_flags("merge", quantize, &load_flags))) return r;
    cp_model *m = cli_load_model("merge", model, load_flags, adapters, n_adapters);
    if (!m) return 1;
    int rc = 0;
    if (cp_model_save_merged(m, out) != CP_OK) {
        fprintf(stderr, "cpeft merge: %s\n", cp_last_error());
        rc = 1;
    } else {
        printf("merged %d adapter%s into %s\n", n_adapters, n_adapters > 1 ? "s" : "", out);
    }
    cp_model_free(m);
    return rc;
}
