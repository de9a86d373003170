/* fuzz_edge_parse.c - libFuzzer target for the HTTP/1.x request parser (src/http1.h).
 *
 * Checks beyond "no crash": the resumable head scan must find the same end whether the bytes
 * arrive at once or one at a time; a parsed head must satisfy the documented invariants; the
 * chunked decoder must give the same result and the same body fed whole or byte by byte, and
 * never exceed its ceiling.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "util/buf.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static size_t head_end_incremental(const char *buf, size_t size)
{
    size_t scan = 0;
    for (size_t n = 1; n <= size; n++) {
        size_t end = lp_http1_find_head_end(buf, n, &scan);
        if (end)
            return end;
    }
    return 0;
}

static void check_head(const struct lp_http1_request *req)
{
    CHECK(req->method && req->method[0]);
    CHECK(req->path && req->path[0] == '/');
    CHECK(req->minor == 0 || req->minor == 1);
    CHECK(req->n_headers <= LP_HTTP1_MAX_HEADERS);
    CHECK(!(req->chunked && req->content_length >= 0));
    for (size_t i = 0; i < req->n_headers; i++) {
        CHECK(req->headers[i].name[0] != '\0');
        CHECK(strpbrk(req->headers[i].value, "\r\n") == NULL);
        CHECK(lp_http1_header_get(req, req->headers[i].name) != NULL);
    }
}

/* Decode in[0, len) whole and byte by byte; both must agree. */
static void check_chunked(const char *in, size_t len, size_t max)
{
    struct lp_http1_chunked a, b;
    struct lp_buf oa, ob;
    lp_http1_chunked_init(&a);
    lp_http1_chunked_init(&b);
    lp_buf_init(&oa, max);
    lp_buf_init(&ob, max);
    size_t used_a = 0;
    enum lp_status ra = lp_http1_chunked_feed(&a, in, len, &used_a, &oa);
    enum lp_status rb = LP_AGAIN;
    size_t used_b = 0;
    for (size_t i = 0; i < len && rb == LP_AGAIN; i++) {
        size_t u = 0;
        rb = lp_http1_chunked_feed(&b, in + i, 1, &u, &ob);
        used_b += u;
    }
    CHECK(ra == rb);
    CHECK(oa.len == ob.len && oa.len <= max);
    CHECK(oa.len == 0 || memcmp(oa.data, ob.data, oa.len) == 0);
    if (ra == LP_OK)
        CHECK(used_a == used_b);
    if (ra == LP_AGAIN)
        CHECK(used_a == len);
    lp_buf_free(&oa);
    lp_buf_free(&ob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    size_t scan = 0;
    size_t end = lp_http1_find_head_end(buf, size, &scan);
    CHECK(end <= size);
    CHECK(end == head_end_incremental(buf, size));
    if (end) {
        struct lp_http1_request req;
        const char *why = NULL;
        int st = lp_http1_parse_head(buf, end, &req, &why);
        CHECK(why != NULL);
        if (st == 0) {
            check_head(&req);
            if (req.chunked)
                check_chunked((const char *)data + end, size - end, 64);
        } else {
            CHECK(st == 400 || st == 417 || st == 431 || st == 501 || st == 505);
        }
    }
    /* The decoder on its own, with a ceiling derived from the input. */
    check_chunked((const char *)data, size, size ? (size_t)data[0] * 4 + 1 : 1);
    free(buf);
    return 0;
}
