/* test_budget.c - the process-wide byte budget: limits, refusals, live limit changes, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "budget.h"

static void test_take_give_limit(void **state)
{
    struct lp_budget *b = lp_budget_create(100);
    assert_true(lp_budget_take(b, 60));
    assert_true(lp_budget_take(b, 40)); /* exactly at the limit */
    assert_false(lp_budget_take(b, 1));
    assert_int_equal(lp_budget_used(b), 100);
    assert_int_equal(lp_budget_refusals(b), 0); /* counted by the holder, not by take */
    lp_budget_count_refusal(b);
    assert_int_equal(lp_budget_refusals(b), 1);
    assert_true(lp_budget_take(b, 0)); /* nothing always fits */
    lp_budget_give(b, 60);
    assert_int_equal(lp_budget_used(b), 40);
    assert_false(lp_budget_take(b, 61));
    assert_true(lp_budget_take(b, 60));
    lp_budget_give(b, 100);
    assert_int_equal(lp_budget_used(b), 0);
    /* A take larger than the limit never wraps around into success. */
    assert_false(lp_budget_take(b, SIZE_MAX));
    assert_int_equal(lp_budget_used(b), 0);
    lp_budget_destroy(b);
    lp_budget_destroy(NULL);
}

static void test_live_limit_and_unlimited(void **state)
{
    struct lp_budget *b = lp_budget_create(0); /* unlimited, still counted */
    assert_true(lp_budget_take(b, (size_t)1 << 40));
    assert_int_equal(lp_budget_used(b), (uint64_t)1 << 40);
    lp_budget_give(b, (size_t)1 << 40);
    assert_true(lp_budget_take(b, 500));
    lp_budget_set_limit(b, 400); /* lowered below what is taken: that stays, new takes wait */
    assert_int_equal(lp_budget_limit(b), 400);
    assert_int_equal(lp_budget_used(b), 500);
    assert_false(lp_budget_take(b, 1));
    lp_budget_give(b, 200);
    assert_true(lp_budget_take(b, 100));
    assert_false(lp_budget_take(b, 1));
    lp_budget_give(b, 400);
    lp_budget_destroy(b);
}

/* Threads racing for a small budget: no granted take ever pushes the total over the limit. */
#define LIMIT 1000
static struct lp_budget *shared;
static atomic_long held;
static atomic_bool over;

static void *racer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    size_t mine[3] = {0};
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)(seed >> 8) % 3;
        if (mine[k]) { /* give one back */
            atomic_fetch_sub(&held, (long)mine[k]);
            lp_budget_give(shared, mine[k]);
            mine[k] = 0;
            continue;
        }
        size_t n = 1 + (seed >> 16) % 300; /* up to 900 per thread held at once: contention */
        if (lp_budget_take(shared, n)) {
            if (atomic_fetch_add(&held, (long)n) + (long)n > LIMIT)
                atomic_store(&over, true);
            mine[k] = n;
        } else {
            lp_budget_count_refusal(shared);
        }
    }
    for (int k = 0; k < 3; k++) {
        atomic_fetch_sub(&held, (long)mine[k]);
        lp_budget_give(shared, mine[k]);
    }
    return NULL;
}

static void test_threads_never_exceed(void **state)
{
    shared = lp_budget_create(LIMIT);
    atomic_init(&held, 0);
    atomic_init(&over, false);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_false(atomic_load(&over));
    assert_int_equal(lp_budget_used(shared), 0);
    assert_true(lp_budget_refusals(shared) > 0);
    lp_budget_destroy(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_give_limit),
        cmocka_unit_test(test_live_limit_and_unlimited),
        cmocka_unit_test(test_threads_never_exceed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
