/*
 * prompt_method.c — prompt tuning, p-tuning and prefix tuning as PEFT methods (method.h): their three
 * tables, the hook on the input word embeddings that holds every adapter's prompt encoder
 * (PeftModel.prompt_encoder, prompt_encoder.h) by name, and the model-level hook (models/hook.h
 * cp_prompt_hook) through which the model runs the active one:
 *   prompt tuning, p-tuning   the encoder's output (P, C) is the virtual tokens' input embeddings
 *                             of every row (PeftModelForCausalLM: cat(prompts, inputs_embeds))
 *   prefix tuning             its output (P, L·2·kv) is every layer's P key / value columns before
 *                             the batch's (get_prompt: view (P, 2L, H, D), layer l's key is block
 *                             2l and its value block 2l+1)
 * The encoder runs once per model call (begin), its output shared by every row and layer; the
 * gradients of all rows and layers are gathered and run back through it once (backward_end).
 * Configs: prompt_config.c. See reference/peft.md §4 and §5.5.
 */
#include "peft/prompt_config.h"
#include "peft/prompt_encoder.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "peft/peft_config.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <string.h>

/* ---- the layer on the word embeddings -------------------------------------------------------------- */

typedef struct {
    char *name;
    cp_prompt_kind kind;
    int64_t n_virtual;             /* positions before every row (of the encoder's, on an encoder-decoder): P */
    int64_t layers, kv_dim;        /* prefix tuning: num_layers, token_dim (the key/value width) */
    int64_t nts;                   /* num_transformer_submodules: 2 on an encoder-decoder (SEQ_2_SEQ_LM) */
    cp_prompt_encoder enc;
    uint64_t stream;               /* its dropout stream (the LSTM's) */
} prompt_adapter;

typedef struct {
    cp_hook hook;                  /* first: on the word embedding module */
    cp_prompt_hook prompt;         /* what m->prompt points at while an adapter is active */
    const cp_module *word_embeddings;
    prompt_adapter **adapters;
    int n, cap;
    int active;                    /* index of the active adapter, -1: none */
    int disabled;
} prompt_layer;

/* Each method's hook (how peft_model.c tells the methods' layers apart); the layer is the same. */
static void layer_free(cp_hook *h);
static const cp_hook_ops hook_ops[3] = {
    [CP_PROMPT_TUNING] = {.kind = "prompt_tuning", .free = layer_free},
    [CP_P_TUNING] = {.kind = "p_tuning", .free = layer_free},
    [CP_PREFIX_TUNING] = {.kind = "prefix_tuning", .free = layer_free},
};

static prompt_layer *layer_of(const cp_module *mod) {
    for (int k = 0; k < 3; k++) {
        cp_hook *h = cp_hook_find(mod, &hook_ops[k]);
        if (h) return (prompt_layer *)h;
    }
    return NULL;
}

static prompt_layer *layer_from_prompt(const cp_prompt_hook *h) {
    return (prompt_layer *)((char *)h - offsetof(prompt_layer, prompt));
}

static prompt_adapter *find(const cp_module *mod, const char *name) {
    prompt_layer *l = layer_of(mod);
    for (int i = 0; l && i < l->n; i++)
        if (!strcmp(l->adapters[i]->name, name)) return l->adapters[i];
    return NULL;
}

static void adapter_free(prompt_adapter *a) {
    if (!a) return;
    cp_prompt_encoder_free(&a->enc);
    cp_free(a->name);
    cp_free(a);
}

static void layer_free(cp_hook *h) {
    prompt_layer *l = (prompt_layer *)h;
    for (int i = 0; i < l->n; i++) adapter_free(l->adapters[i]);
    cp_free(l->adapters);
    cp_free(l);
}

/* ---- the model-level hook ------------------------------------------------------------------------ */

/* One model call: the encoder's output (rows, width), what its backward needs, and the gradient
 * of the output gathered from every row and layer. */
