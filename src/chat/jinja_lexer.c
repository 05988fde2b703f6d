/*
 * jinja_lexer.c — a chat template's text cut into tokens, with jinja2's whitespace rules as
 * transformers configures them (trim_blocks, lstrip_blocks, keep_trailing_newline off):
 *   - newlines (\r\n, \r, \n) become \n, and one newline at the very end is dropped;
 *   - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}", "-}}", "-#}" all after it;
 *   - lstrip_blocks: spaces and tabs between the start of a line and "{%" / "{#" are removed
 *     (unless the tag opens with "{%+");
 *   - trim_blocks: one newline right after "%}" / "#}" is removed (unless the tag closes with "+%}").
 * Inside a tag: names, integers, floats, strings with Python's escapes, and operators; the tag's end
 * is looked for before each token, so a string may hold "%}".
 *
 * Not here: {% raw %} (the parser refuses it by name), line statements, custom delimiters.
 */
#include "chat/jinja.h"
#include "core/alloc.h"
#include "core/utf8.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jx_heap *h;
    jx_token *toks;
    size_t n, cap;
} lexer;

static cp_status push(lexer *L, jx_token t) {
    if (cp_grow(&L->toks, &L->cap, L->n + 1, sizeof *L->toks, 256, "template tokens")) return CP_ERR;
    L->toks[L->n++] = t;
    return CP_OK;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static int count_lines(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

/* Decodes a string literal's body (Python escapes) into a heap string. */
static cp_status unescape(lexer *L, const char *s, size_t n, int line, jx_token *t) {
    char *o = jx_alloc(L->h, n + 1);
    if (!o) return CP_ERR;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { o[w++] = s[i]; continue; }
        char c = s[++i];
        switch (c) {
        case 'n': o[w++] = '\n'; break;
        case 't': o[w++] = '\t'; break;
        case 'r': o[w++] = '\r'; break;
        case '0': o[w++] = '\0'; break;
        case 'a': o[w++] = '\a'; break;
        case 'b': o[w++] = '\b'; break;
        case 'f': o[w++] = '\f'; break;
        case 'v': o[w++] = '\v'; break;
        case '\\': case '\'': case '"': o[w++] = c; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            size_t want = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            if (want > n - 1 - i) return jx_fail(line, "a truncated \\%c escape in a string", c);
            uint32_t cp = 0;
            for (size_t k = 1; k <= want; k++) {
                char d = s[i + k];
                if (!isxdigit((unsigned char)d)) return jx_fail(line, "a bad \\%c escape in a string", c);
                cp = cp * 16 + (uint32_t)(isdigit((unsigned char)d) ? d - '0' : (tolower((unsigned char)d) - 'a' + 10));
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return jx_fail(line, "the escape \\%c in a string is not a Unicode scalar value", c);
            i += want;
            /* \xNN and \uNNNN are code points (Python 3 str), written as UTF-8 */
            w += cp_utf8_encode(cp, o + w);
            break;
        }
        default: o[w++] = '\\'; o[w++] = c; break;
        }
    }
    o[w] = '\0';
    t->kind = JT_STRING;
    t->s = o;
    t->n = w;
    return CP_OK;
}

static const char *const OPS[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                  ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};

/* Tokens of one tag body from src[*p] to its end marker ("}}" or "%}"); *p moves past the marker and
 * *strip_after says the marker was "-}}" / "-%}", *keep_nl that it was "+%}". */
static cp_status lex_tag(lexer *L, const char *src, size_t len, size_t *p, int *line, int is_block, int *strip_after,
                         int *keep_nl) {
    const char end0 = is_block ? '%' : '}';
    int open_line = *line;
    size_t i = *p;
    for (;;) {
        while (i < len && is_ws(src[i])) { if (src[i] == '\n') (*line)++; i++; }
        if (i >= len) return jx_fail(open_line, "a tag opened here is never closed (\"%s\" expected)", is_block ? "%}" : "}}");
        /* the end marker, with its optional - / + */
        if ((src[i] == '-' || (is_block && src[i] == '+')) && i + 2 < len && src[i + 1] == end0 && src[i + 2] == '}') {
            *strip_after = src[i] == '-';
            *keep_nl = src[i] == '+';
            *p = i + 3;
            break;
        }
        if (i + 1 < len && src[i] == end0 && src[i + 1] == '}') {
            *p = i + 2;
            break;
        }
        jx_token t = {.line = *line};
        char c = src[i];
        if (isalpha((unsigned char)c) || c == '_') {
            size_t s = i;
            while (i < len && (isalnum((unsigned char)src[i]) || src[i] == '_')) i++;
            t.kind = JT_NAME;
            if (!(t.s = jx_strndup(L->h, src + s, i - s))) return CP_ERR;
            t.n = i - s;
        } else if (isdigit((unsigned char)c)) {
            size_t s = i;
            int is_float = 0;
            while (i < len && (isdigit((unsigned char)src[i]) || src[i] == '_')) i++;
            if (i + 1 < len && src[i] == '.' && isdigit((unsigned char)src[i + 1])) {
                is_float = 1;
                i++;
                while (i < len && (isdigit((unsigned char)src[i]) || src[i] == '_')) i++;
            }
            if (i < len && (src[i] == 'e' || src[i] == 'E')) {
                size_t e = i + 1;
                if (e < len && (src[e] == '+' || src[e] == '-')) e++;
                if (e < len && isdigit((unsigned char)src[e])) {
                    is_float = 1;
                    i = e;
                    while (i < len && isdigit((unsigned char)src[i])) i++;
                }
            }
            char buf[64];
            size_t w = 0;
            for (size_t k = s; k < i && w + 1 < sizeof buf; k++)
                if (src[k] != '_') buf[w++] = src[k];
            buf[w] = '\0';
            if (is_float) { t.kind = JT_FLOAT; t.f = strtod(buf, NULL); }
            else {
                t.kind = JT_INT;
                if (w > 18) return jx_fail(*line, "the integer %s is too large", buf);
                t.i = strtoll(buf, NULL, 10);
            }
        } else if (c == '\'' || c == '"') {
            size_t s = ++i;
            while (i < len && src[i] != c) {
                if (src[i] == '\\' && i + 1 < len) i++;
                i++;
            }
            if (i >= len) return jx_fail(*line, "a string opened here is never closed");
            if (unescape(L, src + s, i - s, *line, &t)) return CP_ERR;
            t.line = *line;
            *line += count_lines(src + s, i - s);
            i++;
        } else {
            size_t k = 0;
            for (; k < sizeof OPS / sizeof *OPS; k++) {
                size_t m = strlen(OPS[k]);
                if (i + m <= len && !memcmp(src + i, OPS[k], m)) break;
            }
            if (k == sizeof OPS / sizeof *OPS) return jx_fail(*line, "unexpected character '%c' in a tag", c);
            t.kind = JT_OP;
            t.s = OPS[k];
            t.n = strlen(OPS[k]);
            i += t.n;
        }
        if (push(L, t)) return CP_ERR;
    }
    return CP_OK;
}

cp_status jx_lex(jx_heap *h, const char *in, size_t in_len, jx_token **out, size_t *n_out) {
    lexer L = {.h = h};
    *out = NULL;
    *n_out = 0;
    /* newlines normalised, one trailing newline dropped */
    char *src = jx_alloc(h, in_len + 1);
    if (!src) return CP_ERR;
    size_t len = 0;
    for (size_t i = 0; i < in_len; i++) {
        if (in[i] == '\r') { src[len++] = '\n'; if (i + 1 < in_len && in[i + 1] == '\n') i++; }
        else src[len++] = in[i];
    }
    if (len && src[len - 1] == '\n') len--;
    src[len] = '\0';

    size_t p = 0;
    int line = 1, strip_next = 0;
    while (p <= len) {
        /* the next tag opener */
        size_t q = p;
        int kind = 0; /* '{', '%', '#' */
        while (q + 1 < len) {
            if (src[q] == '{' && (src[q + 1] == '{' || src[q + 1] == '%' || src[q + 1] == '#')) { kind = src[q + 1]; break; }
            q++;
        }
        if (!kind) q = len;
        char sign = (kind && q + 2 < len) ? src[q + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        /* the text before it */
        size_t ts = p, te = q;
        if (strip_next) while (ts < te && is_ws(src[ts])) ts++;
        if (kind && sign == '-') {
            while (te > ts && is_ws(src[te - 1])) te--;
        } else if (kind && kind != '{' && sign != '+') {
            size_t l = te;
            while (l > ts && (src[l - 1] == ' ' || src[l - 1] == '\t' || src[l - 1] == '\v' || src[l - 1] == '\f')) l--;
            /* jinja: the text since its last newline is blank, or it has none and the previous tag's
             * match (with what "-" or trim_blocks consumed) ended a line */
            int at_line_start = (l > ts) ? src[l - 1] == '\n' : (ts == 0 || src[ts - 1] == '\n');
            if (at_line_start) te = l;
        }
        if (te > ts) {
            jx_token t = {.kind = JT_TEXT, .line = line + count_lines(src + p, ts - p)};
            if (!(t.s = jx_strndup(h, src + ts, te - ts))) goto fail;
            t.n = te - ts;
            if (push(&L, t)) goto fail;
        }
        line += count_lines(src + p, q - p);
        if (!kind) break;
        size_t body = q + 2 + (sign ? 1 : 0);
        int strip_after = 0, keep_nl = 0;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t k = body; k + 1 < len; k++)
                if (src[k] == '#' && src[k + 1] == '}') { e = src + k; break; }
            if (!e) { jx_fail(line, "a comment opened here is never closed"); goto fail; }
            size_t ep = (size_t)(e - src);
            if (ep > body && (src[ep - 1] == '-' || src[ep - 1] == '+')) {
                strip_after = src[ep - 1] == '-';
                keep_nl = src[ep - 1] == '+';
            }
            line += count_lines(src + body, ep - body);
            p = ep + 2;
        } else {
            int is_block = kind == '%';
            jx_token t = {.kind = is_block ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, .line = line};
            if (push(&L, t)) goto fail;
            p = body;
            if (lex_tag(&L, src, len, &p, &line, is_block, &strip_after, &keep_nl)) goto fail;
            jx_token e = {.kind = is_block ? JT_BLOCK_END : JT_VAR_END, .line = line};
            if (push(&L, e)) goto fail;
            if (!is_block) keep_nl = 1;
        }
        if (!strip_after && !keep_nl && p < len && src[p] == '\n') {
            p++;
            line++;
        }
        strip_next = strip_after;
    }
    jx_token eof = {.kind = JT_EOF, .line = line};
    if (push(&L, eof)) goto fail;
    /* copy into the heap so the caller frees nothing */
    *out = jx_alloc(h, L.n * sizeof **out);
    if (!*out) goto fail;
    memcpy(*out, L.toks, L.n * sizeof **out);
    *n_out = L.n;
    cp_free(L.toks);
    return CP_OK;
fail:
    cp_free(L.toks);
    return CP_ERR;
}
