/* edge.h - the HTTP/1.1 server edge on a libevent event_base (replaces evhttp).
 *
 * The edge accepts connections, parses requests (src/http1.h), enforces header/body/time limits,
 * hands complete requests to one handler, and writes responses (complete, or streamed with
 * chunked framing) with backpressure. It knows nothing about LLMs. Full contract and design:
 * docs/internals/edge.md.
 *
 * Threading: one edge per event loop; every function must be called from the loop's thread.
 * The process must not die on SIGPIPE: the edge writes with MSG_NOSIGNAL itself, so no handler
 * for SIGPIPE is needed for the edge.
 *
 * Request lifetime: a request handed to on_request (or on_reject) is "active" until the handler
 * ends it exactly once with lp_edge_respond, lp_edge_end (after lp_edge_start) or lp_edge_abort.
 * After that the pointer is invalid. The edge never frees an active request: when the client
 * goes away it calls close_cb (from the loop, never from inside a call the handler made) and
 * keeps the request alive until the handler ends it. A request shown to on_head is active only
 * for the duration of that callback unless the handler ends it there (see lp_edge_head_cb).
 *
 * Callbacks are never invoked re-entrantly from inside an lp_edge_* call made by the handler;
 * a handler may call any lp_edge_* function (including ending the request) from inside any edge
 * callback.
 *
 * Process-wide limits (optional, lp_edge_set_shared): a connection cap in total and per peer
 * address (src/conncap.h) and a byte budget for request bodies (src/budget.h), shared by the
 * edges of all worker threads.
 */
#ifndef LP_EDGE_H
#define LP_EDGE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct lp_edge;     /* one per worker thread/event loop */
struct lp_edge_req; /* one request on a connection; owned by the edge */
struct lp_conncap;  /* process-wide connection caps (conncap.h) */
struct lp_budget;   /* process-wide byte budget (budget.h) */

/* Size limits of 0 select the defaults (16 KiB headers, 16 MiB body); timeouts <= 0 disable
 * that timeout. */
struct lp_edge_limits {
    size_t max_header_bytes; /* request line + headers; over -> reject 431 */
    size_t max_body_bytes; /* over (by Content-Length up front, or while reading chunked) -> reject
                              413 without reading the rest */
    int64_t header_timeout_ms; /* from connection accept / first byte after keep-alive idle until
                                  the full header block arrived (slowloris) -> close */
    int64_t body_timeout_ms; /* the whole body must arrive within this, counted from the end of the
                                head -> 408 reject */
    int64_t body_idle_timeout_ms; /* max silence while reading the body -> 408 reject */
    uint64_t min_body_rate; /* bytes/s: after the first window, every body_rate_window_ms must bring
                               rate x window bytes -> 408 reject; 0 = off */
    int64_t body_rate_window_ms; /* <= 0 selects 5000 */
    int64_t idle_timeout_ms;     /* keep-alive idle between requests -> close */
    int64_t write_timeout_ms;    /* max time with pending output that makes no progress -> close
                                    (handler gets close_cb) */
};
struct lp_edge_header {
    const char *name;
    const char *value;
};

/* A complete request (headers + whole body within limits) arrived. The handler owns answering
 * it: it must end it exactly once with lp_edge_respond, lp_edge_end (after lp_edge_start) or
 * lp_edge_abort, now or later (asynchronously). */
typedef void (*lp_edge_request_cb)(struct lp_edge_req *req, void *arg);
/* The head of a request arrived and passed the parser's checks; no body byte has been read, no
 * 100 Continue sent, and the body size not yet checked. Called exactly once per such head, before
 * any other callback of that request (optional: see lp_edge_set_head_cb). Inside the callback the
 * request is active and the accessors work (the body is empty). The handler either
 *  - answers at once, synchronously, with lp_edge_respond: the edge sends it with
 *    Connection: close (instead of any 100 Continue) and closes the connection after writing it,
 *    without reading the body (a lingering close discards what the client still sends, for at
 *    most 2 s, so the answer is not destroyed by a reset); or ends it with lp_edge_abort (close
 *    at once, no answer);
 *  - or returns without ending it: the edge then reads the body and calls on_request (or
 *    on_reject) as usual. Callbacks set on the request inside on_head are then forgotten.
 * lp_edge_start/write/end must not be used inside it (the request is aborted if a head was
 * started and not ended). As in on_reject, the accessors stay usable until the callback returns,
 * even after lp_edge_respond. */
