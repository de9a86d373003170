/* decide.h - the attempt loop's decision, as a pure function.
 *
 * Every outcome of an attempt (attempt.h) goes through lp_decide() together with where the
 * request stands (its phase, what is left of the plan and of the deadline, the other attempts in
 * flight) and comes back as one next step. forward.c then does exactly that step. No I/O, no
 * clock, no randomness: the backoff delay is computed by the caller and passed in.
 *
 * Rules, in order:
 *  1. The client is gone: FINISH (every attempt is cancelled, nothing is said).
 *  2. CANCELLED: WAIT while another attempt is in flight, else FINISH.
 *  3. The request is COMMITTED or DONE and this is not the committed attempt (a hedge that lost
 *     the race): CANCEL it.
 *  4. READY / COMPLETE: COMMIT.
 *  5. STREAM_END (only the committed attempt): END_STREAM.
 *  6. DEADLINE: END_STREAM when committed, else DEADLINE (504; nobody is blamed).
 *  7. LOCAL: WAIT while another attempt is in flight, else REPLY_LOCAL (503, nobody blamed).
 *  8. REFUSED: REPLY_REFUSED (the client's own request cannot be translated; no failover).
 *  9. FAILED without failover (a request-shape error): REPLY_ERROR at once (the request itself
 *     is wrong; other attempts would say the same).
 * 10. FAILED with failover: if a candidate and an attempt are left and at least
 *     LP_MIN_ATTEMPT_MS of the deadline remains after the backoff: another attempt in flight ->
 *     WAIT; backoff_ms > 0 -> BACKOFF; else TRY_NEXT. Otherwise (nothing left or no time left):
 *     WAIT while another attempt is in flight, else ALL_FAILED (deadline_hit when it was time).
 */
#ifndef LP_DECIDE_H
#define LP_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attempt.h"
#include "request.h"

/* Don't start an attempt with less than this much of the request's deadline left. */
#define LP_MIN_ATTEMPT_MS 100

struct lp_decide_in {
    enum lp_phase phase; /* the request's phase when the outcome arrives */
    enum lp_outcome_kind outcome;
    bool failover;  /* FAILED: the classifier's decision */
    bool is_winner; /* this attempt is the committed one */
    bool client_gone;
    int others_in_flight; /* other attempts of the request still running */
    size_t cands_left;    /* candidates not tried yet */
    int attempts_left;    /* under max_retries (a large number when uncapped) */
    int64_t time_left_ms; /* until the request's deadline */
    int64_t backoff_ms;   /* the wait before the next attempt (0: none) */
};

enum lp_next {
    LP_NEXT_COMMIT = 1,    /* this attempt wins: cancel the others; answer / start relaying */
    LP_NEXT_CANCEL,        /* this attempt lost to the committed one: drop it, blame nobody */
    LP_NEXT_TRY_NEXT,      /* start the next candidate now */
    LP_NEXT_BACKOFF,       /* wait delay_ms on the request timer, then the next candidate */
    LP_NEXT_WAIT,          /* another attempt is in flight: its outcome decides */
    LP_NEXT_REPLY_ERROR,   /* answer with this attempt's error */
    LP_NEXT_REPLY_REFUSED, /* answer with the translation's refusal */
    LP_NEXT_REPLY_LOCAL,   /* 503, local resources */
    LP_NEXT_ALL_FAILED,    /* nothing left: the aggregate error */
    LP_NEXT_DEADLINE,      /* 504 before commit */
    LP_NEXT_END_STREAM,    /* the committed stream ends (cleanly or with an error event) */
    LP_NEXT_FINISH,        /* the client is gone: finish quietly */
};

struct lp_decide_out {
    enum lp_next next;
    int64_t delay_ms;  /* BACKOFF */
    bool deadline_hit; /* ALL_FAILED because no time was left */
};

/* The next step for one outcome (rules above). Pure. */
struct lp_decide_out lp_decide(const struct lp_decide_in *in);

/* Static name of a step, for logs and tests ("commit", "try_next", ...). */
const char *lp_next_name(enum lp_next n);

#endif
