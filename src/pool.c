/* pool.c - per-worker keep-alive pools per origin (see pool.h). */
#include "pool.h"

#include <openssl/err.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"

struct lp_pool_origin {
    char *key;
    struct lp_pconn *head, *tail; /* idle, MRU at head */
    size_t n;
    struct lp_pool *pool;
    struct lp_pool_origin *next;
};

struct lp_pool {
    struct event_base *base;
    size_t idle_per_origin;
    int64_t idle_us;
    struct timeval sweep_tv; /* a second, or the idle limit when shorter */
    size_t idle;
    struct event sweep;
    struct lp_pool_origin *origins;
};

static void on_sweep(evutil_socket_t fd, short what, void *arg);

struct lp_pool *lp_pool_create(struct event_base *base, size_t idle_per_origin, int64_t idle_ms)
{
    struct lp_pool *p = lp_xcalloc(1, sizeof *p);
    p->base = base;
    p->idle_per_origin = idle_per_origin ? idle_per_origin : 1;
    if (idle_ms <= 0)
        idle_ms = 50000;
    p->idle_us = idle_ms * 1000;
    int64_t period_ms = idle_ms < 1000 ? idle_ms : 1000;
    p->sweep_tv = (struct timeval){period_ms / 1000, (period_ms % 1000) * 1000};
    evtimer_assign(&p->sweep, base, on_sweep, p);
    return p;
}

static void on_pconn_event(evutil_socket_t fd, short what, void *arg)
{
    struct lp_pconn *c = arg;
    c->fn(c, what, c->arg);
}

void lp_pconn_watch(struct lp_pconn *c, struct event_base *base, short what, lp_pconn_fn fn,
                    void *arg)
{
    c->fn = fn;
    c->arg = arg;
    if (c->mask == what)
        return;
    if (c->mask)
        event_del(&c->ev);
    c->mask = what;
    if (!what)
        return;
    event_assign(&c->ev, base, c->fd, (short)(what | EV_PERSIST), on_pconn_event, c);
    event_add(&c->ev, NULL);
}

void lp_pconn_close(struct lp_pconn *c)
{
    if (!c)
        return;
    if (c->fd >= 0) {
        if (c->mask)
            event_del(&c->ev);
        if (c->tls) {
            /* No close_notify (the close says it all), but marked as shut down: OpenSSL would
             * otherwise make the connection's session non-resumable. */
            SSL_set_shutdown(c->tls, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            SSL_free(c->tls);
        }
        close(c->fd);
    }
    free(c);
}

static void unlink_idle(struct lp_pconn *c)
{
    struct lp_pool_origin *o = c->origin;
    if (c->prev)
        c->prev->next = c->next;
    else
        o->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        o->tail = c->prev;
    c->prev = c->next = NULL;
    c->origin = NULL;
    o->n--;
    o->pool->idle--;
}

/* An idle connection became readable: closed by the peer, or unasked-for bytes. A TLS
 * connection may just have received a session ticket: OpenSSL consumes it, and the connection
 * stays when no application data came with it. */
static void on_idle_event(struct lp_pconn *c, short what, void *arg)
{
    if (c->tls) {
        char b;
        ERR_clear_error();
        int r = SSL_peek(c->tls, &b, 1);
        int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->tls, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ)
            return;
    }
    unlink_idle(c);
    lp_pconn_close(c);
}

/* Close the connections idle for longer than the limit (the coldest are at the tails). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct lp_pool *p = arg;
    int64_t now = lp_now_us();
    for (struct lp_pool_origin *o = p->origins; o; o = o->next) {
        while (o->tail && now - o->tail->idle_since_us >= p->idle_us) {
            struct lp_pconn *c = o->tail;
            unlink_idle(c);
            lp_pconn_close(c);
        }
    }
    if (p->idle)
        evtimer_add(&p->sweep, &p->sweep_tv);
}

void lp_pool_destroy(struct lp_pool *p)
{
    if (!p)
        return;
    evtimer_del(&p->sweep);
    while (p->origins) {
        struct lp_pool_origin *o = p->origins;
        p->origins = o->next;
        while (o->head) {
            struct lp_pconn *c = o->head;
            unlink_idle(c);
            lp_pconn_close(c);
        }
        free(o->key);
        free(o);
    }
    free(p);
}

static struct lp_pool_origin *find_origin(struct lp_pool *p, const char *key, bool create)
{
    for (struct lp_pool_origin *o = p->origins; o; o = o->next) {
        if (strcmp(o->key, key) == 0)
            return o;
    }
    if (!create)
        return NULL;
    struct lp_pool_origin *o = lp_xcalloc(1, sizeof *o);
    o->key = lp_xstrdup(key);
    o->pool = p;
    o->next = p->origins;
    p->origins = o;
    return o;
}

struct lp_pconn *lp_pool_take(struct lp_pool *p, const char *key)
{
    struct lp_pool_origin *o = find_origin(p, key, false);
    if (!o || !o->head)
        return NULL;
    struct lp_pconn *c = o->head;
    unlink_idle(c);
    return c;
}

void lp_pool_put(struct lp_pool *p, const char *key, struct lp_pconn *c)
{
    struct lp_pool_origin *o = find_origin(p, key, true);
    if (o->n >= p->idle_per_origin) {
        struct lp_pconn *cold = o->tail;
        unlink_idle(cold);
        lp_pconn_close(cold);
    }
    c->origin = o;
    c->prev = NULL;
    c->next = o->head;
    if (o->head)
        o->head->prev = c;
    else
        o->tail = c;
    o->head = c;
    o->n++;
    p->idle++;
    c->idle_since_us = lp_now_us();
    lp_pconn_watch(c, p->base, EV_READ, on_idle_event, NULL);
    if (!evtimer_pending(&p->sweep, NULL))
        evtimer_add(&p->sweep, &p->sweep_tv);
}

size_t lp_pool_idle(const struct lp_pool *p)
{
    return p->idle;
}
