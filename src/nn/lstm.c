/*
 * lstm.c — torch.nn.LSTM over one sequence, forward and backward through time; see lstm.h.
 */
#include "nn/lstm.h"
#include "core/alloc.h"
#include "core/rng.h"
#include "core/strbuf.h"
#include "nn/linear.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { W_IH, W_HH, B_IH, B_HH };

static cp_param *param(const cp_lstm *l, int64_t layer, int dir, int which) {
    return l->params[(layer * l->directions + dir) * 4 + which];
}

static int64_t layer_input(const cp_lstm *l, int64_t layer) { return layer ? l->directions * l->hidden_size : l->input_size; }

int cp_lstm_num_params(const cp_lstm *l) { return (int)(l->num_layers * l->directions * 4); }

cp_status cp_lstm_init(cp_lstm *l, const char *prefix, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                       int bidirectional, double dropout) {
    *l = (cp_lstm){.input_size = input_size, .hidden_size = hidden_size, .num_layers = num_layers,
                   .directions = bidirectional ? 2 : 1, .dropout = dropout};
    const int n = cp_lstm_num_params(l);
    if (!(l->params = cp_calloc((size_t)n, sizeof *l->params, "LSTM parameters"))) return CP_ERR;
    static const char *const kind[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    const int64_t H = hidden_size;
    for (int64_t layer = 0; layer < num_layers; layer++)
        for (int dir = 0; dir < l->directions; dir++)
            for (int w = 0; w < 4; w++) {
                char name[256];
                snprintf(name, sizeof name, "%s.%s_l%lld%s", prefix, kind[w], (long long)layer, dir ? "_reverse" : "");
                cp_param *p = w == W_IH ? cp_param_new(name, 2, 4 * H, layer_input(l, layer))
                              : w == W_HH ? cp_param_new(name, 2, 4 * H, H)
                                          : cp_param_new(name, 1, 4 * H, 0);
                if (!p) { cp_lstm_free(l); return CP_ERR; }
                memset(p->data, 0, (size_t)p->numel * sizeof *p->data);
                l->params[(layer * l->directions + dir) * 4 + w] = p;
            }
    return CP_OK;
}

void cp_lstm_free(cp_lstm *l) {
    for (int i = 0; l->params && i < cp_lstm_num_params(l); i++) cp_param_free(l->params[i]);
    cp_free(l->params);
    l->params = NULL;
}

char *cp_lstm_repr(const cp_lstm *l) {
    cp_strbuf sb;
    cp_sb_init(&sb);
    cp_sb_printf(&sb, "LSTM(%lld, %lld", (long long)l->input_size, (long long)l->hidden_size);
    if (l->num_layers != 1) cp_sb_printf(&sb, ", num_layers=%lld", (long long)l->num_layers);
    cp_sb_append(&sb, ", batch_first=True");
    if (l->dropout != 0) {
        char f[40];
        snprintf(f, sizeof f, "%.17g", l->dropout);
        cp_sb_printf(&sb, ", dropout=%s", f);
    }
    if (l->directions == 2) cp_sb_append(&sb, ", bidirectional=True");
    cp_sb_append(&sb, ")");
    return cp_sb_finish(&sb);
}

/* ---- forward ------------------------------------------------------------------------------------ */

/* One layer and direction: what its backward reads. */
typedef struct {
    const float *x;   /* (T, In) the layer's input */
    float *gates;     /* (T, 4H) i, f, g, o after their activations */
    float *c;         /* (T, H) cell states, in time order */
    float *h;         /* (T, H) outputs, in time order */
} run_trace;

struct cp_lstm_trace {
    int64_t T;
    run_trace *runs;  /* [num_layers · directions] */
    float **masks;    /* [num_layers] the dropout scale applied to layer l's input (NULL: none) */
};

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* One direction of one layer over x (T, In): its outputs into y (T, D·H) at column offset dir·H. */
static void run_direction(const cp_lstm *l, int64_t layer, int dir, int64_t T, run_trace *r, float *y) {
    const int64_t H = l->hidden_size, In = layer_input(l, layer), DH = l->directions * H;
    const cp_param *wih = param(l, layer, dir, W_IH), *whh = param(l, layer, dir, W_HH);
    const cp_param *bih = param(l, layer, dir, B_IH), *bhh = param(l, layer, dir, B_HH);
    cp_matmul_nt(r->gates, r->x, wih->data, T, In, 4 * H, 0); // (T,4H) = x W_ihᵀ
    for (int64_t s = 0; s < T; s++) {
        const int64_t t = dir ? T - 1 - s : s, prev = dir ? t + 1 : t - 1;
        float *g = r->gates + t * 4 * H;
        for (int64_t j = 0; j < 4 * H; j++) g[j] += bih->data[j] + bhh->data[j];
        if (s > 0) cp_matmul_nt(g, r->h + prev * H, whh->data, 1, H, 4 * H, 1); // += h_{t-1} W_hhᵀ
        float *c = r->c + t * H, *h = r->h + t * H;
        const float *c_prev = s > 0 ? r->c + prev * H : NULL;
        for (int64_t j = 0; j < H; j++) {
            float i = sigmoid(g[j]), f = sigmoid(g[H + j]), gg = tanhf(g[2 * H + j]), o = sigmoid(g[3 * H + j]);
            g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
            c[j] = (c_prev ? f * c_prev[j] : 0.0f) + i * gg;
            h[j] = o * tanhf(c[j]);
        }
        memcpy(y + t * DH + dir * H, h, (size_t)H * sizeof *y);
    }
}

cp_status cp_lstm_forward(const cp_lstm *l, cp_arena *ar, const float *x, int64_t T, int training, uint64_t seed, float *y,
                          cp_lstm_trace **trace) {
    const int64_t H = l->hidden_size, DH = l->directions * H, L = l->num_layers;
    cp_lstm_trace *tr = cp_arena_alloc(ar, sizeof *tr, "LSTM trace");
    if (!tr) return CP_ERR;
    tr->T = T;
    tr->runs = cp_arena_alloc(ar, (size_t)(L * l->directions) * sizeof *tr->runs, "LSTM trace");
    tr->masks = cp_arena_alloc(ar, (size_t)L * sizeof *tr->masks, "LSTM trace");
    if (!tr->runs || !tr->masks) return CP_ERR;
    for (int64_t layer = 0; layer < L; layer++) tr->masks[layer] = NULL;
    const float *in = x;
    for (int64_t layer = 0; layer < L; layer++) {
        float *out = layer == L - 1 ? y : cp_arena_floats(ar, (size_t)(T * DH), "LSTM layer output"); // (T, D·H)
        if (!out) return CP_ERR;
        for (int dir = 0; dir < l->directions; dir++) {
            run_trace *r = &tr->runs[layer * l->directions + dir];
            r->x = in;
            r->gates = cp_arena_floats(ar, (size_t)(T * 4 * H), "LSTM gates");
            r->c = cp_arena_floats(ar, (size_t)(T * H), "LSTM cells");
            r->h = cp_arena_floats(ar, (size_t)(T * H), "LSTM outputs");
            if (!r->gates || !r->c || !r->h) return CP_ERR;
            run_direction(l, layer, dir, T, r, out);
        }
        /* torch applies dropout to every layer's output but the last (training only) */
        if (layer < L - 1 && training && l->dropout > 0) {
            float *mask = cp_arena_floats(ar, (size_t)(T * DH), "LSTM dropout");
            if (!mask) return CP_ERR;
            cp_rng rng;
            cp_rng_seed(&rng, seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(layer + 1)));
            const float keep = l->dropout >= 1 ? 0.0f : (float)(1.0 / (1.0 - l->dropout));
            for (int64_t k = 0; k < T * DH; k++) {
                mask[k] = cp_rng_uniform(&rng) < l->dropout ? 0.0f : keep;
                out[k] *= mask[k];
            }
            tr->masks[layer + 1] = mask;
        }
        in = out;
    }
    *trace = tr;
    return CP_OK;
}

