/* proto/xlat_req_o2a.c - OpenAI chat-completions request -> Anthropic messages request.
 *
 * Anthropic needs strictly alternating user/assistant turns, tool results inside user turns
 * (before any text of that turn), a top-level `system`, and non-empty text blocks. The OpenAI
 * message list is therefore rebuilt turn by turn: every message contributes blocks to the
 * current turn, and a role change closes it. See docs/translation.md for the tables.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto/xlat.h"
#include "util/alloc.h"
#include "util/json.h"

#define MIN_THINKING_BUDGET 1024 /* Anthropic's minimum budget_tokens */

struct o2a {
    const struct lp_xlat_opts *o;
    struct lp_xlat_err *err;
    struct json_object *system;     /* array of text blocks */
    struct json_object *msgs;       /* output messages */
    struct json_object *turn;       /* content blocks of the open turn, or NULL */
    const char *turn_role;          /* role of the open turn */
    struct json_object *tool_names; /* names used by tool_use blocks (an object used as a set) */
    bool seen_turn;                 /* a user/assistant/tool message has been seen */
    bool has_tool_blocks;           /* any tool_use or tool_result block was emitted */
};

static bool is_type(struct json_object *b, const char *t)
{
    const char *bt = lp_json_get_str(b, "type");
    return bt && !strcmp(bt, t);
}

/* Anthropic wants tool_result blocks first in a user turn; keep the rest in order after them. */
static struct json_object *tool_results_first(struct json_object *blocks)
{
    struct json_object *r = json_object_new_array();
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < lp_json_arr_len(blocks); i++) {
            struct json_object *b = lp_json_arr_at(blocks, i);
            if (is_type(b, "tool_result") == (pass == 0))
                json_object_array_add(r, lp_xlat_ref(b));
        }
    }
    return r;
}

static void flush_turn(struct o2a *st)
{
    if (!st->turn)
        return;
    struct json_object *m = json_object_new_object();
    lp_json_set_str(m, "role", st->turn_role);
    if (!strcmp(st->turn_role, "user")) {
        lp_json_set(m, "content", tool_results_first(st->turn));
        json_object_put(st->turn);
    } else {
        lp_json_set(m, "content", st->turn);
    }
    json_object_array_add(st->msgs, m);
    st->turn = NULL;
}

/* Add a block (ownership taken) to the turn of `role`, opening a new turn on a role change:
 * consecutive same-role messages are merged, as Anthropic requires alternation. */
static void push_block(struct o2a *st, const char *role, struct json_object *block)
{
    if (st->turn && strcmp(st->turn_role, role) != 0)
        flush_turn(st);
    if (!st->turn) {
        st->turn = json_object_new_array();
        st->turn_role = role;
    }
    json_object_array_add(st->turn, block);
}

static struct json_object *image_source_url(const char *url)
{
    struct json_object *src = json_object_new_object();
    lp_json_set_str(src, "type", "url");
    lp_json_set_str(src, "url", url);
    return src;
}

/* "data:<media>;base64,<data>" -> {type:base64, media_type, data}; NULL when not that form. */
static struct json_object *data_url_source(const char *url)
{
    if (strncmp(url, "data:", 5) != 0)
        return NULL;
    const char *comma = strchr(url, ',');
    if (!comma)
        return NULL;
    const char *hdr = url + 5;
    size_t hlen = (size_t)(comma - hdr);
    if (hlen < 7 || strncmp(comma - 7, ";base64", 7) != 0)
        return NULL;
    size_t mlen = strcspn(hdr, ";");
    if (mlen == 0 || mlen > hlen)
        return NULL;
    struct json_object *src = json_object_new_object();
    lp_json_set_str(src, "type", "base64");
    json_object_object_add(src, "media_type", json_object_new_string_len(hdr, (int)mlen));
    lp_json_set_str(src, "data", comma + 1);
    return src;
}

static struct json_object *media_block(const char *type, struct json_object *src)
{
    struct json_object *b = json_object_new_object();
    lp_json_set_str(b, "type", type);
    lp_json_set(b, "source", src);
    return b;
}

