/* curlclient.c - libcurl multi on a libevent loop: the upstream engine for backends with
 * `http2: true` (see curlclient.h; upstream.h has the contract) and
 * ../shared/notes/libcurl-on-libevent.md for why the glue looks like this. */
#include "curlclient.h"

#include "upstream_engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event_struct.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/buf.h"

#define MAX_RESP_HEADER_BYTES (64 * 1024)
#define MAX_RESP_HEADERS 128
#define POOL_MAX 256

/* One registration per socket curl uses, indexed by fd. */
struct sockinfo {
    struct event ev;
    struct lp_curlclient *u;
    int fd;
    short mask;      /* EV_READ|EV_WRITE currently registered */
    bool registered; /* ev is added */
    bool parked;     /* curl said REMOVE but we kept the read registration */
};

struct hdr_ref {
    uint32_t name;
    uint32_t value;
};

struct cxfer {
    struct lp_upstream_xfer base; /* engine tag: first */
    struct lp_curlclient *u;
    CURL *easy;
    struct curl_slist *hdrs;
    struct lp_upstream_cbs cbs;
    void *arg;
    int status;
    bool head_done;
    bool paused;
    bool cancelled;       /* user cancelled: no more callbacks */
    bool aborted;         /* our callback asked to abort */
    bool reaping;         /* queued for deferred removal */
    bool local_fail;      /* a socket could not be created here (no fds/memory): not the backend */
    bool pending_add;     /* started from inside a callback: joins the multi on the next pass */
    char *owned_body;     /* freed with the transfer (lp_upstream_req.body_owned) */
    struct lp_buf hdrbuf; /* "name\0value\0" pairs of the final response */
    struct hdr_ref hv[MAX_RESP_HEADERS];
    size_t n_hv;
    char errbuf[CURL_ERROR_SIZE];
    struct cxfer *prev, *next; /* live list */
    struct cxfer *reap_next;   /* deferred removal list */
};

struct lp_curlclient {
    struct event_base *base;
    CURLM *multi;
    struct event timer_ev;
    struct event reap_ev;
    struct sockinfo **socks;
    size_t n_socks;
    CURL *pool[POOL_MAX];
    size_t n_pool;
    size_t active;
    int depth; /* > 0 while inside curl_multi_socket_action */
    long max_age_conn_s;
    char *default_cainfo; /* libcurl's built-in CA bundle path, restored on pooled handles */
    struct cxfer *live;
    struct cxfer *reap;
    struct cxfer *pending; /* started inside a callback, added on the next pass */
};

static void check_multi_info(struct lp_curlclient *u);

/* ---- per-fd table ---------------------------------------------------------------------- */

static struct sockinfo *sock_get(struct lp_curlclient *u, int fd)
{
    if ((size_t)fd >= u->n_socks) {
        size_t n = u->n_socks ? u->n_socks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        u->socks = lp_xrealloc(u->socks, n * sizeof *u->socks);
        memset(u->socks + u->n_socks, 0, (n - u->n_socks) * sizeof *u->socks);
        u->n_socks = n;
    }
    if (!u->socks[fd]) {
        u->socks[fd] = lp_xcalloc(1, sizeof(struct sockinfo));
        u->socks[fd]->u = u;
        u->socks[fd]->fd = fd;
    }
    return u->socks[fd];
}

static void sock_unregister(struct sockinfo *si)
{
    if (si->registered)
        event_del(&si->ev);
    si->registered = false;
    si->parked = false;
    si->mask = 0;
}

