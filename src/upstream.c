/* upstream.c - the upstream client: picks an engine per transfer and routes the calls of
 * upstream.h to it (see upstream.h, h1client.h, curlclient.h). Response hygiene (framing checks,
 * content decoding) is done here, above the engines, so every engine behaves the same. */
#include "upstream.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "coding.h"
#include "curlclient.h"
#include "h1client.h"
#include "upstream_engine.h"
#include "util/alloc.h"

#define DECODE_CHUNK (16 * 1024) /* decoded bytes handed to on_data at a time */

struct lp_upstream {
    struct lp_curlclient *curl;
    struct lp_h1client *h1;
    struct lp_upstream_xfer *decoding; /* transfers holding a decoder */
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

static void hyg_release(struct lp_upstream_xfer *x);

void lp_upstream_destroy(struct lp_upstream *u)
{
    if (!u)
        return;
    /* The engines drop their transfers without callbacks: free the decoders first. */
    while (u->decoding)
        hyg_release(u->decoding);
    lp_h1client_destroy(u->h1);
    lp_curlclient_destroy(u->curl);
    free(u);
}

size_t lp_upstream_active(const struct lp_upstream *u)
{
    return lp_h1client_active(u->h1) + lp_curlclient_active(u->curl);
}

/* ---- response hygiene ---------------------------------------------------------------------- */

static size_t raw_count(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_header_count(x) : lp_curlclient_header_count(x);
}

static void raw_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                   const char **value)
{
    if (x->engine == LP_ENGINE_H1)
        lp_h1client_header_at(x, i, name, value);
    else
        lp_curlclient_header_at(x, i, name, value);
}

/* After decoding, the body is no longer the one these two describe. */
static bool hidden(const struct lp_upstream_xfer *x, const char *name)
{
    return x->hyg.dec &&
           (strcasecmp(name, "Content-Encoding") == 0 || strcasecmp(name, "Content-Length") == 0);
}

/* One Content-Length value (a list counts as several): every value must be the same number.
 * Returns false on a conflict with *value (when *seen) or a malformed value. */
static bool content_length_ok(const char *p, bool *seen, unsigned long long *value)
{
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        unsigned long long v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > (~0ULL - 9) / 10)
                return false;
            v = v * 10 + (unsigned)(*p++ - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*seen && v != *value)
            return false;
        *seen = true;
        *value = v;
        if (*p == '\0')
            return true;
        if (*p++ != ',')
            return false;
    }
}

/* The final head: refuse framing we cannot trust (RFC 9112 6.3: conflicting Content-Length,
 * Content-Length with Transfer-Encoding; RFC 9110: no body on 204/304) and a content coding we
 * cannot decode; set up decoding of gzip/deflate. Returns the static error, or NULL. One pass;
 * only names starting with c/t are compared in full (this runs on every response). */
static const char *check_head(struct lp_upstream_xfer *x, int status)
{
    bool has_cl = false, has_te = false;
    unsigned long long cl = 0;
    enum lp_coding_kind k = LP_CODING_IDENTITY;
    for (size_t i = 0, n = raw_count(x); i < n; i++) {
        const char *name, *value;
        raw_at(x, i, &name, &value);
        char c0 = (char)(name[0] | 0x20);
        if (c0 == 't') {
            if (strcasecmp(name, "Transfer-Encoding") == 0)
                has_te = true;
        } else if (c0 == 'c' && strncasecmp(name, "Content-", 8) == 0) {
            if (strcasecmp(name + 8, "Length") == 0) {
                if (!content_length_ok(value, &has_cl, &cl))
                    return "upstream sent conflicting or invalid Content-Length headers";
            } else if (strcasecmp(name + 8, "Encoding") == 0) {
                enum lp_coding_kind hk = lp_coding_kind_of(value);
                if (hk != LP_CODING_IDENTITY)
                    k = k == LP_CODING_IDENTITY ? hk : LP_CODING_UNSUPPORTED; /* stacked */
            }
        }
    }
    if (has_cl && has_te)
        return "upstream sent both Content-Length and Transfer-Encoding";
    if (status == 204 || status == 304) {
        if (has_te || (status == 204 && cl > 0))
            return "upstream sent a body with a 204 or 304 response";
        x->hyg.no_body = true;
        return NULL;
    }
    if (k == LP_CODING_UNSUPPORTED)
        return "upstream sent a body in an unsupported content coding";
    if (k != LP_CODING_IDENTITY)
        x->hyg.dec = lp_coding_new(k, LP_CODING_DEFAULT_RATIO);
    return NULL;
}

