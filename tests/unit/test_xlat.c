/* test_xlat.c - golden tests for proto/xlat: every tests/fixtures/xlat/<case>.in.json is
 * translated and compared, as parsed JSON (ignoring `created`), with <case>.out.json.
 *
 * The case name says what runs (o = OpenAI, a = Anthropic, g = Google): req_o2a_* / req_a2o_*
 * (requests; optional <case>.opts.json with upstream_model, default_max_tokens, max_tokens_limit,
 * stream), resp_a2o_* / resp_o2a_* (responses, alias "my-alias"), err_XY_* (error bodies from X to
 * Y; the input is
 * {"status":N,"body":"<raw upstream body>"}). An out.json of {"_xlat_error":...} expects a
 * refusal, {"_passthrough":true} expects NULL from lp_xlat_error.
 * LP_XLAT_REGEN=1 writes missing out.json files from the current output (review them!).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/xlat.h"
#include "util/json.h"

#define DIR_XLAT LP_FIXTURES_DIR "/xlat"

static char *slurp(const char *path, size_t *len)
{
    if (len)
        *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = '\0';
    if (len)
        *len = got;
    return b;
}

static struct json_object *load_json(const char *name, const char *suffix)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s%s", DIR_XLAT, name, suffix);
    size_t n;
    char *s = slurp(path, &n);
    if (!s)
        return NULL;
    struct json_object *j = lp_json_parse(s, n, NULL);
    free(s);
    return j;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Case names (without .in.json) starting with prefix, sorted. */
static char **list_cases(const char *prefix, size_t *n)
{
    DIR *d = opendir(DIR_XLAT);
    assert_non_null(d);
    char **v = NULL;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 9 || strcmp(e->d_name + l - 8, ".in.json") ||
            strncmp(e->d_name, prefix, strlen(prefix)))
            continue;
        v = realloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = strndup(e->d_name, l - 8);
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_cases(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static struct lp_xlat_opts opts_for(const char *name)
{
    struct lp_xlat_opts o = {
        .upstream_model = "up-model", .default_max_tokens = 4096, .request_id = "test"};
    struct json_object *j = load_json(name, ".opts.json");
    int64_t v;
    if (lp_json_get_int64(j, "default_max_tokens", &v))
        o.default_max_tokens = v;
    if (lp_json_get_int64(j, "max_tokens_limit", &v))
        o.max_tokens_limit = v;
    o.stream = lp_json_get_bool(j, "stream", false);
    static char model[64];
    if (lp_json_get_str(j, "upstream_model")) {
        snprintf(model, sizeof model, "%s", lp_json_get_str(j, "upstream_model"));
        o.upstream_model = model;
    }
    o.drop_unsupported = lp_json_get_bool(j, "drop_unsupported", false);
    json_object_put(j);
    return o;
}

static enum lp_proto proto_of(char c)
{
    return c == 'a' ? LP_PROTO_ANTHROPIC : c == 'g' ? LP_PROTO_GOOGLE : LP_PROTO_OPENAI;
}

/* Run one case; returns the output body (heap) or NULL, with err filled for requests. */
static char *run_case(const char *name, struct lp_xlat_err *err, size_t *out_len)
{
    size_t len;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.in.json", DIR_XLAT, name);
    char *in = slurp(path, &len);
    assert_non_null(in);
    char *out = NULL;
    const char *dir = strchr(name, '_') + 1; /* "o2a_..." */
    enum lp_proto from = proto_of(dir[0]), to = proto_of(dir[2]);
    memset(err, 0, sizeof *err);
    if (!strncmp(name, "req_", 4)) {
        struct lp_xlat_opts o = opts_for(name);
        out = lp_xlat_request(from, to, in, len, &o, out_len, err);
    } else if (!strncmp(name, "resp_", 5)) {
        out = lp_xlat_response(from, to, in, len, "my-alias", out_len);
    } else {
        struct json_object *j = lp_json_parse(in, len, NULL);
        int64_t status = 0;
        lp_json_get_int64(j, "status", &status);
        const char *body = lp_json_get_str(j, "body");
        out = lp_xlat_error(from, to, (int)status, body, strlen(body), out_len);
        json_object_put(j);
    }
    free(in);
    return out;
}

static void regen(const char *name, const char *out)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.out.json", DIR_XLAT, name);
    FILE *f = fopen(path, "wx");
    if (!f)
        return; /* exists */
    struct json_object *j = lp_json_parse(out, strlen(out), NULL);
    fprintf(f, "%s\n",
            json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE));
    fclose(f);
    json_object_put(j);
}

