/* attempt.c - the attempt loop, the commit point and the relay. See attempt.h.
 *
 * State per request (struct lp_request, request.h). One upstream transfer at a time. Every
 * asynchronous entry point (upstream callbacks, the timer, the edge's drain callback) runs
 * inside ENTER/LEAVE so that a client disconnect reported by the edge in the middle of it only
 * marks the request; the request is finished when the outermost entry point unwinds.
 */
#include "attempt.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "apierr.h"
#include "backoff.h"
#include "classify.h"
#include "edge.h"
#include "hdrpolicy.h"
#include "health.h"
#include "log.h"
#include "mask.h"
#include "proto/stream_xlat.h"
#include "proto/synth.h"
#include "proto/xlat.h"
#include "request.h"
#include "runtime.h"
#include "sysprompt.h"
#include "upstream.h"
#include "dialect.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "worker.h"

#define ERRBODY_MAX (64 * 1024)          /* error bodies kept for classification / relay */
#define RESP_MAX (64LL * 1024 * 1024)    /* buffered non-stream response ceiling */
#define SSE_EVENT_MAX (4 * 1024 * 1024)  /* one SSE event */
#define STREAM_HIGH_WATER (256 * 1024)   /* client output queued before pausing upstream */
#define STREAM_LOW_WATER (64 * 1024)
#define LP_MIN_ATTEMPT_MS 100            /* don't start an attempt with less time left */

static void next_attempt(struct lp_request *req);
static void local_failure(struct lp_request *req, const char *why);
static void all_failed(struct lp_request *req);
static void deadline_reached(struct lp_request *req);
static enum lp_transport transport_of(enum lp_xfer_result r);

/* ---- small helpers --------------------------------------------------------------------- */

static int64_t remaining_ms(const struct lp_request *req)
{
    int64_t left = (req->deadline_us - lp_now_us()) / 1000;
    return left > 0 ? left : 0;
}

static const struct lp_timeouts *cur_timeouts(const struct lp_request *req)
{
    return req->cur ? &req->cur->backend->timeout : &req->cfg->timeout;
}

static void timer_arm(struct lp_request *req, enum lp_timer_kind kind, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    req->timer_kind = kind;
    req->timer_armed = true;
    evtimer_add(req->timer, &tv);
}

static void timer_stop(struct lp_request *req)
{
    if (req->timer && req->timer_armed)
        evtimer_del(req->timer);
    req->timer_armed = false;
    req->timer_kind = LP_TIMER_NONE;
}

#define ENTER(req) lp_request_enter(req)
#define leave(req) lp_request_leave(req)

static void free_attempt_bufs(struct lp_request *req)
{
    if (req->up_body != req->body)
        free(req->up_body);
    req->up_body = NULL;
    LP_FREE(&req->up_url);
    req->hx = NULL;
    for (size_t i = 0; i < req->n_up_hdrs; i++)
        free(req->up_hdrs[i]);
    LP_FREE(&req->up_hdrs);
    req->n_up_hdrs = 0;
    lp_buf_free(&req->resp);
    if (req->sse_init)
        lp_sse_free(&req->sse);
    req->sse_init = false;
    lp_stream_xlat_free(req->xlat);
    req->xlat = NULL;
}

void lp_attempt_teardown(struct lp_request *req)
{
    if (req->x) {
        lp_upstream_cancel(req->x);
        req->x = NULL;
        if (req->cur)
            lp_health_release(req->rt->health, req->cur->backend->name);
    }
    timer_stop(req);
    if (req->timer) {
        event_free(req->timer);
        req->timer = NULL;
    }
    if (req->flush_ev) {
        event_free(req->flush_ev);
        req->flush_ev = NULL;
    }
    free_attempt_bufs(req);
    lp_buf_free(&req->out);
    lp_buf_free(&req->last_err);
}

static void record_attempt(struct lp_request *req, const char *cls, int status, const char *cause)
{
    if (req->n_log >= LP_MAX_ATTEMPT_LOG || !req->cur)
        return;
    struct lp_attempt_rec *r = &req->log[req->n_log++];
    int64_t now = lp_now_us();
    r->backend = req->cur->backend->name;
    r->model = req->cur->route->model;
    r->cls = cls;
    r->status = status;
    snprintf(r->cause, sizeof r->cause, "%s", cause ? cause : "");
    r->dur_us = now - req->att_start_us;
    r->ttft_us = req->att_first_us ? req->att_first_us - req->att_start_us : -1;
    req->upstream_wait_us += r->dur_us;
}

/* ---- client output --------------------------------------------------------------------- */

static void client_write(struct lp_request *req, const char *p, size_t n)
{
    if (!n || req->client_gone || !req->er)
        return;
    if (lp_edge_write(req->er, p, n) != LP_OK) {
        req->client_gone = true;
        return;
    }
    req->bytes_out += n;
}

static void on_client_drain(struct lp_edge_req *er, void *arg)
{
    struct lp_request *req = arg;
    lp_edge_set_drain_cb(er, 0, NULL, NULL);
    if (req->x && req->paused) {
        ENTER(req);
        req->paused = false;
        lp_upstream_resume(req->x);
        leave(req);
    }
}

/* COMMIT POINT for streams: send the response head. No failover after this. */
static void commit_stream(struct lp_request *req)
{
    struct lp_edge_header h[40];
    size_t n = 0;
    h[n++] = (struct lp_edge_header){"Content-Type", "text/event-stream; charset=utf-8"};
    h[n++] = (struct lp_edge_header){"Cache-Control", "no-cache"};
    h[n++] = (struct lp_edge_header){"X-Accel-Buffering", "no"};
    h[n++] = (struct lp_edge_header){"X-Request-Id", req->id};
    if (!req->translate) {
        size_t cnt = lp_upstream_header_count(req->hx);
        for (size_t i = 0; i < cnt && n < 40; i++) {
            const char *name, *value;
            lp_upstream_header_at(req->hx, i, &name, &value);
            if (lp_hdr_forward_response(name) && strcasecmp(name, "Content-Type") != 0 &&
                strcasecmp(name, "Cache-Control") != 0)
                h[n++] = (struct lp_edge_header){name, value};
        }
    }
    req->committed = true;
    req->final_status = 200;
    req->t_first_byte_us = lp_now_us();
    req->stream_counted = true;
    atomic_fetch_add(&req->rt->active_streams, 1);
    if (!req->client_gone && req->er)
        lp_edge_start(req->er, 200, h, n);
}

/* End a committed stream. If the upstream did not finish cleanly, append a protocol-correct
 * error event first so that SDKs raise instead of reporting a normal completion. */
