/* aimd.h - an adaptive concurrency limit for one backend (pure: time is passed in).
 *
 * Additive increase, multiplicative decrease, with a latency gradient:
 *   - an overload answer (429, 529, 503 overloaded) halves the limit, at most once per
 *     LP_AIMD_DECREASE_GAP_MS (the answers of one overload episode arrive together);
 *   - a success whose first-byte latency is more than LP_AIMD_LATENCY_FACTOR times the baseline
 *     (the lowest recent latency, drifting slowly up) shrinks it by 10% (queueing upstream),
 *     under the same gap;
 *   - any other success grows it by 1/limit (about +1 per limit successes);
 * and the limit stays within [1, max].
 */
#ifndef LP_AIMD_H
#define LP_AIMD_H

#include <stdint.h>

#define LP_AIMD_DECREASE_GAP_MS 1000
#define LP_AIMD_LATENCY_FACTOR 2.0
#define LP_AIMD_MIN_SAMPLES 10

struct lp_aimd {
    double limit;       /* current limit (the usable one is floor(limit), at least 1) */
    double max;         /* the configured limit */
    double baseline_ms; /* lowest recent latency; 0 = no sample yet */
    int samples;
    int64_t last_decrease_ms;
    uint64_t decreases, increases; /* for /admin/backends */
};

/* Start at max (>= 1). */
void lp_aimd_init(struct lp_aimd *a, int max);
/* A new configured maximum (a reload): the limit is clamped to it. */
void lp_aimd_set_max(struct lp_aimd *a, int max);
/* The usable limit: floor(limit), at least 1. */
int lp_aimd_limit(const struct lp_aimd *a);
void lp_aimd_on_overload(struct lp_aimd *a, int64_t now_ms);
void lp_aimd_on_success(struct lp_aimd *a, double latency_ms, int64_t now_ms);

#endif