/* OpenAI image_url part -> Anthropic image block, or NULL with *err set. */
static struct json_object *conv_image(struct json_object *part, const char *where,
                                      struct lp_xlat_err *err)
{
    struct json_object *iu = lp_json_get(part, "image_url");
    const char *url = lp_json_is_str(iu) ? lp_json_str(iu) : lp_json_get_str(iu, "url");
    if (!url) {
        lp_xlat_fail(err, "%s.image_url.url: a string is required", where);
        return NULL;
    }
    if (!strncmp(url, "data:", 5)) {
        struct json_object *src = data_url_source(url);
        if (!src)
            lp_xlat_fail(err, "%s.image_url.url: only base64 data URLs are supported", where);
        return src ? media_block("image", src) : NULL;
    }
    if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8))
        return media_block("image", image_source_url(url));
    lp_xlat_fail(err, "%s.image_url.url: expected an http(s) or base64 data URL", where);
    return NULL;
}

/* OpenAI file part with inline file_data (a PDF data URL) -> Anthropic document block. */
static struct json_object *conv_file(struct json_object *part, const char *where,
                                     struct lp_xlat_err *err)
{
    struct json_object *f = lp_json_get_obj(part, "file");
    const char *data = lp_json_get_str(f, "file_data");
    struct json_object *src = data ? data_url_source(data) : NULL;
    if (!src) {
        lp_xlat_fail(err, "%s.file: only inline file_data (a base64 data URL) is supported", where);
        return NULL;
    }
    return media_block("document", src);
}

/* One OpenAI content part -> an Anthropic block. Returns NULL with skip=true for an empty text
 * part (Anthropic rejects empty text blocks), or NULL with *err set. */
static struct json_object *conv_part(struct json_object *part, const char *where, bool *skip,
                                     struct lp_xlat_err *err)
{
    const char *t = lp_json_get_str(part, "type");
    *skip = false;
    if (!t) {
        lp_xlat_fail(err, "%s.type: a string is required", where);
        return NULL;
    }
    if (!strcmp(t, "text") || !strcmp(t, "input_text") || !strcmp(t, "refusal")) {
        const char *s = lp_json_get_str(part, !strcmp(t, "refusal") ? "refusal" : "text");
        if (!s) {
            lp_xlat_fail(err, "%s.text: a string is required", where);
            return NULL;
        }
        *skip = *s == '\0';
        return *skip ? NULL : lp_xlat_text_block(s);
    }
    if (!strcmp(t, "image_url"))
        return conv_image(part, where, err);
    if (!strcmp(t, "file"))
        return conv_file(part, where, err);
    lp_xlat_fail(err, "%s: content part type \"%.40s\" cannot be sent to this model", where, t);
    return NULL;
}

/* Content (string or parts) -> blocks appended to `dst`. false with *err set on a bad part. */
static bool conv_content(struct json_object *content, size_t i, struct json_object *dst,
                         struct lp_xlat_err *err)
{
    if (lp_json_is_str(content)) {
        if (*lp_json_str(content))
            json_object_array_add(dst, lp_xlat_text_block(lp_json_str(content)));
        return true;
    }
    if (content && !lp_json_is_arr(content)) {
        if (json_object_is_type(content, json_type_null))
            return true;
        lp_xlat_fail(err, "messages[%zu].content: must be a string or an array of parts", i);
        return false;
    }
    for (size_t j = 0; j < lp_json_arr_len(content); j++) {
        char where[64];
        bool skip;
        snprintf(where, sizeof where, "messages[%zu].content[%zu]", i, j);
        struct json_object *part = lp_json_arr_at(content, j);
        struct json_object *b = conv_part(part, where, &skip, err);
        if (!b && !skip)
            return false;
        /* Prompt caching: a part's cache_control (Anthropic's own form, which OpenAI-format
         * clients such as the Vercel AI SDK send) stays on its block. */
        if (b && lp_json_get_obj(part, "cache_control"))
            lp_json_set(b, "cache_control", lp_xlat_ref(lp_json_get(part, "cache_control")));
        if (b)
            json_object_array_add(dst, b);
    }
    return true;
}

/* A message's `name` (no Anthropic field) is kept as a "<name>: " prefix of its first text
 * block, so a multi-party conversation keeps its speakers. */
static void prefix_name(struct json_object *blocks, const char *name)
{
    for (size_t j = 0; name && *name && j < lp_json_arr_len(blocks); j++) {
        struct json_object *b = lp_json_arr_at(blocks, j);
        if (!is_type(b, "text"))
            continue;
        char *t = lp_xasprintf("%s: %s", name, lp_json_get_str(b, "text"));
        lp_json_set_str(b, "text", t);
        free(t);
        return;
    }
}

