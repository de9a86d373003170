/* dns.c - c-ares on the worker's libevent loop with a TTL cache and serve-stale (see dns.h). */
#include "dns.h"

#include <ares.h>
#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/clock.h"

#define MAX_SOCKS 16

struct lp_dns_query {
    struct lp_dns_entry *e;
    lp_dns_cb cb;
    void *arg;
    bool detached; /* being delivered: on_deliver frees it */
    bool cancelled;
    struct lp_dns_query *next;
};

struct lp_dns_entry {
    struct lp_dns *d;
    char *host;
    struct lp_dns_addrs addrs; /* n == 0: nothing known */
    int64_t expires_us, stale_until_us;
    const char *err; /* the last failure, for waiters when nothing is usable */
    bool querying;
    struct event deliver;
    struct lp_dns_query *waiters;
    struct lp_dns_entry *next;
};

struct dns_sock {
    int fd;
    struct event ev;
    bool used;
};

struct lp_dns {
    struct event_base *base;
    ares_channel ch;
    struct event timer;
    struct dns_sock socks[MAX_SOCKS];
    struct lp_dns_entry *entries;
    uint64_t queries;
    bool destroying;
};

static void reschedule(struct lp_dns *d)
{
    struct timeval tv, *t = ares_timeout(d->ch, NULL, &tv);
    evtimer_del(&d->timer);
    if (t)
        evtimer_add(&d->timer, t);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_dns *d = arg;
    ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    reschedule(d);
}

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
    struct lp_dns *d = arg;
    ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    reschedule(d);
}

/* c-ares opens, changes interest in, and closes its sockets through this callback. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct lp_dns *d = data;
    struct dns_sock *s = NULL, *free_slot = NULL;
    for (int i = 0; i < MAX_SOCKS; i++) {
        if (d->socks[i].used && d->socks[i].fd == fd)
            s = &d->socks[i];
        else if (!d->socks[i].used && !free_slot)
            free_slot = &d->socks[i];
    }
    if (s)
        event_del(&s->ev);
    if (!readable && !writable) {
        if (s)
            s->used = false;
        return;
    }
    if (!s) {
        if (!free_slot)
            return; /* more sockets than slots: that query times out */
        s = free_slot;
        s->used = true;
        s->fd = fd;
    }
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST);
    event_assign(&s->ev, d->base, fd, what, on_sock, d);
    event_add(&s->ev, NULL);
}

static bool usable(const struct lp_dns_entry *e, int64_t now)
{
    return e->addrs.n > 0 && now < e->stale_until_us;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct lp_dns_entry *e = arg;
    struct lp_dns_query *list = e->waiters;
    e->waiters = NULL;
    for (struct lp_dns_query *q = list; q; q = q->next)
        q->detached = true;
    bool ok = usable(e, lp_now_us());
    struct lp_dns_addrs copy = e->addrs;
    while (list) {
        struct lp_dns_query *q = list;
        list = q->next;
        if (!q->cancelled)
            q->cb(q->arg, ok ? &copy : NULL, ok ? NULL : (e->err ? e->err : "name not resolved"));
        free(q);
    }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct lp_dns_entry *e = arg;
    if (e->d->destroying) {
        if (res)
            ares_freeaddrinfo(res);
        return;
    }
    e->querying = false;
    if (status == ARES_SUCCESS && res) {
        struct lp_dns_addrs a = {0};
        int ttl = LP_DNS_MAX_TTL_S;
        for (struct ares_addrinfo_node *n = res->nodes; n && a.n < LP_DNS_MAX_ADDRS;
             n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > (ares_socklen_t)sizeof a.addr[0])
                continue;
            memcpy(&a.addr[a.n], n->ai_addr, n->ai_addrlen);
            a.len[a.n] = (socklen_t)n->ai_addrlen;
            a.n++;
            if (n->ai_ttl < ttl)
                ttl = n->ai_ttl;
        }
        if (a.n > 0) {
            if (ttl < 1)
                ttl = 1;
            int64_t now = lp_now_us();
            e->addrs = a;
            e->expires_us = now + (int64_t)ttl * 1000000;
            e->stale_until_us = e->expires_us + (int64_t)LP_DNS_STALE_S * 1000000;
            e->err = NULL;
        } else {
            e->err = "no IPv4 or IPv6 address for the name";
        }
    } else {
        e->err = status == ARES_ENOTFOUND  ? "name not found"
                 : status == ARES_ETIMEOUT ? "name servers did not answer"
                                           : "name resolution failed";
    }
    if (res)
        ares_freeaddrinfo(res);
    if (e->waiters)
        event_active(&e->deliver, EV_TIMEOUT, 0);
}

