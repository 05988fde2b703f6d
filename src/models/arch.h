/*
 * arch.h — the architecture registry. Each supported model_type is one cp_arch in one file under
 * src/models/: how to read its config.json, how to build its module tree (with Hugging Face
 * names, filling m->stack), and its embeddings and blocks (cp_block_ops). Everything else (the
 * scaffold that runs the blocks, loading, heads and losses, PEFT, printing) is shared.
 */
#ifndef CP_MODELS_ARCH_H
#define CP_MODELS_ARCH_H

#include <cjson/cJSON.h>

#include "core/error.h"
#include "models/config.h"

struct cp_model;
struct cp_batch;
struct cp_block_ops;
struct cp_gguf_names;

typedef struct cp_arch {
    const char *model_type;       /* "gpt_neo" */
    const char *causal_lm_class;  /* "GPTNeoForCausalLM" */
    const char *base_prefix;      /* state-dict prefix of the base model: "transformer" */
    /* Encoders (BERT family): the class-name stem ("Bert" → BertModel, BertForSequenceClassification,
     * BertForTokenClassification); NULL for decoders. build reads m->task and fills m->head. */
    const char *class_stem;
    int encoder;                  /* no causal LM: loaded for FEATURE_EXTRACTION, SEQ_CLS, TOKEN_CLS */
    /* An encoder-decoder (T5, ...): m->encoder_stack runs once over input_ids, m->stack is the decoder
     * (its cross-attention reads run->cross), the head the decoder's LM head; task SEQ_2_SEQ_LM
     * (models/seq2seq.c). */
    int encoder_decoder;
    /* transformers 5's tie_weights: a tied parameter whose own tensor is in the checkpoint with
     * other values than its target's is untied and loaded (T5's lm_head of v1.1 checkpoints). */
    int untie_differing;
    /* Fills the architecture's fields of cfg from config.json (common fields included). */
    cp_status (*parse_config)(cp_model_config *cfg, const cJSON *root, const char *file);
    /* Builds m->root (the tree of m->task's class: *ForCausalLM, *Model, *For...Classification), m->head
     * and m->arch_state from m->config. */
    cp_status (*build)(struct cp_model *m);
    void (*free_state)(struct cp_model *m);
    /* The blocks, embeddings and their backward, run by the scaffold (models/stack.h). */
    const struct cp_block_ops *block_ops;
    /* Positions come from a learned table of max_position_embeddings rows (GPT-2, GPT-Neo), so
     * longer sequences are impossible; rotary models can run past it (dynamic RoPE is made for that). */
    int learned_positions;
    /* Positions are rotary (computed), not rows of a learned table: a sequence may run past
     * max_positions, as transformers allows (with a warning). */
    int rotary_positions;
    /* A (1,V) buffer of the checkpoint added to the LM head's logits (BART's final_logits_bias):
     * read at load into m->logits_bias (zeros when the checkpoint has none, as transformers
     * initialises it); NULL: none. */
    const char *logits_bias;
    /* Old checkpoint names, as pairs {prefix of the module path, prefix in old checkpoints},
     * NULL-terminated: transformers' conversion_mapping WeightRenaming (GPT-NeoX's embed_out. →
     * lm_head.). A parameter not in the checkpoint under its own name is looked up under the old one. */
    const char *const *renamed;
    /* Tensor-name suffixes of non-parameter buffers that old checkpoints carry (ignored). */
    const char *const *ignored_suffixes;
    /* Its tensors under llama.cpp's GGUF names (models/gguf_names.h), for the GGUF files whose
     * general.architecture is gguf_names->gguf_arch; NULL when GGUF files of it are not read. */
    const struct cp_gguf_names *gguf_names;
} cp_arch;

const cp_arch *cp_arch_find(const char *model_type);
/* The i-th registered architecture, NULL past the last. */
const cp_arch *cp_arch_at(int i);
/* "gpt2, gpt_neo, ..." (the decoder-only models) and "bert, ..." (the encoders) for error messages. */
const char *cp_arch_supported_list(void);
const char *cp_arch_encoder_list(void);
/* "t5, mt5": the encoder-decoders. */
const char *cp_arch_encoder_decoder_list(void);

extern const cp_arch cp_arch_gpt2;
extern const cp_arch cp_arch_gpt_neo;
extern const cp_arch cp_arch_llama;
extern const cp_arch cp_arch_mistral;
extern const cp_arch cp_arch_qwen2;
extern const cp_arch cp_arch_qwen3;
extern const cp_arch cp_arch_gemma;
extern const cp_arch cp_arch_gemma2;
extern const cp_arch cp_arch_phi3;
extern const cp_arch cp_arch_glm;
extern const cp_arch cp_arch_gpt_neox;
extern const cp_arch cp_arch_gptj;
extern const cp_arch cp_arch_phi;
extern const cp_arch cp_arch_opt;
extern const cp_arch cp_arch_bloom;
extern const cp_arch cp_arch_bert;
extern const cp_arch cp_arch_roberta;
extern const cp_arch cp_arch_xlm_roberta;
extern const cp_arch cp_arch_distilbert;
extern const cp_arch cp_arch_electra;
extern const cp_arch cp_arch_layoutlm;
extern const cp_arch cp_arch_deberta;
extern const cp_arch cp_arch_deberta_v2;
extern const cp_arch cp_arch_t5;
extern const cp_arch cp_arch_mt5;
extern const cp_arch cp_arch_bart;

#endif
