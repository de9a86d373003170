/* test_breaker.c - every circuit breaker transition, with a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "breaker.h"

static const struct lp_breaker_cfg CFG = {
    .failure_threshold = 3, .success_threshold = 2, .open_timeout_ms = 1000, .half_open_max = 1};

/* Fail `n` admitted requests at time t. */
static void fail_n(struct lp_breaker *b, int n, int64_t t)
{
    for (int i = 0; i < n; i++) {
        uint32_t tk;
        assert_true(lp_breaker_allow(b, t, &tk));
        lp_breaker_on_failure(b, t, tk);
    }
}

static void test_closed_opens_after_consecutive_failures(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    assert_int_equal(lp_breaker_state(&b, 0), LP_BREAKER_CLOSED);
    fail_n(&b, 2, 10);
    lp_breaker_on_success(&b, 11, 0, 11); /* a success resets the consecutive count */
    fail_n(&b, 2, 12);
    assert_int_equal(lp_breaker_state(&b, 12), LP_BREAKER_CLOSED);
    fail_n(&b, 1, 13);
    assert_int_equal(lp_breaker_state(&b, 13), LP_BREAKER_OPEN);
    assert_int_equal(lp_breaker_open_until(&b), 1013);
    assert_int_equal(b.times_opened, 1);
}

/* Under concurrency, successes of requests admitted before the failures keep arriving: they
 * must not reset the count (load probe L1). */
static void test_stale_success_keeps_failure_count(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    fail_n(&b, 2, 100);
    lp_breaker_on_success(&b, 105, 0, 50); /* admitted at 50, before the failures */
    fail_n(&b, 1, 106);
    assert_int_equal(lp_breaker_state(&b, 106), LP_BREAKER_OPEN);

    lp_breaker_init(&b, &CFG);
    fail_n(&b, 2, 100);
    lp_breaker_on_success(&b, 105, 0, 100); /* admitted at the latest failure: counts */
    fail_n(&b, 1, 106);
    assert_int_equal(lp_breaker_state(&b, 106), LP_BREAKER_CLOSED);
}

static void test_open_rejects_until_timeout(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    fail_n(&b, 3, 100);
    uint32_t tk = 77;
    assert_false(lp_breaker_allow(&b, 100, &tk));
    assert_int_equal(tk, 0);
    assert_false(lp_breaker_allow(&b, 1099, NULL));
    assert_false(lp_breaker_would_allow(&b, 1099));
    assert_int_equal(lp_breaker_state(&b, 1099), LP_BREAKER_OPEN);
    /* At exactly opened_at + timeout the state reads half-open, without mutation. */
    assert_int_equal(lp_breaker_state(&b, 1100), LP_BREAKER_HALF_OPEN);
    assert_int_equal(b.state, LP_BREAKER_OPEN);
    assert_true(lp_breaker_would_allow(&b, 1100));
    assert_true(lp_breaker_allow(&b, 1100, &tk));
    assert_int_equal(b.state, LP_BREAKER_HALF_OPEN);
    assert_true(tk != 0);
}

static void test_half_open_limits_probes_and_closes(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    fail_n(&b, 3, 0);
    uint32_t t1, t2;
    assert_true(lp_breaker_allow(&b, 1000, &t1));
    assert_false(lp_breaker_allow(&b, 1000, &t2)); /* one probe at a time */
    assert_false(lp_breaker_would_allow(&b, 1000));
    lp_breaker_on_success(&b, 1001, t1, 1001);
    assert_int_equal(lp_breaker_state(&b, 1001), LP_BREAKER_HALF_OPEN); /* 1 of 2 */
    assert_true(lp_breaker_allow(&b, 1002, &t2));
    lp_breaker_on_success(&b, 1003, t2, 1003);
    assert_int_equal(lp_breaker_state(&b, 1003), LP_BREAKER_CLOSED);
    /* Closed again: counters were reset, it takes a full threshold to reopen. */
    fail_n(&b, 2, 1004);
    assert_int_equal(lp_breaker_state(&b, 1004), LP_BREAKER_CLOSED);
}

static void test_half_open_failure_reopens_and_restarts_timer(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    fail_n(&b, 3, 0);
    uint32_t tk;
    assert_true(lp_breaker_allow(&b, 1500, &tk));
    lp_breaker_on_failure(&b, 1600, tk);
    assert_int_equal(lp_breaker_state(&b, 1600), LP_BREAKER_OPEN);
    assert_int_equal(lp_breaker_open_until(&b), 2600);
    assert_false(lp_breaker_allow(&b, 2599, NULL));
    assert_true(lp_breaker_allow(&b, 2600, &tk));
    assert_int_equal(b.times_opened, 2);
}

