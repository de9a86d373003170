/* test_router.c - the planner: priority order, shuffle fairness, filtering, L2, cycles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dialect.h"
#include "router.h"

/* Configs are built by hand (the planner reads only backends, aliases and their routes), so this
 * test does not depend on the YAML loader. */
#define MAXB 8
#define MAXA 8
#define MAXR 8

struct fixture {
    struct lp_config cfg;
    struct lp_backend backends[MAXB];
    struct lp_alias aliases[MAXA];
    struct lp_route routes[MAXA][MAXR];
    char *fallbacks[MAXA][MAXA];
};

static struct fixture fx;

static void fx_reset(void)
{
    memset(&fx, 0, sizeof fx);
    fx.cfg.backends = fx.backends;
    fx.cfg.aliases = fx.aliases;
}

static size_t add_backend(const char *name, enum lp_proto proto)
{
    size_t i = fx.cfg.n_backends++;
    fx.backends[i] = (struct lp_backend){.name = (char *)name,
                                         .enabled = true,
                                         .protocol = proto,
                                         .dialect = lp_dialect_of_proto(proto)};
    return i;
}

static struct lp_alias *add_alias(const char *name)
{
    size_t i = fx.cfg.n_aliases++;
    fx.aliases[i] = (struct lp_alias){.name = (char *)name,
                                      .enabled = true,
                                      .routes = fx.routes[i],
                                      .fallbacks = fx.fallbacks[i]};
    return &fx.aliases[i];
}

static struct lp_route *add_route(struct lp_alias *a, size_t backend, const char *model, int prio)
{
    struct lp_route *r = &a->routes[a->n_routes++];
    *r = (struct lp_route){.backend = fx.backends[backend].name,
                           .backend_idx = backend,
                           .model = (char *)model,
                           .priority = prio,
                           .enabled = true};
    return r;
}

static void add_fallback(struct lp_alias *a, const char *name)
{
    a->fallbacks[a->n_fallbacks++] = (char *)name;
}

static struct lp_plan_opts default_opts(uint64_t *rng)
{
    return (struct lp_plan_opts){
        .client_proto = LP_PROTO_OPENAI, .allow_cross_protocol = true, .rng = rng, .now_ms = 1000};
}

/* "backend/model" of candidate i, for readable assertions. */
static const char *label(const struct lp_candidate *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", c->backend->name, c->route->model);
    return buf;
}

static void assert_order(const struct lp_candidate *c, size_t n, const char *const *want,
                         size_t nwant)
{
    char buf[128];
    assert_int_equal(n, nwant);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(label(&c[i], buf, sizeof buf), want[i]);
}

/* Fake health: a table of (backend, model) -> state, until. */
struct fake_health {
    const char *backend, *model;
    enum lp_route_state state;
    int64_t until;
};

static enum lp_route_state fake_state(void *ctx, const struct lp_backend *b, const char *model,
                                      int64_t now_ms, int64_t *until_ms)
{
    for (const struct fake_health *h = ctx; h->backend; h++) {
        if (strcmp(h->backend, b->name) == 0 && (!h->model || strcmp(h->model, model) == 0)) {
            *until_ms = h->until;
            return h->state;
        }
    }
    return LP_ROUTE_USABLE;
}

/* Fake balancer numbers: latency per backend name, quota rest per backend name. */
struct fake_load {
    const char *backend;
    double latency_ms;
    int64_t cool_until;
};

static void *fake_load_fn(void *ctx, const struct lp_backend *b, const char *model, bool stream,
                          int64_t now_ms, int64_t decay_ms, struct lp_balance_item *out)
{
    *out = (struct lp_balance_item){.latency_ms = -1, .share = 1};
    for (const struct fake_load *l = ctx; l->backend; l++) {
        if (strcmp(l->backend, b->name) == 0) {
            out->latency_ms = l->latency_ms;
            out->cool_until_ms = l->cool_until;
            return (void *)l;
        }
    }
    return NULL;
}

static uint64_t rr_counter;
static uint64_t fake_rr(void *ctx, const struct lp_alias *a)
{
    return rr_counter++;
}

/* Balancing happens among the usable routes of one priority only; a route whose quota is used
 * up counts as cooling until its reset; each candidate keeps load_fn's handle. */
