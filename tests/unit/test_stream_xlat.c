/* test_stream_xlat.c - SSE stream translation OpenAI <-> Anthropic, the pass-through tap and the
 * error classification helpers.
 *
 * Recorded upstream streams (tests/fixtures/streams/<name>.sse) are parsed with src/sse.c in many
 * chunkings (1 byte, small primes, random) so events split mid-line and mid-UTF-8; the translated
 * output must be identical for every chunking, equal event by event (parsed JSON, volatile ids
 * and timestamps ignored) to <name>.expected.sse, and satisfy the protocol's state-machine
 * invariants. LP_REGEN_STREAM_FIXTURES=1 rewrites the expected files (review the diff!).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/stream_xlat.h"
#include "sse.h"
#include "util/json.h"
#include "util/rand.h"

#define FIXDIR LP_FIXTURES_DIR "/streams/"
#define ALIAS "team/model"
#define RID "req-42"

/* ---- helpers ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

struct event {
    char *name;
    char *data;
};

struct events {
    struct event *v;
    size_t n;
};

static void events_free(struct events *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].name);
        free(e->v[i].data);
    }
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

/* Split an SSE byte stream into events with src/sse.c. Comment-only blocks are skipped. */
static struct events split_events(const char *buf, size_t len)
{
    struct events e = {0};
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    lp_sse_init(&p, 0);
    assert_int_equal(lp_sse_feed(&p, buf, len), LP_OK);
    while (lp_sse_next(&p, &ev) == LP_OK || lp_sse_finish(&p, &ev) == LP_OK) {
        if (ev.is_comment_only)
            continue;
        e.v = realloc(e.v, (e.n + 1) * sizeof *e.v);
        e.v[e.n].name = strndup(ev.event ? ev.event : "", ev.event_len);
        e.v[e.n].data = strndup(ev.data ? ev.data : "", ev.data_len);
        e.n++;
    }
    lp_sse_free(&p);
    return e;
}

static struct json_object *parse_json(const char *s)
{
    struct json_object *o = lp_json_parse(s, strlen(s), NULL);
    if (!o)
        fail_msg("output is not JSON: %s", s);
    return o;
}

/* Feed one inline event; data is a C string. */
static enum lp_status feed(struct lp_stream_xlat *x, const char *event, const char *data,
                           struct lp_buf *out)
{
    return lp_stream_xlat_event(x, event, event ? strlen(event) : 0, data, strlen(data), out);
}

static bool contains(const struct lp_buf *b, const char *s)
{
    return b->data && strstr(b->data, s) != NULL;
}

static size_t count(const struct lp_buf *b, const char *s)
{
    size_t n = 0;
    for (const char *p = b->data; p && (p = strstr(p, s)) != NULL; p++)
        n++;
    return n;
}

/* ---- invariants: Anthropic client stream -------------------------------------------------- */