static void check_expected_failure(const char *name, struct json_object *want, const char *out,
                                   const struct lp_xlat_err *err)
{
    struct json_object *xe = lp_json_get(want, "_xlat_error");
    if (!xe) {
        assert_true(lp_json_get_bool(want, "_passthrough", false));
        assert_null(out);
        return;
    }
    if (out)
        fail_msg("%s: expected a refusal, got %s", name, out);
    if (lp_json_is_obj(xe)) {
        int64_t st = 0;
        lp_json_get_int64(xe, "status", &st);
        assert_int_equal(err->status, st);
        assert_string_equal(err->type, "invalid_request_error");
        const char *sub = lp_json_get_str(xe, "message_contains");
        if (!strstr(err->message, sub))
            fail_msg("%s: message \"%s\" lacks \"%s\"", name, err->message, sub);
    }
}

static void check_case(const char *name)
{
    struct lp_xlat_err err;
    size_t out_len = 0;
    char *out = run_case(name, &err, &out_len);
    struct json_object *want = load_json(name, ".out.json");
    if (!want && out && getenv("LP_XLAT_REGEN")) {
        regen(name, out);
        want = load_json(name, ".out.json");
    }
    if (!want)
        fail_msg("%s: missing or invalid %s.out.json (output was %s)", name, name,
                 out ? out : err.message);
    if (lp_json_get(want, "_xlat_error") || lp_json_get(want, "_passthrough")) {
        check_expected_failure(name, want, out, &err);
    } else {
        if (!out)
            fail_msg("%s: translation failed: %s", name, err.message);
        assert_int_equal(strlen(out), out_len);
        assert_null(strstr(out, "\"role\":\"\"")); /* never an empty enum */
        struct json_object *got = lp_json_parse(out, out_len, NULL);
        assert_non_null(got);
        json_object_object_del(got, "created");
        json_object_object_del(want, "created");
        if (!json_object_equal(got, want))
            fail_msg("%s: mismatch\n got: %s\nwant: %s", name, out,
                     json_object_to_json_string_ext(want, JSON_C_TO_STRING_PLAIN));
        json_object_put(got);
    }
    json_object_put(want);
    free(out);
}

static void run_prefix(const char *prefix, size_t min_cases)
{
    size_t n;
    char **cases = list_cases(prefix, &n);
    assert_true(n >= min_cases);
    for (size_t i = 0; i < n; i++)
        check_case(cases[i]);
    free_cases(cases, n);
}

static void test_golden_requests_o2a(void **s)
{
    (void)s;
    run_prefix("req_o2a_", 10);
}
static void test_golden_requests_a2o(void **s)
{
    (void)s;
    run_prefix("req_a2o_", 5);
}
/* Google backends: OpenAI and Anthropic clients (the latter through a2o first). */
static void test_golden_requests_google(void **s)
{
    (void)s;
    run_prefix("req_o2g_", 5);
    run_prefix("req_a2g_", 2);
}
static void test_golden_responses(void **s)
{
    (void)s;
    run_prefix("resp_", 8);
}
static void test_golden_errors(void **s)
{
    (void)s;
    run_prefix("err_", 10);
}

/* ---- round trip: OpenAI -> Anthropic -> OpenAI keeps the conversation's meaning ---- */

static void append_nows(char *dst, size_t cap, const char *s)
{
    size_t l = strlen(dst);
    for (; s && *s && l + 1 < cap; s++)
        if (*s != ' ' && *s != '\n' && *s != '\t' && *s != '\r')
            dst[l++] = *s;
    dst[l] = '\0';
}

/* Text of a message, whitespace removed (separators between parts differ by design), images
 * as [img:url]. */
