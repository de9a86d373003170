/* proto/stream_tap.c - usage and end-of-stream observation for pass-through streams.
 *
 * The bytes of a same-protocol stream are relayed untouched; the tap only reads events. To keep
 * the relay cheap it parses JSON only for the few events that can carry usage: OpenAI chunks
 * that mention "usage" with a non-null value, Anthropic message_start and message_delta.
 */
#include <string.h>

#include "proto/stream_xlat_int.h"
#include "util/json.h"

void lp_stream_tap_init(struct lp_stream_tap *t, enum lp_proto p, bool client_wants_usage)
{
    memset(t, 0, sizeof *t);
    t->p = p;
    t->client_wants_usage = client_wants_usage || p == LP_PROTO_ANTHROPIC;
    t->usage = (struct lp_stream_usage){-1, -1, -1};
}

/* True when "usage" occurs with something other than null after it. */
static bool may_carry_usage(const char *data, size_t len)
{
    const char *end = data + len;
    for (const char *p = data; p < end;) {
        const char *hit = memmem(p, (size_t)(end - p), "\"usage\"", 7);
        if (!hit)
            return false;
        const char *q = hit + 7;
        while (q < end && (*q == ' ' || *q == ':' || *q == '\t' || *q == '\r' || *q == '\n'))
            q++;
        if (q < end && !((size_t)(end - q) >= 4 && memcmp(q, "null", 4) == 0))
            return true;
        p = hit + 7;
    }
    return false;
}

static bool tap_openai(struct lp_stream_tap *t, const char *data, size_t len)
{
    if (lp_sx_is_done_sentinel(data, len)) {
        t->done = true;
        return false;
    }
    if (!may_carry_usage(data, len))
        return false;
    struct json_object *root = lp_json_parse(data, len, NULL);
    struct json_object *usage = lp_json_get_obj(root, "usage");
    bool drop = false;
    if (usage) {
        lp_sx_usage_from_openai(usage, &t->usage);
        /* Only the usage-only chunk is withheld: a chunk that also carries choices has content
         * the client needs, and the bytes may not be edited. */
        struct json_object *choices = lp_json_get(root, "choices");
        bool no_choices = !choices || json_object_is_type(choices, json_type_null) ||
                          (lp_json_is_arr(choices) && lp_json_arr_len(choices) == 0);
        drop = !t->client_wants_usage && no_choices;
    }
    json_object_put(root);
    return drop;
}

static bool name_is(const char *ev, size_t len, const char *want)
{
    size_t wl = strlen(want);
    return ev && len == wl && memcmp(ev, want, wl) == 0;
}

/* Anthropic events are named, so the name picks the few events worth parsing; an unnamed event
 * (non-standard upstream) is parsed when its data mentions a message_* type. */
static void tap_anthropic(struct lp_stream_tap *t, const char *ev, size_t ev_len, const char *data,
                          size_t len)
{
    bool named = ev && ev_len;
    if (named && name_is(ev, ev_len, "message_stop")) {
        t->done = true;
        return;
    }
    if (named && !name_is(ev, ev_len, "message_start") && !name_is(ev, ev_len, "message_delta"))
        return;
    if (!named && !memmem(data, len, "\"message_", 9))
        return;
    struct json_object *root = lp_json_parse(data, len, NULL);
    const char *type = lp_json_get_str(root, "type");
    if (!type)
        type = "";
    if (strcmp(type, "message_start") == 0)
        lp_sx_usage_from_anthropic(lp_json_get_obj(lp_json_get_obj(root, "message"), "usage"),
                                   &t->usage);
    else if (strcmp(type, "message_delta") == 0)
        lp_sx_usage_from_anthropic(lp_json_get_obj(root, "usage"), &t->usage);
    else if (strcmp(type, "message_stop") == 0)
        t->done = true;
    json_object_put(root);
}

bool lp_stream_tap_event(struct lp_stream_tap *t, const char *event, size_t event_len,
                         const char *data, size_t data_len)
{
    if (!data)
        return false;
    if (!event)
        event_len = 0;
    if (t->p == LP_PROTO_OPENAI)
        return tap_openai(t, data, data_len);
    tap_anthropic(t, event, event_len, data, data_len);
    return false;
}