static void test_balancing_within_priority(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI),
           c = add_backend("c", LP_PROTO_OPENAI), d = add_backend("d", LP_PROTO_OPENAI);
    struct lp_alias *al = add_alias("m");
    add_route(al, a, "x", 1);
    add_route(al, b, "x", 1);
    add_route(al, c, "x", 1);
    add_route(al, d, "x", 2); /* fastest of all, but a worse priority */
    struct fake_load load[] = {
        {"a", 300, 0}, {"b", 20, 0}, {"c", 5, 5000}, {"d", 1, 0}, {NULL, 0, 0}};
    uint64_t rng = 77;
    struct lp_plan_opts o = default_opts(&rng);
    o.load_fn = fake_load_fn;
    o.load_ctx = load;
    struct lp_candidate out[8];
    struct lp_plan_info info;
    for (int i = 0; i < 50; i++) {
        size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
        const char *want[] = {"b/x", "a/x", "d/x"}; /* c rests until 5000 (now 1000) */
        assert_order(out, n, want, 3);
        assert_ptr_equal(out[0].stat, &load[1]);
        assert_int_equal(info.skipped_cooling, 1);
        assert_int_equal(info.soonest_until_ms, 5000);
    }
    /* include_unusable keeps the resting route after the usable ones. */
    o.include_unusable = true;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    assert_int_equal(n, 4);
    assert_string_equal(out[3].backend->name, "c");
    assert_int_equal(out[3].until_ms, 5000);
    /* After the reset it is usable again and the fastest of its priority. */
    o.include_unusable = false;
    o.now_ms = 6000;
    n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    assert_string_equal(out[0].backend->name, "c");

    /* round_robin rotates the run by the alias's counter. */
    al->routing.strategy = LP_STRATEGY_ROUND_ROBIN;
    o.rr_fn = fake_rr;
    rr_counter = 0;
    static const char *const firsts[] = {"a", "b", "c"};
    for (int i = 0; i < 6; i++) {
        n = lp_router_plan(&fx.cfg, al, &o, out, 8, NULL);
        assert_int_equal(n, 4);
        assert_string_equal(out[0].backend->name, firsts[i % 3]);
        assert_string_equal(out[3].backend->name, "d");
    }
}

static void test_priority_order(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI),
           c = add_backend("c", LP_PROTO_OPENAI);
    struct lp_alias *al = add_alias("m");
    add_route(al, c, "mc", 3);
    add_route(al, a, "ma", 1);
    add_route(al, b, "mb", 2);
    uint64_t rng = 42;
    struct lp_plan_opts o = default_opts(&rng);
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    const char *want[] = {"a/ma", "b/mb", "c/mc"};
    assert_order(out, n, want, 3);
    assert_false(out[0].level2);
    assert_ptr_equal(out[0].alias, al);
    assert_int_equal(info.n_usable, 3);
    assert_int_equal(info.n_total, 3);
}

/* Each of 3 equal-priority routes comes first ~1/3 of the time; the lower priority route is
 * always last. 10k seeded runs; tolerance ±3% (about 7 sigma for a fair shuffle). */
static void test_shuffle_fairness(void **state)
{
    fx_reset();
    size_t b[4];
    const char *names[] = {"b0", "b1", "b2", "b3"};
    for (int i = 0; i < 4; i++)
        b[i] = add_backend(names[i], LP_PROTO_OPENAI);
    struct lp_alias *al = add_alias("m");
    add_route(al, b[3], "x", 5);
    add_route(al, b[0], "x", 1);
    add_route(al, b[1], "x", 1);
    add_route(al, b[2], "x", 1);
    uint64_t rng = 12345;
    struct lp_plan_opts o = default_opts(&rng);
    int first[4] = {0}, second[4] = {0};
    const int runs = 10000;
    for (int r = 0; r < runs; r++) {
        struct lp_candidate out[8];
        size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, NULL);
        assert_int_equal(n, 4);
        assert_string_equal(out[3].backend->name, "b3");
        first[out[0].route->backend_idx]++;
        second[out[1].route->backend_idx]++;
    }
    for (int i = 0; i < 3; i++) {
        assert_in_range(first[i], runs / 3 - 300, runs / 3 + 300);
        assert_in_range(second[i], runs / 3 - 300, runs / 3 + 300);
    }
    assert_int_equal(first[3], 0);
}

