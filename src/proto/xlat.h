/* proto/xlat.h - OpenAI chat-completions <-> Anthropic messages translation of request bodies,
 * non-streaming response bodies and error bodies.
 *
 * Everything here is pure: JSON text in, new JSON text out, no I/O and no globals (the only
 * exceptions are debug log lines naming dropped fields, and `created` = the wall clock).
 * The streaming translators live in proto/stream_xlat.h. docs/translation.md holds the mapping
 * tables, the list of dropped fields and every decision taken where the protocols disagree.
 *
 * Implementation files: xlat.c (dispatch, shared helpers, error bodies), xlat_req_o2a.c,
 * xlat_req_a2o.c (requests), xlat_resp.c (responses, usage), xlat_err.c (upstream errors).
 */
#ifndef LP_PROTO_XLAT_H
#define LP_PROTO_XLAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* enum lp_proto */

/* What a translation dropped, for the X-LLM-Proxy-Dropped-Params response header and the
 * access line: client parameter names, comma-separated, each at most once; cut (with a final
 * ",...") when it would not fit. */
struct lp_xlat_notes {
    char dropped[256];
};

/* Add `name` to notes (NULL notes: nothing). */
void lp_xlat_note_drop(struct lp_xlat_notes *notes, const char *name);

struct lp_xlat_opts {
    const char *upstream_model;  /* the route's real model, written into the translated body;
                                  * NULL keeps the client's `model` */
    int64_t default_max_tokens;  /* OpenAI->Anthropic when the client gave none and
                                  * max_tokens_limit is 0; <= 0: lp_xlat_model_max_tokens */
    int64_t max_tokens_limit;    /* 0 = none; max_tokens is clamped to it (both directions), and
                                  * it is the value sent when an OpenAI client gave none */
    bool stream;                 /* the client asked for streaming (used when the body has no
                                  * boolean `stream`) */
    const char *request_id;      /* for debug logs; may be NULL */
    bool drop_unsupported;       /* translation.unsupported: drop (else reject: a 400 naming
                                  * the parameter) for parameters that change the answer */
    struct lp_xlat_notes *notes; /* filled with what was dropped; may be NULL */
};

/* A request the translator refuses: always a client error (status 400, type
 * "invalid_request_error", the same name in both protocols). `message` names the offending
 * field in the CLIENT's terms, e.g. "messages[2].tool_calls[0].function.arguments: ...". */
struct lp_xlat_err {
    int status;
    char type[64];
    char message[256];
};

/* OpenAI `response_format` (json_schema / json_object) on an Anthropic backend becomes a
 * forced tool of this name whose input is the answer; both response translators (and the
 * stream translator) turn a tool_use of this name back into message content. */
#define LP_XLAT_JSON_TOOL "json_response"

/* The output-token limit of an Anthropic model from its name (claude-opus-4-5 64000, opus-4
 * 32000, sonnet-4* / haiku-4* / 3-7-sonnet 64000, 3-5 8192, claude-3 4096), else
 * LP_XLAT_DEFAULT_MAX_TOKENS. */
#define LP_XLAT_DEFAULT_MAX_TOKENS 4096
int64_t lp_xlat_model_max_tokens(const char *model);

/* Translate a client request body from client protocol `from` to backend protocol `to`.
 * Accepts: a JSON object body (anything else is refused with a 400), from != to (from == to is
 *   refused with a 400 too: the caller passes such bodies through).
 * Returns: a new heap NUL-terminated body (caller frees, *out_len set), or NULL with *err filled
 *   (invalid tool_call arguments JSON, a missing tool_call_id, an unsupported content part, ...).
 * Never drops a client's content silently: what cannot be expressed is either a 400 or a
 *   documented, debug-logged dropped field (docs/translation.md "Dropped fields"). */
char *lp_xlat_request(enum lp_proto from, enum lp_proto to, const char *body, size_t len,
                      const struct lp_xlat_opts *o, size_t *out_len, struct lp_xlat_err *err);

/* Translate a successful non-streaming upstream response body from backend protocol `from` to
 * client protocol `to` (from != to). `alias` (the client's model alias, NULL = upstream model) is
 * written into `model`. Ids keep the upstream id with the prefix swapped (msg_X <-> chatcmpl-X),
 * `created` is now.
 * Returns: a new heap body (*out_len set), or NULL when the upstream body is not a valid
 *   response of protocol `from` (the caller answers 502), or when from == to. */
char *lp_xlat_response(enum lp_proto from, enum lp_proto to, const char *body, size_t len,
                       const char *alias, size_t *out_len);

