#include "util/json.h"

#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"

/* ---- integers beyond 64 bits --------------------------------------------------------------
 * json-c clamps an integer literal outside [INT64_MIN, UINT64_MAX] to the nearest bound, so a
 * tool argument like 123456789012345678901234567890 would leave the proxy as
 * 18446744073709551615. Doubles, however, keep their source text (json_object_new_double_s).
 * So before parsing, each such literal gets a marker suffix that makes it a double (the marker
 * is chosen so that it occurs nowhere in the input); after parsing, every double whose text
 * ends in the marker gets the original digits back as its serialised form. Bodies without a run
 * of 19+ digits (nearly all) skip all of this after one cheap pass. */

#define BIG_MIN_DIGITS 19 /* INT64_MAX has 19 digits, UINT64_MAX 20 */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A run of BIG_MIN_DIGITS (>= 10) digits covers at least one index that is a multiple of 10:
 * probe those and measure the run around a digit found there (a tenth of the bytes looked at
 * on ordinary bodies). */
static bool has_long_digit_run(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i += 10) {
        if (!is_digit(s[i]))
            continue;
        size_t a = i, e = i + 1;
        while (a > 0 && i - a < BIG_MIN_DIGITS && is_digit(s[a - 1]))
            a--;
        while (e < len && e - a < BIG_MIN_DIGITS && is_digit(s[e]))
            e++;
        if (e - a >= BIG_MIN_DIGITS)
            return true;
    }
    return false;
}

/* Digits d[0..n) (no leading zeros) exceed the limit for this sign. */
static bool beyond_64_bits(const char *d, size_t n, bool neg)
{
    const char *lim = neg ? "9223372036854775808" : "18446744073709551615";
    size_t ln = strlen(lim);
    return n > ln || (n == ln && memcmp(d, lim, n) > 0);
}

static const char *pick_marker(const char *s, size_t len)
{
    static const char *const markers[] = {".0e0", ".00e0", ".000e0", ".0000e0", ".00000e0"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        if (!memmem(s, len, markers[i], strlen(markers[i])))
            return markers[i];
    return NULL;
}

/* A copy of s with the marker after each integer literal beyond 64 bits (outside strings), or
 * NULL when there is none. */
static char *mark_big_ints(const char *s, size_t len, const char *marker, size_t *out_len)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    size_t copied = 0;
    bool in_str = false, any = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"') {
            in_str = true;
            continue;
        }
        if (!is_digit(c) && c != '-')
            continue;
        size_t d0 = c == '-' ? i + 1 : i, e = d0;
        while (e < len && is_digit(s[e]))
            e++;
        bool integer = e >= len || (s[e] != '.' && s[e] != 'e' && s[e] != 'E');
        if (integer && e > d0 && s[d0] != '0' && beyond_64_bits(s + d0, e - d0, c == '-')) {
            lp_buf_append(&b, s + copied, e - copied);
            lp_buf_appends(&b, marker);
            copied = e;
            any = true;
        }
        i = e > i ? e - 1 : i;
    }
    if (!any) {
        lp_buf_free(&b);
        return NULL;
    }
    lp_buf_append(&b, s + copied, len - copied);
    return lp_buf_steal(&b, out_len);
}

static void restore_big_ints(struct json_object *o, const char *marker, size_t mlen)
{
    switch (json_object_get_type(o)) {
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            (void)k;
            restore_big_ints(v, marker, mlen);
        }
        break;
    }
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            restore_big_ints(json_object_array_get_idx(o, i), marker, mlen);
        break;
    case json_type_double: {
        const char *t = json_object_get_string(o);
        size_t n = t ? strlen(t) : 0;
        if (n > mlen && memcmp(t + n - mlen, marker, mlen) == 0) {
            char *digits = lp_xstrndup(t, n - mlen);
            json_object_set_serializer(o, json_object_userdata_to_json_string, digits,
                                       json_object_free_userdata);
        }
        break;
    }
    default:
        break;
    }
}

static struct json_object *parse_plain(const char *s, size_t len, const char **err);

struct json_object *lp_json_parse(const char *s, size_t len, const char **err)
{
    if (!s || len < BIG_MIN_DIGITS || !has_long_digit_run(s, len))
        return parse_plain(s, len, err);
    const char *marker = pick_marker(s, len);
    size_t mlen = 0;
    char *marked = marker ? mark_big_ints(s, len, marker, &mlen) : NULL;
    if (!marked)
        return parse_plain(s, len, err);
    struct json_object *o = parse_plain(marked, mlen, err);
    free(marked);
    if (o)
        restore_big_ints(o, marker, strlen(marker));
    return o;
}

