/* test_h1reader.c - the incremental upstream response reader: every framing (content-length,
 * chunked with extensions and trailers, close-delimited, 1xx, 204/304), the refusals, and the
 * same result however the bytes are cut (one byte at a time, and two pieces cut at every
 * position). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "h1reader.h"

struct result {
    int status;
    int minor;
    size_t n_headers;
    char first_name[64], first_value[64];
    char body[8192];
    size_t body_len;
    enum lp_h1r_event end; /* DONE, ERROR, or MORE when the input ran out */
    size_t consumed;       /* input bytes consumed up to DONE */
    bool reusable;
    int heads;
};

/* Feed `in` in pieces ending at the positions of cuts[] (ascending), then `eof` if asked. */
static void run(const char *in, size_t len, const size_t *cuts, size_t n_cuts, bool eof,
                struct result *out)
{
    struct lp_h1reader r;
    lp_h1reader_init(&r);
    memset(out, 0, sizeof *out);
    out->end = LP_H1R_MORE;
    size_t start = 0;
    for (size_t k = 0; k <= n_cuts && out->end == LP_H1R_MORE; k++) {
        size_t stop = k < n_cuts ? cuts[k] : len;
        size_t off = start;
        for (;;) {
            size_t used = 0, dlen = 0;
            const char *data = NULL;
            enum lp_h1r_event ev = lp_h1reader_feed(&r, in + off, stop - off, &used, &data, &dlen);
            assert_true(used <= stop - off);
            off += used;
            if (ev == LP_H1R_HEAD) {
                out->heads++;
                out->status = lp_h1reader_status(&r);
                out->minor = lp_h1reader_minor(&r);
                out->n_headers = lp_h1reader_header_count(&r);
                if (out->n_headers) {
                    const char *n, *v;
                    lp_h1reader_header_at(&r, 0, &n, &v);
                    snprintf(out->first_name, sizeof out->first_name, "%s", n);
                    snprintf(out->first_value, sizeof out->first_value, "%s", v);
                }
                continue;
            }
            if (ev == LP_H1R_DATA) {
                assert_true(data >= in + off - used && data + dlen <= in + off);
                assert_true(out->body_len + dlen <= sizeof out->body);
                memcpy(out->body + out->body_len, data, dlen);
                out->body_len += dlen;
                continue;
            }
            if (ev == LP_H1R_MORE) {
                assert_int_equal(off, stop);
                break;
            }
            out->end = ev;
            out->consumed = off;
            break;
        }
        start = stop;
    }
    if (out->end == LP_H1R_MORE && eof) {
        out->end = lp_h1reader_eof(&r);
        out->consumed = len;
    }
    out->reusable = lp_h1reader_reusable(&r);
    lp_h1reader_free(&r);
}

/* The reference (one piece), then one byte at a time, then two pieces at every cut: all equal. */
static void check_cuts(const char *in, size_t len, bool eof, struct result *ref)
{
    run(in, len, NULL, 0, eof, ref);
    size_t *every = malloc((len + 1) * sizeof *every);
    for (size_t i = 0; i < len; i++)
        every[i] = i + 1;
    struct result *r = malloc(sizeof *r);
    run(in, len, every, len ? len - 1 : 0, eof, r);
    assert_int_equal(r->end, ref->end);
    assert_int_equal(r->status, ref->status);
    assert_int_equal(r->body_len, ref->body_len);
    assert_memory_equal(r->body, ref->body, ref->body_len);
    if (ref->end == LP_H1R_DONE)
        assert_int_equal(r->consumed, ref->consumed);
    for (size_t cut = 1; cut < len; cut++) {
        run(in, len, &cut, 1, eof, r);
        assert_int_equal(r->end, ref->end);
        assert_int_equal(r->status, ref->status);
        assert_int_equal(r->n_headers, ref->n_headers);
        assert_int_equal(r->body_len, ref->body_len);
        assert_memory_equal(r->body, ref->body, ref->body_len);
        assert_int_equal(r->reusable, ref->reusable);
        if (ref->end == LP_H1R_DONE)
            assert_int_equal(r->consumed, ref->consumed);
    }
    free(r);
    free(every);
}

#define S(lit) lit, sizeof(lit) - 1

static void test_content_length(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             "Content-Length: 11\r\n\r\n{\"ok\":true}";
    struct result r;
    check_cuts(S(in), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.n_headers, 2);
    assert_string_equal(r.first_name, "Content-Type");
    assert_string_equal(r.first_value, "application/json");
    assert_int_equal(r.body_len, 11);
    assert_memory_equal(r.body, "{\"ok\":true}", 11);
    assert_true(r.reusable);
    assert_int_equal(r.consumed, sizeof in - 1);
}

static void test_leftover_not_consumed(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiJUNK";
    struct result r;
    run(S(in), NULL, 0, false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.consumed, sizeof in - 1 - 4);
}

