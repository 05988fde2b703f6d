/*
 * tokenizer.h — cpeft's text tokenizer: the public API.
 *
 * Loads a Hugging Face tokenizer (tokenizer.json, or the older vocab.json + merges.txt and vocab.txt
 * forms, with tokenizer_config.json / special_tokens_map.json) and encodes text to exactly the ids,
 * and byte offsets, that the Rust `tokenizers` library produces; decodes ids back to text.
 *
 * The declarations here are self-contained (only this header's own types) so that they can be
 * copied into include/cpeft.h. Every function that can fail returns CP_OK / CP_ERR (0 / -1) and
 * leaves a message for cp_last_error().
 *
 * Input text that is not valid UTF-8 is encoded as if each maximal invalid subsequence had been
 * replaced by U+FFFD (what Python's bytes.decode("utf-8", "replace") gives before the text reaches
 * `tokenizers`); offsets still refer to the bytes of the text as passed.
 *
 * A cp_tokenizer is immutable after loading except for an internal word cache that is guarded by
 * a lock, so one tokenizer may be shared by threads that encode concurrently.
 */
#ifndef CP_TOKENIZER_TOKENIZER_H
#define CP_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

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

/* Decodes ids to a NUL-terminated UTF-8 string (*out, free with free()). An id outside the
 * vocabulary is an error naming it. skip_special_tokens drops special added tokens. */
int cp_tokenizer_decode(const cp_tokenizer *tok, const int32_t *ids, size_t n,
                        int skip_special_tokens, char **out);

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

#endif
