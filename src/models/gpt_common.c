/*
 * gpt_common.c — the GPT-2 / GPT-Neo decoder forward and the tree pieces they share.
 *
 *   x = wte[ids] + wpe[pos]                                 (B,T,C)
 *   per block: x += out_proj(attn(ln_1 x)); x += proj(act(fc(ln_2 x)))
 *   out = ln_f(x)
 *
 * Dropouts are identities in eval mode. Activations live in the model's arena.
 */
#include "models/gpt_common.h"
#include "core/alloc.h"
#include "nn/attention.h"
#include "nn/embedding.h"
#include "nn/layernorm.h"
#include "nn/linear.h"

#include <string.h>

cp_module *cp_gpt_build_embeddings(cp_model *m, cp_module *base, cp_gpt_state *s) {
    const cp_model_config *c = &m->config;
    if (!(s->wte = cp_module_embedding(base, "wte", c->vocab_size, c->hidden_size))) return NULL;
    if (!(s->wpe = cp_module_embedding(base, "wpe", c->max_positions, c->hidden_size))) return NULL;
    if (!cp_module_dropout(base, "drop", c->embd_dropout)) return NULL;
    return cp_module_new(base, "h", "ModuleList", CP_MOD_LIST);
}

cp_status cp_gpt_build_head(cp_model *m, cp_module *base, cp_gpt_state *s) {
    const cp_model_config *c = &m->config;
    if (!(s->ln_f = cp_module_layernorm(base, "ln_f", c->hidden_size, c->layer_norm_eps))) return CP_ERR;
    if (!(m->lm_head = cp_module_linear(m->root, "lm_head", c->hidden_size, c->vocab_size, 0))) return CP_ERR;
    if (c->tie_word_embeddings) cp_param_tie(m->lm_head->weight, s->wte->weight);
    m->arch_state = s;
    return CP_OK;
}

cp_status cp_gpt_build_mlp(cp_model *m, cp_module *block, const char *class_name, int conv1d, cp_gpt_layer *layer) {
    const cp_model_config *c = &m->config;
    cp_module *mlp = cp_module_new(block, "mlp", class_name, CP_MOD_CONTAINER);
    if (!mlp) return CP_ERR;
    layer->fc = conv1d ? cp_module_conv1d(mlp, "c_fc", c->hidden_size, c->intermediate_size)
                       : cp_module_linear(mlp, "c_fc", c->hidden_size, c->intermediate_size, 1);
    if (!layer->fc) return CP_ERR;
    layer->proj = conv1d ? cp_module_conv1d(mlp, "c_proj", c->intermediate_size, c->hidden_size)
                         : cp_module_linear(mlp, "c_proj", c->intermediate_size, c->hidden_size, 1);
    if (!layer->proj) return CP_ERR;
    if (!cp_module_activation(mlp, "act", c->activation)) return CP_ERR;
    if (!cp_module_dropout(mlp, "dropout", c->resid_dropout)) return CP_ERR;
    layer->activation = c->activation;
    return CP_OK;
}

void cp_gpt_free_state(cp_model *m) {
    cp_gpt_state *s = m->arch_state;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

static void add_inplace(float *x, const float *y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

cp_status cp_gpt_forward(cp_model *m, const cp_batch *batch, float *out, float *hidden_states) {
    const cp_gpt_state *s = m->arch_state;
    const cp_model_config *c = &m->config;
    const int64_t B = batch->B, T = batch->T, N = B * T, C = c->hidden_size, I = c->intermediate_size;
    const int64_t L = c->num_layers;
    cp_arena *ar = &m->arena;

    float *x = cp_arena_floats(ar, (size_t)(N * C), "residual stream");      // (B,T,C)
    float *h = cp_arena_floats(ar, (size_t)(N * C), "normalised input");     // (B,T,C)
    float *qkv = cp_arena_floats(ar, (size_t)(N * 3 * C), "q, k, v");        // (B,T,3C)
    float *att = cp_arena_floats(ar, (size_t)(N * C), "attention output");   // (B,T,C)
    float *tmp = cp_arena_floats(ar, (size_t)(N * C), "projection output");  // (B,T,C)
    float *fch = cp_arena_floats(ar, (size_t)(N * I), "MLP hidden");         // (B,T,I)
    int64_t *pos = cp_arena_alloc(ar, (size_t)N * sizeof *pos, "position ids");
    if (!x || !h || !qkv || !att || !tmp || !fch || !pos) return CP_ERR;

    /* Embeddings: positions default to 0..T-1 for every row, ignoring padding (transformers' forward). */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) pos[b * T + t] = batch->position_ids ? batch->position_ids[b * T + t] : t;
    if (cp_embedding_forward(s->wte, x, batch->input_ids, N, 0, ar) != CP_OK) return cp_error_context("input_ids");
    if (cp_embedding_forward(s->wpe, x, pos, N, 1, ar) != CP_OK) return cp_error_context("position_ids");

    for (int64_t l = 0; l < L; l++) {
        const cp_gpt_layer *ly = &s->layers[l];
        if (hidden_states) memcpy(hidden_states + l * N * C, x, (size_t)(N * C) * sizeof *x);

        /* Attention: h = ln_1(x); q, k, v; att = softmax(mask(q·kᵀ·scale))·v; x += out_proj(att) */
        cp_layernorm_forward(ly->ln_1, h, NULL, NULL, x, N);
        cp_attention_args a = {.B = B, .T = T, .NH = c->num_heads, .hs = c->head_dim, .scale = ly->attn_scale,
                               .window = ly->window, .empty_row = ly->empty_row, .key_mask = batch->attention_mask, .out = att};
        if (ly->qkv_proj) {
            if (cp_linear_forward(ly->qkv_proj, qkv, h, N, ar) != CP_OK) return CP_ERR;
            a.q = qkv; a.k = qkv + C; a.v = qkv + 2 * C;
            a.q_stride = a.k_stride = a.v_stride = 3 * C;
        } else {
            if (cp_linear_forward(ly->q_proj, qkv, h, N, ar) != CP_OK ||
                cp_linear_forward(ly->k_proj, qkv + N * C, h, N, ar) != CP_OK ||
                cp_linear_forward(ly->v_proj, qkv + 2 * N * C, h, N, ar) != CP_OK)
                return CP_ERR;
            a.q = qkv; a.k = qkv + N * C; a.v = qkv + 2 * N * C;
            a.q_stride = a.k_stride = a.v_stride = C;
        }
        if (cp_attention_forward(&a, ar) != CP_OK) return CP_ERR;
        if (cp_linear_forward(ly->out_proj, tmp, att, N, ar) != CP_OK) return CP_ERR;
        add_inplace(x, tmp, N * C);

        /* MLP: x += proj(act(fc(ln_2(x)))) */
        cp_layernorm_forward(ly->ln_2, h, NULL, NULL, x, N);
        if (cp_linear_forward(ly->fc, fch, h, N, ar) != CP_OK) return CP_ERR;
        cp_activation_forward(ly->activation, fch, fch, N * I);
        if (cp_linear_forward(ly->proj, tmp, fch, N, ar) != CP_OK) return CP_ERR;
        add_inplace(x, tmp, N * C);
    }
    cp_layernorm_forward(s->ln_f, out, NULL, NULL, x, N);
    if (hidden_states) memcpy(hidden_states + L * N * C, out, (size_t)(N * C) * sizeof *out);
    return CP_OK;
}
