/*
 * text_metrics.h — corpus metrics of generated text against references: BLEU as sacreBLEU computes it
 * (bleu.c) and ROUGE-L as Google's rouge-score computes it (rouge.c).
 *
 * BLEU is sacrebleu.corpus_bleu(hyps, refs) with its defaults (sacreBLEU 2.x): each segment is
 * right-stripped of whitespace and tokenized with the "13a" tokenizer (mteval-v13a: `<skipped>` and
 * "-\n" removed, newlines to spaces, &quot; &amp; &lt; &gt; unescaped, punctuation split off, periods and
 * commas split unless next to a digit, a dash after a digit split, whitespace collapsed); n-grams of
 * order 1..4 are clipped against the maximum count of each n-gram over the segment's references; the
 * reference length of a segment is the reference length closest to the hypothesis length (the shorter
 * on a tie); counts are summed over the corpus; precisions with no match are smoothed by the 'exp'
 * method (1 / (2^k total), k counting the zero-match orders so far); the brevity penalty
 * exp(1 - ref_len / hyp_len) when the output is shorter; effective order off (an order with no n-grams
 * at all scores 0). Mixed case (no lowercasing). Whitespace is Python's str.split() whitespace (the
 * Unicode spaces, U+001C..U+001F and U+0085 included).
 *
 * ROUGE-L is rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False): each text lowercased
 * (str.lower(): ASCII letters, and U+0130 and the Kelvin sign U+212A, the only characters whose
 * lowercase holds an ASCII letter), every run of characters other than [a-z0-9] a token boundary;
 * per pair precision = LCS / hyp tokens, recall = LCS / ref tokens, F = 2PR / (P + R) (0 when either side
 * has no tokens); with several references the reference with the highest F (the first on a tie) is the
 * segment's score (score_multi); the corpus value is the mean F, precision and recall of that
 * reference over the segments.
 *
 * Scores are in sacreBLEU's units: BLEU and its precisions 0..100, ROUGE 0..1.
 * Text is UTF-8 bytes (invalid bytes are kept as they are and are never whitespace).
 *
 * Not here: reading the hypothesis and reference files (cli/cmd_score.c), generation (src/generate).
 */
#ifndef CP_TRAIN_TEXT_METRICS_H
#define CP_TRAIN_TEXT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CP_BLEU_MAX_ORDER 4

/* One segment: a hypothesis and its references (at least one; segments may have different numbers). */
typedef struct {
    const char *hyp;
    const char *const *refs;
    int64_t n_refs;
} cp_text_segment;

/* ---- BLEU (bleu.c) ------------------------------------------------------------------------------- */

typedef struct {
    double score;                          /* 0..100 */
    int64_t counts[CP_BLEU_MAX_ORDER];     /* clipped n-gram matches, order 1..4 */
    int64_t totals[CP_BLEU_MAX_ORDER];     /* hypothesis n-grams */
    double precisions[CP_BLEU_MAX_ORDER];  /* 0..100, smoothed */
    double bp;                             /* brevity penalty */
    double ratio;                          /* sys_len / ref_len (0 when ref_len is 0) */
    int64_t sys_len, ref_len;              /* tokens in the hypotheses / the closest references */
} cp_bleu_score;

/* Corpus BLEU of seg[0..n) (n >= 1; every segment with at least one reference). */
cp_status cp_bleu_corpus(const cp_text_segment *seg, int64_t n, cp_bleu_score *out);
/* The line sacreBLEU prints, str(score) without the signature:
 * "BLEU = 23.45 55.1/30.2/17.3/9.8 (BP = 0.945 ratio = 0.946 hyp_len = 1234 ref_len = 1305)".
 * Returns the length it needs (as snprintf). */
int cp_bleu_format(const cp_bleu_score *s, char *buf, size_t cap);
/* The 13a tokenization of text (after the right strip): tokens joined by single spaces, a new string
 * (cp_free), or NULL when memory runs out (error set). */
char *cp_bleu_tokenize_13a(const char *text);

/* ---- ROUGE-L (rouge.c) --------------------------------------------------------------------------- */

typedef struct {
    double fmeasure, precision, recall;  /* means over the segments, 0..1 */
    int64_t n;                           /* segments */
} cp_rouge_score;

/* ROUGE-L of seg[0..n) (n >= 1; every segment with at least one reference). per_segment, when not
 * NULL, receives each segment's F (n values). */
cp_status cp_rouge_l_corpus(const cp_text_segment *seg, int64_t n, cp_rouge_score *out, double *per_segment);
/* rouge-score's default tokenizer: the number of tokens of text, and when tokens is not NULL the
 * tokens themselves joined by single spaces into a new string (cp_free). */
cp_status cp_rouge_tokenize(const char *text, char **tokens, int64_t *n_tokens);

#endif
