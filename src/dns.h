/* dns.h - asynchronous name resolution on the worker's loop (c-ares), with a TTL cache.
 *
 * One struct lp_dns per worker loop: a c-ares channel whose sockets and timeouts are driven by
 * libevent, so resolving never blocks the loop. Answers are cached per host name for their TTL
 * (the smallest TTL of the records, at least 1 s, at most LP_DNS_MAX_TTL_S). An expired entry is
 * still served (serve-stale, up to LP_DNS_STALE_S past its expiry) while one query refreshes it
 * in the background; a failed refresh keeps the stale answer, so a resolver outage does not take
 * down backends whose addresses have not changed. Concurrent lookups of one name share one query.
 *
 * c-ares was chosen over getaddrinfo on a resolver thread because getaddrinfo reports no TTL.
 * The resolver configuration (/etc/resolv.conf, /etc/hosts) is read when the worker starts; the
 * environment variable LP_DNS_SERVERS ("host:port,...") replaces the name servers (tests).
 */
#ifndef LP_DNS_H
#define LP_DNS_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define LP_DNS_MAX_ADDRS 8
#define LP_DNS_MAX_TTL_S 3600
#define LP_DNS_STALE_S 3600

struct lp_dns;
struct lp_dns_query;

/* Addresses of one name, in the resolver's order; ports are 0. */
struct lp_dns_addrs {
    size_t n;
    struct sockaddr_storage addr[LP_DNS_MAX_ADDRS];
    socklen_t len[LP_DNS_MAX_ADDRS];
};

/* Called from the loop, never from inside lp_dns_resolve. `a` is NULL on failure, with `err` a
 * short static description. `a` is valid during the call only. */
typedef void (*lp_dns_cb)(void *arg, const struct lp_dns_addrs *a, const char *err);

/* A resolver on `base`, or NULL when c-ares cannot be initialised. */
struct lp_dns *lp_dns_create(struct event_base *base);
/* Cancel every query (no callbacks) and free everything. */
void lp_dns_destroy(struct lp_dns *d);

/* A cached answer for `host`, fresh or stale (a stale one starts a background refresh), copied to
 * *out. False when nothing usable is cached. */
bool lp_dns_cached(struct lp_dns *d, const char *host, struct lp_dns_addrs *out);
/* Resolve `host` (served from the cache when possible) and call cb exactly once, later, unless
 * the query is cancelled first. Never NULL. */
struct lp_dns_query *lp_dns_resolve(struct lp_dns *d, const char *host, lp_dns_cb cb, void *arg);
/* Forget a query: its callback is not called. */
void lp_dns_cancel(struct lp_dns_query *q);

/* Queries sent to the name servers so far (for tests and metrics). */
uint64_t lp_dns_queries(const struct lp_dns *d);

#endif
