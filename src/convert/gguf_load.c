/*
 * gguf_load.c — a model and its tokenizer straight from a GGUF file, without a converted directory:
 * the same reading as `cpeft convert` (gguf_hparams.c: the architecture's table, config.json's text;
 * gguf_tensors.c: names, shapes, transforms; gguf_tokenizer.c), handed to models/ as a config text
 * and an in-memory checkpoint (models/model.h: cp_model_load_checkpoint).
 *
 * Each tensor, under its Hugging Face name (llama.cpp's ne = {in, out} is already HF's [out, in]):
 *   F32 / F16 / BF16 without a transform   used in place from the mapping (the binding rules of a
 *                                           directory: F32 as data, 16-bit matrices as stored)
 *   Q8_0 / Q4_0 / Q4_1 / Q4_K / Q5_0 /     kept as stored (no dequantization), CP_Q*: the quantized
 *   Q5_K / Q6_K matrix                      kernels multiply it; the table's row moves (llama's Q/K
 *                                           un-permutation, a fused q/k/v put back per head) move
 *                                           whole rows = whole blocks, into an owned copy
 *   anything with a value transform, an     the converter's values (cp_convert_tensor_values), bit for
 *   position embedding, a vector, or        bit what model.safetensors holds: dequantized to f32
 *   F32/F16/BF16 whose rows move             (a quantized embedding: said in a notice), 16-bit kept
 *   another quantized matrix (Q5_1, Q2_K,   refused by name, unless CP_LOAD_GGUF_DEQUANTIZE: then
 *   Q3_K, IQ*, ...)                         dequantized to f32 like the rest (a notice counts them)
 * A "matrix" is a 2-D tensor other than the token / position embedding: the Linear weights and an
 * untied LM head. The token embedding in one of those types is kept as stored too: its rows are
 * dequantized as they are gathered (cp_param_row_f32) and a tied LM head multiplies it as a matrix. The tokenizer is the converter's tokenizer files, loaded as a directory's.
 */
#include "convert/gguf_load.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert/internal.h"
#include "core/alloc.h"
#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "models/model.h"

/* What the checkpoint's tensors point into: the GGUF mapping and the owned buffers. */
typedef struct {
    cp_gguf g;
    void **bufs;
    int64_t n_bufs;
} gguf_owner;

static void owner_free(void *p) {
    gguf_owner *o = p;
    if (!o) return;
    for (int64_t i = 0; i < o->n_bufs; i++) cp_free(o->bufs[i]);
    cp_free(o->bufs);
    cp_gguf_close(&o->g);
    cp_free(o);
}

static cp_dtype kernel_dtype(int ggml_type) {
    switch (ggml_type) {
    case CP_GGML_Q8_0: return CP_Q8_0;
    case CP_GGML_Q4_0: return CP_Q4_0;
    case CP_GGML_Q4_1: return CP_Q4_1;
    case CP_GGML_Q4_K: return CP_Q4_K;
    case CP_GGML_Q6_K: return CP_Q6_K;
    case CP_GGML_Q5_0: return CP_Q5_0;
    case CP_GGML_Q5_K: return CP_Q5_K;
    default: return CP_F32; /* none */
    }
}

static int is_embedding(const char *gguf_name) {
    return !strncmp(gguf_name, "token_embd.", 11) || !strncmp(gguf_name, "position_embd.", 14);
}

/* Counts for the notice. */
typedef struct {
    int64_t kept_quantized, dequantized_embedding, dequantized_no_kernel, moved;
    char embedding_type[16];
} load_counts;

