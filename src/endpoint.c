/* endpoint.c - the endpoint table, path safety and query filtering (see endpoint.h). */
#include "endpoint.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"

static const struct lp_endpoint_desc table[LP_EP__COUNT] = {
    [LP_EP_NONE] = {LP_EP_NONE, NULL, "none", LP_PROTO_OPENAI, false, false},
    [LP_EP_CHAT] = {LP_EP_CHAT, "/v1/chat/completions", "chat", LP_PROTO_OPENAI, true, true},
    [LP_EP_MESSAGES] = {LP_EP_MESSAGES, "/v1/messages", "messages", LP_PROTO_ANTHROPIC, true, true},
    [LP_EP_COUNT_TOKENS] = {LP_EP_COUNT_TOKENS, "/v1/messages/count_tokens", "count_tokens",
                            LP_PROTO_ANTHROPIC, true, false},
    [LP_EP_RESPONSES] = {LP_EP_RESPONSES, "/v1/responses", "responses", LP_PROTO_OPENAI, true,
                         false},
    [LP_EP_RESPONSES_COMPACT] = {LP_EP_RESPONSES_COMPACT, "/v1/responses/compact",
                                 "responses_compact", LP_PROTO_OPENAI, true, false},
    [LP_EP_COMPLETIONS] = {LP_EP_COMPLETIONS, "/v1/completions", "completions", LP_PROTO_OPENAI,
                           true, false},
    [LP_EP_EMBEDDINGS] = {LP_EP_EMBEDDINGS, "/v1/embeddings", "embeddings", LP_PROTO_OPENAI, true,
                          false},
    [LP_EP_MODERATIONS] = {LP_EP_MODERATIONS, "/v1/moderations", "moderations", LP_PROTO_OPENAI,
                           true, false},
    [LP_EP_IMAGES] = {LP_EP_IMAGES, "/v1/images/generations", "images", LP_PROTO_OPENAI, true,
                      false},
    [LP_EP_AUDIO_SPEECH] = {LP_EP_AUDIO_SPEECH, "/v1/audio/speech", "audio_speech", LP_PROTO_OPENAI,
                            true, false},
    [LP_EP_PASSTHROUGH] = {LP_EP_PASSTHROUGH, NULL, "passthrough", LP_PROTO_OPENAI, true, false},
    [LP_EP_MODELS] = {LP_EP_MODELS, "/v1/models", "models", LP_PROTO_OPENAI, false, false},
};

/* The reference's paths without /v1 (seed-system.md §3): aliases of the /v1 forms. */
static const struct {
    const char *path;
    enum lp_endpoint ep;
} legacy[] = {
    {"/chat/completions", LP_EP_CHAT}, {"/completions", LP_EP_COMPLETIONS},
    {"/embeddings", LP_EP_EMBEDDINGS}, {"/messages", LP_EP_MESSAGES},
    {"/models", LP_EP_MODELS},
};

const struct lp_endpoint_desc *lp_endpoint_desc(enum lp_endpoint ep)
{
    if ((int)ep < 0 || ep >= LP_EP__COUNT)
        return &table[LP_EP_NONE];
    return &table[ep];
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte a path position stands for: a raw byte, or the value of a %XX escape. *step is the
 * number of input bytes it takes; returns -1 for a malformed escape. */
static int path_byte(const char *p, size_t *step, bool *encoded)
{
    if (p[0] != '%') {
        *step = 1;
        *encoded = false;
        return (unsigned char)p[0];
    }
    int hi = hexval((unsigned char)p[1]);
    int lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);
    if (hi < 0 || lo < 0)
        return -1;
    *step = 3;
    *encoded = true;
    return hi * 16 + lo;
}

