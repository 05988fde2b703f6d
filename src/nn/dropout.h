/*
 * dropout.h — nn.Dropout in training mode: y = x·mask/(1−p), each mask element 0 with probability p,
 * and its backward, which is the same product on the gradient (dx = dy·mask/(1−p)).
 *
 * A dropout site is one application of a Dropout in one forward: its probability p and a 64-bit key
 * (cp_dropout_site: the step's seed mixed with a stable name of the site, e.g. the module path, and
 * which application it is). The mask of a site is a pure function of (key, element): element (r, j)
 * of a site seen as rows of n elements keeps when a counter-based hash of (key, r, j) is above p·2³²
 * (kernels/vector.h, cp_dropout_row). There is no stream to advance, so
 *   - the backward regenerates the forward's mask instead of storing it (no float or bit masks kept),
 *     and a recomputed forward (gradient checkpointing) draws the same masks again;
 *   - any block of a site can be drawn alone: attention draws a query row's mask over just the keys
 *     it sees, in whatever order its threads run;
 *   - masks depend on (seed, step, site) and never on what ran before: a resumed run draws the same
 *     masks as the run that was not stopped.
 * The masks are not PyTorch's (its Philox / Mersenne streams): the same statistics, not the same bits.
 *
 * A cp_dropout with p = 0 is the identity (eval mode, a site switched off, nn.Dropout(0)); p ≥ 1
 * zeroes, as torch does (input·0).
 */
#ifndef CP_NN_DROPOUT_H
#define CP_NN_DROPOUT_H

#include <stdint.h>

typedef struct cp_dropout {
    double p;     /* drop probability; 0: identity */
    uint64_t key; /* the site's key (cp_dropout_site) */
    /* A batch site (data parallelism, train/dist.h): its rows are batch_rows equal blocks, one per
     * batch row of this call, and this call's batch row 0 is row batch_row0 of the global batch that
     * one process would run. Its masks are the global batch's: the site's rows are keyed from
     * batch_row0 · (rows per batch row) on. batch_rows = 0 (the default): the rows are keyed as they
     * are (a site that is not the batch's, e.g. DeBERTa's relative embeddings). With batch_row0 = 0
     * the keys are the same either way. */
    int64_t batch_row0, batch_rows;
} cp_dropout;

/* The site `name` (a module path), application `call` of it in this forward, under the step's seed. */
cp_dropout cp_dropout_site(double p, uint64_t seed, const char *name, uint64_t call);

static inline int cp_dropout_on(const cp_dropout *d) { return d && d->p > 0; }

/* y (rows,n) = x·mask/(1−p), the site seen as rows of n elements, its rows row0.. row0+rows−1;
 * y may equal x. The backward is the same call on the gradient. Threads over rows when large. A
 * batch site (batch_rows > 0) is applied whole: row0 = 0 and rows = all of its rows. */
void cp_dropout_apply(const cp_dropout *d, float *y, const float *x, int64_t row0, int64_t rows, int64_t n);

/* The key offset of a batch site of `rows` rows in all: batch_row0 · rows / batch_rows (0 for a site
 * that is not the batch's). cp_dropout_apply adds it itself; callers of cp_dropout_apply_row add it
 * to their row numbers (attention: rows = B·heads·T). */
int64_t cp_dropout_batch_shift(const cp_dropout *d, int64_t rows);

/* The same site keyed as it is (batch_rows = 0): for rows that are not the batch's. */
static inline cp_dropout cp_dropout_unbatched(cp_dropout d) {
    d.batch_row0 = d.batch_rows = 0;
    return d;
}

/* One stretch of one row: y[j] = x[j]·mask(row, j0 + j)/(1−p) for j < n (y may equal x). */
void cp_dropout_apply_row(const cp_dropout *d, float *y, const float *x, int64_t row, int64_t j0, int64_t n);

#endif
