/* proto/stream_a2o.c - Anthropic messages SSE (upstream) -> OpenAI chat-completions SSE (client).
 *
 * State machine (docs/translation-streams.md has the tables):
 *   message_start              -> first chunk, delta {"role":"assistant","content":""}
 *   content_block_start        -> tool_use: a tool_calls delta with id, type, name, arguments ""
 *   content_block_delta        -> text_delta: content; thinking_delta: reasoning_content;
 *                                 input_json_delta: tool_calls[{index,function.arguments}]
 *   message_delta.stop_reason  -> a chunk with delta {} and the mapped finish_reason
 *   message_stop               -> (usage chunk when asked for) + data: [DONE]
 *   ping, content_block_stop, signature/citations deltas -> nothing
 * Tool calls are numbered 0,1,2... in the order their blocks start, independent of the Anthropic
 * block index (text and thinking blocks take block indices too). The role appears only on the
 * first chunk, and no enum field is ever written as an empty string.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/stream_xlat_int.h"
#include "proto/xlat.h"
#include "util/alloc.h"
#include "util/json.h"

/* ---- OpenAI SSE writers ------------------------------------------------------------------ */

static void chunk_head(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    lp_sx_put(w, "data: {\"id\":");
    lp_sx_put_jstr(w, x->id, strlen(x->id));
    lp_sx_putf(w, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
               (long long)x->created);
    lp_sx_put_jstr(w, x->alias, strlen(x->alias));
}

/* A chunk with one choice; delta_json is the complete delta object. */
static void choice_begin(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    chunk_head(x, w);
    lp_sx_put(w, ",\"choices\":[{\"index\":0,\"delta\":");
}

static void choice_end(struct lp_sx_w *w, const char *finish_reason)
{
    if (finish_reason)
        lp_sx_putf(w, ",\"finish_reason\":\"%s\"}]}\n\n", finish_reason);
    else
        lp_sx_put(w, ",\"finish_reason\":null}]}\n\n");
}

static void ensure_started(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    if (x->u.a2o.started)
        return;
    choice_begin(x, w);
    lp_sx_put(w, "{\"role\":\"assistant\",\"content\":\"\"}");
    choice_end(w, NULL);
    x->u.a2o.started = true;
}

static void write_text(struct lp_stream_xlat *x, struct lp_sx_w *w, const char *field,
                       const char *p, size_t n)
{
    if (n == 0)
        return;
    choice_begin(x, w);
    lp_sx_putf(w, "{\"%s\":", field);
    lp_sx_put_jstr(w, p, n);
    lp_sx_put(w, "}");
    choice_end(w, NULL);
}

static void write_tool_head(struct lp_stream_xlat *x, struct lp_sx_w *w, int idx, const char *id,
                            const char *name, const char *args, size_t args_len)
{
    choice_begin(x, w);
    lp_sx_putf(w, "{\"tool_calls\":[{\"index\":%d,\"id\":", idx);
    lp_sx_put_jstr(w, id, strlen(id));
    lp_sx_put(w, ",\"type\":\"function\",\"function\":{\"name\":");
    lp_sx_put_jstr(w, name, strlen(name));
    lp_sx_put(w, ",\"arguments\":");
    lp_sx_put_jstr(w, args, args_len);
    lp_sx_put(w, "}}]}");
    choice_end(w, NULL);
}

static void write_tool_args(struct lp_stream_xlat *x, struct lp_sx_w *w, int idx, const char *p,
                            size_t n)
{
    if (n == 0)
        return;
    choice_begin(x, w);
    lp_sx_putf(w, "{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", idx);
    lp_sx_put_jstr(w, p, n);
    lp_sx_put(w, "}}]}");
    choice_end(w, NULL);
}

static void write_usage(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    int64_t in = x->usage.input < 0 ? 0 : x->usage.input;
    int64_t out = x->usage.output < 0 ? 0 : x->usage.output;
    int64_t cached = x->usage.cached < 0 ? 0 : x->usage.cached;
    chunk_head(x, w);
    lp_sx_putf(w,
               ",\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
               "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":%lld}}}\n\n",
               (long long)in, (long long)out, (long long)lp_sx_sat_add(in, out), (long long)cached);
}

/* ---- blocks ------------------------------------------------------------------------------ */

static struct lp_sx_ablock *find_block(struct lp_sx_a2o *s, int64_t index)
{
    for (size_t i = s->n_blocks; i-- > 0;)
        if (s->blocks[i].index == index)
            return &s->blocks[i];
    return NULL;
}

