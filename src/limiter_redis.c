/* limiter_redis.c - the shared limiter: the same limits, exact across every instance that uses
 * one Redis (see limiter.h for the interface, cluster.h for the connection).
 *
 * What is shared, and how:
 *   - rate_limit buckets (global, per client address, per model) and each client key's rpm and
 *     tpm buckets: token buckets kept in Redis hashes ({level, time}), refilled by Redis's own
 *     clock (TIME) so instances with drifting clocks agree;
 *   - key budgets (tokens per UTC day and month): counters per period, which persist across
 *     gateway restarts;
 * all checked and taken by ONE atomic Lua script per admission (EVALSHA; one round trip, and
 * pipelined with every other check of the loop pass), which also gives back nothing because it
 * takes nothing unless every level admits (no refund dance as in the reference).
 * Reconciliation (real usage known) is one more script call that moves the key's tpm level and
 * budget counters by the difference to the reservation.
 *
 * What stays per instance: key max_concurrent and the per-backend slots (and their adaptive
 * limits), and by default the concurrency queue (max_requests, queue_timeout). They are served by
 * an in-process limiter (`conc`) with the shared limits switched off.
 *
 * With `concurrency.scope: cluster`, max_requests and max_queue_size count across the cluster:
 * an admitted request holds a LEASE, a member of a sorted set in Redis scored by its expiry
 * (Redis's clock), renewed while the request runs and removed when it ends, so the slots of an
 * instance that died come back when its leases expire. A request that finds no free slot joins
 * a cluster-wide FIFO (a second sorted set ordered by arrival, with its own expiry set, so the
 * waiters of a dead instance leave too) and asks again on a timer: at once when a lease of this
 * instance ends, every POLL_NEAR_MS when it is within max_requests of the head, every
 * POLL_FAR_MS further back. One script (ACQUIRE) does the whole decision atomically.
 *
 * When Redis is slow or away (a command times out, the connection is down, or its breaker is
 * open), `redis.on_error` decides per check: fail_open admits through a second in-process limiter
 * (`fallback`) configured with this instance's share of every shared limit (the limit divided by
 * the live instances, from the cluster heartbeat); fail_closed refuses with 503 and Retry-After.
 * No request ever waits longer than the Redis timeout for a verdict.
 *
 * Threads: one shared limiter per process; admissions run on the worker that owns the request
 * and use that worker's own Redis client (lp_cluster_thread_client). Completions run on that
 * worker's loop (the Redis client's callbacks), never elsewhere.
 */
#include "limiter.h"

#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "log.h"
#include "redis.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define DAY_MS 86400000LL

/* Admission. A bucket is one string "level unix_ms" (one GET, one SET with its expiry).
 * KEYS: nb buckets then nc counters. ARGV[1] nb, ARGV[2] nc, then 4 per bucket
 * (rate per ms, burst, cost, mode: 0 = need cost, 1 = need a positive level) and 3 per counter
 * (limit, cost, ttl seconds). Returns {0, remaining of the first bucket, tpm remaining} when
 * admitted (everything taken), or {i, wait ms, level} naming the first level (1-based over
 * buckets then counters) that refused (nothing taken). */
static const char ADMIT_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local nb, nc = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local lv, a = {}, 3\n"
    "for i = 1, nb do\n"
    "  local rate, burst, cost, mode = tonumber(ARGV[a]), tonumber(ARGV[a+1]),\n"
    "        tonumber(ARGV[a+2]), tonumber(ARGV[a+3])\n"
    "  a = a + 4\n"
    "  local tok, ts = burst, now\n"
    "  local v = redis.call('GET', KEYS[i])\n"
    "  if v then\n"
    "    local sep = string.find(v, ' ', 1, true)\n"
    "    tok, ts = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))\n"
    "  end\n"
    "  if now > ts then tok = math.min(burst, tok + (now - ts) * rate) end\n"
    "  lv[i] = tok\n"
    "  local ok = (mode == 1 and tok > 0) or (mode == 0 and tok >= cost)\n"
    "  if not ok then\n"
    "    local need = (mode == 1) and (1 - tok) or (cost - tok)\n"
    "    return {i, math.ceil(need / rate), math.floor(tok)}\n"
    "  end\n"
    "end\n"
    "for j = 1, nc do\n"
    "  local lim = tonumber(ARGV[a])\n"
    "  a = a + 3\n"
    "  local used = tonumber(redis.call('GET', KEYS[nb + j]) or '0')\n"
    "  if used >= lim then return {nb + j, 0, used} end\n"
    "end\n"
    "a = 3\n"
    "local first, tpm = -1, -1\n"
    "for i = 1, nb do\n"
    "  local rate, burst, cost = tonumber(ARGV[a]), tonumber(ARGV[a+1]), tonumber(ARGV[a+2])\n"
    "  local left = lv[i] - cost\n"
    "  redis.call('SET', KEYS[i], string.format('%.6f %d', left, now), 'PX',\n"
    "             math.ceil(burst / rate) + 60000)\n"
    "  if first < 0 then first = math.floor(left) end\n"
    "  if tonumber(ARGV[a+3]) == 1 then tpm = math.floor(left) end\n"
    "  a = a + 4\n"
    "end\n"
    "for j = 1, nc do\n"
    "  if redis.call('INCRBY', KEYS[nb + j], tonumber(ARGV[a+1])) == tonumber(ARGV[a+1]) then\n"
    "    redis.call('EXPIRE', KEYS[nb + j], tonumber(ARGV[a+2]))\n"
    "  end\n"
    "  a = a + 3\n"
    "end\n"
    "return {0, first, tpm}\n";

/* Reconciliation: KEYS[1] the tpm bucket ('' when none), KEYS[2..] budget counters; ARGV[1] the
 * difference real - reserved (positive: charge more, negative: give back), ARGV[2] the tpm
 * bucket's burst. */
