/*
 * test_disentangled_attention.c — DeBERTa's disentangled attention (nn/disentangled_attention.h) and
 * its relative positions (nn/relative_position.h):
 *   log buckets against transformers' make_log_bucket_position (exact, float32 log arithmetic
 *   included; tests/fixtures/deberta/buckets.safetensors);
 *   per case and layer of tiny DebertaV2 / Deberta models (tests/fixtures/deberta/<case>, made by
 *   tests/reference/make_deberta_fixtures.py): the relative positions and the span, then the
 *   module's projections done here with its saved weights, the primitive's forward (context and
 *   probabilities) against the module's output, its backward against torch autograd — the projected
 *   q/k/v/pos_key/pos_query gradients (v2), and the gradients of the hidden states and of
 *   rel_embeddings through the projections (both versions);
 *   finite differences of every input for both versions, c2p and/or p2c, clamped spans, log
 *   buckets and a padded row; arguments the primitive cannot run are refused by name.
 * Outputs must agree to 1e-5 (max |diff|), gradients to 1e-4 relative (max |diff| / max |ref|);
 * each case prints what it saw.
 */
#include "test.h"
#include "io/safetensors.h"
#include "nn/disentangled_attention.h"
#include "nn/linear.h"
#include "nn/relative_position.h"

#include <stdlib.h>

#define DIR "tests/fixtures/deberta/"
#define OUT_TOL 1e-5
#define GRAD_TOL 1e-4

/* ---- helpers ----------------------------------------------------------------------------------- */

static const float *f32(const cp_safetensors *st, const char *name, int64_t numel) {
    const cp_st_tensor *t = cp_st_find(st, name);
    if (!t || t->dtype != CP_F32 || t->numel != numel) {
        fprintf(stderr, "  %s: tensor %s missing or not F32 with %lld elements\n", st->path ? st->path : "fixture", name,
                (long long)numel);
        return NULL;
    }
    return t->data;
}

static int64_t meta_int(const cp_safetensors *st, const char *key) {
    const char *v = cp_st_meta(st, key);
    return v ? atoll(v) : -1;
}

/* max |a − b| / max |b|: the relative difference of a tensor */
static double rel_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)b[i]));
    return test_max_abs_diff(a, b, n) / (m > 0 ? m : 1.0);
}

/* y (N,OC) = x (N,C)·Wᵀ + bias (bias may be NULL) */
static void linear(float *y, const float *x, const float *W, const float *bias, int64_t N, int64_t C, int64_t OC) {
    cp_matmul_nt(y, x, W, N, C, OC, 0);
    if (bias)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < OC; o++) y[n * OC + o] += bias[o];
}

/* dx (N,C) += dy (N,OC)·W (OC,C): the input gradient of linear */
static void linear_back(float *dx, const float *dy, const float *W, int64_t N, int64_t C, int64_t OC) {
    cp_matmul_nn(dx, dy, W, N, OC, C, 1);
}

/* ---- relative positions ------------------------------------------------------------------------ */

TEST(log_buckets_match_transformers) {
    cp_safetensors st;
    CHECK_OK(cp_st_open(&st, DIR "buckets.safetensors"));
    const cp_st_tensor *rel_t = cp_st_find(&st, "relative_position"), *cfg_t = cp_st_find(&st, "configs"),
                       *want_t = cp_st_find(&st, "buckets");
    if (!rel_t || !cfg_t || !want_t || rel_t->dtype != CP_I64 || cfg_t->dtype != CP_I64 || want_t->dtype != CP_I64) {
        CHECK(0, "buckets fixture incomplete");
        cp_st_close(&st);
        return;
    }
    const int64_t N = rel_t->numel, n_cfg = cfg_t->shape[0];
    const int64_t *rel = rel_t->data, *cfg = cfg_t->data, *want = want_t->data;
    int64_t wrong = 0;
    for (int64_t c = 0; c < n_cfg; c++) {
        CHECK_OK(cp_deberta_bucket_check(cfg[2 * c], cfg[2 * c + 1]));
        for (int64_t i = 0; i < N; i++) {
            const int64_t got = cp_deberta_log_bucket(rel[i], cfg[2 * c], cfg[2 * c + 1]);
            if (got != want[c * N + i] && wrong++ < 5)
                fprintf(stderr, "  position_buckets %lld max_relative_positions %lld rel %lld: %lld, want %lld\n",
                        (long long)cfg[2 * c], (long long)cfg[2 * c + 1], (long long)rel[i], (long long)got,
                        (long long)want[c * N + i]);
        }
    }
    printf("  %lld configs x %lld relative positions: %lld buckets differ from transformers\n", (long long)n_cfg,
           (long long)N, (long long)wrong);
    CHECK(wrong == 0, "%lld buckets differ", (long long)wrong);
    CHECK_ERR(cp_deberta_bucket_check(1, 512), "position_buckets = 1");
    CHECK_ERR(cp_deberta_bucket_check(8, 5), "log(1)");
    CHECK_OK(cp_deberta_bucket_check(0, 5));
    cp_st_close(&st);
}

