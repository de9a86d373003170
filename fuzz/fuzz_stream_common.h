/* fuzz_stream_common.h - the shared driver of fuzz_stream_o2a.c and fuzz_stream_a2o.c (header-only
 * so each target stays one .c file for the corpus replay build). */
#ifndef LP_FUZZ_STREAM_COMMON_H
#define LP_FUZZ_STREAM_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/stream_xlat.h"
#include "sse.h"

/* Output written by one translator call must be whole SSE events. */
static void check_whole_events(const struct lp_buf *out, size_t before)
{
    if (out->len > before && (out->len - before < 2 || memcmp(out->data + out->len - 2, "\n\n", 2)))
        abort();
}

static bool feed_event(struct lp_stream_xlat *x, struct lp_stream_tap *taps, enum lp_proto up,
                       const struct lp_sse_event *ev, struct lp_buf *out)
{
    for (int i = 0; i < 2; i++)
        lp_stream_tap_event(&taps[i], ev->event, ev->event_len, ev->data, ev->data_len);
    size_t before = out->len;
    enum lp_status rc =
        lp_stream_xlat_event(x, ev->event, ev->event_len, ev->data, ev->data_len, out);
    check_whole_events(out, before);
    if (rc == LP_DECLINED) {
        char type[64], msg[128];
        if (!lp_sse_event_is_error(up, ev->event, ev->event_len, ev->data, ev->data_len))
            abort(); /* the translator and the classifier must agree */
        lp_sse_event_error_info(up, ev->data, ev->data_len, type, sizeof type, msg, sizeof msg);
        lp_stream_xlat_error(x, type, msg, out);
    } else if (rc != LP_OK) {
        lp_stream_xlat_error(x, "api_error", "bad upstream stream", out);
    }
    /* Keep memory flat over long inputs: the client would have been sent these bytes. */
    if (out->len > 65536)
        lp_buf_reset(out);
    return rc == LP_OK;
}

static void fuzz_stream_run(enum lp_proto up, enum lp_proto client, const uint8_t *data,
                            size_t size)
{
    if (size < 1)
        return;
    bool include_usage = data[0] & 1;
    uint64_t seed = data[0] >> 1;
    struct lp_stream_xlat *x = lp_stream_xlat_new(up, client, "fuzz", include_usage, "fz");
    struct lp_stream_tap taps[2];
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    struct lp_buf out;
    lp_stream_tap_init(&taps[0], up, false);
    lp_stream_tap_init(&taps[1], up, true);
    lp_sse_init(&p, 1 << 20);
    lp_buf_init(&out, 8u << 20);
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    bool alive = true;
    for (size_t off = 0; off < len && alive;) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = 1 + (size_t)((seed >> 33) % 97);
        if (n > len - off)
            n = len - off;
        if (lp_sse_feed(&p, in + off, n) != LP_OK)
            break;
        off += n;
        while (alive && lp_sse_next(&p, &ev) == LP_OK)
            alive = feed_event(x, taps, up, &ev, &out);
    }
    while (alive && lp_sse_finish(&p, &ev) == LP_OK)
        alive = feed_event(x, taps, up, &ev, &out);
    if (alive && lp_stream_xlat_eof(x, &out) != LP_OK)
        lp_stream_xlat_error(x, "api_error", "upstream ended early", &out);
    lp_buf_free(&out);
    lp_sse_free(&p);
    lp_stream_xlat_free(x);
}

#endif
