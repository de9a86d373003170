/* clientip.h - who the client is: the socket peer, or the forwarded address a trusted proxy
 * vouches for.
 *
 * Pure functions (no I/O, no globals). The per-IP rate limit keys on lp_clientip_resolve's
 * answer: X-Forwarded-For / X-Real-IP are believed only when the socket peer is inside one of
 * server.trusted_proxies, and then the client is the rightmost hop that is not itself trusted
 * (every proxy appends the address it saw, so hops to its left are the client's own claims).
 */
#ifndef LP_CLIENTIP_H
#define LP_CLIENTIP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Longest text form of an address plus NUL ("ffff:...:255.255.255.255"). */
#define LP_CLIENTIP_MAX 64

/* Parse "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" (surrounding spaces allowed). An address without a
 * prefix is a single host. IPv4 is stored IPv4-mapped with bits + 96. Returns false on garbage,
 * a prefix out of range, or host bits set beyond the prefix ("10.0.0.1/8": probably a typo, so
 * it is refused rather than silently widened). */
bool lp_cidr_parse(const char *s, struct lp_cidr *out);

/* Parse one address (no prefix; IPv6 may be bracketed, IPv4 may carry ":port") into 16 bytes
 * (IPv4-mapped for IPv4). False on garbage. */
bool lp_ip_parse(const char *s, size_t len, unsigned char out[16]);

/* Whether addr lies inside any of the n blocks. */
bool lp_cidr_match(const struct lp_cidr *blocks, size_t n, const unsigned char addr[16]);

/* The client address for rate limiting and logs, written to out (NUL-terminated, normalised:
 * IPv4-mapped addresses shown as IPv4). peer is the socket peer's text; xff and real_ip are the
 * X-Forwarded-For and X-Real-IP header values (NULL when absent). Returns true when a forwarded
 * address was used. */
bool lp_clientip_resolve(const char *peer, const char *xff, const char *real_ip,
                         const struct lp_cidr *trusted, size_t n_trusted, char *out,
                         size_t out_len);

#endif