/* Tensor t as the checkpoint entry `e` (name already set). */
static cp_status tensor_entry(gguf_owner *o, const cp_gguf_hparams *hp, const cp_gguf_tensor *t, int flags,
                              cp_st_tensor *e, load_counts *c) {
    const cp_gguf *g = &o->g;
    int64_t layer;
    const cp_gguf_tensor_name *tn = cp_gguf_names_match(hp->names, t->name, &layer);
    e->ndim = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) e->shape[d] = t->ne[t->n_dims - 1 - d]; /* HF order */
    e->numel = t->numel;
    const int matrix = t->n_dims == 2 && !is_embedding(t->name), moves = cp_convert_moves_rows(hp, tn);
    /* a quantized token embedding of a type with a kernel stays quantized too: rows are dequantized as they are
     * gathered (nn/module.c), and a tied LM head multiplies it as stored */
    const int q_embedding = t->n_dims == 2 && !strncmp(t->name, "token_embd.", 11) && !moves;
    const int plain = t->type == CP_GGML_F32 || t->type == CP_GGML_F16 || t->type == CP_GGML_BF16;
    const cp_dtype kd = kernel_dtype(t->type);
    void *buf = NULL;
    if (plain && !moves && tn->transform != CP_GGUF_MINUS_ONE) {
        e->dtype = t->type == CP_GGML_F32 ? CP_F32 : t->type == CP_GGML_F16 ? CP_F16 : CP_BF16;
        e->data = t->data;
    } else if ((matrix || q_embedding) && kd != CP_F32 && tn->transform != CP_GGUF_MINUS_ONE) {
        e->dtype = kd;
        e->data = t->data;
        if (moves) {
            if (!(buf = cp_malloc((size_t)t->nbytes, t->name))) return CP_ERR;
            if (cp_convert_move_rows(hp, tn, buf, t->data, t->ne[1], (size_t)t->nbytes / (size_t)t->ne[1])) {
                cp_free(buf);
                return cp_error_context("%s: tensor '%s'", g->path, t->name);
            }
            e->data = buf;
            c->moved++;
        }
        c->kept_quantized++;
    } else {
        if (matrix && !plain && !(flags & CP_LOAD_GGUF_DEQUANTIZE)) {
            if (!cp_ggml_can_dequantize(t->type))
                return cp_error("%s: unsupported tensor type %s in tensor %s", g->path, cp_ggml_type_name(t->type), t->name);
            return cp_error("%s: tensor '%s' is %s, which has no kernel (Q8_0, Q4_0, Q4_1, Q4_K, Q5_0, Q5_K and Q6_K "
                            "are multiplied as stored): dequantize it to f32 at load (CP_LOAD_GGUF_DEQUANTIZE; the CLI: CPEFT_GGUF_DEQUANTIZE=1) or "
                            "convert the file (cpeft convert)", g->path, t->name, cp_ggml_type_name(t->type));
        }
        cp_dtype odt;
        if (cp_convert_tensor_values(g, hp, t, -1, &odt, &buf)) return CP_ERR;
        e->dtype = odt;
        e->data = buf;
        if (!plain && matrix) c->dequantized_no_kernel++;
        if (!plain && !matrix && t->n_dims == 2) {
            c->dequantized_embedding++;
            snprintf(c->embedding_type, sizeof c->embedding_type, "%s", cp_ggml_type_name(t->type));
        }
    }
    e->begin = 0;
    e->end = (uint64_t)cp_dtype_nbytes(e->dtype, e->numel);
    if (buf) o->bufs[o->n_bufs++] = buf;
    return CP_OK;
}

/* The checkpoint of every tensor the table maps (hp read and checked). */
static cp_status build_checkpoint(gguf_owner *o, const cp_gguf_hparams *hp, int flags, cp_checkpoint *ck,
                                  load_counts *c) {
    const cp_gguf *g = &o->g;
    cp_safetensors file;
    memset(&file, 0, sizeof file);
    const size_t n = g->n_tensors ? (size_t)g->n_tensors : 1;
    file.path = cp_strdup(g->path);
    file.tensors = cp_calloc(n, sizeof *file.tensors, "the tensor list");
    o->bufs = cp_calloc(n, sizeof *o->bufs, "the tensor buffers");
    cp_status st = file.path && file.tensors && o->bufs ? CP_OK : CP_ERR;
    for (int64_t i = 0; st == CP_OK && i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (cp_convert_ignored_tensor(hp, t->name)) continue;
        char hf[256];
        if ((st = cp_gguf_hf_name(hp->names, t->name, hp->num_hidden_layers, hf, sizeof hf))) {
            st = cp_error_context("%s", g->path);
            break;
        }
        cp_st_tensor *e = &file.tensors[file.n_tensors];
        if (!(e->name = cp_strdup(hf))) { st = CP_ERR; break; }
        file.n_tensors++;
        st = tensor_entry(o, hp, t, flags, e, c);
    }
    if (st != CP_OK) {
        cp_st_close(&file);
        return CP_ERR;
    }
    return cp_checkpoint_adopt(ck, g->path, &file, NULL, NULL);
}