static void end_stream(struct lp_request *req, const char *err_type, const char *err_msg,
                       const char *abort_reason)
{
    if (!req->stream_done && !req->stream_error && err_type) {
        lp_buf_reset(&req->out);
        if (req->xlat) {
            lp_stream_xlat_error(req->xlat, err_type, err_msg, &req->out);
        } else if (req->ep == LP_EP_RESPONSES) {
            /* The Responses API's own stream error event. */
            lp_buf_appends(&req->out, "event: error\ndata: {\"type\":\"error\",\"code\":\"");
            lp_buf_appends(&req->out, err_type);
            lp_buf_appends(&req->out, "\",\"message\":\"");
            lp_buf_append_json_escaped(&req->out, err_msg, strlen(err_msg));
            lp_buf_appends(&req->out, "\",\"param\":null}\n\n");
        } else {
            size_t len = 0;
            char *ev = lp_apierr_sse_event(req->client, err_type, NULL, err_msg, &len);
            lp_buf_append(&req->out, ev, len);
            free(ev);
        }
        client_write(req, req->out.data, req->out.len);
        lp_request_count_abort(req, abort_reason);
        snprintf(req->error_msg, sizeof req->error_msg, "stream aborted: %s", err_msg);
        req->error_msg_set = true;
        lp_log_warn(req->id, "stream aborted after commit (%s): %s", abort_reason, err_msg);
    }
    lp_request_log_access(req);
    if (req->er) {
        if (req->client_gone)
            lp_edge_abort(req->er);
        else
            lp_edge_end(req->er);
        req->er = NULL;
    }
}

/* ---- building an attempt --------------------------------------------------------------- */

struct hdr_sink {
    struct lp_request *req;
    size_t cap;
};

static void add_hdr(struct lp_request *req, size_t *cap, char *line)
{
    if (req->n_up_hdrs == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        req->up_hdrs = lp_xrealloc(req->up_hdrs, *cap * sizeof(char *));
    }
    req->up_hdrs[req->n_up_hdrs++] = line;
}

static void on_dialect_hdr(void *ctx, char *line)
{
    struct hdr_sink *s = ctx;
    add_hdr(s->req, &s->cap, line);
}

/* Is `name` listed in the client's Connection header (RFC 9110 7.6.1: those are hop-by-hop)? */
static bool connection_listed(const char *conn, const char *name)
{
    if (!conn)
        return false;
    size_t nlen = strlen(name);
    for (const char *p = conn; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == nlen && strncasecmp(p, name, nlen) == 0)
            return true;
        p = e;
    }
    return false;
}

static void build_headers(struct lp_request *req, const struct lp_candidate *c,
                          const struct lp_dialect_req *dr)
{
    size_t cap = 0;
    const struct lp_backend *b = c->backend;
    enum lp_proto to = c->protocol;
    size_t n = lp_edge_req_header_count(req->er);
    const char *conn = lp_edge_req_header(req->er, "Connection");
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        lp_edge_req_header_at(req->er, i, &name, &value);
        if (strcasecmp(name, "Content-Type") == 0 || !lp_hdr_forward_request(name, to) ||
            connection_listed(conn, name))
            continue;
        /* When translating, the client's protocol headers mean nothing to the backend. */
        if (req->translate && strncasecmp(name, "anthropic-", 10) == 0)
            continue;
        add_hdr(req, &cap, lp_xasprintf("%s: %s", name, value));
    }
    add_hdr(req, &cap, lp_xstrdup("Content-Type: application/json"));
    struct hdr_sink sink = {req, cap};
    c->dialect->auth_headers(dr, on_dialect_hdr, &sink);
    cap = sink.cap;
    if (req->cfg->proxy.forward_client_ip) {
        const char *xff = lp_edge_req_header(req->er, "X-Forwarded-For");
        add_hdr(req, &cap, xff ? lp_xasprintf("X-Forwarded-For: %s, %s", xff, req->peer)
                               : lp_xasprintf("X-Forwarded-For: %s", req->peer));
        const char *xri = lp_edge_req_header(req->er, "X-Real-IP");
        add_hdr(req, &cap, lp_xasprintf("X-Real-IP: %s", xri ? xri : req->peer));
    }
    add_hdr(req, &cap, lp_xasprintf("X-Request-Id: %s", req->id));
    if (b->locale && b->locale[0])
        add_hdr(req, &cap, lp_xasprintf("Accept-Language: %s", b->locale));
    for (size_t i = 0; i < b->n_headers; i++)
        add_hdr(req, &cap, lp_xasprintf("%s: %s", b->headers[i].key, b->headers[i].value));
    if (req->stream)
        add_hdr(req, &cap, lp_xstrdup("Accept: text/event-stream"));
}

static int64_t route_max_tokens(const struct lp_candidate *c)
{
    return c->route->max_tokens > 0 ? c->route->max_tokens : c->backend->max_tokens;
}

/* Ask an OpenAI upstream for the final usage chunk although the client did not (Codex sends no
 * stream_options), so token metrics work; the tap withholds that chunk from the client. Only
 * done when the body has no stream_options at all, so nothing the client set is changed. */
static void inject_usage_option(struct lp_request *req)
{
    static const char opt[] = "\"stream_options\":{\"include_usage\":true},";
    const char *b = req->up_body;
    size_t len = req->up_body_len;
    const char *brace = memchr(b, '{', len);
    if (!brace)
        return;
    size_t at = (size_t)(brace - b) + 1;
    /* An object with no member after '{' (impossible here: model was just written) would
     * need no comma; rewrite_model guarantees a member follows. */
    char *nb = lp_xmalloc(len + sizeof opt);
    memcpy(nb, b, at);
    memcpy(nb + at, opt, sizeof opt - 1);
    memcpy(nb + at + sizeof opt - 1, b + at, len - at);
    nb[len + sizeof opt - 1] = '\0';
    free(req->up_body);
    req->up_body = nb;
    req->up_body_len = len + sizeof opt - 1;
    req->inject_usage = true;
}

/* Build the upstream body for candidate c. Returns false (with the client answered) when the
 * request cannot be translated: that is the client's error, not the backend's. */
