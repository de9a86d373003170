/* proto/xlat_req_a2o.c - Anthropic messages request -> OpenAI chat-completions request.
 *
 * Each Anthropic turn may become several OpenAI messages: the tool_result blocks of a user turn
 * become `tool` messages placed first (OpenAI wants them right after the assistant's
 * tool_calls), then the rest of the turn is one user message. See docs/translation.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto/xlat.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

/* OpenAI's `user` field is documented as a short end-user id; longer ids (Claude Code sends a
 * JSON document) are replaced by a stable hash so they still identify the user. */
#define MAX_USER_LEN 64
#define MAX_OPENAI_STOP 4 /* OpenAI's limit on `stop` entries */

struct a2o {
    const struct lp_xlat_opts *o;
    struct lp_xlat_err *err;
    struct json_object *msgs; /* output messages */
};

static bool is_type(struct json_object *b, const char *t)
{
    const char *bt = lp_json_get_str(b, "type");
    return bt && !strcmp(bt, t);
}

static void add_msg(struct a2o *st, const char *role, struct json_object *content)
{
    struct json_object *m = json_object_new_object();
    lp_json_set_str(m, "role", role);
    lp_json_set(m, "content", content);
    json_object_array_add(st->msgs, m);
}

static void add_text_msg(struct a2o *st, const char *role, const char *text)
{
    add_msg(st, role, json_object_new_string(text));
}

/* Anthropic image/document block -> OpenAI image_url/file part, or NULL with *err set. */
static struct json_object *conv_media(struct json_object *b, const char *where,
                                      struct lp_xlat_err *err)
{
    struct json_object *src = lp_json_get_obj(b, "source");
    const char *st = lp_json_get_str(src, "type");
    bool doc = is_type(b, "document");
    char *url = NULL;
    if (st && !strcmp(st, "base64") && lp_json_get_str(src, "data"))
        url = lp_xasprintf("data:%s;base64,%s",
                           lp_json_get_str(src, "media_type")
                               ? lp_json_get_str(src, "media_type")
                               : (doc ? "application/pdf" : "image/png"),
                           lp_json_get_str(src, "data"));
    else if (st && !strcmp(st, "url") && lp_json_get_str(src, "url") && !doc)
        url = lp_xstrdup(lp_json_get_str(src, "url"));
    if (!url) {
        lp_xlat_fail(err, "%s.source: this %s source type cannot be sent to this model", where,
                     doc ? "document" : "image");
        return NULL;
    }
    struct json_object *p = json_object_new_object();
    struct json_object *inner = json_object_new_object();
    lp_json_set_str(p, "type", doc ? "file" : "image_url");
    lp_json_set_str(inner, doc ? "file_data" : "url", url);
    lp_json_set(p, doc ? "file" : "image_url", inner);
    free(url);
    return p;
}

/* Flatten text parts of `parts` to one string; NULL when there are non-text parts. */
static struct json_object *simplify(struct json_object *parts)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    for (size_t i = 0; i < lp_json_arr_len(parts); i++) {
        struct json_object *p = lp_json_arr_at(parts, i);
        if (!is_type(p, "text")) {
            lp_buf_free(&b);
            return lp_xlat_ref(parts);
        }
        if (i > 0)
            lp_buf_appendc(&b, '\n');
        lp_buf_appends(&b, lp_json_get_str(p, "text"));
    }
    struct json_object *s = json_object_new_string_len(b.data ? b.data : "", (int)b.len);
    lp_buf_free(&b);
    return s;
}

/* A tool_result block of a type without an OpenAI form is kept as text, never emptied:
 * search_result as its title, source and text, anything else as its JSON. */
