/* test_attempt.c - the attempt loop's decisions (decide.c), request phases (request.c) and the
 * class table clients see (apierr.c), as tables.
 *
 * The decision table is checked against an independent statement of the rules: every error class
 * x request phase x candidates left x deadline state x other attempts in flight, plus the
 * outcomes that carry no class. The "200 with an error" case (an in-band error with no route
 * left) is checked end to end of this seam: ALL_FAILED, and a non-2xx status in both protocols.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "apierr.h"
#include "classify.h"
#include "decide.h"
#include "request.h"

/* ---- the rules, restated independently ------------------------------------------------------ */

static enum lp_next expected(const struct lp_decide_in *in, int64_t *delay, bool *dl)
{
    *delay = 0;
    *dl = false;
    if (in->client_gone)
        return LP_NEXT_FINISH;
    if (in->outcome == LP_OUT_CANCELLED)
        return in->others_in_flight ? LP_NEXT_WAIT : LP_NEXT_FINISH;
    bool committed = in->phase == LP_PHASE_COMMITTED || in->phase == LP_PHASE_DONE;
    if (committed && !in->is_winner)
        return LP_NEXT_CANCEL;
    switch (in->outcome) {
    case LP_OUT_READY:
    case LP_OUT_COMPLETE:
        return LP_NEXT_COMMIT;
    case LP_OUT_STREAM_END:
        return LP_NEXT_END_STREAM;
    case LP_OUT_DEADLINE:
        return committed ? LP_NEXT_END_STREAM : LP_NEXT_DEADLINE;
    case LP_OUT_LOCAL:
        return in->others_in_flight ? LP_NEXT_WAIT : LP_NEXT_REPLY_LOCAL;
    case LP_OUT_REFUSED:
        return LP_NEXT_REPLY_REFUSED;
    default:
        break;
    }
    if (!in->failover)
        return LP_NEXT_REPLY_ERROR;
    if (in->others_in_flight)
        return LP_NEXT_WAIT;
    bool more = in->cands_left > 0 && in->attempts_left > 0;
    bool time = in->time_left_ms - in->backoff_ms >= LP_MIN_ATTEMPT_MS;
    if (more && time) {
        *delay = in->backoff_ms;
        return in->backoff_ms > 0 ? LP_NEXT_BACKOFF : LP_NEXT_TRY_NEXT;
    }
    *dl = more && !time;
    return LP_NEXT_ALL_FAILED;
}

static void check(const struct lp_decide_in *in, const char *what)
{
    int64_t delay;
    bool dl;
    enum lp_next want = expected(in, &delay, &dl);
    struct lp_decide_out got = lp_decide(in);
    if (got.next != want || got.delay_ms != delay || got.deadline_hit != dl)
        fail_msg("%s: phase=%s outcome=%d failover=%d cands=%zu att=%d time=%lld backoff=%lld "
                 "others=%d winner=%d gone=%d: got %s/%lld/%d, want %s/%lld/%d",
                 what, lp_phase_name(in->phase), (int)in->outcome, in->failover, in->cands_left,
                 in->attempts_left, (long long)in->time_left_ms, (long long)in->backoff_ms,
                 in->others_in_flight, in->is_winner, in->client_gone, lp_next_name(got.next),
                 (long long)got.delay_ms, got.deadline_hit, lp_next_name(want), (long long)delay,
                 dl);
}

static const enum lp_phase phases[] = {LP_PHASE_ATTEMPTING, LP_PHASE_BACKOFF, LP_PHASE_COMMITTED,
                                       LP_PHASE_DONE};

/* Every error class (through its default failover decision) x phase x plan and deadline state. */
static void test_failed_outcomes_every_class(void **state)
{
    (void)state;
    const size_t cands[] = {0, 1, 5};
    const int atts[] = {0, 1, 1 << 20};
    const int64_t times[] = {0, 99, 100, 150, 600000};
    const int64_t backoffs[] = {0, 100};
    size_t n = 0;
    for (int cls = LP_CLASS_NETWORK; cls < LP_CLASS__COUNT; cls++)
        for (size_t p = 0; p < sizeof phases / sizeof *phases; p++)
            for (size_t c = 0; c < 3; c++)
                for (size_t a = 0; a < 3; a++)
                    for (size_t t = 0; t < 5; t++)
                        for (size_t b = 0; b < 2; b++)
                            for (int others = 0; others <= 1; others++)
                                for (int winner = 0; winner <= 1; winner++) {
                                    struct lp_decide_in in = {
                                        .phase = phases[p],
                                        .outcome = LP_OUT_FAILED,
                                        .failover = lp_class_fails_over((enum lp_err_class)cls),
                                        .is_winner = winner,
                                        .others_in_flight = others,
                                        .cands_left = cands[c],
                                        .attempts_left = atts[a],
                                        .time_left_ms = times[t],
                                        .backoff_ms = backoffs[b],
                                    };
                                    check(&in, lp_class_name((enum lp_err_class)cls));
                                    n++;
                                }
    assert_true(n > 10000);
}

