/* h1reader.h - an incremental HTTP/1.1 response reader (pure: no sockets, no callbacks).
 *
 * The upstream client (h1client.c) feeds it the bytes it reads, cut anywhere, and pulls events:
 * the final head (1xx interim responses are skipped inside), body data as spans of the caller's
 * own input (no copy: content-length, chunked with extensions and trailers, or delimited by the
 * close), and the end. The head is parsed by http1.c's response parser; this module decides the
 * body's framing (RFC 9112 6.3): 204 and 304 have none, chunked wins, then Content-Length,
 * otherwise the body runs to the close (and the connection cannot be reused).
 *
 * Framing errors are refused, never guessed at: a malformed head, duplicate Content-Length,
 * Content-Length with Transfer-Encoding, a body announced on a 204 or 304, a 101, bad chunk
 * sizes, over-long chunk lines or trailers. Memory: the head buffer (grown to the head's size, at
 * most LP_H1R_MAX_HEAD) and one offset pair per header; the body is never buffered here.
 */
#ifndef LP_H1READER_H
#define LP_H1READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LP_H1R_MAX_HEAD (64 * 1024)
#define LP_H1R_MAX_HEADERS 128

enum lp_h1r_event {
    LP_H1R_MORE,  /* all input consumed, more is needed */
    LP_H1R_HEAD,  /* the final response head is available (status, headers) */
    LP_H1R_DATA,  /* *data, *dlen: body bytes (a span of the input) */
    LP_H1R_DONE,  /* the response is complete; bytes after it are not consumed */
    LP_H1R_ERROR, /* malformed response: lp_h1reader_error() says why */
};

struct lp_h1reader {
    int state;
    char *head; /* the head's bytes, parsed in place once complete */
    size_t head_len, head_cap, scan;
    uint32_t *hoff; /* name/value offsets into head, two per header */
    size_t n_hdrs;
    int status, minor;
    bool keep_alive;
    bool any;           /* a byte of this response was read */
    uint64_t remaining; /* content-length left, or bytes of the current chunk */
    int cstate;         /* chunked framing state */
    unsigned digits;
    size_t line_bytes, trailer_bytes;
    const char *error;
};

/* Prepare a reader for one response (zeroes it). */
void lp_h1reader_init(struct lp_h1reader *r);
/* Release what the reader holds (the head); it may be initialised again afterwards. */
void lp_h1reader_free(struct lp_h1reader *r);

/* Feed in[0, len); returns the next event and sets *used to the bytes of `in` it consumed (call
 * again with the rest). For LP_H1R_DATA, *data and *dlen point into `in`. Call with len == 0 to
 * learn whether a body that just ran out is DONE. After DONE or ERROR, further feeds return the
 * same event and consume nothing. */
enum lp_h1r_event lp_h1reader_feed(struct lp_h1reader *r, const char *in, size_t len, size_t *used,
                                   const char **data, size_t *dlen);

/* The peer closed the connection: DONE for a close-delimited body, otherwise ERROR (the response
 * was cut; lp_h1reader_started() tells whether any of it had arrived). */
enum lp_h1r_event lp_h1reader_eof(struct lp_h1reader *r);

/* Whether any byte of the response arrived. */
bool lp_h1reader_started(const struct lp_h1reader *r);
/* After DONE: whether the connection may carry another request (keep-alive and a body framed
 * by length or chunks). */
bool lp_h1reader_reusable(const struct lp_h1reader *r);
const char *lp_h1reader_error(const struct lp_h1reader *r);

/* After HEAD: the status, the minor version, and the headers in the order received. */
int lp_h1reader_status(const struct lp_h1reader *r);
int lp_h1reader_minor(const struct lp_h1reader *r);
size_t lp_h1reader_header_count(const struct lp_h1reader *r);
void lp_h1reader_header_at(const struct lp_h1reader *r, size_t i, const char **name,
                           const char **value);
/* First header named `name` (ASCII case-insensitive), or NULL. */
const char *lp_h1reader_header(const struct lp_h1reader *r, const char *name);

#endif
