/*
 * llama.c — the Llama family: `llama` (LlamaForCausalLM; attention_bias on q/k/v/o_proj, mlp_bias
 * on the MLP), `mistral` (sliding-window attention on every layer, no biases) and `qwen2` (q/k/v
 * biases; sliding-window attention on the layers layer_types names, when use_sliding_window) and
 * `qwen3` (Qwen2's windows, attention_bias on q/k/v/o_proj, head_dim default 128, and q_norm / k_norm:
 * an RMSNorm over each head's head_dim on q and k before RoPE) and `gemma` (RMSNorm by (1 + weight),
 * embeddings × √hidden_size in f32, GeGLU with hidden_act gelu_pytorch_tanh, attention_bias on
 * q/k/v/o_proj, head_dim default 256, tied by default, pad_token_id default 0), `gemma2` (Gemma's
 * norms, embeddings and GeGLU; RMSNorms after the attention and the MLP outputs too, attention scores
 * soft-capped and scaled by query_pre_attn_scalar^-0.5, final logits soft-capped, sliding windows on
 * the layers layer_types names) and `phi3` (fused qkv_proj and gate_up_proj, partial rotary,
 * resid_pdrop dropouts on both sublayer outputs) and `glm` (GlmForCausalLM, transformers' GLM-4 port:
 * q/k/v biases by attention_bias, fused gate_up_proj, partial rotary 0.5 by default in interleaved
 * pairs, head_dim default 128).
 * This file: the module tree and the registry entries; config.json in models/llama_config.c, the
 * embeddings and layers (forward and backward) in models/llama_blocks.c.
 *
 *   x = embed_tokens[ids]                                              (B,T,C)
 *   per layer:  h = rms(x);  q,k,v = proj(h) (GQA: NKV ≤ NH kv heads);  [qwen3: q,k = rms per head];
 *               rotate q,k (RoPE);  [gemma2: s = cap·tanh(s/cap) on the scores before the mask]
 *               x += [rms](o_proj(drop(softmax(q·kᵀ·scale + mask))·v))   (drop: attention_dropout in training)
 *               h = rms(x);  x += [rms](down_proj(act(gate_proj(h)) ⊙ up_proj(h)))   (act: silu; gemma: gelu tanh)
 *               ([rms]: gemma2's post-sublayer norms)
 *   out = rms(x);  logits = lm_head(out) (tied to embed_tokens when the config says so)
 *
 * RMSNorm in f32, rotate-half RoPE with rope_theta and rope_scaling (linear, dynamic, llama3;
 * transformers 5's `rope_parameters` or the older rope_theta + rope_scaling keys), masks as one
 * additive mask (a query that sees nothing attends uniformly to all keys, as eager PyTorch). A
 * sliding layer's query i sees key j when i - j < window (cache columns when generating).
 */
#include "models/llama.h"
#include "core/alloc.h"
#include "models/decoder_head.h"
#include "models/gguf_names.h"
#include "models/model.h"
#include "nn/activation.h"
#include "nn/rmsnorm.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *class_prefix(const cp_model *m) {
    const char *t = m->config.model_type;
    return !strcmp(t, "mistral") ? "Mistral" : !strcmp(t, "qwen2") ? "Qwen2" : !strcmp(t, "qwen3") ? "Qwen3"
         : !strcmp(t, "gemma")   ? "Gemma" : !strcmp(t, "gemma2") ? "Gemma2" : !strcmp(t, "phi3") ? "Phi3"
         : !strcmp(t, "glm")     ? "Glm" : "Llama";
}

