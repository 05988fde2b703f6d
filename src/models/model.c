/*
 * model.c — loading a model directory and running the causal LM.
 *
 * Loading: config.json → cp_model_config → the architecture builds the module tree from shapes →
 * the checkpoint is mapped and every parameter is bound to its tensor by state-dict name. Names
 * are tried as they are and without the base-model prefix ("transformer."), as transformers does
 * for checkpoints saved from the bare base model. Tensors are used in place from the mapping, in
 * their own dtype: F32 ones, and the F16/BF16 matrices (Linear, Conv1D and Embedding weights), which
 * the GEMMs and the embedding gather widen as they read them (cp_param.stored). Vectors (norms,
 * biases) and anything unaligned are widened into owned f32 buffers; a matrix is widened when a
 * method writes it (cp_param_make_writable: merging, a loaded embedding). Everything that does not fit (missing,
 * mis-shaped, unexpected tensors) is reported in one error listing each with its shapes.
 *
 * Forward: the architecture computes the final hidden states; the LM head and loss are shared.
 */
#include "models/model.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "models/hook.h"
#include "kernels/gemm.h"
#include "models/kv_cache.h"
#include "models/head.h"
#include "models/lm_head.h"
#include "models/proj.h"
#include "models/quantize.h"
#include "io/ggml_quant.h"
#include "nn/pooling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 20

void cp_param_tie(cp_param *param, cp_param *target) {
    param->tied_to = target;
    param->data = target->data;
    param->stored = target->stored;
    param->stored_dtype = target->stored_dtype;
    param->stored_transposed = target->stored_transposed;
    param->source_dtype = target->source_dtype;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int has_suffix(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

typedef struct { cp_strbuf missing, shape, unexpected, dtype; int n_missing, n_shape, n_unexpected, n_dtype; } bind_report;

static void report(cp_strbuf *sb, int *count, const char *fmt_item) {
    if (*count < MAX_LISTED) cp_sb_printf(sb, "\n    %s", fmt_item);
    (*count)++;
}

/* The root is the bare base model (an encoder loaded for FEATURE_EXTRACTION): its parameter names
 * carry no base prefix. */
static int root_is_base(const cp_model *m) { return m->task == CP_TASK_FEATURE_EXTRACTION; }

static cp_ckpt_entry *lookup(cp_model *m, const char *name) {
    cp_ckpt_entry *e = cp_checkpoint_find(&m->ckpt, name);
    size_t pl = strlen(m->arch->base_prefix);
    if (!e && strncmp(name, m->arch->base_prefix, pl) == 0 && name[pl] == '.')
        e = cp_checkpoint_find(&m->ckpt, name + pl + 1);
    if (!e && root_is_base(m)) { /* a checkpoint saved from a task class: "bert.embeddings..." */
        char full[512];
        snprintf(full, sizeof full, "%s.%s", m->arch->base_prefix, name);
        e = cp_checkpoint_find(&m->ckpt, full);
    }
    for (const char *const *r = m->arch->renamed; !e && r && r[0]; r += 2) {
        const size_t n = strlen(r[0]);
        char old[512];
        if (strncmp(name, r[0], n) == 0 && snprintf(old, sizeof old, "%s%s", r[1], name + n) < (int)sizeof old)
            e = cp_checkpoint_find(&m->ckpt, old);
    }
    return e;
}

/* Whether p belongs to the task head's own modules (outside the base model): a checkpoint of the
 * bare base model has none of them, and transformers initialises them fresh. */
static int is_head_param(const cp_model *m, const cp_param *p) {
    const cp_module *mods[2] = {m->head.classifier, m->head.dense};
    if (m->task != CP_TASK_SEQ_CLS && m->task != CP_TASK_TOKEN_CLS) return 0;
    const size_t pl = strlen(m->arch->base_prefix);
    for (int i = 0; i < 2; i++)
        if (mods[i] && (mods[i]->weight == p || mods[i]->bias == p) &&
            !(strncmp(mods[i]->path, m->arch->base_prefix, pl) == 0 && mods[i]->path[pl] == '.'))
            return 1;
    return 0;
}

/* Draws the fresh head's parameters as transformers' _init_weights does for a Linear: weight ~
 * normal(0, initializer_range), bias 0; from cpeft's seeded stream (not PyTorch's). */
static void init_fresh_param(cp_param *p, double std, cp_rng *rng) {
    if (p->ndim == 1) { memset(p->data, 0, (size_t)p->numel * sizeof *p->data); return; }
    for (int64_t i = 0; i < p->numel; i++) p->data[i] = (float)(std * cp_rng_normal(rng));
}

cp_status cp_model_init_head(cp_model *m, uint64_t seed) {
    if (!m->n_fresh_head)
        return cp_error("%s: the %s head was loaded from the checkpoint, nothing to initialise", m->dir, cp_task_name(m->task));
    cp_rng rng;
    cp_rng_seed(&rng, seed);
    const cp_module *mods[2] = {m->head.dense, m->head.classifier};
    for (int i = 0; i < 2; i++)
        for (int k = 0; mods[i] && k < 2; k++) {
            cp_param *p = k ? mods[i]->bias : mods[i]->weight;
            if (p && p->owns_data && is_head_param(m, p)) init_fresh_param(p, m->config.initializer_range, &rng);
        }
    return CP_OK;
}

/* Whether checkpoint tensors a and b hold different values (another shape or dtype counts as different). */
static int tensors_differ(const cp_ckpt_entry *a, const cp_ckpt_entry *b) {
    const cp_st_tensor *x = a->tensor, *y = b->tensor;
    if (x->dtype != y->dtype || x->ndim != y->ndim) return 1;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i]) return 1;
    const uint64_t n = x->end - x->begin;
    return n != y->end - y->begin || memcmp(x->data, y->data, (size_t)n) != 0;
}

