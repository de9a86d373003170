/* test_limiter.c - traffic control with an injected clock: token buckets, AIMD, trusted-proxy
 * client addresses, key lookup and permissions, and the in-process limiter (bursts, refill,
 * per-model and per-IP buckets, refunds, eviction, key rpm/tpm/budgets with reservation and
 * reconciliation, the FIFO concurrency queue with timeout and cancel, backend slots and waits,
 * resizing on reconfigure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "aimd.h"
#include "clientip.h"
#include "config.h"
#include "keys.h"
#include "limiter.h"
#include "limiter_local.h"
#include "tbucket.h"

/* ---- the injected clock ---------------------------------------------------------------------- */

struct fake_clock {
    int64_t us;
    int64_t wall_ms;
};

static int64_t fake_now(void *ctx)
{
    return ((struct fake_clock *)ctx)->us;
}

static int64_t fake_wall(void *ctx)
{
    return ((struct fake_clock *)ctx)->wall_ms;
}

static struct lp_config *load(const char *yaml)
{
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *c = lp_config_load_string(yaml, strlen(yaml), "t.yaml", &d);
    for (size_t i = 0; i < d.n; i++) {
        char *s = lp_diag_format(&d.items[i]);
        print_message("%s\n", s);
        free(s);
    }
    lp_diags_free(&d);
    assert_non_null(c);
    return c;
}

#define BASE_YAML                                                                                  \
    "backends:\n"                                                                                  \
    "  - {name: a, url: 'http://127.0.0.1:1/v1'}\n"                                                \
    "  - {name: b, url: 'http://127.0.0.1:2/v1', max_concurrent: 2}\n"                             \
    "models:\n"                                                                                    \
    "  m1: [{backend: a, model: x}]\n"                                                             \
    "  m2: [{backend: b, model: y}]\n"

/* Admit n requests synchronously; count how many were admitted (tickets released at once). */
static int admit_n(struct lp_limiter *l, int n, const char *ip, const char *model, const char *key)
{
    int ok = 0;
    for (int i = 0; i < n; i++) {
        struct lp_limit_query q = {.ip = ip, .model = model, .key = key};
        struct lp_limit_ticket *t;
        struct lp_limit_result r;
        assert_true(lp_limiter_admit(l, &q, &t, &r, NULL, NULL));
        ok += r.admitted;
        lp_limiter_release(l, t);
    }
    return ok;
}

/* ---- token bucket ------------------------------------------------------------------------------
 */

static void test_tbucket(void **state)
{
    (void)state;
    struct lp_tbucket b;
    lp_tbucket_init(&b, 2.0, 3.0, 0);
    assert_true(lp_tbucket_take(&b, 1, 0));
    assert_true(lp_tbucket_take(&b, 1, 0));
    assert_true(lp_tbucket_take(&b, 1, 0));
    assert_false(lp_tbucket_take(&b, 1, 0));
    assert_int_equal(lp_tbucket_wait_ms(&b, 1, 0), 500);
    assert_false(lp_tbucket_take(&b, 1, 499000));
    assert_true(lp_tbucket_take(&b, 1, 500000));
    assert_int_equal(lp_tbucket_full_ms(&b, 500000), 1500);
    /* refill caps at burst */
    assert_true(lp_tbucket_is_full(&b, 100000000));
    /* clock going backwards adds nothing */
    assert_true(lp_tbucket_take(&b, 3, 100000000));
    assert_false(lp_tbucket_take(&b, 1, 50000000));
    /* reservations may overshoot by one, then refill from below zero */
    lp_tbucket_init(&b, 1.0, 10.0, 0);
    assert_true(lp_tbucket_take_if_positive(&b, 25, 0));
    assert_true(b.tokens < 0);
    assert_false(lp_tbucket_take_if_positive(&b, 1, 0));
    assert_int_equal(lp_tbucket_wait_ms(&b, 1, 0), 16000);
    lp_tbucket_adjust(&b, 100, 0);
    assert_true(b.tokens <= 10.0);
    /* resize keeps the level, clamped */
    lp_tbucket_init(&b, 10, 10, 0);
    assert_true(lp_tbucket_take(&b, 4, 0));
    lp_tbucket_resize(&b, 1, 3, 0);
    assert_true(b.tokens <= 3.0 + 1e-9);
    lp_tbucket_resize(&b, 1, 100, 0);
    assert_true(b.tokens <= 3.0 + 1e-9);
}

/* ---- AIMD -------------------------------------------------------------------------------------
 */

