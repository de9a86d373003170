/* test_quota.c - upstream rate-limit headers (OpenAI, generic, Anthropic) and how the shared
 * store and the planner act on them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "quota.h"
#include "routestats.h"

#define NOW_WALL 1767225600000LL /* 2026-01-01T00:00:00Z */

struct hdrs {
    const char *kv[16][2];
};

static const char *get(void *ctx, const char *name)
{
    struct hdrs *h = ctx;
    for (int i = 0; i < 16 && h->kv[i][0]; i++)
        if (strcasecmp(h->kv[i][0], name) == 0)
            return h->kv[i][1];
    return NULL;
}

static void test_openai_headroom(void **state)
{
    struct hdrs h = {{{"x-ratelimit-limit-requests", "100"},
                      {"x-ratelimit-remaining-requests", "10"},
                      {"x-ratelimit-reset-requests", "6m0s"},
                      {"x-ratelimit-limit-tokens", "10000"},
                      {"x-ratelimit-remaining-tokens", "5000"},
                      {"x-ratelimit-reset-tokens", "20ms"}}};
    struct lp_quota_reading q;
    lp_quota_read(get, &h, NOW_WALL, &q);
    assert_true(q.seen);
    assert_false(q.exhausted);
    assert_true(fabs(q.headroom - 0.1) < 1e-9); /* the tighter dimension */
    assert_int_equal(q.reset_ms, 360000);       /* its reset */
    assert_true(fabs(lp_quota_share(q.headroom) - 0.5) < 1e-9);
    assert_true(lp_quota_share(0.5) == 1.0);
    assert_true(lp_quota_share(0) == 0.0);
}

static void test_openai_exhausted(void **state)
{
    struct hdrs h = {{{"x-ratelimit-limit-requests", "100"},
                      {"x-ratelimit-remaining-requests", "0"},
                      {"x-ratelimit-reset-requests", "1.5s"},
                      {"x-ratelimit-remaining-tokens", "0"},
                      {"x-ratelimit-reset-tokens", "3s"}}};
    struct lp_quota_reading q;
    lp_quota_read(get, &h, NOW_WALL, &q);
    assert_true(q.exhausted);
    assert_int_equal(q.reset_ms, 3000); /* the latest reset among the exhausted ones */
    /* No reset given: 1 s. */
    struct hdrs g = {{{"x-ratelimit-remaining", "0"}}};
    lp_quota_read(get, &g, NOW_WALL, &q);
    assert_true(q.exhausted);
    assert_int_equal(q.reset_ms, LP_QUOTA_DEFAULT_RESET_MS);
    /* A reset far away is capped at 24 h. */
    struct hdrs far = {{{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "999999"}}};
    lp_quota_read(get, &far, NOW_WALL, &q);
    assert_int_equal(q.reset_ms, LP_QUOTA_MAX_RESET_MS);
}

static void test_anthropic(void **state)
{
    struct hdrs h = {{{"anthropic-ratelimit-requests-limit", "50"},
                      {"anthropic-ratelimit-requests-remaining", "49"},
                      {"anthropic-ratelimit-requests-reset", "2026-01-01T00:00:01Z"},
                      {"anthropic-ratelimit-input-tokens-limit", "1000"},
                      {"anthropic-ratelimit-input-tokens-remaining", "0"},
                      {"anthropic-ratelimit-input-tokens-reset", "2026-01-01T00:00:42Z"}}};
    struct lp_quota_reading q;
    lp_quota_read(get, &h, NOW_WALL, &q);
    assert_true(q.seen);
    assert_true(q.exhausted);
    assert_int_equal(q.reset_ms, 42000);
    /* Nothing known / garbage: nothing seen, headroom 1. */
    struct hdrs none = {{{"x-ratelimit-remaining-requests", "lots"}, {"content-type", "x"}}};
    lp_quota_read(get, &none, NOW_WALL, &q);
    assert_false(q.seen);
    assert_true(q.headroom == 1.0);
}

/* The store: remaining 0 rests the route until the reset, a later answer never shortens it;
 * low headroom lowers the share while the reading is valid. */
static void test_store(void **state)
{
    struct lp_routestats *s = lp_routestats_create();
    struct lp_routestat *e = lp_routestats_get(s, "a", "m");
    struct lp_quota_reading q = {.seen = true, .exhausted = true, .reset_ms = 5000};
    lp_routestats_quota(s, e, &q, 1000);
    struct lp_balance_item it;
    lp_routestats_item(s, e, false, 1000, 10000, &it);
    assert_int_equal(it.cool_until_ms, 6000);
    struct lp_quota_reading ok = {.seen = true, .headroom = 0.9, .reset_ms = 100};
    lp_routestats_quota(s, e, &ok, 2000); /* an answer in flight before the rest: no shortening */
    struct lp_quota_reading shorter = {.seen = true, .exhausted = true, .reset_ms = 1000};
    lp_routestats_quota(s, e, &shorter, 2000);
    lp_routestats_item(s, e, false, 2000, 10000, &it);
    assert_int_equal(it.cool_until_ms, 6000);
    struct lp_routestat_view v;
    assert_true(lp_routestats_view(s, "a", "m", 2000, &v));
    assert_int_equal(v.cooling_until_ms, 6000);
    assert_true(lp_routestats_view(s, "a", "m", 7000, &v));
    assert_int_equal(v.cooling_until_ms, 0);

    struct lp_routestat *f = lp_routestats_get(s, "b", "m");
    struct lp_quota_reading low = {.seen = true, .headroom = 0.05, .reset_ms = 0};
    lp_routestats_quota(s, f, &low, 1000);
    lp_routestats_item(s, f, false, 1000, 10000, &it);
    assert_true(fabs(it.share - 0.25) < 1e-9);
    lp_routestats_item(s, f, false, 1000 + LP_ROUTESTATS_QUOTA_VALID_MS + 1, 10000, &it);
    assert_true(it.share == 1.0); /* stale reading: forgotten */
    struct lp_quota_reading nothing = {.seen = false};
    lp_routestats_quota(s, f, &nothing, 1000); /* nothing learned, nothing changed */
    lp_routestats_item(s, f, false, 1000, 10000, &it);
    assert_true(fabs(it.share - 0.25) < 1e-9);
    lp_routestats_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_headroom),
        cmocka_unit_test(test_openai_exhausted),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
