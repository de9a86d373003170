/* breaker.h - pure circuit breaker state machine (clock injected, no locks, no I/O).
 *
 *   CLOSED --(failure_threshold CONSECUTIVE failures)--> OPEN
 *   OPEN --(now >= opened_at + open_timeout, on the next allow)--> HALF_OPEN
 *   HALF_OPEN: at most half_open_max probes in flight; success_threshold successes -> CLOSED;
 *              any probe failure -> OPEN again (the timer restarts).
 *
 * Tickets: lp_breaker_allow hands out a ticket that the caller passes back with the outcome.
 * Requests admitted while CLOSED get ticket 0; half-open probes get the generation number of
 * that half-open period. Outcomes of requests admitted before the breaker opened (ticket 0, or a
 * stale generation) are ignored while OPEN/HALF_OPEN: they are old evidence, and they must not
 * free or consume a probe slot that belongs to someone else.
 * The caller serialises access (the health store holds a lock around every call).
 */
#ifndef LP_BREAKER_H
#define LP_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

enum lp_breaker_state {
    LP_BREAKER_CLOSED = 0,
    LP_BREAKER_OPEN = 1,
    LP_BREAKER_HALF_OPEN = 2,
};

struct lp_breaker_cfg {
    int failure_threshold;   /* <= 0 -> 5 */
    int success_threshold;   /* <= 0 -> 2 */
    int64_t open_timeout_ms; /* <= 0 -> 60 s */
    int half_open_max;       /* <= 0 -> 1 */
};

struct lp_breaker {
    struct lp_breaker_cfg cfg;
    enum lp_breaker_state state;
    int failures;  /* consecutive counted failures while closed */
    int successes; /* probe successes in the current half-open period */
    int in_flight; /* probes admitted and not yet reported in the current half-open period */
    uint32_t gen;  /* current half-open generation (>= 1 once half-open was entered) */
    int64_t opened_at_ms;
    int64_t last_failure_ms; /* when the latest counted failure was reported (closed state) */
    uint64_t times_opened;
};

/* An active health probe that started at before_ms passed: close a breaker that opened at or
 * before that instant (a later opening is newer evidence and stays). Outstanding half-open
 * tickets become stale. Returns whether the breaker closed. */
bool lp_breaker_force_close(struct lp_breaker *b, int64_t before_ms);

/* Thresholds from the `fallback` config block (circuit_* keys). */
struct lp_breaker_cfg lp_breaker_cfg_from(const struct lp_fallback_cfg *f);

/* Start CLOSED with the given thresholds (non-positive values take the defaults above). */
void lp_breaker_init(struct lp_breaker *b, const struct lp_breaker_cfg *cfg);
/* Change thresholds (config reload) keeping the state and counters. */
void lp_breaker_reconfigure(struct lp_breaker *b, const struct lp_breaker_cfg *cfg);

/* May a request go to this backend now? CLOSED: yes (ticket 0). OPEN: no, unless the open
 * timeout has elapsed, which moves to HALF_OPEN. HALF_OPEN: yes while fewer than half_open_max
 * probes are in flight, reserving a slot (ticket = generation). On true the caller MUST later
 * call exactly one of on_success / on_failure / release with the ticket. ticket may be NULL only
 * when the caller never reports (tests). */
bool lp_breaker_allow(struct lp_breaker *b, int64_t now_ms, uint32_t *ticket);
/* started_ms: when the reporting attempt was admitted. While CLOSED a success resets the
 * consecutive failure count only if it started at or after the latest failure (older successes
 * are stale evidence). */
void lp_breaker_on_success(struct lp_breaker *b, int64_t now_ms, uint32_t ticket,
                           int64_t started_ms);
void lp_breaker_on_failure(struct lp_breaker *b, int64_t now_ms, uint32_t ticket);
/* Another instance opened this backend's breaker until until_ms (same clock as now_ms): open it
 * here too, ending at that time, unless it is already open at least as long. Returns whether
 * anything changed. Half-open probes in flight are forgotten (their reports become stale). */
bool lp_breaker_adopt_open(struct lp_breaker *b, int64_t now_ms, int64_t until_ms);
/* The admitted attempt was cancelled without an outcome: free its probe slot, count nothing. */
void lp_breaker_release(struct lp_breaker *b, uint32_t ticket);

/* The state as of now_ms without changing anything: OPEN whose timeout elapsed reads HALF_OPEN. */
enum lp_breaker_state lp_breaker_state(const struct lp_breaker *b, int64_t now_ms);
/* Would lp_breaker_allow admit a request now? (Read-only; for planning.) */
bool lp_breaker_would_allow(const struct lp_breaker *b, int64_t now_ms);
/* When an OPEN breaker turns half-open (opened_at + open_timeout); 0 when not OPEN. */
int64_t lp_breaker_open_until(const struct lp_breaker *b);
/* "closed" | "open" | "half_open". */
const char *lp_breaker_state_name(enum lp_breaker_state s);

#endif
