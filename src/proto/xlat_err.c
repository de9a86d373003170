/* proto/xlat_err.c - upstream error bodies -> the client protocol's error shape.
 *
 * An upstream error is reduced to (status, class, message); the class is one of Anthropic's
 * error types plus "context" (the prompt does not fit the context window), which each protocol
 * spells in the way its clients recognise. See docs/translation.md "Errors".
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/xlat.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/json.h"

#define MAX_MESSAGE 1024 /* longer upstream messages (HTML pages, dumps) are cut */
#define CTX "context"    /* pseudo class: context window exceeded */

struct uperr {
    const char *type; /* Anthropic-style class (static string) */
    char *message;    /* heap */
};

static char *clean_text(const char *s, size_t n);

static const char *type_from_status(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 408:
    case 504:
        return "timeout_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static bool icontains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; hay && *hay; hay++)
        if (!strncasecmp(hay, needle, n))
            return true;
    return false;
}

static bool is_context_overflow(const char *msg, const char *code, const char *type)
{
    static const char *pats[] = {"prompt is too long",
                                 "context_length_exceeded",
                                 "maximum context length",
                                 "context window",
                                 "context length",
                                 "input is too long",
                                 "too many tokens",
                                 "exceeds the model's context",
                                 "exceeds the maximum number of tokens"};
    if ((code && !strcmp(code, "context_length_exceeded")) ||
        (type && !strcmp(type, "context_length_exceeded")))
        return true;
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        if (icontains(msg, pats[i]))
            return true;
    return false;
}

/* Refine the status-derived class with what the body's type/code say. */
static const char *refine(const char *base, const char *type, const char *code)
{
    static const char *anthropic[] = {
        "invalid_request_error", "authentication_error", "billing_error",
        "permission_error",      "not_found_error",      "request_too_large",
        "rate_limit_error",      "timeout_error",        "api_error",
        "overloaded_error"};
    for (size_t i = 0; type && i < sizeof anthropic / sizeof anthropic[0]; i++)
        if (!strcmp(type, anthropic[i]))
            return strcmp(type, "invalid_request_error") ? anthropic[i] : base;
    if (icontains(type, "insufficient_quota") || icontains(code, "insufficient_quota"))
        return "billing_error";
    if (icontains(type, "overloaded") || icontains(code, "overloaded"))
        return "overloaded_error";
    if (icontains(code, "rate_limit"))
        return "rate_limit_error";
    if (icontains(code, "invalid_api_key"))
        return "authentication_error";
    /* Google's gRPC status names (error.status) */
    if (icontains(type, "unauthenticated") || icontains(type, "api_key_invalid"))
        return "authentication_error";
    if (icontains(type, "permission_denied"))
        return "permission_error";
    if (icontains(type, "resource_exhausted"))
        return "rate_limit_error";
    if (icontains(type, "unavailable"))
        return "overloaded_error";
    if (icontains(type, "deadline_exceeded") || icontains(type, "timeout"))
        return "timeout_error";
    return base;
}

/* The <title> of an HTML page (else its first <h1>), whitespace collapsed, or NULL. */
static char *html_title(const char *body, size_t len)
{
    static const char *const tags[][2] = {{"<title", "</title"}, {"<h1", "</h1"}};
    char *s = lp_xstrndup(body, len > 65536 ? 65536 : len);
    char *r = NULL;
    for (size_t i = 0; i < 2 && !r; i++) {
        char *o = strcasestr(s, tags[i][0]);
        char *gt = o ? strchr(o, '>') : NULL;
        char *c = gt ? strcasestr(gt, tags[i][1]) : NULL;
        if (!c)
            continue;
        char *t = clean_text(gt + 1, (size_t)(c - gt - 1));
        /* collapse runs of spaces left by newlines */
        char *w = t;
        for (char *q = t; *q; q++)
            if (!(*q == ' ' && w > t && w[-1] == ' '))
                *w++ = *q;
        *w = '\0';
        if (*t)
            r = t;
        else
            free(t);
    }
    free(s);
    return r;
}

