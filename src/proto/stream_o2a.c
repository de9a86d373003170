/* proto/stream_o2a.c - OpenAI chat-completions SSE (upstream) -> Anthropic messages SSE (client).
 *
 * State machine (docs/translation-streams.md has the tables):
 *   first chunk          -> message_start
 *   reasoning deltas     -> a `thinking` block (thinking_delta; no signature is available)
 *   content deltas       -> a `text` block (text_delta)
 *   tool_calls deltas    -> one `tool_use` block per distinct tool call index (input_json_delta)
 *   finish_reason        -> every block closed; message_delta once usage is known or at [DONE]
 *   [DONE]               -> message_delta (if still due) + message_stop
 * Anthropic blocks are strictly sequential, so at most one block is open. A new kind of content
 * closes the open block. Tool calls are streamed live in order of first appearance; a call that
 * starts while the open call's arguments are not yet a complete JSON value (fragments of parallel
 * calls interleaving) is held back in a bounded buffer and written as soon as the open call
 * completes, or at finish_reason / [DONE]. Fragments for a call whose block is already closed
 * cannot be delivered and are dropped; this only happens after its arguments were complete, or
 * when text interrupted an unfinished call.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "proto/stream_xlat_int.h"
#include "util/alloc.h"
#include "util/json.h"

/* ---- Anthropic SSE writers --------------------------------------------------------------- */

static void ev_begin(struct lp_sx_w *w, const char *type)
{
    lp_sx_putf(w, "event: %s\ndata: ", type);
}

static void ev_end(struct lp_sx_w *w)
{
    lp_sx_put(w, "\n\n");
}

/* Anthropic's input_tokens excludes cache reads; OpenAI's prompt_tokens includes them. */
static int64_t anth_input(const struct lp_stream_xlat *x)
{
    int64_t in = x->usage.input < 0 ? 0 : x->usage.input;
    int64_t c = x->usage.cached < 0 ? 0 : x->usage.cached;
    return in > c ? in - c : 0;
}

static void put_cache_read(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    if (x->usage.cached >= 0)
        lp_sx_putf(w, ",\"cache_read_input_tokens\":%lld", (long long)x->usage.cached);
}

static void write_message_start(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    ev_begin(w, "message_start");
    lp_sx_put(w, "{\"type\":\"message_start\",\"message\":{\"id\":");
    lp_sx_put_jstr(w, x->id, strlen(x->id));
    lp_sx_put(w, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    lp_sx_put_jstr(w, x->alias, strlen(x->alias));
    /* input_tokens is usually only known from the final usage chunk: 0 here, and the real value
     * is repeated in message_delta.usage, which the SDKs take over. */
    lp_sx_putf(w,
               ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
               "\"usage\":{\"input_tokens\":%lld,\"output_tokens\":0",
               (long long)anth_input(x));
    put_cache_read(x, w);
    lp_sx_put(w, "}}}");
    ev_end(w);
    x->u.o2a.started = true;
}

static int64_t start_block(struct lp_stream_xlat *x, struct lp_sx_w *w, enum lp_sx_block kind)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    s->open_kind = kind;
    s->open_index = s->next_index++;
    ev_begin(w, "content_block_start");
    lp_sx_putf(w, "{\"type\":\"content_block_start\",\"index\":%lld,\"content_block\":",
               (long long)s->open_index);
    return s->open_index;
}

static void open_text_block(struct lp_stream_xlat *x, struct lp_sx_w *w, enum lp_sx_block kind)
{
    start_block(x, w, kind);
    if (kind == SX_THINKING)
        lp_sx_put(w, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}");
    else
        lp_sx_put(w, "{\"type\":\"text\",\"text\":\"\"}}");
    ev_end(w);
}

static void close_block(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    if (s->open_kind == SX_NONE)
        return;
    ev_begin(w, "content_block_stop");
    lp_sx_putf(w, "{\"type\":\"content_block_stop\",\"index\":%lld}", (long long)s->open_index);
    ev_end(w);
    if (s->open_kind == SX_TOOL && s->open_call >= 0)
        s->calls[s->open_call].state = CALL_CLOSED;
    s->open_call = -1;
    s->open_kind = SX_NONE;
}