static struct lp_sx_ablock *add_block(struct lp_sx_a2o *s, int64_t index, enum lp_status *rc)
{
    struct lp_sx_ablock *b = find_block(s, index);
    if (b)
        return b;
    if (s->n_blocks >= LP_STREAM_XLAT_MAX_BLOCKS) {
        *rc = LP_ERR_TOOBIG;
        return NULL;
    }
    s->blocks = lp_xrealloc(s->blocks, (s->n_blocks + 1) * sizeof *s->blocks);
    b = &s->blocks[s->n_blocks++];
    b->index = index;
    return b;
}

static void on_tool_start(struct lp_stream_xlat *x, struct lp_sx_w *w, struct lp_sx_ablock *b,
                          struct json_object *cb)
{
    const char *tname = lp_json_get_str(cb, "name");
    if (tname && !strcmp(tname, LP_XLAT_JSON_TOOL)) {
        /* response_format's forced tool: its input JSON streams as the content */
        b->kind = SX_JSON;
        x->u.a2o.json_tool = true;
        struct json_object *in0 = lp_json_get_obj(cb, "input");
        size_t l0 = 0;
        if (in0 && json_object_object_length(in0) > 0) {
            const char *a0 = lp_json_dump(in0, &l0);
            write_text(x, w, "content", a0, l0);
        }
        return;
    }
    b->kind = SX_TOOL;
    b->tool_idx = x->u.a2o.n_tools++;
    const char *id = lp_json_get_str(cb, "id");
    char *made = NULL;
    if (!id || !*id)
        id = made = lp_xasprintf("call_%s_%d", x->rid[0] ? x->rid : "proxy", b->tool_idx);
    const char *name = lp_json_get_str(cb, "name");
    /* Streams start tool_use with input {} and send the JSON as deltas; a non-empty input here
     * (seen from some relays) is the whole input already. */
    struct json_object *input = lp_json_get_obj(cb, "input");
    size_t alen = 0;
    const char *args = "";
    if (input && json_object_object_length(input) > 0)
        args = lp_json_dump(input, &alen);
    write_tool_head(x, w, b->tool_idx, id, name ? name : "", args, alen);
    free(made);
}

static enum lp_status on_block_start(struct lp_stream_xlat *x, struct lp_sx_w *w,
                                     struct json_object *root)
{
    enum lp_status rc = LP_OK;
    int64_t index = 0;
    lp_json_get_int64(root, "index", &index);
    struct lp_sx_ablock *b = add_block(&x->u.a2o, index, &rc);
    if (!b)
        return rc;
    struct json_object *cb = lp_json_get_obj(root, "content_block");
    const char *type = lp_json_get_str(cb, "type");
    size_t n = 0;
    const char *p;
    b->kind = SX_NONE;
    if (type && (strcmp(type, "tool_use") == 0 || strcmp(type, "server_tool_use") == 0)) {
        on_tool_start(x, w, b, cb);
    } else if (type && strcmp(type, "text") == 0) {
        b->kind = SX_TEXT;
        if ((p = lp_sx_str(lp_json_get(cb, "text"), &n)) != NULL)
            write_text(x, w, "content", p, n);
    } else if (type && strcmp(type, "thinking") == 0) {
        b->kind = SX_THINKING;
        if ((p = lp_sx_str(lp_json_get(cb, "thinking"), &n)) != NULL)
            write_text(x, w, "reasoning_content", p, n);
    }
    return LP_OK;
}

static void on_block_delta(struct lp_stream_xlat *x, struct lp_sx_w *w, struct json_object *root)
{
    int64_t index = 0;
    lp_json_get_int64(root, "index", &index);
    struct lp_sx_ablock *b = find_block(&x->u.a2o, index);
    struct json_object *d = lp_json_get_obj(root, "delta");
    const char *type = lp_json_get_str(d, "type");
    size_t n = 0;
    const char *p;
    if (!type)
        return;
    if (strcmp(type, "text_delta") == 0 && (p = lp_sx_str(lp_json_get(d, "text"), &n)))
        write_text(x, w, "content", p, n);
    else if (strcmp(type, "thinking_delta") == 0 && (p = lp_sx_str(lp_json_get(d, "thinking"), &n)))
        write_text(x, w, "reasoning_content", p, n);
    else if (strcmp(type, "input_json_delta") == 0 && b && b->kind == SX_TOOL &&
             (p = lp_sx_str(lp_json_get(d, "partial_json"), &n)))
        write_tool_args(x, w, b->tool_idx, p, n);
    else if (strcmp(type, "input_json_delta") == 0 && b && b->kind == SX_JSON &&
             (p = lp_sx_str(lp_json_get(d, "partial_json"), &n)))
        write_text(x, w, "content", p, n);
    /* signature_delta, citations_delta and unknown deltas have no chat-completions form. */
}

/* ---- message ----------------------------------------------------------------------------- */

