/* traffic.c - traffic control for requests (see traffic.h). */
#include "traffic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "apierr.h"
#include "attempt.h"
#include "classify.h"
#include "clientip.h"
#include "edge.h"
#include "forward.h"
#include "keys.h"
#include "limiter.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "request.h"
#include "router.h"
#include "runtime.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "worker.h"

#define MAX_SLOTS 8
#define N_HDRS 6

struct lp_traffic {
    struct lp_limit_ticket *ticket;
    struct lp_limit_result res;
    bool have_res;
    int64_t queue_us; /* waited for admission and for backend slots */
    int64_t wait_start_us;
    const char *limited; /* scope name of the limit that refused the request */
    struct {
        const struct lp_attempt *a;
        struct lp_backend_slot *slot;
    } slots[MAX_SLOTS];
    struct lp_backend_slot *pending; /* acquired, attempt not created yet */
    struct lp_backend_slot *held;    /* handed over by a backend wait, not used yet */
    struct lp_backend_wait *bwait;
    void (*bwait_cb)(struct lp_request *req, bool granted);
    char hv[N_HDRS][48];
    struct lp_edge_header hdrs[N_HDRS];
};

static struct lp_traffic *tr(struct lp_request *req)
{
    if (!req->traffic)
        req->traffic = lp_arena_calloc(&req->arena, sizeof *req->traffic);
    return req->traffic;
}

static struct lp_limiter *limiter(const struct lp_request *req)
{
    return req->rt->limiter;
}

/* ---- authentication and permissions --------------------------------------------------------- */

bool lp_traffic_authenticate(struct lp_request *req)
{
    const struct lp_client_key *k = NULL;
    enum lp_key_auth r = lp_keys_match_headers(req->cfg, req->er, &k);
    if (r == LP_KEY_OPEN || r == LP_KEY_PROXY || r == LP_KEY_CLIENT) {
        req->key = k;
        return true;
    }
    lp_request_reply_error(req, 401, NULL, "invalid_api_key",
                           r == LP_KEY_INVALID
                               ? "Invalid API key"
                               : "Missing API key: send it as 'Authorization: Bearer <key>' or "
                                 "'x-api-key: <key>'");
    return false;
}

bool lp_traffic_model_allowed(struct lp_request *req)
{
    if (lp_keys_model_allowed(req->key, req->alias_name))
        return true;
    char msg[400];
    snprintf(msg, sizeof msg, "The API key '%.100s' may not use the model '%.150s'", req->key->name,
             req->alias_name);
    lp_request_reply_error(req, 403, NULL, "model_not_allowed", msg);
    return false;
}

/* ---- replies -------------------------------------------------------------------------------- */

static int64_t ceil_s(int64_t ms)
{
    return ms > 0 ? (ms + 999) / 1000 : 1;
}

static void count(struct lp_request *req, enum lp_metric_id id, const char *label)
{
    if (!req->cfg->metrics.enabled)
        return;
    const char *l[] = {label};
    lp_metrics_inc(req->w->metrics, id, l, 1);
}

/* 429 (a rate or key limit) or 503 (capacity: queue full, queue timeout, saturated), with
 * Retry-After and the rate-limit headers, in the client's protocol. */
