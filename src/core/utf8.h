/*
 * utf8.h — UTF-8, once for the whole tree: validation, the lossy decoder's replacement rule, and
 * coding of single code points.
 *
 * Valid means what Rust's str::from_utf8 and Python's strict decoder accept (the Hugging Face
 * tokenizers, safetensors and serde_json all use the former): overlong forms, UTF-16 surrogates
 * (U+D800..U+DFFF) and code points above U+10FFFF are invalid. NUL bytes are valid UTF-8; callers
 * that refuse them check for them themselves.
 *
 * Not here: character classes (whitespace, punctuation, lowercase), which belong to the tokenizer
 * (tokenizer/charclass.c, tokenizer/unicode8.c).
 */
#ifndef CP_CORE_UTF8_H
#define CP_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 character at s[0..n), or 0 when s starts an invalid or
 * truncated sequence. n >= 1. */
size_t cp_utf8_char_len(const char *s, size_t n);
/* Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid, else the offset
 * of the first byte of the first invalid sequence. */
size_t cp_utf8_valid_prefix(const char *s, size_t n);
/* Whether all of s[0..n) is valid UTF-8. */
static inline int cp_utf8_valid(const char *s, size_t n) { return cp_utf8_valid_prefix(s, n) == n; }
/* Length (1..3) of the invalid sequence at s[0..n): the "maximal subpart" that Python's and Rust's
 * lossy decoders replace with one U+FFFD. s[0] must start an invalid sequence. */
size_t cp_utf8_invalid_len(const char *s, size_t n);

/* Whether b continues a character (10xxxxxx) rather than starting one. */
static inline int cp_utf8_is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }
/* Length of the valid UTF-8 character whose first byte is b. */
static inline size_t cp_utf8_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }
/* Decodes the valid UTF-8 character at s (the caller guarantees validity); sets *len. */
uint32_t cp_utf8_decode(const char *s, size_t *len);
/* Writes code point c (at most U+10FFFF) as UTF-8 into out (4 bytes of room); returns the length. */
size_t cp_utf8_encode(uint32_t c, char *out);

#endif