static void write_delta(struct lp_stream_xlat *x, struct lp_sx_w *w, const char *dtype,
                        const char *field, const char *p, size_t n)
{
    ev_begin(w, "content_block_delta");
    lp_sx_putf(
        w, "{\"type\":\"content_block_delta\",\"index\":%lld,\"delta\":{\"type\":\"%s\",\"%s\":",
        (long long)x->u.o2a.open_index, dtype, field);
    lp_sx_put_jstr(w, p, n);
    lp_sx_put(w, "}}");
    ev_end(w);
}

static void write_message_delta(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    if (!s->stop_reason)
        s->stop_reason = s->any_tool ? "tool_use" : "end_turn";
    ev_begin(w, "message_delta");
    lp_sx_putf(
        w,
        "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
        "\"usage\":{\"output_tokens\":%lld",
        s->stop_reason, (long long)(x->usage.output < 0 ? 0 : x->usage.output));
    if (x->usage.input >= 0)
        lp_sx_putf(w, ",\"input_tokens\":%lld", (long long)anth_input(x));
    put_cache_read(x, w);
    lp_sx_put(w, "}}");
    ev_end(w);
    s->delta_sent = true;
}

/* ---- content ----------------------------------------------------------------------------- */

static void on_text(struct lp_stream_xlat *x, struct lp_sx_w *w, enum lp_sx_block kind,
                    const char *p, size_t n)
{
    if (n == 0)
        return;
    if (x->u.o2a.open_kind != kind) {
        close_block(x, w);
        open_text_block(x, w, kind);
    }
    if (kind == SX_THINKING)
        write_delta(x, w, "thinking_delta", "thinking", p, n);
    else
        write_delta(x, w, "text_delta", "text", p, n);
}

/* ---- tool calls -------------------------------------------------------------------------- */

static struct lp_sx_call *find_call(struct lp_sx_o2a *s, int64_t up_index, enum lp_status *rc)
{
    for (size_t i = 0; i < s->n_calls; i++)
        if (s->calls[i].up_index == up_index)
            return &s->calls[i];
    if (s->n_calls >= LP_STREAM_XLAT_MAX_CALLS) {
        *rc = LP_ERR_TOOBIG;
        return NULL;
    }
    s->calls = lp_xrealloc(s->calls, (s->n_calls + 1) * sizeof *s->calls);
    struct lp_sx_call *c = &s->calls[s->n_calls++];
    memset(c, 0, sizeof *c);
    c->up_index = up_index;
    lp_buf_init(&c->args, LP_STREAM_XLAT_MAX_BUFFERED);
    return c;
}

static void open_call_block(struct lp_stream_xlat *x, struct lp_sx_w *w, size_t slot)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    struct lp_sx_call *c = &s->calls[slot];
    close_block(x, w);
    if (!c->id)
        c->id = lp_xasprintf("toolu_%s_%zu", x->rid[0] ? x->rid : "proxy", slot);
    start_block(x, w, SX_TOOL);
    lp_sx_put(w, "{\"type\":\"tool_use\",\"id\":");
    lp_sx_put_jstr(w, c->id, strlen(c->id));
    lp_sx_put(w, ",\"name\":");
    lp_sx_put_jstr(w, c->name, strlen(c->name));
    lp_sx_put(w, ",\"input\":{}}}");
    ev_end(w);
    s->open_call = (int)slot;
    s->any_tool = true;
    c->state = CALL_OPEN;
    if (c->args.len)
        write_delta(x, w, "input_json_delta", "partial_json", c->args.data, c->args.len);
    s->buffered -= c->args.len;
    lp_buf_free(&c->args);
}

static ssize_t next_ready_call(const struct lp_sx_o2a *s)
{
    for (size_t i = 0; i < s->n_calls; i++)
        if (s->calls[i].state == CALL_PENDING && s->calls[i].name)
            return (ssize_t)i;
    return -1;
}

/* Open held-back calls while the open call (if any) has complete arguments. */
static void schedule_calls(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    for (;;) {
        if (s->open_call >= 0 && !s->calls[s->open_call].scan.complete)
            return;
        ssize_t next = next_ready_call(s);
        if (next < 0)
            return;
        open_call_block(x, w, (size_t)next);
    }
}

