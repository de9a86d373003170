/* forward.c - the attempt loop (see forward.h).
 *
 * Phases handled here: PLANNING (lp_forward_begin), ATTEMPTING and BACKOFF (attempts and the
 * request timer), COMMITTED (the winner relays), DONE (answered; finishing).
 *
 * Entry points: lp_forward_begin (intake), conclude() (every attempt outcome, from inside that
 * attempt's callbacks), on_request_timer (backoff, hedge delay), lp_forward_client_gone (edge close
 * callback) and on_shutdown (worker drain deadline). All run on the worker's loop; the attempt
 * callbacks and the timer hold the request (lp_request_enter), so a finish requested from inside
 * them is deferred until they unwind.
 */
#include "forward.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apierr.h"
#include "attempt.h"
#include "backoff.h"
#include "decide.h"
#include "edge.h"
#include "failfeed.h"
#include "health.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "proto/synth.h"
#include "proto/xlat.h"
#include "quota.h"
#include "relay.h"
#include "request.h"
#include "router.h"
#include "routestats.h"
#include "runtime.h"
#include "traffic.h"
#include "util/alloc.h"
#include "util/assert.h"
#include "util/clock.h"
#include "worker.h"

static void conclude(struct lp_attempt *a, const struct lp_outcome *o);
static void next_attempt(struct lp_request *req);
static void start_next(struct lp_request *req, bool hedge);
static void arm_hedge(struct lp_request *req);
static void on_shutdown(struct lp_request *req);

/* ---- small helpers ------------------------------------------------------------------------- */

static int64_t remaining_ms(const struct lp_request *req)
{
    int64_t left = (req->deadline_us - lp_now_us()) / 1000;
    return left > 0 ? left : 0;
}

static int tries_in_flight(const struct lp_request *req, const struct lp_attempt *except)
{
    int n = 0;
    for (int i = 0; i < LP_MAX_INFLIGHT; i++)
        n += req->tries[i] && req->tries[i] != except;
    return n;
}

static void untrack(struct lp_request *req, struct lp_attempt *a)
{
    for (int i = 0; i < LP_MAX_INFLIGHT; i++)
        if (req->tries[i] == a)
            req->tries[i] = NULL;
}

static bool track(struct lp_request *req, struct lp_attempt *a)
{
    for (int i = 0; i < LP_MAX_INFLIGHT; i++) {
        if (!req->tries[i]) {
            req->tries[i] = a;
            return true;
        }
    }
    return false;
}

static void timer_stop(struct lp_request *req)
{
    if (req->timer_ready && evtimer_pending(&req->timer, NULL))
        evtimer_del(&req->timer);
}

/* ---- the balancer's numbers (routestats.h) ------------------------------------------------- */

/* The router's load_fn: the route's entry in the shared store and what it knows now. */
static void *routing_load(void *ctx, const struct lp_backend *b, const char *model, bool stream,
                          int64_t now_ms, int64_t decay_ms, struct lp_balance_item *out)
{
    struct lp_routestats *s = ctx;
    struct lp_routestat *e = lp_routestats_get(s, b->name, model);
    lp_routestats_item(s, e, stream, now_ms, decay_ms, out);
    return e;
}

static uint64_t routing_rr(void *ctx, const struct lp_alias *alias)
{
    return lp_routestats_rr_next(ctx, alias->name);
}

static int64_t decay_of(const struct lp_attempt *a)
{
    return a->cand->alias->routing.decay_ms;
}

static const char *attempt_header(void *ctx, const char *name)
{
    return lp_attempt_header(ctx, name);
}

/* One cheap pass: does the answer carry any rate-limit header at all (most do not)? */
static bool has_ratelimit_headers(const struct lp_attempt *a)
{
    size_t n = lp_attempt_header_count(a);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        lp_attempt_header_at(a, i, &name, &value);
        if (!name)
            continue;
        char c = (char)(name[0] | 0x20);
        if ((c == 'x' && strncasecmp(name, "x-ratelimit-", 12) == 0) ||
            (c == 'a' && strncasecmp(name, "anthropic-ratelimit-", 20) == 0))
            return true;
    }
    return false;
}

/* A usable answer (first event, or a complete body) arrived: its latency is a sample, and its
 * rate-limit headers say how much quota the route has left. */
static void routing_answered(struct lp_attempt *a)
{
    struct lp_routestats *s = a->req->rt->routestats;
    if (!s || !a->cand->stat)
        return;
    if (a->first_us) {
        double ms = (double)(a->first_us - a->start_us) / 1000.0;
        lp_routestats_latency(s, a->cand->stat, a->req->stream, ms, lp_now_ms(), decay_of(a));
        if (a->req->hedge_on && a->req->alias->routing.hedge.delay_pct > 0)
            lp_routestats_ttft(s, a->req->route_alias, ms);
    }
    if (!has_ratelimit_headers(a))
        return;
    struct lp_quota_reading q;
    lp_quota_read(attempt_header, a, lp_wall_ms(), &q);
    lp_routestats_quota(s, a->cand->stat, &q, lp_now_ms());
}

