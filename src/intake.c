/* intake.c - the start of every request: dispatch by path, authentication, the LLM request's
 * body scan and alias lookup (see intake.h).
 *
 * Phase INTAKE. Synchronous answers (health, models, errors, most admin calls) end the request
 * here; an LLM request goes to forward.c (lp_forward_begin), which owns it from then on.
 */
#include "intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "apierr.h"
#include "edge.h"
#include "endpoint.h"
#include "forward.h"
#include "health.h"
#include "jscan.h"
#include "keys.h"
#include "log.h"
#include "reqid.h"
#include "request.h"
#include "runtime.h"
#include "traffic.h"
#include "util/buf.h"
#include "util/clock.h"
#include "worker.h"

/* The edge's close callback: the client went away before its request was ended. */
static void on_client_close(struct lp_edge_req *er, void *arg)
{
    struct lp_request *req = arg;
    (void)er;
    if (req->on_client_gone) {
        req->on_client_gone(req);
        return;
    }
    req->client_gone = true;
    lp_log_info(req->id, "client disconnected");
    lp_request_finish(req);
}

/* Whether an enabled alias has at least one route that can be tried now. */
static bool alias_usable(const struct lp_request *req, const struct lp_alias *al, int64_t now)
{
    for (size_t r = 0; r < al->n_routes; r++) {
        const struct lp_route *ro = &al->routes[r];
        const struct lp_backend *b = &req->cfg->backends[ro->backend_idx];
        if (ro->enabled && b->enabled &&
            lp_health_route_state(req->rt->health, req->cfg, b, ro->model, now, NULL) ==
                LP_ROUTE_USABLE)
            return true;
    }
    return false;
}

/* GET /health: liveness (always 200 while the process serves), with the counts the reference
 * reported, restricted to enabled backends and aliases, and "degraded" plus the aliases that
 * have no usable route right now (cooling, open or drained everywhere). */
static void reply_health(struct lp_request *req)
{
    const struct lp_config *cfg = req->cfg;
    int64_t now = lp_now_ms();
    size_t n_backends = 0, n_models = 0, n_down = 0;
    for (size_t i = 0; i < cfg->n_backends; i++)
        n_backends += cfg->backends[i].enabled;
    struct lp_buf down;
    lp_buf_init(&down, 0); /* bounded by the config: alias names only */
    for (size_t i = 0; i < cfg->n_aliases; i++) {
        const struct lp_alias *al = &cfg->aliases[i];
        if (!al->enabled)
            continue;
        n_models++;
        if (alias_usable(req, al, now))
            continue;
        lp_buf_appends(&down, n_down++ ? ",\"" : "\"");
        lp_buf_append_json_escaped(&down, al->name, strlen(al->name));
        lp_buf_appendc(&down, '"');
    }
    const char *status = atomic_load(&req->rt->draining) ? "draining"
                         : n_down                        ? "degraded"
                                                         : "healthy";
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_printf(&b, "{\"status\":\"%s\",\"backends\":%zu,\"models\":%zu", status, n_backends,
                  n_models);
    if (n_down)
        lp_buf_printf(&b, ",\"unavailable_models\":[%s]", down.data);
    lp_buf_appendc(&b, '}');
    lp_request_reply(req, 200, "application/json", b.data, b.len, NULL, 0);
    lp_buf_free(&b);
    lp_buf_free(&down);
}

static void reply_models(struct lp_request *req)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    long now = (long)(req->t0_wall_ms / 1000);
    lp_buf_appends(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < req->cfg->n_aliases; i++) {
        const struct lp_alias *a = &req->cfg->aliases[i];
        if (!a->enabled || !lp_keys_model_allowed(req->key, a->name))
            continue;
        lp_buf_appends(&b, first ? "{\"id\":\"" : ",{\"id\":\"");
        lp_buf_append_json_escaped(&b, a->name, strlen(a->name));
        lp_buf_printf(&b,
                      "\",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"llm-proxy\","
                      "\"type\":\"model\",\"display_name\":\"",
                      now);
        lp_buf_append_json_escaped(&b, a->name, strlen(a->name));
        lp_buf_appends(&b, "\"}");
        first = false;
    }
    lp_buf_appends(&b, "]}");
    lp_request_reply(req, 200, "application/json", b.data, b.len, NULL, 0);
    lp_buf_free(&b);
}

/* Optional body logging (logging.log_bodies): at intake, while the body is still ours to read.
 * The logger masks secrets; the size is capped by logging.max_body_log_bytes. */
static void log_body(struct lp_request *req)
{
    if (!req->cfg->logging.log_bodies)
        return;
    size_t cap = (size_t)req->cfg->logging.max_body_log_bytes;
    size_t n = req->body_len < cap ? req->body_len : cap;
    lp_log_info(req->id, "request body (%zu bytes%s): %.*s", req->body_len,
                n < req->body_len ? ", truncated" : "", (int)n, req->body);
}