static const char RECONCILE_LUA[] =
    "local d = tonumber(ARGV[1])\n"
    "if KEYS[1] ~= '' then\n"
    "  local v = redis.call('GET', KEYS[1])\n"
    "  if v then\n"
    "    local sep = string.find(v, ' ', 1, true)\n"
    "    local tok = math.min(tonumber(ARGV[2]), tonumber(string.sub(v, 1, sep - 1)) - d)\n"
    "    redis.call('SET', KEYS[1], string.format('%.6f %s', tok, string.sub(v, sep + 1)),\n"
    "               'KEEPTTL')\n"
    "  end\n"
    "end\n"
    "for i = 2, #KEYS do\n"
    "  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], d) end\n"
    "end\n"
    "return 1\n";

/* Cluster concurrency (see the top). KEYS: slots, queue, queue expiries, arrival counter.
 * ARGV: member, max_requests, lease ttl ms, max_queue_size, waiter ttl ms, join (0: do not
 * queue). Returns {1, held, 0} granted; {0, held, rank} waiting (rank 0-based); {-1, held, len}
 * queue full; {-2, held, len} no slot and not allowed to queue. */
static const char ACQUIRE_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local m, max = ARGV[1], tonumber(ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 64)\n"
    "for _, d in ipairs(dead) do\n"
    "  redis.call('ZREM', KEYS[2], d)\n"
    "  redis.call('ZREM', KEYS[3], d)\n"
    "end\n"
    "local held = redis.call('ZCARD', KEYS[1])\n"
    "local rank = redis.call('ZRANK', KEYS[2], m)\n"
    "if not rank then\n"
    "  local ql = redis.call('ZCARD', KEYS[2])\n"
    "  if held < max and ql == 0 then\n"
    "    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), m)\n"
    "    return {1, held + 1, 0}\n"
    "  end\n"
    "  if tonumber(ARGV[6]) == 0 then return {-2, held, ql} end\n"
    "  if ql >= tonumber(ARGV[4]) then return {-1, held, ql} end\n"
    "  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), m)\n"
    "  rank = ql\n"
    "end\n"
    "if held + rank < max then\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "  redis.call('ZREM', KEYS[3], m)\n"
    "  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), m)\n"
    "  return {1, held + 1, 0}\n"
    "end\n"
    "redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), m)\n"
    "return {0, held, rank}\n";

/* A lease ends or a waiter leaves: KEYS slots, queue, queue expiries; ARGV[1] the member. */
static const char LEAVE_LUA[] = "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                "redis.call('ZREM', KEYS[2], ARGV[1])\n"
                                "redis.call('ZREM', KEYS[3], ARGV[1])\n"
                                "return 1\n";

/* Renew a lease that still exists: KEYS[1] slots; ARGV member, ttl ms. */
static const char RENEW_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])\n";

enum { SCRIPT_ADMIT = 0, SCRIPT_RECONCILE, SCRIPT_ACQUIRE, SCRIPT_LEAVE, SCRIPT_RENEW };

#define WAITER_TTL_MS 3000 /* a waiter that stops asking leaves the queue after this */
#define POLL_NEAR_MS 20    /* waiters within max_requests of the head */
#define POLL_FAR_MS 250    /* the others (always < WAITER_TTL_MS) */

struct shared {
    struct lp_limiter base;
    struct lp_limiter *conc;     /* per instance: queue, key concurrency, backend slots */
    struct lp_limiter *fallback; /* this instance's share of the shared limits (fail_open) */
    struct lp_cluster *cluster;
    pthread_mutex_t mu;
    struct lp_config *cfg; /* the current snapshot (a reference) */
    int share_of;          /* instances the fallback is sized for */
    char *prefix;
    enum lp_redis_on_error on_error;
    /* cluster concurrency */
    char *k_slots, *k_queue, *k_qexp, *k_seq;
    char instance[40];
    _Atomic uint64_t lease_seq;
    _Atomic int cc_held_seen; /* cluster-wide slots held, as last seen in a reply */
    _Atomic int cc_waiting;   /* this instance's requests waiting for a cluster slot */
    _Atomic int cc_local;     /* admitted without a lease while Redis was away (fail_open) */
};

enum lstate { L_NONE = 0, L_TRYING, L_WAITING, L_HELD, L_LOCAL };

/* A request's cluster slot, inside its ticket. */
struct lease {
    enum lstate st;
    char member[64];
    struct event *ev;         /* retry (waiting) or renewal (held) */
    struct lp_redis_cmd *cmd; /* pending ACQUIRE */
    int64_t enq_us, deadline_us;
    int max, max_queue;
    int64_t ttl_ms; /* concurrency.lease_ttl; renewed every third of it */
    long long rank;
    struct lp_limit_ticket *prev, *next; /* this thread's waiters, oldest first */
};

enum rstate { R_NONE = 0, R_PENDING, R_DONE };

struct level {
    enum lp_limit_scope scope;
    char *key;
    double rate_per_ms, burst, cost;
    int mode;             /* 0: need cost; 1: need a positive level (tpm reservation) */
    int64_t limit, ttl_s; /* counters */
};

/* The levels one admission checks (at most global, ip, model, rpm, tpm, day, month). */
struct pending_levels {
    struct level lv[8];
    size_t n;
};

/* One admission's ticket. The in-process limiters' tickets are held as opaque pointers (their
 * struct has the same tag but another definition, in limiter_local.c: never dereferenced). */
struct lp_limit_ticket {
    struct shared *S;
    enum rstate rs;
    struct lp_redis_cmd *cmd;  /* pending admission script */
    struct pending_levels *pl; /* its levels, until the reply */
    struct lp_limit_ticket *conc_t, *fb_t;
    bool conc_pending;
    bool reserved; /* est is reserved in Redis (tpm and/or budgets) */
    bool reconciled;
    int64_t est;
    char *tpm_key, *day_key, *month_key; /* the key's shared counters, when it has them */
    int64_t tpm_burst;
    /* the query, kept for the asynchronous steps */
    struct lp_limit_query q;
    char *ip, *model, *key;
    lp_limit_cb cb;
    void *arg;
    struct lp_limit_result res;
    struct lease ls;
};