static enum lp_status call_args(struct lp_stream_xlat *x, struct lp_sx_w *w, struct lp_sx_call *c,
                                const char *p, size_t n)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    if (c->state == CALL_CLOSED)
        return LP_OK; /* undeliverable: its block is closed (see the file comment) */
    lp_jcomplete_feed(&c->scan, p, n);
    if (c->state == CALL_OPEN) {
        write_delta(x, w, "input_json_delta", "partial_json", p, n);
        return LP_OK;
    }
    if (n > LP_STREAM_XLAT_MAX_BUFFERED - s->buffered)
        return LP_ERR_TOOBIG;
    enum lp_status rc = lp_buf_append(&c->args, p, n);
    if (rc == LP_OK)
        s->buffered += n;
    return rc;
}

static enum lp_status on_tool_call(struct lp_stream_xlat *x, struct lp_sx_w *w,
                                   struct json_object *tc, size_t pos)
{
    enum lp_status rc = LP_OK;
    int64_t idx;
    if (!lp_json_get_int64(tc, "index", &idx))
        idx = (int64_t)pos;
    struct lp_sx_call *c = find_call(&x->u.o2a, idx, &rc);
    if (!c)
        return rc;
    const char *id = lp_json_get_str(tc, "id");
    if (id && *id && !c->id)
        c->id = lp_xstrdup(id);
    struct json_object *fn = lp_json_get_obj(tc, "function");
    const char *name = lp_json_get_str(fn, "name");
    if (name && *name && !c->name)
        c->name = lp_xstrdup(name);
    size_t n = 0;
    const char *args = lp_sx_str(lp_json_get(fn, "arguments"), &n);
    if (args && n)
        rc = call_args(x, w, c, args, n);
    return rc;
}

static enum lp_status on_tool_calls(struct lp_stream_xlat *x, struct lp_sx_w *w,
                                    struct json_object *arr)
{
    enum lp_status rc = LP_OK;
    for (size_t i = 0; i < lp_json_arr_len(arr) && rc == LP_OK; i++) {
        struct json_object *tc = lp_json_arr_at(arr, i);
        if (lp_json_is_obj(tc))
            rc = on_tool_call(x, w, tc, i);
    }
    if (rc == LP_OK)
        schedule_calls(x, w);
    return rc;
}

/* Close the open block and write every held-back call that has a name. A call that never got a
 * name cannot become a tool_use block and is dropped. */
static void finalize_blocks(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    close_block(x, w);
    for (ssize_t i; (i = next_ready_call(s)) >= 0;) {
        open_call_block(x, w, (size_t)i);
        close_block(x, w);
    }
}

/* ---- chunks ------------------------------------------------------------------------------ */

static const char *map_finish(const char *fr, bool any_tool)
{
    if (strcmp(fr, "length") == 0)
        return "max_tokens";
    if (strcmp(fr, "tool_calls") == 0 || strcmp(fr, "function_call") == 0)
        return "tool_use";
    if (strcmp(fr, "content_filter") == 0)
        return "refusal";
    /* Some OpenAI-compatible servers report "stop" after tool calls. */
    return any_tool ? "tool_use" : "end_turn";
}

static void on_finish(struct lp_stream_xlat *x, struct lp_sx_w *w, const char *fr)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    finalize_blocks(x, w);
    s->finished = true;
    s->stop_reason = map_finish(fr, s->any_tool);
}

static enum lp_status on_delta(struct lp_stream_xlat *x, struct lp_sx_w *w, struct json_object *d)
{
    size_t n = 0;
    const char *p = lp_sx_str(lp_json_get(d, "reasoning_content"), &n);
    if (!p || !n)
        p = lp_sx_str(lp_json_get(d, "reasoning"), &n);
    if (p)
        on_text(x, w, SX_THINKING, p, n);
    if ((p = lp_sx_str(lp_json_get(d, "content"), &n)) != NULL)
        on_text(x, w, SX_TEXT, p, n);
    if ((p = lp_sx_str(lp_json_get(d, "refusal"), &n)) != NULL)
        on_text(x, w, SX_TEXT, p, n);
    struct json_object *tcs = lp_json_get_arr(d, "tool_calls");
    return tcs ? on_tool_calls(x, w, tcs) : LP_OK;
}

