/* keys.h - client keys: who is calling, and which models they may use.
 *
 * Lookups never leak through timing: the presented credential is hashed (SHA-256) and its
 * digest compared, in constant time and without an early exit, with the digest of
 * proxy_api_key and of every configured key (digests are computed once, when the config is
 * loaded). The work is the same whichever key matches, and whether one does. With no client key
 * configured, the proxy key is compared byte by byte in constant time instead (no digest).
 *
 * lp_keys_match_headers needs nothing but the request's headers, so the edge can authenticate a
 * request before its body is read.
 */
#ifndef LP_KEYS_H
#define LP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct lp_edge_req;

enum lp_key_auth {
    LP_KEY_OPEN = 0, /* no proxy_api_key and no keys configured: everyone is let in */
    LP_KEY_PROXY,    /* proxy_api_key: unrestricted */
    LP_KEY_CLIENT,   /* one of keys[]: *key is set */
    LP_KEY_MISSING,  /* a key is required and none was presented */
    LP_KEY_INVALID,  /* a key was presented and matches nothing */
};

/* SHA-256 of s[0..len). */
void lp_keys_digest(const char *s, size_t len, unsigned char out[32]);

/* Whether cfg requires a key (proxy_api_key set or keys[] not empty). */
bool lp_keys_required(const struct lp_config *cfg);

/* Match one presented credential (len bytes, not NUL-terminated) against cfg. On LP_KEY_CLIENT
 * *key points into cfg (valid while cfg is); otherwise *key is NULL. */
enum lp_key_auth lp_keys_match(const struct lp_config *cfg, const char *presented, size_t len,
                               const struct lp_client_key **key);

/* Match the credentials of a request's headers: `Authorization: Bearer <key>` and `x-api-key`
 * (either may carry it). Only headers are read. */
enum lp_key_auth lp_keys_match_headers(const struct lp_config *cfg, const struct lp_edge_req *er,
                                       const struct lp_client_key **key);

/* Whether key k may use alias (its models list is empty, or one entry equals alias or matches
 * it as a glob: '*', '?', '[...]'). k NULL (proxy key, open) allows everything. */
bool lp_keys_model_allowed(const struct lp_client_key *k, const char *alias);

/* Whether key k needs a token estimate at admission (it has tpm or a budget). */
bool lp_keys_counts_tokens(const struct lp_client_key *k);

/* Estimated tokens of a request, for a reservation: the prompt (body bytes / 4) plus the
 * answer's ceiling (max_tokens, max_completion_tokens or max_output_tokens from the body, else
 * default_max_tokens). Parses the body; call only when a token limit applies. */
int64_t lp_keys_estimate_tokens(const char *body, size_t len, int64_t default_max_tokens);

#endif