/* ---- parity with transformers, per case and layer ----------------------------------------------- */

typedef struct {
    double out, probs, proj, dproj, dhidden, drel; /* worst differences seen */
} parity_worst;

/* One layer of one case: projections here, the primitive, projections back. */
static void parity_layer(const cp_safetensors *st, int64_t L, int64_t B, int64_t T, parity_worst *w) {
    const int version = (int)meta_int(st, "version");
    const int64_t NH = meta_int(st, "NH"), hs = meta_int(st, "hs"), C = NH * hs, span = meta_int(st, "span");
    const int64_t first_row = meta_int(st, "first_row"), W = 2 * span, BT = B * T;
    const int c2p = (int)meta_int(st, "c2p"), p2c = (int)meta_int(st, "p2c"), share = (int)meta_int(st, "share_att_key");
    char n[128];
#define T_(name, numel) (snprintf(n, sizeof n, "%lld.%s", (long long)L, name), f32(st, n, numel))
    const cp_st_tensor *rel_t = (snprintf(n, sizeof n, "%lld.rel_embeddings", (long long)L), cp_st_find(st, n));
    if (!rel_t) { CHECK(0, "%s missing", n); return; }
    const int64_t R = rel_t->shape[0];
    const float *hidden = T_("hidden", BT * C), *rel = T_("rel_embeddings", R * C), *want_out = T_("out", BT * C);
    const float *want_probs = T_("probs", B * NH * T * T), *dout = T_("dout", BT * C);
    const float *want_dh = T_("d_hidden", BT * C), *want_drel = T_("d_rel_embeddings", R * C);
    const int64_t *key_mask = cp_st_find(st, "key_mask")->data, *rel_pos = cp_st_find(st, "rel_pos")->data;
    CHECK(first_row + W <= R, "layer %lld: rows %lld..%lld outside rel_embeddings (%lld)", (long long)L,
          (long long)first_row, (long long)(first_row + W), (long long)R);
    if (!hidden || !rel || !want_out || !want_probs || !dout || !want_dh || !want_drel || first_row + W > R) return;
    const float *rows = rel + first_row * C; /* (W,C): the rows the layer reads */

    float *q = calloc((size_t)BT * C, 4), *k = calloc((size_t)BT * C, 4), *v = calloc((size_t)BT * C, 4);
    float *pk = calloc((size_t)W * C, 4), *pq = calloc((size_t)W * C, 4);
    float *out = calloc((size_t)BT * C, 4), *probs = calloc((size_t)(B * NH * T * T), 4);
    float *dq = calloc((size_t)BT * C, 4), *dk = calloc((size_t)BT * C, 4), *dv = calloc((size_t)BT * C, 4);
    float *dpk = calloc((size_t)W * C, 4), *dpq = calloc((size_t)W * C, 4);
    float *dh = calloc((size_t)BT * C, 4), *drel = calloc((size_t)R * C, 4);
    float *qkv = calloc((size_t)BT * 3 * C, 4), *dqkv = calloc((size_t)BT * 3 * C, 4);
    const float *Wq = NULL, *Wk = NULL, *Wv = NULL, *Wpk = NULL, *Wpq = NULL, *Win = NULL;
    if (version == 2) {
        Wq = T_("w.query_proj.weight", C * C); Wk = T_("w.key_proj.weight", C * C); Wv = T_("w.value_proj.weight", C * C);
        const float *bq = T_("w.query_proj.bias", C), *bk = T_("w.key_proj.bias", C), *bv = T_("w.value_proj.bias", C);
        const float *bpk = bk, *bpq = bq;
        Wpk = Wk; Wpq = Wq;
        if (!share && c2p) { Wpk = T_("w.pos_key_proj.weight", C * C); bpk = T_("w.pos_key_proj.bias", C); }
        if (!share && p2c) { Wpq = T_("w.pos_query_proj.weight", C * C); bpq = T_("w.pos_query_proj.bias", C); }
        if (!Wq || !Wk || !Wv || !bq || !bk || !bv || !Wpk || !Wpq || !bpk || !bpq) goto done;
        linear(q, hidden, Wq, bq, BT, C, C);
        linear(k, hidden, Wk, bk, BT, C, C);
        linear(v, hidden, Wv, bv, BT, C, C);
        if (c2p) linear(pk, rows, Wpk, bpk, W, C, C);
        if (p2c) linear(pq, rows, Wpq, bpq, W, C, C);
        /* the projections equal the module's own */
        const char *names[] = {"q", "k", "v", "pos_key", "pos_query"};
        const float *mine[] = {q, k, v, pk, pq};
        const int64_t sizes[] = {BT * C, BT * C, BT * C, W * C, W * C};
        for (int i = 0; i < 5; i++) {
            if ((i == 3 && !c2p) || (i == 4 && !p2c)) continue;
            const float *want = T_(names[i], sizes[i]);
            if (want) w->proj = fmax(w->proj, test_max_abs_diff(mine[i], want, (size_t)sizes[i]));
        }
    } else {
        /* in_proj (3C,C) fused: head h's q, k, v are columns h·3hs + {0, hs, 2hs} of in_proj(x); then
         * q + q_bias, v + v_bias (per head h: columns h·hs of the biases) */
        Win = T_("w.in_proj.weight", 3 * C * C);
        const float *qb = T_("w.q_bias", C), *vb = T_("w.v_bias", C);
        if (c2p) Wpk = T_("w.pos_proj.weight", C * C);
        const float *bpq = NULL;
        if (p2c) { Wpq = T_("w.pos_q_proj.weight", C * C); bpq = T_("w.pos_q_proj.bias", C); }
        if (!Win || !qb || !vb || (c2p && !Wpk) || (p2c && (!Wpq || !bpq))) goto done;
        linear(qkv, hidden, Win, NULL, BT, C, 3 * C);
        for (int64_t t = 0; t < BT; t++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t d = 0; d < hs; d++) {
                    const float *src = qkv + t * 3 * C + h * 3 * hs + d;
                    q[t * C + h * hs + d] = src[0] + qb[h * hs + d];
                    k[t * C + h * hs + d] = src[hs];
                    v[t * C + h * hs + d] = src[2 * hs] + vb[h * hs + d];
                }
        if (c2p) linear(pk, rows, Wpk, NULL, W, C, C);
        if (p2c) linear(pq, rows, Wpq, bpq, W, C, C);
    }

    cp_disentangled_args a = {.version = (cp_deberta_version)version, .B = B, .T = T, .NH = NH, .hs = hs,
                              .q = q, .k = k, .v = v, .q_stride = C, .k_stride = C, .v_stride = C,
                              .pos_key = c2p ? pk : NULL, .pos_query = p2c ? pq : NULL, .pos_key_stride = C,
                              .pos_query_stride = C, .span = span, .rel_pos = rel_pos,
                              .scale_factor = meta_int(st, "scale_factor"), .key_mask = key_mask, .out = out,
                              .probs = probs};
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_disentangled_attention_forward(&a, &ar));
    w->out = fmax(w->out, test_max_abs_diff(out, want_out, (size_t)(BT * C)));
    w->probs = fmax(w->probs, test_max_abs_diff(probs, want_probs, (size_t)(B * NH * T * T)));
    CHECK_OK(cp_disentangled_attention_backward(&a, dout, dq, dk, dv, c2p ? dpk : NULL, p2c ? dpq : NULL, &ar));
    cp_arena_free(&ar);

    if (version == 2) {
        const char *names[] = {"dq", "dk", "dv", "d_pos_key", "d_pos_query"};
        const float *mine[] = {dq, dk, dv, dpk, dpq};
        const int64_t sizes[] = {BT * C, BT * C, BT * C, W * C, W * C};
        for (int i = 0; i < 5; i++) {
            if ((i == 3 && !c2p) || (i == 4 && !p2c)) continue;
            const float *want = T_(names[i], sizes[i]);
            if (want) w->dproj = fmax(w->dproj, rel_diff(mine[i], want, (size_t)sizes[i]));
        }
        linear_back(dh, dq, Wq, BT, C, C);
        linear_back(dh, dk, Wk, BT, C, C);
        linear_back(dh, dv, Wv, BT, C, C);
    } else {
        for (int64_t t = 0; t < BT; t++)
            for (int64_t h = 0; h < NH; h++)
                for (int64_t d = 0; d < hs; d++) {
                    float *dst = dqkv + t * 3 * C + h * 3 * hs + d;
                    dst[0] = dq[t * C + h * hs + d];
                    dst[hs] = dk[t * C + h * hs + d];
                    dst[2 * hs] = dv[t * C + h * hs + d];
                }
        linear_back(dh, dqkv, Win, BT, C, 3 * C);
    }
    if (c2p) linear_back(drel + first_row * C, dpk, Wpk, W, C, C);
    if (p2c) linear_back(drel + first_row * C, dpq, Wpq, W, C, C);
    w->dhidden = fmax(w->dhidden, rel_diff(dh, want_dh, (size_t)(BT * C)));
    w->drel = fmax(w->drel, rel_diff(drel, want_drel, (size_t)(R * C)));
