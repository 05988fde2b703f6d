/*
 * profile.h — a cheap per-phase profile of a training step (CPEFT_PROFILE=1): wall time and the
 * process's CPU time spent in each phase, so that a phase where one of the cores idles (a serial
 * section, a product that does not split over the team, threads waiting at a barrier) shows as a
 * core utilisation below 100%.
 *
 * Phases nest: time goes to the innermost open phase (self time), except that an "absorbing" phase
 * (the LM head with its loss, attention) keeps the products it runs for itself. Only the thread
 * outside any OpenMP region records (a phase opened inside a parallel region is ignored); with
 * CPEFT_PROFILE unset every call is one load and a branch. CPU time is getrusage(RUSAGE_SELF):
 * it counts a thread spinning at a barrier as busy (libgomp spins a while before it sleeps), so the
 * utilisation is an upper bound on useful work.
 *
 * Not here: what is timed (kernels/gemm.c, nn/attention.c, nn/layernorm.c, nn/rmsnorm.c,
 * models/lm_head.c, train/optim.c open the phases) or printed (bench/train_bench.c).
 */
#ifndef CP_CORE_PROFILE_H
#define CP_CORE_PROFILE_H

typedef enum {
    CP_PROF_FROZEN_FWD,  /* products with frozen weights, forward */
    CP_PROF_FROZEN_DX,   /* their input gradient */
    CP_PROF_SMALL_GEMM,  /* products with a side <= 64 (LoRA's A and B), forward and input gradient */
    CP_PROF_WEIGHT_GRAD, /* weight gradients (LoRA) */
    CP_PROF_F32_GEMM,    /* general f32 products outside attention */
    CP_PROF_ATTENTION,   /* attention core, forward and backward (its products included) */
    CP_PROF_NORM,        /* LayerNorm / RMSNorm, forward and backward */
    CP_PROF_LM_HEAD,     /* LM head and cross-entropy, forward and backward (its products included) */
    CP_PROF_OPTIMIZER,   /* gradient clipping, AdamW, zeroing */
    CP_PROF_N
} cp_prof_phase;

extern int cp_prof_state; /* 0: not yet read, 1: off, 2: on */
int cp_prof_init(void);   /* reads CPEFT_PROFILE; 1 when profiling */
static inline int cp_prof_on(void) { return cp_prof_state == 2 || (cp_prof_state == 0 && cp_prof_init()); }

void cp_prof_push_(cp_prof_phase phase);
void cp_prof_pop_(void);
#define cp_prof_push(ph) do { if (cp_prof_on()) cp_prof_push_(ph); } while (0)
#define cp_prof_pop() do { if (cp_prof_on()) cp_prof_pop_(); } while (0)
/* Adds floating-point operations to the phase the time goes to now (a product's 2·N·K·M). */
void cp_prof_flops_(double flops);
#define cp_prof_flops(f) do { if (cp_prof_on()) cp_prof_flops_(f); } while (0)

/* Clears the totals; starts the clock of the time outside every phase ("other"). */
void cp_prof_reset(void);
/* Totals since the last reset: wall and CPU seconds and flops per phase; phase CP_PROF_N is "other"
 * (the time outside every phase since the reset). */
void cp_prof_totals(double wall[CP_PROF_N + 1], double cpu[CP_PROF_N + 1], double flops[CP_PROF_N + 1]);
const char *cp_prof_name(int phase); /* "frozen forward", ..., "other" */

#endif