static bool push_content(struct o2a *st, const char *role, struct json_object *m, size_t i)
{
    struct json_object *blocks = json_object_new_array();
    bool ok = conv_content(lp_json_get(m, "content"), i, blocks, st->err);
    if (ok)
        prefix_name(blocks, lp_json_get_str(m, "name"));
    for (size_t j = 0; ok && j < lp_json_arr_len(blocks); j++)
        push_block(st, role, lp_xlat_ref(lp_json_arr_at(blocks, j)));
    json_object_put(blocks);
    return ok;
}

/* system/developer: leading ones become top-level `system` blocks in order; later ones stay in
 * place as a <system-reminder> user text (Anthropic has no mid-conversation system role without
 * a beta header; this is the convention Claude models are trained on). */
static bool on_system(struct o2a *st, struct json_object *m, size_t i)
{
    struct json_object *content = lp_json_get(m, "content");
    if (!st->seen_turn) {
        struct json_object *blocks = json_object_new_array();
        bool ok = conv_content(content, i, blocks, st->err);
        for (size_t j = 0; ok && j < lp_json_arr_len(blocks); j++) {
            struct json_object *b = lp_json_arr_at(blocks, j);
            if (!is_type(b, "text")) {
                lp_xlat_fail(st->err, "messages[%zu].content: system messages take text only", i);
                ok = false;
            } else {
                json_object_array_add(st->system, lp_xlat_ref(b));
            }
        }
        json_object_put(blocks);
        return ok;
    }
    char *text = lp_xlat_text_of(content, "\n");
    if (text && *text) {
        char *wrapped = lp_xasprintf("<system-reminder>\n%s\n</system-reminder>", text);
        push_block(st, "user", lp_xlat_text_block(wrapped));
        free(wrapped);
    }
    free(text);
    return true;
}

/* tool_calls[j].function.arguments (a JSON string; "" means {}) -> the tool_use input object. */
static struct json_object *parse_args(struct json_object *fn, size_t i, size_t j,
                                      struct lp_xlat_err *err)
{
    struct json_object *a = lp_json_get(fn, "arguments");
    if (!a || json_object_is_type(a, json_type_null))
        return json_object_new_object();
    if (lp_json_is_obj(a))
        return lp_xlat_ref(a);
    if (!lp_json_is_str(a)) {
        lp_xlat_fail(err, "messages[%zu].tool_calls[%zu].function.arguments: must be a string", i,
                     j);
        return NULL;
    }
    const char *s = lp_json_str(a);
    size_t n = (size_t)json_object_get_string_len(a);
    if (strspn(s, " \t\r\n") == n)
        return json_object_new_object();
    const char *perr = NULL;
    struct json_object *v = lp_json_parse(s, n, &perr);
    if (!lp_json_is_obj(v)) {
        lp_xlat_fail(err, "messages[%zu].tool_calls[%zu].function.arguments: %s%s", i, j,
                     v ? "must be a JSON object" : "invalid JSON: ", v ? "" : perr);
        json_object_put(v);
        return NULL;
    }
    return v;
}

static bool on_tool_call(struct o2a *st, struct json_object *tc, size_t i, size_t j)
{
    struct json_object *fn = lp_json_get_obj(tc, "function");
    const char *id = lp_json_get_str(tc, "id");
    const char *name = lp_json_get_str(fn, "name");
    if (!id || !*id || !name || !*name) {
        lp_xlat_fail(st->err, "messages[%zu].tool_calls[%zu]: %s is required", i, j,
                     !id || !*id ? "id" : "function.name");
        return false;
    }
    struct json_object *input = parse_args(fn, i, j, st->err);
    if (!input)
        return false;
    struct json_object *b = json_object_new_object();
    lp_json_set_str(b, "type", "tool_use");
    lp_json_set_str(b, "id", id);
    lp_json_set_str(b, "name", name);
    lp_json_set(b, "input", input);
    push_block(st, "assistant", b);
    lp_json_set_bool(st->tool_names, name, true);
    st->has_tool_blocks = true;
    return true;
}

static bool on_assistant(struct o2a *st, struct json_object *m, size_t i)
{
    if (lp_json_get(m, "reasoning_content"))
        lp_log_debug(st->o->request_id, "xlat: messages[%zu].reasoning_content dropped", i);
    if (!push_content(st, "assistant", m, i))
        return false;
    struct json_object *tcs = lp_json_get(m, "tool_calls");
    if (tcs && !lp_json_is_arr(tcs) && !json_object_is_type(tcs, json_type_null)) {
        lp_xlat_fail(st->err, "messages[%zu].tool_calls: must be an array", i);
        return false;
    }
    for (size_t j = 0; j < lp_json_arr_len(tcs); j++)
        if (!on_tool_call(st, lp_json_arr_at(tcs, j), i, j))
            return false;
    return true;
}