static void canon_text(struct json_object *content, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (lp_json_is_str(content))
        append_nows(dst, cap, lp_json_str(content));
    for (size_t i = 0; i < lp_json_arr_len(content); i++) {
        struct json_object *p = lp_json_arr_at(content, i);
        const char *t = lp_json_get_str(p, "type");
        if (!strcmp(t, "text"))
            append_nows(dst, cap, lp_json_get_str(p, "text"));
        else if (!strcmp(t, "refusal"))
            append_nows(dst, cap, lp_json_get_str(p, "refusal"));
        else if (!strcmp(t, "image_url")) {
            append_nows(dst, cap, "[img:");
            append_nows(dst, cap, lp_json_get_str(lp_json_get_obj(p, "image_url"), "url"));
            append_nows(dst, cap, "]");
        } else if (!strcmp(t, "file")) {
            append_nows(dst, cap, "[file:");
            append_nows(dst, cap, lp_json_get_str(lp_json_get_obj(p, "file"), "file_data"));
            append_nows(dst, cap, "]");
        }
    }
}

static struct json_object *canon_calls(struct json_object *tcs)
{
    struct json_object *r = json_object_new_array();
    for (size_t j = 0; j < lp_json_arr_len(tcs); j++) {
        struct json_object *tc = lp_json_arr_at(tcs, j), *c = json_object_new_object();
        struct json_object *fn = lp_json_get_obj(tc, "function");
        const char *a = lp_json_get_str(fn, "arguments");
        struct json_object *args = a && *a ? lp_json_parse(a, strlen(a), NULL) : NULL;
        lp_json_set_str(c, "id", lp_json_get_str(tc, "id"));
        lp_json_set_str(c, "name", lp_json_get_str(fn, "name"));
        lp_json_set(c, "args", args ? args : json_object_new_object());
        json_object_array_add(r, c);
    }
    return r;
}

/* Canonical conversation: [{role, text, calls, id}], with the documented normalisations:
 * developer -> system, system after the first turn -> <system-reminder> user text, consecutive
 * same-role messages merged, empty messages dropped. */
static struct json_object *canon(struct json_object *msgs)
{
    struct json_object *r = json_object_new_array();
    bool seen_turn = false;
    for (size_t i = 0; i < lp_json_arr_len(msgs); i++) {
        struct json_object *m = lp_json_arr_at(msgs, i);
        const char *role = lp_json_get_str(m, "role");
        char buf[8192], w[8300];
        const char *text = buf;
        canon_text(lp_json_get(m, "content"), buf, sizeof buf);
        if (!strcmp(role, "developer"))
            role = "system";
        if (!strcmp(role, "system") && seen_turn) {
            snprintf(w, sizeof w, "<system-reminder>%s</system-reminder>", buf);
            text = w;
            role = "user";
        }
        seen_turn |= strcmp(role, "system") != 0;
        struct json_object *calls = canon_calls(lp_json_get_arr(m, "tool_calls"));
        struct json_object *prev = lp_json_arr_at(r, json_object_array_length(r) - 1);
        const char *prole = prev ? lp_json_get_str(prev, "role") : NULL;
        if (!*text && lp_json_arr_len(calls) == 0 && strcmp(role, "tool")) {
            json_object_put(calls);
            continue;
        }
        if (prole && !strcmp(prole, role) && strcmp(role, "tool")) {
            char merged[16384];
            snprintf(merged, sizeof merged, "%s%s", lp_json_get_str(prev, "text"), text);
            lp_json_set_str(prev, "text", merged);
            struct json_object *pc = lp_json_get_arr(prev, "calls");
            for (size_t k = 0; k < lp_json_arr_len(calls); k++)
                json_object_array_add(pc, json_object_get(lp_json_arr_at(calls, k)));
            json_object_put(calls);
            continue;
        }
        struct json_object *c = json_object_new_object();
        lp_json_set_str(c, "role", role);
        lp_json_set_str(c, "text", text);
        lp_json_set(c, "calls", calls);
        lp_json_set_str(c, "id", lp_json_get_str(m, "tool_call_id"));
        json_object_array_add(r, c);
    }
    return r;
}