static bool str_in(const char *s, const char *const *set)
{
    for (; s && *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

static void check_anthropic_stream(const char *buf, size_t len, bool expect_error)
{
    static const char *const stop_reasons[] = {
        "end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn", NULL};
    struct events e = split_events(buf, len);
    int64_t open = -1, next = 0;
    char open_type[16] = "";
    char json_acc[4096] = "";
    bool saw_delta = false, stopped = false, errored = false;
    assert_true(e.n >= 1);
    for (size_t i = 0; i < e.n; i++) {
        struct json_object *o = parse_json(e.v[i].data);
        const char *type = lp_json_get_str(o, "type");
        assert_non_null(type);
        assert_string_equal(type, e.v[i].name); /* event name == data.type */
        assert_false(stopped || errored);       /* nothing after the terminal event */
        int64_t idx = -2;
        lp_json_get_int64(o, "index", &idx);
        if (strcmp(type, "message_start") == 0) {
            assert_int_equal(i, 0);
            struct json_object *m = lp_json_get_obj(o, "message");
            assert_string_equal(lp_json_get_str(m, "type"), "message");
            assert_string_equal(lp_json_get_str(m, "role"), "assistant");
            assert_string_equal(lp_json_get_str(m, "model"), ALIAS);
            assert_true(strncmp(lp_json_get_str(m, "id"), "msg_", 4) == 0);
            assert_null(strstr(lp_json_get_str(m, "id"), "msg_msg_"));
            assert_int_equal(lp_json_arr_len(lp_json_get_arr(m, "content")), 0);
            int64_t v;
            assert_true(lp_json_get_int64(lp_json_get_obj(m, "usage"), "input_tokens", &v));
        } else if (strcmp(type, "content_block_start") == 0) {
            assert_int_equal(open, -1);
            assert_int_equal(idx, next);
            next++;
            open = idx;
            struct json_object *cb = lp_json_get_obj(o, "content_block");
            const char *bt = lp_json_get_str(cb, "type");
            assert_true(str_in(bt, (const char *const[]){"text", "thinking", "tool_use", NULL}));
            snprintf(open_type, sizeof open_type, "%s", bt ? bt : "");
            json_acc[0] = '\0';
            if (strcmp(bt, "tool_use") == 0) {
                assert_true(strlen(lp_json_get_str(cb, "id")) > 0);
                assert_true(strlen(lp_json_get_str(cb, "name")) > 0);
                assert_non_null(lp_json_get_obj(cb, "input"));
            }
        } else if (strcmp(type, "content_block_delta") == 0) {
            assert_int_equal(idx, open);
            struct json_object *d = lp_json_get_obj(o, "delta");
            const char *dt = lp_json_get_str(d, "type");
            if (strcmp(open_type, "text") == 0)
                assert_string_equal(dt, "text_delta");
            else if (strcmp(open_type, "thinking") == 0)
                assert_string_equal(dt, "thinking_delta");
            else {
                assert_string_equal(dt, "input_json_delta");
                size_t jl = strlen(json_acc);
                snprintf(json_acc + jl, sizeof json_acc - jl, "%s",
                         lp_json_get_str(d, "partial_json"));
            }
        } else if (strcmp(type, "content_block_stop") == 0) {
            assert_int_equal(idx, open);
            if (strcmp(open_type, "tool_use") == 0 && json_acc[0]) {
                struct json_object *in = parse_json(json_acc); /* complete tool input */
                assert_true(lp_json_is_obj(in));
                json_object_put(in);
            }
            open = -1;
        } else if (strcmp(type, "message_delta") == 0) {
            assert_int_equal(open, -1);
            assert_false(saw_delta);
            saw_delta = true;
            const char *sr = lp_json_get_str(lp_json_get_obj(o, "delta"), "stop_reason");
            assert_true(str_in(sr, stop_reasons));
            int64_t v;
            assert_true(lp_json_get_int64(lp_json_get_obj(o, "usage"), "output_tokens", &v));
        } else if (strcmp(type, "message_stop") == 0) {
            assert_true(saw_delta);
            stopped = true;
        } else if (strcmp(type, "error") == 0) {
            assert_true(expect_error);
            assert_int_equal(open, -1);
            assert_non_null(lp_json_get_str(lp_json_get_obj(o, "error"), "type"));
            errored = true;
        } else {
            assert_string_equal(type, "ping");
        }
        json_object_put(o);
    }
    assert_true(expect_error ? errored : stopped);
    events_free(&e);
}

/* ---- invariants: OpenAI client stream ----------------------------------------------------- */

struct oa_tool {
    char args[4096];
};

static void check_openai_tool_delta(struct json_object *tcs, struct oa_tool *tools, int *n_tools)
{
    for (size_t j = 0; j < lp_json_arr_len(tcs); j++) {
        struct json_object *tc = lp_json_arr_at(tcs, j);
        int64_t ti = -1;
        assert_true(lp_json_get_int64(tc, "index", &ti));
        struct json_object *fn = lp_json_get_obj(tc, "function");
        const char *args = lp_json_get_str(fn, "arguments");
        assert_non_null(args);
        if (ti == *n_tools) { /* a new call: first delta carries id, type and name */
            assert_true(ti < 16);
            assert_true(strlen(lp_json_get_str(tc, "id")) > 0);
            assert_string_equal(lp_json_get_str(tc, "type"), "function");
            assert_true(strlen(lp_json_get_str(fn, "name")) > 0);
            tools[ti].args[0] = '\0';
            (*n_tools)++;
        } else {
            assert_true(ti >= 0 && ti < *n_tools); /* indices are stable and dense */
            assert_null(lp_json_get(tc, "id"));
            assert_null(lp_json_get(fn, "name"));
        }
        size_t al = strlen(tools[ti].args);
        snprintf(tools[ti].args + al, sizeof tools[ti].args - al, "%s", args);
    }
}

static void check_openai_stream(const char *buf, size_t len, bool include_usage, bool expect_error)
{
    static const char *const finishes[] = {"stop", "length", "tool_calls", "content_filter", NULL};
    struct events e = split_events(buf, len);
    struct oa_tool tools[16];
    int n_tools = 0, n_finish = 0, n_usage = 0;
    char id[128] = "";
    bool done = false, errored = false;
    assert_true(e.n >= 1);
    for (size_t i = 0; i < e.n; i++) {
        assert_string_equal(e.v[i].name, ""); /* OpenAI streams carry no event names */
        assert_false(done || errored);
        if (strcmp(e.v[i].data, "[DONE]") == 0) {
            done = true;
            continue;
        }
        struct json_object *o = parse_json(e.v[i].data);
        if (lp_json_get(o, "error")) {
            assert_true(expect_error);
            assert_non_null(lp_json_get_str(lp_json_get_obj(o, "error"), "message"));
            errored = true;
            json_object_put(o);
            continue;
        }
        assert_string_equal(lp_json_get_str(o, "object"), "chat.completion.chunk");
        assert_string_equal(lp_json_get_str(o, "model"), ALIAS);
        int64_t created;
        assert_true(lp_json_get_int64(o, "created", &created));
        if (i == 0)
            snprintf(id, sizeof id, "%s", lp_json_get_str(o, "id") ? lp_json_get_str(o, "id") : "");
        assert_string_equal(lp_json_get_str(o, "id"), id);
        assert_true(strncmp(id, "chatcmpl-", 9) == 0);
        struct json_object *choices = lp_json_get_arr(o, "choices");
        assert_non_null(choices);
        if (lp_json_arr_len(choices) == 0) { /* the usage chunk: last before [DONE] */
            struct json_object *u = lp_json_get_obj(o, "usage");
            int64_t p = -1, c = -1, t = -1;
            assert_true(lp_json_get_int64(u, "prompt_tokens", &p));
            assert_true(lp_json_get_int64(u, "completion_tokens", &c));
            assert_true(lp_json_get_int64(u, "total_tokens", &t));
            assert_int_equal(t, p + c);
            assert_int_equal(n_finish, 1);
            n_usage++;
            json_object_put(o);
            continue;
        }
        assert_int_equal(n_usage, 0);
        struct json_object *ch = lp_json_arr_at(choices, 0);
        struct json_object *d = lp_json_get_obj(ch, "delta");
        assert_non_null(d);
        if (i == 0) {
            assert_string_equal(lp_json_get_str(d, "role"), "assistant");
        } else {
            assert_null(lp_json_get(d, "role")); /* role only on the first chunk */
        }
        struct json_object *fr = NULL;
        assert_true(json_object_object_get_ex(ch, "finish_reason", &fr)); /* null or a value */
        if (fr) {
            assert_true(str_in(lp_json_str(fr), finishes));
            n_finish++;
        } else {
            assert_int_equal(n_finish, 0); /* no content after the finish chunk */
        }
        struct json_object *tcs = lp_json_get_arr(d, "tool_calls");
        if (tcs)
            check_openai_tool_delta(tcs, tools, &n_tools);
        json_object_put(o);
    }
    for (int t = 0; t < n_tools; t++) {
        struct json_object *in = parse_json(tools[t].args);
        assert_true(lp_json_is_obj(in));
        json_object_put(in);
    }
    if (expect_error) {
        assert_true(errored);
    } else {
        assert_true(done);
        assert_int_equal(n_finish, 1);
        assert_int_equal(n_usage, include_usage ? 1 : 0);
    }
    assert_null(strstr(buf, "\"role\":\"\""));
    assert_null(strstr(buf, "\"finish_reason\":\"\""));
    events_free(&e);
}

/* ---- fixtures ----------------------------------------------------------------------------- */

struct fixture {
    const char *name;
    enum lp_proto up, client;
    bool include_usage;
    bool in_band_error; /* the stream ends with an upstream error event */
};

static const struct fixture fixtures[] = {
    {"o2a_text", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, false},
    {"o2a_parallel_tools", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, false},
    {"o2a_tools_sequential", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, false},
    {"o2a_usage", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, false},
    {"o2a_reasoning", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, false},
    {"o2a_error", LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, false, true},
    {"a2o_text", LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, true, false},
    {"a2o_tool_use", LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, false, false},
    {"a2o_two_tools", LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, true, false},
    {"a2o_thinking", LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, false, false},
    {"a2o_error", LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, false, true},
    /* Gemini alt=sse upstream (CRLF framing, no terminal event: finished at EOF) */
    {"g2o_text", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, true, false},
    {"g2o_tools", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, false, false},
    {"g2o_thinking", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, true, false},
    {"g2o_safety", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, false, false},
    {"g2o_blocked", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, true, false},
    {"g2o_error", LP_PROTO_GOOGLE, LP_PROTO_OPENAI, false, true},
    {"g2a_text", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, false},
    {"g2a_tools", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, false},
    {"g2a_thinking", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, false},
    {"g2a_safety", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, false},
    {"g2a_blocked", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, false},
    {"g2a_error", LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, false, true},
};

/* Translate `in` fed in chunks of the sizes produced by next_size, the way the proxy core does:
 * sse parser -> translator; an in-band error after commit becomes lp_stream_xlat_error. */
static void translate(const struct fixture *f, const char *in, size_t len, uint64_t seed,
                      size_t fixed, struct lp_buf *out)
{
    struct lp_stream_xlat *x = lp_stream_xlat_new(f->up, f->client, ALIAS, f->include_usage, RID);
    struct lp_sse_parser p;
    struct lp_sse_event ev;
    bool declined = false;
    assert_non_null(x);
    lp_stream_xlat_set_created(x, 1700000000);
    lp_sse_init(&p, 0);
    for (size_t off = 0; off < len;) {
        size_t n = fixed ? fixed : 1 + (size_t)lp_rand_below(&seed, 40);
        if (n > len - off)
            n = len - off;
        assert_int_equal(lp_sse_feed(&p, in + off, n), LP_OK);
        off += n;
        while (lp_sse_next(&p, &ev) == LP_OK) {
            enum lp_status rc =
                lp_stream_xlat_event(x, ev.event, ev.event_len, ev.data, ev.data_len, out);
            if (rc == LP_DECLINED) {
                char type[64], msg[256];
                assert_true(
                    lp_sse_event_is_error(f->up, ev.event, ev.event_len, ev.data, ev.data_len));
                assert_true(lp_sse_event_error_info(f->up, ev.data, ev.data_len, type, sizeof type,
                                                    msg, sizeof msg));
                lp_stream_xlat_error(x, type, msg, out);
                declined = true;
            } else {
                assert_int_equal(rc, LP_OK);
            }
        }
    }
    assert_int_equal(declined, f->in_band_error);
    if (!declined) /* the body ends: a Gemini stream is complete only now */
        assert_int_equal(lp_stream_xlat_eof(x, out), LP_OK);
    assert_int_equal(lp_stream_xlat_done(x), !f->in_band_error);
    lp_sse_free(&p);
    lp_stream_xlat_free(x);
}

/* Remove fields that legitimately vary (ids, timestamps) before comparing. */
static void strip_volatile(struct json_object *o)
{
    json_object_object_del(o, "id");
    json_object_object_del(o, "created");
    struct json_object *m = lp_json_get_obj(o, "message");
    if (m)
        json_object_object_del(m, "id");
}

static void compare_events(const char *name, const char *got, size_t got_len, const char *want,
                           size_t want_len)
{
    struct events g = split_events(got, got_len), w = split_events(want, want_len);
    for (size_t i = 0; i < g.n && i < w.n; i++) {
        if (strcmp(g.v[i].name, w.v[i].name) != 0 ||
            (strcmp(w.v[i].data, "[DONE]") == 0) != (strcmp(g.v[i].data, "[DONE]") == 0))
            fail_msg("%s: event %zu: got %s %s, want %s %s", name, i, g.v[i].name, g.v[i].data,
                     w.v[i].name, w.v[i].data);
        if (strcmp(w.v[i].data, "[DONE]") == 0)
            continue;
        struct json_object *a = parse_json(g.v[i].data), *b = parse_json(w.v[i].data);
        strip_volatile(a);
        strip_volatile(b);
        if (!json_object_equal(a, b))
            fail_msg("%s: event %zu differs:\n got  %s\n want %s", name, i, g.v[i].data,
                     w.v[i].data);
        json_object_put(a);
        json_object_put(b);
    }
    if (g.n != w.n)
        fail_msg("%s: got %zu events, want %zu", name, g.n, w.n);
    events_free(&g);
    events_free(&w);
}

static void run_fixture(const struct fixture *f)
{
    char path[512];
    size_t in_len, want_len;
    snprintf(path, sizeof path, FIXDIR "%s.sse", f->name);
    char *in = slurp(path, &in_len);
    struct lp_buf ref, out;
    lp_buf_init(&ref, 0);
    translate(f, in, in_len, 0, in_len, &ref); /* whole input in one feed */

    snprintf(path, sizeof path, FIXDIR "%s.expected.sse", f->name);
    if (getenv("LP_REGEN_STREAM_FIXTURES")) {
        FILE *fp = fopen(path, "wb");
        fwrite(ref.data, 1, ref.len, fp);
        fclose(fp);
    }
    char *want = slurp(path, &want_len);
    compare_events(f->name, ref.data, ref.len, want, want_len);
    if (f->client == LP_PROTO_ANTHROPIC)
        check_anthropic_stream(ref.data, ref.len, f->in_band_error);
    else
        check_openai_stream(ref.data, ref.len, f->include_usage, f->in_band_error);

    /* Any chunking gives byte-identical output (ids and created are fixed here). */
    static const size_t sizes[] = {1, 2, 3, 5, 7, 13, 64, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        lp_buf_init(&out, 0);
        translate(f, in, in_len, 1000 + i, sizes[i], &out);
        if (out.len != ref.len || memcmp(out.data, ref.data, ref.len) != 0)
            fail_msg("%s: chunking %zu/%zu changed the output", f->name, i, sizes[i]);
        lp_buf_free(&out);
    }
    lp_buf_free(&ref);
    free(in);
    free(want);
}

static void test_fixtures(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++)
        run_fixture(&fixtures[i]);
}

/* ---- OpenAI upstream -> Anthropic client -------------------------------------------------- */

#define OA_CHUNK(delta, finish)                                                                    \
    "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","           \
    "\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" finish "}]}"