/* ---- backward ----------------------------------------------------------------------------------- */

/* One direction of one layer: dy (T, D·H) at column dir·H is the gradient of its outputs; adds its
 * parameters' gradients and dx (T, In) += the input gradient. */
static void back_direction(const cp_lstm *l, int64_t layer, int dir, int64_t T, const run_trace *r, const float *dy, float *dx,
                           float *da, float *dh_next, float *dc_next) {
    const int64_t H = l->hidden_size, In = layer_input(l, layer), DH = l->directions * H;
    cp_param *wih = param(l, layer, dir, W_IH), *whh = param(l, layer, dir, W_HH);
    cp_param *bih = param(l, layer, dir, B_IH), *bhh = param(l, layer, dir, B_HH);
    memset(dh_next, 0, (size_t)H * sizeof *dh_next);
    memset(dc_next, 0, (size_t)H * sizeof *dc_next);
    // in the forward h_t = o ⊙ tanh(c_t) and c_t = f ⊙ c_{t-1} + i ⊙ g: walk time backwards
    for (int64_t s = T - 1; s >= 0; s--) {
        const int64_t t = dir ? T - 1 - s : s, prev = dir ? t + 1 : t - 1;
        const float *g = r->gates + t * 4 * H, *c = r->c + t * H, *c_prev = s > 0 ? r->c + prev * H : NULL;
        float *a = da + t * 4 * H; // (4H) the gradient of the pre-activation gates at t
        for (int64_t j = 0; j < H; j++) {
            const float i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j], tc = tanhf(c[j]);
            const float dh = dy[t * DH + dir * H + j] + dh_next[j];
            const float dc = dh * o * (1.0f - tc * tc) + dc_next[j];
            a[j] = dc * gg * i * (1.0f - i);
            a[H + j] = (c_prev ? dc * c_prev[j] : 0.0f) * f * (1.0f - f);
            a[2 * H + j] = dc * i * (1.0f - gg * gg);
            a[3 * H + j] = dh * tc * o * (1.0f - o);
            dc_next[j] = dc * f;
        }
        // dh_{t-1} = a W_hh (the recurrent path), and W_hh's gradient from h_{t-1}
        memset(dh_next, 0, (size_t)H * sizeof *dh_next);
        if (s > 0) {
            for (int64_t k = 0; k < 4 * H; k++) {
                const float ak = a[k];
                const float *w = whh->data + k * H;
                for (int64_t j = 0; j < H; j++) dh_next[j] += ak * w[j];
            }
            if (whh->grad) cp_matmul_tn(whh->grad, a, r->h + prev * H, 1, 4 * H, H, 1);
        }
    }
    // the input path for every t at once: dx += da W_ih, dW_ih += daᵀ x, biases += Σ_t da
    if (dx) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < 4 * H; k++) {
                const float ak = da[t * 4 * H + k];
                const float *w = wih->data + k * In;
                for (int64_t j = 0; j < In; j++) dx[t * In + j] += ak * w[j];
            }
    }
    if (wih->grad) cp_matmul_tn(wih->grad, da, r->x, T, 4 * H, In, 1);
    if (bih->grad) cp_sum_rows(bih->grad, da, T, 4 * H);
    if (bhh->grad) cp_sum_rows(bhh->grad, da, T, 4 * H);
}

