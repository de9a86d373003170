/* pool.h - per-worker keep-alive pools of upstream connections, one list per origin.
 *
 * A pooled connection is a struct lp_pconn: the socket and the one libevent event that serves it
 * for its whole life (the client re-assigns it while a transfer uses the connection, so a
 * connection moving between the pool and a transfer in one loop pass costs no epoll_ctl with the
 * changelist backend). Idle connections are kept most-recently-used first (take the warmest,
 * let the coldest expire), at most `idle_per_origin` per origin (the coldest is closed beyond
 * that), each closed after `idle_ms` without use, or as soon as it becomes readable while idle
 * (the peer closed it, or sent bytes nobody asked for).
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

struct lp_pconn {
    int fd;
    SSL *tls;                      /* https: the TLS connection, freed with it */
    struct event ev;               /* owned by whoever holds the connection; not pending when
                                      handed over in either direction */
    struct lp_pool_origin *origin; /* set while idle in the pool */
    struct lp_pconn *prev, *next;  /* the origin's idle list, MRU first */
    unsigned uses;                 /* requests sent on it */
};

/* A pool on `base`. idle_per_origin >= 1, idle_ms > 0. */
struct lp_pool *lp_pool_create(struct event_base *base, size_t idle_per_origin, int64_t idle_ms);
/* Close every idle connection and free the pool (connections in use are the holders'). */
void lp_pool_destroy(struct lp_pool *p);

/* The most recently used idle connection for `key`, now the caller's (its event is not pending
 * and must be re-assigned before use), or NULL. */
struct lp_pconn *lp_pool_take(struct lp_pool *p, const char *key);
/* Hand an idle connection (no pending event, no unread bytes) to the pool for `key`. The pool
 * may close it at once (over the origin's limit: the coldest goes). */
void lp_pool_put(struct lp_pool *p, const char *key, struct lp_pconn *c);
/* Close a connection that is not in the pool (its event must not be pending) and free it. */
void lp_pconn_close(struct lp_pconn *c);

size_t lp_pool_idle(const struct lp_pool *p);

#endif
