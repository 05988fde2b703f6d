/*
 * cmd_convert.c — `cpeft convert --gguf FILE --out DIR [--dtype auto|f32|f16|bf16] [--force]`:
 * a llama.cpp GGUF checkpoint (llama, qwen2, qwen3, gemma, gemma2, phi3, gptneox, phi2, bloom) turned into a
 * Hugging Face directory (config.json,
 * model.safetensors, tokenizer.json and friends) that transformers and cpeft load. The directory
 * is written under a temporary name and renamed into place when complete (io/fsutil.h), so an
 * interrupted or failed conversion leaves no half-written model behind.
 */
#include "cli/args.h"
#include "cli/commands.h"
#include "core/alloc.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "convert/gguf_convert.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void help(FILE *f) {
    fprintf(f,
            "usage: cpeft convert --gguf FILE --out DIR [--dtype auto|f32|f16|bf16] [--force]\n\n"
            "Converts a GGUF checkpoint (llama.cpp's format; architecture \"llama\": Llama, Mistral, SmolLM,\n"
            "TinyLlama; \"qwen2\", \"qwen3\", \"gemma\", \"gemma2\", \"phi3\", \"gptneox\", \"phi2\", \"bloom\") into\n"
            "a Hugging Face model directory: config.json, model.safetensors, generation_config.json,\n"
            "tokenizer.json, tokenizer_config.json, special_tokens_map.json.\n\n"
            "  --gguf FILE   the .gguf file\n"
            "  --out DIR     the directory to write; it must not exist unless --force is given\n"
            "  --dtype T     auto (default): F32/F16/BF16 tensors keep their type, quantized ones become f32;\n"
            "                f32, f16 or bf16: every tensor in that type (f16/bf16 round quantized values)\n"
            "  --force       write into an existing DIR, replacing the files of the same names\n\n"
            "Quantized tensors (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K) are dequantized exactly as\n"
            "ggml does: the checkpoint holds the values the GGUF encodes, quantization error included.\n"
            "See docs/convert.md.\n");
}

/* "210 Q4_1, 61 F32, 1 Q8_0", most frequent first. */
static void print_type_counts(const cp_gguf_convert_report *r) {
    int done[CP_GGML_TYPE_COUNT] = {0}, first = 1;
    for (;;) {
        int best = -1;
        for (int t = 0; t < CP_GGML_TYPE_COUNT; t++)
            if (!done[t] && r->tensors_by_type[t] && (best < 0 || r->tensors_by_type[t] > r->tensors_by_type[best])) best = t;
        if (best < 0) break;
        done[best] = 1;
        printf("%s%" PRId64 " %s", first ? "" : ", ", r->tensors_by_type[best], cp_ggml_type_name(best));
        first = 0;
    }
}

/* "134.5M" for big counts, the number itself for small ones. */
static const char *count_text(int64_t n, char *buf, size_t cap) {
    if (n >= 1000000) snprintf(buf, cap, "%.1fM", (double)n / 1e6);
    else snprintf(buf, cap, "%" PRId64, n);
    return buf;
}

