/* proto/stream_xlat.c - public entry points of the stream translator, dispatching to the
 * per-direction state machines, plus helpers shared by them and by the pass-through tap. */
#include "proto/stream_xlat.h"
#include "proto/xlat.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/stream_xlat_int.h"
#include "util/alloc.h"
#include "util/json.h"

#define RID_MAX 64

/* Keep [A-Za-z0-9_-] only and drop a known prefix, so derived ids are safe to splice into JSON
 * and never double-prefixed ("msg_msg_..." was a bug of the reference proxy). */
static char *sanitise_rid(const char *rid, const char *strip)
{
    char *s = lp_xcalloc(1, RID_MAX + 1);
    size_t n = 0;
    if (!rid)
        return s;
    size_t sl = strlen(strip);
    if (strncmp(rid, strip, sl) == 0)
        rid += sl;
    for (; *rid && n < RID_MAX; rid++) {
        char c = *rid;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-')
            s[n++] = c;
    }
    return s;
}

struct lp_stream_xlat *lp_stream_xlat_new(enum lp_proto up, enum lp_proto client, const char *alias,
                                          bool include_usage, const char *request_id)
{
    if (up == client)
        return NULL;
    struct lp_stream_xlat *x = lp_xcalloc(1, sizeof *x);
    x->up = up;
    x->client = client;
    x->include_usage = include_usage;
    x->alias = lp_xstrdup(alias ? alias : "");
    x->created = (int64_t)time(NULL);
    x->usage = (struct lp_stream_usage){-1, -1, -1};
    if (up == LP_PROTO_GOOGLE) {
        x->rid = sanitise_rid(request_id, "chatcmpl-");
        x->id = lp_xasprintf("chatcmpl-%s", x->rid[0] ? x->rid : "proxy");
        lp_stream_g2o_init(x, request_id);
    } else if (client == LP_PROTO_ANTHROPIC) {
        x->rid = sanitise_rid(request_id, "msg_");
        x->id = lp_xasprintf("msg_%s", x->rid[0] ? x->rid : "proxy");
        lp_stream_o2a_init(x);
    } else {
        x->rid = sanitise_rid(request_id, "chatcmpl-");
        x->id = lp_xasprintf("chatcmpl-%s", x->rid[0] ? x->rid : "proxy");
        lp_stream_a2o_init(x);
    }
    return x;
}

void lp_stream_xlat_free(struct lp_stream_xlat *x)
{
    if (!x)
        return;
    if (x->up == LP_PROTO_GOOGLE)
        lp_stream_g2o_free(x);
    else if (x->client == LP_PROTO_ANTHROPIC)
        lp_stream_o2a_free(x);
    else
        lp_stream_a2o_free(x);
    LP_FREE(&x->alias);
    LP_FREE(&x->id);
    LP_FREE(&x->rid);
    free(x);
}

void lp_stream_xlat_set_created(struct lp_stream_xlat *x, int64_t created)
{
    x->created = created;
}

enum lp_status lp_stream_xlat_event(struct lp_stream_xlat *x, const char *event, size_t event_len,
                                    const char *data, size_t data_len, struct lp_buf *out)
{
    if (x->closed)
        return LP_OK;
    if (!data)
        data_len = 0;
    if (!event)
        event_len = 0;
    /* An SSE event named "error" is an in-band error in either protocol (some OpenAI-compatible
     * servers name theirs too), whatever its data. */
    if (event_len == 5 && memcmp(event, "error", 5) == 0)
        return LP_DECLINED;
    if (x->up == LP_PROTO_GOOGLE)
        return lp_stream_g2o_event(x, data ? data : "", data_len, out);
    if (x->client == LP_PROTO_ANTHROPIC)
        return lp_stream_o2a_event(x, data ? data : "", data_len, out);
    return lp_stream_a2o_event(x, event ? event : "", event_len, data ? data : "", data_len, out);
}

bool lp_stream_xlat_done(const struct lp_stream_xlat *x)
{
    return x->done;
}