static void run_socket_action(struct lp_curlclient *u, curl_socket_t fd, int flags)
{
    int running = 0;
    u->depth++;
    curl_multi_socket_action(u->multi, fd, flags, &running);
    u->depth--;
    check_multi_info(u);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    struct sockinfo *si = arg;
    if (si->parked) {
        /* An idle pooled connection became readable: the peer closed it or sent junk. Drop the
         * registration; curl's reuse check discards the connection when it next looks. */
        sock_unregister(si);
        return;
    }
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    run_socket_action(si->u, fd, flags);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *uctx, void *sockp)
{
    struct lp_curlclient *u = uctx;
    struct sockinfo *si = sock_get(u, fd);
    if (what == CURL_POLL_REMOVE) {
        /* Park read-only registrations: the next transfer on this pooled connection re-arms for
         * free. Never park write interest (an idle writable socket fires constantly). */
        if (si->registered && si->mask == EV_READ)
            si->parked = true;
        else
            sock_unregister(si);
        return 0;
    }
    short want =
        (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    si->parked = false;
    if (si->registered && si->mask == want)
        return 0;
    if (si->registered)
        event_del(&si->ev);
    event_assign(&si->ev, u->base, fd, want | EV_PERSIST, on_sock_event, si);
    event_add(&si->ev, NULL);
    si->registered = true;
    si->mask = want;
    return 0;
}

static int on_curl_closesocket(void *clientp, curl_socket_t fd)
{
    struct lp_curlclient *u = clientp;
    if ((size_t)fd < u->n_socks && u->socks[fd])
        sock_unregister(u->socks[fd]);
    return close(fd);
}

/* ---- timer ----------------------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    run_socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *arg)
{
    struct lp_curlclient *u = arg;
    evtimer_del(&u->timer_ev);
    if (timeout_ms == 0) {
        /* Run later in this loop pass: no extra epoll_wait, no re-entrancy into curl. */
        event_active(&u->timer_ev, EV_TIMEOUT, 0);
    } else if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(&u->timer_ev, &tv);
    }
    return 0;
}

/* ---- transfer callbacks ---------------------------------------------------------------- */

static void deliver_head(struct cxfer *x)
{
    x->head_done = true;
    if (x->cbs.on_head)
        x->cbs.on_head(x->arg, &x->base, x->status);
}

static void store_header(struct cxfer *x, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    const char *colon = memchr(line, ':', len);
    if (!colon || x->n_hv >= MAX_RESP_HEADERS)
        return;
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    size_t at = x->hdrbuf.len;
    if (lp_buf_append(&x->hdrbuf, line, nlen) != LP_OK ||
        lp_buf_appendc(&x->hdrbuf, '\0') != LP_OK || lp_buf_append(&x->hdrbuf, v, vlen) != LP_OK ||
        lp_buf_appendc(&x->hdrbuf, '\0') != LP_OK) {
        x->hdrbuf.len = at; /* over the ceiling: drop this header */
        return;
    }
    x->hv[x->n_hv].name = (uint32_t)at;
    x->hv[x->n_hv].value = (uint32_t)(at + nlen + 1);
    x->n_hv++;
}

static size_t on_curl_header(char *p, size_t size, size_t n, void *ud)
{
    struct cxfer *x = ud;
    size_t len = size * n;
    if (x->cancelled || x->aborted)
        return 0;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new status line (after a 1xx, or the first): start the header set afresh. */
        lp_buf_reset(&x->hdrbuf);
        x->n_hv = 0;
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        x->status = (int)code;
        return len;
    }
    if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        x->status = (int)code;
        if (x->status >= 200 && !x->head_done)
            deliver_head(x);
        return (x->cancelled || x->aborted) ? 0 : len;
    }
    store_header(x, p, len);
    return len;
}