static void test_aimd(void **state)
{
    (void)state;
    struct lp_aimd a;
    lp_aimd_init(&a, 16);
    assert_int_equal(lp_aimd_limit(&a), 16);
    lp_aimd_on_overload(&a, 1000);
    assert_int_equal(lp_aimd_limit(&a), 8);
    lp_aimd_on_overload(&a, 1500); /* same episode: not halved again */
    assert_int_equal(lp_aimd_limit(&a), 8);
    lp_aimd_on_overload(&a, 2000);
    assert_int_equal(lp_aimd_limit(&a), 4);
    for (int i = 0; i < 5; i++)
        lp_aimd_on_overload(&a, 3000 + i * 1000);
    assert_int_equal(lp_aimd_limit(&a), 1); /* never below 1 */
    /* additive increase: about +1 per `limit` successes, never above max */
    int64_t t = 100000;
    for (int i = 0; i < 1; i++)
        lp_aimd_on_success(&a, 10, t++);
    assert_int_equal(lp_aimd_limit(&a), 2);
    for (int i = 0; i < 3; i++) /* 2 + 1/2 + 1/2.5 + 1/2.9 */
        lp_aimd_on_success(&a, 10, t++);
    assert_int_equal(lp_aimd_limit(&a), 3);
    for (int i = 0; i < 1000; i++)
        lp_aimd_on_success(&a, 10, t++);
    assert_int_equal(lp_aimd_limit(&a), 16);
    /* latency gradient: a success far slower than the baseline shrinks by 10% */
    lp_aimd_on_success(&a, 100, t + 5000);
    assert_int_equal(lp_aimd_limit(&a), 14);
    /* a smaller configured max clamps */
    lp_aimd_set_max(&a, 5);
    assert_int_equal(lp_aimd_limit(&a), 5);
    assert_true(a.decreases >= 4);
}

/* ---- client addresses -------------------------------------------------------------------------
 */

static void test_cidr_parse(void **state)
{
    (void)state;
    struct lp_cidr c;
    assert_true(lp_cidr_parse("10.0.0.0/8", &c));
    assert_int_equal(c.bits, 104);
    assert_true(lp_cidr_parse("192.168.1.7", &c));
    assert_int_equal(c.bits, 128);
    assert_true(lp_cidr_parse("::1", &c));
    assert_true(lp_cidr_parse("fd00::/8", &c));
    assert_int_equal(c.bits, 8);
    assert_false(lp_cidr_parse("10.0.0.1/8", &c)); /* host bits set */
    assert_false(lp_cidr_parse("10.0.0.0/33", &c));
    assert_false(lp_cidr_parse("fd00::/129", &c));
    assert_false(lp_cidr_parse("nonsense", &c));
    assert_false(lp_cidr_parse("10.0.0.0/", &c));
    assert_false(lp_cidr_parse("", &c));
    assert_true(lp_cidr_parse("0.0.0.0/0", &c));
    unsigned char a[16];
    assert_true(lp_ip_parse("1.2.3.4", 7, a));
    assert_true(lp_cidr_match(&c, 1, a));
    assert_true(lp_ip_parse("[::1]:443", 9, a));
    assert_true(lp_ip_parse(" 1.2.3.4:80 ", 12, a));
}

static void test_clientip_resolve(void **state)
{
    (void)state;
    struct lp_cidr tr[2];
    assert_true(lp_cidr_parse("10.0.0.0/8", &tr[0]));
    assert_true(lp_cidr_parse("::1", &tr[1]));
    char out[LP_CLIENTIP_MAX];
    /* untrusted peer: headers are ignored (spoofing) */
    assert_false(lp_clientip_resolve("203.0.113.9", "1.1.1.1", "2.2.2.2", tr, 2, out, sizeof out));
    assert_string_equal(out, "203.0.113.9");
    /* no trusted list: always the peer */
    assert_false(lp_clientip_resolve("10.1.1.1", "1.1.1.1", NULL, NULL, 0, out, sizeof out));
    assert_string_equal(out, "10.1.1.1");
    /* trusted peer: rightmost untrusted hop; a client-supplied left part is ignored */
    assert_true(lp_clientip_resolve("10.1.1.1", "6.6.6.6, 198.51.100.4, 10.2.2.2", NULL, tr, 2, out,
                                    sizeof out));
    assert_string_equal(out, "198.51.100.4");
    /* every hop trusted: the leftmost */
    assert_true(lp_clientip_resolve("10.1.1.1", "10.3.3.3,10.2.2.2", NULL, tr, 2, out, sizeof out));
    assert_string_equal(out, "10.3.3.3");
    /* garbage hop: the walk stops at the last good (trusted) one */
    assert_true(lp_clientip_resolve("10.1.1.1", "junk, 10.2.2.2", NULL, tr, 2, out, sizeof out));
    assert_string_equal(out, "10.2.2.2");
    /* X-Real-IP when no X-Forwarded-For */
    assert_true(lp_clientip_resolve("::1", NULL, "198.51.100.7", tr, 2, out, sizeof out));
    assert_string_equal(out, "198.51.100.7");
    assert_false(lp_clientip_resolve("::1", NULL, "bogus", tr, 2, out, sizeof out));
    assert_string_equal(out, "::1");
    /* IPv4-mapped peers are shown as IPv4 */
    assert_false(lp_clientip_resolve("::ffff:192.0.2.1", NULL, NULL, tr, 2, out, sizeof out));
    assert_string_equal(out, "192.0.2.1");
}

/* ---- keys -------------------------------------------------------------------------------------
 */

