/* test_mask.c - secret masking: a table of inputs and exact outputs, registered secrets, and
 * bounded behaviour on hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mask.h"

struct mask_case {
    const char *in;
    const char *want;
};

/* Each row: input -> exact expected output. */
static const struct mask_case cases[] = {
    /* The reference README examples (seed-system.md 4.14). */
    {"sk-abc1234567890defghijkl", "sk-a****ijkl"},
    {"Bearer sk-test1234567890", "Bearer sk-t****7890"},
    {"Authorization: Bearer sk-key1234567890", "Authorization: Bearer sk-k****7890"},
    /* sk- keys inside text, Anthropic and project keys with '-' and '_'. */
    {"key is sk-abc1234567890defghijkl here", "key is sk-a****ijkl here"},
    {"sk-ant-api03-AbC_dEf-1234567890xyzWVU-QQ", "sk-a****U-QQ"},
    {"x sk-proj-abcdefghij_klmnopqrstu9 y", "x sk-p****stu9 y"},
    {"SK-ABCDEFGHIJKLMNOPQRSTUV", "SK-A****STUV"},
    /* too short to be a key: untouched */
    {"sk-short123", "sk-short123"},
    /* URL credentials */
    {"export to http://collector:Zq7s3cretOtlpPassw0rd@127.0.0.1:4318 refused",
     "export to http://collector:Zq7s****w0rd@127.0.0.1:4318 refused"},
    {"redis://:pw@h:6379/0", "redis://:****@h:6379/0"},
    {"https://tok@example.com/v1", "https://****@example.com/v1"},
    {"https://user:@h/x", "https://user:@h/x"},
    {"see https://example.com/a@b and \"k\":1", "see https://example.com/a@b and \"k\":1"},
    {"task-list done", "task-list done"},
    /* Bearer: any token length; short tokens fully hidden */
    {"bearer abc", "bearer ****"},
    {"Authorization: Bearer abc.def", "Authorization: Bearer ****"},
    {"authorization=Basic dXNlcjpwYXNzd29yZGxvbmdlcg==", "authorization=Basic dXNl****cg=="},
    {"Authorization: rawtoken12345", "Authorization: ****"},
    /* header lines */
    {"x-api-key: sk-ant-api03-abcdefghijklmnop", "x-api-key: sk-a****mnop"},
    {"X-Api-Key: shortkey\r\nHost: a", "X-Api-Key: ****\r\nHost: a"},
    {"api-key=abc123", "api-key=****"},
    {"apikey: 0123456789abcdefXYZ", "apikey: 0123****fXYZ"},
    /* JSON members, values with spaces masked whole, empty values left alone */
    {"{\"api_key\":\"my secret value here!!\"}", "{\"api_key\":\"my s****re!!\"}"},
    {"{\"proxy_api_key\": \"pk-1\", \"n\": 1}", "{\"proxy_api_key\": \"****\", \"n\": 1}"},
    {"{\"admin_api_key\":\"adm-0123456789abcdef\"}", "{\"admin_api_key\":\"adm-****cdef\"}"},
    {"{\"authorization\":\"Bearer tok-0123456789abcdef\"}",
     "{\"authorization\":\"Bearer tok-****cdef\"}"},
    {"{\"api_key\":\"\",\"x\":1}", "{\"api_key\":\"\",\"x\":1}"},
    {"{\"password\": \"hunter2\", \"token\":\"t0k\"}",
     "{\"password\": \"****\", \"token\":\"****\"}"},
    {"{\"access_token\":\"a.b.c\"}", "{\"access_token\":\"****\"}"},
    {"{\"max_tokens\":100,\"tokens\":\"x\"}", "{\"max_tokens\":100,\"tokens\":\"x\"}"},
    /* JSON inside a JSON string (escaped quotes) */
    {"\"{\\\"api_key\\\":\\\"abc\\\"}\"", "\"{\\\"api_key\\\":\\\"****\\\"}\""},
    /* query strings */
    {"GET /v1/x?key=AIzaSyD-0123456789abcdef HTTP/1.1", "GET /v1/x?key=AIza****cdef HTTP/1.1"},
    {"/p?a=1&api_key=abc&b=2", "/p?a=1&api_key=****&b=2"},
    {"/cb?code=1&access_token=xyz#frag", "/cb?code=1&access_token=****#frag"},
    {"/p?monkey=banana", "/p?monkey=banana"},
    /* prose is left alone: a blank-separated word after a keyword must look like a key */
    {"authorization failed for backend a", "authorization failed for backend a"},
    {"missing api key", "missing api key"},
    {"apikey rotated", "apikey rotated"},
    /* error codes that name a key are not keys */
    {"401 invalid_api_key: Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz",
     "401 invalid_api_key: Incorrect API key provided: sk-p****wxyz"},
    {"{\"code\":\"missing_api_key\",\"x\":1}", "{\"code\":\"missing_api_key\",\"x\":1}"},
    {"my_api_key: abc", "my_api_key: ****"},
    {"", ""},
};

