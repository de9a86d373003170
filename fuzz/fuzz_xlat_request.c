/* fuzz_xlat_request.c - libFuzzer target for proto/xlat.
 *
 * Input: one selector byte, then a body. Selector bit 0 picks the client protocol (0 OpenAI,
 * 1 Anthropic); the body goes through the request translator, and a successful translation is
 * translated back (exercising the other direction on well-formed input). The response, error and
 * usage translators are fuzz_xlat_response's (with shape checks); running them here too made
 * every input cost six JSON parses instead of two. Corpus: fuzz/corpus/fuzz_xlat_request/, seeded
 * from the tests/fixtures/xlat inputs.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto/xlat.h"

static enum lp_proto other(enum lp_proto p)
{
    return p == LP_PROTO_OPENAI ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum lp_proto from = (data[0] & 1) ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct lp_xlat_opts o = {.upstream_model = "fuzz",
                             .default_max_tokens = 4096,
                             .max_tokens_limit = (data[0] & 2) ? 1000 : 0,
                             .stream = (data[0] & 4) != 0,
                             .request_id = "fuzz"};
    struct lp_xlat_err err;
    size_t n = 0, n2 = 0;
    char *out = lp_xlat_request(from, other(from), body, len, &o, &n, &err);
    if (out) {
        char *back = lp_xlat_request(other(from), from, out, n, &o, &n2, &err);
        free(back);
    }
    free(out);
    return 0;
}
