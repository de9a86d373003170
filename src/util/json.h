/* util/json.h - thin, type-checked helpers over json-c.
 *
 * json-c aborts on some type misuse (array calls on non-arrays), so code outside this file never
 * calls json_object_array_* or json_object_get_string on a value it has not type-checked. These
 * helpers return NULL / a default on a missing key or a wrong type instead.
 */
#ifndef LP_UTIL_JSON_H
#define LP_UTIL_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse exactly `len` bytes as one JSON value (trailing whitespace allowed). Returns a new
 * reference the caller must json_object_put(), or NULL on a parse error (with *err set to a
 * static description when err is non-NULL). Depth is capped at 64. */
struct json_object *lp_json_parse(const char *s, size_t len, const char **err);

/* Member `key` of obj if obj is an object and the member has the given type, else NULL.
 * The returned reference is borrowed from obj. */
struct json_object *lp_json_get(struct json_object *obj, const char *key);
struct json_object *lp_json_get_obj(struct json_object *obj, const char *key);
struct json_object *lp_json_get_arr(struct json_object *obj, const char *key);
/* The string member, or NULL when missing or not a string. Borrowed. */
const char *lp_json_get_str(struct json_object *obj, const char *key);
/* Number members: true and *out set when present and numeric (int or double). */
bool lp_json_get_int64(struct json_object *obj, const char *key, int64_t *out);
bool lp_json_get_double(struct json_object *obj, const char *key, double *out);
/* Boolean member, or `dflt` when missing or not a boolean. */
bool lp_json_get_bool(struct json_object *obj, const char *key, bool dflt);

bool lp_json_is_obj(struct json_object *v);
bool lp_json_is_arr(struct json_object *v);
bool lp_json_is_str(struct json_object *v);
/* Array length, 0 if v is not an array. */
size_t lp_json_arr_len(struct json_object *v);
/* Element i of an array, NULL when v is not an array or i is out of range. Borrowed. */
struct json_object *lp_json_arr_at(struct json_object *v, size_t i);
/* String value of v, or NULL if v is not a string. Borrowed. */
const char *lp_json_str(struct json_object *v);

/* Serialise compactly (no spaces, slashes not escaped). The string is owned by obj. */
const char *lp_json_dump(struct json_object *obj, size_t *len);

/* Convenience constructors for building objects: each takes ownership of `val`. */
void lp_json_set(struct json_object *obj, const char *key, struct json_object *val);
void lp_json_set_str(struct json_object *obj, const char *key, const char *s);
void lp_json_set_int(struct json_object *obj, const char *key, int64_t v);
void lp_json_set_bool(struct json_object *obj, const char *key, bool v);

#endif
