/*
 * gguf_tokenizer.c — tokenizer.json, tokenizer_config.json and special_tokens_map.json rebuilt from
 * a GGUF's tokenizer.ggml.* keys, the way transformers' GGUF loader
 * (integrations/gguf/gguf_tokenizer_mapping.py) and llama.cpp read them: byte-level BPE for "gpt2"
 * with the pre-tokenizer llama.cpp uses for tokenizer.ggml.pre (SmolLM: split digits, then GPT-2's
 * regex), SentencePiece BPE with byte fallback for "llama", with merges derived from the scores
 * (transformers' generate_merges) when the file has none.
 */
#include "convert/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_write.h"
#include "core/strbuf.h"
#include "core/strmap.h"
#include "core/utf8.h"

/* GPT-2's byte -> code point table (bytes_to_unicode) and its alphabet. */
static void byte_table(uint32_t table[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        table[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

static int in_byte_alphabet(uint32_t c) {
    return (c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0x143);
}

/* Pre-tokenizer regexes (Oniguruma / fancy-regex syntax, as tokenizers' Split takes them). */
static const char *const LLAMA3_SPLIT =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+";
static const char *const QWEN2_SPLIT =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)|\\s+";

/* The pre-tokenizer llama.cpp applies for each tokenizer.ggml.pre of a "gpt2" vocabulary. */
typedef enum { PRE_GPT2, PRE_DIGITS, PRE_LLAMA3, PRE_QWEN2 } pre_kind;
static const struct {
    const char *name;
    pre_kind kind;
} pre_types[] = {
    {"default", PRE_GPT2},    {"gpt-2", PRE_GPT2},      {"gpt2", PRE_GPT2},       {"mpt", PRE_GPT2},
    {"olmo", PRE_GPT2},       {"jais", PRE_GPT2},       {"phi-2", PRE_GPT2},      {"smollm", PRE_DIGITS},
    {"starcoder", PRE_DIGITS},
    {"refact", PRE_DIGITS},   {"command-r", PRE_DIGITS}, {"codeshell", PRE_DIGITS}, {"exaone", PRE_DIGITS},
    {"minerva", PRE_DIGITS},  {"llama3", PRE_LLAMA3},   {"llama-v3", PRE_LLAMA3}, {"llama-bpe", PRE_LLAMA3},
    {"falcon3", PRE_LLAMA3},  {"falcon-h1", PRE_LLAMA3}, {"pixtral", PRE_LLAMA3}, {"midm-2.0", PRE_LLAMA3},
    {"lfm2", PRE_LLAMA3},     {"dbrx", PRE_LLAMA3},     {"smaug-bpe", PRE_LLAMA3}, {"qwen2", PRE_QWEN2},
    {"deepseek-r1-qwen", PRE_QWEN2},
};

static int pre_kind_of(const char *pre) {
    for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
        if (!strcmp(pre, pre_types[i].name)) return (int)pre_types[i].kind;
    return -1;
}

/* Everything the tokenizer builders need, read once. */
typedef struct {
    const cp_gguf *g;
    const cp_gguf_kv *tokens, *types, *scores, *merges;
    cp_gguf_str *vocab;     /* token strings as written to tokenizer.json (respelled for gpt2) */
    char *respelled;        /* storage for respelled gpt2 tokens */
    cp_strmap map;          /* vocab string -> id (last id wins) */
    int64_t n;
    int64_t bos, eos, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    char *chat_template;
} tokinfo;

static int token_type(const tokinfo *ti, int64_t id) {
    return ti->types && (uint64_t)id < ti->types->arr_len ? (int)cp_gguf_arr_int(ti->types, (uint64_t)id) : 1;
}

/* add_bos defaults to what llama.cpp does when the file does not say: on for SentencePiece
 * vocabularies and for the Llama-3 family of pre-tokenizers, off otherwise. */
static cp_status tokinfo_read(const cp_gguf *g, const char *model, const char *pre, tokinfo *ti) {
    memset(ti, 0, sizeof *ti);
    ti->g = g;
    if (cp_gguf_get_array(g, "tokenizer.ggml.tokens", CP_GGUF_STRING, 1, &ti->tokens) ||
        cp_gguf_get_array(g, "tokenizer.ggml.token_type", CP_GGUF_INT32, 0, &ti->types) ||
        cp_gguf_get_array(g, "tokenizer.ggml.scores", CP_GGUF_FLOAT32, 0, &ti->scores) ||
        cp_gguf_get_array(g, "tokenizer.ggml.merges", CP_GGUF_STRING, 0, &ti->merges))
        return CP_ERR;
    ti->n = (int64_t)ti->tokens->arr_len;
    if (ti->n < 1 || ti->n > INT32_MAX)
        return cp_error("%s: tokenizer.ggml.tokens holds %" PRId64 " tokens", g->path, ti->n);
    if (ti->types && (int64_t)ti->types->arr_len != ti->n)
        return cp_error("%s: tokenizer.ggml.token_type has %" PRIu64 " entries for %" PRId64 " tokens", g->path,
                        ti->types->arr_len, ti->n);
    if (ti->scores && (int64_t)ti->scores->arr_len != ti->n)
        return cp_error("%s: tokenizer.ggml.scores has %" PRIu64 " entries for %" PRId64 " tokens", g->path,
                        ti->scores->arr_len, ti->n);
    int is_spm = !strcmp(model, "llama");
    if (cp_convert_token_id(g, "tokenizer.ggml.bos_token_id", ti->n, &ti->bos) ||
        cp_convert_token_id(g, "tokenizer.ggml.eos_token_id", ti->n, &ti->eos) ||
        cp_convert_token_id(g, "tokenizer.ggml.unknown_token_id", ti->n, &ti->unk) ||
        cp_convert_token_id(g, "tokenizer.ggml.padding_token_id", ti->n, &ti->pad))
        return CP_ERR;
    int bos_default = ti->bos >= 0 && (is_spm || (pre && pre_kind_of(pre) == PRE_LLAMA3));
    if (cp_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", bos_default, 0, &ti->add_bos) ||
        cp_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", 0, 0, &ti->add_eos) ||
        cp_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", 1, 0, &ti->add_space_prefix) ||
        cp_gguf_get_string(g, "tokenizer.chat_template", 0, &ti->chat_template))
        return CP_ERR;
    if (ti->chat_template && !cp_utf8_valid(ti->chat_template, strlen(ti->chat_template)))
        return cp_error("%s: tokenizer.chat_template is not valid UTF-8", g->path);
    if (ti->add_bos && ti->bos < 0)
        return cp_error("%s: tokenizer.ggml.add_bos_token is set but there is no tokenizer.ggml.bos_token_id", g->path);
    if (ti->add_eos && ti->eos < 0)
        return cp_error("%s: tokenizer.ggml.add_eos_token is set but there is no tokenizer.ggml.eos_token_id", g->path);
    for (int64_t i = 0; i < ti->n; i++) {
        const cp_gguf_str *s = &ti->tokens->arr_strs[i];
        if (!cp_utf8_valid(s->ptr, (size_t)s->len))
            return cp_error("%s: tokenizer.ggml.tokens: token %" PRId64 " is not valid UTF-8", g->path, i);
        if (s->len == 0) return cp_error("%s: tokenizer.ggml.tokens: token %" PRId64 " is empty", g->path, i);
    }
    if (ti->scores)
        for (int64_t i = 0; i < ti->n; i++) {
            double v = cp_gguf_arr_float(ti->scores, (uint64_t)i);
            if (v != v) return cp_error("%s: tokenizer.ggml.scores: score %" PRId64 " is NaN", g->path, i);
        }
    ti->vocab = cp_malloc((size_t)ti->n * sizeof *ti->vocab, "the vocabulary");
    if (!ti->vocab) return CP_ERR;
    memcpy(ti->vocab, ti->tokens->arr_strs, (size_t)ti->n * sizeof *ti->vocab);
    /* Byte-level vocabularies: a token written outside GPT-2's byte alphabet (llama.cpp stores
     * some added tokens with real spaces) is respelled byte by byte, as transformers does. */
    if (!is_spm) {
        uint32_t table[256];
        uint64_t need = 0;
        byte_table(table);
        for (int64_t i = 0; i < ti->n; i++) need += ti->vocab[i].len * 2;
        ti->respelled = cp_malloc((size_t)need + 1, "respelled tokens");
        if (!ti->respelled) return CP_ERR;
        char *w = ti->respelled;
        for (int64_t i = 0; i < ti->n; i++) {
            cp_gguf_str *s = &ti->vocab[i];
            int ok = 1;
            for (size_t k = 0, l; k < s->len && ok; k += l) ok = in_byte_alphabet(cp_utf8_decode(s->ptr + k, &l));
            if (ok) continue;
            char *start = w;
            for (uint64_t k = 0; k < s->len; k++) w += cp_utf8_encode(table[(uint8_t)s->ptr[k]], w);
            s->ptr = start;
            s->len = (uint64_t)(w - start);
        }
    }
    for (int64_t i = 0; i < ti->n; i++)
        if (cp_strmap_put(&ti->map, ti->vocab[i].ptr, (size_t)ti->vocab[i].len, (int32_t)i)) return CP_ERR;
    return CP_OK;
}

static void tokinfo_free(tokinfo *ti) {
    cp_free(ti->vocab);
    cp_free(ti->respelled);
    cp_strmap_free(&ti->map);
    cp_free(ti->chat_template);
}

/* Which tokens become added tokens: control tokens (type 3) and the bos/eos/unk/pad tokens as
 * special, user-defined ones (type 4) as plain added tokens. In a byte-level vocabulary a control
 * token spelled outside the byte alphabet is a llama.cpp mislabel and is skipped, as transformers
 * does. Returns 0 (not added), 1 (special) or 2 (not special). */
static int added_kind(const tokinfo *ti, int64_t id, int byte_level) {
    int t = token_type(ti, id);
    const cp_gguf_str *orig = &ti->tokens->arr_strs[id];
    int spelled = !byte_level || (ti->vocab[id].ptr == orig->ptr);
    if (t == 3 && spelled) return 1;
    if (id == ti->bos || id == ti->eos || id == ti->unk || id == ti->pad) return spelled ? 1 : 0;
    if (t == 4 && cp_strmap_get(&ti->map, orig->ptr, orig->len) >= 0) return 2;
    return 0;
}

static void write_added_tokens(cp_strbuf *sb, const tokinfo *ti, int byte_level, int64_t *n_added) {
    int first = 1;
    cp_sb_append(sb, "  \"added_tokens\": [");
    for (int64_t id = 0; id < ti->n; id++) {
        int k = added_kind(ti, id, byte_level);
        if (!k) continue;
        /* The vocabulary maps this string to `id` only when no later token has the same spelling. */
        if (cp_strmap_get(&ti->map, ti->vocab[id].ptr, ti->vocab[id].len) != (int32_t)id) continue;
        cp_sb_printf(sb, "%s\n    {\"id\": %" PRId64 ", \"content\": ", first ? "" : ",", id);
        cp_json_write_string(sb, ti->vocab[id].ptr, ti->vocab[id].len, 0);
        cp_sb_printf(sb, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                         "\"special\": %s}", k == 1 ? "true" : "false");
        first = 0;
        (*n_added)++;
    }
    cp_sb_append(sb, first ? "],\n" : "\n  ],\n");
}

static void write_vocab(cp_strbuf *sb, const tokinfo *ti) {
    cp_sb_append(sb, "    \"vocab\": {");
    int first = 1;
    for (int64_t id = 0; id < ti->n; id++) {
        if (cp_strmap_get(&ti->map, ti->vocab[id].ptr, ti->vocab[id].len) != (int32_t)id) continue; /* a later duplicate wins */
        cp_sb_append(sb, first ? "\n      " : ",\n      ");
        cp_json_write_string(sb, ti->vocab[id].ptr, ti->vocab[id].len, 0);
        cp_sb_printf(sb, ": %" PRId64, id);
        first = 0;
    }
    cp_sb_append(sb, "\n    },\n");
}

/* TemplateProcessing that adds bos / eos as tokenizer.ggml.add_bos_token / add_eos_token say
 * (transformers' update_post_processor). */
static void write_post_processor(cp_strbuf *sb, const tokinfo *ti) {
    const cp_gguf_str *bos = ti->add_bos ? &ti->vocab[ti->bos] : NULL, *eos = ti->add_eos ? &ti->vocab[ti->eos] : NULL;
    cp_sb_append(sb, "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [");
    for (int pair = 0; pair < 2; pair++) {
        for (int seq = 0; seq <= pair; seq++) {
            if (seq) cp_sb_append(sb, ", ");
            if (bos) {
                cp_sb_append(sb, "{\"SpecialToken\": {\"id\": ");
                cp_json_write_string(sb, bos->ptr, bos->len, 0);
                cp_sb_printf(sb, ", \"type_id\": %d}}, ", seq);
            }
            cp_sb_printf(sb, "{\"Sequence\": {\"id\": \"%c\", \"type_id\": %d}}", seq ? 'B' : 'A', seq);
            if (eos) {
                cp_sb_append(sb, ", {\"SpecialToken\": {\"id\": ");
                cp_json_write_string(sb, eos->ptr, eos->len, 0);
                cp_sb_printf(sb, ", \"type_id\": %d}}", seq);
            }
        }
        cp_sb_append(sb, pair ? "], \"special_tokens\": {" : "], \"pair\": [");
    }
    const cp_gguf_str *sp[2] = {bos, eos};
    const int64_t ids[2] = {ti->bos, ti->eos};
    int first = 1;
    for (int k = 0; k < 2; k++) {
        if (!sp[k] || (k == 1 && bos && ids[0] == ids[1])) continue;
        if (!first) cp_sb_append(sb, ", ");
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_append(sb, ": {\"id\": ");
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_printf(sb, ", \"ids\": [%" PRId64 "], \"tokens\": [", ids[k]);
        cp_json_write_string(sb, sp[k]->ptr, sp[k]->len, 0);
        cp_sb_append(sb, "]}");
        first = 0;
    }
    cp_sb_append(sb, "}},\n");
}

static cp_status write_byte_level_parts(cp_strbuf *sb, const cp_gguf *g, const char *pre, int *ignore_merges) {
    int kind = pre_kind_of(pre);
    if (kind < 0) {
        cp_strbuf names;
        cp_sb_init(&names);
        for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
            cp_sb_printf(&names, "%s%s", i ? ", " : "", pre_types[i].name);
        char *list = cp_sb_finish(&names);
        cp_status st = cp_error("%s: tokenizer.ggml.pre '%s' is not supported (known: %s)", g->path, pre,
                                list ? list : "?");
        cp_free(list);
        return st;
    }
    *ignore_merges = kind == PRE_LLAMA3;
    cp_sb_append(sb, kind == PRE_QWEN2 ? "  \"normalizer\": {\"type\": \"NFC\"},\n" : "  \"normalizer\": null,\n");
    switch (kind) {
    case PRE_GPT2:
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                         "\"trim_offsets\": true, \"use_regex\": true},\n");
        break;
    case PRE_DIGITS: /* llama.cpp: "\p{N}" then GPT-2's regex */
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                         "{\"type\": \"Digits\", \"individual_digits\": true}, "
                         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                         "\"use_regex\": true}]},\n");
        break;
    default:
        cp_sb_append(sb, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                         "{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        cp_json_write_cstring(sb, kind == PRE_LLAMA3 ? LLAMA3_SPLIT : QWEN2_SPLIT, 0);
        cp_sb_append(sb, "}, \"behavior\": \"Isolated\", \"invert\": false}, "
                         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                         "\"use_regex\": false}]},\n");
    }
    return CP_OK;
}

/* Merges from tokenizer.ggml.merges ("left right"), each part and their concatenation checked
 * against the vocabulary (tokenizers refuses a file where they are not). */
static cp_status write_file_merges(cp_strbuf *sb, const tokinfo *ti, int64_t *n_merges) {
    const cp_gguf_kv *m = ti->merges;
    cp_sb_append(sb, "    \"merges\": [");
    char *cat = NULL;
    size_t cat_cap = 0;
    cp_status st = CP_OK;
    for (uint64_t i = 0; i < m->arr_len && st == CP_OK; i++) {
        const cp_gguf_str *s = &m->arr_strs[i];
        const char *sp = memchr(s->ptr, ' ', (size_t)s->len);
        uint64_t ll = sp ? (uint64_t)(sp - s->ptr) : 0, rl = sp ? s->len - ll - 1 : 0;
        if (!cp_utf8_valid(s->ptr, (size_t)s->len) || !sp || ll == 0 || rl == 0 || memchr(sp + 1, ' ', (size_t)rl)) {
            st = cp_error("%s: tokenizer.ggml.merges: merge %" PRIu64 " is not two tokens separated by one space",
                          ti->g->path, i);
            break;
        }
        if (ll + rl > cat_cap) {
            cp_free(cat);
            cat_cap = (size_t)(ll + rl) * 2;
            if (!(cat = cp_malloc(cat_cap, "a merge"))) { st = CP_ERR; break; }
        }
        memcpy(cat, s->ptr, (size_t)ll);
        memcpy(cat + ll, sp + 1, (size_t)rl);
        if (cp_strmap_get(&ti->map, s->ptr, ll) < 0 || cp_strmap_get(&ti->map, sp + 1, rl) < 0 ||
            cp_strmap_get(&ti->map, cat, ll + rl) < 0) {
            st = cp_error("%s: tokenizer.ggml.merges: merge %" PRIu64 " ('%.*s') uses a token that is not in the vocabulary",
                          ti->g->path, i, (int)(s->len > 200 ? 200 : s->len), s->ptr);
            break;
        }
        cp_sb_append(sb, i ? ",\n      [" : "\n      [");
        cp_json_write_string(sb, s->ptr, ll, 0);
        cp_sb_append(sb, ", ");
        cp_json_write_string(sb, sp + 1, rl, 0);
        cp_sb_append(sb, "]");
    }
    cp_free(cat);
    cp_sb_append(sb, m->arr_len ? "\n    ]\n" : "]\n");
    *n_merges = (int64_t)m->arr_len;
    return st;
}

/* SentencePiece merges derived from the vocabulary and scores, as transformers' generate_merges
 * (tokenization_utils_base.py) does for a GGUF without merges: for each token in order, every
 * split into two vocabulary tokens (at character boundaries), sorted by the two parts' ids; then
 * all of them stably sorted by the merged token's score, descending, then by the left and right
 * parts' lengths in characters, descending. */
typedef struct {
    int32_t l, r;       /* ids of the parts */
    uint32_t lo, ro;    /* byte length of the left part (the right starts there) */
    float score;
    int32_t lchars, rchars;
    int64_t seq;
    int32_t tok;
} merge_cand;

static int cmp_local(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int cmp_global(const void *a, const void *b) {
    const merge_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->lchars != y->lchars) return x->lchars > y->lchars ? -1 : 1;
    if (x->rchars != y->rchars) return x->rchars > y->rchars ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static cp_status write_derived_merges(cp_strbuf *sb, const tokinfo *ti, int64_t *n_merges) {
    if (!ti->scores)
        return cp_error("%s: the tokenizer has neither tokenizer.ggml.merges nor tokenizer.ggml.scores", ti->g->path);
    size_t cap = 1024, n = 0;
    merge_cand *c = cp_malloc(cap * sizeof *c, "merges");
    if (!c) return CP_ERR;
    for (int64_t id = 0; id < ti->n; id++) {
        const cp_gguf_str *t = &ti->vocab[id];
        /* dict(zip(tokens, scores)): the first occurrence's position, the last one's score. */
        int32_t last = cp_strmap_get(&ti->map, t->ptr, t->len);
        int first_occurrence = 1;
        if (last != (int32_t)id)
            for (int64_t k = 0; k < id && first_occurrence; k++)
                if (ti->vocab[k].len == t->len && !memcmp(ti->vocab[k].ptr, t->ptr, (size_t)t->len)) first_occurrence = 0;
        if (!first_occurrence) continue;
        const float score = (float)cp_gguf_arr_float(ti->scores, (uint64_t)last);
        size_t start = n;
        int32_t chars_total = 0;
        for (uint64_t k = 0; k < t->len; k += cp_utf8_len((unsigned char)t->ptr[k])) chars_total++;
        int32_t chars = 0;
        for (uint64_t k = 0; k < t->len;) {
            k += cp_utf8_len((unsigned char)t->ptr[k]);
            chars++;
            if (k >= t->len) break;
            int32_t l = cp_strmap_get(&ti->map, t->ptr, k), r = cp_strmap_get(&ti->map, t->ptr + k, t->len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                merge_cand *nc = cp_realloc(c, cap * 2 * sizeof *c, "merges");
                if (!nc) { cp_free(c); return CP_ERR; }
                c = nc;
                cap *= 2;
            }
            c[n] = (merge_cand){.l = l, .r = r, .lo = (uint32_t)k, .score = score, .lchars = chars,
                                .rchars = chars_total - chars, .seq = (int64_t)n, .tok = (int32_t)id};
            n++;
        }
        qsort(c + start, n - start, sizeof *c, cmp_local);
    }
    for (size_t i = 0; i < n; i++) c[i].seq = (int64_t)i;
    qsort(c, n, sizeof *c, cmp_global);
    cp_sb_append(sb, "    \"merges\": [");
    for (size_t i = 0; i < n; i++) {
        const cp_gguf_str *t = &ti->vocab[c[i].tok];
        cp_sb_append(sb, i ? ",\n      [" : "\n      [");
        cp_json_write_string(sb, t->ptr, c[i].lo, 0);
        cp_sb_append(sb, ", ");
        cp_json_write_string(sb, t->ptr + c[i].lo, t->len - c[i].lo, 0);
        cp_sb_append(sb, "]");
    }
    cp_sb_append(sb, n ? "\n    ]\n" : "]\n");
    cp_free(c);
    *n_merges = (int64_t)n;
    return CP_OK;
}

static char *special_name(const tokinfo *ti, int64_t id) {
    if (id < 0) return NULL;
    const cp_gguf_str *s = &ti->vocab[id];
    char *out = cp_malloc((size_t)s->len + 1, "a token");
    if (!out) return NULL;
    memcpy(out, s->ptr, (size_t)s->len);
    out[s->len] = '\0';
    return out;
}

/* tokenizer_config.json and special_tokens_map.json. Token strings holding NUL cannot go through
 * cJSON; such a special token is left out. */
static cp_status write_configs(const tokinfo *ti, int64_t model_max_length, cp_gguf_tokenizer *tk) {
    static const char *const roles[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    const int64_t ids[4] = {ti->bos, ti->eos, ti->pad, ti->unk};
    cJSON *cfg = cJSON_CreateObject(), *map = cJSON_CreateObject();
    if (!cfg || !map) { cJSON_Delete(cfg); cJSON_Delete(map); return CP_ERR; }
    cJSON_AddBoolToObject(cfg, "add_bos_token", ti->add_bos);
    cJSON_AddBoolToObject(cfg, "add_eos_token", ti->add_eos);
    if (ti->chat_template) cJSON_AddStringToObject(cfg, "chat_template", ti->chat_template);
    cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    cJSON_AddNumberToObject(cfg, "model_max_length", (double)model_max_length);
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    for (int k = 0; k < 4; k++) {
        if (ids[k] < 0 || memchr(ti->vocab[ids[k]].ptr, 0, (size_t)ti->vocab[ids[k]].len)) continue;
        char *s = special_name(ti, ids[k]);
        if (!s) { cJSON_Delete(cfg); cJSON_Delete(map); return CP_ERR; }
        cJSON_AddStringToObject(cfg, roles[k], s);
        cJSON_AddStringToObject(map, roles[k], s);
        cp_free(s);
    }
    tk->tokenizer_config_json = cp_convert_json_file(cfg);
    tk->special_tokens_map_json = cp_convert_json_file(map);
    return tk->tokenizer_config_json && tk->special_tokens_map_json ? CP_OK : CP_ERR;
}

cp_status cp_gguf_tokenizer_build(const cp_gguf *g, int64_t model_max_length, cp_gguf_tokenizer *tk) {
    memset(tk, 0, sizeof *tk);
    char *model = NULL, *pre = NULL;
    if (cp_gguf_get_string(g, "tokenizer.ggml.model", 1, &model) ||
        cp_gguf_get_string(g, "tokenizer.ggml.pre", 0, &pre)) {
        cp_free(model);
        return CP_ERR;
    }
    snprintf(tk->model, sizeof tk->model, "%s", model);
    snprintf(tk->pre, sizeof tk->pre, "%s", pre ? pre : "");
    int byte_level = !strcmp(model, "gpt2"), spm = !strcmp(model, "llama");
    cp_status st = CP_OK;
    if (!byte_level && !spm)
        st = cp_error("%s: tokenizer.ggml.model '%s' is not supported (gpt2: byte-level BPE, llama: SentencePiece BPE)",
                      g->path, model);
    tokinfo ti;
    memset(&ti, 0, sizeof ti);
    if (st == CP_OK) st = tokinfo_read(g, model, pre, &ti);
    if (st == CP_OK && spm && ti.unk < 0)
        for (int64_t i = 0; i < ti.n && ti.unk < 0; i++)
            if (token_type(&ti, i) == 2) ti.unk = i; /* UNKNOWN */
    cp_strbuf sb;
    cp_sb_init(&sb);
    int ignore_merges = 0;
    if (st == CP_OK) {
        cp_sb_append(&sb, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
        write_added_tokens(&sb, &ti, byte_level, &tk->n_added);
        if (byte_level) {
            st = write_byte_level_parts(&sb, g, pre ? pre : "default", &ignore_merges);
        } else {
            cp_sb_append(&sb, "  \"normalizer\": null,\n");
            cp_sb_printf(&sb, "  \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
                              "\"prepend_scheme\": \"%s\", \"split\": false},\n",
                         ti.add_space_prefix ? "first" : "never");
        }
    }
    if (st == CP_OK) {
        write_post_processor(&sb, &ti);
        if (byte_level)
            cp_sb_append(&sb, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                              "\"use_regex\": true},\n");
        else
            cp_sb_printf(&sb, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": "
                              "{\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, "
                              "{\"type\": \"Fuse\"}%s]},\n",
                         ti.add_space_prefix ? ", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}" : "");
        cp_sb_append(&sb, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": ");
        if (spm && ti.unk >= 0) cp_json_write_string(&sb, ti.vocab[ti.unk].ptr, ti.vocab[ti.unk].len, 0);
        else cp_sb_append(&sb, "null");
        cp_sb_printf(&sb, ",\n    \"continuing_subword_prefix\": %s,\n    \"end_of_word_suffix\": %s,\n"
                          "    \"fuse_unk\": %s,\n    \"byte_fallback\": %s,\n    \"ignore_merges\": %s,\n",
                     byte_level ? "\"\"" : "null", byte_level ? "\"\"" : "null", spm ? "true" : "false",
                     spm ? "true" : "false", ignore_merges ? "true" : "false");
        write_vocab(&sb, &ti);
        tk->n_tokens = ti.n;
        if (ti.merges) {
            st = write_file_merges(&sb, &ti, &tk->n_merges);
        } else if (spm) {
            tk->merges_derived = 1;
            st = write_derived_merges(&sb, &ti, &tk->n_merges);
        } else {
            st = cp_error("%s: a byte-level (gpt2) tokenizer without tokenizer.ggml.merges", g->path);
        }
        cp_sb_append(&sb, "  }\n}\n");
    }
    if (st == CP_OK && !(tk->tokenizer_json = cp_sb_finish(&sb))) st = CP_ERR;
    if (st == CP_OK) st = write_configs(&ti, model_max_length, tk);
    cp_sb_free(&sb);
    tokinfo_free(&ti);
    cp_free(model);
    cp_free(pre);
    if (st != CP_OK) cp_gguf_tokenizer_free(tk);
    return st;
}

void cp_gguf_tokenizer_free(cp_gguf_tokenizer *tk) {
    cp_free(tk->tokenizer_json);
    cp_free(tk->tokenizer_config_json);
    cp_free(tk->special_tokens_map_json);
    tk->tokenizer_json = tk->tokenizer_config_json = tk->special_tokens_map_json = NULL;
}
