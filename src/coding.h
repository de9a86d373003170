/* coding.h - HTTP content codings: an incremental decoder for gzip and deflate (zlib).
 *
 * Engine-independent: it knows nothing about curl, sockets or requests, so any HTTP client of
 * ours (the libcurl engine in upstream.c, a hand-written HTTP/1.1 client) decodes the same way.
 * It works on a buffered body (feed it all, then finish) and on a stream (feed each read as it
 * arrives, the output comes out as soon as zlib can produce it: an SSE event compressed with a
 * sync flush decodes as soon as its last byte arrived).
 *
 * Guarantees:
 *  - output never exceeds `max_ratio` times the input consumed so far plus LP_CODING_SLACK
 *    (a "zip bomb" ceiling): beyond it the decoder fails instead of producing more;
 *  - a body that does not match its coding (bad header, bad data, bad checksum, bytes after the
 *    end of a deflate stream) fails with a short static description (lp_coding_error);
 *  - a body that stops before the end of its compressed stream fails at lp_coding_finish (a
 *    truncated body is never taken for a complete one);
 *  - "gzip" accepts several concatenated members (RFC 1952); "deflate" accepts the zlib format
 *    that RFC 9110 names, and raw deflate data (what some servers send) when the first two bytes
 *    are not a zlib header.
 * After an error every further call fails with the same error. Not thread-safe (one decoder per
 * body). */
#ifndef LP_CODING_H
#define LP_CODING_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "util/buf.h"

enum lp_coding_kind {
    LP_CODING_IDENTITY = 0, /* no coding: the bytes are the content */
    LP_CODING_GZIP,
    LP_CODING_DEFLATE,
    LP_CODING_UNSUPPORTED, /* br, zstd, compress, an unknown name, or stacked codings */
};

/* Output may exceed input * max_ratio by this much (short bodies, headers). */
#define LP_CODING_SLACK (256u * 1024)
/* The ratio the proxy uses for upstream bodies: JSON and SSE text compress 5-30x in practice. */
#define LP_CODING_DEFAULT_RATIO 200u

struct lp_coding;

/* The coding a Content-Encoding header value names. NULL, empty and "identity" (any case,
 * surrounding spaces) are IDENTITY; "gzip" and "x-gzip" GZIP; "deflate" DEFLATE. A list
 * ("gzip, identity") is reduced by dropping identity entries; more than one real coding, or any
 * other name, is UNSUPPORTED. */
enum lp_coding_kind lp_coding_kind_of(const char *content_encoding);
/* "identity", "gzip", "deflate", "unsupported". */
const char *lp_coding_kind_name(enum lp_coding_kind k);

/* A decoder for kind GZIP or DEFLATE (NULL for any other kind). max_ratio 0 means
 * LP_CODING_DEFAULT_RATIO. Aborts on out of memory, like every small allocation. */
struct lp_coding *lp_coding_new(enum lp_coding_kind kind, uint32_t max_ratio);
void lp_coding_free(struct lp_coding *c);

/* Decode from in[0..in_len) into out[0..out_cap). On LP_OK, *in_used bytes of the input were
 * taken (they must not be fed again) and *out_len bytes were written. The decoder may hold back
 * output when out is full: call again (with the remaining input, or none) until all input is
 * used AND *out_len < out_cap. out_cap must be > 0. Returns LP_ERR (corrupt data, data after the
 * end, the ratio ceiling) with *in_used and *out_len describing what was done before. */
enum lp_status lp_coding_feed(struct lp_coding *c, const char *in, size_t in_len, size_t *in_used,
                              char *out, size_t out_cap, size_t *out_len);

/* Decode all of in[0..in_len) and append the output to `out` (its ceiling applies: exceeding it
 * is LP_ERR_TOOBIG with the error "decoded body larger than its buffer limit"). For buffered
 * bodies; the caller still calls lp_coding_finish. */
enum lp_status lp_coding_feed_buf(struct lp_coding *c, const char *in, size_t in_len,
                                  struct lp_buf *out);

/* The body ended. LP_OK if the compressed stream was complete (or no byte at all was fed: an
 * empty body is an empty content); LP_ERR if it stopped in the middle ("truncated gzip body")
 * or an error happened before. */
enum lp_status lp_coding_finish(struct lp_coding *c);

/* A short static description of the first error, or NULL. */
const char *lp_coding_error(const struct lp_coding *c);
/* Bytes consumed and produced so far. */
uint64_t lp_coding_total_in(const struct lp_coding *c);
uint64_t lp_coding_total_out(const struct lp_coding *c);

#endif
