/* fuzz_sse.c - libFuzzer target for the incremental SSE parser.
 *
 * The first two input bytes pick a chunking seed and a small ceiling; the rest is the stream.
 * Checks: no crash/leak/UB; the concatenated raw bytes of all events are exactly the consumed
 * input; consumed + pending == fed; every event's fields lie inside its raw bytes or the
 * scratch; and, with a ceiling large enough never to trigger, chunked and one-shot feeding give
 * identical events. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

/* FNV-1a over everything observable about the events, for comparing runs. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

struct outcome {
    uint64_t digest;
    size_t events, consumed, pending;
    int failed;
};

static void drain(struct lp_sse_parser *p, const char *in, struct outcome *o, int at_eof)
{
    struct lp_sse_event ev;
    while ((at_eof ? lp_sse_finish(p, &ev) : lp_sse_next(p, &ev)) == LP_OK) {
        CHECK(ev.raw_len > 0);
        CHECK(memcmp(ev.raw, in + o->consumed, ev.raw_len) == 0);
        CHECK(ev.event_len == 0 ||
              (ev.event >= ev.raw && ev.event + ev.event_len <= ev.raw + ev.raw_len));
        CHECK(ev.data_len <= ev.raw_len);
        CHECK(!ev.is_comment_only || (!ev.has_data && ev.event_len == 0));
        o->consumed += ev.raw_len;
        o->events++;
        uint64_t flags = (uint64_t)ev.is_comment_only | (uint64_t)ev.has_data << 1;
        o->digest = mix(o->digest, &flags, sizeof flags);
        o->digest = mix(o->digest, &ev.event_len, sizeof ev.event_len);
        o->digest = mix(o->digest, ev.event, ev.event_len);
        o->digest = mix(o->digest, &ev.data_len, sizeof ev.data_len);
        o->digest = mix(o->digest, ev.data, ev.data_len);
        o->digest = mix(o->digest, &ev.raw_len, sizeof ev.raw_len);
    }
}

static void run(const char *in, size_t len, uint8_t seed, size_t max, struct outcome *o)
{
    struct lp_sse_parser p;
    lp_sse_init(&p, max);
    memset(o, 0, sizeof *o);
    o->digest = 14695981039346656037ULL;
    size_t at = 0, fed = 0;
    uint32_t x = seed;
    while (at < len) {
        size_t n = len - at;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t k = 1 + (x >> 16) % 32;
            n = n < k ? n : k;
        }
        if (lp_sse_feed(&p, in + at, n) == LP_OK)
            fed += n;
        else
            o->failed = 1;
        drain(&p, in, o, 0);
        at += n;
    }
    drain(&p, in, o, 1);
    o->pending = lp_sse_pending(&p);
    CHECK(o->failed || o->consumed + o->pending == fed);
    CHECK(o->consumed <= fed);
    lp_sse_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t seed = data[0];
    size_t small = 8 + data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    struct outcome whole, chunked, tight;
    run(in, len, 0, len + 1, &whole);
    run(in, len, seed | 1, len + 1, &chunked);
    CHECK(!whole.failed && !chunked.failed);
    CHECK(whole.digest == chunked.digest && whole.events == chunked.events);
    CHECK(whole.pending == chunked.pending);
    run(in, len, seed, small, &tight); /* exercises the ceiling; invariants only */
    return 0;
}
