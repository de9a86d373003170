/* health.c - see health.h. One rwlock guards everything; records live in two small arrays
 * searched linearly (a gateway has tens of backends and pairs, not thousands). */
#include "health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker.h"
#include "util/assert.h"
#include "util/alloc.h"
#include "util/json.h"

struct pair_rec {
    char *backend;
    char *model;
    int64_t cool_until; /* monotonic ms; cooling while now < cool_until */
    int64_t cool_set;   /* monotonic ms when the current cooldown was (last) set */
    bool trial;         /* a cooldown was set: after it, admit trials until a success */
    int trials;         /* trial attempts in flight */
    enum lp_err_class cool_cls;
    char cool_reason[128];
    enum lp_err_class last_cls; /* LP_CLASS_OK when no error recorded */
    int64_t last_wall;          /* Unix ms of the last error */
    int64_t last_mono;          /* for recycling the oldest record */
};

struct backend_rec {
    char *name;
    bool drained;
    struct lp_breaker breaker;
    enum lp_err_class last_cls;
    int64_t last_wall;
    char last_reason[128];
    uint64_t n_errors;
    struct {          /* active health probes */
        bool claimed; /* a worker runs one now */
        int64_t claimed_at;
        bool down; /* marked down by probes: not routed to until one passes */
        int ok_streak, fail_streak;
        int64_t next_mono; /* the next probe is due at (0 = now) */
        bool any;          /* probed at least once */
        bool last_ok;
        int64_t last_wall, last_ms;
        char last_reason[96];
        uint64_t passes, fails;
    } probe;
};

struct lp_health {
    pthread_rwlock_t lock;
    struct pair_rec *pairs;
    size_t n_pairs, cap_pairs;
    struct backend_rec *backends;
    size_t n_backends, cap_backends;
    struct lp_breaker_cfg breaker_cfg; /* from the last configured snapshot */
    atomic_bool breakers_enabled;
    bool configured; /* lp_health_configure has run: calls no longer adopt their snapshot */
    lp_health_observer_fn observer; /* set before workers start (cluster.c) */
    void *observer_ctx;
};

struct lp_health *lp_health_create(void)
{
    struct lp_health *h = lp_xcalloc(1, sizeof *h);
    if (pthread_rwlock_init(&h->lock, NULL) != 0)
        abort(); /* only fails on resource exhaustion at boot */
    h->breaker_cfg = lp_breaker_cfg_from(NULL);
    atomic_init(&h->breakers_enabled, false);
    return h;
}

void lp_health_destroy(struct lp_health *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n_pairs; i++) {
        free(h->pairs[i].backend);
        free(h->pairs[i].model);
    }
    for (size_t i = 0; i < h->n_backends; i++)
        free(h->backends[i].name);
    free(h->pairs);
    free(h->backends);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

/* ---- lookups (caller holds the lock) --------------------------------------------------------- */

static struct backend_rec *find_backend(struct lp_health *h, const char *name)
{
    for (size_t i = 0; i < h->n_backends; i++)
        if (strcmp(h->backends[i].name, name) == 0)
            return &h->backends[i];
    return NULL;
}

static struct backend_rec *get_backend(struct lp_health *h, const char *name)
{
    struct backend_rec *b = find_backend(h, name);
    if (b)
        return b;
    if (h->n_backends == h->cap_backends) {
        h->cap_backends = h->cap_backends ? h->cap_backends * 2 : 8;
        h->backends = lp_xrealloc(h->backends, h->cap_backends * sizeof *h->backends);
    }
    b = &h->backends[h->n_backends++];
    memset(b, 0, sizeof *b);
    b->name = lp_xstrdup(name);
    lp_breaker_init(&b->breaker, &h->breaker_cfg);
    return b;
}

static struct pair_rec *find_pair(struct lp_health *h, const char *backend, const char *model)
{
    for (size_t i = 0; i < h->n_pairs; i++)
        if (strcmp(h->pairs[i].model, model) == 0 && strcmp(h->pairs[i].backend, backend) == 0)
            return &h->pairs[i];
    return NULL;
}

/* The record to reuse when the table is full: the least recently failed without an active
 * cooldown, or NULL when every record is cooling. */
