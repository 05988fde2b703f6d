/*
 * cpeft.h — the public C API of cpeft: parameter-efficient fine-tuning of Hugging Face
 * transformer models, in C.
 *
 * Conventions: every function that can fail returns cp_status (CP_OK == 0, CP_ERR == -1) and leaves
 * a message naming the file, tensor or field at fault, readable with cp_last_error() on the same
 * thread. Nothing in the library exits or aborts on bad input. Shapes are given in comments with
 * the letters B (batch), T (time), C (channels), V (vocabulary), L (layers).
 */
#ifndef CPEFT_H
#define CPEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CPEFT_VERSION "0.1.0"

#ifndef CP_OK
#define CP_OK 0
#define CP_ERR (-1)
typedef int cp_status;
#endif

/* The last error message on this thread ("" when none). */
const char *cp_last_error(void);
/* Silences (1) or restores (0) warnings printed to stderr. */
void cp_set_quiet(int quiet);

/* ---- models ------------------------------------------------------------------------------------ */

typedef struct cp_model cp_model;

typedef enum {
    CP_LOAD_WEIGHTS = 0,     /* config.json + safetensors weights (the default) */
    CP_LOAD_CONFIG_ONLY = 1, /* config.json only: shapes, counts and the module tree, no data */
} cp_load_flags;

/* Loads a Hugging Face model directory (config.json + model.safetensors or sharded safetensors).
 * F32 weights are memory-mapped in place; F16/BF16 are widened to f32. */
cp_status cp_model_load(cp_model **out, const char *dir, int flags);
void cp_model_free(cp_model *m);

/* A batch of token sequences. Arrays are row-major (B,T); NULL means the default. */
typedef struct cp_batch {
    int64_t B, T;
    const int64_t *input_ids;      /* (B,T) required */
    const int64_t *attention_mask; /* (B,T) 1 = real token, 0 = padding; NULL = all ones */
    const int64_t *position_ids;   /* (B,T) NULL = 0..T-1 for every row, as transformers' forward */
    const int64_t *labels;         /* (B,T) next-token targets before the shift; -100 = ignored; NULL = no loss */
} cp_batch;

typedef struct cp_outputs {
    float *logits;         /* (B,T,V) caller-allocated, or NULL: the loss is then computed in chunks
                              without materialising all logits */
    float *hidden_states;  /* (L+1,B,T,C) caller-allocated or NULL: transformers' output_hidden_states */
    double loss;           /* mean causal-LM cross-entropy over non-ignored targets (labels given) */
    int64_t loss_tokens;   /* number of targets the loss averages over */
} cp_outputs;

/* Runs the causal LM on a batch (eval mode: no dropout). */
cp_status cp_model_forward(cp_model *m, const cp_batch *batch, cp_outputs *out);

/* Sizes. */
int64_t cp_model_vocab_size(const cp_model *m);
int64_t cp_model_hidden_size(const cp_model *m);
int64_t cp_model_num_layers(const cp_model *m);
int64_t cp_model_max_positions(const cp_model *m);
const char *cp_model_type(const cp_model *m);
/* sum(p.numel() for p in model.parameters()): tied weights counted once. */
int64_t cp_model_num_parameters(const cp_model *m);
/* print(model) as PyTorch shows it; caller frees with free(). */
char *cp_model_repr(const cp_model *m);

/* ---- PEFT: LoRA adapters, by name --------------------------------------------------------------- */
/* Adapters live on the model as in PEFT: each has a name ("default" unless named), any subset can be
 * active, and the model can run with all of them disabled (the base model). */

/* get_peft_model / add_adapter: injects a LoRA adapter described by a PEFT adapter_config.json,
 * initialised as PEFT does from `seed`. The first adapter becomes active; later ones are added
 * inactive (use cp_model_set_adapters). As in PEFT, a config saying "inference_mode": true (every
 * config save_pretrained writes does) gives a frozen adapter: 0 trainable parameters, biases of
 * bias "all" / "lora_only" excepted. */
