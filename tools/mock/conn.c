/* conn.c - one accepted TCP connection: HTTP/1.1 request parsing and response driving.
 *
 * A connection reads one request (head, then a Content-Length or chunked body), asks route.c
 * for a plan, and drives it: an optional delay (evtimer), the head, then either a fixed body or
 * SSE events produced one at a time while the output backlog is under MOCK_WRITE_WATERMARK and
 * resumed from the write callback (backpressure). Reading stays enabled while responding so a
 * client that goes away is seen at once (client_aborted), even during a delay or a stall.
 * Keep-alive: after a response is fully flushed the connection reads the next request.
 */
#include <errno.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mock.h"
#include "util/alloc.h"
#include "util/clock.h"

#define MAX_PIPELINED (1024u * 1024) /* input buffered while responding before we stop reading */

enum conn_state { ST_HEAD, ST_BODY, ST_CHUNK_SIZE, ST_CHUNK_DATA, ST_CHUNK_TRAILER, ST_RESPOND };

enum phase {
    PH_NONE,
    PH_DELAY,       /* timer before the head */
    PH_EVENTS,      /* producing SSE events */
    PH_EVENT_WAIT,  /* timer before the next event */
    PH_STALL,       /* sending nothing until the client leaves */
    PH_FLUSH_DONE,  /* everything queued; complete when the output drains */
    PH_FLUSH_CLOSE, /* cut: close abruptly when the output drains */
};

struct mock_conn {
    TAILQ_ENTRY(mock_conn) link;
    struct mock *m;
    struct bufferevent *bev;
    uint64_t id;
    bool counted; /* counted in log.connections (it carried an upstream request) */
    enum conn_state st;
    struct mock_req req;
    size_t chunk_left;
    /* the exchange in progress (st == ST_RESPOND) */
    bool admin;
    bool chunked_out;
    bool close_after;
    struct mock_plan plan;
    uint64_t log_uid;
    struct event *timer;
    enum phase ph;
    long next_event;
    bool delay_done;
    struct lp_buf scratch;
    z_stream *enc; /* a compressed stream (plan.zbits): each event is sync-flushed */
};

static void parse_input(struct mock_conn *c);
static void pump(struct mock_conn *c);

/* ---- request ----------------------------------------------------------------------------- */

const char *mock_req_header(const struct mock_req *r, const char *name)
{
    for (size_t i = 0; i < r->nhdrs; i++)
        if (strcmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    return NULL;
}

static void req_clear(struct mock_req *r)
{
    LP_FREE(&r->method);
    LP_FREE(&r->target);
    for (size_t i = 0; i < r->nhdrs; i++) {
        LP_FREE(&r->hdrs[i].name);
        LP_FREE(&r->hdrs[i].value);
    }
    r->nhdrs = 0;
    r->chunked = false;
    r->content_length = 0;
    lp_buf_free(&r->body);
}

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

static enum lp_status parse_request_line(struct mock_req *r, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return LP_ERR_PARSE;
    r->method = lp_xstrndup(line, (size_t)(sp1 - line));
    r->target = lp_xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    r->minor = sp2[8] == '0' ? 0 : 1;
    return LP_OK;
}

static enum lp_status parse_header_line(struct mock_req *r, char *line, char *end)
{
    char *colon = memchr(line, ':', (size_t)(end - line));
    if (!colon || colon == line || r->nhdrs >= MOCK_MAX_HEADERS)
        return LP_ERR_PARSE;
    for (char *p = line; p < colon; p++) {
        if (*p == ' ' || *p == '\t')
            return LP_ERR_PARSE;
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    }
    struct mock_hdr *h = &r->hdrs[r->nhdrs++];
    h->name = lp_xstrndup(line, (size_t)(colon - line));
    h->value = lp_xstrdup(trim(colon + 1, end));
    return LP_OK;
}

/* Parse the NUL-terminated head (request line and header lines). */
static enum lp_status parse_head(struct mock_req *r, char *head)
{
    char *nl = strchr(head, '\n');
    if (!nl)
        return LP_ERR_PARSE;
    *nl = '\0';
    trim(head, nl);
    if (parse_request_line(r, head) != LP_OK)
        return LP_ERR_PARSE;
    for (char *line = nl + 1; *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        char *next = *end ? end + 1 : end;
        if (end > line && end[-1] == '\r')
            end--;
        if (end > line && parse_header_line(r, line, end) != LP_OK)
            return LP_ERR_PARSE;
        line = next;
    }
    return LP_OK;
}

/* Body framing and keep-alive from the headers. */
static enum lp_status read_framing(struct mock_req *r)
{
    const char *te = mock_req_header(r, "transfer-encoding");
    const char *cl = mock_req_header(r, "content-length");
    const char *conn = mock_req_header(r, "connection");
    r->keepalive = r->minor >= 1 ? !(conn && strcasestr(conn, "close"))
                                 : (conn && strcasestr(conn, "keep-alive"));
    lp_buf_init(&r->body, MOCK_MAX_BODY);
    if (te) {
        r->chunked = strcasestr(te, "chunked") != NULL;
        return r->chunked ? LP_OK : LP_ERR_PARSE;
    }
    if (!cl)
        return LP_OK;
    char *endp;
    errno = 0;
    unsigned long long n = strtoull(cl, &endp, 10);
    if (*cl < '0' || *cl > '9' || *endp || errno)
        return LP_ERR_PARSE;
    if (n > MOCK_MAX_BODY)
        return LP_ERR_TOOBIG;
    r->content_length = (size_t)n;
    return LP_OK;
}

/* ---- output primitives ------------------------------------------------------------------- */

static struct evbuffer *out(struct mock_conn *c)
{
    return bufferevent_get_output(c->bev);
}

static const char *reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 529:
        return "Overloaded";
    default:
        return "Status";
    }
}