static size_t on_curl_write(char *p, size_t size, size_t n, void *ud)
{
    struct cxfer *x = ud;
    size_t len = size * n;
    if (x->cancelled || x->aborted)
        return 0;
    if (!x->head_done) {
        deliver_head(x);
        if (x->cancelled || x->aborted)
            return 0;
    }
    enum lp_status rc = x->cbs.on_data ? x->cbs.on_data(x->arg, &x->base, p, len) : LP_OK;
    if (x->cancelled)
        return 0;
    if (rc == LP_AGAIN) {
        x->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (rc != LP_OK) {
        x->aborted = true;
        return 0;
    }
    return len;
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static enum lp_xfer_result map_result(struct cxfer *x, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return x->head_done ? LP_XFER_OK : LP_XFER_PROTOCOL;
    case CURLE_COULDNT_CONNECT:
        return x->local_fail ? LP_XFER_LOCAL : LP_XFER_CONNECT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return LP_XFER_DNS;
    case CURLE_OPERATION_TIMEDOUT: {
        /* A reused connection has no connect time; the request being sent (pretransfer) is the
         * sign that the connect phase, fresh or pooled, was over. */
        curl_off_t pre_us = 0;
        curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &pre_us);
        return pre_us == 0 && !lp_curlclient_reused(&x->base) ? LP_XFER_TIMEOUT_CONNECT
                                                              : LP_XFER_TIMEOUT_TOTAL;
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        return LP_XFER_TLS;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return LP_XFER_RESET;
    case CURLE_WRITE_ERROR:
        return x->aborted ? LP_XFER_ABORTED : LP_XFER_OTHER;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_CONTENT_ENCODING:
        return LP_XFER_PROTOCOL;
    default:
        return LP_XFER_OTHER;
    }
}

/* Create curl's sockets ourselves to tell a local shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM)
 * from a backend that refuses connections: the first must never cool a backend down. */
static curl_socket_t on_curl_opensocket(void *clientp, curlsocktype purpose,
                                        struct curl_sockaddr *a)
{
    struct cxfer *x = clientp;
    (void)purpose;
    curl_socket_t s = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (s == CURL_SOCKET_BAD && x &&
        (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM))
        x->local_fail = true;
    return s;
}

static CURL *easy_get(struct lp_curlclient *u)
{
    if (u->n_pool)
        return u->pool[--u->n_pool];
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    /* Options that never change for this handle. */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_curl_closesocket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, u);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_curl_opensocket);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_curl_header);
    /* Explicit empty proxy settings: skips environment lookups per transfer and stops
     * http_proxy/all_proxy in the service environment from rerouting upstream traffic. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 60L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 30L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, u->max_age_conn_s);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* The path comes from the dialect table: send it as built, never resolve dot-segments. */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    return e;
}

