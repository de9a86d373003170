/* test_paramfix.c - per-backend parameter fixes (paramfix.h): max_tokens_param and
 * drop_params, and that an untouched body is never re-serialised. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "paramfix.h"

static void expect(const struct lp_backend *b, const char *in, const char *want)
{
    size_t n = 0;
    char *got = lp_paramfix_apply(b, in, strlen(in), &n);
    if (!want) {
        if (got)
            fail_msg("%s: got %s, want no change", in, got);
        return;
    }
    if (!got || strcmp(got, want) != 0)
        fail_msg("%s: got %s, want %s", in, got ? got : "(no change)", want);
    assert_int_equal(n, strlen(want));
    free(got);
}

static void test_max_tokens_param(void **state)
{
    (void)state;
    struct lp_backend b = {.name = "b", .max_tokens_param = "max_completion_tokens"};
    assert_true(lp_paramfix_wanted(&b));
    expect(&b, "{\"model\":\"o3\",\"max_tokens\":100}",
           "{\"model\":\"o3\",\"max_completion_tokens\":100}");
    expect(&b, "{\"model\":\"o3\",\"max_completion_tokens\":7}", NULL); /* already right */
    expect(&b, "{\"model\":\"o3\",\"max_completion_tokens\":7,\"max_tokens\":9}",
           "{\"model\":\"o3\",\"max_completion_tokens\":7}");
    b.max_tokens_param = "max_tokens";
    expect(&b, "{\"model\":\"m\",\"max_completion_tokens\":5}",
           "{\"model\":\"m\",\"max_tokens\":5}");
    expect(&b, "{\"model\":\"m\"}", NULL);
    expect(&b, "not json", NULL);
    expect(&b, "[1]", NULL);
}

static void test_drop_params(void **state)
{
    (void)state;
    char *drop[] = {"logprobs", "parallel_tool_calls"};
    struct lp_backend b = {.name = "b", .drop_params = drop, .n_drop_params = 2};
    assert_true(lp_paramfix_wanted(&b));
    expect(&b, "{\"model\":\"m\",\"logprobs\":true,\"x\":1,\"parallel_tool_calls\":false}",
           "{\"model\":\"m\",\"x\":1}");
    /* a body without those members is sent byte for byte (even with odd spacing) */
    expect(&b, "{ \"model\" : \"m\" }", NULL);
    struct lp_backend none = {.name = "n"};
    assert_false(lp_paramfix_wanted(&none));
    expect(&none, "{\"model\":\"m\",\"max_tokens\":1}", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_tokens_param),
        cmocka_unit_test(test_drop_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