typedef void (*lp_edge_head_cb)(struct lp_edge_req *req, void *arg);
/* The edge refused a request before the handler saw it (status 400 malformed, 408 body timeout
 * (silence, overall deadline or minimum rate), 413 body too large, 417 unsupported Expect, 431
 * headers too large, 501 unsupported transfer-encoding, 503 body budget exhausted (the plain
 * fallback adds Retry-After: 1; a callback should too), 505 version). Method/path/headers are
 * available when they were parsed (method may be "" and path NULL when the request line was not
 * parsed). The callback must answer synchronously with lp_edge_respond (so the body can be in the
 * client's protocol shape); the edge then closes the connection after writing it (Connection:
 * close). If the callback is NULL, or returns without answering, the edge sends a plain-text
 * response. Exception to "invalid once ended": inside on_reject, the accessors (method, path,
 * headers) stay usable until the callback returns, even after lp_edge_respond (e.g. for logging).
 */
typedef void (*lp_edge_reject_cb)(struct lp_edge_req *req, int status, const char *reason,
                                  void *arg);
/* The client went away (EOF/reset/write error/write timeout) before the handler ended the
 * request. Called at most once, from the event loop. The request stays valid; writes become
 * no-ops; the handler must still end it (lp_edge_end/lp_edge_abort/lp_edge_respond), which then
 * frees it. A client that half-closes (shutdown(SHUT_WR)) while its request is being handled is
 * treated as gone. */
typedef void (*lp_edge_close_cb)(struct lp_edge_req *req, void *arg);
/* Pending output dropped to or below the low watermark set with lp_edge_set_drain_cb
 * (backpressure release). Fires on the transition from above to at-or-below. */
typedef void (*lp_edge_drain_cb)(struct lp_edge_req *req, void *arg);

/* Create a listening socket (nonblocking, close-on-exec, SO_REUSEADDR, SO_REUSEPORT when
 * reuseport, TCP_NODELAY on the listener so accepted sockets inherit it, backlog up to
 * net.core.somaxconn). host NULL/""/"*" = any (dual-stack "::" if available else 0.0.0.0);
 * port 0 = ephemeral. Returns the fd (owned by the caller) or -1 with errno set. Blocking
 * getaddrinfo: boot time only. */
int lp_edge_listen_socket(const char *host, int port, bool reuseport);
/* Local port of a bound socket (for port 0), or -1. */
int lp_edge_socket_port(int fd);
/* Create an edge that accepts on listen_fd (which stays owned by the caller) on base. lim is
 * copied (NULL = defaults). on_request is required; on_reject may be NULL. arg is passed to
 * both. Never returns NULL (aborts on OOM). */
struct lp_edge *lp_edge_create(struct event_base *base, int listen_fd,
                               const struct lp_edge_limits *lim, lp_edge_request_cb on_request,
                               lp_edge_reject_cb on_reject, void *arg);
/* Replace the limits; they apply to requests whose head starts afterwards. */
void lp_edge_set_limits(struct lp_edge *e, const struct lp_edge_limits *lim);
/* Set (or clear with NULL) the head callback; it gets the arg given to lp_edge_create. */
void lp_edge_set_head_cb(struct lp_edge *e, lp_edge_head_cb on_head);
/* Attach process-wide limits (either may be NULL; both stay owned by the caller and must outlive
 * the edge). Call before the loop runs, at most once.
 * caps: a slot of the total cap is reserved before each accept(); while the total is at its cap
 *   the edge stops accepting (connections wait in the listen backlog, as nginx and HAProxy do)
 *   and resumes when one of its own connections closes or after 50 ms at the latest. A
 *   connection from an address already at its per-address cap is closed at once, unread.
 * bodies: every byte of body storage is taken from it before it is allocated and given back
 *   when the handler ends the request (before the answer's last bytes are sent; storage above
 *   64 KiB is freed then too, and what a connection keeps between requests is not counted) or
 *   the connection goes; a body that would exceed it is refused with 503 and the connection
 *   closed. */
void lp_edge_set_shared(struct lp_edge *e, struct lp_conncap *caps, struct lp_budget *bodies);
/* Stop accepting (removes the listener registration, not the fd, which the caller owns); idle
 * keep-alive connections are closed; connections with a request in progress are closed after
 * their response (Connection: close). Idempotent. */