static struct pair_rec *recyclable_pair(struct lp_health *h, int64_t now_mono)
{
    struct pair_rec *best = NULL;
    for (size_t i = 0; i < h->n_pairs; i++) {
        struct pair_rec *p = &h->pairs[i];
        if (now_mono < p->cool_until)
            continue;
        if (!best || p->last_mono < best->last_mono)
            best = p;
    }
    return best;
}

static struct pair_rec *get_pair(struct lp_health *h, const char *backend, const char *model,
                                 int64_t now_mono)
{
    struct pair_rec *p = find_pair(h, backend, model);
    if (p)
        return p;
    if (h->n_pairs >= LP_HEALTH_MAX_PAIRS) {
        p = recyclable_pair(h, now_mono);
        if (!p)
            return NULL;
        free(p->backend);
        free(p->model);
    } else {
        if (h->n_pairs == h->cap_pairs) {
            h->cap_pairs = h->cap_pairs ? h->cap_pairs * 2 : 16;
            h->pairs = lp_xrealloc(h->pairs, h->cap_pairs * sizeof *h->pairs);
        }
        p = &h->pairs[h->n_pairs++];
    }
    memset(p, 0, sizeof *p);
    p->backend = lp_xstrdup(backend);
    p->model = lp_xstrdup(model);
    return p;
}

/* ---- configuration --------------------------------------------------------------------------- */

/* Adopt cfg's breaker settings; the caller holds the write lock. */
static void adopt_cfg(struct lp_health *h, const struct lp_config *cfg)
{
    if (!cfg)
        return;
    atomic_store(&h->breakers_enabled, cfg->fallback.enable_circuit_breaker);
    struct lp_breaker_cfg bc = lp_breaker_cfg_from(&cfg->fallback);
    const struct lp_breaker_cfg *old = &h->breaker_cfg;
    if (bc.failure_threshold == old->failure_threshold &&
        bc.success_threshold == old->success_threshold &&
        bc.open_timeout_ms == old->open_timeout_ms && bc.half_open_max == old->half_open_max)
        return;
    h->breaker_cfg = bc;
    for (size_t i = 0; i < h->n_backends; i++)
        lp_breaker_reconfigure(&h->backends[i].breaker, &bc);
}

/* Reports and admission checks carry the caller's snapshot. Once lp_health_configure has run
 * (boot and every reload), only it sets the breaker settings: a request still holding the
 * pre-reload snapshot must not switch them back. Before that (unit tests, tools), the snapshot
 * of the call is adopted. */
static void adopt_cfg_from_call(struct lp_health *h, const struct lp_config *cfg)
{
    if (!h->configured)
        adopt_cfg(h, cfg);
}

void lp_health_configure(struct lp_health *h, const struct lp_config *cfg)
{
    pthread_rwlock_wrlock(&h->lock);
    h->configured = true;
    adopt_cfg(h, cfg);
    pthread_rwlock_unlock(&h->lock);
}

static bool breakers_on(struct lp_health *h, const struct lp_config *cfg)
{
    return cfg ? cfg->fallback.enable_circuit_breaker : atomic_load(&h->breakers_enabled);
}

/* Post-cooldown trials admitted at once (the breaker's half-open probe count). */
static int trial_max(const struct lp_health *h)
{
    return h->breaker_cfg.half_open_max > 0 ? h->breaker_cfg.half_open_max : 1;
}

/* ---- reads ----------------------------------------------------------------------------------- */

