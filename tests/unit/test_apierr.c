/* test_apierr.c - proxy error bodies: both protocol shapes parse with json-c and carry the right
 * fields; escaping of hostile messages; default types; SSE error framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apierr.h"
#include "util/json.h"

static struct json_object *parse(const char *s, size_t len)
{
    assert_int_equal(strlen(s), len);
    struct json_object *o = lp_json_parse(s, len, NULL);
    if (!o)
        fail_msg("not JSON: %s", s);
    return o;
}

static void test_openai_shape(void **state)
{
    (void)state;
    size_t len = 0;
    char *b = lp_apierr_body(LP_PROTO_OPENAI, 401, NULL, "invalid_api_key", "Invalid API key",
                             "req_abc", &len);
    struct json_object *o = parse(b, len);
    struct json_object *e = lp_json_get_obj(o, "error");
    assert_non_null(e);
    assert_string_equal(lp_json_get_str(e, "message"), "Invalid API key");
    assert_string_equal(lp_json_get_str(e, "type"), "invalid_request_error");
    assert_string_equal(lp_json_get_str(e, "code"), "invalid_api_key");
    assert_string_equal(lp_json_get_str(e, "request_id"), "req_abc");
    struct json_object *param = NULL;
    assert_true(json_object_object_get_ex(e, "param", &param));
    assert_null(param);
    json_object_put(o);
    free(b);

    /* code NULL and request_id NULL are JSON null; the explicit type wins */
    b = lp_apierr_body(LP_PROTO_OPENAI, 502, "upstream_error", NULL, "all backends failed", NULL,
                       &len);
    assert_string_equal(b, "{\"error\":{\"message\":\"all backends failed\",\"type\":"
                           "\"upstream_error\",\"code\":null,\"param\":null,\"request_id\":null}}");
    free(b);
}

static void test_anthropic_shape(void **state)
{
    (void)state;
    size_t len = 0;
    char *b = lp_apierr_body(LP_PROTO_ANTHROPIC, 529, NULL, "ignored", "Overloaded", "req_1", &len);
    struct json_object *o = parse(b, len);
    assert_string_equal(lp_json_get_str(o, "type"), "error");
    assert_string_equal(lp_json_get_str(o, "request_id"), "req_1");
    struct json_object *e = lp_json_get_obj(o, "error");
    assert_non_null(e);
    assert_string_equal(lp_json_get_str(e, "type"), "overloaded_error");
    assert_string_equal(lp_json_get_str(e, "message"), "Overloaded");
    assert_null(lp_json_get(e, "code"));
    json_object_put(o);
    free(b);

    b = lp_apierr_body(LP_PROTO_ANTHROPIC, 400, NULL, NULL, NULL, NULL, NULL);
    assert_string_equal(b, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                           "\"message\":\"\"},\"request_id\":null}");
    free(b);
}

static void test_escaping(void **state)
{
    (void)state;
    const char *msg = "quote\" backslash\\ nl\n cr\r tab\t ctl\x01\x1f utf8 \xe4\xb8\xad\xf0\x9f"
                      "\x98\x80 </script>";
    for (int proto = 0; proto < 2; proto++) {
        size_t len = 0;
        char *b = lp_apierr_body((enum lp_proto)proto, 400, "t\"ype", "c\\ode", msg, "r\"id", &len);
        assert_null(strchr(b, '\n'));
        assert_null(strchr(b, '\r'));
        struct json_object *o = parse(b, len);
        struct json_object *e = lp_json_get_obj(o, "error");
        assert_string_equal(lp_json_get_str(e, "message"), msg);
        assert_string_equal(lp_json_get_str(e, "type"), "t\"ype");
        assert_string_equal(lp_json_get_str(proto ? o : e, "request_id"), "r\"id");
        if (!proto)
            assert_string_equal(lp_json_get_str(e, "code"), "c\\ode");
        json_object_put(o);
        free(b);
    }
}

/* Invalid UTF-8 (e.g. a message quoting upstream bytes) becomes U+FFFD, keeping valid JSON. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    size_t len = 0;
    char *b = lp_apierr_body(LP_PROTO_OPENAI, 500, NULL, NULL,
                             "a\xff"
                             "b\xc3"
                             "c\xed\xa0\x80",
                             NULL, &len);
    assert_non_null(strstr(b, "\"a\\ufffdb\\ufffdc\\ufffd\\ufffd\\ufffd\""));
    struct json_object *o = parse(b, len);
    assert_string_equal(lp_json_get_str(lp_json_get_obj(o, "error"), "message"),
                        "a\xef\xbf\xbd"
                        "b\xef\xbf\xbd"
                        "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    json_object_put(o);
    free(b);
}

static void test_default_types(void **state)
{
    (void)state;
    struct {
        int status;
        const char *openai, *anthropic;
    } rows[] = {
        {400, "invalid_request_error", "invalid_request_error"},
        {401, "invalid_request_error", "authentication_error"},
        {402, "invalid_request_error", "billing_error"},
        {403, "permission_error", "permission_error"},
        {404, "invalid_request_error", "not_found_error"},
        {408, "timeout_error", "timeout_error"},
        {409, "invalid_request_error", "conflict_error"},
        {413, "invalid_request_error", "request_too_large"},
        {422, "invalid_request_error", "invalid_request_error"},
        {429, "rate_limit_error", "rate_limit_error"},
        {500, "server_error", "api_error"},
        {502, "server_error", "api_error"},
        {503, "server_error", "overloaded_error"},
        {504, "timeout_error", "timeout_error"},
        {529, "server_error", "overloaded_error"},
        {200, "server_error", "api_error"},
        {0, "server_error", "api_error"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_string_equal(lp_apierr_default_type(LP_PROTO_OPENAI, rows[i].status),
                            rows[i].openai);
        assert_string_equal(lp_apierr_default_type(LP_PROTO_ANTHROPIC, rows[i].status),
                            rows[i].anthropic);
    }
}

static void test_sse_events(void **state)
{
    (void)state;
    size_t len = 0;
    char *s = lp_apierr_sse_event(LP_PROTO_ANTHROPIC, "overloaded_error", NULL,
                                  "upstream \"died\"\nmid-stream", &len);
    assert_int_equal(strlen(s), len);
    assert_string_equal(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                           "\"overloaded_error\",\"message\":"
                           "\"upstream \\\"died\\\"\\nmid-stream\"}}\n\n");
    free(s);

    s = lp_apierr_sse_event(LP_PROTO_OPENAI, NULL, "upstream_error", "boom", &len);
    assert_string_equal(s, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\","
                           "\"code\":\"upstream_error\"}}\n\n");
    assert_null(strstr(s, "[DONE]"));
    /* the data line is valid JSON */
    struct json_object *o = lp_json_parse(s + 6, len - 6, NULL); /* trailing "\n\n" is ws */
    assert_non_null(o);
    assert_string_equal(lp_json_get_str(lp_json_get_obj(o, "error"), "code"), "upstream_error");
    json_object_put(o);
    free(s);

    s = lp_apierr_sse_event(LP_PROTO_ANTHROPIC, NULL, NULL, NULL, NULL);
    assert_string_equal(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                           "\"api_error\",\"message\":\"\"}}\n\n");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_shape),  cmocka_unit_test(test_anthropic_shape),
        cmocka_unit_test(test_escaping),      cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_default_types), cmocka_unit_test(test_sse_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
