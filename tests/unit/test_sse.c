/* test_sse.c - the incremental SSE parser: chunking independence on recorded OpenAI and
 * Anthropic streams, line-ending variants, field rules, the ceiling and raw-byte exactness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

/* ~560 bytes as api.openai.com streams a chat completion with include_usage, plus a keep-alive
 * comment the way some relays interleave them. */
static const char openai_stream[] =
    "data: {\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\xe4\xb8"
    "\xad\"},\"finish_reason\":null}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"stop\"}]}\n\n"
    "data: {\"id\":\"chatcmpl-9x\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
    "\"completion_tokens\":2,\"total_tokens\":11}}\n\n"
    "data: [DONE]\n\n";

/* An Anthropic Messages stream (event + data pairs, a ping, a multi-byte delta). */
static const char anthropic_stream[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-6\",\"content\":[],\"usage\":"
    "{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Hi \xf0\x9f\x98\x80\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":"
    "{\"output_tokens\":3}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* An owned copy of one event, for comparing runs. */
struct rec {
    char *event, *data, *raw;
    size_t event_len, data_len, raw_len;
    bool comment, has_data;
};

struct recs {
    struct rec v[512];
    size_t n;
    size_t pending;    /* lp_sse_pending after the last feed */
    enum lp_status rc; /* first non-OK feed status */
};

static char *dup_mem(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void take(struct lp_sse_parser *p, struct recs *r, bool at_eof)
{
    struct lp_sse_event ev;
    while ((at_eof ? lp_sse_finish(p, &ev) : lp_sse_next(p, &ev)) == LP_OK) {
        assert_true(r->n < 512);
        struct rec *x = &r->v[r->n++];
        x->event = dup_mem(ev.event, ev.event_len);
        x->event_len = ev.event_len;
        x->data = dup_mem(ev.data, ev.data_len);
        x->data_len = ev.data_len;
        x->raw = dup_mem(ev.raw, ev.raw_len);
        x->raw_len = ev.raw_len;
        x->comment = ev.is_comment_only;
        x->has_data = ev.has_data;
    }
}

/* Parse `in` fed in chunks ending at the offsets cuts[0..ncuts) (ascending), then the rest. */
static void run(const char *in, size_t len, const size_t *cuts, size_t ncuts, size_t max,
                struct recs *r)
{
    struct lp_sse_parser p;
    lp_sse_init(&p, max);
    memset(r, 0, sizeof *r);
    r->rc = LP_OK;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        enum lp_status rc = lp_sse_feed(&p, in + at, end - at);
        if (rc != LP_OK && r->rc == LP_OK)
            r->rc = rc;
        take(&p, r, false);
        at = end;
    }
    take(&p, r, true);
    r->pending = lp_sse_pending(&p);
    lp_sse_free(&p);
}

static void recs_free(struct recs *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].event);
        free(r->v[i].data);
        free(r->v[i].raw);
    }
    r->n = 0;
}

static void assert_same(const struct recs *a, const struct recs *b, const char *what, size_t at)
{
    if (a->n != b->n)
        fail_msg("%s %zu: %zu events vs %zu", what, at, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const struct rec *x = &a->v[i], *y = &b->v[i];
        if (x->event_len != y->event_len || memcmp(x->event, y->event, x->event_len) ||
            x->data_len != y->data_len || memcmp(x->data, y->data, x->data_len) ||
            x->raw_len != y->raw_len || memcmp(x->raw, y->raw, x->raw_len) ||
            x->comment != y->comment || x->has_data != y->has_data)
            fail_msg("%s %zu: event %zu differs", what, at, i);
    }
    assert_int_equal(a->pending, b->pending);
}

/* Concatenating every event's raw bytes gives the input back. */
static void assert_raw_concat(const struct recs *r, const char *in, size_t len)
{
    size_t at = 0;
    for (size_t i = 0; i < r->n; i++) {
        assert_true(at + r->v[i].raw_len <= len);
        assert_memory_equal(in + at, r->v[i].raw, r->v[i].raw_len);
        at += r->v[i].raw_len;
    }
    assert_int_equal(at, len);
}

