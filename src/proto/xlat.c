/* proto/xlat.c - request dispatch and the helpers shared by the translators. */
#include "proto/xlat.h"

#include "proto/google.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

void lp_xlat_fail(struct lp_xlat_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    err->status = 400;
    snprintf(err->type, sizeof err->type, "invalid_request_error");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

void lp_xlat_note_drop(struct lp_xlat_notes *notes, const char *name)
{
    if (!notes || !name || !*name)
        return;
    char *d = notes->dropped;
    size_t len = strlen(d), n = strlen(name);
    if (len >= 4 && !strcmp(d + len - 4, ",..."))
        return;                    /* already full */
    for (const char *p = d; *p;) { /* already listed? */
        size_t l = strcspn(p, ",");
        if (l == n && !strncmp(p, name, n))
            return;
        p += l + (p[l] == ',');
    }
    if (len + (len ? 1 : 0) + n + 4 >= sizeof notes->dropped) {
        if (len + 4 < sizeof notes->dropped)
            memcpy(d + len, ",...", 5);
        return;
    }
    if (len)
        d[len++] = ',';
    memcpy(d + len, name, n + 1);
}

bool lp_xlat_unsupported(const struct lp_xlat_opts *o, struct lp_xlat_err *err, const char *name,
                         const char *why)
{
    if (o && o->drop_unsupported) {
        lp_log_debug(o->request_id, "xlat: %s dropped (%s)", name, why);
        lp_xlat_note_drop(o->notes, name);
        return true;
    }
    lp_xlat_fail(err, "%s: %s; the route's translation.unsupported: drop would drop it", name, why);
    return false;
}

char *lp_xlat_dump(struct json_object *obj, size_t *out_len)
{
    size_t n = 0;
    const char *s = lp_json_dump(obj, &n);
    char *r = lp_xstrndup(s, n);
    if (out_len)
        *out_len = n;
    return r;
}

struct json_object *lp_xlat_ref(struct json_object *v)
{
    return v ? json_object_get(v) : NULL;
}

struct json_object *lp_xlat_text_block(const char *s)
{
    struct json_object *b = json_object_new_object();
    lp_json_set_str(b, "type", "text");
    lp_json_set_str(b, "text", s);
    return b;
}

/* Text parts of both protocols: OpenAI text/refusal/input_text/output_text, Anthropic text. */
static const char *part_text(struct json_object *part)
{
    const char *t = lp_json_get_str(part, "type");
    if (!t)
        return NULL;
    if (!strcmp(t, "text") || !strcmp(t, "input_text") || !strcmp(t, "output_text"))
        return lp_json_get_str(part, "text");
    if (!strcmp(t, "refusal"))
        return lp_json_get_str(part, "refusal");
    return NULL;
}

char *lp_xlat_text_of(struct json_object *content, const char *sep)
{
    if (lp_json_is_str(content))
        return lp_xstrdup(lp_json_str(content));
    if (!lp_json_is_arr(content))
        return NULL;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    bool any = false;
    for (size_t i = 0; i < lp_json_arr_len(content); i++) {
        const char *t = part_text(lp_json_arr_at(content, i));
        if (!t)
            continue;
        if (any)
            lp_buf_appends(&b, sep);
        lp_buf_appends(&b, t);
        any = true;
    }
    if (!any) {
        lp_buf_free(&b);
        return NULL;
    }
    return lp_buf_steal(&b, NULL);
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

char *lp_xlat_make_id(const char *prefix, const char *id, const char *seed, size_t seed_len)
{
    static const char *known[] = {"chatcmpl-", "msg_"};
    if (id && *id) {
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
            size_t n = strlen(known[i]);
            if (!strncmp(id, known[i], n) && id[n]) {
                id += n;
                break;
            }
        }
        return lp_xasprintf("%s%s", prefix, id);
    }
    return lp_xasprintf("%s%016llx", prefix,
                        (unsigned long long)fnv1a(seed ? seed : "", seed ? seed_len : 0));
}

char *lp_xlat_request(enum lp_proto from, enum lp_proto to, const char *body, size_t len,
                      const struct lp_xlat_opts *o, size_t *out_len, struct lp_xlat_err *err)
{
    static const struct lp_xlat_opts dflt = {0};
    char *res = NULL;
    struct json_object *out = NULL;
    const char *perr = NULL;
    struct json_object *in = lp_json_parse(body ? body : "", body ? len : 0, &perr);
    if (!o)
        o = &dflt;
    if (!lp_json_is_obj(in)) {
        lp_xlat_fail(err, "request body must be a JSON object%s%s", perr ? ": " : "",
                     perr ? perr : "");
        goto out;
    }
    if (from == to) {
        lp_xlat_fail(err, "internal: no translation needed between identical protocols");
        goto out;
    }
    if (to == LP_PROTO_GOOGLE) {
        /* Google talks OpenAI on its client side: an Anthropic request goes through a2o first. */
        struct json_object *oa =
            from == LP_PROTO_ANTHROPIC ? lp_xlat_req_a2o(in, o, err) : lp_xlat_ref(in);
        out = oa ? lp_google_req_from_openai(oa, o, err) : NULL;
        json_object_put(oa);
    } else if (from == LP_PROTO_GOOGLE) {
        lp_xlat_fail(err, "internal: Google is not a client protocol");
    } else {
        out = from == LP_PROTO_OPENAI ? lp_xlat_req_o2a(in, o, err) : lp_xlat_req_a2o(in, o, err);
    }
    if (out)
        res = lp_xlat_dump(out, out_len);
out:
    json_object_put(out);
    json_object_put(in);
    return res;
}

#define EST_MEDIA_TOKENS 1600 /* an image or a document page, roughly */
#define EST_PER_MESSAGE 4

/* Characters (UTF-8 code points) of the string values under v; media blocks count flat. */
static int64_t est_chars(struct json_object *v, int64_t *media, int depth)
{
    if (depth > 64)
        return 0;
    int64_t n = 0;
    if (lp_json_is_str(v)) {
        for (const unsigned char *p = (const unsigned char *)lp_json_str(v); *p; p++)
            n += (*p & 0xC0) != 0x80;
        return n;
    }
    if (lp_json_is_arr(v)) {
        for (size_t i = 0; i < lp_json_arr_len(v); i++)
            n += est_chars(lp_json_arr_at(v, i), media, depth + 1);
        return n;
    }
    if (!lp_json_is_obj(v))
        return 0;
    const char *t = lp_json_get_str(v, "type");
    if (t && (!strcmp(t, "image") || !strcmp(t, "document"))) {
        (*media)++;
        return 0;
    }
    json_object_object_foreach(v, k, val)
    {
        (void)k;
        n += est_chars(val, media, depth + 1);
    }
    return n;
}

int64_t lp_xlat_estimate_tokens(const char *body, size_t len)
{
    struct json_object *in = lp_json_parse(body ? body : "", body ? len : 0, NULL);
    if (!lp_json_is_obj(in)) {
        json_object_put(in);
        return -1;
    }
    int64_t media = 0, chars = 0;
    static const char *const keys[] = {"system", "messages", "tools"};
    for (size_t i = 0; i < 3; i++)
        chars += est_chars(lp_json_get(in, keys[i]), &media, 0);
    int64_t n = (chars + 3) / 4 + media * EST_MEDIA_TOKENS +
                (int64_t)lp_json_arr_len(lp_json_get_arr(in, "messages")) * EST_PER_MESSAGE;
    json_object_put(in);
    return n > 0 ? n : 1;
}

int64_t lp_xlat_model_max_tokens(const char *model)
{
    static const struct {
        const char *part;
        int64_t max;
    } table[] = {
        {"opus-4-5", 64000},   {"opus-4", 32000}, {"sonnet-4", 64000}, {"haiku-4", 64000},
        {"3-7-sonnet", 64000}, {"3-5-", 8192},    {"claude-3", 4096},
    };
    for (size_t i = 0; model && i < sizeof table / sizeof table[0]; i++)
        if (strstr(model, table[i].part))
            return table[i].max;
    return LP_XLAT_DEFAULT_MAX_TOKENS;
}
