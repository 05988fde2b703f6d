/*
 * dist_mpi.c — dist.h with Open MPI (built when the Makefile finds it: CP_WITH_MPI). MPI starts only
 * when a launcher started this process (mpirun / mpiexec: OMPI_COMM_WORLD_SIZE; srun or another PMI
 * launcher: PMIX_RANK, PMI_RANK; CPEFT_MPI=1 forces it), so the same binary run by hand is the
 * single-process program and never touches MPI.
 *
 * Every collective is non-blocking (MPI_Iallreduce, MPI_Ibcast, ...) and waited on with a deadline
 * (CPEFT_DIST_TIMEOUT seconds, default 600): when a rank died or hangs the others say which
 * operation stalled and end the job with MPI_Abort instead of waiting forever. MPI_COMM_WORLD returns
 * its errors (MPI_ERRORS_RETURN), which are reported with MPI_Error_string and end the job the same
 * way. MPI is called from the main thread only (MPI_THREAD_FUNNELED); OpenMP threads compute.
 *
 * Measuring: CPEFT_DIST_PROFILE=1 puts a barrier before each gradient all-reduce, so that the time
 * ranks wait for the slowest (load imbalance) is counted apart from the reduction itself.
 *
 * Test hook: CPEFT_TEST_DIST_FAIL="RANK:STEP:die|hang|term" makes rank RANK exit (die, without
 * MPI_Finalize, as a crashed process), stop answering (hang) or receive SIGTERM (term, as Slurm sends
 * it before a time limit) at its STEP-th gradient reduction.
 */
#ifdef CP_WITH_MPI
#include "train/dist.h"
#include "core/alloc.h"

#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int started, rank, size = 1, agreed;
static double timeout_s = 600;
static float *flat;
static int64_t flat_cap;
static cp_dist_stats stats;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int launched(void) {
    const char *force = getenv("CPEFT_MPI");
    if (force) return strcmp(force, "0") != 0;
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

cp_status cp_dist_init(int *argc, char ***argv) {
    int already = 0;
    if (started || !launched()) return CP_OK;
    MPI_Initialized(&already);
    int provided = 0;
    if (!already && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return cp_error("MPI_Init_thread failed (started by mpirun or srun?)");
    started = 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *t = getenv("CPEFT_DIST_TIMEOUT");
    if (t && atof(t) > 0) timeout_s = atof(t);
    return CP_OK;
}

void cp_dist_finalize(void) {
    cp_free(flat);
    flat = NULL;
    flat_cap = 0;
    if (started) MPI_Finalize();
    started = 0;
}

int cp_dist_rank(void) { return rank; }
int cp_dist_size(void) { return size; }

const char *cp_dist_backend(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    if (!version[0]) {
        int len = 0;
        MPI_Get_library_version(version, &len);
        version[strcspn(version, ",\n")] = '\0'; /* "Open MPI v4.1.4, package: ..." */
    }
    return version;
}

const char *cp_dist_host(void) {
    static char host[MPI_MAX_PROCESSOR_NAME];
    if (!host[0]) {
        int len = 0;
        if (!started || MPI_Get_processor_name(host, &len) != MPI_SUCCESS) {
            if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "?");
        }
    }
    return host;
}

_Noreturn void cp_dist_abort(int code) {
    fflush(stdout);
    fflush(stderr);
    if (started && size > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

/* An MPI error or a missed deadline: said on stderr by the rank that saw it, then the job ends. */
static _Noreturn void fail(const char *what, int rc) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (rc != MPI_SUCCESS) MPI_Error_string(rc, msg, &len);
    if (rc != MPI_SUCCESS)
        fprintf(stderr, "cpeft: rank %d of %d (%s): MPI failed in %s: %s; ending the job\n", rank, size, cp_dist_host(), what, msg);
    else
        fprintf(stderr, "cpeft: rank %d of %d (%s): no answer from the other ranks for %.0f s in %s: a rank has died or hangs "
                        "(CPEFT_DIST_TIMEOUT sets the limit); ending the job\n", rank, size, cp_dist_host(), timeout_s, what);
    cp_dist_abort(1);
}

/* Waits for a non-blocking collective: spins for a millisecond (a step's reduction is that fast), then
 * tests every 200 µs, so a rank waiting on a slower one leaves its core to the computation. */
static void wait_for(MPI_Request *req, int rc, const char *what) {
    if (rc != MPI_SUCCESS) fail(what, rc);
    const double t0 = now(), deadline = t0 + timeout_s;
    for (int done = 0;;) {
        if ((rc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS) fail(what, rc);
        if (done) return;
        double t = now();
        if (t > deadline) fail(what, MPI_SUCCESS);
        if (t - t0 > 1e-3) nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
    }
}

cp_status cp_dist_agree(cp_status st) {
    agreed = 0;
    if (!started || size == 1) return st;
    int mine = st != CP_OK ? rank : INT_MAX, first = INT_MAX;
    MPI_Request req;
    wait_for(&req, MPI_Iallreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req), "agreeing on the setup");
    if (first == INT_MAX) return CP_OK;
    char msg[4096];
    if (rank == first) snprintf(msg, sizeof msg, "rank %d (%s): %s", rank, cp_dist_host(), cp_last_error());
    wait_for(&req, MPI_Ibcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD, &req), "sharing a rank's error");
    msg[sizeof msg - 1] = '\0';
    cp_error("%s", msg);
    agreed = 1;
    return CP_ERR;
}

int cp_dist_failure_agreed(void) { return agreed; }

cp_status cp_dist_sum_f64(double *buf, int n, const char *what) {
    if (!started || size == 1) return CP_OK;
    MPI_Request req;
    wait_for(&req, MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &req), what);
    return CP_OK;
}

