/* upstream.h - the upstream HTTP client on the worker's libevent loop.
 *
 * One struct lp_upstream per worker thread, one struct lp_upstream_xfer per attempt. Two engines
 * sit behind this interface, chosen per transfer (upstream.c): the own HTTP/1.1 client
 * (h1client.c: keep-alive pools per origin in pool.c, names resolved by dns.c, TLS by tls.c) for
 * http:// and https:// backends, and libcurl multi (curlclient.c) for backends that ask for it
 * with `http2: true` (HTTP/2 over TLS).
 *
 * Response hygiene (upstream.c, above the engines, so every engine behaves the same): the caller
 * asks for `Accept-Encoding: identity`; no engine adds an Accept-Encoding of its own or decodes
 * (CURLOPT_ACCEPT_ENCODING is never set: curl 7.88 does not detect a truncated gzip body). A
 * gzip/deflate body that comes anyway is decoded (src/coding.c) before on_data, and
 * Content-Encoding and Content-Length are then absent from the headers reported. These end the
 * transfer with LP_XFER_PROTOCOL (on_head is not called when the head itself is refused):
 * conflicting Content-Length values, Content-Length together with Transfer-Encoding, a body on a
 * 204/304, a content coding other than gzip/deflate/identity (br, zstd, unknown, stacked), a body
 * that does not match its coding, a truncated compressed body, a body expanding beyond
 * LP_CODING_DEFAULT_RATIO (compression bomb).
 *
 * Callbacks are invoked from the loop (never re-entrantly from inside a call the user made,
 * except lp_upstream_resume, which may deliver held data synchronously, see below).
 */
#ifndef LP_UPSTREAM_H
#define LP_UPSTREAM_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct lp_upstream;
struct lp_upstream_xfer;

/* Why a transfer ended, in transport terms (HTTP statuses are not errors here). */
enum lp_xfer_result {
    LP_XFER_OK = 0,          /* complete response received */
    LP_XFER_CONNECT,         /* could not connect (refused, unreachable) */
    LP_XFER_DNS,             /* name resolution failed */
    LP_XFER_TLS,             /* TLS handshake / certificate failure */
    LP_XFER_RESET,           /* connection reset or closed mid-response (incl. truncated body) */
    LP_XFER_TIMEOUT_CONNECT, /* connect_timeout */
    LP_XFER_TIMEOUT_TOTAL,   /* the request's overall deadline */
    LP_XFER_PROTOCOL,        /* malformed HTTP from the upstream: bad framing, a body on
                                204/304, an unsupported, corrupt or truncated content coding */
    LP_XFER_ABORTED,         /* aborted by our own callback (LP_ERR from on_data) */
    LP_XFER_LOCAL,           /* a local resource ran out (no fds, no memory) before the
                                backend was reached: not the backend's fault */
    LP_XFER_OTHER,
};

struct lp_upstream_cbs {
    /* The final response head arrived (1xx skipped). Headers are available through
     * lp_upstream_header(). */
    void (*on_head)(void *arg, struct lp_upstream_xfer *x, int status);
    /* Response body bytes. Return LP_OK when consumed, LP_AGAIN to pause the transfer (the same
     * bytes are delivered again after lp_upstream_resume), LP_ERR to abort it (on_done follows
     * with LP_XFER_ABORTED). */
    enum lp_status (*on_data)(void *arg, struct lp_upstream_xfer *x, const char *buf, size_t len);
    /* The transfer ended. `err` is a short static/curl description (NULL when OK). The xfer is
     * freed right after this returns; don't touch it afterwards. Not called after
     * lp_upstream_cancel. */
    void (*on_done)(void *arg, struct lp_upstream_xfer *x, enum lp_xfer_result res,
                    const char *err);
};

struct lp_upstream_req {
    const char *url;
    bool post;        /* POST with body, else GET */
    const char *body; /* borrowed: must stay valid until on_done or cancel, unless
                         body_owned */
    size_t body_len;
    bool body_owned;            /* the transfer takes body (a malloc'd buffer) and frees it when
                                   it is really gone: a cancel from inside another transfer's
                                   callback is completed later, and the body must outlive it */
    const char *const *headers; /* "Name: value" strings, copied */
    size_t n_headers;
    int64_t connect_timeout_ms;
    int64_t write_timeout_ms; /* sending the request (own client only); 0 = none */
    int64_t total_timeout_ms; /* 0 = none */
    const char *ca_file;      /* CA bundle to verify the peer with; NULL = libcurl's default */
    const char *ca_pem;       /* the same bundle's text, read at config load (own client) */
    bool http2;               /* the backend's `http2: true`: libcurl (HTTP/2 over TLS) */
};

struct lp_upstream_opts {
    long max_connects;   /* connection cache size (>= peak concurrency), default 512 */
    long max_age_conn_s; /* retire pooled connections older than this idle time, default 60 */
};

/* Create the client for one loop. Returns NULL if curl could not be initialised. */
struct lp_upstream *lp_upstream_create(struct event_base *base, const struct lp_upstream_opts *o);
/* Cancel every transfer (no callbacks) and free everything. */
void lp_upstream_destroy(struct lp_upstream *u);
size_t lp_upstream_active(const struct lp_upstream *u);

/* Start a transfer. Never calls a callback synchronously; may be called from inside another
 * transfer's callback (the transfer then joins the client on the next loop pass). Returns NULL
 * on a setup failure (e.g. an invalid URL), in which case no callback will ever be called (and
 * an owned body has been freed). */
struct lp_upstream_xfer *lp_upstream_start(struct lp_upstream *u, const struct lp_upstream_req *r,
                                           const struct lp_upstream_cbs *cbs, void *arg);
/* Stop the transfer at once; no further callbacks. Safe from inside this xfer's callbacks (the
 * transfer is then torn down after the callback returns). */
void lp_upstream_cancel(struct lp_upstream_xfer *x);
/* Resume a transfer paused by LP_AGAIN. May call on_data synchronously with the held bytes. */
void lp_upstream_resume(struct lp_upstream_xfer *x);
bool lp_upstream_paused(const struct lp_upstream_xfer *x);

/* Response header lookup (case-insensitive), valid from on_head until on_done returns. */
const char *lp_upstream_header(const struct lp_upstream_xfer *x, const char *name);
size_t lp_upstream_header_count(const struct lp_upstream_xfer *x);
void lp_upstream_header_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                           const char **value);
/* Whether the transfer reused a pooled connection. */
bool lp_upstream_reused(const struct lp_upstream_xfer *x);
/* The HTTP version used: 10, 11, 20. */
int lp_upstream_http_version(const struct lp_upstream_xfer *x);

#endif
