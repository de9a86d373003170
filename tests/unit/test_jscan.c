/* test_jscan.c - the request-body scanner: field detection, escapes, strictness, the depth cap,
 * and byte-exact model rewriting (checked against json-c where a second opinion helps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jscan.h"
#include "util/json.h"

static enum lp_status scan(const char *body, struct lp_jscan *s)
{
    const char *msg = NULL;
    size_t off = 0;
    return lp_jscan_request(body, strlen(body), s, &msg, &off);
}

/* The raw model token as a C string (static buffer, for assertions). */
static const char *model_tok(const char *body, const struct lp_jscan *s)
{
    static char tok[256];
    snprintf(tok, sizeof tok, "%.*s", (int)s->model_len, body + s->model_off);
    return tok;
}

static void test_basic_fields(void **state)
{
    (void)state;
    const char *b = "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[{\"role\":\"user\","
                    "\"content\":\"hi\"}]}";
    struct lp_jscan s;
    assert_int_equal(scan(b, &s), LP_OK);
    assert_true(s.has_model);
    assert_true(s.model_is_string);
    assert_string_equal(s.model, "gpt-4o");
    assert_string_equal(model_tok(b, &s), "\"gpt-4o\"");
    assert_true(s.has_stream);
    assert_true(s.stream);
    assert_true(s.stream_is_bool);
    assert_false(s.has_stream_options_include_usage);
    assert_int_equal(s.stream_options_off, 0);
    assert_int_equal(s.stream_options_len, 0);
    lp_jscan_free(&s);
    assert_null(s.model);
    lp_jscan_free(&s); /* twice is safe */
}

static void test_nested_keys_ignored(void **state)
{
    (void)state;
    const char *b = "{\"messages\":[{\"model\":\"inner\",\"stream\":true}],"
                    "\"metadata\":{\"model\":\"meta\",\"stream\":true,"
                    "\"stream_options\":{\"include_usage\":true}},"
                    "\"model\":\"outer\",\"tools\":[[{\"model\":1}]]}";
    struct lp_jscan s;
    assert_int_equal(scan(b, &s), LP_OK);
    assert_string_equal(s.model, "outer");
    assert_false(s.has_stream);
    assert_false(s.stream);
    assert_false(s.has_stream_options_include_usage);
    assert_int_equal(s.stream_options_len, 0);
    lp_jscan_free(&s);

    /* no top-level model at all, only nested ones */
    const char *b2 = "{\"a\":{\"model\":\"x\"},\"b\":[\"model\"]}";
    assert_int_equal(scan(b2, &s), LP_OK);
    assert_false(s.has_model);
    assert_null(s.model);
    lp_jscan_free(&s);
}

static void test_escaped_keys(void **state)
{
    (void)state;
    struct lp_jscan s;
    /* "mod\u0065l" decodes to "model" */
    const char *b = "{\"mod\\u0065l\":\"m1\",\"str\\u0065am\":true}";
    assert_int_equal(scan(b, &s), LP_OK);
    assert_true(s.has_model);
    assert_string_equal(s.model, "m1");
    assert_true(s.stream);
    lp_jscan_free(&s);
    /* "mo\"del" is a different key */
    const char *b2 = "{\"mo\\\"del\":\"x\",\"model\\n\":\"y\"}";
    assert_int_equal(scan(b2, &s), LP_OK);
    assert_false(s.has_model);
    lp_jscan_free(&s);
}

