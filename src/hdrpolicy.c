/* hdrpolicy.c - header forwarding rules (see hdrpolicy.h). Tables are tiny, so a linear scan
 * with strcasecmp is as fast as anything cleverer. */
#include "hdrpolicy.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te",         "trailer",    "trailers",           "transfer-encoding",
    "upgrade",    NULL,
};

static const char *const req_denied[] = {
    "host",
    "content-length",
    "expect",
    "content-encoding",
    "accept-encoding",
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "x-real-ip",
    "forwarded",
    "x-request-id",
    NULL,
};

static const char *const resp_denied[] = {
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "set-cookie",
    "x-request-id",
    "date",
    "server",
    NULL,
};

static bool in_list(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0)
            return true;
    return false;
}

static bool has_prefix(const char *name, const char *prefix)
{
    return strncasecmp(name, prefix, strlen(prefix)) == 0;
}

bool lp_hdr_forward_request(const char *name, enum lp_proto to)
{
    if (!name || !name[0])
        return false;
    if (in_list(name, hop_by_hop) || in_list(name, req_denied))
        return false;
    if (has_prefix(name, "proxy-") || has_prefix(name, "x-forwarded-"))
        return false;
    if (has_prefix(name, "anthropic-"))
        return to == LP_PROTO_ANTHROPIC;
    if (has_prefix(name, "openai-"))
        return to == LP_PROTO_OPENAI;
    return true;
}

bool lp_hdr_forward_response(const char *name)
{
    if (!name || !name[0])
        return false;
    return !in_list(name, hop_by_hop) && !in_list(name, resp_denied);
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool lp_hdr_name_valid(const char *name)
{
    if (!name || !name[0])
        return false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (!is_tchar(*p))
            return false;
    return true;
}

bool lp_hdr_value_valid(const char *value)
{
    if (!value)
        return false;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7F)
            return false;
    return true;
}