typedef struct {
    const prompt_adapter *a;
    const float *out;
    cp_prompt_trace *trace;
    float *d_out;          /* zeroed at the start (the blocks' backward gives their scratch back between layers) */
    int reached;           /* a backward reached it */
} call_state;

static const prompt_adapter *active_adapter(const cp_prompt_hook *h) {
    const prompt_layer *l = layer_from_prompt(h);
    return l->adapters[l->active];
}

static int64_t n_virtual(const cp_prompt_hook *h) { return active_adapter(h)->n_virtual; }

static cp_status begin(const cp_prompt_hook *h, cp_run *run) {
    const prompt_adapter *a = active_adapter(h);
    call_state *s = cp_arena_alloc(run->arena, sizeof *s, "prompt encoder state");
    if (!s) return CP_ERR;
    memset(s, 0, sizeof *s);
    s->a = a;
    run->prompt_state = s;
    const size_t n = (size_t)(a->enc.rows * a->enc.width);
    if (!(s->d_out = cp_arena_floats(run->arena, n, "prompt encoder output gradient"))) return CP_ERR;
    memset(s->d_out, 0, n * sizeof *s->d_out);
    return cp_prompt_encoder_forward(&a->enc, run->arena, run->training, run->seed ^ a->stream, &s->out, &s->trace);
}

static cp_status embeddings(const cp_prompt_hook *h, const cp_run *run, int64_t B, float *out) {
    const call_state *s = run->prompt_state;
    const int64_t n = s->a->n_virtual, C = s->a->enc.width;
    for (int64_t b = 0; b < B; b++) memcpy(out + b * n * C, s->out, (size_t)(n * C) * sizeof *out); // (B,n,C): every row the same
    return CP_OK;
}

static float *gradient(const cp_run *run) {
    call_state *s = run->prompt_state;
    s->reached = 1;
    return s->d_out;
}

static cp_status embeddings_backward(const cp_prompt_hook *h, const cp_run *run, int64_t B, const float *d) {
    float *g = gradient(run);
    const call_state *s = run->prompt_state;
    const int64_t nC = s->a->n_virtual * s->a->enc.width;
    if (!g) return CP_ERR;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < nC; i++) g[i] += d[b * nC + i];
    return CP_OK;
}

/* The output's block (of 2L, kv wide each) holding layer l's keys; its values are the next block.
 * One submodule: block 2l. Two (an encoder-decoder's decoder): get_prompt views the output as 2L
 * blocks, concatenates them with themselves (4L) and splits by 4 into the layers' (self key, self
 * value, cross key, cross value), and EncoderDecoderCache keeps the self pair only (PEFT gives the
 * cross-attention an empty cache), so layer l reads blocks 4l mod 2L and the next: the layers of the
 * second half reuse the first half's blocks, and the odd pairs are never read (their gradient is 0). */
static int64_t key_block(const prompt_adapter *a, int64_t l) {
    return a->nts == 2 ? (4 * l) % (2 * a->layers) : 2 * l;
}

/* Layer l's keys and values (B,n,kv): the key block's kv columns and the next block's of each row of the output. */
static cp_status kv_prefix(const cp_prompt_hook *h, const cp_run *run, int64_t l, int64_t B, float *k, float *v) {
    const call_state *s = run->prompt_state;
    const int64_t n = s->a->n_virtual, D = s->a->kv_dim, W = s->a->enc.width, kb = key_block(s->a, l);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++) {
            memcpy(k + (b * n + i) * D, s->out + i * W + kb * D, (size_t)D * sizeof *k);
            memcpy(v + (b * n + i) * D, s->out + i * W + (kb + 1) * D, (size_t)D * sizeof *v);
        }
    return CP_OK;
}

