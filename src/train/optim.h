/*
 * optim.h — the optimizer side of training, with PyTorch's and transformers' exact semantics:
 * AdamW (torch.optim.AdamW: decoupled weight decay, bias correction), the learning-rate schedules
 * of transformers.get_scheduler, and gradient clipping by global norm (clip_grad_norm_).
 */
#ifndef CP_TRAIN_OPTIM_H
#define CP_TRAIN_OPTIM_H

#include <stdint.h>

#include "core/error.h"
#include "nn/module.h"

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
} cp_adamw_config;

typedef struct {
    cp_param **params;   /* the trained parameters (not owned) */
    int n;
    float **exp_avg;     /* first moments, one buffer per parameter */
    float **exp_avg_sq;  /* second moments */
    int64_t step;        /* optimizer steps taken */
    cp_adamw_config cfg;
} cp_adamw;

cp_status cp_adamw_init(cp_adamw *opt, cp_param **params, int n, cp_adamw_config cfg);
/* One step at learning rate `lr` (the schedule's value for this step), from the params' grads:
 *   p ← p·(1 − lr·wd);  m ← m + (1−β1)(g − m);  v ← β2·v + (1−β2)·g²;
 *   p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε) */
void cp_adamw_step(cp_adamw *opt, double lr);
void cp_adamw_free(cp_adamw *opt);

/* ‖g‖₂ over all grads; scales them by min(1, max_norm / (‖g‖ + 1e-6)) when max_norm > 0.
 * Returns the norm before clipping (what clip_grad_norm_ returns). */
double cp_clip_grad_norm(cp_param **params, int n, double max_norm);
void cp_zero_grads(cp_param **params, int n);

typedef enum { CP_SCHED_CONSTANT, CP_SCHED_CONSTANT_WITH_WARMUP, CP_SCHED_LINEAR, CP_SCHED_COSINE } cp_schedule;

/* "linear" -> CP_SCHED_LINEAR; -1 when unknown. */
int cp_schedule_from_name(const char *name);
const char *cp_schedule_name(cp_schedule s);
/* The LambdaLR multiplier at optimizer step `step` (0-based), as get_scheduler defines it. */
double cp_schedule_factor(cp_schedule s, int64_t step, int64_t warmup_steps, int64_t total_steps);

#endif
