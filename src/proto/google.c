/* proto/google.c - OpenAI chat-completions requests -> Gemini generateContent requests, and
 * Gemini answers -> OpenAI chat.completion bodies (see proto/google.h, docs/translation.md
 * "Google Gemini"). */
#include "proto/google.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

/* ---- shared ----------------------------------------------------------------------------- */

/* Thought signatures (Gemini 3) must come back on the function call they were given with. An
 * OpenAI or Anthropic client only keeps the tool-call id, so the signature rides inside it:
 * "<id>__ts_<base64url signature>" (base64url so that the id stays [A-Za-z0-9_-], as Anthropic
 * requires of tool_use ids). */
#define TS_MARK "__ts_"

static char *id_with_signature(const char *id, const char *sig)
{
    if (!sig || !*sig)
        return lp_xstrdup(id);
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_appends(&b, id);
    lp_buf_appends(&b, TS_MARK);
    for (const char *p = sig; *p; p++) {
        char c = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        if (c != '=')
            lp_buf_appendc(&b, c);
    }
    return lp_buf_steal(&b, NULL);
}

/* The signature carried by an id made above (heap, standard base64 with padding), or NULL. */
static char *signature_of_id(const char *id)
{
    const char *m = id ? strstr(id, TS_MARK) : NULL;
    if (!m || !m[strlen(TS_MARK)])
        return NULL;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    for (const char *p = m + strlen(TS_MARK); *p; p++)
        lp_buf_appendc(&b, *p == '-' ? '+' : *p == '_' ? '/' : *p);
    while (b.len % 4)
        lp_buf_appendc(&b, '=');
    return lp_buf_steal(&b, NULL);
}

const char *lp_google_finish(const char *reason, bool called_tools)
{
    static const char *const filtered[] = {"SAFETY",
                                           "RECITATION",
                                           "BLOCKLIST",
                                           "PROHIBITED_CONTENT",
                                           "SPII",
                                           "IMAGE_SAFETY",
                                           "IMAGE_PROHIBITED_CONTENT",
                                           "IMAGE_RECITATION"};
    if (reason && !strcmp(reason, "MAX_TOKENS"))
        return "length";
    for (size_t i = 0; reason && i < sizeof filtered / sizeof filtered[0]; i++)
        if (!strcmp(reason, filtered[i]))
            return "content_filter";
    return called_tools ? "tool_calls" : "stop";
}

