/* route.c - decides what the mock answers: the admin API, a scripted step, or the default
 * OpenAI / Anthropic behaviour. Produces a struct mock_plan that conn.c drives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "mock.h"
#include "util/alloc.h"
#include "util/json.h"

void mock_plan_init(struct mock_plan *p)
{
    memset(p, 0, sizeof *p);
    p->status = 200;
    p->cut_after = -1;
    p->stall_after = -1;
    lp_buf_init(&p->head_extra, 1024 * 1024);
    lp_buf_init(&p->body, 0);
}

void mock_plan_free(struct mock_plan *p)
{
    lp_buf_free(&p->head_extra);
    lp_buf_free(&p->body);
    mock_step_unref(p->step);
    p->step = NULL;
    LP_FREE(&p->model);
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static void add_header(struct mock_plan *p, const char *name, const char *value)
{
    lp_buf_printf(&p->head_extra, "%s: %s\r\n", name, value);
}

static void json_reply(struct mock_plan *p, int status, const char *json)
{
    p->status = status;
    add_header(p, "content-type", "application/json");
    lp_buf_appends(&p->body, json);
}

/* ---- admin API --------------------------------------------------------------------------- */

static void admin_stats(struct mock *m, struct mock_plan *p)
{
    lp_buf_printf(&p->body,
                  "{\"connections\":%llu,\"requests\":%llu,\"active\":%llu,\"aborted\":%llu,"
                  "\"accepted\":%llu,\"queued\":%zu}",
                  (unsigned long long)m->log.connections, (unsigned long long)m->log.requests,
                  (unsigned long long)m->active, (unsigned long long)m->log.aborted,
                  (unsigned long long)m->accepted, mock_script_len(&m->script));
    add_header(p, "content-type", "application/json");
}

static void admin_script(struct mock *m, struct mock_req *r, struct mock_plan *p)
{
    const char *err = NULL;
    int n = mock_script_add(&m->script, r->body.data ? r->body.data : "", r->body.len, &err);
    if (n < 0) {
        p->status = 400;
        lp_buf_appends(&p->body, "{\"error\":\"");
        if (!err)
            err = "invalid script";
        lp_buf_append_json_escaped(&p->body, err, strlen(err));
        lp_buf_appends(&p->body, "\"}");
    } else {
        lp_buf_printf(&p->body, "{\"added\":%d,\"queued\":%zu}", n, mock_script_len(&m->script));
    }
    add_header(p, "content-type", "application/json");
}

static void route_admin(struct mock *m, struct mock_req *r, const char *path, struct mock_plan *p)
{
    bool post = strcmp(r->method, "POST") == 0;
    if (post && strcmp(path, "/_mock/script") == 0) {
        admin_script(m, r, p);
    } else if (strcmp(path, "/_mock/requests") == 0) {
        add_header(p, "content-type", "application/json");
        mock_log_to_json(&m->log, &p->body);
    } else if (post && strcmp(path, "/_mock/reset") == 0) {
        mock_script_clear(&m->script);
        mock_log_reset(&m->log);
        json_reply(p, 200, "{\"ok\":true}");
    } else if (strcmp(path, "/_mock/stats") == 0) {
        admin_stats(m, p);
    } else if (strcmp(path, "/_mock/health") == 0) {
        json_reply(p, 200, "{\"ok\":true}");
    } else {
        json_reply(p, 404, "{\"error\":\"unknown admin endpoint\"}");
    }
}

/* ---- default behaviour ------------------------------------------------------------------- */

enum endpoint {
    EP_NONE,
    EP_CHAT,
    EP_COMPLETIONS,
    EP_EMBEDDINGS,
    EP_RESPONSES,
    EP_MESSAGES,
    EP_COUNT_TOKENS,
    EP_MODELS
};

static enum endpoint endpoint_of(const char *method, const char *path, size_t n)
{
    bool post = strcmp(method, "POST") == 0;
    if (post && ends_with(path, n, "/chat/completions"))
        return EP_CHAT;
    if (post && ends_with(path, n, "/messages/count_tokens"))
        return EP_COUNT_TOKENS;
    if (post && ends_with(path, n, "/messages"))
        return EP_MESSAGES;
    if (post && ends_with(path, n, "/completions"))
        return EP_COMPLETIONS;
    if (post && ends_with(path, n, "/embeddings"))
        return EP_EMBEDDINGS;
    if (post && ends_with(path, n, "/responses"))
        return EP_RESPONSES;
    if (strcmp(method, "GET") == 0 && ends_with(path, n, "/models"))
        return EP_MODELS;
    return EP_NONE;
}

