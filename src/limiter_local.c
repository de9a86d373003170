/* limiter_local.c - the in-process limiter (see limiter.h).
 *
 * All state sits behind one mutex, held for a few arithmetic operations and list moves: never
 * across I/O, never while calling back into a caller. Completions (a queued request granted a
 * slot, a backend slot handed to a waiter) are delivered by activating an event created on the
 * waiter's own loop: the granting thread (any worker, or the reload thread) only flips state
 * under the mutex and calls event_active, so callbacks always run on the owner's thread.
 * Lock order: this mutex, then a libevent base lock (event_active); libevent never calls us with
 * a base lock held, so the order holds everywhere.
 *
 * State is keyed by names and survives configure() (a reload): buckets keep their level
 * (clamped to a smaller burst), budgets and counters keep counting, in-flight counts stay, and
 * a raised limit admits waiters at once.
 */
#include <event2/event.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aimd.h"
#include "clientip.h"
#include "limiter.h"
#include "limiter_local.h"
#include "tbucket.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/json.h"

#define IP_HASH_SIZE 4096u /* grows with the table: see ip_table_grow */
#define DAY_MS 86400000LL

static const char *const scope_names[LP_LIMIT__COUNT] = {
    [LP_LIMIT_NONE] = "",
    [LP_LIMIT_GLOBAL] = "global",
    [LP_LIMIT_IP] = "ip",
    [LP_LIMIT_MODEL] = "model",
    [LP_LIMIT_KEY_RPM] = "key_rpm",
    [LP_LIMIT_KEY_TPM] = "key_tpm",
    [LP_LIMIT_KEY_DAY] = "key_budget_day",
    [LP_LIMIT_KEY_MONTH] = "key_budget_month",
    [LP_LIMIT_KEY_CONCURRENCY] = "key_concurrency",
    [LP_LIMIT_QUEUE_FULL] = "queue_full",
    [LP_LIMIT_QUEUE_TIMEOUT] = "queue_timeout",
    [LP_LIMIT_SATURATED] = "backends_saturated",
    [LP_LIMIT_UNAVAILABLE] = "shared_state_unavailable",
};

const char *lp_limit_scope_name(enum lp_limit_scope s)
{
    return (unsigned)s < LP_LIMIT__COUNT ? scope_names[s] : "";
}

/* ---- state records (never freed before destroy, so pointers to them stay valid) ----------- */

struct named_bucket {
    struct named_bucket *next;
    char *name;
    struct lp_tbucket b;
};

struct ip_entry {
    struct ip_entry *hnext;         /* hash chain */
    struct ip_entry *lprev, *lnext; /* LRU list: head = most recent */
    struct lp_tbucket b;
    char ip[LP_CLIENTIP_MAX];
};

struct key_state {
    struct key_state *next;
    char *name;
    bool live; /* in the current config */
    int64_t rpm, tpm, per_day, per_month;
    int max_concurrent;
    struct lp_tbucket rpm_b, tpm_b;
    int in_flight;
    int64_t day_idx, month_idx;
    int64_t day_used, month_used, reserved;
    uint64_t requests, limited, tok_in, tok_out, tok_cached;
};

struct backend_state {
    struct backend_state *next;
    char *name;
    int in_flight;
    int max; /* 0 = unlimited */
    bool adaptive;
    struct lp_aimd aimd;
    int waiting;
};

enum qstate { Q_NONE = 0, Q_QUEUED, Q_GRANTED };

struct lp_limit_ticket {
    struct local *L;
    struct key_state *key;
    bool admitted;
    bool key_slot, global_slot;
    bool reserved; /* est is reserved on the key (tpm and/or budgets) */
    bool reconciled;
    int64_t est;
    enum qstate q;
    struct lp_limit_ticket *qprev, *qnext;
    int64_t enq_us;
    struct event *ev;
    lp_limit_cb cb;
    void *arg;
    struct lp_limit_result res;
};

struct lp_backend_wait {
    struct local *L;
    struct lp_backend_wait *prev, *next;
    struct backend_state **set;
    size_t n;
    enum qstate q;
    struct backend_state *granted;
    struct event *ev;
    void (*cb)(void *arg, struct lp_backend_slot *slot);
    void *arg;
};

struct local {
    struct lp_limiter base;
    pthread_mutex_t mu;
    struct lp_limiter_clock clk;
    /* settings (configure) */
    bool rate_on;
    double global_rps, per_ip_rps, burst_factor;
    struct lp_model_rps *per_model; /* copies (names owned) */
    size_t n_per_model;
    bool conc_on;
    int max_requests, max_queue;
    /* rate limiting */
    struct lp_tbucket global;
    struct named_bucket *models;
    struct ip_entry **ip_hash;
    size_t ip_hash_size, n_ips, ip_cap;
    struct ip_entry *lru_head, *lru_tail;
    uint64_t ips_evicted;
    /* keys and backends */
    struct key_state *keys;
    struct backend_state *backends;
    /* the admission queue */
    int in_flight;
    struct lp_limit_ticket *q_head, *q_tail;
    int q_len;
    /* backend waiters */
    struct lp_backend_wait *w_head, *w_tail;
    int w_len;
};