/* The attempt is over (its record is written): out of the in-flight count; one that never got
 * its first byte took at least this long. */
static void routing_over(struct lp_attempt *a)
{
    if (!a->lb_counted)
        return;
    a->lb_counted = false;
    lp_routestats_end(a->cand->stat);
    if (a->first_us || strcmp(a->cls, "refused") == 0 ||
        strcmp(a->cls, lp_class_name(LP_CLASS_LOCAL)) == 0)
        return;
    lp_routestats_silent(a->req->rt->routestats, a->cand->stat, a->req->stream,
                         (double)(a->end_us - a->start_us) / 1000.0, lp_now_ms(), decay_of(a));
}

/* A hedged attempt's result, counted once: won, lost, failed or cancelled. */
static void hedge_result(struct lp_attempt *a, const char *result)
{
    if (!a->hedge || a->hedge_counted)
        return;
    a->hedge_counted = true;
    const char *l[] = {result};
    lp_metrics_inc(a->req->w->metrics, LP_M_HEDGES_TOTAL, l, 1);
}

/* The attempt that lost a hedged race was sent upstream and cancelled: its cost is unknown (no
 * usage came back), so count the prompt estimate (body bytes / 4, as admission does) plus any
 * output tokens a loser's buffered answer reported. */
static void hedge_loser_cost(struct lp_attempt *a)
{
    int64_t in = 0, out = 0, cached = 0;
    if (a->resp.len && a->status >= 200 && a->status < 300)
        lp_xlat_usage(a->cand->protocol, a->resp.data, a->resp.len, &in, &out, &cached);
    if (in <= 0)
        in = (int64_t)(a->req->body_len / 4);
    const char *l[] = {a->req->alias->name};
    lp_metrics_inc(a->req->w->metrics, LP_M_HEDGE_LOSER_TOKENS_TOTAL, l,
                   (uint64_t)(in + (out > 0 ? out : 0)));
}

/* ---- the record ----------------------------------------------------------------------------- */

/* Write the attempt's record once: class, status, cause, timings, and for a failure the answer
 * the all-failed reply quotes. */
static void record(struct lp_attempt *a, const char *cls, const char *cause)
{
    struct lp_request *req = a->req;
    if (a->cls)
        return;
    a->cls = cls;
    a->rec_status = a->status;
    snprintf(a->cause, sizeof a->cause, "%.*s", (int)sizeof a->cause - 1, cause ? cause : "");
    if (!a->end_us)
        a->end_us = lp_now_us();
    req->upstream_wait_us += a->end_us - a->start_us;
    lp_traffic_attempt_end(a, cls); /* the backend slot goes back; feeds the adaptive limit */
    routing_over(a);
}

static void record_failure(struct lp_attempt *a, const struct lp_decision *d)
{
    record(a, lp_class_name(d->cls), d->reason);
    a->err_cls = d->cls;
    a->hint_ms = d->hint_ms;
    a->err_proto = a->cand->protocol;
    if (a->status) {
        lp_buf_reset(&a->err_body);
        lp_buf_append(&a->err_body, a->resp.data ? a->resp.data : "", a->resp.len);
    }
    a->req->last_failed = a;
}

/* ---- health: the ticket is consumed exactly once -------------------------------------------- */

static void health_failure(struct lp_attempt *a, const struct lp_decision *d)
{
    const struct lp_candidate *c = a->cand;
    lp_health_report_failure(a->req->rt->health, a->req->cfg, c->backend->name, c->route->model, d,
                             lp_now_ms(), lp_wall_ms(), &a->ticket);
    if (a->req->trace.sampled && d->cooldown)
        a->trace.cooldown_ms = d->cooldown_ms;
    if (d->breaker_failure)
        lp_routestats_failure(a->req->rt->routestats, c->stat, lp_now_ms(), decay_of(a));
}

static void health_success(struct lp_attempt *a)
{
    const struct lp_candidate *c = a->cand;
    lp_health_report_success(a->req->rt->health, a->req->cfg, c->backend->name, c->route->model,
                             lp_now_ms(), &a->ticket);
}

static void health_release(struct lp_attempt *a)
{
    const struct lp_candidate *c = a->cand;
    if (!a->ticket.held)
        return; /* already reported (a final outcome came first) */
    lp_health_release(a->req->rt->health, c->backend->name, c->route->model, &a->ticket);
}

/* Record the outcome and report it to health (once). READY reports nothing yet: the stream's
 * end will. */
