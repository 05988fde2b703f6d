/*
 * bleu.c — corpus BLEU exactly as sacreBLEU's corpus_bleu() computes it by default; see text_metrics.h.
 *
 * The 13a tokenizer is sacreBLEU's Python (tokenizers/tokenizer_13a.py, tokenizer_re.py) step by step:
 * sequential str.replace passes, then the four regular-expression substitutions, each a left-to-right
 * scan with non-overlapping matches as re.sub makes them. The patterns only test ASCII bytes, and a
 * match consumes one character before or after a '.' / ',' / '-', so scanning bytes gives the same
 * result as Python scanning code points (a multi-byte character is never split: its inner bytes are
 * neither digits nor punctuation). Tokens are interned into ids (one map per corpus), and each
 * segment's n-grams are sorted so that equal n-grams sit together: the hypothesis count is clipped by
 * the largest count of the same n-gram in any one reference, as sacreBLEU's max-merged Counter does.
 *
 * Not here: ROUGE (rouge.c), sentence BLEU, other tokenizers, smoothing methods other than 'exp'.
 */
#include "train/text_metrics.h"
#include "core/alloc.h"
#include "core/strmap.h"
#include "core/utf8.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Python's whitespace ------------------------------------------------------------------------ */

/* The byte length of the whitespace character at s[0..n) as str.isspace() sees it, or 0. */
static size_t py_space_len(const char *s, size_t n) {
    unsigned char b = (unsigned char)s[0];
    if (b < 0x80) return (b >= 0x09 && b <= 0x0D) || (b >= 0x1C && b <= 0x20);
    size_t len = cp_utf8_char_len(s, n);
    if (len < 2) return 0;
    size_t used = len;
    uint32_t c = cp_utf8_decode(s, &used);
    int sp = c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
             c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    return sp ? len : 0;
}

/* The length of s[0..n) without its trailing whitespace (str.rstrip()). */
static size_t py_rstrip_len(const char *s, size_t n) {
    size_t end = 0, i = 0;
    while (i < n) {
        size_t sp = py_space_len(s + i, n - i);
        if (sp) { i += sp; continue; }
        size_t len = cp_utf8_char_len(s + i, n - i);
        i += len ? len : 1;
        end = i;
    }
    return end;
}

/* ---- the 13a tokenizer ---------------------------------------------------------------------------- */

