/* edge.c - the HTTP/1.1 server edge: raw libevent events + a flat input buffer + an evbuffer for
 * output (see edge.h and docs/internals/edge.md).
 *
 * Per connection there are four embedded events (no per-request event_new/free): a persistent
 * read event, a persistent write event that is registered only while output is queued, one
 * timer whose meaning follows the connection state, and a "defer" event that is activated with
 * event_active() to run work later in the same loop pass (close notifications and the next
 * pipelined request), so that no handler callback ever runs inside an lp_edge_* call.
 *
 * Input: one flat buffer per connection. The request head is parsed in place there (the request
 * points into it), so the buffer is only compacted or grown while no head is parsed. A body with
 * a Content-Length is read straight into a body buffer; a chunked body is decoded from the input
 * buffer into the body buffer. The body buffer grows geometrically as bytes actually arrive
 * (never to an announced size up front), up to the Content-Length or max_body_bytes, and every
 * byte of it is taken from the process-wide body budget (if one is attached) before it is
 * allocated.
 *
 * Output: responses are written to the socket at once (sendmsg of head + body in one call); only
 * what the kernel did not take is copied into the evbuffer, which is then flushed on EPOLLOUT.
 *
 * Freeing: a connection is freed only when its socket is closed, its request is not active and
 * no edge callback of it is on the stack (depth == 0).
 */
#include "edge.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event_struct.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "budget.h"
#include "conncap.h"
#include "http1.h"
#include "log.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"

#define DEFAULT_MAX_HEADER ((size_t)16 * 1024)
#define DEFAULT_MAX_BODY ((size_t)16 * 1024 * 1024)
#define IN_INITIAL 4096   /* input buffer of a new or idle connection */
#define IN_MIN_SPARE 2048 /* room kept after a parsed head for body bytes / pipelining */
#define SPILL_MAX                                                                                  \
    16384                          /* pipelined bytes buffered while a request is active; past it, \
                                      reading pauses (EV_CLOSED only, which misses a reset) */
#define IDLE_KEEP_BODY (64 * 1024) /* body storage above this is released between requests */
#define BODY_INITIAL                                                                               \
    (16 * 1024)                /* first body allocation when more is announced than has arrived    \
                                */
#define RATE_WINDOW_MS 5000    /* default minimum-rate window (and grace before the first check) */
#define FULL_PAUSE_MS 50       /* at the total connection cap: retry accepting after this */
#define LIMIT_LOG_MS 10000     /* at most one log line per cause per edge in this interval */
#define HEAD_MAX (1024 * 1024) /* ceiling on a response head built from handler headers */
#define LINGER_MS 2000         /* after a reject: discard input this long before closing */
#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100 /* pause accepting after EMFILE and friends */
#define MAX_IOV 16

enum cstate {
    CS_HEAD,   /* waiting for / reading a request head (idle while !head_started) */
    CS_BODY,   /* reading a request body */
    CS_ACTIVE, /* the request is with the handler or the reject callback */
    CS_FLUSH,  /* request ended; the rest of the response is being written */
    CS_LINGER, /* after a reject: write side shut, discarding input until EOF or LINGER_MS */
    CS_CLOSED, /* socket closed; the struct lives on until the request is ended */
};

enum read_mode { RM_OFF, RM_ON, RM_CLOSED /* only peer-close detection (EPOLLRDHUP) */ };

enum framing { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_CLOSE };

struct conn;

struct lp_edge_req {
    struct conn *conn;
    lp_edge_close_cb close_cb;
    void *close_arg;
    lp_edge_drain_cb drain_cb;
    void *drain_arg;
    size_t low_wm;
    bool active;         /* handed to the handler / reject callback and not ended */
    bool gone;           /* the client went away */
    bool close_notified; /* close_cb was called (at most once) */
    bool started;        /* lp_edge_start was called */
    bool chunked_out;    /* streaming body uses chunked framing */
    bool no_body;        /* HEAD request or bodiless status: body bytes are not sent */
    bool head_method;
    bool above_lw; /* pending output went above the drain low watermark */
};

struct conn {
    struct lp_edge *edge;
    struct conn *prev, *next;
    int fd; /* -1 once closed */
    enum cstate state;
    int depth; /* edge callbacks of this connection on the stack */
    struct event rev, wev, timer, defer;
    enum read_mode read_mode;
    bool write_on;       /* wev registered */
    bool head_started;   /* CS_HEAD: header timeout running (else keep-alive idle) */
    bool must_close;     /* close after the current response */
    bool corked;         /* lp_edge_cork: queue output, send it in one go at uncork */
    bool to_spill;       /* the pending recv targets spill (see read_target) */
    struct lp_buf spill; /* bytes read while a request is active and in[] is full (pipelined
                            input), so reading, and thus reset detection, never has to stop */
    bool linger;         /* close through CS_LINGER (unread input may follow) */
    bool read_eof;       /* peer sent FIN while the response was still being flushed */
    bool defer_next;     /* on_defer: parse the next buffered request */
    bool notify_close;   /* on_defer: call close_cb */
    int64_t deadline;    /* ms (monotonic) when the state's timeout expires; 0 = none */
    int64_t timer_at;    /* when the timer event is due; 0 = not pending */
    /* CS_BODY clocks (ms, monotonic; 0 = off): the state's deadline is the earliest of
     * last_rx_at + body_idle_timeout, body_end_at and rate_at. */
    int64_t body_end_at; /* the whole body must have arrived by then */
    int64_t rate_at;     /* next minimum-rate check */
    int64_t last_rx_at;  /* last body byte received */
    uint64_t body_rx;    /* body bytes received from the socket (chunk framing included) */
    uint64_t rate_mark;  /* body_rx at the previous rate check */
    size_t body_ceil;    /* body storage never grows past this (Content-Length or limit, + 1) */
    size_t charged;      /* bytes of body storage taken from the edge's body budget */
    struct lp_conncap_addr addr; /* the peer as counted by the per-address cap */
    bool counted; /* holds a slot of the connection caps (released when the socket closes) */
    struct lp_edge_limits lim; /* snapshot taken when a request head starts */
    /* Input: in[0, in_len) holds bytes; in[in_off, in_len) are unconsumed. While a request is
     * parsed, in[head_off, head_off + head_len) is its head, which *h points into. */
    char *in;
    size_t in_cap, in_len, in_off, head_off, head_len, scan;
    size_t body_need; /* Content-Length bytes still to read */
    struct lp_http1_chunked chunk;
    struct lp_http1_request h;
    struct lp_buf body; /* reused across requests; ceiling = max_body_bytes */
    struct lp_buf hbuf; /* response head scratch, reused */
    struct evbuffer *out;
    struct sockaddr_storage peer;
    char peer_ip[INET6_ADDRSTRLEN];
    struct lp_edge_req req;
};

