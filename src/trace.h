/* trace.h - OpenTelemetry tracing of requests: W3C Trace Context in, spans out.
 *
 * Per request (when tracing.enabled): lp_trace_begin (intake, after authentication) reads the
 * client's `traceparent`/`tracestate`, continues a valid trace or starts one, and takes the
 * sampling decision (parent-based: a valid parent's sampled flag decides; a root is sampled when
 * its trace id falls under tracing.sample_ratio). Nothing else happens while the request runs:
 * no span objects exist. Each attempt only draws its span id (8 random bytes in the attempt) when
 * the request is sampled, so the upstream `traceparent` names the attempt span as its parent.
 *
 * At the request's end (lp_request_finish, after every attempt is recorded) lp_trace_end builds
 * the spans from the request and attempt records: one SERVER span for the request (named per the
 * GenAI conventions, "chat team/gpt") and one CLIENT span per attempt, with GenAI attributes and
 * events (first token, failover, cooldown, backoff), and hands them to the exporter (otlp.h) as
 * one OTLP/JSON fragment. Prompt and completion text never go into a span.
 *
 * What is sent upstream (build_headers, attempt.c):
 *   sampled                          traceparent 00-<trace>-<attempt span>-01 (+ client tracestate)
 *   unsampled, valid client header   the client's traceparent and tracestate, unchanged
 *   unsampled, no client header      nothing
 *   invalid client traceparent       nothing (neither header is forwarded)
 * With tracing disabled the headers are ordinary client headers (forwarded as they are).
 */
#ifndef LP_TRACE_H
#define LP_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lp_request;
struct lp_attempt;
struct lp_buf;

#define LP_TRACE_MAX_BACKOFFS 4
#define LP_TRACESTATE_MAX 512

/* The request's trace context (struct lp_request.trace); zero when tracing is off. */
struct lp_trace {
    bool on;         /* lp_trace_begin ran (tracing enabled) */
    bool sampled;    /* spans are recorded and our traceparent is sent upstream */
    bool strip;      /* the client's traceparent/tracestate are not forwarded as they are */
    bool has_parent; /* the client sent a valid traceparent */
    uint8_t flags;   /* the client's trace flags */
    uint8_t trace_id[16], parent_id[8], span_id[8];
    const char *tracestate;     /* arena copy of the client's (valid) tracestate, or NULL */
    int64_t wall0_ns, mono0_us; /* clock pair: monotonic microseconds -> Unix nanoseconds */
    int64_t max_tokens;         /* gen_ai.request.max_tokens, or -1 */
    uint8_t n_backoff;
    struct {
        int64_t at_us, ms;
    } backoff[LP_TRACE_MAX_BACKOFFS];
};

/* Per attempt (struct lp_attempt.trace), set only when the request is sampled. */
struct lp_trace_attempt {
    uint8_t span_id[8];
    int64_t cooldown_ms; /* the failure put the route in cooldown for this long (0: no) */
};

/* Parse a W3C traceparent value. Version 00: exactly 55 characters; a higher version (not ff) may
 * be longer when a '-' follows the flags. Lower-case hex only; all-zero ids are invalid. */
bool lp_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t parent_id[8],
                          uint8_t *flags);
/* Whether a tracestate value may be propagated: at most 512 bytes and 32 list members, printable
 * ASCII, each non-empty member of the form key=value. */
bool lp_tracestate_valid(const char *s);
/* The ratio sampler: true when the trace id's last 8 bytes (big-endian) fall below ratio * 2^64
 * (ratio >= 1 always, <= 0 never). Pure and deterministic per trace id. */
bool lp_trace_ratio_sampled(const uint8_t trace_id[16], double ratio);
/* "00-<trace>-<span>-<flags>" into out (56 bytes, NUL-terminated). */
void lp_traceparent_format(char out[56], const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags);
/* max_tokens (or max_completion_tokens / max_output_tokens) of a JSON request body, or -1. */
int64_t lp_trace_max_tokens(const char *body, size_t len);

/* Start or continue the request's trace (intake; tracing enabled). */
void lp_trace_begin(struct lp_request *req);
/* An attempt starts (sampled requests): draws its span id. */
void lp_trace_attempt_begin(struct lp_attempt *a);
/* A backoff wait starts (sampled requests). */
void lp_trace_backoff(struct lp_request *req, int64_t delay_ms);
/* The request is over and every attempt recorded: build its spans and queue them for export
 * (sampled requests; dropped and counted when the exporter's queue is full). */
void lp_trace_end(struct lp_request *req);

/* The spans of a finished request: OTLP/JSON span objects (" {...},{...}"), or with protobuf
 * the encoded ScopeSpans.spans fields (tag, length, Span; canonical). A heap buffer the caller
 * frees (NUL-terminated), its length in *len and the span count in *n_spans. now_us is the
 * request's end on the monotonic clock. */
char *lp_trace_build(const struct lp_request *req, int64_t now_us, bool protobuf, size_t *len,
                     int *n_spans);

#endif