static cp_status bind_param(cp_model *m, cp_param *p, bind_report *r) {
    char item[512], want[64], got[64];
    cp_ckpt_entry *e = lookup(m, p->name);
    if (p->tied_to && e && m->arch->untie_differing) { /* transformers 5: "... different values, so we will NOT tie them" */
        const cp_ckpt_entry *t = lookup(m, p->tied_to->name);
        if (t && tensors_differ(e, t)) p->tied_to = NULL;
    }
    if (p->tied_to) {
        if (e) e->used = 1; /* a tied copy in the file is ignored, as transformers does */
        return CP_OK;
    }
    shape_str(want, sizeof want, p->ndim, p->shape);
    if (!e && is_head_param(m, p)) { /* a base-model checkpoint: the head starts fresh (cp_model_init_head) */
        if (!(p->data = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name))) return CP_ERR;
        p->owns_data = 1;
        p->source_dtype = CP_F32;
        m->n_fresh_head++;
        return CP_OK;
    }
    if (!e) {
        snprintf(item, sizeof item, "%s: expected %s, not in the checkpoint", p->name, want);
        report(&r->missing, &r->n_missing, item);
        return CP_OK;
    }
    e->used = 1;
    const cp_st_tensor *t = e->tensor;
    int same = t->ndim == p->ndim;
    for (int i = 0; same && i < p->ndim; i++) same = t->shape[i] == p->shape[i];
    if (!same) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        snprintf(item, sizeof item, "%s: expected %s, found %s in %s", p->name, want, got,
                 cp_checkpoint_file_of(&m->ckpt, e));
        report(&r->shape, &r->n_shape, item);
        return CP_OK;
    }
    if (cp_dtype_is_quantized(t->dtype)) { /* a GGUF's block-quantized tensor (convert/gguf_load.c) */
        p->source_dtype = CP_F32;           /* what merging and exporting write it as: its dequantized values */
        if (p->ndim == 2 && cp_gemm_supports(t->dtype)) {
            p->stored = t->data;            /* NT rows of whole blocks, as GGUF stores a Linear weight */
            p->stored_dtype = t->dtype;
            p->data = NULL;
            p->owns_data = 0;
            return CP_OK;
        }
        float *buf = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name);
        if (!buf) return CP_ERR;
        cp_ggml_dequantize_row(cp_ggml_type_of(t->dtype), t->data, buf, p->numel);
        p->data = buf;
        p->owns_data = 1;
        return CP_OK;
    }
    if (!cp_dtype_is_loadable_float(t->dtype)) {
        snprintf(item, sizeof item, "%s: dtype %s in %s (expected F32, F16 or BF16)", p->name,
                 cp_dtype_name(t->dtype), cp_checkpoint_file_of(&m->ckpt, e));
        report(&r->dtype, &r->n_dtype, item);
        return CP_OK;
    }
    p->source_dtype = t->dtype;
    if (t->dtype == CP_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        p->data = (float *)t->data; /* mapped read-only; never written */
        p->owns_data = 0;
        return CP_OK;
    }
    if (p->ndim == 2 && t->dtype != CP_F32 && cp_gemm_supports(t->dtype) && ((uintptr_t)t->data % 2) == 0) {
        p->stored = t->data; /* mapped read-only; widened as the products read it */
        p->stored_dtype = t->dtype;
        p->data = NULL;
        p->owns_data = 0;
        return CP_OK;
    }
    float *buf = cp_alloc_aligned((size_t)p->numel * sizeof(float), p->name);
    if (!buf) return CP_ERR;
    cp_convert_to_f32(buf, t->data, t->dtype, (size_t)p->numel);
    p->data = buf;
    p->owns_data = 1;
    return CP_OK;
}

/* The architecture's (1,V) logits buffer (BART's final_logits_bias) into m->logits_bias and the head:
 * the checkpoint's values, or zeros when it has none (transformers' _keys_to_ignore_on_load_missing). */
static cp_status bind_logits_bias(cp_model *m) {
    if (!m->arch->logits_bias) return CP_OK;
    const int64_t V = m->config.vocab_size;
    if (!(m->logits_bias = cp_alloc_aligned((size_t)V * sizeof(float), m->arch->logits_bias))) return CP_ERR;
    m->head.logits_bias = m->logits_bias;
    cp_ckpt_entry *e = cp_checkpoint_find(&m->ckpt, m->arch->logits_bias);
    if (!e) return CP_OK;
    e->used = 1;
    const cp_st_tensor *t = e->tensor;
    if (t->ndim != 2 || t->shape[0] != 1 || t->shape[1] != V || !cp_dtype_is_loadable_float(t->dtype))
        return cp_error("%s: tensor %s in %s: expected F32, F16 or BF16 of shape [1, %lld] (vocab_size), found %s of %d "
                        "dimensions", m->dir, e->name, cp_checkpoint_file_of(&m->ckpt, e), (long long)V, cp_dtype_name(t->dtype),
                        t->ndim);
    cp_convert_to_f32(m->logits_bias, t->data, t->dtype, (size_t)V);
    return CP_OK;
}

