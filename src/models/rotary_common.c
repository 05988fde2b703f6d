/*
 * rotary_common.c — the GPT-NeoX / GPT-J / Phi block forward and backward (rotary_common.h), their
 * embedding step (token rows and the RoPE tables of the batch's positions) and the RoPE config keys
 * NeoX and Phi share. Activations live in the model's arena; with a KV cache the blocks run on the
 * new tokens only and attend to the cached (rotated) keys and values.
 */
#include "models/rotary_common.h"
#include "core/alloc.h"
#include "io/json.h"
#include "kernels/vector.h"
#include "models/decoder_head.h"
#include "models/kv_cache.h"
#include "models/proj.h"
#include "nn/activation.h"
#include "nn/attention.h"
#include "nn/layernorm.h"

#include <math.h>
#include <string.h>

/* ---- config ------------------------------------------------------------------------------------ */

static cp_status number(const cJSON *v, const char *where, const char *key, double *out, const char *file) {
    if (!cJSON_IsNumber(v))
        return cp_error("%s: field \"%s%s%s\": expected a number, found %s", file, where ? where : "", where ? "." : "", key,
                        cJSON_IsNull(v) ? "null" : cp_json_type_name(v));
    *out = v->valuedouble;
    return CP_OK;
}

/* dict.key, else root.top_key, else dflt */
static cp_status dict_or_top(const cJSON *dict, const char *field, const char *key, const cJSON *root, const char *top_key,
                             double dflt, double *out, const char *file) {
    const cJSON *v = dict ? cJSON_GetObjectItemCaseSensitive(dict, key) : NULL;
    if (v) return number(v, field, key, out, file);
    v = cJSON_GetObjectItemCaseSensitive(root, top_key);
    if (v) return number(v, NULL, top_key, out, file);
    *out = dflt;
    return CP_OK;
}

cp_status cp_rotary_parse_rope(cp_model_config *cfg, const cJSON *root, const char *file, const char *theta_key,
                               const char *partial_key, double partial_default) {
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const int scaling_set = scaling && !cJSON_IsNull(scaling) && !(cJSON_IsObject(scaling) && !scaling->child);
    const cJSON *dict = scaling_set ? scaling : params && !cJSON_IsNull(params) ? params : NULL;
    const char *field = scaling_set ? "rope_scaling" : "rope_parameters";
    if (dict && !cJSON_IsObject(dict))
        return cp_error("%s: field \"%s\": expected an object, found %s", file, field, cp_json_type_name(dict));
    if (dict && (cJSON_IsObject(cp_json_field(dict, "full_attention")) || cJSON_IsObject(cp_json_field(dict, "sliding_attention"))))
        return cp_error("%s: field \"%s\": parameters per layer type are not supported for %s", file, field, cfg->model_type);
    double partial;
    if (dict_or_top(dict, field, "rope_theta", root, theta_key, 10000.0, &cfg->rope_theta, file) != CP_OK ||
        dict_or_top(dict, field, "partial_rotary_factor", root, partial_key, partial_default, &partial, file) != CP_OK)
        return CP_ERR;
    if (!(cfg->rope_theta > 0) || isinf(cfg->rope_theta))
        return cp_error("%s: field \"rope_theta\" (%s): expected a positive finite number, found %g", file, theta_key, cfg->rope_theta);
    if (!(partial > 0 && partial <= 1))
        return cp_error("%s: field \"partial_rotary_factor\" (%s): expected a number in (0, 1], found %g", file, partial_key, partial);
    cfg->rotary_dim = (int64_t)((double)cfg->head_dim * partial); /* int(head_dim * partial_rotary_factor) */
    if (cfg->rotary_dim < 2 || cfg->rotary_dim % 2)
        return cp_error("%s: partial_rotary_factor %g of head_dim %lld rotates %lld dims: an even number of at least 2 is "
                        "needed", file, partial, (long long)cfg->head_dim, (long long)cfg->rotary_dim);
    cfg->rope_type = CP_ROPE_DEFAULT;
    if (!dict) return CP_OK;
    const char *type;
    if (cp_json_get_string(dict, "rope_type", NULL, 0, &type, file) != CP_OK) return CP_ERR;
    if (!type && cp_json_get_string(dict, "type", NULL, 0, &type, file) != CP_OK) return CP_ERR;
    int t = cp_rope_type_from_name(type);
    if (t < 0)
        return cp_error("%s: field \"%s\": rope type \"%s\" is not supported for %s (supported: default, linear, dynamic, llama3)",
                        file, field, type, cfg->model_type);
    cfg->rope_type = t;
    if (t == CP_ROPE_DEFAULT) return CP_OK;
    if (cp_json_get_double(dict, "factor", 1.0, 1, &cfg->rope_factor, file) != CP_OK) return CP_ERR;
    if (!(cfg->rope_factor > 0)) return cp_error("%s: field \"%s.factor\" must be positive", file, field);
    if (t != CP_ROPE_LLAMA3) return CP_OK;
    if (cp_json_get_double(dict, "low_freq_factor", 1.0, 1, &cfg->rope_low_freq_factor, file) != CP_OK ||
        cp_json_get_double(dict, "high_freq_factor", 4.0, 1, &cfg->rope_high_freq_factor, file) != CP_OK)
        return CP_ERR;
    const char *orig = "original_max_position_embeddings";
    if (cp_json_field(root, orig)) return cp_json_get_int(root, orig, 0, 1, &cfg->rope_original_max_positions, file);
    return cp_json_get_int(dict, orig, cfg->max_positions, 0, &cfg->rope_original_max_positions, file);
}