cp_status cp_model_add_adapter(cp_model *m, const char *name, const char *adapter_config_path, uint64_t seed);
/* PeftModel.from_pretrained / load_adapter: a PEFT adapter directory (adapter_config.json +
 * adapter_model.safetensors). The first adapter becomes active. is_trainable as in PEFT. */
cp_status cp_model_load_adapter(cp_model *m, const char *dir, const char *name, int is_trainable);
/* save_pretrained of one adapter: DIR/adapter_config.json + DIR/adapter_model.safetensors, as PEFT
 * writes them. Files are written under temporary names and renamed into place. */
cp_status cp_model_save_adapter(cp_model *m, const char *name, const char *dir);
/* The active set, in order (several active adapters add their deltas). */
cp_status cp_model_set_adapters(cp_model *m, const char *const *names, int n);
/* disable_adapter(): 1 runs the base model (merged adapters are unmerged first), 0 restores. */
void cp_model_disable_adapters(cp_model *m, int disabled);
cp_status cp_model_delete_adapter(cp_model *m, const char *name);
/* merge_adapter / unmerge_adapter of the active adapters, in place. */
cp_status cp_model_merge_adapters(cp_model *m);
cp_status cp_model_unmerge_adapters(cp_model *m);
/* add_weighted_adapter with combination_type "linear" or "cat" (PEFT's semantics, cross terms
 * included for "linear"). The new adapter is not activated. */
cp_status cp_model_add_weighted_adapter(cp_model *m, const char *const *names, const double *weights, int n,
                                        const char *new_name, const char *combination_type);
/* merge_and_unload saved as a complete Hugging Face checkpoint in OUT (which must not exist):
 * config.json, model.safetensors in the base dtype, tokenizer files copied. */
cp_status cp_model_save_merged(cp_model *m, const char *out_dir);

/* (trainable, all) parameters as PEFT's get_nb_trainable_parameters counts them. */
void cp_model_trainable_parameters(const cp_model *m, int64_t *trainable, int64_t *all);
typedef enum {
    CP_PEFT_LINE_NOTEBOOK = 0, /* "trainable params: 2359296 || all params: 1317935104 || trainable%: 0.17901458067543818" */
    CP_PEFT_LINE_CURRENT = 1,  /* PEFT ≥ 0.11: "trainable params: 2,359,296 || all params: 1,317,935,104 || trainable%: 0.1790" */
} cp_peft_line_style;
/* print_trainable_parameters()'s line (no newline); caller frees with free(). */
char *cp_model_trainable_parameters_line(const cp_model *m, cp_peft_line_style style);
/* print(peft_model): the PeftModel repr with lora.Linear / ModulesToSaveWrapper wrappers (the
 * plain model repr when no adapter is loaded); caller frees with free(). */
char *cp_model_peft_repr(const cp_model *m);

/* ---- tokenizers (tokenizer.json, vocab.json + merges.txt, vocab.txt) --------------------------- */
/* Ids and byte offsets identical to the Rust `tokenizers` library; see docs in README ("Tokenizers"). */
typedef struct cp_tokenizer cp_tokenizer;

/* Id value meaning "this special token is not set" (e.g. GPT-2 has no pad token). */
#define CP_TOKEN_NONE (-1)

/* The result of encoding one text. Arrays have n entries; free with cp_encoding_free. */
typedef struct {
    size_t n;
    int32_t *ids;
    size_t *offsets;       /* 2*n: token i covers bytes [offsets[2i], offsets[2i+1]) of the input */
    uint8_t *special_mask; /* 1 for tokens the post-processor added ([CLS], <s>, ...), else 0 */
    uint8_t *type_ids;     /* segment id (0 for single sequences) */
    size_t cap;
} cp_encoding;

/* Loads a model directory: tokenizer.json if present, else vocab.json + merges.txt (byte-level
 * BPE, GPT-2 style), else vocab.txt (BERT WordPiece); then tokenizer_config.json and
 * special_tokens_map.json for bos/eos/pad/unk and whether bos/eos are added. */
