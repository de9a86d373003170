/* trace.c - W3C Trace Context and span assembly (see trace.h). */
#include "trace.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "attempt.h"
#include "config.h"
#include "dialect.h"
#include "edge.h"
#include "relay.h"
#include "endpoint.h"
#include "mask.h"
#include "otlp.h"
#include "request.h"
#include "router.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/rand.h"
#include "worker.h"

/* ---- W3C Trace Context ------------------------------------------------------------------------ */

static int hexdig(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) {
        int a = hexdig((unsigned char)s[2 * i]), b = a < 0 ? -1 : hexdig((unsigned char)s[2 * i + 1]);
        if (b < 0)
            return false;
        out[i] = (uint8_t)(a << 4 | b);
        any |= out[i];
    }
    return any != 0;
}

bool lp_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t parent_id[8],
                          uint8_t *flags)
{
    if (!s)
        return false;
    size_t len = strlen(s);
    if (len < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    int v0 = hexdig((unsigned char)s[0]), v1 = hexdig((unsigned char)s[1]);
    if (v0 < 0 || v1 < 0)
        return false;
    int version = v0 << 4 | v1;
    if (version == 0xff || (version == 0 && len != 55) || (version > 0 && len > 55 && s[55] != '-'))
        return false;
    uint8_t tid[16], pid[8], fl;
    if (!hex_bytes(s + 3, tid, 16) || !hex_bytes(s + 36, pid, 8))
        return false;
    int f0 = hexdig((unsigned char)s[53]), f1 = f0 < 0 ? -1 : hexdig((unsigned char)s[54]);
    if (f1 < 0)
        return false;
    fl = (uint8_t)(f0 << 4 | f1);
    memcpy(trace_id, tid, 16);
    memcpy(parent_id, pid, 8);
    *flags = fl;
    return true;
}

bool lp_tracestate_valid(const char *s)
{
    size_t len = strlen(s);
    if (len > LP_TRACESTATE_MAX)
        return false;
    int members = 0;
    const char *p = s;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        size_t lead = 0;
        while (lead < n && (p[lead] == ' ' || p[lead] == '\t'))
            lead++;
        if (lead < n) {
            const char *eq = memchr(p + lead, '=', n - lead);
            if (!eq || eq == p + lead || eq == p + n - 1)
                return false;
            if (++members > 32)
                return false;
        }
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
                return false;
        p += n + (end != NULL);
    }
    return true;
}

bool lp_trace_ratio_sampled(const uint8_t trace_id[16], double ratio)
{
    if (ratio >= 1)
        return true;
    if (!(ratio > 0))
        return false;
    uint64_t v = 0;
    for (int i = 8; i < 16; i++)
        v = v << 8 | trace_id[i];
    return (double)v < ratio * 18446744073709551616.0;
}

static const char hexch[] = "0123456789abcdef";

static void hex_put(char *out, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexch[b[i] >> 4];
        out[2 * i + 1] = hexch[b[i] & 15];
    }
}

void lp_traceparent_format(char out[56], const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags)
{
    memcpy(out, "00-", 3);
    hex_put(out + 3, trace_id, 16);
    out[35] = '-';
    hex_put(out + 36, span_id, 8);
    out[52] = '-';
    out[53] = hexch[flags >> 4];
    out[54] = hexch[flags & 15];
    out[55] = '\0';
}

/* A small forward scan for "max_tokens" (and its newer names) followed by a number: the body
 * passed the validating scanner, so an unescaped quoted name followed by ':' is a key. */
int64_t lp_trace_max_tokens(const char *body, size_t len)
{
    static const char *const names[] = {"\"max_tokens\"", "\"max_completion_tokens\"",
                                        "\"max_output_tokens\""};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t nl = strlen(names[k]);
        const char *p = body, *end = body + len;
        while (p && (size_t)(end - p) > nl &&
               (p = memmem(p, (size_t)(end - p), names[k], nl)) != NULL) {
            const char *q = p + nl;
            p = q;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
                q++;
            if (q >= end || *q != ':')
                continue;
            q++;
            while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
                q++;
            int64_t v = 0;
            int digits = 0;
            while (q < end && *q >= '0' && *q <= '9' && digits < 12) {
                v = v * 10 + (*q++ - '0');
                digits++;
            }
            if (digits)
                return v;
        }
    }
    return -1;
}

/* ---- the request's trace ---------------------------------------------------------------------- */

