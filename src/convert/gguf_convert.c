/*
 * gguf_convert.c — GGUF (an architecture with a GGUF table) to a Hugging Face checkpoint directory; see
 * gguf_convert.h for what is written and the precision it keeps, internal.h for the parts.
 *
 * Everything is checked before anything is written (hyper-parameters, tensor inventory and types,
 * the tokenizer, built in memory); the CLI writes into a staging directory that it renames into
 * place only when all files are complete.
 */
#include "convert/internal.h"

#include <inttypes.h>
#include <string.h>

#include "core/alloc.h"
#include "io/fsutil.h"

static const char *torch_dtype_name(cp_dtype dt) {
    return dt == CP_F16 ? "float16" : dt == CP_BF16 ? "bfloat16" : "float32";
}

static cp_status write_text(const char *dir, const char *name, const char *text) {
    if (!text) return CP_ERR;
    char *path = cp_path_join(dir, name);
    if (!path) return CP_ERR;
    cp_status st = cp_write_file_atomic(path, text, strlen(text));
    cp_free(path);
    return st;
}

/* Everything that can be checked before a byte is written: hyper-parameters, tensor inventory and
 * types, the tokenizer (built here, written later). */
static cp_status check_all(const cp_gguf *g, cp_gguf_convert_report *rep) {
    if (cp_gguf_hparams_read(g, &rep->hp) || cp_gguf_tokenizer_build(g, rep->hp.max_position_embeddings, &rep->tk))
        return CP_ERR;
    if (rep->tk.n_tokens > rep->hp.vocab_size)
        return cp_error("%s: the tokenizer has %" PRId64 " tokens but the embedding only %" PRId64 " rows", g->path,
                        rep->tk.n_tokens, rep->hp.vocab_size);
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (!cp_convert_ignored_tensor(&rep->hp, g->tensors[i].name) && !cp_ggml_can_dequantize(g->tensors[i].type))
            return cp_error("%s: unsupported tensor type %s in tensor %s", g->path,
                            cp_ggml_type_name(g->tensors[i].type), g->tensors[i].name);
    /* informational only: a missing or mistyped name or licence is no error */
    if (cp_gguf_get_string(g, "general.name", 0, &rep->name)) cp_clear_error();
    if (cp_gguf_get_string(g, "general.license", 0, &rep->license)) cp_clear_error();
    return CP_OK;
}

static cp_status write_all(const cp_gguf *g, const char *dir, int dtype, cp_gguf_convert_report *rep) {
    char *st_path = cp_path_join(dir, "model.safetensors");
    if (!st_path) return CP_ERR;
    cp_status st = cp_convert_write_tensors(g, &rep->hp, st_path, dtype, rep);
    cp_free(st_path);
    if (st) return st;
    char *config = cp_gguf_config_json(&rep->hp, torch_dtype_name(rep->weight_dtype));
    char *gen = cp_gguf_llama_generation_config_json(&rep->hp);
    st = write_text(dir, "config.json", config);
    if (st == CP_OK) st = write_text(dir, "generation_config.json", gen);
    cp_free(config);
    cp_free(gen);
    if (st == CP_OK) st = write_text(dir, "tokenizer.json", rep->tk.tokenizer_json);
    if (st == CP_OK) st = write_text(dir, "tokenizer_config.json", rep->tk.tokenizer_config_json);
    if (st == CP_OK) st = write_text(dir, "special_tokens_map.json", rep->tk.special_tokens_map_json);
    return st;
}

cp_status cp_gguf_convert(const cp_gguf *g, const char *dir, const cp_gguf_convert_opts *opts,
                          cp_gguf_convert_report *report) {
    cp_gguf_convert_report local;
    cp_gguf_convert_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    const int dtype = opts ? opts->dtype : -1;
    if (dtype != -1 && dtype != CP_F32 && dtype != CP_F16 && dtype != CP_BF16)
        return cp_error("unsupported output dtype %s (f32, f16, bf16)", cp_dtype_name((cp_dtype)dtype));
    cp_status st = check_all(g, rep);
    if (st == CP_OK) st = write_all(g, dir, dtype, rep);
    if (st != CP_OK || rep == &local) cp_gguf_convert_report_free(rep);
    return st;
}

void cp_gguf_convert_report_free(cp_gguf_convert_report *report) {
    cp_gguf_tokenizer_free(&report->tk);
    cp_free(report->name);
    cp_free(report->license);
    report->name = report->license = NULL;
}