static void put_chunk(struct mock_conn *c, const char *p, size_t n);

/* Compress p[0..n) into the stream: a sync flush makes every event decodable on arrival;
 * `last` ends the compressed stream. */
static void write_compressed(struct mock_conn *c, const char *p, size_t n, bool last)
{
    unsigned char buf[16384];
    c->enc->next_in = (Bytef *)p;
    c->enc->avail_in = (uInt)n;
    int zr;
    do {
        c->enc->next_out = buf;
        c->enc->avail_out = sizeof buf;
        zr = deflate(c->enc, last ? Z_FINISH : Z_SYNC_FLUSH);
        put_chunk(c, (const char *)buf, sizeof buf - c->enc->avail_out);
    } while (c->enc->avail_out == 0 && zr != Z_STREAM_END);
}

static void enc_end(struct mock_conn *c)
{
    if (c->enc) {
        deflateEnd(c->enc);
        free(c->enc);
        c->enc = NULL;
    }
}

static void write_chunk(struct mock_conn *c, const char *p, size_t n)
{
    if (c->enc) {
        if (n)
            write_compressed(c, p, n, false);
        return;
    }
    put_chunk(c, p, n);
}

static void put_chunk(struct mock_conn *c, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (c->chunked_out)
        evbuffer_add_printf(out(c), "%zx\r\n", n);
    evbuffer_add(out(c), p, n);
    if (c->chunked_out)
        evbuffer_add(out(c), "\r\n", 2);
}

static void send_head(struct mock_conn *c)
{
    struct mock_plan *p = &c->plan;
    struct evbuffer *o = out(c);
    evbuffer_add_printf(o, "HTTP/1.1 %d %s\r\nx-mock-name: %s\r\n", p->status, reason(p->status),
                        c->m->opts.name);
    evbuffer_add(o, p->head_extra.data ? p->head_extra.data : "", p->head_extra.len);
    if (p->sse && c->chunked_out)
        evbuffer_add_printf(o, "transfer-encoding: chunked\r\n");
    else if (!p->sse && p->status != 204 && p->status != 304)
        evbuffer_add_printf(o, "content-length: %zu\r\n", p->body.len);
    if (c->close_after)
        evbuffer_add_printf(o, "connection: close\r\n");
    evbuffer_add(o, "\r\n", 2);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void conn_free(struct mock_conn *c)
{
    TAILQ_REMOVE(&c->m->conns, c, link);
    if (c->timer)
        event_free(c->timer);
    bufferevent_free(c->bev);
    enc_end(c);
    mock_plan_free(&c->plan);
    req_clear(&c->req);
    lp_buf_free(&c->scratch);
    free(c);
}

static struct mock_log_entry *entry(struct mock_conn *c)
{
    return c->admin ? NULL : mock_log_find(&c->m->log, c->log_uid);
}

/* The exchange ends: completed (fully flushed), aborted by the client, or cut by us. */
static void exchange_end(struct mock_conn *c, bool completed, bool aborted)
{
    struct mock_log_entry *e = entry(c);
    if (e) {
        e->completed = completed;
        e->client_aborted = aborted;
    }
    if (!c->admin) {
        c->m->active--;
        if (aborted)
            c->m->log.aborted++;
    }
    if (c->timer)
        evtimer_del(c->timer);
    enc_end(c);
    mock_plan_free(&c->plan);
    req_clear(&c->req);
    c->ph = PH_NONE;
    c->st = ST_HEAD;
}

static void finish_ok(struct mock_conn *c)
{
    bool close_after = c->close_after;
    exchange_end(c, true, false);
    if (close_after) {
        conn_free(c);
        return;
    }
    bufferevent_enable(c->bev, EV_READ);
    parse_input(c); /* a pipelined request may already be buffered */
}

static void finish_close(struct mock_conn *c)
{
    exchange_end(c, false, false);
    conn_free(c);
}

/* Act on `ph` once everything queued has reached the kernel. */
static void flush_then(struct mock_conn *c, enum phase ph)
{
    c->ph = ph;
    if (evbuffer_get_length(out(c)) > 0)
        return; /* on_write continues */
    if (ph == PH_FLUSH_DONE)
        finish_ok(c);
    else
        finish_close(c);
}

static void arm_timer(struct mock_conn *c, int ms, enum phase ph)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    c->ph = ph;
    evtimer_add(c->timer, &tv);
}