static bool build_body(struct lp_request *req, const struct lp_candidate *c)
{
    const char *src = req->body;
    size_t src_len = req->body_len;
    char *injected = NULL;
    struct lp_sysprompts *sp = lp_config_sysprompts(req->cfg);
    if (sp && req->cfg->proxy.enable_system_prompt) {
        size_t ilen = 0;
        injected = lp_sysprompt_apply(sp, req->client, req->alias_name, src,
                                      src_len, &ilen);
        if (injected) {
            src = injected;
            src_len = ilen;
        }
    }
    if (req->translate) {
        struct lp_xlat_opts o = {
            .upstream_model = c->route->model,
            .default_max_tokens = req->cfg->proxy.default_max_tokens,
            .max_tokens_limit = route_max_tokens(c),
            .stream = req->stream,
            .request_id = req->id,
        };
        struct lp_xlat_err err = {0};
        req->up_body = lp_xlat_request(req->client, c->protocol, src, src_len, &o,
                                       &req->up_body_len, &err);
        free(injected);
        if (!req->up_body) {
            lp_request_reply_error(req, err.status ? err.status : 400,
                                   err.type[0] ? err.type : NULL, NULL, err.message);
            return false;
        }
        return true;
    }
    struct lp_jscan scan;
    const struct lp_jscan *s = &req->scan;
    if (injected) {
        /* The injected body has new offsets: scan it again (it is our own, valid JSON). */
        if (lp_jscan_request(injected, src_len, &scan, NULL, NULL) != LP_OK) {
            free(injected);
            injected = NULL;
            src = req->body;
            src_len = req->body_len;
        } else {
            s = &scan;
        }
    }
    req->up_body = lp_jscan_rewrite_model(src, src_len, s, c->route->model, &req->up_body_len);
    req->inject_usage = false;
    if (req->client == LP_PROTO_OPENAI && req->chat && req->stream && s->stream_options_len == 0)
        inject_usage_option(req);
    if (injected) {
        lp_jscan_free(&scan);
        free(injected);
    }
    return true;
}

static const struct lp_upstream_cbs upstream_cbs;

/* The transfer's own time limit: the request's remaining deadline, or the backend's
 * total_timeout when that is shorter (a per-backend `timeout:` override bounds each attempt). */
static int64_t attempt_limit_ms(struct lp_request *req, const struct lp_timeouts *t)
{
    int64_t left = remaining_ms(req);
    req->attempt_limit_is_deadline = !(t->total_ms > 0 && t->total_ms < left);
    int64_t lim = req->attempt_limit_is_deadline ? left : t->total_ms;
    return lim > 0 ? lim : 1;
}

/* Start candidate c. Returns LP_OK when a transfer is running, LP_DECLINED when the candidate
 * cannot serve this endpoint (try the next), LP_ERR when the request was answered. */
static enum lp_status start_attempt(struct lp_request *req, const struct lp_candidate *c)
{
    free_attempt_bufs(req);
    req->cur = c;
    req->translate = c->protocol != req->client;
    bool count_tokens = strcmp(req->path, "/v1/messages/count_tokens") == 0;
    if (req->translate && !req->chat) {
        lp_log_debug(req->id, "route %s/%s skipped: %s cannot be translated", c->backend->name,
                     c->route->model, count_tokens ? "count_tokens" : req->path);
        lp_health_release(req->rt->health, c->backend->name);
        return LP_DECLINED;
    }
    /* The upstream path comes from the dialect's endpoint table, never from the client. */
    struct lp_dialect_req dr = {
        .backend = c->backend,
        .ep = lp_dialect_upstream_ep(req->ep, c->protocol),
        .passthrough_path = req->ep == LP_EP_PASSTHROUGH ? req->path : NULL,
        .model = c->route->model,
        .stream = req->stream,
        .query = req->translate ? NULL : req->fwd_query,
        .client_version = req->translate ? NULL : lp_edge_req_header(req->er, "anthropic-version"),
    };
    req->up_ep = dr.ep;
    req->up_url = c->dialect->url(&dr);
    if (!req->up_url) {
        lp_log_debug(req->id, "route %s/%s skipped: the %s dialect has no path for %s",
                     c->backend->name, c->route->model, c->dialect->name, req->path);
        lp_health_release(req->rt->health, c->backend->name);
        return LP_DECLINED;
    }
    if (!build_body(req, c))
        return LP_ERR;
    build_headers(req, c, &dr);
    req->up_status = 0;
    req->up_sse = false;
    req->first_event_seen = false;
    req->stream_done = false;
    req->saw_finish = false;
    req->first_translated = false;
    req->stream_broken = NULL;
    req->stream_error = false;
    req->resp_overflow = false;
    req->paused = false;
    memset(&req->tap, 0, sizeof req->tap);
    req->att_first_us = 0;
    req->att_start_us = lp_now_us();
    req->last_data_us = req->att_start_us;
    req->pending_decision_set = false;
    lp_buf_init(&req->resp, ERRBODY_MAX);
    const struct lp_timeouts *t = &c->backend->timeout;
    struct lp_upstream_req ur = {
        .url = req->up_url,
        .post = true,
        .body = req->up_body,
        .body_len = req->up_body_len,
        .headers = (const char *const *)req->up_hdrs,
        .n_headers = req->n_up_hdrs,
        .connect_timeout_ms = t->connect_ms,
        .total_timeout_ms = attempt_limit_ms(req, t),
        .ca_file = c->backend->tls_ca_file,
    };
    req->n_attempts++;
    req->x = lp_upstream_start(req->w->up, &ur, &upstream_cbs, req);
    if (!req->x) {
        local_failure(req, "could not create the upstream transfer");
        return LP_ERR;
    }
    int64_t ttft = t->ttft_ms > 0 ? t->ttft_ms : 180000;
    int64_t left = remaining_ms(req);
    /* When the request's deadline comes before this attempt's TTFT limit, the timer is the
     * deadline: its expiry is not the backend's fault (see on_timer). */
    req->ttft_is_deadline = ttft >= left;
    timer_arm(req, LP_TIMER_TTFT, ttft < left ? ttft : left);
    lp_log_debug(req->id, "attempt %d: %s model=%s url=%s%s", req->n_attempts, c->backend->name,
                 c->route->model, req->up_url, req->translate ? " (translated)" : "");
    return LP_OK;
}

/* ---- outcomes -------------------------------------------------------------------------- */

/* Our own resources ran out (no fds, no memory) before the backend was reached. Nobody else's
 * fault: no cooldown, no breaker count, no failover (the next attempt would fail the same way);
 * the client gets 503 with Retry-After and the access line says "local". Answers the client;
 * the caller releases the breaker permission and finishes the request. */
static void local_failure(struct lp_request *req, const char *why)
{
    record_attempt(req, lp_class_name(LP_CLASS_LOCAL), 0, why);
    lp_log_warn(req->id, "local failure before reaching %s: %s", req->cur->backend->name, why);
    lp_metrics_failover(req, lp_class_name(LP_CLASS_LOCAL));
    char msg[256];
    snprintf(msg, sizeof msg, "The proxy is out of local resources (%s); retry shortly", why);
    size_t len = 0;
    char *body = lp_apierr_body(req->client, 503, NULL, "local_resource_exhausted", msg, req->id,
                                &len);
    struct lp_edge_header extra = {"Retry-After", "1"};
    lp_request_reply_error_body(req, 503, body, len, &extra, 1);
    free(body);
}

/* Apply a failed attempt's decision to shared health state. */
static void report_failure(struct lp_request *req, const struct lp_decision *d)
{
    const struct lp_candidate *c = req->cur;
    lp_health_report_failure(req->rt->health, req->cfg, c->backend->name, c->route->model, d,
                             lp_now_ms(), lp_wall_ms());
}