static int64_t sys_now_us(void *ctx)
{
    (void)ctx;
    return lp_now_us();
}

static int64_t sys_wall_ms(void *ctx)
{
    (void)ctx;
    return lp_wall_ms();
}

static int64_t now_us(struct local *L)
{
    return L->clk.now_us(L->clk.ctx);
}

static int64_t wall_ms(struct local *L)
{
    return L->clk.wall_ms(L->clk.ctx);
}

static double burst_of(double rps, double factor)
{
    double b = floor(rps * factor);
    return b >= 1.0 ? b : 1.0;
}

/* ---- per-model buckets ---------------------------------------------------------------------- */

static struct named_bucket *model_get(struct local *L, const char *name, double rps, int64_t now)
{
    for (struct named_bucket *m = L->models; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    struct named_bucket *m = lp_xcalloc(1, sizeof *m);
    m->name = lp_xstrdup(name);
    lp_tbucket_init(&m->b, rps, burst_of(rps, L->burst_factor), now);
    m->next = L->models;
    L->models = m;
    return m;
}

/* ---- the per-IP table: hash + LRU, bounded, idle entries evicted --------------------------- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void lru_unlink(struct local *L, struct ip_entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        L->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        L->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_front(struct local *L, struct ip_entry *e)
{
    e->lprev = NULL;
    e->lnext = L->lru_head;
    if (L->lru_head)
        L->lru_head->lprev = e;
    L->lru_head = e;
    if (!L->lru_tail)
        L->lru_tail = e;
}

static void ip_remove(struct local *L, struct ip_entry *e)
{
    struct ip_entry **pp = &L->ip_hash[hash_str(e->ip) & (L->ip_hash_size - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(L, e);
    L->n_ips--;
    L->ips_evicted++;
    free(e);
}

static void ip_table_grow(struct local *L)
{
    size_t n = L->ip_hash_size ? L->ip_hash_size * 2 : IP_HASH_SIZE;
    struct ip_entry **t = lp_xcalloc(n, sizeof *t);
    for (size_t i = 0; i < L->ip_hash_size; i++) {
        struct ip_entry *e = L->ip_hash[i];
        while (e) {
            struct ip_entry *nx = e->hnext;
            size_t h = hash_str(e->ip) & (n - 1);
            e->hnext = t[h];
            t[h] = e;
            e = nx;
        }
    }
    free(L->ip_hash);
    L->ip_hash = t;
    L->ip_hash_size = n;
}

static struct ip_entry *ip_get(struct local *L, const char *ip, int64_t now)
{
    if (!L->ip_hash)
        ip_table_grow(L);
    size_t h = hash_str(ip) & (L->ip_hash_size - 1);
    for (struct ip_entry *e = L->ip_hash[h]; e; e = e->hnext) {
        if (strcmp(e->ip, ip) == 0) {
            if (L->lru_head != e) {
                lru_unlink(L, e);
                lru_push_front(L, e);
            }
            return e;
        }
    }
    /* Forget idle entries from the cold end (a full bucket is what a new entry would be, so
     * dropping it changes nothing), a couple per insertion; at the ceiling, drop the least
     * recently used one whatever its state. */
    for (int i = 0; i < 2 && L->lru_tail && lp_tbucket_is_full(&L->lru_tail->b, now); i++)
        ip_remove(L, L->lru_tail);
    while (L->n_ips >= L->ip_cap && L->lru_tail)
        ip_remove(L, L->lru_tail);
    if (L->n_ips + 1 > L->ip_hash_size) {
        ip_table_grow(L);
        h = hash_str(ip) & (L->ip_hash_size - 1);
    }
    struct ip_entry *e = lp_xcalloc(1, sizeof *e);
    snprintf(e->ip, sizeof e->ip, "%s", ip);
    lp_tbucket_init(&e->b, L->per_ip_rps, burst_of(L->per_ip_rps, L->burst_factor), now);
    e->hnext = L->ip_hash[h];
    L->ip_hash[h] = e;
    lru_push_front(L, e);
    L->n_ips++;
    return e;
}

/* ---- keys ----------------------------------------------------------------------------------- */