/* ---- SSE production ---------------------------------------------------------------------- */

static long event_count(const struct mock_conn *c)
{
    return c->plan.gen ? mock_gen_count(&c->plan) : (long)c->plan.step->nevents;
}

static int event_delay(const struct mock_conn *c, long i)
{
    return c->plan.gen ? mock_gen_delay(&c->plan, i) : c->plan.step->events[i].delay_ms;
}

/* Frame a scripted event: raw verbatim, else "event:" and one "data:" line per data line. */
static void frame_event(const struct mock_sse_event *e, struct lp_buf *b)
{
    if (e->raw) {
        lp_buf_appends(b, e->raw);
        return;
    }
    if (e->event)
        lp_buf_printf(b, "event: %s\n", e->event);
    const char *d = e->data;
    for (;;) {
        const char *nl = strchr(d, '\n');
        size_t n = nl ? (size_t)(nl - d) : strlen(d);
        lp_buf_appends(b, "data: ");
        lp_buf_append(b, d, n);
        lp_buf_appendc(b, '\n');
        if (!nl)
            break;
        d = nl + 1;
    }
    lp_buf_appendc(b, '\n');
}

static void emit_event(struct mock_conn *c, long i)
{
    lp_buf_reset(&c->scratch);
    if (c->plan.gen)
        mock_gen_event(&c->plan, c->m->opts.name, i, &c->scratch);
    else
        frame_event(&c->plan.step->events[i], &c->scratch);
    write_chunk(c, c->scratch.data, c->scratch.len);
}

/* Produce events until the backlog reaches the watermark, a delay, a cut, a stall or the end. */
static void pump(struct mock_conn *c)
{
    struct mock_plan *p = &c->plan;
    c->ph = PH_EVENTS;
    while (evbuffer_get_length(out(c)) < MOCK_WRITE_WATERMARK) {
        long i = c->next_event;
        if (p->cut_after >= 0 && i >= p->cut_after) {
            flush_then(c, PH_FLUSH_CLOSE);
            return;
        }
        if (p->stall_after >= 0 && i >= p->stall_after) {
            c->ph = PH_STALL;
            return;
        }
        if (i >= event_count(c)) {
            if (c->enc)
                write_compressed(c, "", 0, true);
            if (c->chunked_out)
                evbuffer_add(out(c), "0\r\n\r\n", 5);
            flush_then(c, PH_FLUSH_DONE);
            return;
        }
        int delay = event_delay(c, i);
        if (delay > 0 && !c->delay_done) {
            arm_timer(c, delay, PH_EVENT_WAIT);
            return;
        }
        c->delay_done = false;
        emit_event(c, i);
        c->next_event++;
    }
}