static void report_success(struct lp_request *req)
{
    const struct lp_candidate *c = req->cur;
    lp_health_report_success(req->rt->health, req->cfg, c->backend->name, c->route->model,
                             lp_now_ms());
}

static void failover(struct lp_request *req, const struct lp_decision *d)
{
    record_attempt(req, lp_class_name(d->cls), req->up_status, d->reason);
    report_failure(req, d);
    req->last_hint_ms = d->hint_ms;
    req->last_backend = req->cur->backend->name;
    switch (d->cls) {
    case LP_CLASS_TIMEOUT: req->n_timeout_fail++; break;
    case LP_CLASS_NETWORK: req->n_net_fail++; break;
    default:
        if (req->up_status)
            req->n_http_fail++;
        else
            req->n_net_fail++;
    }
    if (req->up_status) {
        req->last_status = req->up_status;
        lp_buf_free(&req->last_err);
        req->last_err = req->resp;
        lp_buf_init(&req->resp, ERRBODY_MAX);
        req->last_err_proto = req->cur->protocol;
    }
    lp_log_info(req->id, "attempt %d on %s/%s failed (%s): %s; failing over", req->n_attempts,
                req->cur->backend->name, req->cur->route->model, lp_class_name(d->cls),
                d->reason);
    lp_metrics_failover(req, lp_class_name(d->cls));
    next_attempt(req);
}

static void classify_transport(struct lp_request *req, enum lp_transport tr, const char *why,
                               struct lp_decision *d)
{
    struct lp_classify_in in = {.transport = tr, .now_wall_ms = lp_wall_ms()};
    lp_classify(&in, req->cfg, d);
    if (why && *why)
        snprintf(d->reason, sizeof d->reason, "%s", why);
}

static void classify_http(struct lp_request *req, const char *body, size_t len, bool sse_event,
                          struct lp_decision *d)
{
    struct lp_classify_in in = {
        .transport = LP_TR_NONE,
        .status = req->up_status,
        .body = body,
        .body_len = len,
        .from_sse_event = sse_event,
        .optional_endpoint = req->up_ep != LP_EP_CHAT && req->up_ep != LP_EP_MESSAGES,
        .now_wall_ms = lp_wall_ms(),
    };
    if (req->hx) {
        in.retry_after = lp_upstream_header(req->hx, "Retry-After");
        in.retry_after_ms = lp_upstream_header(req->hx, "retry-after-ms");
        size_t k = 0, n = lp_upstream_header_count(req->hx);
        for (size_t i = 0; i < n && k < LP_CLASSIFY_MAX_RESET; i++) {
            const char *name, *value;
            lp_upstream_header_at(req->hx, i, &name, &value);
            if (lp_classify_is_reset_header(name))
                in.ratelimit_reset[k++] = value;
        }
    }
    lp_classify(&in, req->cfg, d);
}

/* The HTTP status an in-band error event of class cls stands for. */
static int status_of_class(enum lp_err_class cls, enum lp_proto up)
{
    switch (cls) {
    case LP_CLASS_CLIENT:
    case LP_CLASS_CONTEXT_LENGTH:
    case LP_CLASS_CONTENT_POLICY: return 400;
    case LP_CLASS_AUTH: return 401;
    case LP_CLASS_MODEL_NOT_FOUND: return 404;
    case LP_CLASS_RATE_LIMIT:
    case LP_CLASS_QUOTA: return 429;
    case LP_CLASS_OVERLOADED: return up == LP_PROTO_ANTHROPIC ? 529 : 503;
    case LP_CLASS_TIMEOUT: return 504;
    case LP_CLASS_NETWORK: return 502;
    default: return 500;
    }
}

/* The upstream's error goes back to the client as is (status and body), translated to the
 * client's protocol shape when the protocols differ. */
static void relay_upstream_error(struct lp_request *req, const struct lp_decision *d)
{
    record_attempt(req, lp_class_name(d->cls), req->up_status, d->reason);
    size_t len = 0;
    char *body = lp_xlat_error(req->cur->protocol, req->client, req->up_status, req->resp.data,
                               req->resp.len, &len);
    const char *ra = req->hx ? lp_upstream_header(req->hx, "Retry-After") : NULL;
    struct lp_edge_header extra = {"Retry-After", ra};
    if (body) {
        lp_request_reply_error_body(req, req->up_status, body, len, &extra, ra ? 1 : 0);
        free(body);
    } else {
        lp_request_reply_error_body(req, req->up_status, req->resp.data ? req->resp.data : "",
                                    req->resp.len, &extra, ra ? 1 : 0);
    }
    /* Recorded as a non-OK outcome; a client-class error counts as a breaker success (the
     * backend judged the request itself) and cools nothing down. */
    report_failure(req, d);
}

static void reply_buffered_success(struct lp_request *req)
{
    const char *body = req->resp.data ? req->resp.data : "";
    size_t len = req->resp.len;
    enum lp_proto up = req->cur->protocol;
    lp_xlat_usage(up, body, len, &req->tok_in, &req->tok_out, &req->tok_cached);
    char *xbody = NULL;
    if (req->translate) {
        xbody = lp_xlat_response(up, req->client, body, len, req->alias_name, &len);
        if (!xbody) {
            struct lp_decision d = {.cls = LP_CLASS_SERVER, .failover = true, .cooldown = true,
                                    .cooldown_ms = (int64_t)req->cfg->fallback.cooldown_seconds * 1000,
                                    .breaker_failure = true};
            snprintf(d.reason, sizeof d.reason, "upstream returned an invalid %s response",
                     up == LP_PROTO_ANTHROPIC ? "Anthropic" : "OpenAI");
            failover(req, &d);
            return;
        }
        body = xbody;
    }
    record_attempt(req, "ok", req->up_status, "");
    report_success(req);
    struct lp_edge_header extra[32];
    size_t n = 0;
    if (!req->translate && req->hx) {
        size_t cnt = lp_upstream_header_count(req->hx);
        for (size_t i = 0; i < cnt && n < 32; i++) {
            const char *name, *value;
            lp_upstream_header_at(req->hx, i, &name, &value);
            if (lp_hdr_forward_response(name) && strcasecmp(name, "Content-Type") != 0)
                extra[n++] = (struct lp_edge_header){name, value};
        }
    }
    const char *ct = req->hx && !req->translate ? lp_upstream_header(req->hx, "Content-Type") : NULL;
    req->t_first_byte_us = lp_now_us();
    size_t slen = 0;
    char *sse = NULL;
    if (req->stream && req->chat &&
        (sse = lp_synth_stream(req->client, body, len, req->scan.has_stream_options_include_usage, &slen))) {
        /* The upstream ignored stream: true; replay its answer as the stream the client asked
         * for (an SDK in stream mode would otherwise see an empty stream). */
        lp_log_info(req->id, "%s answered a stream request with one JSON body; replayed as SSE",
                    req->cur->backend->name);
        commit_stream(req);
        client_write(req, sse, slen);
        req->stream_done = true;
        end_stream(req, NULL, NULL, NULL);
        free(sse);
    } else {
        lp_request_reply(req, req->up_status, ct ? ct : "application/json", body, len, extra, n);
    }
    free(xbody);
}

