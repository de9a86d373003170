/* h1client.c - the own HTTP/1.1 upstream client (see h1client.h for the contract).
 *
 * A transfer goes BEGIN (deferred to the loop, so start never calls back) -> CONNECT (only for a
 * fresh connection) -> WRITE (request head and body in one sendmsg when the socket takes it) ->
 * READ (h1reader.c turns the bytes into head, data and end) -> over. One struct event per
 * connection serves every phase; one timer per transfer serves connect, write and total.
 */
#include "h1client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "dns.h"
#include "tls.h"
#include "h1reader.h"
#include "pool.h"
#include "upstream_engine.h"
#include "util/alloc.h"
#include "util/clock.h"

#define RBUF_SIZE (64 * 1024)
#define READS_PER_EVENT 4 /* full-buffer reads before yielding to other connections */
#define MAX_AUTHORITY 300
#define TLS_ONE_RECORD (16 * 1024) /* requests up to this size are sent as one TLS record */

enum phase { PH_BEGIN, PH_CONNECT, PH_TLS, PH_WRITE, PH_READ };
enum step { ST_CONT, ST_PAUSED, ST_GONE };

struct h1x {
    struct lp_upstream_xfer base; /* engine tag: first */
    struct lp_h1client *c;
    struct lp_upstream_cbs cbs;
    void *arg;
    struct lp_pconn *conn;
    int phase;
    struct lp_dns_addrs addrs; /* where to connect, ports set; n == 0 until resolved */
    size_t ai;                 /* the address being tried */
    uint16_t port;
    char *host;      /* a name to resolve, NULL for an IP literal */
    char *peer_name; /* what the certificate must name (https only) */
    bool tls, peer_is_ip;
    SSL_CTX *ctx;         /* https: the context for the backend's CA bundle */
    const char *fail_err; /* set at start: report this failure on the first loop pass */
    struct lp_dns_query *dnsq;
    char *key;  /* pool origin key */
    char *head; /* request line and headers */
    size_t head_len;
    const char *body;
    size_t body_len;
    char *owned_body;
    size_t sent;
    struct lp_h1reader rd;
    struct event timer;
    struct event defer;
    int64_t connect_ms, write_ms;
    int64_t total_deadline_us; /* 0: none */
    int64_t write_deadline_us;
    char *held; /* paused: [0, held_span) data to deliver again, then raw unread bytes */
    size_t held_len, held_span;
    int in_cb;
    bool reused, retried, cancelled, paused;
    bool early; /* the answer began before the whole request was sent: never pooled */
    char errbuf[128];
    struct h1x *prev, *next;
};

struct lp_h1client {
    struct event_base *base;
    struct lp_pool *pool;
    struct lp_dns *dns; /* NULL: only IP literals are accepted */
    struct lp_tls *tls; /* NULL: https is left to libcurl */
    char *rbuf;
    size_t active;
    struct h1x *live;
};

static void on_conn_event(evutil_socket_t fd, short what, void *arg);
static void connect_fresh(struct h1x *x);
static void open_connection(struct h1x *x);
static bool local_errno(int e);

/* ---- URL ----------------------------------------------------------------------------------- */

/* Split an http:// URL: the authority (for Host and the pool key), the request target, the host
 * (brackets removed) and the port. When the host is an IP literal (or localhost) its address is
 * put in *lit (port set) and *literal is true. */