/* ---- configurations for the two in-process limiters ------------------------------------- */

/* `conc`: concurrency and key max_concurrent only (the shared limits are Redis's). */
static void configure_conc(struct shared *S, const struct lp_config *cfg)
{
    struct lp_config c = *cfg;
    c.rate_limit.enabled = false;
    if (cfg->concurrency.scope == LP_CONC_CLUSTER)
        c.concurrency.enabled = false; /* the leases count it (cluster scope) */
    struct lp_client_key *keys = lp_xcalloc(cfg->n_keys + 1, sizeof *keys);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        keys[i] = cfg->keys[i];
        keys[i].rpm = keys[i].tpm = keys[i].tokens_per_day = keys[i].tokens_per_month = 0;
    }
    c.keys = keys;
    S->conc->ops->configure(S->conc, &c);
    free(keys);
}

/* `fallback`: every shared limit divided by the live instances; no concurrency (conc has it). */
static void configure_fallback(struct shared *S, const struct lp_config *cfg, int n)
{
    if (n < 1)
        n = 1;
    struct lp_config c = *cfg;
    c.concurrency.enabled = false;
    c.rate_limit.global_rps = cfg->rate_limit.global_rps / n;
    c.rate_limit.per_ip_rps = cfg->rate_limit.per_ip_rps / n;
    struct lp_model_rps *pm = lp_xcalloc(cfg->rate_limit.n_per_model + 1, sizeof *pm);
    for (size_t i = 0; i < cfg->rate_limit.n_per_model; i++)
        pm[i] = (struct lp_model_rps){cfg->rate_limit.per_model[i].alias,
                                      cfg->rate_limit.per_model[i].rps / n};
    c.rate_limit.per_model = pm;
    struct lp_client_key *keys = lp_xcalloc(cfg->n_keys + 1, sizeof *keys);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        keys[i] = cfg->keys[i];
        keys[i].rpm = (keys[i].rpm + n - 1) / n;
        keys[i].tpm = (keys[i].tpm + n - 1) / n;
        keys[i].tokens_per_day = (keys[i].tokens_per_day + n - 1) / n;
        keys[i].tokens_per_month = (keys[i].tokens_per_month + n - 1) / n;
        keys[i].max_concurrent = 0;
    }
    c.keys = keys;
    S->fallback->ops->configure(S->fallback, &c);
    free(keys);
    free(pm);
    S->share_of = n;
}

static void shared_configure(struct lp_limiter *l, const struct lp_config *cfg)
{
    struct shared *S = (struct shared *)l;
    pthread_mutex_lock(&S->mu);
    struct lp_config *old = S->cfg;
    S->cfg = lp_config_ref((struct lp_config *)cfg);
    configure_conc(S, cfg);
    configure_fallback(S, cfg, lp_cluster_instances(S->cluster));
    pthread_mutex_unlock(&S->mu);
    lp_config_unref(old);
}

/* The current snapshot (a new reference), resizing the fallback if the cluster changed size. */
static struct lp_config *current(struct shared *S)
{
    pthread_mutex_lock(&S->mu);
    struct lp_config *cfg = lp_config_ref(S->cfg);
    int n = lp_cluster_instances(S->cluster);
    if (n != S->share_of)
        configure_fallback(S, cfg, n);
    pthread_mutex_unlock(&S->mu);
    return cfg;
}

/* ---- building the admission script's arguments ------------------------------------------ */

struct argv {
    const char *v[48];
    size_t len[48];
    char *own[48];
    int n;
};

static void arg_add(struct argv *a, char *s)
{
    a->v[a->n] = s;
    a->len[a->n] = strlen(s);
    a->own[a->n] = s;
    a->n++;
}

static void argv_free(struct argv *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->own[i]);
}

static double burst_of(double rps, double factor)
{
    double b = floor(rps * factor);
    return b >= 1.0 ? b : 1.0;
}

static double model_rps(const struct lp_config *cfg, const char *alias)
{
    for (size_t i = 0; alias && i < cfg->rate_limit.n_per_model; i++)
        if (strcmp(cfg->rate_limit.per_model[i].alias, alias) == 0)
            return cfg->rate_limit.per_model[i].rps;
    return cfg->rate_limit.global_rps;
}

static const struct lp_client_key *find_key(const struct lp_config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_keys; i++)
        if (strcmp(cfg->keys[i].name, name) == 0)
            return &cfg->keys[i];
    return NULL;
}

