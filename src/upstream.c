/* upstream.c - the upstream client: picks an engine per transfer and routes the calls of
 * upstream.h to it (see upstream.h, h1client.h, curlclient.h). */
#include "upstream.h"

#include <stdlib.h>

#include "curlclient.h"
#include "h1client.h"
#include "upstream_engine.h"
#include "util/alloc.h"

struct lp_upstream {
    struct lp_curlclient *curl;
    struct lp_h1client *h1;
};

struct lp_upstream *lp_upstream_create(struct event_base *base, const struct lp_upstream_opts *o)
{
    struct lp_upstream *u = lp_xcalloc(1, sizeof *u);
    u->curl = lp_curlclient_create(base, o);
    if (!u->curl) {
        free(u);
        return NULL;
    }
    u->h1 = lp_h1client_create(base, o);
    return u;
}

void lp_upstream_destroy(struct lp_upstream *u)
{
    if (!u)
        return;
    lp_h1client_destroy(u->h1);
    lp_curlclient_destroy(u->curl);
    free(u);
}

size_t lp_upstream_active(const struct lp_upstream *u)
{
    return lp_h1client_active(u->h1) + lp_curlclient_active(u->curl);
}

struct lp_upstream_xfer *lp_upstream_start(struct lp_upstream *u, const struct lp_upstream_req *r,
                                           const struct lp_upstream_cbs *cbs, void *arg)
{
    if (!r->http2 && lp_h1client_accepts(u->h1, r->url))
        return lp_h1client_start(u->h1, r, cbs, arg);
    return lp_curlclient_start(u->curl, r, cbs, arg);
}

void lp_upstream_cancel(struct lp_upstream_xfer *x)
{
    if (!x)
        return;
    if (x->engine == LP_ENGINE_H1)
        lp_h1client_cancel(x);
    else
        lp_curlclient_cancel(x);
}

void lp_upstream_resume(struct lp_upstream_xfer *x)
{
    if (!x)
        return;
    if (x->engine == LP_ENGINE_H1)
        lp_h1client_resume(x);
    else
        lp_curlclient_resume(x);
}

bool lp_upstream_paused(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_paused(x) : lp_curlclient_paused(x);
}

const char *lp_upstream_header(const struct lp_upstream_xfer *x, const char *name)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_header(x, name) : lp_curlclient_header(x, name);
}

size_t lp_upstream_header_count(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_header_count(x) : lp_curlclient_header_count(x);
}

void lp_upstream_header_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                           const char **value)
{
    if (x->engine == LP_ENGINE_H1)
        lp_h1client_header_at(x, i, name, value);
    else
        lp_curlclient_header_at(x, i, name, value);
}

bool lp_upstream_reused(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_reused(x) : lp_curlclient_reused(x);
}

int lp_upstream_http_version(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_http_version(x)
                                     : lp_curlclient_http_version(x);
}
