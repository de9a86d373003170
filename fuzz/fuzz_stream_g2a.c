/* fuzz_stream_g2a.c - Gemini upstream SSE (alt=sse) -> Anthropic (through the OpenAI chain) client
 * translation over arbitrary bytes. Input format and checked properties: fuzz_stream_common.h
 * (byte 0: flags, then the upstream SSE byte stream; every call appends whole events only). */
#include "fuzz_stream_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream_run(LP_PROTO_GOOGLE, LP_PROTO_ANTHROPIC, data, size);
    return 0;
}