bool lp_endpoint_path_safe(const char *path, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!path || path[0] != '/') {
        *why = "the request path must start with '/'";
        return false;
    }
    /* Walk segment by segment; a segment made only of decoded '.' bytes (1 or 2) is a
     * dot-segment whatever its spelling. */
    const char *p = path;
    while (*p) {
        p++; /* past '/' */
        size_t dots = 0, bytes = 0;
        while (*p && *p != '/') {
            size_t step;
            bool enc;
            int c = path_byte(p, &step, &enc);
            if (c < 0) {
                *why = "malformed percent-escape in the request path";
                return false;
            }
            if (c == '\\') {
                *why = "backslash in the request path";
                return false;
            }
            if (enc && c == '/') {
                *why = "encoded slash (%2F) in the request path";
                return false;
            }
            if (c < 0x20 || c == 0x7f) {
                *why = "control character in the request path";
                return false;
            }
            if (c == '.')
                dots++;
            bytes++;
            p += step;
        }
        if (bytes > 0 && bytes == dots && dots <= 2) {
            *why = "dot-segment ('.' or '..') in the request path";
            return false;
        }
    }
    *why = NULL;
    return true;
}

enum lp_endpoint lp_endpoint_lookup(const char *path, const char *const *passthrough,
                                    size_t n_passthrough)
{
    if (!path)
        return LP_EP_NONE;
    if (strncmp(path, "/v1/", 4) == 0) {
        for (int ep = LP_EP_CHAT; ep < LP_EP__COUNT; ep++)
            if (table[ep].path && strcmp(path, table[ep].path) == 0)
                return (enum lp_endpoint)ep;
    } else {
        for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++)
            if (strcmp(path, legacy[i].path) == 0)
                return legacy[i].ep;
    }
    for (size_t i = 0; i < n_passthrough; i++)
        if (passthrough[i] && strcmp(path, passthrough[i]) == 0)
            return LP_EP_PASSTHROUGH;
    return LP_EP_NONE;
}

enum lp_proto lp_endpoint_client_proto(const char *path)
{
    if (!path)
        return LP_PROTO_OPENAI;
    const char *p = strncmp(path, "/v1/", 4) == 0 ? path + 3 : path;
    if (strncmp(p, "/messages", 9) == 0 && (p[9] == '\0' || p[9] == '/'))
        return LP_PROTO_ANTHROPIC;
    return LP_PROTO_OPENAI;
}

/* Parameter names that carry credentials, compared after lower-casing and dropping '-' and '_'
 * (so api_key, api-key, apiKey and APIKEY all match "apikey"). A name containing any of these
 * is refused. */
static const char *const credential_words[] = {
    "key",        "token",   "secret", "passw", "auth",   "signature", "sig",
    "credential", "session", "cookie", "jwt",   "bearer", NULL,
};

static bool credential_like(const char *name, size_t len)
{
    char norm[64];
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < sizeof norm;) {
        size_t step;
        bool enc;
        int c = path_byte(name + i, &step, &enc);
        if (c < 0 || i + step > len) {
            c = (unsigned char)name[i];
            step = 1;
        }
        i += step;
        if (c == '-' || c == '_' || c == '.')
            continue;
        norm[n++] = (char)tolower(c);
    }
    if (len >= sizeof norm) /* absurdly long names are not worth the risk */
        return true;
    norm[n] = '\0';
    for (size_t i = 0; credential_words[i]; i++)
        if (strstr(norm, credential_words[i]))
            return true;
    return false;
}

bool lp_endpoint_query_param_allowed(enum lp_endpoint ep, const char *name, size_t len)
{
    if (!name || len == 0 || credential_like(name, len))
        return false;
    switch (ep) {
    case LP_EP_PASSTHROUGH:
        return true;
    case LP_EP_MESSAGES:
    case LP_EP_COUNT_TOKENS:
        return len == 4 && memcmp(name, "beta", 4) == 0;
    default:
        return false;
    }
}

char *lp_endpoint_filter_query(enum lp_endpoint ep, const char *query)
{
    if (!query || !*query)
        return NULL;
    struct lp_buf b;
    lp_buf_init(&b, 0);
    for (const char *p = query; *p;) {
        const char *end = p + strcspn(p, "&");
        size_t nlen = strcspn(p, "=&");
        if (nlen > (size_t)(end - p))
            nlen = (size_t)(end - p);
        if (end > p && lp_endpoint_query_param_allowed(ep, p, nlen)) {
            if (b.len)
                lp_buf_appendc(&b, '&');
            lp_buf_append(&b, p, (size_t)(end - p));
        }
        p = *end ? end + 1 : end;
    }
    if (b.len == 0) {
        lp_buf_free(&b);
        return NULL;
    }
    return lp_buf_steal(&b, NULL);
}
