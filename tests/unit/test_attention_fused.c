/*
 * test_attention_fused.c — the fused (online-softmax, tiled) attention of nn/attention_fused.c
 * against the paths it replaces in training: its forward against cp_attention_forward_ref (out),
 * its backward (from the row statistics) against the backward from the saved probabilities (dq, dk,
 * dv, d_bias), in every mode the architectures use — causal with right / left padding under both
 * empty-row rules, sliding window, GQA, cross-attention (TK > T), bidirectional, the three bias
 * layouts with their gradient, ALiBi's three positions, softcap, prefix keys (past > 0, kv_rows > TK)
 * and dropout on the probabilities — at lengths that are not multiples of the tiles, T = 1 and
 * several key tiles; and central differences of the fused forward against its own backward.
 * Each case prints its max differences (the gradients relative to the largest entry).
 */
#include "test.h"
#include "nn/attention.h"

#include <stdlib.h>
#include <string.h>

static unsigned seed_state = 777;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

typedef struct {
    const char *name;
    int64_t B, T, Tk, NH, NKV, hs, past, extra_rows, window;
    int bidirectional, pad;  /* pad: 0 none, 1 right, 2 left (row b: 3b + 1 padding keys) */
    int bias;                /* 0 none, 1 (NH,T,TK) shared by the batch, 2 (B,NH,T,TK), 3 per key (B,NH,1,TK) */
    int alibi;               /* 0 none, else 1 + cp_alibi_pos */
    float softcap;
    double dropout;
    cp_attn_empty_row empty;
} fcase;

typedef struct {
    float *x, *out, *stats, *probs, *dout, *g;  /* x = [q | k | v | bias]; g the same layout */
    int64_t *mask;
    float slopes[16];
    int64_t nq, nk, nb;
    cp_attention_args a;
} setup;

static void make(const fcase *c, setup *s) {
    const int64_t B = c->B, T = c->T, NH = c->NH, NKV = c->NKV ? c->NKV : NH, hs = c->hs, C = NH * hs, KC = NKV * hs;
    const int64_t TK = c->Tk ? c->Tk : c->past + T, R = TK + c->extra_rows;
    int64_t sb = 0, sh = 0, sq = 0;
    s->nq = B * T * C;
    s->nk = B * R * KC;
    s->nb = c->bias == 1 ? NH * T * TK : c->bias == 2 ? B * NH * T * TK : c->bias == 3 ? B * NH * TK : 0;
    if (c->bias == 1) { sh = T * TK; sq = TK; }
    if (c->bias == 2) { sb = NH * T * TK; sh = T * TK; sq = TK; }
    if (c->bias == 3) { sb = NH * TK; sh = TK; sq = 0; }
    const int64_t n = s->nq + 2 * s->nk + s->nb;
    s->x = malloc((size_t)n * sizeof *s->x);
    s->g = calloc((size_t)n, sizeof *s->g);
    for (int64_t i = 0; i < n; i++) s->x[i] = frand() * (i >= s->nq + 2 * s->nk ? 2.0f : 1.5f);
    s->out = malloc((size_t)s->nq * sizeof *s->out);
    s->dout = malloc((size_t)s->nq * sizeof *s->dout);
    for (int64_t i = 0; i < s->nq; i++) s->dout[i] = frand();
    s->stats = malloc((size_t)(B * NH * T * 2) * sizeof *s->stats);
    s->probs = malloc((size_t)(B * NH * T * TK) * sizeof *s->probs);
    s->mask = malloc((size_t)(B * R) * sizeof *s->mask);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < R; j++)
            s->mask[b * R + j] = c->pad == 0 ? 1 : c->pad == 1 ? j < TK - (3 * b + 1) : j >= 3 * b + 1;
    for (int64_t h = 0; h < NH; h++) s->slopes[h] = 0.5f / (float)(h + 1);
    s->a = (cp_attention_args){.B = B, .T = T, .NH = NH, .NKV = c->NKV, .hs = hs, .q = s->x, .k = s->x + s->nq,
                               .v = s->x + s->nq + s->nk, .q_stride = C, .k_stride = KC, .v_stride = KC, .past = c->past,
                               .kv_rows = c->extra_rows ? R : 0, .scale = 0.4f, .window = c->window,
                               .key_mask = c->pad ? s->mask : NULL, .empty_row = c->empty, .bidirectional = c->bidirectional,
                               .Tk = c->Tk, .softcap = c->softcap};
    if (c->bias) {
        s->a.bias = s->x + s->nq + 2 * s->nk;
        s->a.bias_b_stride = sb; s->a.bias_h_stride = sh; s->a.bias_q_stride = sq;
    }
    if (c->alibi) { s->a.alibi_slopes = s->slopes; s->a.alibi_pos = (cp_alibi_pos)(c->alibi - 1); }
    if (c->dropout > 0) s->a.dropout = cp_dropout_site(c->dropout, 99, "attn", 0);
}