static void random_bytes(uint64_t *rng, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = lp_rand_next(rng);
            memcpy(out + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (!memcmp(out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n)); /* never all zero */
}

void lp_trace_begin(struct lp_request *req)
{
    struct lp_trace *t = &req->trace;
    t->on = true;
    t->max_tokens = -1;
    const char *tp = NULL, *ts = NULL;
    int n_tp = 0, n_ts = 0;
    size_t n = lp_edge_req_header_count(req->er);
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        lp_edge_req_header_at(req->er, i, &name, &value);
        if ((name[0] | 0x20) != 't')
            continue;
        if (strcasecmp(name, "traceparent") == 0) {
            tp = value;
            n_tp++;
        } else if (strcasecmp(name, "tracestate") == 0) {
            ts = value;
            n_ts++;
        }
    }
    if (tp) {
        /* Two traceparent headers are as invalid as a malformed one. */
        t->has_parent = n_tp == 1 && lp_traceparent_parse(tp, t->trace_id, t->parent_id, &t->flags);
        if (t->has_parent && ts && n_ts == 1 && lp_tracestate_valid(ts))
            t->tracestate = lp_arena_strdup(&req->arena, ts);
    }
    const struct lp_tracing_cfg *c = &req->cfg->tracing;
    if (t->has_parent) {
        t->sampled = (t->flags & 1) != 0;
    } else {
        random_bytes(&req->w->rng, t->trace_id, 16);
        t->sampled = lp_trace_ratio_sampled(t->trace_id, c->sample_ratio);
    }
    /* The client's headers are never copied as they are: build_headers sends ours (sampled),
     * the client's parsed context (valid, unsampled: the same bytes for version 00, with a valid
     * tracestate), or nothing (invalid: a tracestate without a valid traceparent goes too). */
    t->strip = tp || ts; /* build_headers sends the context again from what was parsed */
    if (!t->sampled)
        return;
    random_bytes(&req->w->rng, t->span_id, 8);
    struct timespec ts_now;
    clock_gettime(CLOCK_REALTIME, &ts_now);
    t->mono0_us = lp_now_us();
    t->wall0_ns = (int64_t)ts_now.tv_sec * 1000000000 + ts_now.tv_nsec;
    if (req->body && req->body_len)
        t->max_tokens = lp_trace_max_tokens(req->body, req->body_len);
}

void lp_trace_attempt_begin(struct lp_attempt *a)
{
    random_bytes(&a->req->w->rng, a->trace.span_id, 8);
}

void lp_trace_backoff(struct lp_request *req, int64_t delay_ms)
{
    struct lp_trace *t = &req->trace;
    if (t->n_backoff >= LP_TRACE_MAX_BACKOFFS)
        return;
    t->backoff[t->n_backoff].at_us = lp_now_us();
    t->backoff[t->n_backoff].ms = delay_ms;
    t->n_backoff++;
}

/* ---- span JSON (the OTLP/JSON mapping: hex ids, enum integers, 64-bit integers as strings) ---- */

struct sb {
    struct lp_buf *b;
    const struct lp_trace *t;
    const char *const *secrets;
    size_t n_secrets;
    bool mask;
    bool first_attr;
};

static void put_u64(struct lp_buf *b, uint64_t v)
{
    char t[24];
    size_t n = sizeof t;
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lp_buf_append(b, t + n, sizeof t - n);
}

static void put_str(struct lp_buf *b, const char *s)
{
    lp_buf_appendc(b, '"');
    lp_buf_append_json_escaped(b, s, strlen(s));
    lp_buf_appendc(b, '"');
}

static void put_hex(struct lp_buf *b, const char *key, const uint8_t *id, size_t n)
{
    char h[32];
    hex_put(h, id, n);
    lp_buf_appends(b, key);
    lp_buf_appendc(b, '"');
    lp_buf_append(b, h, 2 * n);
    lp_buf_appendc(b, '"');
}

static void put_time(struct sb *s, const char *key, int64_t mono_us)
{
    int64_t ns = s->t->wall0_ns + (mono_us - s->t->mono0_us) * 1000;
    lp_buf_appends(s->b, key);
    lp_buf_appendc(s->b, '"');
    put_u64(s->b, (uint64_t)(ns > 0 ? ns : 0));
    lp_buf_appendc(s->b, '"');
}

static void attrs_open(struct sb *s)
{
    lp_buf_appends(s->b, ",\"attributes\":[");
    s->first_attr = true;
}