static void test_o2a_parallel_tools_buffered(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    char path[512];
    size_t len;
    snprintf(path, sizeof path, FIXDIR "o2a_parallel_tools.sse");
    char *in = slurp(path, &len);
    translate(&fixtures[1], in, len, 0, len, &out);
    /* The interleaved fragments end up complete and in the right block. */
    struct events e = split_events(out.data, out.len);
    char acc[2][256] = {"", ""};
    int64_t block = -1;
    for (size_t i = 0; i < e.n; i++) {
        struct json_object *o = parse_json(e.v[i].data);
        struct json_object *cb = lp_json_get_obj(o, "content_block");
        if (cb && strcmp(lp_json_get_str(cb, "type"), "tool_use") == 0) {
            block++;
            assert_string_equal(lp_json_get_str(cb, "id"),
                                block == 0 ? "call_aaa111" : "call_bbb222");
        }
        const char *pj = lp_json_get_str(lp_json_get_obj(o, "delta"), "partial_json");
        if (pj)
            snprintf(acc[block] + strlen(acc[block]), sizeof acc[block] - strlen(acc[block]), "%s",
                     pj);
        json_object_put(o);
    }
    assert_int_equal(block, 1);
    assert_string_equal(acc[0], "{\"city\": \"Paris\", \"unit\": \"c\"}");
    assert_string_equal(acc[1], "{\"tz\": \"Europe/Paris\"}");
    assert_true(contains(&out, "\"stop_reason\":\"tool_use\""));
    events_free(&e);
    free(in);
    lp_buf_free(&out);
}

