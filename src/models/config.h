/*
 * config.h — a model's config.json, read into one struct shared by all architectures.
 *
 * Field names follow transformers' canonical names (hidden_size, num_hidden_layers, ...); each
 * architecture's parser (in its own file under src/models/) maps its aliases (GPT-2's n_embd,
 * n_layer, n_head, n_positions, n_inner; GPT-Neo's num_layers, num_heads) and fills its defaults
 * exactly as its transformers Config class does. Only what cpeft uses is kept.
 */
#ifndef CP_MODELS_CONFIG_H
#define CP_MODELS_CONFIG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "nn/activation.h"
#include "nn/task_loss.h"

#define CP_TOKEN_UNSET (-1)

typedef struct {
    char model_type[32];       /* "gpt_neo", "gpt2", ... */
    char architecture[64];     /* architectures[0], e.g. "GPTNeoForCausalLM" ("" when absent) */
    char torch_dtype[16];      /* "float32", "bfloat16", ... ("" when absent) */

    int64_t vocab_size;
    int64_t hidden_size;       /* C */
    int64_t num_layers;        /* L */
    int64_t num_heads;         /* NH */
    int64_t head_dim;          /* hs: C / NH unless the config gives head_dim */
    int64_t intermediate_size; /* MLP width */
    int64_t max_positions;     /* learned position table size */
    double layer_norm_eps;
    cp_activation activation;
    int tie_word_embeddings;

    int64_t bos_token_id, eos_token_id, pad_token_id; /* CP_TOKEN_UNSET when null */

    double embd_dropout, attn_dropout, resid_dropout;

    /* per-layer attention kind: 1 = local, a sliding window of the window_size most recent keys
     * (the query included); NULL when every layer is global. gpt_neo: attention_types; mistral:
     * every layer when sliding_window is set; qwen2: layer_types ("sliding_attention"). */
    unsigned char *layer_is_local; /* [num_layers] or NULL */
    int64_t window_size;

    /* llama family (llama, mistral, qwen2, qwen3, gemma, gemma2, phi3) */
    int64_t num_kv_heads;      /* grouped-query attention (= num_heads when absent) */
    double rope_theta;
    int rope_type;             /* cp_rope_type (nn/rope.h) */
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_max_positions;
    /* which Linears carry a bias: llama's attention_bias gives q/k/v and o_proj one, mlp_bias the
     * MLP; qwen2 always has q/k/v biases and nothing else; mistral none (it ignores both keys) */
    int qkv_bias, o_proj_bias, mlp_bias;
    /* gemma2: c·tanh(x/c) on the attention scores (attn_logit_softcapping) and on the LM head's
     * logits (final_logit_softcapping); 0 = none */
    double attn_logit_softcapping, final_logit_softcapping;
    double query_pre_attn_scalar;  /* gemma2: the scores are scaled by its ^-0.5; 0: head_dim's */
    double partial_rotary_factor;  /* phi3: the first factor·head_dim dims of each head rotate; 1 = all */
    int fused_qkv, fused_gate_up;  /* phi3: qkv_proj and gate_up_proj */

    /* the rotary LayerNorm decoders (gpt_neox, gptj, phi: models/rotary_common.h) */
    int64_t rotary_dim;        /* the first dims of each head that RoPE turns (rotary_pct, partial_rotary_factor,
                                  rotary_dim); the rest pass unchanged */
    int rope_interleaved;      /* gptj: rotate_every_two, pairs (2i, 2i+1) instead of halves */
    int parallel_residual;     /* gpt_neox: use_parallel_residual (mlp on x, not on x + attention) */
    int qk_layernorm;          /* phi: a LayerNorm over each head of q and k */
    int lm_head_bias;          /* gptj, phi: lm_head is a Linear with a bias */

    /* task heads, every architecture (cp_config_read_task): config.json's id2label / num_labels,
     * problem_type, classifier_dropout, initializer_range (a fresh head's init) */
    int64_t num_labels;        /* K: len(id2label), else num_labels, else 2 (PretrainedConfig's default) */
    char **id2label;           /* [num_labels] the label names by class id ("LABEL_0", ... by default) */
    cp_problem_type problem_type; /* AUTO when null */
    double classifier_dropout; /* < 0 when null */
    double initializer_range;

    /* encoders (BERT family) */
    int64_t type_vocab_size;   /* rows of token_type_embeddings (0: none, DistilBERT) */
    double hidden_dropout;     /* hidden_dropout_prob */
    int64_t embedding_size;    /* E, the embeddings' width (ELECTRA; = hidden_size elsewhere) */
    int64_t max_2d_positions;  /* LayoutLM: rows of the x/y/h/w position tables (max_2d_position_embeddings) */
    double seq_classif_dropout; /* DistilBERT: the dropout before its sequence classifier */
    int sinusoidal_positions;  /* DistilBERT's sinusoidal_pos_embds: how transformers initialises the position
                                  table; the table is saved and read like a learned one */

    /* deberta, deberta-v2 (models/deberta.c) */
    struct {
        int version;                /* 1: deberta, 2: deberta-v2 */
        int relative_attention;
        int64_t max_relative_positions; /* resolved: max_position_embeddings when the config's is < 1 */
        int64_t position_buckets;   /* v2; <= 0: none */
        int position_biased_input;
        int c2p, p2c;               /* pos_att_type has "c2p" / "p2c" */
        int64_t n_pos_att_type;     /* len(pos_att_type) (v1's scale factor is 1 + this) */
        int share_att_key;          /* v2 */
        int norm_rel_ebd;           /* v2: norm_rel_ebd has "layer_norm" */
        int64_t embedding_size;     /* E: = hidden_size unless the config gives another (embed_proj) */
        cp_activation pooler_act;   /* pooler_hidden_act */
        double pooler_dropout, cls_dropout; /* cls_dropout < 0: hidden_dropout_prob */
        int64_t conv_kernel_size, conv_groups; /* v2 ConvLayer after layer 0 when conv_kernel_size > 0 */
        cp_activation conv_act;     /* its activation (conv_act, "tanh" by default) */
    } deberta;

    /* encoder-decoder models */
    int64_t decoder_start_token_id; /* CP_TOKEN_UNSET when null or absent */
    int64_t num_decoder_layers;     /* the decoder's blocks (num_layers is the encoder's) */

    /* t5, mt5 (models/t5.c) */
    struct {
        int64_t num_buckets, max_distance; /* relative_attention_num_buckets / _max_distance */
        int gated;                  /* feed_forward_proj "gated-<act>": wi_0, wi_1 (is_gated_act) */
        double dropout;             /* dropout_rate: every Dropout module of the model; attn_dropout (the attention
                                       probabilities' float p, T5Attention.dropout) starts equal to it */
        int scale_decoder_outputs;  /* the decoder output times d_model^-0.5 before lm_head */
    } t5;

    /* bart (models/bart.c): each stack's heads and FFN width (num_heads / intermediate_size are the encoder's) */
    struct {
        int64_t decoder_heads, decoder_ffn;
        int scale_embedding;        /* the token embeddings times sqrt(d_model) (BartScaledWordEmbedding) */
        double activation_dropout;  /* on the activation's output in the FFN (dropout: hidden_dropout,
                                       attention_dropout: attn_dropout) */
    } bart;

    /* opt (models/opt.c) */
    struct {
        int pre_ln;                 /* do_layer_norm_before */
        int final_norm;             /* decoder.final_layer_norm exists: pre_ln and not _remove_final_layer_norm */
        int bias;                   /* enable_bias: the attention and fc Linears carry biases */
        int affine;                 /* layer_norm_elementwise_affine: the LayerNorms have weight and bias */
        double layerdrop;           /* refused in a forward with the model's dropout on (transformers skips layers then) */
    } opt;

    /* bloom (models/bloom.c) */
    int residual_post_ln;           /* apply_residual_connection_post_layernorm */

    /* gpt2 */
    int scale_attn_weights;
    int scale_attn_by_inverse_layer_idx;
    int reorder_and_upcast_attn;
} cp_model_config;