static cp_status build(cp_model *m) {
    const cp_model_config *c = &m->config;
    const char *p = class_prefix(m);
    char name[64];
    llama_state *s = cp_calloc(1, sizeof *s, "Llama state");
    if (!s) return CP_ERR;
    m->arch_state = s;
    s->layers = cp_calloc((size_t)c->num_layers, sizeof *s->layers, "Llama layers");
    if (!s->layers) return CP_ERR;
    if (c->head_dim % 2) return cp_error("head_dim %lld must be even for rotary embeddings", (long long)c->head_dim);
    s->rope_interleaved = c->rope_interleaved;
    s->rotary_dim = (int64_t)((double)c->head_dim * c->partial_rotary_factor);
    s->rope = (cp_rope){.dim = s->rotary_dim, .theta = c->rope_theta, .type = (cp_rope_type)c->rope_type, .factor = c->rope_factor,
                        .low_freq_factor = c->rope_low_freq_factor, .high_freq_factor = c->rope_high_freq_factor,
                        .original_max_positions = c->rope_original_max_positions, .max_positions = c->max_positions};
    char lm[64];
    snprintf(lm, sizeof lm, "%sForCausalLM", p);
    if (!(m->root = cp_module_new(NULL, "", cp_decoder_root_class(m, p, lm, name, sizeof name), CP_MOD_CONTAINER))) return CP_ERR;
    snprintf(name, sizeof name, "%sModel", p);
    cp_module *base = cp_module_new(m->root, "model", name, CP_MOD_CONTAINER);
    if (!base || !(s->embed_tokens = cp_module_embedding(base, "embed_tokens", c->vocab_size, c->hidden_size))) return CP_ERR;
    if (c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size) /* nn.Embedding(..., padding_idx=config.pad_token_id) */
        s->embed_tokens->padding_idx = c->pad_token_id;
    const int gemma2 = !strcmp(c->model_type, "gemma2"), gemma = gemma2 || !strcmp(c->model_type, "gemma");
    s->embed_scale = gemma ? (float)sqrt((double)c->hidden_size) : 1.0f;
    if (gemma) {
        snprintf(name, sizeof name, "%sTextScaledWordEmbedding", p);
        cp_free(s->embed_tokens->class_name);
        if (!(s->embed_tokens->class_name = cp_strdup(name))) return CP_ERR;
    }
    cp_module *list = cp_module_new(base, "layers", "ModuleList", CP_MOD_LIST);
    if (!list) return CP_ERR;
    const int64_t C = c->hidden_size, I = c->intermediate_size, qd = c->num_heads * c->head_dim, kvd = c->num_kv_heads * c->head_dim;
    for (int64_t l = 0; l < c->num_layers; l++) {
        llama_layer *ly = &s->layers[l];
        char idx[24], cls[64];
        snprintf(idx, sizeof idx, "%lld", (long long)l);
        snprintf(cls, sizeof cls, "%sDecoderLayer", p);
        cp_module *layer = cp_module_new(list, idx, cls, CP_MOD_CONTAINER);
        snprintf(cls, sizeof cls, "%sAttention", p);
        cp_module *attn = ly->self_attn = layer ? cp_module_new(layer, "self_attn", cls, CP_MOD_CONTAINER) : NULL;
        if (!attn) return CP_ERR;
        if (c->fused_qkv) { /* Phi3Attention: o_proj, then qkv_proj (rows q, k, v) */
            if (!(ly->o_proj = cp_module_linear(attn, "o_proj", qd, C, c->o_proj_bias)) ||
                !(ly->qkv_proj = cp_module_linear(attn, "qkv_proj", C, qd + 2 * kvd, c->qkv_bias)))
                return CP_ERR;
        } else if (!(ly->q_proj = cp_module_linear(attn, "q_proj", C, qd, c->qkv_bias)) ||
                   !(ly->k_proj = cp_module_linear(attn, "k_proj", C, kvd, c->qkv_bias)) ||
                   !(ly->v_proj = cp_module_linear(attn, "v_proj", C, kvd, c->qkv_bias)) ||
                   !(ly->o_proj = cp_module_linear(attn, "o_proj", qd, C, c->o_proj_bias)))
            return CP_ERR;
        snprintf(cls, sizeof cls, "%sRMSNorm", p);
        if (!strcmp(c->model_type, "qwen3") &&
            (!(ly->q_norm = cp_module_rmsnorm(attn, "q_norm", cls, c->head_dim, c->layer_norm_eps)) ||
             !(ly->k_norm = cp_module_rmsnorm(attn, "k_norm", cls, c->head_dim, c->layer_norm_eps))))
            return CP_ERR;
        ly->window = c->layer_is_local && c->layer_is_local[l] ? c->window_size : 0;
        snprintf(cls, sizeof cls, "%sMLP", p);
        cp_module *mlp = cp_module_new(layer, "mlp", cls, CP_MOD_CONTAINER);
        if (!mlp) return CP_ERR;
        if (c->fused_gate_up) { /* Phi3MLP: gate_up_proj (rows gate, then up), down_proj, activation_fn */
            if (!(ly->gate_up_proj = cp_module_linear(mlp, "gate_up_proj", C, 2 * I, c->mlp_bias)) ||
                !(ly->down_proj = cp_module_linear(mlp, "down_proj", I, C, c->mlp_bias)) ||
                !cp_module_activation(mlp, "activation_fn", c->activation))
                return CP_ERR;
        } else if (!(ly->gate_proj = cp_module_linear(mlp, "gate_proj", C, I, c->mlp_bias)) ||
                   !(ly->up_proj = cp_module_linear(mlp, "up_proj", C, I, c->mlp_bias)) ||
                   !(ly->down_proj = cp_module_linear(mlp, "down_proj", I, C, c->mlp_bias)) ||
                   !cp_module_activation(mlp, "act_fn", c->activation))
            return CP_ERR;
        snprintf(cls, sizeof cls, "%sRMSNorm", p);
        cp_module *post_attn;
        if (!(ly->input_layernorm = cp_module_rmsnorm(layer, "input_layernorm", cls, C, c->layer_norm_eps)) ||
            !(post_attn = cp_module_rmsnorm(layer, "post_attention_layernorm", cls, C, c->layer_norm_eps)))
            return CP_ERR;
        if (gemma2) { /* Gemma2DecoderLayer: post_attention_layernorm on the attention output, then the MLP's pair */
            ly->attn_out_norm = post_attn;
            if (!(ly->ff_norm = cp_module_rmsnorm(layer, "pre_feedforward_layernorm", cls, C, c->layer_norm_eps)) ||
                !(ly->ff_out_norm = cp_module_rmsnorm(layer, "post_feedforward_layernorm", cls, C, c->layer_norm_eps)))
                return CP_ERR;
            ly->attn_out_norm->unit_offset = ly->ff_out_norm->unit_offset = 1;
        } else {
            ly->ff_norm = post_attn;
        }
        ly->input_layernorm->unit_offset = ly->ff_norm->unit_offset = gemma;
        if (!strcmp(c->model_type, "phi3") && /* Phi3DecoderLayer: nn.Dropout(resid_pdrop) on each sublayer's output */
            (!(ly->resid_attn_dropout = cp_module_dropout(layer, "resid_attn_dropout", c->resid_dropout)) ||
             !(ly->resid_mlp_dropout = cp_module_dropout(layer, "resid_mlp_dropout", c->resid_dropout))))
            return CP_ERR;
    }
    snprintf(name, sizeof name, "%sRMSNorm", p);
    if (!(s->norm = cp_module_rmsnorm(base, "norm", name, C, c->layer_norm_eps))) return CP_ERR;
    s->norm->unit_offset = gemma;
    snprintf(name, sizeof name, "%sRotaryEmbedding", p);
    if (!cp_module_new(base, "rotary_emb", name, CP_MOD_CONTAINER)) return CP_ERR;
    if (cp_decoder_build_head(m, s->embed_tokens, "score") != CP_OK) return CP_ERR;
    m->stack.embeddings[0] = s->embed_tokens;
    m->stack.final_norm = s->norm;
    return cp_stack_blocks(m, base, "layers");
}