struct lp_edge {
    struct event_base *base;
    int listen_fd;
    struct event lev;
    struct event pause_timer;
    bool listening;
    bool draining;
    bool destroyed;
    bool early_close; /* the backend supports EV_CLOSED */
    bool full_paused; /* accepting paused because the total connection cap was reached */
    struct lp_edge_limits lim;
    lp_edge_request_cb on_request;
    lp_edge_reject_cb on_reject;
    lp_edge_head_cb on_head;
    void *arg;
    struct lp_conncap *caps;                /* NULL = no connection caps */
    struct lp_budget *bodies;               /* NULL = no body budget */
    int64_t full_logged_at, addr_logged_at; /* rate limits of the cap log lines */
    uint64_t addr_refused; /* connections closed by the per-address cap since the last log */
    struct conn *conns;
    size_t n_conns; /* allocated, including closed ones waiting for their request to end */
    size_t n_open;
    size_t n_active;
};

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_defer(evutil_socket_t fd, short what, void *arg);
static void process_input(struct conn *c);
static void after_flush(struct conn *c);
static void resume_accept(struct lp_edge *e);
static void body_release(struct conn *c, bool keep);

/* ---- small helpers ---- */

static const char *status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 529:
        return "Overloaded";
    default:
        return "Unknown";
    }
}

static bool status_has_no_body(int status)
{
    return status < 200 || status == 204 || status == 304;
}

/* Decimal or hex digits of v into buf (no NUL); returns the length. */
static size_t fmt_uint(char *buf, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static bool is_framing_header(const char *name)
{
    return strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0 ||
           strcasecmp(name, "connection") == 0;
}

/* Handler headers must not be able to split the response. */
static bool header_ok(const struct lp_edge_header *h)
{
    return h->name && h->value && h->name[0] && !strpbrk(h->name, "\r\n:") &&
           !strpbrk(h->value, "\r\n");
}

/* ---- timers: one event per connection; extending a deadline costs no event_add ---- */

static void arm_timer(struct conn *c, int64_t now, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(&c->timer, &tv);
    c->timer_at = now + ms;
}

/* Set the state's deadline to now + ms (ms <= 0: none). The timer is re-added only when the new
 * deadline is earlier than the pending one; a later deadline is picked up lazily by on_timer. */
static void set_deadline(struct conn *c, int64_t ms)
{
    if (ms <= 0) {
        c->deadline = 0;
        return;
    }
    int64_t now = lp_now_ms();
    c->deadline = now + ms;
    if (c->timer_at == 0 || c->timer_at > c->deadline)
        arm_timer(c, now, ms);
}

/* ---- read interest ---- */

static void set_read(struct conn *c, enum read_mode mode)
{
    if (c->read_mode == mode || c->fd < 0)
        return;
    if (c->read_mode != RM_OFF)
        event_del(&c->rev);
    c->read_mode = mode;
    if (mode == RM_OFF)
        return;
    short what = mode == RM_ON ? EV_READ | EV_PERSIST : EV_CLOSED | EV_PERSIST;
    event_assign(&c->rev, c->edge->base, c->fd, what, on_read, c);
    event_add(&c->rev, NULL);
}

/* No room for more input while a request is in progress: stop reading but keep noticing a
 * peer close where the backend can (EV_CLOSED = EPOLLRDHUP). */
static void pause_reading(struct conn *c)
{
    set_read(c, c->edge->early_close ? RM_CLOSED : RM_OFF);
}

/* ---- connection lifetime ---- */

static void free_edge(struct lp_edge *e)
{
    if (e->listening)
        event_del(&e->lev);
    event_del(&e->pause_timer);
    free(e);
}

static void free_conn(struct conn *c)
{
    struct lp_edge *e = c->edge;
    event_del(&c->defer);
    event_del(&c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        e->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    LP_FREE(&c->in);
    body_release(c, false);
    lp_buf_free(&c->hbuf);
    lp_buf_free(&c->spill);
    evbuffer_free(c->out);
    free(c);
    e->n_conns--;
    if (e->destroyed && e->n_conns == 0)
        free_edge(e);
}

static void maybe_free(struct conn *c)
{
    if (c->fd < 0 && !c->req.active && c->depth == 0)
        free_conn(c);
}

/* Leave an edge callback: the connection may be freed now that nothing of it is on the stack. */
static void leave(struct conn *c)
{
    c->depth--;
    maybe_free(c);
}

/* Close the socket now. An active request learns of it through close_cb, delivered from the
 * defer event so that it never runs inside an lp_edge_* call the handler is making. */
static void close_conn(struct conn *c)
{
    if (c->fd < 0)
        return;
    set_read(c, RM_OFF);
    if (c->write_on)
        event_del(&c->wev);
    c->write_on = false;
    event_del(&c->timer);
    c->timer_at = c->deadline = 0;
    close(c->fd);
    c->fd = -1;
    c->state = CS_CLOSED;
    c->edge->n_open--;
    if (c->counted) {
        c->counted = false;
        lp_conncap_leave(c->edge->caps, &c->addr);
        lp_conncap_unreserve(c->edge->caps);
        resume_accept(c->edge); /* a slot is free again */
    }
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    if (c->req.active) {
        c->req.gone = true;
        if (!c->req.close_notified) {
            c->notify_close = true;
            event_active(&c->defer, EV_TIMEOUT, 1);
        }
    }
}

static void start_linger(struct conn *c)
{
    /* Closing with unread input makes the kernel send RST, which can destroy the response
     * before the client reads it. Send FIN, then discard input until EOF or LINGER_MS. */
    shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    c->in_len = c->in_off = 0;
    body_release(c, false); /* nothing refers to the body any more */
    set_read(c, RM_ON);
    set_deadline(c, LINGER_MS);
}

static void finish_close(struct conn *c)
{
    /* Unread pipelined bytes would turn close() into a RST as well. */
    if ((c->linger || c->in_off < c->in_len) && !c->read_eof)
        start_linger(c);
    else
        close_conn(c);
}

/* ---- output ---- */

/* Write iov[0, n) after whatever is queued: straight to the socket when nothing is queued (the
 * common case costs one sendmsg and no copy), queueing only the part the kernel did not take. */
static void out_write(struct conn *c, struct iovec *iov, int n)
{
    if (c->fd < 0)
        return;
    size_t done = 0;
    if (c->corked) {
        for (int i = 0; i < n; i++)
            evbuffer_add(c->out, iov[i].iov_base, iov[i].iov_len);
        return;
    }
    if (evbuffer_get_length(c->out) == 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            close_conn(c);
            return;
        }
        done = w > 0 ? (size_t)w : 0;
    }
    for (int i = 0; i < n; i++) {
        size_t skip = done < iov[i].iov_len ? done : iov[i].iov_len;
        done -= skip;
        if (iov[i].iov_len > skip)
            evbuffer_add(c->out, (const char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
    }
    size_t pending = evbuffer_get_length(c->out);
    if (pending == 0)
        return;
    if (!c->write_on) {
        event_add(&c->wev, NULL);
        c->write_on = true;
        if (c->state == CS_ACTIVE || c->state == CS_FLUSH)
            set_deadline(c, c->lim.write_timeout_ms);
    }
    if (c->req.drain_cb && pending > c->req.low_wm)
        c->req.above_lw = true;
}

static void out_write1(struct conn *c, const void *p, size_t n)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    out_write(c, &iov, 1);
}

/* One sendmsg of queued output per call (level-triggered EPOLLOUT brings us back). Returns
 * false if the connection was closed. */
static bool flush_out(struct conn *c)
{
    struct evbuffer_iovec ev[MAX_IOV];
    struct iovec iov[MAX_IOV];
    int n = evbuffer_peek(c->out, -1, NULL, ev, MAX_IOV);
    if (n > MAX_IOV)
        n = MAX_IOV;
    for (int i = 0; i < n; i++)
        iov[i] = (struct iovec){.iov_base = ev[i].iov_base, .iov_len = ev[i].iov_len};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return true;
        close_conn(c);
        return false;
    }
    evbuffer_drain(c->out, (size_t)w);
    if (w > 0 && (c->state == CS_ACTIVE || c->state == CS_FLUSH))
        set_deadline(c, c->lim.write_timeout_ms); /* progress: restart the write timeout */
    return true;
}

static void append_head_line(struct lp_buf *b, const char *name, const char *value)
{
    lp_buf_appends(b, name);
    lp_buf_append(b, ": ", 2);
    lp_buf_appends(b, value);
    lp_buf_append(b, "\r\n", 2);
}

/* Build the response head into c->hbuf. */
static void build_head(struct conn *c, int status, const struct lp_edge_header *hdrs, size_t n,
                       enum framing fr, size_t clen)
{
    struct lp_buf *b = &c->hbuf;
    char num[24];
    lp_buf_reset(b);
    lp_buf_append(b, "HTTP/1.1 ", 9);
    lp_buf_append(b, num, fmt_uint(num, (uint64_t)status, 10));
    lp_buf_appendc(b, ' ');
    lp_buf_appends(b, status_reason(status));
    lp_buf_append(b, "\r\n", 2);
    for (size_t i = 0; i < n; i++) {
        const struct lp_edge_header *h = &hdrs[i];
        if (!header_ok(h) || is_framing_header(h->name))
            continue;
        /* Keep room for the framing lines below, so they always fit under the ceiling. */
        if (b->len + strlen(h->name) + strlen(h->value) + 256 > b->max)
            continue;
        append_head_line(b, h->name, h->value);
    }
    if (fr == FR_LENGTH) {
        lp_buf_append(b, "Content-Length: ", 16);
        lp_buf_append(b, num, fmt_uint(num, clen, 10));
        lp_buf_append(b, "\r\n", 2);
    } else if (fr == FR_CHUNKED) {
        lp_buf_appends(b, "Transfer-Encoding: chunked\r\n");
    }
    if (c->must_close)
        lp_buf_appends(b, "Connection: close\r\n");
    else if (c->h.minor == 0)
        lp_buf_appends(b, "Connection: keep-alive\r\n");
    lp_buf_append(b, "\r\n", 2);
}

/* ---- request lifecycle ---- */

static void activate_req(struct conn *c)
{
    struct lp_edge_req *r = &c->req;
    *r = (struct lp_edge_req){.conn = c, .active = true};
    r->head_method = c->h.method && strcmp(c->h.method, "HEAD") == 0;
    c->edge->n_active++;
    c->state = CS_ACTIVE;
    c->deadline = 0;
    if (c->edge->draining)
        c->must_close = true;
}

/* The handler ended the request: flush, then go on with the connection. */
static void uncork_conn(struct conn *c);

static void end_request(struct conn *c)
{
    if (c->corked)
        uncork_conn(c);
    c->req.active = false;
    c->edge->n_active--;
    body_release(c, true); /* ended: nothing refers to the body; large storage goes now */
    if (c->fd < 0) {
        maybe_free(c);
        return;
    }
    if (evbuffer_get_length(c->out) > 0) {
        c->state = CS_FLUSH; /* on_write continues; the write timeout keeps running */
        return;
    }
    after_flush(c);
    maybe_free(c);
}

static void dispatch(struct conn *c)
{
    if (c->body.data)
        c->body.data[c->body.len] = '\0';
    activate_req(c);
    c->edge->on_request(&c->req, c->edge->arg);
}

static void plain_reject(struct conn *c, int status, const char *reason)
{
    char body[256];
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, status_reason(status), reason);
    const struct lp_edge_header h[] = {{"Content-Type", "text/plain; charset=utf-8"},
                                       {"Retry-After", "1"}};
    lp_edge_respond(&c->req, status, h, status == 503 ? 2 : 1, body,
                    (size_t)n < sizeof body ? (size_t)n : 0);
}