enum lp_route_state lp_health_route_state(struct lp_health *h, const struct lp_config *cfg,
                                          const struct lp_backend *b, const char *model,
                                          int64_t now_mono, int64_t *until_ms)
{
    int64_t until = 0;
    enum lp_route_state st = LP_ROUTE_USABLE;
    bool breakers = breakers_on(h, cfg);
    pthread_rwlock_rdlock(&h->lock);
    struct backend_rec *br = find_backend(h, b->name);
    struct pair_rec *p = model ? find_pair(h, b->name, model) : NULL;
    if (br && br->drained) {
        st = LP_ROUTE_DRAINED;
    } else if (br && br->probe.down && b->health_check.enabled) {
        st = LP_ROUTE_OPEN; /* marked down by active probes, until one passes */
        until = br->probe.next_mono;
    } else if (br && breakers && !lp_breaker_would_allow(&br->breaker, now_mono)) {
        st = LP_ROUTE_OPEN;
        until = lp_breaker_open_until(&br->breaker);
    } else if (p && now_mono < p->cool_until) {
        st = LP_ROUTE_COOLING;
        until = p->cool_until;
    } else if (p && p->trial && p->trials >= trial_max(h)) {
        st = LP_ROUTE_COOLING; /* after its cooldown, every trial slot is taken */
    }
    pthread_rwlock_unlock(&h->lock);
    if (until_ms)
        *until_ms = until;
    return st;
}

enum lp_route_state lp_health_state_fn(void *ctx, const struct lp_backend *b, const char *model,
                                       int64_t now_mono, int64_t *until_ms)
{
    return lp_health_route_state(ctx, NULL, b, model, now_mono, until_ms);
}

bool lp_health_is_drained(struct lp_health *h, const char *backend)
{
    pthread_rwlock_rdlock(&h->lock);
    struct backend_rec *b = find_backend(h, backend);
    bool d = b && b->drained;
    pthread_rwlock_unlock(&h->lock);
    return d;
}

int lp_health_breaker_gauge(struct lp_health *h, const char *backend, int64_t now_mono)
{
    if (!atomic_load(&h->breakers_enabled))
        return LP_BREAKER_CLOSED;
    pthread_rwlock_rdlock(&h->lock);
    struct backend_rec *b = find_backend(h, backend);
    int st = b ? (int)lp_breaker_state(&b->breaker, now_mono) : LP_BREAKER_CLOSED;
    pthread_rwlock_unlock(&h->lock);
    return st;
}

bool lp_health_pair_cooling(struct lp_health *h, const char *backend, const char *model,
                            int64_t now_mono)
{
    pthread_rwlock_rdlock(&h->lock);
    struct pair_rec *p = find_pair(h, backend, model);
    bool cooling = p && now_mono < p->cool_until;
    pthread_rwlock_unlock(&h->lock);
    return cooling;
}

/* ---- breaker admission and outcomes ---------------------------------------------------------- */

bool lp_health_admit(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                     const char *model, int64_t now_mono, struct lp_health_ticket *t)
{
    memset(t, 0, sizeof *t);
    if (cfg)
        atomic_store(&h->breakers_enabled, cfg->fallback.enable_circuit_breaker);
    bool breakers = breakers_on(h, cfg);
    bool ok = true;
    pthread_rwlock_wrlock(&h->lock);
    adopt_cfg_from_call(h, cfg);
    struct pair_rec *p = model ? find_pair(h, backend, model) : NULL;
    /* A trial slot first (no side effect yet), then the breaker (which may take a probe slot). */
    bool trial = p && p->trial && now_mono >= p->cool_until;
    if (trial && p->trials >= trial_max(h))
        ok = false;
    if (ok && breakers) {
        uint32_t gen = 0;
        ok = lp_breaker_allow(&get_backend(h, backend)->breaker, now_mono, &gen);
        t->breaker = ok;
        t->breaker_gen = gen;
    }
    if (ok && trial) {
        p->trials++;
        t->trial = true;
    }
    pthread_rwlock_unlock(&h->lock);
    t->held = ok;
    t->started_mono = now_mono;
    return ok;
}

/* Take the ticket for a report; false when it was already consumed (or never held). */
static bool consume(struct lp_health_ticket *t)
{
    if (!t || LP_COUNT_IF(!t->held))
        return false;
    t->held = false;
    return true;
}

/* Free the ticket's trial slot; the caller holds the write lock. */
static struct pair_rec *end_trial(struct lp_health *h, const char *backend, const char *model,
                                  const struct lp_health_ticket *t)
{
    struct pair_rec *p = model ? find_pair(h, backend, model) : NULL;
    if (p && t->trial && p->trials > 0)
        p->trials--;
    return p;
}