static void test_model_value_escapes(void **state)
{
    (void)state;
    struct lp_jscan s;
    /* quote, backslash, slash, control escapes, 2-byte, 3-byte and a surrogate pair */
    const char *b = "{\"model\":\"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\u4e2d\\ud83d\\ude00\"}";
    assert_int_equal(scan(b, &s), LP_OK);
    assert_true(s.model_is_string);
    assert_string_equal(s.model, "a\"b\\c/d\n\t\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
    assert_true(s.model_nul_free);
    lp_jscan_free(&s);
    /* raw UTF-8 passes through */
    const char *b2 = "{\"model\":\"caf\xc3\xa9-\xe4\xb8\xad\xf0\x9f\x98\x80\"}";
    assert_int_equal(scan(b2, &s), LP_OK);
    assert_string_equal(s.model, "caf\xc3\xa9-\xe4\xb8\xad\xf0\x9f\x98\x80");
    lp_jscan_free(&s);
    /* \u0000 is legal JSON; the flag tells the caller the C string is truncated */
    const char *b3 = "{\"model\":\"a\\u0000b\"}";
    assert_int_equal(scan(b3, &s), LP_OK);
    assert_false(s.model_nul_free);
    assert_string_equal(s.model, "a");
    lp_jscan_free(&s);
}

/* Lone surrogates are accepted (bytes are forwarded untouched) and decode to U+FFFD. */
static void test_lone_surrogates(void **state)
{
    (void)state;
    struct lp_jscan s;
    const char *b = "{\"model\":\"x\\ud800y\\udc00z\\ud83d\"}";
    assert_int_equal(scan(b, &s), LP_OK);
    assert_string_equal(s.model, "x\xef\xbf\xbdy\xef\xbf\xbdz\xef\xbf\xbd");
    lp_jscan_free(&s);
    /* high surrogate followed by a non-low escape: both decoded separately */
    const char *b2 = "{\"model\":\"\\ud800\\u0041\",\"c\":\"\\udfff\"}";
    assert_int_equal(scan(b2, &s), LP_OK);
    assert_string_equal(s.model, "\xef\xbf\xbd"
                                 "A");
    lp_jscan_free(&s);
}

static void test_model_non_string_and_duplicates(void **state)
{
    (void)state;
    struct lp_jscan s;
    const char *b = "{\"model\":\"first\",\"x\":1,\"model\":\"second\"}";
    assert_int_equal(scan(b, &s), LP_OK);
    assert_string_equal(s.model, "second");
    assert_string_equal(model_tok(b, &s), "\"second\"");
    assert_string_equal(s.dup_key, "model");
    lp_jscan_free(&s);

    /* dup_key names the first duplicated field of ours; other duplicates and nested keys don't. */
    assert_int_equal(scan("{\"stream\":true,\"model\":\"m\",\"stream\":false}", &s), LP_OK);
    assert_string_equal(s.dup_key, "stream");
    lp_jscan_free(&s);
    assert_int_equal(scan("{\"stream_options\":{},\"model\":\"m\",\"stream_options\":{}}", &s),
                     LP_OK);
    assert_string_equal(s.dup_key, "stream_options");
    lp_jscan_free(&s);
    assert_int_equal(scan("{\"x\":1,\"x\":2,\"model\":\"m\",\"a\":{\"model\":1,\"model\":2}}", &s),
                     LP_OK);
    assert_null(s.dup_key);
    lp_jscan_free(&s);

    const char *b2 = "{\"model\":\"first\",\"model\":42}";
    assert_int_equal(scan(b2, &s), LP_OK);
    assert_true(s.has_model);
    assert_false(s.model_is_string);
    assert_null(s.model);
    assert_string_equal(model_tok(b2, &s), "42");
    lp_jscan_free(&s);

    const char *b3 = "{\"model\": {\"a\": [1, 2]} , \"z\":null}";
    assert_int_equal(scan(b3, &s), LP_OK);
    assert_false(s.model_is_string);
    assert_string_equal(model_tok(b3, &s), "{\"a\": [1, 2]}");
    lp_jscan_free(&s);

    const char *b4 = "{\"model\":null}";
    assert_int_equal(scan(b4, &s), LP_OK);
    assert_true(s.has_model);
    assert_false(s.model_is_string);
    assert_string_equal(model_tok(b4, &s), "null");
    lp_jscan_free(&s);
}

static void test_stream_variants(void **state)
{
    (void)state;
    struct {
        const char *body;
        bool has, stream, is_bool;
    } rows[] = {
        {"{\"stream\":true}", true, true, true},
        {"{\"stream\":false}", true, false, true},
        {"{}", false, false, false},
        {"{\"stream\":\"true\"}", true, false, false},
        {"{\"stream\":1}", true, false, false},
        {"{\"stream\":null}", true, false, false},
        {"{\"stream\":[true]}", true, false, false},
        {"{\"stream\":{\"a\":true}}", true, false, false},
        {"{\"stream\":true,\"stream\":false}", true, false, true},
        {"{\"stream\":false,\"stream\":true}", true, true, true},
        {"{ \"stream\" :\n true }", true, true, true},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct lp_jscan s;
        assert_int_equal(scan(rows[i].body, &s), LP_OK);
        if (s.has_stream != rows[i].has || s.stream != rows[i].stream ||
            s.stream_is_bool != rows[i].is_bool)
            fail_msg("row %zu: %s", i, rows[i].body);
        lp_jscan_free(&s);
    }
}

static void test_stream_options(void **state)
{
    (void)state;
    struct {
        const char *body;
        bool usage;
        const char *range; /* expected stream_options value bytes, NULL = absent */
    } rows[] = {
        {"{\"stream_options\":{\"include_usage\":true}}", true, "{\"include_usage\":true}"},
        {"{\"stream_options\": { \"include_usage\" : true } ,\"a\":1}", true,
         "{ \"include_usage\" : true }"},
        {"{\"stream_options\":{\"include_usage\":false}}", false, "{\"include_usage\":false}"},
        {"{\"stream_options\":{\"x\":{\"include_usage\":true}}}", false,
         "{\"x\":{\"include_usage\":true}}"},
        {"{\"stream_options\":{\"include_usage\":\"true\"}}", false,
         "{\"include_usage\":\"true\"}"},
        {"{\"stream_options\":null}", false, "null"},
        {"{\"stream_options\":[{\"include_usage\":true}]}", false, "[{\"include_usage\":true}]"},
        {"{\"stream_options\":{\"include_usage\":true,\"include_usage\":false}}", false,
         "{\"include_usage\":true,\"include_usage\":false}"},
        {"{\"stream_options\":{\"include_usage\":true},\"stream_options\":{}}", false, "{}"},
        {"{\"stream_options\":{},\"stream_options\":{\"include_usage\":true}}", true,
         "{\"include_usage\":true}"},
        {"{\"include_usage\":true}", false, NULL},
        {"{\"m\":{\"stream_options\":{\"include_usage\":true}}}", false, NULL},
        {"{\"stream_options\":{\"a\":[1,{\"b\":2}],\"include_usage\":true}}", true,
         "{\"a\":[1,{\"b\":2}],\"include_usage\":true}"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct lp_jscan s;
        const char *b = rows[i].body;
        assert_int_equal(scan(b, &s), LP_OK);
        if (s.has_stream_options_include_usage != rows[i].usage)
            fail_msg("row %zu usage: %s", i, b);
        if (!rows[i].range) {
            assert_int_equal(s.stream_options_off, 0);
            assert_int_equal(s.stream_options_len, 0);
        } else {
            assert_int_equal(s.stream_options_len, strlen(rows[i].range));
            assert_memory_equal(b + s.stream_options_off, rows[i].range, s.stream_options_len);
        }
        lp_jscan_free(&s);
    }
}

static void test_whitespace_variants(void **state)
{
    (void)state;
    const char *bodies[] = {
        " \t\r\n{\"model\":\"m\"}",
        "{\"model\":\"m\"} \n\r\t ",
        "{ \"model\" : \"m\" }",
        "{\n  \"model\":\t\"m\",\n  \"x\": [ 1 , 2 , { } , [ ] ]\n}\n",
        "{\r\n\"a\" : { \"b\" : [ ] } ,\r\n\"model\"\r\n:\r\n\"m\"\r\n}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct lp_jscan s;
        assert_int_equal(scan(bodies[i], &s), LP_OK);
        assert_string_equal(s.model, "m");
        assert_string_equal(model_tok(bodies[i], &s), "\"m\"");
        lp_jscan_free(&s);
    }
}

static void test_valid_values_agree_with_jsonc(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{}",
        "{\"n\":[0,-0,1,-1,0.5,-0.5e10,1E+2,1e-2,12345678901234567890123,1.0e999]}",
        "{\"s\":[\"\",\" \",\"\\u0000\",\"\\uFFFF\",\"\\uD834\\uDD1E\"]}",
        "{\"l\":[true,false,null],\"o\":{\"o\":{\"o\":{}}}}",
        "{\"utf8\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\"}",
        "{\"\":\"\",\"a\":[[[]]]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct lp_jscan s;
        if (scan(bodies[i], &s) != LP_OK)
            fail_msg("rejected valid body %zu: %s", i, bodies[i]);
        lp_jscan_free(&s);
        struct json_object *o = lp_json_parse(bodies[i], strlen(bodies[i]), NULL);
        assert_non_null(o);
        json_object_put(o);
    }
}

struct bad_case {
    const char *body;
    size_t len; /* 0 = strlen */
    size_t off; /* expected error offset, SIZE_MAX = don't check */
};

static void test_invalid_json(void **state)
{
    (void)state;
    static const struct bad_case rows[] = {
        {"", 0, 0},
        {"   ", 0, 3},
        {"{", 0, 1},
        {"{\"model\"", 0, 8},
        {"{\"model\":", 0, 9},
        {"{\"model\":\"abc", 0, 9},
        {"{\"model\":\"a\"", 0, 12},
        {"{\"a\":1}x", 0, 7},
        {"{\"a\":1}{}", 0, 7},
        {"{\"a\":1,}", 0, 7},
        {"{,}", 0, 1},
        {"{\"a\" 1}", 0, 5},
        {"{\"a\":1 \"b\":2}", 0, 7},
        {"{\"a\":[1,]}", 0, 8},
        {"{\"a\":[1 2]}", 0, 8},
        {"{\"a\":[}", 0, 6},
        {"{\"a\":{]}", 0, 6},
        {"{\"a\":[1}", 0, 7},
        {"{\"a\":\"\\x\"}", 0, 6},
        {"{\"a\":\"\\u12G4\"}", 0, 6},
        {"{\"a\":\"\\u12\"}", 0, 6},
        {"{\"a\":\"\\", 0, 5},
        {"{\"a\":\"tab\there\"}", 0, 9},
        {"{\"a\":\"nl\nhere\"}", 0, 8},
        {"{\"a\":01}", 0, 5},
        {"{\"a\":-01}", 0, 6},
        {"{\"a\":+1}", 0, 5},
        {"{\"a\":.5}", 0, 5},
        {"{\"a\":1.}", 0, 7},
        {"{\"a\":1e}", 0, 7},
        {"{\"a\":1e+}", 0, 8},
        {"{\"a\":-}", 0, 6},
        {"{\"a\":NaN}", 0, 5},
        {"{\"a\":Infinity}", 0, 5},
        {"{\"a\":tru}", 0, 5},
        {"{\"a\":nul}", 0, 5},
        {"{\"a\":True}", 0, 5},
        {"{a:1}", 0, 1},
        {"{'a':1}", 0, 1},
        {"{\"a\":1 /* c */}", 0, 7},
        {"{\"a\":\"\xff\"}", 0, 6},             /* invalid byte */
        {"{\"a\":\"\xc0\xaf\"}", 0, 6},         /* overlong '/' */
        {"{\"a\":\"\xe0\x80\xaf\"}", 0, 6},     /* overlong */
        {"{\"a\":\"\xed\xa0\x80\"}", 0, 6},     /* UTF-8-encoded surrogate */
        {"{\"a\":\"\xf4\x90\x80\x80\"}", 0, 6}, /* > U+10FFFF */
        {"{\"a\":\"\xc3\"}", 0, 6},             /* truncated sequence */
        {"{\"a\":\"\xe4\xb8\"", 0, 6},          /* truncated at end of input */
        {"{\"a\":1}\0", 8, 7},                  /* NUL after the value */
        {"\xef\xbb\xbf{}", 0, 0},               /* a BOM is not JSON whitespace */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct lp_jscan s;
        const char *msg = NULL;
        size_t off = 12345;
        size_t len = rows[i].len ? rows[i].len : strlen(rows[i].body);
        enum lp_status rc = lp_jscan_request(rows[i].body, len, &s, &msg, &off);
        if (rc != LP_ERR_PARSE)
            fail_msg("row %zu accepted: %s", i, rows[i].body);
        assert_non_null(msg);
        assert_null(s.model);
        if (rows[i].off != SIZE_MAX && off != rows[i].off)
            fail_msg("row %zu (%s): offset %zu, want %zu (%s)", i, rows[i].body, off, rows[i].off,
                     msg);
    }
}

static void test_invalid_frees_model(void **state)
{
    (void)state;
    /* The model was decoded before the error was found: it must not leak (ASan checks). */
    struct lp_jscan s;
    assert_int_equal(scan("{\"model\":\"abc\",\"x\":tru}", &s), LP_ERR_PARSE);
    assert_null(s.model);
    assert_false(s.has_model);
    /* NULL out-params are allowed */
    assert_int_equal(lp_jscan_request("[", 1, &s, NULL, NULL), LP_ERR_PARSE);
    assert_int_equal(lp_jscan_request(NULL, 0, &s, NULL, NULL), LP_ERR_PARSE);
}

static void test_non_object_top_level(void **state)
{
    (void)state;
    const char *bodies[] = {"[]", "[{\"model\":\"x\"}]", "\"x\"", "1", "null", "true", " 0 "};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        struct lp_jscan s;
        const char *msg = NULL;
        size_t off = 99;
        assert_int_equal(lp_jscan_request(bodies[i], strlen(bodies[i]), &s, &msg, &off),
                         LP_ERR_PARSE);
        assert_string_equal(msg, "request body must be a JSON object");
    }
}