/* Show the parsed head to on_head. True when the handler ended the request there: its answer
 * is on the way and the connection closes after it without reading the body. */
static bool head_answered(struct conn *c)
{
    bool must_close = c->must_close;
    lp_buf_reset(&c->body); /* the handler must not see the previous request's body */
    c->must_close = true;   /* an answer given now closes: the body is never read */
    c->linger = true;       /* ... but what the client still sends is drained, not reset */
    activate_req(c);
    c->edge->on_head(&c->req, c->edge->arg);
    /* depth > 0 here (we are inside an edge callback), so c is still valid. */
    if (!c->req.active)
        return true;
    if (c->req.started) {
        lp_edge_abort(&c->req); /* misuse: a streamed answer at the head */
        return true;
    }
    /* Not answered: forget the activation and go on to the body. */
    c->req.active = false;
    c->edge->n_active--;
    c->corked = false;
    c->must_close = must_close;
    c->linger = false;
    return false;
}

/* Refuse the current request: the callback (or the plain fallback) answers, then we close. */
static void reject(struct conn *c, int status, const char *reason)
{
    c->must_close = true;
    c->linger = true;
    activate_req(c);
    if (c->edge->on_reject)
        c->edge->on_reject(&c->req, status, reason, c->edge->arg);
    /* depth > 0 here (we are inside an edge callback), so c is still valid. */
    if (c->req.active)
        plain_reject(c, status, reason);
}

/* ---- body storage (grows as bytes arrive, charged to the body budget) and body clocks ---- */

/* Make the bytes charged to the body budget equal `cap`: take the growth (false, and nothing
 * changes, when the budget refuses) or give back the excess. */
static bool charge(struct conn *c, size_t cap)
{
    struct lp_budget *b = c->edge->bodies;
    if (cap > c->charged) {
        if (b && !lp_budget_take(b, cap - c->charged))
            return false;
    } else if (b) {
        lp_budget_give(b, c->charged - cap);
    }
    c->charged = cap;
    return true;
}

