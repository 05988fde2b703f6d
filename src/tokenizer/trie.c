/*
 * trie.c — a byte trie with integer values, for common-prefix search (Unigram pieces) and
 * leftmost-longest matching of added tokens. The root's children are a 256-entry table; deeper
 * nodes keep their children as a sibling list (vocabularies branch little below the first byte).
 */
#include "tokenizer/trie.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

struct tk_trie {
    struct tnode { uint32_t child, sibling; int32_t value; uint8_t byte; } *n;
    size_t count, cap;
    uint32_t root[256];
    size_t max_len;
};

int tk_trie_create(tk_trie **out) {
    tk_trie *t = cp_calloc(1, sizeof *t, "a trie");
    if (!t) return CP_ERR;
    t->cap = 1024;
    t->n = cp_malloc(t->cap * sizeof *t->n, "a trie");
    if (!t->n) { free(t); return CP_ERR; }
    t->count = 1; /* node 0 is "none" */
    *out = t;
    return CP_OK;
}

void tk_trie_free(tk_trie *t) {
    if (!t) return;
    free(t->n);
    free(t);
}

static uint32_t new_node(tk_trie *t, uint8_t byte) {
    if (cp_grow(&t->n, &t->cap, t->count + 1, sizeof *t->n, 256, "a trie")) return 0;
    t->n[t->count] = (struct tnode){0, 0, -1, byte};
    return (uint32_t)t->count++;
}

int tk_trie_insert(tk_trie *t, const char *key, size_t len, int32_t value) {
    if (len == 0) return CP_OK;
    const unsigned char *k = (const unsigned char *)key;
    uint32_t cur = t->root[k[0]];
    if (!cur) {
        if (!(cur = new_node(t, k[0]))) return CP_ERR;
        t->root[k[0]] = cur;
    }
    for (size_t i = 1; i < len; i++) {
        uint32_t c = t->n[cur].child, prev = 0;
        while (c && t->n[c].byte != k[i]) { prev = c; c = t->n[c].sibling; }
        if (!c) {
            if (!(c = new_node(t, k[i]))) return CP_ERR;
            if (prev) t->n[prev].sibling = c;
            else t->n[cur].child = c;
        }
        cur = c;
    }
    t->n[cur].value = value;
    if (len > t->max_len) t->max_len = len;
    return CP_OK;
}

size_t tk_trie_prefixes(const tk_trie *t, const char *s, size_t n, size_t *lens, int32_t *values,
                        size_t max_out) {
    if (n == 0) return 0;
    const unsigned char *k = (const unsigned char *)s;
    uint32_t cur = t->root[k[0]];
    size_t found = 0;
    for (size_t i = 0; cur; ) {
        if (t->n[cur].value >= 0 && found < max_out) {
            lens[found] = i + 1;
            values[found++] = t->n[cur].value;
        }
        if (++i >= n) break;
        uint32_t c = t->n[cur].child;
        while (c && t->n[c].byte != k[i]) c = t->n[c].sibling;
        cur = c;
    }
    return found;
}

int tk_trie_first_byte(const tk_trie *t, unsigned char b) { return t->root[b] != 0; }
size_t tk_trie_max_len(const tk_trie *t) { return t->max_len; }
