/* dialect.c - the dialect rows (see dialect.h). */
#include "dialect.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "urljoin.h"
#include "util/buf.h"
#include "util/alloc.h"

/* ---- OpenAI and OpenAI-compatible providers ------------------------------------------------ */

static const char *openai_path(const struct lp_dialect_req *r)
{
    switch (r->ep) {
    case LP_EP_CHAT:
    case LP_EP_RESPONSES:
    case LP_EP_RESPONSES_COMPACT:
    case LP_EP_COMPLETIONS:
    case LP_EP_EMBEDDINGS:
    case LP_EP_MODERATIONS:
    case LP_EP_IMAGES:
    case LP_EP_AUDIO_SPEECH:
        return lp_endpoint_desc(r->ep)->path;
    case LP_EP_PASSTHROUGH:
        return r->passthrough_path;
    default:
        return NULL;
    }
}

static char *openai_url(const struct lp_dialect_req *r)
{
    const char *path = openai_path(r);
    return path ? lp_urljoin(r->backend->url, path, r->query) : NULL;
}

static void openai_auth(const struct lp_dialect_req *r, lp_dialect_hdr_fn add, void *ctx)
{
    const char *key = r->backend->api_key;
    if (key && key[0])
        add(ctx, lp_xasprintf("Authorization: Bearer %s", key));
}

/* ---- Anthropic ----------------------------------------------------------------------------- */

#define ANTHROPIC_VERSION "2023-06-01"

static const char *anthropic_path(const struct lp_dialect_req *r)
{
    switch (r->ep) {
    case LP_EP_MESSAGES:
    case LP_EP_COUNT_TOKENS:
        return lp_endpoint_desc(r->ep)->path;
    case LP_EP_PASSTHROUGH:
        return r->passthrough_path;
    default:
        return NULL;
    }
}

static char *anthropic_url(const struct lp_dialect_req *r)
{
    const char *path = anthropic_path(r);
    return path ? lp_urljoin(r->backend->url, path, r->query) : NULL;
}

static void anthropic_auth(const struct lp_dialect_req *r, lp_dialect_hdr_fn add, void *ctx)
{
    const char *key = r->backend->api_key;
    if (key && key[0])
        add(ctx, lp_xasprintf("x-api-key: %s", key));
    /* A pass-through client's own version is forwarded with its other anthropic-* headers;
     * everyone else gets the version this proxy's translators speak. */
    if (!r->client_version)
        add(ctx, lp_xstrdup("anthropic-version: " ANTHROPIC_VERSION));
}

/* ---- Azure OpenAI ----------------------------------------------------------------------------
 * Three URL forms (docs/configuration.md "Azure OpenAI"):
 *   .../openai/v1                  the v1 API: OpenAI paths, no api-version, model in the body;
 *   .../openai/deployments/<d>     a deployment: OpenAI paths without /v1, ?api-version=;
 *   https://<resource>... (no /openai/deployments, no /openai/v1): the route's model names the
 *                                  deployment, as Azure's own SDKs do with azure_deployment.
 * The key always travels in `api-key`, never as a Bearer token. */

/* The path of a URL (after the authority) and its length without query or fragment. */
static const char *url_path(const char *url, size_t *len)
{
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    const char *path = auth + strcspn(auth, "/?#");
    *len = strcspn(path, "?#");
    return path;
}

/* Whether path[0..len) holds segment sequence seg ("/openai/v1") ending on a boundary. */
static bool path_has(const char *path, size_t len, const char *seg)
{
    size_t n = strlen(seg);
    for (const char *p = path; p + n <= path + len; p++) {
        p = memmem(p, (size_t)(path + len - p), seg, n);
        if (!p)
            return false;
        if (p + n == path + len || p[n] == '/')
            return true;
    }
    return false;
}

/* A model name as one URL path segment: unreserved bytes as they are, others %XX. */
static void append_segment(struct lp_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            lp_buf_appendc(b, (char)c);
        } else {
            lp_buf_appendc(b, '%');
            lp_buf_appendc(b, hex[c >> 4]);
            lp_buf_appendc(b, hex[c & 15]);
        }
    }
}

static const char *azure_deployment_path(enum lp_endpoint ep)
{
    switch (ep) {
    case LP_EP_CHAT:
        return "/chat/completions";
    case LP_EP_COMPLETIONS:
        return "/completions";
    case LP_EP_EMBEDDINGS:
        return "/embeddings";
    case LP_EP_IMAGES:
        return "/images/generations";
    case LP_EP_AUDIO_SPEECH:
        return "/audio/speech";
    default:
        return NULL;
    }
}

