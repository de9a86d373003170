/* curlclient.h - the libcurl engine behind upstream.h: libcurl multi driven by the worker's
 * libevent loop, for backends configured with `http2: true` (HTTP/2 over TLS when the server
 * offers it) and for URLs the own client does not take.
 *
 * One struct lp_curlclient per worker thread (one curl multi handle, so one connection pool and
 * DNS cache per loop). The glue follows ../shared/notes/libcurl-on-libevent.md: a per-fd table,
 * parked read registrations, 0 ms curl timeouts served by event_active, a CLOSESOCKETFUNCTION
 * that forgets the fd before close(). The functions have the contract of their lp_upstream_*
 * namesakes (upstream.h); lp_curlclient_resume may deliver held data synchronously.
 */
#ifndef LP_CURLCLIENT_H
#define LP_CURLCLIENT_H

#include <event2/event.h>
#include <stdbool.h>

#include "upstream.h"

struct lp_curlclient;

/* Returns NULL if curl could not be initialised. The first call must come from the main thread
 * before workers start (curl_global_init). */
struct lp_curlclient *lp_curlclient_create(struct event_base *base,
                                           const struct lp_upstream_opts *o);
void lp_curlclient_destroy(struct lp_curlclient *u);
size_t lp_curlclient_active(const struct lp_curlclient *u);
struct lp_upstream_xfer *lp_curlclient_start(struct lp_curlclient *u,
                                             const struct lp_upstream_req *r,
                                             const struct lp_upstream_cbs *cbs, void *arg);
void lp_curlclient_cancel(struct lp_upstream_xfer *x);
void lp_curlclient_resume(struct lp_upstream_xfer *x);
bool lp_curlclient_paused(const struct lp_upstream_xfer *x);
const char *lp_curlclient_header(const struct lp_upstream_xfer *x, const char *name);
size_t lp_curlclient_header_count(const struct lp_upstream_xfer *x);
void lp_curlclient_header_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                             const char **value);
bool lp_curlclient_reused(const struct lp_upstream_xfer *x);
int lp_curlclient_http_version(const struct lp_upstream_xfer *x);

#endif