int cp_tokenizer_load_dir(cp_tokenizer **out, const char *model_dir);
/* Loads one tokenizer.json file (no tokenizer_config.json). */
int cp_tokenizer_load_file(cp_tokenizer **out, const char *tokenizer_json_path);
/* Loads tokenizer.json content held in memory (len bytes, need not be NUL-terminated). */
int cp_tokenizer_load_json(cp_tokenizer **out, const char *json, size_t len);
void cp_tokenizer_free(cp_tokenizer *tok);

/* Encodes len bytes of text. add_special_tokens applies the post-processor's template ([CLS] ...
 * [SEP], <s> ...), as transformers does by default. out must be zero-initialised or previously
 * used (its buffers are reused). */
int cp_tokenizer_encode(const cp_tokenizer *tok, const char *text, size_t len,
                        int add_special_tokens, cp_encoding *out);
/* Same for a pair of texts (sequence A and B; type ids 0 and 1 where the template says so).
 * Offsets of B's tokens refer to text_b. */
int cp_tokenizer_encode_pair(const cp_tokenizer *tok, const char *text_a, size_t len_a,
                             const char *text_b, size_t len_b, int add_special_tokens,
                             cp_encoding *out);
void cp_encoding_free(cp_encoding *enc);

/* Decodes ids to UTF-8 text: *out (free with free()) holds *len bytes and a NUL after them. The
 * text may itself contain NUL bytes (a byte-fallback <0x00> token, a "\u0000" in the vocabulary),
 * so it is bytes with a length, as tokenizers' Python str is: use *len, not strlen. len may be
 * NULL when the caller only needs the text up to its first NUL. An id outside the vocabulary is
 * an error naming it. skip_special_tokens drops special added tokens. */
int cp_tokenizer_decode(const cp_tokenizer *tok, const int32_t *ids, size_t n,
                        int skip_special_tokens, char **out, size_t *len);

/* Vocabulary: model vocabulary plus added tokens (largest id + 1). */
size_t cp_tokenizer_vocab_size(const cp_tokenizer *tok);
/* Token string for an id (as stored in the vocabulary, e.g. "Ġworld"), or NULL if out of range. */
const char *cp_tokenizer_id_to_token(const cp_tokenizer *tok, int32_t id);
/* Id of a token string, or CP_TOKEN_NONE. */
int32_t cp_tokenizer_token_to_id(const cp_tokenizer *tok, const char *token);
/* Nonzero if id is a special added token (<|endoftext|>, [CLS], ...). */
int cp_tokenizer_is_special(const cp_tokenizer *tok, int32_t id);

/* The special tokens transformers knows by role. */
typedef enum { CP_SPECIAL_BOS, CP_SPECIAL_EOS, CP_SPECIAL_PAD, CP_SPECIAL_UNK } cp_special_role;
/* Id of the token with that role, or CP_TOKEN_NONE when it is not set. */
int32_t cp_tokenizer_special_id(const cp_tokenizer *tok, cp_special_role role);
/* Like cp_tokenizer_special_id but an unset role is an error whose message is transformers'
 * ("Using pad_token, but it is not set yet."). */
int cp_tokenizer_require_special(const cp_tokenizer *tok, cp_special_role role, int32_t *id);
/* Sets (or, with token NULL, clears) a role; the token must be in the vocabulary. Training uses
 * this to pick its documented pad default (the eos token) when a tokenizer has no pad token. */
int cp_tokenizer_set_special(cp_tokenizer *tok, cp_special_role role, const char *token);
/* Whether transformers would add bos / eos when encoding (from tokenizer_config.json's
 * add_bos_token / add_eos_token, else what the post-processor does). */
int cp_tokenizer_adds_bos(const cp_tokenizer *tok);
int cp_tokenizer_adds_eos(const cp_tokenizer *tok);

