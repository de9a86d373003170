/* util/assert.h - assertions in three tiers (see ../shared/STYLE.md, principle 16).
 *
 * LP_DEBUG_ASSERT(cond): an internal invariant. Checked in debug builds (every test build),
 *   compiled out of Release builds (NDEBUG), so it may be used on the hot path.
 * LP_BUG_ON(cond): memory or state corruption that makes going on unsafe. Always checked; aborts
 *   with the location.
 * LP_COUNT_IF(cond): "should not happen, but survivable". Always checked; counts the event in a
 *   process-wide counter (lp_assert_soft_failures, exported as a metric) and logs nothing here.
 */
#ifndef LP_UTIL_ASSERT_H
#define LP_UTIL_ASSERT_H

#include <stdatomic.h>
#include <stdbool.h>

void lp_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

extern atomic_ulong lp_assert_soft_count;

#ifdef NDEBUG
#define LP_DEBUG_ASSERT(cond) ((void)0)
#else
#define LP_DEBUG_ASSERT(cond) ((cond) ? (void)0 : lp_assert_fail(#cond, __FILE__, __LINE__))
#endif

#define LP_BUG_ON(cond) ((cond) ? lp_assert_fail("BUG: " #cond, __FILE__, __LINE__) : (void)0)

#define LP_COUNT_IF(cond) lp_assert_count_if(!!(cond))

extern atomic_ulong lp_assert_soft_count;

/* Count cond when true; returns cond (so it can guard an early return). */
static inline bool lp_assert_count_if(bool cond)
{
    if (cond)
        atomic_fetch_add_explicit(&lp_assert_soft_count, 1, memory_order_relaxed);
    return cond;
}

/* "Should not happen" events counted by LP_COUNT_IF since start. */
static inline unsigned long lp_assert_soft_failures(void)
{
    return atomic_load_explicit(&lp_assert_soft_count, memory_order_relaxed);
}

#endif