/* hidden_act (or another key) by its ACT2FN name */
cp_status cp_rotary_read_act(cp_model_config *cfg, const cJSON *root, const char *key, const char *dflt, const char *file) {
    const char *act;
    if (cp_json_get_string(root, key, dflt, 0, &act, file) != CP_OK) return CP_ERR;
    int a = cp_activation_from_name(act);
    if (a < 0)
        return cp_error("%s: field \"%s\": activation \"%s\" is not supported (supported: %s)", file, key, act,
                        cp_activation_supported());
    cfg->activation = (cp_activation)a;
    return CP_OK;
}

/* ---- state ------------------------------------------------------------------------------------- */

cp_rotary_state *cp_rotary_new_state(cp_model *m) {
    const cp_model_config *c = &m->config;
    cp_rotary_state *s = cp_calloc(1, sizeof *s, "rotary decoder state");
    if (!s) return NULL;
    m->arch_state = s;
    if (!(s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "decoder layers"))) return NULL;
    if (c->rotary_dim < 2 || c->rotary_dim % 2 || c->rotary_dim > c->head_dim || c->rotary_dim / 2 > 1024) {
        cp_error("%s: rotary dims %lld must be even and at most head_dim %lld", m->dir, (long long)c->rotary_dim,
                 (long long)c->head_dim);
        return NULL;
    }
    s->rope = (cp_rope){.dim = c->rotary_dim, .theta = c->rope_theta, .type = (cp_rope_type)c->rope_type, .factor = c->rope_factor,
                        .low_freq_factor = c->rope_low_freq_factor, .high_freq_factor = c->rope_high_freq_factor,
                        .original_max_positions = c->rope_original_max_positions, .max_positions = c->max_positions};
    return s;
}

cp_status cp_rotary_finish(cp_model *m, cp_module *base, const char *list) {
    cp_rotary_state *s = m->arch_state;
    m->stack.embeddings[0] = s->embed;
    m->stack.final_norm = s->final_norm;
    return cp_stack_blocks(m, base, list);
}

