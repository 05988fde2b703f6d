/*
 * rouge.c — ROUGE-L F-measure as rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
 * computes it (rouge_score/tokenize.py, rouge_scorer.py _score_lcs, score_multi); see text_metrics.h.
 *
 * The tokenizer lowercases, turns every run of characters outside [a-z0-9] into a boundary and keeps
 * the non-empty pieces. Tokens are interned into ids (one map per corpus) so that the LCS table,
 * kept as two rows, compares integers.
 *
 * Not here: BLEU (bleu.c), ROUGE-N, ROUGE-Lsum, the Porter stemmer.
 */
#include "train/text_metrics.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "core/strmap.h"
#include "core/utf8.h"

#include <inttypes.h>
#include <string.h>

/* Calls fn(token, len, ctx) on each token of text; tok_buf holds a lowered token (room for strlen). */
typedef cp_status (*token_fn)(const char *tok, size_t len, void *ctx);

static cp_status each_token(const char *text, char *tok_buf, token_fn fn, void *ctx) {
    size_t n = strlen(text), i = 0, t = 0;
    while (i <= n) {
        char c = 0;         /* the lowered ASCII letter or digit at i, or 0 for a boundary */
        int dot_after = 0;  /* a boundary right after c */
        size_t step = 1;
        if (i < n) {
            unsigned char b = (unsigned char)text[i];
            if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9')) c = (char)b;
            else if (b >= 'A' && b <= 'Z') c = (char)(b - 'A' + 'a');
            else if (b >= 0x80) {
                size_t len = cp_utf8_char_len(text + i, n - i);
                if (len >= 2) {
                    size_t used = len;
                    uint32_t cp = cp_utf8_decode(text + i, &used);
                    if (cp == 0x130) c = 'i', dot_after = 1; /* 'İ'.lower() == 'i\u0307': an i, a boundary */
                    else if (cp == 0x212A) c = 'k';  /* KELVIN SIGN lowers to ASCII k */
                    step = len; /* else an invalid byte: a boundary, one byte on */
                }
            }
        }
        if (c) tok_buf[t++] = c;
        if ((!c || dot_after) && t) {
            if (fn(tok_buf, t, ctx)) return CP_ERR;
            t = 0;
        }
        i += step;
    }
    return CP_OK;
}

/* ---- tokens as a string (for tests) --------------------------------------------------------------- */

typedef struct { cp_strbuf sb; int64_t n; } join_ctx;

static cp_status join_token(const char *tok, size_t len, void *ctx) {
    join_ctx *j = ctx;
    if (j->n++) cp_sb_append(&j->sb, " ");
    cp_sb_append_n(&j->sb, tok, len);
    return CP_OK;
}

cp_status cp_rouge_tokenize(const char *text, char **tokens, int64_t *n_tokens) {
    if (tokens) *tokens = NULL;
    char *buf = cp_malloc(strlen(text) + 1, "a ROUGE token");
    if (!buf) return CP_ERR;
    join_ctx j = {.n = 0};
    cp_sb_init(&j.sb);
    cp_sb_append(&j.sb, "");
    cp_status st = each_token(text, buf, join_token, &j);
    cp_free(buf);
    *n_tokens = j.n;
    if (st || !tokens) { cp_sb_free(&j.sb); return st; }
    *tokens = cp_sb_finish(&j.sb);
    return *tokens ? CP_OK : CP_ERR;
}

/* ---- LCS F-measure ----------------------------------------------------------------------------- */

typedef struct {
    cp_strmap vocab;
    int32_t *ids;
    size_t n, cap;
} id_list;

static cp_status push_id(const char *tok, size_t len, void *ctx) {
    id_list *L = ctx;
    int32_t id = cp_strmap_get(&L->vocab, tok, len);
    if (id < 0) {
        id = (int32_t)L->vocab.n;
        if (cp_strmap_put(&L->vocab, tok, len, id)) return CP_ERR;
    }
    if (cp_grow(&L->ids, &L->cap, L->n + 1, sizeof *L->ids, 64, "ROUGE tokens")) return CP_ERR;
    L->ids[L->n++] = id;
    return CP_OK;
}

