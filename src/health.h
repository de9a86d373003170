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
 * State kept:
 *   - per (backend, model): cooldown expiry + class + short reason; the last error class/time;
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

/* Admission through the backend's circuit breaker before an attempt. Always true when breakers
 * are disabled in cfg. When it returns true (breakers enabled), the caller must later call
 * exactly one of lp_health_report_success, lp_health_report_failure or lp_health_release for
 * the same backend. Calling release/report after a false is harmless but wrong. */
bool lp_health_breaker_allow(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                             int64_t now_mono);

/* The admitted attempt was cancelled before an outcome (client gone, could not start): frees a
 * half-open probe slot, records nothing. */
void lp_health_release(struct lp_health *h, const char *backend);

/* A failed attempt on (backend, model), classified as d:
 *   - records the last error (class, wall time, reason) for the backend and the pair;
 *   - if d->cooldown: cools the pair down until now + d->cooldown_ms; a longer cooldown extends
 *     an existing one, a shorter one never shortens it;
 *   - if breakers are enabled: d->breaker_failure counts as a breaker failure, otherwise (the
 *     backend answered properly, e.g. a client error) as a breaker success.
 * Use it for every non-OK decision, including ones returned to the client. */
void lp_health_report_failure(struct lp_health *h, const struct lp_config *cfg,
                              const char *backend, const char *model, const struct lp_decision *d,
                              int64_t now_mono, int64_t now_wall);

/* A successful attempt: breaker success; ends a cooldown of the pair (evidence it works). */
void lp_health_report_success(struct lp_health *h, const struct lp_config *cfg,
                              const char *backend, const char *model, int64_t now_mono);

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
 *   "models":[{"model","cooling","cooling_until_ms","cooling_until","remaining_ms","class",
 *              "reason","last_error_class","last_error_at_ms"}]}]}
 * Backends come from cfg (config order); models are the backend's configured routes plus any
 * model with recorded state. Times are Unix ms plus ISO 8601 UTC strings. */
char *lp_health_json(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono,
                     int64_t now_wall);

/* For /readyz: true when at least one route (enabled alias, enabled route, enabled backend) is
 * USABLE now. */
bool lp_health_any_usable(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono);

#endif