/* The body is no longer referenced: give its storage back to the budget, and free it unless
 * `keep` and it is small enough to keep for the next request. */
static void body_release(struct conn *c, bool keep)
{
    if (!keep || c->body.cap > IDLE_KEEP_BODY)
        lp_buf_free(&c->body);
    charge(c, 0);
}

/* Room for `room` more body bytes plus the NUL. Storage grows geometrically (doubling, at least
 * BODY_INITIAL) as bytes arrive, never past body_ceil, and is charged to the budget before it is
 * allocated. False when the budget refuses. */
static bool body_grow(struct conn *c, size_t room)
{
    struct lp_buf *b = &c->body;
    size_t need = b->len + room + 1;
    if (room == 0 || need <= b->cap)
        return true;
    if (need > c->body_ceil)
        need = c->body_ceil;
    size_t cap = b->cap * 2;
    if (cap < BODY_INITIAL)
        cap = BODY_INITIAL;
    if (cap < need)
        cap = need;
    if (cap > c->body_ceil)
        cap = c->body_ceil;
    if (!charge(c, cap))
        return false; /* no creeping by smaller steps: under pressure the body is refused */
    if (b->len == 0) {
        free(b->data); /* nothing to keep: malloc, not realloc, avoids a copy */
        b->data = lp_xmalloc(cap);
    } else {
        b->data = lp_xrealloc(b->data, cap);
    }
    b->cap = cap;
    b->data[b->len] = '\0';
    return true;
}

/* CS_BODY: the state's deadline is the earliest of the silence timeout (from the last byte), the
 * overall body deadline and the next minimum-rate check. */
static void body_clock(struct conn *c, int64_t now)
{
    int64_t at = c->body_end_at;
    if (c->lim.body_idle_timeout_ms > 0) {
        int64_t quiet = c->last_rx_at + c->lim.body_idle_timeout_ms;
        if (!at || quiet < at)
            at = quiet;
    }
    if (c->rate_at && (!at || c->rate_at < at))
        at = c->rate_at;
    c->deadline = at;
    if (at && (c->timer_at == 0 || c->timer_at > at))
        arm_timer(c, now, at > now ? at - now : 0);
}

/* A body starts: its storage may grow up to `ceil` bytes; `have` bytes came with the head; the
 * body clocks start now. */
static void body_begin(struct conn *c, size_t ceil, size_t have)
{
    int64_t now = lp_now_ms();
    c->body_ceil = ceil;
    c->body_end_at = c->lim.body_timeout_ms > 0 ? now + c->lim.body_timeout_ms : 0;
    c->rate_at = c->lim.min_body_rate ? now + c->lim.body_rate_window_ms : 0;
    c->last_rx_at = now;
    c->body_rx = have; /* what came with the head counts for the first rate window */
    c->rate_mark = 0;
    /* Storage kept from an earlier request is charged again while this body uses it; when the
     * budget cannot take it, drop it and let body_grow ask for what is really needed. */
    if (!charge(c, c->body.cap))
        lp_buf_free(&c->body);
}

/* The body budget cannot take the body's next storage: 503 (with Retry-After), counted. */
static void reject_budget(struct conn *c)
{
    lp_budget_count_refusal(c->edge->bodies); /* only a budget can refuse */
    reject(c, 503, "request body memory budget exhausted");
}

/* A body clock expired (CS_BODY): 408, or the minimum-rate check passed and the clocks go on. */
static void body_timeout(struct conn *c)
{
    int64_t now = lp_now_ms();
    if (c->body_end_at && now >= c->body_end_at) {
        reject(c, 408, "request body not received within the body deadline");
        return;
    }
    if (c->lim.body_idle_timeout_ms > 0 && now >= c->last_rx_at + c->lim.body_idle_timeout_ms) {
        reject(c, 408, "request body timeout (no data)");
        return;
    }
    if (c->rate_at && now >= c->rate_at) {
        uint64_t need = c->lim.min_body_rate * (uint64_t)c->lim.body_rate_window_ms / 1000;
        if (c->body_rx - c->rate_mark < need) {
            reject(c, 408, "request body arriving below the minimum rate");
            return;
        }
        c->rate_mark = c->body_rx;
        c->rate_at = now + c->lim.body_rate_window_ms;
    }
    body_clock(c, now);
}

static void send_continue(struct conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    /* Only while the client is still waiting for it (no body byte has arrived yet). */
    if (c->h.expect_continue && c->in_off == c->in_len)
        out_write1(c, cont, sizeof cont - 1);
}

static void feed_chunked(struct conn *c)
{
    /* The decoder appends at most what is buffered: make room for it first (budget-checked),
     * so the decoder itself never allocates. */
    size_t avail = c->in_len - c->in_off;
    size_t left = c->lim.max_body_bytes > c->body.len ? c->lim.max_body_bytes - c->body.len : 0;
    if (!body_grow(c, avail < left ? avail : left)) {
        reject_budget(c);
        return;
    }
    size_t used = 0;
    enum lp_status rc =
        lp_http1_chunked_feed(&c->chunk, c->in + c->in_off, c->in_len - c->in_off, &used, &c->body);
    c->in_off += used;
    if (rc == LP_AGAIN) {
        /* Everything was consumed: reuse the space after the head for the next read. */
        c->in_len = c->in_off = c->head_off + c->head_len;
        return;
    }
    if (rc == LP_OK)
        dispatch(c);
    else if (rc == LP_ERR_TOOBIG)
        reject(c, 413, "request body too large");
    else
        reject(c, 400, "malformed chunked body");
}

static void start_chunked(struct conn *c)
{
    lp_http1_chunked_init(&c->chunk);
    send_continue(c);
    c->state = CS_BODY;
    body_begin(c, c->lim.max_body_bytes + 1, c->in_len - c->in_off);
    body_clock(c, c->last_rx_at);
    feed_chunked(c);
}

/* Content-Length body: read straight into the body buffer, which grows as bytes arrive (a
 * Content-Length is only a promise: nothing is allocated for bytes that have not come). */
static void start_sized(struct conn *c, size_t cl)
{
    size_t have = c->in_len - c->in_off;
    if (have > cl)
        have = cl;
    body_begin(c, cl + 1, have);
    /* Room for what is here and, if more is to come, at least one more byte to read. */
    if (!body_grow(c, have < cl ? have + 1 : have)) {
        reject_budget(c);
        return;
    }
    if (have)
        memcpy(c->body.data, c->in + c->in_off, have);
    c->in_off += have;
    c->body.len = have;
    if (have == cl) {
        dispatch(c);
        return;
    }
    send_continue(c);
    c->body_need = cl - have;
    c->state = CS_BODY;
    body_clock(c, c->last_rx_at);
}

