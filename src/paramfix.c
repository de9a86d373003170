/* paramfix.c - per-backend request parameter fixes (see paramfix.h). */
#include "paramfix.h"

#include <string.h>

#include "util/alloc.h"
#include "util/json.h"

bool lp_paramfix_wanted(const struct lp_backend *b)
{
    return b && ((b->max_tokens_param && b->max_tokens_param[0]) || b->n_drop_params > 0);
}

/* Rename the output-limit member to `want`. Returns true when the body changed. */
static bool fix_max_tokens(struct json_object *o, const char *want)
{
    const char *other = strcmp(want, "max_tokens") == 0 ? "max_completion_tokens" : "max_tokens";
    struct json_object *v = lp_json_get(o, other);
    if (!v)
        return false;
    if (!lp_json_get(o, want))
        lp_json_set(o, want, json_object_get(v));
    json_object_object_del(o, other);
    return true;
}

char *lp_paramfix_apply(const struct lp_backend *b, const char *body, size_t len, size_t *out_len)
{
    if (!lp_paramfix_wanted(b) || !body)
        return NULL;
    struct json_object *o = lp_json_parse(body, len, NULL);
    if (!lp_json_is_obj(o)) {
        json_object_put(o);
        return NULL;
    }
    bool changed = false;
    if (b->max_tokens_param && b->max_tokens_param[0])
        changed |= fix_max_tokens(o, b->max_tokens_param);
    for (size_t i = 0; i < b->n_drop_params; i++) {
        if (lp_json_get(o, b->drop_params[i])) {
            json_object_object_del(o, b->drop_params[i]);
            changed = true;
        }
    }
    char *r = NULL;
    if (changed) {
        size_t n = 0;
        const char *s = lp_json_dump(o, &n);
        r = lp_xstrndup(s, n);
        if (out_len)
            *out_len = n;
    }
    json_object_put(o);
    return r;
}
