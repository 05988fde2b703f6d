/*
 * cpeft.h — the public C API of cpeft: parameter-efficient fine-tuning of Hugging Face
 * transformer models, in C. This header is the whole API: libcpeft.so exports exactly the functions
 * declared here (each marked CP_API) and nothing else.
 *
 * Conventions (every function below follows them; the exceptions are named where they occur):
 *
 *   Errors     every function that can fail returns cp_status: CP_OK (0) or CP_ERR (-1). On CP_ERR
 *              a message naming the file, tensor, field or option at fault is readable with
 *              cp_last_error() on the same thread until the next failing call there. Nothing in the
 *              library exits, aborts or raises a signal on bad input. The only other failures are
 *              those of the functions that return a newly allocated string (the *_repr and *_line
 *              functions): they return NULL when out of memory, with the message set.
 *   Queries    functions that cannot fail (sizes, names, ids, flags) return their value directly;
 *              an absent value is NULL, CP_TOKEN_NONE or 0 as each one says.
 *   Arguments  the object acted on comes first (cp_model *, cp_tokenizer *, cp_trainer *); then,
 *              for a call on one named adapter, the adapter's name; then the other inputs; results
 *              go through the last parameters. Constructors (cp_model_load, cp_tokenizer_load_*,
 *              cp_trainer_create) are the one shape that differs: they return the new object
 *              through their first parameter, T **out, which is set to NULL on failure. Exception,
 *              kept for existing programs: cp_model_load_adapter takes the directory before the
 *              name, in PEFT's load_adapter(model_id, adapter_name) order.
 *   Ownership  what a function returns through T **out or as char * belongs to the caller, who
 *              frees it with the matching *_free function or free(). Pointers the library keeps
 *              (the model and tokenizer of a trainer) are borrowed: they must outlive their user.
 *   Options    a struct of options comes with an *_init function that fills every field with its
 *              default; set the fields you need after calling it, never on an uninitialised struct.
 *   Output     the library never writes to stdout, never installs signal handlers and never draws
 *              anything. Warnings go to stderr as "warning: ..." (cp_set_quiet silences them);
 *              progress and results reach the program through return values and callbacks.
 *   Shapes     comments give shapes with the letters B (batch), T (time), C (channels),
 *              V (vocabulary), L (layers).
 *
 * Threading:
 *
 *   - Separate objects may be used from separate threads at the same time: two models (even loaded
 *     from the same directory, which they then share read-only through the page cache), each with
 *     its own adapters, generations and trainer, run concurrently. tests/unit/test_library.c
 *     checks that such runs give the same numbers as the same runs one after the other.
 *   - One cp_model is not safe to use from two threads at once: a forward pass (cp_model_forward,
 *     cp_model_generate, training) works in the model's own activation arena and mutates its
 *     adapter state. Calls taking `cp_model *` need the model to themselves; calls taking
 *     `const cp_model *` may run together, but not beside a `cp_model *` call on the same model.
 *   - A cp_tokenizer is read-only once loaded: the const functions (encode, decode, lookups) may
 *     run on one tokenizer from any number of threads, each with its own cp_encoding. Only
 *     cp_tokenizer_set_special (and cp_tokenizer_free) need it to themselves.
 *   - A cp_trainer holds its model from cp_trainer_create to cp_trainer_free: meanwhile the
 *     model's adapters must not change (no add, load, delete, set, merge or disable) and the model
 *     and tokenizer must not be freed. Inference on the model (cp_model_forward, cp_model_generate,
 *     cp_model_save_adapter) is fine between trainer calls or from inside its callbacks — one call
 *     at a time, as for any model. cp_trainer_request_stop may be called at any time from any
 *     thread or from a signal handler; it is async-signal-safe.
 *   - The error message is per thread. cp_set_quiet is process-wide: call it before starting
 *     threads. Each call parallelises itself with OpenMP and OpenBLAS; N threads calling at once
 *     start N teams, so set OMP_NUM_THREADS to share the cores between them.
 *
 * ABI: CPEFT_ABI_VERSION is the version of this binary interface. It is the soname's major number
 * (libcpeft.so.CPEFT_ABI_VERSION) and is bumped by any change that can break a program built
 * against an earlier header: a function removed, renamed or given other parameters or another
 * return type; a public struct's fields added, removed, reordered or retyped (callers allocate the
 * option and result structs, so their size is part of the ABI); an enum constant's or a macro's
 * value changed; a documented meaning changed. Adding a function or an enum constant at the end
 * does not bump it. A program can compare cp_abi_version() with the CPEFT_ABI_VERSION it was built
 * with and refuse to run on a mismatch.
 */
#ifndef CPEFT_H
#define CPEFT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libcpeft.so exports: the library is built with -fvisibility=hidden, so
 * everything not marked stays internal. */
#ifndef CP_API
#if defined(__GNUC__) || defined(__clang__)
#define CP_API __attribute__((visibility("default")))
#else
#define CP_API
#endif
#endif

#define CPEFT_VERSION "0.1.0"
#define CPEFT_ABI_VERSION 7

#ifndef CP_OK
#define CP_OK 0
#define CP_ERR (-1)
typedef int cp_status;
#endif

/* The library's CPEFT_ABI_VERSION and CPEFT_VERSION, as it was built (compare with the header's). */
CP_API int cp_abi_version(void);
CP_API const char *cp_version(void);

/* The last error message on this thread ("" when none). */
CP_API const char *cp_last_error(void);
/* Silences (1) or restores (0) warnings printed to stderr. */
CP_API void cp_set_quiet(int quiet);

/* ---- models ------------------------------------------------------------------------------------ */

typedef struct cp_model cp_model;

