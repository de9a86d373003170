/* attempt.c - one upstream try: build, start, read, decide its outcome (see attempt.h).
 *
 * Entry points (each runs between att_enter/att_leave, which also hold the request):
 *   on_up_head  (phase SENT)        the response head: sets up body buffering or SSE parsing;
 *   on_up_data  (HEAD / RELAYING)   body bytes or SSE events; the first event decides READY or
 *                                   FAILED; after commit, events go to the relay;
 *   on_up_done  (any)               the transfer ended: COMPLETE, FAILED, LOCAL, DEADLINE, or
 *                                   STREAM_END for the committed stream;
 *   on_timer    (SENT / HEAD / RELAYING)  TTFT, then read-idle limit;
 *   on_resume   (RELAYING)          the client drained its queue: resume the paused transfer.
 * Each produces at most one outcome through conclude() and then touches nothing but `released`.
 */
#include "attempt.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dialect.h"
#include "paramfix.h"
#include "edge.h"
#include "hdrpolicy.h"
#include "log.h"
#include "proto/xlat.h"
#include "runtime.h"
#include "sysprompt.h"
#include "upstream.h"
#include "util/alloc.h"
#include "util/assert.h"
#include "util/clock.h"
#include "worker.h"

#define ERRBODY_MAX (64 * 1024)         /* error bodies kept for classification and relay */
#define RESP_MAX (64LL * 1024 * 1024)   /* buffered non-stream response ceiling */
#define SSE_EVENT_MAX (4 * 1024 * 1024) /* one SSE event */
#define FIRST_MAX (8 * 1024 * 1024)     /* the first event's translated bytes */

static const struct lp_upstream_cbs upstream_cbs;

/* ---- re-entrancy ------------------------------------------------------------------------- */

static void free_resources(struct lp_attempt *a)
{
    a->freed = true;
    if (a->x) {
        lp_upstream_cancel(a->x);
        a->x = NULL;
    }
    a->hx = NULL;
    if (a->timer_armed)
        evtimer_del(&a->timer);
    a->timer_armed = false;
    if (a->body != a->req->body)
        free(a->body);
    a->body = NULL; /* after start the transfer owns it */
    for (size_t i = 0; i < a->n_hdrs; i++)
        free(a->hdrs[i]);
    free(a->hdrs);
    a->hdrs = NULL;
    a->n_hdrs = 0;
    lp_buf_free(&a->resp);
    lp_buf_free(&a->first);
    if (a->sse_init)
        lp_sse_free(&a->sse_p);
    a->sse_init = false;
    lp_stream_state_free(&a->st);
}

static void att_enter(struct lp_attempt *a)
{
    lp_request_enter(a->req);
    a->depth++;
}

/* Leave an entry point. Completes a release requested meanwhile, then leaves the request
 * (which may finish and free it, arena and attempt included): touch nothing afterwards. */
static void att_leave(struct lp_attempt *a)
{
    struct lp_request *req = a->req;
    if (--a->depth == 0 && a->released && !a->freed)
        free_resources(a);
    lp_request_leave(req);
}

void lp_attempt_release(struct lp_attempt *a)
{
    if (!a || a->released)
        return;
    a->released = true;
    if (a->state != LP_ATT_OVER)
        a->state = LP_ATT_OVER;
    if (a->x) {
        /* Close the upstream connection at once, even from inside its own callback (the
         * upstream client defers the actual teardown). */
        lp_upstream_cancel(a->x);
        a->x = NULL;
    }
    if (a->depth == 0)
        free_resources(a);
}

/* Hand the outcome to the request's attempt loop. The loop may release the attempt. */
static void conclude(struct lp_attempt *a, struct lp_outcome *o)
{
    if (o->kind != LP_OUT_READY && o->kind != LP_OUT_COMPLETE)
        a->state = LP_ATT_OVER;
    a->end_us = lp_now_us();
    a->on_outcome(a, o);
}

/* ---- timers -------------------------------------------------------------------------------- */

static void timer_arm(struct lp_attempt *a, enum lp_attempt_timer kind, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    a->timer_kind = kind;
    a->timer_armed = true;
    evtimer_add(&a->timer, &tv);
}

static void timer_stop(struct lp_attempt *a)
{
    if (a->timer_armed)
        evtimer_del(&a->timer);
    a->timer_armed = false;
    a->timer_kind = LP_ATIMER_NONE;
}

static const struct lp_timeouts *timeouts(const struct lp_attempt *a)
{
    return &a->cand->backend->timeout;
}

static int64_t remaining_ms(const struct lp_request *req)
{
    int64_t left = (req->deadline_us - lp_now_us()) / 1000;
    return left > 0 ? left : 0;
}

