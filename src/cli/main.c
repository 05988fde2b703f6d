/*
 * main.c — the `cpeft` program: dispatches `cpeft COMMAND ...` to the subcommands in src/cli/.
 */
#include "cli/commands.h"
#include "cpeft.h"
#include "kernels/blas_core.h"
#include "kernels/dispatch.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
} commands[] = {
    {"info", cmd_info, "architecture, config, parameter count, dtypes, memory, module tree"},
    {"train", cmd_train, "LoRA fine-tuning: a PEFT adapter from a model and a text or instruction file"},
    {"predict", cmd_predict, "a sequence or token classifier (model + adapter) on a labelled file: JSONL and metrics"},
    {"generate", cmd_generate, "text from a model and adapters: greedy or sampled, KV cache, batched prompts"},
    {"serve", cmd_serve, "an OpenAI-compatible server: one base model, many adapters, continuous batching"},
    {"eval", cmd_eval, "causal-LM loss and perplexity over a text or token-id file"},
    {"eval-generate", cmd_eval_generate, "an encoder-decoder by generation: predictions JSONL, corpus BLEU and ROUGE-L"},
    {"embed", cmd_embed, "one embedding per input line (mean/cls/last pooling), as sentence-transformers"},
    {"tokenize", cmd_tokenize, "encode text to token ids (or decode ids) with a model's tokenizer"},
    {"merge", cmd_merge, "merge adapters into the base weights and write a full checkpoint"},
    {"convert", cmd_convert, "a GGUF file (llama.cpp's format) to a Hugging Face model directory"},
    {"adapter", cmd_adapter, "create (init) or combine PEFT adapters without training"},
    {"score", cmd_score, "corpus BLEU (as sacreBLEU) and ROUGE-L (as rouge-score) of hypothesis lines against references"},
};

static void usage(FILE *f) {
    fprintf(f, "cpeft %s — parameter-efficient fine-tuning of Hugging Face models, in C\n\n", CPEFT_VERSION);
    fprintf(f, "usage: cpeft COMMAND [options]    (cpeft COMMAND --help for a command's options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    cp_blas_use_best_core(argv); /* OpenBLAS's sgemm kernels for this CPU (kernels/blas_core.h) */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cpeft %s (kernels %s, OpenBLAS core %s)\n", CPEFT_VERSION, cp_kernels()->name, cp_blas_core_name());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cpeft: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
