/* test_balance.c - the balancer's ordering and its estimates, with an injected clock and a seeded
 * random source; and the shared store (routestats.c) it reads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "balance.h"
#include "routestats.h"

#define DECAY 10000

/* A sample above the estimate replaces it at once (peak-sensitive); a lower one is blended in. */
static void test_ewma_peak_and_blend(void **state)
{
    struct lp_ewma e = {0};
    assert_true(lp_ewma_read(&e, 0, DECAY) < 0); /* no sample: unknown */
    lp_ewma_observe(&e, 100, 1000, DECAY);
    assert_true(fabs(lp_ewma_read(&e, 1000, DECAY) - 100) < 1e-9);
    lp_ewma_observe(&e, 500, 1001, DECAY); /* a peak: taken whole */
    assert_true(fabs(lp_ewma_read(&e, 1001, DECAY) - 500) < 1e-9);
    lp_ewma_observe(&e, 100, 1002, DECAY); /* right after: hardly moves */
    assert_true(lp_ewma_read(&e, 1002, DECAY) > 490);
    lp_ewma_observe(&e, 100, 1002 + 5 * DECAY, DECAY); /* long after: mostly the new sample */
    double v = lp_ewma_read(&e, 1002 + 5 * DECAY, DECAY);
    assert_true(v > 99 && v < 110);
}

/* Reading decays towards 0 with the time since the last sample: a slow route that got no
 * traffic looks cheaper and cheaper (and is probed again). */
static void test_ewma_decay_on_read(void **state)
{
    struct lp_ewma e = {0};
    lp_ewma_observe(&e, 1000, 0, DECAY);
    assert_true(fabs(lp_ewma_read(&e, DECAY, DECAY) - 1000 * exp(-1)) < 1e-6);
    assert_true(lp_ewma_read(&e, 5 * DECAY, DECAY) < 10);
    /* "at least": raises, never lowers. */
    struct lp_ewma f = {0};
    lp_ewma_observe(&f, 300, 0, DECAY);
    lp_ewma_at_least(&f, 100, 0, DECAY);
    assert_true(fabs(lp_ewma_read(&f, 0, DECAY) - 300) < 1e-9);
    lp_ewma_at_least(&f, 2000, 10, DECAY);
    assert_true(fabs(lp_ewma_read(&f, 10, DECAY) - 2000) < 1e-9);
    /* failure score: adds and decays */
    struct lp_ewma g = {0};
    lp_ewma_add(&g, 1, 0, DECAY);
    lp_ewma_add(&g, 1, 0, DECAY);
    assert_true(fabs(lp_ewma_read(&g, 0, DECAY) - 2) < 1e-9);
    assert_true(fabs(lp_ewma_read(&g, DECAY, DECAY) - 2 * exp(-1)) < 1e-9);
}

/* latency: power of two choices over cost. Two routes: the cheaper always first. Three routes
 * (10, 20, 1000 ms): the slowest can only win when drawn against nothing cheaper, never first. */
static void test_latency_choice(void **state)
{
    uint64_t rng = 99;
    struct lp_balance_item two[2] = {{.latency_ms = 100, .share = 1},
                                     {.latency_ms = 20, .share = 1}};
    size_t order[3];
    for (int i = 0; i < 100; i++) {
        lp_balance_order(LP_STRATEGY_LATENCY, two, 2, &rng, 0, order);
        assert_int_equal(order[0], 1);
        assert_int_equal(order[1], 0);
    }
    /* In-flight load counts: 20 ms with 9 in flight costs 200 > 100. */
    two[1].in_flight = 9;
    lp_balance_order(LP_STRATEGY_LATENCY, two, 2, &rng, 0, order);
    assert_int_equal(order[0], 0);
    /* Recent failures count: 20 ms with failure score 2 costs 140 > 100. */
    two[1].in_flight = 0;
    two[1].failures = 2;
    lp_balance_order(LP_STRATEGY_LATENCY, two, 2, &rng, 0, order);
    assert_int_equal(order[0], 0);
    /* Near its quota: share 0.1 makes 20 ms cost 200. */
    two[1].failures = 0;
    two[1].share = 0.1;
    lp_balance_order(LP_STRATEGY_LATENCY, two, 2, &rng, 0, order);
    assert_int_equal(order[0], 0);

    struct lp_balance_item three[3] = {{.latency_ms = 10, .share = 1},
                                       {.latency_ms = 20, .share = 1},
                                       {.latency_ms = 1000, .share = 1}};
    int first[3] = {0};
    for (int i = 0; i < 3000; i++) {
        lp_balance_order(LP_STRATEGY_LATENCY, three, 3, &rng, 0, order);
        first[order[0]]++;
        assert_true(order[0] != 2);
    }
    /* The fastest wins whenever drawn (2 of 3 pairs): ~2/3 of firsts. */
    assert_in_range(first[0], 1800, 2200);
    assert_in_range(first[1], 800, 1200);
}