static void attr_key(struct sb *s, const char *key)
{
    lp_buf_appends(s->b, s->first_attr ? "{\"key\":\"" : ",{\"key\":\"");
    s->first_attr = false;
    lp_buf_appends(s->b, key);
    lp_buf_appends(s->b, "\",\"value\":");
}

static void attr_str(struct sb *s, const char *key, const char *v)
{
    if (!v)
        return;
    attr_key(s, key);
    lp_buf_appends(s->b, "{\"stringValue\":");
    put_str(s->b, v);
    lp_buf_appends(s->b, "}}");
}

/* A string that came from a client or an upstream: masked like the access log. */
static void attr_str_masked(struct sb *s, const char *key, const char *v)
{
    if (!v || !s->mask) {
        attr_str(s, key, v);
        return;
    }
    struct lp_buf m;
    lp_buf_init(&m, 4096);
    lp_mask(v, strlen(v), &m, s->secrets, s->n_secrets);
    attr_key(s, key);
    lp_buf_appends(s->b, "{\"stringValue\":\"");
    lp_buf_append_json_escaped(s->b, m.data ? m.data : "", m.len);
    lp_buf_appends(s->b, "\"}}");
    lp_buf_free(&m);
}

static void attr_int(struct sb *s, const char *key, int64_t v)
{
    attr_key(s, key);
    lp_buf_appends(s->b, "{\"intValue\":\"");
    if (v < 0) {
        lp_buf_appendc(s->b, '-');
        v = -v;
    }
    put_u64(s->b, (uint64_t)v);
    lp_buf_appends(s->b, "\"}}");
}

static void attrs_close(struct sb *s)
{
    lp_buf_appendc(s->b, ']');
}

/* gen_ai.operation.name: the GenAI well-known values where one fits, else the endpoint's name. */
static const char *operation_name(enum lp_endpoint ep)
{
    switch (ep) {
    case LP_EP_CHAT:
    case LP_EP_MESSAGES:
    case LP_EP_RESPONSES:
    case LP_EP_RESPONSES_COMPACT: return "chat";
    case LP_EP_COMPLETIONS: return "text_completion";
    case LP_EP_EMBEDDINGS: return "embeddings";
    default: {
        const struct lp_endpoint_desc *d = lp_endpoint_desc(ep);
        return d && d->name ? d->name : "request";
    }
    }
}

/* server.address / server.port of an upstream URL. */
static void url_host_port(const char *url, char *host, size_t hcap, int *port)
{
    host[0] = '\0';
    *port = 0;
    if (!url)
        return;
    bool tls = strncmp(url, "https://", 8) == 0;
    const char *p = strstr(url, "://");
    if (!p)
        return;
    p += 3;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return;
        size_t n = (size_t)(rb - p - 1);
        if (n >= hcap)
            return;
        memcpy(host, p + 1, n);
        host[n] = '\0';
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        size_t n = (size_t)((colon ? colon : end) - p);
        if (n >= hcap)
            return;
        memcpy(host, p, n);
        host[n] = '\0';
    }
    *port = colon ? atoi(colon + 1) : tls ? 443 : 80;
}

/* gen_ai.provider.name: the GenAI well-known value of the backend's protocol when the effective
 * wire is that protocol's (a route may override it), else the wire's dialect. */
static const char *provider_name(const struct lp_candidate *c)
{
    static const char *const map[][2] = {{"azure", "azure.ai.openai"}, {"deepseek", "deepseek"},
                                         {"groq", "groq"}, {"mistral", "mistral_ai"},
                                         {"cohere", "cohere"}};
    const char *pn = c->backend->protocol_name;
    if (pn && c->protocol == LP_PROTO_OPENAI)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strcmp(pn, map[i][0]) == 0)
                return map[i][1];
    return c->dialect && c->dialect->name ? c->dialect->name : lp_proto_name(c->protocol);
}

static bool cls_is(const char *cls, const char *name)
{
    return cls && strcmp(cls, name) == 0;
}

/* A failure of the backend (not ok, not a cancel, not the client leaving). */
static bool att_failed(const struct lp_attempt *a)
{
    return a->cls && !cls_is(a->cls, "ok") && !cls_is(a->cls, "cancelled") &&
           !cls_is(a->cls, "client_gone");
}

