/* fuzz_jscan.c - libFuzzer target for the request-body scanner.
 *
 * Checks, for any input: no crash/leak/UB; on error, a message and an in-range offset; on
 * success, in-range field offsets, and that rewriting the model yields a body that scans again
 * with the new model and keeps every byte outside the model token. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_rewrite(const char *in, size_t size, const struct lp_jscan *s)
{
    static const char *const models[] = {"gpt-4o", "q\"uo\\te\n\x01", ""};
    for (size_t m = 0; m < 3; m++) {
        size_t n = 0;
        char *out = lp_jscan_rewrite_model(in, size, s, models[m], &n);
        CHECK(out && out[n] == '\0');
        struct lp_jscan t;
        CHECK(lp_jscan_request(out, n, &t, NULL, NULL) == LP_OK);
        CHECK(t.has_model && t.model_is_string && strcmp(t.model, models[m]) == 0);
        /* everything else is untouched */
        CHECK(t.stream == s->stream && t.has_stream == s->has_stream);
        CHECK(t.has_stream_options_include_usage == s->has_stream_options_include_usage);
        if (s->has_model) {
            size_t tail = s->model_off + s->model_len;
            CHECK(memcmp(out, in, s->model_off) == 0);
            CHECK(n - t.model_off - t.model_len == size - tail);
            CHECK(memcmp(out + t.model_off + t.model_len, in + tail, size - tail) == 0);
        }
        lp_jscan_free(&t);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct lp_jscan s;
    const char *msg = NULL;
    size_t off = SIZE_MAX;
    enum lp_status rc = lp_jscan_request(in, size, &s, &msg, &off);
    if (rc != LP_OK) {
        CHECK(rc == LP_ERR_PARSE && msg != NULL && off <= size && s.model == NULL);
        return 0;
    }
    if (s.has_model) {
        CHECK(s.model_len > 0 && s.model_off + s.model_len <= size);
        CHECK(s.model_is_string == (in[s.model_off] == '"'));
        CHECK(s.model_is_string == (s.model != NULL));
    }
    CHECK(s.stream_options_off + s.stream_options_len <= size);
    CHECK(!s.stream || s.stream_is_bool);
    check_rewrite(in, size, &s);
    lp_jscan_free(&s);
    return 0;
}