cp_status cp_model_bind_weights(cp_model *m) {
    if (bind_logits_bias(m) != CP_OK) return CP_ERR;
    cp_param **params;
    int n;
    if (cp_module_params(m->root, &params, &n) != CP_OK) return CP_ERR;
    bind_report r;
    memset(&r, 0, sizeof r);
    cp_status st = CP_OK;
    for (int i = 0; i < n && st == CP_OK; i++) st = bind_param(m, params[i], &r);
    /* Tied parameters take their target's data once the target is bound. */
    for (int i = 0; i < n && st == CP_OK; i++)
        if (params[i]->tied_to) cp_param_tie(params[i], params[i]->tied_to);
    cp_free(params);
    if (st == CP_OK && m->n_fresh_head) {
        cp_warn("%s: the checkpoint has no %s head: %s is newly initialised (normal(0, %g), zero bias; seed 0 until "
                "cp_model_init_head)", m->dir, cp_task_name(m->task), m->head.classifier->path, m->config.initializer_range);
        st = cp_model_init_head(m, 0);
    }
    if (st != CP_OK) goto out;

    char item[512], got[64];
    int n_other_head = 0;
    for (int i = 0; i < m->ckpt.n_entries; i++) {
        cp_ckpt_entry *e = &m->ckpt.entries[i];
        if (e->used) continue;
        int ignored = 0;
        for (const char *const *s = m->arch->ignored_suffixes; s && *s && !ignored; s++) ignored = has_suffix(e->name, *s);
        if (ignored) continue;
        shape_str(got, sizeof got, e->tensor->ndim, e->tensor->shape);
        snprintf(item, sizeof item, "%s: %s in %s", e->name, got, cp_checkpoint_file_of(&m->ckpt, e));
        /* an encoder checkpoint saved with another head (a classifier, a pooler, an MLM head) loads into
         * this task's class, as from_pretrained does: those tensors are left out, with a warning */
        if (m->arch->encoder || m->task != CP_TASK_CAUSAL_LM) {
            if (n_other_head++ < 4) cp_warn("%s: not used by %s: %s", m->dir, m->root->class_name, item);
            continue;
        }
        report(&r.unexpected, &r.n_unexpected, item);
    }
    if (n_other_head > 4) cp_warn("%s: ... and %d more tensors not used by %s", m->dir, n_other_head - 4, m->root->class_name);
    if (r.n_missing || r.n_shape || r.n_unexpected || r.n_dtype) {
        cp_strbuf sb;
        cp_sb_init(&sb);
        cp_sb_printf(&sb, "%s: the checkpoint does not match %s as config.json describes it", m->dir,
                     m->root->class_name);
        struct { const char *title; cp_strbuf *list; int n; } parts[] = {
            {"missing tensors", &r.missing, r.n_missing}, {"mis-shaped tensors", &r.shape, r.n_shape},
            {"tensors of an unsupported dtype", &r.dtype, r.n_dtype},
            {"unexpected tensors", &r.unexpected, r.n_unexpected}};
        for (size_t k = 0; k < 4; k++) {
            if (!parts[k].n) continue;
            cp_sb_printf(&sb, "\n  %s (%d):%s", parts[k].title, parts[k].n, parts[k].list->data);
            if (parts[k].n > MAX_LISTED) cp_sb_printf(&sb, "\n    ... and %d more", parts[k].n - MAX_LISTED);
        }
        char *msg = cp_sb_finish(&sb);
        st = cp_error("%s", msg ? msg : "the checkpoint does not match the config");
        cp_free(msg);
    }
out:
    cp_sb_free(&r.missing);
    cp_sb_free(&r.shape);
    cp_sb_free(&r.unexpected);
    cp_sb_free(&r.dtype);
    return st;
}

/* The task a model directory is loaded for: the one asked, or (NULL) the one config.json's
 * architectures[0] names, else the architecture's default. Decoders run CAUSAL_LM, SEQ_CLS and TOKEN_CLS; encoders have
 * no causal LM. */
static cp_status resolve_task(const cp_model *m, const char *task_type, cp_task *out) {
    const cp_arch *a = m->arch;
    const char *cls = m->config.architecture;
    if (task_type) {
        if (cp_task_parse(task_type, out) != CP_OK) return CP_ERR;
    } else if (has_suffix(cls, "ForSequenceClassification")) {
        *out = CP_TASK_SEQ_CLS;
    } else if (has_suffix(cls, "ForTokenClassification")) {
        *out = CP_TASK_TOKEN_CLS;
    } else {
        *out = a->encoder_decoder ? CP_TASK_SEQ_2_SEQ_LM : a->encoder ? CP_TASK_FEATURE_EXTRACTION : CP_TASK_CAUSAL_LM;
    }
    if (a->encoder_decoder && *out != CP_TASK_SEQ_2_SEQ_LM)
        return cp_error("%s: task_type %s is not built yet for %s (SEQ_2_SEQ_LM)", m->dir, cp_task_name(*out),
                        m->config.model_type);
    if (a->encoder_decoder) return CP_OK;
    if (a->encoder && (*out == CP_TASK_CAUSAL_LM || *out == CP_TASK_SEQ_2_SEQ_LM))
        return cp_error("%s: %s is an encoder: it has no %s head (task_type SEQ_CLS, TOKEN_CLS or FEATURE_EXTRACTION)",
                        m->dir, m->config.model_type, cp_task_name(*out));
    if (!a->encoder && *out != CP_TASK_CAUSAL_LM && *out != CP_TASK_SEQ_CLS && *out != CP_TASK_TOKEN_CLS)
        return cp_error("%s: task_type %s is not built yet for %s (CAUSAL_LM, SEQ_CLS, TOKEN_CLS)", m->dir, cp_task_name(*out),
                        m->config.model_type);
    return CP_OK;
}