/* ---- classification ------------------------------------------------------------------------ */

void lp_attempt_classify_transport(struct lp_attempt *a, enum lp_transport tr, const char *why,
                                   struct lp_decision *d)
{
    struct lp_classify_in in = {.transport = tr, .now_wall_ms = lp_wall_ms()};
    lp_classify(&in, a->req->cfg, d);
    if (why && *why)
        snprintf(d->reason, sizeof d->reason, "%s", why);
}

void lp_attempt_classify_http(struct lp_attempt *a, const char *body, size_t len, bool sse_event,
                              struct lp_decision *d)
{
    struct lp_classify_in in = {
        .transport = LP_TR_NONE,
        .status = a->status,
        .body = body,
        .body_len = len,
        .from_sse_event = sse_event,
        .optional_endpoint = a->up_ep != LP_EP_CHAT && a->up_ep != LP_EP_MESSAGES,
        .now_wall_ms = lp_wall_ms(),
    };
    if (a->hx) {
        in.retry_after = lp_upstream_header(a->hx, "Retry-After");
        in.retry_after_ms = lp_upstream_header(a->hx, "retry-after-ms");
        size_t k = 0, n = lp_upstream_header_count(a->hx);
        for (size_t i = 0; i < n && k < LP_CLASSIFY_MAX_RESET; i++) {
            const char *name, *value;
            lp_upstream_header_at(a->hx, i, &name, &value);
            if (lp_classify_is_reset_header(name))
                in.ratelimit_reset[k++] = value;
        }
    }
    lp_classify(&in, a->req->cfg, d);
}

static void fail(struct lp_attempt *a, const struct lp_decision *d)
{
    struct lp_outcome o = {.kind = LP_OUT_FAILED, .d = *d};
    conclude(a, &o);
}

static void fail_transport(struct lp_attempt *a, enum lp_transport tr, const char *why)
{
    struct lp_decision d;
    lp_attempt_classify_transport(a, tr, why, &d);
    fail(a, &d);
}

/* ---- building the upstream request ------------------------------------------------------- */

static void add_hdr(struct lp_attempt *a, char *line)
{
    if (a->n_hdrs == a->cap_hdrs) {
        a->cap_hdrs = a->cap_hdrs ? a->cap_hdrs * 2 : 16;
        a->hdrs = lp_xrealloc(a->hdrs, a->cap_hdrs * sizeof *a->hdrs);
    }
    a->hdrs[a->n_hdrs++] = line;
}

static void on_dialect_hdr(void *ctx, char *line)
{
    add_hdr(ctx, line);
}

/* Is `name` listed in a Connection header value (RFC 9110 7.6.1: those are hop-by-hop)? */
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

static void build_headers(struct lp_attempt *a, const struct lp_dialect_req *dr)
{
    struct lp_request *req = a->req;
    const struct lp_backend *b = a->cand->backend;
    enum lp_proto to = a->cand->protocol;
    size_t n = lp_edge_req_header_count(req->er);
    const char *conn = lp_edge_req_header(req->er, "Connection");
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        lp_edge_req_header_at(req->er, i, &name, &value);
        if (strcasecmp(name, "Content-Type") == 0 || !lp_hdr_forward_request(name, to) ||
            connection_listed(conn, name))
            continue;
        /* Tracing: our traceparent replaces the client's; an invalid one is never forwarded. */
        if (req->trace.strip &&
            (strcasecmp(name, "traceparent") == 0 || strcasecmp(name, "tracestate") == 0))
            continue;
        /* When translating, the client's protocol headers mean nothing to the backend. */
        if (a->translate && strncasecmp(name, "anthropic-", 10) == 0)
            continue;
        add_hdr(a, lp_xasprintf("%s: %s", name, value));
    }
    add_hdr(a, lp_xstrdup("Content-Type: application/json"));
    /* We read (classify, translate, tap) what comes back: ask for an identity body. */
    add_hdr(a, lp_xstrdup("Accept-Encoding: identity"));
    a->cand->dialect->auth_headers(dr, on_dialect_hdr, a);
    if (req->cfg->proxy.forward_client_ip) {
        const char *xff = lp_edge_req_header(req->er, "X-Forwarded-For");
        add_hdr(a, xff ? lp_xasprintf("X-Forwarded-For: %s, %s", xff, req->peer)
                       : lp_xasprintf("X-Forwarded-For: %s", req->peer));
        const char *xri = lp_edge_req_header(req->er, "X-Real-IP");
        add_hdr(a, lp_xasprintf("X-Real-IP: %s", xri ? xri : req->peer));
    }
    add_hdr(a, lp_xasprintf("X-Request-Id: %s", req->id));
    if (req->trace.sampled || (req->trace.strip && req->trace.has_parent)) {
        /* Sampled: our attempt span is the parent. Unsampled: the client's context as it came. */
        char *tp = lp_xmalloc(sizeof "traceparent: " - 1 + 56);
        const struct lp_trace *t = &req->trace;
        memcpy(tp, "traceparent: ", sizeof "traceparent: " - 1);
        if (t->sampled)
            lp_traceparent_format(tp + 13, t->trace_id, a->trace.span_id, 0x01);
        else
            lp_traceparent_format(tp + 13, t->trace_id, t->parent_id, t->flags);
        add_hdr(a, tp);
        if (t->tracestate)
            add_hdr(a, lp_xasprintf("tracestate: %s", t->tracestate));
    }
    if (b->locale && b->locale[0])
        add_hdr(a, lp_xasprintf("Accept-Language: %s", b->locale));
    for (size_t i = 0; i < b->n_headers; i++)
        add_hdr(a, lp_xasprintf("%s: %s", b->headers[i].key, b->headers[i].value));
    if (req->stream)
        add_hdr(a, lp_xstrdup("Accept: text/event-stream"));
}