static void test_no_rng_keeps_config_order(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI);
    struct lp_alias *al = add_alias("m");
    add_route(al, b, "x", 0);
    add_route(al, a, "x", 0);
    struct lp_plan_opts o = default_opts(NULL);
    struct lp_candidate out[4];
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 4, NULL);
    const char *want[] = {"b/x", "a/x"};
    assert_order(out, n, want, 2);
}

static void test_disabled_skipping(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI),
           c = add_backend("c", LP_PROTO_OPENAI);
    fx.backends[b].enabled = false;
    struct lp_alias *al = add_alias("m");
    add_route(al, a, "x", 0)->enabled = false; /* disabled route */
    add_route(al, b, "x", 1);                  /* disabled backend */
    add_route(al, c, "x", 2);
    struct lp_route *bad = add_route(al, c, "y", 3);
    bad->backend_idx = 99; /* out of range: treated as missing */
    struct lp_alias *off = add_alias("off");
    off->enabled = false;
    add_route(off, a, "z", 0);
    add_fallback(al, "off");     /* disabled fallback alias */
    add_fallback(al, "missing"); /* unknown fallback alias */
    uint64_t rng = 1;
    struct lp_plan_opts o = default_opts(&rng);
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    const char *want[] = {"c/x"};
    assert_order(out, n, want, 1);
    assert_int_equal(info.skipped_disabled, 3);
}

static void test_l2_order_and_recursion(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI);
    struct lp_alias *m = add_alias("m"), *f1 = add_alias("f1"), *f2 = add_alias("f2"),
                    *f11 = add_alias("f11");
    add_route(m, a, "m-a", 1);
    add_route(m, b, "m-b", 2);
    add_route(f1, a, "f1-a", 0);
    add_route(f2, b, "f2-b", 0);
    add_route(f11, a, "f11-a", 0);
    add_fallback(m, "f1");
    add_fallback(m, "f2");
    add_fallback(f1, "f11"); /* depth-first: f11 comes before f2 */
    uint64_t rng = 7;
    struct lp_plan_opts o = default_opts(&rng);
    struct lp_candidate out[8];
    size_t n = lp_router_plan(&fx.cfg, m, &o, out, 8, NULL);
    const char *want[] = {"a/m-a", "b/m-b", "a/f1-a", "a/f11-a", "b/f2-b"};
    assert_order(out, n, want, 5);
    assert_false(out[1].level2);
    assert_true(out[2].level2);
    assert_ptr_equal(out[2].alias, f1);
    assert_ptr_equal(out[3].alias, f11);
    assert_ptr_equal(out[4].alias, f2);
}

static void test_cycle_and_duplicates(void **state)
{
    fx_reset();
    size_t a = add_backend("a", LP_PROTO_OPENAI), b = add_backend("b", LP_PROTO_OPENAI);
    struct lp_alias *x = add_alias("x"), *y = add_alias("y");
    add_route(x, a, "shared", 0);
    add_route(x, a, "shared", 1); /* duplicate inside the alias */
    add_route(y, a, "shared", 0); /* duplicate via L2 */
    add_route(y, b, "only-y", 0);
    add_fallback(x, "y");
    add_fallback(y, "x"); /* cycle x -> y -> x */
    add_fallback(y, "y"); /* self cycle */
    uint64_t rng = 3;
    struct lp_plan_opts o = default_opts(&rng);
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, x, &o, out, 8, &info);
    const char *want[] = {"a/shared", "b/only-y"};
    assert_order(out, n, want, 2);
    assert_int_equal(info.skipped_duplicate, 2);
    assert_ptr_equal(out[0].alias, x); /* first occurrence wins */

    /* Planning from y: y's routes first, then x's (only duplicates). Without a random source
     * a run keeps its config order. */
    o.rng = NULL;
    n = lp_router_plan(&fx.cfg, y, &o, out, 8, &info);
    const char *want_y[] = {"a/shared", "b/only-y"};
    assert_order(out, n, want_y, 2);
    assert_ptr_equal(out[0].alias, y);
}