static void free_state(cp_model *m) {
    llama_state *s = m->arch_state;
    cp_free(m->stack.blocks); /* the block list build made (cp_stack_blocks) */
    m->stack.blocks = NULL;
    if (!s) return;
    cp_free(s->layers);
    cp_free(s);
    m->arch_state = NULL;
}

static const char *const ignored_suffixes[] = {".rotary_emb.inv_freq", NULL};

extern const cp_gguf_names cp_llama_gguf_names;                      /* models/llama_gguf.c */
extern const cp_gguf_names cp_qwen2_gguf_names, cp_qwen3_gguf_names; /* models/qwen_gguf.c */
extern const cp_gguf_names cp_gemma_gguf_names;                      /* models/gemma_gguf.c */
extern const cp_gguf_names cp_gemma2_gguf_names;                     /* models/gemma2_gguf.c */
extern const cp_gguf_names cp_phi3_gguf_names;                       /* models/phi3_gguf.c */

#define LLAMA_ARCH(type, cls, gguf)                                                                                    \
    {.model_type = type, .causal_lm_class = cls, .base_prefix = "model", .parse_config = cp_llama_parse_config, .build = build, \
     .free_state = free_state, .block_ops = &cp_llama_block_ops, .rotary_positions = 1, .ignored_suffixes = ignored_suffixes,  \
     .gguf_names = gguf}

/* llama.cpp writes Llama, Mistral, SmolLM and TinyLlama under general.architecture "llama": they
 * convert to model_type "llama" (one owner of the table). */
const cp_arch cp_arch_llama = LLAMA_ARCH("llama", "LlamaForCausalLM", &cp_llama_gguf_names);
const cp_arch cp_arch_mistral = LLAMA_ARCH("mistral", "MistralForCausalLM", NULL);
const cp_arch cp_arch_qwen2 = LLAMA_ARCH("qwen2", "Qwen2ForCausalLM", &cp_qwen2_gguf_names);
const cp_arch cp_arch_qwen3 = LLAMA_ARCH("qwen3", "Qwen3ForCausalLM", &cp_qwen3_gguf_names);
const cp_arch cp_arch_gemma = LLAMA_ARCH("gemma", "GemmaForCausalLM", &cp_gemma_gguf_names);
const cp_arch cp_arch_gemma2 = LLAMA_ARCH("gemma2", "Gemma2ForCausalLM", &cp_gemma2_gguf_names);
const cp_arch cp_arch_phi3 = LLAMA_ARCH("phi3", "Phi3ForCausalLM", &cp_phi3_gguf_names);
const cp_arch cp_arch_glm = LLAMA_ARCH("glm", "GlmForCausalLM", NULL);