static void test_multiple_probes(void **state)
{
    struct lp_breaker_cfg c = CFG;
    c.half_open_max = 2;
    c.success_threshold = 3;
    struct lp_breaker b;
    lp_breaker_init(&b, &c);
    fail_n(&b, 3, 0);
    uint32_t a, bb, x;
    assert_true(lp_breaker_allow(&b, 1000, &a));
    assert_true(lp_breaker_allow(&b, 1000, &bb));
    assert_false(lp_breaker_allow(&b, 1000, &x));
    lp_breaker_release(&b, a); /* cancelled: frees the slot, counts nothing */
    assert_int_equal(b.successes, 0);
    assert_true(lp_breaker_allow(&b, 1000, &a));
    lp_breaker_on_success(&b, 1001, a, 1001);
    lp_breaker_on_success(&b, 1001, bb, 1001);
    assert_int_equal(lp_breaker_state(&b, 1001), LP_BREAKER_HALF_OPEN);
    assert_true(lp_breaker_allow(&b, 1002, &a));
    lp_breaker_on_success(&b, 1003, a, 1003);
    assert_int_equal(lp_breaker_state(&b, 1003), LP_BREAKER_CLOSED);
}

/* Outcomes of requests admitted before the breaker opened must not touch the probe state. */
static void test_stale_reports_ignored(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, &CFG);
    uint32_t old;
    assert_true(lp_breaker_allow(&b, 0, &old)); /* admitted while closed: ticket 0 */
    assert_int_equal(old, 0);
    fail_n(&b, 3, 1);
    lp_breaker_on_failure(&b, 5, old); /* arrives while open: ignored */
    assert_int_equal(lp_breaker_open_until(&b), 1001);
    uint32_t probe, x;
    assert_true(lp_breaker_allow(&b, 1001, &probe));
    lp_breaker_on_success(&b, 1002, old, 1002); /* stale success while half-open: no credit */
    lp_breaker_release(&b, old);                /* nor does it free the probe's slot */
    assert_int_equal(b.successes, 0);
    assert_false(lp_breaker_allow(&b, 1002, &x));
    lp_breaker_on_failure(&b, 1003, old); /* stale failure does not reopen */
    assert_int_equal(b.state, LP_BREAKER_HALF_OPEN);

    /* A probe from an earlier half-open period is stale too. */
    lp_breaker_on_failure(&b, 1004, probe); /* reopen */
    uint32_t probe2;
    assert_true(lp_breaker_allow(&b, 2004, &probe2));
    assert_true(probe2 != probe);
    lp_breaker_on_success(&b, 2005, probe, 2005);
    assert_int_equal(b.successes, 0);
    lp_breaker_on_success(&b, 2005, probe2, 2005);
    assert_int_equal(b.successes, 1);
}

static void test_defaults_and_names(void **state)
{
    struct lp_breaker b;
    lp_breaker_init(&b, NULL);
    assert_int_equal(b.cfg.failure_threshold, 5);
    assert_int_equal(b.cfg.success_threshold, 2);
    assert_int_equal(b.cfg.open_timeout_ms, 60000);
    assert_int_equal(b.cfg.half_open_max, 1);
    struct lp_fallback_cfg f = {.circuit_failure_threshold = 7,
                                .circuit_success_threshold = 4,
                                .circuit_open_timeout_s = 30,
                                .circuit_half_open_max = 3};
    struct lp_breaker_cfg c = lp_breaker_cfg_from(&f);
    assert_int_equal(c.failure_threshold, 7);
    assert_int_equal(c.success_threshold, 4);
    assert_int_equal(c.open_timeout_ms, 30000);
    assert_int_equal(c.half_open_max, 3);
    lp_breaker_reconfigure(&b, &c);
    fail_n(&b, 6, 0);
    assert_int_equal(lp_breaker_state(&b, 0), LP_BREAKER_CLOSED);
    fail_n(&b, 1, 0);
    assert_int_equal(lp_breaker_state(&b, 0), LP_BREAKER_OPEN);
    assert_string_equal(lp_breaker_state_name(LP_BREAKER_HALF_OPEN), "half_open");
    assert_string_equal(lp_breaker_state_name(LP_BREAKER_OPEN), "open");
    assert_string_equal(lp_breaker_state_name(LP_BREAKER_CLOSED), "closed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_opens_after_consecutive_failures),
        cmocka_unit_test(test_stale_success_keeps_failure_count),
        cmocka_unit_test(test_open_rejects_until_timeout),
        cmocka_unit_test(test_half_open_limits_probes_and_closes),
        cmocka_unit_test(test_half_open_failure_reopens_and_restarts_timer),
        cmocka_unit_test(test_multiple_probes),
        cmocka_unit_test(test_stale_reports_ignored),
        cmocka_unit_test(test_defaults_and_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
