/* test_health.c - the shared health store: cooldowns, drains, breakers, JSON view, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "health.h"
#include "util/json.h"

/* A hand-built config: backends a (openai), b (anthropic); alias m -> a/x, b/y. */
struct fixture {
    struct lp_config cfg;
    struct lp_backend backends[2];
    struct lp_alias alias;
    struct lp_route routes[2];
};

static void fx_init(struct fixture *f, bool breakers)
{
    memset(f, 0, sizeof *f);
    f->backends[0] = (struct lp_backend){.name = "a", .enabled = true};
    f->backends[1] =
        (struct lp_backend){.name = "b", .enabled = true, .protocol = LP_PROTO_ANTHROPIC};
    f->routes[0] =
        (struct lp_route){.backend = "a", .backend_idx = 0, .model = "x", .enabled = true};
    f->routes[1] = (struct lp_route){
        .backend = "b", .backend_idx = 1, .model = "y", .enabled = true, .priority = 1};
    f->alias = (struct lp_alias){.name = "m", .enabled = true, .routes = f->routes, .n_routes = 2};
    f->cfg.backends = f->backends;
    f->cfg.n_backends = 2;
    f->cfg.aliases = &f->alias;
    f->cfg.n_aliases = 1;
    f->cfg.fallback = (struct lp_fallback_cfg){.cooldown_seconds = 60,
                                               .enable_circuit_breaker = breakers,
                                               .circuit_failure_threshold = 2,
                                               .circuit_success_threshold = 2,
                                               .circuit_open_timeout_s = 10,
                                               .circuit_half_open_max = 1};
}

static struct lp_decision dec(enum lp_err_class cls, int64_t cooldown_ms)
{
    struct lp_decision d = {.cls = cls,
                            .failover = lp_class_fails_over(cls),
                            .cooldown = cooldown_ms > 0,
                            .cooldown_ms = cooldown_ms,
                            .breaker_failure = lp_class_fails_over(cls)};
    snprintf(d.reason, sizeof d.reason, "test %s", lp_class_name(cls));
    return d;
}

#define WALL 1735689600000LL /* 2025-01-01T00:00:00Z */

/* An attempt admitted and failed at `now` (the request path's order: admit, then report). */
static void report_fail(struct lp_health *h, const struct lp_config *cfg, const char *b,
                        const char *m, const struct lp_decision *d, int64_t now, int64_t wall)
{
    struct lp_health_ticket t;
    assert_true(lp_health_admit(h, cfg, b, m, now, &t));
    lp_health_report_failure(h, cfg, b, m, d, now, wall, &t);
    assert_false(t.held);
}

/* An attempt admitted at `started` that succeeded at `now`. */
static void report_ok(struct lp_health *h, const struct lp_config *cfg, const char *b,
                      const char *m, int64_t started, int64_t now)
{
    struct lp_health_ticket t;
    assert_true(lp_health_admit(h, cfg, b, m, started, &t));
    lp_health_report_success(h, cfg, b, m, now, &t);
}

static void test_cooldown_extend_never_shorten(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    const struct lp_backend *a = &f.backends[0];
    int64_t until = -1;
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 0, &until), LP_ROUTE_USABLE);
    assert_int_equal(until, 0);

    struct lp_decision d = dec(LP_CLASS_RATE_LIMIT, 1000);
    report_fail(h, &f.cfg, "a", "x", &d, 100, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 1099, &until), LP_ROUTE_COOLING);
    assert_int_equal(until, 1100);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "other", 500, NULL), LP_ROUTE_USABLE);

    d = dec(LP_CLASS_SERVER, 5000); /* longer: extends */
    report_fail(h, &f.cfg, "a", "x", &d, 200, WALL);
    lp_health_route_state(h, &f.cfg, a, "x", 300, &until);
    assert_int_equal(until, 5200);
    d = dec(LP_CLASS_SERVER, 10); /* shorter: never shortens */
    report_fail(h, &f.cfg, "a", "x", &d, 300, WALL);
    lp_health_route_state(h, &f.cfg, a, "x", 300, &until);
    assert_int_equal(until, 5200);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 5200, NULL), LP_ROUTE_USABLE);

    /* A decision without cooldown (client error) records but does not cool. */
    d = dec(LP_CLASS_CLIENT, 0);
    report_fail(h, &f.cfg, "a", "z", &d, 6000, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "z", 6000, NULL), LP_ROUTE_USABLE);

    /* Success ends a cooldown. */
    d = dec(LP_CLASS_SERVER, 5000);
    report_fail(h, &f.cfg, "a", "x", &d, 7000, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 7001, NULL), LP_ROUTE_COOLING);
    report_ok(h, &f.cfg, "a", "x", 7002, 7002);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 7003, NULL), LP_ROUTE_USABLE);
    lp_health_destroy(h);
}