static void test_keys(void **state)
{
    (void)state;
    struct lp_config *c = load(BASE_YAML "proxy_api_key: sk-proxy\n"
                                         "keys:\n"
                                         "  - {name: alice, key: sk-alice, models: [m1]}\n"
                                         "  - {name: bob, key: sk-bob, models: ['m*']}\n"
                                         "  - {name: carol, key: sk-carol}\n");
    const struct lp_client_key *k;
    assert_int_equal(lp_keys_match(c, "sk-proxy", 8, &k), LP_KEY_PROXY);
    assert_null(k);
    assert_int_equal(lp_keys_match(c, "sk-alice", 8, &k), LP_KEY_CLIENT);
    assert_string_equal(k->name, "alice");
    assert_int_equal(lp_keys_match(c, "sk-bob", 6, &k), LP_KEY_CLIENT);
    assert_string_equal(k->name, "bob");
    assert_int_equal(lp_keys_match(c, "sk-bo", 5, &k), LP_KEY_INVALID);
    assert_int_equal(lp_keys_match(c, "sk-alicee", 9, &k), LP_KEY_INVALID);
    assert_int_equal(lp_keys_match(c, "", 0, &k), LP_KEY_MISSING);
    assert_true(lp_keys_model_allowed(&c->keys[0], "m1"));
    assert_false(lp_keys_model_allowed(&c->keys[0], "m2"));
    assert_true(lp_keys_model_allowed(&c->keys[1], "m2"));
    assert_false(lp_keys_model_allowed(&c->keys[1], "x1"));
    assert_true(lp_keys_model_allowed(&c->keys[2], "anything"));
    assert_true(lp_keys_model_allowed(NULL, "anything"));
    /* the secrets are masked in logs */
    size_t n;
    const char *const *sec = lp_config_secrets(c, &n);
    bool seen = false;
    for (size_t i = 0; i < n; i++)
        seen |= strcmp(sec[i], "sk-carol") == 0;
    assert_true(seen);
    lp_config_unref(c);
    /* open proxy: no key needed */
    c = load(BASE_YAML);
    assert_int_equal(lp_keys_match(c, "x", 1, &k), LP_KEY_OPEN);
    lp_config_unref(c);
    /* estimates: body / 4 + max_tokens (or the default) */
    const char *body = "{\"model\":\"m1\",\"max_tokens\":100}";
    assert_int_equal(lp_keys_estimate_tokens(body, strlen(body), 4096), strlen(body) / 4 + 1 + 100);
    body = "{\"model\":\"m1\"}";
    assert_int_equal(lp_keys_estimate_tokens(body, strlen(body), 500), strlen(body) / 4 + 1 + 500);
}

static void test_config_validation(void **state)
{
    (void)state;
    static const char *const bad[] = {
        BASE_YAML "rate_limit: {enabled: true, global_rps: 0}\n",
        BASE_YAML "rate_limit: {global_rps: 20000}\n",
        BASE_YAML "rate_limit: {per_ip_rps: 1001}\n",
        BASE_YAML "rate_limit: {burst_factor: 0.5}\n",
        BASE_YAML "rate_limit: {per_model_rps: {m1: 0.01}}\n",
        BASE_YAML "concurrency: {max_requests: 0}\n",
        BASE_YAML "concurrency: {max_queue_size: 100001}\n",
        BASE_YAML "concurrency: {queue_timeout: 500ms}\n",
        BASE_YAML "concurrency: {queue_timeout: 6m}\n",
        BASE_YAML "concurrency: {per_backend_limit: 1001}\n",
        BASE_YAML "keys: [{name: a}]\n",
        BASE_YAML "keys: [{name: a, key: k1}, {name: a, key: k2}]\n",
        BASE_YAML "keys: [{name: a, key: k1}, {name: b, key: k1}]\n",
        BASE_YAML "proxy_api_key: k1\nkeys: [{name: a, key: k1}]\n",
        BASE_YAML "keys: [{name: a, key: k1, rpm: -1}]\n",
        BASE_YAML "server: {trusted_proxies: [10.0.0.1/8]}\n",
        BASE_YAML "server: {trusted_proxies: [nope]}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct lp_diags d;
        lp_diags_init(&d);
        struct lp_config *c = lp_config_load_string(bad[i], strlen(bad[i]), "t.yaml", &d);
        if (c)
            print_message("accepted: %s\n", bad[i]);
        assert_null(c);
        lp_diags_free(&d);
    }
    /* the reference's blocks load without the "not implemented" warning now */
    const char *good = BASE_YAML
        "rate_limit: {enabled: true, global_rps: 5, per_ip_rps: 2, burst_factor: 2,"
        " per_model_rps: {m1: 0.5}}\n"
        "concurrency: {enabled: true, max_requests: 3, max_queue_size: 10, queue_timeout: 2s,"
        " per_backend_limit: 7}\n"
        "server: {trusted_proxies: ['10.0.0.0/8', '::1']}\n"
        "keys: [{name: a, key: k1, rpm: 5, tpm: 1000, max_concurrent: 2,"
        " budget: {tokens_per_day: 10, tokens_per_month: 20}}]\n";
    struct lp_diags d;
    lp_diags_init(&d);
    struct lp_config *c = lp_config_load_string(good, strlen(good), "t.yaml", &d);
    assert_non_null(c);
    for (size_t i = 0; i < d.n; i++)
        assert_null(strstr(d.items[i].msg, "not implemented"));
    assert_true(c->rate_limit.enabled);
    assert_true(c->rate_limit.global_rps == 5);
    assert_int_equal(c->rate_limit.n_per_model, 1);
    assert_int_equal(c->concurrency.max_requests, 3);
    assert_int_equal(c->concurrency.queue_timeout_ms, 2000);
    assert_int_equal(c->server.n_trusted_proxies, 2);
    assert_int_equal(c->keys[0].tokens_per_month, 20);
    assert_int_equal(c->backends[1].max_concurrent, 2);
    lp_diags_free(&d);
    lp_config_unref(c);
    /* defaults (the reference's) when enabled without the rest */
    c = load(BASE_YAML "concurrency: {enabled: true}\n");
    assert_int_equal(c->concurrency.max_requests, 500);
    assert_int_equal(c->concurrency.max_queue_size, 1000);
    assert_int_equal(c->concurrency.queue_timeout_ms, 30000);
    assert_int_equal(c->concurrency.per_backend_limit, 100);
    lp_config_unref(c);
}

