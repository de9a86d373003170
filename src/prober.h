/* prober.h - active health probes of backends, run on a worker's loop.
 *
 * Every worker loop has one prober. A timer ticks a few times a second; at each tick the prober
 * asks the shared health store (health.h) to claim the due probe of each backend that has a
 * `health_check:`; the store hands a due probe to exactly one worker. The claimed probe is a
 * plain GET of the backend's health path with the backend's credential headers, on the
 * worker's upstream client (never blocking the loop), bounded by health_check.timeout. A 2xx
 * answer passes; anything else fails. The outcome goes back to the store, which ends cooldowns
 * and closes breakers (pass) or marks the backend down (fail). Probes never go through the
 * request core: they are not client traffic, not counted in request metrics, and never take a
 * breaker or trial slot.
 */
#ifndef LP_PROBER_H
#define LP_PROBER_H

#include <event2/event.h>

struct lp_prober;
struct lp_runtime;
struct lp_upstream;

/* A prober on base, using up for its transfers. Starts ticking at once. */
struct lp_prober *lp_prober_create(struct event_base *base, struct lp_upstream *up,
                                   struct lp_runtime *rt, int worker_idx);

/* Stop ticking (drain); probes in flight finish. NULL is accepted. */
void lp_prober_stop(struct lp_prober *p);

/* Cancel the probes in flight (their claims are given back) and free everything. Call before
 * the upstream client is destroyed. NULL is accepted. */
void lp_prober_destroy(struct lp_prober *p);

/* The URL a backend's probe GETs (heap string), for tests and docs. */
struct lp_backend;
char *lp_prober_url(const struct lp_backend *b);

#endif