cp_status cp_model_load(cp_model **out, const char *dir, int flags) { return cp_model_load_task(out, dir, flags, NULL); }

/* A model with nothing loaded yet, named `dir` (a directory or a file) in messages. */
static cp_model *model_new(const char *dir) {
    cp_model *m = cp_calloc(1, sizeof *m, "the model");
    if (!m) return NULL;
    cp_arena_init(&m->arena);
    m->model_dropout = 1; /* as torch's train() turns on every nn.Dropout */
    if (!(m->dir = cp_strdup(dir))) { cp_model_free(m); return NULL; }
    return m;
}

cp_status cp_model_begin_load(cp_model **out, const char *dir) {
    *out = NULL;
    cp_model *m = model_new(dir);
    if (!m) return CP_ERR;
    size_t n = strlen(dir) + 16;
    char *config_path = cp_malloc(n, "a path");
    if (!config_path) { cp_model_free(m); return CP_ERR; }
    snprintf(config_path, n, "%s/config.json", dir);
    cp_status st = cp_config_load(&m->config, config_path);
    cp_free(config_path);
    if (st != CP_OK) { cp_model_free(m); return CP_ERR; }
    m->arch = cp_arch_find(m->config.model_type);
    *out = m;
    return CP_OK;
}

cp_status cp_model_end_load(cp_model *m, int flags, cp_model **out) {
    *out = NULL;
    cp_status st = m->arch->build(m);
    if (st == CP_OK && !(flags & CP_LOAD_CONFIG_ONLY)) {
        if (!m->ckpt.n_files) st = cp_checkpoint_open(&m->ckpt, m->dir); /* else given (cp_model_load_checkpoint) */
        if (st == CP_OK && m->ckpt.n_files == 0)
            st = cp_error("%s: no weights: expected model.safetensors or model.safetensors.index.json", m->dir);
        if (st == CP_OK) st = cp_model_bind_weights(m);
        const cp_dtype q = cp_quantize_dtype_of_flags(flags);
        m->quantize_embeddings = !(flags & CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS);
        if (st == CP_OK && q != CP_F32) st = cp_model_quantize(m, q);
        if (st == CP_OK) m->has_weights = 1;
    }
    if (st != CP_OK) { cp_model_free(m); return CP_ERR; }
    *out = m;
    return CP_OK;
}

cp_status cp_model_load_checkpoint(cp_model **out, const char *name, const char *config_json, cp_checkpoint *ckpt,
                                   int flags, const char *task_type) {
    *out = NULL;
    cp_model *m = model_new(name);
    if (!m) { cp_checkpoint_close(ckpt); return CP_ERR; }
    m->ckpt = *ckpt; /* taken over: freed with the model from here on */
    memset(ckpt, 0, sizeof *ckpt);
    cJSON *root = cJSON_Parse(config_json);
    cp_status st = root ? cp_config_from_json(&m->config, root, name) : cp_error("%s: the config built for it is not JSON", name);
    cJSON_Delete(root);
    if (st == CP_OK) m->arch = cp_arch_find(m->config.model_type);
    if (st == CP_OK) st = resolve_task(m, task_type, &m->task);
    if (st != CP_OK) { cp_model_free(m); return CP_ERR; }
    return cp_model_end_load(m, flags, out);
}

cp_status cp_model_load_task(cp_model **out, const char *dir, int flags, const char *task_type) {
    cp_model *m;
    *out = NULL;
    if (cp_model_begin_load(&m, dir) != CP_OK) return CP_ERR;
    if (resolve_task(m, task_type, &m->task) != CP_OK) { cp_model_free(m); return CP_ERR; }
    return cp_model_end_load(m, flags, out);
}

void cp_model_free(cp_model *m) {
    if (!m) return;
    if (m->peft_free) m->peft_free(m); /* restores modules_to_save originals before the tree goes */
    cp_hook_free_all(m->root);
    if (m->arch && m->arch->free_state) m->arch->free_state(m);
    cp_free(m->stack.blocks);
    cp_free(m->encoder_stack.blocks);
    cp_module_free(m->root); /* frees owned parameter data; mapped data goes with the checkpoint */
    cp_checkpoint_close(&m->ckpt);
    cp_config_free(&m->config);
    cp_arena_free(&m->arena);
    cp_free(m->logits_bias);
    cp_free(m->dir);
    cp_free(m);
}

