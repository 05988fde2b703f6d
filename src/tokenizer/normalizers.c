/*
 * normalizers.c — the `normalizer` slot of tokenizer.json: NFC, NFD, NFKC, NFKD, Lowercase,
 * StripAccents, Nmt, Replace, Prepend, Strip, BertNormalizer, Precompiled, ByteLevel, Sequence.
 *
 * Each normalizer rewrites a tk_nstr through tk_nstr_transform with the same (char, change)
 * stream HF produces, so alignments (and hence offsets) match. Text that is pure ASCII skips the
 * Unicode normalization forms, which leave it unchanged with identical alignments.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int tk_unorm_changes(const char *s, size_t len, int compose, int compat, tk_changes *out);

typedef struct tk_precompiled tk_precompiled;
int tk_precompiled_from_base64(tk_precompiled **out, const char *b64, const char *path);
void tk_precompiled_free(tk_precompiled *p);
int tk_precompiled_apply(const tk_precompiled *p, tk_nstr *ns);
/* The byte → char table of byte-level BPE (pre_tokenizers.c). */
extern const uint16_t tk_bytes_char[256];

typedef enum {
    N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWERCASE, N_STRIP_ACCENTS, N_NMT, N_REPLACE, N_PREPEND,
    N_STRIP, N_BERT, N_PRECOMPILED, N_BYTELEVEL, N_SEQUENCE
} ntype;
static const char *const NAMES[] = {
    [N_NFC] = "NFC", [N_NFD] = "NFD", [N_NFKC] = "NFKC", [N_NFKD] = "NFKD", [N_LOWERCASE] = "Lowercase",
    [N_STRIP_ACCENTS] = "StripAccents", [N_NMT] = "Nmt", [N_REPLACE] = "Replace", [N_PREPEND] = "Prepend",
    [N_STRIP] = "Strip", [N_BERT] = "BertNormalizer", [N_PRECOMPILED] = "Precompiled", [N_BYTELEVEL] = "ByteLevel",
    [N_SEQUENCE] = "Sequence",
};

struct tk_normalizer {
    tk_component_head head; /* kind: a ntype; children: a Sequence's */
    /* Replace */
    tk_regex *pattern;
    char *content;
    /* Prepend */
    char *prepend;
    /* Strip */
    int left, right;
    /* BertNormalizer */
    int clean_text, handle_chinese_chars, strip_accents, lowercase;
    tk_precompiled *precompiled;
};

/* Frees what a normalizer owns besides its head (tk_component_free does the rest). */
static void release(void *obj) {
    tk_normalizer *n = obj;
    tk_regex_free(n->pattern);
    free(n->content);
    free(n->prepend);
    tk_precompiled_free(n->precompiled);
}

/* Parses {"String": s} or {"Regex": r} (Replace, Split). */
int tk_parse_pattern(const cJSON *j, const char *path, tk_regex **out);
int tk_parse_pattern(const cJSON *j, const char *path, tk_regex **out) {
    char p[256];
    tk_path(p, sizeof p, path, "pattern", 0);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
    if (!cJSON_IsObject(pat))
        return cp_error("%s: expected {\"String\": ...} or {\"Regex\": ...}", p);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    if (cJSON_IsString(s)) return tk_regex_literal(out, s->valuestring, strlen(s->valuestring));
    if (cJSON_IsString(r)) return tk_regex_compile(out, r->valuestring, strlen(r->valuestring), p);
    return cp_error("%s: expected {\"String\": ...} or {\"Regex\": ...} with a string value", p);
}

