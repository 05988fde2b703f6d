/*
 * test_attention_ext.c — attention beyond the causal decoder (nn/attention.h), against its own
 * forward: finite-difference gradients of q, k, v and the additive bias for bidirectional attention
 * with padding, cross-attention, a bias shared by the batch (T5), per batch row, per key, ALiBi in
 * its three position forms and causal queries after `past` keys (prefix keys get gradients); T5's
 * bias table through the bucket gather; the blocked forward against the one-query reference across
 * block boundaries; a zero bias leaves the scores bit-for-bit alone; arguments no mode allows are
 * refused. PyTorch parity is test_attention_parity.c.
 *
 * Central differences in f32 are noisy; as in test_backward.c each gradient entry is compared with a
 * relative tolerance floored at 1e-2, and the worst relative error is printed.
 */
#include "test.h"
#include "nn/attention.h"
#include "nn/position_bias.h"

#include <stdlib.h>

static unsigned seed_state = 4242;
static float frand(void) { seed_state = seed_state * 1664525u + 1013904223u; return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f; }

static double rel_err(double analytic, double numeric) {
    return fabs(analytic - numeric) / fmax(1e-2, fmax(fabs(analytic), fabs(numeric)));
}

/* 1 when query i of batch row b sees no key at all (its output is a constant average). */
static int query_is_empty(const cp_attention_args *a, int64_t b, int64_t i) {
    const int64_t TK = a->Tk ? a->Tk : a->past + a->T, R = a->kv_rows ? a->kv_rows : TK, col = a->past + i;
    for (int64_t j = 0; j < TK; j++) {
        int visible = a->bidirectional || (j <= col && (a->window <= 0 || col - j < a->window));
        if (visible && (!a->key_mask || a->key_mask[b * R + j])) return 0;
    }
    return 1;
}

static double loss_of(const cp_attention_args *a, const float *w_out) {
    cp_arena ar;
    cp_arena_init(&ar);
    cp_attention_forward(a, &ar);
    cp_arena_free(&ar);
    double s = 0;
    for (int64_t n = 0; n < a->B * a->T * a->NH * a->hs; n++) s += (double)a->out[n] * w_out[n];
    return s;
}

/* One finite-difference case. All inputs live in one buffer x = [q | k | v | bias] whose gradient
 * buffer dx has the same layout, so every entry is perturbed and compared the same way. */
typedef struct {
    const char *name;
    int64_t B, T, Tk, NH, NKV, hs, past, window;
    int bidirectional;
    int pad;                 /* 0 none, 1 right, 2 left (keys), row b padded with b + 1 keys */
    int bias;                /* 0 none, 1 (NH,T,TK) shared by the batch, 2 (B,NH,T,TK), 3 per key (B,NH,1,TK) */
    int alibi;               /* 0 none, else 1 + cp_alibi_pos */
    float softcap;           /* > 0: Gemma 2's c·tanh(s/c) on the scores */
} fd_case;