static void append_other_block(struct lp_buf *t, struct json_object *cb)
{
    if (!is_type(cb, "search_result")) {
        lp_buf_appends(t, lp_json_dump(cb, NULL));
        return;
    }
    const char *title = lp_json_get_str(cb, "title"), *src = lp_json_get_str(cb, "source");
    if (title)
        lp_buf_printf(t, "%s\n", title);
    if (src)
        lp_buf_printf(t, "Source: %s\n", src);
    char *body = lp_xlat_text_of(lp_json_get(cb, "content"), "\n");
    if (body)
        lp_buf_appends(t, body);
    free(body);
}

/* tool_result content (string or blocks) -> tool message text; images go to `images`. */
static char *tool_result_text(struct json_object *b, struct json_object *images, const char *where,
                              struct lp_xlat_err *err, bool *ok)
{
    struct json_object *c = lp_json_get(b, "content");
    struct lp_buf t;
    lp_buf_init(&t, 0);
    *ok = true;
    if (lp_json_is_str(c))
        lp_buf_appends(&t, lp_json_str(c));
    for (size_t k = 0; k < lp_json_arr_len(c); k++) {
        struct json_object *cb = lp_json_arr_at(c, k);
        if (is_type(cb, "text")) {
            if (t.len)
                lp_buf_appendc(&t, '\n');
            lp_buf_appends(&t, lp_json_get_str(cb, "text") ? lp_json_get_str(cb, "text") : "");
        } else if (is_type(cb, "image") || is_type(cb, "document")) {
            struct json_object *p = conv_media(cb, where, err);
            if (!p) {
                *ok = false;
                break;
            }
            /* A tool message holds text only: the image follows in the next user message,
             * labelled with the call it belongs to. */
            char *label =
                lp_xasprintf("[Image returned by tool call %s]", lp_json_get_str(b, "tool_use_id"));
            json_object_array_add(images, lp_xlat_text_block(label));
            free(label);
            json_object_array_add(images, p);
        } else if (lp_json_is_obj(cb)) {
            if (t.len)
                lp_buf_appendc(&t, '\n');
            append_other_block(&t, cb);
        }
    }
    if (lp_json_get_bool(b, "is_error", false)) {
        char *e = lp_xasprintf("Error: %s", t.data ? t.data : "");
        lp_buf_free(&t);
        return e;
    }
    return t.data ? lp_buf_steal(&t, NULL) : lp_xstrdup("");
}

static bool on_tool_result(struct a2o *st, struct json_object *b, struct json_object *images,
                           const char *where)
{
    const char *id = lp_json_get_str(b, "tool_use_id");
    if (!id) {
        lp_xlat_fail(st->err, "%s.tool_use_id: a string is required", where);
        return false;
    }
    bool ok;
    char *text = tool_result_text(b, images, where, st->err, &ok);
    if (ok) {
        struct json_object *m = json_object_new_object();
        lp_json_set_str(m, "role", "tool");
        lp_json_set_str(m, "tool_call_id", id);
        lp_json_set_str(m, "content", text);
        json_object_array_add(st->msgs, m);
    }
    free(text);
    return ok;
}

/* A user turn: tool results first (as tool messages), then the other blocks as one user
 * message, which also carries any images the tool results returned. */
static bool on_user_blocks(struct a2o *st, struct json_object *c, size_t i)
{
    struct json_object *parts = json_object_new_array();
    struct json_object *images = json_object_new_array();
    size_t before = lp_json_arr_len(st->msgs);
    bool ok = true;
    for (size_t j = 0; ok && j < lp_json_arr_len(c); j++) {
        struct json_object *b = lp_json_arr_at(c, j);
        char where[64];
        snprintf(where, sizeof where, "messages.%zu.content.%zu", i, j);
        if (is_type(b, "tool_result")) {
            ok = on_tool_result(st, b, images, where);
        } else if (is_type(b, "text")) {
            const char *t = lp_json_get_str(b, "text");
            if (t && *t)
                json_object_array_add(parts, lp_xlat_text_block(t));
        } else if (is_type(b, "image") || is_type(b, "document")) {
            struct json_object *p = conv_media(b, where, st->err);
            ok = p != NULL;
            if (p)
                json_object_array_add(parts, p);
        } else {
            lp_log_debug(st->o->request_id, "xlat: %s of type %s dropped", where,
                         lp_json_get_str(b, "type") ? lp_json_get_str(b, "type") : "?");
        }
    }
    for (size_t k = 0; ok && k < lp_json_arr_len(images); k++)
        json_object_array_add(parts, lp_xlat_ref(lp_json_arr_at(images, k)));
    if (ok && lp_json_arr_len(parts) > 0)
        add_msg(st, "user", simplify(parts));
    else if (ok && lp_json_arr_len(st->msgs) == before)
        add_text_msg(st, "user", ""); /* only empty blocks: the turn stays (as OpenAI allows) */
    json_object_put(parts);
    json_object_put(images);
    return ok;
}

