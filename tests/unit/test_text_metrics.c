/*
 * test_text_metrics.c — BLEU and ROUGE-L (src/train/bleu.c, rouge.c) against sacreBLEU and rouge-score:
 * tests/fixtures/text_metrics/metrics.json (tests/reference/make_text_metric_fixtures.py) holds the 13a
 * and rouge-score tokenizations of tricky texts (punctuation, numbers, entities, <skipped>, Unicode
 * letters and spaces, random soups) and corpus_bleu / score_multi results on cases with empty
 * hypotheses, no match, short hypotheses, several references, length ties and real E2E references
 * with perturbed hypotheses. Counts and lengths must be equal, scores within 1e-9 relative, the
 * "BLEU = ..." line identical. Prints the largest relative difference seen.
 */
#include "test.h"
#include "core/alloc.h"
#include "io/json.h"
#include "io/fsutil.h"
#include "train/text_metrics.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>

#define FIXTURE "tests/fixtures/text_metrics/metrics.json"

static cJSON *fixture;
static double max_rel;

static void check_close(double got, double want, const char *what, const char *name) {
    double d = fabs(got - want) / (fabs(want) > 1e-300 ? fabs(want) : 1.0);
    if (d > max_rel) max_rel = d;
    CHECK(d <= 1e-9, "%s %s: got %.17g, reference %.17g", name, what, got, want);
}

static double num(const cJSON *o, const char *key) { return cJSON_GetObjectItem(o, key)->valuedouble; }

/* The segments of a fixture case; refs point into the JSON tree. */
static cp_text_segment *segments(const cJSON *c, int64_t *n) {
    const cJSON *segs = cJSON_GetObjectItem(c, "segments");
    *n = cJSON_GetArraySize(segs);
    cp_text_segment *s = calloc((size_t)*n, sizeof *s);
    int64_t i = 0;
    for (const cJSON *g = segs->child; g; g = g->next, i++) {
        const cJSON *refs = cJSON_GetObjectItem(g, "refs");
        s[i].hyp = cJSON_GetObjectItem(g, "hyp")->valuestring;
        s[i].n_refs = cJSON_GetArraySize(refs);
        const char **r = calloc((size_t)s[i].n_refs, sizeof *r);
        int64_t k = 0;
        for (const cJSON *x = refs->child; x; x = x->next) r[k++] = x->valuestring;
        s[i].refs = r;
    }
    return s;
}

static void free_segments(cp_text_segment *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) free((void *)s[i].refs);
    free(s);
}

TEST(tokenizers_match_sacrebleu_13a_and_rouge_score) {
    const cJSON *t = cJSON_GetObjectItem(fixture, "tokenize");
    CHECK(cJSON_GetArraySize(t) >= 60, "texts");
    int n_bad = 0;
    for (const cJSON *x = t->child; x; x = x->next) {
        const char *text = cJSON_GetObjectItem(x, "text")->valuestring;
        const char *want13a = cJSON_GetObjectItem(x, "bleu13a")->valuestring;
        const char *want_rouge = cJSON_GetObjectItem(x, "rouge")->valuestring;
        char *got = cp_bleu_tokenize_13a(text);
        CHECK(got && strcmp(got, want13a) == 0, "13a of \"%s\": got \"%s\", sacreBLEU \"%s\"", text, got ? got : "(null)", want13a);
        n_bad += !got || strcmp(got, want13a) != 0;
        cp_free(got);
        char *toks = NULL;
        int64_t nt = -1;
        CHECK_OK(cp_rouge_tokenize(text, &toks, &nt));
        CHECK(toks && strcmp(toks, want_rouge) == 0, "rouge tokens of \"%s\": got \"%s\", rouge-score \"%s\"", text,
              toks ? toks : "(null)", want_rouge);
        int64_t want_n = want_rouge[0] != 0;
        for (const char *p = want_rouge; *p; p++) want_n += *p == ' ';
        CHECK(nt == want_n, "rouge token count %" PRId64 " vs %" PRId64, nt, want_n);
        cp_free(toks);
    }
    CHECK(n_bad == 0, "%d tokenizations differ", n_bad);
}