typedef enum {
    CP_LOAD_WEIGHTS = 0,     /* config.json + safetensors weights (the default) */
    CP_LOAD_CONFIG_ONLY = 1, /* config.json only: shapes, counts and the module tree, no data */
    /* --quantize: the frozen Linear/Conv1D weights of the base model (not the LM head or a task head,
     * embeddings, norms, biases) quantized at load with ggml's reference quantizers and multiplied as
     * stored; adapters stay f32 and are ordinary PEFT adapters. One of: */
    CP_LOAD_QUANTIZE_Q8_0 = 2, /* ggml Q8_0: 8.5 bits a weight */
    CP_LOAD_QUANTIZE_Q4_K = 4, /* ggml Q4_K: 4.5 bits a weight (rows not a multiple of 256: Q4_1, 5 bits) */
    /* cp_model_load_gguf: a quantized matrix of a type without a kernel (Q5_1, Q2_K, Q3_K, Q8_K, IQ*)
     * dequantized to f32 at load instead of refused */
    CP_LOAD_GGUF_DEQUANTIZE = 8,
    /* with CP_LOAD_QUANTIZE_*: the token embedding and the LM head stay in their 16/32-bit dtype when
     * training starts (bitsandbytes / PEFT QLoRA's choice). Without it a frozen token embedding and a
     * frozen untied LM head are quantized to the same format when a trainer starts (llama.cpp's choice;
     * a tied LM head is then multiplied quantized): `cpeft train --quantize-embeddings no` sets it */
    CP_LOAD_QUANTIZE_KEEP_EMBEDDINGS = 16,
} cp_load_flags;

/* The CP_LOAD_QUANTIZE_* flag of a --quantize name ("q8_0", "q4_k"), or an error listing the known
 * ones. */
CP_API cp_status cp_quantize_flag(const char *name, int *flag);

/* Loads a Hugging Face model directory (config.json + model.safetensors or sharded safetensors).
 * Weights are memory-mapped and used in place in their stored dtype (F32; F16/BF16 matrices are
 * widened by the kernels as they read them, vectors at load). */
CP_API cp_status cp_model_load(cp_model **out, const char *dir, int flags);
/* The same with a task head, PEFT's task_type: "CAUSAL_LM" (*ForCausalLM), "SEQ_CLS"
 * (*ForSequenceClassification), "TOKEN_CLS" (*ForTokenClassification) or "FEATURE_EXTRACTION" (the
 * bare base model, *Model: cp_outputs.logits are then the final hidden states (B,T,C)). NULL takes
 * the task from config.json's "architectures" when it names a *ForSequenceClassification,
 * *ForTokenClassification or *Model class, else CAUSAL_LM for decoders and FEATURE_EXTRACTION for
 * encoders. cp_model_load is cp_model_load_task with NULL. The head's size is config.json's
 * num_labels (len(id2label)). */
CP_API cp_status cp_model_load_task(cp_model **out, const char *dir, int flags, const char *task_type);
/* cp_model_load_task from a GGUF file (llama.cpp's format; the architectures `cpeft convert` reads),
 * without converting it: the config and tensor names are the converter's (the model is the one the
 * converted directory holds), F32/F16/BF16 tensors are used in place from the mapping, Q8_0, Q4_0,
 * Q4_1, Q4_K, Q5_0, Q5_K and Q6_K matrices are kept as stored and multiplied by the quantized
 * kernels (see cp_model_set_quant_act8), embeddings,
 * norms and vectors of any type are dequantized to f32 at load; a matrix of a type without a kernel
 * is refused by name unless flags has CP_LOAD_GGUF_DEQUANTIZE. The model's dir is the file's path
 * (an adapter saved from it names it as base_model_name_or_path; its tensor names are Hugging
 * Face's, so it loads onto the converted directory). */
CP_API cp_status cp_model_load_gguf(cp_model **out, const char *path, int flags, const char *task_type);
/* A SEQ_CLS / TOKEN_CLS model loaded from a checkpoint without its head (a bare base model) gets a
 * fresh head, as transformers initialises one: Linear weights ~ normal(0, initializer_range), zero
 * biases, drawn from cpeft's seeded stream (seed 0 at load). This redraws it from `seed`; an error when
 * the head came from the checkpoint. */
CP_API cp_status cp_model_init_head(cp_model *m, uint64_t seed);
/* from_pretrained(dir, num_labels=K, id2label=..., label2id=...) for SEQ_CLS / TOKEN_CLS: the label
 * set given here replaces config.json's (labels: K names, id2label order, or NULL for "LABEL_0"...;
 * problem_type: "single_label_classification", "multi_label_classification", "regression" or NULL
 * for the automatic choice), so the classifier has K outputs. A checkpoint whose head has another size
 * is an error naming the tensor and both shapes. The head is fresh as cp_model_init_head says when the
 * checkpoint has none. */
CP_API cp_status cp_model_load_labels(cp_model **out, const char *dir, int flags, const char *task_type,
                                      const char *const *labels, int64_t num_labels, const char *problem_type);
/* id2label[id] of a SEQ_CLS / TOKEN_CLS model ("LABEL_<id>" when config.json names none); NULL
 * outside 0..num_labels-1 or for other tasks. */
CP_API const char *cp_model_label_name(const cp_model *m, int64_t id);
CP_API void cp_model_free(cp_model *m);

/* A batch of token sequences. Arrays are row-major (B,T); NULL means the default. */
typedef struct cp_batch {
    int64_t B, T;
    const int64_t *input_ids;      /* (B,T) required */
    const int64_t *attention_mask; /* (B,T) 1 = real token, 0 = padding; NULL = all ones */
    const int64_t *position_ids;   /* (B,T) NULL = 0..T-1 for every row, as transformers' forward */
    /* integer targets, by the model's task; NULL = no loss:
     *   CAUSAL_LM (B,T) next-token targets before the shift, -100 ignored;
     *   SEQ_CLS   (B) class indices (single-label classification; regression and multi-label
     *             take label_values instead);
     *   TOKEN_CLS (B,T) class indices, -100 ignored (no shift);
     *   SEQ_2_SEQ_LM (B,Td) the decoder's targets, -100 ignored (no shift: the shift is in the decoder
     *             inputs); with Td = 0 they are (B,T) and Td = T */
    const int64_t *labels;
    /* ---- ABI 2 ---- */
    const int64_t *token_type_ids; /* (B,T) segment ids (BERT family); NULL = zeros */
    const int64_t *bbox;           /* (B,T,4) LayoutLM boxes (x0,y0,x1,y1 in 0..1000); NULL = zeros */
    const float *label_values;     /* SEQ_CLS regression (B) or multi-label (B,K) float targets; NULL */
    /* ---- ABI 4: encoder-decoder models (SEQ_2_SEQ_LM) ----
     * input_ids / attention_mask (B,T) are the encoder's; the decoder's are (B,Td): */
    int64_t Td;                            /* decoder length; 0 = made from labels (Td = T_labels = T of labels) */
    const int64_t *decoder_input_ids;      /* (B,Td) NULL = shift_tokens_right(labels, pad, decoder_start_token_id) */
    const int64_t *decoder_attention_mask; /* (B,Td) NULL = all ones (transformers' default) */
} cp_batch;

