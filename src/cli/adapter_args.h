/*
 * adapter_args.h — the `--adapter DIR[:NAME[:WEIGHT]]` option shared by eval, merge and generate:
 * loads each adapter under NAME (the first defaults to "default", later ones to their directory's
 * base name) and activates them all together; WEIGHT scales that adapter's delta (several weighted
 * adapters active at once equal PEFT's add_weighted_adapter with combination_type="cat").
 */
#ifndef CP_CLI_ADAPTER_ARGS_H
#define CP_CLI_ADAPTER_ARGS_H

#include "cli/args.h"
#include "models/model.h"

/* The option's row in a cp_args_parse table: up to 64 specs, n counting them. */
#define CLI_ADAPTER_OPTION(specs, n) CP_LIST("--adapter", (specs), 64, (n), "at most 64 --adapter options")

/* `--quantize TYPE` (q8_0, q4_k) added to load flags; NULL adds nothing. 0, or 2 after printing
 * "cpeft CMD: --quantize X: unknown type (known: q8_0, q4_k)". */
int cli_quantize_flags(const char *cmd, const char *type, int *flags);
#define CLI_QUANTIZE_HELP                                                                                     \
    "  --quantize TYPE   q8_0 or q4_k: the frozen Linear weights quantized at load with ggml's quantizers\n" \
    "                    (embeddings, norms, the LM head and adapters stay f32)\n"
/* generate / eval: quantized weights' few-row products with 8-bit activations unless --exact-quant. */
#define CLI_EXACT_QUANT_HELP                                                                                  \
    "  --exact-quant     with quantized weights (GGUF Q*, --quantize): multiply by the dequantized weight in\n" \
    "                    f32 (as training does) instead of rounding activations to 8 bits per block, as\n"   \
    "                    llama.cpp does (the default for decoding: faster, logits differ slightly)\n"

cp_status cli_load_adapters(cp_model *m, char *const *specs, int n);
/* The model in dir (cp_model_load's flags) with the n --adapter specs loaded and active; NULL after
 * printing "cpeft CMD: <the error>" on stderr. */
/* --model PATH: a directory (cp_model_load_task) or a file ending .gguf (cp_model_load_gguf; the
 * environment's CPEFT_GGUF_DEQUANTIZE=1 adds CP_LOAD_GGUF_DEQUANTIZE), and its tokenizer. */
cp_status cli_model_load_task(cp_model **out, const char *path, int flags, const char *task_type);
cp_status cli_tokenizer_load(cp_tokenizer **out, const char *path);
cp_model *cli_load_model(const char *cmd, const char *dir, int flags, char *const *specs, int n);

#endif
