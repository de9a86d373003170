/* test_coding.c - the incremental content-coding decoder: gzip, zlib deflate and raw deflate
 * split at every byte, tiny output windows, truncation at every length, corruption, trailing
 * data, concatenated gzip members, sync-flushed SSE events, the expansion ceiling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "coding.h"

/* A JSON-ish body with some repetition, like a chat completion. */
static char *sample(size_t *len)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    for (int i = 0; i < 60; i++)
        lp_buf_printf(&b,
                      "{\"id\":\"chatcmpl-%d\",\"choices\":[{\"delta\":{\"content\":\"w%d \"}}]}\n",
                      i, i * 7919);
    return lp_buf_steal(&b, len);
}

/* Compress with the given zlib window bits (31 gzip, 15 zlib, -15 raw). */
static unsigned char *compress_bits(const char *in, size_t n, int bits, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, (uLong)n) + 64;
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

/* Feed `in` in pieces of `step` bytes (0: all at once) with an output window of `win` bytes;
 * collect the output. Returns the status of the first failing call, or of finish. */
static enum lp_status decode(enum lp_coding_kind k, const unsigned char *in, size_t n, size_t step,
                             size_t win, struct lp_buf *out, const char **err)
{
    struct lp_coding *c = lp_coding_new(k, 0);
    assert_non_null(c);
    char *w = malloc(win);
    enum lp_status rc = LP_OK;
    size_t off = 0;
    while (rc == LP_OK) {
        size_t piece = step && n - off > step ? step : n - off;
        size_t taken = 0;
        for (;;) {
            size_t used = 0, got = 0;
            rc = lp_coding_feed(c, (const char *)in + off + taken, piece - taken, &used, w, win,
                                &got);
            assert_true(used <= piece - taken);
            assert_true(got <= win);
            taken += used;
            if (got)
                assert_int_equal(lp_buf_append(out, w, got), LP_OK);
            if (rc != LP_OK || (taken == piece && got < win))
                break;
        }
        off += taken;
        if (off == n)
            break;
    }
    if (rc == LP_OK)
        rc = lp_coding_finish(c);
    if (err)
        *err = lp_coding_error(c);
    free(w);
    lp_coding_free(c);
    return rc;
}

static void roundtrip(enum lp_coding_kind k, int bits)
{
    size_t n = 0, zn = 0;
    char *plain = sample(&n);
    unsigned char *z = compress_bits(plain, n, bits, &zn);
    size_t steps[] = {0, 1, 2, 3, 7, 64, 1000};
    size_t wins[] = {1, 5, 4096, 65536};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        for (size_t j = 0; j < sizeof wins / sizeof *wins; j++) {
            struct lp_buf out;
            lp_buf_init(&out, 0);
            assert_int_equal(decode(k, z, zn, steps[i], wins[j], &out, NULL), LP_OK);
            assert_int_equal(out.len, n);
            assert_memory_equal(out.data, plain, n);
            lp_buf_free(&out);
        }
    }
    /* Two pieces, split at every byte. */
    for (size_t cut = 0; cut <= zn; cut++) {
        struct lp_coding *c = lp_coding_new(k, 0);
        struct lp_buf out;
        lp_buf_init(&out, 0);
        assert_int_equal(lp_coding_feed_buf(c, (const char *)z, cut, &out), LP_OK);
        assert_int_equal(lp_coding_feed_buf(c, (const char *)z + cut, zn - cut, &out), LP_OK);
        assert_int_equal(lp_coding_finish(c), LP_OK);
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, plain, n);
        assert_int_equal(lp_coding_total_in(c), zn);
        assert_int_equal(lp_coding_total_out(c), n);
        lp_buf_free(&out);
        lp_coding_free(c);
    }
    free(z);
    free(plain);
}

static void test_gzip_every_split(void **st)
{
    roundtrip(LP_CODING_GZIP, 31);
}

static void test_zlib_deflate_every_split(void **st)
{
    roundtrip(LP_CODING_DEFLATE, 15);
}

static void test_raw_deflate_fallback(void **st)
{
    roundtrip(LP_CODING_DEFLATE, -15);
}

/* Every proper prefix of a compressed body is refused at finish (the empty one is an empty
 * body), never taken for a complete one. */
static void truncated(enum lp_coding_kind k, int bits, const char *want)
{
    size_t n = 0, zn = 0;
    char *plain = sample(&n);
    unsigned char *z = compress_bits(plain, n, bits, &zn);
    for (size_t len = 1; len < zn; len++) {
        struct lp_buf out;
        lp_buf_init(&out, 0);
        const char *err = NULL;
        assert_int_equal(decode(k, z, len, 0, 4096, &out, &err), LP_ERR);
        assert_non_null(err);
        assert_string_equal(err, want);
        assert_true(out.len <= n); /* a cut trailer still yields all the data */
        lp_buf_free(&out);
    }
    struct lp_buf out;
    lp_buf_init(&out, 0);
    assert_int_equal(decode(k, z, 0, 0, 4096, &out, NULL), LP_OK);
    assert_int_equal(out.len, 0);
    lp_buf_free(&out);
    free(z);
    free(plain);
}

