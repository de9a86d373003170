/* request.c - a client exchange's lifecycle: new, phases, replies, finish (see request.h). */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apierr.h"
#include "edge.h"
#include "log.h"
#include "reqid.h"
#include "runtime.h"
#include "traffic.h"
#include "util/alloc.h"
#include "util/assert.h"
#include "util/clock.h"
#include "worker.h"

/* ---- phases --------------------------------------------------------------------------------- */

static const char *const phase_names[LP_PHASE__COUNT] = {
    [LP_PHASE_INTAKE] = "intake",     [LP_PHASE_WAITING] = "waiting",
    [LP_PHASE_PLANNING] = "planning", [LP_PHASE_ATTEMPTING] = "attempting",
    [LP_PHASE_BACKOFF] = "backoff",   [LP_PHASE_COMMITTED] = "committed",
    [LP_PHASE_DONE] = "done",
};

const char *lp_phase_name(enum lp_phase p)
{
    return (int)p >= 0 && p < LP_PHASE__COUNT ? phase_names[p] : "?";
}

/* Allowed transitions, as bits of the target phase per source phase (request.h's diagram).
 * Staying in a phase is always allowed (e.g. ATTEMPTING while a second attempt starts). */
#define BIT(p) (1u << (p))
static const unsigned allowed[LP_PHASE__COUNT] = {
    [LP_PHASE_INTAKE] = BIT(LP_PHASE_WAITING) | BIT(LP_PHASE_PLANNING) | BIT(LP_PHASE_DONE),
    [LP_PHASE_WAITING] = BIT(LP_PHASE_PLANNING) | BIT(LP_PHASE_ATTEMPTING) | BIT(LP_PHASE_DONE),
    [LP_PHASE_PLANNING] = BIT(LP_PHASE_WAITING) | BIT(LP_PHASE_ATTEMPTING) | BIT(LP_PHASE_DONE),
    [LP_PHASE_ATTEMPTING] = BIT(LP_PHASE_WAITING) | BIT(LP_PHASE_BACKOFF) |
                            BIT(LP_PHASE_COMMITTED) | BIT(LP_PHASE_DONE),
    [LP_PHASE_BACKOFF] = BIT(LP_PHASE_ATTEMPTING) | BIT(LP_PHASE_DONE),
    [LP_PHASE_COMMITTED] = BIT(LP_PHASE_DONE),
    [LP_PHASE_DONE] = 0,
};

bool lp_phase_transition_ok(enum lp_phase from, enum lp_phase to)
{
    if ((int)from < 0 || from >= LP_PHASE__COUNT || (int)to < 0 || to >= LP_PHASE__COUNT)
        return false;
    return from == to || (allowed[from] & BIT(to)) != 0;
}

void lp_request_set_phase(struct lp_request *req, enum lp_phase to)
{
    LP_DEBUG_ASSERT(lp_phase_transition_ok(req->phase, to));
    req->phase = to;
}

/* ---- the worker's live list (drain) --------------------------------------------------------- */

static void live_add(struct lp_request *req)
{
    struct lp_worker *w = req->w;
    req->live_next = w->live;
    if (w->live)
        w->live->live_prev = req;
    w->live = req;
}

static void live_remove(struct lp_request *req)
{
    struct lp_worker *w = req->w;
    if (req->live_prev)
        req->live_prev->live_next = req->live_next;
    else
        w->live = req->live_next;
    if (req->live_next)
        req->live_next->live_prev = req->live_prev;
    req->live_prev = req->live_next = NULL;
}

/* ---- new and finish ------------------------------------------------------------------------- */

struct lp_request *lp_request_new(struct lp_worker *w, struct lp_edge_req *er)
{
    struct lp_request *req = lp_xcalloc(1, sizeof *req);
    lp_arena_init(&req->arena, 0);
    req->w = w;
    req->er = er;
    req->rt = w->rt;
    req->cfg = lp_runtime_config(w->rt);
    req->t0_us = lp_now_us();
    req->t0_wall_ms = lp_wall_ms();
    req->path = lp_arena_strdup(&req->arena, lp_edge_req_path(er));
    req->query = lp_arena_strdup(&req->arena, lp_edge_req_query(er));
    req->method = lp_arena_strdup(&req->arena, lp_edge_req_method(er));
    snprintf(req->peer, sizeof req->peer, "%s", lp_edge_req_peer_ip(er));
    const char *rid = lp_edge_req_header(er, "X-Request-Id");
    if (rid && lp_reqid_sane(rid))
        snprintf(req->id, sizeof req->id, "%s", rid);
    else
        lp_reqid_new(&w->rng, req->id);
    req->body = lp_edge_req_body(er, &req->body_len);
    req->bytes_in = req->body_len;
    req->tok_in = req->tok_out = req->tok_cached = -1;
    w->requests++;
    live_add(req);
    atomic_fetch_add(&w->rt->active_requests, 1);
    return req;
}

