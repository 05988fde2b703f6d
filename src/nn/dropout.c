/*
 * dropout.c — dropout masks from (site key, row, column); see dropout.h. The per-element draw is the
 * kernel cp_dropout_row (kernels/vector.c, vectorised per instruction set); here only the keys.
 */
#include "nn/dropout.h"
#include "kernels/vector.h"

#include <math.h>

/* splitmix64's finaliser: a bijection of 64-bit words that mixes every bit into every other. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* FNV-1a of a name: stable across runs, builds and machines. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

cp_dropout cp_dropout_site(double p, uint64_t seed, const char *name, uint64_t call) {
    /* "model dropout" in the first mix keeps these keys apart from LoRA's (peft/lora.c) */
    const uint64_t site = mix64(name_hash(name) + 0x6d6f64656c64726full * (call + 1));
    cp_dropout d = {.p = p > 0 ? p : 0.0, .key = mix64(seed ^ site) ^ site};
    return d;
}

/* The key of row r: every row draws from its own hash, so rows are independent. */
static inline uint64_t row_key(const cp_dropout *d, int64_t r) {
    return mix64(d->key + 0x9e3779b97f4a7c15ull * (uint64_t)r);
}

/* The drop threshold on the 32-bit draw and the survivors' scale 1/(1−p); p ≥ 1 drops all (scale 0). */
static void mask_params(const cp_dropout *d, uint32_t *threshold, float *scale) {
    if (d->p >= 1.0) { *threshold = 0; *scale = 0.0f; return; }
    const double t = nearbyint(d->p * 4294967296.0);
    *threshold = t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
    *scale = (float)(1.0 / (1.0 - d->p)); /* torch: 1 / (1 - p) from the double p */
}

int64_t cp_dropout_batch_shift(const cp_dropout *d, int64_t rows) {
    if (!d || d->batch_rows <= 0 || rows % d->batch_rows) return 0;
    return d->batch_row0 * (rows / d->batch_rows);
}

void cp_dropout_apply_row(const cp_dropout *d, float *y, const float *x, int64_t row, int64_t j0, int64_t n) {
    if (!cp_dropout_on(d)) {
        for (int64_t j = 0; j < n && y != x; j++) y[j] = x[j];
        return;
    }
    uint32_t threshold;
    float scale;
    mask_params(d, &threshold, &scale);
    cp_dropout_row(y, x, n, row_key(d, row), j0, threshold, scale);
}

void cp_dropout_apply(const cp_dropout *d, float *y, const float *x, int64_t row0, int64_t rows, int64_t n) {
    if (!cp_dropout_on(d)) {
        for (int64_t i = 0; i < rows * n && y != x; i++) y[i] = x[i];
        return;
    }
    uint32_t threshold;
    float scale;
    mask_params(d, &threshold, &scale);
    if (row0 == 0) row0 = cp_dropout_batch_shift(d, rows); /* a batch site: the global batch's rows */
#pragma omp parallel for schedule(static) if (rows * n > 65536)
    for (int64_t r = 0; r < rows; r++) cp_dropout_row(y + r * n, x + r * n, n, row_key(d, row0 + r), 0, threshold, scale);
}