static void test_o2a_sequential_tools_stream_live(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(
        feed(x, NULL,
             OA_CHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}",
                      "null"),
             &out),
        LP_OK);
    /* The first call's block opens immediately and its fragments stream without delay. */
    assert_true(contains(&out, "\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"f\""));
    lp_buf_reset(&out);
    assert_int_equal(feed(x, NULL,
                          OA_CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                                   "\"{\\\"a\\\":1}\"}}]}",
                                   "null"),
                          &out),
                     LP_OK);
    assert_true(contains(&out, "\"partial_json\":\"{\\\"a\\\":1}\""));
    lp_buf_reset(&out);
    /* The second call starts after the first one's arguments completed: switch at once. */
    assert_int_equal(
        feed(x, NULL,
             OA_CHUNK("{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\"}}]}",
                      "null"),
             &out),
        LP_OK);
    assert_true(contains(&out, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
                               "\"index\":0}"));
    assert_true(contains(&out, "\"index\":1,\"content_block\":{\"type\":\"tool_use\""));
    assert_true(contains(&out, "\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
                               "\"partial_json\":\"{\""));
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_usage_after_finish(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"hi\"}", "null"), &out), LP_OK);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{}", "\"length\""), &out), LP_OK);
    /* Finished, but usage is announced later: message_delta is held back. */
    assert_false(contains(&out, "message_delta"));
    assert_true(contains(&out, "content_block_stop"));
    assert_int_equal(feed(x, NULL,
                          "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":100,"
                          "\"completion_tokens\":9,\"total_tokens\":109,"
                          "\"prompt_tokens_details\":{\"cached_tokens\":60}}}",
                          &out),
                     LP_OK);
    assert_true(contains(&out, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
                               "\"max_tokens\",\"stop_sequence\":null},\"usage\":{"
                               "\"output_tokens\":9,\"input_tokens\":40,"
                               "\"cache_read_input_tokens\":60}}"));
    assert_false(contains(&out, "message_stop"));
    assert_false(lp_stream_xlat_done(x));
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_true(lp_stream_xlat_done(x));
    assert_int_equal(count(&out, "event: message_delta"), 1);
    assert_int_equal(count(&out, "event: message_stop"), 1);
    struct lp_stream_usage u = lp_stream_xlat_usage(x);
    assert_int_equal(u.input, 100);
    assert_int_equal(u.output, 9);
    assert_int_equal(u.cached, 60);
    /* Events after the end are ignored. */
    size_t before = out.len;
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"late\"}", "null"), &out), LP_OK);
    assert_int_equal(out.len, before);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_finish_mapping(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"\"stop\"", "end_turn"},          {"\"length\"", "max_tokens"},
        {"\"tool_calls\"", "tool_use"},    {"\"function_call\"", "tool_use"},
        {"\"content_filter\"", "refusal"}, {"\"weird_new\"", "end_turn"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        struct lp_buf out;
        char chunk[256], want[128];
        lp_buf_init(&out, 0);
        struct lp_stream_xlat *x =
            lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
        snprintf(chunk, sizeof chunk,
                 "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":%s}]}",
                 map[i][0]);
        assert_int_equal(feed(x, NULL, chunk, &out), LP_OK);
        assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
        snprintf(want, sizeof want, "\"stop_reason\":\"%s\"", map[i][1]);
        assert_true(contains(&out, want));
        check_anthropic_stream(out.data, out.len, false);
        lp_stream_xlat_free(x);
        lp_buf_free(&out);
    }
}