static bool on_tool(struct o2a *st, struct json_object *m, size_t i)
{
    const char *id = lp_json_get_str(m, "tool_call_id");
    if (!id || !*id) {
        lp_xlat_fail(st->err, "messages[%zu].tool_call_id: required for role \"tool\"", i);
        return false;
    }
    struct json_object *content = lp_json_get(m, "content");
    struct json_object *rc;
    if (lp_json_is_arr(content)) {
        rc = json_object_new_array();
        if (!conv_content(content, i, rc, st->err)) {
            json_object_put(rc);
            return false;
        }
    } else {
        rc = json_object_new_string(lp_json_is_str(content) ? lp_json_str(content) : "");
    }
    struct json_object *b = json_object_new_object();
    lp_json_set_str(b, "type", "tool_result");
    lp_json_set_str(b, "tool_use_id", id);
    lp_json_set(b, "content", rc);
    push_block(st, "user", b);
    st->has_tool_blocks = true;
    return true;
}

static bool on_message(struct o2a *st, struct json_object *m, size_t i)
{
    const char *role = lp_json_get_str(m, "role");
    if (!role) {
        lp_xlat_fail(st->err, "messages[%zu].role: a string is required", i);
        return false;
    }
    if (!strcmp(role, "system") || !strcmp(role, "developer"))
        return on_system(st, m, i);
    st->seen_turn = true;
    if (!strcmp(role, "user"))
        return push_content(st, "user", m, i);
    if (!strcmp(role, "assistant"))
        return on_assistant(st, m, i);
    if (!strcmp(role, "tool"))
        return on_tool(st, m, i);
    lp_xlat_fail(st->err, "messages[%zu].role: unsupported role \"%.32s\"", i, role);
    return false;
}

/* JSON Schema is passed through nearly intact (Anthropic accepts draft 2020-12); only the top
 * level must be an object schema. */
static struct json_object *input_schema(struct json_object *params)
{
    struct json_object *s;
    if (lp_json_is_obj(params)) {
        s = json_object_new_object();
        json_object_object_foreach(params, k, v) lp_json_set(s, k, lp_xlat_ref(v));
    } else {
        s = json_object_new_object();
    }
    lp_json_set_str(s, "type", "object");
    if (!lp_json_get_obj(s, "properties"))
        lp_json_set(s, "properties", json_object_new_object());
    return s;
}

static bool conv_tools(struct o2a *st, struct json_object *tools, struct json_object *out)
{
    struct json_object *arr = json_object_new_array();
    for (size_t k = 0; k < lp_json_arr_len(tools); k++) {
        struct json_object *t = lp_json_arr_at(tools, k);
        const char *type = lp_json_get_str(t, "type");
        if (type && strcmp(type, "function") != 0) {
            lp_log_debug(st->o->request_id, "xlat: tools[%zu] of type %s dropped", k, type);
            continue;
        }
        struct json_object *fn = lp_json_get_obj(t, "function");
        const char *name = lp_json_get_str(fn, "name");
        if (!name || !*name) {
            lp_xlat_fail(st->err, "tools[%zu].function.name: a string is required", k);
            json_object_put(arr);
            return false;
        }
        struct json_object *a = json_object_new_object();
        lp_json_set_str(a, "name", name);
        const char *desc = lp_json_get_str(fn, "description");
        if (desc)
            lp_json_set_str(a, "description", desc);
        lp_json_set(a, "input_schema", input_schema(lp_json_get(fn, "parameters")));
        struct json_object *cc = lp_json_get_obj(t, "cache_control");
        if (!cc)
            cc = lp_json_get_obj(fn, "cache_control");
        if (cc)
            lp_json_set(a, "cache_control", lp_xlat_ref(cc));
        json_object_array_add(arr, a);
    }
    if (lp_json_arr_len(arr) > 0)
        lp_json_set(out, "tools", arr);
    else
        json_object_put(arr);
    return true;
}

/* Anthropic rejects tool_use/tool_result blocks when no tools are defined ("Requests which
 * include tool_use or tool_result blocks must define tools"). An OpenAI client may send tool
 * history without tools: declare the names the history uses, with an open schema, and forbid
 * new calls (tool_choice none), which is what OpenAI does without tools. */
