/* test_backoff.c - exponential backoff: sequence, cap, jitter bounds, disabled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

static struct lp_fallback_cfg defaults(void)
{
    return (struct lp_fallback_cfg){.enable_backoff = true,
                                    .backoff_initial_ms = 100,
                                    .backoff_max_ms = 5000,
                                    .backoff_multiplier = 2.0,
                                    .backoff_jitter = 0.0};
}

static void test_sequence_and_cap(void **state)
{
    struct lp_fallback_cfg f = defaults();
    const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000};
    for (int i = 0; i < 9; i++)
        assert_int_equal(lp_backoff_delay_ms(&f, i + 1, NULL), want[i]);
    assert_int_equal(lp_backoff_delay_ms(&f, 1000, NULL), 5000); /* pow overflows to inf */
    assert_int_equal(lp_backoff_delay_ms(&f, 0x7fffffff, NULL), 5000);
}

static void test_multiplier_one_and_bad(void **state)
{
    struct lp_fallback_cfg f = defaults();
    f.backoff_multiplier = 1.0;
    for (int i = 1; i < 20; i++)
        assert_int_equal(lp_backoff_delay_ms(&f, i, NULL), 100);
    f.backoff_multiplier = 0.5; /* < 1 behaves as 1: delays never shrink */
    assert_int_equal(lp_backoff_delay_ms(&f, 5, NULL), 100);
    f.backoff_multiplier = 1.5;
    assert_int_equal(lp_backoff_delay_ms(&f, 3, NULL), 225);
}

static void test_disabled_and_edges(void **state)
{
    struct lp_fallback_cfg f = defaults();
    assert_int_equal(lp_backoff_delay_ms(&f, 0, NULL), 0);
    assert_int_equal(lp_backoff_delay_ms(&f, -3, NULL), 0);
    assert_int_equal(lp_backoff_delay_ms(NULL, 1, NULL), 0);
    f.enable_backoff = false;
    assert_int_equal(lp_backoff_delay_ms(&f, 3, NULL), 0);
    f = defaults();
    f.backoff_initial_ms = 0;
    assert_int_equal(lp_backoff_delay_ms(&f, 3, NULL), 0);
    f = defaults();
    f.backoff_max_ms = 0; /* no cap configured: only the internal ceiling */
    assert_int_equal(lp_backoff_delay_ms(&f, 8, NULL), 12800);
}

/* Over many seeded draws the jitter stays within +/-10% and actually spreads. */
static void test_jitter_bounds(void **state)
{
    struct lp_fallback_cfg f = defaults();
    f.backoff_jitter = 0.1;
    uint64_t rng = 99;
    int64_t lo = INT64_MAX, hi = 0;
    double sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; i++) {
        int64_t d = lp_backoff_delay_ms(&f, 3, &rng); /* base 400 */
        assert_in_range(d, 360, 440);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += (double)d;
    }
    assert_true(lo <= 365 && hi >= 435); /* both ends reached */
    assert_in_range((int64_t)(sum / n), 397, 403);

    /* Capped delays jitter around the cap. */
    for (int i = 0; i < 1000; i++)
        assert_in_range(lp_backoff_delay_ms(&f, 50, &rng), 4500, 5500);

    /* Out-of-range jitter falls back to 0.1; full jitter 1.0 may reach 0 but never below. */
    f.backoff_jitter = 7.0;
    for (int i = 0; i < 1000; i++)
        assert_in_range(lp_backoff_delay_ms(&f, 1, &rng), 90, 110);
    f.backoff_jitter = 1.0;
    for (int i = 0; i < 1000; i++)
        assert_in_range(lp_backoff_delay_ms(&f, 1, &rng), 0, 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequence_and_cap),
        cmocka_unit_test(test_multiplier_one_and_bad),
        cmocka_unit_test(test_disabled_and_edges),
        cmocka_unit_test(test_jitter_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
