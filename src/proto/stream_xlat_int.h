/* proto/stream_xlat_int.h - private to stream_xlat.c, stream_o2a.c, stream_a2o.c, stream_tap.c.
 *
 * The translator object is one struct with a per-direction part; stream_xlat.c owns the public
 * entry points and dispatches to the direction files through the lp_stream_o2a_* / _a2o_*
 * functions declared here. Shared helpers (usage parsing, SSE framing) live in stream_xlat.c.
 */
#ifndef LP_PROTO_STREAM_XLAT_INT_H
#define LP_PROTO_STREAM_XLAT_INT_H

#include <json-c/json.h>

#include "proto/stream_xlat.h"

/* Tracks whether a streamed JSON text (tool arguments) has become one complete value, so the
 * OpenAI->Anthropic side knows when a tool call can no longer receive fragments. */
struct lp_jcomplete {
    uint32_t depth;
    bool in_str, esc, started, complete;
};

enum lp_sx_block { SX_NONE = 0, SX_TEXT, SX_THINKING, SX_TOOL, SX_JSON /* response_format */ };

enum lp_sx_call_state { CALL_PENDING = 0, CALL_OPEN, CALL_CLOSED };

/* One OpenAI tool call being turned into an Anthropic tool_use block. */
struct lp_sx_call {
    int64_t up_index; /* tool_calls[].index upstream */
    char *id, *name;
    struct lp_buf args; /* fragments held back while the call waits for its block */
    struct lp_jcomplete scan;
    enum lp_sx_call_state state;
};

struct lp_sx_o2a {
    bool started;    /* message_start written */
    bool finished;   /* finish_reason seen: blocks are closed, message_delta may follow */
    bool delta_sent; /* message_delta written */
    bool any_tool;   /* at least one tool_use block was written */
    enum lp_sx_block open_kind;
    int64_t open_index; /* Anthropic index of the open block */
    int64_t next_index;
    int open_call; /* calls[] slot whose block is open, -1 */
    struct lp_sx_call *calls;
    size_t n_calls;
    size_t buffered;         /* bytes held in calls[].args, capped */
    const char *stop_reason; /* mapped, static; NULL until finish_reason */
};

/* One Anthropic content block as seen by the Anthropic->OpenAI side. */
struct lp_sx_ablock {
    int64_t index;
    enum lp_sx_block kind;
    int tool_idx; /* OpenAI tool_calls[].index for SX_TOOL */
};

struct lp_sx_a2o {
    bool started;     /* role chunk written */
    bool finish_sent; /* finish_reason chunk written */
    struct lp_sx_ablock *blocks;
    size_t n_blocks;
    int n_tools;
    bool json_tool; /* response_format's tool was called (its input is the content) */
};

/* Gemini -> OpenAI chunks (stream_google.c); `inner` carries them on to an Anthropic client. */
struct lp_sx_g2o {
    bool started;  /* role chunk written */
    bool finished; /* finish chunk written */
    bool said;     /* some answer text was written */
    int n_calls;
    struct lp_stream_xlat *inner; /* OpenAI -> Anthropic, for an Anthropic client; else NULL */
    struct json_object *usage;    /* the last usage, in OpenAI form */
    char *head;                   /* `{"id":..,"object":..,"created":..,"model":..,` (lazy) */
    struct lp_buf chunk;          /* one chunk being written */
};

struct lp_stream_xlat {
    enum lp_proto up, client;
    bool include_usage;
    bool done;   /* terminal event translated */
    bool closed; /* done, or error termination written: ignore everything after */
    char *alias;
    char *id;  /* client-visible message / completion id */
    char *rid; /* sanitised request id, for derived tool ids ("" when none) */
    int64_t created;
    struct lp_stream_usage usage;
    union {
        struct lp_sx_o2a o2a;
        struct lp_sx_a2o a2o;
        struct lp_sx_g2o g2o;
    } u;
};

/* stream_o2a.c */
void lp_stream_o2a_init(struct lp_stream_xlat *x);
void lp_stream_o2a_free(struct lp_stream_xlat *x);
enum lp_status lp_stream_o2a_event(struct lp_stream_xlat *x, const char *data, size_t data_len,
                                   struct lp_buf *out);
enum lp_status lp_stream_o2a_eof(struct lp_stream_xlat *x, struct lp_buf *out);
void lp_stream_o2a_error(struct lp_stream_xlat *x, const char *type, const char *message,
                         struct lp_buf *out);

/* stream_a2o.c */
void lp_stream_a2o_init(struct lp_stream_xlat *x);
void lp_stream_a2o_free(struct lp_stream_xlat *x);
enum lp_status lp_stream_a2o_event(struct lp_stream_xlat *x, const char *event, size_t event_len,
                                   const char *data, size_t data_len, struct lp_buf *out);
enum lp_status lp_stream_a2o_eof(struct lp_stream_xlat *x, struct lp_buf *out);
void lp_stream_a2o_error(struct lp_stream_xlat *x, const char *type, const char *code,
                         const char *message, struct lp_buf *out);

/* stream_google.c (upstream LP_PROTO_GOOGLE, either client) */
void lp_stream_g2o_init(struct lp_stream_xlat *x, const char *request_id);
void lp_stream_g2o_free(struct lp_stream_xlat *x);
enum lp_status lp_stream_g2o_event(struct lp_stream_xlat *x, const char *data, size_t data_len,
                                   struct lp_buf *out);
enum lp_status lp_stream_g2o_eof(struct lp_stream_xlat *x, struct lp_buf *out);
void lp_stream_g2o_error(struct lp_stream_xlat *x, const char *type, const char *message,
                         struct lp_buf *out);

/* stream_xlat.c: shared helpers */
/* An output cursor that remembers the first failure, so an event is written as a straight
 * sequence of puts and the status is checked once at the end. */
struct lp_sx_w {
    struct lp_buf *b;
    enum lp_status rc;
};
void lp_sx_put(struct lp_sx_w *w, const char *s);
void lp_sx_putn(struct lp_sx_w *w, const char *s, size_t n);
void lp_sx_putf(struct lp_sx_w *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append a JSON string literal (with quotes) holding s[0..n). */
void lp_sx_put_jstr(struct lp_sx_w *w, const char *s, size_t n);

/* a + b for token counts: negatives count as 0, the sum saturates at INT64_MAX. */
int64_t lp_sx_sat_add(int64_t a, int64_t b);
/* Read an OpenAI usage object into u (fields present overwrite; absent ones are kept). */
void lp_sx_usage_from_openai(struct json_object *usage, struct lp_stream_usage *u);
/* Read an Anthropic usage object (message_start.message.usage or message_delta.usage). When it
 * carries input_tokens, input becomes input_tokens + the cache fields present beside it (Anthropic
 * sends them together); output_tokens overwrites output. */
void lp_sx_usage_from_anthropic(struct json_object *usage, struct lp_stream_usage *u);
/* Does data contain the literal "error" (the pre-condition of an in-band error event)? */
bool lp_sx_mentions_error(const char *data, size_t len);
/* Is data exactly the OpenAI terminal sentinel "[DONE]" (surrounding whitespace allowed)? */
bool lp_sx_is_done_sentinel(const char *data, size_t len);
/* Feed streamed JSON text to a completeness tracker. */
void lp_jcomplete_feed(struct lp_jcomplete *s, const char *p, size_t n);
/* The string value of v and its length (json-c strings may hold NULs), or NULL. */
const char *lp_sx_str(struct json_object *v, size_t *len);

#endif
