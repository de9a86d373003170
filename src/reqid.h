/* reqid.h - request ids and constant-time key comparison.
 *
 * Ids are "req_" + 24 lowercase hex digits (96 bits): 64 bits from the caller's RNG and 32 bits
 * from a per-process counter passed through a bijection, so two ids from one process differ
 * even if two worker RNGs were seeded alike, and the count of requests is not readable off an id.
 */
#ifndef LP_REQID_H
#define LP_REQID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LP_REQID_MAX 64 /* bytes, including the terminating NUL */

/* Write a new NUL-terminated id "req_" + 24 lowercase hex chars (28 chars) into out, which must
 * hold LP_REQID_MAX bytes. Advances *rng. Thread-safe (the counter is atomic). */
void lp_reqid_new(uint64_t *rng, char out[LP_REQID_MAX]);

/* A client-sent X-Request-Id is reused only if it is 1..LP_REQID_MAX-1 (63) chars of
 * [A-Za-z0-9._:-], so it always fits an LP_REQID_MAX buffer with its NUL and is safe in logs
 * and headers. NULL is not sane. */
bool lp_reqid_sane(const char *s);

#include "util/ct.h" /* lp_ct_equal, used with request ids and keys */

#endif