TEST(corpus_bleu_matches_sacrebleu) {
    const cJSON *cases = cJSON_GetObjectItem(fixture, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 15, "cases");
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *w = cJSON_GetObjectItem(c, "bleu");
        int64_t n;
        cp_text_segment *s = segments(c, &n);
        cp_bleu_score b;
        CHECK_OK(cp_bleu_corpus(s, n, &b));
        check_close(b.score, num(w, "score"), "score", name);
        check_close(b.bp, num(w, "bp"), "bp", name);
        check_close(b.ratio, num(w, "ratio"), "ratio", name);
        CHECK(b.sys_len == (int64_t)num(w, "sys_len") && b.ref_len == (int64_t)num(w, "ref_len"),
              "%s: hyp_len %" PRId64 " ref_len %" PRId64 ", sacreBLEU %g %g", name, b.sys_len, b.ref_len,
              num(w, "sys_len"), num(w, "ref_len"));
        for (int k = 0; k < CP_BLEU_MAX_ORDER; k++) {
            int64_t wc = (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(w, "counts"), k)->valuedouble;
            int64_t wt = (int64_t)cJSON_GetArrayItem(cJSON_GetObjectItem(w, "totals"), k)->valuedouble;
            CHECK(b.counts[k] == wc && b.totals[k] == wt, "%s order %d: %" PRId64 "/%" PRId64 ", sacreBLEU %" PRId64
                  "/%" PRId64, name, k + 1, b.counts[k], b.totals[k], wc, wt);
            check_close(b.precisions[k], cJSON_GetArrayItem(cJSON_GetObjectItem(w, "precisions"), k)->valuedouble,
                        "precision", name);
        }
        char line[256];
        cp_bleu_format(&b, line, sizeof line);
        const char *want = cJSON_GetObjectItem(w, "str")->valuestring;
        CHECK(strcmp(line, want) == 0, "%s:\n    got       %s\n    sacreBLEU %s", name, line, want);
        free_segments(s, n);
    }
}

TEST(rouge_l_matches_rouge_score) {
    const cJSON *cases = cJSON_GetObjectItem(fixture, "cases");
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const cJSON *w = cJSON_GetObjectItem(c, "rouge");
        int64_t n;
        cp_text_segment *s = segments(c, &n);
        double *per = calloc((size_t)n, sizeof *per);
        cp_rouge_score r;
        CHECK_OK(cp_rouge_l_corpus(s, n, &r, per));
        CHECK(r.n == n, "segments");
        check_close(r.fmeasure, num(w, "fmeasure"), "rougeL F", name);
        check_close(r.precision, num(w, "precision"), "rougeL precision", name);
        check_close(r.recall, num(w, "recall"), "rougeL recall", name);
        int64_t i = 0;
        for (const cJSON *x = cJSON_GetObjectItem(w, "per_segment")->child; x; x = x->next, i++)
            check_close(per[i], x->valuedouble, "rougeL F of a segment", name);
        CHECK(i == n, "per-segment count");
        free(per);
        free_segments(s, n);
    }
}

TEST(bad_input_is_an_error) {
    cp_bleu_score b;
    cp_rouge_score r;
    const char *refs[1] = {"a b"};
    cp_text_segment ok = {.hyp = "a b", .refs = refs, .n_refs = 1};
    cp_text_segment no_ref = {.hyp = "a b", .refs = refs, .n_refs = 0};
    cp_text_segment no_hyp = {.hyp = NULL, .refs = refs, .n_refs = 1};
    const char *null_ref[2] = {"a", NULL};
    cp_text_segment has_null = {.hyp = "a", .refs = null_ref, .n_refs = 2};
    CHECK_ERR(cp_bleu_corpus(&ok, 0, &b), "at least one segment");
    CHECK_ERR(cp_rouge_l_corpus(&ok, 0, &r, NULL), "at least one segment");
    CHECK_ERR(cp_bleu_corpus(&no_ref, 1, &b), "segment 1: no reference");
    CHECK_ERR(cp_rouge_l_corpus(&no_ref, 1, &r, NULL), "segment 1: no reference");
    CHECK_ERR(cp_bleu_corpus(&no_hyp, 1, &b), "no hypothesis");
    CHECK_ERR(cp_bleu_corpus(&has_null, 1, &b), "reference 2 is NULL");
    CHECK_ERR(cp_rouge_l_corpus(&has_null, 1, &r, NULL), "reference 2 is NULL");
    /* invalid UTF-8 is kept as bytes, never a crash */
    const char *bad_refs[1] = {"caf\xc3 \xff\xfe abc\xe2\x80"};
    cp_text_segment bad = {.hyp = "caf\xc3 abc\xe2\x80 \xc0\xaf", .refs = bad_refs, .n_refs = 1};
    CHECK_OK(cp_bleu_corpus(&bad, 1, &b));
    CHECK_OK(cp_rouge_l_corpus(&bad, 1, &r, NULL));
    CHECK(b.sys_len == 3 && b.ref_len == 3, "invalid bytes are token characters: %" PRId64 " %" PRId64, b.sys_len, b.ref_len);
    CHECK(r.fmeasure > 0.99, "rouge on [caf abc] both sides: %g", r.fmeasure);
}

int main(void) {
    char *text = NULL;
    size_t len = 0;
    if (cp_read_file(FIXTURE, &text, &len) != CP_OK || cp_json_parse(text, len, FIXTURE, &fixture) != CP_OK) {
        fprintf(stderr, "cannot read %s: %s\n", FIXTURE, cp_last_error());
        return 1;
    }
    cp_free(text);
    RUN(tokenizers_match_sacrebleu_13a_and_rouge_score);
    RUN(corpus_bleu_matches_sacrebleu);
    RUN(rouge_l_matches_rouge_score);
    RUN(bad_input_is_an_error);
    printf("text metrics: max relative difference to sacreBLEU / rouge-score %.3g\n", max_rel);
    cJSON_Delete(fixture);
    return test_summary();
}