void lp_request_finish(struct lp_request *req)
{
    if (req->busy) {
        /* Inside an asynchronous entry point: finish when it unwinds. */
        req->finish_pending = true;
        return;
    }
    if (req->on_teardown)
        req->on_teardown(req);
    if (req->er) {
        /* Nobody answered (client gone or shutdown): close without a response. */
        lp_edge_abort(req->er);
        req->er = NULL;
    }
    if (req->flush_ready)
        event_del(&req->flush_ev);
    lp_reqlog_write(req);
    if (req->trace.sampled)
        lp_trace_end(req);  /* every attempt is recorded now */
    lp_traffic_finish(req); /* slots, queue places, the admission ticket */
    if (req->stream_counted)
        atomic_fetch_sub(&req->rt->active_streams, 1);
    atomic_fetch_sub(&req->rt->active_requests, 1);
    if (req->llm)
        atomic_fetch_sub(&req->rt->active_llm, 1);
    req->w->requests--;
    live_remove(req);
    lp_jscan_free(&req->scan);
    lp_config_unref(req->cfg);
    lp_arena_free(&req->arena);
    free(req);
}

void lp_request_leave(struct lp_request *req)
{
    if (--req->busy == 0 && req->finish_pending)
        lp_request_finish(req);
}

/* ---- replies -------------------------------------------------------------------------------- */

void lp_request_note_error(struct lp_request *req, const char *msg, size_t len)
{
    if (req->error_msg_set)
        return;
    snprintf(req->error_msg, sizeof req->error_msg, "%.*s", (int)(len > 200 ? 200 : len),
             msg ? msg : "");
    req->error_msg_set = true;
}

void lp_request_reply(struct lp_request *req, int status, const char *content_type,
                      const char *body, size_t len, const struct lp_edge_header *extra,
                      size_t n_extra)
{
    struct lp_edge_header h[40];
    size_t n = 0;
    h[n++] = (struct lp_edge_header){"Content-Type", content_type};
    h[n++] = (struct lp_edge_header){"X-Request-Id", req->id};
    for (size_t i = 0; i < n_extra && n < sizeof h / sizeof h[0]; i++)
        h[n++] = extra[i];
    req->final_status = status;
    req->bytes_out += len;
    lp_request_set_phase(req, LP_PHASE_DONE); /* a complete response: committed and over */
    lp_reqlog_write(req);
    if (!req->er)
        return;
    if (!req->client_gone)
        lp_edge_respond(req->er, status, h, n, body, len);
    else
        lp_edge_abort(req->er);
    req->er = NULL;
}

void lp_request_reply_error_body(struct lp_request *req, int status, const char *body, size_t len,
                                 const struct lp_edge_header *extra, size_t n_extra)
{
    lp_request_note_error(req, body, len);
    lp_request_reply(req, status, "application/json", body, len, extra, n_extra);
}

void lp_request_reply_error_retry(struct lp_request *req, int status, const char *type,
                                  const char *code, const char *msg, int64_t retry_after_s)
{
    size_t len = 0;
    char *body = lp_apierr_body(req->client, status, type, code, msg, req->id, &len);
    char ra[24];
    struct lp_edge_header extra = {"Retry-After", ra};
    if (retry_after_s > 0)
        snprintf(ra, sizeof ra, "%lld", (long long)retry_after_s);
    lp_request_reply_error_body(req, status, body, len, &extra, retry_after_s > 0 ? 1 : 0);
    free(body);
}

void lp_request_reply_error(struct lp_request *req, int status, const char *type, const char *code,
                            const char *msg)
{
    lp_request_reply_error_retry(req, status, type, code, msg, 0);
}

/* ---- auth ----------------------------------------------------------------------------------- */

bool lp_request_key_ok(const struct lp_edge_req *er, const char *key)
{
    if (!key || !*key)
        return true;
    size_t klen = strlen(key);
    const char *auth = lp_edge_req_header(er, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        if (lp_ct_equal(t, strlen(t), key, klen))
            return true;
    }
    const char *xk = lp_edge_req_header(er, "x-api-key");
    return xk && lp_ct_equal(xk, strlen(xk), key, klen);
}

bool lp_request_check_auth(struct lp_request *req, const char *key)
{
    if (lp_request_key_ok(req->er, key))
        return true;
    bool presented =
        lp_edge_req_header(req->er, "Authorization") || lp_edge_req_header(req->er, "x-api-key");
    lp_request_reply_error(req, 401, NULL, "invalid_api_key",
                           presented ? "Invalid API key"
                                     : "Missing API key: send it as 'Authorization: Bearer <key>' "
                                       "or 'x-api-key: <key>'");
    return false;
}
