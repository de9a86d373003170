/* proxy.h - one client request's life: intake, plan, attempts, commit, relay, finish.
 *
 * The edge hands every complete request to lp_proxy_handle on the worker's loop thread. From
 * there the request is owned by this module until it is ended on the edge; every resource it
 * holds (config reference, upstream transfer, timer, buffers) is released in one place,
 * finish().
 */
#ifndef LP_PROXY_H
#define LP_PROXY_H

#include <stdbool.h>

#include "config.h"

struct lp_worker;
struct lp_edge_req;

/* Entry point for a complete request from the edge (the edge's on_request callback). */
void lp_proxy_handle(struct lp_worker *w, struct lp_edge_req *er);
/* The head of a request arrived (the edge's on_head callback), before any body byte is read.
 * An LLM request (/v1/..., or /chat/completions, /completions, /embeddings, /messages, /models
 * and their sub-paths) without the proxy key, or an /admin request without the admin key (the
 * proxy key when no admin key is set), is answered 401 at once, exactly as dispatch() would
 * (client's protocol shape, request id, access line); the edge then closes without reading the
 * body. Everything else returns without answering: the body is read and lp_proxy_handle runs. */
void lp_proxy_head(struct lp_worker *w, struct lp_edge_req *er);
/* The edge refused a request (400, 408, 413, 431, 503 with Retry-After, ...): answer in the
 * client's protocol shape. */
void lp_proxy_reject(struct lp_worker *w, struct lp_edge_req *er, int status, const char *reason);

/* The client protocol implied by a request path: Anthropic for /v1/messages*, else OpenAI. */
enum lp_proto lp_proxy_path_protocol(const char *path);

#endif
