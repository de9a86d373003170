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

/* ---- W3C Trace Context ------------------------------------------------------------------------
 */

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
        int a = hexdig((unsigned char)s[2 * i]),
            b = a < 0 ? -1 : hexdig((unsigned char)s[2 * i + 1]);
        if (b < 0)
            return false;
        out[i] = (uint8_t)(a << 4 | b);
        any |= out[i];
    }
    return any != 0;
}

bool lp_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags)
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
    /* memchr on a rare byte: every name has an 'x' at the same place ("max_"). */
    while ((size_t)(end - p) > 3 && (p = memchr(p, 'x', (size_t)(end - p))) != NULL) {
        p++;
        if (p - body < 4 || end - p < 1 || memcmp(p - 4, "\"max_", 5) != 0)
            continue;
        p++;
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

/* ---- the request's trace ----------------------------------------------------------------------
 */

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
/* ---- span encoding ----------------------------------------------------------------------------
 *
 * Two encodings of the same spans: the OTLP/JSON mapping (hex ids, enum integers, 64-bit integers
 * as decimal strings) and canonical protobuf (opentelemetry/proto/trace/v1/trace.proto: minimal
 * varints, fields in number order within each message as far as the builder emits them).
 *
 * Built for every sampled request, so written for speed: one buffer sized up front, attribute
 * keys and punctuation copied as compile-time constants, strings escaped in one pass, no printf.
 * JSON lists put a comma before every element and blank the first one when the list closes (JSON
 * allows whitespace there). A protobuf message reserves one length byte and moves its body when
 * it turns out longer than 127 bytes. Positions are offsets: the buffer may move as it grows. */

struct jw {
    char *buf, *p, *end;
    bool pb;          /* protobuf, else JSON */
    uint8_t attr_tag; /* protobuf: the tag of `attributes` in the open message */
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

static inline size_t pos(const struct jw *w)
{
    return (size_t)(w->p - w->buf);
}

static inline void lit(struct jw *w, const char *s, size_t n)
{
    need(w, n);
    memcpy(w->p, s, n);
    w->p += n;
}
#define LIT(w, s) lit((w), (s), sizeof(s) - 1)

static inline void byte(struct jw *w, uint8_t b)
{
    need(w, 1);
    *w->p++ = (char)b;
}

/* ---- JSON pieces ---- */

/* Bytes that need escaping in a JSON string: controls, '"' and '\\'. */
static const unsigned char special[256] = {1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                           1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                           1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1};

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
        byte(w, '-');
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

static int64_t unix_ns(const struct jw *w, int64_t mono_us)
{
    int64_t ns = w->t->wall0_ns + (mono_us - w->t->mono0_us) * 1000;
    return ns > 0 ? ns : 0;
}

static void json_time(struct jw *w, int64_t mono_us)
{
    byte(w, '"');
    put_u64(w, (uint64_t)unix_ns(w, mono_us));
    byte(w, '"');
}

/* Blank the leading comma of a list that started at offset at, and close it. */
static void list_close(struct jw *w, size_t at, char close)
{
    if (at < pos(w) && w->buf[at] == ',')
        w->buf[at] = ' ';
    byte(w, (uint8_t)close);
}

/* ---- protobuf pieces ---- */

static void varint(struct jw *w, uint64_t v)
{
    need(w, 10);
    while (v >= 0x80) {
        *w->p++ = (char)(v | 0x80);
        v >>= 7;
    }
    *w->p++ = (char)v;
}

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static void fixed64(struct jw *w, uint8_t tag, uint64_t v)
{
    need(w, 9);
    *w->p++ = (char)tag;
    for (int i = 0; i < 8; i++)
        *w->p++ = (char)(v >> (8 * i));
}

static void pb_bytes(struct jw *w, uint8_t tag, const void *s, size_t n)
{
    byte(w, tag);
    varint(w, n);
    lit(w, s, n);
}

/* A nested message: its tag and one reserved length byte; returns where the length goes. */
static size_t pb_begin(struct jw *w, uint8_t tag)
{
    need(w, 2);
    *w->p++ = (char)tag;
    *w->p++ = 0;
    return pos(w) - 1;
}

static void pb_end(struct jw *w, size_t at)
{
    size_t len = pos(w) - at - 1;
    if (len < 0x80) {
        w->buf[at] = (char)len;
        return;
    }
    size_t extra = varint_size(len) - 1;
    need(w, extra);
    memmove(w->buf + at + 1 + extra, w->buf + at + 1, len);
    w->p += extra;
    char *q = w->buf + at;
    uint64_t v = len;
    while (v >= 0x80) {
        *q++ = (char)(v | 0x80);
        v >>= 7;
    }
    *q = (char)v;
}

/* Unchecked varint into p (the caller reserved room); returns the end. */
static inline char *put_varint(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (char)v;
    return p;
}

/* The attribute writers are inlined at every call site, so the constant key is copied by a few
 * moves; room for the whole attribute is reserved once. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* KeyValue{1: key, 2: AnyValue{1: string_value}} under the open message's attributes tag. */
ALWAYS_INLINE void attr_s(struct jw *w, const char *json_lit, size_t json_len, const char *key,
                          size_t klen, const char *v, size_t vlen)
{
    if (w->pb) {
        need(w, 24 + klen + vlen);
        size_t any = 1 + varint_size(vlen) + vlen;
        size_t kv = 2 + klen + 1 + varint_size(any) + any; /* keys are < 128 bytes */
        char *p = w->p;
        *p++ = (char)w->attr_tag;
        p = put_varint(p, kv);
        *p++ = 0x0a;
        *p++ = (char)klen;
        memcpy(p, key, klen);
        p += klen;
        *p++ = 0x12;
        p = put_varint(p, any);
        *p++ = 0x0a;
        p = put_varint(p, vlen);
        memcpy(p, v, vlen);
        w->p = p + vlen;
        return;
    }
    need(w, json_len + 6 * vlen + 4);
    memcpy(w->p, json_lit, json_len);
    w->p += json_len;
    esc(w, v, vlen);
    memcpy(w->p, "\"}}", 3);
    w->p += 3;
}

/* KeyValue{1: key, 2: AnyValue{3: int_value}} */
ALWAYS_INLINE void attr_i(struct jw *w, const char *json_lit, size_t json_len, const char *key,
                          size_t klen, int64_t v)
{
    if (w->pb) {
        need(w, 32 + klen);
        size_t any = 1 + varint_size((uint64_t)v);
        size_t kv = 2 + klen + 2 + any;
        char *p = w->p;
        *p++ = (char)w->attr_tag;
        p = put_varint(p, kv);
        *p++ = 0x0a;
        *p++ = (char)klen;
        memcpy(p, key, klen);
        p += klen;
        *p++ = 0x12;
        *p++ = (char)any;
        *p++ = 0x18;
        w->p = put_varint(p, (uint64_t)v);
        return;
    }
    need(w, json_len + 24);
    memcpy(w->p, json_lit, json_len);
    w->p += json_len;
    put_i64(w, v);
    memcpy(w->p, "\"}}", 3);
    w->p += 3;
}

/* ---- the common vocabulary ---- */

#define JSON_S(key) ",{\"key\":\"" key "\",\"value\":{\"stringValue\":\""
#define JSON_I(key) ",{\"key\":\"" key "\",\"value\":{\"intValue\":\""
#define ATTR_S(w, key, v)                                                                          \
    do {                                                                                           \
        const char *v_ = (v);                                                                      \
        attr_s(w, JSON_S(key), sizeof JSON_S(key) - 1, key, sizeof key - 1, v_, strlen(v_));       \
    } while (0)
#define ATTR_I(w, key, v) attr_i(w, JSON_I(key), sizeof JSON_I(key) - 1, key, sizeof key - 1, (v))

/* A client- or upstream-supplied string, masked like the access log. */
#define ATTR_MASKED(w, key, v)                                                                     \
    do {                                                                                           \
        const char *mv_ = (v);                                                                     \
        if (!(w)->mask) {                                                                          \
            ATTR_S(w, key, mv_);                                                                   \
        } else {                                                                                   \
            struct lp_buf m_;                                                                      \
            lp_buf_init(&m_, 4096);                                                                \
            lp_mask(mv_, strlen(mv_), &m_, (w)->secrets, (w)->n_secrets);                          \
            attr_s(w, JSON_S(key), sizeof JSON_S(key) - 1, key, sizeof key - 1,                    \
                   m_.data ? m_.data : "", m_.len);                                                \
            lp_buf_free(&m_);                                                                      \
        }                                                                                          \
    } while (0)

/* The attributes of the open message (a span: tag 9; an event: tag 3). */
static size_t attrs_begin(struct jw *w, uint8_t pb_tag)
{
    if (w->pb) {
        w->attr_tag = pb_tag;
        return 0;
    }
    LIT(w, ",\"attributes\":[");
    return pos(w);
}

static void attrs_end(struct jw *w, size_t at)
{
    if (!w->pb)
        list_close(w, at, ']');
}

static size_t events_begin(struct jw *w)
{
    if (w->pb)
        return 0;
    LIT(w, ",\"events\":[");
    return pos(w);
}

static void events_end(struct jw *w, size_t at)
{
    if (!w->pb)
        list_close(w, at, ']');
}

/* Event{1: time_unix_nano, 2: name, 3: attributes}, field 11 of Span. */
static size_t event_begin(struct jw *w, const char *name, size_t nlen, int64_t at_us)
{
    if (w->pb) {
        size_t at = pb_begin(w, 0x5a);
        fixed64(w, 0x09, (uint64_t)unix_ns(w, at_us));
        pb_bytes(w, 0x12, name, nlen);
        return at;
    }
    LIT(w, ",{\"timeUnixNano\":");
    json_time(w, at_us);
    LIT(w, ",\"name\":\"");
    lit(w, name, nlen);
    byte(w, '"');
    return 0;
}
#define EVENT(w, name, at) event_begin(w, name, sizeof name - 1, at)

static void event_end(struct jw *w, size_t at)
{
    if (w->pb)
        pb_end(w, at);
    else
        byte(w, '}');
}

/* Span fields 1..8 (ScopeSpans field 2 in protobuf); returns what span_end needs. */
static size_t span_begin(struct jw *w, const uint8_t *span_id, const uint8_t *parent, bool server,
                         const char *op, const char *model, int64_t start_us, int64_t end_us)
{
    if (end_us < start_us)
        end_us = start_us;
    size_t oplen = strlen(op), mlen = model ? strlen(model) : 0;
    if (w->pb) {
        size_t at = pb_begin(w, 0x12);
        pb_bytes(w, 0x0a, w->t->trace_id, 16);
        pb_bytes(w, 0x12, span_id, 8);
        if (w->t->tracestate)
            pb_bytes(w, 0x1a, w->t->tracestate, strlen(w->t->tracestate));
        if (parent)
            pb_bytes(w, 0x22, parent, 8);
        byte(w, 0x2a);
        varint(w, oplen + (model ? 1 + mlen : 0));
        lit(w, op, oplen);
        if (model) {
            byte(w, ' ');
            lit(w, model, mlen);
        }
        byte(w, 0x30);
        byte(w, server ? 2 : 3);
        fixed64(w, 0x39, (uint64_t)unix_ns(w, start_us));
        fixed64(w, 0x41, (uint64_t)unix_ns(w, end_us));
        return at;
    }
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
        esc(w, w->t->tracestate, strlen(w->t->tracestate));
    }
    LIT(w, "\",\"name\":\"");
    esc(w, op, oplen);
    if (model) {
        byte(w, ' ');
        esc(w, model, mlen);
    }
    if (server)
        LIT(w, "\",\"kind\":2,\"startTimeUnixNano\":");
    else
        LIT(w, "\",\"kind\":3,\"startTimeUnixNano\":");
    json_time(w, start_us);
    LIT(w, ",\"endTimeUnixNano\":");
    json_time(w, end_us);
    return 0;
}

/* Status (field 15: {2: message, 3: code}; unset when not an error) and the span's end. */
static void span_end(struct jw *w, size_t at, bool error, const char *msg)
{
    size_t mlen = error && msg ? strlen(msg) : 0;
    if (w->pb) {
        if (error) {
            size_t st = pb_begin(w, 0x7a);
            if (mlen)
                pb_bytes(w, 0x12, msg, mlen);
            byte(w, 0x18);
            byte(w, 2);
            pb_end(w, st);
        }
        pb_end(w, at);
        return;
    }
    if (!error) {
        LIT(w, ",\"status\":{}}");
        return;
    }
    LIT(w, ",\"status\":{\"code\":2");
    if (mlen) {
        LIT(w, ",\"message\":\"");
        esc(w, msg, mlen);
        byte(w, '"');
    }
    LIT(w, "}}");
}

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
    case LP_EP_RESPONSES_COMPACT:
        return "chat";
    case LP_EP_COMPLETIONS:
        return "text_completion";
    case LP_EP_EMBEDDINGS:
        return "embeddings";
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
    int v = 0;
    for (const char *d = colon ? colon + 1 : end; d < end && *d >= '0' && *d <= '9' && v < 65536;
         d++)
        v = v * 10 + (*d - '0');
    *port = colon ? v : tls ? 443 : 80;
}

