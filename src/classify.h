/* classify.h - pure error classification: what went wrong with one attempt, and what to do.
 *
 * Input: the transport result, the HTTP status, the hint headers (Retry-After, rate-limit reset)
 * and the first bytes of the body (or the data of the first SSE event). Output: an error class
 * and a decision (fail over? cool the (backend, model) down, for how long? count it against the
 * backend's circuit breaker?). No I/O, no globals; time comes in as an argument.
 *
 * Order of evidence (the first that decides wins):
 *   1. transport failure (connect/TLS/reset/DNS -> network; connect/ttft/read/total -> timeout;
 *      malformed upstream response -> server);
 *   2. a SPECIFIC JSON token: error.code / error.type / error.status / innererror.code / flat
 *      "code" of the OpenAI, Anthropic, Gemini/Google and flat relay shapes (e.g.
 *      insufficient_quota, rate_limit_error, overloaded_error, context_length_exceeded,
 *      content_filter, model_not_found, invalid_api_key, RESOURCE_EXHAUSTED);
 *   3. a keyword in the error message (for JSON) or in the body (for non-JSON), e.g.
 *      "prompt is too long", "organization has been disabled", "系统繁忙";
 *   4. the HTTP status (429, 529, 5xx, 401/403, 402, 404 mentioning a model, 408, other 4xx), or
 *      a numeric error.code embedded in a 2xx body;
 *   5. a GENERIC JSON token (invalid_request_error -> client; api_error/server_error -> server);
 *   6. anything else that is an error -> server.
 *
 * Default decision per class: network, timeout, rate_limit, overloaded, server, auth, quota,
 * model_not_found -> fail over + cooldown + breaker failure; client, context_length,
 * content_policy -> returned to the client verbatim, no cooldown, not a breaker failure;
 * unsupported (a backend lacks an optional endpoint: a client choosing that endpoint must not
 * cool the route down for everyone) -> fail over, no cooldown, no breaker failure; local (our
 * own resources ran out) -> no failover, no cooldown, no breaker failure: the client gets 503.
 *
 * User overrides on top (config `detection`, eras A/B, and `error_fallback`, era C), in order:
 *   a. error_fallback.server_error.enabled == false (block present): a 5xx status is returned
 *      to the client instead of failing over (no cooldown);
 *   b. detection.error_patterns (case-sensitive) or error_fallback.client_error.patterns
 *      (case-insensitive, when client_error.enabled) matching the body force a failover;
 *   c. a status listed EXACTLY in detection.error_codes ("400") or in
 *      error_fallback.client_error.codes (when enabled) forces a failover. Wildcards ("4xx",
 *      "5xx", the reference default) never force a failover of client/context_length/
 *      content_policy errors: that was the reference's bug (a client's own bad request cooled
 *      down every backend). Overrides only ADD failovers; a narrower list never removes one.
 *   A forced failover of a request-shape class (client/context_length/content_policy) tries the
 *   next candidate but does NOT cool down the backend or count for its breaker: the backend is
 *   healthy, the request did not suit it (e.g. MiniMax "invalid chat setting (2013)").
 *
 * Cooldown: fallback.cooldown_seconds (<= 0 -> 60 s). For rate_limit/overloaded (and any 429,
 * 503, 529) the Retry-After / retry-after-ms / rate-limit reset hints lengthen it to at least the
 * hinted delay, capped at LP_CLASSIFY_MAX_HINT_MS.
 */
#ifndef LP_CLASSIFY_H
#define LP_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum lp_err_class {
    LP_CLASS_OK = 0,
    LP_CLASS_NETWORK,
    LP_CLASS_TIMEOUT,
    LP_CLASS_RATE_LIMIT,
    LP_CLASS_OVERLOADED,
    LP_CLASS_SERVER,
    LP_CLASS_AUTH,
    LP_CLASS_QUOTA,
    LP_CLASS_CONTEXT_LENGTH,
    LP_CLASS_CONTENT_POLICY,
    LP_CLASS_MODEL_NOT_FOUND,
    LP_CLASS_CLIENT,
    LP_CLASS_UNSUPPORTED, /* the backend does not serve this (optional) endpoint: 404/405/501 */
    LP_CLASS_LOCAL,       /* our own failure (no fds, no memory): nobody else's fault */
    LP_CLASS__COUNT
};

