/* attempt.h - upstream attempts of one request: plan, start, classify, fail over, commit, relay.
 *
 * lp_attempt_begin takes a request whose intake is done (auth, body scan, alias found) and
 * drives it to an answer: it plans the candidates, runs attempts one at a time with backoff
 * timers between them, holds a stream's response head until the first SSE event has been
 * classified, and after that relays events under backpressure. It calls lp_request_finish when
 * the request is over.
 */
#ifndef LP_ATTEMPT_H
#define LP_ATTEMPT_H

struct lp_request;

void lp_attempt_begin(struct lp_request *req);
/* Cancel the running transfer and timer and free attempt-owned memory. Idempotent. */
void lp_attempt_teardown(struct lp_request *req);

#endif
