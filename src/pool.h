/* pool.h - per-worker keep-alive pools of upstream connections, one list per origin.
 *
 * A pooled connection is a struct lp_pconn: the socket and the one libevent event that serves it
 * for its whole life, dispatching to whoever holds the connection, so a keep-alive connection
 * moving between the pool and transfers stays registered for reading (no epoll_ctl per request).
 * Idle connections are kept most-recently-used first (take the warmest, let the coldest expire), at
 * most `idle_per_origin` per origin (the coldest is closed beyond that), each closed after
 * `idle_ms` without use (a sweep once a second), or as soon as it becomes readable while idle (the
 * peer closed it, or sent bytes nobody asked for).
 *
 * Single-threaded: one pool per worker loop. The origin key is an opaque string chosen by the
 * client (scheme, host, port and anything else that makes connections interchangeable).
 */
#ifndef LP_POOL_H
#define LP_POOL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_pool;
struct lp_pool_origin;
struct lp_pconn;

/* Called for readiness of a connection in use (see lp_pconn_watch). */
typedef void (*lp_pconn_fn)(struct lp_pconn *c, short what, void *arg);

struct lp_pconn {
    int fd;
    SSL *tls;        /* https: the TLS connection, freed with it */
    struct event ev; /* registered once, changed only when the wanted events
                        change: a connection moving between the pool and a
                        transfer keeps its read registration (no epoll_ctl) */
    short mask;      /* events registered (0 = none) */
    lp_pconn_fn fn;  /* the holder's handler; the pool's while idle */
    void *arg;
    struct lp_pool_origin *origin; /* set while idle in the pool */
    struct lp_pconn *prev, *next;  /* the origin's idle list, MRU first */
    int64_t idle_since_us;
    unsigned uses; /* requests sent on it */
};

/* Route readiness of `c` to fn(c, what, arg) and register exactly `what` (EV_READ, EV_WRITE,
 * both, or 0 to stop watching). Changes the registration only when `what` differs. */
void lp_pconn_watch(struct lp_pconn *c, struct event_base *base, short what, lp_pconn_fn fn,
                    void *arg);

/* A pool on `base`. idle_per_origin >= 1, idle_ms > 0. */
struct lp_pool *lp_pool_create(struct event_base *base, size_t idle_per_origin, int64_t idle_ms);
/* Close every idle connection and free the pool (connections in use are the holders'). */
void lp_pool_destroy(struct lp_pool *p);

/* The most recently used idle connection for `key`, now the caller's (it stays registered for
 * reading; call lp_pconn_watch to take its events), or NULL. */
struct lp_pconn *lp_pool_take(struct lp_pool *p, const char *key);
/* Hand an idle connection (no unread bytes) to the pool for `key`; it keeps (or gets) a read
 * registration. The pool may close it at once (over the origin's limit: the coldest goes). Idle
 * connections are swept once a second for expiry. */
void lp_pool_put(struct lp_pool *p, const char *key, struct lp_pconn *c);
/* Close a connection that is not in the pool and free it. */
void lp_pconn_close(struct lp_pconn *c);

size_t lp_pool_idle(const struct lp_pool *p);

#endif