/* ---- generation -------------------------------------------------------------------------------- */
/* transformers' generate() with a KV cache: greedy by default, sampling with its processors and
 * warpers (repetition penalty, temperature, top-k, top-p, in that order), several prompts in one
 * left-padded batch, per-prompt adapters (PEFT's adapter_names), eos ids and stop strings. See
 * docs/generate.md. */

#define CP_MAX_EOS 8

typedef enum {
    CP_FINISH_LENGTH = 0, /* max_new_tokens reached (or the model's positions filled) */
    CP_FINISH_EOS = 1,    /* an eos id was generated (it is the row's last token) */
    CP_FINISH_STOP = 2,   /* a stop string appeared in the decoded new text, or on_token asked to stop */
} cp_finish_reason;

typedef struct cp_generate_options {
    int64_t max_new_tokens;     /* new tokens per prompt at most (default 64) */
    int do_sample;              /* 0: greedy (argmax); 1: draw from the processed distribution */
    double temperature;         /* > 0 (sampling only); 1 = off */
    int64_t top_k;              /* ≥ 0 (sampling only); 0 = off; transformers' default is 50 */
    double top_p;               /* (0, 1] (sampling only); 1 = off */
    double repetition_penalty;  /* > 0; 1 = off; applies to greedy decoding too, as in transformers */
    uint64_t seed;              /* prompt i samples from its own stream seeded with seed + i */
    int32_t eos_token_ids[CP_MAX_EOS]; /* any of them ends a prompt's generation */
    int n_eos;                  /* 0: no eos stop */
    int32_t pad_token_id;       /* fills left padding and finished rows (affects the repetition
                                   penalty only, as in transformers) */
    const char *const *adapter_names; /* NULL, or one per prompt: the adapter that prompt runs alone,
                                         "__base__" for none (PEFT's adapter_names) */
    const cp_tokenizer *tokenizer;    /* needed for stop strings */
    const char *const *stop_strings;  /* a prompt ends once its decoded new text contains one */
    int n_stop_strings;
    /* Called with each new token of each unfinished prompt as soon as it is chosen (streaming).
     * A nonzero return ends that prompt there (CP_FINISH_STOP). May be NULL. */
    int (*on_token)(void *user, int64_t prompt, int32_t token);
    void *user;
    int no_cache;               /* 1: recompute the whole sequence every step (slow; a check) */
} cp_generate_options;

/* Defaults for m: 64 new tokens, greedy; temperature, top_k, top_p and repetition_penalty from the
 * model directory's generation_config.json when it sets them, else transformers' defaults (1, 50,
 * 1, 1); eos ids from generation_config.json, else config.json (one id or a list); pad_token_id
 * likewise, else the first eos id. generation_config.json's do_sample is not followed: greedy
 * unless the caller sets do_sample. */
cp_status cp_generate_options_init(const cp_model *m, cp_generate_options *opt);

/* The result: for each prompt, its new tokens (the eos or stop token that ended it included). */
typedef struct cp_generation {
    int64_t n;
    int32_t **tokens;         /* [n][n_tokens[i]] */
    int64_t *n_tokens;        /* [n] */
    cp_finish_reason *finish; /* [n] */
} cp_generation;

/* Generates for n prompts (token ids, unpadded, prompt_lens[i] > 0) in one left-padded batch:
 * prefill, then one forward per new token for all unfinished prompts, with the active adapters
 * (or per-prompt adapters, opt->adapter_names). A prompt longer than the model's positions − 1 is
 * truncated from the left with a warning; generation stops when the sequence fills the positions.
 * Bad options (temperature ≤ 0 or top_p outside (0, 1] when sampling, an unknown adapter name, ...)
 * are errors before anything runs. out is filled on success; free with cp_generation_free. */
cp_status cp_model_generate(cp_model *m, const int32_t *const *prompts, const int64_t *prompt_lens, int64_t n,
                            const cp_generate_options *opt, cp_generation *out);
void cp_generation_free(cp_generation *g);

#ifdef __cplusplus
}
#endif
#endif