void cp_rotary_free_state(cp_model *m) {
    cp_rotary_state *s = m->arch_state;
    cp_free(m->stack.blocks); /* the block list build made (cp_stack_blocks) */
    m->stack.blocks = NULL;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

/* ---- blocks ------------------------------------------------------------------------------------ */

typedef struct {
    float *ln1_mean, *ln1_rstd;   // (N)
    float *h1;                    // (N,C) ln_1 output: the input of q, k, v (and of the MLP without ln_2)
    float *qkv;                   // NeoX: (N,3C) query_key_value's output (scratch), else NULL
    float *q_in, *k_in;           // qk_layernorm: (N,NH·hd), (N,NKV·hd) before the norms, else NULL
    float *qn_mean, *qn_rstd, *kn_mean, *kn_rstd; // qk_layernorm: (N·NH), (N·NKV)
    float *q, *k, *v;             // (N,NH·hd), (N,NKV·hd), (N,NKV·hd); q and k after RoPE
    float *stats;                 // (B,NH,T,2) attention row statistics (max, exp-sum) for the fused backward; NULL in inference
    float *att;                   // (N,NH·hd) attention output: the input of out_proj
    float *x_mid;                 // sequential NeoX, training: (N,C) x after the attention residual
    float *ln2_mean, *ln2_rstd;   // (N), with ln_2
    float *h2;                    // (N,C) ln_2 output, with ln_2
    float *fc_pre;                // (N,I) fc_in output (training)
    float *fc_act;                // (N,I) after the activation: the input of fc_out
} rot_acts;

/* The embedding step's state: positions and their RoPE tables (N, rotary_dim/2). */
typedef struct { const float *cos_t, *sin_t; } rot_emb;

static int64_t kv_heads(const cp_model_config *c) { return c->num_kv_heads > 0 ? c->num_kv_heads : c->num_heads; }

static cp_status alloc_acts(const cp_model *m, void *acts, const cp_batch *b, int64_t Tk, int training, cp_arena *ar) {
    const cp_model_config *c = &m->config;
    const cp_rotary_layer *ly = &((const cp_rotary_state *)m->arch_state)->layers[0];
    const size_t N = (size_t)(b->B * b->T), C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t NH = (size_t)c->num_heads, NKV = (size_t)kv_heads(c), qd = NH * (size_t)c->head_dim, kvd = NKV * (size_t)c->head_dim;
    rot_acts *a = acts;
    memset(a, 0, sizeof *a);
    a->ln1_mean = cp_arena_floats(ar, N, "ln_1 statistics");
    a->ln1_rstd = cp_arena_floats(ar, N, "ln_1 statistics");
    a->h1 = cp_arena_floats(ar, N * C, "ln_1 output");
    a->q = cp_arena_floats(ar, N * qd, "queries");
    a->k = cp_arena_floats(ar, N * kvd, "keys");
    a->v = cp_arena_floats(ar, N * kvd, "values");
    a->att = cp_arena_floats(ar, N * qd, "attention output");
    a->fc_act = cp_arena_floats(ar, N * I, "MLP hidden");
    if (!a->ln1_mean || !a->ln1_rstd || !a->h1 || !a->q || !a->k || !a->v || !a->att || !a->fc_act) return CP_ERR;
    if (ly->qkv && !(a->qkv = cp_arena_floats(ar, N * 3 * qd, "query_key_value output"))) return CP_ERR;
    if (ly->q_norm) {
        a->q_in = cp_arena_floats(ar, N * qd, "queries before q_layernorm");
        a->k_in = cp_arena_floats(ar, N * kvd, "keys before k_layernorm");
        a->qn_mean = cp_arena_floats(ar, N * NH, "q_layernorm statistics");
        a->qn_rstd = cp_arena_floats(ar, N * NH, "q_layernorm statistics");
        a->kn_mean = cp_arena_floats(ar, N * NKV, "k_layernorm statistics");
        a->kn_rstd = cp_arena_floats(ar, N * NKV, "k_layernorm statistics");
        if (!a->q_in || !a->k_in || !a->qn_mean || !a->qn_rstd || !a->kn_mean || !a->kn_rstd) return CP_ERR;
    }
    if (ly->ln_2) {
        a->ln2_mean = cp_arena_floats(ar, N, "ln_2 statistics");
        a->ln2_rstd = cp_arena_floats(ar, N, "ln_2 statistics");
        a->h2 = cp_arena_floats(ar, N * C, "ln_2 output");
        if (!a->ln2_mean || !a->ln2_rstd || !a->h2) return CP_ERR;
    }
    if (training) {
        a->stats = cp_arena_floats(ar, (size_t)(b->B * c->num_heads * b->T * 2), "attention row statistics");
        a->fc_pre = cp_arena_floats(ar, N * I, "MLP pre-activation");
        if (!a->stats || !a->fc_pre) return CP_ERR;
        if (ly->ln_2 && !c->parallel_residual && !(a->x_mid = cp_arena_floats(ar, N * C, "attention residual"))) return CP_ERR;
    }
    return CP_OK;
}

static cp_attention_args attn_args(const cp_model *m, const cp_run *run, const cp_rotary_layer *ly, const cp_batch *b,
                                   const rot_acts *a) {
    const cp_model_config *c = &m->config;
    const int64_t NKV = kv_heads(c), hd = c->head_dim;
    cp_dropout drop = ly->attn_drop ? cp_run_dropout(run, ly->attn_drop)
                                    : cp_run_dropout_p(run, ly->attn, "attention_dropout", c->attn_dropout);
    return (cp_attention_args){.B = b->B, .T = b->T, .NH = c->num_heads, .NKV = NKV, .hs = hd, .q = a->q, .k = a->k, .v = a->v,
                               .q_stride = c->num_heads * hd, .k_stride = NKV * hd, .v_stride = NKV * hd,
                               .scale = (float)pow((double)hd, -0.5), .key_mask = b->attention_mask,
                               .empty_row = CP_ATTN_EMPTY_ALL, .out = a->att, .stats = a->stats, .dropout = drop};
}

/* NeoX's fused output (N, NH, 3·hd) — head h's [q | k | v] — to the q, k, v planes (N, NH·hd), and
 * back (the backward gathers dq, dk, dv into the fused gradient). */
static void split_qkv(const float *qkv, float *q, float *k, float *v, int64_t N, int64_t NH, int64_t hd) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++) {
            const float *src = qkv + (n * NH + h) * 3 * hd;
            memcpy(q + (n * NH + h) * hd, src, (size_t)hd * sizeof *q);
            memcpy(k + (n * NH + h) * hd, src + hd, (size_t)hd * sizeof *k);
            memcpy(v + (n * NH + h) * hd, src + 2 * hd, (size_t)hd * sizeof *v);
        }
}

