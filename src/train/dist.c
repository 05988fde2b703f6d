/*
 * dist.c — what distributed training needs in every build (see dist.h): the shard of a global batch
 * each rank runs (accelerate's even_batches rule), the configuration hash, and, when the build has no
 * MPI (CP_WITH_MPI unset), the single-process stub of the whole interface: size 1, rank 0, every
 * reduction the identity. The MPI implementation is dist_mpi.c.
 */
#include "train/dist.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t cp_dist_stream_index(int64_t p, int64_t n, int64_t N, int64_t b) {
    if (p < n) return p;
    /* accelerate gathers the first N batches' indices (initial_data), doubles the list until it
     * holds N·b and fills the incomplete batches from its start, in order */
    const int64_t first = N * b < n ? N * b : n;
    return (p - n) % first;
}

int64_t cp_dist_batches_per_rank(int64_t n, int64_t N, int64_t b) {
    const int64_t batches = (n + b - 1) / b;
    return (batches + N - 1) / N;
}

uint64_t cp_dist_hash(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint64_t cp_dist_hash_str(uint64_t h, const char *s) {
    /* NULL and "" differ: a flag given empty is not a flag left out */
    if (!s) return cp_dist_hash(h, "\xff", 1);
    return cp_dist_hash(h, s, strlen(s) + 1);
}

#ifndef CP_WITH_MPI

cp_status cp_dist_init(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return CP_OK;
}
void cp_dist_finalize(void) {}
int cp_dist_rank(void) { return 0; }
int cp_dist_size(void) { return 1; }
const char *cp_dist_backend(void) { return "none"; }

const char *cp_dist_host(void) {
    static char host[256];
    if (!host[0] && gethostname(host, sizeof host - 1) != 0) strcpy(host, "?");
    return host;
}

cp_status cp_dist_agree(cp_status st) { return st; }
int cp_dist_failure_agreed(void) { return 0; }
_Noreturn void cp_dist_abort(int code) { exit(code); }
cp_status cp_dist_sum_f64(double *buf, int n, const char *what) { return CP_OK; }
cp_status cp_dist_any(int flag, int *any, const char *what) {
    *any = flag != 0;
    return CP_OK;
}
cp_status cp_dist_sum_grads(cp_param **params, int n) { return CP_OK; }
cp_status cp_dist_gather_u64(uint64_t value, uint64_t *out, const char *what) {
    out[0] = value;
    return CP_OK;
}
cp_status cp_dist_broadcast(void *buf, size_t bytes, const char *what) { return CP_OK; }
cp_status cp_dist_barrier(const char *what) { return CP_OK; }
void cp_dist_get_stats(cp_dist_stats *s) { memset(s, 0, sizeof *s); }

#endif
