/* attempt.h - one upstream try of a request: created per try, its resources released once.
 *
 * An attempt owns everything about one try: the candidate, the breaker/trial ticket, the
 * upstream URL, body and headers, the transfer, the SSE parser and stream translator (or
 * pass-through tap), its TTFT/read timer, its first-event decision and its timings. Nothing
 * per-attempt lives on the request, so nothing needs resetting between tries, and two attempts
 * of one request can run at once (a hedge).
 *
 * Every entry point of an attempt (response head, data, end of transfer, timer) ends, when the
 * try has an outcome, in one call of the request's outcome function (forward.c's conclude()),
 * which records the attempt, reports the ticket to health exactly once and decides what happens
 * next. The attempt never replies to the client and never finishes the request itself.
 *
 * Lifetime: the struct lives in the request's arena until the request is freed (its record is
 * listed in the access line); lp_attempt_release() frees the heavy resources (transfer, buffers,
 * timer, translator) exactly once. Release is safe from inside the attempt's own callbacks: it
 * is then completed when the outermost callback of this attempt returns.
 *
 * Phases of an attempt (struct lp_attempt.state):
 *   SENT ──head──► HEAD ──first event (stream) / whole body──► (outcome READY / COMPLETE)
 *                   │                                           │ commit
 *                   └──── failure: outcome FAILED ◄─────────────┼──── RELAYING ──► STREAM_END
 *   Any state ──cancel──► released (outcome CANCELLED is produced by forward.c, not here).
 */
#ifndef LP_ATTEMPT_H
#define LP_ATTEMPT_H

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "classify.h"
#include "endpoint.h"
#include "health.h"
#include "proto/xlat.h"
#include "relay.h"
#include "request.h"
#include "sse.h"
#include "util/buf.h"

struct lp_upstream_xfer;
struct lp_candidate;

enum lp_outcome_kind {
    LP_OUT_READY = 1,  /* stream: the first event is usable and waits in `first`: commit me */
    LP_OUT_COMPLETE,   /* non-stream: a usable 2xx body is buffered: commit me */
    LP_OUT_FAILED,     /* failed before commit; d tells whether to fail over */
    LP_OUT_REFUSED,    /* the client's request cannot be sent to this candidate (translation
                          refused it): the client's own error, nobody is blamed */
    LP_OUT_LOCAL,      /* our own resources ran out before the backend was reached */
    LP_OUT_DEADLINE,   /* the request's total_timeout expired during this attempt */
    LP_OUT_STREAM_END, /* a committed stream is over; see `end` */
    LP_OUT_CANCELLED,  /* stopped by us: client gone, lost a race, shutdown */
};

struct lp_outcome {
    enum lp_outcome_kind kind;
    struct lp_decision d;   /* FAILED, and STREAM_END unless clean: the classification */
    enum lp_stream_end end; /* STREAM_END, CANCELLED (CLIENT_GONE / SHUTDOWN / NONE for a loser) */
    const char *why;        /* short static cause when d.reason is not set (e.g. "client gone") */
    const char *err_type;   /* STREAM_END unclean: the error event's type ("api_error", ...) */
    const char *abort_reason; /* STREAM_END unclean: the abort metric's label */
    int refuse_status;        /* REFUSED: the status, type and message for the client */
    char refuse_type[64];
    char refuse_msg[256];
};

enum lp_attempt_state {
    LP_ATT_SENT = 0, /* transfer started, no response head yet */
    LP_ATT_HEAD,     /* head received: buffering a body, or waiting for the first event */
    LP_ATT_READY,    /* outcome READY produced; waiting to be committed or cancelled */
    LP_ATT_RELAYING, /* committed stream: events go to the client */
    LP_ATT_OVER,     /* concluded (any final outcome); resources released or being released */
};

enum lp_attempt_timer { LP_ATIMER_NONE = 0, LP_ATIMER_TTFT, LP_ATIMER_READ };

struct lp_attempt;
typedef void (*lp_attempt_outcome_fn)(struct lp_attempt *att, const struct lp_outcome *o);

struct lp_attempt {
    struct lp_request *req;
    const struct lp_candidate *cand;
    lp_attempt_outcome_fn on_outcome;
    struct lp_health_ticket ticket; /* consumed exactly once, by forward.c's conclude() */
    int seq;                        /* 1-based attempt number within the request */
    enum lp_attempt_state state;
    bool translate;                /* client and backend protocols differ */
    bool inject_usage;             /* we added include_usage upstream: hide the usage chunk */
    enum lp_endpoint up_ep;        /* the endpoint called upstream */
    struct lp_trace_attempt trace; /* span id, cooldown (sampled requests only) */
    bool lb_counted;               /* counted in its route's in-flight number (routestats.h) */
    bool hedge;                    /* started alongside a silent attempt (forward.c) */
    bool hedge_counted;            /* its result is in llm_proxy_hedges_total */