static void error_reply(struct mock_plan *p, enum endpoint ep, int status, const char *msg)
{
    p->status = status;
    add_header(p, "content-type", "application/json");
    if (ep == EP_MESSAGES || ep == EP_COUNT_TOKENS)
        lp_buf_appends(&p->body,
                       "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"");
    else
        lp_buf_appends(&p->body,
                       "{\"error\":{\"type\":\"mock_error\",\"code\":null,\"message\":\"");
    lp_buf_append_json_escaped(&p->body, msg, strlen(msg));
    lp_buf_appends(&p->body, "\"}}");
}

static void sse_headers(struct mock_plan *p)
{
    add_header(p, "content-type", "text/event-stream");
    add_header(p, "cache-control", "no-cache");
}

static void models_reply(struct mock *m, struct mock_plan *p)
{
    add_header(p, "content-type", "application/json");
    lp_buf_appends(&p->body, "{\"object\":\"list\",\"data\":[");
    const char *ids[] = {"mock-model", "gpt-4o-mini", "claude-sonnet-4-5"};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        lp_buf_printf(&p->body,
                      "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":\"",
                      i ? "," : "", ids[i]);
        lp_buf_append_json_escaped(&p->body, m->opts.name, strlen(m->opts.name));
        lp_buf_appends(&p->body, "\"}");
    }
    lp_buf_appends(&p->body, "]}");
}

/* Generated (default) answer for an LLM endpoint whose body parsed as `req`. */
static void answer(struct mock *m, enum endpoint ep, struct json_object *req, bool stream,
                   struct mock_plan *p)
{
    const char *name = m->opts.name;
    if (stream && (ep == EP_CHAT || ep == EP_MESSAGES)) {
        p->sse = true;
        p->gen = true;
        p->spec.proto = ep == EP_MESSAGES ? MOCK_PROTO_ANTHROPIC : MOCK_PROTO_OPENAI;
        sse_headers(p);
        return;
    }
    add_header(p, "content-type", "application/json");
    if (ep == EP_CHAT)
        mock_body_openai_chat(p, name, &p->body);
    else if (ep == EP_MESSAGES)
        mock_body_anthropic(p, name, &p->body);
    else if (ep == EP_COMPLETIONS)
        mock_body_openai_completion(p, name, &p->body);
    else if (ep == EP_RESPONSES)
        mock_body_openai_responses(p, name, &p->body);
    else if (ep == EP_EMBEDDINGS) {
        struct json_object *in = lp_json_get(req, "input");
        mock_body_embeddings(p, lp_json_is_arr(in) ? lp_json_arr_len(in) : 1, &p->body);
    } else
        lp_buf_printf(&p->body, "{\"input_tokens\":%ld}", p->prompt_tokens);
}

/* The default plan. force_stream: a scripted sse step without events wants the stream. */
static void route_default(struct mock *m, struct mock_req *r, size_t pathlen, bool force_stream,
                          struct mock_plan *p)
{
    enum endpoint ep = endpoint_of(r->method, r->target, pathlen);
    p->delay_ms = m->opts.latency_ms;
    p->spec.chunks = m->opts.chunks;
    p->spec.interval_ms = m->opts.chunk_interval_ms;
    p->first_delay_ms = m->opts.ttft_ms;
    p->response_bytes = m->opts.response_bytes;
    p->prompt_tokens = mock_tokens(r->body.len);
    if (ep == EP_NONE) {
        error_reply(p, ep, 404, "llm-mock: no such endpoint");
        return;
    }
    if (ep == EP_MODELS) {
        models_reply(m, p);
        return;
    }
    struct json_object *req = lp_json_parse(r->body.data ? r->body.data : "", r->body.len, NULL);
    if (!lp_json_is_obj(req)) {
        error_reply(p, ep, 400, "llm-mock: request body is not a JSON object");
    } else {
        const char *model = lp_json_get_str(req, "model");
        p->model = lp_xstrdup(model ? model : "mock-model");
        p->include_usage =
            lp_json_get_bool(lp_json_get_obj(req, "stream_options"), "include_usage", false);
        answer(m, ep, req, force_stream || lp_json_get_bool(req, "stream", false), p);
    }
    json_object_put(req);
}

