/* fuzz_classify.c - libFuzzer target for the error classifier (src/classify.h).
 *
 * Input: byte 0 = transport (low 4 bits, mod 10) | from_sse_event (bit 4) | config pick (bits
 * 5-6: none, defaults, detection overrides, error_fallback overrides); bytes 1-2 = HTTP status
 * (little endian, mod 1000); byte 3 = cooldown_seconds; then up to five NUL-terminated strings
 * (Retry-After, retry-after-ms, three rate-limit reset values; a missing one stays NULL); the
 * rest is the body (any bytes, not NUL-terminated). The header strings also go through the hint
 * parsers and lp_classify_is_reset_header on their own.
 *
 * Invariants checked: a valid class with a name; OK means no action; a cooldown implies a
 * failover and lies within [1 s, max(cooldown, LP_CLASSIFY_MAX_HINT_MS)]; the hint is clamped;
 * without a config nothing is forced and the default decision holds; a transport failure is
 * network/timeout/server; the reason is NUL-terminated and free of control characters.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define NOW_WALL 1735689600000LL /* 2025-01-01T00:00:00Z */

static char *codes[] = {"400", "4xx", "5xx", "429"};
static char *patterns[] = {"quota", "\xe7\xb3\xbb\xe7\xbb\x9f\xe7\xb9\x81\xe5\xbf\x99", ""};
static int client_codes[] = {400, 422};
static char *client_patterns[] = {"invalid chat setting", "RATE"};

/* The four configurations (none, defaults, detection overrides, error_fallback overrides) are
 * built once in LLVMFuzzerInitialize; per input only the cooldown and the two enable bits are
 * set. */
static struct lp_config configs[4];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct lp_config *c = &configs[2];
    c->detection.error_codes = codes;
    c->detection.n_error_codes = sizeof codes / sizeof codes[0];
    c->detection.error_patterns = patterns;
    c->detection.n_error_patterns = sizeof patterns / sizeof patterns[0];
    c = &configs[3];
    c->error_fallback.present = true;
    c->error_fallback.client_codes = client_codes;
    c->error_fallback.n_client_codes = 2;
    c->error_fallback.client_patterns = client_patterns;
    c->error_fallback.n_client_patterns = 2;
    return 0;
}

static const struct lp_config *pick_config(unsigned pick, uint8_t cooldown)
{
    if (pick == 0)
        return NULL;
    struct lp_config *c = &configs[pick];
    c->fallback.cooldown_seconds = cooldown;
    if (pick == 3) {
        c->error_fallback.server_error_enabled = cooldown & 1;
        c->error_fallback.client_error_enabled = cooldown & 2;
    }
    return c;
}

/* Pop the next NUL-terminated string off [*p, end); NULL if there is no terminator left. */
static const char *next_str(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *z = memchr(*p, 0, (size_t)(end - *p));
    if (!z)
        return NULL;
    const char *s = (const char *)*p;
    *p = z + 1;
    return s;
}

static void check_hint_parsers(const char *s)
{
    int64_t v = -1;
    if (lp_parse_retry_after(s, NOW_WALL, &v))
        CHECK(v >= 0);
    v = -1;
    if (lp_parse_ratelimit_reset(s, NOW_WALL, &v))
        CHECK(v >= 0);
    lp_classify_is_reset_header(s);
}

static void check_decision(const struct lp_classify_in *in, const struct lp_config *cfg,
                           const struct lp_decision *d)
{
    CHECK(d->cls >= LP_CLASS_OK && d->cls < LP_CLASS__COUNT);
    CHECK(strcmp(lp_class_name(d->cls), "?") != 0);
    CHECK(memchr(d->reason, 0, sizeof d->reason) != NULL);
    for (const char *r = d->reason; *r; r++)
        CHECK((unsigned char)*r >= 0x20 && *r != 0x7f);
    CHECK(d->hint_ms >= 0 && d->hint_ms <= LP_CLASSIFY_MAX_HINT_MS);
    if (d->cls == LP_CLASS_OK) {
        CHECK(!d->failover && !d->cooldown && !d->breaker_failure && !d->forced);
        CHECK(in->transport == LP_TR_NONE);
        return;
    }
    if (d->cooldown) {
        int64_t base = cfg && cfg->fallback.cooldown_seconds > 0
                           ? (int64_t)cfg->fallback.cooldown_seconds * 1000
                           : 60000;
        CHECK(d->failover);
        CHECK(d->cooldown_ms >= base);
        CHECK(d->cooldown_ms <= (base > LP_CLASSIFY_MAX_HINT_MS ? base : LP_CLASSIFY_MAX_HINT_MS));
    }
    if (!cfg || in->transport != LP_TR_NONE) {
        CHECK(!d->forced);
        CHECK(d->failover == lp_class_fails_over(d->cls));
    }
    if (in->transport != LP_TR_NONE)
        CHECK(d->cls == LP_CLASS_NETWORK || d->cls == LP_CLASS_TIMEOUT ||
              d->cls == LP_CLASS_SERVER);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const struct lp_config *cfg = pick_config((data[0] >> 5) & 3, data[3]);
    struct lp_classify_in in = {.transport = (enum lp_transport)((data[0] & 15) % 10),
                                .status = (int)((data[1] | (unsigned)data[2] << 8) % 1000),
                                .from_sse_event = (data[0] & 16) != 0,
                                .now_wall_ms = NOW_WALL};
    const uint8_t *p = data + 4, *end = data + size;
    in.retry_after = next_str(&p, end);
    in.retry_after_ms = in.retry_after ? next_str(&p, end) : NULL;
    for (size_t i = 0; i < 3 && in.retry_after_ms && (i == 0 || in.ratelimit_reset[i - 1]); i++)
        in.ratelimit_reset[i] = next_str(&p, end);
    /* A heap copy of exactly the body bytes, so ASan sees any read past body_len. */
    size_t blen = (size_t)(end - p);
    char *body = blen ? malloc(blen) : NULL;
    if (blen)
        memcpy(body, p, blen);
    in.body = body;
    in.body_len = blen;

    struct lp_decision d;
    lp_classify(&in, cfg, &d);
    check_decision(&in, cfg, &d);

    if (in.retry_after)
        check_hint_parsers(in.retry_after);
    if (in.retry_after_ms)
        check_hint_parsers(in.retry_after_ms);
    for (size_t i = 0; i < 3 && in.ratelimit_reset[i]; i++)
        check_hint_parsers(in.ratelimit_reset[i]);
    free(body);
    return 0;
}
