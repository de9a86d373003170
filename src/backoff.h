/* backoff.h - pure exponential backoff between attempts of one request.
 *
 * delay(n) = initial * multiplier^(n-1), capped at max, then +/- jitter * delay uniformly
 * (the reference's formula; defaults 100 ms, x2, cap 5 s, +/-10%: ~100, 200, 400, ... 5000 ms).
 * The jitter is applied after the cap, so a capped delay may exceed max by up to jitter * max:
 * this keeps concurrent requests that all reached the cap from retrying in lockstep.
 */
#ifndef LP_BACKOFF_H
#define LP_BACKOFF_H

#include <stdint.h>

#include "config.h"

/* Delay in ms to wait before the next attempt. `attempt` counts failed attempts so far: 1 = the
 * wait before the 2nd attempt. Returns 0 when f is NULL, enable_backoff is false, attempt < 1 or
 * the initial delay is <= 0. A multiplier < 1 is treated as 1; a jitter outside [0,1] as 0.1;
 * rng NULL means no jitter. Never negative; saturates instead of overflowing. */
int64_t lp_backoff_delay_ms(const struct lp_fallback_cfg *f, int attempt, uint64_t *rng);

#endif