static void test_o2a_stop_with_tool_calls_is_tool_use(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, NULL);
    /* No id upstream (some servers): one is derived; "stop" after a tool call means tool_use. */
    assert_int_equal(feed(x, NULL,
                          OA_CHUNK("{\"tool_calls\":[{\"function\":{\"name\":\"f\","
                                   "\"arguments\":\"{}\"}}]}",
                                   "\"stop\""),
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_true(contains(&out, "\"id\":\"toolu_proxy_0\",\"name\":\"f\""));
    assert_true(contains(&out, "\"stop_reason\":\"tool_use\""));
    assert_true(contains(&out, "\"id\":\"msg_proxy\""));
    check_anthropic_stream(out.data, out.len, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_nameless_call_dropped(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL,
                          OA_CHUNK("{\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":"
                                   "\"{}\"}}]}",
                                   "\"tool_calls\""),
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_false(contains(&out, "tool_use\",\"id\""));
    assert_true(contains(&out, "\"stop_reason\":\"tool_use\"")); /* as upstream said */
    check_anthropic_stream(out.data, out.len, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_thinking_then_text(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    /* vLLM/OpenRouter name the field "reasoning". */
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"reasoning\":\"hmm\"}", "null"), &out), LP_OK);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"ok\"}", "\"stop\""), &out), LP_OK);
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_true(contains(&out, "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\","
                               "\"signature\":\"\"}"));
    assert_true(contains(&out, "{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}"));
    assert_true(contains(&out, "\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}"));
    check_anthropic_stream(out.data, out.len, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_error_termination(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"par\"}", "null"), &out), LP_OK);
    lp_buf_reset(&out);
    lp_stream_xlat_error(x, "timeout", "upstream \"stalled\"", &out);
    assert_string_equal(out.data, "event: content_block_stop\n"
                                  "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                                  "event: error\n"
                                  "data: {\"type\":\"error\",\"error\":{\"type\":\"timeout_error\","
                                  "\"message\":\"upstream \\\"stalled\\\"\"}}\n\n");
    /* Terminal: later events and a second error add nothing; done() stays false. */
    size_t before = out.len;
    lp_stream_xlat_error(x, NULL, NULL, &out);
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_int_equal(out.len, before);
    assert_false(lp_stream_xlat_done(x));
    assert_int_equal(lp_stream_xlat_eof(x, &out), LP_DECLINED);
    lp_stream_xlat_free(x);

    /* Before any output: just the error event, with the default type. */
    lp_buf_reset(&out);
    x = lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    lp_stream_xlat_error(x, NULL, "boom", &out);
    assert_string_equal(out.data, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                                  "\"api_error\",\"message\":\"boom\"}}\n\n");
    check_anthropic_stream(out.data, out.len, true);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

/* response_format's forced tool streams as content and finishes with "stop". */
static void test_a2o_json_response_tool_is_content(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, false, RID);
    assert_int_equal(feed(x, "message_start", "{\"type\":\"message_start\",\"message\":{}}", &out),
                     LP_OK);
    assert_int_equal(feed(x, "content_block_start",
                          "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                          "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"json_response\","
                          "\"input\":{}}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "content_block_delta",
                          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                          "\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "content_block_delta",
                          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                          "\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "message_delta",
                          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "message_stop", "{\"type\":\"message_stop\"}", &out), LP_OK);
    assert_false(contains(&out, "tool_calls"));
    assert_true(contains(&out, "{\"content\":\"{\\\"city\\\": \"}"));
    assert_true(contains(&out, "{\"content\":\"\\\"Paris\\\"}\"}"));
    assert_true(contains(&out, "\"finish_reason\":\"stop\""));
    assert_true(lp_stream_xlat_done(x));
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