static void release(setup *s) {
    free(s->x); free(s->g); free(s->out); free(s->dout); free(s->stats); free(s->probs); free(s->mask);
}

/* max |x − y| over the largest |x|, floored at 1e-3 (a gradient that is zero analytically, as with
 * one key, leaves rounding noise in both) */
static double rel_max(const float *x, const float *y, int64_t n) {
    double m = 1e-3;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return test_max_abs_diff(x, y, (size_t)n) / m;
}

static double worst_fwd, worst_bwd;

static void parity(const fcase *c) {
    setup s;
    make(c, &s);
    cp_arena ar;
    cp_arena_init(&ar);
    const int64_t n = s.nq + 2 * s.nk + s.nb;
    float *out_ref = malloc((size_t)s.nq * sizeof *out_ref), *g_ref = calloc((size_t)n, sizeof *g_ref);
    // the reference forward (probabilities saved) and the backward from them
    cp_attention_args a = s.a;
    a.out = out_ref; a.probs = s.probs;
    CHECK_OK(cp_attention_forward_ref(&a, &ar));
    if (a.bias) a.d_bias = g_ref + s.nq + 2 * s.nk;
    CHECK_OK(cp_attention_backward(&a, s.dout, g_ref, g_ref + s.nq, g_ref + s.nq + s.nk, &ar));
    // the fused forward (statistics saved) and its backward
    a = s.a;
    a.out = s.out; a.stats = s.stats;
    CHECK_OK(cp_attention_forward(&a, &ar));
    if (a.bias) a.d_bias = s.g + s.nq + 2 * s.nk;
    CHECK_OK(cp_attention_backward(&a, s.dout, s.g, s.g + s.nq, s.g + s.nq + s.nk, &ar));
    cp_arena_free(&ar);
    const double df = test_max_abs_diff(out_ref, s.out, (size_t)s.nq);
    double dq = rel_max(g_ref, s.g, s.nq), dk = rel_max(g_ref + s.nq, s.g + s.nq, s.nk);
    double dv = rel_max(g_ref + s.nq + s.nk, s.g + s.nq + s.nk, s.nk);
    double db = s.nb ? rel_max(g_ref + s.nq + 2 * s.nk, s.g + s.nq + 2 * s.nk, s.nb) : 0;
    printf("  %-28s B=%lld T=%lld TK=%lld: out %.2e; dq %.2e dk %.2e dv %.2e d_bias %.2e (relative to the largest)\n",
           c->name, (long long)c->B, (long long)c->T, (long long)(c->Tk ? c->Tk : c->past + c->T), df, dq, dk, dv, db);
    const double db_all = fmax(fmax(dq, dk), fmax(dv, db));
    CHECK(df <= 1e-5, "%s: fused forward off by %.3e", c->name, df);
    CHECK(db_all <= 2e-5, "%s: fused backward off by %.3e", c->name, db_all);
    worst_fwd = fmax(worst_fwd, df);
    worst_bwd = fmax(worst_bwd, db_all);
    free(out_ref); free(g_ref);
    release(&s);
}