/* Reads the fields of a normalizer of the kind in its head (a Sequence's children: the caller). */
static int parse(void *obj, const cJSON *j, const char *path) {
    tk_normalizer *n = obj;
    const char *s;
    int rc = CP_OK;
    switch ((ntype)n->head.kind) {
    case N_NFC: case N_NFD: case N_NFKC: case N_NFKD: case N_LOWERCASE: case N_STRIP_ACCENTS: case N_NMT:
    case N_BYTELEVEL: case N_SEQUENCE: /* no fields */
        break;
    case N_REPLACE:
        rc = tk_parse_pattern(j, path, &n->pattern);
        if (!rc) rc = tk_json_str(j, "content", NULL, 0, &s, path);
        if (!rc && !s) rc = cp_error("%s.content: expected a string", path);
        if (!rc && !(n->content = cp_strdup(s))) rc = CP_ERR;
        break;
    case N_PREPEND:
        rc = tk_json_str(j, "prepend", NULL, 0, &s, path);
        if (!rc && !s) rc = cp_error("%s.prepend: expected a string", path);
        if (!rc && !(n->prepend = cp_strdup(s))) rc = CP_ERR;
        break;
    case N_STRIP:
        rc = tk_json_bool(j, "strip_left", 1, &n->left, path);
        if (!rc) rc = tk_json_bool(j, "strip_right", 1, &n->right, path);
        break;
    case N_BERT: {
        rc = tk_json_bool(j, "clean_text", 1, &n->clean_text, path);
        if (!rc) rc = tk_json_bool(j, "handle_chinese_chars", 1, &n->handle_chinese_chars, path);
        if (!rc) rc = tk_json_bool(j, "lowercase", 1, &n->lowercase, path);
        if (!rc) rc = tk_json_bool(j, "strip_accents", -1, &n->strip_accents, path);
        if (!rc && n->strip_accents < 0) n->strip_accents = n->lowercase;
        break;
    }
    case N_PRECOMPILED:
        rc = tk_json_str(j, "precompiled_charsmap", NULL, 1, &s, path);
        if (!rc && s) rc = tk_precompiled_from_base64(&n->precompiled, s, path);
        break;
    }
    return rc;
}

const tk_component_class tk_normalizer_class = {
    "normalizer", NAMES, N_SEQUENCE, "normalizers", sizeof(tk_normalizer), parse, release,
};

static int is_ascii(const tk_nstr *ns) {
    for (size_t i = 0; i < ns->len; i++)
        if ((unsigned char)ns->s[i] >= 0x80) return 0;
    return 1;
}

static int apply_unicode(tk_nstr *ns, int compose, int compat) {
    if (is_ascii(ns)) return CP_OK;
    tk_changes ch = {0};
    int rc = tk_unorm_changes(ns->s, ns->len, compose, compat, &ch);
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
}

/* NormalizedString::filter: keeps chars for which keep() holds. */
static int apply_filter(tk_nstr *ns, int (*keep)(uint32_t)) {
    tk_changes ch = {0};
    int32_t removed = 0;
    size_t removed_start = 0;
    int have_last = 0;
    uint32_t last_c = 0;
    int rc = CP_OK;
    int any_removed = 0;
    for (size_t i = 0; i < ns->len && !rc;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        i += l;
        if (keep(c)) {
            if (have_last) rc = tk_changes_push(&ch, last_c, -removed);
            else removed_start = (size_t)removed;
            last_c = c;
            have_last = 1;
            removed = 0;
        } else {
            removed++;
            any_removed = 1;
        }
    }
    if (!rc && have_last) rc = tk_changes_push(&ch, last_c, -removed);
    if (!rc && any_removed) rc = tk_nstr_transform(ns, ch.v, ch.n, removed_start);
    free(ch.v);
    return rc;
}

static int keep_not_mark(uint32_t c) { return !tk_is_mark(c); }
static int keep_not_mn(uint32_t c) { return !tk_is_mark_nonspacing(c); }
static int keep_bert_clean(uint32_t c) {
    if (c == 0 || c == 0xFFFD) return 0;
    if (c == '\t' || c == '\n' || c == '\r') return 1;
    return !tk_is_bert_control(c);
}
static int keep_nmt(uint32_t c) {
    return !((c >= 1 && c <= 8) || c == 0xB || (c >= 0xE && c <= 0x1F) || c == 0x7F || c == 0x8F ||
             c == 0x9F);
}

/* A per-character rewrite: writes the 1 to 3 characters c becomes into out, returns their count. */
typedef size_t (*char_rule)(uint32_t c, uint32_t out[3]);

/* NormalizedString::map / transform with one rule per character: each character becomes the
 * rule's output, the first taking its place (change 0), the others inserted after it (change 1).
 * Skipped when no character changes (the result would be identical). */
static int apply_rule(tk_nstr *ns, char_rule rule) {
    uint32_t out[3];
    size_t i = 0, l, k;
    for (; i < ns->len; i += l) {
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        if ((k = rule(c, out)) != 1 || out[0] != c) break;
    }
    if (i == ns->len) return CP_OK;
    tk_changes ch = {0};
    int rc = CP_OK;
    for (i = 0; i < ns->len && !rc; i += l) {
        k = rule(cp_utf8_decode(ns->s + i, &l), out);
        for (size_t m = 0; m < k && !rc; m++) rc = tk_changes_push(&ch, out[m], m > 0);
    }
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
}