static void span_open(struct sb *s, const uint8_t *span_id, const uint8_t *parent, int kind,
                      const char *op, const char *model, int64_t start_us, int64_t end_us)
{
    struct lp_buf *b = s->b;
    put_hex(b, "{\"traceId\":", s->t->trace_id, 16);
    put_hex(b, ",\"spanId\":", span_id, 8);
    if (parent)
        put_hex(b, ",\"parentSpanId\":", parent, 8);
    if (s->t->tracestate) {
        lp_buf_appends(b, ",\"traceState\":");
        put_str(b, s->t->tracestate);
    }
    lp_buf_appends(b, ",\"name\":\"");
    lp_buf_appends(b, op);
    if (model) {
        lp_buf_appendc(b, ' ');
        lp_buf_append_json_escaped(b, model, strlen(model));
    }
    lp_buf_appends(b, kind == 2 ? "\",\"kind\":2" : "\",\"kind\":3");
    put_time(s, ",\"startTimeUnixNano\":", start_us);
    put_time(s, ",\"endTimeUnixNano\":", end_us >= start_us ? end_us : start_us);
}

static void span_status(struct sb *s, bool error, const char *msg)
{
    if (!error) {
        lp_buf_appends(s->b, ",\"status\":{}}");
        return;
    }
    lp_buf_appends(s->b, ",\"status\":{\"code\":2");
    if (msg && msg[0]) {
        lp_buf_appends(s->b, ",\"message\":");
        put_str(s->b, msg);
    }
    lp_buf_appends(s->b, "}}");
}

static void event_open(struct sb *s, bool *first, const char *name, int64_t at_us)
{
    lp_buf_appends(s->b, *first ? "{" : ",{");
    *first = false;
    put_time(s, "\"timeUnixNano\":", at_us);
    lp_buf_appends(s->b, ",\"name\":\"");
    lp_buf_appends(s->b, name);
    lp_buf_appendc(s->b, '"');
}

static void attempt_span(struct sb *s, const struct lp_request *req, const struct lp_attempt *a,
                         const char *op, int64_t now_us)
{
    const struct lp_candidate *c = a->cand;
    int64_t end = a->end_us ? a->end_us : now_us;
    span_open(s, a->trace.span_id, s->t->span_id, 3, op, c->route->model, a->start_us, end);
    attrs_open(s);
    attr_str(s, "gen_ai.operation.name", op);
    attr_str(s, "gen_ai.provider.name", provider_name(c));
    attr_str(s, "gen_ai.request.model", c->route->model);
    if (s->t->max_tokens >= 0)
        attr_int(s, "gen_ai.request.max_tokens", s->t->max_tokens);
    char host[256];
    int port;
    url_host_port(a->url, host, sizeof host, &port);
    if (host[0]) {
        attr_str(s, "server.address", host);
        attr_int(s, "server.port", port);
    }
    attr_str(s, "llm_proxy.backend", c->backend->name);
    attr_int(s, "llm_proxy.attempt", a->seq);
    if (a->rec_status)
        attr_int(s, "http.response.status_code", a->rec_status);
    if (a == req->winner && cls_is(a->cls, "ok")) {
        if (req->tok_in >= 0)
            attr_int(s, "gen_ai.usage.input_tokens", req->tok_in);
        if (req->tok_out >= 0)
            attr_int(s, "gen_ai.usage.output_tokens", req->tok_out);
    }
    const char *cls = a->cls ? a->cls : "cancelled";
    if (!cls_is(cls, "ok"))
        attr_str(s, "error.type", cls);
    attrs_close(s);
    lp_buf_appends(s->b, ",\"events\":[");
    bool first = true;
    if (a->first_us) {
        event_open(s, &first, "gen_ai.first_token", a->first_us);
        attrs_open(s);
        attr_int(s, "llm_proxy.ttft_ms", (a->first_us - a->start_us) / 1000);
        attrs_close(s);
        lp_buf_appendc(s->b, '}');
    }
    if (a->trace.cooldown_ms > 0) {
        event_open(s, &first, "llm_proxy.cooldown", end);
        attrs_open(s);
        attr_str(s, "llm_proxy.backend", c->backend->name);
        attr_str(s, "gen_ai.request.model", c->route->model);
        attr_int(s, "llm_proxy.cooldown_ms", a->trace.cooldown_ms);
        attrs_close(s);
        lp_buf_appendc(s->b, '}');
    }
    lp_buf_appendc(s->b, ']');
    span_status(s, att_failed(a), a->cause[0] ? a->cause : cls);
}