typedef struct cp_outputs {
    float *logits;         /* (B,T,V) caller-allocated, or NULL: the loss is then computed in chunks
                              without materialising all logits. By task: SEQ_CLS (B,K), TOKEN_CLS
                              (B,T,K) with K = cp_model_num_labels; FEATURE_EXTRACTION (B,T,C), the
                              final hidden states */
    float *hidden_states;  /* (L+1,B,T,C) caller-allocated or NULL: transformers' output_hidden_states */
    double loss;           /* the task's loss as transformers reports it (labels given): mean causal-LM
                              cross-entropy over non-ignored targets; SEQ_CLS by problem_type (MSE,
                              cross-entropy, BCE-with-logits); TOKEN_CLS cross-entropy */
    int64_t loss_tokens;   /* number of items the loss averages over (targets, rows or elements) */
} cp_outputs;

/* Runs the model's task on a batch (eval mode: no dropout). An encoder-decoder (SEQ_2_SEQ_LM: t5, mt5)
 * runs its encoder over input_ids / attention_mask and its decoder over the ABI 4 fields: logits are
 * (B,Td,V), the loss each decoder position's cross-entropy against its label (no shift), and
 * hidden_states the decoder's ((L_dec+1),B,Td,C). */
CP_API cp_status cp_model_forward(cp_model *m, const cp_batch *batch, cp_outputs *out);

/* Inference with quantized weights (GGUF Q*, CP_LOAD_QUANTIZE_*): on = 1 lets every later forward that
 * is not training (generation, evaluation) multiply a quantized weight by few rows (up to 32: a
 * decoding step) with its input rounded to 8 bits per block and integer dot products, as llama.cpp
 * does: faster, with logits that differ slightly from the exact product. 0 (the default after load):
 * the exact product with the dequantized weight, which training always uses. */
CP_API void cp_model_set_quant_act8(cp_model *m, int on);

/* Sizes. */
CP_API int64_t cp_model_vocab_size(const cp_model *m);
CP_API int64_t cp_model_hidden_size(const cp_model *m);
CP_API int64_t cp_model_num_layers(const cp_model *m);
CP_API int64_t cp_model_max_positions(const cp_model *m);
CP_API const char *cp_model_type(const cp_model *m);
/* The task the model was loaded for, as PEFT names it ("CAUSAL_LM", "SEQ_CLS", ...). */
CP_API const char *cp_model_task_type(const cp_model *m);
/* K, the classifier's outputs for SEQ_CLS and TOKEN_CLS; 0 for the other tasks. */
CP_API int64_t cp_model_num_labels(const cp_model *m);
/* sum(p.numel() for p in model.parameters()): tied weights counted once. */
CP_API int64_t cp_model_num_parameters(const cp_model *m);
/* print(model) as PyTorch shows it; caller frees with free(). */
CP_API char *cp_model_repr(const cp_model *m);

/* FEATURE_EXTRACTION: one embedding per row of the batch from the final hidden states, as
 * sentence-transformers' Pooling (+ Normalize) modules compute it: the mean over the positions
 * whose attention_mask is 1, the first position ([CLS]), or the last real one; then, when
 * `normalize`, divided by its L2 norm. out is (B, hidden_size), caller-allocated. Adapters apply. */
typedef enum { CP_EMBED_MEAN = 0, CP_EMBED_CLS = 1, CP_EMBED_LAST = 2 } cp_embed_pooling;
CP_API cp_status cp_model_embed(cp_model *m, const cp_batch *batch, cp_embed_pooling pooling, int normalize, float *out);

/* ---- PEFT: LoRA adapters, by name --------------------------------------------------------------- */
/* Adapters live on the model as in PEFT: each has a name ("default" unless named), any subset can be
 * active, and the model can run with all of them disabled (the base model). */

/* get_peft_model / add_adapter: injects a LoRA adapter described by a PEFT adapter_config.json,
 * initialised as PEFT does from `seed`. The first adapter becomes active; later ones are added
 * inactive (use cp_model_set_adapters). As in PEFT, a config saying "inference_mode": true (every
 * config save_pretrained writes does) gives a frozen adapter: 0 trainable parameters, biases of
 * bias "all" / "lora_only" excepted. */
CP_API cp_status cp_model_add_adapter(cp_model *m, const char *name, const char *adapter_config_path, uint64_t seed);
/* PeftModel.from_pretrained / load_adapter: a PEFT adapter directory (adapter_config.json +
 * adapter_model.safetensors). The first adapter becomes active. is_trainable as in PEFT. */
CP_API cp_status cp_model_load_adapter(cp_model *m, const char *dir, const char *name, int is_trainable);
/* save_pretrained of one adapter: DIR/adapter_config.json + DIR/adapter_model.safetensors, as PEFT
 * writes them. Files are written under temporary names and renamed into place. */
CP_API cp_status cp_model_save_adapter(cp_model *m, const char *name, const char *dir);
/* The active set, in order (several active adapters add their deltas). */
CP_API cp_status cp_model_set_adapters(cp_model *m, const char *const *names, int n);
/* disable_adapter(): 1 runs the base model (merged adapters are unmerged first), 0 restores. */
CP_API void cp_model_disable_adapters(cp_model *m, int disabled);
CP_API cp_status cp_model_delete_adapter(cp_model *m, const char *name);
/* merge_adapter / unmerge_adapter of the active adapters, in place. */
CP_API cp_status cp_model_merge_adapters(cp_model *m);
CP_API cp_status cp_model_unmerge_adapters(cp_model *m);
/* add_weighted_adapter with combination_type "linear" or "cat" (PEFT's semantics, cross terms
 * included for "linear"). The new adapter is not activated. */
CP_API cp_status cp_model_add_weighted_adapter(cp_model *m, const char *const *names, const double *weights, int n,
                                               const char *new_name, const char *combination_type);
/* merge_and_unload saved as a complete Hugging Face checkpoint in OUT (which must not exist):
 * config.json, model.safetensors in the base dtype, tokenizer files copied. */