static void handle_llm(struct lp_request *req)
{
    req->llm = true;
    atomic_fetch_add(&req->rt->active_llm, 1);
    if (!lp_traffic_authenticate(req)) /* proxy_api_key or a client key (keys[]) */
        return;
    if (req->cfg->tracing.enabled)
        lp_trace_begin(req);
    log_body(req);
    const char *err = NULL;
    size_t err_off = 0;
    if (req->body_len == 0) {
        lp_request_reply_error(req, 400, NULL, "invalid_request_body",
                               "Request body is empty: expected a JSON object");
        return;
    }
    if (lp_jscan_request(req->body, req->body_len, &req->scan, &err, &err_off) != LP_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "Malformed JSON in request body at byte %zu: %s", err_off,
                 err ? err : "invalid JSON");
        lp_request_reply_error(req, 400, NULL, "invalid_json", msg);
        return;
    }
    if (req->scan.dup_key) {
        char msg[160];
        snprintf(msg, sizeof msg, "Duplicate top-level key '%s' in the request body",
                 req->scan.dup_key);
        lp_request_reply_error(req, 400, NULL, "duplicate_key", msg);
        return;
    }
    if (!req->scan.has_model || !req->scan.model_is_string || !req->scan.model[0] ||
        !req->scan.model_nul_free) {
        lp_request_reply_error(req, 400, NULL, "missing_model",
                               req->scan.has_model ? "Field 'model' must be a non-empty string"
                                                   : "Missing required field 'model'");
        return;
    }
    req->alias_name = lp_arena_strdup(&req->arena, req->scan.model);
    req->stream = req->scan.stream;
    req->alias = lp_config_find_alias(req->cfg, req->scan.model, strlen(req->scan.model));
    if (!req->alias || !req->alias->enabled) {
        char msg[512];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist%s", req->scan.model,
                 req->alias ? " (alias is disabled)" : "");
        lp_request_reply_error(req, 404,
                               req->client == LP_PROTO_ANTHROPIC ? "not_found_error"
                                                                 : "invalid_request_error",
                               "model_not_found", msg);
        return;
    }
    if (!lp_traffic_model_allowed(req)) /* 403: the client key may not use this alias */
        return;
    lp_traffic_admit(req); /* limits: forwards now, answers 429/503, or queues (WAITING) */
}

static void dispatch(struct lp_request *req)
{
    const char *m = req->method;
    const char *p = req->path;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    const struct lp_endpoint_desc *ep = lp_endpoint_desc(req->ep);
    if (!req->path_safe) {
        /* Dot-segments, encoded slashes and backslashes are refused outright: no path a client
         * sends is ever resolved into another one (here or upstream). */
        const char *why = NULL;
        lp_endpoint_path_safe(p, &why);
        char msg[300];
        snprintf(msg, sizeof msg, "Invalid request path: %s", why ? why : "not allowed");
        lp_request_reply_error(req, 400, NULL, "invalid_path", msg);
    } else if (get && (strcmp(p, "/health") == 0 || strcmp(p, "/healthz") == 0)) {
        reply_health(req);
    } else if (lp_admin_owns(p)) {
        lp_admin_handle(req);
    } else if (get && req->ep == LP_EP_MODELS) {
        if (lp_traffic_authenticate(req))
            reply_models(req);
    } else if (strcmp(m, "POST") == 0 && ep->forwarded) {
        handle_llm(req);
    } else if (req->ep != LP_EP_NONE) {
        struct lp_edge_header allow = {"Allow", ep->forwarded ? "POST" : "GET, HEAD"};
        size_t len = 0;
        char *body = lp_apierr_body(req->client, 405, NULL, "method_not_allowed",
                                    "Method not allowed for this endpoint", req->id, &len);
        lp_request_reply_error_body(req, 405, body, len, &allow, 1);
        free(body);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown endpoint %s %.200s%s", m, p,
                 strncmp(p, "/v1/", 4) == 0 ? " (the operator can allow more upstream paths with "
                                              "passthrough_paths)"
                                            : "");
        lp_request_reply_error(req, 404, NULL, "unknown_endpoint", msg);
    }
}

void lp_intake_handle(struct lp_worker *w, struct lp_edge_req *er)
{
    struct lp_request *req = lp_request_new(w, er);
    lp_edge_set_close_cb(er, on_client_close, req);
    req->client = lp_endpoint_client_proto(req->path);
    req->path_safe = lp_endpoint_path_safe(req->path, NULL);
    if (req->path_safe)
        req->ep = lp_endpoint_lookup(req->path, (const char *const *)req->cfg->passthrough_paths,
                                     req->cfg->n_passthrough_paths);
    req->chat = lp_endpoint_desc(req->ep)->translatable;
    char *q = lp_endpoint_filter_query(req->ep, req->query);
    req->fwd_query = lp_arena_strdup(&req->arena, q);
    free(q);
    lp_request_enter(req);
    dispatch(req);
    /* Synchronous answers ended the edge request already: finish those here. Requests with
     * asynchronous work (forwarding, a reload job) are finished by their owner. */
    if (req->phase == LP_PHASE_DONE && !req->admin_job && !req->on_teardown)
        lp_request_finish(req);
    lp_request_leave(req);
}