static bool parse_url(const char *url, char *authority, const char **target, char *host,
                      uint16_t *port_out, struct lp_dns_addrs *lit, bool *literal, bool *tls)
{
    *tls = strncmp(url, "https://", 8) == 0;
    if (!*tls && strncmp(url, "http://", 7) != 0)
        return false;
    const char *a = url + (*tls ? 8 : 7);
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || alen >= MAX_AUTHORITY || memchr(a, '@', alen))
        return false;
    memcpy(authority, a, alen);
    authority[alen] = '\0';
    *target = a + alen;
    const char *port = NULL;
    bool bracketed = authority[0] == '[';
    if (bracketed) {
        const char *close = strchr(authority, ']');
        if (!close)
            return false;
        size_t hl = (size_t)(close - authority - 1);
        memcpy(host, authority + 1, hl);
        host[hl] = '\0';
        if (close[1] == ':')
            port = close + 2;
        else if (close[1] != '\0')
            return false;
    } else {
        const char *colon = strchr(authority, ':');
        size_t hl = colon ? (size_t)(colon - authority) : alen;
        memcpy(host, authority, hl);
        host[hl] = '\0';
        port = colon ? colon + 1 : NULL;
    }
    if (!host[0])
        return false;
    long pn = *tls ? 443 : 80;
    if (port) {
        if (!*port || strlen(port) > 5)
            return false;
        pn = 0;
        for (const char *p = port; *p; p++) {
            if (*p < '0' || *p > '9')
                return false;
            pn = pn * 10 + (*p - '0');
        }
        if (pn < 1 || pn > 65535)
            return false;
    }
    *port_out = (uint16_t)pn;
    memset(lit, 0, sizeof *lit);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&lit->addr[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&lit->addr[0];
    const char *h = strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    *literal = true;
    if (!bracketed && inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)pn);
        lit->len[0] = sizeof *s4;
        lit->n = 1;
    } else if (bracketed && inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)pn);
        lit->len[0] = sizeof *s6;
        lit->n = 1;
    } else if (bracketed) {
        return false;
    } else {
        *literal = false;
        for (const char *p = host; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
                return false;
        }
    }
    return true;
}

bool lp_h1client_accepts(const struct lp_h1client *c, const char *url)
{
    char authority[MAX_AUTHORITY], host[MAX_AUTHORITY];
    const char *target;
    uint16_t port;
    struct lp_dns_addrs lit;
    bool literal, tls;
    return parse_url(url, authority, &target, host, &port, &lit, &literal, &tls) &&
           (literal || c->dns) && (!tls || c->tls);
}

/* ---- request head ---------------------------------------------------------------------------- */

static bool has_header(const char *const *h, size_t n, const char *name, size_t nlen)
{
    for (size_t i = 0; i < n; i++) {
        if (strncasecmp(h[i], name, nlen) == 0 && h[i][nlen] == ':')
            return true;
    }
    return false;
}

/* "Name:" with nothing after it removes a header in libcurl's convention; we never add one of
 * those, so such lines are simply not sent. Lines with CR or LF are never sent either. */
static bool sendable(const char *h)
{
    const char *colon = strchr(h, ':');
    if (!colon || colon == h || strpbrk(h, "\r\n"))
        return false;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v != '\0';
}

static char *build_head(const struct lp_upstream_req *r, const char *authority, const char *target,
                        size_t *len)
{
    const char *method = r->post ? "POST" : "GET";
    size_t tlen = strcspn(target, "#");
    bool q = target[0] == '?';
    size_t need = strlen(method) + tlen + 2 + 16 + strlen(authority) + 16 + 48 + 16;
    for (size_t i = 0; i < r->n_headers; i++)
        need += strlen(r->headers[i]) + 2;
    char *h = lp_xmalloc(need);
    size_t n = (size_t)snprintf(h, need, "%s %s%.*s HTTP/1.1\r\nHost: %s\r\n", method,
                                (tlen == 0 || q) ? "/" : "", (int)tlen, target, authority);
    for (size_t i = 0; i < r->n_headers; i++) {
        if (!sendable(r->headers[i]))
            continue;
        size_t l = strlen(r->headers[i]);
        memcpy(h + n, r->headers[i], l);
        memcpy(h + n + l, "\r\n", 2);
        n += l + 2;
    }
    if (!has_header(r->headers, r->n_headers, "Accept", 6)) {
        memcpy(h + n, "Accept: */*\r\n", 13);
        n += 13;
    }
    if (r->post)
        n += (size_t)snprintf(h + n, need - n, "Content-Length: %zu\r\n", r->body_len);
    memcpy(h + n, "\r\n", 2);
    n += 2;
    *len = n;
    return h;
}

/* ---- lifecycle ---------------------------------------------------------------------------------
 */

static void on_conn(struct lp_pconn *c, short what, void *arg)
{
    on_conn_event(c->fd, what, arg);
}

/* Register exactly `what` for the transfer's connection (a no-op when already so). */
static void watch(struct h1x *x, short what)
{
    lp_pconn_watch(x->conn, x->c->base, what, on_conn, x);
}

static void unwatch(struct h1x *x)
{
    if (x->conn)
        watch(x, 0);
}