static void merge_qkv(float *dqkv, const float *dq, const float *dk, const float *dv, int64_t N, int64_t NH, int64_t hd) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < NH; h++) {
            float *dst = dqkv + (n * NH + h) * 3 * hd;
            memcpy(dst, dq + (n * NH + h) * hd, (size_t)hd * sizeof *dst);
            memcpy(dst + hd, dk + (n * NH + h) * hd, (size_t)hd * sizeof *dst);
            memcpy(dst + 2 * hd, dv + (n * NH + h) * hd, (size_t)hd * sizeof *dst);
        }
}

/* MLP: out (N,C) = fc_out(act(fc_in(h))), keeping fc_pre / fc_act in a. */
static cp_status mlp_forward(const cp_run *run, const cp_rotary_layer *ly, cp_activation act, float *out, const float *h,
                             rot_acts *a, int64_t N, int64_t I) {
    float *pre = a->fc_pre ? a->fc_pre : a->fc_act;
    if (cp_proj_forward(run, ly->fc_in, pre, h, N) != CP_OK) return CP_ERR;
    cp_activation_forward(act, a->fc_act, pre, N * I);
    return cp_proj_forward(run, ly->fc_out, out, a->fc_act, N);
}

/* One block, x (N,C) in place (rotary_common.h). With a cache `kv` the rotated keys and the values
 * go into its layer l and the queries attend to all its columns. */