void lp_intake_head(struct lp_worker *w, struct lp_edge_req *er)
{
    /* Which key the endpoint needs: admin paths as lp_admin_handle, LLM paths (/v1/... and the
     * reference's paths without /v1) the proxy key; anything else is left to dispatch(). */
    static const char *const bare[] = {"/chat/completions", "/completions", "/embeddings",
                                       "/messages", "/models"};
    const char *p = lp_edge_req_path(er);
    bool admin = strcmp(p, "/admin") == 0 || strncmp(p, "/admin/", 7) == 0;
    bool llm = strncmp(p, "/v1/", 4) == 0;
    for (size_t i = 0; !admin && !llm && i < sizeof bare / sizeof bare[0]; i++) {
        size_t n = strlen(bare[i]);
        llm = strncmp(p, bare[i], n) == 0 && (p[n] == '\0' || p[n] == '/');
    }
    bool unsafe = !lp_endpoint_path_safe(p, NULL);
    if (!admin && !llm && !unsafe)
        return;
    struct lp_config *cfg = lp_runtime_config(w->rt);
    const char *key = admin ? lp_admin_key(cfg) : cfg->proxy_api_key;
    bool ok;
    if (admin) {
        /* Client keys make the proxy authenticated: an admin API without its own key is shut. */
        ok = lp_request_key_ok(er, key) && !((!key || !key[0]) && cfg->n_keys > 0);
    } else {
        const struct lp_client_key *k = NULL;
        enum lp_key_auth a = lp_keys_match_headers(cfg, er, &k);
        ok = a == LP_KEY_OPEN || a == LP_KEY_PROXY || a == LP_KEY_CLIENT;
    }
    if (unsafe || !ok) {
        /* Refuse now, before any body byte is read, through the normal intake so the answer is
         * the one dispatch() would give: client's protocol shape, request id, access line and
         * metrics. The edge closes the connection after it. cfg (and so key) is held until the
         * reply is made. */
        struct lp_request *req = lp_request_new(w, er);
        req->client = lp_endpoint_client_proto(req->path);
        if (unsafe) {
            const char *why = NULL;
            lp_endpoint_path_safe(req->path, &why);
            char msg[300];
            snprintf(msg, sizeof msg, "Invalid request path: %s", why ? why : "not allowed");
            lp_request_reply_error(req, 400, NULL, "invalid_path", msg);
        } else {
            if (strcmp(req->method, "POST") == 0 && llm) {
                req->llm = true; /* counted like handle_llm's own 401 */
                atomic_fetch_add(&req->rt->active_llm, 1);
            }
            if (admin && (!key || !key[0]))
                lp_request_reply_error(req, 401, NULL, "invalid_api_key",
                                       "The admin API needs admin_api_key or proxy_api_key when "
                                       "client keys are configured");
            else if (admin)
                lp_request_check_auth(req, key);
            else
                lp_traffic_authenticate(req); /* the same 401 as at intake */
        }
        lp_request_finish(req);
    }
    lp_config_unref(cfg);
}

void lp_intake_reject(struct lp_worker *w, struct lp_edge_req *er, int status, const char *reason)
{
    const char *path = lp_edge_req_path(er);
    enum lp_proto p = lp_endpoint_client_proto(path);
    char id[LP_REQID_MAX];
    lp_reqid_new(&w->rng, id);
    char msg[256];
    if (status == 413) {
        struct lp_config *cfg = lp_runtime_config(w->rt);
        snprintf(msg, sizeof msg,
                 "Request body too large: the limit is %lld bytes (server.max_body_size)",
                 (long long)cfg->server.max_body_size);
        lp_config_unref(cfg);
    } else if (status == 503) {
        snprintf(msg, sizeof msg,
                 "Server busy: request bodies being received use all of "
                 "server.max_body_memory; retry shortly");
    } else {
        snprintf(msg, sizeof msg, "%s", reason ? reason : "Bad request");
    }
    size_t len = 0;
    char *body = lp_apierr_body(p, status, NULL, NULL, msg, id, &len);
    struct lp_edge_header h[] = {
        {"Content-Type", "application/json"}, {"X-Request-Id", id}, {"Retry-After", "1"}};
    lp_edge_respond(er, status, h, status == 503 ? 3 : 2, body, len);
    lp_log_info(id, "rejected request %s %s: %d %s",
                lp_edge_req_method(er) ? lp_edge_req_method(er) : "-", path ? path : "-", status,
                msg);
    free(body);
}
