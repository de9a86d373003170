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
#include "util/alloc.h"
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
    static const char *const names[] = {"tokens\"", "completion_tokens\"", "output_tokens\""};
    const char *p = body, *end = body + len;
    while ((size_t)(end - p) > 5 && (p = memmem(p, (size_t)(end - p), "\"max_", 5)) != NULL) {
        p += 5;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            size_t nl = strlen(names[k]);
            if ((size_t)(end - p) < nl || memcmp(p, names[k], nl) != 0)
                continue;
            const char *q = p + nl;
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
    } else if (c->sample_ratio > 0) {
        random_bytes(&req->w->rng, t->trace_id, 16);
        t->sampled = lp_trace_ratio_sampled(t->trace_id, c->sample_ratio);
    } /* else: an unsampled root has no use for an id (nothing is propagated) */
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

/* ---- span JSON (the OTLP/JSON mapping: hex ids, enum integers, 64-bit integers as strings) ----
 *
 * Built for every sampled request, so written for speed: one buffer sized up front, attribute
 * keys and JSON punctuation copied as compile-time constants (a few moves each), strings escaped
 * in one pass, no formatting through printf. Lists open with a leading comma before every element;
 * the first one is turned into a blank when the list closes (JSON allows whitespace there). */

struct jw {
    char *buf, *p, *end;
    const struct lp_trace *t;
    const char *const *secrets;
    size_t n_secrets;
    bool mask;
};

static void jw_grow(struct jw *w, size_t n)
{
    size_t len = (size_t)(w->p - w->buf), cap = (size_t)(w->end - w->buf) * 2;
    while (cap < len + n + 1)
        cap *= 2;
    w->buf = lp_xrealloc(w->buf, cap);
    w->p = w->buf + len;
    w->end = w->buf + cap;
}

static inline void need(struct jw *w, size_t n)
{
    if ((size_t)(w->end - w->p) <= n)
        jw_grow(w, n);
}

static inline void lit(struct jw *w, const char *s, size_t n)
{
    need(w, n);
    memcpy(w->p, s, n);
    w->p += n;
}
#define LIT(w, s) lit((w), (s), sizeof(s) - 1)

/* Bytes that need escaping in a JSON string: controls, '"' and '\\'. */
static const unsigned char special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1};

static void esc(struct jw *w, const char *s, size_t n)
{
    need(w, 6 * n);
    char *p = w->p;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!special[c]) {
            *p++ = (char)c;
        } else if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else {
            memcpy(p, "\\u00", 4);
            p[4] = hexch[c >> 4];
            p[5] = hexch[c & 15];
            p += 6;
        }
    }
    w->p = p;
}

static inline void esc_str(struct jw *w, const char *s)
{
    esc(w, s, strlen(s));
}

