/* quota.c - upstream rate-limit headers. See quota.h for the contract. */
#include "quota.h"

#include <stdio.h>
#include <stdlib.h>

#include "classify.h"

struct family {
    const char *limit, *remaining, *reset;
};

/* clang-format off */
static const struct family families[] = {
    {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"},
    {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"},
    {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"},
    {"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
     "anthropic-ratelimit-requests-reset"},
    {"anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining",
     "anthropic-ratelimit-tokens-reset"},
    {"anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining",
     "anthropic-ratelimit-input-tokens-reset"},
    {"anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining",
     "anthropic-ratelimit-output-tokens-reset"},
};
/* clang-format on */

/* A non-negative count ("123", "123.0" is accepted as 123). */
static bool count_of(const char *v, double *out)
{
    if (!v)
        return false;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!(*v >= '0' && *v <= '9'))
        return false;
    char *end;
    double d = strtod(v, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end != '\0' || !(d >= 0))
        return false;
    *out = d;
    return true;
}

void lp_quota_read(lp_quota_header_fn get, void *ctx, int64_t now_wall_ms,
                   struct lp_quota_reading *out)
{
    *out = (struct lp_quota_reading){.headroom = 1.0};
    if (!get)
        return;
    int64_t tight_reset = 0;
    bool any_reset_exhausted = false;
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const struct family *f = &families[i];
        double rem, lim;
        if (!count_of(get(ctx, f->remaining), &rem))
            continue;
        out->seen = true;
        int64_t reset = 0;
        bool has_reset = lp_parse_ratelimit_reset(get(ctx, f->reset), now_wall_ms, &reset);
        if (rem < 1.0) { /* remaining 0: this dimension is used up until its reset */
            out->exhausted = true;
            if (has_reset && (!any_reset_exhausted || reset > out->reset_ms)) {
                out->reset_ms = reset;
                any_reset_exhausted = true;
            }
            out->headroom = 0;
            continue;
        }
        if (count_of(get(ctx, f->limit), &lim) && lim > 0) {
            double h = rem / lim;
            if (h > 1.0)
                h = 1.0;
            if (h < out->headroom) {
                out->headroom = h;
                tight_reset = has_reset ? reset : 0;
            }
        }
    }
    if (out->exhausted) {
        if (!any_reset_exhausted || out->reset_ms <= 0)
            out->reset_ms = LP_QUOTA_DEFAULT_RESET_MS;
        if (out->reset_ms > LP_QUOTA_MAX_RESET_MS)
            out->reset_ms = LP_QUOTA_MAX_RESET_MS;
    } else {
        out->reset_ms = tight_reset > LP_QUOTA_MAX_RESET_MS ? LP_QUOTA_MAX_RESET_MS : tight_reset;
    }
}

double lp_quota_share(double headroom)
{
    if (!(headroom > 0))
        return 0;
    return headroom >= LP_QUOTA_LOW ? 1.0 : headroom / LP_QUOTA_LOW;
}