/* The length of the longest common subsequence of a[0..na) and b[0..nb); row has nb + 1 ints. */
static int64_t lcs_length(const int32_t *a, size_t na, const int32_t *b, size_t nb, int64_t *row) {
    for (size_t j = 0; j <= nb; j++) row[j] = 0;
    for (size_t i = 1; i <= na; i++) {
        int64_t diag = 0; /* table[i-1][j-1] */
        for (size_t j = 1; j <= nb; j++) {
            int64_t up = row[j]; /* table[i-1][j] */
            row[j] = a[i - 1] == b[j - 1] ? diag + 1 : (up > row[j - 1] ? up : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

cp_status cp_rouge_l_corpus(const cp_text_segment *seg, int64_t n, cp_rouge_score *out, double *per_segment) {
    memset(out, 0, sizeof *out);
    if (!seg || n < 1) return cp_error("ROUGE-L needs at least one segment");
    for (int64_t i = 0; i < n; i++) {
        if (!seg[i].hyp) return cp_error("segment %" PRId64 ": no hypothesis", i + 1);
        if (seg[i].n_refs < 1 || !seg[i].refs) return cp_error("segment %" PRId64 ": no reference", i + 1);
        for (int64_t r = 0; r < seg[i].n_refs; r++)
            if (!seg[i].refs[r]) return cp_error("segment %" PRId64 ": reference %" PRId64 " is NULL", i + 1, r + 1);
    }
    size_t longest = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t h = strlen(seg[i].hyp);
        if (h > longest) longest = h;
        for (int64_t r = 0; r < seg[i].n_refs; r++) {
            size_t l = strlen(seg[i].refs[r]);
            if (l > longest) longest = l;
        }
    }
    id_list L = {0};
    cp_strmap_init(&L.vocab);
    char *buf = cp_malloc(longest + 1, "a ROUGE token");
    int64_t *row = NULL;
    size_t row_cap = 0;
    cp_status st = buf ? CP_OK : CP_ERR;
    double sum_f = 0.0, sum_p = 0.0, sum_r = 0.0;
    for (int64_t i = 0; i < n && !st; i++) {
        L.n = 0;
        if ((st = each_token(seg[i].hyp, buf, push_id, &L))) break;
        size_t nh = L.n; /* hypothesis ids at L.ids[0..nh), each reference's after them */
        if ((st = cp_grow(&row, &row_cap, nh + 1, sizeof *row, 64, "the LCS table"))) break;
        double best_f = 0.0, best_p = 0.0, best_r = 0.0;
        for (int64_t r = 0; r < seg[i].n_refs && !st; r++) {
            L.n = nh;
            if ((st = each_token(seg[i].refs[r], buf, push_id, &L))) break;
            size_t nr = L.n - nh;
            double p = 0.0, rc = 0.0, f = 0.0;
            if (nr && nh) {  /* _score_lcs: zero when either side has no tokens */
                int64_t lcs = lcs_length(L.ids + nh, nr, L.ids, nh, row);
                p = (double)lcs / (double)nh;
                rc = (double)lcs / (double)nr;
                f = p + rc > 0 ? 2 * p * rc / (p + rc) : 0.0;
            }
            if (r == 0 || f > best_f) { best_f = f; best_p = p; best_r = rc; } /* np.argmax: the first max */
        }
        if (st) break;
        if (per_segment) per_segment[i] = best_f;
        sum_f += best_f;
        sum_p += best_p;
        sum_r += best_r;
    }
    cp_strmap_free(&L.vocab);
    cp_free(L.ids);
    cp_free(buf);
    cp_free(row);
    if (st) return CP_ERR;
    out->fmeasure = sum_f / (double)n;
    out->precision = sum_p / (double)n;
    out->recall = sum_r / (double)n;
    out->n = n;
    return CP_OK;
}