/* s = s.replace(from, to) in place (to is never longer than from). */
static void replace_all(char *s, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to);
    char *r = s, *w = s;
    while (*r) {
        if (strncmp(r, from, nf) == 0) {
            memcpy(w, to, nt);
            w += nt;
            r += nf;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

/* ([\{-\~\[-\` -\&\(-\+\:-\@\/]) */
static int is_punct13a(unsigned char c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int is_dot_comma(unsigned char c) { return c == '.' || c == ','; }

/* One of the four substitutions of TokenizerRegexp over in[0..n) into out (room for 3n + 1 in the first
 * pass, 2n + 1 in the others). */
static size_t re_pass(int pass, const char *in, size_t n, char *out) {
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)in[i], d = i + 1 < n ? (unsigned char)in[i + 1] : 0;
        int two = i + 1 < n;
        if (pass == 0 && is_punct13a(c)) {                         /* ' \1 ' */
            out[o++] = ' '; out[o++] = (char)c; out[o++] = ' ';
            i++;
        } else if (pass == 1 && two && !is_digit(c) && is_dot_comma(d)) { /* ([^0-9])([\.,]) -> '\1 \2 ' */
            out[o++] = (char)c; out[o++] = ' '; out[o++] = (char)d; out[o++] = ' ';
            i += 2;
        } else if (pass == 2 && two && is_dot_comma(c) && !is_digit(d)) { /* ([\.,])([^0-9]) -> ' \1 \2' */
            out[o++] = ' '; out[o++] = (char)c; out[o++] = ' '; out[o++] = (char)d;
            i += 2;
        } else if (pass == 3 && two && is_digit(c) && d == '-') {  /* ([0-9])(-) -> '\1 \2 ' */
            out[o++] = (char)c; out[o++] = ' '; out[o++] = '-'; out[o++] = ' ';
            i += 2;
        } else {
            out[o++] = (char)c;
            i++;
        }
    }
    out[o] = 0;
    return o;
}

char *cp_bleu_tokenize_13a(const char *text) {
    size_t n = py_rstrip_len(text, strlen(text));
    /* ' ' + line + ' '; the first pass at most triples the length, each later one at most doubles it
     * (two characters become four), so 24 (n + 2) bounds them all */
    size_t cap = 24 * (n + 2) + 1;
    char *a = cp_malloc(cap, "the 13a tokenizer"), *b = cp_malloc(cap, "the 13a tokenizer");
    if (!a || !b) { cp_free(a); cp_free(b); return NULL; }
    memcpy(a, text, n);
    a[n] = 0;
    replace_all(a, "<skipped>", "");
    replace_all(a, "-\n", "");
    replace_all(a, "\n", " ");
    if (strchr(a, '&')) {
        replace_all(a, "&quot;", "\"");
        replace_all(a, "&amp;", "&");
        replace_all(a, "&lt;", "<");
        replace_all(a, "&gt;", ">");
    }
    n = strlen(a);
    b[0] = ' ';
    memcpy(b + 1, a, n);
    b[n + 1] = ' ';
    n += 2;
    for (int pass = 0; pass < 4; pass++) {
        assert(n * (pass == 0 ? 3 : 2) < cap);
        n = re_pass(pass, b, n, a);
        char *t = a; a = b; b = t;
    }
    /* ' '.join(line.split()) from b[0..n) into a */
    size_t o = 0, i = 0;
    while (i < n) {
        size_t sp = py_space_len(b + i, n - i);
        if (sp) { i += sp; continue; }
        if (o) a[o++] = ' ';
        while (i < n && !py_space_len(b + i, n - i)) a[o++] = b[i++];
    }
    a[o] = 0;
    cp_free(b);
    return a;
}

/* ---- n-gram statistics ---------------------------------------------------------------------------- */

typedef struct {
    int32_t id[CP_BLEU_MAX_ORDER];
    int32_t n;    /* order 1..4 */
    int32_t src;  /* 0 the hypothesis, 1.. the references */
} ngram;

static int ngram_cmp(const void *pa, const void *pb) {
    const ngram *a = pa, *b = pb;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (int k = 0; k < a->n; k++)
        if (a->id[k] != b->id[k]) return a->id[k] < b->id[k] ? -1 : 1;
    return a->src < b->src ? -1 : a->src > b->src;
}

typedef struct {
    cp_strmap vocab;
    int32_t *ids;     /* the current text's token ids */
    size_t n_ids, cap_ids;
    ngram *ng;
    size_t n_ng, cap_ng;
} bleu_work;

/* Tokenizes text (13a) into w->ids (interning new tokens). */
static cp_status tokenize_ids(bleu_work *w, const char *text) {
    char *tok = cp_bleu_tokenize_13a(text);
    if (!tok) return CP_ERR;
    w->n_ids = 0;
    cp_status st = CP_OK;
    for (char *p = tok; *p && !st;) {
        char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int32_t id = cp_strmap_get(&w->vocab, p, len);
        if (id < 0) {
            id = (int32_t)w->vocab.n;
            st = cp_strmap_put(&w->vocab, p, len, id);
        }
        if (!st) st = cp_grow(&w->ids, &w->cap_ids, w->n_ids + 1, sizeof *w->ids, 64, "token ids");
        if (!st) w->ids[w->n_ids++] = id;
        p += len + (e != NULL);
    }
    cp_free(tok);
    return st;
}

/* Appends the n-grams of w->ids (orders 1..4) tagged src. */
static cp_status push_ngrams(bleu_work *w, int32_t src) {
    for (int n = 1; n <= CP_BLEU_MAX_ORDER; n++) {
        for (size_t i = 0; i + (size_t)n <= w->n_ids; i++) {
            if (cp_grow(&w->ng, &w->cap_ng, w->n_ng + 1, sizeof *w->ng, 256, "n-grams")) return CP_ERR;
            ngram g = {.n = n, .src = src};
            memcpy(g.id, w->ids + i, (size_t)n * sizeof *g.id);
            w->ng[w->n_ng++] = g;
        }
    }
    return CP_OK;
}

/* Adds segment s's statistics: hypothesis and closest reference length, clipped matches and totals. */
static cp_status segment_stats(bleu_work *w, const cp_text_segment *s, int64_t idx, cp_bleu_score *acc) {
    w->n_ng = 0;
    int64_t ref_len = -1, hyp_len;
    int64_t *lens = cp_malloc((size_t)s->n_refs * sizeof *lens, "reference lengths");
    if (!lens) return CP_ERR;
    for (int64_t r = 0; r < s->n_refs; r++) {
        if (!s->refs[r]) { cp_free(lens); return cp_error("segment %" PRId64 ": reference %" PRId64 " is NULL", idx + 1, r + 1); }
        if (tokenize_ids(w, s->refs[r]) || push_ngrams(w, (int32_t)(r + 1))) { cp_free(lens); return CP_ERR; }
        lens[r] = (int64_t)w->n_ids;
    }
    if (tokenize_ids(w, s->hyp) || push_ngrams(w, 0)) { cp_free(lens); return CP_ERR; }
    hyp_len = (int64_t)w->n_ids;
    int64_t best_diff = -1;  /* _get_closest_ref_len: the closest length, the shorter on a tie */
    for (int64_t r = 0; r < s->n_refs; r++) {
        int64_t diff = llabs(hyp_len - lens[r]);
        if (best_diff == -1 || diff < best_diff) { best_diff = diff; ref_len = lens[r]; }
        else if (diff == best_diff && lens[r] < ref_len) ref_len = lens[r];
    }
    cp_free(lens);
    acc->sys_len += hyp_len;
    acc->ref_len += ref_len;
    qsort(w->ng, w->n_ng, sizeof *w->ng, ngram_cmp);
    for (size_t a = 0; a < w->n_ng;) {
        size_t b = a;
        int64_t hyp_count = 0, ref_max = 0, run = 0;
        int32_t run_src = -1;
        while (b < w->n_ng && w->ng[b].n == w->ng[a].n &&
               memcmp(w->ng[b].id, w->ng[a].id, (size_t)w->ng[a].n * sizeof(int32_t)) == 0) {
            if (w->ng[b].src == 0) hyp_count++;
            else {
                if (w->ng[b].src != run_src) { run_src = w->ng[b].src; run = 0; }
                if (++run > ref_max) ref_max = run;
            }
            b++;
        }
        int order = w->ng[a].n - 1;
        acc->totals[order] += hyp_count;
        acc->counts[order] += hyp_count < ref_max ? hyp_count : ref_max;
        a = b;
    }
    return CP_OK;
}

/* BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method='exp'), effective_order off. */
static void compute_bleu(cp_bleu_score *s) {
    s->bp = 1.0;
    if (s->sys_len < s->ref_len) s->bp = s->sys_len > 0 ? exp(1.0 - (double)s->ref_len / (double)s->sys_len) : 0.0;
    s->ratio = s->ref_len ? (double)s->sys_len / (double)s->ref_len : 0.0;
    for (int n = 0; n < CP_BLEU_MAX_ORDER; n++) s->precisions[n] = 0.0;
    s->score = 0.0;
    int any = 0;
    for (int n = 0; n < CP_BLEU_MAX_ORDER; n++) any |= s->counts[n] != 0;
    if (!any) return;
    double smooth_mteval = 1.0;
    for (int n = 0; n < CP_BLEU_MAX_ORDER; n++) {
        if (s->totals[n] == 0) break;
        if (s->counts[n] == 0) {
            smooth_mteval *= 2;
            s->precisions[n] = 100.0 / (smooth_mteval * (double)s->totals[n]);
        } else {
            s->precisions[n] = 100.0 * (double)s->counts[n] / (double)s->totals[n];
        }
    }
    double sum = 0.0;  /* sum(my_log(p)): log floored at -9999999999 for p == 0 */
    for (int n = 0; n < CP_BLEU_MAX_ORDER; n++) sum += s->precisions[n] == 0.0 ? -9999999999.0 : log(s->precisions[n]);
    s->score = s->bp * exp(sum / CP_BLEU_MAX_ORDER);
}

cp_status cp_bleu_corpus(const cp_text_segment *seg, int64_t n, cp_bleu_score *out) {
    memset(out, 0, sizeof *out);
    if (!seg || n < 1) return cp_error("BLEU needs at least one segment");
    for (int64_t i = 0; i < n; i++) {
        if (!seg[i].hyp) return cp_error("segment %" PRId64 ": no hypothesis", i + 1);
        if (seg[i].n_refs < 1 || !seg[i].refs) return cp_error("segment %" PRId64 ": no reference", i + 1);
    }
    bleu_work w = {0};
    cp_strmap_init(&w.vocab);
    cp_status st = CP_OK;
    for (int64_t i = 0; i < n && !st; i++) st = segment_stats(&w, &seg[i], i, out);
    cp_strmap_free(&w.vocab);
    cp_free(w.ids);
    cp_free(w.ng);
    if (st) {
        memset(out, 0, sizeof *out);
        return CP_ERR;
    }
    compute_bleu(out);
    return CP_OK;
}

int cp_bleu_format(const cp_bleu_score *s, char *buf, size_t cap) {
    return snprintf(buf, cap, "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %" PRId64
                    " ref_len = %" PRId64 ")", s->score, s->precisions[0], s->precisions[1], s->precisions[2],
                    s->precisions[3], s->bp, s->ratio, s->sys_len, s->ref_len);
}
