/* limiter.h - the one interface every traffic limit goes through.
 *
 * Call sites (traffic.c) never know which implementation runs: the in-process one
 * (limiter_local.c, the default) keeps every counter in this process; a shared one (a Redis
 * client, asynchronous and pipelined) keeps them where several proxies see them. Both are
 * reached through struct lp_limiter_ops, and every state is keyed by NAMES (alias, key name,
 * backend name, client address), never by config pointers, so state survives reloads and can
 * live in another process.
 *
 * Asynchronous by contract. An admission may complete at once or later:
 *   - lp_limiter_admit returns true when the verdict is known now (*res is filled; cb is never
 *     called). The in-process implementation always answers at once except when the request
 *     has to queue for a concurrency slot.
 *   - it returns false when the verdict comes later: cb(arg, res) is then called exactly once,
 *     on the event loop of query->base (the caller's worker), never from inside lp_limiter_admit
 *     and never on another thread. A shared implementation answers every check this way.
 * Nothing blocks the caller's loop: no call waits for I/O or for a lock held across I/O.
 *
 * A ticket is returned by every admission (admitted, rejected or pending) and must be given back
 * exactly once with lp_limiter_release, from the thread that owns the request. Releasing a
 * pending ticket cancels the check: the request leaves any queue at once and cb is never called.
 * Releasing an admitted ticket returns what it holds (concurrency slots); a token reservation not
 * yet reconciled is settled at its estimate.
 *
 * Backend slots (per-backend in-flight limits and the adaptive limit) are taken synchronously
 * with lp_limiter_backend_try, because the attempt loop picks among candidates in one pass; a
 * shared implementation serves them from a local lease. When every candidate is saturated the
 * request waits with lp_limiter_backend_wait, asynchronous like admit.
 */
#ifndef LP_LIMITER_H
#define LP_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct event_base;
struct lp_limiter;
struct lp_limit_ticket;
struct lp_backend_slot;
struct lp_backend_wait;

/* Which limit decided. Order matters only for names (lp_limit_scope_name). */
enum lp_limit_scope {
    LP_LIMIT_NONE = 0,
    LP_LIMIT_GLOBAL,          /* rate_limit.global_rps */
    LP_LIMIT_IP,              /* rate_limit.per_ip_rps */
    LP_LIMIT_MODEL,           /* rate_limit.per_model_rps (or global_rps per alias) */
    LP_LIMIT_KEY_RPM,         /* keys[].rpm */
    LP_LIMIT_KEY_TPM,         /* keys[].tpm */
    LP_LIMIT_KEY_DAY,         /* keys[].budget.tokens_per_day */
    LP_LIMIT_KEY_MONTH,       /* keys[].budget.tokens_per_month */
    LP_LIMIT_KEY_CONCURRENCY, /* keys[].max_concurrent */
    LP_LIMIT_QUEUE_FULL,      /* concurrency: max_queue_size waiting already */
    LP_LIMIT_QUEUE_TIMEOUT,   /* concurrency: no slot within queue_timeout */
    LP_LIMIT_SATURATED,       /* every candidate backend at its limit for queue_timeout */
    LP_LIMIT_UNAVAILABLE,     /* redis.on_error fail_closed and the shared state is away */
    LP_LIMIT__COUNT
};

/* Static names: "global", "ip", "model", "key_rpm", ... ("" for NONE). */
const char *lp_limit_scope_name(enum lp_limit_scope s);

/* What one limit looks like to a client (the x-ratelimit-* / anthropic-ratelimit-* headers). */
struct lp_limit_info {
    bool set;
    int64_t limit;     /* capacity (requests or tokens) */
    int64_t remaining; /* left now (>= 0) */
    int64_t reset_ms;  /* until the capacity is whole again */
};

/* One admission: what the request asks for. Strings are borrowed for the call only. */
struct lp_limit_query {
    const char *ip;          /* the client address (clientip.h) */
    const char *model;       /* the alias */
    const char *key;         /* the client key's name; NULL for the proxy key / no auth */
    int64_t est_tokens;      /* token reservation (keys with tpm or a budget); 0 = none */
    int64_t max_wait_ms;     /* longest queue wait (queue_timeout bounded by the deadline) */
    struct event_base *base; /* the loop a later completion runs on */
};

struct lp_limit_result {
    bool admitted;
    enum lp_limit_scope scope;     /* the limit that refused (or NONE) */
    int64_t retry_after_ms;        /* when a retry may succeed (rejections) */
    int64_t waited_us;             /* time spent queued */
    bool queued;                   /* the request had to wait for a slot */
    struct lp_limit_info requests; /* the tightest request limit that applied */
    struct lp_limit_info tokens;   /* the key's tpm, when it has one */
};

typedef void (*lp_limit_cb)(void *arg, const struct lp_limit_result *res);

/* How an attempt on a backend ended, for the adaptive limit. */
enum lp_backend_outcome {
    LP_BACKEND_NEUTRAL = 0, /* cancelled, client's fault, local: says nothing about load */
    LP_BACKEND_OK,          /* answered; latency_ms is its time to the first byte */
    LP_BACKEND_OVERLOAD,    /* 429, 529, 503 overloaded: back off */
    LP_BACKEND_FAILED,      /* another failure (network, 5xx): neither grows nor shrinks */
};