void lp_health_release(struct lp_health *h, const char *backend, const char *model,
                       struct lp_health_ticket *t)
{
    if (!consume(t))
        return;
    pthread_rwlock_wrlock(&h->lock);
    end_trial(h, backend, model, t);
    struct backend_rec *b = t->breaker ? find_backend(h, backend) : NULL;
    if (b)
        lp_breaker_release(&b->breaker, t->breaker_gen);
    pthread_rwlock_unlock(&h->lock);
}

static void breaker_outcome(struct backend_rec *b, bool failure, int64_t now_mono,
                            const struct lp_health_ticket *t)
{
    if (failure)
        lp_breaker_on_failure(&b->breaker, now_mono, t->breaker_gen);
    else
        lp_breaker_on_success(&b->breaker, now_mono, t->breaker_gen, t->started_mono);
}

/* Returns the new expiry when the cooldown was set or extended, else 0. */
static int64_t record_pair_failure(struct lp_health *h, const char *backend, const char *model,
                                   const struct lp_decision *d, int64_t now_mono, int64_t now_wall)
{
    struct pair_rec *p = get_pair(h, backend, model, now_mono);
    if (!p)
        return 0; /* table full of active cooldowns: drop the record, never block */
    p->last_cls = d->cls;
    p->last_wall = now_wall;
    p->last_mono = now_mono;
    if (!d->cooldown)
        return 0;
    int64_t ms = d->cooldown_ms > 0 ? d->cooldown_ms : 0;
    int64_t until = now_mono + ms;
    p->trial = true; /* after this cooldown, trials until a success */
    p->cool_set = now_mono;
    if (until <= p->cool_until) /* extend, never shorten */
        return 0;
    p->cool_until = until;
    p->cool_cls = d->cls;
    snprintf(p->cool_reason, sizeof p->cool_reason, "%s", d->reason);
    return until;
}

static void notify(struct lp_health *h, const struct lp_health_event *ev)
{
    if (h->observer)
        h->observer(h->observer_ctx, ev);
}

void lp_health_set_observer(struct lp_health *h, lp_health_observer_fn fn, void *ctx)
{
    pthread_rwlock_wrlock(&h->lock);
    h->observer = fn;
    h->observer_ctx = ctx;
    pthread_rwlock_unlock(&h->lock);
}

void lp_health_report_failure(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                              const char *model, const struct lp_decision *d, int64_t now_mono,
                              int64_t now_wall, struct lp_health_ticket *t)
{
    if (!backend || !d || !consume(t))
        return;
    pthread_rwlock_wrlock(&h->lock);
    adopt_cfg_from_call(h, cfg);
    end_trial(h, backend, model, t);
    struct backend_rec *b = get_backend(h, backend);
    b->last_cls = d->cls;
    b->last_wall = now_wall;
    b->n_errors++;
    snprintf(b->last_reason, sizeof b->last_reason, "%s", d->reason);
    int64_t cooled = model ? record_pair_failure(h, backend, model, d, now_mono, now_wall) : 0;
    uint64_t opened_before = b->breaker.times_opened;
    if (t->breaker)
        breaker_outcome(b, d->breaker_failure, now_mono, t);
    bool opened = b->breaker.times_opened != opened_before;
    int64_t open_until = opened ? lp_breaker_open_until(&b->breaker) : 0;
    pthread_rwlock_unlock(&h->lock);
    if (cooled) {
        struct lp_health_event ev = {.kind = LP_HEALTH_EV_COOLDOWN,
                                     .backend = backend,
                                     .model = model,
                                     .until_mono = cooled,
                                     .cls = d->cls,
                                     .reason = d->reason};
        notify(h, &ev);
    }
    if (opened) {
        struct lp_health_event ev = {
            .kind = LP_HEALTH_EV_OPEN, .backend = backend, .until_mono = open_until};
        notify(h, &ev);
    }
}