static cp_status block_forward_impl(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const rot_emb *e, float *x,
                                    rot_acts *a, cp_kv_cache *kv) {
    const cp_rotary_layer *ly = &((const cp_rotary_state *)m->arch_state)->layers[l];
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size, NH = c->num_heads, NKV = kv_heads(c);
    const int64_t hd = c->head_dim, qd = NH * hd, kvd = NKV * hd;
    float *att_out = cp_arena_floats(run->arena, (size_t)(N * C), "attention block output"); // (N,C)
    float *mlp_out = cp_arena_floats(run->arena, (size_t)(N * C), "MLP output");             // (N,C)
    if (!att_out || !mlp_out) return CP_ERR;
    const int sequential = ly->ln_2 && !c->parallel_residual;

    /* attention: q, k, v = proj(ln_1 x); [q, k = LayerNorm per head]; RoPE; softmax attention; out_proj */
    cp_layernorm_forward(ly->ln_1, a->h1, a->ln1_mean, a->ln1_rstd, x, N);
    if (ly->qkv) {
        if (cp_proj_forward(run, ly->qkv, a->qkv, a->h1, N) != CP_OK) return CP_ERR;
        split_qkv(a->qkv, a->q, a->k, a->v, N, NH, hd);
    } else if (cp_proj_forward(run, ly->q_proj, a->q, a->h1, N) != CP_OK || cp_proj_forward(run, ly->k_proj, a->k, a->h1, N) != CP_OK ||
               cp_proj_forward(run, ly->v_proj, a->v, a->h1, N) != CP_OK)
        return CP_ERR;
    if (ly->q_norm) { /* (N·NH, hd) and (N·NKV, hd) rows: one LayerNorm per head */
        memcpy(a->q_in, a->q, (size_t)(N * qd) * sizeof *a->q);
        memcpy(a->k_in, a->k, (size_t)(N * kvd) * sizeof *a->k);
        cp_layernorm_forward(ly->q_norm, a->q, a->qn_mean, a->qn_rstd, a->q_in, N * NH);
        cp_layernorm_forward(ly->k_norm, a->k, a->kn_mean, a->kn_rstd, a->k_in, N * NKV);
    }
    const cp_rope *rope = &((const cp_rotary_state *)m->arch_state)->rope;
    cp_rope_forward_partial(a->q, N, NH, hd, qd, rope->dim, c->rope_interleaved, e->cos_t, e->sin_t);
    cp_rope_forward_partial(a->k, N, NKV, hd, kvd, rope->dim, c->rope_interleaved, e->cos_t, e->sin_t);
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attend(run, kv, l, &at) != CP_OK || cp_attention_forward(&at, run->arena) != CP_OK) return CP_ERR;
    if (cp_proj_forward(run, ly->out_proj, att_out, a->att, N) != CP_OK) return CP_ERR;
    const cp_dropout ad = cp_run_dropout(run, ly->attn_out_drop), md = cp_run_dropout_call(run, ly->mlp_drop, ly->mlp_call);
    cp_dropout_apply(&ad, att_out, att_out, 0, N, C);

    if (sequential) { /* x += a; x += drop(mlp(ln_2 x)) */
        cp_add_inplace(x, att_out, N * C);
        if (a->x_mid) memcpy(a->x_mid, x, (size_t)(N * C) * sizeof *x);
        cp_layernorm_forward(ly->ln_2, a->h2, a->ln2_mean, a->ln2_rstd, x, N);
        if (mlp_forward(run, ly, c->activation, mlp_out, a->h2, a, N, I) != CP_OK) return CP_ERR;
        cp_dropout_apply(&md, mlp_out, mlp_out, 0, N, C);
        cp_add_inplace(x, mlp_out, N * C);
        return CP_OK;
    }
    /* parallel: x = (a + drop(mlp(ln_2 x or ln_1 x))) + x */
    const float *h = a->h1;
    if (ly->ln_2) {
        cp_layernorm_forward(ly->ln_2, a->h2, a->ln2_mean, a->ln2_rstd, x, N);
        h = a->h2;
    }
    if (mlp_forward(run, ly, c->activation, mlp_out, h, a, N, I) != CP_OK) return CP_ERR;
    cp_dropout_apply(&md, mlp_out, mlp_out, 0, N, C);
    cp_add_inplace(mlp_out, att_out, N * C); /* NeoX: mlp_output + attn_output + hidden_states */
    cp_add_inplace(x, mlp_out, N * C);
    return CP_OK;
}

static cp_status block_forward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, float *x,
                               void *acts, cp_kv_cache *kv) {
    cp_arena_mark mark = cp_arena_get_mark(run->arena);
    cp_status st = block_forward_impl(m, run, l, b, emb, x, acts, kv);
    cp_arena_release(run->arena, mark);
    return st;
}

/* Backward of the MLP from d_out (N,C), the gradient of its (dropped) output: dh (N,C) += d input. */
static cp_status mlp_backward(const cp_run *run, const cp_rotary_layer *ly, cp_activation act, float *dh, const float *d_out,
                              const float *h, const rot_acts *a, float *dI, int64_t N, int64_t I) {
    memset(dI, 0, (size_t)(N * I) * sizeof *dI);
    if (cp_proj_backward(run, ly->fc_out, dI, d_out, a->fc_act, N) != CP_OK) return CP_ERR; // d fc_act
    cp_activation_backward(act, dI, dI, a->fc_pre, N * I);                                  // d fc_pre
    return cp_proj_backward(run, ly->fc_in, dh, dI, h, N);                                  // d h
}