static void respond_now(struct mock_conn *c)
{
    if (c->plan.raw) {
        /* The whole response as scripted, framing included; the connection closes after it
         * (that is what ends a close-delimited body). */
        evbuffer_add(out(c), c->plan.body.data ? c->plan.body.data : "", c->plan.body.len);
        flush_then(c, PH_FLUSH_CLOSE);
        return;
    }
    if (c->plan.sse && c->plan.zbits) {
        c->enc = lp_xcalloc(1, sizeof *c->enc);
        if (deflateInit2(c->enc, 6, Z_DEFLATED, c->plan.zbits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(c->enc);
            c->enc = NULL;
        }
    }
    send_head(c);
    if (!c->plan.sse) {
        evbuffer_add(out(c), c->plan.body.data ? c->plan.body.data : "", c->plan.body.len);
        flush_then(c, PH_FLUSH_DONE);
        return;
    }
    pump(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct mock_conn *c = arg;
    if (c->ph == PH_DELAY) {
        respond_now(c);
    } else if (c->ph == PH_EVENT_WAIT) {
        c->delay_done = true;
        pump(c);
    }
}

/* ---- request dispatch -------------------------------------------------------------------- */

static void log_request(struct mock_conn *c)
{
    struct mock *m = c->m;
    struct mock_req *r = &c->req;
    if (!c->counted) {
        c->counted = true;
        m->log.connections++;
    }
    c->log_uid = mock_log_add(&m->log, r->method, r->target, r->hdrs, r->nhdrs, r->body.data,
                              r->body.len, c->id);
    struct mock_log_entry *e = mock_log_find(&m->log, c->log_uid);
    e->t_us = lp_now_us();
    e->t_ms = e->t_us / 1000;
    m->active++;
    if (!m->opts.quiet)
        fprintf(stderr, "llm-mock %s: #%llu conn=%llu %s %s (%zu bytes)\n", m->opts.name,
                (unsigned long long)e->seq, (unsigned long long)c->id, r->method, r->target,
                r->body.len);
}

static void request_done(struct mock_conn *c)
{
    c->st = ST_RESPOND;
    c->next_event = 0;
    c->delay_done = false;
    mock_plan_init(&c->plan);
    c->admin = false;
    /* route first so a step's match sees the request, log before anything can fail */
    bool admin = false;
    mock_route(c->m, &c->req, &c->plan, &admin);
    c->admin = admin;
    if (!admin)
        log_request(c);
    struct mock_log_entry *e = entry(c);
    if (e)
        e->status = c->plan.close ? 0 : c->plan.status;
    c->chunked_out = c->req.minor >= 1;
    c->close_after = !c->req.keepalive || (c->plan.sse && !c->chunked_out) || c->plan.conn_close;
    if (c->plan.close) {
        finish_close(c);
        return;
    }
    if (c->plan.delay_ms > 0) {
        arm_timer(c, c->plan.delay_ms, PH_DELAY);
        return;
    }
    respond_now(c);
}

/* A protocol error while reading: answer with a small error and close. */
static void reject(struct mock_conn *c, int status)
{
    evbuffer_add_printf(out(c),
                        "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n"
                        "connection: close\r\n\r\n",
                        status, reason(status));
    c->st = ST_RESPOND;
    c->admin = true;
    c->close_after = true;
    bufferevent_disable(c->bev, EV_READ);
    c->ph = PH_FLUSH_DONE;
}

static enum lp_status read_head(struct mock_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* tolerate stray CRLFs between keep-alive requests */
    unsigned char *p;
    while ((p = evbuffer_pullup(in, 1)) != NULL && (*p == '\r' || *p == '\n'))
        evbuffer_drain(in, 1);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0)
        return evbuffer_get_length(in) > MOCK_MAX_HEAD ? LP_ERR_TOOBIG : LP_AGAIN;
    if ((size_t)end.pos > MOCK_MAX_HEAD)
        return LP_ERR_TOOBIG;
    size_t n = (size_t)end.pos + 4;
    char *head = lp_xmalloc(n + 1);
    evbuffer_remove(in, head, n);
    head[n] = '\0';
    enum lp_status rc = parse_head(&c->req, head);
    free(head);
    if (rc != LP_OK)
        return rc;
    rc = read_framing(&c->req);
    if (rc == LP_ERR_TOOBIG)
        c->st = ST_BODY; /* so the reply is 413, not 431 */
    if (rc != LP_OK)
        return rc;
    const char *expect = mock_req_header(&c->req, "expect");
    bool has_body = c->req.chunked || c->req.content_length > 0;
    if (has_body && expect && strcasecmp(expect, "100-continue") == 0 &&
        evbuffer_get_length(in) < c->req.content_length + (c->req.chunked ? 1 : 0))
        evbuffer_add_printf(out(c), "HTTP/1.1 100 Continue\r\n\r\n");
    c->st = c->req.chunked ? ST_CHUNK_SIZE : ST_BODY;
    return LP_OK;
}

static enum lp_status read_body(struct mock_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t want = c->req.content_length;
    if (evbuffer_get_length(in) < want)
        return LP_AGAIN;
    if (lp_buf_reserve(&c->req.body, want) != LP_OK)
        return LP_ERR_TOOBIG;
    evbuffer_remove(in, c->req.body.data, want);
    c->req.body.len = want;
    c->req.body.data[want] = '\0';
    return LP_OK;
}

/* One step of the chunked request body; LP_OK when the body is complete. */
static enum lp_status read_chunked(struct mock_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        if (c->st == ST_CHUNK_DATA) {
            if (evbuffer_get_length(in) < c->chunk_left + 2)
                return LP_AGAIN;
            if (lp_buf_reserve(&c->req.body, c->chunk_left) != LP_OK)
                return LP_ERR_TOOBIG;
            evbuffer_remove(in, c->req.body.data + c->req.body.len, c->chunk_left);
            c->req.body.len += c->chunk_left;
            c->req.body.data[c->req.body.len] = '\0';
            evbuffer_drain(in, 2);
            c->st = ST_CHUNK_SIZE;
            continue;
        }
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (!line)
            return evbuffer_get_length(in) > 4096 ? LP_ERR_PARSE : LP_AGAIN;
        if (c->st == ST_CHUNK_TRAILER) {
            free(line);
            if (n == 0)
                return LP_OK;
            continue;
        }
        char *endp;
        unsigned long long sz = strtoull(line, &endp, 16);
        bool bad = endp == line || (*endp && *endp != ';' && *endp != ' ');
        free(line);
        if (bad)
            return LP_ERR_PARSE;
        if (sz > MOCK_MAX_BODY)
            return LP_ERR_TOOBIG;
        c->chunk_left = (size_t)sz;
        c->st = sz == 0 ? ST_CHUNK_TRAILER : ST_CHUNK_DATA;
    }
}