static void test_protocol_skip_and_override(void **state)
{
    fx_reset();
    size_t oa = add_backend("oa", LP_PROTO_OPENAI), an = add_backend("an", LP_PROTO_ANTHROPIC);
    struct lp_alias *al = add_alias("m");
    add_route(al, oa, "x", 0);
    add_route(al, an, "y", 1);
    struct lp_route *ov = add_route(al, oa, "z", 2);
    ov->has_protocol = true; /* route override beats the backend protocol */
    ov->protocol = LP_PROTO_ANTHROPIC;
    struct lp_plan_opts o = default_opts(NULL);
    o.client_proto = LP_PROTO_ANTHROPIC;
    o.allow_cross_protocol = false;
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    const char *want[] = {"an/y", "oa/z"};
    assert_order(out, n, want, 2);
    assert_int_equal(out[1].protocol, LP_PROTO_ANTHROPIC);
    assert_int_equal(info.skipped_protocol, 1);

    o.allow_cross_protocol = true;
    n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].protocol, LP_PROTO_OPENAI);
    assert_int_equal(info.skipped_protocol, 0);
}

static void build_health_fixture(struct lp_alias **out_alias)
{
    fx_reset();
    const char *names[] = {"a", "b", "c", "d", "e"};
    size_t idx[5];
    for (int i = 0; i < 5; i++)
        idx[i] = add_backend(names[i], LP_PROTO_OPENAI);
    struct lp_alias *al = add_alias("m");
    for (int i = 0; i < 5; i++)
        add_route(al, idx[i], "x", i);
    *out_alias = al;
}

static void test_health_filtering(void **state)
{
    struct lp_alias *al;
    build_health_fixture(&al);
    struct fake_health h[] = {
        {"a", "x", LP_ROUTE_COOLING, 9000},
        {"b", NULL, LP_ROUTE_OPEN, 5000},
        {"c", "x", LP_ROUTE_DRAINED, 0},
        {"d", "other", LP_ROUTE_COOLING, 100}, /* another model: d/x stays usable */
        {NULL, NULL, 0, 0},
    };
    struct lp_plan_opts o = default_opts(NULL);
    o.state_fn = fake_state;
    o.state_ctx = h;
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    const char *want[] = {"d/x", "e/x"};
    assert_order(out, n, want, 2);
    assert_int_equal(info.skipped_cooling, 1);
    assert_int_equal(info.skipped_open, 1);
    assert_int_equal(info.skipped_drained, 1);
    assert_int_equal(info.soonest_until_ms, 5000);
    assert_int_equal(out[0].state, LP_ROUTE_USABLE);
}

static void test_include_unusable_ordering(void **state)
{
    struct lp_alias *al;
    build_health_fixture(&al);
    struct fake_health h[] = {
        {"a", "x", LP_ROUTE_COOLING, 9000},
        {"b", "x", LP_ROUTE_OPEN, 5000},
        {"c", "x", LP_ROUTE_DRAINED, 0},
        {"d", "x", LP_ROUTE_COOLING, 0}, /* unknown expiry: after the known ones */
        {NULL, NULL, 0, 0},
    };
    struct lp_plan_opts o = default_opts(NULL);
    o.state_fn = fake_state;
    o.state_ctx = h;
    o.include_unusable = true;
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 8, &info);
    const char *want[] = {"e/x", "b/x", "a/x", "d/x"};
    assert_order(out, n, want, 4);
    assert_int_equal(out[1].state, LP_ROUTE_OPEN);
    assert_int_equal(out[1].until_ms, 5000);
    assert_int_equal(out[2].state, LP_ROUTE_COOLING);
    assert_int_equal(info.n_usable, 1);
    assert_int_equal(info.n_total, 4);
    assert_int_equal(info.skipped_drained, 1);
    assert_int_equal(info.soonest_until_ms, 5000);
}

static void test_all_cooling_returns_zero(void **state)
{
    struct lp_alias *al;
    build_health_fixture(&al);
    struct fake_health h[] = {
        {"a", NULL, LP_ROUTE_COOLING, 300}, {"b", NULL, LP_ROUTE_COOLING, 200},
        {"c", NULL, LP_ROUTE_COOLING, 400}, {"d", NULL, LP_ROUTE_COOLING, 500},
        {"e", NULL, LP_ROUTE_COOLING, 600}, {NULL, NULL, 0, 0},
    };
    struct lp_plan_opts o = default_opts(NULL);
    o.state_fn = fake_state;
    o.state_ctx = h;
    struct lp_candidate out[8];
    struct lp_plan_info info;
    assert_int_equal(lp_router_plan(&fx.cfg, al, &o, out, 8, &info), 0);
    assert_int_equal(info.skipped_cooling, 5);
    assert_int_equal(info.soonest_until_ms, 200);
}