static cp_status check_batch(const cp_model *m, const cp_batch *b) {
    if (!m->has_weights) return cp_error("%s: the model was loaded without weights", m->dir);
    if (!b || !b->input_ids) return cp_error("batch: input_ids is required");
    if (b->B <= 0 || b->T <= 0) return cp_error("batch: empty batch (B=%lld, T=%lld)", (long long)b->B, (long long)b->T);
    if (m->arch->learned_positions && !b->position_ids && b->T > m->config.max_positions)
        return cp_error("batch: sequence length %lld exceeds the model's %lld positions", (long long)b->T,
                        (long long)m->config.max_positions);
    if (b->bbox && !m->arch->encoder) return cp_error("batch: bbox given, but %s takes no boxes", m->config.model_type);
    if (b->token_type_ids && !m->arch->encoder)
        return cp_error("batch: token_type_ids given, but %s has no token type embeddings", m->config.model_type);
    if (b->attention_mask)
        for (int64_t i = 0; i < b->B * b->T; i++)
            if (b->attention_mask[i] != 0 && b->attention_mask[i] != 1)
                return cp_error("batch: attention_mask holds %lld at position %lld (expected 0 or 1)",
                                (long long)b->attention_mask[i], (long long)i);
    return CP_OK;
}

/* The model's head (models/head.h): the causal LM head on lm_head, or the classification head the
 * architecture built. */
static cp_head model_head(const cp_model *m) {
    if (m->task != CP_TASK_CAUSAL_LM) return m->head;
    cp_head head = {.task = CP_TASK_CAUSAL_LM, .num_labels = m->config.vocab_size, .classifier = m->lm_head, .pad_token_id = -1,
                    .logit_softcap = (float)m->config.final_logit_softcapping};
    return head;
}

/* The batch's labels as the head takes them: class ids (B,T) (CAUSAL_LM, TOKEN_CLS); SEQ_CLS class ids
 * (B), or float values (B) with one label and (B,K) with K. *has is 0 when the batch has none. */
static cp_task_labels batch_labels(const cp_model *m, const cp_batch *b, int *has) {
    cp_task_labels l = {.ids = b->labels, .ndim = 2, .shape = {b->B, b->T}};
    *has = b->labels != NULL;
    if (m->task != CP_TASK_SEQ_CLS) return l;
    const int64_t K = m->head.num_labels;
    if (b->labels) return (cp_task_labels){.ids = b->labels, .ndim = 1, .shape = {b->B}};
    *has = b->label_values != NULL;
    if (K == 1) return (cp_task_labels){.values = b->label_values, .ndim = 1, .shape = {b->B}};
    return (cp_task_labels){.values = b->label_values, .ndim = 2, .shape = {b->B, K}};
}

cp_run cp_model_run(cp_model *m) {
    cp_run run = {.arena = &m->arena, .training = m->training, .model_dropout = m->training && m->model_dropout,
                  .seed = m->dropout_seed, .batch_row0 = m->dropout_row0, .prompt = m->prompt,
                  .quant_act8 = m->quant_act8 && !m->training};
    return run;
}

/* Prefix tuning in cached generation: the n prefix columns of every layer go into the empty cache
 * (PEFT's prepare_inputs_for_generation injects get_prompt() as past_key_values on the first step). */
static cp_status prefix_into_cache(cp_model *m, const cp_run *run, cp_kv_cache *kv, int64_t n) {
    const int64_t B = kv->B, D = kv->kv_dim;
    if (cp_kv_cache_begin(kv, NULL, n) != CP_OK) return CP_ERR;
    cp_arena_mark mark = cp_arena_get_mark(&m->arena);
    float *k = cp_arena_floats(&m->arena, (size_t)(B * n * D), "prefix keys"); // (B,n,D)
    float *v = cp_arena_floats(&m->arena, (size_t)(B * n * D), "prefix values");
    if (!k || !v) return CP_ERR;
    for (int64_t l = 0; l < kv->L; l++) {
        if (run->prompt->ops->kv_prefix(run->prompt, run, l, B, k, v) != CP_OK) return CP_ERR;
        cp_attention_args at = {.B = B, .T = n};
        cp_kv_cache_attend(kv, l, k, D, v, D, &at);
    }
    cp_arena_release(&m->arena, mark);
    cp_kv_cache_advance(kv, n);
    return CP_OK;
}

/* With a prompt hook, the batch as PEFT's PeftModelFor<task> runs it (models/hook.h). Virtual
 * input embeddings: n placeholder ids before every row, the attention mask and causal-LM labels with
 * n leading ones / -100 (SEQ_CLS labels as they are), token_type_ids with n leading zeros, the
 * position ids dropped. A key/value prefix: the batch as it is, the key mask of the
 * n + T columns in the run, given position ids offset by n. Without one, the batch itself.
 * With a cache (generation) the virtual tokens come before the first step's batch only, and the
 * prefix goes into the cache on that step; position ids are dropped / offset at every step. */