/* Build n nested arrays inside the top-level object: depth = n + 1. */
static char *nested(size_t n)
{
    char *b = malloc(2 * n + 16);
    size_t o = 0;
    o += (size_t)snprintf(b, 2 * n + 16, "{\"a\":");
    for (size_t i = 0; i < n; i++)
        b[o++] = '[';
    for (size_t i = 0; i < n; i++)
        b[o++] = ']';
    b[o++] = '}';
    b[o] = '\0';
    return b;
}

static void test_depth_limit(void **state)
{
    (void)state;
    struct lp_jscan s;
    char *ok = nested(LP_JSCAN_MAX_DEPTH - 1); /* exactly 128 levels */
    assert_int_equal(scan(ok, &s), LP_OK);
    free(ok);
    char *bad = nested(LP_JSCAN_MAX_DEPTH); /* 129 */
    const char *msg = NULL;
    size_t off = 0;
    assert_int_equal(lp_jscan_request(bad, strlen(bad), &s, &msg, &off), LP_ERR_PARSE);
    assert_string_equal(msg, "nesting too deep");
    assert_int_equal(off, 5 + LP_JSCAN_MAX_DEPTH - 1);
    free(bad);
    /* very deep input fails fast without recursion */
    char *deep = nested(100000);
    assert_int_equal(scan(deep, &s), LP_ERR_PARSE);
    free(deep);
}

