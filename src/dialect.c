/* dialect.c - the dialect rows (see dialect.h). */
#include "dialect.h"

#include <string.h>

#include "urljoin.h"
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
    case LP_EP_AUDIO_SPEECH: return lp_endpoint_desc(r->ep)->path;
    case LP_EP_PASSTHROUGH: return r->passthrough_path;
    default: return NULL;
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
    case LP_EP_COUNT_TOKENS: return lp_endpoint_desc(r->ep)->path;
    case LP_EP_PASSTHROUGH: return r->passthrough_path;
    default: return NULL;
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

/* ---- the table ----------------------------------------------------------------------------- */

static const struct lp_dialect rows[LP_DIALECT__COUNT] = {
    [LP_DIALECT_OPENAI] = {LP_DIALECT_OPENAI, "openai", LP_PROTO_OPENAI, openai_url, openai_auth},
    [LP_DIALECT_ANTHROPIC] = {LP_DIALECT_ANTHROPIC, "anthropic", LP_PROTO_ANTHROPIC, anthropic_url,
                              anthropic_auth},
};

const struct lp_dialect *lp_dialect_get(enum lp_dialect_id id)
{
    if ((int)id < 0 || id >= LP_DIALECT__COUNT)
        return &rows[LP_DIALECT_OPENAI];
    return &rows[id];
}

enum lp_dialect_id lp_dialect_of_proto(enum lp_proto p)
{
    return p == LP_PROTO_ANTHROPIC ? LP_DIALECT_ANTHROPIC : LP_DIALECT_OPENAI;
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