static struct json_object *tool_call(struct json_object *b)
{
    struct json_object *tc = json_object_new_object();
    struct json_object *fn = json_object_new_object();
    struct json_object *input = lp_json_get(b, "input");
    lp_json_set_str(tc, "id", lp_json_get_str(b, "id"));
    lp_json_set_str(tc, "type", "function");
    lp_json_set_str(fn, "name", lp_json_get_str(b, "name"));
    lp_json_set_str(fn, "arguments", input ? lp_json_dump(input, NULL) : "{}");
    lp_json_set(tc, "function", fn);
    return tc;
}

/* An assistant turn: text -> content, tool_use -> tool_calls; thinking blocks are dropped
 * (their signatures mean nothing to an OpenAI backend). */
static void on_assistant_blocks(struct a2o *st, struct json_object *c, size_t i)
{
    struct lp_buf text;
    struct json_object *tcs = json_object_new_array();
    lp_buf_init(&text, 0);
    for (size_t j = 0; j < lp_json_arr_len(c); j++) {
        struct json_object *b = lp_json_arr_at(c, j);
        if (is_type(b, "text") && lp_json_get_str(b, "text")) {
            if (text.len)
                lp_buf_appendc(&text, '\n');
            lp_buf_appends(&text, lp_json_get_str(b, "text"));
        } else if (is_type(b, "tool_use") && lp_json_get_str(b, "id") &&
                   lp_json_get_str(b, "name")) {
            json_object_array_add(tcs, tool_call(b));
        } else {
            lp_log_debug(st->o->request_id, "xlat: messages.%zu.content.%zu (%s) dropped", i, j,
                         lp_json_get_str(b, "type") ? lp_json_get_str(b, "type") : "?");
        }
    }
    /* An assistant turn with nothing left (empty text, only thinking) stays as "": removing
     * it would merge the user turns around it. */
    struct json_object *m = json_object_new_object();
    lp_json_set_str(m, "role", "assistant");
    lp_json_set(m, "content",
                text.len               ? json_object_new_string(text.data)
                : lp_json_arr_len(tcs) ? NULL
                                       : json_object_new_string(""));
    if (lp_json_arr_len(tcs) > 0)
        lp_json_set(m, "tool_calls", lp_xlat_ref(tcs));
    json_object_array_add(st->msgs, m);
    lp_buf_free(&text);
    json_object_put(tcs);
}

static bool on_message(struct a2o *st, struct json_object *m, size_t i)
{
    const char *role = lp_json_get_str(m, "role");
    struct json_object *c = lp_json_get(m, "content");
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))) {
        lp_xlat_fail(st->err, "messages.%zu.role: must be \"user\" or \"assistant\"", i);
        return false;
    }
    if (!lp_json_is_str(c) && !lp_json_is_arr(c)) {
        lp_xlat_fail(st->err, "messages.%zu.content: must be a string or an array of blocks", i);
        return false;
    }
    if (!strcmp(role, "system")) { /* Claude Code's mid-conversation system messages */
        char *t = lp_xlat_text_of(c, "\n\n");
        if (t && *t)
            add_text_msg(st, "system", t);
        free(t);
        return true;
    }
    if (lp_json_is_str(c)) {
        add_text_msg(st, role, lp_json_str(c));
        return true;
    }
    if (!strcmp(role, "user"))
        return on_user_blocks(st, c, i);
    on_assistant_blocks(st, c, i);
    return true;
}

