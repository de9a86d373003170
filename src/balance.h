/* balance.h - ordering the usable routes of one priority, and the estimates that feed it.
 *
 * Pure: every function is a function of its arguments (the clock and the random source are
 * passed in). No locks, no globals, no I/O. routestats.c keeps the shared numbers and takes
 * snapshots of them; router.c calls lp_balance_order for each run of equal priority.
 *
 * Strategies (enum lp_strategy, config.h):
 *   latency      power of two choices: pick two routes at random, keep the cheaper one, repeat
 *                on what is left (so the whole run is ordered: the failover order too). Cost =
 *                latency x (in_flight + 1) x (1 + 3 x failures) / share. A route without a
 *                latency sample is costed at the mean of the measured ones in the run (all
 *                unmeasured: equal), so a new route gets its share at once.
 *   random       weighted shuffle by share (equal shares: the reference's uniform shuffle).
 *   round_robin  rotation of the run by a counter (the alias's, shared by all workers).
 *   weighted     weighted shuffle by weight x share; weight 0 goes last.
 *
 * Estimates: a peak-sensitive exponentially weighted moving average. A sample above the
 * current (decayed) estimate replaces it at once; a lower one is blended in with the weight
 * exp(-dt / decay). Reading decays the estimate towards 0 with the time since the last sample,
 * so a route that was slow and got no traffic since looks cheaper and cheaper until it is
 * probed again.
 */
#ifndef LP_BALANCE_H
#define LP_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One smoothed value (latency in ms, or a failure score). */
struct lp_ewma {
    double value;
    int64_t at_ms; /* monotonic time of the last update */
    uint32_t n;    /* samples seen (0: no estimate) */
};

/* Feed one latency sample x (ms) at now_ms: peak-sensitive (see above). decay_ms > 0. */
void lp_ewma_observe(struct lp_ewma *e, double x, int64_t now_ms, int64_t decay_ms);
/* An attempt ended without a first byte after x ms: its latency was at least x. Raises the
 * estimate to x when x is above it (counts as a sample then), never lowers it. */
void lp_ewma_at_least(struct lp_ewma *e, double x, int64_t now_ms, int64_t decay_ms);
/* Add v to a decaying score (failures): value = value x exp(-dt / decay) + v. */
void lp_ewma_add(struct lp_ewma *e, double v, int64_t now_ms, int64_t decay_ms);
/* The value decayed to now_ms: value x exp(-(now - at) / decay); -1 when there is no sample. */
double lp_ewma_read(const struct lp_ewma *e, int64_t now_ms, int64_t decay_ms);

/* What the balancer knows of one route at planning time. */
struct lp_balance_item {
    double latency_ms; /* decayed estimate; < 0 = no sample */
    int in_flight;     /* attempts running on the route now (every worker) */
    double failures;   /* decayed failure score */
    double share;      /* (0, 1]: the upstream's rate-limit headroom factor; 1 = no limit near */
    int weight;        /* route weight (weighted strategy) */
    int64_t cool_until_ms; /* > now: the upstream said its quota is used up until then (the
                              router treats the route as cooling; the balancer ignores it) */
};

/* The latency strategy's cost of item (fallback_latency_ms stands in for a missing sample). */
double lp_balance_cost(const struct lp_balance_item *it, double fallback_latency_ms);

/* Items ordered per run; any beyond keep their config order after them. */
#define LP_BALANCE_MAX 64

/* Order the n items of one run: writes a permutation of 0..n-1 into order (best first).
 * rng: the random source (NULL: no randomness, config order for random/weighted, lowest cost
 * first with ties in config order for latency). rr: the round-robin counter value (only
 * round_robin uses it). n <= 0 does nothing. */
void lp_balance_order(enum lp_strategy s, const struct lp_balance_item *items, size_t n,
                      uint64_t *rng, uint64_t rr, size_t *order);

#endif
