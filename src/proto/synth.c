/* synth.c - turn a complete (non-streaming) response into the SSE stream a streaming client
 * expects. Used when an upstream ignores `stream: true` and answers with one JSON body: the
 * client asked for a stream and its SDK would otherwise see an empty one. See synth.h. */
#include "proto/synth.h"

#include <stdio.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"

static void put_event(struct lp_buf *out, const char *name, struct json_object *data)
{
    size_t n = 0;
    const char *s = lp_json_dump(data, &n);
    if (name) {
        lp_buf_appends(out, "event: ");
        lp_buf_appends(out, name);
        lp_buf_appendc(out, '\n');
    }
    lp_buf_appends(out, "data: ");
    lp_buf_append(out, s, n);
    lp_buf_appends(out, "\n\n");
}

static struct json_object *ref(struct json_object *v)
{
    return v ? json_object_get(v) : NULL;
}

/* One OpenAI chunk around `delta` (owned) for the response r. */
static struct json_object *openai_chunk(struct json_object *r, struct json_object *delta,
                                        struct json_object *finish)
{
    struct json_object *c = json_object_new_object();
    lp_json_set(c, "id", ref(lp_json_get(r, "id")));
    lp_json_set_str(c, "object", "chat.completion.chunk");
    lp_json_set(c, "created", ref(lp_json_get(r, "created")));
    lp_json_set(c, "model", ref(lp_json_get(r, "model")));
    struct json_object *choices = json_object_new_array();
    struct json_object *ch = json_object_new_object();
    lp_json_set_int(ch, "index", 0);
    lp_json_set(ch, "delta", delta);
    lp_json_set(ch, "finish_reason", finish);
    json_object_array_add(choices, ch);
    lp_json_set(c, "choices", choices);
    return c;
}

static bool synth_openai(struct json_object *r, bool include_usage, struct lp_buf *out)
{
    struct json_object *ch = lp_json_arr_at(lp_json_get_arr(r, "choices"), 0);
    struct json_object *msg = lp_json_get_obj(ch, "message");
    if (!msg)
        return false;
    struct json_object *delta = json_object_new_object();
    lp_json_set_str(delta, "role", "assistant");
    const char *content = lp_json_get_str(msg, "content");
    lp_json_set_str(delta, "content", content ? content : "");
    struct json_object *rc = lp_json_get(msg, "reasoning_content");
    if (lp_json_is_str(rc))
        lp_json_set(delta, "reasoning_content", ref(rc));
    struct json_object *calls = lp_json_get_arr(msg, "tool_calls");
    if (calls) {
        struct json_object *tc = json_object_new_array();
        for (size_t i = 0; i < lp_json_arr_len(calls); i++) {
            struct json_object *c = lp_json_arr_at(calls, i);
            if (!lp_json_is_obj(c))
                continue;
            struct json_object *d = json_object_new_object();
            lp_json_set_int(d, "index", (int64_t)i);
            lp_json_set(d, "id", ref(lp_json_get(c, "id")));
            lp_json_set_str(d, "type", "function");
            lp_json_set(d, "function", ref(lp_json_get(c, "function")));
            json_object_array_add(tc, d);
        }
        lp_json_set(delta, "tool_calls", tc);
    }
    struct json_object *c1 = openai_chunk(r, delta, NULL);
    put_event(out, NULL, c1);
    json_object_put(c1);
    struct json_object *fin = lp_json_get(ch, "finish_reason");
    struct json_object *c2 =
        openai_chunk(r, json_object_new_object(),
                     lp_json_is_str(fin) ? ref(fin) : json_object_new_string("stop"));
    put_event(out, NULL, c2);
    json_object_put(c2);
    struct json_object *usage = lp_json_get_obj(r, "usage");
    if (include_usage && usage) {
        struct json_object *c3 = openai_chunk(r, json_object_new_object(), NULL);
        lp_json_set(c3, "choices", json_object_new_array());
        lp_json_set(c3, "usage", ref(usage));
        put_event(out, NULL, c3);
        json_object_put(c3);
    }
    lp_buf_appends(out, "data: [DONE]\n\n");
    return true;
}

