/* proto/stream_google.c - Gemini `streamGenerateContent?alt=sse` -> OpenAI chat.completion.chunk
 * events, and through the OpenAI->Anthropic state machine for an Anthropic client.
 *
 *   first event                   -> role chunk {role: assistant, content: ""}
 *   part {text}                   -> delta.content
 *   part {text, thought: true}    -> delta.reasoning_content
 *   part {functionCall}           -> delta.tool_calls[n] (Gemini sends each call whole; its
 *                                    thoughtSignature rides in the id, see google.c)
 *   finishReason / blockReason    -> a finish chunk (SAFETY and friends: content_filter, with a
 *                                    delta.refusal explaining it when nothing was said)
 *   usageMetadata                 -> usage (kept; the last one wins)
 *   end of the body after finish  -> usage chunk (when wanted) + [DONE]
 * Gemini has no terminal event: the stream is complete when the body ends after a finish, so
 * the termination is written by lp_stream_xlat_eof. A body that ends before a finish is a cut.
 */
#include <string.h>

#include "proto/google.h"
#include "proto/stream_xlat_int.h"
#include "util/alloc.h"
#include "util/json.h"

/* Send one OpenAI chunk (its JSON text) on: to the inner OpenAI->Anthropic translator, or
 * framed as `data:` to the client. */
static enum lp_status emit(struct lp_stream_xlat *x, const char *data, size_t len,
                           struct lp_buf *out)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    if (g->inner) {
        enum lp_status rc = lp_stream_xlat_event(g->inner, NULL, 0, data, len, out);
        return rc == LP_DECLINED ? LP_ERR_PARSE : rc;
    }
    struct lp_sx_w w = {out, LP_OK};
    lp_sx_put(&w, "data: ");
    lp_sx_putn(&w, data, len);
    lp_sx_put(&w, "\n\n");
    return w.rc;
}

static struct json_object *chunk_new(struct lp_stream_xlat *x, struct json_object *delta,
                                     const char *finish)
{
    struct json_object *c = json_object_new_object();
    lp_json_set_str(c, "id", x->id);
    lp_json_set_str(c, "object", "chat.completion.chunk");
    lp_json_set_int(c, "created", x->created);
    lp_json_set_str(c, "model", x->alias);
    struct json_object *ch = json_object_new_object();
    lp_json_set_int(ch, "index", 0);
    lp_json_set(ch, "delta", delta);
    lp_json_set(ch, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    struct json_object *arr = json_object_new_array();
    json_object_array_add(arr, ch);
    lp_json_set(c, "choices", arr);
    return c;
}

static enum lp_status emit_obj(struct lp_stream_xlat *x, struct json_object *c, struct lp_buf *out)
{
    size_t n = 0;
    const char *s = lp_json_dump(c, &n);
    enum lp_status rc = emit(x, s, n, out);
    json_object_put(c);
    return rc;
}

/* The chunk prefix shared by every chunk of the stream (built on first use, after a test may
 * have fixed `created`). */
static const char *chunk_head(struct lp_stream_xlat *x)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    if (!g->head) {
        struct lp_buf b;
        lp_buf_init(&b, 0);
        struct lp_sx_w w = {&b, LP_OK};
        lp_sx_put(&w, "{\"id\":");
        lp_sx_put_jstr(&w, x->id, strlen(x->id));
        lp_sx_putf(&w, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
                   (long long)x->created);
        lp_sx_put_jstr(&w, x->alias, strlen(x->alias));
        lp_sx_put(&w, ",\"choices\":[{\"index\":0,\"delta\":{");
        g->head = lp_buf_steal(&b, NULL);
    }
    return g->head;
}

