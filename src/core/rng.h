/*
 * rng.h — the seeded random stream behind every random choice cpeft makes (LoRA initialisation,
 * dropout masks, data shuffling): xoshiro256** seeded through splitmix64, so that the same seed
 * gives a bitwise-identical run. It does not reproduce PyTorch's Mersenne-Twister stream; parity
 * tests use saved tensors or deterministic properties instead (see reference/peft.md §3.4).
 */
#ifndef CP_CORE_RNG_H
#define CP_CORE_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } cp_rng;

void cp_rng_seed(cp_rng *rng, uint64_t seed);
uint64_t cp_rng_next(cp_rng *rng);
/* Uniform in [0, 1) with 24 random bits (a float's precision). */
float cp_rng_uniform(cp_rng *rng);
/* Standard normal (Box–Muller). */
float cp_rng_normal(cp_rng *rng);
/* Uniform integer in [0, n). */
uint64_t cp_rng_below(cp_rng *rng, uint64_t n);

#endif