static void start_body(struct conn *c)
{
    const struct lp_http1_request *h = &c->h;
    c->must_close = !h->keep_alive;
    lp_buf_reset(&c->body);
    c->body.max = c->lim.max_body_bytes;
    if (h->chunked)
        start_chunked(c);
    else if (h->content_length <= 0)
        dispatch(c);
    else if ((uint64_t)h->content_length > c->lim.max_body_bytes)
        reject(c, 413, "request body too large"); /* before reading any of it */
    else
        start_sized(c, (size_t)h->content_length);
}

/* ---- input ---- */

static void compact_in(struct conn *c)
{
    size_t left = c->in_len - c->in_off;
    if (c->in_off > 0 && left > 0)
        memmove(c->in, c->in + c->in_off, left);
    c->in_len = left;
    c->in_off = 0;
}

/* Make sure in[] has capacity >= need (only while no head is parsed: pointers move). */
static void grow_in(struct conn *c, size_t need)
{
    if (c->in_cap >= need)
        return;
    size_t cap = c->in_cap ? c->in_cap : IN_INITIAL;
    while (cap < need)
        cap *= 2;
    size_t limit = c->lim.max_header_bytes + IN_MIN_SPARE;
    if (cap > limit)
        cap = limit > need ? limit : need;
    c->in = lp_xrealloc(c->in, cap);
    c->in_cap = cap;
}

static void reject_head_too_large(struct conn *c)
{
    /* Describe the request to the reject callback if at least its request line arrived. */
    memset(&c->h, 0, sizeof c->h);
    c->h.content_length = -1;
    c->h.minor = 1;
    char *line = c->in + c->in_off;
    char *nl = memchr(line, '\n', c->in_len - c->in_off);
    const char *why;
    if (nl)
        lp_http1_parse_request_line(line, (size_t)(nl - line), &c->h, &why);
    reject(c, 431, "request header block too large");
}

/* CS_HEAD: look for a complete head in the buffered bytes and start the request. */
static void process_input(struct conn *c)
{
    /* Ignore empty lines before a request line (RFC 9112 2.2), e.g. a CRLF after a body. */
    size_t skip = c->in_off;
    while (c->in_off < c->in_len && (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n'))
        c->in_off++;
    if (c->in_off != skip)
        c->scan = 0;
    size_t avail = c->in_len - c->in_off;
    if (avail == 0)
        return;
    if (!c->head_started) {
        c->head_started = true;
        set_deadline(c, c->lim.header_timeout_ms);
    }
    size_t end = lp_http1_find_head_end(c->in + c->in_off, avail, &c->scan);
    if (end == 0 || end > c->lim.max_header_bytes) {
        if (end > 0 || avail >= c->lim.max_header_bytes)
            reject_head_too_large(c);
        return;
    }
    if (c->in_cap - c->in_off - end < IN_MIN_SPARE) {
        compact_in(c);
        grow_in(c, end + IN_MIN_SPARE);
    }
    c->head_off = c->in_off;
    c->head_len = end;
    c->in_off += end;
    const char *reason = "";
    int st = lp_http1_parse_head(c->in + c->head_off, end, &c->h, &reason);
    if (st != 0)
        reject(c, st, reason);
    else if (!c->edge->on_head || !head_answered(c))
        start_body(c);
}

/* Where the next recv goes, by state. Returns false when there is no room. */
static bool read_target(struct conn *c, char **dst, size_t *room)
{
    if (c->state == CS_BODY && !c->h.chunked) {
        /* Storage is grown after each read (on_bytes), so there is always room here. */
        size_t space = c->body.cap - c->body.len - 1;
        *dst = c->body.data + c->body.len;
        *room = c->body_need < space ? c->body_need : space;
        return *room > 0;
    }
    if (!c->in)
        grow_in(c, IN_INITIAL);
    if (c->state == CS_LINGER) {
        c->in_len = c->in_off = 0; /* discard */
    } else if (c->state == CS_HEAD) {
        if (c->in_len == c->in_cap)
            compact_in(c);
        /* Growth stops at the head limit (+ spare); a fuller buffer has already been refused
         * with 431 by process_input. */
        if (c->in_len == c->in_cap && c->in_cap < c->lim.max_header_bytes + IN_MIN_SPARE)
            grow_in(c, c->in_cap + 1);
    }
    *dst = c->in + c->in_len;
    *room = c->in_cap - c->in_len;
    c->to_spill = false;
    if (*room == 0 && (c->state == CS_ACTIVE || c->state == CS_FLUSH)) {
        /* in[] holds the parsed head (pointers into it): keep reading into a side buffer, so a
         * client reset is seen at once (an EV_CLOSED-only registration cannot see it). */
        size_t left = c->spill.max > c->spill.len + 1 ? c->spill.max - c->spill.len - 1 : 0;
        if (left == 0 || lp_buf_reserve(&c->spill, left < 4096 ? left : 4096) != LP_OK)
            return false;
        *dst = c->spill.data + c->spill.len;
        *room = c->spill.cap - c->spill.len - 1;
        if (*room > left)
            *room = left;
        c->to_spill = true;
    }
    return *room > 0;
}

static void on_bytes(struct conn *c, size_t n)
{
    switch (c->state) {
    case CS_HEAD:
        c->in_len += n;
        process_input(c);
        break;
    case CS_BODY: {
        int64_t now = lp_now_ms();
        c->last_rx_at = now; /* progress: the silence clock restarts */
        c->body_rx += n;
        body_clock(c, now);
        if (c->h.chunked) {
            c->in_len += n;
            feed_chunked(c);
        } else {
            c->body.len += n;
            c->body_need -= n;
            c->body.data[c->body.len] = '\0';
            if (c->body_need == 0)
                dispatch(c);
            else if (c->body.len + 1 == c->body.cap && !body_grow(c, 1))
                reject_budget(c);
        }
        break;
    }
    case CS_ACTIVE:
    case CS_FLUSH:
        /* The next (pipelined) request: kept for later. */
        if (c->to_spill) {
            c->spill.len += n;
            c->spill.data[c->spill.len] = '\0';
        } else {
            c->in_len += n;
        }
        break;
    default: /* CS_LINGER: discarded */
        break;
    }
}

static void on_peer_eof(struct conn *c)
{
    if (c->state == CS_FLUSH) {
        /* The request is answered; finish writing it (a half-closed client still reads). */
        c->read_eof = true;
        c->must_close = true;
        set_read(c, RM_OFF);
        return;
    }
    /* Everything else, including a half-close while the handler works: the client is gone. */
    close_conn(c);
}

static void read_some(struct conn *c)
{
    char *dst;
    size_t room;
    if (!read_target(c, &dst, &room)) {
        pause_reading(c);
        return;
    }
    ssize_t n = recv(c->fd, dst, room, 0);
    if (n > 0)
        on_bytes(c, (size_t)n);
    else if (n == 0)
        on_peer_eof(c);
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        close_conn(c);
}

/* ---- event callbacks ---- */

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->depth++;
    if (c->read_mode == RM_CLOSED)
        on_peer_eof(c); /* only EV_CLOSED is registered */
    else
        read_some(c);
    leave(c);
}

static void check_drain(struct conn *c)
{
    struct lp_edge_req *r = &c->req;
    if (r->active && r->drain_cb && r->above_lw && evbuffer_get_length(c->out) <= r->low_wm) {
        r->above_lw = false;
        r->drain_cb(r, r->drain_arg);
    }
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->depth++;
    if (flush_out(c)) {
        if (evbuffer_get_length(c->out) == 0) {
            event_del(&c->wev);
            c->write_on = false;
            if (c->state == CS_ACTIVE)
                c->deadline = 0;
        }
        check_drain(c); /* may write more or end the request */
        if (c->fd >= 0 && c->state == CS_FLUSH && evbuffer_get_length(c->out) == 0)
            after_flush(c);
    }
    leave(c);
}

static void on_timeout(struct conn *c)
{
    if (c->state == CS_BODY)
        body_timeout(c);
    else
        close_conn(c); /* header (slowloris), idle, write or linger timeout */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->depth++;
    c->timer_at = 0;
    if (c->deadline != 0 && c->fd >= 0) {
        int64_t now = lp_now_ms();
        if (now < c->deadline) {
            arm_timer(c, now, c->deadline - now); /* the deadline moved on: sleep again */
        } else {
            c->deadline = 0;
            on_timeout(c);
        }
    }
    leave(c);
}

static void on_defer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->depth++;
    if (c->notify_close) {
        c->notify_close = false;
        struct lp_edge_req *r = &c->req;
        if (r->active && !r->close_notified) {
            r->close_notified = true;
            if (r->close_cb)
                r->close_cb(r, r->close_arg);
        }
    }
    if (c->defer_next) {
        c->defer_next = false;
        if (c->fd >= 0 && c->state == CS_HEAD)
            process_input(c);
    }
    leave(c);
}

