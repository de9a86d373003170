/* request.h - one client exchange: its identity, its phase, how it ends, and its lifecycle.
 *
 * Ownership. A struct lp_request is created by lp_request_new (intake) and freed by
 * lp_request_finish, exactly once. Request-scoped memory (copies of path, method and query, the
 * planned candidates, every attempt object and its record) comes from the request's arena and
 * disappears with it. The edge request `er` is owned by the edge; the request ends it exactly
 * once (lp_request_reply, or lp_relay_* for a stream), after which er is NULL.
 *
 * Phases (enum lp_phase) move only through lp_request_set_phase(), which checks the transition
 * in debug builds:
 *
 *   INTAKE ──► PLANNING ──► ATTEMPTING ◄──► BACKOFF
 *     │  ▲         │  ▲         │   │
 *     │  └ WAITING ┴──┴─WAITING ┘   └──────────────► COMMITTED ──► DONE
 *     └────────────┴────────────┴─────────────────────────────────► DONE
 *
 * INTAKE: parsing and checking the client request. WAITING: admitted later (traffic.c): in the
 * concurrency queue (from INTAKE, then PLANNING), or, with nothing in flight, for a slot on a
 * saturated backend (from PLANNING / ATTEMPTING, then ATTEMPTING).
 * PLANNING: choosing candidates. ATTEMPTING: one or more attempts (struct lp_attempt) in flight,
 * nothing sent to the client yet: any failure may fail over. BACKOFF: waiting on the request
 * timer before the next attempt. COMMITTED: the client has the response head of a stream (the
 * commit point is forward.c's commit(); after it a failure can only end the stream with a
 * protocol-correct error event). DONE: the client has its answer (or is gone); only finishing is
 * left.
 *
 * Re-entrancy. Every asynchronous entry point (edge, upstream and timer callbacks) runs between
 * lp_request_enter and lp_request_leave. lp_request_finish called while an entry point is on the
 * stack only marks the request; the outermost lp_request_leave finishes it, so no callback ever
 * frees the object it runs on.
 */
#ifndef LP_REQUEST_H
#define LP_REQUEST_H

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "endpoint.h"
#include "jscan.h"
#include "reqid.h"
#include "router.h"
#include "trace.h"
#include "util/arena.h"

struct lp_worker;
struct lp_runtime;
struct lp_edge_req;
struct lp_edge_header;
struct lp_attempt;
struct lp_reload_job;
struct lp_traffic;

enum lp_phase {
    LP_PHASE_INTAKE = 0,
    LP_PHASE_WAITING,
    LP_PHASE_PLANNING,
    LP_PHASE_ATTEMPTING,
    LP_PHASE_BACKOFF,
    LP_PHASE_COMMITTED,
    LP_PHASE_DONE,
};
#define LP_PHASE__COUNT (LP_PHASE_DONE + 1)

/* How a committed stream ended (LP_END_NONE while it runs, and for non-stream answers). */
enum lp_stream_end {
    LP_END_NONE = 0,
    LP_END_CLEAN,          /* the upstream's terminal event reached the client */
    LP_END_UPSTREAM_ERROR, /* the upstream's own error event was relayed: the client knows */
    LP_END_BROKEN,         /* cut, stalled, garbled or over a limit: we sent an error event */
    LP_END_DEADLINE,       /* total_timeout expired mid-stream: we sent a timeout error event */
    LP_END_SHUTDOWN,       /* the drain deadline passed: we sent an error event */
    LP_END_CLIENT_GONE,    /* the client left first */
};

/* Candidates planned per request (the router stops there). */
#define LP_MAX_CANDIDATES 64
/* Attempts a request may have in flight at once (a hedge adds one). */
#define LP_MAX_INFLIGHT 2
/* Attempts recorded per request (the access line lists them). */
#define LP_MAX_ATTEMPTS 16

struct lp_request {
    struct lp_worker *w;
    struct lp_runtime *rt;
    struct lp_edge_req *er;                   /* NULL once the edge request has been ended */
    struct lp_config *cfg;                    /* snapshot held for the request's whole life */
    struct lp_request *live_prev, *live_next; /* the worker's live requests (drain) */
    enum lp_phase phase;
    enum lp_stream_end stream_end;

    /* ---- identity and intake (intake.c); strings live in the arena ---- */
    char id[LP_REQID_MAX];
    char peer[64];
    const char *method, *path, *query; /* copies: they outlive er (the access log runs late) */
    const char *fwd_query;             /* the query reduced to what ep may forward, or NULL */
    const char *body;                  /* the client's body, borrowed from er: valid while er is */
    size_t body_len;
    enum lp_proto client;
    enum lp_endpoint ep;
    bool path_safe;
    bool stream; /* the client asked for stream: true */
    bool chat;   /* translatable endpoint (chat completions / messages) */
    bool llm;    /* an LLM endpoint request: counted in metrics */
    struct lp_jscan scan;
    const char *alias_name;
    const struct lp_alias *alias;
    const struct lp_client_key *key; /* the client key used (NULL: proxy_api_key or no auth) */
    struct lp_traffic *traffic;      /* traffic control state (traffic.c, arena); NULL if none */
    struct lp_trace trace;           /* trace context (trace.h); zero when tracing is off */