static void easy_put(struct lp_curlclient *u, CURL *e)
{
    if (u->n_pool < POOL_MAX) {
        /* Drop pointers into the finished transfer so a stale one can never be used. */
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, NULL);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        u->pool[u->n_pool++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void xfer_unlink(struct cxfer *x)
{
    struct lp_curlclient *u = x->u;
    if (x->prev)
        x->prev->next = x->next;
    else
        u->live = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Remove from the multi handle and free. Must not run inside a curl callback. */
static void unlink_pending(struct cxfer *x)
{
    struct cxfer **pp = &x->u->pending;
    while (*pp && *pp != x)
        pp = &(*pp)->reap_next;
    if (*pp)
        *pp = x->reap_next;
    x->pending_add = false;
}

static void xfer_destroy(struct cxfer *x)
{
    struct lp_curlclient *u = x->u;
    if (x->pending_add)
        unlink_pending(x);
    else
        curl_multi_remove_handle(u->multi, x->easy);
    free(x->owned_body);
    easy_put(u, x->easy);
    curl_slist_free_all(x->hdrs);
    lp_buf_free(&x->hdrbuf);
    xfer_unlink(x);
    u->active--;
    free(x);
}

static void check_multi_info(struct lp_curlclient *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct cxfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (!x || x->reaping)
            continue;
        CURLcode rc = msg->data.result;
        enum lp_xfer_result res = map_result(x, rc);
        const char *err =
            res == LP_XFER_OK ? NULL : (x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
        if (!x->cancelled && x->cbs.on_done) {
            /* Keep a copy: errbuf lives in x, which on_done may not outlive. */
            x->cbs.on_done(x->arg, &x->base, res, err);
        }
        xfer_destroy(x);
    }
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct lp_curlclient *u = arg;
    while (u->reap) {
        struct cxfer *x = u->reap;
        u->reap = x->reap_next;
        xfer_destroy(x);
    }
    /* Transfers started from inside a callback join the multi now (outside curl's stack). */
    while (u->pending) {
        struct cxfer *x = u->pending;
        u->pending = x->reap_next;
        x->pending_add = false;
        if (curl_multi_add_handle(u->multi, x->easy) != CURLM_OK) {
            x->cancelled = true;
            if (x->cbs.on_done)
                x->cbs.on_done(x->arg, &x->base, LP_XFER_LOCAL,
                               "could not add the upstream transfer");
            xfer_destroy(x);
        }
    }
}

struct lp_curlclient *lp_curlclient_create(struct event_base *base,
                                           const struct lp_upstream_opts *o)
{
    static bool global_done;
    if (!global_done) {
        /* Called first from the main thread before workers start (see worker.c). */
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    struct lp_curlclient *u = lp_xcalloc(1, sizeof *u);
    u->base = base;
    u->max_age_conn_s = o && o->max_age_conn_s > 0 ? o->max_age_conn_s : 60;
    u->multi = curl_multi_init();
    if (!u->multi) {
        free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS,
                      o && o->max_connects > 0 ? o->max_connects : 512L);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    CURL *probe = curl_easy_init();
    if (probe) {
        char *def = NULL;
        if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &def) == CURLE_OK && def)
            u->default_cainfo = lp_xstrdup(def);
        curl_easy_cleanup(probe);
    }
    evtimer_assign(&u->timer_ev, base, on_timer, u);
    event_assign(&u->reap_ev, base, -1, 0, on_reap, u);
    return u;
}

void lp_curlclient_destroy(struct lp_curlclient *u)
{
    if (!u)
        return;
    while (u->pending) {
        u->pending->cancelled = true;
        xfer_destroy(u->pending); /* unlinks it from the pending list */
    }
    on_reap(-1, 0, u);
    while (u->live) {
        u->live->cancelled = true;
        xfer_destroy(u->live);
    }
    evtimer_del(&u->timer_ev);
    event_del(&u->reap_ev);
    for (size_t i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]);
    /* Closing the multi closes pooled connections through our closesocket callback. */
    curl_multi_cleanup(u->multi);
    for (size_t i = 0; i < u->n_socks; i++) {
        if (u->socks[i]) {
            sock_unregister(u->socks[i]);
            free(u->socks[i]);
        }
    }
    free(u->socks);
    free(u->default_cainfo);
    free(u);
}

size_t lp_curlclient_active(const struct lp_curlclient *u)
{
    return u->active;
}

struct lp_upstream_xfer *lp_curlclient_start(struct lp_curlclient *u,
                                             const struct lp_upstream_req *r,
                                             const struct lp_upstream_cbs *cbs, void *arg)
{
    CURL *e = easy_get(u);
    if (!e) {
        if (r->body_owned)
            free((char *)r->body);
        return NULL;
    }
    struct cxfer *x = lp_xcalloc(1, sizeof *x);
    x->base.engine = LP_ENGINE_CURL;
    x->u = u;
    if (r->body_owned)
        x->owned_body = (char *)r->body;
    x->easy = e;
    x->cbs = *cbs;
    x->arg = arg;
    lp_buf_init(&x->hdrbuf, MAX_RESP_HEADER_BYTES);
    for (size_t i = 0; i < r->n_headers; i++)
        x->hdrs = curl_slist_append(x->hdrs, r->headers[i]);
    /* No 100-continue round trip (or 1 s stall) for large bodies. */
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    /* PIPEWAIT lets an https transfer wait to multiplex on an HTTP/2 connection being set up;
     * on plain HTTP/1.1 it would park transfers until others finish. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncmp(r->url, "https:", 6) == 0 ? 1L : 0L);
    if (r->post) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 10000));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(r->total_timeout_ms > 0 ? r->total_timeout_ms : 0));
    /* Pooled handles keep their options: always set the CA bundle, to the backend's own or back
     * to the default, so a private CA never carries over to another backend. */
    curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file ? r->ca_file : u->default_cainfo);
    x->next = u->live;
    if (u->live)
        u->live->prev = x;
    u->live = x;
    u->active++;
    if (u->depth > 0) {
        /* Inside curl's call stack (a failover started from a callback): adding a handle here
         * is refused, so it joins on the next loop pass. */
        x->pending_add = true;
        x->reap_next = u->pending;
        u->pending = x;
        event_active(&u->reap_ev, EV_TIMEOUT, 0);
        return &x->base;
    }
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        x->cancelled = true;
        xfer_destroy(x);
        return NULL;
    }
    return &x->base;
}