void lp_health_report_success(struct lp_health *h, const struct lp_config *cfg, const char *backend,
                              const char *model, int64_t now_mono, struct lp_health_ticket *t)
{
    if (!backend || !consume(t))
        return;
    pthread_rwlock_wrlock(&h->lock);
    adopt_cfg_from_call(h, cfg);
    struct pair_rec *p = end_trial(h, backend, model, t);
    if (p && p->cool_set <= t->started_mono) {
        /* Evidence that the pair works, newer than its last cooldown: end it and the trial. */
        p->cool_until = 0;
        p->trial = false;
    }
    struct backend_rec *b = t->breaker ? find_backend(h, backend) : NULL;
    if (b)
        breaker_outcome(b, false, now_mono, t);
    pthread_rwlock_unlock(&h->lock);
}

/* ---- active health probes -------------------------------------------------------------------- */

#define PROBE_CLAIM_TTL_MS 60000

/* Cooldown classes a passing probe may end: those a working endpoint disproves. Rate limits,
 * quotas and unknown models are about the account or the model, not reachability. */
static bool probe_can_end(enum lp_err_class c)
{
    return c == LP_CLASS_NETWORK || c == LP_CLASS_TIMEOUT || c == LP_CLASS_SERVER ||
           c == LP_CLASS_OVERLOADED || c == LP_CLASS_AUTH;
}

/* Whether the backend is out of rotation for a reason a probe can test; lock held. */
static bool backend_out(struct lp_health *h, struct backend_rec *b, bool breakers, int64_t now_mono)
{
    if (b->probe.down)
        return true;
    if (breakers && lp_breaker_state(&b->breaker, now_mono) != LP_BREAKER_CLOSED)
        return true;
    for (size_t i = 0; i < h->n_pairs; i++) {
        const struct pair_rec *p = &h->pairs[i];
        if (strcmp(p->backend, b->name) == 0 && probe_can_end(p->cool_cls) &&
            (now_mono < p->cool_until || p->trial))
            return true;
    }
    return false;
}

bool lp_health_probe_claim(struct lp_health *h, const struct lp_config *cfg,
                           const struct lp_backend *be, int64_t now_mono)
{
    const struct lp_health_check *hc = &be->health_check;
    if (!hc->enabled)
        return false;
    bool breakers = breakers_on(h, cfg);
    bool claimed = false;
    pthread_rwlock_wrlock(&h->lock);
    struct backend_rec *b = get_backend(h, be->name);
    if (b->probe.claimed && now_mono - b->probe.claimed_at < PROBE_CLAIM_TTL_MS)
        goto out;
    if (now_mono < b->probe.next_mono)
        goto out;
    bool out = backend_out(h, b, breakers, now_mono);
    if (!out && hc->idle_interval_ms <= 0)
        goto out;
    b->probe.claimed = true;
    b->probe.claimed_at = now_mono;
    claimed = true;
out:
    pthread_rwlock_unlock(&h->lock);
    return claimed;
}

void lp_health_probe_release(struct lp_health *h, const char *backend, int64_t now_mono,
                             int64_t retry_in_ms)
{
    pthread_rwlock_wrlock(&h->lock);
    struct backend_rec *b = find_backend(h, backend);
    if (b) {
        b->probe.claimed = false;
        b->probe.next_mono = now_mono + (retry_in_ms > 0 ? retry_in_ms : 0);
    }
    pthread_rwlock_unlock(&h->lock);
}

/* A passing probe's effect (lock held): cooldowns and breaker openings older than it end. */
static void probe_restore(struct lp_health *h, struct backend_rec *b, int64_t started_mono)
{
    for (size_t i = 0; i < h->n_pairs; i++) {
        struct pair_rec *p = &h->pairs[i];
        if (strcmp(p->backend, b->name) != 0 || !probe_can_end(p->cool_cls) ||
            p->cool_set > started_mono)
            continue;
        p->cool_until = 0;
        p->trial = false;
    }
    lp_breaker_force_close(&b->breaker, started_mono);
    b->probe.down = false;
}