static char *azure_url(const struct lp_dialect_req *r)
{
    const char *base = r->backend->url;
    size_t plen;
    const char *path = url_path(base, &plen);
    if (path_has(path, plen, "/openai/v1")) {
        const char *p = openai_path(r);
        return p ? lp_urljoin(base, p, r->query) : NULL;
    }
    const char *sub =
        r->ep == LP_EP_PASSTHROUGH ? r->passthrough_path : azure_deployment_path(r->ep);
    if (!sub)
        return NULL;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    if (path_has(path, plen, "/openai/deployments")) {
        lp_buf_appends(&b, base);
    } else { /* a resource URL: the route's model is the deployment */
        if (!r->model || !r->model[0]) {
            lp_buf_free(&b);
            return NULL;
        }
        size_t keep = plen;
        while (keep > 0 && path[keep - 1] == '/')
            keep--;
        lp_buf_append(&b, base, (size_t)(path - base) + keep);
        if (!(keep >= 7 && memcmp(path + keep - 7, "/openai", 7) == 0))
            lp_buf_appends(&b, "/openai");
        lp_buf_appends(&b, "/deployments/");
        append_segment(&b, r->model);
        lp_buf_appends(&b, path + plen); /* the base's query, if any */
    }
    bool has_version = strstr(base, "api-version=") != NULL;
    char *q = NULL;
    if (!has_version) {
        const char *v = r->backend->api_version && r->backend->api_version[0]
                            ? r->backend->api_version
                            : LP_AZURE_API_VERSION;
        q = r->query && r->query[0] ? lp_xasprintf("api-version=%s&%s", v, r->query)
                                    : lp_xasprintf("api-version=%s", v);
    }
    char *url = lp_urljoin(b.data, sub, q ? q : r->query);
    free(q);
    lp_buf_free(&b);
    return url;
}

static void azure_auth(const struct lp_dialect_req *r, lp_dialect_hdr_fn add, void *ctx)
{
    const char *key = r->backend->api_key;
    if (key && key[0])
        add(ctx, lp_xasprintf("api-key: %s", key));
}

/* ---- Cohere (OpenAI compatibility API) ---------------------------------------------------- */

/* A bare Cohere host (no path) gets Cohere's compatibility prefix; any other URL is used as
 * written, like every OpenAI-compatible backend. */
static char *cohere_url(const struct lp_dialect_req *r)
{
    const char *p = openai_path(r);
    if (!p)
        return NULL;
    size_t plen;
    const char *path = url_path(r->backend->url, &plen);
    if (plen > 0)
        return lp_urljoin(r->backend->url, p, r->query);
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_append(&b, r->backend->url, (size_t)(path - r->backend->url));
    lp_buf_appends(&b, "/compatibility/v1");
    lp_buf_appends(&b, path);
    char *url = lp_urljoin(b.data, p, r->query);
    lp_buf_free(&b);
    return url;
}

/* ---- Google Gemini API and Vertex AI -------------------------------------------------------
 * POST {base}/models/{model}:generateContent, or :streamGenerateContent?alt=sse for a stream.
 * The base may be written several ways (docs/configuration.md "Google"):
 *   https://generativelanguage.googleapis.com[/v1beta]      the route's model is appended;
 *   .../models/<name> (the reference's form), with or without :generateContent: that model;
 *   .../projects/<p>/locations/<l>[/publishers/google]      Vertex: publishers/google/models/.
 * Gemini keys travel in x-goog-api-key (never in the URL); Vertex takes an OAuth access token
 * as a Bearer token. */

/* Vertex AI: the aiplatform host or a projects/.../locations/... path. */
static bool google_is_vertex(const char *url)
{
    size_t plen;
    const char *path = url_path(url, &plen);
    const char *sep = strstr(url, "://");
    const char *host = sep ? sep + 3 : url;
    size_t hlen = (size_t)(path - host);
    static const char vx[] = "aiplatform.googleapis.com";
    bool vertex_host = hlen >= sizeof vx - 1 && memmem(host, hlen, vx, sizeof vx - 1) != NULL;
    return vertex_host || path_has(path, plen, "/projects") || memmem(path, plen, "/projects/", 10);
}