static void settle(struct lp_attempt *a, const struct lp_outcome *o)
{
    switch (o->kind) {
    case LP_OUT_READY:
        routing_answered(a);
        break;
    case LP_OUT_COMPLETE:
        routing_answered(a);
        record(a, "ok", "");
        health_success(a);
        break;
    case LP_OUT_FAILED:
        record_failure(a, &o->d);
        health_failure(a, &o->d);
        hedge_result(a, "failed");
        break;
    case LP_OUT_STREAM_END:
        if (o->end == LP_END_CLEAN) {
            record(a, "ok", "");
            health_success(a);
        } else if (o->end == LP_END_CLIENT_GONE) {
            record(a, "client_gone", o->why);
            health_release(a); /* the client left: not the backend's fault */
        } else {
            record_failure(a, &o->d);
            health_failure(a, &o->d);
        }
        break;
    case LP_OUT_DEADLINE: {
        char why[96];
        snprintf(why, sizeof why, "total_timeout (%lld ms) reached",
                 (long long)a->req->cfg->timeout.total_ms);
        record(a, "timeout", why);
        health_release(a); /* the request ran out of time, not the backend */
        break;
    }
    case LP_OUT_LOCAL:
        record(a, lp_class_name(LP_CLASS_LOCAL), o->why);
        health_release(a);
        lp_log_warn(a->req->id, "local failure before reaching %s: %s", a->cand->backend->name,
                    o->why ? o->why : "");
        break;
    case LP_OUT_REFUSED:
        record(a, "refused", o->refuse_msg);
        health_release(a);
        break;
    case LP_OUT_CANCELLED:
        record(a, o->end == LP_END_CLIENT_GONE ? "client_gone" : "cancelled", o->why);
        health_release(a);
        break;
    }
}

/* ---- ending the request: the one way out ---------------------------------------------------- */

/* Cancel every attempt still in flight (recorded as cancelled, nobody blamed). */
static void cancel_tries(struct lp_request *req, const struct lp_attempt *keep, const char *why)
{
    for (int i = 0; i < LP_MAX_INFLIGHT; i++) {
        struct lp_attempt *a = req->tries[i];
        if (!a || a == keep)
            continue;
        req->tries[i] = NULL;
        record(a, req->client_gone ? "client_gone" : "cancelled", why);
        health_release(a);
        hedge_result(a, keep ? "lost" : "cancelled");
        if (keep && req->hedges > 0)
            hedge_loser_cost(a);
        lp_attempt_release(a);
    }
}

/* The request has its answer (or cannot get one): release everything and finish. */
static void end_request(struct lp_request *req)
{
    cancel_tries(req, NULL, "request ended");
    timer_stop(req);
    lp_request_set_phase(req, LP_PHASE_DONE);
    lp_request_finish(req);
}

/* on_teardown hook: whatever is left when the request is freed. */
static void teardown(struct lp_request *req)
{
    cancel_tries(req, NULL, "request ended");
    timer_stop(req);
    for (size_t i = 0; i < req->n_log; i++)
        lp_attempt_dispose(req->log[i]);
}

/* ---- replies before commit ------------------------------------------------------------------ */

static void append_attempts(struct lp_buf *b, const struct lp_request *req)
{
    for (size_t i = 0; i < req->n_log; i++) {
        const struct lp_attempt *r = req->log[i];
        lp_buf_printf(b, "%s%s/%s: %s", i ? "; " : "", r->cand->backend->name,
                      r->cand->route->model, r->cls ? r->cls : "?");
        if (r->rec_status)
            lp_buf_printf(b, " %d", r->rec_status);
        if (r->cause[0])
            lp_buf_printf(b, " (%s)", r->cause);
    }
}

static int64_t retry_after_s(int64_t hint_ms)
{
    return hint_ms > 0 ? (hint_ms + 999) / 1000 : 0;
}

static void reply_all_cooling(struct lp_request *req)
{
    int64_t wait_s = 1;
    if (req->plan.soonest_until_ms > 0) {
        int64_t ms = req->plan.soonest_until_ms - lp_now_ms();
        wait_s = ms > 0 ? (ms + 999) / 1000 : 1;
    }
    char msg[400];
    snprintf(msg, sizeof msg,
             "All routes for model '%.100s' are temporarily unavailable (cooling down, circuit "
             "open or drained); retry after %lld s",
             req->alias_name, (long long)wait_s);
    lp_request_reply_error_retry(req, 503, NULL, "all_routes_unavailable", msg, wait_s);
}

/* No attempt is left: the last failure's class decides the status and error type, in the
 * client's protocol (never a 2xx: an error inside a 200 gets its class's status). */
/* count_tokens on an alias none of whose routes speaks Anthropic (no translator exists for
 * it): a local estimate, marked as such, rather than a 502 that SDKs would retry. */
static bool reply_token_estimate(struct lp_request *req)
{
    if (req->ep != LP_EP_COUNT_TOKENS || req->plan.skipped_protocol == 0)
        return false;
    int64_t n = lp_xlat_estimate_tokens(req->body, req->body_len);
    if (n < 0) {
        lp_request_reply_error(req, 400, "invalid_request_error", NULL,
                               "request body must be a JSON object");
        return true;
    }
    char body[64];
    int len = snprintf(body, sizeof body, "{\"input_tokens\":%lld}", (long long)n);
    struct lp_edge_header h = {"X-LLM-Proxy-Token-Count", "estimate"};
    lp_log_info(req->id, "count_tokens for '%s' estimated locally (no Anthropic route)",
                req->alias_name);
    lp_request_reply(req, 200, "application/json", body, (size_t)len, &h, 1);
    return true;
}