/* The outcomes that carry no class, in every phase, with and without other attempts. */
static void test_other_outcomes(void **state)
{
    (void)state;
    const enum lp_outcome_kind kinds[] = {LP_OUT_READY,    LP_OUT_COMPLETE, LP_OUT_REFUSED,
                                          LP_OUT_LOCAL,    LP_OUT_DEADLINE, LP_OUT_STREAM_END,
                                          LP_OUT_CANCELLED};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (size_t p = 0; p < sizeof phases / sizeof *phases; p++)
            for (int others = 0; others <= 1; others++)
                for (int winner = 0; winner <= 1; winner++)
                    for (int gone = 0; gone <= 1; gone++) {
                        struct lp_decide_in in = {.phase = phases[p],
                                                  .outcome = kinds[k],
                                                  .is_winner = winner,
                                                  .client_gone = gone,
                                                  .others_in_flight = others,
                                                  .cands_left = 2,
                                                  .attempts_left = 2,
                                                  .time_left_ms = 5000};
                        check(&in, "other");
                    }
}

/* Spot checks written out, so a reader sees the rules at work. */
static void test_named_cases(void **state)
{
    (void)state;
    struct lp_decide_in in = {.phase = LP_PHASE_ATTEMPTING,
                              .outcome = LP_OUT_FAILED,
                              .failover = true,
                              .cands_left = 1,
                              .attempts_left = 5,
                              .time_left_ms = 60000};
    assert_int_equal(lp_decide(&in).next, LP_NEXT_TRY_NEXT);
    in.backoff_ms = 200;
    struct lp_decide_out o = lp_decide(&in);
    assert_int_equal(o.next, LP_NEXT_BACKOFF);
    assert_int_equal(o.delay_ms, 200);
    /* The backoff would leave less than LP_MIN_ATTEMPT_MS: answer now, as a deadline. */
    in.time_left_ms = 250;
    o = lp_decide(&in);
    assert_int_equal(o.next, LP_NEXT_ALL_FAILED);
    assert_true(o.deadline_hit);
    /* Nothing left: the aggregate error, not a deadline. */
    in = (struct lp_decide_in){.phase = LP_PHASE_ATTEMPTING,
                               .outcome = LP_OUT_FAILED,
                               .failover = true,
                               .time_left_ms = 60000};
    o = lp_decide(&in);
    assert_int_equal(o.next, LP_NEXT_ALL_FAILED);
    assert_false(o.deadline_hit);
    /* A hedge in flight: its outcome decides. */
    in.others_in_flight = 1;
    assert_int_equal(lp_decide(&in).next, LP_NEXT_WAIT);
    /* The hedge that lost after the winner committed. */
    in = (struct lp_decide_in){.phase = LP_PHASE_COMMITTED, .outcome = LP_OUT_READY};
    assert_int_equal(lp_decide(&in).next, LP_NEXT_CANCEL);
    in.is_winner = true;
    in.outcome = LP_OUT_STREAM_END;
    assert_int_equal(lp_decide(&in).next, LP_NEXT_END_STREAM);
    in.outcome = LP_OUT_DEADLINE;
    assert_int_equal(lp_decide(&in).next, LP_NEXT_END_STREAM);
    /* A request-shape error is the client's: answered at once, others or not. */
    in = (struct lp_decide_in){.phase = LP_PHASE_ATTEMPTING,
                               .outcome = LP_OUT_FAILED,
                               .failover = false,
                               .cands_left = 3,
                               .attempts_left = 3,
                               .others_in_flight = 1,
                               .time_left_ms = 60000};
    assert_int_equal(lp_decide(&in).next, LP_NEXT_REPLY_ERROR);
    assert_string_equal(lp_next_name(LP_NEXT_ALL_FAILED), "all_failed");
}

/* The 200-with-error case: an in-band error (status 200) of a failover class with no route
 * left ends in ALL_FAILED, and the client's status is the class's, never a 2xx. */
static void test_in_band_error_never_2xx(void **state)
{
    (void)state;
    struct lp_decide_in in = {.phase = LP_PHASE_ATTEMPTING,
                              .outcome = LP_OUT_FAILED,
                              .failover = true,
                              .time_left_ms = 60000};
    assert_int_equal(lp_decide(&in).next, LP_NEXT_ALL_FAILED);
    for (int cls = LP_CLASS_OK; cls < LP_CLASS__COUNT; cls++) {
        for (int p = 0; p < 2; p++) {
            struct lp_class_reply r =
                lp_apierr_for_class((enum lp_proto)p, (enum lp_err_class)cls, 200);
            if (r.status < 400 || r.status > 599)
                fail_msg("class %s to %s: status %d", lp_class_name((enum lp_err_class)cls),
                         p ? "anthropic" : "openai", r.status);
            assert_non_null(r.type);
        }
    }
}