/* Mid-stream errors use the client's error vocabulary whatever the upstream called them. */
static void test_error_event_vocabulary(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    lp_stream_xlat_error(x, "rate_limit_exceeded", "slow", &out);
    assert_non_null(strstr(out.data, "\"type\":\"rate_limit_error\""));
    lp_stream_xlat_free(x);
    lp_buf_reset(&out);
    x = lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    lp_stream_xlat_error(x, "insufficient_quota", "pay", &out);
    assert_non_null(strstr(out.data, "\"type\":\"billing_error\""));
    lp_stream_xlat_free(x);
    lp_buf_reset(&out);
    x = lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, false, RID);
    lp_stream_xlat_error(x, "rate_limit_error", "slow", &out);
    assert_non_null(strstr(out.data, "\"type\":\"rate_limit_error\",\"param\":null,"
                                     "\"code\":\"rate_limit_exceeded\""));
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_eof(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"a\"}", "null"), &out), LP_OK);
    assert_int_equal(lp_stream_xlat_eof(x, &out), LP_DECLINED); /* cut short: caller errors */
    assert_int_equal(feed(x, NULL, OA_CHUNK("{}", "\"stop\""), &out), LP_OK);
    assert_int_equal(lp_stream_xlat_eof(x, &out), LP_OK); /* finished, [DONE] missing: fine */
    assert_true(lp_stream_xlat_done(x));
    check_anthropic_stream(out.data, out.len, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_bad_input(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL, "{not json", &out), LP_ERR_PARSE);
    assert_int_equal(feed(x, NULL, "[1,2]", &out), LP_ERR_PARSE);
    assert_int_equal(out.len, 0);
    assert_int_equal(feed(x, NULL, "{\"error\":{\"message\":\"quota\"}}", &out), LP_DECLINED);
    assert_int_equal(feed(x, "error", "{\"message\":\"named\"}", &out), LP_DECLINED);
    assert_int_equal(out.len, 0);
    /* Wrongly typed members are ignored rather than trusted. */
    assert_int_equal(feed(x, NULL, "{\"choices\":{\"delta\":1},\"usage\":[]}", &out), LP_OK);
    assert_int_equal(feed(x, NULL,
                          "{\"choices\":[{\"delta\":{\"content\":7,\"tool_calls\":{}},"
                          "\"finish_reason\":5}]}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, NULL, "  ", &out), LP_OK); /* empty data */
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    check_anthropic_stream(out.data, out.len, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_o2a_caps(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    char chunk[256];
    enum lp_status rc = LP_OK;
    for (int i = 0; i <= LP_STREAM_XLAT_MAX_CALLS && rc == LP_OK; i++) {
        snprintf(chunk, sizeof chunk,
                 "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":%d,\"id\":\"c%d\","
                 "\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}",
                 i, i);
        rc = feed(x, NULL, chunk, &out);
    }
    assert_int_equal(rc, LP_ERR_TOOBIG);
    lp_stream_xlat_free(x);

    /* Held-back arguments are capped: call 0 never completes, call 1 grows past the cap. */
    lp_buf_reset(&out);
    x = lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL,
                          "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\","
                          "\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}",
                          &out),
                     LP_OK);
    size_t big = 1024 * 1024;
    char *data = malloc(big + 200);
    int n = snprintf(data, 200,
                     "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,"
                     "\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"");
    memset(data + n, 'x', big);
    memcpy(data + n + big, "\"}}]}}]}", sizeof "\"}}]}}]}");
    rc = LP_OK;
    for (int i = 0; i < 8 && rc == LP_OK; i++)
        rc = feed(x, NULL, data, &out);
    assert_int_equal(rc, LP_ERR_TOOBIG);
    free(data);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_ids(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, "msg_abc\"<>1");
    assert_int_equal(feed(x, NULL, "[DONE]", &out), LP_OK);
    assert_true(contains(&out, "\"id\":\"msg_abc1\"")); /* no double prefix, no injection */
    lp_stream_xlat_free(x);
    lp_buf_reset(&out);
    x = lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, "a\"b", false, "r-1");
    assert_int_equal(feed(x, "message_stop", "{\"type\":\"message_stop\"}", &out), LP_OK);
    assert_true(contains(&out, "\"id\":\"chatcmpl-r-1\""));
    assert_true(contains(&out, "\"model\":\"a\\\"b\""));
    lp_stream_xlat_free(x);
    assert_null(lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_OPENAI, ALIAS, false, RID));
    lp_stream_xlat_free(NULL);
    lp_buf_free(&out);
}

/* ---- Anthropic upstream -> OpenAI client -------------------------------------------------- */

static void test_a2o_stop_mapping(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"end_turn", "stop"},       {"stop_sequence", "stop"},     {"max_tokens", "length"},
        {"tool_use", "tool_calls"}, {"refusal", "content_filter"}, {"pause_turn", "stop"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        struct lp_buf out;
        char data[256], want[128];
        lp_buf_init(&out, 0);
        struct lp_stream_xlat *x =
            lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, false, RID);
        snprintf(data, sizeof data,
                 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\"},"
                 "\"usage\":{\"output_tokens\":3}}",
                 map[i][0]);
        assert_int_equal(feed(x, "message_delta", data, &out), LP_OK);
        assert_int_equal(feed(x, "message_stop", "{\"type\":\"message_stop\"}", &out), LP_OK);
        snprintf(want, sizeof want, "\"finish_reason\":\"%s\"", map[i][1]);
        assert_true(contains(&out, want));
        check_openai_stream(out.data, out.len, false, false);
        lp_stream_xlat_free(x);
        lp_buf_free(&out);
    }
}