cp_status cp_model_prompt_batch(cp_model *m, cp_run *run, const cp_batch *b, cp_kv_cache *kv, cp_batch *out) {
    *out = *b;
    if (!run->prompt) return CP_OK;
    const int64_t n = run->prompt->ops->n_virtual(run->prompt), B = b->B;
    const int first = !kv || kv->len == 0; /* the virtual tokens come with this batch */
    const int64_t T = b->T + (first ? n : 0);
    if (m->arch->learned_positions && (kv ? kv->len : 0) + T > m->config.max_positions)
        return cp_error("batch: %lld virtual tokens and %lld positions exceed the model's %lld positions", (long long)n,
                        (long long)((kv ? kv->len : 0) + T - n), (long long)m->config.max_positions);
    if (run->prompt->ops->begin && run->prompt->ops->begin(run->prompt, run) != CP_OK) return CP_ERR;
    if (run->prompt->ops->kv_prefix) {
        if (b->position_ids) {
            int64_t *pos = cp_arena_alloc(&m->arena, (size_t)(B * b->T) * sizeof *pos, "prompt batch");
            if (!pos) return CP_ERR;
            for (int64_t i = 0; i < B * b->T; i++) pos[i] = b->position_ids[i] + n;
            out->position_ids = pos;
        }
        if (kv) return first ? prefix_into_cache(m, run, kv, n) : CP_OK;
        int64_t *mask = b->attention_mask ? cp_arena_alloc(&m->arena, (size_t)(B * (n + b->T)) * sizeof *mask, "prompt batch") : NULL;
        if (b->attention_mask && !mask) return CP_ERR;
        for (int64_t r = 0; r < B && mask; r++)
            for (int64_t t = 0; t < n + b->T; t++) mask[r * (n + b->T) + t] = t < n ? 1 : b->attention_mask[r * b->T + t - n];
        run->n_prefix = n;
        run->prefix_key_mask = mask;
        return CP_OK;
    }
    out->position_ids = NULL;
    if (!first) return CP_OK;
    /* PeftModelForTokenClassification passes the (B,T) labels as they are against (B,n+T) logits, which
     * transformers' loss refuses; SEQ_CLS labels are per row and stay as they are */
    if (b->labels && m->task == CP_TASK_TOKEN_CLS)
        return cp_error("batch: TOKEN_CLS labels with %lld virtual tokens: PEFT passes the labels (B,T) unpadded against "
                        "logits (B,n+T) and the loss fails (Expected input batch_size (%lld) to match target batch_size (%lld))",
                        (long long)n, (long long)(B * T), (long long)(B * b->T));
    if (b->bbox) return cp_error("batch: bbox with %lld virtual tokens: the boxes cover the batch's tokens, not the prompt's",
                                 (long long)n);
    const int pad_labels = m->task == CP_TASK_CAUSAL_LM;
    int64_t *ids = cp_arena_alloc(&m->arena, (size_t)(B * T) * sizeof *ids, "prompt batch");
    int64_t *mask = b->attention_mask ? cp_arena_alloc(&m->arena, (size_t)(B * T) * sizeof *mask, "prompt batch") : NULL;
    int64_t *labels = b->labels && pad_labels ? cp_arena_alloc(&m->arena, (size_t)(B * T) * sizeof *labels, "prompt batch") : NULL;
    int64_t *types = b->token_type_ids ? cp_arena_alloc(&m->arena, (size_t)(B * T) * sizeof *types, "prompt batch") : NULL;
    if (!ids || (b->attention_mask && !mask) || (b->labels && pad_labels && !labels) || (b->token_type_ids && !types)) return CP_ERR;
    for (int64_t r = 0; r < B; r++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t src = r * b->T + t - n, virt = t < n;
            ids[r * T + t] = virt ? 0 : b->input_ids[src];
            if (mask) mask[r * T + t] = virt ? 1 : b->attention_mask[src];
            if (labels) labels[r * T + t] = virt ? CP_IGNORE_INDEX : b->labels[src];
            if (types) types[r * T + t] = virt ? 0 : b->token_type_ids[src]; /* SEQ_CLS / TOKEN_CLS: zeros before */
        }
    *out = (cp_batch){.B = B, .T = T, .input_ids = ids, .attention_mask = mask, .labels = pad_labels ? labels : b->labels,
                      .token_type_ids = types, .label_values = b->label_values};
    run->n_virtual = n;
    return CP_OK;
}

/* The start every call shares: the checks, a fresh arena, the run context (with the mixed-adapter
 * batch) and the final hidden states (B,T,C) of the batch it runs, which the prompt-learning method
 * makes of the user's (cp_model_prompt_batch) into *pb. `kv`: a cached generation step. NULL on error. */
static float *call_start(cp_model *m, const cp_batch *user_batch, const cp_adapter_mix *mix, cp_run *run, cp_batch *pb,
                         cp_kv_cache *kv, int generating) {
    if (check_batch(m, user_batch) != CP_OK) return NULL;
    if (m->prompt && m->task != CP_TASK_CAUSAL_LM && m->task != CP_TASK_SEQ_CLS && m->task != CP_TASK_TOKEN_CLS) {
        cp_error("%s: a prompt-learning adapter with a %s model is not supported yet", m->dir, cp_task_name(m->task));
        return NULL;
    }
    if (m->prompt && mix) {
        cp_error("%s: a mixed-adapter batch (adapter_names) cannot run a prompt-learning adapter: PEFT's adapter_names is for "
                 "methods that adapt modules", m->dir);
        return NULL;
    }
    if (generating && m->task != CP_TASK_CAUSAL_LM) {
        cp_error("%s: generation needs a causal LM, but the model was loaded for %s", m->dir, cp_task_name(m->task));
        return NULL;
    }
    if (!generating && user_batch->label_values && m->task != CP_TASK_SEQ_CLS) {
        cp_error("batch: label_values are SEQ_CLS targets, but the model was loaded for %s", cp_task_name(m->task));
        return NULL;
    }
    if (!generating && user_batch->labels && user_batch->label_values) {
        cp_error("batch: both labels and label_values given (class ids or float targets, not both)");
        return NULL;
    }
    if (kv && user_batch->B != kv->B) {
        cp_error("batch: %lld rows, but the cache holds %lld", (long long)user_batch->B, (long long)kv->B);
        return NULL;
    }
    cp_arena_reset(&m->arena);
    *run = cp_model_run(m);
    run->batch_rows = user_batch->B;
    run->mix = mix;
    if (cp_model_prompt_batch(m, run, user_batch, kv, pb) != CP_OK) return NULL;
    return cp_arena_floats(&m->arena, (size_t)(pb->B * pb->T * cp_stack_out_width(m, &m->stack)), "final hidden states");
}