static char *mask_str(const char *in, const char *const *secrets, size_t n)
{
    return lp_mask_dup(in, secrets, n);
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = mask_str(cases[i].in, NULL, 0);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: in=[%s] want=[%s] got=[%s]", i, cases[i].in, cases[i].want, got);
        free(got);
    }
}

static void test_registered_secrets(void **state)
{
    (void)state;
    const char *secrets[] = {"my-proxy-key-0123456789", "s3cr3t", NULL, ""};
    char *got = mask_str("k=my-proxy-key-0123456789, also s3cr3t and xs3cr3tx", secrets, 4);
    assert_string_equal(got, "k=my-p****6789, also **** and x****x");
    assert_null(strstr(got, "s3cr3t"));
    free(got);
    /* a pattern value that ends inside a secret is extended over the whole secret */
    const char *dotted[] = {"key.part!0123456789abcdef"};
    got = mask_str("Bearer xyzkey.part!0123456789abcdef tail", dotted, 1);
    assert_string_equal(got, "Bearer xyzk****cdef tail");
    free(got);
    /* a self-overlapping secret in a long run: the run is masked whole */
    const char *rep[] = {"QQQQQQQQQQQQQQQQQQQQ"};
    got = mask_str("QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ,", rep, 1);
    assert_string_equal(got, "QQQQ****QQQQ,");
    free(got);
    /* a registered secret with unusual characters, inside a header line */
    const char *odd[] = {"p@ss word!"};
    got = mask_str("X-Custom: p@ss word!", odd, 1);
    assert_string_equal(got, "X-Custom: ****");
    free(got);
}

static void test_count_and_token(void **state)
{
    (void)state;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    const char *in = "Bearer abcdefghijklmnopq and sk-abc1234567890defghijkl";
    assert_int_equal(lp_mask(in, strlen(in), &b, NULL, 0), 2);
    lp_buf_reset(&b);
    lp_mask_token("12345678", 8, &b);
    assert_string_equal(b.data, "****");
    lp_buf_reset(&b);
    lp_mask_token("0123456789abcdef", 16, &b);
    assert_string_equal(b.data, "0123****cdef");
    lp_buf_free(&b);
    assert_null(lp_mask_dup(NULL, NULL, 0));
}

/* Embedded NULs are bytes like any other. */
static void test_binary_input(void **state)
{
    (void)state;
    const char in[] = "a\0Bearer abc\0z";
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_mask(in, sizeof in - 1, &b, NULL, 0);
    const char want[] = "a\0Bearer ****\0z";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, sizeof want - 1);
    lp_buf_free(&b);
}

/* At the ceiling, the output is a masked prefix: the secret never appears. */
static void test_ceiling(void **state)
{
    (void)state;
    const char *in = "0123456789 Bearer abcdefghijklmnopqrstuvwxyz tail";
    for (size_t max = 1; max < strlen(in) + 8; max++) {
        struct lp_buf b;
        lp_buf_init(&b, max);
        lp_mask(in, strlen(in), &b, NULL, 0);
        assert_true(b.len <= max);
        if (b.data)
            assert_null(strstr(b.data, "efghijklmnopqrstuv"));
        lp_buf_free(&b);
    }
}

/* Unterminated quoted values and long runs stay bounded and are masked. */
static void test_unterminated(void **state)
{
    (void)state;
    size_t n = 20000;
    char *in = malloc(n + 1);
    memcpy(in, "{\"api_key\":\"", 12);
    memset(in + 12, 'x', n - 12);
    in[n] = '\0';
    char *got = mask_str(in, NULL, 0);
    assert_true(strlen(got) < n);
    assert_non_null(strstr(got, "xxxx****xxxx"));
    free(got);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),           cmocka_unit_test(test_registered_secrets),
        cmocka_unit_test(test_count_and_token), cmocka_unit_test(test_binary_input),
        cmocka_unit_test(test_ceiling),         cmocka_unit_test(test_unterminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