static void hyg_enter(struct lp_upstream_xfer *x)
{
    x->hyg.depth++;
}

/* Leave one of our callbacks; true when the caller cancelled the transfer meanwhile. */
static bool hyg_leave(struct lp_upstream_xfer *x)
{
    if (--x->hyg.depth == 0 && x->hyg.cancelled)
        hyg_release(x);
    return x->hyg.cancelled;
}

static void on_hyg_head(void *arg, struct lp_upstream_xfer *x, int status)
{
    hyg_enter(x);
    x->hyg.proto_err = check_head(x, status);
    if (x->hyg.dec) {
        struct lp_upstream *u = x->hyg.owner;
        x->hyg.next = u->decoding;
        if (u->decoding)
            u->decoding->hyg.prev = x;
        u->decoding = x;
    }
    if (x->hyg.proto_err)
        x->hyg.head_refused = true; /* the first body byte or the end reports it */
    else if (x->hyg.user.on_head)
        x->hyg.user.on_head(arg, x, status);
    hyg_leave(x);
}

/* Hand the decoded bytes held in dec_out to on_data. */
static enum lp_status deliver_decoded(void *arg, struct lp_upstream_xfer *x)
{
    if (x->hyg.dec_len == 0)
        return LP_OK;
    enum lp_status rc =
        x->hyg.user.on_data
            ? x->hyg.user.on_data(arg, x, x->hyg.dec_out + x->hyg.dec_off, x->hyg.dec_len)
            : LP_OK;
    if (rc == LP_OK)
        x->hyg.dec_len = x->hyg.dec_off = 0;
    return rc;
}

/* A coded body: decode buf[0..len) in DECODE_CHUNK pieces and deliver each. A pause (LP_AGAIN)
 * keeps the undelivered piece in dec_out and passes LP_AGAIN on: the engine then delivers the
 * same input again on resume, and dec_skip says how many of those bytes were already decoded
 * (a re-delivery starts at the paused call's first byte, possibly split further). */
static enum lp_status data_decoded(void *arg, struct lp_upstream_xfer *x, const char *buf,
                                   size_t len)
{
    struct lp_upstream_hyg *h = &x->hyg;
    size_t off = h->dec_skip < len ? h->dec_skip : len;
    h->dec_skip -= off;
    if (!h->dec_out)
        h->dec_out = lp_xmalloc(DECODE_CHUNK);
    for (;;) {
        enum lp_status rc = deliver_decoded(arg, x);
        if (h->cancelled)
            return LP_ERR;
        if (rc == LP_AGAIN) {
            h->dec_skip += off;
            return LP_AGAIN;
        }
        if (rc != LP_OK)
            return rc;
        if (off == len && !h->dec_last_full)
            return LP_OK; /* all taken, and the decoder holds nothing back */
        size_t used = 0, produced = 0;
        if (lp_coding_feed(h->dec, buf + off, len - off, &used, h->dec_out, DECODE_CHUNK,
                           &produced) != LP_OK) {
            h->proto_err = lp_coding_error(h->dec);
            return LP_ERR;
        }
        off += used;
        h->dec_len = produced;
        h->dec_last_full = produced == DECODE_CHUNK;
        if (used == 0 && produced == 0 && off < len) {
            h->proto_err = "upstream body could not be decoded";
            return LP_ERR;
        }
    }
}