static void drop_conn(struct h1x *x)
{
    if (!x->conn)
        return;
    unwatch(x);
    lp_pconn_close(x->conn);
    x->conn = NULL;
}

static void destroy(struct h1x *x)
{
    struct lp_h1client *c = x->c;
    drop_conn(x);
    lp_dns_cancel(x->dnsq);
    free(x->host);
    free(x->peer_name);
    evtimer_del(&x->timer);
    event_del(&x->defer);
    lp_h1reader_free(&x->rd);
    free(x->head);
    free(x->owned_body);
    free(x->held);
    free(x->key);
    if (x->prev)
        x->prev->next = x->next;
    else
        c->live = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->active--;
    free(x);
}

/* The transfer is over: report (unless cancelled) and free. The connection, if still held, is
 * closed. */
static void finish(struct h1x *x, enum lp_xfer_result res, const char *err)
{
    drop_conn(x);
    evtimer_del(&x->timer);
    if (!x->cancelled && x->cbs.on_done) {
        x->in_cb++;
        x->cbs.on_done(x->arg, &x->base, res, err);
        x->in_cb--;
    }
    destroy(x);
}

static const char *errtext(struct h1x *x, const char *what, int err)
{
    snprintf(x->errbuf, sizeof x->errbuf, "%s: %s", what, strerror(err));
    return x->errbuf;
}

static void arm_timer(struct h1x *x, int64_t phase_deadline_us)
{
    int64_t d = x->total_deadline_us;
    if (phase_deadline_us && (!d || phase_deadline_us < d))
        d = phase_deadline_us;
    evtimer_del(&x->timer);
    if (!d)
        return;
    int64_t left = d - lp_now_us();
    if (left < 0)
        left = 0;
    struct timeval tv = {left / 1000000, left % 1000000};
    evtimer_add(&x->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h1x *x = arg;
    int64_t now = lp_now_us();
    bool total = x->total_deadline_us && now >= x->total_deadline_us;
    if (x->phase == PH_CONNECT || x->phase == PH_TLS)
        finish(x, LP_XFER_TIMEOUT_CONNECT,
               x->dnsq ? "name resolution timed out" : "connect timeout");
    else if (x->phase == PH_WRITE && !total)
        finish(x, LP_XFER_RESET, "upstream did not take the request within write_timeout");
    else
        finish(x, LP_XFER_TIMEOUT_TOTAL, "upstream transfer timed out");
}

/* A reused connection failed before any byte of the answer: the peer had closed it. Send the
 * request once more on a fresh connection. */
static bool retry_fresh(struct h1x *x)
{
    if (!x->reused || x->retried || lp_h1reader_started(&x->rd))
        return false;
    drop_conn(x);
    x->reused = false;
    x->retried = true;
    x->sent = 0;
    lp_h1reader_free(&x->rd);
    lp_h1reader_init(&x->rd);
    x->phase = PH_BEGIN;
    open_connection(x);
    return true;
}

/* ---- writing ------------------------------------------------------------------------------------
 */

static void read_ready(struct h1x *x);

/* The upstream answered (or closed) before taking the whole request: an early 413 or 401 with
 * Connection: close is common. Stop sending and read what it said, so the client gets that answer
 * (classified as what it is) instead of a reset that would blame the backend. Nothing received
 * ends as a reset, as before. */
static void early_answer(struct h1x *x)
{
    x->early = true;
    x->phase = PH_READ;
    watch(x, EV_READ);
    arm_timer(x, 0);
    read_ready(x);
}

static void send_more(struct h1x *x)
{
    size_t total = x->head_len + x->body_len;
    while (x->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (x->sent < x->head_len)
            iov[n++] = (struct iovec){x->head + x->sent, x->head_len - x->sent};
        size_t boff = x->sent > x->head_len ? x->sent - x->head_len : 0;
        if (x->body_len > boff)
            iov[n++] = (struct iovec){(char *)x->body + boff, x->body_len - boff};
        ssize_t w;
        if (x->conn->tls) {
            /* One record per call; partial writes are enabled on the context. */
            SSL *ssl = x->conn->tls;
            char one[TLS_ONE_RECORD];
            const void *p = iov[0].iov_base;
            size_t plen = iov[0].iov_len;
            if (x->sent == 0 && total <= sizeof one) {
                /* A small request goes out as one record and one system call. A retry after
                 * WANT_WRITE rebuilds the same bytes (moving buffers are allowed). */
                memcpy(one, x->head, x->head_len);
                memcpy(one + x->head_len, x->body, x->body_len);
                p = one;
                plen = total;
            }
            ERR_clear_error();
            int r = SSL_write(ssl, p, (int)(plen > INT32_MAX ? INT32_MAX : plen));
            if (r <= 0) {
                int e = SSL_get_error(ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    watch(x, e == SSL_ERROR_WANT_WRITE ? EV_WRITE : EV_READ);
                    return;
                }
                if (x->sent > 0) {
                    early_answer(x); /* maybe it answered before closing */
                    return;
                }
                if (!retry_fresh(x))
                    finish(x, LP_XFER_RESET, "sending the request upstream: TLS write failed");
                return;
            }
            w = r;
        } else {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
            w = sendmsg(x->conn->fd, &mh, MSG_NOSIGNAL);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                watch(x, EV_WRITE | EV_READ); /* readable now means an early answer */
                return;
            }
            int e = errno;
            if ((e == EPIPE || e == ECONNRESET) && x->sent > 0) {
                early_answer(x);
                return;
            }
            if (!retry_fresh(x))
                finish(x, LP_XFER_RESET, errtext(x, "sending the request upstream", e));
            return;
        }
        x->sent += (size_t)w;
    }
    x->phase = PH_READ;
    x->conn->uses++;
    watch(x, EV_READ);
    arm_timer(x, 0);
}