int lp_health_probe_done(struct lp_health *h, const struct lp_backend *be, bool ok,
                         const char *reason, int64_t started_mono, int64_t now_mono,
                         int64_t now_wall)
{
    const struct lp_health_check *hc = &be->health_check;
    bool breakers = atomic_load(&h->breakers_enabled);
    int change = 0;
    pthread_rwlock_wrlock(&h->lock);
    struct backend_rec *b = get_backend(h, be->name);
    bool was_down = b->probe.down;
    bool out = backend_out(h, b, breakers, now_mono);
    b->probe.claimed = false;
    b->probe.any = true;
    b->probe.last_ok = ok;
    b->probe.last_wall = now_wall;
    b->probe.last_ms = now_mono - started_mono;
    snprintf(b->probe.last_reason, sizeof b->probe.last_reason, "%s", reason ? reason : "");
    if (ok) {
        b->probe.passes++;
        b->probe.fail_streak = 0;
        if (++b->probe.ok_streak >= (hc->healthy_after > 0 ? hc->healthy_after : 1) && out) {
            probe_restore(h, b, started_mono);
            change = 1;
        }
    } else {
        b->probe.fails++;
        b->probe.ok_streak = 0;
        b->probe.fail_streak++;
        if (out || b->probe.fail_streak >= (hc->unhealthy_after > 0 ? hc->unhealthy_after : 3))
            b->probe.down = true;
        if (b->probe.down && !was_down)
            change = -1;
    }
    bool still_out = backend_out(h, b, breakers, now_mono);
    int64_t gap = still_out || hc->idle_interval_ms <= 0 ? hc->interval_ms : hc->idle_interval_ms;
    b->probe.next_mono = now_mono + (gap > 0 ? gap : 10000);
    pthread_rwlock_unlock(&h->lock);
    return change;
}

bool lp_health_probe_stats(struct lp_health *h, const char *backend, struct lp_probe_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&h->lock);
    struct backend_rec *b = find_backend(h, backend);
    bool any = b && b->probe.any;
    if (any) {
        out->passes = b->probe.passes;
        out->fails = b->probe.fails;
        out->down = b->probe.down;
        out->last_duration_ms = b->probe.last_ms;
    }
    pthread_rwlock_unlock(&h->lock);
    return any;
}

static void set_iso(struct json_object *o, const char *key, int64_t unix_ms);

static struct json_object *probe_json(const struct backend_rec *b)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_bool(o, "down", b && b->probe.down);
    if (b && b->probe.any) {
        lp_json_set_bool(o, "last_ok", b->probe.last_ok);
        lp_json_set_int(o, "last_at_ms", b->probe.last_wall);
        set_iso(o, "last_at", b->probe.last_wall);
        lp_json_set_int(o, "last_duration_ms", b->probe.last_ms);
        lp_json_set_str(o, "last_reason", b->probe.last_reason);
    } else {
        lp_json_set(o, "last_ok", NULL);
    }
    lp_json_set_int(o, "passes", b ? (int64_t)b->probe.passes : 0);
    lp_json_set_int(o, "fails", b ? (int64_t)b->probe.fails : 0);
    lp_json_set_int(o, "consecutive_passes", b ? b->probe.ok_streak : 0);
    lp_json_set_int(o, "consecutive_failures", b ? b->probe.fail_streak : 0);
    lp_json_set_bool(o, "in_flight", b && b->probe.claimed);
    return o;
}

/* ---- admin ----------------------------------------------------------------------------------- */

void lp_health_set_drained(struct lp_health *h, const char *backend, bool drained)
{
    pthread_rwlock_wrlock(&h->lock);
    get_backend(h, backend)->drained = drained;
    pthread_rwlock_unlock(&h->lock);
    struct lp_health_event ev = {
        .kind = LP_HEALTH_EV_DRAIN, .backend = backend, .drained = drained};
    notify(h, &ev);
}

bool lp_health_apply_remote(struct lp_health *h, const struct lp_health_event *ev, int64_t now_mono)
{
    if (!ev || !ev->backend)
        return false;
    bool changed = false;
    pthread_rwlock_wrlock(&h->lock);
    switch (ev->kind) {
    case LP_HEALTH_EV_COOLDOWN: {
        struct pair_rec *p = ev->model ? get_pair(h, ev->backend, ev->model, now_mono) : NULL;
        if (p && ev->until_mono > p->cool_until && ev->until_mono > now_mono) {
            p->cool_until = ev->until_mono;
            p->cool_set = now_mono;
            p->trial = true;
            p->cool_cls = ev->cls;
            p->last_cls = ev->cls;
            p->last_mono = now_mono;
            snprintf(p->cool_reason, sizeof p->cool_reason, "%s", ev->reason ? ev->reason : "");
            changed = true;
        }
        break;
    }
    case LP_HEALTH_EV_OPEN:
        changed =
            lp_breaker_adopt_open(&get_backend(h, ev->backend)->breaker, now_mono, ev->until_mono);
        break;
    case LP_HEALTH_EV_DRAIN: {
        struct backend_rec *b = get_backend(h, ev->backend);
        changed = b->drained != ev->drained;
        b->drained = ev->drained;
        break;
    }
    }
    pthread_rwlock_unlock(&h->lock);
    return changed;
}

