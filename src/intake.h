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
/* The edge refused a request (413, 431, 400, 408): answer in the client's protocol shape. */
void lp_intake_reject(struct lp_worker *w, struct lp_edge_req *er, int status, const char *reason);

#endif
