/* decide.c - the attempt loop's pure decision (see decide.h for the rules). */
#include "decide.h"

static struct lp_decide_out step(enum lp_next n)
{
    return (struct lp_decide_out){.next = n};
}

/* A failed attempt that may fail over (rule 10). */
static struct lp_decide_out after_failover(const struct lp_decide_in *in)
{
    bool time_ok = in->time_left_ms - in->backoff_ms >= LP_MIN_ATTEMPT_MS;
    bool more = in->cands_left > 0 && in->attempts_left > 0;
    if (in->others_in_flight > 0)
        return step(LP_NEXT_WAIT);
    if (more && time_ok) {
        if (in->backoff_ms > 0)
            return (struct lp_decide_out){.next = LP_NEXT_BACKOFF, .delay_ms = in->backoff_ms};
        return step(LP_NEXT_TRY_NEXT);
    }
    return (struct lp_decide_out){.next = LP_NEXT_ALL_FAILED, .deadline_hit = more && !time_ok};
}

struct lp_decide_out lp_decide(const struct lp_decide_in *in)
{
    if (in->client_gone)
        return step(LP_NEXT_FINISH);
    if (in->outcome == LP_OUT_CANCELLED)
        return step(in->others_in_flight > 0 ? LP_NEXT_WAIT : LP_NEXT_FINISH);
    bool committed = in->phase == LP_PHASE_COMMITTED || in->phase == LP_PHASE_DONE;
    if (committed && !in->is_winner)
        return step(LP_NEXT_CANCEL);
    switch (in->outcome) {
    case LP_OUT_READY:
    case LP_OUT_COMPLETE:
        return step(LP_NEXT_COMMIT);
    case LP_OUT_STREAM_END:
        return step(LP_NEXT_END_STREAM);
    case LP_OUT_DEADLINE:
        return step(committed ? LP_NEXT_END_STREAM : LP_NEXT_DEADLINE);
    case LP_OUT_LOCAL:
        return step(in->others_in_flight > 0 ? LP_NEXT_WAIT : LP_NEXT_REPLY_LOCAL);
    case LP_OUT_REFUSED:
        return step(LP_NEXT_REPLY_REFUSED);
    case LP_OUT_FAILED:
        return in->failover ? after_failover(in) : step(LP_NEXT_REPLY_ERROR);
    case LP_OUT_CANCELLED:
        break; /* handled above */
    }
    return step(LP_NEXT_FINISH);
}

const char *lp_next_name(enum lp_next n)
{
    switch (n) {
    case LP_NEXT_COMMIT:
        return "commit";
    case LP_NEXT_CANCEL:
        return "cancel";
    case LP_NEXT_TRY_NEXT:
        return "try_next";
    case LP_NEXT_BACKOFF:
        return "backoff";
    case LP_NEXT_WAIT:
        return "wait";
    case LP_NEXT_REPLY_ERROR:
        return "reply_error";
    case LP_NEXT_REPLY_REFUSED:
        return "reply_refused";
    case LP_NEXT_REPLY_LOCAL:
        return "reply_local";
    case LP_NEXT_ALL_FAILED:
        return "all_failed";
    case LP_NEXT_DEADLINE:
        return "deadline";
    case LP_NEXT_END_STREAM:
        return "end_stream";
    case LP_NEXT_FINISH:
        return "finish";
    }
    return "?";
}
