/* budget.h - a process-wide byte budget shared by threads (memory held by request bodies).
 *
 * Holders take bytes before they allocate them and give them back when they free them; a take
 * that would push the total over the limit is refused and takes nothing. Lock-free: one atomic
 * counter. The limit is never exceeded by a granted take; two threads racing for the last bytes
 * may both be refused (one sees the other's tentative take for an instant).
 */
#ifndef LP_BUDGET_H
#define LP_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_budget;

/* A budget of `limit` bytes (0 = unlimited, still counted). Never returns NULL (aborts on OOM). */
struct lp_budget *lp_budget_create(uint64_t limit);
/* NULL is accepted. Bytes still taken are simply forgotten. */
void lp_budget_destroy(struct lp_budget *b);
/* Change the limit (any thread). Bytes already taken stay taken, even above a lower limit; only
 * later takes are refused until enough is given back. */
void lp_budget_set_limit(struct lp_budget *b, uint64_t limit);
uint64_t lp_budget_limit(const struct lp_budget *b);
/* Take n bytes. Returns false (and takes nothing) when used + n would exceed the limit. n == 0
 * always succeeds. */
bool lp_budget_take(struct lp_budget *b, size_t n);
/* Give back n bytes taken earlier. */
void lp_budget_give(struct lp_budget *b, size_t n);
/* Bytes taken now. */
uint64_t lp_budget_used(const struct lp_budget *b);
/* Count one refusal of the holder's work because of the budget (e.g. a request answered 503);
 * a refused take may be retried or worked around, so takes do not count themselves. */
void lp_budget_count_refusal(struct lp_budget *b);
/* Refusals counted since creation. */
uint64_t lp_budget_refusals(const struct lp_budget *b);

#endif
