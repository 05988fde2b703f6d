/*
 * prompt_config.h — PEFT's prompt-learning configs (PromptLearningConfig and its three methods),
 * read from and written as PEFT's own adapter_config.json:
 *   PROMPT_TUNING  PromptTuningConfig: prompt_tuning_init RANDOM / TEXT / SAMPLE_VOCAB,
 *                  prompt_tuning_init_text, tokenizer_name_or_path, tokenizer_kwargs
 *   P_TUNING       PromptEncoderConfig: encoder_reparameterization_type MLP / LSTM, encoder_hidden_size,
 *                  encoder_num_layers, encoder_dropout
 *   PREFIX_TUNING  PrefixTuningConfig: init_weights (null / "zero"), encoder_hidden_size, prefix_projection
 * and the fields all three share (num_virtual_tokens, token_dim, num_transformer_submodules,
 * num_attention_heads, num_layers), which PEFT fills from the model's config when they are null
 * (cp_prompt_config_resolve: _prepare_prompt_learning_config and _setup_prompt_encoder) and writes back
 * resolved. Unknown keys are dropped with a warning, as PEFT drops them. See reference/peft.md §4.
 */
#ifndef CP_PEFT_PROMPT_CONFIG_H
#define CP_PEFT_PROMPT_CONFIG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "models/model.h"
#include "peft/method.h"

/* The three methods' tables (prompt_method.c), registered in methods.c. */
extern const cp_peft_method cp_prompt_tuning_method;
extern const cp_peft_method cp_p_tuning_method;
extern const cp_peft_method cp_prefix_tuning_method;

typedef enum { CP_PROMPT_TUNING, CP_P_TUNING, CP_PREFIX_TUNING } cp_prompt_kind;
typedef enum { CP_PROMPT_INIT_RANDOM, CP_PROMPT_INIT_TEXT, CP_PROMPT_INIT_SAMPLE_VOCAB } cp_prompt_init;

/* A field PEFT leaves as None until the model fills it. */
#define CP_PROMPT_UNSET ((int64_t)-1)

typedef struct cp_prompt_config {
    union {
        cp_peft_config base;
        struct {
            CP_PEFT_CONFIG_FIELDS
        };
    };
    cp_prompt_kind kind;
    /* PromptLearningConfig (CP_PROMPT_UNSET: null) */
    int64_t num_virtual_tokens;
    int64_t token_dim;
    int64_t num_transformer_submodules;
    int64_t num_attention_heads;
    int64_t num_layers;
    /* PROMPT_TUNING */
    cp_prompt_init prompt_tuning_init;
    char *prompt_tuning_init_text;   /* NULL: null */
    char *tokenizer_name_or_path;    /* NULL: null */
    cJSON *tokenizer_kwargs;         /* NULL: null; written back as read */
    /* P_TUNING (encoder_hidden_size also PREFIX_TUNING) */
    int encoder_lstm;                /* encoder_reparameterization_type "LSTM" (else "MLP") */
    int64_t encoder_hidden_size;     /* CP_PROMPT_UNSET: null (then token_dim) */
    int64_t encoder_num_layers;      /* 2 */
    double encoder_dropout;          /* 0.0 */
    /* PREFIX_TUNING */
    int init_weights_zero;           /* init_weights "zero" (else null) */
    int prefix_projection;
} cp_prompt_config;

#define CP_PROMPT(cfg) ((cp_prompt_config *)(cfg))
#define CP_CPROMPT(cfg) ((const cp_prompt_config *)(cfg))

/* A config of `kind` with PEFT's defaults (num_virtual_tokens null). */
cp_prompt_config *cp_prompt_config_new(cp_prompt_kind kind);
cp_status cp_prompt_config_from_json(cp_prompt_kind kind, const cJSON *root, const char *path, cp_prompt_config **out);
/* The file text exactly as PEFT's save_pretrained writes it. */
char *cp_prompt_config_to_json(const cp_prompt_config *cfg);
cp_prompt_config *cp_prompt_config_copy(const cp_prompt_config *cfg);
void cp_prompt_config_free(cp_prompt_config *cfg);

/* What PEFT refuses when the config is built or the encoder made: num_virtual_tokens null or < 1,
 * TEXT without tokenizer_name_or_path or text (or an empty text: PEFT divides by its length),
 * tokenizer_kwargs without TEXT, an encoder type or init_weights PEFT does not know. `where` names the
 * config in the message. */
cp_status cp_prompt_config_validate(const cp_prompt_config *cfg, const char *where);

/* Fills the null fields from the model as PEFT does (_prepare_prompt_learning_config; nts 1 for every
 * task but SEQ_2_SEQ_LM), prefix tuning's grouped-query key/value width (token_dim = head_dim ·
 * num_key_value_heads, num_attention_heads = num_key_value_heads) and encoder_hidden_size. */
cp_status cp_prompt_config_resolve(cp_prompt_config *cfg, const cp_model *m);

/* The virtual positions the encoder makes: num_virtual_tokens · num_transformer_submodules (prompt
 * tuning, p-tuning) or num_virtual_tokens (prefix tuning), and the width of each: token_dim, or
 * num_layers · 2 · token_dim for prefix tuning (a resolved config). */
int64_t cp_prompt_config_rows(const cp_prompt_config *cfg);
int64_t cp_prompt_config_width(const cp_prompt_config *cfg);

#endif