/* The string fast path reads 8 bytes at a time: a special byte at every offset within a word
 * must still be seen (control char rejected at its offset, quote ending the string, escape and
 * UTF-8 handled, invalid byte rejected). */
static void test_fast_path_positions(void **state)
{
    (void)state;
    const char *az = "abcdefghijklmnopqrstuvwxyz";
    for (size_t k = 0; k < 24; k++) {
        char b[128];
        struct lp_jscan s;
        const char *msg = NULL;
        size_t off = 0;
        int n;
        /* control character: rejected exactly where it is */
        n = snprintf(b, sizeof b, "{\"model\":\"%.*s\x01%s\"}", (int)k, az, "tail-bytes-here");
        assert_int_equal(lp_jscan_request(b, (size_t)n, &s, &msg, &off), LP_ERR_PARSE);
        assert_int_equal(off, 10 + k);
        /* invalid UTF-8 byte */
        n = snprintf(b, sizeof b, "{\"model\":\"%.*s\xff%s\"}", (int)k, az, "tail-bytes-here");
        assert_int_equal(lp_jscan_request(b, (size_t)n, &s, &msg, &off), LP_ERR_PARSE);
        assert_int_equal(off, 10 + k);
        /* quote ends the string early: what follows is garbage */
        n = snprintf(b, sizeof b, "{\"model\":\"%.*s\"%s\"}", (int)k, az, "tail-bytes-here");
        assert_int_equal(lp_jscan_request(b, (size_t)n, &s, &msg, &off), LP_ERR_PARSE);
        assert_int_equal(off, 11 + k);
        /* escape and a 2-byte character are decoded */
        n = snprintf(b, sizeof b, "{\"model\":\"%.*s\\n\xc3\xa9%s\"}", (int)k, az,
                     "tail-bytes-here");
        assert_int_equal(lp_jscan_request(b, (size_t)n, &s, &msg, &off), LP_OK);
        assert_int_equal(strlen(s.model), k + 3 + 15);
        assert_memory_equal(s.model + k, "\n\xc3\xa9tail", 7);
        lp_jscan_free(&s);
    }
}

