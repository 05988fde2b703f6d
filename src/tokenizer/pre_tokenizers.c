/*
 * pre_tokenizers.c — the `pre_tokenizer` slot: ByteLevel, Split, Metaspace, Whitespace,
 * WhitespaceSplit, BertPreTokenizer, Punctuation, Digits, CharDelimiterSplit, Sequence.
 *
 * A pre-tokenizer cuts one tk_nstr into splits (slices sharing its storage), may transform each
 * (ByteLevel maps bytes to chars, Metaspace replaces spaces by '▁'), and hands each non-empty
 * split to `emit`. Sequence chains its members depth-first; HF applies each member to all splits
 * before the next member, but no member looks at other splits, so the result is the same.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int tk_parse_pattern(const cJSON *j, const char *path, tk_regex **out);

/* GPT-2 byte → char table (bytes_char in byte_level.rs). */
const uint16_t tk_bytes_char[256] = {
#define R(a) a
    0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10A, 0x10B, 0x10C,
    0x10D, 0x10E, 0x10F, 0x110, 0x111, 0x112, 0x113, 0x114, 0x115, 0x116, 0x117, 0x118, 0x119,
    0x11A, 0x11B, 0x11C, 0x11D, 0x11E, 0x11F, 0x120, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
    0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
    0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
    0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67,
    0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
    0x78, 0x79, 0x7A, 0x7B, 0x7C, 0x7D, 0x7E, 0x121, 0x122, 0x123, 0x124, 0x125, 0x126, 0x127,
    0x128, 0x129, 0x12A, 0x12B, 0x12C, 0x12D, 0x12E, 0x12F, 0x130, 0x131, 0x132, 0x133, 0x134,
    0x135, 0x136, 0x137, 0x138, 0x139, 0x13A, 0x13B, 0x13C, 0x13D, 0x13E, 0x13F, 0x140, 0x141,
    0x142, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0x143, 0xAE,
    0xAF, 0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xBB, 0xBC, 0xBD, 0xBE,
    0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE,
    0xCF, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE,
    0xDF, 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE,
    0xEF, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE,
    0xFF,
#undef R
};

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef enum {
    P_BYTELEVEL, P_SPLIT, P_METASPACE, P_WHITESPACE, P_WHITESPACE_SPLIT, P_BERT, P_PUNCTUATION,
    P_DIGITS, P_DELIMITER, P_SEQUENCE
} ptype;
static const char *const NAMES[] = {
    [P_BYTELEVEL] = "ByteLevel", [P_SPLIT] = "Split", [P_METASPACE] = "Metaspace", [P_WHITESPACE] = "Whitespace",
    [P_WHITESPACE_SPLIT] = "WhitespaceSplit", [P_BERT] = "BertPreTokenizer", [P_PUNCTUATION] = "Punctuation",
    [P_DIGITS] = "Digits", [P_DELIMITER] = "CharDelimiterSplit", [P_SEQUENCE] = "Sequence",
};

typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

struct tk_pretok {
    tk_component_head head; /* kind: a ptype; children: a Sequence's */
    int add_prefix_space, use_regex;  /* ByteLevel */
    tk_regex *re;                     /* ByteLevel (GPT-2 pattern), Split */
    tk_split_behavior behavior;       /* Split, Punctuation */
    int invert;                       /* Split */
    uint32_t replacement;             /* Metaspace */
    char rep_str[5];
    prepend_scheme prepend;
    int split;                        /* Metaspace */
    int individual_digits;            /* Digits */
    uint32_t delimiter;               /* CharDelimiterSplit */
};

/* Frees what a pre_tokenizer owns besides its head (tk_component_free does the rest). */
static void release(void *obj) {
    tk_pretok *p = obj;
    tk_regex_free(p->re);
}