CP_API cp_status cp_model_save_merged(cp_model *m, const char *out_dir);

/* (trainable, all) parameters as PEFT's get_nb_trainable_parameters counts them. */
CP_API void cp_model_trainable_parameters(const cp_model *m, int64_t *trainable, int64_t *all);
typedef enum {
    CP_PEFT_LINE_NOTEBOOK = 0, /* "trainable params: 2359296 || all params: 1317935104 || trainable%: 0.17901458067543818" */
    CP_PEFT_LINE_CURRENT = 1,  /* PEFT ≥ 0.11: "trainable params: 2,359,296 || all params: 1,317,935,104 || trainable%: 0.1790" */
} cp_peft_line_style;
/* print_trainable_parameters()'s line (no newline); caller frees with free(). */
CP_API char *cp_model_trainable_parameters_line(const cp_model *m, cp_peft_line_style style);
/* print(peft_model): the PeftModel repr with lora.Linear / ModulesToSaveWrapper wrappers (the
 * plain model repr when no adapter is loaded); caller frees with free(). */
CP_API char *cp_model_peft_repr(const cp_model *m);

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
CP_API cp_status cp_tokenizer_load_dir(cp_tokenizer **out, const char *model_dir);
/* The tokenizer of a GGUF file: the tokenizer files `cpeft convert` writes, loaded as
 * cp_tokenizer_load_dir loads them. */
CP_API cp_status cp_tokenizer_load_gguf(cp_tokenizer **out, const char *gguf_path);
/* Loads one tokenizer.json file (no tokenizer_config.json). */
CP_API cp_status cp_tokenizer_load_file(cp_tokenizer **out, const char *tokenizer_json_path);
/* Loads tokenizer.json content held in memory (len bytes, need not be NUL-terminated). */
CP_API cp_status cp_tokenizer_load_json(cp_tokenizer **out, const char *json, size_t len);
CP_API void cp_tokenizer_free(cp_tokenizer *tok);

/* Encodes len bytes of text. add_special_tokens applies the post-processor's template ([CLS] ...
 * [SEP], <s> ...), as transformers does by default. out must be zero-initialised or previously
 * used (its buffers are reused). */
CP_API cp_status cp_tokenizer_encode(const cp_tokenizer *tok, const char *text, size_t len,
                                     int add_special_tokens, cp_encoding *out);
/* Same for a pair of texts (sequence A and B; type ids 0 and 1 where the template says so).
 * Offsets of B's tokens refer to text_b. */
CP_API cp_status cp_tokenizer_encode_pair(const cp_tokenizer *tok, const char *text_a, size_t len_a,
                                          const char *text_b, size_t len_b, int add_special_tokens,
                                          cp_encoding *out);
CP_API void cp_encoding_free(cp_encoding *enc);

/* Decodes ids to UTF-8 text: *out (free with free()) holds *len bytes and a NUL after them. The
 * text may itself contain NUL bytes (a byte-fallback <0x00> token, a "\u0000" in the vocabulary),
 * so it is bytes with a length, as tokenizers' Python str is: use *len, not strlen. len may be
 * NULL when the caller only needs the text up to its first NUL. An id outside the vocabulary is
 * an error naming it. skip_special_tokens drops special added tokens. */
CP_API cp_status cp_tokenizer_decode(const cp_tokenizer *tok, const int32_t *ids, size_t n,
                                     int skip_special_tokens, char **out, size_t *len);

/* Vocabulary: model vocabulary plus added tokens (largest id + 1). */
CP_API size_t cp_tokenizer_vocab_size(const cp_tokenizer *tok);
/* Token string for an id (as stored in the vocabulary, e.g. "Ġworld"), or NULL if out of range. */
CP_API const char *cp_tokenizer_id_to_token(const cp_tokenizer *tok, int32_t id);
/* Id of a token string, or CP_TOKEN_NONE. */
CP_API int32_t cp_tokenizer_token_to_id(const cp_tokenizer *tok, const char *token);
/* Nonzero if id is a special added token (<|endoftext|>, [CLS], ...). */
CP_API int cp_tokenizer_is_special(const cp_tokenizer *tok, int32_t id);

/* The special tokens transformers knows by role. */
typedef enum { CP_SPECIAL_BOS, CP_SPECIAL_EOS, CP_SPECIAL_PAD, CP_SPECIAL_UNK } cp_special_role;
/* Id of the token with that role, or CP_TOKEN_NONE when it is not set. */
CP_API int32_t cp_tokenizer_special_id(const cp_tokenizer *tok, cp_special_role role);
/* Like cp_tokenizer_special_id but an unset role is an error whose message is transformers'
 * ("Using pad_token, but it is not set yet."). */
CP_API cp_status cp_tokenizer_require_special(const cp_tokenizer *tok, cp_special_role role, int32_t *id);
/* Sets (or, with token NULL, clears) a role; the token must be in the vocabulary. Training uses
 * this to pick its documented pad default (the eos token) when a tokenizer has no pad token. */
CP_API cp_status cp_tokenizer_set_special(cp_tokenizer *tok, cp_special_role role, const char *token);
/* Whether transformers would add bos / eos when encoding (from tokenizer_config.json's
 * add_bos_token / add_eos_token, else what the post-processor does). */
CP_API int cp_tokenizer_adds_bos(const cp_tokenizer *tok);
CP_API int cp_tokenizer_adds_eos(const cp_tokenizer *tok);

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
    /* ---- ABI 4: beam search (GenerationMixin._beam_search), chosen when num_beams > 1; see
     * docs/generate.md. It keeps num_beams running beams per prompt, takes the best
     * max(2, 1 + n_eos)·num_beams continuations per step and keeps the best num_beams finished
     * hypotheses, scored sum(log-probs) / generated_length^length_penalty (the prompt is not
     * counted; the eos token is). Greedy only (do_sample refused), no stop strings or on_token. ---- */
    int64_t num_beams;            /* ≥ 1 (default 1, or generation_config.json's num_beams) */
    double length_penalty;        /* the exponent above (default 1; < 0 favours short sequences) */
    int early_stopping;           /* CP_EARLY_STOPPING_*: when a prompt's search ends (default false) */
    int64_t no_repeat_ngram_size; /* > 0: no n-gram of this size occurs twice in a row's sequence (the
                                     prompt and its left padding included, as transformers);
                                     greedy and sampling too; 0 = off */
    int64_t num_return_sequences; /* 1 ≤ m ≤ num_beams: the best m finished beams of each prompt
                                     (default 1); must be 1 without beam search */
    /* transformers' ForcedBOS / ForcedEOSTokenLogitsProcessor (BART's configs set them): the first
     * new token is forced_bos_token_id, and the token that fills the sequence's last column
     * (max_new_tokens reached) is forced_eos_token_id; CP_TOKEN_NONE = off (the default unless
     * generation_config.json, else config.json, sets them) */
    int32_t forced_bos_token_id, forced_eos_token_id;
} cp_generate_options;

