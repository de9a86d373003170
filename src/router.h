/* router.h - the planner: alias -> ordered list of candidate routes.
 *
 * Pure: a function of (config snapshot, injected health lookup, clock value, rng). No I/O, no
 * globals, no locks of its own. The attempt loop walks the returned list in order.
 *
 * Order: L1 = the alias's own routes (enabled route on an enabled backend), sorted by priority
 * ascending. Priorities are strict: inside each run of equal priority, the usable routes (after
 * the protocol, duplicate and health filters) are ordered by the alias's routing.strategy
 * (balance.h) from the numbers load_fn reports, so traffic spreads inside a priority level. A
 * route whose upstream reported its quota used up (load_fn's cool_until_ms after now) counts as
 * COOLING until then. Then L2 = for each name in alias->fallbacks (config order), that alias's
 * plan, recursively and depth-first; an alias is expanded at most once per plan, which also breaks
 * cycles (a -> b -> a). A (backend, model) pair appears at most once (first occurrence wins).
 */
#ifndef LP_ROUTER_H
#define LP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance.h"
#include "config.h"

struct lp_dialect;

enum lp_route_state {
    LP_ROUTE_USABLE = 0,
    LP_ROUTE_COOLING = 1,
    LP_ROUTE_OPEN = 2,    /* the backend's circuit breaker is open */
    LP_ROUTE_DRAINED = 3, /* an operator drained the backend */
};

/* Health lookup injected by the caller: state of (backend, model) at now_ms; for COOLING/OPEN it
 * sets *until_ms (same clock as now_ms) when known, else leaves it 0. ctx is opaque. */
typedef enum lp_route_state (*lp_route_state_fn)(void *ctx, const struct lp_backend *b,
                                                 const char *model, int64_t now_ms,
                                                 int64_t *until_ms);

/* Balancer lookup injected by the caller: fills *out with what is known of route (b, model) at
 * now_ms (stream: which latency estimate) and returns an opaque handle the candidate keeps
 * (routestats.h's entry; may be NULL). The weight is the router's business. */
typedef void *(*lp_route_load_fn)(void *ctx, const struct lp_backend *b, const char *model,
                                  bool stream, int64_t now_ms, int64_t decay_ms,
                                  struct lp_balance_item *out);
/* The alias's next round-robin counter value (shared by every worker). */
typedef uint64_t (*lp_route_rr_fn)(void *ctx, const struct lp_alias *alias);

struct lp_candidate {
    const struct lp_alias *alias; /* the alias this route belongs to (requested or L2) */
    const struct lp_route *route;
    const struct lp_backend *backend;
    enum lp_proto protocol;           /* effective: route override > backend protocol */
    const struct lp_dialect *dialect; /* effective dialect (its wire is `protocol`) */
    bool level2;                      /* came from alias_fallback */
    enum lp_route_state state;        /* USABLE unless kept by include_unusable */
    int64_t until_ms;                 /* for COOLING/OPEN when known, else 0 */
    void *stat;                       /* load_fn's handle for this route (NULL without one) */
};

struct lp_plan_opts {
    enum lp_proto client_proto;
    bool allow_cross_protocol;  /* false: routes of another effective protocol are skipped */
    lp_route_state_fn state_fn; /* NULL: everything is usable */
    void *state_ctx;
    int64_t now_ms;
    uint64_t *rng;            /* shuffle source; NULL: no shuffle (config order in a run) */
    bool include_unusable;    /* keep COOLING/OPEN candidates after the usable ones */
    lp_route_load_fn load_fn; /* NULL: every route unmeasured (latency: random among equals) */
    lp_route_rr_fn rr_fn;     /* NULL: round_robin starts at the first route */
    void *load_ctx;           /* passed to load_fn and rr_fn */
    bool stream;              /* the client asked for a stream (which latency counts) */
};

struct lp_plan_info {
    /* Counters over the whole plan (not limited by max). Unusable candidates are counted in
     * skipped_cooling/open/drained even when include_unusable keeps them in the list. */
    size_t skipped_disabled; /* disabled route, or route on a disabled/missing backend */
    size_t skipped_protocol;
    size_t skipped_cooling;
    size_t skipped_open;
    size_t skipped_drained;
    size_t skipped_duplicate;
    size_t n_usable;          /* usable candidates found (may exceed the returned count) */
    size_t n_total;           /* candidates that would be returned with an unlimited max */
    int64_t soonest_until_ms; /* min until_ms over cooling/open candidates, 0 if none known */
};

/* Plan the ordered candidates for `alias` (already looked up and enabled; the caller answers an
 * unknown/disabled alias itself). Disabled or unknown fallback aliases are skipped silently.
 * Candidates whose state is COOLING/OPEN/DRAINED are filtered out and counted. With
 * include_unusable, COOLING/OPEN ones are kept but placed after every usable one, ordered by
 * until_ms ascending (unknown expiry last, then plan order); DRAINED ones are never kept, since a
 * drain is an operator decision, not a transient fault.
 * Writes up to `max` candidates into out (pointers borrow from cfg) and returns how many were
 * written. info may be NULL. Returns 0 on NULL cfg/alias/opts. */
size_t lp_router_plan(const struct lp_config *cfg, const struct lp_alias *alias,
                      const struct lp_plan_opts *opts, struct lp_candidate *out, size_t max,
                      struct lp_plan_info *info);

/* The attempt cap for a request with n_candidates planned candidates.
 * max_retries caps the RETRIES after the first attempt: attempts <= max_retries + 1. A value <= 0
 * (or absent) means "no cap": every candidate is tried once, which keeps the reference example's
 * intent (`max_retries: 0  # no retry, switch to other backends immediately`). The result never
 * exceeds n_candidates (a candidate is tried at most once) and is never negative. */
int lp_plan_max_attempts(const struct lp_fallback_cfg *f, size_t n_candidates);

#endif