static int64_t route_max_tokens(const struct lp_candidate *c)
{
    return c->route->max_tokens > 0 ? c->route->max_tokens : c->backend->max_tokens;
}

/* Ask an OpenAI upstream for the final usage chunk although the client did not (Codex sends no
 * stream_options), so token metrics work; the tap withholds that chunk from the client. Only
 * done when the body has no stream_options at all, so nothing the client set is changed. */
static void inject_usage_option(struct lp_attempt *a)
{
    static const char opt[] = "\"stream_options\":{\"include_usage\":true},";
    const char *b = a->body;
    size_t len = a->body_len;
    const char *brace = memchr(b, '{', len);
    if (!brace)
        return;
    size_t at = (size_t)(brace - b) + 1;
    /* lp_jscan_rewrite_model guarantees a member (model) follows the brace: the comma fits. */
    char *nb = lp_xmalloc(len + sizeof opt);
    memcpy(nb, b, at);
    memcpy(nb + at, opt, sizeof opt - 1);
    memcpy(nb + at + sizeof opt - 1, b + at, len - at);
    nb[len + sizeof opt - 1] = '\0';
    if (a->body != a->req->body)
        free(a->body);
    a->body = nb;
    a->body_len = len + sizeof opt - 1;
    a->inject_usage = true;
}

/* The client body with the system prompts injected, or NULL when nothing was injected. */
static char *inject_sysprompts(struct lp_request *req, size_t *len)
{
    struct lp_sysprompts *sp = lp_runtime_sysprompts(req->cfg);
    if (!sp || !req->cfg->proxy.enable_system_prompt)
        return NULL;
    return lp_sysprompt_apply(sp, req->client, req->alias_name, req->body, req->body_len, len);
}

/* translation.unsupported for this candidate: route, else alias, else top level. */
static enum lp_xlat_unsupported xlat_policy(const struct lp_config *cfg,
                                            const struct lp_candidate *c)
{
    if (c->route->translation.unsupported != LP_XLAT_UNSET)
        return c->route->translation.unsupported;
    if (c->alias && c->alias->translation.unsupported != LP_XLAT_UNSET)
        return c->alias->translation.unsupported;
    return cfg->translation.unsupported;
}

/* Build the upstream body. Returns false with *err filled when the translator refuses the
 * client's request for this backend (the client's error, not the backend's). */
static bool build_body(struct lp_attempt *a, struct lp_xlat_err *err)
{
    struct lp_request *req = a->req;
    const struct lp_candidate *c = a->cand;
    size_t ilen = 0;
    char *injected = inject_sysprompts(req, &ilen);
    const char *src = injected ? injected : req->body;
    size_t src_len = injected ? ilen : req->body_len;
    if (a->translate) {
        memset(&a->xnotes, 0, sizeof a->xnotes);
        struct lp_xlat_opts o = {
            .upstream_model = c->route->model,
            .default_max_tokens = req->cfg->proxy.default_max_tokens,
            .max_tokens_limit = route_max_tokens(c),
            .stream = req->stream,
            .request_id = req->id,
            .drop_unsupported = xlat_policy(req->cfg, c) == LP_XLAT_DROP,
            .notes = &a->xnotes,
        };
        a->body = lp_xlat_request(req->client, c->protocol, src, src_len, &o, &a->body_len, err);
        free(injected);
        return a->body != NULL;
    }
    struct lp_jscan scan;
    const struct lp_jscan *s = &req->scan;
    if (injected) {
        /* The injected body has new offsets: scan it again (it is our own, valid JSON). */
        if (lp_jscan_request(injected, src_len, &scan, NULL, NULL) != LP_OK) {
            LP_FREE(&injected);
            src = req->body;
            src_len = req->body_len;
        } else {
            s = &scan;
        }
    }
    a->body = lp_jscan_rewrite_model(src, src_len, s, c->route->model, &a->body_len);
    if (req->client == LP_PROTO_OPENAI && req->chat && req->stream && s->stream_options_len == 0)
        inject_usage_option(a);
    if (injected) {
        lp_jscan_free(&scan);
        free(injected);
    }
    return true;
}