/* Queue x for removal on the next loop pass (removing an easy handle inside curl's call stack is
 * not allowed). Until then the write/header callbacks refuse data, which aborts the transfer. */
static void reap_later(struct cxfer *x)
{
    if (x->reaping)
        return;
    x->cancelled = true;
    x->reaping = true;
    x->reap_next = x->u->reap;
    x->u->reap = x;
    event_active(&x->u->reap_ev, EV_TIMEOUT, 0);
}

void lp_curlclient_cancel(struct lp_upstream_xfer *bx)
{
    struct cxfer *x = (struct cxfer *)bx;
    if (!x || x->cancelled)
        return;
    x->cancelled = true;
    if (x->u->depth == 0 || x->pending_add) {
        /* Outside curl's call stack: remove now, so curl never touches the caller's request body
         * again (it is freed right after a cancel). */
        xfer_destroy(x);
        return;
    }
    reap_later(x);
}

void lp_curlclient_resume(struct lp_upstream_xfer *bx)
{
    struct cxfer *x = (struct cxfer *)bx;
    if (!x || !x->paused || x->cancelled)
        return;
    x->paused = false;
    /* Unpausing delivers held data through our write callback: count it as being inside curl,
     * so a cancel from that callback is deferred. */
    x->u->depth++;
    CURLcode rc = curl_easy_pause(x->easy, CURLPAUSE_CONT);
    x->u->depth--;
    if (rc != CURLE_OK && !x->cancelled && x->cbs.on_done) {
        /* The held data was refused (our callback aborted): curl will not finish this handle
         * by itself, so end it here. */
        x->cancelled = true;
        struct lp_upstream_cbs cbs = x->cbs;
        void *arg = x->arg;
        cbs.on_done(arg, &x->base, LP_XFER_ABORTED, "transfer aborted while resuming");
        reap_later(x);
        return;
    }
    /* Unpausing may complete work that only socket_action reports; run it on the next pass. */
    event_active(&x->u->timer_ev, EV_TIMEOUT, 0);
}

bool lp_curlclient_paused(const struct lp_upstream_xfer *bx)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    return x->paused;
}

const char *lp_curlclient_header(const struct lp_upstream_xfer *bx, const char *name)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    for (size_t i = 0; i < x->n_hv; i++) {
        if (strcasecmp(x->hdrbuf.data + x->hv[i].name, name) == 0)
            return x->hdrbuf.data + x->hv[i].value;
    }
    return NULL;
}

size_t lp_curlclient_header_count(const struct lp_upstream_xfer *bx)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    return x->n_hv;
}

void lp_curlclient_header_at(const struct lp_upstream_xfer *bx, size_t i, const char **name,
                             const char **value)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    *name = x->hdrbuf.data + x->hv[i].name;
    *value = x->hdrbuf.data + x->hv[i].value;
}

bool lp_curlclient_reused(const struct lp_upstream_xfer *bx)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    long n = 0;
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &n);
    return n == 0;
}

int lp_curlclient_http_version(const struct lp_upstream_xfer *bx)
{
    const struct cxfer *x = (const struct cxfer *)bx;
    long v = 0;
    curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &v);
    switch (v) {
    case CURL_HTTP_VERSION_1_0:
        return 10;
    case CURL_HTTP_VERSION_2_0:
        return 20;
    default:
        return 11;
    }
}