/* ---- the in-process limiter: rate limits ------------------------------------------------------
 */

struct fixture {
    struct fake_clock clk;
    struct lp_limiter *l;
    struct lp_config *cfg;
};

static struct fixture *fx_new(const char *extra)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->clk.us = 1000000;
    f->clk.wall_ms = 1700000000000LL; /* 2023-11-14T22:13:20Z */
    struct lp_limiter_clock c = {fake_now, fake_wall, &f->clk};
    f->l = lp_limiter_local_create(&c);
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%s%s", BASE_YAML, extra);
    f->cfg = load(yaml);
    lp_limiter_configure(f->l, f->cfg);
    return f;
}

static void fx_reconfigure(struct fixture *f, const char *extra)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml, "%s%s", BASE_YAML, extra);
    lp_config_unref(f->cfg);
    f->cfg = load(yaml);
    lp_limiter_configure(f->l, f->cfg);
}

static void fx_free(struct fixture *f)
{
    lp_limiter_destroy(f->l);
    lp_config_unref(f->cfg);
    free(f);
}

static void test_global_burst_and_refill(void **state)
{
    (void)state;
    /* rate 4/s, burst floor(4 x 1.5) = 6 */
    struct fixture *f = fx_new("rate_limit: {enabled: true, global_rps: 4, per_ip_rps: 0}\n");
    assert_int_equal(admit_n(f->l, 20, "1.1.1.1", "m1", NULL), 6);
    f->clk.us += 250000; /* one token */
    assert_int_equal(admit_n(f->l, 5, "1.1.1.1", "m1", NULL), 1);
    f->clk.us += 10 * 1000000; /* full again, not more */
    assert_int_equal(admit_n(f->l, 20, "1.1.1.1", "m1", NULL), 6);
    /* the rejection says when to retry and what the limit looks like */
    struct lp_limit_query q = {.ip = "1.1.1.1", .model = "m1"};
    struct lp_limit_ticket *t;
    struct lp_limit_result r;
    assert_true(lp_limiter_admit(f->l, &q, &t, &r, NULL, NULL));
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_GLOBAL);
    assert_int_equal(r.retry_after_ms, 250);
    assert_true(r.requests.set);
    assert_int_equal(r.requests.limit, 6);
    assert_int_equal(r.requests.remaining, 0);
    lp_limiter_release(f->l, t);
    fx_free(f);
}

static void test_burst_minimum_one(void **state)
{
    (void)state;
    /* rps 1 x burst_factor 1 = 1; per-model 0.5 x 1 -> max(1, 0) = 1 */
    struct fixture *f = fx_new("rate_limit: {enabled: true, global_rps: 1, per_ip_rps: 0, "
                               "burst_factor: 1, per_model_rps: {m1: 0.5}}\n");
    assert_int_equal(admit_n(f->l, 5, NULL, "m1", NULL), 1);
    f->clk.us += 1000000; /* global refilled, m1 (0.5/s) not */
    assert_int_equal(admit_n(f->l, 5, NULL, "m1", NULL), 0);
    /* ... and the global token taken before m1 refused was given back: m2 gets it */
    assert_int_equal(admit_n(f->l, 5, NULL, "m2", NULL), 1);
    fx_free(f);
}

static void test_per_model_and_refunds(void **state)
{
    (void)state;
    /* global 10 (burst 15); m1 1 rps (burst 1); m2 unlisted -> its own bucket at global_rps */
    struct fixture *f = fx_new("rate_limit: {enabled: true, global_rps: 10, per_ip_rps: 0, "
                               "per_model_rps: {m1: 1}}\n");
    assert_int_equal(admit_n(f->l, 10, NULL, "m1", NULL), 1);
    /* the 9 rejections at the model level gave their global tokens back: 14 left */
    assert_int_equal(admit_n(f->l, 20, NULL, "m2", NULL), 14);
    fx_free(f);
}

static void test_per_ip(void **state)
{
    (void)state;
    struct fixture *f =
        fx_new("rate_limit: {enabled: true, global_rps: 1000, per_ip_rps: 2, burst_factor: 1}\n");
    assert_int_equal(admit_n(f->l, 5, "1.1.1.1", "m1", NULL), 2);
    assert_int_equal(admit_n(f->l, 5, "2.2.2.2", "m1", NULL), 2);
    struct lp_limit_query q = {.ip = "1.1.1.1", .model = "m1"};
    struct lp_limit_ticket *t;
    struct lp_limit_result r;
    lp_limiter_admit(f->l, &q, &t, &r, NULL, NULL);
    assert_int_equal(r.scope, LP_LIMIT_IP);
    assert_int_equal(r.retry_after_ms, 500);
    lp_limiter_release(f->l, t);
    f->clk.us += 500000;
    assert_int_equal(admit_n(f->l, 5, "1.1.1.1", "m1", NULL), 1);
    fx_free(f);
}