/* Translate an upstream ERROR body (any shape, possibly not JSON, possibly empty) with HTTP
 * status `status` into the error shape of client protocol `to`, keeping its class and message:
 *   OpenAI:    {"error":{"message":..,"type":..,"param":null,"code":..}}
 *   Anthropic: {"type":"error","error":{"type":..,"message":..}}
 * Context-window overflows map to each protocol's recognisable form: OpenAI code
 * "context_length_exceeded" ("This model's maximum context length is ..."), Anthropic
 * invalid_request_error "prompt is too long: N tokens > M maximum" (Claude Code compacts on it).
 * Returns: a new heap body (*out_len set). When from == to and the body already has the
 *   client protocol's error shape, returns NULL: pass the upstream body verbatim. */
char *lp_xlat_error(enum lp_proto from, enum lp_proto to, int status, const char *body, size_t len,
                    size_t *out_len);

/* Build an error body of protocol `p` from a status, an Anthropic-style error type (see
 * docs/translation.md "Errors"; NULL derives it from the status) and a message. Used for
 * lp_xlat_err and for the proxy's own errors. Returns a new heap body (*out_len set). */
char *lp_xlat_error_body(enum lp_proto p, int status, const char *type, const char *message,
                         size_t *out_len);

/* An error type or code of any protocol (Anthropic types, OpenAI types and codes such as
 * "rate_limit_exceeded" or "insufficient_quota", Google statuses, the proxy's own names) ->
 * the Anthropic error class it belongs to ("api_error" when unknown). Static string. */
const char *lp_xlat_error_class(const char *type);
/* The same error in client protocol `to`'s vocabulary: Anthropic -> (class, NULL code);
 * OpenAI -> (type, code), e.g. overloaded_error -> ("server_error", "overloaded"). Static
 * strings; *out_code may be NULL. */
void lp_xlat_error_names(enum lp_proto to, const char *type, const char **out_type,
                         const char **out_code);

/* A local estimate of the input tokens of an Anthropic messages request (for
 * /v1/messages/count_tokens when no route of the alias speaks Anthropic): about one token per
 * four characters of the text in system, messages and tools, plus a few per message, and a
 * flat 1600 per image or document. Returns -1 when the body is not a JSON object. */
int64_t lp_xlat_estimate_tokens(const char *body, size_t len);

/* Usage of a non-streaming response body of protocol p, for metrics. Each value is -1 when
 * absent (or the body is not JSON). Same semantics as struct lp_stream_usage:
 *   in     = all prompt tokens (OpenAI prompt_tokens; Anthropic input_tokens +
 *            cache_read_input_tokens + cache_creation_input_tokens);
 *   out    = completion/output tokens;
 *   cached = prompt tokens read from the cache (prompt_tokens_details.cached_tokens;
 *            cache_read_input_tokens). */
void lp_xlat_usage(enum lp_proto p, const char *body, size_t len, int64_t *in, int64_t *out,
                   int64_t *cached);

/* ---- Internal: shared by src/proto/xlat*.c only (not part of the contract) ---- */
struct json_object;

/* Fill *err with a 400 invalid_request_error and a printf-formatted message. */
void lp_xlat_fail(struct lp_xlat_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A client parameter the backend protocol cannot honour. Under `reject` (the default) fills
 * *err with a 400 naming it ("<name>: <why>; set translation.unsupported: drop to drop it") and
 * returns false; under `drop` notes it as dropped and returns true. */
bool lp_xlat_unsupported(const struct lp_xlat_opts *o, struct lp_xlat_err *err, const char *name,
                         const char *why);
/* Serialise to a new heap string (*out_len set). */
char *lp_xlat_dump(struct json_object *obj, size_t *out_len);
/* Text of an OpenAI content value (string, or array of {type:text|refusal|input_text,..} parts)
 * or an Anthropic one (string or text blocks), parts joined by `sep`. NULL when there is no text
 * at all; otherwise a heap string. */
char *lp_xlat_text_of(struct json_object *content, const char *sep);
/* `prefix` + id with any of the known prefixes ("msg_", "chatcmpl-") removed; when id is
 * missing, a stable id derived from `seed` (an FNV-1a hash). Heap string. */
char *lp_xlat_make_id(const char *prefix, const char *id, const char *seed, size_t seed_len);
/* A {"type":"text","text":s} block. */
struct json_object *lp_xlat_text_block(const char *s);
/* json_object_get() shorthand that tolerates NULL: a new reference to v. */
struct json_object *lp_xlat_ref(struct json_object *v);

/* The two request directions (xlat_req_o2a.c, xlat_req_a2o.c): take the parsed client body
 * (borrowed; may be modified), return a new tree or NULL with *err set. */
struct json_object *lp_xlat_req_o2a(struct json_object *in, const struct lp_xlat_opts *o,
                                    struct lp_xlat_err *err);
struct json_object *lp_xlat_req_a2o(struct json_object *in, const struct lp_xlat_opts *o,
                                    struct lp_xlat_err *err);

#endif