static void reply_all_failed(struct lp_request *req, bool deadline_hit)
{
    const struct lp_attempt *last = req->last_failed;
    if (req->n_log == 0 || !last) {
        if (reply_token_estimate(req))
            return;
        if (req->n_skipped_health > 0 || req->plan.skipped_cooling || req->plan.skipped_open ||
            req->plan.skipped_drained) {
            reply_all_cooling(req);
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "No usable route for model '%.100s' on endpoint %.100s",
                     req->alias_name, req->path);
            lp_request_reply_error(req, 502, NULL, "no_route", msg);
        }
        return;
    }
    enum lp_err_class cls = deadline_hit ? LP_CLASS_TIMEOUT : last->err_cls;
    struct lp_class_reply cr = lp_apierr_for_class(req->client, cls, last->rec_status);
    struct lp_buf b;
    lp_buf_init(&b, 16384);
    lp_buf_printf(&b, "All %zu attempts failed", req->n_log);
    if (last->err_body.len) {
        char type[64] = "", umsg[256] = "";
        lp_sse_event_error_info(last->err_proto, last->err_body.data, last->err_body.len, type,
                                sizeof type, umsg, sizeof umsg);
        /* Upstreams sometimes echo a key in their error message: mask it before it reaches the
         * client (the attempt causes are masked by classify). */
        size_t n_sec;
        const char *const *secrets = lp_config_secrets(req->cfg, &n_sec);
        lp_buf_appends(&b, "; last upstream error: ");
        if (umsg[0])
            lp_mask(umsg, strlen(umsg), &b, secrets, n_sec);
        else
            lp_buf_appends(&b, last->cause[0] ? last->cause : "(no message)");
    }
    lp_buf_appends(&b, ". Attempts: ");
    append_attempts(&b, req);
    int64_t ra = 0;
    if (cr.status == 429 || cr.status == 503 || cr.status == 529)
        ra = retry_after_s(last->hint_ms);
    lp_request_reply_error_retry(req, cr.status, cr.type, cr.code ? cr.code : "all_backends_failed",
                                 b.data, ra);
    lp_buf_free(&b);
}

/* An error the client must see as it is (its own request's fault: 400 context length, content
 * policy...), translated to its protocol's shape; a 2xx (in-band) status gets its class's. */
static void reply_upstream_error(struct lp_request *req, struct lp_attempt *a,
                                 const struct lp_decision *d)
{
    int status = a->status;
    if (status < 400) {
        struct lp_class_reply cr = lp_apierr_for_class(req->client, d->cls, status);
        status = cr.status;
    }
    size_t len = 0;
    char *body =
        lp_xlat_error(a->cand->protocol, req->client, status, a->resp.data, a->resp.len, &len);
    const char *ra = lp_attempt_header(a, "Retry-After");
    struct lp_edge_header extra = {"Retry-After", ra};
    if (body) {
        lp_request_reply_error_body(req, status, body, len, &extra, ra ? 1 : 0);
        free(body);
    } else {
        lp_request_reply_error_body(req, status, a->resp.data ? a->resp.data : "", a->resp.len,
                                    &extra, ra ? 1 : 0);
    }
}

static void reply_deadline(struct lp_request *req)
{
    char msg[400];
    struct lp_buf b;
    lp_buf_init(&b, 8192);
    append_attempts(&b, req);
    snprintf(msg, sizeof msg, "total_timeout (%lld ms) reached. Attempts: %s",
             (long long)req->cfg->timeout.total_ms, b.data ? b.data : "");
    lp_buf_free(&b);
    lp_request_reply_error(req, 504, NULL, "upstream_timeout", msg);
}

/* ---- the commit point ----------------------------------------------------------------------- */

/* A complete answer commits by being sent whole. A streaming client whose upstream ignored
 * `stream: true` gets the answer replayed as a well-formed stream of its protocol. */
static void commit_complete(struct lp_request *req, struct lp_attempt *a)
{
    const char *body = a->resp.data ? a->resp.data : "";
    size_t len = a->resp.len;
    lp_xlat_usage(req->client, body, len, &req->tok_in, &req->tok_out, &req->tok_cached);
    req->t_first_byte_us = lp_now_us();
    size_t slen = 0;
    char *sse = NULL;
    if (req->stream && req->chat &&
        (sse = lp_synth_stream(req->client, body, len, req->scan.has_stream_options_include_usage,
                               &slen))) {
        lp_log_info(req->id, "%s answered a stream request with one JSON body; replayed as SSE",
                    a->cand->backend->name);
        struct lp_edge_header rl[8];
        lp_relay_commit(req, rl, lp_traffic_headers(req, rl, 0, 8));
        lp_relay_write(req, sse, slen);
        free(sse);
        lp_relay_end(req, NULL, LP_END_CLEAN, NULL, NULL, NULL);
        return;
    }
    struct lp_edge_header extra[32];
    size_t n = lp_attempt_response_headers(a, extra, 32, false);
    n = lp_traffic_headers(req, extra, n, 32); /* x-ratelimit-* / anthropic-ratelimit-* */
    const char *ct = a->translate ? NULL : lp_attempt_header(a, "Content-Type");
    lp_request_reply(req, a->status, ct ? ct : "application/json", body, len, extra, n);
}