static void put_u64(struct jw *w, uint64_t v)
{
    char t[24];
    size_t n = sizeof t;
    do {
        t[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    lit(w, t + n, sizeof t - n);
}

static void put_i64(struct jw *w, int64_t v)
{
    if (v < 0) {
        LIT(w, "-");
        v = -v;
    }
    put_u64(w, (uint64_t)v);
}

static void put_hex(struct jw *w, const uint8_t *id, size_t n)
{
    need(w, 2 * n);
    hex_put(w->p, id, n);
    w->p += 2 * n;
}

/* The Unix time in nanoseconds of a monotonic microsecond reading, as a JSON string. */
static void put_time(struct jw *w, int64_t mono_us)
{
    int64_t ns = w->t->wall0_ns + (mono_us - w->t->mono0_us) * 1000;
    LIT(w, "\"");
    put_u64(w, (uint64_t)(ns > 0 ? ns : 0));
    LIT(w, "\"");
}

/* A list's position, to blank its leading comma when it closes. An offset, not a pointer: the
 * buffer may move (jw_grow) while the list is written. */
static inline size_t list_open(const struct jw *w)
{
    return (size_t)(w->p - w->buf);
}

static inline void list_close(struct jw *w, size_t mark, char close)
{
    if (w->buf + mark < w->p && w->buf[mark] == ',')
        w->buf[mark] = ' ';
    need(w, 1);
    *w->p++ = close;
}

#define ATTR_S(w, key, v)                                                                          \
    do {                                                                                           \
        LIT(w, ",{\"key\":\"" key "\",\"value\":{\"stringValue\":\"");                             \
        esc_str(w, v);                                                                             \
        LIT(w, "\"}}");                                                                            \
    } while (0)
#define ATTR_I(w, key, v)                                                                          \
    do {                                                                                           \
        LIT(w, ",{\"key\":\"" key "\",\"value\":{\"intValue\":\"");                                \
        put_i64(w, v);                                                                             \
        LIT(w, "\"}}");                                                                            \
    } while (0)

/* A client- or upstream-supplied string, masked like the access log. */
static void attr_masked(struct jw *w, const char *key_lit, size_t key_len, const char *v)
{
    lit(w, key_lit, key_len);
    if (!w->mask) {
        esc_str(w, v);
    } else {
        struct lp_buf m;
        lp_buf_init(&m, 4096);
        lp_mask(v, strlen(v), &m, w->secrets, w->n_secrets);
        esc(w, m.data ? m.data : "", m.len);
        lp_buf_free(&m);
    }
    LIT(w, "\"}}");
}
#define ATTR_MASKED(w, key, v)                                                                     \
    attr_masked(w, ",{\"key\":\"" key "\",\"value\":{\"stringValue\":\"",                           \
                sizeof(",{\"key\":\"" key "\",\"value\":{\"stringValue\":\"") - 1, v)

/* Our own request ids ("req_" + 24 hex digits) need no masking; a client's may hold anything. */
static bool own_reqid(const char *id)
{
    if (strncmp(id, "req_", 4) != 0 || strlen(id) != 28)
        return false;
    for (int i = 4; i < 28; i++)
        if (hexdig((unsigned char)id[i]) < 0)
            return false;
    return true;
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
    if (pn && c->protocol == LP_PROTO_OPENAI && strcmp(pn, "openai") != 0)
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

static void span_open(struct jw *w, const uint8_t *span_id, const uint8_t *parent, bool server,
                      const char *op, const char *model, int64_t start_us, int64_t end_us)
{
    LIT(w, ",{\"traceId\":\"");
    put_hex(w, w->t->trace_id, 16);
    LIT(w, "\",\"spanId\":\"");
    put_hex(w, span_id, 8);
    if (parent) {
        LIT(w, "\",\"parentSpanId\":\"");
        put_hex(w, parent, 8);
    }
    if (w->t->tracestate) {
        LIT(w, "\",\"traceState\":\"");
        esc_str(w, w->t->tracestate);
    }
    LIT(w, "\",\"name\":\"");
    esc_str(w, op);
    if (model) {
        LIT(w, " ");
        esc_str(w, model);
    }
    if (server)
        LIT(w, "\",\"kind\":2,\"startTimeUnixNano\":");
    else
        LIT(w, "\",\"kind\":3,\"startTimeUnixNano\":");
    put_time(w, start_us);
    LIT(w, ",\"endTimeUnixNano\":");
    put_time(w, end_us >= start_us ? end_us : start_us);
}

static void span_status(struct jw *w, bool error, const char *msg)
{
    if (!error) {
        LIT(w, ",\"status\":{}}");
        return;
    }
    LIT(w, ",\"status\":{\"code\":2");
    if (msg && msg[0]) {
        LIT(w, ",\"message\":\"");
        esc_str(w, msg);
        LIT(w, "\"");
    }
    LIT(w, "}}");
}

static void event_open(struct jw *w, const char *name_lit, size_t name_len, int64_t at_us)
{
    LIT(w, ",{\"timeUnixNano\":");
    put_time(w, at_us);
    lit(w, name_lit, name_len);
}
#define EVENT(w, name, at) event_open(w, ",\"name\":\"" name "\"", sizeof(",\"name\":\"" name "\"") - 1, at)

static void attempt_span(struct jw *w, const struct lp_request *req, const struct lp_attempt *a,
                         const char *op, int64_t now_us)
{
    const struct lp_candidate *c = a->cand;
    int64_t end = a->end_us ? a->end_us : now_us;
    span_open(w, a->trace.span_id, w->t->span_id, false, op, c->route->model, a->start_us, end);
    LIT(w, ",\"attributes\":[");
    size_t m = list_open(w);
    ATTR_S(w, "gen_ai.operation.name", op);
    ATTR_S(w, "gen_ai.provider.name", provider_name(c));
    ATTR_S(w, "gen_ai.request.model", c->route->model);
    if (w->t->max_tokens >= 0)
        ATTR_I(w, "gen_ai.request.max_tokens", w->t->max_tokens);
    char host[256];
    int port;
    url_host_port(a->url, host, sizeof host, &port);
    if (host[0]) {
        ATTR_S(w, "server.address", host);
        ATTR_I(w, "server.port", port);
    }
    ATTR_S(w, "llm_proxy.backend", c->backend->name);
    ATTR_I(w, "llm_proxy.attempt", a->seq);
    if (a->rec_status)
        ATTR_I(w, "http.response.status_code", a->rec_status);
    if (a == req->winner && cls_is(a->cls, "ok")) {
        if (req->tok_in >= 0)
            ATTR_I(w, "gen_ai.usage.input_tokens", req->tok_in);
        if (req->tok_out >= 0)
            ATTR_I(w, "gen_ai.usage.output_tokens", req->tok_out);
    }
    const char *cls = a->cls ? a->cls : "cancelled";
    if (!cls_is(cls, "ok"))
        ATTR_S(w, "error.type", cls);
    list_close(w, m, ']');
    LIT(w, ",\"events\":[");
    m = list_open(w);
    if (a->first_us) {
        EVENT(w, "gen_ai.first_token", a->first_us);
        LIT(w, ",\"attributes\":[{\"key\":\"llm_proxy.ttft_ms\",\"value\":{\"intValue\":\"");
        put_i64(w, (a->first_us - a->start_us) / 1000);
        LIT(w, "\"}}]}");
    }
    if (a->trace.cooldown_ms > 0) {
        EVENT(w, "llm_proxy.cooldown", end);
        LIT(w, ",\"attributes\":[");
        size_t am = list_open(w);
        ATTR_S(w, "llm_proxy.backend", c->backend->name);
        ATTR_S(w, "gen_ai.request.model", c->route->model);
        ATTR_I(w, "llm_proxy.cooldown_ms", a->trace.cooldown_ms);
        list_close(w, am, ']');
        LIT(w, "}");
    }
    list_close(w, m, ']');
    span_status(w, att_failed(a), a->cause[0] ? a->cause : cls);
}

char *lp_trace_build(const struct lp_request *req, int64_t now_us, size_t *len, int *n_spans)
{
    const struct lp_trace *t = &req->trace;
    /* A first guess; the writer grows as needed (the client's tracestate is in every span). */
    size_t cap = 2048 + req->n_log * 1536 +
                 (t->tracestate ? (1 + req->n_log) * 6 * strlen(t->tracestate) : 0);
    struct jw w = {.t = t, .mask = req->cfg->logging.mask_sensitive};
    w.buf = w.p = lp_xmalloc(cap);
    w.end = w.buf + cap;
    if (w.mask)
        w.secrets = lp_config_secrets(req->cfg, &w.n_secrets);
    const char *op = operation_name(req->ep);
    const char *alias = req->alias ? req->alias->name : NULL;
    size_t spans = list_open(&w);
    span_open(&w, t->span_id, t->has_parent ? t->parent_id : NULL, true, op, alias, req->t0_us,
              now_us);
    LIT(&w, ",\"attributes\":[");
    size_t m = list_open(&w);
    ATTR_S(&w, "gen_ai.operation.name", op);
    if (alias)
        ATTR_S(&w, "gen_ai.request.model", alias);
    if (t->max_tokens >= 0)
        ATTR_I(&w, "gen_ai.request.max_tokens", t->max_tokens);
    const struct lp_attempt *win = req->winner;
    if (win && cls_is(win->cls, "ok")) {
        ATTR_S(&w, "gen_ai.provider.name", provider_name(win->cand));
        ATTR_S(&w, "gen_ai.response.model", win->cand->route->model);
        if (req->tok_in >= 0)
            ATTR_I(&w, "gen_ai.usage.input_tokens", req->tok_in);
        if (req->tok_out >= 0)
            ATTR_I(&w, "gen_ai.usage.output_tokens", req->tok_out);
    }
    ATTR_S(&w, "http.request.method", req->method);
    const struct lp_endpoint_desc *ed = lp_endpoint_desc(req->ep);
    if (ed && ed->path && strcmp(ed->path, req->path) == 0)
        ATTR_S(&w, "url.path", ed->path); /* our own canonical path: nothing to mask */
    else
        ATTR_MASKED(&w, "url.path", req->path);
    if (req->final_status)
        ATTR_I(&w, "http.response.status_code", req->final_status);
    if (own_reqid(req->id))
        ATTR_S(&w, "llm_proxy.request_id", req->id);
    else
        ATTR_MASKED(&w, "llm_proxy.request_id", req->id);
    ATTR_S(&w, "llm_proxy.client_protocol", lp_proto_name(req->client));
    ATTR_I(&w, "llm_proxy.attempts", (int64_t)req->n_log);
    if (req->stream_end != LP_END_NONE)
        ATTR_S(&w, "llm_proxy.stream_end", lp_stream_end_name(req->stream_end));
    bool error = req->final_status >= 500 ||
                 (req->stream_end != LP_END_NONE && req->stream_end != LP_END_CLEAN &&
                  req->stream_end != LP_END_CLIENT_GONE);
    const char *etype = NULL;
    if (error) {
        const struct lp_attempt *lf = req->last_failed;
        etype = req->abort_reason ? req->abort_reason : lf && lf->cls ? lf->cls : "_OTHER";
        ATTR_S(&w, "error.type", etype);
    }
    list_close(&w, m, ']');
    /* Events: a failover when an attempt failed and another one started after it; backoffs. */
    LIT(&w, ",\"events\":[");
    m = list_open(&w);
    for (size_t i = 0; i + 1 < req->n_log; i++) {
        const struct lp_attempt *a = req->log[i], *next = req->log[i + 1];
        if (!att_failed(a))
            continue;
        EVENT(&w, "llm_proxy.failover", next->start_us);
        LIT(&w, ",\"attributes\":[");
        size_t am = list_open(&w);
        ATTR_S(&w, "llm_proxy.from.backend", a->cand->backend->name);
        ATTR_S(&w, "llm_proxy.from.model", a->cand->route->model);
        ATTR_S(&w, "llm_proxy.to.backend", next->cand->backend->name);
        ATTR_S(&w, "llm_proxy.to.model", next->cand->route->model);
        ATTR_S(&w, "error.type", a->cls);
        list_close(&w, am, ']');
        LIT(&w, "}");
    }
    for (int i = 0; i < t->n_backoff; i++) {
        EVENT(&w, "llm_proxy.backoff", t->backoff[i].at_us);
        LIT(&w, ",\"attributes\":[{\"key\":\"llm_proxy.backoff_ms\",\"value\":{\"intValue\":\"");
        put_i64(&w, t->backoff[i].ms);
        LIT(&w, "\"}}]}");
    }
    list_close(&w, m, ']');
    span_status(&w, error, req->abort_reason ? req->abort_reason : etype);
    for (size_t i = 0; i < req->n_log; i++)
        attempt_span(&w, req, req->log[i], op, now_us);
    /* The fragment is "{span},{span}": drop the leading comma (a blank) of the span list. */
    if (w.buf + spans < w.p && w.buf[spans] == ',')
        w.buf[spans] = ' ';
    need(&w, 1);
    *w.p = '\0';
    *len = (size_t)(w.p - w.buf);
    *n_spans = 1 + (int)req->n_log;
    return w.buf;
}

void lp_trace_end(struct lp_request *req)
{
    size_t len;
    int n;
    char *json = lp_trace_build(req, lp_now_us(), &len, &n);
    lp_otlp_submit(json, len, n);
}