static cp_status kv_prefix_backward(const cp_prompt_hook *h, const cp_run *run, int64_t l, int64_t B, const float *dk,
                                    const float *dv) {
    float *g = gradient(run);
    const call_state *s = run->prompt_state;
    const int64_t n = s->a->n_virtual, D = s->a->kv_dim, W = s->a->enc.width, kb = key_block(s->a, l);
    if (!g) return CP_ERR;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < D; j++) {
                g[i * W + kb * D + j] += dk[(b * n + i) * D + j];
                g[i * W + (kb + 1) * D + j] += dv[(b * n + i) * D + j];
            }
    return CP_OK;
}

static cp_status backward_end(const cp_prompt_hook *h, const cp_run *run) {
    const call_state *s = run->prompt_state;
    if (!s || !s->reached) return CP_OK;
    return cp_prompt_encoder_backward(&s->a->enc, run->arena, s->trace, s->d_out);
}

static const cp_prompt_ops embeddings_ops = {.kind = "prompt_tuning", .n_virtual = n_virtual, .embeddings = embeddings,
                                             .embeddings_backward = embeddings_backward, .begin = begin,
                                             .backward_end = backward_end};
static const cp_prompt_ops prefix_ops = {.kind = "prefix_tuning", .n_virtual = n_virtual, .kv_prefix = kv_prefix,
                                         .kv_prefix_backward = kv_prefix_backward, .begin = begin, .backward_end = backward_end};

/* ---- config --------------------------------------------------------------------------------------- */

static cp_peft_config *config_new_kind(cp_prompt_kind kind) {
    cp_prompt_config *cfg = cp_prompt_config_new(kind);
    return cfg ? &cfg->base : NULL;
}
static cp_peft_config *new_prompt_tuning(void) { return config_new_kind(CP_PROMPT_TUNING); }
static cp_peft_config *new_p_tuning(void) { return config_new_kind(CP_P_TUNING); }
static cp_peft_config *new_prefix_tuning(void) { return config_new_kind(CP_PREFIX_TUNING); }

static cp_status from_json_kind(cp_prompt_kind kind, const cJSON *root, const char *path, cp_peft_config **out) {
    cp_prompt_config *cfg;
    *out = NULL;
    if (cp_prompt_config_from_json(kind, root, path, &cfg) != CP_OK) return CP_ERR;
    *out = &cfg->base;
    return CP_OK;
}
static cp_status json_prompt_tuning(const cJSON *r, const char *p, cp_peft_config **o) { return from_json_kind(CP_PROMPT_TUNING, r, p, o); }
static cp_status json_p_tuning(const cJSON *r, const char *p, cp_peft_config **o) { return from_json_kind(CP_P_TUNING, r, p, o); }
static cp_status json_prefix_tuning(const cJSON *r, const char *p, cp_peft_config **o) { return from_json_kind(CP_PREFIX_TUNING, r, p, o); }

static char *config_to_json(const cp_peft_config *cfg) { return cp_prompt_config_to_json(CP_CPROMPT(cfg)); }

static cp_peft_config *config_copy(const cp_peft_config *cfg) {
    cp_prompt_config *c = cp_prompt_config_copy(CP_CPROMPT(cfg));
    return c ? &c->base : NULL;
}

static void config_free(cp_peft_config *cfg) { cp_prompt_config_free(CP_PROMPT(cfg)); }

/* ---- injecting ------------------------------------------------------------------------------------ */

static cp_status check(const cp_model *m, const char *name, const cp_peft_config *cfg) {
    char where[160];
    snprintf(where, sizeof where, "adapter \"%s\"", name);
    return cp_prompt_config_validate(CP_CPROMPT(cfg), where);
}

/* PeftModel.word_embeddings (_setup_prompt_encoder): the base model's "embeddings.word_embeddings" if
 * it has one, else the module of the backbone's first parameter with vocab_size rows. */
typedef struct { const cp_model *m; cp_module *found; } find_ctx;