static double fd_run(const fd_case *c) {
    const int64_t B = c->B, T = c->T, NH = c->NH, NKV = c->NKV ? c->NKV : NH, hs = c->hs, C = NH * hs, KC = NKV * hs;
    const int64_t TK = c->Tk ? c->Tk : c->past + T;
    const int64_t nq = B * T * C, nk = B * TK * KC;
    int64_t nb = 0, sb = 0, sh = 0, sq = 0;
    if (c->bias == 1) { nb = NH * T * TK; sb = 0; sh = T * TK; sq = TK; }
    if (c->bias == 2) { nb = B * NH * T * TK; sb = NH * T * TK; sh = T * TK; sq = TK; }
    if (c->bias == 3) { nb = B * NH * TK; sb = NH * TK; sh = TK; sq = 0; }
    const int64_t n = nq + 2 * nk + nb;
    float *x = malloc((size_t)n * sizeof *x), *dx = calloc((size_t)n, sizeof *dx);
    float *out = malloc((size_t)nq * sizeof *out), *w = malloc((size_t)nq * sizeof *w);
    float *probs = malloc((size_t)(B * NH * T * TK) * sizeof *probs);
    int64_t *mask = malloc((size_t)(B * TK) * sizeof *mask);
    float slopes[8];
    for (int64_t i = 0; i < n; i++) x[i] = frand();
    for (int64_t i = nq + 2 * nk; i < n; i++) x[i] *= 2.0f; /* a bias big enough to matter */
    for (int64_t i = 0; i < nq; i++) w[i] = frand();
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < TK; j++)
            mask[b * TK + j] = c->pad == 0 ? 1 : c->pad == 1 ? j < TK - (b + 1) : j >= b + 1;
    for (int64_t h = 0; h < NH; h++) slopes[h] = 0.5f / (float)(h + 1);
    cp_attention_args a = {.B = B, .T = T, .NH = NH, .NKV = c->NKV, .hs = hs, .q = x, .k = x + nq, .v = x + nq + nk,
                           .q_stride = C, .k_stride = KC, .v_stride = KC, .past = c->past, .scale = 0.7f,
                           .window = c->window, .key_mask = c->pad ? mask : NULL, .empty_row = CP_ATTN_EMPTY_ALL,
                           .out = out, .probs = probs, .bidirectional = c->bidirectional, .Tk = c->Tk,
                           .softcap = c->softcap};
    if (c->bias) {
        a.bias = x + nq + 2 * nk;
        a.d_bias = dx + nq + 2 * nk;
        a.bias_b_stride = sb; a.bias_h_stride = sh; a.bias_q_stride = sq;
    }
    if (c->alibi) { a.alibi_slopes = slopes; a.alibi_pos = (cp_alibi_pos)(c->alibi - 1); }
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < T; i++)
            if (query_is_empty(&a, b, i)) memset(w + (b * T + i) * C, 0, (size_t)C * sizeof *w);
    loss_of(&a, w);
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_attention_backward(&a, w, dx, dx + nq, dx + nq + nk, &ar));
    cp_arena_free(&ar);
    a.probs = NULL;
    a.d_bias = NULL;
    double worst = 0;
    const float h = 1e-2f;
    for (int64_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h; double lp = loss_of(&a, w);
        x[i] = keep - h; double lm = loss_of(&a, w);
        x[i] = keep;
        worst = fmax(worst, rel_err(dx[i], (lp - lm) / (2 * h)));
    }
    CHECK(worst < 2e-2, "%s: backward off by %.3e", c->name, worst);
    free(x); free(dx); free(out); free(w); free(probs); free(mask);
    return worst;
}

TEST(new_modes_match_finite_differences) {
    const fd_case cases[] = {
        {"bidirectional, right padding, GQA", 2, 5, 0, 2, 1, 3, 0, 0, 1, 1, 0, 0, 0},
        {"bidirectional, left padding", 2, 5, 0, 2, 0, 3, 0, 0, 1, 2, 0, 0, 0},
        {"cross-attention Tk=7, left padding", 2, 4, 7, 2, 2, 3, 0, 0, 1, 2, 0, 0, 0},
        {"bias (NH,T,TK) shared by the batch, bidirectional", 2, 5, 0, 2, 0, 3, 0, 0, 1, 1, 1, 0, 0},
        {"bias (NH,T,TK), causal, right padding", 2, 5, 0, 2, 0, 3, 0, 0, 0, 1, 1, 0, 0},
        {"bias (B,NH,T,TK), causal window 3, left padding", 2, 6, 0, 2, 0, 3, 0, 3, 0, 2, 2, 0, 0},
        {"per-key bias (B,NH,1,TK), cross Tk=6, GQA", 2, 4, 6, 2, 1, 3, 0, 0, 1, 1, 3, 0, 0},
        {"ALiBi, key column, causal", 2, 5, 0, 2, 0, 3, 0, 0, 0, 0, 0, 1 + CP_ALIBI_POS_COLUMN, 0},
        {"ALiBi, cumulative mask, left padding", 2, 5, 0, 2, 0, 3, 0, 0, 0, 2, 0, 1 + CP_ALIBI_POS_MASK, 0},
        {"ALiBi, from the last key, right padding", 2, 5, 0, 2, 0, 3, 0, 0, 0, 1, 0, 1 + CP_ALIBI_POS_LAST, 0},
        {"causal after past=3 keys (prefix), left padding", 2, 3, 0, 2, 0, 3, 3, 0, 0, 2, 0, 0, 0},
        {"causal after past=2 keys with a bias and ALiBi", 2, 3, 0, 2, 0, 3, 2, 0, 0, 1, 2, 1 + CP_ALIBI_POS_MASK, 0},
        {"soft-capped 0.6, causal window 3, left padding, GQA", 2, 6, 0, 2, 1, 3, 0, 3, 0, 2, 0, 0, 0.6f},
        {"soft-capped 1.5 over a bias, right padding", 2, 5, 0, 2, 0, 3, 0, 0, 0, 1, 2, 0, 1.5f},
    };
    double worst = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double w = fd_run(&cases[i]);
        printf("  %-52s worst relative error %.2e\n", cases[i].name, w);
        worst = fmax(worst, w);
    }
    printf("  %zu cases: worst relative error %.2e\n", sizeof cases / sizeof *cases, worst);
}

