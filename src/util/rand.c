#include "util/rand.h"

#include <sys/random.h>
#include <time.h>

void lp_rand_seed(uint64_t *state)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *state = s ^ ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
             (uint64_t)(uintptr_t)state;
}

uint64_t lp_rand_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t lp_rand_below(uint64_t *state, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection sampling removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do {
        r = lp_rand_next(state);
    } while (r >= limit);
    return r % n;
}

double lp_rand_unit(uint64_t *state)
{
    return (double)(lp_rand_next(state) >> 11) * (1.0 / 9007199254740992.0);
}