static void print_report(const cp_gguf *g, const char *out, const cp_gguf_convert_report *r, int dtype) {
    const cp_gguf_hparams *hp = &r->hp;
    char bytes[32], params[32];
    printf("converted %s (GGUF v%" PRIu32 ", %" PRId64 " tensors, %" PRId64 " metadata keys) -> %s\n", g->path, g->version,
           g->n_tensors, g->n_kv, out);
    printf("  model      %s: %s, %" PRId64 " layer%s, hidden %" PRId64 ", %" PRId64 " heads (%" PRId64
           " kv) of %" PRId64 ", MLP %" PRId64 ", vocab %" PRId64 ", context %" PRId64 ", %s embeddings\n",
           r->name ? r->name : "(no general.name)", hp->model_type, hp->num_hidden_layers, hp->num_hidden_layers == 1 ? "" : "s",
           hp->hidden_size, hp->num_attention_heads, hp->num_key_value_heads, hp->head_dim, hp->intermediate_size,
           hp->vocab_size, hp->max_position_embeddings, hp->tie_word_embeddings ? "tied" : "untied");
    printf("  licence    %s\n", r->license ? r->license : "not stated in the file (general.license)");
    printf("  tensors    ");
    print_type_counts(r);
    printf(" -> model.safetensors, %s%s (%s parameters, %s)\n", dtype < 0 ? "auto: " : "",
           dtype < 0 && r->n_quantized ? "quantized ones as F32" : cp_dtype_name(r->weight_dtype),
           count_text(r->n_params, params, sizeof params), cp_format_bytes((double)r->safetensors_bytes, bytes, sizeof bytes));
    printf("  tokenizer  %s (%s%s%s), %" PRId64 " tokens, %" PRId64 " merges%s, %" PRId64 " added tokens\n",
           !strcmp(r->tk.model, "gpt2") ? "byte-level BPE" : "SentencePiece BPE with byte fallback", r->tk.model,
           r->tk.pre[0] ? ", pre " : "", r->tk.pre, r->tk.n_tokens, r->tk.n_merges,
           r->tk.merges_derived ? " (derived from the scores)" : "", r->tk.n_added);
    printf("  files      config.json, generation_config.json, model.safetensors, special_tokens_map.json, "
           "tokenizer.json, tokenizer_config.json\n");
    if (r->n_quantized)
        printf("precision: %" PRId64 " of %" PRId64 " tensors were block-quantized in the GGUF. Dequantized, they hold exactly the\n"
               "  values the GGUF encodes (bit-identical to ggml's dequantization), not the original model's: the\n"
               "  quantization error stays in the weights, and no conversion can remove it (docs/convert.md).\n",
               r->n_quantized, r->n_tensors);
    else
        printf("precision: no tensor was quantized; the values are the GGUF's.\n");
    if (r->n_rounded)
        printf("precision: %" PRId64 " tensors were then rounded to %s (to nearest even), so they differ from the GGUF's\n"
               "  values by up to half a unit in the last place of %s.\n", r->n_rounded, cp_dtype_name((cp_dtype)dtype),
               cp_dtype_name((cp_dtype)dtype));
}

int cmd_convert(int argc, char **argv) {
    const char *gguf_path = NULL, *out = NULL, *dtype_s = "auto";
    int force = 0;
    const cp_opt options[] = {
        {CP_FLAG("--force", &force)},
        {CP_STRING("--gguf", &gguf_path)},
        {CP_STRING("--out", &out)},
        {CP_STRING("--dtype", &dtype_s)},
        {0},
    };
    const cp_args_spec spec = {.cmd = "convert", .opts = options, .help = help, .unknown = "unknown argument %s",
                               .help_after_unknown = 1};
    int r = cp_args_parse(&spec, argc, argv, 1);
    if (r >= 0) return r;
    if (!gguf_path || !out) {
        fprintf(stderr, "cpeft convert: needs --gguf and --out\n");
        help(stderr);
        return 2;
    }
    int dtype;
    if (!strcmp(dtype_s, "auto")) dtype = -1;
    else if (!strcmp(dtype_s, "f32") || !strcmp(dtype_s, "float32")) dtype = CP_F32;
    else if (!strcmp(dtype_s, "f16") || !strcmp(dtype_s, "float16")) dtype = CP_F16;
    else if (!strcmp(dtype_s, "bf16") || !strcmp(dtype_s, "bfloat16")) dtype = CP_BF16;
    else {
        fprintf(stderr, "cpeft convert: --dtype: '%s' is not one of auto, f32, f16, bf16\n", dtype_s);
        return 2;
    }
    if (cp_path_exists(out) && !force) {
        fprintf(stderr, "cpeft convert: %s already exists (remove it, choose another --out, or pass --force)\n", out);
        return 1;
    }
    cp_gguf g;
    if (cp_gguf_open(&g, gguf_path) != CP_OK) {
        fprintf(stderr, "cpeft convert: %s\n", cp_last_error());
        return 1;
    }
    char *staging = NULL;
    cp_gguf_convert_opts opts = {.dtype = dtype};
    cp_gguf_convert_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = 0;
    if (cp_dir_begin(out, &staging) != CP_OK) {
        rc = 1;
    } else if (cp_gguf_convert(&g, staging, &opts, &rep) != CP_OK) {
        cp_dir_abort(&staging);
        rc = 1;
    } else if (cp_dir_commit(&staging, out) != CP_OK) {
        rc = 1;
    }
    if (rc) fprintf(stderr, "cpeft convert: %s\n", cp_last_error());
    else print_report(&g, out, &rep, dtype);
    cp_gguf_convert_report_free(&rep);
    cp_gguf_close(&g);
    return rc;
}