static void placeholder_tools(struct o2a *st, struct json_object *out)
{
    struct json_object *arr = json_object_new_array();
    json_object_object_foreach(st->tool_names, name, unused)
    {
        (void)unused;
        struct json_object *t = json_object_new_object();
        lp_json_set_str(t, "name", name);
        lp_json_set_str(t, "description", "Tool used earlier in this conversation.");
        lp_json_set(t, "input_schema", input_schema(NULL));
        json_object_array_add(arr, t);
    }
    if (lp_json_arr_len(arr) == 0) {
        struct json_object *t = json_object_new_object();
        lp_json_set_str(t, "name", "placeholder_tool");
        lp_json_set_str(t, "description", "Tool used earlier in this conversation.");
        lp_json_set(t, "input_schema", input_schema(NULL));
        json_object_array_add(arr, t);
    }
    lp_json_set(out, "tools", arr);
    struct json_object *tc = json_object_new_object();
    lp_json_set_str(tc, "type", "none");
    lp_json_set(out, "tool_choice", tc);
}

static struct json_object *conv_tool_choice(struct json_object *tc)
{
    const char *s = lp_json_str(tc);
    struct json_object *r = json_object_new_object();
    if (s) {
        lp_json_set_str(r, "type",
                        !strcmp(s, "required") ? "any"
                        : !strcmp(s, "none")   ? "none"
                                               : "auto");
        return r;
    }
    const char *name = lp_json_get_str(lp_json_get_obj(tc, "function"), "name");
    if (name) {
        lp_json_set_str(r, "type", "tool");
        lp_json_set_str(r, "name", name);
    } else {
        lp_json_set_str(r, "type", "auto");
    }
    return r;
}

static void set_tool_choice(struct json_object *in, struct json_object *out)
{
    if (!lp_json_get(out, "tools"))
        return;
    struct json_object *tc = lp_json_get(in, "tool_choice");
    struct json_object *r = NULL;
    if (tc && !json_object_is_type(tc, json_type_null))
        r = conv_tool_choice(tc);
    const char *type = r ? lp_json_get_str(r, "type") : "auto";
    if (!lp_json_get_bool(in, "parallel_tool_calls", true) && strcmp(type, "none") != 0) {
        if (!r) {
            r = json_object_new_object();
            lp_json_set_str(r, "type", "auto");
        }
        lp_json_set_bool(r, "disable_parallel_tool_use", true);
    }
    if (r)
        lp_json_set(out, "tool_choice", r);
}

static bool get_max_tokens(struct o2a *st, struct json_object *in, int64_t *mt)
{
    static const char *keys[] = {"max_completion_tokens", "max_tokens"};
    for (size_t k = 0; k < 2; k++) {
        struct json_object *v = lp_json_get(in, keys[k]);
        if (!v || json_object_is_type(v, json_type_null))
            continue;
        double d;
        if (!lp_json_get_double(in, keys[k], &d) || !isfinite(d) || d < 1 || d > 1e15) {
            lp_xlat_fail(st->err, "%s: must be a positive integer", keys[k]);
            return false;
        }
        *mt = (int64_t)d;
        goto clamp;
    }
    /* None given: the route's/backend's max_tokens, else proxy.default_max_tokens, else the
     * model's own output limit (a flat 4096 would cut long answers). */
    if (st->o->max_tokens_limit > 0)
        *mt = st->o->max_tokens_limit;
    else if (st->o->default_max_tokens > 0)
        *mt = st->o->default_max_tokens;
    else
        *mt = lp_xlat_model_max_tokens(st->o->upstream_model ? st->o->upstream_model
                                                             : lp_json_get_str(in, "model"));
clamp:
    if (st->o->max_tokens_limit > 0 && *mt > st->o->max_tokens_limit)
        *mt = st->o->max_tokens_limit;
    return true;
}

static void conv_stop(struct json_object *in, struct json_object *out)
{
    struct json_object *stop = lp_json_get(in, "stop");
    struct json_object *arr = json_object_new_array();
    size_t n = lp_json_is_arr(stop) ? lp_json_arr_len(stop) : 1;
    for (size_t k = 0; k < n; k++) {
        struct json_object *v = lp_json_is_arr(stop) ? lp_json_arr_at(stop, k) : stop;
        const char *s = lp_json_str(v);
        if (s && s[strspn(s, " \t\r\n")] != '\0')
            json_object_array_add(arr, lp_xlat_ref(v));
    }
    if (lp_json_arr_len(arr) > 0)
        lp_json_set(out, "stop_sequences", arr);
    else
        json_object_put(arr);
}

