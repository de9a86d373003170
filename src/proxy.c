/* proxy.c - the request path: intake -> plan -> attempt -> (commit) -> relay -> finish.
 *
 * Ownership: a struct lp_request is created in lp_proxy_handle and freed only by finish(),
 * which also ends the edge request. Every path (success, error reply, client gone, shutdown)
 * ends in finish() exactly once.
 *
 * Commit rule (the one line to find): req->committed becomes true in commit_stream() or when a
 * complete response is handed to the edge. Before it, any failure may fail over; after it, a
 * failure can only end the stream with a protocol-correct error event.
 */
#include "proxy.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "apierr.h"
#include "attempt.h"
#include "edge.h"
#include "hdrpolicy.h"
#include "jscan.h"
#include "log.h"
#include "reqid.h"
#include "request.h"
#include "router.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "worker.h"

enum lp_proto lp_proxy_path_protocol(const char *path)
{
    if (path && strncmp(path, "/v1/messages", 12) == 0 && (path[12] == '\0' || path[12] == '/'))
        return LP_PROTO_ANTHROPIC;
    return LP_PROTO_OPENAI;
}

/* ---- replies ----------------------------------------------------------------------------- */

void lp_request_reply(struct lp_request *req, int status, const char *content_type,
                      const char *body, size_t len, const struct lp_edge_header *extra,
                      size_t n_extra)
{
    struct lp_edge_header h[32];
    size_t n = 0;
    h[n++] = (struct lp_edge_header){"Content-Type", content_type};
    h[n++] = (struct lp_edge_header){"X-Request-Id", req->id};
    for (size_t i = 0; i < n_extra && n < 32; i++)
        h[n++] = extra[i];
    req->final_status = status;
    req->bytes_out += len;
    req->committed = true; /* COMMIT: a complete response goes to the edge */
    lp_request_log_access(req);
    if (!req->client_gone)
        lp_edge_respond(req->er, status, h, n, body, len);
    else
        lp_edge_abort(req->er);
    req->er = NULL;
}

void lp_request_reply_error(struct lp_request *req, int status, const char *type, const char *code,
                            const char *msg)
{
    size_t len = 0;
    char *body = lp_apierr_body(req->client, status, type, code, msg, req->id, &len);
    lp_request_reply_error_body(req, status, body, len, NULL, 0);
    free(body);
}