static void test_drain_and_clear(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    const struct lp_backend *a = &f.backends[0];
    assert_false(lp_health_is_drained(h, "a"));
    lp_health_set_drained(h, "a", true);
    assert_true(lp_health_is_drained(h, "a"));
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 0, NULL), LP_ROUTE_DRAINED);
    lp_health_set_drained(h, "a", false);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 0, NULL), LP_ROUTE_USABLE);

    struct lp_decision d = dec(LP_CLASS_SERVER, 1000);
    report_fail(h, &f.cfg, "a", "x", &d, 0, WALL);
    report_fail(h, &f.cfg, "a", "x2", &d, 0, WALL);
    report_fail(h, &f.cfg, "b", "y", &d, 0, WALL);
    assert_int_equal(lp_health_clear(h, "a", "x"), 1);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 1, NULL), LP_ROUTE_USABLE);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x2", 1, NULL), LP_ROUTE_COOLING);
    assert_int_equal(lp_health_clear(h, "a", NULL), 1);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x2", 1, NULL), LP_ROUTE_USABLE);
    assert_int_equal(lp_health_route_state(h, &f.cfg, &f.backends[1], "y", 1, NULL),
                     LP_ROUTE_COOLING);
    lp_health_destroy(h);
}

static void test_breaker_through_store(void **state)
{
    struct fixture f;
    fx_init(&f, true);
    struct lp_health *h = lp_health_create();
    lp_health_configure(h, &f.cfg);
    const struct lp_backend *a = &f.backends[0];
    struct lp_decision d = dec(LP_CLASS_SERVER, 0); /* no cooldown: isolate the breaker */
    for (int i = 0; i < 2; i++)
        report_fail(h, &f.cfg, "a", "x", &d, 0, WALL);
    int64_t until = 0;
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 5, &until), LP_ROUTE_OPEN);
    assert_int_equal(until, 10000);
    /* The router adapter sees the same through the configured flag. */
    assert_int_equal(lp_health_state_fn(h, a, "other", 5, &until), LP_ROUTE_OPEN);
    struct lp_health_ticket t1, t2, t3;
    assert_false(lp_health_admit(h, &f.cfg, "a", "x", 9999, &t1));
    assert_false(t1.held);

    /* Half-open: one probe; while it is out, the route reads OPEN with unknown expiry. */
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 10000, &t1));
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 10000, &until), LP_ROUTE_OPEN);
    assert_int_equal(until, 0);
    assert_false(lp_health_admit(h, &f.cfg, "a", "x", 10000, &t2));
    lp_health_release(h, "a", "x", &t1); /* cancelled probe frees the slot */
    lp_health_release(h, "a", "x", &t1); /* a second consumption does nothing */
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 10001, &t2));
    lp_health_report_success(h, &f.cfg, "a", "x", 10002, &t2);
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 10003, &t3));
    /* A client error proves the backend answers: counts as a breaker success. */
    struct lp_decision c = dec(LP_CLASS_CLIENT, 0);
    lp_health_report_failure(h, &f.cfg, "a", "x", &c, 10004, WALL, &t3);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 10005, NULL), LP_ROUTE_USABLE);
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 10005, &t1));
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 10005, &t2)); /* closed: no probe limit */
    lp_health_release(h, "a", "x", &t1);
    lp_health_release(h, "a", "x", &t2);

    /* Reload with breakers disabled: the open state is ignored and admission always passes. */
    for (int i = 0; i < 2; i++)
        report_fail(h, &f.cfg, "a", "x", &d, 20000, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 20001, NULL), LP_ROUTE_OPEN);
    struct fixture g;
    fx_init(&g, false);
    lp_health_configure(h, &g.cfg);
    assert_int_equal(lp_health_route_state(h, &g.cfg, &g.backends[0], "x", 20001, NULL),
                     LP_ROUTE_USABLE);
    assert_int_equal(lp_health_state_fn(h, &g.backends[0], "x", 20001, NULL), LP_ROUTE_USABLE);
    assert_true(lp_health_admit(h, &g.cfg, "a", "x", 20001, &t1));
    lp_health_release(h, "a", "x", &t1);
    /* ...and re-enabling brings the (name-keyed) state back. */
    lp_health_configure(h, &f.cfg);
    assert_int_equal(lp_health_state_fn(h, &g.backends[0], "x", 20001, NULL), LP_ROUTE_OPEN);
    lp_health_destroy(h);
}

