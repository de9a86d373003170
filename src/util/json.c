#include "util/json.h"

#include <string.h>

struct json_object *lp_json_parse(const char *s, size_t len, const char **err)
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
