/* script.c - scripted steps: parsing {"responses":[...]} and the FIFO queue. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "mock.h"
#include "util/alloc.h"
#include "util/json.h"

#define MAX_STEPS_PER_SCRIPT 100000
#define MAX_EVENTS_PER_STEP 100000

static void step_free(struct mock_step *s)
{
    for (size_t i = 0; i < s->nhdrs; i++) {
        free(s->hdrs[i].name);
        free(s->hdrs[i].value);
    }
    free(s->hdrs);
    free(s->body);
    for (size_t i = 0; i < s->nevents; i++) {
        free(s->events[i].event);
        free(s->events[i].data);
        free(s->events[i].raw);
    }
    free(s->events);
    free(s->match_path);
    free(s->raw);
    free(s->encoding);
    free(s);
}

void mock_step_unref(struct mock_step *s)
{
    if (s && --s->refs == 0)
        step_free(s);
}

/* A string value verbatim, any other JSON value serialised compactly. */
static char *string_or_json(struct json_object *v, size_t *len)
{
    size_t n = 0;
    const char *s;
    if (lp_json_is_str(v)) {
        s = lp_json_str(v);
        n = (size_t)json_object_get_string_len(v);
    } else {
        s = lp_json_dump(v, &n);
    }
    if (len)
        *len = n;
    return lp_xstrndup(s ? s : "null", s ? n : 4);
}

/* An integer member clamped to [-1, 1e9]; `dflt` when absent. A member of another type makes
 * *bad true (the script is rejected rather than half-understood). */
static int get_int(struct json_object *o, const char *key, int dflt, bool *bad)
{
    struct json_object *j = lp_json_get(o, key);
    int64_t v;
    if (!j)
        return dflt;
    if (!lp_json_get_int64(o, key, &v)) {
        *bad = true;
        return dflt;
    }
    if (v > 1000000000)
        v = 1000000000;
    if (v < -1)
        v = -1;
    return (int)v;
}

static const char *parse_headers(struct mock_step *s, struct json_object *h)
{
    if (!h)
        return NULL;
    if (!lp_json_is_obj(h))
        return "headers must be an object";
    s->hdrs = lp_xcalloc((size_t)json_object_object_length(h) + 1, sizeof *s->hdrs);
    json_object_object_foreach(h, key, val)
    {
        if (!lp_json_is_str(val) && !json_object_is_type(val, json_type_int))
            return "header values must be strings";
        struct mock_hdr *hd = &s->hdrs[s->nhdrs++];
        hd->name = lp_xstrdup(key);
        hd->value = lp_xstrdup(json_object_get_string(val));
        if (strpbrk(hd->name, "\r\n:") || strpbrk(hd->value, "\r\n"))
            return "header names/values must not hold CR, LF or ':'";
    }
    return NULL;
}

static const char *parse_event(struct mock_sse_event *e, struct json_object *o)
{
    if (!lp_json_is_obj(o))
        return "sse.events[] must be objects";
    struct json_object *raw = lp_json_get(o, "raw");
    if (raw) {
        if (!lp_json_is_str(raw))
            return "sse.events[].raw must be a string";
        e->raw = lp_xstrdup(lp_json_str(raw));
    }
    const char *ev = lp_json_get_str(o, "event");
    e->event = ev ? lp_xstrdup(ev) : NULL;
    struct json_object *data = lp_json_get(o, "data");
    if (data)
        e->data = string_or_json(data, NULL);
    if (!e->raw && !e->data)
        return "sse.events[] needs data or raw";
    bool bad = false;
    e->delay_ms = get_int(o, "delay_ms", 0, &bad);
    return bad ? "sse.events[].delay_ms must be a number" : NULL;
}

static const char *parse_generate(struct mock_step *s, struct json_object *g)
{
    if (!lp_json_is_obj(g))
        return "sse.generate must be an object";
    const char *proto = lp_json_get_str(g, "protocol");
    if (proto && strcmp(proto, "anthropic") == 0)
        s->gen.proto = MOCK_PROTO_ANTHROPIC;
    else if (!proto || strcmp(proto, "openai") == 0)
        s->gen.proto = MOCK_PROTO_OPENAI;
    else
        return "sse.generate.protocol must be openai or anthropic";
    bool bad = false;
    s->gen.chunks = get_int(g, "chunks", 8, &bad);
    s->gen.chunk_bytes = get_int(g, "chunk_bytes", 16, &bad);
    s->gen.interval_ms = get_int(g, "interval_ms", 0, &bad);
    if (bad || s->gen.chunks < 0 || s->gen.chunk_bytes < 1 || s->gen.interval_ms < 0)
        return "sse.generate: chunks >= 0, chunk_bytes >= 1, interval_ms >= 0";
    s->has_gen = true;
    return NULL;
}