static enum lp_status on_hyg_data(void *arg, struct lp_upstream_xfer *x, const char *buf,
                                  size_t len)
{
    if (x->hyg.proto_err)
        return LP_ERR;
    if (x->hyg.no_body && len > 0) {
        x->hyg.proto_err = "upstream sent a body with a 204 or 304 response";
        return LP_ERR;
    }
    hyg_enter(x);
    enum lp_status rc;
    if (x->hyg.dec)
        rc = data_decoded(arg, x, buf, len);
    else
        rc = x->hyg.user.on_data ? x->hyg.user.on_data(arg, x, buf, len) : LP_OK;
    if (hyg_leave(x))
        return LP_ERR;
    return rc;
}

static void on_hyg_done(void *arg, struct lp_upstream_xfer *x, enum lp_xfer_result res,
                        const char *err)
{
    struct lp_upstream_hyg *h = &x->hyg;
    /* A coded body must end where its compressed stream ends (curl cannot tell a truncated
     * close-delimited body from a complete one). */
    if (res == LP_XFER_OK && h->dec && !h->proto_err && lp_coding_finish(h->dec) != LP_OK)
        h->proto_err = lp_coding_error(h->dec);
    if (h->proto_err && (res == LP_XFER_OK || res == LP_XFER_ABORTED)) {
        res = LP_XFER_PROTOCOL;
        err = h->proto_err;
    }
    hyg_enter(x);
    if (h->user.on_done)
        h->user.on_done(arg, x, res, err);
    h->depth--;
    hyg_release(x); /* the engine frees x right after this */
}

static const struct lp_upstream_cbs hyg_cbs = {on_hyg_head, on_hyg_data, on_hyg_done};

static void hyg_release(struct lp_upstream_xfer *x)
{
    struct lp_upstream_hyg *h = &x->hyg;
    if (h->dec) {
        struct lp_upstream *u = x->hyg.owner;
        if (h->prev)
            h->prev->hyg.next = h->next;
        else if (u->decoding == x)
            u->decoding = h->next;
        if (h->next)
            h->next->hyg.prev = h->prev;
        h->prev = h->next = NULL;
        lp_coding_free(h->dec);
        h->dec = NULL;
    }
    LP_FREE(&h->dec_out);
}

/* ---- routing -------------------------------------------------------------------------------- */

struct lp_upstream_xfer *lp_upstream_start(struct lp_upstream *u, const struct lp_upstream_req *r,
                                           const struct lp_upstream_cbs *cbs, void *arg)
{
    struct lp_upstream_xfer *x;
    if (!r->http2 && lp_h1client_accepts(u->h1, r->url))
        x = lp_h1client_start(u->h1, r, &hyg_cbs, arg);
    else
        x = lp_curlclient_start(u->curl, r, &hyg_cbs, arg);
    if (x) { /* engines never call back from inside start */
        x->hyg.user = *cbs;
        x->hyg.owner = u;
    }
    return x;
}

void lp_upstream_cancel(struct lp_upstream_xfer *x)
{
    if (!x)
        return;
    if (x->hyg.depth > 0)
        x->hyg.cancelled = true; /* freed when our callback unwinds */
    else
        hyg_release(x);
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
    if (hidden(x, name))
        return NULL;
    return x->engine == LP_ENGINE_H1 ? lp_h1client_header(x, name) : lp_curlclient_header(x, name);
}

size_t lp_upstream_header_count(const struct lp_upstream_xfer *x)
{
    size_t n = raw_count(x);
    if (!x->hyg.dec)
        return n;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        raw_at(x, i, &name, &value);
        k += !hidden(x, name);
    }
    return k;
}

void lp_upstream_header_at(const struct lp_upstream_xfer *x, size_t i, const char **name,
                           const char **value)
{
    if (!x->hyg.dec) {
        raw_at(x, i, name, value);
        return;
    }
    for (size_t j = 0, n = raw_count(x); j < n; j++) {
        raw_at(x, j, name, value);
        if (!hidden(x, *name) && i-- == 0)
            return;
    }
    *name = *value = ""; /* out of range: the caller broke the contract */
}

bool lp_upstream_reused(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_reused(x) : lp_curlclient_reused(x);
}

int lp_upstream_http_version(const struct lp_upstream_xfer *x)
{
    return x->engine == LP_ENGINE_H1 ? lp_h1client_http_version(x) : lp_curlclient_http_version(x);
}