/* One backend's slot state, for /admin/backends and metrics. */
struct lp_backend_load {
    int in_flight;
    int limit; /* the limit in force now (adaptive: the current one); 0 = unlimited */
    int max;   /* the configured limit; 0 = unlimited */
    bool adaptive;
    int waiting; /* requests waiting for a slot on it (or on a set including it) */
    uint64_t decreases, increases;
};

struct lp_limiter_ops {
    const char *name; /* "local", "redis", ... */
    /* Adopt a config snapshot: resize every bucket, limit and queue, keep all state (buckets'
     * levels, counters, budgets, in-flight counts) by name. Any thread; serialised with the
     * other calls by the implementation. */
    void (*configure)(struct lp_limiter *l, const struct lp_config *cfg);
    bool (*admit)(struct lp_limiter *l, const struct lp_limit_query *q, struct lp_limit_ticket **t,
                  struct lp_limit_result *res, lp_limit_cb cb, void *arg);
    /* The request's real token use is known (input + output; < 0: unknown, settle at the
     * estimate). At most once per ticket; lp_limiter_release settles it otherwise. */
    void (*reconcile)(struct lp_limiter *l, struct lp_limit_ticket *t, int64_t tokens_in,
                      int64_t tokens_out, int64_t tokens_cached, bool answered);
    void (*release)(struct lp_limiter *l, struct lp_limit_ticket *t);
    /* Take a slot on backend (false: it is at its limit). A granted wait (below) may hand the
     * caller a slot already: pass it as `held` to use it. */
    bool (*backend_try)(struct lp_limiter *l, const char *backend, struct lp_backend_slot **slot);
    void (*backend_done)(struct lp_limiter *l, struct lp_backend_slot *slot,
                         enum lp_backend_outcome o, double latency_ms);
    /* Wait for a slot on any of backends[0..n) for at most max_wait_ms. Always asynchronous:
     * cb(arg, slot) runs later on base's loop with the slot taken for the caller (which then
     * owns it), or with slot NULL when the wait timed out. The wait handle is freed by the
     * implementation after cb, or by backend_cancel (before cb: cb is then never called). */
    struct lp_backend_wait *(*backend_wait)(struct lp_limiter *l, const char *const *backends,
                                            size_t n, int64_t max_wait_ms, struct event_base *base,
                                            void (*cb)(void *arg, struct lp_backend_slot *slot),
                                            void *arg);
    void (*backend_cancel)(struct lp_limiter *l, struct lp_backend_wait *w);
    const char *(*slot_backend)(const struct lp_backend_slot *slot);
    /* Introspection (any thread): one backend's load; the queue; key usage as JSON. */
    bool (*backend_load)(struct lp_limiter *l, const char *backend, struct lp_backend_load *out);
    void (*queue_state)(struct lp_limiter *l, int *in_flight, int *waiting);
    char *(*keys_json)(struct lp_limiter *l, const struct lp_config *cfg);
    void (*destroy)(struct lp_limiter *l);
};

struct lp_limiter {
    const struct lp_limiter_ops *ops;
};

/* Injected time, for tests: monotonic microseconds and Unix milliseconds. NULL = the system
 * clocks (util/clock.h). */
struct lp_limiter_clock {
    int64_t (*now_us)(void *ctx);
    int64_t (*wall_ms)(void *ctx);
    void *ctx;
};

/* The in-process implementation (limiter_local.c). clk may be NULL. Never NULL. */
struct lp_limiter *lp_limiter_local_create(const struct lp_limiter_clock *clk);

/* The shared implementation (limiter_redis.c): rate buckets, key rpm/tpm and budgets in Redis
 * through `cluster`, concurrency per instance, redis.on_error when Redis is away. Configure it
 * like any limiter. Never NULL. */
struct lp_cluster;
struct lp_limiter *lp_limiter_redis_create(struct lp_cluster *cluster, const struct lp_config *cfg);

/* ---- call-site wrappers: dispatch through l->ops ---- */

static inline void lp_limiter_configure(struct lp_limiter *l, const struct lp_config *cfg)
{
    l->ops->configure(l, cfg);
}
static inline bool lp_limiter_admit(struct lp_limiter *l, const struct lp_limit_query *q,
                                    struct lp_limit_ticket **t, struct lp_limit_result *res,
                                    lp_limit_cb cb, void *arg)
{
    return l->ops->admit(l, q, t, res, cb, arg);
}
static inline void lp_limiter_reconcile(struct lp_limiter *l, struct lp_limit_ticket *t, int64_t in,
                                        int64_t out, int64_t cached, bool answered)
{
    l->ops->reconcile(l, t, in, out, cached, answered);
}
static inline void lp_limiter_release(struct lp_limiter *l, struct lp_limit_ticket *t)
{
    l->ops->release(l, t);
}
static inline bool lp_limiter_backend_try(struct lp_limiter *l, const char *backend,
                                          struct lp_backend_slot **slot)
{
    return l->ops->backend_try(l, backend, slot);
}
static inline void lp_limiter_backend_done(struct lp_limiter *l, struct lp_backend_slot *slot,
                                           enum lp_backend_outcome o, double latency_ms)
{
    l->ops->backend_done(l, slot, o, latency_ms);
}
/* Destroy (NULL accepted). No ticket, slot or wait may be outstanding. */
static inline void lp_limiter_destroy(struct lp_limiter *l)
{
    if (l)
        l->ops->destroy(l);
}

#endif
