/* budget.c - a process-wide byte budget. See budget.h. */
#include "budget.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "util/alloc.h"

struct lp_budget {
    atomic_uint_fast64_t used;
    atomic_uint_fast64_t limit; /* 0 = unlimited */
    atomic_uint_fast64_t refusals;
};

struct lp_budget *lp_budget_create(uint64_t limit)
{
    struct lp_budget *b = lp_xcalloc(1, sizeof *b);
    atomic_init(&b->used, 0);
    atomic_init(&b->limit, limit);
    atomic_init(&b->refusals, 0);
    return b;
}

void lp_budget_destroy(struct lp_budget *b)
{
    free(b);
}

void lp_budget_set_limit(struct lp_budget *b, uint64_t limit)
{
    atomic_store_explicit(&b->limit, limit, memory_order_relaxed);
}

uint64_t lp_budget_limit(const struct lp_budget *b)
{
    return atomic_load_explicit(&b->limit, memory_order_relaxed);
}

bool lp_budget_take(struct lp_budget *b, size_t n)
{
    if (n == 0)
        return true;
    uint64_t limit = atomic_load_explicit(&b->limit, memory_order_relaxed);
    /* Add first, then check: one atomic operation in the common case, no CAS loop. */
    uint64_t before = atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed);
    if (limit == 0 || (before <= limit && n <= limit - before))
        return true;
    atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
    return false;
}

void lp_budget_give(struct lp_budget *b, size_t n)
{
    if (n)
        atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
}

uint64_t lp_budget_used(const struct lp_budget *b)
{
    return atomic_load_explicit(&((struct lp_budget *)b)->used, memory_order_relaxed);
}

void lp_budget_count_refusal(struct lp_budget *b)
{
    atomic_fetch_add_explicit(&b->refusals, 1, memory_order_relaxed);
}

uint64_t lp_budget_refusals(const struct lp_budget *b)
{
    return atomic_load_explicit(&((struct lp_budget *)b)->refusals, memory_order_relaxed);
}