/* ---- upstream callbacks ---------------------------------------------------------------- */

static void on_up_head(void *arg, struct lp_upstream_xfer *x, int status)
{
    struct lp_request *req = arg;
    req->hx = x;
    req->up_status = status;
    const char *ct = lp_upstream_header(x, "Content-Type");
    req->up_sse = status >= 200 && status < 300 && ct && strstr(ct, "text/event-stream");
    if (status >= 200 && status < 300 && !req->up_sse) {
        /* A complete response will be buffered: raise the ceiling from the error-body size. */
        req->resp.max = (size_t)RESP_MAX;
    }
    if (req->up_sse) {
        lp_sse_init(&req->sse, SSE_EVENT_MAX);
        req->sse_init = true;
        if (req->translate) {
            req->xlat = lp_stream_xlat_new(req->cur->protocol, req->client, req->alias_name,
                                           req->scan.has_stream_options_include_usage, req->id);
        } else {
            lp_stream_tap_init(&req->tap, req->client,
                               !req->inject_usage || req->scan.has_stream_options_include_usage);
        }
    } else {
        /* Time to first byte: the head is the first byte of a non-stream response. */
        req->att_first_us = lp_now_us();
        timer_stop(req);
        timer_arm(req, LP_TIMER_READ, cur_timeouts(req)->read_ms);
    }
}

/* The first real event of a stream: classify it, then commit or fail over. Returns false when
 * the attempt must stop (failover or error reply decided; the transfer is aborted). */
static bool on_first_event(struct lp_request *req, const struct lp_sse_event *ev)
{
    req->att_first_us = lp_now_us();
    timer_stop(req);
    timer_arm(req, LP_TIMER_READ, cur_timeouts(req)->read_ms);
    if (lp_sse_event_is_error(req->cur->protocol, ev->event, ev->event_len, ev->data,
                              ev->data_len)) {
        classify_http(req, ev->data, ev->data_len, true, &req->pending_decision);
        req->pending_decision_set = true;
        lp_buf_reset(&req->resp);
        lp_buf_append(&req->resp, ev->data, ev->data_len);
        return false;
    }
    if (req->xlat) {
        /* Translate the first event before committing: garbage from the upstream can still
         * fail over while the client has seen nothing. relay_events writes req->out. */
        lp_buf_reset(&req->out);
        enum lp_status rc = lp_stream_xlat_event(req->xlat, ev->event, ev->event_len, ev->data,
                                                 ev->data_len, &req->out);
        if (rc != LP_OK) {
            struct lp_decision d;
            classify_transport(req, LP_TR_PROTOCOL, "upstream sent an invalid first stream event", &d);
            req->pending_decision = d;
            req->pending_decision_set = true;
            return false;
        }
        req->first_translated = true;
    }
    commit_stream(req);
    return true;
}

/* Pass-through: remember that the upstream reached its finish point (OpenAI finish_reason,
 * Anthropic message_delta), so a clean EOF without the terminal event can still end normally. */
static void note_finish(struct lp_request *req, const struct lp_sse_event *ev)
{
    if (req->client == LP_PROTO_ANTHROPIC) {
        if (ev->event_len == 13 && memcmp(ev->event, "message_delta", 13) == 0)
            req->saw_finish = true;
    } else if (ev->data_len > 20 && memmem(ev->data, ev->data_len, "\"finish_reason\":\"", 17)) {
        req->saw_finish = true;
    }
}

/* A pass-through stream ended with a clean EOF but no terminal event. Returns true when that
 * is a normal end, after writing the terminal event the client expects if it is missing. */
static bool passthrough_clean_eof(struct lp_request *req)
{
    if (!req->chat) {
        /* Other endpoints (/v1/responses, /v1/completions) have their own terminal events; the
         * upstream closing the stream cleanly is their end. */
        return true;
    }
    if (!req->saw_finish)
        return false;
    if (req->client == LP_PROTO_ANTHROPIC) {
        static const char stop[] = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        client_write(req, stop, sizeof stop - 1);
    } else {
        static const char done[] = "data: [DONE]\n\n";
        client_write(req, done, sizeof done - 1);
    }
    return true;
}

/* An upstream error event was relayed to the client: keep its data to classify the attempt's
 * outcome when the transfer ends (health must learn about it, see on_stream_done). */
static void keep_error_event(struct lp_request *req, const struct lp_sse_event *ev)
{
    req->stream_error = true;
    lp_buf_reset(&req->resp);
    lp_buf_append(&req->resp, ev->data, ev->data_len < ERRBODY_MAX ? ev->data_len : ERRBODY_MAX);
}

static void relay_event(struct lp_request *req, const struct lp_sse_event *ev)
{
    if (req->xlat) {
        lp_buf_reset(&req->out);
        enum lp_status rc = lp_stream_xlat_event(req->xlat, ev->event, ev->event_len, ev->data,
                                                 ev->data_len, &req->out);
        if (rc == LP_DECLINED) {
            char type[64], msg[256];
            lp_sse_event_error_info(req->cur->protocol, ev->data, ev->data_len, type, sizeof type,
                                    msg, sizeof msg);
            lp_buf_reset(&req->out);
            lp_stream_xlat_error(req->xlat, type, msg, &req->out);
            client_write(req, req->out.data, req->out.len);
            lp_request_count_abort(req, "upstream_error_event");
            keep_error_event(req, ev);
            return;
        }
        if (rc != LP_OK) {
            /* Nothing was written for this event: on_stream_done ends the stream with an
             * error event so the client never mistakes the truncation for an end. */
            req->stream_broken = rc == LP_ERR_TOOBIG ? "upstream stream exceeded a translation limit"
                                                     : "upstream sent an invalid stream event";
            return;
        }
        client_write(req, req->out.data, req->out.len);
        if (lp_stream_xlat_done(req->xlat))
            req->stream_done = true;
        return;
    }
    bool drop = lp_stream_tap_event(&req->tap, ev->event, ev->event_len, ev->data, ev->data_len);
    bool is_err = lp_sse_event_is_error(req->client, ev->event, ev->event_len, ev->data, ev->data_len);
    if (is_err) {
        /* Relayed (it is protocol-correct for this client) but masked: upstreams sometimes
         * echo the operator's key in error messages. Rare, so the cost does not matter. */
        size_t n_sec;
        const char *const *secrets = lp_config_secrets(req->cfg, &n_sec);
        lp_buf_reset(&req->out);
        lp_mask(ev->raw, ev->raw_len, &req->out, secrets, n_sec);
        client_write(req, req->out.data, req->out.len);
    } else if (!drop) {
        client_write(req, ev->raw, ev->raw_len);
    }
    if (is_err) {
        /* The stream ends here. */
        lp_request_count_abort(req, "upstream_error_event");
        keep_error_event(req, ev);
        return;
    }
    if (req->tap.done)
        req->stream_done = true;
    else
        note_finish(req, ev);
}