static const char *parse_sse(struct mock_step *s, struct json_object *sse)
{
    if (!lp_json_is_obj(sse))
        return "sse must be an object";
    s->has_sse = true;
    bool bad = false;
    s->cut_after = get_int(sse, "cut_after", -1, &bad);
    s->stall_after = get_int(sse, "stall_after", -1, &bad);
    if (bad)
        return "sse.cut_after and sse.stall_after must be numbers";
    struct json_object *gen = lp_json_get(sse, "generate");
    if (gen)
        return parse_generate(s, gen);
    struct json_object *evs = lp_json_get(sse, "events");
    s->sse_default = evs == NULL;
    if (evs && !lp_json_is_arr(evs))
        return "sse.events must be an array";
    size_t n = lp_json_arr_len(evs);
    if (n > MAX_EVENTS_PER_STEP)
        return "too many sse events";
    s->events = lp_xcalloc(n + 1, sizeof *s->events);
    for (size_t i = 0; i < n; i++) {
        s->nevents++;
        const char *err = parse_event(&s->events[i], lp_json_arr_at(evs, i));
        if (err)
            return err;
    }
    return NULL;
}

static const char *parse_step_fields(struct mock_step *s, struct json_object *o)
{
    if (!lp_json_is_obj(o))
        return "each step must be an object";
    bool bad = false;
    s->status = get_int(o, "status", 200, &bad);
    s->delay_ms = get_int(o, "delay_ms", -1, &bad);
    s->times = get_int(o, "times", 1, &bad);
    if (bad)
        return "status, delay_ms and times must be numbers";
    if (s->status < 100 || s->status > 999)
        return "status must be 100..999";
    if (s->times == 0)
        s->times = 1;
    s->close = lp_json_get_bool(o, "close", false);
    struct json_object *body = lp_json_get(o, "body");
    if (body) {
        s->has_body = true;
        s->body = string_or_json(body, &s->body_len);
    }
    struct json_object *raw = lp_json_get(o, "raw_b64");
    if (raw) {
        const char *b64 = lp_json_get_str(o, "raw_b64");
        size_t n = b64 ? strlen(b64) : 0;
        if (!b64 || n % 4 != 0)
            return "raw_b64 must be a base64 string";
        s->raw = lp_xmalloc(n / 4 * 3 + 1);
        int got = EVP_DecodeBlock((unsigned char *)s->raw, (const unsigned char *)b64, (int)n);
        if (got < 0)
            return "raw_b64 must be a base64 string";
        size_t pad = (n && b64[n - 1] == '=') + (n > 1 && b64[n - 2] == '=');
        s->raw_len = (size_t)got - pad;
        s->has_raw = true;
    }
    if (lp_json_get(o, "encoding")) {
        const char *enc = lp_json_get_str(o, "encoding");
        if (!enc || !*enc)
            return "encoding must be a non-empty string";
        s->encoding = lp_xstrdup(enc);
    }
    struct json_object *match = lp_json_get(o, "match");
    if (match) {
        const char *pc = lp_json_get_str(match, "path_contains");
        if (!pc)
            return "match.path_contains must be a string";
        s->match_path = lp_xstrdup(pc);
    }
    const char *err = parse_headers(s, lp_json_get(o, "headers"));
    if (err)
        return err;
    struct json_object *sse = lp_json_get(o, "sse");
    return sse ? parse_sse(s, sse) : NULL;
}

static struct mock_step *parse_step(struct json_object *o, const char **err)
{
    struct mock_step *s = lp_xcalloc(1, sizeof *s);
    s->refs = 1;
    s->cut_after = -1;
    s->stall_after = -1;
    *err = parse_step_fields(s, o);
    if (*err) {
        step_free(s);
        return NULL;
    }
    return s;
}

int mock_script_add(struct mock_step_q *q, const char *body, size_t len, const char **err)
{
    int rc = -1;
    struct mock_step_q tmp = TAILQ_HEAD_INITIALIZER(tmp);
    TAILQ_INIT(&tmp);
    struct json_object *root = lp_json_parse(body, len, err);
    if (!root)
        goto out;
    struct json_object *arr = lp_json_get_arr(root, "responses");
    size_t n = lp_json_arr_len(arr);
    if (!arr || n > MAX_STEPS_PER_SCRIPT) {
        *err = "body must be {\"responses\":[STEP,...]}";
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct mock_step *s = parse_step(lp_json_arr_at(arr, i), err);
        if (!s)
            goto out;
        TAILQ_INSERT_TAIL(&tmp, s, link);
    }
    TAILQ_CONCAT(q, &tmp, link);
    rc = (int)n;
out:
    mock_script_clear(&tmp);
    json_object_put(root);
    return rc;
}

struct mock_step *mock_script_pop(struct mock_step_q *q, const char *path)
{
    struct mock_step *s;
    TAILQ_FOREACH(s, q, link)
    {
        if (s->match_path && !strstr(path, s->match_path))
            continue;
        s->refs++;
        if (s->times > 0 && --s->times == 0) {
            TAILQ_REMOVE(q, s, link);
            s->refs--; /* the queue's reference; the caller's keeps it alive */
        }
        return s;
    }
    return NULL;
}

size_t mock_script_len(const struct mock_step_q *q)
{
    size_t n = 0;
    const struct mock_step *s;
    TAILQ_FOREACH(s, q, link)
    n++;
    return n;
}

void mock_script_clear(struct mock_step_q *q)
{
    struct mock_step *s;
    while ((s = TAILQ_FIRST(q)) != NULL) {
        TAILQ_REMOVE(q, s, link);
        mock_step_unref(s);
    }
}