/* The backend's parameter fixes (paramfix.h); a body they do not touch is sent as built. */
static void fix_params(struct lp_attempt *a)
{
    if (!lp_paramfix_wanted(a->cand->backend))
        return;
    size_t n = 0;
    char *nb = lp_paramfix_apply(a->cand->backend, a->body, a->body_len, &n);
    if (!nb)
        return;
    lp_log_debug(a->req->id,
                 "backend '%s': request parameters adjusted (max_tokens_param, "
                 "drop_params)",
                 a->cand->backend->name);
    if (a->body != a->req->body)
        free(a->body);
    a->body = nb;
    a->body_len = n;
}

/* The transfer's own time limit: the request's remaining deadline, or the backend's
 * total_timeout when that is shorter (a per-backend `timeout:` override bounds each attempt). */
static int64_t attempt_limit_ms(struct lp_attempt *a, const struct lp_timeouts *t)
{
    int64_t left = remaining_ms(a->req);
    a->limit_is_deadline = !(t->total_ms > 0 && t->total_ms < left);
    int64_t lim = a->limit_is_deadline ? left : t->total_ms;
    return lim > 0 ? lim : 1;
}

bool lp_attempt_can_serve(const struct lp_request *req, const struct lp_candidate *c)
{
    bool translate = c->protocol != req->client;
    if (translate && !req->chat)
        return false;
    enum lp_endpoint up = lp_dialect_upstream_ep(req->ep, c->protocol);
    struct lp_dialect_req dr = {
        .backend = c->backend, .ep = up, .model = c->route->model, .passthrough_path = req->path};
    char *url = c->dialect->url(&dr);
    free(url);
    return url != NULL;
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

struct lp_attempt *lp_attempt_start(struct lp_request *req, const struct lp_candidate *c,
                                    const struct lp_health_ticket *ticket, int seq,
                                    lp_attempt_outcome_fn fn, struct lp_outcome *early,
                                    bool *started)
{
    struct lp_attempt *a = lp_arena_calloc(&req->arena, sizeof *a);
    LP_BUG_ON(a == NULL); /* the request arena has no ceiling */
    a->req = req;
    a->cand = c;
    a->on_outcome = fn;
    a->ticket = *ticket;
    a->seq = seq;
    a->translate = c->protocol != req->client;
    a->err_cls = LP_CLASS_OK;
    a->start_us = a->last_data_us = lp_now_us();
    lp_buf_init(&a->resp, ERRBODY_MAX);
    lp_buf_init(&a->first, FIRST_MAX);
    lp_buf_init(&a->err_body, ERRBODY_MAX);
    event_assign(&a->timer, req->w->base, -1, 0, on_timer, a);
    *started = false;
    memset(early, 0, sizeof *early);

    /* The upstream path comes from the dialect's endpoint table, never from the client. */
    struct lp_dialect_req dr = {
        .backend = c->backend,
        .ep = lp_dialect_upstream_ep(req->ep, c->protocol),
        .passthrough_path = req->ep == LP_EP_PASSTHROUGH ? req->path : NULL,
        .model = c->route->model,
        .stream = req->stream,
        .query = a->translate ? NULL : req->fwd_query,
        .client_version = a->translate ? NULL : lp_edge_req_header(req->er, "anthropic-version"),
    };
    a->up_ep = dr.ep;
    char *url = c->dialect->url(&dr);
    a->url = lp_arena_strdup(&req->arena, url);
    free(url);
    struct lp_xlat_err xerr = {0};
    if (!a->url || !build_body(a, &xerr)) {
        early->kind = LP_OUT_REFUSED;
        early->refuse_status = xerr.status ? xerr.status : 400;
        snprintf(early->refuse_type, sizeof early->refuse_type, "%s",
                 xerr.type[0] ? xerr.type : "invalid_request_error");
        snprintf(early->refuse_msg, sizeof early->refuse_msg, "%s",
                 xerr.message[0] ? xerr.message : "the request cannot be sent to this backend");
        return a;
    }
    fix_params(a);
    if (req->trace.sampled)
        lp_trace_attempt_begin(a);
    build_headers(a, &dr);
    const struct lp_timeouts *t = timeouts(a);
    /* The transfer takes the body: it must outlive a cancel completed on a later loop pass. */
    LP_DEBUG_ASSERT(a->body != req->body);
    struct lp_upstream_req ur = {
        .url = a->url,
        .post = true,
        .body = a->body,
        .body_len = a->body_len,
        .body_owned = true,
        .headers = (const char *const *)a->hdrs,
        .n_headers = a->n_hdrs,
        .connect_timeout_ms = t->connect_ms,
        .write_timeout_ms = t->write_ms,
        .total_timeout_ms = attempt_limit_ms(a, t),
        .ca_file = c->backend->tls_ca_file,
        .ca_pem = c->backend->tls_ca_pem,
        .http2 = c->backend->http2,
    };
    a->body = NULL;
    a->x = lp_upstream_start(req->w->up, &ur, &upstream_cbs, a);
    if (!a->x) {
        early->kind = LP_OUT_LOCAL;
        early->why = "could not create the upstream transfer";
        return a;
    }
    *started = true;
    int64_t ttft = t->ttft_ms; /* > 0: the config always sets it (config.c) */
    int64_t left = remaining_ms(req);
    /* When the request's deadline comes before this attempt's TTFT limit, the timer is the
     * deadline: its expiry is not the backend's fault (see on_timer). */
    a->ttft_is_deadline = ttft >= left;
    timer_arm(a, LP_ATIMER_TTFT, ttft < left ? ttft : left);
    lp_log_debug(req->id, "attempt %d: %s model=%s url=%s%s", seq, c->backend->name,
                 c->route->model, a->url, a->translate ? " (translated)" : "");
    return a;
}

/* ---- response head and body ----------------------------------------------------------------- */

static void on_up_head(void *arg, struct lp_upstream_xfer *x, int status)
{
    struct lp_attempt *a = arg;
    att_enter(a);
    a->hx = x;
    a->status = status;
    a->state = LP_ATT_HEAD;
    const char *ct = lp_upstream_header(x, "Content-Type");
    a->sse = status >= 200 && status < 300 && ct && strstr(ct, "text/event-stream");
    if (a->sse) {
        struct lp_request *req = a->req;
        lp_sse_init(&a->sse_p, SSE_EVENT_MAX);
        a->sse_init = true;
        struct lp_stream_xlat *xl = NULL;
        if (a->translate)
            xl = lp_stream_xlat_new(a->cand->protocol, req->client, req->alias_name,
                                    req->scan.has_stream_options_include_usage, req->id);
        lp_stream_state_init(&a->st, a->cand->protocol, req->client, xl,
                             !a->inject_usage || req->scan.has_stream_options_include_usage);
    } else {
        if (status >= 200 && status < 300)
            a->resp.max = (size_t)RESP_MAX; /* a complete answer will be buffered */
        /* Time to first byte: the head is the first byte of a non-stream response. */
        a->first_us = lp_now_us();
        timer_stop(a);
        timer_arm(a, LP_ATIMER_READ, timeouts(a)->read_ms);
    }
    att_leave(a);
}

/* The first real event of a stream: an in-band error fails the attempt; garbage fails it as a
 * protocol error; anything else makes it READY to commit. */
static void on_first_event(struct lp_attempt *a, const struct lp_sse_event *ev)
{
    a->first_us = lp_now_us();
    timer_stop(a);
    timer_arm(a, LP_ATIMER_READ, timeouts(a)->read_ms);
    if (lp_sse_event_is_error(a->cand->protocol, ev->event, ev->event_len, ev->data,
                              ev->data_len)) {
        struct lp_decision d;
        lp_attempt_classify_http(a, ev->data, ev->data_len, true, &d);
        lp_buf_reset(&a->resp);
        lp_buf_append(&a->resp, ev->data, ev->data_len);
        fail(a, &d);
        return;
    }
    if (lp_relay_first_event(a->req, &a->st, ev, &a->first) == LP_RELAY_BROKEN) {
        fail_transport(a, LP_TR_PROTOCOL, a->st.broken);
        return;
    }
    a->state = LP_ATT_READY;
    a->first_ev = *ev; /* valid until the parser is fed or advanced: commit happens now */
    struct lp_outcome o = {.kind = LP_OUT_READY};
    conclude(a, &o);
}

void lp_attempt_commit(struct lp_attempt *a)
{
    LP_DEBUG_ASSERT(a->state == LP_ATT_READY || (a->state == LP_ATT_HEAD && !a->sse));
    if (!a->sse)
        return; /* a complete answer: forward.c replies with it */
    a->state = LP_ATT_RELAYING;
    lp_relay_cork_batch(a->req);
    if (a->translate)
        lp_relay_write(a->req, a->first.data, a->first.len);
    else
        lp_relay_event(a->req, &a->st, &a->first_ev);
    lp_buf_free(&a->first);
    memset(&a->first_ev, 0, sizeof a->first_ev);
}

static void on_resume(void *arg)
{
    struct lp_attempt *a = arg;
    if (!a->x || !a->paused || a->released)
        return;
    att_enter(a);
    a->paused = false;
    lp_upstream_resume(a->x); /* may deliver the held bytes synchronously */
    att_leave(a);
}

/* Events buffered in the parser: the first decides the outcome, the rest are relayed. Returns
 * LP_ERR to stop the transfer (failed, released, broken or finished with an error event). */
static enum lp_status take_events(struct lp_attempt *a)
{
    struct lp_sse_event ev;
    while (!a->released && lp_sse_next(&a->sse_p, &ev) == LP_OK) {
        if (!a->first_seen) {
            if (ev.is_comment_only || (!ev.has_data && ev.event_len == 0))
                continue; /* keep-alive before the first event: nothing to classify */
            a->first_seen = true;
            on_first_event(a, &ev);
            continue;
        }
        if (a->state != LP_ATT_RELAYING)
            continue;
        enum lp_relay_rc rc = lp_relay_event(a->req, &a->st, &ev);
        if (rc == LP_RELAY_ERROR || rc == LP_RELAY_BROKEN)
            return LP_ERR; /* on_up_done ends the stream */
    }
    if (a->released || a->req->client_gone)
        return LP_ERR;
    return LP_OK;
}

static enum lp_status on_sse_data(struct lp_attempt *a, const char *buf, size_t len)
{
    struct lp_request *req = a->req;
    if (a->state == LP_ATT_RELAYING && lp_relay_congested(req)) {
        /* Backpressure: the client reads slower than the upstream writes. */
        a->paused = true;
        lp_relay_when_drained(req, on_resume, a);
        return LP_AGAIN;
    }
    if (lp_sse_feed(&a->sse_p, buf, len) != LP_OK) {
        a->st.broken = "upstream SSE event larger than the 4 MiB limit";
        return LP_ERR;
    }
    if (a->state == LP_ATT_RELAYING)
        lp_relay_cork_batch(req);
    return take_events(a);
}

static enum lp_status on_up_data(void *arg, struct lp_upstream_xfer *x, const char *buf, size_t len)
{
    struct lp_attempt *a = arg;
    enum lp_status rc = LP_OK;
    att_enter(a);
    a->last_data_us = lp_now_us();
    if (a->sse) {
        rc = on_sse_data(a, buf, len);
    } else if (lp_buf_append(&a->resp, buf, len) != LP_OK && a->status >= 200 && a->status < 300) {
        a->resp_overflow = true;
        rc = LP_ERR;
        /* Error bodies beyond the classification window are simply dropped. */
    }
    if (a->released || a->req->client_gone)
        rc = LP_ERR;
    att_leave(a);
    return rc;
}

/* ---- end of transfer ------------------------------------------------------------------------ */

static enum lp_transport transport_of(enum lp_xfer_result r)
{
    switch (r) {
    case LP_XFER_CONNECT:
        return LP_TR_CONNECT;
    case LP_XFER_DNS:
        return LP_TR_DNS;
    case LP_XFER_TLS:
        return LP_TR_TLS;
    case LP_XFER_TIMEOUT_CONNECT:
        return LP_TR_TIMEOUT_CONNECT;
    case LP_XFER_TIMEOUT_TOTAL:
        return LP_TR_TIMEOUT_TOTAL;
    case LP_XFER_PROTOCOL:
        return LP_TR_PROTOCOL;
    case LP_XFER_LOCAL:
        return LP_TR_LOCAL;
    default:
        return LP_TR_RESET;
    }
}

/* The end of the committed stream: the end kind, its classification for health, and the
 * client-visible error for an unclean end. */
static void stream_over(struct lp_attempt *a, enum lp_xfer_result res, const char *err)
{
    struct lp_request *req = a->req;
    struct lp_outcome o = {.kind = LP_OUT_STREAM_END};
    struct lp_stream_state *st = &a->st;
    if (req->client_gone) {
        o.end = LP_END_CLIENT_GONE;
        o.why = "client disconnected mid-stream";
    } else if (res == LP_XFER_TIMEOUT_TOTAL && a->limit_is_deadline) {
        o.kind = LP_OUT_DEADLINE;
    } else {
        if (!st->done && !st->upstream_error && !st->broken && res == LP_XFER_OK) {
            struct lp_sse_event ev;
            while (lp_sse_finish(&a->sse_p, &ev) == LP_OK)
                if (!ev.is_comment_only && lp_relay_event(req, st, &ev) != LP_RELAY_OK)
                    break;
            if (!st->done && !st->upstream_error && !st->broken && lp_sse_pending(&a->sse_p) == 0)
                lp_relay_clean_eof(req, st);
        }
        if (st->done) {
            o.end = LP_END_CLEAN;
        } else if (st->upstream_error) {
            o.end = LP_END_UPSTREAM_ERROR;
            lp_attempt_classify_http(a, st->err_data.data, st->err_data.len, true, &o.d);
        } else if (st->broken) {
            o.end = LP_END_BROKEN;
            lp_attempt_classify_transport(a, LP_TR_PROTOCOL, st->broken, &o.d);
            o.abort_reason = "upstream_protocol";
        } else {
            o.end = LP_END_BROKEN;
            const char *why = res == LP_XFER_OK
                                  ? "upstream closed the stream before its final event"
                                  : (err ? err : "upstream connection failed");
            lp_attempt_classify_transport(a, res == LP_XFER_OK ? LP_TR_RESET : transport_of(res),
                                          why, &o.d);
            o.abort_reason = "upstream_cut";
        }
        o.err_type = "api_error";
    }
    conclude(a, &o);
}

/* A usable-looking 2xx body can still be an error envelope (relays answer errors with 200):
 * classify only bodies that could be one, so ordinary answers cost nothing extra. */
static bool maybe_error_body(const struct lp_buf *b)
{
    return b->len <= LP_CLASSIFY_MAX_BODY &&
           (memmem(b->data, b->len, "\"error\"", 7) || memmem(b->data, b->len, "\"code\"", 6));
}

/* A complete 2xx answer: usable (COMPLETE, translated to the client's protocol when needed), an
 * error envelope (FAILED), or not a response of the backend's protocol (FAILED, server). */
static void body_over(struct lp_attempt *a)
{
    struct lp_decision d;
    if (maybe_error_body(&a->resp)) {
        lp_attempt_classify_http(a, a->resp.data, a->resp.len, false, &d);
        if (d.cls != LP_CLASS_OK) {
            fail(a, &d);
            return;
        }
    }
    if (a->translate) {
        struct lp_request *req = a->req;
        size_t len = 0;
        char *x = lp_xlat_response(a->cand->protocol, req->client, a->resp.data ? a->resp.data : "",
                                   a->resp.len, req->alias_name, &len);
        if (!x) {
            char why[96];
            snprintf(why, sizeof why, "upstream returned an invalid %s response",
                     lp_proto_name(a->cand->protocol));
            fail_transport(a, LP_TR_PROTOCOL, why);
            return;
        }
        lp_buf_reset(&a->resp);
        enum lp_status rc = lp_buf_append(&a->resp, x, len);
        free(x);
        if (rc != LP_OK) {
            fail_transport(a, LP_TR_PROTOCOL, "translated response larger than the buffer limit");
            return;
        }
    }
    struct lp_outcome o = {.kind = LP_OUT_COMPLETE};
    conclude(a, &o);
}

static void on_up_done(void *arg, struct lp_upstream_xfer *x, enum lp_xfer_result res,
                       const char *err)
{
    struct lp_attempt *a = arg;
    att_enter(a);
    a->x = NULL; /* the transfer is over: nothing must cancel it any more */
    a->hx = x;   /* its headers stay readable until this callback returns */
    timer_stop(a);
    if (a->released) {
        /* Cancelled transfers report nothing; nothing to do. */
    } else if (a->state == LP_ATT_RELAYING) {
        stream_over(a, res, err);
    } else if (res == LP_XFER_OK && a->status >= 200 && a->status < 300) {
        if (a->sse)
            fail_transport(a, LP_TR_PROTOCOL, "upstream stream ended before its first event");
        else
            body_over(a);
    } else if (res == LP_XFER_OK || (res == LP_XFER_ABORTED && a->status >= 300)) {
        struct lp_decision d;
        lp_attempt_classify_http(a, a->resp.data, a->resp.len, false, &d);
        fail(a, &d);
    } else if (a->resp_overflow) {
        fail_transport(a, LP_TR_PROTOCOL, "upstream response larger than the 64 MiB buffer limit");
    } else if (a->sse && a->st.broken) {
        fail_transport(a, LP_TR_PROTOCOL, a->st.broken);
    } else if (res == LP_XFER_TIMEOUT_TOTAL && a->limit_is_deadline) {
        struct lp_outcome o = {.kind = LP_OUT_DEADLINE};
        conclude(a, &o);
    } else if (res == LP_XFER_LOCAL) {
        struct lp_outcome o = {.kind = LP_OUT_LOCAL, .why = err ? err : "local resource exhausted"};
        conclude(a, &o);
    } else {
        fail_transport(a, transport_of(res), err);
    }
    a->hx = NULL;
    att_leave(a);
}

static const struct lp_upstream_cbs upstream_cbs = {
    .on_head = on_up_head,
    .on_data = on_up_data,
    .on_done = on_up_done,
};

/* ---- timer ---------------------------------------------------------------------------------- */

static void stop_transfer(struct lp_attempt *a)
{
    if (a->x) {
        lp_upstream_cancel(a->x);
        a->x = NULL;
    }
}

static void on_ttft(struct lp_attempt *a)
{
    stop_transfer(a);
    if (a->ttft_is_deadline) {
        struct lp_outcome o = {.kind = LP_OUT_DEADLINE};
        conclude(a, &o);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "no %s within ttft_timeout (%lld ms)",
             a->sse ? "first SSE event" : "response", (long long)timeouts(a)->ttft_ms);
    fail_transport(a, LP_TR_TIMEOUT_TTFT, why);
}

static void on_read_idle(struct lp_attempt *a)
{
    int64_t read_ms = timeouts(a)->read_ms;
    int64_t idle_ms = (lp_now_us() - a->last_data_us) / 1000;
    if (a->paused || idle_ms < read_ms) {
        /* Data arrived since the timer was armed (or we paused the upstream ourselves). */
        timer_arm(a, LP_ATIMER_READ, a->paused ? read_ms : read_ms - idle_ms);
        return;
    }
    stop_transfer(a);
    char why[96];
    snprintf(why, sizeof why, "upstream silent for %lld ms (read_timeout)", (long long)idle_ms);
    if (a->state == LP_ATT_RELAYING) {
        struct lp_outcome o = {.kind = LP_OUT_STREAM_END,
                               .end = LP_END_BROKEN,
                               .err_type = "timeout_error",
                               .abort_reason = "read_timeout"};
        lp_attempt_classify_transport(a, LP_TR_TIMEOUT_READ, why, &o.d);
        conclude(a, &o);
        return;
    }
    fail_transport(a, LP_TR_TIMEOUT_READ, why);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lp_attempt *a = arg;
    enum lp_attempt_timer kind = a->timer_kind;
    a->timer_armed = false;
    a->timer_kind = LP_ATIMER_NONE;
    if (a->released)
        return;
    att_enter(a);
    if (kind == LP_ATIMER_TTFT)
        on_ttft(a);
    else if (kind == LP_ATIMER_READ)
        on_read_idle(a);
    att_leave(a);
}

/* ---- accessors ------------------------------------------------------------------------------ */

const char *lp_attempt_header(const struct lp_attempt *a, const char *name)
{
    return a->hx ? lp_upstream_header(a->hx, name) : NULL;
}

size_t lp_attempt_header_count(const struct lp_attempt *a)
{
    return a->hx ? lp_upstream_header_count(a->hx) : 0;
}

void lp_attempt_header_at(const struct lp_attempt *a, size_t i, const char **name,
                          const char **value)
{
    lp_upstream_header_at(a->hx, i, name, value);
}

size_t lp_attempt_response_headers(const struct lp_attempt *a, struct lp_edge_header *out,
                                   size_t max, bool for_stream)
{
    size_t n = 0;
    if (a->translate && a->xnotes.dropped[0] && max > 0)
        out[n++] = (struct lp_edge_header){"X-LLM-Proxy-Dropped-Params", a->xnotes.dropped};
    if (a->translate || !a->hx)
        return n;
    size_t cnt = lp_upstream_header_count(a->hx);
    const char *conn = lp_upstream_header(a->hx, "Connection");
    for (size_t i = 0; i < cnt && n < max; i++) {
        const char *name, *value;
        lp_upstream_header_at(a->hx, i, &name, &value);
        if (!lp_hdr_forward_response(name) || strcasecmp(name, "Content-Type") == 0 ||
            (for_stream && strcasecmp(name, "Cache-Control") == 0) || connection_listed(conn, name))
            continue;
        out[n++] = (struct lp_edge_header){name, value};
    }
    return n;
}

void lp_attempt_dispose(struct lp_attempt *a)
{
    if (!a)
        return;
    lp_attempt_release(a);
    lp_buf_free(&a->err_body);
}