static int64_t next_month_ms(int64_t wall)
{
    time_t s = (time_t)(wall / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    tm.tm_mon += 1;
    return (int64_t)timegm(&tm) * 1000 - wall;
}

/* The levels one admission checks, in the in-process limiter's order. */
static size_t plan_levels(struct shared *S, const struct lp_config *cfg,
                          const struct lp_limit_query *q, struct lp_limit_ticket *t,
                          struct level *lv)
{
    size_t n = 0;
    const struct lp_rate_limit_cfg *rl = &cfg->rate_limit;
    if (rl->enabled) {
        lv[n++] = (struct level){LP_LIMIT_GLOBAL,
                                 lp_xasprintf("%srl:g", S->prefix),
                                 rl->global_rps / 1000,
                                 burst_of(rl->global_rps, rl->burst_factor),
                                 1,
                                 0,
                                 0,
                                 0};
        if (rl->per_ip_rps > 0 && q->ip)
            lv[n++] = (struct level){LP_LIMIT_IP,
                                     lp_xasprintf("%srl:ip:%s", S->prefix, q->ip),
                                     rl->per_ip_rps / 1000,
                                     burst_of(rl->per_ip_rps, rl->burst_factor),
                                     1,
                                     0,
                                     0,
                                     0};
        if (q->model) {
            double r = model_rps(cfg, q->model);
            lv[n++] = (struct level){LP_LIMIT_MODEL,
                                     lp_xasprintf("%srl:m:%s", S->prefix, q->model),
                                     r / 1000,
                                     burst_of(r, rl->burst_factor),
                                     1,
                                     0,
                                     0,
                                     0};
        }
    }
    const struct lp_client_key *k = find_key(cfg, q->key);
    if (!k)
        return n;
    if (k->rpm > 0)
        lv[n++] = (struct level){LP_LIMIT_KEY_RPM,
                                 lp_xasprintf("%sk:%s:rpm", S->prefix, k->name),
                                 (double)k->rpm / 60000.0,
                                 (double)k->rpm,
                                 1,
                                 0,
                                 0,
                                 0};
    int64_t est = q->est_tokens;
    if (est <= 0 || (k->tpm <= 0 && k->tokens_per_day <= 0 && k->tokens_per_month <= 0))
        return n;
    t->est = est;
    if (k->tpm > 0) {
        t->tpm_key = lp_xasprintf("%sk:%s:tpm", S->prefix, k->name);
        t->tpm_burst = k->tpm;
        lv[n++] = (struct level){LP_LIMIT_KEY_TPM,
                                 lp_xstrdup(t->tpm_key),
                                 (double)k->tpm / 60000.0,
                                 (double)k->tpm,
                                 (double)est,
                                 1,
                                 0,
                                 0};
    }
    int64_t wall = lp_wall_ms();
    time_t s = (time_t)(wall / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    if (k->tokens_per_day > 0) {
        t->day_key = lp_xasprintf("%sk:%s:d:%04d%02d%02d", S->prefix, k->name, tm.tm_year + 1900,
                                  tm.tm_mon + 1, tm.tm_mday);
        lv[n++] = (struct level){
            LP_LIMIT_KEY_DAY, lp_xstrdup(t->day_key), 0, 0, (double)est, 0, k->tokens_per_day,
            2 * 86400};
    }
    if (k->tokens_per_month > 0) {
        t->month_key = lp_xasprintf("%sk:%s:mo:%04d%02d", S->prefix, k->name, tm.tm_year + 1900,
                                    tm.tm_mon + 1);
        lv[n++] = (struct level){
            LP_LIMIT_KEY_MONTH, lp_xstrdup(t->month_key), 0, 0, (double)est, 0, k->tokens_per_month,
            40 * 86400};
    }
    return n;
}

/* ---- completing an admission -------------------------------------------------------------- */

static void deliver(struct lp_limit_ticket *t)
{
    t->rs = R_DONE;
    if (t->cb)
        t->cb(t->arg, &t->res);
}

/* Refund a reservation taken in Redis (a later, per-instance level refused). */
static void give_back(struct lp_limit_ticket *t);

/* ---- cluster concurrency: leases ------------------------------------------------------------ */

/* This thread's waiters (tickets are created, completed and released on their worker's thread). */
static __thread struct lp_limit_ticket *w_head, *w_tail;

static void waiter_link(struct lp_limit_ticket *t)
{
    t->ls.prev = w_tail;
    t->ls.next = NULL;
    if (w_tail)
        w_tail->ls.next = t;
    else
        w_head = t;
    w_tail = t;
    atomic_fetch_add(&t->S->cc_waiting, 1);
}

static void waiter_unlink(struct lp_limit_ticket *t)
{
    if (t->ls.st != L_WAITING)
        return;
    if (t->ls.prev)
        t->ls.prev->ls.next = t->ls.next;
    else
        w_head = t->ls.next;
    if (t->ls.next)
        t->ls.next->ls.prev = t->ls.prev;
    else
        w_tail = t->ls.prev;
    t->ls.prev = t->ls.next = NULL;
    atomic_fetch_sub(&t->S->cc_waiting, 1);
}

static void arm(struct lp_limit_ticket *t, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->ls.ev, &tv);
}

/* Redis cannot be asked: fail_closed refuses; fail_open admits up to this instance's share of
 * max_requests without a lease (never queued). Fills t->res. */
static void lease_unavailable(struct lp_limit_ticket *t)
{
    struct shared *S = t->S;
    if (S->on_error == LP_REDIS_FAIL_OPEN) {
        int n = lp_cluster_instances(S->cluster);
        int share = (t->ls.max + (n > 0 ? n : 1) - 1) / (n > 0 ? n : 1);
        if (atomic_fetch_add(&S->cc_local, 1) < share) {
            t->ls.st = L_LOCAL;
            t->res.admitted = true;
            return;
        }
        atomic_fetch_sub(&S->cc_local, 1);
        t->ls.st = L_NONE;
        t->res.admitted = false;
        t->res.scope = LP_LIMIT_QUEUE_FULL;
        t->res.retry_after_ms = 1000;
    } else {
        t->ls.st = L_NONE;
        t->res.admitted = false;
        t->res.scope = LP_LIMIT_UNAVAILABLE;
        t->res.retry_after_ms = 1000;
    }
    give_back(t);
}

/* Fire-and-forget LEAVE for t's member (ordered after any ACQUIRE on the same connection). */
static void send_leave(struct lp_limit_ticket *t)
{
    struct shared *S = t->S;
    struct lp_redis *r = lp_cluster_thread_client();
    int sid = r ? lp_cluster_thread_script(r, LEAVE_LUA, SCRIPT_LEAVE) : -1;
    if (sid < 0)
        return; /* the lease expires on its own */
    const char *argv[4] = {S->k_slots, S->k_queue, S->k_qexp, t->ls.member};
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        lens[i] = strlen(argv[i]);
    lp_redis_eval(r, sid, 3, 4, argv, lens, NULL, NULL);
}

static void on_acquire(void *arg, const redisReply *reply, enum lp_redis_err err);

/* Ask for a slot (join: may wait in the cluster queue). False when Redis cannot be asked. */
static bool send_acquire(struct lp_limit_ticket *t, bool join)
{
    struct shared *S = t->S;
    struct lp_redis *r = lp_cluster_thread_client();
    int sid = r ? lp_cluster_thread_script(r, ACQUIRE_LUA, SCRIPT_ACQUIRE) : -1;
    if (!r || sid < 0 || !lp_redis_available(r))
        return false;
    char max[16], ttl[24], maxq[16], wttl[16];
    snprintf(max, sizeof max, "%d", t->ls.max);
    snprintf(ttl, sizeof ttl, "%lld", (long long)t->ls.ttl_ms);
    snprintf(maxq, sizeof maxq, "%d", t->ls.max_queue);
    snprintf(wttl, sizeof wttl, "%d", WAITER_TTL_MS);
    const char *argv[10] = {S->k_slots, S->k_queue, S->k_qexp, S->k_seq, t->ls.member,
                            max,        ttl,        maxq,      wttl,     join ? "1" : "0"};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(argv[i]);
    t->ls.cmd = lp_redis_eval(r, sid, 4, 10, argv, lens, on_acquire, t);
    return true;
}

static void on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lp_limit_ticket *t = arg;
    if (t->ls.st == L_HELD) {
        struct lp_redis *r = lp_cluster_thread_client();
        int sid = r ? lp_cluster_thread_script(r, RENEW_LUA, SCRIPT_RENEW) : -1;
        if (sid >= 0 && lp_redis_available(r)) {
            char ttl[24];
            snprintf(ttl, sizeof ttl, "%lld", (long long)t->ls.ttl_ms);
            const char *argv[3] = {t->S->k_slots, t->ls.member, ttl};
            size_t lens[3] = {strlen(argv[0]), strlen(argv[1]), strlen(argv[2])};
            lp_redis_eval(r, sid, 1, 3, argv, lens, NULL, NULL);
        }
        arm(t, t->ls.ttl_ms / 3);
        return;
    }
    if (t->ls.st != L_WAITING || t->ls.cmd)
        return; /* an ACQUIRE is already out */
    if (!send_acquire(t, true)) {
        waiter_unlink(t);
        send_leave(t);
        lease_unavailable(t);
        deliver(t);
    }
}