/* A text delta, written directly (the hot path: one per Gemini text part). */
static enum lp_status emit_delta_str(struct lp_stream_xlat *x, const char *key, const char *s,
                                     struct lp_buf *out)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    lp_buf_reset(&g->chunk);
    struct lp_sx_w w = {&g->chunk, LP_OK};
    lp_sx_put(&w, chunk_head(x));
    lp_sx_put_jstr(&w, key, strlen(key));
    lp_sx_put(&w, ":");
    lp_sx_put_jstr(&w, s, strlen(s));
    lp_sx_put(&w, "},\"finish_reason\":null}]}");
    if (w.rc != LP_OK)
        return w.rc;
    return emit(x, g->chunk.data, g->chunk.len, out);
}

static enum lp_status emit_call(struct lp_stream_xlat *x, struct json_object *part,
                                struct lp_buf *out)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    if (g->n_calls >= LP_STREAM_XLAT_MAX_CALLS)
        return LP_ERR_TOOBIG;
    /* Reuse the non-streaming translator on a one-part answer so ids and signatures are built
     * the same way; then re-shape its tool call as a delta. */
    struct json_object *fake = json_object_new_object();
    struct json_object *cands = json_object_new_array(), *cand = json_object_new_object();
    struct json_object *content = json_object_new_object(), *parts = json_object_new_array();
    json_object_array_add(parts, lp_xlat_ref(part));
    lp_json_set(content, "parts", parts);
    lp_json_set(cand, "content", content);
    json_object_array_add(cands, cand);
    lp_json_set(fake, "candidates", cands);
    size_t n = 0;
    const char *s = lp_json_dump(fake, &n);
    size_t rlen = 0;
    char *r = lp_google_resp_to_openai(s, n, NULL, &rlen);
    json_object_put(fake);
    struct json_object *resp = r ? lp_json_parse(r, rlen, NULL) : NULL;
    free(r);
    struct json_object *msg =
        lp_json_get_obj(lp_json_arr_at(lp_json_get_arr(resp, "choices"), 0), "message");
    struct json_object *call = lp_json_arr_at(lp_json_get_arr(msg, "tool_calls"), 0);
    if (!call) {
        json_object_put(resp);
        return LP_ERR_PARSE;
    }
    const char *gid = lp_json_get_str(lp_json_get_obj(part, "functionCall"), "id");
    if (!gid) { /* "call_0" from the one-part answer: number calls across the stream */
        const char *id = lp_json_get_str(call, "id");
        const char *tail = id ? strstr(id, "__ts_") : NULL;
        char *nid = lp_xasprintf("call_%s%s%d%s", x->rid, x->rid[0] ? "_" : "", g->n_calls,
                                 tail ? tail : "");
        lp_json_set_str(call, "id", nid);
        free(nid);
    }
    lp_json_set_int(call, "index", g->n_calls++);
    struct json_object *calls = json_object_new_array();
    json_object_array_add(calls, lp_xlat_ref(call));
    json_object_put(resp);
    struct json_object *d = json_object_new_object();
    if (g->n_calls == 1 && !g->said)
        lp_json_set(d, "content", NULL);
    lp_json_set(d, "tool_calls", calls);
    return emit_obj(x, chunk_new(x, d, NULL), out);
}

static void take_usage(struct lp_stream_xlat *x, struct json_object *um)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    struct json_object *u = lp_google_usage(um);
    if (!u)
        return;
    json_object_put(g->usage);
    g->usage = u;
    lp_sx_usage_from_openai(u, &x->usage);
}