/* T5 end to end: table -> buckets -> (NH,T,TK) bias -> attention; the table's gradient from d_bias. */
static double t5_loss(const float *table, const int64_t *buckets, float *bias, cp_attention_args *a, const float *w,
                      int64_t nb_T, int64_t TK) {
    cp_t5_position_bias_forward(bias, table, buckets, a->NH, nb_T, TK);
    return loss_of(a, w);
}

TEST(t5_table_gradient_matches_finite_differences) {
    const int64_t B = 2, T = 6, NH = 2, hs = 3, C = NH * hs, nbk = 8, maxd = 12;
    for (int decoder = 0; decoder < 2; decoder++) {
        float q[72], k[72], v[72], out[72], w[72], probs[2 * 2 * 36], bias[2 * 36], d_bias[2 * 36] = {0};
        float table[16], d_table[16] = {0}, dq[72], dk[72], dv[72];
        int64_t buckets[36], mask[12];
        for (int i = 0; i < 72; i++) { q[i] = frand(); k[i] = frand(); v[i] = frand(); w[i] = frand(); }
        for (int i = 0; i < nbk * NH; i++) table[i] = 2 * frand();
        for (int i = 0; i < 12; i++) mask[i] = !(i / 6 == 1 && i % 6 >= 4); /* row 1: two pads on the right */
        CHECK_OK(cp_t5_position_buckets(buckets, T, T, 0, !decoder, nbk, maxd));
        cp_attention_args a = {.B = B, .T = T, .NH = NH, .hs = hs, .q = q, .k = k, .v = v, .q_stride = C, .k_stride = C,
                               .v_stride = C, .scale = 1.0f, .key_mask = mask, .empty_row = CP_ATTN_EMPTY_ALL, .out = out,
                               .probs = probs, .bidirectional = !decoder, .bias = bias, .bias_h_stride = T * T,
                               .bias_q_stride = T, .d_bias = d_bias};
        t5_loss(table, buckets, bias, &a, w, T, T);
        cp_arena ar;
        cp_arena_init(&ar);
        CHECK_OK(cp_attention_backward(&a, w, dq, dk, dv, &ar));
        cp_arena_free(&ar);
        cp_t5_position_bias_backward(d_table, d_bias, buckets, NH, T, T);
        a.probs = NULL;
        a.d_bias = NULL;
        double worst = 0, biggest = 0;
        const float h = 1e-2f;
        for (int i = 0; i < nbk * NH; i++) {
            float keep = table[i];
            table[i] = keep + h; double lp = t5_loss(table, buckets, bias, &a, w, T, T);
            table[i] = keep - h; double lm = t5_loss(table, buckets, bias, &a, w, T, T);
            table[i] = keep;
            worst = fmax(worst, rel_err(d_table[i], (lp - lm) / (2 * h)));
            biggest = fmax(biggest, fabs(d_table[i]));
        }
        printf("  T5 %s bias table: worst relative error %.2e (largest gradient %.2f)\n",
               decoder ? "decoder (causal buckets)" : "encoder (bidirectional buckets)", worst, biggest);
        CHECK(worst < 2e-2 && biggest > 0.1, "T5 table gradient off by %.3e (largest %.3e)", worst, biggest);
    }
}

