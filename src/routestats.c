/* routestats.c - the balancer's shared numbers. See routestats.h for the contract. */
#include "routestats.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quota.h"
#include "util/alloc.h"
#include "util/json.h"

#define MAX_ALIASES 4096
/* Open-addressing tables (power of two, at least twice the entries they may hold). Entries are
 * only ever added (under the store's mutex, published with a release store) and freed with the
 * store, so lookups on the request path take no lock. */
#define ROUTE_SLOTS 8192
#define ALIAS_SLOTS 8192

struct lp_routestat {
    char *backend, *model;
    atomic_int in_flight;
    pthread_mutex_t mu;    /* the numbers below; per entry, so routes never contend */
    struct lp_ewma lat[2]; /* [0] head (non-stream), [1] first event (stream) */
    struct lp_ewma fail;
    int64_t decay_ms;          /* routing.decay of the last update (for views) */
    double headroom;           /* the upstream's last rate-limit reading (quota.h) */
    int64_t headroom_until_ms; /* ... valid until then (0: none) */
    int64_t cool_until_ms;     /* quota used up until then; only ever extended */
};

struct lp_route_alias {
    char *name;
    atomic_ullong next; /* round robin */
    pthread_mutex_t mu; /* budget and ttft */
    struct lp_hedge_budget budget;
    struct lp_hedge_window ttft;
};

struct lp_routestats {
    pthread_mutex_t lock; /* adding entries */
    _Atomic(struct lp_routestat *) items[ROUTE_SLOTS];
    size_t n;
    _Atomic(struct lp_route_alias *) aliases[ALIAS_SLOTS];
    size_t n_aliases;
};