static void on_acquire(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct lp_limit_ticket *t = arg;
    struct shared *S = t->S;
    t->ls.cmd = NULL;
    bool ok = err == LP_REDIS_OK && reply && reply->type == REDIS_REPLY_ARRAY &&
              reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_INTEGER &&
              reply->element[1]->type == REDIS_REPLY_INTEGER &&
              reply->element[2]->type == REDIS_REPLY_INTEGER;
    int64_t now = lp_now_us();
    if (!ok) {
        waiter_unlink(t);
        send_leave(t);
        lease_unavailable(t);
        deliver(t);
        return;
    }
    long long st = reply->element[0]->integer;
    atomic_store(&S->cc_held_seen, (int)reply->element[1]->integer);
    t->ls.rank = reply->element[2]->integer;
    if (st == 1) {
        waiter_unlink(t);
        t->ls.st = L_HELD;
        t->res.admitted = true;
        t->res.waited_us = t->res.queued ? now - t->ls.enq_us : 0;
        arm(t, t->ls.ttl_ms / 3);
        deliver(t);
        return;
    }
    if (st == 0 && now < t->ls.deadline_us) {
        if (t->ls.st != L_WAITING) {
            t->ls.st = L_WAITING;
            t->res.queued = true;
            waiter_link(t);
        }
        int64_t ms = t->ls.rank < t->ls.max ? POLL_NEAR_MS : POLL_FAR_MS;
        int64_t left = (t->ls.deadline_us - now + 999) / 1000;
        arm(t, ms < left ? ms : left);
        return;
    }
    /* full, not allowed to wait, or out of time */
    waiter_unlink(t);
    if (st == 0)
        send_leave(t);
    t->ls.st = L_NONE;
    t->res.admitted = false;
    t->res.scope = st == -1 ? LP_LIMIT_QUEUE_FULL : LP_LIMIT_QUEUE_TIMEOUT;
    t->res.retry_after_ms = 1000;
    t->res.waited_us = t->res.queued ? now - t->ls.enq_us : 0;
    give_back(t);
    deliver(t);
}

/* The other levels admitted: take a cluster slot. Returns true when t->res is final now. */
static bool lease_start(struct lp_limit_ticket *t, const struct lp_config *cfg)
{
    struct shared *S = t->S;
    t->ls.max = cfg->concurrency.max_requests;
    t->ls.max_queue = cfg->concurrency.max_queue_size;
    t->ls.ttl_ms = cfg->concurrency.lease_ttl_ms > 0 ? cfg->concurrency.lease_ttl_ms : 15000;
    t->ls.enq_us = lp_now_us();
    t->ls.deadline_us = t->ls.enq_us + t->q.max_wait_ms * 1000;
    snprintf(t->ls.member, sizeof t->ls.member, "%s:%llu", S->instance,
             (unsigned long long)atomic_fetch_add(&S->lease_seq, 1));
    bool join = t->q.max_wait_ms > 0 && t->q.base;
    if (t->q.base)
        t->ls.ev = evtimer_new(t->q.base, on_lease_timer, t);
    if (!t->ls.ev || !send_acquire(t, join)) {
        lease_unavailable(t);
        return true;
    }
    t->ls.st = L_TRYING;
    return false;
}