/* cp_generate_options.early_stopping, transformers' early_stopping: */
enum {
    CP_EARLY_STOPPING_FALSE = 0, /* stop a prompt when no running beam can beat its worst finished one,
                                    judged at the current length (transformers' default) */
    CP_EARLY_STOPPING_TRUE = 1,  /* stop a prompt as soon as num_beams hypotheses have finished */
    CP_EARLY_STOPPING_NEVER = 2, /* "never": judged at the best length a running beam could reach */
};

/* Defaults for m: 64 new tokens, greedy; temperature, top_k, top_p, repetition_penalty, num_beams,
 * length_penalty, early_stopping and no_repeat_ngram_size from the model directory's
 * generation_config.json when it sets them, else transformers' defaults (1, 50, 1, 1, 1, 1, false,
 * 0); num_return_sequences 1; forced_bos_token_id / forced_eos_token_id from generation_config.json when the
 * model directory has one, else config.json (CP_TOKEN_NONE when unset or null); eos ids from generation_config.json,
 * else config.json (one id or a list); pad_token_id
 * likewise, else the first eos id. generation_config.json's do_sample is not followed: greedy
 * unless the caller sets do_sample. */
CP_API cp_status cp_generate_options_init(const cp_model *m, cp_generate_options *opt);

/* The result: for each prompt, its new tokens (the eos or stop token that ended it included).
 * With num_return_sequences m, n = prompts · m: sequence i belongs to prompt i / m, best first. */
typedef struct cp_generation {
    int64_t n;
    int32_t **tokens;         /* [n][n_tokens[i]] */
    int64_t *n_tokens;        /* [n] */
    cp_finish_reason *finish; /* [n] */
    /* ---- ABI 4 ---- */
    int64_t num_return_sequences; /* m: sequences per prompt */
    float *sequences_scores;      /* [n] beam search: each sequence's score as transformers'
                                     sequences_scores (see length_penalty); NULL without beam search */
} cp_generation;

/* Generates for n prompts (token ids, unpadded, prompt_lens[i] > 0) in one left-padded batch:
 * prefill, then one forward per new token for all unfinished prompts, with the active adapters
 * (or per-prompt adapters, opt->adapter_names). A prompt longer than the model's positions − 1 is
 * truncated from the left with a warning; generation stops when the sequence fills the positions.
 * Bad options (temperature ≤ 0 or top_p outside (0, 1] when sampling, an unknown adapter name, ...)
 * are errors before anything runs. out is filled on success; free with cp_generation_free. */
CP_API cp_status cp_model_generate(cp_model *m, const int32_t *const *prompts, const int64_t *prompt_lens, int64_t n,
                                   const cp_generate_options *opt, cp_generation *out);
CP_API void cp_generation_free(cp_generation *g);

/* ---- training ------------------------------------------------------------------------------------ */
/* LoRA fine-tuning with the Hugging Face Trainer's step accounting: AdamW (torch.optim.AdamW),
 * transformers' learning-rate schedules, gradient accumulation with the loss averaged over all
 * target tokens of a step, gradient clipping, evaluation, checkpoint-N/ directories and exact
 * resumption. A run is a pure function of its options and data: the same options give the same
 * adapter bytes, and a run resumed from checkpoint-N ends on the bytes of the run that was not
 * stopped. `cpeft train` is this API plus printing, signal handling and the loss plot
 * (src/cli/cmd_train.c); README "Using the library" and examples/finetune.c show it in use. */

/* A LoRA adapter described by values rather than an adapter_config.json (PEFT's LoraConfig with
 * task_type CAUSAL_LM and its defaults for every field not here). */
typedef struct cp_lora_options {
    int64_t r;                   /* rank (default 8) */
    double alpha;                /* lora_alpha (16); the scale is alpha / r */
    double dropout;              /* lora_dropout in [0, 1) (0.05) */
    const char *target_modules;  /* "q_proj,v_proj" (names matched as PEFT matches a list), "all-linear",
                                    or NULL (the default): PEFT's table for the model type */
    const char *bias;            /* "none" (the default), "all" or "lora_only" */
    const char *modules_to_save; /* "lm_head,ln_f" or NULL (the default) */
} cp_lora_options;

/* Fills o with the defaults above. */
CP_API void cp_lora_options_init(cp_lora_options *o);
/* get_peft_model / add_adapter with a LoraConfig built from o: adapter `name` (NULL: "default"),
 * trainable, initialised as PEFT does from `seed`. The first adapter becomes active. */
CP_API cp_status cp_model_add_lora_adapter(cp_model *m, const char *name, const cp_lora_options *o, uint64_t seed);

typedef enum {
    CP_LR_CONSTANT = 0,
    CP_LR_CONSTANT_WITH_WARMUP = 1,
    CP_LR_LINEAR = 2,            /* the default, as in TrainingArguments */
    CP_LR_COSINE = 3,
} cp_lr_scheduler;

/* "linear", "cosine", "constant", "constant_with_warmup" (transformers' names). */
CP_API cp_status cp_lr_scheduler_parse(const char *name, cp_lr_scheduler *out);
CP_API const char *cp_lr_scheduler_name(cp_lr_scheduler s);

/* What the progress callbacks receive. */
typedef struct cp_train_progress {
    int64_t step;                /* optimizer steps done, resumed ones included (1 after the first) */
    int64_t total_steps;         /* the run's length (max_steps, or the epochs' steps) */
    double epoch;                /* fractional epochs done: step × accumulation / micro-batches per epoch */
    double loss;                 /* on_step: this step's mean token loss; on_log: the mean of the step
                                    losses since the previous log */
    double learning_rate;        /* the rate this step ran at */
    double grad_norm;            /* this step's gradient norm before clipping */
    int64_t tokens;              /* input tokens (attention_mask 1): on_step this step's, on_log the sum
                                    since the previous log */
    double tokens_per_second;    /* those tokens over the time they took */
    double seconds_per_step;     /* this run's mean so far (resumed steps excluded) */
    double eta_seconds;          /* seconds_per_step × the steps left */
} cp_train_progress;

