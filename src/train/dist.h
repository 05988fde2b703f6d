/*
 * dist.h — data-parallel training across processes (MPI ranks started by mpirun or srun): the one
 * interface the trainer and `cpeft train` use, implemented with Open MPI in dist_mpi.c when the
 * build found it (CP_WITH_MPI) and by the single-process stub in dist.c otherwise. Nothing else in
 * cpeft includes mpi.h. See docs/distributed.md.
 *
 * The design is the Hugging Face Trainer's under DDP: every rank holds the whole (frozen,
 * memory-mapped) model and the same adapter; the global batch is N ranks × per-device batch ×
 * accumulation; each rank runs its shard of every global batch; once per optimizer step the LoRA
 * gradients (one flat f32 buffer) are summed with one all-reduce, and clipping and AdamW then run
 * identically on every rank. Rank 0 alone writes (logs, metrics, checkpoints, the final adapter).
 *
 * Failure rules: every collective call here has a deadline (CPEFT_DIST_TIMEOUT seconds, default
 * 600): a rank that died or hangs makes the others print which operation timed out and abort the job
 * (MPI_Abort) rather than wait forever. MPI's own errors are returned (MPI_ERRORS_RETURN), reported
 * by name and end the job the same way. A failure that every rank learns of together (cp_dist_agree)
 * is an ordinary error; any other failure on one rank must end the job (cp_dist_abort).
 *
 * Without mpirun / srun (no launcher variables in the environment) nothing of MPI is touched: size
 * 1, rank 0, every reduction is the identity, and the program is the single-process cpeft.
 */
#ifndef CP_TRAIN_DIST_H
#define CP_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "nn/module.h"

/* Starts MPI when the process was launched by mpirun / srun (MPI_Init_thread, funneled). Safe to
 * call more than once; without MPI in the build, or not launched, it does nothing. */
cp_status cp_dist_init(int *argc, char ***argv);
/* MPI_Finalize when cp_dist_init started MPI. */
void cp_dist_finalize(void);
int cp_dist_rank(void);
int cp_dist_size(void);
/* "Open MPI v4.1.4" (the library's version string's first line), or "none". */
const char *cp_dist_backend(void);
/* This host's name (MPI_Get_processor_name, else gethostname). */
const char *cp_dist_host(void);

/* Collective. All ranks pass their own status; every rank returns CP_ERR when any rank failed, with
 * the message of the lowest failing rank ("rank R (host): ..."). Marks the failure as agreed. */
cp_status cp_dist_agree(cp_status st);
/* Whether the last error came through cp_dist_agree (every rank has it; rank 0 reports it). */
int cp_dist_failure_agreed(void);
/* Ends the whole job after a failure only this rank knows of (MPI_Abort; exit(code) without MPI). */
_Noreturn void cp_dist_abort(int code);

/* Collective sums in place, over all ranks; `what` names the operation in a timeout message. */
cp_status cp_dist_sum_f64(double *buf, int n, const char *what);
/* Nonzero on every rank when `flag` is nonzero on any. */
cp_status cp_dist_any(int flag, int *any, const char *what);
/* The trained parameters' gradients, summed over ranks through one flat f32 buffer (packed in
 * parameter order, one MPI_Allreduce, unpacked). Time and bytes are counted (cp_dist_stats). */
cp_status cp_dist_sum_grads(cp_param **params, int n);
/* Every rank's `value` (n_ranks entries, rank order) into out. */
cp_status cp_dist_gather_u64(uint64_t value, uint64_t *out, const char *what);
/* Rank 0's bytes to every rank (a probe file's contents, a name). */
cp_status cp_dist_broadcast(void *buf, size_t bytes, const char *what);
/* A barrier with the deadline. */
cp_status cp_dist_barrier(const char *what);

typedef struct {
    int64_t reductions;     /* gradient all-reduces done */
    double seconds;         /* their wall time, packing included */
    double wait_seconds;    /* with CPEFT_DIST_PROFILE=1: the time spent waiting for the slowest rank
                               before them (else 0, and `seconds` includes that wait) */
    int64_t bytes;          /* the flat buffer's size (one reduction) */
} cp_dist_stats;
void cp_dist_get_stats(cp_dist_stats *s);

/* ---- pure functions (both builds; tests/unit/test_dist.c) ------------------------------------------ */

/* The example at position p of the epoch's stream when N ranks take batches of b: accelerate's
 * BatchSamplerShard with even_batches (the Hugging Face Trainer's default under DDP). Batch k of the
 * epoch is stream positions [k·b, k·b + b) and rank r runs batches r, r + N, r + 2N, ...; past the
 * n examples the stream starts again from the epoch's beginning (the first min(N·b, n) positions,
 * repeated), so the last global batch is full on every rank. Returns the index into the epoch's
 * order (0 ≤ result < n). */
int64_t cp_dist_stream_index(int64_t p, int64_t n, int64_t N, int64_t b);
/* Micro-batches per rank in an epoch: ceil(ceil(n / b) / N) (N = 1: ceil(n / b)). */
int64_t cp_dist_batches_per_rank(int64_t n, int64_t N, int64_t b);

/* FNV-1a 64 over bytes, chained from h (start with CP_DIST_HASH0): the configuration's fingerprint. */
#define CP_DIST_HASH0 0xcbf29ce484222325ull
uint64_t cp_dist_hash(uint64_t h, const void *data, size_t n);
uint64_t cp_dist_hash_str(uint64_t h, const char *s);

#endif
