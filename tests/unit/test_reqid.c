/* test_reqid.c - request id format and uniqueness, client id sanity, constant-time equality. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reqid.h"

static void assert_format(const char *id)
{
    assert_int_equal(strlen(id), 28);
    assert_memory_equal(id, "req_", 4);
    for (size_t i = 4; i < 28; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            fail_msg("non-hex char in %s", id);
    assert_true(lp_reqid_sane(id));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_format_and_uniqueness(void **state)
{
    (void)state;
    enum { N = 50000 };
    char(*ids)[LP_REQID_MAX] = malloc(sizeof *ids * N);
    /* Two RNGs seeded identically (the worst case for two workers): the counter still makes
     * every id distinct. */
    uint64_t a = 7, b = 7;
    for (size_t i = 0; i < N; i += 2) {
        lp_reqid_new(&a, ids[i]);
        lp_reqid_new(&b, ids[i + 1]);
        assert_format(ids[i]);
        assert_memory_equal(ids[i], ids[i + 1], 20); /* same random half... */
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    for (size_t i = 1; i < N; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            fail_msg("duplicate id %s", ids[i]);
    free(ids);
}

static void test_rng_advances(void **state)
{
    (void)state;
    uint64_t r = 1;
    char x[LP_REQID_MAX], y[LP_REQID_MAX];
    lp_reqid_new(&r, x);
    uint64_t after = r;
    lp_reqid_new(&r, y);
    assert_int_not_equal(after, 1);
    assert_int_not_equal(r, after);
    assert_memory_not_equal(x + 4, y + 4, 16);
}

static void test_sane(void **state)
{
    (void)state;
    char max[LP_REQID_MAX + 1];
    memset(max, 'a', sizeof max);
    max[LP_REQID_MAX - 1] = '\0'; /* 63 chars: fits with its NUL */
    assert_true(lp_reqid_sane(max));
    max[LP_REQID_MAX - 1] = 'a';
    max[LP_REQID_MAX] = '\0'; /* 64 chars: would not fit an LP_REQID_MAX buffer */
    assert_false(lp_reqid_sane(max));

    const char *good[] = {"a", "req_0123abcd", "550e8400-e29b-41d4-a716-446655440000",
                          "trace.id:1_2-3", "ABCxyz09"};
    const char *bad[] = {"",    "has space", "a/b",   "a\nb", "a\"b", "tab\t", "caf\xc3\xa9",
                         "a;b", "<script>",  "a%20b", "a+b"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!lp_reqid_sane(good[i]))
            fail_msg("sane id rejected: %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lp_reqid_sane(bad[i]))
            fail_msg("bad id accepted: %s", bad[i]);
    assert_false(lp_reqid_sane(NULL));
}

static bool eq(const char *a, const char *b)
{
    return lp_ct_equal(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0);
}

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(eq("sk-proxy-123", "sk-proxy-123"));
    assert_true(eq("", ""));
    assert_true(eq(NULL, NULL));
    assert_false(eq("sk-proxy-123", "sk-proxy-124"));
    assert_false(eq("Sk-proxy-123", "sk-proxy-123"));
    assert_false(eq("sk-proxy-12", "sk-proxy-123"));   /* presented is a prefix */
    assert_false(eq("sk-proxy-1234", "sk-proxy-123")); /* configured is a prefix */
    assert_false(eq("", "k"));
    assert_false(eq("k", ""));
    assert_false(eq(NULL, "k"));
    /* a presented key padded with NULs to the configured length is still different */
    assert_false(lp_ct_equal("ab\0", 3, "ab", 2));
    assert_false(lp_ct_equal("ab", 2, "ab\0", 3));
    assert_true(lp_ct_equal("a\0b", 3, "a\0b", 3));
    /* lengths are taken from the arguments, not strlen */
    assert_true(lp_ct_equal("abcdef", 3, "abcxyz", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_and_uniqueness),
        cmocka_unit_test(test_rng_advances),
        cmocka_unit_test(test_sane),
        cmocka_unit_test(test_ct_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