/* The blocked forward against the one-query reference in every new mode, with T across blocks. */
TEST(blocked_matches_reference_in_new_modes) {
    double worst = 0, worst_p = 0;
    const int64_t B = 2, NH = 4, NKV = 2, hs = 8, C = NH * hs, KC = NKV * hs;
    const int64_t Ts[] = {1, 65, 150};
    for (int ti = 0; ti < 3; ti++)
        for (int mode = 0; mode < 7; mode++) {
            /* 0 bidirectional, 1 cross Tk=T/2+3, 2 bias (NH,T,TK) + causal, 3 per-key bias + cross,
             * 4 ALiBi (mask) causal, 5 causal after past=70 with ALiBi (last) and a bias, 6 soft-capped causal window 40 */
            const int64_t T = Ts[ti], past = mode == 5 ? 70 : 0, Tk = mode == 1 || mode == 3 ? T / 2 + 3 : 0;
            const int64_t TK = Tk ? Tk : past + T;
            float *q = malloc((size_t)(B * T * C) * sizeof *q), *k = malloc((size_t)(B * TK * KC) * sizeof *k);
            float *v = malloc((size_t)(B * TK * KC) * sizeof *v), *bias = malloc((size_t)(B * NH * T * TK) * sizeof *bias);
            float *o1 = malloc((size_t)(B * T * C) * sizeof *o1), *o2 = malloc((size_t)(B * T * C) * sizeof *o2);
            float *p1 = malloc((size_t)(B * NH * T * TK) * sizeof *p1), *p2 = malloc((size_t)(B * NH * T * TK) * sizeof *p2);
            int64_t *mask = malloc((size_t)(B * TK) * sizeof *mask);
            float slopes[4];
            cp_alibi_slopes(slopes, NH);
            for (int64_t i = 0; i < B * T * C; i++) q[i] = 2 * frand();
            for (int64_t i = 0; i < B * TK * KC; i++) { k[i] = 2 * frand(); v[i] = frand(); }
            for (int64_t i = 0; i < B * NH * T * TK; i++) bias[i] = 3 * frand();
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = 0; j < TK; j++) mask[b * TK + j] = b == 0 ? j >= 3 : j < TK - 5 || TK < 8;
            cp_attention_args a = {.B = B, .T = T, .NH = NH, .NKV = NKV, .hs = hs, .q = q, .k = k, .v = v, .q_stride = C,
                                   .k_stride = KC, .v_stride = KC, .past = past, .scale = 0.3f, .key_mask = mask,
                                   .empty_row = mode % 2 ? CP_ATTN_EMPTY_CAUSAL : CP_ATTN_EMPTY_ALL,
                                   .bidirectional = mode == 0 || mode == 1 || mode == 3, .Tk = Tk};
            if (mode == 2 || mode == 5) { a.bias = bias; a.bias_h_stride = T * TK; a.bias_q_stride = TK; }
            if (mode == 3) { a.bias = bias; a.bias_b_stride = NH * TK; a.bias_h_stride = TK; }
            if (mode == 4) { a.alibi_slopes = slopes; a.alibi_pos = CP_ALIBI_POS_MASK; }
            if (mode == 5) { a.alibi_slopes = slopes; a.alibi_pos = CP_ALIBI_POS_LAST; }
            if (mode == 6) { a.softcap = 0.8f; a.window = 40; }
            cp_arena ar;
            cp_arena_init(&ar);
            a.out = o1; a.probs = p1;
            CHECK_OK(cp_attention_forward_ref(&a, &ar));
            a.out = o2; a.probs = p2;
            CHECK_OK(cp_attention_forward(&a, &ar));
            cp_arena_free(&ar);
            double d = test_max_abs_diff(o1, o2, (size_t)(B * T * C)), dp = test_max_abs_diff(p1, p2, (size_t)(B * NH * T * TK));
            CHECK(d < 1e-5 && dp < 1e-6, "T=%lld mode %d: out %.3e probs %.3e", (long long)T, mode, d, dp);
            worst = fmax(worst, d);
            worst_p = fmax(worst_p, dp);
            free(q); free(k); free(v); free(bias); free(o1); free(o2); free(p1); free(p2); free(mask);
        }
    printf("  21 cases (bidirectional, cross, biases, ALiBi, past, soft-capping): blocked vs reference out %.2e, probs %.2e\n", worst,
           worst_p);
}