/* A final assistant message with text only (no tool call) asks the model to continue it. */
static bool is_prefill(struct json_object *m)
{
    const char *role = lp_json_get_str(m, "role");
    if (!role || strcmp(role, "assistant") != 0)
        return false;
    struct json_object *c = lp_json_get(m, "content");
    for (size_t j = 0; j < lp_json_arr_len(c); j++)
        if (is_type(lp_json_arr_at(c, j), "tool_use"))
            return false;
    return true;
}

static bool conv_messages(struct a2o *st, struct json_object *in)
{
    struct json_object *msgs = lp_json_get_arr(in, "messages");
    if (!msgs) {
        lp_xlat_fail(st->err, "messages: an array is required");
        return false;
    }
    char *sys = lp_xlat_text_of(lp_json_get(in, "system"), "\n\n");
    if (sys && *sys)
        add_text_msg(st, "system", sys);
    free(sys);
    size_t n = lp_json_arr_len(msgs);
    if (n > 1 && is_prefill(lp_json_arr_at(msgs, n - 1))) {
        /* A prefill: an OpenAI backend answers a new turn instead of continuing this one. */
        if (!lp_xlat_unsupported(st->o, st->err, "messages",
                                 "a final assistant message (prefill) cannot be continued by "
                                 "this model's backend"))
            return false;
        n--;
    }
    for (size_t i = 0; i < n; i++)
        if (!on_message(st, lp_json_arr_at(msgs, i), i))
            return false;
    return true;
}

/* Custom tools carry input_schema; server tools (web_search_*, bash_*, ...) do not translate. */
static void conv_tools(struct a2o *st, struct json_object *in, struct json_object *out)
{
    struct json_object *tools = lp_json_get_arr(in, "tools");
    struct json_object *arr = json_object_new_array();
    for (size_t k = 0; k < lp_json_arr_len(tools); k++) {
        struct json_object *t = lp_json_arr_at(tools, k);
        const char *name = lp_json_get_str(t, "name");
        struct json_object *schema = lp_json_get_obj(t, "input_schema");
        if (!name || !schema) {
            lp_log_debug(st->o->request_id,
                         "xlat: tools.%zu (%s) has no OpenAI equivalent, dropped", k,
                         lp_json_get_str(t, "type") ? lp_json_get_str(t, "type") : "?");
            continue;
        }
        struct json_object *fn = json_object_new_object();
        lp_json_set_str(fn, "name", name);
        if (lp_json_get_str(t, "description"))
            lp_json_set_str(fn, "description", lp_json_get_str(t, "description"));
        lp_json_set(fn, "parameters", lp_xlat_ref(schema));
        struct json_object *ft = json_object_new_object();
        lp_json_set_str(ft, "type", "function");
        lp_json_set(ft, "function", fn);
        json_object_array_add(arr, ft);
    }
    if (lp_json_arr_len(arr) > 0)
        lp_json_set(out, "tools", arr);
    else
        json_object_put(arr);
}

static bool has_tool_named(struct json_object *tools, const char *name)
{
    for (size_t k = 0; k < lp_json_arr_len(tools); k++) {
        const char *n =
            lp_json_get_str(lp_json_get_obj(lp_json_arr_at(tools, k), "function"), "name");
        if (n && !strcmp(n, name))
            return true;
    }
    return false;
}

/* OpenAI refuses tool_choice/parallel_tool_calls without tools, so they need tools present. A
 * choice that forces a tool which is not there is refused, as Anthropic itself does. */