static void test_ip_eviction(void **state)
{
    (void)state;
    struct fixture *f =
        fx_new("rate_limit: {enabled: true, global_rps: 10000, per_ip_rps: 1, burst_factor: 1}\n");
    lp_limiter_local_set_ip_capacity(f->l, 100);
    char ip[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250);
        assert_int_equal(admit_n(f->l, 1, ip, "m1", NULL), 1);
        f->clk.us += 100; /* global stays plentiful; nobody's bucket refills in 100 us */
    }
    uint64_t evicted = 0;
    assert_int_equal(lp_limiter_local_ip_count(f->l, &evicted), 100); /* the ceiling holds */
    assert_int_equal(evicted, 900);
    /* the most recent address is remembered: still limited */
    assert_int_equal(admit_n(f->l, 1, ip, "m1", NULL), 0);
    /* once idle (full buckets), entries are forgotten as new addresses arrive */
    f->clk.us += 10 * 1000000;
    for (int i = 0; i < 10; i++) {
        snprintf(ip, sizeof ip, "192.0.2.%d", i);
        admit_n(f->l, 1, ip, "m1", NULL);
    }
    assert_true(lp_limiter_local_ip_count(f->l, NULL) < 100);
    fx_free(f);
}

/* ---- keys: rpm, tpm, budgets, concurrency -----------------------------------------------------
 */

static struct lp_limit_ticket *admit_key(struct fixture *f, const char *key, int64_t est,
                                         struct lp_limit_result *r)
{
    struct lp_limit_query q = {.model = "m1", .key = key, .est_tokens = est};
    struct lp_limit_ticket *t;
    assert_true(lp_limiter_admit(f->l, &q, &t, r, NULL, NULL));
    return t;
}

static void test_key_rpm(void **state)
{
    (void)state;
    struct fixture *f = fx_new("keys: [{name: k, key: s1, rpm: 3}, {name: free, key: s2}]\n");
    assert_int_equal(admit_n(f->l, 10, NULL, "m1", "k"), 3);
    assert_int_equal(admit_n(f->l, 10, NULL, "m1", "free"), 10);
    f->clk.us += 20 * 1000000; /* 3/min = one per 20 s */
    assert_int_equal(admit_n(f->l, 10, NULL, "m1", "k"), 1);
    struct lp_limit_result r;
    struct lp_limit_ticket *t = admit_key(f, "k", 0, &r);
    assert_int_equal(r.scope, LP_LIMIT_KEY_RPM);
    assert_int_equal(r.requests.limit, 3);
    lp_limiter_release(f->l, t);
    fx_free(f);
}

static void test_key_tpm_reservation(void **state)
{
    (void)state;
    struct fixture *f = fx_new("keys: [{name: k, key: s1, tpm: 1000}]\n");
    struct lp_limit_result r;
    /* concurrent admissions: the first three fit; the fourth sees a negative level */
    struct lp_limit_ticket *t1 = admit_key(f, "k", 400, &r);
    assert_true(r.admitted);
    assert_true(r.tokens.set);
    assert_int_equal(r.tokens.limit, 1000);
    assert_int_equal(r.tokens.remaining, 600);
    struct lp_limit_ticket *t2 = admit_key(f, "k", 400, &r);
    assert_true(r.admitted);
    struct lp_limit_ticket *t3 = admit_key(f, "k", 400, &r);
    assert_true(r.admitted); /* 200 left before it: overshoot bounded by one estimate */
    struct lp_limit_ticket *t4 = admit_key(f, "k", 400, &r);
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_KEY_TPM);
    assert_int_equal(r.retry_after_ms, 12060); /* 201 tokens at 1000/min */
    lp_limiter_release(f->l, t4);
    /* real usage is smaller: reconciliation gives the difference back */
    lp_limiter_reconcile(f->l, t1, 50, 50, 0, true);  /* +300 */
    lp_limiter_reconcile(f->l, t2, 100, 0, 0, true);  /* +300 */
    lp_limiter_reconcile(f->l, t3, -1, -1, -1, true); /* no usage reported: the estimate */
    lp_limiter_release(f->l, t1);
    lp_limiter_release(f->l, t2);
    lp_limiter_release(f->l, t3);
    /* level: 1000 - 1200 + 600 = 400 */
    t1 = admit_key(f, "k", 10, &r);
    assert_true(r.admitted);
    assert_int_equal(r.tokens.remaining, 390);
    lp_limiter_release(f->l, t1); /* never reconciled: settled at the estimate */
    char *js = f->l->ops->keys_json(f->l, f->cfg);
    assert_non_null(strstr(js, "\"input_tokens\":150"));
    assert_non_null(strstr(js, "\"output_tokens\":50"));
    assert_non_null(strstr(js, "\"tokens_today\":610")); /* 100 + 100 + 400 + 10 */
    assert_non_null(strstr(js, "\"limited\":1"));
    assert_null(strstr(js, "s1")); /* never the secret */
    free(js);
    fx_free(f);
}

