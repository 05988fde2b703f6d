/*
 * run.c — which of the model's dropout sites apply in a run, and their mask keys (run.h).
 */
#include "models/run.h"

#include <stdio.h>

/* The run's place in the global batch, on a site's key. */
static cp_dropout batched(const cp_run *run, cp_dropout d) {
    d.batch_row0 = run->batch_row0;
    d.batch_rows = run->batch_rows;
    return d;
}

cp_dropout cp_run_dropout_call(const cp_run *run, const cp_module *drop, int call) {
    cp_dropout none = {0};
    if (!run->model_dropout || !drop || !(drop->p > 0)) return none;
    return batched(run, cp_dropout_site(drop->p, run->seed, drop->path, (uint64_t)call));
}

cp_dropout cp_run_dropout(const cp_run *run, const cp_module *drop) { return cp_run_dropout_call(run, drop, 0); }

cp_dropout cp_run_dropout_p(const cp_run *run, const cp_module *owner, const char *name, double p) {
    cp_dropout none = {0};
    if (!run->model_dropout || !(p > 0)) return none;
    char site[512];
    snprintf(site, sizeof site, "%s.%s", owner && owner->path ? owner->path : "", name);
    return batched(run, cp_dropout_site(p, run->seed, site, 0));
}

cp_dropout cp_run_batch_dropout(const cp_run *run, double p, uint64_t key) {
    cp_dropout d = {.p = p > 0 ? p : 0.0, .key = key};
    return batched(run, d);
}