/* Backward of one block: dx (N,C) holds the gradient of the block output and leaves holding that of
 * its input (the residual passes straight through; the norms' backward adds to it). !need_dx skips
 * what only feeds the layers below. */
static cp_status block_backward(cp_model *m, const cp_run *run, int64_t l, const cp_batch *b, const void *emb, const float *x_in,
                                const void *acts, float *dx, int need_dx) {
    const cp_rotary_layer *ly = &((const cp_rotary_state *)m->arch_state)->layers[l];
    const cp_rope *rope = &((const cp_rotary_state *)m->arch_state)->rope;
    const rot_emb *e = emb;
    const rot_acts *a = acts;
    const cp_model_config *c = &m->config;
    const int64_t N = b->B * b->T, C = c->hidden_size, I = c->intermediate_size, NH = c->num_heads, NKV = kv_heads(c);
    const int64_t hd = c->head_dim, qd = NH * hd, kvd = NKV * hd;
    const int sequential = ly->ln_2 && !c->parallel_residual;
    cp_arena *ar = run->arena;
    float *dI = cp_arena_floats(ar, (size_t)(N * (I > 3 * qd ? I : 3 * qd)), "MLP gradients"); // (N,I) / NeoX (N,3C)
    float *d_branch = cp_arena_floats(ar, (size_t)(N * C), "branch gradient");                // (N,C)
    float *dh1 = cp_arena_floats(ar, (size_t)(N * C), "ln_1 output gradient");                // (N,C)
    float *dh2 = cp_arena_floats(ar, (size_t)(N * C), "ln_2 output gradient");                // (N,C)
    float *datt = cp_arena_floats(ar, (size_t)(N * qd), "attention output gradient");         // (N,NH·hd)
    float *dq = cp_arena_floats(ar, (size_t)(N * qd), "query gradients");
    float *dk = cp_arena_floats(ar, (size_t)(N * kvd), "key gradients"), *dv = cp_arena_floats(ar, (size_t)(N * kvd), "value gradients");
    if (!dI || !d_branch || !dh1 || !dh2 || !datt || !dq || !dk || !dv) return CP_ERR;
    const cp_dropout ad = cp_run_dropout(run, ly->attn_out_drop), md = cp_run_dropout_call(run, ly->mlp_drop, ly->mlp_call);
    memset(dh1, 0, (size_t)(N * C) * sizeof *dh1);

    // MLP: in the forward pass this was out = drop(mlp(h)) + (x_mid or x_in + a), h = ln_2(x_mid / x_in) or h1
    cp_dropout_apply(&md, d_branch, dx, 0, N, C); // d mlp output (a copy of dx without dropout)
    if (ly->ln_2) {
        memset(dh2, 0, (size_t)(N * C) * sizeof *dh2);
        if (mlp_backward(run, ly, c->activation, dh2, d_branch, a->h2, a, dI, N, I) != CP_OK) return CP_ERR;
        if (sequential) // dx = d x_mid: the residual plus ln_2's input gradient
            cp_layernorm_backward(ly->ln_2, dx, dh2, a->x_mid, a->ln2_mean, a->ln2_rstd, N);
        /* parallel: ln_2 read x_in; its backward comes after the attention's, which needs dx as it arrived */
    } else if (mlp_backward(run, ly, c->activation, dh1, d_branch, a->h1, a, dI, N, I) != CP_OK) {
        return CP_ERR;
    }

    // attention: x_mid (or the output) gets drop(out_proj(attn(rope(q), rope(k), v))), q, k, v = proj(ln_1(x_in))
    cp_dropout_apply(&ad, d_branch, dx, 0, N, C); // d out_proj's output
    memset(datt, 0, (size_t)(N * qd) * sizeof *datt);
    if (cp_proj_backward(run, ly->out_proj, datt, d_branch, a->att, N) != CP_OK) return CP_ERR; // d att
    cp_attention_args at = attn_args(m, run, ly, b, a);
    if (cp_stack_attention_backward(run, l, &at, datt, dq, dk, dv) != CP_OK) return CP_ERR;
    cp_rope_backward_partial(dq, N, NH, hd, qd, rope->dim, c->rope_interleaved, e->cos_t, e->sin_t);
    cp_rope_backward_partial(dk, N, NKV, hd, kvd, rope->dim, c->rope_interleaved, e->cos_t, e->sin_t);
    if (ly->q_norm) { // q = LayerNorm(q_in) per head: dq, dk become the projections' output gradients
        memset(datt, 0, (size_t)(N * qd) * sizeof *datt);
        cp_layernorm_backward(ly->q_norm, datt, dq, a->q_in, a->qn_mean, a->qn_rstd, N * NH);
        memcpy(dq, datt, (size_t)(N * qd) * sizeof *dq);
        memset(datt, 0, (size_t)(N * kvd) * sizeof *datt);
        cp_layernorm_backward(ly->k_norm, datt, dk, a->k_in, a->kn_mean, a->kn_rstd, N * NKV);
        memcpy(dk, datt, (size_t)(N * kvd) * sizeof *dk);
    }
    if (ly->qkv) {
        merge_qkv(dI, dq, dk, dv, N, NH, hd);
        if (cp_proj_backward(run, ly->qkv, dh1, dI, a->h1, N) != CP_OK) return CP_ERR;
    } else if (cp_proj_backward(run, ly->q_proj, dh1, dq, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->k_proj, dh1, dk, a->h1, N) != CP_OK ||
               cp_proj_backward(run, ly->v_proj, dh1, dv, a->h1, N) != CP_OK)
        return CP_ERR;
    /* the norms that read x_in: ln_1, and ln_2 in the parallel NeoX block */
    if (ly->ln_2 && !sequential && (need_dx || cp_module_trains(ly->ln_2)))
        cp_layernorm_backward(ly->ln_2, need_dx ? dx : NULL, dh2, x_in, a->ln2_mean, a->ln2_rstd, N);
    if (need_dx || cp_module_trains(ly->ln_1))
        cp_layernorm_backward(ly->ln_1, need_dx ? dx : NULL, dh1, x_in, a->ln1_mean, a->ln1_rstd, N);
    return CP_OK;
}

