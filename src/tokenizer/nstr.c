/*
 * nstr.c — tk_nstr, the normalized string with per-byte alignments (HF `NormalizedString`).
 *
 * All offsets kept in alignments are absolute byte offsets into the encoder's UTF-8-clean input,
 * so slices never need shifting. Each routine here is a line-by-line port of the corresponding
 * `NormalizedString` method, because offsets users see depend on its exact rules.
 */
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

tk_nstr tk_nstr_view(const char *input, size_t start, size_t end) {
    tk_nstr ns = {0};
    ns.s = input + start;
    ns.len = end - start;
    ns.orig_start = start;
    ns.orig_end = end;
    return ns;
}

void tk_nstr_free(tk_nstr *ns) {
    free(ns->own_s);
    free(ns->own_al);
    ns->own_s = NULL;
    ns->own_al = NULL;
}

tk_span tk_nstr_align(const tk_nstr *ns, size_t i) {
    if (ns->al) return ns->al[i];
    size_t cs = i;
    while (cs > 0 && cp_utf8_is_continuation((unsigned char)ns->s[cs])) cs--;
    size_t ce = cs + cp_utf8_len((unsigned char)ns->s[cs]);
    return (tk_span){(uint32_t)(ns->orig_start + cs), (uint32_t)(ns->orig_start + ce)};
}

void tk_nstr_convert(const tk_nstr *ns, size_t a, size_t b, size_t *start, size_t *end) {
    if (a == b) { /* convert_offsets returns the empty target unchanged, then it is shifted */
        *start = ns->orig_start + a;
        *end = ns->orig_start + b;
        return;
    }
    if (b > ns->len || a > b) { *start = a; *end = b; return; } /* outside: HF keeps the raw offsets */
    *start = tk_nstr_align(ns, a).start;
    *end = tk_nstr_align(ns, b - 1).end;
}

tk_nstr tk_nstr_slice(const tk_nstr *ns, size_t a, size_t b) {
    tk_nstr out = {0};
    out.s = ns->s + a;
    out.len = b - a;
    if (ns->al) {
        out.al = ns->al + a;
        if (a < b) {
            out.orig_start = ns->al[a].start;
            out.orig_end = ns->al[b - 1].end;
        } else {
            out.orig_start = out.orig_end = ns->orig_start + a;
        }
    } else {
        out.orig_start = ns->orig_start + a;
        out.orig_end = ns->orig_start + b;
    }
    return out;
}

/* Room for a rebuilt string of up to len bytes and its alignments. */
static int rebuild_alloc(size_t len, char **s, tk_span **al) {
    *s = cp_malloc(len + 1, "a normalized string");
    *al = cp_malloc((len + 1) * sizeof **al, "normalized string alignments");
    if (!*s || !*al) { free(*s); free(*al); return CP_ERR; }
    return CP_OK;
}

/* Ends a rebuild: s[0..o) is written; the old bytes from `from` on follow unchanged, with their
 * alignments, and ns takes over s and al. */
static void rebuild_finish(tk_nstr *ns, char *s, tk_span *al, size_t o, size_t from) {
    size_t newlen = o + (ns->len - from);
    memcpy(s + o, ns->s + from, ns->len - from);
    for (size_t i = from; i < ns->len; i++) al[o++] = tk_nstr_align(ns, i);
    s[newlen] = '\0';
    tk_nstr_free(ns);
    ns->s = ns->own_s = s;
    ns->al = ns->own_al = al;
    ns->len = newlen;
}

int tk_nstr_transform_range(tk_nstr *ns, size_t a, size_t b, const tk_change *ops, size_t nops,
                            size_t initial_offset) {
    /* New length: old outside the range + the new chars. */
    size_t add = 0;
    for (size_t k = 0; k < nops; k++) add += ops[k].c < 0x80 ? 1 : ops[k].c < 0x800 ? 2 : ops[k].c < 0x10000 ? 3 : 4;
    char *s;
    tk_span *al;
    if (rebuild_alloc(ns->len + add, &s, &al)) return CP_ERR;
    memcpy(s, ns->s, a);
    for (size_t i = 0; i < a; i++) al[i] = tk_nstr_align(ns, i);

    size_t p = a; /* next old char to be consumed (replaced_normalized) */
    for (size_t k = 0; k < initial_offset && p < b; k++) p += cp_utf8_len((unsigned char)ns->s[p]);
    size_t offset = p;
    size_t o = a;
    tk_span zero = {(uint32_t)ns->orig_start, (uint32_t)ns->orig_start};
    for (size_t k = 0; k < nops; k++) {
        size_t idx = offset;
        tk_span align;
        if (ops[k].change > 0) align = idx < 1 ? zero : tk_nstr_align(ns, idx - 1);
        else align = idx < ns->len ? tk_nstr_align(ns, idx) : zero;
        size_t replaced = 0;
        if (ops[k].change <= 0 && p < b) { replaced = cp_utf8_len((unsigned char)ns->s[p]); p += replaced; }
        size_t removed = 0;
        for (int32_t r = 0; r < -ops[k].change && p < b; r++) {
            size_t l = cp_utf8_len((unsigned char)ns->s[p]);
            p += l;
            removed += l;
        }
        offset += replaced + removed;
        size_t l = cp_utf8_encode(ops[k].c, s + o);
        for (size_t i = 0; i < l; i++) al[o + i] = align;
        o += l;
    }
    rebuild_finish(ns, s, al, o, b);
    return CP_OK;
}

