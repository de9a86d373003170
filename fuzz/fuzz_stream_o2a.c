/* fuzz_stream_o2a.c - OpenAI upstream SSE -> Anthropic client translation, and the OpenAI
 * pass-through tap, over arbitrary bytes.
 *
 * Input: byte 0 holds flags (bit 0: include_usage; bits 1-7: chunk size seed), the rest is the
 * upstream SSE byte stream. The stream is parsed with src/sse.c in chunks and every event is fed
 * to the translator the way the proxy core does. Properties checked beyond "no crash, no leak":
 * each call appends only whole SSE events (output ends in a blank line).
 */
#include "fuzz_stream_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream_run(LP_PROTO_OPENAI, LP_PROTO_ANTHROPIC, data, size);
    return 0;
}
