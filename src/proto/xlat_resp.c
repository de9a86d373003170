/* proto/xlat_resp.c - non-streaming response bodies, both directions, and usage extraction. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/google.h"
#include "proto/xlat.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

static int64_t num_or(struct json_object *o, const char *key, int64_t dflt)
{
    int64_t v;
    return lp_json_get_int64(o, key, &v) ? v : dflt;
}

/* Token counts come from upstream JSON and can be anything: negatives count as 0 and a sum
 * saturates instead of overflowing (signed overflow is undefined behaviour). */
static int64_t sat_add(int64_t a, int64_t b)
{
    a = a < 0 ? 0 : a;
    b = b < 0 ? 0 : b;
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

static const char *finish_from_stop(const char *sr)
{
    if (!sr)
        return "stop";
    if (!strcmp(sr, "max_tokens") || !strcmp(sr, "model_context_window_exceeded"))
        return "length";
    if (!strcmp(sr, "tool_use"))
        return "tool_calls";
    if (!strcmp(sr, "refusal"))
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

static const char *stop_from_finish(const char *fr)
{
    if (!fr)
        return "end_turn";
    if (!strcmp(fr, "length"))
        return "max_tokens";
    if (!strcmp(fr, "tool_calls") || !strcmp(fr, "function_call"))
        return "tool_use";
    if (!strcmp(fr, "content_filter"))
        return "refusal";
    return "end_turn";
}

/* prompt_tokens = input + cache reads + cache writes: OpenAI counts every prompt token there. */
static struct json_object *usage_a2o(struct json_object *u)
{
    int64_t in = num_or(u, "input_tokens", 0), out = num_or(u, "output_tokens", 0);
    int64_t cr = num_or(u, "cache_read_input_tokens", 0);
    int64_t cw = num_or(u, "cache_creation_input_tokens", 0);
    struct json_object *r = json_object_new_object();
    int64_t prompt = sat_add(sat_add(in, cr), cw);
    lp_json_set_int(r, "prompt_tokens", prompt);
    lp_json_set_int(r, "completion_tokens", out);
    lp_json_set_int(r, "total_tokens", sat_add(prompt, out));
    struct json_object *d = json_object_new_object();
    lp_json_set_int(d, "cached_tokens", cr);
    lp_json_set(r, "prompt_tokens_details", d);
    if (cw > 0) /* cache writes: no OpenAI field; Anthropic's name, for clients that look */
        lp_json_set_int(r, "cache_creation_input_tokens", cw);
    return r;
}

static struct json_object *usage_o2a(struct json_object *u)
{
    int64_t pt = num_or(u, "prompt_tokens", 0);
    int64_t cached = num_or(lp_json_get_obj(u, "prompt_tokens_details"), "cached_tokens", 0);
    pt = pt < 0 ? 0 : pt;
    cached = cached < 0 ? 0 : cached > pt ? pt : cached; /* so pt - cached cannot overflow */
    struct json_object *r = json_object_new_object();
    lp_json_set_int(r, "input_tokens", pt - cached);
    lp_json_set_int(r, "output_tokens", num_or(u, "completion_tokens", 0));
    lp_json_set_int(r, "cache_creation_input_tokens", 0);
    lp_json_set_int(r, "cache_read_input_tokens", cached);
    return r;
}

static void append_block_text(struct lp_buf *b, struct json_object *blk, const char *key)
{
    const char *t = lp_json_get_str(blk, key);
    if (t)
        lp_buf_appends(b, t);
}

static struct json_object *a2o_message(struct json_object *content)
{
    struct lp_buf text, reasoning;
    struct json_object *tcs = json_object_new_array();
    lp_buf_init(&text, 0);
    lp_buf_init(&reasoning, 0);
    for (size_t i = 0; i < lp_json_arr_len(content); i++) {
        struct json_object *b = lp_json_arr_at(content, i);
        const char *t = lp_json_get_str(b, "type");
        if (!t)
            continue;
        if (!strcmp(t, "text")) {
            append_block_text(&text, b, "text");
        } else if (!strcmp(t, "thinking")) {
            append_block_text(&reasoning, b, "thinking");
        } else if (!strcmp(t, "tool_use") && lp_json_get_str(b, "name") &&
                   !strcmp(lp_json_get_str(b, "name"), LP_XLAT_JSON_TOOL)) {
            /* response_format's forced tool: its input is the answer */
            struct json_object *input = lp_json_get(b, "input");
            lp_buf_appends(&text, input ? lp_json_dump(input, NULL) : "{}");
        } else if (!strcmp(t, "tool_use")) {
            struct json_object *tc = json_object_new_object(), *fn = json_object_new_object();
            struct json_object *input = lp_json_get(b, "input");
            lp_json_set_str(tc, "id", lp_json_get_str(b, "id"));
            lp_json_set_str(tc, "type", "function");
            lp_json_set_str(fn, "name", lp_json_get_str(b, "name"));
            lp_json_set_str(fn, "arguments", input ? lp_json_dump(input, NULL) : "{}");
            lp_json_set(tc, "function", fn);
            json_object_array_add(tcs, tc);
        }
    }
    struct json_object *m = json_object_new_object();
    bool has_tools = lp_json_arr_len(tcs) > 0;
    lp_json_set_str(m, "role", "assistant");
    lp_json_set(m, "content",
                text.len || !has_tools ? json_object_new_string(text.data ? text.data : "") : NULL);
    if (reasoning.len)
        lp_json_set_str(m, "reasoning_content", reasoning.data);
    if (has_tools)
        lp_json_set(m, "tool_calls", lp_xlat_ref(tcs));
    lp_json_set(m, "refusal", NULL);
    json_object_put(tcs);
    lp_buf_free(&text);
    lp_buf_free(&reasoning);
    return m;
}

static struct json_object *resp_a2o(struct json_object *in, const char *alias, const char *body,
                                    size_t len)
{
    struct json_object *content = lp_json_get_arr(in, "content");
    const char *type = lp_json_get_str(in, "type");
    if (!content || (type && strcmp(type, "message") != 0))
        return NULL;
    struct json_object *out = json_object_new_object();
    char *id = lp_xlat_make_id("chatcmpl-", lp_json_get_str(in, "id"), body, len);
    lp_json_set_str(out, "id", id);
    free(id);
    lp_json_set_str(out, "object", "chat.completion");
    lp_json_set_int(out, "created", (int64_t)time(NULL));
    lp_json_set(out, "model",
                alias ? json_object_new_string(alias) : lp_xlat_ref(lp_json_get(in, "model")));
    struct json_object *ch = json_object_new_object();
    lp_json_set_int(ch, "index", 0);
    struct json_object *msg = a2o_message(content);
    lp_json_set(ch, "message", msg);
    lp_json_set(ch, "logprobs", NULL);
    const char *stop = lp_json_get_str(in, "stop_reason");
    const char *fr = finish_from_stop(stop);
    bool json_tool = false;
    for (size_t k = 0; k < lp_json_arr_len(content); k++) {
        const char *n = lp_json_get_str(lp_json_arr_at(content, k), "name");
        json_tool = json_tool || (n && !strcmp(n, LP_XLAT_JSON_TOOL));
    }
    if (!strcmp(fr, "tool_calls") && json_tool && !lp_json_get(msg, "tool_calls"))
        fr = "stop"; /* only response_format's tool was called: a plain answer */
    lp_json_set_str(ch, "finish_reason", fr);
    /* The matched stop sequence and pause_turn have no OpenAI field: reported as the choice's
     * `stop_reason` (vLLM's name for the matched stop string). */
    if (stop && !strcmp(stop, "stop_sequence") && lp_json_get_str(in, "stop_sequence"))
        lp_json_set(ch, "stop_reason", lp_xlat_ref(lp_json_get(in, "stop_sequence")));
    else if (stop && !strcmp(stop, "pause_turn"))
        lp_json_set_str(ch, "stop_reason", "pause_turn");
    struct json_object *choices = json_object_new_array();
    json_object_array_add(choices, ch);
    lp_json_set(out, "choices", choices);
    lp_json_set(out, "usage", usage_a2o(lp_json_get_obj(in, "usage")));
    return out;
}

/* Arguments JSON string -> input object. Invalid or non-object JSON (a model can emit that,
 * e.g. when cut off by max_tokens) becomes {}: Anthropic clients expect an object. */
static struct json_object *args_to_input(struct json_object *fn)
{
    struct json_object *a = lp_json_get(fn, "arguments");
    if (lp_json_is_obj(a))
        return lp_xlat_ref(a);
    const char *s = lp_json_str(a);
    struct json_object *v =
        s ? lp_json_parse(s, (size_t)json_object_get_string_len(a), NULL) : NULL;
    if (lp_json_is_obj(v))
        return v;
    json_object_put(v);
    return json_object_new_object();
}

static void add_o2a_text(struct json_object *blocks, const char *type, const char *key,
                         const char *s)
{
    if (!s || !*s)
        return;
    struct json_object *b = json_object_new_object();
    lp_json_set_str(b, "type", type);
    lp_json_set_str(b, key, s);
    if (!strcmp(type, "thinking"))
        lp_json_set_str(b, "signature", "");
    json_object_array_add(blocks, b);
}

/* Tool calls without an id (some OpenAI-compatible servers omit it) get toolu_<msg>_<k>, the
 * same form the stream translator uses, so parallel calls never share an id. */
static struct json_object *o2a_content(struct json_object *msg, const char *msg_id)
{
    struct json_object *blocks = json_object_new_array();
    const char *reasoning = lp_json_get_str(msg, "reasoning_content");
    add_o2a_text(blocks, "thinking", "thinking",
                 reasoning ? reasoning : lp_json_get_str(msg, "reasoning"));
    char *text = lp_xlat_text_of(lp_json_get(msg, "content"), "");
    add_o2a_text(blocks, "text", "text", text);
    free(text);
    add_o2a_text(blocks, "text", "text", lp_json_get_str(msg, "refusal"));
    struct json_object *tcs = lp_json_get_arr(msg, "tool_calls");
    for (size_t j = 0; j < lp_json_arr_len(tcs); j++) {
        struct json_object *tc = lp_json_arr_at(tcs, j);
        struct json_object *fn = lp_json_get_obj(tc, "function");
        if (!fn)
            continue;
        struct json_object *b = json_object_new_object();
        lp_json_set_str(b, "type", "tool_use");
        const char *tid = lp_json_get_str(tc, "id");
        if (tid && *tid) {
            lp_json_set_str(b, "id", tid);
        } else {
            char *gen = lp_xasprintf("toolu_%s_%zu", msg_id, j);
            lp_json_set_str(b, "id", gen);
            free(gen);
        }
        lp_json_set_str(b, "name", lp_json_get_str(fn, "name"));
        lp_json_set(b, "input", args_to_input(fn));
        json_object_array_add(blocks, b);
    }
    return blocks;
}

static struct json_object *resp_o2a(struct json_object *in, const char *alias, const char *body,
                                    size_t len)
{
    struct json_object *ch = lp_json_arr_at(lp_json_get_arr(in, "choices"), 0);
    struct json_object *msg = lp_json_get_obj(ch, "message");
    if (!msg)
        return NULL;
    struct json_object *out = json_object_new_object();
    char *id = lp_xlat_make_id("msg_", lp_json_get_str(in, "id"), body, len);
    lp_json_set_str(out, "id", id);
    lp_json_set_str(out, "type", "message");
    lp_json_set_str(out, "role", "assistant");
    lp_json_set(out, "model",
                alias ? json_object_new_string(alias) : lp_xlat_ref(lp_json_get(in, "model")));
    struct json_object *content = o2a_content(msg, id + 4 /* past "msg_" */);
    free(id);
    bool any_tool = false;
    for (size_t k = 0; k < lp_json_arr_len(content) && !any_tool; k++) {
        const char *bt = lp_json_get_str(lp_json_arr_at(content, k), "type");
        any_tool = bt && !strcmp(bt, "tool_use");
    }
    lp_json_set(out, "content", content);
    /* Whenever the reply asks for tools, the stop reason says so (some servers report "stop"
     * after tool calls; the stream translator decides alike), unless it was cut or filtered. */
    const char *sr = stop_from_finish(lp_json_get_str(ch, "finish_reason"));
    if (any_tool && !strcmp(sr, "end_turn"))
        sr = "tool_use";
    /* vLLM reports the matched stop string as the choice's `stop_reason`. */
    const char *vsr = lp_json_get_str(ch, "stop_reason");
    if (vsr && !strcmp(sr, "end_turn") && !any_tool) {
        lp_json_set_str(out, "stop_reason", "stop_sequence");
        lp_json_set_str(out, "stop_sequence", vsr);
    } else {
        lp_json_set_str(out, "stop_reason", sr);
        lp_json_set(out, "stop_sequence", NULL);
    }
    lp_json_set(out, "usage", usage_o2a(lp_json_get_obj(in, "usage")));
    return out;
}

char *lp_xlat_response(enum lp_proto from, enum lp_proto to, const char *body, size_t len,
                       const char *alias, size_t *out_len)
{
    if (from == to || !body)
        return NULL;
    if (from == LP_PROTO_GOOGLE) { /* Gemini -> OpenAI, then on to Anthropic when needed */
        size_t n = 0;
        char *oa = lp_google_resp_to_openai(body, len, alias, &n);
        if (!oa || to == LP_PROTO_OPENAI) {
            if (oa && out_len)
                *out_len = n;
            return oa;
        }
        char *r = lp_xlat_response(LP_PROTO_OPENAI, to, oa, n, alias, out_len);
        free(oa);
        return r;
    }
    struct json_object *in = lp_json_parse(body, len, NULL);
    struct json_object *out = NULL;
    if (lp_json_is_obj(in))
        out = from == LP_PROTO_ANTHROPIC ? resp_a2o(in, alias, body, len)
                                         : resp_o2a(in, alias, body, len);
    char *r = out ? lp_xlat_dump(out, out_len) : NULL;
    json_object_put(out);
    json_object_put(in);
    return r;
}

/* The byte range of the object value of the LAST `"usage":` member in body, or false. Both
 * protocols put the top-level usage after the content, so the last occurrence is the top-level
 * one; a nested "usage" key (inside a tool_use input object) comes earlier. Inside JSON strings
 * quotes are escaped, so `"usage"` followed by ':' is always a key. */
static bool find_usage_object(const char *body, size_t len, size_t *start, size_t *end)
{
    static const char key[] = "\"usage\"";
    const size_t klen = sizeof key - 1;
    if (len < klen + 3)
        return false;
    for (size_t i = len - klen; i-- > 0;) {
        if (body[i] != '"' || memcmp(body + i, key, klen) != 0)
            continue;
        size_t j = i + klen;
        while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r'))
            j++;
        if (j >= len || body[j] != ':')
            continue;
        j++;
        while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r'))
            j++;
        if (j >= len || body[j] != '{')
            return false;
        /* Find the matching brace, skipping strings. */
        int depth = 0;
        bool in_str = false;
        for (size_t k = j; k < len; k++) {
            char c = body[k];
            if (in_str) {
                if (c == '\\')
                    k++;
                else if (c == '"')
                    in_str = false;
            } else if (c == '"') {
                in_str = true;
            } else if (c == '{') {
                depth++;
            } else if (c == '}' && --depth == 0) {
                *start = j;
                *end = k + 1;
                return true;
            }
        }
        return false;
    }
    return false;
}

/* The non-negative integer value of member `"key"` anywhere inside s[0..n) (the usage object),
 * or -1. Keys are matched with their quotes, so "input_tokens" never matches inside
 * "cache_read_input_tokens". */
static int64_t int_member(const char *s, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = s; p + kl + 2 < s + n;) {
        const char *q = memchr(p, '"', (size_t)(s + n - p));
        if (!q || q + kl + 2 > s + n)
            return -1;
        if (memcmp(q + 1, key, kl) == 0 && q[kl + 1] == '"') {
            const char *v = q + kl + 2;
            while (v < s + n && (*v == ' ' || *v == ':' || *v == '\t' || *v == '\n' || *v == '\r'))
                v++;
            int64_t x = 0;
            bool any = false;
            while (v < s + n && *v >= '0' && *v <= '9' && x < INT64_MAX / 10 - 10) {
                x = x * 10 + (*v++ - '0');
                any = true;
            }
            return any ? x : -1;
        }
        p = q + 1;
    }
    return -1;
}

void lp_xlat_usage(enum lp_proto p, const char *body, size_t len, int64_t *in, int64_t *out,
                   int64_t *cached)
{
    *in = *out = *cached = -1;
    size_t us, ue;
    /* Fast path: read the few counters from the usage object's bytes; no JSON tree. */
    if (body && find_usage_object(body, len, &us, &ue)) {
        const char *u = body + us;
        size_t n = ue - us;
        if (p == LP_PROTO_OPENAI) {
            *in = int_member(u, n, "prompt_tokens");
            *out = int_member(u, n, "completion_tokens");
            *cached = int_member(u, n, "cached_tokens");
        } else {
            int64_t i = int_member(u, n, "input_tokens");
            int64_t cr = int_member(u, n, "cache_read_input_tokens");
            int64_t cw = int_member(u, n, "cache_creation_input_tokens");
            if (i >= 0)
                *in = sat_add(sat_add(i, cr > 0 ? cr : 0), cw > 0 ? cw : 0);
            *out = int_member(u, n, "output_tokens");
            *cached = cr;
        }
        if (*in >= 0 || *out >= 0)
            return;
    }
    struct json_object *root = body ? lp_json_parse(body, len, NULL) : NULL;
    struct json_object *u = lp_json_get_obj(root, "usage");
    if (u && p == LP_PROTO_OPENAI) {
        *in = num_or(u, "prompt_tokens", -1);
        *out = num_or(u, "completion_tokens", -1);
        *cached = num_or(lp_json_get_obj(u, "prompt_tokens_details"), "cached_tokens", -1);
    } else if (u) {
        int64_t i = num_or(u, "input_tokens", -1);
        int64_t cr = num_or(u, "cache_read_input_tokens", -1);
        int64_t cw = num_or(u, "cache_creation_input_tokens", -1);
        if (i >= 0)
            *in = sat_add(sat_add(i, cr), cw);
        *out = num_or(u, "output_tokens", -1);
        *cached = cr;
    }
    json_object_put(root);
}
