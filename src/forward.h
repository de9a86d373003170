/* forward.h - the attempt loop: plan, attempts, the commit point, failover, backoff, the end.
 *
 * Takes an LLM request whose intake is done (alias known, body scanned) and owns it until it is
 * finished: every outcome of every attempt goes through one function, conclude(), which records
 * the attempt, reports its health ticket exactly once, asks the pure lp_decide() for the next
 * step and does it. The request is finished from one place (end_request()).
 *
 * Hooks it installs on the request: on_teardown (cancel attempts, stop the timer, free records)
 * and on_shutdown (the drain deadline: a committed stream ends with an error event, a request
 * still attempting gets 503).
 */
#ifndef LP_FORWARD_H
#define LP_FORWARD_H

struct lp_request;

/* Start forwarding req (phase INTAKE or WAITING): plan the candidates, start the first attempt.
 * From here on req belongs to this module until it is finished. */
void lp_forward_begin(struct lp_request *req);

/* The client went away (edge close callback): cancel every attempt (no one is blamed), end a
 * committed stream as client_gone, finish the request. */
void lp_forward_client_gone(struct lp_request *req);

#endif