/* The response is fully written and the request ended: keep the connection or close it. */
static void after_flush(struct conn *c)
{
    if (c->fd < 0)
        return;
    if (c->must_close || c->read_eof || c->edge->draining) {
        finish_close(c);
        return;
    }
    charge(c, 0); /* the body is no longer referenced; storage kept below is not charged */
    c->state = CS_HEAD;
    compact_in(c);
    if (c->spill.len > 0) {
        /* The head is no longer referenced: bring the spilled pipelined bytes back in line. */
        size_t need = c->in_len + c->spill.len;
        if (c->in_cap < need) {
            c->in = lp_xrealloc(c->in, need);
            c->in_cap = need;
        }
        memcpy(c->in + c->in_len, c->spill.data, c->spill.len);
        c->in_len = need;
        lp_buf_reset(&c->spill);
    }
    c->head_off = c->head_len = c->scan = 0;
    c->lim = c->edge->lim;
    set_read(c, RM_ON);
    if (c->in_len > 0) {
        /* A pipelined request is buffered: parse it from the loop, not from this call stack. */
        c->head_started = true;
        set_deadline(c, c->lim.header_timeout_ms);
        c->defer_next = true;
        event_active(&c->defer, EV_TIMEOUT, 1);
        return;
    }
    c->head_started = false;
    set_deadline(c, c->lim.idle_timeout_ms);
    /* An idle connection keeps only small buffers. */
    if (c->in_cap > IN_INITIAL) {
        c->in = lp_xrealloc(c->in, IN_INITIAL);
        c->in_cap = IN_INITIAL;
    }
    if (c->body.cap > IDLE_KEEP_BODY)
        lp_buf_free(&c->body);
    if (c->hbuf.cap > IN_INITIAL)
        lp_buf_free(&c->hbuf);
}

/* ---- accept ---- */

static void new_conn(struct lp_edge *e, int fd, const struct sockaddr_storage *ss,
                     const struct lp_conncap_addr *addr)
{
    struct conn *c = lp_xcalloc(1, sizeof *c);
    c->edge = e;
    c->fd = fd;
    c->peer = *ss;
    c->addr = *addr;
    c->counted = e->caps != NULL;
    c->lim = e->lim;
    c->req.conn = c;
    c->out = evbuffer_new();
    if (!c->out)
        abort();
    lp_buf_init(&c->body, c->lim.max_body_bytes);
    lp_buf_init(&c->hbuf, HEAD_MAX);
    lp_buf_init(&c->spill, SPILL_MAX);
    event_assign(&c->wev, e->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    event_assign(&c->timer, e->base, -1, 0, on_timer, c);
    event_assign(&c->defer, e->base, -1, 0, on_defer, c);
    c->next = e->conns;
    if (e->conns)
        e->conns->prev = c;
    e->conns = c;
    e->n_conns++;
    e->n_open++;
    c->state = CS_HEAD;
    c->head_started = true; /* a new connection is on the header clock from accept */
    set_deadline(c, c->lim.header_timeout_ms);
    set_read(c, RM_ON);
}

static void on_pause_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_edge *e = arg;
    e->full_paused = false;
    if (!e->draining && !e->listening) {
        event_add(&e->lev, NULL);
        e->listening = true;
    }
}

/* The total connection cap is reached: stop accepting (new connections wait in the backlog)
 * until one of our connections closes, or FULL_PAUSE_MS at most (others may close first). */
static void pause_full(struct lp_edge *e)
{
    event_del(&e->lev);
    e->listening = false;
    e->full_paused = true;
    struct timeval tv = {0, FULL_PAUSE_MS * 1000};
    event_add(&e->pause_timer, &tv);
    int64_t now = lp_now_ms();
    if (e->full_logged_at == 0 || now - e->full_logged_at >= LIMIT_LOG_MS) {
        e->full_logged_at = now;
        struct lp_conncap_stats st;
        lp_conncap_stats(e->caps, &st);
        lp_log_warn(NULL,
                    "edge: connection cap reached (%zu open); accepting paused until one "
                    "closes",
                    st.open);
    }
}

static void resume_accept(struct lp_edge *e)
{
    if (!e->full_paused || e->draining || e->destroyed)
        return;
    e->full_paused = false;
    event_del(&e->pause_timer);
    if (!e->listening) {
        event_add(&e->lev, NULL);
        e->listening = true;
    }
}

/* A connection from an address at its per-address cap was closed: log it, at most once per
 * LIMIT_LOG_MS with a count (a flood must not flood the log). */