/* The table clients see (docs/operations.md "Error statuses and types"). */
static void test_class_table(void **state)
{
    (void)state;
    struct {
        enum lp_err_class cls;
        int up;
        int oa_status;
        const char *oa_type, *oa_code;
        int an_status;
        const char *an_type;
    } rows[] = {
        {LP_CLASS_RATE_LIMIT, 429, 429, "rate_limit_error", "rate_limit_exceeded", 429,
         "rate_limit_error"},
        {LP_CLASS_QUOTA, 429, 429, "insufficient_quota", "insufficient_quota", 402,
         "billing_error"},
        {LP_CLASS_AUTH, 401, 401, "invalid_request_error", "invalid_api_key", 401,
         "authentication_error"},
        {LP_CLASS_AUTH, 403, 403, "permission_error", "invalid_api_key", 403, "permission_error"},
        {LP_CLASS_OVERLOADED, 529, 503, "server_error", "overloaded", 529, "overloaded_error"},
        {LP_CLASS_SERVER, 500, 500, "server_error", NULL, 500, "api_error"},
        {LP_CLASS_SERVER, 200, 502, "server_error", NULL, 502, "api_error"},
        {LP_CLASS_NETWORK, 0, 502, "server_error", "upstream_unreachable", 502, "api_error"},
        {LP_CLASS_TIMEOUT, 0, 504, "timeout_error", "upstream_timeout", 504, "timeout_error"},
        {LP_CLASS_CONTEXT_LENGTH, 200, 400, "invalid_request_error", "context_length_exceeded", 400,
         "invalid_request_error"},
        {LP_CLASS_MODEL_NOT_FOUND, 404, 404, "invalid_request_error", "model_not_found", 404,
         "not_found_error"},
        {LP_CLASS_CLIENT, 422, 422, "invalid_request_error", NULL, 422, "invalid_request_error"},
        {LP_CLASS_CLIENT, 200, 400, "invalid_request_error", NULL, 400, "invalid_request_error"},
        {LP_CLASS_UNSUPPORTED, 404, 404, "invalid_request_error", "unsupported_endpoint", 404,
         "not_found_error"},
        {LP_CLASS_LOCAL, 0, 503, "server_error", "local_resource_exhausted", 503,
         "overloaded_error"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        struct lp_class_reply o = lp_apierr_for_class(LP_PROTO_OPENAI, rows[i].cls, rows[i].up);
        struct lp_class_reply a = lp_apierr_for_class(LP_PROTO_ANTHROPIC, rows[i].cls, rows[i].up);
        if (o.status != rows[i].oa_status || strcmp(o.type, rows[i].oa_type) != 0 ||
            (rows[i].oa_code ? !o.code || strcmp(o.code, rows[i].oa_code) != 0 : o.code != NULL))
            fail_msg("openai row %zu (%s): %d %s %s", i, lp_class_name(rows[i].cls), o.status,
                     o.type, o.code ? o.code : "null");
        if (a.status != rows[i].an_status || strcmp(a.type, rows[i].an_type) != 0 || a.code)
            fail_msg("anthropic row %zu (%s): %d %s", i, lp_class_name(rows[i].cls), a.status,
                     a.type);
    }
}

static void test_phase_transitions(void **state)
{
    (void)state;
    const enum lp_phase I = LP_PHASE_INTAKE, W = LP_PHASE_WAITING, P = LP_PHASE_PLANNING,
                        A = LP_PHASE_ATTEMPTING, B = LP_PHASE_BACKOFF, C = LP_PHASE_COMMITTED,
                        D = LP_PHASE_DONE;
    const enum lp_phase ok[][2] = {{I, W}, {I, P}, {I, D}, {W, P}, {W, D}, {P, A}, {P, D},
                                   {A, B}, {A, C}, {A, D}, {B, A}, {B, D}, {C, D}, {A, A},
                                   {D, D}, {P, W}, {A, W}, {W, A}, {W, W}};
    const enum lp_phase bad[][2] = {{I, A}, {I, C}, {P, C}, {B, C}, {C, A}, {C, B}, {D, A},
                                    {D, I}, {A, P}, {W, C}, {W, B}, {C, W}, {B, W}};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!lp_phase_transition_ok(ok[i][0], ok[i][1]))
            fail_msg("%s -> %s refused", lp_phase_name(ok[i][0]), lp_phase_name(ok[i][1]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (lp_phase_transition_ok(bad[i][0], bad[i][1]))
            fail_msg("%s -> %s allowed", lp_phase_name(bad[i][0]), lp_phase_name(bad[i][1]));
    assert_false(lp_phase_transition_ok((enum lp_phase)99, D));
    assert_string_equal(lp_phase_name(C), "committed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failed_outcomes_every_class),
        cmocka_unit_test(test_other_outcomes),
        cmocka_unit_test(test_named_cases),
        cmocka_unit_test(test_in_band_error_never_2xx),
        cmocka_unit_test(test_class_table),
        cmocka_unit_test(test_phase_transitions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