/* gen_ai.provider.name: the GenAI well-known value of the backend's protocol when the effective
 * wire is that protocol's (a route may override it), else the wire's dialect. */
static const char *provider_name(const struct lp_candidate *c)
{
    static const char *const map[][2] = {{"azure", "azure.ai.openai"},
                                         {"deepseek", "deepseek"},
                                         {"groq", "groq"},
                                         {"mistral", "mistral_ai"},
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
/* A failure of the backend (not ok, not a cancel, not the client leaving). */
static bool att_failed(const struct lp_attempt *a)
{
    return a->cls && !cls_is(a->cls, "ok") && !cls_is(a->cls, "cancelled") &&
           !cls_is(a->cls, "client_gone");
}

static void attempt_span(struct jw *w, const struct lp_request *req, const struct lp_attempt *a,
                         const char *op, int64_t now_us)
{
    const struct lp_candidate *c = a->cand;
    int64_t end = a->end_us ? a->end_us : now_us;
    size_t sp = span_begin(w, a->trace.span_id, w->t->span_id, false, op, c->route->model,
                           a->start_us, end);
    size_t m = attrs_begin(w, 0x4a);
    ATTR_S(w, "gen_ai.operation.name", op);
    ATTR_S(w, "gen_ai.provider.name", provider_name(c));
    ATTR_S(w, "gen_ai.request.model", c->route->model);
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
    attrs_end(w, m);
    size_t evs = events_begin(w);
    if (a->first_us) {
        size_t ev = EVENT(w, "gen_ai.first_token", a->first_us);
        size_t am = attrs_begin(w, 0x1a);
        ATTR_I(w, "llm_proxy.ttft_ms", (a->first_us - a->start_us) / 1000);
        attrs_end(w, am);
        event_end(w, ev);
    }
    if (a->trace.cooldown_ms > 0) {
        size_t ev = EVENT(w, "llm_proxy.cooldown", end);
        size_t am = attrs_begin(w, 0x1a);
        ATTR_S(w, "llm_proxy.backend", c->backend->name);
        ATTR_S(w, "gen_ai.request.model", c->route->model);
        ATTR_I(w, "llm_proxy.cooldown_ms", a->trace.cooldown_ms);
        attrs_end(w, am);
        event_end(w, ev);
    }
    events_end(w, evs);
    span_end(w, sp, att_failed(a), a->cause[0] ? a->cause : cls);
}

char *lp_trace_build(const struct lp_request *req, int64_t now_us, bool protobuf, size_t *len,
                     int *n_spans)
{
    const struct lp_trace *t = &req->trace;
    /* A first guess; the writer grows as needed (the client's tracestate is in every span). */
    size_t cap = 2048 + req->n_log * 1536 +
                 (t->tracestate ? (1 + req->n_log) * 6 * strlen(t->tracestate) : 0);
    struct jw w = {.t = t, .pb = protobuf, .mask = req->cfg->logging.mask_sensitive};
    w.buf = w.p = lp_xmalloc(cap);
    w.end = w.buf + cap;
    if (w.mask)
        w.secrets = lp_config_secrets(req->cfg, &w.n_secrets);
    const char *op = operation_name(req->ep);
    const char *alias = req->alias ? req->alias->name : NULL;
    size_t sp = span_begin(&w, t->span_id, t->has_parent ? t->parent_id : NULL, true, op, alias,
                           req->t0_us, now_us);
    size_t m = attrs_begin(&w, 0x4a);
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
    attrs_end(&w, m);
    /* Events: a failover when an attempt failed and another one started after it; backoffs. */
    size_t evs = events_begin(&w);
    for (size_t i = 0; i + 1 < req->n_log; i++) {
        const struct lp_attempt *a = req->log[i], *next = req->log[i + 1];
        if (!att_failed(a))
            continue;
        size_t ev = EVENT(&w, "llm_proxy.failover", next->start_us);
        size_t am = attrs_begin(&w, 0x1a);
        ATTR_S(&w, "llm_proxy.from.backend", a->cand->backend->name);
        ATTR_S(&w, "llm_proxy.from.model", a->cand->route->model);
        ATTR_S(&w, "llm_proxy.to.backend", next->cand->backend->name);
        ATTR_S(&w, "llm_proxy.to.model", next->cand->route->model);
        ATTR_S(&w, "error.type", a->cls);
        attrs_end(&w, am);
        event_end(&w, ev);
    }
    for (int i = 0; i < t->n_backoff; i++) {
        size_t ev = EVENT(&w, "llm_proxy.backoff", t->backoff[i].at_us);
        size_t am = attrs_begin(&w, 0x1a);
        ATTR_I(&w, "llm_proxy.backoff_ms", t->backoff[i].ms);
        attrs_end(&w, am);
        event_end(&w, ev);
    }
    events_end(&w, evs);
    span_end(&w, sp, error, req->abort_reason ? req->abort_reason : etype);
    for (size_t i = 0; i < req->n_log; i++)
        attempt_span(&w, req, req->log[i], op, now_us);
    /* JSON: the fragment is ",{span},{span}"; drop the leading comma (a blank). */
    if (!w.pb && w.buf[0] == ',')
        w.buf[0] = ' ';
    need(&w, 1);
    *w.p = '\0';
    *len = pos(&w);
    *n_spans = 1 + (int)req->n_log;
    return w.buf;
}

void lp_trace_end(struct lp_request *req)
{
    size_t len;
    int n;
    bool pb = req->cfg->tracing.protocol == LP_OTLP_HTTP_PROTOBUF;
    char *data = lp_trace_build(req, lp_now_us(), pb, &len, &n);
    lp_otlp_submit(data, len, n, pb);
}