TEST(fused_matches_probabilities_path) {
    const cp_attn_empty_row ALL = CP_ATTN_EMPTY_ALL, CAUSAL = CP_ATTN_EMPTY_CAUSAL;
    const fcase cases[] = {
        {"causal", 2, 150, 0, 3, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, ALL},
        {"one query after 9 keys", 2, 1, 0, 2, 0, 8, 9, 0, 0, 0, 1, 0, 0, 0, 0, ALL},
        {"one query, cross", 2, 1, 140, 2, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, ALL},
        {"causal, right padding", 2, 137, 0, 2, 0, 16, 0, 0, 0, 0, 1, 0, 0, 0, 0, ALL},
        {"causal, left pad, empty all", 3, 141, 0, 2, 0, 16, 0, 0, 0, 0, 2, 0, 0, 0, 0, ALL},
        {"causal, left pad, empty causal", 3, 141, 0, 2, 0, 16, 0, 0, 0, 0, 2, 0, 0, 0, 0, CAUSAL},
        {"sliding window 37", 2, 300, 0, 2, 0, 16, 0, 0, 37, 0, 2, 0, 0, 0, 0, CAUSAL},
        {"GQA 6 / 2", 2, 133, 0, 6, 2, 8, 0, 0, 0, 0, 1, 0, 0, 0, 0, ALL},
        {"cross-attention TK > T", 2, 70, 290, 2, 0, 16, 0, 0, 0, 1, 1, 0, 0, 0, 0, ALL},
        {"bidirectional, padding", 3, 131, 0, 2, 0, 16, 0, 0, 0, 1, 1, 0, 0, 0, 0, ALL},
        {"T5 bias (NH,T,TK)", 3, 133, 0, 2, 0, 16, 0, 0, 0, 1, 1, 1, 0, 0, 0, ALL},
        {"T5 decoder bias, causal", 2, 140, 0, 2, 0, 16, 0, 0, 0, 0, 2, 1, 0, 0, 0, ALL},
        {"bias (B,NH,T,TK)", 2, 131, 0, 2, 0, 16, 0, 0, 0, 0, 2, 2, 0, 0, 0, CAUSAL},
        {"bias per key (B,NH,1,TK)", 2, 150, 0, 2, 0, 16, 0, 0, 0, 1, 1, 3, 0, 0, 0, ALL},
        {"ALiBi column", 2, 135, 0, 3, 0, 8, 0, 0, 0, 0, 0, 0, 1, 0, 0, ALL},
        {"ALiBi mask (BLOOM)", 2, 135, 0, 3, 0, 8, 0, 0, 0, 0, 2, 0, 2, 0, 0, ALL},
        {"ALiBi last (MPT)", 2, 135, 0, 3, 0, 8, 0, 0, 0, 0, 1, 0, 3, 0, 0, ALL},
        {"softcap 2, left pad", 2, 140, 0, 2, 0, 16, 0, 0, 0, 0, 2, 0, 0, 2.0f, 0, ALL},
        {"softcap + window + GQA", 2, 200, 0, 4, 2, 8, 0, 0, 50, 0, 2, 0, 0, 3.0f, 0, CAUSAL},
        {"prefix keys past 20", 2, 130, 0, 2, 0, 16, 20, 7, 0, 0, 2, 0, 0, 0, 0, ALL},
        {"dropout 0.3", 2, 150, 0, 2, 0, 16, 0, 0, 0, 0, 2, 0, 0, 0, 0.3, ALL},
        {"dropout, empty causal, window", 3, 141, 0, 2, 0, 16, 0, 0, 20, 0, 2, 0, 0, 0, 0.2, CAUSAL},
        {"dropout + T5 bias, cross", 2, 66, 200, 2, 0, 16, 0, 0, 0, 1, 1, 1, 0, 0, 0.25, ALL},
        {"all at once", 2, 259, 0, 4, 2, 16, 5, 3, 100, 0, 2, 2, 2, 5.0f, 0.1, ALL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) parity(&cases[i]);
    printf("  %zu cases: forward max |diff| %.2e, backward %.2e relative (fail above 1e-5 / 2e-5; the reference uses libm expf, the fused path cp_expf)\n",
           sizeof cases / sizeof *cases, worst_fwd, worst_bwd);
}

/* loss = Σ out ⊙ dout through the fused forward, in double */
static double loss_of(cp_attention_args a, const float *dout, float *out, int64_t n) {
    cp_arena ar;
    cp_arena_init(&ar);
    a.out = out; a.stats = NULL; a.probs = NULL;
    cp_attention_forward(&a, &ar);
    cp_arena_free(&ar);
    double l = 0;
    for (int64_t i = 0; i < n; i++) l += (double)out[i] * dout[i];
    return l;
}

TEST(fused_backward_matches_finite_differences) {
    const fcase cases[] = {
        {"bias, softcap, left pad", 2, 5, 0, 2, 0, 4, 0, 0, 0, 0, 2, 2, 0, 1.5f, 0, CP_ATTN_EMPTY_ALL},
        {"GQA, window, ALiBi", 1, 6, 0, 4, 2, 4, 2, 1, 3, 0, 0, 0, 2, 0, 0, CP_ATTN_EMPTY_CAUSAL},
        {"cross, T5 bias, dropout", 2, 3, 7, 2, 0, 4, 0, 0, 0, 1, 1, 1, 0, 0, 0.3, CP_ATTN_EMPTY_ALL},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        setup s;
        make(&cases[ci], &s);
        /* a query that sees no key outputs a constant, but its backward spreads the gradient over its
         * keys as PyTorch's scores + finfo.min does (attention.h): no finite difference sees that */
        const int64_t TK = s.a.Tk ? s.a.Tk : s.a.past + s.a.T, R = s.a.kv_rows ? s.a.kv_rows : TK, C = s.a.NH * s.a.hs;
        for (int64_t b = 0; b < s.a.B; b++)
            for (int64_t i = 0; i < s.a.T; i++) {
                int seen = 0;
                for (int64_t j = 0; j < TK; j++) {
                    const int64_t col = s.a.past + i;
                    const int visible = s.a.bidirectional || (j <= col && (s.a.window <= 0 || col - j < s.a.window));
                    seen |= visible && (!s.a.key_mask || s.a.key_mask[b * R + j]);
                }
                if (!seen) memset(s.dout + (b * s.a.T + i) * C, 0, (size_t)C * sizeof *s.dout);
            }
        cp_arena ar;
        cp_arena_init(&ar);
        cp_attention_args a = s.a;
        a.out = s.out; a.stats = s.stats;
        if (a.bias) a.d_bias = s.g + s.nq + 2 * s.nk;
        CHECK_OK(cp_attention_forward(&a, &ar));
        CHECK_OK(cp_attention_backward(&a, s.dout, s.g, s.g + s.nq, s.g + s.nq + s.nk, &ar));
        cp_arena_free(&ar);
        float *tmp = malloc((size_t)s.nq * sizeof *tmp);
        double worst = 0;
        const int64_t n = s.nq + 2 * s.nk + s.nb;
        for (int64_t i = 0; i < n; i++) {
            const float keep = s.x[i], h = 1e-2f;
            s.x[i] = keep + h; const double lp = loss_of(s.a, s.dout, tmp, s.nq);
            s.x[i] = keep - h; const double lm = loss_of(s.a, s.dout, tmp, s.nq);
            s.x[i] = keep;
            const double num = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(num - s.g[i]) / fmax(1e-2, fmax(fabs(num), fabs((double)s.g[i]))));
        }
        printf("  %-26s %lld inputs: worst relative error %.2e\n", cases[ci].name, (long long)n, worst);
        CHECK(worst < 2e-2, "%s: fused gradient off by %.3e", cases[ci].name, worst);
        free(tmp);
        release(&s);
    }
}

int main(void) {
    RUN(fused_matches_probabilities_path);
    RUN(fused_backward_matches_finite_differences);
    return test_summary();
}