static void start_query(struct lp_dns_entry *e)
{
    if (e->querying)
        return;
    e->querying = true;
    e->d->queries++;
    struct ares_addrinfo_hints hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = ARES_AI_NOSORT};
    ares_getaddrinfo(e->d->ch, e->host, NULL, &hints, on_answer, e);
    reschedule(e->d);
}

static struct lp_dns_entry *entry(struct lp_dns *d, const char *host)
{
    for (struct lp_dns_entry *e = d->entries; e; e = e->next) {
        if (strcmp(e->host, host) == 0)
            return e;
    }
    struct lp_dns_entry *e = lp_xcalloc(1, sizeof *e);
    e->d = d;
    e->host = lp_xstrdup(host);
    event_assign(&e->deliver, d->base, -1, 0, on_deliver, e);
    e->next = d->entries;
    d->entries = e;
    return e;
}

struct lp_dns *lp_dns_create(struct event_base *base)
{
    static bool global_done;
    if (!global_done) {
        /* First called from the main thread before workers start (see worker.c). */
        if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
            return NULL;
        global_done = true;
    }
    struct lp_dns *d = lp_xcalloc(1, sizeof *d);
    d->base = base;
    struct ares_options o = {0};
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = d;
    o.timeout = 2000;
    o.tries = 2;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (ares_init_options(&d->ch, &o, mask) != ARES_SUCCESS) {
        free(d);
        return NULL;
    }
    const char *servers = getenv("LP_DNS_SERVERS");
    if (servers && *servers)
        ares_set_servers_ports_csv(d->ch, servers);
    evtimer_assign(&d->timer, base, on_timer, d);
    return d;
}

void lp_dns_destroy(struct lp_dns *d)
{
    if (!d)
        return;
    d->destroying = true;
    ares_destroy(d->ch); /* answers pending queries with ARES_EDESTRUCTION: ignored */
    evtimer_del(&d->timer);
    for (int i = 0; i < MAX_SOCKS; i++) {
        if (d->socks[i].used)
            event_del(&d->socks[i].ev);
    }
    while (d->entries) {
        struct lp_dns_entry *e = d->entries;
        d->entries = e->next;
        event_del(&e->deliver);
        while (e->waiters) {
            struct lp_dns_query *q = e->waiters;
            e->waiters = q->next;
            free(q);
        }
        free(e->host);
        free(e);
    }
    free(d);
}

bool lp_dns_cached(struct lp_dns *d, const char *host, struct lp_dns_addrs *out)
{
    int64_t now = lp_now_us();
    for (struct lp_dns_entry *e = d->entries; e; e = e->next) {
        if (strcmp(e->host, host) != 0)
            continue;
        if (!usable(e, now))
            return false;
        if (now >= e->expires_us)
            start_query(e); /* stale: refresh in the background */
        *out = e->addrs;
        return true;
    }
    return false;
}

struct lp_dns_query *lp_dns_resolve(struct lp_dns *d, const char *host, lp_dns_cb cb, void *arg)
{
    struct lp_dns_entry *e = entry(d, host);
    struct lp_dns_query *q = lp_xcalloc(1, sizeof *q);
    q->e = e;
    q->cb = cb;
    q->arg = arg;
    q->next = e->waiters;
    e->waiters = q;
    int64_t now = lp_now_us();
    if (usable(e, now)) {
        if (now >= e->expires_us)
            start_query(e);
        event_active(&e->deliver, EV_TIMEOUT, 0);
    } else {
        start_query(e);
    }
    return q;
}

void lp_dns_cancel(struct lp_dns_query *q)
{
    if (!q)
        return;
    if (q->detached) {
        q->cancelled = true;
        return;
    }
    struct lp_dns_query **pp = &q->e->waiters;
    while (*pp && *pp != q)
        pp = &(*pp)->next;
    if (*pp)
        *pp = q->next;
    free(q);
}

uint64_t lp_dns_queries(const struct lp_dns *d)
{
    return d->queries;
}