static void test_a2o_usage_chunk(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, true, RID);
    lp_stream_xlat_set_created(x, 1700000000);
    assert_int_equal(feed(x, "message_start",
                          "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":"
                          "10,\"cache_read_input_tokens\":30,\"cache_creation_input_tokens\":5,"
                          "\"output_tokens\":1}}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "message_delta",
                          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                          "\"usage\":{\"output_tokens\":7}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "message_stop", "{\"type\":\"message_stop\"}", &out), LP_OK);
    assert_true(contains(&out, "data: {\"id\":\"chatcmpl-req-42\",\"object\":\"chat.completion."
                               "chunk\",\"created\":1700000000,\"model\":\"team/model\","
                               "\"choices\":[],\"usage\":{\"prompt_tokens\":45,"
                               "\"completion_tokens\":7,\"total_tokens\":52,"
                               "\"prompt_tokens_details\":{\"cached_tokens\":30}}}\n\n"
                               "data: [DONE]\n\n"));
    struct lp_stream_usage u = lp_stream_xlat_usage(x);
    assert_int_equal(u.input, 45);
    assert_int_equal(u.output, 7);
    assert_int_equal(u.cached, 30);
    check_openai_stream(out.data, out.len, true, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_a2o_error_termination(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, true, RID);
    assert_int_equal(feed(x, "message_start", "{\"type\":\"message_start\",\"message\":{}}", &out),
                     LP_OK);
    /* In-band errors, named or only typed, are declined and produce nothing. */
    size_t before = out.len;
    assert_int_equal(feed(x, "error", "garbage", &out), LP_DECLINED);
    assert_int_equal(feed(x, NULL, "{\"type\":\"error\",\"error\":{\"type\":\"x\"}}", &out),
                     LP_DECLINED);
    assert_int_equal(out.len, before);
    lp_buf_reset(&out);
    lp_stream_xlat_error(x, "overloaded_error", "Overloaded", &out);
    /* In the client's vocabulary: OpenAI type and code, never Anthropic's type name. */
    assert_string_equal(out.data, "data: {\"error\":{\"message\":\"Overloaded\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":\"overloaded\"}}\n\n");
    lp_stream_xlat_error(x, "again", "x", &out);
    assert_int_equal(count(&out, "data:"), 1);
    assert_false(contains(&out, "[DONE]"));
    assert_false(lp_stream_xlat_done(x));
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_a2o_eof_and_bad_input(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, false, RID);
    assert_int_equal(feed(x, "content_block_delta", "{\"type\":", &out), LP_ERR_PARSE);
    assert_int_equal(feed(x, "ping", "{\"type\":\"ping\"}", &out), LP_OK);
    assert_int_equal(out.len, 0); /* ping dropped, nothing started yet */
    /* A delta for an unknown block, a tool delta for a text block, an unknown event: ignored. */
    assert_int_equal(feed(x, "content_block_start",
                          "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                          "{\"type\":\"text\",\"text\":\"\"}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "content_block_delta",
                          "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                          "\"input_json_delta\",\"partial_json\":\"{}\"}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "future_event", "{\"type\":\"future_event\"}", &out), LP_OK);
    assert_false(contains(&out, "tool_calls"));
    assert_int_equal(lp_stream_xlat_eof(x, &out), LP_DECLINED);
    assert_int_equal(feed(x, "message_delta",
                          "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}",
                          &out),
                     LP_OK);
    assert_int_equal(lp_stream_xlat_eof(x, &out), LP_OK);
    assert_true(lp_stream_xlat_done(x));
    check_openai_stream(out.data, out.len, false, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_a2o_tool_input_in_start(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 0);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, ALIAS, false, RID);
    /* Without message_start (non-standard upstream) the role chunk still comes first. */
    assert_int_equal(feed(x, "content_block_start",
                          "{\"type\":\"content_block_start\",\"index\":4,\"content_block\":"
                          "{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"t\","
                          "\"input\":{\"q\":1}}}",
                          &out),
                     LP_OK);
    assert_int_equal(feed(x, "message_stop", "{\"type\":\"message_stop\"}", &out), LP_OK);
    assert_true(contains(&out, "{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_9\",\"type\":"
                               "\"function\",\"function\":{\"name\":\"t\",\"arguments\":"
                               "\"{\\\"q\\\":1}\"}}]}"));
    check_openai_stream(out.data, out.len, false, false);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

static void test_out_ceiling(void **state)
{
    (void)state;
    struct lp_buf out;
    lp_buf_init(&out, 16);
    struct lp_stream_xlat *x =
        lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, ALIAS, false, RID);
    assert_int_equal(feed(x, NULL, OA_CHUNK("{\"content\":\"hello\"}", "null"), &out),
                     LP_ERR_TOOBIG);
    lp_stream_xlat_free(x);
    lp_buf_free(&out);
}

/* ---- classification ----------------------------------------------------------------------- */

static void test_is_error(void **state)
{
    (void)state;
    const char *s;
    assert_true(lp_sse_event_is_error(LP_PROTO_ANTHROPIC, "error", 5, "x", 1));
    s = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"o\"}}";
    assert_true(lp_sse_event_is_error(LP_PROTO_ANTHROPIC, NULL, 0, s, strlen(s)));
    s = "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\","
        "\"text\":\"\\\"error\\\"\"}}";
    assert_false(
        lp_sse_event_is_error(LP_PROTO_ANTHROPIC, "content_block_delta", 19, s, strlen(s)));
    s = "{\"error\":{\"message\":\"m\",\"code\":\"rate_limit_exceeded\"}}";
    assert_true(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, s, strlen(s)));
    s = "{\"error\":null,\"choices\":[]}";
    assert_false(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, s, strlen(s)));
    s = "{\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\"\"}}]}";
    assert_false(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, s, strlen(s)));
    assert_false(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, "[DONE]", 6));
    assert_false(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, "{\"error\"", 8));
    assert_false(lp_sse_event_is_error(LP_PROTO_OPENAI, NULL, 0, NULL, 0));
    assert_true(lp_sse_event_is_error(LP_PROTO_OPENAI, "error", 5, "{}", 2));
}

