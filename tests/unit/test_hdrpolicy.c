/* test_hdrpolicy.c - header forwarding rules in both directions and header validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hdrpolicy.h"

struct req_case {
    const char *name;
    bool to_openai, to_anthropic;
};

static const struct req_case req_rows[] = {
    /* hop-by-hop */
    {"Connection", false, false},
    {"keep-alive", false, false},
    {"Proxy-Authenticate", false, false},
    {"Proxy-Authorization", false, false},
    {"Proxy-Connection", false, false},
    {"TE", false, false},
    {"Trailer", false, false},
    {"Trailers", false, false},
    {"Transfer-Encoding", false, false},
    {"Upgrade", false, false},
    /* framing the proxy owns */
    {"Host", false, false},
    {"Content-Length", false, false},
    {"Expect", false, false},
    {"Accept-Encoding", false, false},
    {"Content-Encoding", false, false},
    /* credentials, any case */
    {"Authorization", false, false},
    {"AUTHORIZATION", false, false},
    {"x-api-key", false, false},
    {"X-Api-Key", false, false},
    {"api-key", false, false},
    {"x-goog-api-key", false, false},
    {"Cookie", false, false},
    /* set by the proxy */
    {"X-Forwarded-For", false, false},
    {"x-forwarded-host", false, false},
    {"X-Forwarded-Proto", false, false},
    {"X-Real-IP", false, false},
    {"Forwarded", false, false},
    {"X-Request-Id", false, false},
    {"x-request-id", false, false},
    /* protocol families */
    {"anthropic-version", false, true},
    {"Anthropic-Beta", false, true},
    {"anthropic-dangerous-direct-browser-access", false, true},
    {"OpenAI-Organization", true, false},
    {"openai-project", true, false},
    {"OpenAI-Beta", true, false},
    /* ordinary headers pass in both directions */
    {"Content-Type", true, true},
    {"Accept", true, true},
    {"User-Agent", true, true},
    {"Accept-Language", true, true},
    {"x-stainless-timeout", true, true},
    {"x-stainless-retry-count", true, true},
    {"x-app", true, true},
    {"x-claude-code-session-id", true, true},
    {"originator", true, true},
    {"session_id", true, true},
    {"x-client-request-id", true, true}, /* not the proxy's X-Request-Id */
    {"Cookie2", true, true},             /* exact names only, not prefixes */
    {"Hostname", true, true},
    {"Anthropic", true, true}, /* the family is "anthropic-*" */
    {"", false, false},
};

static void test_request_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof req_rows / sizeof req_rows[0]; i++) {
        const struct req_case *c = &req_rows[i];
        if (lp_hdr_forward_request(c->name, LP_PROTO_OPENAI) != c->to_openai ||
            lp_hdr_forward_request(c->name, LP_PROTO_ANTHROPIC) != c->to_anthropic)
            fail_msg("request header '%s'", c->name);
    }
    assert_false(lp_hdr_forward_request(NULL, LP_PROTO_OPENAI));
}

static void test_response_table(void **state)
{
    (void)state;
    const char *denied[] = {"Connection", "Keep-Alive",     "Proxy-Authenticate",
                            "TE",         "Trailer",        "Transfer-Encoding",
                            "Upgrade",    "content-length", "Content-Encoding",
                            "Set-Cookie", "set-cookie",     "X-Request-Id",
                            "Date",       "server",         ""};
    const char *allowed[] = {"Content-Type",
                             "Cache-Control",
                             "retry-after",
                             "x-ratelimit-remaining-requests",
                             "anthropic-ratelimit-tokens-limit",
                             "openai-processing-ms",
                             "request-id",
                             "x-should-retry",
                             "Vary"};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        if (lp_hdr_forward_response(denied[i]))
            fail_msg("response header '%s' forwarded", denied[i]);
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (!lp_hdr_forward_response(allowed[i]))
            fail_msg("response header '%s' dropped", allowed[i]);
    assert_false(lp_hdr_forward_response(NULL));
}

static void test_name_valid(void **state)
{
    (void)state;
    const char *good[] = {"Content-Type", "x-api-key", "a", "X_Y", "!#$%&'*+-.^_`|~09AZaz"};
    const char *bad[] = {"",      "has space", "colon:", "a\r\nb",    "tab\t",
                         "\"q\"", "(x)",       "a/b",    "n\xc3\xa9", "a@b",
                         "{x}",   "a,b",       "a;b",    "a=b",       "a\x7f"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!lp_hdr_name_valid(good[i]))
            fail_msg("valid name rejected: %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lp_hdr_name_valid(bad[i]))
            fail_msg("invalid name accepted: %s", bad[i]);
    assert_false(lp_hdr_name_valid(NULL));
}

static void test_value_valid(void **state)
{
    (void)state;
    const char *good[] = {"",           "Bearer sk-123", "a\tb", "caf\xc3\xa9", "{\"json\": [1]}",
                          "  spaces  ", "~!@#$%^&*()"};
    const char *bad[] = {"a\rb", "a\nb", "x\r\nInjected: 1", "\x01", "a\x1f", "del\x7f", "\x0b"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!lp_hdr_value_valid(good[i]))
            fail_msg("valid value rejected: %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lp_hdr_value_valid(bad[i]))
            fail_msg("invalid value accepted (row %zu)", i);
    assert_false(lp_hdr_value_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_response_table),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_value_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