static const char *map_stop(const char *sr)
{
    if (strcmp(sr, "max_tokens") == 0 || strcmp(sr, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(sr, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(sr, "refusal") == 0)
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn, unknown */
}

static void write_finish(struct lp_stream_xlat *x, struct lp_sx_w *w, const char *fr)
{
    choice_begin(x, w);
    lp_sx_put(w, "{}");
    choice_end(w, fr);
    x->u.a2o.finish_sent = true;
}

static void on_message_delta(struct lp_stream_xlat *x, struct lp_sx_w *w, struct json_object *root)
{
    struct json_object *usage = lp_json_get_obj(root, "usage");
    if (usage)
        lp_sx_usage_from_anthropic(usage, &x->usage);
    const char *sr = lp_json_get_str(lp_json_get_obj(root, "delta"), "stop_reason");
    if (sr && *sr && !x->u.a2o.finish_sent) {
        const char *fr = map_stop(sr);
        if (!strcmp(fr, "tool_calls") && x->u.a2o.json_tool && x->u.a2o.n_tools == 0)
            fr = "stop"; /* only response_format's tool was called: a plain answer */
        write_finish(x, w, fr);
    }
}

static void on_message_stop(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    ensure_started(x, w);
    if (!x->u.a2o.finish_sent)
        write_finish(x, w, "stop");
    if (x->include_usage)
        write_usage(x, w);
    lp_sx_put(w, "data: [DONE]\n\n");
    x->done = true;
    x->closed = true;
}

static enum lp_status dispatch(struct lp_stream_xlat *x, struct lp_sx_w *w, const char *type,
                               struct json_object *root)
{
    if (strcmp(type, "ping") == 0)
        return LP_OK;
    if (strcmp(type, "message_start") == 0) {
        struct json_object *usage = lp_json_get_obj(lp_json_get_obj(root, "message"), "usage");
        if (usage)
            lp_sx_usage_from_anthropic(usage, &x->usage);
        ensure_started(x, w);
        return LP_OK;
    }
    if (strcmp(type, "message_stop") == 0) {
        on_message_stop(x, w);
        return LP_OK;
    }
    if (strcmp(type, "content_block_start") == 0) {
        ensure_started(x, w);
        return on_block_start(x, w, root);
    }
    if (strcmp(type, "content_block_delta") == 0) {
        ensure_started(x, w);
        on_block_delta(x, w, root);
    } else if (strcmp(type, "message_delta") == 0) {
        ensure_started(x, w);
        on_message_delta(x, w, root);
    }
    return LP_OK; /* content_block_stop and unknown future events need nothing */
}

enum lp_status lp_stream_a2o_event(struct lp_stream_xlat *x, const char *event, size_t event_len,
                                   const char *data, size_t data_len, struct lp_buf *out)
{
    struct lp_sx_w w = {out, LP_OK};
    enum lp_status rc = LP_ERR_PARSE;
    struct json_object *root = lp_json_parse(data, data_len, NULL);
    if (!lp_json_is_obj(root))
        goto out;
    const char *type = lp_json_get_str(root, "type");
    char *ev = NULL;
    if (!type) { /* fall back to the SSE event name (one with a NUL in it matches nothing) */
        type = ev = lp_xstrndup(event, event_len);
        if (strlen(ev) != event_len)
            type = "";
    }
    if (strcmp(type, "error") == 0 && lp_sx_mentions_error(data, data_len))
        rc = LP_DECLINED;
    else
        rc = dispatch(x, &w, type, root);
    free(ev);
    if (rc == LP_OK)
        rc = w.rc;
out:
    json_object_put(root);
    return rc;
}

enum lp_status lp_stream_a2o_eof(struct lp_stream_xlat *x, struct lp_buf *out)
{
    struct lp_sx_w w = {out, LP_OK};
    if (!x->u.a2o.finish_sent)
        return LP_DECLINED;
    on_message_stop(x, &w);
    return w.rc;
}

void lp_stream_a2o_error(struct lp_stream_xlat *x, const char *type, const char *code,
                         const char *message, struct lp_buf *out)
{
    (void)x;
    struct lp_sx_w w = {out, LP_OK};
    lp_sx_put(&w, "data: {\"error\":{\"message\":");
    lp_sx_put_jstr(&w, message, strlen(message));
    lp_sx_put(&w, ",\"type\":");
    lp_sx_put_jstr(&w, type, strlen(type));
    lp_sx_put(&w, ",\"param\":null,\"code\":");
    if (code)
        lp_sx_put_jstr(&w, code, strlen(code));
    else
        lp_sx_put(&w, "null");
    lp_sx_put(&w, "}}\n\n");
}

void lp_stream_a2o_init(struct lp_stream_xlat *x)
{
    (void)x;
}

void lp_stream_a2o_free(struct lp_stream_xlat *x)
{
    LP_FREE(&x->u.a2o.blocks);
    x->u.a2o.n_blocks = 0;
}