/* The choice with index 0 (the translation has one message); the first one if none says so. */
static struct json_object *pick_choice(struct json_object *root)
{
    struct json_object *arr = lp_json_get_arr(root, "choices");
    for (size_t i = 0; i < lp_json_arr_len(arr); i++) {
        struct json_object *c = lp_json_arr_at(arr, i);
        int64_t idx = 0;
        if (lp_json_is_obj(c) && (!lp_json_get_int64(c, "index", &idx) || idx == 0))
            return c;
    }
    return NULL;
}

static enum lp_status on_chunk(struct lp_stream_xlat *x, struct lp_sx_w *w,
                               struct json_object *root)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    enum lp_status rc = LP_OK;
    struct json_object *usage = lp_json_get_obj(root, "usage");
    if (usage)
        lp_sx_usage_from_openai(usage, &x->usage);
    if (!s->started)
        write_message_start(x, w);
    struct json_object *choice = pick_choice(root);
    if (choice && !s->delta_sent) {
        struct json_object *d = lp_json_get_obj(choice, "delta");
        if (d)
            rc = on_delta(x, w, d);
        const char *fr = lp_json_get_str(choice, "finish_reason");
        if (rc == LP_OK && fr && *fr && !s->finished)
            on_finish(x, w, fr);
    }
    /* With include_usage the usage chunk follows the finish_reason chunk; some servers put usage
     * into the finish chunk itself. Either way message_delta goes out once both are known. */
    if (rc == LP_OK && s->finished && !s->delta_sent && usage) {
        finalize_blocks(x, w);
        write_message_delta(x, w);
    }
    return rc;
}

static void on_done(struct lp_stream_xlat *x, struct lp_sx_w *w)
{
    if (!x->u.o2a.started)
        write_message_start(x, w);
    finalize_blocks(x, w);
    if (!x->u.o2a.delta_sent)
        write_message_delta(x, w);
    ev_begin(w, "message_stop");
    lp_sx_put(w, "{\"type\":\"message_stop\"}");
    ev_end(w);
    x->done = true;
    x->closed = true;
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

enum lp_status lp_stream_o2a_event(struct lp_stream_xlat *x, const char *data, size_t data_len,
                                   struct lp_buf *out)
{
    struct lp_sx_w w = {out, LP_OK};
    if (is_blank(data, data_len))
        return LP_OK; /* comment-only or empty event */
    if (lp_sx_is_done_sentinel(data, data_len)) {
        on_done(x, &w);
        return w.rc;
    }
    enum lp_status rc = LP_ERR_PARSE;
    struct json_object *root = lp_json_parse(data, data_len, NULL);
    if (!lp_json_is_obj(root))
        goto out;
    struct json_object *err = lp_json_get(root, "error");
    if (err && lp_sx_mentions_error(data, data_len)) {
        rc = LP_DECLINED;
        goto out;
    }
    rc = on_chunk(x, &w, root);
    if (rc == LP_OK)
        rc = w.rc;
out:
    json_object_put(root);
    return rc;
}

enum lp_status lp_stream_o2a_eof(struct lp_stream_xlat *x, struct lp_buf *out)
{
    struct lp_sx_w w = {out, LP_OK};
    if (!x->u.o2a.finished)
        return LP_DECLINED;
    on_done(x, &w);
    return w.rc;
}

void lp_stream_o2a_error(struct lp_stream_xlat *x, const char *type, const char *message,
                         struct lp_buf *out)
{
    struct lp_sx_w w = {out, LP_OK};
    close_block(x, &w);
    ev_begin(&w, "error");
    lp_sx_put(&w, "{\"type\":\"error\",\"error\":{\"type\":");
    lp_sx_put_jstr(&w, type, strlen(type));
    lp_sx_put(&w, ",\"message\":");
    lp_sx_put_jstr(&w, message, strlen(message));
    lp_sx_put(&w, "}}");
    ev_end(&w);
}

void lp_stream_o2a_init(struct lp_stream_xlat *x)
{
    x->u.o2a.open_call = -1;
}

void lp_stream_o2a_free(struct lp_stream_xlat *x)
{
    struct lp_sx_o2a *s = &x->u.o2a;
    for (size_t i = 0; i < s->n_calls; i++) {
        LP_FREE(&s->calls[i].id);
        LP_FREE(&s->calls[i].name);
        lp_buf_free(&s->calls[i].args);
    }
    LP_FREE(&s->calls);
    s->n_calls = 0;
}