static void conv_sampling(struct o2a *st, struct json_object *in, struct json_object *out)
{
    double t;
    if (lp_json_get_double(in, "temperature", &t)) {
        /* OpenAI allows 0..2, Anthropic 0..1: clamp rather than be refused. */
        if (t > 1.0) {
            lp_log_debug(st->o->request_id, "xlat: temperature %g clamped to 1", t);
            lp_xlat_note_drop(st->o->notes, "temperature");
            lp_json_set(out, "temperature", json_object_new_double(1.0));
        } else {
            lp_json_set(out, "temperature", lp_xlat_ref(lp_json_get(in, "temperature")));
        }
    }
    if (lp_json_get_double(in, "top_p", &t))
        lp_json_set(out, "top_p", lp_xlat_ref(lp_json_get(in, "top_p")));
    const char *user = lp_json_get_str(in, "user");
    if (user && *user) {
        struct json_object *md = json_object_new_object();
        lp_json_set_str(md, "user_id", user);
        lp_json_set(out, "metadata", md);
    }
}

/* The last assistant turn holds a tool_use: we are inside a tool loop, and Anthropic then
 * requires that turn to start with a (signed) thinking block, which an OpenAI client never has. */
static bool in_tool_loop(struct json_object *msgs)
{
    for (size_t i = lp_json_arr_len(msgs); i-- > 0;) {
        struct json_object *m = lp_json_arr_at(msgs, i);
        const char *role = lp_json_get_str(m, "role");
        if (!role || strcmp(role, "assistant") != 0)
            continue;
        struct json_object *c = lp_json_get_arr(m, "content");
        for (size_t j = 0; j < lp_json_arr_len(c); j++)
            if (is_type(lp_json_arr_at(c, j), "tool_use"))
                return true;
        return false;
    }
    return false;
}

/* reasoning_effort -> thinking with a budget that leaves at least half of max_tokens for the
 * answer. Skipped when it cannot be honoured (budget < 1024, forced tool use, tool loop). */
static void conv_reasoning(struct o2a *st, struct json_object *in, struct json_object *out,
                           int64_t max_tokens)
{
    const char *e = lp_json_get_str(in, "reasoning_effort");
    if (!e)
        return;
    if (!strcmp(e, "none"))
        return;
    int64_t want = !strcmp(e, "minimal") || !strcmp(e, "low") ? 1024
                   : !strcmp(e, "medium")                     ? 8192
                   : !strcmp(e, "high")                       ? 24576
                   : !strcmp(e, "xhigh") || !strcmp(e, "max") ? 32768
                                                              : 0;
    int64_t budget = want < max_tokens / 2 ? want : max_tokens / 2;
    const char *tct = lp_json_get_str(lp_json_get_obj(out, "tool_choice"), "type");
    bool forced = tct && (!strcmp(tct, "any") || !strcmp(tct, "tool"));
    if (budget < MIN_THINKING_BUDGET || forced || in_tool_loop(lp_json_get(out, "messages"))) {
        lp_log_debug(st->o->request_id, "xlat: reasoning_effort %s not mapped to thinking", e);
        lp_xlat_note_drop(st->o->notes, "reasoning_effort");
        return;
    }
    struct json_object *th = json_object_new_object();
    lp_json_set_str(th, "type", "enabled");
    lp_json_set_int(th, "budget_tokens", budget);
    lp_json_set(out, "thinking", th);
    /* With thinking Anthropic forbids temperature and accepts top_p only in [0.95, 1]. */
    json_object_object_del(out, "temperature");
    double p;
    if (lp_json_get_double(out, "top_p", &p) && p < 0.95)
        json_object_object_del(out, "top_p");
}

/* A value that asks for nothing: null, false, 0, "", {} or [] (e.g. frequency_penalty: 0). */
static bool is_noop_value(struct json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        return true;
    case json_type_boolean:
        return !json_object_get_boolean(v);
    case json_type_int:
    case json_type_double:
        return json_object_get_double(v) == 0.0;
    case json_type_string:
        return json_object_get_string_len(v) == 0;
    case json_type_object:
        return json_object_object_length(v) == 0;
    case json_type_array:
        return json_object_array_length(v) == 0;
    }
    return false;
}