int lp_health_clear(struct lp_health *h, const char *backend, const char *model)
{
    int n = 0;
    pthread_rwlock_wrlock(&h->lock);
    for (size_t i = 0; i < h->n_pairs; i++) {
        struct pair_rec *p = &h->pairs[i];
        if (strcmp(p->backend, backend) != 0 || (model && strcmp(p->model, model) != 0))
            continue;
        if (p->cool_until > 0)
            n++;
        p->cool_until = 0;
        p->trial = false;
    }
    struct backend_rec *b = model ? NULL : find_backend(h, backend);
    if (b)
        lp_breaker_init(&b->breaker, &h->breaker_cfg);
    pthread_rwlock_unlock(&h->lock);
    return n;
}

/* ---- JSON view ------------------------------------------------------------------------------- */

static void set_iso(struct json_object *o, const char *key, int64_t unix_ms)
{
    char buf[40];
    time_t s = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(unix_ms % 1000));
    lp_json_set_str(o, key, buf);
}

/* A monotonic instant expressed on the wall clock. */
static int64_t to_wall(int64_t mono, int64_t now_mono, int64_t now_wall)
{
    return now_wall + (mono - now_mono);
}

static struct json_object *breaker_json(const struct lp_breaker *b, int64_t now_mono,
                                        int64_t now_wall)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "state", lp_breaker_state_name(lp_breaker_state(b, now_mono)));
    lp_json_set_int(o, "consecutive_failures", b->failures);
    lp_json_set_int(o, "half_open_successes", b->successes);
    lp_json_set_int(o, "probes_in_flight", b->in_flight);
    lp_json_set_int(o, "times_opened", (int64_t)b->times_opened);
    int64_t until = lp_breaker_state(b, now_mono) == LP_BREAKER_OPEN ? lp_breaker_open_until(b) : 0;
    if (until) {
        lp_json_set_int(o, "open_until_ms", to_wall(until, now_mono, now_wall));
        set_iso(o, "open_until", to_wall(until, now_mono, now_wall));
    } else {
        lp_json_set(o, "open_until_ms", NULL);
        lp_json_set(o, "open_until", NULL);
    }
    return o;
}

static struct json_object *last_error_json(const struct backend_rec *b)
{
    if (!b || b->last_cls == LP_CLASS_OK)
        return NULL;
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "class", lp_class_name(b->last_cls));
    lp_json_set_int(o, "at_ms", b->last_wall);
    set_iso(o, "at", b->last_wall);
    lp_json_set_str(o, "reason", b->last_reason);
    lp_json_set_int(o, "count", (int64_t)b->n_errors);
    return o;
}

static struct json_object *model_json(const char *model, const struct pair_rec *p, int64_t now_mono,
                                      int64_t now_wall)
{
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "model", model);
    bool cooling = p && now_mono < p->cool_until;
    lp_json_set_bool(o, "cooling", cooling);
    if (cooling) {
        int64_t w = to_wall(p->cool_until, now_mono, now_wall);
        lp_json_set_int(o, "cooling_until_ms", w);
        set_iso(o, "cooling_until", w);
        lp_json_set_int(o, "remaining_ms", p->cool_until - now_mono);
        lp_json_set_str(o, "class", lp_class_name(p->cool_cls));
        lp_json_set_str(o, "reason", p->cool_reason);
    }
    if (p && p->last_cls != LP_CLASS_OK) {
        lp_json_set_str(o, "last_error_class", lp_class_name(p->last_cls));
        lp_json_set_int(o, "last_error_at_ms", p->last_wall);
    }
    return o;
}