typedef enum {
    CP_EVAL_BEFORE_TRAINING = 0, /* step 0 of a fresh run, as a starting point */
    CP_EVAL_DURING = 1,          /* every eval_steps steps (and at the last step) */
    CP_EVAL_AFTER_TRAINING = 2,  /* once at the end, when eval_steps is 0 */
} cp_eval_when;

typedef struct cp_train_eval {
    int64_t step, total_steps;
    double loss;                 /* mean token loss over the evaluation data (SEQ_CLS / TOKEN_CLS: the
                                    mean over rows / labelled tokens, as transformers reports it) */
    cp_eval_when when;
    /* ---- ABI 2: classification metrics, NAN where the task has none ---- */
    double accuracy, macro_f1;   /* SEQ_CLS single-label: sklearn's accuracy_score, f1_score(average="macro") */
    double precision, recall, f1;/* TOKEN_CLS: entity-level micro averages as seqeval computes them
                                    (TOKEN_CLS also fills accuracy: over labelled tokens) */
    int64_t examples;            /* evaluation records */
} cp_train_eval;

typedef enum {
    CP_SAVE_CHECKPOINT = 0,      /* output_dir/checkpoint-N/: adapter + optimizer.safetensors +
                                    trainer_state.json, every save_steps and when stopped */
    CP_SAVE_FINAL = 1,           /* the final adapter: output_dir/adapter-step-N/, committed as
                                    output_dir/adapter_config.json + adapter_model.safetensors */
} cp_save_kind;

typedef struct cp_train_save {
    int64_t step;
    const char *dir;             /* the directory written, complete and in place */
    cp_save_kind kind;
} cp_train_save;

/* Callbacks, each optional (NULL). They run on the thread that called cp_trainer_run or
 * cp_trainer_step, between steps, with `user` as given. A nonzero return ends the run at once
 * with CP_ERR ("stopped by the on_... callback"); checkpoints already written stay. Inside a
 * callback the program may use the trainer's model for inference (cp_model_forward,
 * cp_model_generate, cp_model_save_adapter) and call cp_trainer_get_info, cp_trainer_history and
 * cp_trainer_request_stop, but must not change the model's adapters or call cp_trainer_step,
 * cp_trainer_run, cp_trainer_evaluate or cp_trainer_free. */
typedef struct cp_train_callbacks {
    int (*on_step)(void *user, const cp_train_progress *p);     /* after every optimizer step */
    int (*on_log)(void *user, const cp_train_progress *p);      /* every logging_steps steps and at the last */
    int (*on_evaluate)(void *user, const cp_train_eval *e);     /* after each evaluation */
    int (*on_save)(void *user, const cp_train_save *s);         /* after each checkpoint and the final adapter */
    void *user;
} cp_train_callbacks;

/* The options of a run, named after Hugging Face TrainingArguments (messages name them by the
 * `cpeft train` flags: --learning-rate for learning_rate, ...). */