static bool conv_tool_choice(struct a2o *st, struct json_object *in, struct json_object *out)
{
    struct json_object *tc = lp_json_get_obj(in, "tool_choice");
    const char *type = lp_json_get_str(tc, "type");
    struct json_object *tools = lp_json_get_arr(out, "tools");
    if (type && !strcmp(type, "tool") && lp_json_get_str(tc, "name") &&
        !has_tool_named(tools, lp_json_get_str(tc, "name"))) {
        lp_xlat_fail(st->err, "tool_choice.name: tool \"%.64s\" is not among the tools",
                     lp_json_get_str(tc, "name"));
        return false;
    }
    if (type && !strcmp(type, "any") && !tools) {
        lp_xlat_fail(st->err, "tool_choice: type \"any\" requires tools");
        return false;
    }
    if (!tools)
        return true;
    if (type && !strcmp(type, "tool") && lp_json_get_str(tc, "name")) {
        struct json_object *r = json_object_new_object();
        struct json_object *fn = json_object_new_object();
        lp_json_set_str(r, "type", "function");
        lp_json_set_str(fn, "name", lp_json_get_str(tc, "name"));
        lp_json_set(r, "function", fn);
        lp_json_set(out, "tool_choice", r);
    } else if (type) {
        lp_json_set_str(out, "tool_choice",
                        !strcmp(type, "any")    ? "required"
                        : !strcmp(type, "none") ? "none"
                                                : "auto");
    }
    if (lp_json_get_bool(tc, "disable_parallel_tool_use", false))
        lp_json_set_bool(out, "parallel_tool_calls", false);
    return true;
}

static void conv_user(struct json_object *in, struct json_object *out)
{
    const char *u = lp_json_get_str(lp_json_get_obj(in, "metadata"), "user_id");
    if (!u || !*u)
        return;
    if (strlen(u) <= MAX_USER_LEN) {
        lp_json_set_str(out, "user", u);
        return;
    }
    char *h = lp_xlat_make_id("user-", NULL, u, strlen(u));
    lp_json_set_str(out, "user", h);
    free(h);
}

/* OpenAI's reasoning models (o1, o3, o4, gpt-5...) take reasoning_effort and
 * max_completion_tokens; other models have no thinking to ask for. */
static bool is_reasoning_model(const char *m)
{
    if (!m)
        return false;
    const char *slash = strrchr(m, '/'); /* "openai/o3-mini" */
    if (slash)
        m = slash + 1;
    return (m[0] == 'o' && m[1] >= '1' && m[1] <= '9') || !strncmp(m, "gpt-5", 5);
}

/* thinking {type: enabled, budget_tokens} -> reasoning_effort on a reasoning model, else
 * dropped and listed. */
static void conv_thinking(struct a2o *st, struct json_object *in, struct json_object *out)
{
    struct json_object *th = lp_json_get_obj(in, "thinking");
    const char *type = lp_json_get_str(th, "type");
    const char *model = lp_json_get_str(out, "model");
    bool reasoning = is_reasoning_model(model);
    if (reasoning && lp_json_get(out, "max_tokens")) {
        lp_json_set(out, "max_completion_tokens", lp_xlat_ref(lp_json_get(out, "max_tokens")));
        json_object_object_del(out, "max_tokens");
    }
    if (!type || !strcmp(type, "disabled"))
        return;
    if (!reasoning) {
        lp_log_debug(st->o->request_id, "xlat: thinking dropped (%s is no reasoning model)",
                     model ? model : "?");
        lp_xlat_note_drop(st->o->notes, "thinking");
        return;
    }
    int64_t budget = 0;
    lp_json_get_int64(th, "budget_tokens", &budget);
    lp_json_set_str(out, "reasoning_effort",
                    !strcmp(type, "adaptive") ? "medium"
                    : budget < 4096           ? "low"
                    : budget < 16384          ? "medium"
                                              : "high");
}

