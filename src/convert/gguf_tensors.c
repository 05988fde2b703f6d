/*
 * gguf_tensors.c — the tensors of a GGUF: checked against the architecture's table
 * (models/gguf_names.h: names and shapes), dequantized (io/gguf.h), the table's transforms undone
 * (Q/K rows back in Hugging Face's rotate-half order, 1 + w norms back to w, a fused q/k/v back in
 * per-head order), renamed, and written as model.safetensors.
 */
#include "convert/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/safetensors.h"
#include "models/gguf_names.h"

int cp_convert_ignored_tensor(const cp_gguf_hparams *hp, const char *gguf_name) {
    return cp_gguf_names_ignored(hp->names, gguf_name) || (hp->dropped_copy && !strcmp(gguf_name, hp->dropped_copy));
}

/* Whether tensor `name` is present and a copy of tensor `of`: same type, shape and bytes. */
static int is_copy(const cp_gguf *g, const char *name, const char *of) {
    const cp_gguf_tensor *t = cp_gguf_find_tensor(g, name), *o = cp_gguf_find_tensor(g, of);
    return t && o && t->type == o->type && t->n_dims == o->n_dims && t->nbytes == o->nbytes &&
           !memcmp(t->ne, o->ne, sizeof t->ne) && !memcmp(t->data, o->data, (size_t)t->nbytes);
}

cp_status cp_gguf_llama_hf_name(const char *gguf_name, int64_t n_layers, char *out, size_t cap) {
    return cp_gguf_hf_name(cp_gguf_names_find("llama"), gguf_name, n_layers, out, cap);
}

cp_status cp_gguf_hf_name(const cp_gguf_names *a, const char *gguf_name, int64_t n_layers, char *out, size_t cap) {
    int64_t layer;
    const cp_gguf_tensor_name *tn = cp_gguf_names_match(a, gguf_name, &layer);
    if (!tn) {
        const char *why = cp_gguf_names_refused(a, gguf_name);
        if (why) return cp_error("tensor '%s': %s", gguf_name, why);
        return cp_error("tensor '%s' has no counterpart in a Hugging Face %s model", gguf_name, a->gguf_arch);
    }
    if (layer >= n_layers)
        return cp_error("tensor '%s': layer %" PRId64 " but the model has %" PRId64 " layers (%s.block_count)",
                        gguf_name, layer, n_layers, a->gguf_arch);
    int n = layer < 0 ? snprintf(out, cap, "%s", tn->hf)
                      : snprintf(out, cap, "%s%" PRId64 ".%s", a->hf_layer_prefix, layer, tn->hf);
    if (n < 0 || (size_t)n >= cap) return cp_error("tensor name too long");
    return CP_OK;
}

/* The size a dimension of the table stands for. */
static int64_t dim_size(const cp_gguf_hparams *hp, cp_gguf_dim d) {
    switch (d) {
    case CP_GGUF_DIM_HEAD: return hp->head_dim;
    case CP_GGUF_DIM_QKV: return (hp->num_attention_heads + 2 * hp->num_key_value_heads) * hp->head_dim;
    case CP_GGUF_DIM_FFN2: return 2 * hp->intermediate_size;
    case CP_GGUF_DIM_HIDDEN: return hp->hidden_size;
    case CP_GGUF_DIM_FFN: return hp->intermediate_size;
    case CP_GGUF_DIM_VOCAB: return hp->vocab_size;
    case CP_GGUF_DIM_Q: return hp->num_attention_heads * hp->head_dim;
    case CP_GGUF_DIM_KV: return hp->num_key_value_heads * hp->head_dim;
    default: return 0;
    }
}