static int64_t month_index(int64_t wall)
{
    time_t t = (time_t)(wall / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

/* Milliseconds until the next UTC month starts. */
static int64_t ms_to_next_month(int64_t wall)
{
    time_t t = (time_t)(wall / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += 1;
    time_t next = timegm(&tm);
    int64_t ms = (int64_t)next * 1000 - wall;
    return ms > 0 ? ms : 1000;
}

static void key_roll(struct local *L, struct key_state *k)
{
    int64_t w = wall_ms(L);
    int64_t d = w / DAY_MS, m = month_index(w);
    if (d != k->day_idx) {
        k->day_idx = d;
        k->day_used = 0;
    }
    if (m != k->month_idx) {
        k->month_idx = m;
        k->month_used = 0;
    }
}

static struct key_state *key_find(struct local *L, const char *name)
{
    for (struct key_state *k = L->keys; k; k = k->next)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

static void key_apply(struct local *L, struct key_state *k, const struct lp_client_key *c,
                      int64_t now, bool fresh)
{
    if (c->rpm > 0) {
        if (fresh || k->rpm <= 0)
            lp_tbucket_init(&k->rpm_b, (double)c->rpm / 60.0, (double)c->rpm, now);
        else
            lp_tbucket_resize(&k->rpm_b, (double)c->rpm / 60.0, (double)c->rpm, now);
    }
    if (c->tpm > 0) {
        if (fresh || k->tpm <= 0)
            lp_tbucket_init(&k->tpm_b, (double)c->tpm / 60.0, (double)c->tpm, now);
        else
            lp_tbucket_resize(&k->tpm_b, (double)c->tpm / 60.0, (double)c->tpm, now);
    }
    k->rpm = c->rpm;
    k->tpm = c->tpm;
    k->per_day = c->tokens_per_day;
    k->per_month = c->tokens_per_month;
    k->max_concurrent = c->max_concurrent;
    k->live = true;
}

/* ---- backends ------------------------------------------------------------------------------- */

static struct backend_state *backend_get(struct local *L, const char *name)
{
    for (struct backend_state *b = L->backends; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            return b;
    struct backend_state *b = lp_xcalloc(1, sizeof *b);
    b->name = lp_xstrdup(name);
    b->next = L->backends;
    L->backends = b;
    return b;
}

static int backend_limit(const struct backend_state *b)
{
    if (b->max <= 0)
        return INT_MAX;
    return b->adaptive ? lp_aimd_limit(&b->aimd) : b->max;
}

static bool backend_has_room(const struct backend_state *b)
{
    return b->in_flight < backend_limit(b);
}

static void wait_unlink(struct local *L, struct lp_backend_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        L->w_head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        L->w_tail = w->prev;
    w->prev = w->next = NULL;
    for (size_t i = 0; i < w->n; i++)
        w->set[i]->waiting--;
    L->w_len--;
}

/* Hand free slots to waiters, oldest first. Under the mutex. */
static void grant_backend_waiters(struct local *L)
{
    struct lp_backend_wait *w = L->w_head;
    while (w) {
        struct lp_backend_wait *nx = w->next;
        for (size_t i = 0; i < w->n; i++) {
            if (backend_has_room(w->set[i])) {
                w->set[i]->in_flight++;
                w->granted = w->set[i];
                wait_unlink(L, w);
                w->q = Q_GRANTED;
                event_active(w->ev, EV_READ, 0);
                break;
            }
        }
        w = nx;
    }
}

/* ---- the admission queue -------------------------------------------------------------------- */

static void queue_unlink(struct local *L, struct lp_limit_ticket *t)
{
    if (t->qprev)
        t->qprev->qnext = t->qnext;
    else
        L->q_head = t->qnext;
    if (t->qnext)
        t->qnext->qprev = t->qprev;
    else
        L->q_tail = t->qprev;
    t->qprev = t->qnext = NULL;
    L->q_len--;
}

/* Give a concurrency slot back: to the oldest waiter (FIFO), or to the pool. Under the mutex. */
static void global_slot_release(struct local *L)
{
    if (L->q_head && (!L->conc_on || L->in_flight <= L->max_requests)) {
        struct lp_limit_ticket *t = L->q_head;
        queue_unlink(L, t);
        t->q = Q_GRANTED;
        t->global_slot = true;
        event_active(t->ev, EV_READ, 0);
        return;
    }
    L->in_flight--;
}

/* Admit waiters while slots are free (a reload raised max_requests, or turned the limit off). */
static void grant_queue(struct local *L)
{
    while (L->q_head && (!L->conc_on || L->in_flight < L->max_requests)) {
        L->in_flight++;
        struct lp_limit_ticket *t = L->q_head;
        queue_unlink(L, t);
        t->q = Q_GRANTED;
        t->global_slot = true;
        event_active(t->ev, EV_READ, 0);
    }
}

/* ---- configure ------------------------------------------------------------------------------ */

static double model_rps(const struct local *L, const char *alias)
{
    for (size_t i = 0; i < L->n_per_model; i++)
        if (strcmp(L->per_model[i].alias, alias) == 0)
            return L->per_model[i].rps;
    return L->global_rps;
}

static void free_per_model(struct local *L)
{
    for (size_t i = 0; i < L->n_per_model; i++)
        free(L->per_model[i].alias);
    free(L->per_model);
    L->per_model = NULL;
    L->n_per_model = 0;
}

static int configured_backend_max(const struct lp_config *cfg, const struct lp_backend *b)
{
    if (b->max_concurrent > 0)
        return b->max_concurrent;
    if (cfg->concurrency.enabled || b->adaptive_concurrency)
        return cfg->concurrency.per_backend_limit;
    return 0;
}

static void local_configure(struct lp_limiter *l, const struct lp_config *cfg)
{
    struct local *L = (struct local *)l;
    pthread_mutex_lock(&L->mu);
    int64_t now = now_us(L);
    const struct lp_rate_limit_cfg *rl = &cfg->rate_limit;
    bool was_on = L->rate_on;
    L->rate_on = rl->enabled;
    L->burst_factor = rl->burst_factor;
    L->global_rps = rl->global_rps;
    L->per_ip_rps = rl->per_ip_rps;
    if (!was_on && L->global.rate <= 0)
        lp_tbucket_init(&L->global, rl->global_rps, burst_of(rl->global_rps, rl->burst_factor),
                        now);
    else
        lp_tbucket_resize(&L->global, rl->global_rps, burst_of(rl->global_rps, rl->burst_factor),
                          now);
    free_per_model(L);
    if (rl->n_per_model) {
        L->per_model = lp_xcalloc(rl->n_per_model, sizeof *L->per_model);
        for (size_t i = 0; i < rl->n_per_model; i++)
            L->per_model[i] =
                (struct lp_model_rps){lp_xstrdup(rl->per_model[i].alias), rl->per_model[i].rps};
        L->n_per_model = rl->n_per_model;
    }
    for (struct named_bucket *m = L->models; m; m = m->next) {
        double r = model_rps(L, m->name);
        lp_tbucket_resize(&m->b, r, burst_of(r, rl->burst_factor), now);
    }
    for (struct ip_entry *e = L->lru_head; e; e = e->lnext)
        lp_tbucket_resize(&e->b, rl->per_ip_rps, burst_of(rl->per_ip_rps, rl->burst_factor), now);
    for (struct key_state *k = L->keys; k; k = k->next)
        k->live = false;
    for (size_t i = 0; i < cfg->n_keys; i++) {
        struct key_state *k = key_find(L, cfg->keys[i].name);
        bool fresh = !k;
        if (!k) {
            k = lp_xcalloc(1, sizeof *k);
            k->name = lp_xstrdup(cfg->keys[i].name);
            k->next = L->keys;
            L->keys = k;
        }
        key_apply(L, k, &cfg->keys[i], now, fresh);
    }
    for (size_t i = 0; i < cfg->n_backends; i++) {
        const struct lp_backend *b = &cfg->backends[i];
        struct backend_state *s = backend_get(L, b->name);
        int max = configured_backend_max(cfg, b);
        bool adaptive = b->adaptive_concurrency && max > 0;
        if (adaptive && !s->adaptive)
            lp_aimd_init(&s->aimd, max);
        else if (adaptive)
            lp_aimd_set_max(&s->aimd, max);
        s->adaptive = adaptive;
        s->max = max;
    }
    L->conc_on = cfg->concurrency.enabled;
    L->max_requests = cfg->concurrency.max_requests;
    L->max_queue = cfg->concurrency.max_queue_size;
    grant_queue(L);
    grant_backend_waiters(L);
    pthread_mutex_unlock(&L->mu);
}

/* ---- admission ------------------------------------------------------------------------------ */

/* What the ticket took from rate buckets during this admit call (given back on a later
 * rejection in the same call). */
struct taken {
    bool global, model, rpm;
    struct ip_entry *ip;
    struct named_bucket *m;
};

static void undo_rate(struct local *L, struct lp_limit_ticket *t, struct taken *tk, int64_t now)
{
    if (tk->global)
        lp_tbucket_adjust(&L->global, 1, now);
    if (tk->ip)
        lp_tbucket_adjust(&tk->ip->b, 1, now);
    if (tk->m)
        lp_tbucket_adjust(&tk->m->b, 1, now);
    if (tk->rpm && t->key)
        lp_tbucket_adjust(&t->key->rpm_b, 1, now);
    *tk = (struct taken){0};
}

/* Give back what the ticket holds besides rate tokens: the reservation and the key's slot. */
static void undo_holdings(struct local *L, struct lp_limit_ticket *t, int64_t now)
{
    struct key_state *k = t->key;
    if (t->reserved && k) {
        if (k->tpm > 0)
            lp_tbucket_adjust(&k->tpm_b, (double)t->est, now);
        k->reserved -= t->est;
        t->reserved = false;
    }
    if (t->key_slot && k) {
        k->in_flight--;
        t->key_slot = false;
    }
}

static void info_bucket(struct lp_limit_info *best, struct lp_tbucket *b, int64_t limit,
                        int64_t now)
{
    lp_tbucket_refill(b, now);
    int64_t rem = b->tokens > 0 ? (int64_t)floor(b->tokens + 1e-9) : 0;
    if (best->set && rem >= best->remaining)
        return;
    best->set = true;
    best->limit = limit;
    best->remaining = rem;
    best->reset_ms = lp_tbucket_full_ms(b, now);
}

static void reject(struct lp_limit_result *res, enum lp_limit_scope s, int64_t retry_ms)
{
    res->admitted = false;
    res->scope = s;
    res->retry_after_ms = retry_ms > 0 ? retry_ms : 1000;
}

static void on_ticket_event(evutil_socket_t fd, short what, void *arg);

static bool local_admit(struct lp_limiter *l, const struct lp_limit_query *q,
                        struct lp_limit_ticket **out, struct lp_limit_result *res, lp_limit_cb cb,
                        void *arg)
{
    struct local *L = (struct local *)l;
    struct lp_limit_ticket *t = lp_xcalloc(1, sizeof *t);
    t->L = L;
    *out = t;
    *res = (struct lp_limit_result){.admitted = true};
    struct taken tk = {0};
    pthread_mutex_lock(&L->mu);
    int64_t now = now_us(L);
    if (L->rate_on) {
        if (!lp_tbucket_take(&L->global, 1, now)) {
            reject(res, LP_LIMIT_GLOBAL, lp_tbucket_wait_ms(&L->global, 1, now));
            info_bucket(&res->requests, &L->global, (int64_t)L->global.burst, now);
            goto done;
        }
        tk.global = true;
        info_bucket(&res->requests, &L->global, (int64_t)L->global.burst, now);
        if (L->per_ip_rps > 0 && q->ip) {
            struct ip_entry *e = ip_get(L, q->ip, now);
            if (!lp_tbucket_take(&e->b, 1, now)) {
                reject(res, LP_LIMIT_IP, lp_tbucket_wait_ms(&e->b, 1, now));
                res->requests.set = false;
                info_bucket(&res->requests, &e->b, (int64_t)e->b.burst, now);
                goto undo;
            }
            tk.ip = e;
            info_bucket(&res->requests, &e->b, (int64_t)e->b.burst, now);
        }
        if (q->model) {
            struct named_bucket *m = model_get(L, q->model, model_rps(L, q->model), now);
            if (!lp_tbucket_take(&m->b, 1, now)) {
                reject(res, LP_LIMIT_MODEL, lp_tbucket_wait_ms(&m->b, 1, now));
                res->requests.set = false;
                info_bucket(&res->requests, &m->b, (int64_t)m->b.burst, now);
                goto undo;
            }
            tk.m = m;
            info_bucket(&res->requests, &m->b, (int64_t)m->b.burst, now);
        }
    }
    if (q->key) {
        struct key_state *k = key_find(L, q->key);
        t->key = k;
        if (k) {
            key_roll(L, k);
            if (k->rpm > 0) {
                if (!lp_tbucket_take(&k->rpm_b, 1, now)) {
                    reject(res, LP_LIMIT_KEY_RPM, lp_tbucket_wait_ms(&k->rpm_b, 1, now));
                    res->requests.set = false;
                    info_bucket(&res->requests, &k->rpm_b, k->rpm, now);
                    goto undo;
                }
                tk.rpm = true;
                info_bucket(&res->requests, &k->rpm_b, k->rpm, now);
            }
            int64_t est = q->est_tokens;
            if (est > 0 && (k->tpm > 0 || k->per_day > 0 || k->per_month > 0)) {
                if (k->tpm > 0 && !lp_tbucket_take_if_positive(&k->tpm_b, (double)est, now)) {
                    reject(res, LP_LIMIT_KEY_TPM, lp_tbucket_wait_ms(&k->tpm_b, 1, now));
                    info_bucket(&res->tokens, &k->tpm_b, k->tpm, now);
                    goto undo;
                }
                t->est = est;
                t->reserved = true;
                k->reserved += est;
                if (k->per_day > 0 && k->day_used + k->reserved - est >= k->per_day) {
                    int64_t w = wall_ms(L);
                    reject(res, LP_LIMIT_KEY_DAY, DAY_MS - w % DAY_MS);
                    goto undo;
                }
                if (k->per_month > 0 && k->month_used + k->reserved - est >= k->per_month) {
                    reject(res, LP_LIMIT_KEY_MONTH, ms_to_next_month(wall_ms(L)));
                    goto undo;
                }
            }
            if (k->tpm > 0)
                info_bucket(&res->tokens, &k->tpm_b, k->tpm, now);
            if (k->max_concurrent > 0) {
                if (k->in_flight >= k->max_concurrent) {
                    reject(res, LP_LIMIT_KEY_CONCURRENCY, 1000);
                    goto undo;
                }
                k->in_flight++;
                t->key_slot = true;
            }
        }
    }
    if (L->conc_on) {
        if (L->in_flight < L->max_requests && !L->q_head) {
            L->in_flight++;
            t->global_slot = true;
        } else if (L->q_len >= L->max_queue || q->max_wait_ms <= 0 || !q->base) {
            reject(res, L->q_len >= L->max_queue ? LP_LIMIT_QUEUE_FULL : LP_LIMIT_QUEUE_TIMEOUT,
                   1000);
            goto undo;
        } else {
            /* Wait in line. The event is both the timeout and the wake-up (event_active). */
            t->q = Q_QUEUED;
            t->enq_us = lp_now_us();
            t->cb = cb;
            t->arg = arg;
            t->res = *res;
            t->res.queued = true;
            t->qprev = L->q_tail;
            if (L->q_tail)
                L->q_tail->qnext = t;
            else
                L->q_head = t;
            L->q_tail = t;
            L->q_len++;
            t->ev = event_new(q->base, -1, 0, on_ticket_event, t);
            struct timeval tv = {q->max_wait_ms / 1000, (q->max_wait_ms % 1000) * 1000};
            event_add(t->ev, &tv);
            pthread_mutex_unlock(&L->mu);
            return false;
        }
    }
    t->admitted = true;
    goto done;
undo:
    if (t->key)
        t->key->limited++;
    undo_rate(L, t, &tk, now);
    undo_holdings(L, t, now);
done:
    t->res = *res;
    pthread_mutex_unlock(&L->mu);
    return true;
}

/* A queued ticket's event: granted (event_active) or timed out. */
static void on_ticket_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lp_limit_ticket *t = arg;
    struct local *L = t->L;
    pthread_mutex_lock(&L->mu);
    struct lp_limit_result res = t->res;
    res.waited_us = lp_now_us() - t->enq_us;
    if (t->q == Q_GRANTED) {
        t->admitted = true;
        res.admitted = true;
    } else if (t->q == Q_QUEUED) {
        queue_unlink(L, t);
        undo_holdings(L, t, now_us(L));
        if (t->key)
            t->key->limited++;
        reject(&res, LP_LIMIT_QUEUE_TIMEOUT, 1000);
    }
    t->q = Q_NONE;
    t->res = res;
    pthread_mutex_unlock(&L->mu);
    event_free(t->ev);
    t->ev = NULL;
    if (t->cb)
        t->cb(t->arg, &res);
}

static void settle(struct local *L, struct lp_limit_ticket *t, int64_t actual, int64_t now)
{
    struct key_state *k = t->key;
    if (!t->reserved || !k)
        return;
    if (k->tpm > 0)
        lp_tbucket_adjust(&k->tpm_b, (double)(t->est - actual), now);
    k->reserved -= t->est;
    t->reserved = false;
    (void)L;
}

static void local_reconcile(struct lp_limiter *l, struct lp_limit_ticket *t, int64_t in,
                            int64_t out, int64_t cached, bool answered)
{
    struct local *L = (struct local *)l;
    if (!t || t->reconciled)
        return;
    t->reconciled = true;
    pthread_mutex_lock(&L->mu);
    struct key_state *k = t->key;
    if (k) {
        key_roll(L, k);
        int64_t actual;
        if (in >= 0 || out >= 0)
            actual = (in > 0 ? in : 0) + (out > 0 ? out : 0);
        else
            actual = answered && t->admitted ? t->est : 0; /* no usage reported */
        if (t->admitted) {
            k->requests++;
            k->tok_in += in > 0 ? (uint64_t)in : 0;
            k->tok_out += out > 0 ? (uint64_t)out : 0;
            k->tok_cached += cached > 0 ? (uint64_t)cached : 0;
            k->day_used += actual;
            k->month_used += actual;
        }
        settle(L, t, actual, now_us(L));
    }
    pthread_mutex_unlock(&L->mu);
}

static void local_release(struct lp_limiter *l, struct lp_limit_ticket *t)
{
    struct local *L = (struct local *)l;
    if (!t)
        return;
    pthread_mutex_lock(&L->mu);
    int64_t now = now_us(L);
    if (t->q == Q_QUEUED)
        queue_unlink(L, t);
    t->q = Q_NONE;
    if (t->global_slot)
        global_slot_release(L);
    if (t->reserved && t->key) {
        /* Never reconciled: settle at the estimate, and count it. */
        t->key->day_used += t->est;
        t->key->month_used += t->est;
        settle(L, t, t->est, now);
    }
    undo_holdings(L, t, now);
    pthread_mutex_unlock(&L->mu);
    if (t->ev)
        event_free(t->ev);
    free(t);
}

/* ---- backend slots -------------------------------------------------------------------------- */

static bool local_backend_try(struct lp_limiter *l, const char *backend,
                              struct lp_backend_slot **slot)
{
    struct local *L = (struct local *)l;
    pthread_mutex_lock(&L->mu);
    struct backend_state *b = backend_get(L, backend);
    /* Waiters first: a newcomer never overtakes a request already waiting for this backend. */
    bool ok = backend_has_room(b) && b->waiting == 0;
    if (ok)
        b->in_flight++;
    pthread_mutex_unlock(&L->mu);
    *slot = ok ? (struct lp_backend_slot *)b : NULL;
    return ok;
}

static void local_backend_done(struct lp_limiter *l, struct lp_backend_slot *slot,
                               enum lp_backend_outcome o, double latency_ms)
{
    struct local *L = (struct local *)l;
    struct backend_state *b = (struct backend_state *)slot;
    if (!b)
        return;
    pthread_mutex_lock(&L->mu);
    b->in_flight--;
    if (b->adaptive) {
        int64_t now_ms = now_us(L) / 1000;
        if (o == LP_BACKEND_OVERLOAD)
            lp_aimd_on_overload(&b->aimd, now_ms);
        else if (o == LP_BACKEND_OK)
            lp_aimd_on_success(&b->aimd, latency_ms, now_ms);
    }
    if (L->w_head)
        grant_backend_waiters(L);
    pthread_mutex_unlock(&L->mu);
}

static void on_wait_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lp_backend_wait *w = arg;
    struct local *L = w->L;
    pthread_mutex_lock(&L->mu);
    struct backend_state *slot = NULL;
    if (w->q == Q_GRANTED)
        slot = w->granted;
    else if (w->q == Q_QUEUED)
        wait_unlink(L, w);
    w->q = Q_NONE;
    pthread_mutex_unlock(&L->mu);
    void (*cb)(void *, struct lp_backend_slot *) = w->cb;
    void *cb_arg = w->arg;
    event_free(w->ev);
    free(w->set);
    free(w);
    cb(cb_arg, (struct lp_backend_slot *)slot);
}

static struct lp_backend_wait *
local_backend_wait(struct lp_limiter *l, const char *const *backends, size_t n, int64_t max_wait_ms,
                   struct event_base *base, void (*cb)(void *, struct lp_backend_slot *), void *arg)
{
    struct local *L = (struct local *)l;
    struct lp_backend_wait *w = lp_xcalloc(1, sizeof *w);
    w->L = L;
    w->cb = cb;
    w->arg = arg;
    w->set = lp_xcalloc(n ? n : 1, sizeof *w->set);
    w->ev = event_new(base, -1, 0, on_wait_event, w);
    pthread_mutex_lock(&L->mu);
    for (size_t i = 0; i < n; i++) {
        struct backend_state *b = backend_get(L, backends[i]);
        bool dup = false;
        for (size_t j = 0; j < w->n; j++)
            dup |= w->set[j] == b;
        if (!dup)
            w->set[w->n++] = b;
    }
    for (size_t i = 0; i < w->n; i++)
        w->set[i]->waiting++;
    w->q = Q_QUEUED;
    w->prev = L->w_tail;
    if (L->w_tail)
        L->w_tail->next = w;
    else
        L->w_head = w;
    L->w_tail = w;
    L->w_len++;
    if (max_wait_ms < 1)
        max_wait_ms = 1;
    struct timeval tv = {max_wait_ms / 1000, (max_wait_ms % 1000) * 1000};
    event_add(w->ev, &tv);
    /* A slot may have come free since the caller looked: the grant is still delivered later,
     * on the loop, never from inside this call. */
    grant_backend_waiters(L);
    pthread_mutex_unlock(&L->mu);
    return w;
}

static void local_backend_cancel(struct lp_limiter *l, struct lp_backend_wait *w)
{
    struct local *L = (struct local *)l;
    if (!w)
        return;
    pthread_mutex_lock(&L->mu);
    if (w->q == Q_QUEUED)
        wait_unlink(L, w);
    else if (w->q == Q_GRANTED && w->granted) {
        w->granted->in_flight--;
        grant_backend_waiters(L);
    }
    pthread_mutex_unlock(&L->mu);
    event_free(w->ev);
    free(w->set);
    free(w);
}

static const char *local_slot_backend(const struct lp_backend_slot *slot)
{
    return slot ? ((const struct backend_state *)slot)->name : NULL;
}

/* ---- introspection -------------------------------------------------------------------------- */

static bool local_backend_load(struct lp_limiter *l, const char *backend,
                               struct lp_backend_load *out)
{
    struct local *L = (struct local *)l;
    bool found = false;
    pthread_mutex_lock(&L->mu);
    for (struct backend_state *b = L->backends; b; b = b->next) {
        if (strcmp(b->name, backend) != 0)
            continue;
        *out = (struct lp_backend_load){
            .in_flight = b->in_flight,
            .limit = b->max > 0 ? backend_limit(b) : 0,
            .max = b->max,
            .adaptive = b->adaptive,
            .waiting = b->waiting,
            .decreases = b->adaptive ? b->aimd.decreases : 0,
            .increases = b->adaptive ? b->aimd.increases : 0,
        };
        found = true;
        break;
    }
    pthread_mutex_unlock(&L->mu);
    return found;
}

static void local_queue_state(struct lp_limiter *l, int *in_flight, int *waiting)
{
    struct local *L = (struct local *)l;
    pthread_mutex_lock(&L->mu);
    *in_flight = L->in_flight;
    *waiting = L->q_len;
    pthread_mutex_unlock(&L->mu);
}

static void put_limit(struct json_object *o, const char *name, int64_t v)
{
    if (v > 0)
        lp_json_set_int(o, name, v);
    else
        lp_json_set(o, name, NULL);
}

static char *local_keys_json(struct lp_limiter *l, const struct lp_config *cfg)
{
    struct local *L = (struct local *)l;
    struct json_object *arr = json_object_new_array();
    pthread_mutex_lock(&L->mu);
    int64_t now = now_us(L);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const struct lp_client_key *c = &cfg->keys[i];
        struct key_state *k = key_find(L, c->name);
        struct json_object *o = json_object_new_object();
        lp_json_set_str(o, "name", c->name);
        struct json_object *models = json_object_new_array();
        for (size_t m = 0; m < c->n_models; m++)
            json_object_array_add(models, json_object_new_string(c->models[m]));
        lp_json_set(o, "models", models);
        struct json_object *lim = json_object_new_object();
        put_limit(lim, "rpm", c->rpm);
        put_limit(lim, "tpm", c->tpm);
        put_limit(lim, "max_concurrent", c->max_concurrent);
        put_limit(lim, "tokens_per_day", c->tokens_per_day);
        put_limit(lim, "tokens_per_month", c->tokens_per_month);
        lp_json_set(o, "limits", lim);
        struct json_object *u = json_object_new_object();
        if (k) {
            key_roll(L, k);
            lp_json_set_int(u, "requests", (int64_t)k->requests);
            lp_json_set_int(u, "limited", (int64_t)k->limited);
            lp_json_set_int(u, "input_tokens", (int64_t)k->tok_in);
            lp_json_set_int(u, "output_tokens", (int64_t)k->tok_out);
            lp_json_set_int(u, "cached_tokens", (int64_t)k->tok_cached);
            lp_json_set_int(u, "tokens_today", k->day_used);
            lp_json_set_int(u, "tokens_this_month", k->month_used);
            lp_json_set_int(u, "reserved_tokens", k->reserved);
            lp_json_set_int(u, "in_flight", k->in_flight);
        }
        lp_json_set(o, "usage", u);
        struct json_object *rem = json_object_new_object();
        if (k && k->rpm > 0) {
            lp_tbucket_refill(&k->rpm_b, now);
            lp_json_set_int(rem, "rpm", k->rpm_b.tokens > 0 ? (int64_t)k->rpm_b.tokens : 0);
        }
        if (k && k->tpm > 0) {
            lp_tbucket_refill(&k->tpm_b, now);
            lp_json_set_int(rem, "tpm", k->tpm_b.tokens > 0 ? (int64_t)k->tpm_b.tokens : 0);
        }
        if (k && k->per_day > 0) {
            int64_t r = k->per_day - k->day_used - k->reserved;
            lp_json_set_int(rem, "tokens_today", r > 0 ? r : 0);
        }
        if (k && k->per_month > 0) {
            int64_t r = k->per_month - k->month_used - k->reserved;
            lp_json_set_int(rem, "tokens_this_month", r > 0 ? r : 0);
        }
        lp_json_set(o, "remaining", rem);
        json_object_array_add(arr, o);
    }
    pthread_mutex_unlock(&L->mu);
    struct json_object *root = json_object_new_object();
    lp_json_set(root, "keys", arr);
    size_t len = 0;
    char *s = lp_xstrdup(lp_json_dump(root, &len));
    json_object_put(root);
    return s;
}

static void local_destroy(struct lp_limiter *l)
{
    struct local *L = (struct local *)l;
    while (L->models) {
        struct named_bucket *m = L->models;
        L->models = m->next;
        free(m->name);
        free(m);
    }
    while (L->lru_head) {
        struct ip_entry *e = L->lru_head;
        L->lru_head = e->lnext;
        free(e);
    }
    free(L->ip_hash);
    free_per_model(L);
    while (L->keys) {
        struct key_state *k = L->keys;
        L->keys = k->next;
        free(k->name);
        free(k);
    }
    while (L->backends) {
        struct backend_state *b = L->backends;
        L->backends = b->next;
        free(b->name);
        free(b);
    }
    pthread_mutex_destroy(&L->mu);
    free(L);
}

static const struct lp_limiter_ops local_ops = {
    .name = "local",
    .configure = local_configure,
    .admit = local_admit,
    .reconcile = local_reconcile,
    .release = local_release,
    .backend_try = local_backend_try,
    .backend_done = local_backend_done,
    .backend_wait = local_backend_wait,
    .backend_cancel = local_backend_cancel,
    .slot_backend = local_slot_backend,
    .backend_load = local_backend_load,
    .queue_state = local_queue_state,
    .keys_json = local_keys_json,
    .destroy = local_destroy,
};

struct lp_limiter *lp_limiter_local_create(const struct lp_limiter_clock *clk)
{
    struct local *L = lp_xcalloc(1, sizeof *L);
    L->base.ops = &local_ops;
    pthread_mutex_init(&L->mu, NULL);
    L->clk = clk ? *clk : (struct lp_limiter_clock){sys_now_us, sys_wall_ms, NULL};
    if (!L->clk.now_us)
        L->clk.now_us = sys_now_us;
    if (!L->clk.wall_ms)
        L->clk.wall_ms = sys_wall_ms;
    L->ip_cap = LP_LIMITER_MAX_IPS;
    L->burst_factor = 1.5;
    return &L->base;
}

void lp_limiter_local_set_ip_capacity(struct lp_limiter *l, size_t cap)
{
    struct local *L = (struct local *)l;
    pthread_mutex_lock(&L->mu);
    L->ip_cap = cap ? cap : 1;
    pthread_mutex_unlock(&L->mu);
}

size_t lp_limiter_local_ip_count(struct lp_limiter *l, uint64_t *evicted)
{
    struct local *L = (struct local *)l;
    pthread_mutex_lock(&L->mu);
    size_t n = L->n_ips;
    if (evicted)
        *evicted = L->ips_evicted;
    pthread_mutex_unlock(&L->mu);
    return n;
}