static bool conv_params(struct a2o *st, struct json_object *in, struct json_object *out)
{
    double d;
    if (lp_json_get(in, "max_tokens")) {
        if (!lp_json_get_double(in, "max_tokens", &d) || !isfinite(d) || d < 1 || d > 1e15) {
            lp_xlat_fail(st->err, "max_tokens: must be a positive integer");
            return false;
        }
        int64_t mt = (int64_t)d;
        if (st->o->max_tokens_limit > 0 && mt > st->o->max_tokens_limit)
            mt = st->o->max_tokens_limit;
        lp_json_set_int(out, "max_tokens", mt);
    }
    static const char *copy[] = {"temperature", "top_p"};
    for (size_t k = 0; k < 2; k++)
        if (lp_json_get_double(in, copy[k], &d))
            lp_json_set(out, copy[k], lp_xlat_ref(lp_json_get(in, copy[k])));
    struct json_object *ss = lp_json_get_arr(in, "stop_sequences");
    if (lp_json_arr_len(ss) > MAX_OPENAI_STOP) {
        /* OpenAI accepts at most 4: refuse, or send the first 4 under `drop`. */
        if (!lp_xlat_unsupported(st->o, st->err, "stop_sequences",
                                 "this model's backend accepts at most 4 stop sequences"))
            return false;
        struct json_object *first = json_object_new_array();
        for (size_t k = 0; k < MAX_OPENAI_STOP; k++)
            json_object_array_add(first, lp_xlat_ref(lp_json_arr_at(ss, k)));
        lp_json_set(out, "stop", first);
    } else if (lp_json_arr_len(ss) > 0) {
        lp_json_set(out, "stop", lp_xlat_ref(ss));
    }
    conv_thinking(st, in, out);
    conv_user(in, out);
    bool stream = lp_json_get_bool(in, "stream", st->o->stream);
    lp_json_set_bool(out, "stream", stream);
    if (stream) {
        struct json_object *so = json_object_new_object();
        lp_json_set_bool(so, "include_usage", true);
        lp_json_set(out, "stream_options", so);
    }
    return true;
}

/* Every other field has no OpenAI form (top_k, service_tier, container, mcp_servers...):
 * dropped, and listed for the client (the X-LLM-Proxy-Dropped-Params header) unless null. */
static void log_dropped(struct a2o *st, struct json_object *in)
{
    static const char *handled[] = {"model",       "messages",    "system",         "max_tokens",
                                    "temperature", "top_p",       "stop_sequences", "stream",
                                    "tools",       "tool_choice", "metadata",       "thinking"};
    json_object_object_foreach(in, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof handled / sizeof handled[0] && !known; i++)
            known = !strcmp(k, handled[i]);
        if (known || json_object_is_type(v, json_type_null))
            continue;
        lp_log_debug(st->o->request_id,
                     "xlat: Anthropic field \"%s\" has no OpenAI equivalent, dropped", k);
        lp_xlat_note_drop(st->o->notes, k);
    }
}

struct json_object *lp_xlat_req_a2o(struct json_object *in, const struct lp_xlat_opts *o,
                                    struct lp_xlat_err *err)
{
    struct a2o st = {.o = o, .err = err, .msgs = json_object_new_array()};
    struct json_object *out = json_object_new_object();
    if (o->upstream_model)
        lp_json_set_str(out, "model", o->upstream_model);
    else
        lp_json_set(out, "model", lp_xlat_ref(lp_json_get(in, "model")));
    if (!conv_messages(&st, in)) {
        json_object_put(out);
        json_object_put(st.msgs);
        return NULL;
    }
    lp_json_set(out, "messages", st.msgs);
    conv_tools(&st, in, out);
    if (!conv_tool_choice(&st, in, out) || !conv_params(&st, in, out)) {
        json_object_put(out);
        return NULL;
    }
    log_dropped(&st, in);
    return out;
}
