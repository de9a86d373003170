/* sse.h - incremental Server-Sent Events parser with a per-event ceiling.
 *
 * Upstream bytes arrive in arbitrary chunks (mid-line, mid-CRLF, mid-UTF-8). lp_sse_feed appends
 * them; lp_sse_next returns complete events one at a time. Each event carries its parsed `event`
 * and joined `data` fields AND its exact raw bytes, so a pass-through relay can forward events
 * byte for byte while still looking at them (usage, errors, [DONE]).
 *
 * Parsing follows the WHATWG SSE "interpret the event stream" rules:
 * - lines end in "\r\n", "\n" or "\r"; a blank line ends an event;
 * - "field:value" or "field: value" (exactly one leading space is stripped); a line without ':'
 *   is a field with an empty value; a line starting with ':' is a comment;
 * - "data" lines are joined with '\n'; the last "event" line wins; "id", "retry" and unknown
 *   fields are ignored (but still make the event a non-comment);
 * - one UTF-8 BOM at the very start of the stream is skipped (it stays in the first event's raw).
 * Unlike a browser, every blank-line-terminated block is returned, even one with no data line
 * (e.g. a ":" keep-alive, or a stray extra blank line), so raw bytes are never lost: the
 * concatenation of every returned raw equals the input up to the last complete event.
 *
 * A line ending in '\r' is only taken once the byte after it is known (it might be a "\r\n"
 * split across chunks), so results never depend on chunking. At end of stream, lp_sse_finish
 * settles a trailing lone '\r'.
 *
 * Memory: the buffer holds the not-yet-returned bytes: complete events not yet taken with
 * lp_sse_next plus at most max_event_bytes of an incomplete event. Callers drain with
 * lp_sse_next until LP_AGAIN after every feed, so the buffer stays below
 * max_event_bytes + one chunk. Consumed bytes are dropped lazily (no memmove per event).
 */
#ifndef LP_SSE_H
#define LP_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"
#include "util/buf.h"

struct lp_sse_event {
    const char *event;
    size_t event_len; /* "event:" field value, len 0 if none */
    const char *data;
    size_t data_len; /* data lines joined with '\n' (per the SSE spec) */
    const char *raw;
    size_t raw_len;       /* exact raw bytes of this event incl. its terminating
                             blank line, for byte-exact pass-through */
    bool is_comment_only; /* no field lines at all: only ':' comment lines
                             (keep-alives) or an empty block */
    bool has_data;        /* at least one "data" line (data_len may be 0) */
};

/* Invariants: start <= scan <= lscan <= buf.len; boundary <= buf.len. Offsets named *_rel are
 * relative to `start`, so dropping consumed bytes (start -> 0) does not change them. Every byte
 * in buf has been through the feed-side boundary scan. */
struct lp_sse_parser {
    struct lp_buf buf;     /* bytes fed and not yet dropped; [start, len) is pending */
    struct lp_buf scratch; /* joined data of a multi-line event (ceiling max_event) */
    size_t max_event;      /* ceiling on one event's raw bytes */
    size_t start;          /* first byte of the event being parsed */
    size_t scan;           /* next unparsed line of that event */
    size_t lscan;          /* [scan, lscan) holds no line terminator (no rescans) */
    bool bom_done;         /* the stream start has been checked for a BOM */
    bool failed;           /* a ceiling was hit; the parser refuses further input */
    /* fields of the event being parsed */
    size_t event_rel, event_len;
    size_t data_rel, data_len; /* the single data line, while n_data <= 1 */
    size_t n_data;             /* data lines seen; > 1 means the joined data lives in scratch */
    bool has_field;            /* any non-comment line */
    /* feed-side boundary tracking, only for the ceiling */
    size_t boundary;   /* end of the last blank line seen (an event ends there) */
    bool b_line_start; /* the end of buf is at the start of a line */
    bool b_prev_cr;    /* the last byte of buf is a '\r' */
};

/* Initialise an empty parser. max_event_bytes caps one event's raw size (0 = 1 MiB).
 * Allocates nothing. */
void lp_sse_init(struct lp_sse_parser *p, size_t max_event_bytes);
/* Release the buffers; safe twice and on a zeroed parser. The parser can be re-initialised. */
void lp_sse_free(struct lp_sse_parser *p);
/* Append upstream bytes (any chunking). Returns LP_OK, or LP_ERR_TOOBIG if the incomplete event
 * at the end of the input would exceed the ceiling; then nothing is appended and every later
 * feed fails too (already complete events can still be taken with lp_sse_next).
 * Invalidates the event returned by the previous lp_sse_next. */
enum lp_status lp_sse_feed(struct lp_sse_parser *p, const char *buf, size_t len);
/* Next complete event: LP_OK (ev's pointers are valid until the next lp_sse_next/feed/free
 * call), LP_AGAIN when no complete event is buffered. */
enum lp_status lp_sse_next(struct lp_sse_parser *p, struct lp_sse_event *ev);
/* At end of stream: like lp_sse_next, but a final "\r" that was waiting for a possible "\n" is
 * taken as a line end. Call it after lp_sse_next returned LP_AGAIN and the upstream ended;
 * LP_AGAIN means no further complete event (lp_sse_pending then tells whether bytes remain). */
enum lp_status lp_sse_finish(struct lp_sse_parser *p, struct lp_sse_event *ev);
/* Bytes buffered but not yet returned as a complete event (for "stream ended mid-event"
 * detection). */
size_t lp_sse_pending(const struct lp_sse_parser *p);

#endif