static char *rewrite(const char *body, const char *model, size_t *n)
{
    struct lp_jscan s;
    assert_int_equal(scan(body, &s), LP_OK);
    char *out = lp_jscan_rewrite_model(body, strlen(body), &s, model, n);
    lp_jscan_free(&s);
    assert_int_equal(strlen(out), *n);
    /* the result is itself a valid request with the new model */
    struct lp_jscan s2;
    assert_int_equal(lp_jscan_request(out, *n, &s2, NULL, NULL), LP_OK);
    assert_string_equal(s2.model, model);
    lp_jscan_free(&s2);
    return out;
}

static void test_rewrite_preserves_bytes(void **state)
{
    (void)state;
    struct {
        const char *in, *model, *want;
    } rows[] = {
        {"{\"model\":\"alias\",\"n\":12345678901234567890123,\"f\":1.50e+10}", "gpt-4o",
         "{\"model\":\"gpt-4o\",\"n\":12345678901234567890123,\"f\":1.50e+10}"},
        {" {\n \"x\" : 1.0 ,\n \"model\" :  \"a\\u006c\" ,\"y\":{\"model\":\"keep\"}} ", "b",
         " {\n \"x\" : 1.0 ,\n \"model\" :  \"b\" ,\"y\":{\"model\":\"keep\"}} "},
        {"{\"model\":42,\"z\":[]}", "m", "{\"model\":\"m\",\"z\":[]}"},
        {"{\"model\":{\"deep\":[1]}}", "m", "{\"model\":\"m\"}"},
        {"{\"model\":\"a\",\"model\":\"b\"}", "c", "{\"model\":\"a\",\"model\":\"c\"}"},
        {"{\"model\":\"a\"}", "q\"uo\\te\n\x01", "{\"model\":\"q\\\"uo\\\\te\\n\\u0001\"}"},
        {"{\"model\":\"a\"}", "\xe4\xb8\xad", "{\"model\":\"\xe4\xb8\xad\"}"},
        {"{\"model\":\"a\"}", "", "{\"model\":\"\"}"},
        /* insertion when absent */
        {"{}", "m", "{\"model\":\"m\"}"},
        {"  { \n }  ", "m", "  {\"model\":\"m\" \n }  "},
        {"{\"a\":1}", "m", "{\"model\":\"m\",\"a\":1}"},
        {"\n{ \"a\" : 1 }", "m", "\n{\"model\":\"m\", \"a\" : 1 }"},
        {"{\"x\":{\"model\":\"n\"}}", "m", "{\"model\":\"m\",\"x\":{\"model\":\"n\"}}"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t n = 0;
        char *out = rewrite(rows[i].in, rows[i].model, &n);
        if (strcmp(out, rows[i].want) != 0)
            fail_msg("row %zu: got %s want %s", i, out, rows[i].want);
        free(out);
    }
}

static void test_rewrite_jsonc_roundtrip(void **state)
{
    (void)state;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi \\\"there\\\"\"}],"
                       "\"model\":\"alias\",\"max_tokens\":100,\"stream\":true}";
    size_t n = 0;
    char *out = rewrite(body, "vendor/model-\"x\"", &n);
    struct json_object *o = lp_json_parse(out, n, NULL);
    assert_non_null(o);
    assert_string_equal(lp_json_get_str(o, "model"), "vendor/model-\"x\"");
    assert_true(lp_json_get_bool(o, "stream", false));
    int64_t mt = 0;
    assert_true(lp_json_get_int64(o, "max_tokens", &mt));
    assert_int_equal(mt, 100);
    json_object_put(o);
    free(out);
}

static void test_decode_string(void **state)
{
    (void)state;
    size_t n = 0;
    char *s = lp_jscan_decode_string("\"a\\tb\\u0041\"", 12, &n);
    assert_string_equal(s, "a\tbA");
    assert_int_equal(n, 4);
    free(s);
    assert_null(lp_jscan_decode_string("abc", 3, NULL));
    assert_null(lp_jscan_decode_string("\"", 1, NULL));
}

/* A large body with a long string and many tokens: the fields are still found and the rewrite
 * touches only the model bytes. */
static void test_large_body(void **state)
{
    (void)state;
    size_t big = 2 * 1024 * 1024;
    char *b = malloc(big + 256);
    size_t o = (size_t)snprintf(b, big + 256, "{\"messages\":[{\"content\":\"");
    for (size_t i = 0; i < big; i++)
        b[o++] = (char)('a' + i % 26);
    o += (size_t)snprintf(b + o, big + 256 - o, "\"}],\"stream\":true,\"model\":\"x\"}");
    struct lp_jscan s;
    assert_int_equal(lp_jscan_request(b, o, &s, NULL, NULL), LP_OK);
    assert_string_equal(s.model, "x");
    assert_true(s.stream);
    size_t n = 0;
    char *out = lp_jscan_rewrite_model(b, o, &s, "yy", &n);
    assert_int_equal(n, o + 1);
    assert_memory_equal(out, b, s.model_off);
    assert_memory_equal(out + s.model_off, "\"yy\"}", 5);
    free(out);
    lp_jscan_free(&s);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_fields),
        cmocka_unit_test(test_nested_keys_ignored),
        cmocka_unit_test(test_escaped_keys),
        cmocka_unit_test(test_model_value_escapes),
        cmocka_unit_test(test_lone_surrogates),
        cmocka_unit_test(test_model_non_string_and_duplicates),
        cmocka_unit_test(test_stream_variants),
        cmocka_unit_test(test_stream_options),
        cmocka_unit_test(test_whitespace_variants),
        cmocka_unit_test(test_valid_values_agree_with_jsonc),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_invalid_frees_model),
        cmocka_unit_test(test_non_object_top_level),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_fast_path_positions),
        cmocka_unit_test(test_rewrite_preserves_bytes),
        cmocka_unit_test(test_rewrite_jsonc_roundtrip),
        cmocka_unit_test(test_decode_string),
        cmocka_unit_test(test_large_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