static void note_addr_refused(struct lp_edge *e, const struct sockaddr_storage *ss)
{
    e->addr_refused++;
    int64_t now = lp_now_ms();
    if (e->addr_logged_at != 0 && now - e->addr_logged_at < LIMIT_LOG_MS)
        return;
    e->addr_logged_at = now;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof ip);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof ip);
    lp_log_warn(NULL,
                "edge: closed %llu connection(s) from peers at their per-address cap "
                "(latest from %s)",
                (unsigned long long)e->addr_refused, ip);
    e->addr_refused = 0;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct lp_edge *e = arg;
    for (int i = 0; i < ACCEPT_BATCH && e->listening; i++) {
        /* A slot of the total cap first, so a full process leaves connections in the backlog. */
        if (e->caps && !lp_conncap_reserve(e->caps)) {
            pause_full(e);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            struct lp_conncap_addr addr;
            lp_conncap_addr_from((struct sockaddr *)&ss, &addr);
            if (e->caps && !lp_conncap_admit(e->caps, &addr)) {
                lp_conncap_unreserve(e->caps);
                close(fd); /* nothing read: the peer sees the connection closed at once */
                note_addr_refused(e, &ss);
                continue;
            }
            new_conn(e, fd, &ss, &addr);
            continue;
        }
        if (e->caps)
            lp_conncap_unreserve(e->caps);
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Level-triggered: without a pause the loop would spin on the full backlog. */
            lp_log_warn(NULL, "edge: accept: %s; pausing %d ms", strerror(errno), ACCEPT_PAUSE_MS);
            event_del(&e->lev);
            e->listening = false;
            struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
            event_add(&e->pause_timer, &tv);
        }
        return;
    }
}

/* ---- listening socket ---- */

/* Accept queue per listener. The kernel caps it at net.core.somaxconn (4096 by default since
 * Linux 5.4); 1024 overflowed under fast connection ramps (thousands of new streams within a
 * second), which clients see as multi-second SYN retransmits. */
#define LISTEN_BACKLOG 65535

static int open_listener(const struct sockaddr *sa, socklen_t len, bool reuseport, bool dual)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1, zero = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) ||
        bind(fd, sa, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int listen_any(int port, bool reuseport)
{
    struct sockaddr_in6 a6 = {
        .sin6_family = AF_INET6, .sin6_addr = in6addr_any, .sin6_port = htons((uint16_t)port)};
    int fd = open_listener((struct sockaddr *)&a6, sizeof a6, reuseport, true);
    if (fd >= 0)
        return fd;
    struct sockaddr_in a4 = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_ANY),
                             .sin_port = htons((uint16_t)port)};
    return open_listener((struct sockaddr *)&a4, sizeof a4, reuseport, false);
}

int lp_edge_listen_socket(const char *host, int port, bool reuseport)
{
    if (port < 0 || port > 65535) {
        errno = EINVAL;
        return -1;
    }
    if (!host || !*host || strcmp(host, "*") == 0)
        return listen_any(port, reuseport);
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, portstr, &hints, &res) != 0) {
        errno = EADDRNOTAVAIL;
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = open_listener(ai->ai_addr, ai->ai_addrlen, reuseport, false);
    int err = errno;
    freeaddrinfo(res);
    errno = err;
    return fd;
}

int lp_edge_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* ---- edge ---- */

static void normalize_limits(struct lp_edge_limits *dst, const struct lp_edge_limits *src)
{
    *dst = src ? *src : (struct lp_edge_limits){0};
    if (dst->max_header_bytes == 0)
        dst->max_header_bytes = DEFAULT_MAX_HEADER;
    if (dst->max_body_bytes == 0)
        dst->max_body_bytes = DEFAULT_MAX_BODY;
    if (dst->body_rate_window_ms <= 0)
        dst->body_rate_window_ms = RATE_WINDOW_MS;
}

struct lp_edge *lp_edge_create(struct event_base *base, int listen_fd,
                               const struct lp_edge_limits *lim, lp_edge_request_cb on_request,
                               lp_edge_reject_cb on_reject, void *arg)
{
    struct lp_edge *e = lp_xcalloc(1, sizeof *e);
    e->base = base;
    e->listen_fd = listen_fd;
    e->on_request = on_request;
    e->on_reject = on_reject;
    e->arg = arg;
    normalize_limits(&e->lim, lim);
    e->early_close = (event_base_get_features(base) & EV_FEATURE_EARLY_CLOSE) != 0;
    event_assign(&e->lev, base, listen_fd, EV_READ | EV_PERSIST, on_accept, e);
    evtimer_assign(&e->pause_timer, base, on_pause_timer, e);
    event_add(&e->lev, NULL);
    e->listening = true;
    return e;
}

void lp_edge_set_limits(struct lp_edge *e, const struct lp_edge_limits *lim)
{
    normalize_limits(&e->lim, lim);
}

void lp_edge_set_head_cb(struct lp_edge *e, lp_edge_head_cb on_head)
{
    e->on_head = on_head;
}

void lp_edge_set_shared(struct lp_edge *e, struct lp_conncap *caps, struct lp_budget *bodies)
{
    e->caps = caps;
    e->bodies = bodies;
}

void lp_edge_drain(struct lp_edge *e)
{
    if (e->draining)
        return;
    e->draining = true;
    if (e->listening)
        event_del(&e->lev);
    e->listening = false;
    event_del(&e->pause_timer);
    struct conn *next;
    for (struct conn *c = e->conns; c; c = next) {
        next = c->next;
        /* Idle (no request byte buffered) connections go now; the others finish first. */
        if (c->fd >= 0 && c->state == CS_HEAD && c->in_off == c->in_len) {
            close_conn(c);
            maybe_free(c);
        }
    }
}

size_t lp_edge_active_requests(const struct lp_edge *e)
{
    return e->n_active;
}

size_t lp_edge_open_connections(const struct lp_edge *e)
{
    return e->n_open;
}

void lp_edge_destroy(struct lp_edge *e)
{
    if (!e)
        return;
    lp_edge_drain(e);
    struct conn *next;
    for (struct conn *c = e->conns; c; c = next) {
        next = c->next;
        close_conn(c);
        maybe_free(c);
    }
    /* Set only now, so that the frees above cannot free e under this loop. */
    e->destroyed = true;
    if (e->n_conns == 0)
        free_edge(e);
}

/* ---- request accessors ---- */

const char *lp_edge_req_method(const struct lp_edge_req *r)
{
    return r->conn->h.method ? r->conn->h.method : "";
}

const char *lp_edge_req_path(const struct lp_edge_req *r)
{
    return r->conn->h.path;
}

const char *lp_edge_req_query(const struct lp_edge_req *r)
{
    return r->conn->h.query;
}

const char *lp_edge_req_header(const struct lp_edge_req *r, const char *name)
{
    return lp_http1_header_get(&r->conn->h, name);
}

size_t lp_edge_req_header_count(const struct lp_edge_req *r)
{
    return r->conn->h.n_headers;
}