cp_status cp_dist_any(int flag, int *any, const char *what) {
    *any = flag != 0;
    if (!started || size == 1) return CP_OK;
    int mine = flag != 0;
    MPI_Request req;
    wait_for(&req, MPI_Iallreduce(&mine, any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &req), what);
    return CP_OK;
}

/* CPEFT_TEST_DIST_FAIL (see the top of the file), checked at every gradient reduction. */
static void test_hook(void) {
    static int parsed, fail_rank = -1;
    static long fail_step;
    static char mode[8];
    if (!parsed) {
        parsed = 1;
        const char *s = getenv("CPEFT_TEST_DIST_FAIL");
        if (s && sscanf(s, "%d:%ld:%7s", &fail_rank, &fail_step, mode) != 3) fail_rank = -1;
    }
    if (fail_rank != rank || stats.reductions + 1 != fail_step) return;
    fflush(stdout);
    if (!strcmp(mode, "term")) { raise(SIGTERM); return; }
    if (!strcmp(mode, "die")) _exit(3);
    for (;;) pause();
}

cp_status cp_dist_sum_grads(cp_param **params, int n) {
    if (!started || size == 1) return CP_OK;
    test_hook();
    static int profile = -1;
    if (profile < 0) profile = getenv("CPEFT_DIST_PROFILE") && strcmp(getenv("CPEFT_DIST_PROFILE"), "0");
    if (profile) {
        const double tw = now();
        cp_dist_barrier("waiting for the other ranks' backward");
        stats.wait_seconds += now() - tw;
    }
    const double t0 = now();
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += params[i]->numel;
    if (total > flat_cap) {
        float *f = cp_realloc(flat, (size_t)total * sizeof *f, "the gradient all-reduce buffer");
        if (!f) return CP_ERR;
        flat = f;
        flat_cap = total;
    }
    /* flat (total,) = the gradients in parameter order */
    int64_t o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(flat + o, params[i]->grad, (size_t)params[i]->numel * sizeof *flat);
        o += params[i]->numel;
    }
    for (int64_t at = 0; at < total; at += INT_MAX / 2) { /* MPI counts are int */
        const int64_t count = total - at < INT_MAX / 2 ? total - at : INT_MAX / 2;
        MPI_Request req;
        wait_for(&req, MPI_Iallreduce(MPI_IN_PLACE, flat + at, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req),
                 "the gradient all-reduce");
    }
    o = 0;
    for (int i = 0; i < n; i++) {
        memcpy(params[i]->grad, flat + o, (size_t)params[i]->numel * sizeof *flat);
        o += params[i]->numel;
    }
    stats.reductions++;
    stats.seconds += now() - t0;
    stats.bytes = total * (int64_t)sizeof(float);
    return CP_OK;
}

cp_status cp_dist_gather_u64(uint64_t value, uint64_t *out, const char *what) {
    out[0] = value;
    if (!started || size == 1) return CP_OK;
    MPI_Request req;
    wait_for(&req, MPI_Iallgather(&value, 1, MPI_UINT64_T, out, 1, MPI_UINT64_T, MPI_COMM_WORLD, &req), what);
    return CP_OK;
}

cp_status cp_dist_broadcast(void *buf, size_t bytes, const char *what) {
    if (!started || size == 1) return CP_OK;
    if (bytes > INT_MAX) return cp_error("%s: %zu bytes is too much to broadcast", what, bytes);
    MPI_Request req;
    wait_for(&req, MPI_Ibcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &req), what);
    return CP_OK;
}

cp_status cp_dist_barrier(const char *what) {
    if (!started || size == 1) return CP_OK;
    MPI_Request req;
    wait_for(&req, MPI_Ibarrier(MPI_COMM_WORLD, &req), what);
    return CP_OK;
}

void cp_dist_get_stats(cp_dist_stats *s) { *s = stats; }
#else
typedef int cp_dist_mpi_unused; /* the build has no MPI: dist.c holds the stub */
#endif
