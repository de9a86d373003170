/* endpoint.h - which LLM endpoint a request path names, decided once at intake (pure, no state).
 *
 * The upstream path of an attempt is never the client's raw path: it comes from the dialect
 * table (dialect.h) for the endpoint found here. A path that is not in the table is not
 * forwarded at all (404), unless the operator listed it in `passthrough_paths:`. That closes the
 * path-escape hole of the reference and of our own first version (`POST /v1/../../admin/x`
 * reaching the provider's host as `/admin/x` with the operator's key).
 *
 * The reference's paths without the /v1 prefix (/chat/completions, /completions, /embeddings,
 * /messages, /models) are aliases of their /v1 forms.
 */
#ifndef LP_ENDPOINT_H
#define LP_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol.h"

enum lp_endpoint {
    LP_EP_NONE = 0,          /* not an LLM endpoint (health, admin, unknown, ...) */
    LP_EP_CHAT,              /* /v1/chat/completions      OpenAI, translatable */
    LP_EP_MESSAGES,          /* /v1/messages              Anthropic, translatable */
    LP_EP_COUNT_TOKENS,      /* /v1/messages/count_tokens Anthropic */
    LP_EP_RESPONSES,         /* /v1/responses             OpenAI (Codex) */
    LP_EP_RESPONSES_COMPACT, /* /v1/responses/compact     OpenAI */
    LP_EP_COMPLETIONS,       /* /v1/completions           OpenAI (legacy) */
    LP_EP_EMBEDDINGS,        /* /v1/embeddings            OpenAI */
    LP_EP_MODERATIONS,       /* /v1/moderations           OpenAI */
    LP_EP_IMAGES,            /* /v1/images/generations    OpenAI */
    LP_EP_AUDIO_SPEECH,      /* /v1/audio/speech          OpenAI */
    LP_EP_PASSTHROUGH,       /* a path listed in passthrough_paths (same protocol only) */
    LP_EP_MODELS,            /* GET /v1/models: answered locally, never forwarded */
};
#define LP_EP__COUNT (LP_EP_MODELS + 1)

/* What is fixed about an endpoint. */
struct lp_endpoint_desc {
    enum lp_endpoint ep;
    const char *path;     /* canonical /v1 path; NULL for LP_EP_NONE and LP_EP_PASSTHROUGH */
    const char *name;     /* short label for logs and metrics: "chat", "messages", ... */
    enum lp_proto client; /* the protocol a client speaks on it */
    bool forwarded;       /* POST with a JSON body carrying `model`, sent upstream */
    bool translatable;    /* may be routed to a backend of the other protocol */
};

/* The description of ep (a static entry; LP_EP_NONE's for out-of-range values). */
const struct lp_endpoint_desc *lp_endpoint_desc(enum lp_endpoint ep);

/* Whether a raw request path (without the query) is safe to interpret at all. Refused, with a
 * static reason in *why: anything not starting with '/', dot-segments ("/./", "/../", a
 * trailing "/." or "/..") written raw or percent-encoded (%2e, any case), encoded slashes
 * (%2f), backslashes raw or encoded (%5c), encoded NUL or control bytes (%00-%1f, %7f), a
 * malformed percent escape, and raw control bytes. Empty segments ("//") are allowed here (they
 * simply match no endpoint). Returns true when safe. */
bool lp_endpoint_path_safe(const char *path, const char **why);

/* The endpoint a safe path names: the table above (with or without the /v1 prefix for the
 * reference's five paths), or LP_EP_PASSTHROUGH when the path equals one of the operator's
 * passthrough paths (exact, case-sensitive match), else LP_EP_NONE. Matching is exact: no
 * trailing slash, no case folding. */
enum lp_endpoint lp_endpoint_lookup(const char *path, const char *const *passthrough,
                                    size_t n_passthrough);

/* The client protocol implied by a path: Anthropic for /v1/messages and everything under it
 * (and the reference's /messages), else OpenAI. Used for error shapes even when the path is
 * unknown or unsafe, so that an Anthropic client always gets Anthropic-shaped errors. */
enum lp_proto lp_endpoint_client_proto(const char *path);

/* Whether a client query parameter named name[0..len) (raw, as sent; percent escapes are
 * decoded for the comparison) may be forwarded upstream on endpoint ep. Credential-like names
 * (key, api_key, access_token, token, secret, password, auth..., signature, ...) never pass.
 * Anthropic endpoints pass `beta`; passthrough paths pass every non-credential parameter;
 * every other endpoint passes none. */
bool lp_endpoint_query_param_allowed(enum lp_endpoint ep, const char *name, size_t len);

/* The client's raw query (without '?', may be NULL) reduced to the parameters ep may forward,
 * in their original order and spelling, as a heap string (NULL when nothing remains). */
char *lp_endpoint_filter_query(enum lp_endpoint ep, const char *query);

#endif
