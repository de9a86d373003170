/* traffic.h - traffic control for requests: who may call (client keys), whether and when a
 * request goes (rate limits, the concurrency queue, key budgets), which backends have room
 * (per-backend and adaptive limits), and what clients are told (429/503 with Retry-After, the
 * x-ratelimit-* / anthropic-ratelimit-* headers).
 *
 * Every limit is decided by the process's limiter (limiter.h, rt->limiter) through its
 * asynchronous interface; this module is the only caller. A request that must wait sits in
 * phase WAITING with its own on_client_gone / on_shutdown hooks: a client that leaves while
 * queued cancels its check and leaves the queue at once.
 *
 * Per request state (struct lp_traffic) lives in the request's arena; req->traffic is NULL when
 * no limit touched the request. Its resources (the admission ticket, backend slots, a pending
 * wait) are returned by lp_traffic_finish, called once by lp_request_finish.
 */
#ifndef LP_TRAFFIC_H
#define LP_TRAFFIC_H

#include <stdbool.h>
#include <stddef.h>

struct lp_request;
struct lp_attempt;
struct lp_candidate;
struct lp_edge_header;
struct lp_runtime;
struct lp_config;
struct lp_buf;
struct json_object;

/* Authenticate a client request (LLM endpoints and /v1/models): proxy_api_key or one of keys[].
 * Sets req->key for a client key. On failure replies 401 in the client's protocol and returns
 * false. */
bool lp_traffic_authenticate(struct lp_request *req);

/* Whether req->key may use req->alias_name; replies 403 (permission error in the client's
 * protocol) and returns false when not. */
bool lp_traffic_model_allowed(struct lp_request *req);

/* Admit an LLM request whose alias is known (phase INTAKE). Exactly one of: forwarding starts
 * now (lp_forward_begin); the client gets 429/503 now (the caller finishes the request as for
 * any synchronous answer); or the request moves to WAITING and forwarding (or the 503) happens
 * later from the limiter's completion, which then owns the request. */
void lp_traffic_admit(struct lp_request *req);

/* ---- backend slots (forward.c) ---- */

/* Take a slot for an attempt on candidate c. False when c's backend is at its limit (skip it
 * like a cooling route). On true, the slot is pending until lp_traffic_backend_bind (the attempt
 * was created) or lp_traffic_backend_unacquire (it was not). */
bool lp_traffic_backend_acquire(struct lp_request *req, const struct lp_candidate *c);
void lp_traffic_backend_bind(struct lp_request *req, const struct lp_attempt *a);
void lp_traffic_backend_unacquire(struct lp_request *req);
/* The attempt is over (its record was written, class cls): its slot goes back, and the outcome
 * feeds the backend's adaptive limit. */
void lp_traffic_attempt_end(const struct lp_attempt *a, const char *cls);
/* Every remaining candidate (from index `from`) is saturated and nothing is in flight: wait for a
 * slot on any of their backends, at most concurrency.queue_timeout (within the deadline). The
 * request moves to WAITING; cb(req, true) runs later with the slot held for the next
 * lp_traffic_backend_acquire on that backend, or cb(req, false) when the wait timed out.
 * Returns false (nothing started) when there is nothing to wait for. */
bool lp_traffic_backend_wait(struct lp_request *req, size_t from,
                             void (*cb)(struct lp_request *req, bool granted));
/* Reply 503 "every backend saturated" (Retry-After) after a wait timed out. */
void lp_traffic_reply_saturated(struct lp_request *req);

/* ---- the response, the record, the end ---- */

/* Rate-limit headers for a response to req in its client's protocol (none when no limit
 * applied): hdrs[0..n) are the response's other headers; when ours are set, any upstream header
 * of the same names is removed from them first (the client retries on our limits, not the
 * backend key's). Appends up to max - n entries; returns the new count. Values stay valid while
 * req is. */
size_t lp_traffic_headers(struct lp_request *req, struct lp_edge_header *hdrs, size_t n,
                          size_t max);
/* The request is answered (reqlog.c, once): reconcile the token reservation with the real usage,
 * count the key's usage in metrics. */
void lp_traffic_record(struct lp_request *req);
/* The access line's fields: "key", "limited", "queue_ms". */
void lp_traffic_log_fields(const struct lp_request *req, struct lp_buf *b);
/* Give back everything the request holds (lp_request_finish, once). */
void lp_traffic_finish(struct lp_request *req);

/* ---- operations ---- */

/* Scrape-time gauges: queue length, in-flight and limit per backend. */
void lp_traffic_register_metrics(struct lp_runtime *rt);
/* /admin/backends: health's JSON with each backend's "concurrency" object added. Takes over
 * health_json (frees it); returns a heap string. */
char *lp_traffic_backends_json(struct lp_runtime *rt, const struct lp_config *cfg,
                               char *health_json);
/* The traffic-control part of GET /admin/config: rate_limit, concurrency, trusted proxy count and
 * the keys (names, models, limits; the secrets masked). A new json-c object. */
struct json_object *lp_traffic_config_json(const struct lp_config *cfg);
/* GET /admin/keys body (heap string). */
char *lp_traffic_keys_json(struct lp_runtime *rt, const struct lp_config *cfg);

#endif