/* Every single split point, byte-at-a-time, and pseudo-random chunkings give identical events. */
static void check_chunkings(const char *in, size_t len)
{
    struct recs whole, other;
    run(in, len, NULL, 0, 0, &whole);
    assert_int_equal(whole.rc, LP_OK);
    assert_int_equal(whole.pending, 0);
    assert_raw_concat(&whole, in, len);
    for (size_t cut = 0; cut <= len; cut++) {
        run(in, len, &cut, 1, 0, &other);
        assert_same(&whole, &other, "split", cut);
        recs_free(&other);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    run(in, len, cuts, len, 0, &other);
    assert_same(&whole, &other, "bytewise", 0);
    recs_free(&other);
    uint64_t x = 42;
    for (size_t trial = 0; trial < 200; trial++) {
        size_t n = 0;
        for (size_t at = 0;;) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            at += 1 + (size_t)((x >> 33) % 17);
            if (at >= len)
                break;
            cuts[n++] = at;
        }
        run(in, len, cuts, n, 0, &other);
        assert_same(&whole, &other, "random", trial);
        recs_free(&other);
    }
    free(cuts);
    recs_free(&whole);
}

static void test_openai_stream(void **state)
{
    (void)state;
    struct recs r;
    run(openai_stream, sizeof openai_stream - 1, NULL, 0, 0, &r);
    assert_int_equal(r.n, 6);
    assert_int_equal(r.v[0].event_len, 0);
    assert_true(r.v[0].has_data);
    assert_memory_equal(r.v[0].data, "{\"id\":\"chatcmpl-9x\"", 19);
    assert_true(r.v[2].comment);
    assert_false(r.v[2].has_data);
    assert_string_equal(r.v[2].raw, ": keep-alive\n\n");
    assert_string_equal(r.v[5].data, "[DONE]");
    assert_false(r.v[5].comment);
    recs_free(&r);
    check_chunkings(openai_stream, sizeof openai_stream - 1);
}

