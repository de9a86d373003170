/* upstream_engine.h - what upstream.c needs from its engines (internal to the upstream client).
 *
 * upstream.c picks an engine per transfer: the own HTTP/1.1 client (h1client.c) or libcurl
 * (curlclient.c). Every engine's transfer starts with a struct lp_upstream_xfer, whose only
 * field names the engine, so the public calls of upstream.h can be routed without a lookup.
 */
#ifndef LP_UPSTREAM_ENGINE_H
#define LP_UPSTREAM_ENGINE_H

#include "upstream.h"

struct lp_coding;

enum lp_upstream_engine { LP_ENGINE_CURL = 1, LP_ENGINE_H1 = 2 };

/* Response hygiene, done by upstream.c for every engine (see upstream.h): the engine is started
 * with upstream.c's callbacks, which check the head, decode a coded body and then call the
 * caller's callbacks. Engines zero this (their transfer is calloc'd) and never touch it. */
struct lp_upstream_hyg {
    struct lp_upstream_cbs user; /* the caller's callbacks */
    struct lp_upstream *owner;
    const char *proto_err; /* static: the response broke framing or its coding */
    bool head_refused;     /* the caller's on_head was not called */
    bool no_body;          /* 204/304: any body byte is a protocol error */
    bool cancelled;        /* lp_upstream_cancel ran inside one of our callbacks */
    int depth;             /* > 0 while inside one of our callbacks */
    struct lp_coding *dec; /* a gzip/deflate body is decoded before the caller's on_data */
    char *dec_out;         /* decoded bytes not yet taken by on_data */
    size_t dec_off, dec_len;
    size_t dec_skip;    /* re-delivered (after a pause) bytes that were already decoded */
    bool dec_last_full; /* the decoder filled dec_out: it may hold more output */
    struct lp_upstream_xfer *prev, *next; /* transfers with a decoder (freed at destroy) */
};

struct lp_upstream_xfer {
    unsigned char engine; /* enum lp_upstream_engine */
    struct lp_upstream_hyg hyg;
};

#endif