static void send_request(struct h1x *x)
{
    x->phase = PH_WRITE;
    x->write_deadline_us = x->write_ms > 0 ? lp_now_us() + x->write_ms * 1000 : 0;
    arm_timer(x, x->write_deadline_us);
    send_more(x);
}

static void handshake(struct h1x *x)
{
    SSL *ssl = x->conn->tls;
    ERR_clear_error();
    int r = SSL_connect(ssl);
    if (r == 1) {
        send_request(x);
        return;
    }
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        watch(x, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
        return;
    }
    finish(x, LP_XFER_TLS,
           lp_tls_handshake_error(ssl, r, x->peer_name, x->errbuf, sizeof x->errbuf));
}

/* The TCP connection is up: start TLS (https) or send. */
static void established(struct h1x *x)
{
    if (!x->tls) {
        send_request(x);
        return;
    }
    x->conn->tls = lp_tls_conn(x->c->tls, x->ctx, x->conn->fd, x->peer_name, x->peer_is_ip, x->key);
    if (!x->conn->tls) {
        finish(x, LP_XFER_TLS, "cannot set up the TLS connection");
        return;
    }
    x->phase = PH_TLS;
    handshake(x);
}

static bool local_errno(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EADDRNOTAVAIL;
}

/* Connecting to the current address failed: try the next one, or report. */
static void connect_failed(struct h1x *x, int err)
{
    drop_conn(x);
    if (!local_errno(err) && x->ai + 1 < x->addrs.n) {
        x->ai++;
        connect_fresh(x);
        return;
    }
    finish(x, local_errno(err) ? LP_XFER_LOCAL : LP_XFER_CONNECT, errtext(x, "connect", err));
}

static void connect_fresh(struct h1x *x)
{
    const struct sockaddr_storage *sa = &x->addrs.addr[x->ai];
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        finish(x, local_errno(e) ? LP_XFER_LOCAL : LP_XFER_CONNECT,
               errtext(x, "cannot create a socket", e));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    int idle = 60, intvl = 30;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    x->conn = lp_xcalloc(1, sizeof *x->conn);
    x->conn->fd = fd;
    if (connect(fd, (const struct sockaddr *)sa, x->addrs.len[x->ai]) == 0) {
        established(x);
        return;
    }
    if (errno != EINPROGRESS) {
        connect_failed(x, errno);
        return;
    }
    watch(x, EV_WRITE);
}

static void connected(struct h1x *x)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(x->conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err) {
        connect_failed(x, err);
        return;
    }
    established(x);
}

static void set_addrs(struct h1x *x, const struct lp_dns_addrs *a)
{
    x->addrs = *a;
    x->ai = 0;
    for (size_t i = 0; i < x->addrs.n; i++) {
        struct sockaddr_storage *sa = &x->addrs.addr[i];
        if (sa->ss_family == AF_INET)
            ((struct sockaddr_in *)sa)->sin_port = htons(x->port);
        else
            ((struct sockaddr_in6 *)sa)->sin6_port = htons(x->port);
    }
}

