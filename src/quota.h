/* quota.h - reading an upstream's own rate-limit headers from a usable answer.
 *
 * Pure: a function of the header lookup and the wall clock passed in. Families read:
 *   OpenAI:    x-ratelimit-{limit,remaining,reset}-{requests,tokens}
 *   generic:   x-ratelimit-{limit,remaining,reset}
 *   Anthropic:
 * anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset} Reset
 * values are parsed by lp_parse_ratelimit_reset (seconds, Go durations, Unix times, RFC 3339).
 *
 * The reading: the headroom is the smallest remaining/limit over the dimensions that carry
 * both; a dimension whose remaining is 0 is exhausted, and the route should rest until the
 * latest reset among the exhausted dimensions (1 s when none is given, at most 24 h).
 */
#ifndef LP_QUOTA_H
#define LP_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

/* Below this headroom a route gets proportionally less traffic (lp_quota_share). */
#define LP_QUOTA_LOW 0.2
#define LP_QUOTA_DEFAULT_RESET_MS 1000
#define LP_QUOTA_MAX_RESET_MS (24LL * 3600 * 1000)

/* The value of response header `name` (case-insensitive), or NULL. */
typedef const char *(*lp_quota_header_fn)(void *ctx, const char *name);

struct lp_quota_reading {
    bool seen;        /* at least one dimension had a remaining count */
    double headroom;  /* min remaining / limit in [0, 1]; 1 when no dimension has both */
    bool exhausted;   /* a dimension's remaining count is 0 */
    int64_t reset_ms; /* exhausted: how long until it resets (see above); else the soonest
                         reset given for the tightest dimension, 0 when none */
};

/* Read the headers through get(ctx, name) at now_wall_ms into *out. */
void lp_quota_read(lp_quota_header_fn get, void *ctx, int64_t now_wall_ms,
                   struct lp_quota_reading *out);

/* The share of traffic for a headroom: 1 at or above LP_QUOTA_LOW, headroom / LP_QUOTA_LOW
 * below it (0 headroom gives 0: the route is exhausted). */
double lp_quota_share(double headroom);

#endif