static int64_t num_or0(struct json_object *o, const char *key)
{
    int64_t v;
    return lp_json_get_int64(o, key, &v) && v > 0 ? v : 0;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

struct json_object *lp_google_usage(struct json_object *um)
{
    if (!lp_json_is_obj(um))
        return NULL;
    int64_t in = num_or0(um, "promptTokenCount") + 0;
    in = sat_add(in, num_or0(um, "toolUsePromptTokenCount"));
    int64_t thoughts = num_or0(um, "thoughtsTokenCount");
    int64_t out = sat_add(num_or0(um, "candidatesTokenCount"), thoughts);
    int64_t cached = num_or0(um, "cachedContentTokenCount");
    struct json_object *u = json_object_new_object();
    lp_json_set_int(u, "prompt_tokens", in);
    lp_json_set_int(u, "completion_tokens", out);
    lp_json_set_int(u, "total_tokens", sat_add(in, out));
    struct json_object *pd = json_object_new_object();
    lp_json_set_int(pd, "cached_tokens", cached > in ? in : cached);
    lp_json_set(u, "prompt_tokens_details", pd);
    if (thoughts) {
        struct json_object *cd = json_object_new_object();
        lp_json_set_int(cd, "reasoning_tokens", thoughts);
        lp_json_set(u, "completion_tokens_details", cd);
    }
    return u;
}

/* ---- requests: OpenAI -> Gemini ---------------------------------------------------------- */

struct o2g {
    const struct lp_xlat_opts *o;
    struct lp_xlat_err *err;
    struct json_object *in_msgs;  /* the client's messages (borrowed) */
    struct json_object *contents; /* output */
    struct json_object *system;   /* systemInstruction parts, NULL until needed */
};

/* Append a part to the last content when it has the same role, else start a new content
 * (Gemini wants a tool turn's several functionResponse parts in one content). */
static void push_part(struct o2g *st, const char *role, struct json_object *part)
{
    size_t n = lp_json_arr_len(st->contents);
    struct json_object *last = n ? lp_json_arr_at(st->contents, n - 1) : NULL;
    const char *lr = lp_json_get_str(last, "role");
    if (!last || !lr || strcmp(lr, role) != 0) {
        last = json_object_new_object();
        lp_json_set_str(last, "role", role);
        lp_json_set(last, "parts", json_object_new_array());
        json_object_array_add(st->contents, last);
    }
    json_object_array_add(lp_json_get_arr(last, "parts"), part);
}

static struct json_object *text_part(const char *s)
{
    struct json_object *p = json_object_new_object();
    lp_json_set_str(p, "text", s);
    return p;
}

static const char *mime_from_name(const char *url)
{
    static const struct {
        const char *ext, *mime;
    } map[] = {{".png", "image/png"}, {".jpg", "image/jpeg"},  {".jpeg", "image/jpeg"},
               {".gif", "image/gif"}, {".webp", "image/webp"}, {".pdf", "application/pdf"},
               {".mp3", "audio/mp3"}, {".wav", "audio/wav"},   {".mp4", "video/mp4"},
               {".txt", "text/plain"}};
    const char *end = url + strcspn(url, "?#");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t k = strlen(map[i].ext);
        if ((size_t)(end - url) >= k && !strncasecmp(end - k, map[i].ext, k))
            return map[i].mime;
    }
    return "image/jpeg";
}

/* A data: URL or a remote URL -> inlineData / fileData part; NULL for a malformed data URL. */
static struct json_object *media_part(const char *url, const char *dflt_mime)
{
    struct json_object *p = json_object_new_object();
    if (!strncmp(url, "data:", 5)) {
        const char *semi = strstr(url, ";base64,");
        if (!semi) {
            json_object_put(p);
            return NULL;
        }
        struct json_object *d = json_object_new_object();
        char *mime =
            semi > url + 5 ? lp_xstrndup(url + 5, (size_t)(semi - url - 5)) : lp_xstrdup(dflt_mime);
        lp_json_set_str(d, "mimeType", mime);
        lp_json_set_str(d, "data", semi + 8);
        free(mime);
        lp_json_set(p, "inlineData", d);
    } else {
        struct json_object *d = json_object_new_object();
        lp_json_set_str(d, "mimeType", mime_from_name(url));
        lp_json_set_str(d, "fileUri", url);
        lp_json_set(p, "fileData", d);
    }
    return p;
}

/* One OpenAI content part -> a Gemini part (NULL: skip, e.g. empty text), or false on error. */
static bool conv_part(struct o2g *st, struct json_object *part, size_t i, size_t j,
                      struct json_object **out)
{
    *out = NULL;
    const char *t = lp_json_get_str(part, "type");
    if (t && (!strcmp(t, "text") || !strcmp(t, "input_text") || !strcmp(t, "refusal"))) {
        const char *s = lp_json_get_str(part, !strcmp(t, "refusal") ? "refusal" : "text");
        if (s && *s)
            *out = text_part(s);
        return true;
    }
    const char *url = NULL, *mime = "image/jpeg";
    if (t && !strcmp(t, "image_url")) {
        struct json_object *iu = lp_json_get(part, "image_url");
        url = lp_json_is_str(iu) ? lp_json_str(iu) : lp_json_get_str(iu, "url");
    } else if (t && !strcmp(t, "file")) {
        url = lp_json_get_str(lp_json_get_obj(part, "file"), "file_data");
        mime = "application/pdf";
    } else if (t && !strcmp(t, "input_audio")) {
        struct json_object *a = lp_json_get_obj(part, "input_audio");
        const char *data = lp_json_get_str(a, "data"), *fmt = lp_json_get_str(a, "format");
        if (!data) {
            lp_xlat_fail(st->err, "messages[%zu].content[%zu].input_audio.data is required", i, j);
            return false;
        }
        struct json_object *d = json_object_new_object();
        char *m = lp_xasprintf("audio/%s", fmt ? fmt : "wav");
        lp_json_set_str(d, "mimeType", m);
        free(m);
        lp_json_set_str(d, "data", data);
        *out = json_object_new_object();
        lp_json_set(*out, "inlineData", d);
        return true;
    } else {
        lp_xlat_fail(st->err,
                     "messages[%zu].content[%zu]: content part type \"%.40s\" cannot be "
                     "sent to a Google backend",
                     i, j, t ? t : "(none)");
        return false;
    }
    if (!url || !(*out = media_part(url, mime))) {
        lp_xlat_fail(st->err, "messages[%zu].content[%zu]: expected a URL or a base64 data: URL", i,
                     j);
        return false;
    }
    return true;
}