cp_status cp_model_load_gguf(cp_model **out, const char *path, int flags, const char *task_type) {
    *out = NULL;
    gguf_owner *o = cp_calloc(1, sizeof *o, "the GGUF file");
    if (!o) return CP_ERR;
    cp_gguf_hparams hp;
    memset(&hp, 0, sizeof hp);
    if (cp_gguf_open(&o->g, path) || cp_gguf_hparams_read(&o->g, &hp)) { owner_free(o); return CP_ERR; }
    /* torch_dtype: as the converted directory's config.json says (the embedding's dtype there) */
    const cp_gguf_tensor *emb = cp_gguf_find_tensor(&o->g, "token_embd.weight");
    const char *torch_dtype = emb && emb->type == CP_GGML_F16 ? "float16" : emb && emb->type == CP_GGML_BF16 ? "bfloat16" : "float32";
    char *config = cp_gguf_config_json(&hp, torch_dtype);
    if (!config) { owner_free(o); return CP_ERR; }
    cp_checkpoint ck;
    memset(&ck, 0, sizeof ck);
    load_counts c;
    memset(&c, 0, sizeof c);
    if (!(flags & CP_LOAD_CONFIG_ONLY)) {
        if (build_checkpoint(o, &hp, flags, &ck, &c)) { cp_free(config); owner_free(o); return CP_ERR; }
        ck.owner = o;
        ck.owner_free = owner_free;
    }
    cp_status st = cp_model_load_checkpoint(out, path, config, &ck, flags & ~CP_LOAD_GGUF_DEQUANTIZE, task_type);
    cp_free(config);
    if (flags & CP_LOAD_CONFIG_ONLY) owner_free(o);
    if (st != CP_OK) return CP_ERR;
    if (c.dequantized_embedding)
        cp_warn("%s: the %s token embedding is dequantized to f32 at load (embeddings are gathered, not multiplied); "
                "%" PRId64 " quantized matrices kept as stored", path, c.embedding_type, c.kept_quantized);
    if (c.dequantized_no_kernel)
        cp_warn("%s: %" PRId64 " quantized matrices of types without a kernel dequantized to f32 at load",
                path, c.dequantized_no_kernel);
    return CP_OK;
}

cp_status cp_tokenizer_load_gguf(cp_tokenizer **out, const char *path) {
    *out = NULL;
    cp_gguf g;
    cp_gguf_hparams hp;
    cp_gguf_tokenizer tk;
    memset(&hp, 0, sizeof hp);
    memset(&tk, 0, sizeof tk);
    if (cp_gguf_open(&g, path)) return CP_ERR;
    cp_status st = cp_gguf_hparams_read(&g, &hp);
    if (st == CP_OK) st = cp_gguf_tokenizer_build(&g, hp.max_position_embeddings, &tk);
    cp_gguf_close(&g);
    /* the three files as the converted directory holds them, read as a directory's */
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cpeft-gguf-tokenizer-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (st == CP_OK && !mkdtemp(dir)) st = cp_error("%s: cannot make a temporary directory %s for its tokenizer", path, dir);
    const int made = st == CP_OK;
    const char *names[3] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"};
    const char *texts[3] = {tk.tokenizer_json, tk.tokenizer_config_json, tk.special_tokens_map_json};
    for (int i = 0; st == CP_OK && i < 3; i++) {
        char *p = cp_path_join(dir, names[i]);
        st = p && texts[i] ? cp_write_file_atomic(p, texts[i], strlen(texts[i])) : CP_ERR;
        cp_free(p);
    }
    if (st == CP_OK && cp_tokenizer_load_dir(out, dir)) st = cp_error_context("%s", path);
    if (made) cp_remove_tree(dir);
    cp_gguf_tokenizer_free(&tk);
    return st;
}

int cp_path_is_gguf(const char *path) {
    const size_t n = path ? strlen(path) : 0;
    return n >= 5 && !strcmp(path + n - 5, ".gguf");
}