enum lp_transport {
    LP_TR_NONE = 0,
    LP_TR_CONNECT,
    LP_TR_TLS,
    LP_TR_RESET,
    LP_TR_DNS,
    LP_TR_TIMEOUT_CONNECT,
    LP_TR_TIMEOUT_TTFT,
    LP_TR_TIMEOUT_READ,
    LP_TR_TIMEOUT_TOTAL,
    LP_TR_PROTOCOL, /* malformed upstream response */
    LP_TR_LOCAL,    /* a local resource ran out before anything reached the backend */
};

/* Rate-limit reset headers kept per attempt; the longest hint wins. */
#define LP_CLASSIFY_MAX_RESET 4
/* Hints longer than this are clamped (a broken relay must not park a backend for days). */
#define LP_CLASSIFY_MAX_HINT_MS (24LL * 3600 * 1000)
/* Only this many body bytes are inspected. */
#define LP_CLASSIFY_MAX_BODY 16384

struct lp_classify_in {
    enum lp_transport transport; /* LP_TR_NONE when a response arrived */
    int status;                  /* HTTP status; 0 when there was none */
    const char *body;            /* first bytes of the body / first SSE event's data; may be NULL */
    size_t body_len;
    const char *retry_after;    /* Retry-After value (delta seconds or HTTP-date) or NULL */
    const char *retry_after_ms; /* retry-after-ms value (OpenAI) or NULL */
    /* Values of headers for which lp_classify_is_reset_header() is true, NULL-padded. */
    const char *ratelimit_reset[LP_CLASSIFY_MAX_RESET];
    bool from_sse_event;    /* body is the data of an in-band error event (status is 200) */
    bool optional_endpoint; /* the endpoint is not one every backend of the dialect serves
                               (anything but chat completions / messages): a 404, 405 or
                               501 that does not name the model means "not served here" */
    int64_t now_wall_ms;    /* Unix ms, for HTTP-date / RFC 3339 hints */
};

struct lp_decision {
    enum lp_err_class cls;
    bool failover;        /* try the next candidate (false: answer the client with this error) */
    bool cooldown;        /* cool down the (backend, model) */
    int64_t cooldown_ms;  /* valid when cooldown */
    bool breaker_failure; /* counts as a failure for the backend's circuit breaker */
    bool forced;          /* a user override (detection/error_fallback) changed the decision */
    int64_t hint_ms;      /* the upstream's retry hint, 0 if none */
    char reason[128];     /* short cause, e.g. "429 rate_limit_error: ...", no secrets */
};

/* Classify one attempt's outcome. cfg may be NULL (defaults, no overrides). A 2xx that is not an
 * in-band error (no from_sse_event, body not an error envelope) yields LP_CLASS_OK with every
 * flag false. Never fails; out is always fully written. Reads at most LP_CLASSIFY_MAX_BODY bytes
 * of body; bad or truncated JSON falls back to keyword matching. */
void lp_classify(const struct lp_classify_in *in, const struct lp_config *cfg,
                 struct lp_decision *out);

/* Stable lower-case name of a class ("network", "timeout", "rate_limit", ...); "?" if invalid. */
const char *lp_class_name(enum lp_err_class c);
/* The class of a name lp_class_name gives; LP_CLASS_SERVER for anything else. */
enum lp_err_class lp_class_by_name(const char *name);

/* The default decision, without overrides: true for the classes that fail over and cool down. */
bool lp_class_fails_over(enum lp_err_class c);

/* Parse a Retry-After value: delta seconds ("120", "1.5") or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime). A date in the past gives 0. False on anything else or NULL. */
bool lp_parse_retry_after(const char *v, int64_t now_wall_ms, int64_t *delay_ms);

/* Parse a rate-limit reset value: seconds ("20", "0.5"), a Go-style duration ("6m0s", "1s",
 * "20ms", "1h2m"), a Unix timestamp in s or ms (> 1e9), or an RFC 3339 timestamp
 * ("2025-01-01T00:00:00Z", "...+08:00"). A time in the past gives 0. */
bool lp_parse_ratelimit_reset(const char *v, int64_t now_wall_ms, int64_t *delay_ms);

/* True for response header names carrying a rate-limit reset hint (case-insensitive):
 * x-ratelimit-reset, x-ratelimit-reset-*, anthropic-ratelimit-*-reset. */
bool lp_classify_is_reset_header(const char *name);

#endif