static enum lp_status relay_events(struct lp_request *req);

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct lp_request *req = arg;
    if (req->corked && req->er)
        lp_edge_uncork(req->er);
    req->corked = false;
}

static enum lp_status on_sse_data(struct lp_request *req, const char *buf, size_t len)
{
    if (req->committed && !req->client_gone && req->er &&
        lp_edge_pending(req->er) > STREAM_HIGH_WATER) {
        /* Backpressure: the client reads slower than the upstream writes. */
        req->paused = true;
        lp_edge_set_drain_cb(req->er, STREAM_LOW_WATER, on_client_drain, req);
        return LP_AGAIN;
    }
    if (lp_sse_feed(&req->sse, buf, len) != LP_OK) {
        req->stream_broken = "upstream SSE event larger than the 4 MiB limit";
        return LP_ERR;
    }
    /* curl calls us once per upstream chunk, several times per socket read. Cork the client
     * connection and uncork from an event activated now, which runs right after curl's batch
     * in this same loop pass: everything one read produced (and the response head) goes out in
     * one sendmsg, with no added delay. */
    if (req->er && !req->corked) {
        if (!req->flush_ev)
            req->flush_ev = event_new(req->w->base, -1, 0, on_flush, req);
        lp_edge_cork(req->er);
        req->corked = true;
        event_active(req->flush_ev, EV_TIMEOUT, 0);
    }
    return relay_events(req);
}

static enum lp_status relay_events(struct lp_request *req)
{
    struct lp_sse_event ev;
    while (lp_sse_next(&req->sse, &ev) == LP_OK) {
        if (!req->first_event_seen) {
            if (ev.is_comment_only || (!ev.has_data && ev.event_len == 0))
                continue; /* keep-alive before the first event: nothing to classify */
            req->first_event_seen = true;
            if (!on_first_event(req, &ev))
                return LP_ERR;
            if (req->first_translated) {
                /* Already translated into req->out by on_first_event. */
                req->first_translated = false;
                client_write(req, req->out.data, req->out.len);
                if (lp_stream_xlat_done(req->xlat))
                    req->stream_done = true;
                continue;
            }
        }
        if (req->stream_done || req->stream_error || req->stream_broken)
            continue;
        relay_event(req, &ev);
        if (req->client_gone || req->stream_error || req->stream_broken)
            return LP_ERR;
    }
    return LP_OK;
}

static enum lp_status on_up_data(void *arg, struct lp_upstream_xfer *x, const char *buf, size_t len)
{
    struct lp_request *req = arg;
    enum lp_status rc = LP_OK;
    ENTER(req);
    req->last_data_us = lp_now_us();
    if (req->up_sse) {
        rc = on_sse_data(req, buf, len);
    } else if (lp_buf_append(&req->resp, buf, len) != LP_OK) {
        if (req->up_status >= 200 && req->up_status < 300) {
            req->resp_overflow = true;
            rc = LP_ERR;
        }
        /* Error bodies beyond the classification window are dropped. */
    }
    if (req->client_gone)
        rc = LP_ERR;
    leave(req);
    return rc;
}

static enum lp_transport transport_of(enum lp_xfer_result r)
{
    switch (r) {
    case LP_XFER_CONNECT: return LP_TR_CONNECT;
    case LP_XFER_DNS: return LP_TR_DNS;
    case LP_XFER_TLS: return LP_TR_TLS;
    case LP_XFER_TIMEOUT_CONNECT: return LP_TR_TIMEOUT_CONNECT;
    case LP_XFER_TIMEOUT_TOTAL: return LP_TR_TIMEOUT_TOTAL;
    case LP_XFER_PROTOCOL: return LP_TR_PROTOCOL;
    case LP_XFER_LOCAL: return LP_TR_LOCAL;
    default: return LP_TR_RESET;
    }
}

static void on_stream_done(struct lp_request *req, enum lp_xfer_result res, const char *err)
{
    if (req->client_gone) {
        /* The client left (reset, Ctrl-C): its own write failure aborted the transfer. Not the
         * backend's fault: nothing is cooled down or counted against its breaker. */
        record_attempt(req, "client_gone", req->up_status, "client disconnected mid-stream");
        lp_health_release(req->rt->health, req->cur->backend->name);
        end_stream(req, NULL, NULL, NULL);
        lp_request_finish(req);
        return;
    }
    if (res == LP_XFER_TIMEOUT_TOTAL && req->attempt_limit_is_deadline) {
        deadline_reached(req); /* committed: ends the stream with a timeout error event */
        return;
    }
    if (!req->stream_done && !req->stream_error && !req->stream_broken && res == LP_XFER_OK) {
        if (req->xlat) {
            lp_buf_reset(&req->out);
            if (lp_stream_xlat_eof(req->xlat, &req->out) == LP_OK) {
                client_write(req, req->out.data, req->out.len);
                req->stream_done = true;
            }
        } else if (lp_sse_pending(&req->sse) == 0 && passthrough_clean_eof(req)) {
            req->stream_done = true;
        }
    }
    struct lp_stream_usage u = req->xlat ? lp_stream_xlat_usage(req->xlat) : req->tap.usage;
    req->tok_in = u.input;
    req->tok_out = u.output;
    req->tok_cached = u.cached;
    if (req->stream_done) {
        record_attempt(req, "ok", req->up_status, "");
        report_success(req);
        end_stream(req, NULL, NULL, NULL);
    } else if (req->stream_error) {
        /* The upstream's error event was relayed (so the client knows); classify it for health. */
        struct lp_decision d;
        classify_http(req, req->resp.data, req->resp.len, true, &d);
        record_attempt(req, lp_class_name(d.cls), req->up_status, d.reason);
        report_failure(req, &d);
        end_stream(req, NULL, NULL, NULL);
    } else if (req->stream_broken) {
        struct lp_decision d;
        classify_transport(req, LP_TR_PROTOCOL, req->stream_broken, &d);
        record_attempt(req, lp_class_name(d.cls), req->up_status, req->stream_broken);
        report_failure(req, &d);
        end_stream(req, "api_error", req->stream_broken, "upstream_protocol");
    } else {
        const char *why = res == LP_XFER_OK ? "upstream closed the stream before its final event"
                                            : (err ? err : "upstream connection failed");
        struct lp_decision d;
        classify_transport(req, res == LP_XFER_OK ? LP_TR_RESET : transport_of(res), why, &d);
        record_attempt(req, lp_class_name(d.cls), req->up_status, why);
        report_failure(req, &d);
        end_stream(req, "api_error", why, "upstream_cut");
    }
    lp_request_finish(req);
}

