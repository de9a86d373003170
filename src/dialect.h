/* dialect.h - one table row per backend dialect: how a request is addressed and authenticated.
 *
 * The request core stays generic: for each attempt it asks the candidate's dialect for the
 * upstream URL (built from the backend's base URL and a path from the dialect's endpoint table,
 * never from the client's raw path) and for the credential and protocol-version headers. A
 * dialect that has no path for an endpoint cannot serve it, and the route is skipped.
 *
 * Pure: no state, no I/O. The rows are static and live for the whole process.
 */
#ifndef LP_DIALECT_H
#define LP_DIALECT_H

#include <stdbool.h>

#include "config.h"
#include "endpoint.h"
#include "protocol.h"

/* The Azure OpenAI `api-version` sent on deployment URLs when a backend sets no api_version:
 * the latest dated GA version of the Azure OpenAI data-plane inference API. */
#define LP_AZURE_API_VERSION "2024-10-21"

/* What a dialect needs to address one attempt. Every pointer is borrowed for the call. */
struct lp_dialect_req {
    const struct lp_backend *backend;
    enum lp_endpoint ep;          /* the endpoint called upstream (after translation) */
    const char *passthrough_path; /* the configured path, for LP_EP_PASSTHROUGH */
    const char *model;            /* the upstream model name */
    bool stream;                  /* the client asked for a stream */
    const char *query;            /* the client's query, already filtered (endpoint.h), or NULL */
    const char *client_version;   /* the client's anthropic-version to forward, or NULL */
};

/* Receives one "Name: value" header line; takes ownership of the heap string. */
typedef void (*lp_dialect_hdr_fn)(void *ctx, char *line);

struct lp_dialect {
    enum lp_dialect_id id;
    const char *name;   /* "openai", "anthropic", "azure", "cohere" */
    enum lp_proto wire; /* body format of requests, responses, streams and errors */
    /* The upstream URL for r as a heap string, or NULL when the dialect cannot serve r->ep. */
    char *(*url)(const struct lp_dialect_req *r);
    /* Append the backend's credential header (when it has a key) and the protocol-version
     * headers the dialect requires. */
    void (*auth_headers)(const struct lp_dialect_req *r, lp_dialect_hdr_fn add, void *ctx);
};

/* The row for id (the OpenAI row for an out-of-range id). */
const struct lp_dialect *lp_dialect_get(enum lp_dialect_id id);
/* The plain dialect of a wire protocol (OpenAI or Anthropic). */
enum lp_dialect_id lp_dialect_of_proto(enum lp_proto p);
/* The dialect a route uses: its backend's, unless the route overrides the protocol with a
 * different wire protocol, in which case the plain dialect of that protocol. */
enum lp_dialect_id lp_dialect_of_route(const struct lp_backend *b, const struct lp_route *r);

/* The endpoint to call upstream for a client endpoint when the backend speaks `wire`: the same
 * endpoint, except that a translated chat request goes to /v1/messages and a translated
 * messages request to /v1/chat/completions. */
enum lp_endpoint lp_dialect_upstream_ep(enum lp_endpoint client_ep, enum lp_proto wire);

#endif