/* Load probe L1: successes of attempts that started before a failure never clear it. */
static void test_late_success_keeps_cooldown(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    const struct lp_backend *a = &f.backends[0];
    struct lp_health_ticket early, late;
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 100, &early)); /* a stream started at 100 */
    struct lp_decision d = dec(LP_CLASS_SERVER, 5000);
    report_fail(h, &f.cfg, "a", "x", &d, 200, WALL);            /* the backend broke at 200 */
    lp_health_report_success(h, &f.cfg, "a", "x", 300, &early); /* the old stream ends fine */
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 301, NULL), LP_ROUTE_COOLING);
    /* try_soonest may still send an attempt during the cooldown: its success is newer evidence. */
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 400, &late));
    lp_health_report_success(h, &f.cfg, "a", "x", 500, &late);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 501, NULL), LP_ROUTE_USABLE);
    lp_health_destroy(h);
}

/* After a cooldown, at most circuit_half_open_max trials run until one succeeds. */
static void test_trial_after_cooldown(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    const struct lp_backend *a = &f.backends[0];
    struct lp_decision d = dec(LP_CLASS_SERVER, 1000);
    report_fail(h, &f.cfg, "a", "x", &d, 0, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 999, NULL), LP_ROUTE_COOLING);
    struct lp_health_ticket t1, t2;
    /* Expired: one trial is admitted, the herd behind it is not. */
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 1000, NULL), LP_ROUTE_USABLE);
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 1000, &t1));
    assert_true(t1.trial);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 1001, NULL), LP_ROUTE_COOLING);
    assert_false(lp_health_admit(h, &f.cfg, "a", "x", 1001, &t2));
    /* The trial fails: cooled again; the next trial waits for the new expiry. */
    lp_health_report_failure(h, &f.cfg, "a", "x", &d, 1500, WALL, &t1);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 2499, NULL), LP_ROUTE_COOLING);
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 2500, &t1));
    /* A cancelled trial frees its slot without a verdict. */
    lp_health_release(h, "a", "x", &t1);
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 2600, &t1));
    lp_health_report_success(h, &f.cfg, "a", "x", 2700, &t1);
    /* Recovered: no trial limit any more. */
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 2701, &t1));
    assert_true(lp_health_admit(h, &f.cfg, "a", "x", 2701, &t2));
    assert_false(t1.trial || t2.trial);
    lp_health_release(h, "a", "x", &t1);
    lp_health_release(h, "a", "x", &t2);
    lp_health_destroy(h);
}

/* State is keyed by names: a new snapshot with the same names sees the cooldown. */
static void test_survives_reload(void **state)
{
    struct fixture f, g;
    fx_init(&f, false);
    fx_init(&g, false);
    struct lp_health *h = lp_health_create();
    struct lp_decision d = dec(LP_CLASS_QUOTA, 1000);
    report_fail(h, &f.cfg, "b", "y", &d, 0, WALL);
    assert_int_equal(lp_health_route_state(h, &g.cfg, &g.backends[1], "y", 1, NULL),
                     LP_ROUTE_COOLING);
    lp_health_destroy(h);
}

static void test_router_adapter(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    struct lp_decision d = dec(LP_CLASS_OVERLOADED, 3000);
    report_fail(h, &f.cfg, "a", "x", &d, 0, WALL);
    struct lp_plan_opts o = {
        .allow_cross_protocol = true, .state_fn = lp_health_state_fn, .state_ctx = h, .now_ms = 10};
    struct lp_candidate out[4];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&f.cfg, &f.alias, &o, out, 4, &info);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].backend->name, "b");
    assert_int_equal(info.skipped_cooling, 1);
    assert_int_equal(info.soonest_until_ms, 3000);
    lp_health_destroy(h);
}

static void test_any_usable(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    assert_true(lp_health_any_usable(h, &f.cfg, 0));
    struct lp_decision d = dec(LP_CLASS_SERVER, 1000);
    report_fail(h, &f.cfg, "a", "x", &d, 0, WALL);
    assert_true(lp_health_any_usable(h, &f.cfg, 1));
    lp_health_set_drained(h, "b", true);
    assert_false(lp_health_any_usable(h, &f.cfg, 1));
    assert_true(lp_health_any_usable(h, &f.cfg, 1000)); /* a/x cooled off */
    f.backends[0].enabled = false;
    assert_false(lp_health_any_usable(h, &f.cfg, 1000));
    assert_false(lp_health_any_usable(h, NULL, 1000));
    lp_health_destroy(h);
}

