/* conncap.h - process-wide connection caps: open client connections in total and per peer
 * address, shared by every worker's edge.
 *
 * The total is one atomic counter: an edge reserves a slot before accept() and releases it when
 * the socket closes, so the cap holds across threads without a lock. Per-address counts live in
 * an open-addressing hash table under a mutex that is taken only on accept and close. The table
 * holds one entry per address with at least one open connection, so its size is bounded by the
 * number of open connections (it grows by doubling and never shrinks below its peak). The hash
 * is keyed with a random seed chosen at creation, so peers cannot pick colliding addresses.
 *
 * Addresses: IPv4, and IPv6 by its full 128 bits; an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
 * what a dual-stack listener reports for IPv4 peers) counts as the IPv4 address. Other address
 * families (Unix sockets) are not counted per address.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef LP_CONNCAP_H
#define LP_CONNCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;
struct lp_conncap;

/* A peer address in counted form: len 4 (IPv4) or 16 (IPv6); 0 = not counted. */
struct lp_conncap_addr {
    uint8_t len;
    uint8_t b[16];
};

/* Counters for metrics and logs. */
struct lp_conncap_stats {
    size_t max_total; /* the caps now (0 = unlimited) */
    size_t max_per_addr;
    size_t open;            /* slots reserved now (open connections) */
    size_t addrs;           /* distinct addresses with an open connection */
    uint64_t refused_addr;  /* admissions refused by the per-address cap */
    uint64_t refused_total; /* reservations refused by the total cap */
};

/* Caps of 0 mean unlimited. seed keys the address hash. Never returns NULL (aborts on OOM). */
struct lp_conncap *lp_conncap_create(size_t max_total, size_t max_per_addr, uint64_t seed);
/* NULL is accepted. */
void lp_conncap_destroy(struct lp_conncap *c);
/* New caps (0 = unlimited); connections already open stay open, only new ones are checked. */
void lp_conncap_set_limits(struct lp_conncap *c, size_t max_total, size_t max_per_addr);
/* Reserve one slot of the total cap. False (nothing reserved, one refusal counted) when the
 * total is at its cap. */
bool lp_conncap_reserve(struct lp_conncap *c);
/* Give back a slot taken with lp_conncap_reserve. */
void lp_conncap_unreserve(struct lp_conncap *c);
/* Fill *a from a socket address (AF_INET / AF_INET6; mapped IPv6 becomes IPv4). Returns false
 * and sets a->len = 0 for other families. */
bool lp_conncap_addr_from(const struct sockaddr *sa, struct lp_conncap_addr *a);
/* Count one more connection from *a. False (nothing counted, one refusal counted) when *a
 * already has max_per_addr connections. An address with len 0 is always admitted and not
 * counted. */
bool lp_conncap_admit(struct lp_conncap *c, const struct lp_conncap_addr *a);
/* Count one connection from *a less (one admitted earlier). */
void lp_conncap_leave(struct lp_conncap *c, const struct lp_conncap_addr *a);
/* Open connections counted for *a now. */
size_t lp_conncap_addr_count(struct lp_conncap *c, const struct lp_conncap_addr *a);
void lp_conncap_stats(struct lp_conncap *c, struct lp_conncap_stats *st);

#endif