static int parse_behavior(const cJSON *j, const char *path, tk_split_behavior dflt, tk_split_behavior *out) {
    const char *b;
    if (tk_json_str(j, "behavior", NULL, 0, &b, path)) return CP_ERR;
    if (!b) { *out = dflt; return CP_OK; }
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (strcmp(b, names[i]) == 0) { *out = (tk_split_behavior)i; return CP_OK; }
    return cp_error("%s.behavior: unknown split behavior \"%s\" (expected Removed, Isolated, "
                    "MergedWithPrevious, MergedWithNext or Contiguous)", path, b);
}

/* Reads the fields of a pre_tokenizer of the kind in its head (a Sequence's children: the caller). */
static int parse(void *obj, const cJSON *j, const char *path) {
    tk_pretok *p = obj;
    int rc = CP_OK;
    switch ((ptype)p->head.kind) {
    case P_WHITESPACE: case P_WHITESPACE_SPLIT: case P_BERT: case P_SEQUENCE: /* no fields */
        break;
    case P_BYTELEVEL:
        rc = tk_json_bool(j, "add_prefix_space", 1, &p->add_prefix_space, path);
        if (!rc) rc = tk_json_bool(j, "use_regex", 1, &p->use_regex, path);
        if (!rc && p->use_regex)
            rc = tk_regex_compile(&p->re, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, path);
        break;
    case P_SPLIT:
        rc = tk_parse_pattern(j, path, &p->re);
        if (!rc) rc = parse_behavior(j, path, TK_SPLIT_REMOVED, &p->behavior);
        if (!rc) rc = tk_json_bool(j, "invert", 0, &p->invert, path);
        break;
    case P_PUNCTUATION: rc = parse_behavior(j, path, TK_SPLIT_ISOLATED, &p->behavior); break;
    case P_DIGITS: rc = tk_json_bool(j, "individual_digits", 0, &p->individual_digits, path); break;
    case P_DELIMITER: rc = tk_json_char(j, "delimiter", path, ' ', &p->delimiter); break;
    case P_METASPACE: {
        rc = tk_json_char(j, "replacement", path, 0x2581, &p->replacement);
        if (rc) break;
        p->rep_str[cp_utf8_encode(p->replacement, p->rep_str)] = '\0';
        const char *scheme;
        int aps;
        rc = tk_json_str(j, "prepend_scheme", "always", 0, &scheme, path);
        if (!rc) rc = tk_json_bool(j, "add_prefix_space", -1, &aps, path);
        if (!rc) rc = tk_json_bool(j, "split", 1, &p->split, path);
        if (rc) break;
        if (strcmp(scheme, "always") == 0) p->prepend = PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) p->prepend = PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) p->prepend = PREPEND_NEVER;
        else { rc = cp_error("%s.prepend_scheme: expected \"always\", \"first\" or \"never\", got \"%s\"", path, scheme); break; }
        if (aps == 0) {
            if (p->prepend != PREPEND_NEVER && cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme")) {
                rc = cp_error("%s: add_prefix_space does not match declared prepend_scheme", path);
                break;
            }
            p->prepend = PREPEND_NEVER;
        }
        break;
    }
    }
    return rc;
}

const tk_component_class tk_pretok_class = {
    "pre_tokenizer", NAMES, P_SEQUENCE, "pretokenizers", sizeof(tk_pretok), parse, release,
};

int tk_pretok_is_byte_level(const tk_pretok *p) {
    if (!p) return 0;
    if (p->head.kind == P_BYTELEVEL) return 1;
    for (size_t i = 0; p->head.kind == P_SEQUENCE && i < p->head.children.n; i++)
        if (tk_pretok_is_byte_level(p->head.children.v[i])) return 1;
    return 0;
}

/* ---- applying ------------------------------------------------------------------------------------ */

/* Emits the kept entries of m as slices of ns. */
static int emit_slices(tk_nstr *ns, const tk_matches *m, tk_split_fn emit, void *ctx) {
    for (size_t i = 0; i < m->n; i++) {
        if (!m->v[i].is_match || m->v[i].start >= m->v[i].end) continue;
        tk_nstr sub = tk_nstr_slice(ns, m->v[i].start, m->v[i].end);
        int rc = emit(ctx, &sub);
        tk_nstr_free(&sub);
        if (rc) return rc;
    }
    return CP_OK;
}