static bool conv_content(struct o2g *st, const char *role, struct json_object *content, size_t i)
{
    if (lp_json_is_str(content)) {
        if (*lp_json_str(content))
            push_part(st, role, text_part(lp_json_str(content)));
        return true;
    }
    for (size_t j = 0; j < lp_json_arr_len(content); j++) {
        struct json_object *p;
        if (!conv_part(st, lp_json_arr_at(content, j), i, j, &p))
            return false;
        if (p)
            push_part(st, role, p);
    }
    return true;
}

static bool conv_system(struct o2g *st, struct json_object *content)
{
    char *t = lp_xlat_text_of(content, "\n");
    if (t && *t) {
        if (!st->system)
            st->system = json_object_new_array();
        json_object_array_add(st->system, text_part(t));
    }
    free(t);
    return true;
}

static bool conv_tool_calls(struct o2g *st, struct json_object *calls, size_t i)
{
    for (size_t j = 0; j < lp_json_arr_len(calls); j++) {
        struct json_object *c = lp_json_arr_at(calls, j);
        struct json_object *fn = lp_json_get_obj(c, "function");
        const char *name = lp_json_get_str(fn, "name");
        if (!name) {
            lp_xlat_fail(st->err, "messages[%zu].tool_calls[%zu].function.name is required", i, j);
            return false;
        }
        const char *args = lp_json_get_str(fn, "arguments");
        struct json_object *a = NULL;
        if (args && *args) {
            a = lp_json_parse(args, strlen(args), NULL);
            if (!lp_json_is_obj(a)) {
                json_object_put(a);
                lp_xlat_fail(st->err,
                             "messages[%zu].tool_calls[%zu].function.arguments: not a "
                             "JSON object",
                             i, j);
                return false;
            }
        }
        struct json_object *call = json_object_new_object();
        lp_json_set_str(call, "name", name);
        lp_json_set(call, "args", a ? a : json_object_new_object());
        struct json_object *part = json_object_new_object();
        lp_json_set(part, "functionCall", call);
        char *sig = signature_of_id(lp_json_get_str(c, "id"));
        if (sig)
            lp_json_set_str(part, "thoughtSignature", sig);
        free(sig);
        push_part(st, "model", part);
    }
    return true;
}

/* The function name of the earlier tool call with this id (tool results only carry the id). */
static const char *name_of_call(struct o2g *st, size_t before, const char *id)
{
    for (size_t i = before; id && i-- > 0;) {
        struct json_object *calls = lp_json_get_arr(lp_json_arr_at(st->in_msgs, i), "tool_calls");
        for (size_t j = 0; j < lp_json_arr_len(calls); j++) {
            const char *cid = lp_json_get_str(lp_json_arr_at(calls, j), "id");
            if (cid && !strcmp(cid, id))
                return lp_json_get_str(lp_json_get_obj(lp_json_arr_at(calls, j), "function"),
                                       "name");
        }
    }
    return NULL;
}

