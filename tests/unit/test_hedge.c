/* test_hedge.c - the hedge budget (token bucket per alias) and the hedge delay (fixed or a
 * percentile of the measured times to first event). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "hedge.h"

static void test_budget(void **state)
{
    struct lp_hedge_budget b = {0};
    assert_true(lp_hedge_budget_take(&b));  /* a fresh bucket holds one token */
    assert_false(lp_hedge_budget_take(&b)); /* ... and only one */
    for (int i = 0; i < 9; i++)
        lp_hedge_budget_credit(&b, 10); /* 10%: a token per 10 requests */
    assert_false(lp_hedge_budget_take(&b));
    lp_hedge_budget_credit(&b, 10);
    assert_true(lp_hedge_budget_take(&b));
    /* Over 1000 requests that all want a hedge, 10% get one (plus the starting token). */
    struct lp_hedge_budget c = {0};
    int hedges = 0;
    for (int i = 0; i < 1000; i++) {
        lp_hedge_budget_credit(&c, 10);
        hedges += lp_hedge_budget_take(&c);
    }
    assert_in_range(hedges, 100, 101);
    /* The cap: a long quiet time banks at most LP_HEDGE_BUDGET_CAP hedges. */
    struct lp_hedge_budget d = {0};
    for (int i = 0; i < 1000; i++)
        lp_hedge_budget_credit(&d, 50);
    int burst = 0;
    while (lp_hedge_budget_take(&d))
        burst++;
    assert_int_equal(burst, (int)LP_HEDGE_BUDGET_CAP);
}

static void test_window_and_delay(void **state)
{
    struct lp_hedge_window w = {0};
    struct lp_hedge_cfg fixed = {.enabled = true, .delay_ms = 250, .max_extra = 1};
    struct lp_hedge_cfg p95 = {.enabled = true, .delay_ms = 500, .delay_pct = 95, .max_extra = 1};
    assert_int_equal(lp_hedge_delay_ms(&fixed, &w), 250);
    double v;
    for (int i = 1; i < LP_HEDGE_MIN_SAMPLES; i++)
        lp_hedge_window_add(&w, i * 10.0);
    assert_false(lp_hedge_window_pct(&w, 95, &v));
    assert_int_equal(lp_hedge_delay_ms(&p95, &w), 500); /* too few samples: the fixed delay */
    /* 1..100 x 10 ms: p95 = 950, p50 = 500 (nearest rank). */
    struct lp_hedge_window x = {0};
    for (int i = 100; i >= 1; i--)
        lp_hedge_window_add(&x, i * 10.0);
    assert_true(lp_hedge_window_pct(&x, 95, &v));
    assert_true(v == 950.0);
    assert_true(lp_hedge_window_pct(&x, 50, &v));
    assert_true(v == 500.0);
    assert_int_equal(lp_hedge_delay_ms(&p95, &x), 950);
    /* The window keeps the last LP_HEDGE_WINDOW samples: old slow ones are forgotten. */
    for (int i = 0; i < LP_HEDGE_WINDOW; i++)
        lp_hedge_window_add(&x, 40.0);
    assert_int_equal(lp_hedge_delay_ms(&p95, &x), 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_window_and_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
