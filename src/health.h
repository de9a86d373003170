/* health.h - the shared, thread-safe health store: cooldowns, circuit breakers, drains.
 *
 * One store per process, shared by every worker thread. It is keyed by backend and model NAMES
 * (not config pointers or indexes), so state survives a config reload. Reads (one per planned
 * candidate, on every request) take a read lock; reports and admin actions take the write lock.
 * Critical sections are a few comparisons and copies; nothing under the lock allocates except
 * when a new (backend, model) is first seen.
 *
 * Time: every function takes the monotonic clock (lp_now_ms) for expiry; functions that expose
 * or record wall-clock times also take the wall clock (lp_wall_ms). Expiry never follows wall
 * clock jumps.
 *
 * Order of evidence. Under concurrency, attempts admitted before a backend broke keep finishing
 * after the failure was reported. Every admission hands out a ticket stamped with its start
 * time; a success only clears state that was set before its attempt started (a cooldown, or
 * the breaker's failure count), so a late success never re-opens a backend that failed since.
 *
 * Trials after a cooldown. When a pair's cooldown expires it is not simply usable again: like a
 * half-open breaker it admits at most fallback.circuit_half_open_max attempts at once (default
 * 1) until one of them succeeds; a failed trial cools it down again. So the end of a cooldown
 * never sends the whole waiting herd to a backend that may still be broken.
 *
 * State kept:
 *   - per (backend, model): cooldown expiry + class + short reason + when it was set; the trial
 *     state after it; the last error class/time;
 *   - per backend: circuit breaker (only consulted when fallback.enable_circuit_breaker), manual
 *     drain flag, the last error class/time/reason, error count.
 * The number of (backend, model) records is capped (LP_HEALTH_MAX_PAIRS); when full, the oldest
 * record without an active cooldown is recycled.
 */
#ifndef LP_HEALTH_H
#define LP_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "classify.h"
#include "config.h"
#include "router.h"

#define LP_HEALTH_MAX_PAIRS 4096

struct lp_health;

/* A new empty store (everything usable, no breaker open). Never NULL (aborts on OOM). */
struct lp_health *lp_health_create(void);
/* Free the store. NULL is ignored. No other thread may use it any more. */
void lp_health_destroy(struct lp_health *h);

/* Adopt a config snapshot's breaker settings (enabled flag, thresholds), keeping all state.
 * Call at boot and after every reload; reports and allow calls also adopt the cfg they get. */
void lp_health_configure(struct lp_health *h, const struct lp_config *cfg);

/* State of (backend b, model) at now_mono: DRAINED if the backend is drained; OPEN if breakers
 * are enabled and the backend's breaker would not admit a request (until = when it turns
 * half-open, or 0 when half-open with every probe slot taken); COOLING if the pair is cooling
 * down (until = expiry); else USABLE. cfg may be NULL (then the last configured breaker setting
 * applies). until_ms may be NULL. */
enum lp_route_state lp_health_route_state(struct lp_health *h, const struct lp_config *cfg,
                                          const struct lp_backend *b, const char *model,
                                          int64_t now_mono, int64_t *until_ms);

/* Adapter with the router's lp_route_state_fn signature; ctx is the struct lp_health *. */
enum lp_route_state lp_health_state_fn(void *ctx, const struct lp_backend *b, const char *model,
                                       int64_t now_mono, int64_t *until_ms);

/* An admission: the permission to run one attempt on (backend, model). It holds a half-open
 * breaker probe slot and/or a post-cooldown trial slot when those were needed. It must be
 * consumed exactly once by lp_health_report_success, lp_health_report_failure or
 * lp_health_release; consuming it twice does nothing (and counts a soft assertion). */
struct lp_health_ticket {
    bool held;            /* admitted and not yet consumed */
    bool breaker;         /* breakers were on: the breaker expects this outcome */
    uint32_t breaker_gen; /* the breaker's ticket (0 = admitted while closed) */
    bool trial;           /* holds the pair's post-cooldown trial slot */
    int64_t started_mono; /* admission time: orders this attempt's report against others */
};

/* Admission before an attempt on (backend, model) at now_mono: false when the backend's breaker
 * refuses (open, or half-open with every probe slot taken) or the pair is in its post-cooldown
 * trial with every slot taken; cooling/drained state is the planner's business (a caller may
 * deliberately try a cooling pair with when_all_cooling: try_soonest). On true, *t is a held
 * ticket. */
bool lp_health_admit(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                     const char *model, int64_t now_mono, struct lp_health_ticket *t);

/* The admitted attempt ended without a verdict on the backend (client gone, cancelled, lost a
 * race, could not start, local failure): frees its slots, records nothing. */
void lp_health_release(struct lp_health *h, const char *backend, const char *model,
                       struct lp_health_ticket *t);

/* A failed attempt on (backend, model), classified as d:
 *   - records the last error (class, wall time, reason) for the backend and the pair;
 *   - if d->cooldown: cools the pair down until now + d->cooldown_ms; a longer cooldown extends
 *     an existing one, a shorter one never shortens it;
 *   - if breakers are enabled: d->breaker_failure counts as a breaker failure, otherwise (the
 *     backend answered properly, e.g. a client error) as a breaker success.
 * Use it for every non-OK decision, including ones returned to the client. */
void lp_health_report_failure(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                              const char *model, const struct lp_decision *d, int64_t now_mono,
                              int64_t now_wall, struct lp_health_ticket *t);

/* A successful attempt: a breaker success; ends the pair's cooldown and trial when they were set
 * before the attempt started (evidence that it works now), never one set since. */
void lp_health_report_success(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                              const char *model, int64_t now_mono, struct lp_health_ticket *t);