int tk_nstr_transform(tk_nstr *ns, const tk_change *ops, size_t nops, size_t initial_offset) {
    return tk_nstr_transform_range(ns, 0, ns->len, ops, nops, initial_offset);
}

int tk_nstr_prepend(tk_nstr *ns, const char *str) {
    if (ns->len == 0) return CP_OK;
    size_t nl;
    uint32_t next = cp_utf8_decode(ns->s, &nl);
    tk_change ops[64];
    size_t n = 0, i = 0, slen = strlen(str);
    while (i < slen && n < 63) {
        size_t l;
        uint32_t c = cp_utf8_decode(str + i, &l);
        ops[n] = (tk_change){c, n != 0};
        n++;
        i += l;
    }
    ops[n++] = (tk_change){next, 1};
    return tk_nstr_transform_range(ns, 0, nl, ops, n, 0);
}

int tk_nstr_replace_matches(tk_nstr *ns, const size_t *starts, const size_t *ends, size_t n,
                            const char *content) {
    if (n == 0) return CP_OK;
    size_t clen = strlen(content);
    /* Each match: content chars are all inserts (change 1) after removing the matched chars, so
     * every new byte takes the alignment of the match's last byte (idx - 1 = end - 1). */
    size_t newlen = ns->len;
    for (size_t k = 0; k < n; k++) newlen = newlen - (ends[k] - starts[k]) + clen;
    char *s;
    tk_span *al;
    if (rebuild_alloc(newlen, &s, &al)) return CP_ERR;
    size_t o = 0, last = 0;
    tk_span zero = {(uint32_t)ns->orig_start, (uint32_t)ns->orig_start};
    for (size_t k = 0; k < n; k++) {
        memcpy(s + o, ns->s + last, starts[k] - last);
        for (size_t i = last; i < starts[k]; i++) al[o++] = tk_nstr_align(ns, i);
        size_t idx = ends[k]; /* initial_removed + start */
        tk_span align = idx < 1 ? zero : tk_nstr_align(ns, idx - 1);
        memcpy(s + o, content, clen);
        for (size_t i = 0; i < clen; i++) al[o++] = align;
        last = ends[k];
    }
    rebuild_finish(ns, s, al, o, last);
    return CP_OK;
}

int tk_nstr_lrstrip(tk_nstr *ns, int left, int right) {
    size_t nchars = 0, leading = 0, trailing = 0;
    int lead_run = 1;
    for (size_t i = 0; i < ns->len;) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        int ws = tk_is_whitespace(c);
        if (lead_run && ws) leading++;
        else lead_run = 0;
        trailing = ws ? trailing + 1 : 0;
        nchars++;
        i += l;
    }
    if (!left) leading = 0;
    if (!right) trailing = 0;
    if (leading == 0 && trailing == 0) return CP_OK;
    tk_changes ch = {0};
    size_t ci = 0;
    for (size_t i = 0; i < ns->len; ci++) {
        size_t l;
        uint32_t c = cp_utf8_decode(ns->s + i, &l);
        i += l;
        if (ci < leading || ci >= nchars - trailing) continue;
        /* HF compares the char index with len() (bytes) - trailing - 1; reproduce that. */
        int32_t change = ((long long)ci == (long long)ns->len - (long long)trailing - 1) ? -(int32_t)trailing : 0;
        if (tk_changes_push(&ch, c, change)) { free(ch.v); return CP_ERR; }
    }
    int rc = tk_nstr_transform(ns, ch.v, ch.n, leading);
    free(ch.v);
    return rc;
}
