/* hdrpolicy.h - which headers cross the proxy, in each direction (pure, no state).
 *
 * The reference copied every client header upstream, leaking the client's proxy key to backends
 * without their own key (seed-system.md §6 bug 11). Here the request side is a deny-list of
 * framing, hop-by-hop, credential and proxy-owned headers plus protocol-specific families; the
 * proxy adds its own Authorization/x-api-key, X-Forwarded-For and X-Request-Id afterwards.
 */
#ifndef LP_HDRPOLICY_H
#define LP_HDRPOLICY_H

#include <stdbool.h>

#include "config.h" /* enum lp_proto */

/* true when a client request header `name` may be forwarded upstream to a backend of protocol
 * `to`. Case-insensitive. Never forwarded:
 * - hop-by-hop: Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
 *   Trailers, Transfer-Encoding, Upgrade, and any Proxy-* header;
 * - framing the proxy recomputes: Host, Content-Length, Expect, Content-Encoding (the body is
 *   re-emitted as identity), Accept-Encoding (we want identity bodies to inspect SSE);
 * - credentials: Authorization, X-Api-Key, Api-Key, X-Goog-Api-Key, Cookie;
 * - set by the proxy: X-Forwarded-* (For/Host/Proto/...), X-Real-IP, Forwarded, X-Request-Id;
 * - protocol families: Anthropic-* only to LP_PROTO_ANTHROPIC backends, OpenAI-* (Organization,
 *   Project, Beta) only to LP_PROTO_OPENAI backends.
 * Everything else (Content-Type, Accept, User-Agent, X-Stainless-*, ...) is forwarded.
 * NULL or an empty name is never forwarded. */
bool lp_hdr_forward_request(const char *name, enum lp_proto to);

/* true when an upstream response header may be passed to the client. Case-insensitive. Not
 * passed: hop-by-hop (as above), Content-Length / Content-Encoding / Transfer-Encoding (the edge
 * sets framing), Set-Cookie, X-Request-Id (the proxy's own id wins), Date, Server. */
bool lp_hdr_forward_response(const char *name);

/* An RFC 9110 token: 1+ of ALPHA DIGIT and !#$%&'*+-.^_`|~ . NULL is invalid. */
bool lp_hdr_name_valid(const char *name);
/* No CR, LF, NUL or other control character except HTAB (DEL included), like Go's
 * httpguts.ValidHeaderFieldValue. Bytes >= 0x80 are allowed (obs-text). NULL is invalid;
 * "" is valid. */
bool lp_hdr_value_valid(const char *value);

#endif