static void test_key_budgets(void **state)
{
    (void)state;
    struct fixture *f = fx_new(
        "keys: [{name: k, key: s1, budget: {tokens_per_day: 1000, tokens_per_month: 1500}}]\n");
    struct lp_limit_result r;
    struct lp_limit_ticket *t = admit_key(f, "k", 300, &r);
    assert_true(r.admitted);
    lp_limiter_reconcile(f->l, t, 500, 450, 0, true); /* real: 950 */
    lp_limiter_release(f->l, t);
    t = admit_key(f, "k", 300, &r); /* 950 < 1000: still admitted (overshoot by one) */
    assert_true(r.admitted);
    lp_limiter_reconcile(f->l, t, 100, 100, 0, true); /* 1150 today */
    lp_limiter_release(f->l, t);
    t = admit_key(f, "k", 300, &r);
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_KEY_DAY);
    /* 2023-11-14T22:13:20Z: 1h46m40s to midnight UTC */
    assert_int_equal(r.retry_after_ms, 6400000);
    lp_limiter_release(f->l, t);
    /* the next day: the daily budget is new, the month's is not */
    f->clk.wall_ms += 86400000LL;
    t = admit_key(f, "k", 300, &r);
    assert_true(r.admitted);
    lp_limiter_reconcile(f->l, t, 200, 200, 0, true); /* month: 1550 */
    lp_limiter_release(f->l, t);
    t = admit_key(f, "k", 300, &r);
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_KEY_MONTH);
    lp_limiter_release(f->l, t);
    /* a reload keeps the budgets' counters */
    fx_reconfigure(
        f, "keys: [{name: k, key: s1, budget: {tokens_per_day: 5000, tokens_per_month: 1600}}]\n");
    t = admit_key(f, "k", 300, &r);
    assert_true(r.admitted);     /* 1550 < 1600 */
    lp_limiter_release(f->l, t); /* settled at 300: 1850 */
    t = admit_key(f, "k", 300, &r);
    assert_false(r.admitted);
    lp_limiter_release(f->l, t);
    /* a rejected request that failed upstream is not charged */
    fx_reconfigure(
        f,
        "keys: [{name: k, key: s1, budget: {tokens_per_day: 5000, tokens_per_month: 100000}}]\n");
    t = admit_key(f, "k", 300, &r);
    assert_true(r.admitted);
    lp_limiter_reconcile(f->l, t, -1, -1, -1, false);
    lp_limiter_release(f->l, t);
    char *js = f->l->ops->keys_json(f->l, f->cfg);
    assert_non_null(strstr(js, "\"tokens_this_month\":1850"));
    free(js);
    fx_free(f);
}

static void test_key_concurrency(void **state)
{
    (void)state;
    struct fixture *f = fx_new("keys: [{name: k, key: s1, max_concurrent: 2}]\n");
    struct lp_limit_result r;
    struct lp_limit_ticket *a = admit_key(f, "k", 0, &r);
    assert_true(r.admitted);
    struct lp_limit_ticket *b = admit_key(f, "k", 0, &r);
    assert_true(r.admitted);
    struct lp_limit_ticket *c = admit_key(f, "k", 0, &r);
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_KEY_CONCURRENCY);
    lp_limiter_release(f->l, c);
    lp_limiter_release(f->l, a);
    c = admit_key(f, "k", 0, &r);
    assert_true(r.admitted);
    lp_limiter_release(f->l, b);
    lp_limiter_release(f->l, c);
    fx_free(f);
}

/* ---- the concurrency queue ----------------------------------------------------------------------
 */

struct waiter {
    int order;
    bool done;
    struct lp_limit_result res;
};

static int g_order;

static void on_done(void *arg, const struct lp_limit_result *res)
{
    struct waiter *w = arg;
    w->done = true;
    w->order = ++g_order;
    w->res = *res;
}

