/* fuzz_xlat_response.c - libFuzzer target for the non-streaming response and error translators
 * (lp_xlat_response, lp_xlat_error, lp_xlat_usage in proto/xlat.h), both directions.
 *
 * Input: byte 0 = flags (bit 0: upstream protocol is Anthropic; bit 1: no alias; bits 2-7 plus
 * byte 1 bits 0-6: HTTP status offset), byte 1 bit 7 = operation (0: response round trip and
 * usage, 1: error translation; one operation per input keeps an execution cheap), then the
 * upstream body. Checks beyond "no crash, no leak, no UB":
 *   - a translated response is a JSON object of the client protocol's shape whose model is the
 *     alias, and it translates back (a response we produce is a valid response of its protocol);
 *   - an error translated to another protocol is always produced, is JSON, and has that
 *     protocol's error envelope; translated to the same protocol it is NULL (pass through) or
 *     has the envelope, and translating the result again passes through.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "proto/xlat.h"
#include "util/json.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static enum lp_proto other(enum lp_proto p)
{
    return p == LP_PROTO_OPENAI ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI;
}

static struct json_object *parse_obj(const char *s, size_t n)
{
    struct json_object *o = lp_json_parse(s, n, NULL);
    CHECK(lp_json_is_obj(o));
    return o;
}

static void check_response_shape(enum lp_proto p, const char *s, size_t n, const char *alias)
{
    struct json_object *o = parse_obj(s, n);
    if (p == LP_PROTO_OPENAI) {
        struct json_object *ch = lp_json_arr_at(lp_json_get_arr(o, "choices"), 0);
        CHECK(lp_json_get_obj(ch, "message") != NULL);
    } else {
        CHECK(lp_json_get_arr(o, "content") != NULL);
        const char *t = lp_json_get_str(o, "type");
        CHECK(t && strcmp(t, "message") == 0);
    }
    if (alias) {
        const char *m = lp_json_get_str(o, "model");
        CHECK(m && strcmp(m, alias) == 0);
    }
    json_object_put(o);
}

static void check_error_shape(enum lp_proto p, const char *s, size_t n)
{
    struct json_object *o = parse_obj(s, n);
    struct json_object *e = lp_json_get_obj(o, "error");
    CHECK(e != NULL);
    CHECK(lp_json_get_str(e, "message") != NULL);
    if (p == LP_PROTO_ANTHROPIC) {
        const char *t = lp_json_get_str(o, "type");
        CHECK(t && strcmp(t, "error") == 0);
        CHECK(lp_json_get_str(e, "type") != NULL);
    }
    json_object_put(o);
}

static void fuzz_response(enum lp_proto from, const char *body, size_t len, const char *alias)
{
    size_t n = 0, n2 = 0;
    char *out = lp_xlat_response(from, other(from), body, len, alias, &n);
    if (!out)
        return;
    CHECK(strlen(out) == n);
    check_response_shape(other(from), out, n, alias);
    char *back = lp_xlat_response(other(from), from, out, n, alias, &n2);
    CHECK(back != NULL);
    check_response_shape(from, back, n2, alias);
    free(back);
    free(out);
}

static void fuzz_error(enum lp_proto from, int status, const char *body, size_t len)
{
    size_t n = 0, n2 = 0;
    enum lp_proto to = other(from);
    char *out = lp_xlat_error(from, to, status, body, len, &n);
    CHECK(out != NULL && strlen(out) == n);
    check_error_shape(to, out, n);
    /* Our own output, seen again from a same-protocol upstream, passes through verbatim. */
    char *again = lp_xlat_error(to, to, status, out, n, &n2);
    CHECK(again == NULL);
    free(out);

    out = lp_xlat_error(from, from, status, body, len, &n);
    if (out) {
        CHECK(strlen(out) == n);
        check_error_shape(from, out, n);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    enum lp_proto from = (data[0] & 1) ? LP_PROTO_ANTHROPIC : LP_PROTO_OPENAI;
    const char *alias = (data[0] & 2) ? NULL : "alias-\"x\"";
    int status = 400 + (int)(((unsigned)data[0] >> 2 | ((unsigned)data[1] & 0x7f) << 6) % 200);
    bool errors = (data[1] & 0x80) != 0;
    size_t len = size - 2;
    /* An exact-size heap copy, so ASan sees any read past len. */
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 2, len);
    if (errors) {
        fuzz_error(from, status, body, len);
    } else {
        fuzz_response(from, body, len, alias);
        int64_t in, out, cached;
        lp_xlat_usage(from, body, len, &in, &out, &cached);
    }
    free(body);
    return 0;
}