/* Parameters that change the answer itself and cannot be honoured: refused (or dropped under
 * translation.unsupported: drop). */
static bool check_unsupported(struct o2a *st, struct json_object *in)
{
    int64_t n;
    if (lp_json_get_int64(in, "n", &n) && n > 1 &&
        !lp_xlat_unsupported(st->o, st->err, "n", "this model's backend returns one choice"))
        return false;
    if (lp_json_get_bool(in, "logprobs", false) &&
        !lp_xlat_unsupported(st->o, st->err, "logprobs",
                             "log probabilities are not available from this model's backend"))
        return false;
    struct json_object *tl = lp_json_get(in, "top_logprobs");
    if (tl && !is_noop_value(tl) &&
        !lp_xlat_unsupported(st->o, st->err, "top_logprobs",
                             "log probabilities are not available from this model's backend"))
        return false;
    bool audio = lp_json_get(in, "audio") && !is_noop_value(lp_json_get(in, "audio"));
    struct json_object *mods = lp_json_get_arr(in, "modalities");
    for (size_t k = 0; k < lp_json_arr_len(mods); k++) {
        const char *m = lp_json_str(lp_json_arr_at(mods, k));
        audio = audio || (m && !strcmp(m, "audio"));
    }
    if (audio &&
        !lp_xlat_unsupported(st->o, st->err, lp_json_get(in, "audio") ? "audio" : "modalities",
                             "this model's backend does not produce audio"))
        return false;
    return true;
}

/* Legacy `functions` / `function_call` are the old spelling of tools / tool_choice. */
static void legacy_functions(struct json_object *in)
{
    struct json_object *fns = lp_json_get_arr(in, "functions");
    if (!fns || lp_json_get(in, "tools"))
        return;
    struct json_object *tools = json_object_new_array();
    for (size_t k = 0; k < lp_json_arr_len(fns); k++) {
        struct json_object *t = json_object_new_object();
        lp_json_set_str(t, "type", "function");
        lp_json_set(t, "function", lp_xlat_ref(lp_json_arr_at(fns, k)));
        json_object_array_add(tools, t);
    }
    lp_json_set(in, "tools", tools);
    struct json_object *fc = lp_json_get(in, "function_call");
    if (fc && !lp_json_get(in, "tool_choice")) {
        if (lp_json_is_obj(fc)) {
            struct json_object *tc = json_object_new_object();
            lp_json_set_str(tc, "type", "function");
            lp_json_set(tc, "function", lp_xlat_ref(fc));
            lp_json_set(in, "tool_choice", tc);
        } else {
            lp_json_set(in, "tool_choice", lp_xlat_ref(fc));
        }
    }
}

/* Every other parameter has no Anthropic form: dropped, and listed for the client (the
 * X-LLM-Proxy-Dropped-Params header) unless its value asks for nothing. */
/* response_format json_schema / json_object -> a tool LP_XLAT_JSON_TOOL with the schema, which
 * the model must call (or, when the client has tools of its own, must call one of them or it).
 * Its input comes back as the message content (xlat_resp.c, stream_a2o.c). */
static bool conv_response_format(struct o2a *st, struct json_object *in, struct json_object *out)
{
    struct json_object *rf = lp_json_get_obj(in, "response_format");
    const char *type = lp_json_get_str(rf, "type");
    if (!type || !strcmp(type, "text"))
        return true;
    struct json_object *schema = NULL;
    if (!strcmp(type, "json_schema")) {
        schema = lp_json_get_obj(lp_json_get_obj(rf, "json_schema"), "schema");
        if (!schema) {
            lp_xlat_fail(st->err, "response_format.json_schema.schema: an object is required");
            return false;
        }
    } else if (strcmp(type, "json_object") != 0) {
        lp_xlat_fail(st->err, "response_format.type: unsupported value \"%.32s\"", type);
        return false;
    }
    struct json_object *tools = lp_json_get_arr(out, "tools");
    bool client_tools = tools && lp_json_arr_len(lp_json_get_arr(in, "tools")) > 0;
    if (!tools) {
        tools = json_object_new_array();
        lp_json_set(out, "tools", tools);
    }
    struct json_object *t = json_object_new_object();
    lp_json_set_str(t, "name", LP_XLAT_JSON_TOOL);
    lp_json_set_str(t, "description",
                    "Give your final answer by calling this tool: its input is the answer, a "
                    "JSON value matching this schema.");
    lp_json_set(t, "input_schema", input_schema(schema));
    json_object_array_add(tools, t);
    struct json_object *tc = lp_json_get_obj(out, "tool_choice");
    const char *tct = lp_json_get_str(tc, "type");
    if (client_tools && tct && (!strcmp(tct, "any") || !strcmp(tct, "tool")))
        return true; /* the client forces its own tool: leave it */
    struct json_object *r = json_object_new_object();
    lp_json_set_str(r, "type", client_tools ? "any" : "tool");
    if (!client_tools)
        lp_json_set_str(r, "name", LP_XLAT_JSON_TOOL);
    if (lp_json_get_bool(tc, "disable_parallel_tool_use", false))
        lp_json_set_bool(r, "disable_parallel_tool_use", true);
    lp_json_set(out, "tool_choice", r);
    return true;
}