static void test_json_view(void **state)
{
    struct fixture f;
    fx_init(&f, true);
    struct lp_health *h = lp_health_create();
    struct lp_decision d = dec(LP_CLASS_RATE_LIMIT, 30000);
    snprintf(d.reason, sizeof d.reason, "429 rate_limit_error: slow \"down\"");
    report_fail(h, &f.cfg, "a", "x", &d, 1000, WALL);
    report_fail(h, &f.cfg, "a", "extra", &d, 1000, WALL);
    lp_health_set_drained(h, "b", true);
    char *s = lp_health_json(h, &f.cfg, 2000, WALL + 1000);
    struct json_object *root = lp_json_parse(s, strlen(s), NULL);
    assert_non_null(root);
    assert_string_equal(lp_json_get_str(root, "now"), "2025-01-01T00:00:01.000Z");
    assert_true(lp_json_get_bool(root, "breakers_enabled", false));
    struct json_object *bs = lp_json_get_arr(root, "backends");
    assert_int_equal(lp_json_arr_len(bs), 2);
    struct json_object *a = lp_json_arr_at(bs, 0);
    assert_string_equal(lp_json_get_str(a, "name"), "a");
    assert_false(lp_json_get_bool(a, "drained", true));
    /* Two breaker failures at threshold 2: open until mono 11000 = wall +10 s. */
    struct json_object *br = lp_json_get_obj(a, "breaker");
    assert_string_equal(lp_json_get_str(br, "state"), "open");
    int64_t ou = 0;
    assert_true(lp_json_get_int64(br, "open_until_ms", &ou));
    assert_int_equal(ou, WALL + 10000);
    assert_string_equal(lp_json_get_str(br, "open_until"), "2025-01-01T00:00:10.000Z");
    struct json_object *le = lp_json_get_obj(a, "last_error");
    assert_string_equal(lp_json_get_str(le, "class"), "rate_limit");
    assert_string_equal(lp_json_get_str(le, "reason"), "429 rate_limit_error: slow \"down\"");
    struct json_object *ms = lp_json_get_arr(a, "models");
    assert_int_equal(lp_json_arr_len(ms), 2); /* configured x, then recorded "extra" */
    struct json_object *mx = lp_json_arr_at(ms, 0);
    assert_string_equal(lp_json_get_str(mx, "model"), "x");
    assert_true(lp_json_get_bool(mx, "cooling", false));
    int64_t v = 0;
    assert_true(lp_json_get_int64(mx, "cooling_until_ms", &v));
    assert_int_equal(v, WALL + 30000); /* wall now + (mono until - mono now) */
    assert_string_equal(lp_json_get_str(mx, "cooling_until"), "2025-01-01T00:00:30.000Z");
    assert_true(lp_json_get_int64(mx, "remaining_ms", &v));
    assert_int_equal(v, 29000);
    assert_string_equal(lp_json_get_str(mx, "class"), "rate_limit");
    assert_string_equal(lp_json_get_str(lp_json_arr_at(ms, 1), "model"), "extra");
    struct json_object *b = lp_json_arr_at(bs, 1);
    assert_true(lp_json_get_bool(b, "drained", false));
    assert_null(lp_json_get_obj(b, "last_error"));
    assert_string_equal(lp_json_get_str(lp_json_get_obj(b, "breaker"), "state"), "closed");
    struct json_object *my = lp_json_arr_at(lp_json_get_arr(b, "models"), 0);
    assert_false(lp_json_get_bool(my, "cooling", true));
    json_object_put(root);
    free(s);
    lp_health_destroy(h);
}