static void test_round_trip_o2a2o(void **s)
{
    (void)s;
    size_t n, tested = 0;
    char **cases = list_cases("req_o2a_", &n);
    for (size_t i = 0; i < n; i++) {
        struct lp_xlat_err err;
        size_t alen, blen;
        if (strstr(cases[i], "_name"))
            continue; /* message names become text prefixes: not reversible by design */
        char *a = run_case(cases[i], &err, &alen);
        if (!a)
            continue; /* refusal cases */
        struct lp_xlat_opts o = {.upstream_model = "m2"};
        char *b = lp_xlat_request(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, a, alen, &o, &blen, &err);
        if (!b && strstr(err.message, "(prefill)")) {
            free(a); /* an OpenAI history ending on an assistant turn: refused the other way */
            continue;
        }
        if (!b)
            fail_msg("%s: back-translation failed: %s", cases[i], err.message);
        char path[512];
        snprintf(path, sizeof path, "%s/%s.in.json", DIR_XLAT, cases[i]);
        size_t olen;
        char *orig = slurp(path, &olen);
        struct json_object *jo = lp_json_parse(orig, olen, NULL),
                           *jb = lp_json_parse(b, blen, NULL);
        struct json_object *co = canon(lp_json_get_arr(jo, "messages"));
        struct json_object *cb = canon(lp_json_get_arr(jb, "messages"));
        if (!json_object_equal(co, cb))
            fail_msg("%s: round trip changed the conversation\n orig: %s\n back: %s", cases[i],
                     json_object_to_json_string(co), json_object_to_json_string(cb));
        tested++;
        json_object_put(co);
        json_object_put(cb);
        json_object_put(jo);
        json_object_put(jb);
        free(orig);
        free(a);
        free(b);
    }
    assert_true(tested >= 10);
    free_cases(cases, n);
}

/* ---- targeted behaviour ---- */

static void test_rejects_non_object(void **s)
{
    (void)s;
    struct lp_xlat_err err;
    struct lp_xlat_opts o = {0};
    size_t n;
    const char *bodies[] = {"[]", "42", "{\"messages\":", "", "{\"messages\":{}}"};
    for (size_t i = 0; i < 5; i++) {
        for (int dir = 0; dir < 2; dir++) {
            memset(&err, 0, sizeof err);
            char *r = lp_xlat_request(dir ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI,
                                      dir ? LP_PROTO_OPENAI : LP_PROTO_ANTHROPIC, bodies[i],
                                      strlen(bodies[i]), &o, &n, &err);
            assert_null(r);
            assert_int_equal(err.status, 400);
            assert_true(err.message[0] != '\0');
        }
    }
}

static void test_same_protocol_refused(void **s)
{
    (void)s;
    struct lp_xlat_err err = {0};
    size_t n;
    const char *b = "{\"messages\":[]}";
    assert_null(lp_xlat_request(LP_PROTO_OPENAI, LP_PROTO_OPENAI, b, strlen(b), NULL, &n, &err));
    assert_int_equal(err.status, 400);
    assert_null(lp_xlat_response(LP_PROTO_OPENAI, LP_PROTO_OPENAI, b, strlen(b), "x", &n));
}

static void test_usage(void **s)
{
    (void)s;
    int64_t in, out, cached;
    const char *o = "{\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":7,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":100}}}";
    lp_xlat_usage(LP_PROTO_OPENAI, o, strlen(o), &in, &out, &cached);
    assert_int_equal(in, 120);
    assert_int_equal(out, 7);
    assert_int_equal(cached, 100);
    const char *a = "{\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
                    "\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":20}}";
    lp_xlat_usage(LP_PROTO_ANTHROPIC, a, strlen(a), &in, &out, &cached);
    assert_int_equal(in, 130);
    assert_int_equal(out, 5);
    assert_int_equal(cached, 100);
    const char *a3 = "{\"usage\":{\"input_tokens\":3}}";
    lp_xlat_usage(LP_PROTO_ANTHROPIC, a3, strlen(a3), &in, &out, &cached);
    assert_int_equal(in, 3);
    assert_int_equal(out, -1);
    assert_int_equal(cached, -1);
    lp_xlat_usage(LP_PROTO_OPENAI, "nope", 4, &in, &out, &cached);
    assert_int_equal(in, -1);
    assert_int_equal(out, -1);
    assert_int_equal(cached, -1);
}