/* A lease of this instance ended: the oldest local waiters ask again now. */
static void wake_waiters(int n)
{
    for (struct lp_limit_ticket *w = w_head; w && n > 0; w = w->ls.next, n--)
        if (!w->ls.cmd)
            event_active(w->ls.ev, EV_TIMEOUT, 0);
}

/* Give the slot back (any state). */
static void lease_end(struct lp_limit_ticket *t)
{
    struct shared *S = t->S;
    if (t->ls.cmd) {
        lp_redis_cancel(t->ls.cmd);
        t->ls.cmd = NULL;
    }
    bool was_held = t->ls.st == L_HELD;
    if (t->ls.st == L_TRYING || t->ls.st == L_WAITING || t->ls.st == L_HELD)
        send_leave(t);
    if (t->ls.st == L_LOCAL)
        atomic_fetch_sub(&S->cc_local, 1);
    waiter_unlink(t);
    t->ls.st = L_NONE;
    if (t->ls.ev) {
        event_free(t->ls.ev);
        t->ls.ev = NULL;
    }
    if (was_held)
        wake_waiters(2);
}

static bool cluster_scope(struct shared *S, struct lp_config **cfg_out)
{
    struct lp_config *cfg = current(S);
    bool on = cfg->concurrency.enabled && cfg->concurrency.scope == LP_CONC_CLUSTER;
    if (on) {
        *cfg_out = cfg;
        return true;
    }
    lp_config_unref(cfg);
    return false;
}

/* Admitted by every other level: the cluster slot, when configured. True: t->res is final. */
static bool then_lease(struct lp_limit_ticket *t)
{
    struct lp_config *cfg;
    if (!t->res.admitted || !cluster_scope(t->S, &cfg))
        return true;
    bool now = lease_start(t, cfg);
    lp_config_unref(cfg);
    return now;
}

static void on_conc(void *arg, const struct lp_limit_result *r)
{
    struct lp_limit_ticket *t = arg;
    t->conc_pending = false;
    struct lp_limit_result shared = t->res;
    t->res = *r;
    if (shared.requests.set)
        t->res.requests = shared.requests;
    if (shared.tokens.set)
        t->res.tokens = shared.tokens;
    if (!r->admitted)
        give_back(t);
    else if (!then_lease(t))
        return;
    deliver(t);
}

/* The shared levels admitted: now the per-instance ones (may queue). Returns true when the
 * verdict is complete in t->res. */
static bool then_local(struct lp_limit_ticket *t)
{
    struct shared *S = t->S;
    struct lp_limit_result r;
    if (!S->conc->ops->admit(S->conc, &t->q, &t->conc_t, &r, on_conc, t)) {
        t->conc_pending = true;
        return false;
    }
    struct lp_limit_result shared = t->res;
    t->res = r;
    if (shared.requests.set && !r.requests.set)
        t->res.requests = shared.requests;
    if (shared.tokens.set)
        t->res.tokens = shared.tokens;
    if (!r.admitted) {
        give_back(t);
        return true;
    }
    return then_lease(t);
}

/* Redis could not answer: the configured policy decides, now. */
static bool degrade(struct lp_limit_ticket *t)
{
    struct shared *S = t->S;
    if (S->on_error == LP_REDIS_FAIL_CLOSED) {
        t->res = (struct lp_limit_result){.scope = LP_LIMIT_UNAVAILABLE, .retry_after_ms = 1000};
        return true;
    }
    struct lp_config *cfg = current(S); /* resizes the fallback to the cluster's size */
    lp_config_unref(cfg);
    struct lp_limit_result r;
    S->fallback->ops->admit(S->fallback, &t->q, &t->fb_t, &r, NULL, NULL); /* never queues */
    t->res = r;
    if (!r.admitted)
        return true;
    return then_local(t);
}

static enum lp_limit_scope scope_of(const struct level *lv, size_t n, long long i)
{
    return i >= 1 && (size_t)i <= n ? lv[i - 1].scope : LP_LIMIT_GLOBAL;
}

static int64_t reset_ms_of(enum lp_limit_scope s)
{
    int64_t wall = lp_wall_ms();
    if (s == LP_LIMIT_KEY_DAY)
        return DAY_MS - wall % DAY_MS;
    if (s == LP_LIMIT_KEY_MONTH)
        return next_month_ms(wall);
    return 0;
}

static void on_admit(void *arg, const redisReply *reply, enum lp_redis_err err)
{
    struct lp_limit_ticket *t = arg;
    t->cmd = NULL;
    bool ok = err == LP_REDIS_OK && reply && reply->type == REDIS_REPLY_ARRAY &&
              reply->elements == 3 && reply->element[0]->type == REDIS_REPLY_INTEGER;
    if (!ok) {
        for (size_t i = 0; i < t->pl->n; i++)
            free(t->pl->lv[i].key);
        free(t->pl);
        t->pl = NULL;
        if (err == LP_REDIS_OK)
            lp_log_warn(NULL, "redis limiter: unexpected admission reply%s%s",
                        reply && reply->str ? ": " : "", reply && reply->str ? reply->str : "");
        if (degrade(t))
            deliver(t);
        return;
    }
    long long which = reply->element[0]->integer;
    long long a1 = reply->element[1]->type == REDIS_REPLY_INTEGER ? reply->element[1]->integer : 0;
    long long a2 = reply->element[2]->type == REDIS_REPLY_INTEGER ? reply->element[2]->integer : 0;
    struct pending_levels *pl = t->pl;
    t->pl = NULL;
    t->res = (struct lp_limit_result){.admitted = which == 0};
    if (which != 0) {
        enum lp_limit_scope s = scope_of(pl->lv, pl->n, which);
        t->res.scope = s;
        int64_t reset = reset_ms_of(s);
        t->res.retry_after_ms = reset ? reset : (a1 > 0 ? a1 : 1);
        t->reserved = false;
    } else {
        t->reserved = t->est > 0;
        if (pl->n && pl->lv[0].scope != LP_LIMIT_KEY_DAY && pl->lv[0].scope != LP_LIMIT_KEY_MONTH) {
            t->res.requests = (struct lp_limit_info){
                .set = true,
                .limit = (int64_t)pl->lv[0].burst,
                .remaining = a1 > 0 ? a1 : 0,
                .reset_ms = (int64_t)((pl->lv[0].burst - (a1 > 0 ? a1 : 0)) /
                                      (pl->lv[0].rate_per_ms > 0 ? pl->lv[0].rate_per_ms : 1))};
        }
        if (t->tpm_key)
            t->res.tokens = (struct lp_limit_info){
                .set = true, .limit = t->tpm_burst, .remaining = a2 > 0 ? a2 : 0};
    }
    for (size_t i = 0; i < pl->n; i++)
        free(pl->lv[i].key);
    free(pl);
    if (!t->res.admitted) {
        deliver(t);
        return;
    }
    if (then_local(t))
        deliver(t);
}

