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

#endif
