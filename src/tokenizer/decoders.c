/*
 * decoders.c — the `decoder` slot: ByteLevel, Metaspace, WordPiece, ByteFallback, Fuse, Strip,
 * Replace, BPEDecoder, Sequence. Each transforms the list of token strings (decode_chain); the
 * caller concatenates the result. Invalid UTF-8 produced along the way is replaced by U+FFFD the
 * way Rust's String::from_utf8_lossy does (one per maximal invalid subsequence).
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int tk_parse_pattern(const cJSON *j, const char *path, tk_regex **out);

typedef enum { D_BYTELEVEL, D_METASPACE, D_WORDPIECE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_REPLACE, D_BPE, D_SEQUENCE } dtype;
static const char *const NAMES[] = {
    [D_BYTELEVEL] = "ByteLevel", [D_METASPACE] = "Metaspace", [D_WORDPIECE] = "WordPiece",
    [D_BYTEFALLBACK] = "ByteFallback", [D_FUSE] = "Fuse", [D_STRIP] = "Strip", [D_REPLACE] = "Replace",
    [D_BPE] = "BPEDecoder", [D_SEQUENCE] = "Sequence",
};

struct tk_decoder {
    tk_component_head head; /* kind: a dtype; children: a Sequence's */
    uint32_t replacement;   /* Metaspace */
    int prepend_never;      /* Metaspace prepend_scheme == never */
    char *prefix;           /* WordPiece */
    int cleanup;            /* WordPiece */
    uint32_t content;       /* Strip */
    long start, stop;       /* Strip */
    tk_regex *pattern;      /* Replace */
    char *rep;              /* Replace content */
    char *suffix;           /* BPEDecoder */
};

/* Frees what a decoder owns besides its head (tk_component_free does the rest). */
static void release(void *obj) {
    tk_decoder *d = obj;
    free(d->prefix);
    tk_regex_free(d->pattern);
    free(d->rep);
    free(d->suffix);
}

/* Reads the fields of a decoder of the kind in its head (a Sequence's children: the caller). */
static int parse(void *obj, const cJSON *j, const char *path) {
    tk_decoder *d = obj;
    const char *s;
    int rc = CP_OK;
    switch ((dtype)d->head.kind) {
    case D_BYTELEVEL: case D_BYTEFALLBACK: case D_FUSE: case D_SEQUENCE: /* no fields */
        break;
    case D_METASPACE: {
        rc = tk_json_char(j, "replacement", path, 0x2581, &d->replacement);
        const char *scheme;
        int aps;
        if (!rc) rc = tk_json_str(j, "prepend_scheme", "always", 0, &scheme, path);
        if (!rc) rc = tk_json_bool(j, "add_prefix_space", -1, &aps, path);
        if (!rc) d->prepend_never = strcmp(scheme, "never") == 0 || aps == 0;
        break;
    }
    case D_WORDPIECE:
        rc = tk_json_str(j, "prefix", "##", 0, &s, path);
        if (!rc && !(d->prefix = cp_strdup(s))) rc = CP_ERR;
        if (!rc) rc = tk_json_bool(j, "cleanup", 1, &d->cleanup, path);
        break;
    case D_STRIP:
        rc = tk_json_char(j, "content", path, ' ', &d->content);
        if (!rc) rc = tk_json_int(j, "start", 0, 0, TK_JSON_MAX_INT, &d->start, path);
        if (!rc) rc = tk_json_int(j, "stop", 0, 0, TK_JSON_MAX_INT, &d->stop, path);
        break;
    case D_REPLACE:
        rc = tk_parse_pattern(j, path, &d->pattern);
        if (!rc) rc = tk_json_str(j, "content", "", 0, &s, path);
        if (!rc && !(d->rep = cp_strdup(s))) rc = CP_ERR;
        break;
    case D_BPE:
        rc = tk_json_str(j, "suffix", "</w>", 0, &s, path);
        if (!rc && !(d->suffix = cp_strdup(s))) rc = CP_ERR;
        break;
    }
    return rc;
}

const tk_component_class tk_decoder_class = {
    "decoder", NAMES, D_SEQUENCE, "decoders", sizeof(tk_decoder), parse, release,
};

int tk_decoder_create_simple(tk_decoder **out, const char *type) {
    cJSON *j = cJSON_CreateObject();
    if (!j || !cJSON_AddStringToObject(j, "type", type)) { cJSON_Delete(j); return cp_error("out of memory"); }
    int rc = tk_decoder_from_json(out, j, "decoder");
    cJSON_Delete(j);
    return rc;
}

/* Appends bytes to b, replacing invalid UTF-8 by U+FFFD (from_utf8_lossy). */
static int append_lossy(tk_buf *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t v = cp_utf8_valid_prefix(s + i, n - i);
        if (tk_buf_append(b, s + i, v)) return CP_ERR;
        i += v;
        if (i < n) {
            if (tk_buf_append(b, "\xEF\xBF\xBD", 3)) return CP_ERR;
            i += cp_utf8_invalid_len(s + i, n - i);
        }
    }
    return CP_OK;
}