void lp_edge_drain(struct lp_edge *e);
/* Requests handed to the handler (or reject callback) and not yet ended. */
size_t lp_edge_active_requests(const struct lp_edge *e);
/* Connections whose socket is open. */
size_t lp_edge_open_connections(const struct lp_edge *e);
/* Close every connection at once (in-flight requests get close_cb; they must still be ended)
 * and free the edge once all requests are ended (at once if none is active). e must not be used
 * after this call except to end its still-active requests. Call from the loop thread. NULL is
 * accepted. */
void lp_edge_destroy(struct lp_edge *e);

/* Request accessors (valid until the request is ended). */
const char *
lp_edge_req_method(const struct lp_edge_req *r); /* "GET", "POST", ...; "" if unparsed (rejects) */
const char *lp_edge_req_path(
    const struct lp_edge_req
        *r); /* raw path without query, e.g. "/v1/messages"; NULL if unparsed (rejects) */
const char *lp_edge_req_query(const struct lp_edge_req *r); /* raw query without '?', or NULL */
const char *lp_edge_req_header(const struct lp_edge_req *r,
                               const char *name); /* case-insensitive, first match, NULL if none */
size_t lp_edge_req_header_count(const struct lp_edge_req *r);
void lp_edge_req_header_at(const struct lp_edge_req *r, size_t i, const char **name,
                           const char **value); /* names as sent; i < count */
const char *lp_edge_req_body(const struct lp_edge_req *r,
                             size_t *len); /* whole body (Content-Length or de-chunked); "" with len
                                              0 if none; NUL-terminated */
const char *lp_edge_req_peer_ip(
    const struct lp_edge_req *r); /* "127.0.0.1" / "::1" (IPv4-mapped shown as IPv4) */
int lp_edge_req_http_minor(const struct lp_edge_req *r); /* 0 or 1 */
bool lp_edge_req_client_gone(const struct lp_edge_req *r);
/* Set (or clear with cb NULL) the close callback of an active request. */
void lp_edge_set_close_cb(struct lp_edge_req *r, lp_edge_close_cb cb, void *arg);

/* Responses. Headers are copied. Content-Length, Transfer-Encoding and Connection are set by the
 * edge (those in hdrs are ignored, as are headers whose name or value contains CR, LF or NUL).
 * Date is not sent. Status outside 100..999 is sent as 500. For HEAD requests and for 1xx, 204
 * and 304 no body is sent (for HEAD the Content-Length of `len` is still announced). */

/* Complete response; ends the request. If the client is gone the response is dropped. The
 * response is written to the socket at once when possible; the rest is queued. */
void lp_edge_respond(struct lp_edge_req *r, int status, const struct lp_edge_header *hdrs,
                     size_t n_hdrs, const char *body, size_t len);
/* Streaming: writes the head; the body follows with lp_edge_write and ends with lp_edge_end.
 * Chunked for HTTP/1.1, close-delimited (Connection: close) for HTTP/1.0. Call at most once and
 * not after lp_edge_respond. */
void lp_edge_start(struct lp_edge_req *r, int status, const struct lp_edge_header *hdrs,
                   size_t n_hdrs);
/* One chunk of a streaming body (len 0 is a no-op, never the terminal chunk). Output is never
 * dropped for being large: the handler applies backpressure with lp_edge_pending and the drain
 * callback. Returns LP_OK, or LP_ERR if the client is gone or the response was not started. */
enum lp_status lp_edge_write(struct lp_edge_req *r, const void *data, size_t len);
/* Bytes queued but not yet written to the socket (0 once the client is gone). */
size_t lp_edge_pending(const struct lp_edge_req *r);
/* Call cb when pending output drops to or below low_watermark (after having been above it).
 * cb NULL disables. */
void lp_edge_set_drain_cb(struct lp_edge_req *r, size_t low_watermark, lp_edge_drain_cb cb,
                          void *arg);
/* Terminal chunk; ends the request; the connection is kept alive unless close is needed. Without
 * a prior lp_edge_start this is a misuse and behaves like lp_edge_abort. */
/* Cork/uncork: between the two, writes (head, chunks) are queued instead of sent, and uncork
 * sends them in one sendmsg. For relaying several SSE events of one upstream read (and the head
 * with the first of them) in one syscall. lp_edge_end uncorks. */
void lp_edge_cork(struct lp_edge_req *r);
void lp_edge_uncork(struct lp_edge_req *r);
void lp_edge_end(struct lp_edge_req *r);
/* Ends the request and closes the connection at once (no terminal chunk; queued output is
 * dropped). Use it to signal a truncated stream to the client. */
void lp_edge_abort(struct lp_edge_req *r);

#endif
