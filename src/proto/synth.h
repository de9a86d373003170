/* synth.h - an SSE stream synthesised from a complete response body.
 *
 * Some upstreams ignore `stream: true` and answer with one JSON body. A streaming client (and
 * its SDK) would then see no stream at all; instead the proxy replays the finished answer as a
 * well-formed stream of the client's protocol: OpenAI a role+content chunk (with tool_calls and
 * reasoning_content when present), a finish chunk, a usage chunk when asked for, `[DONE]`;
 * Anthropic message_start, one start/delta/stop per content block (text, tool_use via
 * input_json_delta, thinking), message_delta with stop_reason and usage, message_stop.
 */
#ifndef LP_PROTO_SYNTH_H
#define LP_PROTO_SYNTH_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* body: a complete, successful response of protocol p (the client's protocol: translate first
 * when the upstream spoke the other one). Returns the SSE bytes (heap, *out_len set), or NULL
 * when body is not a response of protocol p. */
char *lp_synth_stream(enum lp_proto p, const char *body, size_t len, bool include_usage,
                      size_t *out_len);

#endif