static void test_truncated_gzip(void **st)
{
    truncated(LP_CODING_GZIP, 31, "truncated gzip body");
}

static void test_truncated_deflate(void **st)
{
    truncated(LP_CODING_DEFLATE, 15, "truncated deflate body");
    truncated(LP_CODING_DEFLATE, -15, "truncated deflate body");
}

static void test_corrupt(void **st)
{
    size_t n = 0, zn = 0;
    char *plain = sample(&n);
    unsigned char *z = compress_bits(plain, n, 31, &zn);
    const char *err = NULL;
    struct lp_buf out;
    /* Not gzip at all (plain JSON labelled gzip). */
    lp_buf_init(&out, 0);
    assert_int_equal(decode(LP_CODING_GZIP, (const unsigned char *)plain, n, 0, 4096, &out, &err),
                     LP_ERR);
    assert_string_equal(err, "corrupt gzip body");
    lp_buf_free(&out);
    /* A flipped byte anywhere is caught (by the data or by the CRC/length trailer). */
    for (size_t i = 0; i < zn; i += 3) {
        if (i == 3 || (i >= 4 && i < 10))
            continue; /* flags, mtime, xfl, os: ignored by gzip readers */
        unsigned char *bad = malloc(zn);
        memcpy(bad, z, zn);
        bad[i] ^= 0x5a;
        lp_buf_init(&out, 0);
        assert_int_equal(decode(LP_CODING_GZIP, bad, zn, 0, 4096, &out, &err), LP_ERR);
        assert_non_null(err);
        lp_buf_free(&out);
        free(bad);
    }
    /* An error sticks: later calls fail with the same error. */
    struct lp_coding *c = lp_coding_new(LP_CODING_GZIP, 0);
    char w[64];
    size_t used, got;
    assert_int_equal(lp_coding_feed(c, "not gzip", 8, &used, w, sizeof w, &got), LP_ERR);
    assert_int_equal(lp_coding_feed(c, (const char *)z, zn, &used, w, sizeof w, &got), LP_ERR);
    assert_int_equal(lp_coding_finish(c), LP_ERR);
    assert_string_equal(lp_coding_error(c), "corrupt gzip body");
    lp_coding_free(c);
    free(z);
    free(plain);
}

static void test_trailing_and_members(void **st)
{
    size_t n = 0, zn = 0;
    char *plain = sample(&n);
    /* gzip: two concatenated members decode to both contents (RFC 1952). */
    unsigned char *z = compress_bits(plain, n, 31, &zn);
    unsigned char *two = malloc(2 * zn);
    memcpy(two, z, zn);
    memcpy(two + zn, z, zn);
    struct lp_buf out;
    lp_buf_init(&out, 0);
    assert_int_equal(decode(LP_CODING_GZIP, two, 2 * zn, 1, 100, &out, NULL), LP_OK);
    assert_int_equal(out.len, 2 * n);
    lp_buf_free(&out);
    /* ... and a second member cut short is a truncated body. */
    lp_buf_init(&out, 0);
    assert_int_equal(decode(LP_CODING_GZIP, two, zn + 5, 0, 4096, &out, NULL), LP_ERR);
    lp_buf_free(&out);
    /* gzip followed by garbage. */
    memcpy(two + zn, "garbage!", 8);
    const char *err = NULL;
    lp_buf_init(&out, 0);
    assert_int_equal(decode(LP_CODING_GZIP, two, zn + 8, 0, 4096, &out, &err), LP_ERR);
    lp_buf_free(&out);
    free(two);
    free(z);
    /* deflate: anything after the end is refused. */
    z = compress_bits(plain, n, 15, &zn);
    unsigned char *more = malloc(zn + 1);
    memcpy(more, z, zn);
    more[zn] = 'x';
    lp_buf_init(&out, 0);
    assert_int_equal(decode(LP_CODING_DEFLATE, more, zn + 1, 0, 4096, &out, &err), LP_ERR);
    assert_string_equal(err, "data after the end of the deflate body");
    lp_buf_free(&out);
    free(more);
    free(z);
    free(plain);
}

/* SSE: an event compressed with a sync flush decodes completely as soon as its bytes are in,
 * before the stream ends. */