int lp_trace_build(const struct lp_request *req, int64_t now_us, struct lp_buf *b)
{
    const struct lp_trace *t = &req->trace;
    struct sb s = {.b = b, .t = t, .mask = req->cfg->logging.mask_sensitive};
    if (s.mask)
        s.secrets = lp_config_secrets(req->cfg, &s.n_secrets);
    const char *op = operation_name(req->ep);
    const char *alias = req->alias ? req->alias->name : NULL;
    span_open(&s, t->span_id, t->has_parent ? t->parent_id : NULL, 2, op, alias, req->t0_us,
              now_us);
    attrs_open(&s);
    attr_str(&s, "gen_ai.operation.name", op);
    if (alias)
        attr_str(&s, "gen_ai.request.model", alias);
    if (t->max_tokens >= 0)
        attr_int(&s, "gen_ai.request.max_tokens", t->max_tokens);
    const struct lp_attempt *w = req->winner;
    if (w && cls_is(w->cls, "ok")) {
        attr_str(&s, "gen_ai.provider.name", provider_name(w->cand));
        attr_str(&s, "gen_ai.response.model", w->cand->route->model);
        if (req->tok_in >= 0)
            attr_int(&s, "gen_ai.usage.input_tokens", req->tok_in);
        if (req->tok_out >= 0)
            attr_int(&s, "gen_ai.usage.output_tokens", req->tok_out);
    }
    attr_str(&s, "http.request.method", req->method);
    attr_str_masked(&s, "url.path", req->path);
    if (req->final_status)
        attr_int(&s, "http.response.status_code", req->final_status);
    attr_str_masked(&s, "llm_proxy.request_id", req->id);
    attr_str(&s, "llm_proxy.client_protocol", lp_proto_name(req->client));
    attr_int(&s, "llm_proxy.attempts", (int64_t)req->n_log);
    if (req->stream_end != LP_END_NONE)
        attr_str(&s, "llm_proxy.stream_end", lp_stream_end_name(req->stream_end));
    bool error = req->final_status >= 500 ||
                 (req->stream_end != LP_END_NONE && req->stream_end != LP_END_CLEAN &&
                  req->stream_end != LP_END_CLIENT_GONE);
    const char *etype = NULL;
    if (error) {
        const struct lp_attempt *lf = req->last_failed;
        etype = req->abort_reason ? req->abort_reason : lf && lf->cls ? lf->cls : "_OTHER";
        attr_str(&s, "error.type", etype);
    }
    attrs_close(&s);
    /* Events: a failover when an attempt failed and another one started after it; backoffs. */
    lp_buf_appends(b, ",\"events\":[");
    bool first = true;
    for (size_t i = 0; i + 1 < req->n_log; i++) {
        const struct lp_attempt *a = req->log[i], *next = req->log[i + 1];
        if (!att_failed(a))
            continue;
        event_open(&s, &first, "llm_proxy.failover", next->start_us);
        attrs_open(&s);
        attr_str(&s, "llm_proxy.from.backend", a->cand->backend->name);
        attr_str(&s, "llm_proxy.from.model", a->cand->route->model);
        attr_str(&s, "llm_proxy.to.backend", next->cand->backend->name);
        attr_str(&s, "llm_proxy.to.model", next->cand->route->model);
        attr_str(&s, "error.type", a->cls);
        attrs_close(&s);
        lp_buf_appendc(b, '}');
    }
    for (int i = 0; i < t->n_backoff; i++) {
        event_open(&s, &first, "llm_proxy.backoff", t->backoff[i].at_us);
        attrs_open(&s);
        attr_int(&s, "llm_proxy.backoff_ms", t->backoff[i].ms);
        attrs_close(&s);
        lp_buf_appendc(b, '}');
    }
    lp_buf_appendc(b, ']');
    span_status(&s, error, req->abort_reason ? req->abort_reason : etype);
    int n = 1;
    for (size_t i = 0; i < req->n_log; i++) {
        lp_buf_appendc(b, ',');
        attempt_span(&s, req, req->log[i], op, now_us);
        n++;
    }
    return n;
}

void lp_trace_end(struct lp_request *req)
{
    struct lp_buf b;
    lp_buf_init(&b, 0); /* bounded by its inputs: 17 spans of config names, ids and causes */
    int n = lp_trace_build(req, lp_now_us(), &b);
    size_t len = 0;
    char *json = lp_buf_steal(&b, &len);
    lp_otlp_submit(json, len, n);
}