/* Replaces the list by one string (or keeps it as a list of new strings). */
static int list_replace(tk_strlist *l, tk_strlist *nl) {
    tk_strlist_free(l);
    *l = *nl;
    memset(nl, 0, sizeof *nl);
    return CP_OK;
}

/* Replaces the whole list by the one string in b (unless rc says a step before failed) and frees
 * b; returns the status. */
static int list_replace_joined(tk_strlist *l, tk_buf *b, int rc) {
    tk_strlist nl = {0};
    if (!rc) rc = tk_strlist_push(&nl, b->s ? b->s : "", b->len);
    tk_buf_free(b);
    if (!rc) rc = list_replace(l, &nl);
    tk_strlist_free(&nl);
    return rc;
}

static int set_item(tk_strlist *l, size_t i, tk_buf *b) {
    free(l->v[i]);
    l->v[i] = b->s ? b->s : cp_strdup("");
    l->len[i] = b->len;
    memset(b, 0, sizeof *b);
    return l->v[i] ? CP_OK : CP_ERR;
}

static int dec_bytelevel(tk_strlist *l) {
    tk_buf raw = {0}, out = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < l->n && !rc; i++) {
        /* A token whose chars all map back to bytes gives those bytes; otherwise its own bytes. */
        size_t start = raw.len;
        int ok = 1;
        for (size_t k = 0; k < l->len[i] && !rc;) {
            size_t cl;
            uint32_t c = cp_utf8_decode(l->v[i] + k, &cl);
            k += cl;
            int byte = -1;
            if (c >= 0x21 && c <= 0x7E) byte = (int)c;
            else if ((c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) byte = (int)c;
            else if (c >= 0x100 && c <= 0x143) {
                /* the remapped bytes, in increasing order: 0x00-0x20, 0x7F-0xA0, 0xAD */
                uint32_t k2 = c - 0x100;
                byte = k2 < 33 ? (int)k2 : k2 < 67 ? (int)(0x7F + k2 - 33) : 0xAD;
            }
            if (byte < 0) { ok = 0; break; }
            char ch = (char)byte;
            rc = tk_buf_append(&raw, &ch, 1);
        }
        if (!ok) {
            raw.len = start;
            rc = tk_buf_append(&raw, l->v[i], l->len[i]);
        }
    }
    if (!rc) rc = append_lossy(&out, raw.s ? raw.s : "", raw.len);
    tk_buf_free(&raw);
    return list_replace_joined(l, &out, rc);
}

static int parse_hex_byte(const char *s, size_t n, int *out) {
    /* u8::from_str_radix(&token[3..5], 16) on a 6-byte "<0x..>" token */
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (i == 3 && c == '+') continue;
        if (d < 0) return 0;
        v = v * 16 + d;
        digits++;
    }
    if (!digits) return 0;
    *out = v;
    return 1;
}

static int flush_bytes(tk_strlist *nl, tk_buf *bytes) {
    if (!bytes->len) return CP_OK;
    int rc = CP_OK;
    if (cp_utf8_valid_prefix(bytes->s, bytes->len) == bytes->len) rc = tk_strlist_push(nl, bytes->s, bytes->len);
    else
        for (size_t k = 0; k < bytes->len && !rc; k++) rc = tk_strlist_push(nl, "\xEF\xBF\xBD", 3);
    bytes->len = 0;
    return rc;
}

static int dec_bytefallback(tk_strlist *l) {
    tk_strlist nl = {0};
    tk_buf bytes = {0};
    int rc = CP_OK;
    for (size_t i = 0; i < l->n && !rc; i++) {
        int b;
        if (parse_hex_byte(l->v[i], l->len[i], &b)) {
            char c = (char)b;
            rc = tk_buf_append(&bytes, &c, 1);
        } else {
            rc = flush_bytes(&nl, &bytes);
            if (!rc) rc = tk_strlist_push(&nl, l->v[i], l->len[i]);
        }
    }
    if (!rc) rc = flush_bytes(&nl, &bytes);
    if (!rc) rc = list_replace(l, &nl);
    tk_strlist_free(&nl);
    tk_buf_free(&bytes);
    return rc;
}

/* Replaces every occurrence of from (non-empty) by to in s. */
static int replace_all(tk_buf *out, const char *s, size_t n, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), i = 0;
    out->len = 0;
    if (tk_buf_reserve(out, n)) return CP_ERR;
    while (i < n) {
        const char *f = fl ? memmem(s + i, n - i, from, fl) : NULL;
        if (!f) break;
        if (tk_buf_append(out, s + i, (size_t)(f - (s + i))) || tk_buf_append(out, to, tl)) return CP_ERR;
        i = (size_t)(f - s) + fl;
    }
    if (tk_buf_append(out, s + i, n - i)) return CP_ERR;
    return CP_OK;
}