static int pred_ws(uint32_t c, const void *a) { (void)a; return tk_is_whitespace(c); }
static int pred_punct(uint32_t c, const void *a) { (void)a; return tk_is_punctuation(c); }
static int pred_numeric(uint32_t c, const void *a) { (void)a; return tk_is_numeric(c); }
static int pred_char(uint32_t c, const void *a) { return c == *(const uint32_t *)a; }

static int split_pred(tk_nstr *ns, int (*pred)(uint32_t, const void *), const void *arg,
                      tk_split_behavior b, tk_split_fn emit, void *ctx) {
    tk_matches m = {0};
    int rc = tk_pred_find_matches(pred, arg, ns->s, ns->len, &m);
    if (!rc) rc = tk_matches_apply_behavior(&m, b);
    if (!rc) rc = emit_slices(ns, &m, emit, ctx);
    free(m.v);
    return rc;
}

/* Whitespace: the matches of \w+|[^\w\s]+ (Rust regex classes). */
static int split_whitespace(tk_nstr *ns, tk_split_fn emit, void *ctx) {
    tk_matches m = {0};
    int rc = CP_OK;
    size_t i = 0;
    while (i < ns->len && !rc) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        int cls = tk_is_word_char(c) ? 1 : tk_is_whitespace(c) ? 0 : 2;
        if (cls == 0) { i += l; continue; }
        size_t st = i;
        i += l;
        while (i < ns->len) {
            c = cp_utf8_decode(ns->s + i, &l);
            int k = tk_is_word_char(c) ? 1 : tk_is_whitespace(c) ? 0 : 2;
            if (k != cls) break;
            i += l;
        }
        rc = tk_matches_push(&m, st, i, 1);
    }
    if (!rc) rc = emit_slices(ns, &m, emit, ctx);
    free(m.v);
    return rc;
}

/* ByteLevel's per-split transformation: every byte becomes its char; alignments follow. */
static int bytelevel_emit(tk_nstr *sub, tk_split_fn emit, void *ctx) {
    size_t n = sub->len;
    char *s = cp_malloc(2 * n + 1, "a byte-level word");
    tk_span *al = cp_malloc((2 * n + 1) * sizeof *al, "a byte-level word");
    if (!s || !al) { free(s); free(al); return CP_ERR; }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = cp_utf8_len((unsigned char)sub->s[i]);
        tk_span a = tk_nstr_align(sub, i); /* every byte of a char shares the char's alignment */
        for (size_t k = 0; k < l; k++) {
            uint16_t c = tk_bytes_char[(unsigned char)sub->s[i + k]];
            size_t w = cp_utf8_encode(c, s + o);
            for (size_t q = 0; q < w; q++) al[o + q] = a;
            o += w;
        }
        i += l;
    }
    tk_nstr_free(sub);
    sub->s = sub->own_s = s;
    sub->al = sub->own_al = al;
    sub->len = o;
    return emit(ctx, sub);
}

typedef struct { tk_split_fn emit; void *ctx; } bl_ctx;
static int bytelevel_emit_cb(void *c, tk_nstr *sub) {
    bl_ctx *b = c;
    return bytelevel_emit(sub, b->emit, b->ctx);
}

typedef struct { const tk_pretok *seq; size_t idx; tk_split_fn emit; void *ctx; } seq_ctx;
static int seq_next(void *c, tk_nstr *split) {
    seq_ctx *s = c;
    if (s->idx + 1 >= s->seq->head.children.n) return s->emit(s->ctx, split);
    seq_ctx next = {s->seq, s->idx + 1, s->emit, s->ctx};
    return tk_pretok_apply(s->seq->head.children.v[next.idx], split, seq_next, &next);
}

typedef struct { tk_split_fn emit; void *ctx; } bert_ctx;
static int bert_second(void *c, tk_nstr *split) {
    bert_ctx *b = c;
    return split_pred(split, pred_punct, NULL, TK_SPLIT_ISOLATED, b->emit, b->ctx);
}

