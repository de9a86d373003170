/* routestats.h - the shared numbers the balancer decides on, one store per process.
 *
 * Per route (backend, model): the latency estimates (time to response head for non-stream
 * answers, time to first event for streams: lp_ewma, balance.h), the attempts in flight (an
 * atomic), a decaying failure score and the upstream's rate-limit reading (quota.h). Per alias:
 * the round-robin counter.
 *
 * Keyed by NAMES, like the health store, so the numbers survive a config reload. Entries are
 * never freed while the store lives, so a planned candidate keeps its entry pointer for the
 * rest of its request (no second lookup). Thread-safe without a store-wide lock on the request
 * path: lookups go through fixed open-addressing tables of atomic pointers (entries are added
 * under the store's mutex and published with a release store, never removed); each route's
 * estimates and each alias's hedge budget and window have their own mutex, held for a few
 * arithmetic operations; the in-flight count and the round-robin counter are relaxed atomics.
 *
 * Time: monotonic milliseconds passed in by the caller; decay_ms is the alias's routing.decay.
 */
#ifndef LP_ROUTESTATS_H
#define LP_ROUTESTATS_H

#include <stdbool.h>
#include <stdint.h>

#include "balance.h"
#include "hedge.h"
#include "config.h"

/* Entries kept at most; past it, new routes get no entry (the balancer treats them as
 * unmeasured). */
#define LP_ROUTESTATS_MAX 4096
/* How long a rate-limit reading without a reset time counts (and the cap for one with it). */
#define LP_ROUTESTATS_QUOTA_VALID_MS 60000

struct lp_quota_reading;

struct lp_routestats;
struct lp_routestat;
struct lp_route_alias; /* per alias: round robin, hedge budget and time-to-first-event window */

/* A new empty store. Never NULL (aborts on OOM). */
struct lp_routestats *lp_routestats_create(void);
/* Free the store and every entry. NULL is ignored. No other thread may use it any more. */
void lp_routestats_destroy(struct lp_routestats *s);

/* The entry of (backend, model), created on first sight; NULL when the store is full or an
 * argument is NULL. The pointer stays valid until the store is destroyed. */
struct lp_routestat *lp_routestats_get(struct lp_routestats *s, const char *backend,
                                       const char *model);

/* What the balancer needs of entry e at now_ms (stream: which latency estimate): the decayed
 * estimates, the in-flight count, the share from the last rate-limit reading while it is valid
 * (lp_quota_share) and the end of a quota rest. e NULL gives an unmeasured item with share 1.
 * The weight is the caller's. */
void lp_routestats_item(struct lp_routestats *s, struct lp_routestat *e, bool stream,
                        int64_t now_ms, int64_t decay_ms, struct lp_balance_item *out);

/* An attempt starts on / is over on e (in-flight count). NULL is ignored. */
void lp_routestats_begin(struct lp_routestat *e);
void lp_routestats_end(struct lp_routestat *e);

/* Evidence from an attempt on e (NULL is ignored):
 *   latency: its first event (stream) or response head (non-stream) came after ms;
 *   silent:  it ended after ms without either (counts as "at least ms");
 *   failure: it failed in a way that blames the backend. */
void lp_routestats_latency(struct lp_routestats *s, struct lp_routestat *e, bool stream, double ms,
                           int64_t now_ms, int64_t decay_ms);
void lp_routestats_silent(struct lp_routestats *s, struct lp_routestat *e, bool stream, double ms,
                          int64_t now_ms, int64_t decay_ms);
void lp_routestats_failure(struct lp_routestats *s, struct lp_routestat *e, int64_t now_ms,
                           int64_t decay_ms);

/* A usable answer on e carried rate-limit headers (q, quota.h): remaining 0 rests the route
 * until the reset (now_ms + q->reset_ms; a later answer never shortens a rest); otherwise the
 * headroom counts until its reset (1 s .. LP_ROUTESTATS_QUOTA_VALID_MS; that long without a
 * reset). A reading that saw nothing changes nothing. */
void lp_routestats_quota(struct lp_routestats *s, struct lp_routestat *e,
                         const struct lp_quota_reading *q, int64_t now_ms);

/* The next value of alias's round-robin counter (shared by every worker); 0 for an alias the
 * store cannot hold. */
uint64_t lp_routestats_rr_next(struct lp_routestats *s, const char *alias);

/* The per-alias entry (created on first sight; NULL when full or on NULL arguments). Valid until
 * the store is destroyed. */
struct lp_route_alias *lp_routestats_alias(struct lp_routestats *s, const char *alias);
/* Hedging (hedge.h) on alias entry a (NULL: credit/ttft do nothing, take refuses):
 * credit: a request that may be hedged arrived; take: one hedge wants a token;
 * ttft: a successful time to first event / response head (the pNN window);
 * delay: the delay before a hedge under h now. */
void lp_routestats_hedge_credit(struct lp_routestats *s, struct lp_route_alias *a,
                                int budget_percent);
bool lp_routestats_hedge_take(struct lp_routestats *s, struct lp_route_alias *a);
void lp_routestats_ttft(struct lp_routestats *s, struct lp_route_alias *a, double ms);
int64_t lp_routestats_hedge_delay(struct lp_routestats *s, struct lp_route_alias *a,
                                  const struct lp_hedge_cfg *h);
/* The alias's hedge tokens now (LP_HEDGE_BUDGET_START before its first request). */
double lp_routestats_hedge_tokens(struct lp_routestats *s, const char *alias);

/* One route's numbers for the admin view and metrics. */
struct lp_routestat_view {
    double latency_ms[2]; /* [0] non-stream (head), [1] stream (first event); -1 = none */
    uint32_t samples[2];
    int in_flight;
    double failure_score;
    double headroom;          /* the valid rate-limit reading, -1 when none */
    int64_t cooling_until_ms; /* quota used up until then (monotonic), 0 when not */
};
/* Read entry (backend, model) without creating it, decayed with the routing.decay of its last
 * update; false when it has no entry. */
bool lp_routestats_view(struct lp_routestats *s, const char *backend, const char *model,
                        int64_t now_ms, struct lp_routestat_view *out);

/* Add the balancer's numbers to the /admin/backends JSON (health_json, heap, taken over): each
 * backend's models[i] gets "balancer": {"latency_ms":{"head","first_event"},"samples":{...},
 * "in_flight","failure_score","ratelimit_headroom","ratelimit_exhausted"
 * [,"ratelimit_reset_in_ms"]},
 * and the root gets "routing": {"strategy","decay_ms","hedge",
 * "aliases":{name:{"strategy",...}}}. Returns the new heap string (the input is freed), or the
 * input unchanged when it does not parse. */
char *lp_routestats_backends_json(struct lp_routestats *s, const struct lp_config *cfg,
                                  char *health_json, int64_t now_ms);

/* The effective routing of one alias (or the top level) as a JSON object (config views). */
struct json_object;
struct json_object *lp_routing_cfg_json(const struct lp_routing_cfg *r);

#endif