/* Reads `dir`/config.json into *cfg (picking the architecture's parser by model_type). */
cp_status cp_config_load(cp_model_config *cfg, const char *config_path);
/* Same from an already parsed object; `file` names it in errors. */
cp_status cp_config_from_json(cp_model_config *cfg, const cJSON *root, const char *file);
void cp_config_free(cp_model_config *cfg);

/* Shared helpers for the per-architecture parsers: read the common token ids, dtype, tie flag,
 * architectures[0] and activation (with a default). */
cp_status cp_config_read_common(cp_model_config *cfg, const cJSON *root, const char *file,
                                const char *default_activation);
/* The task-head fields every config carries (num_labels, id2label, label2id, problem_type,
 * classifier_dropout, initializer_range); called by cp_config_from_json for every architecture. */
cp_status cp_config_read_task(cp_model_config *cfg, const cJSON *root, const char *file);
/* A token id of an architecture whose config class has its own default: dflt when the key is absent,
 * CP_TOKEN_UNSET when it is null (None in transformers, not the default), else as the common ids
 * read (an integer, or a list whose first id is kept). */
cp_status cp_config_token_id(const cJSON *root, const char *key, int64_t dflt, int64_t *out, const char *file);
/* Reads an integer that must be in [1, max] (dflt <= 0 makes the field required). */
cp_status cp_config_positive(const cJSON *root, const char *key, int64_t dflt, int64_t max, int64_t *out,
                             const char *file);

/* Sanity bounds for sizes read from config.json: far above any real model, low enough that a
 * corrupted file cannot ask for absurd allocations. */
#define CP_MAX_VOCAB ((int64_t)1 << 24)
#define CP_MAX_HIDDEN ((int64_t)1 << 16)
#define CP_MAX_LAYERS ((int64_t)1024)
#define CP_MAX_HEADS ((int64_t)1024)
#define CP_MAX_POSITIONS ((int64_t)1 << 22)
#define CP_MAX_INTERMEDIATE ((int64_t)1 << 18)

#endif