static void on_resolved(void *arg, const struct lp_dns_addrs *a, const char *err)
{
    struct h1x *x = arg;
    x->dnsq = NULL;
    if (!a) {
        snprintf(x->errbuf, sizeof x->errbuf, "%.60s: %.60s", x->host, err);
        finish(x, LP_XFER_DNS, x->errbuf);
        return;
    }
    set_addrs(x, a);
    connect_fresh(x);
}

/* Open a new connection: resolve the name first when needed (from the cache when possible). */
static void open_connection(struct h1x *x)
{
    /* The connect window covers resolving the name and every address tried. */
    x->phase = PH_CONNECT;
    arm_timer(x, x->connect_ms > 0 ? lp_now_us() + x->connect_ms * 1000 : 0);
    if (x->host && x->addrs.n == 0) {
        struct lp_dns_addrs a;
        if (!lp_dns_cached(x->c->dns, x->host, &a)) {
            x->dnsq = lp_dns_resolve(x->c->dns, x->host, on_resolved, x);
            return;
        }
        set_addrs(x, &a);
    }
    x->ai = 0;
    connect_fresh(x);
}

/* ---- reading ------------------------------------------------------------------------------------
 */

/* Keep the undelivered data span and the unread bytes after it (contiguous in the input). */
static void hold(struct h1x *x, const char *data, size_t span, size_t rest)
{
    char *h = lp_xmalloc(span + rest + 1);
    memcpy(h, data, span + rest);
    free(x->held);
    x->held = h;
    x->held_len = span + rest;
    x->held_span = span;
    x->paused = true;
    unwatch(x);
}

/* The response is complete; `leftover` bytes followed it (nobody asked for them). */
static void complete(struct h1x *x, size_t leftover)
{
    struct lp_pconn *conn = x->conn;
    if (conn && leftover == 0 && !x->early && lp_h1reader_reusable(&x->rd)) {
        /* Keeps its read registration: the pool takes over the handler. */
        x->conn = NULL;
        lp_pool_put(x->c->pool, x->key, conn);
    }
    finish(x, LP_XFER_OK, NULL);
}

static enum step deliver(struct h1x *x, const char *data, size_t len, size_t rest)
{
    enum lp_status rc = LP_OK;
    if (x->cbs.on_data) {
        x->in_cb++;
        rc = x->cbs.on_data(x->arg, &x->base, data, len);
        x->in_cb--;
    }
    if (x->cancelled) {
        destroy(x);
        return ST_GONE;
    }
    if (rc == LP_AGAIN) {
        hold(x, data, len, rest);
        return ST_PAUSED;
    }
    if (rc != LP_OK) {
        finish(x, LP_XFER_ABORTED, "transfer aborted by the receiver");
        return ST_GONE;
    }
    return ST_CONT;
}

static enum step process(struct h1x *x, const char *buf, size_t len)
{
    size_t off = 0;
    for (;;) {
        size_t used = 0, dlen = 0;
        const char *data = NULL;
        enum lp_h1r_event ev = lp_h1reader_feed(&x->rd, buf + off, len - off, &used, &data, &dlen);
        off += used;
        switch (ev) {
        case LP_H1R_MORE:
            return ST_CONT;
        case LP_H1R_HEAD:
            if (x->cbs.on_head) {
                x->in_cb++;
                x->cbs.on_head(x->arg, &x->base, lp_h1reader_status(&x->rd));
                x->in_cb--;
                if (x->cancelled) {
                    destroy(x);
                    return ST_GONE;
                }
            }
            break;
        case LP_H1R_DATA: {
            enum step s = deliver(x, data, dlen, len - off);
            if (s != ST_CONT)
                return s;
            break;
        }
        case LP_H1R_DONE:
            complete(x, len - off);
            return ST_GONE;
        case LP_H1R_ERROR:
        default:
            finish(x, LP_XFER_PROTOCOL, lp_h1reader_error(&x->rd));
            return ST_GONE;
        }
    }
}

