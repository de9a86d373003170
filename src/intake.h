/* intake.h - the start of every request: dispatch, authentication, body scan, alias lookup.
 *
 * The edge hands every complete request to lp_intake_handle on the worker's loop thread. Bad
 * input ends here with an error in the client's protocol (OpenAI or Anthropic shape, by path).
 */
#ifndef LP_INTAKE_H
#define LP_INTAKE_H

struct lp_worker;
struct lp_edge_req;

/* Entry point for a complete request from the edge (the edge's on_request callback). */
void lp_intake_handle(struct lp_worker *w, struct lp_edge_req *er);
/* The head of a request arrived (the edge's on_head callback), before any body byte is read.
 * An LLM request (/v1/..., or /chat/completions, /completions, /embeddings, /messages, /models
 * and their sub-paths) without the proxy key, or an /admin request without the admin key (the
 * proxy key when no admin key is set), is answered 401 at once, and a path with dot-segments,
 * encoded slashes or backslashes 400, exactly as dispatch() would (client's protocol shape,
 * request id, access line); the edge then closes without reading the body. Everything else
 * returns without answering: the body is read and lp_intake_handle runs. */
void lp_intake_head(struct lp_worker *w, struct lp_edge_req *er);
/* The edge refused a request (400, 408, 413, 431, 503 with Retry-After, ...): answer in the
 * client's protocol shape. */
void lp_intake_reject(struct lp_worker *w, struct lp_edge_req *er, int status, const char *reason);

#endif
