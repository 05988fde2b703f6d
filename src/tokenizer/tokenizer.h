/*
 * tokenizer.h — cpeft's text tokenizer: the public API.
 *
 * Loads a Hugging Face tokenizer (tokenizer.json, or the older vocab.json + merges.txt and vocab.txt
 * forms, with tokenizer_config.json / special_tokens_map.json) and encodes text to exactly the ids,
 * and byte offsets, that the Rust `tokenizers` library produces; decodes ids back to text.
 *
 * The declarations are in include/cpeft.h, section "tokenizers". Every function that can fail returns CP_OK / CP_ERR (0 / -1) and
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

/* The tokenizer API is public: its declarations live in include/cpeft.h (one public header). */
#include "cpeft.h"

/* ---- internal to the library (not in include/cpeft.h) ------------------------------------------ */

/* One word of a pre-split input, as tokenizer(words, is_split_into_words=True) encodes each word:
 * on its own (added tokens, normalizer, pre-tokenizer, model), without special tokens. With
 * add_prefix_space, a byte-level pre-tokenizer puts a space before the word (before each piece between
 * added tokens) unless it starts with one, as transformers' from_pretrained(add_prefix_space=True)
 * makes it do (GPT-2 and RoBERTa refuse pre-split words without it); other pre-tokenizers ignore it
 * (Metaspace already marks every word: each is a sequence of its own). */
cp_status cp_tokenizer_encode_word(const cp_tokenizer *tok, const char *word, size_t len, int add_prefix_space,
                                   cp_encoding *out);
/* Whether the pre-tokenizer is byte-level (ByteLevel, alone or in a Sequence). */
int cp_tokenizer_is_byte_level(const cp_tokenizer *tok);
/* The post-processor on ids already encoded (without special tokens) and, when ids_b is not NULL, a
 * second sequence: special tokens, type ids and special_mask as cp_tokenizer_encode(_pair) with
 * add_special_tokens gives them; offsets are all 0. This is how truncated sequences get their special
 * tokens (transformers truncates before the post-processor). With n_a = n_b = 0 it tells how many
 * tokens the post-processor adds. */
cp_status cp_tokenizer_post_process(const cp_tokenizer *tok, const int32_t *ids_a, size_t n_a, const int32_t *ids_b,
                                    size_t n_b, cp_encoding *out);

#endif
