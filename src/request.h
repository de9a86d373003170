/* request.h - the state of one client request, shared by proxy.c (intake, replies, finish),
 * attempt.c (upstream attempts, commit, relay) and admin.c (admin endpoints).
 *
 * Invariants:
 * - er != NULL until the edge request has been ended (reply, end or abort); afterwards NULL.
 * - x != NULL exactly while an upstream transfer is running.
 * - committed: the client has been sent a response head (or a whole response). No failover
 *   after that point.
 */
#ifndef LP_REQUEST_H
#define LP_REQUEST_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "endpoint.h"
#include "jscan.h"
#include "reqid.h"
#include "router.h"
#include "classify.h"
#include "proto/stream_xlat.h"
#include "sse.h"
#include "util/buf.h"

struct lp_worker;
struct lp_runtime;
struct lp_edge_req;
struct lp_edge_header;
struct lp_upstream_xfer;
struct lp_stream_xlat;
struct lp_reload_job;

#define LP_MAX_CANDIDATES 64
#define LP_MAX_ATTEMPT_LOG 16

/* One upstream attempt, as the access log and the all-failed message report it. */
struct lp_attempt_rec {
    const char *backend; /* borrowed from the request's config snapshot */
    const char *model;
    const char *cls;     /* error class name, "ok" on success */
    int status;          /* upstream HTTP status, 0 when none */
    char cause[160];     /* short cause, masked, no secrets */
    int64_t dur_us;
    int64_t ttft_us;     /* -1 when no first byte/event */
};

enum lp_timer_kind {
    LP_TIMER_NONE = 0,
    LP_TIMER_TTFT,     /* waiting for the first byte / first SSE event */
    LP_TIMER_READ,     /* receiving: max silence between upstream bytes */
    LP_TIMER_BACKOFF,  /* waiting before the next attempt */
};

struct lp_request {
    struct lp_worker *w;
    struct lp_runtime *rt;
    struct lp_edge_req *er;
    struct lp_config *cfg;       /* snapshot held for the request's whole life */
    char id[LP_REQID_MAX];
    char peer[64];
    char *method, *path, *query; /* copies: they outlive er (the access log runs after the
                                    reply has ended the edge request) */
    const char *body;            /* the client's body, borrowed from er: valid only while er is
                                    live, i.e. during intake and attempts */
    size_t body_len;
    enum lp_proto client;
    enum lp_endpoint ep;         /* decided once at intake (endpoint.h) */
    bool path_safe;              /* no dot-segments, encoded slashes, backslashes */
    char *fwd_query;             /* the client's query reduced to what ep may forward; or NULL */
    bool stream;                 /* the client asked for stream: true */
    bool chat;                   /* /v1/chat/completions or /v1/messages: translatable, with
                                    known terminal events */
    struct lp_jscan scan;
    char *alias_name;
    const struct lp_alias *alias;

    /* Plan. */
    struct lp_candidate cands[LP_MAX_CANDIDATES];
    size_t n_cands, next_cand;
    int max_attempts;
    int n_attempts;
    struct lp_plan_info plan;
    struct lp_attempt_rec log[LP_MAX_ATTEMPT_LOG];
    size_t n_log;
    int n_http_fail, n_net_fail, n_timeout_fail, n_skipped_health;

    /* Current attempt. */
    const struct lp_candidate *cur;
    struct lp_upstream_xfer *x;
    struct lp_upstream_xfer *hx; /* whose response headers are readable now (from on_head to the
                                    end of on_done); x may already be NULL in on_done */
    enum lp_endpoint up_ep;      /* the endpoint called upstream (after translation) */
    char *up_url;
    char *up_body;               /* owned when != body */
    size_t up_body_len;
    char **up_hdrs;
    size_t n_up_hdrs;
    int up_status;
    bool up_sse;                 /* upstream answered text/event-stream */
    bool translate;              /* client and backend protocols differ */
    bool inject_usage;           /* we added include_usage upstream; hide the usage chunk */
    struct lp_stream_xlat *xlat;
    int64_t att_start_us, att_first_us, last_data_us;
    struct lp_buf resp;          /* buffered non-stream body, or an error body */
    struct lp_sse_parser sse;
    bool sse_init;
    bool first_event_seen;
    bool first_translated;       /* the first event's translation waits in out */
    bool stream_done;            /* the upstream's terminal event was relayed */
    struct lp_buf out;           /* scratch for translated/queued output */