    /* ---- the upstream request (released once) ---- */
    char *url;  /* arena */
    char *body; /* heap when != req->body */
    size_t body_len;
    struct lp_xlat_notes xnotes; /* translating: the client parameters dropped (header
                                  * X-LLM-Proxy-Dropped-Params, access line) */
    char **hdrs;                 /* arena: "Name: value" lines */
    size_t n_hdrs, cap_hdrs;
    struct lp_upstream_xfer *x;  /* the running transfer, NULL once over */
    struct lp_upstream_xfer *hx; /* whose response headers are readable (until on_done ends) */

    /* ---- the response ---- */
    int status;
    bool sse;           /* 2xx text/event-stream */
    struct lp_buf resp; /* non-stream body, or an error body / error event data */
    bool resp_overflow;
    struct lp_sse_parser sse_p;
    bool sse_init;
    struct lp_stream_state st;    /* translator or tap, terminal/finish tracking (relay.h) */
    struct lp_buf first;          /* READY: the first event's client bytes, sent at commit */
    struct lp_sse_event first_ev; /* READY, pass-through: the first event (valid until commit) */
    bool first_seen;
    bool paused; /* the transfer is paused for backpressure */

    /* ---- time ---- */
    struct event timer; /* TTFT, then read idle (event_assign'ed) */
    bool timer_armed;
    enum lp_attempt_timer timer_kind;
    bool ttft_is_deadline;  /* the TTFT timer is the request's deadline */
    bool limit_is_deadline; /* the transfer's own time limit is the request's deadline */
    int64_t start_us, first_us, last_data_us, end_us;

    /* ---- the record (kept for the access line, metrics and the all-failed message) ---- */
    const char *cls; /* class name, "ok", "cancelled" ...; NULL while running */
    int rec_status;
    char cause[160];        /* masked, no secrets */
    struct lp_buf err_body; /* the failed answer's body (for the all-failed reply) */
    enum lp_proto err_proto;
    int64_t hint_ms; /* the failure's Retry-After hint */
    enum lp_err_class err_cls;

    /* ---- re-entrancy ---- */
    int depth;     /* this attempt's callbacks on the stack */
    bool released; /* lp_attempt_release was called */
    bool freed;    /* resources actually freed */
};

/* Whether candidate c can serve req at all (its dialect has a path for the endpoint and, when
 * the protocols differ, the endpoint is translatable). No side effects. */
bool lp_attempt_can_serve(const struct lp_request *req, const struct lp_candidate *c);

/* Build and start attempt number seq on candidate c for req, holding `ticket` (admitted by the
 * caller). Returns the new attempt (arena; recorded in req->log by the caller). If it could not
 * be started, *early is filled (REFUSED: the body cannot be translated for this backend; LOCAL:
 * the transfer could not be created) and *started is false: the caller concludes it at once.
 * Otherwise the outcome arrives later, through fn, never synchronously. */
struct lp_attempt *lp_attempt_start(struct lp_request *req, const struct lp_candidate *c,
                                    const struct lp_health_ticket *ticket, int seq,
                                    lp_attempt_outcome_fn fn, struct lp_outcome *early,
                                    bool *started);

/* The commit decision was taken for a READY or COMPLETE attempt. READY: the attempt becomes the
 * relaying one; the caller has sent the response head; this writes the first event's bytes and
 * relays everything already buffered (which may itself end the stream, producing STREAM_END). */
void lp_attempt_commit(struct lp_attempt *att);

/* Stop the attempt (client gone, lost race, shutdown, or after its final outcome): cancel the
 * transfer at once (the upstream sees the connection close), stop the timer, free buffers and
 * the translator. Exactly-once effect; safe to call twice and from inside its own callbacks. */
void lp_attempt_release(struct lp_attempt *att);

/* Classify an upstream answer or error event of this attempt (status, hint headers, body). */
void lp_attempt_classify_http(struct lp_attempt *att, const char *body, size_t len, bool sse_event,
                              struct lp_decision *d);
/* Classify a transport failure of this attempt; why replaces the generic reason when set. */
void lp_attempt_classify_transport(struct lp_attempt *att, enum lp_transport tr, const char *why,
                                   struct lp_decision *d);

/* The upstream's response headers a pass-through client may see (hop-by-hop, framing, cookies,
 * Connection-listed and our own headers removed; Content-Type and, for streams, Cache-Control
 * are the caller's). Pointers valid while the headers are (see below). When translating, none
 * of the upstream's: only X-LLM-Proxy-Dropped-Params when the translation dropped client
 * parameters (valid while the attempt is). Returns the count. */
struct lp_edge_header;
size_t lp_attempt_response_headers(const struct lp_attempt *att, struct lp_edge_header *out,
                                   size_t max, bool for_stream);

/* Free what the attempt's record still holds (the failed answer's body); after release. Called
 * once per attempt when the request is torn down. */
void lp_attempt_dispose(struct lp_attempt *att);

/* The whole buffered answer (COMPLETE, or the failed answer): body and the upstream header
 * lookup (valid until the attempt is released). */
const char *lp_attempt_header(const struct lp_attempt *att, const char *name);
size_t lp_attempt_header_count(const struct lp_attempt *att);
void lp_attempt_header_at(const struct lp_attempt *att, size_t i, const char **name,
                          const char **value);

#endif