/* ---- scripted steps ---------------------------------------------------------------------- */

static void step_headers(const struct mock_step *s, struct mock_plan *p, bool *has_ct)
{
    for (size_t i = 0; i < s->nhdrs; i++) {
        const struct mock_hdr *h = &s->hdrs[i];
        if (strcasecmp(h->name, "content-length") == 0 ||
            strcasecmp(h->name, "transfer-encoding") == 0)
            continue; /* framing is ours */
        if (strcasecmp(h->name, "connection") == 0 && strcasestr(h->value, "close")) {
            p->conn_close = true;
            continue;
        }
        if (strcasecmp(h->name, "content-type") == 0)
            *has_ct = true;
        add_header(p, h->name, h->value);
    }
}

/* A step without body or events: the default answer with the step's status, delay and headers
 * on top (an error status gets a small error body instead of the answer). */
static void route_step_default(struct mock *m, struct mock_req *r, size_t pathlen,
                               struct mock_step *s, struct mock_plan *p)
{
    route_default(m, r, pathlen, s->has_sse, p);
    if (s->status >= 300 && s->status != p->status) {
        lp_buf_reset(&p->head_extra);
        lp_buf_reset(&p->body);
        p->sse = false;
        p->gen = false;
        char msg[64];
        snprintf(msg, sizeof msg, "llm-mock: scripted status %d", s->status);
        error_reply(p, endpoint_of(r->method, r->target, pathlen), s->status, msg);
    }
    p->status = s->status;
}

/* zlib window bits for a step's encoding: gzip 31, deflate (zlib format) 15, deflate-raw -15;
 * 0 for a name the mock only announces (br, zstd, ...). */
static int encoding_bits(const char *enc)
{
    if (strcmp(enc, "gzip") == 0)
        return 31;
    if (strcmp(enc, "deflate") == 0)
        return 15;
    if (strcmp(enc, "deflate-raw") == 0)
        return -15;
    return 0;
}

/* Compress p->body in place with the given window bits. */
static void compress_body(struct mock_plan *p, int bits)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return;
    size_t cap = deflateBound(&z, (uLong)p->body.len) + 64;
    unsigned char *out = lp_xmalloc(cap);
    z.next_in = (Bytef *)(p->body.data ? p->body.data : "");
    z.avail_in = (uInt)p->body.len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    lp_buf_reset(&p->body);
    lp_buf_append(&p->body, out, n);
    free(out);
}

/* A step's encoding: announce it; compress a fixed body now, a stream as it is written. */
static void apply_encoding(const struct mock_step *s, struct mock_plan *p)
{
    if (!s->encoding)
        return;
    int bits = encoding_bits(s->encoding);
    add_header(p, "content-encoding", bits == -15 ? "deflate" : s->encoding);
    if (bits == 0)
        return;
    if (p->sse)
        p->zbits = bits;
    else
        compress_body(p, bits);
}

static void route_step(struct mock *m, struct mock_req *r, size_t pathlen, struct mock_step *s,
                       struct mock_plan *p)
{
    p->step = s;
    if (s->close) {
        p->close = true;
        return;
    }
    if (s->has_raw) {
        p->raw = true;
        p->status = s->status;
        p->delay_ms = s->delay_ms >= 0 ? s->delay_ms : m->opts.latency_ms;
        lp_buf_append(&p->body, s->raw, s->raw_len);
        return;
    }
    bool has_ct = false;
    if (s->sse_default || (!s->has_body && !s->has_sse)) {
        route_step_default(m, r, pathlen, s, p);
        has_ct = true;
    } else if (s->has_sse) {
        p->sse = true;
        p->gen = s->has_gen;
        p->spec = s->gen;
        p->response_bytes = 1;
        p->prompt_tokens = mock_tokens(r->body.len);
        struct json_object *req =
            lp_json_parse(r->body.data ? r->body.data : "", r->body.len, NULL);
        const char *model = lp_json_get_str(req, "model");
        p->model = lp_xstrdup(model ? model : "mock-model");
        p->include_usage =
            lp_json_get_bool(lp_json_get_obj(req, "stream_options"), "include_usage", false);
        json_object_put(req);
    } else {
        lp_buf_append(&p->body, s->body, s->body_len);
    }
    p->status = s->status;
    if (s->status == 204 || s->status == 304) { /* these never carry a body */
        lp_buf_reset(&p->body);
        p->sse = false;
    }
    p->delay_ms = s->delay_ms >= 0 ? s->delay_ms : m->opts.latency_ms;
    p->cut_after = s->cut_after;
    p->stall_after = s->stall_after;
    step_headers(s, p, &has_ct);
    if (!has_ct) {
        if (p->sse)
            sse_headers(p);
        else
            add_header(p, "content-type", "application/json");
    }
    apply_encoding(s, p);
}