static struct json_object *parse_plain(const char *s, size_t len, const char **err)
{
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (!tok) {
        if (err)
            *err = "out of memory";
        return NULL;
    }
    struct json_object *obj = NULL;
    if (len > (size_t)INT32_MAX) {
        if (err)
            *err = "document too large";
        goto out;
    }
    obj = json_tokener_parse_ex(tok, s, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (jerr == json_tokener_continue) {
        /* Incomplete document: give the tokener the end-of-input signal. */
        if (obj) {
            json_object_put(obj);
            obj = NULL;
        }
        if (err)
            *err = "unexpected end of JSON input";
        goto out;
    }
    if (jerr != json_tokener_success) {
        if (obj) {
            json_object_put(obj);
            obj = NULL;
        }
        if (err)
            *err = json_tokener_error_desc(jerr);
        goto out;
    }
    /* Anything but whitespace after the value is an error. */
    size_t off = json_tokener_get_parse_end(tok);
    for (; off < len; off++) {
        char c = s[off];
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
            json_object_put(obj);
            obj = NULL;
            if (err)
                *err = "trailing data after JSON value";
            goto out;
        }
    }
    if (!obj && err)
        *err = "empty document";
out:
    json_tokener_free(tok);
    return obj;
}

struct json_object *lp_json_get(struct json_object *obj, const char *key)
{
    struct json_object *v = NULL;
    if (!obj || !json_object_is_type(obj, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(obj, key, &v))
        return NULL;
    return v;
}

struct json_object *lp_json_get_obj(struct json_object *obj, const char *key)
{
    struct json_object *v = lp_json_get(obj, key);
    return v && json_object_is_type(v, json_type_object) ? v : NULL;
}

struct json_object *lp_json_get_arr(struct json_object *obj, const char *key)
{
    struct json_object *v = lp_json_get(obj, key);
    return v && json_object_is_type(v, json_type_array) ? v : NULL;
}

const char *lp_json_get_str(struct json_object *obj, const char *key)
{
    return lp_json_str(lp_json_get(obj, key));
}

bool lp_json_get_int64(struct json_object *obj, const char *key, int64_t *out)
{
    struct json_object *v = lp_json_get(obj, key);
    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    *out = json_object_get_int64(v);
    return true;
}

bool lp_json_get_double(struct json_object *obj, const char *key, double *out)
{
    struct json_object *v = lp_json_get(obj, key);
    if (!v || !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    *out = json_object_get_double(v);
    return true;
}

bool lp_json_get_bool(struct json_object *obj, const char *key, bool dflt)
{
    struct json_object *v = lp_json_get(obj, key);
    if (!v || !json_object_is_type(v, json_type_boolean))
        return dflt;
    return json_object_get_boolean(v);
}

bool lp_json_is_obj(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_object);
}

bool lp_json_is_arr(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_array);
}

bool lp_json_is_str(struct json_object *v)
{
    return v && json_object_is_type(v, json_type_string);
}

size_t lp_json_arr_len(struct json_object *v)
{
    return lp_json_is_arr(v) ? json_object_array_length(v) : 0;
}

struct json_object *lp_json_arr_at(struct json_object *v, size_t i)
{
    if (!lp_json_is_arr(v) || i >= json_object_array_length(v))
        return NULL;
    return json_object_array_get_idx(v, i);
}

const char *lp_json_str(struct json_object *v)
{
    return lp_json_is_str(v) ? json_object_get_string(v) : NULL;
}

const char *lp_json_dump(struct json_object *obj, size_t *len)
{
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (len)
        *len = n;
    return s;
}

void lp_json_set(struct json_object *obj, const char *key, struct json_object *val)
{
    json_object_object_add(obj, key, val);
}

void lp_json_set_str(struct json_object *obj, const char *key, const char *s)
{
    json_object_object_add(obj, key, json_object_new_string(s ? s : ""));
}

void lp_json_set_int(struct json_object *obj, const char *key, int64_t v)
{
    json_object_object_add(obj, key, json_object_new_int64(v));
}

void lp_json_set_bool(struct json_object *obj, const char *key, bool v)
{
    json_object_object_add(obj, key, json_object_new_boolean(v));
}