/* Unmeasured routes cost the mean of the measured ones; all unmeasured: random among equals. */
static void test_latency_unmeasured(void **state)
{
    uint64_t rng = 5;
    struct lp_balance_item it[2] = {{.latency_ms = -1, .share = 1}, {.latency_ms = -1, .share = 1}};
    size_t order[2];
    int first0 = 0;
    for (int i = 0; i < 2000; i++) {
        lp_balance_order(LP_STRATEGY_LATENCY, it, 2, &rng, 0, order);
        first0 += order[0] == 0;
    }
    assert_in_range(first0, 850, 1150);
    /* No random source: lowest cost first, ties in config order. */
    lp_balance_order(LP_STRATEGY_LATENCY, it, 2, NULL, 0, order);
    assert_int_equal(order[0], 0);
    it[0].latency_ms = 50;
    it[1].latency_ms = -1; /* costed at the mean (50): a tie */
    it[1].in_flight = 1;   /* ... but busier */
    lp_balance_order(LP_STRATEGY_LATENCY, it, 2, &rng, 0, order);
    assert_int_equal(order[0], 0);
}

static void test_round_robin_and_weighted(void **state)
{
    struct lp_balance_item it[3] = {
        {.share = 1, .weight = 1}, {.share = 1, .weight = 3}, {.share = 1, .weight = 0}};
    size_t order[3];
    for (uint64_t rr = 0; rr < 6; rr++) {
        lp_balance_order(LP_STRATEGY_ROUND_ROBIN, it, 3, NULL, rr, order);
        assert_int_equal(order[0], rr % 3);
        assert_int_equal(order[1], (rr + 1) % 3);
    }
    uint64_t rng = 11;
    int first[3] = {0};
    for (int i = 0; i < 4000; i++) {
        lp_balance_order(LP_STRATEGY_WEIGHTED, it, 3, &rng, 0, order);
        first[order[0]]++;
        assert_int_equal(order[2], 2); /* weight 0: always last */
    }
    assert_in_range(first[1], 2800, 3200); /* 3/4 */
    assert_int_equal(first[2], 0);
    /* random: a route at 20% of its share gets proportionally fewer firsts */
    struct lp_balance_item r[2] = {{.share = 1}, {.share = 0.25}};
    int firsts = 0;
    for (int i = 0; i < 5000; i++) {
        lp_balance_order(LP_STRATEGY_RANDOM, r, 2, &rng, 0, order);
        firsts += order[0] == 1;
    }
    assert_in_range(firsts, 800, 1200); /* 0.25 / 1.25 = 1/5 */
}

/* The shared store: entries by name (stable pointers), in-flight, estimates, round robin. */
static void test_routestats(void **state)
{
    struct lp_routestats *s = lp_routestats_create();
    struct lp_routestat *e = lp_routestats_get(s, "a", "m");
    assert_non_null(e);
    assert_ptr_equal(lp_routestats_get(s, "a", "m"), e);
    assert_ptr_not_equal(lp_routestats_get(s, "a", "n"), e);
    struct lp_balance_item it;
    lp_routestats_item(s, e, true, 0, DECAY, &it);
    assert_true(it.latency_ms < 0);
    lp_routestats_begin(e);
    lp_routestats_begin(e);
    lp_routestats_end(e);
    lp_routestats_latency(s, e, true, 250, 100, DECAY);
    lp_routestats_latency(s, e, false, 40, 100, DECAY);
    lp_routestats_failure(s, e, 100, DECAY);
    lp_routestats_item(s, e, true, 100, DECAY, &it);
    assert_int_equal(it.in_flight, 1);
    assert_true(fabs(it.latency_ms - 250) < 1e-9);
    assert_true(fabs(it.failures - 1) < 1e-9);
    lp_routestats_item(s, e, false, 100, DECAY, &it);
    assert_true(fabs(it.latency_ms - 40) < 1e-9);
    lp_routestats_silent(s, e, false, 900, 100, DECAY); /* gave up after 900 ms: at least that */
    lp_routestats_item(s, e, false, 100, DECAY, &it);
    assert_true(fabs(it.latency_ms - 900) < 1e-9);
    struct lp_routestat_view v;
    assert_true(lp_routestats_view(s, "a", "m", 100, &v));
    assert_int_equal(v.samples[1], 1);
    assert_false(lp_routestats_view(s, "zz", "m", 100, &v));
    assert_int_equal(lp_routestats_rr_next(s, "alias"), 0);
    assert_int_equal(lp_routestats_rr_next(s, "alias"), 1);
    assert_int_equal(lp_routestats_rr_next(s, "other"), 0);
    lp_routestats_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ewma_peak_and_blend),      cmocka_unit_test(test_ewma_decay_on_read),
        cmocka_unit_test(test_latency_choice),           cmocka_unit_test(test_latency_unmeasured),
        cmocka_unit_test(test_round_robin_and_weighted), cmocka_unit_test(test_routestats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
