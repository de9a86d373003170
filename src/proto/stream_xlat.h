/* proto/stream_xlat.h - incremental SSE stream translation between OpenAI chat-completions and
 * Anthropic messages, plus a usage tap for same-protocol (pass-through) streams.
 *
 * The proxy core parses the upstream SSE byte stream into events (src/sse.h) and feeds them here
 * one at a time; the translator appends zero or more complete client SSE events to an output
 * buffer, which the core writes to the client. Nothing here does I/O, reads globals or logs: the
 * state lives in the translator object, one per stream.
 *
 * Translation is a state machine per direction (stream_o2a.c: OpenAI upstream -> Anthropic
 * client; stream_a2o.c: Anthropic upstream -> OpenAI client). docs/translation-streams.md holds
 * the event mapping tables.
 *
 * Memory per stream is bounded: tool-call arguments that must be held back (parallel calls whose
 * fragments interleave) are capped at LP_STREAM_XLAT_MAX_BUFFERED bytes in total, tool calls at
 * LP_STREAM_XLAT_MAX_CALLS and tracked content blocks at LP_STREAM_XLAT_MAX_BLOCKS; past a cap the
 * event call returns LP_ERR_TOOBIG and the core ends the stream with an error.
 */
#ifndef LP_PROTO_STREAM_XLAT_H
#define LP_PROTO_STREAM_XLAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* enum lp_proto */
#include "status.h"
#include "util/buf.h"

#define LP_STREAM_XLAT_MAX_BUFFERED (4u * 1024 * 1024)
#define LP_STREAM_XLAT_MAX_CALLS 128
#define LP_STREAM_XLAT_MAX_BLOCKS 1024

struct lp_stream_xlat; /* opaque */

/* Token usage of one stream; every field is -1 while unknown.
 * input  = all prompt tokens, cache reads and cache writes included (OpenAI prompt_tokens;
 *          Anthropic input_tokens + cache_read_input_tokens + cache_creation_input_tokens);
 * output = completion tokens (OpenAI completion_tokens; Anthropic output_tokens);
 * cached = the part of input read from the prompt cache (OpenAI
 *          prompt_tokens_details.cached_tokens; Anthropic cache_read_input_tokens). */
struct lp_stream_usage {
    int64_t input, output, cached;
};

/* Create a translator from upstream protocol `up` to client protocol `client`.
 * Accepts: up != client (otherwise returns NULL: same-protocol streams use the tap below).
 * alias: the model alias the client asked for, written into every model field (NULL = "").
 * include_usage: the OpenAI client asked for stream_options.include_usage; only then is a final
 *   usage chunk emitted (ignored for an Anthropic client, which always receives usage).
 * request_id: used to derive the client-visible ids ("msg_<rid>", "chatcmpl-<rid>"; characters
 *   outside [A-Za-z0-9_-] are dropped); NULL is allowed.
 * The strings are copied. Free with lp_stream_xlat_free. */
struct lp_stream_xlat *lp_stream_xlat_new(enum lp_proto up, enum lp_proto client, const char *alias,
                                          bool include_usage, const char *request_id);

/* Free the translator and everything it holds. NULL is accepted. */
void lp_stream_xlat_free(struct lp_stream_xlat *x);

/* Override the `created` timestamp of OpenAI chunks (Unix seconds; default: time of creation).
 * For deterministic tests. */
void lp_stream_xlat_set_created(struct lp_stream_xlat *x, int64_t created);

/* Feed one upstream SSE event: the event name (NULL or length 0 when absent, as for OpenAI) and
 * the joined data lines. Appends zero or more complete client SSE events to `out`.
 * Returns:
 *  LP_OK          the event was consumed (possibly producing nothing, e.g. `ping`);
 *  LP_DECLINED    the event is an in-band upstream error; nothing was appended. Before commit
 *                 the core fails over; after commit it calls lp_stream_xlat_error;
 *  LP_ERR_PARSE   the data is not the JSON the protocol requires; nothing was appended;
 *  LP_ERR_TOOBIG  a per-stream cap or out's ceiling was hit (out may hold a partial event).
 * After the upstream terminal event (OpenAI `[DONE]`, Anthropic `message_stop`) has been
 * translated, lp_stream_xlat_done() is true and further events are ignored (LP_OK, no output);
 * the same holds after lp_stream_xlat_error. */
