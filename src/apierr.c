/* apierr.c - proxy-generated error bodies (see apierr.h). */
#include "apierr.h"

#include <stdbool.h>
#include <string.h>

#include "util/buf.h"
#include "util/utf8.h"

/* Append s as a quoted JSON string, or null when s is NULL. Valid UTF-8 runs go through
 * lp_buf_append_json_escaped; each ill-formed byte becomes \ufffd. */
static void put_str(struct lp_buf *b, const char *s)
{
    if (!s) {
        lp_buf_appends(b, "null");
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), run = 0, i = 0;
    lp_buf_appendc(b, '"');
    while (i < n) {
        size_t k = lp_utf8_seq_len(u + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        lp_buf_append_json_escaped(b, s + run, i - run);
        lp_buf_appends(b, "\\ufffd");
        run = ++i;
    }
    lp_buf_append_json_escaped(b, s + run, n - run);
    lp_buf_appendc(b, '"');
}

static const char *openai_type(int status)
{
    switch (status) {
    case 403:
        return "permission_error";
    case 408:
    case 504:
        return "timeout_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
    }
}

static const char *anthropic_type(int status)
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
    case 409:
        return "conflict_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 408:
    case 504:
        return "timeout_error";
    case 503:
    case 529:
        return "overloaded_error";
    default:
        return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
    }
}

const char *lp_apierr_default_type(enum lp_proto client, int status)
{
    return client == LP_PROTO_ANTHROPIC ? anthropic_type(status) : openai_type(status);
}

char *lp_apierr_body(enum lp_proto client, int status, const char *type, const char *code,
                     const char *message, const char *request_id, size_t *len)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    if (!type)
        type = lp_apierr_default_type(client, status);
    if (!message)
        message = "";
    if (client == LP_PROTO_ANTHROPIC) {
        lp_buf_appends(&b, "{\"type\":\"error\",\"error\":{\"type\":");
        put_str(&b, type);
        lp_buf_appends(&b, ",\"message\":");
        put_str(&b, message);
        lp_buf_appends(&b, "},\"request_id\":");
        put_str(&b, request_id);
        lp_buf_appendc(&b, '}');
    } else {
        lp_buf_appends(&b, "{\"error\":{\"message\":");
        put_str(&b, message);
        lp_buf_appends(&b, ",\"type\":");
        put_str(&b, type);
        lp_buf_appends(&b, ",\"code\":");
        put_str(&b, code);
        lp_buf_appends(&b, ",\"param\":null,\"request_id\":");
        put_str(&b, request_id);
        lp_buf_appends(&b, "}}");
    }
    return lp_buf_steal(&b, len);
}

char *lp_apierr_sse_event(enum lp_proto client, const char *type, const char *code,
                          const char *message, size_t *len)
{
    struct lp_buf b;
    lp_buf_init(&b, 0);
    if (!message)
        message = "";
    if (client == LP_PROTO_ANTHROPIC) {
        lp_buf_appends(&b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":");
        put_str(&b, type ? type : "api_error");
        lp_buf_appends(&b, ",\"message\":");
        put_str(&b, message);
        lp_buf_appends(&b, "}}\n\n");
    } else {
        lp_buf_appends(&b, "data: {\"error\":{\"message\":");
        put_str(&b, message);
        lp_buf_appends(&b, ",\"type\":");
        put_str(&b, type ? type : "server_error");
        lp_buf_appends(&b, ",\"code\":");
        put_str(&b, code);
        lp_buf_appends(&b, "}}\n\n");
    }
    return lp_buf_steal(&b, len);
}

/* ---- the class table (apierr.h) ------------------------------------------------------------- */

struct class_row {
    int status; /* 0: take the upstream status when it fits, else `fallback` */
    int fallback;
    const char *oa_type, *oa_code;
    int an_status; /* 0: as `status` */
    const char *an_type;
};

static const struct class_row class_rows[LP_CLASS__COUNT] = {
    [LP_CLASS_OK] = {502, 0, "server_error", "upstream_error", 0, "api_error"},
    [LP_CLASS_NETWORK] = {502, 0, "server_error", "upstream_unreachable", 0, "api_error"},
    [LP_CLASS_TIMEOUT] = {504, 0, "timeout_error", "upstream_timeout", 0, "timeout_error"},
    [LP_CLASS_RATE_LIMIT] = {429, 0, "rate_limit_error", "rate_limit_exceeded", 0,
                             "rate_limit_error"},
    [LP_CLASS_OVERLOADED] = {503, 0, "server_error", "overloaded", 529, "overloaded_error"},
    [LP_CLASS_SERVER] = {0, 502, "server_error", NULL, 0, "api_error"},
    [LP_CLASS_AUTH] = {401, 0, "invalid_request_error", "invalid_api_key", 0,
                       "authentication_error"},
    [LP_CLASS_QUOTA] = {429, 0, "insufficient_quota", "insufficient_quota", 402, "billing_error"},
    [LP_CLASS_CONTEXT_LENGTH] = {400, 0, "invalid_request_error", "context_length_exceeded", 0,
                                 "invalid_request_error"},
    [LP_CLASS_CONTENT_POLICY] = {400, 0, "invalid_request_error", "content_policy_violation", 0,
                                 "invalid_request_error"},
    [LP_CLASS_MODEL_NOT_FOUND] = {404, 0, "invalid_request_error", "model_not_found", 0,
                                  "not_found_error"},
    [LP_CLASS_CLIENT] = {0, 400, "invalid_request_error", NULL, 0, NULL},
    [LP_CLASS_UNSUPPORTED] = {404, 0, "invalid_request_error", "unsupported_endpoint", 0,
                              "not_found_error"},
    [LP_CLASS_LOCAL] = {503, 0, "server_error", "local_resource_exhausted", 0, "overloaded_error"},
};

struct lp_class_reply lp_apierr_for_class(enum lp_proto client, enum lp_err_class cls,
                                          int upstream_status)
{
    if ((int)cls < 0 || cls >= LP_CLASS__COUNT)
        cls = LP_CLASS_SERVER;
    const struct class_row *r = &class_rows[cls];
    int status = r->status;
    if (status == 0) {
        /* Server and client errors keep the upstream's own status when it is of their kind. */
        bool fits = cls == LP_CLASS_SERVER ? upstream_status >= 500 && upstream_status <= 599
                                           : upstream_status >= 400 && upstream_status <= 499;
        status = fits ? upstream_status : r->fallback;
    }
    struct lp_class_reply out = {status, r->oa_type, r->oa_code};
    if (client == LP_PROTO_ANTHROPIC) {
        if (r->an_status)
            out.status = r->an_status;
        out.type = r->an_type ? r->an_type : anthropic_type(out.status);
        /* 401 vs 403 is the upstream's distinction; keep it. */
        if (cls == LP_CLASS_AUTH && upstream_status == 403) {
            out.status = 403;
            out.type = "permission_error";
        }
        out.code = NULL;
    } else if (cls == LP_CLASS_AUTH && upstream_status == 403) {
        out.status = 403;
        out.type = "permission_error";
    }
    return out;
}
