/* upstream_engine.h - what upstream.c needs from its engines (internal to the upstream client).
 *
 * upstream.c picks an engine per transfer: the own HTTP/1.1 client (h1client.c) or libcurl
 * (curlclient.c). Every engine's transfer starts with a struct lp_upstream_xfer, whose only
 * field names the engine, so the public calls of upstream.h can be routed without a lookup.
 */
#ifndef LP_UPSTREAM_ENGINE_H
#define LP_UPSTREAM_ENGINE_H

#include "upstream.h"

enum lp_upstream_engine { LP_ENGINE_CURL = 1, LP_ENGINE_H1 = 2 };

struct lp_upstream_xfer {
    unsigned char engine; /* enum lp_upstream_engine */
};

#endif