static void test_chunked_extensions_trailers(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5;name=val\r\nhello\r\n"
                             "6\r\n world\r\n"
                             "A \r\n0123456789\r\n"
                             "0\r\nX-Trailer: 1\r\nX-Other: two\r\n\r\n";
    struct result r;
    check_cuts(S(in), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.body_len, 21);
    assert_memory_equal(r.body, "hello world0123456789", 21);
    assert_true(r.reusable);
    assert_int_equal(r.consumed, sizeof in - 1);
}

static void test_chunked_bare_lf(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
    struct result r;
    check_cuts(S(in), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.body_len, 3);
}

static void test_sse_stream_chunked(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n"
                             "f\r\ndata: {\"a\":1}\n\n\r\n"
                             "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    struct result r;
    check_cuts(S(in), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.body_len, 29);
    assert_memory_equal(r.body, "data: {\"a\":1}\n\ndata: [DONE]\n\n", 29);
}

static void test_close_delimited(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end";
    struct result r;
    check_cuts(S(in), true, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.body_len, 13);
    assert_false(r.reusable);
}

static void test_interim_responses_skipped(void **state)
{
    static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                             "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
    struct result r;
    check_cuts(S(in), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.heads, 1);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.first_name, "Content-Length");
    assert_int_equal(r.body_len, 1);
}

static void test_no_body_statuses(void **state)
{
    static const char a[] = "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
    static const char b[] = "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n";
    static const char c[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct result r;
    check_cuts(S(a), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.body_len, 0);
    assert_true(r.reusable);
    check_cuts(S(b), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
    assert_int_equal(r.status, 304);
    check_cuts(S(c), false, &r);
    assert_int_equal(r.end, LP_H1R_DONE);
}

static void test_keep_alive_rules(void **state)
{
    static const char a[] = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    static const char b[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    static const char c[] =
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    struct result r;
    run(S(a), NULL, 0, false, &r);
    assert_false(r.reusable);
    run(S(b), NULL, 0, false, &r);
    assert_false(r.reusable);
    assert_int_equal(r.minor, 0);
    run(S(c), NULL, 0, false, &r);
    assert_true(r.reusable);
}

static void expect_error(const char *in, size_t len, bool eof)
{
    struct result r;
    check_cuts(in, len, eof, &r);
    assert_int_equal(r.end, LP_H1R_ERROR);
}

static void test_refusals(void **state)
{
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
                 false);
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"), false);
    expect_error(S("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                 false);
    expect_error(S("HTTP/2 200 OK\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 20 OK\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\n folded: x\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"), false);
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1234567890123456\r\n"),
                 false);
    expect_error(S("junk\r\n\r\n"), false);
}

static void test_cut_short(void **state)
{
    struct result r;
    /* EOF mid-body, mid-head, mid-chunks, before anything. */
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), true);
    expect_error(S("HTTP/1.1 200 OK\r\nContent-Le"), true);
    expect_error(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"), true);
    run("", 0, NULL, 0, true, &r);
    assert_int_equal(r.end, LP_H1R_ERROR);
    /* The data that did arrive was delivered. */
    run(S("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), NULL, 0, true, &r);
    assert_int_equal(r.body_len, 3);
}

static void test_started_flag(void **state)
{
    struct lp_h1reader r;
    lp_h1reader_init(&r);
    assert_false(lp_h1reader_started(&r));
    assert_int_equal(lp_h1reader_eof(&r), LP_H1R_ERROR);
    assert_false(lp_h1reader_started(&r));
    lp_h1reader_free(&r);
    lp_h1reader_init(&r);
    size_t used, dlen;
    const char *d;
    assert_int_equal(lp_h1reader_feed(&r, "HTTP", 4, &used, &d, &dlen), LP_H1R_MORE);
    assert_true(lp_h1reader_started(&r));
    lp_h1reader_free(&r);
}

static void test_head_too_large(void **state)
{
    size_t n = LP_H1R_MAX_HEAD + 100;
    char *in = malloc(n);
    memcpy(in, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(in + 20, 'a', n - 20);
    struct lp_h1reader r;
    lp_h1reader_init(&r);
    size_t off = 0, used, dlen;
    const char *d;
    enum lp_h1r_event ev = LP_H1R_MORE;
    while (ev == LP_H1R_MORE && off < n) {
        ev = lp_h1reader_feed(&r, in + off, 1000 < n - off ? 1000 : n - off, &used, &d, &dlen);
        off += used;
    }
    assert_int_equal(ev, LP_H1R_ERROR);
    assert_true(off <= LP_H1R_MAX_HEAD);
    lp_h1reader_free(&r);
    free(in);
}

static void test_many_headers(void **state)
{
    char in[LP_H1R_MAX_HEADERS * 16 + 128];
    size_t n = (size_t)snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= LP_H1R_MAX_HEADERS; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(in + n, sizeof in - n, "\r\n");
    struct result r;
    run(in, n, NULL, 0, false, &r);
    assert_int_equal(r.end, LP_H1R_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_leftover_not_consumed),
        cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_chunked_bare_lf),
        cmocka_unit_test(test_sse_stream_chunked),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_interim_responses_skipped),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cut_short),
        cmocka_unit_test(test_started_flag),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_many_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