/* THE COMMIT POINT: attempt a wins. Every other attempt is cancelled; from here on a failure can
 * only end the stream with an error event. */
static void commit(struct lp_request *req, struct lp_attempt *a)
{
    LP_DEBUG_ASSERT(req->winner == NULL);
    req->winner = a;
    timer_stop(req); /* no backoff or hedge is due any more */
    hedge_result(a, "won");
    cancel_tries(req, a, "another attempt answered first");
    if (a->state == LP_ATT_READY) {
        struct lp_edge_header extra[40];
        size_t n = lp_attempt_response_headers(a, extra, 40, true);
        n = lp_traffic_headers(req, extra, n, 40); /* x-ratelimit-* / anthropic-ratelimit-* */
        lp_relay_commit(req, extra, n);
        lp_attempt_commit(a); /* relays the first event; may end the stream (STREAM_END) */
    } else {
        untrack(req, a);
        commit_complete(req, a);
        lp_attempt_release(a);
        end_request(req);
    }
}

/* The committed stream is over (any end) or its deadline passed. */
static void end_stream(struct lp_request *req, struct lp_attempt *a, const struct lp_outcome *o)
{
    struct lp_stream_usage u = a->st.xlat ? lp_stream_xlat_usage(a->st.xlat) : a->st.tap.usage;
    req->tok_in = u.input;
    req->tok_out = u.output;
    req->tok_cached = u.cached;
    if (o->kind == LP_OUT_DEADLINE) {
        char why[96];
        snprintf(why, sizeof why, "total_timeout (%lld ms) reached",
                 (long long)req->cfg->timeout.total_ms);
        lp_relay_end(req, &a->st, LP_END_DEADLINE, "timeout_error", why, "total_timeout");
    } else {
        lp_relay_end(req, &a->st, o->end, o->err_type, o->d.reason, o->abort_reason);
    }
    untrack(req, a);
    lp_attempt_release(a);
    end_request(req);
}

/* ---- backoff -------------------------------------------------------------------------------- */

/* The hedge delay passed while attempting: if the only attempt in flight is still silent (no
 * response head for a non-stream request, no first event for a stream), start the next
 * candidate alongside it. */
static void on_hedge_due(struct lp_request *req)
{
    struct lp_attempt *only = NULL;
    if (tries_in_flight(req, NULL) != 1 || req->hedges >= req->alias->routing.hedge.max_extra)
        return;
    for (int i = 0; i < LP_MAX_INFLIGHT; i++)
        if (req->tries[i])
            only = req->tries[i];
    if (!only || only->first_us || only->state >= LP_ATT_READY)
        return; /* it has spoken: no hedge */
    start_next(req, true);
}

/* The request timer: the end of a backoff, or (while attempting) the hedge delay. */
static void on_request_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_request *req = arg;
    lp_request_enter(req);
    if (req->phase == LP_PHASE_BACKOFF) {
        int64_t now = lp_now_us();
        if (now < req->backoff_until_us) {
            /* libevent's coarse clock can fire a few ms early; a Retry-After is a minimum. */
            int64_t us = req->backoff_until_us - now;
            struct timeval tv = {us / 1000000, us % 1000000};
            evtimer_add(&req->timer, &tv);
            lp_request_leave(req);
            return;
        }
        req->upstream_wait_us += now - req->backoff_start_us;
        lp_request_set_phase(req, LP_PHASE_ATTEMPTING);
        next_attempt(req);
    } else if (req->phase == LP_PHASE_ATTEMPTING && req->hedge_on) {
        on_hedge_due(req);
    }
    lp_request_leave(req);
}

/* While attempting with exactly one attempt in flight that has not spoken, hedging on, a hedge
 * left under max_extra and a candidate left: arm the request timer for the hedge delay (counted
 * from that attempt's start). Otherwise leave the timer alone. */
static void arm_hedge(struct lp_request *req)
{
    if (!req->hedge_on || req->phase != LP_PHASE_ATTEMPTING || req->winner ||
        req->hedges >= req->alias->routing.hedge.max_extra || req->next_cand >= req->n_cands ||
        tries_in_flight(req, NULL) != 1)
        return;
    struct lp_attempt *only = NULL;
    for (int i = 0; i < LP_MAX_INFLIGHT; i++)
        if (req->tries[i])
            only = req->tries[i];
    if (!only || only->first_us || only->state >= LP_ATT_READY)
        return;
    int64_t delay = lp_routestats_hedge_delay(req->rt->routestats, req->route_alias,
                                              &req->alias->routing.hedge);
    int64_t wait_ms = (only->start_us + delay * 1000 - lp_now_us()) / 1000;
    if (wait_ms < 1)
        wait_ms = 1;
    if (wait_ms + LP_MIN_ATTEMPT_MS >= remaining_ms(req))
        return; /* the deadline comes first */
    lp_metrics_observe(req->w->metrics, LP_M_HEDGE_DELAY_SECONDS, NULL, (double)delay / 1000.0);
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    evtimer_add(&req->timer, &tv);
}

