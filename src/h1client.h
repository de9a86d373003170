/* h1client.h - the own HTTP/1.1 upstream client on the worker's libevent loop.
 *
 * The engine behind upstream.h for http:// and https:// backends (lp_h1client_accepts). Host
 * names are resolved on the loop (dns.h) only when a new connection is needed; every address of
 * the name is tried in turn when connecting fails; https adds a TLS handshake (tls.h) inside the
 * connect window. Same contract as upstream.h: callbacks only from the loop,
 * never from inside lp_h1client_start; a cancel closes the connection at once (a cancel from
 * inside one of the transfer's own callbacks is completed when the callback returns); pause
 * (LP_AGAIN from on_data) stops reading the socket; resume redelivers the held bytes on the next
 * loop pass.
 *
 * Connections are kept alive in a per-client pool (pool.h) per origin. A request sent on a
 * reused connection that the peer closed before answering is sent once more on a fresh
 * connection. Timeouts: connect (LP_XFER_TIMEOUT_CONNECT), writing the request (write_timeout_ms,
 * LP_XFER_RESET), and the transfer's total (LP_XFER_TIMEOUT_TOTAL); the time to the first byte
 * and the read-idle limit belong to the request core. Memory per transfer: the request head, the
 * response head, and a held-bytes buffer only while paused; reads go through one buffer per
 * client.
 */
#ifndef LP_H1CLIENT_H
#define LP_H1CLIENT_H

#include <event2/event.h>
#include <stdbool.h>

#include "upstream.h"

struct lp_h1client;

struct lp_h1client *lp_h1client_create(struct event_base *base, const struct lp_upstream_opts *o);
/* Cancel every transfer (no callbacks), close every connection, free. */
void lp_h1client_destroy(struct lp_h1client *c);
size_t lp_h1client_active(const struct lp_h1client *c);
/* Idle pooled connections (for tests). */
size_t lp_h1client_idle(const struct lp_h1client *c);

/* Whether this client can carry a request to `url`: http:// or https:// (when TLS could be set
 * up) with an IP literal, localhost, or a host name (when the resolver could be created). */
bool lp_h1client_accepts(const struct lp_h1client *c, const char *url);

/* As lp_upstream_start (see upstream.h). */
struct lp_upstream_xfer *lp_h1client_start(struct lp_h1client *c, const struct lp_upstream_req *r,
                                           const struct lp_upstream_cbs *cbs, void *arg);
void lp_h1client_cancel(struct lp_upstream_xfer *x);
void lp_h1client_resume(struct lp_upstream_xfer *x);
bool lp_h1client_paused(const struct lp_upstream_xfer *x);
const char *lp_h1client_header(const struct lp_upstream_xfer *x, const char *name);
size_t lp_h1client_header_count(const struct lp_upstream_xfer *x);
void lp_h1client_header_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                           const char **value);
bool lp_h1client_reused(const struct lp_upstream_xfer *x);
int lp_h1client_http_version(const struct lp_upstream_xfer *x);

#endif
