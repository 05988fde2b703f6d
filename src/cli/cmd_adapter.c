/*
 * cmd_adapter.c — `cpeft adapter init|combine`: making PEFT adapters without training.
 *
 *   cpeft adapter init --model DIR --peft-config FILE --out DIR [--seed N]
 *       get_peft_model + save_pretrained: a fresh adapter initialised as the config says
 *       (init_lora_weights true: an exact no-op until trained; false: random A and B).
 *   cpeft adapter combine --model DIR --adapter DIR:NAME ... --weights W,W,... --combination linear|cat --out DIR
 *       add_weighted_adapter over loaded adapters, saved as a new adapter.
 */
#include "cli/adapter_args.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "cpeft.h"
#include "peft/adapter_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft adapter init --model DIR --peft-config FILE --out DIR [--seed N]\n"
            "       cpeft adapter combine --model DIR --adapter DIR[:NAME] --adapter DIR[:NAME] ...\n"
            "                             --weights W1,W2,... [--combination linear|cat] --out DIR\n\n"
            "init     creates a PEFT adapter from an adapter_config.json (get_peft_model + save_pretrained),\n"
            "         initialised from --seed (default 0) as PEFT initialises it\n"
            "combine  PEFT's add_weighted_adapter: \"cat\" gives exactly the weighted sum of the deltas (rank\n"
            "         = sum of ranks); \"linear\" (default, PEFT's default for equal ranks) mixes A's and B's\n"
            "         separately, cross terms included\n");
}

static int init(int argc, char **argv) {
    const char *model = NULL, *cfg = NULL, *out = NULL;
    int64_t seed = 0;
    const cp_opt options[] = {
        {CP_STRING("--model", &model)},
        {CP_STRING("--peft-config", &cfg)},
        {CP_STRING("--out", &out)},
        {CP_INT("--seed", &seed, 0, INT64_MAX)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "adapter init", .opts = options, .unknown = "unknown argument %s"};
    int r = cp_args_parse(&spec, argc, argv, 2);
    if (r >= 0) return r;
    if (!model || !cfg || !out) { help(stderr); return 2; }
    cp_model *m = cli_load_model("adapter init", model, CP_LOAD_WEIGHTS, NULL, 0);
    if (!m) return 1;
    int rc = 0;
    if (cp_model_add_adapter(m, "default", cfg, (uint64_t)seed) != CP_OK || cp_model_save_adapter(m, "default", out) != CP_OK) {
        fprintf(stderr, "cpeft adapter init: %s\n", cp_last_error());
        rc = 1;
    } else {
        char *line = cp_model_trainable_parameters_line(m, CP_PEFT_LINE_NOTEBOOK);
        printf("%s\nsaved to %s\n", line ? line : "", out);
        free(line);
    }
    cp_model_free(m);
    return rc;
}

static int combine(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *weights = NULL, *combination = "linear";
    char *specs[64];
    int n = 0;
    const cp_opt options[] = {
        {CP_STRING("--model", &model)},
        {CP_STRING("--out", &out)},
        {CP_STRING("--weights", &weights)},
        {CP_STRING("--combination", &combination)},
        {CP_LIST("--adapter", specs, 64, &n, "at most 64 adapters")},
        {0},
    };
    const cp_args_spec spec = {.cmd = "adapter combine", .opts = options, .unknown = "unknown argument %s"};
    int r = cp_args_parse(&spec, argc, argv, 2);
    if (r >= 0) return r;
    if (!model || !out || !weights || n == 0) { help(stderr); return 2; }
    double w[64];
    int nw = 0;
    for (const char *p = weights; *p && nw < 64;) {
        char *end;
        w[nw] = strtod(p, &end);
        if (end == p) { fprintf(stderr, "cpeft adapter combine: --weights: \"%s\" is not a list of numbers\n", weights); return 2; }
        nw++;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') { fprintf(stderr, "cpeft adapter combine: --weights: \"%s\" is not a list of numbers\n", weights); return 2; }
    }
    if (nw != n) { fprintf(stderr, "cpeft adapter combine: %d weights for %d adapters\n", nw, n); return 2; }
    cp_model *m = cli_load_model("adapter combine", model, CP_LOAD_WEIGHTS, NULL, 0);
    if (!m) return 1;
    char *names[64];
    int loaded = 0, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char *dir, *name;
        double unused;
        if (cp_adapter_spec_parse(specs[i], &dir, &name, &unused) != CP_OK) { rc = 1; break; }
        if (!name[0]) { cp_free(name); char buf[32]; snprintf(buf, sizeof buf, "adapter%d", i); name = cp_strdup(buf); }
        names[loaded++] = name;
        if (cp_model_load_adapter(m, dir, name, 1) != CP_OK) rc = 1;
        cp_free(dir);
    }
    if (!rc && (cp_model_add_weighted_adapter(m, (const char *const *)names, w, n, "combined", combination) != CP_OK ||
                cp_model_save_adapter(m, "combined", out) != CP_OK))
        rc = 1;
    if (rc) fprintf(stderr, "cpeft adapter combine: %s\n", cp_last_error());
    else printf("combined %d adapters (%s) into %s\n", n, combination, out);
    for (int i = 0; i < loaded; i++) cp_free(names[i]);
    cp_model_free(m);
    return rc;
}

int cmd_adapter(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) { help(argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    if (!strcmp(argv[1], "init")) return init(argc, argv);
    if (!strcmp(argv[1], "combine")) return combine(argc, argv);
    fprintf(stderr, "cpeft adapter: unknown subcommand \"%s\" (init, combine)\n", argv[1]);
    return 2;
}