cp_status cp_convert_check_tensors(const cp_gguf *g, cp_gguf_hparams *hp) {
    const cp_gguf_names *a = hp->names;
    char hf[256];
    /* An optional LM head written as a copy of the embedding: dropped (tied). */
    hp->dropped_copy = NULL;
    for (int i = 0; i < a->n_top; i++)
        if (a->top[i].optional && a->top[i].copy_of && is_copy(g, a->top[i].gguf, a->top[i].copy_of))
            hp->dropped_copy = a->top[i].gguf;
    /* Every tensor known, of the right shape. */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (cp_convert_ignored_tensor(hp, t->name)) continue;
        if (cp_gguf_hf_name(a, t->name, hp->num_hidden_layers, hf, sizeof hf))
            return cp_error_context("%s", g->path);
        int64_t layer;
        const cp_gguf_tensor_name *tn = cp_gguf_names_match(a, t->name, &layer);
        const int64_t rows = dim_size(hp, tn->rows), cols = dim_size(hp, tn->cols);
        int ok = cols ? (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows)
                      : (t->n_dims == 1 && t->ne[0] == rows);
        if (!ok) {
            char got[96];
            if (t->n_dims == 1) snprintf(got, sizeof got, "[%" PRId64 "]", t->ne[0]);
            else snprintf(got, sizeof got, "[%" PRId64 ", %" PRId64 "%s]", t->ne[t->n_dims - 1], t->ne[t->n_dims - 2],
                          t->n_dims > 2 ? ", ..." : "");
            if (cols)
                return cp_error("%s: tensor '%s' (%s) has Hugging Face shape %s, expected [%" PRId64 ", %" PRId64 "]",
                                g->path, t->name, hf, got, rows, cols);
            return cp_error("%s: tensor '%s' (%s) has Hugging Face shape %s, expected [%" PRId64 "]", g->path, t->name,
                            hf, got, rows);
        }
    }
    /* Every expected tensor present (the optional ones aside: output.weight is tied when absent). */
    char name[96];
    for (int i = 0; i < a->n_top; i++)
        if (!a->top[i].optional && !cp_gguf_find_tensor(g, a->top[i].gguf))
            return cp_error("%s: tensor '%s' is missing", g->path, a->top[i].gguf);
    for (int64_t l = 0; l < hp->num_hidden_layers; l++)
        for (int i = 0; i < a->n_block; i++) {
            snprintf(name, sizeof name, "blk.%" PRId64 ".%s", l, a->block[i].gguf);
            if (!a->block[i].optional && !cp_gguf_find_tensor(g, name))
                return cp_error("%s: tensor '%s' is missing", g->path, name);
        }
    hp->tie_word_embeddings = 0; /* an optional top-level tensor is the LM head, tied when absent */
    for (int i = 0; i < a->n_top; i++)
        if (a->top[i].optional && (!cp_gguf_find_tensor(g, a->top[i].gguf) || cp_convert_ignored_tensor(hp, a->top[i].gguf)))
            hp->tie_word_embeddings = 1;
    return CP_OK;
}

/* The row moves below on rows of row_bytes bytes (whole quantized blocks move the same way). */
static cp_status unpermute_bytes(void *dst, const void *src, int64_t rows, size_t row_bytes, int64_t n_head) {
    if (n_head <= 0 || rows % (2 * n_head))
        return cp_error("cannot undo the Q/K permutation: %" PRId64 " rows are not a multiple of 2 x %" PRId64 " heads",
                        rows, n_head);
    const int64_t hd = rows / n_head, half = hd / 2;
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++)
                /* GGUF row h*hd + 2j + i holds Hugging Face row h*hd + i*half + j */
                memcpy((char *)dst + (size_t)(h * hd + i * half + j) * row_bytes,
                       (const char *)src + (size_t)(h * hd + 2 * j + i) * row_bytes, row_bytes);
    return CP_OK;
}

static cp_status qkv_to_heads_bytes(void *dst, const void *src, int64_t rows, size_t row_bytes, int64_t n_head) {
    if (n_head <= 0 || rows % (3 * n_head))
        return cp_error("cannot undo the fused q/k/v order: %" PRId64 " rows are not a multiple of 3 x %" PRId64 " heads",
                        rows, n_head);
    const int64_t hd = rows / (3 * n_head);
    for (int64_t p = 0; p < 3; p++)
        for (int64_t h = 0; h < n_head; h++)
            /* GGUF rows p*n_head*hd + h*hd + j hold Hugging Face rows h*3*hd + p*hd + j */
            memcpy((char *)dst + (size_t)(h * 3 * hd + p * hd) * row_bytes,
                   (const char *)src + (size_t)(p * n_head * hd + h * hd) * row_bytes, (size_t)hd * row_bytes);
    return CP_OK;
}

cp_status cp_gguf_unpermute_rows(float *dst, const float *src, int64_t rows, int64_t cols, int64_t n_head) {
    return unpermute_bytes(dst, src, rows, (size_t)cols * sizeof *dst, n_head);
}

cp_status cp_gguf_qkv_to_heads(float *dst, const float *src, int64_t rows, int64_t cols, int64_t n_head) {
    return qkv_to_heads_bytes(dst, src, rows, (size_t)cols * sizeof *dst, n_head);
}

int cp_convert_moves_rows(const cp_gguf_hparams *hp, const cp_gguf_tensor_name *tn) {
    (void)hp;
    return tn->rope_rows != CP_GGUF_ROPE_NONE || tn->transform == CP_GGUF_QKV_HEADS;
}

cp_status cp_convert_move_rows(const cp_gguf_hparams *hp, const cp_gguf_tensor_name *tn, void *dst, const void *src,
                               int64_t rows, size_t row_bytes) {
    if (tn->transform == CP_GGUF_QKV_HEADS) return qkv_to_heads_bytes(dst, src, rows, row_bytes, hp->num_attention_heads);
    const int64_t n_head = tn->rope_rows == CP_GGUF_ROPE_Q_HEADS    ? hp->num_attention_heads
                           : tn->rope_rows == CP_GGUF_ROPE_KV_HEADS ? hp->num_key_value_heads
                                                                    : 0;
    if (n_head) return unpermute_bytes(dst, src, rows, row_bytes, n_head);
    memcpy(dst, src, (size_t)rows * row_bytes);
    return CP_OK;
}

