/* test_trace.c - W3C traceparent/tracestate parsing, the ratio sampler, traceparent formatting,
 * the max_tokens scan and the OTEL_EXPORTER_OTLP_HEADERS parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "trace.h"
#include "util/rand.h"

static void test_traceparent(void **state)
{
    (void)state;
    struct {
        const char *in;
        bool ok;
        uint8_t flags;
    } cases[] = {
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, 1},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", true, 9},
        /* a future version may append fields after a dash */
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true, 1},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true, 1},
        {"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, 0},
        /* version 00 is exactly 55 characters */
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", false, 0},
        {"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, 0},
        {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, 0},
        {"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false, 0},
        {"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, 0},
        {"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false, 0},
        {"", false, 0},
        {"garbage", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t t[16], p[8], f = 0xee;
        bool ok = lp_traceparent_parse(cases[i].in, t, p, &f);
        if (ok != cases[i].ok)
            fail_msg("case %zu (%s): got %d", i, cases[i].in, ok);
        if (ok) {
            assert_int_equal(f, cases[i].flags);
            assert_int_equal(t[0], 0x4b);
            assert_int_equal(t[15], 0x36);
            assert_int_equal(p[7], 0xb7);
            char out[56];
            lp_traceparent_format(out, t, p, f);
            assert_memory_equal(out + 2, cases[i].in + 2, 53);
            assert_memory_equal(out, "00", 2);
        }
    }
    assert_false(lp_traceparent_parse(NULL, NULL, NULL, NULL));
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_true(lp_tracestate_valid("congo=t61rcWkgMzE"));
    assert_true(lp_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(lp_tracestate_valid("a=1, b=2,,c=3"));
    assert_true(lp_tracestate_valid(""));
    assert_false(lp_tracestate_valid("novalue"));
    assert_false(lp_tracestate_valid("=v"));
    assert_false(lp_tracestate_valid("k="));
    assert_false(lp_tracestate_valid("k=v\x01"));
    char big[700];
    memset(big, 'a', sizeof big - 1);
    big[0] = 'k';
    big[1] = '=';
    big[sizeof big - 1] = '\0';
    assert_false(lp_tracestate_valid(big)); /* over 512 bytes */
    char many[400] = "";
    for (int i = 0; i < 33; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%sk%d=v", i ? "," : "", i);
    assert_false(lp_tracestate_valid(many)); /* 33 members */
}

static void test_ratio_sampler(void **state)
{
    (void)state;
    uint64_t rng = 42;
    int hits[3] = {0};
    double ratios[3] = {0.0, 0.25, 1.0};
    for (int i = 0; i < 20000; i++) {
        uint8_t t[16];
        for (int k = 0; k < 16; k += 8) {
            uint64_t r = lp_rand_next(&rng);
            memcpy(t + k, &r, 8);
        }
        for (int j = 0; j < 3; j++)
            hits[j] += lp_trace_ratio_sampled(t, ratios[j]);
        /* deterministic per trace id, and monotonic in the ratio */
        assert_int_equal(lp_trace_ratio_sampled(t, 0.25), lp_trace_ratio_sampled(t, 0.25));
        if (lp_trace_ratio_sampled(t, 0.1))
            assert_true(lp_trace_ratio_sampled(t, 0.5));
    }
    assert_int_equal(hits[0], 0);
    assert_int_equal(hits[2], 20000);
    assert_in_range(hits[1], 4500, 5500);
}

static void test_max_tokens(void **state)
{
    (void)state;
    const char *b1 = "{\"model\":\"m\",\"max_tokens\": 512,\"messages\":[]}";
    assert_int_equal(lp_trace_max_tokens(b1, strlen(b1)), 512);
    const char *b2 = "{\"model\":\"m\",\"max_completion_tokens\":9}";
    assert_int_equal(lp_trace_max_tokens(b2, strlen(b2)), 9);
    const char *b3 = "{\"model\":\"m\",\"messages\":[{\"content\":\"say \\\"max_tokens\\\": 5\"}]}";
    assert_int_equal(lp_trace_max_tokens(b3, strlen(b3)), -1);
    const char *b4 = "{\"max_tokens\":null}";
    assert_int_equal(lp_trace_max_tokens(b4, strlen(b4)), -1);
}

static void test_otlp_headers(void **state)
{
    (void)state;
    struct lp_kv *kv = NULL;
    size_t n = 0;
    const char *why = NULL;
    assert_true(lp_config_parse_otlp_headers("api-key=abc, x-b = two%20words ,,", &kv, &n, &why));
    assert_int_equal(n, 2);
    assert_string_equal(kv[0].key, "api-key");
    assert_string_equal(kv[0].value, "abc");
    assert_string_equal(kv[1].key, "x-b");
    assert_string_equal(kv[1].value, "two words");
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
    const char *bad[] = {"novalue", "bad name=v", "k=%zz", "k=%0a", "=v", "k=%4"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        kv = NULL;
        if (lp_config_parse_otlp_headers(bad[i], &kv, &n, &why))
            fail_msg("accepted %s", bad[i]);
        assert_non_null(why);
        assert_null(kv);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent),   cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_ratio_sampler), cmocka_unit_test(test_max_tokens),
        cmocka_unit_test(test_otlp_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
