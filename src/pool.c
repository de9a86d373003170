/* pool.c - per-worker keep-alive pools per origin (see pool.h). */
#include "pool.h"

#include <openssl/err.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/alloc.h"

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
    struct timeval idle_tv;
    size_t idle;
    struct lp_pool_origin *origins;
};

struct lp_pool *lp_pool_create(struct event_base *base, size_t idle_per_origin, int64_t idle_ms)
{
    struct lp_pool *p = lp_xcalloc(1, sizeof *p);
    p->base = base;
    p->idle_per_origin = idle_per_origin ? idle_per_origin : 1;
    if (idle_ms <= 0)
        idle_ms = 50000;
    p->idle_tv = (struct timeval){idle_ms / 1000, (idle_ms % 1000) * 1000};
    return p;
}

void lp_pconn_close(struct lp_pconn *c)
{
    if (!c)
        return;
    if (c->fd >= 0) {
        if (event_initialized(&c->ev))
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

/* An idle connection became readable (closed by the peer, or unasked-for bytes) or expired. A
 * TLS connection may just have received a session ticket: OpenSSL consumes it, and the connection
 * stays when no application data came with it. */
static void on_idle_event(evutil_socket_t fd, short what, void *arg)
{
    struct lp_pconn *c = arg;
    if ((what & EV_READ) && c->tls) {
        char b;
        ERR_clear_error();
        int r = SSL_peek(c->tls, &b, 1);
        int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->tls, r);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ) {
            event_add(&c->ev, &c->origin->pool->idle_tv);
            return;
        }
    }
    unlink_idle(c);
    lp_pconn_close(c);
}

void lp_pool_destroy(struct lp_pool *p)
{
    if (!p)
        return;
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
    event_del(&c->ev);
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
    event_assign(&c->ev, p->base, c->fd, EV_READ, on_idle_event, c);
    event_add(&c->ev, &p->idle_tv);
}

size_t lp_pool_idle(const struct lp_pool *p)
{
    return p->idle;
}