static int find_vocab_rows(cp_module *mod, void *vctx) {
    find_ctx *c = vctx;
    const cp_param *ps[2] = {mod->weight, mod->bias};
    for (int i = 0; i < 2; i++)
        if (ps[i] && ps[i]->shape[0] == c->m->config.vocab_size) { c->found = mod; return 1; }
    return 0;
}

static cp_status targets(cp_model *m, const cp_peft_config *cfg, cp_module ***out, int *n) {
    *out = NULL;
    *n = 0;
    cp_module *emb = cp_module_find(m->root, "embeddings.word_embeddings");
    if (!emb) {
        find_ctx c = {m, NULL};
        const cp_module *backbone = m->root->n_children ? m->root->children[0] : m->root;
        cp_module_visit((cp_module *)backbone, find_vocab_rows, &c);
        emb = c.found;
    }
    if (!emb || emb->kind != CP_MOD_EMBEDDING)
        return cp_error("%s: no word embedding with vocab_size (%lld) rows found for the virtual tokens of %s", m->dir,
                        (long long)m->config.vocab_size, cfg->method->peft_type);
    if (!(*out = cp_malloc(sizeof **out, "the prompt target"))) return CP_ERR;
    (*out)[0] = emb;
    *n = 1;
    return CP_OK;
}

/* The config against the model it runs on: its widths must be the model's (a config written for
 * another model, or with fields set by hand, is refused by name). */
/* Encoders whose transformers class takes no past_key_values (PEFT refuses prefix tuning on them), and
 * those prompt learning is not checked on yet in cpeft. */
static int in_list(const char *t, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(t, *list)) return 1;
    return 0;
}
static const char *const no_past_key_values[] = {"distilbert", "layoutlm", "deberta", "deberta-v2", NULL};
static const char *const untested_encoders[] = {"layoutlm", "deberta", "deberta-v2", NULL};