static void start_backoff(struct lp_request *req, int64_t delay_ms)
{
    lp_request_set_phase(req, LP_PHASE_BACKOFF);
    req->backoff_start_us = lp_now_us();
    req->backoff_until_us = req->backoff_start_us + delay_ms * 1000;
    req->backoff_total_ms += delay_ms;
    lp_reqlog_backoff(req, delay_ms);
    if (req->trace.sampled)
        lp_trace_backoff(req, delay_ms);
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(&req->timer, &tv);
}

/* The wait before the next attempt: the backoff curve, or the Retry-After hint of the failed
 * attempt when the next candidate is on the same backend. */
static int64_t backoff_for_next(struct lp_request *req, const struct lp_attempt *failed)
{
    int64_t delay = lp_backoff_delay_ms(&req->cfg->fallback, (int)req->n_log, &req->w->rng);
    if (req->next_cand < req->n_cands && failed && failed->hint_ms > delay) {
        const struct lp_candidate *c = &req->cands[req->next_cand];
        if (c->backend == failed->cand->backend && failed->hint_ms < remaining_ms(req))
            delay = failed->hint_ms;
    }
    return delay;
}

/* ---- conclude: every outcome of every attempt ------------------------------------------------ */

static int attempts_left(const struct lp_request *req)
{
    if (req->max_attempts <= 0)
        return 1 << 20;
    return req->max_attempts - (int)req->n_log;
}