static void on_up_done(void *arg, struct lp_upstream_xfer *x, enum lp_xfer_result res, const char *err)
{
    struct lp_request *req = arg;
    ENTER(req);
    if (req->x == x)
        req->x = NULL; /* the transfer is over: nothing must cancel it any more */
    req->hx = x;       /* its headers stay readable until this callback returns */
    timer_stop(req);
    if (req->committed && req->up_sse) {
        on_stream_done(req, res, err);
        leave(req);
        return;
    }
    struct lp_decision d;
    if (req->client_gone) {
        lp_health_release(req->rt->health, req->cur->backend->name);
        req->finish_pending = true;
    } else if (req->pending_decision_set) {
        /* The first SSE event was an in-band error. */
        d = req->pending_decision;
        if (d.failover) {
            failover(req, &d);
        } else {
            /* The error came in a 200 event stream; answer with the status it stands for, so
             * SDKs raise the right exception (e.g. 400 for "prompt is too long"). */
            req->up_status = status_of_class(d.cls, req->cur->protocol);
            relay_upstream_error(req, &d);
            lp_request_finish(req);
        }
    } else if (res == LP_XFER_OK && req->up_status >= 200 && req->up_status < 300) {
        if (req->up_sse) {
            classify_transport(req, LP_TR_PROTOCOL, "upstream stream ended before its first event", &d);
            failover(req, &d);
        } else {
            reply_buffered_success(req);
            if (!req->er)
                lp_request_finish(req);
        }
    } else if (res == LP_XFER_OK || (res == LP_XFER_ABORTED && req->up_status >= 300)) {
        classify_http(req, req->resp.data, req->resp.len, false, &d);
        if (d.failover) {
            failover(req, &d);
        } else {
            relay_upstream_error(req, &d);
            lp_request_finish(req);
        }
    } else {
        enum lp_transport tr = transport_of(res);
        const char *why = err;
        if (req->resp_overflow) {
            tr = LP_TR_PROTOCOL;
            why = "upstream response larger than the 64 MiB buffer limit";
        }
        if (tr == LP_TR_TIMEOUT_TOTAL && req->attempt_limit_is_deadline) {
            deadline_reached(req);
        } else if (tr == LP_TR_LOCAL) {
            lp_health_release(req->rt->health, req->cur->backend->name);
            local_failure(req, why ? why : "local resource exhausted");
            lp_request_finish(req);
        } else {
            classify_transport(req, tr, why, &d);
            failover(req, &d);
        }
    }
    if (req->hx == x)
        req->hx = NULL;
    leave(req);
}

static const struct lp_upstream_cbs upstream_cbs = {
    .on_head = on_up_head,
    .on_data = on_up_data,
    .on_done = on_up_done,
};

/* ---- timer ----------------------------------------------------------------------------- */

/* The request's total_timeout expired during an attempt. Not the backend's fault: nothing is
 * cooled down; the client gets 504 with the attempts so far. */
static void deadline_reached(struct lp_request *req)
{
    char why[96];
    snprintf(why, sizeof why, "total_timeout (%lld ms) reached", (long long)req->cfg->timeout.total_ms);
    if (req->x) {
        lp_upstream_cancel(req->x);
        req->x = NULL;
        req->hx = NULL;
    }
    lp_health_release(req->rt->health, req->cur->backend->name);
    if (req->committed) {
        record_attempt(req, "timeout", req->up_status, why);
        end_stream(req, "timeout_error", why, "total_timeout");
        lp_request_finish(req);
        return;
    }
    record_attempt(req, "timeout", req->up_status, why);
    req->n_timeout_fail++;
    req->deadline_hit = true;
    all_failed(req);
}

static void abort_attempt_timeout(struct lp_request *req, enum lp_transport tr, const char *why)
{
    lp_upstream_cancel(req->x);
    req->x = NULL;
    req->hx = NULL;
    if (req->committed) {
        record_attempt(req, "timeout", req->up_status, why);
        struct lp_decision d;
        classify_transport(req, tr, why, &d);
        report_failure(req, &d);
        end_stream(req, "timeout_error", why, "read_timeout");
        lp_request_finish(req);
        return;
    }
    struct lp_decision d;
    classify_transport(req, tr, why, &d);
    failover(req, &d);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_request *req = arg;
    enum lp_timer_kind kind = req->timer_kind;
    req->timer_armed = false;
    req->timer_kind = LP_TIMER_NONE;
    ENTER(req);
    if (kind == LP_TIMER_BACKOFF) {
        req->upstream_wait_us += lp_now_us() - req->backoff_start_us;
        req->backoff_done = true;
        req->next_cand--; /* next_attempt picks the same candidate again, now without waiting */
        next_attempt(req);
    } else if (kind == LP_TIMER_TTFT && req->x && req->ttft_is_deadline) {
        deadline_reached(req);
    } else if (kind == LP_TIMER_TTFT && req->x) {
        char why[96];
        snprintf(why, sizeof why, "no %s within ttft_timeout (%lld ms)",
                 req->up_sse ? "first SSE event" : "response",
                 (long long)cur_timeouts(req)->ttft_ms);
        abort_attempt_timeout(req, LP_TR_TIMEOUT_TTFT, why);
    } else if (kind == LP_TIMER_READ && req->x) {
        int64_t read_ms = cur_timeouts(req)->read_ms;
        int64_t idle_ms = (lp_now_us() - req->last_data_us) / 1000;
        if (req->paused || idle_ms < read_ms) {
            /* Data arrived since the timer was armed (or we paused the upstream ourselves). */
            timer_arm(req, LP_TIMER_READ, req->paused ? read_ms : read_ms - idle_ms);
        } else {
            char why[96];
            snprintf(why, sizeof why, "upstream silent for %lld ms (read_timeout)", (long long)idle_ms);
            abort_attempt_timeout(req, LP_TR_TIMEOUT_READ, why);
        }
    }
    leave(req);
}

/* ---- the loop -------------------------------------------------------------------------- */

/* Before trying c, wait for the backoff delay (and a Retry-After hint from the same backend).
 * Returns true when a wait was scheduled. */
static bool schedule_backoff(struct lp_request *req, const struct lp_candidate *c)
{
    if (req->n_attempts == 0 || req->backoff_done)
        return false;
    const struct lp_fallback_cfg *f = &req->cfg->fallback;
    int64_t delay = lp_backoff_delay_ms(f, req->n_attempts, &req->w->rng);
    if (req->last_hint_ms > 0 && req->last_backend &&
        strcmp(req->last_backend, c->backend->name) == 0 && req->last_hint_ms < remaining_ms(req) &&
        req->last_hint_ms > delay)
        delay = req->last_hint_ms;
    if (delay <= 0)
        return false;
    if (delay >= remaining_ms(req))
        delay = remaining_ms(req);
    req->backoff_start_us = lp_now_us();
    req->backoff_total_ms += delay;
    lp_metrics_backoff(req, delay);
    timer_arm(req, LP_TIMER_BACKOFF, delay);
    return true;
}