static void test_pair_table_is_bounded(void **state)
{
    struct fixture f;
    fx_init(&f, false);
    struct lp_health *h = lp_health_create();
    struct lp_decision d = dec(LP_CLASS_CLIENT, 0); /* records without cooldown: recyclable */
    char model[32];
    for (int i = 0; i < LP_HEALTH_MAX_PAIRS + 100; i++) {
        snprintf(model, sizeof model, "m%d", i);
        report_fail(h, &f.cfg, "a", model, &d, i, WALL);
    }
    /* The newest records are kept; the oldest were recycled. */
    struct lp_decision c = dec(LP_CLASS_SERVER, 1000000);
    report_fail(h, &f.cfg, "a", "fresh", &c, 999999, WALL);
    assert_int_equal(lp_health_route_state(h, &f.cfg, &f.backends[0], "fresh", 1000000, NULL),
                     LP_ROUTE_COOLING);
    char *s = lp_health_json(h, &f.cfg, 1000000, WALL);
    struct json_object *root = lp_json_parse(s, strlen(s), NULL);
    struct json_object *a = lp_json_arr_at(lp_json_get_arr(root, "backends"), 0);
    assert_true(lp_json_arr_len(lp_json_get_arr(a, "models")) <= LP_HEALTH_MAX_PAIRS + 1);
    json_object_put(root);
    free(s);
    lp_health_destroy(h);
}

/* ---- concurrency ---- */

struct worker_arg {
    struct lp_health *h;
    struct fixture *f;
    int id;
    long failures_reported;
};

#define THREADS 4
#define ITERS 20000

static void *worker(void *p)
{
    struct worker_arg *w = p;
    char model[16];
    for (int i = 0; i < ITERS; i++) {
        int64_t now = i;
        snprintf(model, sizeof model, "m%d", i % 7);
        const char *bn = (i + w->id) % 2 ? "a" : "b";
        const struct lp_backend *b = &w->f->backends[(i + w->id) % 2];
        lp_health_route_state(w->h, &w->f->cfg, b, model, now, NULL);
        lp_health_state_fn(w->h, b, "x", now, NULL);
        struct lp_health_ticket t;
        if (lp_health_admit(w->h, &w->f->cfg, bn, model, now, &t)) {
            switch (i % 4) {
            case 0: {
                struct lp_decision d = dec(LP_CLASS_SERVER, 50);
                lp_health_report_failure(w->h, &w->f->cfg, bn, model, &d, now, WALL + now, &t);
                w->failures_reported++;
                break;
            }
            case 1:
                lp_health_report_success(w->h, &w->f->cfg, bn, model, now, &t);
                break;
            case 2:
                lp_health_release(w->h, bn, model, &t);
                break;
            default: {
                struct lp_decision d = dec(LP_CLASS_CLIENT, 0);
                lp_health_report_failure(w->h, &w->f->cfg, bn, model, &d, now, WALL + now, &t);
                w->failures_reported++;
            }
            }
        }
        if (i % 1000 == 0) {
            free(lp_health_json(w->h, &w->f->cfg, now, WALL + now));
            lp_health_any_usable(w->h, &w->f->cfg, now);
            lp_health_set_drained(w->h, bn, i % 2000 == 0);
        }
    }
    return NULL;
}

static void test_concurrent_use(void **state)
{
    struct fixture f;
    fx_init(&f, true);
    f.cfg.fallback.circuit_failure_threshold = 1000000; /* keep every thread admitted */
    struct lp_health *h = lp_health_create();
    pthread_t t[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){.h = h, .f = &f, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
    }
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += args[i].failures_reported;
    }
    /* Every failure report was counted exactly once across both backends. */
    char *s = lp_health_json(h, &f.cfg, ITERS, WALL);
    struct json_object *root = lp_json_parse(s, strlen(s), NULL);
    int64_t sum = 0;
    for (size_t i = 0; i < 2; i++) {
        int64_t c = 0;
        struct json_object *b = lp_json_arr_at(lp_json_get_arr(root, "backends"), i);
        assert_true(lp_json_get_int64(lp_json_get_obj(b, "last_error"), "count", &c));
        sum += c;
    }
    assert_int_equal(sum, total);
    assert_true(total > 0);
    json_object_put(root);
    free(s);
    lp_health_destroy(h);
}

/* Active probes: one claim at a time, due only while out, pass ends older cooldowns and
 * breaker openings (never newer ones, never rate limits), failures mark the backend down. */
