/*
 * rng.c — xoshiro256** (Blackman & Vigna) seeded with splitmix64; see rng.h.
 */
#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cp_rng_seed(cp_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t cp_rng_next(cp_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float cp_rng_uniform(cp_rng *rng) { return (float)(cp_rng_next(rng) >> 40) * (1.0f / 16777216.0f); }

float cp_rng_normal(cp_rng *rng) {
    double u1 = ((double)(cp_rng_next(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1] */
    double u2 = (double)(cp_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t cp_rng_below(cp_rng *rng, uint64_t n) {
    /* Lemire's nearly divisionless method would do; modulo bias is below 2^-40 for our n. */
    return n ? cp_rng_next(rng) % n : 0;
}