static bool conv_tool_result(struct o2g *st, struct json_object *m, size_t i, const char *name)
{
    if (!name) {
        lp_xlat_fail(st->err,
                     "messages[%zu].tool_call_id: no earlier assistant tool call has "
                     "this id (Google needs the function's name)",
                     i);
        return false;
    }
    char *text = lp_xlat_text_of(lp_json_get(m, "content"), "\n");
    struct json_object *resp = text ? lp_json_parse(text, strlen(text), NULL) : NULL;
    if (!lp_json_is_obj(resp)) {
        json_object_put(resp);
        resp = json_object_new_object();
        lp_json_set_str(resp, "content", text ? text : "");
    }
    free(text);
    struct json_object *fr = json_object_new_object();
    lp_json_set_str(fr, "name", name);
    lp_json_set(fr, "response", resp);
    struct json_object *part = json_object_new_object();
    lp_json_set(part, "functionResponse", fr);
    push_part(st, "user", part);
    return true;
}

static bool conv_messages(struct o2g *st)
{
    for (size_t i = 0; i < lp_json_arr_len(st->in_msgs); i++) {
        struct json_object *m = lp_json_arr_at(st->in_msgs, i);
        const char *role = lp_json_get_str(m, "role");
        struct json_object *content = lp_json_get(m, "content");
        if (!role) {
            lp_xlat_fail(st->err, "messages[%zu].role is required", i);
            return false;
        }
        bool ok = true;
        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            ok = conv_system(st, content);
        } else if (!strcmp(role, "user")) {
            ok = conv_content(st, "user", content, i);
        } else if (!strcmp(role, "assistant")) {
            ok = conv_content(st, "model", content, i) &&
                 conv_tool_calls(st, lp_json_get_arr(m, "tool_calls"), i);
            const char *refusal = lp_json_get_str(m, "refusal");
            if (ok && refusal && *refusal)
                push_part(st, "model", text_part(refusal));
        } else if (!strcmp(role, "tool")) {
            ok =
                conv_tool_result(st, m, i, name_of_call(st, i, lp_json_get_str(m, "tool_call_id")));
        } else if (!strcmp(role, "function")) {
            ok = conv_tool_result(st, m, i, lp_json_get_str(m, "name"));
        } else {
            lp_xlat_fail(st->err, "messages[%zu].role \"%.32s\" is not supported", i, role);
            return false;
        }
        if (!ok)
            return false;
    }
    if (lp_json_arr_len(st->contents) == 0) {
        lp_xlat_fail(st->err, "messages: at least one user or assistant message with content is "
                              "required");
        return false;
    }
    return true;
}

static bool conv_tools(struct o2g *st, struct json_object *in, struct json_object *out)
{
    struct json_object *tools = lp_json_get_arr(in, "tools");
    if (lp_json_arr_len(tools) == 0)
        return true;
    struct json_object *decls = json_object_new_array();
    for (size_t i = 0; i < lp_json_arr_len(tools); i++) {
        struct json_object *t = lp_json_arr_at(tools, i);
        const char *type = lp_json_get_str(t, "type");
        struct json_object *fn = lp_json_get_obj(t, "function");
        const char *name = lp_json_get_str(fn, "name");
        if ((type && strcmp(type, "function") != 0) || !name) {
            json_object_put(decls);
            lp_xlat_fail(st->err,
                         "tools[%zu]: only function tools with a name can be sent to a "
                         "Google backend",
                         i);
            return false;
        }
        struct json_object *d = json_object_new_object();
        lp_json_set_str(d, "name", name);
        const char *desc = lp_json_get_str(fn, "description");
        if (desc)
            lp_json_set_str(d, "description", desc);
        struct json_object *params = lp_json_get_obj(fn, "parameters");
        if (params)
            lp_json_set(d, "parametersJsonSchema", lp_xlat_ref(params));
        json_object_array_add(decls, d);
    }
    struct json_object *tool = json_object_new_object();
    lp_json_set(tool, "functionDeclarations", decls);
    struct json_object *arr = json_object_new_array();
    json_object_array_add(arr, tool);
    lp_json_set(out, "tools", arr);

    struct json_object *tc = lp_json_get(in, "tool_choice");
    const char *mode = NULL, *only = NULL;
    if (lp_json_is_str(tc)) {
        const char *s = lp_json_str(tc);
        mode = !strcmp(s, "none") ? "NONE" : !strcmp(s, "required") ? "ANY" : "AUTO";
    } else if (lp_json_is_obj(tc)) {
        only = lp_json_get_str(lp_json_get_obj(tc, "function"), "name");
        mode = "ANY";
    }
    if (mode) {
        struct json_object *fcc = json_object_new_object();
        lp_json_set_str(fcc, "mode", mode);
        if (only) {
            struct json_object *names = json_object_new_array();
            json_object_array_add(names, json_object_new_string(only));
            lp_json_set(fcc, "allowedFunctionNames", names);
        }
        struct json_object *cfg = json_object_new_object();
        lp_json_set(cfg, "functionCallingConfig", fcc);
        lp_json_set(out, "toolConfig", cfg);
    }
    return true;
}