/* Advance the request reader as far as the input allows; dispatch a complete request. */
static void parse_input(struct mock_conn *c)
{
    enum lp_status rc = LP_OK;
    while (c->st != ST_RESPOND && rc == LP_OK) {
        switch (c->st) {
        case ST_HEAD:
            rc = read_head(c);
            break;
        case ST_BODY:
            rc = read_body(c);
            if (rc == LP_OK) {
                request_done(c);
                return;
            }
            break;
        default:
            rc = read_chunked(c);
            if (rc == LP_OK) {
                request_done(c);
                return;
            }
            break;
        }
    }
    if (rc == LP_ERR_TOOBIG)
        reject(c, c->st == ST_HEAD ? 431 : 413);
    else if (rc != LP_OK && rc != LP_AGAIN)
        reject(c, 400);
}

/* ---- bufferevent callbacks --------------------------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct mock_conn *c = arg;
    if (c->st != ST_RESPOND) {
        parse_input(c);
        return;
    }
    /* responding: leave pipelined bytes for later, but do not buffer without bound */
    if (evbuffer_get_length(bufferevent_get_input(bev)) > MAX_PIPELINED)
        bufferevent_disable(bev, EV_READ);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct mock_conn *c = arg;
    switch (c->ph) {
    case PH_EVENTS:
        pump(c);
        break;
    case PH_FLUSH_DONE:
    case PH_FLUSH_CLOSE:
        flush_then(c, c->ph);
        break;
    default:
        break;
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct mock_conn *c = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (c->st == ST_RESPOND)
        exchange_end(c, false, !c->admin);
    conn_free(c);
}

void mock_conn_accept(struct mock *m, int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct mock_conn *c = lp_xcalloc(1, sizeof *c);
    c->m = m;
    c->id = ++m->next_conn_id;
    c->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        return;
    }
    bufferevent_set_max_single_read(c->bev, 256 * 1024);
    c->timer = evtimer_new(m->base, on_timer, c);
    lp_buf_init(&c->scratch, 0);
    mock_plan_init(&c->plan);
    TAILQ_INSERT_TAIL(&m->conns, c, link);
    m->accepted++;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void mock_conn_free_all(struct mock *m)
{
    struct mock_conn *c;
    while ((c = TAILQ_FIRST(&m->conns)) != NULL) {
        if (c->st == ST_RESPOND && !c->admin)
            m->active--;
        conn_free(c);
    }
}