enum lp_status lp_stream_xlat_eof(struct lp_stream_xlat *x, struct lp_buf *out)
{
    if (x->done)
        return LP_OK;
    if (x->closed)
        return LP_DECLINED;
    if (x->up == LP_PROTO_GOOGLE)
        return lp_stream_g2o_eof(x, out);
    if (x->client == LP_PROTO_ANTHROPIC)
        return lp_stream_o2a_eof(x, out);
    return lp_stream_a2o_eof(x, out);
}

void lp_stream_xlat_error(struct lp_stream_xlat *x, const char *type, const char *message,
                          struct lp_buf *out)
{
    if (x->closed)
        return;
    if (!type || !*type)
        type = "api_error";
    if (!message)
        message = "";
    /* The type may be the upstream's (another protocol's vocabulary) or the proxy's own: the
     * client gets its protocol's names. */
    const char *ctype, *code;
    lp_xlat_error_names(x->client, type, &ctype, &code);
    if (x->up == LP_PROTO_GOOGLE)
        lp_stream_g2o_error(x, ctype, message, out);
    else if (x->client == LP_PROTO_ANTHROPIC)
        lp_stream_o2a_error(x, ctype, message, out);
    else
        lp_stream_a2o_error(x, ctype, code, message, out);
    x->closed = true;
}

struct lp_stream_usage lp_stream_xlat_usage(const struct lp_stream_xlat *x)
{
    return x->usage;
}

/* ---- shared helpers ---------------------------------------------------------------------- */