static int wordpiece_cleanup(tk_buf *b) {
    static const char *rules[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    tk_buf t = {0};
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        if (replace_all(&t, b->s ? b->s : "", b->len, rules[r][0], rules[r][1])) { tk_buf_free(&t); return CP_ERR; }
        tk_buf tmp = *b; *b = t; t = tmp;
    }
    tk_buf_free(&t);
    return CP_OK;
}

int tk_decoder_apply(const tk_decoder *d, tk_strlist *l) {
    if (!d) return CP_OK;
    int rc = CP_OK;
    switch ((dtype)d->head.kind) {
    case D_BYTELEVEL: return dec_bytelevel(l);
    case D_BYTEFALLBACK: return dec_bytefallback(l);
    case D_FUSE: {
        tk_buf b = {0};
        for (size_t i = 0; i < l->n && !rc; i++) rc = tk_buf_append(&b, l->v[i], l->len[i]);
        return list_replace_joined(l, &b, rc);
    }
    case D_METASPACE:
        for (size_t i = 0; i < l->n && !rc; i++) {
            tk_buf b = {0};
            for (size_t k = 0; k < l->len[i] && !rc;) {
                size_t cl;
                uint32_t c = cp_utf8_decode(l->v[i] + k, &cl);
                if (c == d->replacement) {
                    if (!(i == 0 && !d->prepend_never)) rc = tk_buf_append(&b, " ", 1);
                } else {
                    rc = tk_buf_append(&b, l->v[i] + k, cl);
                }
                k += cl;
            }
            if (!rc) rc = set_item(l, i, &b);
            tk_buf_free(&b);
        }
        return rc;
    case D_WORDPIECE:
        for (size_t i = 0; i < l->n && !rc; i++) {
            tk_buf b = {0};
            size_t pl = strlen(d->prefix);
            if (i != 0) {
                if (l->len[i] >= pl && memcmp(l->v[i], d->prefix, pl) == 0)
                    rc = tk_buf_append(&b, l->v[i] + pl, l->len[i] - pl);
                else
                    rc = tk_buf_append(&b, " ", 1) || tk_buf_append(&b, l->v[i], l->len[i]);
            } else {
                rc = tk_buf_append(&b, l->v[i], l->len[i]);
            }
            if (!rc && d->cleanup) rc = wordpiece_cleanup(&b);
            if (!rc) rc = set_item(l, i, &b);
            tk_buf_free(&b);
        }
        return rc;
    case D_STRIP:
        for (size_t i = 0; i < l->n && !rc; i++) {
            /* char positions */
            size_t nchars = 0;
            for (size_t k = 0; k < l->len[i]; k += cp_utf8_len((unsigned char)l->v[i][k])) nchars++;
            size_t *pos = cp_malloc((nchars + 1) * sizeof *pos, "a token");
            uint32_t *cs = cp_malloc((nchars + 1) * sizeof *cs, "a token");
            if (!pos || !cs) { free(pos); free(cs); return CP_ERR; }
            size_t c = 0;
            for (size_t k = 0; k < l->len[i];) {
                size_t cl;
                cs[c] = cp_utf8_decode(l->v[i] + k, &cl);
                pos[c++] = k;
                k += cl;
            }
            pos[nchars] = l->len[i];
            size_t start_cut = 0, stop_cut = nchars;
            for (size_t k = 0; k < nchars && (long)k < d->start; k++) {
                if (cs[k] == d->content) start_cut = k + 1;
                else break;
            }
            for (long k = 0; k < d->stop && (size_t)k < nchars; k++) {
                size_t index = nchars - (size_t)k - 1;
                if (cs[index] == d->content) stop_cut = index;
                else break;
            }
            tk_buf b = {0};
            if (start_cut < stop_cut) rc = tk_buf_append(&b, l->v[i] + pos[start_cut], pos[stop_cut] - pos[start_cut]);
            if (!rc) rc = set_item(l, i, &b);
            tk_buf_free(&b);
            free(pos);
            free(cs);
        }
        return rc;
    case D_REPLACE:
        for (size_t i = 0; i < l->n && !rc; i++) {
            tk_matches m = {0};
            tk_buf b = {0};
            rc = tk_regex_find_matches(d->pattern, l->v[i], l->len[i], &m);
            for (size_t k = 0; k < m.n && !rc; k++)
                rc = m.v[k].is_match ? tk_buf_append(&b, d->rep, strlen(d->rep))
                                     : tk_buf_append(&b, l->v[i] + m.v[k].start, m.v[k].end - m.v[k].start);
            if (!rc) rc = set_item(l, i, &b);
            tk_buf_free(&b);
            free(m.v);
        }
        return rc;
    case D_BPE:
        for (size_t i = 0; i < l->n && !rc; i++) {
            tk_buf b = {0};
            rc = replace_all(&b, l->v[i], l->len[i], d->suffix, i + 1 == l->n ? "" : " ");
            if (!rc) rc = set_item(l, i, &b);
            tk_buf_free(&b);
        }
        return rc;
    case D_SEQUENCE:
        for (size_t i = 0; i < d->head.children.n && !rc; i++) rc = tk_decoder_apply(d->head.children.v[i], l);
        return rc;
    }
    return CP_OK;
}