/* ---- embeddings -------------------------------------------------------------------------------- */

/* Token embeddings and the RoPE tables for the batch's positions (default past..past+T-1, ignoring
 * padding). Dynamic scaling looks at the largest position of this batch, as transformers does. */
static cp_status embed(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, float *x, void *emb) {
    const cp_rotary_state *s = m->arch_state;
    rot_emb *e = emb;
    const int64_t N = b->B * b->T, half = s->rope.dim / 2;
    int64_t *pos = cp_arena_alloc(run->arena, (size_t)N * sizeof *pos, "positions");
    float *cos_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope"), *sin_t = cp_arena_floats(run->arena, (size_t)(N * half), "rope");
    if (!pos || !cos_t || !sin_t) return CP_ERR;
    int64_t max_pos = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t < b->T; t++) {
            int64_t p = b->position_ids ? b->position_ids[r * b->T + t] : ea->past + t;
            if (p < 0 || (s->max_table && p >= s->max_table))
                return cp_error("position_ids: position %lld outside [0, %lld)", (long long)p,
                                (long long)(s->max_table ? s->max_table : INT64_MAX));
            pos[r * b->T + t] = p;
            if (p > max_pos) max_pos = p;
        }
    if (cp_embed_tokens(run, s->embed, b, ea, x) != CP_OK) return CP_ERR;
    cp_rope_tables(&s->rope, pos, N, max_pos + 1, cos_t, sin_t);
    *e = (rot_emb){.cos_t = cos_t, .sin_t = sin_t};
    return CP_OK;
}

static cp_status embed_backward(cp_model *m, const cp_run *run, const cp_batch *b, const cp_embed_args *ea, const float *dx,
                                const void *emb) {
    (void)emb;
    return cp_embed_tokens_backward(run, ((const cp_rotary_state *)m->arch_state)->embed, b, ea, dx);
}

const cp_block_ops cp_rotary_block_ops = {.acts_size = sizeof(rot_acts), .embed_size = sizeof(rot_emb),
                                          .alloc_acts = alloc_acts, .embed = embed, .embed_backward = embed_backward,
                                          .block_forward = block_forward, .block_backward = block_backward};