static char *google_url(const struct lp_dialect_req *r)
{
    if (r->ep != LP_EP_CHAT && r->ep != LP_EP_MESSAGES)
        return NULL;
    const char *base = r->backend->url;
    size_t plen;
    const char *path = url_path(base, &plen);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_append(&b, base, (size_t)(path - base));
    /* the last "/models/" segment names the model when the URL already has one */
    const char *m = NULL;
    for (const char *p = path; (p = memmem(p, (size_t)(path + plen - p), "/models/", 8)); p++)
        m = p;
    if (m && m + 8 < path + plen) {
        const char *colon = memchr(m + 8, ':', (size_t)(path + plen - (m + 8)));
        lp_buf_append(&b, path, (size_t)((colon ? colon : path + plen) - path));
    } else {
        if (!r->model || !r->model[0]) {
            lp_buf_free(&b);
            return NULL;
        }
        size_t keep = m ? (size_t)(m - path) : plen;
        if (!m && keep >= 7 && !memcmp(path + keep - 7, "/models", 7))
            keep -= 7; /* ".../v1beta/models": the model goes after it */
        lp_buf_append(&b, path, keep);
        if (keep == 0)
            lp_buf_appends(&b, google_is_vertex(base) ? "/v1" : "/v1beta");
        else if (memmem(path, keep, "/locations/", 11) &&
                 !(keep >= 18 && !memcmp(path + keep - 18, "/publishers/google", 18)))
            lp_buf_appends(&b, "/publishers/google");
        lp_buf_appends(&b, "/models/");
        append_segment(&b, r->model);
    }
    lp_buf_appends(&b, r->stream ? ":streamGenerateContent" : ":generateContent");
    const char *bq = path[strcspn(path, "?#")] == '?' ? path + strcspn(path, "?#") + 1 : "";
    size_t bqlen = strcspn(bq, "#");
    if (r->stream || bqlen) {
        lp_buf_appendc(&b, '?');
        lp_buf_append(&b, bq, bqlen);
        if (r->stream)
            lp_buf_appends(&b, bqlen ? "&alt=sse" : "alt=sse");
    }
    return lp_buf_steal(&b, NULL);
}

static void google_auth(const struct lp_dialect_req *r, lp_dialect_hdr_fn add, void *ctx)
{
    const char *key = r->backend->api_key;
    if (!key || !key[0])
        return;
    if (google_is_vertex(r->backend->url))
        add(ctx, lp_xasprintf("Authorization: Bearer %s", key));
    else
        add(ctx, lp_xasprintf("x-goog-api-key: %s", key));
}

/* ---- the table ----------------------------------------------------------------------------- */

static const struct lp_dialect rows[LP_DIALECT__COUNT] = {
    [LP_DIALECT_OPENAI] = {LP_DIALECT_OPENAI, "openai", LP_PROTO_OPENAI, openai_url, openai_auth},
    [LP_DIALECT_ANTHROPIC] = {LP_DIALECT_ANTHROPIC, "anthropic", LP_PROTO_ANTHROPIC, anthropic_url,
                              anthropic_auth},
    [LP_DIALECT_AZURE] = {LP_DIALECT_AZURE, "azure", LP_PROTO_OPENAI, azure_url, azure_auth},
    [LP_DIALECT_COHERE] = {LP_DIALECT_COHERE, "cohere", LP_PROTO_OPENAI, cohere_url, openai_auth},
    [LP_DIALECT_GOOGLE] = {LP_DIALECT_GOOGLE, "google", LP_PROTO_GOOGLE, google_url, google_auth},
};

const struct lp_dialect *lp_dialect_get(enum lp_dialect_id id)
{
    if ((int)id < 0 || id >= LP_DIALECT__COUNT)
        return &rows[LP_DIALECT_OPENAI];
    return &rows[id];
}

enum lp_dialect_id lp_dialect_of_proto(enum lp_proto p)
{
    return p == LP_PROTO_ANTHROPIC ? LP_DIALECT_ANTHROPIC
           : p == LP_PROTO_GOOGLE  ? LP_DIALECT_GOOGLE
                                   : LP_DIALECT_OPENAI;
}

enum lp_dialect_id lp_dialect_of_route(const struct lp_backend *b, const struct lp_route *r)
{
    if (r && r->has_protocol && r->protocol != lp_dialect_get(b->dialect)->wire)
        return lp_dialect_of_proto(r->protocol);
    return b->dialect;
}

enum lp_endpoint lp_dialect_upstream_ep(enum lp_endpoint client_ep, enum lp_proto wire)
{
    if (client_ep == LP_EP_CHAT && wire == LP_PROTO_ANTHROPIC)
        return LP_EP_MESSAGES;
    if (client_ep == LP_EP_MESSAGES && wire == LP_PROTO_OPENAI)
        return LP_EP_CHAT;
    return client_ep;
}
