/* util/rand.h - a small, fast, non-cryptographic PRNG (splitmix64).
 *
 * Policy modules take a `uint64_t *rng` state so tests can seed them. Each worker thread owns one
 * state; nothing here is shared or locked.
 */
#ifndef LP_UTIL_RAND_H
#define LP_UTIL_RAND_H

#include <stdint.h>

/* Seed from the kernel (getrandom, non-blocking) mixed with the clock. */
void lp_rand_seed(uint64_t *state);
uint64_t lp_rand_next(uint64_t *state);
/* Uniform in [0, n); n == 0 returns 0. */
uint64_t lp_rand_below(uint64_t *state, uint64_t n);
/* Uniform in [0, 1). */
double lp_rand_unit(uint64_t *state);

#endif