    /* ---- forwarding (forward.c) ---- */
    struct lp_candidate *cands; /* planned candidates (arena) */
    size_t n_cands, next_cand;
    int max_attempts;
    struct lp_plan_info plan;
    struct lp_attempt *tries[LP_MAX_INFLIGHT]; /* attempts in flight (NULL slots are free) */
    struct lp_attempt *winner;                 /* set once, at the commit point */
    struct lp_attempt *log[LP_MAX_ATTEMPTS];   /* every attempt started, in order (records) */
    size_t n_log;
    int n_skipped_health;
    int64_t deadline_us; /* total_timeout for the whole request */
    struct event timer;  /* backoff wait, or while attempting the hedge delay
                            (event_assign'ed when forwarding starts) */
    bool timer_ready;
    int64_t backoff_start_us, backoff_total_ms;
    int64_t backoff_until_us;       /* the backoff's end on the precise clock (lp_now_us) */
    struct lp_attempt *last_failed; /* the latest attempt that failed with an answer or cause */
    bool deadline_hit;
    bool hedge_on;                      /* routing.hedge applies to this request (forward.c) */
    int hedges;                         /* hedged attempts started */
    struct lp_route_alias *route_alias; /* the alias's routing state (routestats.h), hedge_on */

    /* ---- client output (relay.c) ---- */
    struct event flush_ev; /* uncorks the connection after an upstream read batch */
    bool flush_ready, corked;
    void (*drain_fn)(void *); /* backpressure: called once the client's queue drained */
    void *drain_arg;

    /* ---- outcome (the access line and metrics) ---- */
    bool client_gone;
    bool stream_counted;
    bool recorded; /* access line and metrics written */
    int final_status;
    bool error_msg_set;
    char error_msg[256];
    int64_t t0_us, t0_wall_ms, t_first_byte_us, upstream_wait_us;
    size_t bytes_in, bytes_out;
    int64_t tok_in, tok_out, tok_cached;
    const char *abort_reason;        /* static: why a committed stream ended early */
    struct lp_reload_job *admin_job; /* pending POST /admin/reload */

    /* ---- lifecycle ---- */
    int busy;            /* asynchronous entry points on the stack */
    bool finish_pending; /* finish once busy drops to 0 */
    /* Called by lp_request_finish before anything is freed: the owner of in-flight work
     * (forward.c, admin.c) cancels it here. Set while such work exists. */
    void (*on_teardown)(struct lp_request *req);
    /* The drain deadline passed with this request still running (worker.c): the owner ends it
     * in a protocol-correct way and finishes it. NULL: the request is simply finished. */
    void (*on_shutdown)(struct lp_request *req);
    /* The client went away before the request was ended (edge close callback). NULL: the
     * request is finished. */
    void (*on_client_gone)(struct lp_request *req);
    struct lp_arena arena; /* last: its first block is embedded */
};

/* A new request for an edge request on worker w (intake calls this once per request). Copies
 * path, method, query and the peer address; holds a reference to the current config; assigns
 * the request id (a sane client X-Request-Id is kept). Never NULL. */
struct lp_request *lp_request_new(struct lp_worker *w, struct lp_edge_req *er);

/* Move to phase `to`. Debug builds abort on a transition the diagram above does not allow. */
void lp_request_set_phase(struct lp_request *req, enum lp_phase to);
const char *lp_phase_name(enum lp_phase p);
/* Whether from -> to is an allowed transition (for the assertion and its unit test). */
bool lp_phase_transition_ok(enum lp_phase from, enum lp_phase to);

/* Complete replies. They end the edge request (er becomes NULL), move to DONE, and write the
 * access line first (so a client that reads its answer and scrapes /metrics sees it). */
void lp_request_reply(struct lp_request *req, int status, const char *content_type,
                      const char *body, size_t len, const struct lp_edge_header *extra,
                      size_t n_extra);
/* A proxy-generated error in the client's protocol shape (type NULL = the status's default). */
void lp_request_reply_error(struct lp_request *req, int status, const char *type, const char *code,
                            const char *msg);
/* The same with Retry-After (seconds; <= 0 omits it). */
void lp_request_reply_error_retry(struct lp_request *req, int status, const char *type,
                                  const char *code, const char *msg, int64_t retry_after_s);
/* An error body that is already in the client's shape. */
void lp_request_reply_error_body(struct lp_request *req, int status, const char *body, size_t len,
                                 const struct lp_edge_header *extra, size_t n_extra);
/* Remember the first error message for the access line (masked there). */
void lp_request_note_error(struct lp_request *req, const char *msg, size_t len);

/* Release everything the request owns and free it: calls on_teardown, aborts the edge request if
 * nobody answered, writes the access line if not yet written. Exactly once; deferred while an
 * entry point is on the stack. */
void lp_request_finish(struct lp_request *req);

static inline void lp_request_enter(struct lp_request *req)
{
    req->busy++;
}
/* Leave an entry point; finishes the request if that was requested meanwhile. Never touch req
 * after it. */
void lp_request_leave(struct lp_request *req);

/* Check the proxy (or admin) key; on failure replies 401 and returns false. */
bool lp_request_check_auth(struct lp_request *req, const char *key);
/* Constant-time key check of the request's Authorization Bearer / x-api-key against key ("" or
 * NULL key = no auth configured = true). */
bool lp_request_key_ok(const struct lp_edge_req *er, const char *key);

/* reqlog.c: write the access-log line and record metrics, once. */
void lp_reqlog_write(struct lp_request *req);
/* Count a stream aborted after commit, once per request (metrics; the access line shows it). */
void lp_reqlog_abort(struct lp_request *req, const char *reason);
void lp_reqlog_failover(struct lp_request *req, const char *reason);
void lp_reqlog_retry(struct lp_request *req);
void lp_reqlog_backoff(struct lp_request *req, int64_t delay_ms);

#endif