static bool listed(struct json_object *models, const char *model)
{
    for (size_t i = 0; i < lp_json_arr_len(models); i++) {
        const char *m = lp_json_get_str(lp_json_arr_at(models, i), "model");
        if (m && strcmp(m, model) == 0)
            return true;
    }
    return false;
}

/* The backend's configured models (route order), then models that only have recorded state. */
static struct json_object *models_json(struct lp_health *h, const struct lp_config *cfg, size_t bi,
                                       int64_t now_mono, int64_t now_wall)
{
    const char *name = cfg->backends[bi].name;
    struct json_object *arr = json_object_new_array();
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        for (size_t r = 0; r < cfg->aliases[a].n_routes; r++) {
            const struct lp_route *rt = &cfg->aliases[a].routes[r];
            if (rt->backend_idx != bi || !rt->model || listed(arr, rt->model))
                continue;
            json_object_array_add(
                arr, model_json(rt->model, find_pair(h, name, rt->model), now_mono, now_wall));
        }
    }
    for (size_t i = 0; i < h->n_pairs; i++) {
        const struct pair_rec *p = &h->pairs[i];
        if (strcmp(p->backend, name) == 0 && !listed(arr, p->model))
            json_object_array_add(arr, model_json(p->model, p, now_mono, now_wall));
    }
    return arr;
}

static struct json_object *backend_json(struct lp_health *h, const struct lp_config *cfg, size_t bi,
                                        bool breakers, int64_t now_mono, int64_t now_wall)
{
    const struct lp_backend *be = &cfg->backends[bi];
    struct backend_rec *b = find_backend(h, be->name);
    struct json_object *o = json_object_new_object();
    lp_json_set_str(o, "name", be->name);
    lp_json_set_bool(o, "enabled", be->enabled);
    lp_json_set_bool(o, "drained", b && b->drained);
    lp_json_set_str(o, "protocol", lp_proto_name(be->protocol));
    if (breakers) {
        struct lp_breaker fresh;
        lp_breaker_init(&fresh, &h->breaker_cfg);
        lp_json_set(o, "breaker", breaker_json(b ? &b->breaker : &fresh, now_mono, now_wall));
    } else {
        lp_json_set(o, "breaker", NULL);
    }
    lp_json_set(o, "last_error", last_error_json(b));
    if (be->health_check.enabled)
        lp_json_set(o, "probe", probe_json(b));
    lp_json_set(o, "models", models_json(h, cfg, bi, now_mono, now_wall));
    return o;
}

char *lp_health_json(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono,
                     int64_t now_wall)
{
    struct json_object *root = json_object_new_object();
    set_iso(root, "now", now_wall);
    bool breakers = breakers_on(h, cfg);
    lp_json_set_bool(root, "breakers_enabled", breakers);
    struct json_object *arr = json_object_new_array();
    pthread_rwlock_rdlock(&h->lock);
    for (size_t i = 0; cfg && i < cfg->n_backends; i++)
        json_object_array_add(arr, backend_json(h, cfg, i, breakers, now_mono, now_wall));
    pthread_rwlock_unlock(&h->lock);
    lp_json_set(root, "backends", arr);
    char *s = lp_xstrdup(lp_json_dump(root, NULL));
    json_object_put(root);
    return s;
}

bool lp_health_any_usable(struct lp_health *h, const struct lp_config *cfg, int64_t now_mono)
{
    if (!cfg)
        return false;
    for (size_t a = 0; a < cfg->n_aliases; a++) {
        const struct lp_alias *al = &cfg->aliases[a];
        for (size_t r = 0; al->enabled && r < al->n_routes; r++) {
            const struct lp_route *rt = &al->routes[r];
            if (!rt->enabled || rt->backend_idx >= cfg->n_backends || !rt->model)
                continue;
            const struct lp_backend *b = &cfg->backends[rt->backend_idx];
            if (b->enabled &&
                lp_health_route_state(h, cfg, b, rt->model, now_mono, NULL) == LP_ROUTE_USABLE)
                return true;
        }
    }
    return false;
}