static void reply_limited(struct lp_request *req, const struct lp_limit_result *res)
{
    struct lp_traffic *t = tr(req);
    enum lp_limit_scope s = res->scope;
    t->limited = lp_limit_scope_name(s);
    bool capacity = s == LP_LIMIT_QUEUE_FULL || s == LP_LIMIT_QUEUE_TIMEOUT ||
                    s == LP_LIMIT_SATURATED || s == LP_LIMIT_UNAVAILABLE;
    int status = capacity ? 503 : 429;
    const char *type = NULL, *code = "rate_limit_exceeded";
    char msg[300];
    int64_t ra = ceil_s(res->retry_after_ms);
    switch (s) {
    case LP_LIMIT_GLOBAL:
        snprintf(msg, sizeof msg,
                 "Rate limit reached: too many requests to this proxy; retry "
                 "after %lld s",
                 (long long)ra);
        break;
    case LP_LIMIT_IP:
        snprintf(msg, sizeof msg, "Rate limit reached for your address; retry after %lld s",
                 (long long)ra);
        break;
    case LP_LIMIT_MODEL:
        snprintf(msg, sizeof msg, "Rate limit reached for model '%.100s'; retry after %lld s",
                 req->alias_name, (long long)ra);
        break;
    case LP_LIMIT_KEY_RPM:
        snprintf(msg, sizeof msg,
                 "Rate limit reached for key '%.100s': requests per minute; "
                 "retry after %lld s",
                 req->key ? req->key->name : "", (long long)ra);
        break;
    case LP_LIMIT_KEY_TPM:
        snprintf(msg, sizeof msg,
                 "Rate limit reached for key '%.100s': tokens per minute; "
                 "retry after %lld s",
                 req->key ? req->key->name : "", (long long)ra);
        break;
    case LP_LIMIT_KEY_DAY:
    case LP_LIMIT_KEY_MONTH:
        type = req->client == LP_PROTO_OPENAI ? "insufficient_quota" : NULL;
        code = "insufficient_quota";
        snprintf(msg, sizeof msg,
                 "Token budget of key '%.100s' for this %s is used up; it "
                 "renews in %lld s",
                 req->key ? req->key->name : "", s == LP_LIMIT_KEY_DAY ? "day" : "month",
                 (long long)ra);
        break;
    case LP_LIMIT_KEY_CONCURRENCY:
        snprintf(msg, sizeof msg,
                 "Too many concurrent requests for key '%.100s' (max_concurrent "
                 "%d); retry shortly",
                 req->key ? req->key->name : "", req->key ? req->key->max_concurrent : 0);
        break;
    case LP_LIMIT_QUEUE_FULL:
        code = "queue_full";
        snprintf(msg, sizeof msg,
                 "The proxy is at its concurrency limit and its queue is full; "
                 "retry after %lld s",
                 (long long)ra);
        break;
    case LP_LIMIT_QUEUE_TIMEOUT:
        code = "queue_timeout";
        snprintf(msg, sizeof msg,
                 "The proxy is at its concurrency limit: no slot within the "
                 "queue timeout; retry after %lld s",
                 (long long)ra);
        break;
    case LP_LIMIT_UNAVAILABLE:
        code = "limits_unavailable";
        snprintf(msg, sizeof msg,
                 "The shared limits store is unavailable and the proxy is set to "
                 "refuse then (redis.on_error: fail_closed); retry after %lld s",
                 (long long)ra);
        break;
    case LP_LIMIT_SATURATED:
        code = "backends_saturated";
        snprintf(msg, sizeof msg,
                 "Every backend for model '%.100s' is at its concurrency "
                 "limit; retry after %lld s",
                 req->alias_name, (long long)ra);
        break;
    default:
        snprintf(msg, sizeof msg, "Request limited");
        break;
    }
    count(req, capacity ? LP_M_SHED_TOTAL : LP_M_LIMITED_TOTAL, t->limited);
    if (req->key && req->cfg->metrics.enabled) {
        const char *l[] = {req->key->name, t->limited};
        lp_metrics_inc(req->w->metrics, LP_M_KEY_LIMITED_TOTAL, l, 1);
    }
    size_t len = 0;
    char *body = lp_apierr_body(req->client, status, type, code, msg, req->id, &len);
    struct lp_edge_header extra[N_HDRS + 1];
    char ras[24];
    snprintf(ras, sizeof ras, "%lld", (long long)ra);
    extra[0] = (struct lp_edge_header){"Retry-After", ras};
    size_t n = lp_traffic_headers(req, extra, 1, N_HDRS + 1);
    lp_request_reply_error_body(req, status, body, len, extra, n);
    free(body);
}

/* ---- admission ------------------------------------------------------------------------------ */

static void on_waiting_client_gone(struct lp_request *req)
{
    req->client_gone = true;
    count(req, LP_M_SHED_TOTAL, "client_gone");
    lp_log_info(req->id, "client disconnected while queued");
    lp_request_finish(req); /* lp_traffic_finish cancels the pending check: the place is free */
}

static void on_waiting_shutdown(struct lp_request *req)
{
    lp_request_enter(req);
    lp_request_reply_error_retry(req, 503, NULL, "shutting_down",
                                 "The proxy is shutting down; retry the request", 1);
    lp_request_finish(req);
    lp_request_leave(req);
}

