/* fuzz_xlat_google.c - the Google translators (proto/google.c) over arbitrary bytes.
 *
 * Input: one selector byte, then a body. Bit 0 picks the client protocol (0 OpenAI, 1
 * Anthropic); bits 1-2 set max_tokens_limit and stream; bits 3-4 the operation (0 and 3: the
 * request translator to Google; 1: the body as a Gemini answer through the response translator;
 * 2: as a Gemini error through the error translator, status 400 + 25 * bits 5-7). One operation
 * per input keeps an execution cheap. Corpus: fuzz/corpus/fuzz_xlat_google/, seeded from
 * the req_*2g_* and resp_g2*_ fixtures.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto/xlat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum lp_proto client = (data[0] & 1) ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct lp_xlat_opts o = {.upstream_model = "fuzz",
                             .default_max_tokens = 4096,
                             .max_tokens_limit = (data[0] & 2) ? 1000 : 0,
                             .stream = (data[0] & 4) != 0,
                             .request_id = "fuzz"};
    struct lp_xlat_err err;
    size_t n = 0;
    char *out;
    switch ((data[0] >> 3) & 3) {
    case 1:
        out = lp_xlat_response(LP_PROTO_GOOGLE, client, body, len, "alias", &n);
        break;
    case 2:
        out = lp_xlat_error(LP_PROTO_GOOGLE, client, 400 + 25 * (data[0] >> 5), body, len, &n);
        break;
    default:
        out = lp_xlat_request(client, LP_PROTO_GOOGLE, body, len, &o, &n, &err);
        break;
    }
    free(out);
    return 0;
}