static size_t rule_bert_whitespace(uint32_t c, uint32_t out[3]) {
    out[0] = (c == '\t' || c == '\n' || c == '\r' || tk_is_whitespace(c)) ? ' ' : c;
    return 1;
}
static size_t rule_nmt(uint32_t c, uint32_t out[3]) {
    switch (c) {
    case 0x9: case 0xA: case 0xC: case 0xD: case 0x1680: case 0x2028: case 0x2029: case 0x2581:
    case 0xFEFF: case 0xFFFD: out[0] = ' '; break;
    default: out[0] = (c >= 0x200B && c <= 0x200F) ? ' ' : c;
    }
    return 1;
}
static size_t rule_lowercase(uint32_t c, uint32_t out[3]) { return (size_t)tk_to_lower(c, out); }
/* BERT's handle_chinese_chars: a space on either side of each CJK character. */
static size_t rule_chinese(uint32_t c, uint32_t out[3]) {
    if (!tk_is_cjk(c)) { out[0] = c; return 1; }
    out[0] = ' ';
    out[1] = c;
    out[2] = ' ';
    return 3;
}

static int apply_bytelevel(tk_nstr *ns) {
    if (ns->len == 0) return CP_OK;
    tk_changes ch = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < ns->len && !rc;) {
        size_t l = cp_utf8_len((unsigned char)ns->s[i]);
        for (size_t k = 0; k < l && !rc; k++)
            rc = tk_changes_push(&ch, tk_bytes_char[(unsigned char)ns->s[i + k]], k > 0);
        i += l;
    }
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
}

static int apply_replace(const tk_normalizer *n, tk_nstr *ns) {
    tk_matches m = {0};
    int rc = tk_regex_find_matches(n->pattern, ns->s, ns->len, &m);
    size_t *st = NULL, *en = NULL, k = 0;
    if (!rc && m.n) {
        st = cp_malloc(m.n * sizeof *st, "replace matches");
        en = cp_malloc(m.n * sizeof *en, "replace matches");
        if (!st || !en) rc = CP_ERR;
    }
    for (size_t i = 0; !rc && i < m.n; i++)
        if (m.v[i].is_match) { st[k] = m.v[i].start; en[k] = m.v[i].end; k++; }
    if (!rc && k) rc = tk_nstr_replace_matches(ns, st, en, k, n->content);
    free(st); free(en); free(m.v);
    return rc;
}

int tk_normalizer_apply(const tk_normalizer *n, tk_nstr *ns) {
    if (!n) return CP_OK;
    switch ((ntype)n->head.kind) {
    case N_NFC: return apply_unicode(ns, 1, 0);
    case N_NFD: return apply_unicode(ns, 0, 0);
    case N_NFKC: return apply_unicode(ns, 1, 1);
    case N_NFKD: return apply_unicode(ns, 0, 1);
    case N_LOWERCASE: return apply_rule(ns, rule_lowercase);
    case N_STRIP_ACCENTS: return apply_filter(ns, keep_not_mark);
    case N_NMT:
        if (apply_filter(ns, keep_nmt)) return CP_ERR;
        return apply_rule(ns, rule_nmt);
    case N_REPLACE: return apply_replace(n, ns);
    case N_PREPEND: return ns->len ? tk_nstr_prepend(ns, n->prepend) : CP_OK;
    case N_STRIP: return tk_nstr_lrstrip(ns, n->left, n->right);
    case N_BERT:
        if (n->clean_text && (apply_filter(ns, keep_bert_clean) || apply_rule(ns, rule_bert_whitespace))) return CP_ERR;
        if (n->handle_chinese_chars && apply_rule(ns, rule_chinese)) return CP_ERR;
        if (n->strip_accents && (apply_unicode(ns, 0, 0) || apply_filter(ns, keep_not_mn))) return CP_ERR;
        if (n->lowercase && apply_rule(ns, rule_lowercase)) return CP_ERR;
        return CP_OK;
    case N_PRECOMPILED: return n->precompiled ? tk_precompiled_apply(n->precompiled, ns) : CP_OK;
    case N_BYTELEVEL: return apply_bytelevel(ns);
    case N_SEQUENCE:
        for (size_t i = 0; i < n->head.children.n; i++)
            if (tk_normalizer_apply(n->head.children.v[i], ns)) return CP_ERR;
        return CP_OK;
    }
    return CP_OK;
}