static void log_dropped(struct o2a *st, struct json_object *in)
{
    static const char *handled[] = {"model",
                                    "messages",
                                    "max_tokens",
                                    "max_completion_tokens",
                                    "temperature",
                                    "top_p",
                                    "stop",
                                    "stream",
                                    "stream_options",
                                    "tools",
                                    "tool_choice",
                                    "functions",
                                    "function_call",
                                    "parallel_tool_calls",
                                    "user",
                                    "reasoning_effort",
                                    "n",
                                    "logprobs",
                                    "top_logprobs",
                                    "audio",
                                    "modalities",
                                    "response_format",
                                    "store"};
    json_object_object_foreach(in, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof handled / sizeof handled[0] && !known; i++)
            known = !strcmp(k, handled[i]);
        if (known || is_noop_value(v))
            continue;
        lp_log_debug(st->o->request_id,
                     "xlat: OpenAI field \"%s\" has no Anthropic equivalent, dropped", k);
        lp_xlat_note_drop(st->o->notes, k);
    }
}

static bool conv_messages(struct o2a *st, struct json_object *in)
{
    struct json_object *msgs = lp_json_get_arr(in, "messages");
    if (!msgs) {
        lp_xlat_fail(st->err, "messages: an array is required");
        return false;
    }
    for (size_t i = 0; i < lp_json_arr_len(msgs); i++) {
        struct json_object *m = lp_json_arr_at(msgs, i);
        if (!lp_json_is_obj(m)) {
            lp_xlat_fail(st->err, "messages[%zu]: must be an object", i);
            return false;
        }
        if (!on_message(st, m, i))
            return false;
    }
    flush_turn(st);
    return true;
}

struct json_object *lp_xlat_req_o2a(struct json_object *in, const struct lp_xlat_opts *o,
                                    struct lp_xlat_err *err)
{
    struct o2a st = {.o = o, .err = err};
    struct json_object *out = json_object_new_object();
    int64_t max_tokens = 0;
    st.system = json_object_new_array();
    st.msgs = json_object_new_array();
    st.tool_names = json_object_new_object();
    if (!check_unsupported(&st, in))
        goto fail;
    legacy_functions(in);
    if (!conv_messages(&st, in) || !get_max_tokens(&st, in, &max_tokens))
        goto fail;
    if (o->upstream_model)
        lp_json_set_str(out, "model", o->upstream_model);
    else
        lp_json_set(out, "model", lp_xlat_ref(lp_json_get(in, "model")));
    lp_json_set_int(out, "max_tokens", max_tokens);
    if (lp_json_arr_len(st.system) > 0)
        lp_json_set(out, "system", lp_xlat_ref(st.system));
    lp_json_set(out, "messages", lp_xlat_ref(st.msgs));
    if (!conv_tools(&st, lp_json_get_arr(in, "tools"), out))
        goto fail;
    if (!lp_json_get(out, "tools") && st.has_tool_blocks)
        placeholder_tools(&st, out);
    else
        set_tool_choice(in, out);
    if (!conv_response_format(&st, in, out))
        goto fail;
    conv_stop(in, out);
    conv_sampling(&st, in, out);
    conv_reasoning(&st, in, out, max_tokens);
    lp_json_set_bool(out, "stream", lp_json_get_bool(in, "stream", o->stream));
    log_dropped(&st, in);
    goto done;
fail:
    json_object_put(out);
    out = NULL;
done:
    json_object_put(st.turn);
    json_object_put(st.system);
    json_object_put(st.msgs);
    json_object_put(st.tool_names);
    return out;
}