enum lp_status lp_stream_xlat_event(struct lp_stream_xlat *x, const char *event, size_t event_len,
                                    const char *data, size_t data_len, struct lp_buf *out);

/* True once the upstream terminal event was translated (the client saw a normal completion). */
bool lp_stream_xlat_done(const struct lp_stream_xlat *x);

/* The upstream ended (EOF) without its terminal event. If the stream had already reached its
 * finish point (OpenAI finish_reason / Anthropic message_delta), append the normal client
 * termination and return LP_OK (done() becomes true): some upstreams omit `[DONE]`. Otherwise
 * append nothing and return LP_DECLINED: the caller then ends the stream with
 * lp_stream_xlat_error. */
enum lp_status lp_stream_xlat_eof(struct lp_stream_xlat *x, struct lp_buf *out);

/* Terminate the client stream with a protocol-correct error after the client has seen bytes, so
 * an official SDK raises instead of reporting a normal completion.
 *  Anthropic client: `content_block_stop` for a block still open, then
 *    `event: error` / {"type":"error","error":{"type":TYPE,"message":MESSAGE}}.
 *  OpenAI client: `data: {"error":{"message":MESSAGE,"type":TYPE,"param":null,"code":null}}`
 *    and no `[DONE]`.
 * type: e.g. "api_error", "overloaded_error", "timeout" (NULL = "api_error"); message may be NULL.
 * Does nothing when the stream is already done or already terminated with an error. */
void lp_stream_xlat_error(struct lp_stream_xlat *x, const char *type, const char *message,
                          struct lp_buf *out);

/* Usage seen so far (message_start/message_delta, or OpenAI usage objects). */
struct lp_stream_usage lp_stream_xlat_usage(const struct lp_stream_xlat *x);

/* Is this upstream event of protocol p an in-band error? Either protocol: SSE event name `error`.
 * Anthropic: data {"type":"error",...}; OpenAI: data is an object with a non-null top-level
 * "error" member.
 * Never fails: garbage is "not an error" (the translator reports it as LP_ERR_PARSE). */
bool lp_sse_event_is_error(enum lp_proto p, const char *event, size_t event_len, const char *data,
                           size_t data_len);

/* Extract the type and message of an in-band error event (see lp_sse_event_is_error) into
 * caller-owned buffers (always NUL-terminated, truncated to fit). Anthropic error.type is copied
 * as is; for OpenAI, error.type or else error.code. Missing parts give "api_error" and "".
 * Returns true when the data was a recognisable error object. */
bool lp_sse_event_error_info(enum lp_proto p, const char *data, size_t data_len, char *type,
                             size_t type_size, char *message, size_t message_size);

/* PASS-THROUGH tap (client and upstream speak the same protocol): observe events to extract usage
 * and detect the terminal event without changing any byte. For an OpenAI client that did NOT ask
 * for usage while the proxy injected stream_options.include_usage upstream, the tap reports the
 * usage-only chunk (empty choices + usage) as one to withhold from the client. */
struct lp_stream_tap {
    enum lp_proto p;
    bool client_wants_usage;
    bool done; /* OpenAI `[DONE]` / Anthropic `message_stop` seen */
    struct lp_stream_usage usage;
};

/* Initialise a tap for protocol p. client_wants_usage: the OpenAI client asked for usage itself
 * (always treat as true for Anthropic). Allocates nothing; no free needed. */
void lp_stream_tap_init(struct lp_stream_tap *t, enum lp_proto p, bool client_wants_usage);

/* Observe one upstream event (name may be NULL/0). Updates t->usage and t->done.
 * Returns true when the event must NOT be forwarded to the client (only the injected OpenAI
 * usage-only chunk); false otherwise, including for unparsable data. */
bool lp_stream_tap_event(struct lp_stream_tap *t, const char *event, size_t event_len,
                         const char *data, size_t data_len);

#endif