/* ---- the interface ---------------------------------------------------------------------- */

static bool shared_admit(struct lp_limiter *l, const struct lp_limit_query *q,
                         struct lp_limit_ticket **out, struct lp_limit_result *res, lp_limit_cb cb,
                         void *arg)
{
    struct shared *S = (struct shared *)l;
    struct lp_limit_ticket *t = lp_xcalloc(1, sizeof *t);
    t->S = S;
    t->ip = lp_xstrdup(q->ip);
    t->model = lp_xstrdup(q->model);
    t->key = lp_xstrdup(q->key);
    t->q = *q;
    t->q.ip = t->ip;
    t->q.model = t->model;
    t->q.key = t->key;
    t->cb = cb;
    t->arg = arg;
    *out = t;
    struct lp_redis *r = lp_cluster_thread_client();
    int sid = r ? lp_cluster_thread_script(r, ADMIT_LUA, SCRIPT_ADMIT) : -1;
    if (!r || sid < 0 || !lp_redis_available(r)) {
        bool now = degrade(t);
        if (now) {
            t->rs = R_DONE;
            *res = t->res;
        }
        return now;
    }
    struct lp_config *cfg = current(S);
    struct pending_levels *pl = lp_xcalloc(1, sizeof *pl);
    pl->n = plan_levels(S, cfg, q, t, pl->lv);
    lp_config_unref(cfg);
    if (pl->n == 0) {
        free(pl);
        bool now = then_local(t);
        if (now) {
            t->rs = R_DONE;
            *res = t->res;
        }
        return now;
    }
    struct argv a = {.n = 0};
    size_t nb = 0, nc = 0;
    for (size_t i = 0; i < pl->n; i++)
        *(pl->lv[i].limit ? &nc : &nb) += 1;
    /* Buckets first, then counters (plan_levels keeps that order). */
    for (size_t i = 0; i < pl->n; i++)
        arg_add(&a, lp_xstrdup(pl->lv[i].key));
    arg_add(&a, lp_xasprintf("%zu", nb));
    arg_add(&a, lp_xasprintf("%zu", nc));
    for (size_t i = 0; i < pl->n; i++) {
        const struct level *v = &pl->lv[i];
        if (v->limit) {
            arg_add(&a, lp_xasprintf("%lld", (long long)v->limit));
            arg_add(&a, lp_xasprintf("%.0f", v->cost));
            arg_add(&a, lp_xasprintf("%lld", (long long)v->ttl_s));
        } else {
            arg_add(&a, lp_xasprintf("%.9g", v->rate_per_ms));
            arg_add(&a, lp_xasprintf("%.0f", v->burst));
            arg_add(&a, lp_xasprintf("%.0f", v->cost));
            arg_add(&a, lp_xasprintf("%d", v->mode));
        }
    }
    t->pl = pl;
    t->rs = R_PENDING;
    t->cmd = lp_redis_eval(r, sid, (int)pl->n, a.n, a.v, a.len, on_admit, t);
    argv_free(&a);
    return false;
}

static void send_reconcile(struct lp_limit_ticket *t, int64_t delta)
{
    if (delta == 0 || (!t->tpm_key && !t->day_key && !t->month_key))
        return;
    struct lp_redis *r = lp_cluster_thread_client();
    int sid = r ? lp_cluster_thread_script(r, RECONCILE_LUA, SCRIPT_RECONCILE) : -1;
    if (!r || sid < 0)
        return; /* Redis away: the reservation stands (settled at the estimate) */
    const char *argv[5];
    size_t lens[5];
    int n = 0;
    argv[n++] = t->tpm_key ? t->tpm_key : "";
    if (t->day_key)
        argv[n++] = t->day_key;
    if (t->month_key)
        argv[n++] = t->month_key;
    int nkeys = n;
    char d[32], b[32];
    snprintf(d, sizeof d, "%lld", (long long)delta);
    snprintf(b, sizeof b, "%lld", (long long)t->tpm_burst);
    argv[n++] = d;
    argv[n++] = b;
    for (int i = 0; i < n; i++)
        lens[i] = strlen(argv[i]);
    lp_redis_eval(r, sid, nkeys, n, argv, lens, NULL, NULL);
}

static void give_back(struct lp_limit_ticket *t)
{
    if (t->reserved && !t->reconciled) {
        t->reconciled = true;
        send_reconcile(t, -t->est);
    }
}

static void shared_reconcile(struct lp_limiter *l, struct lp_limit_ticket *t, int64_t in,
                             int64_t out, int64_t cached, bool answered)
{
    struct shared *S = (struct shared *)l;
    if (!t)
        return;
    if (t->conc_t)
        S->conc->ops->reconcile(S->conc, t->conc_t, in, out, cached, answered); /* key usage */
    if (t->fb_t)
        S->fallback->ops->reconcile(S->fallback, t->fb_t, in, out, cached, answered);
    if (!t->reserved || t->reconciled)
        return;
    t->reconciled = true;
    int64_t actual =
        in >= 0 || out >= 0 ? (in > 0 ? in : 0) + (out > 0 ? out : 0) : (answered ? t->est : 0);
    send_reconcile(t, actual - t->est);
}