static void read_failed(struct h1x *x, int err)
{
    if (err == 0 && lp_h1reader_eof(&x->rd) == LP_H1R_DONE) {
        finish(x, LP_XFER_OK, NULL); /* a body delimited by the close */
        return;
    }
    if (retry_fresh(x))
        return;
    finish(x, LP_XFER_RESET,
           err ? errtext(x, "reading the upstream response", err) : lp_h1reader_error(&x->rd));
}

/* TLS: records are decrypted one at a time; read until OpenSSL needs the socket again. */
static void read_ready_tls(struct h1x *x)
{
    char *buf = x->c->rbuf;
    SSL *ssl = x->conn->tls;
    for (int i = 0; i < READS_PER_EVENT * 4; i++) {
        ERR_clear_error();
        int n = SSL_read(ssl, buf, RBUF_SIZE);
        if (n > 0) {
            if (process(x, buf, (size_t)n) != ST_CONT)
                return;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        int sys = errno;
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            watch(x, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
            return;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            read_failed(x, 0);
        else
            read_failed(x, e == SSL_ERROR_SYSCALL ? (sys ? sys : ECONNRESET) : EPROTO);
        return;
    }
    /* Fair share used: come back for what OpenSSL still holds. */
    if (SSL_has_pending(ssl))
        event_active(&x->conn->ev, EV_READ, 1);
}

static void read_ready(struct h1x *x)
{
    if (x->conn->tls) {
        read_ready_tls(x);
        return;
    }
    char *buf = x->c->rbuf;
    for (int i = 0; i < READS_PER_EVENT; i++) {
        ssize_t n = recv(x->conn->fd, buf, RBUF_SIZE, 0);
        if (n > 0) {
            if (process(x, buf, (size_t)n) != ST_CONT || (size_t)n < RBUF_SIZE)
                return;
            continue;
        }
        if (n == 0) {
            read_failed(x, 0);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            read_failed(x, errno);
        return;
    }
}

static void on_conn_event(evutil_socket_t fd, short what, void *arg)
{
    struct h1x *x = arg;
    switch (x->phase) {
    case PH_CONNECT:
        connected(x);
        break;
    case PH_TLS:
        handshake(x);
        break;
    case PH_WRITE:
        if ((what & EV_READ) && !x->conn->tls)
            early_answer(x);
        else
            send_more(x);
        break;
    case PH_READ:
        read_ready(x);
        break;
    default:
        break;
    }
}

/* Deliver what a pause held back, then read on. */
static void resume_held(struct h1x *x)
{
    char *h = x->held;
    size_t hl = x->held_len, span = x->held_span;
    x->held = NULL;
    x->held_len = x->held_span = 0;
    enum step s = span ? deliver(x, h, span, hl - span) : ST_CONT;
    if (s == ST_CONT && hl > span)
        s = process(x, h + span, hl - span);
    free(h);
    if (s == ST_CONT) {
        watch(x, EV_READ);
        if (x->conn->tls) /* OpenSSL may hold decrypted bytes the socket will not signal */
            event_active(&x->conn->ev, EV_READ, 1);
    }
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct h1x *x = arg;
    if (x->phase == PH_BEGIN) {
        if (x->fail_err) {
            finish(x, LP_XFER_TLS, x->fail_err);
            return;
        }
        x->conn = lp_pool_take(x->c->pool, x->key);
        if (x->conn) {
            x->reused = true;
            watch(x, x->conn->mask); /* take the events over; the registration stays */
            send_request(x);
        } else {
            open_connection(x);
        }
        return;
    }
    if (!x->paused && x->held)
        resume_held(x);
}

/* ---- public -------------------------------------------------------------------------------------
 */

struct lp_h1client *lp_h1client_create(struct event_base *base, const struct lp_upstream_opts *o)
{
    struct lp_h1client *c = lp_xcalloc(1, sizeof *c);
    c->base = base;
    size_t idle = o && o->max_connects > 0 ? (size_t)o->max_connects : 512;
    int64_t idle_ms = (o && o->max_age_conn_s > 0 ? o->max_age_conn_s : 50) * 1000;
    c->pool = lp_pool_create(base, idle, idle_ms);
    c->dns = lp_dns_create(base);
    c->tls = lp_tls_create();
    c->rbuf = lp_xmalloc(RBUF_SIZE);
    return c;
}

void lp_h1client_destroy(struct lp_h1client *c)
{
    if (!c)
        return;
    while (c->live) {
        c->live->cancelled = true;
        destroy(c->live);
    }
    lp_pool_destroy(c->pool);
    lp_dns_destroy(c->dns);
    lp_tls_destroy(c->tls);
    free(c->rbuf);
    free(c);
}

size_t lp_h1client_active(const struct lp_h1client *c)
{
    return c->active;
}

size_t lp_h1client_idle(const struct lp_h1client *c)
{
    return lp_pool_idle(c->pool);
}

struct lp_upstream_xfer *lp_h1client_start(struct lp_h1client *c, const struct lp_upstream_req *r,
                                           const struct lp_upstream_cbs *cbs, void *arg)
{
    struct h1x *x = lp_xcalloc(1, sizeof *x);
    char authority[MAX_AUTHORITY], host[MAX_AUTHORITY];
    const char *target = NULL;
    bool literal = false, tls = false;
    if (!parse_url(r->url, authority, &target, host, &x->port, &x->addrs, &literal, &tls) ||
        (!literal && !c->dns) || (tls && !c->tls)) {
        if (r->body_owned)
            free((char *)r->body);
        free(x);
        return NULL;
    }
    x->base.engine = LP_ENGINE_H1;
    x->c = c;
    x->cbs = *cbs;
    x->arg = arg;
    if (!literal)
        x->host = lp_xstrdup(host);
    x->tls = tls;
    if (tls) {
        x->peer_name = lp_xstrdup(host);
        x->peer_is_ip = literal && strcasecmp(host, "localhost") != 0;
        x->ctx = lp_tls_ctx(c->tls, r->ca_pem, &x->fail_err);
        /* Connections verified against different CA bundles are never interchangeable. */
        x->key = lp_xasprintf("https://%s#%p", authority, (void *)x->ctx);
    } else {
        x->key = lp_xasprintf("http://%s", authority);
    }
    x->head = build_head(r, authority, target, &x->head_len);
    x->body = r->post && r->body ? r->body : "";
    x->body_len = r->post ? r->body_len : 0;
    if (r->body_owned)
        x->owned_body = (char *)r->body;
    x->connect_ms = r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 10000;
    x->write_ms = r->write_timeout_ms;
    x->total_deadline_us = r->total_timeout_ms > 0 ? lp_now_us() + r->total_timeout_ms * 1000 : 0;
    lp_h1reader_init(&x->rd);
    evtimer_assign(&x->timer, c->base, on_timer, x);
    event_assign(&x->defer, c->base, -1, 0, on_defer, x);
    x->phase = PH_BEGIN;
    x->next = c->live;
    if (c->live)
        c->live->prev = x;
    c->live = x;
    c->active++;
    arm_timer(x, 0);
    event_active(&x->defer, EV_TIMEOUT, 0);
    return &x->base;
}

void lp_h1client_cancel(struct lp_upstream_xfer *bx)
{
    struct h1x *x = (struct h1x *)bx;
    if (!x || x->cancelled)
        return;
    x->cancelled = true;
    if (x->in_cb == 0)
        destroy(x);
}

void lp_h1client_resume(struct lp_upstream_xfer *bx)
{
    struct h1x *x = (struct h1x *)bx;
    if (!x->paused || x->cancelled)
        return;
    x->paused = false;
    event_active(&x->defer, EV_TIMEOUT, 0);
}

bool lp_h1client_paused(const struct lp_upstream_xfer *bx)
{
    return ((const struct h1x *)bx)->paused;
}

const char *lp_h1client_header(const struct lp_upstream_xfer *bx, const char *name)
{
    return lp_h1reader_header(&((const struct h1x *)bx)->rd, name);
}

size_t lp_h1client_header_count(const struct lp_upstream_xfer *bx)
{
    return lp_h1reader_header_count(&((const struct h1x *)bx)->rd);
}

void lp_h1client_header_at(const struct lp_upstream_xfer *bx, size_t i, const char **name,
                           const char **value)
{
    lp_h1reader_header_at(&((const struct h1x *)bx)->rd, i, name, value);
}

bool lp_h1client_reused(const struct lp_upstream_xfer *bx)
{
    return ((const struct h1x *)bx)->reused;
}

int lp_h1client_http_version(const struct lp_upstream_xfer *bx)
{
    return lp_h1reader_minor(&((const struct h1x *)bx)->rd) == 0 ? 10 : 11;
}