static void test_probes(void **state)
{
    (void)state;
    struct fixture f;
    fx_init(&f, true);
    f.backends[0].health_check = (struct lp_health_check){.enabled = true,
                                                          .interval_ms = 1000,
                                                          .timeout_ms = 500,
                                                          .healthy_after = 1,
                                                          .unhealthy_after = 2};
    struct lp_health *h = lp_health_create();
    lp_health_configure(h, &f.cfg);
    const struct lp_backend *a = &f.backends[0];
    /* healthy, no idle interval: nothing due */
    assert_false(lp_health_probe_claim(h, &f.cfg, a, 1000));
    /* a server failure cools a/x: a probe is due, and only one worker gets it */
    struct lp_decision d = dec(LP_CLASS_SERVER, 60000);
    report_fail(h, &f.cfg, "a", "x", &d, 1000, WALL);
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 1100));
    assert_false(lp_health_probe_claim(h, &f.cfg, a, 1100));
    /* a failure newer than the probe's start is not ended by its pass */
    report_fail(h, &f.cfg, "a", "x", &d, 1200, WALL);
    assert_int_equal(lp_health_probe_done(h, a, true, "HTTP 200", 1100, 1300, WALL), 1);
    assert_true(lp_health_pair_cooling(h, "a", "x", 1300));
    /* the next pass (after the interval) ends it; a breaker opened before closes too */
    assert_false(lp_health_probe_claim(h, &f.cfg, a, 1400));
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 2400));
    assert_int_equal(lp_health_probe_done(h, a, true, "HTTP 200", 2400, 2450, WALL), 1);
    assert_false(lp_health_pair_cooling(h, "a", "x", 2450));
    assert_int_equal(lp_health_breaker_gauge(h, "a", 2450), 0);
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 2450, NULL), LP_ROUTE_USABLE);
    /* rate limits are not disproved by a probe */
    struct lp_decision rl = dec(LP_CLASS_RATE_LIMIT, 60000);
    report_fail(h, &f.cfg, "a", "x", &rl, 3000, WALL);
    assert_false(lp_health_probe_claim(h, &f.cfg, a, 3500));
    /* a failing probe while out marks the backend down: not routed to until a pass */
    struct lp_decision to = dec(LP_CLASS_TIMEOUT, 1000);
    report_fail(h, &f.cfg, "b", "y", &to, 3000, WALL); /* b has no health_check */
    assert_false(lp_health_probe_claim(h, &f.cfg, &f.backends[1], 3500));
    lp_health_clear(h, "a", NULL);
    report_fail(h, &f.cfg, "a", "x", &to, 4000, WALL);
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 4000));
    assert_int_equal(lp_health_probe_done(h, a, false, "HTTP 503", 4000, 4010, WALL), -1);
    int64_t until = 0;
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 9000, &until), LP_ROUTE_OPEN);
    assert_int_equal(until, 5010);
    struct lp_probe_stats st;
    assert_true(lp_health_probe_stats(h, "a", &st));
    assert_true(st.down);
    assert_int_equal(st.passes, 2);
    assert_int_equal(st.fails, 1);
    char *js = lp_health_json(h, &f.cfg, 9000, WALL);
    assert_non_null(strstr(js, "\"probe\":{\"down\":true"));
    free(js);
    /* without a health_check (config reloaded), down no longer keeps it out */
    f.backends[0].health_check.enabled = false;
    assert_int_equal(lp_health_route_state(h, &f.cfg, a, "x", 9000, NULL), LP_ROUTE_USABLE);
    f.backends[0].health_check.enabled = true;
    /* a pass brings it back; a healthy backend goes down after unhealthy_after failures */
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 9000));
    assert_int_equal(lp_health_probe_done(h, a, true, "HTTP 200", 9000, 9010, WALL), 1);
    f.backends[0].health_check.idle_interval_ms = 5000;
    assert_false(lp_health_probe_claim(h, &f.cfg, a, 9500));
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 14100));
    assert_int_equal(lp_health_probe_done(h, a, false, "x", 14100, 14110, WALL), 0);
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 19200));
    assert_int_equal(lp_health_probe_done(h, a, false, "x", 19200, 19210, WALL), -1);
    /* a claim given back can be taken again */
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 30000));
    lp_health_probe_release(h, "a", 30000, 0);
    assert_true(lp_health_probe_claim(h, &f.cfg, a, 30000));
    lp_health_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cooldown_extend_never_shorten),
        cmocka_unit_test(test_drain_and_clear),
        cmocka_unit_test(test_breaker_through_store),
        cmocka_unit_test(test_late_success_keeps_cooldown),
        cmocka_unit_test(test_trial_after_cooldown),
        cmocka_unit_test(test_survives_reload),
        cmocka_unit_test(test_router_adapter),
        cmocka_unit_test(test_any_usable),
        cmocka_unit_test(test_json_view),
        cmocka_unit_test(test_pair_table_is_bounded),
        cmocka_unit_test(test_concurrent_use),
        cmocka_unit_test(test_probes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