int64_t lp_sx_sat_add(int64_t a, int64_t b)
{
    a = a < 0 ? 0 : a;
    b = b < 0 ? 0 : b;
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* Token counts come from upstream JSON: negative values are clamped to 0. */
static bool get_count(struct json_object *obj, const char *key, int64_t *out)
{
    if (!lp_json_get_int64(obj, key, out))
        return false;
    if (*out < 0)
        *out = 0;
    return true;
}

void lp_sx_usage_from_openai(struct json_object *usage, struct lp_stream_usage *u)
{
    int64_t v;
    if (!lp_json_is_obj(usage))
        return;
    if (get_count(usage, "prompt_tokens", &v))
        u->input = v;
    if (get_count(usage, "completion_tokens", &v))
        u->output = v;
    if (get_count(lp_json_get_obj(usage, "prompt_tokens_details"), "cached_tokens", &v))
        u->cached = v;
    else if (get_count(usage, "prompt_cache_hit_tokens", &v)) /* DeepSeek */
        u->cached = v;
}

void lp_sx_usage_from_anthropic(struct json_object *usage, struct lp_stream_usage *u)
{
    int64_t in, rd = 0, wr = 0, out;
    if (!lp_json_is_obj(usage))
        return;
    if (get_count(usage, "input_tokens", &in)) {
        bool has_rd = get_count(usage, "cache_read_input_tokens", &rd);
        get_count(usage, "cache_creation_input_tokens", &wr);
        u->input = lp_sx_sat_add(lp_sx_sat_add(in, rd), wr);
        if (has_rd)
            u->cached = rd;
        else if (u->cached < 0)
            u->cached = 0;
    }
    if (get_count(usage, "output_tokens", &out))
        u->output = out;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool lp_sx_is_done_sentinel(const char *data, size_t len)
{
    while (len && is_ws(*data)) {
        data++;
        len--;
    }
    while (len && is_ws(data[len - 1]))
        len--;
    return len == 6 && memcmp(data, "[DONE]", 6) == 0;
}

/* A string's bytes are skipped except for the quote/escape state; nesting counts [ and {. The
 * value is complete when the depth returns to zero after the first opening bracket. A scalar
 * top-level value never completes (tool arguments are objects). */
void lp_jcomplete_feed(struct lp_jcomplete *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !s->complete; i++) {
        char c = p[i];
        if (s->in_str) {
            if (s->esc)
                s->esc = false;
            else if (c == '\\')
                s->esc = true;
            else if (c == '"')
                s->in_str = false;
            continue;
        }
        if (c == '"') {
            s->in_str = true;
        } else if (c == '{' || c == '[') {
            s->depth++;
            s->started = true;
        } else if ((c == '}' || c == ']') && s->depth > 0) {
            if (--s->depth == 0 && s->started)
                s->complete = true;
        }
    }
}

const char *lp_sx_str(struct json_object *v, size_t *len)
{
    if (!lp_json_is_str(v))
        return NULL;
    *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* ---- error classification ---------------------------------------------------------------- */

static bool name_is(const char *ev, size_t len, const char *want)
{
    size_t wl = strlen(want);
    return ev && len == wl && memcmp(ev, want, wl) == 0;
}

/* Cheap pre-filter, shared with the translators so both classify alike: "error" must occur
 * literally, which spares a JSON parse of nearly every content chunk on pass-through streams. An
 * error key or type spelled with \u escapes is therefore not an error (no server writes that). */
bool lp_sx_mentions_error(const char *data, size_t len)
{
    return data && len >= 7 && memmem(data, len, "\"error\"", 7) != NULL;
}

static struct json_object *error_object(enum lp_proto p, struct json_object *root)
{
    if (p == LP_PROTO_ANTHROPIC) {
        const char *t = lp_json_get_str(root, "type");
        if (!t || strcmp(t, "error") != 0)
            return NULL;
        struct json_object *e = lp_json_get_obj(root, "error");
        return e ? e : root;
    }
    struct json_object *e = lp_json_get(root, "error");
    if (!e || json_object_is_type(e, json_type_null))
        return NULL;
    return e;
}

bool lp_sse_event_is_error(enum lp_proto p, const char *event, size_t event_len, const char *data,
                           size_t data_len)
{
    if (name_is(event, event_len, "error"))
        return true;
    if (!lp_sx_mentions_error(data, data_len))
        return false;
    struct json_object *root = lp_json_parse(data, data_len, NULL);
    bool is = root && error_object(p, root) != NULL;
    json_object_put(root);
    return is;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    if (!size)
        return;
    size_t n = src ? strlen(src) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

bool lp_sse_event_error_info(enum lp_proto p, const char *data, size_t data_len, char *type,
                             size_t type_size, char *message, size_t message_size)
{
    copy_str(type, type_size, "api_error");
    copy_str(message, message_size, "");
    struct json_object *root = data ? lp_json_parse(data, data_len, NULL) : NULL;
    struct json_object *e = root ? error_object(p, root) : NULL;
    if (e) {
        const char *t = lp_json_get_str(e, "type");
        const char *code = p == LP_PROTO_OPENAI ? lp_json_get_str(e, "code") : NULL;
        /* OpenAI's type can be vague ("requests", "server_error") where the code is precise
         * ("rate_limit_exceeded"): the code wins when it names a class the type does not. */
        if (!t || (code && !strcmp(lp_xlat_error_class(t), "api_error") &&
                   strcmp(lp_xlat_error_class(code), "api_error") != 0))
            t = code ? code : t;
        if (t && *t)
            copy_str(type, type_size, t);
        const char *m = lp_json_is_str(e) ? lp_json_str(e) : lp_json_get_str(e, "message");
        copy_str(message, message_size, m);
    }
    json_object_put(root);
    return e != NULL;
}

/* ---- output cursor ----------------------------------------------------------------------- */

void lp_sx_putn(struct lp_sx_w *w, const char *s, size_t n)
{
    if (w->rc == LP_OK)
        w->rc = lp_buf_append(w->b, s, n);
}

void lp_sx_put(struct lp_sx_w *w, const char *s)
{
    lp_sx_putn(w, s, strlen(s));
}

void lp_sx_putf(struct lp_sx_w *w, const char *fmt, ...)
{
    va_list ap;
    if (w->rc != LP_OK)
        return;
    va_start(ap, fmt);
    w->rc = lp_buf_vprintf(w->b, fmt, ap);
    va_end(ap);
}

void lp_sx_put_jstr(struct lp_sx_w *w, const char *s, size_t n)
{
    lp_sx_putn(w, "\"", 1);
    if (w->rc == LP_OK)
        w->rc = lp_buf_append_json_escaped(w->b, s, n);
    lp_sx_putn(w, "\"", 1);
}
