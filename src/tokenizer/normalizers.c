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

struct tk_normalizer {
    ntype type;
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
    tk_normalizer **children;
    size_t nchildren;
};

static const char *SUPPORTED =
    "BertNormalizer, ByteLevel, Lowercase, NFC, NFD, NFKC, NFKD, Nmt, Precompiled, Prepend, "
    "Replace, Sequence, Strip, StripAccents";

void tk_normalizer_free(tk_normalizer *n) {
    if (!n) return;
    tk_regex_free(n->pattern);
    free(n->content);
    free(n->prepend);
    tk_precompiled_free(n->precompiled);
    for (size_t i = 0; i < n->nchildren; i++) tk_normalizer_free(n->children[i]);
    free(n->children);
    free(n);
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

int tk_normalizer_from_json(tk_normalizer **out, const cJSON *j, const char *path) {
    *out = NULL;
    if (!j || cJSON_IsNull(j)) return CP_OK;
    const char *type;
    if (tk_json_type(j, path, &type)) return CP_ERR;
    if (!type) return cp_error("%s: missing \"type\" (supported: %s)", path, SUPPORTED);
    static const struct { const char *name; ntype t; } names[] = {
        {"NFC", N_NFC}, {"NFD", N_NFD}, {"NFKC", N_NFKC}, {"NFKD", N_NFKD},
        {"Lowercase", N_LOWERCASE}, {"StripAccents", N_STRIP_ACCENTS}, {"Nmt", N_NMT},
        {"Replace", N_REPLACE}, {"Prepend", N_PREPEND}, {"Strip", N_STRIP},
        {"BertNormalizer", N_BERT}, {"Precompiled", N_PRECOMPILED}, {"ByteLevel", N_BYTELEVEL},
        {"Sequence", N_SEQUENCE},
    };
    int found = -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(type, names[i].name) == 0) found = (int)i;
    if (found < 0)
        return cp_error("%s: unknown normalizer type \"%s\" (supported: %s)", path, type, SUPPORTED);
    tk_normalizer *n = cp_calloc(1, sizeof *n, "a normalizer");
    if (!n) return CP_ERR;
    n->type = names[found].t;
    const char *s;
    int rc = CP_OK;
    switch (n->type) {
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
    case N_SEQUENCE: {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(arr)) { rc = cp_error("%s.normalizers: expected an array", path); break; }
        int cnt = cJSON_GetArraySize(arr);
        n->children = cp_calloc((size_t)cnt + 1, sizeof *n->children, "normalizers");
        if (!n->children) { rc = CP_ERR; break; }
        char sub[256];
        tk_path(sub, sizeof sub, path, "normalizers", 0);
        for (int i = 0; i < cnt && !rc; i++) {
            char p[300];
            tk_path(p, sizeof p, sub, NULL, i);
            rc = tk_normalizer_from_json(&n->children[n->nchildren], cJSON_GetArrayItem(arr, i), p);
            if (!rc && n->children[n->nchildren]) n->nchildren++;
        }
        break;
    }
    default: break;
    }
    if (rc) { tk_normalizer_free(n); return CP_ERR; }
    *out = n;
    return CP_OK;
}

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

/* NormalizedString::map with f; skipped when nothing changes (identical result). */
static int apply_map(tk_nstr *ns, uint32_t (*f)(uint32_t)) {
    int changed = 0;
    for (size_t i = 0; i < ns->len && !changed;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        if (f(c) != c) changed = 1;
        i += l;
    }
    if (!changed) return CP_OK;
    tk_changes ch = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < ns->len && !rc;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        rc = tk_changes_push(&ch, f(c), 0);
        i += l;
    }
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
}

static uint32_t map_bert_ws(uint32_t c) {
    return (c == '\t' || c == '\n' || c == '\r' || tk_is_whitespace(c)) ? ' ' : c;
}
static uint32_t map_nmt(uint32_t c) {
    switch (c) {
    case 0x9: case 0xA: case 0xC: case 0xD: case 0x1680: case 0x2028: case 0x2029: case 0x2581:
    case 0xFEFF: case 0xFFFD: return ' ';
    default: return (c >= 0x200B && c <= 0x200F) ? ' ' : c;
    }
}

static int apply_lowercase(tk_nstr *ns) {
    int changed = 0;
    for (size_t i = 0; i < ns->len && !changed;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l), lo[3];
        int k = tk_to_lower(c, lo);
        if (k != 1 || lo[0] != c) changed = 1;
        i += l;
    }
    if (!changed) return CP_OK;
    tk_changes ch = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < ns->len && !rc;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l), lo[3];
        int k = tk_to_lower(c, lo);
        for (int m = 0; m < k && !rc; m++) rc = tk_changes_push(&ch, lo[m], m > 0);
        i += l;
    }
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
}

static int apply_chinese(tk_nstr *ns) {
    int any = 0;
    for (size_t i = 0; i < ns->len && !any;) {
        size_t l;
        if (tk_is_cjk(cp_utf8_decode(ns->s + i, &l))) any = 1;
        i += l;
    }
    if (!any) return CP_OK;
    tk_changes ch = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < ns->len && !rc;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        if (tk_is_cjk(c)) {
            rc = tk_changes_push(&ch, ' ', 0);
            if (!rc) rc = tk_changes_push(&ch, c, 1);
            if (!rc) rc = tk_changes_push(&ch, ' ', 1);
        } else {
            rc = tk_changes_push(&ch, c, 0);
        }
        i += l;
    }
    if (!rc) rc = tk_nstr_transform(ns, ch.v, ch.n, 0);
    free(ch.v);
    return rc;
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
    switch (n->type) {
    case N_NFC: return apply_unicode(ns, 1, 0);
    case N_NFD: return apply_unicode(ns, 0, 0);
    case N_NFKC: return apply_unicode(ns, 1, 1);
    case N_NFKD: return apply_unicode(ns, 0, 1);
    case N_LOWERCASE: return apply_lowercase(ns);
    case N_STRIP_ACCENTS: return apply_filter(ns, keep_not_mark);
    case N_NMT:
        if (apply_filter(ns, keep_nmt)) return CP_ERR;
        return apply_map(ns, map_nmt);
    case N_REPLACE: return apply_replace(n, ns);
    case N_PREPEND: return ns->len ? tk_nstr_prepend(ns, n->prepend) : CP_OK;
    case N_STRIP: return tk_nstr_lrstrip(ns, n->left, n->right);
    case N_BERT:
        if (n->clean_text && (apply_filter(ns, keep_bert_clean) || apply_map(ns, map_bert_ws))) return CP_ERR;
        if (n->handle_chinese_chars && apply_chinese(ns)) return CP_ERR;
        if (n->strip_accents && (apply_unicode(ns, 0, 0) || apply_filter(ns, keep_not_mn))) return CP_ERR;
        if (n->lowercase && apply_lowercase(ns)) return CP_ERR;
        return CP_OK;
    case N_PRECOMPILED: return n->precompiled ? tk_precompiled_apply(n->precompiled, ns) : CP_OK;
    case N_BYTELEVEL: return apply_bytelevel(ns);
    case N_SEQUENCE:
        for (size_t i = 0; i < n->nchildren; i++)
            if (tk_normalizer_apply(n->children[i], ns)) return CP_ERR;
        return CP_OK;
    }
    return CP_OK;
}
