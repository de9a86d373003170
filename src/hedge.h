/* hedge.h - when to start a second attempt alongside a silent first one: the budget and the
 * delay.
 *
 * Pure: plain structs and arithmetic; routestats.c keeps one budget and one window per alias
 * under its lock, forward.c decides with them.
 *
 * Budget: a token bucket per alias. It starts with 1 token; every request that could be hedged
 * adds budget_percent / 100 of a token (at most LP_HEDGE_BUDGET_CAP); a hedge takes a whole
 * token. So over time hedges stay under budget_percent of the requests, and a burst of stalls
 * can hedge at most a few requests beyond that.
 *
 * Delay: fixed (hedge.delay: 500ms), or the pNN of the alias's last LP_HEDGE_WINDOW successful
 * times to first event / response head (hedge.delay: p95). With fewer than LP_HEDGE_MIN_SAMPLES
 * measurements the fixed delay_ms (default 500 ms) stands in.
 */
#ifndef LP_HEDGE_H
#define LP_HEDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define LP_HEDGE_BUDGET_START 1.0
#define LP_HEDGE_BUDGET_CAP 3.0
#define LP_HEDGE_WINDOW 128
#define LP_HEDGE_MIN_SAMPLES 20

struct lp_hedge_budget {
    double tokens;
    bool started; /* zeroed struct = a fresh bucket holding LP_HEDGE_BUDGET_START */
};

/* A request that may be hedged arrived: budget_percent / 100 of a token (cap applies). */
void lp_hedge_budget_credit(struct lp_hedge_budget *b, int budget_percent);
/* Take a token for one hedge; false (nothing taken) when less than one is there. */
bool lp_hedge_budget_take(struct lp_hedge_budget *b);

/* The last LP_HEDGE_WINDOW measurements (ms) of an alias. */
struct lp_hedge_window {
    float v[LP_HEDGE_WINDOW];
    uint32_t n;    /* filled entries (<= LP_HEDGE_WINDOW) */
    uint32_t next; /* where the next one goes */
};

void lp_hedge_window_add(struct lp_hedge_window *w, double ms);
/* The pct-th percentile (nearest rank) of the window; false with fewer than
 * LP_HEDGE_MIN_SAMPLES entries. */
bool lp_hedge_window_pct(const struct lp_hedge_window *w, int pct, double *ms);

/* The delay before a hedge for hedge config h and the alias's window w (see above), >= 1 ms. */
int64_t lp_hedge_delay_ms(const struct lp_hedge_cfg *h, const struct lp_hedge_window *w);

#endif
