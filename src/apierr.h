/* apierr.h - error bodies the proxy itself generates, in the client's protocol.
 *
 * Clients (OpenAI SDKs, Claude Code) parse errors in their own API's shape; the SDKs pick the
 * exception class from the HTTP status and show `message`, and Anthropic clients also branch on
 * error.type (e.g. overloaded_error is retried). All strings are JSON-escaped; bytes that are
 * not valid UTF-8 become U+FFFD, so the body is always valid JSON even when the message quotes
 * upstream garbage.
 */
#ifndef LP_APIERR_H
#define LP_APIERR_H

#include <stddef.h>

#include "classify.h" /* enum lp_err_class */
#include "protocol.h"

/* Build an error response body.
 * OpenAI shape:    {"error":{"message":M,"type":T,"code":C,"param":null,"request_id":RID}}
 * Anthropic shape: {"type":"error","error":{"type":T,"message":M},"request_id":RID}
 * type NULL -> lp_apierr_default_type(client, status). code NULL -> null (OpenAI only; the
 * Anthropic shape has no code). message NULL -> "". request_id NULL -> null.
 * Returns a NUL-terminated heap string (caller frees); *len (if non-NULL) receives its length.
 * Never NULL. */
char *lp_apierr_body(enum lp_proto client, int status, const char *type, const char *code,
                     const char *message, const char *request_id, size_t *len);

/* Default error type for an HTTP status. Returns a static string, never NULL.
 * OpenAI (as api.openai.com does it, 4xx are mostly invalid_request_error and the `code`
 * carries the detail):
 *   400, 404, 409, 413, 422 and other 4xx -> invalid_request_error
 *   401 -> invalid_request_error (OpenAI's real shape; pair it with code "invalid_api_key")
 *   403 -> permission_error;  408, 504 -> timeout_error;  429 -> rate_limit_error
 *   500, 502, 503 and other 5xx -> server_error
 * Anthropic (its documented error types):
 *   400 and other 4xx -> invalid_request_error; 401 authentication_error; 402 billing_error;
 *   403 permission_error; 404 not_found_error; 409 conflict_error; 413 request_too_large;
 *   429 rate_limit_error; 408, 504 timeout_error; 503, 529 overloaded_error;
 *   500, 502 and other 5xx -> api_error
 * Any other status (< 400) -> the protocol's generic server type (server_error / api_error). */
const char *lp_apierr_default_type(enum lp_proto client, int status);

/* SSE error event for a stream that has already started (after the commit point):
 * Anthropic: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":T,\"message\":M}}\n\n"
 * OpenAI:    "data: {\"error\":{\"message\":M,\"type\":T,\"code\":C}}\n\n" (no [DONE] follows).
 * type NULL -> "api_error" (Anthropic) / "server_error" (OpenAI); code NULL -> null;
 * message NULL -> "". The JSON is on one line (escaping guarantees no raw newline).
 * Returns a heap string (caller frees), *len (if non-NULL) set. Never NULL. */
char *lp_apierr_sse_event(enum lp_proto client, const char *type, const char *code,
                          const char *message, size_t *len);

/* What a client of protocol `client` is told when an upstream failure of class `cls` ends its
 * request (no route left, or an error that is the client's own). The table is documented in
 * docs/operations.md ("Error statuses and types"):
 *
 *   class           OpenAI status type / code                         Anthropic status type
 *   rate_limit      429  rate_limit_error / rate_limit_exceeded       429  rate_limit_error
 *   quota           429  insufficient_quota / insufficient_quota      402  billing_error
 *   auth            401  invalid_request_error / invalid_api_key      401  authentication_error
 *                   (403 upstream: 403 permission_error)              (403: permission_error)
 *   overloaded      503  server_error / overloaded                    529  overloaded_error
 *   server          the upstream 5xx (else 502) server_error          same, api_error
 *   network         502  server_error / upstream_unreachable          502  api_error
 *   timeout         504  timeout_error / upstream_timeout             504  timeout_error
 *   context_length  400  invalid_request_error / context_length_exceeded   400
 * invalid_request_error content_policy  400  invalid_request_error / content_policy_violation  400
 * invalid_request_error model_not_found 404  invalid_request_error / model_not_found      404
 * not_found_error client          the upstream 4xx (else 400) invalid_request_error 400-class
 * invalid_request_error unsupported     404  invalid_request_error / unsupported_endpoint 404
 * not_found_error local           503  server_error / local_resource_exhausted      503
 * overloaded_error A 2xx upstream status (an error inside a 200 body or stream) never survives: the
 * class's status is used, so no failure ever reaches a client as a 2xx. */
struct lp_class_reply {
    int status;
    const char *type; /* static */
    const char *code; /* static; NULL for "no code" (the Anthropic shape has none) */
};
struct lp_class_reply lp_apierr_for_class(enum lp_proto client, enum lp_err_class cls,
                                          int upstream_status);

#endif