typedef struct cp_train_options {
    /* data: plain text (cut into blocks of max_seq_length tokens), JSONL / JSON records with a text
     * field, or instruction records (instruction, input, output; loss on the response only), any of
     * them gzip- or zstd-compressed; see README "Formats" */
    const char *data_path;            /* required */
    const char *eval_data_path;       /* NULL: none, or validation_split */
    double validation_split;          /* fraction held out for evaluation when no eval file (0: none) */
    const char *text_field;           /* JSON text records ("text") */
    int strict;                       /* a malformed record is an error (0: skipped and counted) */
    int64_t max_seq_length;           /* 0 (the default): the model's positions, at most 1024 */
    /* the adapter: an adapter of the model called adapter_name is trained as it is; without one it
     * is created from peft_config_path (a PEFT adapter_config.json) or else from lora, seeded from
     * seed; with resume_from it is read from the checkpoint */
    const char *adapter_name;         /* NULL: "default" */
    const char *peft_config_path;
    cp_lora_options lora;
    /* TrainingArguments, with their defaults */
    double learning_rate;             /* 5e-5 */
    double weight_decay;              /* 0 */
    double adam_beta1, adam_beta2, adam_epsilon; /* 0.9, 0.999, 1e-8 */
    double max_grad_norm;             /* 1 (0 or less: no clipping) */
    double num_train_epochs;          /* 3 */
    int64_t max_steps;                /* -1: from num_train_epochs */
    int64_t per_device_train_batch_size; /* 8 */
    int64_t gradient_accumulation_steps; /* 1 */
    cp_lr_scheduler lr_scheduler_type;/* CP_LR_LINEAR */
    int64_t warmup_steps;             /* 0: warmup_ratio × total steps */
    double warmup_ratio;              /* 0 */
    int64_t logging_steps;            /* 500: on_log and metrics.jsonl */
    int64_t eval_steps;               /* 0: evaluate once, at the end */
    int64_t save_steps;               /* 500 (0: no checkpoints before the end) */
    int64_t seed;                     /* 42: adapter init, data order, LoRA and model dropout */
    int gradient_checkpointing;       /* recompute activations in the backward pass */
    /* output: with output_dir NULL nothing is written (the program saves the adapter itself);
     * otherwise output_dir is locked for the trainer's life and gets metrics.jsonl, checkpoint-N/
     * and the final adapter, each written complete before it replaces anything (a kill at any
     * instant leaves the previous complete files) */
    const char *output_dir;
    int overwrite_output_dir;         /* write into an output_dir that is not empty (else refused) */
    const char *resume_from;          /* a checkpoint-N directory: continue exactly where it left off */
    const char *run_name;             /* how a second run on output_dir names this one while it holds
                                         it: "<run_name> (pid N)" (NULL: "cpeft") */
    cp_train_callbacks callbacks;
    /* ---- ABI 2: classification. The task is the model's (cp_model_load_labels / _load_task);
     * SEQ_CLS reads CSV / TSV (header row) or JSONL records, TOKEN_CLS CoNLL (token TAB tag) or
     * JSONL word lists; see README "Classification". The label set is discovered from data_path and
     * must have the model's num_labels entries (cp_model_load_labels gives the model that size);
     * eval data must use labels of that set. Each saved adapter directory gets config.json: the base
     * model's config with architectures, id2label, label2id and problem_type of the trained head. ---- */
    const char *task_type;            /* NULL: the model's task; else it must be the model's */
    const char *text_pair_field;      /* SEQ_CLS: the second text of a pair (NULL: single texts) */
    const char *label_field;          /* NULL: "label" (SEQ_CLS), "ner_tags" (TOKEN_CLS JSONL) */
    int64_t max_train_samples;        /* 0: all; else the file's first N examples (run_glue.py's flag) */
    int64_t max_eval_samples;         /* 0: all */
    /* ---- ABI 3 ---- */
    int model_dropout;                /* 1 (the default): the model's own dropout applies in training steps,
                                         every nn.Dropout of the transformers class with its config.json
                                         probability (hidden_dropout_prob, attn_pdrop, ...), as the Hugging
                                         Face Trainer runs the model in train() mode; masks from seed and
                                         step, so resuming stays exact. 0: only the adapter's dropout
                                         (lora_dropout). Evaluation never drops. */
    /* ---- ABI 4: SEQ_2_SEQ_LM (an encoder-decoder model: t5, mt5). Source / target records from CSV,
     * TSV or JSONL, tokenized as run_summarization.py does (source_prefix + source → the encoder,
     * the target → the labels; the decoder inputs are the labels shifted right); the loss is on the
     * target tokens. A record without its source or target is an error naming file:line; a text over
     * its maximum is truncated and counted (an error with strict). validation_split holds out a
     * fraction of the records when no eval file is given. See README "Sequence-to-sequence". ---- */
    const char *source_field;         /* NULL: "source" (E2E NLG: "mr") */
    const char *target_field;         /* NULL: "target" (E2E NLG: "ref") */
    const char *source_prefix;        /* prepended to every source ("summarize: "); NULL: none */
    int64_t max_source_length;        /* 0: 512 (tokens, special tokens included) */
    int64_t max_target_length;        /* 0: 128 */
    /* ---- ABI 5 ---- */
    int bf16;                         /* 0 (the default). 1: TrainingArguments(bf16=True): the products with
                                         frozen Linear / Conv1D weights and the LM head (forward and input
                                         gradient) in bf16 with f32 sums, as PyTorch's CPU autocast runs them
                                         (inputs and weights rounded to nearest even); f32 weights narrowed to
                                         bf16 once (half the memory), bf16 checkpoints used as stored. The
                                         adapter, its gradients, AdamW state, norms, attention, softmax and
                                         loss stay f32. Uses AVX-512 BF16; on a CPU without it the products are
                                         emulated (a notice on stderr). The model stays in bf16 after the run. */
    /* ---- ABI 6: TRL's dataset formats (README "Data formats"): prompt-completion records, loss on the
     * completion only; conversational records ("messages", or "prompt" / "completion" lists of
     * messages) rendered with the chat template and tokenized as TRL's SFTTrainer does. ---- */
    const char *chat_template;        /* NULL: the model directory's (chat_template.jinja, else
                                         tokenizer_config.json's "chat_template"); else a .jinja file, or a
                                         tokenizer_config.json whose "chat_template" is used */
    int assistant_only_loss;          /* 0 (the default). 1: conversational records take loss only on the
                                         template's {% generation %} blocks (TRL's assistant_only_loss); a
                                         template without them is refused */
    int completion_only_loss;         /* 1 (the default): prompt-completion records take loss on the
                                         completion only; 0: on the whole sequence */
    /* ---- ABI 7: the Trainer's best model, checkpoint rotation and reporting (README "Outputs of a
     * run"). Every checkpoint-N/ and the output_dir get trainer_state.json as the Trainer writes it
     * (log_history, global_step, best_metric, best_global_step, best_model_checkpoint, ...). ---- */
    const char *metric_for_best_model;/* NULL: "loss" with load_best_model_at_end, else no best is tracked;
                                         a name the evaluation reports ("loss", "accuracy", "f1", ... with
                                         or without "eval_"); the evaluation before training never counts */
    int greater_is_better;            /* -1 (the default): 1 unless the metric's name ends in "loss"; 0; 1 */
    int load_best_model_at_end;       /* 0 (the default). 1: after the run the model holds the best
                                         checkpoint's adapter and the final adapter in output_dir is its copy
                                         (when the best is the last step: that step's). Needs evaluation data
                                         and eval_steps > 0 with save_steps a round multiple of it (the
                                         Trainer's rule, its error messages), or both 0 */
    int64_t save_total_limit;         /* 0 (the default): keep every checkpoint-N/. N: after each save the
                                         oldest are deleted until N are left, never the newest nor the best */
    const char *report_to;            /* NULL or "none" (the default): no integration; "tensorboard" or
                                         "all": TensorBoard event files in logging_dir (a comma list is
                                         accepted: "tensorboard,none") */
    const char *logging_dir;          /* NULL: <output_dir>/runs/<Mon>DD_HH-MM-SS_<host> (the Trainer's) */
} cp_train_options;

/* Fills o with the defaults above (those of `cpeft train`; data_path must then be set). */
CP_API void cp_train_options_init(cp_train_options *o);
/* Checks every number as torch.optim.AdamW and TrainingArguments would (the message names the flag
 * and the value). cp_trainer_create runs it first. */
CP_API cp_status cp_train_options_check(const cp_train_options *o);

typedef struct cp_trainer cp_trainer;

/* Sets up a run on model m (with tokenizer tok, which reads the data): checks the options, takes
 * output_dir, reads and tokenizes the data, attaches or reads the adapter (see adapter_name), sets
 * up AdamW and, with resume_from, restores the checkpoint's optimizer and position. The padding
 * token is the tokenizer's, else its eos (never part of the loss). m and tok are borrowed: they
 * must outlive the trainer, and the model's adapters must not change while it exists (see
 * Threading). The options are copied. */