cp_status cp_lstm_backward(const cp_lstm *l, cp_arena *ar, const cp_lstm_trace *tr, const float *dy, float *dx) {
    const int64_t H = l->hidden_size, DH = l->directions * H, T = tr->T, L = l->num_layers;
    cp_arena_mark mark = cp_arena_get_mark(ar);
    float *da = cp_arena_floats(ar, (size_t)(T * 4 * H), "LSTM gate gradients");
    float *dh_next = cp_arena_floats(ar, (size_t)H, "LSTM state gradients");
    float *dc_next = cp_arena_floats(ar, (size_t)H, "LSTM state gradients");
    float *d_out = cp_arena_floats(ar, (size_t)(T * DH), "LSTM layer gradients");
    float *d_in = cp_arena_floats(ar, (size_t)(T * DH), "LSTM layer gradients");
    if (!da || !dh_next || !dc_next || !d_out || !d_in) { cp_arena_release(ar, mark); return CP_ERR; }
    memcpy(d_out, dy, (size_t)(T * DH) * sizeof *d_out);
    for (int64_t layer = L - 1; layer >= 0; layer--) {
        const int64_t In = layer_input(l, layer);
        float *dxl = layer ? d_in : dx; // the input gradient: the layer below's output gradient, or dx
        if (layer) memset(d_in, 0, (size_t)(T * In) * sizeof *d_in);
        for (int dir = 0; dir < l->directions; dir++)
            back_direction(l, layer, dir, T, &tr->runs[layer * l->directions + dir], d_out, dxl, da, dh_next, dc_next);
        if (layer) { // through the dropout on the layer below's output
            if (tr->masks[layer])
                for (int64_t k = 0; k < T * In; k++) d_in[k] *= tr->masks[layer][k];
            float *tmp = d_out;
            d_out = d_in;
            d_in = tmp;
        }
    }
    cp_arena_release(ar, mark);
    return CP_OK;
}
