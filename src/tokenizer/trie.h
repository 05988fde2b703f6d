/*
 * trie.h — byte trie for prefix search (internal; see trie.c).
 */
#ifndef CP_TOKENIZER_TRIE_H
#define CP_TOKENIZER_TRIE_H

#include "tokenizer/internal.h"

int tk_trie_create(tk_trie **out);
void tk_trie_free(tk_trie *t);
/* Inserts key (non-empty) with value >= 0, replacing an earlier value. */
int tk_trie_insert(tk_trie *t, const char *key, size_t len, int32_t value);
/* All keys that are prefixes of s[0..n), shortest first: their lengths and values (at most max_out). */
size_t tk_trie_prefixes(const tk_trie *t, const char *s, size_t n, size_t *lens, int32_t *values,
                        size_t max_out);
/* Whether any key starts with byte b. */
int tk_trie_first_byte(const tk_trie *t, unsigned char b);
size_t tk_trie_max_len(const tk_trie *t);

#endif
