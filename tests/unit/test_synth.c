/* test_synth.c - a complete response replayed as a stream (proto/synth.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "proto/synth.h"
#include "sse.h"
#include "util/json.h"

struct evs {
    char names[16][32];
    struct json_object *data[16];
    char raw_data[16][64];
    int n;
};

static void parse(const char *s, size_t len, struct evs *e)
{
    struct lp_sse_parser p;
    lp_sse_init(&p, 1 << 20);
    assert_int_equal(lp_sse_feed(&p, s, len), LP_OK);
    struct lp_sse_event ev;
    e->n = 0;
    while (lp_sse_next(&p, &ev) == LP_OK && e->n < 16) {
        snprintf(e->names[e->n], sizeof e->names[0], "%.*s", (int)ev.event_len, ev.event);
        snprintf(e->raw_data[e->n], sizeof e->raw_data[0], "%.*s", (int)ev.data_len, ev.data);
        e->data[e->n] = lp_json_parse(ev.data, ev.data_len, NULL);
        e->n++;
    }
    assert_int_equal(lp_sse_pending(&p), 0);
    lp_sse_free(&p);
}

static void free_evs(struct evs *e)
{
    for (int i = 0; i < e->n; i++)
        json_object_put(e->data[i]);
}

static void test_openai_tool_call_and_usage(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\","
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],"
        "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}";
    size_t n = 0;
    char *s = lp_synth_stream(LP_PROTO_OPENAI, body, strlen(body), true, &n);
    assert_non_null(s);
    struct evs e;
    parse(s, n, &e);
    assert_int_equal(e.n, 4);
    struct json_object *d0 =
        lp_json_get_obj(lp_json_arr_at(lp_json_get_arr(e.data[0], "choices"), 0), "delta");
    assert_string_equal(lp_json_get_str(d0, "role"), "assistant");
    assert_string_equal(lp_json_get_str(d0, "content"), "Hi");
    struct json_object *tc = lp_json_arr_at(lp_json_get_arr(d0, "tool_calls"), 0);
    assert_string_equal(lp_json_get_str(tc, "id"), "c1");
    assert_string_equal(lp_json_get_str(lp_json_get_obj(tc, "function"), "arguments"), "{\"a\":1}");
    struct json_object *c1 = lp_json_arr_at(lp_json_get_arr(e.data[1], "choices"), 0);
    assert_string_equal(lp_json_get_str(c1, "finish_reason"), "tool_calls");
    assert_int_equal(lp_json_arr_len(lp_json_get_arr(e.data[2], "choices")), 0);
    assert_non_null(lp_json_get_obj(e.data[2], "usage"));
    assert_string_equal(e.raw_data[3], "[DONE]");
    free_evs(&e);
    free(s);
    /* Without include_usage there is no usage chunk. */
    s = lp_synth_stream(LP_PROTO_OPENAI, body, strlen(body), false, &n);
    parse(s, n, &e);
    assert_int_equal(e.n, 3);
    free_evs(&e);
    free(s);
}

static void test_anthropic_sequence(void **state)
{
    (void)state;
    const char *body =
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":"
        "["
        "{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":"
        "\"f\","
        "\"input\":{\"x\":\"y\"}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
        "\"usage\":{\"input_tokens\":5,\"output_tokens\":9}}";
    size_t n = 0;
    char *s = lp_synth_stream(LP_PROTO_ANTHROPIC, body, strlen(body), false, &n);
    assert_non_null(s);
    struct evs e;
    parse(s, n, &e);
    const char *want[] = {"message_start",      "content_block_start", "content_block_delta",
                          "content_block_stop", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta",       "message_stop"};
    assert_int_equal(e.n, 9);
    for (int i = 0; i < 9; i++)
        assert_string_equal(e.names[i], want[i]);
    struct json_object *d = lp_json_get_obj(e.data[2], "delta");
    assert_string_equal(lp_json_get_str(d, "text"), "Hello");
    d = lp_json_get_obj(e.data[5], "delta");
    assert_string_equal(lp_json_get_str(d, "type"), "input_json_delta");
    assert_string_equal(lp_json_get_str(d, "partial_json"), "{\"x\":\"y\"}");
    assert_string_equal(lp_json_get_str(lp_json_get_obj(e.data[7], "delta"), "stop_reason"),
                        "tool_use");
    free_evs(&e);
    free(s);
}

static void test_not_a_response(void **state)
{
    (void)state;
    size_t n;
    assert_null(lp_synth_stream(LP_PROTO_OPENAI, "{\"error\":{}}", 12, false, &n));
    assert_null(lp_synth_stream(LP_PROTO_ANTHROPIC, "[1,2]", 5, false, &n));
    assert_null(lp_synth_stream(LP_PROTO_ANTHROPIC, "{bad", 4, false, &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_tool_call_and_usage),
        cmocka_unit_test(test_anthropic_sequence),
        cmocka_unit_test(test_not_a_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