/* A zero bias changes no bit; ALiBi with key columns equals the same bias written out. */
TEST(bias_paths_agree_bit_for_bit) {
    const int64_t B = 2, T = 70, NH = 2, hs = 4, C = NH * hs;
    float *qkv = malloc((size_t)(3 * B * T * C) * sizeof *qkv), *zero = calloc((size_t)(NH * T * T), sizeof *zero);
    float *bias = malloc((size_t)(NH * T * T) * sizeof *bias);
    float *o1 = malloc((size_t)(B * T * C) * sizeof *o1), *o2 = malloc((size_t)(B * T * C) * sizeof *o2);
    float slopes[2] = {0.25f, 0.0625f};
    for (int64_t i = 0; i < 3 * B * T * C; i++) qkv[i] = 2 * frand();
    for (int64_t h = 0; h < NH; h++)
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) bias[(h * T + i) * T + j] = slopes[h] * (float)j;
    cp_attention_args a = {.B = B, .T = T, .NH = NH, .hs = hs, .q = qkv, .k = qkv + B * T * C, .v = qkv + 2 * B * T * C,
                           .q_stride = C, .k_stride = C, .v_stride = C, .scale = 0.5f, .empty_row = CP_ATTN_EMPTY_ALL};
    float *o3 = malloc((size_t)(B * T * C) * sizeof *o3);
    cp_arena ar;
    cp_arena_init(&ar);
    a.out = o1;
    CHECK_OK(cp_attention_forward(&a, &ar));
    a.out = o2; a.bias = zero; a.bias_h_stride = T * T; a.bias_q_stride = T;
    CHECK_OK(cp_attention_forward(&a, &ar));
    CHECK(memcmp(o1, o2, (size_t)(B * T * C) * sizeof *o1) == 0, "a zero bias changed the output");
    a.bias = bias;
    CHECK_OK(cp_attention_forward(&a, &ar));
    CHECK(test_max_abs_diff(o1, o2, (size_t)(B * T * C)) > 1e-3, "the bias changed nothing");
    a.out = o3; a.bias = NULL; a.alibi_slopes = slopes; a.alibi_pos = CP_ALIBI_POS_COLUMN;
    CHECK_OK(cp_attention_forward(&a, &ar));
    CHECK(memcmp(o3, o2, (size_t)(B * T * C) * sizeof *o3) == 0, "ALiBi differs from its bias written out");
    cp_arena_free(&ar);
    free(o3);
    free(qkv); free(zero); free(bias); free(o1); free(o2);
}

TEST(arguments_no_mode_allows_are_refused) {
    float x[64] = {0}, out[16];
    cp_attention_args a = {.B = 1, .T = 2, .NH = 2, .hs = 2, .q = x, .k = x, .v = x, .q_stride = 4, .k_stride = 4,
                           .v_stride = 4, .scale = 1, .out = out};
    cp_arena ar;
    cp_arena_init(&ar);
    cp_attention_args w = a;
    w.bidirectional = 1; w.window = 3;
    CHECK_ERR(cp_attention_forward(&w, &ar), "needs the causal mask");
    CHECK_ERR(cp_attention_forward_ref(&w, &ar), "needs the causal mask");
    cp_attention_args t = a;
    t.Tk = 5;
    CHECK_ERR(cp_attention_forward(&t, &ar), "expected past + T = 2");
    cp_attention_args r = a;
    r.bidirectional = 1; r.Tk = 6; r.kv_rows = 4;
    CHECK_ERR(cp_attention_forward(&r, &ar), "cannot hold 6 keys");
    cp_attention_args g = a;
    g.NH = 3; g.NKV = 2;
    CHECK_ERR(cp_attention_forward(&g, &ar), "do not divide");
    cp_attention_args d = a;
    float probs[8], db[4];
    d.probs = probs; d.d_bias = db; d.bias_q_stride = 2;
    CHECK_ERR(cp_attention_backward(&d, out, x, x, x, &ar), "shared by all 2 heads");
    cp_attention_args p = a;
    CHECK_ERR(cp_attention_backward(&p, out, x, x, x, &ar), "needs the probabilities");
    cp_arena_free(&ar);
    int64_t buckets[4];
    CHECK_ERR(cp_t5_position_buckets(buckets, 2, 2, 0, 1, 3, 128), "relative_attention_num_buckets = 3");
    CHECK_ERR(cp_t5_position_buckets(buckets, 2, 2, 0, 0, 32, 16), "relative_attention_max_distance = 16");
    CHECK_OK(cp_t5_position_buckets(buckets, 2, 2, 0, 0, 32, 17));
}

int main(void) {
    RUN(new_modes_match_finite_differences);
    RUN(t5_table_gradient_matches_finite_differences);
    RUN(blocked_matches_reference_in_new_modes);
    RUN(bias_paths_agree_bit_for_bit);
    RUN(arguments_no_mode_allows_are_refused);
    return test_summary();
}