static void admission_done(struct lp_request *req, const struct lp_limit_result *res, bool async)
{
    struct lp_traffic *t = tr(req);
    t->res = *res;
    t->have_res = true;
    t->queue_us += res->waited_us;
    if (res->queued && req->cfg->metrics.enabled) {
        lp_metrics_inc(req->w->metrics, LP_M_QUEUED_TOTAL, NULL, 1);
        lp_metrics_observe(req->w->metrics, LP_M_QUEUE_WAIT_SECONDS, NULL,
                           (double)res->waited_us / 1e6);
    }
    if (res->admitted) {
        req->on_client_gone = NULL;
        req->on_shutdown = NULL;
        lp_forward_begin(req);
        return;
    }
    reply_limited(req, res);
    if (async)
        lp_request_finish(req); /* deferred: we are inside the completion's enter/leave */
}

static void on_admitted(void *arg, const struct lp_limit_result *res)
{
    struct lp_request *req = arg;
    lp_request_enter(req);
    admission_done(req, res, true);
    lp_request_leave(req);
}

static int64_t wait_budget_ms(const struct lp_request *req)
{
    int64_t total = req->cfg->timeout.total_ms > 0 ? req->cfg->timeout.total_ms : 600000;
    int64_t left = total - (lp_now_us() - req->t0_us) / 1000;
    int64_t q = req->cfg->concurrency.queue_timeout_ms;
    return left < q ? left : q;
}

void lp_traffic_admit(struct lp_request *req)
{
    const struct lp_config *cfg = req->cfg;
    if (!cfg->rate_limit.enabled && !cfg->concurrency.enabled && !req->key) {
        lp_forward_begin(req);
        return;
    }
    struct lp_traffic *t = tr(req);
    char ip[LP_CLIENTIP_MAX] = "";
    const char *client_ip = NULL;
    if (cfg->rate_limit.enabled && cfg->rate_limit.per_ip_rps > 0 && !cfg->server.n_trusted_proxies)
        client_ip = req->peer; /* the edge's normalised peer address */
    else if (cfg->rate_limit.enabled && cfg->rate_limit.per_ip_rps > 0)
        lp_clientip_resolve(req->peer, lp_edge_req_header(req->er, "X-Forwarded-For"),
                            lp_edge_req_header(req->er, "X-Real-IP"), cfg->server.trusted_proxies,
                            cfg->server.n_trusted_proxies, ip, sizeof ip);
    struct lp_limit_query q = {
        .ip = client_ip ? client_ip
              : ip[0]   ? ip
                        : NULL,
        .model = req->alias_name,
        .key = req->key ? req->key->name : NULL,
        .est_tokens =
            lp_keys_counts_tokens(req->key)
                ? lp_keys_estimate_tokens(req->body, req->body_len, cfg->proxy.default_max_tokens)
                : 0,
        .max_wait_ms = wait_budget_ms(req),
        .base = req->w->base,
    };
    struct lp_limit_result res;
    if (lp_limiter_admit(limiter(req), &q, &t->ticket, &res, on_admitted, req)) {
        admission_done(req, &res, false);
        return;
    }
    lp_request_set_phase(req, LP_PHASE_WAITING);
    t->wait_start_us = lp_now_us();
    req->on_client_gone = on_waiting_client_gone;
    req->on_shutdown = on_waiting_shutdown;
}

/* ---- backend slots -------------------------------------------------------------------------- */

bool lp_traffic_backend_acquire(struct lp_request *req, const struct lp_candidate *c)
{
    struct lp_traffic *t = tr(req);
    struct lp_limiter *L = limiter(req);
    if (t->held && strcmp(L->ops->slot_backend(t->held), c->backend->name) == 0) {
        t->pending = t->held;
        t->held = NULL;
        return true;
    }
    return lp_limiter_backend_try(L, c->backend->name, &t->pending);
}

void lp_traffic_backend_unacquire(struct lp_request *req)
{
    struct lp_traffic *t = req->traffic;
    if (t && t->pending) {
        lp_limiter_backend_done(limiter(req), t->pending, LP_BACKEND_NEUTRAL, 0);
        t->pending = NULL;
    }
}

void lp_traffic_backend_bind(struct lp_request *req, const struct lp_attempt *a)
{
    struct lp_traffic *t = req->traffic;
    if (!t || !t->pending)
        return;
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (!t->slots[i].slot) {
            t->slots[i].a = a;
            t->slots[i].slot = t->pending;
            t->pending = NULL;
            break;
        }
    }
    if (t->pending) /* no room to track it: give it back now rather than leak it */
        lp_traffic_backend_unacquire(req);
    if (t->held) { /* a slot handed over for another backend went unused */
        lp_limiter_backend_done(limiter(req), t->held, LP_BACKEND_NEUTRAL, 0);
        t->held = NULL;
    }
}