/* What a translation drops is listed for the X-LLM-Proxy-Dropped-Params header. */
static void test_dropped_params_noted(void **s)
{
    (void)s;
    struct lp_xlat_err err = {0};
    struct lp_xlat_notes notes = {{0}};
    struct lp_xlat_opts o = {.upstream_model = "m", .notes = &notes, .drop_unsupported = true};
    size_t n;
    const char *oa = "{\"model\":\"x\",\"n\":3,\"logprobs\":true,\"seed\":7,"
                     "\"frequency_penalty\":0,\"presence_penalty\":0.5,\"logit_bias\":{\"1\":2},"
                     "\"temperature\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char *r = lp_xlat_request(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, oa, strlen(oa), &o, &n, &err);
    assert_non_null(r);
    assert_string_equal(notes.dropped, "n,logprobs,temperature,seed,presence_penalty,logit_bias");
    assert_non_null(strstr(r, "\"temperature\":1"));
    assert_null(strstr(r, "seed"));
    free(r);
    /* Under reject (the default), n > 1 is a 400 naming it. */
    o.drop_unsupported = false;
    memset(&notes, 0, sizeof notes);
    r = lp_xlat_request(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, oa, strlen(oa), &o, &n, &err);
    assert_null(r);
    assert_int_equal(err.status, 400);
    assert_true(strncmp(err.message, "n: ", 3) == 0);
    /* Anthropic -> OpenAI: top_k and thinking on a non-reasoning model. */
    memset(&notes, 0, sizeof notes);
    const char *an = "{\"model\":\"x\",\"max_tokens\":5000,\"top_k\":3,\"thinking\":{\"type\":"
                     "\"enabled\",\"budget_tokens\":2048},\"messages\":[{\"role\":\"user\","
                     "\"content\":\"hi\"}]}";
    r = lp_xlat_request(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, an, strlen(an), &o, &n, &err);
    assert_non_null(r);
    assert_string_equal(notes.dropped, "thinking,top_k");
    free(r);
    /* ... and on a reasoning model thinking becomes reasoning_effort. */
    memset(&notes, 0, sizeof notes);
    o.upstream_model = "o3-mini";
    r = lp_xlat_request(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, an, strlen(an), &o, &n, &err);
    assert_non_null(r);
    assert_string_equal(notes.dropped, "top_k");
    assert_non_null(strstr(r, "\"reasoning_effort\":\"low\""));
    assert_non_null(strstr(r, "\"max_completion_tokens\":5000"));
    free(r);
    /* The list never overflows its buffer and names each parameter once. */
    memset(&notes, 0, sizeof notes);
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof name, "param_%d", i % 50);
        lp_xlat_note_drop(&notes, name);
    }
    assert_true(strlen(notes.dropped) < sizeof notes.dropped);
    assert_non_null(strstr(notes.dropped, ",..."));
    assert_null(strstr(notes.dropped + 8, "param_0,"));
}