done:
#undef T_
    free(q); free(k); free(v); free(pk); free(pq); free(out); free(probs); free(dq); free(dk); free(dv);
    free(dpk); free(dpq); free(dh); free(drel); free(qkv); free(dqkv);
}

static void parity_case(const char *name) {
    char path[256];
    snprintf(path, sizeof path, DIR "%s.safetensors", name);
    cp_safetensors st;
    if (cp_st_open(&st, path) != CP_OK) { CHECK(0, "%s: %s", path, cp_last_error()); return; }
    const cp_st_tensor *km = cp_st_find(&st, "key_mask"), *rp = cp_st_find(&st, "rel_pos");
    if (!km || !rp || km->dtype != CP_I64 || rp->dtype != CP_I64) { CHECK(0, "%s: key_mask / rel_pos", path); cp_st_close(&st); return; }
    const int64_t B = km->shape[0], T = km->shape[1];
    const int version = (int)meta_int(&st, "version");
    const int64_t pb = version == 2 ? meta_int(&st, "position_buckets") : 0, max_rel = meta_int(&st, "max_relative_positions");
    /* the relative positions and the span, as the encoder builds them */
    int64_t *rel = malloc((size_t)(T * T) * sizeof *rel), first = -1;
    CHECK_OK(cp_deberta_relative_position(rel, T, T, pb, max_rel));
    CHECK(memcmp(rel, rp->data, (size_t)(T * T) * sizeof *rel) == 0, "%s: relative positions differ", name);
    free(rel);
    const int64_t span = cp_deberta_attention_span(version, T, T, pb, max_rel, &first);
    CHECK(span == meta_int(&st, "span") && first == meta_int(&st, "first_row"), "%s: span %lld first row %lld, want %lld %lld",
          name, (long long)span, (long long)first, (long long)meta_int(&st, "span"), (long long)meta_int(&st, "first_row"));
    parity_worst w = {0};
    for (int64_t L = 0; L < meta_int(&st, "layers"); L++) parity_layer(&st, L, B, T, &w);
    /* v1's q/k/v are made inside the module (fused in_proj + biases): checked through d_hidden only */
    char proj[32] = "-", dproj[32] = "-";
    if (version == 2) { snprintf(proj, sizeof proj, "%.2e", w.proj); snprintf(dproj, sizeof dproj, "%.2e", w.dproj); }
    printf("  %-24s out %.2e probs %.2e proj %s | rel grads: q/k/v/pos %s hidden %.2e rel_embeddings %.2e\n", name,
           w.out, w.probs, proj, dproj, w.dhidden, w.drel);
    CHECK(w.out <= OUT_TOL && w.probs <= OUT_TOL && w.proj <= OUT_TOL, "%s: forward off (out %.3e probs %.3e proj %.3e)",
          name, w.out, w.probs, w.proj);
    CHECK(w.dproj <= GRAD_TOL && w.dhidden <= GRAD_TOL && w.drel <= GRAD_TOL,
          "%s: gradients off (proj %.3e hidden %.3e rel %.3e)", name, w.dproj, w.dhidden, w.drel);
    cp_st_close(&st);
}