static void test_error_info(void **state)
{
    (void)state;
    char type[32], msg[8];
    const char *s = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
                    "\"Overloaded now\"}}";
    assert_true(lp_sse_event_error_info(LP_PROTO_ANTHROPIC, s, strlen(s), type, sizeof type, msg,
                                        sizeof msg));
    assert_string_equal(type, "overloaded_error");
    assert_string_equal(msg, "Overloa"); /* truncated to fit */
    s = "{\"error\":{\"message\":\"m\",\"code\":\"rate_limit\"}}";
    assert_true(
        lp_sse_event_error_info(LP_PROTO_OPENAI, s, strlen(s), type, sizeof type, msg, sizeof msg));
    assert_string_equal(type, "rate_limit");
    assert_string_equal(msg, "m");
    s = "{\"error\":\"plain\"}";
    assert_true(
        lp_sse_event_error_info(LP_PROTO_OPENAI, s, strlen(s), type, sizeof type, msg, sizeof msg));
    assert_string_equal(type, "api_error");
    assert_string_equal(msg, "plain");
    assert_false(
        lp_sse_event_error_info(LP_PROTO_OPENAI, "nope", 4, type, sizeof type, msg, sizeof msg));
    assert_string_equal(type, "api_error");
    assert_string_equal(msg, "");
}

/* ---- pass-through tap --------------------------------------------------------------------- */

static bool tap(struct lp_stream_tap *t, const char *event, const char *data)
{
    return lp_stream_tap_event(t, event, event ? strlen(event) : 0, data, strlen(data));
}

static void test_tap_openai(void **state)
{
    (void)state;
    const char *usage_only = "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
                             "\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":5,"
                             "\"total_tokens\":55,\"prompt_tokens_details\":{\"cached_tokens\":"
                             "32}}}";
    struct lp_stream_tap t;
    lp_stream_tap_init(&t, LP_PROTO_OPENAI, false);
    assert_int_equal(t.usage.input, -1);
    assert_false(tap(&t, NULL, OA_CHUNK("{\"content\":\"usage\"}", "null")));
    assert_false(tap(&t, NULL, "{\"choices\":[{\"delta\":{}}],\"usage\":null}"));
    assert_int_equal(t.usage.input, -1);
    assert_true(tap(&t, NULL, usage_only)); /* injected for us: withhold it */
    assert_int_equal(t.usage.input, 50);
    assert_int_equal(t.usage.output, 5);
    assert_int_equal(t.usage.cached, 32);
    assert_false(t.done);
    assert_false(tap(&t, NULL, "[DONE]"));
    assert_true(t.done);

    lp_stream_tap_init(&t, LP_PROTO_OPENAI, true);
    assert_false(tap(&t, NULL, usage_only)); /* the client asked for it */
    assert_int_equal(t.usage.output, 5);

    /* A chunk with content and usage is never withheld (bytes are not edited). */
    lp_stream_tap_init(&t, LP_PROTO_OPENAI, false);
    assert_false(tap(&t, NULL,
                     "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
                     "\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
                     "\"prompt_cache_hit_tokens\":2}}"));
    assert_int_equal(t.usage.input, 3);
    assert_int_equal(t.usage.cached, 2);
    assert_false(tap(&t, NULL, "{garbage \"usage\": 1"));
}

static void test_tap_anthropic(void **state)
{
    (void)state;
    struct lp_stream_tap t;
    lp_stream_tap_init(&t, LP_PROTO_ANTHROPIC, false);
    assert_false(tap(&t, "message_start",
                     "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":8,"
                     "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":1000,"
                     "\"output_tokens\":1}}}"));
    assert_int_equal(t.usage.input, 1108);
    assert_int_equal(t.usage.cached, 1000);
    assert_int_equal(t.usage.output, 1);
    assert_false(tap(&t, "content_block_delta",
                     "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                     "\"text_delta\",\"text\":\"\\\"message_stop\\\"\"}}"));
    assert_false(t.done);
    assert_false(tap(&t, "message_delta",
                     "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                     "\"usage\":{\"output_tokens\":42}}"));
    assert_int_equal(t.usage.output, 42);
    assert_int_equal(t.usage.input, 1108); /* kept: message_delta had no input_tokens */
    assert_false(tap(&t, "message_stop", "{\"type\":\"message_stop\"}"));
    assert_true(t.done);

    /* Unnamed events are recognised by their type. */
    lp_stream_tap_init(&t, LP_PROTO_ANTHROPIC, false);
    assert_false(tap(&t, NULL,
                     "{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":5,"
                     "\"output_tokens\":6}}"));
    assert_int_equal(t.usage.input, 5);
    assert_int_equal(t.usage.cached, 0);
    assert_false(tap(&t, NULL, "{\"type\":\"message_stop\"}"));
    assert_true(t.done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_o2a_parallel_tools_buffered),
        cmocka_unit_test(test_o2a_sequential_tools_stream_live),
        cmocka_unit_test(test_o2a_usage_after_finish),
        cmocka_unit_test(test_o2a_finish_mapping),
        cmocka_unit_test(test_o2a_stop_with_tool_calls_is_tool_use),
        cmocka_unit_test(test_o2a_nameless_call_dropped),
        cmocka_unit_test(test_o2a_thinking_then_text),
        cmocka_unit_test(test_o2a_error_termination),
        cmocka_unit_test(test_o2a_eof),
        cmocka_unit_test(test_error_event_vocabulary),
        cmocka_unit_test(test_a2o_json_response_tool_is_content),
        cmocka_unit_test(test_o2a_bad_input),
        cmocka_unit_test(test_o2a_caps),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_a2o_stop_mapping),
        cmocka_unit_test(test_a2o_usage_chunk),
        cmocka_unit_test(test_a2o_error_termination),
        cmocka_unit_test(test_a2o_eof_and_bad_input),
        cmocka_unit_test(test_a2o_tool_input_in_start),
        cmocka_unit_test(test_out_ceiling),
        cmocka_unit_test(test_is_error),
        cmocka_unit_test(test_error_info),
        cmocka_unit_test(test_tap_openai),
        cmocka_unit_test(test_tap_anthropic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
