/* test_urljoin.c - upstream URL joining: a table of (base, path, query) -> URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "urljoin.h"

struct join_case {
    const char *base, *path, *query, *want;
};

static const struct join_case rows[] = {
    /* the usual OpenAI-style base with /v1 (reference example) */
    {"https://h/v1", "/v1/chat/completions", NULL, "https://h/v1/chat/completions"},
    {"https://h/v1", "/chat/completions", NULL, "https://h/v1/chat/completions"},
    {"https://h/v1/", "/v1/chat/completions", NULL, "https://h/v1/chat/completions"},
    {"https://h/v1//", "/v1/models", "", "https://h/v1/models"},
    {"https://api.x.com:8443/v1", "/v1/chat/completions", NULL,
     "https://api.x.com:8443/v1/chat/completions"},
    /* no path in the base */
    {"https://api.anthropic.com", "/v1/messages", NULL, "https://api.anthropic.com/v1/messages"},
    {"https://api.anthropic.com/", "/v1/messages", "beta=true",
     "https://api.anthropic.com/v1/messages?beta=true"},
    {"http://127.0.0.1:11434", "/v1/chat/completions", NULL,
     "http://127.0.0.1:11434/v1/chat/completions"},
    /* relay prefix bases that end in /v1 */
    {"https://relay.example/openai/v1", "/v1/chat/completions", NULL,
     "https://relay.example/openai/v1/chat/completions"},
    {"https://relay.example/api/v1", "/v1/messages", "beta=true",
     "https://relay.example/api/v1/messages?beta=true"},
    /* prefix paths without /v1 are prepended as-is */
    {"https://r.openai.azure.com/openai/deployments/x", "/v1/chat/completions", NULL,
     "https://r.openai.azure.com/openai/deployments/x/v1/chat/completions"},
    {"https://r.openai.azure.com/openai/deployments/x", "/chat/completions", NULL,
     "https://r.openai.azure.com/openai/deployments/x/chat/completions"},
    {"https://r.openai.azure.com/openai/deployments/x?api-version=2024-06-01", "/chat/completions",
     NULL,
     "https://r.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-06-01"},
    /* request path already carries the base path (segment-wise) */
    {"https://h/openai", "/openai/v1/chat/completions", NULL,
     "https://h/openai/v1/chat/completions"},
    {"https://h/open", "/openai/v1/x", NULL, "https://h/open/openai/v1/x"},
    {"https://h/v1", "/v1", NULL, "https://h/v1"},
    {"https://h/v1", "/v10/x", NULL, "https://h/v1/v10/x"},
    /* the full-endpoint base (deepseek example): used as-is */
    {"https://api.deepseek.com/chat/completions", "/v1/chat/completions", NULL,
     "https://api.deepseek.com/chat/completions"},
    {"https://api.deepseek.com/chat/completions", "/chat/completions", NULL,
     "https://api.deepseek.com/chat/completions"},
    {"https://h/v1/chat/completions", "/v1/chat/completions", NULL,
     "https://h/v1/chat/completions"},
    {"https://h/x/v1/chat/completions/", "/v1/chat/completions", "a=1",
     "https://h/x/v1/chat/completions?a=1"},
    {"https://h/foo/completions", "/v1/chat/completions", NULL,
     "https://h/foo/completions/v1/chat/completions"},
    {"https://h/mychat/completions", "/v1/chat/completions", NULL,
     "https://h/mychat/completions/v1/chat/completions"},
    /* queries: preserved, merged with '&' */
    {"https://h/v1", "/v1/messages", "beta=true", "https://h/v1/messages?beta=true"},
    {"https://h/v1?key=k", "/v1/messages", "beta=true", "https://h/v1/messages?key=k&beta=true"},
    {"https://h/v1?key=k", "/v1/messages", NULL, "https://h/v1/messages?key=k"},
    {"https://h?key=k", "/v1/messages", "", "https://h/v1/messages?key=k"},
    {"https://h/v1?", "/v1/m", "a=1", "https://h/v1/m?a=1"},
    {"https://h/v1#frag", "/v1/m", NULL, "https://h/v1/m"},
    {"https://h/v1?k=1#frag", "/v1/m", "b=2", "https://h/v1/m?k=1&b=2"},
    /* request path without a leading slash, or empty */
    {"https://h/v1", "chat/completions", NULL, "https://h/v1/chat/completions"},
    {"https://h", "", NULL, "https://h/"},
    {"https://h/v1", "/", NULL, "https://h/v1/"},
    {"https://h/v1", NULL, "q=1", "https://h/v1/?q=1"},
    /* base without a scheme never fails */
    {"h:80/v1", "/v1/x", NULL, "h:80/v1/x"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char *got = lp_urljoin(rows[i].base, rows[i].path, rows[i].query);
        assert_non_null(got);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("row %zu: %s + %s ? %s -> %s, want %s", i, rows[i].base,
                     rows[i].path ? rows[i].path : "(null)",
                     rows[i].query ? rows[i].query : "(null)", got, rows[i].want);
        free(got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