static enum lp_backend_outcome outcome_of(const char *cls)
{
    if (!cls)
        return LP_BACKEND_NEUTRAL;
    if (strcmp(cls, "ok") == 0)
        return LP_BACKEND_OK;
    if (strcmp(cls, lp_class_name(LP_CLASS_RATE_LIMIT)) == 0 ||
        strcmp(cls, lp_class_name(LP_CLASS_OVERLOADED)) == 0)
        return LP_BACKEND_OVERLOAD;
    if (strcmp(cls, lp_class_name(LP_CLASS_SERVER)) == 0 ||
        strcmp(cls, lp_class_name(LP_CLASS_NETWORK)) == 0 ||
        strcmp(cls, lp_class_name(LP_CLASS_TIMEOUT)) == 0)
        return LP_BACKEND_FAILED;
    return LP_BACKEND_NEUTRAL;
}

void lp_traffic_attempt_end(const struct lp_attempt *a, const char *cls)
{
    struct lp_traffic *t = a->req->traffic;
    if (!t)
        return;
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (t->slots[i].a != a || !t->slots[i].slot)
            continue;
        int64_t end = a->first_us ? a->first_us : (a->end_us ? a->end_us : lp_now_us());
        double latency_ms = (double)(end - a->start_us) / 1000.0;
        lp_limiter_backend_done(limiter(a->req), t->slots[i].slot, outcome_of(cls), latency_ms);
        t->slots[i].slot = NULL;
        t->slots[i].a = NULL;
        return;
    }
}

static void on_backend_slot(void *arg, struct lp_backend_slot *slot)
{
    struct lp_request *req = arg;
    struct lp_traffic *t = req->traffic;
    t->bwait = NULL;
    t->queue_us += lp_now_us() - t->wait_start_us;
    lp_request_enter(req);
    if (slot)
        t->held = slot;
    t->bwait_cb(req, slot != NULL);
    lp_request_leave(req);
}

bool lp_traffic_backend_wait(struct lp_request *req, size_t from,
                             void (*cb)(struct lp_request *req, bool granted))
{
    if (from >= req->n_cands)
        return false;
    int64_t budget = wait_budget_ms(req);
    if (budget <= 0)
        return false;
    struct lp_traffic *t = tr(req);
    const char *names[LP_MAX_CANDIDATES];
    size_t n = 0;
    for (size_t i = from; i < req->n_cands && n < LP_MAX_CANDIDATES; i++)
        names[n++] = req->cands[i].backend->name;
    lp_request_set_phase(req, LP_PHASE_WAITING);
    t->wait_start_us = lp_now_us();
    t->bwait_cb = cb;
    struct lp_limiter *L = limiter(req);
    t->bwait = L->ops->backend_wait(L, names, n, budget, req->w->base, on_backend_slot, req);
    lp_log_debug(req->id, "every remaining route of '%s' is saturated: waiting up to %lld ms",
                 req->alias_name, (long long)budget);
    return true;
}

void lp_traffic_reply_saturated(struct lp_request *req)
{
    struct lp_limit_result res = {.scope = LP_LIMIT_SATURATED, .retry_after_ms = 1000};
    reply_limited(req, &res);
}

/* ---- headers -------------------------------------------------------------------------------- */

static size_t build_headers(struct lp_request *req, struct lp_traffic *t,
                            struct lp_edge_header *out, size_t max);