/* Undoes the table's transforms of one tensor's f32 values (ne[0] columns); *vals may be replaced. */
static cp_status undo_transforms(const cp_gguf_hparams *hp, const cp_gguf_tensor *t, const cp_gguf_tensor_name *tn,
                                 float **vals) {
    const int64_t cols = t->n_dims == 1 ? 1 : t->ne[0], rows = t->numel / cols;
    if (tn->transform == CP_GGUF_MINUS_ONE)
        for (int64_t i = 0; i < t->numel; i++) (*vals)[i] -= 1.0f;
    if (!cp_convert_moves_rows(hp, tn)) return CP_OK;
    float *out = cp_malloc((size_t)t->numel * sizeof *out, t->name);
    if (!out) return CP_ERR;
    cp_status st = cp_convert_move_rows(hp, tn, out, *vals, rows, (size_t)cols * sizeof *out);
    if (st) {
        cp_free(out);
        return st;
    }
    cp_free(*vals);
    *vals = out;
    return CP_OK;
}

static cp_dtype out_dtype_for(int src_type, int requested) {
    if (requested >= 0) return (cp_dtype)requested;
    if (src_type == CP_GGML_F16) return CP_F16;
    if (src_type == CP_GGML_BF16) return CP_BF16;
    return CP_F32;
}

/* Whether narrowing values of ggml type `src` to `dst` can round them. */
static int narrowing_rounds(int src, cp_dtype dst) {
    if (dst == CP_F32) return 0;
    if (dst == CP_F16) return src != CP_GGML_F16;
    return src != CP_GGML_BF16;
}

cp_status cp_convert_tensor_values(const cp_gguf *g, const cp_gguf_hparams *hp, const cp_gguf_tensor *t, int dtype,
                                   cp_dtype *odt_out, void **out) {
    const cp_dtype odt = out_dtype_for(t->type, dtype);
    *out = NULL;
    float *vals = cp_malloc((size_t)t->numel * sizeof *vals, t->name);
    if (!vals || cp_gguf_dequantize(g, t, vals)) { cp_free(vals); return CP_ERR; }
    int64_t layer;
    if (undo_transforms(hp, t, cp_gguf_names_match(hp->names, t->name, &layer), &vals)) {
        cp_free(vals);
        return cp_error_context("%s: tensor '%s'", g->path, t->name);
    }
    void *data = vals;
    if (odt != CP_F32) {
        if (!(data = cp_malloc((size_t)t->numel * 2, t->name))) { cp_free(vals); return CP_ERR; }
        cp_convert_from_f32(data, odt, vals, (size_t)t->numel);
        cp_free(vals);
    }
    *odt_out = odt;
    *out = data;
    return CP_OK;
}

cp_status cp_convert_write_tensors(const cp_gguf *g, const cp_gguf_hparams *hp, const char *path, int dtype,
                                   cp_gguf_convert_report *rep) {
    int64_t n = 0;
    cp_st_write_tensor *wt = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *wt, "tensor list");
    char **names = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *names, "tensor names");
    void **bufs = cp_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *bufs, "tensor buffers");
    cp_status st = (wt && names && bufs) ? CP_OK : CP_ERR;
    for (int64_t i = 0; st == CP_OK && i < g->n_tensors; i++) {
        const cp_gguf_tensor *t = &g->tensors[i];
        if (cp_convert_ignored_tensor(hp, t->name)) continue;
        char hf[256];
        if ((st = cp_gguf_hf_name(hp->names, t->name, hp->num_hidden_layers, hf, sizeof hf))) break;
        cp_dtype odt;
        void *data;
        if ((st = cp_convert_tensor_values(g, hp, t, dtype, &odt, &data))) break;
        if (!(names[n] = cp_strdup(hf))) { cp_free(data); st = CP_ERR; break; }
        bufs[n] = data;
        wt[n].name = names[n];
        wt[n].dtype = odt;
        wt[n].data = data;
        wt[n].ndim = t->n_dims;
        for (int d = 0; d < t->n_dims; d++) wt[n].shape[d] = t->ne[t->n_dims - 1 - d]; /* HF order */
        if (rep) {
            rep->n_params += t->numel;
            rep->tensors_by_type[t->type]++;
            rep->n_quantized += cp_ggml_is_quantized(t->type);
            rep->n_rounded += narrowing_rounds(t->type, odt);
            rep->safetensors_bytes += (uint64_t)cp_dtype_nbytes(odt, t->numel);
            if (!strcmp(t->name, "token_embd.weight")) rep->weight_dtype = odt;
        }
        n++;
    }
    if (st == CP_OK) {
        const char *mk[1] = {"format"}, *mv[1] = {"pt"};
        st = cp_st_write(path, wt, (int)n, mk, mv, 1);
    }
    for (int64_t i = 0; i < n; i++) {
        cp_free(names[i]);
        cp_free(bufs[i]);
    }
    cp_free(names);
    cp_free(bufs);
    cp_free(wt);
    if (rep) rep->n_tensors = n;
    return st;
}