static char *clean_text(const char *s, size_t n)
{
    if (n > MAX_MESSAGE)
        n = MAX_MESSAGE;
    char *r = lp_xstrndup(s, n);
    for (char *p = r; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    size_t a = strspn(r, " "), e = strlen(r);
    while (e > a && r[e - 1] == ' ')
        e--;
    memmove(r, r + a, e - a);
    r[e - a] = '\0';
    return r;
}

static const char *code_str(struct json_object *c, char *buf, size_t cap)
{
    if (lp_json_is_str(c))
        return lp_json_str(c);
    if (c && json_object_is_type(c, json_type_int)) {
        snprintf(buf, cap, "%lld", (long long)json_object_get_int64(c));
        return buf;
    }
    return NULL;
}

static void parse_upstream(int status, const char *body, size_t len, struct uperr *u)
{
    struct json_object *root = lp_json_parse(body ? body : "", body ? len : 0, NULL);
    struct json_object *e = lp_json_get(root, "error");
    struct json_object *eo = lp_json_is_obj(e) ? e : root;
    const char *msg = lp_json_is_str(e) ? lp_json_str(e) : lp_json_get_str(eo, "message");
    if (!msg)
        msg = lp_json_get_str(root, "detail");
    char cbuf[32];
    const char *type = lp_json_get_str(eo, "type");
    const char *code = code_str(lp_json_get(eo, "code"), cbuf, sizeof cbuf);
    if (!type) /* Google: {"error":{"code":400,"message":..,"status":"INVALID_ARGUMENT"}} */
        type = body && memmem(body, len, "API_KEY_INVALID", 15) ? "API_KEY_INVALID"
                                                                : lp_json_get_str(eo, "status");
    if (msg)
        u->message = clean_text(msg, strlen(msg));
    else if (!root && body && len > 0) {
        char *t = html_title(body, len);
        if (!t)
            t = clean_text(body, len);
        u->message = lp_xasprintf("upstream returned HTTP %d: %s", status, t);
        free(t);
    }
    if (!u->message || !*u->message) {
        free(u->message);
        u->message = lp_xasprintf("upstream returned HTTP %d", status);
    }
    u->type = refine(type_from_status(status), type, code);
    if (status >= 400 && status < 500 && is_context_overflow(u->message, code, type))
        u->type = CTX;
    json_object_put(root);
}

/* The number following `after` in s, or -1. */
static long long num_after(const char *s, const char *after)
{
    for (; s && *s; s++) {
        if (strncasecmp(s, after, strlen(after)) != 0)
            continue;
        const char *p = s + strlen(after);
        while (*p == ' ' || *p == ':' || *p == '(')
            p++;
        if (isdigit((unsigned char)*p))
            return strtoll(p, NULL, 10);
    }
    return -1;
}

static void ctx_numbers(const char *m, long long *used, long long *max)
{
    *used = num_after(m, "prompt is too long");
    *max = num_after(m, "> ");
    if (*max < 0)
        *max = num_after(m, "maximum context length is");
    if (*used < 0)
        *used = num_after(m, "resulted in");
    if (*used < 0)
        *used = num_after(m, "requested");
    if (*used < 0) /* Gemini: "The input token count (N) exceeds the maximum number of tokens
                    * allowed (M)." */
        *used = num_after(m, "input token count");
    if (*max < 0)
        *max = num_after(m, "tokens allowed");
}

static char *ctx_message(enum lp_proto to, const char *orig)
{
    long long used, max;
    ctx_numbers(orig, &used, &max);
    if (to == LP_PROTO_ANTHROPIC) {
        if (icontains(orig, "prompt is too long"))
            return lp_xstrdup(orig);
        if (used >= 0 && max >= 0)
            return lp_xasprintf("prompt is too long: %lld tokens > %lld maximum", used, max);
        return lp_xasprintf("prompt is too long: %s", orig);
    }
    if (icontains(orig, "maximum context length"))
        return lp_xstrdup(orig);
    if (used >= 0 && max >= 0)
        return lp_xasprintf("This model's maximum context length is %lld tokens. However, your "
                            "messages resulted in %lld tokens. Please reduce the length of the "
                            "messages.",
                            max, used);
    return lp_xasprintf("This model's maximum context length was exceeded: %s", orig);
}

/* Anthropic class -> OpenAI (type, code). */
static void openai_names(const char *cls, const char **type, const char **code)
{
    static const struct {
        const char *cls, *type, *code;
    } map[] = {
        {CTX, "invalid_request_error", "context_length_exceeded"},
        {"authentication_error", "invalid_request_error", "invalid_api_key"},
        {"billing_error", "insufficient_quota", "insufficient_quota"},
        {"permission_error", "permission_error", "permission_denied"},
        {"not_found_error", "invalid_request_error", "not_found"},
        {"request_too_large", "invalid_request_error", "request_too_large"},
        {"rate_limit_error", "rate_limit_error", "rate_limit_exceeded"},
        {"timeout_error", "timeout_error", "timeout"},
        {"overloaded_error", "server_error", "overloaded"},
        {"api_error", "server_error", NULL},
    };
    *type = "invalid_request_error";
    *code = NULL;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(cls, map[i].cls)) {
            *type = map[i].type;
            *code = map[i].code;
        }
}