void lp_edge_req_header_at(const struct lp_edge_req *r, size_t i, const char **name,
                           const char **value)
{
    const struct lp_http1_request *h = &r->conn->h;
    *name = i < h->n_headers ? h->headers[i].name : NULL;
    *value = i < h->n_headers ? h->headers[i].value : NULL;
}

const char *lp_edge_req_body(const struct lp_edge_req *r, size_t *len)
{
    const struct lp_buf *b = &r->conn->body;
    if (len)
        *len = b->data ? b->len : 0;
    return b->data ? b->data : "";
}

const char *lp_edge_req_peer_ip(const struct lp_edge_req *r)
{
    struct conn *c = r->conn;
    if (c->peer_ip[0])
        return c->peer_ip;
    /* Computed on first use: most requests never ask. */
    if (c->peer.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&c->peer)->sin_addr, c->peer_ip,
                  sizeof c->peer_ip);
    } else if (c->peer.ss_family == AF_INET6) {
        const struct in6_addr *a = &((struct sockaddr_in6 *)&c->peer)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], c->peer_ip, sizeof c->peer_ip);
        else
            inet_ntop(AF_INET6, a, c->peer_ip, sizeof c->peer_ip);
    }
    return c->peer_ip;
}

int lp_edge_req_http_minor(const struct lp_edge_req *r)
{
    return r->conn->h.minor;
}

bool lp_edge_req_client_gone(const struct lp_edge_req *r)
{
    return r->gone;
}

void lp_edge_set_close_cb(struct lp_edge_req *r, lp_edge_close_cb cb, void *arg)
{
    r->close_cb = cb;
    r->close_arg = arg;
}

/* ---- responses ---- */

static int sane_status(int status)
{
    return status >= 100 && status <= 999 ? status : 500;
}

void lp_edge_respond(struct lp_edge_req *r, int status, const struct lp_edge_header *hdrs,
                     size_t n_hdrs, const char *body, size_t len)
{
    struct conn *c = r->conn;
    if (!r->active)
        return;
    if (r->started) {
        lp_edge_abort(r); /* misuse: a head was already sent */
        return;
    }
    status = sane_status(status);
    /* The request ends with this answer: its body storage stops counting before the answer is
     * sent, so a client that reads it and at once sends the next body finds the budget free. */
    charge(c, 0);
    if (c->fd >= 0) {
        if (c->edge->draining)
            c->must_close = true;
        bool bodiless = status_has_no_body(status);
        build_head(c, status, hdrs, n_hdrs, bodiless ? FR_NONE : FR_LENGTH, len);
        struct iovec iov[2] = {{c->hbuf.data, c->hbuf.len}, {(void *)body, len}};
        bool send_body = !bodiless && !r->head_method && len > 0;
        out_write(c, iov, send_body ? 2 : 1);
    }
    end_request(c);
}

void lp_edge_start(struct lp_edge_req *r, int status, const struct lp_edge_header *hdrs,
                   size_t n_hdrs)
{
    struct conn *c = r->conn;
    if (!r->active || r->started)
        return;
    r->started = true;
    if (c->fd < 0)
        return;
    status = sane_status(status);
    if (c->edge->draining)
        c->must_close = true;
    enum framing fr = FR_CHUNKED;
    if (c->h.minor == 0) {
        c->must_close = true; /* HTTP/1.0: the body ends when the connection closes */
        fr = FR_CLOSE;
    }
    if (status_has_no_body(status))
        fr = FR_NONE;
    r->chunked_out = fr == FR_CHUNKED;
    r->no_body = fr == FR_NONE || r->head_method;
    build_head(c, status, hdrs, n_hdrs, fr, 0);
    out_write1(c, c->hbuf.data, c->hbuf.len);
}

enum lp_status lp_edge_write(struct lp_edge_req *r, const void *data, size_t len)
{
    struct conn *c = r->conn;
    if (!r->active || !r->started || c->fd < 0)
        return LP_ERR;
    if (len == 0 || r->no_body)
        return LP_OK;
    if (!r->chunked_out) {
        out_write1(c, data, len);
    } else {
        char size[24];
        size_t n = fmt_uint(size, len, 16);
        size[n++] = '\r';
        size[n++] = '\n';
        struct iovec iov[3] = {{size, n}, {(void *)data, len}, {"\r\n", 2}};
        out_write(c, iov, 3);
    }
    return c->fd >= 0 ? LP_OK : LP_ERR;
}

size_t lp_edge_pending(const struct lp_edge_req *r)
{
    return r->conn->fd >= 0 ? evbuffer_get_length(r->conn->out) : 0;
}

void lp_edge_set_drain_cb(struct lp_edge_req *r, size_t low_watermark, lp_edge_drain_cb cb,
                          void *arg)
{
    r->drain_cb = cb;
    r->drain_arg = arg;
    r->low_wm = low_watermark;
    r->above_lw = cb && lp_edge_pending(r) > low_watermark;
}

void lp_edge_end(struct lp_edge_req *r)
{
    struct conn *c = r->conn;
    if (!r->active)
        return;
    if (!r->started) {
        lp_edge_abort(r);
        return;
    }
    charge(c, 0); /* as in lp_edge_respond: before the last bytes go out */
    if (c->fd >= 0 && r->chunked_out && !r->no_body)
        out_write1(c, "0\r\n\r\n", 5);
    lp_edge_uncork(r);
    end_request(c);
}

void lp_edge_cork(struct lp_edge_req *r)
{
    if (r->active && r->conn->fd >= 0)
        r->conn->corked = true;
}

void lp_edge_uncork(struct lp_edge_req *r)
{
    uncork_conn(r->conn);
}

static void uncork_conn(struct conn *c)
{
    if (!c->corked)
        return;
    c->corked = false;
    if (c->fd < 0 || evbuffer_get_length(c->out) == 0)
        return;
    if (c->write_on) {
        /* Already waiting for EPOLLOUT: the queued bytes go out with the rest. */
        if (c->req.drain_cb && evbuffer_get_length(c->out) > c->req.low_wm)
            c->req.above_lw = true;
        return;
    }
    /* One sendmsg for everything written while corked; the rest waits for EPOLLOUT. */
    if (!flush_out(c))
        return;
    size_t pending = evbuffer_get_length(c->out);
    if (pending == 0)
        return;
    event_add(&c->wev, NULL);
    c->write_on = true;
    if (c->state == CS_ACTIVE || c->state == CS_FLUSH)
        set_deadline(c, c->lim.write_timeout_ms);
    if (c->req.drain_cb && pending > c->req.low_wm)
        c->req.above_lw = true;
}

void lp_edge_abort(struct lp_edge_req *r)
{
    struct conn *c = r->conn;
    if (!r->active)
        return;
    r->active = false;
    c->edge->n_active--;
    close_conn(c);
    maybe_free(c);
}