/* Decimal digits of v >= 0 into out (no printf: this runs on every limited response). */
/* v (negative as 0) then the suffix, NUL-terminated, truncated to n bytes (n >= 1). */
static void fmt_int(char *out, size_t n, int64_t v, const char *suffix)
{
    char t[24];
    size_t k = sizeof t;
    uint64_t u = v > 0 ? (uint64_t)v : 0;
    do {
        t[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t len = sizeof t - k < n - 1 ? sizeof t - k : n - 1;
    memcpy(out, t + k, len);
    size_t sl = strlen(suffix);
    if (sl > n - 1 - len)
        sl = n - 1 - len;
    memcpy(out + len, suffix, sl);
    out[len + sl] = '\0';
}

/* A Go-style duration, as OpenAI's x-ratelimit-reset-* carry: "20ms", "1.5s", "6m0s". */
static void fmt_duration(char *out, size_t n, int64_t ms)
{
    if (ms < 1000) {
        fmt_int(out, n, ms, "ms");
    } else if (ms < 60000 && ms % 1000 == 0) {
        fmt_int(out, n, ms / 1000, "s");
    } else if (ms < 60000)
        snprintf(out, n, "%gs", (double)ms / 1000.0);
    else
        snprintf(out, n, "%lldm%llds", (long long)(ms / 60000), (long long)(ms % 60000 / 1000));
}

/* RFC 3339 in UTC, as Anthropic's anthropic-ratelimit-*-reset carry. */
static void fmt_reset_time(char *out, size_t n, int64_t ms)
{
    time_t when = (time_t)((lp_wall_ms() + (ms > 0 ? ms : 0) + 999) / 1000);
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool ours(const char *name)
{
    return strncasecmp(name, "x-ratelimit-", 12) == 0 ||
           strncasecmp(name, "anthropic-ratelimit-", 20) == 0;
}

size_t lp_traffic_headers(struct lp_request *req, struct lp_edge_header *hdrs, size_t n_in,
                          size_t max)
{
    struct lp_traffic *t = req->traffic;
    if (!t || !t->have_res || (!t->res.requests.set && !t->res.tokens.set))
        return n_in;
    size_t kept = 0;
    for (size_t i = 0; i < n_in; i++)
        if (!ours(hdrs[i].name))
            hdrs[kept++] = hdrs[i];
    return kept + build_headers(req, t, hdrs + kept, max > kept ? max - kept : 0);
}

static size_t build_headers(struct lp_request *req, struct lp_traffic *t,
                            struct lp_edge_header *out, size_t max)
{
    static const char *const oa[2][3] = {
        {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
         "x-ratelimit-reset-requests"},
        {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"},
    };
    static const char *const an[2][3] = {
        {"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
         "anthropic-ratelimit-requests-reset"},
        {"anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining",
         "anthropic-ratelimit-tokens-reset"},
    };
    const struct lp_limit_info *infos[2] = {&t->res.requests, &t->res.tokens};
    size_t n = 0;
    for (int k = 0; k < 2; k++) {
        const struct lp_limit_info *in = infos[k];
        if (!in->set || n + 3 > max || n + 3 > N_HDRS)
            continue;
        const char *const *names = req->client == LP_PROTO_ANTHROPIC ? an[k] : oa[k];
        fmt_int(t->hv[n], sizeof t->hv[n], in->limit, "");
        fmt_int(t->hv[n + 1], sizeof t->hv[n + 1], in->remaining, "");
        if (req->client == LP_PROTO_ANTHROPIC)
            fmt_reset_time(t->hv[n + 2], sizeof t->hv[n + 2], in->reset_ms);
        else
            fmt_duration(t->hv[n + 2], sizeof t->hv[n + 2], in->reset_ms);
        for (int j = 0; j < 3; j++)
            out[n + j] = (struct lp_edge_header){names[j], t->hv[n + j]};
        n += 3;
    }
    return n;
}

/* ---- record and finish ---------------------------------------------------------------------- */

void lp_traffic_record(struct lp_request *req)
{
    struct lp_traffic *t = req->traffic;
    bool answered = req->final_status >= 200 && req->final_status < 300;
    if (t && t->ticket)
        lp_limiter_reconcile(limiter(req), t->ticket, req->tok_in, req->tok_out, req->tok_cached,
                             answered);
    if (!req->key || !req->cfg->metrics.enabled || !req->llm)
        return;
    struct lp_metrics_shard *s = req->w->metrics;
    char status[16];
    snprintf(status, sizeof status, "%d", req->final_status);
    const char *l_req[] = {req->key->name, status};
    lp_metrics_inc(s, LP_M_KEY_REQUESTS_TOTAL, l_req, 1);
    const char *types[] = {"input", "output", "cached"};
    int64_t vals[] = {req->tok_in, req->tok_out, req->tok_cached};
    for (int i = 0; i < 3; i++) {
        if (vals[i] > 0) {
            const char *l[] = {req->key->name, types[i]};
            lp_metrics_inc(s, LP_M_KEY_TOKENS_TOTAL, l, (uint64_t)vals[i]);
        }
    }
}

void lp_traffic_log_fields(const struct lp_request *req, struct lp_buf *b)
{
    if (req->key) {
        lp_buf_appends(b, ",\"key\":\"");
        lp_buf_append_json_escaped(b, req->key->name, strlen(req->key->name));
        lp_buf_appendc(b, '"');
    }
    const struct lp_traffic *t = req->traffic;
    if (!t)
        return;
    if (t->limited && t->limited[0])
        lp_buf_printf(b, ",\"limited\":\"%s\"", t->limited);
    int64_t q = t->queue_us;
    if (req->phase == LP_PHASE_WAITING && t->wait_start_us)
        q += lp_now_us() - t->wait_start_us; /* still waiting: the client left or shutdown */
    if (q > 0)
        lp_buf_printf(b, ",\"queue_ms\":%lld.%03lld", (long long)(q / 1000), (long long)(q % 1000));
}

void lp_traffic_finish(struct lp_request *req)
{
    struct lp_traffic *t = req->traffic;
    if (!t)
        return;
    struct lp_limiter *L = limiter(req);
    if (t->bwait) {
        L->ops->backend_cancel(L, t->bwait);
        t->bwait = NULL;
    }
    lp_traffic_backend_unacquire(req);
    if (t->held) {
        lp_limiter_backend_done(L, t->held, LP_BACKEND_NEUTRAL, 0);
        t->held = NULL;
    }
    for (int i = 0; i < MAX_SLOTS; i++) {
        if (t->slots[i].slot) {
            lp_limiter_backend_done(L, t->slots[i].slot, LP_BACKEND_NEUTRAL, 0);
            t->slots[i].slot = NULL;
        }
    }
    if (t->ticket) {
        lp_limiter_release(L, t->ticket);
        t->ticket = NULL;
    }
}

/* ---- operations ----------------------------------------------------------------------------- */

static void gauge_queue(struct lp_metrics_sink *sink, void *ctx)
{
    struct lp_runtime *rt = ctx;
    int in_flight = 0, waiting = 0;
    rt->limiter->ops->queue_state(rt->limiter, &in_flight, &waiting);
    lp_metrics_sink_put(sink, NULL, waiting);
}

static void gauge_backend(struct lp_metrics_sink *sink, void *ctx, bool limit)
{
    struct lp_runtime *rt = ctx;
    struct lp_config *cfg = lp_runtime_config(rt);
    for (size_t i = 0; i < cfg->n_backends; i++) {
        struct lp_backend_load ld = {0};
        rt->limiter->ops->backend_load(rt->limiter, cfg->backends[i].name, &ld);
        const char *l[] = {cfg->backends[i].name};
        lp_metrics_sink_put(sink, l, limit ? ld.limit : ld.in_flight);
    }
    lp_config_unref(cfg);
}

static void gauge_backend_in_flight(struct lp_metrics_sink *sink, void *ctx)
{
    gauge_backend(sink, ctx, false);
}

static void gauge_backend_limit(struct lp_metrics_sink *sink, void *ctx)
{
    gauge_backend(sink, ctx, true);
}

void lp_traffic_register_metrics(struct lp_runtime *rt)
{
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_QUEUE_LENGTH, gauge_queue, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BACKEND_IN_FLIGHT, gauge_backend_in_flight, rt);
    lp_metrics_set_gauge_fn(rt->metrics, LP_M_BACKEND_CONCURRENCY_LIMIT, gauge_backend_limit, rt);
}

char *lp_traffic_backends_json(struct lp_runtime *rt, const struct lp_config *cfg,
                               char *health_json)
{
    struct json_object *root = lp_json_parse(health_json, strlen(health_json), NULL);
    struct json_object *arr = root ? lp_json_get_arr(root, "backends") : NULL;
    if (!arr) {
        if (root)
            json_object_put(root);
        return health_json;
    }
    for (size_t i = 0; i < cfg->n_backends && i < lp_json_arr_len(arr); i++) {
        struct json_object *b = lp_json_arr_at(arr, i);
        struct lp_backend_load ld = {0};
        rt->limiter->ops->backend_load(rt->limiter, cfg->backends[i].name, &ld);
        struct json_object *c = json_object_new_object();
        lp_json_set_int(c, "in_flight", ld.in_flight);
        if (ld.limit > 0)
            lp_json_set_int(c, "limit", ld.limit);
        else
            lp_json_set(c, "limit", NULL);
        if (ld.max > 0)
            lp_json_set_int(c, "max", ld.max);
        else
            lp_json_set(c, "max", NULL);
        lp_json_set_bool(c, "adaptive", ld.adaptive);
        lp_json_set_int(c, "waiting", ld.waiting);
        if (ld.adaptive) {
            lp_json_set_int(c, "decreases", (int64_t)ld.decreases);
            lp_json_set_int(c, "increases", (int64_t)ld.increases);
        }
        lp_json_set(b, "concurrency", c);
    }
    int in_flight = 0, waiting = 0;
    rt->limiter->ops->queue_state(rt->limiter, &in_flight, &waiting);
    struct json_object *q = json_object_new_object();
    lp_json_set_bool(q, "enabled", cfg->concurrency.enabled);
    lp_json_set_int(q, "in_flight", in_flight);
    lp_json_set_int(q, "waiting", waiting);
    lp_json_set_int(q, "max_requests", cfg->concurrency.max_requests);
    lp_json_set_int(q, "max_queue_size", cfg->concurrency.max_queue_size);
    lp_json_set(root, "concurrency", q);
    char *s = lp_xstrdup(lp_json_dump(root, NULL));
    json_object_put(root);
    free(health_json);
    return s;
}

char *lp_traffic_keys_json(struct lp_runtime *rt, const struct lp_config *cfg)
{
    return rt->limiter->ops->keys_json(rt->limiter, cfg);
}

struct json_object *lp_traffic_config_json(const struct lp_config *cfg)
{
    struct json_object *o = json_object_new_object();
    const struct lp_rate_limit_cfg *rl = &cfg->rate_limit;
    struct json_object *r = json_object_new_object();
    lp_json_set_bool(r, "enabled", rl->enabled);
    lp_json_set(r, "global_rps", json_object_new_double(rl->global_rps));
    lp_json_set(r, "per_ip_rps", json_object_new_double(rl->per_ip_rps));
    lp_json_set(r, "burst_factor", json_object_new_double(rl->burst_factor));
    struct json_object *pm = json_object_new_object();
    for (size_t i = 0; i < rl->n_per_model; i++)
        lp_json_set(pm, rl->per_model[i].alias, json_object_new_double(rl->per_model[i].rps));
    lp_json_set(r, "per_model_rps", pm);
    lp_json_set(o, "rate_limit", r);
    const struct lp_concurrency_cfg *cc = &cfg->concurrency;
    struct json_object *c = json_object_new_object();
    lp_json_set_bool(c, "enabled", cc->enabled);
    lp_json_set_int(c, "max_requests", cc->max_requests);
    lp_json_set_int(c, "max_queue_size", cc->max_queue_size);
    lp_json_set_int(c, "queue_timeout_ms", cc->queue_timeout_ms);
    lp_json_set_int(c, "per_backend_limit", cc->per_backend_limit);
    lp_json_set_str(c, "scope", cc->scope == LP_CONC_CLUSTER ? "cluster" : "instance");
    lp_json_set_int(c, "lease_ttl_ms", cc->lease_ttl_ms);
    lp_json_set(o, "concurrency", c);
    lp_json_set_int(o, "trusted_proxies", (int64_t)cfg->server.n_trusted_proxies);
    struct json_object *keys = json_object_new_array();
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const struct lp_client_key *k = &cfg->keys[i];
        struct json_object *e = json_object_new_object();
        lp_json_set_str(e, "name", k->name);
        struct lp_buf b;
        lp_buf_init(&b, 256);
        lp_mask_token(k->key, strlen(k->key), &b);
        lp_json_set_str(e, "key", b.data ? b.data : "****");
        lp_buf_free(&b);
        struct json_object *models = json_object_new_array();
        for (size_t m = 0; m < k->n_models; m++)
            json_object_array_add(models, json_object_new_string(k->models[m]));
        lp_json_set(e, "models", models);
        lp_json_set_int(e, "rpm", k->rpm);
        lp_json_set_int(e, "tpm", k->tpm);
        lp_json_set_int(e, "max_concurrent", k->max_concurrent);
        lp_json_set_int(e, "tokens_per_day", k->tokens_per_day);
        lp_json_set_int(e, "tokens_per_month", k->tokens_per_month);
        json_object_array_add(keys, e);
    }
    lp_json_set(o, "keys", keys);
    return o;
}
