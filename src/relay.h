/* relay.h - what the client receives: the response head of a stream, its events (passed through
 * byte for byte or translated), backpressure, and a protocol-correct end.
 *
 * The relay writes to the request's edge request and knows nothing about attempts or
 * failover: forward.c decides when a stream is committed and when it ends; the attempt feeds the
 * events of the committed try through lp_relay_event() with its own stream state.
 *
 * A committed stream always ends in one of two ways the client can tell apart: the upstream's
 * terminal event (OpenAI `[DONE]`, Anthropic `message_stop`; added by the relay when the upstream
 * reached its finish point and closed cleanly without it), or an error event in the client's
 * protocol (an SDK raises). Never a silent clean end after a failure.
 */
#ifndef LP_RELAY_H
#define LP_RELAY_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/stream_xlat.h"
#include "request.h"
#include "sse.h"
#include "util/buf.h"

struct lp_edge_header;

/* Per-stream state of the attempt that relays (owned by the attempt, read and updated here). */
struct lp_stream_state {
    struct lp_stream_xlat *xlat; /* translating stream, or NULL for pass-through */
    struct lp_stream_tap tap;    /* pass-through observer (usage, terminal event) */
    enum lp_proto up;            /* the upstream's protocol */
    bool saw_finish;             /* pass-through: the finish point went by */
    bool done;                   /* the terminal event reached the client */
    bool upstream_error;         /* the upstream's error event was relayed: the stream is over */
    const char *broken;          /* static: why the stream broke (nothing sent for that event) */
    struct lp_buf out;           /* scratch for translated or masked output */
    struct lp_buf err_data;      /* data of the relayed upstream error event (for health) */
};

enum lp_relay_rc {
    LP_RELAY_OK = 0, /* relayed (or nothing to send); the stream goes on */
    LP_RELAY_DONE,   /* the terminal event was relayed */
    LP_RELAY_ERROR,  /* the upstream's error event was relayed; the stream is over */
    LP_RELAY_BROKEN, /* the event could not be relayed (st->broken says why) */
};

/* Prepare / free a stream state. xlat may be NULL (pass-through: the tap is initialised for the
 * client protocol; client_wants_usage as in lp_stream_tap_init). */
void lp_stream_state_init(struct lp_stream_state *st, enum lp_proto up, enum lp_proto client,
                          struct lp_stream_xlat *xlat, bool client_wants_usage);
void lp_stream_state_free(struct lp_stream_state *st);

/* THE COMMIT POINT for streams: send the 200 response head (SSE content type, no caching, the
 * request id, plus `extra` headers), move the request to COMMITTED, count it as an open stream.
 * Nothing can fail over after this. */
void lp_relay_commit(struct lp_request *req, const struct lp_edge_header *extra, size_t n_extra);

/* Write client bytes of the committed stream. Returns false once the client is gone. */
bool lp_relay_write(struct lp_request *req, const char *p, size_t n);

/* Relay one upstream event of the committed stream. */
enum lp_relay_rc lp_relay_event(struct lp_request *req, struct lp_stream_state *st,
                                const struct lp_sse_event *ev);

/* Translate (or check) the first event before commit. Writes the client bytes into `first` (not
 * to the client). LP_RELAY_OK, LP_RELAY_DONE (the stream ended in this event), or
 * LP_RELAY_BROKEN (garbage: fail over unseen). */
enum lp_relay_rc lp_relay_first_event(struct lp_request *req, struct lp_stream_state *st,
                                      const struct lp_sse_event *ev, struct lp_buf *first);

/* The upstream closed cleanly without its terminal event. Returns LP_RELAY_DONE after writing the
 * termination the client expects when the stream had reached its finish point (some upstreams
 * omit `[DONE]`), else LP_RELAY_BROKEN. */
enum lp_relay_rc lp_relay_clean_eof(struct lp_request *req, struct lp_stream_state *st);

/* Group the writes of one upstream read into one sendmsg: cork now, uncork from an event that
 * runs later in this loop pass. */
void lp_relay_cork_batch(struct lp_request *req);

/* Backpressure: true when the client has more than the high watermark queued. Then
 * lp_relay_when_drained(req, fn, arg) calls fn(arg) once the queue drops below the low mark. */
bool lp_relay_congested(const struct lp_request *req);
void lp_relay_when_drained(struct lp_request *req, void (*fn)(void *), void *arg);

/* End the committed stream. end says how: LP_END_CLEAN and LP_END_UPSTREAM_ERROR just close it
 * (the client has its terminal or error event); every other end first writes an error event in
 * the client's protocol (through st's translator when there is one) with err_type and msg,
 * counts the abort under abort_reason (a metric label: "upstream_cut", "read_timeout", ...) and
 * notes the error. Records the end on the request, writes the access line, then ends the edge
 * request (moving to DONE). st may be NULL. */
void lp_relay_end(struct lp_request *req, struct lp_stream_state *st, enum lp_stream_end end,
                  const char *err_type, const char *msg, const char *abort_reason);

/* Static name of a stream end ("clean", "upstream_error", ...). */
const char *lp_stream_end_name(enum lp_stream_end end);

#endif