/* The public calls that return final hidden states size them by cp_model_hidden_size: with a final_proj
 * (OPT-350m's project_out) they are of another width. */
static cp_status out_width_refused(const cp_model *m, const char *what) {
    return cp_error("%s: %s: the final hidden states are %s's output, of width %lld, not hidden_size %lld: not supported",
                    m->dir, what, m->stack.final_proj->path, (long long)m->stack.final_proj->out_features,
                    (long long)m->config.hidden_size);
}

cp_status cp_model_forward(cp_model *m, const cp_batch *user_batch, cp_outputs *out) {
    if (m->arch && m->arch->encoder_decoder) return cp_seq2seq_forward(m, user_batch, out);
    cp_run run;
    cp_batch pb, *batch = &pb;
    float *final = call_start(m, user_batch, NULL, &run, &pb, NULL, 0); // (B,T,W)
    if (!final) return CP_ERR;
    if (cp_stack_forward(m, &run, batch, NULL, final, out->hidden_states) != CP_OK) return CP_ERR;
    if (m->task == CP_TASK_FEATURE_EXTRACTION) { /* no head: the final hidden states, no loss */
        if (batch->labels || batch->label_values) return cp_error("batch: labels given, but FEATURE_EXTRACTION has no loss");
        if (m->stack.final_proj) return out_width_refused(m, "FEATURE_EXTRACTION");
        if (out->logits) memcpy(out->logits, final, (size_t)(batch->B * batch->T * m->config.hidden_size) * sizeof *final);
        out->loss_tokens = 0;
        out->loss = 0;
        return CP_OK;
    }
    const cp_head head = model_head(m);
    int has_labels;
    const cp_task_labels labels = batch_labels(m, batch, &has_labels);
    cp_head_outputs ho = {.logits = out->logits};
    if (cp_head_forward(&run, &head, final, batch->B, batch->T, batch->input_ids, has_labels ? &labels : NULL, &ho) != CP_OK)
        return CP_ERR;
    out->loss_tokens = ho.n_items;
    out->loss = ho.loss;
    return CP_OK;
}

/* The LM head on the last of T positions of each row: logits (B,V) from final (B,T,W). */
static cp_status last_logits(cp_model *m, const cp_run *run, const float *final, int64_t B, int64_t T, float *logits) {
    const int64_t C = cp_stack_out_width(m, &m->stack);
    float *last = cp_arena_floats(&m->arena, (size_t)(B * C), "last hidden states"); // (B,C)
    if (!last) return CP_ERR;
    for (int64_t b = 0; b < B; b++) memcpy(last + b * C, final + (b * T + T - 1) * C, (size_t)C * sizeof *last);
    if (cp_proj_forward(run, m->lm_head, logits, last, B) != CP_OK) return CP_ERR;
    const cp_logits_post post = {.softcap = (float)m->config.final_logit_softcapping}; /* Gemma 2, as its forward does */
    cp_lm_logits_post(&post, logits, B, m->lm_head->out_features);
    return CP_OK;
}

cp_status cp_model_forward_cached_mix(cp_model *m, const cp_batch *user_batch, const cp_adapter_mix *mix, cp_kv_cache *cache,
                                      float *logits, float *hidden) {
    cp_run run;
    cp_batch pb, *batch = &pb;
    float *final = call_start(m, user_batch, mix, &run, &pb, cache, 1); // (B,T,W)
    if (!final) return CP_ERR;
    if (hidden && m->stack.final_proj) return out_width_refused(m, "the cached forward's hidden states");
    if (cp_kv_cache_begin(cache, batch->attention_mask, batch->T) != CP_OK) return CP_ERR;
    if (cp_stack_forward(m, &run, batch, cache, final, NULL) != CP_OK) return CP_ERR;
    if (hidden) { /* the user's columns (the virtual tokens of the first step left out) */
        const int64_t C = m->config.hidden_size, skip = batch->T - user_batch->T;
        for (int64_t b = 0; b < batch->B; b++)
            memcpy(hidden + b * user_batch->T * C, final + (b * batch->T + skip) * C, (size_t)(user_batch->T * C) * sizeof *hidden);
    }
    if (logits && last_logits(m, &run, final, batch->B, batch->T, logits) != CP_OK) return CP_ERR;
    cp_kv_cache_advance(cache, batch->T);
    return CP_OK;
}

