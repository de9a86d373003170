/* limiter_local.h - knobs of the in-process limiter that only it has (tests, introspection).
 * Everything else goes through limiter.h. */
#ifndef LP_LIMITER_LOCAL_H
#define LP_LIMITER_LOCAL_H

#include <stddef.h>
#include <stdint.h>

struct lp_limiter;

/* Client addresses tracked by the per-IP rate limit at most (about 150 bytes each): past it the
 * least recently seen address is forgotten. Idle addresses (a full bucket) are forgotten
 * earlier, a couple per new address. */
#define LP_LIMITER_MAX_IPS 65536

/* Change the ceiling (tests). l must be a local limiter. */
void lp_limiter_local_set_ip_capacity(struct lp_limiter *l, size_t cap);
/* Addresses tracked now, and (when evicted is not NULL) how many were forgotten so far. */
size_t lp_limiter_local_ip_count(struct lp_limiter *l, uint64_t *evicted);

#endif