int tk_pretok_apply(const tk_pretok *p, tk_nstr *ns, tk_split_fn emit, void *ctx) {
    if (!p) return ns->len ? emit(ctx, ns) : CP_OK;
    switch ((ptype)p->head.kind) {
    case P_BYTELEVEL: {
        if (p->add_prefix_space && !(ns->len && ns->s[0] == ' ') && tk_nstr_prepend(ns, " ")) return CP_ERR;
        if (!p->use_regex) return ns->len ? bytelevel_emit(ns, emit, ctx) : CP_OK;
        tk_matches m = {0};
        int rc = tk_regex_find_matches(p->re, ns->s, ns->len, &m);
        bl_ctx b = {emit, ctx};
        if (!rc) rc = tk_matches_apply_behavior(&m, TK_SPLIT_ISOLATED);
        if (!rc) rc = emit_slices(ns, &m, bytelevel_emit_cb, &b);
        free(m.v);
        return rc;
    }
    case P_SPLIT: {
        tk_matches m = {0};
        int rc = tk_regex_find_matches(p->re, ns->s, ns->len, &m);
        if (!rc && p->invert)
            for (size_t i = 0; i < m.n; i++) m.v[i].is_match = !m.v[i].is_match;
        if (!rc) rc = tk_matches_apply_behavior(&m, p->behavior);
        if (!rc) rc = emit_slices(ns, &m, emit, ctx);
        free(m.v);
        return rc;
    }
    case P_METASPACE: {
        /* replace(' ', '▁'), then prepend, then split MergedWithNext on '▁'. */
        size_t nsp = 0;
        for (size_t i = 0; i < ns->len; i++) nsp += ns->s[i] == ' ';
        if (nsp) {
            size_t *st = cp_malloc(nsp * sizeof *st, "metaspace"), *en = cp_malloc(nsp * sizeof *en, "metaspace");
            if (!st || !en) { free(st); free(en); return CP_ERR; }
            size_t k = 0;
            for (size_t i = 0; i < ns->len; i++)
                if (ns->s[i] == ' ') { st[k] = i; en[k] = i + 1; k++; }
            int rc = tk_nstr_replace_matches(ns, st, en, k, p->rep_str);
            free(st); free(en);
            if (rc) return rc;
        }
        size_t rl = strlen(p->rep_str);
        int starts = ns->len >= rl && memcmp(ns->s, p->rep_str, rl) == 0;
        if (!starts && (p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && ns->orig_start == 0)))
            if (tk_nstr_prepend(ns, p->rep_str)) return CP_ERR;
        if (!p->split) return ns->len ? emit(ctx, ns) : CP_OK;
        return split_pred(ns, pred_char, &p->replacement, TK_SPLIT_MERGED_WITH_NEXT, emit, ctx);
    }
    case P_WHITESPACE: return split_whitespace(ns, emit, ctx);
    case P_WHITESPACE_SPLIT: return split_pred(ns, pred_ws, NULL, TK_SPLIT_REMOVED, emit, ctx);
    case P_BERT: {
        bert_ctx b = {emit, ctx};
        return split_pred(ns, pred_ws, NULL, TK_SPLIT_REMOVED, bert_second, &b);
    }
    case P_PUNCTUATION: return split_pred(ns, pred_punct, NULL, p->behavior, emit, ctx);
    case P_DIGITS:
        return split_pred(ns, pred_numeric, NULL,
                          p->individual_digits ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS, emit, ctx);
    case P_DELIMITER: return split_pred(ns, pred_char, &p->delimiter, TK_SPLIT_REMOVED, emit, ctx);
    case P_SEQUENCE: {
        if (p->head.children.n == 0) return ns->len ? emit(ctx, ns) : CP_OK;
        seq_ctx s = {p, 0, emit, ctx};
        return tk_pretok_apply(p->head.children.v[0], ns, seq_next, &s);
    }
    }
    return CP_OK;
}
