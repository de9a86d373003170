/* http1.h - a pure, incremental HTTP/1.x parser (no sockets, no allocation).
 *
 * Used by the edge (src/edge.c) for requests, by the upstream response reader (src/h1reader.c)
 * for response heads (lp_http1_parse_response_head), and fed directly by the fuzz targets.
 * Two pieces for requests:
 *
 * 1. The request head. lp_http1_find_head_end() scans bytes as they arrive (resumable through a
 *    scan cursor) for the blank line that ends the head; lp_http1_parse_head() then parses the
 *    complete head IN PLACE: it writes NULs into the caller's buffer and the result points into
 *    it (method, path, query, header names and values), so parsing allocates nothing and the
 *    buffer must outlive the result.
 * 2. A chunked transfer-coding decoder, a byte state machine that consumes every byte it is given
 *    (it never needs the caller to keep unconsumed input) and appends the data to a struct lp_buf
 *    whose ceiling is the body limit.
 *
 * Strictness (request smuggling and garbage are refused, not guessed at): obs-fold, bare CR, NUL,
 * whitespace before ':', non-token names, control characters in values, duplicate
 * Content-Length, Content-Length with Transfer-Encoding, and non-origin-form targets are errors.
 * Lines may end in CRLF or a bare LF (as nginx accepts).
 */
#ifndef LP_HTTP1_H
#define LP_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "util/buf.h"

#define LP_HTTP1_MAX_HEADERS 100

struct lp_http1_header {
    char *name;  /* as sent, NUL-terminated in place */
    char *value; /* leading/trailing whitespace trimmed, NUL-terminated in place */
};

struct lp_http1_request {
    char *method; /* NULL until the request line parsed */
    char *path;   /* raw origin-form path without the query; NULL until parsed */
    char *query;  /* raw query without '?', NULL if the target had no '?' */
    int minor;    /* HTTP/1.<minor>: 0 or 1 (1.2+ is treated as 1.1) */
    size_t n_headers;
    struct lp_http1_header headers[LP_HTTP1_MAX_HEADERS];
    /* Framing and connection semantics derived from the headers. */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* 1.1 unless "Connection: close"; 1.0 only with "keep-alive" */
    bool expect_continue;   /* "Expect: 100-continue" */
};

/* Look for the end of a request head (the empty line) in buf[0, len). *scan is a resume cursor:
 * set it to 0 for a new head and pass it back unchanged with the same buffer grown by new bytes;
 * the scan then does not revisit old bytes. Returns the head length including the final line
 * break, or 0 if the head is not complete yet. Never reads outside buf[0, len). */
size_t lp_http1_find_head_end(const char *buf, size_t len, size_t *scan);

/* Parse a complete head buf[0, len) (len as returned by lp_http1_find_head_end, so buf[len-1] is
 * '\n'), in place: buf is modified and *req points into it afterwards. Returns 0 on success, or
 * the HTTP status to refuse the request with and sets *reason to a static string:
 *   400 malformed syntax, bad Content-Length, duplicate Content-Length or Host,
 *       Content-Length with Transfer-Encoding;
 *   417 an Expect other than 100-continue;  431 more than LP_HTTP1_MAX_HEADERS headers;
 *   501 a Transfer-Encoding other than exactly "chunked";  505 an HTTP major version other than 1.
 * On failure *req keeps what was parsed before the error (method/path may be NULL). */
int lp_http1_parse_head(char *buf, size_t len, struct lp_http1_request *req, const char **reason);

/* Parse only the request line in line[0, len) (without or with its line break), in place, into
 * req->method/path/query/minor. Used to describe a request whose head was too large (431).
 * Returns 0 or a status like lp_http1_parse_head. */
int lp_http1_parse_request_line(char *line, size_t len, struct lp_http1_request *req,
                                const char **reason);

/* First header named `name` (ASCII case-insensitive), or NULL. */
const char *lp_http1_header_get(const struct lp_http1_request *req, const char *name);

/* A response head (the upstream client's view, see h1reader.h). */
struct lp_http1_response {
    int status; /* 100..999 */
    int minor;  /* HTTP/1.<minor> */
    size_t n_headers;
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* 1.1 unless "Connection: close"; 1.0 only with "keep-alive" */
};

/* Parse a complete response head buf[0, len) (as found by lp_http1_find_head_end) in place:
 * the header names and values are NUL-terminated inside buf and listed in hdrs[0, n_headers).
 * Returns 0, or -1 with *reason set (a static string) for: a malformed status line or header,
 * more than max_hdrs headers, an invalid or duplicate Content-Length, Content-Length with
 * Transfer-Encoding, a Transfer-Encoding other than exactly "chunked". Deciding whether the
 * response has a body (1xx, 204, 304) is the caller's. */
int lp_http1_parse_response_head(char *buf, size_t len, struct lp_http1_response *resp,
                                 struct lp_http1_header *hdrs, size_t max_hdrs,
                                 const char **reason);

/* Chunked decoder state; zero it with lp_http1_chunked_init() before the first feed. */
struct lp_http1_chunked {
    int state;
    uint64_t remaining;   /* data bytes left in the current chunk / the size being parsed */
    unsigned digits;      /* hex digits seen in the current size */
    size_t line_bytes;    /* bytes of the current size line (extensions) or trailer line */
    size_t trailer_bytes; /* total trailer bytes */
};

/* Limits on the parts of the framing that carry no body data. */
#define LP_HTTP1_MAX_CHUNK_LINE 4096
#define LP_HTTP1_MAX_TRAILERS 16384

void lp_http1_chunked_init(struct lp_http1_chunked *c);

/* Feed in[0, len) of a chunked body. Data bytes are appended to *out; out->max is the body
 * ceiling. Returns:
 *   LP_OK          the last chunk and the trailers were consumed; *used = bytes of `in` consumed
 *                  (the rest belongs to the next request);
 *   LP_AGAIN       all of `in` was consumed (*used = len) and more is needed;
 *   LP_ERR_TOOBIG  a chunk size would take the body over out->max (detected from the size line,
 *                  before its data is read);
 *   LP_ERR_PARSE   malformed framing (bad size, size line or trailers over their limits).
 * After LP_OK or an error, further feeds return the same result without consuming anything. */
enum lp_status lp_http1_chunked_feed(struct lp_http1_chunked *c, const char *in, size_t len,
                                     size_t *used, struct lp_buf *out);

#endif