static void run_loop(struct event_base *base, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_queue_fifo_timeout_cancel(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fixture *f =
        fx_new("concurrency: {enabled: true, max_requests: 2, max_queue_size: 3}\n");
    struct lp_limit_query q = {.model = "m1", .max_wait_ms = 60000, .base = base};
    struct lp_limit_ticket *t[6];
    struct lp_limit_result r;
    struct waiter w[6] = {0};
    assert_true(lp_limiter_admit(f->l, &q, &t[0], &r, on_done, &w[0]));
    assert_true(r.admitted);
    assert_true(lp_limiter_admit(f->l, &q, &t[1], &r, on_done, &w[1]));
    assert_true(r.admitted);
    /* three wait, the fourth finds the queue full */
    for (int i = 2; i < 5; i++)
        assert_false(lp_limiter_admit(f->l, &q, &t[i], &r, on_done, &w[i]));
    assert_true(lp_limiter_admit(f->l, &q, &t[5], &r, on_done, &w[5]));
    assert_false(r.admitted);
    assert_int_equal(r.scope, LP_LIMIT_QUEUE_FULL);
    lp_limiter_release(f->l, t[5]);
    int in_flight, waiting;
    f->l->ops->queue_state(f->l, &in_flight, &waiting);
    assert_int_equal(in_flight, 2);
    assert_int_equal(waiting, 3);
    /* the second waiter leaves (client gone): its place is free at once */
    lp_limiter_release(f->l, t[3]);
    f->l->ops->queue_state(f->l, &in_flight, &waiting);
    assert_int_equal(waiting, 1 + 1);
    /* completions never run inside a call: only on the loop */
    lp_limiter_release(f->l, t[0]);
    lp_limiter_release(f->l, t[1]);
    assert_false(w[2].done);
    run_loop(base, 20);
    assert_true(w[2].done && w[2].res.admitted && w[2].res.queued);
    assert_true(w[4].done && w[4].res.admitted);
    assert_true(w[2].order < w[4].order); /* FIFO */
    assert_false(w[3].done);              /* cancelled: never called */
    f->l->ops->queue_state(f->l, &in_flight, &waiting);
    assert_int_equal(in_flight, 2);
    assert_int_equal(waiting, 0);
    /* a waiter that times out is refused with 503 queue_timeout */
    struct lp_limit_query q2 = {.model = "m1", .max_wait_ms = 30, .base = base};
    struct lp_limit_ticket *tt;
    struct waiter wt = {0};
    assert_false(lp_limiter_admit(f->l, &q2, &tt, &r, on_done, &wt));
    run_loop(base, 200);
    assert_true(wt.done);
    assert_false(wt.res.admitted);
    assert_int_equal(wt.res.scope, LP_LIMIT_QUEUE_TIMEOUT);
    assert_true(wt.res.waited_us >= 25000);
    lp_limiter_release(f->l, tt);
    f->l->ops->queue_state(f->l, &in_flight, &waiting);
    assert_int_equal(waiting, 0);
    /* a reload that raises max_requests admits waiters at once */
    struct waiter wr = {0};
    struct lp_limit_ticket *tr;
    assert_false(lp_limiter_admit(f->l, &q, &tr, &r, on_done, &wr));
    fx_reconfigure(f, "concurrency: {enabled: true, max_requests: 3, max_queue_size: 3}\n");
    run_loop(base, 20);
    assert_true(wr.done && wr.res.admitted);
    lp_limiter_release(f->l, tr);
    lp_limiter_release(f->l, t[2]);
    lp_limiter_release(f->l, t[4]);
    f->l->ops->queue_state(f->l, &in_flight, &waiting);
    assert_int_equal(in_flight, 0);
    fx_free(f);
    event_base_free(base);
}

static void test_queue_rejection_returns_key_holdings(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fixture *f = fx_new("concurrency: {enabled: true, max_requests: 1, max_queue_size: 0}\n"
                               "keys: [{name: k, key: s1, max_concurrent: 1, tpm: 100}]\n");
    struct lp_limit_query q = {.model = "m1", .max_wait_ms = 1000, .base = base};
    struct lp_limit_ticket *a, *b;
    struct lp_limit_result r;
    assert_true(lp_limiter_admit(f->l, &q, &a, &r, NULL, NULL)); /* no key: takes the slot */
    struct lp_limit_query qk = {
        .model = "m1", .key = "k", .est_tokens = 50, .max_wait_ms = 1000, .base = base};
    assert_true(lp_limiter_admit(f->l, &qk, &b, &r, NULL, NULL));
    assert_int_equal(r.scope, LP_LIMIT_QUEUE_FULL);
    lp_limiter_release(f->l, b);
    lp_limiter_release(f->l, a);
    /* the key's slot and its 50 tokens were given back */
    assert_true(lp_limiter_admit(f->l, &qk, &b, &r, NULL, NULL));
    assert_true(r.admitted);
    assert_int_equal(r.tokens.remaining, 50);
    lp_limiter_release(f->l, b);
    fx_free(f);
    event_base_free(base);
}

/* ---- backend slots ------------------------------------------------------------------------------
 */

struct slot_waiter {
    bool done;
    struct lp_backend_slot *slot;
};

static void on_slot(void *arg, struct lp_backend_slot *slot)
{
    struct slot_waiter *w = arg;
    w->done = true;
    w->slot = slot;
}

static void test_backend_slots(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct fixture *f = fx_new("");
    struct lp_backend_slot *s1, *s2, *s3, *sa;
    /* b: max_concurrent 2; a: unlimited */
    assert_true(lp_limiter_backend_try(f->l, "b", &s1));
    assert_true(lp_limiter_backend_try(f->l, "b", &s2));
    assert_false(lp_limiter_backend_try(f->l, "b", &s3));
    for (int i = 0; i < 50; i++) {
        assert_true(lp_limiter_backend_try(f->l, "a", &sa));
        lp_limiter_backend_done(f->l, sa, LP_BACKEND_OK, 1);
    }
    struct lp_backend_load ld;
    assert_true(f->l->ops->backend_load(f->l, "b", &ld));
    assert_int_equal(ld.in_flight, 2);
    assert_int_equal(ld.limit, 2);
    /* a waiter gets the next free slot; a newcomer does not overtake it */
    const char *names[] = {"b"};
    struct slot_waiter w = {0};
    struct lp_backend_wait *bw = f->l->ops->backend_wait(f->l, names, 1, 5000, base, on_slot, &w);
    assert_non_null(bw);
    lp_limiter_backend_done(f->l, s1, LP_BACKEND_OK, 1);
    assert_false(lp_limiter_backend_try(f->l, "b", &s3));
    assert_false(w.done);
    run_loop(base, 20);
    assert_true(w.done);
    assert_ptr_not_equal(w.slot, NULL);
    assert_string_equal(f->l->ops->slot_backend(w.slot), "b");
    lp_limiter_backend_done(f->l, w.slot, LP_BACKEND_NEUTRAL, 0);
    lp_limiter_backend_done(f->l, s2, LP_BACKEND_NEUTRAL, 0);
    assert_true(f->l->ops->backend_load(f->l, "b", &ld));
    assert_int_equal(ld.in_flight, 0);
    /* a wait that times out gets NULL; a cancelled one frees its place */
    assert_true(lp_limiter_backend_try(f->l, "b", &s1));
    assert_true(lp_limiter_backend_try(f->l, "b", &s2));
    struct slot_waiter w2 = {0}, w3 = {0};
    f->l->ops->backend_wait(f->l, names, 1, 20, base, on_slot, &w2);
    bw = f->l->ops->backend_wait(f->l, names, 1, 5000, base, on_slot, &w3);
    run_loop(base, 100);
    assert_true(w2.done);
    assert_null(w2.slot);
    assert_false(w3.done);
    f->l->ops->backend_cancel(f->l, bw);
    assert_true(f->l->ops->backend_load(f->l, "b", &ld));
    assert_int_equal(ld.waiting, 0);
    lp_limiter_backend_done(f->l, s1, LP_BACKEND_NEUTRAL, 0);
    lp_limiter_backend_done(f->l, s2, LP_BACKEND_NEUTRAL, 0);
    fx_free(f);
    event_base_free(base);
}

static void test_backend_adaptive(void **state)
{
    (void)state;
    struct fixture *f = fx_new("");
    lp_config_unref(f->cfg);
    f->cfg = load("backends:\n"
                  "  - {name: a, url: 'http://127.0.0.1:1/v1', max_concurrent: 8, "
                  "adaptive_concurrency: true}\n"
                  "models:\n  m1: [{backend: a, model: x}]\n");
    lp_limiter_configure(f->l, f->cfg);
    struct lp_backend_load ld;
    assert_true(f->l->ops->backend_load(f->l, "a", &ld));
    assert_true(ld.adaptive);
    assert_int_equal(ld.limit, 8);
    struct lp_backend_slot *s;
    assert_true(lp_limiter_backend_try(f->l, "a", &s));
    lp_limiter_backend_done(f->l, s, LP_BACKEND_OVERLOAD, 5);
    assert_true(f->l->ops->backend_load(f->l, "a", &ld));
    assert_int_equal(ld.limit, 4);
    /* at the adaptive limit the backend is saturated */
    struct lp_backend_slot *h[4];
    for (int i = 0; i < 4; i++)
        assert_true(lp_limiter_backend_try(f->l, "a", &h[i]));
    assert_false(lp_limiter_backend_try(f->l, "a", &s));
    for (int i = 0; i < 4; i++)
        lp_limiter_backend_done(f->l, h[i], LP_BACKEND_OK, 5);
    /* successes grow it back, never above the configured 8 */
    for (int i = 0; i < 200; i++) {
        f->clk.us += 1000;
        assert_true(lp_limiter_backend_try(f->l, "a", &s));
        lp_limiter_backend_done(f->l, s, LP_BACKEND_OK, 5);
    }
    assert_true(f->l->ops->backend_load(f->l, "a", &ld));
    assert_int_equal(ld.limit, 8);
    assert_int_equal(ld.max, 8);
    fx_free(f);
}

static void test_reload_keeps_buckets(void **state)
{
    (void)state;
    struct fixture *f =
        fx_new("rate_limit: {enabled: true, global_rps: 10, per_ip_rps: 0, burst_factor: 1}\n");
    assert_int_equal(admit_n(f->l, 8, NULL, "m1", NULL), 8);
    /* the same limit after a reload: the level (2 left) is kept, not refilled */
    fx_reconfigure(f,
                   "rate_limit: {enabled: true, global_rps: 10, per_ip_rps: 0, burst_factor: 1}\n");
    assert_int_equal(admit_n(f->l, 8, NULL, "m1", NULL), 2);
    /* a larger limit does not create tokens either; it refills faster */
    fx_reconfigure(
        f, "rate_limit: {enabled: true, global_rps: 100, per_ip_rps: 0, burst_factor: 1}\n");
    assert_int_equal(admit_n(f->l, 8, NULL, "m1", NULL), 0);
    f->clk.us += 100000;
    assert_int_equal(admit_n(f->l, 20, NULL, "m1", NULL), 10);
    /* turned off: everything passes */
    fx_reconfigure(f, "rate_limit: {enabled: false}\n");
    assert_int_equal(admit_n(f->l, 50, NULL, "m1", NULL), 50);
    fx_free(f);
}

int main(void)
{
    evthread_use_pthreads();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tbucket),
        cmocka_unit_test(test_aimd),
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_clientip_resolve),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_global_burst_and_refill),
        cmocka_unit_test(test_burst_minimum_one),
        cmocka_unit_test(test_per_model_and_refunds),
        cmocka_unit_test(test_per_ip),
        cmocka_unit_test(test_ip_eviction),
        cmocka_unit_test(test_key_rpm),
        cmocka_unit_test(test_key_tpm_reservation),
        cmocka_unit_test(test_key_budgets),
        cmocka_unit_test(test_key_concurrency),
        cmocka_unit_test(test_queue_fifo_timeout_cancel),
        cmocka_unit_test(test_queue_rejection_returns_key_holdings),
        cmocka_unit_test(test_backend_slots),
        cmocka_unit_test(test_backend_adaptive),
        cmocka_unit_test(test_reload_keeps_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
