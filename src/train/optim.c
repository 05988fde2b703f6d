/*
 * optim.c — AdamW, learning-rate schedules and gradient clipping; see optim.h.
 *
 * AdamW follows torch.optim.AdamW's single-tensor path operation by operation in f32, with the
 * scalars computed in double as Python computes them, so that the same gradients give the same
 * parameters to the last bit or two.
 */
#include "train/optim.h"
#include "core/alloc.h"

#include <math.h>
#include <string.h>

cp_status cp_adamw_init(cp_adamw *opt, cp_param **params, int n, cp_adamw_config cfg) {
    memset(opt, 0, sizeof *opt);
    opt->params = params;
    opt->n = n;
    opt->cfg = cfg;
    opt->exp_avg = cp_calloc((size_t)(n ? n : 1), sizeof *opt->exp_avg, "optimizer state");
    opt->exp_avg_sq = cp_calloc((size_t)(n ? n : 1), sizeof *opt->exp_avg_sq, "optimizer state");
    if (!opt->exp_avg || !opt->exp_avg_sq) { cp_adamw_free(opt); return CP_ERR; }
    for (int i = 0; i < n; i++) {
        opt->exp_avg[i] = cp_alloc_aligned((size_t)params[i]->numel * sizeof(float), "AdamW exp_avg");
        opt->exp_avg_sq[i] = cp_alloc_aligned((size_t)params[i]->numel * sizeof(float), "AdamW exp_avg_sq");
        if (!opt->exp_avg[i] || !opt->exp_avg_sq[i]) { cp_adamw_free(opt); return CP_ERR; }
    }
    return CP_OK;
}

void cp_adamw_step(cp_adamw *opt, double lr) {
    opt->step++;
    const cp_adamw_config *c = &opt->cfg;
    const double bc1 = 1.0 - pow(c->beta1, (double)opt->step);
    const double bc2 = 1.0 - pow(c->beta2, (double)opt->step);
    const float decay = (float)(1.0 - lr * c->weight_decay);
    const float w1 = (float)(1.0 - c->beta1), b2 = (float)c->beta2, w2 = (float)(1.0 - c->beta2);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
    for (int i = 0; i < opt->n; i++) {
        cp_param *p = opt->params[i];
        float *x = p->data, *g = p->grad, *m = opt->exp_avg[i], *v = opt->exp_avg_sq[i];
#pragma omp parallel for simd schedule(static) if (p->numel > 65536)
        for (int64_t k = 0; k < p->numel; k++) {
            x[k] *= decay;                                  // param.mul_(1 - lr * weight_decay)
            m[k] += w1 * (g[k] - m[k]);                     // exp_avg.lerp_(grad, 1 - beta1)
            v[k] = v[k] * b2 + w2 * g[k] * g[k];            // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
            float denom = sqrtf(v[k]) / bc2_sqrt + eps;     // (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            x[k] += -step_size * (m[k] / denom);            // param.addcdiv_(exp_avg, denom, value=-step_size)
        }
    }
}

void cp_adamw_free(cp_adamw *opt) {
    for (int i = 0; i < opt->n; i++) {
        if (opt->exp_avg) cp_free(opt->exp_avg[i]);
        if (opt->exp_avg_sq) cp_free(opt->exp_avg_sq[i]);
    }
    cp_free(opt->exp_avg);
    cp_free(opt->exp_avg_sq);
    memset(opt, 0, sizeof *opt);
}

double cp_clip_grad_norm(cp_param **params, int n, double max_norm) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        const float *g = params[i]->grad;
#pragma omp parallel for reduction(+ : s) schedule(static) if (params[i]->numel > 65536)
        for (int64_t k = 0; k < params[i]->numel; k++) s += (double)g[k] * g[k];
        total += s;
    }
    double norm = sqrt(total);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef > 1.0) coef = 1.0; /* clip_grad_norm_ multiplies by the clamped coefficient always */
        const float cf = (float)coef;
        for (int i = 0; i < n; i++)
            for (int64_t k = 0; k < params[i]->numel; k++) params[i]->grad[k] *= cf;
    }
    return norm;
}

void cp_zero_grads(cp_param **params, int n) {
    for (int i = 0; i < n; i++) memset(params[i]->grad, 0, (size_t)params[i]->numel * sizeof(float));
}

static const char *const schedule_names[] = {"constant", "constant_with_warmup", "linear", "cosine"};

int cp_schedule_from_name(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, schedule_names[i])) return i;
    return -1;
}

const char *cp_schedule_name(cp_schedule s) { return schedule_names[s]; }

double cp_schedule_factor(cp_schedule s, int64_t step, int64_t warmup, int64_t total) {
    if (s == CP_SCHED_CONSTANT) return 1.0;
    if (step < warmup) return (double)step / (double)(warmup > 1 ? warmup : 1);
    if (s == CP_SCHED_CONSTANT_WITH_WARMUP) return 1.0;
    int64_t span = total - warmup > 1 ? total - warmup : 1;
    if (s == CP_SCHED_LINEAR) {
        double f = (double)(total - step) / (double)span;
        return f > 0 ? f : 0.0;
    }
    double progress = (double)(step - warmup) / (double)span;
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress)); /* num_cycles = 0.5 */
    return f > 0 ? f : 0.0;
}