static cp_status check_model(const cp_model *m, const cp_prompt_config *cfg) {
    const cp_model_config *mc = &m->config;
    const int prefix = cfg->kind == CP_PREFIX_TUNING;
    if (prefix && in_list(mc->model_type, no_past_key_values))
        return cp_error("%s: %s: Model does not support past key values which are required for prefix tuning (transformers' %s "
                        "takes no past_key_values)", m->dir, cfg->method->peft_type, mc->model_type);
    if (in_list(mc->model_type, untested_encoders))
        return cp_error("%s: %s on %s is not supported yet by cpeft", m->dir, cfg->method->peft_type, mc->model_type);
    if (m->task == CP_TASK_FEATURE_EXTRACTION)
        return cp_error("%s: %s for FEATURE_EXTRACTION is not supported yet by cpeft (CAUSAL_LM, SEQ_CLS, TOKEN_CLS)", m->dir,
                        cfg->method->peft_type);
    const int64_t kv_heads = mc->num_kv_heads > 0 ? mc->num_kv_heads : mc->num_heads;
    const struct { const char *field; int64_t have, want; const char *what; } rules[] = {
        {"token_dim", cfg->token_dim, prefix ? kv_heads * mc->head_dim : mc->embedding_size > 0 ? mc->embedding_size : mc->hidden_size,
         prefix ? "the width of the model's keys and values (head_dim x num_key_value_heads)" : "the width of the model's word embeddings"},
        {"num_layers", cfg->num_layers, mc->num_layers, "the model's layers"},
        {"num_attention_heads", cfg->num_attention_heads, prefix ? kv_heads : cfg->num_attention_heads,
         "the model's key/value heads"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
        if ((prefix || i == 0) && rules[i].have != rules[i].want)
            return cp_error("%s: %s is %lld in the %s config, but %s is %lld", m->dir, rules[i].field, (long long)rules[i].have,
                            cfg->method->peft_type, rules[i].what, (long long)rules[i].want);
    const int s2s = m->arch && m->arch->encoder_decoder;
    if (!s2s && cfg->num_transformer_submodules != 1)
        return cp_error("%s: num_transformer_submodules is %lld: 2 is for encoder-decoder models (SEQ_2_SEQ_LM), but %s is not one",
                        m->dir, (long long)cfg->num_transformer_submodules, mc->model_type);
    /* PEFT turns the prefix into an EncoderDecoderCache only with 2 submodules (with 1 the decoder's cross-attention would
     * read the self-attention's prefix) */
    if (s2s && prefix && cfg->num_transformer_submodules != 2)
        return cp_error("%s: num_transformer_submodules is %lld in the PREFIX_TUNING config, but an encoder-decoder (%s) needs 2 "
                        "(the prefix goes to the decoder's self-attention through an EncoderDecoderCache)", m->dir,
                        (long long)cfg->num_transformer_submodules, mc->model_type);
    /* get_prompt makes num_layers caches; a decoder layer past them would find none while the first layer's position
     * bias already covers the prefix (transformers fails there) */
    if (s2s && prefix && mc->num_decoder_layers > cfg->num_layers)
        return cp_error("%s: num_layers is %lld in the PREFIX_TUNING config, but the decoder has %lld layers "
                        "(num_decoder_layers): every decoder layer needs its key/value prefix", m->dir,
                        (long long)cfg->num_layers, (long long)mc->num_decoder_layers);
    return CP_OK;
}

static cp_status resolve(cp_model *m, cp_peft_config *cfg) {
    if (cp_prompt_config_resolve(CP_PROMPT(cfg), m) != CP_OK) return CP_ERR;
    return check_model(m, CP_CPROMPT(cfg));
}

/* Prompt tuning's TEXT init: the ids of tokenizer(text) (special tokens added, as PEFT calls it),
 * repeated or cut to `rows`. */
static cp_status text_ids(const cp_prompt_config *cfg, const cp_module *word_embeddings, int64_t rows, int64_t *ids) {
    cp_tokenizer *tok = NULL;
    if (cp_tokenizer_load_dir(&tok, cfg->tokenizer_name_or_path) != CP_OK)
        return cp_error_context("prompt_tuning_init TEXT: tokenizer_name_or_path \"%s\"", cfg->tokenizer_name_or_path);
    cp_encoding enc;
    memset(&enc, 0, sizeof enc);
    const char *text = cfg->prompt_tuning_init_text;
    cp_status st = cp_tokenizer_encode(tok, text, strlen(text), 1, &enc);
    if (st == CP_OK && enc.n == 0)
        st = cp_error("prompt_tuning_init_text \"%s\" has no tokens (tokenizer %s): TEXT init copies their embeddings", text,
                      cfg->tokenizer_name_or_path);
    for (int64_t r = 0; st == CP_OK && r < rows; r++) {
        ids[r] = enc.ids[r % (int64_t)enc.n];
        if (ids[r] < 0 || ids[r] >= word_embeddings->in_features)
            st = cp_error("prompt_tuning_init_text: token id %lld (tokenizer %s) is outside the model's %lld word embeddings",
                          (long long)ids[r], cfg->tokenizer_name_or_path, (long long)word_embeddings->in_features);
    }
    cp_encoding_free(&enc);
    cp_tokenizer_free(tok);
    return st;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static cp_status attach(cp_module *mod, const char *name, cp_peft_config *base, cp_rng *rng) {
    const cp_prompt_config *cfg = CP_CPROMPT(base);
    if (find(mod, name)) return cp_error("adapter \"%s\" already exists", name);
    prompt_layer *l = layer_of(mod);
    if (l && l->hook.ops != &hook_ops[cfg->kind])
        return cp_error("Cannot combine adapters with different peft types. Found %s and %s.",
                        l->adapters[0]->kind == CP_PROMPT_TUNING ? "PROMPT_TUNING" : l->adapters[0]->kind == CP_P_TUNING ? "P_TUNING" : "PREFIX_TUNING",
                        base->method->peft_type);
    if (!l) {
        if (!(l = cp_calloc(1, sizeof *l, "a prompt-learning layer"))) return CP_ERR;
        l->hook.ops = &hook_ops[cfg->kind];
        l->prompt.ops = cfg->kind == CP_PREFIX_TUNING ? &prefix_ops : &embeddings_ops;
        l->word_embeddings = mod;
        l->active = -1;
        cp_hook_attach(mod, &l->hook);
    }
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 2;
        prompt_adapter **ad = cp_realloc(l->adapters, (size_t)cap * sizeof *ad, "prompt adapters");
        if (!ad) return CP_ERR;
        l->adapters = ad;
        l->cap = cap;
    }
    prompt_adapter *a = cp_calloc(1, sizeof *a, "a prompt adapter");
    if (!a) return CP_ERR;
    *a = (prompt_adapter){.name = cp_strdup(name), .kind = cfg->kind, .layers = cfg->num_layers,
                          .kv_dim = cfg->token_dim, .nts = cfg->num_transformer_submodules, .stream = name_hash(name)};
    /* the encoder's output has P·nts rows (embeddings); PeftModelForSeq2SeqLM puts the first P before the
     * encoder's rows and gives the decoder none, so every method puts P positions before a row */
    a->n_virtual = cfg->num_virtual_tokens;
    const int64_t rows = cp_prompt_config_rows(cfg);
    cp_status st = a->name ? cp_prompt_encoder_build(&a->enc, cfg, name) : CP_ERR;
    int64_t *ids = NULL;
    if (st == CP_OK && !cfg->inference_mode) { /* PEFT initialises only what will train */
        cp_prompt_init init = cfg->kind == CP_PROMPT_TUNING ? cfg->prompt_tuning_init : CP_PROMPT_INIT_RANDOM;
        if (!cp_param_bound(mod->weight)) init = CP_PROMPT_INIT_RANDOM; /* a model loaded without weights (cpeft info) */
        if (init != CP_PROMPT_INIT_RANDOM && !(ids = cp_malloc((size_t)rows * sizeof *ids, "init token ids"))) st = CP_ERR;
        if (st == CP_OK && init == CP_PROMPT_INIT_TEXT) st = text_ids(cfg, mod, rows, ids);
        for (int64_t r = 0; st == CP_OK && init == CP_PROMPT_INIT_SAMPLE_VOCAB && r < rows; r++)
            ids[r] = (int64_t)cp_rng_below(rng, (uint64_t)mod->in_features);
        if (st == CP_OK) st = cp_prompt_encoder_init(&a->enc, cfg, rng, mod->weight, ids);
    }
    cp_free(ids);
    if (st != CP_OK) {
        adapter_free(a);
        if (l->n == 0) { cp_hook_detach(mod, &l->hook); layer_free(&l->hook); }
        return CP_ERR;
    }
    l->adapters[l->n++] = a;
    return CP_OK;
}

static void detach(cp_module *mod, const char *name) {
    prompt_layer *l = layer_of(mod);
    for (int i = 0; l && i < l->n; i++) {
        if (strcmp(l->adapters[i]->name, name)) continue;
        adapter_free(l->adapters[i]);
        memmove(l->adapters + i, l->adapters + i + 1, (size_t)(l->n - i - 1) * sizeof *l->adapters);
        l->n--;
        l->active = -1;
        if (l->n == 0) { cp_hook_detach(mod, &l->hook); layer_free(&l->hook); }
        return;
    }
}

static const char *adapter_at(const cp_module *mod, int i) {
    const prompt_layer *l = layer_of(mod);
    return l && i >= 0 && i < l->n ? l->adapters[i]->name : NULL;
}

static void set_state(cp_module *mod, const char *const *active, int n_active, int disabled) {
    prompt_layer *l = layer_of(mod);
    if (!l) return;
    l->disabled = disabled;
    l->active = -1;
    for (int i = 0; i < n_active && l->active < 0; i++)
        for (int k = 0; k < l->n; k++)
            if (!strcmp(active[i], l->adapters[k]->name)) { l->active = k; break; }
}

static int tensors(const cp_module *mod, const char *name, cp_peft_tensor *out) {
    const prompt_adapter *a = find(mod, name);
    return a ? cp_prompt_encoder_tensors(&a->enc, out, CP_PEFT_MAX_TENSORS) : 0;
}

static cp_status plan(const cp_module *mod, const cp_peft_config *base, cp_peft_tensor *out, int *n) {
    const cp_prompt_config *cfg = CP_CPROMPT(base);
    out[0] = (cp_peft_tensor){.key = "prompt_embeddings", .ndim = 2, .shape = {cp_prompt_config_rows(cfg), cp_prompt_config_width(cfg)},
                              .config_dim = 0, .config_field = "num_virtual_tokens", .config_value = cfg->num_virtual_tokens};
    *n = 1;
    return CP_OK;
}

/* ---- prompt learning's model-level part ------------------------------------------------------------ */

static const cp_prompt_hook *model_hook(const cp_module *mod) {
    prompt_layer *l = layer_of(mod);
    return l && !l->disabled && l->active >= 0 ? &l->prompt : NULL;
}

static cp_param *saved_embeddings(const cp_module *mod, const char *name) {
    const prompt_adapter *a = find(mod, name);
    if (!a) { cp_error("adapter \"%s\" does not exist", name); return NULL; }
    cp_arena ar;
    cp_arena_init(&ar);
    const float *out = NULL;
    cp_param *p = NULL;
    /* get_prompt_embedding_to_save: the encoder on arange(P) (eval: no dropout) */
    if (cp_prompt_encoder_forward(&a->enc, &ar, 0, 0, &out, NULL) == CP_OK &&
        (p = cp_param_new("prompt_embeddings", 2, a->enc.rows, a->enc.width)))
        memcpy(p->data, out, (size_t)p->numel * sizeof *p->data);
    cp_arena_free(&ar);
    return p;
}

static cp_param *loaded_embeddings(const cp_module *mod, const char *name) {
    const prompt_adapter *a = find(mod, name);
    if (!a) { cp_error("adapter \"%s\" does not exist", name); return NULL; }
    if (a->enc.n_linear || a->enc.lstm.params) return NULL; /* an encoder in training form: the file's tensor is its output */
    return a->enc.embedding->weight;
}

static cp_status check_shape(const cp_prompt_config *cfg, int ndim, const int64_t *shape, const char *path) {
    const int64_t rows = cp_prompt_config_rows(cfg), width = cp_prompt_config_width(cfg);
    if (ndim != 2)
        return cp_error("%s: tensor \"prompt_embeddings\" has %d dimensions, expected 2: [%lld, %lld]", path, ndim, (long long)rows,
                        (long long)width);
    if (shape[0] != rows) {
        if (cfg->num_transformer_submodules > 1)
            return cp_error("%s: tensor \"prompt_embeddings\" has %lld rows, but num_virtual_tokens = %lld (x "
                            "num_transformer_submodules %lld) in adapter_config.json makes %lld", path, (long long)shape[0],
                            (long long)cfg->num_virtual_tokens, (long long)cfg->num_transformer_submodules, (long long)rows);
        return cp_error("%s: tensor \"prompt_embeddings\" has %lld rows, but num_virtual_tokens = %lld in adapter_config.json", path,
                        (long long)shape[0], (long long)cfg->num_virtual_tokens);
    }
    if (shape[1] != width) {
        if (cfg->kind == CP_PREFIX_TUNING)
            return cp_error("%s: tensor \"prompt_embeddings\" is %lld wide, but num_layers = %lld and token_dim = %lld in "
                            "adapter_config.json make num_layers x 2 x token_dim = %lld", path, (long long)shape[1],
                            (long long)cfg->num_layers, (long long)cfg->token_dim, (long long)width);
        return cp_error("%s: tensor \"prompt_embeddings\" is %lld wide, but token_dim = %lld in adapter_config.json", path,
                        (long long)shape[1], (long long)cfg->token_dim);
    }
    return CP_OK;
}

static cp_status check_saved(const cp_model *m, const cp_peft_config *base, int ndim, const int64_t *shape, const char *path) {
    cp_prompt_config *cfg = cp_prompt_config_copy(CP_CPROMPT(base)); /* its null fields as the model fills them */
    if (!cfg || cp_prompt_config_resolve(cfg, m) != CP_OK) { cp_prompt_config_free(cfg); return CP_ERR; }
    cp_status st = check_shape(cfg, ndim, shape, path);
    cp_prompt_config_free(cfg);
    return st;
}

static char *repr(const cp_module *mod) {
    const prompt_layer *l = layer_of(mod);
    if (!l) return NULL;
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_append(&sb, "(prompt_encoder): ModuleDict(");
    for (int i = 0; i < l->n; i++) {
        char *enc = cp_prompt_encoder_repr(&l->adapters[i]->enc);
        cp_sb_printf(&sb, "\n  (%s): ", l->adapters[i]->name);
        if (enc) cp_sb_append_indented(&sb, enc, 2);
        cp_free(enc);
    }
    cp_sb_append(&sb, "\n)\n(word_embeddings): ");
    char *emb = cp_module_repr_plain(mod);
    if (emb) cp_sb_append(&sb, emb);
    cp_free(emb);
    return cp_sb_finish(&sb);
}

static int64_t positions(const cp_peft_config *cfg) {
    const cp_prompt_config *c = CP_CPROMPT(cfg);
    const int64_t nts = c->num_transformer_submodules > 0 ? c->num_transformer_submodules : 1;
    return c->kind == CP_PREFIX_TUNING ? c->num_virtual_tokens : c->num_virtual_tokens * nts;
}

static const cp_prompt_learning embeddings_learning = {
    .model_hook = model_hook, .saved_embeddings = saved_embeddings, .loaded_embeddings = loaded_embeddings,
    .check_saved = check_saved, .repr = repr, .positions = positions};

static const cp_prompt_learning prefix_learning = {
    .model_hook = model_hook, .saved_embeddings = saved_embeddings, .loaded_embeddings = loaded_embeddings,
    .check_saved = check_saved, .repr = repr, .positions = positions,
    .no_gradient_checkpointing =
        "PREFIX_TUNING does not work with gradient checkpointing (PEFT refuses it: the prefix is passed to the layers as "
        "past_key_values, a key/value cache, which transformers' gradient checkpointing cannot recompute)"};

#define PROMPT_METHOD(NAME, KIND, TYPE, NEW, JSON, LEARNING)                                                             \
    const cp_peft_method NAME = {                                                                                         \
        .peft_type = TYPE, .tuner_class = NULL, .hook = &hook_ops[KIND], .config_new = NEW, .config_from_json = JSON,     \
        .config_to_json = config_to_json, .config_copy = config_copy, .config_free = config_free, .check = check,          \
        .targets = targets, .resolve = resolve, .attach = attach, .detach = detach, .adapter_at = adapter_at,              \
        .set_state = set_state, .tensors = tensors, .plan = plan, .prompt = &LEARNING}

PROMPT_METHOD(cp_prompt_tuning_method, CP_PROMPT_TUNING, "PROMPT_TUNING", new_prompt_tuning, json_prompt_tuning, embeddings_learning);
PROMPT_METHOD(cp_p_tuning_method, CP_P_TUNING, "P_TUNING", new_p_tuning, json_p_tuning, embeddings_learning);
PROMPT_METHOD(cp_prefix_tuning_method, CP_PREFIX_TUNING, "PREFIX_TUNING", new_prefix_tuning, json_prefix_tuning, prefix_learning);