/* Manual drain (admin): a drained backend is skipped by the planner until undrained. */
void lp_health_set_drained(struct lp_health *h, const char *backend, bool drained);
bool lp_health_is_drained(struct lp_health *h, const char *backend);

/* The backend's breaker state for the gauge: 0 closed (also when breakers are disabled or the
 * backend has no record yet), 1 open, 2 half-open (enum lp_breaker_state). */
int lp_health_breaker_gauge(struct lp_health *h, const char *backend, int64_t now_mono);

/* Whether the pair itself is cooling down, whatever its backend's breaker or drain state (the
 * route state reports only the highest-precedence reason). For the cooldown gauge. */
bool lp_health_pair_cooling(struct lp_health *h, const char *backend, const char *model,
                            int64_t now_mono);

/* Admin reset: end the cooldowns of backend's pairs (model NULL = all models) and, when model is
 * NULL, close its breaker. Returns how many cooldowns were ended. */
int lp_health_clear(struct lp_health *h, const char *backend, const char *model);

/* The /admin/backends view as a new heap JSON string (caller frees):
 * {"now":ISO,"breakers_enabled":bool,"backends":[{"name","enabled","drained","protocol",
 *   "breaker":{"state","consecutive_failures","half_open_successes","probes_in_flight",
 *              "times_opened","open_until_ms","open_until"},   (breaker: null when disabled)
 *   "last_error":{"class","at_ms","at","reason","count"} | null,
 *   "probe":{"down","last_ok","last_at_ms","last_at","last_duration_ms","last_reason",
 *            "passes","fails","consecutive_passes","consecutive_failures","in_flight"}
 *            (only for a backend with health_check),
 *   "models":[{"model","cooling","cooling_until_ms","cooling_until","remaining_ms","class",
 *              "reason","last_error_class","last_error_at_ms"}]}]}
 * Backends come from cfg (config order); models are the backend's configured routes plus any
 * model with recorded state. Times are Unix ms plus ISO 8601 UTC strings. */
char *lp_health_json(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono,
                     int64_t now_wall);

/* For /readyz: true when at least one route (enabled alias, enabled route, enabled backend) is
 * USABLE now. */
bool lp_health_any_usable(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono);

/* ---- active health probes (prober.h) ---- */

/* Claim the backend's next active probe at now_mono. True when one is due and no other worker
 * holds it; the caller then runs it and reports with lp_health_probe_done (or gives it back
 * with lp_health_probe_release). Due when the backend is OUT (a pair cooling down for a
 * network, timeout, server, overloaded or auth error, or waiting for its post-cooldown trial;
 * the breaker not closed; or marked down by probes) and the backend's next probe time has come;
 * or, with an idle_interval, when the last probe is that old. A claim not reported within 60 s
 * (a worker that went away) can be taken again. */
bool lp_health_probe_claim(struct lp_health *h, const struct lp_config *cfg,
                           const struct lp_backend *b, int64_t now_mono);

/* The claimed probe ended. ok: the probe passed. A pass counts towards healthy_after; once
 * reached it ends the probe-able cooldowns of the backend's pairs that were set at or before
 * started_mono (and their post-cooldown trials), closes a breaker that opened at or before it,
 * and clears `down`. A failure marks a backend that was out down at once, and a healthy one
 * after unhealthy_after consecutive failures; a down backend is not routed to (route state
 * OPEN) until a probe passes. reason: short text for /admin/backends (copied). Returns +1 when
 * the backend came back, -1 when it was marked down, 0 otherwise (for operational logs). */
int lp_health_probe_done(struct lp_health *h, const struct lp_backend *b, bool ok,
                         const char *reason, int64_t started_mono, int64_t now_mono,
                         int64_t now_wall);

/* Give a claimed probe back without a verdict (cancelled, could not start). */
void lp_health_probe_release(struct lp_health *h, const char *backend, int64_t now_mono,
                             int64_t retry_in_ms);

/* Probe counters and state of a backend, for metrics. False when it was never probed. */
struct lp_probe_stats {
    uint64_t passes, fails;
    bool down;
    int64_t last_duration_ms;
};
bool lp_health_probe_stats(struct lp_health *h, const char *backend, struct lp_probe_stats *out);

/* ---- sharing state between instances (cluster.c) ---- */

/* A change decided on this instance that other instances should learn. */
enum lp_health_event_kind {
    LP_HEALTH_EV_COOLDOWN = 1, /* (backend, model) cools down until `until_mono` */
    LP_HEALTH_EV_OPEN,         /* backend's breaker opened until `until_mono` */
    LP_HEALTH_EV_DRAIN,        /* backend drained (`drained`) or undrained */
};

struct lp_health_event {
    enum lp_health_event_kind kind;
    const char *backend;
    const char *model;     /* COOLDOWN */
    int64_t until_mono;    /* COOLDOWN, OPEN */
    enum lp_err_class cls; /* COOLDOWN */
    const char *reason;    /* COOLDOWN */
    bool drained;          /* DRAIN */
};

/* Called after every local change above (never for an applied remote one), outside the store's
 * lock, on the thread that made the change. One observer; NULL removes it. */
typedef void (*lp_health_observer_fn)(void *ctx, const struct lp_health_event *ev);
void lp_health_set_observer(struct lp_health *h, lp_health_observer_fn fn, void *ctx);

/* Apply a change another instance decided (no observer call). A cooldown only extends; an open
 * breaker only lengthens an opening (breakers enabled or not: the state is kept for when they
 * are); a drain is set as told. Returns whether anything changed. */
bool lp_health_apply_remote(struct lp_health *h, const struct lp_health_event *ev,
                            int64_t now_mono);

#endif
