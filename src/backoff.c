/* backoff.c - see backoff.h. */
#include "backoff.h"

#include <math.h>

#include "util/rand.h"

/* Upper bound on any delay, far above every sane config, so the double -> int64 cast is safe. */
#define BACKOFF_CEILING_MS 86400000.0

int64_t lp_backoff_delay_ms(const struct lp_fallback_cfg *f, int attempt, uint64_t *rng)
{
    if (!f || !f->enable_backoff || attempt < 1 || f->backoff_initial_ms <= 0)
        return 0;
    double mult = isfinite(f->backoff_multiplier) && f->backoff_multiplier >= 1.0
                      ? f->backoff_multiplier
                      : 1.0;
    double cap = f->backoff_max_ms > 0 ? (double)f->backoff_max_ms : BACKOFF_CEILING_MS;
    if (cap > BACKOFF_CEILING_MS)
        cap = BACKOFF_CEILING_MS;
    /* pow() of a large attempt overflows to inf, which the cap then absorbs. */
    double d = (double)f->backoff_initial_ms * pow(mult, (double)(attempt - 1));
    if (!(d <= cap))
        d = cap;
    double jitter = f->backoff_jitter >= 0.0 && f->backoff_jitter <= 1.0 ? f->backoff_jitter : 0.1;
    if (rng && jitter > 0.0)
        d += d * jitter * (2.0 * lp_rand_unit(rng) - 1.0);
    if (d < 0.0)
        d = 0.0;
    return (int64_t)llround(d);
}