void lp_request_reply_error_body(struct lp_request *req, int status, const char *body, size_t len,
                                 const struct lp_edge_header *extra, size_t n_extra)
{
    if (!req->error_msg_set) {
        snprintf(req->error_msg, sizeof req->error_msg, "%.*s", (int)(len > 200 ? 200 : len), body);
        req->error_msg_set = true;
    }
    lp_request_reply(req, status, "application/json", body, len, extra, n_extra);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

static struct lp_request *request_new(struct lp_worker *w, struct lp_edge_req *er)
{
    struct lp_request *req = lp_xcalloc(1, sizeof *req);
    req->w = w;
    req->er = er;
    req->rt = w->rt;
    req->cfg = lp_runtime_config(w->rt);
    req->t0_us = lp_now_us();
    req->t0_wall_ms = lp_wall_ms();
    req->path = lp_xstrdup(lp_edge_req_path(er));
    req->query = lp_xstrdup(lp_edge_req_query(er));
    req->method = lp_xstrdup(lp_edge_req_method(er));
    req->client = lp_proxy_path_protocol(req->path);
    req->chat = strcmp(req->path, "/v1/chat/completions") == 0 || strcmp(req->path, "/v1/messages") == 0;
    snprintf(req->peer, sizeof req->peer, "%s", lp_edge_req_peer_ip(er));
    const char *rid = lp_edge_req_header(er, "X-Request-Id");
    if (rid && lp_reqid_sane(rid))
        snprintf(req->id, sizeof req->id, "%s", rid);
    else
        lp_reqid_new(&w->rng, req->id);
    req->body = lp_edge_req_body(er, &req->body_len);
    req->bytes_in = req->body_len;
    req->tok_in = req->tok_out = req->tok_cached = -1;
    w->requests++;
    atomic_fetch_add(&w->rt->active_requests, 1);
    return req;
}

void lp_request_finish(struct lp_request *req)
{
    if (req->busy) {
        /* Inside an asynchronous entry point of attempt.c: finish when it unwinds. */
        req->finish_pending = true;
        return;
    }
    lp_admin_cancel(req);
    lp_attempt_teardown(req);
    if (req->er) {
        /* Nobody answered (client gone or shutdown): close without a response. */
        lp_edge_abort(req->er);
        req->er = NULL;
    }
    lp_request_log_access(req);
    if (req->stream_counted)
        atomic_fetch_sub(&req->rt->active_streams, 1);
    atomic_fetch_sub(&req->rt->active_requests, 1);
    if (req->llm)
        atomic_fetch_sub(&req->rt->active_llm, 1);
    req->w->requests--;
    lp_jscan_free(&req->scan);
    lp_config_unref(req->cfg);
    free(req->alias_name);
    free(req->path);
    free(req->query);
    free(req->method);
    free(req);
}

void lp_request_leave(struct lp_request *req)
{
    if (--req->busy == 0 && req->finish_pending)
        lp_request_finish(req);
}

static void on_client_close(struct lp_edge_req *er, void *arg)
{
    struct lp_request *req = arg;
    req->client_gone = true;
    lp_log_info(req->id, "client disconnected%s", req->committed ? " mid-stream" : "");
    if (req->committed && !req->stream_done)
        lp_request_count_abort(req, "client_gone");
    /* Cancel the upstream transfer and any timer at once, then release everything. */
    lp_request_finish(req);
}

/* ---- intake ---------------------------------------------------------------------------- */

/* Whether the request's Authorization: Bearer or x-api-key header holds key (constant time). */
static bool key_ok(struct lp_edge_req *er, const char *key)
{
    if (!key || !*key)
        return true;
    size_t klen = strlen(key);
    const char *auth = lp_edge_req_header(er, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *t = auth + 7;
        while (*t == ' ')
            t++;
        if (lp_ct_equal(t, strlen(t), key, klen))
            return true;
    }
    const char *xk = lp_edge_req_header(er, "x-api-key");
    if (xk && lp_ct_equal(xk, strlen(xk), key, klen))
        return true;
    return false;
}

static bool authorized(struct lp_request *req, const char *key)
{
    return key_ok(req->er, key);
}

bool lp_request_check_auth(struct lp_request *req, const char *key)
{
    if (authorized(req, key))
        return true;
    bool presented = lp_edge_req_header(req->er, "Authorization") ||
                     lp_edge_req_header(req->er, "x-api-key");
    lp_request_reply_error(req, 401, NULL, "invalid_api_key",
                           presented ? "Invalid API key" : "Missing API key: send it as "
                                                           "'Authorization: Bearer <key>' or "
                                                           "'x-api-key: <key>'");
    return false;
}

static void reply_health(struct lp_request *req)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "{\"status\":\"%s\",\"backends\":%zu,\"models\":%zu}",
                     atomic_load(&req->rt->draining) ? "draining" : "healthy",
                     req->cfg->n_backends, req->cfg->n_aliases);
    lp_request_reply(req, 200, "application/json", body, (size_t)n, NULL, 0);
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
        if (!a->enabled)
            continue;
        lp_buf_appends(&b, first ? "{\"id\":\"" : ",{\"id\":\"");
        lp_buf_append_json_escaped(&b, a->name, strlen(a->name));
        lp_buf_printf(&b, "\",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"llm-proxy\","
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

/* Which endpoints carry a model and go upstream. */
static bool is_llm_endpoint(const char *path)
{
    if (strncmp(path, "/v1/messages", 12) == 0 && (path[12] == '\0' || strcmp(path + 12, "/count_tokens") == 0))
        return true;
    return strncmp(path, "/v1/", 4) == 0 && path[4] != '\0';
}

/* Optional body logging (logging.log_bodies): at intake, while the body is still ours to read.
 * The logger masks secrets; the size is capped by logging.max_body_log_bytes. */
static void log_body(struct lp_request *req)
{
    if (!req->cfg->logging.log_bodies)
        return;
    size_t cap = (size_t)(req->cfg->logging.max_body_log_bytes > 0 ? req->cfg->logging.max_body_log_bytes : 4096);
    size_t n = req->body_len < cap ? req->body_len : cap;
    lp_log_info(req->id, "request body (%zu bytes%s): %.*s", req->body_len,
                n < req->body_len ? ", truncated" : "", (int)n, req->body);
}

static void handle_llm(struct lp_request *req)
{
    req->llm = true;
    atomic_fetch_add(&req->rt->active_llm, 1);
    if (!lp_request_check_auth(req, req->cfg->proxy_api_key))
        return;
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
    if (!req->scan.has_model || !req->scan.model_is_string || !req->scan.model[0] ||
        !req->scan.model_nul_free) {
        lp_request_reply_error(req, 400, NULL, "missing_model",
                               req->scan.has_model ? "Field 'model' must be a non-empty string"
                                                   : "Missing required field 'model'");
        return;
    }
    req->alias_name = lp_xstrdup(req->scan.model);
    req->stream = req->scan.stream;
    req->alias = lp_config_find_alias(req->cfg, req->scan.model, strlen(req->scan.model));
    if (!req->alias || !req->alias->enabled) {
        char msg[512];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist%s", req->scan.model,
                 req->alias ? " (alias is disabled)" : "");
        lp_request_reply_error(req, 404, req->client == LP_PROTO_ANTHROPIC ? "not_found_error" : "invalid_request_error",
                               "model_not_found", msg);
        return;
    }
    lp_attempt_begin(req);
}