TEST(deberta_v2_matches_transformers) {
    parity_case("v2_c2p_p2c_shared");
    parity_case("v2_c2p_buckets");
    parity_case("v2_c2p_p2c_buckets_ln");
    parity_case("v2_c2p_p2c_clamped");
    parity_case("v2_p2c_unshared");
}

TEST(deberta_v1_matches_transformers) {
    parity_case("v1_c2p_p2c");
    parity_case("v1_c2p_clamped");
    parity_case("v1_p2c_clamped");
}

/* ---- finite differences ------------------------------------------------------------------------ */

static unsigned seed_state = 777;
static float frand(void) {
    seed_state = seed_state * 1664525u + 1013904223u;
    return ((float)(seed_state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static double rel_err(double analytic, double numeric) {
    return fabs(analytic - numeric) / fmax(1e-2, fmax(fabs(analytic), fabs(numeric)));
}

static double loss_of(const cp_disentangled_args *a, const float *w_out) {
    cp_arena ar;
    cp_arena_init(&ar);
    cp_disentangled_attention_forward(a, &ar);
    cp_arena_free(&ar);
    double s = 0;
    for (int64_t i = 0; i < a->B * a->T * a->NH * a->hs; i++) s += (double)a->out[i] * w_out[i];
    return s;
}

typedef struct {
    const char *name;
    int version, c2p, p2c;
    int64_t span, buckets, max_rel; /* buckets > 0: log-bucketed relative positions */
} fd_case;

/* Every entry of x = [q | k | v | pos_key | pos_query] perturbed; B 2, T 7, NH 2, hs 3, row 1 padded
 * at its last two tokens. */
static double fd_run(const fd_case *c) {
    const int64_t B = 2, T = 7, NH = 2, hs = 3, C = NH * hs, W = 2 * c->span;
    const int64_t nq = B * T * C, np = W * C, n = 3 * nq + 2 * np;
    float *x = malloc((size_t)n * 4), *dx = calloc((size_t)n, 4), *out = malloc((size_t)nq * 4), *w = malloc((size_t)nq * 4);
    float *probs = malloc((size_t)(B * NH * T * T) * 4);
    int64_t mask[2 * 7], rel[7 * 7];
    for (int64_t i = 0; i < n; i++) x[i] = 1.5f * frand();
    for (int64_t i = 0; i < nq; i++) w[i] = frand();
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) mask[b * T + t] = !(b == 1 && t >= T - 2);
    CHECK_OK(cp_deberta_relative_position(rel, T, T, c->buckets, c->max_rel));
    cp_disentangled_args a = {.version = (cp_deberta_version)c->version, .B = B, .T = T, .NH = NH, .hs = hs,
                              .q = x, .k = x + nq, .v = x + 2 * nq, .q_stride = C, .k_stride = C, .v_stride = C,
                              .pos_key = c->c2p ? x + 3 * nq : NULL, .pos_query = c->p2c ? x + 3 * nq + np : NULL,
                              .pos_key_stride = C, .pos_query_stride = C, .span = c->span, .rel_pos = rel,
                              .scale_factor = 1 + c->c2p + c->p2c, .key_mask = mask, .out = out, .probs = probs};
    loss_of(&a, w);
    /* the backward overwrites every gradient it is given (an input the case lacks keeps gradient 0) */
    for (int64_t i = 0; i < n; i++)
        dx[i] = i < 3 * nq || (i < 3 * nq + np ? c->c2p : c->p2c) ? 7.0f : 0.0f;
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_disentangled_attention_backward(&a, w, dx, dx + nq, dx + 2 * nq, c->c2p ? dx + 3 * nq : NULL,
                                                c->p2c ? dx + 3 * nq + np : NULL, &ar));
    cp_arena_free(&ar);
    a.probs = NULL;
    double worst = 0;
    const float h = 1e-2f;
    for (int64_t i = 0; i < n; i++) {
        const float keep = x[i];
        x[i] = keep + h; const double lp = loss_of(&a, w);
        x[i] = keep - h; const double lm = loss_of(&a, w);
        x[i] = keep;
        worst = fmax(worst, rel_err(dx[i], (lp - lm) / (2 * h)));
    }
    CHECK(worst < 2e-2, "%s: backward off by %.3e", c->name, worst);
    free(x); free(dx); free(out); free(w); free(probs);
    return worst;
}

TEST(backward_matches_finite_differences) {
    const fd_case cases[] = {
        {"v2 c2p+p2c, span 4 > T/2", 2, 1, 1, 4, 0, 4},
        {"v2 c2p+p2c, clamped span 2", 2, 1, 1, 2, 0, 2},
        {"v2 c2p, log buckets 4 / 6", 2, 1, 0, 4, 4, 6},
        {"v2 p2c, log buckets 4 / 6", 2, 0, 1, 4, 4, 6},
        {"v2 no position terms", 2, 0, 0, 0, 0, 0},
        {"v2 c2p+p2c, span 10 > T (rows unread)", 2, 1, 1, 10, 0, 10},
        {"v1 c2p+p2c, span 7", 1, 1, 1, 7, 0, 16},
        {"v1 c2p+p2c, clamped span 3", 1, 1, 1, 3, 0, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        printf("  %-40s worst relative error %.2e\n", cases[i].name, fd_run(&cases[i]));
}

/* ---- refusals ---------------------------------------------------------------------------------- */

TEST(bad_arguments_are_refused) {
    float buf[2 * 3 * 4] = {0}, out[2 * 3 * 4], probs[2 * 2 * 3 * 3];
    int64_t rel[9];
    CHECK_OK(cp_deberta_relative_position(rel, 3, 3, 0, 4));
    cp_disentangled_args a = {.version = CP_DEBERTA_V2, .B = 2, .T = 3, .NH = 2, .hs = 2, .q = buf, .k = buf, .v = buf,
                              .q_stride = 4, .k_stride = 4, .v_stride = 4, .pos_key = buf, .pos_key_stride = 4,
                              .span = 3, .rel_pos = rel, .scale_factor = 2, .out = out, .probs = probs};
    cp_arena ar;
    cp_arena_init(&ar);
    CHECK_OK(cp_disentangled_attention_forward(&a, &ar));
    cp_disentangled_args bad = a;
    bad.scale_factor = 0;
    CHECK_ERR(cp_disentangled_attention_forward(&bad, &ar), "scale_factor");
    bad = a; bad.rel_pos = NULL;
    CHECK_ERR(cp_disentangled_attention_forward(&bad, &ar), "rel_pos NULL");
    bad = a; bad.version = 3;
    CHECK_ERR(cp_disentangled_attention_forward(&bad, &ar), "version 3");
    bad = a; bad.probs = NULL;
    float d[2 * 3 * 4];
    CHECK_ERR(cp_disentangled_attention_backward(&bad, out, d, d, d, NULL, NULL, &ar), "probabilities");
    CHECK_ERR(cp_disentangled_attention_backward(&a, out, d, d, d, NULL, d, &ar), "pos_query");
    int64_t big[64];
    CHECK_ERR(cp_deberta_relative_position(big, 8, 8, 8, 5), "log(1)");
    cp_arena_free(&ar);
}

int main(void) {
    RUN(log_buckets_match_transformers);
    RUN(deberta_v2_matches_transformers);
    RUN(deberta_v1_matches_transformers);
    RUN(backward_matches_finite_differences);
    RUN(bad_arguments_are_refused);
    return test_summary();
}
