/*
 * profile.c — the per-phase profile of profile.h.
 */
#include "core/profile.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int cp_prof_state;

#define DEPTH 16

static struct {
    double wall[CP_PROF_N + 1], cpu[CP_PROF_N + 1], flops[CP_PROF_N + 1];
    int stack[DEPTH], depth, ignored; /* ignored: pushes swallowed by an absorbing phase or past DEPTH */
    double t_wall, t_cpu;             /* when the open phase last started counting */
} P;

static const char *const names[CP_PROF_N + 1] = {
    "frozen forward", "frozen input grad", "LoRA products", "weight grads", "f32 products",
    "attention",      "norms",             "LM head + loss", "optimizer",   "other",
};

const char *cp_prof_name(int phase) { return phase >= 0 && phase <= CP_PROF_N ? names[phase] : "?"; }

int cp_prof_init(void) {
    const char *e = getenv("CPEFT_PROFILE");
    cp_prof_state = e && *e && strcmp(e, "0") ? 2 : 1;
    return cp_prof_state == 2;
}

static void clocks(double *wall, double *cpu) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *wall = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Charges the time since the last event to the open phase (or "other"). */
static void charge(void) {
    double w, c;
    clocks(&w, &c);
    const int top = P.depth ? P.stack[P.depth - 1] : CP_PROF_N;
    P.wall[top] += w - P.t_wall;
    P.cpu[top] += c - P.t_cpu;
    P.t_wall = w, P.t_cpu = c;
}

static int absorbing(int phase) { return phase == CP_PROF_ATTENTION || phase == CP_PROF_LM_HEAD || phase == CP_PROF_OPTIMIZER; }

void cp_prof_push_(cp_prof_phase phase) {
    if (omp_in_parallel()) return;
    if (P.ignored || P.depth == DEPTH || (P.depth && absorbing(P.stack[P.depth - 1]))) { P.ignored++; return; }
    charge();
    P.stack[P.depth++] = (int)phase;
}

void cp_prof_pop_(void) {
    if (omp_in_parallel()) return;
    if (P.ignored) { P.ignored--; return; }
    if (!P.depth) return;
    charge();
    P.depth--;
}

void cp_prof_flops_(double flops) {
    if (omp_in_parallel()) return;
    P.flops[P.depth ? P.stack[P.depth - 1] : CP_PROF_N] += flops;
}

void cp_prof_reset(void) {
    memset(P.flops, 0, sizeof P.flops);
    memset(P.wall, 0, sizeof P.wall);
    memset(P.cpu, 0, sizeof P.cpu);
    P.depth = P.ignored = 0;
    clocks(&P.t_wall, &P.t_cpu);
}

void cp_prof_totals(double wall[CP_PROF_N + 1], double cpu[CP_PROF_N + 1], double flops[CP_PROF_N + 1]) {
    charge();
    memcpy(flops, P.flops, sizeof P.flops);
    memcpy(wall, P.wall, sizeof P.wall);
    memcpy(cpu, P.cpu, sizeof P.cpu);
}
