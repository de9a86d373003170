/* proto/google.h - Google Gemini / Vertex AI generateContent <-> OpenAI chat-completions
 * (internal to src/proto; the public entry points are those of xlat.h and stream_xlat.h, which
 * dispatch here when one side is LP_PROTO_GOOGLE).
 *
 * Google is a backend wire protocol only: no client speaks it to us. Its translator talks
 * OpenAI on its client side; an Anthropic client is served by chaining the existing
 * Anthropic<->OpenAI translators before (requests) and after (answers, streams, errors) it.
 * docs/translation.md "Google Gemini" holds the mapping tables and the trade-offs of the chain.
 *
 * Pure: JSON in, JSON out, no I/O, no globals (`created` is the wall clock).
 */
#ifndef LP_PROTO_GOOGLE_H
#define LP_PROTO_GOOGLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/xlat.h"

struct json_object;

/* An OpenAI chat-completions request (parsed, borrowed) -> a Gemini GenerateContentRequest tree
 * (new; the model and the stream flag travel in the URL, not the body). NULL with *err set when
 * the request cannot be expressed (bad tool arguments JSON, unsupported content part, ...). */
struct json_object *lp_google_req_from_openai(struct json_object *in, const struct lp_xlat_opts *o,
                                              struct lp_xlat_err *err);

/* A Gemini GenerateContentResponse body (an object, or a JSON array of them as the
 * non-SSE streaming method answers, merged in order) -> an OpenAI chat.completion body (heap,
 * *out_len set). `alias` is written as `model` (NULL: the answer's modelVersion). NULL when the
 * body is not a Gemini answer. */
char *lp_google_resp_to_openai(const char *body, size_t len, const char *alias, size_t *out_len);

/* Gemini finishReason -> OpenAI finish_reason ("stop", "length", "content_filter",
 * "tool_calls" when the answer called a function). */
const char *lp_google_finish(const char *reason, bool called_tools);

/* usageMetadata -> OpenAI usage object (new), or NULL when absent. */
struct json_object *lp_google_usage(struct json_object *um);

#endif