static void shared_release(struct lp_limiter *l, struct lp_limit_ticket *t)
{
    struct shared *S = (struct shared *)l;
    if (!t)
        return;
    if (t->cmd) {
        lp_redis_cancel(t->cmd); /* the reply is dropped; on_admit never runs */
        for (size_t i = 0; t->pl && i < t->pl->n; i++)
            free(t->pl->lv[i].key);
        free(t->pl);
    }
    lease_end(t);
    if (t->conc_t)
        S->conc->ops->release(S->conc, t->conc_t); /* also leaves the queue if still waiting */
    if (t->fb_t)
        S->fallback->ops->release(S->fallback, t->fb_t);
    free(t->tpm_key);
    free(t->day_key);
    free(t->month_key);
    free(t->ip);
    free(t->model);
    free(t->key);
    free(t);
}

/* Backend slots and the views are per instance: the in-process limiter's. */
static bool shared_backend_try(struct lp_limiter *l, const char *b, struct lp_backend_slot **s)
{
    struct shared *S = (struct shared *)l;
    return S->conc->ops->backend_try(S->conc, b, s);
}

static void shared_backend_done(struct lp_limiter *l, struct lp_backend_slot *s,
                                enum lp_backend_outcome o, double ms)
{
    struct shared *S = (struct shared *)l;
    S->conc->ops->backend_done(S->conc, s, o, ms);
}

static struct lp_backend_wait *shared_backend_wait(struct lp_limiter *l,
                                                   const char *const *backends, size_t n,
                                                   int64_t max_wait_ms, struct event_base *base,
                                                   void (*cb)(void *, struct lp_backend_slot *),
                                                   void *arg)
{
    struct shared *S = (struct shared *)l;
    return S->conc->ops->backend_wait(S->conc, backends, n, max_wait_ms, base, cb, arg);
}

static void shared_backend_cancel(struct lp_limiter *l, struct lp_backend_wait *w)
{
    struct shared *S = (struct shared *)l;
    S->conc->ops->backend_cancel(S->conc, w);
}

static const struct lp_limiter_ops *local_ops; /* the in-process limiter's (slot names) */

static const char *shared_slot_backend(const struct lp_backend_slot *s)
{
    return local_ops->slot_backend(s);
}

static bool shared_backend_load(struct lp_limiter *l, const char *b, struct lp_backend_load *o)
{
    struct shared *S = (struct shared *)l;
    return S->conc->ops->backend_load(S->conc, b, o);
}

/* Cluster scope: the cluster's slots held as last seen and this instance's waiters. */
static void shared_queue_state(struct lp_limiter *l, int *in_flight, int *waiting)
{
    struct shared *S = (struct shared *)l;
    struct lp_config *cfg;
    if (cluster_scope(S, &cfg)) {
        lp_config_unref(cfg);
        *in_flight = atomic_load(&S->cc_held_seen) + atomic_load(&S->cc_local);
        *waiting = atomic_load(&S->cc_waiting);
        return;
    }
    S->conc->ops->queue_state(S->conc, in_flight, waiting);
}

static char *shared_keys_json(struct lp_limiter *l, const struct lp_config *cfg)
{
    struct shared *S = (struct shared *)l;
    return S->conc->ops->keys_json(S->conc, cfg); /* this instance's traffic per key */
}

static void shared_destroy(struct lp_limiter *l)
{
    struct shared *S = (struct shared *)l;
    lp_limiter_destroy(S->conc);
    lp_limiter_destroy(S->fallback);
    lp_config_unref(S->cfg);
    pthread_mutex_destroy(&S->mu);
    free(S->prefix);
    free(S->k_slots);
    free(S->k_queue);
    free(S->k_qexp);
    free(S->k_seq);
    free(S);
}

static const struct lp_limiter_ops shared_ops = {
    .name = "redis",
    .configure = shared_configure,
    .admit = shared_admit,
    .reconcile = shared_reconcile,
    .release = shared_release,
    .backend_try = shared_backend_try,
    .backend_done = shared_backend_done,
    .backend_wait = shared_backend_wait,
    .backend_cancel = shared_backend_cancel,
    .slot_backend = shared_slot_backend,
    .backend_load = shared_backend_load,
    .queue_state = shared_queue_state,
    .keys_json = shared_keys_json,
    .destroy = shared_destroy,
};

struct lp_limiter *lp_limiter_redis_create(struct lp_cluster *cluster, const struct lp_config *cfg)
{
    struct shared *S = lp_xcalloc(1, sizeof *S);
    S->base.ops = &shared_ops;
    S->cluster = cluster;
    S->conc = lp_limiter_local_create(NULL);
    local_ops = S->conc->ops;
    S->fallback = lp_limiter_local_create(NULL);
    S->prefix = lp_xstrdup(cfg->redis.key_prefix ? cfg->redis.key_prefix : "llm-proxy:");
    S->on_error = cfg->redis.on_error;
    S->k_slots = lp_xasprintf("%scc:slots", S->prefix);
    S->k_queue = lp_xasprintf("%scc:queue", S->prefix);
    S->k_qexp = lp_xasprintf("%scc:qexp", S->prefix);
    S->k_seq = lp_xasprintf("%scc:seq", S->prefix);
    struct lp_cluster_status cs;
    lp_cluster_get_status(cluster, &cs);
    snprintf(S->instance, sizeof S->instance, "%s", cs.instance_id[0] ? cs.instance_id : "i");
    pthread_mutex_init(&S->mu, NULL);
    return &S->base;
}