static void anthropic_block(struct json_object *b, int idx, struct lp_buf *out)
{
    const char *type = lp_json_get_str(b, "type");
    struct json_object *start = json_object_new_object();
    lp_json_set_str(start, "type", "content_block_start");
    lp_json_set_int(start, "index", idx);
    struct json_object *delta = json_object_new_object();
    struct json_object *cb = json_object_new_object();
    if (type && strcmp(type, "tool_use") == 0) {
        lp_json_set_str(cb, "type", "tool_use");
        lp_json_set(cb, "id", ref(lp_json_get(b, "id")));
        lp_json_set(cb, "name", ref(lp_json_get(b, "name")));
        lp_json_set(cb, "input", json_object_new_object());
        struct json_object *in = lp_json_get(b, "input");
        lp_json_set_str(delta, "type", "input_json_delta");
        lp_json_set_str(delta, "partial_json", in ? lp_json_dump(in, NULL) : "{}");
    } else if (type && strcmp(type, "thinking") == 0) {
        lp_json_set_str(cb, "type", "thinking");
        lp_json_set_str(cb, "thinking", "");
        lp_json_set_str(delta, "type", "thinking_delta");
        lp_json_set_str(delta, "thinking", lp_json_get_str(b, "thinking"));
    } else {
        lp_json_set_str(cb, "type", "text");
        lp_json_set_str(cb, "text", "");
        lp_json_set_str(delta, "type", "text_delta");
        lp_json_set_str(delta, "text", lp_json_get_str(b, "text"));
    }
    lp_json_set(start, "content_block", cb);
    put_event(out, "content_block_start", start);
    json_object_put(start);
    struct json_object *d = json_object_new_object();
    lp_json_set_str(d, "type", "content_block_delta");
    lp_json_set_int(d, "index", idx);
    lp_json_set(d, "delta", delta);
    put_event(out, "content_block_delta", d);
    json_object_put(d);
    struct json_object *stop = json_object_new_object();
    lp_json_set_str(stop, "type", "content_block_stop");
    lp_json_set_int(stop, "index", idx);
    put_event(out, "content_block_stop", stop);
    json_object_put(stop);
}

static bool synth_anthropic(struct json_object *r, struct lp_buf *out)
{
    struct json_object *content = lp_json_get_arr(r, "content");
    if (!content)
        return false;
    struct json_object *msg = json_object_new_object();
    lp_json_set(msg, "id", ref(lp_json_get(r, "id")));
    lp_json_set_str(msg, "type", "message");
    lp_json_set_str(msg, "role", "assistant");
    lp_json_set(msg, "model", ref(lp_json_get(r, "model")));
    lp_json_set(msg, "content", json_object_new_array());
    lp_json_set(msg, "stop_reason", NULL);
    lp_json_set(msg, "stop_sequence", NULL);
    lp_json_set(msg, "usage", ref(lp_json_get_obj(r, "usage")));
    struct json_object *ms = json_object_new_object();
    lp_json_set_str(ms, "type", "message_start");
    lp_json_set(ms, "message", msg);
    put_event(out, "message_start", ms);
    json_object_put(ms);
    int idx = 0;
    for (size_t i = 0; i < lp_json_arr_len(content); i++) {
        struct json_object *b = lp_json_arr_at(content, i);
        if (lp_json_is_obj(b))
            anthropic_block(b, idx++, out);
    }
    struct json_object *md = json_object_new_object();
    lp_json_set_str(md, "type", "message_delta");
    struct json_object *delta = json_object_new_object();
    struct json_object *sr = lp_json_get(r, "stop_reason");
    lp_json_set(delta, "stop_reason",
                lp_json_is_str(sr) ? ref(sr) : json_object_new_string("end_turn"));
    lp_json_set(delta, "stop_sequence", ref(lp_json_get(r, "stop_sequence")));
    lp_json_set(md, "delta", delta);
    struct json_object *usage = lp_json_get_obj(r, "usage");
    struct json_object *u = json_object_new_object();
    int64_t ot = 0;
    if (usage && lp_json_get_int64(usage, "output_tokens", &ot))
        lp_json_set_int(u, "output_tokens", ot);
    lp_json_set(md, "usage", u);
    put_event(out, "message_delta", md);
    json_object_put(md);
    lp_buf_appends(out, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    return true;
}

char *lp_synth_stream(enum lp_proto p, const char *body, size_t len, bool include_usage,
                      size_t *out_len)
{
    struct json_object *r = lp_json_parse(body, len, NULL);
    if (!lp_json_is_obj(r)) {
        json_object_put(r);
        return NULL;
    }
    struct lp_buf out;
    lp_buf_init(&out, 0);
    bool ok =
        p == LP_PROTO_ANTHROPIC ? synth_anthropic(r, &out) : synth_openai(r, include_usage, &out);
    json_object_put(r);
    if (!ok) {
        lp_buf_free(&out);
        return NULL;
    }
    return lp_buf_steal(&out, out_len);
}