/* ---- provider rules (--mode) ------------------------------------------------------------- */

static void azure_error(struct mock_plan *p, int status, const char *code, const char *msg)
{
    p->status = status;
    add_header(p, "content-type", "application/json");
    lp_buf_printf(&p->body, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    lp_buf_append_json_escaped(&p->body, msg, strlen(msg));
    lp_buf_appends(&p->body, "\"}}");
}

/* Azure OpenAI refuses, as the real service does: a path outside /openai/deployments/<d>/... and
 * /openai/v1/... (404), a deployment path without api-version (404), and a request without the
 * right `api-key` header (401; a Bearer token is not a key). Returns true when it refused. */
static bool azure_refuses(struct mock *m, struct mock_req *r, size_t pathlen, struct mock_plan *p)
{
    const char *t = r->target;
    const char *q = t[pathlen] == '?' ? t + pathlen + 1 : "";
    bool v1 = strncmp(t, "/openai/v1/", 11) == 0;
    bool dep =
        strncmp(t, "/openai/deployments/", 20) == 0 && memchr(t + 20, '/', pathlen - 20) != NULL;
    bool has_version = strncmp(q, "api-version=", 12) == 0 || strstr(q, "&api-version=");
    if (!(v1 || (dep && has_version))) {
        azure_error(p, 404, "404", "Resource not found");
        return true;
    }
    const char *key = mock_req_header(r, "api-key");
    if (!key || !key[0] || (m->opts.key && strcmp(key, m->opts.key) != 0)) {
        azure_error(p, 401, "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make "
                    "sure to provide a valid key for an active subscription and use a correct "
                    "regional API endpoint for your resource.");
        return true;
    }
    return false;
}

static void google_error(struct mock_plan *p, int status, const char *gstatus, const char *msg,
                         const char *reason)
{
    p->status = status;
    add_header(p, "content-type", "application/json; charset=UTF-8");
    lp_buf_printf(&p->body, "{\"error\":{\"code\":%d,\"message\":\"", status);
    lp_buf_append_json_escaped(&p->body, msg, strlen(msg));
    lp_buf_printf(&p->body, "\",\"status\":\"%s\"", gstatus);
    if (reason)
        lp_buf_printf(&p->body,
                      ",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
                      "ErrorInfo\",\"reason\":\"%s\",\"domain\":\"googleapis.com\"}]",
                      reason);
    lp_buf_appends(&p->body, "}}");
}

/* Gemini / Vertex refuse, as Google does: a path that is not .../models/<m>:generateContent or
 * :streamGenerateContent (404), a stream without alt=sse (400 here: the proxy must ask for SSE),
 * a key in the URL (400: never acceptable from the proxy, it leaks into logs), no credential
 * (403), a wrong one (400 API_KEY_INVALID / 401), and a body that is not a Gemini request (an
 * OpenAI `messages` or `model` field: 400 "Unknown name"). *stream is set for the SSE method. */
static bool gemini_refuses(struct mock *m, struct mock_req *r, size_t pathlen, bool *stream,
                           struct mock_plan *p)
{
    const char *t = r->target;
    const char *q = t[pathlen] == '?' ? t + pathlen + 1 : "";
    const char *colon = memchr(t, ':', pathlen);
    const char *models = strstr(t, "/models/");
    *stream = colon && ends_with(t, pathlen, ":streamGenerateContent");
    if (!models || models > colon || !colon || colon == models + 8 ||
        !(*stream || ends_with(t, pathlen, ":generateContent")) || strcmp(r->method, "POST") != 0) {
        google_error(p, 404, "NOT_FOUND", "llm-mock (gemini): no such method", NULL);
        return true;
    }
    if (!strncmp(q, "key=", 4) || strstr(q, "&key=")) {
        google_error(p, 400, "INVALID_ARGUMENT", "llm-mock (gemini): API key in the URL", NULL);
        return true;
    }
    if (*stream && !(strstr(q, "alt=sse"))) {
        google_error(p, 400, "INVALID_ARGUMENT",
                     "llm-mock (gemini): streamGenerateContent without alt=sse", NULL);
        return true;
    }
    bool vertex = strstr(t, "/projects/") != NULL && strstr(t, "/projects/") < colon;
    const char *authz = mock_req_header(r, "authorization");
    const char *key = vertex ? (authz && !strncmp(authz, "Bearer ", 7) ? authz + 7 : NULL)
                             : mock_req_header(r, "x-goog-api-key");
    if (!key || !key[0]) {
        google_error(p, vertex ? 401 : 403, vertex ? "UNAUTHENTICATED" : "PERMISSION_DENIED",
                     vertex ? "Request had invalid authentication credentials."
                            : "Method doesn't allow unregistered callers (callers without "
                              "established identity). Please use API Key or other form of API "
                              "consumer identity to call this API.",
                     NULL);
        return true;
    }
    if (m->opts.key && strcmp(key, m->opts.key) != 0) {
        if (vertex)
            google_error(p, 401, "UNAUTHENTICATED",
                         "Request had invalid authentication credentials.", NULL);
        else
            google_error(p, 400, "INVALID_ARGUMENT",
                         "API key not valid. Please pass a valid API key.", "API_KEY_INVALID");
        return true;
    }
    struct json_object *req = lp_json_parse(r->body.data ? r->body.data : "", r->body.len, NULL);
    const char *bad = !lp_json_is_obj(req)           ? "the body is not a JSON object"
                      : lp_json_get(req, "messages") ? "Unknown name \"messages\""
                      : lp_json_get(req, "model")    ? "Unknown name \"model\""
                      : lp_json_arr_len(lp_json_get_arr(req, "contents")) == 0
                          ? "* GenerateContentRequest.contents: contents is not specified"
                          : NULL;
    json_object_put(req);
    if (bad) {
        char msg[160];
        snprintf(msg, sizeof msg, "Invalid JSON payload received. %s", bad);
        google_error(p, 400, "INVALID_ARGUMENT", msg, NULL);
        return true;
    }
    return false;
}

/* The default Gemini answer: the model is the path's. */
static void gemini_default(struct mock *m, struct mock_req *r, size_t pathlen, bool stream,
                           struct mock_plan *p)
{
    const char *models = strstr(r->target, "/models/") + 8;
    const char *colon = memchr(models, ':', pathlen - (size_t)(models - r->target));
    p->model = lp_xstrndup(models, (size_t)(colon - models));
    p->delay_ms = m->opts.latency_ms;
    p->spec.chunks = m->opts.chunks > 0 ? m->opts.chunks : 1;
    p->spec.interval_ms = m->opts.chunk_interval_ms;
    p->first_delay_ms = m->opts.ttft_ms;
    p->response_bytes = m->opts.response_bytes;
    p->prompt_tokens = mock_tokens(r->body.len);
    if (stream) {
        p->sse = true;
        p->gen = true;
        p->spec.proto = MOCK_PROTO_GEMINI;
        sse_headers(p);
        return;
    }
    add_header(p, "content-type", "application/json; charset=UTF-8");
    mock_body_gemini(p, m->opts.name, &p->body);
}

void mock_route(struct mock *m, struct mock_req *r, struct mock_plan *p, bool *admin)
{
    const char *q = strchr(r->target, '?');
    size_t pathlen = q ? (size_t)(q - r->target) : strlen(r->target);
    p->resp_id = ++m->next_resp_id;
    p->created = (int64_t)time(NULL);
    *admin = strncmp(r->target, "/_mock/", 7) == 0;
    if (*admin) {
        char *path = lp_xstrndup(r->target, pathlen);
        route_admin(m, r, path, p);
        free(path);
        return;
    }
    if (m->opts.mode == MOCK_MODE_AZURE && azure_refuses(m, r, pathlen, p))
        return;
    bool gstream = false;
    if (m->opts.mode == MOCK_MODE_GEMINI && gemini_refuses(m, r, pathlen, &gstream, p))
        return;
    struct mock_step *s = mock_script_pop(&m->script, r->target);
    if (!s && m->opts.mode == MOCK_MODE_GEMINI) {
        gemini_default(m, r, pathlen, gstream, p);
        return;
    }
    if (s)
        route_step(m, r, pathlen, s, p);
    else
        route_default(m, r, pathlen, false, p);
}