static void conclude(struct lp_attempt *a, const struct lp_outcome *o)
{
    struct lp_request *req = a->req;
    settle(a, o);
    bool final = o->kind != LP_OUT_READY && o->kind != LP_OUT_COMPLETE;
    if (final)
        untrack(req, a);
    struct lp_decide_in in = {
        .phase = req->phase,
        .outcome = o->kind,
        .failover = o->d.failover,
        .is_winner = req->winner == a,
        .client_gone = req->client_gone,
        .others_in_flight = tries_in_flight(req, a),
        .cands_left = req->n_cands - req->next_cand,
        .attempts_left = attempts_left(req),
        .time_left_ms = remaining_ms(req),
    };
    if (o->kind == LP_OUT_FAILED && o->d.failover)
        in.backoff_ms = backoff_for_next(req, a);
    struct lp_decide_out d = lp_decide(&in);
    if (o->kind == LP_OUT_FAILED && o->d.failover)
        lp_log_info(req->id, "attempt %d on %s/%s failed (%s): %s; %s", a->seq,
                    a->cand->backend->name, a->cand->route->model, lp_class_name(o->d.cls),
                    o->d.reason,
                    d.next == LP_NEXT_TRY_NEXT || d.next == LP_NEXT_BACKOFF ? "failing over"
                    : d.next == LP_NEXT_ALL_FAILED                          ? "no attempt left"
                                                                            : lp_next_name(d.next));
    if (o->kind == LP_OUT_FAILED && o->d.failover) {
        lp_reqlog_failover(req, lp_class_name(o->d.cls));
        lp_failfeed_note(req->alias ? req->alias->name : NULL, a->cand->backend->name,
                         a->cand->route->model, lp_class_name(o->d.cls), o->d.reason,
                         lp_wall_ms()); /* the status page's latest failovers */
    }
    switch (d.next) {
    case LP_NEXT_COMMIT:
        commit(req, a);
        return;
    case LP_NEXT_CANCEL:
        untrack(req, a);
        record(a, "cancelled", "another attempt answered first");
        health_release(a);
        hedge_result(a, "lost");
        if (req->hedges > 0)
            hedge_loser_cost(a);
        lp_attempt_release(a);
        return;
    case LP_NEXT_WAIT:
        lp_attempt_release(a);
        arm_hedge(req); /* the attempt left may still be silent */
        return;
    case LP_NEXT_TRY_NEXT:
        lp_attempt_release(a);
        next_attempt(req);
        return;
    case LP_NEXT_BACKOFF:
        lp_attempt_release(a);
        start_backoff(req, d.delay_ms);
        return;
    case LP_NEXT_END_STREAM:
        end_stream(req, a, o);
        return;
    case LP_NEXT_REPLY_ERROR:
        reply_upstream_error(req, a, &o->d);
        break;
    case LP_NEXT_REPLY_REFUSED:
        lp_request_reply_error(req, o->refuse_status, o->refuse_type, NULL, o->refuse_msg);
        break;
    case LP_NEXT_REPLY_LOCAL: {
        char msg[256];
        snprintf(msg, sizeof msg, "The proxy is out of local resources (%s); retry shortly",
                 o->why ? o->why : "");
        lp_request_reply_error_retry(req, 503, NULL, "local_resource_exhausted", msg, 1);
        break;
    }
    case LP_NEXT_ALL_FAILED:
        req->deadline_hit |= d.deadline_hit;
        reply_all_failed(req, req->deadline_hit);
        break;
    case LP_NEXT_DEADLINE:
        reply_deadline(req);
        break;
    case LP_NEXT_FINISH:
        if (req->phase == LP_PHASE_COMMITTED && req->winner)
            lp_relay_end(req, &req->winner->st, LP_END_CLIENT_GONE, NULL, NULL, NULL);
        break;
    }
    lp_attempt_release(a);
    end_request(req);
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Start the next startable candidate, or answer that none is left. */
static void on_backend_slot(struct lp_request *req, bool granted);

static void next_attempt(struct lp_request *req)
{
    start_next(req, false);
}

/* A hedge found its candidate but may not run it now (backend saturated, budget empty): give the
 * candidate back for a later failover and undo what was taken. */
static void hedge_put_back(struct lp_request *req, struct lp_health_ticket *t)
{
    const struct lp_candidate *c = &req->cands[req->next_cand - 1];
    if (t)
        lp_health_release(req->rt->health, c->backend->name, c->route->model, t);
    lp_traffic_backend_unacquire(req);
    req->next_cand--;
}

/* Walk the plan from next_cand to the first candidate that can start, and start it. hedge: the
 * new attempt runs alongside the one in flight; nothing is answered when no candidate can start
 * (that attempt still decides), and one refused by its backend's concurrency limit or by the
 * hedge budget is put back for a later failover. */
static void start_next(struct lp_request *req, bool hedge)
{
    size_t first_saturated = SIZE_MAX; /* traffic control: the first candidate at its limit */
    while (req->next_cand < req->n_cands) {
        if (attempts_left(req) <= 0)
            break;
        if (remaining_ms(req) < LP_MIN_ATTEMPT_MS) {
            if (hedge)
                return;
            req->deadline_hit = true; /* too little time left for a meaningful attempt */
            break;
        }
        const struct lp_candidate *c = &req->cands[req->next_cand++];
        if (!lp_attempt_can_serve(req, c)) {
            lp_log_debug(req->id, "route %s/%s skipped: it cannot serve %s", c->backend->name,
                         c->route->model, req->path);
            continue;
        }
        if (!lp_traffic_backend_acquire(req, c)) { /* at its in-flight limit: skip like cooling */
            if (hedge) {
                req->next_cand--; /* nothing acquired: just leave it for a failover */
                lp_log_debug(req->id, "no hedge on %s/%s: backend at its concurrency limit",
                             c->backend->name, c->route->model);
                return;
            }
            if (first_saturated == SIZE_MAX)
                first_saturated = req->next_cand - 1;
            lp_log_debug(req->id, "route %s/%s skipped: backend at its concurrency limit",
                         c->backend->name, c->route->model);
            continue;
        }
        struct lp_health_ticket t;
        if (!lp_health_admit(req->rt->health, req->cfg, c->backend->name, c->route->model,
                             lp_now_ms(), &t)) {
            lp_traffic_backend_unacquire(req);
            req->n_skipped_health++;
            lp_log_debug(req->id, "route %s/%s skipped: circuit open or trial slots taken",
                         c->backend->name, c->route->model);
            continue;
        }
        if (hedge && !lp_routestats_hedge_take(req->rt->routestats, req->route_alias)) {
            hedge_put_back(req, &t);
            const char *l[] = {req->alias->name};
            lp_metrics_inc(req->w->metrics, LP_M_HEDGE_BUDGET_DENIED_TOTAL, l, 1);
            lp_log_debug(req->id, "no hedge: the hedge budget of '%s' is empty", req->alias->name);
            return;
        }
        if (req->n_log > 0 && !hedge)
            lp_reqlog_retry(req);
        struct lp_outcome early;
        bool started;
        struct lp_attempt *a =
            lp_attempt_start(req, c, &t, (int)req->n_log + 1, conclude, &early, &started);
        lp_traffic_backend_bind(req, a);
        lp_routestats_begin(c->stat);
        a->lb_counted = true;
        if (hedge) {
            a->hedge = true;
            req->hedges++;
            lp_log_info(req->id, "hedge: attempt %d on %s/%s started alongside a silent one",
                        a->seq, c->backend->name, c->route->model);
        }
        if (req->n_log < LP_MAX_ATTEMPTS)
            req->log[req->n_log++] = a;
        lp_request_set_phase(req, LP_PHASE_ATTEMPTING);
        if (LP_COUNT_IF(!track(req, a))) {
            early = (struct lp_outcome){.kind = LP_OUT_LOCAL, .why = "too many attempts in flight"};
            started = false;
        }
        if (!started && hedge && early.kind == LP_OUT_REFUSED) {
            /* This candidate cannot take the body (translation refused it); the attempt in
             * flight still can: the refusal is not the request's answer. */
            untrack(req, a);
            record(a, "refused", early.refuse_msg);
            health_release(a);
            hedge_result(a, "failed");
            lp_attempt_release(a);
            return;
        }
        if (!started)
            conclude(a, &early);
        else
            arm_hedge(req);
        return;
    }
    if (hedge)
        return; /* nothing to hedge with: the attempt in flight decides */
    if (first_saturated != SIZE_MAX && tries_in_flight(req, NULL) == 0) {
        /* Every remaining candidate is saturated: wait for a slot rather than fail. */
        if (!req->deadline_hit && attempts_left(req) > 0 &&
            lp_traffic_backend_wait(req, first_saturated, on_backend_slot)) {
            req->next_cand = first_saturated;
            return;
        }
        if (!req->last_failed) {
            lp_traffic_reply_saturated(req);
            end_request(req);
            return;
        }
    }
    reply_all_failed(req, req->deadline_hit && req->last_failed);
    end_request(req);
}

/* traffic.c: a backend slot was handed over (granted), or the wait timed out. */
static void on_backend_slot(struct lp_request *req, bool granted)
{
    if (granted) {
        next_attempt(req);
        return;
    }
    lp_traffic_reply_saturated(req);
    end_request(req);
}

void lp_forward_begin(struct lp_request *req)
{
    lp_request_set_phase(req, LP_PHASE_PLANNING);
    req->on_teardown = teardown;
    req->on_shutdown = on_shutdown;
    req->on_client_gone = lp_forward_client_gone;
    event_assign(&req->timer, req->w->base, -1, 0, on_request_timer, req);
    req->timer_ready = true;
    const struct lp_timeouts *t = &req->cfg->timeout;
    req->deadline_us = req->t0_us + t->total_ms * 1000; /* > 0: the config always sets it */
    struct lp_plan_opts o = {
        .client_proto = req->client,
        .allow_cross_protocol = req->chat, /* only chat endpoints have translators */
        .state_fn = lp_health_state_fn,
        .state_ctx = req->rt->health,
        .now_ms = lp_now_ms(),
        .rng = &req->w->rng,
        .include_unusable = req->cfg->fallback.when_all_cooling == LP_ALL_COOLING_TRY_SOONEST,
        .load_fn = req->rt->routestats ? routing_load : NULL,
        .rr_fn = req->rt->routestats ? routing_rr : NULL,
        .load_ctx = req->rt->routestats,
        .stream = req->stream,
    };
    struct lp_candidate cands[LP_MAX_CANDIDATES];
    req->n_cands = lp_router_plan(req->cfg, req->alias, &o, cands, LP_MAX_CANDIDATES, &req->plan);
    req->cands = lp_arena_alloc(&req->arena, req->n_cands * sizeof *cands);
    memcpy(req->cands, cands, req->n_cands * sizeof *cands);
    if (req->plan.skipped_protocol)
        lp_log_info(req->id, "%zu route(s) of '%s' skipped: backend protocol cannot serve %s",
                    req->plan.skipped_protocol, req->alias_name, req->path);
    req->max_attempts = lp_plan_max_attempts(&req->cfg->fallback, req->n_cands);
    /* Hedging: chat completions and messages only, with a second candidate to hedge with. */
    if (req->alias->routing.hedge.enabled && req->chat && req->n_cands > 1 && req->rt->routestats) {
        req->route_alias = lp_routestats_alias(req->rt->routestats, req->alias->name);
        req->hedge_on = req->route_alias != NULL;
        lp_routestats_hedge_credit(req->rt->routestats, req->route_alias,
                                   req->alias->routing.hedge.budget_percent);
    }
    lp_request_enter(req);
    next_attempt(req);
    lp_request_leave(req);
}

void lp_forward_client_gone(struct lp_request *req)
{
    req->client_gone = true;
    lp_log_info(req->id, "client disconnected%s",
                req->phase == LP_PHASE_COMMITTED ? " mid-stream" : "");
    lp_request_enter(req);
    struct lp_attempt *w = req->winner;
    if (w && req->phase == LP_PHASE_COMMITTED) {
        /* The relaying attempt's outcome: the client left; nobody is blamed. */
        struct lp_outcome o = {.kind = LP_OUT_STREAM_END,
                               .end = LP_END_CLIENT_GONE,
                               .why = "client disconnected mid-stream"};
        conclude(w, &o);
    } else if (req->phase != LP_PHASE_DONE) {
        end_request(req); /* cancels every attempt in flight (recorded client_gone) */
    }
    lp_request_leave(req);
}

/* on_shutdown hook: the drain deadline passed with this request still running. */
static void on_shutdown(struct lp_request *req)
{
    lp_request_enter(req);
    struct lp_attempt *w = req->winner;
    if (w && req->phase == LP_PHASE_COMMITTED) {
        record(w, "shutdown", "the proxy is shutting down");
        health_release(w);
        lp_relay_end(req, &w->st, LP_END_SHUTDOWN, "overloaded_error",
                     "the proxy is shutting down; retry the request", "shutdown");
        untrack(req, w);
        lp_attempt_release(w);
        end_request(req);
    } else if (req->phase != LP_PHASE_DONE) {
        cancel_tries(req, NULL, "the proxy is shutting down");
        lp_request_reply_error_retry(req, 503, NULL, "shutting_down",
                                     "The proxy is shutting down; retry the request", 1);
        end_request(req);
    }
    lp_request_leave(req);
}