/* Integers beyond 64 bits survive byte-exact in both directions (json-c alone clamps them). */
static void test_big_ints_byte_exact(void **s)
{
    (void)s;
    struct lp_xlat_err err = {0};
    struct lp_xlat_opts o = {.upstream_model = "m"};
    size_t n;
    const char *oa = "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
                     "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
                     "\"{\\\"n\\\":123456789012345678901234567890,\\\"m\\\":-99999999999999999999,"
                     "\\\"k\\\":18446744073709551615,\\\"d\\\":1.50}\"}}]},"
                     "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"ok\"}]}";
    char *r = lp_xlat_request(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, oa, strlen(oa), &o, &n, &err);
    assert_non_null(r);
    if (!strstr(r, "\"n\":123456789012345678901234567890,\"m\":-99999999999999999999,"
                   "\"k\":18446744073709551615,\"d\":1.50"))
        fail_msg("o2a lost digits: %s", r);
    free(r);
    const char *an = "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                     "\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":[{\"type\":"
                     "\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"n\":"
                     "-123456789012345678901234567890}}]},{\"role\":\"user\",\"content\":"
                     "[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":\"ok\"}]}]}";
    r = lp_xlat_request(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, an, strlen(an), &o, &n, &err);
    assert_non_null(r);
    if (!strstr(r, "{\\\"n\\\":-123456789012345678901234567890}"))
        fail_msg("a2o lost digits: %s", r);
    free(r);
    /* A response with a big integer in a tool call's arguments, OpenAI -> Anthropic. */
    const char *resp = "{\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"finish_reason\":"
                       "\"tool_calls\",\"message\":{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
                       "\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
                       "\"{\\\"n\\\":98765432109876543210987654321}\"}}]}}]}";
    r = lp_xlat_response(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, resp, strlen(resp), "a", &n);
    assert_non_null(r);
    if (!strstr(r, "\"input\":{\"n\":98765432109876543210987654321}"))
        fail_msg("resp o2a lost digits: %s", r);
    free(r);
    /* Found wherever it starts (the digit-run probe looks at every 10th byte). */
    for (int pad = 0; pad < 25; pad++) {
        char doc[128];
        snprintf(doc, sizeof doc, "{\"%.*s\":[18446744073709551616,-9223372036854775809]}", pad,
                 "abcdefghijklmnopqrstuvwxyz");
        struct json_object *jj = lp_json_parse(doc, strlen(doc), NULL);
        assert_non_null(jj);
        assert_string_equal(lp_json_dump(jj, NULL), doc);
        json_object_put(jj);
    }
    /* A marker-like text in the input does not confuse the restoration. */
    const char *tricky = "{\"a\":123456789012345678901234567890,\"b\":\".0e0\",\"c\":1.0e0}";
    struct json_object *j = lp_json_parse(tricky, strlen(tricky), NULL);
    assert_non_null(j);
    assert_string_equal(lp_json_dump(j, NULL),
                        "{\"a\":123456789012345678901234567890,\"b\":\".0e0\",\"c\":1.0e0}");
    json_object_put(j);
    const char *instr = "{\"s\":\"12345678901234567890123 \\\" 99999999999999999999999\"}";
    j = lp_json_parse(instr, strlen(instr), NULL);
    assert_string_equal(lp_json_get_str(j, "s"),
                        "12345678901234567890123 \" 99999999999999999999999");
    json_object_put(j);
}

static void test_error_body(void **s)
{
    (void)s;
    size_t n;
    char *a = lp_xlat_error_body(LP_PROTO_ANTHROPIC, 429, NULL, "slow down", &n);
    assert_string_equal(a, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                           "\"message\":\"slow down\"}}");
    char *o = lp_xlat_error_body(LP_PROTO_OPENAI, 400, "invalid_request_error", "bad \"x\"", &n);
    assert_string_equal(o, "{\"error\":{\"message\":\"bad \\\"x\\\"\",\"type\":"
                           "\"invalid_request_error\",\"param\":null,\"code\":null}}");
    assert_int_equal(n, strlen(o));
    free(a);
    free(o);
}

/* Claude Code's auto-compact keys on "prompt is too long"; the OpenAI side on the code. */
static void test_context_errors_both_ways(void **s)
{
    (void)s;
    size_t n;
    const char *ob = "{\"error\":{\"message\":\"context window exceeded\",\"code\":null}}";
    char *a = lp_xlat_error(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, 400, ob, strlen(ob), &n);
    assert_non_null(strstr(a, "\"message\":\"prompt is too long: context window exceeded\""));
    assert_non_null(strstr(a, "\"type\":\"invalid_request_error\""));
    const char *ab = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                     "\"message\":\"prompt is too long\"}}";
    char *o = lp_xlat_error(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, 400, ab, strlen(ab), &n);
    assert_non_null(strstr(o, "\"code\":\"context_length_exceeded\""));
    /* A 5xx mentioning the context is a server error, not a client's prompt problem. */
    char *x = lp_xlat_error(LP_PROTO_ANTHROPIC, LP_PROTO_OPENAI, 500, ab, strlen(ab), &n);
    assert_null(strstr(x, "context_length_exceeded"));
    free(a);
    free(o);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_requests_o2a),
        cmocka_unit_test(test_golden_requests_a2o),
        cmocka_unit_test(test_golden_requests_google),
        cmocka_unit_test(test_golden_responses),
        cmocka_unit_test(test_golden_errors),
        cmocka_unit_test(test_round_trip_o2a2o),
        cmocka_unit_test(test_rejects_non_object),
        cmocka_unit_test(test_same_protocol_refused),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_big_ints_byte_exact),
        cmocka_unit_test(test_dropped_params_noted),
        cmocka_unit_test(test_context_errors_both_ways),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