static void test_sync_flushed_events(void **st)
{
    const char *events[] = {"data: {\"a\":1}\n\n", "data: {\"b\":22}\n\n", "data: [DONE]\n\n"};
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    struct lp_coding *c = lp_coding_new(LP_CODING_GZIP, 0);
    for (size_t i = 0; i < 3; i++) {
        unsigned char buf[256];
        z.next_in = (Bytef *)events[i];
        z.avail_in = (uInt)strlen(events[i]);
        z.next_out = buf;
        z.avail_out = sizeof buf;
        assert_int_equal(deflate(&z, i == 2 ? Z_FINISH : Z_SYNC_FLUSH),
                         i == 2 ? Z_STREAM_END : Z_OK);
        size_t zn = sizeof buf - z.avail_out;
        struct lp_buf out;
        lp_buf_init(&out, 0);
        for (size_t b = 0; b < zn; b++) /* one byte at a time */
            assert_int_equal(lp_coding_feed_buf(c, (const char *)buf + b, 1, &out), LP_OK);
        assert_int_equal(out.len, strlen(events[i]));
        assert_memory_equal(out.data, events[i], out.len);
        lp_buf_free(&out);
    }
    assert_int_equal(lp_coding_finish(c), LP_OK);
    deflateEnd(&z);
    lp_coding_free(c);
}

/* A small body that expands enormously is stopped at the ceiling, not decoded to the end. */
static void test_bomb_ceiling(void **st)
{
    size_t n = 64u * 1024 * 1024;
    char *zeros = calloc(1, n);
    size_t zn = 0;
    unsigned char *z = compress_bits(zeros, n, 31, &zn);
    free(zeros);
    assert_true(zn < n / 500);
    struct lp_coding *c = lp_coding_new(LP_CODING_GZIP, 0);
    char w[16384];
    size_t off = 0, total = 0;
    enum lp_status rc = LP_OK;
    while (rc == LP_OK) {
        size_t used = 0, got = 0;
        rc = lp_coding_feed(c, (const char *)z + off, zn - off, &used, w, sizeof w, &got);
        off += used;
        total += got;
        if (rc == LP_OK && off == zn && got < sizeof w)
            break;
    }
    assert_int_equal(rc, LP_ERR);
    assert_non_null(strstr(lp_coding_error(c), "compression bomb"));
    /* Output stays within the ratio (plus the slack and one window) of the input consumed. */
    assert_true(total <= (size_t)LP_CODING_DEFAULT_RATIO * off + LP_CODING_SLACK + sizeof w);
    lp_coding_free(c);
    /* A caller's buffer ceiling applies in feed_buf. */
    c = lp_coding_new(LP_CODING_GZIP, 1000000);
    struct lp_buf out;
    lp_buf_init(&out, 1024 * 1024);
    assert_int_equal(lp_coding_feed_buf(c, (const char *)z, zn, &out), LP_ERR_TOOBIG);
    assert_true(out.len <= 1024 * 1024);
    lp_buf_free(&out);
    lp_coding_free(c);
    free(z);
}

static void test_kind_of(void **st)
{
    assert_int_equal(lp_coding_kind_of(NULL), LP_CODING_IDENTITY);
    assert_int_equal(lp_coding_kind_of(""), LP_CODING_IDENTITY);
    assert_int_equal(lp_coding_kind_of(" Identity "), LP_CODING_IDENTITY);
    assert_int_equal(lp_coding_kind_of("gzip"), LP_CODING_GZIP);
    assert_int_equal(lp_coding_kind_of("X-GZIP"), LP_CODING_GZIP);
    assert_int_equal(lp_coding_kind_of("deflate"), LP_CODING_DEFLATE);
    assert_int_equal(lp_coding_kind_of("identity, gzip"), LP_CODING_GZIP);
    assert_int_equal(lp_coding_kind_of("gzip, gzip"), LP_CODING_UNSUPPORTED);
    assert_int_equal(lp_coding_kind_of("deflate, gzip"), LP_CODING_UNSUPPORTED);
    assert_int_equal(lp_coding_kind_of("br"), LP_CODING_UNSUPPORTED);
    assert_int_equal(lp_coding_kind_of("zstd"), LP_CODING_UNSUPPORTED);
    assert_int_equal(lp_coding_kind_of("gzipx"), LP_CODING_UNSUPPORTED);
    assert_null(lp_coding_new(LP_CODING_IDENTITY, 0));
    assert_null(lp_coding_new(LP_CODING_UNSUPPORTED, 0));
    assert_string_equal(lp_coding_kind_name(LP_CODING_GZIP), "gzip");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_every_split),
        cmocka_unit_test(test_zlib_deflate_every_split),
        cmocka_unit_test(test_raw_deflate_fallback),
        cmocka_unit_test(test_truncated_gzip),
        cmocka_unit_test(test_truncated_deflate),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_trailing_and_members),
        cmocka_unit_test(test_sync_flushed_events),
        cmocka_unit_test(test_bomb_ceiling),
        cmocka_unit_test(test_kind_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
