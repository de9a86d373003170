/* jscan.h - validate a JSON request body and find its top-level fields without building a tree.
 *
 * The pass-through path (client protocol == backend protocol) only needs to know `model`,
 * `stream` and `stream_options`, and to replace `model`. Parsing a 100 KB - several MB body into
 * a json-c tree for that costs allocations per token; this module does one linear pass with no
 * allocation except the decoded model string, and rewrites `model` by splicing bytes, so every
 * other byte (big integers, float spelling, whitespace, key order, unknown fields) reaches the
 * backend exactly as the client sent it.
 *
 * JSON accepted (RFC 8259, strict):
 * - exactly one value, which must be an object, with only whitespace (SP, HT, LF, CR) around it;
 * - strings: no raw control characters (< 0x20), escapes \" \\ \/ \b \f \n \r \t \uXXXX only,
 *   raw bytes must be well-formed UTF-8 (no overlongs, no encoded surrogates, <= U+10FFFF);
 * - \uXXXX surrogates: a high surrogate followed by \u low surrogate is a pair. A LONE surrogate
 *   escape (\ud800 alone, or a stray \udc00) is ACCEPTED, as JavaScript, Python and json-c do,
 *   because it is only an escape sequence and the bytes are forwarded unchanged. When a lone
 *   surrogate appears inside the decoded `model` value it decodes to U+FFFD, so `model` is
 *   always valid UTF-8;
 * - numbers: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? of any length (no leading zeros,
 *   no '+', no bare '.', no NaN/Infinity);
 * - literals true, false, null; no comments, no trailing commas;
 * - container nesting depth at most LP_JSCAN_MAX_DEPTH (the top-level object is depth 1).
 */
#ifndef LP_JSCAN_H
#define LP_JSCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define LP_JSCAN_MAX_DEPTH 128

struct lp_jscan {
    bool has_model; /* top-level "model" key present */
    bool model_is_string;
    size_t model_off, model_len; /* byte range of the model VALUE token incl. its quotes (or the
                                    raw token if not a string; for an object/array value, the
                                    whole value) */
    char *model;                 /* heap, unescaped UTF-8 value when model_is_string, else NULL;
                                    caller frees via lp_jscan_free. May contain NUL if the client
                                    sent \u0000; check strlen(model) against model_nul_free. */
    bool model_nul_free;         /* model contains no NUL byte (always true when model == NULL) */
    bool has_stream;             /* top-level "stream" key present (any type) */
    bool stream;                 /* top-level "stream": true (last duplicate wins) */
    bool stream_is_bool;         /* the (last) "stream" value is true or false */
    bool has_stream_options_include_usage; /* top-level "stream_options": {"include_usage": true}
                                              (only direct members of that object count) */
    size_t stream_options_off, stream_options_len; /* byte range of the stream_options value, if
                                                      present (0,0 if absent) */
    const char *dup_key; /* static name of the first of model / stream / stream_options that
                            appears more than once at the top level, else NULL. Routing by one
                            duplicate while the upstream reads the other is a smuggling risk:
                            intake refuses such bodies. */
};

/* Validate that body[0..len) is exactly one well-formed JSON object (see the grammar above) and
 * record its top-level fields in *out (which is fully overwritten; no need to zero it first).
 * Keys are compared after unescaping, so "mod\u0065l" is the model key. Nested "model"/"stream"
 * keys are ignored. Duplicate top-level keys: the last one wins for every field, and dup_key
 * names the first duplicated field of ours.
 * body need not be NUL-terminated; body may be NULL only when len == 0.
 * Returns LP_OK, or LP_ERR_PARSE with *err_msg set to a static description and *err_off to the
 * byte offset of the problem (err_msg / err_off may be NULL). On error *out holds no allocation
 * (out->model is NULL), so lp_jscan_free is optional but harmless.
 * Never allocates except for out->model. */
enum lp_status lp_jscan_request(const char *body, size_t len, struct lp_jscan *out,
                                const char **err_msg, size_t *err_off);

/* Free out->model and reset *s to "nothing found". Safe on a zeroed struct and twice. */
void lp_jscan_free(struct lp_jscan *s);

/* Return a new heap body equal to `body` with only the top-level model value replaced by the
 * JSON string for new_model (escaped with lp_buf_append_json_escaped). Every other byte is
 * preserved exactly. If s->has_model is false, `"model":"<new>",` is inserted right after the
 * opening '{' (no trailing comma when the object is empty).
 * Requires: s came from a successful lp_jscan_request on exactly this body/len; new_model is a
 * NUL-terminated string. The result is NUL-terminated, *out_len (if non-NULL) receives its
 * length without the NUL, and the caller frees it with free(). Never returns NULL. */
char *lp_jscan_rewrite_model(const char *body, size_t len, const struct lp_jscan *s,
                             const char *new_model, size_t *out_len);

/* Decode the JSON string token tok[0..tok_len) (including its quotes) into a new heap string,
 * applying the same rules as the model value (lone surrogates -> U+FFFD). The token must already
 * be validated (e.g. a range reported by lp_jscan_request). *out_len (if non-NULL) receives the
 * decoded length. Returns NULL if tok is not a quoted string. Caller frees. */
char *lp_jscan_decode_string(const char *tok, size_t tok_len, size_t *out_len);

#endif