static void test_max_truncates(void **state)
{
    struct lp_alias *al;
    build_health_fixture(&al);
    struct lp_plan_opts o = default_opts(NULL);
    struct lp_candidate out[2];
    struct lp_plan_info info;
    size_t n = lp_router_plan(&fx.cfg, al, &o, out, 2, &info);
    const char *want[] = {"a/x", "b/x"};
    assert_order(out, n, want, 2);
    assert_int_equal(info.n_total, 5);
    assert_int_equal(lp_router_plan(&fx.cfg, al, &o, NULL, 0, &info), 0);
    assert_int_equal(info.n_usable, 5);
    assert_int_equal(lp_router_plan(NULL, al, &o, out, 2, &info), 0);
}

static void test_max_attempts(void **state)
{
    struct lp_fallback_cfg f = {0};
    struct {
        int max_retries;
        size_t n;
        int want;
    } cases[] = {
        {0, 5, 5}, {-1, 5, 5}, {1, 5, 2}, {3, 5, 4}, {4, 5, 5}, {10, 5, 5}, {2, 0, 0}, {0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f.max_retries = cases[i].max_retries;
        assert_int_equal(lp_plan_max_attempts(&f, cases[i].n), cases[i].want);
    }
    assert_int_equal(lp_plan_max_attempts(NULL, 3), 3);
}

/* The same planner over a config loaded from YAML (reference schema, alias_fallback cycle). */
static void test_yaml_config_plan(void **state)
{
    static const char yaml[] = "backends:\n"
                               "  - {name: a, url: 'http://127.0.0.1:1/v1'}\n"
                               "  - {name: b, url: 'http://127.0.0.1:2/v1', protocol: anthropic}\n"
                               "  - {name: off, url: 'http://127.0.0.1:3/v1', enabled: false}\n"
                               "models:\n"
                               "  m:\n"
                               "    routes:\n"
                               "      - {backend: b, model: mb, priority: 2}\n"
                               "      - {backend: a, model: ma, priority: 1}\n"
                               "      - {backend: off, model: mo, priority: 0}\n"
                               "  f:\n"
                               "    routes:\n"
                               "      - {backend: a, model: ma}\n"
                               "      - {backend: a, model: fa}\n"
                               "fallback:\n"
                               "  alias_fallback:\n"
                               "    m: [f, nosuch]\n"
                               "    f: [m]\n";
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *cfg = lp_config_load_string(yaml, strlen(yaml), "<test>", &d);
    assert_non_null(cfg);
    const struct lp_alias *m = lp_config_find_alias(cfg, "m", 1);
    assert_non_null(m);
    uint64_t rng = 5;
    struct lp_plan_opts o = default_opts(&rng);
    struct lp_candidate out[8];
    struct lp_plan_info info;
    size_t n = lp_router_plan(cfg, m, &o, out, 8, &info);
    const char *want[] = {"a/ma", "b/mb", "a/fa"};
    assert_order(out, n, want, 3);
    assert_int_equal(out[1].protocol, LP_PROTO_ANTHROPIC);
    assert_true(out[2].level2);
    assert_int_equal(info.skipped_disabled, 1);
    assert_int_equal(info.skipped_duplicate, 1);
    lp_config_unref(cfg);
    lp_diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_shuffle_fairness),
        cmocka_unit_test(test_no_rng_keeps_config_order),
        cmocka_unit_test(test_disabled_skipping),
        cmocka_unit_test(test_l2_order_and_recursion),
        cmocka_unit_test(test_cycle_and_duplicates),
        cmocka_unit_test(test_protocol_skip_and_override),
        cmocka_unit_test(test_health_filtering),
        cmocka_unit_test(test_include_unusable_ordering),
        cmocka_unit_test(test_all_cooling_returns_zero),
        cmocka_unit_test(test_max_truncates),
        cmocka_unit_test(test_max_attempts),
        cmocka_unit_test(test_yaml_config_plan),
        cmocka_unit_test(test_balancing_within_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