static void test_anthropic_stream(void **state)
{
    (void)state;
    struct recs r;
    run(anthropic_stream, sizeof anthropic_stream - 1, NULL, 0, 0, &r);
    assert_int_equal(r.n, 7);
    assert_string_equal(r.v[0].event, "message_start");
    assert_string_equal(r.v[2].event, "ping");
    assert_string_equal(r.v[2].data, "{\"type\": \"ping\"}");
    assert_string_equal(r.v[6].event, "message_stop");
    assert_string_equal(r.v[6].data, "{\"type\":\"message_stop\"}");
    assert_string_equal(r.v[6].raw, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    recs_free(&r);
    check_chunkings(anthropic_stream, sizeof anthropic_stream - 1);
}

/* Replace every "\n" with `eol`. */
static char *with_eol(const char *in, const char *eol, size_t *len)
{
    size_t el = strlen(eol), n = 0;
    char *out = malloc(strlen(in) * el + 1);
    for (const char *p = in; *p; p++) {
        if (*p == '\n') {
            memcpy(out + n, eol, el);
            n += el;
        } else
            out[n++] = *p;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

/* CRLF and bare-CR streams give the same fields as LF ones, and still survive every split. */
static void test_line_endings(void **state)
{
    (void)state;
    const char *eols[] = {"\r\n", "\r"};
    struct recs lf;
    run(anthropic_stream, sizeof anthropic_stream - 1, NULL, 0, 0, &lf);
    for (size_t e = 0; e < 2; e++) {
        size_t len;
        char *in = with_eol(anthropic_stream, eols[e], &len);
        struct recs r;
        run(in, len, NULL, 0, 0, &r);
        assert_int_equal(r.n, lf.n);
        for (size_t i = 0; i < r.n; i++) {
            assert_string_equal(r.v[i].event, lf.v[i].event);
            assert_string_equal(r.v[i].data, lf.v[i].data);
        }
        assert_raw_concat(&r, in, len);
        recs_free(&r);
        check_chunkings(in, len);
        free(in);
    }
    recs_free(&lf);
    /* mixed endings in one stream */
    const char mixed[] = "event: a\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\r";
    struct recs r;
    run(mixed, sizeof mixed - 1, NULL, 0, 0, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].event, "a");
    assert_string_equal(r.v[0].data, "1\n2");
    assert_string_equal(r.v[1].data, "3");
    recs_free(&r);
    check_chunkings(mixed, sizeof mixed - 1);
}

struct field_case {
    const char *in;
    const char *event, *data;
    bool comment, has_data;
};

static void test_field_rules(void **state)
{
    (void)state;
    static const struct field_case rows[] = {
        {"data: a\ndata: b\ndata:\ndata:c\n\n", "", "a\nb\n\nc", false, true},
        {"data:  two spaces\n\n", "", " two spaces", false, true},
        {"data:no space\n\n", "", "no space", false, true},
        {"data\n\n", "", "", false, true},
        {"data:\n\n", "", "", false, true},
        {"data\ndata\n\n", "", "\n", false, true},
        {"event: x\nevent: y\ndata: d\n\n", "y", "d", false, true},
        {"event\ndata: d\n\n", "", "d", false, true},
        {"event: only\n\n", "only", "", false, false},
        {"id: 7\nretry: 100\ndata: d\n\n", "", "d", false, true},
        {"id: 7\n\n", "", "", false, false},
        {"unknown: z\n\n", "", "", false, false},
        {"Data: x\n\n", "", "", false, false}, /* field names are case-sensitive */
        {": ping\n\n", "", "", true, false},
        {":\n:x\n\n", "", "", true, false},
        {": c\ndata: after comment\n: c2\n\n", "", "after comment", false, true},
        {"data: a:b: c\n\n", "", "a:b: c", false, true},
        {"data: {\"x\":\"\xe4\xb8\xad\"}\n\n", "", "{\"x\":\"\xe4\xb8\xad\"}", false, true},
        {"\n", "", "", true, false}, /* a stray blank line is an empty, comment-only event */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct recs r;
        run(rows[i].in, strlen(rows[i].in), NULL, 0, 0, &r);
        if (r.n != 1)
            fail_msg("row %zu: %zu events", i, r.n);
        if (strcmp(r.v[0].event, rows[i].event) || strcmp(r.v[0].data, rows[i].data) ||
            r.v[0].comment != rows[i].comment || r.v[0].has_data != rows[i].has_data)
            fail_msg("row %zu: event '%s' data '%s' comment %d has_data %d", i, r.v[0].event,
                     r.v[0].data, r.v[0].comment, r.v[0].has_data);
        assert_string_equal(r.v[0].raw, rows[i].in);
        recs_free(&r);
        check_chunkings(rows[i].in, strlen(rows[i].in));
    }
}

static void test_bom(void **state)
{
    (void)state;
    const char in[] = "\xef\xbb\xbf"
                      "data: x\n\n\xef\xbb\xbf"
                      "data: y\n\n";
    struct recs r;
    run(in, sizeof in - 1, NULL, 0, 0, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.v[0].data, "x");
    assert_memory_equal(r.v[0].raw,
                        "\xef\xbb\xbf"
                        "data: x\n\n",
                        12); /* BOM kept in raw */
    /* only at stream start: later it is part of an unknown field name */
    assert_false(r.v[1].has_data);
    assert_false(r.v[1].comment);
    recs_free(&r);
    check_chunkings(in, sizeof in - 1);
    /* a stream that merely starts like a BOM */
    const char in2[] = "\xef"
                       "data: x\n\n";
    run(in2, sizeof in2 - 1, NULL, 0, 0, &r);
    assert_int_equal(r.n, 1);
    assert_false(r.v[0].has_data);
    recs_free(&r);
    check_chunkings(in2, sizeof in2 - 1);
}

static void test_blank_lines_and_pending(void **state)
{
    (void)state;
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    lp_sse_init(&p, 0);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    assert_int_equal(lp_sse_pending(&p), 0);
    assert_int_equal(lp_sse_feed(&p, "\n\ndata: x\n\ndata: par", 20), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.raw_len, 1);
    assert_true(ev.is_comment_only);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.raw_len, 1);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_memory_equal(ev.data, "x", 1);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    assert_int_equal(lp_sse_pending(&p), 9);            /* "data: par" */
    assert_int_equal(lp_sse_finish(&p, &ev), LP_AGAIN); /* ended mid-event */
    assert_int_equal(lp_sse_feed(&p, "tial\n", 5), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    assert_int_equal(lp_sse_feed(&p, "\n", 1), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.data_len, 7);
    assert_memory_equal(ev.data, "partial", 7);
    assert_int_equal(lp_sse_pending(&p), 0);
    lp_sse_free(&p);
    lp_sse_free(&p); /* twice is safe */
}

/* A CR that may be half of a CRLF is held until the next byte (or lp_sse_finish). */
static void test_trailing_cr(void **state)
{
    (void)state;
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    lp_sse_init(&p, 0);
    assert_int_equal(lp_sse_feed(&p, "data: x\r\r", 9), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    assert_int_equal(lp_sse_pending(&p), 9);
    assert_int_equal(lp_sse_feed(&p, "\n", 1), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.raw_len, 10);
    assert_int_equal(lp_sse_feed(&p, "data: y\r\r", 9), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    assert_int_equal(lp_sse_finish(&p, &ev), LP_OK);
    assert_int_equal(ev.raw_len, 9);
    assert_memory_equal(ev.data, "y", 1);
    assert_int_equal(lp_sse_pending(&p), 0);
    lp_sse_free(&p);
}

static void test_ceiling(void **state)
{
    (void)state;
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    char big[200];
    memset(big, 'a', sizeof big);
    memcpy(big, "data: ", 6);

    /* an event of exactly the ceiling (64 bytes incl. "\n\n") is fine */
    lp_sse_init(&p, 64);
    assert_int_equal(lp_sse_feed(&p, big, 62), LP_OK);
    assert_int_equal(lp_sse_feed(&p, "\n\n", 2), LP_OK);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.raw_len, 64);
    /* an incomplete one growing past it is refused, and the parser stays failed */
    assert_int_equal(lp_sse_feed(&p, big, 60), LP_OK);
    assert_int_equal(lp_sse_feed(&p, big + 6, 5), LP_ERR_TOOBIG);
    assert_int_equal(lp_sse_feed(&p, "\n\n", 2), LP_ERR_TOOBIG);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    lp_sse_free(&p);

    /* a complete but oversized event inside one chunk is refused too, before buffering;
     * events already complete before the failure can still be taken */
    lp_sse_init(&p, 64);
    assert_int_equal(lp_sse_feed(&p, "data: ok\n\n", 10), LP_OK);
    char chunk[300];
    size_t n = 0;
    memcpy(chunk, big, 100);
    n = 100;
    memcpy(chunk + n, "\n\ndata: z\n\n", 11);
    n += 11;
    assert_int_equal(lp_sse_feed(&p, chunk, n), LP_ERR_TOOBIG);
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_memory_equal(ev.data, "ok", 2);
    assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    lp_sse_free(&p);

    /* many small events in one big chunk are fine even though the chunk exceeds the ceiling */
    lp_sse_init(&p, 64);
    char many[1300];
    n = 0;
    for (int i = 0; i < 100; i++) {
        memcpy(many + n, "data: 0123\n\n", 12);
        n += 12;
    }
    assert_int_equal(lp_sse_feed(&p, many, n), LP_OK);
    int got = 0;
    while (lp_sse_next(&p, &ev) == LP_OK)
        got++;
    assert_int_equal(got, 100);
    lp_sse_free(&p);
}

/* The buffer is compacted lazily: a long stream fed in small chunks does not grow it. */
static void test_no_growth_over_long_stream(void **state)
{
    (void)state;
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    lp_sse_init(&p, 4096);
    const char *e =
        "event: content_block_delta\ndata: {\"type\":\"text_delta\",\"text\":\"x\"}\n\n";
    size_t el = strlen(e);
    size_t events = 0;
    for (int i = 0; i < 20000; i++) {
        /* odd chunk sizes so events straddle feeds */
        size_t at = 0;
        while (at < el) {
            size_t n = el - at < 13 ? el - at : 13;
            assert_int_equal(lp_sse_feed(&p, e + at, n), LP_OK);
            at += n;
            while (lp_sse_next(&p, &ev) == LP_OK) {
                assert_int_equal(ev.raw_len, el);
                events++;
            }
        }
    }
    assert_int_equal(events, 20000);
    assert_true(p.buf.cap <= 1024);
    lp_sse_free(&p);
}

/* A large event arriving in many chunks is parsed once (and correctly) under a big ceiling. */
static void test_large_event(void **state)
{
    (void)state;
    size_t n = 1 << 20;
    char *in = malloc(n + 64);
    size_t len = (size_t)snprintf(in, n + 64, "data: ");
    for (size_t i = 0; i < n; i++)
        in[len++] = (char)('a' + i % 26);
    memcpy(in + len, "\ndata: tail\n\n", 13);
    len += 13;
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    lp_sse_init(&p, 2 << 20);
    for (size_t at = 0; at < len; at += 4096) {
        size_t k = len - at < 4096 ? len - at : 4096;
        assert_int_equal(lp_sse_feed(&p, in + at, k), LP_OK);
        if (at + k < len)
            assert_int_equal(lp_sse_next(&p, &ev), LP_AGAIN);
    }
    assert_int_equal(lp_sse_next(&p, &ev), LP_OK);
    assert_int_equal(ev.data_len, n + 5);
    assert_memory_equal(ev.data, in + 6, n);
    assert_memory_equal(ev.data + n, "\ntail", 5);
    assert_int_equal(ev.raw_len, len);
    lp_sse_free(&p);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_field_rules),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_blank_lines_and_pending),
        cmocka_unit_test(test_trailing_cr),
        cmocka_unit_test(test_ceiling),
        cmocka_unit_test(test_no_growth_over_long_stream),
        cmocka_unit_test(test_large_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