static char *render(enum lp_proto p, const char *cls, const char *message, size_t *out_len)
{
    struct json_object *root = json_object_new_object();
    struct json_object *e = json_object_new_object();
    if (p == LP_PROTO_ANTHROPIC) {
        lp_json_set_str(root, "type", "error");
        lp_json_set_str(e, "type", !strcmp(cls, CTX) ? "invalid_request_error" : cls);
        lp_json_set_str(e, "message", message);
    } else {
        const char *type, *code;
        openai_names(cls, &type, &code);
        lp_json_set_str(e, "message", message);
        lp_json_set_str(e, "type", type);
        lp_json_set(e, "param", !strcmp(cls, CTX) ? json_object_new_string("messages") : NULL);
        lp_json_set(e, "code", code ? json_object_new_string(code) : NULL);
    }
    lp_json_set(root, "error", e);
    char *r = lp_xlat_dump(root, out_len);
    json_object_put(root);
    return r;
}

/* The body is already a well-formed error of protocol p. */
static bool has_shape(enum lp_proto p, const char *body, size_t len)
{
    struct json_object *root = body ? lp_json_parse(body, len, NULL) : NULL;
    struct json_object *e = lp_json_get_obj(root, "error");
    bool ok = lp_json_get_str(e, "message") != NULL;
    if (p == LP_PROTO_ANTHROPIC) {
        const char *t = lp_json_get_str(root, "type");
        ok = ok && t && !strcmp(t, "error") && lp_json_get_str(e, "type");
    }
    json_object_put(root);
    return ok;
}

char *lp_xlat_error(enum lp_proto from, enum lp_proto to, int status, const char *body, size_t len,
                    size_t *out_len)
{
    if (from == to && has_shape(to, body, len))
        return NULL;
    struct uperr u = {0};
    parse_upstream(status, body, len, &u);
    char *msg = !strcmp(u.type, CTX) ? ctx_message(to, u.message) : lp_xstrdup(u.message);
    char *r = render(to, u.type, msg, out_len);
    free(msg);
    free(u.message);
    return r;
}

char *lp_xlat_error_body(enum lp_proto p, int status, const char *type, const char *message,
                         size_t *out_len)
{
    return render(p, type && *type ? type : type_from_status(status), message ? message : "error",
                  out_len);
}

const char *lp_xlat_error_class(const char *type)
{
    if (type && !strcmp(type, "invalid_request_error"))
        return "invalid_request_error";
    return refine("api_error", type, type);
}

void lp_xlat_error_names(enum lp_proto to, const char *type, const char **out_type,
                         const char **out_code)
{
    const char *cls = lp_xlat_error_class(type);
    if (to == LP_PROTO_ANTHROPIC) {
        *out_type = cls;
        *out_code = NULL;
        return;
    }
    openai_names(cls, out_type, out_code);
}