static void dispatch(struct lp_request *req)
{
    const char *m = req->method;
    const char *p = req->path;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
    if (get && (strcmp(p, "/health") == 0 || strcmp(p, "/healthz") == 0)) {
        reply_health(req);
    } else if (lp_admin_owns(p)) {
        lp_admin_handle(req);
    } else if (get && (strcmp(p, "/v1/models") == 0 || strcmp(p, "/models") == 0)) {
        if (lp_request_check_auth(req, req->cfg->proxy_api_key))
            reply_models(req);
    } else if (strcmp(m, "POST") == 0 && is_llm_endpoint(p)) {
        handle_llm(req);
    } else if (is_llm_endpoint(p) || strcmp(p, "/v1/models") == 0) {
        struct lp_edge_header allow = {"Allow", get ? "POST" : "GET, POST"};
        size_t len = 0;
        char *body = lp_apierr_body(req->client, 405, NULL, "method_not_allowed",
                                    "Method not allowed for this endpoint", req->id, &len);
        lp_request_reply_error_body(req, 405, body, len, &allow, 1);
        free(body);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown endpoint %s %.200s", m, p);
        lp_request_reply_error(req, 404, NULL, "unknown_endpoint", msg);
    }
}

void lp_proxy_handle(struct lp_worker *w, struct lp_edge_req *er)
{
    struct lp_request *req = request_new(w, er);
    lp_edge_set_close_cb(er, on_client_close, req);
    lp_request_enter(req);
    dispatch(req);
    /* Synchronous replies end the edge request at once; finish those here. */
    if (!req->er && !req->x && !req->timer_armed && !req->admin_job)
        req->finish_pending = true;
    lp_request_leave(req);
}

/* Authenticate on the head (the edge's on_head callback; see lp_proxy_head in proxy.h). */
void lp_proxy_head(struct lp_worker *w, struct lp_edge_req *er)
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
    if (!admin && !llm)
        return;
    struct lp_config *cfg = lp_runtime_config(w->rt);
    const char *key = admin ? lp_admin_key(cfg) : cfg->proxy_api_key;
    if (!key_ok(er, key)) {
        /* Refuse now, before any body byte is read, through the normal intake so the answer is
         * the 401 dispatch() would give: client's protocol shape, request id, access line and
         * metrics. The edge closes the connection after it. cfg (and so key) is held until the
         * reply is made. */
        struct lp_request *req = request_new(w, er);
        if (strcmp(req->method, "POST") == 0 && is_llm_endpoint(req->path)) {
            req->llm = true; /* counted like handle_llm's own 401 */
            atomic_fetch_add(&req->rt->active_llm, 1);
        }
        lp_request_check_auth(req, key);
        lp_request_finish(req);
    }
    lp_config_unref(cfg);
}

void lp_proxy_reject(struct lp_worker *w, struct lp_edge_req *er, int status, const char *reason)
{
    const char *path = lp_edge_req_path(er);
    enum lp_proto p = lp_proxy_path_protocol(path);
    char id[LP_REQID_MAX];
    lp_reqid_new(&w->rng, id);
    char msg[256];
    if (status == 413) {
        struct lp_config *cfg = lp_runtime_config(w->rt);
        snprintf(msg, sizeof msg, "Request body too large: the limit is %lld bytes (server.max_body_size)",
                 (long long)cfg->server.max_body_size);
        lp_config_unref(cfg);
    } else if (status == 503) {
        snprintf(msg, sizeof msg, "Server busy: request bodies being received use all of "
                                  "server.max_body_memory; retry shortly");
    } else {
        snprintf(msg, sizeof msg, "%s", reason ? reason : "Bad request");
    }
    size_t len = 0;
    char *body = lp_apierr_body(p, status, NULL, NULL, msg, id, &len);
    struct lp_edge_header h[] = {{"Content-Type", "application/json"}, {"X-Request-Id", id},
                                 {"Retry-After", "1"}};
    lp_edge_respond(er, status, h, status == 503 ? 3 : 2, body, len);
    lp_log_info(id, "rejected request %s %s: %d %s", lp_edge_req_method(er) ? lp_edge_req_method(er) : "-",
                path ? path : "-", status, msg);
    free(body);
}