    /* Timer (ttft / read idle / backoff). */
    struct event *timer;
    struct event *flush_ev;      /* uncorks the client connection after curl's batch */
    bool corked;
    enum lp_timer_kind timer_kind;
    bool timer_armed;
    int64_t deadline_us;         /* total_timeout for the whole request */

    /* Attempt bookkeeping (attempt.c). */
    int busy;                    /* depth of asynchronous entry points on the stack */
    bool finish_pending;         /* finish once busy drops to 0 */
    struct lp_decision pending_decision; /* decided from the first SSE event */
    bool pending_decision_set;
    struct lp_stream_tap tap;    /* pass-through stream observer */
    bool stream_error;           /* an upstream error event was relayed to the client */
    const char *stream_broken;   /* static cause: the stream broke and the client was told
                                    nothing yet (invalid/oversized event) */
    bool saw_finish;             /* pass-through: finish_reason / message_delta relayed */
    bool resp_overflow;
    int64_t last_hint_ms;        /* Retry-After of the last failure */
    const char *last_backend;
    int last_status;             /* last upstream HTTP error status */
    struct lp_buf last_err;      /* and its body */
    enum lp_proto last_err_proto;
    int64_t backoff_start_us;
    int64_t backoff_total_ms;
    bool backoff_done;           /* the wait before the pending candidate is over */
    bool deadline_hit;
    bool ttft_is_deadline;       /* the TTFT timer of this attempt is the request deadline */
    bool attempt_limit_is_deadline; /* curl's time limit of this attempt is the deadline */

    /* Outcome. */
    bool committed;
    bool client_gone;
    bool stream_counted;
    bool llm;                    /* an LLM endpoint request: counted in metrics */
    bool recorded;               /* access line and metrics written */
    bool paused;
    int final_status;
    bool error_msg_set;
    char error_msg[256];
    int64_t t0_us, t0_wall_ms, t_first_byte_us, upstream_wait_us;
    size_t bytes_in, bytes_out;
    int64_t tok_in, tok_out, tok_cached;
    const char *abort_reason;
    struct lp_reload_job *admin_job; /* pending POST /admin/reload */
};

/* Complete replies. They end the edge request (er becomes NULL). */
void lp_request_reply(struct lp_request *req, int status, const char *content_type,
                      const char *body, size_t len, const struct lp_edge_header *extra,
                      size_t n_extra);
/* A proxy-generated error in the client's protocol shape (OpenAI or Anthropic). */
void lp_request_reply_error(struct lp_request *req, int status, const char *type, const char *code,
                            const char *msg);
void lp_request_reply_error_body(struct lp_request *req, int status, const char *body, size_t len,
                                 const struct lp_edge_header *extra, size_t n_extra);
/* Check the proxy (or admin) key; on failure replies 401 and returns false. */
bool lp_request_check_auth(struct lp_request *req, const char *key);
/* Release everything the request owns; ends the edge request if still open. Exactly once. */
void lp_request_finish(struct lp_request *req);
/* Write the access-log line and record metrics, once (before the final bytes go to the edge,
 * and from finish as a fallback). */
void lp_request_log_access(struct lp_request *req);
/* Re-entrancy guard for asynchronous entry points (edge and upstream callbacks, timers): a
 * finish requested while an entry point is on the stack is deferred until the outermost one
 * leaves. Never touch req after lp_request_leave. */
static inline void lp_request_enter(struct lp_request *req)
{
    req->busy++;
}
void lp_request_leave(struct lp_request *req);

/* Count a stream aborted after commit (metrics; the access log shows it too). */
void lp_request_count_abort(struct lp_request *req, const char *reason);
/* Metrics hooks of the attempt loop (reqlog.c). */
void lp_metrics_failover(struct lp_request *req, const char *reason);
void lp_metrics_retry(struct lp_request *req);
void lp_metrics_backoff(struct lp_request *req, int64_t delay_ms);

#endif
