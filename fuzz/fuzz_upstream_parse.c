/* fuzz_upstream_parse.c - libFuzzer target for the upstream response reader (src/h1reader.c,
 * with http1.c's response head parser under it).
 *
 * The first input byte picks a cutting seed; the rest is what an upstream sends (status line,
 * headers, 1xx heads, chunked framing, SSE bodies). Checks: no crash/leak/UB; every data span
 * lies inside the bytes just fed; and fed in one piece or cut into pseudo-random small pieces,
 * the reader produces the same outcome: the same status and headers, the same body bytes, the
 * same end (DONE, ERROR, or still waiting), the same bytes consumed up to DONE, and the same
 * answer at end of input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1reader.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

struct outcome {
    uint64_t head, body;
    size_t body_len, consumed;
    int end, eof_end, heads;
    int reusable;
};

static void run(const char *in, size_t len, uint8_t seed, struct outcome *o)
{
    struct lp_h1reader r;
    lp_h1reader_init(&r);
    memset(o, 0, sizeof *o);
    o->head = o->body = 14695981039346656037ULL;
    o->end = LP_H1R_MORE;
    size_t at = 0;
    uint32_t x = seed;
    while (at < len && o->end == LP_H1R_MORE) {
        size_t n = len - at;
        if (seed) {
            x = x * 1103515245u + 12345u;
            size_t k = 1 + (x >> 16) % 24;
            n = n < k ? n : k;
        }
        size_t off = at, stop = at + n;
        for (;;) {
            size_t used = 0, dlen = 0;
            const char *d = NULL;
            enum lp_h1r_event ev = lp_h1reader_feed(&r, in + off, stop - off, &used, &d, &dlen);
            CHECK(used <= stop - off);
            off += used;
            if (ev == LP_H1R_HEAD) {
                o->heads++;
                int st = lp_h1reader_status(&r);
                o->head = mix(o->head, &st, sizeof st);
                for (size_t i = 0; i < lp_h1reader_header_count(&r); i++) {
                    const char *hn, *hv;
                    lp_h1reader_header_at(&r, i, &hn, &hv);
                    o->head = mix(o->head, hn, strlen(hn) + 1);
                    o->head = mix(o->head, hv, strlen(hv) + 1);
                }
                continue;
            }
            if (ev == LP_H1R_DATA) {
                CHECK(dlen > 0 && d >= in + off - used && d + dlen <= in + off);
                o->body = mix(o->body, d, dlen);
                o->body_len += dlen;
                continue;
            }
            if (ev == LP_H1R_MORE) {
                CHECK(off == stop);
                break;
            }
            o->end = ev;
            o->consumed = off;
            break;
        }
        at = stop;
    }
    o->eof_end = o->end == LP_H1R_MORE ? (int)lp_h1reader_eof(&r) : o->end;
    o->reusable = lp_h1reader_reusable(&r);
    lp_h1reader_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t seed = data[0] | 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct outcome whole, cut;
    run(in, len, 0, &whole);
    run(in, len, seed, &cut);
    CHECK(whole.end == cut.end && whole.eof_end == cut.eof_end);
    CHECK(whole.heads == cut.heads && whole.head == cut.head);
    CHECK(whole.body == cut.body && whole.body_len == cut.body_len);
    CHECK(whole.reusable == cut.reusable);
    if (whole.end == LP_H1R_DONE)
        CHECK(whole.consumed == cut.consumed);
    return 0;
}