static void next_attempt(struct lp_request *req)
{
    while (req->next_cand < req->n_cands) {
        if (req->max_attempts > 0 && req->n_attempts >= req->max_attempts)
            break;
        if (remaining_ms(req) < LP_MIN_ATTEMPT_MS) {
            /* Too little time left for a meaningful attempt. */
            req->deadline_hit = true;
            break;
        }
        const struct lp_candidate *c = &req->cands[req->next_cand++];
        if (schedule_backoff(req, c))
            return;
        req->backoff_done = false;
        if (!lp_health_breaker_allow(req->rt->health, req->cfg, c->backend->name, lp_now_ms())) {
            req->n_skipped_health++;
            lp_log_debug(req->id, "route %s/%s skipped: circuit open", c->backend->name,
                         c->route->model);
            continue;
        }
        if (req->n_attempts > 0)
            lp_metrics_retry(req);
        enum lp_status rc = start_attempt(req, c);
        if (rc == LP_OK)
            return;
        if (rc == LP_ERR) {
            lp_health_release(req->rt->health, c->backend->name);
            lp_request_finish(req);
            return;
        }
    }
    all_failed(req);
}

static void append_attempts(struct lp_buf *b, const struct lp_request *req)
{
    for (size_t i = 0; i < req->n_log; i++) {
        const struct lp_attempt_rec *r = &req->log[i];
        lp_buf_printf(b, "%s%s/%s: %s", i ? "; " : "", r->backend, r->model, r->cls);
        if (r->status)
            lp_buf_printf(b, " %d", r->status);
        if (r->cause[0])
            lp_buf_printf(b, " (%s)", r->cause);
    }
}

static void reply_all_cooling(struct lp_request *req)
{
    int64_t wait_s = 1;
    if (req->plan.soonest_until_ms > 0) {
        int64_t ms = req->plan.soonest_until_ms - lp_now_ms();
        wait_s = ms > 0 ? (ms + 999) / 1000 : 1;
    }
    char ra[32], msg[400];
    snprintf(ra, sizeof ra, "%lld", (long long)wait_s);
    snprintf(msg, sizeof msg,
             "All routes for model '%.100s' are temporarily unavailable (cooling down, circuit "
             "open or drained); retry after %lld s",
             req->alias_name, (long long)wait_s);
    size_t len = 0;
    char *body = lp_apierr_body(req->client, 503, NULL, "all_routes_unavailable", msg, req->id, &len);
    struct lp_edge_header extra = {"Retry-After", ra};
    lp_request_reply_error_body(req, 503, body, len, &extra, 1);
    free(body);
}

static void all_failed(struct lp_request *req)
{
    if (req->n_attempts == 0 || req->n_log == 0) {
        if (req->n_skipped_health > 0 || req->plan.skipped_cooling || req->plan.skipped_open ||
            req->plan.skipped_drained) {
            reply_all_cooling(req);
        } else {
            char msg[300];
            snprintf(msg, sizeof msg, "No usable route for model '%.100s' on endpoint %.100s",
                     req->alias_name, req->path);
            lp_request_reply_error(req, 502, NULL, "no_route", msg);
        }
        goto out;
    }
    struct lp_buf b;
    lp_buf_init(&b, 8192);
    int status;
    const char *code;
    if (req->n_net_fail == 0 && req->n_timeout_fail == 0 && req->n_http_fail > 0) {
        status = req->last_status;
        code = "all_backends_failed";
        char type[64] = "", umsg[256] = "";
        lp_sse_event_error_info(req->last_err_proto, req->last_err.data ? req->last_err.data : "",
                                req->last_err.len, type, sizeof type, umsg, sizeof umsg);
        /* Upstreams sometimes echo a key in their error message: mask before it reaches the
         * client (the attempt list is already masked by classify). */
        size_t n_sec;
        const char *const *secrets = lp_config_secrets(req->cfg, &n_sec);
        lp_buf_printf(&b, "All %zu attempts failed; last upstream error: ", req->n_log);
        if (umsg[0])
            lp_mask(umsg, strlen(umsg), &b, secrets, n_sec);
        else
            lp_buf_appends(&b, "(no message)");
        lp_buf_appends(&b, ". Attempts: ");
    } else {
        bool timeouts_only = req->n_net_fail == 0 && req->n_timeout_fail > 0;
        status = (timeouts_only || req->deadline_hit) ? 504 : 502;
        code = status == 504 ? "upstream_timeout" : "all_backends_failed";
        lp_buf_printf(&b, "All %zu attempts failed. Attempts: ", req->n_log);
    }
    append_attempts(&b, req);
    if ((status == 429 || status == 503 || status == 529) && req->last_hint_ms > 0) {
        /* Keep the upstream's retry hint: clients back off on it. */
        char ra[32];
        snprintf(ra, sizeof ra, "%lld", (long long)((req->last_hint_ms + 999) / 1000));
        struct lp_edge_header extra = {"Retry-After", ra};
        size_t len = 0;
        char *body = lp_apierr_body(req->client, status, NULL, code, b.data, req->id, &len);
        lp_request_reply_error_body(req, status, body, len, &extra, 1);
        free(body);
    } else {
        lp_request_reply_error(req, status, NULL, code, b.data);
    }
    lp_buf_free(&b);
out:
    lp_request_finish(req);
}

void lp_attempt_begin(struct lp_request *req)
{
    req->timer = evtimer_new(req->w->base, on_timer, req);
    lp_buf_init(&req->out, 0);
    lp_buf_init(&req->last_err, ERRBODY_MAX);
    const struct lp_timeouts *t = &req->cfg->timeout;
    req->deadline_us = req->t0_us + (t->total_ms > 0 ? t->total_ms : 600000) * 1000;
    struct lp_plan_opts o = {
        .client_proto = req->client,
        .allow_cross_protocol = req->chat, /* only chat endpoints have translators */
        .state_fn = lp_health_state_fn,
        .state_ctx = req->rt->health,
        .now_ms = lp_now_ms(),
        .rng = &req->w->rng,
        .include_unusable = req->cfg->fallback.when_all_cooling == LP_ALL_COOLING_TRY_SOONEST,
    };
    req->n_cands = lp_router_plan(req->cfg, req->alias, &o, req->cands, LP_MAX_CANDIDATES, &req->plan);
    if (req->plan.skipped_protocol)
        lp_log_info(req->id, "%zu route(s) of '%s' skipped: backend protocol cannot serve %s",
                    req->plan.skipped_protocol, req->alias_name, req->path);
    req->max_attempts = lp_plan_max_attempts(&req->cfg->fallback, req->n_cands);
    ENTER(req);
    next_attempt(req);
    leave(req);
}