static uint64_t hash2(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)a; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL; /* separator: ("ab","c") != ("a","bc") */
    for (const unsigned char *p = (const unsigned char *)(b ? b : ""); *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

struct lp_routestats *lp_routestats_create(void)
{
    struct lp_routestats *s = lp_xcalloc(1, sizeof *s);
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        abort(); /* only fails on resource exhaustion at boot */
    return s;
}

void lp_routestats_destroy(struct lp_routestats *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < ROUTE_SLOTS; i++) {
        struct lp_routestat *e = atomic_load_explicit(&s->items[i], memory_order_relaxed);
        if (!e)
            continue;
        free(e->backend);
        free(e->model);
        pthread_mutex_destroy(&e->mu);
        free(e);
    }
    for (size_t i = 0; i < ALIAS_SLOTS; i++) {
        struct lp_route_alias *a = atomic_load_explicit(&s->aliases[i], memory_order_relaxed);
        if (!a)
            continue;
        free(a->name);
        pthread_mutex_destroy(&a->mu);
        free(a);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The slot of (backend, model): its entry, or the empty slot where it belongs. Lock-free. */
static size_t route_slot(struct lp_routestats *s, const char *backend, const char *model,
                         struct lp_routestat **found)
{
    size_t i = (size_t)hash2(backend, model) & (ROUTE_SLOTS - 1);
    for (;; i = (i + 1) & (ROUTE_SLOTS - 1)) {
        struct lp_routestat *e = atomic_load_explicit(&s->items[i], memory_order_acquire);
        if (!e || (strcmp(e->backend, backend) == 0 && strcmp(e->model, model) == 0)) {
            *found = e;
            return i;
        }
    }
}

static struct lp_routestat *find(struct lp_routestats *s, const char *backend, const char *model)
{
    struct lp_routestat *e;
    route_slot(s, backend, model, &e);
    return e;
}

struct lp_routestat *lp_routestats_get(struct lp_routestats *s, const char *backend,
                                       const char *model)
{
    if (!s || !backend || !model)
        return NULL;
    struct lp_routestat *e = find(s, backend, model);
    if (e)
        return e;
    pthread_mutex_lock(&s->lock);
    size_t i = route_slot(s, backend, model, &e); /* again: another thread may have added it */
    if (!e && s->n < LP_ROUTESTATS_MAX) {
        e = lp_xcalloc(1, sizeof *e);
        e->backend = lp_xstrdup(backend);
        e->model = lp_xstrdup(model);
        atomic_init(&e->in_flight, 0);
        pthread_mutex_init(&e->mu, NULL);
        e->decay_ms = 10000;
        atomic_store_explicit(&s->items[i], e, memory_order_release);
        s->n++;
    }
    pthread_mutex_unlock(&s->lock);
    return e;
}

void lp_routestats_item(struct lp_routestats *s, struct lp_routestat *e, bool stream,
                        int64_t now_ms, int64_t decay_ms, struct lp_balance_item *out)
{
    out->latency_ms = -1;
    out->in_flight = 0;
    out->failures = 0;
    out->share = 1.0;
    out->cool_until_ms = 0;
    if (!s || !e)
        return;
    out->in_flight = atomic_load_explicit(&e->in_flight, memory_order_relaxed);
    pthread_mutex_lock(&e->mu);
    out->latency_ms = lp_ewma_read(&e->lat[stream ? 1 : 0], now_ms, decay_ms);
    double f = lp_ewma_read(&e->fail, now_ms, decay_ms);
    out->failures = f > 0 ? f : 0;
    if (now_ms < e->headroom_until_ms)
        out->share = lp_quota_share(e->headroom);
    out->cool_until_ms = e->cool_until_ms;
    pthread_mutex_unlock(&e->mu);
}

void lp_routestats_quota(struct lp_routestats *s, struct lp_routestat *e,
                         const struct lp_quota_reading *q, int64_t now_ms)
{
    if (!s || !e || !q || !q->seen)
        return;
    pthread_mutex_lock(&e->mu);
    if (q->exhausted) {
        int64_t until = now_ms + q->reset_ms;
        if (until > e->cool_until_ms) /* a later answer never shortens the rest */
            e->cool_until_ms = until;
        e->headroom = 0;
        e->headroom_until_ms = e->cool_until_ms;
    } else {
        int64_t valid = q->reset_ms > 0 ? q->reset_ms : LP_ROUTESTATS_QUOTA_VALID_MS;
        if (valid > LP_ROUTESTATS_QUOTA_VALID_MS)
            valid = LP_ROUTESTATS_QUOTA_VALID_MS;
        if (valid < 1000)
            valid = 1000;
        e->headroom = q->headroom;
        e->headroom_until_ms = now_ms + valid;
        if (e->headroom_until_ms < e->cool_until_ms)
            e->headroom_until_ms = e->cool_until_ms;
    }
    pthread_mutex_unlock(&e->mu);
}

void lp_routestats_begin(struct lp_routestat *e)
{
    if (e)
        atomic_fetch_add_explicit(&e->in_flight, 1, memory_order_relaxed);
}

void lp_routestats_end(struct lp_routestat *e)
{
    if (e)
        atomic_fetch_sub_explicit(&e->in_flight, 1, memory_order_relaxed);
}

void lp_routestats_latency(struct lp_routestats *s, struct lp_routestat *e, bool stream, double ms,
                           int64_t now_ms, int64_t decay_ms)
{
    if (!s || !e)
        return;
    pthread_mutex_lock(&e->mu);
    lp_ewma_observe(&e->lat[stream ? 1 : 0], ms, now_ms, decay_ms);
    e->decay_ms = decay_ms;
    pthread_mutex_unlock(&e->mu);
}

void lp_routestats_silent(struct lp_routestats *s, struct lp_routestat *e, bool stream, double ms,
                          int64_t now_ms, int64_t decay_ms)
{
    if (!s || !e)
        return;
    pthread_mutex_lock(&e->mu);
    lp_ewma_at_least(&e->lat[stream ? 1 : 0], ms, now_ms, decay_ms);
    e->decay_ms = decay_ms;
    pthread_mutex_unlock(&e->mu);
}

void lp_routestats_failure(struct lp_routestats *s, struct lp_routestat *e, int64_t now_ms,
                           int64_t decay_ms)
{
    if (!s || !e)
        return;
    pthread_mutex_lock(&e->mu);
    lp_ewma_add(&e->fail, 1.0, now_ms, decay_ms);
    e->decay_ms = decay_ms;
    pthread_mutex_unlock(&e->mu);
}

static size_t alias_slot(struct lp_routestats *s, const char *alias, struct lp_route_alias **found)
{
    size_t i = (size_t)hash2(alias, NULL) & (ALIAS_SLOTS - 1);
    for (;; i = (i + 1) & (ALIAS_SLOTS - 1)) {
        struct lp_route_alias *a = atomic_load_explicit(&s->aliases[i], memory_order_acquire);
        if (!a || strcmp(a->name, alias) == 0) {
            *found = a;
            return i;
        }
    }
}

struct lp_route_alias *lp_routestats_alias(struct lp_routestats *s, const char *alias)
{
    if (!s || !alias)
        return NULL;
    struct lp_route_alias *r;
    alias_slot(s, alias, &r);
    if (r)
        return r;
    pthread_mutex_lock(&s->lock);
    size_t i = alias_slot(s, alias, &r);
    if (!r && s->n_aliases < MAX_ALIASES) {
        r = lp_xcalloc(1, sizeof *r);
        r->name = lp_xstrdup(alias);
        atomic_init(&r->next, 0);
        pthread_mutex_init(&r->mu, NULL);
        atomic_store_explicit(&s->aliases[i], r, memory_order_release);
        s->n_aliases++;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

uint64_t lp_routestats_rr_next(struct lp_routestats *s, const char *alias)
{
    struct lp_route_alias *r = lp_routestats_alias(s, alias);
    return r ? atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed) : 0;
}

void lp_routestats_hedge_credit(struct lp_routestats *s, struct lp_route_alias *a,
                                int budget_percent)
{
    if (!s || !a)
        return;
    pthread_mutex_lock(&a->mu);
    lp_hedge_budget_credit(&a->budget, budget_percent);
    pthread_mutex_unlock(&a->mu);
}

bool lp_routestats_hedge_take(struct lp_routestats *s, struct lp_route_alias *a)
{
    if (!s || !a)
        return false;
    pthread_mutex_lock(&a->mu);
    bool ok = lp_hedge_budget_take(&a->budget);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void lp_routestats_ttft(struct lp_routestats *s, struct lp_route_alias *a, double ms)
{
    if (!s || !a)
        return;
    pthread_mutex_lock(&a->mu);
    lp_hedge_window_add(&a->ttft, ms);
    pthread_mutex_unlock(&a->mu);
}

int64_t lp_routestats_hedge_delay(struct lp_routestats *s, struct lp_route_alias *a,
                                  const struct lp_hedge_cfg *h)
{
    if (!s || !a || h->delay_pct <= 0)
        return lp_hedge_delay_ms(h, NULL);
    pthread_mutex_lock(&a->mu);
    int64_t d = lp_hedge_delay_ms(h, &a->ttft);
    pthread_mutex_unlock(&a->mu);
    return d;
}

double lp_routestats_hedge_tokens(struct lp_routestats *s, const char *alias)
{
    double t = LP_HEDGE_BUDGET_START;
    struct lp_route_alias *a = NULL;
    if (!s || !alias)
        return t;
    alias_slot(s, alias, &a);
    if (!a)
        return t;
    pthread_mutex_lock(&a->mu);
    if (a->budget.started)
        t = a->budget.tokens;
    pthread_mutex_unlock(&a->mu);
    return t;
}

bool lp_routestats_view(struct lp_routestats *s, const char *backend, const char *model,
                        int64_t now_ms, struct lp_routestat_view *out)
{
    if (!s || !backend || !model)
        return false;
    struct lp_routestat *e = find(s, backend, model);
    if (e) {
        pthread_mutex_lock(&e->mu);
        for (int k = 0; k < 2; k++) {
            out->latency_ms[k] = lp_ewma_read(&e->lat[k], now_ms, e->decay_ms);
            out->samples[k] = e->lat[k].n;
        }
        double f = lp_ewma_read(&e->fail, now_ms, e->decay_ms);
        out->failure_score = f > 0 ? f : 0;
        out->in_flight = atomic_load_explicit(&e->in_flight, memory_order_relaxed);
        out->headroom = now_ms < e->headroom_until_ms ? e->headroom : -1;
        out->cooling_until_ms = e->cool_until_ms > now_ms ? e->cool_until_ms : 0;
        pthread_mutex_unlock(&e->mu);
    }
    return e != NULL;
}

static struct json_object *ms_or_null(double ms)
{
    return ms >= 0 ? json_object_new_double((double)(int64_t)(ms * 10.0) / 10.0) : NULL;
}

struct json_object *lp_routing_cfg_json(const struct lp_routing_cfg *r)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "strategy", lp_strategy_name(r->strategy));
    lp_json_set_int(o, "decay_ms", r->decay_ms);
    if (r->hedge.enabled) {
        struct json_object *h = json_object_new_object();
        if (r->hedge.delay_pct > 0) {
            char p[16];
            snprintf(p, sizeof p, "p%d", r->hedge.delay_pct);
            lp_json_set_str(h, "delay", p);
        } else {
            lp_json_set_int(h, "delay_ms", r->hedge.delay_ms);
        }
        lp_json_set_int(h, "max_extra", r->hedge.max_extra);
        lp_json_set_int(h, "budget_percent", r->hedge.budget_percent);
        lp_json_set(o, "hedge", h);
    } else {
        lp_json_set(o, "hedge", NULL);
    }
    return o;
}

char *lp_routestats_backends_json(struct lp_routestats *s, const struct lp_config *cfg,
                                  char *health_json, int64_t now_ms)
{
    struct json_object *root = lp_json_parse(health_json, strlen(health_json), NULL);
    struct json_object *arr = root ? lp_json_get_arr(root, "backends") : NULL;
    if (!arr) {
        if (root)
            json_object_put(root);
        return health_json;
    }
    for (size_t i = 0; i < lp_json_arr_len(arr); i++) {
        struct json_object *b = lp_json_arr_at(arr, i);
        const char *bname = lp_json_get_str(b, "name");
        struct json_object *models = lp_json_get_arr(b, "models");
        for (size_t k = 0; bname && models && k < lp_json_arr_len(models); k++) {
            struct json_object *m = lp_json_arr_at(models, k);
            const char *mname = lp_json_get_str(m, "model");
            struct lp_routestat_view v = {{-1, -1}, {0, 0}, 0, 0, -1, 0};
            if (!mname)
                continue;
            lp_routestats_view(s, bname, mname, now_ms, &v);
            struct json_object *o = json_object_new_object(), *lat = json_object_new_object(),
                               *n = json_object_new_object();
            lp_json_set(lat, "head", ms_or_null(v.latency_ms[0]));
            lp_json_set(lat, "first_event", ms_or_null(v.latency_ms[1]));
            lp_json_set_int(n, "head", v.samples[0]);
            lp_json_set_int(n, "first_event", v.samples[1]);
            lp_json_set(o, "latency_ms", lat);
            lp_json_set(o, "samples", n);
            lp_json_set_int(o, "in_flight", v.in_flight);
            lp_json_set(o, "failure_score",
                        json_object_new_double((double)(int64_t)(v.failure_score * 1000) / 1000));
            lp_json_set(o, "ratelimit_headroom",
                        v.headroom >= 0
                            ? json_object_new_double((double)(int64_t)(v.headroom * 1000) / 1000)
                            : NULL);
            lp_json_set_bool(o, "ratelimit_exhausted", v.cooling_until_ms > 0);
            if (v.cooling_until_ms > 0)
                lp_json_set_int(o, "ratelimit_reset_in_ms", v.cooling_until_ms - now_ms);
            lp_json_set(m, "balancer", o);
        }
    }
    struct json_object *r = lp_routing_cfg_json(&cfg->routing), *al = json_object_new_object();
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        struct json_object *a = lp_routing_cfg_json(&cfg->aliases[i].routing);
        if (cfg->aliases[i].routing.hedge.enabled)
            lp_json_set(
                a, "hedge_budget_tokens",
                json_object_new_double(
                    (double)(int64_t)(lp_routestats_hedge_tokens(s, cfg->aliases[i].name) * 100) /
                    100));
        lp_json_set(al, cfg->aliases[i].name, a);
    }
    lp_json_set(r, "aliases", al);
    lp_json_set(root, "routing", r);
    char *out = lp_xstrdup(lp_json_dump(root, NULL));
    json_object_put(root);
    free(health_json);
    return out;
}