CP_API cp_status cp_trainer_create(cp_trainer **out, cp_model *m, const cp_tokenizer *tok, const cp_train_options *o);
/* SEQ_CLS / TOKEN_CLS: the label set a run with options o will discover in o->data_path (read with
 * o's fields, as cp_trainer_create reads it), in class-id order, and for SEQ_CLS the problem type
 * ("single_label_classification", ...; NULL for TOKEN_CLS; a static string); load the model with
 * cp_model_load_labels(..., *labels, *n, *problem_type) before cp_trainer_create. Free the labels
 * with cp_train_labels_free. Errors name file:line. */
CP_API cp_status cp_train_data_labels(const cp_tokenizer *tok, const cp_train_options *o, const char *task_type, char ***labels,
                                      int64_t *n, const char **problem_type);
CP_API void cp_train_labels_free(char **labels, int64_t n);
/* Releases output_dir and frees the trainer; the model keeps the trained adapter. */
CP_API void cp_trainer_free(cp_trainer *t);

/* The whole run from where the trainer stands: an evaluation before training (a fresh run with
 * evaluation data), then steps up to total_steps with their logging, evaluations and checkpoints,
 * then the final evaluation (eval_steps 0) and, with output_dir, the final adapter. After
 * cp_trainer_request_stop it ends after the step under way, with a checkpoint when output_dir is
 * set, and returns CP_OK with cp_trainer_info.stopped set (the request is then consumed: a later
 * cp_trainer_run continues). A non-finite loss ends it with CP_ERR before that step is applied,
 * naming the last good checkpoint. */
CP_API cp_status cp_trainer_run(cp_trainer *t);
/* One optimizer step (gradient_accumulation_steps micro-batches) with its logging, evaluation and
 * checkpoint when the step's number calls for them; p (may be NULL) receives what on_step does.
 * For a program that drives the loop itself; it ignores stop requests and writes no final adapter
 * (save it with cp_model_save_adapter). An error once total_steps are done. */
CP_API cp_status cp_trainer_step(cp_trainer *t, cp_train_progress *p);
/* The mean token loss over the evaluation data (eval mode, no dropout). An error when the trainer
 * has no evaluation data. */
CP_API cp_status cp_trainer_evaluate(cp_trainer *t, double *loss);
/* The same with the task's metrics (loss and, for SEQ_CLS / TOKEN_CLS, those of cp_train_eval);
 * out->step is the trainer's step and out->when CP_EVAL_DURING. */
CP_API cp_status cp_trainer_evaluate_metrics(cp_trainer *t, cp_train_eval *out);
/* Asks the run to stop after the step under way. Async-signal-safe and thread-safe: call it from a
 * SIGINT handler or another thread. A request made before cp_trainer_run starts stops it before
 * its first step. */
CP_API void cp_trainer_request_stop(cp_trainer *t);

/* Where a trainer stands. */
typedef struct cp_trainer_info {
    int64_t train_examples, train_tokens;
    int64_t train_loss_tokens;        /* target tokens (labels not -100) */
    int64_t train_truncated;          /* records cut to max_seq_length */
    int64_t train_skipped;            /* malformed records skipped */
    int64_t eval_examples;            /* 0: no evaluation data */
    int64_t eval_truncated;
    int64_t max_seq_length;           /* as resolved */
    int32_t pad_token_id;
    int pad_is_eos;                   /* the tokenizer has no pad token: its eos pads */
    int64_t total_steps, steps_per_epoch, warmup_steps;
    int64_t start_step;               /* the checkpoint's step when resumed, else 0 */
    int64_t step;                     /* optimizer steps done (start_step included) */
    int64_t last_checkpoint;          /* step of the newest checkpoint written or resumed from (0: none) */
    int stopped;                      /* the last cp_trainer_run ended on a stop request */
    int output_files_cleaned;         /* half-written files of killed earlier runs removed from output_dir */
    /* ---- ABI 4: SEQ_2_SEQ_LM (train_truncated / eval_truncated count the sources cut) ---- */
    int64_t train_target_truncated, eval_target_truncated; /* targets cut to max_target_length */
    int64_t max_source_length, max_target_length;          /* as resolved (0 for other tasks) */
    /* ---- ABI 7 ---- */
    int64_t best_global_step;         /* the step of the best evaluation (0: none tracked yet) */
    double best_metric;               /* its metric_for_best_model value (NAN: none) */
    int64_t checkpoints_deleted;      /* checkpoint-N/ removed by save_total_limit in this run */
    const char *logging_dir;          /* where TensorBoard events go (NULL: not reporting); the trainer's */
} cp_trainer_info;
CP_API void cp_trainer_get_info(const cp_trainer *t, cp_trainer_info *out);

/* The logged losses (a resumed run's include the checkpoint's history), for a loss curve. The
 * arrays belong to the trainer and stay valid until its next step, run or free. */
typedef struct cp_train_history {
    int64_t n_train;
    const double *train_step, *train_loss;  /* [n_train]: one per on_log */
    int64_t n_eval;
    const double *eval_step, *eval_loss;    /* [n_eval]: one per evaluation */
} cp_train_history;
CP_API void cp_trainer_history(const cp_trainer *t, cp_train_history *out);

/* The peak resident memory the run should reach, part by part (bytes). */
typedef struct cp_train_memory_plan {
    int64_t batch_size, seq_len;      /* the largest micro-batch: B × the longest example */
    double frozen_bytes;              /* frozen weights */
    double mapped_bytes;              /* of which used in place from the checkpoint's mapping */
    int64_t trainable_values;
    double trainable_bytes;           /* trainable parameters; as much again for their gradients */
    double optimizer_bytes;           /* AdamW's two moments */
    double activation_bytes;          /* measured by running a training forward + backward of that batch */
    double activation_bytes_without_checkpointing; /* with gradient_checkpointing: the comparison,
                                         measured on 2 and 3 layers and extrapolated; else 0 */
    double other_bytes;               /* the rest of the process (code, libraries, tokenizer, data,
                                         BLAS buffers) measured as resident memory; -1: cannot be
                                         measured on this system (not in the total) */
    double total_bytes;               /* frozen + 4 × trainable (values, gradients, moments) +
                                         activations + other */
} cp_train_memory_plan;
/* Makes the plan; the dry run leaves the activation memory reserved, so the steps that follow
 * allocate nothing new. Optional; call it before the first step for a true "other" figure. */
CP_API cp_status cp_trainer_memory_plan(cp_trainer *t, cp_train_memory_plan *out);

#ifdef __cplusplus
}
#endif
#endif