cp_status cp_model_forward_cached(cp_model *m, const cp_batch *batch, cp_kv_cache *cache, float *logits, float *hidden) {
    return cp_model_forward_cached_mix(m, batch, NULL, cache, logits, hidden);
}

cp_status cp_model_forward_last_mix(cp_model *m, const cp_batch *user_batch, const cp_adapter_mix *mix, float *logits) {
    cp_run run;
    cp_batch pb, *batch = &pb;
    float *final = call_start(m, user_batch, mix, &run, &pb, NULL, 1); // (B,T,C)
    if (!final) return CP_ERR;
    if (cp_stack_forward(m, &run, batch, NULL, final, NULL) != CP_OK) return CP_ERR;
    return last_logits(m, &run, final, batch->B, batch->T, logits);
}

cp_status cp_model_forward_last(cp_model *m, const cp_batch *batch, float *logits) {
    return cp_model_forward_last_mix(m, batch, NULL, logits);
}

cp_status cp_model_forward_backward(cp_model *m, const cp_batch *user_batch, double norm, int recompute, double *loss_sum,
                                    int64_t *n_targets) {
    if (m->arch && m->arch->encoder_decoder) return cp_seq2seq_forward_backward(m, user_batch, norm, recompute, loss_sum, n_targets);
    cp_run run;
    cp_batch pb, *batch = &pb;
    float *final = call_start(m, user_batch, NULL, &run, &pb, NULL, 0); // (B,T,C)
    if (!final) return CP_ERR;
    if (!user_batch->labels && !user_batch->label_values) return cp_error("batch: training needs labels");
    if (m->task == CP_TASK_FEATURE_EXTRACTION) return cp_error("%s: FEATURE_EXTRACTION has no loss to train on", m->dir);
    const int64_t N = batch->B * batch->T, C = cp_stack_out_width(m, &m->stack);
    float *d_final = cp_arena_floats(&m->arena, (size_t)(N * C), "final hidden state gradients");
    void *saved = NULL;
    if (!d_final) return CP_ERR;
    if (cp_stack_forward_train(m, &run, batch, recompute, final, &saved) != CP_OK) return CP_ERR;
    const cp_head head = model_head(m);
    int has_labels;
    const cp_task_labels labels = batch_labels(m, batch, &has_labels);
    cp_head_outputs ho = {0};
    if (cp_head_backward(&run, &head, final, batch->B, batch->T, batch->input_ids, &labels, norm, d_final, &ho) != CP_OK)
        return CP_ERR;
    *loss_sum = ho.loss_sum;
    *n_targets = ho.n_items;
    return cp_stack_backward(m, &run, batch, d_final, saved);
}

int64_t cp_model_vocab_size(const cp_model *m) { return m->config.vocab_size; }

void cp_model_set_quant_act8(cp_model *m, int on) { m->quant_act8 = on != 0; }
int64_t cp_model_hidden_size(const cp_model *m) { return m->config.hidden_size; }
int64_t cp_model_num_layers(const cp_model *m) { return m->config.num_layers; }
int64_t cp_model_max_positions(const cp_model *m) { return m->config.max_positions; }
const char *cp_model_type(const cp_model *m) { return m->config.model_type; }
const char *cp_model_task_type(const cp_model *m) { return cp_task_name(m->task); }
int64_t cp_model_num_labels(const cp_model *m) {
    return m->task == CP_TASK_SEQ_CLS || m->task == CP_TASK_TOKEN_CLS ? m->head.num_labels : 0;
}
int64_t cp_model_num_parameters(const cp_model *m) { return cp_module_num_parameters(m->root); }
char *cp_model_repr(const cp_model *m) { return cp_module_repr_with(m->root, cp_hook_repr_wrap, NULL); }

cp_status cp_model_embed(cp_model *m, const cp_batch *batch, cp_embed_pooling pooling, int normalize, float *out) {
    if (!m || !out) return cp_error("cp_model_embed: no model or no output buffer");
    if (pooling != CP_EMBED_MEAN && pooling != CP_EMBED_CLS && pooling != CP_EMBED_LAST)
        return cp_error("cp_model_embed: pooling %d is not one of CP_EMBED_MEAN, _CLS, _LAST", (int)pooling);
    if (m->prompt) return cp_error("%s: embeddings with a prompt-learning adapter are not supported yet", m->dir);
    if (m->stack.final_proj) return out_width_refused(m, "cp_model_embed");
    cp_run run;
    cp_batch pb; /* no prompt method: the user's batch as it is */
    float *final = call_start(m, batch, NULL, &run, &pb, NULL, 0); // (B,T,C)
    if (!final) return CP_ERR;
    if (cp_stack_forward(m, &run, &pb, NULL, final, NULL) != CP_OK) return CP_ERR;
    const cp_pooling_mode mode = pooling == CP_EMBED_CLS ? CP_POOLING_CLS : pooling == CP_EMBED_LAST ? CP_POOLING_LAST
                                                                                                    : CP_POOLING_MEAN;
    cp_pool_sequences(out, final, batch->attention_mask, batch->B, batch->T, m->config.hidden_size, mode); // (B,C)
    if (normalize) cp_l2_normalize_rows(out, batch->B, m->config.hidden_size);
    return CP_OK;
}
