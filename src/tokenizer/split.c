/*
 * split.c — patterns (regular expressions, literals, char predicates) and the splitting of a
 * normalized string by them, as HF `Pattern::find_matches` + `NormalizedString::split` do.
 *
 * Regexes in tokenizer.json are written for Oniguruma (Ruby syntax). They are compiled with PCRE2
 * (UTF + UCP, JIT when available) after a small translation where the two dialects differ on the
 * patterns that occur in practice: Oniguruma's \s is Unicode White_Space (PCRE2 also accepts
 * U+180E), \w is Letter | Mark | Decimal_Number | Connector_Punctuation (PCRE2's \w has No but
 * no marks), and \h is a hex digit (PCRE2: horizontal space). Iteration over matches follows
 * rust-onig's FindMatches: an empty match right where the previous match ended is skipped.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/internal.h"
#include "core/alloc.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

struct tk_regex {
    pcre2_code *code; /* NULL for a literal */
    char *lit;
    size_t lit_len;
    int jit;
};

#define WS_CLASS "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD_CLASS "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"

/* Rewrites the Oniguruma constructs listed in the header comment. */
static int translate(const char *p, size_t n, tk_buf *out) {
    int in_class = 0; /* depth of [...] */
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            if (e == 's') rep = in_class ? WS_CLASS : "[" WS_CLASS "]";
            else if (e == 'S' && !in_class) rep = "[^" WS_CLASS "]";
            else if (e == 'w') rep = in_class ? WORD_CLASS : "[" WORD_CLASS "]";
            else if (e == 'W' && !in_class) rep = "[^" WORD_CLASS "]";
            else if (e == 'h') rep = in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
            else if (e == 'H' && !in_class) rep = "[^0-9a-fA-F]";
            if (rep) {
                if (tk_buf_append(out, rep, strlen(rep))) return CP_ERR;
            } else if (tk_buf_append(out, p + i, 2)) {
                return CP_ERR;
            }
            i++;
            continue;
        }
        if (c == '[') {
            if (in_class && i + 1 < n && p[i + 1] == ':') { /* POSIX bracket [:alpha:] */
                const char *end = strstr(p + i, ":]");
                if (end && (size_t)(end - p) < n) {
                    size_t l = (size_t)(end - (p + i)) + 2;
                    if (tk_buf_append(out, p + i, l)) return CP_ERR;
                    i += l - 1;
                    continue;
                }
            }
            in_class++;
            if (tk_buf_append(out, "[", 1)) return CP_ERR;
            /* A ']' right after '[' or '[^' is literal. */
            if (i + 1 < n && p[i + 1] == '^') { if (tk_buf_append(out, "^", 1)) return CP_ERR; i++; }
            if (i + 1 < n && p[i + 1] == ']') { if (tk_buf_append(out, "\\]", 2)) return CP_ERR; i++; }
            continue;
        }
        if (c == ']' && in_class) in_class--;
        if (tk_buf_append(out, &c, 1)) return CP_ERR;
    }
    return CP_OK;
}

int tk_regex_compile(tk_regex **out, const char *pattern, size_t len, const char *what) {
    tk_buf t = {0};
    if (translate(pattern, len, &t)) return CP_ERR;
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)(t.s ? t.s : ""), t.len, PCRE2_UTF | PCRE2_UCP,
                                     &err, &eoff, NULL);
    tk_buf_free(&t);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return cp_error("%s: cannot compile regex \"%.*s\": %s", what, (int)len, pattern, (char *)msg);
    }
    tk_regex *re = cp_calloc(1, sizeof *re, "a regex");
    if (!re) { pcre2_code_free(code); return CP_ERR; }
    re->code = code;
    re->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    *out = re;
    return CP_OK;
}

int tk_regex_literal(tk_regex **out, const char *lit, size_t len) {
    tk_regex *re = cp_calloc(1, sizeof *re, "a pattern");
    if (!re) return CP_ERR;
    re->lit = cp_malloc(len + 1, "a pattern");
    if (!re->lit) { free(re); return CP_ERR; }
    memcpy(re->lit, lit, len);
    re->lit[len] = '\0';
    re->lit_len = len;
    *out = re;
    return CP_OK;
}

void tk_regex_free(tk_regex *re) {
    if (!re) return;
    if (re->code) pcre2_code_free(re->code);
    free(re->lit);
    free(re);
}

static int push_match(tk_matches *out, size_t *prev, size_t s, size_t e) {
    if (*prev != s && tk_matches_push(out, *prev, s, 0)) return CP_ERR;
    if (tk_matches_push(out, s, e, 1)) return CP_ERR;
    *prev = e;
    return CP_OK;
}