static void copy_num(struct json_object *in, const char *from, struct json_object *gc,
                     const char *to)
{
    struct json_object *v = lp_json_get(in, from);
    if (v && (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        lp_json_set(gc, to, lp_xlat_ref(v));
}

static void conv_generation(struct o2g *st, struct json_object *in, struct json_object *out)
{
    struct json_object *gc = json_object_new_object();
    copy_num(in, "temperature", gc, "temperature");
    copy_num(in, "top_p", gc, "topP");
    copy_num(in, "top_k", gc, "topK");
    copy_num(in, "n", gc, "candidateCount");
    copy_num(in, "presence_penalty", gc, "presencePenalty");
    copy_num(in, "frequency_penalty", gc, "frequencyPenalty");
    copy_num(in, "seed", gc, "seed");
    int64_t mt = 0;
    if (!lp_json_get_int64(in, "max_completion_tokens", &mt))
        lp_json_get_int64(in, "max_tokens", &mt);
    if (st->o->max_tokens_limit > 0 && (mt <= 0 || mt > st->o->max_tokens_limit))
        mt = st->o->max_tokens_limit;
    if (mt > 0)
        lp_json_set_int(gc, "maxOutputTokens", mt);
    struct json_object *stop = lp_json_get(in, "stop");
    if (lp_json_is_str(stop)) {
        struct json_object *a = json_object_new_array();
        json_object_array_add(a, json_object_new_string(lp_json_str(stop)));
        lp_json_set(gc, "stopSequences", a);
    } else if (lp_json_is_arr(stop) && lp_json_arr_len(stop)) {
        lp_json_set(gc, "stopSequences", lp_xlat_ref(stop));
    }
    struct json_object *rf = lp_json_get_obj(in, "response_format");
    const char *rft = lp_json_get_str(rf, "type");
    if (rft && !strcmp(rft, "json_object")) {
        lp_json_set_str(gc, "responseMimeType", "application/json");
    } else if (rft && !strcmp(rft, "json_schema")) {
        lp_json_set_str(gc, "responseMimeType", "application/json");
        struct json_object *schema = lp_json_get_obj(lp_json_get_obj(rf, "json_schema"), "schema");
        if (schema)
            lp_json_set(gc, "responseJsonSchema", lp_xlat_ref(schema));
    }
    const char *effort = lp_json_get_str(in, "reasoning_effort");
    if (effort) {
        int64_t budget = !strcmp(effort, "none") || !strcmp(effort, "minimal") ? 0
                         : !strcmp(effort, "low")                              ? 1024
                         : !strcmp(effort, "high")                             ? 24576
                                                                               : 8192;
        struct json_object *tc = json_object_new_object();
        lp_json_set_int(tc, "thinkingBudget", budget);
        if (budget > 0)
            lp_json_set_bool(tc, "includeThoughts", true);
        lp_json_set(gc, "thinkingConfig", tc);
    }
    if (json_object_object_length(gc) > 0)
        lp_json_set(out, "generationConfig", gc);
    else
        json_object_put(gc);
}

struct json_object *lp_google_req_from_openai(struct json_object *in, const struct lp_xlat_opts *o,
                                              struct lp_xlat_err *err)
{
    struct o2g st = {.o = o,
                     .err = err,
                     .in_msgs = lp_json_get_arr(in, "messages"),
                     .contents = json_object_new_array()};
    struct json_object *out = json_object_new_object();
    if (!st.in_msgs) {
        lp_xlat_fail(err, "messages: required, must be an array");
        goto fail;
    }
    if (!conv_messages(&st))
        goto fail;
    lp_json_set(out, "contents", st.contents);
    st.contents = NULL;
    if (st.system) {
        struct json_object *si = json_object_new_object();
        lp_json_set(si, "parts", st.system);
        st.system = NULL;
        lp_json_set(out, "systemInstruction", si);
    }
    if (!conv_tools(&st, in, out))
        goto fail;
    conv_generation(&st, in, out);
    return out;
fail:
    json_object_put(st.contents);
    json_object_put(st.system);
    json_object_put(out);
    return NULL;
}

/* ---- answers: Gemini -> OpenAI ----------------------------------------------------------- */

struct g2o_acc {
    struct lp_buf text, thoughts;
    struct json_object *calls; /* OpenAI tool_calls */
    const char *finish;        /* Gemini finishReason (borrowed from the tree) */
    const char *block;         /* promptFeedback.blockReason */
    struct json_object *usage; /* usageMetadata (borrowed) */
    const char *id, *model;
};

/* "call_<response id>_<n>" (ids unique across the turns of a conversation), the response id
 * reduced to [A-Za-z0-9_-]; "call_<n>" without one. */
static char *call_id(const char *rid, size_t n)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    lp_buf_appends(&b, "call_");
    for (size_t i = 0; rid && rid[i] && i < 48; i++) {
        char c = rid[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-')
            lp_buf_appendc(&b, c);
    }
    if (b.len > 5)
        lp_buf_appendc(&b, '_');
    lp_buf_printf(&b, "%zu", n);
    return lp_buf_steal(&b, NULL);
}

static void acc_one(struct g2o_acc *a, struct json_object *r)
{
    if (lp_json_get_str(r, "responseId"))
        a->id = lp_json_get_str(r, "responseId");
    struct json_object *cand = lp_json_arr_at(lp_json_get_arr(r, "candidates"), 0);
    struct json_object *parts = lp_json_get_arr(lp_json_get_obj(cand, "content"), "parts");
    for (size_t i = 0; i < lp_json_arr_len(parts); i++) {
        struct json_object *p = lp_json_arr_at(parts, i);
        const char *t = lp_json_get_str(p, "text");
        struct json_object *fc = lp_json_get_obj(p, "functionCall");
        if (t)
            lp_buf_appends(lp_json_get_bool(p, "thought", false) ? &a->thoughts : &a->text, t);
        if (fc) {
            size_t n = lp_json_arr_len(a->calls);
            const char *gid = lp_json_get_str(fc, "id");
            char *base = gid ? lp_xstrdup(gid) : call_id(a->id, n);
            char *id = id_with_signature(base, lp_json_get_str(p, "thoughtSignature"));
            free(base);
            struct json_object *c = json_object_new_object();
            lp_json_set_str(c, "id", id);
            free(id);
            lp_json_set_str(c, "type", "function");
            struct json_object *fn = json_object_new_object();
            lp_json_set_str(fn, "name",
                            lp_json_get_str(fc, "name") ? lp_json_get_str(fc, "name") : "");
            struct json_object *args = lp_json_get(fc, "args");
            size_t alen = 0;
            const char *as = args ? lp_json_dump(args, &alen) : "{}";
            lp_json_set(fn, "arguments", json_object_new_string_len(as, (int)(args ? alen : 2)));
            lp_json_set(c, "function", fn);
            json_object_array_add(a->calls, c);
        }
    }
    const char *fr = lp_json_get_str(cand, "finishReason");
    if (fr)
        a->finish = fr;
    const char *br = lp_json_get_str(lp_json_get_obj(r, "promptFeedback"), "blockReason");
    if (br)
        a->block = br;
    if (lp_json_get_obj(r, "usageMetadata"))
        a->usage = lp_json_get_obj(r, "usageMetadata");
    if (lp_json_get_str(r, "responseId"))
        a->id = lp_json_get_str(r, "responseId");
    if (lp_json_get_str(r, "modelVersion"))
        a->model = lp_json_get_str(r, "modelVersion");
}

static bool is_answer(struct json_object *r)
{
    return lp_json_is_obj(r) &&
           (lp_json_get_arr(r, "candidates") || lp_json_get_obj(r, "promptFeedback") ||
            lp_json_get_obj(r, "usageMetadata"));
}

char *lp_google_resp_to_openai(const char *body, size_t len, const char *alias, size_t *out_len)
{
    struct json_object *root = lp_json_parse(body ? body : "", body ? len : 0, NULL);
    struct g2o_acc a = {.calls = json_object_new_array()};
    lp_buf_init(&a.text, 0);
    lp_buf_init(&a.thoughts, 0);
    char *res = NULL;
    bool ok = false;
    if (lp_json_is_arr(root)) {
        ok = lp_json_arr_len(root) > 0;
        for (size_t i = 0; ok && i < lp_json_arr_len(root); i++)
            ok = is_answer(lp_json_arr_at(root, i));
        for (size_t i = 0; ok && i < lp_json_arr_len(root); i++)
            acc_one(&a, lp_json_arr_at(root, i));
    } else if (is_answer(root)) {
        ok = true;
        acc_one(&a, root);
    }
    if (!ok)
        goto out;
    struct json_object *o = json_object_new_object();
    char *id = lp_xlat_make_id("chatcmpl-", a.id, body, len);
    lp_json_set_str(o, "id", id);
    free(id);
    lp_json_set_str(o, "object", "chat.completion");
    lp_json_set_int(o, "created", (int64_t)time(NULL));
    lp_json_set_str(o, "model", alias ? alias : a.model ? a.model : "");
    struct json_object *msg = json_object_new_object();
    lp_json_set_str(msg, "role", "assistant");
    bool tools = lp_json_arr_len(a.calls) > 0;
    const char *finish = a.block ? "content_filter" : lp_google_finish(a.finish, tools);
    lp_json_set(msg, "content",
                a.text.len || !tools
                    ? json_object_new_string_len(a.text.data ? a.text.data : "", (int)a.text.len)
                    : NULL);
    if (a.thoughts.len)
        lp_json_set(msg, "reasoning_content",
                    json_object_new_string_len(a.thoughts.data, (int)a.thoughts.len));
    if (!strcmp(finish, "content_filter") && a.text.len == 0) {
        char *why = a.block ? lp_xasprintf("The prompt was blocked by the provider's safety "
                                           "filters (blockReason: %s).",
                                           a.block)
                            : lp_xasprintf("The answer was blocked by the provider's safety "
                                           "filters (finishReason: %s).",
                                           a.finish ? a.finish : "?");
        lp_json_set_str(msg, "refusal", why);
        free(why);
    } else {
        lp_json_set(msg, "refusal", NULL);
    }
    if (tools) {
        lp_json_set(msg, "tool_calls", a.calls);
        a.calls = NULL;
    }
    struct json_object *choice = json_object_new_object();
    lp_json_set_int(choice, "index", 0);
    lp_json_set(choice, "message", msg);
    lp_json_set_str(choice, "finish_reason", finish);
    struct json_object *choices = json_object_new_array();
    json_object_array_add(choices, choice);
    lp_json_set(o, "choices", choices);
    struct json_object *u = lp_google_usage(a.usage);
    if (u)
        lp_json_set(o, "usage", u);
    res = lp_xlat_dump(o, out_len);
    json_object_put(o);
out:
    json_object_put(a.calls);
    lp_buf_free(&a.text);
    lp_buf_free(&a.thoughts);
    json_object_put(root);
    return res;
}