static enum lp_status on_answer(struct lp_stream_xlat *x, struct json_object *r, struct lp_buf *out)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    enum lp_status rc = LP_OK;
    if (!g->started) {
        struct json_object *d = json_object_new_object();
        lp_json_set_str(d, "role", "assistant");
        lp_json_set_str(d, "content", "");
        if ((rc = emit_obj(x, chunk_new(x, d, NULL), out)) != LP_OK)
            return rc;
        g->started = true;
    }
    take_usage(x, lp_json_get_obj(r, "usageMetadata"));
    if (g->finished)
        return LP_OK; /* a usage-only event after the finish */
    struct json_object *cand = lp_json_arr_at(lp_json_get_arr(r, "candidates"), 0);
    struct json_object *parts = lp_json_get_arr(lp_json_get_obj(cand, "content"), "parts");
    for (size_t i = 0; rc == LP_OK && i < lp_json_arr_len(parts); i++) {
        struct json_object *p = lp_json_arr_at(parts, i);
        const char *t = lp_json_get_str(p, "text");
        if (t && *t) {
            bool thought = lp_json_get_bool(p, "thought", false);
            rc = emit_delta_str(x, thought ? "reasoning_content" : "content", t, out);
            g->said |= !thought;
        } else if (lp_json_get_obj(p, "functionCall")) {
            rc = emit_call(x, p, out);
        }
    }
    if (rc != LP_OK)
        return rc;
    const char *fr = lp_json_get_str(cand, "finishReason");
    const char *block = lp_json_get_str(lp_json_get_obj(r, "promptFeedback"), "blockReason");
    if (!fr && !block)
        return LP_OK;
    const char *finish = block ? "content_filter" : lp_google_finish(fr, g->n_calls > 0);
    if (!strcmp(finish, "content_filter") && !g->said) {
        char *why = block ? lp_xasprintf("The prompt was blocked by the provider's safety filters "
                                         "(blockReason: %s).",
                                         block)
                          : lp_xasprintf("The answer was blocked by the provider's safety "
                                         "filters (finishReason: %s).",
                                         fr);
        rc = emit_delta_str(x, "refusal", why, out);
        free(why);
        if (rc != LP_OK)
            return rc;
    }
    g->finished = true;
    return emit_obj(x, chunk_new(x, json_object_new_object(), finish), out);
}

enum lp_status lp_stream_g2o_event(struct lp_stream_xlat *x, const char *data, size_t data_len,
                                   struct lp_buf *out)
{
    struct json_object *r = lp_json_parse(data, data_len, NULL);
    enum lp_status rc;
    if (!lp_json_is_obj(r))
        rc = LP_ERR_PARSE;
    else if (lp_json_get(r, "error"))
        rc = LP_DECLINED;
    else
        rc = on_answer(x, r, out);
    json_object_put(r);
    return rc;
}

enum lp_status lp_stream_g2o_eof(struct lp_stream_xlat *x, struct lp_buf *out)
{
    struct lp_sx_g2o *g = &x->u.g2o;
    if (!g->finished)
        return LP_DECLINED;
    enum lp_status rc = LP_OK;
    if (g->usage && (g->inner || x->include_usage)) {
        struct json_object *c = json_object_new_object();
        lp_json_set_str(c, "id", x->id);
        lp_json_set_str(c, "object", "chat.completion.chunk");
        lp_json_set_int(c, "created", x->created);
        lp_json_set_str(c, "model", x->alias);
        lp_json_set(c, "choices", json_object_new_array());
        lp_json_set(c, "usage", lp_xlat_ref(g->usage));
        rc = emit_obj(x, c, out);
    }
    if (rc == LP_OK)
        rc = emit(x, "[DONE]", 6, out);
    if (rc == LP_OK)
        x->done = true;
    return rc;
}

void lp_stream_g2o_error(struct lp_stream_xlat *x, const char *type, const char *message,
                         struct lp_buf *out)
{
    if (x->u.g2o.inner)
        lp_stream_xlat_error(x->u.g2o.inner, type, message, out);
    else
        lp_stream_a2o_error(x, type, NULL, message, out);
}

void lp_stream_g2o_init(struct lp_stream_xlat *x, const char *request_id)
{
    lp_buf_init(&x->u.g2o.chunk, LP_STREAM_XLAT_MAX_BUFFERED);
    if (x->client == LP_PROTO_ANTHROPIC)
        x->u.g2o.inner =
            lp_stream_xlat_new(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, x->alias, true, request_id);
}

void lp_stream_g2o_free(struct lp_stream_xlat *x)
{
    lp_stream_xlat_free(x->u.g2o.inner);
    json_object_put(x->u.g2o.usage);
    free(x->u.g2o.head);
    lp_buf_free(&x->u.g2o.chunk);
    memset(&x->u.g2o, 0, sizeof x->u.g2o);
}