int tk_regex_find_matches(const tk_regex *re, const char *s, size_t len, tk_matches *out) {
    out->n = 0;
    if (len == 0) return tk_matches_push(out, 0, 0, 0);
    size_t prev = 0;
    if (!re->code) {
        if (re->lit_len == 0) { /* HF: an empty literal matches nothing (its range counts chars) */
            size_t nchars = 0;
            for (size_t i = 0; i < len; i += cp_utf8_len((unsigned char)s[i])) nchars++;
            return tk_matches_push(out, 0, nchars, 0);
        }
        size_t i = 0;
        while (i + re->lit_len <= len) {
            const char *f = memmem(s + i, len - i, re->lit, re->lit_len);
            if (!f) break;
            size_t st = (size_t)(f - s);
            if (push_match(out, &prev, st, st + re->lit_len)) return CP_ERR;
            i = st + re->lit_len;
        }
    } else {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
        if (!md) return cp_error("out of memory for regex match data");
        pcre2_match_context *mctx = NULL;
        pcre2_jit_stack *jstack = NULL;
        size_t last_end = 0;
        int have_last = 0;
        size_t last_match_end = 0;
        int rc = CP_OK;
        while (last_end <= len) {
            int r = pcre2_match(re->code, (PCRE2_SPTR)s, len, last_end, PCRE2_NO_UTF_CHECK, md, mctx);
            if (r == PCRE2_ERROR_JIT_STACKLIMIT && !jstack) {
                jstack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
                mctx = pcre2_match_context_create(NULL);
                if (!jstack || !mctx) { rc = cp_error("out of memory for a regex stack"); break; }
                pcre2_jit_stack_assign(mctx, NULL, jstack);
                continue;
            }
            if (r == PCRE2_ERROR_NOMATCH) break;
            if (r < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(r, msg, sizeof msg);
                rc = cp_error("regex match failed: %s", (char *)msg);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms && have_last && last_match_end == me) {
                last_end += last_end < len ? cp_utf8_len((unsigned char)s[last_end]) : 1;
                continue;
            }
            last_end = me;
            last_match_end = me;
            have_last = 1;
            if (push_match(out, &prev, ms, me)) { rc = CP_ERR; break; }
        }
        if (jstack) pcre2_jit_stack_free(jstack);
        if (mctx) pcre2_match_context_free(mctx);
        pcre2_match_data_free(md);
        if (rc) return rc;
    }
    if (prev != len && tk_matches_push(out, prev, len, 0)) return CP_ERR;
    return CP_OK;
}

int tk_pred_find_matches(int (*pred)(uint32_t c, const void *arg), const void *arg, const char *s,
                         size_t len, tk_matches *out) {
    out->n = 0;
    if (len == 0) return tk_matches_push(out, 0, 0, 0);
    size_t last_offset = 0, last_seen = 0;
    for (size_t b = 0; b < len;) {
        size_t l;
        uint32_t c = cp_utf8_decode(s + b, &l);
        last_seen = b + l;
        if (pred(c, arg)) {
            if (last_offset < b && tk_matches_push(out, last_offset, b, 0)) return CP_ERR;
            if (tk_matches_push(out, b, b + l, 1)) return CP_ERR;
            last_offset = b + l;
        }
        b += l;
    }
    if (last_seen > last_offset && tk_matches_push(out, last_offset, last_seen, 0)) return CP_ERR;
    return CP_OK;
}

int tk_matches_apply_behavior(tk_matches *m, tk_split_behavior behavior) {
    /* After this, v[i].is_match means "keep this split". */
    size_t n = 0;
    int previous_match = 0;
    switch (behavior) {
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; i < m->n; i++) m->v[i].is_match = 1;
        return CP_OK;
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < m->n; i++) m->v[i].is_match = !m->v[i].is_match;
        return CP_OK;
    case TK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < m->n; i++) {
            int is_match = m->v[i].is_match;
            if (is_match == previous_match && n > 0) m->v[n - 1].end = m->v[i].end;
            else m->v[n++] = (tk_match){m->v[i].start, m->v[i].end, 1};
            previous_match = is_match;
        }
        break;
    case TK_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < m->n; i++) {
            int is_match = m->v[i].is_match;
            if (is_match && !previous_match && n > 0) m->v[n - 1].end = m->v[i].end;
            else m->v[n++] = (tk_match){m->v[i].start, m->v[i].end, 1};
            previous_match = is_match;
        }
        break;
    case TK_SPLIT_MERGED_WITH_NEXT: {
        /* Fold from the right, then reverse. */
        size_t w = m->n; /* write position from the end */
        for (size_t k = m->n; k-- > 0;) {
            int is_match = m->v[k].is_match;
            if (is_match && !previous_match && w < m->n) m->v[w].start = m->v[k].start;
            else m->v[--w] = (tk_match){m->v[k].start, m->v[k].end, 1};
            previous_match = is_match;
        }
        memmove(m->v, m->v + w, (m->n - w) * sizeof *m->v);
        n = m->n - w;
        break;
    }
    }
    m->n = n;
    return CP_OK;
}
